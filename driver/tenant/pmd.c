/* The tenant driver's compiled burst path (declared and explained in pmd.h). */
#include <string.h>

#include "pmd.h"

#define NEXT(slot, size) ((slot) + 1 == (size) ? 0 : (slot) + 1)

int64_t pmd_tx_reap(const uint8_t *ring, uint32_t size, uint32_t clean, uint32_t pending, int64_t *slot_buf,
                    int64_t *stack, int64_t *top, int64_t pool_count, int64_t *refused) {
    const struct tx_desc *d = (const struct tx_desc *)ring;
    uint32_t k = 0, slot = clean;
    int64_t frees = 0, bad = 0;
    for (; k < pending; k++, slot = NEXT(slot, size)) {
        if (!(d[slot].status & PMD_TXD_STAT_DD)) break;
        if (d[slot].status & PMD_TXD_STAT_REFUSED) bad++;
        if (slot_buf[slot] >= 0) frees++;
    }
    if (*top + frees > pool_count) return -1;
    /* Mempool.free(ids): stack[top:top+n] = ids[::-1], so the last id lands lowest. */
    int64_t at = *top + frees;
    slot = clean;
    for (uint32_t i = 0; i < k; i++, slot = NEXT(slot, size)) {
        if (slot_buf[slot] >= 0) stack[--at] = slot_buf[slot];
        slot_buf[slot] = -1;
    }
    *top += frees;
    *refused = bad;
    return k;
}

int64_t pmd_tx_post(uint8_t *ring, uint32_t size, uint32_t tail, uint32_t n, const uint8_t *data,
                    const int64_t *lengths, int64_t *stack, int64_t *top, int64_t pool_count, uint8_t *pool_mem,
                    uint64_t buf_size, uint64_t pool_bus, uint8_t cmd, int64_t *slot_buf) {
    if ((int64_t)n > *top) return -1;
    /* Mempool.alloc(n): top -= n; ids = stack[top:top+n][::-1]. */
    int64_t base = *top - n;
    for (uint32_t i = 0; i < n; i++) {
        int64_t buf = stack[base + i];
        if (lengths[i] <= 0 || (uint64_t)lengths[i] > buf_size || buf < 0 || buf >= pool_count) return -1;
    }
    struct tx_desc *d = (struct tx_desc *)ring;
    uint64_t at = 0;
    uint32_t slot = tail;
    for (uint32_t i = 0; i < n; i++, slot = NEXT(slot, size)) {
        int64_t buf = stack[base + n - 1 - i];
        memcpy(pool_mem + (uint64_t)buf * buf_size, data + at, (size_t)lengths[i]);
        at += (uint64_t)lengths[i];
        struct tx_desc desc = {0};
        desc.addr = pool_bus + (uint64_t)buf * buf_size;
        desc.length = (uint16_t)lengths[i];
        desc.cmd = cmd;
        memcpy(&d[slot], &desc, sizeof desc);
        slot_buf[slot] = buf;
    }
    *top = base;
    return n;
}

int64_t pmd_rx_burst(uint8_t *ring, uint32_t size, uint32_t next, uint32_t posted, uint64_t max_frames,
                     const uint8_t *pool_mem, uint64_t buf_size, uint64_t pool_bus, uint8_t *out, uint64_t out_cap,
                     int64_t *out_len, int64_t *out_total) {
    struct rx_desc *d = (struct rx_desc *)ring;
    uint32_t k = 0, slot = next;
    uint64_t total = 0, m = 0;
    for (; k < posted; k++, slot = NEXT(slot, size)) {
        const struct rx_desc *r = &d[slot];
        if (!(r->status & PMD_RXD_STAT_DD)) break;
        if (!(r->status & PMD_RXD_STAT_EOP) || r->errors || r->length > buf_size) return -1;
        if (m < max_frames) {
            total += r->length;
            m++;
        }
    }
    if (total > out_cap) return -1;
    uint64_t at = 0;
    slot = next;
    for (uint64_t i = 0; i < m; i++, slot = NEXT(slot, size)) {
        memcpy(out + at, pool_mem + (uint64_t)slot * buf_size, d[slot].length);
        at += d[slot].length;
        out_len[i] = d[slot].length;
        struct rx_desc fresh = {0};
        fresh.addr = pool_bus + (uint64_t)slot * buf_size;
        memcpy(&d[slot], &fresh, sizeof fresh);
    }
    *out_total = (int64_t)total;
    return (int64_t)m;
}
