"""The discrete-event engine: simulated nanoseconds, per-CPU scheduling, migrations.

Each physical CPU runs one context at a time (a host task, a vCPU thread, or idle).  A
running context retires blocks of work on its CPU's PE at its exception level (user at EL0;
kernel at EL2 for the VHE host, EL1 for a guest); overflows inside a block are taken at
their exact point (``HostKernel.retire``), as are perf's multiplexing rotations.  A CPU
runs until its next decision point (end of the time slice when others wait, the guest's
tick when its perf session rotates, samples or switches tasks, the next global event);
global events (migrations, the end) wait until every CPU has reached them.  Work is taken
by time, but the overheads taken inside a block (interrupts, traps) take time too: a block
is cut where the CPU's clock reaches the guest's tick or the end of the time slice, both
wall-time timers, and the rest of its work is retired after them (``Context.carry``).
Listeners see every retired piece of work, trap, overflow, interrupt, load/put and
migration (``Engine.listeners``).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pmupart.arch.events import Event
from pmupart.host.perf_event import Task
from pmupart.kvm import uapi
from pmupart.kvm.kvm import VCPU
from pmupart.kvm.run import GuestCpu, kvm_arch_vcpu_load, kvm_arch_vcpu_put
from pmupart.machine import Machine
from pmupart.sim import fastforward
from pmupart.sim.guest_perf import GuestPmuDriver
from pmupart.sim.spec import MigrationPolicy, MigrationSpec, Phase, Workload

_CYC = int(Event.CPU_CYCLES)
_INST = int(Event.INST_RETIRED)
Listener = Callable[[str, dict[str, Any]], None]


class Context:
    """A schedulable thread: a host task or a vCPU thread, with its workload."""

    def __init__(self, name: str, workload: Workload, affinity: tuple[int, ...],
                 *, vcpu: VCPU | None = None, task: Task | None = None) -> None:
        self.name = name
        self.workload = workload
        self.affinity = affinity
        self.vcpu = vcpu
        self.task = task
        self.cpu: int | None = None  #: the CPU whose runqueue holds it
        self.done = False
        self.failed: str | None = None  #: why it stopped (e.g. KVM_EXIT_FAIL_ENTRY)
        self.work_ns = 0  #: workload time executed
        self.cpu_ns = 0  #: CPU time consumed (work + overheads)
        self.finish_ns: int | None = None
        self.instructions = 0
        self.driver: GuestPmuDriver | None = None
        #: a guest program run once, on the vCPU's first entry (KVM's ``program(cpu)``)
        self.program: Callable[[Any], object] | None = None
        self.program_ran = False
        self.program_result: object = None
        self.guest: GuestCpu | None = None
        self.next_tick_ns = 0
        #: the guest's tick was taken at the end of the last step (a sampling window's edge)
        self.just_ticked = False
        self._frac: dict[int, float] = {}
        self.truth: dict[int, int] = {}  #: events really retired (by number)
        #: work a block left when the guest's tick came (EL, events), retired first next time
        self.carry: list[tuple[int, dict[int, int]]] = []
        #: the last of its fixed work has been taken from the workload (done once retired)
        self.finishing = False
        #: when it last left a CPU: it may not start on another before then (a thread is on
        #: one CPU at a time; a block that ran past a migration barrier ends there)
        self.ready_ns = 0

    @property
    def is_vcpu(self) -> bool:
        return self.vcpu is not None

    @property
    def runnable(self) -> bool:
        """Wants the CPU: not finished, and either a program to run or a workload that is not
        ``idle`` (an idle thread is blocked: its CPU waits in WFI)."""
        if self.done or self.failed:
            return False
        if self.program is not None and not self.program_ran:
            return True
        return self.workload.name != "idle"

    def phase_at(self, t: int) -> tuple[Phase, int]:
        """The phase at workload time ``t`` and the time left in it."""
        phases = self.workload.phases
        total = sum(p.duration_ns or 0 for p in phases)
        if any(p.duration_ns is None for p in phases) or total == 0:
            for p in phases:
                if p.duration_ns is None:
                    return p, 1 << 62
                if t < p.duration_ns:
                    return p, p.duration_ns - t
                t -= p.duration_ns
            return phases[-1], 1 << 62
        t %= total
        for p in phases:
            assert p.duration_ns is not None
            if t < p.duration_ns:
                return p, p.duration_ns - t
            t -= p.duration_ns
        return phases[-1], 1 << 62  # pragma: no cover

    def events_for(self, phase: Phase, core_name: str, core_cpi: float, mhz: int,
                   ns: int) -> dict[int, int]:
        """Events ``ns`` of this phase retire on a core (rates per instruction); fractions
        carry over between blocks so long runs are exact in total."""
        cyc_f = ns * mhz / 1000 + self._frac.get(_CYC, 0.0)
        cycles = int(cyc_f)
        self._frac[_CYC] = cyc_f - cycles
        cpi = phase.cpi_for(core_name, core_cpi)
        inst_f = cycles / cpi + self._frac.get(_INST, 0.0)
        inst = int(inst_f)
        self._frac[_INST] = inst_f - inst
        out = {_CYC: cycles, _INST: inst}
        for ev, rate in phase.rates_for(core_name):
            f = inst * rate + self._frac.get(ev, 0.0)
            k = int(f)
            self._frac[ev] = f - k
            if k:
                out[ev] = out.get(ev, 0) + k
        return out


@dataclass
class CpuRq:
    """One CPU's runqueue."""

    cpu: int
    queue: list[Context] = field(default_factory=list)
    current: Context | None = None
    slice_end: int = 0
    busy_ns: int = 0
    ff_blocked_until: int = 0
    ff_window: Any = None  #: a fast-forward measurement in progress (fastforward.Window)
    ff_prev: Any = None  #: the sampling window just measured (fastforward: Window.prev)
    ff_retry: Any = None  #: (thread, guest tick) before which no sampling window begins
    ff_periods: int = 1  #: periods a host sampling window holds (fastforward)


class Engine:
    """Runs contexts on a machine for a duration."""

    def __init__(self, machine: Machine, contexts: list[Context], duration_ns: int, *,
                 slice_ns: int = 1_000_000, guest_tick_ns: int = 4_000_000,
                 migration: MigrationSpec | None = None, seed: int = 0,
                 fast_forward: bool = True) -> None:
        self.m = machine
        self.host = machine.host
        self.contexts = contexts
        self.duration_ns = duration_ns
        self.slice_ns = slice_ns
        self.guest_tick_ns = guest_tick_ns
        self.migration = migration or MigrationSpec()
        self.rng = random.Random(seed)
        self.rqs = [CpuRq(c.id) for c in self.host.cpus]
        self.listeners: list[Listener] = []
        self.migrations = 0
        self.fast_forward = fast_forward
        self.fast_forwarded_ns = 0
        self.fail_entries: list[tuple[int, str, int]] = []
        self.host.listeners.append(self._forward)
        self._place()

    # ------------------------------------------------------------------ events
    def _forward(self, kind: str, data: dict[str, Any]) -> None:
        for fn in self.listeners:
            fn(kind, data)

    def emit(self, kind: str, **data: Any) -> None:
        for fn in self.listeners:
            fn(kind, data)

    # ------------------------------------------------------------------ placement
    def _place(self) -> None:
        """Initial placement: each context on the least loaded CPU it may use."""
        for ctx in self.contexts:
            cpu = min(ctx.affinity, key=lambda c: (len(self.rqs[c].queue), c))
            self._enqueue(ctx, cpu)

    def _enqueue(self, ctx: Context, cpu: int) -> None:
        ctx.cpu = cpu
        self.rqs[cpu].queue.append(ctx)

    # ------------------------------------------------------------------ the loop
    def run(self, progress: Callable[[int], None] | None = None) -> None:
        """Run until ``duration_ns`` (or every context is done).  The host's events (traps,
        interrupts, EL2 work: many per sample) are forwarded to the listeners only if one of
        them wants them: a listener with ``engine_events_only = True`` (the cover-letter
        experiment's) hears the engine's own events, and with no other listener the host
        does not build them at all."""
        hl = self.host.listeners
        idx = hl.index(self._forward) if self._forward in hl else -1
        if idx >= 0 and all(getattr(fn, "engine_events_only", False) for fn in self.listeners):
            del hl[idx]
        else:
            idx = -1
        try:
            self._run_loop(progress)
        finally:
            if idx >= 0:
                hl.insert(idx, self._forward)

    def _run_loop(self, progress: Callable[[int], None] | None) -> None:
        end = self.duration_ns
        mig = self.migration
        next_global = mig.interval_ns if mig.policy is not MigrationPolicy.NONE else end
        heap = [(self.host.cpus[r.cpu].now_ns, r.cpu) for r in self.rqs]
        heapq.heapify(heap)
        shown, step = 0, max(1, end // 200)  # progress: every 0.5% of simulated time
        while True:
            barrier = min(next_global, end)
            while heap and heap[0][0] < barrier:
                _, cpu = heapq.heappop(heap)
                self._step(cpu, barrier)
                heapq.heappush(heap, (self.host.cpus[cpu].now_ns, cpu))
                if progress is not None and heap[0][0] - shown >= step:
                    shown = min(heap[0][0], barrier)  # the slowest CPU's simulated time
                    progress(shown)
            if barrier >= end:
                break
            self._migrate(barrier)
            if progress is not None:
                progress(barrier)
            next_global = barrier + mig.interval_ns
            if all(c.done or c.failed for c in self.contexts) and self.contexts:
                break
        for r in self.rqs:
            self._ff_cancel(r)
            self._switch_out(r)
        self._finish_drivers()
        self.host.flush_all()

    def _step(self, cpu: int, barrier: int) -> None:
        """Run ``cpu`` from its now to its next decision point (<= barrier)."""
        rq = self.rqs[cpu]
        hc = self.host.cpus[cpu]
        now = hc.now_ns
        runnable = [c for c in rq.queue if c.runnable]
        waiting = [c.ready_ns for c in runnable if c.ready_ns > now]
        if waiting:  # migrated here, still running out its last block on the old CPU
            runnable = [c for c in runnable if c.ready_ns <= now]
        if not runnable:
            self._switch_out(rq)
            self.host.advance_idle(cpu, min([barrier, *waiting]) - now)
            return
        if rq.current is None or rq.current not in runnable or \
                (len(runnable) > 1 and now >= rq.slice_end):
            nxt = self._pick(rq, runnable)
            if nxt is not rq.current:
                self._switch_out(rq)
                if not self._switch_in(rq, nxt):
                    return
            rq.slice_end = now + self.slice_ns
        ctx = rq.current
        assert ctx is not None
        sliced = rq.slice_end - now == self.slice_ns
        if hc.now_ns != now:
            # the switch's cost, accounted before a fast-forward window may snapshot the
            # driver below (a window must not see time from before it opened: the guest's
            # time_enabled came out longer than the run)
            rq.busy_ns += hc.now_ns - now
            if ctx.driver is not None and ctx.driver.started:
                ctx.driver.account(hc.now_ns - now)
            now = hc.now_ns
        if ctx.program is not None and not ctx.program_ran and ctx.guest is not None:
            self._run_program(ctx, cpu)
            return
        if self.fast_forward:
            w = rq.ff_window
            fresh = len(runnable) == 1 or sliced
            if w is not None and runnable != w.group:
                self._ff_cancel(rq)
            elif w is not None and ctx is w.ctx and fresh and w.done(self, cpu):
                rq.ff_window = None
                fastforward.finish(self, rq, w, barrier)
                now = hc.now_ns
                if now >= barrier:
                    return
            if rq.ff_window is None and fresh:
                rq.ff_window = fastforward.begin(self, rq, ctx, runnable, barrier)
        stop = barrier
        if rq.ff_window is not None:
            stop = min(stop, max(now + 1, rq.ff_window.next_stop(self, cpu)))
        elif self.fast_forward and now < rq.ff_blocked_until:
            stop = min(stop, rq.ff_blocked_until)  # try again then
        if len(runnable) > 1:
            stop = min(stop, rq.slice_end)
        if waiting:
            stop = min(stop, max(now + 1, min(waiting)))
        if ctx.driver is not None and ctx.driver.needs_tick():
            stop = min(stop, max(ctx.next_tick_ns, now + 1))
        phase, left = ctx.phase_at(ctx.work_ns)
        stop = min(stop, now + max(1, left))
        dt = max(1, stop - now)
        wall_stop = rq.slice_end if len(runnable) > 1 else None
        w = rq.ff_window
        if w is not None and w.host_sampling and len(w.group) == 1 and now < w.end_ns:
            # a host sampling window is whole periods of wall time: its last block is cut at
            # its end, overheads included (else every window ran over by its samples' cost,
            # and the skip moved the rotation's phase: counts 0.3% off; found by review)
            wall_stop = w.end_ns if wall_stop is None else min(wall_stop, w.end_ns)
        self._run(ctx, cpu, phase, dt, wall_stop, barrier)
        rq.busy_ns += hc.now_ns - now
        if ctx.driver is not None and ctx.guest is not None and \
                hc.now_ns >= ctx.next_tick_ns:
            ctx.driver.account(hc.now_ns - now)
            if ctx.driver.needs_tick():
                # the tick's own cost (the timer exit, the tick's kernel work) is modelled
                # where the engine stops at every tick; a session that neither rotates,
                # adapts nor switches tasks leaves it out (about 0.1% of the time)
                ctx.guest.timer_interrupt()
            ctx.driver.tick(ctx.guest, self.guest_tick_ns)
            ctx.just_ticked = True
            # The tick is periodic (kernel/time/tick-sched.c tick_sched_timer, upstream:
            # hrtimer_forward by one period from its expiry, not from when the handler ends);
            # a tick that comes after its next one was due (the vCPU was not running, or the
            # handler overran) forwards past now.  The virtual timer keeps wall time (CNTVCT
            # runs on through exits), so time lost to traps does not delay it.
            due = ctx.next_tick_ns + self.guest_tick_ns
            if due <= hc.now_ns:
                due += ((hc.now_ns - due) // self.guest_tick_ns + 1) * self.guest_tick_ns
            ctx.next_tick_ns = due
        elif ctx.driver is not None:
            ctx.driver.account(hc.now_ns - now)

    def _run_program(self, ctx: Context, cpu: int) -> None:
        """Run the vCPU's guest program to completion (no preemption inside it): its
        accesses trap or not as on any vCPU, its ``count()`` calls retire work and move the
        CPU's clock."""
        assert ctx.program is not None and ctx.guest is not None
        hc = self.host.cpus[cpu]
        start = hc.now_ns
        ctx.program_ran = True
        self.emit("program_start", cpu=cpu, ctx=ctx.name, t=start)
        try:
            ctx.program_result = ctx.program(ctx.guest)
        except Exception as e:  # the user's code: exit 3 with its traceback (cli.py)
            from pmupart.errors import GuestProgramError

            name = getattr(ctx.program, "__qualname__", None) or type(ctx.program).__name__
            raise GuestProgramError(ctx.name, str(name), e) from e
        ctx.guest.el = 1
        ctx.cpu_ns += hc.now_ns - start
        self.rqs[cpu].busy_ns += hc.now_ns - start
        self.emit("program_end", cpu=cpu, ctx=ctx.name, t=hc.now_ns)
        if ctx.driver is not None and not ctx.driver.started:
            self._start_driver(ctx, cpu)
        if ctx.workload.name == "idle":
            ctx.finish_ns = hc.now_ns

    def _pick(self, rq: CpuRq, runnable: list[Context]) -> Context:
        """Round robin: the next runnable after the current one."""
        if rq.current in runnable:
            i = runnable.index(rq.current)
            return runnable[(i + 1) % len(runnable)]
        return runnable[0]

    def _run(self, ctx: Context, cpu: int, phase: Phase, dt: int,
             slice_end: int | None = None, barrier: int | None = None) -> None:
        """Retire ``dt`` of the context's workload: user part then kernel part, after what an
        earlier block left for after the guest's tick (:attr:`Context.carry`).

        A guest whose tick matters has its block cut where the CPU's clock reaches the
        tick, the overheads taken inside the block (interrupts, traps) included: the
        virtual timer fires at its time, whatever work is left (``HostKernel.retire``'s
        ``stop_ns``).  Before this, the tick came at the end of the block of work it fell
        in, so a guest spending 40% of its time in traps ticked every 7 ms, not 4.  A thread
        sharing its CPU is cut at the end of its time slice the same way (the scheduler's
        slice is wall time: a vCPU that loses time to traps does not get a longer one), and a
        block at the end of a host sampling window of the fast-forward (``slice_end``: the
        earlier of the two)."""
        hc = self.host.cpus[cpu]
        core = hc.core
        start = hc.now_ns
        ctx.just_ticked = False
        parts: list[tuple[int, dict[int, int]]] = []
        # new work only once the last block's rest is retired: work is taken by time, and a
        # block whose rest waits for the tick took more than the time it had
        if not ctx.finishing and not ctx.carry:
            events = ctx.events_for(phase, core.name, core.cpi, hc.freq_mhz, dt)
            if ctx.workload.instructions is not None:
                remaining = ctx.workload.instructions - ctx.instructions
                if events[_INST] >= remaining:
                    scale = remaining / max(1, events[_INST])
                    events = {k: max(0, int(v * scale)) for k, v in events.items()}
                    events[_INST] = remaining
                    ctx.finishing = True
            kf = phase.kernel_fraction
            kern_el = 1 if ctx.is_vcpu else 2
            parts = [(0, {k: v - int(v * kf) for k, v in events.items()}),
                     (kern_el, {k: int(v * kf) for k, v in events.items()})]
            ctx.instructions += events.get(_INST, 0)
            ctx.work_ns += dt
        todo = ctx.carry + parts
        ctx.carry = []
        drv = ctx.driver
        stop = ctx.next_tick_ns if ctx.guest is not None and drv is not None \
            and drv.started and drv.needs_tick() else None
        if slice_end is not None:
            stop = slice_end if stop is None else min(stop, slice_end)
        if stop is None:
            # No timer cuts this block: the run ends at its duration and a migration happens
            # at its time (the barrier), so a block whose overheads (interrupts, traps) would
            # carry it past either is cut there, as at a tick; its rest is retired after the
            # migration, on the thread's new CPU, or never at the end.  (Uncut, a run with a
            # host perf record and nothing else to stop it ended its 1 s 0.6% late, its
            # counts 0.6% high; a thread ran 2-3 ms of each 500 ms on the CPU it had left.)
            stop = self.duration_ns if barrier is None else min(barrier, self.duration_ns)
        for k, (el, evs) in enumerate(todo):
            if not any(evs.values()):
                continue
            if stop is not None and hc.now_ns >= stop:
                ctx.carry = [p for p in todo[k:] if any(p[1].values())]
                break

            def on_part(part: dict[int, int], el: int = el) -> None:
                truth = ctx.truth
                for ev, v in part.items():
                    truth[ev] = truth.get(ev, 0) + v
                if self.listeners:
                    self.emit("retire", cpu=cpu, ctx=ctx.name, el=el, events=part, t=hc.now_ns)

            if ctx.guest is not None:
                ctx.guest.el = el
                rest = self.host.retire(cpu, el, evs, on_irq=ctx.guest.on_host_irq,
                                        stop_ns=stop, on_part=on_part)
                ctx.guest._deliver()
            else:
                rest = self.host.retire(cpu, el, evs, stop_ns=stop, on_part=on_part)
            if rest:
                ctx.carry = [(el, rest)] + [p for p in todo[k + 1:] if any(p[1].values())]
                break
        ctx.cpu_ns += hc.now_ns - start
        if ctx.finishing and not ctx.carry:
            ctx.done = True
            ctx.finish_ns = hc.now_ns
            self.emit("done", cpu=cpu, ctx=ctx.name, t=hc.now_ns)

    # ------------------------------------------------------------------ switching
    def _switch_in(self, rq: CpuRq, ctx: Context) -> bool:
        cpu = rq.cpu
        if ctx.vcpu is not None:
            ex = self._vcpu_enter(ctx, cpu)
            if ex is not None:
                return False
        else:
            self.host.switch_task(cpu, ctx.task)
        rq.current = ctx
        self.emit("switch_in", cpu=cpu, ctx=ctx.name, t=self.host.cpus[cpu].now_ns)
        return True

    def _vcpu_enter(self, ctx: Context, cpu: int) -> uapi.KvmExit | None:
        """Load the vCPU; a CPU outside its PMU fails the entry (the VMM stops the vCPU)."""
        vcpu = ctx.vcpu
        assert vcpu is not None
        vcpu.vm.has_run = True
        kvm_arch_vcpu_load(vcpu, cpu)
        if vcpu.on_unsupported_cpu:
            vcpu.stats.fail_entries += 1
            vcpu.stats.exits["fail_entry"] += 1
            kvm_arch_vcpu_put(vcpu)
            ctx.failed = (f"KVM_EXIT_FAIL_ENTRY (CPU_UNSUPPORTED) on cpu{cpu}: not covered "
                          f"by {vcpu.vm.arm_pmu.name if vcpu.vm.arm_pmu else '?'}")
            t = self.host.cpus[cpu].now_ns
            self.fail_entries.append((t, ctx.name, cpu))
            self.emit("fail_entry", cpu=cpu, ctx=ctx.name, t=t)
            return uapi.KvmExit(uapi.KVM_EXIT_FAIL_ENTRY, uapi.FailEntry(
                uapi.KVM_EXIT_FAIL_ENTRY_CPU_UNSUPPORTED, cpu))
        pe = self.host.cpus[cpu].pe
        with pe.at_el(2):
            pe.write("HCR_EL2", 1 << 34)
        guest = GuestCpu(vcpu, cpu)
        guest.truth = ctx.truth  # the guest kernel's own perf work is retired work too
        ctx.guest = guest
        drv = ctx.driver
        if drv is not None:
            guest.on_pmu_irq(drv.irq)
            if not drv.started and (ctx.program is None or ctx.program_ran):
                self._start_driver(ctx, cpu)
        return None

    def _start_driver(self, ctx: Context, cpu: int) -> None:
        """Open the guest's perf session on the loaded vCPU.  A vCPU with a guest program
        opens it after the program has run: the program and the guest kernel's perf driver
        would otherwise both program counter 0 (the program's ``PMEVCNTR0_EL0 = 0`` under
        a driver that had biased it to 2^63 made ``perf stat`` print 2^63 + the program's
        count).  The driver's reset (``armv8pmu_reset``) then starts from whatever the
        program left."""
        assert ctx.driver is not None and ctx.guest is not None
        ctx.driver.start(ctx.guest)
        ctx.next_tick_ns = self.host.cpus[cpu].now_ns + self.guest_tick_ns

    def _ff_cancel(self, rq: CpuRq) -> None:
        w = rq.ff_window
        if w is not None:
            self.listeners.remove(w._tap)
            rq.ff_window = None

    def _switch_out(self, rq: CpuRq) -> None:
        ctx = rq.current
        if ctx is None:
            return
        cpu = rq.cpu
        if ctx.vcpu is not None:
            pe = self.host.cpus[cpu].pe
            with pe.at_el(2):
                pe.write("HCR_EL2", (1 << 34) | (1 << 27))
            kvm_arch_vcpu_put(ctx.vcpu)
            ctx.guest = None
        else:
            self.host.switch_task(cpu, None)
        rq.current = None
        self.emit("switch_out", cpu=cpu, ctx=ctx.name, t=self.host.cpus[cpu].now_ns)

    # ------------------------------------------------------------------ migration
    def _movable(self) -> list[Context]:
        return [c for c in self.contexts if len(c.affinity) > 1 and not (c.done or c.failed)
                and (c.is_vcpu or self.migration.host_tasks)]

    def _migrate(self, t: int) -> None:
        pol = self.migration.policy
        moves: list[tuple[Context, int]] = []
        if pol is MigrationPolicy.PERIODIC:
            for c in self._movable():
                aff = sorted(c.affinity)
                cur = c.cpu if c.cpu is not None else aff[0]
                nxt = next((x for x in aff if x > cur), aff[0])
                moves.append((c, nxt))
        elif pol is MigrationPolicy.RANDOM:
            for c in self._movable():
                moves.append((c, self.rng.choice(sorted(c.affinity))))
        elif pol is MigrationPolicy.LOAD_BALANCE:
            load = {r.cpu: len([c for c in r.queue if c.runnable])
                    for r in self.rqs}
            busiest = max(load, key=lambda c: (load[c], -c))
            for c in self._movable():
                if c.cpu != busiest:
                    continue
                target = min(c.affinity, key=lambda x: (load[x], x))
                if load[target] + 1 < load[busiest]:
                    moves.append((c, target))
                    break
        for c, dst in moves:
            src = c.cpu
            if src == dst or src is None:
                continue
            rq = self.rqs[src]
            self._ff_cancel(rq)
            self._ff_cancel(self.rqs[dst])
            # both CPUs' threads change: host sampling windows are sized afresh (a length
            # learnt on a shared CPU left no room for a window on it alone; found by review)
            rq.ff_periods = self.rqs[dst].ff_periods = 1
            if rq.current is c:
                self._switch_out(rq)
            c.ready_ns = max(c.ready_ns, self.host.cpus[src].now_ns)
            rq.queue.remove(c)
            self._enqueue(c, dst)
            self._recast_carry(c, src, dst)
            self.migrations += 1
            self.emit("migrate", ctx=c.name, src=src, dst=dst, t=t)

    def _recast_carry(self, c: Context, src: int, dst: int) -> None:
        """The rest of a block cut at the barrier (or at a tick) goes with the thread: on a
        core of another type its instructions are the same, its cycles and other events
        those of the new core (its CPI and rates for the phase the block was taken in).
        (Kept as worked out for the old core, a little core retired a big core's IPC: 3.6%
        too many instructions per cycle on a big.LITTLE host sampling at 4 kHz; found by
        review.)"""
        a, b = self.host.cpus[src].core, self.host.cpus[dst].core
        if not c.carry or (a.name == b.name and a.cpi == b.cpi):
            return
        phase, _ = c.phase_at(max(0, c.work_ns - 1))  # the last block's phase
        cpi = phase.cpi_for(b.name, b.cpi)
        rates = phase.rates_for(b.name)
        new: list[tuple[int, dict[int, int]]] = []
        for el, evs in c.carry:
            n = evs.get(_INST, 0)
            out = {_CYC: int(n * cpi), _INST: n}
            for ev, rate in rates:
                out[ev] = out.get(ev, 0) + int(n * rate)
            new.append((el, {k: v for k, v in out.items() if v}))
        c.carry = new

    # ------------------------------------------------------------------ the end
    def _finish_drivers(self) -> None:
        """Close the guest perf sessions: load each vCPU once more to read its counters."""
        for ctx in self.contexts:
            if ctx.driver is None or not ctx.driver.started or ctx.vcpu is None or ctx.failed:
                continue
            cpu = ctx.cpu if ctx.cpu is not None else ctx.affinity[0]
            rq = self.rqs[cpu]
            self._switch_out(rq)
            now = self.host.cpus[cpu].now_ns
            if ctx.ready_ns > now:
                self.host.advance_idle(cpu, ctx.ready_ns - now)
            if self._switch_in(rq, ctx) and ctx.guest is not None:
                ctx.driver.finish(ctx.guest)
            self._switch_out(rq)
