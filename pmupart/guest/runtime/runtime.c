/* pmupart guest runtime: console, exit, allocator, string functions, reports, GIC helpers,
 * default exception handlers.  Freestanding C (no libc). */
#include "pmupart-guest.h"

/* Arm semihosting (IHI 0077): operation in W0, parameter block in X1, HLT #0xF000 on A64. */
#define SYS_WRITEC 0x03
#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

long pmupart_semihost(long op, const void *arg)
{
    register long x0 __asm__("x0") = op;
    register const void *x1 __asm__("x1") = arg;
    __asm__ volatile("hlt #0xf000" : "+r"(x0) : "r"(x1) : "memory");
    return x0;
}

static char line[256];
static unsigned int nline;

void pmupart_flush(void)
{
    if (nline) {
        line[nline] = 0;
        pmupart_semihost(SYS_WRITE0, line);
        nline = 0;
    }
}

void pmupart_putc(char c)
{
    line[nline++] = c;
    if (c == '\n' || nline == sizeof(line) - 1)
        pmupart_flush();
}

void pmupart_puts(const char *s)
{
    while (*s)
        pmupart_putc(*s++);
}

void pmupart_uart_putc(char c)
{
    /* PL011: wait while UARTFR.TXFF (bit 5) is set, then write UARTDR. */
    while (mmio_read32(PMUPART_UART_BASE + 0x18) & (1u << 5))
        ;
    mmio_write32(PMUPART_UART_BASE, (uint8_t)c);
}

__attribute__((noreturn)) void pmupart_exit(int status)
{
    uint64_t block[2] = { ADP_STOPPED_APPLICATION_EXIT, (uint64_t)(unsigned)status };
    pmupart_flush();
    pmupart_semihost(SYS_EXIT, block);
    /* No semihosting host: PSCI SYSTEM_OFF. */
    register uint64_t x0 __asm__("x0") = 0x84000008;
    __asm__ volatile("hvc #0" : "+r"(x0) :: "memory");
    for (;;)
        wfi();
}

/* ------------------------------------------------------------------ printf */
static void put_num(unsigned long long v, unsigned base, int width, char pad, int neg)
{
    char buf[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (neg)
        buf[n++] = '-';
    while (n < width)
        buf[n++] = pad;
    while (n)
        pmupart_putc(buf[--n]);
}

int pmupart_vprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            pmupart_putc(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, lng = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng++;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i': {
            long long v = lng ? va_arg(ap, long long) : va_arg(ap, int);
            put_num(v < 0 ? (unsigned long long)-v : (unsigned long long)v, 10, width, pad,
                    v < 0);
            break;
        }
        case 'u':
            put_num(lng ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned), 10, width,
                    pad, 0);
            break;
        case 'x':
            put_num(lng ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned), 16, width,
                    pad, 0);
            break;
        case 'p':
            pmupart_puts("0x");
            put_num((uintptr_t)va_arg(ap, void *), 16, width, pad, 0);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            pmupart_puts(s ? s : "(null)");
            break;
        }
        case 'c':
            pmupart_putc((char)va_arg(ap, int));
            break;
        case '%':
            pmupart_putc('%');
            break;
        default:
            pmupart_putc('%');
            if (!*fmt)
                return 0;
            pmupart_putc(*fmt);
        }
    }
    return 0;
}

int pmupart_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pmupart_vprintf(fmt, ap);
    va_end(ap);
    return 0;
}

/* ------------------------------------------------------------------ memory */
extern char __heap_start[], __heap_end[];
static uintptr_t brk;

void *pmupart_alloc(size_t size)
{
    if (!brk)
        brk = (uintptr_t)__heap_start;
    uintptr_t p = (brk + 15) & ~(uintptr_t)15;
    if (size > (uintptr_t)__heap_end - p)
        return 0;
    brk = p + size;
    return (void *)p;
}

void *malloc(size_t size) { return pmupart_alloc(size); }
void free(void *p) { (void)p; }

void *memset(void *d, int c, size_t n)
{
    volatile unsigned char *p = d;  /* volatile: not turned back into a memset call */
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    volatile unsigned char *a = d;
    const unsigned char *b = s;
    while (n--)
        *a++ = *b++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    volatile unsigned char *a = d;
    const unsigned char *b = s;
    if (a < b) {
        while (n--)
            *a++ = *b++;
    } else {
        while (n) {
            n--;
            a[n] = b[n];
        }
    }
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* ------------------------------------------------------------------ reports */
static unsigned int tests, failures;

void report(int pass, const char *fmt, ...)
{
    va_list ap;
    tests++;
    if (!pass)
        failures++;
    pmupart_puts(pass ? "PASS: " : "FAIL: ");
    va_start(ap, fmt);
    pmupart_vprintf(fmt, ap);
    va_end(ap);
    pmupart_putc('\n');
}

void report_info(const char *fmt, ...)
{
    va_list ap;
    pmupart_puts("INFO: ");
    va_start(ap, fmt);
    pmupart_vprintf(fmt, ap);
    va_end(ap);
    pmupart_putc('\n');
}

int report_summary(void)
{
    pmupart_printf("SUMMARY: %u tests, %u unexpected failures\n", tests, failures);
    return failures ? PMUPART_EXIT_FAIL : PMUPART_EXIT_OK;
}

/* ------------------------------------------------------------------ GICv3 */
#define GICD_CTLR 0x0
#define GICR_WAKER 0x14
#define GICR_ISENABLER0 0x100
#define GICR_ICENABLER0 0x180
#define GICR_IPRIORITYR 0x400

void gic_init(void)
{
    write_sysreg(0x7, S3_0_C12_C12_5);                 /* ICC_SRE_EL1: SRE, DFB, DIB */
    isb();
    mmio_write32(PMUPART_GICD_BASE + GICD_CTLR, 0x12); /* ARE_NS, EnableGrp1NS */
    mmio_write32(PMUPART_GICR_BASE + GICR_WAKER,       /* ProcessorSleep = 0 */
                 mmio_read32(PMUPART_GICR_BASE + GICR_WAKER) & ~2u);
    while (mmio_read32(PMUPART_GICR_BASE + GICR_WAKER) & 4u)  /* ChildrenAsleep */
        ;
    write_sysreg(0xf0, S3_0_C4_C6_0);                  /* ICC_PMR_EL1 */
    write_sysreg(1, S3_0_C12_C12_7);                   /* ICC_IGRPEN1_EL1 */
    isb();
}

void gic_enable_ppi(unsigned int intid, uint8_t priority)
{
    volatile uint8_t *prio = (volatile uint8_t *)(PMUPART_GICR_SGI_BASE + GICR_IPRIORITYR);
    prio[intid] = priority;
    mmio_write32(PMUPART_GICR_SGI_BASE + GICR_ISENABLER0, 1u << intid);
}

void gic_disable_ppi(unsigned int intid)
{
    mmio_write32(PMUPART_GICR_SGI_BASE + GICR_ICENABLER0, 1u << intid);
}

uint32_t gic_ack(void)
{
    uint32_t intid = (uint32_t)read_sysreg(S3_0_C12_C12_0);  /* ICC_IAR1_EL1 */
    __asm__ volatile("dsb sy" ::: "memory");
    return intid;
}

void gic_eoi(uint32_t intid)
{
    write_sysreg(intid, S3_0_C12_C12_1);                   /* ICC_EOIR1_EL1 */
    isb();
}

/* ------------------------------------------------------------------ exceptions */
__attribute__((weak)) void pmupart_sync_handler(struct pmupart_frame *f)
{
    pmupart_printf("unhandled synchronous exception: ESR_EL1=%lx ELR_EL1=%lx FAR_EL1=%lx\n",
                   (unsigned long)f->esr, (unsigned long)f->elr, (unsigned long)f->far);
    pmupart_exit(PMUPART_EXIT_EXCEPTION);
}

__attribute__((weak)) void pmupart_irq_handler(struct pmupart_frame *f)
{
    pmupart_printf("unexpected IRQ at ELR_EL1=%lx\n", (unsigned long)f->elr);
    pmupart_exit(PMUPART_EXIT_EXCEPTION);
}

void pmupart_handle_exception(long kind, struct pmupart_frame *f);

void pmupart_handle_exception(long kind, struct pmupart_frame *f)
{
    if (kind == PMUPART_EXC_SYNC)
        pmupart_sync_handler(f);
    else if (kind == PMUPART_EXC_IRQ)
        pmupart_irq_handler(f);
    else {
        pmupart_printf("unhandled %s exception at ELR_EL1=%lx\n",
                       kind == PMUPART_EXC_FIQ ? "FIQ" : "SError", (unsigned long)f->elr);
        pmupart_exit(PMUPART_EXIT_EXCEPTION);
    }
}
