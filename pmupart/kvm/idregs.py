"""The ID registers a guest reads: the host kernel's system-wide sanitised values
(``read_sanitised_ftr_reg``, arch/arm64/kernel/cpufeature.c) passed through KVM's
``__kvm_read_sanitised_id_reg`` (arch/arm64/kvm/sys_regs.c).

Only the fields the PE model implements are computed (``PE._id_dfr0``/``_id_dfr1``/
``_id_mmfr0``): PMUVer, DebugVer and HPMN0 in ID_AA64DFR0_EL1, PMICNTR in ID_AA64DFR1_EL1, FGT
in ID_AA64MMFR0_EL1.  Each field is combined over every CPU of the system the way its
``arm64_ftr_bits`` entry says:

* ``FTR_EXACT`` (PMUVer safe 0, DebugVer safe 6): the common value, or the safe value when
  the CPUs differ;
* ``FTR_LOWER_SAFE`` (FGT; HPMN0 where the revision has the series' cpufeature entry): the
  lowest value;
* no entry (HPMN0 in mainline, MTPMU, SEBEP, PMSS, TraceVer): 0, and ID_AA64DFR1_EL1 as a
  whole, which mainline describes with ``ftr_raz`` (spec kernel-code-deltas §3.7 says DFR1 is
  a sanitised host value; the mainline source has no ``ftr_id_aa64dfr1`` table, so it reads
  as 0: the source wins).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pmupart.arch.features import PMUVer

if TYPE_CHECKING:
    from pmupart.host.kernel import HostKernel
    from pmupart.kvm.kvm import VCPU

_PMUVER_SHIFT, _DEBUGVER_SHIFT, _HPMN0_SHIFT = 8, 0, 60
_FGT_SHIFT = 56
_DEBUGVER_SAFE = 0x6  #: ARM64_FTR_BITS(..., FTR_EXACT, DebugVer, 4, 0x6)
_DEBUGVER_V8P8 = 0xA  #: sanitise_id_aa64dfr0_el1 limits DebugVer to V8P8
_IMP_DEF = 0xF


def _field(v: int, shift: int) -> int:
    return (v >> shift) & 0xF


def _exact(vals: list[int], safe: int) -> int:
    """``FTR_EXACT``: every CPU agrees, or the safe value."""
    return vals[0] if all(x == vals[0] for x in vals) else safe


def sanitised_ftr_reg(host: HostKernel, name: str, hpmn0_ftr: bool) -> int:
    """``read_sanitised_ftr_reg`` over the host's CPUs, for the fields modelled."""
    pes = [hc.pe for hc in host.cpus]
    with_el = [pe.read_el2(name) for pe in pes]
    if name == "ID_AA64DFR0_EL1":
        v = _exact([_field(x, _PMUVER_SHIFT) for x in with_el], 0) << _PMUVER_SHIFT
        v |= _exact([_field(x, _DEBUGVER_SHIFT) for x in with_el], _DEBUGVER_SAFE)
        if hpmn0_ftr:  # the series' FEAT_HPMN0 cpufeature entry: FTR_LOWER_SAFE
            v |= min(_field(x, _HPMN0_SHIFT) for x in with_el) << _HPMN0_SHIFT
        return v
    if name == "ID_AA64MMFR0_EL1":
        return min(_field(x, _FGT_SHIFT) for x in with_el) << _FGT_SHIFT
    return 0  # ID_AA64DFR1_EL1: ftr_raz in mainline


def kvm_arm_pmu_get_pmuver_limit(host: HostKernel) -> int:
    """``kvm_arm_pmu_get_pmuver_limit`` (pmu-emul.c): the system-sanitised PMUVer (0 when the
    CPUs' PMU versions differ, FTR_EXACT), IMPLEMENTATION DEFINED taken as none (0), capped
    at PMUv3p5.  It also sizes the FILTER event space (``kvm_arm_pmu_v3_set_attr``)."""
    v = _field(sanitised_ftr_reg(host, "ID_AA64DFR0_EL1", False), _PMUVER_SHIFT)
    if v == _IMP_DEF:
        v = 0
    return min(v, int(PMUVer.V3P5))


def guest_pmuv3_supported(host: HostKernel) -> bool:
    """``kvm_supports_guest_pmuv3``: ``kvm_host_pmu_init`` registers a host PMU for guests only
    if the limit is a PMUv3 (``pmuv3_implemented``); on a host whose CPUs differ in PMUVer
    none is registered, and KVM refuses a vCPU with the PMUv3 feature."""
    return kvm_arm_pmu_get_pmuver_limit(host) != 0


def guest_id_reg(vcpu: VCPU, name: str) -> int:
    """``__kvm_read_sanitised_id_reg`` for a guest read of ``name`` (trapped by TID3)."""
    kvm = vcpu.vm.kvm
    host = kvm.host
    v = sanitised_ftr_reg(host, name, kvm.revision.hpmn0_ftr)
    if name == "ID_AA64DFR0_EL1":
        # sanitise_id_aa64dfr0_el1: DebugVer at most V8P8; PMUVer the limit, only for a vCPU
        # with a PMU; PMSVer and BRBE hidden (not modelled, already 0).
        dbg = min(_field(v, _DEBUGVER_SHIFT), _DEBUGVER_V8P8)
        v = (v & ~0xF & ~(0xF << _PMUVER_SHIFT)) | dbg
        if vcpu.has_pmu_feature:
            v |= int(vcpu.vm.guest_pmuver()) << _PMUVER_SHIFT
    return v


__all__ = ["guest_id_reg", "guest_pmuv3_supported", "kvm_arm_pmu_get_pmuver_limit",
           "sanitised_ftr_reg"]
