"""The cost table is pinned: every cost parameter's default, and docs/costs.md listing the
same value.  A change to a cost must change this file and the page (issue 13: costs come
from micro-level sources and are set before the cover-letter experiment, never fitted to
it)."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

from pmupart.check.cover_letter import GUEST_SWITCH_HZ
from pmupart.host.kernel import HostCosts
from pmupart.kvm.options import KvmCosts
from pmupart.sim.guest_perf import GuestKernelCosts

DOC = Path(__file__).resolve().parent.parent / "docs" / "costs.md"

PINNED = {
    "KvmCosts": {"exit_round_trip": 2000, "sysreg_handler": 250, "pmu_reprogram": 400,
                 "reg_swap": 20, "vgic_inject": 500, "load_put_base": 150},
    "HostCosts": {"perf_event_create": 9000, "perf_event_release": 6000,
                  "perf_sched_event": 200, "perf_read": 150, "pmu_irq": 1200,
                  "pmu_irq_per_event": 600, "perf_sample": 2500, "resched": 800,
                  "rotate": 1500},
    "GuestKernelCosts": {"irq_entry": 600, "sample": 3000, "tick": 3000,
                         "context_switch": 4000},
}


def test_defaults_are_pinned() -> None:
    assert asdict(KvmCosts()) == PINNED["KvmCosts"]
    assert asdict(HostCosts()) == PINNED["HostCosts"]
    assert asdict(GuestKernelCosts()) == PINNED["GuestKernelCosts"]
    assert GUEST_SWITCH_HZ == 100.0


def _doc_rows() -> dict[str, tuple[str, str]]:
    """``| `name` | value | ... | status ... |`` rows of docs/costs.md: name -> (value,
    the status cell)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `(\w+)` \| ([\d,.]+)(?: cycles| /s)? \|", line)
        if m:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[m.group(1)] = (m.group(2).replace(",", ""), cells[-1])
    return rows


def test_the_page_lists_every_parameter_with_its_value_and_status() -> None:
    rows = _doc_rows()
    for params in PINNED.values():
        for name, value in params.items():
            assert name in rows, f"docs/costs.md has no row for {name}"
            assert int(float(rows[name][0])) == value, (name, rows[name][0], value)
    assert float(rows["GUEST_SWITCH_HZ"][0]) == GUEST_SWITCH_HZ
    for name, (_, status) in rows.items():
        # every parameter says how much it rests on: a bracket from a source, or an
        # assumption said plainly
        assert "**bounded**" in status or "**assumption**" in status, (name, status)
        if "**bounded**" in status:
            assert re.search(r"\bS\d\b", status), f"{name}: bounded by which source?"
