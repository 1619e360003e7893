"""JAX's persistent compilation cache (optlab.core.compile_cache): a run writes entries where it is pointed, the
opt-out writes none, and without platformdirs (the GPU machine) there is simply no cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from optlab.core import compile_cache


def tiny_run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """`optlab run tiny` in a fresh interpreter (JAX's cache is configured once per process), with JAX's
    thresholds at zero so that the tiny programs, which compile in milliseconds, are cached."""
    environ = {k: v for k, v in os.environ.items() if k not in (compile_cache.DIR_ENV, compile_cache.OFF_ENV)}
    environ |= {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
                "JAX_PLATFORMS": "cpu", **env}
    environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    command = [sys.executable, "-m", "optlab", "run", "tiny", "--steps", "5", "--out", str(tmp_path / "runs")]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=300)


def entries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_a_run_writes_cache_entries_into_the_named_folder(tmp_path):
    cache = tmp_path / "cache"
    done = tiny_run(tmp_path, OPTLAB_COMPILE_CACHE=str(cache))
    assert done.returncode == 0, done.stderr
    assert entries(cache), "no compiled program was cached"


@pytest.mark.parametrize("off", ["1", "true"])
def test_the_opt_out_writes_none(tmp_path, off):
    cache = tmp_path / "cache"
    done = tiny_run(tmp_path, OPTLAB_COMPILE_CACHE=str(cache), OPTLAB_NO_COMPILE_CACHE=off)
    assert done.returncode == 0, done.stderr
    assert entries(cache) == []


def test_folder_is_under_the_user_cache_dir_by_default(monkeypatch):
    platformdirs = pytest.importorskip("platformdirs")
    monkeypatch.delenv(compile_cache.DIR_ENV, raising=False)
    monkeypatch.delenv(compile_cache.OFF_ENV, raising=False)
    assert compile_cache.folder() == Path(platformdirs.user_cache_dir("optlab")) / "jax-cache"


def test_without_platformdirs_there_is_no_cache_and_no_error(monkeypatch):
    monkeypatch.delenv(compile_cache.DIR_ENV, raising=False)
    monkeypatch.delenv(compile_cache.OFF_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # `import platformdirs` now raises ImportError
    assert compile_cache.folder() is None
    assert compile_cache.enable() is None


def test_a_named_folder_needs_no_platformdirs_and_the_opt_out_wins(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "platformdirs", None)
    monkeypatch.setenv(compile_cache.DIR_ENV, str(tmp_path))
    monkeypatch.delenv(compile_cache.OFF_ENV, raising=False)
    assert compile_cache.folder() == tmp_path
    monkeypatch.setenv(compile_cache.OFF_ENV, "1")
    assert compile_cache.folder() is None
