"""MDCR_EL2 and fine-grained trap programming at vcpu_load.

Models ``arch/arm64/kvm/debug.c:kvm_arm_setup_mdcr_el2()`` as the partitioning series
changes it (v7 09/20, v8 10/21; spec kvm-partitioning §2.4-§2.6) and the PMU part of
``kvm_vcpu_load_fgt()`` (``arch/arm64/kvm/config.c``, series v7 07/20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pmupart.arch.sysreg import BY_NAME, view
from pmupart.kvm.options import Backend, HpmnSource
from pmupart.kvm.revision import FgtSet, GuestHpmn

if TYPE_CHECKING:
    from pmupart.kvm.kvm import VCPU


@dataclass(frozen=True, slots=True)
class MdcrSetup:
    """What ``kvm_arm_setup_mdcr_el2`` decided on one CPU."""

    value: int  #: MDCR_EL2 as written
    hw_partition: bool  #: HPMN = nr_pmu_counters with TPM/TPMCR clear (untrapped guest range)
    hpmn: int


def host_mdcr(n: int) -> int:
    """The host's own MDCR_EL2 on a VHE host (``__init_el2_debug``): HPMN = N, no traps."""
    return view("MDCR_EL2", 0).replace(HPMN=n).value


def kvm_pmu_is_partitioned(vcpu: VCPU, cpu: int) -> bool:
    """``kvm_pmu_is_partitioned(kvm)`` evaluated on ``cpu`` (v8 08/21, 18/21, pmu-direct.c):
    the VM enabled partitioning and ``pmu_is_partitioned(kvm->arch.arm_pmu)``, which
    compares the VM's PMU's ``max_guest_counters`` with *this CPU's* ``nr_event_counters``
    (``host_data_ptr``), not with the VM's PMU's own counters."""
    pmu = vcpu.vm.arm_pmu
    if pmu is None or not pmu.partitioned or vcpu.pmu is None \
            or vcpu.pmu.backend is not Backend.PARTITIONED:
        return False
    return pmu.max_guest_counters <= vcpu.vm.kvm.host.cpus[cpu].pe.num_counters


def _system_cap(vcpu: VCPU, feature: str) -> bool:
    """``cpus_have_final_cap``: every CPU of the system has the feature."""
    return all(getattr(hc.pe, feature) for hc in vcpu.vm.kvm.host.cpus)


def kvm_arm_setup_mdcr_el2(vcpu: VCPU, cpu: int, guest_owned: bool) -> MdcrSetup:
    """Compute MDCR_EL2 for ``vcpu`` on physical CPU ``cpu``.

    Upstream base: HPMN = this CPU's N; TPM | TPMCR (PMU traps), TPMS | TTRF | TDRA | TDOSA.
    The series: HPME always (host counters above HPMN keep counting in the guest); for a
    partitioned vCPU HPMD | HCCD (RES0 where absent), and, when this CPU can give the guest an
    untrapped range (the vCPU is not on an unsupported CPU, FEAT_FGT, FEAT_HPMN0 or at least
    one counter, this CPU's PMU partitioned with room for the VM's counters, and, with the
    lazy swap, the guest already owns the PMU), clear TPM | TPMCR and set HPMN =
    ``nr_pmu_counters``.  The v1 variant took HPMN from the VM's PMU instead: wrong on a
    heterogeneous host (spec kvm-partitioning §2.4; Oliver Upton's review of v1 06/17,
    lore:aD4llDZwb_sC_Ptj@linux.dev).
    """
    vm = vcpu.vm
    host = vm.kvm.host
    opts = vm.kvm.options
    pe = host.cpus[cpu].pe
    pmu = host.pmu_of_cpu(cpu)
    n = pe.num_counters
    v = view("MDCR_EL2", 0).replace(HPMN=n, TPM=1, TPMCR=1, TPMS=1, TTRF=1, TDRA=1, TDOSA=1)
    # v7 09/20 / v8 10/21: HPME is ORed in always (a no-op while HPMN = N).
    v = v.replace(HPME=1)
    hw_partition = False
    hpmn = n
    partitioned = vcpu.pmu is not None and vcpu.pmu.backend is Backend.PARTITIONED
    if partitioned:
        if opts.set_hpmd:
            v = v.replace(HPMD=1, HCCD=1)
        nr = vm.nr_pmu_counters
        if opts.hpmn_source is HpmnSource.VM_PMU:
            # v1 06/17: HPMN from kvm->arch.arm_pmu, whatever CPU this is.
            vm_pmu = vm.arm_pmu
            hpmn = vm_pmu.max_guest_counters if vm_pmu is not None else n
            if pe.fgt and guest_owned:
                v = v.replace(TPM=0, TPMCR=0, HPMN=hpmn & 0x1F)
                hw_partition = True
        elif opts.guest_hpmn is GuestHpmn.V8_AS_POSTED:
            # v8 10/21 kvm_pmu_is_partitioned(kvm) && GUEST_OWNED && ARM64_HAS_FGT &&
            # (hpmn != 0 || ARM64_HAS_HPMN0), with system caps and no check of this CPU's own
            # PMU beyond pmu_is_partitioned's counter comparison; not on an unsupported CPU.
            if (not vcpu.on_unsupported_cpu and kvm_pmu_is_partitioned(vcpu, cpu)
                    and guest_owned and _system_cap(vcpu, "fgt")
                    and (nr > 0 or _system_cap(vcpu, "hpmn0"))):
                v = v.replace(TPM=0, TPMCR=0, HPMN=nr & 0x1F)
                hpmn = nr
                hw_partition = True
        elif (not vcpu.on_unsupported_cpu and pe.fgt and (pe.hpmn0 or nr > 0)
              and pmu.partitioned and nr <= pmu.max_guest_counters and guest_owned):
            # Intent, the model's ASSUMPTION (spec kvm §6): also this CPU's own PMU must be
            # partitioned with room for the VM's counters, and its own FGT/HPMN0.
            v = v.replace(TPM=0, TPMCR=0, HPMN=nr)
            hpmn = nr
            hw_partition = True
    value = v.value  # fields the PE lacks (HPMD before PMUv3p1, HCCD before p5) are RES0
    # EL2 work charged so far happened under the old MDCR_EL2 (HPMN/HPMD/HCCD decide who
    # counts it): retire it before the new value takes effect.
    host.flush(cpu)
    with pe.at_el(2):
        pe.write("MDCR_EL2", value)
    return MdcrSetup(value, hw_partition, hpmn)


#: HDFGRTR_EL2 / HDFGWTR_EL2 fields KVM sets for a partitioned guest (series v7 07/20).
PARTITION_FGT_READ = ("PMOVS", "PMCCFILTR_EL0", "PMEVTYPERn_EL0", "PMCEIDn_EL0", "PMMIR_EL1")
PARTITION_FGT_WRITE = ("PMOVS", "PMCCFILTR_EL0", "PMEVTYPERn_EL0")


def kvm_vcpu_load_fgt(vcpu: VCPU, cpu: int, hw_partition: bool) -> int:
    """Program the PMU bits of the fine-grained traps; returns registers written.

    Intent: the PMU bits only where the range is untrapped; FGT2 keeps nPMUACR (untrapped).
    v8 08/21: the PMU bits are ORed for every vCPU onto ``__compute_fgt``; FGT2 comes from
    the feature map, where nPMUACR_EL1 needs FEAT_PMUv3p9 (config.c ``hdfgrtr2_feat_map``)
    and guests are capped at PMUv3p5, so every FGT2 PMU bit is 0 (trap)."""
    pe = vcpu.vm.kvm.host.cpus[cpu].pe
    if not pe.fgt:
        return 0
    computed = vcpu.vm.kvm.revision.fgt_set is FgtSet.COMPUTED
    rd, wr = 0, 0
    if hw_partition or computed:
        for f in PARTITION_FGT_READ:
            rd |= BY_NAME["HDFGRTR_EL2"].field(f).mask
        for f in PARTITION_FGT_WRITE:
            wr |= BY_NAME["HDFGWTR_EL2"].field(f).mask
    n = 2
    with pe.at_el(2):
        pe.write("HDFGRTR_EL2", rd)
        pe.write("HDFGWTR_EL2", wr)
        if pe.fgt2:
            # nPMICNTR/nPMICFILTR clear: the instruction counter stays trapped (0 = trap).
            keep = 0 if computed else BY_NAME["HDFGRTR2_EL2"].field("nPMUACR_EL1").mask
            pe.write("HDFGRTR2_EL2", keep)
            pe.write("HDFGWTR2_EL2", keep)
            n += 2
    return n


def restore_host_traps(vcpu: VCPU, cpu: int) -> None:
    """``kvm_arm_vcpu_put`` / ``__deactivate_traps``: the host's MDCR_EL2 and no FGT."""
    pe = vcpu.vm.kvm.host.cpus[cpu].pe
    vcpu.vm.kvm.host.flush(cpu)  # EL2 work so far was done under the guest's MDCR_EL2
    with pe.at_el(2):
        pe.write("MDCR_EL2", host_mdcr(pe.num_counters))
        if pe.fgt:
            pe.write("HDFGRTR_EL2", 0)
            pe.write("HDFGWTR_EL2", 0)
        if pe.fgt2:
            v = sum(BY_NAME["HDFGRTR2_EL2"].field(f).mask
                    for f in ("nPMICNTR_EL0", "nPMICFILTR_EL0", "nPMUACR_EL1"))
            pe.write("HDFGRTR2_EL2", v)
            pe.write("HDFGWTR2_EL2", v)
