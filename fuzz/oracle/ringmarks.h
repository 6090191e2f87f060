/* The oracle's compiled reading of a watched ring after a step (fuzz/oracle/ring_marks.py loads it).
 *
 * After every step fuzz/oracle/audit.py ``AuditWatch.after_step`` reads each watched ring as the tenant does:
 * the slots carrying the kernel's refusal mark, on a TX ring the slots the device completed (and a packet split
 * between the two: PKT_BAD_FRAGMENT, ``rules.packet_atomicity``), reaps both (the status cleared, as a driver
 * takes a slot back), and then ``_match_records`` matches the marks to the ring slots the step's records name.
 * The numpy path does this in some twenty whole-ring array calls a step; this pass does the reading and reaping
 * of one ring in one call, and the match of one queue in another.  The same for what one TX doorbell shows
 * (``Oracle.tail_written``: a refusal mark left in the slots handed back, a packet held or sent open, a packet
 * split in one doorbell): one call each, where the numpy path makes some twenty-five array calls.  It holds no descriptor rule of its own: each
 * test is a mask and value over a descriptor's second little-endian 64-bit word that audit.py makes from the
 * ring/ dtypes (``_word_test``), as the numpy path's one-word test is.  Shares no code with verifier/.
 */
#ifndef NIC_SANDBOX_RINGMARKS_H
#define NIC_SANDBOX_RINGMARKS_H

#include <stddef.h>
#include <stdint.h>

#include "descriptors.h" /* every accelerator's cdef starts with the shared descriptor structs (ring/cbuild.py) */

/* cdef-begin */

/* ``n`` 16-byte descriptors at ``words`` (2n words; slot i's second word is words[2i + 1]).  A slot is marked
 * when ``word & mark_mask == mark_value``; with ``completions`` it is sent when ``word & sent_mask == sent_value``
 * and ends its packet when ``word & eop_mask`` is nonzero.  Writes the marked slots, ascending, to ``marks``, and
 * to ``split`` (3 words, with ``completions``): how many sent slots without EOP have their next slot (over the
 * ring's end too) marked, and the first such pair (sent slot, marked slot).  Then clears ``clear_mark`` in each
 * marked slot's word and, with ``completions``, ``clear_sent`` in each sent slot's word.  Returns the marks. */
int64_t ringmarks_step(int64_t n, uint64_t *words, uint64_t mark_mask, uint64_t mark_value, int32_t completions,
                       uint64_t sent_mask, uint64_t sent_value, uint64_t eop_mask, uint64_t clear_mark,
                       uint64_t clear_sent, int64_t *marks, int64_t *split);

/* Whether ``described`` (the ring slots ``n_described`` records name) are the ``marks`` (strictly ascending,
 * each in [0, size)) once each, in any order: 1 yes, 0 no, -1 when a mark is not in [0, size) (nothing is
 * written).  ``seen``: ``size`` bytes of zeros, left zero. */
int32_t ringmarks_match(int64_t n_marks, const int64_t *marks, int64_t n_described, const int64_t *described,
                        int64_t size, uint8_t *seen);

/* How many of the ``count`` slots from ``start`` on (wrapping at ``n``) are marked (``word & mask == value``). */
int64_t ringmarks_count(int64_t n, const uint64_t *words, int64_t start, int64_t count, uint64_t mask,
                        uint64_t value);

/* What one TX doorbell shows (fuzz/oracle/held.py ``judge_doorbell``, rules.py ``window_atomicity``), read once
 * per window.  A slot is done when ``word & done_mask == done_value``, refused when ``word & mark_mask ==
 * mark_value``, sent when ``word & sent_mask == sent_value``, and ends its packet when ``word & eop_mask`` is
 * nonzero.  Windows are the ``count`` slots from ``start`` on, wrapping at ``n``. */

/* As positions in the window: ``out[0]`` the first slot not done, ``out[1]`` the first done slot after it,
 * ``out[2]`` the last sent slot (-1: none), ``out[3]`` 1 when that slot ends its packet, else 0. */
void ringmarks_held(int64_t n, const uint64_t *words, int64_t start, int64_t count, uint64_t done_mask,
                    uint64_t done_value, uint64_t sent_mask, uint64_t sent_value, uint64_t eop_mask, int64_t *out);

/* Packets numbered by their EOP bits in window order (the open one last): ``out[0]`` and ``out[1]``, the first
 * and last ring slot of the first packet with a slot refused and a slot sent (-1: none). */
void ringmarks_atomic(int64_t n, const uint64_t *words, int64_t start, int64_t count, uint64_t mark_mask,
                      uint64_t mark_value, uint64_t sent_mask, uint64_t sent_value, uint64_t eop_mask,
                      int64_t *out);

/* SHA-256 (hex) of ringmarks.h and ringmarks.c as compiled (defined by the build). */
const char *ringmarks_source_digest(void);

/* cdef-end */

#endif
