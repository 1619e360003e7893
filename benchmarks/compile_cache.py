"""Compile time of `optlab run mnist` with JAX's persistent compilation cache cold, warm and off; prints JSON.

Each round runs, each in a fresh interpreter: a first run into an empty cache folder (cold: compiles and
writes the cache), a second identical run on that folder (warm: loads the programs), and a run with
OPTLAB_NO_COMPILE_CACHE=1 (off). Reported: each run's `summary.compile_time_s` (tracing, lowering and compiling
the epoch and the two evaluations), the medians over `--repeats` rounds and the median warm/cold ratio.
The data are found as `optlab run` finds them ($OPTLAB_DATA, the cache, …).

    python benchmarks/compile_cache.py [--repeats 3] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def compile_time(out: Path, epochs: int, **env: str) -> float:
    environ = {k: v for k, v in os.environ.items() if k not in ("OPTLAB_COMPILE_CACHE", "OPTLAB_NO_COMPILE_CACHE")}
    command = [sys.executable, "-m", "optlab", "run", "mnist", "--epochs", str(epochs), "--out", str(out), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, env=environ | env)
    if done.returncode != 0:
        sys.exit(done.stderr)
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    value = json.loads((run_dir / "metrics.json").read_text())["summary"]["compile_time_s"]
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"cold": [], "warm": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            cache, out = Path(tmp) / f"cache{r}", Path(tmp) / "runs"
            out.mkdir(exist_ok=True)
            times["cold"].append(compile_time(out, args.epochs, OPTLAB_COMPILE_CACHE=str(cache)))
            times["warm"].append(compile_time(out, args.epochs, OPTLAB_COMPILE_CACHE=str(cache)))
            times["off"].append(compile_time(out, args.epochs, OPTLAB_NO_COMPILE_CACHE="1"))
        size = sum(p.stat().st_size for p in (Path(tmp) / "cache0").rglob("*") if p.is_file())
    print(json.dumps({
        "benchmark": "compile_cache",
        "command": f"optlab run mnist --epochs {args.epochs}",
        "compile_time_s": {k: [round(t, 3) for t in ts] for k, ts in times.items()},
        "median_compile_time_s": {k: round(statistics.median(ts), 3) for k, ts in times.items()},
        "median_ratio_warm_over_cold": round(statistics.median(w / c for w, c in zip(times["warm"], times["cold"])), 3),
        "cache_bytes": size,
    }, indent=1))


if __name__ == "__main__":
    main()
