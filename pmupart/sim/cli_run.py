"""``pmupart run SCENARIO``: simulate a host and its guests, print what everyone saw."""

from __future__ import annotations

import dataclasses
import sys
import time

import click

from pmupart.cli import fail
from pmupart.errors import PmupartError
from pmupart.sim.spec import ScenarioSpec


def load_for_cli(scenario: str, *, seed: int | None, duration: str | None,
                 overrides: tuple[str, ...] = ()) -> ScenarioSpec:
    """Load SCENARIO with the command line's overrides, or exit 2 with the reason (the
    shared front half of ``pmupart run`` and ``pmupart check``)."""
    from pmupart.scenario import load_scenario

    try:
        spec = load_scenario(scenario, overrides=overrides)
        if seed is not None:
            spec = dataclasses.replace(spec, seed=seed)
        if duration is not None:
            spec = dataclasses.replace(spec, duration_ns=parse_duration(duration))
    except FileNotFoundError:
        fail(f"no such scenario file: {scenario}")
    except (PmupartError, ValueError) as e:
        fail(str(e))
    return spec


def parse_duration(text: str) -> int:
    """``2s``, ``250ms``, ``10us``, ``5000ns`` -> nanoseconds (the scenario format's rule)."""
    from pmupart.scenario.loader import parse_duration as _parse

    return _parse(text)


@click.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--duration", default=None, help="Override the simulated duration (2s, 250ms).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a scenario field: kvm.hpmn_source=vm-pmu, vm[0].nr_counters=2 "
                   "(repeatable; see docs/scenario.md).")
@click.option("-x", "--field-separator", "sep", default=None,
              help="CSV output with this separator, as perf stat -x.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option("--trace", "trace", type=click.Path(dir_okay=False), default=None,
              help="Write a Chrome/Perfetto trace (open in ui.perfetto.dev).")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="Draw counter ownership and counted-vs-true events to a PNG.")
@click.option("--fast-forward/--no-fast-forward", "fast_forward", default=True,
              help="Skip through steady periodic stretches (default) or simulate every step.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: only on a terminal).")
def run(scenario: str, seed: int | None, duration: str | None, overrides: tuple[str, ...],
        sep: str | None,
        as_json: bool, trace: str | None, plot: str | None, fast_forward: bool,
        progress: bool | None) -> None:
    """Run SCENARIO (a TOML file, see docs/scenario.md) and print perf-stat output per VM and
    for the host, the overhead tables and the checker's verdict.

    \b
    Example:
      pmupart run examples/hetero-migration.toml
    """
    from pmupart.sim.session import run_scenario
    from pmupart.sim.summary import render

    spec = load_for_cli(scenario, seed=seed, duration=duration, overrides=overrides)
    listeners = []
    checker = None
    try:
        from pmupart.check import Checker  # the invariant checker, when present
        checker = Checker()
        listeners.append(checker.listener)
    except ImportError:
        checker = None
    tracer = None
    if trace or plot:
        try:
            from pmupart.check.trace import TraceRecorder
            tracer = TraceRecorder()
            listeners.append(tracer.listener)
        except ImportError:
            fail("--trace/--plot need pmupart.check.trace, which is not available")
    show = progress if progress is not None else sys.stderr.isatty()
    t0 = time.perf_counter()
    try:
        if show:
            from rich.progress import Progress
            with Progress(transient=True, console=None) as bar:
                task = bar.add_task("simulating", total=spec.duration_ns)
                result = run_scenario(spec, listeners=listeners, fast_forward=fast_forward,
                                      progress=lambda t: bar.update(task, completed=t))
        else:
            result = run_scenario(spec, listeners=listeners, fast_forward=fast_forward)
    except (PmupartError, ValueError) as e:
        fail(f"{scenario}: {e}")
    wall = time.perf_counter() - t0
    verdict = None
    flagged = None
    if checker is not None:
        checker.finish(result)
        verdict = checker.verdict()
        flagged = None if checker.ok else verdict
    if as_json:
        out = "json"
    elif sep is not None:
        out = "csv"
    else:
        out = "std"
    click.echo(render(result, out, sep or ",", verdict=verdict,  # type: ignore[arg-type]
                      flagged=flagged), nl=False)
    click.echo(f"pmupart: simulated {spec.duration_ns / 1e9:.3f} s in {wall:.2f} s wall "
               f"({spec.duration_ns / 1e9 / max(wall, 1e-9):.1f} simulated s per wall s)",
               err=True)
    if tracer is not None:
        if trace:
            tracer.write_trace(result, trace)
            click.echo(f"pmupart: trace written to {trace}", err=True)
        if plot:
            tracer.write_plot(result, plot)
            click.echo(f"pmupart: plot written to {plot}", err=True)
    if flagged is not None:
        # Exit 1: the model found a problem (the README's exit-code table).
        click.echo(f"pmupart: the checker flagged this run's counts: {flagged}", err=True)
        sys.exit(1)
