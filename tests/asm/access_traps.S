// Accesses beyond the visible counters, and PMUSERENR_EL0 gating from EL0.
// The EL1 sync handler logs each exception's EC into x26 (one byte each, oldest lowest),
// counts them in x27 and skips the instruction; SVC from EL0 returns to EL1.
// Accesses, in order:
//   EL1: MRS PMEVCNTR4_EL0   OK when 4 < HPMN; else the hypervisor injects UNDEF (EC 0x00)
//   EL1: MRS PMEVCNTR30_EL0  counter 30 >= N: UNDEFINED with FEAT_FGT (EC 0x00)
//   EL0: MRS PMCCNTR_EL0, PMUSERENR_EL0 = 0: trap to EL1 (EC 0x18), x22 cleared
//   EL0: SVC #1 (EC 0x15)
//   EL0: MRS PMCCNTR_EL0, PMUSERENR_EL0.CR = 1: allowed (no exception)
//   EL0: MSR PMINTENSET_EL1: UNDEFINED at EL0 always (EC 0x00)
//   EL0: SVC #2 (EC 0x15)
// x19 = PMCR_EL0.N as EL1 reads it (N on a bare PE, HPMN under a partitioned/emulated PMU).
_start:
    adr x0, vectors
    msr VBAR_EL1, x0
    mrs x0, PMCR_EL0
    lsr x0, x0, #11
    mov x1, #0x1f
    and x19, x0, x1
    mov x9, #0x5a
    mov x20, xzr
    mrs x20, PMEVCNTR4_EL0      // may fault: handler skips it, x20 stays 0
    cbz x20, L1
    mov x20, x9
L1:  mov x21, xzr
    mrs x21, PMEVCNTR30_EL0     // counter 30 is not implemented on a 6-counter PE
    cbz x21, L2
    mov x21, x9
L2:  msr PMUSERENR_EL0, xzr
    adr x0, el0_a
    msr ELR_EL1, x0
    msr SPSR_EL1, xzr           // EL0t
    eret
back_a:
    mov x0, #4                  // PMUSERENR_EL0.CR
    msr PMUSERENR_EL0, x0
    adr x0, el0_b
    msr ELR_EL1, x0
    msr SPSR_EL1, xzr
    eret
back_b:
    mov x0, #0x84000008
    hvc #0

el0_a:
    mov x22, #0x5a
    mrs x22, PMCCNTR_EL0        // traps to EL1 (EC 0x18): the handler clears x22
    svc #1
el0_b:
    mov x23, xzr
    mrs x23, PMCCNTR_EL0        // allowed: cycles so far (non-zero)
    cbz x23, L3
    mov x23, #0x5a
L3:  mov x24, xzr
    mov x0, #1
    msr PMINTENSET_EL1, x0      // UNDEFINED at EL0 (always)
    svc #2

    .align 11
vectors:
    .org vectors + 0x200
    b sync
    .org vectors + 0x400
    b sync
    .org vectors + 0x800
sync:
    mrs x10, ESR_EL1
    lsr x10, x10, #26           // EC
    lsl x12, x10, #0
    // x26 |= EC << (8 * x27): build the shift with a loop (no variable shift in the subset)
    mov x13, x27
L4:  cbz x13, L5
    lsl x12, x12, #8
    sub x13, x13, #1
    b L4
L5:  orr x26, x26, x12
    add x27, x27, #1
    cmp x10, #0x15              // SVC: return to EL1 code
    b.eq svc
    cmp x10, #0x18              // trapped MRS at EL0: mark x22 = 0
    b.ne L6
    mov x22, xzr
L6:  mrs x10, ELR_EL1
    add x10, x10, #4
    msr ELR_EL1, x10
    eret
svc:
    mrs x10, ESR_EL1
    mov x11, #0xffff
    and x10, x10, x11
    cmp x10, #1
    b.eq L7
    adr x0, back_b
    b L8
L7:  adr x0, back_a
L8:  msr ELR_EL1, x0
    mov x0, #0x5                // EL1h
    msr SPSR_EL1, x0
    eret
