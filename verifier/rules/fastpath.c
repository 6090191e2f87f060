/* The verifier's hot path in one call per batch: snapshot, check, post; and the completion write-back.
 *
 * Semantics are those of verifier/rules/checks.py's fast path and verifier/modes/shadow.py, which stay the
 * reference and the fallback: a batch is accepted here only if every descriptor is a whole,
 * valid, pinned packet; anything else returns 0 and the caller judges the snapshot (already
 * taken, exactly once) with the numpy checks.  Every pointer and size comes from the kernel;
 * descriptor contents only ever meet bounds checks before they are used.
 *
 * Descriptors are copied in and out whole (memcpy of a struct): the rings are byte buffers with
 * no alignment promise, and the compiler turns each copy into plain loads and stores.
 */
#include "fastpath.h"

#include <stddef.h>
#include <string.h>

_Static_assert(sizeof(struct tx_desc) == 16, "e1000 legacy TX descriptors are 16 bytes");
_Static_assert(sizeof(struct rx_desc) == 16, "e1000 legacy RX descriptors are 16 bytes");
/* RX completion writes length, csum, status, errors and special as one 64-bit store, so that a reader never
 * sees DD without the length and errors that go with it. */
#define RX_WRITEBACK offsetof(struct rx_desc, length)
_Static_assert(sizeof(struct rx_desc) - RX_WRITEBACK == sizeof(uint64_t), "the RX write-back is one word");

/* Both formats have the same size; the ring helpers below move slots of this many bytes. */
#define SLOT sizeof(struct tx_desc)
_Static_assert(sizeof(struct rx_desc) == SLOT, "TX and RX slots are the same size");

static void copy_in(uint8_t *dst, const uint8_t *ring, uint32_t size, uint32_t start, uint32_t count)
{
    uint32_t first = size - start;
    if (first > count)
        first = count;
    memcpy(dst, ring + (uint64_t)start * SLOT, (size_t)first * SLOT);
    if (first < count)
        memcpy(dst + (size_t)first * SLOT, ring, (size_t)(count - first) * SLOT);
}

static void copy_out(uint8_t *ring, uint32_t size, uint32_t start, const uint8_t *src, uint32_t count)
{
    uint32_t first = size - start;
    if (first > count)
        first = count;
    memcpy(ring + (uint64_t)start * SLOT, src, (size_t)first * SLOT);
    if (first < count)
        memcpy(ring, src + (size_t)first * SLOT, (size_t)(count - first) * SLOT);
}

/* Slot x of a ring of size slots, for x below 2 * size (a slot of the ring plus a count of at most size slots):
 * one compare per descriptor instead of a division (a loop of `% size` costs about as much as the copies). */
static inline uint32_t wrap(uint32_t x, uint32_t size)
{
    return x >= size ? x - size : x;
}

static int range_ok(uint64_t addr, uint64_t span, const uint8_t *frame_ok, uint64_t nframes)
{
    uint64_t last_byte = addr + span; /* span = length - 1, at most one page: two frames decide */
    if (last_byte < addr)
        return 0;
    uint64_t first = addr >> FASTPATH_PAGE_SHIFT, last = last_byte >> FASTPATH_PAGE_SHIFT;
    if (first >= nframes || last >= nframes)
        return 0;
    return frame_ok[first] && frame_ok[last];
}

int tx_snapshot_check_post(const uint8_t *user_ring, uint32_t size, uint32_t tail, uint32_t k, uint8_t *snap,
                           const uint8_t *frame_ok, uint64_t nframes, uint8_t cmd_mask, uint8_t cmd_expect,
                           uint32_t max_len, uint8_t *shadow, uint32_t shadow_tail, int64_t *to_user)
{
    copy_in(snap, user_ring, size, tail, k);
    for (uint32_t i = 0; i < k; i++) {
        struct tx_desc d;
        memcpy(&d, snap + (size_t)i * SLOT, sizeof d);
        if ((d.cmd & cmd_mask) != cmd_expect || d.length == 0 || d.length > max_len)
            return 0;
        if (!range_ok(d.addr, (uint64_t)d.length - 1, frame_ok, nframes))
            return 0;
    }
    copy_out(shadow, size, shadow_tail, snap, k);
    for (uint32_t i = 0; i < k; i++)
        to_user[wrap(shadow_tail + i, size)] = wrap(tail + i, size);
    return 1;
}

int rx_snapshot_check_post(const uint8_t *user_ring, uint32_t size, uint32_t tail, uint32_t k, uint8_t *snap,
                           const uint8_t *frame_ok, uint64_t nframes, uint32_t buffer_size, uint8_t *shadow,
                           uint32_t shadow_tail, int64_t *to_user)
{
    copy_in(snap, user_ring, size, tail, k);
    for (uint32_t i = 0; i < k; i++) {
        struct rx_desc d;
        memcpy(&d, snap + (size_t)i * SLOT, sizeof d);
        if (!range_ok(d.addr, (uint64_t)buffer_size - 1, frame_ok, nframes))
            return 0;
    }
    for (uint32_t i = 0; i < k; i++) {
        struct rx_desc d, posted = {0}; /* the buffer address; length .. special start at zero */
        memcpy(&d, snap + (size_t)i * SLOT, sizeof d);
        posted.addr = d.addr;
        memcpy(shadow + (uint64_t)wrap(shadow_tail + i, size) * SLOT, &posted, sizeof posted);
        to_user[wrap(shadow_tail + i, size)] = wrap(tail + i, size);
    }
    return 1;
}

void tx_complete(uint8_t *user_ring, uint32_t size, const int64_t *to_user, uint32_t first, uint32_t n,
                 uint8_t status)
{
    if (n == 0)
        return;
    uint32_t s = first % size; /* then one step at a time, wrapping without a division */
    for (uint32_t i = 0; i < n; i++, s = s + 1 == size ? 0 : s + 1)
        user_ring[(uint64_t)to_user[s] * SLOT + offsetof(struct tx_desc, status)] = status;
}

void rx_complete(uint8_t *user_ring, uint32_t size, const uint8_t *shadow, const int64_t *to_user, uint32_t first,
                 uint32_t n)
{
    if (n == 0)
        return;
    uint32_t s = first % size;
    for (uint32_t i = 0; i < n; i++, s = s + 1 == size ? 0 : s + 1) {
        uint64_t word; /* length, csum, status, errors, special: one store, DD never alone */
        memcpy(&word, shadow + (uint64_t)s * SLOT + RX_WRITEBACK, sizeof word);
        memcpy(user_ring + (uint64_t)to_user[s] * SLOT + RX_WRITEBACK, &word, sizeof word);
    }
}

/* The new descriptors a doorbell's tail brings, or FP_DECLINED when queue_state.judge_tail might refuse it: the
 * tail is a slot of the ring and claims no more than the free slots (one slot always stays empty).  Python
 * judges every declined tail itself, so this may only ever be stricter than judge_tail, never laxer. */
static int64_t tail_step(uint32_t size, uint32_t new_tail, uint32_t tail, uint32_t done)
{
    if (size == 0 || new_tail >= size || tail >= size || done >= size)
        return FP_DECLINED;
    uint32_t forward = (new_tail + size - tail) % size;
    uint32_t used = (tail + size - done) % size;
    if (forward > size - 1 - used)
        return FP_DECLINED;
    return forward;
}

int64_t tx_doorbell(const struct fp_queue *q, const uint8_t *user_ring, uint8_t *shadow, uint8_t *snap,
                    int64_t *to_user, const uint8_t *frame_ok, uint32_t new_tail, uint32_t tail, uint32_t done,
                    uint32_t shadow_tail)
{
    int64_t k = tail_step(q->size, new_tail, tail, done);
    if (k < 0 || shadow_tail >= q->size)
        return FP_DECLINED;
    if (k == 0)
        return 0;
    if (!tx_snapshot_check_post(user_ring, q->size, tail, (uint32_t)k, snap, frame_ok, q->nframes, q->cmd_mask,
                                q->cmd_expect, q->max_len, shadow, shadow_tail, to_user))
        return FP_REFUSE;
    return k;
}

int64_t rx_doorbell(const struct fp_queue *q, const uint8_t *user_ring, uint8_t *shadow, uint8_t *snap,
                    int64_t *to_user, const uint8_t *frame_ok, uint32_t new_tail, uint32_t tail, uint32_t done,
                    uint32_t shadow_tail)
{
    int64_t k = tail_step(q->size, new_tail, tail, done);
    if (k < 0 || shadow_tail >= q->size)
        return FP_DECLINED;
    if (k == 0)
        return 0;
    if (!rx_snapshot_check_post(user_ring, q->size, tail, (uint32_t)k, snap, frame_ok, q->nframes, q->buffer_size,
                                shadow, shadow_tail, to_user))
        return FP_REFUSE;
    return k;
}

/* How many of ``left`` slots from s (one ring) and from u (the other) go on before either ring wraps. */
static inline uint32_t stretch(uint32_t size, uint32_t s, uint32_t u, uint32_t left)
{
    uint32_t run = left;
    if (run > size - s)
        run = size - s;
    if (run > size - u)
        run = size - u;
    return run;
}

/* The n shadow slots from head the device finished, if they map to the user slots done .. done + n - 1 in
 * order (QueueState.done_run's test, on every slot); FP_DECLINED otherwise or on any index outside the ring.
 * The slots are compared in runs that wrap neither ring, four at a time with no branch until the end of a run
 * (OR of the differences): the compiler keeps the loads in flight instead of testing each one, and the common
 * case (every slot in order) takes no early exit anyway. */
static int64_t in_order(uint32_t size, const int64_t *to_user, uint32_t head, uint32_t device_head, uint32_t done)
{
    if (size == 0 || head >= size || device_head >= size || done >= size)
        return FP_DECLINED;
    uint32_t n = (device_head + size - head) % size;
    uint32_t s = head, u = done, left = n;
    while (left) {
        uint32_t run = stretch(size, s, u, left);
        const int64_t *m = to_user + s;
        int64_t v = u, d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        uint32_t i = 0;
        for (; i + 4 <= run; i += 4, v += 4) {
            d0 |= m[i] ^ v;
            d1 |= m[i + 1] ^ (v + 1);
            d2 |= m[i + 2] ^ (v + 2);
            d3 |= m[i + 3] ^ (v + 3);
        }
        for (; i < run; i++, v++)
            d0 |= m[i] ^ v;
        if (d0 | d1 | d2 | d3)
            return FP_DECLINED;
        left -= run;
        s = wrap(s + run, size);
        u = wrap(u + run, size);
    }
    return n;
}

/* in_order found the n finished slots to be the user slots done .. done + n - 1: write those back directly (one
 * stretch, two when the user ring wraps), without looking each one up in to_user again. */
static void tx_complete_run(uint8_t *user_ring, uint32_t size, uint32_t done, uint32_t n, uint8_t status)
{
    uint8_t *status_byte = user_ring + offsetof(struct tx_desc, status);
    uint32_t first = size - done < n ? size - done : n;
    for (uint32_t i = 0; i < first; i++)
        status_byte[(uint64_t)(done + i) * SLOT] = status;
    for (uint32_t i = 0; i < n - first; i++)
        status_byte[(uint64_t)i * SLOT] = status;
}

/* The RX write-back of in_order's run: shadow slots head .. head + n - 1 to user slots done .. done + n - 1, each
 * as one 64-bit word (length, csum, status, errors, special: DD never alone), in stretches that wrap neither. */
static void rx_complete_run(uint8_t *user_ring, uint32_t size, const uint8_t *shadow, uint32_t head, uint32_t done,
                            uint32_t n)
{
    uint32_t s = head, u = done, left = n;
    while (left) {
        uint32_t run = stretch(size, s, u, left);
        const uint8_t *from = shadow + (uint64_t)s * SLOT + RX_WRITEBACK;
        uint8_t *to = user_ring + (uint64_t)u * SLOT + RX_WRITEBACK;
        for (uint32_t i = 0; i < run; i++) {
            uint64_t word;
            memcpy(&word, from + (uint64_t)i * SLOT, sizeof word);
            memcpy(to + (uint64_t)i * SLOT, &word, sizeof word);
        }
        left -= run;
        s = wrap(s + run, size);
        u = wrap(u + run, size);
    }
}

int64_t tx_reap(const struct fp_queue *q, uint8_t *user_ring, const uint8_t *shadow, const int64_t *to_user,
                uint32_t head, uint32_t device_head, uint32_t done)
{
    (void)shadow; /* TX writes back DD only */
    int64_t n = in_order(q->size, to_user, head, device_head, done);
    if (n > 0)
        tx_complete_run(user_ring, q->size, done, (uint32_t)n, q->done_status);
    return n;
}

int64_t rx_reap(const struct fp_queue *q, uint8_t *user_ring, const uint8_t *shadow, const int64_t *to_user,
                uint32_t head, uint32_t device_head, uint32_t done)
{
    int64_t n = in_order(q->size, to_user, head, device_head, done);
    if (n > 0)
        rx_complete_run(user_ring, q->size, shadow, head, done, (uint32_t)n);
    return n;
}

/* The device's head as the interrupt handler reads it: the register word, once, with acquire ordering (the
 * device writes a burst's descriptors back before it moves its head, so what this read sees is written back). */
static uint32_t read_head(struct fp_rings *r)
{
    uint32_t head = __atomic_load_n(r->head_reg, __ATOMIC_ACQUIRE);
    r->seen_head = head;
    return head;
}

int64_t tx_reap_mapped(struct fp_rings *r, uint32_t head, uint32_t done)
{
    return tx_reap(r->q, r->user, r->shadow, r->to_user, head, read_head(r), done);
}

int64_t rx_reap_mapped(struct fp_rings *r, uint32_t head, uint32_t done)
{
    return rx_reap(r->q, r->user, r->shadow, r->to_user, head, read_head(r), done);
}

int64_t tx_doorbell_rings(const struct fp_rings *r, uint32_t new_tail, uint32_t tail, uint32_t done,
                          uint32_t shadow_tail)
{
    return tx_doorbell(r->q, r->user, r->shadow, r->snap, r->to_user, r->frame_ok, new_tail, tail, done, shadow_tail);
}

int64_t rx_doorbell_rings(const struct fp_rings *r, uint32_t new_tail, uint32_t tail, uint32_t done,
                          uint32_t shadow_tail)
{
    return rx_doorbell(r->q, r->user, r->shadow, r->snap, r->to_user, r->frame_ok, new_tail, tail, done, shadow_tail);
}

int64_t tx_reap_rings(const struct fp_rings *r, uint32_t head, uint32_t device_head, uint32_t done)
{
    return tx_reap(r->q, r->user, r->shadow, r->to_user, head, device_head, done);
}

int64_t rx_reap_rings(const struct fp_rings *r, uint32_t head, uint32_t device_head, uint32_t done)
{
    return rx_reap(r->q, r->user, r->shadow, r->to_user, head, device_head, done);
}

/* -- The full classification of a refused batch (fastpath.h): checks.py's check_tx and check_rx in one pass ----- */

/* The larger of two addresses (the first offending byte is the later of the buffer's start and the bad frame's). */
static inline uint64_t larger(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* check_ranges and _classify for one range [addr, addr + length), length >= 1: leaves reason, bad_byte and owner as
 * the caller set them (OK, -1, FP_NO_OWNER) when every byte lies in memory in frames pinned with ``need``; otherwise
 * the first rule broken: the end wraps past 2**64, the end lies beyond memory, or the first frame of the range not
 * pinned with ``need`` is pinned for the other access only, was the tenant's own and released, or is not pinned
 * (the tenant's own frame, or whoever owns it). */
static void range_verdict(const struct fp_pins *p, uint8_t need, uint64_t addr, uint64_t length, uint8_t *reason,
                          int64_t *bad_byte, int32_t *owner)
{
    uint64_t end = addr + length;
    if (end < addr) {
        *reason = FP_R_ADDR_WRAP;
        return;
    }
    if (end > p->memory_size) {
        *reason = FP_R_ADDR_BEYOND_MEMORY;
        *bad_byte = (int64_t)larger(addr, p->memory_size);
        return;
    }
    uint64_t last = (end - 1) >> FASTPATH_PAGE_SHIFT; /* end <= memory_size: every frame up to last exists */
    for (uint64_t f = addr >> FASTPATH_PAGE_SHIFT; f <= last; f++) {
        if (p->access[f] & need)
            continue;
        int32_t who = p->owners[f];
        *owner = who;
        if (p->access[f]) {
            *reason = need == FP_ACCESS_READ ? FP_R_ACCESS_NO_READ : FP_R_ACCESS_NO_WRITE;
        } else if (who == p->tenant && p->released[f]) {
            *reason = FP_R_PIN_RELEASED;
        } else {
            *reason = FP_R_ADDR_NOT_PINNED;
            if (who == p->tenant)
                *owner = FP_OWNER_SELF_UNPINNED;
        }
        *bad_byte = (int64_t)larger(addr, f << FASTPATH_PAGE_SHIFT);
        return;
    }
}

/* The packet rules for descriptors [start, end) of one packet (complete: it ends in EOP), their own verdicts
 * already written: too long or too many fragments, checksum offsets outside a complete packet (the first
 * descriptor's own fault), then a packet with any bad descriptor goes whole (the others get the packet's reason,
 * or PKT_BAD_FRAGMENT); a good packet still open at the tail is held. */
static void tx_packet(const struct fp_tx_rules *r, const uint8_t *descs, uint32_t start, uint32_t end,
                      int64_t pkt_len, int complete, uint8_t *reason, uint8_t *held)
{
    uint8_t pkt = FP_R_OK;
    if (pkt_len > r->max_frame)
        pkt = FP_R_PKT_TOO_LONG;
    if ((int64_t)(end - start) > r->max_fragments)
        pkt = FP_R_PKT_TOO_MANY_FRAGS;
    struct tx_desc first;
    memcpy(&first, descs + (size_t)start * SLOT, sizeof first);
    if (complete && (first.cmd & FP_TXD_CMD_IC) && (first.cso + 2 > pkt_len || first.css >= pkt_len) &&
        reason[start] == FP_R_OK)
        reason[start] = FP_R_CSUM_OFFSET;
    int doomed = pkt != FP_R_OK;
    for (uint32_t i = start; i != end; i++)
        doomed |= reason[i] != FP_R_OK;
    uint8_t collateral = pkt != FP_R_OK ? pkt : FP_R_PKT_BAD_FRAGMENT;
    for (uint32_t i = start; i != end; i++) {
        if (doomed && reason[i] == FP_R_OK)
            reason[i] = collateral;
        held[i] = !complete && !doomed;
    }
}

int64_t tx_classify(const struct fp_pins *p, const struct fp_tx_rules *r, const uint8_t *descs, uint32_t n,
                    uint8_t *reason, int64_t *bad_byte, int32_t *owner, uint8_t *held)
{
    int quick = r->fast; /* check_tx's fast path passes every descriptor so far */
    uint32_t start = 0;  /* the first descriptor of the packet being read */
    int64_t pkt_len = 0;
    for (uint32_t i = 0; i != n; i++) {
        struct tx_desc d;
        memcpy(&d, descs + (size_t)i * SLOT, sizeof d);
        reason[i] = FP_R_OK;
        bad_byte[i] = -1;
        owner[i] = FP_NO_OWNER;
        /* the descriptor's own rules in priority order, then its range (a broken descriptor rule is the whole
         * verdict: no byte, no owner) */
        if (d.cmd & r->cmd_refused)
            reason[i] = FP_R_CMD_UNSUPPORTED;
        else if (d.length == 0)
            reason[i] = FP_R_LEN_ZERO;
        else if (d.length > r->max_buffer)
            reason[i] = FP_R_LEN_TOO_LONG;
        else
            range_verdict(p, FP_ACCESS_READ, d.addr, d.length, reason + i, bad_byte + i, owner + i);
        /* the fast path's test: the plain command bits (EOP, no IC, nothing refused) and a good buffer of at most
         * max_buffer bytes (Policy.tx_fast_path's limit) */
        if ((d.cmd & r->cmd_mask) != r->cmd_expect || reason[i] != FP_R_OK)
            quick = 0;
        pkt_len += d.length;
        if (d.cmd & FP_TXD_CMD_EOP) {
            tx_packet(r, descs, start, i + 1, pkt_len, 1, reason, held);
            start = i + 1;
            pkt_len = 0;
        }
    }
    if (start != n)
        tx_packet(r, descs, start, n, pkt_len, 0, reason, held);
    return !quick;
}

int64_t rx_classify(const struct fp_pins *p, uint64_t buffer_size, const uint8_t *descs, uint32_t n,
                    uint8_t *reason, int64_t *bad_byte, int32_t *owner)
{
    int quick = buffer_size <= ((uint64_t)1 << FASTPATH_PAGE_SHIFT); /* check_rx's fast path applies */
    for (uint32_t i = 0; i != n; i++) {
        struct rx_desc d;
        memcpy(&d, descs + (size_t)i * SLOT, sizeof d);
        reason[i] = FP_R_OK;
        bad_byte[i] = -1;
        owner[i] = FP_NO_OWNER;
        range_verdict(p, FP_ACCESS_WRITE, d.addr, buffer_size, reason + i, bad_byte + i, owner + i);
        if (reason[i] != FP_R_OK)
            quick = 0;
    }
    return !quick;
}
