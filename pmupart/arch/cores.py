"""The core catalogue: real Arm cores keyed by their Linux perf PMU name.

Facts come from each core's Technical Reference Manual (PMCR_EL0.N, PMUVer, FEAT_FGT,
FEAT_HPMN0) and the kernel's PMU driver and device trees (``drivers/perf/arm_pmuv3.c``,
``arch/arm64/boot/dts``) for the perf names.  A value
that table marks UNCONFIRMED is stored with ``confirmed=False`` and the reason in
``assumptions``; ``pmupart cores`` shows it as such.  Per-core cost parameters (CPI,
frequency, exception costs) are *model parameters*, not measurements: they are
documented defaults that scenarios override.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pmupart.arch.events import BASE_EVENTS, V8_2_EVENTS
from pmupart.arch.features import PMUVer
from pmupart.errors import suggest


@dataclass(frozen=True, slots=True)
class CoreCosts:
    """Cycle costs a core charges for the operations later layers model (DESIGN.md decision 6).

    Defaults are order-of-magnitude model parameters, documented where they are used
    (``pmupart.kvm`` costs); none is a measurement of this core.
    """

    exception_entry_el2: int = 120  #: take an exception to EL2 (save state, vector)
    exception_return: int = 80  #: ERET back to the guest
    sysreg_access: int = 10  #: one MRS/MSR of a PMU register executed in place
    irq_entry: int = 300  #: take a physical IRQ and run the GIC acknowledge


@dataclass(frozen=True, slots=True)
class Core:
    """One core type: the PMU facts the model needs and where they come from."""

    name: str  #: short key, ``cortex-a76``
    perf_name: str  #: Linux perf PMU name on DT systems, ``armv8_cortex_a76``
    implementer: int
    part: int
    num_counters: int
    pmuver: PMUVer
    fgt: bool = False
    fgt2: bool = False
    hpmn0: bool = False
    icntr: bool = False
    #: AArch32 implemented at some EL (PMCR.LC/D matter; spec §3; ARM §D24.5.8)
    aarch32: bool = True
    #: a PMU event export bus, so PMCR_EL0.X is RW (the Cortex/Neoverse TRMs describe X as
    #: the export enable); False makes X RAZ/WI (ARM §D24.5.8)
    export_bus: bool = True
    events: frozenset[int] = BASE_EVENTS
    cpi: float = 1.0  #: typical cycles per instruction for the workload model
    freq_mhz: int = 2000
    slots: int = 0  #: PMMIR_EL1.SLOTS (0 = not reported)
    costs: CoreCosts = field(default_factory=CoreCosts)
    assumptions: tuple[str, ...] = ()  #: why a value is not confirmed; empty = all confirmed
    sources: str = ""

    @property
    def confirmed(self) -> bool:
        return not self.assumptions

    @property
    def midr(self) -> int:
        """MIDR_EL1 with variant/revision 0 and architecture 0xF."""
        return (self.implementer << 24) | (0xF << 16) | (self.part << 4)


_V8 = "v8.0 core: PMUv3 by architecture level (cores.md 4.2)"


def _c(name: str, perf: str, part: int, n: int, ver: PMUVer, **kw: object) -> Core:
    kw.setdefault("implementer", 0x41)
    return Core(name=name, perf_name=perf, part=part, num_counters=n, pmuver=ver,
                **kw)  # type: ignore[arg-type]


_UNC_N = "PMCR_EL0.N not found in stored sources; 6 assumed like its neighbours (cores.md 5)"
_UNC_V92 = ("Armv9.2 core: PMUv3p7 and FEAT_FGT follow from the architecture level; "
            "FEAT_HPMN0 UNCONFIRMED (cores.md 4.1)")
_UNC_V90 = "Armv9.0 core: PMUVer p5 expected, FGT/HPMN0 UNCONFIRMED (cores.md 4.2)"
#: Applies to every core: the implemented-event sets are assumptions (events.py).
EVENTS_NOTE = ("implemented-event sets are the common architectural sets by PMU version, "
               "not read from each TRM (an assumption for every core)")

CORES: dict[str, Core] = {c.name: c for c in (
    _c("cortex-a53", "armv8_cortex_a53", 0xD03, 6, PMUVer.V3, cpi=1.6, freq_mhz=1400,
       assumptions=(_V8,), sources="N: QEMU 24526bb, boot logs"),
    _c("cortex-a55", "armv8_cortex_a55", 0xD05, 6, PMUVer.V3P1, cpi=1.4, freq_mhz=1800,
       events=V8_2_EVENTS,
       sources="N: A55 TRM PMCFGR.N, Pixel 6 boot log; PMUVer: QEMU cpu64.c"),
    _c("cortex-a57", "armv8_cortex_a57", 0xD07, 6, PMUVer.V3, cpi=1.1, freq_mhz=1900,
       assumptions=(_V8,), sources="N: QEMU 24526bb"),
    _c("cortex-a72", "armv8_cortex_a72", 0xD08, 6, PMUVer.V3, cpi=0.9, freq_mhz=1800,
       sources="N: A72 TRM; PMUVer: QEMU cpu64.c"),
    _c("cortex-a76", "armv8_cortex_a76", 0xD0B, 6, PMUVer.V3P1, cpi=0.7, freq_mhz=2250,
       events=V8_2_EVENTS,
       sources="N: A76 TRM PMCR_EL0.N; PMUVer/FGT: QEMU cpu64.c"),
    _c("cortex-a78", "armv8_cortex_a78", 0xD41, 6, PMUVer.V3P1, cpi=0.65, freq_mhz=2400,
       events=V8_2_EVENTS,
       assumptions=("PMUVer p1 from the QEMU A78AE model; A78 itself UNCONFIRMED",),
       sources="N: boot logs"),
    _c("cortex-x1", "armv8_cortex_x1", 0xD44, 6, PMUVer.V3P1, cpi=0.55, freq_mhz=2800,
       events=V8_2_EVENTS,
       assumptions=("PMUVer UNCONFIRMED (v8.2-class; p1 likely)",),
       sources="N: Pixel 6 boot log"),
    _c("cortex-a510", "armv9_cortex_a510", 0xD46, 6, PMUVer.V3P5, cpi=1.3, freq_mhz=1800,
       aarch32=True, events=V8_2_EVENTS, assumptions=(_UNC_N, _UNC_V90)),
    _c("cortex-a520", "armv9_cortex_a520", 0xD80, 6, PMUVer.V3P7, fgt=True, cpi=1.25,
       freq_mhz=2000, aarch32=False, events=V8_2_EVENTS,
       assumptions=(_UNC_N, _UNC_V92)),
    _c("cortex-a710", "armv9_cortex_a710", 0xD47, 20, PMUVer.V3P5, cpi=0.7, freq_mhz=2750,
       events=V8_2_EVENTS,
       assumptions=("N = 20 rests on QEMU's cortex-a710 model citing the TRM; not seen in any "
                    "boot log (cores.md 4.2 (h))",),
       sources="PMUVer/FGT/HPMN0: QEMU cpu64.c ID_AA64DFR0 0x000011f010305619"),
    _c("cortex-a715", "armv9_cortex_a715", 0xD4D, 6, PMUVer.V3P5, cpi=0.65, freq_mhz=2800,
       aarch32=False, events=V8_2_EVENTS, assumptions=(_UNC_N, _UNC_V90)),
    _c("cortex-a720", "armv9_cortex_a720", 0xD81, 6, PMUVer.V3P7, fgt=True, cpi=0.6,
       freq_mhz=3000, aarch32=False, events=V8_2_EVENTS,
       assumptions=(_UNC_N, _UNC_V92)),
    _c("cortex-a725", "armv9_cortex_a725", 0xD87, 6, PMUVer.V3P7, fgt=True, cpi=0.6,
       freq_mhz=3000, aarch32=False, events=V8_2_EVENTS,
       assumptions=(_UNC_N, _UNC_V92)),
    _c("cortex-x2", "armv9_cortex_x2", 0xD48, 6, PMUVer.V3P5, cpi=0.5, freq_mhz=3000,
       aarch32=False, events=V8_2_EVENTS, assumptions=(_UNC_N, _UNC_V90)),
    _c("cortex-x3", "armv9_cortex_x3", 0xD4E, 6, PMUVer.V3P5, cpi=0.45, freq_mhz=3200,
       aarch32=False, events=V8_2_EVENTS, assumptions=(_UNC_N, _UNC_V90)),
    _c("cortex-x4", "armv9_cortex_x4", 0xD82, 6, PMUVer.V3P7, fgt=True, cpi=0.42,
       freq_mhz=3300, aarch32=False, events=V8_2_EVENTS,
       assumptions=(_UNC_N, _UNC_V92)),
    _c("cortex-x925", "armv9_cortex_x925", 0xD85, 6, PMUVer.V3P7, fgt=True, cpi=0.4,
       freq_mhz=3600, aarch32=False, events=V8_2_EVENTS,
       assumptions=(_UNC_N, _UNC_V92)),
    _c("neoverse-n1", "armv8_neoverse_n1", 0xD0C, 6, PMUVer.V3P1, cpi=0.8, freq_mhz=3000,
       events=V8_2_EVENTS, slots=5,
       sources="N: QEMU neoverse-n1 PMCR 0x410c3000 (N1 TRM D5.1); PMUVer: QEMU"),
    _c("neoverse-n2", "armv9_neoverse_n2", 0xD49, 6, PMUVer.V3P5, cpi=0.7, freq_mhz=3000,
       events=V8_2_EVENTS, slots=5,
       sources="N: QEMU neoverse-n2 (N2 TRM B.7.2), libpfm4; ID: QEMU 0x000011f210305619"),
    _c("neoverse-n3", "armv9_neoverse_n3", 0xD8E, 6, PMUVer.V3P7, fgt=True, cpi=0.65,
       freq_mhz=3200, aarch32=False, events=V8_2_EVENTS, slots=5,
       assumptions=(_UNC_N, _UNC_V92)),
    _c("neoverse-v1", "armv8_neoverse_v1", 0xD40, 6, PMUVer.V3P4, cpi=0.6, freq_mhz=2600,
       events=V8_2_EVENTS, slots=8,
       sources="N: QEMU neoverse-v1 PMCR 0x41213000 (V1 TRM 5.5.1); PMUVer: QEMU"),
    _c("neoverse-v2", "armv8_neoverse_v2", 0xD4F, 6, PMUVer.V3P5, cpi=0.5, freq_mhz=3100,
       aarch32=False, events=V8_2_EVENTS, slots=8,
       assumptions=("N = 6 per the libpfm4 man page only, not a TRM value", _UNC_V90)),
    _c("neoverse-v3", "armv8_neoverse_v3", 0xD84, 6, PMUVer.V3P7, fgt=True, cpi=0.45,
       freq_mhz=3300, aarch32=False, events=V8_2_EVENTS, slots=10,
       assumptions=("N = 6 per the libpfm4 man page only, not a TRM value", _UNC_V92)),
    _c("c1-pro", "armv8_c1_pro", 0xD8B, 6, PMUVer.V3P8, fgt=True, hpmn0=True, cpi=0.6,
       freq_mhz=3200, aarch32=False, events=V8_2_EVENTS,
       assumptions=(_UNC_N, "Armv9.3 core: FEAT_HPMN0 and PMUv3p8 follow from the "
                    "architecture level (cores.md 4.1/4.2), UNCONFIRMED on silicon")),
    _c("c1-ultra", "armv8_c1_ultra", 0xD8C, 6, PMUVer.V3P8, fgt=True, hpmn0=True, cpi=0.38,
       freq_mhz=3800, aarch32=False, events=V8_2_EVENTS, slots=10,
       assumptions=(_UNC_N, "Armv9.3 core: FEAT_HPMN0 and PMUv3p8 follow from the "
                    "architecture level (cores.md 4.1/4.2), UNCONFIRMED on silicon")),
    _c("ampereone", "armv8_pmuv3_0", 0xAC3, 6, PMUVer.V3P5, implementer=0xC0, cpi=0.6,
       freq_mhz=3000, aarch32=False, events=V8_2_EVENTS,
       assumptions=("every PMU value UNCONFIRMED (cores.md 4.2); perf name is the ACPI one",)),
)}

_BY_PERF = {c.perf_name: c for c in CORES.values()}


def get_core(name: str) -> Core:
    """A core by catalogue key (``cortex-a76``) or perf PMU name (``armv8_cortex_a76``)."""
    if not isinstance(name, str):
        raise TypeError(f"core name must be a str, not {type(name).__name__}")
    key = name.strip().lower()
    c = CORES.get(key) or _BY_PERF.get(key) or CORES.get(key.replace("_", "-"))
    if c is None:
        raise ValueError(f"unknown core {name!r}{suggest(key, list(CORES) + list(_BY_PERF))}; "
                         f"the catalogue has: {', '.join(CORES)}")
    return c
