"""Write a :class:`~pmupart.sim.spec.ScenarioSpec` back as scenario TOML.

``load_scenario_text(dump_scenario(spec))`` gives back an equal spec (apart from ``source``):
reports can print the exact scenario they ran (after ``--set`` overrides), and a scenario
built in Python can be saved as a file.  Keys at their defaults are left out, except the
ones a reader looks for first (duration, seed, the machine, each VM's partition flag).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from pmupart.arch.cores import CORES
from pmupart.arch.events import event_name
from pmupart.arch.policy import Policies
from pmupart.host.kernel import HostCosts
from pmupart.host.topology import DEFAULT_PMU_TYPE_BASE, PRESETS, Topology, cpulist, load_topology
from pmupart.kvm.options import KvmCosts
from pmupart.kvm.revision import DEFAULT_REVISION, Revision
from pmupart.scenario.loader import format_duration
from pmupart.sim.spec import PerfMode, PerfSession, ScenarioSpec, Workload

__all__ = ["dump_scenario"]


def _v(x: Any) -> str:
    """A TOML value."""
    if isinstance(x, Enum):
        x = x.value
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        r = repr(x)
        return r if any(c in r for c in ".eni") else r + ".0"
    if isinstance(x, str):
        return json.dumps(x, ensure_ascii=False)
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_v(i) for i in x) + "]"
    if isinstance(x, Mapping):
        return "{ " + ", ".join(f"{_k(k)} = {_v(v)}" for k, v in x.items()) + " }" if x else "{}"
    raise TypeError(f"cannot write {x!r} as TOML")


def _k(key: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise."""
    if key and all((c.isalnum() and c.isascii()) or c in "_-" for c in key):
        return key
    return json.dumps(key, ensure_ascii=False)


def _changed(obj: Any, default: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if getattr(obj, f.name) != getattr(default, f.name)}


def _ev(n: int) -> str:
    return event_name(n)


def _topology(machine: Any) -> Topology:
    return machine if isinstance(machine, Topology) else load_topology(machine)


def _machine(spec: ScenarioSpec) -> list[str]:
    out = ["[machine]"]
    topo = _topology(spec.machine)
    preset = PRESETS.get(topo.name)
    custom = preset is None or preset != topo
    if not custom:
        out.append(f"preset = {_v(topo.name)}")
    else:
        out.append(f"name = {_v(topo.name)}")
        if topo.firmware != "dt":
            out.append(f"firmware = {_v(topo.firmware)}")
        if topo.pmu_type_base != DEFAULT_PMU_TYPE_BASE:
            out.append(f"pmu_type_base = {topo.pmu_type_base}")
        if topo.pmu_order:
            out.append(f"pmu_order = {_v(list(topo.pmu_order))}")
    o = spec.machine_options
    defaults: dict[str, Any] = {"reserved_host_counters": -1, "reservation": "dynamic",
                                "alloc_order": "high-to-low", "mux_interval_ms": 4}
    for key, default in defaults.items():
        val = o.get(key, default)
        val = val.value if isinstance(val, Enum) else val
        if key == "reserved_host_counters" or val != default:
            if key == "mux_interval_ms":
                out.append(f"mux_interval = {_v(format_duration(int(val) * 1_000_000))}")
            else:
                out.append(f"{key} = {_v(val)}")
    if custom:
        for cl in topo.clusters:
            out += ["", "[[machine.cluster]]", f"name = {_v(cl.name)}",
                    f"core = {_v(cl.core.name)}", f"cpus = {_v(list(cl.cpus))}"]
            if cl.freq_mhz is not None:
                out.append(f"freq_mhz = {cl.freq_mhz}")
            base = CORES.get(cl.core.name)
            if base is None or base.num_counters != cl.core.num_counters:
                out.append(f"num_counters = {cl.core.num_counters}")
    return out


def _table(header: str, items: Mapping[str, Any]) -> list[str]:
    if not items:
        return []
    return ["", header, *(f"{_k(k)} = {_v(v)}" for k, v in items.items())]


def _rates(rates: Iterable[tuple[int, float]]) -> dict[str, float]:
    return {_ev(n): r for n, r in rates}


def _workload(w: Workload) -> list[str]:
    out = ["", f"[workload.{_k(w.name)}]"]
    if w.instructions is not None:
        out.append(f"instructions = {w.instructions}")
    if w.ctx_switch_hz:
        out.append(f"ctx_switch_hz = {_v(w.ctx_switch_hz)}")
    phases = w.phases
    if len(phases) == 1 and phases[0].duration_ns is None:
        p = phases[0]
        if p.kernel_fraction:
            out.append(f"kernel_fraction = {_v(p.kernel_fraction)}")
        if p.rates:
            out.append(f"rates = {_v(_rates(p.rates))}")
        if p.cpi:
            out.append(f"cpi = {_v(dict(p.cpi))}")
        if p.core_rates:
            out.append(f"core_rates = {_v({c: _rates(r) for c, r in p.core_rates})}")
        return out
    for p in phases:
        out += ["", f"[[workload.{_k(w.name)}.phase]]"]
        if p.duration_ns is not None:
            out.append(f"duration = {_v(format_duration(p.duration_ns))}")
        out.append(f"kernel_fraction = {_v(p.kernel_fraction)}")
        out.append(f"rates = {_v(_rates(p.rates))}")
        out.append(f"cpi = {_v(dict(p.cpi))}")
        if p.core_rates:
            out.append(f"core_rates = {_v({c: _rates(r) for c, r in p.core_rates})}")
    return out


def _perf(p: PerfSession, host: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"mode": p.mode.value, "events": [_ev(e) for e in p.events]}
    if p.mode is PerfMode.RECORD:
        if p.freq:
            d["freq"] = p.freq
        else:
            d["period"] = p.period
    if host:
        d["scope"] = p.scope
    elif p.scope.startswith("task"):
        d["task"] = True
    for k in ("exclude_user", "exclude_kernel", "exclude_guest", "exclude_host", "pinned"):
        if getattr(p, k):
            d[k] = True
    return d


def dump_scenario(spec: ScenarioSpec) -> str:
    """``spec`` as scenario TOML (see ``docs/scenario.md``)."""
    out = ["[scenario]", f"name = {_v(spec.name)}"]
    if spec.description:
        out.append(f"description = {_v(spec.description)}")
    out += [f"duration = {_v(format_duration(spec.duration_ns))}", f"seed = {spec.seed}"]
    if spec.slice_ns != 1_000_000:
        out.append(f"slice = {_v(format_duration(spec.slice_ns))}")
    if spec.guest_tick_ns != 4_000_000:
        out.append(f"guest_tick = {_v(format_duration(spec.guest_tick_ns))}")
    out += ["", *_machine(spec)]
    o = spec.machine_options
    rev: Revision = o.get("kvm_options") or Revision()
    kvm = ({"revision": rev.name} if rev.name != DEFAULT_REVISION else {}) | rev.overrides()
    kvm_costs = _changed(o.get("kvm_costs") or KvmCosts(), KvmCosts())
    if kvm or kvm_costs:
        out += _table("[kvm]", kvm) if kvm else ["", "[kvm]"]
        out += _table("[kvm.costs]", kvm_costs)
    if spec.perf_event_max_sample_rate != 100_000:
        out += ["", "[host]", f"perf_event_max_sample_rate = {spec.perf_event_max_sample_rate}"]
    out += _table("[host.costs]", _changed(o.get("host_costs") or HostCosts(), HostCosts()))
    out += _table("[policies]", _changed(o.get("policies") or Policies(), Policies()))
    for w in spec.workloads.values():
        out += _workload(w)
    for vm in spec.vms:
        out += ["", "[[vm]]", f"name = {_v(vm.name)}"]
        if vm.vcpus != 1:
            out.append(f"vcpus = {vm.vcpus}")
        if not vm.pmu:
            out.append("pmu = false")
        if not vm.irqchip:
            out.append("irqchip = false")
        if vm.irq != 23:
            out.append(f"irq = {vm.irq}")
        out.append(f"partition = {_v(vm.partition)}")
        if vm.set_pmu is not None:
            out.append(f"set_pmu = {_v(vm.set_pmu)}")
        if vm.nr_counters is not None:
            out.append(f"nr_counters = {vm.nr_counters}")
        if vm.affinity is not None:
            out.append(f"affinity = {_v(cpulist(vm.affinity))}")
        if vm.vcpu_affinity:
            out.append(f"vcpu_affinity = {_v([cpulist(a) for a in vm.vcpu_affinity])}")
        if vm.workload != "idle":
            out.append(f"workload = {_v(vm.workload)}")
        if vm.program is not None:
            out.append(f"program = {_v(vm.program)}")
        if vm.init_cpu:
            out.append(f"init_cpu = {vm.init_cpu}")
        if vm.pmu_strict:
            out.append("pmu_strict = true")
        if vm.filters:
            out.append("filter = " + _v([{"action": f.action, "base": _ev(f.base_event),
                                          "nevents": f.nevents} for f in vm.filters]))
        if vm.perf is not None:
            out.append(f"perf = {_v(_perf(vm.perf, host=False))}")
    for t in spec.host_tasks:
        out += ["", "[[host.task]]", f"name = {_v(t.name)}"]
        if t.count != 1:
            out.append(f"count = {t.count}")
        if t.affinity is not None:
            out.append(f"affinity = {_v(cpulist(t.affinity))}")
        if t.workload != "idle":
            out.append(f"workload = {_v(t.workload)}")
    for p in spec.host_perf:
        out += ["", "[[host.perf]]", *(f"{k} = {_v(v)}" for k, v in _perf(p, True).items())]
    m = spec.migration
    out += ["", "[migration]", f"policy = {_v(m.policy.value)}",
            f"interval = {_v(format_duration(m.interval_ns))}"]
    if m.host_tasks:
        out.append("host_tasks = true")
    return "\n".join(out) + "\n"
