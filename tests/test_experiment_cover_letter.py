"""The cover-letter experiment, reduced: each effect goes the published way, the table is
well formed, the command works, and the run is deterministic."""

from __future__ import annotations

import math
import re

import pytest
from click.testing import CliRunner

from pmupart.check.cover_letter import BACKENDS, EXPERIMENTS, Measurement, cover_letter, scenario
from pmupart.cli import main
from pmupart.kvm.revision import REVISIONS
from pmupart.report.experiment import (
    PUBLISHED,
    ComparisonRow,
    format_comparison,
    percent_change,
)

SCALE = 0.1


@pytest.fixture(scope="module")
def result() -> tuple[list[ComparisonRow], dict[str, dict[str, Measurement]]]:
    return cover_letter(scale=SCALE)


def test_partitioned_is_cheaper_everywhere(
        result: tuple[list[ComparisonRow], dict[str, dict[str, Measurement]]]) -> None:
    _, runs = result
    g, s, st = runs["gzip"], runs["spec"], runs["stress"]
    for m in (g, s):
        assert m["emulated"].finished and m["partitioned"].finished
        assert m["partitioned"].real_ns < m["emulated"].real_ns
        assert m["partitioned"].sys_ns < m["emulated"].sys_ns
    assert st["partitioned"].host_kernel_share < st["emulated"].host_kernel_share
    assert st["partitioned"].guest_share > st["emulated"].guest_share
    # the mechanism: the emulated vPMU traps every PMU access and makes host perf events
    for key in EXPERIMENTS:
        e, p = runs[key]["emulated"], runs[key]["partitioned"]
        assert e.traps > p.traps
        assert e.perf_events_created > 0 and p.perf_events_created == 0


def test_same_work_same_samples(
        result: tuple[list[ComparisonRow], dict[str, dict[str, Measurement]]]) -> None:
    _, runs = result
    # fixed work: both backends retire the same workload; overheads only add time, and a
    # run that takes longer takes more guest ticks (the virtual timer keeps time), with the
    # guest kernel's tick work, task switches and period adaptations that come with them
    from pmupart.check.cover_letter import _FREQ_HZ

    mhz = _FREQ_HZ // 10**6

    def kernel_ns(m: Measurement) -> int:
        return sum(c for _, c in m.guest_work.values()) * 1000 // mhz

    for key in ("gzip", "spec"):
        e, p = runs[key]["emulated"], runs[key]["partitioned"]
        assert e.guest_ns - kernel_ns(e) == pytest.approx(p.guest_ns - kernel_ns(p), abs=3)
        assert e.guest_work["tick"][0] >= p.guest_work["tick"][0]
        assert e.real_ns - p.real_ns == pytest.approx(
            (e.el2_ns + e.guest_ns) - (p.el2_ns + p.guest_ns), rel=0.05)
    assert runs["spec"]["emulated"].samples == 0  # perf stat counts, never samples
    assert runs["gzip"]["emulated"].samples > 0
    for key in EXPERIMENTS:
        for m in runs[key].values():
            assert 0 < m.sys_tick_ns <= m.sys_ns


def test_rows_match_published_and_effects_have_the_sign(
        result: tuple[list[ComparisonRow], dict[str, dict[str, Measurement]]]) -> None:
    rows, _ = result
    assert [r.published for r in rows if not r.label] == list(PUBLISHED)
    assert [r.label for r in rows if r.label] == ["sys time, tick-accounted"] * 2
    for r in rows:
        p = r.published
        if p.kind == "change":
            assert math.copysign(1, percent_change(r.emulated, r.partitioned)) == \
                math.copysign(1, percent_change(p.emulated, p.partitioned))
        else:
            assert (r.partitioned > r.emulated) == (p.partitioned > p.emulated)


def test_published_figures() -> None:
    changes = {(p.experiment[0], p.metric): round(percent_change(p.emulated, p.partitioned), 2)
               for p in PUBLISHED if p.kind == "change"}
    assert changes[("1", "real time")] == -24.23
    assert changes[("1", "sys time")] == -30.82
    assert changes[("2", "sys time")] == -92.88
    assert changes[("2", "real time")] == -6.95


def test_table_format(
        result: tuple[list[ComparisonRow], dict[str, dict[str, Measurement]]]) -> None:
    rows, _ = result
    text = format_comparison(rows)
    lines = text.splitlines()
    assert lines[0].split() [:2] == ["experiment", "metric"]
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + len(rows) == 2 + len(PUBLISHED) + 2
    assert "-24.23%" in text and "-30.82%" in text and "-92.88%" in text
    assert "34.96% -> 0.97%" in text and "55.85% -> 91.06%" in text
    for r, line in zip(rows, lines[2:], strict=True):
        if r.published.kind == "change":
            assert re.search(r" [-+]\d+\.\d\d% +[-\d.]+ ms +[-\d.]+ ms +[-+]\d+\.\d\d% +"
                             r"\d+\.\d\d$", line), line
        else:
            assert re.search(r"\d+\.\d\d% -> \d+\.\d\d% +\d+\.\d\d / \d+\.\d\d$",
                             line), line
    md = format_comparison(rows, markdown=True).splitlines()
    assert md[0].startswith("| experiment | metric |") and md[1].startswith("|---|")
    assert all(x.count("|") == 10 for x in md)


def test_scenarios() -> None:
    for key in EXPERIMENTS:
        for b in BACKENDS:
            s = scenario(key, b, scale=0.5)
            assert s.vms[0].partition == (b == "partitioned")
            assert s.vms[0].affinity == (0,)
    assert scenario("gzip", "partitioned").machine_options == {
        "reserved_host_counters": 0, "kvm_options": REVISIONS["intent"]}
    assert len(scenario("spec", "emulated").vms[0].perf.events) == 16  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="backend"):
        scenario("gzip", "mediated")
    with pytest.raises(ValueError, match="experiment"):
        scenario("lbm", "emulated")
    with pytest.raises(ValueError, match="scale"):
        scenario("gzip", "emulated", scale=0)


def test_cli_deterministic() -> None:
    runner = CliRunner()
    args = ["experiment", "cover-letter", "--scale", "0.05", "--markdown"]
    a = runner.invoke(main, args)
    assert a.exit_code == 0, a.output
    assert "| 1 perf record -F 1000, 15 ev, gzip | real time |" in a.stdout
    assert "gzip/emulated" in a.stdout and "docs/costs.md" in a.stdout
    b = runner.invoke(main, args)
    assert a.stdout == b.stdout
