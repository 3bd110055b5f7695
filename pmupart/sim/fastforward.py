"""Fast-forward through steady periodic behaviour.

When a CPU runs one context in a steady phase, the only things that happen are timers:
perf's rotation of host event groups (``perf_rotate_context``, every mux interval) and the
guest kernel's tick rotating its own perf events.  Then the machine's evolution is
periodic with period P = lcm(host rotation cycle, guest rotation cycle): after P the same
groups hold the same counters again, and every event's count, enabled and running time,
the CPU's clock, the EL2 work (traps, rotations), the guest driver's counts and the
guest-owned hardware counters have moved by the same amounts as in the period before.

The engine runs one period in full detail between two snapshots, checks that it was
steady (same schedule on both sides, no interrupt, no sample, no overflow flag, no perf
event created or released), and adds the measured amounts M more times, M chosen so that
no sample period, counting period or counter with its interrupt enabled can run out
inside the skipped stretch; detailed simulation then resumes.  The result differs from a
fully detailed run only by the rounding of the rotation phase inside the measured period
(well under 0.1% in the tests); ``run_scenario(..., fast_forward=False)`` and ``pmupart run
--no-fast-forward`` turn it off.

**Host sampling.** A host event that samples (``perf record`` on the host: a fixed period,
or the period its ``-F`` gives) takes an interrupt at each sample, so no window holds none;
the host's own work per sample (the interrupt, ``perf_sample``, a vCPU's exit) is
stationary, though. Such a CPU (:attr:`Period.host_sampling`; a slot of
:data:`HOST_SAMPLING_SLOT_NS` where no timer recurs) measures windows of whole periods,
lengthened until each sampling event took :data:`WINDOW_SAMPLES` samples (at most
:data:`WINDOW_MAX_CYCLES` periods), back to back as a chain; once the chain's samples, EL2
cycles, instructions and length are known as in a sampling window, the chain is added as
many times as fit: counts, samples, times, interrupts, EL2 work. Each sampling event's
counter and ``period_left`` are the phase of its sampling, left as measured. A window
without a sample is skipped exactly (up to the next sample) as any window; samples too rare
for a window of :data:`WINDOW_MAX_CYCLES` periods to hold enough are only skipped that way.
A guest sampling window still does not open beside a host sampling event. Known limits
(measured by review): where several events sample at high rates their overflows coalesce
into one interrupt more or less often as they drift, with a beat (~100 ms at 20 kHz) longer
than a chain, so a skip carries the measured chain's share: interrupts +1% at 4 kHz, +5%
at 20 kHz, the guests' counts -0.3% there (samples and host counts exact); an event that
samples much more rarely than the others (``-F`` is one cycles-based period for every
event, pmupart/sim/session.py) makes the whole CPU skip only between its samples.

**Phases.** A workload's phase (its event rates, CPI and kernel share) is steady only until it
ends. A measurement starts only in a phase with room for four periods of work, a measurement
that ran into the next phase is dropped (each snapshot records where the phase ends), and
the skip leaves one measured stretch of work before the phase's end (:func:`_phase_room`),
so the detailed run takes every change of phase, as it takes the run's end and each
migration (the barrier). A period of guest rotations is measured from one guest tick to
another (the guest driver re-programs its counters at each), so after a migration, whose
barrier falls anywhere in the guest's rotation, the CPU measures from its first tick.

**Sampling windows.** A guest ``perf record`` (frequency mode) or a per-task session whose
task the guest switches out and in at its ticks is not exactly periodic: overflows land at
points that drift against the tick, and each sample's handler moves the counters it counts
on. It is stationary in its accumulators, though: once the periods have adapted
(kernel/events/core.c ``perf_adjust_freq_unthr_context`` at each tick), windows of W guest
ticks (W = the rotation cycle of its events, times the period of its task switches; whole
multiples of it until each event took :data:`WINDOW_SAMPLES` samples) take about the same
samples, interrupts, traps, EL2 and guest-kernel work. For such a CPU (one thread on it, no
host sampling event) the engine measures windows from tick to tick, back to back, from the
second tick on, as a chain; once the chain keeps the same schedule and counter assignment
and the mean of its windows is known within :data:`WINDOW_TOL` / 2 (standard error of the
samples, EL2 cycles, instructions and length; or it is :data:`CHAIN_MAX` windows long), the
chain's accumulators are added M more times: counts, enabled and running times, samples,
interrupts, exits and traps by reason, EL2 and guest-kernel work, host statistics. A window
further than :data:`WINDOW_OFF` from its chain's mean starts a new chain (the first windows
after the session starts). The phase of each sampling counter (its value, the emulated
vPMU's backing perf events, the saved virtual counters, the adapted periods, the work cut
off by the last tick) is state, not an accumulator: it is left as the measured chain ended,
a consistent state (what the counters hold matches what the guest driver last read).
Measuring adds no stop of its own, so a run that never skips is the detailed run, byte for
byte. A run that skips differs from the detailed one by its chain's deviation from the run's
mean: a sampling run's windows differ in the work and the samples they hold (the guest's
ticks cut blocks where samples happen to fall; a heavily trapped guest's by a few percent),
and overflows of counters started together coalesce into fewer interrupts for the first few
hundred milliseconds; ``tests/test_sim_fastforward.py`` compares both (samples within 1%,
times within 0.5%, interrupts, traps and EL2 within 5%).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, NamedTuple

from pmupart.arch.events import Event
from pmupart.host.perf_event import EventState, PerfEvent

if TYPE_CHECKING:
    from pmupart.sim.engine import Context, CpuRq, Engine

_CYC_EV, _INST_EV = int(Event.CPU_CYCLES), int(Event.INST_RETIRED)
#: The largest denominator of a guest's task switches per tick that the sampling window
#: follows exactly (``ctx_switch_hz`` / tick rate, e.g. 100 / 250 = 2/5: 5 ticks).
SWITCH_DENOM = 64
#: A sampling window lasts whole cycles of its ticks until every event that counted in it
#: took at least this many samples: the replicated window holds a whole number of each
#: event's samples where the true rate has a fraction, so the skipped stretch's samples (and
#: the handlers' costs) are off by at most 1 / this per event.
WINDOW_SAMPLES = 25
#: ... or until it holds this many cycles (an event that samples rarely).
WINDOW_MAX_CYCLES = 16
#: A chain of back-to-back windows is steady when the mean of each figure (samples, EL2
#: cycles, instructions, length) is known within half this fraction (its standard error)
WINDOW_TOL = 0.02
#: ... or when it is this many windows long (a noisy run: the mean of 16 is used)
CHAIN_MAX = 16
#: A window further than this from its chain's mean starts a new chain.
WINDOW_OFF = 0.03
#: A window on a CPU that threads share lasts whole periods of at least this: the window's
#: ends fall at slice starts, and each measurement gives one thread about 800 ns of a slice
#: boundary's overshoot that is the other's (a 2 ms period measured alone gave the host task
#: of a time-shared CPU 0.08% more time than the detailed run, the vCPU 0.08% less; found by
#: review, not yet understood); measured over 8 periods, a tenth of that.
TIMESHARED_WINDOW_NS = 16_000_000
#: The events a guest counter may hold more or fewer at the end of a window than at its start
#: when its guest rotates its events (its value is the rotation's phase): the rounding of
#: where the window's ends cut the work
_PHASE_SLACK = 1 << 16
#: A host sampling window on a CPU where no timer recurs (no rotation, no guest tick, one
#: thread) lasts whole slots of this length
HOST_SAMPLING_SLOT_NS = 4_000_000


class Period(NamedTuple):
    """What a fast-forward window on one CPU must hold."""

    ns: int  #: its length
    host_rotations: int
    guest_rotations: int
    guest_ticks: int = 0  #: sampling windows: guest ticks, from tick to tick
    sampling: bool = False  #: accumulators only (see the module's "Sampling windows")
    #: a host event samples: whole periods, its samples accumulators (the module's "Host
    #: sampling")
    host_sampling: bool = False


@dataclass
class _CtxSnap:
    """One context's moving parts."""

    vcpu: dict[str, Any] = field(default_factory=dict)
    drv: dict[str, Any] = field(default_factory=dict)
    ctx: tuple[int, int, int, dict[int, int]] = (0, 0, 0, {})
    vovs: int = 0
    vregs: dict[int, int] = field(default_factory=dict)  #: saved (virtual) counter values
    #: where the workload's current phase ends, in workload time (the same value at both
    #: ends of a measurement: it ran inside one phase)
    phase_end: int = 0
    #: the workload time and instructions retired so far: taken (``ctx.work_ns``,
    #: ``ctx.instructions``) less the rest of a cut block still to retire (``ctx.carry``), so
    #: that a skip adds what a window retired, not how its carry changed (that added 9.7 M
    #: instructions the counters never saw to a skip of 37 windows; found by review)
    work_done: int = 0
    inst_done: int = 0


@dataclass
class _Snap:
    """Everything that moves during a steady period, at one instant."""

    now: int
    evs: list[PerfEvent]
    ev_state: list[tuple[int, int, int, int, int, int | None, EventState]]
    flex: list[int]
    host: tuple[Counter[str], Counter[tuple[str, str]], int, int, int, int, int, int]
    ctxs: list[_CtxSnap] = field(default_factory=list)
    guest_hw: dict[int, int] = field(default_factory=dict)
    pmovs: int = 0


@dataclass
class Window:
    """A measurement in progress on one CPU."""

    ctx: Context
    start: _Snap
    end_ns: int
    period: int
    need_host: int = 0  #: host rotations a period holds
    need_guest: int = 0  #: guest rotations a period holds
    rot_host0: int = 0
    rot_guest0: int = 0
    group: list[Context] = field(default_factory=list)  #: the run queue's contexts, in order
    retired: dict[tuple[str, int], Counter[int]] = field(default_factory=dict)
    sampling: bool = False
    need_ticks: int = 0
    ticks0: int = 0
    host_sampling: bool = False
    #: host sampling: the periods the window holds, and the ids of the host's sampling
    #: events (their samples are accumulators, their counters' phase is state)
    periods: int = 1
    min_periods: int = 1  #: the fewest a window on this CPU holds (a time-shared one: more)
    sampled: frozenset[int] = frozenset()
    #: threads whose guest rotated its events in the window (their counters are its phase)
    phase_ctxs: frozenset[int] = frozenset()
    #: the chain of sampling windows just before, back to back: (its start, each window's
    #: figures, its retired work, ticks per window)
    prev: tuple[_Snap, list[tuple[int, int, int, int]], dict[tuple[str, int], Counter[int]],
                object] | None = None

    def done(self, eng: Engine, cpu: int) -> bool:
        """A whole period has run: the timers fired as many times as the period holds (on a
        time-shared CPU: the period's time is up and the same thread is back on; a sampling
        window: its ticks have passed and the last one has just been taken)."""
        hc = eng.host.cpus[cpu]
        if self.sampling:
            d = self.ctx.driver
            if d is None or not self.ctx.just_ticked:
                return False
            n = d.ticks - self.ticks0
            if n < self.need_ticks or n % self.need_ticks \
                    or hc.ctx.rotations - self.rot_host0 < self.need_host * (n // self.need_ticks):
                return False
            s0 = self.start.ctxs[0].drv
            few = any(d.samples[i] - s0["samples"][i] < WINDOW_SAMPLES
                      for i in range(len(d.samples)) if d.counts[i] > s0["counts"][i])
            return not (few and d.session.mode.value != "stat"
                        and n < WINDOW_MAX_CYCLES * self.need_ticks)
        if len(self.group) > 1:
            return hc.now_ns >= self.end_ns
        if self.host_sampling and hc.now_ns < self.end_ns:
            return False  # whole periods (or slots, where no timer recurs)
        d = self.ctx.driver
        g = (d.rotations - self.rot_guest0) if d is not None else 0
        return hc.ctx.rotations - self.rot_host0 >= self.need_host and g >= self.need_guest

    def next_stop(self, eng: Engine, cpu: int) -> int:
        """Where the next step should end while measuring."""
        hc = eng.host.cpus[cpu]
        if len(self.group) > 1:
            return 1 << 62  # the slices cut the steps; the period ends on a slice boundary
        if self.sampling:
            return self.ctx.next_tick_ns  # the engine stops at each tick; the window at one
        if hc.now_ns < self.end_ns:
            return self.end_ns
        stops = []
        if hc.ctx.rotations - self.rot_host0 < self.need_host:
            stops.append(hc.next_rotation_ns + 1)
        if self.ctx.driver is not None:
            stops.append(self.ctx.next_tick_ns)
        return min(stops) if stops else hc.now_ns + 1


def period_of(eng: Engine, rq: CpuRq, group: list[Context]) -> Period | None:
    """The period of the CPU's timer-driven behaviour (host rotation, each guest's tick
    rotation, the run queue's round robin) and the host and guest rotations it holds; for a
    guest that samples or switches its task at ticks, a sampling window (the module's
    "Sampling windows"); None when nothing periodic runs (the engine already takes one block
    per step)."""
    hc = eng.host.cpus[rq.cpu]
    h = g = 0
    hg = gg = 1
    ticks = 0
    if hc.ctx.rotate_necessary or hc.mux_timer_pending:
        # A pending mux timer rotates whenever it expires with a group waiting, even if
        # none waits now (a vCPU put lets every host group in until the next load).
        hg = max(1, len(hc.ctx.flexible_order()))
        h = hg * hc.mux_interval_ns
    for c in group:
        drv = c.driver
        if drv is not None and drv.needs_tick():
            if drv.session.mode.value != "stat" or drv.switches_per_tick:
                # sampling, or task switches falling on ticks by a carried fraction
                if len(group) > 1 or not drv.started:
                    return None
                ticks = len(drv.order) if len(drv.order) > len(drv.counter) else 1
                if drv.switches_per_tick:
                    q = Fraction(drv.switches_per_tick).limit_denominator(SWITCH_DENOM)
                    ticks = _lcm(ticks, q.denominator)
                g = ticks * eng.guest_tick_ns
                continue
            gg = max(1, len(drv.order))
            g = _lcm(g, gg * eng.guest_tick_ns) if g else gg * eng.guest_tick_ns
    s = len(group) * eng.slice_ns if len(group) > 1 else 0
    hs = not ticks and any(e.sample_period > 0 for e in _events(eng, rq.cpu, group, True))
    if not h and not g and not s:
        if not hs:
            return None
        s = HOST_SAMPLING_SLOT_NS  # only the host's samples happen: slots of time
    p = 0
    for part in (h, g, s):
        if part:
            p = _lcm(p, part) if p else part
    if ticks:
        return Period(p, (p // h) * hg if h else 0, 0, (p // g) * ticks, True)
    return Period(p, (p // h) * hg if h else 0, (p // g) * gg if g else 0, host_sampling=hs)


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def _events(eng: Engine, cpu: int, group: list[Context], sampling: bool = False
            ) -> list[PerfEvent]:
    """The CPU's events and those of every thread on its run queue (scheduled or not); in a
    sampling window, not the emulated vPMU's backing events (owned by a vCPU of the group):
    they are the guest counters' phase, re-created at the guest's period writes."""
    out: list[PerfEvent] = []
    seen: set[int] = set()
    vcpus = {c.vcpu.name for c in group if c.vcpu is not None}
    leaders = list(eng.host.cpus[cpu].ctx.cpu_events)
    for c in group:
        if c.task is not None:
            leaders += [e for e in c.task.events if e.group_leader is None]
    for leader in leaders:
        for e in (leader, *leader.siblings):
            if id(e) not in seen and e.state is not EventState.DEAD \
                    and not (sampling and e.owner in vcpus):
                seen.add(id(e))
                out.append(e)
    return out


def _guest_hw(eng: Engine, cpu: int) -> dict[int, int]:
    hc = eng.host.cpus[cpu]
    own = hc.guest_counter_mask
    if not own:
        return {}
    s = hc.pe.snapshot()
    out = {i: s.evcntr[i] for i in range(hc.pe.num_counters) if (own >> i) & 1}
    if (own >> 31) & 1:
        out[31] = s.pmccntr
    return out


def snapshot(eng: Engine, rq: CpuRq, group: list[Context], sampling: bool = False) -> _Snap:
    host = eng.host
    cpu = rq.cpu
    hc = host.cpus[cpu]
    host.flush(cpu)
    hc.ctx.update_times(hc.now_ns)
    evs = _events(eng, cpu, group, sampling)
    for e in evs:
        if e.state is EventState.ACTIVE:
            e.pmu.read(e)
    st = [(e.count, e.time_enabled, e.time_running, e.period_left, e.nr_samples, e.hw_idx,
           e.state) for e in evs]
    s = _Snap(hc.now_ns, evs, st, [id(e) for e in hc.ctx.flexible_order()],
              (Counter(hc.el2_cycles_by_reason), Counter(hc.el2_ns_by), hc.ctx.rotations,
               hc.pmu_irqs, hc.el2_cycles, hc.ctx.rotations, host.stats.perf_events_created,
               host.stats.perf_events_released))
    for ctx in group:
        cs = _CtxSnap()
        v = ctx.vcpu
        if v is not None:
            vs = v.stats
            cs.vcpu = {"exits": Counter(vs.exits), "traps": Counter(vs.traps),
                       "exit_ns": Counter(vs.exit_ns), "trap_ns": Counter(vs.trap_ns),
                       "guest_work": Counter(vs.guest_work),
                       "guest_work_cycles": Counter(vs.guest_work_cycles),
                       "guest_work_ns": Counter(vs.guest_work_ns),
                       "el2_cycles": vs.el2_cycles, "regs_swapped": vs.regs_swapped,
                       "irqs": vs.irqs_injected, "created": vs.perf_events_created,
                       "released": vs.perf_events_released}
            if v.pmu is not None:
                cs.vovs = v.pmu.ovs
                if getattr(v.pmu, "hw_cpu", 0) is None:  # state saved in the vCPU
                    cs.vregs = {i: v.pmu.evcntr[i] for i in range(min(v.pmu.nr, 31))}
                    cs.vregs[31] = v.pmu.ccntr
        d = ctx.driver
        if d is not None:
            cs.drv = {"counts": list(d.counts), "enabled": list(d.enabled_ns),
                      "running": list(d.running_ns), "samples": list(d.samples),
                      "order": list(d.order), "counter": dict(d.counter),
                      "period": list(d.period), "rotations": d.rotations, "irqs": d.irqs,
                      "ticks": d.ticks, "process_ns": d.work.process_ns,
                      "throttles": d.throttles, "throttled": sorted(d.throttled),
                      "work": (dict(d.work.count), dict(d.work.cycles))}
        cs.ctx = (ctx.work_ns, ctx.cpu_ns, ctx.instructions, dict(ctx.truth))
        cs.phase_end = _phase_end(ctx)
        carried = [evs for _, evs in ctx.carry]
        mhz = eng.host.cpus[cpu].freq_mhz
        cs.work_done = ctx.work_ns - sum(e.get(_CYC_EV, 0) for e in carried) * 1000 // mhz
        cs.inst_done = ctx.instructions - sum(e.get(_INST_EV, 0) for e in carried)
        s.ctxs.append(cs)
    s.guest_hw = _guest_hw(eng, cpu)
    s.pmovs = hc.pe.snapshot().pmovs
    return s


def begin(eng: Engine, rq: CpuRq, ctx: Context, group: list[Context], barrier: int
          ) -> Window | None:
    """Start measuring a period on ``rq`` (running ``ctx`` now, ``group`` its runnable
    threads in queue order) if the CPU looks steady and there is room."""
    hc = eng.host.cpus[rq.cpu]
    now = hc.now_ns
    if now < rq.ff_blocked_until:
        return None
    per = period_of(eng, rq, group)
    if per is None:
        return None
    # the periods a window holds: a time-shared CPU's measure TIMESHARED_WINDOW_NS at least;
    # a host sampling window's enough for its samples (rq.ff_periods, _finish_host_sampling)
    k = k_min = 1
    if len(group) > 1 and not per.sampling:
        k = k_min = max(1, -(-TIMESHARED_WINDOW_NS // per.ns))
    if per.host_sampling:
        k = max(k, rq.ff_periods)
    if barrier - now < 4 * k * per.ns:
        return None  # room for the measurement, two measured stretches and one to spare
    # A fixed amount of work ends inside the stretch; a sampling window bounds its skip by
    # the work left (finish), an exact period does not run with it.
    if not per.sampling and any(c.workload.instructions is not None for c in group):
        return None
    # A workload's phases (a change of rates) end a steady stretch: the phase must have room
    # for the measurement and a skip (as the barrier must); the skip stops short of its end
    # (_phase_room), and the detailed run takes the change.
    for c in group:
        if _phase_end(c) - c.work_ns < 4 * k * per.ns:
            return None
    d = ctx.driver
    if per.guest_rotations and len(group) == 1 and not ctx.just_ticked:
        # A period of guest rotations is measured from a tick to a tick: the guest driver
        # re-programs its counters at each, so the guest-owned counters only repeat between
        # two points at the same phase of the rotation (a window opened at a migration, say,
        # saw them move backwards and never skipped).  A time-shared CPU's period is a whole
        # number of slices and ticks, measured from a slice's start to another's.
        return None
    if per.sampling:
        if d is None or not ctx.just_ticked:
            return None  # a sampling window runs from tick to tick
        if rq.ff_retry is not None and rq.ff_retry[0] is ctx and d.ticks < rq.ff_retry[1]:
            return None
        if d.ticks < 1:
            return None  # the first tick adapts the periods from perf's initial guess
        if any(e.sample_period > 0 for e in _events(eng, rq.cpu, group, True)):
            return None  # a host sampling event overflows inside the window
    w = Window(ctx, snapshot(eng, rq, group, per.sampling), now + k * per.ns, per.ns,
               k * per.host_rotations, k * per.guest_rotations, hc.ctx.rotations,
               d.rotations if d is not None else 0, group=list(group), sampling=per.sampling,
               need_ticks=per.guest_ticks, ticks0=d.ticks if d is not None else 0,
               host_sampling=per.host_sampling, periods=k, min_periods=k_min)
    if per.host_sampling:
        w.sampled = frozenset(id(e) for e in w.start.evs if e.sample_period > 0
                              and not _vcpu_owned(e, group))
    if per.sampling or per.host_sampling:
        last = rq.ff_prev
        rq.ff_prev = None
        if last is not None and last[0].now + sum(st[3] for st in last[1]) == now:
            w.prev = last

    def tap(kind: str, data: dict[str, Any]) -> None:
        if kind == "retire" and data.get("cpu") == rq.cpu and not data.get("fast_forward"):
            key = (str(data["ctx"]), int(data["el"]))
            w.retired.setdefault(key, Counter()).update(data["events"])

    w._tap = tap  # type: ignore[attr-defined]
    eng.listeners.append(tap)
    return w


def finish(eng: Engine, rq: CpuRq, w: Window, barrier: int) -> None:
    """Close the measurement: if it was steady, skip as many identical periods as is safe."""
    eng.listeners.remove(w._tap)  # type: ignore[attr-defined]
    group = w.group
    a = w.start
    b = snapshot(eng, rq, group, w.sampling)
    dnow = b.now - a.now
    runnable = [c for c in rq.queue if c.runnable]
    if w.sampling:
        _finish_sampling(eng, rq, w, a, b, barrier, runnable)
        return
    if w.host_sampling:
        _finish_host_sampling(eng, rq, w, a, b, barrier, runnable)
        return
    steady = (
        _same_shape(rq, w, a, b, runnable, ("order", "counter", "period", "samples", "irqs"))
        and b.host[3] == a.host[3]
        and all(ca.vcpu.get(k) == cb.vcpu.get(k) for k in ("irqs", "created", "released")
                for ca, cb in zip(a.ctxs, b.ctxs, strict=True))
    )
    if not steady:
        rq.ff_blocked_until = b.now + 2 * w.period
        return
    m, ghw = _skips(eng, rq, w, a, b, barrier)
    if m < 2:
        rq.ff_blocked_until = b.now + 2 * w.period
        return
    _apply(eng, rq, a, b, m, dnow, ghw, w)


def _skips(eng: Engine, rq: CpuRq, w: Window, a: _Snap, b: _Snap, barrier: int,
           sampled: frozenset[int] = frozenset()) -> tuple[int, dict[int, int]]:
    """How many more times the stretch from ``a`` to ``b`` can be added before the barrier,
    the phase's end, or the first overflow of a counter with its interrupt enabled (a host
    sampling window's own sampling events excepted: their overflows are its samples); and
    what each guest-owned hardware counter moved over the stretch."""
    pe = eng.host.cpus[rq.cpu].pe
    m = min((barrier - b.now) // (b.now - a.now) - 1, _phase_room(a, b))
    for e, x, y in zip(a.evs, a.ev_state, b.ev_state, strict=True):
        dc = y[0] - x[0]
        if dc <= 0 or e.state is EventState.ERROR or id(e) in sampled:
            continue
        if e.sample_period > 0:
            m = min(m, (e.period_left - 1) // dc - 1)
            if e.state is EventState.ACTIVE and e.hw_idx is not None:
                k = _to_overflow(pe, e.hw_idx)
                if k is not None:
                    m = min(m, (k - 1) // dc - 1)
        # A counting event's wraps (every half counter range) are accounted in _apply.
    ghw = {i: (b.guest_hw[i] - a.guest_hw[i]) % (1 << 64) for i in a.guest_hw}
    # A guest driver that rotated its events in the window re-programmed its counters at
    # each rotation, so what they hold at either end is the phase of the rotation, not a
    # total: the same at both ends but for the rounding of where the window's ends cut the
    # work (a time-shared CPU's slice starts); left as measured (_apply).  (Taken as totals,
    # a counter a few events lower at the end stopped every skip; found by review.)
    rotated = {id(c) for c, ca, cb in zip(w.group, a.ctxs, b.ctxs, strict=True)
               if cb.drv.get("rotations", 0) > ca.drv.get("rotations", 0)}
    w.phase_ctxs = frozenset(rotated)
    loaded = next((c for c in w.group if c.vcpu is not None and c.vcpu.cpu == rq.cpu), None)
    if loaded is not None and id(loaded) in rotated:
        if any(_signed(dv) > _PHASE_SLACK for dv in ghw.values()):
            return -1, {}  # not at the same point of the rotation
        ghw = {}
    for i, dv in ghw.items():
        if dv:
            k = _to_overflow(pe, i)
            if k is not None:
                m = min(m, (k - 1) // dv - 1)
    for c, ca, cb in zip(w.group, a.ctxs, b.ctxs, strict=True):
        pmu = c.vcpu.pmu if c.vcpu is not None else None
        for i, v1 in cb.vregs.items():
            dv = (v1 - ca.vregs[i]) % (1 << 64)
            if id(c) in rotated:
                if _signed(dv) > _PHASE_SLACK:
                    return -1, {}
            elif dv and pmu is not None and (pmu.inten >> i) & 1:
                width = 64 if pmu.has_64bit_overflow(i) else 32
                k = (1 << width) - (v1 & ((1 << width) - 1))
                m = min(m, (k - 1) // dv - 1)
    return m, ghw


def _signed(dv: int) -> int:
    """The size of a 64-bit difference read as two's complement."""
    return abs((dv + (1 << 63)) % (1 << 64) - (1 << 63))


def _vcpu_owned(e: PerfEvent, group: list[Context]) -> bool:
    """A vPMU backing event of a vCPU of the group (KVM's, not the host's own)."""
    return any(c.vcpu is not None and e.owner == c.vcpu.name for c in group)


def _finish_host_sampling(eng: Engine, rq: CpuRq, w: Window, a: _Snap, b: _Snap,
                          barrier: int, runnable: list[Context]) -> None:
    """Close a host sampling window (the module's "Host sampling"): the same schedule at
    both ends, samples aside; windows long enough for :data:`WINDOW_SAMPLES` samples of
    each sampling event; back-to-back windows make a chain, skipped as in
    :func:`_finish_sampling` once its mean is known."""
    steady = (
        _same_shape(rq, w, a, b, runnable, ("order", "counter", "period", "samples", "irqs"),
                    w.sampled)
        and all(ca.vcpu.get(k) == cb.vcpu.get(k) for k in ("irqs", "created", "released")
                for ca, cb in zip(a.ctxs, b.ctxs, strict=True))
        and _phase_room(a, b) >= 0
    )
    if not steady:
        rq.ff_prev = None
        rq.ff_blocked_until = b.now + 2 * w.period
        return
    few = [y[4] - x[4] for e, x, y in zip(a.evs, a.ev_state, b.ev_state, strict=True)
           if id(e) in w.sampled and y[0] > x[0]]
    if not any(few) and b.host[3] == a.host[3]:
        # no sample in the window: skipped exactly, up to the next one (as any window)
        rq.ff_prev = None
        rq.ff_periods = 1
        sampled, w.sampled = w.sampled, frozenset()
        m, ghw = _skips(eng, rq, w, a, b, barrier)
        if m >= 2:
            _apply(eng, rq, a, b, m, b.now - a.now, ghw, w)
        else:
            w.sampled = sampled
            rq.ff_blocked_until = b.now + 2 * w.period
        return
    need = max(w.min_periods, -(-WINDOW_SAMPLES * w.periods // max(1, min(few, default=0))))
    if need > WINDOW_MAX_CYCLES * w.min_periods:
        # samples too rare for a window of whole periods to hold enough: only the
        # stretches between them are skipped, exactly (windows without a sample)
        rq.ff_periods = 1
        rq.ff_prev = None
        rq.ff_blocked_until = b.now + 2 * w.period
        return
    if need > w.periods or 2 * need <= w.periods:
        # longer windows from now, each with enough samples (or shorter: the rate rose)
        rq.ff_periods = need
        rq.ff_prev = None
        return
    st = (sum(few), b.host[4] - a.host[4], sum(cb.ctx[2] - ca.ctx[2] for ca, cb in
                                             zip(a.ctxs, b.ctxs, strict=True)), b.now - a.now)
    a0 = _chain(rq, w, a, b, st, w.periods)
    if a0 is None:
        return
    m, ghw = _skips(eng, rq, w, a0, b, barrier, w.sampled)
    if m < 1:
        rq.ff_blocked_until = b.now + 2 * w.period
        return
    _apply(eng, rq, a0, b, m, b.now - a0.now, ghw, w)


def _chain(rq: CpuRq, w: Window, a: _Snap, b: _Snap, st: tuple[int, int, int, int],
           key: object) -> _Snap | None:
    """Add the window from ``a`` to ``b`` (its figures ``st``) to the chain of back-to-back
    windows before it (alike in ``key``, the ticks or periods a window holds, and in phase).
    Returns the chain's start once its mean is known (:func:`_steady`; ``w.retired`` then
    holds the chain's work), else None: the chain goes on in ``rq.ff_prev``, or a window far
    from its mean, of another kind or in another phase starts a new one."""
    prev = w.prev
    if prev is None or prev[3] != key or _off(prev[1], st) or _phase_room(prev[0], b) < 0:
        rq.ff_prev = (a, [st], w.retired, key)
        return None
    a0, chain, retired, _ = prev
    chain.append(st)
    for k, evc in w.retired.items():
        retired.setdefault(k, Counter()).update(evc)
    if not _steady(chain):
        rq.ff_prev = (a0, chain, retired, key)
        return None
    w.retired = retired
    return a0


def _same_shape(rq: CpuRq, w: Window, a: _Snap, b: _Snap, runnable: list[Context],
                driver_keys: tuple[str, ...], sampled: frozenset[int] = frozenset()) -> bool:
    """The CPU ran the same threads with the same schedule at both ends of a measurement:
    the same host events on the same counters in the same rotation order, no overflow flag
    pending, the same guest-owned and saved counters, the same virtual overflow flags, and
    the guest drivers' ``driver_keys`` equal."""
    return (
        rq.current is w.ctx and b.now > a.now and runnable == w.group
        and [id(e) for e in b.evs] == [id(e) for e in a.evs] and b.flex == a.flex
        and all(x[5:] == y[5:] and (x[4] == y[4] or id(e) in sampled)
                for e, x, y in zip(a.evs, a.ev_state, b.ev_state, strict=True))
        and b.pmovs == a.pmovs and set(a.guest_hw) == set(b.guest_hw)
        and all(ca.vovs == cb.vovs and set(ca.vregs) == set(cb.vregs)
                and all(ca.drv.get(k) == cb.drv.get(k) for k in driver_keys)
                for ca, cb in zip(a.ctxs, b.ctxs, strict=True))
    )


def _stats(a: _Snap, b: _Snap) -> tuple[int, int, int, int]:
    """What a sampling window held: samples, the vCPU's EL2 cycles, instructions, time.  The
    instructions are those the window took (its work by time), which are steady; what it
    retired swings with the rest of a block carried past its ends, a large share of a
    starved guest's (judged on that, the emulated stress-ng run never settled: 0 s of 2 s
    skipped)."""
    ca, cb = a.ctxs[0], b.ctxs[0]
    return (sum(cb.drv["samples"]) - sum(ca.drv["samples"]),
            cb.vcpu.get("el2_cycles", 0) - ca.vcpu.get("el2_cycles", 0),
            cb.ctx[2] - ca.ctx[2], b.now - a.now)


def _steady(chain: list[tuple[int, int, int, int]]) -> bool:
    """The windows of a chain estimate their mean within :data:`WINDOW_TOL` / 2 (the
    standard error of each figure's mean), or the chain is :data:`CHAIN_MAX` long."""
    n = len(chain)
    if n < 2:
        return False
    if n >= CHAIN_MAX:
        return True
    for k in range(4):
        xs = [w[k] for w in chain]
        mean = sum(xs) / n
        var = sum((x - mean) ** 2 for x in xs) / (n - 1)
        if math.sqrt(var / n) > WINDOW_TOL / 2 * abs(mean) + 1:
            return False
    return True


def _off(chain: list[tuple[int, int, int, int]], st: tuple[int, int, int, int]) -> bool:
    """A window far from its chain's mean (more than :data:`WINDOW_OFF`): the chain was not
    steady yet (the first windows after a session starts, a change of regime)."""
    n = len(chain)
    for k in range(4):
        mean = sum(w[k] for w in chain) / n
        if abs(st[k] - mean) > WINDOW_OFF * abs(mean) + 1:
            return True
    return False


def _finish_sampling(eng: Engine, rq: CpuRq, w: Window, a: _Snap, b: _Snap, barrier: int,
                     runnable: list[Context]) -> None:
    """Close a sampling window (the module's "Sampling windows").  Back-to-back windows of
    one shape make a chain; once the chain's mean is known well enough (:func:`_steady`),
    the chain's accumulators, from its first window's start to now, are added as many more
    times as is safe; a window far from its chain's mean starts a new chain."""
    ca, cb = a.ctxs[0], b.ctxs[0]
    ctx = w.ctx
    if not _same_shape(rq, w, a, b, runnable, ("order", "counter", "throttled")):
        _retry(rq, w, w.need_ticks)
        return
    if ca.phase_end != cb.phase_end:  # the window ran into the next phase
        _retry(rq, w, w.need_ticks)
        return
    a0 = _chain(rq, w, a, b, _stats(a, b), cb.drv["ticks"] - ca.drv["ticks"])
    if a0 is None:
        return
    c0 = a0.ctxs[0]
    dnow = b.now - a0.now
    if ctx.workload.instructions is not None:
        dinst = cb.inst_done - c0.inst_done
        # the work's end is left to the detailed run, which ends it
        if dinst <= 0 or (ctx.workload.instructions - ctx.instructions - 1) // dinst < 1:
            _retry(rq, w, 1 << 62)  # no room before the end of the work: never again
            return
    m = (barrier - b.now - 1) // dnow  # (no host event samples: begin; wraps: _apply)
    m = min(m, _phase_room(a0, b))
    if ctx.workload.instructions is not None:
        m = min(m, (ctx.workload.instructions - ctx.instructions - 1) // dinst)
    if m < 1:
        # the barrier (a migration, the run's end) or the phase's end is near: windows again
        # after a window's ticks (a permanent retry here lost every later phase)
        _retry(rq, w, w.need_ticks)
        return
    _apply(eng, rq, a0, b, m, dnow, {}, w)


def _phase_end(ctx: Context) -> int:
    """Where the thread's workload next changes, in workload time (phases alike but for their
    length are one; ``1 << 63``: never)."""
    end = ctx.workload.steady_until(ctx.work_ns)
    return 1 << 63 if end is None else end


def _phase_room(a: _Snap, b: _Snap) -> int:
    """How many more times the stretch from ``a`` to ``b`` fits in each thread's current
    phase with one stretch's work to spare (the detailed run takes the phase change); -1
    when a thread changed phase inside the stretch."""
    m = 1 << 62
    for ca, cb in zip(a.ctxs, b.ctxs, strict=True):
        if ca.phase_end != cb.phase_end:
            return -1
        dwork = cb.work_done - ca.work_done
        if dwork > 0:
            m = min(m, (cb.phase_end - cb.ctx[0]) // dwork - 1)
    return m


def _retry(rq: CpuRq, w: Window, ticks: int) -> None:
    """No sampling window on ``rq`` for ``w``'s thread before ``ticks`` more guest ticks.
    Counted in ticks, not a time: a stop of the engine's own (as ``ff_blocked_until``
    makes) would cut a block where the detailed run does not, and a sampling run is
    sensitive to where blocks are cut (an extra cut moves its interrupt count by ~1%)."""
    d = w.ctx.driver
    rq.ff_retry = (w.ctx, (d.ticks if d is not None else 0) + ticks)


def _apply(eng: Engine, rq: CpuRq, a: _Snap, b: _Snap, m: int, dnow: int,
           ghw: dict[int, int], w: Window) -> None:
    host = eng.host
    hc = host.cpus[rq.cpu]
    pe = hc.pe
    wraps = 0
    for e, x, y in zip(a.evs, a.ev_state, b.ev_state, strict=True):
        dc = m * (y[0] - x[0])
        if id(e) in w.sampled:
            # a host sampling event: its count and samples are accumulators, its counter
            # and period_left the phase of its sampling (state, left as measured)
            e.count += dc
            e.nr_samples += m * (y[4] - x[4])
        elif e.state is EventState.ACTIVE and e.hw_idx is not None and e.sample_period > 0:
            e.pmu.advance(e, dc)  # the counter counted them; its next update takes them
        else:
            e.count += dc
            e.period_left -= dc
            if e.state is EventState.ACTIVE and e.hw_idx is not None:
                # a counting event re-arms every half range: one PMU interrupt per wrap
                half = (e.max_period if e.attr.long else (1 << 32) - 1) >> 1
                wraps += dc // half
                e.pmu.set_period(e)
        e.time_enabled += m * (y[1] - x[1])
        e.time_running += m * (y[2] - x[2])
        e._tstamp += m * dnow
    for i, dv in ghw.items():
        if dv:
            reg = "PMCCNTR_EL0" if i == 31 else f"PMEVCNTR{i}_EL0"
            pe.write_el2(reg, (b.guest_hw[i] + m * dv) % (1 << 64))
    ha, hb = a.host, b.host
    for k, n in (hb[0] - ha[0]).items():  # (the host's totals add up the CPUs')
        hc.el2_cycles_by_reason[k] += m * n
    for k2, n in (hb[1] - ha[1]).items():
        hc.el2_ns_by[k2] += m * n
    host.stats.rotations += m * (hb[2] - ha[2])
    hc.el2_cycles += m * (hb[4] - ha[4])
    hc.ctx.rotations += m * (hb[5] - ha[5])
    host.stats.pmu_irqs += m * (hb[3] - ha[3])  # a sampling window's interrupts
    hc.pmu_irqs += m * (hb[3] - ha[3])
    host.stats.perf_events_created += m * (hb[6] - ha[6])
    host.stats.perf_events_released += m * (hb[7] - ha[7])
    skip = m * dnow
    for ctx, ca, cb in zip(w.group, a.ctxs, b.ctxs, strict=True):
        v = ctx.vcpu
        if v is not None:
            vs = v.stats
            for name in ("exits", "traps", "exit_ns", "trap_ns", "guest_work",
                         "guest_work_cycles", "guest_work_ns"):
                cur: Counter[str] = getattr(vs, name)
                for k, n in (cb.vcpu[name] - ca.vcpu[name]).items():
                    cur[k] += m * n
            vs.el2_cycles += m * (cb.vcpu["el2_cycles"] - ca.vcpu["el2_cycles"])
            vs.regs_swapped += m * (cb.vcpu["regs_swapped"] - ca.vcpu["regs_swapped"])
            vs.irqs_injected += m * (cb.vcpu["irqs"] - ca.vcpu["irqs"])
            vs.perf_events_created += m * (cb.vcpu["created"] - ca.vcpu["created"])
            vs.perf_events_released += m * (cb.vcpu["released"] - ca.vcpu["released"])
            pmu = v.pmu
            # a sampling window, or a guest that rotated its events: the counters' phase
            if pmu is not None and not w.sampling and id(ctx) not in w.phase_ctxs:
                for i, v1 in cb.vregs.items():
                    dv = (v1 - ca.vregs[i]) % (1 << 64)
                    if dv:
                        pmu.store_counter(i, (v1 + m * dv) % (1 << 64))
        d = ctx.driver
        if d is not None:
            for name, key in (("counts", "counts"), ("enabled_ns", "enabled"),
                              ("running_ns", "running")):
                arr = getattr(d, name)
                for i in range(len(arr)):
                    arr[i] += m * (cb.drv[key][i] - ca.drv[key][i])
            for i in range(len(d.samples)):
                d.samples[i] += m * (cb.drv["samples"][i] - ca.drv["samples"][i])
                # the count the next period adaptation measures its rate from moves with
                # the count (else the first tick after the skip sees m windows' events)
                d._last_tick_counts[i] += m * (cb.drv["counts"][i] - ca.drv["counts"][i])
            for i, ts in enumerate(d.freq_time_stamp):  # the last overflow's time moves
                if ts is not None:                       # with the clock
                    d.freq_time_stamp[i] = ts + skip
            d.rotations += m * (cb.drv["rotations"] - ca.drv["rotations"])
            d.irqs += m * (cb.drv["irqs"] - ca.drv["irqs"])
            d.ticks += m * (cb.drv["ticks"] - ca.drv["ticks"])
            d.throttles += m * (cb.drv["throttles"] - ca.drv["throttles"])
            d.work.process_ns += m * (cb.drv["process_ns"] - ca.drv["process_ns"])
            for sa, sb, dst in zip(ca.drv["work"], cb.drv["work"],
                                   (d.work.count, d.work.cycles), strict=True):
                for k, n in sb.items():
                    dst[k] += m * (n - sa.get(k, 0))
        ctx.work_ns += m * (cb.work_done - ca.work_done)
        ctx.cpu_ns += m * (cb.ctx[1] - ca.ctx[1])
        ctx.instructions += m * (cb.inst_done - ca.inst_done)
        for k3, n3 in cb.ctx[3].items():
            ctx.truth[k3] = n3 + m * (n3 - ca.ctx[3].get(k3, 0))
        ctx.next_tick_ns += skip
    if wraps:
        # the interrupts a counting event takes on each wrap inside the skipped stretch
        host.stats.pmu_irqs += wraps
        hc.pmu_irqs += wraps
        c = host.costs
        host.charge(rq.cpu, wraps * (c.pmu_irq + c.pmu_irq_per_event), "pmu_irq")
    t0 = hc.now_ns
    hc.now_ns += skip
    hc.next_rotation_ns += skip
    hc.ctx.now_ns = hc.now_ns
    hc.ctx.invalidate()  # the events' timestamps moved with the clock
    rq.slice_end += skip
    rq.busy_ns += skip
    for (name, el), evc in sorted(w.retired.items()):
        eng.emit("retire", cpu=rq.cpu, ctx=name, el=el,
                 events={k: m * n for k, n in evc.items()}, t=t0, fast_forward=True)
    eng.fast_forwarded_ns += skip
    eng.emit("fast_forward", cpu=rq.cpu, ctx=w.ctx.name, t0=t0, t1=hc.now_ns, periods=m,
             contexts=[c.name for c in w.group])


def _to_overflow(pe: Any, idx: int) -> int | None:
    """Increments left before counter ``idx`` sets its overflow flag, at whichever EL it
    counts (the smallest)."""
    best: int | None = None
    for el in (0, 1, 2):
        with pe.at_el(el):
            k = pe.events_to_overflow(idx)
        if k is not None and (best is None or k < best):
            best = k
    return best
