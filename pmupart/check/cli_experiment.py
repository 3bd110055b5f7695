"""``pmupart experiment cover-letter``: the series' published measurements, on the model."""

from __future__ import annotations

import time

import click

NOTES = """\
Model: 2x Cortex-A720 (FEAT_FGT) with PMCR_EL0.N = 10, one 1-vCPU guest pinned to cpu0;
emulated vPMU vs partitioned (reserved_host_counters = 0: the guest sees 10 counters + the
cycle counter either way); per-task guest sessions, the task switched 100 times a second.
One set of costs for all runs, none fitted to these figures (docs/costs.md gives each one's
source or says it is an assumption).  Work is scaled down unless --full (--scale 1: 0.1 s of
gzip, 0.2 s of SPECint, 40 ms of stress-ng, simulated); model times are simulated ms, so
compare the effects: ratio = model / published (of the change; of the emulated / partitioned
level for shares).  sys time = everything on the VM's behalf (guest kernel and EL2);
tick-accounted: what the guest's `time` shows (time under its interrupt handlers goes to the
interrupted context).  Shares as the host's mpstat shows them (host interrupts and the exits
they cause are not %sys).  Where the model differs and why: docs/costs.md.
"""


@click.group("experiment")
def experiment() -> None:
    """Reproduce published measurements on the model."""


@experiment.command("cover-letter")
@click.option("--scale", type=click.FloatRange(min=0.001), default=2.0, show_default=True,
              help="Multiply the simulated work (2 runs in about 4 s).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The scenarios' seed (they make no random choice, so it changes nothing "
                   "today; kept so a random workload can be added).")
@click.option("--full", is_flag=True,
              help="The published durations: 4 s of gzip, 60 s of SPECint, 30 s of stress-ng "
                   "(overrides --scale; about 10 s, the engine skipping steady windows).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs at once, in worker processes (same results).")
@click.option("--markdown", is_flag=True, help="Print the comparison as a Markdown table.")
@click.option("--details/--no-details", default=True, show_default=True,
              help="Also print what the model did in each run (traps, perf events, EL2 time).")
def cover_letter_cmd(scale: float, seed: int, full: bool, jobs: int, markdown: bool,
                     details: bool) -> None:
    """The v1 cover letter's three measurements (spec kvm-partitioning §3), emulated vs
    partitioned vPMU on a 10-counter machine, next to the published figures.

    \b
    Example:
      pmupart experiment cover-letter
      pmupart experiment cover-letter --scale 0.2 --markdown
      pmupart experiment cover-letter --full --jobs 2
    """
    from pmupart.check.cover_letter import FULL_SCALES, cover_letter, format_runs
    from pmupart.report.experiment import format_comparison

    t0 = time.perf_counter()

    def progress(what: str) -> None:
        click.echo(f"pmupart: running {what} ...", err=True)

    rows, runs = cover_letter(scale=scale, seed=seed, progress=progress,
                              scales=FULL_SCALES if full else None, jobs=jobs)
    click.echo(format_comparison(rows, markdown=markdown), nl=False)
    if details:
        click.echo()
        click.echo(format_runs(runs), nl=False)
    click.echo()
    click.echo(NOTES, nl=False)
    click.echo(f"pmupart: 6 runs in {time.perf_counter() - t0:.1f} s wall", err=True)
