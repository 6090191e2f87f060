"""Inside the lab VM: the attack set against a real e1000e, with the verifier and with only the IOMMU.

With the verifier every attack is refused and audited before the doorbell
(the device's head does not move, the IOMMU never faults); without it the
device really DMAs, and the guest kernel's DMAR fault lines name exactly
the pages each attack aimed at.
"""

from __future__ import annotations

import pytest

from lab.guest.attacks import LAB_ATTACKS, run_lab_attack
from lab.guest.kmsg import BEYOND_MGAW, READ_NOT_SET, WRITE_NOT_SET
from lab.qemu import E1000E_BDF
from tests.attack_reasons import VERIFIER_REASON  # as the emulated attack demo's
from verifier.modes.protection import Protection
from verifier.rules import reasons as R

pytestmark = pytest.mark.lab

NAMES = [name for name, *_ in LAB_ATTACKS]
#: The VT-d fault reason the IOMMU gives each attack's first blocked DMA.
VTD_REASON = {
    "tx-kernel-memory": READ_NOT_SET,
    "tx-other-tenant": READ_NOT_SET,
    "rx-into-kernel": WRITE_NOT_SET,
    "straddle-pin-end": READ_NOT_SET,
    "addr-wrap": BEYOND_MGAW,
    "unpin-in-flight": WRITE_NOT_SET,
    "repoint-ring-base": READ_NOT_SET,
}
TX_ATTACKS = {"tx-kernel-memory", "tx-other-tenant", "straddle-pin-end", "addr-wrap"}


def test_the_reason_tables_name_real_reasons() -> None:
    assert set(VERIFIER_REASON) == set(VTD_REASON) == set(NAMES)
    assert all(reason in R.BY_NAME for reason in VERIFIER_REASON.values())


@pytest.mark.parametrize("name", NAMES)
def test_with_the_verifier_each_attack_is_refused_and_audited_before_the_doorbell(name: str) -> None:
    result = run_lab_attack(E1000E_BDF, name, Protection.VERIFIER)
    assert result.blocked_by == "verifier", result
    assert result.audit_reasons[0] == VERIFIER_REASON[name]
    assert result.faults == []  # nothing reached the IOMMU: the device never saw the descriptor
    assert result.moved == []  # TDH, RDH or TDBAL: the hostile doorbell or register write never reached it
    if name in TX_ATTACKS:
        assert result.expected.hostile == ("TDH",)


@pytest.mark.parametrize("name", NAMES)
def test_without_the_verifier_the_iommu_faults_at_the_attacked_page(name: str) -> None:
    result = run_lab_attack(E1000E_BDF, name, Protection.NONE)
    assert result.audit_reasons == []  # the kernel let everything through
    assert result.blocked_by == "iommu", result
    first = result.matched[0]
    assert (first.write, first.addr) == result.expected.faults[0]
    assert first.reason == VTD_REASON[name]
    assert first.device == E1000E_BDF.removeprefix("0000:")
    assert not result.leaked and not result.corrupted
