"""``HostKernel.resched`` plans a ``ctx_resched`` on masks and touches only the events whose
counter changes: the outcome must be the full reschedule's (every event out, then in), to the
register, the count, the enabled/running time and the EL2 charge (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest

from pmupart import Machine
from pmupart.host import PerfEventAttr
from pmupart.host.topology import Topology

INST, CYC, MEM, BR, L1D, L1DR, BRM, L1I = 0x08, 0x11, 0x13, 0x12, 0x04, 0x03, 0x10, 0x14


def _machine() -> Machine:
    topo = Topology.from_mapping({"name": "t", "cluster": [
        {"core": "cortex-a720", "count": 1, "num_counters": 4}]})
    return Machine.from_topology(topo)


def _state(m: Machine) -> tuple[Any, ...]:
    h = m.host
    hc = h.cpus[0]
    evs = tuple((e.id, e.state.value, e.hw_idx, e.count, e.prev_hw, e.period_left,
                 e.time_enabled, e.time_running) for e in h.events)
    return (hc.pe.snapshot(), hc.now_ns, hc.el2_cycles, dict(h.stats.el2_cycles),
            hc.ctx.rotate_necessary, hc.next_rotation_ns, evs)


def _scenario(m: Machine, full: bool, steps: list[str]) -> None:
    h = m.host
    typ = h.pmu_of_cpu(0).type
    per = {CYC: 300_000, INST: 500_000, MEM: 200_000, BR: 100_000, L1D: 190_000,
           L1DR: 7_000, BRM: 3_000, L1I: 250_000}
    if full:  # the reschedule as Linux writes it, without the plan
        h.resched = lambda cpu: (h.sched_out(cpu), h.sched_in(cpu))  # type: ignore[method-assign,assignment]
    evs = []
    for step in steps:
        kind, _, arg = step.partition(":")
        if kind == "open":
            cfg, _, flags = arg.partition("/")
            evs.append(h.perf_event_open(PerfEventAttr(
                type=typ, config=int(cfg, 16), pinned="p" in flags,
                sample_period=50_000 if "s" in flags else 0,
                disabled="d" in flags), cpu=0, charge_cpu=0))
        elif kind == "close":
            h.perf_event_release(evs[int(arg)], charge_cpu=0)
        elif kind == "disable":
            h.perf_event_disable(evs[int(arg)], charge_cpu=0)
        elif kind == "enable":
            h.perf_event_enable(evs[int(arg)], charge_cpu=0)
        elif kind == "work":
            for _ in range(int(arg)):
                h.retire(0, 0, per)


SCRIPTS = {
    "fits": ["open:11", "open:8", "work:3", "open:13", "work:3", "open:12/s", "work:5"],
    "multiplexed": ["open:11", "open:8", "open:13", "open:12", "open:4", "open:3", "work:50",
                    "open:10/s", "work:50", "close:2", "work:20", "open:14/p", "work:20"],
    "disabled-created": ["open:8", "open:13/s", "work:5", "open:12/d", "open:4/d", "work:5",
                         "enable:2", "work:5", "disable:0", "open:3", "work:5",
                         "enable:0", "work:5"],
    "sampling-overflows": ["open:11/s", "open:8/s", "open:13/s", "work:30", "open:12/s",
                           "work:30", "close:1", "open:4/s", "work:30"],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_planned_resched_is_the_full_one(name: str) -> None:
    planned, full = _machine(), _machine()
    _scenario(planned, False, SCRIPTS[name])
    _scenario(full, True, SCRIPTS[name])
    assert _state(planned) == _state(full)
