"""Scenarios: a TOML file that says what world to build.

Validation happens here, once, with messages that name the file and the
key (``pingpong.toml: nic[1].mac: '02:00' is not a MAC address``), so the
command line can print one line and exit 2 on a bad file.
"""

from __future__ import annotations

import ipaddress
import re
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from device.e1000 import EngineMode
from driver.tenant.txq import check_ring_size
from ring.memory import PAGE_SIZE
from verifier.modes.protection import Protection

DEFAULT_SCENARIO = "pingpong"
_SIZE = re.compile(r"^\s*(\d{1,13})\s*(B|KiB|MiB|GiB)?\s*$")  # 13 digits: past 4GiB, never past int()'s limit
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
#: How deep arrays and tables may nest (tomllib recurses once per level, and a dotted key of tens of thousands of
#: parts takes it minutes): far beyond any scenario, far below the interpreter's recursion limit.
MAX_NESTING = 64
#: What a tenant's two queues take of user memory: each ring (16-byte descriptors, page-rounded) and its mempool
#: of one 2048-byte buffer per slot (driver/tenant/txq.py, rxq.py).
BUFFER_SIZE = 2048
#: Largest scenario file read (the shipped ones are about 2 KiB; ``/dev/zero`` never ends).
MAX_BYTES = 1 << 20


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class NicSpec:
    name: str
    mac: bytes
    queues: int = 1
    flow_control: bool = False  # 802.3x PAUSE both ways (CTRL.RFCE and CTRL.TFCE)


@dataclass(frozen=True)
class TenantSpec:
    name: str
    nic: str
    ip: str
    ring: int = 512


@dataclass(frozen=True)
class CableSpec:
    a: str
    b: str
    pcap: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    seed: int
    engine: EngineMode
    protection: Protection
    memory_size: int
    kernel_size: int
    nics: tuple[NicSpec, ...]
    tenants: tuple[TenantSpec, ...]
    cables: tuple[CableSpec, ...] = field(default_factory=tuple)

    def tenant(self, name: str) -> TenantSpec:
        for t in self.tenants:
            if t.name == name:
                return t
        raise ScenarioError(f"{self.source}: no tenant named {name!r}")


def default_text(name: str = DEFAULT_SCENARIO) -> str:
    """An embedded scenario (default: pingpong), as shipped in the package."""
    return resources.files("world.scenarios").joinpath(f"{name}.toml").read_text()


def load(path: str | Path | None = None, embedded: str = DEFAULT_SCENARIO) -> Scenario:
    """Load and validate a scenario file; ``None`` loads the embedded one named ``embedded``."""
    if path is None:
        return parse(default_text(embedded), f"<embedded {embedded}.toml>")
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ScenarioError(f"{p}: larger than {MAX_BYTES:,} bytes, so not a scenario")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such scenario file") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not UTF-8 text, so not a scenario (TOML)") from None
    except OSError as err:
        raise ScenarioError(f"{p}: cannot read scenario ({err.strerror or err.__class__.__name__})") from None
    return parse(text, str(p))


def _check_nesting(text: str, source: str) -> None:
    """Refuse arrays, inline tables or dotted keys nested deeper than ``MAX_NESTING``, before ``tomllib`` sees them.

    A cheap scan of the text that skips strings and comments; a dotted key's
    parts are the dots since the last ``=``, ``,``, bracket or newline (a
    float has one).  Names the line of the first level too deep.
    """
    depth = dots = 0
    line = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                if c == '"' and text[j] == "\\":
                    j += 1
                elif text[j] == "\n":
                    if len(quote) == 1:
                        break
                    line += 1
                j += 1
            i = j + len(quote)
            continue
        if c == ".":
            dots += 1
        elif c in "=,\n[]{}":
            dots = 0
            line += c == "\n"
            depth += (c in "[{") - (c in "]}")
        if depth > MAX_NESTING or dots > MAX_NESTING:
            raise ScenarioError(f"{source}:{line}: nested deeper than {MAX_NESTING} levels")
        i += 1


def parse(text: str, source: str) -> Scenario:
    _check_nesting(text, source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{source}: not valid TOML ({err})") from None
    except RecursionError:  # the scan above should have caught it; never a traceback either way
        raise ScenarioError(f"{source}: nested too deeply") from None
    except ValueError:  # an integer past Python's int-digit limit
        raise ScenarioError(f"{source}: an integer of more than {sys.get_int_max_str_digits()} digits") from None
    r = _Reader(raw, source, "")
    r.only("name", "seed", "engine", "protection", "memory", "nic", "tenant", "cable")
    mem = _Reader(r.table("memory"), source, "memory.")
    mem.only("size", "kernel")
    memory_size = mem.size("size", 64 << 20)
    kernel_size = mem.size("kernel", 4 << 20)
    if memory_size < 2 * kernel_size:
        raise ScenarioError(f"{source}: memory.size must be at least twice memory.kernel")
    nics = tuple(_nic(_Reader(t, source, f"nic[{i}].")) for i, t in enumerate(r.tables("nic")))
    tenants = tuple(_tenant(_Reader(t, source, f"tenant[{i}].")) for i, t in enumerate(r.tables("tenant")))
    cables = tuple(_cable(_Reader(t, source, f"cable[{i}].")) for i, t in enumerate(r.tables("cable")))
    names = [n.name for n in nics]
    if len(set(names)) != len(names):
        raise ScenarioError(f"{source}: NIC names must be unique")
    if len({t.name for t in tenants}) != len(tenants):
        raise ScenarioError(f"{source}: tenant names must be unique")
    _unique(source, "nic", [n.mac.hex(":") for n in nics], "mac")
    _unique(source, "tenant", [t.ip for t in tenants], "ip")
    drivers: dict[str, str] = {}
    for i, t in enumerate(tenants):
        if t.nic not in names:
            raise ScenarioError(f"{source}: tenant {t.name!r} names unknown NIC {t.nic!r}")
        if t.nic in drivers:
            raise ScenarioError(
                f"{source}: tenant[{i}].nic: NIC {t.nic!r} is already driven by tenant {drivers[t.nic]!r} "
                "(a tenant drives queue 0 of its NIC, and a queue has one owner)"
            )
        drivers[t.nic] = t.name
    rings = sum(2 * (-(-t.ring * 16 // PAGE_SIZE) * PAGE_SIZE + t.ring * BUFFER_SIZE) for t in tenants)
    if rings > memory_size - kernel_size:
        raise ScenarioError(
            f"{source}: memory.size: {memory_size:,} bytes leave {memory_size - kernel_size:,} beside the kernel, "
            f"but the tenants' rings and buffers need at least {rings:,}"
        )
    used: set[str] = set()
    for c in cables:
        for end in (c.a, c.b):
            if end not in names:
                raise ScenarioError(f"{source}: cable names unknown NIC {end!r}")
            if end in used:
                raise ScenarioError(f"{source}: NIC {end!r} is on two cables")
            used.add(end)
        if c.a == c.b:
            raise ScenarioError(f"{source}: a cable needs two different NICs")
    return Scenario(
        name=r.text("name", "unnamed"),
        source=source,
        seed=r.integer("seed", 1, 0, 2**63 - 1),
        engine=r.choice("engine", EngineMode, EngineMode.INLINE),
        protection=r.choice("protection", Protection, Protection.VERIFIER),
        memory_size=memory_size,
        kernel_size=kernel_size,
        nics=nics,
        tenants=tenants,
        cables=cables,
    )


def _unique(source: str, table: str, values: list[str], key: str) -> None:
    """Refuse a value given twice (two NICs with one MAC, two tenants with one IP: frames would go astray)."""
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            raise ScenarioError(f"{source}: {table}[{i}].{key}: {value} is already {table}[{seen[value]}]'s")
        seen[value] = i


def _nic(r: _Reader) -> NicSpec:
    r.only("name", "mac", "queues", "flow_control")
    mac = r.text("mac")
    if not _MAC.match(mac):
        raise r.error("mac", f"{mac!r} is not a MAC address like 02:00:00:00:00:01")
    raw = bytes.fromhex(mac.replace(":", ""))
    if raw[0] & 1:
        raise r.error("mac", f"{mac} is a multicast address; a NIC needs a unicast one")
    if not any(raw):
        raise r.error("mac", f"{mac} is the null address; a NIC needs a unicast one")
    return NicSpec(r.text("name"), raw, r.integer("queues", 1, 1, 8), r.boolean("flow_control", False))


def _tenant(r: _Reader) -> TenantSpec:
    r.only("name", "nic", "ip", "ring")
    ip = r.text("ip")
    try:
        addr = ipaddress.IPv4Address(ip)
    except ipaddress.AddressValueError:
        raise r.error("ip", f"{ip!r} is not an IPv4 address") from None
    if addr not in ipaddress.IPv4Network("198.18.0.0/15"):
        raise r.error("ip", f"{ip} is outside 198.18.0.0/15, the only range test hosts may use")
    ring = r.integer("ring", 512, 8, 4096)
    try:
        check_ring_size(ring)
    except ValueError as err:
        raise r.error("ring", str(err)) from None
    return TenantSpec(r.text("name"), r.text("nic"), ip, ring)


def _cable(r: _Reader) -> CableSpec:
    r.only("a", "b", "pcap")
    pcap = r.raw.get("pcap")
    if pcap is not None and (not isinstance(pcap, str) or not pcap or not pcap.isprintable()):
        raise r.error("pcap", "must be a file path")
    return CableSpec(r.text("a"), r.text("b"), pcap)


class _Reader:
    """Typed access to one TOML table, raising ScenarioError that names the key."""

    def __init__(self, raw: Any, source: str, prefix: str) -> None:
        if not isinstance(raw, dict):
            raise ScenarioError(f"{source}: {prefix.rstrip('.') or 'file'} must be a table")
        self.raw: dict[str, Any] = raw
        self.source = source
        self.prefix = prefix

    def error(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {self.prefix}{key}: {message}")

    def only(self, *keys: str) -> None:
        extra = sorted(set(self.raw) - set(keys))
        if extra:
            raise self.error(extra[0], f"unknown key (expected one of: {', '.join(keys)})")

    def table(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        return value

    def tables(self, key: str) -> list[dict[str, Any]]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, f"must be an array of tables ([[{key}]])")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key, default)
        if value is None:
            raise self.error(key, "is required")
        if not isinstance(value, str) or not value:
            raise self.error(key, "must be a non-empty string")
        if not value.isprintable():
            raise self.error(key, f"{value[:40]!r} holds control characters")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def size(self, key: str, default: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        elif isinstance(value, str) and (m := _SIZE.match(value)):
            n = int(m.group(1)) * _UNITS[m.group(2)]
        else:
            raise self.error(key, f"{value!r} is not a size like 64MiB")
        if n <= 0 or n % PAGE_SIZE:
            raise self.error(key, f"must be a positive multiple of {PAGE_SIZE} bytes")
        if n > 4 << 30:
            raise self.error(key, "must be at most 4GiB")
        return n

    def choice(self, key: str, enum: Any, default: Any) -> Any:
        value = self.raw.get(key, default.value)
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(e.value for e in enum)
            raise self.error(key, f"{value!r} is not one of: {allowed}") from None
