"""The experiment registry and the contract every experiment fulfils.

An experiment is known only to itself: no other module compares against its name. It tells the
rest of optlab everything they need through the hooks of its `Experiment` entry:

    prepare(cfg) -> job                 `optlab run`: validate, load data, build the problem; may raise
                                        an OptlabError; nothing has been written yet. Then
    job(ctx) -> RunResult               train and analyse, writing figures into ctx.run_dir
                                        (so that bad input never leaves a run folder behind);
                                        RunResult.figures says what each one shows.
    fields, defaults, default_lrs,      its settings (config.RunConfig fields besides BASE_FIELDS and,
    parsers, check, trains              if it trains, TRAINING_FIELDS), their defaults and parsers, and
                                        cross-field checks on the merged settings (optlab.runs.resolve).
    resumable                           saves checkpoints; `optlab run --resume` may continue it.
    sweep: Sweeping | None              `optlab sweep`: how configurations run as one vmapped program
                                        (None: "cannot be swept"). See `Sweeping`.
    metrics: tuple[str, ...]            summary numbers `optlab sweep --best` may rank by, lower is
                                        better; the first is the default.
    analyze(record, saved, options)     `optlab analyze RUN_DIR`: the Hessian report (a dict with
        -> dict, or None                lambda_max, lambda_min, trace, negative_fraction, method,
                                        n_params, top_eigenvalues, density{eigenvalue, density}, data)
                                        at a finished run's saved parameters, of the matrix that
                                        options.curvature names ("hessian" or "ggn"; the report's
                                        "curvature" key says which; raise ConfigError for one it
                                        cannot give). None: "has no trained parameters to analyze".
    landscape(record, saved, options)   `optlab landscape RUN_DIR`: the loss along the line from the
        -> dict, or None                initial to the final parameters and on two planes through the
                                        final point (optlab.curvature.landscape.landscape's dict, plus
                                        "data"); `saved` holds the run's initial and final parameters
                                        and its trajectory. None: "has no trajectory to draw".
    summary_line(record) -> str         `optlab run`'s one line about a finished run (rich markup).
    overlays(lines, stem) ->            `optlab compare --plot` / `optlab report`: figures beyond the
        [(path, caption)]               common loss curves that overlay several runs of this
                                        experiment. `lines` are (label, record) pairs, one per run;
                                        files are written to paths starting with `stem`.

Experiment modules import without JAX (it is imported inside the functions that compute), so
that the commands that only read results can list and use the registry without it.
"""

from optlab.experiments.contract import (
    EXPERIMENTS,
    Analyze,
    AnalyzeOptions,
    Experiment,
    Job,
    LandscapeOptions,
    LanesJob,
    Overlays,
    Progress,
    RunContext,
    RunResult,
    SaveLane,
    Sweeping,
    SweepProgram,
    SweepProgress,
    default_summary_line,
    training_head,
)

__all__ = [
    "Analyze", "AnalyzeOptions", "EXPERIMENTS", "Experiment", "Job", "LandscapeOptions", "LanesJob", "Overlays",
    "Progress", "RunContext", "RunResult", "SaveLane", "SweepProgram", "SweepProgress", "Sweeping",
    "default_summary_line", "training_head",
]

# Each experiment registers itself on import.
from optlab.experiments import bifurcation, classify, phase_diagram, signals, tiny  # noqa: E402,F401,I001
