"""Build a machine and its guests from a :class:`ScenarioSpec`, run it, collect the results.

The VMM part follows what QEMU/crosvm do with the vCPU PMU attributes (spec style §2.4-§2.5):
SET_PMU, FILTER, SET_NR_COUNTERS, the series' ENABLE_PARTITION, then IRQ and INIT.  Host
perf sessions are ``perf stat -a`` (one event per CPU and per core PMU, as perf opens them
on a heterogeneous host) or ``perf stat -p`` (task events), counting or sampling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pmupart.arch.events import event_name
from pmupart.arch.policy import Policies
from pmupart.host.kernel import HostCosts, HostKernel
from pmupart.host.perf_event import PerfEvent, PerfEventAttr, Task
from pmupart.host.topology import Topology, load_topology
from pmupart.kvm import uapi
from pmupart.kvm.kvm import VM
from pmupart.kvm.options import KvmCosts
from pmupart.kvm.revision import Revision
from pmupart.machine import Machine
from pmupart.sim.engine import Context, Engine
from pmupart.sim.guest_perf import GuestEventResult, GuestPmuDriver
from pmupart.sim.spec import PerfMode, PerfSession, ScenarioSpec, Workload

_IDLE = Workload("idle")


@dataclass
class HostEventResult:
    """One host event over the CPUs (or tasks) of one PMU (a ``perf stat`` row); ``count``
    and the times are raw sums, ``readings`` the per-CPU ones perf scales one by one."""

    event: str
    pmu: str
    count: int
    time_enabled: int
    time_running: int
    samples: int
    readings: list[tuple[int, int, int, int | None]] = field(default_factory=list)

    @property
    def scaled(self) -> int | None:
        """What perf prints: each reading scaled by enabled/running, then summed; None
        (``<not counted>``) if a per-CPU reading never ran."""
        tot = 0
        for c, e, r, cpu in self.readings:
            if r == 0 or e == 0:
                if cpu is not None:
                    return None
                continue
            tot += c if r >= e else c * e // r
        return tot


@dataclass
class VmResult:
    name: str
    backend: str
    events: list[GuestEventResult]
    failed: list[str]
    vcpu_stats: list[Any]


@dataclass
class RunResult:
    """Everything a report needs from one run."""

    spec: ScenarioSpec
    machine: Machine
    engine: Engine
    vms: list[VmResult]
    host: list[tuple[PerfSession, list[HostEventResult]]]
    wall_s: float
    contexts: list[Context] = field(default_factory=list)

    @property
    def sim_ns(self) -> int:
        return self.spec.duration_ns


def build_machine(spec: ScenarioSpec) -> Machine:
    topo: Topology = load_topology(spec.machine)
    o = dict(spec.machine_options)
    kvm_options = o.pop("kvm_options", None) or Revision()
    kvm_costs = o.pop("kvm_costs", None) or KvmCosts()
    host_costs = o.pop("host_costs", None) or HostCosts()
    policies = o.pop("policies", None) or Policies()
    return Machine.from_topology(topo, kvm_options=kvm_options, kvm_costs=kvm_costs,
                                 host_costs=host_costs, policies=policies, **o)


def _pmu_type(m: Machine, sel: str | int) -> int:
    if isinstance(sel, int):
        return sel
    for p in m.host.pmus:
        if p.name == sel:
            return p.type
    names = ", ".join(p.name for p in m.host.pmus)
    raise ValueError(f"set_pmu names PMU {sel!r}, but this machine has: {names}")


def setup_vm(m: Machine, vs: Any) -> VM:
    """What a VMM does: create the VM and its vCPUs, then the PMU attributes in the order
    QEMU's partitioning RFC uses (SET_PMU, FILTER, SET_NR_COUNTERS, ENABLE_PARTITION, IRQ,
    INIT).  Errors are the kernel's (``KvmError``)."""
    vm = m.kvm.create_vm(irqchip=vs.irqchip, name=vs.name)
    g = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
    for _ in range(vs.vcpus):
        v = vm.create_vcpu(pmu=vs.pmu, init_cpu=getattr(vs, "init_cpu", 0),
                           strict=getattr(vs, "pmu_strict", False))
        if not vs.pmu:
            continue
        if vs.set_pmu is not None:
            v.set_device_attr(g, uapi.KVM_ARM_VCPU_PMU_V3_SET_PMU, _pmu_type(m, vs.set_pmu))
        for f in vs.filters:
            act = uapi.KVM_PMU_EVENT_ALLOW if f.action == "allow" else uapi.KVM_PMU_EVENT_DENY
            v.set_device_attr(g, uapi.KVM_ARM_VCPU_PMU_V3_FILTER,
                              uapi.KvmPmuEventFilter(f.base_event, f.nevents, act))
        if vs.partition:
            v.set_device_attr(g, m.kvm.options.enable_partition_attr, 1)
        if vs.nr_counters is not None:
            v.set_device_attr(g, uapi.KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS, vs.nr_counters)
        if vs.irqchip:
            v.set_device_attr(g, uapi.KVM_ARM_VCPU_PMU_V3_IRQ, vs.irq)
        v.set_device_attr(g, uapi.KVM_ARM_VCPU_PMU_V3_INIT, None)
    return vm


class HostPerfSession:
    """A host ``perf stat``/``perf record`` session: its events and their results."""

    def __init__(self, host: HostKernel, session: PerfSession, tasks: dict[str, list[Task]]):
        self.session = session
        self.events: list[tuple[int, str, PerfEvent]] = []
        s = session
        for pmu in host.pmus:
            for ev in s.events:
                attr_kw: dict[str, Any] = dict(
                    type=pmu.type, config=ev, exclude_user=s.exclude_user,
                    exclude_kernel=s.exclude_kernel, exclude_guest=s.exclude_guest,
                    exclude_host=s.exclude_host, pinned=s.pinned)
                if s.mode is PerfMode.RECORD:
                    per = s.period or max(1, pmu.core.freq_mhz * 10**6 // max(1, s.freq))
                    attr_kw["sample_period"] = per
                attr = PerfEventAttr(**attr_kw)
                handler = self._sample_handler(host) if s.mode is PerfMode.RECORD else None
                if s.scope == "system":
                    for c in pmu.cpus:
                        e = host.perf_event_open(attr, cpu=c, overflow_handler=handler,
                                                 owner="host:perf")
                        self.events.append((ev, pmu.name, e))
                else:
                    name = s.scope.split(":", 1)[1]
                    for t in tasks.get(name, []):
                        e = host.perf_event_open(attr, task=t, overflow_handler=handler,
                                                 owner=f"host:perf:{name}")
                        self.events.append((ev, pmu.name, e))

    @staticmethod
    def _sample_handler(host: HostKernel) -> Callable[[PerfEvent], None]:
        def on_sample(ev: PerfEvent) -> None:
            cpu = ev.cpu if ev.cpu != -1 else (ev.task.cpu if ev.task else None)
            if cpu is not None:
                host.charge(cpu, host.costs.perf_sample, "perf_sample")
        return on_sample

    def results(self, host: HostKernel) -> list[HostEventResult]:
        rows: dict[tuple[int, str], HostEventResult] = {}
        for ev, pmu, e in self.events:
            count, ena, run = host.perf_event_read(e)
            key = (ev, pmu)
            r = rows.get(key)
            name = event_name(ev).lower()
            reading = (count, ena, run, e.cpu if e.cpu != -1 else None)
            if r is None:
                rows[key] = HostEventResult(name, pmu, count, ena, run, e.nr_samples,
                                            [reading])
            else:
                r.readings.append(reading)
                r.count += count
                r.time_enabled += ena
                r.time_running += run
                r.samples += e.nr_samples
        return list(rows.values())


def run_scenario(spec: ScenarioSpec, *, progress: Callable[[int], None] | None = None,
                 listeners: list[Callable[[str, dict[str, Any]], None]] | None = None,
                 fast_forward: bool = True) -> RunResult:
    """Build, run, collect.  Deterministic for a given spec (seed included)."""
    t0 = time.perf_counter()
    m = build_machine(spec)
    wl = dict(spec.workloads)
    wl.setdefault("idle", _IDLE)
    contexts: list[Context] = []
    all_cpus = tuple(m.topology.cpus)
    tasks: dict[str, list[Task]] = {}
    pid = 100
    for ts in spec.host_tasks:
        for k in range(ts.count):
            name = ts.name if ts.count == 1 else f"{ts.name}.{k}"
            t = Task(name, pid)
            pid += 1
            tasks.setdefault(ts.name, []).append(t)
            contexts.append(Context(name, _workload(wl, ts.workload, name),
                                    ts.affinity or all_cpus, task=t))
    vms: list[tuple[VM, Any, list[Context]]] = []
    for vs in spec.vms:
        vm = setup_vm(m, vs)
        ctxs = []
        for i, v in enumerate(vm.vcpus):
            aff = vs.vcpu_affinity[i] if i < len(vs.vcpu_affinity) else \
                (vs.affinity or all_cpus)
            c = Context(v.name, _workload(wl, vs.workload, vs.name), aff, vcpu=v, task=v.task)
            if vs.perf is not None and vs.pmu:
                c.driver = GuestPmuDriver(vs.perf, ctx_switch_hz=c.workload.ctx_switch_hz,
                                          tick_hz=max(1, 10**9 // spec.guest_tick_ns),
                                          max_sample_rate=spec.perf_event_max_sample_rate)
            if vs.program is not None:
                c.program = load_program(vs.program)
            ctxs.append(c)
            contexts.append(c)
        vms.append((vm, vs, ctxs))
    host_sessions = [HostPerfSession(m.host, s, tasks) for s in spec.host_perf]
    eng = Engine(m, contexts, spec.duration_ns, slice_ns=spec.slice_ns,
                 guest_tick_ns=spec.guest_tick_ns, migration=spec.migration, seed=spec.seed,
                 fast_forward=fast_forward)
    if listeners:
        eng.listeners.extend(listeners)
    eng.emit("start", machine=m, engine=eng, spec=spec, contexts=contexts)
    eng.run(progress=progress)
    eng.emit("end", machine=m, engine=eng, t=spec.duration_ns)
    vm_results = []
    for vm, vs, ctxs in vms:
        merged: list[GuestEventResult] = []
        for c in ctxs:
            if c.driver is None:
                continue
            for j, r in enumerate(c.driver.results()):
                if j >= len(merged):
                    merged.append(GuestEventResult(r.event, r.count, r.time_enabled,
                                                   r.time_running, r.supported, r.samples))
                else:
                    a = merged[j]
                    a.count += r.count
                    a.time_enabled += r.time_enabled
                    a.time_running += r.time_running
                    a.samples += r.samples
        backend = "partitioned" if vs.partition else ("emulated" if vs.pmu else "none")
        vm_results.append(VmResult(vm.name, backend, merged,
                                   [c.failed for c in ctxs if c.failed],
                                   [v.stats for v in vm.vcpus]))
    host_results = [(s.session, s.results(m.host)) for s in host_sessions]
    return RunResult(spec, m, eng, vm_results, host_results, time.perf_counter() - t0,
                     contexts)


def load_program(ref: str) -> Callable[[Any], object]:
    """A guest program from a scenario: an AArch64 assembly file (``*.S``) or ELF image
    (``*.elf``), run under unicorn, or a Python ``module:function``."""
    if ref.endswith((".S", ".s", ".elf")):
        from pmupart.guest.aarch64 import AArch64Program
        return AArch64Program.from_file(ref)
    import importlib

    mod, _, attr = ref.partition(":")
    fn = getattr(importlib.import_module(mod), attr)
    if not callable(fn):
        raise ValueError(f"guest program {ref!r} is not callable")
    return fn  # type: ignore[no-any-return]


def _workload(wl: dict[str, Workload], name: str, who: str) -> Workload:
    w = wl.get(name)
    if w is None:
        raise ValueError(f"{who}: workload {name!r} is not defined; defined: "
                         f"{', '.join(sorted(wl))}")
    return w

