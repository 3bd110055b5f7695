"""The host's ``/sys/bus/event_source/devices/<pmu>/`` trees, rendered and imported.

What each file holds, and where the kernel makes it (Linux 6.8 and later; older kernels
lack the three ``threshold`` formats and ``caps/threshold_max``, see ``threshold=``):

=============================== ==========================================================
``type``                        ``"%d\\n"`` of the dynamic perf type (``kernel/events/core.c``
                                ``type_show``)
``perf_event_mux_interval_ms``  ``"%d\\n"`` of ``hrtimer_interval_ms``; the arm PMU driver
                                leaves it 0, so ``__perf_mux_hrtimer_init`` sets the default
                                ``PERF_CPU_HRTIMER`` = ``1000 / HZ``
``cpus``                        cpulist of ``supported_cpus`` (``drivers/perf/arm_pmu.c``
                                ``cpus_show``, ``cpumap_print_to_pagebuf(true, ...)``)
``format/*``                    ``drivers/perf/arm_pmuv3.c`` ``armv8_pmuv3_format_attrs``:
                                ``event`` ``config:0-15``, ``long`` ``config1:0``, ``rdpmc``
                                ``config1:1``, ``threshold_count`` ``config1:2``,
                                ``threshold_compare`` ``config1:3-4``, ``threshold``
                                ``config1:5-16`` (single bits print without a range: the
                                ``GEN_PMU_FORMAT_ATTR`` convention); always visible
``events/<name>``               ``"event=0x%04llx\\n"`` (``armv8pmu_events_sysfs_show``), only
                                for events set in PMCEID0/1 as read at probe
                                (``armv8pmu_event_attr_is_visible``); ``chain`` is never
                                listed; names are the kernel's lower-case ones
``caps/slots``, ``bus_slots``,  ``"0x%08x\\n"`` from PMMIR_EL1, which the probe reads only on
``bus_width``, ``threshold_max`` PMUv3p4+ with STALL_SLOT (PMCEID1 bit 31) implemented, else
                                0 (``__armv8pmu_probe_pmu``); ``bus_width`` decodes
                                ``1 << (BUS_WIDTH - 1)`` for 3..12; ``threshold_max`` is
                                ``(1 << THWIDTH) - 1``
=============================== ==========================================================

Left out: ``uevent``, ``power/``, the ``subsystem`` link, and ``nr_addr_filters`` (only
shown for PMUs with address filters).  ``PMCR_EL0.N`` is nowhere in sysfs; an imported
host takes it from the catalogue unless overridden.

The probe is modelled by reading a :class:`pmupart.arch.PE` of the PMU's core at EL2 (the
VHE host), as ``__armv8pmu_probe_pmu`` reads the hardware: PMCEID0/1_EL0, PMMIR_EL1.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from pmupart.arch.cores import CORES, Core, get_core
from pmupart.arch.features import PMUVer
from pmupart.arch.pe import PE
from pmupart.host.topology import (
    ACPI_PMU_BASE_NAME,
    Cluster,
    Firmware,
    PmuDesc,
    Topology,
    TopologyError,
    cpulist,
    override_note,
    parse_cpulist,
)

#: ``CONFIG_HZ`` assumed for ``perf_event_mux_interval_ms`` (= 1000 / HZ, C integer
#: division).  ASSUMPTION: 250 is the ``kernel/Kconfig.hz`` default (``default HZ_250``),
#: which a config that does not choose HZ gets; distributions differ: a HZ=1000 kernel
#: shows 1, HZ=300 shows 3, HZ=100 shows 10.
DEFAULT_HZ = 250

#: ``format/`` files of ``drivers/perf/arm_pmuv3.c`` (name -> contents without newline).
FORMATS: dict[str, str] = {
    "event": "config:0-15",
    "long": "config1:0",
    "rdpmc": "config1:1",
}
#: The FEAT_PMUv3_TH formats, added in Linux 6.8 (James Clark, "arm64: perf: Add support for
#: event counting threshold", commit 816c2675).
THRESHOLD_FORMATS: dict[str, str] = {
    "threshold_count": "config1:2",
    "threshold_compare": "config1:3-4",
    "threshold": "config1:5-16",
}

#: The kernel's sysfs event names (``armv8_pmuv3_event_attrs``) and numbers: the Arm ARM
#: common events, lower-cased.  CHAIN (0x1e) is deliberately absent, as in the kernel.
KERNEL_EVENTS: dict[int, str] = {
    0x00: "sw_incr", 0x01: "l1i_cache_refill", 0x02: "l1i_tlb_refill",
    0x03: "l1d_cache_refill", 0x04: "l1d_cache", 0x05: "l1d_tlb_refill",
    0x06: "ld_retired", 0x07: "st_retired", 0x08: "inst_retired", 0x09: "exc_taken",
    0x0A: "exc_return", 0x0B: "cid_write_retired", 0x0C: "pc_write_retired",
    0x0D: "br_immed_retired", 0x0E: "br_return_retired", 0x0F: "unaligned_ldst_retired",
    0x10: "br_mis_pred", 0x11: "cpu_cycles", 0x12: "br_pred", 0x13: "mem_access",
    0x14: "l1i_cache", 0x15: "l1d_cache_wb", 0x16: "l2d_cache", 0x17: "l2d_cache_refill",
    0x18: "l2d_cache_wb", 0x19: "bus_access", 0x1A: "memory_error", 0x1B: "inst_spec",
    0x1C: "ttbr_write_retired", 0x1D: "bus_cycles", 0x1F: "l1d_cache_allocate",
    0x20: "l2d_cache_allocate", 0x21: "br_retired", 0x22: "br_mis_pred_retired",
    0x23: "stall_frontend", 0x24: "stall_backend", 0x25: "l1d_tlb", 0x26: "l1i_tlb",
    0x27: "l2i_cache", 0x28: "l2i_cache_refill", 0x29: "l3d_cache_allocate",
    0x2A: "l3d_cache_refill", 0x2B: "l3d_cache", 0x2C: "l3d_cache_wb",
    0x2D: "l2d_tlb_refill", 0x2E: "l2i_tlb_refill", 0x2F: "l2d_tlb", 0x30: "l2i_tlb",
    0x31: "remote_access", 0x32: "ll_cache", 0x33: "ll_cache_miss", 0x34: "dtlb_walk",
    0x35: "itlb_walk", 0x36: "ll_cache_rd", 0x37: "ll_cache_miss_rd",
    0x38: "remote_access_rd", 0x39: "l1d_cache_lmiss_rd", 0x3A: "op_retired",
    0x3B: "op_spec", 0x3C: "stall", 0x3D: "stall_slot_backend", 0x3E: "stall_slot_frontend",
    0x3F: "stall_slot",
    0x4000: "sample_pop", 0x4001: "sample_feed", 0x4002: "sample_filtrate",
    0x4003: "sample_collision", 0x4004: "cnt_cycles", 0x4005: "stall_backend_mem",
    0x4006: "l1i_cache_lmiss", 0x4009: "l2d_cache_lmiss_rd", 0x400A: "l2i_cache_lmiss",
    0x400B: "l3d_cache_lmiss_rd", 0x400C: "trb_wrap", 0x400E: "trb_trig",
    0x4010: "trcextout0", 0x4011: "trcextout1", 0x4012: "trcextout2", 0x4013: "trcextout3",
    0x4018: "cti_trigout4", 0x4019: "cti_trigout5", 0x401A: "cti_trigout6",
    0x401B: "cti_trigout7", 0x4020: "ldst_align_lat", 0x4021: "ld_align_lat",
    0x4022: "st_align_lat", 0x4024: "mem_access_checked", 0x4025: "mem_access_checked_rd",
    0x4026: "mem_access_checked_wr",
}

_EXT_BASE = 0x4000  # ARMV8_PMUV3_EXT_COMMON_EVENT_BASE
_MAX_COMMON = 0x40  # ARMV8_PMUV3_MAX_COMMON_EVENTS


def _probe(core: Core) -> tuple[int, int, int]:
    """``__armv8pmu_probe_pmu``: (PMCEID0, PMCEID1, PMMIR as stored) for ``core``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what-if warnings belong to the catalogue, not here
        pe = PE.from_core(core)
    with pe.at_el(2):
        ceid0 = pe.read("PMCEID0_EL0").value or 0
        ceid1 = pe.read("PMCEID1_EL0").value or 0
        pmmir = 0
        if pe.pmuver >= PMUVer.V3P4 and ceid1 & (1 << 31):
            pmmir = pe.read("PMMIR_EL1").value or 0
    return ceid0, ceid1, pmmir


def probed_pmmir(core: Core) -> int:
    """``arm_pmu->reg_pmmir``: PMMIR_EL1 as ``__armv8pmu_probe_pmu`` stored it (0 below
    PMUv3p4 or without STALL_SLOT in PMCEID1)."""
    return _probe(core)[2]


def visible_events(core: Core) -> dict[str, int]:
    """Kernel event name -> number for the events ``armv8pmu_event_attr_is_visible`` shows."""
    ceid0, ceid1, _ = _probe(core)
    common = (ceid0 & 0xFFFFFFFF) | ((ceid1 & 0xFFFFFFFF) << 32)
    ext = (ceid0 >> 32) | ((ceid1 >> 32) << 32)
    out: dict[str, int] = {}
    for num, name in KERNEL_EVENTS.items():
        if num < _MAX_COMMON:
            shown = bool(common >> num & 1)
        else:
            shown = num - _EXT_BASE < _MAX_COMMON and bool(ext >> (num - _EXT_BASE) & 1)
        if shown:
            out[name] = num
    return out


def render_pmu(pmu: PmuDesc, *, hz: int = DEFAULT_HZ, threshold: bool = True) -> dict[str, str]:
    """One PMU's files: path relative to the PMU directory -> contents (with the newline)."""
    _, _, pmmir = _probe(pmu.core)
    files: dict[str, str] = {
        "type": f"{pmu.type}\n",
        "cpus": f"{cpulist(pmu.cpus)}\n",
        "perf_event_mux_interval_ms": f"{1000 // hz}\n",
    }
    formats = dict(FORMATS)
    if threshold:
        formats.update(THRESHOLD_FORMATS)
    for name, spec in formats.items():
        files[f"format/{name}"] = spec + "\n"
    for name, num in visible_events(pmu.core).items():
        files[f"events/{name}"] = f"event=0x{num:04x}\n"
    slots = pmmir & 0xFF
    bus_slots = (pmmir >> 8) & 0xFF
    bw = (pmmir >> 16) & 0xF
    bus_width = 1 << (bw - 1) if 2 < bw < 13 else 0
    caps = {"slots": slots, "bus_slots": bus_slots, "bus_width": bus_width}
    if threshold:
        caps["threshold_max"] = (1 << ((pmmir >> 20) & 0xF)) - 1
    for name, val in caps.items():
        files[f"caps/{name}"] = f"0x{val:08x}\n"
    return dict(sorted(files.items()))


def render_sysfs(topology: Topology, *, hz: int = DEFAULT_HZ,
                 threshold: bool = True) -> dict[str, str]:
    """Every CPU PMU's tree: ``"<pmu>/<file>"`` -> contents with the kernel's newline.

    PMUs come in probe order, files sorted within each.  ``hz`` is the kernel's
    ``CONFIG_HZ`` (sets ``perf_event_mux_interval_ms``); ``threshold=False`` renders a
    kernel before 6.8 (no FEAT_PMUv3_TH formats or ``caps/threshold_max``).
    """
    if isinstance(hz, bool) or not isinstance(hz, int) or not 1 <= hz <= 1000:
        raise ValueError(f"hz must be an int in 1..1000 (CONFIG_HZ), not {hz!r}")
    out: dict[str, str] = {}
    for pmu in topology.pmus():
        for rel, text in render_pmu(pmu, hz=hz, threshold=threshold).items():
            out[f"{pmu.name}/{rel}"] = text
    return out


def write_sysfs(topology: Topology, dest_dir: str | Path, *, hz: int = DEFAULT_HZ,
                threshold: bool = True) -> Path:
    """Write :func:`render_sysfs` under ``dest_dir`` (created); return ``dest_dir``."""
    dest = Path(dest_dir)
    for rel, text in render_sysfs(topology, hz=hz, threshold=threshold).items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="ascii")
    return dest


# ---------------------------------------------------------------------- import
_ACPI_NAME = re.compile(rf"^{ACPI_PMU_BASE_NAME}_(\d+)$")


def parse_cpuinfo(text: str) -> dict[int, int]:
    """arm64 ``/proc/cpuinfo`` -> {cpu: MIDR} from each processor's implementer/variant/part/
    revision lines (``arch/arm64/kernel/cpuinfo.c`` ``c_show``)."""
    out: dict[int, int] = {}
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
        if "processor" not in fields or "cpu part" not in fields:
            continue
        try:
            cpu = int(fields["processor"])
            impl = int(fields.get("cpu implementer", "0"), 0)
            part = int(fields["cpu part"], 0)
            var = int(fields.get("cpu variant", "0"), 0)
            rev = int(fields.get("cpu revision", "0"), 0)
        except ValueError as e:
            raise TopologyError("<cpuinfo>", 0, f"processor {fields['processor']}",
                                f"expected numbers in the CPU lines, {e}") from None
        out[cpu] = (impl << 24) | (var << 20) | (0xF << 16) | (part << 4) | rev
    return out


def read_midr_files(cpu_dir: str | Path) -> dict[int, int]:
    """{cpu: MIDR} from ``cpu*/regs/identification/midr_el1`` under a copy of
    ``/sys/devices/system/cpu``."""
    out: dict[int, int] = {}
    for f in sorted(Path(cpu_dir).glob("cpu[0-9]*/regs/identification/midr_el1")):
        cpu = int(f.parts[-4][3:])
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TopologyError(str(f), 0, "", f"cannot read a MIDR_EL1: {e}") from None
        try:
            out[cpu] = int(text.strip(), 16)
        except ValueError:
            raise TopologyError(str(f), 1, "", "expected a hex MIDR_EL1 such as "
                                f"0x00000000412fd050, found {text.strip()[:40]!r}") from None
    return out


def _core_for_midr(cpu: int, midr: int, source: str) -> Core:
    impl, part = (midr >> 24) & 0xFF, (midr >> 4) & 0xFFF
    for c in CORES.values():
        if c.implementer == impl and c.part == part:
            return c
    known = ", ".join(f"{c.implementer:#x}:{c.part:#05x} {c.name}" for c in CORES.values())
    raise TopologyError(source, 0, f"cpu{cpu}",
                        f"MIDR {midr:#010x} (implementer {impl:#x}, part {part:#05x}) is not in "
                        f"the core catalogue; known implementer:part pairs: {known}. Add the "
                        "core to pmupart.arch.cores")


def import_sysfs(devices_dir: str | Path, cpuinfo: str | Path | None = None, *,
                 midr: Mapping[int, int] | str | Path | None = None,
                 num_counters: Mapping[str, int] | None = None,
                 name: str = "imported", description: str = "") -> Topology:
    """Build a :class:`Topology` from a copy of a host's ``/sys/bus/event_source/devices``.

    CPU PMUs are the directories with a ``cpus`` file.  Each CPU is mapped to a catalogue
    core by its MIDR part number, from ``cpuinfo`` (``/proc/cpuinfo``: a path, or its text
    when it contains a newline) or ``midr`` (a copy of ``/sys/devices/system/cpu`` with
    ``cpu*/regs/identification/midr_el1``, or a {cpu: MIDR} mapping).  Without either, DT
    PMU names (``armv8_cortex_a76``) name the core; ACPI names need the MIDRs.

    ``num_counters`` overrides PMCR_EL0.N, keyed by PMU name or core name (sysfs does not
    show N; take it from ``dmesg``: "hw perfevents: enabled with ... K counters" means
    N = K - 1).  Perf type numbers are kept from the ``type`` files.
    """
    root = Path(devices_dir)
    src = str(root)
    if not root.is_dir():
        raise TopologyError(src, 0, "", "expected a directory (a copy of "
                            "/sys/bus/event_source/devices), found none")
    midrs: dict[int, int] | None = None
    midr_src = ""
    if cpuinfo is not None:
        if isinstance(cpuinfo, Path) or "\n" not in cpuinfo:
            midr_src = str(cpuinfo)
            try:
                text = Path(cpuinfo).read_text(encoding="utf-8")
            except OSError as e:
                raise TopologyError(midr_src, 0, "", f"cannot read: {e.strerror}") from None
        else:
            midr_src, text = "<cpuinfo>", cpuinfo
        midrs = parse_cpuinfo(text)
        if not midrs:
            raise TopologyError(midr_src, 0, "", "expected arm64 /proc/cpuinfo blocks with "
                                "'processor' and 'CPU part' lines, found none")
    elif midr is not None:
        if isinstance(midr, Mapping):
            midrs, midr_src = dict(midr), "<midr>"
        else:
            midrs, midr_src = read_midr_files(midr), str(midr)
            if not midrs:
                raise TopologyError(midr_src, 0, "", "expected cpu*/regs/identification/"
                                    "midr_el1 files, found none")
    found: list[tuple[int, str, tuple[int, ...]]] = []
    for d in sorted(root.iterdir()):
        cpus_f = d / "cpus"
        if not cpus_f.is_file():
            continue
        try:
            cpus = parse_cpulist(cpus_f.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise TopologyError(str(cpus_f), 1, "", "expected a cpulist (0-3,6), found bytes "
                                "that are not UTF-8 text") from None
        except OSError as e:
            raise TopologyError(str(cpus_f), 0, "", f"cannot read: {e.strerror or e}") from None
        except ValueError as e:
            raise TopologyError(str(cpus_f), 1, "", str(e)) from None
        try:
            typ = int((d / "type").read_text().strip())
        except (OSError, ValueError):
            raise TopologyError(str(d / "type"), 1, "", "expected the PMU's perf type "
                                "number (a decimal integer)") from None
        if cpus:
            for _, other, theirs in found:
                both = sorted(set(cpus) & set(theirs))
                if both:
                    # drivers/perf/arm_pmu.c: each CPU has one PMU (the per-CPU armpmu)
                    raise TopologyError(str(cpus_f), 1, "", f"PMUs {other} and {d.name} both "
                                        f"claim CPU {both[0]} (a CPU has one PMU)")
            found.append((typ, d.name, cpus))
    if not found:
        raise TopologyError(src, 0, "", "expected at least one CPU PMU directory (one with a "
                            "'cpus' file, e.g. armv8_cortex_a76/ or armv8_pmuv3_0/), found none")
    found.sort()
    acpi = [bool(_ACPI_NAME.match(n)) for _, n, _ in found]
    if any(acpi) and not all(acpi):
        raise TopologyError(src, 0, "", "found both ACPI (armv8_pmuv3_<n>) and DT PMU names: "
                            + ", ".join(n for _, n, _ in found))
    firmware: Firmware = "acpi" if all(acpi) else "dt"
    overrides = dict(num_counters or {})
    cpu_core: dict[int, Core] = {}
    pmu_cores: list[Core] = []
    for _, pname, cpus in found:
        core: Core | None = None
        if midrs is None:
            if firmware == "acpi":
                raise TopologyError(src, 0, pname, "an ACPI PMU name does not say the core: "
                                    "give /proc/cpuinfo (cpuinfo=) or the MIDR files (midr=)")
            try:
                core = get_core(pname)
            except ValueError as e:
                raise TopologyError(src, 0, pname, str(e)) from None
        else:
            kinds: dict[str, Core] = {}
            for cpu in cpus:
                if cpu not in midrs:
                    raise TopologyError(midr_src, 0, f"cpu{cpu}",
                                        f"PMU {pname} covers CPU {cpu}, which has no MIDR here")
                c = _core_for_midr(cpu, midrs[cpu], midr_src)
                kinds[c.name] = c
            if len(kinds) != 1:
                raise TopologyError(src, 0, pname, "expected one core type per PMU, found "
                                    + ", ".join(sorted(kinds)))
            core = next(iter(kinds.values()))
            if firmware == "dt" and pname != core.perf_name and pname != "armv8_pmuv3":
                raise TopologyError(src, 0, pname, f"the MIDRs say {core.name} "
                                    f"({core.perf_name}), the PMU name disagrees")
        n = overrides.pop(pname, None)
        if n is None:
            n = overrides.get(core.name)
        if n is not None and n != core.num_counters:
            core = replace(core, num_counters=n)
        pmu_cores.append(core)
        for cpu in cpus:
            cpu_core[cpu] = core
    unknown = set(overrides) - {c.name for c in pmu_cores}
    if unknown:
        raise TopologyError(src, 0, "num_counters", "keys must be PMU or core names of this "
                            f"host ({', '.join(n for _, n, _ in found)}), not "
                            + ", ".join(sorted(unknown)))
    clusters: list[Cluster] = []
    run: list[int] = []
    for cpu in sorted(cpu_core):
        if run and (cpu_core[cpu] != cpu_core[run[-1]] or cpu != run[-1] + 1):
            clusters.append(Cluster(f"cluster{len(clusters)}", cpu_core[run[0]], tuple(run)))
            run = []
        run.append(cpu)
    clusters.append(Cluster(f"cluster{len(clusters)}", cpu_core[run[0]], tuple(run)))
    types = tuple(t for t, _, _ in found)
    order = tuple(c.name for c in pmu_cores)
    notes = [override_note(c) for c in pmu_cores
             if c.name in CORES and c.num_counters != CORES[c.name].num_counters]
    topo = Topology(name=name, clusters=tuple(clusters), firmware=firmware,
                    description=description or f"imported from {src}",
                    assumptions=tuple(notes), pmu_order=order if firmware == "dt" else ())
    if tuple(c.name for c in replace(topo, pmu_order=()).cores) == order:
        topo = replace(topo, pmu_order=())  # the default (CPU order) says the same
    base = types[0]
    if types == tuple(range(base, base + len(types))) and base >= 6:
        topo = replace(topo, pmu_type_base=base)
    else:
        topo = replace(topo, pmu_types=types)
    return topo
