"""Native (compiled) unicorn hooks: exact instruction counts at block granularity.

A Python callback on every basic block runs at a few million guest instructions per
second; the same callback compiled to machine code and registered through unicorn's C
hook API (``uc_hook_add``) costs a few nanoseconds.  The callbacks are written in LLVM IR
below and compiled by llvmlite (a PyPI wheel: no compiler, no system package) once, in a
child process, to position-independent machine code cached under ``~/.cache/pmupart``; a
run maps that code, so the process running guests never loads LLVM.  They share one array
of 64-bit words with Python (:class:`NativeState`):

* the **block hook** (``UC_HOOK_BLOCK``) adds the block's instruction count (AArch64
  instructions are 4 bytes) to ``ICOUNT``, records where the block ends and calls
  ``uc_emu_stop`` when ``ICOUNT`` passes ``DEADLINE`` - unicorn checks for a stop request
  right after a block hook, so the block has not run yet; the precise-mode variant also
  records the block's start and adds its static load/store/branch counts from prefix-sum
  tables;
* the **checkpoint hook** (``UC_HOOK_CODE`` on chosen addresses only) makes the same
  deadline test before one instruction, so Python can stop the guest exactly there;
* the **memory hook** (``UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE``, precise mode) counts
  data accesses.

Everything the hooks count is "as if the whole block ran"; Python corrects for the part
of the block that did not run whenever it cuts (see ``runner.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import os
import platform
import struct
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

# Word indices in the shared state array.
ICOUNT = 0  #: instructions in all blocks entered (whole blocks)
BSTART = 1  #: start address of the last block entered
BEND = 2  #: end address (exclusive) of the last block entered
DEADLINE = 3  #: stop before a block/checkpoint once ICOUNT > DEADLINE
STOPFN = 4  #: address of uc_emu_stop
TBASE = 5  #: base address of the static tables
TWORDS = 6  #: number of 4-byte words the tables cover
TLD = 7  #: address of the LD prefix table (int64[TWORDS+1])
TST = 8  #: ST prefix table
TBR = 9  #: BR prefix table
LD = 10  #: loads in all blocks entered (precise mode)
ST = 11
BR = 12
MEM = 13  #: data memory accesses (memory hook)
NWORDS = 16

_IR = r"""
define void @block_hook(i8* %uc, i64 %addr, i32 %size, i64* %st) nounwind {
entry:
  %n32 = lshr i32 %size, 2
  %n = zext i32 %n32 to i64
  %ic = load i64, i64* %st
  %ic2 = add i64 %ic, %n
  store i64 %ic2, i64* %st
  %sz = zext i32 %size to i64
  %end = add i64 %addr, %sz
  %pbe = getelementptr i64, i64* %st, i64 2
  store i64 %end, i64* %pbe
  %pdl = getelementptr i64, i64* %st, i64 3
  %dl = load i64, i64* %pdl
  %over = icmp ugt i64 %ic2, %dl
  br i1 %over, label %stop, label %done, !prof !0
stop:
  %pfn = getelementptr i64, i64* %st, i64 4
  %fnv = load i64, i64* %pfn
  %fn = inttoptr i64 %fnv to i32 (i8*)*
  %r = call i32 %fn(i8* %uc)
  ret void
done:
  ret void
}

define void @block_hook_precise(i8* %uc, i64 %addr, i32 %size, i64* %st) {
entry:
  %n32 = lshr i32 %size, 2
  %n = zext i32 %n32 to i64
  %ic = load i64, i64* %st
  %ic2 = add i64 %ic, %n
  store i64 %ic2, i64* %st
  %pbs = getelementptr i64, i64* %st, i64 1
  store i64 %addr, i64* %pbs
  %sz = zext i32 %size to i64
  %end = add i64 %addr, %sz
  %pbe = getelementptr i64, i64* %st, i64 2
  store i64 %end, i64* %pbe
  %ptw = getelementptr i64, i64* %st, i64 6
  %tw = load i64, i64* %ptw
  br label %tables
tables:
  %ptb = getelementptr i64, i64* %st, i64 5
  %tb = load i64, i64* %ptb
  %off = sub i64 %addr, %tb
  %i0 = lshr i64 %off, 2
  %i1 = add i64 %i0, %n
  %inr = icmp ule i64 %i1, %tw
  %al = icmp uge i64 %addr, %tb
  %ok = and i1 %inr, %al
  br i1 %ok, label %acc, label %check
acc:
  call void @acc1(i64* %st, i64 7, i64 10, i64 %i0, i64 %i1)
  call void @acc1(i64* %st, i64 8, i64 11, i64 %i0, i64 %i1)
  call void @acc1(i64* %st, i64 9, i64 12, i64 %i0, i64 %i1)
  br label %check
check:
  %pdl = getelementptr i64, i64* %st, i64 3
  %dl = load i64, i64* %pdl
  %over = icmp ugt i64 %ic2, %dl
  br i1 %over, label %stop, label %done, !prof !0
stop:
  %pfn = getelementptr i64, i64* %st, i64 4
  %fnv = load i64, i64* %pfn
  %fn = inttoptr i64 %fnv to i32 (i8*)*
  %r = call i32 %fn(i8* %uc)
  ret void
done:
  ret void
}

define internal void @acc1(i64* %st, i64 %tix, i64 %aix, i64 %i0, i64 %i1) alwaysinline {
entry:
  %pt = getelementptr i64, i64* %st, i64 %tix
  %tv = load i64, i64* %pt
  %t = inttoptr i64 %tv to i64*
  %pa = getelementptr i64, i64* %t, i64 %i0
  %a = load i64, i64* %pa
  %pb = getelementptr i64, i64* %t, i64 %i1
  %b = load i64, i64* %pb
  %d = sub i64 %b, %a
  %px = getelementptr i64, i64* %st, i64 %aix
  %x = load i64, i64* %px
  %x2 = add i64 %x, %d
  store i64 %x2, i64* %px
  ret void
}

define void @checkpoint_hook(i8* %uc, i64 %addr, i32 %size, i64* %st) {
entry:
  %ic = load i64, i64* %st
  %pdl = getelementptr i64, i64* %st, i64 3
  %dl = load i64, i64* %pdl
  %over = icmp ugt i64 %ic, %dl
  br i1 %over, label %stop, label %done
stop:
  %pfn = getelementptr i64, i64* %st, i64 4
  %fnv = load i64, i64* %pfn
  %fn = inttoptr i64 %fnv to i32 (i8*)*
  %r = call i32 %fn(i8* %uc)
  ret void
done:
  ret void
}

define void @mem_hook(i8* %uc, i32 %type, i64 %addr, i32 %size, i64 %value, i64* %st) {
entry:
  %p = getelementptr i64, i64* %st, i64 13
  %x = load i64, i64* %p
  %x2 = add i64 %x, 1
  store i64 %x2, i64* %p
  ret void
}

!0 = !{!"branch_weights", i32 1, i32 2000}
"""


_NAMES = ("block_hook", "block_hook_precise", "checkpoint_hook", "mem_hook")


def _llvm_target_machine(**kw: Any) -> Any:
    import llvmlite.binding as llvm

    # Older llvmlite needs this; newer ones initialise LLVM themselves and refuse it.
    with contextlib.suppress(RuntimeError):
        llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(opt=2, **kw)


def emit_machine_code() -> dict[str, Any]:
    """Compile the hooks to an object file and return its ``.text`` bytes and the offsets of
    the hook functions, if the code needs no relocation (position-independent, no external
    symbols: the hooks call ``uc_emu_stop`` through a pointer in the shared state)."""
    import llvmlite.binding as llvm

    tm = _llvm_target_machine(reloc="pic", codemodel="small")
    mod = llvm.parse_assembly(_IR)
    mod.verify()
    obj = bytes(tm.emit_object(mod))
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        raise RuntimeError("not a little-endian ELF-64 object")
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 0x3A)
    shdrs = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    names_off = shdrs[shstrndx][4]

    def name(off: int) -> str:
        end = obj.index(b"\0", off)
        return obj[off:end].decode()

    text_idx = next(i for i, sh in enumerate(shdrs) if name(names_off + sh[0]) == ".text")
    for sh in shdrs:
        if sh[1] in (4, 9) and sh[7] == text_idx:  # SHT_RELA / SHT_REL applying to .text
            raise RuntimeError("the hooks' code needs relocations")
    text = obj[shdrs[text_idx][4]:shdrs[text_idx][4] + shdrs[text_idx][5]]
    syms: dict[str, int] = {}
    for sh in shdrs:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        stroff = shdrs[sh[6]][4]
        for k in range(sh[5] // 24):
            st_name, _info, _other, st_shndx, st_value, _size = struct.unpack_from(
                "<IBBHQQ", obj, sh[4] + k * 24)
            if st_shndx == text_idx and st_name:
                syms[name(stroff + st_name)] = st_value
    missing = [n for n in _NAMES if n not in syms]
    if missing:
        raise RuntimeError(f"hooks missing from the object: {missing}")
    return {"code": text.hex(), "syms": {n: syms[n] for n in _NAMES}}


def _cache_file() -> Path:
    import hashlib

    try:
        import llvmlite

        ver = str(llvmlite.__version__)
    except ImportError:
        ver = "none"
    key = hashlib.sha256(f"{_IR}|{ver}|{platform.machine()}|{sys.platform}".encode())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pmupart" / f"native-hooks-{key.hexdigest()[:16]}.json"


def _load_machine_code() -> dict[str, Any] | None:
    """The hooks' machine code: from the cache, else compiled in a child process (so this
    process never loads LLVM, ~80 MB of memory), then cached.  None if that fails."""
    path = _cache_file()
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        pass
    code = ("import json; from pmupart.guest.aarch64.native import emit_machine_code; "
            "print(json.dumps(emit_machine_code()))")
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=120)
        data = dict(json.loads(p.stdout))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    return data


class _Compiled:
    """The compiled hooks: function addresses, kept alive with their code.

    The code is position-independent machine code compiled by LLVM (llvmlite) from the IR
    above, loaded into an executable mapping; where that is not possible (no ELF object, a
    system that refuses executable mappings) the hooks are JIT-compiled in this process."""

    def __init__(self) -> None:
        self._keep: Any = None
        data = _load_machine_code() if sys.platform.startswith("linux") else None
        if data is not None:
            with contextlib.suppress(OSError, ValueError):
                self._map(bytes.fromhex(data["code"]), data["syms"])
                return
        self._jit()

    def _map(self, code: bytes, syms: dict[str, int]) -> None:
        size = max(len(code), 1)
        mem = mmap.mmap(-1, size, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        mem.write(code)
        base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        self._keep = mem
        self.block = base + syms["block_hook"]
        self.block_precise = base + syms["block_hook_precise"]
        self.checkpoint = base + syms["checkpoint_hook"]
        self.mem = base + syms["mem_hook"]

    def _jit(self) -> None:
        import llvmlite.binding as llvm

        tm = _llvm_target_machine()
        mod = llvm.parse_assembly(_IR)
        mod.verify()
        self._keep = llvm.create_mcjit_compiler(mod, tm)
        self._keep.finalize_object()
        self.block = int(self._keep.get_function_address("block_hook"))
        self.block_precise = int(self._keep.get_function_address("block_hook_precise"))
        self.checkpoint = int(self._keep.get_function_address("checkpoint_hook"))
        self.mem = int(self._keep.get_function_address("mem_hook"))


@cache
def compiled() -> _Compiled:
    """The hooks, once per process (from the cache: a fraction of a millisecond)."""
    return _Compiled()


class NativeState:
    """The word array the native hooks and Python share (indices are module constants)."""

    def __init__(self) -> None:
        self.words = (ctypes.c_uint64 * NWORDS)()
        self.addr = ctypes.addressof(self.words)
        self._tables: list[Any] = []

    def set_tables(self, base: int, ld: list[int], st: list[int], br: list[int]) -> None:
        """Install prefix-sum tables (``len == words + 1``) for the code at ``base``."""
        n = len(ld) - 1
        arrays = [(ctypes.c_int64 * (n + 1))(*t) for t in (ld, st, br)]
        self._tables = arrays  # keep them alive
        w = self.words
        w[TBASE] = base
        w[TLD], w[TST], w[TBR] = (ctypes.addressof(a) for a in arrays)
        w[TWORDS] = n


def uc_lib() -> Any:
    """unicorn's shared library, as the Python binding loaded it."""
    from unicorn.unicorn_py3 import unicorn as _u

    return _u.uclib


def add_native_hook(uc: Any, htype: int, fn_addr: int, state: NativeState,
                    begin: int = 1, end: int = 0) -> int:
    """``uc_hook_add`` with a native callback; returns the hook handle."""
    lib = uc_lib()
    h = ctypes.c_size_t()
    # uc_hook_add(uc, &hh, type, callback, user_data, begin, end, ...)
    fn = lib.uc_hook_add
    status = fn(uc._uch, ctypes.byref(h), ctypes.c_int(htype), ctypes.c_void_p(fn_addr),
                ctypes.c_void_p(state.addr), ctypes.c_uint64(begin), ctypes.c_uint64(end))
    if status != 0:
        raise RuntimeError(f"uc_hook_add failed with unicorn error {status}")
    return int(h.value)


def stop_fn_addr() -> int:
    """Address of ``uc_emu_stop`` for the hooks to call."""
    return int(ctypes.cast(uc_lib().uc_emu_stop, ctypes.c_void_p).value or 0)


def del_native_hook(uc: Any, handle: int) -> None:
    """``uc_hook_del`` for a hook added by :func:`add_native_hook`."""
    status = uc_lib().uc_hook_del(uc._uch, ctypes.c_size_t(handle))
    if status != 0:
        raise RuntimeError(f"uc_hook_del failed with unicorn error {status}")
