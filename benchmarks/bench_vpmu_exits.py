"""Exits and EL2 cycles of one guest running a 6-event counting loop, emulated vs partitioned.

Not a test: run ``python benchmarks/bench_vpmu_exits.py [--core cortex-a720] [--blocks 4]``.
One machine (two CPUs of an FEAT_FGT core, ``arm_pmuv3.reserved_host_counters=0`` so that a
guest may own all 6 counters), one VM with one vCPU (6 counters via SET_NR_COUNTERS), on CPU 0.
The guest programs PMEVTYPER0..5, zeroes the counters, enables them and PMCR.E, retires
``--blocks`` blocks of work and reads the 6 counters back; ``--loops`` repeats that (a
reprogrammed counter of the emulated vPMU gets a new perf event, as upstream).  The
figures are the model's (KvmCosts / HostCosts defaults), not measurements of hardware.
"""

from __future__ import annotations

import argparse
from typing import Any

from pmupart import Machine
from pmupart.host.topology import Topology
from pmupart.kvm.uapi import KVM_ARM_VCPU_PMU_V3_CTRL as CTRL

EVENTS = (0x08, 0x11, 0x13, 0x12, 0x04, 0x03)  # INST, CYCLES, MEM, BR_PRED, L1D, L1D_REFILL
BLOCK = {0x11: 300_000, 0x08: 500_000, 0x13: 200_000, 0x12: 100_000, 0x04: 190_000,
         0x03: 7_000}


def loop(blocks: int, loops: int, out: list[list[int]]) -> Any:
    def prog(g: Any) -> None:
        for _ in range(loops):
            for i, ev in enumerate(EVENTS):
                g.write(f"PMEVTYPER{i}_EL0", ev)
                g.write(f"PMEVCNTR{i}_EL0", 0)
            g.write("PMCNTENSET_EL0", 0x3F)
            g.write("PMCR_EL0", (1 << 6) | 1)
            for _ in range(blocks):
                g.count(BLOCK)
            out.append([g.read(f"PMEVCNTR{i}_EL0").value for i in range(6)])
    return prog


def measure(core: str, partitioned: bool, blocks: int, loops: int) -> dict[str, Any]:
    topo = Topology.from_mapping({"name": "bench", "cluster": [{"core": core, "count": 2}]})
    m = Machine.from_topology(topo, reserved_host_counters=0)
    v = m.kvm.create_vm().create_vcpu()
    if partitioned:
        v.set_device_attr(CTRL, 5, 1)  # KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION
    v.set_device_attr(CTRL, 4, 6)  # SET_NR_COUNTERS
    v.set_device_attr(CTRL, 0, 23)  # IRQ
    v.set_device_attr(CTRL, 1, None)  # INIT
    out: list[list[int]] = []
    el2_before = m.host.cpus[0].el2_cycles
    v.run(loop(blocks, loops, out), cpu=0)
    s = v.stats
    return {
        "exits": sum(s.exits.values()),
        "exits_by_reason": dict(s.exits),
        "traps_by_register": dict(sorted(s.traps.items())),
        "kvm_el2_cycles": s.el2_cycles,
        "cpu_el2_cycles": m.host.cpus[0].el2_cycles - el2_before,
        "el2_by_reason": dict(m.host.stats.el2_cycles),
        "perf_events": (s.perf_events_created, s.perf_events_released),
        "regs_swapped": s.regs_swapped,
        "counts": out[-1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--core", default="cortex-a720")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--loops", type=int, default=1)
    a = ap.parse_args()
    res = {name: measure(a.core, name == "partitioned", a.blocks, a.loops)
           for name in ("emulated", "partitioned")}
    assert res["emulated"]["counts"] == res["partitioned"]["counts"]
    print(f"core={a.core} blocks={a.blocks} loops={a.loops} counts={res['emulated']['counts']}")
    print(f"{'':14}{'exits':>7}{'KVM EL2 cyc':>13}{'all EL2 cyc':>13}{'perf ev':>9}"
          f"{'regs swp':>9}")
    for name, r in res.items():
        print(f"{name:14}{r['exits']:>7}{r['kvm_el2_cycles']:>13}{r['cpu_el2_cycles']:>13}"
              f"{r['perf_events'][0]:>9}{r['regs_swapped']:>9}")
    for name, r in res.items():
        print(f"\n{name}: traps {r['traps_by_register']}")
        print(f"{name}: EL2 cycles by reason {r['el2_by_reason']}")


if __name__ == "__main__":
    main()
