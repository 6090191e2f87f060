/* The oracle's own reader of a followed audit log's lines, as columns (fuzz/log_columns.py loads it).
 *
 * In a rejection flood a step's chunk of the log is hundreds of descriptor records; reading them as JSON objects
 * and turning them into columns costs the oracle a few microseconds a record in Python (msgspec's decode, then a
 * pass per field).  This scan reads each line once and writes the fields the oracle judges straight into column
 * arrays: one call per chunk.
 *
 * It answers "these columns" or "not sure", never "damaged": it takes only lines in the strict compact form the
 * writer produces (no whitespace, strings of printable ASCII without escapes, integers without a sign where none
 * is needed, no arrays, no floats, no repeated key) and a chunk of nothing but checkpoints and descriptor records
 * that state every field a run needs; anything else, and every value out of its column's range, is "not sure"
 * and fuzz/log_follow.py's msgspec path (the reference) takes the chunk.  Shares no code with verifier/ (the
 * oracle judges the log; it does not borrow the verifier's reader).
 */
#ifndef NIC_SANDBOX_LOGCOLS_H
#define NIC_SANDBOX_LOGCOLS_H

#include <stddef.h>
#include <stdint.h>

#include "descriptors.h" /* every accelerator's cdef starts with the shared descriptor structs (ring/cbuild.py) */

/* cdef-begin */

/* Distinct strings (nic, kind, reason, owner values) one chunk may use; more: not sure. */
#define LOGCOLS_MAX_STRINGS 64
/* Returned when the chunk is not one this reader is sure of. */
#define LOGCOLS_UNSURE -1

/* The columns of the descriptor records of ``chunk`` (``size`` bytes, every line newline-ended), at most
 * ``capacity`` of them.  Per record: ``seq``, ``queue``, ``slot`` (ring_index), ``addr`` (desc.addr),
 * ``length``/``cmd``/``cso``/``css`` (desc, default 0), ``checked`` (detail.checked_bytes, default -1), ``bad``
 * (detail.first_bad_byte's 64 bits, all ones when absent), ``line`` (the line's first byte), and the string ids
 * ``nic``, ``kind``, ``reason``, ``owner`` (detail.owner, default ""): indices into ``strings``, which gets
 * (offset, length) pairs into ``chunk`` (``*n_strings`` of them, in order of first use).  Checkpoint lines (a
 * ``checkpoint`` key) are skipped.  Returns the records read, or LOGCOLS_UNSURE. */
int64_t logcols_read(const uint8_t *chunk, int64_t size, int64_t capacity, int64_t *seq, int64_t *queue,
                     int64_t *slot, uint64_t *addr, int64_t *length, int64_t *cmd, int64_t *cso, int64_t *css,
                     int64_t *checked, uint64_t *bad, int64_t *line, int32_t *nic, int32_t *kind, int32_t *reason,
                     int32_t *owner, int64_t *strings, int64_t *n_strings);

/* TXD_CMD_EOP (ring/descriptors.py): a TX packet's last descriptor. */
#define LOGCOLS_EOP 0x01

/* The ``n`` records logcols_read wrote, cut into runs as the oracle judges them (fuzz/oracle/audit.py ``_runs``:
 * another nic or queue, a seq that does not follow; at ``limit`` records or more after a packet's end -- TX,
 * ``tx`` 1: ``cmd`` has LOGCOLS_EOP -- and at twice ``limit`` whatever).  Per run: its first record in
 * ``starts``, the string ids of its reasons in order of first use in ``names`` (LOGCOLS_MAX_STRINGS a run,
 * ``n_names`` of them); per record its reason's code in its run (``code``).  Returns the runs, or
 * LOGCOLS_UNSURE when the records are of several kinds or a TX ``cmd`` is not a byte. */
int64_t logcols_runs(int64_t n, int64_t limit, const int64_t *seq, const int64_t *queue, const int64_t *cmd,
                     const int32_t *nic, const int32_t *kind, const int32_t *reason, int64_t tx, int64_t *starts,
                     uint8_t *code, int32_t *names, int64_t *n_names);

/* SHA-256 (hex) of logcols.h and logcols.c as compiled (defined by the build). */
const char *logcols_source_digest(void);

/* cdef-end */

#endif
