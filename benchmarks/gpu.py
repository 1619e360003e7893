"""optlab on a GPU: every speed claim of the design card measured in one script; prints and writes JSON.

For a machine with an NVIDIA GPU, JAX with CUDA and no network: MNIST must already be on disk
(--data-dir, or $OPTLAB_DATA), and neither pooch nor platformdirs is needed (no download, and no
compilation cache: every compile time is a cold one). Sections, each timed, each recorded even
when another fails:

  device          the GPU's name (JAX's device kind, and nvidia-smi's where it is installed)
  tiny_float64    `optlab run tiny --opt newton`, and the same whole-run program in process:
                  its numbers' dtype (float64 on the GPU) and Newton's final loss
  lecture         `optlab run mnist --opt adam --lr-schedule anneal` (the lecture command, 50 epochs):
                  training time after compile, compile time, time to 1.2 % test error and its epoch
  naive_vs_engine benchmarks/epoch_speed.py: the naive per-step loop against the engine's epoch
  sweeps          1, 8 and 64 lecture-network configurations as one vmapped program (what
                  `optlab sweep` compiles: the epoch with its evaluation), per-epoch time and ratios
  data_parallel   `optlab run mnist --data-parallel` over every device
  analyze         `optlab analyze` of the lecture run (Hessian spectrum by Lanczos)

and `targets`: 50 lecture epochs < 1.5 s after compile, 64 configurations < 4× one, time to 1.2 %
< 5 s. The whole takes at most --budget-s (480 s: each command's timeout is what is left of it).
The script and the commands it starts share the GPU, so none preallocates its memory
(XLA_PYTHON_CLIENT_PREALLOCATE=false unless set).

    python3 benchmarks/gpu.py --data-dir DIR --out gpu.json       # on the GPU machine
    python3 benchmarks/gpu.py --quick --data-dir DIR               # test-sized, on any CPU (a test runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: optlab is this checkout's
    sys.path.insert(0, str(ROOT))

TARGETS = {"lecture_after_compile_s": 1.5, "sweep_64_over_1": 4.0, "time_to_target_s": 5.0}
LECTURE = ["run", "mnist", "--opt", "adam", "--lr-schedule", "anneal"]
# What each mode runs. full: the lecture's sizes on MNIST; quick: the same code paths, test-sized.
MODES = {
    "full": {"lecture": [], "data_parallel": ["--epochs", "5"], "sweep_lanes": (1, 8, 64), "sweep_hidden": (225, 225),
             "sweep_epochs": 3, "sweep_settings": {}, "epoch_speed": [],
             "analyze": []},
    "quick": {"lecture": ["--epochs", "2", "--hidden", "8", "--batch-size", "10", "--lr", "0.01"],
              "data_parallel": ["--epochs", "1", "--hidden", "8", "--batch-size", "20"],
              "sweep_lanes": (1, 2), "sweep_hidden": (8,), "sweep_epochs": 1, "sweep_settings": {"batch_size": 20},
              "epoch_speed": ["--n-train", "400", "--epochs", "1", "--repeats", "1"],
              "analyze": ["--k", "2", "--subset", "40", "--probes", "2", "--max-order", "12"]},
}


class Budget:
    """Seconds left of the whole script's allowance; each command may use at most what is left."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def environment(data_dir: str) -> dict:
    """The commands' environment: this checkout's optlab, the data folder, no compilation cache (cold compiles),
    and main's setting that no JAX process preallocates the GPU's memory."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return os.environ | {"PYTHONPATH": path, "OPTLAB_DATA": data_dir, "OPTLAB_NO_COMPILE_CACHE": "1"}


def command(args: list[str], env: dict, budget: Budget) -> dict:
    """Run `args` (a Python script and its arguments) within what is left of the budget; its wall time and output."""
    begin = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                              timeout=max(1.0, budget.left()))
    except subprocess.TimeoutExpired:
        return {"command": args, "rc": None, "wall_s": round(time.perf_counter() - begin, 2), "error": "budget spent"}
    out = {"command": args, "rc": done.returncode, "wall_s": round(time.perf_counter() - begin, 2)}
    if done.returncode != 0:
        out["error"] = done.stderr.strip()[-2000:]
    return out | {"stdout": done.stdout}


def optlab(args: list[str], env: dict, budget: Budget) -> dict:
    return command(["-m", "optlab", *args], env, budget)


def shown(result: dict) -> dict:
    """A command's record without its standard output."""
    return {k: v for k, v in result.items() if k != "stdout"}


def section(name: str, run: Callable[[], dict], budget: Budget, report: dict) -> None:
    """report[name] = run()'s record with its seconds, or the error that stopped it; skipped once no time is left."""
    if budget.left() < 5:
        report[name] = {"skipped": "budget spent"}
        return
    begin = time.perf_counter()
    try:
        report[name] = run()
    except Exception as e:  # a section that fails is recorded, and the others still run
        report[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    report[name]["section_s"] = round(time.perf_counter() - begin, 2)
    print(f"[gpu.py] {name}: {report[name]['section_s']} s", file=sys.stderr, flush=True)


def device_info() -> dict:
    import jax

    device = jax.devices()[0]
    info = {"backend": jax.default_backend(), "platform": device.platform, "device_kind": device.device_kind,
            "device_count": jax.device_count(), "jax": jax.__version__, "python": sys.version.split()[0]}
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip().splitlines()
    return info


def tiny_float64(env: dict, budget: Budget, out: Path) -> dict:
    """The tiny problem with Newton's method: the CLI run, and its program in process for the dtype it computes in."""
    import numpy as np

    from optlab import config
    from optlab.experiments import tiny
    from optlab.runs import resolve

    cli = optlab(["run", "tiny", "--opt", "newton", "--run-dir", str(out / "tiny"), "--quiet"], env, budget)
    cfg = resolve.resolve([config.Layer({"experiment": "tiny", "optimizer": "newton"}, "flag")])
    history, _, compile_time, wall_time = tiny.simulate(cfg)
    summary = json.loads((out / "tiny" / "metrics.json").read_text())["summary"] if cli["rc"] == 0 else None
    return {"cli": shown(cli), "cli_summary": summary, "dtype": str(history["params"].dtype),
            "float64": history["params"].dtype == np.float64, "final_loss": float(history["loss"][-1]),
            "in_process_compile_s": round(compile_time, 4), "in_process_run_s": round(wall_time - compile_time, 5)}


def run_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def lecture(env: dict, budget: Budget, out: Path, extra: list[str]) -> dict:
    """The lecture command: its summary's times and the epoch its test error first reached the target."""
    run = optlab([*LECTURE, *extra, "--run-dir", str(out / "lecture"), "--quiet"], env, budget)
    if run["rc"] != 0:
        return {"cli": shown(run)}
    record = run_record(out / "lecture")
    summary, history = record["summary"], record["history"]
    reached = [e for e, err in zip(history["epoch"], history["test_error"]) if err <= summary["target_error"]]
    return {"cli": shown(run), "epochs": summary["epochs"],
            "after_compile_s": round(summary["wall_time_s"] - summary["compile_time_s"], 3),
            "epoch_calls_s": round(sum(history["epoch_time_s"]), 3),
            "compile_time_s": summary["compile_time_s"], "time_to_target_s": summary["time_to_target_s"],
            "target_error": summary["target_error"], "target_epoch": int(reached[0]) if reached else None,
            "test_error": summary["test_error"], "best_test_error": summary["best_test_error"],
            "median_epoch_s": summary["epoch_time_s"]}


def naive_vs_engine(env: dict, budget: Budget, extra: list[str]) -> dict:
    run = command([str(ROOT / "benchmarks" / "epoch_speed.py"), *extra], env, budget)
    if run["rc"] != 0:
        return {"cli": shown(run)}
    result = json.loads(run["stdout"])
    keep = ("epoch_s", "samples_per_s", "first_epoch_s", "ratio_naive_over_optlab", "ratio_optlab_over_fused",
            "paired_ratio_naive_over_optlab", "paired_ratio_optlab_over_fused", "n_train", "timed_epochs_per_variant")
    return {"wall_s": run["wall_s"], **{k: result[k] for k in keep}}


def sweeps(data_dir: str, mode: dict) -> dict:
    """Per-epoch time of n lecture-network configurations as one program, as optlab sweep runs a chunk of them."""
    from functools import partial

    import jax

    from optlab import config
    from optlab.core import devices
    from optlab.data import datasets
    from optlab.experiments import _classify_train as train
    from optlab.runs import resolve

    data = datasets.load("mnist", data_dir)
    sets = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    n_train, sizes = len(data.train_labels), (784, *mode["sweep_hidden"], 10)
    rows = {}
    for n in mode["sweep_lanes"]:
        cfgs = [resolve.resolve([config.Layer({"experiment": "mnist", "optimizer": "adam", "lr": 1e-3 * (1 + i % 4),
                                               "seed": i, "hidden": list(mode["sweep_hidden"]),
                                               **mode["sweep_settings"]}, "flag")]) for i in range(n)]
        lanes = devices.Lanes.over(n)
        placed = lanes.replicate(sets)
        hp = lanes.stack([devices.to_host(train.hyperparams(c)) for c in cfgs])
        begin = time.perf_counter()
        init = jax.vmap(partial(train.initial_state, cfgs[0], sizes, n_train))
        state = jax.jit(init, out_shardings=lanes.sharded)(hp)
        evaluated = jax.vmap(train.train_epoch_evaluated(cfgs[0], n_train), in_axes=(0, 0, None, None, None, None))
        epoch = jax.jit(evaluated, out_shardings=lanes.sharded).lower(state, hp, *placed).compile()
        compile_s = time.perf_counter() - begin
        times = []
        for _ in range(1 + mode["sweep_epochs"]):  # the first call warms up
            begin = time.perf_counter()
            state, loss, lr, train_metrics, test_metrics = epoch(state, hp, *placed)
            test_error = devices.to_host(test_metrics["error"])  # the row's numbers on the host, as EpochLoop
            times.append(time.perf_counter() - begin)
        rows[str(n)] = {"compile_s": round(compile_s, 3), "epoch_s": round(statistics.median(times[1:]), 4),
                        "all_epoch_s": [round(t, 4) for t in times], "test_error": [float(e) for e in test_error[:n]]}
    one = rows[str(mode["sweep_lanes"][0])]["epoch_s"]
    return {"network": "-".join(map(str, sizes)), "n_train": n_train, "lanes": rows,
            "ratio_over_one": {n: round(r["epoch_s"] / one, 3) for n, r in rows.items()}}


def data_parallel(env: dict, budget: Budget, out: Path, extra: list[str]) -> dict:
    run = optlab([*LECTURE, "--data-parallel", *extra, "--run-dir", str(out / "data-parallel"), "--quiet"], env,
                 budget)
    if run["rc"] != 0:
        return {"cli": shown(run)}
    summary = run_record(out / "data-parallel")["summary"]
    keep = ("data_parallel_devices", "epochs", "epoch_time_s", "compile_time_s", "wall_time_s", "test_error")
    return {"cli": shown(run), **{k: summary.get(k) for k in keep}}


def analyze(env: dict, budget: Budget, out: Path, extra: list[str]) -> dict:
    run_dir = out / "lecture"
    if not (run_dir / "params.npz").is_file():
        return {"skipped": "no lecture run to analyze"}
    run = optlab(["analyze", str(run_dir), *extra], env, budget)
    if run["rc"] != 0:
        return {"cli": shown(run)}
    hessian = run_record(run_dir)["analysis"]["hessian"]
    keep = ("method", "n_params", "k", "lambda_max", "lambda_min", "trace", "negative_fraction", "zero_fraction",
            "lanczos_order")
    converged = {f"{end}_converged": len(hessian.get(f"{end}_eigenvalues", [])) for end in ("top", "bottom")}
    return {"cli": shown(run), "printed": run["stdout"].strip().splitlines()[-3:],
            **{k: hessian.get(k) for k in keep if k in hessian}, **converged}


def targets(report: dict) -> dict:
    """The design card's GPU targets against what was measured (None where that section did not finish)."""
    lecture_run, sweep = report.get("lecture", {}), report.get("sweeps", {})
    ratio = sweep.get("ratio_over_one", {}).get("64")
    values = {"lecture_after_compile_s": lecture_run.get("after_compile_s"), "sweep_64_over_1": ratio,
              "time_to_target_s": lecture_run.get("time_to_target_s")}
    return {k: {"value": v, "target": f"< {TARGETS[k]}", "met": None if v is None else v < TARGETS[k]}
            for k, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding MNIST (default: $OPTLAB_DATA)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--quick", action="store_true", help="test-sized: 2 tiny epochs, small sweeps (any CPU)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="the whole script's time limit (default 480)")
    parser.add_argument("--keep", type=Path, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()
    data_dir = args.data_dir or os.environ.get("OPTLAB_DATA")
    if not data_dir or not Path(data_dir).is_dir():
        parser.error("MNIST is needed on disk: give --data-dir DIR or set $OPTLAB_DATA (there is no download)")
    os.environ["OPTLAB_NO_COMPILE_CACHE"] = "1"  # this process's compiles are cold too
    # This process and the commands it starts share the GPU: none may take JAX's default 75 % of its memory.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    mode, budget, begin = MODES["quick" if args.quick else "full"], Budget(args.budget_s), time.perf_counter()
    env = environment(str(Path(data_dir).resolve()))
    report: dict = {"benchmark": "gpu", "mode": "quick" if args.quick else "full", "budget_s": args.budget_s}
    with tempfile.TemporaryDirectory(prefix="optlab-gpu-") as scratch:
        out = args.keep or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        section("device", device_info, budget, report)
        section("tiny_float64", lambda: tiny_float64(env, budget, out), budget, report)
        section("lecture", lambda: lecture(env, budget, out, mode["lecture"]), budget, report)
        section("sweeps", lambda: sweeps(env["OPTLAB_DATA"], mode), budget, report)
        section("naive_vs_engine", lambda: naive_vs_engine(env, budget, mode["epoch_speed"]), budget, report)
        section("data_parallel", lambda: data_parallel(env, budget, out, mode["data_parallel"]), budget, report)
        section("analyze", lambda: analyze(env, budget, out, mode["analyze"]), budget, report)
    report["targets"] = targets(report)
    report["total_s"] = round(time.perf_counter() - begin, 2)
    report["within_budget"] = report["total_s"] <= args.budget_s
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
