"""Every scenario in examples/ loads, says what it shows, runs, and runs the same twice."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from pmupart.kvm.options import HpmnSource
from pmupart.scenario import load_scenario
from pmupart.sim import HostEventResult, RunResult, VmResult, run_scenario

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FILES = sorted(EXAMPLES.glob("*.toml"))
SHORT = 'scenario.duration="10ms"'


def _summary(r: RunResult) -> list[object]:
    out: list[object] = []
    for v in r.vms:
        out.append((v.name, v.backend, v.failed,
                    [(e.event, e.count, e.time_enabled, e.time_running, e.samples)
                     for e in v.events]))
    for _, rows in r.host:
        out.append([(h.event, h.pmu, h.count, h.time_enabled, h.time_running) for h in rows])
    s = r.machine.stats
    out.append((sorted(s.exits.items()), sorted(s.traps.items()), s.el2_cycles))
    return out


def test_the_issue_examples_exist() -> None:
    names = {p.stem for p in FILES}
    assert {"hetero-migration", "hetero-migration-v1", "subset-counters", "cycle-counter-only",
            "cycle-counter-only-no-hpmn0", "shared-6-counters",
            "cover-letter-record"} <= names


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_example_loads_documents_itself_and_runs(path: Path) -> None:
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# "), f"{path.name} must start with a comment saying what it shows"
    assert "What to look for" in text or "what to look for" in text
    spec = load_scenario(path)
    assert spec.name == path.stem
    assert 0 < spec.duration_ns <= 1_000_000_000
    short = load_scenario(path, overrides=[SHORT])
    assert short.duration_ns == 10_000_000
    r = run_scenario(short)
    assert r.vms, "every example has a guest"
    assert any(e.count > 0 for v in r.vms for e in v.events)


def test_hetero_migration_v1_is_the_override() -> None:
    base = load_scenario(EXAMPLES / "hetero-migration.toml",
                         overrides=["kvm.hpmn_source=vm-pmu"])
    v1 = load_scenario(EXAMPLES / "hetero-migration-v1.toml")
    assert v1.machine_options["kvm_options"].hpmn_source is HpmnSource.VM_PMU
    same = dataclasses.replace(base, name=v1.name, description=v1.description,
                               source=v1.source)
    assert same == v1


def test_example_is_deterministic() -> None:
    path = EXAMPLES / "hetero-migration.toml"
    a = run_scenario(load_scenario(path, overrides=['scenario.duration="30ms"']))
    b = run_scenario(load_scenario(path, overrides=['scenario.duration="30ms"']))
    assert _summary(a) == _summary(b)
    c = run_scenario(load_scenario(path, overrides=['scenario.duration="30ms"',
                                                   "migration.policy=random",
                                                   "scenario.seed=7"]))
    d = run_scenario(load_scenario(path, overrides=['scenario.duration="30ms"',
                                                   "migration.policy=random",
                                                   "scenario.seed=7"]))
    assert _summary(c) == _summary(d)


# ---------------------------------------------------------------------- what the comments claim
def _run(name: str, *overrides: str) -> RunResult:
    return run_scenario(load_scenario(EXAMPLES / f"{name}.toml", overrides=list(overrides)))


def _vm(r: RunResult, name: str) -> VmResult:
    return next(v for v in r.vms if v.name == name)


def _exits(v: VmResult) -> int:
    """Exits the vPMU causes: all but the guest tick's timer exits (the same on every
    backend)."""
    return sum(n for s in v.vcpu_stats for k, n in s.exits.items() if k != "vtimer")


def _el2(v: VmResult) -> int:
    return sum(s.el2_cycles for s in v.vcpu_stats)


def _host(r: RunResult, event: str, pmu: str) -> HostEventResult:
    return next(h for _, rows in r.host for h in rows if h.event == event and h.pmu == pmu)


def test_claims_hetero_migration() -> None:
    d = 'scenario.duration="100ms"'
    per_cpu, v1 = _run("hetero-migration", d), _run("hetero-migration-v1", d)
    g_per_cpu = _vm(per_cpu, "vm0").events[0]
    g_v1 = _vm(v1, "vm0").events[0]
    assert g_per_cpu.event == "cpu_cycles" and g_per_cpu.count < 0.8 * g_v1.count
    little_per_cpu = _host(per_cpu, "cpu_cycles", "armv9_cortex_a520").count
    little_v1 = _host(v1, "cpu_cycles", "armv9_cortex_a520").count
    # the host is idle: with the v1 rule its A520 counters count the guest's work
    assert little_per_cpu < 10**6 < 2 * 2_000 * 10**6 * 0.1 < little_v1


def test_claims_cycle_counter_only() -> None:
    d = 'scenario.duration="40ms"'
    hpmn0, none = _run("cycle-counter-only", d), _run("cycle-counter-only-no-hpmn0", d)
    for r in (hpmn0, none):
        cyc, inst = _vm(r, "vm0").events
        assert cyc.count > 0 and inst.count == 0 and inst.time_running == 0
    t_hpmn0 = sum((s.traps for s in _vm(hpmn0, "vm0").vcpu_stats), Counter[str]())
    t_none = sum((s.traps for s in _vm(none, "vm0").vcpu_stats), Counter[str]())
    assert t_hpmn0["PMCCNTR_EL0"] == 0 < t_none["PMCCNTR_EL0"]
    assert 3 * _exits(_vm(hpmn0, "vm0")) < _exits(_vm(none, "vm0"))
    for _, rows in hpmn0.host:
        assert all(h.time_running == h.time_enabled or
                   h.time_running > 0.99 * h.time_enabled for h in rows)


def test_claims_subset_counters() -> None:
    r = _run("subset-counters", 'scenario.duration="40ms"')
    assert all(e.time_running == e.time_enabled for e in _vm(r, "vm-full").events)
    assert all(0 < e.time_running < 0.7 * e.time_enabled for e in _vm(r, "vm-subset").events)


def test_claims_shared_6_counters() -> None:
    r = _run("shared-6-counters", 'scenario.duration="40ms"')
    assert all(e.time_running == e.time_enabled for e in _vm(r, "vm0").events)
    l1i = _host(r, "l1i_cache", "armv9_cortex_a720")
    assert l1i.time_running < 0.9 * l1i.time_enabled


def test_claims_cover_letter_record() -> None:
    r = _run("cover-letter-record", 'scenario.duration="20ms"')
    emu, part = _vm(r, "emulated"), _vm(r, "partitioned")
    assert emu.backend == "emulated" and part.backend == "partitioned"
    assert all(e.samples > 0 for e in part.events[:2])
    assert _exits(emu) > 2 * _exits(part)
    assert _el2(emu) > 2 * _el2(part)
    created = [sum(s.perf_events_created for s in v.vcpu_stats) for v in (emu, part)]
    assert created[0] > 100 and created[1] == 0
