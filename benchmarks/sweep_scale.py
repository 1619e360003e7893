"""Sweeps at scale, as a user runs them: `optlab sweep` of 1, 100 and 10,000 tiny configurations and of
1, 8 and 64 lecture-network configurations, against one `optlab run`; prints JSON.

Each case is the command line itself in a fresh process (`python -m optlab ...`), so its wall time
(and its CPU time, user + system, steadier than wall time on a shared machine) includes process
start, JAX's import, compilation, training, the results written and the heat map. Beside it, the
compiled program's own time as the records report it (tiny: the program's wall time less its
compile time, `summary.wall_time_s - summary.compile_time_s`; networks: the training epochs,
`summary.epoch_time_s × epochs`, evaluation and host work left out), and the bytes written. Ratios
are to one `optlab run` of the same kind measured by this script, every command once per round,
interleaved over `--repeats` rounds, medians reported.

  tiny     `--opt momentum --steps 100`, a grid of --lr × --momentum: 1×1, 10×10, 100×100
  lecture  MLP 784-225-225-10, Adam, batch 100, 1 epoch of the first --train-subset images
           (the full 60,000 is hours on a shared 2-core machine): --lr × --seed, 1, 8 and 64

Data for the lecture network: real MNIST from $OPTLAB_DATA (a folder holding mnist/); without it the
lecture cases are skipped.

    python benchmarks/sweep_scale.py --repeats 3 --train-subset 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["tiny", "--opt", "momentum", "--steps", "100"]


def grid(lo: float, ratio: float, n: int) -> str:
    return ",".join(f"{lo * ratio**i:.6g}" for i in range(n))


def tiny_sweep(n: int) -> list[str]:
    """An n × n grid: learning rates 0.001 … ~2 (the top of it diverges), momentum 0 … 0.99."""
    lrs = grid(0.001, 2000 ** (1 / max(n - 1, 1)), n) if n > 1 else "0.05"
    momenta = ",".join(f"{0.99 * i / max(n - 1, 1):.6g}" for i in range(n)) if n > 1 else "0.9"
    return ["sweep", *TINY, "--lr", lrs, "--momentum", momenta, "-q"]


def lecture(subset: int) -> list[str]:
    return ["mnist", "--opt", "adam", "--hidden", "225,225", "--epochs", "1", "--train-subset", str(subset),
            "--lr-schedule", "constant"]


def lecture_sweep(n: int, subset: int) -> list[str]:
    lrs = {1: "1e-3", 8: grid(1e-4, 1.5, 8), 64: grid(1e-4, 1.5, 8)}[n]
    seeds = "0..7" if n == 64 else "0"
    return ["sweep", *lecture(subset), "--lr", lrs, "--seed", seeds, "-q"]


def measure(args: list[str], out: Path) -> dict:
    """One command in a fresh process: its wall time, the program time its records report, bytes written."""
    shutil.rmtree(out, ignore_errors=True)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    begin, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "optlab", *args, "--out", str(out)], env=env, capture_output=True,
                          text=True)
    wall, after = time.perf_counter() - begin, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(args[:3])}…: exit {done.returncode}: {done.stderr[-2000:]}")
    summaries = [json.loads(f.read_text())["summary"] for f in out.rglob("metrics.json")]
    for summary_file in out.rglob("summary.json"):
        summaries = summaries or [r for r in json.loads(summary_file.read_text())["runs"]]
    first = summaries[0]
    if "epoch_time_s" in first:
        program = first["epoch_time_s"] * first.get("epochs", 1)
    else:
        program = first["wall_time_s"] - first["compile_time_s"]
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"wall_s": wall, "cpu_s": cpu, "program_s": program, "compile_s": first["compile_time_s"], "bytes": size,
            "configurations": len(summaries)}


def case(name: str, commands: dict[str, list[str]], repeats: int, scratch: Path) -> dict:
    """Every command of the case once per round, interleaved; medians, and ratios to the first (one run)."""
    samples: dict[str, list[dict]] = {label: [] for label in commands}
    for _ in range(repeats):
        for i, (label, args) in enumerate(commands.items()):
            samples[label].append(measure(args, scratch / f"case{i}"))
    rows = {}
    for label, got in samples.items():
        rows[label] = {k: statistics.median(s[k] for s in got) for k in got[0]}
    base = next(iter(rows.values()))
    for row in rows.values():
        row["wall_ratio"] = row["wall_s"] / base["wall_s"]
        row["cpu_ratio"] = row["cpu_s"] / base["cpu_s"]
        row["program_ratio"] = row["program_s"] / base["program_s"]
    return {"case": name, "baseline": next(iter(rows)), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=2000, help="images of the lecture network's epoch")
    parser.add_argument("--skip-lecture", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="optlab-sweep-scale-"))
    try:
        cases = [case("tiny momentum, 100 steps", {
            "optlab run": ["run", *TINY],
            "sweep of 1": tiny_sweep(1), "sweep of 100": tiny_sweep(10), "sweep of 10,000": tiny_sweep(100),
        }, args.repeats, scratch)]
        tiny_rows = cases[0]["rows"]
        cases[0]["bar"] = "sweep of 10,000 within 10× the wall time of optlab run, at most ~50 MB"
        cases[0]["passes"] = tiny_rows["sweep of 10,000"]["wall_ratio"] <= 10 and \
            tiny_rows["sweep of 10,000"]["bytes"] <= 50e6
        if os.environ.get("OPTLAB_DATA") and not args.skip_lecture:
            cases.append(case(f"lecture MLP 784-225-225-10, 1 epoch of {args.train_subset:,} MNIST images", {
                "optlab run": ["run", *lecture(args.train_subset)],
                **{f"sweep of {n}": lecture_sweep(n, args.train_subset) for n in (1, 8, 64)},
            }, args.repeats, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "repeats": args.repeats,
                      "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
