"""Issue 13's mechanisms of sampling cost: each one happens, costs what docs/costs.md says,
and shows in the overhead tables and the Perfetto trace; --full and --jobs are wired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pmupart.check.cover_letter import (
    FULL_SCALES,
    GUEST_SWITCH_HZ,
    IRQ_REASONS,
    cover_letter,
    run_one,
    scenario,
)
from pmupart.check.trace import TraceRecorder
from pmupart.sim.guest_perf import GuestKernelCosts, GuestPmuDriver
from pmupart.sim.session import run_scenario
from pmupart.sim.spec import PerfMode, PerfSession
from pmupart.sim.summary import format_overhead, overhead


class FakeCpu:
    """A register surface that records accesses (no vCPU behind it)."""

    def __init__(self) -> None:
        self.el = 1
        self.log: list[tuple[str, str]] = []
        self.regs: dict[str, int] = {"PMCR_EL0": 6 << 11}

    def read(self, name: str):  # type: ignore[no-untyped-def]
        from pmupart.arch.pe import Access, Outcome
        self.log.append(("R", name))
        return Access(Outcome.OK, self.regs.get(name, 0))

    def write(self, name: str, value: int):  # type: ignore[no-untyped-def]
        from pmupart.arch.pe import Access, Outcome
        self.log.append(("W", name))
        self.regs[name] = value
        return Access(Outcome.OK)


def _driver(**kw: object) -> tuple[GuestPmuDriver, FakeCpu]:
    d = GuestPmuDriver(PerfSession((0x11, 0x08, 0x04), scope="task:x"), **kw)  # type: ignore[arg-type]
    cpu = FakeCpu()
    d.started = True
    d.num_counters = 6
    d._schedule(cpu)
    cpu.log.clear()
    return d, cpu


def test_context_switch_takes_every_event_off_and_back_between_pmu_disables() -> None:
    d, cpu = _driver(ctx_switch_hz=100.0)
    d.context_switch(cpu)
    writes = [n for rw, n in cpu.log if rw == "W"]
    # out: PMCR stop, per event CNTENCLR/INTENCLR/OVSCLR (armv8pmu_disable_event), and no
    # PMCR start: with every event out, armpmu_enable leaves the PMU stopped;
    # in: PMCR stop, per event type/counter/INTENSET/CNTENSET, PMCR start
    assert writes.count("PMCR_EL0") == 3
    out = writes[:writes.index("PMCNTENSET_EL0")]
    assert out.count("PMCR_EL0") == 2  # the switch-out's stop and the switch-in's stop
    assert writes.count("PMCNTENCLR_EL0") == writes.count("PMOVSCLR_EL0") == 3
    assert writes.count("PMCNTENSET_EL0") == 3
    assert d.counter == {0: 31, 1: 0, 2: 1}  # the same counters as before
    assert d.work.count["ctx_switch"] == 1
    assert d.work.cycles["ctx_switch_kernel"] == 2 * GuestKernelCosts().context_switch


def test_switches_follow_the_rate_over_ticks_and_only_for_per_task_sessions() -> None:
    d, cpu = _driver(ctx_switch_hz=100.0, tick_hz=250)
    for _ in range(250):  # one second of ticks
        d.tick(cpu, 4_000_000)
    assert d.work.count["ctx_switch"] == 100
    whole = GuestPmuDriver(PerfSession((0x11,)), ctx_switch_hz=100.0)
    assert whole.switches_per_tick == 0 and not whole.needs_tick()
    with pytest.raises(ValueError, match="ctx_switch_hz"):
        GuestPmuDriver(PerfSession((0x11,)), ctx_switch_hz=-1)


def test_frequency_adaptation_stops_and_restarts_each_event_at_the_tick() -> None:
    d = GuestPmuDriver(PerfSession((0x11, 0x08), mode=PerfMode.RECORD, freq=1000))
    cpu = FakeCpu()
    d.started = True
    d.num_counters = 6
    d._schedule(cpu)
    cpu.log.clear()
    d.tick(cpu, 4_000_000)
    writes = [n for rw, n in cpu.log if rw == "W"]
    assert writes.count("PMCR_EL0") == 2  # perf_pmu_disable / perf_pmu_enable once
    for reg in ("PMCNTENCLR_EL0", "PMINTENCLR_EL1", "PMOVSCLR_EL0", "PMINTENSET_EL1",
                "PMCNTENSET_EL0"):
        assert writes.count(reg) == 2, reg
    assert d.work.count["tick"] == 1


@pytest.fixture(scope="module")
def gzip_emulated() -> tuple[object, TraceRecorder]:
    tr = TraceRecorder()
    r = run_scenario(scenario("gzip", "emulated", 0.2), listeners=[tr.listener])
    return r, tr


def test_each_mechanism_shows_in_the_overhead_tables(gzip_emulated: tuple[object, object]
                                                     ) -> None:
    r, _ = gzip_emulated
    rep = overhead(r)  # type: ignore[arg-type]
    work = {g.work: g for g in rep.guest_work}
    for kind in ("irq_entry", "sample", "tick", "ctx_switch", "ctx_switch_kernel"):
        assert work[kind].count > 0, kind
    c = GuestKernelCosts()
    assert work["sample"].guest_ns == work["sample"].count * c.sample * 1000 // 3000
    reasons = {t.reason for t in rep.traps}
    assert {"sysreg", "irq", "vtimer", "pmu_irq"} <= reasons
    text = format_overhead(rep)
    assert "Guest kernel perf work" in text and "vtimer" in text
    el2 = r.machine.host.stats.el2_ns  # type: ignore[attr-defined]
    for reason in ("kvm_irq_exit", "host_timer_irq", "kvm_vgic_inject"):
        assert el2[("vm0", reason)] > 0, reason


def test_each_mechanism_shows_in_the_perfetto_trace(
        gzip_emulated: tuple[object, TraceRecorder], tmp_path: Path) -> None:
    r, tr = gzip_emulated
    out = tmp_path / "t.json"
    tr.write_trace(r, out)  # type: ignore[arg-type]
    evs = json.loads(out.read_text(encoding="utf-8"))["traceEvents"]
    names = {e.get("name", "") for e in evs if e.get("ph") == "i"}
    assert "exit: host irq IRQ" in names and "exit: host vtimer IRQ" in names
    for kind in ("sample", "tick", "irq_entry", "ctx_switch"):
        assert f"guest perf: {kind}" in names, kind


def test_mpstat_share_leaves_interrupt_context_out() -> None:
    m = run_one("stress", "partitioned", 0.05)
    irq = sum(m.el2_by_reason.get(r, 0) for r in IRQ_REASONS)
    assert irq == m.irq_el2_ns > 0
    assert m.host_kernel_share == pytest.approx(100.0 * (m.el2_ns - irq) / m.elapsed_ns)
    assert m.host_irq_share > 0


def test_full_is_the_published_durations() -> None:
    g = scenario("gzip", "emulated", FULL_SCALES["gzip"])
    assert g.workloads["gzip"].instructions == 4 * 3_000_000_000 * 2  # 4 s at CPI 0.5
    assert scenario("stress", "emulated", FULL_SCALES["stress"]).duration_ns == 30 * 10**9
    s = scenario("spec", "emulated", FULL_SCALES["spec"])
    assert s.workloads["specint"].instructions == int(60 * 3_000_000_000 / 0.8)
    assert s.workloads["specint"].ctx_switch_hz == GUEST_SWITCH_HZ


def test_jobs_give_the_same_results() -> None:
    rows1, _ = cover_letter(scale=0.02)
    rows2, _ = cover_letter(scale=0.02, jobs=2)
    assert [(r.emulated, r.partitioned) for r in rows1] == \
        [(r.emulated, r.partitioned) for r in rows2]
    with pytest.raises(ValueError, match="jobs"):
        cover_letter(scale=0.02, jobs=0)


TOML = """\
[scenario]
name = "task-switch"
duration = "20ms"

[machine]
preset = "tensor-g1"

[workload.compute]
ctx_switch_hz = 250
rates = { L1D_CACHE = 0.4 }

[[vm]]
name = "vm0"
affinity = "4"
workload = "compute"
perf = { events = ["CPU_CYCLES", "INST_RETIRED"], task = true }
"""


def test_a_scenario_runs_a_per_task_guest_session_with_task_switches() -> None:
    from pmupart.scenario import ScenarioError, load_scenario_text
    s = load_scenario_text(TOML, "t.toml")
    assert s.vms[0].perf is not None and s.vms[0].perf.scope == "task:compute"
    r = run_scenario(s)
    work = {g.work: g.count for g in overhead(r).guest_work}
    assert work["ctx_switch"] == 4  # one a tick: at 4, 8, 12 and 16 ms
    with pytest.raises(ScenarioError, match="task"):
        load_scenario_text(TOML.replace('task = true', 'task = false') +
                           '\n[[host.perf]]\nevents = ["CPU_CYCLES"]\ntask = true\n', "t.toml")


def test_rotation_runs_between_pmu_disable_and_enable() -> None:
    """``perf_rotate_context`` brackets the flexible events' out and in with
    ``perf_pmu_disable``/``perf_pmu_enable`` (PMCR_EL0.E = 0, then 1), and each event leaves
    its counter through ``armpmu_stop`` (PMCNTENCLR, PMINTENCLR and PMOVSCLR)."""
    d = GuestPmuDriver(PerfSession((0x11, 0x08, 0x04, 0x03)))
    cpu = FakeCpu()
    d.started = True
    d.num_counters = 2  # 3 of the 4 events fit (two counters + the cycle counter)
    d._schedule(cpu)
    cpu.log.clear()
    d.tick(cpu, 4_000_000)
    writes = [n for rw, n in cpu.log if rw == "W"]
    assert d.rotations == 1
    assert writes[0] == "PMCR_EL0" and writes[-1] == "PMCR_EL0"
    assert writes.count("PMCR_EL0") == 2
    for reg in ("PMCNTENCLR_EL0", "PMINTENCLR_EL1", "PMOVSCLR_EL0"):
        assert writes.count(reg) == 3, reg


@pytest.mark.parametrize("backend", ["emulated", "partitioned"])
def test_each_virtual_pmu_interrupt_costs_an_eoi_maintenance_exit(backend: str) -> None:
    """The vGIC lists the PMU interrupt (level-triggered, not hardware-mapped) with
    ICH_LR_EOI (``vgic_v3_populate_lr``): the guest's EOI raises a maintenance interrupt, an
    exit of its own per injection, on both backends; host interrupt context (not mpstat's
    %sys).  A userspace irqchip has no vGIC and no such exit."""
    import dataclasses

    s = scenario("gzip", backend, 0.25)
    v = run_scenario(s, fast_forward=False).machine.kvm.vms[0].vcpus[0].stats
    assert v.irqs_injected > 100
    assert v.exits["vgic_maintenance"] == v.irqs_injected
    assert "vgic_maintenance" in IRQ_REASONS
    s2 = dataclasses.replace(s, vms=tuple(dataclasses.replace(vm, irqchip=False)
                                          for vm in s.vms))
    v2 = run_scenario(s2, fast_forward=False).machine.kvm.vms[0].vcpus[0].stats
    assert v2.irqs_injected > 100 and v2.exits["vgic_maintenance"] == 0


def test_an_overflow_adapts_a_frequency_mode_period_an_eighth_of_the_way() -> None:
    """``__perf_event_account_interrupt`` -> ``perf_adjust_period``: at each overflow of a
    frequency-mode event, the period moves an eighth of the way (C's truncating division of
    the difference, rounded away from zero by 7) to the one that gives ``sample_freq``
    samples a second at the rate of the last period; not at the first overflow (no earlier
    one to measure from), nor when the last one is two ticks old or more."""
    d = GuestPmuDriver(PerfSession((0x11,), mode=PerfMode.RECORD, freq=1000))
    cpu = FakeCpu()
    t = [0]
    cpu.now_ns = lambda: t[0]  # type: ignore[attr-defined]
    d.started = True
    d.num_counters = 6
    d.period[0] = d.last_period[0] = d.left[0] = 1
    d._schedule(cpu)
    idx = d.counter[0]
    d._freq_overflow(cpu, 0, idx)  # the first: only the time stamp
    assert d.period[0] == 1 and d.freq_time_stamp[0] == 0
    d.last_period[0] = 1000
    t[0] = 10_000  # 1000 events in 10 us: 1e8 a second -> 100,000 for 1 kHz
    d._freq_overflow(cpu, 0, idx)
    assert d.period[0] == 1 + (100_000 - 1 + 7) // 8
    p = d.period[0]
    d.last_period[0] = 10
    t[0] += 1_000_000  # 10 events in 1 ms: a period of 10 -> down an eighth of the gap
    d._freq_overflow(cpu, 0, idx)
    assert d.period[0] == p - ((7 + p - 10) // 8)
    p = d.period[0]
    t[0] += 2 * d.tick_nsec  # two ticks since the last overflow: no adaptation
    d._freq_overflow(cpu, 0, idx)
    assert d.period[0] == p
    # more than 8 periods left after an adaptation: stopped, restarted from a new period
    d.period[0], d.left[0] = 20, 180  # target 1: the period goes to 17, 180 > 8 * 17
    d.last_period[0] = 1
    t[0] += 1_000_000
    cpu.log.clear()
    d._freq_overflow(cpu, 0, idx)
    writes = [n for rw, n in cpu.log if rw == "W"]
    assert "PMCNTENCLR_EL0" in writes and "PMCNTENSET_EL0" in writes
    assert d.left[0] == d.period[0]


@pytest.mark.parametrize("backend", ["emulated", "partitioned"])
def test_a_pmu_start_turns_el0_access_off_first(backend: str) -> None:
    """``armv8pmu_start`` writes PMUSERENR_EL0 (``armv8pmu_disable_user_access``) before
    PMCR_EL0.E: a trap on the emulated vPMU (MDCR_EL2.TPM) at every PMU start, none on the
    partitioned one (the series leaves PMUSERENR untrapped: v8 08/21)."""
    d, cpu = _driver()
    d._pmu_enable(cpu)
    assert [n for rw, n in cpu.log if rw == "W"] == ["PMUSERENR_EL0", "PMCR_EL0"]
    v = run_scenario(scenario("gzip", backend, 0.1),
                     fast_forward=False).machine.kvm.vms[0].vcpus[0].stats
    starts = v.irqs_injected  # the handler starts the PMU once per interrupt, at least
    if backend == "emulated":
        assert v.traps["PMUSERENR_EL0"] >= starts > 100
    else:
        assert v.traps["PMUSERENR_EL0"] == 0 and starts > 100
