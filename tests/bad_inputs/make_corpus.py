"""Write the bad-input corpus: ``python tests/bad_inputs/make_corpus.py`` (re-run after
changing it; the files are committed).

Each case is a file under ``tests/bad_inputs/cases/`` and a row of ``MANIFEST.tsv``:
file, the command's extra arguments, the exit code expected, and the text the error must
contain (``{f}`` stands for the file's path): the file:line: field of a scenario error, or
the option.  Hand-written cases come first, then generated ones (each field of a base
scenario given values of the wrong type, out of range, unknown names).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"

BASE = """\
[scenario]
name = "base"
duration = "5ms"
seed = 1

[machine]
name = "m"
reserved_host_counters = 2

[[machine.cluster]]
name = "big"
core = "cortex-a720"
count = 2
num_counters = 10

[[machine.cluster]]
name = "little"
core = "cortex-a520"
count = 2

[kvm]
hpmn_source = "per-cpu"

[workload.compute]
kernel_fraction = 0.05
rates = { L1D_CACHE = 0.4, BR_RETIRED = 0.15 }

[[vm]]
name = "vm0"
partition = true
affinity = "0-3"
workload = "compute"
vcpus = 1
perf = { events = ["CPU_CYCLES", "INST_RETIRED"] }

[[host.perf]]
scope = "system"
events = ["CPU_CYCLES"]
exclude_guest = true

[migration]
policy = "periodic"
interval = "1ms"
"""

#: (key line as in BASE, field path in errors)
FIELDS = [
    ('duration = "5ms"', "scenario.duration"),
    ("seed = 1", "scenario.seed"),
    ("reserved_host_counters = 2", "machine.reserved_host_counters"),
    ('core = "cortex-a720"', "machine.cluster[0].core"),
    ("count = 2\nnum_counters", "machine.cluster[0].count"),
    ("num_counters = 10", "machine.cluster[0].num_counters"),
    ('hpmn_source = "per-cpu"', "kvm.hpmn_source"),
    ("kernel_fraction = 0.05", "workload.compute.kernel_fraction"),
    ('partition = true', "vm[0].partition"),
    ('affinity = "0-3"', "vm[0].affinity"),
    ('workload = "compute"', "vm[0].workload"),
    ("vcpus = 1", "vm[0].vcpus"),
    ('policy = "periodic"', "migration.policy"),
    ('interval = "1ms"', "migration.interval"),
    ('scope = "system"', "host.perf[0].scope"),
    ("exclude_guest = true", "host.perf[0].exclude_guest"),
]
#: values no field above takes
BAD_VALUES = ["-7", '"nope"', "[1, 2]", "{ a = 1 }", "1e400", "nan", "99999999999999999999",
              "true"]


def cases() -> list[tuple[str, str, str, int, str]]:
    """(file name, content (str or bytes as latin-1 escaped), extra args, exit, expect)."""
    out: list[tuple[str, str, str, int, str]] = []

    def add(name: str, text: str, expect: str, args: str = "", code: int = 2) -> None:
        out.append((name, text, args, code, expect))

    # ---- hand-written: syntax, encodings, sizes, structure
    add("empty.toml", "", "{f}: scenario: required table [scenario] is missing")
    add("toml-unclosed-string.toml", '[scenario]\nname = "x\n', "{f}:2: not valid TOML")
    add("toml-bad-table.toml", "[scenario\nname = 1\n", "{f}:1: not valid TOML")
    add("toml-dup-key.toml", '[scenario]\nname = "a"\nname = "b"\n', "{f}:3: not valid TOML")
    add("toml-dup-table.toml", BASE + "\n[scenario]\nname = \"again\"\n", "not valid TOML")
    add("toml-garbage.toml", "this is not toml at all ===\n", "{f}:1: not valid TOML")
    add("toml-trailing-comma.toml", BASE.replace('"INST_RETIRED"] }', '"INST_RETIRED",,] }'),
        "not valid TOML")
    add("binary.toml", "\x00\x01\x02\x03\xff\xfe" * 40, "{f}")
    add("utf16.toml", "\xff\xfe[\x00s\x00", "{f}: not UTF-8 text")
    add("latin1.toml", BASE.replace('name = "base"', 'name = "b\xe9se"'), "{f}: not UTF-8 text")
    add("nul-in-name.toml", BASE.replace('name = "vm0"', 'name = "vm\\u0000"'),
        "{f}:49: vm[0].name: expected printable text")
    add("tab-in-vm-name.toml", BASE.replace('name = "vm0"', 'name = "vm\\t0"'),
        "{f}:49: vm[0].name: expected printable text")
    add("escape-in-description.toml", BASE.replace('name = "base"',
        'name = "base"\ndescription = "\\u001b[31mred"'), "scenario.description")
    add("control-in-key.toml", BASE.replace("[workload.compute]", '[workload."a\\u0007"]'),
        "expected a printable key")
    add("nan-kernel-fraction.toml", BASE.replace("kernel_fraction = 0.05",
        "kernel_fraction = nan"), "{f}:26: workload.compute.kernel_fraction: expected a finite")
    add("inf-cpi.toml", BASE.replace("kernel_fraction = 0.05",
        'kernel_fraction = 0.05\ncpi = { "*" = inf }'),
        "{f}:27: workload.compute.cpi.*: expected a finite number")
    add("negative-cpi.toml", BASE.replace("kernel_fraction = 0.05",
        'kernel_fraction = 0.05\ncpi = { "*" = -1.0 }'), "workload.compute.cpi.*")
    add("inf-rate.toml", BASE.replace("L1D_CACHE = 0.4", "L1D_CACHE = inf"),
        "{f}:27: workload.compute.rates.L1D_CACHE: expected a finite number")
    add("negative-rate.toml", BASE.replace("L1D_CACHE = 0.4", "L1D_CACHE = -0.4"),
        "workload.compute.rates.L1D_CACHE")
    add("unknown-event.toml", BASE.replace('"INST_RETIRED"]', '"INST_RETIRD"]'),
        "{f}:54: vm[0].perf.events[1]")
    add("unknown-rate-event.toml", BASE.replace("BR_RETIRED = 0.15", "BR_RETRIED = 0.15"),
        "workload.compute.rates.BR_RETRIED")
    add("unknown-core.toml", BASE.replace("cortex-a720", "cortex-a7200"),
        "{f}:13: machine.cluster[0].core")
    add("unknown-preset.toml", BASE.split("[[machine.cluster]]")[0].replace(
        'name = "m"\n', 'preset = "tensor-g9"\n') + "[kvm]\n", "machine.preset")
    add("preset-and-cluster.toml", BASE.replace('name = "m"', 'preset = "tensor-g1"'),
        "{f}:6: machine")
    add("no-machine.toml", "[scenario]\nname = \"x\"\nduration = \"1ms\"\n", "machine")
    add("topology-file-missing.toml", BASE.split("[[machine.cluster]]")[0].replace(
        'name = "m"\n', 'file = "no-such-topology.toml"\n') + "[kvm]\n", "machine.file")
    add("reserved-above-n.toml", BASE.replace("reserved_host_counters = 2",
        "reserved_host_counters = 8"), "{f}:8: machine.reserved_host_counters: expected at "
        "most 6 (PMU armv9_cortex_a520")
    add("reserved-way-above.toml", BASE.replace("reserved_host_counters = 2",
        "reserved_host_counters = 31"), "machine.reserved_host_counters")
    add("affinity-out-of-range.toml", BASE.replace('affinity = "0-3"', 'affinity = "0-9"'),
        "{f}:51: vm[0].affinity")
    add("affinity-backwards.toml", BASE.replace('affinity = "0-3"', 'affinity = "3-0"'),
        "vm[0].affinity")
    add("affinity-garbage.toml", BASE.replace('affinity = "0-3"', 'affinity = "a,b"'),
        "vm[0].affinity")
    add("undefined-workload.toml", BASE.replace('workload = "compute"', 'workload = "comput"'),
        "{f}:52: vm[0].workload: workload 'comput' is not defined")
    add("duplicate-vm.toml", BASE.replace("[[host.perf]]",
        '[[vm]]\nname = "vm0"\nworkload = "compute"\n\n[[host.perf]]'), "duplicate VM name")
    add("unknown-key-top.toml", BASE + "\n[frobnicate]\nx = 1\n", "frobnicate")
    add("unknown-key-vm.toml", BASE.replace("vcpus = 1", "vcpus = 1\nvcpu = 2"),
        "{f}:54: vm[0].vcpu")
    add("unknown-key-kvm.toml", BASE.replace('hpmn_source = "per-cpu"',
        'hpmn_source = "per-cpu"\nhpmn_sauce = 1'), "kvm.hpmn_sauce")
    add("huge-vcpus.toml", BASE.replace("vcpus = 1", "vcpus = 100000"), "{f}:53: vm[0].vcpus")
    add("zero-vcpus.toml", BASE.replace("vcpus = 1", "vcpus = 0"), "{f}:53: vm[0].vcpus")
    add("huge-count.toml", BASE.replace("count = 2\nnum_counters", "count = 100000\nnum_counters"),
        "machine.cluster[0].count")
    add("huge-duration.toml", BASE.replace('duration = "5ms"', 'duration = "99999999999999s"'),
        "scenario.duration")
    add("negative-duration.toml", BASE.replace('duration = "5ms"', 'duration = "-5ms"'),
        "{f}:3: scenario.duration")
    add("zero-duration.toml", BASE.replace('duration = "5ms"', 'duration = "0s"'),
        "{f}:3: scenario.duration")
    add("fraction-ns.toml", BASE.replace('duration = "5ms"', 'duration = "0.5ns"'),
        "{f}:3: scenario.duration")
    add("duration-no-unit.toml", BASE.replace('duration = "5ms"', 'duration = "5"'),
        "{f}:3: scenario.duration")
    add("negative-seed.toml", BASE.replace("seed = 1", "seed = -1"), "{f}:4: scenario.seed")
    add("huge-seed.toml", BASE.replace("seed = 1", "seed = 99999999999999999999"),
        "{f}:4: scenario.seed: expected an integer <= 18446744073709551615")
    add("record-no-freq.toml", BASE.replace('perf = { events',
        'perf = { mode = "record", events'), "vm[0].perf.freq")
    add("record-freq-too-high.toml", BASE.replace('perf = { events',
        'perf = { mode = "record", freq = 1000000, events'),
        "{f}:54: vm[0].perf.freq: expected at most perf_event_max_sample_rate")
    add("record-period-tiny.toml", BASE.replace('perf = { events',
        'perf = { mode = "record", period = 1, events'), "{f}:54: vm[0].perf.period")
    add("record-freq-and-period.toml", BASE.replace('perf = { events',
        'perf = { mode = "record", freq = 100, period = 100000, events'), "vm[0].perf.period")
    add("stat-with-freq.toml", BASE.replace('perf = { events', 'perf = { freq = 100, events'),
        "vm[0].perf.freq")
    add("max-rate-zero.toml", BASE + "\n[host]\nperf_event_max_sample_rate = 0\n",
        "host.perf_event_max_sample_rate")
    add("host-perf-bad-scope.toml", BASE.replace('scope = "system"', 'scope = "task:nobody"'),
        "{f}:57: host.perf[0].scope")
    add("empty-events.toml", BASE.replace('events = ["CPU_CYCLES"]\nexclude',
                                          'events = []\nexclude'), "host.perf[0].events")
    add("program-missing-file.toml", BASE.replace("vcpus = 1",
        'vcpus = 1\nprogram = "no-such-prog.S"'), "{f}:54: vm[0].program")
    add("program-bad-module.toml", BASE.replace("vcpus = 1",
        'vcpus = 1\nprogram = "no_such_module_14:f"'), "{f}:54: vm[0].program")
    add("program-not-callable.toml", BASE.replace("vcpus = 1",
        'vcpus = 1\nprogram = "pmupart.guest.programs:__doc__"'), "{f}:54: vm[0].program")
    add("program-wrong-signature.toml", BASE.replace("vcpus = 1",
        'vcpus = 1\nprogram = "os:getcwd"'), "{f}:54: vm[0].program: expected 'getcwd'")
    add("program-no-colon.toml", BASE.replace("vcpus = 1",
        'vcpus = 1\nprogram = "justaname"'), "{f}:54: vm[0].program")
    add("set-pmu-unknown.toml", BASE.replace("vcpus = 1", 'vcpus = 1\nset_pmu = "armv8_nope"'),
        "{f}:54: vm[0].set_pmu")
    add("filter-bad-action.toml", BASE.replace("vcpus = 1",
        'vcpus = 1\nfilter = [{ action = "maybe", events = ["CPU_CYCLES"] }]'), "vm[0].filter")
    add("mux-not-ms.toml", BASE.replace("reserved_host_counters = 2",
        'reserved_host_counters = 2\nmux_interval = "1500us"'), "machine.mux_interval")
    add("deep-nesting.toml", "a = " + "[" * 3000 + "]" * 3000 + "\n",
        "{f}: not valid TOML: nested too deeply")
    add("newline-in-vm-name.toml", BASE.replace('name = "vm0"', 'name = "vm\\n0"'),
        "{f}:29: vm[0].name: expected printable text")
    add("cost-overflows-u64.toml", BASE.replace('hpmn_source = "per-cpu"',
        'hpmn_source = "per-cpu"\ncosts = { exit_round_trip = 99999999999999999999999 }'),
        "{f}:21: kvm.costs.exit_round_trip: expected an integer <= 1000000000")
    add("host-cost-huge.toml", BASE + "\n[host.costs]\npmu_irq = 18446744073709551615\n",
        "host.costs.pmu_irq: expected an integer <= 1000000000")
    add("cost-negative.toml", BASE.replace('hpmn_source = "per-cpu"',
        'hpmn_source = "per-cpu"\ncosts = { exit_round_trip = -1 }'),
        "kvm.costs.exit_round_trip")
    # ---- options (the scenario is fine; the option is wrong)
    ok = BASE
    for i, (args, expect) in enumerate([
            ("--seed -1", "--seed"), ("--seed x", "--seed"), ("--duration fast", "--duration"),
            ("--duration 0ms", "--duration"), ("--duration -1s", "--duration"),
            ("--duration 2h", "--duration"), ("--duration 99999s", "--duration"),
            ("-x ''", "-x/--field-separator"), ("--json -x ,", "--json and -x"),
            ("--set nokey", "--set"), ("--set vm[9].vcpus=1", "vm[9]"),
            ("--set vm[0].vcpus=x", "vm[0].vcpus"), ("--set scenario.seed=-4", "scenario.seed"),
            ("--trace /nonexistent-dir-14/t.json", "--trace"),
            ("--plot /nonexistent-dir-14/p.png", "--plot"),
            ("--set machine.reserved_host_counters=99", "machine.reserved_host_counters"),
            ("--set kvm.hpmn_source=sideways", "kvm.hpmn_source"),
            ("--bogus-option", "--bogus-option")]):
        add(f"option-{i:02d}.toml", ok, expect, args=args)
    # ---- generated: each field with each bad value
    for line, field in FIELDS:
        key = line.split(" = ")[0]
        for j, val in enumerate(BAD_VALUES):
            text = BASE.replace(line, line.replace(line.split("\n")[0], f"{key} = {val}"), 1)
            expect = field
            name = f"gen-{field.replace('[', '').replace(']', '').replace('.', '-')}-{j}.toml"
            if text == BASE:
                continue
            add(name, text, expect)
    return out


#: bad values a field happens to accept (the value is valid for it): not bad inputs
def _accepted(field: str, val: str) -> bool:
    numeric = {"scenario.seed", "machine.reserved_host_counters", "machine.cluster[0].count",
               "machine.cluster[0].num_counters", "vm[0].vcpus"}
    if val == "true" and field.endswith(("partition", "exclude_guest")):
        return True
    if field == "vm[0].affinity" and val == "[1, 2]":  # a list of CPUs is an affinity
        return True
    if field in numeric and val == "true":
        return False
    return False


def main() -> int:
    CASES.mkdir(exist_ok=True)
    for old in CASES.iterdir():
        old.unlink()
    rows = ["file\targs\texit\texpect"]
    for name, text, args, code, expect in cases():
        field = expect
        if name.startswith("gen-"):
            val = BAD_VALUES[int(name.rsplit("-", 1)[1].split(".")[0])]
            if _accepted(field, val):
                continue
        data = text.encode("latin-1") if name in ("binary.toml", "utf16.toml", "latin1.toml") \
            else text.encode("utf-8")
        (CASES / name).write_bytes(data)
        expect = re.sub(r"\{f\}:\d+:", "{f}:@:", expect)  # @: the line, checked to be one
        rows.append(f"{name}\t{args}\t{code}\t{expect}")
    (HERE / "MANIFEST.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"{len(rows) - 1} cases written to {CASES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
