"""The exceptions pmupart raises for misuse and bad input.

Architectural outcomes (UNDEFINED, traps, overflow interrupts) are *values*
(:class:`pmupart.arch.Access`), never exceptions (DESIGN.md decision 2).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: How to install the ``guest`` extra (unicorn, for AArch64 guest programs): an editable
#: install from a checkout, or the package from an index.
GUEST_EXTRA_HINT = ("install the guest extra: pip install -e '.[guest]' in a pmupart checkout, "
                    "pip install 'pmupart[guest]' otherwise")


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


class GuestProgramError(PmupartError):
    """The user's guest program raised: ``who`` ran it (``vm0:vcpu0``), ``program`` names it
    and ``error`` is what it raised (its traceback is the user's, shown as is)."""

    def __init__(self, who: str, program: str, error: BaseException) -> None:
        self.who = who
        self.program = program
        self.error = error
        super().__init__(f"the guest program {program} raised on {who}: "
                         f"{type(error).__name__}: {error}")

    def user_traceback(self) -> str:
        """The program's traceback, from its own frames on (pmupart's frames dropped)."""
        import traceback

        tb = self.error.__traceback__
        while tb is not None and "/pmupart/" in tb.tb_frame.f_code.co_filename.replace(
                "\\", "/") and not tb.tb_frame.f_code.co_filename.endswith("programs.py"):
            tb = tb.tb_next
        return "".join(traceback.format_exception(type(self.error), self.error, tb))


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
