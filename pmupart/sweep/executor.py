"""Run a sweep's points: serially, or on Dask (a local cluster of processes, or a scheduler
given by address), with a checkpoint that makes an interrupted sweep resumable.

Points go out in batches (one Dask task runs a batch; :func:`auto_batch` picks the size);
rows come back as batches finish, in any order, and are appended to the checkpoint at
once (``RESULTS.ckpt.jsonl``: a header line with the sweep's fingerprint, then one JSON row
per line).  ``resume=True`` reads the checkpoint and runs only the points it lacks.  A
worker that dies mid-batch loses nothing: the scheduler runs the batch again elsewhere (up
to ``distributed.scheduler.allowed-failures`` times), and every row is a function of its
point, so a rerun gives the same row.  The rows are returned sorted by point.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pmupart.errors import PmupartError
from pmupart.sweep.runner import Job, run_batch
from pmupart.sweep.spec import Point, Sweep

__all__ = ["Checkpoint", "SweepRunError", "auto_batch", "batches", "execute"]

Row = dict[str, Any]
#: ``on_rows(rows, done, total)``: called with each batch's rows as they arrive.
OnRows = Callable[[list[Row], int, int], None]


class SweepRunError(PmupartError):
    """The sweep could not run (a bad checkpoint, an unreachable scheduler, Dask missing)."""


class Checkpoint:
    """The rows of a sweep so far, one JSON line each, after a header line naming the sweep
    (its fingerprint): ``append`` flushes each batch to disk as it arrives."""

    def __init__(self, path: str | Path, sweep: Sweep) -> None:
        self.path = Path(path)
        self.fingerprint = sweep.fingerprint()
        self.total = len(sweep.points)
        self._fh: Any = None

    def load(self) -> dict[int, Row]:
        """The rows already done (a torn last line, from a crash mid-write, is dropped)."""
        if not self.path.exists():
            return {}
        with self.path.open(encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        try:
            head = json.loads(lines[0])
        except (json.JSONDecodeError, IndexError):
            raise SweepRunError(f"{self.path}: not a pmupart sweep checkpoint") from None
        if not isinstance(head, dict) or head.get("pmupart_sweep_checkpoint") != 1:
            raise SweepRunError(f"{self.path}: not a pmupart sweep checkpoint")
        if head.get("fingerprint") != self.fingerprint:
            raise SweepRunError(f"{self.path}: the checkpoint is of another sweep (or the "
                                "sweep file or its base scenario changed); delete it to start "
                                "again")
        rows: dict[int, Row] = {}
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the torn tail of an interrupted write
            if isinstance(row, dict) and isinstance(row.get("point"), int):
                rows[row["point"]] = row
        return rows

    def open(self, fresh: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh or not self.path.exists():
            self._fh = self.path.open("w", encoding="utf-8")
            self._fh.write(json.dumps({"pmupart_sweep_checkpoint": 1,
                                       "fingerprint": self.fingerprint,
                                       "points": self.total}) + "\n")
        else:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.flush()

    def append(self, rows: Sequence[Row]) -> None:
        assert self._fh is not None
        self._fh.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def auto_batch(points: int, workers: int) -> int:
    """Runs per task: about 16 tasks per worker (so a slow tail evens out), at most 64 runs
    per task (so a lost worker loses little and progress moves)."""
    return max(1, min(64, points // max(1, workers * 16)))


def batches(points: Sequence[Point], size: int) -> Iterator[list[Point]]:
    for i in range(0, len(points), size):
        yield list(points[i:i + size])


def execute(sweep: Sweep, *, checkpoint: Checkpoint | None = None, resume: bool = False,
            workers: int | None = None, scheduler: str | None = None,
            batch: int | None = None, on_rows: OnRows | None = None) -> list[Row]:
    """Run every point of ``sweep`` not already in the checkpoint; the rows, by point.

    ``workers = 0`` runs in this process (no Dask); otherwise a ``LocalCluster`` of
    ``workers`` single-threaded processes (default: one per CPU), or the Dask cluster at
    ``scheduler`` (``tcp://host:8786``), whose workers must have pmupart installed.
    """
    done: dict[int, Row] = {}
    if checkpoint is not None:
        if resume:
            done = checkpoint.load()
        elif checkpoint.path.exists():
            raise SweepRunError(f"{checkpoint.path} exists (an interrupted sweep): resume it "
                                "with --resume, or delete it to start again")
    todo = [p for p in sweep.points if p.index not in done]
    total = len(sweep.points)
    nworkers = (os.cpu_count() or 1) if workers is None else workers
    size = batch or sweep.batch or auto_batch(len(todo), nworkers or 1)
    job = Job.of(sweep)

    count = len(done)
    if checkpoint is not None:
        checkpoint.open(fresh=not resume)
    try:
        if on_rows is not None and done:
            on_rows([], len(done), total)

        def take(rows: list[Row]) -> None:
            nonlocal count
            for r in rows:
                done[r["point"]] = r
            if checkpoint is not None:
                checkpoint.append(rows)
            count += len(rows)
            if on_rows is not None:
                on_rows(rows, count, total)

        if todo and scheduler is None and nworkers == 0:
            for b in batches(todo, size):
                take(run_batch(job, b))
        elif todo:
            _on_dask(job, list(batches(todo, size)), nworkers, scheduler, take)
    finally:
        if checkpoint is not None:
            checkpoint.close()
            if not resume and count == 0:
                checkpoint.remove()  # nothing ran (no scheduler, say): leave no stale file
    return [done[p.index] for p in sweep.points]


def _on_dask(job: Job, work: list[list[Point]], workers: int, scheduler: str | None,
             take: Callable[[list[Row]], None]) -> None:
    import importlib

    try:  # typed as Any: distributed's API is not annotated
        dd: Any = importlib.import_module("distributed")
    except ImportError:
        raise SweepRunError("sweeps on Dask need dask.distributed: pip install "
                            "'pmupart[sweep]'") from None
    import logging

    cluster: Any = None
    try:
        if scheduler is not None:
            try:
                client = dd.Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as e:
                raise SweepRunError(f"cannot reach the Dask scheduler at {scheduler}: {e}"
                                    ) from None
        else:
            # The workers' statistical profiler samples the running thread's stack every
            # 10 ms and keeps the samples: over a long sweep of small tasks that grew each
            # worker by about 6 MiB per 1,000 runs (benchmarks/bench_sweep.py); off here.
            # The dashboard takes any free port: another cluster may hold 8787.
            dask: Any = importlib.import_module("dask")
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                cluster = dd.LocalCluster(n_workers=max(1, workers), threads_per_worker=1,
                                          processes=True, dashboard_address=":0",
                                          silence_logs=logging.ERROR)
            client = dd.Client(cluster)
        try:
            futures = [client.submit(run_batch, job, b, pure=False) for b in work]
            for fut, rows in dd.as_completed(futures, with_results=True):
                fut.release()
                take(rows)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
