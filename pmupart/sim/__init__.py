"""pmupart.sim: the discrete-event engine, the scheduler, workloads, guest and host perf
sessions, and running a scenario."""

from pmupart.sim.engine import Context, Engine
from pmupart.sim.guest_perf import GuestEventResult, GuestPmuDriver
from pmupart.sim.session import HostEventResult, RunResult, VmResult, run_scenario
from pmupart.sim.spec import (
    EventFilterSpec,
    HostTaskSpec,
    MigrationPolicy,
    MigrationSpec,
    PerfMode,
    PerfSession,
    Phase,
    ScenarioSpec,
    VmSpec,
    Workload,
)

__all__ = [
    "Context", "Engine", "EventFilterSpec", "GuestEventResult", "GuestPmuDriver",
    "HostEventResult", "HostTaskSpec", "MigrationPolicy", "MigrationSpec", "PerfMode",
    "PerfSession", "Phase", "RunResult", "ScenarioSpec", "VmResult", "VmSpec", "Workload",
    "run_scenario",
]
