/* The oracle's compiled judgement of a pin or access claim (fuzz/oracle/pin_claims.py loads it).
 *
 * A refused hostile batch is mostly ADDR_NOT_PINNED, PIN_RELEASED and ACCESS_NO_* records, and each names a
 * first_bad_byte.  fuzz/oracle/reasons.py ``_claim_status`` (the semantics, whole-batch numpy: some forty array
 * calls a reason) asks of every such record: does it name a byte, is the byte in the range and in memory, is every
 * frame before it pinned with the access the device needs, and is its own frame in the state the reason
 * describes.  This pass answers the same per record in one loop.  The frame state is a 256-entry table made from
 * the numpy predicate itself (one entry per value of a pin-reference byte), so the pass holds no reason's rule of
 * its own.  It answers "not sure" (PINCLAIM_UNSURE) when a frame it would read lies outside the reference table,
 * and the numpy path then judges the batch.  Shares no code with verifier/ (the oracle judges the kernel; it does
 * not borrow the kernel's pin look-up).
 */
#ifndef NIC_SANDBOX_PINCLAIM_H
#define NIC_SANDBOX_PINCLAIM_H

#include <stddef.h>
#include <stdint.h>

#include "descriptors.h" /* every accelerator's cdef starts with the shared descriptor structs (ring/cbuild.py) */

/* cdef-begin */

/* A record's status, in the order the oracle states the first contradicting fact. */
#define PINCLAIM_TRUE 0         /* the byte is in range and memory, frames before it pinned, its frame as claimed */
#define PINCLAIM_UNNAMED 1      /* no first_bad_byte (-1) */
#define PINCLAIM_OUTSIDE 2      /* the byte is not in [addr, addr + length) or not in memory */
#define PINCLAIM_BEFORE 3       /* a frame before the byte lacks the needed access bits */
#define PINCLAIM_FRAME 4        /* the byte's frame is not in the state the reason describes */
#define PINCLAIM_UNSURE -1
/* ring.memory.PAGE_SHIFT: frames are 4 KiB. */
#define PINCLAIM_PAGE_SHIFT 12

/* ``n`` records: ``addr``, range ``length`` (bytes, as unsigned), ``bad`` (first_bad_byte, all ones: none).
 * ``table``: the reference's bits per frame (``frames`` of them), ``memory_size`` bytes of memory, ``need``: the
 * access bits every frame before the byte must hold (any of them), ``frame_bad``: 256 bytes, nonzero for a
 * reference byte the reason describes.  Writes per record ``status`` and ``frame`` (the byte's frame, 0 unless
 * the byte is in range and memory).  Returns how many records are not PINCLAIM_TRUE, or PINCLAIM_UNSURE. */
int64_t pinclaim_judge(int64_t n, const uint64_t *addr, const uint64_t *length, const uint64_t *bad,
                       const uint8_t *table, int64_t frames, uint64_t memory_size, uint8_t need,
                       const uint8_t *frame_bad, uint8_t *status, int64_t *frame);

/* SHA-256 (hex) of pinclaim.h and pinclaim.c as compiled (defined by the build). */
const char *pinclaim_source_digest(void);

/* cdef-end */

#endif
