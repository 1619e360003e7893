"""Commands that do not train never import JAX: they run with jax, jaxlib and optax unimportable; nor does
`import optlab` with its decorators.

Each command runs in a fresh interpreter whose import system refuses those packages, so any
import of them — at module level or inside a function on the command's path — fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BLOCKED = ("jax", "jaxlib", "optax")
# A fresh interpreter in which importing a blocked package raises ImportError; then optlab's CLI.
LAUNCH = f"""
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked: this command must not import JAX")
        return None

sys.meta_path.insert(0, Refuse())
sys.argv = ["optlab", *sys.argv[1:]]
from optlab.cli import main
main()
"""


def without_jax(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCH, *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_the_blocker_really_blocks():
    done = subprocess.run([sys.executable, "-c", LAUNCH.replace("from optlab.cli import main\nmain()", "import jax")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "jax is blocked" in done.stderr


@pytest.fixture
def results(tmp_path: Path, write_run) -> Path:
    root = tmp_path / "results"
    for seed in (0, 1):
        write_run(root, run_id=f"tiny-gd-s{seed}", seed=seed)
    write_run(root, "mnist", run_id="mnist-adam-s0", optimizer="adam", lr=0.001)
    return root


@pytest.mark.parametrize("args", [
    ["--help"], ["run", "--help"], ["sweep", "--help"], ["list"], ["data", "info"],
])
def test_help_list_and_data_info_run_without_jax(args):
    done = without_jax(*args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and done.stdout.strip()


def test_compare_and_report_run_without_jax(results, tmp_path):
    compared = without_jax("compare", results, "--format", "csv", "--out", tmp_path / "figures")
    assert compared.returncode == 0, compared.stderr
    rows = compared.stdout.strip().splitlines()
    assert len(rows) == 4 and {"tiny-gd-s0", "tiny-gd-s1", "mnist-adam-s0"} <= {r.split(",")[0] for r in rows}
    assert any((tmp_path / "figures").glob("*.png"))  # the overlays, the tiny landscape among them
    reported = without_jax("report", results, "--out", tmp_path / "report.html")
    assert reported.returncode == 0, reported.stderr
    assert "tiny-gd-s1" in (tmp_path / "report.html").read_text()


def test_import_optlab_is_cheap_and_its_version_is_the_installed_one():
    code = ("import sys, optlab; optlab.optimizer; optlab.schedule; optlab.experiment; optlab.init; "
            "print(optlab.__version__, sorted(m for m in ('jax', 'optax') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    from importlib.metadata import version

    assert out.stdout.split(" ", 1) == [version("optlab"), "[]\n"]
