"""Classic libpcap files (LINKTYPE_ETHERNET), written a burst at a time.

Format: a 24-byte global header (magic 0xa1b2c3d4, version 2.4, snaplen,
link type 1) and per frame a 16-byte record header (seconds, microseconds,
captured length, original length); see pcap-savefile(5).  A burst's record
headers are built as one numpy structured array and interleaved with the
frame bytes by one scatter, so a tap costs no Python loop per frame.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from ring.frames import FrameBatch, range_index

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535

PCAP_GLOBAL_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD = np.dtype([("ts_sec", "<u4"), ("ts_usec", "<u4"), ("incl_len", "<u4"), ("orig_len", "<u4")])


class PcapWriter:
    """Append bursts of frames with their time stamps to a pcap file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(PCAP_GLOBAL_HEADER.pack(PCAP_MAGIC_US, *PCAP_VERSION, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        self.frames = 0

    def write(self, frames: FrameBatch, stamps_ns: npt.NDArray[np.int64]) -> None:
        n = len(frames)
        if n == 0:
            return
        lengths = frames.lengths
        captured = np.minimum(lengths, SNAPLEN)
        headers = np.zeros(n, dtype=PCAP_RECORD)
        headers["ts_sec"] = stamps_ns // 1_000_000_000
        headers["ts_usec"] = (stamps_ns % 1_000_000_000) // 1_000
        headers["incl_len"] = captured
        headers["orig_len"] = lengths
        rec = PCAP_RECORD.itemsize
        total = n * rec + int(captured.sum())
        out = np.empty(total, dtype=np.uint8)
        starts = np.cumsum(captured + rec) - (captured + rec)
        out[range_index(starts, np.full(n, rec))] = headers.view(np.uint8)
        body = frames.data
        if bool((captured < lengths).any()):
            body = frames.data[range_index(frames.offsets, captured)]
        out[range_index(starts + rec, captured)] = body
        self._file.write(out.tobytes())
        self.frames += n

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(path: str | Path) -> list[tuple[int, bytes]]:
    """Read a classic pcap file back as ``(time_ns, frame)`` pairs (for tests and audits)."""
    raw = Path(path).read_bytes()
    if len(raw) < PCAP_GLOBAL_HEADER.size:
        raise ValueError(f"{path}: too short for a pcap header")
    magic = struct.unpack_from("<I", raw)[0]
    if magic != PCAP_MAGIC_US:
        raise ValueError(f"{path}: not a little-endian microsecond pcap (magic {magic:#x})")
    pos = PCAP_GLOBAL_HEADER.size
    out = []
    while pos < len(raw):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", raw, pos)
        pos += PCAP_RECORD.itemsize
        out.append((sec * 1_000_000_000 + usec * 1_000, raw[pos : pos + incl]))
        pos += incl
    return out
