/* `audit verify`'s compiled line check: is every line of a batch exactly the writer's canonical encoding of a
 * record of the schema?  One call per batch, one pass over its bytes, no record built.
 *
 * An intact log is the common case, and verifying it is mostly proving that each line is what the writer would
 * have written (the hash over the batch's bytes proves the rest: hashlib in Python for a v2 batch, chk_chain below
 * for a v1 chunk's per-line chain).  Decoding every
 * line into a record and encoding it again to compare costs about two microseconds a record even with a compiled
 * JSON library (verifier/audit/fast_read.py); this scan reads each byte once against the one form the writer
 * produces -- the keys of FIELDS_V2 (or FIELDS) in order, compact separators, json.dumps(ensure_ascii=True)'s
 * string escapes, integers as Python writes them and in the schema's ranges, the kinds, the reason codes, hex
 * digits -- the way a kernel validates a user buffer against one fixed layout instead of parsing it
 * generally.
 *
 * It answers "OK" or "not sure", never "damaged": the reference (json.loads, schema_problem, a canonical
 * re-encode, verifier/audit/read.py) decides every line it is not sure of, and names the problem.  So it may
 * refuse what the reference accepts (a float, an integer past 64 bits, a lone surrogate escape, a reason with an
 * escape, a dict of more than CHK_MAX_KEYS keys), never the reverse: tests/verifier/test_audit_check.py holds
 * it to the reference on random and hostile lines.  What it cannot judge alone -- that a `wall` names a real
 * date -- it hands back: the offset of each `wall` whose second differs from the line before, for Python to
 * ask the reference once per distinct second.
 *
 * Its tables (the keys, the kinds, the ranges, the reason pattern) restate verifier/audit/log.py and read.py;
 * verifier/audit/check.py compares them with those declarations when it loads the module and refuses a module
 * that differs.
 */
#ifndef NIC_SANDBOX_CHECK_H
#define NIC_SANDBOX_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "descriptors.h" /* every accelerator's cdef starts with the shared descriptor structs (ring/cbuild.py) */

/* cdef-begin */

/* Longest reason code (verifier/audit/log.py: MAX_REASON). */
#define CHK_MAX_REASON 64
/* Hex digits of a ``desc_hex`` (a 16-byte descriptor) and of a v1 ``prev``/``hash`` (SHA-256). */
#define CHK_DESC_HEX 32
#define CHK_HASH_HEX 64
/* Characters of a ``wall`` as the writer writes it: ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``; the first CHK_SECOND
 * name its second. */
#define CHK_WALL 30
#define CHK_SECOND 19
/* Most keys in one ``desc`` or ``detail`` this check takes (more: not sure). */
#define CHK_MAX_KEYS 32
/* Returns below one: not sure (the reference decides). */
#define CHK_UNSURE 0

/* Check ``n`` lines of records of schema ``schema`` (1 or 2) in ``raw`` (``len`` bytes, every line ending in a
 * newline), their seqs ``expected``, ``expected`` + 1, ...  Returns how many offsets it wrote to ``walls`` (at
 * least one: a ``wall`` value's first byte in ``raw``, for each line whose ``wall`` names another second than the
 * line before) when every line is canonical and of the schema, else CHK_UNSURE.  ``capacity``: room in
 * ``walls`` (more distinct seconds than that: not sure). */
int64_t chk_lines(const char *raw, uint64_t len, uint64_t n, uint64_t expected, uint32_t schema, uint64_t *walls,
                  uint64_t capacity);

/* Where the first line of ``data`` (``len`` bytes) at or after ``start`` (a line's start) that begins with
 * ``prefix`` (``prefix_len`` bytes) begins, or -1 when none does; ``*lines``: the newlines between ``start`` and
 * there (or the end).  How verifier/audit/read_v2.py finds a batch's checkpoint and counts its record lines in one
 * pass (memchr from line to line) instead of a search and a count. */
int64_t chk_find_line(const char *data, uint64_t len, uint64_t start, const char *prefix, uint64_t prefix_len,
                      uint64_t *lines);

/* Where the ``n``th newline of ``data`` (``len`` bytes) after ``start`` ends (the offset just past it), or -1
 * when fewer follow; ``*found``: the newlines seen (``n`` when there are enough).  How verifier/audit/runs.py cuts
 * a block of a v1 file into runs of whole lines (memchr from line to line) without a bytes object per line. */
int64_t chk_line_end(const char *data, uint64_t len, uint64_t start, uint64_t n, uint64_t *found);

/* The SHA-256 ``chk_chain`` hashes with: the system's OpenSSL libcrypto (the library Python's hashlib uses), its
 * EVP digest functions and a context and SHA-256 ``EVP_MD`` made for the call, found by verifier/audit/libcrypto.py
 * at run time (cffi's ABI mode: no OpenSSL headers at build time) and passed in as pointers.  OpenSSL's types are
 * opaque here.
 *
 * ``sha256_init``/``sha256_update``/``sha256_final`` (optional: NULL when libcrypto lacks them) are libcrypto's
 * SHA256_Init/Update/Final, the same compression function without EVP's per-digest bookkeeping (about 0.05 to
 * 0.1 µs of a record's 0.5 µs here); their ``SHA256_CTX`` (112 bytes in OpenSSL's sha.h) lives on chk_chain's
 * stack in CHK_SHA256_CTX_BYTES, so each call -- each thread -- has its own. */
typedef int (*chk_digest_init)(void *ctx, const void *md, void *engine);
typedef int (*chk_digest_update)(void *ctx, const void *data, size_t count);
typedef int (*chk_digest_final)(void *ctx, unsigned char *md, unsigned int *size);
typedef int (*chk_sha256_init)(void *ctx);
typedef int (*chk_sha256_update)(void *ctx, const void *data, size_t count);
typedef int (*chk_sha256_final)(unsigned char *md, void *ctx);
#define CHK_SHA256_CTX_BYTES 256
struct chk_sha256 {
    void *ctx;
    const void *md;
    chk_digest_init init;
    chk_digest_update update;
    chk_digest_final final;
    chk_sha256_init sha256_init;
    chk_sha256_update sha256_update;
    chk_sha256_final sha256_final;
};

/* Walk a schema v1 chunk's hash chain: ``n`` lines in ``raw`` (``len`` bytes, each ending in a newline, each
 * ending ``,"prev":"<64 hex>","hash":"<64 hex>"}``), the first chained from ``prev`` (CHK_HASH_HEX hex digits).
 * A line links when its ``prev`` is the hash before it and its ``hash`` is SHA-256 (lower-case hex) of that
 * ``prev``, the line up to ``,"hash":"`` and ``}`` -- verifier/audit/log.py's chain_hash -- which becomes the
 * ``prev`` of the next.  Returns how many lines link from the first (``n``: all of them); a smaller number is
 * the first line that does not, or does not end as above, or whose digest failed: the reference decides. */
int64_t chk_chain(const char *raw, uint64_t len, uint64_t n, const char *prev, const struct chk_sha256 *sha);

/* The tables the check restates, as text, for verifier/audit/check.py to compare with the Python declarations:
 * the keys of a schema's record in order (comma-separated), the kinds, the integer ranges
 * (``name:low:high`` comma-separated), the reason code's pattern. */
const char *chk_fields(uint32_t schema);
const char *chk_kinds(void);
const char *chk_ranges(void);
const char *chk_reason_pattern(void);

/* SHA-256 (hex) of check.h and check.c as compiled (defined by the build). */
const char *check_source_digest(void);

/* cdef-end */

#endif
