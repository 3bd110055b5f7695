"""A guest kernel's PMU driver running one perf session, through the guest's register API.

This is what ``perf stat -e ...`` / ``perf record -F <freq> -e ...`` make a Linux guest's
``arm_pmuv3`` driver do (my own model of it, after ``drivers/perf/arm_pmuv3.c`` and
``kernel/events/core.c``): reset the PMU (``armv8pmu_reset``), probe ``PMCR_EL0.N`` and
PMCEID, give each event a counter (the cycle counter for CPU_CYCLES; general counters
from 0 up, as an unmodified guest kernel does), multiplex by rotation at its own tick when
it has more events than counters, take overflow interrupts (re-arming the period; counting
events have a period of half the counter range), and read the counts at the end.  Every
access goes through the vCPU, so on the emulated vPMU each one traps, and on the
partitioned vPMU only PMOVS/PMEVTYPER/PMCCFILTR do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pmupart.arch.events import Event, event_name
from pmupart.arch.pe import Access
from pmupart.sim.spec import PerfMode, PerfSession

_CYCLES = int(Event.CPU_CYCLES)
_C = 31


class RegisterApi(Protocol):  # the guest CPU surface the driver needs
    el: int

    def read(self, name: str) -> Access: ...

    def write(self, name: str, value: int) -> Access: ...


@dataclass
class GuestEventResult:
    """One event of a guest session, as ``perf stat`` inside the guest would report it."""

    event: str
    count: int
    time_enabled: int
    time_running: int
    supported: bool
    samples: int


class GuestPmuDriver:
    """The guest kernel's driver state for one perf session."""

    def __init__(self, session: PerfSession, *, exclude_user: bool = False,
                 exclude_kernel: bool = False) -> None:
        self.session = session
        self.events = list(session.events)
        n = len(self.events)
        self.counts = [0] * n
        self.enabled_ns = [0] * n
        self.running_ns = [0] * n
        self.samples = [0] * n
        self.supported = [True] * n
        self.period = [0] * n
        self.prev = [0] * n
        self.counter: dict[int, int] = {}  #: event index -> counter index
        self.order = list(range(n))
        self.started = False
        self.num_counters = 0
        self.wide = False  #: 64-bit counters (guest PMUv3p5: PMCR.LP)
        self.exclude_user = exclude_user or session.exclude_user
        self.exclude_kernel = exclude_kernel or session.exclude_kernel
        self._last_tick_counts = [0] * n
        self.rotations = 0
        self.irqs = 0

    # ------------------------------------------------------------------ setup
    @property
    def max_period(self) -> int:
        return (1 << 64) - 1 if self.wide else (1 << 32) - 1

    def needs_tick(self) -> bool:
        """The guest tick matters when events rotate or sample periods adapt to a frequency."""
        return len(self.order) > self._slots() or (self.session.mode is PerfMode.RECORD
                                                   and self.session.freq > 0)

    def _slots(self) -> int:
        cyc = any(self.events[i] == _CYCLES for i in range(len(self.events)))
        return self.num_counters + (1 if cyc else 0) if self.started else 1 << 30

    def start(self, cpu: RegisterApi) -> None:
        """``armv8pmu_reset`` + probe + the first schedule."""
        self.started = True
        pmcr = cpu.read("PMCR_EL0")
        self.num_counters = ((pmcr.value or 0) >> 11) & 0x1F if pmcr.ok else 0
        dfr0 = cpu.read("ID_AA64DFR0_EL1")
        pmuver = ((dfr0.value or 0) >> 8) & 0xF if dfr0.ok else 1
        self.wide = 6 <= pmuver < 0xF
        ceid = [cpu.read("PMCEID0_EL0"), cpu.read("PMCEID1_EL0")]
        for i, ev in enumerate(self.events):
            if ev < 0x40:
                reg = ceid[ev >> 5]
                self.supported[i] = bool(reg.ok and ((reg.value or 0) >> (ev & 0x1F)) & 1)
        self.order = [i for i in self.order if self.supported[i]]
        for i in range(len(self.events)):
            self.period[i] = self._initial_period(i)
        # reset: disable everything, clear flags, P|C|LC (+LP for 64-bit counters)
        cpu.write("PMCNTENCLR_EL0", 0xFFFFFFFF)
        cpu.write("PMINTENCLR_EL1", 0xFFFFFFFF)
        cpu.write("PMOVSCLR_EL0", 0xFFFFFFFF)
        cpu.write("PMCR_EL0", 0b110 | (1 << 6) | ((1 << 7) if self.wide else 0))
        self._schedule(cpu)
        cpu.write("PMCR_EL0", 1 | (1 << 6) | ((1 << 7) if self.wide else 0))

    def _initial_period(self, i: int) -> int:
        s = self.session
        if s.mode is PerfMode.RECORD:
            if s.period:
                return s.period
            return max(1, 2_000_000_000 // max(1, s.freq))  # adapted at the first tick
        return (self.max_period >> 1) + 1

    # ------------------------------------------------------------------ scheduling
    def _filter(self) -> int:
        v = 0
        if self.exclude_kernel:
            v |= 1 << 31
        if self.exclude_user:
            v |= 1 << 30
        return v

    def _schedule(self, cpu: RegisterApi) -> None:
        """Give counters to events in rotation order; stop at the first that does not fit
        (``merge_sched_in``)."""
        used: set[int] = set()
        for i in self.order:
            ev = self.events[i]
            idx: int | None = None
            if ev == _CYCLES and _C not in used:
                idx = _C
            else:
                idx = next((c for c in range(self.num_counters) if c not in used), None)
            if idx is None:
                break
            used.add(idx)
            self.counter[i] = idx
            self._program(cpu, i, idx)

    def _program(self, cpu: RegisterApi, i: int, idx: int) -> None:
        filt = self._filter()
        if idx == _C:
            cpu.write("PMCCFILTR_EL0", filt)
        else:
            cpu.write(f"PMEVTYPER{idx}_EL0", filt | self.events[i])
        self._set_period(cpu, i, idx)
        cpu.write("PMINTENSET_EL1", 1 << idx)
        cpu.write("PMCNTENSET_EL0", 1 << idx)

    def _counter_reg(self, idx: int) -> str:
        return "PMCCNTR_EL0" if idx == _C else f"PMEVCNTR{idx}_EL0"

    def _width(self, idx: int) -> int:
        return (1 << 64) - 1 if (idx == _C or self.wide) else (1 << 32) - 1

    def _set_period(self, cpu: RegisterApi, i: int, idx: int) -> None:
        left = min(self.period[i], self.max_period >> 1) if self.session.mode is PerfMode.STAT \
            else self.period[i]
        v = (-left) & self._width(idx)
        if idx == _C and not self.wide:
            v |= 0xFFFFFFFF << 32  # bias the 64-bit cycle counter to overflow like 32 bits
        cpu.write(self._counter_reg(idx), v)
        self.prev[i] = v

    def _update(self, cpu: RegisterApi, i: int, idx: int) -> int:
        acc = cpu.read(self._counter_reg(idx))
        if not acc.ok:
            return 0
        new = acc.value or 0
        mask = self._width(idx) if self.wide or idx != _C else (1 << 32) - 1
        delta = (new - self.prev[i]) & mask
        self.prev[i] = new
        self.counts[i] += delta
        return delta

    def _unprogram(self, cpu: RegisterApi, i: int) -> None:
        idx = self.counter.pop(i)
        cpu.write("PMCNTENCLR_EL0", 1 << idx)
        cpu.write("PMINTENCLR_EL1", 1 << idx)
        self._update(cpu, i, idx)

    # ------------------------------------------------------------------ time and ticks
    def account(self, ns: int) -> None:
        """Guest time passes (the vCPU ran ``ns``): enabled/running times."""
        for i in self.order:
            self.enabled_ns[i] += ns
            if i in self.counter:
                self.running_ns[i] += ns

    def tick(self, cpu: RegisterApi, tick_ns: int) -> None:
        """The guest's timer tick: adapt sampling periods, rotate if events wait.  The tick
        runs in the guest kernel, at EL1, whatever EL the vCPU was interrupted at (at EL0,
        the driver's accesses would trap or UNDEF and its bookkeeping would drift: found
        by the checker's own-work invariant)."""
        old_el = cpu.el
        cpu.el = 1
        try:
            self._tick(cpu, tick_ns)
        finally:
            cpu.el = old_el

    def _tick(self, cpu: RegisterApi, tick_ns: int) -> None:
        s = self.session
        if s.mode is PerfMode.RECORD and s.freq > 0:
            for i, idx in list(self.counter.items()):
                self._update(cpu, i, idx)
                rate = (self.counts[i] - self._last_tick_counts[i]) * 10**9 // max(1, tick_ns)
                self._last_tick_counts[i] = self.counts[i]
                if rate:
                    self.period[i] = max(1, rate // s.freq)
        if len(self.order) > len(self.counter):
            for i in list(self.counter):
                self._unprogram(cpu, i)
            self.order = self.order[1:] + self.order[:1]
            self._schedule(cpu)
            self.rotations += 1

    def irq(self, cpu: RegisterApi) -> None:
        """``armv8pmu_handle_irq`` in the guest: read and clear PMOVS, stop the PMU
        (``armv8pmu_stop``: PMCR.E = 0), update and re-arm each overflowed counter, start it
        again (``armv8pmu_start``)."""
        self.irqs += 1
        ovs = cpu.read("PMOVSCLR_EL0").value or 0
        if not ovs:
            return
        cpu.write("PMOVSCLR_EL0", ovs)
        pmcr = cpu.read("PMCR_EL0").value or 0
        cpu.write("PMCR_EL0", pmcr & ~(1 | (0x1F << 11)))
        for i, idx in list(self.counter.items()):
            if not (ovs >> idx) & 1:
                continue
            self._update(cpu, i, idx)
            if self.session.mode is PerfMode.RECORD:
                self.samples[i] += 1
            self._set_period(cpu, i, idx)
        pmcr = cpu.read("PMCR_EL0").value or 0
        cpu.write("PMCR_EL0", (pmcr | 1) & ~(0x1F << 11))

    def finish(self, cpu: RegisterApi) -> None:
        """Read the final counts (``perf stat`` closing its events), at EL1."""
        old_el = cpu.el
        cpu.el = 1
        try:
            for i in list(self.counter):
                self._unprogram(cpu, i)
        finally:
            cpu.el = old_el

    def results(self) -> list[GuestEventResult]:
        return [GuestEventResult(event_name(ev).lower() if ev != _CYCLES else "cpu_cycles",
                                 self.counts[i], self.enabled_ns[i], self.running_ns[i],
                                 self.supported[i], self.samples[i])
                for i, ev in enumerate(self.events)]
