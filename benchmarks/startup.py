"""Start-up time of the commands that do not train, as ratios to a minimal Typer app in the same process.

    python3 benchmarks/startup.py [--repeats 7]

Each command runs in a fresh interpreter `--repeats` times, round-robin with the baselines (a two-command
Typer app's `--help`, and `import typer, rich, matplotlib.pyplot`); reported are the median wall times and
the medians of each round's ratio to a baseline, because absolute seconds on a shared machine are noise.
`compare` reads three tiny runs made first in a temporary folder. Each command runs once untimed first, with
Python's bytecode cache allowed (PYTHONDONTWRITEBYTECODE removed from its environment), so optlab's modules
load from bytecode as the libraries' do (pip compiles an installed optlab's). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MINIMAL_APP = """
import typer
app = typer.Typer()
@app.command()
def a(x: int = 1): pass
@app.command()
def b(): pass
app()
"""


ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    optlab = [sys.executable, "-m", "optlab"]
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        for lr in ("0.1", "0.25", "0.35"):
            subprocess.run([*optlab, "run", "tiny", "--lr", lr, "--steps", "20", "--out", str(results), "-q"],
                           capture_output=True, check=True)
        baselines = {
            "minimal typer --help": [sys.executable, "-c", MINIMAL_APP, "--help"],
            "import typer, rich, matplotlib": [sys.executable, "-c", "import typer, rich, matplotlib.pyplot"],
        }
        commands = {name: [*optlab, *argv] for name, argv in {
            "optlab --help": ["--help"],
            "optlab run --help": ["run", "--help"],
            "optlab list": ["list"],
            "optlab data info": ["data", "info"],
            "optlab compare --no-figures": ["compare", str(results), "--no-figures"],
            "optlab compare": ["compare", str(results), "--out", str(Path(tmp) / "figures")],
            "optlab report": ["report", str(results), "--out", str(Path(tmp) / "report.html")],
        }.items()}
        everything = {**baselines, **commands}
        for argv in everything.values():
            seconds(argv)  # warm: bytecode written, files in the page cache
        times: dict[str, list[float]] = {name: [] for name in everything}
        for _ in range(args.repeats):  # round-robin, so that a slow spell of the machine hits every command
            for name, argv in everything.items():
                times[name].append(seconds(argv))

    def ratios(baseline: str) -> dict[str, float]:
        return {name: round(statistics.median(t / b for t, b in zip(times[name], times[baseline])), 2)
                for name in commands}

    print(json.dumps({
        "repeats": args.repeats,
        "baseline_s": {name: round(statistics.median(times[name]), 3) for name in baselines},
        "seconds": {name: round(statistics.median(times[name]), 3) for name in commands},
        "ratio_to_minimal_typer_help": ratios("minimal typer --help"),
        "ratio_to_importing_typer_rich_matplotlib": ratios("import typer, rich, matplotlib"),
    }, indent=1))


if __name__ == "__main__":
    main()
