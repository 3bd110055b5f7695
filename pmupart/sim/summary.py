"""Turn a :class:`RunResult` into the report layer's plain data (perf-stat reports per VM and
for the host, the overhead tables) and into the text/CSV/JSON ``pmupart run`` prints.

Everything printed here is a function of the scenario and its seed: wall-clock figures go
to stderr, never into the report (DESIGN.md decision 8).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pmupart.host.perf_event import EventState
from pmupart.report.perfstat import (
    CounterResult,
    Reading,
    StatReport,
    Target,
    aggregate,
    format_report,
)
from pmupart.report.tables import (
    GuestWorkRow,
    OverheadReport,
    PartyTime,
    PerfEventCount,
    SqueezedEvent,
    TrapRow,
    format_overhead,
)
from pmupart.sim.session import RunResult
from pmupart.sim.spec import PerfMode

Output = Literal["std", "csv", "json"]


def guest_reports(r: RunResult) -> list[tuple[str, str, StatReport]]:
    """(vm name, backend, the guest's ``perf stat -a`` report) for each VM with a session."""
    out = []
    for vm in r.vms:
        if not vm.events:
            continue
        rows = tuple(CounterResult(e.event, None, e.count, e.time_enabled, e.time_running,
                                   supported=e.supported) for e in vm.events)
        out.append((vm.name, vm.backend,
                    StatReport(Target.system_wide(), rows, r.spec.duration_ns)))
    return out


def host_reports(r: RunResult) -> list[tuple[str, StatReport]]:
    out = []
    for sess, rows in r.host:
        res = tuple(aggregate(h.event, h.pmu, [Reading(c, e, r_, cpu)
                                               for c, e, r_, cpu in h.readings])
                    for h in rows)
        tgt = Target.system_wide() if sess.scope == "system" else \
            Target.pid(sess.scope.split(":", 1)[1])
        mode = "record" if sess.mode is PerfMode.RECORD else "stat"
        label = f"perf {mode} {'-a' if sess.scope == 'system' else sess.scope}"
        out.append((label, StatReport(tgt, res, r.spec.duration_ns)))
    return out


def overhead(r: RunResult) -> OverheadReport:
    """The overhead tables: exits by reason and register, time shares, perf events, squeezed
    host events."""
    traps: list[TrapRow] = []
    times: list[PartyTime] = []
    perf: list[PerfEventCount] = []
    guest_work: list[GuestWorkRow] = []
    host = r.machine.host
    el2_by_party: dict[str, int] = {}
    for (party, _reason), ns in sorted(host.stats.el2_ns.items()):
        el2_by_party[party] = el2_by_party.get(party, 0) + ns
    for vm in r.machine.kvm.vms:
        exits: dict[str, int] = {}
        exit_ns: dict[str, int] = {}
        regs: dict[str, int] = {}
        reg_ns: dict[str, int] = {}
        created = released = 0
        work: dict[str, list[int]] = {}
        for v in vm.vcpus:
            for k, n in v.stats.guest_work.items():
                acc = work.setdefault(k, [0, 0])
                acc[0] += n
                acc[1] += v.stats.guest_work_ns[k]
            for k, n in v.stats.exits.items():
                exits[k] = exits.get(k, 0) + n
            for k, n in v.stats.exit_ns.items():
                exit_ns[k] = exit_ns.get(k, 0) + n
            for k, n in v.stats.traps.items():
                regs[k] = regs.get(k, 0) + n
            for k, n in v.stats.trap_ns.items():
                reg_ns[k] = reg_ns.get(k, 0) + n
            created += v.stats.perf_events_created
            released += v.stats.perf_events_released
        for k in sorted(exits):
            traps.append(TrapRow(vm.name, k, exits[k], exit_ns.get(k, 0)))
        for k in sorted(regs, key=lambda x: (-regs[x], x)):
            traps.append(TrapRow(vm.name, "sysreg", regs[k], reg_ns.get(k, 0), register=k))
        cpu_ns = sum(c.cpu_ns for c in r.contexts if c.vcpu is not None and c.vcpu.vm is vm)
        el2 = el2_by_party.get(vm.name, 0)
        times.append(PartyTime(vm.name, max(0, cpu_ns - el2), el2, 0))
        perf.append(PerfEventCount(vm.name, created, released))
        guest_work += [GuestWorkRow(vm.name, k, n, ns) for k, (n, ns) in sorted(work.items())]
    host_cpu = sum(c.cpu_ns for c in r.contexts if c.vcpu is None)
    host_el2 = el2_by_party.get("host", 0)
    times.append(PartyTime("host", max(0, host_cpu - host_el2), host_el2, 0))
    hc = sum(1 for e in host.events if e.owner.startswith("host"))
    hr = sum(1 for e in host.events if e.owner.startswith("host") and
             e.state is EventState.DEAD)
    perf.append(PerfEventCount("host", hc, hr))
    squeezed: list[SqueezedEvent] = []
    seen: set[int] = set()
    for cpu, e in host.stats.squeezed_events:
        if e.id in seen:
            continue
        seen.add(e.id)
        from pmupart.arch.events import event_name
        squeezed.append(SqueezedEvent(f"{e.pmu.name}/{event_name(e.attr.config).lower()}/",
                                      f"cpu{cpu}", e.time_enabled, e.time_running))
    return OverheadReport(r.spec.duration_ns, tuple(traps), tuple(times), tuple(perf),
                          tuple(squeezed), guest_work=tuple(guest_work))


def _header(r: RunResult) -> list[str]:
    spec = r.spec
    m = r.machine
    topo = m.topology
    clusters = ", ".join(f"{len(c.cpus)}x {c.core.name}" for c in topo.clusters)
    pmu0 = m.host.pmus[0] if m.host.pmus else None
    rhc = pmu0.reserved_host_counters if pmu0 else -1
    res = pmu0.reservation.value if pmu0 else "-"
    o = m.kvm.options
    lines = [f"pmupart run: {spec.name}" + (f" ({spec.source})" if spec.source else "")]
    if spec.description:
        lines.append(spec.description.strip().splitlines()[0])
    lines.append(f"machine: {topo.name}: {clusters}; reserved_host_counters={rhc} ({res})")
    lines.append(f"kvm: revision={o.label()} hpmn={o.hpmn_source.value} swap={o.swap.value} "
                 f"hpmd={'on' if o.set_hpmd else 'OFF'} "
                 f"pmovs-clear-on-load={'on' if o.clear_pmovs_on_load else 'OFF'} "
                 f"filter-at-load={'on' if o.filter_at_load else 'OFF'}")
    lines.append(f"simulated {spec.duration_ns / 1e9:.3f} s, seed {spec.seed}, "
                 f"{r.engine.migrations} migrations")
    return lines


def render(r: RunResult, output: Output = "std", sep: str = ",",
           verdict: str | None = None, flagged: str | None = None) -> str:
    """The whole report of a run.  ``flagged`` (the checker's verdict when it found
    violations) is said before the counts in the standard layout, and is the JSON
    document's ``flagged`` field, so no flagged count is printed without saying so."""
    if output == "json":
        doc = to_json(r, verdict)
        doc["flagged"] = flagged
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"
    parts: list[str] = []
    if output == "std":
        parts.append("\n".join(_header(r)) + "\n")
        if flagged:
            parts.append("!! the invariant checker flagged this run, so counts below may be "
                         "wrong: see the verdict at the end (pmupart check lists each "
                         "violation)\n")
    for name, backend, rep in guest_reports(r):
        vm = next(v for v in r.vms if v.name == name)
        title = f"== {name} ({backend} vPMU): guest perf stat -a =="
        if output == "csv":
            parts.append(f"# {name} ({backend})\n" + format_report(rep, "csv", sep))
        else:
            fails = "".join(f"  !! {f}\n" for f in vm.failed)
            parts.append(title + "\n" + fails + format_report(rep, "std"))
    for label, rep in host_reports(r):
        if output == "csv":
            parts.append(f"# host {label}\n" + format_report(rep, "csv", sep))
        else:
            parts.append(f"== host: {label} ==\n" + format_report(rep, "std"))
    if output == "std":
        parts.append(format_overhead(overhead(r)))
        for w in r.machine.host.stats.warnings[:10]:
            parts.append(f"warning: {w}\n")
        if len(r.machine.host.stats.warnings) > 10:
            parts.append(f"warning: ... {len(r.machine.host.stats.warnings) - 10} more\n")
        if verdict:
            parts.append(verdict + "\n")
    return "\n".join(parts)


def to_json(r: RunResult, verdict: str | None = None) -> dict[str, Any]:
    """The run as one JSON document (each perf report in perf's own ``-j`` rows)."""
    def rows(rep: StatReport) -> list[Any]:
        return [json.loads(line) for line in format_report(rep, "json").splitlines()
                if line.strip()]
    o = overhead(r)
    return {
        "scenario": r.spec.name,
        "seed": r.spec.seed,
        "duration_ns": r.spec.duration_ns,
        "migrations": r.engine.migrations,
        "vms": [{"name": n, "backend": b, "perf_stat": rows(rep),
                 "failed": next(v.failed for v in r.vms if v.name == n)}
                for n, b, rep in guest_reports(r)],
        "host": [{"session": label, "perf_stat": rows(rep)} for label, rep in host_reports(r)],
        "overhead": {
            "traps": [t.__dict__ if hasattr(t, "__dict__") else _dc(t) for t in o.traps],
            "times": [_dc(t) for t in o.times],
            "perf_events": [_dc(p) for p in o.perf_events],
            "squeezed": [_dc(s) for s in o.squeezed],
        },
        "warnings": list(r.machine.host.stats.warnings),
        "verdict": verdict,
    }


def _dc(x: Any) -> dict[str, Any]:
    from dataclasses import asdict
    return asdict(x)
