"""A VMM's vCPU setup for running guest programs, as `pmupart exec --vpmu` and the tests do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pmupart.kvm.revision import Revision

__all__ = ["pmu_vcpu"]


def pmu_vcpu(core: str, vpmu: str, reserved: int = 2, revision: str | Revision = "v8",
             irq: int = 23) -> Any:
    """A machine of two ``core`` CPUs (``reserved`` host counters), a VM with a vGIC, and one
    vCPU with the PMU (partitioned if ``vpmu == "partitioned"``) under ``revision`` (a registry
    name or a :class:`Revision` value), its overflow interrupt on
    PPI ``irq``, initialised: the ioctls a VMM issues, in its order.  Raises ``KvmError``
    where the kernel would fail them, ``ValueError`` for an unknown core or revision."""
    from pmupart import Machine
    from pmupart.host.topology import Topology
    from pmupart.kvm import uapi

    ctrl = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
    topo = Topology.from_mapping({"name": core, "cluster": [{"core": core, "count": 2}]})
    m = Machine.from_topology(topo, reserved_host_counters=reserved, revision=revision)
    v = m.kvm.create_vm().create_vcpu(pmu=True)
    if vpmu == "partitioned":
        v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION, 1)
    v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_IRQ, irq)
    v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_INIT, None)
    return v
