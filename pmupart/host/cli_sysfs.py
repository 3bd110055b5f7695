"""``pmupart sysfs``: a machine's ``/sys/bus/event_source/devices`` CPU PMU trees."""

from __future__ import annotations

from pathlib import Path

import click

from pmupart.host.topology import PRESETS, Topology, TopologyError, cpulist, get_preset


def describe_topology(t: Topology) -> str:
    """A few lines per machine: clusters, PMUs (name, type, counters), assumptions."""
    lines = [f"{t.name}: {t.num_cpus} CPUs, {t.firmware.upper()}"
             + (f" - {t.description}" if t.description else "")]
    for cl in t.clusters:
        lines.append(f"  cpu {cpulist(cl.cpus):<8} {len(cl.cpus):>3}x {cl.core.name:<12} "
                     f"{cl.freq} MHz  ({cl.name})")
    for p in t.pmus():
        lines.append(f"  pmu {p.name:<20} type {p.type:<3} cpus {cpulist(p.cpus):<8} "
                     f"{p.num_counters} counters + cycle")
    for a in t.assumptions:
        lines.append(f"  assumption: {a}")
    return "\n".join(lines)


@click.command()
@click.argument("preset", required=False)
@click.option("--toml", "toml_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Use a custom layout from this TOML file instead of a preset.")
@click.option("--write", "write_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Write the files under DIR instead of printing them.")
@click.option("--pmu", "pmu_name", default=None, help="Only this PMU (armv8_cortex_a76).")
@click.option("--hz", type=click.IntRange(1, 1000), default=250, show_default=True,
              help="The kernel's CONFIG_HZ (perf_event_mux_interval_ms = 1000 / HZ).")
@click.option("--no-threshold", is_flag=True,
              help="A kernel before 6.8: no threshold formats, no caps/threshold_max.")
@click.option("--list-presets", is_flag=True,
              help="List the presets: clusters, PMUs and assumptions.")
@click.option("--import", "import_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Import a copy of a host's /sys/bus/event_source/devices and "
              "print its topology as TOML (to use as a machine); PRESET, if given, names it.")
@click.option("--cpuinfo", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --import: a copy of the host's /proc/cpuinfo (MIDRs).")
@click.option("--midr", "midr_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="With --import: a copy of /sys/devices/system/cpu "
              "(cpu*/regs/identification/midr_el1).")
@click.option("--counters", multiple=True, metavar="NAME=N",
              help="With --import: PMCR_EL0.N for a PMU or core (sysfs does not show it).")
def sysfs(preset: str | None, toml_path: Path | None, write_dir: Path | None,
          pmu_name: str | None, hz: int, no_threshold: bool, list_presets: bool,
          import_dir: Path | None, cpuinfo: Path | None, midr_dir: Path | None,
          counters: tuple[str, ...]) -> None:
    """Render the host's CPU PMU sysfs trees for PRESET (or --toml FILE).

    Prints one `path: content` line per file, paths relative to
    /sys/bus/event_source/devices.

    \b
    Examples:
      pmupart sysfs tensor-g1
      pmupart sysfs snapdragon-8-gen-2 --pmu armv9_cortex_a710
      pmupart sysfs rk3399 --write /tmp/devices
      pmupart sysfs --list-presets
      pmupart sysfs --import copy/devices --cpuinfo copy/cpuinfo > my-host.toml
    """
    from pmupart.cli import fail
    from pmupart.host.sysfs import render_sysfs, write_sysfs

    if list_presets:
        click.echo("\n\n".join(describe_topology(t) for t in PRESETS.values()))
        return
    if import_dir is not None:
        from pmupart.host.sysfs import import_sysfs

        overrides: dict[str, int] = {}
        for c in counters:
            key, sep, val = c.partition("=")
            if not sep or not val.strip().isdigit():
                fail(f"--counters must be NAME=N (armv8_pmuv3_0=5), not {c!r}")
            overrides[key.strip()] = int(val)
        try:
            host = import_sysfs(import_dir, cpuinfo, midr=midr_dir, num_counters=overrides,
                                name=preset or "imported")
        except (TopologyError, ValueError) as e:
            fail(str(e))
        click.echo(host.to_toml(), nl=False)
        click.echo(describe_topology(host), err=True)
        return
    if (preset is None) == (toml_path is None):
        fail("give a PRESET or --toml FILE (one of them); presets: " + ", ".join(PRESETS))
    try:
        topo = (Topology.from_toml(toml_path) if toml_path is not None
                else get_preset(str(preset)))
        if pmu_name is not None:
            pmu = topo.pmu(pmu_name)
            topo_files = {k: v for k, v in render_sysfs(topo, hz=hz,
                                                         threshold=not no_threshold).items()
                          if k.startswith(pmu.name + "/")}
        else:
            topo_files = render_sysfs(topo, hz=hz, threshold=not no_threshold)
    except (TopologyError, ValueError) as e:
        fail(str(e))
    if write_dir is not None:
        if pmu_name is None:
            write_sysfs(topo, write_dir, hz=hz, threshold=not no_threshold)
        else:
            for rel, text in topo_files.items():
                p = write_dir / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text, encoding="ascii")
        click.echo(f"wrote {len(topo_files)} files under {write_dir}", err=True)
        return
    click.echo("\n".join(f"{k}: {v.rstrip(chr(10))}" for k, v in topo_files.items()))
