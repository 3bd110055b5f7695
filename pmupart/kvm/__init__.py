"""pmupart.kvm: KVM/arm64's vPMU: the UAPI and its errno rules, VMs and vCPUs, MDCR_EL2 and
FGT programming, vcpu load/put, the emulated (``pmu_emul``) and partitioned (``pmu_direct``)
backends.  Kernel files: ``arch/arm64/kvm/{pmu-emul,pmu,debug,sys_regs,arm}.c`` and the
partitioning series' ``pmu-direct.c``."""

from pmupart.kvm import uapi
from pmupart.kvm.kvm import VCPU, VM, Kvm, KvmError, VcpuStats
from pmupart.kvm.options import Backend, HpmnSource, KvmCosts, KvmOptions, Swap
from pmupart.kvm.revision import REVISIONS, Revision
from pmupart.kvm.run import GuestCpu, kvm_arch_vcpu_load, kvm_arch_vcpu_put

__all__ = ["REVISIONS", "VCPU", "VM", "Backend", "GuestCpu", "HpmnSource", "Kvm", "KvmCosts",
           "KvmError", "KvmOptions", "Revision", "Swap", "VcpuStats", "kvm_arch_vcpu_load",
           "kvm_arch_vcpu_put", "uapi"]
