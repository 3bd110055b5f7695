"""``pmupart exec``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("unicorn")
pytest.importorskip("llvmlite")

from click.testing import CliRunner

from pmupart.cli import main

ASM = Path(__file__).parent / "asm"


@pytest.mark.parametrize(("vpmu", "n"), [("none", 6), ("emulated", 4), ("partitioned", 4)])
def test_exec_prints_pmu_state(vpmu: str, n: int) -> None:
    r = CliRunner().invoke(main, ["exec", str(ASM / "overflow_irq.S"), "--core", "cortex-a720",
                                  "--vpmu", vpmu, "--revision", "intent"])
    assert r.exit_code == 0, r.output
    assert "stopped (poweroff)" in r.output
    pmcr = int(r.output.split("PMCR_EL0         = ")[1].split()[0], 16)
    assert (pmcr >> 11) & 0x1F == n  # 6 counters; 2 reserved for the host under KVM
    assert "PMEVTYPER0_EL0   = 0x8" in r.output
    assert f"PMEVCNTR{n - 1}_EL0" in r.output and f"PMEVCNTR{n}_EL0" not in r.output
    assert "exception irq from EL1: EC=0x00 ESR=0x0 ELR=0x1038" in r.output


def test_exec_partitioned_v8_event_type_stays_virtual_until_the_next_load() -> None:
    """v8 09/21 pmu_reg_write: a trapped PMEVTYPER write reaches only the virtual register;
    the hardware counter keeps its old type (0, SW_INCR) until kvm_pmu_load, so within one run
    counter 0 never counts INST_RETIRED and its overflow interrupt never comes (§4.5)."""
    r = CliRunner().invoke(main, ["exec", str(ASM / "overflow_irq.S"), "--core", "cortex-a720",
                                  "--vpmu", "partitioned", "--revision", "v8"])
    assert r.exit_code == 0, r.output
    assert "PMEVTYPER0_EL0   = 0x8" in r.output  # the guest reads back its virtual type
    assert "PMEVCNTR0_EL0    = 0xffffff9c" in r.output  # -100: counted nothing
    assert "exception irq" not in r.output


def test_exec_reports_assembler_errors_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.S"
    bad.write_text("nop\nmov x1, x2, x3\n")
    r = CliRunner().invoke(main, ["exec", str(bad)])
    assert r.exit_code == 2
    assert "bad.S: line 2: expected mov Rd, Rn|#imm" in r.output


@pytest.mark.parametrize("vpmu", ["none", "partitioned"])
@pytest.mark.parametrize("body, what", [
    ("movz x1, #0xdead, lsl #16\n    ldr x0, [x1]", "UC_ERR_READ_UNMAPPED"),
    ("movz x1, #0xdead, lsl #16\n    str x0, [x1]", "UC_ERR_WRITE_UNMAPPED"),
    ("movz x1, #0xdead, lsl #16\n    br x1", "UC_ERR_FETCH_UNMAPPED"),
])
def test_exec_a_faulting_program_exits_3(tmp_path: Path, vpmu: str, body: str,
                                         what: str) -> None:
    # the user's program is at fault, not the model: exit 3 (the exit-code table), not 1
    prog = tmp_path / "fault.S"
    prog.write_text(f"_start:\n    {body}\n    hvc #0\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["exec", str(prog), "--vpmu", vpmu, "--core", "cortex-a720"])
    assert r.exit_code == 3, r.output
    assert "the program faulted: guest fault at pc=" in r.stderr and what in r.stderr
    assert "Traceback" not in r.output
