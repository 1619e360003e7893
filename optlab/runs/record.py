"""One run folder's metrics.json over its life, for `optlab run` and `optlab sweep` alike.

    create  status "running", written before any training      (RunRecord.create)
    save    the history, summary and analysis so far            (save_progress, after every epoch)
    finish  the result's status, numbers, figures and params    (finish: metrics.json last of all)
    stop    "interrupted" (Ctrl-C, SIGTERM) or "failed" (error)  (stop: what was saved stays)

so that metrics.json always exists, is valid, and tells the truth. A record whose folder is None
(a sweep's process that is not the writer) keeps its numbers and writes nothing.

A record is kept in the current schema from the start (`results.upgraded`): a schema-1 run that
`optlab run --resume` picks up is rewritten as schema 2 at its first write, and every figure the
resumed run draws is a schema-2 entry, so the file is never a mix of both. (Keeping it at version
1 would mean dropping what the new entries say; nothing in a version-1 record is lost by upgrading.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from optlab import results

if TYPE_CHECKING:
    from optlab.config import RunConfig
    from optlab.experiments import RunResult


class RunRecord:
    def __init__(self, run_dir: Path | None, record: dict) -> None:
        self.run_dir, self.record = run_dir, results.upgraded(record)

    @classmethod
    def create(cls, run_dir: Path | None, cfg: RunConfig, run_id: str, environment: dict | None = None,
               **extra) -> RunRecord:
        """A new run's record (`extra`: more top-level keys, e.g. sweep_id), written at once.
        `environment`: results.environment(), when the caller has it already (a sweep asks once)."""
        from optlab.runs import resolve

        record = {"schema_version": results.SCHEMA_VERSION, "run_id": run_id, "status": "running",
                  "experiment": cfg.experiment, "config": resolve.relevant(cfg),
                  "environment": environment or results.environment(),
                  "history": {}, "summary": {}, "analysis": {}, "figures": {}, **extra}
        return cls(run_dir, record).write()

    def write(self, record: dict | None = None) -> RunRecord:
        if self.run_dir is not None:
            results.write_metrics(self.run_dir, record or self.record)
        return self

    def save_progress(self, history: dict, summary: dict, analysis: dict | None = None) -> None:
        """The run so far. Copies: the experiment goes on appending to its own lists, and an interrupted
        run must record exactly the last consistent state (history and summary of the same epoch)."""
        self.record.update(history={k: list(v) for k, v in history.items()}, summary=dict(summary),
                           analysis=dict(analysis or self.record["analysis"]))
        self.write()

    def finish(self, result: RunResult) -> None:
        """The finished run: params.npz, then metrics.json, then the checkpoint (only for resuming) goes."""
        self.record.update(status=result.status, history=result.history, summary=result.summary,
                           analysis=result.analysis, figures=result.figures)
        self.record = results.upgraded(self.record)  # a plug-in's bare file names become entries
        if self.run_dir is not None:
            results.save_params(self.run_dir, result.params)
            self.write()
            (self.run_dir / results.CHECKPOINT_FILE).unlink(missing_ok=True)

    def stop(self, error: BaseException, exit_code: int | None = None) -> None:
        """Mark the run interrupted (KeyboardInterrupt) or failed (anything else, named in `error`).

        If even this write fails (a full disk), results.record_end raises one WriteError saying both
        what stopped the run and that the record may still say running (`exit_code`: the one to keep).
        """
        if self.run_dir is None:
            return
        if isinstance(error, KeyboardInterrupt):
            results.record_end(self.run_dir, self.record | {"status": "interrupted"}, exit_code=exit_code)
        else:
            ended = self.record | {"status": "failed", "error": f"{type(error).__name__}: {error}"}
            results.record_end(self.run_dir, ended, error, exit_code=exit_code)

    @property
    def status(self) -> str:
        return self.record["status"]
