/* The emulated e1000's compiled burst path (declared and explained in fastdev.h). */
#include <string.h>

#include "fastdev.h"

#define TXD_CMD_EOP 0x01
#define TXD_CMD_IC 0x04
#define TXD_CMD_RS 0x08
#define TXD_CMD_DEXT 0x20
#define TXD_STAT_DD 0x01

/* [addr, addr + len) inside [0, size), without wrap. */
static int in_memory(uint64_t addr, uint64_t len, uint64_t size) { return addr <= size && len <= size - addr; }

int64_t tx_burst_gather(uint8_t *mem, uint64_t mem_size, uint64_t base, uint32_t count, uint32_t head,
                        uint32_t tail, uint8_t *out, uint64_t out_cap, int64_t *out_len, int64_t *out_total) {
    if (count == 0 || head >= count || tail >= count || !in_memory(base, (uint64_t)count * 16u, mem_size))
        return -1;
    struct tx_desc *ring = (struct tx_desc *)(mem + base);
    uint32_t n = (tail + count - head) % count;
    uint64_t total = 0, longest = 0;
    for (uint32_t i = 0, slot = head; i < n; i++, slot = (slot + 1 == count) ? 0 : slot + 1) {
        const struct tx_desc *d = &ring[slot];
        if ((d->cmd & (TXD_CMD_EOP | TXD_CMD_DEXT | TXD_CMD_IC)) != TXD_CMD_EOP) return -1;
        if (d->length < FASTDEV_MIN_FRAME || d->length > FASTDEV_MAX_TX_PACKET) return -1;
        if (!in_memory(d->addr, d->length, mem_size)) return -1;
        total += d->length;
        if (d->length > longest) longest = d->length;
    }
    if (total > out_cap) return -1;
    uint64_t at = 0;
    for (uint32_t i = 0, slot = head; i < n; i++, slot = (slot + 1 == count) ? 0 : slot + 1) {
        struct tx_desc *d = &ring[slot];
        memcpy(out + at, mem + d->addr, d->length);
        at += d->length;
        out_len[i] = d->length;
        if (d->cmd & TXD_CMD_RS) d->status = TXD_STAT_DD;
    }
    out_total[0] = (int64_t)total;
    out_total[1] = (int64_t)longest;
    return n;
}

int64_t rx_burst_scatter(uint8_t *mem, uint64_t mem_size, uint64_t base, uint32_t count, uint32_t head,
                         uint32_t n, const uint8_t *data, const int64_t *lengths, uint8_t status, uint8_t *snap,
                         int64_t *out_total) {
    if (count == 0 || head >= count || n > count || !in_memory(base, (uint64_t)count * 16u, mem_size)) return -1;
    struct rx_desc *ring = (struct rx_desc *)(mem + base);
    struct rx_desc *fetched = (struct rx_desc *)snap;
    for (uint32_t i = 0, slot = head; i < n; i++, slot = (slot + 1 == count) ? 0 : slot + 1) {
        memcpy(&fetched[i], &ring[slot], sizeof(struct rx_desc));
        if (!in_memory(fetched[i].addr, (uint64_t)lengths[i], mem_size)) return -1;
    }
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(mem + fetched[i].addr, data + at, (size_t)lengths[i]);
        at += (uint64_t)lengths[i];
    }
    for (uint32_t i = 0, slot = head; i < n; i++, slot = (slot + 1 == count) ? 0 : slot + 1) {
        struct rx_desc d = fetched[i];
        d.length = (uint16_t)lengths[i];
        d.csum = 0;
        d.status = status;
        d.errors = 0;
        d.special = 0;
        memcpy(&ring[slot], &d, sizeof d);
    }
    *out_total = (int64_t)at;
    return n;
}

int all_addressed_to(const uint8_t *data, const int64_t *lengths, uint32_t n, const uint8_t *mac, int64_t max_len) {
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (lengths[i] < 6 || (max_len && lengths[i] > max_len) || memcmp(data + at, mac, 6) != 0) return 0;
        at += (uint64_t)lengths[i];
    }
    return 1;
}

void gather_ranges(const uint8_t *mem, const int64_t *starts, const int64_t *lengths, uint32_t n, uint8_t *out) {
    for (uint32_t i = 0; i < n; i++) {
        memcpy(out, mem + starts[i], (size_t)lengths[i]);
        out += lengths[i];
    }
}

void scatter_ranges(uint8_t *mem, const int64_t *starts, const int64_t *lengths, uint32_t n, const uint8_t *data) {
    for (uint32_t i = 0; i < n; i++) {
        memmove(mem + starts[i], data, (size_t)lengths[i]);
        data += lengths[i];
    }
}
