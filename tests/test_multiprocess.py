"""Two real processes on one machine: `optlab sweep --coordinator … --num-processes 2 --process-id I`.

JAX's CPU backend runs several processes as one program through its gloo collectives, so the
multi-host path (jax.distributed, lanes sharded over both processes' devices, results gathered
back, only process 0 writing) is tested here for real, not only its flag handling. Each sweep
must give exactly the numbers of the same sweep in one process.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from optlab.data import datasets

TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def optlab(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "optlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def two_processes(args: list[str], out: Path) -> list[tuple[int, str, str]]:
    """Run the sweep as ranks 0 and 1 of one program; (exit code, stdout, stderr) of each."""
    port = free_port()
    ranks = [optlab(*args, "--out", str(out), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                    "--process-id", str(rank), "-q") for rank in (0, 1)]
    try:
        return [(p.wait(TIMEOUT_S), p.stdout.read(), p.stderr.read()) for p in ranks]
    finally:
        for p in ranks:
            p.kill()


def one_process(args: list[str], out: Path) -> Path:
    p = optlab(*args, "--out", str(out), "-q")
    code, stdout, stderr = p.wait(TIMEOUT_S), p.stdout.read(), p.stderr.read()
    assert code == 0, stderr
    return Path(stdout.strip().splitlines()[-1])


def records(sweep_dir: Path) -> dict[str, dict]:
    return {f.parent.name: json.loads(f.read_text()) for f in sorted(sweep_dir.glob("*/metrics.json"))}


def check_same_sweep(args: list[str], tmp_path: Path, compared: str) -> dict[str, dict]:
    (code0, out0, err0), (code1, out1, err1) = two_processes(args, tmp_path / "two")
    assert code0 == 0 and code1 == 0, err0 + err1
    assert "Traceback" not in err0 + err1
    sweep_dir = Path(out0.strip().splitlines()[-1])  # process 0 prints the folder, as one process would
    assert out1.strip() == ""  # process 1 writes nothing and prints nothing on stdout
    assert [p.name for p in (tmp_path / "two").iterdir()] == [sweep_dir.name]  # one sweep folder, process 0's
    two = records(sweep_dir)
    one = records(one_process(args, tmp_path / "one"))
    assert sorted(two) == sorted(one) and len(two) == 4
    for run_id, record in two.items():
        assert record["status"] == one[run_id]["status"] == "completed"
        assert record["environment"]["device_count"] == 2 and one[run_id]["environment"]["device_count"] == 1
        assert record["history"][compared] == one[run_id]["history"][compared], run_id
    return two


@pytest.mark.slow
def test_a_two_process_tiny_sweep_gives_the_numbers_of_one_process(tmp_path):
    args = ["sweep", "tiny", "--opt", "momentum", "--lr", "0.02,0.05", "--momentum", "0.5,0.9", "--steps", "40"]
    two = check_same_sweep(args, tmp_path, "loss")
    assert len({tuple(r["history"]["loss"]) for r in two.values()}) == 4  # four different trajectories


@pytest.mark.slow
def test_a_two_process_mnist_sweep_gives_the_numbers_of_one_process(tmp_path):
    if not all(s.path is not None for s in datasets.locate("mnist", None, verify=False)):
        pytest.skip(f"MNIST files not found (set ${datasets.ENV_VAR})")
    args = ["sweep", "mnist", "--lr", "1e-3,3e-3", "--seed", "0,1", "--epochs", "2", "--hidden", "16",
            "--input-noise", "0", "--set", "train_subset=2000"]
    two = check_same_sweep(args, tmp_path, "test_error")
    assert all(0 < r["history"]["test_error"][-1] < 0.9 for r in two.values())

