"""``pmupart cc``: compile C (and assembly) guest programs against the shipped runtime.

The runtime (``pmupart/guest/runtime``: ``crt0.S``, ``runtime.c``, ``link.ld`` and
``include/pmupart-guest.h``) is added to every build.  The compiler is, in this order: the
``--cc`` option or ``$PMUPART_CC`` (a command line, e.g. ``"aarch64-linux-gnu-gcc"`` or
``"clang"``), the ``ziglang`` wheel (``pip install 'pmupart[guest-c]'``: PyPI only, no system
package; run as ``python -m ziglang cc -target aarch64-freestanding-none``), then an aarch64
cross gcc or clang on PATH.  Each family gets its own target flags; the rest is common:
freestanding, no libc, no stack protector or sanitizers, strict alignment (the MMU is off,
so memory is Device memory and an unaligned access faults on hardware: ARM §B2.5.2).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import click

from pmupart.errors import PmupartError

__all__ = ["CompileError", "Compiler", "build", "find_compiler", "runtime_dir"]

_COMMON = ["-O2", "-g", "-ffreestanding", "-nostdlib", "-fno-stack-protector",
           "-fno-sanitize=all", "-mstrict-align", "-fno-pic", "-static"]
_CROSS_GCC = ("aarch64-linux-gnu-gcc", "aarch64-none-elf-gcc", "aarch64-elf-gcc",
              "aarch64-unknown-linux-gnu-gcc")


class CompileError(PmupartError, RuntimeError):
    """No compiler, or the compiler failed (its output is in the message)."""


@dataclass(frozen=True)
class Compiler:
    """A compiler command and the family that decides its target flags."""

    argv: tuple[str, ...]
    family: str  #: "zig", "clang" or "gcc"

    def target_flags(self) -> list[str]:
        if self.family == "zig":
            return ["-target", "aarch64-freestanding-none"]
        if self.family == "clang":
            return ["--target=aarch64-none-elf", "-fuse-ld=lld"]
        return []

    def describe(self) -> str:
        return " ".join(self.argv)


def runtime_dir() -> Path:
    """Where the runtime's files are (inside the installed package)."""
    return Path(str(resources.files("pmupart.guest") / "runtime"))


def _family(argv: list[str]) -> str:
    name = Path(argv[0]).name
    if "ziglang" in argv or name == "zig":
        return "zig"
    if "clang" in name:
        return "clang"
    return "gcc"


def find_compiler(cc: str | None = None) -> Compiler:
    """The compiler to use (see the module docstring for the order)."""
    spec = cc or os.environ.get("PMUPART_CC")
    if spec:
        argv = shlex.split(spec)
        if not argv:
            raise CompileError("empty compiler command")
        if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
            raise CompileError(f"compiler {argv[0]!r} not found")
        if Path(argv[0]).name == "zig" and argv[1:2] != ["cc"]:
            argv.insert(1, "cc")
        return Compiler(tuple(argv), _family(argv))
    if importlib.util.find_spec("ziglang") is not None:  # the wheel: zig with clang inside
        return Compiler((sys.executable, "-m", "ziglang", "cc"), "zig")
    for name in _CROSS_GCC:
        if shutil.which(name):
            return Compiler((name,), "gcc")
    if shutil.which("clang") and shutil.which("ld.lld"):
        return Compiler(("clang",), "clang")
    raise CompileError("no C compiler for aarch64: pip install 'pmupart[guest-c]' (the ziglang "
                       "wheel), or install an aarch64 cross gcc/clang, or pass --cc")


def build_argv(compiler: Compiler, sources: list[Path], output: Path,
               extra: list[str] | None = None) -> list[str]:
    """The full command line for ``sources`` -> ELF ``output``."""
    rt = runtime_dir()
    return [*compiler.argv, *compiler.target_flags(), *_COMMON, f"-I{rt / 'include'}",
            "-T", str(rt / "link.ld"), str(rt / "crt0.S"), str(rt / "runtime.c"),
            *(str(s) for s in sources), *(extra or []), "-o", str(output)]


def build(sources: list[Path], output: Path, cc: str | None = None,
          extra: list[str] | None = None) -> Path:
    """Compile and link ``sources`` with the runtime into the ELF ``output``."""
    for s in sources:
        if not s.is_file():
            raise CompileError(f"{s}: no such source file")
    compiler = find_compiler(cc)
    argv = build_argv(compiler, sources, output, extra)
    env = dict(os.environ)
    if compiler.family == "zig" and "ZIG_GLOBAL_CACHE_DIR" not in env:
        # zig caches under $HOME; keep the cache usable when HOME is read-only (CI sandboxes)
        env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(Path.home() / ".cache" / "zig"))
    p = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise CompileError(f"{compiler.describe()} failed (exit {p.returncode}):\n"
                           f"{p.stderr.strip() or p.stdout.strip()}")
    return output


@click.command("cc")
@click.argument("sources", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("a.elf"), show_default=True, help="The ELF image to write.")
@click.option("--cc", "cc", default=None,
              help="Compiler command (default: $PMUPART_CC, the ziglang wheel, an aarch64 "
                   "cross gcc, clang).")
@click.option("-X", "extra", multiple=True,
              help="Extra flag for the compiler (repeatable), e.g. -X -O0 -X -DN=4.")
@click.option("--print-command", is_flag=True, help="Print the command line, do not run it.")
def cc_cmd(sources: tuple[Path, ...], output: Path, cc: str | None, extra: tuple[str, ...],
           print_command: bool) -> None:
    """Compile guest C/assembly SOURCES with pmupart's runtime (crt0, console, exit, GIC
    helpers; #include "pmupart-guest.h") into an ELF image for `pmupart exec`.

    \b
    Exit status: 0 built, 2 no compiler or the compiler rejected the sources.
    """
    from pmupart.cli import fail

    try:
        if print_command:
            click.echo(shlex.join(build_argv(find_compiler(cc), list(sources), output,
                                             list(extra))))
            return
        build(list(sources), output, cc, list(extra))
    except CompileError as e:
        fail(str(e))
    click.echo(f"wrote {output}")
