"""``pmupart sweep SWEEP.toml`` and ``pmupart sweep report RESULTS.parquet``.

Exit codes: 0 every run held every invariant; 1 some run broke an invariant or raised (the
results are written all the same: in a design-space sweep that is an answer, not a
failure), or the sweep could not finish (Dask gave up on a batch; the rows so far are in
the checkpoint); 2 bad input (a malformed sweep file, a checkpoint of another sweep, an
unreachable scheduler, a bad option); 130 interrupted (Ctrl-C; the rows so far are in the
checkpoint: rerun with ``--resume``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from pmupart.cli import fail

_SUBCOMMANDS = ("run", "report")


class _SweepGroup(click.Group):
    """``pmupart sweep FILE`` means ``pmupart sweep run FILE``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in _SUBCOMMANDS and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("sweep", cls=_SweepGroup)
def sweep() -> None:
    """Many runs: a sweep file's axes over a base scenario, on Dask; results as Parquet.

    \b
    pmupart sweep SWEEP.toml [-o RESULTS.parquet] [--csv] [--workers N]
                             [--scheduler tcp://host:8786] [--resume]
    pmupart sweep report RESULTS.parquet
    See docs/sweep.md.
    """


def _progress_bar(show: bool) -> Any:
    if not show:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=False)


def _report(rows: Sequence[dict[str, Any]], meta: dict[str, Any], plots: str | None) -> None:
    from pmupart.sweep.report import plot_results, summary_table

    click.echo(summary_table(rows, meta), nl=False)
    if plots:
        for p in plot_results(rows, meta, plots):
            click.echo(f"pmupart: plot written to {p}", err=True)


@sweep.command("run")
@click.argument("sweep_file", metavar="SWEEP.toml", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default=None, metavar="RESULTS.parquet",
              help="The results file (default: the sweep file's name, .parquet, here).")
@click.option("--csv", "as_csv", is_flag=True, help="Also write the rows as CSV "
              "(RESULTS.csv).")
@click.option("--workers", type=click.IntRange(0, 1024), default=None,
              help="Local cluster size (default: one per CPU); 0 runs in this process "
                   "without Dask.")
@click.option("--scheduler", default=None, metavar="ADDR",
              help="Run on the Dask cluster at ADDR (tcp://host:8786) instead of a local one.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted sweep from its checkpoint: run only what is "
                   "missing.")
@click.option("--batch", type=click.IntRange(1, 100_000), default=None,
              help="Runs per Dask task (default: [sweep] batch, or automatic).")
@click.option("--plots", default=None, metavar="DIR",
              help="Where to write the plots (default: RESULTS-plots/).")
@click.option("--no-plots", is_flag=True, help="Do not draw plots.")
@click.option("--wall-time/--no-wall-time", default=True, show_default=True,
              help="Keep each run's wall time (wall_s); without it the results file is the "
                   "same byte for byte whatever ran it.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: only on a terminal).")
def run_cmd(sweep_file: str, output: str | None, as_csv: bool, workers: int | None,
            scheduler: str | None, resume: bool, batch: int | None, plots: str | None,
            no_plots: bool, wall_time: bool, progress: bool | None) -> None:
    """Run every point of SWEEP.toml; write RESULTS.parquet, print the summary, draw plots.

    \b
    Examples:
      pmupart sweep examples/sweeps/fleet-reservation.toml
      pmupart sweep big.toml --workers 2 -o big.parquet --csv
      pmupart sweep big.toml --scheduler tcp://10.0.0.5:8786
      pmupart sweep big.toml --resume        # after Ctrl-C or a crash
    """
    from pmupart.errors import PmupartError
    from pmupart.sweep.executor import Checkpoint, SweepRunError, execute
    from pmupart.sweep.results import write_csv, write_parquet
    from pmupart.sweep.spec import load_sweep

    try:
        sw = load_sweep(sweep_file)
    except PmupartError as e:
        fail(str(e))
    out = Path(output) if output else Path(Path(sweep_file).stem + ".parquet")
    ckpt = Checkpoint(out.with_name(out.name + ".ckpt.jsonl"), sw)
    show = progress if progress is not None else sys.stderr.isatty()
    bar = _progress_bar(show)
    where = scheduler or ("this process" if workers == 0 else
                          f"a local cluster of {workers or 'one worker per CPU'}"
                          f"{' workers' if workers else ''}")
    click.echo(f"pmupart sweep: {sw.name}: {len(sw.points)} runs on {where}", err=True)
    t0 = time.perf_counter()
    task = None

    def on_rows(rows: list[dict[str, Any]], done: int, total: int) -> None:
        if bar is not None:
            bar.update(task, completed=done, total=total)

    try:
        if bar is not None:
            bar.start()
            task = bar.add_task(sw.name, total=len(sw.points))
        try:
            rows = execute(sw, checkpoint=ckpt, resume=resume, workers=workers,
                           scheduler=scheduler, batch=batch, on_rows=on_rows)
        finally:
            if bar is not None:
                bar.stop()
    except KeyboardInterrupt:
        click.echo(f"pmupart: interrupted; the runs done so far are in {ckpt.path}: "
                   f"rerun with --resume to finish", err=True)
        sys.exit(130)
    except SweepRunError as e:
        fail(str(e))
    except Exception as e:  # Dask gave up (KilledWorker, a lost scheduler): say so, keep rows
        fail(f"the sweep stopped: {type(e).__name__}: {e}; the runs done so far are in "
             f"{ckpt.path}: rerun with --resume", code=1)
    wall = time.perf_counter() - t0
    write_parquet(rows, sw, out, wall_time=wall_time)
    click.echo(f"pmupart: {len(rows)} rows written to {out} ({wall:.1f} s wall)", err=True)
    if as_csv:
        c = write_csv(rows, sw, out.with_suffix(".csv"), wall_time=wall_time)
        click.echo(f"pmupart: {len(rows)} rows written to {c}", err=True)
    ckpt.remove()
    _warn_unmatched(rows, [m.name for m in sw.metrics])
    _report(rows, sw.meta(), None if no_plots else (plots or str(out.with_suffix("")) +
                                                    "-plots"))
    sys.exit(0 if all(r["verdict"] == "ok" for r in rows) else 1)


def _warn_unmatched(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    ran = [r for r in rows if r.get("verdict") != "error"]
    for name in names:
        n = sum(1 for r in ran if name in (r.get("_unmatched") or ()))
        if n:
            click.echo(f"pmupart: warning: metric {name!r} found no value in {n} of {len(ran)} "
                       "runs (check its path, or give it a default)", err=True)


@sweep.command("report")
@click.argument("results", metavar="RESULTS.parquet", type=click.Path(dir_okay=False))
@click.option("--by", "by", multiple=True, metavar="AXIS",
              help="Group the summary by these axes (repeatable; default: [report]).")
@click.option("--plots", default=None, metavar="DIR",
              help="Where to write the plots (default: RESULTS-plots/).")
@click.option("--no-plots", is_flag=True, help="Do not draw plots.")
def report_cmd(results: str, by: tuple[str, ...], plots: str | None, no_plots: bool) -> None:
    """Print the summary table of RESULTS.parquet and draw its plots.

    \b
    Example:
      pmupart sweep report fleet-reservation.parquet
    """
    from pmupart.errors import PmupartError, suggest
    from pmupart.sweep.report import plot_results, summary_table
    from pmupart.sweep.results import read_results

    try:
        rows, meta = read_results(results)
    except PmupartError as e:
        fail(str(e))
    axes = [a["name"] for a in meta.get("axes", [])]
    for a in by:
        if a not in axes:
            fail(f"--by {a}: expected an axis name{suggest(a, axes)}; axes: {', '.join(axes)}")
    click.echo(summary_table(rows, meta, list(by) or None), nl=False)
    if not no_plots:
        out = plots or str(Path(results).with_suffix("")) + "-plots"
        for p in plot_results(rows, meta, out):
            click.echo(f"pmupart: plot written to {p}", err=True)
