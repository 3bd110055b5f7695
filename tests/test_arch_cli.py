"""``pmupart decode`` and ``pmupart cores``: golden output and errors (exit code 2).

Regenerate the golden files with ``PMUPART_UPDATE_GOLDEN=1 python -m pytest
tests/test_arch_cli.py`` (or ``--update-golden``, tests/conftest.py) and review the
diff before committing.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from conftest import check_golden as _check_golden

from pmupart.cli import main


def invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def check_golden(request: pytest.FixtureRequest, name: str, got: str) -> None:
    _check_golden(f"arch/{name}", got)


DECODES = {
    # spec §2: HPMD (17) | HPME (7) | HPMN = 4, on a 6-counter core
    "decode_mdcr_a76.txt": ["decode", "MDCR_EL2", "0x20084", "--core", "cortex-a76"],
    # HPMN = 7 > N = 6: CONSTRAINED UNPREDICTABLE (spec §9), shown with the policy
    "decode_mdcr_cu.txt": ["decode", "MDCR_EL2", "0x87", "--counters", "6"],
    # spec §3: N = 6, LC, E; reserved bit 10 set shows in hex
    "decode_pmcr.txt": ["decode", "PMCR_EL0", "0x3441"],
    # spec §4/§5.6: P | NSH | CPU_CYCLES counts at EL2, not at EL1
    "decode_evtyper_el2.txt": ["decode", "PMEVTYPER3_EL0", "0x88000011", "--el", "2"],
    "decode_evtyper_el1.txt": ["decode", "PMEVTYPER3_EL0", "0x88000011", "--el", "1"],
    "decode_hdfgrtr.txt": ["decode", "HDFGRTR_EL2", "0x0400000000003000"],
    "decode_dfr0.txt": ["decode", "ID_AA64DFR0_EL1", "0x1000000000000606"],
}


@pytest.mark.parametrize("name", sorted(DECODES))
def test_decode_golden(request: pytest.FixtureRequest, name: str) -> None:
    """spec §2-§5 field layouts, as printed by `pmupart decode`."""
    code, out, err = invoke(*DECODES[name])
    assert code == 0, err
    check_golden(request, name, out)


def test_decode_content_follows_the_spec() -> None:
    # independent of the golden files: what the first line and the range line must say
    """spec §2 (MDCR_EL2), §9 (CONSTRAINED UNPREDICTABLE HPMN), §5.6 filters."""
    _, out, _ = invoke(*DECODES["decode_mdcr_a76.txt"])
    first = out.splitlines()[0]
    assert first == "MDCR_EL2 (S3_4_C1_C1_1) = 0x20084: HPMD|HPME|HPMN=4"
    assert re.search(r"counters 0-3 .*counters 4-5", out)
    _, out, _ = invoke(*DECODES["decode_mdcr_cu.txt"])
    assert "CONSTRAINED UNPREDICTABLE" in out and "effective HPMN=6" in out  # default: clamp
    _, out, _ = invoke(*DECODES["decode_evtyper_el2.txt"])
    assert "at EL2" in out and ": counted" in out
    _, out, _ = invoke(*DECODES["decode_evtyper_el1.txt"])
    assert "filtered out" in out
    _, out, _ = invoke("decode", "s3_4_c1_c1_1", "0b10000100")
    assert out.splitlines()[0].endswith("HPME|HPMN=4")


def test_cores_golden(request: pytest.FixtureRequest) -> None:
    """spec cores.md via the catalogue; UNCONFIRMED values shown as such (issue 2)."""
    code, out, err = invoke("cores")
    assert code == 0, err
    check_golden(request, "cores.txt", out)


def test_cores_json_is_consistent_with_the_table() -> None:
    """issue 2 core catalogue: perf names, N in 0..31 (spec §1)."""
    code, out, _ = invoke("cores", "--json")
    assert code == 0
    rows = json.loads(out)
    names = [r["core"] for r in rows]
    assert "cortex-a76" in names and len(set(names)) == len(names)
    for r in rows:
        # Linux perf PMU names: armv8_<core> / armv9_<core> on DT, armv8_pmuv3_0 on ACPI
        assert re.fullmatch(r"armv[89]_(pmuv3_\d+|" + r["core"].replace("-", "_") + ")",
                            r["perf_pmu"]), r
        assert 0 <= r["counters"] <= 31
        assert r["confirmed"] == (not r["assumptions"])


@pytest.mark.parametrize(("args", "pattern"), [
    (["decode", "MDCR_EL3", "1"], r"unknown system register 'MDCR_EL3'.*did you mean 'MDCR_EL2'"),
    (["decode", "MDCR_EL2", "zz"], r"VALUE must be an integer .*not 'zz'"),
    (["decode", "MDCR_EL2", hex(1 << 64)], r"must fit in 64 bits"),
    (["decode", "MDCR_EL2", "-1"], r"non-negative|No such option"),
    (["decode", "MDCR_EL2", "1", "--core", "cortex-a77"], r"unknown core 'cortex-a77'"),
    (["decode", "MDCR_EL2", "1", "--el", "3"], r"not in the range 0<=x<=2"),
    (["decode", "MDCR_EL2", "1", "--counters", "32"], r"not in the range 0<=x<=31"),
    (["decode", "MDCR_EL2"], r"Missing argument 'VALUE'"),
])
def test_cli_errors_exit_2(args: list[str], pattern: str) -> None:
    """issue 2 CLI: bad input exits 2 with a clear message."""
    code, out, err = invoke(*args)
    assert code == 2
    assert out == ""
    assert re.search(pattern, err), err


def test_decode_what_if_pe_is_a_note_not_a_warning() -> None:
    # 0 counters on a core without FEAT_HPMN0 is a what-if (spec §1): noted in the output
    code, out, err = invoke("decode", "MDCR_EL2", "0", "--counters", "0", "--core", "cortex-a76")
    assert code == 0 and err == ""
    assert "note: what-if PE: 0 event counters with EL2 needs FEAT_HPMN0" in out
