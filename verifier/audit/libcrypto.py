"""The system's SHA-256 for compiled code: OpenSSL's libcrypto, opened at run time (cffi's ABI mode).

Why: ``audit verify`` of a schema v1 log hashes every record (the chain,
verifier/audit/log.py ``chain_hash``); one ``hashlib.sha256`` call per
record from Python costs about a microsecond of call overhead around a
third of a microsecond of hashing.  check.c's ``chk_chain`` walks a whole
chunk in one call, and hashes with the library hashlib itself uses
(libcrypto.so.3: OpenSSL 3, SHA-NI where the CPU has it) -- not a copy of
anyone's SHA-256.  It is opened with ``ffi.dlopen`` and its EVP digest
functions handed to C as pointers, so building the project needs no
OpenSSL headers (no -dev package on a fresh machine).

``digest()`` is None when the library cannot be opened, lacks a function, or
its SHA-256 disagrees with hashlib's on a known input: ``audit verify`` then
hashes in Python, as before, with the same verdicts.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from cffi import FFI

LOG = logging.getLogger(__name__)

#: OpenSSL 3's libcrypto, by its soname (EVP_MD_fetch is OpenSSL 3's).
LIBRARY = "libcrypto.so.3"
#: What is used of it: a SHA-256 fetched once, and a digest context per call (declarations from OpenSSL 3's evp.h).
CDEF = """
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
EVP_MD *EVP_MD_fetch(void *libctx, const char *algorithm, const char *properties);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, void *engine);
int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *data, size_t count);
int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *size);
"""
#: The functions check.h's ``struct chk_sha256`` takes, by their field there.
FUNCTIONS = {"init": "EVP_DigestInit_ex", "update": "EVP_DigestUpdate", "final": "EVP_DigestFinal_ex"}


@dataclass(frozen=True)
class Digest:
    """libcrypto opened: its ``ffi`` and ``lib``, the SHA-256 ``EVP_MD``, and the functions' addresses."""

    ffi: Any
    lib: Any
    md: Any
    addresses: dict[str, int]

    def context(self) -> Any:
        """A fresh digest context, freed when the returned object is collected (None: out of memory)."""
        ctx = self.lib.EVP_MD_CTX_new()
        return None if ctx == self.ffi.NULL else self.ffi.gc(ctx, self.lib.EVP_MD_CTX_free)

    def address(self, pointer: Any) -> int:
        return int(self.ffi.cast("uintptr_t", pointer))

    def sha256(self, data: bytes) -> str | None:
        """SHA-256 hex of ``data`` through the library (the load-time check against hashlib)."""
        ctx, out, size = self.context(), self.ffi.new("unsigned char[32]"), self.ffi.new("unsigned int *")
        if ctx is None or not (
            self.lib.EVP_DigestInit_ex(ctx, self.md, self.ffi.NULL)
            and self.lib.EVP_DigestUpdate(ctx, data, len(data))
            and self.lib.EVP_DigestFinal_ex(ctx, out, size)
        ):
            return None
        return bytes(self.ffi.buffer(out, size[0])).hex()


def _open(library: str) -> Digest:
    ffi = FFI()
    ffi.cdef(CDEF)
    lib = ffi.dlopen(library)
    md = lib.EVP_MD_fetch(ffi.NULL, b"SHA256", ffi.NULL)
    if md == ffi.NULL:
        raise OSError(f"{library} has no SHA256")
    addresses = {field: int(ffi.cast("uintptr_t", ffi.addressof(lib, name))) for field, name in FUNCTIONS.items()}
    return Digest(ffi, lib, md, addresses)


@cache
def digest(library: str = LIBRARY) -> Digest | None:
    """libcrypto's SHA-256, checked against hashlib's; None (logged) when it cannot be used."""
    try:
        found = _open(library)
    except (OSError, AttributeError) as err:  # no such library, or a function missing from it
        LOG.info("audit verify hashes in Python: %s cannot be used (%s)", library, err)
        return None
    probe = b"nic-sandbox audit chain probe"
    if found.sha256(probe) != hashlib.sha256(probe).hexdigest():
        LOG.warning("audit verify hashes in Python: %s's SHA-256 differs from hashlib's", library)
        return None
    return found


def arguments(sha: Digest, ffi: Any, struct: str) -> tuple[Any, Any] | None:
    """A ``struct`` of ``ffi`` with check.h's ``struct chk_sha256`` fields (ctx, md, init, update, final) pointing
    at a fresh digest context of ``sha`` and its functions, and the context (keep it alive while the struct is
    used; one thread at a time); None: out of memory.  How compiled code is handed libcrypto's SHA-256."""
    ctx = sha.context()
    if ctx is None:
        return None
    handed = ffi.new(struct + " *")
    handed.ctx = ffi.cast("void *", sha.address(ctx))
    handed.md = ffi.cast("void *", sha.address(sha.md))
    point(handed, ffi, struct, sha.addresses)
    return handed, ctx


def point(handed: Any, ffi: Any, struct: str, addresses: Mapping[str, int]) -> None:
    """Set each function field of ``handed`` (a ``struct`` of ``ffi``, or a pointer to one) named in ``addresses``
    to that address, cast to the field's own pointer type: how ``Digest.addresses`` (EVP) and ``Direct.addresses``
    (SHA256_*) reach check.h's ``struct chk_sha256`` and encode.h's ``struct enc_sha256`` alike."""
    types = dict(ffi.typeof(struct).fields)
    for field, address in addresses.items():
        setattr(handed, field, ffi.cast(types[field].type, address))


#: libcrypto's SHA-256 without EVP (OpenSSL's sha.h, deprecated in OpenSSL 3 but exported): the same compression
#: function with no per-digest provider bookkeeping -- about 0.44 µs against EVP's 0.49 to 0.57 µs for a 613-byte
#: v1 record on the development machine (a C loop of a million digests of each kind).  The context is opaque here:
#: check.c keeps it on its stack in ``CHK_SHA256_CTX_BYTES`` (OpenSSL's ``SHA256_CTX`` is 112 bytes).
CDEF_DIRECT = """
int SHA256_Init(void *ctx);
int SHA256_Update(void *ctx, const void *data, size_t count);
int SHA256_Final(unsigned char *md, void *ctx);
"""
#: The functions check.h's ``struct chk_sha256`` takes for its ``sha256_*`` fields, by their field there.
FUNCTIONS_DIRECT = {"sha256_init": "SHA256_Init", "sha256_update": "SHA256_Update", "sha256_final": "SHA256_Final"}
#: Room given to a ``SHA256_CTX`` (check.h ``CHK_SHA256_CTX_BYTES``).
DIRECT_CTX_BYTES = 256


def _direct_sha256(ffi: FFI, lib: Any, data: bytes) -> str | None:
    context, out = ffi.new(f"unsigned char[{DIRECT_CTX_BYTES}]"), ffi.new("unsigned char[32]")
    if not (
        lib.SHA256_Init(context) and lib.SHA256_Update(context, data, len(data)) and lib.SHA256_Final(out, context)
    ):
        return None
    return bytes(ffi.buffer(out, 32)).hex()


@dataclass(frozen=True)
class Direct:
    """libcrypto's SHA256_* opened: its ``ffi`` and ``lib`` (kept: the library stays open), the functions' addresses."""

    ffi: Any
    lib: Any
    addresses: dict[str, int]


@cache
def direct(library: str = LIBRARY) -> Direct | None:
    """libcrypto's SHA256_Init/Update/Final (addresses by their ``struct chk_sha256`` field), when the library has
    them and they hash as hashlib does; None (logged) otherwise: ``chk_chain`` then hashes through EVP."""
    ffi = FFI()
    ffi.cdef(CDEF_DIRECT)
    try:
        lib = ffi.dlopen(library)
        addresses = {
            field: int(ffi.cast("uintptr_t", ffi.addressof(lib, name))) for field, name in FUNCTIONS_DIRECT.items()
        }
    except (OSError, AttributeError) as err:  # no such library, or a function missing from it
        LOG.info("audit verify hashes through EVP: %s has no SHA256_Init/Update/Final (%s)", library, err)
        return None
    probes = [b"", b"nic-sandbox audit chain probe", bytes(range(256)) * 5]  # empty, short, several blocks
    if any(_direct_sha256(ffi, lib, probe) != hashlib.sha256(probe).hexdigest() for probe in probes):
        LOG.warning("audit verify hashes through EVP: %s's SHA256_* differ from hashlib's", library)
        return None
    return Direct(ffi, lib, addresses)
