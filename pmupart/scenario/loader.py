"""Load a scenario TOML file into a :class:`~pmupart.sim.spec.ScenarioSpec`.

Two passes: pydantic checks the shape (:mod:`pmupart.scenario.schema`: types, unknown keys,
allowed values), then :func:`_Builder` checks the meaning (event names, durations, CPU lists
against the machine, references to workloads and host tasks, duplicates) and builds the
frozen spec.  Every error is a :class:`ScenarioError` naming the file, the line, the field
path and what was expected and found.  The format is documented in ``docs/scenario.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ValidationError

from pmupart.arch.cores import get_core
from pmupart.arch.events import Event, event_number
from pmupart.arch.policy import Policies
from pmupart.errors import InputError, suggest
from pmupart.host.kernel import HostCosts
from pmupart.host.topology import (
    PRESETS,
    Topology,
    TopologyError,
    cpulist,
    get_preset,
    load_topology,
    parse_cpulist,
)
from pmupart.kvm.options import KvmCosts
from pmupart.kvm.revision import CHOICES, revision_with
from pmupart.scenario import schema as S
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
from pmupart.tomlpos import Path as Loc
from pmupart.tomlpos import field_path, line_of, locate

__all__ = ["ScenarioError", "load_scenario", "load_scenario_text", "parse_duration"]


class ScenarioError(InputError):
    """A scenario file is malformed or inconsistent (``path:line: field: msg``; see
    :class:`pmupart.errors.InputError`)."""


# ---------------------------------------------------------------------- values
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s)\s*$")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_EVENT_NAMES = [e.name for e in Event]
DURATION_HELP = 'a duration with a unit ("2s", "1.5ms", "250us", "100ns")'


def parse_duration(text: str) -> int:
    """``"1.5ms"`` -> 1500000 (ns).  Units: ``s``, ``ms``, ``us`` (or ``µs``), ``ns``.
    ``ValueError`` for anything else or a fraction of a nanosecond."""
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"expected {DURATION_HELP}, found {_found(text)}")
    num, unit = m.group(1), m.group(2)
    whole, _, frac = num.partition(".")
    scale = _UNIT_NS[unit]
    ns = int(whole or "0") * scale
    if frac:
        digits = len(frac)
        f = int(frac) * scale
        if f % 10**digits:
            raise ValueError(f"expected a whole number of nanoseconds, found {_found(text)}")
        ns += f // 10**digits
    return ns


def format_duration(ns: int) -> str:
    """The shortest exact duration string for ``ns`` (the inverse of :func:`parse_duration`)."""
    for unit in ("s", "ms", "us"):
        if ns and ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    return f"{ns}ns"


def _found(v: Any) -> str:
    """A found value as TOML spells it, with its kind."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}" (a string)'
    if isinstance(v, int):
        return f"{v} (an integer)"
    if isinstance(v, float):
        return f"{v!r} (a float)"
    if isinstance(v, list):
        text = "[" + ", ".join(json.dumps(x) if isinstance(x, str | int | float) else "..."
                               for x in v) + "]"
        return text if len(text) <= 60 else "an array"
    if isinstance(v, dict):
        return "a table"
    return repr(v)


# ---------------------------------------------------------------------- pydantic errors
_HINTS = {
    "duration": DURATION_HELP, "slice": DURATION_HELP, "guest_tick": DURATION_HELP,
    "mux_interval": DURATION_HELP, "interval": DURATION_HELP,
    "affinity": 'a cpulist string ("0-3,6") or an array of CPU numbers',
    "vcpu_affinity": 'an array of cpulists (one per vCPU: ["0", "4-7"])',
    "set_pmu": 'a PMU name ("armv8_cortex_a76") or a perf type number',
    "events": 'an array of event names ("CPU_CYCLES") or numbers',
    "instructions": "a number of instructions (2000000000 or 2e9)",
}


def _members(ann: Any) -> list[Any]:
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        return [a for a in typing.get_args(ann) if a is not type(None)]
    return [ann]


def _tag(ann: Any) -> str:
    """pydantic's name for a union member in error locations (``str``, ``list[int]``)."""
    if isinstance(ann, type) and not typing.get_args(ann):
        return ann.__name__
    return str(ann).replace("typing.", "")


def _describe(ann: Any, name: str | int | None = None) -> str:
    if isinstance(name, str) and name in _HINTS:
        return _HINTS[name]
    ms = _members(ann)
    if len(ms) > 1:
        return " or ".join(_describe(m) for m in ms)
    a = ms[0]
    origin = typing.get_origin(a)
    if origin is Literal:
        return "one of " + ", ".join(f'"{v}"' for v in typing.get_args(a))
    if origin is list:
        return f"an array of {_describe(typing.get_args(a)[0]).removeprefix('a ')}s" \
            .replace("an integers", "integers").replace("an ", "")
    if origin is dict or (isinstance(a, type) and issubclass(a, BaseModel)):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        a, str(a))


def _walk(loc: Sequence[int | str], root: type[BaseModel] = S.ScenarioFile
          ) -> tuple[Loc, Any, str | int | None]:
    """Follow a pydantic error location through the schema ``root``: the TOML path (union
    member tags dropped), the annotation found there, and the last field name on the way."""
    ann: Any = root
    out: list[int | str] = []
    name: str | int | None = None
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        ms = _members(ann)
        if len(ms) > 1:
            hit = [m for m in ms if _tag(m) == part]
            if hit:
                ann = hit[0]
                i += 1
                continue
            ann = None
        a = ms[0] if len(ms) == 1 else ann
        origin = typing.get_origin(a)
        if isinstance(a, type) and issubclass(a, BaseModel):
            f = a.model_fields.get(str(part))
            ann = f.annotation if f is not None else None
            name = part
        elif origin is list:
            ann = typing.get_args(a)[0]
        elif origin is dict:
            ann = typing.get_args(a)[1]
            name = part
        else:
            ann = None
        out.append(part)
        i += 1
    return tuple(out), ann, name


def _model_at(loc: Loc, root: type[BaseModel] = S.ScenarioFile) -> type[BaseModel] | None:
    _, ann, _ = _walk(loc, root)
    for m in _members(ann):
        a = typing.get_args(m)[0] if typing.get_origin(m) is list else m
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def pydantic_message(err: Any, root: type[BaseModel] = S.ScenarioFile) -> tuple[Loc, str]:
    """One pydantic error (an item of ``ValidationError.errors()``) against the TOML schema
    ``root``: the TOML path and a message saying what was expected and what was found."""
    kind = err["type"]
    raw_loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        loc, _, _ = _walk(raw_loc, root)
        parent = _model_at(loc[:-1], root)
        key = str(loc[-1])
        allowed = list(parent.model_fields) if parent is not None else []
        msg = f"unknown key {key!r}{suggest(key, allowed)}; expected one of: {', '.join(allowed)}"
        if len(loc) >= 3 and isinstance(loc[-2], int):
            outer = _model_at(loc[:-3], root)
            if outer is not None and key in outer.model_fields:
                table = field_path(loc[:-2])
                msg += (f" ('{key}' is a key of [{field_path(loc[:-3])}]: keys after a "
                        f"[[{table}]] header belong to that {loc[-3]}; move it above the "
                        f"first [[{table}]])")
        return loc, msg
    loc, ann, name = _walk(raw_loc, root)
    if kind == "missing":
        if any(isinstance(m, type) and issubclass(m, BaseModel) for m in _members(ann)):
            return loc, f"required table [{field_path(loc)}] is missing"
        return loc, f"required key is missing (expected {_describe(ann, name)})"
    found = _found(err.get("input"))
    if kind == "literal_error":
        allowed = [str(a) for m in _members(ann) for a in typing.get_args(m)]
        value = str(err.get("input"))
        return loc, (f"expected one of {', '.join(repr(a) for a in allowed)}, found "
                     f"{found}{suggest(value, allowed)}")
    if kind.endswith("_type") or kind in ("union_tag_invalid", "model_attributes_type",
                                          "int_from_float", "bool_parsing"):
        return loc, f"expected {_describe(ann, name)}, found {found}"
    ctx = err.get("ctx") or {}
    bounds = {"greater_than_equal": (">=", "ge"), "less_than_equal": ("<=", "le"),
              "greater_than": (">", "gt"), "less_than": ("<", "lt")}
    if kind in bounds:
        op, key = bounds[kind]
        return loc, f"expected {_describe(ann, name)} {op} {ctx.get(key)}, found {found}"
    if kind == "too_short":
        return loc, f"expected at least {ctx.get('min_length')} item(s), found {found}"
    return loc, f"{err['msg'][0].lower()}{err['msg'][1:]}; found {found}"


def first_validation_error(e: ValidationError, text: str | None, index: dict[Loc, int],
                           root: type[BaseModel] = S.ScenarioFile) -> tuple[Loc, str]:
    """The first of ``e``'s errors in file order (its TOML path and message), with a count of
    the others; ``index`` is :func:`pmupart.tomlpos.locate` of ``text``."""
    seen: dict[Loc, str] = {}
    for loc, msg in (pydantic_message(err, root) for err in e.errors()):
        seen.setdefault(loc, msg)
    ordered = sorted(seen.items(), key=lambda kv: line_of(text, kv[0], index) or 1 << 30)
    loc, msg = ordered[0]
    if len(ordered) > 1:
        msg += f" (and {len(ordered) - 1} more error{'s' if len(ordered) > 2 else ''})"
    return loc, msg


# ---------------------------------------------------------------------- overrides
_OVERRIDE_RE = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]\"*]+?)\s*=\s*(.*)$", re.S)


def parse_override_path(text: str) -> list[int | str]:
    """``vm[0].perf.events[1]`` -> ``["vm", 0, "perf", "events", 1]`` (a ``--set`` path)."""
    out: list[int | str] = []
    for m in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", text):
        out.append(int(m.group(2)) if m.group(2) is not None else m.group(1).strip("\"'"))
    return out


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> set[Loc]:
    """Apply ``key.path=value`` overrides (values are TOML values; a bare word is a string)
    to the parsed file; return the paths they set."""
    done: set[Loc] = set()
    for ov in overrides:
        m = _OVERRIDE_RE.match(ov)
        if m is None:
            raise ScenarioError("--set", 0, ov, "expected key.path=value (kvm.hpmn_source="
                                "vm-pmu, vm[0].partition=false, scenario.duration=\"1s\")")
        path = parse_override_path(m.group(1))
        try:
            value = tomllib.loads(f"v = {m.group(2)}")["v"]
        except tomllib.TOMLDecodeError:
            value = m.group(2).strip()
        node: Any = data
        for j, part in enumerate(path[:-1]):
            nxt = path[j + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise ScenarioError("--set", 0, field_path(path[:j + 1]),
                                        "no such array element in the scenario")
                node = node[part]
            else:
                if not isinstance(node, dict):
                    raise ScenarioError("--set", 0, field_path(path[:j + 1]),
                                        "not a table in the scenario")
                node = node.setdefault(part, [] if isinstance(nxt, int) else {})
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ScenarioError("--set", 0, field_path(path), "no such array element")
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ScenarioError("--set", 0, field_path(path), "not a table in the scenario")
        done.add(tuple(path))
    return done


# ---------------------------------------------------------------------- public API
def load_scenario(path: str | Path, *, overrides: Sequence[str] = ()) -> ScenarioSpec:
    """Load and check the scenario file ``path``.

    ``overrides`` are ``key.path=value`` strings applied before checking, as
    ``pmupart run --set`` gives them (``kvm.hpmn_source=vm-pmu``, ``vm[0].nr_counters=2``,
    ``scenario.duration="200ms"``).  Raises :class:`ScenarioError`.
    """
    p = Path(path)
    text = read_input(p, ScenarioError, "the scenario")
    return load_scenario_text(text, source=str(p), overrides=overrides, base_dir=p.parent)


def read_input(path: Path, error: type[InputError], what: str) -> str:
    """The UTF-8 text of input file ``path``, or ``error`` saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(str(path), 0, "", f"cannot read {what}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise error(str(path), 0, "", f"not UTF-8 text: {e}") from None


def parse_toml(text: str, source: str, error: type[InputError]) -> dict[str, Any]:
    """``text`` parsed, or ``error`` at the line ``tomllib`` names."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise error(source, 0, "", "not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else 0
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise error(source, line, "", f"not valid TOML: {msg}") from None


def load_scenario_text(text: str, source: str = "<text>", *, overrides: Sequence[str] = (),
                       base_dir: str | Path | None = None) -> ScenarioSpec:
    """Load and check scenario TOML ``text``; ``source`` names it in errors and in the spec.
    ``base_dir`` resolves a relative ``machine.file`` (default: the current directory)."""
    data = parse_toml(text, source, ScenarioError)
    try:
        return _load_data(data, text, source, overrides, Path(base_dir) if base_dir else None)
    except RecursionError:
        raise ScenarioError(source, 0, "", "not valid TOML: nested too deeply") from None


def load_scenario_mapping(data: Mapping[str, Any], source: str = "<mapping>", *,
                          overrides: Sequence[str] = (),
                          base_dir: str | Path | None = None) -> ScenarioSpec:
    """Check and build a scenario from an already parsed mapping (no line numbers).
    ``overrides`` as :func:`load_scenario` (applied to a copy: ``data`` is not changed)."""
    import copy

    return _load_data(copy.deepcopy(dict(data)), None, source, overrides,
                      Path(base_dir) if base_dir else None)


def _load_data(data: dict[str, Any], text: str | None, source: str,
               overrides: Sequence[str], base_dir: Path | None) -> ScenarioSpec:
    index = locate(text) if text is not None else {}
    overridden = _apply_overrides(data, overrides) if overrides else set()

    def error(loc: Loc, msg: str) -> ScenarioError:
        for k in range(len(loc), 0, -1):
            if loc[:k] in overridden:
                return ScenarioError(f"{source} (--set {field_path(loc[:k])})", 0,
                                     field_path(loc), msg)
        return ScenarioError(source, line_of(text, loc, index), field_path(loc), msg)

    bad = _first_bad_value(data)
    if bad is not None:
        raise error(*bad)
    try:
        f = S.ScenarioFile.model_validate(data)
    except ValidationError as e:
        raise error(*first_validation_error(e, text, index)) from None
    return _Builder(f, source, error, base_dir).build()


#: the longest duration a scenario may ask for: one hour of simulated time (about an hour of
#: wall time on the reference host; longer is a typo, not a plan)
MAX_DURATION_NS = 3600 * 10**9

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _first_bad_value(data: Any, loc: Loc = ()) -> tuple[Loc, str] | None:
    """The first value no field accepts, whatever its type: a float that is not finite
    (``nan``, ``inf``: TOML allows them), a NUL or control character in a string or a key
    (names end up in reports, traces and CSV), a tab or newline in a name."""
    if isinstance(data, float) and not math.isfinite(data):
        return loc, f"expected a finite number, found {data!r}"
    if isinstance(data, str):
        rx = _NAME_CONTROL if loc and loc[-1] == "name" else _CONTROL
        m = rx.search(data)
        if m:
            return loc, (f"expected printable text, found a control character "
                         f"{m.group()!r} in {data!r}")
        return None
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(k, str) and _NAME_CONTROL.search(k):
                return (*loc, k), f"expected a printable key, found {k!r}"
            found = _first_bad_value(v, (*loc, k))
            if found is not None:
                return found
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found = _first_bad_value(v, (*loc, i))
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------- meaning
_TOPOLOGY_FIELD = re.compile(r"([A-Za-z_][\w-]*)|\[(\d+)\]")


class _Builder:
    def __init__(self, f: S.ScenarioFile, source: str, error: Any,
                 base_dir: Path | None) -> None:
        self.f = f
        self.source = source
        self._error = error
        self.base_dir = base_dir
        self.topology: Topology | None = None

    def fail(self, loc: Loc, msg: str) -> NoReturn:
        raise self._error(loc, msg)

    # ------------------------------------------------------------- pieces
    def duration(self, loc: Loc, text: str, *, positive: bool = True) -> int:
        try:
            ns = parse_duration(text)
        except ValueError as e:
            self.fail(loc, str(e))
        if positive and ns <= 0:
            self.fail(loc, f"expected a duration above zero, found {_found(text)}")
        if ns > MAX_DURATION_NS:
            self.fail(loc, f"expected at most {MAX_DURATION_NS // 10**9} s (one hour of "
                      f"simulated time), found {_found(text)}")
        return ns

    def event(self, loc: Loc, ev: str | int) -> int:
        try:
            return event_number(ev)
        except ValueError as e:
            if isinstance(ev, str):
                self.fail(loc, f"unknown event {ev!r}{suggest(ev.strip().upper(), _EVENT_NAMES)}"
                          "; expected an architected mnemonic (CPU_CYCLES, INST_RETIRED, ...),"
                          " \"0x11\" or a number")
            self.fail(loc, str(e))

    def cpus(self, loc: Loc, spec: str | list[int]) -> tuple[int, ...]:
        assert self.topology is not None
        if isinstance(spec, str):
            try:
                cpus = parse_cpulist(spec)
            except ValueError as e:
                why = f" ({e})" if "backwards" in str(e) else ""
                self.fail(loc, f"expected a cpulist such as \"0-3,6\", found {_found(spec)}{why}")
        else:
            cpus = tuple(sorted(set(spec)))
        if not cpus:
            self.fail(loc, "expected at least one CPU, found none")
        have = set(self.topology.cpus)
        bad = [c for c in cpus if c not in have]
        if bad:
            self.fail(loc, f"CPU {bad[0]} is not in machine {self.topology.name!r} "
                      f"(CPUs {cpulist(sorted(have))}); found {_found(spec)}")
        return cpus

    # ------------------------------------------------------------- machine
    def machine(self) -> dict[str, Any]:
        m = self.f.machine
        given = [k for k in ("preset", "file", "cluster") if getattr(m, k) is not None]
        if len(given) != 1:
            what = ("none of them" if not given else
                    "both " + " and ".join(repr(g) for g in given))
            self.fail(("machine",), f"expected exactly one of 'preset' (a named machine), "
                      f"'file' (a topology TOML) or [[machine.cluster]] (a custom layout), "
                      f"found {what}")
        if m.cluster is None:
            for k in ("name", "firmware", "pmu_type_base", "pmu_order"):
                if getattr(m, k) is not None:
                    self.fail(("machine", k), f"'{k}' describes a custom layout; it needs "
                              f"[[machine.cluster]] tables, found '{given[0]}' instead")
        if m.preset is not None:
            try:
                self.topology = get_preset(m.preset)
            except ValueError as e:
                self.fail(("machine", "preset"), str(e).replace("unknown preset",
                                                                "expected a preset name, found"))
        elif m.file is not None:
            p = Path(m.file)
            if not p.is_absolute() and self.base_dir is not None:
                p = self.base_dir / p
            try:
                self.topology = load_topology(p)
            except TopologyError as e:
                self.fail(("machine", "file"), f"in {e}")
            except OSError as e:
                self.fail(("machine", "file"), f"cannot read topology {str(p)!r}: "
                          f"{e.strerror or e}")
        else:
            assert m.cluster is not None
            mapping: dict[str, Any] = {"cluster": [c.model_dump(exclude_none=True)
                                                   for c in m.cluster]}
            for k in ("name", "firmware", "pmu_type_base", "pmu_order"):
                v = getattr(m, k)
                if v is not None:
                    mapping[k] = v
            try:
                self.topology = Topology.from_mapping(mapping, source=self.source)
            except TopologyError as e:
                loc: list[int | str] = ["machine"]
                for mm in _TOPOLOGY_FIELD.finditer(e.field):
                    loc.append(int(mm.group(2)) if mm.group(2) is not None else mm.group(1))
                self.fail(tuple(loc), e.msg)
        r = m.reserved_host_counters
        if r is not None and r >= 0:
            for pmu in sorted(self.topology.pmus(), key=lambda x: (x.num_counters, x.name)):
                if r > pmu.num_counters:
                    self.fail(("machine", "reserved_host_counters"), f"expected at most "
                              f"{pmu.num_counters} (PMU {pmu.name} has {pmu.num_counters} "
                              f"counters: PMCR_EL0.N), found {r}")
        mux_ns = self.duration(("machine", "mux_interval"), m.mux_interval)
        if mux_ns % 1_000_000:
            self.fail(("machine", "mux_interval"), "expected whole milliseconds (the kernel's "
                      f"perf_event_mux_interval_ms), found {_found(m.mux_interval)}")
        kv = typing.cast(Any, self.f.kvm)  # a generated model (schema._revision_model)
        # [kvm] revision plus single-choice overrides (pmupart.kvm.revision); the schema
        # already checked each value against its enum.
        overrides = {c: getattr(kv, c) for c in CHOICES if getattr(kv, c) is not None}
        opts = revision_with(kv.revision, **overrides)
        kvm_costs = typing.cast(BaseModel, kv.costs).model_dump(exclude_none=True)
        host_costs = typing.cast(BaseModel, self.f.host.costs).model_dump(exclude_none=True)
        return {
            "reserved_host_counters": m.reserved_host_counters,
            "reservation": m.reservation,
            "alloc_order": m.alloc_order,
            "mux_interval_ms": mux_ns // 1_000_000,
            "kvm_options": opts,
            "kvm_costs": KvmCosts(**kvm_costs),
            "host_costs": HostCosts(**host_costs),
            "policies": self.policies(),
        }

    def policies(self) -> Policies:
        known = {f.name: getattr(Policies(), f.name) for f in dataclasses.fields(Policies)}
        for key, v in self.f.policies.items():
            loc = ("policies", key)
            if key not in known:
                self.fail(loc, f"unknown policy {key!r}{suggest(key, known)}; expected one of: "
                          f"{', '.join(known)}")
            default = known[key]
            if isinstance(default, Enum):
                allowed = [str(e.value) for e in type(default)]
                if not isinstance(v, str) or v not in allowed:
                    sug = suggest(v, allowed) if isinstance(v, str) else ""
                    self.fail(loc, f"expected one of {', '.join(repr(a) for a in allowed)}, "
                              f"found {_found(v)}{sug}")
            elif isinstance(default, bool):
                if not isinstance(v, bool):
                    self.fail(loc, f"expected true or false, found {_found(v)}")
            elif isinstance(default, int) and (isinstance(v, bool) or not isinstance(v, int)):
                self.fail(loc, f"expected an integer, found {_found(v)}")
        return Policies.from_mapping(dict(self.f.policies))

    # ------------------------------------------------------------- workloads
    def rates(self, loc: Loc, rates: Mapping[str, float]) -> dict[int, float]:
        out: dict[int, float] = {}
        for name, r in rates.items():
            ev = self.event((*loc, name), name)
            if r < 0:
                self.fail((*loc, name), f"expected a rate >= 0 (events per instruction), "
                          f"found {r!r}")
            out[ev] = float(r)
        return out

    def core_rates(self, loc: Loc, table: Mapping[str, Mapping[str, float]]
                   ) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, rates in table.items():
            try:
                key = get_core(name).name
            except ValueError as e:
                self.fail((*loc, name), f"{e}".replace("unknown core", "expected a core name, "
                                                       "found"))
            out[key] = self.rates((*loc, name), rates)
        return out

    def cpi(self, loc: Loc, cpi: Mapping[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, v in cpi.items():
            if name == "*":
                key = "*"
            else:
                try:
                    key = get_core(name).name
                except ValueError as e:
                    self.fail((*loc, name), f"{e}".replace("unknown core", "expected a core "
                                                           "name or \"*\", found"))
            if v <= 0:
                self.fail((*loc, name), f"expected a CPI above zero, found {v!r}")
            out[key] = float(v)
        return out

    def workloads(self) -> dict[str, Workload]:
        out: dict[str, Workload] = {}
        for name, w in self.f.workload.items():
            loc: Loc = ("workload", name)
            rates = self.rates((*loc, "rates"), w.rates)
            cpi = self.cpi((*loc, "cpi"), w.cpi)
            crates = self.core_rates((*loc, "core_rates"), w.core_rates)
            phases: list[Phase] = []
            for i, p in enumerate(w.phase):
                ploc = (*loc, "phase", i)
                dur = None
                if p.duration is not None:
                    dur = self.duration((*ploc, "duration"), p.duration)
                elif i != len(w.phase) - 1:
                    self.fail((*ploc, "duration"), "required key is missing (only the last "
                              f"phase may run on without a duration; expected {DURATION_HELP})")
                pr = dict(rates)
                pr.update(self.rates((*ploc, "rates"), p.rates or {}))
                pc = dict(cpi)
                pc.update(self.cpi((*ploc, "cpi"), p.cpi or {}))
                kf = w.kernel_fraction if p.kernel_fraction is None else p.kernel_fraction
                pcr = {k: dict(v) for k, v in crates.items()}
                for core, over in self.core_rates((*ploc, "core_rates"),
                                                  p.core_rates or {}).items():
                    pcr.setdefault(core, {}).update(over)
                phases.append(Phase(dur, tuple(sorted(pr.items())), tuple(sorted(pc.items())),
                                    kf, _core_rates(pcr)))
            if not phases:
                phases.append(Phase(None, tuple(sorted(rates.items())),
                                    tuple(sorted(cpi.items())), w.kernel_fraction,
                                    _core_rates(crates)))
            instr: int | None = None
            if w.instructions is not None:
                v = w.instructions
                if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()) or v <= 0:
                    self.fail((*loc, "instructions"), f"expected a whole number of "
                              f"instructions above zero, found {_found(v)}")
                instr = int(v)
            out[name] = Workload(name, tuple(phases), instr, ctx_switch_hz=w.ctx_switch_hz)
        return out

    def program(self, loc: Loc, ref: str) -> str:
        """A guest program: an existing ``.S`` file or ``.elf`` image (relative to the
        scenario) or a Python ``module:function`` that imports."""
        if ref.endswith((".S", ".s", ".elf")):
            base = self.base_dir if self.base_dir is not None else Path(".")
            p = Path(ref) if Path(ref).is_absolute() else base / ref
            what = "an ELF image" if ref.endswith(".elf") else "an AArch64 assembly file"
            if not p.is_file():
                self.fail(loc, f"expected {what}, found no file {str(p)!r}")
            if what != "an ELF image":
                try:
                    p.read_text(encoding="utf-8")
                except UnicodeDecodeError as e:
                    self.fail(loc, f"expected UTF-8 assembly text in {str(p)!r}, found "
                              f"{e.reason} at byte {e.start}")
                except OSError as e:
                    self.fail(loc, f"cannot read {str(p)!r}: {e.strerror or e}")
            import importlib.util
            if importlib.util.find_spec("unicorn") is None:
                from pmupart.errors import GUEST_EXTRA_HINT
                self.fail(loc, f"an AArch64 guest program needs the emulator: "
                          f"{GUEST_EXTRA_HINT}")
            return str(p)
        mod, _, attr = ref.partition(":")
        if not mod or not attr:
            self.fail(loc, f"expected a .S file, an .elf image or a Python 'module:function', "
                      f"found {ref!r}")
        try:
            import importlib
            obj = getattr(importlib.import_module(mod), attr, None)
        except Exception as e:  # the user's module: ImportError, or anything it raises
            self.fail(loc, f"expected an importable module, found {mod!r} "
                      f"({type(e).__name__}: {e})")
        if not callable(obj):
            self.fail(loc, f"expected {attr!r} in {mod!r} to be a guest program (a callable "
                      f"taking the guest CPU), found {obj!r}")
        import inspect
        try:
            inspect.signature(obj).bind(object())
        except TypeError as e:
            self.fail(loc, f"expected {attr!r} in {mod!r} to take one argument (the guest "
                      f"CPU), found a callable that cannot: {e}")
        except ValueError:
            pass  # no signature to inspect (a builtin): it is called as it is
        return ref

    def workload_ref(self, loc: Loc, name: str, defined: Mapping[str, Workload]) -> str:
        if name != "idle" and name not in defined:
            names = sorted(set(defined) | {"idle"})
            self.fail(loc, f"workload {name!r} is not defined{suggest(name, names)}; defined: "
                      f"{', '.join(names)} (add a [workload.{name}] table)")
        return name

    # ------------------------------------------------------------- perf
    def perf(self, loc: Loc, p: S.GuestPerfTable, scope: str = "system") -> PerfSession:
        events = tuple(self.event((*loc, "events", i), e) for i, e in enumerate(p.events))
        if p.mode == "record":
            if p.freq is None and p.period is None:
                self.fail((*loc, "freq"), "perf record needs 'freq' (samples per second, as "
                          "-F) or 'period' (events per sample, as -c); found neither")
            if p.freq is not None and p.period is not None:
                self.fail((*loc, "period"), "expected one of 'freq' or 'period', found both")
            from pmupart.sim.limits import MIN_PERIOD
            rate = self.f.host.perf_event_max_sample_rate
            if p.freq is not None and p.freq > rate:
                # perf_event_open() refuses it with EINVAL (kernel/events/core.c)
                self.fail((*loc, "freq"), f"expected at most perf_event_max_sample_rate = "
                          f"{rate} samples per second (as perf_event_open refuses more; "
                          f"[host] perf_event_max_sample_rate sets it), found {p.freq}")
            if p.period is not None and p.period < MIN_PERIOD:
                self.fail((*loc, "period"), f"expected a period of at least {MIN_PERIOD} "
                          f"events (every sample is simulated; smaller periods take hours), "
                          f"found {p.period}")
        else:
            for k in ("freq", "period"):
                if getattr(p, k) is not None:
                    self.fail((*loc, k), f"'{k}' is for mode = \"record\"; found mode = "
                              "\"stat\" (counting)")
        return PerfSession(events, PerfMode(p.mode), freq=p.freq or 0, period=p.period or 0,
                           scope=scope, exclude_user=p.exclude_user,
                           exclude_kernel=p.exclude_kernel, exclude_guest=p.exclude_guest,
                           exclude_host=p.exclude_host, pinned=p.pinned)

    def filters(self, loc: Loc, fs: Sequence[S.FilterTable]) -> tuple[EventFilterSpec, ...]:
        out: list[EventFilterSpec] = []
        for i, ft in enumerate(fs):
            floc = (*loc, i)
            if ft.events is not None:
                if ft.base is not None or ft.nevents is not None:
                    self.fail(floc, "expected either 'events' (a list) or 'base' and "
                              "'nevents' (a range), found both")
                if not ft.events:
                    self.fail((*floc, "events"), "expected at least one event, found []")
                for j, e in enumerate(ft.events):
                    out.append(EventFilterSpec(ft.action, self.event((*floc, "events", j), e),
                                               1))
            elif ft.base is not None:
                base = self.event((*floc, "base"), ft.base)
                n = ft.nevents if ft.nevents is not None else 1
                if base + n > 0x10000:
                    self.fail((*floc, "nevents"), f"the range {base:#x}+{n} runs past event "
                              "0xffff")
                out.append(EventFilterSpec(ft.action, base, n))
            else:
                self.fail(floc, "expected 'events' (a list) or 'base' (and 'nevents'), found "
                          "neither")
        return tuple(out)

    # ------------------------------------------------------------- whole
    def build(self) -> ScenarioSpec:
        f = self.f
        sc = f.scenario
        duration = self.duration(("scenario", "duration"), sc.duration)
        slice_ns = self.duration(("scenario", "slice"), sc.slice)
        tick = self.duration(("scenario", "guest_tick"), sc.guest_tick)
        options = self.machine()
        assert self.topology is not None
        wls = self.workloads()

        tasks: list[HostTaskSpec] = []
        task_names: dict[str, int] = {}
        for i, t in enumerate(f.host.task):
            loc: Loc = ("host", "task", i)
            if t.name in task_names:
                self.fail((*loc, "name"), f"duplicate host task name {t.name!r} "
                          f"(host.task[{task_names[t.name]}] has it already)")
            task_names[t.name] = i
            aff = self.cpus((*loc, "affinity"), t.affinity) if t.affinity is not None else None
            tasks.append(HostTaskSpec(t.name, t.count, aff,
                                      self.workload_ref((*loc, "workload"), t.workload, wls)))

        host_perf: list[PerfSession] = []
        for i, hp in enumerate(f.host.perf):
            loc = ("host", "perf", i)
            scope = hp.scope
            if scope != "system":
                kind, _, name = scope.partition(":")
                if kind != "task" or not name:
                    self.fail((*loc, "scope"), f"expected \"system\" (perf -a) or "
                              f"\"task:<name>\" (perf -p, a [[host.task]]), found \"{scope}\"")
                if name not in task_names:
                    self.fail((*loc, "scope"), f"host task {name!r} is not defined"
                              f"{suggest(name, task_names)}; defined: "
                              f"{', '.join(task_names) or 'none'}")
            if hp.task:
                self.fail((*loc, "task"), "'task' is for a guest's perf session; a host "
                          "session says scope = \"task:<name>\"")
            host_perf.append(self.perf(loc, hp, scope))

        vms: list[VmSpec] = []
        vm_names: dict[str, int] = {}
        pmu_names = [p.name for p in self.topology.pmus()]
        for i, v in enumerate(f.vm):
            loc = ("vm", i)
            if v.name in vm_names:
                self.fail((*loc, "name"), f"duplicate VM name {v.name!r} "
                          f"(vm[{vm_names[v.name]}] has it already)")
            vm_names[v.name] = i
            if isinstance(v.set_pmu, str) and v.set_pmu not in pmu_names:
                self.fail((*loc, "set_pmu"), f"expected a PMU of machine "
                          f"{self.topology.name!r} ({', '.join(pmu_names)}), found "
                          f"\"{v.set_pmu}\"{suggest(v.set_pmu, pmu_names)}")
            if not v.pmu:
                for key, val in (("partition", v.partition), ("set_pmu", v.set_pmu),
                                 ("nr_counters", v.nr_counters), ("filter", v.filter),
                                 ("perf", v.perf)):
                    if val:
                        self.fail((*loc, key), f"'{key}' needs the vCPU PMU; found pmu = "
                                  "false in this VM")
            aff = self.cpus((*loc, "affinity"), v.affinity) if v.affinity is not None else None
            if len(v.vcpu_affinity) > v.vcpus:
                self.fail((*loc, "vcpu_affinity"), f"expected at most {v.vcpus} entries (one "
                          f"per vCPU), found {len(v.vcpu_affinity)}")
            vaff = tuple(self.cpus((*loc, "vcpu_affinity", j), a)
                         for j, a in enumerate(v.vcpu_affinity))
            perf = self.perf((*loc, "perf"), v.perf,
                             f"task:{v.workload}" if v.perf.task else "system") \
                if v.perf is not None else None
            program = self.program((*loc, "program"), v.program) if v.program else None
            if v.init_cpu >= len(self.topology.cpus):
                self.fail((*loc, "init_cpu"), f"expected a CPU of machine "
                          f"{self.topology.name!r} (0..{len(self.topology.cpus) - 1}), found "
                          f"{v.init_cpu}")
            vms.append(VmSpec(
                name=v.name, vcpus=v.vcpus, pmu=v.pmu, irqchip=v.irqchip, irq=v.irq,
                partition=v.partition, set_pmu=v.set_pmu, nr_counters=v.nr_counters,
                filters=self.filters((*loc, "filter"), v.filter), affinity=aff,
                vcpu_affinity=vaff,
                workload=self.workload_ref((*loc, "workload"), v.workload, wls), perf=perf,
                program=program, init_cpu=v.init_cpu, pmu_strict=v.pmu_strict))

        mg = f.migration
        migration = MigrationSpec(MigrationPolicy(mg.policy),
                                  self.duration(("migration", "interval"), mg.interval),
                                  mg.host_tasks)
        return ScenarioSpec(
            name=sc.name, machine=self.topology, duration_ns=duration, seed=sc.seed,
            slice_ns=slice_ns, guest_tick_ns=tick, description=sc.description,
            perf_event_max_sample_rate=f.host.perf_event_max_sample_rate,
            machine_options=options, vms=tuple(vms), host_tasks=tuple(tasks),
            host_perf=tuple(host_perf), workloads=wls, migration=migration, source=self.source)


def _core_rates(table: Mapping[str, Mapping[int, float]]
                ) -> tuple[tuple[str, tuple[tuple[int, float], ...]], ...]:
    return tuple(sorted((core, tuple(sorted(r.items()))) for core, r in table.items()))


def preset_name(topology: Topology) -> str | None:
    """The preset name if ``topology`` is exactly a preset, else None."""
    p = PRESETS.get(topology.name)
    return topology.name if p is not None and p == topology else None

