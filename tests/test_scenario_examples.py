"""Every scenario in examples/ loads, says what it shows, runs, and runs the same twice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pmupart.kvm.options import HpmnSource
from pmupart.scenario import load_scenario
from pmupart.sim import RunResult, run_scenario

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
