"""The host PMUv3 perf driver: models ``drivers/perf/arm_pmuv3.c`` (and ``arm_pmu.c``).

One :class:`ArmPmu` per core type (as on DT systems), each with per-CPU hardware state
(``struct pmu_hw_events``: the counters in use and, from the partitioning series v9, the
per-CPU allocation mask).  The driver programs the PE's registers at EL2 (a VHE host),
allocates counters (``armv8pmu_get_event_idx``: the cycle counter for CPU_CYCLES, a
chained odd/even pair for a 64-bit event on a pre-PMUv3p5 core, else a single counter,
searched high to low as the series' v8 does), and handles the PMU interrupt
(``armv8pmu_handle_irq``), demultiplexing guest bits to KVM when the PMU is partitioned.

The partition knob is the series' ``arm_pmuv3.reserved_host_counters`` (v3 onward; default
-1 = no partition; 0..N); ``armv8pmu_partition`` turns it into ``max_guest_counters``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from pmupart.arch.cores import Core
from pmupart.arch.events import Event
from pmupart.arch.pe import C_BIT, CYCLE_IDX, F0_BIT, ICNTR_IDX, PE
from pmupart.arch.sysreg import EVCNTR_NAMES, EVTYPER_NAMES
from pmupart.host.perf_event import EventState, PerfEvent

if TYPE_CHECKING:
    from pmupart.host.kernel import HostKernel

log = logging.getLogger("pmupart.host")

# PMEVTYPER filter bits as the driver names them (include/linux/perf/arm_pmuv3.h names;
# positions from the register table, spec §4; ARM §D24.5.12).
ARMV8_PMU_EXCLUDE_EL1 = 1 << 31
ARMV8_PMU_EXCLUDE_EL0 = 1 << 30
ARMV8_PMU_INCLUDE_EL2 = 1 << 27
_CHAIN = int(Event.CHAIN)
_CPU_CYCLES = int(Event.CPU_CYCLES)
_INST_RETIRED = int(Event.INST_RETIRED)


class AllocOrder(Enum):
    """Where ``armv8pmu_get_single_idx`` starts looking."""

    HIGH_TO_LOW = "high-to-low"  #: the partitioning series v8 (keeps clear of the guest range)
    LOW_TO_HIGH = "low-to-high"  #: upstream before the series


class Reservation(Enum):
    """What ``reserved_host_counters`` means (spec kvm-partitioning §2.3; static in v1-v6,
    dynamic from v7 13/20 with ``perf_pmu_resched_update``)."""

    STATIC = "static"  #: v1-v6: the guest range is taken from the host at boot
    DYNAMIC = "dynamic"  #: v7+: taken only while a partitioned vCPU is loaded


@dataclass
class PmuHwEvents:
    """``struct pmu_hw_events`` for one CPU: counters in use and the allocation mask."""

    cntr_mask: int  #: counters the host may allocate (general bits + C)
    used_mask: int = 0
    events: dict[int, PerfEvent] = field(default_factory=dict)


class ArmPmu:
    """One host ``struct arm_pmu`` (one per core type on DT systems)."""

    def __init__(self, kernel: HostKernel, name: str, type_: int, cpus: tuple[int, ...],
                 core: Core, *, reserved_host_counters: int = -1,
                 reservation: Reservation = Reservation.DYNAMIC,
                 alloc_order: AllocOrder = AllocOrder.HIGH_TO_LOW) -> None:
        self.kernel = kernel
        self.name = name
        self.type = type_
        self.cpus = tuple(cpus)
        self.core = core
        self.num_counters = core.num_counters
        self.alloc_order = alloc_order
        self.reservation = reservation
        self.hw_cntr_impl = ((1 << self.num_counters) - 1) | C_BIT  # v8: implemented counters
        if core.icntr:
            # __armv8pmu_probe_pmu: ARMV8_PMU_INSTR_IDX (32) is implemented when
            # pmuv3_has_icntr() (mainline; v8 07/21 keeps it in hw_cntr_impl; deltas §4.18)
            self.hw_cntr_impl |= F0_BIT
        self.max_guest_counters = -1
        self.reserved_host_counters = -1
        self.armv8pmu_partition(reserved_host_counters)
        self.hw: dict[int, PmuHwEvents] = {
            c: PmuHwEvents(self._boot_cntr_mask()) for c in self.cpus}
        self.squeezed: dict[int, list[PerfEvent]] = {c: [] for c in self.cpus}
        #: ``kvm_pmu_handle_guest_irq`` hook, set by KVM: (cpu, guest overflow bits) -> None
        self.guest_irq_handler: Callable[[int, int], None] | None = None
        #: v8 16/21 as posted (set by KVM from its revision): every overflow bit of the guest
        #: range (GENMASK(max_guest_counters-1, 0) | C) goes to KVM, whoever runs; False: only
        #: the counters a loaded partitioned vCPU owns (the intent)
        self.guest_irq_whole_guest_range = False

    # ------------------------------------------------------------------ partition
    def armv8pmu_partition(self, reserved: int) -> None:
        """Validate the knob and set ``max_guest_counters`` = N - reserved (-1 = none).
        Out-of-range values disable partitioning with a warning, as a module parameter
        outside 0..N would be rejected."""
        n = self.num_counters
        if reserved == -1:
            self.max_guest_counters = -1
            self.reserved_host_counters = -1
            return
        if not 0 <= reserved <= n:
            log.warning("%s: reserved_host_counters=%d outside 0..%d; PMU not partitioned",
                        self.name, reserved, n)
            self.max_guest_counters = -1
            self.reserved_host_counters = -1
            return
        self.reserved_host_counters = reserved
        self.max_guest_counters = n - reserved

    @property
    def partitioned(self) -> bool:
        return self.max_guest_counters >= 0

    def guest_mask(self) -> int:
        """``GENMASK(max_guest_counters-1, 0) | C``: what a loaded partitioned vCPU takes
        (pmu-direct.c ``kvm_pmu_load``)."""
        if not self.partitioned:
            return 0
        return ((1 << self.max_guest_counters) - 1) | C_BIT

    def _boot_cntr_mask(self) -> int:
        if self.partitioned and self.reservation is Reservation.STATIC:
            return self.hw_cntr_impl & ~self.guest_mask()  # v1-v6: removed at probe
        return self.hw_cntr_impl

    # ------------------------------------------------------------------ filters
    def event_filter(self, ev: PerfEvent, guest_context: bool) -> int:
        """``armv8pmu_set_event_filter`` on a VHE host, plus the EL0 bit as KVM's
        ``kvm_vcpu_pmu_restore_guest/host`` leave it for the current context (kvm/pmu.c)."""
        a = ev.attr
        bits = 0
        if not a.exclude_kernel and not a.exclude_host:
            bits |= ARMV8_PMU_INCLUDE_EL2  # the VHE host kernel runs at EL2
        if a.exclude_guest or a.exclude_kernel:
            bits |= ARMV8_PMU_EXCLUDE_EL1  # EL1 is only ever a guest's on VHE
        counts_el0 = ev.guest_el0 if guest_context else ev.host_el0
        if not counts_el0:
            bits |= ARMV8_PMU_EXCLUDE_EL0
        return bits

    # ------------------------------------------------------------------ allocation
    def armv8pmu_get_event_idx(self, cpu: int, ev: PerfEvent) -> int | None:
        """Pick a counter: PMCCNTR for CPU_CYCLES when free and allowed; a chained pair for a
        64-bit event on a pre-PMUv3p5 core; else a single counter (high to low in v8)."""
        hw = self.hw[cpu]
        return self.pick_idx(hw.cntr_mask & ~hw.used_mask, ev)

    def pick_idx(self, free: int, ev: PerfEvent) -> int | None:
        """:meth:`armv8pmu_get_event_idx` on a given mask of free counters (the host's
        incremental scheduling plans a whole reschedule with it before touching a counter)."""
        if ev.attr.config == _CPU_CYCLES and (free & C_BIT):
            return CYCLE_IDX
        # armv8pmu_get_event_idx (mainline): INST_RETIRED goes to PMICNTR when the PMU has it
        # (ARMV8_PMU_INSTR_IDX in cntr_mask) and it is free, and the event asks for neither a
        # threshold nor user access (``armv8pmu_event_get_threshold``,
        # ``armv8pmu_event_want_user_access``: the model's perf attr has neither, so both hold).
        # The partitioning series adds ``!kvm_pmu_is_partitioned(cpu_pmu)``, as for PMCCNTR
        # (seen in earlier postings of the series' arm_pmuv3.c hunk; v8's not read).
        if ev.attr.config == _INST_RETIRED and (free & F0_BIT) and not self.partitioned:
            return ICNTR_IDX
        gen_free = free & ((1 << self.num_counters) - 1)
        high_first = self.alloc_order is AllocOrder.HIGH_TO_LOW
        if ev.attr.long and self.core.pmuver < 6:
            # armv8pmu_get_chain_idx: odd counter with its even partner free
            gen = [i for i in range(self.num_counters) if (gen_free >> i) & 1]
            if high_first:
                gen.reverse()
            for i in gen:
                if i & 1 and ((free >> (i - 1)) & 1):
                    return i
            return None
        if not gen_free:
            return None
        # the first free general counter in allocation order: the highest set bit, or the
        # lowest (bit arithmetic, not a scan)
        return gen_free.bit_length() - 1 if high_first else (gen_free & -gen_free).bit_length() - 1

    def counter_bits(self, ev: PerfEvent, idx: int) -> int:
        """The ``used_mask`` bits ``ev`` takes on counter ``idx``: with the even counter below
        it for a chained pair (a 64-bit event before PMUv3p5, ``armv8pmu_event_is_chained``)."""
        if ev.attr.long and self.core.pmuver < 6 and idx != CYCLE_IDX:
            return (1 << idx) | (1 << (idx - 1))
        return 1 << idx

    def add(self, cpu: int, ev: PerfEvent, idx: int | None = None) -> bool:
        """``armpmu_add``: get a counter and program it; False if none is free.  ``idx``: the
        counter a planned reschedule chose (what :meth:`armv8pmu_get_event_idx` returned
        when the plan ran it in scheduling order)."""
        if idx is None:
            idx = self.armv8pmu_get_event_idx(cpu, ev)
        if idx is None:
            return False
        hw = self.hw[cpu]
        bits = self.counter_bits(ev, idx)
        chained = bits != 1 << idx
        hw.used_mask |= bits
        hw.events[idx] = ev
        ev.hw_idx = idx
        ev.hw_cpu = cpu
        ev.chained = chained
        ev.state = EventState.ACTIVE
        self._program(cpu, ev)
        return True

    def remove(self, cpu: int, ev: PerfEvent) -> None:
        """``armpmu_del``: read the final count, disable and free the counter."""
        if ev.hw_idx is None:
            return
        self.read(ev)
        idx = ev.hw_idx
        pe = self.kernel.cpus[cpu].pe
        bits = 1 << idx
        if ev.chained:
            bits |= 1 << (idx - 1)
        pe.write_el2("PMCNTENCLR_EL0", bits)
        pe.write_el2("PMINTENCLR_EL1", bits)
        pe.write_el2("PMOVSCLR_EL0", bits)
        hw = self.hw[cpu]
        hw.used_mask &= ~bits
        hw.events.pop(idx, None)
        ev.hw_idx = None
        ev.hw_cpu = -1
        ev.chained = False
        if ev.state is EventState.ACTIVE:
            ev.state = EventState.INACTIVE
        self.kernel.charge(cpu, self.kernel.costs.perf_sched_event, "perf_sched")

    # ------------------------------------------------------------------ programming
    def _counter_value_for(self, ev: PerfEvent, left: int) -> int:
        """The value that overflows after ``left`` events (``armpmu_event_set_period``,
        with ``armv8pmu_bias_long_counter`` for 32-bit events on 64-bit counters)."""
        if ev.hw_idx == CYCLE_IDX or ev.chained or self.core.pmuver >= 6:
            v = (1 << 64) - left
            if not ev.attr.long and ev.hw_idx != CYCLE_IDX:
                v |= 0xFFFFFFFF << 32  # bias: overflow at the 32-bit boundary either way
            return v & ((1 << 64) - 1)
        return ((1 << 32) - left) & 0xFFFFFFFF

    def set_period(self, ev: PerfEvent) -> bool:
        """``armpmu_event_set_period``: returns True when the sample period elapsed."""
        period = ev.sample_period
        fired = False
        left = ev.period_left
        if period:
            if left <= -period:
                left = period
                ev.period_left = left
                fired = True
            if left <= 0:
                left += period
                ev.period_left = left
                fired = True
        max_p = ev.max_period if (ev.hw_idx == CYCLE_IDX or ev.chained or ev.attr.long) \
            else (1 << 32) - 1
        if left <= 0 or left > (max_p >> 1):
            left = max_p >> 1
        self._write_counter(ev, self._counter_value_for(ev, left))
        return fired

    def advance(self, ev: PerfEvent, n: int) -> None:
        """Add ``n`` to the hardware counter of an active event, as if it had counted them
        (the engine's fast-forward); ``prev_hw`` is kept, so the next update picks them up."""
        pe = self.kernel.cpus[self._cpu_of(ev)].pe
        v = (self._hw_value(pe, ev) + n) & ((1 << 64) - 1)
        prev = ev.prev_hw
        self._write_counter(ev, v)
        ev.prev_hw = prev

    def _write_counter(self, ev: PerfEvent, value: int) -> None:
        pe = self.kernel.cpus[self._cpu_of(ev)].pe
        idx = ev.hw_idx
        assert idx is not None
        if idx == CYCLE_IDX:
            pe.write_el2("PMCCNTR_EL0", value)
        elif idx == ICNTR_IDX:
            pe.write_el2("PMICNTR_EL0", value)  # armv8pmu_write_counter: write_pmicntr
        elif ev.chained:
            pe.write_el2(EVCNTR_NAMES[idx - 1], value & 0xFFFFFFFF)
            pe.write_el2(EVCNTR_NAMES[idx], value >> 32)
        else:
            pe.write_el2(EVCNTR_NAMES[idx], value)
        ev.prev_hw = self._hw_value(pe, ev)

    def _hw_value(self, pe: PE, ev: PerfEvent) -> int:
        idx = ev.hw_idx
        assert idx is not None
        if ev.chained:
            return (pe.counter_raw(idx) << 32) | (pe.counter_raw(idx - 1) & 0xFFFFFFFF)
        return pe.counter_raw(idx)

    def _cpu_of(self, ev: PerfEvent) -> int:
        """The CPU whose counter holds ``ev`` (:meth:`add` records it)."""
        hw = self.hw.get(ev.hw_cpu)
        if hw is None or ev.hw_idx is None or hw.events.get(ev.hw_idx) is not ev:
            raise AssertionError("event is not on a counter")
        return ev.hw_cpu

    def _program(self, cpu: int, ev: PerfEvent) -> None:
        """``armv8pmu_enable_event``: type and filter, period, interrupt, enable."""
        pe = self.kernel.cpus[cpu].pe
        idx = ev.hw_idx
        assert idx is not None
        filt = self.event_filter(ev, self.kernel.cpus[cpu].guest_loaded)
        if idx == CYCLE_IDX:
            pe.write_el2("PMCCFILTR_EL0", filt)
        elif idx == ICNTR_IDX:
            pe.write_el2("PMICFILTR_EL0", filt)  # armv8pmu_write_event_type: write_pmicfiltr
        elif ev.chained:
            pe.write_el2(EVTYPER_NAMES[idx - 1], filt | ev.attr.config)
            # the high half counts CHAIN at every EL (LX-DRV armv8pmu_write_event_type)
            pe.write_el2(EVTYPER_NAMES[idx], ARMV8_PMU_INCLUDE_EL2 | _CHAIN)
        else:
            pe.write_el2(EVTYPER_NAMES[idx], filt | ev.attr.config)
        self.set_period(ev)
        bits = 1 << idx
        if ev.chained:
            bits |= 1 << (idx - 1)
        irq_bits = bits if not ev.chained else (1 << idx)
        pe.write_el2("PMINTENSET_EL1", irq_bits)
        pe.write_el2("PMCNTENSET_EL0", bits)
        self.start(pe)
        self.kernel.charge(cpu, self.kernel.costs.perf_sched_event, "perf_sched")

    def start(self, pe: PE) -> None:
        """``armv8pmu_start``: PMCR_EL0.E (and LC, LP on PMUv3p5) and, for the second range,
        MDCR_EL2.HPME (the series' host counters)."""
        pmcr = pe.read_el2("PMCR_EL0")
        want = pmcr | 1 | (1 << 6) | ((1 << 7) if self.core.pmuver >= 6 else 0)
        if want != pmcr:
            pe.write_el2("PMCR_EL0", want & ~((1 << 1) | (1 << 2)))

    def reprogram_el0(self, cpu: int, guest_context: bool) -> int:
        """Rewrite the EL0 filter bit of every active host event for the context now on the
        CPU (``kvm_vcpu_pmu_restore_guest/host``); returns the registers written."""
        hw = self.hw[cpu]
        pe = self.kernel.cpus[cpu].pe
        n = 0
        with pe.at_el(2):
            for idx, ev in hw.events.items():
                filt = self.event_filter(ev, guest_context)
                if ev.host_el0 == ev.guest_el0:
                    continue
                if idx == CYCLE_IDX:
                    pe.write("PMCCFILTR_EL0", filt)
                elif idx == ICNTR_IDX:
                    pe.write("PMICFILTR_EL0", filt)
                else:
                    lo = idx - 1 if ev.chained else idx
                    pe.write(f"PMEVTYPER{lo}_EL0", filt | ev.attr.config)
                n += 1
        return n

    def read(self, ev: PerfEvent) -> None:
        """``armpmu_event_update``: add the hardware delta since the last update."""
        if ev.hw_idx is None:
            return
        pe = self.kernel.cpus[self._cpu_of(ev)].pe
        new = self._hw_value(pe, ev)
        mask = (1 << 64) - 1 if (ev.attr.long or ev.hw_idx == CYCLE_IDX) else (1 << 32) - 1
        delta = (new - ev.prev_hw) & mask
        ev.prev_hw = new
        # local64_add (armpmu_event_update): the count wraps at 2^64 like the kernel's, even
        # when something else rewrote the counter (a guest under v8 as posted can)
        ev.count = (ev.count + delta) & ((1 << 64) - 1)
        ev.period_left -= delta

    # ------------------------------------------------------------------ interrupt
    def armv8pmu_handle_irq(self, cpu: int) -> int:
        """The PMU interrupt: read PMOVSCLR (masked by PMINTENSET), clear the host bits, update
        each overflowed host event and run its overflow handler when its period elapsed;
        guest-range bits of a partitioned PMU go to KVM (series v7 15/20).  Returns the
        number of host events handled."""
        pe = self.kernel.cpus[cpu].pe
        hw = self.hw[cpu]
        with pe.at_el(2):
            ovs = (pe.read("PMOVSCLR_EL0").value or 0) & (pe.read("PMINTENSET_EL1").value or 0)
        if self.guest_irq_whole_guest_range and self.partitioned:
            # v8 16/21 armv8pmu_handle_irq: the host clears only pmovsr & host_set =
            # GENMASK(N-1, max_guest_counters) (C excluded), handles every event whose bit is
            # set, then kvm_pmu_handle_guest_irq clears pmovsr & GENMASK(max_guest-1, 0)|C and
            # gives those bits to the running vCPU.
            guest_bits = ovs & self.guest_mask()
            host_set = ((1 << self.num_counters) - 1) & ~((1 << self.max_guest_counters) - 1)
            host_bits = ovs
            if ovs & host_set:
                with pe.at_el(2):
                    pe.write("PMOVSCLR_EL0", ovs & host_set)
            if guest_bits:
                with pe.at_el(2):
                    pe.write("PMOVSCLR_EL0", guest_bits)
        else:
            # Bits of the counters a loaded partitioned vCPU owns belong to the guest.
            guest_bits = ovs & self.kernel.cpus[cpu].guest_counter_mask
            host_bits = ovs & ~guest_bits
            if host_bits:
                with pe.at_el(2):
                    pe.write("PMOVSCLR_EL0", host_bits)
        handled = 0
        for idx, ev in list(hw.events.items()):
            if not (host_bits >> idx) & 1:
                continue
            self.read(ev)
            if self.set_period(ev):
                ev.nr_samples += 1
                if ev.overflow_handler is not None:
                    ev.overflow_handler(ev)
            handled += 1
        if guest_bits and self.guest_irq_handler is not None:
            self.guest_irq_handler(cpu, guest_bits)
        return handled

    # ------------------------------------------------------------------ dynamic mask
    def set_cntr_mask(self, cpu: int, mask: int) -> list[PerfEvent]:
        """Install a new allocation mask; return the active host events that sit outside it
        (the caller reschedules them: ``perf_pmu_resched_update``)."""
        hw = self.hw[cpu]
        hw.cntr_mask = mask
        out = []
        for idx, ev in hw.events.items():
            bits = (1 << idx) | ((1 << (idx - 1)) if ev.chained else 0)
            if bits & ~mask:
                out.append(ev)
        return out
