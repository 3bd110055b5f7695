"""pmupart.scenario: loading scenario TOML, and the errors for bad input."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_load_scenario_reads_a_file(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
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


def _sub(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


EXTRA_VM = '\n[[vm]]\nname = "vm1"\n'
HOST_TASK = '\n[[host.task]]\nname = "make"\nworkload = "compute"\n'

# (scenario text, line, field, pieces of the message)
CASES: list[tuple[str, str, int, str, tuple[str, ...]]] = [
    ("unknown-key", _sub("seed = 1", "sed = 1"), 4, "scenario.sed",
     ("unknown key 'sed'", "did you mean 'seed'?", "expected one of: name, description")),
    ("missing-key", _sub('name = "demo"\n', ""), 1, "scenario.name",
     ("required key is missing", "a string")),
    ("missing-table", BASE[BASE.index("[machine]"):], 0, "scenario",
     ("required table [scenario] is missing",)),
    ("duration-no-unit", _sub('duration = "20ms"', "duration = 20"), 3, "scenario.duration",
     ('a duration with a unit ("2s"', "found 20 (an integer)")),
    ("duration-bad-unit", _sub('duration = "20ms"', 'duration = "20 minutes"'), 3,
     "scenario.duration", ("a duration with a unit", 'found "20 minutes" (a string)')),
    ("duration-zero", _sub('duration = "20ms"', 'duration = "0s"'), 3, "scenario.duration",
     ('expected a duration above zero, found "0s"',)),
    ("duration-sub-ns", _sub('duration = "20ms"', 'duration = "1.5ns"'), 3,
     "scenario.duration", ("whole number of nanoseconds",)),
    ("unknown-preset", _sub("tensor-g1", "tensor-g9"), 7, "machine.preset",
     ("expected a preset name, found 'tensor-g9'", "did you mean 'tensor-g4'", "presets: ")),
    ("reserved-type", _sub("reserved_host_counters = 2", 'reserved_host_counters = "2"'), 8,
     "machine.reserved_host_counters", ('expected an integer, found "2" (a string)',)),
    ("reserved-range", _sub("reserved_host_counters = 2", "reserved_host_counters = -2"), 8,
     "machine.reserved_host_counters", ("expected an integer >= -1, found -2 (an integer)",)),
    ("nr-counters-type", _sub("vcpus = 2", 'vcpus = 2\nnr_counters = "4"'), 18,
     "vm[0].nr_counters", ('expected an integer, found "4" (a string)',)),
    ("nr-counters-float", _sub("vcpus = 2", "vcpus = 2\nnr_counters = 4.0"), 18,
     "vm[0].nr_counters", ("expected an integer, found 4.0 (a float)",)),
    ("bool-type", _sub("partition = true", 'partition = "yes"'), 18, "vm[0].partition",
     ('expected true or false, found "yes" (a string)',)),
    ("undefined-workload", _sub('workload = "compute"', 'workload = "compte"'), 20,
     "vm[0].workload", ("workload 'compte' is not defined", "did you mean 'compute'?",
                        "defined: compute, idle", "[workload.compte]")),
    ("affinity-outside", _sub('"4-7"', '"4-9"'), 19, "vm[0].affinity",
     ("CPU 8 is not in machine 'tensor-g1' (CPUs 0-7)", 'found "4-9"')),
    ("affinity-list-outside", _sub('"4-7"', "[4, 12]"), 19, "vm[0].affinity",
     ("CPU 12 is not in machine 'tensor-g1'", "found [4, 12]")),
    ("affinity-syntax", _sub('"4-7"', '"4..7"'), 19, "vm[0].affinity",
     ('expected a cpulist such as "0-3,6", found "4..7"',)),
    ("affinity-type", _sub('"4-7"', "3.5"), 19, "vm[0].affinity",
     ('a cpulist string ("0-3,6") or an array of CPU numbers', "found 3.5 (a float)")),
    ("duplicate-vm", BASE + '\n[[vm]]\nname = "vm0"\n', 31, "vm[1].name",
     ("duplicate VM name 'vm0' (vm[0] has it already)",)),
    ("unknown-event-rates", _sub("L1D_CACHE = 0.4", "L1D_CACHEX = 0.4"), 12,
     "workload.compute.rates.L1D_CACHEX",
     ("unknown event 'L1D_CACHEX'", "did you mean 'L1D_CACHE'")),
    ("unknown-event-host-perf", _sub('events = ["CPU_CYCLES"]\n', 'events = ["CPU_CYCLE"]\n'),
     24, "host.perf[0].events[0]", ("unknown event 'CPU_CYCLE'", "did you mean 'CPU_CYCLES'")),
    ("event-number-range", _sub('events = ["CPU_CYCLES"]\n', "events = [70000]\n"), 24,
     "host.perf[0].events[0]", ("0..0xffff",)),
    ("literal", _sub('policy = "periodic"', 'policy = "periodc"'), 27, "migration.policy",
     ("expected one of 'none', 'periodic', 'random', 'load-balance'",
      'found "periodc" (a string)', "did you mean 'periodic'?")),
    ("kvm-literal", BASE + '\n[kvm]\nhpmn_source = "per_cpu"\n', 31, "kvm.hpmn_source",
     ("expected one of 'per-cpu', 'vm-pmu'", "did you mean 'per-cpu'?")),
    ("kvm-costs-key", BASE + "\n[kvm.costs]\nexit_roundtrip = 5\n", 31,
     "kvm.costs.exit_roundtrip", ("unknown key 'exit_roundtrip'",
                                  "did you mean 'exit_round_trip'?")),
    ("host-costs-negative", BASE + "\n[host.costs]\npmu_irq = -5\n", 31, "host.costs.pmu_irq",
     ("expected an integer >= 0, found -5",)),
    ("policy-name", BASE + '\n[policies]\nreserved_hpm = "clamp"\n', 31,
     "policies.reserved_hpm", ("unknown policy 'reserved_hpm'", "did you mean 'reserved_hpmn'")),
    ("policy-value", BASE + '\n[policies]\nreserved_hpmn = "clmp"\n', 31,
     "policies.reserved_hpmn", ("expected one of 'clamp', 'as-n', 'all-reserved'",
                                "did you mean 'clamp'?")),
    ("policy-bool", BASE + '\n[policies]\nexternal_debug_enabled = "false"\n', 31,
     "policies.external_debug_enabled", ('expected true or false, found "false"',)),
    ("record-needs-freq", _sub('mode = "stat"', 'mode = "record"'), 21, "vm[0].perf.freq",
     ("perf record needs 'freq'", "found neither")),
    ("stat-with-freq", _sub('mode = "stat"', 'mode = "stat", freq = 100'), 21,
     "vm[0].perf.freq", ("'freq' is for mode = \"record\"",)),
    ("guest-perf-scope", _sub('mode = "stat"', 'mode = "stat", scope = "system"'), 21,
     "vm[0].perf.scope", ("unknown key 'scope'",)),
    ("host-scope", _sub('events = ["CPU_CYCLES"]\n', 'events = ["CPU_CYCLES"]\n'
                        'scope = "task:mak"\n') + HOST_TASK, 25, "host.perf[0].scope",
     ("host task 'mak' is not defined", "did you mean 'make'?")),
    ("host-scope-syntax", _sub('events = ["CPU_CYCLES"]\n', 'events = ["CPU_CYCLES"]\n'
                               'scope = "cpu:1"\n'), 25, "host.perf[0].scope",
     ('expected "system" (perf -a) or "task:<name>"',)),
    ("duplicate-task", BASE + HOST_TASK + HOST_TASK, 35, "host.task[1].name",
     ("duplicate host task name 'make' (host.task[0] has it already)",)),
    ("task-workload", BASE + HOST_TASK.replace('"compute"', '"build"'), 32,
     "host.task[0].workload", ("workload 'build' is not defined",)),
    ("set-pmu-name", _sub("vcpus = 2", 'vcpus = 2\nset_pmu = "armv8_cortex_a75"'), 18,
     "vm[0].set_pmu", ("expected a PMU of machine 'tensor-g1'", "armv8_cortex_a55, ",
                       'found "armv8_cortex_a75"', "did you mean 'armv8_cortex_a76'")),
    ("vcpu-affinity-count", _sub("vcpus = 2", 'vcpus = 2\nvcpu_affinity = ["4", "5", "6"]'),
     18, "vm[0].vcpu_affinity", ("at most 2 entries (one per vCPU), found 3",)),
    ("vcpu-affinity-cpu", _sub("vcpus = 2", 'vcpus = 2\nvcpu_affinity = ["4", "9"]'), 18,
     "vm[0].vcpu_affinity[1]", ("CPU 9 is not in machine",)),
    ("no-pmu-perf", _sub("partition = true", "pmu = false"), 21, "vm[0].perf",
     ("'perf' needs the vCPU PMU; found pmu = false",)),
    ("no-pmu-partition", _sub("vcpus = 2", "vcpus = 2\npmu = false"), 19, "vm[0].partition",
     ("'partition' needs the vCPU PMU",)),
    ("filter-both", _sub("vcpus = 2", 'vcpus = 2\nfilter = [{ action = "allow", '
                         'events = ["CPU_CYCLES"], base = 0 }]'), 18, "vm[0].filter[0]",
     ("either 'events' (a list) or 'base' and 'nevents'", "found both")),
    ("filter-neither", _sub("vcpus = 2", 'vcpus = 2\nfilter = [{ action = "deny" }]'), 18,
     "vm[0].filter[0]", ("found neither",)),
    ("filter-action", _sub("vcpus = 2", 'vcpus = 2\nfilter = [{ action = "permit", '
                           "base = 0 }]"), 18, "vm[0].filter[0].action",
     ("expected one of 'allow', 'deny'", 'found "permit"')),
    ("filter-range", _sub("vcpus = 2", 'vcpus = 2\nfilter = [{ action = "deny", '
                          'base = "0xfff0", nevents = 32 }]'), 18, "vm[0].filter[0].nevents",
     ("runs past event 0xffff",)),
    ("instructions-fraction", _sub("kernel_fraction = 0.05", "kernel_fraction = 0.05\n"
                                   "instructions = 2.5"), 12, "workload.compute.instructions",
     ("whole number of instructions above zero", "found 2.5 (a float)")),
    ("kernel-fraction-range", _sub("kernel_fraction = 0.05", "kernel_fraction = 1.5"), 11,
     "workload.compute.kernel_fraction", ("expected a number <= 1.0, found 1.5",)),
    ("cpi-core", _sub('"cortex-a55" = 1.4', '"cortex-a56" = 1.4'), 13,
     'workload.compute.cpi.cortex-a56', ("expected a core name or \"*\", found 'cortex-a56'",
                                          "did you mean", "'cortex-a55'")),
    ("rate-negative", _sub("BR_RETIRED = 0.15", "BR_RETIRED = -0.15"), 12,
     "workload.compute.rates.BR_RETIRED", ("expected a rate >= 0",)),
    ("phase-duration", _sub("[[vm]]", "[[workload.compute.phase]]\nkernel_fraction = 0.1\n"
                            "[[workload.compute.phase]]\n\n[[vm]]"), 15,
     "workload.compute.phase[0].duration", ("only the last phase may run on",)),
    ("mux-whole-ms", _sub("reserved_host_counters = 2", 'reserved_host_counters = 2\n'
                          'mux_interval = "1500us"'), 9, "machine.mux_interval",
     ("expected whole milliseconds", 'found "1500us"')),
    ("preset-and-cluster", _sub("reserved_host_counters = 2\n", 'reserved_host_counters = 2\n'
                                '[[machine.cluster]]\ncore = "cortex-a55"\ncount = 2\n'), 6,
     "machine", ("exactly one of 'preset'", "found both 'preset' and 'cluster'")),
    ("layout-key-with-preset", _sub("reserved_host_counters = 2", "reserved_host_counters = 2"
                                    '\nfirmware = "acpi"'), 9, "machine.firmware",
     ("describes a custom layout",)),
    ("key-after-cluster", _sub('preset = "tensor-g1"\nreserved_host_counters = 2',
                               '[[machine.cluster]]\ncore = "cortex-a55"\ncount = 4\n'
                               "reserved_host_counters = 2"), 10,
     "machine.cluster[0].reserved_host_counters",
     ("unknown key 'reserved_host_counters'", "is a key of [machine]",
      "move it above the first [[machine.cluster]]")),
    ("cluster-core", _sub('preset = "tensor-g1"\nreserved_host_counters = 2',
                          'reserved_host_counters = 2\n[[machine.cluster]]\ncore = "cortex-a55"'
                          '\ncount = 4\n[[machine.cluster]]\ncore = "cortex-a77"\ncount = 4'), 12,
     "machine.cluster[1].core", ("unknown core 'cortex-a77'", "did you mean")),
    ("cluster-count", _sub('preset = "tensor-g1"\nreserved_host_counters = 2',
                           '[[machine.cluster]]\ncore = "cortex-a55"\ncount = 0'), 9,
     "machine.cluster[0].count", ("expected an integer >= 1, found 0",)),
    ("toml-syntax", _sub('seed = 1', 'seed = '), 4, "", ("not valid TOML",)),
    ("toml-duplicate-table", BASE + "\n[workload.compute]\n", 30, "", ("not valid TOML",)),
]


@pytest.mark.parametrize("text,line,field,pieces", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_error_names_file_line_field(text: str, line: int, field: str,
                                     pieces: tuple[str, ...]) -> None:
    e = _err(text)
    assert (e.path, e.line, e.field) == ("s.toml", line, field), str(e)
    for p in pieces:
        assert p in e.msg, f"{p!r} not in {e.msg!r}"
    where = f"s.toml:{line}" if line else "s.toml"
    assert str(e) == (f"{where}: {field}: {e.msg}" if field else f"{where}: {e.msg}")


def test_multiline_array_element_line() -> None:
    text = _sub('perf = { mode = "stat", events = ["CPU_CYCLES", "INST_RETIRED", '
                '"L1D_CACHE"] }',
                '[vm.perf]\nevents = [\n  "CPU_CYCLES",\n  "INST_RETIRED",  # ok\n'
                '  "L1D_CACH",\n]')
    e = _err(text)
    assert (e.line, e.field) == (25, "vm[0].perf.events[2]")


def test_first_error_in_file_order_and_count() -> None:
    e = _err(_sub("seed = 1", "seed = -1").replace("vcpus = 2", 'vcpus = "2"'))
    assert (e.line, e.field) == (4, "scenario.seed")
    assert e.msg.endswith("(and 1 more error)")


def test_overrides() -> None:
    s = load_scenario_text(BASE, "s.toml", overrides=[
        "kvm.hpmn_source=vm-pmu", "vm[0].nr_counters=3", 'scenario.duration="5ms"',
        "migration.policy=random", "machine.reservation=static",
        "workload.compute.rates.BR_MIS_PRED=0.01", "host.costs.pmu_irq=7"])
    assert s.machine_options["kvm_options"].hpmn_source.value == "vm-pmu"
    assert s.vms[0].nr_counters == 3 and s.duration_ns == 5_000_000
    assert s.migration.policy is MigrationPolicy.RANDOM
    assert s.machine_options["reservation"] == "static"
    assert s.machine_options["host_costs"].pmu_irq == 7
    assert (0x10, 0.01) in s.workloads["compute"].phases[0].rates
    q = load_scenario_text(BASE, overrides=['workload.compute.cpi."cortex-a76"=0.9'])
    assert ("cortex-a76", 0.9) in q.workloads["compute"].phases[0].cpi


def test_override_errors_name_the_override() -> None:
    with pytest.raises(ScenarioError) as ei:
        load_scenario_text(BASE, "s.toml", overrides=["vm[0].nr_counters=many"])
    e = ei.value
    assert e.path == "s.toml (--set vm[0].nr_counters)" and e.line == 0
    assert e.field == "vm[0].nr_counters" and 'found "many" (a string)' in e.msg
    with pytest.raises(ScenarioError) as ei:
        load_scenario_text(BASE, "s.toml", overrides=["vm[3].partition=true"])
    assert ei.value.path == "--set" and ei.value.field == "vm[3]"
    with pytest.raises(ScenarioError) as ei:
        load_scenario_text(BASE, "s.toml", overrides=["no equals sign"])
    assert "expected key.path=value" in ei.value.msg


def test_machine_file_is_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "board.toml").write_text('name = "board"\n[[cluster]]\ncore = "cortex-a55"\n'
                                         "count = 2\n")
    p = tmp_path / "s.toml"
    p.write_text(_sub('preset = "tensor-g1"', 'file = "board.toml"').replace('"4-7"', '"0-1"'))
    s = load_scenario(p)
    assert s.machine.name == "board" and s.machine.num_cpus == 2
    (tmp_path / "board.toml").write_text('name = "board"\n[[cluster]]\ncore = "cortex-a5"\n'
                                         "count = 2\n")
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    e = ei.value
    assert (e.line, e.field) == (7, "machine.file")
    assert "board.toml:3: cluster[0].core: unknown core 'cortex-a5'" in e.msg
    p.write_text(_sub('preset = "tensor-g1"', 'file = "nope.toml"'))
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    assert ei.value.field == "machine.file" and "nope.toml: cannot read" in ei.value.msg


def test_missing_file() -> None:
    with pytest.raises(ScenarioError) as ei:
        load_scenario("/nonexistent/s.toml")
    assert ei.value.path == "/nonexistent/s.toml" and "cannot read" in ei.value.msg


def test_kernel_errors_are_not_scenario_errors() -> None:
    from pmupart.kvm import KvmError
    s = load_scenario_text(_sub("vcpus = 2", "vcpus = 2\nnr_counters = 9"))
    with pytest.raises(KvmError):
        run_scenario(s)


def test_same_scenario_and_seed_same_results() -> None:
    text = _sub('policy = "periodic"', 'policy = "random"')
    runs = [run_scenario(load_scenario_text(text)) for _ in range(2)]
    a, b = ([(v.name, [(e.count, e.time_running) for e in v.events]) for v in r.vms]
            for r in runs)
    assert a == b
    assert runs[0].machine.stats.traps == runs[1].machine.stats.traps


GOLDEN = Path(__file__).resolve().parent / "golden" / "scenario" / "errors.txt"


def test_error_messages_match_golden() -> None:
    """The full text of every message above, for review.  Regenerate with
    ``PMUPART_REGEN_GOLDEN=1 python -m pytest tests/test_scenario_loader.py``."""
    out = []
    for name, text, *_ in CASES:
        try:
            load_scenario_text(text, "s.toml")
            msg = "(no error)"
        except ScenarioError as e:
            msg = str(e)
        out.append(f"[{name}]\n{msg}\n")
    rendered = "\n".join(out)
    if os.environ.get("PMUPART_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(rendered)
    assert GOLDEN.read_text() == rendered
