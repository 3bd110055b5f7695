/* pmupart's guest PMU checks: the classic vPMU guest tests, written for pmupart.
 *
 * Each check prints PASS/FAIL lines; the exit status is 1 if any failed.  Values the
 * harness (tests/test_guest_c.py) compares per configuration are left in globals:
 * pmcr_n, swinc_filtered, pmuver. */
#include "pmupart-guest.h"

#define PMCR_E (1u << 0)
#define PMCR_P (1u << 1)
#define PMCR_C (1u << 2)
#define PMCR_LP (1u << 7)
#define EVT_SW_INCR 0x00
#define EVT_INST_RETIRED 0x08
#define EVT_CPU_CYCLES 0x11
#define EVT_MEM_ACCESS 0x13
#define EVT_CHAIN 0x1e
#define EVTYPER_P (1ul << 31)   /* don't count at EL1 */
#define CYCLE_BIT (1ul << 31)
#define LOOPS 1000

uint64_t pmcr_n, swinc_filtered, pmuver, irq_count_total;

static volatile unsigned irqs, spurious, undefs, expect_undef;
static volatile uint64_t ovs_seen, last_intid;

void pmupart_irq_handler(struct pmupart_frame *f)
{
    (void)f;
    uint32_t id = gic_ack();
    if (id == 1023) {
        spurious++;
        return;
    }
    last_intid = id;
    uint64_t ovs = read_sysreg(pmovsclr_el0);
    ovs_seen |= ovs;
    write_sysreg(ovs, pmovsclr_el0);   /* clear what we saw: the level drops */
    isb();
    irqs++;
    irq_count_total++;
    gic_eoi(id);
}

void pmupart_sync_handler(struct pmupart_frame *f)
{
    uint64_t ec = f->esr >> 26;
    if (expect_undef && ec == 0) {   /* UNDEFINED: skip the access */
        undefs++;
        f->elr += 4;
        return;
    }
    pmupart_printf("FAIL: unexpected exception ESR=%lx ELR=%lx\n", f->esr, f->elr);
    pmupart_exit(PMUPART_EXIT_EXCEPTION);
}

static void pmu_reset(void)
{
    write_sysreg(~0ul, pmcntenclr_el0);
    write_sysreg(~0ul, pmintenclr_el1);
    write_sysreg(~0ul, pmovsclr_el0);
    write_sysreg(0, pmccfiltr_el0);
    write_sysreg(PMCR_P | PMCR_C, pmcr_el0);
    isb();
}

static void write_evtyper(unsigned n, uint64_t v)
{
    write_sysreg(n, pmselr_el0);
    isb();
    write_sysreg(v, pmxevtyper_el0);
    isb();
}

static void write_evcntr(unsigned n, uint64_t v)
{
    write_sysreg(n, pmselr_el0);
    isb();
    write_sysreg(v, pmxevcntr_el0);
    isb();
}

static uint64_t read_evcntr(unsigned n)
{
    write_sysreg(n, pmselr_el0);
    isb();
    return read_sysreg(pmxevcntr_el0);
}

/* Run LOOPS iterations of a 2-instruction loop between enabling and disabling the PMU. */
static void counted_loop(uint64_t pmcr)
{
    uint64_t n = LOOPS;
    __asm__ volatile("msr pmcr_el0, %[e]\n"
                     "isb\n"
                     "1: subs %[n], %[n], #1\n"
                     "b.ne 1b\n"
                     "msr pmcr_el0, %[z]\n"
                     "isb\n"
                     : [n] "+r"(n) : [e] "r"(pmcr | PMCR_E), [z] "r"(pmcr) : "cc", "memory");
}

static void check_pmcr(void)
{
    uint64_t pmcr = read_sysreg(pmcr_el0);
    pmcr_n = (pmcr >> 11) & 0x1f;
    report(pmcr_n >= 1 && pmcr_n <= 31, "pmcr: N = %lu", pmcr_n);
    report(!(pmcr & PMCR_E), "pmcr: E is 0 out of reset");
    write_evtyper(0, EVT_SW_INCR);
    write_evcntr(0, 0x1234);
    write_sysreg(0x1234, pmccntr_el0);
    write_sysreg(PMCR_P | PMCR_C, pmcr_el0);
    isb();
    report(read_evcntr(0) == 0, "pmcr: P resets the event counters");
    report(read_sysreg(pmccntr_el0) == 0, "pmcr: C resets the cycle counter");
    report(!(read_sysreg(pmcr_el0) & (PMCR_P | PMCR_C)), "pmcr: P and C read as 0");
}

static void check_cycle_counter(void)
{
    pmu_reset();
    write_sysreg(CYCLE_BIT, pmcntenset_el0);
    write_sysreg(PMCR_E, pmcr_el0);
    isb();
    uint64_t prev = read_sysreg(pmccntr_el0);
    int ok = 1;
    for (int i = 0; i < 100; i++) {
        uint64_t now = read_sysreg(pmccntr_el0);
        if (now <= prev) {
            ok = 0;
            report_info("PMCCNTR went from %lu to %lu at read %d", prev, now, i);
        }
        prev = now;
    }
    report(ok, "cycle counter: strictly increasing over 100 back-to-back reads");
    write_sysreg(0, pmcr_el0);
    isb();
    uint64_t a = read_sysreg(pmccntr_el0), b = read_sysreg(pmccntr_el0);
    report(a == b, "cycle counter: stops with PMCR.E = 0");
}

/* Loads, stores and branches: something for every event the PMU advertises. */
static volatile uint64_t scratch[8];

static void workload(void)
{
    for (int i = 0; i < 50; i++) {
        scratch[i & 7] = scratch[(i + 1) & 7] + (uint64_t)i;
    }
    write_sysreg(1, pmswinc_el0);
}

static void check_pmceid(void)
{
    uint64_t ceid[2] = { read_sysreg(pmceid0_el0), read_sysreg(pmceid1_el0) };
    report(ceid[0] & (1ul << EVT_SW_INCR), "pmceid: SW_INCR advertised");
    report(ceid[0] & (1ul << EVT_INST_RETIRED), "pmceid: INST_RETIRED advertised");
    report(ceid[0] & (1ul << EVT_CPU_CYCLES), "pmceid: CPU_CYCLES advertised");
    int zero = 0, tried = 0;
    for (unsigned e = 0; e < 64; e++) {
        if (!((ceid[e / 32] >> (e % 32)) & 1) || e == EVT_CHAIN)
            continue;
        pmu_reset();
        write_evtyper(0, e);
        write_sysreg(1, pmcntenset_el0);
        write_sysreg(PMCR_E, pmcr_el0);
        isb();
        workload();
        write_sysreg(0, pmcr_el0);
        isb();
        uint64_t c = read_evcntr(0);
        tried++;
        if (!c) {
            zero++;
            report_info("advertised event %x counted 0", e);
        }
    }
    report(tried >= 3 && zero == 0, "pmceid: every advertised event counts (%d events)", tried);
}

static void check_basic_counts(void)
{
    pmu_reset();
    write_evtyper(0, EVT_INST_RETIRED);
    write_evtyper(1, EVT_CPU_CYCLES);
    write_sysreg(0x3 | CYCLE_BIT, pmcntenset_el0);
    counted_loop(0);
    uint64_t inst = read_evcntr(0), cyc = read_evcntr(1), ccnt = read_sysreg(pmccntr_el0);
    report_info("INST_RETIRED %lu, CPU_CYCLES %lu, PMCCNTR %lu", inst, cyc, ccnt);
    report(inst >= 2 * LOOPS && inst <= 2 * LOOPS + 4,
           "basic counts: INST_RETIRED %lu for a %d-instruction loop", inst, 2 * LOOPS);
    report(cyc > LOOPS / 4, "basic counts: CPU_CYCLES counted (%lu)", cyc);
    report(cyc == ccnt, "basic counts: CPU_CYCLES on an event counter equals PMCCNTR");
}

static void check_mem_access(void)
{
    pmu_reset();
    write_evtyper(0, EVT_MEM_ACCESS);
    write_sysreg(1, pmcntenset_el0);
    uint64_t n = LOOPS, v;
    __asm__ volatile("msr pmcr_el0, %[e]\n"
                     "isb\n"
                     "1: ldr %[v], [%[p]]\n"
                     "subs %[n], %[n], #1\n"
                     "b.ne 1b\n"
                     "msr pmcr_el0, xzr\n"
                     "isb\n"
                     : [n] "+r"(n), [v] "=&r"(v)
                     : [e] "r"((uint64_t)PMCR_E), [p] "r"(&scratch[0]) : "cc", "memory");
    uint64_t c = read_evcntr(0);
    report(c >= LOOPS && c <= LOOPS + 2, "mem_access: %lu accesses for %d loads", c, LOOPS);
}

static void check_sw_incr(void)
{
    pmu_reset();
    write_evtyper(0, EVT_SW_INCR);
    write_evtyper(1, EVT_SW_INCR | EVTYPER_P);
    write_evtyper(2, EVT_SW_INCR);
    write_sysreg(0x3, pmcntenset_el0);   /* counter 2 stays disabled */
    write_sysreg(PMCR_E, pmcr_el0);
    isb();
    for (int i = 0; i < 10; i++)
        write_sysreg(0x7, pmswinc_el0);
    isb();
    uint64_t c0 = read_evcntr(0);
    swinc_filtered = read_evcntr(1);
    report(c0 == 10, "sw_incr: 10 increments counted (%lu)", c0);
    report(read_evcntr(2) == 0, "sw_incr: a disabled counter does not count");
    report_info("sw_incr: counter filtering EL1 counted %lu", swinc_filtered);
    write_sysreg(0, pmcr_el0);
    isb();
    write_sysreg(1, pmswinc_el0);
    isb();
    report(read_evcntr(0) == 10, "sw_incr: nothing counts with PMCR.E = 0");
}

static void check_chain(void)
{
    /* Counter 0 (SW_INCR) at 0xffffffff overflows into counter 1 (CHAIN). */
    pmu_reset();
    write_evtyper(0, EVT_SW_INCR);
    write_evtyper(1, EVT_CHAIN);
    write_evcntr(0, 0xffffffff);
    write_sysreg(0x3, pmcntenset_el0);
    write_sysreg(PMCR_E, pmcr_el0);
    isb();
    write_sysreg(1, pmswinc_el0);
    isb();
    uint64_t c0 = read_evcntr(0) & 0xffffffff, c1 = read_evcntr(1);
    uint64_t ovs = read_sysreg(pmovsset_el0);
    report(c0 == 0 && c1 == 1, "chain: low half wrapped (%lx), high half counted (%lu)", c0, c1);
    report((ovs & 0x3) == 0x1, "chain: PMOVS has the low counter's bit only (%lx)", ovs);

    /* Promotion: counter 1 counts SW_INCR on its own, then becomes CHAIN. */
    pmu_reset();
    write_evtyper(0, EVT_SW_INCR);
    write_evtyper(1, EVT_SW_INCR);
    write_evcntr(0, 0xfffffffe);
    write_sysreg(0x3, pmcntenset_el0);
    write_sysreg(PMCR_E, pmcr_el0);
    isb();
    write_sysreg(0x3, pmswinc_el0);      /* both count: 0xffffffff and 1 */
    isb();
    write_evtyper(1, EVT_CHAIN);         /* promote the pair */
    write_sysreg(0x1, pmswinc_el0);      /* counter 0 overflows into counter 1 */
    isb();
    c0 = read_evcntr(0) & 0xffffffff;
    c1 = read_evcntr(1);
    report(c0 == 0 && c1 == 2, "chain promotion: pair counts on (%lx, %lu)", c0, c1);
    write_sysreg(0, pmcr_el0);
    isb();
}

static void check_64bit(void)
{
    pmuver = (read_sysreg(id_aa64dfr0_el1) >> 8) & 0xf;
    if (pmuver < 6 || pmuver == 0xf) {
        report_info("64-bit counters: PMUVer %lu has no PMCR.LP", pmuver);
        return;
    }
    pmu_reset();
    write_evtyper(0, EVT_SW_INCR);
    write_evcntr(0, 0xffffffff);
    write_sysreg(1, pmcntenset_el0);
    write_sysreg(PMCR_E | PMCR_LP, pmcr_el0);
    isb();
    write_sysreg(1, pmswinc_el0);
    isb();
    uint64_t c = read_evcntr(0);
    report(c == 0x100000000ul, "64-bit counters: LP = 1 counts past 32 bits (%lx)", c);
    report(!(read_sysreg(pmovsset_el0) & 1), "64-bit counters: no overflow at 32 bits");
    write_evcntr(0, ~0ul);
    write_sysreg(1, pmswinc_el0);
    isb();
    report(read_evcntr(0) == 0 && (read_sysreg(pmovsset_el0) & 1),
           "64-bit counters: overflow at 64 bits");
    write_sysreg(0, pmcr_el0);
    isb();
}

static void overflow_once(unsigned expected_irqs)
{
    write_evcntr(0, 0xffffffff - 200);
    write_sysreg(1, pmcntenset_el0);
    write_sysreg(PMCR_E, pmcr_el0);
    isb();
    uint64_t n = 400;
    __asm__ volatile("1: subs %0, %0, #1\nb.ne 1b" : "+r"(n) :: "cc");
    write_sysreg(0, pmcr_el0);
    isb();
    report(irqs == expected_irqs, "overflow interrupt: %u taken (want %u)", irqs, expected_irqs);
}

static void check_overflow_irq(void)
{
    gic_init();
    gic_enable_ppi(PMUPART_PMU_PPI, 0x80);
    pmu_reset();
    write_evtyper(0, EVT_INST_RETIRED);
    write_sysreg(1, pmintenset_el1);
    irq_enable();
    overflow_once(1);
    report(last_intid == PMUPART_PMU_PPI, "overflow interrupt: INTID %lu", last_intid);
    report(ovs_seen == 0x1, "overflow interrupt: PMOVS was %lx in the handler", ovs_seen);
    report(!read_sysreg(pmovsset_el0), "overflow interrupt: the handler cleared PMOVS");
    ovs_seen = 0;
    overflow_once(2);
    report(ovs_seen == 0x1, "overflow interrupt: second overflow, PMOVS %lx", ovs_seen);
    /* Interrupt disabled: the flag is set, nothing is taken. */
    write_sysreg(1, pmintenclr_el1);
    overflow_once(2);
    report(read_sysreg(pmovsset_el0) & 1, "overflow interrupt: PMINTEN clear, flag still set");
    irq_disable();
    report(spurious == 0, "overflow interrupt: no spurious acknowledge (%u)", spurious);
    gic_disable_ppi(PMUPART_PMU_PPI);
    pmu_reset();
}

#define ACCESS_EVCNTR(n) case n: v = read_sysreg(pmevcntr##n##_el0); break;

static uint64_t read_pmevcntr(unsigned n)
{
    uint64_t v = 0;
    switch (n) {
    ACCESS_EVCNTR(0) ACCESS_EVCNTR(1) ACCESS_EVCNTR(2) ACCESS_EVCNTR(3) ACCESS_EVCNTR(4)
    ACCESS_EVCNTR(5) ACCESS_EVCNTR(6) ACCESS_EVCNTR(7) ACCESS_EVCNTR(8) ACCESS_EVCNTR(9)
    ACCESS_EVCNTR(10) ACCESS_EVCNTR(11) ACCESS_EVCNTR(12) ACCESS_EVCNTR(13) ACCESS_EVCNTR(14)
    ACCESS_EVCNTR(15) ACCESS_EVCNTR(16) ACCESS_EVCNTR(17) ACCESS_EVCNTR(18) ACCESS_EVCNTR(19)
    ACCESS_EVCNTR(20) ACCESS_EVCNTR(21) ACCESS_EVCNTR(22) ACCESS_EVCNTR(23) ACCESS_EVCNTR(24)
    ACCESS_EVCNTR(25) ACCESS_EVCNTR(26) ACCESS_EVCNTR(27) ACCESS_EVCNTR(28) ACCESS_EVCNTR(29)
    ACCESS_EVCNTR(30)
    }
    return v;
}

static void check_beyond_n(void)
{
    unsigned n = (unsigned)pmcr_n;
    expect_undef = 1;
    undefs = 0;
    (void)read_pmevcntr(n - 1);
    report(undefs == 0, "beyond N: counter N-1 = %u is accessible", n - 1);
    for (unsigned i = n; i < 31; i++)
        (void)read_pmevcntr(i);
    report(undefs == 31 - n, "beyond N: counters %u..30 UNDEFINED (%u of %u)", n, undefs,
           31 - n);
    expect_undef = 0;
}

int main(void)
{
    check_pmcr();
    check_cycle_counter();
    check_pmceid();
    check_basic_counts();
    check_mem_access();
    check_sw_incr();
    check_chain();
    check_64bit();
    check_overflow_irq();
    check_beyond_n();
    return report_summary();
}
