"""A guest kernel's PMU driver running one perf session, through the guest's register API.

This is what ``perf stat -e ...`` / ``perf record -F <freq> -e ...`` make a Linux guest's
``arm_pmuv3`` driver do (my own model of it, after ``drivers/perf/arm_pmuv3.c`` and
``kernel/events/core.c``): reset the PMU (``armv8pmu_reset``), probe ``PMCR_EL0.N`` and
PMCEID, give each event a counter (the cycle counter for CPU_CYCLES; general counters
from 0 up, as an unmodified guest kernel does), multiplex by rotation at its own tick when
it has more events than counters, take overflow interrupts (re-arming the period; counting
events have a period of half the counter range), throttle a sampling event that overflows
too often (perf's interrupt throttling), and read the counts at the end.  Every
access goes through the vCPU, so on the emulated vPMU each one traps, and on the
partitioned vPMU only PMOVS/PMEVTYPER/PMCCFILTR do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pmupart.arch.events import Event, event_name
from pmupart.arch.pe import Access
from pmupart.arch.sysreg import EVCNTR_NAMES, EVTYPER_NAMES
from pmupart.sim.spec import PerfMode, PerfSession

_CYCLES = int(Event.CPU_CYCLES)
_C = 31
_M32, _M64 = (1 << 32) - 1, (1 << 64) - 1


class RegisterApi(Protocol):  # the guest CPU surface the driver needs
    el: int

    def read(self, name: str) -> Access: ...

    def write(self, name: str, value: int) -> Access: ...


@dataclass(frozen=True, slots=True)
class GuestKernelCosts:
    """Cycles the guest kernel spends on perf's behalf besides its PMU register accesses,
    retired as guest EL1 work (so they lengthen the run and count on counters that count EL1).
    Where each value comes from: docs/costs.md "Guest kernel".

    The register accesses themselves (and what they cost at EL2 when they trap) are not
    here: the driver performs them through the vCPU.
    """

    #: taking the PMU interrupt: exception entry and return, ``gic_handle_irq`` with the
    #: ICC_IAR1_EL1/ICC_EOIR1_EL1 acknowledge and EOI (not trapped with a vGICv3)
    irq_entry: int = 600
    #: one sample: ``perf_event_overflow`` -> ``perf_prepare_sample`` +
    #: ``perf_output_sample`` writing the record into the ring buffer
    sample: int = 3000
    #: the timer tick besides perf (``tick_sched_timer`` -> ``update_process_times``,
    #: ``sched_tick``); perf's own tick work is the accesses of :meth:`GuestPmuDriver.tick`
    tick: int = 3000
    #: one context switch (``__schedule`` + ``switch_to``) besides perf's sched out/in
    context_switch: int = 4000


@dataclass
class GuestWork:
    """What the guest kernel did for perf besides register accesses (for reports)."""

    count: dict[str, int] = field(default_factory=dict)  #: by kind
    cycles: dict[str, int] = field(default_factory=dict)  #: guest EL1 cycles by kind
    #: simulated ns the vCPU spent in process-context perf work (context switches: the
    #: switch's own kernel work, its accesses and the EL2 time of their traps), which a
    #: guest's tick-based accounting shows as system time
    process_ns: int = 0

    def add(self, kind: str, cycles: int) -> None:
        self.count[kind] = self.count.get(kind, 0) + 1
        self.cycles[kind] = self.cycles.get(kind, 0) + cycles


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
                 exclude_kernel: bool = False, costs: GuestKernelCosts | None = None,
                 ctx_switch_hz: float = 0.0, tick_hz: int = 250,
                 max_sample_rate: int = 100_000) -> None:
        if ctx_switch_hz < 0:
            raise ValueError(f"ctx_switch_hz must be >= 0, not {ctx_switch_hz!r}")
        if max_sample_rate < 1 or tick_hz < 1:
            raise ValueError(f"max_sample_rate and tick_hz must be >= 1, not "
                             f"{max_sample_rate!r}, {tick_hz!r}")
        self.session = session
        self.costs = costs or GuestKernelCosts()
        self.work = GuestWork()
        #: a per-task session (``perf stat -- cmd``) is scheduled out and in at each switch
        #: of its task; a whole-guest one (``-a``) is not
        self.per_task = session.scope.startswith("task")
        #: switches of the workload's task per guest tick (``ctx_switch_hz`` / the tick rate;
        #: 0: never, or a whole-guest session); they happen at ticks, carried over exactly
        self.switches_per_tick = ctx_switch_hz / tick_hz if self.per_task else 0.0
        self._switch_credit = 0.0
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
        # perf's interrupt throttling (kernel/events/core.c): at most max_samples_per_tick =
        # DIV_ROUND_UP(perf_event_max_sample_rate, HZ) overflows of one event per tick
        # (perf_proc_update_handler); the guest's sysctl is the scenario's
        # perf_event_max_sample_rate, its HZ the driver's tick rate
        self.max_samples_per_tick = -(-max_sample_rate // tick_hz)
        self.interrupts = [0] * n  #: hwc->interrupts: overflows in the current tick
        self.throttled: set[int] = set()  #: events at MAX_INTERRUPTS (stopped until the tick)
        self.throttles = 0  #: times an event was throttled
        self.left = [0] * n  #: hwc->period_left: events until the next sample (record)
        self.last_period = [0] * n  #: hwc->last_period: the period of the sample now due
        #: hwc->freq_time_stamp: when the last overflow adapted the period (None: never; the
        #: kernel starts it at 0, and a guest's uptime puts its first overflow far past it)
        self.freq_time_stamp: list[int | None] = [None] * n
        self.tick_nsec = (10**9 + tick_hz // 2) // tick_hz  #: TICK_NSEC
        #: ``attr.freq``: a ``perf record -F`` session (a fixed period, ``-c``, is not one)
        self.freq_mode = session.mode is PerfMode.RECORD and session.freq > 0 \
            and not session.period
        self.ticks = 0  #: guest ticks taken (the engine's sampling fast-forward counts them)

    # ------------------------------------------------------------------ setup
    @property
    def max_period(self) -> int:
        return (1 << 64) - 1 if self.wide else (1 << 32) - 1

    def needs_tick(self) -> bool:
        """The guest tick matters when events rotate, the session samples (periods adapt to
        a frequency; overflows are counted per tick for throttling, and a throttled event
        restarts at the tick) or the task is switched out and in."""
        if self.session.mode is PerfMode.RECORD or self.switches_per_tick > 0:
            return True
        # more events than counters (general ones, and the cycle counter for CPU_CYCLES)
        return self.started and \
            len(self.order) > self.num_counters + (1 if _CYCLES in self.events else 0)

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
            self.period[i] = self.last_period[i] = self._initial_period(i)
            self.left[i] = self.period[i]
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
            return 1  # perf_event_alloc: a frequency-mode event starts at a period of 1
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
        cycle_free = True
        nxt = 0  # general counters go from 0 up: the lowest free one is the next
        for i in self.order:
            if cycle_free and self.events[i] == _CYCLES:
                idx = _C
                cycle_free = False
            elif nxt < self.num_counters:
                idx = nxt
                nxt += 1
            else:
                break
            self.counter[i] = idx
            if i in self.throttled:  # event_sched_in unthrottles: it may have missed its tick
                self.throttled.discard(i)
                self.interrupts[i] = 0
            self._program(cpu, i, idx)

    def _program(self, cpu: RegisterApi, i: int, idx: int) -> None:
        filt = self._filter()
        if idx == _C:
            cpu.write("PMCCFILTR_EL0", filt)
        else:
            cpu.write(EVTYPER_NAMES[idx], filt | self.events[i])
        self._set_period(cpu, i, idx)
        cpu.write("PMINTENSET_EL1", 1 << idx)
        cpu.write("PMCNTENSET_EL0", 1 << idx)

    def _set_period(self, cpu: RegisterApi, i: int, idx: int) -> bool:
        """``armpmu_event_set_period``; True when a whole period had elapsed (a sample is
        due).  A counting event restarts from half the counter range; a sampling event
        goes on from ``period_left`` (what it had left when stopped), or starts a new
        period when that is used up, limited to half the counter range."""
        elapsed = True
        half = (_M64 if self.wide else _M32) >> 1  # half of max_period
        if self.session.mode is PerfMode.STAT:
            left = min(self.period[i], half)
        else:
            left, p = self.left[i], self.period[i]
            elapsed = left <= 0
            if left <= -p:
                left = p
                self.last_period[i] = p
            elif left <= 0:
                left += p
                self.last_period[i] = p
            left = min(left, half)
            self.left[i] = left
        # the counter's width: 64 bits for the cycle counter and for 64-bit event counters
        v = (-left) & (_M64 if (idx == _C or self.wide) else _M32)
        if idx == _C and not self.wide:
            v |= 0xFFFFFFFF << 32  # bias the 64-bit cycle counter to overflow like 32 bits
        cpu.write(EVCNTR_NAMES[idx], v)  # PMCCNTR_EL0 for 31
        self.prev[i] = v
        return elapsed

    def _update(self, cpu: RegisterApi, i: int, idx: int) -> int:
        acc = cpu.read(EVCNTR_NAMES[idx])  # PMCCNTR_EL0 for 31
        if not acc.ok:
            return 0
        new = acc.value or 0
        # deltas at the width the driver programs: 32 bits unless its counters are 64-bit
        # (the 64-bit cycle counter is biased to overflow like a 32-bit one)
        mask = _M64 if self.wide else _M32
        delta = (new - self.prev[i]) & mask
        self.prev[i] = new
        self.counts[i] += delta
        self.left[i] -= delta
        return delta

    def _unprogram(self, cpu: RegisterApi, i: int) -> None:
        """``armpmu_del``: the event leaves its counter through ``armpmu_stop`` (as
        :meth:`_stop`: PMCNTENCLR, PMINTENCLR, PMOVSCLR, then the count updated)."""
        self._stop(cpu, i, self.counter.pop(i))

    def _stop(self, cpu: RegisterApi, i: int, idx: int) -> int:
        """``armpmu_stop``: ``armv8pmu_disable_event`` (PMCNTENCLR, then PMINTENCLR and
        PMOVSCLR in ``armv8pmu_disable_intens``) and ``armpmu_event_update``; the delta."""
        cpu.write("PMCNTENCLR_EL0", 1 << idx)
        cpu.write("PMINTENCLR_EL1", 1 << idx)
        cpu.write("PMOVSCLR_EL0", 1 << idx)
        return self._update(cpu, i, idx)

    def _pmu_disable(self, cpu: RegisterApi) -> None:
        """``armv8pmu_stop`` (``perf_pmu_disable``): PMCR_EL0.E = 0, read-modify-write."""
        pmcr = cpu.read("PMCR_EL0").value or 0
        cpu.write("PMCR_EL0", pmcr & ~(1 | (0x1F << 11)))

    def _pmu_enable(self, cpu: RegisterApi) -> None:
        """``armv8pmu_start`` (``perf_pmu_enable`` -> ``armpmu_enable`` while a counter is in
        use): EL0 access turned off first (``armv8pmu_disable_user_access`` ->
        ``update_pmuserenr(0)``: with ``perf_user_access`` = 0, the default, and no vCPU of
        its own running, ``kvm_set_pmuserenr`` declines and the guest writes PMUSERENR_EL0),
        then PMCR_EL0.E = 1 (drivers/perf/arm_pmuv3.c, 5.17+)."""
        cpu.write("PMUSERENR_EL0", 0)
        pmcr = cpu.read("PMCR_EL0").value or 0
        cpu.write("PMCR_EL0", (pmcr | 1) & ~(0x1F << 11))

    # ------------------------------------------------------------------ guest kernel work
    def _kernel_work(self, cpu: RegisterApi, kind: str, cycles: int) -> None:
        """Retire ``cycles`` of guest kernel work at EL1 (IPC 1 assumed for kernel code) on
        the vCPU, when the CPU surface can retire work (a :class:`~pmupart.kvm.run.GuestCpu`);
        count it under ``kind``."""
        self.work.add(kind, cycles)
        work = getattr(cpu, "kernel_work", None)
        if work is not None:
            work(kind, cycles)

    def context_switch(self, cpu: RegisterApi) -> None:
        """The workload's task is switched out for another and back in: with a per-task
        session, ``perf_event_task_sched_out`` (``perf_ctx_disable``, every event through
        ``armpmu_stop``, ``perf_ctx_enable``), two ``__schedule`` passes, then
        ``perf_event_task_sched_in`` (``perf_ctx_disable``, the events scheduled in again as
        ``ctx_sched_in`` does, ``perf_ctx_enable``).  Process context: all of it, the EL2
        time of its traps included, is system time to the guest's accounting."""
        now = getattr(cpu, "now_ns", None)
        t0 = now() if callable(now) else 0
        self._kernel_work(cpu, "ctx_switch", 0)
        if self.counter:
            self._pmu_disable(cpu)
            for i, idx in list(self.counter.items()):
                self._stop(cpu, i, idx)
                del self.counter[i]
            # perf_ctx_enable -> armpmu_enable starts the PMU only while a counter is in use
            # (drivers/perf/arm_pmu.c): with every event out, PMCR_EL0.E stays 0
        self._kernel_work(cpu, "ctx_switch_kernel", 2 * self.costs.context_switch)
        self._pmu_disable(cpu)
        self._schedule(cpu)
        self._pmu_enable(cpu)
        if callable(now):
            self.work.process_ns += now() - t0

    # ------------------------------------------------------------------ time and ticks
    def account(self, ns: int) -> None:
        """Guest time passes (the vCPU ran ``ns``): enabled/running times."""
        for i in self.order:
            self.enabled_ns[i] += ns
            if i in self.counter:
                self.running_ns[i] += ns

    def tick(self, cpu: RegisterApi, tick_ns: int) -> None:
        """The guest's timer tick: its own kernel work, then perf's (:meth:`_tick`: adapt
        sampling periods, rotate if events wait); then the context switches of the workload's
        task that are due (:attr:`switches_per_tick`: ``ctx_switch_hz`` spread over the
        ticks; :meth:`context_switch`).  The tick runs in the
        guest kernel, at EL1, whatever EL the vCPU was interrupted at (at EL0, the driver's
        accesses would trap or UNDEF and its bookkeeping would drift: found by the checker's
        own-work invariant)."""
        self.ticks += 1
        old_el = cpu.el
        cpu.el = 1
        try:
            if self.needs_tick():  # as the engine's timer exit (see Engine._step)
                self._kernel_work(cpu, "tick", self.costs.tick)
            self._tick(cpu, tick_ns)
        finally:
            cpu.el = old_el
        self._switch_credit += self.switches_per_tick
        while self._switch_credit >= 1.0:
            self._switch_credit -= 1.0
            old_el = cpu.el
            cpu.el = 1
            try:
                self.context_switch(cpu)
            finally:
                cpu.el = old_el

    def _tick(self, cpu: RegisterApi, tick_ns: int) -> None:
        """``perf_event_task_tick``: a new throttling interval starts (``perf_throttled_seq``);
        ``perf_adjust_freq_unthr_context`` restarts each throttled active event
        (``pmu->start``) and adapts the period of each frequency-mode event (the PMU
        disabled, the event stopped with ``armpmu_stop``, its period adjusted from the
        events it counted in the tick by :meth:`_adjust_period`, restarted with
        ``armpmu_start``: ``armpmu_event_set_period`` goes on from ``period_left``, then
        ``armv8pmu_enable_event``; the PMU enabled); then the flexible groups rotate if
        some wait (``perf_rotate_context``)."""
        self.interrupts = [0] * len(self.events)
        freq = self.freq_mode
        if (freq or self.throttled) and self.counter:
            self._pmu_disable(cpu)
            for i, idx in list(self.counter.items()):
                if i in self.throttled:
                    self.throttled.discard(i)
                    self._program(cpu, i, idx)
                if not freq:
                    continue
                self._stop(cpu, i, idx)
                delta = self.counts[i] - self._last_tick_counts[i]
                self._last_tick_counts[i] = self.counts[i]
                if delta > 0 and self._adjust_period(i, self.tick_nsec, delta):
                    self.left[i] = 0  # (stopped already: no stop/start of its own)
                self._program(cpu, i, idx)
            self._pmu_enable(cpu)
        if len(self.order) > len(self.counter):
            # perf_rotate_context: the flexible events out, rotated, in, between
            # perf_pmu_disable and perf_pmu_enable (kernel/events/core.c)
            self._pmu_disable(cpu)
            for i in list(self.counter):
                self._unprogram(cpu, i)
            self.order = self.order[1:] + self.order[:1]
            self._schedule(cpu)
            self._pmu_enable(cpu)
            self.rotations += 1

    def _adjust_period(self, i: int, nsec: int, count: int) -> bool:
        """``perf_adjust_period``: the period that gives ``sample_freq`` samples a second from
        ``count`` events in ``nsec`` (``perf_calculate_period``; exact here, the kernel drops
        low bits only past 64-bit products), approached an eighth of the way (a low-pass
        filter: the difference, rounded away from zero by 7, divided by 8 as C does), never
        below 1.  True when the event has more than 8 new periods left, which the caller
        restarts at once (``period_left`` = 0).  Called at each tick with ``TICK_NSEC`` and
        the tick's events (``perf_adjust_freq_unthr_context``) and at each overflow with the
        time since the last one and the period just elapsed
        (``__perf_event_account_interrupt``); kernel/events/core.c."""
        target = count * 10**9 // (nsec * self.session.freq)
        delta = target - self.period[i]
        delta = (delta + 7) // 8 if delta >= 0 else -((7 - delta) // 8)
        self.period[i] = self.period[i] + delta or 1
        return self.left[i] > 8 * self.period[i]

    def _freq_overflow(self, cpu: RegisterApi, i: int, idx: int) -> None:
        """A frequency-mode event's overflow adapts its period
        (``__perf_event_account_interrupt``): from the time since the last overflow when
        that is under two ticks, with the period that just elapsed; an event left with more
        than 8 new periods is stopped, restarted from a new period and started again
        (``perf_adjust_period`` with ``disable``: ``pmu->stop``, ``pmu->start``)."""
        now_fn = getattr(cpu, "now_ns", None)
        if not callable(now_fn):
            return
        now = int(now_fn())
        last = self.freq_time_stamp[i]
        self.freq_time_stamp[i] = now
        if last is None or not 0 < now - last < 2 * self.tick_nsec:
            return
        if self._adjust_period(i, now - last, self.last_period[i]):
            self._stop(cpu, i, idx)
            self.left[i] = 0
            self._program(cpu, i, idx)

    def _account_interrupt(self, i: int) -> bool:
        """``__perf_event_account_interrupt`` for a sampling event's overflow: count it in
        this tick (``hwc->interrupts``; a new tick starts a new count); True when that is
        more than ``max_samples_per_tick``: the event is to be throttled."""
        self.interrupts[i] += 1
        return self.interrupts[i] > self.max_samples_per_tick

    def irq(self, cpu: RegisterApi) -> None:
        """``armv8pmu_handle_irq`` in the guest: read and clear PMOVS, stop the PMU
        (``armv8pmu_stop``: PMCR.E = 0), update and re-arm each overflowed counter; for a
        sampling event whose period had elapsed, ``perf_event_overflow``
        (:meth:`_account_interrupt`, then the sample); an event past its per-tick limit is
        throttled: stopped (``perf_event_throttle`` -> ``pmu->stop``, i.e. ``armpmu_stop``:
        counter and its interrupt disabled, count updated; older kernels'
        ``armv8pmu_handle_irq`` disables it itself) until the next tick; then start the
        PMU again (``armv8pmu_start``)."""
        self.irqs += 1
        self._kernel_work(cpu, "irq_entry", self.costs.irq_entry)
        ovs = cpu.read("PMOVSCLR_EL0").value or 0
        if not ovs:
            return
        cpu.write("PMOVSCLR_EL0", ovs)
        self._pmu_disable(cpu)
        for i, idx in list(self.counter.items()):
            if not (ovs >> idx) & 1 or i in self.throttled:
                continue
            self._update(cpu, i, idx)
            if not self._set_period(cpu, i, idx) or self.session.mode is not PerfMode.RECORD:
                continue
            self.samples[i] += 1
            throttle = self._account_interrupt(i)
            if self.freq_mode:
                self._freq_overflow(cpu, i, idx)
            self._kernel_work(cpu, "sample", self.costs.sample)
            if throttle:
                self._stop(cpu, i, idx)
                self.throttled.add(i)
                self.throttles += 1
                self._kernel_work(cpu, "throttle", 0)
        self._pmu_enable(cpu)

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
