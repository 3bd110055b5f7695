"""First checks of the architecture core (the full suites live in tests/test_arch_*.py)."""

from pmupart.arch import PE, Outcome


def test_guest_sees_hpmn_counters_and_traps_above() -> None:
    # spec §3 (PMCR_EL0.N reads as HPMN at EL1) and §8.2 (counter >= HPMN traps with FGT)
    pe = PE(num_counters=6, pmuver="V3P5", fgt=True)
    with pe.at_el(2):
        assert pe.write("MDCR_EL2", 4 | (1 << 7)).ok
    pe.el = 1
    assert (pe.read("PMCR_EL0").value >> 11) & 0x1F == 4
    assert pe.read("PMEVCNTR4_EL0").outcome is Outcome.TRAP_EL2
    assert pe.read("PMEVCNTR3_EL0").outcome is Outcome.OK
    assert pe.read("PMEVCNTR6_EL0").outcome is Outcome.UNDEFINED


def test_count_is_arithmetic_with_chain() -> None:
    # spec §6: 32-bit counter overflow sets PMOVS and feeds CHAIN to the odd counter
    pe = PE(num_counters=6, pmuver="V3P1")
    pe.el = 1
    pe.write("PMEVTYPER0_EL0", 0x08)
    pe.write("PMEVTYPER1_EL0", 0x1E)
    pe.write("PMCNTENSET_EL0", 0b11)
    pe.write("PMCR_EL0", 1)
    pe.count({"INST_RETIRED": 5 * (1 << 32) + 7})
    assert pe.read("PMEVCNTR0_EL0").value == 7
    assert pe.read("PMEVCNTR1_EL0").value == 5
    assert pe.read("PMOVSSET_EL0").value == 1
