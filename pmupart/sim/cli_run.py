"""``pmupart run SCENARIO``: simulate a host and its guests, print what everyone saw."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable

import click

from pmupart.cli import fail
from pmupart.errors import GuestProgramError, PmupartError
from pmupart.sim.spec import ScenarioSpec


def load_for_cli(scenario: str, *, seed: int | None, duration: str | None,
                 overrides: tuple[str, ...] = (), fast_forward: bool = True) -> ScenarioSpec:
    """Load SCENARIO with the command line's overrides, or exit 2 with the reason (the
    shared front half of ``pmupart run`` and ``pmupart check``)."""
    from pmupart.scenario import load_scenario

    try:
        spec = load_scenario(scenario, overrides=overrides)
    except FileNotFoundError:
        fail(f"no such scenario file: {scenario}")
    except (PmupartError, ValueError) as e:
        fail(str(e))
    if seed is not None:
        spec = dataclasses.replace(spec, seed=seed)
    if duration is not None:
        try:
            ns = parse_duration(duration)
        except ValueError as e:
            fail(f"--duration: {e}")
        from pmupart.scenario.loader import MAX_DURATION_NS
        if ns <= 0:
            fail(f"--duration: expected a duration above zero, found {duration!r}")
        if ns > MAX_DURATION_NS:
            fail(f"--duration: expected at most {MAX_DURATION_NS // 10**9} s (one hour of "
                 f"simulated time), found {duration!r}")
        spec = dataclasses.replace(spec, duration_ns=ns)
    from pmupart.sim.limits import check_sizes

    for w in check_sizes(spec, fast_forward=fast_forward):
        click.echo(f"pmupart: warning: {w}", err=True)
    return spec


#: ``--seed``: the scenario format's rule (an integer >= 0, below 2^64)
SEED = click.IntRange(0, (1 << 64) - 1)


def check_output_path(path: str, option: str) -> None:
    """Refuse an output path that cannot be written, before any simulation runs."""
    from pathlib import Path

    p = Path(path)
    if not path or path.strip() != path or "\0" in path:
        fail(f"{option}: expected a file name, found {path!r}")
    if p.is_dir():
        fail(f"{option}: {path} is a directory, expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        fail(f"{option}: cannot write {path}: no such directory {str(parent)!r}")
    import os

    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        fail(f"{option}: cannot write {path}: permission denied")


def write_atomically(path: str, option: str, write: Callable[[str], object]) -> None:
    """``write(tmp)`` then rename to ``path``: a failed or interrupted write leaves nothing
    behind; a write error is a clear error (exit 2)."""
    import os
    from pathlib import Path

    p = Path(path)
    tmp = str(p.with_name(f".{p.name}.pmupart-tmp-{os.getpid()}"))
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        fail(f"{option}: cannot write {path}: {e.strerror or e}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def parse_duration(text: str) -> int:
    """``2s``, ``250ms``, ``10us``, ``5000ns`` -> nanoseconds (the scenario format's rule)."""
    from pmupart.scenario.loader import parse_duration as _parse

    return _parse(text)


@click.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--seed", type=SEED, default=None, help="Override the scenario's seed.")
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

    if sep is not None and (sep == "" or any(ord(c) < 32 for c in sep)):
        fail(f"-x/--field-separator: expected a separator such as ',' or ';', found {sep!r}")
    if sep is not None and as_json:
        fail("--json and -x/--field-separator: choose one output format")
    for path, option in ((trace, "--trace"), (plot, "--plot")):
        if path is not None:
            check_output_path(path, option)
    if trace is not None and trace == plot:
        fail("--trace and --plot name the same file")
    spec = load_for_cli(scenario, seed=seed, duration=duration, overrides=overrides,
                        fast_forward=fast_forward)
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
        if show and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress
            with Progress(transient=True, console=Console(stderr=True)) as bar:
                task = bar.add_task("simulating", total=spec.duration_ns)
                result = run_scenario(spec, listeners=listeners, fast_forward=fast_forward,
                                      progress=lambda t: bar.update(task, completed=t))
        elif show:  # off a terminal: a short status line at intervals
            result = run_scenario(spec, listeners=listeners, fast_forward=fast_forward,
                                  progress=status_lines(spec.duration_ns, t0))
        else:
            result = run_scenario(spec, listeners=listeners, fast_forward=fast_forward)
    except GuestProgramError:
        raise  # the user's program: exit 3 with its traceback (pmupart.cli)
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
        rec = tracer
        if trace:
            write_atomically(trace, "--trace", lambda tmp: rec.write_trace(result, tmp))
            click.echo(f"pmupart: trace written to {trace}", err=True)
        if plot:
            write_atomically(plot, "--plot", lambda tmp: rec.write_plot(result, tmp))
            click.echo(f"pmupart: plot written to {plot}", err=True)
    if flagged is not None:
        # Exit 1: the model found a problem (the README's exit-code table).
        click.echo(f"pmupart: the checker flagged this run's counts: {flagged}", err=True)
        sys.exit(1)


def status_lines(total_ns: int, t0: float, every_s: float = 5.0) -> Callable[[int], None]:
    """A progress callback for stderr off a terminal: one short line at most every
    ``every_s`` seconds of wall time."""
    last = [t0]

    def show(t_ns: int) -> None:
        now = time.perf_counter()
        if now - last[0] < every_s:
            return
        last[0] = now
        click.echo(f"pmupart: simulated {t_ns / 1e9:.3f} of {total_ns / 1e9:.3f} s "
                   f"({100 * t_ns / max(1, total_ns):.0f}%) in {now - t0:.0f} s", err=True)

    return show
