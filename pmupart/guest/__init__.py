"""Guest programs: real AArch64 machine code (:mod:`pmupart.guest.aarch64`)."""
