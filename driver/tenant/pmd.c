/* The tenant driver's compiled burst path (declared and explained in pmd.h). */
#include <string.h>

#include "pmd.h"

#define NEXT(slot, size) ((slot) + 1 == (size) ? 0 : (slot) + 1)

int64_t pmd_tx_reap(const uint8_t *ring, uint32_t size, uint32_t clean, uint32_t pending, int64_t *slot_buf,
                    int64_t *stack, int64_t *top, int64_t pool_count, int64_t *refused) {
    const struct tx_desc *d = (const struct tx_desc *)ring;
    if (size == 0 || clean >= size || pending >= size || *top < 0 || *top > pool_count) return -1;
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

int64_t pmd_tx_post(uint8_t *ring, uint32_t size, uint32_t clean, uint32_t tail, uint32_t n, const uint8_t *data,
                    uint64_t data_len, const int64_t *lengths, int64_t *stack, int64_t *top, int64_t pool_count,
                    uint8_t *pool_mem, uint64_t buf_size, uint64_t pool_bus, uint8_t cmd, int64_t *slot_buf,
                    int64_t *out) {
    if (size == 0 || tail >= size || clean >= size) return -1;
    uint32_t pending = (tail + size - clean) % size;
    int64_t refused = 0;
    int64_t k = pending ? pmd_tx_reap(ring, size, clean, pending, slot_buf, stack, top, pool_count, &refused) : 0;
    if (k < 0) return -1;
    clean = (uint32_t)((clean + (uint64_t)k) % size);
    out[PMD_TX_REAPED] = k;
    out[PMD_TX_REFUSED] = refused;
    out[PMD_TX_CLEAN] = clean;
    out[PMD_TX_TAIL] = tail;
    out[PMD_TX_BYTES] = 0;
    /* ring room (one slot always stays empty) and pool room: back-pressure is the numpy code's to count */
    uint32_t room = size - 1 - (tail + size - clean) % size;
    if (n == 0 || n > room || (int64_t)n > *top || data == NULL || lengths == NULL) return -2;
    /* Mempool.alloc(n): top -= n; ids = stack[top:top+n][::-1]. */
    int64_t base = *top - n;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        int64_t buf = stack[base + i];
        if (lengths[i] <= 0 || (uint64_t)lengths[i] > buf_size || buf < 0 || buf >= pool_count) return -2;
        total += (uint64_t)lengths[i];
    }
    if (total > data_len) return -2;
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
    out[PMD_TX_TAIL] = slot;
    out[PMD_TX_BYTES] = (int64_t)total;
    return n;
}

int64_t pmd_rx_burst(uint8_t *ring, uint32_t size, uint32_t next, uint32_t tail, uint64_t max_frames,
                     const uint8_t *pool_mem, uint64_t buf_size, uint64_t pool_bus, uint8_t *out, uint64_t out_cap,
                     int64_t *out_len, uint64_t len_cap, int64_t *res) {
    if (size == 0 || next >= size || tail >= size) return -1;
    struct rx_desc *d = (struct rx_desc *)ring;
    uint32_t posted = (tail + size - next) % size;
    uint32_t k = 0, slot = next;
    uint64_t total = 0, m = 0, longest = 0;
    for (; k < posted; k++, slot = NEXT(slot, size)) {
        const struct rx_desc *r = &d[slot];
        if (!(r->status & PMD_RXD_STAT_DD)) break;
        if (!(r->status & PMD_RXD_STAT_EOP) || r->errors || r->length > buf_size) return -1;
        if (m < max_frames) {
            total += r->length;
            if (r->length > longest) longest = r->length;
            m++;
        }
    }
    if (total > out_cap || m > len_cap) return -3;
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
    res[PMD_RX_BYTES] = (int64_t)total;
    res[PMD_RX_LONGEST] = (int64_t)longest;
    res[PMD_RX_NEXT] = slot;
    res[PMD_RX_TAIL] = (uint32_t)((tail + m) % size);
    return (int64_t)m;
}
