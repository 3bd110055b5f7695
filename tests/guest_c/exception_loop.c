/* A guest that breaks its vectors: VBAR_EL1 at 0 (no handler there), then an UNDEFINED
   instruction.  Without loop detection it would fault at the vector forever. */
#include "pmupart-guest.h"

int main(void)
{
    write_sysreg(0, vbar_el1);
    isb();
    __asm__ volatile("udf #0");
    return 0;
}
