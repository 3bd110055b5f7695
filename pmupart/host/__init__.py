"""pmupart.host: the host machine (topology, sysfs) and its perf/PMUv3 driver model."""

from pmupart.host.arm_pmuv3 import AllocOrder, ArmPmu, Reservation
from pmupart.host.kernel import HostCosts, HostCpu, HostKernel, HostStats, PerfError
from pmupart.host.perf_event import EventState, PerfEvent, PerfEventAttr, Task
from pmupart.host.sysfs import import_sysfs, render_sysfs, write_sysfs
from pmupart.host.topology import (
    PRESETS,
    Cluster,
    PmuDesc,
    Topology,
    TopologyError,
    get_preset,
    load_topology,
)

__all__ = [
    "PRESETS",
    "AllocOrder",
    "ArmPmu",
    "Cluster",
    "EventState",
    "HostCosts",
    "HostCpu",
    "HostKernel",
    "HostStats",
    "PerfError",
    "PerfEvent",
    "PerfEventAttr",
    "PmuDesc",
    "Reservation",
    "Task",
    "Topology",
    "TopologyError",
    "get_preset",
    "import_sysfs",
    "load_topology",
    "render_sysfs",
    "write_sysfs",
]
