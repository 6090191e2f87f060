/* The verifier's hot path in one call per batch: snapshot, check, post; and the completion write-back.
 *
 * Semantics are those of verifier/rules/checks.py's fast path and verifier/modes/shadow.py, which stay the
 * reference and the fallback: a batch is accepted here only if every descriptor is a whole,
 * valid, pinned packet; anything else returns 0 and the caller judges the snapshot (already
 * taken, exactly once) with the numpy checks.  Every pointer and size comes from the kernel;
 * descriptor contents only ever meet bounds checks before they are used.
 */
#include <stdint.h>
#include <string.h>

#define DESC 16u

static void copy_in(uint8_t *dst, const uint8_t *ring, uint32_t size, uint32_t start, uint32_t count)
{
    uint32_t first = size - start;
    if (first > count)
        first = count;
    memcpy(dst, ring + (uint64_t)start * DESC, (size_t)first * DESC);
    if (first < count)
        memcpy(dst + (size_t)first * DESC, ring, (size_t)(count - first) * DESC);
}

static void copy_out(uint8_t *ring, uint32_t size, uint32_t start, const uint8_t *src, uint32_t count)
{
    uint32_t first = size - start;
    if (first > count)
        first = count;
    memcpy(ring + (uint64_t)start * DESC, src, (size_t)first * DESC);
    if (first < count)
        memcpy(ring, src + (size_t)first * DESC, (size_t)(count - first) * DESC);
}

static int range_ok(uint64_t addr, uint64_t span, const uint8_t *frame_ok, uint64_t nframes)
{
    uint64_t last_byte = addr + span; /* span = length - 1, at most one page: two frames decide */
    if (last_byte < addr)
        return 0;
    uint64_t first = addr >> 12, last = last_byte >> 12;
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
        const uint8_t *d = snap + (size_t)i * DESC;
        uint64_t addr;
        uint16_t len;
        memcpy(&addr, d, 8);
        memcpy(&len, d + 8, 2);
        if ((d[11] & cmd_mask) != cmd_expect || len == 0 || len > max_len)
            return 0;
        if (!range_ok(addr, (uint64_t)len - 1, frame_ok, nframes))
            return 0;
    }
    copy_out(shadow, size, shadow_tail, snap, k);
    for (uint32_t i = 0; i < k; i++)
        to_user[(shadow_tail + i) % size] = (tail + i) % size;
    return 1;
}

int rx_snapshot_check_post(const uint8_t *user_ring, uint32_t size, uint32_t tail, uint32_t k, uint8_t *snap,
                           const uint8_t *frame_ok, uint64_t nframes, uint32_t buffer_size, uint8_t *shadow,
                           uint32_t shadow_tail, int64_t *to_user)
{
    copy_in(snap, user_ring, size, tail, k);
    for (uint32_t i = 0; i < k; i++) {
        uint64_t addr;
        memcpy(&addr, snap + (size_t)i * DESC, 8);
        if (!range_ok(addr, (uint64_t)buffer_size - 1, frame_ok, nframes))
            return 0;
    }
    for (uint32_t i = 0; i < k; i++) {
        uint8_t *d = shadow + (uint64_t)((shadow_tail + i) % size) * DESC;
        memcpy(d, snap + (size_t)i * DESC, 8); /* the buffer address; length .. special start at zero */
        memset(d + 8, 0, 8);
        to_user[(shadow_tail + i) % size] = (tail + i) % size;
    }
    return 1;
}

void tx_complete(uint8_t *user_ring, uint32_t size, const int64_t *to_user, uint32_t first, uint32_t n,
                 uint8_t status)
{
    for (uint32_t i = 0; i < n; i++)
        user_ring[(uint64_t)to_user[(first + i) % size] * DESC + 12] = status;
}

void rx_complete(uint8_t *user_ring, uint32_t size, const uint8_t *shadow, const int64_t *to_user, uint32_t first,
                 uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = (first + i) % size;
        uint64_t word; /* length, checksum, status, errors, special: one store, DD never alone */
        memcpy(&word, shadow + (uint64_t)s * DESC + 8, 8);
        memcpy(user_ring + (uint64_t)to_user[s] * DESC + 8, &word, 8);
    }
}
