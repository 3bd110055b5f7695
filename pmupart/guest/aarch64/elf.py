"""Read an AArch64 ELF executable: its loadable segments, entry point and symbols.

Only what a loader needs, from the ELF-64 object file format (System V gABI, "ELF Header",
"Program Header", "Symbol Table"; AArch64 ELF ABI: EM_AARCH64 = 183, little-endian):
``PT_LOAD`` segments are loaded at their physical address (``p_paddr``; the MMU stays
off), ``p_filesz`` bytes from the file and zeros up to ``p_memsz``; ``e_entry`` is where the
program starts; ``SHT_SYMTAB`` gives symbol names and values.  Anything else in the file is
ignored.  A malformed file raises :class:`ElfError` naming what is wrong.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

from pmupart.errors import PmupartError

__all__ = ["ElfError", "ElfImage", "Segment", "parse_elf"]

_EM_AARCH64 = 183
_ET_EXEC, _ET_DYN = 2, 3
_PT_LOAD = 1
_PF_X = 1
_SHT_SYMTAB = 2


class ElfError(PmupartError, ValueError):
    """The file is not a loadable AArch64 ELF-64 executable."""


@dataclass(frozen=True)
class Segment:
    """One piece of the image: ``data`` at ``addr``, zero-filled up to ``memsz``."""

    addr: int
    data: bytes
    memsz: int
    executable: bool

    @property
    def end(self) -> int:
        return self.addr + self.memsz


@dataclass(frozen=True)
class ElfImage:
    entry: int
    segments: tuple[Segment, ...]
    symbols: dict[str, int]  #: name -> value (address) of the defined symbols
    sizes: dict[str, int]  #: name -> st_size


def parse_elf(data: bytes) -> ElfImage:
    """Parse ``data`` (the whole file)."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file (no \\x7fELF magic)")
    if data[4] != 2:
        raise ElfError("not ELF-64 (EI_CLASS is not ELFCLASS64)")
    if data[5] != 1:
        raise ElfError("not little-endian (EI_DATA is not ELFDATA2LSB)")
    (e_type, e_machine, _ver, e_entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize,
     e_phnum, e_shentsize, e_shnum, _shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
    if e_machine != _EM_AARCH64:
        raise ElfError(f"e_machine is {e_machine}, not EM_AARCH64 ({_EM_AARCH64})")
    if e_type not in (_ET_EXEC, _ET_DYN):
        raise ElfError(f"e_type is {e_type}: not an executable (a relocatable object? link "
                       "it first, e.g. with `pmupart cc`)")
    if e_phnum == 0:
        raise ElfError("no program headers: nothing to load")
    if e_phentsize < 56 or e_phoff + e_phnum * e_phentsize > len(data):
        raise ElfError("program header table is truncated or malformed")
    segs: list[Segment] = []
    for i in range(e_phnum):
        p_type, p_flags, p_offset, _vaddr, p_paddr, p_filesz, p_memsz, _align = \
            struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p_type != _PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz:
            raise ElfError(f"segment {i}: p_filesz {p_filesz:#x} > p_memsz {p_memsz:#x}")
        if p_offset + p_filesz > len(data):
            raise ElfError(f"segment {i}: file data at {p_offset:#x}+{p_filesz:#x} runs past "
                           f"the end of the file ({len(data):#x} bytes)")
        segs.append(Segment(p_paddr, bytes(data[p_offset:p_offset + p_filesz]), p_memsz,
                            bool(p_flags & _PF_X)))
    if not segs:
        raise ElfError("no PT_LOAD segment with contents")
    segs.sort(key=lambda s: s.addr)
    for a, b in itertools.pairwise(segs):
        if b.addr < a.end:
            raise ElfError(f"segments overlap: {a.addr:#x}-{a.end:#x} and {b.addr:#x}")
    symbols: dict[str, int] = {}
    sizes: dict[str, int] = {}
    if e_shoff and e_shnum and e_shentsize >= 64 and e_shoff + e_shnum * e_shentsize <= len(data):
        shdrs = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)
                 for i in range(e_shnum)]
        for sh in shdrs:
            if sh[1] != _SHT_SYMTAB or sh[6] >= e_shnum:
                continue
            off, size, entsize = sh[4], sh[5], sh[9] or 24
            stroff, strsize = shdrs[sh[6]][4], shdrs[sh[6]][5]
            if off + size > len(data) or stroff + strsize > len(data):
                raise ElfError("symbol table runs past the end of the file")
            strtab = data[stroff:stroff + strsize]
            for k in range(size // entsize):
                st_name, _info, _other, st_shndx, st_value, st_size = struct.unpack_from(
                    "<IBBHQQ", data, off + k * entsize)
                if st_name == 0 or st_shndx == 0 or st_name >= len(strtab):
                    continue
                end = strtab.find(b"\0", st_name)
                name = strtab[st_name:end if end >= 0 else len(strtab)].decode("utf-8",
                                                                              "replace")
                symbols.setdefault(name, st_value)
                sizes.setdefault(name, st_size)
    return ElfImage(e_entry, tuple(segs), symbols, sizes)
