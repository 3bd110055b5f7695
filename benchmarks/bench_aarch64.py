"""Guest instructions per second: AArch64Program (exact INST_RETIRED/CPU_CYCLES, and precise
mode) against unicorn with no hooks on the same loop, in the same run.

    python benchmarks/bench_aarch64.py [--loops N]
"""

from __future__ import annotations

import argparse
import time

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc

from pmupart.arch import PE
from pmupart.guest.aarch64 import AArch64Program, assemble

LOOP = """
    mov x0, #0x8
    msr PMEVTYPER0_EL0, x0
    mov x0, #0x13
    msr PMEVTYPER1_EL0, x0
    mov x0, #0x80000003
    msr PMCNTENSET_EL0, x0
    mov x0, #1
    msr PMCR_EL0, x0
setup:
    mov x5, #0x80000
    mov x1, #{loops}
loop:
    add x2, x2, #1
    eor x3, x3, x2
    ldr x4, [x5]
    add x4, x4, x3
    str x4, [x5]
    subs x1, x1, #1
    b.ne loop
end:
    mrs x20, PMEVCNTR0_EL0
    mov x0, #0x84000008
    hvc #0
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", type=int, default=20_000_000)
    loops = ap.parse_args().loops
    src = LOOP.format(loops=loops)
    insns = 7 * loops
    a = assemble(src)
    # bare unicorn, no hooks, the loop only
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(0, 0x100000)
    uc.mem_write(a.base, a.code)
    t = time.perf_counter()
    uc.emu_start(a.labels["setup"], a.labels["end"])
    bare = insns / (time.perf_counter() - t)
    print(f"unicorn, no hooks:            {bare / 1e6:7.1f} M guest instructions/s")
    for precise in (False, True):
        pe = PE.from_core("cortex-a76")
        prog = AArch64Program(a.code, a.base, precise=precise)
        t = time.perf_counter()
        r = prog(pe)
        dt = time.perf_counter() - t
        assert r.x[20] == insns + 4, r.x[20]  # exact: the enabling MSR and 3 setup moves
        rate = r.instructions / dt
        label = "precise (LD/ST/BR, MEM_ACCESS)" if precise else "exact INST_RETIRED/CPU_CYCLES"
        print(f"pmupart, {label:30s}: {rate / 1e6:7.1f} M/s  ({rate / bare:.0%} of bare)")


if __name__ == "__main__":
    main()
