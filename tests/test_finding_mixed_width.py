"""The mixed-counter-width finding (issue 14): its scenario shows what its header says."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from pmupart.cli import main

FINDING = Path(__file__).resolve().parent.parent / "examples" / "findings" / \
    "mixed-counter-width.toml"
KEYS = ("finding", "revision", "patch", "invariant", "what goes wrong", "fix", "checker")


def header() -> dict[str, str]:
    out: dict[str, str] = {}
    last = ""
    for line in FINDING.read_text(encoding="utf-8").splitlines():
        m = re.match(r"# ([a-z ]+): (.*)$", line)
        if m and m.group(1) in KEYS:
            last = m.group(1)
            out[last] = m.group(2)
        elif line.startswith("#   ") and last:
            out[last] += " " + line[4:]
        elif not line.startswith("# ") or not last:
            last = ""
    return out


def test_the_header_has_every_key_in_order() -> None:
    h = header()
    assert list(h) == list(KEYS)
    assert h["revision"] == "v8" and h["invariant"] == "no-leak"
    assert 'revision = "v8"' in FINDING.read_text(encoding="utf-8")


def test_the_checker_prints_the_header_line_and_exits_1() -> None:
    r = CliRunner().invoke(main, ["check", str(FINDING)])
    assert r.exit_code == 1
    assert header()["checker"] in r.stdout.splitlines()


def test_the_guest_count_jumps_by_2_63_on_the_32_bit_cpu() -> None:
    r = CliRunner().invoke(main, ["run", str(FINDING)])
    assert r.exit_code == 1  # the checker flags the counts
    row = next(ln for ln in r.stdout.splitlines() if ln.strip().endswith("inst_retired"))
    assert int(row.split()[0].replace(",", "")) > 1 << 63
