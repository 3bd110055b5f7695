"""Machine topologies: clusters of catalogue cores, the host's perf PMUs, real SoC presets.

A :class:`Topology` says which core each physical CPU is.  From it, :meth:`Topology.pmus`
derives the CPU PMUs Linux registers, named and numbered as the kernel does:

- **DT systems**: one PMU per core type, probed from the device tree's per-core PMU node
  (``arm,cortex-a76-pmu`` ...), named by the driver's table (``armv8_cortex_a76``;
  ``drivers/perf/arm_pmuv3.c``, ``armv8_pmu_of_device_ids`` / ``PMUV3_INIT_SIMPLE``).
  Probe order is the order of the PMU nodes in the device tree (platform devices are
  created in node order); by default the order of each core type's lowest CPU, or the
  preset's ``pmu_order`` where the DT is known to differ (sm8550 lists
  ``pmu-a510, pmu-a710, pmu-a715, pmu-x3``).
- **ACPI systems**: one PMU per distinct MIDR, found walking the CPUs in order, named
  ``armv8_pmuv3_<n>`` (``drivers/perf/arm_pmu_acpi.c``: ``arm_pmu_acpi_probe()`` names
  them ``"%s_%d"`` from the base name ``armv8_pmuv3``).
- **perf type numbers**: ``perf_pmu_register(pmu, name, -1)`` takes the lowest free id
  from ``pmu_idr`` at or above ``PERF_TYPE_MAX`` (6) (``kernel/events/core.c``).  Before
  the CPU PMUs register at ``device_initcall``, ``kprobe`` and ``uprobe`` usually hold 6
  and 7, so the first CPU PMU gets 8: RK3399 shows ``armv8_cortex_a53`` = 8,
  ``armv8_cortex_a72`` = 9, and a 160-CPU ACPI server ``armv8_pmuv3_0`` = 8 (Marc
  Zyngier's sysfs listing on the lists).  ASSUMPTION: the base depends on the kernel's
  config and version (kernels since the ``perf_pmu_register`` rework also give ids to
  ``cpu_clock``/``task_clock``, which moves it to 10; a kernel without uprobes gives 7),
  so it is the ``pmu_type_base`` field, default :data:`DEFAULT_PMU_TYPE_BASE`; PMUs take
  consecutive numbers in probe order.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pmupart.arch.cores import CORES, Core, get_core
from pmupart.errors import InputError, suggest
from pmupart.tomlpos import field_path, line_of

Firmware = Literal["dt", "acpi"]

#: perf types fixed by the UAPI (``enum perf_type_id``); dynamic PMUs start at PERF_TYPE_MAX.
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4
PERF_TYPE_BREAKPOINT = 5
PERF_TYPE_MAX = 6
#: Type of the first CPU PMU (kprobe = 6, uprobe = 7 before it).  ASSUMPTION, see module doc.
DEFAULT_PMU_TYPE_BASE = 8
#: Base name the ACPI probe suffixes with ``_<n>`` (``arm_pmu_acpi_probe``).
ACPI_PMU_BASE_NAME = "armv8_pmuv3"


class TopologyError(InputError):
    """A topology (TOML file, mapping or imported sysfs tree) is malformed: ``path`` is the
    file (or ``<mapping>``), ``line`` the line where known (0 when not), ``field`` the field
    path (``cluster[1].count``), ``msg`` what was expected and found (see
    :class:`pmupart.errors.InputError`)."""


@dataclass(frozen=True, slots=True)
class Cluster:
    """CPUs of one core type that share a frequency domain (the SoC's cluster)."""

    name: str
    core: Core
    cpus: tuple[int, ...]
    freq_mhz: int | None = None  #: None = the core's catalogue ``freq_mhz``

    @property
    def freq(self) -> int:
        """Clock in MHz: the cluster's own, else the catalogue core's."""
        return self.freq_mhz if self.freq_mhz is not None else self.core.freq_mhz


@dataclass(frozen=True, slots=True)
class PmuDesc:
    """One CPU PMU as the host kernel registers it (a ``/sys/bus/event_source`` device)."""

    name: str  #: ``armv8_cortex_a76`` (DT) or ``armv8_pmuv3_0`` (ACPI)
    type: int  #: the dynamic perf type: ``perf_event_attr.type``, KVM's SET_PMU argument
    cpus: tuple[int, ...]  #: ``supported_cpus``, ascending
    core: Core

    @property
    def num_counters(self) -> int:
        """PMCR_EL0.N of this PMU's CPUs (general-purpose counters, without the cycle one)."""
        return self.core.num_counters


def cpulist(cpus: Sequence[int]) -> str:
    """Format CPUs as the kernel's cpulist (``0-3,6``; ``bitmap_print_to_pagebuf(true)``)."""
    out: list[str] = []
    s = sorted(set(cpus))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(out)


def parse_cpulist(text: str) -> tuple[int, ...]:
    """Parse a cpulist (``0-3,6``, the inverse of :func:`cpulist`); ``ValueError`` if bad."""
    cpus: set[int] = set()
    t = text.strip()
    if not t:
        return ()
    for part in t.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise ValueError(f"cpulist must look like '0-3,6', not {text!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"cpulist range {part!r} runs backwards in {text!r}")
        cpus.update(range(lo, hi + 1))
    return tuple(sorted(cpus))


@dataclass(frozen=True, slots=True)
class Topology:
    """A machine's CPUs, grouped in clusters of catalogue cores, and how its kernel boots.

    ``pmu_order`` lists core names (catalogue keys) in DT probe order when it differs from
    CPU order; ``pmu_types`` gives explicit perf type numbers (probe order), overriding
    ``pmu_type_base`` (used for imported hosts whose numbers are not consecutive).
    """

    name: str
    clusters: tuple[Cluster, ...]
    firmware: Firmware = "dt"
    description: str = ""
    assumptions: tuple[str, ...] = ()
    pmu_type_base: int = DEFAULT_PMU_TYPE_BASE
    pmu_order: tuple[str, ...] = ()
    pmu_types: tuple[int, ...] = ()
    _by_cpu: dict[int, Cluster] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"topology {self.name!r}"
        if not self.clusters:
            raise ValueError(f"{where}: must have at least one cluster")
        if self.firmware not in ("dt", "acpi"):
            raise ValueError(f"{where}: firmware must be 'dt' or 'acpi', not {self.firmware!r}")
        by_cpu: dict[int, Cluster] = {}
        for cl in self.clusters:
            if not cl.cpus:
                raise ValueError(f"{where}: cluster {cl.name!r} has no CPUs")
            for cpu in cl.cpus:
                if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0:
                    raise ValueError(f"{where}: CPU numbers must be ints >= 0, not {cpu!r}")
                if cpu in by_cpu:
                    raise ValueError(f"{where}: CPU {cpu} is in both cluster "
                                     f"{by_cpu[cpu].name!r} and cluster {cl.name!r}")
                by_cpu[cpu] = cl
        if self.pmu_type_base < PERF_TYPE_MAX:
            raise ValueError(f"{where}: pmu_type_base must be >= PERF_TYPE_MAX ({PERF_TYPE_MAX})"
                             f", not {self.pmu_type_base}")
        object.__setattr__(self, "_by_cpu", by_cpu)
        present = {cl.core.name for cl in self.clusters}
        for c in self.pmu_order:
            if c not in present:
                raise ValueError(f"{where}: pmu_order names {c!r}, which is not one of its "
                                 f"cores ({', '.join(sorted(present))})")
        n_pmus = len(self._core_groups())
        if self.pmu_types and len(self.pmu_types) != n_pmus:
            raise ValueError(f"{where}: pmu_types must give {n_pmus} numbers (one per PMU), "
                             f"not {len(self.pmu_types)}")
        if len(set(self.pmu_types)) != len(self.pmu_types):
            raise ValueError(f"{where}: pmu_types must be distinct, not {self.pmu_types}")

    # ------------------------------------------------------------------ CPUs
    @property
    def num_cpus(self) -> int:
        return len(self._by_cpu)

    @property
    def cpus(self) -> tuple[int, ...]:
        """Every CPU number, ascending."""
        return tuple(sorted(self._by_cpu))

    def cluster_of(self, cpu: int) -> Cluster:
        try:
            return self._by_cpu[cpu]
        except KeyError:
            raise ValueError(f"CPU {cpu!r} is not in topology {self.name!r} "
                             f"(CPUs {cpulist(list(self._by_cpu))})") from None

    def core_of(self, cpu: int) -> Core:
        return self.cluster_of(cpu).core

    def cpus_of(self, core_name: str) -> tuple[int, ...]:
        """CPUs whose core is ``core_name`` (catalogue key or perf name); () if none here."""
        core = get_core(core_name)
        return tuple(sorted(c for c, cl in self._by_cpu.items() if cl.core.name == core.name))

    @property
    def cores(self) -> tuple[Core, ...]:
        """Distinct core types, in PMU probe order."""
        return tuple(core for core, _ in self._core_groups())

    @property
    def heterogeneous(self) -> bool:
        return len({cl.core.name for cl in self.clusters}) > 1

    # ------------------------------------------------------------------ PMUs
    def _core_groups(self) -> list[tuple[Core, tuple[int, ...]]]:
        """(core, cpus) per PMU, in probe order (see the module docstring)."""
        groups: dict[str, list[int]] = {}
        cores: dict[str, Core] = {}
        for cpu in sorted(self._by_cpu):
            core = self._by_cpu[cpu].core
            # ACPI groups by MIDR (arm_pmu_acpi_find_alloc_pmu compares read_cpuid_id());
            # the catalogue's MIDR has variant/revision 0, so the key is the core.  A core
            # whose counter count was overridden is a different PMU only if N differs.
            key = f"{core.name}/{core.num_counters}"
            groups.setdefault(key, []).append(cpu)
            cores[key] = core
        keys = list(groups)
        if self.firmware == "dt" and self.pmu_order:
            rank = {name: i for i, name in enumerate(self.pmu_order)}
            keys.sort(key=lambda k: (rank.get(cores[k].name, len(rank)), groups[k][0]))
        return [(cores[k], tuple(groups[k])) for k in keys]

    def pmus(self) -> tuple[PmuDesc, ...]:
        """The CPU PMUs the host kernel registers, in probe order, with their perf types."""
        out: list[PmuDesc] = []
        for i, (core, cpus) in enumerate(self._core_groups()):
            name = f"{ACPI_PMU_BASE_NAME}_{i}" if self.firmware == "acpi" else core.perf_name
            typ = self.pmu_types[i] if self.pmu_types else self.pmu_type_base + i
            out.append(PmuDesc(name=name, type=typ, cpus=cpus, core=core))
        names = [p.name for p in out]
        if len(set(names)) != len(names):
            raise ValueError(f"topology {self.name!r}: two PMUs would both be named "
                             f"{names!r}: a DT system cannot have one core type with two "
                             "counter counts")
        return tuple(out)

    def pmu(self, name: str) -> PmuDesc:
        """The PMU called ``name`` (``armv8_cortex_a76``); ``ValueError`` with suggestions."""
        pmus = self.pmus()
        for p in pmus:
            if p.name == name:
                return p
        names = [p.name for p in pmus]
        raise ValueError(f"no PMU {name!r} in topology {self.name!r}{suggest(name, names)}; "
                         f"it has: {', '.join(names)}")

    def pmu_of(self, cpu: int) -> PmuDesc:
        """The PMU that covers ``cpu``."""
        self.cluster_of(cpu)
        return next(p for p in self.pmus() if cpu in p.cpus)

    def to_toml(self) -> str:
        """This topology as TOML that :meth:`from_toml` reads back to an equal topology
        (clusters with explicit ``cpus``; ``num_counters`` where it differs from the
        catalogue).  Use it to save an imported host as a scenario's machine."""
        def q(v: str) -> str:
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out = [f"name = {q(self.name)}", f"firmware = {q(self.firmware)}"]
        if self.description:
            out.append(f"description = {q(self.description)}")
        if self.assumptions:
            out.append("assumptions = [" + ", ".join(q(a) for a in self.assumptions) + "]")
        out.append(f"pmu_type_base = {self.pmu_type_base}")
        if self.pmu_order:
            out.append("pmu_order = [" + ", ".join(q(c) for c in self.pmu_order) + "]")
        if self.pmu_types:
            out.append("pmu_types = [" + ", ".join(str(t) for t in self.pmu_types) + "]")
        for cl in self.clusters:
            out += ["", "[[cluster]]", f"name = {q(cl.name)}", f"core = {q(cl.core.name)}",
                    "cpus = [" + ", ".join(str(c) for c in cl.cpus) + "]"]
            if cl.freq_mhz is not None:
                out.append(f"freq_mhz = {cl.freq_mhz}")
            base = CORES.get(cl.core.name)
            if base is None or base.num_counters != cl.core.num_counters:
                out.append(f"num_counters = {cl.core.num_counters}")
        return "\n".join(out) + "\n"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<mapping>",
                     text: str | None = None) -> Topology:
        """Build a topology from a mapping shaped like the TOML file (see :meth:`from_toml`).

        Errors raise :class:`TopologyError` naming ``source``, the field path and, when the
        TOML ``text`` is given, the line.
        """
        try:
            spec = _TopologySpec.model_validate(dict(data))
        except ValidationError as e:
            err = e.errors()[0]
            loc = tuple(err["loc"])
            found = err.get("input")
            msg = err["msg"]
            if err["type"] == "missing":
                msg = "required field is missing"
            elif err["type"] == "extra_forbidden":
                msg = f"unknown field (expected one of: {_allowed_fields(loc)})"
            else:
                msg = f"{msg}; found {found!r}"
            raise _error(source, text, loc, msg) from None
        return _build(spec, source, text)

    @classmethod
    def from_toml(cls, path_or_text: str | Path) -> Topology:
        """Load a topology from a TOML file (a ``Path``, or a str path) or TOML text.

        A str containing a newline or ``=`` is TOML text; otherwise it is a path::

            name = "my-board"
            firmware = "dt"            # or "acpi"
            [[cluster]]
            core = "cortex-a55"        # catalogue key or perf name
            count = 4                  # CPUs numbered on from the previous cluster
            [[cluster]]
            core = "cortex-a76"
            cpus = [4, 5]              # or explicit CPU numbers
            freq_mhz = 2400
            num_counters = 5           # optional: override PMCR_EL0.N (a host fact)
        """
        if isinstance(path_or_text, Path) or ("\n" not in path_or_text
                                              and "=" not in path_or_text):
            p = Path(path_or_text)
            source = str(p)
            try:
                text = p.read_text(encoding="utf-8")
            except OSError as e:
                raise TopologyError(source, 0, "", f"cannot read the file: {e.strerror}") \
                    from None
        else:
            source, text = "<toml>", path_or_text
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"line (\d+)", str(e))
            raise TopologyError(source, int(m.group(1)) if m else 0, "",
                                f"not valid TOML: {e}") from None
        return cls.from_mapping(data, source=source, text=text)


def override_note(core: Core) -> str:
    """The assumption recorded when a layout gives a core another PMCR_EL0.N."""
    base = CORES[core.name].num_counters if core.name in CORES else "none"
    return (f"{core.name}: N = {core.num_counters} given for this machine "
            f"(catalogue: {base})")


# ---------------------------------------------------------------------- TOML schema
class ClusterSpec(BaseModel):
    """One ``[[cluster]]`` of a machine layout (shared by topology and scenario files)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    core: str
    name: str | None = None
    count: int | None = Field(default=None, ge=1, le=4096)
    cpus: list[int] | None = None
    freq_mhz: int | None = Field(default=None, ge=1)
    num_counters: int | None = Field(default=None, ge=0, le=31)


class _TopologySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = "custom"
    firmware: Firmware = "dt"
    description: str = ""
    assumptions: list[str] = Field(default_factory=list)
    pmu_type_base: int = Field(default=DEFAULT_PMU_TYPE_BASE, ge=PERF_TYPE_MAX)
    pmu_order: list[str] = Field(default_factory=list)
    pmu_types: list[int] = Field(default_factory=list)
    cluster: list[ClusterSpec] = Field(min_length=1)


def _allowed_fields(loc: tuple[int | str, ...]) -> str:
    model: type[BaseModel] = ClusterSpec if loc and loc[0] == "cluster" else _TopologySpec
    return ", ".join(model.model_fields)


def _error(source: str, text: str | None, loc: tuple[int | str, ...], msg: str) -> TopologyError:
    return TopologyError(source, line_of(text, loc), field_path(loc), msg)


def _build(spec: _TopologySpec, source: str, text: str | None) -> Topology:
    clusters: list[Cluster] = []
    used: dict[int, int] = {}
    next_cpu = 0
    for i, cs in enumerate(spec.cluster):
        try:
            core = get_core(cs.core)
        except ValueError as e:
            raise _error(source, text, ("cluster", i, "core"), str(e)) from None
        if cs.num_counters is not None and cs.num_counters != core.num_counters:
            core = replace(core, num_counters=cs.num_counters)
        if cs.cpus is not None:
            if cs.count is not None and cs.count != len(cs.cpus):
                raise _error(source, text, ("cluster", i, "count"),
                             f"count = {cs.count} disagrees with cpus, which lists "
                             f"{len(cs.cpus)} CPUs; give one or make them agree")
            cpus = tuple(cs.cpus)
            if not cpus:
                raise _error(source, text, ("cluster", i, "cpus"),
                             "expected at least one CPU number, found []")
        elif cs.count is not None:
            cpus = tuple(range(next_cpu, next_cpu + cs.count))
        else:
            raise _error(source, text, ("cluster", i),
                         "expected 'count' (CPUs numbered on) or 'cpus' (a list), found "
                         "neither")
        for cpu in cpus:
            if cpu < 0:
                raise _error(source, text, ("cluster", i, "cpus"),
                             f"expected CPU numbers >= 0, found {cpu}")
            if cpu in used:
                raise _error(source, text, ("cluster", i, "cpus"),
                             f"CPU {cpu} is already in cluster[{used[cpu]}]")
            used[cpu] = i
        next_cpu = max(cpus) + 1
        clusters.append(Cluster(name=cs.name or f"cluster{i}", core=core, cpus=cpus,
                                freq_mhz=cs.freq_mhz))
    present = {cl.core.name for cl in clusters}
    order: list[str] = []
    for j, name in enumerate(spec.pmu_order):
        try:
            key = get_core(name).name
        except ValueError as e:
            raise _error(source, text, ("pmu_order", j), str(e)) from None
        if key not in present:
            raise _error(source, text, ("pmu_order", j),
                         f"expected one of this topology's cores "
                         f"({', '.join(sorted(present))}), found {name!r}")
        order.append(key)
    notes = list(spec.assumptions)
    for cl in clusters:
        base = CORES.get(cl.core.name)
        if base is not None and base.num_counters != cl.core.num_counters:
            notes.append(override_note(cl.core))
    try:
        topo = Topology(name=spec.name, clusters=tuple(clusters), firmware=spec.firmware,
                        description=spec.description, assumptions=tuple(dict.fromkeys(notes)),
                        pmu_type_base=spec.pmu_type_base, pmu_order=tuple(order),
                        pmu_types=tuple(spec.pmu_types))
        topo.pmus()
    except ValueError as e:
        raise TopologyError(source, 0, "", str(e)) from None
    return topo


# ---------------------------------------------------------------------- presets
def _cl(name: str, core: str, cpus: range | Sequence[int], freq: int | None = None) -> Cluster:
    return Cluster(name=name, core=get_core(core), cpus=tuple(cpus), freq_mhz=freq)


def _counter_notes(clusters: Sequence[Cluster]) -> tuple[str, ...]:
    """Every catalogue assumption of the cores used, prefixed by the core name."""
    out: list[str] = []
    for cl in clusters:
        for a in cl.core.assumptions:
            note = f"{cl.core.name}: {a}"
            if note not in out:
                out.append(note)
    return tuple(out)


def _t(name: str, clusters: Sequence[Cluster], description: str, *,
       firmware: Firmware = "dt", assumptions: Sequence[str] = (),
       pmu_order: Sequence[str] = ()) -> Topology:
    return Topology(name=name, clusters=tuple(clusters), firmware=firmware,
                    description=description,
                    assumptions=tuple(assumptions) + _counter_notes(clusters),
                    pmu_order=tuple(pmu_order))


_NUMBERING = ("CPU numbering assumed little-to-big like Tensor G1 (gs101); the SoC's "
              "device tree was not read")
_ACPI = "firmware assumed ACPI (SBBR server): PMUs named armv8_pmuv3_<n>"


def _presets() -> dict[str, Topology]:
    ps = [
        _t("tensor-g1", [_cl("little", "cortex-a55", range(0, 4), 1803),
                         _cl("mid", "cortex-a76", range(4, 6), 2253),
                         _cl("big", "cortex-x1", range(6, 8), 2802)],
           "Google Tensor G1 (gs101, Pixel 6): cores.md 4.4 row 'Google Tensor (G1, gs101)'; "
           "CPU numbering, PMU node order and clocks from Linux gs101.dtsi"),
        _t("tensor-g2", [_cl("little", "cortex-a55", range(0, 4)),
                         _cl("mid", "cortex-a78", range(4, 6)),
                         _cl("big", "cortex-x1", range(6, 8))],
           "Google Tensor G2 (gs201): cores.md 4.4 row 'Google Tensor G2'",
           assumptions=[_NUMBERING]),
        _t("tensor-g3", [_cl("little", "cortex-a510", range(0, 4)),
                         _cl("mid", "cortex-a715", range(4, 8)),
                         _cl("big", "cortex-x3", [8])],
           "Google Tensor G3 (zuma): cores.md 4.4 row 'Google Tensor G3 (zuma)'",
           assumptions=[_NUMBERING]),
        _t("tensor-g4", [_cl("little", "cortex-a520", range(0, 4)),
                         _cl("mid", "cortex-a720", range(4, 7)),
                         _cl("big", "cortex-x4", [7])],
           "Google Tensor G4 (zumapro): cores.md 4.4 row 'Google Tensor G4 (zumapro)'",
           assumptions=[_NUMBERING]),
        _t("snapdragon-8-gen-2", [_cl("silver", "cortex-a510", range(0, 3)),
                                  _cl("gold", "cortex-a715", range(3, 5)),
                                  _cl("gold-a710", "cortex-a710", range(5, 7)),
                                  _cl("prime", "cortex-x3", [7])],
           "Qualcomm Snapdragon 8 Gen 2 (sm8550): cores.md 4.4 row 'Snapdragon 8 Gen 2'; "
           "CPU numbering and PMU node order (a510, a710, a715, x3) from Linux sm8550.dtsi",
           assumptions=["cortex-a710 N = 20 is an assumption (QEMU's model citing the TRM, "
                        "no boot log): this SoC then has PMUs with 6 and 20 counters"],
           pmu_order=["cortex-a510", "cortex-a710", "cortex-a715", "cortex-x3"]),
        _t("snapdragon-8-gen-3", [_cl("silver", "cortex-a520", range(0, 2)),
                                  _cl("gold", "cortex-a720", range(2, 5), 3200),
                                  _cl("gold-plus", "cortex-a720", range(5, 7), 3000),
                                  _cl("prime", "cortex-x4", [7])],
           "Qualcomm Snapdragon 8 Gen 3 (sm8650): cores.md 4.4 row 'Snapdragon 8 Gen 3'; "
           "CPU numbering from Linux sm8650.dtsi",
           assumptions=["sm8650.dtsi first declared one generic 'arm,armv8-pmuv3' node (one "
                        "'armv8_pmuv3' PMU for all CPUs); mainline later added per-core PMU "
                        "nodes with PPI partitions (commit 2c06e0797c32), which this preset "
                        "models; their node order was not read (CPU order assumed)",
                        "which A720 group runs at 3.2 GHz is taken from the group sizes "
                        "(3x 3.2 GHz, 2x 3.0 GHz)"]),
        _t("dimensity-9300", [_cl("a720", "cortex-a720", range(0, 4), 2000),
                              _cl("x4", "cortex-x4", range(4, 7), 2850),
                              _cl("x4-prime", "cortex-x4", [7], 3250)],
           "MediaTek Dimensity 9300 (no little cores): cores.md 4.4 row 'MediaTek Dimensity "
           "9300'", assumptions=[_NUMBERING.replace("little-to-big like Tensor G1 (gs101)",
                                                    "slow-to-fast")]),
        _t("rk3588", [_cl("little", "cortex-a55", range(0, 4), 1800),
                      _cl("big", "cortex-a76", range(4, 8), 2400)],
           "Rockchip RK3588: cores.md 4.4 row 'Rockchip RK3588'; the A55s are CPU0-3",
           assumptions=["CPU0-3 = A55 as in Rockchip's rk3588 device tree (cpu_l0-3); "
                        "not re-read here"]),
        _t("rk3399", [_cl("little", "cortex-a53", range(0, 4), 1416),
                      _cl("big", "cortex-a72", range(4, 6), 1800)],
           "Rockchip RK3399: cores.md 4.4 row 'Rockchip RK3399' (the sysfs listing: "
           "armv8_cortex_a53 cpus 0-3 type 8, armv8_cortex_a72 cpus 4-5 type 9)"),
        _t("ampere-altra", [_cl("n1", "neoverse-n1", range(0, 80), 3000)],
           "Ampere Altra (Quicksilver), 80x Neoverse N1: cores.md 4.4 row 'Ampere Altra'",
           firmware="acpi", assumptions=[_ACPI]),
        _t("ampere-altra-max", [_cl("n1", "neoverse-n1", range(0, 128), 3000)],
           "Ampere Altra Max (Mystique), 128x Neoverse N1: cores.md 4.4 row 'Ampere Altra Max'",
           firmware="acpi", assumptions=[_ACPI]),
        _t("graviton2", [_cl("n1", "neoverse-n1", range(0, 64), 2500)],
           "AWS Graviton2, 64x Neoverse N1: cores.md 4.4 row 'AWS Graviton2'",
           firmware="acpi", assumptions=[_ACPI]),
        _t("graviton3", [_cl("v1", "neoverse-v1", range(0, 64), 2600)],
           "AWS Graviton3, 64x Neoverse V1: cores.md 4.4 row 'AWS Graviton3'",
           firmware="acpi",
           assumptions=["64x Neoverse V1 is UNCONFIRMED (widely reported; cores.md 4.4)",
                        _ACPI]),
        _t("graviton4", [_cl("v2", "neoverse-v2", range(0, 96), 2800)],
           "AWS Graviton4, 96x Neoverse V2 (one socket): cores.md 4.4 row 'AWS Graviton4'",
           firmware="acpi",
           assumptions=["one socket; the dual-socket 192-CPU host is not modelled", _ACPI]),
        _t("grace", [_cl("v2", "neoverse-v2", range(0, 72), 3100)],
           "NVIDIA Grace, 72x Neoverse V2 (one die): cores.md 4.4 row 'NVIDIA Grace'",
           firmware="acpi",
           assumptions=["one die; the 144-CPU Superchip is not modelled", _ACPI]),
        _t("big-little-8", [_cl("little", "cortex-a55", range(0, 4)),
                            _cl("big", "cortex-a76", range(4, 8))],
           "synthetic 4x Cortex-A55 + 4x Cortex-A76 (tests and benchmarks; cores.md 4.2 rows "
           "Cortex-A55, Cortex-A76)"),
        _t("hetero-n", [_cl("little", "cortex-a55", range(0, 2)),
                        _cl("big", "cortex-a710", range(2, 4))],
           "synthetic 2x Cortex-A55 (6 counters) + 2x Cortex-A710 (20 counters): clusters "
           "with different PMCR_EL0.N (cores.md 4.2 rows Cortex-A55, Cortex-A710)"),
    ]
    return {p.name: p for p in ps}


#: Real SoC and server layouts (from their device trees in the kernel's arch/arm64/boot/dts
#: and the vendors' published core counts), plus small synthetic ones.
PRESETS: dict[str, Topology] = _presets()


def get_preset(name: str) -> Topology:
    """The preset called ``name``; ``ValueError`` naming close matches and all presets."""
    if not isinstance(name, str):
        raise TypeError(f"preset name must be a str, not {type(name).__name__}")
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    t = PRESETS.get(key)
    if t is None:
        close = difflib.get_close_matches(key, list(PRESETS), n=3, cutoff=0.5)
        hint = (" (did you mean " + " or ".join(repr(c) for c in close) + "?)") if close else ""
        raise ValueError(f"unknown preset {name!r}{hint}; presets: {', '.join(PRESETS)}")
    return t


def load_topology(spec: Topology | str | Path | Mapping[str, Any]) -> Topology:
    """A topology from whatever a scenario names: a :class:`Topology`, a preset name, a
    TOML file path (``.toml`` or an existing file), or a mapping shaped like the TOML."""
    if isinstance(spec, Topology):
        return spec
    if isinstance(spec, Mapping):
        return Topology.from_mapping(spec)
    if isinstance(spec, Path) or spec.endswith(".toml") or Path(spec).is_file():
        return Topology.from_toml(Path(spec))
    return get_preset(spec)
