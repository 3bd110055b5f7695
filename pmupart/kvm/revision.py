"""Kernel revisions of the KVM layer: what each one does, choice by choice, in one place.

DESIGN.md decision 9.  A revision is data: one frozen dataclass of named choices.  The
backends ask the revision (``vcpu.vm.kvm.revision.<choice>``), never a version number.  Each
choice is an Enum whose members name the behaviour and the patch that brought it, so
``git grep`` on a choice shows every revision's answer side by side.

The registry (:data:`REVISIONS`):

* ``upstream``: mainline KVM/arm64 (``pmu-emul.c``, ``pmu.c``, ``sys_regs.c``), the emulated
  vPMU only.  ``KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION`` does not exist there, so has_attr and
  set_attr on it fail with -ENXIO (``kvm_arm_pmu_v3_{has,set}_attr`` default case).
* ``v8``: the partitioning series v8 as posted (21 patches, 2026-06-12, base v7.1-rc7), the
  code as it runs, bugs included.  The default: ``Revision()`` is v8.
* ``intent``: the design that follows the v8 cover letter's intent (pmupart's behaviour
  before revisions were modelled).  What the cover letter claims but the code does not do
  lives here, never in ``v8``.

A revision with one choice changed is a design variant:
``dataclasses.replace(REVISIONS["v8"], irq_demux=IrqDemux.LOADED_PARTITIONED_VCPU)``, or in a
scenario ``[kvm] revision = "v8"`` plus ``irq_demux = "loaded-partitioned-vcpu"``, or on the
command line ``--set kvm.irq_demux=loaded-partitioned-vcpu``.  ``KvmOptions`` is the
intent under its older name (a subclass whose defaults are the intent's), so code written
against it keeps its meaning.

The source of every v8 row is the kernel-code-deltas audit, rows §4.x/§5.x (the audit of the v8
patches as posted; docs/sources.md names each row's patch and function), checked against the patches
themselves where the code index has them (linux-doc copies, Message-IDs
``20260612192909.1153907-K``, K = patch number + 1, the cover letter being 1): 09/21
(``pmu_reg_read/_write``), 15/21 (``kvm_pmu_set_guest_owned``), 16/21 (``armv8pmu_handle_irq``),
17/21 (``kvm_pmu_part_overflow_status``) and the series' ``pmu-direct.c`` (``kvm_pmu_load/put``,
``kvm_pmu_apply_event_filter``, ``kvm_pmu_guest_counter_mask``). For 18/21 (ENABLE_PARTITION),
08/21's FGT2 feature map and 07/21 the audit's description is the source.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any


# ---------------------------------------------------------------------- design variants
class HpmnSource(Enum):
    """Where ``kvm_arm_setup_mdcr_el2`` takes MDCR_EL2.HPMN from (spec kvm §2.4; v1 06/17 vs
    v8 10/21, ``arch/arm64/kvm/debug.c``)."""

    PER_CPU = "per-cpu"  #: v2+: this CPU's state, never the VM's PMU
    VM_PMU = "vm-pmu"  #: v1 06/17: the VM's arm_pmu, wrong when vCPUs migrate on big.LITTLE


class Swap(Enum):
    """When the partitioned vPMU swaps guest PMU state in (spec kvm §2.7; v7 10/20
    ``kvm_pmu_load``, v7 14/20 the lazy FREE/GUEST_OWNED scheme)."""

    LAZY = "lazy"  #: v4+: FREE until the first trapped PMU access
    EAGER = "eager"  #: v1-v3: at every vcpu_load


class Backend(Enum):
    """Which vPMU backs a vCPU."""

    EMULATED = "emulated"  #: upstream pmu-emul.c
    PARTITIONED = "partitioned"  #: the series' pmu-direct.c (needs ENABLE_PARTITION)


# ----------------------------------------------------- UAPI (kernel-code-deltas §3.11, §4.10-§4.12)
class PartitionAttr(Enum):
    """What ``KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION`` is and whom it affects."""

    #: upstream: the attribute does not exist; has_attr/set_attr give -ENXIO
    ABSENT = "absent"
    #: v8 18/21 ``kvm_pmu_partition_enable``: sets or clears the VM-wide
    #: KVM_ARCH_FLAG_PARTITION_PMU_ENABLED; has_attr returns 0 whenever the vCPU has a PMU,
    #: the support check happens only at set (-EPERM)
    VM_WIDE = "vm-wide"
    #: intent: a per-vCPU request fixed at INIT; has_attr reports it only where supported
    PER_VCPU = "per-vcpu"


class PartitionSupport(Enum):
    """``has_kvm_pmu_partition_support`` at ENABLE_PARTITION."""

    #: v8 08/21: VHE && PMUv3 && guest PMUv3 && ``armv8pmu_is_partitioned``, a global flag
    #: any PMU sets; ``pmu_is_partitioned(kvm->arch.arm_pmu)`` then compares the VM PMU's
    #: max_guest_counters with the *current CPU's* nr_event_counters
    GLOBAL = "global"
    #: intent: the VM's own arm_pmu is partitioned
    VM_PMU = "vm-pmu"


# -------------------------------------------------------- ownership (kernel-code-deltas §4.1, §4.2)
class OwnershipFlip(Enum):
    """Which trapped access makes a lazily swapped vCPU GUEST_OWNED."""

    #: intent (cover letter): the first trapped write
    ON_WRITE = "on-write"
    #: v8 15/21: ``kvm_pmu_set_guest_owned`` at the top of both ``pmu_reg_read`` and
    #: ``pmu_reg_write``; since 09/21 ``check_pmu_access_disabled`` reads PMUSERENR through
    #: ``pmu_reg_read``, so nearly every trapped PMU access flips
    ON_ACCESS = "on-access"


class LoadAtFlip(Enum):
    """What happens at the flip to GUEST_OWNED."""

    #: intent (v8 cover: "ensuring guest state is loaded on transition to GUEST_OWNED"):
    #: reprogram MDCR_EL2 and FGT and ``kvm_pmu_load`` at once
    LOAD = "load"
    #: v8 15/21 ``kvm_pmu_set_guest_owned``: sets GUEST_OWNED and calls
    #: ``kvm_arm_setup_mdcr_el2`` only; no reservation, no state load until the next
    #: vcpu_load, yet the access goes to hardware (``write_sysreg``)
    OWNER_ONLY = "owner-only"


# ------------------------------------------------------ context swap (kernel-code-deltas §4.3-§4.8)
class CounterMask(Enum):
    """The counters load/put, the filter, the IRQ demux and PMOVS act on."""

    #: intent: the VM's ``nr_pmu_counters`` and the cycle counter
    VM_NR = "vm-nr"
    #: v8 11/21, 12/21, 16/21, 17/21, 09/21 ``kvm_pmu_guest_counter_mask``:
    #: GENMASK(max_guest_counters - 1, 0) | C
    MAX_GUEST = "max-guest"


class UserenrSwap(Enum):
    """PMUSERENR_EL0 across vcpu load/put of a partitioned vCPU."""

    #: intent: the guest's value is written at load and saved at put
    SAVED_RESTORED = "saved-restored"
    #: v8: not in ``kvm_pmu_load``/``kvm_pmu_put`` (11/21); VHE ``__activate_traps_common``
    #: writes ARMV8_PMU_USERENR_MASK at load and ``__deactivate_traps_common`` restores the
    #: host's at put, so a guest write is lost at every put (guest EL0 gets EN=1)
    FORCED_AT_LOAD = "forced-at-load"


class HostPmcrAtPut(Enum):
    """The host's PMCR_EL0 after ``kvm_pmu_put``."""

    RESTORED = "restored"  #: intent: the host PMCR (minus P/C) comes back
    #: v8 11/21 ``kvm_pmu_put``: saves the guest PMCR, never restores the host's; the guest's
    #: E/LC/LP/D/X stay until the driver's next ``armv8pmu_start``
    NOT_RESTORED = "not-restored"


# --------------------------------------------- trap accessors (kernel-code-deltas §4.5-§4.6, §4.16)
class EvtyperWrite(Enum):
    """A trapped PMEVTYPER/PMCCFILTR write of a GUEST_OWNED vCPU."""

    HARDWARE_AT_ONCE = "hardware-at-once"  #: intent: filtered into hardware at once
    #: v8 09/21 ``pmu_reg_write``: virtual register only; hardware gets it at the next
    #: ``kvm_pmu_load`` (``kvm_pmu_apply_event_filter``, 12/21)
    VIRTUAL_UNTIL_LOAD = "virtual-until-load"


class PmovsRead(Enum):
    """A trapped PMOVSSET/PMOVSCLR access of a GUEST_OWNED vCPU."""

    SYNC_HARDWARE = "sync-hardware"  #: intent: hardware flags folded in first
    #: v8 09/21 ``pmu_reg_read``: the virtual register only; hardware flags reach it through
    #: the PMU IRQ (16/21, PMINTENSET-enabled counters only) or at put
    VIRTUAL_ONLY = "virtual-only"


class FallbackPmcr(Enum):
    """The guest's PMCR_EL0 where the traps are kept but the counters are in hardware (no
    FEAT_FGT: MDCR_EL2.HPMN stays N, so PMCR_EL0.E gates the host's counters too)."""

    #: v8 09/21 ``kvm_pmu_direct_pmcr_write``: the guest's PMCR (E included) goes to hardware
    HARDWARE = "hardware"
    #: intent: the hardware PMCR stays the host's; the guest's PMCR is virtual and its E is
    #: applied through the guest counters' PMCNTEN bits (its LC/LP do not reach hardware)
    GATED = "gated"


class SwincFallback(Enum):
    """``access_pmswinc`` of a GUEST_OWNED vCPU in the trap fallback (no FGT)."""

    HARDWARE = "hardware"  #: intent: SW_INCR acts on the hardware counters
    #: v8 09/21 leaves ``kvm_pmu_software_increment`` on the virtual (stale) registers
    VIRTUAL = "virtual"


# ----------------------------------------------------------------- filter (kernel-code-deltas §4.9)
class FilterExempt(Enum):
    """Which events the partitioned backend's hardware filter never denies."""

    #: intent, vcpu.rst FILTER: SW_INCR is never filtered, CHAIN filtering has no effect
    SWINC_CHAIN = "swinc-chain"
    #: v8 12/21 ``kvm_pmu_apply_event_filter``: no exemption
    NONE = "none"


# ----------------------------------------------------- interrupts (kernel-code-deltas §4.14, §4.15)
class IrqDemux(Enum):
    """Who gets the guest bits of a host PMU interrupt on a partitioned host."""

    #: intent: the vCPU whose partitioned counters are loaded on that CPU, its own counters
    LOADED_PARTITIONED_VCPU = "loaded-partitioned-vcpu"
    #: v8 16/21 ``kvm_pmu_handle_guest_irq``: pmovsr & GENMASK(max_guest-1,0)|C goes to
    #: ``kvm_get_running_vcpu()`` whatever its backend or ownership; the host clears only
    #: GENMASK(N-1, max_guest_counters)
    RUNNING_VCPU = "running-vcpu"


class FreeOverflow(Enum):
    """``kvm_pmu_part_overflow_status`` while the vCPU is FREE."""

    NO_IRQ = "no-irq"  #: intent: no interrupt while FREE
    #: v8 17/21: virtual PMCR.E & PMOVS & PMINTEN & mask set → ``kvm_pmu_set_guest_owned``
    #: and the *hardware* PMCR/PMINTENSET decide
    FLIP_AND_READ_HW = "flip-and-read-hw"


# ------------------------------------------ MDCR_EL2 / FGT (kernel-code-deltas §4.13, §4.17, §5.12)
class GuestHpmn(Enum):
    """When ``kvm_arm_setup_mdcr_el2`` gives a GUEST_OWNED vCPU an untrapped range."""

    #: intent, the model's ASSUMPTION (spec kvm §6): also this CPU's PMU partitioned with
    #: room for the VM's counters; otherwise traps stay and the state stays virtual
    PER_CPU_CAPACITY = "per-cpu-capacity"
    #: v8 10/21 debug.c as posted: HPMN = nr_pmu_counters unless on an unsupported CPU,
    #: with system caps (ARM64_HAS_FGT, HPMN0); ``kvm_pmu_load`` runs whenever GUEST_OWNED
    V8_AS_POSTED = "v8-as-posted"


class FgtSet(Enum):
    """The fine-grained traps at vcpu_load."""

    #: intent: PMU read/write bits only when the range is untrapped; FGT2 = nPMUACR only
    PARTITIONED_ONLY = "partitioned-only"
    #: v8 08/21: PMU bits ORed for every vCPU onto ``__compute_fgt``; FGT2 from the feature
    #: map, where nPMUACR needs FEAT_PMUv3p9 (guests capped at p5 → 0, trap)
    COMPUTED = "computed"


# ----------------------------------------------------------- ID registers (kernel-code-deltas §3.6)
class MixedPmuver(Enum):
    """A host whose CPUs differ in ID_AA64DFR0_EL1.PMUVer (a 32-bit-counter core next to a
    64-bit one, or PMUv3p7 next to p8)."""

    #: mainline (every revision): PMUVer is FTR_EXACT with safe value 0 in cpufeature.c, so
    #: ``kvm_arm_pmu_get_pmuver_limit`` is 0, ``kvm_host_pmu_init`` registers no PMU for
    #: guests, and KVM_ARM_VCPU_INIT refuses the PMUv3 feature (-EINVAL)
    NO_GUEST_PMU = "no-guest-pmu"
    #: what-if (pmupart before kernel-code-deltas §3.6): KVM offers a guest PMU there anyway,
    #: its PMUVer the VM PMU's capped at p5; for heterogeneous stories beyond mainline
    VM_PMU = "vm-pmu"


class PmuStrict(Enum):
    """The vCPU feature ``KVM_ARM_VCPU_PMU_V3_STRICT`` (bit 9; kernel-code-deltas §3.13).

    Merged into kvmarm/next for 7.3 (branch kvm-arm64/pmu-7.3, 2026-07-31: "Add
    KVM_ARM_VCPU_PMU_V3_STRICT vCPU feature", "Ignore writes to PMCR_EL0.N when using strict
    UAPI", "Advertise STALL_SLOT* in PMCEID1 ...", "Expose PMMIR_EL1.SLOTS ..."), after v8's
    base v7.1-rc7: the series as posted, and the intent built on it, lack it."""

    #: the feature bit is beyond KVM_VCPU_MAX_FEATURES (9): ``kvm_vcpu_init_check_features``
    #: refuses an unknown bit with -ENOENT
    ABSENT = "absent"
    #: mainline: no default PMU, SET_PMU before the first run, PMMIR.SLOTS and STALL_SLOT*
    #: exposed, PMCR.N writes ignored
    SUPPORTED = "supported"


@dataclass(frozen=True, slots=True, eq=False)
class Revision:
    """One kernel revision's choices.

    Defaults are the series v8 as posted; ``REVISIONS`` names the others.  ``name`` says which
    registry entry a value started from; :meth:`overrides` lists the choices changed since.
    Two revisions are equal when every field is (whatever the subclass).
    """

    name: str = "v8"
    # ---- UAPI
    #: ENABLE_PARTITION: absent (upstream), VM-wide (v8 18/21) or per vCPU (intent)
    partition_attr: PartitionAttr = PartitionAttr.VM_WIDE
    #: the support check at ENABLE_PARTITION (v8 08/21 global flag)
    partition_support: PartitionSupport = PartitionSupport.GLOBAL
    #: the series' ENABLE_PARTITION attribute number (v8 18/21; clashes with another series)
    enable_partition_attr: int = 5
    # ---- ownership and swap
    #: when the guest state is swapped in: lazily at the first access (v4+) or eagerly (v1-3)
    swap: Swap = Swap.LAZY
    #: which trapped access flips ownership (v8 15/21: any)
    ownership_flip: OwnershipFlip = OwnershipFlip.ON_ACCESS
    #: whether the flip loads the guest state (v8 15/21: no)
    load_at_flip: LoadAtFlip = LoadAtFlip.OWNER_ONLY
    #: the counters load/put/filter/demux act on (v8: max_guest_counters)
    counter_mask: CounterMask = CounterMask.MAX_GUEST
    #: PMUSERENR across load/put (v8: not swapped, forced by switch.h)
    userenr_swap: UserenrSwap = UserenrSwap.FORCED_AT_LOAD
    #: the host PMCR after put (v8 11/21: not restored)
    host_pmcr_at_put: HostPmcrAtPut = HostPmcrAtPut.NOT_RESTORED
    #: clear the guest's PMOVS bits in hardware at load (False: the leak fixed in v6)
    clear_pmovs_on_load: bool = True
    #: fold hardware PMOVS into the virtual PMOVSSET at put (v8 11/21 ``kvm_pmu_put``)
    save_pmovs_on_put: bool = True
    #: clear the guest's PMOVS in hardware at put (v8 11/21); False is the partner of
    #: ``clear_pmovs_on_load=False`` that lets a stale flag survive to the next load
    #: (kernel-code-deltas §5.9)
    clear_pmovs_on_put: bool = True
    # ---- trapped accessors
    #: a trapped PMEVTYPER/PMCCFILTR write (v8 09/21: virtual until the next load)
    evtyper_write: EvtyperWrite = EvtyperWrite.VIRTUAL_UNTIL_LOAD
    #: a trapped PMOVS access (v8 09/21: virtual only)
    pmovs_read: PmovsRead = PmovsRead.VIRTUAL_ONLY
    #: SW_INCR in the trap fallback (v8 09/21: on the stale virtual registers)
    swinc_fallback: SwincFallback = SwincFallback.VIRTUAL
    #: the guest's PMCR in the trap fallback (v8 09/21: to hardware, gating host counters)
    fallback_pmcr: FallbackPmcr = FallbackPmcr.HARDWARE
    # ---- event filter
    #: events the hardware filter never denies (v8 12/21: none)
    filter_exempt: FilterExempt = FilterExempt.NONE
    #: apply the VM's event filter to the hardware types at every load (v8 12/21
    #: ``kvm_pmu_apply_event_filter``; False = the v1 gap Oliver found: raw types reach hardware)
    filter_at_load: bool = True
    #: variant (kernel-code-deltas §5.12): the filter is applied at a vCPU's first load only;
    #: later loads write the guest's types raw
    filter_first_load_only: bool = False
    # ---- interrupts
    #: who gets the guest bits of a host PMU interrupt (v8 16/21: the running vCPU)
    irq_demux: IrqDemux = IrqDemux.RUNNING_VCPU
    #: overflow status while FREE (v8 17/21: flip and read hardware)
    free_overflow: FreeOverflow = FreeOverflow.FLIP_AND_READ_HW
    # ---- MDCR_EL2 and FGT
    #: where the base HPMN comes from (v2+: this CPU)
    hpmn_source: HpmnSource = HpmnSource.PER_CPU
    #: when a GUEST_OWNED vCPU gets an untrapped range (v8 10/21 as posted)
    guest_hpmn: GuestHpmn = GuestHpmn.V8_AS_POSTED
    #: set MDCR_EL2.HPMD|HCCD for partitioned vCPUs (False = the "HPMD left clear" bug)
    set_hpmd: bool = True
    #: fine-grained traps (v8 08/21: computed for every vCPU)
    fgt_set: FgtSet = FgtSet.COMPUTED
    # ---- ID registers
    #: ID_AA64DFR0_EL1.HPMN0 has an ``arm64_ftr_bits`` entry (FTR_LOWER_SAFE), so guests read
    #: the lowest HPMN0 of the system: the series' FEAT_HPMN0 cpufeature patch (v8, the
    #: ARM64_HAS_HPMN0 capability its debug.c tests).  Mainline has no entry: the sanitised
    #: value, and the guest's, has HPMN0 = 0 (cpufeature.c ``ftr_id_aa64dfr0``).
    hpmn0_ftr: bool = True
    #: a host mixing PMU versions: no guest PMU (mainline) or the VM PMU's (what-if)
    mixed_pmuver: MixedPmuver = MixedPmuver.NO_GUEST_PMU
    #: the vCPU feature KVM_ARM_VCPU_PMU_V3_STRICT (mainline 7.3; not in v8's base)
    pmu_strict: PmuStrict = PmuStrict.ABSENT
    # ---- emulated vPMU
    #: apply the counter's EL filter to the emulated vPMU's SW_INCR and CHAIN, as the
    #: architecture does (ARM §D13.7.3.2); upstream ``kvm_pmu_counter_increment`` checks only
    #: PMCR.E, PMCNTENSET and the event type
    emulated_swinc_el_filter: bool = False

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Revision):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def partitioning(self) -> bool:
        """The partitioned backend exists in this revision."""
        return self.partition_attr is not PartitionAttr.ABSENT

    def overrides(self) -> dict[str, Any]:
        """The choices that differ from the registry entry ``name`` (a design variant)."""
        base = REVISIONS.get(self.name)
        if base is None:
            return {}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "name" and getattr(self, f.name) != getattr(base, f.name)}

    def label(self) -> str:
        """``v8`` or ``v8+irq_demux=loaded-partitioned-vcpu``."""
        ov = self.overrides()
        return self.name + "".join(f"+{k}={_text(v)}" for k, v in ov.items())


def _text(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v.value)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass(frozen=True, slots=True, eq=False)
class KvmOptions(Revision):
    """The intent design (pmupart's KVM model before revisions), under its older name:
    ``KvmOptions(hpmn_source=HpmnSource.VM_PMU)`` still means "the design with the v1 HPMN
    rule".  Every v8 choice whose comment above names a patch flips back to what the v8
    cover letter says the code does."""

    name: str = "intent"
    partition_attr: PartitionAttr = PartitionAttr.PER_VCPU
    partition_support: PartitionSupport = PartitionSupport.VM_PMU
    ownership_flip: OwnershipFlip = OwnershipFlip.ON_WRITE
    load_at_flip: LoadAtFlip = LoadAtFlip.LOAD
    counter_mask: CounterMask = CounterMask.VM_NR
    userenr_swap: UserenrSwap = UserenrSwap.SAVED_RESTORED
    host_pmcr_at_put: HostPmcrAtPut = HostPmcrAtPut.RESTORED
    evtyper_write: EvtyperWrite = EvtyperWrite.HARDWARE_AT_ONCE
    pmovs_read: PmovsRead = PmovsRead.SYNC_HARDWARE
    swinc_fallback: SwincFallback = SwincFallback.HARDWARE
    fallback_pmcr: FallbackPmcr = FallbackPmcr.GATED
    filter_exempt: FilterExempt = FilterExempt.SWINC_CHAIN
    irq_demux: IrqDemux = IrqDemux.LOADED_PARTITIONED_VCPU
    free_overflow: FreeOverflow = FreeOverflow.NO_IRQ
    guest_hpmn: GuestHpmn = GuestHpmn.PER_CPU_CAPACITY
    fgt_set: FgtSet = FgtSet.PARTITIONED_ONLY


_V8 = Revision()

#: The named revisions.  v8 is the default; see the module docstring.
REVISIONS: dict[str, Revision] = {
    # Mainline: the emulated vPMU only.  The partitioned choices are unreachable there; they
    # keep v8's values so a diff against v8 shows only what mainline lacks.
    "upstream": dataclasses.replace(_V8, name="upstream", partition_attr=PartitionAttr.ABSENT,
                                    hpmn0_ftr=False, pmu_strict=PmuStrict.SUPPORTED),
    "v8": _V8,
    # The cover letter's intent (class KvmOptions above holds its values).
    "intent": KvmOptions(),
}

DEFAULT_REVISION = "v8"

#: The choice fields a scenario may override (every field but ``name``).
CHOICES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Revision) if f.name != "name")


def get_revision(name: str) -> Revision:
    """The registry entry ``name``; ``ValueError`` with the known names otherwise."""
    try:
        return REVISIONS[name]
    except KeyError:
        raise ValueError(f"unknown KVM revision {name!r}; expected one of: "
                       f"{', '.join(REVISIONS)}") from None


def revision_with(name: str, **choices: Any) -> Revision:
    """Registry entry ``name`` with single choices overridden (values may be enum values as
    text, as a scenario gives them)."""
    base = get_revision(name)
    kw: dict[str, Any] = {}
    types = {f.name: f.type for f in dataclasses.fields(Revision)}
    for key, value in choices.items():
        if key not in types or key == "name":
            raise ValueError(f"unknown KVM revision choice {key!r}")
        cur = getattr(base, key)
        kw[key] = type(cur)(value) if isinstance(cur, Enum) else value
    return dataclasses.replace(base, **kw)
