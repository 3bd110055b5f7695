"""Every scenario key reaches the spec, and dump_scenario/load_scenario_text round-trips."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pmupart.arch.events import event_number as E
from pmupart.arch.policy import ChainStraddle, Policies
from pmupart.host.kernel import HostCosts
from pmupart.kvm.options import HpmnSource, KvmCosts, Swap
from pmupart.kvm.revision import REVISIONS, MixedPmuver, PmuStrict
from pmupart.scenario import dump_scenario, load_scenario, load_scenario_text, schema
from pmupart.sim import EventFilterSpec, MigrationPolicy, PerfMode, Phase

ROOT = Path(__file__).resolve().parent.parent

#: Uses every key of the schema at a non-default value.
KITCHEN = """\
[scenario]
name = "kitchen"
description = "every key"
duration = "1.5ms"
seed = 42
slice = "250us"
guest_tick = "2ms"

[machine]
name = "custom"
firmware = "acpi"
pmu_type_base = 10
pmu_order = ["cortex-a520"]
reserved_host_counters = 3
reservation = "static"
alloc_order = "low-to-high"
mux_interval = "8ms"

[[machine.cluster]]
name = "big"
core = "cortex-a720"
count = 2
num_counters = 10
freq_mhz = 2500

[[machine.cluster]]
name = "little"
core = "armv9_cortex_a520"
cpus = [4, 5]

[kvm]
revision = "intent"
hpmn_source = "vm-pmu"
swap = "eager"
set_hpmd = false
clear_pmovs_on_load = false
filter_at_load = false
save_pmovs_on_put = false
emulated_swinc_el_filter = true
enable_partition_attr = 7
partition_attr = "vm-wide"
partition_support = "global"
ownership_flip = "on-access"
load_at_flip = "owner-only"
counter_mask = "max-guest"
userenr_swap = "forced-at-load"
host_pmcr_at_put = "not-restored"
clear_pmovs_on_put = false
evtyper_write = "virtual-until-load"
pmovs_read = "virtual-only"
swinc_fallback = "virtual"
fallback_pmcr = "hardware"
filter_exempt = "none"
filter_first_load_only = true
irq_demux = "running-vcpu"
free_overflow = "flip-and-read-hw"
guest_hpmn = "v8-as-posted"
fgt_set = "computed"
hpmn0_ftr = false
mixed_pmuver = "vm-pmu"
pmu_strict = "supported"

[kvm.costs]
exit_round_trip = 1
sysreg_handler = 2
pmu_reprogram = 3
reg_swap = 4
vgic_inject = 5
load_put_base = 6

[host.costs]
perf_event_create = 11
perf_event_release = 12
perf_sched_event = 13
perf_read = 14
pmu_irq = 15
pmu_irq_per_event = 16
perf_sample = 17
resched = 18
rotate = 19

[policies]
chain_straddle = "no-count"
unknown_reset = 1
external_debug_enabled = true

[workload.compute]
instructions = 2e6
ctx_switch_hz = 125
kernel_fraction = 0.25
rates = { L1D_CACHE = 0.4, "0x21" = 0.15 }
cpi = { "cortex-a520" = 1.5, "*" = 0.9 }
core_rates = { "cortex-a520" = { L1D_CACHE = 0.6 } }

[[workload.compute.phase]]
duration = "1ms"
rates = { L1D_CACHE = 0.5 }
core_rates = { "cortex-a520" = { BR_RETIRED = 0.2 } }
cpi = { "cortex-a720" = 0.5 }
kernel_fraction = 0.5

[[workload.compute.phase]]

[workload.quiet]
kernel_fraction = 0.9

[[vm]]
name = "vm0"
vcpus = 2
pmu = true
irqchip = false
irq = 24
partition = true
set_pmu = "armv8_pmuv3_0"
nr_counters = 3
affinity = [0, 1, 4]
vcpu_affinity = ["0-1", "4"]
workload = "compute"
program = "pmupart.guest.programs:counting_loop"
init_cpu = 1
pmu_strict = true
filter = [
  { action = "allow", events = ["CPU_CYCLES", "INST_RETIRED"] },
  { action = "deny", base = "0x30", nevents = 16 },
]

[vm.perf]
mode = "record"
events = ["CPU_CYCLES", 8]
freq = 500
exclude_user = true
exclude_kernel = true
exclude_guest = true
exclude_host = true
pinned = true
task = true

[[vm]]
name = "vm1"
pmu = false

[[vm]]
name = "vm2"
set_pmu = 11

[host]
perf_event_max_sample_rate = 50000

[[host.task]]
name = "build"
count = 3
affinity = "4-5"
workload = "quiet"

[[host.perf]]
mode = "record"
period = 100000
scope = "task:build"
events = ["BR_RETIRED"]
exclude_user = true
exclude_kernel = true
exclude_guest = true
exclude_host = true
pinned = true

[migration]
policy = "random"
interval = "5ms"
host_tasks = true
"""


def test_every_key_reaches_the_spec() -> None:
    s = load_scenario_text(KITCHEN, "k.toml")
    assert (s.name, s.description, s.duration_ns, s.seed, s.slice_ns, s.guest_tick_ns) == \
        ("kitchen", "every key", 1_500_000, 42, 250_000, 2_000_000)
    t = s.machine
    assert (t.name, t.firmware, t.pmu_type_base, t.pmu_order) == \
        ("custom", "acpi", 10, ("cortex-a520",))
    big, little = t.clusters
    assert (big.name, big.core.name, big.cpus, big.core.num_counters, big.freq_mhz) == \
        ("big", "cortex-a720", (0, 1), 10, 2500)
    assert (little.name, little.core.name, little.cpus) == ("little", "cortex-a520", (4, 5))
    o = s.machine_options
    assert (o["reserved_host_counters"], o["reservation"], o["alloc_order"],
            o["mux_interval_ms"]) == (3, "static", "low-to-high", 8)
    k = o["kvm_options"]
    assert (k.hpmn_source, k.swap, k.set_hpmd, k.clear_pmovs_on_load, k.filter_at_load,
            k.save_pmovs_on_put, k.emulated_swinc_el_filter, k.enable_partition_attr) == \
        (HpmnSource.VM_PMU, Swap.EAGER, False, False, False, False, True, 7)
    # revision = "intent" with every choice overridden: the v8 values, plus the variants
    assert k.name == "intent"
    assert dataclasses.replace(k, name="v8") == dataclasses.replace(
        REVISIONS["v8"], hpmn_source=HpmnSource.VM_PMU, swap=Swap.EAGER, set_hpmd=False,
        clear_pmovs_on_load=False, filter_at_load=False, save_pmovs_on_put=False,
        emulated_swinc_el_filter=True, enable_partition_attr=7, clear_pmovs_on_put=False,
        filter_first_load_only=True, hpmn0_ftr=False,
        mixed_pmuver=MixedPmuver.VM_PMU, pmu_strict=PmuStrict.SUPPORTED)
    assert o["kvm_costs"] == KvmCosts(1, 2, 3, 4, 5, 6)
    assert o["host_costs"] == HostCosts(11, 12, 13, 14, 15, 16, 17, 18, 19)
    assert o["policies"] == Policies(chain_straddle=ChainStraddle.NO_COUNT, unknown_reset=1,
                                     external_debug_enabled=True)
    w = s.workloads["compute"]
    assert w.instructions == 2_000_000
    assert w.ctx_switch_hz == 125.0
    base_rates = {E("L1D_CACHE"): 0.4, 0x21: 0.15}
    # core_rates merge like rates: the phase's into the workload's, key by key
    assert w.phases == (
        Phase(1_000_000, tuple(sorted({**base_rates, E("L1D_CACHE"): 0.5}.items())),
              (("*", 0.9), ("cortex-a520", 1.5), ("cortex-a720", 0.5)), 0.5,
              (("cortex-a520", ((E("L1D_CACHE"), 0.6), (E("BR_RETIRED"), 0.2))),)),
        Phase(None, tuple(sorted(base_rates.items())), (("*", 0.9), ("cortex-a520", 1.5)),
              0.25, (("cortex-a520", ((E("L1D_CACHE"), 0.6),)),)),
    )
    # on its core, a core rate wins over the phase's generic rate
    assert dict(w.phases[0].rates_for("cortex-a520"))[E("L1D_CACHE")] == 0.6
    assert dict(w.phases[0].rates_for("cortex-a720"))[E("L1D_CACHE")] == 0.5
    assert s.workloads["quiet"].phases == (Phase(None, (), (), 0.9),)
    vm0, vm1, vm2 = s.vms
    assert (vm0.name, vm0.vcpus, vm0.pmu, vm0.irqchip, vm0.irq, vm0.partition, vm0.set_pmu,
            vm0.nr_counters, vm0.affinity, vm0.vcpu_affinity, vm0.workload) == \
        ("vm0", 2, True, False, 24, True, "armv8_pmuv3_0", 3, (0, 1, 4), ((0, 1), (4,)),
         "compute")
    assert vm0.pmu_strict and not vm1.pmu_strict
    p = vm0.perf
    assert p is not None
    assert (p.mode, p.events, p.freq, p.period, p.exclude_user, p.exclude_kernel,
            p.exclude_guest, p.exclude_host, p.pinned) == \
        (PerfMode.RECORD, (0x11, 8), 500, 0, True, True, True, True, True)
    assert p.scope == "task:compute"  # perf ... -- <the VM's workload>
    assert vm0.filters == (EventFilterSpec("allow", 0x11, 1), EventFilterSpec("allow", 8, 1),
                           EventFilterSpec("deny", 0x30, 16))
    assert (vm1.pmu, vm1.set_pmu, vm1.perf, vm1.workload) == (False, None, None, "idle")
    assert (vm2.pmu, vm2.set_pmu) == (True, 11)
    (task,) = s.host_tasks
    assert (task.name, task.count, task.affinity, task.workload) == ("build", 3, (4, 5), "quiet")
    (hp,) = s.host_perf
    assert (hp.mode, hp.period, hp.freq, hp.scope, hp.events, hp.exclude_user,
            hp.exclude_kernel, hp.exclude_guest, hp.exclude_host, hp.pinned) == \
        (PerfMode.RECORD, 100000, 0, "task:build", (E("BR_RETIRED"),), True, True, True,
         True, True)
    m = s.migration
    assert (m.policy, m.interval_ns, m.host_tasks) == (MigrationPolicy.RANDOM, 5_000_000, True)


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, f in model.model_fields.items():
        out.add(name)
        ann: Any = f.annotation
        for a in (getattr(ann, "__args__", None) or (ann,)):
            inner = getattr(a, "__args__", None)
            for b in (inner or (a,)):
                if isinstance(b, type) and issubclass(b, BaseModel):
                    out |= _keys(b)
    return out


def test_kitchen_uses_and_docs_document_every_key() -> None:
    keys = _keys(schema.ScenarioFile)
    used = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", KITCHEN))
    for header in re.findall(r"^\[+([a-z_.]+)", KITCHEN, re.M):
        used |= set(header.split("."))
    # machine.preset and machine.file exclude [[machine.cluster]]: test_scenario_loader
    assert keys - used == {"preset", "file"}
    doc = (ROOT / "docs" / "scenario.md").read_text()
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", doc, flags=re.S))
    missing = {k for k in keys if not any(re.search(rf"\b{k}\b", sp) for sp in spans)}
    assert missing == set(), f"docs/scenario.md does not document {sorted(missing)}"


def test_round_trip_kitchen() -> None:
    s = load_scenario_text(KITCHEN, "k.toml")
    text = dump_scenario(s)
    assert load_scenario_text(text, "k.toml") == s
    assert dump_scenario(load_scenario_text(text, "k.toml")) == text


def test_round_trip_examples() -> None:
    for p in sorted((ROOT / "examples").glob("*.toml")):
        s = load_scenario(p)
        assert load_scenario_text(dump_scenario(s), str(p)) == s, p.name


def test_round_trip_presets_and_defaults() -> None:
    s = load_scenario_text('[scenario]\nname = "x"\nduration = "1s"\n[machine]\n'
                           'preset = "rk3399"\n')
    text = dump_scenario(s)
    assert 'preset = "rk3399"' in text
    assert load_scenario_text(text) == s
    assert s.machine_options["reserved_host_counters"] == -1
    assert dataclasses.asdict(s.migration)["policy"] is MigrationPolicy.NONE
