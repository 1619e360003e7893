"""A progress bar that presses Ctrl-C: for the tests of interrupted runs."""

from __future__ import annotations


class StopAt:
    """Raise KeyboardInterrupt when `units` progress units are reported (epoch `units` of a network run):
    the epochs before it are recorded (and checkpointed, with --checkpoint-every 1)."""

    def __init__(self, units: int) -> None:
        self.units = units

    def start(self, total, description):
        pass

    def advance(self, completed, metrics):
        if completed == self.units:
            raise KeyboardInterrupt

    def stop(self):
        pass
