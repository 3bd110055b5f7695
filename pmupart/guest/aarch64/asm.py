"""A small AArch64 assembler for PMU test code.

Covers what PMU tests need (Arm ARM DDI0487 part C, "A64 instruction set encoding", each
encoding checked against capstone in ``tests/test_aarch64_asm.py``):

* moves and immediates: ``mov`` (register, or any 64-bit immediate as ``movz``/``movn`` +
  ``movk``), ``movz``, ``movn``, ``movk``, ``adr``
* arithmetic: ``add``/``adds``/``sub``/``subs`` (immediate with optional ``lsl #12``, or
  register with optional shift), ``cmp``, ``cmn``, ``and``/``orr``/``eor``/``ands``,
  ``tst``, ``lsl``/``lsr`` (immediate), ``mul``
* loads and stores: ``ldr``/``str``/``ldrb``/``strb`` (``[xn]``, ``[xn, #off]``,
  ``[xn, #off]!``, ``[xn], #off``, literal ``ldr xt, label``), ``ldp``/``stp``
* branches: ``b``, ``b.<cond>``, ``bl``, ``br``, ``blr``, ``ret``, ``cbz``, ``cbnz``,
  ``tbz``, ``tbnz``
* system: ``mrs``/``msr`` by name (every register of ``pmupart/arch/sysreg.txt``, the few
  exception-handling registers in :data:`OTHER_SYSREGS`, or ``S<op0>_<op1>_C<n>_C<m>_<op2>``),
  ``msr daifset|daifclr, #imm``, ``dmb``/``dsb`` (``sy``, ``ish``, ...), ``isb``, ``eret``,
  ``svc``, ``hvc``, ``smc``, ``brk``, ``hlt`` (``hlt #0xf000`` is the Arm semihosting call),
  ``udf``, ``wfi``, ``wfe``, ``nop``
* directives: labels ``name:``, ``.equ name, expr`` (or ``.set``), ``.byte``, ``.word``, ``.quad``,
  ``.ascii "text"`` / ``.asciz "text"`` (C escapes; ``.asciz`` adds a NUL),
  ``.align n`` (to 2**n, padded with zeros), ``.org`` (forward only), ``.text``/``.global``
  (ignored); comments start with ``//``.

Immediates take an optional ``#`` and are expressions of integers, ``.equ`` names and
labels with ``+ - * << >> | & ~`` and parentheses.  Errors are :class:`AsmError` naming
the line and what was expected.
"""

from __future__ import annotations

import ast
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pmupart.arch.sysreg import BY_NAME
from pmupart.errors import PmupartError
from pmupart.guest.aarch64.gic import ICC_REGS

__all__ = ["OTHER_SYSREGS", "AsmError", "Assembled", "assemble", "sysreg_encoding"]

#: System registers that are not PMU state: the guest's own exception-handling registers,
#: which the runner leaves to the emulated CPU.  (op0, op1, CRn, CRm, op2), ARM §D24.2.
OTHER_SYSREGS: dict[str, tuple[int, int, int, int, int]] = {
    "VBAR_EL1": (3, 0, 12, 0, 0),
    "ELR_EL1": (3, 0, 4, 0, 1),
    "SPSR_EL1": (3, 0, 4, 0, 0),
    "ESR_EL1": (3, 0, 5, 2, 0),
    "FAR_EL1": (3, 0, 6, 0, 0),
    "SP_EL0": (3, 0, 4, 1, 0),
    "SPSEL": (3, 0, 4, 2, 0),
    "DAIF": (3, 3, 4, 2, 1),
    "NZCV": (3, 3, 4, 2, 0),
    "CURRENTEL": (3, 0, 4, 2, 2),
    "TPIDR_EL0": (3, 3, 13, 0, 2),
    "TPIDR_EL1": (3, 0, 13, 0, 4),
    "MIDR_EL1": (3, 0, 0, 0, 0),
    "MPIDR_EL1": (3, 0, 0, 0, 5),
}
# The GICv3 CPU interface registers (pmupart.guest.aarch64.gic; IHI 0069 §12.2).
OTHER_SYSREGS.update({name: enc for enc, name in ICC_REGS.items()})


class AsmError(PmupartError, ValueError):
    """Bad assembler input: ``line`` (1-based) and the message."""

    def __init__(self, line: int, msg: str, text: str = "") -> None:
        self.line = line
        self.msg = msg
        self.text = text
        super().__init__(f"line {line}: {msg}" + (f"  [{text.strip()}]" if text else ""))


@dataclass(frozen=True)
class Assembled:
    """Machine code at ``base``, and the label addresses."""

    code: bytes
    base: int
    labels: dict[str, int]


_COND = {"eq": 0, "ne": 1, "cs": 2, "hs": 2, "cc": 3, "lo": 3, "mi": 4, "pl": 5, "vs": 6,
         "vc": 7, "hi": 8, "ls": 9, "ge": 10, "lt": 11, "gt": 12, "le": 13, "al": 14}
_BARRIER = {"sy": 15, "st": 14, "ld": 13, "ish": 11, "ishst": 10, "ishld": 9, "nsh": 7,
            "nshst": 6, "nshld": 5, "osh": 3, "oshst": 2, "oshld": 1}
_SHIFT = {"lsl": 0, "lsr": 1, "asr": 2}
_SREG = re.compile(r"^s([0-3])_([0-7])_c([0-9]|1[0-5])_c([0-9]|1[0-5])_([0-7])$")
_ALLOWED_AST = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load,
                ast.Add, ast.Sub, ast.Mult, ast.LShift, ast.RShift, ast.BitOr, ast.BitAnd,
                ast.BitXor, ast.Invert, ast.USub, ast.UAdd, ast.FloorDiv)


def sysreg_encoding(name: str) -> tuple[int, int, int, int, int]:
    """(op0, op1, CRn, CRm, op2) of a system register named as in the Arm ARM."""
    key = name.strip().upper()
    reg = BY_NAME.get(key)
    if reg is not None:
        return reg.encoding
    if key in OTHER_SYSREGS:
        return OTHER_SYSREGS[key]
    m = _SREG.match(key.lower())
    if m:
        op0, op1, crn, crm, op2 = (int(g) for g in m.groups())
        return op0, op1, crn, crm, op2
    raise ValueError(f"unknown system register {name!r}: expected a register of the table "
                     "(pmupart/arch/sysreg.txt), one of " + ", ".join(OTHER_SYSREGS)
                     + ", or S<op0>_<op1>_C<n>_C<m>_<op2>")


class _Line:
    __slots__ = ("addr", "args", "lineno", "op", "text")

    def __init__(self, lineno: int, text: str, op: str, args: list[str], addr: int) -> None:
        self.lineno, self.text, self.op, self.args, self.addr = lineno, text, op, args, addr


def _split_args(s: str) -> list[str]:
    """Split operands on commas outside brackets/braces."""
    out: list[str] = []
    depth = 0
    cur = ""
    for ch in s:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


class _Asm:
    def __init__(self, base: int) -> None:
        self.base = base
        self.symbols: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.line: _Line | None = None

    # ------------------------------------------------------------ errors and operands
    def err(self, msg: str) -> AsmError:
        ln = self.line
        return AsmError(ln.lineno if ln else 0, msg, ln.text if ln else "")

    def expr(self, s: str, *, final: bool = True) -> int:
        t = s.strip()
        if t.startswith("#"):
            t = t[1:].strip()
        if not t:
            raise self.err("expected an immediate expression")
        try:
            tree = ast.parse(t, mode="eval")
        except SyntaxError:
            raise self.err(f"expected an immediate expression, not {s.strip()!r}") from None
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_AST):
                raise self.err(f"expected an immediate expression, not {s.strip()!r}")
            if isinstance(node, ast.Constant) and not isinstance(node.value, int):
                raise self.err(f"expected an integer, not {node.value!r}")
        env = {**self.symbols, **self.labels}

        def ev(n: ast.AST) -> int:
            if isinstance(n, ast.Expression):
                return ev(n.body)
            if isinstance(n, ast.Constant):
                return int(n.value)  # type: ignore[arg-type]
            if isinstance(n, ast.Name):
                if n.id in env:
                    return env[n.id]
                if not final:
                    raise _Unresolved(n.id)
                raise self.err(f"undefined symbol {n.id!r}")
            if isinstance(n, ast.UnaryOp):
                v = ev(n.operand)
                return {ast.USub: -v, ast.UAdd: v, ast.Invert: ~v}[type(n.op)]
            if isinstance(n, ast.BinOp):
                a, b = ev(n.left), ev(n.right)
                ops: dict[type, Callable[[int, int], int]] = {
                    ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y,
                    ast.Mult: lambda x, y: x * y, ast.LShift: lambda x, y: x << y,
                    ast.RShift: lambda x, y: x >> y, ast.BitOr: lambda x, y: x | y,
                    ast.BitAnd: lambda x, y: x & y, ast.BitXor: lambda x, y: x ^ y,
                    ast.FloorDiv: lambda x, y: x // y}
                return ops[type(n.op)](a, b)
            raise self.err(f"expected an immediate expression, not {s.strip()!r}")

        return ev(tree)

    def reg(self, s: str, *, sp: bool = False, zr: bool = True) -> tuple[int, bool]:
        """(number, is_64bit).  31 is SP or ZR depending on the operand's role."""
        t = s.strip().lower()
        alias = {"lr": "x30", "fp": "x29"}
        t = alias.get(t, t)
        if t in ("sp", "wsp"):
            if not sp:
                raise self.err(f"{s.strip()} is not allowed here (expected a general register)")
            return 31, t == "sp"
        if t in ("xzr", "wzr"):
            if not zr:
                raise self.err(f"{s.strip()} is not allowed here (expected a register or sp)")
            return 31, t == "xzr"
        m = re.fullmatch(r"([xw])([0-9]|[12][0-9]|30)", t)
        if not m:
            raise self.err(f"expected a register x0-x30/w0-w30, not {s.strip()!r}")
        return int(m.group(2)), m.group(1) == "x"

    def want(self, args: list[str], n: int, what: str) -> None:
        if len(args) != n:
            raise self.err(f"expected {what}")

    def fits(self, v: int, lo: int, hi: int, what: str) -> int:
        if not lo <= v <= hi:
            raise self.err(f"{what} must be {lo}..{hi}, not {v}")
        return v

    def branch_off(self, target: str, pc: int, bits: int) -> int:
        off = self.expr(target) - pc
        if off % 4:
            raise self.err(f"branch target {target.strip()} is not 4-byte aligned")
        lim = 1 << (bits - 1)
        w = off >> 2
        if not -lim <= w < lim:
            raise self.err(f"branch target {target.strip()} out of range (+-{lim * 4} bytes)")
        return w & ((1 << bits) - 1)

    # ------------------------------------------------------------ passes
    def size_of(self, op: str, args: list[str], addr: int) -> int:
        if op == "mov" and len(args) == 2 and not self._is_reg(args[1]):
            try:
                v = self.expr(args[1], final=False)
            except _Unresolved as u:
                raise self.err(f"mov immediate uses {u.name!r} before it is defined "
                               "(define it with .equ first, or use adr for labels)") from None
            _, is64 = self.reg(args[0])
            return 4 * len(self.mov_imm(0, v, is64))
        if op == ".word":
            return 4 * len(args)
        if op == ".byte":
            return len(args)
        if op in (".ascii", ".asciz"):
            return len(self.string(args, op == ".asciz"))
        if op == ".quad":
            return 8 * len(args)
        if op == ".align":
            n = 1 << self.expr(args[0], final=False)
            return (-addr) % n
        if op == ".org":
            target = self.expr(args[0], final=False)
            if target < addr:
                raise self.err(f".org {target:#x} is behind the current address {addr:#x}")
            return target - addr
        return 4

    def string(self, args: list[str], nul: bool) -> bytes:
        """The bytes of a ``.ascii``/``.asciz`` operand: one double-quoted string with C
        escapes (``\\n``, ``\\t``, ``\\\\``, ``\\"``, ``\\xNN``), ASCII only."""
        t = args[0] if len(args) == 1 else ""
        if len(t) < 2 or t[0] != '"' or t[-1] != '"':
            raise self.err('expected one double-quoted string, like "text\\n"')
        try:
            v = ast.literal_eval(t)
        except (SyntaxError, ValueError):
            raise self.err(f"bad string literal {t}") from None
        if not isinstance(v, str) or not v.isascii():
            raise self.err("strings must be ASCII")
        return v.encode() + (b"\0" if nul else b"")

    def _is_reg(self, s: str) -> bool:
        t = s.strip().lower()
        return bool(re.fullmatch(r"[xw]([0-9]|[12][0-9]|30)|xzr|wzr|sp|wsp|lr|fp", t))

    def mov_imm(self, rd: int, v: int, is64: bool) -> list[int]:
        width = 64 if is64 else 32
        if not -(1 << (width - 1)) <= v < (1 << width):
            raise self.err(f"immediate {v} does not fit in {width} bits")
        v &= (1 << width) - 1
        chunks = [(v >> (16 * i)) & 0xFFFF for i in range(width // 16)]
        sf = 0x80000000 if is64 else 0
        inv = [c ^ 0xFFFF for c in chunks]
        # MOVN when more chunks are 0xFFFF than 0x0000 (fewer MOVKs).
        if sum(c == 0xFFFF for c in chunks) > sum(c == 0 for c in chunks):
            first = next((i for i, c in enumerate(inv) if c), 0)
            words = [sf | 0x12800000 | (first << 21) | (inv[first] << 5) | rd]
            for i, c in enumerate(chunks):
                if i != first and c != 0xFFFF:
                    words.append(sf | 0x72800000 | (i << 21) | (c << 5) | rd)
            return words
        first = next((i for i, c in enumerate(chunks) if c), 0)
        words = [sf | 0x52800000 | (first << 21) | (chunks[first] << 5) | rd]
        for i, c in enumerate(chunks):
            if i != first and c:
                words.append(sf | 0x72800000 | (i << 21) | (c << 5) | rd)
        return words

    def run(self, text: str) -> Assembled:
        lines: list[_Line] = []
        addr = self.base
        for lineno, raw in enumerate(text.splitlines(), 1):
            s = raw.split("//", 1)[0].strip()
            self.line = _Line(lineno, raw, "", [], addr)
            while True:
                m = re.match(r"^([A-Za-z_.$][\w.$]*)\s*:", s)
                if not m:
                    break
                name = m.group(1)
                if name in self.labels or name in self.symbols:
                    raise self.err(f"label {name!r} defined twice")
                self.labels[name] = addr
                s = s[m.end():].strip()
            if not s:
                continue
            parts = s.split(None, 1)
            op = parts[0].lower()
            if op in (".ascii", ".asciz"):
                args = [parts[1].strip()] if len(parts) > 1 else []
            else:
                args = _split_args(parts[1]) if len(parts) > 1 else []
            if op in (".equ", ".set"):
                if len(args) != 2 or not re.fullmatch(r"[A-Za-z_]\w*", args[0]):
                    raise self.err("expected .equ NAME, expression")
                self.symbols[args[0]] = self.expr(args[1], final=False)
                continue
            if op in (".text", ".global", ".globl", ".type", ".size", ".section"):
                continue
            ln = _Line(lineno, raw, op, args, addr)
            self.line = ln
            addr += self.size_of(op, args, addr)
            lines.append(ln)
        out = bytearray()
        for ln in lines:
            self.line = ln
            pad = ln.addr - (self.base + len(out))
            out += b"\0" * pad
            out += self.encode(ln.op, ln.args, ln.addr)
        return Assembled(bytes(out), self.base, dict(self.labels))

    # ------------------------------------------------------------ encoding
    def encode(self, op: str, a: list[str], pc: int) -> bytes:
        if op == ".word":
            return b"".join(struct.pack("<I", self.expr(x) & 0xFFFFFFFF) for x in a)
        if op == ".quad":
            return b"".join(struct.pack("<Q", self.expr(x) & (2**64 - 1)) for x in a)
        if op == ".byte":
            return bytes(self.fits(self.expr(x), -128, 255, ".byte value") & 0xFF for x in a)
        if op in (".ascii", ".asciz"):
            return self.string(a, op == ".asciz")
        if op in (".align", ".org"):
            return b""
        if op.startswith("b.") and op[2:] in _COND:
            self.want(a, 1, f"{op} label")
            return _w(0x54000000 | (self.branch_off(a[0], pc, 19) << 5) | _COND[op[2:]])
        fn = getattr(self, "op_" + op.replace(".", "_"), None)
        if fn is None:
            raise self.err(f"unknown instruction {op!r}")
        words = fn(a, pc)
        return b"".join(_w(x) for x in words)

    # moves
    def op_mov(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 2, "mov Rd, Rn|#imm")
        if self._is_reg(a[1]):
            s0, s1 = a[0].strip().lower(), a[1].strip().lower()
            if "sp" in (s0, s1) or "wsp" in (s0, s1):
                rd, is64 = self.reg(a[0], sp=True, zr=False)
                rn, _ = self.reg(a[1], sp=True, zr=False)
                return [(0x91000000 if is64 else 0x11000000) | (rn << 5) | rd]
            rd, is64 = self.reg(a[0])
            rm, is64m = self.reg(a[1])
            if is64 != is64m:
                raise self.err("mov operands must be the same width (x/x or w/w)")
            return [(0xAA0003E0 if is64 else 0x2A0003E0) | (rm << 16) | rd]
        rd, is64 = self.reg(a[0])
        return self.mov_imm(rd, self.expr(a[1]), is64)

    def _movw(self, base32: int, a: list[str]) -> list[int]:
        if len(a) not in (2, 3):
            raise self.err("expected Rd, #imm16 [, lsl #shift]")
        rd, is64 = self.reg(a[0])
        imm = self.fits(self.expr(a[1]), 0, 0xFFFF, "16-bit immediate")
        hw = 0
        if len(a) == 3:
            m = re.fullmatch(r"lsl\s+#?(\d+)", a[2].strip().lower())
            if not m or int(m.group(1)) % 16 or int(m.group(1)) >= (64 if is64 else 32):
                raise self.err(f"expected lsl #0/16{'/32/48' if is64 else ''}, not {a[2]!r}")
            hw = int(m.group(1)) // 16
        return [(0x80000000 if is64 else 0) | base32 | (hw << 21) | (imm << 5) | rd]

    def op_movz(self, a: list[str], pc: int) -> list[int]:
        return self._movw(0x52800000, a)

    def op_movn(self, a: list[str], pc: int) -> list[int]:
        return self._movw(0x12800000, a)

    def op_movk(self, a: list[str], pc: int) -> list[int]:
        return self._movw(0x72800000, a)

    def op_adr(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 2, "adr Xd, label")
        rd, is64 = self.reg(a[0])
        if not is64:
            raise self.err("adr needs an x register")
        off = self.expr(a[1]) - pc
        self.fits(off, -(1 << 20), (1 << 20) - 1, "adr offset")
        off &= (1 << 21) - 1
        return [0x10000000 | ((off & 3) << 29) | ((off >> 2) << 5) | rd]

    # arithmetic
    def _addsub(self, a: list[str], opbits: int, setflags: bool) -> list[int]:
        if len(a) not in (3, 4):
            raise self.err("expected Rd, Rn, #imm [, lsl #12] or Rd, Rn, Rm [, shift #n]")
        if self._is_reg(a[2]):
            rd, is64 = self.reg(a[0])
            rn, _ = self.reg(a[1])
            rm, _ = self.reg(a[2])
            sh, amt = 0, 0
            if len(a) == 4:
                m = re.fullmatch(r"(lsl|lsr|asr)\s+#?(\d+)", a[3].strip().lower())
                if not m:
                    raise self.err(f"expected a shift (lsl/lsr/asr #n), not {a[3]!r}")
                sh, amt = _SHIFT[m.group(1)], int(m.group(2))
                self.fits(amt, 0, 63 if is64 else 31, "shift amount")
            base = 0x0B000000 | (opbits << 30) | (0x20000000 if setflags else 0)
            return [(0x80000000 if is64 else 0) | base | (sh << 22) | (rm << 16) | (amt << 10)
                    | (rn << 5) | rd]
        rd, is64 = self.reg(a[0], sp=not setflags, zr=setflags)
        rn, _ = self.reg(a[1], sp=True, zr=False)
        imm = self.expr(a[2])
        shift = 0
        if len(a) == 4:
            if not re.fullmatch(r"lsl\s+#?12", a[3].strip().lower()):
                raise self.err(f"expected lsl #12, not {a[3]!r}")
            shift = 1
        self.fits(imm, 0, 4095, "add/sub immediate (12 bits; use lsl #12 for larger)")
        base = 0x11000000 | (opbits << 30) | (0x20000000 if setflags else 0)
        return [(0x80000000 if is64 else 0) | base | (shift << 22) | (imm << 10) | (rn << 5)
                | rd]

    def op_add(self, a: list[str], pc: int) -> list[int]:
        return self._addsub(a, 0, False)

    def op_adds(self, a: list[str], pc: int) -> list[int]:
        return self._addsub(a, 0, True)

    def op_sub(self, a: list[str], pc: int) -> list[int]:
        return self._addsub(a, 1, False)

    def op_subs(self, a: list[str], pc: int) -> list[int]:
        return self._addsub(a, 1, True)

    def op_cmp(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 2, "cmp Rn, #imm|Rm")
        zr = "xzr" if self.reg(a[0], sp=True)[1] else "wzr"
        return self._addsub([zr, *a], 1, True)

    def op_cmn(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 2, "cmn Rn, #imm|Rm")
        zr = "xzr" if self.reg(a[0], sp=True)[1] else "wzr"
        return self._addsub([zr, *a], 0, True)

    def _logic(self, a: list[str], opc: int) -> list[int]:
        self.want(a, 3, "Rd, Rn, Rm (register form)")
        rd, is64 = self.reg(a[0])
        rn, _ = self.reg(a[1])
        if not self._is_reg(a[2]):
            raise self.err("only the register form of and/orr/eor/ands is supported; "
                           "load the mask into a register first")
        rm, _ = self.reg(a[2])
        return [(0x80000000 if is64 else 0) | 0x0A000000 | (opc << 29) | (rm << 16)
                | (rn << 5) | rd]

    def op_and(self, a: list[str], pc: int) -> list[int]:
        return self._logic(a, 0)

    def op_orr(self, a: list[str], pc: int) -> list[int]:
        return self._logic(a, 1)

    def op_eor(self, a: list[str], pc: int) -> list[int]:
        return self._logic(a, 2)

    def op_ands(self, a: list[str], pc: int) -> list[int]:
        return self._logic(a, 3)

    def op_tst(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 2, "tst Rn, Rm")
        zr = "xzr" if self.reg(a[0])[1] else "wzr"
        return self._logic([zr, *a], 3)

    def _ubfm(self, a: list[str], left: bool) -> list[int]:
        self.want(a, 3, "Rd, Rn, #shift")
        rd, is64 = self.reg(a[0])
        rn, _ = self.reg(a[1])
        w = 64 if is64 else 32
        s = self.fits(self.expr(a[2]), 0, w - 1, "shift amount")
        immr, imms = ((-s) % w, w - 1 - s) if left else (s, w - 1)
        base = 0xD3400000 if is64 else 0x53000000
        return [base | (immr << 16) | (imms << 10) | (rn << 5) | rd]

    def op_lsl(self, a: list[str], pc: int) -> list[int]:
        return self._ubfm(a, True)

    def op_lsr(self, a: list[str], pc: int) -> list[int]:
        return self._ubfm(a, False)

    def op_mul(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 3, "mul Rd, Rn, Rm")
        rd, is64 = self.reg(a[0])
        rn, _ = self.reg(a[1])
        rm, _ = self.reg(a[2])
        return [(0x9B000000 if is64 else 0x1B000000) | (rm << 16) | (31 << 10) | (rn << 5)
                | rd]

    # loads and stores
    def _mem(self, a: list[str]) -> tuple[int, int, str]:
        """Parse the address operand(s): (rn, offset, mode) with mode 'off'|'pre'|'post'."""
        if not a or not a[0].startswith("["):
            raise self.err("expected an address [xn], [xn, #off], [xn, #off]! or [xn], #off")
        m = re.fullmatch(r"\[\s*([^\],]+?)\s*(?:,\s*([^\]]+?))?\s*\](!?)", a[0].strip())
        if not m:
            raise self.err(f"expected an address like [x1, #8], not {a[0]!r}")
        rn, _ = self.reg(m.group(1), sp=True, zr=False)
        off = self.expr(m.group(2)) if m.group(2) else 0
        if m.group(3):
            if len(a) > 1:
                raise self.err("too many operands after the address")
            return rn, off, "pre"
        if len(a) == 2:
            if m.group(2):
                raise self.err("post-index needs [xn], #off")
            return rn, self.expr(a[1]), "post"
        if len(a) > 2:
            raise self.err("too many operands after the address")
        return rn, off, "off"

    def _ldst(self, a: list[str], pc: int, load: bool, byte: bool = False) -> list[int]:
        if len(a) < 2:
            raise self.err("expected Rt, address")
        rt, is64 = self.reg(a[0])
        if byte and is64:
            raise self.err("ldrb/strb take a w register")
        if load and not byte and not a[1].strip().startswith("["):
            if len(a) != 2:
                raise self.err("expected ldr Rt, label")
            off = self.expr(a[1]) - pc
            if off % 4:
                raise self.err("literal must be 4-byte aligned")
            self.fits(off, -(1 << 20), (1 << 20) - 4, "literal offset")
            return [(0x58000000 if is64 else 0x18000000) | (((off >> 2) & 0x7FFFF) << 5) | rt]
        rn, off, mode = self._mem(a[1:])
        size = 0 if byte else (3 if is64 else 2)
        opc = 1 if load else 0
        if mode == "off" and off >= 0 and off % (1 << size) == 0 and off >> size < 4096:
            return [0x39000000 | (size << 30) | (opc << 22) | ((off >> size) << 10) | (rn << 5)
                    | rt]
        self.fits(off, -256, 255, "offset (unscaled, pre/post-indexed)")
        idx = {"off": 0b00, "post": 0b01, "pre": 0b11}[mode]
        return [0x38000000 | (size << 30) | (opc << 22) | ((off & 0x1FF) << 12) | (idx << 10)
                | (rn << 5) | rt]

    def op_ldr(self, a: list[str], pc: int) -> list[int]:
        return self._ldst(a, pc, True)

    def op_str(self, a: list[str], pc: int) -> list[int]:
        return self._ldst(a, pc, False)

    def op_ldrb(self, a: list[str], pc: int) -> list[int]:
        return self._ldst(a, pc, True, byte=True)

    def op_strb(self, a: list[str], pc: int) -> list[int]:
        return self._ldst(a, pc, False, byte=True)

    def _pair(self, a: list[str], load: bool) -> list[int]:
        if len(a) < 3:
            raise self.err("expected Rt1, Rt2, address")
        r1, is64 = self.reg(a[0])
        r2, _ = self.reg(a[1])
        rn, off, mode = self._mem(a[2:])
        scale = 8 if is64 else 4
        if off % scale:
            raise self.err(f"pair offset must be a multiple of {scale}")
        self.fits(off // scale, -64, 63, "pair offset / scale")
        idx = {"post": 0b001, "off": 0b010, "pre": 0b011}[mode]
        return [(0x80000000 if is64 else 0) | 0x28000000 | (idx << 23) | ((1 if load else 0) << 22)
                | (((off // scale) & 0x7F) << 15) | (r2 << 10) | (rn << 5) | r1]

    def op_ldp(self, a: list[str], pc: int) -> list[int]:
        return self._pair(a, True)

    def op_stp(self, a: list[str], pc: int) -> list[int]:
        return self._pair(a, False)

    # branches
    def op_b(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 1, "b label")
        return [0x14000000 | self.branch_off(a[0], pc, 26)]

    def op_bl(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 1, "bl label")
        return [0x94000000 | self.branch_off(a[0], pc, 26)]

    def _cb(self, a: list[str], pc: int, nz: int) -> list[int]:
        self.want(a, 2, "Rt, label")
        rt, is64 = self.reg(a[0])
        return [(0x80000000 if is64 else 0) | 0x34000000 | (nz << 24)
                | (self.branch_off(a[1], pc, 19) << 5) | rt]

    def op_cbz(self, a: list[str], pc: int) -> list[int]:
        return self._cb(a, pc, 0)

    def op_cbnz(self, a: list[str], pc: int) -> list[int]:
        return self._cb(a, pc, 1)

    def _tb(self, a: list[str], pc: int, nz: int) -> list[int]:
        self.want(a, 3, "Rt, #bit, label")
        rt, is64 = self.reg(a[0])
        bit = self.fits(self.expr(a[1]), 0, 63 if is64 else 31, "bit number")
        return [0x36000000 | ((bit >> 5) << 31) | (nz << 24) | ((bit & 31) << 19)
                | (self.branch_off(a[2], pc, 14) << 5) | rt]

    def op_tbz(self, a: list[str], pc: int) -> list[int]:
        return self._tb(a, pc, 0)

    def op_tbnz(self, a: list[str], pc: int) -> list[int]:
        return self._tb(a, pc, 1)

    def _breg(self, a: list[str], base: int, default: int | None = None) -> list[int]:
        if not a and default is not None:
            return [base | (default << 5)]
        self.want(a, 1, "a register")
        rn, is64 = self.reg(a[0])
        if not is64:
            raise self.err("branch register must be an x register")
        return [base | (rn << 5)]

    def op_br(self, a: list[str], pc: int) -> list[int]:
        return self._breg(a, 0xD61F0000)

    def op_blr(self, a: list[str], pc: int) -> list[int]:
        return self._breg(a, 0xD63F0000)

    def op_ret(self, a: list[str], pc: int) -> list[int]:
        return self._breg(a, 0xD65F0000, default=30)

    # system
    def op_mrs(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 2, "mrs Xt, <system register>")
        rt, is64 = self.reg(a[0])
        if not is64:
            raise self.err("mrs needs an x register")
        return [_sys(0xD5300000, self._sr(a[1]), rt)]

    def op_msr(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 2, "msr <system register>, Xt")
        name = a[0].strip().lower()
        if name in ("daifset", "daifclr"):
            imm = self.fits(self.expr(a[1]), 0, 15, "DAIF mask")
            return [0xD500401F | (3 << 16) | (imm << 8) | ((6 if name == "daifset" else 7) << 5)]
        rt, is64 = self.reg(a[1])
        if not is64:
            raise self.err("msr needs an x register")
        return [_sys(0xD5100000, self._sr(a[0]), rt)]

    def _sr(self, name: str) -> tuple[int, int, int, int, int]:
        try:
            enc = sysreg_encoding(name)
        except ValueError as e:
            raise self.err(str(e)) from None
        if enc[0] < 2:
            raise self.err(f"{name} has op0={enc[0]}: not a system register move")
        return enc

    def _imm16(self, a: list[str], base: int, default: int | None = None) -> list[int]:
        if not a and default is not None:
            return [base | (default << 5)]
        self.want(a, 1, "#imm16")
        return [base | (self.fits(self.expr(a[0]), 0, 0xFFFF, "16-bit immediate") << 5)]

    def op_svc(self, a: list[str], pc: int) -> list[int]:
        return self._imm16(a, 0xD4000001)

    def op_hvc(self, a: list[str], pc: int) -> list[int]:
        return self._imm16(a, 0xD4000002)

    def op_smc(self, a: list[str], pc: int) -> list[int]:
        return self._imm16(a, 0xD4000003)

    def op_hlt(self, a: list[str], pc: int) -> list[int]:
        return self._imm16(a, 0xD4400000)

    def op_brk(self, a: list[str], pc: int) -> list[int]:
        return self._imm16(a, 0xD4200000)

    def op_udf(self, a: list[str], pc: int) -> list[int]:
        self.want(a, 1, "udf #imm16")
        return [self.fits(self.expr(a[0]), 0, 0xFFFF, "16-bit immediate")]

    def _noarg(self, a: list[str], word: int) -> list[int]:
        if a:
            raise self.err("this instruction takes no operands")
        return [word]

    def op_nop(self, a: list[str], pc: int) -> list[int]:
        return self._noarg(a, 0xD503201F)

    def op_wfi(self, a: list[str], pc: int) -> list[int]:
        return self._noarg(a, 0xD503207F)

    def op_wfe(self, a: list[str], pc: int) -> list[int]:
        return self._noarg(a, 0xD503205F)

    def op_eret(self, a: list[str], pc: int) -> list[int]:
        return self._noarg(a, 0xD69F03E0)

    def op_isb(self, a: list[str], pc: int) -> list[int]:
        if a and a[0].strip().lower() != "sy":
            raise self.err("isb takes no option (or sy)")
        return [0xD5033FDF]

    def _barrier(self, a: list[str], base: int) -> list[int]:
        opt = a[0].strip().lower() if a else "sy"
        if opt not in _BARRIER or len(a) > 1:
            raise self.err(f"expected a barrier option ({', '.join(_BARRIER)}), not {opt!r}")
        return [base | (_BARRIER[opt] << 8)]

    def op_dmb(self, a: list[str], pc: int) -> list[int]:
        return self._barrier(a, 0xD50330BF)

    def op_dsb(self, a: list[str], pc: int) -> list[int]:
        return self._barrier(a, 0xD503309F)


class _Unresolved(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _sys(base: int, enc: tuple[int, int, int, int, int], rt: int) -> int:
    op0, op1, crn, crm, op2 = enc
    return base | ((op0 - 2) << 19) | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5) | rt


def _w(x: int) -> bytes:
    return struct.pack("<I", x & 0xFFFFFFFF)


def assemble(text: str, base: int = 0x1000) -> Assembled:
    """Assemble ``text`` at ``base``; raises :class:`AsmError` (line and reason) on bad input."""
    if base % 4:
        raise ValueError(f"base must be 4-byte aligned, not {base:#x}")
    return _Asm(base).run(text)
