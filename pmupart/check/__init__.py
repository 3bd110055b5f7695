"""pmupart.check: the ground-truth ledger and the invariant checker.

``pmupart run`` and ``pmupart check`` use it as::

    checker = Checker()
    result = run_scenario(spec, listeners=[checker.listener])
    checker.finish(result)
    print(checker.verdict())          # one line
    for v in checker.violations:      # InvariantViolation: time, CPU, vCPU, rule, values
        print(v.details())

Without the engine (a machine driven with ``vcpu.run``), ``checker.attach(machine)`` hooks it
to the host's events; ``checker.check_state()`` checks every state invariant now.

The events it listens to: the engine's (``start``, ``retire``, ``switch_in/out``,
``migrate``, ``fail_entry``, ``end``), the host's and KVM's (``vcpu_load``, ``vcpu_put``,
``trap``, ``virq``, ``pmu_irq`` with ``pending``, ``squeezed``, ``guest_counters_loaded``,
``guest_counters_saved``) and the hooks added for it (``el2_begin``/``el2_end`` around EL2
work retired on a PE, ``pe_count`` for each block of work the PE counts,
``guest_access_begin``/``guest_access`` around each guest register access, ``guest_retire``
for work a guest program retires; ``fast_forward`` when the engine extrapolates).  The
invariants are in :mod:`pmupart.check.invariants`, the ledger in :mod:`pmupart.check.ledger`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pmupart.check.invariants import ALL_INVARIANTS as _BASE_INVARIANTS
from pmupart.check.invariants import Invariant, InvariantViolation
from pmupart.check.invariants_guest import GUEST_INVARIANTS
from pmupart.check.ledger import Ledger

#: Every invariant: the core set and the guest-rights set (invariants_guest, issue 9).
ALL_INVARIANTS: tuple[type[Invariant], ...] = (*_BASE_INVARIANTS, *GUEST_INVARIANTS)

if TYPE_CHECKING:
    from pmupart.arch.pe import PE
    from pmupart.host.kernel import HostKernel
    from pmupart.kvm.kvm import VCPU
    from pmupart.machine import Machine
    from pmupart.sim.session import RunResult


class Checker:
    """Watches a run, keeps the ledger, checks the invariants.

    ``max_reports`` bounds the violations kept per rule (all are counted);
    the tolerances say how close host counts must be to the ledger: exact-running events
    within ``host_exact_tol`` (relative) + ``host_slack`` (absolute, EL2 work retired at the
    next flush may land on either side of a boundary), multiplexed ones within
    ``host_mux_tol`` (perf's own scaling error); guests may count ``guest_slack`` more.
    Where the engine fast-forwarded steady periods (``fast_forward`` events: counts
    extrapolated, not simulated), counts are compared with the ledger within ``ff_tol``.
    """

    def __init__(self, invariants: Sequence[type[Invariant]] = ALL_INVARIANTS, *,
                 keep_blocks: bool = False, max_reports: int = 200,
                 host_exact_tol: float = 0.001, host_mux_tol: float = 0.10,
                 host_slack: int = 200_000, guest_slack: int = 0,
                 ff_tol: float = 0.005) -> None:
        self.ledger = Ledger(keep_blocks=keep_blocks)
        self.machine: Machine | None = None
        self.invariants: list[Invariant] = [cls(self) for cls in invariants]
        self.violations: list[InvariantViolation] = []
        self.counts: Counter[str] = Counter()  #: violations per rule (including unkept)
        self.notes: list[str] = []
        self.max_reports = max_reports
        self.host_exact_tol = host_exact_tol
        self.host_mux_tol = host_mux_tol
        self.host_slack = host_slack
        self.guest_slack = guest_slack
        self.duration_ns = 0
        self.finished = False
        self._seen: set[tuple[Any, ...]] = set()
        self._vcpus: dict[str, VCPU] = {}
        self._current: dict[int, str] = {}  #: cpu -> the context running there
        self._guest_ctx: set[str] = set()
        self._el2_flushed: dict[int, int] = {}  #: cpu -> EL2 cycles seen retired (el2_end)
        #: contexts and CPUs the engine fast-forwarded (extrapolated: checked within ff_tol)
        self.ff_contexts: set[str] = set()
        self.ff_cpus: set[int] = set()
        self.ff_tol = ff_tol
        self._dispatch: dict[str, list[Invariant]] = {}
        for inv in self.invariants:
            for kind in inv.events:
                self._dispatch.setdefault(kind, []).append(inv)
        #: the callable passed to ``run_scenario(listeners=[...])``: ``(kind, data) -> None``
        self.listener: Callable[[str, dict[str, Any]], None] = self._listen

    # ------------------------------------------------------------------ wiring
    def attach(self, machine: Machine) -> None:
        """Listen to ``machine``'s host and KVM events directly (runs without the engine)."""
        self.machine = machine
        machine.host.listeners.append(self.listener)

    def _listen(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "start":
            self.machine = data["machine"]
            for hc in self.machine.host.cpus:
                self._el2_flushed[hc.id] = hc.el2_cycles - getattr(hc, "pending_el2", 0)
            for ctx in data.get("contexts", ()):
                if ctx.vcpu is not None:
                    self._guest_ctx.add(ctx.name)
                    self._vcpus[ctx.vcpu.name] = ctx.vcpu
        elif self.machine is None:
            return
        self._ledger(kind, data)
        for inv in self._dispatch.get(kind, ()):
            inv.on_event(kind, data)
        if kind == "vcpu_put":  # a new episode: report again what happens after the put
            name = data.get("vcpu")
            self._seen = {k for k in self._seen if k[2] != name}

    def _ledger(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "retire":
            cpu = int(data["cpu"])
            who = str(data["ctx"])
            self.ledger.record(int(data["t"]), cpu, int(data["el"]), who,
                               who in self._guest_ctx, data["events"])
        elif kind == "guest_retire":
            self.ledger.record(int(data["t"]), int(data["cpu"]), int(data["el"]),
                               str(data["vcpu"]), True, data["events"])
        elif kind == "el2_end":
            cpu = int(data["cpu"])
            self._el2_flushed[cpu] = self._el2_flushed.get(cpu, 0) + int(data["cycles"])
            self.ledger.record_el2(self.host.cpus[cpu].now_ns, cpu, int(data["cycles"]),
                                   int(data["inst"]), str(data["party"]),
                                   self._current.get(cpu))
        elif kind == "fast_forward":
            # The engine skipped steady periods: the work is in the "retire" it emitted; the
            # EL2 work it extrapolated is what the CPU's EL2 total grew by unseen.
            cpu = int(data["cpu"])
            hc = self.host.cpus[cpu]
            self.ff_cpus.add(cpu)
            self.ff_contexts.add(str(data["ctx"]))
            done = hc.el2_cycles - getattr(hc, "pending_el2", 0)
            skipped = done - self._el2_flushed.get(cpu, 0)
            if skipped > 0:
                self._el2_flushed[cpu] = done
                self.ledger.record_el2(hc.now_ns, cpu, skipped,
                                       max(1, int(skipped / hc.core.cpi)), hc.party,
                                       self._current.get(cpu))
        elif kind == "switch_in":
            self._current[int(data["cpu"])] = str(data["ctx"])
        elif kind == "switch_out":
            self._current.pop(int(data["cpu"]), None)
        elif kind == "vcpu_load":
            self._current[int(data["cpu"])] = str(data["vcpu"])
        elif kind == "vcpu_put":
            self._current.pop(int(data["cpu"]), None)
        elif kind == "end":
            self.duration_ns = int(data.get("t", 0))

    # ------------------------------------------------------------------ lookups
    @property
    def host(self) -> HostKernel:
        assert self.machine is not None, "the checker has not seen a machine yet"
        return self.machine.host

    def pe(self, cpu: int) -> PE:
        return self.host.cpus[cpu].pe

    def vcpu(self, name: str | None) -> VCPU | None:
        if name is None:
            return None
        v = self._vcpus.get(name)
        if v is None and self.machine is not None:
            for vm in self.machine.kvm.vms:
                for vc in vm.vcpus:
                    self._vcpus[vc.name] = vc
            v = self._vcpus.get(name)
        return v

    def loaded(self, cpu: int) -> VCPU | None:
        v = self.host.cpus[cpu].loaded_vcpu
        name = getattr(v, "name", None)
        return self.vcpu(name) if isinstance(name, str) else None

    def in_hw(self, vcpu: VCPU, cpu: int) -> bool:
        """The vCPU's counters are in this CPU's hardware (partitioned, loaded)."""
        pmu = vcpu.pmu
        return pmu is not None and getattr(pmu, "hw_cpu", None) == cpu

    def share(self, vcpu: VCPU, cpu: int) -> int:
        """The counters the guest may use: its ``nr`` general counters and the cycle counter;
        in hardware also only those this CPU's PMU sets aside for guests."""
        pmu = vcpu.pmu
        if pmu is None:
            return 0
        impl = pmu.implemented_mask()
        if not self.in_hw(vcpu, cpu):
            return impl
        pe = self.pe(cpu)
        hw_impl = ((1 << pe.num_counters) - 1) | (1 << 31)
        return impl & self.host.pmu_of_cpu(cpu).guest_mask() & hw_impl

    # ------------------------------------------------------------------ reporting
    def report(self, inv: Invariant, cpu: int | None, vcpu: str | None, message: str,
               key: tuple[Any, ...] | None, values: dict[str, Any]) -> None:
        """Record a violation (once per ``key`` until the vCPU is next loaded or put)."""
        if key is not None:
            k = (inv.name, cpu, vcpu, *key)
            if k in self._seen:
                return
            self._seen.add(k)
        self.counts[inv.name] += 1
        if self.counts[inv.name] > self.max_reports:
            return
        t = self.host.cpus[cpu].now_ns if cpu is not None and self.machine is not None \
            else self.duration_ns
        self.violations.append(InvariantViolation(inv.name, t, cpu, vcpu, message, values,
                                                  inv.source))

    def note(self, text: str) -> None:
        """A documented exception or a loss worth knowing (not a violation)."""
        if text not in self.notes:
            self.notes.append(text)

    def check_state(self) -> None:
        """Check every state invariant now (for stateful tests between steps)."""
        for inv in self.invariants:
            inv.check_state()

    def finish(self, result: RunResult | None = None) -> None:
        """The end-of-run checks (host counts and guest counts against the ledger)."""
        if self.finished:
            return
        self.finished = True
        if result is not None:
            self.machine = result.machine
            self.duration_ns = result.spec.duration_ns
        elif self.machine is not None and not self.duration_ns:
            self.duration_ns = max(hc.now_ns for hc in self.machine.host.cpus)
        if self.machine is None:
            return
        self.machine.host.flush_all()
        self.check_state()
        for inv in self.invariants:
            inv.finish(result)
        self.violations.sort(key=lambda v: (v.t_ns, v.cpu if v.cpu is not None else -1))

    # ------------------------------------------------------------------ results
    @property
    def ok(self) -> bool:
        return not self.counts

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def verdict(self) -> str:
        """One line: ``verdict: OK — 8 invariants held over 1.000 s (0 violations)`` or
        ``verdict: 3 violations of 2 invariants (first: ...)``."""
        secs = self.duration_ns / 1e9
        if self.ok:
            return (f"verdict: OK — {len(self.invariants)} invariants held over {secs:.3f} s "
                    f"(0 violations)")
        first = self.violations[0].details() if self.violations else "?"
        n = self.total
        return (f"verdict: {n} violation{'s' if n != 1 else ''} of {len(self.counts)} "
                f"invariant{'s' if len(self.counts) != 1 else ''} (first: {first})")

    def render(self, notes: bool = True) -> str:
        """The violations, one per line, then counts per rule and the notes."""
        lines = [v.details() for v in self.violations]
        by_name = {inv.name: inv for inv in self.invariants}
        for name, n in sorted(self.counts.items()):
            kept = sum(1 for v in self.violations if v.rule == name)
            more = f", {n - kept} more not listed" if n > kept else ""
            inv = by_name[name]
            lines.append(f"{name}: {n} violation{'s' if n != 1 else ''}{more}: {inv.rule} "
                         f"({inv.source})")
        if notes:
            lines += [f"note: {t}" for t in self.notes]
        lines.append(self.verdict())
        return "\n".join(lines) + "\n"


__all__ = ["Checker", "Invariant", "InvariantViolation", "Ledger"]
