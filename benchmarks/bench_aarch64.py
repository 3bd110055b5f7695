"""Guest instructions per second: AArch64Program (exact INST_RETIRED/CPU_CYCLES, and precise
mode) against unicorn with no hooks on the same code, in the same run; a compiled C loop; and
how fast and how small the exception-loop program stops.

    python benchmarks/bench_aarch64.py [--loops N] [--c-loops N] [--no-c]

The C parts need a compiler for `pmupart cc` (the ziglang wheel of the `guest-c` extra).
Targets (issue 10): exact counting at or above half of bare unicorn on the register loop,
precise mode at or above 30 M instructions/s, the exception-loop program stopped within 1 s
and under 100 MB.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc
from unicorn.arm64_const import UC_ARM64_REG_X0, UC_ARM64_REG_X30

from pmupart.arch import PE
from pmupart.guest.aarch64 import RAM_BASE, AArch64Program, assemble

LOOP = """
    mov x0, #0x8
    msr PMEVTYPER0_EL0, x0
    mov x0, #{event1}
    msr PMEVTYPER1_EL0, x0
    mov x0, #0x80000003
    msr PMCNTENSET_EL0, x0
    mov x0, #1
    msr PMCR_EL0, x0
setup:
    mov x5, #0x80000
    mov x1, #{loops}
loop:
{body}
    subs x1, x1, #1
    b.ne loop
end:
    mrs x20, PMEVCNTR0_EL0
    mov x0, #0x84000008
    hvc #0
"""

BODIES = {
    # register-only work: what unicorn runs fastest, the hooks' overhead shows most
    "alu": "    add x2, x2, #1\n    eor x3, x3, x2\n    add x4, x4, x3\n    lsl x6, x4, #1",
    # a load and a store per iteration: unicorn's memory path dominates
    "ldst": "    add x2, x2, #1\n    eor x3, x3, x2\n    ldr x4, [x5]\n    add x4, x4, x3\n"
            "    str x4, [x5]",
}

C_LOOP = r"""
#include "pmupart-guest.h"

uint64_t inst, mem, checksum;
static uint32_t table[256];

__attribute__((noinline)) uint64_t work(uint64_t n)
{
    uint32_t x = 12345, sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        table[x & 255] += x >> 16;
        sum ^= table[(x >> 8) & 255];
    }
    return sum;
}

int main(void)
{
    write_sysreg(0x8, pmevtyper0_el0);      /* INST_RETIRED */
    write_sysreg(PRECISE ? 0x13 : 0x11, pmevtyper1_el0);
    write_sysreg(0x3, pmcntenset_el0);
    write_sysreg(1, pmcr_el0);
    isb();
    checksum = work(LOOPS);
    write_sysreg(0, pmcr_el0);
    isb();
    inst = read_sysreg(pmevcntr0_el0);
    mem = read_sysreg(pmevcntr1_el0);
    return 0;
}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", type=int, default=20_000_000)
    ap.add_argument("--c-loops", type=int, default=5_000_000)
    ap.add_argument("--no-c", action="store_true", help="skip the compiled C parts")
    args = ap.parse_args()
    for name, body in BODIES.items():
        bench(name, body, args.loops)
    if not args.no_c:
        bench_c(args.c_loops)
        exception_loop()


class Clock:
    """Wall and CPU time of a stretch (CPU time is the fair figure on a shared machine: the
    guest runs in this process's one thread)."""

    def __enter__(self) -> Clock:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = max(time.process_time() - self.c0, 1e-9)

    def rates(self, n: int) -> tuple[float, float]:
        return n / self.wall, n / self.cpu


def median_line(label: str, rates: list[tuple[float, float]],
                bare: list[tuple[float, float]] | None) -> None:
    out = []
    for k, what in ((0, "wall"), (1, "CPU")):
        rate = statistics.median(r[k] for r in rates)
        rel = f" ({rate / statistics.median(b[k] for b in bare):4.0%} of bare)" if bare else ""
        out.append(f"{what} {rate / 1e6:7.1f} M/s{rel}")
    print(f"  {label:44s}: " + "   ".join(out))


def bench(name: str, body: str, loops: int, repeats: int = 3) -> None:
    """Median of ``repeats`` interleaved runs of each configuration (the machine is shared,
    so single runs are noisy)."""
    insns = (body.count("\n") + 3) * loops
    exact_src = assemble(LOOP.format(loops=loops, body=body, event1="0x11"))
    precise_src = assemble(LOOP.format(loops=loops, body=body, event1="0x13"))
    print(f"{name} loop, {insns / 1e6:.0f} M guest instructions, median of {repeats}:")
    rates: dict[str, list[tuple[float, float]]] = {"bare": [], "exact": [], "precise": []}
    for _ in range(repeats):
        # bare unicorn, no hooks, the same code from the same point
        a = exact_src
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.mem_map(0, 0x100000)
        uc.mem_write(a.base, a.code)
        with Clock() as c:
            uc.emu_start(a.labels["setup"], a.labels["end"])
        rates["bare"].append(c.rates(insns))
        for key, src in (("exact", exact_src), ("precise", precise_src)):
            pe = PE.from_core("cortex-a76")
            prog = AArch64Program(src.code, src.base, precise=key == "precise")
            with Clock() as c:
                r = prog(pe)
            assert r.x[20] == insns + 4, r.x[20]  # exact: the enabling MSR + 3 setup moves
            assert (key == "precise") == (r.precise_switch_s is not None or prog.precise)
            rates[key].append(c.rates(r.instructions))
    median_line("unicorn, no hooks", rates["bare"], None)
    median_line("pmupart, exact INST_RETIRED/CPU_CYCLES", rates["exact"], rates["bare"])
    median_line("pmupart, precise (+LD/ST/BR, MEM_ACCESS)", rates["precise"], rates["bare"])


def bench_c(loops: int, repeats: int = 3) -> None:
    """A compiled C loop (an LCG over a table: loads, stores, branches): bare unicorn runs
    ``work(n)`` alone; pmupart runs the whole program and counts exactly."""
    from pmupart.guest.cc import CompileError, build

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "loop.c"
        src.write_text(C_LOOP)
        elfs = {}
        t = time.perf_counter()
        try:
            for precise in (0, 1):
                elfs[precise] = build([src], Path(d) / f"loop{precise}.elf", extra=[
                    f"-DLOOPS={loops}", f"-DPRECISE={precise}"])
        except CompileError as e:
            print(f"compiled C loop: skipped ({e})")
            return
        print(f"compiled C loop ({loops} iterations), built in {time.perf_counter() - t:.1f} s, "
              f"median of {repeats}:")
        progs = {p: AArch64Program.from_elf(e) for p, e in elfs.items()}
        rates: dict[str, list[tuple[float, float]]] = {"bare": [], "exact": [], "precise": []}
        switch: list[float] = []
        for _ in range(repeats):
            p0 = progs[0]
            uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
            uc.mem_map(p0.ram_base, p0.mem_size)
            for sg in p0.segments:
                uc.mem_write(sg.addr, sg.data)
            stop = RAM_BASE + 0x100  # nothing there: work() returns to it and stops
            uc.reg_write(UC_ARM64_REG_X0, loops)
            uc.reg_write(UC_ARM64_REG_X30, stop)
            with Clock() as cb:
                uc.emu_start(p0.labels["work"], stop)
            r = progs[0](PE.from_core("cortex-a76"))
            work_insns = r.read_symbol("inst")
            rates["bare"].append(cb.rates(work_insns))
            for key, prog in (("exact", progs[0]), ("precise", progs[1])):
                with Clock() as c:
                    r = prog(PE.from_core("cortex-a76"))
                rates[key].append(c.rates(r.instructions))
                assert r.exit_status == 0
                if key == "precise":
                    assert r.precise_switch_s is not None
                    switch.append(r.precise_switch_s)
                    assert r.read_symbol("mem") >= 2 * loops  # at least a load and a store
        print(f"  {work_insns / 1e6:.1f} M instructions counted in work()")
        median_line("unicorn, no hooks (work() only)", rates["bare"], None)
        median_line("pmupart, exact INST_RETIRED/CPU_CYCLES", rates["exact"], rates["bare"])
        median_line("pmupart, precise (switched on by MEM_ACCESS)", rates["precise"],
                    rates["bare"])
        print(f"  switching to precise mode took {statistics.median(switch) * 1e3:.2f} ms "
              "(tables over the image, hooks, translation cache flush)")


_CHILD = """
import resource, sys
from pmupart.cli import main
try:
    main(["exec", sys.argv[1]])
except SystemExit as e:
    code = e.code
sys.stderr.write(f"MAXRSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
sys.exit(code or 0)
"""


def exception_loop() -> None:
    """tests/guest_c/exception_loop.c (VBAR_EL1 = 0, then UNDEFINED) in a fresh process:
    wall time and peak memory of `pmupart exec`, and of hello.c for comparison."""
    from pmupart.guest.cc import CompileError, build

    here = Path(__file__).resolve().parent.parent / "tests" / "guest_c"
    with tempfile.TemporaryDirectory() as d:
        try:
            elfs = {n: build([here / f"{n}.c"], Path(d) / f"{n}.elf")
                    for n in ("exception_loop", "hello")}
        except CompileError as e:
            print(f"exception loop: skipped ({e})")
            return
        print("pmupart exec in a fresh process (wall time includes Python start-up):")
        for name, elf in elfs.items():
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", _CHILD, str(elf)], capture_output=True,
                               text=True, check=False)
            dt = time.perf_counter() - t
            stop = p.stdout.split("stopped (")[1].split(")")[0] if "stopped (" in p.stdout \
                else "?"
            rss = int(p.stderr.rsplit("MAXRSS ", 1)[1].split()[0]) if "MAXRSS" in p.stderr \
                else 0
            print(f"  {name:15s}: stopped ({stop}), exit {p.returncode}, {dt:.2f} s, "
                  f"peak RSS {rss / 1024:.0f} MB")
        t = time.perf_counter()
        r = AArch64Program.from_elf(elfs["exception_loop"])(PE.from_core("cortex-a76"))
        print(f"  in-process run of exception_loop: {r.stop} after "
              f"{(time.perf_counter() - t) * 1e3:.1f} ms, {r.exception_count} exception(s)")


if __name__ == "__main__":
    main()
