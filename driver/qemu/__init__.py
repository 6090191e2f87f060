"""QEMU's e1000 over qtest: QEMU's device model with no guest OS, programmed by the same user driver."""
