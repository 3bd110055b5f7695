"""Guest instructions per second: AArch64Program (exact INST_RETIRED/CPU_CYCLES, and precise
mode) against unicorn with no hooks on the same loop, in the same run.

    python benchmarks/bench_aarch64.py [--loops N]
"""

from __future__ import annotations

import argparse
import statistics
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", type=int, default=20_000_000)
    loops = ap.parse_args().loops
    for name, body in BODIES.items():
        bench(name, body, loops)


def bench(name: str, body: str, loops: int, repeats: int = 3) -> None:
    """Median of ``repeats`` interleaved runs of each configuration (the machine is shared,
    so single runs are noisy)."""
    src = LOOP.format(loops=loops, body=body)
    insns = (body.count("\n") + 3) * loops
    a = assemble(src)
    print(f"{name} loop, {insns / 1e6:.0f} M guest instructions, median of {repeats}:")
    rates: dict[str, list[float]] = {"bare": [], "exact": [], "precise": []}
    for _ in range(repeats):
        # bare unicorn, no hooks, the same code from the same point
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.mem_map(0, 0x100000)
        uc.mem_write(a.base, a.code)
        t = time.perf_counter()
        uc.emu_start(a.labels["setup"], a.labels["end"])
        rates["bare"].append(insns / (time.perf_counter() - t))
        for precise in (False, True):
            pe = PE.from_core("cortex-a76")
            prog = AArch64Program(a.code, a.base, precise=precise)
            t = time.perf_counter()
            r = prog(pe)
            dt = time.perf_counter() - t
            assert r.x[20] == insns + 4, r.x[20]  # exact: the enabling MSR + 3 setup moves
            rates["precise" if precise else "exact"].append(r.instructions / dt)
    bare = statistics.median(rates["bare"])
    print(f"  unicorn, no hooks                     : {bare / 1e6:7.1f} M/s")
    for key, label in (("exact", "exact INST_RETIRED/CPU_CYCLES"),
                       ("precise", "precise (+LD/ST/BR, MEM_ACCESS)")):
        rate = statistics.median(rates[key])
        print(f"  pmupart, {label:30s}: {rate / 1e6:7.1f} M/s  ({rate / bare:.0%} of bare)")


if __name__ == "__main__":
    main()
