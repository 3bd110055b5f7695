"""The ground-truth ledger: every event each context really retired, where and when.

The engine (``"retire"``), a guest program run with ``vcpu.run`` (``"guest_retire"``) and the
host's EL2 work (``"el2_end"``: KVM exits, perf operations, interrupts, charged at EL2 and
retired in one block at the next flush) are the only ways work reaches a PE.  The ledger
records all three, so it can say what an ideal, unshared PMU would have counted for any
counter: a guest's (its own work at the ELs its filter selects, nothing of the host or EL2)
or a host perf event's (everything on its CPU, or its task, at the ELs its attributes
select; DESIGN.md "the picture": "a ledger keeps the ground truth of every event").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from pmupart.arch.events import Event, event_number
from pmupart.host.perf_event import PerfEvent

_CYC = int(Event.CPU_CYCLES)
_INST = int(Event.INST_RETIRED)

#: Who did EL2 work that no context retired itself: KVM and the host kernel's perf code.
EL2_WORK = "<el2>"


class Block(NamedTuple):
    """One block of work: at ``t_ns`` on ``cpu`` at ``el``, by ``who`` (a context name: a host
    task or a vCPU ``vm:vcpuN``; ``<el2>`` for charged EL2 work, ``party`` = for whom)."""

    t_ns: int
    cpu: int
    el: int
    who: str
    guest: bool
    events: tuple[tuple[int, int], ...]
    party: str


@dataclass
class Ledger:
    """Totals of retired events by (who, cpu, el), plus the block log (``keep_blocks``)."""

    keep_blocks: bool = True
    blocks: list[Block] = field(default_factory=list)
    #: (who, cpu, el, guest) -> event -> count
    totals: dict[tuple[str, int, int, bool], Counter[int]] = field(default_factory=dict)
    #: (who, cpu, el) -> (first t, last t)
    span: dict[tuple[str, int, int], tuple[int, int]] = field(default_factory=dict)
    #: EL2 work by (cpu, party): cycles and instructions
    el2: dict[tuple[int, str], Counter[int]] = field(default_factory=dict)
    #: EL2 work by (cpu, task running there): what a task-bound host event sees of it
    el2_task: dict[tuple[int, str], Counter[int]] = field(default_factory=dict)

    # ------------------------------------------------------------------ recording
    def record(self, t_ns: int, cpu: int, el: int, who: str, guest: bool,
               events: Mapping[str, int] | Mapping[int, int] | Mapping[str | int, int],
               party: str | None = None) -> None:
        """``who`` retired ``events`` at ``el`` on ``cpu`` at ``t_ns`` (``guest``: in a VM)."""
        evs: dict[int, int] = {}
        for k, v in events.items():
            if v:
                n = k if isinstance(k, int) else event_number(k)
                evs[n] = evs.get(n, 0) + v
        if not evs:
            return
        key = (who, cpu, el, guest)
        tot = self.totals.get(key)
        if tot is None:
            tot = self.totals[key] = Counter()
        tot.update(evs)
        sk = (who, cpu, el)
        first, _ = self.span.get(sk, (t_ns, t_ns))
        self.span[sk] = (first, t_ns)
        if party is not None and who == EL2_WORK:
            c = self.el2.get((cpu, party))
            if c is None:
                c = self.el2[(cpu, party)] = Counter()
            c.update(evs)
        if self.keep_blocks:
            self.blocks.append(Block(t_ns, cpu, el, who, guest, tuple(sorted(evs.items())),
                                     party or who))

    def record_el2(self, t_ns: int, cpu: int, cycles: int, inst: int, party: str,
                   task: str | None = None) -> None:
        """EL2 work charged on ``cpu`` for ``party`` (``host`` or a VM) and retired now, while
        ``task`` (a host task or a vCPU thread) was current there."""
        self.record(t_ns, cpu, 2, EL2_WORK, False, {_CYC: cycles, _INST: inst}, party=party)
        if task is not None:
            c = self.el2_task.get((cpu, task))
            if c is None:
                c = self.el2_task[(cpu, task)] = Counter()
            c.update({_CYC: cycles, _INST: inst})

    # ------------------------------------------------------------------ queries
    def truth(self, who: str, el: int | None = None, cpu: int | None = None) -> Counter[int]:
        """Events ``who`` retired (at ``el``, on ``cpu``; None = all)."""
        out: Counter[int] = Counter()
        for (w, c, e, _g), tot in self.totals.items():
            if w == who and (el is None or e == el) and (cpu is None or c == cpu):
                out.update(tot)
        return out

    def ideal_guest(self, who: str, event: int, *, exclude_user: bool = False,
                    exclude_kernel: bool = False) -> int:
        """What an ideal, unshared PMU in the guest would count for ``event``: the vCPU's own
        work at guest EL0 (unless ``exclude_user``) and EL1 (unless ``exclude_kernel``); never
        the host's, never EL2 (spec kvm-partitioning §2.5, §2.8; v7 09/20 HPMD/HCCD, v7 11/20
        ``kvm_pmu_apply_event_filter``)."""
        n = 0
        for (w, _c, e, g), tot in self.totals.items():
            if w != who or not g:
                continue
            if (e == 0 and not exclude_user) or (e == 1 and not exclude_kernel):
                n += tot.get(event, 0)
        return n

    def ideal_host(self, ev: PerfEvent) -> int:
        """What an ideal, unshared PMU would count for host event ``ev``: on its CPU (or where
        its task ran, on its PMU's CPUs), at the ELs its attributes select on a VHE host
        (``armv8pmu_set_event_filter``; guest EL0/EL1 unless ``exclude_guest``; the host
        kernel and KVM at EL2 unless ``exclude_kernel``/``exclude_host``)."""
        a = ev.attr
        cpus = set(ev.pmu.cpus) if ev.cpu == -1 else {ev.cpu}
        task = ev.task.name if (ev.cpu == -1 and ev.task is not None) else None
        n = 0
        for (w, c, e, g), tot in self.totals.items():
            if c not in cpus:
                continue
            if task is not None and w != task:
                continue  # a task event counts its task only (its EL2 work: el2_task)
            if g:
                ok = not a.exclude_guest and ((e == 0 and not a.exclude_user) or
                                              (e == 1 and not a.exclude_kernel))
            elif e == 0:
                ok = not a.exclude_host and not a.exclude_user
            else:
                ok = not a.exclude_host and not a.exclude_kernel
            if ok:
                n += tot.get(a.config, 0)
        if task is not None and not a.exclude_host and not a.exclude_kernel:
            for (c, t), tot in self.el2_task.items():
                if t == task and c in cpus:
                    n += tot.get(a.config, 0)
        return n

    def who(self) -> list[str]:
        return sorted({w for (w, _c, _e, _g) in self.totals})

    def summary(self) -> str:
        """One line per context: instructions and cycles by EL, and the CPUs it ran on."""
        lines = []
        for w in self.who():
            by_el: Counter[int] = Counter()
            cyc_el: Counter[int] = Counter()
            cpus = set()
            for (w2, c, e, _g), tot in self.totals.items():
                if w2 != w:
                    continue
                by_el[e] += tot.get(_INST, 0)
                cyc_el[e] += tot.get(_CYC, 0)
                cpus.add(c)
            els = " ".join(f"EL{e}: {by_el[e]} inst / {cyc_el[e]} cycles" for e in sorted(by_el))
            lines.append(f"{w}: {els} on cpu {','.join(str(c) for c in sorted(cpus))}")
        return "\n".join(lines)
