"""The probe log: the versioned line format the image prints, and its parser.

Lines (``PMUPROBE/1`` is the format version; everything else on the console is ignored,
so a log may be a whole QEMU or serial capture)::

    PMUPROBE/1 BEGIN mode=el2 counters=6 hpmn=0,1,3,6 digest=b06479cd0fa7
    PMUPROBE/1 ID <register> <16 hex digits>          (the preamble: what the image ran on)
    PMUPROBE/1 <opid, 4 hex digits> v <16 hex>         a read returned this value
    PMUPROBE/1 <opid> ok                               a write completed
    PMUPROBE/1 <opid> nz <0|1>                         a time-based count: 0 or not
    PMUPROBE/1 <opid> t1 <16 hex>                      an exception taken to EL1
    PMUPROBE/1 <opid> t2 <16 hex>                      an exception taken to EL2
    PMUPROBE/1 END

For ``t1``/``t2`` the value is the ESR of the exception with the EL it was taken from in
bits [61:60].  A line may appear twice (UART and semihosting on the same console); the
copies must agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pmupart.errors import PmupartError
from pmupart.probe.catalogue import FORMAT_VERSION, Params

_LINE = re.compile(r"PMUPROBE/(\d+) (.*)$")


class ProbeLogError(PmupartError, ValueError):
    """A log that is not a probe log, or a malformed one (bad input: exit status 2)."""


@dataclass
class ProbeLog:
    """A parsed log: build parameters, digest, ID registers and one result per opid."""

    params: Params
    digest: str
    ids: dict[str, int] = field(default_factory=dict)
    results: dict[int, str] = field(default_factory=dict)
    complete: bool = False
    errors: list[str] = field(default_factory=list)


def format_result(kind: str, value: int | None = None) -> str:
    """The text after the opid: ``v 00..``, ``ok``, ``nz 1``, ``t1 ..``, ``t2 ..``."""
    if kind == "ok":
        return "ok"
    if kind == "nz":
        return f"nz {int(bool(value))}"
    return f"{kind} {(value or 0) & ((1 << 64) - 1):016x}"


def parse_log(text: str, source: str = "log") -> ProbeLog:
    """Parse a console capture; raises :class:`ProbeLogError` naming the line at fault."""
    log: ProbeLog | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        m = _LINE.search(raw.replace("\r", ""))
        if not m:
            continue
        ver, rest = int(m.group(1)), m.group(2).strip()
        if ver != FORMAT_VERSION:
            raise ProbeLogError(f"{source}:{no}: probe log format version {ver}; this pmupart "
                                f"reads version {FORMAT_VERSION} (rebuild the image)")
        parts = rest.split()
        if parts[0] == "BEGIN":
            try:
                params = Params.parse(rest[len("BEGIN"):])
            except ValueError as e:
                raise ProbeLogError(f"{source}:{no}: {e}") from None
            dg = dict(p.split("=", 1) for p in parts[1:] if "=" in p).get("digest", "")
            if log is not None:
                if log.digest != dg or log.params != params:
                    raise ProbeLogError(f"{source}:{no}: a second BEGIN line from another image")
                continue
            log = ProbeLog(params, dg)
            continue
        if log is None:
            raise ProbeLogError(f"{source}:{no}: probe output before the BEGIN line")
        if parts[0] == "END":
            log.complete = True
            continue
        if parts[0] == "ERROR":
            log.errors.append(rest[len("ERROR"):].strip())
            continue
        try:
            if parts[0] == "ID" and len(parts) == 3:
                log.ids[parts[1]] = int(parts[2], 16)
                continue
            opid = int(parts[0], 16)
            kind = parts[1]
            if kind == "ok" and len(parts) == 2:
                res = "ok"
            elif kind in ("v", "t1", "t2", "nz") and len(parts) == 3:
                res = format_result(kind, int(parts[2], 16))
            else:
                raise ValueError(rest)
        except (ValueError, IndexError):
            raise ProbeLogError(f"{source}:{no}: malformed probe line {raw.strip()!r}") from None
        old = log.results.get(opid)
        if old is not None and old != res:
            raise ProbeLogError(f"{source}:{no}: outcome {opid:#06x} reported twice with "
                                f"different results ({old!r}, {res!r})")
        log.results[opid] = res
    if log is None:
        raise ProbeLogError(f"{source}: no '{_begin_hint()}' line: not a probe log")
    return log


def _begin_hint() -> str:
    return f"PMUPROBE/{FORMAT_VERSION} BEGIN"
