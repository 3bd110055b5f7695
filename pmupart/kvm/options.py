"""Design variants and costs of the KVM layer (DESIGN.md decisions 6 and 7).

Where the partitioning series changed its mind, or where a reviewer asked "what if", the
model keeps each variant behind a named option so they can be compared on one machine.
Known-wrong variants are kept on purpose: the checker must catch them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class HpmnSource(Enum):
    """Where ``kvm_arm_setup_mdcr_el2`` takes MDCR_EL2.HPMN from (spec kvm §2.4)."""

    PER_CPU = "per-cpu"  #: v2+ (default): this CPU's state, never the VM's PMU
    VM_PMU = "vm-pmu"  #: v1 06/17: the VM's arm_pmu, wrong when vCPUs migrate on big.LITTLE


class Swap(Enum):
    """When the partitioned vPMU swaps guest PMU state in (spec kvm §2.7)."""

    LAZY = "lazy"  #: v4+ (default): FREE until the first trapped PMU write
    EAGER = "eager"  #: v1-v3: at every vcpu_load


class Backend(Enum):
    """Which vPMU backs a vCPU."""

    EMULATED = "emulated"  #: upstream pmu-emul.c
    PARTITIONED = "partitioned"  #: the series' pmu-direct.c (needs ENABLE_PARTITION)


@dataclass(frozen=True, slots=True)
class KvmOptions:
    """The knobs of the KVM model.  Defaults are the series v8/v9 design."""

    hpmn_source: HpmnSource = HpmnSource.PER_CPU
    swap: Swap = Swap.LAZY
    #: set MDCR_EL2.HPMD|HCCD for partitioned vCPUs (False = the "HPMD left clear" bug)
    set_hpmd: bool = True
    #: clear the guest's PMOVS bits in hardware at load (False = the leak the series fixed in v6)
    clear_pmovs_on_load: bool = True
    #: apply the VM's event filter to PMEVTYPER at every load (False = the v1 gap Oliver found)
    filter_at_load: bool = True
    #: fold hardware overflow flags of guest counters into the virtual PMOVSSET at put, so a
    #: flag set without an interrupt survives a put/load (the virtual copy is authoritative)
    save_pmovs_on_put: bool = True
    #: the series' ENABLE_PARTITION attribute number (not upstream; clashes with another series)
    enable_partition_attr: int = 5
    #: apply the counter's EL filter (P/U) to the emulated vPMU's SW_INCR and CHAIN, as the
    #: architecture does (ARM §D13.7.3.2); upstream ``kvm_pmu_counter_increment`` checks only
    #: PMCR.E, PMCNTENSET and the event type (default: as KVM does)
    emulated_swinc_el_filter: bool = False


@dataclass(frozen=True, slots=True)
class KvmCosts:
    """Cycle costs of KVM operations at EL2 (model parameters, documented in the README).

    ``exit_round_trip``: a guest access trapped to EL2 on a VHE host goes through a full exit
    (exception entry, guest context save on the exit path, ``handle_exit`` dispatch, context
    restore and ERET); 1-3k cycles is the usual order for such an exit on current cores.
    """

    exit_round_trip: int = 2000
    sysreg_handler: int = 250  #: kvm_handle_sys_reg: descriptor lookup and emulation
    pmu_reprogram: int = 400  #: kvm_pmu_create_perf_event bookkeeping beyond perf itself
    reg_swap: int = 20  #: one PMU register saved or restored at vcpu load/put (MRS/MSR + ISB)
    vgic_inject: int = 500  #: kvm_vgic_inject_irq and the list-register update
    load_put_base: int = 150  #: fixed part of kvm_pmu_load / kvm_pmu_put
