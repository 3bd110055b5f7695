// PMU counting from EL1: exact instruction counts, cycle counter monotonicity, SW_INCR,
// a CHAIN pair, all read back into x19-x28.  Results (any N >= 4 visible counters):
//   x19 = INST_RETIRED over the loop   = 2 * LOOPS + 2   (the enabling MSR and the mov
//         before the loop are counted, the reading MRS is not)
//   x20 = PMCCNTR first read, x21 = second read: x21 > x20
//   x22 = SW_INCR counter after 5 writes of bit 2 = 5 (bit 3: not SW_INCR, stays 0 -> x23)
//   x24 = CHAIN counter (odd) = 1 after its even partner (INST_RETIRED from 0xfffffff0)
//         overflowed once; x25 = the even counter = its increments - 16
//   x26 = PMOVSSET: bit 2 of the chained pair's even counter (counter 2 overflowed) = 0x4
    .equ LOOPS, 1000
_start:
    mov x0, #0x8                // INST_RETIRED
    msr PMEVTYPER0_EL0, x0
    msr PMEVCNTR0_EL0, xzr
    mov x0, #0x80000001         // C and counter 0
    msr PMCNTENSET_EL0, x0
    mov x0, #1                  // PMCR_EL0.E
    msr PMCR_EL0, x0
    mov x1, #LOOPS
loop:
    subs x1, x1, #1
    b.ne loop
    mrs x19, PMEVCNTR0_EL0
    mrs x20, PMCCNTR_EL0
    nop
    nop
    mrs x21, PMCCNTR_EL0

    // SW_INCR on counter 2 (and counter 3 counts nothing: event 0x8 but disabled)
    msr PMEVTYPER2_EL0, xzr     // evtCount 0 = SW_INCR
    msr PMEVCNTR2_EL0, xzr
    mov x0, #4
    msr PMCNTENSET_EL0, x0
    mov x1, #5
swinc:
    msr PMSWINC_EL0, x0
    subs x1, x1, #1
    b.ne swinc
    mrs x22, PMEVCNTR2_EL0
    mrs x23, PMEVCNTR3_EL0
    mov x0, #4
    msr PMCNTENCLR_EL0, x0
    msr PMOVSCLR_EL0, x0

    // CHAIN: counter 2 = INST_RETIRED from 0xfffffff0, counter 3 = CHAIN
    mov x0, #0x8
    msr PMEVTYPER2_EL0, x0
    mov x0, #0x1e
    msr PMEVTYPER3_EL0, x0
    mov x0, #0xfffffff0
    msr PMEVCNTR2_EL0, x0
    msr PMEVCNTR3_EL0, xzr
    mov x0, #0xc
    msr PMCNTENSET_EL0, x0      // both counted from here
    mov x1, #20
chain:
    subs x1, x1, #1
    b.ne chain
    msr PMCNTENCLR_EL0, x0      // not counted (disables first)
    mrs x24, PMEVCNTR3_EL0
    mrs x25, PMEVCNTR2_EL0
    mrs x26, PMOVSSET_EL0
    mov x0, #0x84000008         // PSCI SYSTEM_OFF
    hvc #0
