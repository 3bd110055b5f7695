"""pmupart.host: the host machine (topology, sysfs) and its perf/PMUv3 driver model."""

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
    "Cluster",
    "PmuDesc",
    "Topology",
    "TopologyError",
    "get_preset",
    "import_sysfs",
    "load_topology",
    "render_sysfs",
    "write_sysfs",
]
