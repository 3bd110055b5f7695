"""The ``pmupart`` command line.

Reports go to stdout, diagnostics to stderr.  Every command exits with one of these codes
(the same table is in the README):

====  =====================================================================================
code  meaning
====  =====================================================================================
0     success
1     the model found a problem: an invariant violation (``check``; ``run`` too, after
      printing its report with the problem said before the counts), a finding reproduced
2     bad input: usage, unknown names, malformed or unreadable files, output paths that
      cannot be written; the message names the file:line: field or the option
3     the user's guest program (a scenario's ``program``, ``exec``) raised: its traceback
      is shown, since it is the user's code
70    internal error: a bug in pmupart (the traceback is shown; please report it)
130   interrupted (Ctrl-C); no partial output file is left behind
====  =====================================================================================

Subcommand modules are imported lazily so ``pmupart --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from pmupart import __version__

EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT, EXIT_GUEST_PROGRAM = 0, 1, 2, 3
EXIT_INTERNAL, EXIT_INTERRUPTED = 70, 130


class _Main(click.Group):
    """The command group, with one exit-code policy for every command (the table above):
    bad input that escapes a command is exit 2 with its message, the user's guest program
    raising is exit 3 with its traceback, Ctrl-C is 130, anything else is a bug (70)."""

    def invoke(self, ctx: click.Context) -> object:
        from pmupart.errors import GuestProgramError, PmupartError

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("pmupart: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except GuestProgramError as e:
            click.echo(e.user_traceback(), err=True, nl=False)
            click.echo(f"pmupart: error: {e}", err=True)
            sys.exit(EXIT_GUEST_PROGRAM)
        except PmupartError as e:
            fail(str(e))
        except OSError as e:
            where = f" {e.filename!r}" if e.filename else ""
            fail(f"cannot access{where}: {e.strerror or e}")
        except RecursionError:
            fail("input nested too deeply")
        except Exception as e:
            if isinstance(e, ValueError) and "null byte" in str(e):
                # os.stat of a path with NUL (click.Path), whatever the command
                fail("a file name contains a NUL character (\\0)")
            import traceback

            click.echo(traceback.format_exc(), err=True, nl=False)
            click.echo("pmupart: internal error (a bug in pmupart; the traceback is above)",
                       err=True)
            sys.exit(EXIT_INTERNAL)


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print ``pmupart: error: msg`` on stderr and exit with ``code`` (2 = bad input)."""
    click.echo(f"pmupart: error: {msg}", err=True)
    sys.exit(code)


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        fail(f"{what} must be an integer (decimal, 0x hex or 0b binary), not {text!r}")


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pmupart")
def main() -> None:
    """pmupart: what happens to every Arm PMU counter when KVM partitions the PMU."""


@main.command()
@click.argument("register")
@click.argument("value")
@click.option("--el", type=click.IntRange(0, 2), default=None,
              help="For filter registers (PMEVTYPER, PMCCFILTR, PMICFILTR): whether a counter "
                   "with this filter counts at this EL.")
@click.option("--counters", "num_counters", type=click.IntRange(0, 31), default=None,
              help="For MDCR_EL2: PMCR_EL0.N of the PE, to show the counter ranges.")
@click.option("--core", default=None, help="Take N and features from this catalogue core.")
def decode(register: str, value: str, el: int | None, num_counters: int | None,
           core: str | None) -> None:
    """Decode VALUE of system REGISTER field by field.

    \b
    Examples:
      pmupart decode MDCR_EL2 0x20084
      pmupart decode MDCR_EL2 0x20084 --core cortex-a76
      pmupart decode PMEVTYPER3_EL0 0x88000011 --el 2
    """
    from pmupart.arch import sysreg
    from pmupart.cmd_decode import render_decode

    v = _parse_int(value, "VALUE")
    try:
        reg = sysreg.lookup(register)
        sysreg.check_value(reg, v)
        text = render_decode(reg, v, el=el, num_counters=num_counters, core=core)
    except (ValueError, TypeError) as e:
        fail(str(e))
    click.echo(text)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
def cores(as_json: bool) -> None:
    """The core catalogue: counters, PMU version, FGT, HPMN0, and what is confirmed."""
    from pmupart.cmd_decode import render_cores

    click.echo(render_cores(as_json=as_json), nl=False)


# Commands that live in their own modules, registered lazily: "name": "module:attribute".
# Each module defines a click command; a module that is not there yet leaves its command out.
LAZY_COMMANDS: dict[str, str] = {
    "sysfs": "pmupart.host.cli_sysfs:sysfs",
    "exec": "pmupart.guest.cli_exec:exec_cmd",
    "cc": "pmupart.guest.cc:cc_cmd",
    "run": "pmupart.sim.cli_run:run",
    "check": "pmupart.check.cli_check:check",
    "experiment": "pmupart.check.cli_experiment:experiment",
    "probe": "pmupart.probe.cli:probe",
    "sweep": "pmupart.sweep.cli:sweep",
    "findings": "pmupart.check.findings:findings",
}


def _register_lazy() -> None:
    import importlib
    import importlib.util

    for name, target in LAZY_COMMANDS.items():
        mod_name, attr = target.split(":")
        try:
            if importlib.util.find_spec(mod_name) is None:
                continue
        except ModuleNotFoundError:
            continue
        cmd = getattr(importlib.import_module(mod_name), attr)
        main.add_command(cmd, name)


_register_lazy()

if __name__ == "__main__":  # pragma: no cover
    main()
