/* The smallest guest: a line on the console, a symbol to read back, an exit status. */
#include "pmupart-guest.h"

uint64_t hello_answer;

int main(void)
{
    pmupart_printf("hello from EL%lu, PMCR_EL0.N = %lu\n",
                   (read_sysreg(CurrentEL) >> 2) & 3, (read_sysreg(pmcr_el0) >> 11) & 0x1f);
    pmupart_uart_putc('u');
    pmupart_uart_putc('\n');
    hello_answer = 42;
    return 0;
}
