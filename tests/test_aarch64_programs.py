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


# ---------------------------------------------------------------- on KVM vCPUs
def kvm_vcpu(backend: str) -> Any:
    from pmupart.guest.vmm import pmu_vcpu

    return pmu_vcpu("cortex-a720", backend, revision="intent")


def run_on_vcpu(name: str, backend: str) -> Any:
    from pmupart.kvm import uapi

    v = kvm_vcpu(backend)
    out: list[Any] = []
    ex = v.run(lambda cpu: out.append(prog(name)(cpu)), cpu=0)
    assert ex.reason == uapi.KVM_EXIT_SYSTEM_EVENT  # the guest powered off
    return out[0]


@pytest.mark.parametrize("backend", ["emulated", "partitioned"])
def test_vcpu_counting(backend: str) -> None:
    r = run_on_vcpu("pmu_counting", backend)
    x = r.x
    assert x[19] == 2002
    assert x[21] > x[20] > 0
    assert (x[22], x[23], x[24], x[25] & M32, x[26] & 0xF) == (5, 0, 1, 26, 4)


@pytest.mark.parametrize("backend", ["emulated", "partitioned"])
def test_vcpu_overflow_interrupt(backend: str) -> None:
    r = run_on_vcpu("overflow_irq", backend)
    irqs = [e for e in r.exceptions if e.kind == "irq"]
    assert len(irqs) == 1 and r.x[20] == 1
    assert irqs[0].elr == prog("overflow_irq").labels["loop"] + 4
    assert r.x[23] & M32 == 3


@pytest.mark.parametrize(("backend", "el0_trap_ec"), [("emulated", 0x00), ("partitioned", 0x18)])
def test_vcpu_access_rules(backend: str, el0_trap_ec: int) -> None:
    r = run_on_vcpu("access_traps", backend)
    assert r.x[19] == 4  # PMCR_EL0.N = HPMN = 6 - 2 reserved host counters
    # PMEVCNTR4 (beyond the guest's 4) and PMEVCNTR30: UNDEF.  The EL0 read that
    # PMUSERENR_EL0 forbids traps straight to EL1 with the partitioned PMU (hardware
    # gate), while the emulated PMU traps it to KVM, which injects an UNDEF (KVM sets the
    # hardware PMUSERENR_EL0 gate open so EL0 accesses reach MDCR_EL2.TPM).
    assert [e.ec for e in r.exceptions] == [0x00, 0x00, el0_trap_ec, 0x15, 0x00, 0x15]


# ---------------------------------------------------------------- runner mechanics
_MASKED = """
    adr x0, vectors
    msr VBAR_EL1, x0
    mov x0, #0x8
    msr PMEVTYPER0_EL0, x0
    mov x0, #0xfffffffe         // overflows after 2 counted instructions
    msr PMEVCNTR0_EL0, x0
    mov x0, #1
    msr PMINTENSET_EL1, x0
    msr PMCNTENSET_EL0, x0
    msr PMCR_EL0, x0            // 1 (IRQs still masked, as after reset)
    nop                         // 2: overflow, the interrupt stays pending
    nop
    nop
    mov x19, #7
unmask:
    msr daifclr, #2             // taken right after this instruction
after:
    mov x0, #0x84000008
    hvc #0
    .align 11
vectors:
    .org vectors + 0x280
    mrs x22, ELR_EL1
    mov x0, #1
    msr PMOVSCLR_EL0, x0
    eret
"""


def test_pending_interrupt_waits_for_pstate_i() -> None:
    p = AArch64Program.from_asm(_MASKED)
    r = p(bare())
    assert r.x[19] == 7
    assert [e.kind for e in r.exceptions] == ["irq"]
    assert r.x[22] == p.labels["after"]  # ELR: the instruction after the unmasking MSR


def test_wfi_with_nothing_to_wake_it_ends_the_run() -> None:
    r = AArch64Program.from_asm("mov x1, #3\nwfi\nmov x1, #4")(bare())
    assert r.stop == "wfi" and r.x[1] == 3 and r.instructions == 2


def test_counts_are_delivered_in_blocks() -> None:
    pe = bare()
    calls: list[dict[Any, int]] = []
    real = pe.count

    def spy(ev: Any) -> None:
        calls.append(dict(ev))
        real(ev)

    pe.count = spy  # type: ignore[method-assign]
    r = prog("pmu_counting")(pe)
    assert r.instructions > 2000
    assert len(calls) < 60  # one per PMU access / exception, not one per instruction
    assert sum(c.get("INST_RETIRED", 0) for c in calls) == r.instructions


def test_fetch_from_unmapped_memory_is_a_clear_error() -> None:
    from pmupart.guest.aarch64 import GuestError

    with pytest.raises(GuestError, match=r"guest fault at pc="):
        AArch64Program.from_asm("mov x0, #0x200000\nbr x0")(bare())


def test_program_argument_errors() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        AArch64Program(b"\0\0\0")
    with pytest.raises(ValueError, match="EL0 or EL1"):
        AArch64Program(b"\0\0\0\0", el=2)
    with pytest.raises(ValueError, match="entry label 'nope'"):
        AArch64Program.from_asm("nop", entry="nope")


def test_runaway_program_stops_at_the_instruction_limit() -> None:
    r = AArch64Program.from_asm("spin: b spin", max_instructions=12345)(bare())
    assert r.stop == "limit" and r.instructions == 12345


def test_precise_event_overflow_has_zero_skid() -> None:
    src = """
        adr x0, vectors
        msr VBAR_EL1, x0
        mov x0, #0x6                // LD_RETIRED
        msr PMEVTYPER0_EL0, x0
        mov x0, #0xfffffffb         // overflows on the 5th load
        msr PMEVCNTR0_EL0, x0
        mov x0, #1
        msr PMINTENSET_EL1, x0
        msr PMCNTENSET_EL0, x0
        msr PMCR_EL0, x0
        msr daifclr, #2
        mov x5, #0x8000
        mov x1, #100
    loop:
        ldr x2, [x5]
    after_load:
        add x3, x3, #1
        add x4, x4, #1
        subs x1, x1, #1
        b.ne loop
        mov x0, #0x84000008
        hvc #0
        .align 11
    vectors:
        .org vectors + 0x280
        mrs x22, ELR_EL1
        mov x23, x3                 // iterations whose add ran
        mov x0, #1
        msr PMOVSCLR_EL0, x0
        eret
    """
    p = AArch64Program.from_asm(src, precise=True)
    r = p(bare())
    assert [e.kind for e in r.exceptions] == ["irq"]
    assert r.x[22] == p.labels["after_load"] and r.x[23] == 4
