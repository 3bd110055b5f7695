"""PMU test programs in AArch64 assembly (tests/asm/*.S) run under unicorn against the model:
on a bare PE, on a bare PE configured like the partitioned vPMU (MDCR_EL2.HPMN = 4 < N,
FGT traps on PMOVS/PMEVTYPER<n>/PMCCFILTR, as the partitioning series programs them) and
like the emulated vPMU (MDCR_EL2.TPM = 1: every PMU access traps to EL2 and the
hypervisor model emulates it), and on KVM vCPUs (pmupart.kvm) with each backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("unicorn")
pytest.importorskip("llvmlite")

from pmupart.arch import PE
from pmupart.guest.aarch64 import AArch64Program, ForwardingHypervisor

ASM = Path(__file__).parent / "asm"
M32 = (1 << 32) - 1
_PROGS: dict[str, AArch64Program] = {}


def prog(name: str, **kw: Any) -> AArch64Program:
    key = name + repr(sorted(kw.items()))
    if key not in _PROGS:
        _PROGS[key] = AArch64Program.from_asm((ASM / f"{name}.S").read_text(), **kw)
    return _PROGS[key]


def bare() -> PE:
    return PE.from_core("cortex-a720")  # N = 6, PMUv3p7, FEAT_FGT


def partitioned() -> PE:
    pe = bare()
    with pe.at_el(2):
        assert pe.write("MDCR_EL2", 4 | (1 << 7)).ok  # HPMN = 4, HPME
        fgt = (1 << 18) | (1 << 13) | (1 << 14)  # PMOVS, PMEVTYPERn_EL0, PMCCFILTR_EL0
        assert pe.write("HDFGRTR_EL2", fgt).ok
        assert pe.write("HDFGWTR_EL2", fgt).ok
    return pe


def emulated() -> PE:
    pe = bare()
    with pe.at_el(2):
        assert pe.write("MDCR_EL2", 4 | (1 << 6)).ok  # HPMN = 4, TPM
    return pe


CONFIGS = {"bare": bare, "partitioned": partitioned, "emulated": emulated}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_counting(config: str) -> None:
    pe = CONFIGS[config]()
    hyp = ForwardingHypervisor()
    r = AArch64Program.from_asm((ASM / "pmu_counting.S").read_text(), hypervisor=hyp)(pe)
    x = r.x
    assert r.stop == "poweroff"
    assert x[19] == 2 * 1000 + 2  # exact INST_RETIRED over the loop
    assert x[21] > x[20] > 0  # PMCCNTR monotonic
    assert x[22] == 5 and x[23] == 0  # SW_INCR: five writes, counter 3 untouched
    assert x[24] == 1  # CHAIN counted one overflow of counter 2
    assert x[25] & M32 == 42 - 16  # 20 loops + enabling MSR + mov, from 0xfffffff0
    assert x[26] & 0xF == 0x4  # counter 2's overflow flag only
    assert r.exceptions == []
    if config == "emulated":
        assert len(hyp.traps) >= 20  # every PMU access went through EL2
    elif config == "partitioned":
        names = {t.reg.name for t in hyp.traps}
        assert names == {"PMEVTYPER0_EL0", "PMEVTYPER2_EL0", "PMEVTYPER3_EL0",
                         "PMOVSCLR_EL0", "PMOVSSET_EL0"}
    else:
        assert hyp.traps == []


@pytest.mark.parametrize("config", list(CONFIGS))
def test_overflow_interrupt_taken_once_with_zero_skid(config: str) -> None:
    pe = CONFIGS[config]()
    p = prog("overflow_irq")
    r = p(pe)
    irqs = [e for e in r.exceptions if e.kind == "irq"]
    assert len(irqs) == 1 and r.x[20] == 1
    # Counting starts with the enabling MSR (1), daifclr (2), mov (3); the 100th counted
    # instruction is the 49th subs, so the interrupt returns to the b.ne after it.
    assert irqs[0].elr == r.x[22] == p.labels["loop"] + 4
    assert r.x[23] & M32 == 3
    assert r.x[24] & 1 == 1 and r.x[25] & 1 == 0
    assert not pe.pmuirq


@pytest.mark.parametrize("config", list(CONFIGS))
def test_beyond_visible_counters_and_el0_gating(config: str) -> None:
    pe = CONFIGS[config]()
    p = prog("access_traps")
    r = p(pe)
    assert r.stop == "poweroff"
    ecs = [e.ec for e in r.exceptions]
    n_visible = 6 if config == "bare" else 4
    assert r.x[19] == n_visible  # PMCR_EL0.N as the guest reads it
    expected = [0x00, 0x18, 0x15, 0x00, 0x15]  # PMEVCNTR30, EL0 trap, svc, PMINTENSET, svc
    if config != "bare":
        expected = [0x00, *expected]  # PMEVCNTR4 is beyond HPMN: UNDEF from EL2
    assert ecs == expected
    assert r.x[27] == len(expected)
    assert [e.from_el for e in r.exceptions][-4:] == [0, 0, 0, 0]
    trap = next(e for e in r.exceptions if e.ec == 0x18)
    # ISS of the trapped MRS PMCCNTR_EL0, x22: Op0=3 Op2=0 Op1=3 CRn=9 Rt=22 CRm=13, read
    assert trap.esr & 0x1FFFFFF == (3 << 20) | (3 << 14) | (9 << 10) | (22 << 5) | (13 << 1) | 1
    assert trap.esr >> 25 & 1 == 1  # IL
    assert r.x[22] == 0  # the handler saw the trap


def test_counts_are_exact_per_el_and_precise_events() -> None:
    src = """
        mov x0, #0x8
        msr PMEVTYPER0_EL0, x0
        mov x0, #0x6            // LD_RETIRED
        msr PMEVTYPER1_EL0, x0
        mov x0, #0x7            // ST_RETIRED
        msr PMEVTYPER2_EL0, x0
        mov x0, #0x21           // BR_RETIRED
        msr PMEVTYPER3_EL0, x0
        mov x0, #0x13           // MEM_ACCESS
        msr PMEVTYPER4_EL0, x0
        mov x0, #0x1f
        msr PMCNTENSET_EL0, x0
        mov x5, #0x8000
        mov x1, #10
        mov x0, #1
        msr PMCR_EL0, x0
    loop:
        str x1, [x5]
        ldr x2, [x5]
        stp x1, x2, [x5, #16]
        subs x1, x1, #1
        b.ne loop
        mrs x20, PMEVCNTR0_EL0
        mrs x21, PMEVCNTR1_EL0
        mrs x22, PMEVCNTR2_EL0
        mrs x23, PMEVCNTR3_EL0
        mrs x24, PMEVCNTR4_EL0
        mov x0, #0x84000008
        hvc #0
    """
    pe = bare()
    r = AArch64Program.from_asm(src, precise=True)(pe)
    assert r.x[20] == 1 + 5 * 10
    assert r.x[21] == 10  # one load per iteration
    assert r.x[22] == 20  # str + stp
    assert r.x[23] == 10  # b.ne, taken or not
    assert r.x[24] == 40  # str, ldr, two for stp
