"""The host kernel: CPUs with their PEs, perf's per-CPU scheduling, the PMU drivers.

A VHE host: the host kernel runs at EL2 and host user space at EL0 with
HCR_EL2.{E2H,TGE} = {1,1}; guests run at EL1/EL0 with TGE clear.  Work is retired on a
CPU with :meth:`HostKernel.retire`, which cuts the block exactly where an enabled
counter overflows (so the PMU interrupt is taken at its interpolated point) and where
perf's multiplexing timer fires; every perf operation and interrupt charges its cost
in cycles at EL2, where host counters that count EL2 see it (DESIGN.md decision 6).
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from pmupart.arch.cores import Core
from pmupart.arch.events import Event, event_number
from pmupart.arch.pe import CYCLE_IDX, ICNTR_IDX, PE
from pmupart.arch.policy import Policies
from pmupart.errors import PmupartError
from pmupart.host.arm_pmuv3 import AllocOrder, ArmPmu, Reservation
from pmupart.host.perf_event import EventState, PerfContext, PerfEvent, PerfEventAttr, Task

log = logging.getLogger("pmupart.host")
_CYC = int(Event.CPU_CYCLES)
_INST = int(Event.INST_RETIRED)


#: A block of work: event name or number -> how many.
EventCounts = Mapping[str, int] | Mapping[int, int] | Mapping[str | int, int]


class PerfError(PmupartError, OSError):
    """``perf_event_open`` refused: carries the errno the syscall returns."""

    def __init__(self, err: int, msg: str) -> None:
        OSError.__init__(self, err, msg)
        self.errno = err


@dataclass(frozen=True, slots=True)
class HostCosts:
    """Cycle costs of host kernel operations, charged at EL2 (model parameters).

    Defaults are order-of-magnitude estimates for a 2-3 GHz Arm core running a current
    kernel, chosen once and documented in README "Costs"; scenarios override them.
    """

    perf_event_create: int = 9000  #: perf_event_create_kernel_counter: alloc, init, install
    perf_event_release: int = 6000  #: perf_event_release_kernel
    perf_sched_event: int = 200  #: armpmu_add/del of one event: a few MSR/MRS and an ISB
    perf_read: int = 150  #: perf_event_read_value of an active event
    pmu_irq: int = 1200  #: PMU IRQ entry/exit, GIC acknowledge and EOI, handler prologue
    pmu_irq_per_event: int = 600  #: per overflowed event: update, set_period
    perf_sample: int = 2500  #: perf_event_overflow writing one sample (perf record)
    resched: int = 800  #: perf_pmu_resched_update: schedule out and back in
    rotate: int = 1500  #: perf_rotate_context (hrtimer) bookkeeping


@dataclass
class HostStats:
    """What the host kernel did (for reports and checks)."""

    perf_events_created: int = 0
    perf_events_released: int = 0
    squeezed_out: int = 0
    pinned_squeezed_out: int = 0
    pmu_irqs: int = 0
    rotations: int = 0
    warnings: list[str] = field(default_factory=list)
    squeezed_events: list[tuple[int, PerfEvent]] = field(default_factory=list)
    #: the host's CPUs, whose own tallies the EL2 totals below add up (one tally per charge,
    #: not two: :meth:`HostKernel.charge` is the hottest call of a trapping guest)
    cpus: list[HostCpu] = field(default_factory=list, repr=False, compare=False)

    @property
    def el2_cycles(self) -> Counter[str]:
        """EL2 cycles by reason, over all CPUs (a new Counter: the sum of each CPU's
        ``el2_cycles_by_reason``)."""
        out: Counter[str] = Counter()
        for hc in self.cpus:
            out.update(hc.el2_cycles_by_reason)
        return out

    @property
    def el2_ns(self) -> Counter[tuple[str, str]]:
        """EL2 time by (party, reason), over all CPUs: party is whoever the CPU worked for
        ("host" or a VM) (a new Counter: the sum of each CPU's ``el2_ns_by``)."""
        out: Counter[tuple[str, str]] = Counter()
        for hc in self.cpus:
            out.update(hc.el2_ns_by)
        return out


class HostCpu:
    """One physical CPU: its PE, clock and perf context."""

    def __init__(self, cpu: int, core: Core, pe: PE, mux_interval_ns: int) -> None:
        self.id = cpu
        self.core = core
        self.pe = pe
        self.ctx = PerfContext(cpu)
        self.now_ns = 0
        self._cyc_rem = 0  # cycle remainder (ns conversion is exact over a run)
        self.mux_interval_ns = mux_interval_ns
        self.next_rotation_ns = mux_interval_ns
        #: the mux hrtimer is queued (``cpc->hrtimer_active``): once started it keeps its
        #: expiry until its handler finds nothing to rotate (``perf_mux_hrtimer_handler``)
        self.mux_timer_active = False
        self.guest_loaded = False  #: a vCPU is loaded (guest EL0 filter context)
        self.guest_counter_mask = 0  #: counters a loaded partitioned vCPU owns
        self.loaded_vcpu: object | None = None
        self.el2_cycles = 0
        self.party = "host"  #: who EL2 work on this CPU is done for (the loaded VM, or host)
        self.pending_el2 = 0  #: EL2 cycles charged but not yet retired on the PE
        self.pmu_irqs = 0  #: PMU interrupts taken on this CPU
        self.el2_cycles_by_reason: Counter[str] = Counter()
        self.el2_ns_by: Counter[tuple[str, str]] = Counter()  #: (party, reason) -> ns

    @property
    def mux_timer_pending(self) -> bool:
        """The mux hrtimer will fire: queued, and either a group waits or its expiry is
        still ahead (a timer that expires with nothing waiting stops)."""
        return self.mux_timer_active and (self.ctx.rotate_necessary
                                          or self.next_rotation_ns > self.now_ns)

    @property
    def freq_mhz(self) -> int:
        return self.core.freq_mhz

    def advance_cycles(self, cycles: int) -> int:
        """The clock moves on by ``cycles`` at this CPU's frequency (the remainder carried, so
        the ns conversion is exact over a run); returns the ns it moved."""
        f = self.core.freq_mhz
        tot = self._cyc_rem + cycles * 1000
        dt = tot // f
        self._cyc_rem = tot % f
        self.now_ns += dt
        return dt

    def cycles_until(self, t_ns: int) -> int:
        """Cycles that take this CPU's clock to ``t_ns`` (at least 1)."""
        dt = t_ns - self.now_ns
        return max(1, -(-(dt * self.freq_mhz - self._cyc_rem) // 1000))


def _hrtimer_forward_now(hc: HostCpu) -> None:
    """``hrtimer_forward_now(timer, interval)``: move the mux timer's expiry forward by
    whole intervals to the first one after now, so the timer keeps its phase (its first
    expiry is a multiple of the interval since boot)."""
    late = hc.now_ns - hc.next_rotation_ns
    if late >= 0:
        hc.next_rotation_ns += (late // hc.mux_interval_ns + 1) * hc.mux_interval_ns


class HostKernel:
    """The host: CPUs, PMUs (``m.host.pmus``) and perf."""

    def __init__(self, cpu_cores: list[Core], pmus: list[tuple[str, int, tuple[int, ...], Core]],
                 *, reserved_host_counters: int = -1,
                 reservation: Reservation = Reservation.DYNAMIC,
                 alloc_order: AllocOrder = AllocOrder.HIGH_TO_LOW,
                 mux_interval_ms: int = 4, costs: HostCosts | None = None,
                 policies: Policies | None = None) -> None:
        self.costs = costs or HostCosts()
        self.stats = HostStats()
        self.mux_interval_ms = mux_interval_ms
        self.cpus = [HostCpu(i, c, PE.from_core(c, policies=policies), mux_interval_ms * 10**6)
                     for i, c in enumerate(cpu_cores)]
        self.stats.cpus = self.cpus
        for hc in self.cpus:
            # Host boot: Linux's el2_setup leaves HPMN = N, no traps; VHE host with TGE set.
            with hc.pe.at_el(2):
                hc.pe.write("HCR_EL2", (1 << 34) | (1 << 27))
        self.pmus = [ArmPmu(self, name, typ, cpus, core,
                            reserved_host_counters=reserved_host_counters,
                            reservation=reservation, alloc_order=alloc_order)
                     for name, typ, cpus, core in pmus]
        self._pmu_by_type = {p.type: p for p in self.pmus}
        self._pmu_of_cpu = {c: p for p in self.pmus for c in p.cpus}
        self.reserved_host_counters = reserved_host_counters
        self.reservation = reservation
        self.events: list[PerfEvent] = []
        self.listeners: list[Callable[[str, dict[str, object]], None]] = []

    # ------------------------------------------------------------------ lookup
    def pmu_by_type(self, type_: int) -> ArmPmu | None:
        return self._pmu_by_type.get(type_)

    def pmu_of_cpu(self, cpu: int) -> ArmPmu:
        return self._pmu_of_cpu[cpu]

    def emit(self, kind: str, **data: object) -> None:
        """Tell listeners (engine, checker, tracer) what happened."""
        for fn in self.listeners:
            fn(kind, data)

    # ------------------------------------------------------------------ perf API
    def perf_event_open(self, attr: PerfEventAttr, cpu: int = -1, task: Task | None = None,
                        group_leader: PerfEvent | None = None,
                        overflow_handler: Callable[[PerfEvent], None] | None = None,
                        owner: str = "host", charge_cpu: int | None = None) -> PerfEvent:
        """``perf_event_open`` / ``perf_event_create_kernel_counter``."""
        pmu = self.pmu_by_type(attr.type)
        if pmu is None:
            raise PerfError(errno.ENOENT, f"no PMU with type {attr.type}")
        if cpu == -1 and task is None:
            raise PerfError(errno.EINVAL, "an event needs a CPU or a task")
        if cpu != -1 and cpu not in pmu.cpus:
            raise PerfError(errno.ENOENT, f"PMU {pmu.name} does not cover CPU {cpu}")
        # Ids count per host, like a fresh kernel's perf_event ids, so that a run is a
        # function of its scenario alone (DESIGN.md decision 8), whatever ran before it.
        ev = PerfEvent(attr, pmu, cpu, task, group_leader=group_leader,
                       overflow_handler=overflow_handler, owner=owner,
                       id=len(self.events) + 1)
        ev.host_el0 = not (attr.exclude_user or attr.exclude_host)
        ev.guest_el0 = not (attr.exclude_user or attr.exclude_guest)
        ev.sample_period = attr.sample_period
        ev.period_left = attr.sample_period
        if attr.disabled:
            ev.state = EventState.OFF
        if cpu != -1:
            ev._tstamp = self.cpus[cpu].now_ns
        elif task is not None and task.cpu is not None:
            ev._tstamp = self.cpus[task.cpu].now_ns
        # ctx->nr_events before this one joins (the task's context, or the CPU's)
        had_events = group_leader is not None or bool(
            task.events if task is not None else self.cpus[cpu].ctx.cpu_events)
        if group_leader is not None:
            group_leader.siblings.append(ev)
        elif task is not None:
            task.events.append(ev)
        else:
            self.cpus[cpu].ctx.cpu_events.append(ev)
        self.events.append(ev)
        self._invalidate_ctx(ev)
        self.stats.perf_events_created += 1
        where = charge_cpu if charge_cpu is not None else (cpu if cpu != -1 else task.cpu
                                                           if task else None)
        if where is not None:
            self.charge(where, self.costs.perf_event_create, "perf_event_create")
        # perf_install_in_context: a disabled event joining a context that already has events
        # is only added to it (no IPI, no ctx_resched: "the IOC_ENABLE that is sure to follow
        # will reprogram the hardware"; kernel/events/core.c since v5.5, "perf: Optimize
        # perf_install_in_event()"); otherwise __perf_install_in_context schedules it in
        # where it can run now (ctx_resched).
        if ev.state is EventState.OFF and had_events:
            return ev
        for c in self._cpus_for(ev):
            self.resched(c)
        return ev

    def perf_event_release(self, ev: PerfEvent, charge_cpu: int | None = None) -> None:
        """``perf_event_release_kernel`` -> ``perf_remove_from_context``: the event leaves
        its counter and its context (``event_sched_out``, ``list_del_event``); the context is
        not rescheduled (kernel/events/core.c ``__perf_remove_from_context``), so a flexible
        group waiting for a counter gets the freed one at the next rotation or schedule-in."""
        for c in self._cpus_for(ev.leader):
            if ev.hw_idx is not None:
                self.cpus[c].ctx.update_times(self.cpus[c].now_ns)
                ev.pmu.remove(c, ev)
        ev.state = EventState.DEAD
        if ev.task is not None and ev in ev.task.events:
            ev.task.events.remove(ev)
        if ev.cpu != -1 and ev in self.cpus[ev.cpu].ctx.cpu_events:
            self.cpus[ev.cpu].ctx.cpu_events.remove(ev)
        if ev.group_leader is not None and ev in ev.group_leader.siblings:
            ev.group_leader.siblings.remove(ev)
        self._invalidate_ctx(ev)
        self.stats.perf_events_released += 1
        where = charge_cpu if charge_cpu is not None else (
            ev.cpu if ev.cpu != -1 else (ev.task.cpu if ev.task else None))
        if where is not None:
            self.charge(where, self.costs.perf_event_release, "perf_event_release")

    def perf_event_disable(self, ev: PerfEvent, charge_cpu: int | None = None) -> None:
        """``perf_event_disable``: the event leaves its counter (its count is read) and stops
        accruing enabled time; nothing else is rescheduled (``__perf_event_disable``)."""
        if ev.state in (EventState.OFF, EventState.DEAD):
            return
        for c in self._cpus_for(ev.leader):
            self.flush(c)
            self.cpus[c].ctx.update_group_times(ev.leader, self.cpus[c].now_ns)
            if ev.hw_idx is not None:
                ev.pmu.remove(c, ev)
        ev.state = EventState.OFF
        if charge_cpu is not None:
            self.charge(charge_cpu, self.costs.perf_sched_event, "perf_event_disable")

    def perf_event_enable(self, ev: PerfEvent, charge_cpu: int | None = None) -> None:
        """``perf_event_enable``: back to INACTIVE, then the context is rescheduled so it can
        get a counter (``__perf_event_enable`` -> ``ctx_resched``)."""
        if ev.state is not EventState.OFF:
            return
        ev.state = EventState.INACTIVE
        cpus = self._cpus_for(ev.leader)
        for c in cpus:
            ev._tstamp = self.cpus[c].now_ns
            self.resched(c)
        if charge_cpu is not None:
            self.charge(charge_cpu, self.costs.perf_sched_event, "perf_event_enable")

    def perf_event_enable_many(self, evs: list[PerfEvent], charge_cpu: int | None = None
                               ) -> None:
        """``perf_event_enable`` on several events in a row (KVM enabling every guest counter
        at a PMCR_EL0.E write).  Each enable reschedules its context in Linux; the events end
        where one reschedule puts them, so the model reschedules once and charges the other
        reschedules' work as it measured the first."""
        evs = [e for e in evs if e.state is EventState.OFF]
        if not evs:
            return
        cpus: set[int] = set()
        for e in evs:
            e.state = EventState.INACTIVE
            for c in self._cpus_for(e.leader):
                e._tstamp = self.cpus[c].now_ns
                cpus.add(c)
        for c in sorted(cpus):
            hc = self.cpus[c]
            before = hc.el2_cycles
            self.resched(c)
            if len(evs) > 1:
                self.charge(c, (hc.el2_cycles - before) * (len(evs) - 1), "perf_sched")
        if charge_cpu is not None:
            self.charge(charge_cpu, len(evs) * self.costs.perf_sched_event, "perf_event_enable")

    def _invalidate_ctx(self, ev: PerfEvent) -> None:
        """``ev`` joined or left its context: the contexts that hold it (its CPU's, or that of
        the CPU its task runs on) recompute their lists; the others did not change."""
        task = ev.task
        for hc in self.cpus:
            if hc.id == ev.cpu or (task is not None and hc.ctx.task is task):
                hc.ctx.invalidate()

    def perf_event_read(self, ev: PerfEvent) -> tuple[int, int, int]:
        """``perf_event_read_value``: bring times up to date, then (count, enabled, running)."""
        for c in self._cpus_for(ev.leader):
            self.flush(c)
            self.cpus[c].ctx.update_group_times(ev.leader, self.cpus[c].now_ns)
        return ev.read_value()

    def _cpus_for(self, ev: PerfEvent) -> list[int]:
        if ev.cpu != -1:
            return [ev.cpu]
        if ev.task is not None and ev.task.cpu is not None and ev.task.cpu in ev.pmu.cpus:
            return [ev.task.cpu]
        return []

    # ------------------------------------------------------------------ scheduling
    def _group_in(self, cpu: int, leader: PerfEvent) -> bool:
        pmu = leader.pmu
        done: list[PerfEvent] = []
        for e in (leader, *leader.siblings):
            if e.state is EventState.OFF:
                continue
            if not pmu.add(cpu, e):
                for d in done:
                    pmu.remove(cpu, d)
                return False
            done.append(e)
        return True

    def sched_out(self, cpu: int, flexible_only: bool = False) -> None:
        self.flush(cpu)
        hc = self.cpus[cpu]
        hc.ctx.update_times(hc.now_ns)
        for leader in hc.ctx.leaders():
            if flexible_only and leader.attr.pinned:
                continue
            for e in (leader, *leader.siblings):
                if e.state is EventState.ACTIVE:
                    e.pmu.remove(cpu, e)

    def sched_in(self, cpu: int) -> None:
        """``ctx_sched_in``: pinned groups first, then flexible in rotation order; after the
        first flexible group that does not fit, no other is tried (``merge_sched_in``)."""
        hc = self.cpus[cpu]
        hc.ctx.update_times(hc.now_ns)
        leaders = hc.ctx.leaders()
        for leader in leaders:
            if not leader.attr.pinned or leader.state is not EventState.INACTIVE:
                continue
            if leader.pmu is not self.pmu_of_cpu(cpu):
                continue
            if not self._group_in(cpu, leader):
                leader.state = EventState.ERROR
                for s in leader.siblings:
                    s.state = EventState.ERROR
                msg = f"cpu{cpu}: pinned event {leader.id} ({leader.owner}) could not get a counter"
                self.stats.warnings.append(msg)
                self.emit("pinned_error", cpu=cpu, event=leader)
        can_add_hw = True
        waiting = False
        mine = self.pmu_of_cpu(cpu)
        for leader in hc.ctx.flexible_order():
            if leader.state is not EventState.INACTIVE or leader.pmu is not mine:
                continue
            if not can_add_hw or not self._group_in(cpu, leader):
                can_add_hw = False
                waiting = True
        if waiting:
            self._mux_hrtimer_restart(hc)
        hc.ctx.rotate_necessary = waiting

    @staticmethod
    def _mux_hrtimer_restart(hc: HostCpu) -> None:
        """``perf_mux_hrtimer_restart`` (kernel/events/core.c, called from ``merge_sched_in``
        when a flexible group finds no counter): starts the timer only if it is not already
        active, so a vCPU load/put or a context switch does not push the rotation back
        (spec kernel-code-deltas §5.8).  A timer whose expiry passed while no group waited
        has run its handler already, found nothing to rotate and stopped
        (``perf_mux_hrtimer_handler`` clears ``hrtimer_active``); that is worked out here,
        since the engine only stops at the expiry while a group waits."""
        if not hc.mux_timer_pending:
            hc.mux_timer_active = True
            _hrtimer_forward_now(hc)

    def resched(self, cpu: int) -> None:
        """``ctx_resched``: everything out, then in again.

        Linux schedules every event of the context out and back in (``ctx_resched`` from
        ``__perf_install_in_context``, ``__perf_event_enable`` and friends), and the model
        charges that work.  It does not have to *perform* it event by event: the reschedule
        is planned first (:meth:`_plan_resched`, the allocation ``ctx_sched_in`` would make,
        on masks), and then only the events whose counter changes are removed and added;
        an event that lands on the counter it holds is re-armed in place
        (``armpmu_event_set_period``, its overflow flag cleared as ``armpmu_del`` does) and
        charged as the out-and-in it stands for.  The counters, registers, counts and
        charges are those of the full reschedule; a plan it cannot mirror exactly (event
        groups, a pinned event left without a counter) falls back to the full one."""
        plan = self._plan_resched(cpu)
        if plan is None:
            self.sched_out(cpu)
            self.sched_in(cpu)
            return
        target, waiting = plan
        hc = self.cpus[cpu]
        pmu = self.pmu_of_cpu(cpu)
        pe = hc.pe
        sched = self.costs.perf_sched_event
        kept: list[PerfEvent] = []
        for leader in hc.ctx.leaders():  # sched_out
            if leader.state is not EventState.ACTIVE:
                continue
            idx = leader.hw_idx
            if idx is not None and not leader.chained and target.get(
                    leader.id, (leader, -1))[1] == idx:
                pmu.read(leader)  # armpmu_del's update; the counter is re-armed below
                kept.append(leader)
            else:
                leader.pmu.remove(cpu, leader)
        for ev in kept:  # out of their counters for the time sched_out takes
            ev.state = EventState.INACTIVE
        if kept:
            self.charge(cpu, len(kept) * sched, "perf_sched")
        hc.ctx.update_times(hc.now_ns)  # sched_in
        clear = 0
        for ev in kept:
            ev.state = EventState.ACTIVE
            idx = cast("int", ev.hw_idx)
            filt = pmu.event_filter(ev, hc.guest_loaded)
            if idx == CYCLE_IDX:
                if pe.read_el2("PMCCFILTR_EL0") != filt:
                    pe.write_el2("PMCCFILTR_EL0", filt)
            elif idx == ICNTR_IDX:  # PMICNTR: filter only (kernel-code-deltas §4.18)
                if pe.read_el2("PMICFILTR_EL0") & ~0xFFFF != filt:
                    pe.write_el2("PMICFILTR_EL0", filt)
            elif pe.evtyper_raw(idx) != filt | ev.attr.config:
                pe.write_el2(f"PMEVTYPER{idx}_EL0", filt | ev.attr.config)
            pmu.set_period(ev)
            clear |= 1 << idx
        if kept:
            if pe.overflow_raw() & clear:
                pe.write_el2("PMOVSCLR_EL0", clear)  # armv8pmu_disable_intens
            if pe.intr_enabled() & clear != clear:
                pe.write_el2("PMINTENSET_EL1", clear)
                pe.write_el2("PMCNTENSET_EL0", clear)
            pmu.start(pe)
            self.charge(cpu, len(kept) * sched, "perf_sched")
        placed = {ev.id for ev in kept}
        for ev, idx in target.values():
            if ev.id not in placed:
                pmu.add(cpu, ev, idx)
        if waiting:
            self._mux_hrtimer_restart(hc)  # as sched_in ends
        hc.ctx.rotate_necessary = waiting

    def _plan_resched(self, cpu: int) -> tuple[dict[int, tuple[PerfEvent, int]], bool] | None:
        """What ``sched_out`` + ``sched_in`` would do on ``cpu``, on masks only: event id ->
        (event, counter) in scheduling order, and whether a flexible group waits.  ``None``
        when the plan would not be exact (groups; a pinned event failing)."""
        hc = self.cpus[cpu]
        self.flush(cpu)
        hc.ctx.update_times(hc.now_ns)
        mine = self.pmu_of_cpu(cpu)
        hw = mine.hw[cpu]
        leaders = hc.ctx.leaders()
        out = 0
        for leader in leaders:
            if leader.siblings:
                return None
            if leader.state is EventState.ACTIVE and leader.hw_idx is not None:
                out |= 1 << leader.hw_idx
                if leader.chained:
                    out |= 1 << (leader.hw_idx - 1)
        used = hw.used_mask & ~out
        cntr_mask = hw.cntr_mask
        pick, bits = mine.pick_idx, mine.counter_bits
        target: dict[int, tuple[PerfEvent, int]] = {}
        inactive, active = EventState.INACTIVE, EventState.ACTIVE
        # pinned groups first, then flexible ones in rotation order (ctx_sched_in); an event is
        # placed as armv8pmu_get_event_idx would place it on the counters still free; an event
        # is ready when it would be INACTIVE once everything is scheduled out
        for leader in leaders:
            st = leader.state
            if not leader.attr.pinned or (st is not inactive and st is not active) \
                    or leader.pmu is not mine:
                continue
            idx = pick(cntr_mask & ~used, leader)
            if idx is None:
                return None  # pinned_error: the full path reports it with its timing
            used |= bits(leader, idx)
            target[leader.id] = (leader, idx)
        can_add_hw = True
        waiting = False
        for leader in hc.ctx.flexible_order():
            st = leader.state
            if (st is not inactive and st is not active) or leader.pmu is not mine:
                continue
            idx = pick(cntr_mask & ~used, leader) if can_add_hw else None
            if idx is None:
                can_add_hw = False
                waiting = True
                continue
            used |= bits(leader, idx)
            target[leader.id] = (leader, idx)
        return target, waiting

    def switch_task(self, cpu: int, task: Task | None) -> None:
        """Context switch on ``cpu`` (``perf_event_task_sched_out/in``)."""
        hc = self.cpus[cpu]
        old = hc.ctx.task
        if old is task:
            return
        self.sched_out(cpu)
        if old is not None:
            old.cpu = None
        hc.ctx.task = task
        hc.ctx.invalidate()
        if task is not None:
            task.cpu = cpu
            hc.ctx.mark(hc.now_ns, [e for e in task.events if e.group_leader is None])
        self.sched_in(cpu)

    def resched_update(self, cpu: int, pmu: ArmPmu, mask: int) -> list[PerfEvent]:
        """``perf_pmu_resched_update`` (series v7 13/20): schedule out, install the new
        allocation mask, schedule back in.  Returns the host events squeezed out of it;
        a pinned one draws a (rate-limited in Linux) warning."""
        displaced = pmu.set_cntr_mask(cpu, mask)
        if not displaced:
            return []
        self.charge(cpu, self.costs.resched, "perf_resched")
        self.sched_out(cpu)
        self.sched_in(cpu)
        # Those that found no other counter are squeezed out (moved ones keep counting).
        squeezed = [e for e in displaced if e.state is not EventState.ACTIVE]
        for e in squeezed:
            self.stats.squeezed_out += 1
            self.stats.squeezed_events.append((cpu, e))
            if e.attr.pinned:
                self.stats.pinned_squeezed_out += 1
                msg = f"cpu{cpu}: Pinned host event squeezed out (event {e.id}, {e.owner})"
                self.stats.warnings.append(msg)
                log.warning("%s", msg)
            self.emit("squeezed", cpu=cpu, event=e)
        return squeezed

    def restore_errored(self, cpu: int) -> None:
        """Pinned events that lost their counter to a guest come back when it leaves
        (assumption: the series reschedules them at ``kvm_pmu_put``)."""
        for leader in self.cpus[cpu].ctx.leaders():
            if leader.state is EventState.ERROR:
                leader.state = EventState.INACTIVE
                for s in leader.siblings:
                    s.state = EventState.INACTIVE

    def rotate(self, cpu: int) -> None:
        """``perf_rotate_context``: on the mux timer, rotate flexible groups if any waits."""
        hc = self.cpus[cpu]
        if not hc.ctx.rotate_necessary:
            hc.mux_timer_active = False  # perf_mux_hrtimer_handler: HRTIMER_NORESTART
            return
        _hrtimer_forward_now(hc)
        self.sched_out(cpu, flexible_only=True)
        hc.ctx.rotate()
        self.sched_in(cpu)
        self.stats.rotations += 1
        self.charge(cpu, self.costs.rotate, "perf_rotate")
        self.emit("rotate", cpu=cpu)

    # ------------------------------------------------------------------ work and time
    def charge(self, cpu: int, cycles: int, reason: str) -> None:
        """Spend ``cycles`` at EL2 on ``cpu`` (host kernel / KVM work): the CPU's clock
        advances now; the PE retires the EL2 work (so host counters that count EL2 see it)
        at the next :meth:`flush`, which every reader of counters and every block of work
        does first: one EL2 block per kernel operation rather than one per step of it."""
        if cycles <= 0:
            return
        hc = self.cpus[cpu]
        dt = hc.advance_cycles(cycles)
        hc.el2_cycles += cycles
        hc.pending_el2 += cycles
        hc.el2_cycles_by_reason[reason] += cycles
        hc.el2_ns_by[hc.party, reason] += dt

    def flush(self, cpu: int) -> None:
        """Retire the EL2 work charged on ``cpu`` since the last flush."""
        hc = self.cpus[cpu]
        cycles = hc.pending_el2
        if not cycles:
            return
        hc.pending_el2 = 0
        pe = hc.pe
        inst = max(1, int(cycles / hc.core.cpi))
        if self.listeners:  # the checker compares counters around EL2 work (pmupart.check)
            self.emit("el2_begin", cpu=cpu, cycles=cycles, inst=inst, party=hc.party)
        pe.count_at(2, {_CYC: cycles, _INST: inst})
        if self.listeners:
            self.emit("el2_end", cpu=cpu, cycles=cycles, inst=inst, party=hc.party)

    def flush_all(self) -> None:
        for hc in self.cpus:
            self.flush(hc.id)

    def advance_idle(self, cpu: int, ns: int) -> None:
        """Let ``ns`` pass with the CPU idle (WFI: no events).  The mux hrtimer still fires
        on an idle CPU while a flexible group waits (``perf_mux_hrtimer_handler``)."""
        self.flush(cpu)
        hc = self.cpus[cpu]
        end = hc.now_ns + ns
        while hc.ctx.rotate_necessary and hc.next_rotation_ns < end:
            hc.now_ns = max(hc.now_ns, hc.next_rotation_ns)
            self.rotate(cpu)
            self.flush(cpu)
        hc.now_ns = max(hc.now_ns, end)

    def retire(self, cpu: int, el: int, events: EventCounts,
               on_irq: Callable[[], None] | None = None, *, stop_ns: int | None = None,
               on_part: Callable[[dict[int, int]], None] | None = None) -> dict[int, int]:
        """Retire a block of work at ``el`` on ``cpu``: cut exactly at the first overflow of a
        counter with its interrupt enabled and at perf's rotation timer, take the interrupt
        there, and go on with the rest (DESIGN.md "the picture").  ``on_irq`` runs after each
        interrupt, before the rest of the block (KVM's injection at the next guest entry).

        ``stop_ns``: a timer of the caller's is due then (the guest's tick): the block is cut
        where the CPU's clock reaches it, overheads taken on the way included, and what is
        left is returned, to be retired after the timer.  ``on_part`` hears each piece just
        before it is counted (the engine's ledger of retired work)."""
        hc = self.cpus[cpu]
        pe = hc.pe
        rem: dict[int, int] = {}
        for k, v in events.items():
            if v:
                n = k if isinstance(k, int) else event_number(k)
                rem[n] = rem.get(n, 0) + v
        old_el = pe.el
        guard = 0
        self.flush(cpu)
        if pe.pmuirq:
            self.handle_irq(cpu)
            if on_irq is not None:
                on_irq()
        while rem:
            if stop_ns is not None and hc.now_ns >= stop_ns:
                break  # the caller's timer is due: the rest waits for it
            pe.el = el
            limit = None
            if hc.ctx.rotate_necessary and _CYC in rem:
                limit = hc.cycles_until(hc.next_rotation_ns)
            if stop_ns is not None and _CYC in rem:
                until = hc.cycles_until(stop_ns)
                limit = until if limit is None else min(limit, until)
            part, rest = _split_at_overflow(pe, rem, limit)
            if on_part is not None:
                on_part(part)
            pe.count(cast("Mapping[str | int, int]", part))
            if self.listeners:  # the checker's per-event expectations (pmupart.check)
                self.emit("pe_count", cpu=cpu, el=el, events=part)
            hc.advance_cycles(part.get(_CYC, 0))
            pe.el = old_el
            self.flush(cpu)
            if pe.pmuirq:
                self.handle_irq(cpu)
                if on_irq is not None:
                    on_irq()  # KVM injects at the next entry, before the rest of the block
            if hc.ctx.rotate_necessary and hc.now_ns >= hc.next_rotation_ns:
                self.rotate(cpu)
            rem = rest
            guard += 1
            if guard > 10_000_000:  # pragma: no cover - a model bug, not an input error
                raise AssertionError("retire() made no progress")
        pe.el = old_el
        return rem

    def handle_irq(self, cpu: int) -> None:
        """The PMU interrupt on ``cpu``: the driver of the CPU's PMU handles it, at EL2.  A
        level still high afterwards (say, a guest counter whose owner is not loaded) is
        masked by leaving it pending for KVM."""
        hc = self.cpus[cpu]
        self.stats.pmu_irqs += 1
        hc.pmu_irqs += 1
        self.flush(cpu)
        pending = 0
        if self.listeners:  # what the driver will find: PMOVSSET & PMINTENSET (for checkers)
            s = hc.pe.snapshot()
            pending = s.pmovs & s.pminten
        self.charge(cpu, self.costs.pmu_irq, "pmu_irq")
        n = self.pmu_of_cpu(cpu).armv8pmu_handle_irq(cpu)
        if n:
            self.charge(cpu, n * self.costs.pmu_irq_per_event, "pmu_irq")
        self.emit("pmu_irq", cpu=cpu, handled=n, pending=pending)


def _split_at_overflow(pe: PE, rem: dict[int, int], cycle_limit: int | None
                       ) -> tuple[dict[int, int], dict[int, int]]:
    """Split a block at the first point where a counter with its interrupt enabled overflows
    (or the CPU reaches ``cycle_limit`` cycles).  Events are spread evenly over the block, so
    the cut keeps every event's share of the block (rounded down) and the limiting event
    exact.  Returns (part, rest)."""
    best_k = 0
    best_n = 0
    best_ev = -1
    for ev, k in pe.overflow_steps():  # interrupt-enabled counters counting here, in order
        n = rem.get(ev)
        if n and k <= n and (best_ev < 0 or k * best_n < best_k * n):
            best_k, best_n, best_ev = k, n, ev
    if cycle_limit is not None:
        n = rem.get(_CYC, 0)
        if n and cycle_limit < n and (best_ev < 0 or cycle_limit * best_n < best_k * n):
            best_k, best_n, best_ev = cycle_limit, n, _CYC
    if best_ev < 0 or best_k >= best_n:
        return rem, {}
    part: dict[int, int] = {}
    rest: dict[int, int] = {}
    for ev, v in rem.items():
        p = best_k if ev == best_ev else (v * best_k) // best_n
        if p:
            part[ev] = p
        if v - p:
            rest[ev] = v - p
    return part, rest
