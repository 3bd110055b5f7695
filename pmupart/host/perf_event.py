"""Host perf events: the part of ``kernel/events/core.c`` the model needs.

Counting and sampling events bound to a CPU or to a task, pinned or flexible, in groups;
per-CPU scheduling with the kernel's rules (pinned groups first, then flexible groups in
rotation order, and no further flexible group once one has failed: ``merge_sched_in``);
multiplexing by rotation every ``perf_event_mux_interval_ms``; ``time_enabled`` /
``time_running`` and scaled counts as ``perf_event_read_value`` reports them.

The hardware side (which counter an event gets, how it is programmed, the overflow
interrupt) is the PMU driver's: :mod:`pmupart.host.arm_pmuv3`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pmupart.host.arm_pmuv3 import ArmPmu


class EventState(Enum):
    """``enum perf_event_state`` (the subset a counting model meets)."""

    OFF = "off"
    INACTIVE = "inactive"
    ACTIVE = "active"
    ERROR = "error"  #: a pinned event that could not get a counter
    DEAD = "dead"  #: released


@dataclass(frozen=True, slots=True)
class PerfEventAttr:
    """The fields of ``struct perf_event_attr`` that matter on an Arm core PMU.

    ``type`` is the PMU's sysfs type; ``config`` the PMUv3 event number; ``long`` is
    ``config1`` bit 0 (a 64-bit counter, ``format/long``).
    """

    type: int
    config: int
    long: bool = False
    exclude_user: bool = False
    exclude_kernel: bool = False
    exclude_hv: bool = False
    exclude_host: bool = False
    exclude_guest: bool = False
    pinned: bool = False
    sample_period: int = 0  #: 0 = counting
    freq: int = 0  #: sample frequency (Hz) for ``perf record -F``; 0 = fixed period
    disabled: bool = False

    def __post_init__(self) -> None:
        if self.config < 0 or self.config > 0xFFFF:
            raise ValueError(f"perf_event_attr.config must be a PMUv3 event number 0..0xffff, "
                             f"not {self.config:#x}")
        if self.sample_period < 0:
            raise ValueError(f"perf_event_attr.sample_period must be >= 0, not "
                             f"{self.sample_period}")


@dataclass(eq=False)
class Task:
    """A host task (a process' thread, or a vCPU thread): owner of task-bound events."""

    name: str
    pid: int
    events: list[PerfEvent] = field(default_factory=list)
    cpu: int | None = None  #: where it runs now (None: not running)


_ids = itertools.count(1)


@dataclass(eq=False)
class PerfEvent:
    """One ``struct perf_event``."""

    attr: PerfEventAttr
    pmu: ArmPmu
    cpu: int  #: -1 = any CPU (a task event)
    task: Task | None
    group_leader: PerfEvent | None = None
    overflow_handler: Callable[[PerfEvent], None] | None = None
    owner: str = "host"  #: who created it ("host", or "kvm:<vm>" for vPMU backing events)
    id: int = field(default_factory=lambda: next(_ids))
    state: EventState = EventState.INACTIVE
    hw_idx: int | None = None  #: counter index while ACTIVE (odd index of a chained pair)
    hw_cpu: int = -1  #: the CPU whose counter ``hw_idx`` is (-1: none)
    chained: bool = False
    count: int = 0  #: events counted so far (``local64 count``)
    prev_hw: int = 0  #: counter value at the last update (``hw.prev_count``)
    period_left: int = 0
    sample_period: int = 0
    time_enabled: int = 0
    time_running: int = 0
    nr_samples: int = 0
    siblings: list[PerfEvent] = field(default_factory=list)
    _tstamp: int = 0
    host_el0: bool = True  #: counts host EL0 (VHE EL0 filter switching, kvm/pmu.c)
    guest_el0: bool = True

    @property
    def leader(self) -> PerfEvent:
        return self.group_leader or self

    @property
    def max_period(self) -> int:
        """The counter's range for this event: 64 bits for a long event on a 64-bit counter
        (or a chained pair), else 32 (``armv8pmu`` ``max_period`` / ``armv8pmu_event_is_64bit``)."""
        return (1 << 64) - 1 if self.attr.long else (1 << 32) - 1

    def read_value(self) -> tuple[int, int, int]:
        """``perf_event_read_value``: (count, time_enabled, time_running)."""
        if self.state is EventState.ACTIVE:
            self.pmu.read(self)
        return self.count, self.time_enabled, self.time_running

    def scaled(self) -> int | None:
        """The value perf stat prints: count * enabled / running; ``None`` = <not counted>."""
        if self.time_running == 0:
            return None
        if self.time_running >= self.time_enabled:
            return self.count
        return (self.count * self.time_enabled) // self.time_running


def _update_groups(leaders: Iterable[PerfEvent], now_ns: int) -> None:
    """``perf_event_update_time`` on each group: enabled time accrues while an event is
    schedulable (not OFF or DEAD), running time while it is ACTIVE, since its timestamp."""
    off, dead, active = EventState.OFF, EventState.DEAD, EventState.ACTIVE
    for ev in leaders:
        for e in (ev, *ev.siblings) if ev.siblings else (ev,):
            st = e.state
            if st is not off and st is not dead:
                dt = now_ns - e._tstamp
                if dt > 0:
                    e.time_enabled += dt
                    if st is active:
                        e.time_running += dt
            e._tstamp = now_ns


class PerfContext:
    """One CPU's perf state: the CPU-bound events and the running task's events
    (``struct perf_cpu_context`` + the task's ``perf_event_context``)."""

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.cpu_events: list[PerfEvent] = []  #: group leaders bound to this CPU
        self.task: Task | None = None
        self.now_ns = 0
        self.rotations = 0
        self._flex_order: list[PerfEvent] = []
        self._leaders: list[PerfEvent] | None = None
        self._leader_ids: set[int] | None = None  #: ids of :meth:`leaders`, when asked
        self._flex_valid = False
        #: a flexible group waits for a counter: the mux timer must rotate
        #: (``ctx->rotate_necessary``)
        self.rotate_necessary = False
        self._times_clean = False  #: every event's timestamp is ``now_ns``

    def invalidate(self) -> None:
        """Events were added or removed, or the task changed: recompute the lists."""
        self._leaders = None
        self._leader_ids = None
        self._flex_valid = False
        self._times_clean = False

    def leaders(self) -> list[PerfEvent]:
        if self._leaders is not None:
            return self._leaders
        evs = [e for e in self.cpu_events if e.group_leader is None]
        if self.task is not None:
            evs += [e for e in self.task.events if e.group_leader is None
                    and (e.cpu in (-1, self.cpu)) and self.cpu in e.pmu.cpus]
        self._leaders = [e for e in evs if e.state is not EventState.DEAD]
        return self._leaders

    def update_times(self, now_ns: int) -> None:
        """``update_context_time`` + ``perf_event_update_time``: enabled time accrues while the
        event is schedulable here, running time while it holds a counter.  A second update at
        the same instant changes nothing (every timestamp is already ``now_ns``; events that
        join the context or have their clock started mark it dirty), so it is skipped."""
        if now_ns == self.now_ns and self._times_clean:
            return
        self._times_clean = True
        _update_groups(self.leaders(), now_ns)
        self.now_ns = now_ns

    def update_group_times(self, leader: PerfEvent, now_ns: int) -> None:
        """:meth:`update_times` for one group only (``perf_event_update_time`` on the event
        and its siblings, as ``__perf_event_disable`` and ``__perf_event_read`` do in
        kernel/events/core.c, upstream): each
        event keeps its own timestamp, so the others' times are the same when they are next
        brought up to date.  A group that is not in this context is left alone, as the
        whole-context update leaves it."""
        if now_ns == self.now_ns and self._times_clean:
            return
        if self._leader_ids is None:
            self._leader_ids = {id(e) for e in self.leaders()}
        if id(leader) in self._leader_ids:
            _update_groups((leader,), now_ns)

    def mark(self, now_ns: int, events: list[PerfEvent]) -> None:
        """Start the clock of events that become schedulable here (task switched in)."""
        for ev in events:
            for e in (ev, *ev.siblings):
                e._tstamp = now_ns
        self._times_clean = False

    def flexible_order(self) -> list[PerfEvent]:
        """Flexible group leaders in rotation order (new ones join at the end)."""
        if self._flex_valid:
            return self._flex_order
        cur = [e for e in self.leaders() if not e.attr.pinned]
        cur_ids = {id(e) for e in cur}
        order = [e for e in self._flex_order if id(e) in cur_ids]
        seen = {id(e) for e in order}
        order += [e for e in cur if id(e) not in seen]
        self._flex_order = order
        self._flex_valid = True
        return order

    def rotate(self) -> bool:
        """``perf_rotate_context``: move the first flexible group to the end; True if there
        was something to rotate (an inactive flexible group)."""
        order = self.flexible_order()
        if not any(e.state is EventState.INACTIVE for e in order):
            return False
        self._flex_order = order[1:] + order[:1]
        self.rotations += 1
        return True
