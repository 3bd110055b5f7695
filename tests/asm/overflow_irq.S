// An overflow interrupt taken at the IRQ vector exactly once, with zero skid.
// Counter 0 counts INST_RETIRED from 2^32 - 100 with its interrupt enabled; the loop runs
// far past the overflow.  Results:
//   x20 = interrupts taken = 1
//   x22 = ELR_EL1 in the handler = address of the instruction after the 100th counted one
//   x23 = counter 0 read in the handler = 3 (wrapped to 0, then vector branch, add, mrs)
//   x24 = PMOVSSET read in the handler = 1; x25 = PMOVSSET after clearing = 0
_start:
    adr x0, vectors
    msr VBAR_EL1, x0
    mov x0, #0x8
    msr PMEVTYPER0_EL0, x0
    mov x0, #0xffffff9c
    msr PMEVCNTR0_EL0, x0
    mov x0, #1
    msr PMINTENSET_EL1, x0
    msr PMCNTENSET_EL0, x0
    msr PMCR_EL0, x0            // counted: 1
    msr daifclr, #2             // 2
    mov x1, #1000               // 3
loop:
    subs x1, x1, #1             // the 100th counted instruction is the 49th subs
    b.ne loop
    mov x0, #0x84000008
    hvc #0

    .align 11
vectors:
    .org vectors + 0x200
    b unexpected
    .org vectors + 0x280
    b irq
    .org vectors + 0x400
    b unexpected
    .org vectors + 0x800
irq:
    add x20, x20, #1
    mrs x22, ELR_EL1
    mrs x23, PMEVCNTR0_EL0
    mrs x24, PMOVSSET_EL0
    mov x0, #1
    msr PMOVSCLR_EL0, x0
    mrs x25, PMOVSSET_EL0
    eret
unexpected:
    mrs x28, ESR_EL1
    mov x0, #0x84000008
    hvc #0
