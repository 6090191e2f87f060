/* The audit log's compiled line formatter: a batch of record lines from columns, into one buffer.
 *
 * Under attack the audit log formats hundreds of refusals per doorbell, each about 450 bytes of JSON; doing that
 * in Python costs about a microsecond a record however the work is arranged (verifier/audit/lines.py).  The
 * lines of a batch are the same template row after row, so Python describes the template once per batch as a
 * list of columns (verifier/audit/encode.py) and this loop writes row after row of it into one buffer: the way
 * the kernel's audit subsystem formats a record straight into its buffer (audit_log_format in kernel/audit.c).
 *
 * It decides nothing about JSON: every string it writes was escaped by Python's json encoder (the log's
 * canonical form) before it got here, and it only writes integers (decimal, as JSON writes them), integers in
 * hex as Python's hex() writes them, and raw bytes in lower-case hex.  verifier/audit/lines.py's interleave of
 * the same columns is the semantics; tests/verifier/test_audit_encoders.py holds both to a frozen reference.
 *
 * Hostile input is refused, never followed: every table index is checked against the table, every column's
 * element width against the four integer widths, and every byte written against the buffer's capacity.  A
 * refused batch returns a negative code having written nothing the caller uses.
 *
 * enc_chain (below) finishes a schema v1 batch: around the tails this formatter wrote it puts each record's seq,
 * clock stamp and hash chain (SHA-256 from the system's libcrypto, handed over as function pointers), in one
 * call per batch instead of a hashlib call and a clock reading per record from Python
 * (verifier/audit/chaining.py; Python's chain in verifier/audit/log.py is the semantics,
 * tests/verifier/test_audit_chaining.py holds both to the same bytes).
 */
#ifndef NIC_SANDBOX_ENCODE_H
#define NIC_SANDBOX_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "descriptors.h" /* every accelerator's cdef starts with the shared descriptor structs (ring/cbuild.py) */

/* cdef-begin */

/* What a column writes in each row (verifier/audit/encode.py: OPS). */
#define ENC_CONST 0   /* the same bytes: ``text``, ``text_len`` of them */
#define ENC_PICK 1    /* one of a table's strings: the row's index (an integer column) into ``offsets``/``text`` */
#define ENC_DEC 2     /* the row's integer in decimal */
#define ENC_HEX 3     /* the row's integer as hex() writes it: 0x, lower case, no leading zeros */
#define ENC_HEXROW 4  /* the row's ``width`` bytes, each as two lower-case hex digits */
#define ENC_COUNT 5   /* ``base`` + the row's number in decimal (a record's seq) */

/* Column flags (``flags``). */
#define ENC_SKIP_ONES 1 /* nothing in rows whose element (``data``, ``width``, also for ENC_CONST) is all ones: -1 */
#define ENC_KEYED 2     /* ENC_PICK: the (signed) element is looked up in ``keys``; its position picks the string */

/* Returns of enc_lines below zero. */
#define ENC_ERR_ROOM -1   /* the output buffer is too small */
#define ENC_ERR_INDEX -2  /* a table index outside its table */
#define ENC_ERR_SPEC -3   /* an unknown op or element width */
#define ENC_ERR_KEY -4    /* an ENC_KEYED element that is not in its keys (the caller adds it and calls again) */

/* One column.  ``data`` + row * ``stride`` is the row's element (ENC_PICK, ENC_DEC, ENC_HEX: an integer of
 * ``width`` bytes, 1, 2, 4 or 8, signed when ``is_signed``; ENC_HEXROW: ``width`` bytes).  ``mask``, when not
 * NULL, has one byte per row: 0 writes nothing for this column in that row.  ENC_DEC and ENC_HEX of an unsigned
 * element write it shifted right by ``shift`` bits (a byte's page frame).  A batch's columns are the same from
 * one batch to the next but for where the rows are (verifier/audit/programs.py keeps them and changes ``data``):
 * that is why a column finds its own strings (``keys``, ``base``) rather than Python working them out per row. */
struct enc_column {
    uint32_t op;
    uint32_t width;
    uint32_t is_signed;
    uint32_t flags;           /* ENC_SKIP_ONES, ENC_KEYED */
    const uint8_t *data;
    int64_t stride;
    const uint8_t *mask;
    const uint8_t *text;      /* ENC_CONST: the bytes; ENC_PICK: the table's strings back to back */
    uint64_t text_len;        /* ENC_CONST: how many; ENC_PICK: the length of ``text`` */
    const uint64_t *offsets;  /* ENC_PICK: string k is text[offsets[k] : offsets[k + 1]] */
    uint64_t entries;         /* ENC_PICK: how many strings (``offsets`` holds entries + 1) */
    uint32_t shift;           /* ENC_DEC, ENC_HEX of an unsigned element: bits shifted out first (below 64) */
    uint32_t reserved;
    uint64_t base;            /* ENC_COUNT: the first row's number */
    const int64_t *keys;      /* ENC_PICK with ENC_KEYED: ``entries`` integers, ascending, no repeats */
};

/* Write ``rows`` rows, each the ``ncolumns`` columns in order, into ``out`` (``capacity`` bytes).  Returns the
 * bytes written, or ENC_ERR_ROOM, ENC_ERR_INDEX, ENC_ERR_SPEC or ENC_ERR_KEY. */
int64_t enc_lines(const struct enc_column *columns, uint32_t ncolumns, uint64_t rows, uint8_t *out,
                  uint64_t capacity);

/* enc_lines of a rejection template (verifier/audit/programs.py ``_build``: the lines of a doorbell's refusals),
 * written by straight-line code for that template's columns instead of the generic loop: the same bytes and the
 * same refusals as enc_lines, or ENC_ERR_SHAPE (nothing written) for columns that are not such a template. */
#define ENC_ERR_SHAPE -7
int64_t enc_rejections(const struct enc_column *columns, uint32_t ncolumns, uint64_t rows, uint8_t *out,
                       uint64_t capacity);

/* A rejection template's batch in one call, the template's columns pointed at the batch here rather than by
 * Python (five addresses, a copy of the specs and a numpy gather per batch cost more than a tenth of the batch's
 * formatting).  ``program``'s columns are as enc_lines takes them but for their ``reserved`` field, which says
 * where the batch's part of the column is: 0 nowhere (the column is whole); ENC_FROM_DESCS to ENC_FROM_OWNER:
 * ``data`` is an offset into that array of the batch; ENC_FROM_STAMP: ``text`` is ``stamp`` (``stamp_len``
 * bytes) -- or, ``stamp`` NULL, the stamp ``,"wall":"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ","mono_ns":M`` of the
 * batch's one clock reading ``wall``, ``mono`` formatted here (log.py ``_stamps``; ENC_ERR_CLOCK for a wall
 * before 1970); ENC_FROM_FIRST: ``base`` is ``first``.  The pointed copy (at most ENC_TEMPLATE_COLUMNS columns)
 * is written by enc_rejections, or by enc_lines when it answers ENC_ERR_SHAPE: the same returns as theirs. */
#define ENC_FROM_DESCS 1
#define ENC_FROM_RING_INDEX 2
#define ENC_FROM_REASON 3
#define ENC_FROM_BAD_BYTE 4
#define ENC_FROM_OWNER 5
#define ENC_FROM_STAMP 6
#define ENC_FROM_FIRST 7
#define ENC_TEMPLATE_COLUMNS 64
/* The most bytes of a stamp formatted from a reading: ``,"wall":"`` 30 characters ``","mono_ns":`` and ``-`` with 19
 * digits. */
#define ENC_STAMP_MAX 71
int64_t enc_template_rows(const struct enc_column *program, uint32_t ncolumns, const uint8_t *descs,
                          const uint8_t *ring_index, const uint8_t *reason, const uint8_t *bad_byte,
                          const uint8_t *owner, const char *stamp, uint64_t stamp_len, int64_t wall, int64_t mono,
                          uint64_t first, uint64_t rows, uint8_t *out, uint64_t capacity);

/* The system's SHA-256 for enc_chain: libcrypto's EVP digest functions and a context and ``EVP_MD`` of its own,
 * opened at run time (verifier/audit/libcrypto.py, as check.h's ``struct chk_sha256`` for ``audit verify``): no
 * SHA-256 code of anyone's is copied here, and building needs no OpenSSL headers. */
typedef int (*enc_digest_init)(void *ctx, const void *md, void *engine);
typedef int (*enc_digest_update)(void *ctx, const void *data, size_t count);
typedef int (*enc_digest_final)(void *ctx, unsigned char *md, unsigned int *size);
typedef int (*enc_sha256_init)(void *ctx);
typedef int (*enc_sha256_update)(void *ctx, const void *data, size_t count);
typedef int (*enc_sha256_final)(unsigned char *md, void *ctx);
#define ENC_SHA256_CTX_BYTES 256
struct enc_sha256 {
    void *ctx;
    const void *md;
    enc_digest_init init;
    enc_digest_update update;
    enc_digest_final final;
    /* Optional (NULL: EVP above): libcrypto's SHA256_Init/Update/Final (verifier/audit/libcrypto.py ``direct``),
     * the same compression function without EVP's per-digest provider bookkeeping, as check.h's chk_sha256 has
     * them; their SHA256_CTX (112 bytes in OpenSSL's sha.h) lives on enc_chain's stack in ENC_SHA256_CTX_BYTES. */
    enc_sha256_init sha256_init;
    enc_sha256_update sha256_update;
    enc_sha256_final sha256_final;
};

/* Hex digits of a v1 ``prev``/``hash`` (SHA-256), and the most bytes enc_chain adds to a tail: the seq (20
 * digits), the stamp (``,"wall":"`` 30 characters ``","mono_ns":`` and ``-`` with 19 digits), the chain
 * (``prev``, ``","hash":"``, ``hash``, ``"}`` and the newline), beyond ``lead``. */
#define ENC_HASH_HEX 64
#define ENC_CHAIN_ROW 232
/* Returns of enc_chain below zero (besides ENC_ERR_ROOM and ENC_ERR_SPEC: fewer than ``n`` tails). */
#define ENC_ERR_CLOCK -5  /* a wall reading before 1970 (formatted by Python's gmtime, not here) */
#define ENC_ERR_DIGEST -6 /* libcrypto said no */

/* Write ``n`` schema v1 record lines, hash-chained, into ``out`` (``capacity`` bytes) -- verifier/audit/log.py's
 * ``_chain`` and ``_heads`` in one call.  Line k is ``lead`` (``lead_len`` bytes, ``{"v":1,"seq":``), the seq
 * ``first`` + k in decimal, the stamp ``,"wall":"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ","mono_ns":M`` of the k-th clock
 * reading, tail k (the k-th line of ``tails``, ``tails_len`` bytes, without its newline: the record's fields
 * after ``mono_ns`` up to and including ``,"prev":"``), then ``prev``, ``","hash":"``, ``hash`` and ``"}`` and a
 * newline, where ``hash`` = SHA-256 hex of ``prev`` + the line up to and including ``prev"`` + ``}``
 * (log.py's ``chain_hash``) becomes the next line's ``prev``.  ``lead`` NULL: each tail is a whole body already
 * (seq and stamp in it), nothing goes before it and no clock is read.
 *
 * ``readings``: 2 * ``n`` integers, the k-th reading's wall (ns since the epoch) and monotonic ns; NULL: read
 * here per line, CLOCK_REALTIME then CLOCK_MONOTONIC, as log.py's ``system_clock`` reads time.time_ns() and
 * time.monotonic_ns().  ``prev`` (ENC_HASH_HEX hex digits) is the hash before the first line on entry and the
 * last line's on return; ``ends[k]`` (when not NULL) where line k ends in ``out``.  Returns the bytes written,
 * or ENC_ERR_ROOM, ENC_ERR_SPEC, ENC_ERR_CLOCK or ENC_ERR_DIGEST (``prev`` then as on entry, ``out`` unused). */
int64_t enc_chain(const uint8_t *tails, uint64_t tails_len, uint64_t n, const uint8_t *lead, uint64_t lead_len,
                  uint64_t first, const int64_t *readings, uint8_t *prev, const struct enc_sha256 *sha, uint8_t *out,
                  uint64_t capacity, uint64_t *ends);

/* enc_template_rows and enc_chain of a schema v1 batch in one pass: each of ``rows`` lines is ``lead``, its seq
 * and clock stamp as enc_chain writes them (``readings`` or the system clock, as there), the rejection template's
 * row -- ``program`` pointed at the batch as enc_template_rows points it, a template without lead, seq and
 * stamp whose row ends ``,"prev":"`` -- and the chain, as enc_chain closes a line: no tails in between, each row
 * hashed right after it is written.  ``ends[k]`` where line k ends.  Returns the bytes written, or ENC_ERR_SHAPE
 * (not such a template: the caller writes the tails and calls enc_chain), ENC_ERR_ROOM (``capacity`` under
 * ``rows`` * (``lead_len`` + ENC_CHAIN_ROW + the template's longest row)), ENC_ERR_INDEX, ENC_ERR_KEY, ENC_ERR_SPEC,
 * ENC_ERR_CLOCK or ENC_ERR_DIGEST; ``prev`` is changed only by a batch written whole. */
int64_t enc_template_chain(const struct enc_column *program, uint32_t ncolumns, const uint8_t *descs,
                           const uint8_t *ring_index, const uint8_t *reason, const uint8_t *bad_byte,
                           const uint8_t *owner, const uint8_t *lead, uint64_t lead_len, uint64_t first,
                           uint64_t rows, const int64_t *readings, uint8_t *prev, const struct enc_sha256 *sha,
                           uint8_t *out, uint64_t capacity, uint64_t *ends);

/* The most bytes of a v2 checkpoint line: ``{"v":2,"checkpoint":`` and 20 digits, ``,"records":`` and 20,
 * ``,"prev":"`` and a hash, ``","hash":"`` and a hash, ``"}`` and the newline. */
#define ENC_CHECKPOINT_MAX 224
/* A schema v2 batch's checkpoint line after its ``used`` bytes of record lines at ``lines`` (``capacity`` bytes
 * in all) -- log.py's ``checkpoint_line``: ``{"v":2,"checkpoint":last,"records":records,"prev":"<prev>",
 * "hash":"<hash>"}`` and a newline, ``hash`` the SHA-256 hex of ``prev``, the lines and the checkpoint without
 * ``hash`` (``checkpoint_hash``); ``prev`` (ENC_HASH_HEX hex digits) becomes ``hash``.  Returns the bytes of the
 * line, or ENC_ERR_ROOM (fewer than ENC_CHECKPOINT_MAX bytes free) or ENC_ERR_DIGEST, ``prev`` unchanged. */
int64_t enc_checkpoint(uint8_t *lines, uint64_t used, uint64_t capacity, uint64_t last, uint64_t records,
                       uint8_t *prev, const struct enc_sha256 *sha);

/* SHA-256 (hex) of encode.h and encode.c as compiled (defined by the build). */
const char *encode_source_digest(void);

/* cdef-end */

#endif
