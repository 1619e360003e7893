"""Shared fixtures: `write_run` writes a valid run folder (results contract, the current schema or schema 1)."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from optlab.core import compile_cache
from optlab.results import SCHEMA_VERSION, figure_entry, figure_path, write_json

# Tests compile from scratch and leave the user's cache alone (tests/test_compile_cache.py turns it on itself).
os.environ.setdefault(compile_cache.OFF_ENV, "1")

_TOP_LEVEL = {"schema_version", "run_id", "status", "experiment", "environment", "history",
              "summary", "analysis", "figures", "sweep_id"}


def png_bytes(width: int = 4, height: int = 3) -> bytes:
    """A valid grey PNG of the given size, written by hand so tests need no plotting."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))  # filter byte + grey pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _tiny(config: dict) -> dict[str, Any]:
    steps = config.setdefault("steps", 3)
    config.setdefault("start", [0.5, -0.5])
    loss = [1.0 / 2**t for t in range(steps + 1)]
    return {
        "history": {"step": list(range(steps + 1)), "loss": loss,
                    "params": [[0.5 + 0.2 * t, -0.5 + 0.3 * t] for t in range(steps + 1)],
                    "lr": [config["lr"]] * (steps + 1), "grad_norm": [1.0] * (steps + 1)},
        "summary": {"final_loss": loss[-1], "steps": steps, "wall_time_s": 0.5,
                    "converged": True, "oscillating": False},
        "analysis": {"grad_norm": 0.0, "hessian_eigenvalues": [0.16, 5.84],
                     "critical_point": "minimum", "gd_max_stable_lr": 0.34},
    }


def _mnist(config: dict) -> dict[str, Any]:
    epochs = config.setdefault("epochs", 3)
    config.update({k: v for k, v in {
        "batch_size": 100, "hidden": [225, 225], "init": "he", "init_scale": 1.0, "input_noise": 0.0,
        "dropout": 0.0, "weight_decay": 0.0, "target_error": 0.02, "data_dir": "/data/mnist"}.items()
        if k not in config})
    test_error = [0.05 / (e + 1) for e in range(epochs)]
    return {
        "history": {"epoch": list(range(1, epochs + 1)), "train_loss": [0.5 / (e + 1) for e in range(epochs)],
                    "train_error": [0.04 / (e + 1) for e in range(epochs)], "test_loss": [0.3] * epochs,
                    "test_error": test_error, "lr": [config["lr"]] * epochs, "epoch_time_s": [1.0] * epochs},
        "summary": {"final_loss": 0.5 / epochs, "epochs": epochs, "test_error": test_error[-1],
                    "best_test_error": min(test_error), "time_to_target_s": 2.0,
                    "wall_time_s": 3.0, "compile_time_s": 0.5},
        "analysis": {"dead_units": [0, 0]},
    }


def _loss_figure(schema_version: int) -> str | dict:
    """The default figure's entry as a run of `schema_version` records it."""
    if schema_version < 2:
        return "loss.png"
    return figure_entry("loss.png", "the loss per step, a fixture")


@pytest.fixture
def write_run() -> Callable[..., Path]:
    """Factory: `write_run(root, experiment="tiny", **overrides) -> run folder`.

    Overrides named like a top-level key (status, run_id, summary, history, figures, sweep_id,
    schema_version, …) replace that key, except summary, which is merged into the default one;
    every other override is a config key (optimizer, lr, seed, …). `subdir` nests the folder.
    The run gets one real PNG figure, `loss.png`, unless `figures` says otherwise: an entry with a
    caption (schema 2, the default) or, with `schema_version=1`, the bare file name version 1 wrote.
    """
    def write(root: Path, experiment: str = "tiny", subdir: str = "", **overrides: Any) -> Path:
        top = {k: overrides.pop(k) for k in list(overrides) if k in _TOP_LEVEL}
        config = {"experiment": experiment, "optimizer": "gd", "lr": 0.25, "lr_schedule": "constant",
                  "anneal_fraction": 0.0, "lr_decay": 0.0, "momentum": 0.0, "seed": 0, "grad_noise": 0.0}
        config.update(overrides)
        parts = _tiny(config) if experiment == "tiny" else _mnist(config)
        parts["summary"].update(top.pop("summary", {}))
        run_id = top.pop("run_id", f"{experiment}-{config['optimizer']}-lr{config['lr']:g}-s{config['seed']}")
        record = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "status": "completed",
                  "experiment": experiment, "config": config,
                  "environment": {"backend": "cpu", "device_count": 1, "device_kind": "cpu"},
                  "figures": {"loss": _loss_figure(top.get("schema_version", SCHEMA_VERSION))}, **parts, **top}
        folder = Path(root) / subdir / run_id
        folder.mkdir(parents=True, exist_ok=True)
        for entry in record["figures"].values():
            (folder / figure_path(entry)).write_bytes(png_bytes())
        write_json(folder / "metrics.json", record)
        return folder

    return write


@pytest.fixture
def data_cli():
    """optlab's commands in-process, on a wide terminal: data_cli("data", "info", ...) -> the CliRunner result."""
    from typer.testing import CliRunner

    from optlab.cli import app  # the app with every command registered

    return lambda *args: CliRunner().invoke(app, list(map(str, args)), env={"COLUMNS": "250"})
