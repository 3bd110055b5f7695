"""pmupart.scenario: loading scenario TOML, and the errors for bad input."""

from __future__ import annotations

import pytest

from pmupart.errors import PmupartError
from pmupart.scenario import ScenarioError, load_scenario, load_scenario_text, parse_duration
from pmupart.sim import MigrationPolicy, PerfMode, run_scenario

BASE = """\
[scenario]
name = "demo"
duration = "20ms"
seed = 1

[machine]
preset = "tensor-g1"
reserved_host_counters = 2

[workload.compute]
kernel_fraction = 0.05
rates = { L1D_CACHE = 0.4, BR_RETIRED = 0.15 }
cpi = { "cortex-a55" = 1.4 }

[[vm]]
name = "vm0"
vcpus = 2
partition = true
affinity = "4-7"
workload = "compute"
perf = { mode = "stat", events = ["CPU_CYCLES", "INST_RETIRED", "L1D_CACHE"] }

[[host.perf]]
events = ["CPU_CYCLES"]

[migration]
policy = "periodic"
interval = "10ms"
"""


def test_loads_and_runs() -> None:
    spec = load_scenario_text(BASE, "demo.toml")
    assert spec.name == "demo" and spec.duration_ns == 20_000_000 and spec.seed == 1
    assert spec.machine.name == "tensor-g1"
    assert spec.machine_options["reserved_host_counters"] == 2
    vm = spec.vms[0]
    assert vm.partition and vm.vcpus == 2 and vm.affinity == (4, 5, 6, 7)
    assert vm.perf is not None and vm.perf.mode is PerfMode.STAT
    assert vm.perf.events == (0x11, 0x08, 0x04)
    assert spec.migration.policy is MigrationPolicy.PERIODIC
    assert spec.migration.interval_ns == 10_000_000
    assert spec.source == "demo.toml"
    r = run_scenario(spec)
    assert r.vms[0].backend == "partitioned" and r.vms[0].events[0].count > 0


def test_load_scenario_reads_a_file(tmp_path: object) -> None:
    from pathlib import Path
    p = Path(str(tmp_path)) / "s.toml"
    p.write_text(BASE)
    assert load_scenario(p).source == str(p)
    assert load_scenario(str(p)).name == "demo"


@pytest.mark.parametrize("text,ns", [("2s", 2 * 10**9), ("1.5ms", 1_500_000), ("250us", 250_000),
                                     ("250µs", 250_000), ("100ns", 100), ("0.25 s", 250_000_000)])
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


def _err(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as ei:
        load_scenario_text(text, "s.toml")
    e = ei.value
    assert isinstance(e, PmupartError) and isinstance(e, ValueError)
    return e


def test_error_unknown_event_in_perf() -> None:
    e = _err(BASE.replace('"L1D_CACHE"]', '"L1D_CACH"]'))
    assert (e.path, e.line, e.field) == ("s.toml", 21, "vm[0].perf.events[2]")
    assert "unknown event 'L1D_CACH'" in e.msg and "did you mean 'L1D_CACHE'" in e.msg
    assert str(e).startswith("s.toml:21: vm[0].perf.events[2]: unknown event")
