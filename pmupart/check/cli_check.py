"""``pmupart check SCENARIO``: run a scenario under the invariant checker, print what broke.

Exit codes (as every pmupart command): 0 all invariants held, 1 violations found, 2 bad
input (no such file, a malformed scenario, a bad option).
"""

from __future__ import annotations

import sys

import click

from pmupart.cli import fail
from pmupart.errors import GuestProgramError, PmupartError
from pmupart.sim.cli_run import SEED, load_for_cli


@click.command("check")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--seed", type=SEED, default=None, help="Override the scenario's seed.")
@click.option("--duration", default=None, help="Override the simulated duration (2s, 250ms).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a scenario field, as pmupart run --set.")
@click.option("--notes/--no-notes", default=False,
              help="Also print the notes: documented exceptions, losses, perf's scaling.")
@click.option("--max-reports", type=click.IntRange(1, None), default=200, show_default=True,
              help="Violations listed per invariant (all are counted).")
def check(scenario: str, seed: int | None, duration: str | None, overrides: tuple[str, ...],
          notes: bool, max_reports: int) -> None:
    """Run SCENARIO with the invariant checker; print each violation (time, CPU, vCPU, rule,
    values) and the verdict.  Exit status 1 if any invariant broke.

    \b
    Examples:
      pmupart check examples/hetero-migration.toml
      pmupart check examples/hetero-migration-v1.toml --duration 50ms
    """
    from pmupart.check import Checker
    from pmupart.sim.session import run_scenario

    spec = load_for_cli(scenario, seed=seed, duration=duration, overrides=overrides)
    checker = Checker(max_reports=max_reports)
    try:
        result = run_scenario(spec, listeners=[checker.listener])
    except GuestProgramError:
        raise  # the user's program: exit 3 with its traceback (pmupart.cli)
    except (PmupartError, ValueError) as e:
        fail(f"{scenario}: {e}")
    checker.finish(result)
    click.echo(f"pmupart check: {spec.name} ({scenario}), {spec.duration_ns / 1e9:.3f} s "
               f"simulated, seed {spec.seed}")
    click.echo(checker.render(notes=notes), nl=False)
    sys.exit(0 if checker.ok else 1)
