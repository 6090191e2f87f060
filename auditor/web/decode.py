"""A record's descriptor decoded again from its raw bytes, for the record page.

The record carries both ``desc_hex`` (the 16 bytes the kernel snapshotted)
and ``desc`` (the writer's decoding).  The page decodes ``desc_hex`` itself
with the layouts of ring/descriptors.py (the 8254x manual's legacy TX and RX
descriptors, 3.3.3 and 3.2.3) and names the command, status and error bits,
so an auditor sees what the NIC would have read and whether the stored
decoding agrees with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ring import descriptors

#: Bit names per (kind, field), from the constants ring/descriptors.py declares (TXD_CMD_EOP ...).
_BITS = {
    ("tx", "cmd"): "TXD_CMD_",
    ("tx", "status"): "TXD_STAT_",
    ("rx", "status"): "RXD_STAT_",
    ("rx", "errors"): "RXD_ERR_",
}


def _bit_names(prefix: str) -> dict[int, str]:
    return {
        int(value): name[len(prefix) :]
        for name, value in vars(descriptors).items()
        if name.startswith(prefix) and isinstance(value, int)
    }


def flags(kind: str, name: str, value: int) -> list[str]:
    """The names of the bits set in ``value`` (``0x..`` for a bit without a name)."""
    prefix = _BITS.get((kind, name))
    if prefix is None:
        return []
    names = _bit_names(prefix)
    return [names.get(1 << bit, hex(1 << bit)) for bit in range(8) if value >> bit & 1]


def decode(record: dict[str, Any]) -> dict[str, Any] | None:
    """``desc_hex`` decoded by the layout of the record's kind: fields, bit names, and agreement with ``desc``."""
    raw, kind = record.get("desc_hex"), record.get("kind")
    if not isinstance(raw, str) or kind not in ("tx", "rx"):
        return None
    dtype = descriptors.TX_DESC if kind == "tx" else descriptors.RX_DESC
    data = np.frombuffer(bytes.fromhex(raw), dtype=dtype)[0]
    fields = []
    for name in dtype.names or ():
        value = int(data[name])
        fields.append(
            {
                "field": name,
                "value": value,
                "hex": hex(value),
                "bits": flags(kind, name, value),
            }
        )
    decoded = {f["field"]: f["value"] for f in fields}
    return {
        "layout": "legacy TX descriptor (8254x 3.3.3)" if kind == "tx" else "legacy RX descriptor (8254x 3.2.3)",
        "fields": fields,
        "matches_stored": decoded == record.get("desc"),
    }
