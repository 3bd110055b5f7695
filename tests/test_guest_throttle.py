"""The guest perf driver throttles a sampling event that overflows too often, as perf does
(kernel/events/core.c ``__perf_event_account_interrupt``: more than ``max_samples_per_tick``
= DIV_ROUND_UP(perf_event_max_sample_rate, HZ) overflows in a tick stop the event until the
next tick); without it the campaign's seed 14009634 never finished (an overflow-interrupt
storm on a period adapted down to 1)."""

from __future__ import annotations

import random
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pmupart.arch.pe import Access, Outcome
from pmupart.check import Checker
from pmupart.scenario.dump import dump_scenario
from pmupart.scenario.loader import load_scenario_mapping, load_scenario_text
from pmupart.sim.guest_perf import GuestPmuDriver
from pmupart.sim.session import RunResult, run_scenario
from pmupart.sim.spec import PerfMode, PerfSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import campaign


@pytest.fixture
def time_limit() -> Iterator[None]:
    """Fail (instead of hanging) a run past 20 s of wall time."""
    def alarm(_sig: int, _frm: Any) -> None:
        raise TimeoutError("the run did not finish within 20 s (an interrupt storm?)")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _run(data: dict[str, Any]) -> tuple[RunResult, Checker]:
    ck = Checker()
    r = run_scenario(load_scenario_mapping(data, "t"), listeners=[ck.listener])
    ck.finish(r)
    return r, ck


def _drivers(r: RunResult) -> dict[str, GuestPmuDriver]:
    return {c.name: c.driver for c in r.contexts if c.driver is not None}


def test_campaign_storm_finishes_throttled(time_limit: None) -> None:
    data = campaign.scenario(random.Random(14009634))
    data["kvm"] = {**data["kvm"], "revision": "intent"}
    r, ck = _run(data)
    assert ck.ok, [v.details() for v in ck.violations]
    d = _drivers(r)["vm0:vcpu0"]  # perf record -F 500 -e BR_RETIRED, emulated vPMU
    # An interrupt costs ~13 us of traps here, so a 4 ms tick (which comes at its time,
    # whatever work is left) holds fewer than max_samples_per_tick: the storm is bounded by
    # the tick and the handler's cost; throttling caps it wherever the handler is cheaper.
    assert d.samples[0] <= (d.ticks + 1) * (d.max_samples_per_tick + 1)
    # the report's guest work table counts it (vcpu stats -> GuestWorkRow)
    vm0 = r.machine.kvm.vms[0]
    assert sum(v.stats.guest_work["throttle"] for v in vm0.vcpus) == d.throttles


def _period_scenario(part: bool, rate: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "scenario": {"name": "storm", "duration": "12ms", "seed": 1},
        "machine": {"name": "m", "reserved_host_counters": 2,
                    "cluster": [{"name": "c0", "core": "cortex-a720", "count": 1}]},
        "kvm": {"revision": "intent"},
        "workload": {"w": {"kernel_fraction": 0.1}},
        "vm": [{"name": "vm0", "partition": part, "workload": "w",
                "perf": {"events": ["CPU_CYCLES"], "mode": "record", "period": 1000}}]}
    if rate is not None:
        d["host"] = {"perf_event_max_sample_rate": rate}
    return d


def test_period_1000_is_throttled_each_tick(time_limit: None) -> None:
    # 1000 cycles at 2+ GHz: far more than 400 overflows a tick on the partitioned vPMU
    # (a cheap handler); each tick interval takes 401 samples (the 401st throttles, and is
    # still a sample), then the event is stopped until the next tick
    r, ck = _run(_period_scenario(True))
    assert ck.ok, [v.details() for v in ck.violations]
    d = _drivers(r)["vm0:vcpu0"]
    assert d.max_samples_per_tick == 400  # DIV_ROUND_UP(100000, 250)
    assert d.throttles >= 2
    assert d.samples[0] == 401 * d.throttles
    assert r.vms[0].events[0].count == pytest.approx(1000 * d.samples[0], rel=0.01)


def test_an_expensive_handler_is_bounded_by_the_tick(time_limit: None) -> None:
    # The same on the emulated vPMU: every interrupt traps its way through ~13 us of KVM
    # and host perf work, so a 4 ms tick holds fewer than 400 of them and the event is never
    # throttled; the tick still comes every 4 ms of the guest's time (the virtual timer),
    # not after the work its block was given
    r, ck = _run(_period_scenario(False))
    assert ck.ok, [v.details() for v in ck.violations]
    d = _drivers(r)["vm0:vcpu0"]
    assert d.throttles == 0
    assert d.ticks == 3  # at 4, 8 and 12 ms of a 12 ms run
    assert 100 * d.ticks < d.samples[0] <= 400 * d.ticks


def test_the_limit_follows_perf_event_max_sample_rate(time_limit: None) -> None:
    r, ck = _run(_period_scenario(True, rate=1000))
    assert ck.ok
    d = _drivers(r)["vm0:vcpu0"]
    assert d.max_samples_per_tick == 4  # DIV_ROUND_UP(1000, 250)
    assert d.throttles == 3  # the ticks at 0, 4 and 8 ms each start a new interval
    assert d.samples[0] == 5 * 3
    spec = load_scenario_mapping(_period_scenario(True, rate=1000), "t")
    assert spec.perf_event_max_sample_rate == 1000
    again = load_scenario_text(dump_scenario(spec), "dump")
    assert again.perf_event_max_sample_rate == 1000


class _Regs:
    """A CPU surface for the driver alone: counters that count what :meth:`run` adds."""

    el = 1

    def __init__(self) -> None:
        self.r: dict[str, int] = {"PMCR_EL0": 6 << 11, "ID_AA64DFR0_EL1": 1 << 8,
                                  "PMCEID0_EL0": 0xFFFFFFFF, "PMCEID1_EL0": 0xFFFFFFFF}
        self.ovs = 0

    def read(self, name: str) -> Access:
        if name == "PMOVSCLR_EL0":
            return Access(Outcome.OK, self.ovs)
        return Access(Outcome.OK, self.r.get(name, 0))

    def write(self, name: str, value: int) -> Access:
        if name == "PMOVSCLR_EL0":
            self.ovs &= ~value
        self.r[name] = value
        return Access(Outcome.OK)

    def run(self, n: int) -> None:
        """Counter 0 counts ``n`` events (32 bits), setting its overflow flag on a wrap."""
        v = self.r.get("PMEVCNTR0_EL0", 0) + n
        if v >> 32:
            self.ovs |= 1
        self.r["PMEVCNTR0_EL0"] = v & 0xFFFFFFFF


def test_a_tick_goes_on_from_period_left() -> None:
    # -F 100 at HZ=250: the period is longer than a tick, so the tick must not restart it
    # (armpmu_start -> armpmu_event_set_period goes on from period_left); restarting it at
    # every tick took no sample at all
    cpu = _Regs()
    d = GuestPmuDriver(PerfSession((0x08,), mode=PerfMode.RECORD, freq=100))  # INST_RETIRED
    d.start(cpu)
    assert d.period[0] == 1  # perf_event_alloc: a frequency-mode event starts at 1
    tick = 4_000_000

    def run(ticks: int) -> None:  # 2.5e9 events a second: 1e7 a tick
        for _ in range(ticks):
            for _ in range(10):
                cpu.run(1_000_000)
                if cpu.ovs:
                    d.irq(cpu)
            d.tick(cpu, tick)

    run(50)  # the period approaches 2.5e9 / 100 an eighth of the way a tick (low-pass)
    assert abs(d.period[0] - 25_000_000) <= 25_000_000 * (7 / 8) ** 50 + 8
    s0 = d.samples[0]
    run(50)  # 200 ms at 100 samples a second
    assert 18 <= d.samples[0] - s0 <= 21
    assert d.throttles == 0
