"""Topologies and presets (pmupart.host.topology) against spec/cores.md §4.3-4.4."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pmupart.arch.cores import get_core
from pmupart.host.topology import (
    DEFAULT_PMU_TYPE_BASE,
    PRESETS,
    Cluster,
    Topology,
    TopologyError,
    cpulist,
    get_preset,
    load_topology,
    parse_cpulist,
)

# preset -> (firmware, [(core, first cpu, count)]) as in cores.md 4.4 (CPU order as modelled)
EXPECTED: dict[str, tuple[str, list[tuple[str, int, int]]]] = {
    "tensor-g1": ("dt", [("cortex-a55", 0, 4), ("cortex-a76", 4, 2), ("cortex-x1", 6, 2)]),
    "tensor-g2": ("dt", [("cortex-a55", 0, 4), ("cortex-a78", 4, 2), ("cortex-x1", 6, 2)]),
    "tensor-g3": ("dt", [("cortex-a510", 0, 4), ("cortex-a715", 4, 4), ("cortex-x3", 8, 1)]),
    "tensor-g4": ("dt", [("cortex-a520", 0, 4), ("cortex-a720", 4, 3), ("cortex-x4", 7, 1)]),
    "snapdragon-8-gen-2": ("dt", [("cortex-a510", 0, 3), ("cortex-a715", 3, 2),
                                  ("cortex-a710", 5, 2), ("cortex-x3", 7, 1)]),
    "snapdragon-8-gen-3": ("dt", [("cortex-a520", 0, 2), ("cortex-a720", 2, 3),
                                  ("cortex-a720", 5, 2), ("cortex-x4", 7, 1)]),
    "dimensity-9300": ("dt", [("cortex-a720", 0, 4), ("cortex-x4", 4, 3), ("cortex-x4", 7, 1)]),
    "rk3588": ("dt", [("cortex-a55", 0, 4), ("cortex-a76", 4, 4)]),
    "rk3399": ("dt", [("cortex-a53", 0, 4), ("cortex-a72", 4, 2)]),
    "ampere-altra": ("acpi", [("neoverse-n1", 0, 80)]),
    "ampere-altra-max": ("acpi", [("neoverse-n1", 0, 128)]),
    "graviton2": ("acpi", [("neoverse-n1", 0, 64)]),
    "graviton3": ("acpi", [("neoverse-v1", 0, 64)]),
    "graviton4": ("acpi", [("neoverse-v2", 0, 96)]),
    "grace": ("acpi", [("neoverse-v2", 0, 72)]),
    "big-little-8": ("dt", [("cortex-a55", 0, 4), ("cortex-a76", 4, 4)]),
    "hetero-n": ("dt", [("cortex-a55", 0, 2), ("cortex-a710", 2, 2)]),
}


def test_every_preset_is_checked() -> None:
    assert set(PRESETS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_layout_matches_cores_md(name: str) -> None:
    t = get_preset(name)
    fw, clusters = EXPECTED[name]
    assert t.firmware == fw
    got = [(cl.core.name, cl.cpus[0], len(cl.cpus)) for cl in t.clusters]
    assert got == clusters
    assert t.cpus == tuple(range(t.num_cpus))  # numbered 0..n-1 in cluster order
    assert "cores.md" in t.description
    for cl in t.clusters:  # every unconfirmed catalogue value is shown as an assumption
        for a in cl.core.assumptions:
            assert any(a in note for note in t.assumptions)


def test_tensor_g1_pmus_named_and_numbered_like_linux() -> None:
    t = get_preset("tensor-g1")
    got = [(p.name, p.type, p.cpus, p.num_counters) for p in t.pmus()]
    assert got == [("armv8_cortex_a55", 8, (0, 1, 2, 3), 6),
                   ("armv8_cortex_a76", 9, (4, 5), 6),
                   ("armv8_cortex_x1", 10, (6, 7), 6)]
    assert t.core_of(5).name == "cortex-a76"
    assert t.cluster_of(7).name == "big"
    assert t.cpus_of("cortex-x1") == (6, 7)
    assert t.cpus_of("armv8_cortex_a55") == (0, 1, 2, 3)
    assert t.cpus_of("cortex-a78") == ()
    assert t.pmu_of(4).name == "armv8_cortex_a76"
    assert t.pmu("armv8_cortex_x1").type == 10
    assert t.heterogeneous


def test_rk3399_types_match_the_real_listing() -> None:
    # Marc Zyngier's sysfs listing: armv8_cortex_a53 type 8 cpus 0-3, a72 type 9 cpus 4-5
    got = [(p.name, p.type, cpulist(p.cpus)) for p in get_preset("rk3399").pmus()]
    assert got == [("armv8_cortex_a53", 8, "0-3"), ("armv8_cortex_a72", 9, "4-5")]
    assert DEFAULT_PMU_TYPE_BASE == 8


def test_sd8gen2_probe_order_follows_dt_nodes_and_a710_is_flagged() -> None:
    t = get_preset("snapdragon-8-gen-2")
    got = [(p.name, p.type, p.cpus, p.num_counters) for p in t.pmus()]
    assert got == [("armv9_cortex_a510", 8, (0, 1, 2), 6),
                   ("armv9_cortex_a710", 9, (5, 6), 20),
                   ("armv9_cortex_a715", 10, (3, 4), 6),
                   ("armv9_cortex_x3", 11, (7,), 6)]
    assert any("a710" in a and "20" in a and "assumption" in a for a in t.assumptions)


def test_two_clusters_of_one_core_share_one_pmu() -> None:
    t = get_preset("snapdragon-8-gen-3")
    a720 = t.pmu("armv9_cortex_a720")
    assert a720.cpus == (2, 3, 4, 5, 6)
    assert [cl.freq for cl in t.clusters if cl.core.name == "cortex-a720"] == [3200, 3000]
    assert len(t.pmus()) == 3


def test_acpi_servers_use_armv8_pmuv3_n() -> None:
    for name in ("ampere-altra", "graviton2", "graviton3", "graviton4", "grace"):
        (p,) = get_preset(name).pmus()
        assert p.name == "armv8_pmuv3_0" and p.type == 8
        assert p.cpus == tuple(range(get_preset(name).num_cpus))
    acpi = Topology.from_mapping({"firmware": "acpi", "cluster": [
        {"core": "cortex-a55", "count": 2}, {"core": "cortex-a76", "count": 2}]})
    assert [(p.name, p.cpus) for p in acpi.pmus()] == [("armv8_pmuv3_0", (0, 1)),
                                                       ("armv8_pmuv3_1", (2, 3))]


def test_hetero_n_has_different_counter_counts() -> None:
    assert [p.num_counters for p in get_preset("hetero-n").pmus()] == [6, 20]


def test_get_preset_suggests_close_names() -> None:
    assert get_preset("Tensor_G1") is PRESETS["tensor-g1"]
    with pytest.raises(ValueError, match=r"unknown preset 'tensor-g7' \(did you mean 'tensor-g"):
        get_preset("tensor-g7")
    with pytest.raises(ValueError, match="rk3588"):
        get_preset("rk3589")


def test_lookup_errors_are_clear() -> None:
    t = get_preset("rk3399")
    with pytest.raises(ValueError, match=r"CPU 6 is not in topology 'rk3399' \(CPUs 0-5\)"):
        t.core_of(6)
    with pytest.raises(ValueError, match=r"no PMU 'armv8_cortex_a54'.*did you mean"):
        t.pmu("armv8_cortex_a54")
    with pytest.raises(ValueError, match="unknown core"):
        t.cpus_of("cortex-z9")


def test_topology_validates_itself() -> None:
    a55 = get_core("cortex-a55")
    with pytest.raises(ValueError, match="CPU 1 is in both cluster 'a' and cluster 'b'"):
        Topology("x", (Cluster("a", a55, (0, 1)), Cluster("b", a55, (1, 2))))
    with pytest.raises(ValueError, match="at least one cluster"):
        Topology("x", ())
    with pytest.raises(ValueError, match="pmu_type_base must be >= PERF_TYPE_MAX"):
        Topology("x", (Cluster("a", a55, (0,)),), pmu_type_base=4)


def test_cpulist_round_trip() -> None:
    assert cpulist((0, 1, 2, 3, 6, 8, 9)) == "0-3,6,8-9"
    assert parse_cpulist("0-3,6,8-9\n") == (0, 1, 2, 3, 6, 8, 9)
    with pytest.raises(ValueError, match="cpulist"):
        parse_cpulist("0-x")


# ---------------------------------------------------------------------- TOML
GOOD = """\
name = "my-board"
description = "a test board"
pmu_type_base = 10

[[cluster]]
name = "little"
core = "cortex-a55"
count = 4

[[cluster]]
core = "armv8_cortex_a76"
cpus = [4, 6]
freq_mhz = 2400

[[cluster]]
core = "cortex-x1"
count = 1
num_counters = 5
"""


def test_toml_layout(tmp_path: Path) -> None:
    f = tmp_path / "board.toml"
    f.write_text(GOOD)
    t = Topology.from_toml(f)
    assert t == Topology.from_toml(GOOD)
    assert [(cl.name, cl.core.name, cl.cpus) for cl in t.clusters] == [
        ("little", "cortex-a55", (0, 1, 2, 3)), ("cluster1", "cortex-a76", (4, 6)),
        ("cluster2", "cortex-x1", (7,))]
    assert t.clusters[1].freq == 2400
    got = [(p.name, p.type, cpulist(p.cpus), p.num_counters) for p in t.pmus()]
    assert got == [("armv8_cortex_a55", 10, "0-3", 6), ("armv8_cortex_a76", 11, "4,6", 6),
                   ("armv8_cortex_x1", 12, "7", 5)]
    assert any("N = 5" in a for a in t.assumptions)


def _err(text: str) -> TopologyError:
    with pytest.raises(TopologyError) as ei:
        Topology.from_toml(text)
    return ei.value


def test_toml_error_names_file_line_field_expected_found(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace("count = 4", 'count = "four"'))
    with pytest.raises(TopologyError) as ei:
        Topology.from_toml(f)
    e = ei.value
    assert (e.path, e.line, e.field) == (str(f), 8, "cluster[0].count")
    assert re.search(r"bad\.toml:8: cluster\[0\]\.count: Input should be a valid integer.*"
                     r"found 'four'", str(e))


def test_toml_unknown_core_suggests() -> None:
    e = _err(GOOD.replace('"cortex-x1"', '"cortex-x11"'))
    assert (e.path, e.line, e.field) == ("<toml>", 16, "cluster[2].core")
    assert "did you mean" in e.msg and "cortex-x1" in e.msg


def test_toml_unknown_and_missing_fields() -> None:
    e = _err(GOOD.replace("freq_mhz = 2400", "freq = 2400"))
    assert (e.line, e.field) == (13, "cluster[1].freq")
    assert "unknown field (expected one of: core, name, count, cpus" in e.msg
    e = _err(GOOD.replace('core = "cortex-a55"\n', ""))
    assert (e.line, e.field, e.msg) == (5, "cluster[0].core", "required field is missing")
    e = _err('firmware = "uefi"\n[[cluster]]\ncore = "cortex-a55"\ncount = 1\n')
    assert (e.line, e.field) == (1, "firmware")
    assert "'dt' or 'acpi'" in e.msg and "found 'uefi'" in e.msg


def test_toml_semantic_errors() -> None:
    e = _err(GOOD.replace("cpus = [4, 6]", "cpus = [3, 4]"))
    assert (e.line, e.field) == (12, "cluster[1].cpus")
    assert "CPU 3 is already in cluster[0]" in e.msg
    e = _err('[[cluster]]\ncore = "cortex-a55"\n')
    assert (e.line, e.field) == (1, "cluster[0]")
    assert "expected 'count'" in e.msg and "found neither" in e.msg
    e = _err('[[cluster]]\ncore = "cortex-a55"\ncount = 0\n')
    assert (e.line, e.field) == (3, "cluster[0].count")
    assert "greater than or equal to 1" in e.msg and "found 0" in e.msg
    e = _err('name = "x"\n')
    assert e.field == "cluster" and "required" in e.msg


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    e = _err('name = "x"\n[[cluster]\ncore = 1\n')
    assert e.line == 2 and "not valid TOML" in e.msg
    with pytest.raises(TopologyError, match=r"nope\.toml: cannot read the file"):
        Topology.from_toml(tmp_path / "nope.toml")


def test_from_mapping_errors_name_the_field_path() -> None:
    with pytest.raises(TopologyError, match=r"<mapping>: cluster\[1\]\.count: .*found -2"):
        Topology.from_mapping({"cluster": [{"core": "cortex-a55", "count": 1},
                                           {"core": "cortex-a55", "count": -2}]})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_to_toml_round_trips(name: str) -> None:
    t = get_preset(name)
    assert Topology.from_toml(t.to_toml()) == t


def test_to_toml_keeps_overrides_and_explicit_types() -> None:
    t = Topology.from_toml(GOOD)
    back = Topology.from_toml(t.to_toml())
    assert back == t and "num_counters = 5" in t.to_toml()
    odd = Topology.from_mapping({"pmu_types": [9, 12], "cluster": [
        {"core": "cortex-a55", "count": 1}, {"core": "cortex-a76", "count": 1}]})
    assert [p.type for p in odd.pmus()] == [9, 12]
    assert Topology.from_toml(odd.to_toml()) == odd


def test_load_topology_accepts_every_form(tmp_path: Path) -> None:
    f = tmp_path / "board.toml"
    f.write_text(GOOD)
    g1 = get_preset("tensor-g1")
    assert load_topology(g1) is g1
    assert load_topology("tensor-g1") is g1
    assert load_topology(f) == load_topology(str(f)) == Topology.from_toml(GOOD)
    assert load_topology({"cluster": [{"core": "cortex-a55", "count": 2}]}).num_cpus == 2
    with pytest.raises(ValueError, match="unknown preset"):
        load_topology("tensor-g9")
