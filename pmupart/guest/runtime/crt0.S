/* pmupart guest runtime: entry point and exception vectors (AArch64, EL1, MMU off).

   _start enables FP/SIMD at EL1 (CPACR_EL1.FPEN = 0b11, Arm ARM D19 CPACR_EL1) so compiled
   C may use it, sets the stack and VBAR_EL1, zeroes .bss, calls main() and passes its
   return value to pmupart_exit().  Each vector saves the interrupted context in a
   struct pmupart_frame and calls pmupart_handle_exception(kind, frame); the handler may
   change frame->elr/spsr; the context comes back with ERET (Arm ARM D1.3 exception entry and
   return; vector offsets D1.3.2). */

#define FRAME_SIZE 288      /* x0-x30, elr, spsr, esr, far, pad: 36 x 8 */

    .section .text.boot, "ax"
    .global _start
    .type _start, %function
_start:
    mov     x0, #(3 << 20)
    msr     cpacr_el1, x0
    isb
    ldr     x0, =__stack_top
    mov     sp, x0
    ldr     x0, =__pmupart_vectors
    msr     vbar_el1, x0
    isb
    ldr     x0, =__bss_start
    ldr     x1, =__bss_end
1:  cmp     x0, x1
    b.hs    2f
    str     xzr, [x0], #8
    b       1b
2:  bl      main
    bl      pmupart_exit
3:  b       3b
    .ltorg

.macro VENTRY kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       __pmupart_trap
.endm

    .text
    .balign 0x800
    .global __pmupart_vectors
__pmupart_vectors:
    /* current EL with SP_EL0 */
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3
    /* current EL with SP_ELx */
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3
    /* lower EL, AArch64 */
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3
    /* lower EL, AArch32 */
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3

__pmupart_trap:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #240]
    mrs     x1, spsr_el1
    mrs     x2, esr_el1
    stp     x1, x2, [sp, #256]
    mrs     x1, far_el1
    str     x1, [sp, #272]
    mov     x1, sp
    bl      pmupart_handle_exception
    ldp     x30, x1, [sp, #240]
    msr     elr_el1, x1
    ldr     x1, [sp, #256]
    msr     spsr_el1, x1
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret
