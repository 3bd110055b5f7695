"""The exceptions pmupart raises for misuse and bad input.

Architectural outcomes (UNDEFINED, traps, overflow interrupts) are *values*
(:class:`pmupart.arch.Access`), never exceptions (DESIGN.md decision 2).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PmupartError(Exception):
    """Base class of every error pmupart raises on purpose."""


class InputError(PmupartError, ValueError):
    """Bad input from a file or mapping: ``path`` (the file, or ``<mapping>``), ``line``
    (1-based; 0 when unknown), ``field`` (the field path, ``vm[1].perf.events[2]``; ``""``
    for the whole input) and ``msg`` (what was expected and what was found).  ``str(e)`` is
    ``path:line: field: msg``."""

    def __init__(self, path: str, line: int, field: str, msg: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.msg = msg
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {field}: {msg}" if field else f"{where}: {msg}")


class SysregTableError(PmupartError):
    """The register table (``sysreg.txt``) is malformed: file, line and rule."""

    def __init__(self, path: str, line: int, msg: str) -> None:
        self.path = path
        self.line = line
        self.msg = msg
        super().__init__(f"{path}:{line}: {msg}")


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean X?)"`` for the closest candidates, or ``""``."""
    by_key = {c.upper(): c for c in candidates}
    close = [by_key[k] for k in difflib.get_close_matches(name.upper(), list(by_key), n=3,
                                                         cutoff=0.6)]
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
