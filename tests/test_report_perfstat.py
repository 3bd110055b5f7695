"""perf stat printers: golden files for std/CSV/JSON, and the scaling/percentage/naming rules.

Regenerate the golden files with
``PMUPART_UPDATE_GOLDEN=1 python -m pytest tests/test_report_perfstat.py`` and review the
diff: each file must still read like real ``perf stat`` output.
"""

from __future__ import annotations

import json

import pytest
from conftest import check_golden as _check_golden

from pmupart.report.perfstat import (
    NOT_COUNTED,
    NOT_SUPPORTED,
    CounterResult,
    Metric,
    Reading,
    StatReport,
    Target,
    aggregate,
    csv_running_pct,
    format_csv,
    format_interval,
    format_json,
    format_report,
    format_std,
    scale_count,
)


def check_golden(name: str, text: str) -> None:
    _check_golden(f"report/{name}", text)


def guest_report() -> StatReport:
    """A guest's ``perf stat -a`` with multiplexing, a never-run and an unsupported event."""
    return StatReport(
        Target.cpus("0-3"),
        [
            CounterResult("task-clock", None, 4_003_117_245, 4_003_117_245, 4_003_117_245,
                          unit="msec", scale=1e-6),
            CounterResult("cycles", None, 7_412_903_311, 4_003_117_245, 4_003_117_245),
            CounterResult("instructions", None, 5_120_448_002, 4_003_117_245, 3_002_337_934),
            CounterResult("branch-misses", None, 0, 4_003_117_245, 0),
            CounterResult("l1d_cache_refill", None, 61_230_114, 4_003_117_245, 2_001_558_622),
            CounterResult("stall_backend_mem", None, 0, 0, 0, supported=False),
        ],
        elapsed_ns=1_000_779_311,
    )


def hybrid_report() -> StatReport:
    """A process that ran on both clusters of a big.LITTLE host: one row per core PMU."""
    return StatReport(
        Target.pid(4242),
        [
            CounterResult("cycles", "armv8_cortex_a55", 301_449_120, 2_000_000_000, 702_113_480),
            CounterResult("cycles", "armv8_cortex_a76", 2_604_911_733, 2_000_000_000,
                          1_297_886_520),
            CounterResult("instructions", "armv8_cortex_a55", 240_113_902, 2_000_000_000,
                          702_113_480),
            CounterResult("instructions", "armv8_cortex_a76", 6_114_020_431, 2_000_000_000,
                          1_297_886_520),
            CounterResult("cpu_cycles", "armv8_cortex_a55", 0, 2_000_000_000, 0),
            CounterResult("cpu_cycles", "armv8_cortex_a76", 2_604_911_733, 2_000_000_000,
                          1_297_886_520),
        ],
        elapsed_ns=2_000_105_992,
        user_ns=1_998_000_000,
        sys_ns=1_204_000,
    )


@pytest.mark.parametrize("name,make", [("guest", guest_report), ("hybrid", hybrid_report)])
def test_golden_std(name: str, make: object) -> None:
    assert callable(make)
    check_golden(f"perfstat_{name}.txt", format_std(make()))


@pytest.mark.parametrize("name,make", [("guest", guest_report), ("hybrid", hybrid_report)])
def test_golden_csv(name: str, make: object) -> None:
    assert callable(make)
    check_golden(f"perfstat_{name}.csv", format_csv(make()))


@pytest.mark.parametrize("name,make", [("guest", guest_report), ("hybrid", hybrid_report)])
def test_golden_json(name: str, make: object) -> None:
    assert callable(make)
    check_golden(f"perfstat_{name}.json", format_json(make()))


# --- the std row layout ----------------------------------------------------------------------


def _row(text: str, event: str) -> str:
    (line,) = [ln for ln in text.splitlines() if f" {event} " in ln + " "]
    return line


def test_std_columns() -> None:
    r = StatReport("true", [CounterResult("cycles", None, 1234567, 10, 10)], 5)
    line = _row(format_std(r), "cycles")
    assert line[:18] == "         1,234,567"           # %'18.0f
    assert line[18:24] == " " + " " * 4 + " "            # space, unit_width 4, space
    assert line[24:56] == "cycles".ljust(32)             # EVNAME_LEN
    assert line[56:] == " " * 38                         # empty METRIC_LEN slot
    assert "(" not in line                               # run == ena: no percentage


def test_std_header_and_footer() -> None:
    r = StatReport(Target.system_wide(), [CounterResult("cycles", None, 1, 1, 1)], 1_500_000_000)
    text = format_std(r)
    assert text.startswith("\n Performance counter stats for 'system wide':\n\n")
    assert text.endswith("\n\n" + " " + "1.500000000".rjust(17) + " seconds time elapsed\n\n")
    assert "seconds user" not in text


@pytest.mark.parametrize(
    "target,words",
    [
        (Target.system_wide(), "'system wide'"),
        (Target.cpus("0-7"), "'CPU(s) 0-7'"),
        (Target.pid(1234), "process id '1234'"),
        (Target.tid(77), "thread id '77'"),
        (Target.command(["sleep", "1"]), "'sleep 1'"),
    ],
)
def test_header_targets(target: Target, words: str) -> None:
    r = StatReport(target, [], 0)
    assert format_std(r).splitlines()[1] == f" Performance counter stats for {words}:"


def test_running_percentage_only_when_multiplexed() -> None:
    r = StatReport("x", [CounterResult("cycles", None, 100, 3, 2)], 1)
    line = _row(format_std(r), "cycles")
    assert line.endswith(" " * 38 + "  (66.67%)")   # float in std
    assert format_csv(r).strip().split(",")[4] == "66.00"   # integer in CSV
    assert json.loads(format_json(r))["pcnt-running"] == 66.0


def test_no_big_num_and_unit_width() -> None:
    r = StatReport(
        "x",
        [
            CounterResult("cycles", None, 1234567, 1, 1),
            CounterResult("energy", None, 5, 1, 1, unit="Joules"),
            CounterResult("bogus", None, 0, 0, 0, supported=False, unit="longerunit"),
        ],
        1,
        big_num=False,
    )
    text = format_std(r)
    assert _row(text, "cycles").startswith("           1234567 " + " " * 6 + " cycles")
    assert _row(text, "energy").startswith(" " * 17 + "5 Joules energy")


# --- scaling and the two markers ----------------------------------------------------------


def test_scale_rule() -> None:
    assert scale_count(100, 10, 10) == 100
    assert scale_count(100, 10, 0) is None
    assert scale_count(100, 0, 0) is None
    assert scale_count(100, 3, 2) == 150
    assert scale_count(10, 3, 7) == 10          # run > ena never scales (cannot happen)
    # (u64)((double)val * ena / run): truncation, not rounding
    assert scale_count(2, 3, 7 * 2) is not None
    assert scale_count(7, 10, 3) == 23          # 23.33 -> 23
    assert scale_count(5, 10, 6) == 8           # 8.33 -> 8
    # double precision, as perf: a value above 2**53 loses its low bits
    assert scale_count(2**60 + 1, 2, 1) == 2**61


def test_scaled_value_printed() -> None:
    r = CounterResult("cycles", None, 1000, 3, 1)
    rep = StatReport("x", [r], 1)
    assert _row(format_std(rep), "cycles").startswith("             3,000 ")
    assert format_csv(rep).startswith("3000,,cycles,1,33.00,,")


def test_not_counted_and_not_supported() -> None:
    rep = StatReport(
        "x",
        [
            CounterResult("cycles", None, 999, 50, 0),
            CounterResult("inst_spec", None, 0, 0, 0, supported=False),
        ],
        1,
    )
    std = format_std(rep)
    nc = _row(std, "cycles")
    assert nc.startswith(NOT_COUNTED.rjust(18) + " ")
    assert nc.endswith("  (0.00%)")
    ns = _row(std, "inst_spec")
    assert ns.startswith(NOT_SUPPORTED.rjust(18) + " ")
    assert "%" not in ns
    csv = format_csv(rep).splitlines()
    assert csv == ["<not counted>,,cycles,0,0.00,,", "<not supported>,,inst_spec,0,100.00,,"]
    js = [json.loads(line) for line in format_json(rep).splitlines()]
    assert js[0]["counter-value"] == "<not counted>"
    assert js[1]["counter-value"] == "<not supported>"
    assert "metric-value" not in js[0]


def test_nmi_watchdog_hint() -> None:
    rs = [CounterResult("cycles", None, 0, 5, 0)]
    assert "NMI watchdog" not in format_std(StatReport("x", rs, 1))
    assert "Some events weren't counted" in format_std(StatReport("x", rs, 1, nmi_watchdog=True))


def test_csv_percentage_is_integer_division() -> None:
    assert csv_running_pct(3, 2) == 66.0
    assert csv_running_pct(1000, 999) == 99.0
    assert csv_running_pct(5, 5) == 100.0
    assert csv_running_pct(0, 0) == 100.0


def test_rounding_of_std_percentage() -> None:
    r = CounterResult("cycles", None, 1, 3, 1)
    assert _row(format_std(StatReport("x", [r], 1)), "cycles").endswith("(33.33%)")
    r = CounterResult("cycles", None, 1, 200000, 199999)
    assert _row(format_std(StatReport("x", [r], 1)), "cycles").endswith("(100.00%)")


# --- metrics ---------------------------------------------------------------------------------


def test_ipc_next_to_instructions() -> None:
    rep = StatReport(
        "x",
        [CounterResult("cycles", None, 400, 1, 1), CounterResult("instructions", None, 500, 1, 1)],
        1,
    )
    line = _row(format_std(rep), "instructions")
    assert line[56:] == " #    1.25  " + "insn per cycle".ljust(26)
    assert len(line[56:]) == 38
    assert format_csv(rep).splitlines()[1] == "500,,instructions,1,100.00,1.25,insn per cycle"
    js = json.loads(format_json(rep).splitlines()[1])
    assert (js["metric-value"], js["metric-unit"]) == ("1.250000", "insn per cycle")


def test_instructions_without_cycles_like_perf() -> None:
    rep = StatReport("x", [CounterResult("instructions", None, 500, 1, 1)], 1)
    assert _row(format_std(rep), "instructions")[56:] == " " * 38
    assert format_csv(rep).strip().endswith(",,")
    js = json.loads(format_json(rep))
    assert (js["metric-value"], js["metric-unit"]) == ("0.000000", "insn per cycle")


def test_ipc_pairs_rows_of_the_same_pmu() -> None:
    rep = hybrid_report()
    std = format_std(rep)
    a55 = _row(std, "armv8_cortex_a55/instructions/")
    a76 = _row(std, "armv8_cortex_a76/instructions/")
    assert "0.80  insn per cycle" in a55    # 240113902*ena/run / (301449120*ena/run)
    assert "2.35  insn per cycle" in a76


def test_explicit_metric_and_rate_metric() -> None:
    rep = StatReport(
        "x",
        [
            CounterResult("task-clock", None, 2_000_000, 2_000_000, 2_000_000, unit="msec",
                          scale=1e-6),
            CounterResult("inst_retired", None, 3_000_000, 1, 1),
            CounterResult("mem_access", None, 7, 1, 1,
                          metric=Metric("of nothing", 42.5, "%7.2f%%")),
        ],
        4_000_000,
    )
    std = format_std(rep)
    assert "#    1.500 G/sec" in _row(std, "inst_retired")
    assert "#   42.50% of nothing" in _row(std, "mem_access")
    assert "#    0.500 CPUs utilized" in _row(std, "task-clock")
    assert _row(std, "task-clock").startswith("              2.00 msec task-clock")
    rep2 = StatReport("x", rep.results, 4_000_000, derive_metrics=False)
    assert "#" not in _row(format_std(rep2), "inst_retired")


# --- heterogeneous hosts -----------------------------------------------------------------


def test_hybrid_rows_named_per_pmu() -> None:
    rep = hybrid_report()
    assert rep.hybrid and rep.uniquified
    names = [json.loads(line)["event"] for line in format_json(rep).splitlines()]
    assert names == [
        "armv8_cortex_a55/cycles/",
        "armv8_cortex_a76/cycles/",
        "armv8_cortex_a55/instructions/",
        "armv8_cortex_a76/instructions/",
        "armv8_cortex_a55/cpu_cycles/",
        "armv8_cortex_a76/cpu_cycles/",
    ]
    # the percentage is the share of time the task spent on that PMU's CPUs
    assert _row(format_std(rep), "armv8_cortex_a55/cycles/").endswith("(35.11%)")


def test_single_pmu_keeps_plain_names() -> None:
    rep = StatReport("x", [CounterResult("cycles", "armv8_cortex_a76", 1, 1, 1)], 1)
    assert not rep.uniquified
    assert format_csv(rep).split(",")[2] == "cycles"
    forced = StatReport("x", rep.results, 1, uniquify=True)
    assert format_csv(forced).split(",")[2] == "armv8_cortex_a76/cycles/"


def test_display_name_variants() -> None:
    assert CounterResult("cycles:u", "armv8_pmuv3_0", 1, 1, 1).display_name(True) == (
        "armv8_pmuv3_0/cycles/u"
    )
    assert CounterResult("cycles//u", "armv8_pmuv3_0", 1, 1, 1).display_name(True) == (
        "armv8_pmuv3_0/cycles/u"
    )
    assert CounterResult("cycles/period=7/", "armv8_cortex_a55", 1, 1, 1).display_name(
        True
    ) == "armv8_cortex_a55/cycles,period=7/"
    assert CounterResult("cycles", "armv8_cortex_a55", 1, 1, 1).display_name(False) == "cycles"
    assert CounterResult("armv8_cortex_a55/cycles/", "armv8_cortex_a55", 1, 1, 1).display_name(
        True
    ) == "armv8_cortex_a55/cycles/"


def test_csv_separator_and_json_validity() -> None:
    rep = guest_report()
    for line in format_csv(rep, sep=";").splitlines():
        assert len(line.split(";")) == 7
    for line in format_json(rep).splitlines():
        obj = json.loads(line)
        assert list(obj)[:5] == ["counter-value", "unit", "event", "event-runtime",
                                 "pcnt-running"]


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"event": ""}, "event must be a non-empty"),
        ({"value": -1}, r"value of 'cycles' must be an int in \[0, 2\*\*64\)"),
        ({"time_running": 11}, "time_running of 'cycles' must be <= time_enabled"),
        ({"scale": 0.0}, "scale of 'cycles' must be a positive finite"),
        ({"pmu": ""}, "pmu of 'cycles' must be None or a name"),
    ],
)
def test_counter_result_rejects(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"event": "cycles", "pmu": None, "value": 1,
                               "time_enabled": 10, "time_running": 10}
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        CounterResult(**base)  # type: ignore[arg-type]


def test_report_and_target_reject() -> None:
    with pytest.raises(ValueError, match="elapsed_ns must be an int >= 0"):
        StatReport("x", [], -1)
    with pytest.raises(ValueError, match="user_ns and sys_ns must be given together"):
        StatReport("x", [], 1, user_ns=1)
    with pytest.raises(ValueError, match="Target of kind 'pid' needs a non-empty value"):
        Target("pid")
    with pytest.raises(ValueError, match=r"Metric\.fmt must be a printf format"):
        Metric("x", 1.0, "%d %d")
    with pytest.raises(ValueError, match="CSV sep must be a non-empty string"):
        format_csv(StatReport("x", [], 1), sep="")


# --- per-CPU rows (perf stat -A) and the dispatcher ---------------------------------------


def per_cpu_report() -> StatReport:
    return StatReport(
        Target.system_wide(),
        [
            CounterResult("cycles", None, 1_000_000, 10, 10, cpu=0),
            CounterResult("cycles", None, 3_000_000, 10, 5, cpu=12),
            CounterResult("instructions", None, 2_000_000, 10, 10, cpu=0),
            CounterResult("instructions", None, 1_000_000, 10, 5, cpu=12),
        ],
        1_000_000_000,
    )


def test_per_cpu_rows() -> None:
    rep = per_cpu_report()
    lines = [ln for ln in format_std(rep).splitlines() if ln.startswith("CPU")]
    assert lines[0].startswith("CPU0   " + "1,000,000".rjust(18) + " ")
    assert lines[1].startswith("CPU12  " + "6,000,000".rjust(18) + " ")
    # IPC pairs rows of the same CPU: 2e6/1e6 on CPU0, 2e6/6e6 on CPU12
    assert "2.00  insn per cycle" in lines[2] and "0.33  insn per cycle" in lines[3]
    assert format_csv(rep).splitlines()[1] == "CPU12,6000000,,cycles,5,50.00,,"
    first = json.loads(format_json(rep).splitlines()[0])
    assert list(first)[:2] == ["cpu", "counter-value"] and first["cpu"] == "0"


def test_per_cpu_all_or_none() -> None:
    with pytest.raises(ValueError, match="must all have a cpu"):
        StatReport("x", [CounterResult("cycles", None, 1, 1, 1, cpu=0),
                         CounterResult("cycles", None, 1, 1, 1)], 1)
    with pytest.raises(ValueError, match="cpu of 'cycles' must be None or an int >= 0"):
        CounterResult("cycles", None, 1, 1, 1, cpu=-1)


def test_format_report_dispatch() -> None:
    rep = guest_report()
    assert format_report(rep) == format_std(rep)
    assert format_report(rep, "csv", ";") == format_csv(rep, ";")
    assert format_report(rep, "json") == format_json(rep)
    with pytest.raises(ValueError, match="output must be 'std', 'csv' or 'json'"):
        format_report(rep, "xml")  # type: ignore[arg-type]


# --- interval mode (perf stat -I) -----------------------------------------------------------


def interval_samples() -> list[tuple[int, StatReport]]:
    out = []
    for k in range(1, 4):
        out.append((
            k * 1_000_000_000 + 1_234_567,
            StatReport(
                Target.system_wide(),
                [
                    CounterResult("cycles", None, 1_800_000_000 * k, 1_000_000_000,
                                  1_000_000_000),
                    CounterResult("instructions", None, 2_000_000_000, 1_000_000_000,
                                  500_000_000 if k == 2 else 1_000_000_000),
                ],
                1_000_000_000,
            ),
        ))
    return out


def test_golden_interval_std() -> None:
    check_golden("perfstat_interval.txt", format_interval(interval_samples()))


def test_interval_layout() -> None:
    text = format_interval(interval_samples())
    lines = text.splitlines()
    assert lines[0] == "#           time             counts unit events"
    assert lines[1].startswith("     1.001234567 " + "1,800,000,000".rjust(18) + " ")
    assert "Performance counter stats" not in text and "seconds time elapsed" not in text
    csv = format_interval(interval_samples(), "csv").splitlines()
    assert csv[0] == "1.001234567,1800000000,,cycles,1000000000,100.00,,"
    js = json.loads(format_interval(interval_samples(), "json").splitlines()[3])
    assert next(iter(js)) == "interval" and js["interval"] == 2.001234567
    assert js["pcnt-running"] == 50.0


def test_interval_header_repeats_every_26() -> None:
    one = interval_samples()[0]
    text = format_interval([one] * 27)
    assert text.count("#           time") == 2
    per_cpu = StatReport("x", [CounterResult("cycles", None, 1, 1, 1, cpu=3)], 1)
    assert format_interval([(0, per_cpu)]).splitlines()[0] == (
        "#" + "time".rjust(15) + " " + "cpu".ljust(6) + " " + "counts".rjust(18) + " unit events"
    )


def test_interval_rejects() -> None:
    one = interval_samples()[0][1]
    with pytest.raises(ValueError, match="must not go backwards"):
        format_interval([(5, one), (4, one)])
    with pytest.raises(ValueError, match="time must be an int >= 0 ns"):
        format_interval([(-1, one)])
    with pytest.raises(ValueError, match="output must be 'std', 'csv' or 'json'"):
        format_interval([(1, one)], "yaml")  # type: ignore[arg-type]


# --- aggregation of per-CPU readings (stat.c: process_counter_values) ------------------------


def test_aggregate_scales_each_reading_then_sums() -> None:
    row = aggregate("cycles", None, [Reading(100, 10, 5, cpu=0), Reading(300, 10, 10, cpu=1)])
    assert (row.value, row.time_enabled, row.time_running) == (500, 20, 15)
    rep = StatReport(Target.system_wide(), [row], 1)
    line = _row(format_std(rep), "cycles")
    assert line.startswith("500".rjust(18) + " ")          # not scaled a second time
    assert line.endswith("(75.00%)")
    assert format_csv(rep).startswith("500,,cycles,15,75.00,,")


def test_aggregate_one_cpu_never_ran_means_not_counted() -> None:
    row = aggregate("cycles", None, [Reading(100, 10, 10, cpu=0), Reading(0, 10, 0, cpu=1)])
    assert not row.counted and (row.time_enabled, row.time_running) == (0, 0)
    line = _row(format_std(StatReport("x", [row], 1)), "cycles")
    assert line.startswith(NOT_COUNTED.rjust(18)) and "%" not in line


def test_aggregate_per_task_tolerates_idle_threads() -> None:
    row = aggregate("cycles", None, [Reading(100, 10, 10), Reading(0, 0, 0)])
    assert row.counted and row.value == 100
    assert not aggregate("cycles", None, []).counted
    with pytest.raises(ValueError, match="time_running must be <= time_enabled"):
        Reading(1, 1, 2)
