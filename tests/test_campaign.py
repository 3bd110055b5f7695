"""A small version of benchmarks/campaign.py in CI: random valid scenarios hold every
invariant on the design, and the checker catches known-wrong variants on some of them."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import campaign


def test_scenarios_are_valid_and_varied() -> None:
    from pmupart.scenario.loader import load_scenario_mapping

    specs = [load_scenario_mapping(campaign.scenario(random.Random(k)), "t") for k in range(40)]
    assert any(len(s.vms) == 2 for s in specs) and any(s.host_perf for s in specs)
    assert any(v.partition for s in specs for v in s.vms)
    assert any(not v.partition for s in specs for v in s.vms)
    assert any(v.program for s in specs for v in s.vms)
    assert len({s.machine.name + str(s.machine) for s in specs}) > 5


def test_a_small_campaign() -> None:
    out = io.StringIO()
    fig = campaign.campaign(25, seed=7, variants=True, out=out)
    assert fig["runs"] >= 20, out.getvalue()
    assert fig["violations"] == [], out.getvalue()
    assert fig["caught"]["HPMD left clear"] > 0, out.getvalue()
    assert "variant 'HPMD left clear': caught on" in out.getvalue()
