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
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pmupart.host.perf_event import EventState, PerfEvent

if TYPE_CHECKING:
    from pmupart.sim.engine import Context, CpuRq, Engine


@dataclass
class _CtxSnap:
    """One context's moving parts."""

    vcpu: dict[str, Any] = field(default_factory=dict)
    drv: dict[str, Any] = field(default_factory=dict)
    ctx: tuple[int, int, int, dict[int, int]] = (0, 0, 0, {})
    vovs: int = 0
    vregs: dict[int, int] = field(default_factory=dict)  #: saved (virtual) counter values


@dataclass
class _Snap:
    """Everything that moves during a steady period, at one instant."""

    now: int
    evs: list[PerfEvent]
    ev_state: list[tuple[int, int, int, int, int, int | None, EventState]]
    flex: list[int]
    host: tuple[Counter[str], Counter[tuple[str, str]], int, int, int, int]
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

    def done(self, eng: Engine, cpu: int) -> bool:
        """A whole period has run: the timers fired as many times as the period holds (on a
        time-shared CPU: the period's time is up and the same thread is back on)."""
        hc = eng.host.cpus[cpu]
        if len(self.group) > 1:
            return hc.now_ns >= self.end_ns
        d = self.ctx.driver
        g = (d.rotations - self.rot_guest0) if d is not None else 0
        return hc.ctx.rotations - self.rot_host0 >= self.need_host and g >= self.need_guest

    def next_stop(self, eng: Engine, cpu: int) -> int:
        """Where the next step should end while measuring."""
        hc = eng.host.cpus[cpu]
        if len(self.group) > 1:
            return 1 << 62  # the slices cut the steps; the period ends on a slice boundary
        if hc.now_ns < self.end_ns:
            return self.end_ns
        stops = []
        if hc.ctx.rotations - self.rot_host0 < self.need_host:
            stops.append(hc.next_rotation_ns + 1)
        if self.ctx.driver is not None:
            stops.append(self.ctx.next_tick_ns)
        return min(stops) if stops else hc.now_ns + 1


def period_of(eng: Engine, rq: CpuRq, group: list[Context]
              ) -> tuple[int, int, int] | None:
    """The period of the CPU's timer-driven behaviour (host rotation, each guest's tick
    rotation, the run queue's round robin) and the host and guest rotations it holds; None
    when nothing periodic runs (the engine already takes one block per step) or it is not
    steady by nature (sampling)."""
    hc = eng.host.cpus[rq.cpu]
    h = g = 0
    hg = gg = 1
    if hc.ctx.rotate_necessary or hc.mux_timer_pending:
        # A pending mux timer rotates whenever it expires with a group waiting, even if
        # none waits now (a vCPU put lets every host group in until the next load).
        hg = max(1, len(hc.ctx.flexible_order()))
        h = hg * hc.mux_interval_ns
    for c in group:
        drv = c.driver
        if drv is not None and drv.needs_tick():
            if drv.session.mode.value != "stat":
                return None  # sampling: overflows land at drifting points, not periodic
            if drv.switches_per_tick:
                return None  # task switches fall on ticks by a carried fraction
            gg = max(1, len(drv.order))
            g = _lcm(g, gg * eng.guest_tick_ns) if g else gg * eng.guest_tick_ns
    s = len(group) * eng.slice_ns if len(group) > 1 else 0
    if not h and not g and not s:
        return None
    p = 0
    for part in (h, g, s):
        if part:
            p = _lcm(p, part) if p else part
    return p, (p // h) * hg if h else 0, (p // g) * gg if g else 0


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def _events(eng: Engine, cpu: int, group: list[Context]) -> list[PerfEvent]:
    """The CPU's events and those of every thread on its run queue (scheduled or not)."""
    out: list[PerfEvent] = []
    seen: set[int] = set()
    leaders = list(eng.host.cpus[cpu].ctx.cpu_events)
    for c in group:
        if c.task is not None:
            leaders += [e for e in c.task.events if e.group_leader is None]
    for leader in leaders:
        for e in (leader, *leader.siblings):
            if id(e) not in seen and e.state is not EventState.DEAD:
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


def snapshot(eng: Engine, rq: CpuRq, group: list[Context]) -> _Snap:
    host = eng.host
    cpu = rq.cpu
    hc = host.cpus[cpu]
    host.flush(cpu)
    hc.ctx.update_times(hc.now_ns)
    evs = _events(eng, cpu, group)
    for e in evs:
        if e.state is EventState.ACTIVE:
            e.pmu.read(e)
    st = [(e.count, e.time_enabled, e.time_running, e.period_left, e.nr_samples, e.hw_idx,
           e.state) for e in evs]
    s = _Snap(hc.now_ns, evs, st, [id(e) for e in hc.ctx.flexible_order()],
              (Counter(hc.el2_cycles_by_reason), Counter(hc.el2_ns_by), hc.ctx.rotations,
               hc.pmu_irqs, hc.el2_cycles, hc.ctx.rotations))
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
                      "work": (dict(d.work.count), dict(d.work.cycles))}
        cs.ctx = (ctx.work_ns, ctx.cpu_ns, ctx.instructions, dict(ctx.truth))
        s.ctxs.append(cs)
    s.guest_hw = _guest_hw(eng, cpu)
    s.pmovs = hc.pe.snapshot().pmovs
    return s


def begin(eng: Engine, rq: CpuRq, ctx: Context, group: list[Context], barrier: int
          ) -> Window | None:
    """Start measuring a period on ``rq`` (running ``ctx`` now, ``group`` its runnable
    threads in queue order) if the CPU looks steady and there is room."""
    if any(c.workload.instructions is not None for c in group):
        return None
    hc = eng.host.cpus[rq.cpu]
    now = hc.now_ns
    if now < rq.ff_blocked_until:
        return None
    per = period_of(eng, rq, group)
    if per is None or barrier - now < 8 * per[0]:
        return None
    p, need_h, need_g = per
    for c in group:
        _, left = c.phase_at(c.work_ns)
        if left < barrier - now:
            return None
    d = ctx.driver
    w = Window(ctx, snapshot(eng, rq, group), now + p, p, need_h, need_g, hc.ctx.rotations,
               d.rotations if d is not None else 0, group=list(group))

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
    b = snapshot(eng, rq, group)
    host = eng.host
    hc = host.cpus[rq.cpu]
    dnow = b.now - a.now
    runnable = [c for c in rq.queue if c.runnable]
    steady = (
        rq.current is w.ctx and dnow > 0 and runnable == group
        and [id(e) for e in b.evs] == [id(e) for e in a.evs] and b.flex == a.flex
        and all(x[5:] == y[5:] and x[4] == y[4]
                for x, y in zip(a.ev_state, b.ev_state, strict=True))
        and b.host[3] == a.host[3] and b.pmovs == a.pmovs
        and set(a.guest_hw) == set(b.guest_hw)
        and all(ca.vovs == cb.vovs and ca.vcpu.get("irqs") == cb.vcpu.get("irqs")
                and ca.vcpu.get("created") == cb.vcpu.get("created")
                and ca.vcpu.get("released") == cb.vcpu.get("released")
                and set(ca.vregs) == set(cb.vregs)
                and all(ca.drv.get(k) == cb.drv.get(k)
                        for k in ("order", "counter", "period", "samples", "irqs"))
                for ca, cb in zip(a.ctxs, b.ctxs, strict=True))
    )
    if not steady:
        rq.ff_blocked_until = b.now + 2 * w.period
        return
    pe = hc.pe
    m = (barrier - b.now) // dnow - 1
    for e, x, y in zip(a.evs, a.ev_state, b.ev_state, strict=True):
        dc = y[0] - x[0]
        if dc <= 0 or e.state is EventState.ERROR:
            continue
        if e.sample_period > 0:
            m = min(m, (e.period_left - 1) // dc - 1)
            if e.state is EventState.ACTIVE and e.hw_idx is not None:
                k = _to_overflow(pe, e.hw_idx)
                if k is not None:
                    m = min(m, (k - 1) // dc - 1)
        # A counting event's wraps (every half counter range) are accounted in _apply.
    ghw = {i: (b.guest_hw[i] - a.guest_hw[i]) % (1 << 64) for i in a.guest_hw}
    for i, dv in ghw.items():
        if dv:
            k = _to_overflow(pe, i)
            if k is not None:
                m = min(m, (k - 1) // dv - 1)
    for c, ca, cb in zip(group, a.ctxs, b.ctxs, strict=True):
        pmu = c.vcpu.pmu if c.vcpu is not None else None
        for i, v1 in cb.vregs.items():
            dv = (v1 - ca.vregs[i]) % (1 << 64)
            if dv and pmu is not None and (pmu.inten >> i) & 1:
                width = 64 if pmu.has_64bit_overflow(i) else 32
                k = (1 << width) - (v1 & ((1 << width) - 1))
                m = min(m, (k - 1) // dv - 1)
    if m < 2:
        rq.ff_blocked_until = b.now + 2 * w.period
        return
    _apply(eng, rq, a, b, m, dnow, ghw, w)


def _apply(eng: Engine, rq: CpuRq, a: _Snap, b: _Snap, m: int, dnow: int,
           ghw: dict[int, int], w: Window) -> None:
    host = eng.host
    hc = host.cpus[rq.cpu]
    pe = hc.pe
    wraps = 0
    for e, x, y in zip(a.evs, a.ev_state, b.ev_state, strict=True):
        dc = m * (y[0] - x[0])
        if e.state is EventState.ACTIVE and e.hw_idx is not None and e.sample_period > 0:
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
    for k, n in (hb[0] - ha[0]).items():
        host.stats.el2_cycles[k] += m * n
        hc.el2_cycles_by_reason[k] += m * n
    for k2, n in (hb[1] - ha[1]).items():
        host.stats.el2_ns[k2] += m * n
        hc.el2_ns_by[k2] += m * n
    host.stats.rotations += m * (hb[2] - ha[2])
    hc.el2_cycles += m * (hb[4] - ha[4])
    hc.ctx.rotations += m * (hb[5] - ha[5])
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
            pmu = v.pmu
            if pmu is not None:
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
            d.rotations += m * (cb.drv["rotations"] - ca.drv["rotations"])
            for sa, sb, dst in zip(ca.drv["work"], cb.drv["work"],
                                   (d.work.count, d.work.cycles), strict=True):
                for k, n in sb.items():
                    dst[k] += m * (n - sa.get(k, 0))
        ctx.work_ns += m * (cb.ctx[0] - ca.ctx[0])
        ctx.cpu_ns += m * (cb.ctx[1] - ca.ctx[1])
        ctx.instructions += m * (cb.ctx[2] - ca.ctx[2])
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
