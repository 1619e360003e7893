"""Planning a sweep: its groups as compiled programs, split into chunks that fit in memory."""

from __future__ import annotations

from dataclasses import dataclass

from optlab.config import RunConfig
from optlab.core import devices
from optlab.errors import ConfigError
from optlab.experiments import EXPERIMENTS, LanesJob
from optlab.sweep.grid import Sweep, _describe, array_keys, groups


@dataclass
class Chunk:
    """Configurations (indices into the sweep) run as one program, and how to run them."""

    indices: list[int]
    job: LanesJob  # (cfgs, lanes, run_dirs, progress, save_progress) -> list[RunResult]


def plan(sweep: Sweep, max_lanes: int | None = None, notices: list[str] | None = None) -> list[Chunk]:
    """Validate every group with its experiment's `sweep.prepare` and split it into chunks that fit in memory.

    Raises ConfigError before anything is written (unsupported combinations, data problems).
    """
    import jax

    notices = [] if notices is None else notices
    chunks, cache = [], {}
    device_count = len(jax.devices())
    budget = devices.memory_budget()
    for members in groups(sweep.configs):
        cfg = sweep.configs[members[0]]
        sweeping = EXPERIMENTS[cfg.experiment].sweep
        if sweeping is None:
            raise ConfigError(f"experiment {cfg.experiment!r} cannot be swept yet")
        program = sweeping.prepare(cfg, cache)
        per_lane = program.lane_bytes
        # The most lanes that fit, a multiple of the device count so that every device gets a share.
        fit = max_lanes or max(device_count, budget // per_lane // device_count * device_count)
        if per_lane * device_count > budget and not max_lanes:
            raise ConfigError(f"one configuration needs ~{per_lane / 1e9:.1f} GB per device, more than the "
                              f"~{budget / 1e9:.1f} GB free; use fewer hidden units or a smaller --train-subset")
        if len(members) > fit:
            notices.append(f"{len(members)} configurations ({_group_name(sweep, cfg)}) are more than fit at once "
                           f"(~{per_lane * len(members) / 1e9:.2f} GB, ~{budget / 1e9:.1f} GB free); running them "
                           f"in {-(-len(members) // fit)} chunks of up to {fit}")
        chunks += [Chunk(members[i: i + fit], program.run) for i in range(0, len(members), fit)]
    return chunks


def _group_name(sweep: Sweep, cfg: RunConfig) -> str:
    shaping = [k for k in sweep.varied if k not in array_keys(cfg.experiment)[0]]
    return _describe({k: getattr(cfg, k) for k in shaping}) or f"{cfg.experiment} {cfg.optimizer}"
