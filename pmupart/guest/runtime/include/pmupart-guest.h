/* pmupart-guest.h: the freestanding guest runtime shipped with pmupart.
 *
 * Build with `pmupart cc -o prog.elf prog.c` (adds crt0.S, runtime.c, link.ld and this
 * directory to the command line) and run with `pmupart exec prog.elf`.
 *
 * Devices (QEMU virt's addresses, so an image also runs there with -semihosting):
 *   console   Arm semihosting, HLT #0xF000 (SYS_WRITEC, SYS_WRITE0, SYS_WRITE, SYS_EXIT);
 *             a PL011 UART data register at PMUPART_UART_BASE
 *   GICv3     distributor PMUPART_GICD_BASE, redistributor PMUPART_GICR_BASE
 *   RAM       0x40000000, 16 MiB; the image at 0x40080000; the top 64 KiB are reserved
 * Exit status: main()'s return value; PMUPART_EXIT_EXCEPTION (3) after an unhandled
 * exception or interrupt; report_summary() returns 1 when a check failed. */
#ifndef PMUPART_GUEST_H
#define PMUPART_GUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define PMUPART_UART_BASE 0x09000000UL
#define PMUPART_GICD_BASE 0x08000000UL
#define PMUPART_GICR_BASE 0x080A0000UL
#define PMUPART_GICR_SGI_BASE (PMUPART_GICR_BASE + 0x10000UL)
#define PMUPART_PMU_PPI 23

#define PMUPART_EXIT_OK 0
#define PMUPART_EXIT_FAIL 1
#define PMUPART_EXIT_EXCEPTION 3

/* Exception kinds passed to the handlers (the vector's offset within its group / 0x80). */
#define PMUPART_EXC_SYNC 0
#define PMUPART_EXC_IRQ 1
#define PMUPART_EXC_FIQ 2
#define PMUPART_EXC_SERROR 3

#define __pmupart_str(x) #x
#define read_sysreg(r) ({ uint64_t __v; \
    __asm__ volatile("mrs %0, " __pmupart_str(r) : "=r"(__v) :: "memory"); __v; })
#define write_sysreg(v, r) do { uint64_t __w = (uint64_t)(v); \
    __asm__ volatile("msr " __pmupart_str(r) ", %0" :: "r"(__w) : "memory"); } while (0)

static inline void isb(void) { __asm__ volatile("isb" ::: "memory"); }
static inline void dsb_sy(void) { __asm__ volatile("dsb sy" ::: "memory"); }
static inline void irq_enable(void) { __asm__ volatile("msr daifclr, #2" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("msr daifset, #2" ::: "memory"); }
static inline void wfi(void) { __asm__ volatile("wfi" ::: "memory"); }

static inline uint32_t mmio_read32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void mmio_write8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }

/* The context an exception saved: a handler may change elr (e.g. += 4 to skip). */
struct pmupart_frame {
    uint64_t x[31];
    uint64_t elr, spsr, esr, far, pad;
};

/* Handlers: define them in your program to replace the runtime's (which report the
 * exception and exit with PMUPART_EXIT_EXCEPTION). */
void pmupart_sync_handler(struct pmupart_frame *f);
void pmupart_irq_handler(struct pmupart_frame *f);

/* Console and exit. */
void pmupart_putc(char c);
void pmupart_puts(const char *s);
void pmupart_flush(void);
int pmupart_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int pmupart_vprintf(const char *fmt, va_list ap);
void pmupart_uart_putc(char c);
__attribute__((noreturn)) void pmupart_exit(int status);
long pmupart_semihost(long op, const void *arg);

/* Memory: a bump allocator over the RAM after the image (free does nothing). */
void *pmupart_alloc(size_t size);
void *malloc(size_t size);
void free(void *p);
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* Checks, kvm-unit-tests style: PASS/FAIL lines and a summary. */
void report(int pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int report_summary(void);   /* prints the summary; returns PMUPART_EXIT_OK or _FAIL */

/* GICv3: CPU interface on, priority mask open, the redistributor awake. */
void gic_init(void);
void gic_enable_ppi(unsigned int intid, uint8_t priority);
void gic_disable_ppi(unsigned int intid);
uint32_t gic_ack(void);                 /* ICC_IAR1_EL1: the INTID, or 1023 */
void gic_eoi(uint32_t intid);          /* ICC_EOIR1_EL1 */

#endif
