"""The register table: every modelled system register, defined once as data.

The table lives in ``sysreg.txt`` beside this file, in a grammar modelled on the
kernel's ``arch/arm64/tools/sysreg``.  This module is its validating loader (the
checks ``gen-sysreg.awk`` makes: fields from bit 63 down to 0 with no gap or
overlap, within 0..63, enum values that fit their field, block nesting), the
lookups by name and by encoding, immutable field views and decoding to text::

    >>> from pmupart.arch.sysreg import view, decode
    >>> v = view("MDCR_EL2", 0x20084)
    >>> v.HPMN, v.HPME, v.HPMD
    (4, 1, 1)
    >>> decode("MDCR_EL2", 0x20084)
    'HPMD|HPME|HPMN=4'
    >>> decode("MDCR_EL2", v.replace(HPMN=3).value)
    'HPMD|HPME|HPMN=3'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

from pmupart.errors import SysregTableError, suggest

FieldKind = Literal["field", "res0", "res1", "unkn"]
MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One field (or reserved span) of a register."""

    name: str
    msb: int
    lsb: int
    kind: FieldKind = "field"
    access: str = "RW"  # RW, RO, WO, RAZ, WI, W1S, W1C
    feature: str | None = None
    reset: int = 0
    enums: tuple[tuple[int, str], ...] = ()

    @property
    def width(self) -> int:
        return self.msb - self.lsb + 1

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    def get(self, value: int) -> int:
        return (value >> self.lsb) & ((1 << self.width) - 1)

    def enum_name(self, v: int) -> str | None:
        for ev, en in self.enums:
            if ev == v:
                return en
        return None


@dataclass(frozen=True, slots=True)
class UserEn:
    """PMUSERENR_EL0 bits that grant an EL0 access (spec §8.3; ARM §D13.11.3); empty
    means never."""

    read: frozenset[str]
    write: frozenset[str]


@dataclass(frozen=True, slots=True)
class RegDef:
    """A system register: encoding, fields and the access-control attributes of spec §8 (ARM
    §D24.5 accessors)."""

    name: str
    op0: int
    op1: int
    crn: int
    crm: int
    op2: int
    fields: tuple[FieldDef, ...]
    feature: str | None = None
    access: Literal["RW", "RO", "WO"] = "RW"
    min_el: int = 0
    min_el_write: int = 0
    reset: int = 0
    user_en: UserEn | None = None
    fgt: str | None = None
    fgt2: str | None = None
    tpm_read: bool = False
    tpm_write: bool = False
    tpmcr: bool = False
    counter: Literal["n", "sel"] | None = None
    index: int | None = None  # n for a member of a <n> family
    family: str | None = None  # "PMEVCNTR<n>_EL0" for members of a family
    line: int = 0

    @property
    def encoding(self) -> tuple[int, int, int, int, int]:
        return (self.op0, self.op1, self.crn, self.crm, self.op2)

    @property
    def s_name(self) -> str:
        """The assembler's generic name, ``S3_4_C1_C1_1``."""
        return f"S{self.op0}_{self.op1}_C{self.crn}_C{self.crm}_{self.op2}"

    def field(self, name: str) -> FieldDef:
        for f in self.fields:
            if f.kind == "field" and f.name == name:
                return f
        names = [f.name for f in self.fields if f.kind == "field"]
        raise ValueError(
            f"register {self.name} has no field {name!r}{suggest(name, names)}; "
            f"its fields are {', '.join(names)}"
        )

    def named_fields(self) -> tuple[FieldDef, ...]:
        return tuple(f for f in self.fields if f.kind == "field")

    def res1_mask(self) -> int:
        m = 0
        for f in self.fields:
            if f.kind == "res1":
                m |= f.mask
        return m

    def feature_mask(self, features: frozenset[str]) -> int:
        """Bits of named fields that exist with ``features`` (absent features: RES0)."""
        m = 0
        for f in self.fields:
            if f.kind == "field" and (f.feature is None or f.feature in features):
                m |= f.mask
        return m


# --------------------------------------------------------------------------- loader

_SYSREG_RE = re.compile(r"^Sysreg\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)$")
_BITS_RE = re.compile(r"^(\d+)(?::(\d+))?$")
_ACCESS_KINDS = {"RW", "RO", "WO", "RAZ", "WI", "W1S", "W1C"}
_USERENR_BITS = {"EN", "ER", "CR", "SW", "UEN", "ALL"}


def _eval_expr(expr: str, n: int, path: str, line: int) -> int:
    """Evaluate an encoding expression: an int, or ``B+n/8`` / ``n%8`` (integer ops)."""
    m = re.fullmatch(r"(?:(\d+)\+)?n([/%])(\d+)", expr)
    if m:
        base = int(m.group(1) or 0)
        d = int(m.group(3))
        return base + (n // d if m.group(2) == "/" else n % d)
    if expr.isdigit():
        return int(expr)
    raise SysregTableError(path, line, f"encoding expression must be N, B+n/D or n%D, not {expr!r}")


def _parse_bits(tok: str, path: str, line: int) -> tuple[int, int]:
    m = _BITS_RE.match(tok)
    if not m:
        raise SysregTableError(path, line, f"bit range must be <msb>[:<lsb>], not {tok!r}")
    msb = int(m.group(1))
    lsb = int(m.group(2)) if m.group(2) is not None else msb
    if not (0 <= lsb <= msb <= 63):
        raise SysregTableError(path, line, f"bit range {tok} must lie within 63..0, msb >= lsb")
    return msb, lsb


@dataclass
class _Block:
    name: str
    args: tuple[str, ...]
    line: int
    fields: list[FieldDef] = field(default_factory=list)
    attrs: dict[str, object] = field(default_factory=dict)
    next_bit: int = 63


def _check_new_field(blk: _Block, name: str, path: str, line: int) -> None:
    if any(f.kind == "field" and f.name == name for f in blk.fields):
        raise SysregTableError(path, line, f"{blk.name}: field {name} defined twice")


def parse_table(text: str, path: str = "sysreg.txt") -> tuple[RegDef, ...]:
    """Parse and validate a register table; raise :class:`SysregTableError` on any fault."""
    regs: list[RegDef] = []
    blk: _Block | None = None
    enum: tuple[str, int, int, str | None, str, list[tuple[int, str]]] | None = None

    def add_span(kind: FieldKind, toks: list[str], ln: int, **kw: object) -> None:
        assert blk is not None
        msb, lsb = _parse_bits(toks[0], path, ln)
        if msb != blk.next_bit:
            raise SysregTableError(
                path, ln, f"{blk.name}: field starts at bit {msb}, not {blk.next_bit} "
                "(fields go from bit 63 down with no gap or overlap)")
        blk.next_bit = lsb - 1
        name = toks[1] if kind == "field" else kind.upper()
        if kind == "field":
            _check_new_field(blk, name, path, ln)
        blk.fields.append(FieldDef(name, msb, lsb, kind, **kw))  # type: ignore[arg-type]

    for ln, raw in enumerate(text.splitlines(), start=1):
        s = raw.split("#", 1)[0].strip()
        if not s:
            continue
        toks = s.split()
        kw = toks[0]
        if enum is not None:
            if kw == "EndEnum":
                ename, msb, lsb, feat, acc, vals = enum
                assert blk is not None
                if msb != blk.next_bit:
                    raise SysregTableError(path, ln, f"{blk.name}: enum {ename} starts at bit "
                                           f"{msb}, not {blk.next_bit}")
                blk.next_bit = lsb - 1
                _check_new_field(blk, ename, path, ln)
                blk.fields.append(FieldDef(ename, msb, lsb, "field", acc, feat, 0, tuple(vals)))
                enum = None
                continue
            if len(toks) != 2 or not toks[0].startswith("0b"):
                raise SysregTableError(path, ln, f"enum value must be '0b<bits> NAME', not {s!r}")
            v = int(toks[0][2:], 2)
            ename, msb, lsb = enum[0], enum[1], enum[2]
            if v >= 1 << (msb - lsb + 1):
                raise SysregTableError(path, ln, f"enum value {toks[0]} of {ename} does not fit "
                                       f"in {msb - lsb + 1} bits")
            enum[5].append((v, toks[1]))
            continue
        if kw == "Sysreg":
            if blk is not None:
                raise SysregTableError(path, ln, f"Sysreg inside {blk.name} (missing EndSysreg)")
            m = _SYSREG_RE.match(s)
            if not m:
                raise SysregTableError(path, ln, "expected 'Sysreg NAME op0 op1 CRn CRm op2'")
            blk = _Block(m.group(1), tuple(m.groups()[1:]), ln)
            continue
        if blk is None:
            raise SysregTableError(path, ln, f"{kw!r} outside a Sysreg block")
        if kw == "EndSysreg":
            if blk.next_bit != -1:
                raise SysregTableError(path, ln, f"{blk.name}: bits {blk.next_bit}:0 unspecified")
            regs.extend(_finish(blk, path))
            blk = None
        elif kw in ("Res0", "Res1", "Unkn"):
            add_span(kw.lower(), [*toks[1:], ""], ln)  # type: ignore[arg-type]
        elif kw == "Field":
            if len(toks) < 3:
                raise SysregTableError(path, ln, "expected 'Field <bits> NAME [opts]'")
            acc, feat, reset = "RW", None, 0
            for opt in toks[3:]:
                if opt in _ACCESS_KINDS:
                    acc = opt
                elif opt.startswith("FEAT_"):
                    feat = opt
                elif opt.startswith("reset="):
                    reset = int(opt[6:], 0)
                else:
                    raise SysregTableError(path, ln, f"unknown field option {opt!r}")
            add_span("field", toks[1:3], ln, access=acc, feature=feat, reset=reset)
        elif kw == "Enum":
            msb, lsb = _parse_bits(toks[1], path, ln)
            feat = next((t for t in toks[3:] if t.startswith("FEAT_")), None)
            acc = next((t for t in toks[3:] if t in _ACCESS_KINDS), "RW")
            enum = (toks[2], msb, lsb, feat, acc, [])
        elif kw in ("Index", "Feature", "Access", "MinEL", "Reset", "UserEn", "Fgt", "Fgt2",
                    "Tpm", "Tpmcr", "Counter"):
            blk.attrs[kw] = (toks[1:], ln)
        else:
            raise SysregTableError(path, ln, f"unknown directive {kw!r}")
    if blk is not None:
        raise SysregTableError(path, blk.line, f"{blk.name}: missing EndSysreg")
    _check_unique(regs, path)
    return tuple(regs)


def _finish(blk: _Block, path: str) -> list[RegDef]:
    a = blk.attrs

    def arg(key: str) -> list[str] | None:
        v = a.get(key)
        return None if v is None else v[0]  # type: ignore[index]

    kw: dict[str, object] = {}
    if (f := arg("Feature")) is not None:
        kw["feature"] = f[0]
    if (acc := arg("Access")) is not None:
        if acc[0] not in ("RW", "RO", "WO"):
            raise SysregTableError(path, blk.line, f"{blk.name}: Access must be RW/RO/WO")
        kw["access"] = acc[0]
    if (me := arg("MinEL")) is not None:
        kw["min_el"] = int(me[0])
        kw["min_el_write"] = int(me[0])
        for t in me[1:]:
            if t.startswith("write="):
                kw["min_el_write"] = int(t[6:])
    if (rs := arg("Reset")) is not None:
        kw["reset"] = int(rs[0], 0)
    if (ue := arg("UserEn")) is not None:
        parts = dict(t.split("=", 1) for t in ue)
        sets = []
        for key in ("read", "write"):
            bits = frozenset() if parts.get(key, "-") == "-" else frozenset(parts[key].split(","))
            if not bits <= _USERENR_BITS:
                raise SysregTableError(path, blk.line, f"{blk.name}: UserEn bits {sorted(bits)}")
            sets.append(bits)
        kw["user_en"] = UserEn(sets[0], sets[1])
    if (fg := arg("Fgt")) is not None:
        kw["fgt"] = fg[0]
    if (fg2 := arg("Fgt2")) is not None:
        kw["fgt2"] = fg2[0]
    if (tp := arg("Tpm")) is not None:
        kw["tpm_read"] = tp[0] in ("read", "rw")
        kw["tpm_write"] = tp[0] in ("write", "rw")
    if "Tpmcr" in a:
        kw["tpmcr"] = True
    if (c := arg("Counter")) is not None:
        kw["counter"] = c[0]
    fields = tuple(blk.fields)
    # Field reset values: the register's reset is the OR of the field resets unless given.
    if "reset" not in kw:
        kw["reset"] = sum(f.reset << f.lsb for f in fields)
    op0, op1, crn, crm, op2 = blk.args
    if "<n>" in blk.name:
        idx = arg("Index")
        if idx is None:
            raise SysregTableError(path, blk.line, f"{blk.name}: a <n> family needs 'Index lo hi'")
        out = []
        for n in range(int(idx[0]), int(idx[1]) + 1):
            out.append(RegDef(
                blk.name.replace("<n>", str(n)), int(op0), int(op1), int(crn),
                _eval_expr(crm, n, path, blk.line), _eval_expr(op2, n, path, blk.line),
                fields, index=n, family=blk.name, line=blk.line, **kw))  # type: ignore[arg-type]
        return out
    return [RegDef(blk.name, int(op0), int(op1), int(crn), _eval_expr(crm, 0, path, blk.line),
                   _eval_expr(op2, 0, path, blk.line), fields, line=blk.line,
                   **kw)]  # type: ignore[arg-type]


def _check_unique(regs: list[RegDef], path: str) -> None:
    names: dict[str, RegDef] = {}
    encs: dict[tuple[int, int, int, int, int], RegDef] = {}
    for r in regs:
        if r.name in names:
            raise SysregTableError(path, r.line, f"register {r.name} defined twice")
        if r.encoding in encs:
            raise SysregTableError(path, r.line, f"{r.name} has the encoding of "
                                   f"{encs[r.encoding].name} ({r.s_name})")
        # op0 is 2 bits, op1 and op2 3 bits, CRn and CRm 4 bits (the MRS/MSR encoding).
        for v, top in zip(r.encoding, (3, 7, 15, 15, 7), strict=True):
            if not 0 <= v <= top:
                raise SysregTableError(path, r.line, f"{r.name}: encoding {r.s_name} out of range")
        names[r.name] = r
        encs[r.encoding] = r


def _load() -> tuple[RegDef, ...]:
    text = resources.files("pmupart.arch").joinpath("sysreg.txt").read_text(encoding="utf-8")
    return parse_table(text, "pmupart/arch/sysreg.txt")


REGISTERS: tuple[RegDef, ...] = _load()
BY_NAME: dict[str, RegDef] = {r.name: r for r in REGISTERS}
BY_ENCODING: dict[tuple[int, int, int, int, int], RegDef] = {r.encoding: r for r in REGISTERS}
_S_RE = re.compile(r"^S(\d)_(\d)_C(\d+)_C(\d+)_(\d)$")
#: PMEVCNTR<n>_EL0 and PMEVTYPER<n>_EL0 by n, with the cycle counter's PMCCNTR_EL0 and
#: PMCCFILTR_EL0 at 31 (its index, ARM §D24.5.2): hot paths index these, formatting nothing.
EVCNTR_NAMES: tuple[str, ...] = (*(f"PMEVCNTR{i}_EL0" for i in range(31)), "PMCCNTR_EL0")
EVTYPER_NAMES: tuple[str, ...] = (*(f"PMEVTYPER{i}_EL0" for i in range(31)), "PMCCFILTR_EL0")


def lookup(name: str) -> RegDef:
    """Find a register by name (case-insensitive, ``S3_4_C1_C1_1`` accepted).

    Raises ``ValueError`` naming the register and suggesting close names.
    """
    if not isinstance(name, str):
        raise TypeError(f"register name must be a str, not {type(name).__name__}")
    key = name.strip().upper()
    r = BY_NAME.get(key)
    if r is not None:
        return r
    m = _S_RE.match(key)
    if m:
        enc = tuple(int(g) for g in m.groups())
        r = BY_ENCODING.get(enc)  # type: ignore[arg-type]
        if r is not None:
            return r
    raise ValueError(f"unknown system register {name!r}{suggest(key, BY_NAME)}: "
                     "the model knows the registers of pmupart/arch/sysreg.txt")


def lookup_encoding(op0: int, op1: int, crn: int, crm: int, op2: int) -> RegDef | None:
    """The register with this encoding, or ``None`` if the table does not have it."""
    return BY_ENCODING.get((op0, op1, crn, crm, op2))


def check_value(reg: RegDef, value: int) -> int:
    """Reject values that are not 64-bit unsigned integers (library misuse)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"value for {reg.name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= MASK64:
        raise ValueError(f"value for {reg.name} must fit in 64 bits (0..0xffffffffffffffff), "
                         f"not {value:#x}" if value >= 0 else
                         f"value for {reg.name} must be non-negative, not {value}")
    return value


class RegView:
    """An immutable view of a register value: ``view("MDCR_EL2", v).HPMN``."""

    __slots__ = ("_reg", "_value")

    def __init__(self, reg: RegDef | str, value: int = 0) -> None:
        r = lookup(reg) if isinstance(reg, str) else reg
        object.__setattr__(self, "_reg", r)
        object.__setattr__(self, "_value", check_value(r, value))

    _reg: RegDef
    _value: int

    @property
    def reg(self) -> RegDef:
        return self._reg

    @property
    def value(self) -> int:
        return self._value

    def __getattr__(self, name: str) -> int:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.reg.field(name).get(self.value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{self.reg.name} views are immutable; use .replace({name}=...)")

    def replace(self, **fields: int) -> RegView:
        v = self.value
        for name, fv in fields.items():
            f = self.reg.field(name)
            if isinstance(fv, bool):
                fv = int(fv)
            if not isinstance(fv, int) or not 0 <= fv < (1 << f.width):
                raise ValueError(f"{self.reg.name}.{name} is {f.width} bits wide "
                                 f"(0..{(1 << f.width) - 1}), not {fv!r}")
            v = (v & ~f.mask) | (fv << f.lsb)
        return RegView(self.reg, v)

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RegView):
            return self.reg is other.reg and self.value == other.value
        if isinstance(other, int):
            return self.value == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.reg.name, self.value))

    def __repr__(self) -> str:
        return f"{self.reg.name}({self.value:#x}: {decode(self.reg, self.value)})"


def view(reg: RegDef | str, value: int = 0) -> RegView:
    return RegView(reg, value)


def view_class(name: str) -> type[RegView]:
    """A subclass usable as ``MDCR_EL2(v)``, for the registers exported by name."""
    reg = lookup(name)

    def __init__(self: RegView, value: int = 0) -> None:
        RegView.__init__(self, reg, value)

    return type(name, (RegView,), {"__init__": __init__, "__slots__": ()})


def decode(reg: RegDef | str, value: int) -> str:
    """Decode a value to text, most significant field first: ``HPME|HPMD|HPMN=4``.

    Single-bit fields are named when set; wider fields print ``NAME=v`` (or the enum
    name) when non-zero; set bits in reserved or unmodelled spans print in hex.
    """
    r = lookup(reg) if isinstance(reg, str) else reg
    check_value(r, value)
    parts: list[str] = []
    unknown = 0
    for f in r.fields:
        v = f.get(value)
        if f.kind != "field":
            if f.kind != "res1":  # a clear RES1 bit is not shown
                unknown |= value & f.mask
            continue
        if v == 0:
            continue
        if f.width == 1:
            parts.append(f.name)
        else:
            en = f.enum_name(v)
            if en is not None:
                parts.append(f"{f.name}={en}")
            elif f.width >= 8:
                parts.append(f"{f.name}={v:#x}")
            else:
                parts.append(f"{f.name}={v}")
    if unknown:
        parts.append(f"{unknown:#x}")
    return "|".join(parts) if parts else "0"
