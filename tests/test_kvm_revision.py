"""The revision registry (pmupart.kvm.revision): names, variants, selection from the
Python API and from a scenario, and the upstream revision's missing ENABLE_PARTITION."""

from __future__ import annotations

import dataclasses
import errno

import pytest

from pmupart import Machine
from pmupart.kvm import REVISIONS, KvmError, KvmOptions, Revision, uapi
from pmupart.kvm.revision import (
    CHOICES,
    IrqDemux,
    OwnershipFlip,
    PartitionAttr,
    get_revision,
    revision_with,
)
from pmupart.scenario import ScenarioError, dump_scenario, load_scenario_text

G = uapi.KVM_ARM_VCPU_PMU_V3_CTRL

SCEN = """
[scenario]
name = "r"
duration = "2ms"
[machine]
preset = "tensor-g1"
reserved_host_counters = 2
"""


def test_registry_names_and_default() -> None:
    assert set(REVISIONS) == {"upstream", "v8", "intent"}
    assert Revision() == REVISIONS["v8"]
    # KvmOptions: the older name of the intent design, still meaning what it meant
    assert KvmOptions() == REVISIONS["intent"] and isinstance(KvmOptions(), Revision)
    assert KvmOptions(irq_demux=IrqDemux.RUNNING_VCPU).label() == "intent+irq_demux=running-vcpu"
    for name, rev in REVISIONS.items():
        assert rev.name == name and rev.overrides() == {}
    # intent differs from v8 in the series' choices, upstream in the missing attribute and
    # the series' FEAT_HPMN0 cpufeature entry, and has the 7.3 STRICT vCPU feature
    assert set(REVISIONS["upstream"].overrides() or {}) == set()
    diff = {c for c in CHOICES if getattr(REVISIONS["v8"], c) != getattr(REVISIONS["intent"], c)}
    assert {"ownership_flip", "load_at_flip", "userenr_swap", "host_pmcr_at_put", "irq_demux",
            "evtyper_write", "pmovs_read", "swinc_fallback", "filter_exempt"} <= diff
    up = {c for c in CHOICES if getattr(REVISIONS["v8"], c) != getattr(REVISIONS["upstream"], c)}
    assert up == {"partition_attr", "hpmn0_ftr", "pmu_strict"}


def test_variant_is_a_revision_with_one_choice_changed() -> None:
    v = revision_with("v8", irq_demux="loaded-partitioned-vcpu")
    assert v.name == "v8" and v.irq_demux is IrqDemux.LOADED_PARTITIONED_VCPU
    assert v.overrides() == {"irq_demux": IrqDemux.LOADED_PARTITIONED_VCPU}
    assert v.label() == "v8+irq_demux=loaded-partitioned-vcpu"
    with pytest.raises(ValueError, match=r"unknown KVM revision 'v7'.*upstream, v8, intent"):
        get_revision("v7")
    with pytest.raises(ValueError, match="unknown KVM revision choice"):
        revision_with("v8", no_such=1)


def test_machine_revision_by_name_or_value() -> None:
    assert Machine.from_preset("tensor-g1").kvm.revision == REVISIONS["v8"]
    m = Machine.from_preset("tensor-g1", revision="intent")
    assert m.kvm.revision is REVISIONS["intent"] and m.kvm.options is m.kvm.revision
    var = dataclasses.replace(REVISIONS["v8"], ownership_flip=OwnershipFlip.ON_WRITE)
    assert Machine.from_preset("tensor-g1", revision=var).kvm.revision is var
    with pytest.raises(ValueError, match="not both"):
        Machine.from_preset("tensor-g1", revision="v8", kvm_options=KvmOptions())
    with pytest.raises(ValueError, match="unknown KVM revision"):
        Machine.from_preset("tensor-g1", revision="v9")


@pytest.mark.parametrize("rev", ["upstream", "v8", "intent"])
def test_enable_partition_exists_except_upstream(rev: str) -> None:
    m = Machine.from_preset("tensor-g1", reserved_host_counters=2, revision=rev)
    v = m.kvm.create_vm().create_vcpu()
    attr = m.kvm.revision.enable_partition_attr
    if rev == "upstream":
        # kvm_arm_pmu_v3_has_attr / _set_attr: an unknown attribute is -ENXIO
        assert m.kvm.revision.partition_attr is PartitionAttr.ABSENT
        for call in (lambda: v.has_device_attr(G, attr), lambda: v.set_device_attr(G, attr, 1)):
            with pytest.raises(KvmError) as ei:
                call()
            assert ei.value.errno == errno.ENXIO
    else:
        v.has_device_attr(G, attr)
        v.set_device_attr(G, attr, 1)


def test_scenario_selects_revision_and_overrides_one_choice() -> None:
    s = load_scenario_text(SCEN, "r.toml")
    assert s.machine_options["kvm_options"] == REVISIONS["v8"]
    s = load_scenario_text(SCEN + '[kvm]\nrevision = "intent"\nirq_demux = "running-vcpu"\n',
                           "r.toml")
    k = s.machine_options["kvm_options"]
    assert k.name == "intent" and k.overrides() == {"irq_demux": IrqDemux.RUNNING_VCPU}
    # the dump writes the revision and only the changed choice, and reads back equal
    text = dump_scenario(s)
    assert 'revision = "intent"' in text and 'irq_demux = "running-vcpu"' in text
    assert "ownership_flip" not in text
    assert load_scenario_text(text, "r.toml").machine_options["kvm_options"] == k
    # --set kvm.revision=... replaces the revision and keeps the file's overrides
    s = load_scenario_text(SCEN, "r.toml", overrides=["kvm.revision=upstream"])
    assert s.machine_options["kvm_options"] == REVISIONS["upstream"]


@pytest.mark.parametrize("bad, where", [
    ('revision = "v7"', "kvm.revision"),
    ('irq_demux = "somewhere"', "kvm.irq_demux"),
    ('clear_pmovs_on_put = "yes"', "kvm.clear_pmovs_on_put"),
])
def test_scenario_bad_revision_input(bad: str, where: str) -> None:
    with pytest.raises(ScenarioError, match=where):
        load_scenario_text(SCEN + "[kvm]\n" + bad + "\n", "r.toml")
