"""Overhead tables: what partitioning (or emulating) the PMU cost, per party.

A *party* is the host or a VM (``"host"``, ``"vm0"``).  From plain rows the simulation fills
in, this module prints five tables:

1. exits and traps by reason (``sysreg``, ``irq``, ``wfx``, ...), with the EL2 time they took;
2. traps by register (the PMU system registers a guest touched and KVM had to handle);
3. where each party's on-CPU time went: guest (EL0/EL1), EL2, host kernel, with shares;
4. perf events created and released (the emulated vPMU creates one per guest counter it
   programs);
5. host events squeezed out: host perf events that lost counter time to the guests'
   partition (``time_running < time_enabled``).

:func:`format_overhead` returns plain text (stable, golden-tested); :func:`render_overhead`
prints that text, or the same tables drawn with rich when the output is a terminal (no
colour when ``NO_COLOR`` is set).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import IO, Any, Literal

__all__ = [
    "GuestWorkRow",
    "OverheadReport",
    "PartyTime",
    "PerfEventCount",
    "SqueezedEvent",
    "TrapRow",
    "format_duration",
    "format_overhead",
    "format_overhead_rich",
    "render_overhead",
]


def _need_int(where: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{where} must be an int >= 0, not {v!r}")


def _need_name(where: str, v: object, empty_ok: bool = False) -> None:
    if not isinstance(v, str) or (not v and not empty_ok):
        raise ValueError(f"{where} must be a {'' if empty_ok else 'non-empty '}string, not {v!r}")


@dataclass(frozen=True, slots=True)
class TrapRow:
    """``count`` exits/traps of one ``reason`` (and ``register`` for system-register traps)
    taken by ``party``, which kept EL2 busy for ``el2_ns`` in total."""

    party: str
    reason: str
    count: int
    el2_ns: int
    register: str = ""

    def __post_init__(self) -> None:
        _need_name("TrapRow.party", self.party)
        _need_name("TrapRow.reason", self.reason)
        _need_name("TrapRow.register", self.register, empty_ok=True)
        _need_int(f"TrapRow.count of {self.party}/{self.reason}", self.count)
        _need_int(f"TrapRow.el2_ns of {self.party}/{self.reason}", self.el2_ns)


@dataclass(frozen=True, slots=True)
class PartyTime:
    """Where a party's on-CPU time went, in ns: guest code (EL0/EL1 of the guest, or host
    user space for the host), EL2 (trap handling, world switch), and host kernel work done
    on its behalf (KVM's run loop, perf event management, interrupts)."""

    party: str
    guest_ns: int
    el2_ns: int
    host_kernel_ns: int

    def __post_init__(self) -> None:
        _need_name("PartyTime.party", self.party)
        for f in ("guest_ns", "el2_ns", "host_kernel_ns"):
            _need_int(f"PartyTime.{f} of {self.party}", getattr(self, f))

    @property
    def total_ns(self) -> int:
        return self.guest_ns + self.el2_ns + self.host_kernel_ns


@dataclass(frozen=True, slots=True)
class PerfEventCount:
    """Host perf events created and released on behalf of ``party``."""

    party: str
    created: int
    released: int

    def __post_init__(self) -> None:
        _need_name("PerfEventCount.party", self.party)
        _need_int(f"PerfEventCount.created of {self.party}", self.created)
        _need_int(f"PerfEventCount.released of {self.party}", self.released)
        if self.released > self.created:
            raise ValueError(
                f"PerfEventCount.released of {self.party} must be <= created, "
                f"not {self.released} > {self.created}"
            )


@dataclass(frozen=True, slots=True)
class SqueezedEvent:
    """A host perf event that was enabled for ``time_enabled`` but had a counter only for
    ``time_running`` (ns); ``where`` says on which PMU or CPU (``"armv8_cortex_a76"``,
    ``"cpu4"``)."""

    event: str
    where: str
    time_enabled: int
    time_running: int

    def __post_init__(self) -> None:
        _need_name("SqueezedEvent.event", self.event)
        _need_name("SqueezedEvent.where", self.where, empty_ok=True)
        _need_int(f"SqueezedEvent.time_enabled of {self.event}", self.time_enabled)
        _need_int(f"SqueezedEvent.time_running of {self.event}", self.time_running)
        if self.time_running > self.time_enabled:
            raise ValueError(
                f"SqueezedEvent.time_running of {self.event} must be <= time_enabled, "
                f"not {self.time_running} > {self.time_enabled}"
            )

    @property
    def lost_pct(self) -> float:
        if self.time_enabled == 0:
            return 0.0
        return 100.0 * (self.time_enabled - self.time_running) / self.time_enabled


@dataclass(frozen=True, slots=True)
class GuestWorkRow:
    """Guest kernel work ``party``'s perf session caused besides its register accesses:
    ``count`` times ``work`` (``sample``, ``tick``, ``irq_entry``, ``ctx_switch``, ...),
    ``guest_ns`` of guest EL1 time in total."""

    party: str
    work: str
    count: int
    guest_ns: int

    def __post_init__(self) -> None:
        _need_name("GuestWorkRow.party", self.party)
        _need_name("GuestWorkRow.work", self.work)
        _need_int(f"GuestWorkRow.count of {self.party}/{self.work}", self.count)
        _need_int(f"GuestWorkRow.guest_ns of {self.party}/{self.work}", self.guest_ns)


_ROW_TYPES: dict[str, type[Any]] = {
    "traps": TrapRow,
    "times": PartyTime,
    "perf_events": PerfEventCount,
    "squeezed": SqueezedEvent,
    "guest_work": GuestWorkRow,
}


@dataclass(frozen=True, slots=True)
class OverheadReport:
    """All the overhead rows of one run (``duration_ns`` of simulated time)."""

    duration_ns: int
    traps: tuple[TrapRow, ...] = ()
    times: tuple[PartyTime, ...] = ()
    perf_events: tuple[PerfEventCount, ...] = ()
    squeezed: tuple[SqueezedEvent, ...] = ()
    title: str = "Overhead"
    guest_work: tuple[GuestWorkRow, ...] = ()

    def __post_init__(self) -> None:
        _need_int("OverheadReport.duration_ns", self.duration_ns)
        for name, cls in _ROW_TYPES.items():
            rows = tuple(getattr(self, name))
            for i, r in enumerate(rows):
                if not isinstance(r, cls):
                    raise ValueError(
                        f"OverheadReport.{name}[{i}] must be a {cls.__name__}, not {r!r}"
                    )
            object.__setattr__(self, name, rows)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OverheadReport:
        """Build from plain dicts: ``{"duration_ns": ..., "traps": [{"party": ..., ...}],
        "times": [...], "perf_events": [...], "squeezed": [...], "title": ...}``."""
        allowed = {"duration_ns", "title", *_ROW_TYPES}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(
                f"overhead report keys must be among {sorted(allowed)}, not {unknown}"
            )
        if "duration_ns" not in data:
            raise ValueError("overhead report must have a 'duration_ns'")
        kwargs: dict[str, Any] = {"duration_ns": data["duration_ns"]}
        if "title" in data:
            kwargs["title"] = data["title"]
        for name, row_cls in _ROW_TYPES.items():
            rows = []
            names = {f.name for f in fields(row_cls)}
            for i, item in enumerate(data.get(name, ())):
                if not isinstance(item, Mapping):
                    raise ValueError(f"{name}[{i}] must be a mapping, not {item!r}")
                bad = sorted(set(item) - names)
                if bad:
                    raise ValueError(f"{name}[{i}] keys must be among {sorted(names)}, not {bad}")
                try:
                    rows.append(row_cls(**item))
                except TypeError as exc:
                    raise ValueError(f"{name}[{i}]: {exc}") from None
                except ValueError as exc:
                    raise ValueError(f"{name}[{i}]: {exc}") from None
            kwargs[name] = tuple(rows)
        return cls(**kwargs)


# --- formatting helpers ----------------------------------------------------------------------


def format_duration(ns: int) -> str:
    """``ns`` with a readable unit and three decimals: ``"812 ns"``, ``"1.234 ms"``."""
    if ns < 1_000:
        return f"{ns} ns"
    for div, unit in ((1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")):
        if ns >= div:
            return f"{ns / div:.3f} {unit}"
    raise AssertionError("unreachable")


def _pct(part: int, whole: int) -> str:
    return "-" if whole == 0 else f"{100.0 * part / whole:.2f}%"


Align = Literal["<", ">"]


@dataclass(frozen=True, slots=True)
class _Table:
    title: str
    headers: tuple[str, ...]
    aligns: tuple[Align, ...]
    rows: tuple[tuple[str, ...], ...]
    footer: tuple[str, ...] | None = None
    empty: str = "none"

    def plain(self) -> str:
        out = [self.title]
        if not self.rows:
            out.append(f"  ({self.empty})")
            return "\n".join(out) + "\n"
        body = [self.headers, *self.rows, *([self.footer] if self.footer else [])]
        widths = [max(len(r[c]) for r in body) for c in range(len(self.headers))]

        def line(cells: Sequence[str]) -> str:
            parts = [
                cell.ljust(w) if a == "<" else cell.rjust(w)
                for cell, w, a in zip(cells, widths, self.aligns, strict=True)
            ]
            return ("  " + "  ".join(parts)).rstrip()

        out.append(line(self.headers))
        out.append("  " + "  ".join("-" * w for w in widths))
        out.extend(line(r) for r in self.rows)
        if self.footer:
            out.append(line(self.footer))
        return "\n".join(out) + "\n"


def _tables(report: OverheadReport) -> list[_Table]:
    tables = []

    # A register row breaks down its reason's row (the same exits again), so it counts only
    # where its party/reason has no row of its own: each exit once, as in --json's reason
    # rows (spec kernel-code-deltas §5.10).
    own = {(t.party, t.reason) for t in report.traps if not t.register}
    by_reason: dict[tuple[str, str], list[int]] = {}
    for t in report.traps:
        if t.register and (t.party, t.reason) in own:
            continue
        acc = by_reason.setdefault((t.party, t.reason), [0, 0])
        acc[0] += t.count
        acc[1] += t.el2_ns
    rows = sorted(by_reason.items(), key=lambda kv: (kv[0][0], -kv[1][1], -kv[1][0], kv[0][1]))
    tot_n = sum(v[0] for _, v in rows)
    tot_t = sum(v[1] for _, v in rows)
    tables.append(_Table(
        "Exits and traps by reason",
        ("party", "reason", "count", "EL2 time", "per exit"),
        ("<", "<", ">", ">", ">"),
        tuple(
            (p, r, f"{n:,}", format_duration(ns), format_duration(ns // n) if n else "-")
            for (p, r), (n, ns) in rows
        ),
        footer=("total", "", f"{tot_n:,}", format_duration(tot_t),
                format_duration(tot_t // tot_n) if tot_n else "-") if rows else None,
    ))

    by_reg: dict[tuple[str, str], list[int]] = {}
    for t in report.traps:
        if t.register:
            acc = by_reg.setdefault((t.party, t.register), [0, 0])
            acc[0] += t.count
            acc[1] += t.el2_ns
    reg_rows = sorted(by_reg.items(), key=lambda kv: (kv[0][0], -kv[1][0], kv[0][1]))
    tables.append(_Table(
        "Traps by register",
        ("party", "register", "count", "EL2 time"),
        ("<", "<", ">", ">"),
        tuple((p, reg, f"{n:,}", format_duration(ns)) for (p, reg), (n, ns) in reg_rows),
    ))

    tables.append(_Table(
        "Time by exception level (share of the party's on-CPU time)",
        ("party", "on-CPU", "guest", "guest %", "EL2", "EL2 %", "host kernel", "host kernel %"),
        ("<", ">", ">", ">", ">", ">", ">", ">"),
        tuple(
            (
                t.party, format_duration(t.total_ns),
                format_duration(t.guest_ns), _pct(t.guest_ns, t.total_ns),
                format_duration(t.el2_ns), _pct(t.el2_ns, t.total_ns),
                format_duration(t.host_kernel_ns), _pct(t.host_kernel_ns, t.total_ns),
            )
            for t in sorted(report.times, key=lambda t: t.party)
        ),
    ))

    tables.append(_Table(
        "Perf events",
        ("party", "created", "released", "live"),
        ("<", ">", ">", ">"),
        tuple(
            (e.party, f"{e.created:,}", f"{e.released:,}", f"{e.created - e.released:,}")
            for e in sorted(report.perf_events, key=lambda e: e.party)
        ),
    ))

    tables.append(_Table(
        "Host events squeezed out",
        ("event", "where", "enabled", "running", "lost"),
        ("<", "<", ">", ">", ">"),
        tuple(
            (s.event, s.where, format_duration(s.time_enabled), format_duration(s.time_running),
             f"{s.lost_pct:.2f}%")
            for s in sorted(report.squeezed, key=lambda s: (-s.lost_pct, s.event, s.where))
        ),
        empty="none: every host event kept its counter",
    ))
    if report.guest_work:  # only runs with a guest perf session have any
        tables.append(_Table(
            "Guest kernel perf work (besides its register accesses)",
            ("party", "work", "count", "guest time", "per call"),
            ("<", "<", ">", ">", ">"),
            tuple(
                (g.party, g.work, f"{g.count:,}", format_duration(g.guest_ns),
                 format_duration(g.guest_ns // g.count) if g.count else "-")
                for g in sorted(report.guest_work, key=lambda g: (g.party, g.work))
            ),
        ))
    return tables


def format_overhead(report: OverheadReport) -> str:
    """All five tables as plain text (stable; the form used in files and golden tests)."""
    head = f"{report.title} over {format_duration(report.duration_ns)} of simulated time\n"
    return head + "".join("\n" + t.plain() for t in _tables(report))


def format_overhead_rich(report: OverheadReport, width: int = 100, color: bool = True) -> str:
    """The tables drawn by rich, as terminal text (with ANSI colour when ``color``)."""
    import io

    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=True, no_color=not color,
                      color_system="standard" if color else None, highlight=False)
    console.print(
        f"[bold]{report.title}[/bold] over {format_duration(report.duration_ns)} "
        "of simulated time"
    )
    for t in _tables(report):
        table = Table(title=t.title, title_justify="left", show_footer=t.footer is not None)
        for c, (h, a) in enumerate(zip(t.headers, t.aligns, strict=True)):
            table.add_column(h, justify="left" if a == "<" else "right",
                             footer=t.footer[c] if t.footer else "",
                             style="cyan" if c == 0 else None)
        for r in t.rows:
            table.add_row(*r)
        if not t.rows:
            console.print(f"[bold]{t.title}[/bold]\n  ({t.empty})")
            continue
        console.print(table)
    return buf.getvalue()


def render_overhead(
    report: OverheadReport, file: IO[str] | None = None, pretty: bool | None = None
) -> None:
    """Print the tables to ``file`` (stdout): rich tables on a terminal, plain text
    otherwise. A non-empty ``NO_COLOR`` turns colour off; ``TERM=dumb`` means plain."""
    import sys

    out = sys.stdout if file is None else file
    if pretty is None:
        isatty = getattr(out, "isatty", None)
        pretty = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
    if pretty:
        import shutil

        width = shutil.get_terminal_size((100, 24)).columns
        out.write(format_overhead_rich(report, width=width,
                                       color=not os.environ.get("NO_COLOR")))
    else:
        out.write(format_overhead(report))

