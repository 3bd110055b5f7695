"""Guest-style programs written from the architecture (spec §3-§8), run on a bare PE.

Each program is a plain callable taking an object with the register API (``read``,
``write``, ``count``, ``pmuirq``) at EL1, as a guest kernel would drive the PMU.  They run
twice: with the guest owning every counter (HPMN = N), and with HPMN < N while a host
owns the second range (HPME = 1, filters counting EL2 only) and retires its own work at
EL2 between the guest's blocks.  The host range must never be disturbed (spec §1, §3, §5,
§6, §8.2).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from pmupart.arch import PE, Outcome

M32 = (1 << 32) - 1
C = 1 << 31
FP, FU, NSH = 1 << 31, 1 << 30, 1 << 27
INST, CYC, MEM, CHAIN, SWINC = 0x08, 0x11, 0x13, 0x1E, 0x00
HPME, HPMD = 1 << 7, 1 << 17


class GuestError(AssertionError):
    pass


@dataclass
class Guest:
    """The register API a guest sees (DESIGN.md decision 4), running at EL1.  Every block
    of guest work is followed by a block of host work at EL2 when a host is attached."""

    pe: PE
    host_work: Callable[[], None] | None = None
    log: list[str] = field(default_factory=list)

    def read(self, name: str) -> int:
        a = self.pe.read(name)
        if a.outcome is not Outcome.OK or a.value is None:
            raise GuestError(f"guest read of {name}: {a.outcome.name}")
        return a.value

    def write(self, name: str, value: int) -> None:
        a = self.pe.write(name, value)
        if a.outcome is not Outcome.OK:
            raise GuestError(f"guest write of {name}: {a.outcome.name}")

    def try_write(self, name: str, value: int) -> Outcome:
        return self.pe.write(name, value).outcome

    def count(self, events: Mapping[str | int, int]) -> None:
        assert self.pe.el == 1
        self.pe.count(events)
        if self.host_work is not None:
            self.host_work()

    @property
    def pmuirq(self) -> bool:
        return self.pe.pmuirq


def num_counters(g: Guest) -> int:
    return (g.read("PMCR_EL0") >> 11) & 0x1F  # PMCR_EL0.N as the guest sees it (spec §3)


# ---------------------------------------------------------------- guest programs

def counting_loop(g: Guest) -> dict[str, int]:
    """perf-stat-like: count instructions and cycles over a loop; return the readings."""
    n = num_counters(g)
    assert n >= 2
    g.write("PMCR_EL0", 1 | 2 | 4)  # E, reset event counters (P) and cycle counter (C)
    g.write("PMEVTYPER0_EL0", INST)  # count EL0 and EL1 (P = U = 0)
    g.write("PMEVTYPER1_EL0", MEM | FU)  # kernel-only memory accesses
    g.write("PMCCFILTR_EL0", 0)
    g.write("PMCNTENSET_EL0", 0b11 | C)
    for _ in range(10):
        g.count({"INST_RETIRED": 1000, "CPU_CYCLES": 1500, "MEM_ACCESS": 300})
    g.write("PMCNTENCLR_EL0", 0b11 | C)
    g.count({"INST_RETIRED": 5})  # disabled: not counted
    return {"inst": g.read("PMEVCNTR0_EL0"), "mem": g.read("PMEVCNTR1_EL0"),
            "cycles": g.read("PMCCNTR_EL0")}


def sw_increments(g: Guest) -> int:
    """Software increments on the last counter the guest owns, through PMSWINC."""
    n = num_counters(g)
    last = n - 1
    g.write("PMSELR_EL0", last)
    g.write("PMXEVTYPER_EL0", SWINC)
    g.write("PMXEVCNTR_EL0", 0)
    g.write("PMCNTENSET_EL0", 1 << last)
    g.write("PMCR_EL0", 1)
    for _ in range(7):
        g.write("PMSWINC_EL0", 1 << last)
    g.write("PMSWINC_EL0", 0x7FFFFFFF)  # every counter: bits the guest does not own ignored
    return g.read("PMXEVCNTR_EL0")


def chained_counter(g: Guest) -> int:
    """A 64-bit count from an even/odd pair with CHAIN, LP = 0 (spec §6)."""
    g.write("PMCR_EL0", 1)  # E, LP = 0
    g.write("PMEVTYPER0_EL0", INST)
    g.write("PMEVTYPER1_EL0", CHAIN)
    g.write("PMEVCNTR0_EL0", M32 - 99)
    g.write("PMEVCNTR1_EL0", 0)
    g.write("PMCNTENSET_EL0", 0b11)
    g.count({"INST_RETIRED": 3 * (1 << 32) + 250})
    g.write("PMCNTENCLR_EL0", 0b11)
    lo = g.read("PMEVCNTR0_EL0") & M32
    hi = g.read("PMEVCNTR1_EL0") & M32
    g.write("PMOVSCLR_EL0", 0b11)
    return (hi << 32) | lo


def overflow_handler(g: Guest) -> list[str]:
    """Arm an overflow interrupt, take it, and clear it as a driver does (spec §7)."""
    steps = []
    g.write("PMCR_EL0", 1)
    g.write("PMEVTYPER0_EL0", INST)
    g.write("PMEVCNTR0_EL0", M32 - 9)
    g.write("PMINTENSET_EL1", 1)
    g.write("PMCNTENSET_EL0", 1)
    g.count({"INST_RETIRED": 9})
    steps.append(f"irq={g.pmuirq}")
    g.count({"INST_RETIRED": 1})
    steps.append(f"irq={g.pmuirq}")
    ovs = g.read("PMOVSCLR_EL0")  # the handler reads the flags ...
    steps.append(f"ovs={ovs:#x}")
    g.write("PMOVSCLR_EL0", ovs)  # ... and writes the set bits back to clear them
    steps.append(f"irq={g.pmuirq}")
    g.write("PMINTENCLR_EL1", 1)
    return steps


def hostile(g: Guest) -> None:
    """Everything a guest can throw at the PMU: all-ones writes everywhere it may write,
    counters it does not own probed, NSH set so its counters would count EL2."""
    n = num_counters(g)
    for reg in ("PMCNTENCLR_EL0", "PMOVSCLR_EL0", "PMINTENCLR_EL1", "PMSWINC_EL0"):
        g.write(reg, (1 << 33) - 1 if reg != "PMSWINC_EL0" else 0x7FFFFFFF)
    g.write("PMCR_EL0", 1 | 2 | 4 | (1 << 7))  # E, P, C, LP
    for i in range(n):
        g.write(f"PMEVTYPER{i}_EL0", NSH | INST)
    g.write("PMCNTENSET_EL0", (1 << 33) - 1)
    g.write("PMOVSSET_EL0", (1 << 33) - 1)
    g.write("PMINTENSET_EL1", (1 << 33) - 1)
    for i in range(n, 31):  # counters above HPMN: trap to EL2 (FGT) or UNDEFINED above N
        assert g.try_write(f"PMEVCNTR{i}_EL0", 0) in (Outcome.TRAP_EL2, Outcome.UNDEFINED)
        assert g.try_write(f"PMEVTYPER{i}_EL0", 0) in (Outcome.TRAP_EL2, Outcome.UNDEFINED)
        g.write("PMSELR_EL0", i)
        assert g.try_write("PMXEVCNTR_EL0", 0) in (Outcome.TRAP_EL2, Outcome.UNDEFINED)
    g.count({"INST_RETIRED": 10**6})
    g.write("PMCR_EL0", 1 | 2)
    g.write("PMCNTENCLR_EL0", (1 << 33) - 1)
    g.write("PMOVSCLR_EL0", (1 << 33) - 1)


# ---------------------------------------------------------------- harness: host at EL2

@dataclass
class Host:
    """The host's counters [hpmn, N): HPME = 1, counting EL2 only (P = U = 1, NSH = 1), and
    a ledger of the work it retires at EL2."""

    pe: PE
    hpmn: int
    retired: dict[int, int] = field(default_factory=dict)
    start: int = 1000

    def setup(self) -> None:
        pe, n = self.pe, self.pe.num_counters
        with pe.at_el(2):
            # HPMD: the guest's counters do not count at EL2 even with NSH = 1 (spec §5.3)
            assert pe.write("MDCR_EL2", self.hpmn | HPME | HPMD).ok
            for i in range(self.hpmn, n):
                assert pe.write(f"PMEVTYPER{i}_EL0", FP | FU | NSH | self.event(i)).ok
                assert pe.write(f"PMEVCNTR{i}_EL0", self.start + i).ok
            mask = ((1 << n) - 1) & ~((1 << self.hpmn) - 1)
            assert pe.write("PMCNTENSET_EL0", mask).ok
            assert pe.write("PMINTENSET_EL1", mask).ok

    @staticmethod
    def event(i: int) -> int:
        return (INST, CYC, MEM)[i % 3]

    def work(self) -> None:
        block = {INST: 700, CYC: 900, MEM: 50}
        with self.pe.at_el(2):
            self.pe.count(block)
        for ev, k in block.items():
            self.retired[ev] = self.retired.get(ev, 0) + k

    def check(self) -> None:
        pe, n = self.pe, self.pe.num_counters
        s = pe.snapshot()
        for i in range(self.hpmn, n):
            assert s.evcntr[i] == self.start + i + self.retired.get(self.event(i), 0), i
            assert s.evtyper[i] == FP | FU | NSH | self.event(i)
        host = ((1 << n) - 1) & ~((1 << self.hpmn) - 1)
        assert s.pmcnten & host == host
        assert s.pminten & host == host
        assert s.pmovs & host == 0  # nothing near overflow: the guest could not set them
        assert s.mdcr_el2 & 0x1F == self.hpmn and s.mdcr_el2 & HPME


def run(prog: Callable[[Guest], object], n: int, hpmn: int | None,
        pmuver: str = "V3P5") -> tuple[object, PE, Host | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pe = PE(n, pmuver, fgt=True, hpmn0=True)
    host = None
    if hpmn is not None:
        host = Host(pe, hpmn)
        host.setup()
    pe.el = 1
    g = Guest(pe, host.work if host else None)
    out = prog(g)
    if host is not None:
        host.check()
    return out, pe, host


@pytest.mark.parametrize("pmuver", ["V3P1", "V3P5"])
@pytest.mark.parametrize(("n", "hpmn"), [(6, None), (6, 4), (6, 3), (20, 2), (31, 30)])
def test_counting_loop(n: int, hpmn: int | None, pmuver: str) -> None:
    """spec §3 (PMCR.P/C/E), §5 (enables, filters), §8.2 (host range)."""
    out, _, _ = run(counting_loop, n, hpmn, pmuver)
    assert out == {"inst": 10_000, "mem": 3_000, "cycles": 15_000}


@pytest.mark.parametrize(("n", "hpmn"), [(6, None), (6, 4), (6, 3), (31, 1)])
def test_sw_increments(n: int, hpmn: int | None) -> None:
    out, pe, _ = run(sw_increments, n, hpmn)
    assert out == 8
    # spec §6: PMSWINC bits at and above HPMN were ignored (no host counter counts SW_INCR
    # here anyway; the host check verifies their values)
    assert pe.snapshot().evcntr[(hpmn or n) - 1] == 8


@pytest.mark.parametrize("pmuver", ["V3P1", "V3P5"])
@pytest.mark.parametrize(("n", "hpmn"), [(6, None), (6, 4), (6, 2), (31, 2)])
def test_chained_counter(n: int, hpmn: int | None, pmuver: str) -> None:
    """spec §6 CHAIN across a guest-owned pair; host range undisturbed (§8.2)."""
    out, _, _ = run(chained_counter, n, hpmn, pmuver)
    assert out == (M32 - 99) + 3 * (1 << 32) + 250


@pytest.mark.parametrize(("n", "hpmn"), [(6, None), (6, 4), (6, 1)])
def test_overflow_handler(n: int, hpmn: int | None) -> None:
    """spec §7: PMUIRQ level, cleared through PMOVSCLR."""
    out, pe, _ = run(overflow_handler, n, hpmn)
    assert out == ["irq=False", "irq=True", "ovs=0x1", "irq=False"]
    assert not pe.pmuirq


@pytest.mark.parametrize(("n", "hpmn"), [(6, None), (6, 4), (6, 3), (6, 1), (31, 7)])
def test_hostile_guest_cannot_touch_host_range(n: int, hpmn: int | None) -> None:
    """spec §3 (PMCR.P from EL1), §5.3 (HPMD), §6 (PMSWINC mask), §8.2."""
    _, pe, _ = run(hostile, n, hpmn)  # run() checks the host range
    s = pe.snapshot()
    h = hpmn if hpmn is not None else n
    for i in range(h):
        assert s.evcntr[i] == 0  # the final PMCR.P cleared the guest's own counters


def test_host_overflow_interrupt_survives_guest_clearing() -> None:
    # The host's R2 overflow raises PMUIRQ; a guest writing PMOVSCLR/PMINTENCLR all-ones
    # cannot clear it (RAZ/WI above HPMN, spec §8.2) and PMCR.E = 0 does not gate it (§7).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pe = PE(6, "V3P5", fgt=True)
    host = Host(pe, 4)
    host.setup()
    with pe.at_el(2):
        pe.write("PMEVCNTR5_EL0", M32)
        pe.count({host.event(5): 1})
    assert pe.pmuirq
    pe.el = 1
    g = Guest(pe)
    g.write("PMOVSCLR_EL0", (1 << 33) - 1)
    g.write("PMINTENCLR_EL1", (1 << 33) - 1)
    g.write("PMCR_EL0", 0)
    assert g.read("PMOVSSET_EL0") == 0  # the guest does not even see the host's flag
    assert pe.pmuirq
    assert pe.snapshot().pmovs == 1 << 5
    with pe.at_el(2):
        assert pe.write("PMOVSCLR_EL0", 1 << 5).ok
    assert not pe.pmuirq
