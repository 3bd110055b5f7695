"""The scenario TOML schema as pydantic models (the shape of the file, nothing more).

Each model mirrors one TOML table, key for key, so a pydantic error location *is* the TOML
path (``vm[1].perf.events[2]``).  Meaning (event names, durations, CPU lists, references
between tables) is checked by :mod:`pmupart.scenario.loader`, which builds the
:class:`~pmupart.sim.spec.ScenarioSpec`.  Every key is documented in ``docs/scenario.md``.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from pmupart.host.kernel import HostCosts
from pmupart.host.topology import ClusterSpec
from pmupart.kvm.options import KvmCosts
from pmupart.kvm.revision import REVISIONS, Revision

#: A duration: a string with a unit ("2s", "1.5ms", "250us", "100ns").
Duration = str
#: A CPU list: a cpulist string ("0-3,6") or a list of CPU numbers.
CpuList = str | list[int]
#: An event: an architected mnemonic ("CPU_CYCLES"), "0x11", or a number.
EventRef = str | int


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ScenarioTable(_Strict):
    name: str
    description: str = ""
    duration: Duration
    seed: int = Field(default=0, ge=0, le=(1 << 64) - 1)
    slice: Duration = "1ms"
    guest_tick: Duration = "4ms"


class ClusterTable(ClusterSpec):
    """A ``[[machine.cluster]]``: the topology file's cluster table."""


class MachineTable(_Strict):
    # which machine: exactly one of preset / file / cluster
    preset: str | None = None
    file: str | None = None
    cluster: list[ClusterTable] | None = None
    # a custom layout's topology keys (pmupart.host.topology TOML)
    name: str | None = None
    firmware: Literal["dt", "acpi"] | None = None
    pmu_type_base: int | None = None
    pmu_order: list[str] | None = None
    # host kernel
    reserved_host_counters: int = Field(default=-1, ge=-1, le=31)
    reservation: Literal["dynamic", "static"] = "dynamic"
    alloc_order: Literal["high-to-low", "low-to-high"] = "high-to-low"
    mux_interval: Duration = "4ms"


#: the largest cost a scenario may give (cycles or ns per operation: one second at 1 GHz)
MAX_COST = 10**9


def _costs_model(name: str, cls: type[Any]) -> type[BaseModel]:
    """A strict model with one optional non-negative int per field of a costs dataclass, at
    most :data:`MAX_COST` (a cost of more than a second per operation is a typo, and sums of
    larger ones overflow the u64 times perf reports)."""
    fields: dict[str, Any] = {f.name: (int | None, Field(default=None, ge=0, le=MAX_COST))
                              for f in dataclasses.fields(cls)}
    return create_model(name, __base__=_Strict, **fields)


KvmCostsTable = _costs_model("KvmCostsTable", KvmCosts)
HostCostsTable = _costs_model("HostCostsTable", HostCosts)


def _revision_model() -> type[BaseModel]:
    """``[kvm]``: ``revision`` (a registry name) and one optional key per revision choice,
    generated from :class:`~pmupart.kvm.revision.Revision` so a new choice is a new key.
    An absent choice means "as the revision says"."""
    fields: dict[str, Any] = {
        "revision": (Literal[tuple(REVISIONS)], "v8"),
        "costs": (KvmCostsTable, Field(default_factory=KvmCostsTable)),
    }
    for f in dataclasses.fields(Revision):
        if f.name == "name":
            continue
        default = getattr(Revision(), f.name)
        if isinstance(default, Enum):
            typ: Any = Literal[tuple(str(e.value) for e in type(default))]
        elif isinstance(default, bool):
            typ = bool
        else:
            typ = int
        fields[f.name] = (typ | None, Field(default=None, ge=0) if typ is int else None)
    return create_model("KvmTable", __base__=_Strict, **fields)


KvmTable = _revision_model()


class PhaseTable(_Strict):
    duration: Duration | None = None
    rates: dict[str, float] | None = None
    core_rates: dict[str, dict[str, float]] | None = None
    cpi: dict[str, float] | None = None
    kernel_fraction: float | None = Field(default=None, ge=0.0, le=1.0)


class WorkloadTable(_Strict):
    instructions: int | float | None = None
    rates: dict[str, float] = Field(default_factory=dict)
    core_rates: dict[str, dict[str, float]] = Field(default_factory=dict)
    cpi: dict[str, float] = Field(default_factory=dict)
    kernel_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    phase: list[PhaseTable] = Field(default_factory=list)
    ctx_switch_hz: float = Field(default=0.0, ge=0.0)


class GuestPerfTable(_Strict):
    mode: Literal["stat", "record"] = "stat"
    events: list[EventRef] = Field(min_length=1)
    freq: int | None = Field(default=None, ge=1)
    period: int | None = Field(default=None, ge=1)
    exclude_user: bool = False
    exclude_kernel: bool = False
    exclude_guest: bool = False
    exclude_host: bool = False
    pinned: bool = False
    task: bool = False  #: a guest's ``perf ... -- <cmd>``: per task, not the whole guest


class HostPerfTable(GuestPerfTable):
    scope: str = "system"


class FilterTable(_Strict):
    action: Literal["allow", "deny"]
    events: list[EventRef] | None = None
    base: EventRef | None = None
    nevents: int | None = Field(default=None, ge=1, le=0x10000)


class VmTable(_Strict):
    name: str
    vcpus: int = Field(default=1, ge=1, le=512)
    pmu: bool = True
    irqchip: bool = True
    irq: int = Field(default=23, ge=0)
    partition: bool = False
    set_pmu: str | int | None = None
    nr_counters: int | None = Field(default=None, ge=0)
    filter: list[FilterTable] = Field(default_factory=list)
    affinity: CpuList | None = None
    vcpu_affinity: list[CpuList] = Field(default_factory=list)
    workload: str = "idle"
    perf: GuestPerfTable | None = None
    program: str | None = None
    init_cpu: int = Field(default=0, ge=0)
    pmu_strict: bool = False


class HostTaskTable(_Strict):
    name: str
    count: int = Field(default=1, ge=1, le=4096)
    affinity: CpuList | None = None
    workload: str = "idle"


class HostTable(_Strict):
    perf_event_max_sample_rate: int = Field(default=100_000, ge=1, le=(1 << 31) - 1)
    task: list[HostTaskTable] = Field(default_factory=list)
    perf: list[HostPerfTable] = Field(default_factory=list)
    costs: HostCostsTable = Field(default_factory=HostCostsTable)  # type: ignore[valid-type]


class MigrationTable(_Strict):
    policy: Literal["none", "periodic", "random", "load-balance"] = "none"
    interval: Duration = "10ms"
    host_tasks: bool = False


class ScenarioFile(_Strict):
    scenario: ScenarioTable
    machine: MachineTable
    kvm: KvmTable = Field(default_factory=KvmTable)  # type: ignore[valid-type]
    host: HostTable = Field(default_factory=HostTable)
    policies: dict[str, str | int | bool] = Field(default_factory=dict)
    workload: dict[str, WorkloadTable] = Field(default_factory=dict)
    vm: list[VmTable] = Field(default_factory=list)
    migration: MigrationTable = Field(default_factory=MigrationTable)
