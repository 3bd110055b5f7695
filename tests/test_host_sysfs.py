"""sysfs rendering, golden trees, import from a host copy, and the ``pmupart sysfs`` command.

Regenerate the golden files with ``PMUPART_UPDATE_GOLDEN=1 python -m pytest
tests/test_host_sysfs.py`` and review the diff.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import check_golden

from pmupart.cli import main
from pmupart.host import (
    PRESETS,
    Topology,
    TopologyError,
    get_preset,
    import_sysfs,
    render_sysfs,
    write_sysfs,
)
from pmupart.host.sysfs import parse_cpuinfo


def _lines(files: dict[str, str]) -> str:
    return "".join(f"{k}: {v}" for k, v in files.items())


@pytest.mark.parametrize("preset", ["tensor-g1", "snapdragon-8-gen-2", "graviton3"])
def test_golden_tree(preset: str) -> None:
    check_golden(f"sysfs/{preset}.txt", _lines(render_sysfs(get_preset(preset))))


def test_files_as_the_kernel_prints_them() -> None:
    files = render_sysfs(get_preset("tensor-g1"))
    a76 = {k.split("/", 1)[1]: v for k, v in files.items()
           if k.startswith("armv8_cortex_a76/")}
    assert a76["type"] == "9\n"
    assert a76["cpus"] == "4-5\n"
    assert a76["perf_event_mux_interval_ms"] == "4\n"  # 1000 / HZ, HZ = 250
    assert a76["format/event"] == "config:0-15\n"
    assert a76["format/long"] == "config1:0\n"
    assert a76["format/rdpmc"] == "config1:1\n"
    assert a76["format/threshold"] == "config1:5-16\n"
    assert a76["format/threshold_compare"] == "config1:3-4\n"
    assert a76["format/threshold_count"] == "config1:2\n"
    assert a76["events/cpu_cycles"] == "event=0x0011\n"
    assert a76["events/inst_retired"] == "event=0x0008\n"
    assert "events/chain" not in a76  # never exposed by the kernel
    assert "events/cycles" not in a76  # perf maps the generic name; not a sysfs event
    assert a76["caps/slots"] == "0x00000000\n"
    assert a76["caps/threshold_max"] == "0x00000000\n"
    assert all(v.endswith("\n") and v.count("\n") == 1 for v in files.values())


def test_events_follow_pmceid() -> None:
    a53 = render_sysfs(get_preset("rk3399"))
    assert "armv8_cortex_a53/events/l1d_tlb" not in a53  # 0x25 is not in a PMUv3 A53's PMCEID
    assert "armv8_cortex_a72/events/stall_backend" in a53
    g1 = render_sysfs(get_preset("tensor-g1"))
    assert g1["armv8_cortex_a55/events/stall_slot"] == "event=0x003f\n"


def test_pmmir_caps_only_from_pmuv3p4_with_stall_slot() -> None:
    # __armv8pmu_probe_pmu reads PMMIR only on PMUv3p4+ with STALL_SLOT: N1 (p1) shows 0
    # although its PMMIR.SLOTS is 5; V1 (p4) shows 8.
    v1 = render_sysfs(get_preset("graviton3"))
    assert v1["armv8_pmuv3_0/caps/slots"] == "0x00000008\n"
    n1 = render_sysfs(get_preset("graviton2"))
    assert n1["armv8_pmuv3_0/caps/slots"] == "0x00000000\n"
    assert n1["armv8_pmuv3_0/cpus"] == "0-63\n"


def test_hz_and_older_kernels() -> None:
    files = render_sysfs(get_preset("rk3399"), hz=1000, threshold=False)
    assert files["armv8_cortex_a53/perf_event_mux_interval_ms"] == "1\n"
    assert not any("threshold" in k for k in files)
    with pytest.raises(ValueError, match="hz must be"):
        render_sysfs(get_preset("rk3399"), hz=0)


def _midrs(t: Topology) -> dict[int, int]:
    return {cpu: t.core_of(cpu).midr for cpu in t.cpus}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_round_trip_render_import(preset: str, tmp_path: Path) -> None:
    t = get_preset(preset)
    write_sysfs(t, tmp_path)
    back = import_sysfs(tmp_path, midr=_midrs(t))
    assert back.firmware == t.firmware
    assert back.pmus() == t.pmus()
    assert render_sysfs(back) == render_sysfs(t)
    merged = [(cl.core, cl.cpus) for cl in back.clusters]
    if len({cl.core.name for cl in t.clusters}) == len(t.clusters):  # one cluster per core
        assert merged == [(cl.core, cl.cpus) for cl in t.clusters]
        assert (back.pmu_order, back.pmu_type_base) == (t.pmu_order, t.pmu_type_base)
    if t.firmware == "dt":  # DT names alone say the core
        assert import_sysfs(tmp_path).pmus() == t.pmus()


CPUINFO_RK3399 = "".join(
    f"processor\t: {cpu}\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
    f"crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
    f"CPU part\t: {part}\nCPU revision\t: {rev}\n\n"
    for cpu, part, rev in [(0, "0xd03", 4), (1, "0xd03", 4), (2, "0xd03", 4), (3, "0xd03", 4),
                           (4, "0xd08", 2), (5, "0xd08", 2)])


def _host_tree(root: Path, pmus: dict[str, tuple[int, str]]) -> Path:
    for name, (typ, cpus) in pmus.items():
        (root / name).mkdir(parents=True)
        (root / name / "type").write_text(f"{typ}\n")
        (root / name / "cpus").write_text(f"{cpus}\n")
    (root / "software").mkdir()
    (root / "software" / "type").write_text("1\n")
    return root


def test_import_hand_written_host_with_cpuinfo(tmp_path: Path) -> None:
    # the other RK3399 seen on the lists: armv8_cortex_a53 has type 7 there
    root = _host_tree(tmp_path / "devices", {"armv8_cortex_a53": (7, "0-3"),
                                             "armv8_cortex_a72": (8, "4-5")})
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO_RK3399)
    t = import_sysfs(root, info, name="my-rk3399")
    assert t.name == "my-rk3399" and t.firmware == "dt"
    assert [(cl.core.name, cl.cpus) for cl in t.clusters] == [
        ("cortex-a53", (0, 1, 2, 3)), ("cortex-a72", (4, 5))]
    assert [(p.name, p.type) for p in t.pmus()] == [("armv8_cortex_a53", 7),
                                                    ("armv8_cortex_a72", 8)]
    assert parse_cpuinfo(CPUINFO_RK3399)[4] == 0x410FD082
    assert import_sysfs(root, CPUINFO_RK3399).pmus() == t.pmus()  # text works too


def test_import_acpi_needs_midrs_and_takes_counter_override(tmp_path: Path) -> None:
    root = _host_tree(tmp_path / "devices", {"armv8_pmuv3_0": (8, "0-3")})
    with pytest.raises(TopologyError, match="ACPI PMU name does not say the core"):
        import_sysfs(root)
    cpu_dir = tmp_path / "cpu"
    for cpu in range(4):
        d = cpu_dir / f"cpu{cpu}" / "regs" / "identification"
        d.mkdir(parents=True)
        (d / "midr_el1").write_text("0x00000000413fd0c1\n")
    t = import_sysfs(root, midr=cpu_dir, num_counters={"armv8_pmuv3_0": 5})
    assert Topology.from_toml(t.to_toml()) == t
    (p,) = t.pmus()
    assert (p.name, p.type, p.cpus, p.core.name, p.num_counters) == (
        "armv8_pmuv3_0", 8, (0, 1, 2, 3), "neoverse-n1", 5)
    assert t.firmware == "acpi"
    assert any("N = 5" in a for a in t.assumptions)


def test_import_errors(tmp_path: Path) -> None:
    root = _host_tree(tmp_path / "devices", {"armv8_cortex_a53": (8, "0-1")})
    bad = CPUINFO_RK3399.replace("0xd03", "0xd0d")  # Cortex-A77: not in the catalogue
    with pytest.raises(TopologyError, match=r"cpu0: MIDR 0x410fd0d4 .*part 0xd0d.* not in the "
                       r"core catalogue; known implementer:part pairs: .*0x41:0xd03 cortex-a53"):
        import_sysfs(root, bad)
    wrong = CPUINFO_RK3399.replace("0xd03", "0xd08")
    with pytest.raises(TopologyError, match="the MIDRs say cortex-a72"):
        import_sysfs(root, wrong)
    with pytest.raises(TopologyError, match="no MIDR here"):
        import_sysfs(root, midr={0: 0x410FD034})
    with pytest.raises(TopologyError, match="expected a directory"):
        import_sysfs(tmp_path / "missing")
    with pytest.raises(TopologyError, match="keys must be PMU or core names"):
        import_sysfs(root, num_counters={"cortex-a76": 4})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TopologyError, match="at least one CPU PMU directory"):
        import_sysfs(empty)


def test_imported_topology_keeps_non_consecutive_types(tmp_path: Path) -> None:
    root = _host_tree(tmp_path / "devices", {"armv8_cortex_a55": (9, "0-3"),
                                             "armv8_cortex_a76": (12, "4-7")})
    t = import_sysfs(root)
    assert [p.type for p in t.pmus()] == [9, 12]
    assert replace(t, name="x").pmus() == t.pmus()


# ---------------------------------------------------------------------- CLI
def test_cli_prints_tree() -> None:
    r = CliRunner().invoke(main, ["sysfs", "rk3399"])
    assert r.exit_code == 0, r.output
    assert "armv8_cortex_a72/cpus: 4-5\n" in r.output
    assert "armv8_cortex_a53/type: 8\n" in r.output
    r = CliRunner().invoke(main, ["sysfs", "tensor-g1", "--pmu", "armv8_cortex_x1"])
    assert r.exit_code == 0
    assert all(line.startswith("armv8_cortex_x1/") for line in r.output.splitlines())


def test_cli_bad_input_exits_2() -> None:
    r = CliRunner().invoke(main, ["sysfs", "tensor-g11"])
    assert r.exit_code == 2
    assert "did you mean 'tensor-g1'" in r.output
    r = CliRunner().invoke(main, ["sysfs", "tensor-g1", "--pmu", "armv8_cortex_a77"])
    assert r.exit_code == 2 and "no PMU 'armv8_cortex_a77'" in r.output
    r = CliRunner().invoke(main, ["sysfs"])
    assert r.exit_code == 2 and "give a PRESET" in r.output


def test_cli_write_list_and_toml(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["sysfs", "hetero-n", "--write", str(tmp_path / "d")])
    assert r.exit_code == 0
    assert (tmp_path / "d" / "armv9_cortex_a710" / "type").read_text() == "9\n"
    r = CliRunner().invoke(main, ["sysfs", "--list-presets"])
    assert r.exit_code == 0
    assert "pmu armv9_cortex_a710" in r.output and "20 counters" in r.output
    assert "assumption: cortex-a710 N = 20 is an assumption" in r.output
    f = tmp_path / "t.toml"
    f.write_text('firmware = "acpi"\n[[cluster]]\ncore = "neoverse-v2"\ncount = 4\n')
    r = CliRunner().invoke(main, ["sysfs", "--toml", str(f)])
    assert r.exit_code == 0 and "armv8_pmuv3_0/cpus: 0-3" in r.output
    f.write_text('[[cluster]]\ncore = "neoverse-v9"\ncount = 4\n')
    r = CliRunner().invoke(main, ["sysfs", "--toml", str(f)])
    assert r.exit_code == 2 and "t.toml:2: cluster[0].core: unknown core" in r.output


def test_cli_import_prints_toml(tmp_path: Path) -> None:
    root = _host_tree(tmp_path / "devices", {"armv8_pmuv3_0": (8, "0-5")})
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO_RK3399.replace("0xd03", "0xd0c").replace("0xd08", "0xd0c"))
    r = CliRunner().invoke(main, ["sysfs", "my-n1", "--import", str(root), "--cpuinfo",
                                  str(info), "--counters", "armv8_pmuv3_0=4"])
    assert r.exit_code == 0, r.output
    toml = r.stdout
    t = Topology.from_toml(toml)
    assert (t.name, t.firmware, t.num_cpus, t.pmus()[0].num_counters) == ("my-n1", "acpi", 6, 4)
    r = CliRunner().invoke(main, ["sysfs", "--import", str(root)])
    assert r.exit_code == 2 and "ACPI PMU name does not say the core" in r.output
    r = CliRunner().invoke(main, ["sysfs", "--import", str(root), "--counters", "x"])
    assert r.exit_code == 2 and "--counters must be NAME=N" in r.output
