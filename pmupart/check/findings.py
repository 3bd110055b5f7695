"""``pmupart findings``: the reviewer-ready list of findings in ``examples/findings/``.

Every finding is a scenario whose file opens with a header of ``# key: value`` lines (a value
may continue on ``#   `` lines), in this order: ``finding`` (a one-line title), ``revision``,
``patch``, ``invariant``, ``what goes wrong``, ``fix``, ``checker`` (the line ``pmupart
check`` prints); an optional ``intent`` line says how the intent design fares (absent: it
runs clean).  Any file there in that format is listed, whoever wrote it.

Exit codes (as every pmupart command): 0 listed, 2 bad input (no such directory, a file
without the header).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from pmupart.check.invariants import NARROW_LOAD, NARROW_RUN, InvariantViolation

KEYS = ("finding", "revision", "patch", "invariant", "what goes wrong", "fix", "checker")
OPTIONAL = ("intent",)
_LINE = re.compile(r"# ([a-z ]+): (.*)$")

#: Where the findings live in a checkout (the package sits in <root>/pmupart/check/).
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "examples" / "findings"


def _mixed_counter_width(v: InvariantViolation) -> bool:
    """A host mixing 32- and 64-bit event counters: a 64-bit value saved on a PMUv3p5+ CPU
    loaded into a 32-bit counter (no-leak), or a guest told PMUv3p5+ (64-bit counters)
    whose counters were in a 32-bit CPU's and counted bits [63:32] they never had
    (own-work)."""
    return (v.rule == "no-leak" and NARROW_LOAD in v.message) or \
        (v.rule == "own-work" and NARROW_RUN in v.message)


#: Hazards of the design that random runs (benchmarks/campaign.py, the state machine of
#: tests/test_check_stateful.py) meet, each a finding with its own scenario here: slug ->
#: "this violation is it".
KNOWN_FINDINGS: dict[str, Callable[[InvariantViolation], bool]] = {
    "mixed-counter-width": _mixed_counter_width,  # issue 14
}


class FindingFormatError(ValueError):
    """A findings file without a complete header."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding's header and where its scenario is."""

    path: Path
    title: str
    revision: str
    patch: str
    invariant: str
    what: str
    fix: str
    checker: str
    intent: str = ""

    def command(self, root: Path | None = None) -> str:
        p = self.path
        if root is not None and p.is_relative_to(root):
            p = p.relative_to(root)
        return f"pmupart check {p.as_posix()}"


def parse_header(path: Path) -> Finding:
    """The header of ``path``; :class:`FindingFormatError` names the first missing key."""
    out: dict[str, str] = {}
    last = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        m = _LINE.match(line)
        if m and m.group(1) in KEYS + OPTIONAL and m.group(1) not in out:
            last = m.group(1)
            out[last] = m.group(2).strip()
        elif line.startswith("#   ") and last:
            out[last] += " " + line[4:].strip()
        else:
            last = ""
    missing = [k for k in KEYS if k not in out]
    if missing:
        raise FindingFormatError(f"{path}: the finding header lacks '# {missing[0]}: ...' "
                                 f"(expected, in order: {', '.join(KEYS)})")
    order = [k for k in out if k in KEYS]
    if order != list(KEYS):
        raise FindingFormatError(f"{path}: header keys out of order: {', '.join(order)} "
                                 f"(expected {', '.join(KEYS)})")
    return Finding(path, out["finding"], out["revision"], out["patch"], out["invariant"],
                   out["what goes wrong"], out["fix"], out["checker"], out.get("intent", ""))


def load_findings(directory: Path = DEFAULT_DIR) -> list[Finding]:
    """Every ``*.toml`` finding in ``directory``, by file name."""
    if not directory.is_dir():
        raise FindingFormatError(f"{directory}: no such directory of findings")
    return [parse_header(p) for p in sorted(directory.glob("*.toml"))]


def render_text(findings: list[Finding], root: Path | None = None) -> str:
    out = [f"{len(findings)} findings"]
    for i, f in enumerate(findings, 1):
        out += ["", f"{i}. {f.title}",
                f"   revision:  {f.revision}",
                f"   patch:     {f.patch}",
                f"   invariant: {f.invariant}",
                f"   reproduce: {f.command(root)}",
                f"   intent:    {f.intent or 'runs clean (--set kvm.revision=intent)'}",
                f"   what goes wrong: {f.what}",
                f"   fix: {f.fix}",
                f"   checker prints: {f.checker}"]
    return "\n".join(out) + "\n"


def _md(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown(findings: list[Finding], root: Path | None = None) -> str:
    out = ["# Findings", "",
           "| # | finding | patch | invariant broken | reproduce |",
           "|---|---|---|---|---|"]
    for i, f in enumerate(findings, 1):
        out.append(f"| {i} | {_md(f.title)} | {_md(f.patch)} | `{f.invariant}` | "
                   f"`{f.command(root)}` |")
    for i, f in enumerate(findings, 1):
        out += ["", f"## {i}. {f.title}", "",
                f"* revision: {f.revision}; patch: {f.patch}",
                f"* invariant broken: `{f.invariant}`",
                f"* reproduce: `{f.command(root)}` (exit 1)",
                "* intent design: "
                + (f.intent or "runs clean (`--set kvm.revision=intent`, exit 0)"),
                "", f"**What goes wrong.** {f.what}", "", f"**Fix.** {f.fix}", "",
                "**The checker prints:**", "", "```", f.checker, "```"]
    return "\n".join(out) + "\n"


@click.command("findings")
@click.option("--markdown", is_flag=True, help="Print Markdown (a table, then each finding).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Findings directory (default: the checkout's "
                                 "examples/findings).")
def findings(markdown: bool, directory: Path | None) -> None:
    """List the findings: what goes wrong in which patch, the invariant it breaks, and the
    command that reproduces it.

    \b
    Examples:
      pmupart findings
      pmupart findings --markdown > findings.md
    """
    from pmupart.cli import fail

    d = directory or DEFAULT_DIR
    try:
        found = load_findings(d)
    except (FindingFormatError, OSError) as e:
        fail(str(e))
    root = d.resolve().parents[1] if directory is None else None
    click.echo(render_markdown(found, root) if markdown else render_text(found, root),
               nl=False)
