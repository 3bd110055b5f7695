"""Where things are in a TOML text: the line of every key and array element, by path.

``tomllib`` gives values without positions; error messages want ``file:line``.  This module
scans text that ``tomllib`` has already accepted and records, for every key path
(``("vm", 1, "perf", "events", 2)``), the line where it starts: table headers
(``[a.b]``, ``[[a.b]]`` with their running index), dotted keys, inline tables and arrays
spanning several lines.  :func:`line_of` finds the line of a path, falling back to its
longest located prefix (a missing field is reported at the table that lacks it).

It depends on nothing else in pmupart, so any loader of TOML input (topologies, scenarios)
can use it; :func:`field_path` renders a path the way error messages spell it
(``vm[1].perf.events[2]``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

Path = tuple[int | str, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}\n#]")


def field_path(loc: Sequence[int | str]) -> str:
    """``("vm", 1, "perf", "events", 2)`` -> ``vm[1].perf.events[2]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.nl = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[Path, int] = {}
        self.aot: dict[Path, int] = {}  # array-of-tables path -> elements so far

    # -------------------------------------------------------------- helpers
    def line(self, pos: int | None = None) -> int:
        return bisect.bisect_right(self.nl, (self.i if pos is None else pos) - 1) + 1

    def peek(self, n: int = 1) -> str:
        return self.s[self.i:self.i + n]

    def skip_ws(self, newlines: bool = False) -> None:
        """Skip blanks (and newlines and comments when ``newlines``)."""
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#" and newlines:
                j = s.find("\n", self.i)
                self.i = n if j < 0 else j
            else:
                break

    def record(self, path: Path, line: int) -> None:
        self.lines.setdefault(path, line)

    # -------------------------------------------------------------- keys
    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_ws()
            c = self.peek()
            if c == '"' or c == "'":
                parts.append(self.string())
            else:
                m = _BARE.match(self.s, self.i)
                if m is None:
                    break
                parts.append(m.group())
                self.i = m.end()
            self.skip_ws()
            if self.peek() == ".":
                self.i += 1
                continue
            break
        return parts

    def string(self) -> str:
        s = self.s
        q = s[self.i]
        if s.startswith(q * 3, self.i):
            end = s.find(q * 3, self.i + 3)
            end = len(s) if end < 0 else end
            while s.startswith(q, end + 3):  # up to two quotes may close the string
                end += 1
            val = s[self.i + 3:end]
            self.i = end + 3
            return val
        j = self.i + 1
        out: list[str] = []
        while j < len(s) and s[j] != q:
            if q == '"' and s[j] == "\\" and j + 1 < len(s):
                out.append(s[j:j + 2])
                j += 2
                continue
            out.append(s[j])
            j += 1
        self.i = j + 1
        raw = "".join(out)
        if q == '"' and "\\" in raw:
            try:
                import tomllib
                return str(tomllib.loads(f'k = "{raw}"')["k"])
            except Exception:  # pragma: no cover - tomllib accepted the whole text
                return raw
        return raw

    # -------------------------------------------------------------- values
    def value(self, path: Path) -> None:
        self.skip_ws()
        c = self.peek()
        if c == "[":
            self.i += 1
            k = 0
            while True:
                self.skip_ws(newlines=True)
                if self.peek() == "]":
                    self.i += 1
                    return
                if not self.peek():
                    return
                self.record((*path, k), self.line())
                self.value((*path, k))
                k += 1
                self.skip_ws(newlines=True)
                if self.peek() == ",":
                    self.i += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip_ws(newlines=True)
                if self.peek() == "}":
                    self.i += 1
                    return
                if not self.peek():
                    return
                self.keyval(path)
                self.skip_ws(newlines=True)
                if self.peek() == ",":
                    self.i += 1
        elif c in ('"', "'"):
            self.string()
        else:
            m = _SCALAR_END.search(self.s, self.i)
            self.i = len(self.s) if m is None else m.start()

    def keyval(self, table: Path) -> None:
        line = self.line()
        parts = self.key()
        path = table
        for p in parts:
            path = (*path, p)
            self.record(path, line)
        self.skip_ws()
        if self.peek() == "=":
            self.i += 1
        self.value(path)

    # -------------------------------------------------------------- document
    def header_path(self, parts: list[str], array: bool) -> Path:
        resolved: list[int | str] = []
        for j, p in enumerate(parts):
            resolved.append(p)
            last = j == len(parts) - 1
            t = tuple(resolved)
            if last and array:
                n = self.aot.get(t, 0)
                self.aot[t] = n + 1
                resolved.append(n)
            elif t in self.aot:
                resolved.append(self.aot[t] - 1)
        return tuple(resolved)

    def document(self) -> dict[Path, int]:
        table: Path = ()
        n = len(self.s)
        while True:
            self.skip_ws(newlines=True)
            if self.i >= n:
                break
            line = self.line()
            if self.peek() == "[":
                array = self.peek(2) == "[["
                self.i += 2 if array else 1
                parts = self.key()
                self.skip_ws()
                self.i += 2 if array else 1
                table = self.header_path(parts, array)
                for k in range(1, len(table) + 1):
                    self.record(table[:k], line)
                # a header re-opened later (a sub-table after an array element) keeps
                # the first line for the prefix but the element line for itself
                self.lines[table] = self.lines.get(table, line)
            else:
                before = self.i
                self.keyval(table)
                if self.i == before:  # not TOML we understand: skip the line
                    j = self.s.find("\n", self.i)
                    self.i = n if j < 0 else j
        return self.lines


def locate(text: str) -> dict[Path, int]:
    """Map every key path and array element path in ``text`` to its (1-based) line."""
    return _Scanner(text).document()


def line_of(text: str | None, loc: Sequence[int | str],
            index: dict[Path, int] | None = None) -> int:
    """The line of ``loc`` in ``text``, or of its longest located prefix; 0 if unknown.

    Pass ``index`` (from :func:`locate`) to avoid rescanning the text for each lookup.
    """
    if text is None and index is None:
        return 0
    idx = index if index is not None else locate(text or "")
    t = tuple(loc)
    while t:
        if t in idx:
            return idx[t]
        t = t[:-1]
    return 0
