"""Overhead tables: plain text (golden), aggregation, dict input, TTY/NO_COLOR behaviour."""

from __future__ import annotations

import io
import json
import re

import pytest
from conftest import check_golden as _check_golden

from pmupart.report.tables import (
    OverheadReport,
    PartyTime,
    PerfEventCount,
    SqueezedEvent,
    TrapRow,
    format_duration,
    format_overhead,
    format_overhead_rich,
    render_overhead,
)


def check_golden(name: str, text: str) -> None:
    _check_golden(f"report/{name}", text)


def sample() -> OverheadReport:
    return OverheadReport(
        duration_ns=2_000_000_000,
        traps=(
            TrapRow("vm0", "sysreg", 12_000, 9_600_000, "PMCR_EL0"),
            TrapRow("vm0", "sysreg", 30_000, 15_000_000, "PMEVTYPER3_EL0"),
            TrapRow("vm0", "irq", 2_000, 4_000_000),
            TrapRow("vm1", "sysreg", 40, 24_000, "PMSELR_EL0"),
            TrapRow("vm1", "wfx", 500, 250_000),
        ),
        times=(
            PartyTime("vm1", 1_990_000_000, 274_000, 9_726_000),
            PartyTime("vm0", 1_900_000_000, 28_600_000, 71_400_000),
        ),
        perf_events=(PerfEventCount("vm0", 42_000, 41_994), PerfEventCount("host", 4, 0)),
        squeezed=(
            SqueezedEvent("cycles", "armv8_cortex_a76", 2_000_000_000, 2_000_000_000),
            SqueezedEvent("instructions", "armv8_cortex_a76", 2_000_000_000, 1_500_000_000),
        ),
        title="Overhead (partitioned vPMU)",
    )


def test_golden_plain() -> None:
    check_golden("overhead.txt", format_overhead(sample()))


def test_by_reason_sums_registers_and_totals() -> None:
    text = format_overhead(sample())
    (line,) = [ln for ln in text.splitlines() if re.match(r"\s+vm0\s+sysreg", ln)]
    assert "42,000" in line and "24.600 ms" in line and "585.714 ns" not in line
    assert re.search(r"total\s+44,540\s+28\.874 ms", text)


def test_by_register_ordered_by_count() -> None:
    text = format_overhead(sample())
    sect = text.split("Traps by register")[1].split("\n\n")[0]
    regs = [ln.split()[1] for ln in sect.splitlines()[3:]]
    assert regs == ["PMEVTYPER3_EL0", "PMCR_EL0", "PMSELR_EL0"]


def test_shares_and_squeezed() -> None:
    text = format_overhead(sample())
    assert re.search(r"vm0\s+2\.000 s\s+1\.900 s\s+95\.00%\s+28\.600 ms\s+1\.43%", text)
    sq = text.split("Host events squeezed out")[1]
    assert sq.index("instructions") < sq.index("cycles")
    assert "25.00%" in sq and "0.00%" in sq


def test_empty_sections_say_so() -> None:
    text = format_overhead(OverheadReport(duration_ns=5))
    assert "Host events squeezed out\n  (none: every host event kept its counter)\n" in text
    assert "Perf events\n  (none)\n" in text
    assert text.startswith("Overhead over 5 ns of simulated time\n")


def test_no_trailing_whitespace() -> None:
    for line in format_overhead(sample()).splitlines():
        assert line == line.rstrip()


def test_format_duration() -> None:
    assert format_duration(0) == "0 ns"
    assert format_duration(999) == "999 ns"
    assert format_duration(1_500) == "1.500 us"
    assert format_duration(2_000_000) == "2.000 ms"
    assert format_duration(3_210_000_000) == "3.210 s"


def test_from_dict_matches_dataclasses() -> None:
    d = {
        "duration_ns": 2_000_000_000,
        "title": "Overhead (partitioned vPMU)",
        "traps": [
            {"party": "vm0", "reason": "sysreg", "count": 12_000, "el2_ns": 9_600_000,
             "register": "PMCR_EL0"},
            {"party": "vm0", "reason": "sysreg", "count": 30_000, "el2_ns": 15_000_000,
             "register": "PMEVTYPER3_EL0"},
            {"party": "vm0", "reason": "irq", "count": 2_000, "el2_ns": 4_000_000},
            {"party": "vm1", "reason": "sysreg", "count": 40, "el2_ns": 24_000,
             "register": "PMSELR_EL0"},
            {"party": "vm1", "reason": "wfx", "count": 500, "el2_ns": 250_000},
        ],
        "times": [
            {"party": "vm1", "guest_ns": 1_990_000_000, "el2_ns": 274_000,
             "host_kernel_ns": 9_726_000},
            {"party": "vm0", "guest_ns": 1_900_000_000, "el2_ns": 28_600_000,
             "host_kernel_ns": 71_400_000},
        ],
        "perf_events": [{"party": "vm0", "created": 42_000, "released": 41_994},
                        {"party": "host", "created": 4, "released": 0}],
        "squeezed": [
            {"event": "cycles", "where": "armv8_cortex_a76", "time_enabled": 2_000_000_000,
             "time_running": 2_000_000_000},
            {"event": "instructions", "where": "armv8_cortex_a76",
             "time_enabled": 2_000_000_000, "time_running": 1_500_000_000},
        ],
    }
    assert OverheadReport.from_dict(d) == sample()


@pytest.mark.parametrize(
    "data,match",
    [
        ({}, "must have a 'duration_ns'"),
        ({"duration_ns": 1, "trap": []}, r"keys must be among .* not \['trap'\]"),
        ({"duration_ns": -1}, "OverheadReport.duration_ns must be an int >= 0"),
        ({"duration_ns": 1, "traps": [{"party": "vm0", "reason": "x", "count": -2,
                                       "el2_ns": 0}]},
         r"traps\[0\]: TrapRow.count of vm0/x must be an int >= 0, not -2"),
        ({"duration_ns": 1, "traps": [{"party": "vm0"}]}, r"traps\[0\]: .*missing"),
        ({"duration_ns": 1, "times": [{"party": "vm0", "cpu": 1}]},
         r"times\[0\] keys must be among .* not \['cpu'\]"),
        ({"duration_ns": 1, "perf_events": [{"party": "h", "created": 1, "released": 2}]},
         "released of h must be <= created"),
        ({"duration_ns": 1, "squeezed": [{"event": "c", "where": "", "time_enabled": 1,
                                          "time_running": 2}]},
         "time_running of c must be <= time_enabled"),
    ],
)
def test_from_dict_rejects(data: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OverheadReport.from_dict(data)


def test_wrong_row_type_rejected() -> None:
    with pytest.raises(ValueError, match=r"OverheadReport.traps\[0\] must be a TrapRow"):
        OverheadReport(1, traps=(PartyTime("x", 1, 1, 1),))  # type: ignore[arg-type]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_plain_when_not_a_tty() -> None:
    buf = io.StringIO()
    render_overhead(sample(), buf)
    assert buf.getvalue() == format_overhead(sample())


def test_render_rich_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    buf = _Tty()
    render_overhead(sample(), buf)
    out = buf.getvalue()
    assert out != format_overhead(sample())
    assert "\x1b[" in out and "PMEVTYPER3_EL0" in out


def test_render_respects_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    buf = _Tty()
    render_overhead(sample(), buf)
    out = buf.getvalue()
    assert not re.search(r"\x1b\[[0-9;]*m", out)
    assert "Traps by register" in out


def test_render_dumb_terminal_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    buf = _Tty()
    render_overhead(sample(), buf)
    assert buf.getvalue() == format_overhead(sample())


def test_rich_text_deterministic() -> None:
    assert format_overhead_rich(sample(), color=False) == format_overhead_rich(sample(),
                                                                               color=False)


def test_register_rows_do_not_count_again_under_their_reason() -> None:
    """A run's report has a reason row per exit kind and register rows that break the sysreg
    one down: the by-reason table counts each exit once (kernel-code-deltas §5.10)."""
    rep = OverheadReport(duration_ns=1_000_000, traps=(
        TrapRow("vm0", "sysreg", 3, 3_000),
        TrapRow("vm0", "sysreg", 2, 2_000, "PMCR_EL0"),
        TrapRow("vm0", "sysreg", 1, 1_000, "PMSELR_EL0"),
        TrapRow("vm0", "pmu_irq", 4, 400),
    ))
    text = format_overhead(rep)
    (line,) = [ln for ln in text.splitlines() if re.match(r"\s+vm0\s+sysreg", ln)]
    assert re.search(r"sysreg\s+3\s+3\.000 us", line), line
    assert re.search(r"total\s+7\s+3\.400 us", text), text


def test_run_report_text_and_json_count_exits_alike() -> None:
    """The same run's text table and JSON report give one exit count."""
    from pathlib import Path

    from pmupart.scenario import load_scenario
    from pmupart.sim import run_scenario
    from pmupart.sim.summary import overhead, render

    ex = Path(__file__).resolve().parent.parent / "examples" / "shared-6-counters.toml"
    r = run_scenario(load_scenario(ex, overrides=['scenario.duration="10ms"']))
    rep = overhead(r)
    want = sum(t.count for t in rep.traps if not t.register)
    assert want > 0
    text = format_overhead(rep)
    assert re.search(rf"total\s+{want:,}\s", text), text
    doc = json.loads(render(r, "json"))
    rows = doc["overhead"]["traps"]
    assert sum(t["count"] for t in rows if not t["register"]) == want
