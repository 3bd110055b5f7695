"""Record a run as a Chrome/Perfetto trace and as plots (``pmupart run --trace/--plot``).

:class:`TraceRecorder` is an engine listener (``tracer.listener``).  It watches what the run
does and turns it into the report layer's plain data: a :class:`~pmupart.report.TraceBuilder`
(spec style-and-ecosystem §2.3) and the plots' :class:`~pmupart.report.OwnershipSpan` /
:class:`~pmupart.report.CountSeries`.

The trace, as ``ui.perfetto.dev`` shows it:

* one process per physical CPU, named with its PMU (``cpu4 (armv8_cortex_a76)``), sorted by
  CPU number; one thread per context that ran there (``vm0:vcpu0``, a host task);
* ``X`` slices: who ran on the CPU, from ``switch_in`` to ``switch_out``;
* ``C`` counter tracks per CPU: ``PMU counters cnt<n>`` / ``PMU counters PMCCNTR`` (each
  hardware counter's value), ``MDCR_EL2.HPMN value``, ``ownership host/guest/free`` (how
  many counters each side holds) and ``owner cnt<n>`` (0 free, 1 host, 2 + k the k-th VM by
  name);
* instants: every trapped guest PMU access (``trap PMEVTYPER3_EL0 W``), host PMU interrupts
  (``PMU IRQ``), virtual interrupts injected (``vIRQ``), host events squeezed out, failed
  entries, migrations (process-scoped on both CPUs);
* flows: an arrow from a vCPU's last slice before a migration to its first slice after it.

Size is bounded, and the trace says so: counter tracks are sampled at most once every
``duration / samples_per_cpu`` of simulated time per CPU (the last state in a gap is written
at the next sample point, and every track's final state at the end), plus at most
``samples_per_cpu`` more at vcpu loads and puts; each kind of instant keeps the first
``max_instants`` per CPU, and each CPU its first ``max_slices`` run slices (a migration flow
needs both of its slices).  What was left out is counted in the ``trace limits`` instant at
time 0 on the first CPU (``args``).

All recorded times are simulated nanoseconds; same run, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pmupart.report.perfetto import FlowEnd, TraceBuilder
from pmupart.report.plots import CYCLE_COUNTER, FREE, CountSeries, OwnershipSpan

if TYPE_CHECKING:
    from pmupart.machine import Machine
    from pmupart.sim.engine import Context
    from pmupart.sim.session import RunResult

__all__ = ["TraceRecorder"]

#: Host-side events that carry no time: the CPU's clock gives it.
_HOST_KINDS = ("vcpu_load", "vcpu_put", "trap", "virq", "pmu_irq", "squeezed", "rotate",
               "irq_exit",
               "guest_counters_loaded", "guest_counters_saved")
#: Events after which the counter tracks are sampled.
_SAMPLE_KINDS = frozenset(("vcpu_load", "vcpu_put", "rotate", "trap", "pmu_irq",
                           "guest_counters_loaded", "guest_counters_saved", "squeezed",
                           "switch_in", "switch_out"))


@dataclass
class _Track:
    """One decimated counter track: last written sample and the state not yet written."""

    last_t: int = -1
    last: dict[str, int] | None = None
    pending: tuple[int, dict[str, int]] | None = None
    forced: int = 0  #: samples written off the time grid (at loads and puts)


@dataclass
class _Cpu:
    pid: int
    current: str | None = None  #: context running now
    since: int = 0
    tracks: dict[str, _Track] = field(default_factory=dict)
    owners: tuple[str, ...] = ()  #: owner of each counter (in ``counters`` order)
    owner_since: int = 0
    counters: tuple[int, ...] = ()
    instants: dict[str, int] = field(default_factory=dict)
    slices: int = 0
    next_due: int = 0  #: the next time the counter tracks may be sampled


def _event_args(ev: Any) -> dict[str, Any]:
    """A perf event as the trace names it: ``pmu/event/`` and its owner, as perf prints it,
    never a Python repr (which holds a memory address: two identical runs gave different
    bytes)."""
    if ev is None:
        return {}
    from pmupart.arch.events import event_name

    attr = getattr(ev, "attr", None)
    pmu = getattr(getattr(ev, "pmu", None), "name", "?")
    name = event_name(attr.config).lower() if attr is not None else "?"
    return {"event": f"{pmu}/{name}/", "owner": str(getattr(ev, "owner", "?"))}


class TraceRecorder:
    """Listens to a run; writes its Perfetto trace and its plot afterwards.

    >>> from pmupart.check.trace import TraceRecorder
    >>> tracer = TraceRecorder()
    >>> # result = run_scenario(spec, listeners=[tracer.listener])
    >>> # tracer.write_trace(result, "out.json"); tracer.write_plot(result, "out.png")
    """

    def __init__(self, *, samples_per_cpu: int = 2000, max_instants: int = 2000,
                 max_slices: int = 20000, series_points: int = 400,
                 max_series_events: int = 4) -> None:
        if samples_per_cpu < 1 or max_instants < 0 or max_slices < 0 or series_points < 2:
            raise ValueError("samples_per_cpu >= 1, max_instants >= 0, max_slices >= 0 and "
                             "series_points >= 2")
        self.samples_per_cpu = samples_per_cpu
        self.max_instants = max_instants
        self.max_slices = max_slices
        self.series_points = series_points
        self.max_series_events = max_series_events
        self.tb = TraceBuilder()
        self.machine: Machine | None = None
        self._cpus: list[_Cpu] = []
        self._gap = 1
        self._tids: dict[str, int] = {}
        self._threads: set[tuple[int, int]] = set()
        self._ctx: dict[str, Context] = {}
        self._vm_rank: dict[str, int] = {}
        self._last_slice: dict[str, tuple[int, int, int]] = {}  #: ctx -> (pid, start, end)
        #: ctx -> its last slice (pid, start, end) before a migration, until it runs again
        self._pending_flow: dict[str, tuple[int, int, int]] = {}
        self._spans: list[OwnershipSpan] = []
        self._series: dict[str, list[tuple[int, list[int], list[int]]]] = {}
        self._series_gap = 1
        self.dropped: dict[str, int] = {}
        self.end_ns = 0

    # ------------------------------------------------------------------ listening
    def listener(self, kind: str, data: dict[str, Any]) -> None:
        """The engine listener: ``run_scenario(spec, listeners=[tracer.listener])``."""
        if kind == "start":
            self._start(data)
            return
        m = self.machine
        if m is None:
            return
        if kind == "end":
            self._end(int(data["t"]))
            return
        cpu = data.get("cpu")
        if kind in _HOST_KINDS:
            assert isinstance(cpu, int)
            t = m.host.cpus[cpu].now_ns
        else:
            t = int(data.get("t", 0))
        if kind == "switch_in":
            self._switch_in(int(data["cpu"]), str(data["ctx"]), t)
        elif kind == "switch_out":
            self._switch_out(int(data["cpu"]), str(data["ctx"]), t)
        elif kind == "migrate":
            self._migrate(str(data["ctx"]), int(data["src"]), int(data["dst"]), t)
        elif kind == "trap":
            rw = "W" if data.get("write") else "R"
            self._instant(int(data["cpu"]), "trap", f"trap {data['reg']} {rw}", t,
                          {"vcpu": str(data["vcpu"])})
        elif kind == "pmu_irq":
            self._instant(int(data["cpu"]), "pmu_irq", "PMU IRQ", t,
                          {"handled": int(data.get("handled", 0))})
        elif kind == "irq_exit":
            self._instant(int(data["cpu"]), "irq_exit", f"exit: host {data['reason']} IRQ", t,
                          {"vcpu": str(data["vcpu"])})
        elif kind == "guest_work":
            self._instant(int(data["cpu"]), f"guest_{data['work']}",
                          f"guest perf: {data['work']}", t,
                          {"vcpu": str(data["vcpu"]), "cycles": int(data["cycles"])})
        elif kind == "virq":
            self._instant(int(data["cpu"]), "virq", "vIRQ", t, {"vcpu": str(data["vcpu"])})
        elif kind == "squeezed":
            self._instant(int(data["cpu"]), "squeezed", "host event squeezed out", t,
                          _event_args(data.get("event")))
        elif kind == "fail_entry":
            self._instant(int(data["cpu"]), "fail_entry", "KVM_EXIT_FAIL_ENTRY", t,
                          {"ctx": str(data["ctx"])})
        elif kind == "fast_forward":
            # the engine skipped a steady stretch (pmupart/sim/fastforward.py): its work is in
            # the counts, its traps and interrupts were not traced one by one
            t0, t1 = int(data["t0"]), int(data["t1"])
            self._instant(int(data["cpu"]), "fast_forward",
                          f"fast-forward {(t1 - t0) / 1e6:.3f} ms ({data['periods']} periods)",
                          t0, {"until_ns": t1, "periods": int(data["periods"]),
                               "contexts": ",".join(str(c) for c in data.get("contexts", ()))},
                          scope="p")
        elif kind == "vcpu_load" and data.get("migrated"):
            self._instant(int(data["cpu"]), "vcpu_load", "vcpu_load (migrated)", t,
                          {"vcpu": str(data["vcpu"])})
        if kind in _SAMPLE_KINDS and isinstance(cpu, int):
            self._sample(cpu, t, force=kind in ("vcpu_load", "vcpu_put"))

    def _start(self, data: dict[str, Any]) -> None:
        m: Machine = data["machine"]
        self.machine = m
        spec = data.get("spec")
        duration = int(getattr(spec, "duration_ns", 0) or 1)
        self._gap = max(1, duration // self.samples_per_cpu)
        self._series_gap = max(1, duration // self.series_points)
        contexts: list[Context] = list(data.get("contexts", []))
        vms = sorted({c.vcpu.vm.name for c in contexts if c.vcpu is not None} |
                     {vm.name for vm in m.kvm.vms})
        self._vm_rank = {v: k for k, v in enumerate(vms)}
        for i, c in enumerate(contexts):
            self._ctx[c.name] = c
            self._tids[c.name] = i + 1
        for hc in m.host.cpus:
            pid = hc.id + 1  # pid 0 is the idle task in Perfetto's world: start at 1
            pmu = m.host.pmu_of_cpu(hc.id)
            self.tb.process(pid, f"cpu{hc.id} ({pmu.name})", sort_index=hc.id)
            n = hc.pe.num_counters
            st = _Cpu(pid, counters=(*range(n), CYCLE_COUNTER))
            st.owners = tuple(FREE for _ in st.counters)
            self._cpus.append(st)
            self._sample(hc.id, 0, force=True)

    # ------------------------------------------------------------------ slices and flows
    def _tid(self, cpu: int, ctx: str) -> int:
        tid = self._tids.setdefault(ctx, len(self._tids) + 1)
        pid = self._cpus[cpu].pid
        if (pid, tid) not in self._threads:
            self._threads.add((pid, tid))
            self.tb.thread(pid, tid, ctx, sort_index=tid)
        return tid

    def _switch_in(self, cpu: int, ctx: str, t: int) -> None:
        st = self._cpus[cpu]
        if st.current is not None:
            self._switch_out(cpu, st.current, t)
        st.current, st.since = ctx, t
        self._tid(cpu, ctx)
        if ctx not in self._series:  # the origin; later points are taken at switch-out
            self._series_point(ctx, t)

    def _switch_out(self, cpu: int, ctx: str, t: int) -> None:
        st = self._cpus[cpu]
        if st.current != ctx:
            return
        tid = self._tid(cpu, ctx)
        c = self._ctx.get(ctx)
        cat = "vcpu" if c is not None and c.vcpu is not None else "host"
        args: dict[str, Any] = {}
        if c is not None and c.vcpu is not None:
            args["vm"] = c.vcpu.vm.name
        end = max(st.since, t)
        st.current = None
        self._series_point(ctx, t)
        st.slices += 1
        if st.slices > self.max_slices:
            self.dropped["slice"] = self.dropped.get("slice", 0) + 1
            self._pending_flow.pop(ctx, None)
            self._last_slice.pop(ctx, None)
            return
        self.tb.slice(st.pid, tid, ctx, st.since, end - st.since, cat=cat, args=args)
        self._last_slice[ctx] = (st.pid, st.since, end)
        flow = self._pending_flow.pop(ctx, None)
        if flow is not None:
            # CPU clocks only meet at the engine's barriers, so the two slices may overlap a
            # little in time: the arrow goes from the latest point of the old slice that is
            # not after the end of the new one, to the earliest point of the new one after it.
            src_pid, s0, s1 = flow
            a = min(s1, end)
            b = max(st.since, a)
            if a >= s0 and b <= end:
                self.tb.flow(f"{ctx} migrates", FlowEnd(src_pid, tid, a),
                             FlowEnd(st.pid, tid, b), cat="migration")

    def _migrate(self, ctx: str, src: int, dst: int, t: int) -> None:
        for cpu in (src, dst):
            self._instant(cpu, "migrate", f"migrate {ctx} cpu{src}->cpu{dst}", t,
                          {"ctx": ctx, "src": src, "dst": dst}, scope="p")
        last = self._last_slice.get(ctx)
        if last is not None:
            self._pending_flow[ctx] = last

    # ------------------------------------------------------------------ instants
    def _instant(self, cpu: int, kind: str, name: str, t: int, args: dict[str, Any],
                 scope: str = "t") -> None:
        st = self._cpus[cpu]
        n = st.instants.get(kind, 0)
        st.instants[kind] = n + 1
        if n >= self.max_instants:
            self.dropped[kind] = self.dropped.get(kind, 0) + 1
            return
        tid = self._tid(cpu, st.current) if st.current is not None else 0
        self.tb.instant(st.pid, tid, name, t, scope="p" if scope == "p" else "t", cat=kind,
                        args=args)

    # ------------------------------------------------------------------ counter tracks
    def _owner(self, cpu: int, idx: int) -> str:
        m = self.machine
        assert m is not None
        hc = m.host.cpus[cpu]
        if (hc.guest_counter_mask >> idx) & 1 and hc.loaded_vcpu is not None:
            return str(getattr(getattr(hc.loaded_vcpu, "vm", None), "name", "guest"))
        ev = m.host.pmu_of_cpu(cpu).hw[cpu].events.get(idx)
        if ev is None:
            return FREE
        owner = ev.owner
        if owner.startswith("host"):
            return "host"
        return owner.split(":", 1)[0]  # an emulated guest counter: the VM's perf event

    def _sample(self, cpu: int, t: int, force: bool = False) -> None:
        m = self.machine
        assert m is not None
        st = self._cpus[cpu]
        hc = m.host.cpus[cpu]
        owners = tuple(self._owner(cpu, i) for i in st.counters)
        if owners != st.owners:
            self._close_spans(cpu, t)
            st.owners, st.owner_since = owners, t
        if t < st.next_due and not force:
            return  # decimated: the tracks' state is written at the next due sample
        st.next_due = t + self._gap
        snap = hc.pe.snapshot()
        values = {f"cnt{i}": v for i, v in enumerate(snap.evcntr)}
        values["PMCCNTR"] = snap.pmccntr
        self._track(cpu, "PMU counters", t, values, force)
        self._track(cpu, "MDCR_EL2.HPMN", t, {"value": snap.mdcr_el2 & 0x1F}, force)
        n_host = sum(1 for o in owners if o == "host")
        n_free = sum(1 for o in owners if o == FREE)
        self._track(cpu, "ownership", t, {"host": n_host, "guest": len(owners) - n_host - n_free,
                                          "free": n_free}, force)
        codes = {f"cnt{i}" if i != CYCLE_COUNTER else "PMCCNTR":
                 0 if o == FREE else 1 if o == "host" else 2 + self._vm_rank.get(o, 0)
                 for i, o in zip(st.counters, owners, strict=True)}
        self._track(cpu, "owner", t, codes, force)

    def _track(self, cpu: int, name: str, t: int, values: dict[str, int], force: bool) -> None:
        st = self._cpus[cpu]
        tr = st.tracks.setdefault(name, _Track())
        if values == tr.last:
            tr.pending = None
            return
        if force and t > tr.last_t and tr.forced < self.samples_per_cpu:
            tr.forced += 1
        elif tr.last_t >= 0 and t - tr.last_t < self._gap:
            tr.pending = (t, values)
            return
        self.tb.counter(st.pid, name, t, values)
        tr.last_t, tr.last, tr.pending = t, values, None

    def _close_spans(self, cpu: int, t: int) -> None:
        st = self._cpus[cpu]
        if t <= st.owner_since:
            return
        for idx, owner in zip(st.counters, st.owners, strict=True):
            self._spans.append(OwnershipSpan(cpu, idx, st.owner_since, t, owner))

    # ------------------------------------------------------------------ counted vs true
    def _series_point(self, ctx: str, t: int, force: bool = False) -> None:
        c = self._ctx.get(ctx)
        if c is None or c.driver is None:
            return
        pts = self._series.setdefault(ctx, [])
        if pts and not force and t - pts[-1][0] < self._series_gap:
            return
        drv = c.driver
        k = min(self.max_series_events, len(drv.events))
        counted = [int(drv.counts[i]) + self._unread(c, i) for i in range(k)]
        true = [int(c.truth.get(drv.events[i], 0)) for i in range(k)]
        if pts and pts[-1][0] == t:
            pts[-1] = (t, counted, true)
        else:
            pts.append((t, counted, true))

    @staticmethod
    def _unread(c: Context, i: int) -> int:
        """What event ``i``'s counter gained since the guest driver last read it: the
        guest's count at this instant is its driver's total plus this.  Read without side
        effects from the state saved at put (partitioned: the saved registers; emulated: the
        stored value plus the backing perf event's count, current once scheduled out)."""
        drv, vcpu = c.driver, c.vcpu
        if drv is None or vcpu is None or vcpu.pmu is None or vcpu.cpu is not None:
            return 0
        idx = drv.counter.get(i)
        if idx is None:
            return 0
        pmu = vcpu.pmu
        value = pmu.ccntr if idx == CYCLE_COUNTER else pmu.evcntr[idx]
        perf = getattr(pmu, "perf", None)  # the emulated backend's backing events
        if isinstance(perf, dict) and idx in perf:
            value += int(perf[idx].count)
        mask = (1 << 64) - 1 if drv.wide else (1 << 32) - 1  # as the driver's _update
        return (value - drv.prev[i]) & mask

    # ------------------------------------------------------------------ the end
    def _end(self, t_end: int) -> None:
        m = self.machine
        assert m is not None
        t_end = max([t_end, *(hc.now_ns for hc in m.host.cpus)])
        self.end_ns = t_end
        for hc in m.host.cpus:
            st = self._cpus[hc.id]
            if st.current is not None:
                self._switch_out(hc.id, st.current, max(st.since, hc.now_ns))
            self._sample(hc.id, hc.now_ns, force=True)
            for name, tr in st.tracks.items():
                if tr.pending is not None:
                    pt, vals = tr.pending
                    self.tb.counter(st.pid, name, max(pt, tr.last_t), vals)
                    tr.last_t, tr.last, tr.pending = pt, vals, None
            self._close_spans(hc.id, t_end)
            st.owner_since = t_end
        for ctx in self._series:
            self._series_point(ctx, t_end, force=True)
        limits: dict[str, Any] = {
            "counter_sample_gap_ns": self._gap, "max_instants_per_cpu_and_kind":
            self.max_instants, "max_slices_per_cpu": self.max_slices}
        limits.update({f"dropped_{k}": v for k, v in sorted(self.dropped.items())})
        if self._cpus:
            self.tb.instant(self._cpus[0].pid, 0, "trace limits", 0, scope="g",
                            cat="pmupart", args=limits)

    # ------------------------------------------------------------------ outputs
    def ownership(self) -> list[OwnershipSpan]:
        """Who owned each hardware counter of each CPU, as spans (for the plot)."""
        return list(self._spans)

    def series(self) -> list[CountSeries]:
        """Each guest session's first events: counted (what its driver read) vs true (what
        the vCPU really retired), sampled at switch points."""
        out: list[CountSeries] = []
        from pmupart.arch.events import event_name
        for ctx in sorted(self._series, key=lambda n: self._tids.get(n, 0)):
            pts = self._series[ctx]
            c = self._ctx[ctx]
            if c.driver is None or len(pts) < 2:
                continue
            for j in range(len(pts[0][1])):
                ev = event_name(c.driver.events[j]).lower()
                out.append(CountSeries(f"{ctx} {ev}", [p[0] for p in pts],
                                       [p[1][j] for p in pts], [p[2][j] for p in pts]))
        return out

    def write_trace(self, result: RunResult, path: str | Path) -> Path:
        """Write the Perfetto/Chrome JSON trace of the run to ``path``."""
        self._need_run(result)
        return self.tb.write(path)

    def write_plot(self, result: RunResult, path: str | Path, max_cpus: int = 16,
                   max_series: int = 8) -> Path:
        """Draw the ownership timeline (the first ``max_cpus`` CPUs where a counter was
        ever held) and the guests' counted vs true events (``max_series`` at most) to a
        PNG.  Each pixel column of a counter's row stacks the share of its time each owner
        held the counter, so no owner vanishes however short its stretches."""
        from pmupart.report.plots import plot_ownership, plot_run
        self._need_run(result)
        spans = self.ownership()
        busy = sorted({s.cpu for s in spans if s.owner != FREE})
        cpus = (busy or sorted({s.cpu for s in spans}))[:max_cpus]
        keep = set(cpus)
        t_max = max((s.end_ns for s in spans), default=0)
        shown = _coarsen([s for s in spans if s.cpu in keep], t_max)
        # A CPU whose spans were all too short still gets its rows (as free).
        for cpu in cpus:
            if not any(s.cpu == cpu for s in shown):
                shown.extend(OwnershipSpan(cpu, i, 0, max(1, t_max), FREE)
                             for i in self._cpus[cpu].counters)
        if not shown:
            shown = [OwnershipSpan(0, CYCLE_COUNTER, 0, 1, FREE)]
        spec = result.spec
        title = f"{spec.name}: {len(result.machine.host.cpus)} CPUs"
        if len(cpus) < len(result.machine.host.cpus):
            title += f" (ownership of {len(cpus)} shown)"
        ser = self.series()[:max_series]
        if ser:
            return plot_run(shown, ser, path, title=title)
        return plot_ownership(shown, path, title=title)

    def _need_run(self, result: RunResult) -> None:
        if self.machine is None:
            raise ValueError("the TraceRecorder saw no run: pass tracer.listener to "
                             "run_scenario(spec, listeners=[...])")
        if result.machine is not self.machine:
            raise ValueError("this RunResult is not the run the TraceRecorder listened to")


def _coarsen(spans: list[OwnershipSpan], t_max: int) -> list[OwnershipSpan]:
    """Spans fit to draw: consecutive spans of one owner merged.  Nothing is resampled
    here: the plot aggregates each pixel column by share of time owned
    (``pmupart.report.plots.ownership_shares``), so stretches narrower than a pixel stay
    visible (a majority vote per column dropped a VM that held a counter a quarter of
    the time)."""
    rows: dict[tuple[int, int | str], list[OwnershipSpan]] = {}
    for sp in sorted(spans, key=lambda x: (x.cpu, str(x.counter), x.start_ns)):
        row = rows.setdefault((sp.cpu, sp.counter), [])
        if row and row[-1].owner == sp.owner and row[-1].end_ns >= sp.start_ns:
            last = row[-1]
            row[-1] = OwnershipSpan(last.cpu, last.counter, last.start_ns,
                                    max(last.end_ns, sp.end_ns), last.owner)
        else:
            row.append(sp)
    return [sp for row in rows.values() for sp in row]
