"""Planning a sweep: its groups as compiled programs, split into chunks that fit in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optlab.config import RunConfig
from optlab.core import devices
from optlab.errors import ConfigError
from optlab.sweep.grid import ARRAY_KEYS, METRICS, Sweep, _describe, groups


@dataclass
class Chunk:
    """Configurations (indices into the sweep) run as one program, and how to run them."""

    indices: list[int]
    job: Any  # (cfgs, lanes, run_dirs, progress) -> list[RunResult]


def plan(sweep: Sweep, max_lanes: int | None = None, notices: list[str] | None = None) -> list[Chunk]:
    """Validate every group against its data and split it into chunks that fit in memory.

    Raises ConfigError before anything is written (unsupported combinations, data problems).
    """
    from functools import partial

    from optlab.experiments import classify, tiny

    notices = [] if notices is None else notices
    chunks, loaded = [], {}
    device_count = len(__import__("jax").devices())
    budget = devices.memory_budget()
    for members in groups(sweep.configs):
        cfg = sweep.configs[members[0]]
        if cfg.experiment == "tiny":
            tiny.prepare(cfg)
            job, per_lane = tiny.run_lanes, tiny.LANE_BYTES
        elif cfg.experiment in METRICS:
            source = (cfg.experiment, cfg.data_dir)
            dataset, n_train, sizes = classify.validate(cfg, loaded.get(source))
            loaded[source] = dataset
            job = partial(_classify_job, dataset, n_train, sizes)
            per_lane = classify.lane_bytes(cfg, n_train, len(dataset.test_images), sizes)
        else:
            raise ConfigError(f"experiment {cfg.experiment!r} cannot be swept yet")
        # The most lanes that fit, a multiple of the device count so that every device gets a share.
        fit = max_lanes or max(device_count, budget // per_lane // device_count * device_count)
        if per_lane * device_count > budget and not max_lanes:
            raise ConfigError(f"one configuration needs ~{per_lane / 1e9:.1f} GB per device, more than the "
                              f"~{budget / 1e9:.1f} GB free; use fewer hidden units or a smaller --train-subset")
        if len(members) > fit:
            notices.append(f"{len(members)} configurations ({_group_name(sweep, cfg)}) are more than fit at once "
                           f"(~{per_lane * len(members) / 1e9:.2f} GB, ~{budget / 1e9:.1f} GB free); running them "
                           f"in {-(-len(members) // fit)} chunks of up to {fit}")
        chunks += [Chunk(members[i: i + fit], job) for i in range(0, len(members), fit)]
    return chunks


def _classify_job(dataset, n_train, sizes, cfgs, lanes, run_dirs, progress, save_progress):
    from optlab.experiments import classify

    return classify.run_lanes(cfgs, dataset, n_train, sizes, lanes, run_dirs, progress, save_progress)


def _group_name(sweep: Sweep, cfg: RunConfig) -> str:
    shaping = [k for k in sweep.varied if k not in ARRAY_KEYS]
    return _describe({k: getattr(cfg, k) for k in shaping}) or f"{cfg.experiment} {cfg.optimizer}"


