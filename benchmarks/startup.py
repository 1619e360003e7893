"""Start-up time of the commands that do not train, as ratios to a minimal Typer app in the same process.

    python3 benchmarks/startup.py [--repeats 7]

Each command runs in a fresh interpreter `--repeats` times; the median wall time is reported with
its ratio to the baselines measured in the same run (a two-command Typer app's `--help`, and
`import typer, rich, matplotlib.pyplot`), because absolute seconds on a shared machine are noise.
`compare` reads three tiny runs made first in a temporary folder. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
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


def median_seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
        typer_help = median_seconds([sys.executable, "-c", MINIMAL_APP, "--help"], args.repeats)
        libraries = median_seconds([sys.executable, "-c", "import typer, rich, matplotlib.pyplot"], args.repeats)
        commands = {
            "optlab --help": ["--help"],
            "optlab run --help": ["run", "--help"],
            "optlab list": ["list"],
            "optlab data info": ["data", "info"],
            "optlab compare --no-figures": ["compare", str(results), "--no-figures"],
            "optlab compare": ["compare", str(results), "--out", str(Path(tmp) / "figures")],
            "optlab report": ["report", str(results), "--out", str(Path(tmp) / "report.html")],
        }
        seconds = {name: median_seconds([*optlab, *argv], args.repeats) for name, argv in commands.items()}
    print(json.dumps({
        "repeats": args.repeats,
        "baseline_s": {"minimal typer --help": round(typer_help, 3),
                       "import typer, rich, matplotlib": round(libraries, 3)},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "ratio_to_minimal_typer_help": {k: round(v / typer_help, 2) for k, v in seconds.items()},
        "ratio_to_importing_typer_rich_matplotlib": {k: round(v / libraries, 2) for k, v in seconds.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
