"""Random guest programs, three PMUs: a bare PE (N = 4, PMUv3p5, FGT), the emulated vPMU and
the partitioned vPMU must agree on every guest-visible register after every step (DESIGN.md
decision 4; the architecture as the reference, spec pmuv3-semantics §3-§8).  Interrupts are
off here (tests/test_kvm_vpmu.py covers them); seeds are fixed so failures reproduce."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_kvm_vpmu import BareCpu, fgt_machine

from pmupart.arch import Outcome
from pmupart.kvm.uapi import KVM_ARM_VCPU_PMU_V3_CTRL as CTRL

N = 4
C = 1 << 31
EVENTS = (0x08, 0x11, 0x13, 0x00, 0x1E)  # INST, CPU_CYCLES, MEM, SW_INCR, CHAIN
NAMES = {0x08: "INST_RETIRED", 0x11: "CPU_CYCLES", 0x13: "MEM_ACCESS"}
M32 = (1 << 32) - 1


def gen(seed: int, steps: int = 40, irqs: bool = False) -> list[tuple[str, Any, Any]]:
    r = random.Random(seed)
    events = EVENTS[:-1] if irqs else EVENTS  # see test_random_programs_with_interrupts
    # PMCR.LP is fixed per program: upstream KVM does not re-derive a live perf event's
    # period when LP flips (kvm_pmu_handle_pmcr reloads only on an E change), so the
    # emulated vPMU can flag a 32-bit overflow the architecture would not (see the report).
    lp = r.choice((0, 1 << 7))
    ops: list[tuple[str, Any, Any]] = [("w", "PMCR_EL0", (1 << 6) | 1 | lp)]
    for _ in range(steps):
        k = r.randrange(10)
        i = r.randrange(N)
        if k == 0:
            ev = r.choice(events)
            # CHAIN counters count at every EL, as software should program them: the PE may
            # ignore their filter (ARM §D14.3; spec pmuv3 §6), and KVM does.
            filt = 0 if ev == 0x1E else r.choice((0, 0, 1 << 30, 1 << 31))
            ops.append(("w", f"PMEVTYPER{i}_EL0", ev | filt))
        elif k == 1:
            v = r.choice((0, M32 - r.randrange(50), M32 - r.randrange(3000),
                          r.randrange(1 << 40), (1 << 64) - 3))
            ops.append(("w", f"PMEVCNTR{i}_EL0", v))
        elif k == 2:
            ops.append(("w", r.choice(("PMCNTENSET_EL0", "PMCNTENCLR_EL0")),
                        r.randrange(1 << N) | r.choice((0, C))))
        elif k == 3:
            pmcr = r.choice((0, 1 << 6)) | r.choice((0, 1, 1, 1)) | r.choice((0, 0, 2, 4)) | lp
            ops.append(("w", "PMCR_EL0", pmcr))
        elif k == 4:
            ops.append(("w", "PMSWINC_EL0", r.randrange(1 << N)))
        elif k == 5:
            ops.append(("w", "PMOVSCLR_EL0", r.randrange(1 << N) | C))
        elif k == 6:
            ops.append(("w", "PMCCNTR_EL0", r.choice((0, (1 << 64) - 10))))
        elif k == 7:
            ops.append(("el", r.choice((0, 1)), None))
        elif k == 8 and irqs:
            ops.append(("w", r.choice(("PMINTENSET_EL1", "PMINTENCLR_EL1")),
                        r.randrange(1 << N) | r.choice((0, C))))
        else:
            ev = r.choice(("INST_RETIRED", "MEM_ACCESS", "CPU_CYCLES"))
            ops.append(("c", ev, r.choice((1, 7, 40, 1000, 5_000_000))))
    return ops


READS = ([f"PMEVCNTR{i}_EL0" for i in range(N)] + [f"PMEVTYPER{i}_EL0" for i in range(N)]
         + ["PMCCNTR_EL0", "PMCNTENSET_EL0", "PMOVSSET_EL0", "PMCR_EL0"])


def program(ops: list[tuple[str, Any, Any]], log: list[tuple[Any, ...]], lo: int = 0,
            hi: int | None = None) -> Any:
    def handler(cpu: Any) -> None:
        ovs = cpu.read("PMOVSCLR_EL0").value
        log.append(("irq", ovs, tuple(cpu.read(n).value for n in READS[:N])))
        cpu.write("PMOVSCLR_EL0", ovs)

    def prog(cpu: Any) -> None:
        cpu.on_pmu_irq(handler)
        el = 1
        for step, (k, a, b) in enumerate(ops[:hi]):
            if k == "el":
                el = a
            if step < lo:
                continue
            if k == "w":
                cpu.write(a, b)
            elif k == "c":
                cpu.el = el
                cpu.count({a: b})
                cpu.el = 1
            snap = []
            for name in READS:
                acc = cpu.read(name)
                v = acc.value if acc.outcome is Outcome.OK else acc.outcome.name
                if name == "PMCR_EL0" and isinstance(v, int):
                    v &= 0xFF | (0x1F << 11)  # E P C D X DP LC LP, N; not IMP/IDCODE
                snap.append(v)
            log.append((step, ops[step], tuple(snap)))
    return prog


def run_kind(kind: str, ops: list[tuple[str, Any, Any]]) -> list[tuple[Any, ...]]:
    log: list[tuple[Any, ...]] = []
    prog = program(ops, log)
    if kind == "bare":
        prog(BareCpu(N))
        return log
    m = fgt_machine()
    v = m.kvm.create_vm().create_vcpu()
    if kind == "partitioned":
        v.set_device_attr(CTRL, 5, 1)
    v.set_device_attr(CTRL, 4, N)
    v.set_device_attr(CTRL, 0, 23)
    v.set_device_attr(CTRL, 1, None)
    # split the program in two runs on two CPUs: migration must not change anything either
    half = len(ops) // 2
    v.run(program(ops, log, 0, half), cpu=0)
    v.run(program(ops, log, half), cpu=1)
    return log


@pytest.mark.parametrize("seed", range(12))
def test_random_programs_agree(seed: int) -> None:
    ops = gen(seed)
    ref = run_kind("bare", ops)
    for kind in ("emulated", "partitioned"):
        got = run_kind(kind, ops)
        assert len(got) == len(ref)
        for a, b in zip(ref, got, strict=True):
            assert a == b, f"{kind} seed {seed}: step {a[0]} {a[1]}\n" + "\n".join(
                f"  {n}: bare={x!r} {kind}={y!r}" for n, x, y in zip(READS, a[2], b[2],
                                                                      strict=True) if x != y)


@pytest.mark.parametrize("seed", [120, 133, 134, *range(100, 106)])
def test_random_programs_with_interrupts(seed: int) -> None:
    # Every overflow with its interrupt enabled is taken once, where it happens, and the
    # handler sees the same counters.  No CHAIN here: an odd CHAIN counter can overflow in
    # the middle of a block the reference PE only cuts at its own event's overflows.
    ops = gen(seed, 60, irqs=True)
    ref = run_kind("bare", ops)
    assert any(e[0] == "irq" for e in ref) or seed not in (120, 133, 134)
    for kind in ("emulated", "partitioned"):
        got = run_kind(kind, ops)
        assert got == ref, kind
