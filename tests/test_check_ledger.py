"""The ground-truth ledger (issue 5; DESIGN.md "the picture": a ledger keeps the ground truth of
every event): what each context really retired, where and when, and what an ideal, unshared PMU
would have counted for a guest or a host perf event."""

from __future__ import annotations

import re
from typing import Any

from pmupart import Machine
from pmupart.arch.events import event_number as E
from pmupart.check import Checker, Ledger
from pmupart.check.ledger import EL2_WORK
from pmupart.host.perf_event import PerfEventAttr
from pmupart.host.topology import Topology
from pmupart.kvm import uapi
from pmupart.kvm.options import KvmOptions  # the intent design
from pmupart.sim import (
    HostTaskSpec,
    PerfSession,
    Phase,
    ScenarioSpec,
    VmSpec,
    Workload,
    run_scenario,
)

WL = Workload("w", (Phase(rates=Workload.rates_of({"L1D_CACHE": 0.5}), kernel_fraction=0.25),))
EV = tuple(E(x) for x in ("CPU_CYCLES", "INST_RETIRED", "L1D_CACHE"))


def spec(partition: bool) -> ScenarioSpec:
    return ScenarioSpec(
        "ledger", {"name": "m", "cluster": [{"core": "cortex-a720", "count": 2}]},
        duration_ns=8 * 10**6, seed=1,
        machine_options={"kvm_options": KvmOptions(),
                         **({"reserved_host_counters": 2} if partition else {})},
        vms=(VmSpec("vm0", workload="w", perf=PerfSession(EV), partition=partition,
                    affinity=(0,)),),
        host_tasks=(HostTaskSpec("daemon", affinity=(0, 1), workload="w"),),
        host_perf=(PerfSession(EV),), workloads={"w": WL})


def test_ledger_matches_the_engine_ground_truth_and_the_guest_counts() -> None:
    for partition in (False, True):
        ck = Checker(keep_blocks=True)
        r = run_scenario(spec(partition), listeners=[ck.listener])
        ck.finish(r)
        assert ck.ok, ck.render()
        for ctx in r.contexts:
            assert dict(ck.ledger.truth(ctx.name)) == ctx.truth, ctx.name
        vcpu = r.contexts[-1]
        assert vcpu.name == "vm0:vcpu0" and vcpu.driver is not None
        # the guest's own counters saw exactly its work at EL0 + EL1, nothing else
        for res, ev in zip(vcpu.driver.results(), EV, strict=True):
            assert res.count == ck.ledger.ideal_guest("vm0:vcpu0", ev), (partition, res)
        # blocks say where and when, at which EL
        b = [x for x in ck.ledger.blocks if x.who == "vm0:vcpu0"]
        assert {x.el for x in b} == {0, 1} and {x.cpu for x in b} == {0}
        assert all(x.guest for x in b) and b == sorted(b, key=lambda x: x.t_ns)
        assert any(x.who == EL2_WORK and x.el == 2 for x in ck.ledger.blocks)
        assert "vm0:vcpu0: EL0:" in ck.ledger.summary()


def test_ideal_host_follows_the_event_attributes() -> None:
    led = Ledger()
    led.record(0, 0, 0, "task", False, {"INST_RETIRED": 10})
    led.record(1, 0, 2, "task", False, {"INST_RETIRED": 20})
    led.record(2, 0, 0, "vm0:vcpu0", True, {"INST_RETIRED": 100})
    led.record(3, 0, 1, "vm0:vcpu0", True, {"INST_RETIRED": 200})
    led.record_el2(4, 0, 3000, 1000, "vm0", task="vm0:vcpu0")
    led.record(5, 1, 0, "task", False, {"INST_RETIRED": 7})
    m = Machine.from_topology(Topology.from_mapping(
        {"name": "m", "cluster": [{"core": "cortex-a720", "count": 2}]}))
    pmu = m.host.pmus[0]

    def ideal(**kw: Any) -> int:
        ev = m.host.perf_event_open(PerfEventAttr(type=pmu.type, config=E("INST_RETIRED"),
                                                  **kw), cpu=0)
        return led.ideal_host(ev)

    assert ideal() == 10 + 20 + 100 + 200 + 1000
    assert ideal(exclude_guest=True) == 10 + 20 + 1000
    assert ideal(exclude_host=True) == 100 + 200
    assert ideal(exclude_kernel=True) == 10 + 100
    assert ideal(exclude_user=True) == 20 + 200 + 1000
    assert led.ideal_guest("vm0:vcpu0", E("INST_RETIRED")) == 300
    assert led.ideal_guest("vm0:vcpu0", E("INST_RETIRED"), exclude_kernel=True) == 100
    assert led.el2[(0, "vm0")][E("CPU_CYCLES")] == 3000


def test_attached_checker_records_vcpu_run_work() -> None:
    m = Machine.from_topology(Topology.from_mapping(
        {"name": "m", "cluster": [{"core": "cortex-a720", "count": 2}]}),
        reserved_host_counters=2, revision="intent")
    ck = Checker()
    ck.attach(m)
    v = m.kvm.create_vm().create_vcpu()
    g = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
    v.set_device_attr(g, 5, 1)
    v.set_device_attr(g, uapi.KVM_ARM_VCPU_PMU_V3_IRQ, 23)
    v.set_device_attr(g, uapi.KVM_ARM_VCPU_PMU_V3_INIT, None)

    def prog(cpu: Any) -> None:
        cpu.count({"INST_RETIRED": 500})
        cpu.el = 0
        cpu.count({"INST_RETIRED": 70})

    v.run(prog, cpu=1)
    ck.finish()
    assert ck.ok and ck.ledger.truth("vm0:vcpu0", el=0, cpu=1)[E("INST_RETIRED")] == 70
    assert ck.ledger.ideal_guest("vm0:vcpu0", E("INST_RETIRED")) == 570
    assert re.match(r"verdict: OK — \d+ invariants held over", ck.verdict())
