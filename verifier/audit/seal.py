"""Anchors: the head of an audit log sealed into a file kept outside the log.

The chain (verifier/audit/log.py) is an unkeyed SHA-256: whoever can write
the log can cut records off its end at a line boundary, or change a record
and recompute every hash after it, and ``verify`` still passes.  Both change
the *head* -- the newest record's hash -- or drop the record that carried
it.  An anchor records ``(seq, hash)`` of the head at one moment; ``verify``
given the anchor then requires the log to still hold that record with that
hash:

* a log cut at a line boundary below the anchor's seq is *cut*;
* a chain rewritten at or before the anchor's seq no longer has the
  anchored hash there: *rewritten*.

Records written after the anchor are covered only by the next anchor
(seal periodically, e.g. at the end of every campaign).

Where the anchor lives decides what it protects against: on another host
or read-only medium, it is out of an attacker's reach.  Next to the log it
would be as writable as the log, so an anchor may carry an HMAC-SHA256
(RFC 2104) under a key that is never written to the log or the anchor (a
key file, or ``NIC_SANDBOX_AUDIT_KEY``): without the key an attacker cannot
forge an anchor for a rewritten log, and ``verify`` given the key refuses an
anchor whose MAC is wrong or missing.  This is the checkpoint idea of
Schneier and Kelsey's secure audit logs and of journald's ``--setup-keys``
sealing, without their evolving keys: whoever holds the key can still seal
a forged log, so the key belongs to the auditor, not to the host it audits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from verifier.audit.log import SCHEMA_VERSION, AuditError, encode, format_wall
from verifier.audit.read import Anchor

#: Keys of an anchor file, in order (``mac`` only when sealed with a key).
ANCHOR_FIELDS = ("v", "kind", "seq", "hash", "records", "bytes", "sealed", "mac")
KIND = "nic-sandbox audit anchor"


def _mac(key: bytes, body: dict[str, Any]) -> str:
    return hmac.new(key, encode(body), hashlib.sha256).hexdigest()


def seal(seq: int, head: str, records: int, size: int, sealed_ns: int, key: bytes | None) -> bytes:
    """The anchor file's bytes for a log whose newest record is ``seq`` with hash ``head``."""
    body: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "kind": KIND,
        "seq": seq,
        "hash": head,
        "records": records,
        "bytes": size,
        "sealed": format_wall(sealed_ns),
    }
    if key is not None:
        body["mac"] = _mac(key, body)
    return encode(body) + b"\n"


def read_anchor(path: Path, key: bytes | None) -> tuple[Anchor, list[str], list[str]]:
    """The anchor in ``path``, the problems with it (a wrong or missing MAC), and notes (a MAC not checked).

    A file that is not an anchor at all raises ``AuditError`` (bad input, not tampering).
    """
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("kind") != KIND or data.get("v") != SCHEMA_VERSION:
            raise ValueError(f"not a v{SCHEMA_VERSION} anchor (written by 'nic-sandbox audit seal')")
        seq, head = data["seq"], data["hash"]
        if type(seq) is not int or seq < -1 or not isinstance(head, str) or len(head) != 64:
            raise ValueError("seq or hash out of range")
        if set(data) - set(ANCHOR_FIELDS):
            raise ValueError(f"unexpected key {sorted(set(data) - set(ANCHOR_FIELDS))[0]!r}")
    except (OSError, ValueError, KeyError) as e:
        raise AuditError(f"{path}: not an audit anchor ({e})") from None
    problems: list[str] = []
    notes: list[str] = []
    mac = data.get("mac")
    if key is None:
        if mac is not None:
            notes.append(f"{path.name} is sealed with a key; no key given, so its MAC was not checked")
    elif mac is None:
        problems.append(f"anchor not sealed: {path.name} has no MAC, but a key was given")
    elif not hmac.compare_digest(str(mac), _mac(key, {k: v for k, v in data.items() if k != "mac"})):
        problems.append(f"anchor forged: the MAC of {path.name} does not match the key")
    return Anchor(seq, head), problems, notes
