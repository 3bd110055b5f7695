"""Design variants and costs of the KVM layer (DESIGN.md decisions 6, 7 and 9).

The design variants are the choices of a kernel revision: :mod:`pmupart.kvm.revision` holds
them (``KvmOptions`` is :class:`~pmupart.kvm.revision.Revision` under its older name, and the
enums are re-exported here).  Costs stay here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmupart.kvm.revision import Backend, HpmnSource, KvmOptions, Revision, Swap

__all__ = ["Backend", "HpmnSource", "KvmCosts", "KvmOptions", "Revision", "Swap"]


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
