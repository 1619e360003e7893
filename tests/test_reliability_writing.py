"""Writing run folders under pressure: two processes on one folder, a full disk, a signal at any moment."""

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optlab import results
from optlab.cli import app
from optlab.errors import ResultsError
from optlab.runs import runner
from test_classify import write_fixture

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
HOLD = ("import sys, time; from optlab.results import claim; claim.acquire(sys.argv[1]); "
        "print('held', flush=True); time.sleep(60)")


def optlab(*args, **kwargs) -> subprocess.Popen:
    """A real `python -m optlab ...` process (stdout, stderr as text)."""
    return subprocess.Popen([sys.executable, "-m", "optlab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, **kwargs)


def hold(folder: Path) -> subprocess.Popen:
    """Another process claiming `folder`, as a running optlab does; returns once it holds it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert process.stdout.readline() == "held\n"
    return process


def status(run_dir: Path) -> str:
    return results.read_metrics(run_dir)["status"]


def one_error_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and "Traceback" not in stderr, stderr
    return stderr


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("bars"))


# ---- one folder, one process ---------------------------------------------------------------------


def test_a_folder_another_process_claimed_is_refused_naming_it(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = hold(folder)
    try:
        for overwrite in (False, True):
            with pytest.raises(ResultsError, match=rf"run folder {folder} is in use by another optlab process "
                                                   rf"\(pid {holder.pid}\)"):
                results.create_run_dir(folder, overwrite)
        (folder / "metrics.json").write_text("{}")  # what the holder writes: still "in use", not "not empty"
        for attempt in (lambda: results.create_run_dir(folder), lambda: results.claim_run_dir(folder)):
            with pytest.raises(ResultsError, match=f"run folder {folder} is in use by another optlab process"):
                attempt()
    finally:
        holder.kill()
        holder.wait()


def test_the_claim_of_a_killed_process_is_not_stale(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = hold(folder)
    holder.kill()  # SIGKILL: no clean-up ran, the lock file stays
    holder.wait()
    assert (folder / results.LOCK_FILE).exists()
    assert results.create_run_dir(folder) == folder  # the kernel dropped the lock with the process
    results.release_run_dir(folder)
    assert not any(folder.iterdir())


def test_overwrite_replaces_a_killed_run_and_its_left_lock_file(tmp_path, write_run):
    folder = write_run(tmp_path)
    (folder / results.LOCK_FILE).write_text("12345\n")  # left by a SIGKILLed run
    results.create_run_dir(folder, overwrite=True)
    results.release_run_dir(folder)
    assert not any(folder.iterdir())


def test_resume_refuses_overwrite_instead_of_ignoring_it(tmp_path, write_run):
    folder = write_run(tmp_path, status="interrupted")
    before = (folder / "metrics.json").read_bytes()
    result = CliRunner().invoke(app, ["run", "--resume", str(folder), "--overwrite"])
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == (f"error: --resume continues {folder} in place; "
                                             "--overwrite cannot be given with it\n")
    assert (folder / "metrics.json").read_bytes() == before


def test_a_refused_resume_leaves_the_folder_as_it_was(tmp_path, write_run):
    done, notes = write_run(tmp_path), tmp_path / "notes"
    notes.mkdir()
    for folder, reason in ((done, "has completed"), (notes, "no such file")):
        before = sorted(p.name for p in folder.iterdir())
        process = optlab("run", "--resume", folder, "-q")
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 2 and reason in one_error_line(stderr)
        assert sorted(p.name for p in folder.iterdir()) == before  # no lock file left behind


@pytest.mark.slow
def test_two_runs_started_together_into_one_folder_exactly_one_wins(tmp_path):
    for round_ in range(10):
        run_dir = tmp_path / f"same{round_}"
        processes = [optlab("run", "tiny", "--steps", 200, "--run-dir", run_dir, "-q") for _ in range(2)]
        outcomes = sorted((p.wait(timeout=120), *p.communicate()) for p in processes)
        (won, out, err), (lost, _, lost_err) = outcomes
        assert (won, lost) == (0, 2), outcomes
        assert out == f"{run_dir}\n" and err == ""
        assert str(run_dir) in one_error_line(lost_err)
        record = results.read_metrics(run_dir)
        assert record["status"] == "completed" and len(record["history"]["loss"]) == 201
        assert sorted(p.name for p in run_dir.iterdir()) == ["landscape.png", "loss.png", "metrics.json", "params.npz"]


@pytest.mark.slow
def test_two_resumes_started_together_of_one_folder_exactly_one_wins(data_dir, tmp_path):
    stopped = tmp_path / "stopped"
    first = optlab("run", "mnist", "--data-dir", data_dir, "--hidden", 16, "--batch-size", 20, "--epochs", 40,
                   "--input-noise", 0, "--checkpoint-every", 1, "--run-dir", stopped, "-q")
    deadline = time.monotonic() + 60
    while not ((stopped / "checkpoint.npz").exists() and len(_epochs(stopped)) >= 2):
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=60) == 130 and status(stopped) == "interrupted"
    for round_ in range(3):
        run_dir = tmp_path / f"resume{round_}"
        shutil.copytree(stopped, run_dir)
        processes = [optlab("run", "--resume", run_dir, "-q") for _ in range(2)]
        outcomes = sorted((p.wait(timeout=120), *p.communicate()) for p in processes)
        (won, out, err), (lost, _, lost_err) = outcomes
        assert (won, lost) == (0, 2), outcomes
        assert out == f"{run_dir}\n" and str(run_dir) in one_error_line(lost_err)
        record = results.read_metrics(run_dir)
        assert record["status"] == "completed" and _epochs(run_dir) == list(range(1, 41))


def _epochs(run_dir: Path) -> list:
    try:
        return results.read_metrics(run_dir)["history"].get("epoch", [])
    except ResultsError:
        return []


# ---- a full disk ---------------------------------------------------------------------------------

FULL_DISK = """
import errno, os, sys
fail_at, persistent = int(sys.argv[1]), sys.argv[2] == "persistent"
calls = [0]
real_fsync = os.fsync

def fsync(fd):  # the disk fills at the fail_at-th file optlab writes (for good, or only that once)
    calls[0] += 1
    if calls[0] == fail_at or (persistent and calls[0] > fail_at):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)

os.fsync = fsync
sys.argv = ["optlab", *sys.argv[3:]]
from optlab.cli import main
main()
"""


@pytest.mark.parametrize("persistent", [False, True], ids=["record-written", "record-unwritable"])
def test_a_full_disk_mid_run_is_one_line_exit_74_and_the_record_says_failed(tmp_path, persistent):
    run_dir = tmp_path / "run"
    # write 1: metrics.json "running"; write 2: the first figure; then params.npz, metrics.json "completed".
    # `-c`, as `-m optlab` does, puts the working directory first on sys.path: the same optlab as the tests'.
    args = [sys.executable, "-c", FULL_DISK, "2", "persistent" if persistent else "once",
            "run", "tiny", "--steps", "20", "--run-dir", str(run_dir), "-q"]
    done = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == results.EXIT_IO == 74, done.stderr
    line = one_error_line(done.stderr)
    assert line.startswith(f"error: cannot write {run_dir}/") and "No space left on device" in line
    if persistent:  # even the failed record could not be written: the line says so
        assert f"{run_dir / 'metrics.json'} could not be marked failed either" in line
        assert status(run_dir) == "running"
    else:
        record = results.read_metrics(run_dir)
        assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert not list(run_dir.glob(".*.tmp"))


def test_an_os_error_outside_the_results_module_is_one_line_exit_74(monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/somewhere/figure.png")

    monkeypatch.setattr(runner, "run", full)
    result = CliRunner().invoke(app, ["run", "tiny"])
    assert result.exit_code == 74
    assert one_error_line(result.stderr) == "error: I/O error on /somewhere/figure.png: No space left on device\n"


def test_write_atomic_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    results.write_atomic(path, b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(results.WriteError, match=f"cannot write {path}: No space left on device"):
        results.write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# ---- a signal at any moment ------------------------------------------------------------------------


def handlers_installed(pid: int) -> bool:
    """True once optlab's handler is installed: SIGTERM is caught (Python alone catches only SIGINT).

    Before that, the interpreter is still starting (tens of milliseconds) and no optlab code has run.
    """
    try:
        status_text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status_text.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc to see the handler installed")
def test_a_signal_at_any_moment_exits_130_or_143_in_one_line_and_the_record_says_interrupted(tmp_path):
    rng = random.Random(0)
    seen = {"no folder": 0, "interrupted": 0}
    for attempt in range(16):
        signum = (signal.SIGINT, signal.SIGTERM)[attempt % 2]
        run_dir = tmp_path / f"run{attempt}"
        process = optlab("run", "tiny", "--steps", 100000, "-q", "--run-dir", run_dir)
        deadline = time.monotonic() + 30
        while not handlers_installed(process.pid):
            assert time.monotonic() < deadline and process.poll() is None, "the handler was never installed"
        if attempt < 8:  # within the first seconds: the imports, parsing, the preparation
            time.sleep(rng.uniform(0, 2.0))
        else:  # once the folder exists: compiling, running
            while not (run_dir / "metrics.json").exists():
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 1.0))
        for _ in range(rng.choice([1, 1, 2, 3])):  # impatient users press Ctrl-C again
            process.send_signal(signum)
            time.sleep(rng.uniform(0, 0.1))
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], (attempt, stderr)
        one_error_line(stderr)
        if run_dir.exists() and any(p.name != results.LOCK_FILE for p in run_dir.iterdir()):
            assert status(run_dir) == "interrupted" and str(run_dir) in stderr
            seen["interrupted"] += 1
        else:
            seen["no folder"] += 1
    assert seen["interrupted"] >= 8, seen  # signals really landed during the runs too


def test_signals_are_noted_while_deferred_and_raised_at_the_next_safe_point(monkeypatch):
    from optlab import interrupts

    monkeypatch.setattr(interrupts, "_received", [])
    with interrupts.deferred():
        interrupts._handler(signal.SIGTERM, None)  # as the signal module calls it: nothing raised
        assert interrupts.received() == signal.SIGTERM and interrupts.exit_code() == 143
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    with pytest.raises(KeyboardInterrupt):  # outside, it raises at once, as Python's own handler
        interrupts._handler(signal.SIGINT, None)


@pytest.mark.parametrize("received, code", [([], 130), ([signal.SIGTERM], 143)], ids=["Ctrl-C", "SIGTERM"])
def test_an_interrupted_command_says_so_in_one_line_with_its_signal_code(monkeypatch, received, code):
    from optlab import interrupts

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(interrupts, "_received", received)
    monkeypatch.setattr(runner, "run", stopped)  # Typer alone would exit 130 without a word, even after SIGTERM
    result = CliRunner().invoke(app, ["run", "tiny"])
    assert result.exit_code == code and one_error_line(result.stderr) == "error: interrupted\n"


def test_a_signal_inside_a_gc_callback_is_sent_again_rather_than_lost(monkeypatch):
    import gc

    from optlab import interrupts

    sent = []
    monkeypatch.setattr(interrupts, "_received", [])
    monkeypatch.setattr(os, "kill", lambda pid, signum: sent.append((pid, signum)))

    def xla_gc_callback(phase, info):  # where JAX's callback would swallow a KeyboardInterrupt
        interrupts._handler(signal.SIGINT, sys._getframe())

    monkeypatch.setattr(gc, "callbacks", [xla_gc_callback])
    xla_gc_callback("start", {})  # no KeyboardInterrupt here...
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGINT)]  # ...but the signal again, a moment later
