"""The mixed-counter-width finding (issue 14): its scenario shows what its header says."""

from __future__ import annotations

import dataclasses
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


# ---------------------------------------------------------------- the second path (own-work)
def _pinned_to_the_a76(revision: str = "intent") -> str:
    """The finding's host with the vCPU pinned to the A76 from the start: no migration, no
    load of a saved 64-bit value; the guest, told PMUv3p5 (the default PMU is cpu0's, the
    A720's), biases its counters to 2^63 in the A76's 32-bit hardware."""
    text = FINDING.read_text(encoding="utf-8")
    text = text.replace('revision = "v8"', f'revision = "{revision}"')
    return text.replace('affinity = "0-1"', 'affinity = "1"').replace('policy = "periodic"',
                                                                     'policy = "none"')


def test_a_guest_told_64_bit_counters_on_a_32_bit_cpu_is_the_same_finding() -> None:
    from pmupart.check import Checker
    from pmupart.check.findings import KNOWN_FINDINGS
    from pmupart.check.invariants import NARROW_RUN
    from pmupart.scenario.loader import load_scenario_text
    from pmupart.sim.session import run_scenario

    spec = load_scenario_text(_pinned_to_the_a76(), "pinned")
    ck = Checker()
    r = run_scenario(spec, listeners=[ck.listener])
    ck.finish(r)
    assert not ck.ok
    assert {v.rule for v in ck.violations} == {"own-work"}  # nothing was saved and loaded
    is_it = KNOWN_FINDINGS["mixed-counter-width"]
    for v in ck.violations:
        assert NARROW_RUN in v.message and is_it(v), v.details()
        assert v.cpu == 1 and v.values["cpu_pmuver"] == "V3P1"
        assert v.values["vm_pmuver"] == "V3P5"
        assert v.values["excess"] % (1 << 32) == 0  # what the 32-bit hardware dropped


def test_the_known_finding_does_not_match_any_own_work() -> None:
    from pmupart.check.findings import KNOWN_FINDINGS
    from pmupart.check.invariants import NARROW_LOAD, InvariantViolation

    is_it = KNOWN_FINDINGS["mixed-counter-width"]
    plain = InvariantViolation("own-work", 0, None, "vm0:vcpu0",
                               "guest counted more INST_RETIRED than the vCPU retired",
                               {"excess": 1 << 63})
    assert not is_it(plain)
    assert not is_it(dataclasses.replace(plain, rule="no-leak"))
    assert is_it(dataclasses.replace(plain, rule="no-leak",
                                     message=f"the vCPU's saved counter {NARROW_LOAD}: ..."))
    assert not is_it(dataclasses.replace(plain, rule="share",
                                         message=f"the vCPU's saved counter {NARROW_LOAD}"))

