"""Write the hostile-input corpus: files no command of ``nic-sandbox`` may crash or hang on.

Run ``python tests/hostile/make_corpus.py`` to regenerate; its output is
committed so each case can be read.  Every file here must be refused with exit
code 2 and one line on stderr naming the file (tests/hostile/test_hostile.py;
the few that are valid input with a documented verdict instead are listed in
``VERDICTS`` there).  Kinds, each the format of one edge of the program:

- ``scenario/*.toml``: ``demo --scenario``;
- ``reproducer/*.json``: ``fuzz replay`` and ``fuzz --corpus``;
- ``audit/*.jsonl``: every ``audit`` action;
- ``verify/*.jsonl``: ``verify --format xdp --input``.

Shared hostility in every format: nesting tens of thousands deep (Python's
parsers recurse), integers of thousands of digits (over Python's int-digit
limit), NaN/Infinity, bytes that are not UTF-8, empty files, huge single lines.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from verifier.audit.log import GENESIS, chain_hash, encode  # noqa: E402

DEEP = 50_000  # nesting depth: well past the interpreter's recursion limit
SHALLOWER = 10_000  # still far past it, and short enough for verify's longest line (64 KiB)
DIGITS = 5_000  # over Python's default int-digit limit (4300)
BIG = "9" * DIGITS


def _write(kind: str, name: str, data: str | bytes) -> None:
    path = HERE / kind / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)


# -- scenarios ---------------------------------------------------------------------------------
SCENARIO = """name = "hostile"
seed = 1
engine = "inline"
protection = "verifier"

[memory]
size = "64MiB"
kernel = "4MiB"

[[nic]]
name = "nic0"
mac = "02:00:00:00:00:01"

[[nic]]
name = "nic1"
mac = "02:00:00:00:00:02"

[[tenant]]
name = "alice"
nic = "nic0"
ip = "198.18.0.1"
ring = 512

[[tenant]]
name = "bob"
nic = "nic1"
ip = "198.18.0.2"
ring = 512

[[cable]]
a = "nic0"
b = "nic1"
"""


def scenarios() -> dict[str, str | bytes]:
    s = SCENARIO
    out: dict[str, str | bytes] = {
        "empty-name": s.replace('name = "hostile"', 'name = ""'),
        "deep-array": f"x = {'[' * DEEP}{']' * DEEP}\n",
        "deep-inline-table": "x = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n",
        "deep-dotted-key": "a" + ".a" * DEEP + " = 1\n",
        "deep-array-in-seed": s.replace("seed = 1", f"seed = {'[' * DEEP}1{']' * DEEP}"),
        "huge-seed": s.replace("seed = 1", f"seed = {BIG}"),
        "huge-negative-seed": s.replace("seed = 1", f"seed = -{BIG}"),
        "huge-ring": s.replace("ring = 512", f"ring = {BIG}", 1),
        "huge-queues": s.replace('mac = "02:00:00:00:00:01"', f'mac = "02:00:00:00:00:01"\nqueues = {BIG}'),
        "huge-memory-int": s.replace('size = "64MiB"', f"size = {BIG}"),
        "huge-memory-text": s.replace('size = "64MiB"', f'size = "{BIG}MiB"'),
        "huge-kernel-text": s.replace('kernel = "4MiB"', f'kernel = "{BIG}"'),
        "seed-negative": s.replace("seed = 1", "seed = -1"),
        "seed-2p64": s.replace("seed = 1", f"seed = {2**64}"),
        "seed-float": s.replace("seed = 1", "seed = 1.5"),
        "seed-nan": s.replace("seed = 1", "seed = nan"),
        "seed-inf": s.replace("seed = 1", "seed = inf"),
        "seed-string": s.replace("seed = 1", 'seed = "1"'),
        "seed-bool": s.replace("seed = 1", "seed = true"),
        "seed-date": s.replace("seed = 1", "seed = 1979-05-27"),
        "seed-array": s.replace("seed = 1", "seed = [1]"),
        "engine-unknown": s.replace('engine = "inline"', 'engine = "warp"'),
        "engine-number": s.replace('engine = "inline"', "engine = 1"),
        "protection-unknown": s.replace('protection = "verifier"', 'protection = "hope"'),
        "protection-table": s.replace('protection = "verifier"', "protection = {a = 1}"),
        "memory-not-table": s.replace('[memory]\nsize = "64MiB"\nkernel = "4MiB"\n', 'memory = "64MiB"\n'),
        "memory-zero": s.replace('size = "64MiB"', "size = 0"),
        "memory-negative": s.replace('size = "64MiB"', "size = -4096"),
        "memory-unaligned": s.replace('size = "64MiB"', "size = 4097"),
        "memory-float": s.replace('size = "64MiB"', "size = 6.4e7"),
        "memory-5GiB": s.replace('size = "64MiB"', 'size = "5GiB"'),
        "memory-unit-unknown": s.replace('size = "64MiB"', 'size = "64 furlongs"'),
        "memory-smaller-than-kernel": s.replace('size = "64MiB"', 'size = "4MiB"'),
        "memory-too-small-for-rings": s.replace('size = "64MiB"', 'size = "8MiB"').replace("ring = 512", "ring = 4096"),
        "memory-exactly-twice-kernel": s.replace('size = "64MiB"', 'size = "8KiB"').replace(
            'kernel = "4MiB"', 'kernel = "4KiB"'
        ),
        "memory-two-pages-kernel-one": s.replace('size = "64MiB"', "size = 8192").replace(
            'kernel = "4MiB"', "kernel = 4096"
        ),
        "kernel-zero": s.replace('kernel = "4MiB"', "kernel = 0"),
        "memory-unknown-key": s.replace('kernel = "4MiB"', 'kernel = "4MiB"\nswap = "1GiB"'),
        "unknown-top-key": "colour = 'blue'\n" + s,
        "nic-not-array": s.replace('[[nic]]\nname = "nic0"', '[nic]\nname = "nic0"', 1).replace(
            '[[nic]]\nname = "nic1"\nmac = "02:00:00:00:00:02"\n', ""
        ),
        "nic-array-of-numbers": "nic = [1, 2]\n",
        "nic-missing-mac": s.replace('mac = "02:00:00:00:00:01"\n', ""),
        "nic-missing-name": s.replace('name = "nic0"\n', "", 1),
        "nic-mac-short": s.replace("02:00:00:00:00:01", "02:00"),
        "nic-mac-multicast": s.replace("02:00:00:00:00:01", "01:00:5e:00:00:01"),
        "nic-mac-number": s.replace('"02:00:00:00:00:01"', "2"),
        "nic-mac-huge": s.replace('"02:00:00:00:00:01"', f'"{"ab:" * 10000}ab"'),
        "nic-mac-broadcast": s.replace("02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff"),
        "nic-mac-zero": s.replace("02:00:00:00:00:01", "00:00:00:00:00:00"),
        "nic-duplicate-mac": s.replace("02:00:00:00:00:02", "02:00:00:00:00:01"),
        "nic-duplicate-mac-case": s.replace("02:00:00:00:00:02", "02:00:00:00:00:01")
        .replace("02:00:00:00:00:01", "02:00:00:00:00:0A", 1)
        .replace("02:00:00:00:00:01", "02:00:00:00:00:0a"),
        "nic-duplicate-name": s.replace('name = "nic1"', 'name = "nic0"'),
        "nic-queues-zero": s.replace('mac = "02:00:00:00:00:01"', 'mac = "02:00:00:00:00:01"\nqueues = 0'),
        "nic-queues-nine": s.replace('mac = "02:00:00:00:00:01"', 'mac = "02:00:00:00:00:01"\nqueues = 9'),
        "nic-unknown-key": s.replace('mac = "02:00:00:00:00:01"', 'mac = "02:00:00:00:00:01"\nspeed = 10'),
        "tenant-duplicate-ip": s.replace('ip = "198.18.0.2"', 'ip = "198.18.0.1"'),
        "tenant-duplicate-name": s.replace('name = "bob"', 'name = "alice"'),
        "tenants-share-nic-queue": s.replace('nic = "nic1"', 'nic = "nic0"'),
        "tenant-unknown-nic": s.replace('nic = "nic1"', 'nic = "nic7"'),
        "tenant-ip-public": s.replace("198.18.0.1", "8.8.8.8"),
        "tenant-ip-v6": s.replace("198.18.0.1", "::1"),
        "tenant-ip-garbage": s.replace("198.18.0.1", "not-an-ip"),
        "tenant-ip-number": s.replace('"198.18.0.1"', "3323068417"),
        "tenant-ip-huge": s.replace('"198.18.0.1"', f'"{"1." * 20000}1"'),
        "tenant-ring-zero": s.replace("ring = 512", "ring = 0", 1),
        "tenant-ring-negative": s.replace("ring = 512", "ring = -8", 1),
        "tenant-ring-odd": s.replace("ring = 512", "ring = 100", 1),
        "tenant-ring-too-big": s.replace("ring = 512", "ring = 8192", 1),
        "tenant-ring-float": s.replace("ring = 512", "ring = 512.0", 1),
        "tenant-ring-string": s.replace("ring = 512", 'ring = "512"', 1),
        "tenant-unknown-key": s.replace('ip = "198.18.0.1"', 'ip = "198.18.0.1"\nrole = "admin"'),
        "tenant-missing-ip": s.replace('ip = "198.18.0.1"\n', ""),
        "tenant-not-table": s + "tenant = 3\n",
        "cable-self": s.replace('b = "nic1"', 'b = "nic0"'),
        "cable-unknown-nic": s.replace('b = "nic1"', 'b = "nic9"'),
        "cable-twice": s + '\n[[cable]]\na = "nic0"\nb = "nic1"\n',
        "cable-pcap-number": s.replace('b = "nic1"', 'b = "nic1"\npcap = 5'),
        "cable-pcap-parent-is-file": s.replace('b = "nic1"', 'b = "nic1"\npcap = "/etc/hostname/x.pcap"'),
        "cable-pcap-is-directory": s.replace('b = "nic1"', 'b = "nic1"\npcap = "/tmp"'),
        "cable-pcap-empty": s.replace('b = "nic1"', 'b = "nic1"\npcap = ""'),
        "cable-unknown-key": s.replace('b = "nic1"', 'b = "nic1"\nlength = "3m"'),
        "no-tenants": s.split("[[tenant]]")[0],
        "no-nics": "name = 'x'\n",
        "not-toml": "this is not toml\n",
        "binary": b"\x00\xff\xfe\x89PNG\r\n\x1a\n" * 64,
        "latin1": s.replace('name = "hostile"', 'name = "h\xe9"').encode("latin-1"),
        "bom-then-garbage": b"\xef\xbb\xbf[[[",
        "empty": "",
        "duplicate-key": s.replace("seed = 1", "seed = 1\nseed = 2"),
        "huge-line": f'name = "{"x" * 200_000}"\n',
        "nul-in-string": s.replace('name = "hostile"', 'name = "ho\\u0000stile"'),
    }
    return out


# -- reproducers -------------------------------------------------------------------------------
CASE: dict[str, Any] = {
    "version": 2,
    "scenario": "attack",
    "seed": 1,
    "protection": "none",
    "class": "kernel-tx",
    "expect": {"kind": "leak", "what": "kernel canary sent by nic2"},
    "ops": [{"op": "tx", "descs": [{"addr": "0x7000", "length": 128, "cmd": 11}]}],
}


def _case(**change: Any) -> str:
    case = json.loads(json.dumps(CASE))
    case.update(change)
    return json.dumps(case)


def _desc(**change: Any) -> str:
    desc: dict[str, Any] = {"addr": "0x7000", "length": 128, "cmd": 11}
    desc.update(change)
    return _case(ops=[{"op": "tx", "descs": [desc]}])


def _op(op: dict[str, Any], version: int = 2) -> str:
    return _case(ops=[op], version=version)


#: A virtqueue op (fuzz/steps/virtq.py) on the ``virtio`` machine: one valid TX chain, one descriptor.
VIRTQ: dict[str, Any] = {
    "op": "virtq",
    "queue": "tx",
    "descs": [{"slot": 0, "addr": "0x403800", "len": 200, "flags": 0, "next": 0}],
    "tables": [],
    "heads": [0],
}


def _virtq(**change: Any) -> str:
    op = json.loads(json.dumps(VIRTQ))
    op.update(change)
    return _case(ops=[op], machine="virtio", **{"class": "virtio-loop"})


def _vdesc(**change: Any) -> str:
    desc: dict[str, Any] = dict(VIRTQ["descs"][0])
    desc.update(change)
    return _virtq(descs=[desc])


def reproducers() -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {
        "deep-list": "[" * DEEP + "]" * DEEP,
        "deep-object": '{"a":' * DEEP + "1" + "}" * DEEP,
        "deep-in-ops": _case(ops="@").replace('"@"', "[" * DEEP + "]" * DEEP),
        "deep-in-expect": _case(expect="@").replace('"@"', '{"a":' * DEEP + "1" + "}" * DEEP),
        "huge-seed": _case(seed="@").replace('"@"', BIG),
        "huge-addr": _desc(addr="@").replace('"@"', BIG),
        "huge-version": _case(version="@").replace('"@"', BIG),
        "huge-float": _case(seed="@").replace('"@"', "1e" + BIG),
        "huge-addr-string": _desc(addr=BIG),
        "huge-hex-string": _desc(addr="0x" + "f" * DIGITS),
        "seed-negative": _case(seed=-1),
        "seed-2p63": _case(seed=2**63),
        "seed-nan": _case(seed="@").replace('"@"', "NaN"),
        "seed-infinity": _case(seed="@").replace('"@"', "Infinity"),
        "seed-null": _case(seed=None),
        "seed-float": _case(seed=1.5),
        "seed-bool": _case(seed=True),
        "seed-list": _case(seed=[1]),
        "version-0": _case(version=0),
        "version-3": _case(version=3),
        "version-string": _case(version="2"),
        "version-null": _case(version=None),
        "version-float": _case(version=2.0),
        "scenario-other": _case(scenario="pingpong"),
        "scenario-number": _case(scenario=1),
        "protection-unknown": _case(protection="prayer"),
        "protection-null": _case(protection=None),
        "class-number": _case(**{"class": 5}),
        "expect-list": _case(expect=[1]),
        "expect-number": _case(expect=3),
        "expect-address-negative": _case(expect={"kind": "leak", "address": "-0x1"}),
        "expect-address-2p64": _case(expect={"kind": "leak", "address": hex(2**64)}),
        "expect-kind-number": _case(expect={"kind": 1}),
        "expect-unknown-key": _case(expect={"kind": "leak", "colour": "red"}),
        "ops-number": _case(ops=7),
        "ops-string": _case(ops="tx"),
        "ops-null": _case(ops=None),
        "ops-object": _case(ops={"op": "tx"}),
        "ops-missing": json.dumps({k: v for k, v in CASE.items() if k != "ops"}),
        "op-not-object": _case(ops=[1]),
        "op-unknown": _op({"op": "teleport"}),
        "op-missing-op": _op({"descs": []}),
        "op-op-number": _op({"op": 3}),
        "op-unknown-key": _op({"op": "tx", "descs": [], "colour": "red"}),
        "descs-number": _op({"op": "tx", "descs": 5}),
        "descs-string": _op({"op": "tx", "descs": "0x7000"}),
        "descs-null-list": _op({"op": "tx", "descs": [None]}),
        "descs-too-many": _op({"op": "tx", "descs": [{"addr": 0, "length": 1}] * 600}),
        "addr-2p64": _desc(addr=hex(2**64)),
        "addr-2p64-number": _desc(addr=2**64),
        "addr-negative": _desc(addr=-1),
        "addr-negative-hex": _desc(addr="-0x1000"),
        "addr-nan": _desc(addr="@").replace('"@"', "NaN"),
        "addr-null": _desc(addr=None),
        "addr-float": _desc(addr=4096.0),
        "addr-bool": _desc(addr=False),
        "addr-garbage": _desc(addr="0xZZ"),
        "addr-missing": _case(ops=[{"op": "tx", "descs": [{"length": 1}]}]),
        "length-minus-1": _desc(length=-1),
        "length-2p16": _desc(length=2**16),
        "length-2p32": _desc(length=2**32),
        "length-string-word": _desc(length="long"),
        "length-nan": _desc(length="@").replace('"@"', "NaN"),
        "length-neg-infinity": _desc(length="@").replace('"@"', "-Infinity"),
        "length-null": _desc(length=None),
        "length-list": _desc(length=[128]),
        "cmd-minus-1": _desc(cmd=-1),
        "cmd-256": _desc(cmd=256),
        "cso-300": _desc(cso=300),
        "css-minus-5": _desc(css=-5),
        "tail-2p64": _op({"op": "tx", "descs": [], "tail": 2**64}),  # a tail is any 64-bit store, no wider
        "tail-below-int64": _op({"op": "tx", "descs": [], "tail": -(2**63) - 1}),
        "tail-back-0": _op({"op": "tx", "descs": [], "tail_back": 0}),
        "tail-back-huge": _op({"op": "tx", "descs": [], "tail_back": 10**9}),
        "rewrite-not-object": _op({"op": "tx", "descs": [], "rewrite_after_check": 3}),
        "rewrite-slot-negative": _op(
            {"op": "tx", "descs": [{"addr": 0, "length": 1}], "rewrite_after_check": {"slot_offset": -1}}
        ),
        "rewrite-rounds-zero": _op(
            {"op": "tx", "descs": [{"addr": 0, "length": 1}], "rewrite_threaded": {"rounds": 0}}
        ),
        "rewrite-addr-2p64": _op(
            {"op": "tx", "descs": [{"addr": 0, "length": 1}], "rewrite_before_read": {"addr": hex(2**64)}}
        ),
        "rx-addrs-number": _op({"op": "rx", "addrs": 5}),
        "rx-addrs-negative": _op({"op": "rx", "addrs": [-1]}),
        "rx-addrs-2p64": _op({"op": "rx", "addrs": [hex(2**64)]}),
        "rx-addrs-too-many": _op({"op": "rx", "addrs": ["0x1000"] * 600}),
        "rx-doorbell-string": _op({"op": "rx", "addrs": [], "doorbell": "yes"}),
        "eve-count-negative": _op({"op": "eve_sends", "count": -1}),
        "eve-count-huge": _op({"op": "eve_sends", "count": 10**12}),
        "eve-count-string": _op({"op": "eve_sends", "count": "many"}),
        "doorbell-queue-bad": _op({"op": "doorbell", "queue": "both"}),
        "reg-offset-negative": _op({"op": "reg", "offset": -4, "value": 0}),
        "reg-offset-huge": _op({"op": "reg", "offset": "0x100000000", "value": 0}),
        "reg-value-2p32": _op({"op": "reg", "offset": "0x3818", "value": hex(2**32)}),
        "reg-value-negative": _op({"op": "reg", "offset": "0x3818", "value": -1}),
        "pin-span-unknown": _op({"op": "pin", "span": "everything", "access": 2}),
        "pin-access-zero": _op({"op": "pin", "span": "uaf", "access": 0}),
        "victim-pages-zero": _op({"op": "victim_alloc", "pages": 0}),
        "victim-pages-huge": _op({"op": "victim_alloc", "pages": 10**9}),
        "fake-ring-descs-number": _op({"op": "fake_ring", "descs": 1}),
        "v1-length-minus-1": _desc(length=-1).replace('"version": 2', '"version": 1'),
        "v1-tail-2p64": _op({"op": "tx", "descs": [], "tail": 2**64}, version=1),
        "v1-cmd-minus-1": _desc(cmd=-1).replace('"version": 2', '"version": 1'),
        "v1-length-2p32": _desc(length=2**32).replace('"version": 2', '"version": 1'),
        "v1-seed-negative": _case(seed=-1, version=1),
        "top-level-list": "[]",
        "top-level-number": "42",
        "top-level-string": '"case"',
        "top-level-null": "null",
        "not-json": "{'version': 2}",
        "truncated": _case()[:-20],
        "empty": "",
        "binary": b"\x00\x01\x02\xff" * 100,
        "latin1": _case(**{"class": "caf\xe9"}).replace("\\u00e9", "\xe9").encode("latin-1"),
        "trailing-garbage": _case() + "}}",
        "huge-line": _case(**{"class": "x" * 200_000}),
        # virtqueue graphs (issue 16): every field of the virtq op at and past its bounds
        "virtq-slot-2p16": _vdesc(slot=2**16),
        "virtq-next-minus-1": _vdesc(next=-1),
        "virtq-len-2p32": _vdesc(len=2**32),
        "virtq-flags-2p16": _vdesc(flags=2**16),
        "virtq-addr-2p64": _vdesc(addr=hex(2**64)),
        "virtq-queue-unknown": _virtq(queue="ctrl"),
        "virtq-heads-too-many": _virtq(heads=[0] * 5000),
        "virtq-head-2p16": _virtq(heads=[2**16]),
        "virtq-table-at-past-scratch": _virtq(tables=[{"at": 2**40, "descs": []}]),
        "virtq-table-too-many": _virtq(tables=[{"at": 0, "descs": [VIRTQ["descs"][0]] * 300}]),
        "virtq-jump-float": _virtq(jump=1e9),
        "virtq-descs-string": _virtq(descs="0x403800"),
        "virtq-machine-unknown": _case(ops=[VIRTQ], machine="vhost"),
        "virtq-mode-iommu": _case(ops=[VIRTQ], machine="virtio", protection="iommu"),
    }
    return out


# -- audit logs --------------------------------------------------------------------------------
RECORD: dict[str, Any] = {
    "v": 1,
    "seq": 0,
    "wall": "2024-01-01T00:00:00.000000000Z",
    "mono_ns": 0,
    "tenant": 1,
    "tenant_name": "mallory",
    "nic": "nic2",
    "queue": 0,
    "kind": "tx",
    "ring_index": 3,
    "desc_hex": "00700000000000008000000b00000000",
    "desc": {"addr": "0x7000", "length": 128},
    "reason": "ADDR_KERNEL",
    "detail": {"rule": "not kernel memory"},
    "protection": "verifier",
}


def _chain(records: list[dict[str, Any]]) -> bytes:
    """Records as the writer writes them: canonical lines, seq and hash chain filled in (unless given)."""
    prev, lines = GENESIS, []
    for seq, fields in enumerate(records):
        body = {**RECORD, "seq": seq, **fields}
        body.pop("prev", None)
        body.pop("hash", None)
        body["prev"] = fields.get("prev", prev)
        encoded = encode(body)
        digest = chain_hash(prev, encoded)
        lines.append(encoded[:-1] + b',"hash":"' + digest.encode() + b'"}\n')
        prev = digest
    return b"".join(lines)


def _log(**fields: Any) -> bytes:
    """A good record, then one with ``fields`` changed (a valid chain: only the values are hostile)."""
    return _chain([{}, fields])


def _raw_second(line: bytes) -> bytes:
    """A good record, then ``line`` as it is."""
    return _chain([{}]) + line


def _v2(batches: list[list[dict[str, Any]]], checkpoint: dict[str, Any] | None = None) -> bytes:
    """A schema v2 log: each batch's records, then its checkpoint chaining the batch's bytes (``checkpoint``
    changes the last checkpoint's values, re-hashed: a valid chain, hostile values)."""
    prev, out, seq = GENESIS, [], 0
    for number, batch in enumerate(batches):
        lines = []
        for fields in batch:
            body = {**RECORD, "v": 2, "seq": seq, **fields}
            lines.append(encode(body) + b"\n")
            seq += 1
        data = b"".join(lines)
        head: dict[str, Any] = {"v": 2, "checkpoint": seq - 1, "records": len(lines), "prev": prev}
        if checkpoint is not None and number == len(batches) - 1:
            head.update(checkpoint)
        digest = hashlib.sha256(prev.encode() + data + encode(head)).hexdigest()
        out += [data, encode({**head, "hash": digest}) + b"\n"]
        prev = digest
    return b"".join(out)


def audits() -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {
        "queue-2p64": _log(queue=2**64),
        "queue-negative": _log(queue=-1),
        "tenant-10p400": _log(tenant=10**400),
        "tenant-negative": _log(tenant=-7),
        "tenant-2p32": _log(tenant=2**32),
        "queue-2p32": _log(queue=2**32),
        "ring-index-minus-5": _log(ring_index=-5),
        "ring-index-2p32": _log(ring_index=2**32),
        "ring-index-2p64": _log(ring_index=2**64),
        "seq-2p64": _chain([{"seq": 2**64}]),
        "mono-negative": _log(mono_ns=-1),
        "mono-2p64": _log(mono_ns=2**64),
        "wall-year-0": _log(wall="0000-01-01T00:00:00Z"),
        "wall-month-13": _log(wall="2024-13-01T00:00:00Z"),
        "wall-garbage": _log(wall="yesterday"),
        "wall-year-9999-leap": _log(wall="9999-02-30T00:00:00Z"),
        "kind-unknown": _log(kind="telepathy"),
        "reason-empty": _log(reason=""),
        "reason-lowercase": _log(reason="addr kernel"),
        "reason-huge": _log(reason="X" * 100_000),
        "desc-hex-short": _log(desc_hex="00"),
        "desc-list": _log(desc=[1, 2]),
        "detail-list": _log(detail=[1]),
        "detail-deep": _log(detail="@").replace(b'"@"', b'{"a":' * 2000 + b"1" + b"}" * 2000),
        "protection-number": _log(protection=3),
        "nic-number": _log(nic=2),
        "tenant-name-number": _log(tenant_name=5),
        "v-2": _log(v=2),
        "prev-short": _log(prev="abc"),
        "deep-line": _raw_second(b'{"v":' + b"[" * DEEP + b"]" * DEEP + b"}\n"),
        "deep-first-line": b'{"v":' + b"[" * DEEP + b"]" * DEEP + b"}\n",
        "deep-object-line": _raw_second(b'{"v":1,"x":' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}\n"),
        "huge-int-line": _raw_second(b'{"v":1,"seq":' + BIG.encode() + b"}\n"),
        "huge-int-first-line": b'{"v":1,"seq":' + BIG.encode() + b"}\n",
        "huge-float-line": _raw_second(b'{"v":1,"seq":1e999}\n'),
        "nan-line": _raw_second(b'{"v":1,"seq":NaN}\n'),
        "torn": _chain([{}, {}])[:-30],
        "not-canonical": _chain([{}]) + _chain([{}]).replace(b":", b": ", 1),
        "binary-after-magic": b'{"v":' + b"\x00\xff\xfe" * 100 + b"\n",
        "latin1": _raw_second(b'{"v":1,"tenant_name":"caf\xe9"}\n'),
        "magic-then-garbage": b'{"v":garbage\n',
        "list-line": _raw_second(b"[1,2,3]\n"),
        "null-line": _raw_second(b"null\n"),
        "huge-line": _raw_second(b'{"v":1,"pad":"' + b"x" * 200_000 + b'"}\n'),
        "pcap": b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + b"\x00" * 64,
        "png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        "text": b"hello, this is not an audit log\n",
        "binary": b"\x00\x01\x02\x03" * 64,
        # schema v2: a checkpoint per batch
        "v2-queue-2p64": _v2([[{}], [{}, {"queue": 2**64}]]),
        "v2-wall-month-13": _v2([[{}, {"wall": "2024-13-01T00:00:00Z"}]]),
        "v2-v1-record-in-batch": _v2([[{}], [{"v": 1}]]),
        "v2-record-with-hash": _v2([[{}], [{"prev": GENESIS, "hash": GENESIS}]]),
        "v2-checkpoint-records-2p64": _v2([[{}], [{}]], {"records": 2**64}),
        "v2-checkpoint-records-wrong": _v2([[{}], [{}, {}]], {"records": 1}),
        "v2-checkpoint-seq-negative": _v2([[{}], [{}]], {"checkpoint": -1}),
        "v2-checkpoint-hash-short": _v2([[{}]]).replace(b'"hash":"', b'"hash":"abc', 1)[:-66] + b'"}\n',
        "v2-checkpoint-extra-key": _v2([[{}], [{}]], {"note": "x"}),
        "v2-checkpoint-deep": _v2([[{}]]) + encode({**RECORD, "v": 2, "seq": 1}) + b"\n"
        + b'{"v":2,"checkpoint":' + b"[" * DEEP + b"]" * DEEP + b"}\n",
        "v2-checkpoint-huge-int": _v2([[{}]]) + encode({**RECORD, "v": 2, "seq": 1}) + b"\n"
        + b'{"v":2,"checkpoint":' + BIG.encode() + b"}\n",
        "v2-checkpoint-only": b'{"v":2,"checkpoint":0,"records":0,"prev":"' + GENESIS.encode() + b'","hash":"'
        + GENESIS.encode() + b'"}\n',
        "v2-no-checkpoint": _v2([[{}]]) + encode({**RECORD, "v": 2, "seq": 1}) + b"\n",
        "v2-torn": _v2([[{}], [{}, {}]])[:-30],
    }  # fmt: skip
    return out


# -- verify input ------------------------------------------------------------------------------
def _line(**change: Any) -> str:
    row: dict[str, Any] = {"addr": "0x1000", "len": 64, "options": 0}
    row.update(change)
    return '{"addr": "0x0", "len": 64, "options": 0}\n' + json.dumps(row) + "\n"


def verifies() -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {
        "deep-list": "[" * SHALLOWER + "]" * SHALLOWER + "\n",
        "deep-object": '{"a":' * SHALLOWER + "1" + "}" * SHALLOWER + "\n",
        "deep-in-meta": _line(meta="@").replace('"@"', '{"a":' * SHALLOWER + "1" + "}" * SHALLOWER),
        "deep-and-long": "[" * DEEP + "]" * DEEP + "\n",
        "huge-int": _line(addr="@").replace('"@"', BIG),
        "huge-int-string": _line(addr=BIG),
        "huge-hex-string": _line(addr="0x" + "f" * DIGITS),
        "huge-float": _line(addr="@").replace('"@"', "1e" + BIG),
        "addr-2p64": _line(addr=2**64),
        "addr-negative": _line(addr=-1),
        "addr-nan": _line(addr="@").replace('"@"', "NaN"),
        "addr-infinity": _line(addr="@").replace('"@"', "Infinity"),
        "addr-null": _line(addr=None),
        "addr-float": _line(addr=4096.0),
        "addr-bool": _line(addr=True),
        "addr-list": _line(addr=[1]),
        "addr-garbage": _line(addr="0xZZ"),
        "len-2p32": _line(len=2**32),
        "len-negative": _line(len=-1),
        "len-string-word": _line(len="long"),
        "options-2p32": _line(options=2**32),
        "missing-addr": '{"len": 64, "options": 0}\n',
        "unknown-key": _line(colour="red"),
        "class-number": _line(**{"class": 5}),
        "meta-number": _line(meta=5),
        "meta-unknown-key": _line(meta={"speed": 1}),
        "meta-csum-start-2p16": _line(meta={"csum_start": 2**16}),
        "meta-flags-negative": _line(meta={"flags": -1}),
        "meta-launch-2p64": _line(meta={"launch_time": 2**64}),
        "line-list": "[1, 2, 3]\n",
        "line-number": "42\n",
        "line-string": '"addr"\n',
        "line-null": "null\n",
        "not-json": "addr=0x1000 len=64\n",
        "truncated": '{"addr": "0x1000", "len": 6',
        "binary": b"\x00\xff\xfe\xfd" * 64,
        "latin1": b'{"addr": "0x1000", "len": 64, "options": 0, "class": "caf\xe9"}\n',
        "huge-line": _line(**{"class": "x" * 200_000}).replace('"class"', '"klass"'),
        "nul-bytes": "\x00" * 100 + "\n",
    }
    return out


KINDS: dict[str, tuple[str, Callable[[], dict[str, str | bytes]]]] = {
    "scenario": (".toml", scenarios),
    "reproducer": (".json", reproducers),
    "audit": (".jsonl", audits),
    "verify": (".jsonl", verifies),
}


def main() -> None:
    for kind, (ext, make) in KINDS.items():
        folder = HERE / kind
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for name, data in make().items():
            _write(kind, name + ext, data)
        print(f"{kind}: {len(list(folder.iterdir()))} files")


if __name__ == "__main__":
    main()
