/* The emulated e1000's compiled burst path (declared and explained in fastdev.h). */
#include <string.h>

#include "fastdev.h"

#define TXD_CMD_EOP 0x01
#define TXD_CMD_IC 0x04
#define TXD_CMD_RS 0x08
#define TXD_CMD_DEXT 0x20
#define TXD_STAT_DD 0x01
#define RXD_STAT_DD 0x01
#define RXD_STAT_EOP 0x02

#define PAGE_SHIFT 12
#define PAGE_BYTES (1ull << PAGE_SHIFT)

/* [addr, addr + len) inside [0, size), without wrap. */
static int in_memory(uint64_t addr, uint64_t len, uint64_t size) { return addr <= size && len <= size - addr; }

/* Bus address -> physical, through the IOTLB if there is one (the hit rule of fastdev.h); 0: a miss. */
static int translate(const struct iotlb_view *x, uint64_t addr, uint64_t len, int write, uint64_t *phys) {
    if (!x) {
        *phys = addr;
        return 1;
    }
    uint64_t end = addr + (len ? len : 1) - 1;
    if (end < addr) return 0;
    uint64_t first = addr >> PAGE_SHIFT, last = end >> PAGE_SHIFT;
    if (last - first > 1) return 0;
    const uint64_t *tags = write ? x->tags_write : x->tags_read;
    uint64_t sf = first & x->index_mask, sl = last & x->index_mask;
    if (tags[sf] != first || tags[sl] != last) return 0;
    uint64_t at = x->bases[sf];
    if (sl != sf && x->bases[sl] - at != PAGE_BYTES) return 0;
    *phys = at | (addr & (PAGE_BYTES - 1));
    return 1;
}

/* The ring's descriptors from ``head`` as the device fetches them: one burst per contiguous run of slots (two
 * when the window wraps), each translated for read and for the write-back, and inside memory.  ``run`` gets
 * each run's physical base for the fetch; the write-back must translate to the same place. */
static int ring_runs(const struct iotlb_view *x, uint64_t base, uint32_t count, uint32_t head, uint32_t n,
                     uint64_t mem_size, uint64_t run[2]) {
    uint32_t first = n < count - head ? n : count - head;
    uint64_t addr[2] = {base + (uint64_t)head * 16u, base};
    uint64_t len[2] = {(uint64_t)first * 16u, (uint64_t)(n - first) * 16u};
    for (int r = 0; r < 2; r++) {
        uint64_t back;
        if (len[r] == 0) continue;
        if (addr[r] < base) return 0; /* a ring wrapping 2**64 */
        if (!translate(x, addr[r], len[r], 0, &run[r]) || !translate(x, addr[r], len[r], 1, &back)) return 0;
        if (back != run[r] || !in_memory(run[r], len[r], mem_size)) return 0;
    }
    return 1;
}

#define SLOT_AT(run, head, slot) ((slot) >= (head) ? (run)[0] + (uint64_t)((slot) - (head)) * 16u : (run)[1] + (uint64_t)(slot) * 16u)

int64_t tx_burst_gather(uint8_t *mem, uint64_t mem_size, uint64_t base, uint32_t count, uint32_t head,
                        uint32_t tail, uint8_t *out, uint64_t out_cap, int64_t *out_len, int64_t *out_total,
                        const struct iotlb_view *iotlb) {
    if (count == 0 || head >= count || tail >= count) return -1;
    uint32_t n = (tail + count - head) % count;
    uint64_t run[2] = {0, 0};
    if (!ring_runs(iotlb, base, count, head, n, mem_size, run)) return -1;
    uint64_t total = 0, longest = 0;
    for (uint32_t i = 0, slot = head; i < n; i++, slot = (slot + 1 == count) ? 0 : slot + 1) {
        const struct tx_desc *d = (const struct tx_desc *)(mem + SLOT_AT(run, head, slot));
        uint64_t phys;
        if ((d->cmd & (TXD_CMD_EOP | TXD_CMD_DEXT | TXD_CMD_IC)) != TXD_CMD_EOP) return -1;
        if (d->length < FASTDEV_MIN_FRAME || d->length > FASTDEV_MAX_TX_PACKET) return -1;
        if (!translate(iotlb, d->addr, d->length, 0, &phys) || !in_memory(phys, d->length, mem_size)) return -1;
        total += d->length;
        if (d->length > longest) longest = d->length;
    }
    if (total > out_cap) return -1;
    uint64_t at = 0;
    for (uint32_t i = 0, slot = head; i < n; i++, slot = (slot + 1 == count) ? 0 : slot + 1) {
        const struct tx_desc *d = (const struct tx_desc *)(mem + SLOT_AT(run, head, slot));
        uint64_t phys;
        translate(iotlb, d->addr, d->length, 0, &phys);
        memcpy(out + at, mem + phys, d->length);
        at += d->length;
        out_len[i] = d->length;
    }
    /* Every frame is gathered before any DD is written back, as the numpy engine orders it: a buffer that
     * overlaps the ring itself reads the descriptors as they were fetched. */
    int64_t wb_runs = 0; /* write-back bursts: runs of consecutive slots with RS, as the numpy engine writes them */
    int prev_rs = 0;
    for (uint32_t i = 0, slot = head; i < n; i++, slot = (slot + 1 == count) ? 0 : slot + 1) {
        struct tx_desc *d = (struct tx_desc *)(mem + SLOT_AT(run, head, slot));
        int rs = (d->cmd & TXD_CMD_RS) != 0;
        if (rs) {
            d->status = TXD_STAT_DD;
            if (!prev_rs || slot == 0) wb_runs++;
        }
        prev_rs = rs;
    }
    out_total[0] = (int64_t)total;
    out_total[1] = (int64_t)longest;
    out_total[2] = (int64_t)((head + n > count ? 2 : 1) + n + wb_runs); /* fetch bursts, buffers, write-backs */
    return n;
}

int64_t rx_burst_scatter(uint8_t *mem, uint64_t mem_size, uint64_t base, uint32_t count, uint32_t head,
                         uint32_t n, const uint8_t *data, const int64_t *lengths, uint8_t status, uint8_t *snap,
                         int64_t *out_total, const struct iotlb_view *iotlb) {
    if (count == 0 || head >= count || n > count) return -1;
    uint64_t run[2] = {0, 0};
    if (!ring_runs(iotlb, base, count, head, n, mem_size, run)) return -1;
    struct rx_desc *fetched = (struct rx_desc *)snap;
    uint64_t *phys = (uint64_t *)(snap + (uint64_t)n * sizeof(struct rx_desc));
    for (uint32_t i = 0, slot = head; i < n; i++, slot = (slot + 1 == count) ? 0 : slot + 1) {
        memcpy(&fetched[i], mem + SLOT_AT(run, head, slot), sizeof(struct rx_desc));
        if (!translate(iotlb, fetched[i].addr, (uint64_t)lengths[i], 1, &phys[i])) return -1;
        if (!in_memory(phys[i], (uint64_t)lengths[i], mem_size)) return -1;
    }
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(mem + phys[i], data + at, (size_t)lengths[i]);
        at += (uint64_t)lengths[i];
    }
    for (uint32_t i = 0, slot = head; i < n; i++, slot = (slot + 1 == count) ? 0 : slot + 1) {
        struct rx_desc d = fetched[i];
        d.length = (uint16_t)lengths[i];
        d.csum = 0;
        d.status = status;
        d.errors = 0;
        d.special = 0;
        memcpy(mem + SLOT_AT(run, head, slot), &d, sizeof d);
    }
    *out_total = (int64_t)at;
    return n;
}

/* One queue's ring register, from the queue-0 word index. */
#define QREG(regs, word, queue) ((regs)[(word) + (queue) * FASTDEV_QUEUE_STRIDE_WORDS])

int64_t tx_kick(uint8_t *mem, uint64_t mem_size, uint32_t *regs, uint32_t queue, uint8_t *out, uint64_t out_cap,
                int64_t *out_len, int64_t *out_total, const struct iotlb_view *iotlb) {
    if (queue >= 8) return -1;
    if (!(regs[FASTDEV_REG_TCTL] & FASTDEV_TCTL_EN) || (regs[FASTDEV_REG_CTRL] & FASTDEV_CTRL_RFCE)) return -1;
    uint32_t count = QREG(regs, FASTDEV_REG_TDLEN, queue) / 16u;
    uint32_t head = QREG(regs, FASTDEV_REG_TDH, queue), tail = QREG(regs, FASTDEV_REG_TDT, queue);
    if (count == 0 || head == tail || head >= count || tail >= count) return -1;
    uint64_t base = (uint64_t)QREG(regs, FASTDEV_REG_TDBAL, queue) | ((uint64_t)QREG(regs, FASTDEV_REG_TDBAH, queue) << 32);
    int64_t n = tx_burst_gather(mem, mem_size, base, count, head, tail, out, out_cap, out_len, out_total, iotlb);
    if (n < 0) return -1;
    QREG(regs, FASTDEV_REG_TDH, queue) = tail;
    return n;
}

/* RCTL.BSIZE/BSEX -> buffer bytes (table 13-66; ring/regs.py RCTL_BSIZE_BYTES, a reserved code reads as 2048). */
static uint32_t rx_buffer_bytes(uint32_t rctl) {
    static const uint32_t plain[4] = {2048, 1024, 512, 256}, extended[4] = {2048, 16384, 8192, 4096};
    uint32_t code = (rctl >> FASTDEV_RCTL_BSIZE_SHIFT) & 3u;
    return (rctl & FASTDEV_RCTL_BSEX) ? extended[code] : plain[code];
}

int64_t rx_arrive(uint8_t *mem, uint64_t mem_size, uint32_t *regs, uint32_t n, const uint8_t *data,
                  const int64_t *lengths, uint8_t *snap, int64_t *out_total, const struct iotlb_view *iotlb) {
    uint32_t rctl = regs[FASTDEV_REG_RCTL];
    if (n == 0 || !(rctl & FASTDEV_RCTL_EN) || !(regs[FASTDEV_REG_STATUS] & FASTDEV_STATUS_LU)) return -1;
    if (!(rctl & FASTDEV_RCTL_SECRC)) return -1;
    /* the first valid receive address, in wire order */
    uint8_t mac[6];
    int found = 0;
    for (uint32_t i = 0; i < FASTDEV_RAL_ENTRIES && !found; i++) {
        uint32_t ral = regs[FASTDEV_REG_RAL0 + 2 * i], rah = regs[FASTDEV_REG_RAL0 + 2 * i + 1];
        if (!(rah & FASTDEV_RAH_AV)) continue;
        for (int b = 0; b < 4; b++) mac[b] = (uint8_t)(ral >> (8 * b));
        mac[4] = (uint8_t)rah;
        mac[5] = (uint8_t)(rah >> 8);
        found = 1;
    }
    if (!found) return -1;
    int64_t longest = (int64_t)rx_buffer_bytes(rctl);
    if (!(rctl & FASTDEV_RCTL_LPE) && longest > FASTDEV_MAX_STD_FRAME) longest = FASTDEV_MAX_STD_FRAME;
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (lengths[i] < 6 || lengths[i] > longest || memcmp(data + at, mac, 6) != 0) return -1;
        at += (uint64_t)lengths[i];
    }
    uint32_t count = regs[FASTDEV_REG_RDLEN] / 16u;
    uint32_t head = regs[FASTDEV_REG_RDH], tail = regs[FASTDEV_REG_RDT];
    if (count == 0 || head >= count || tail >= count) return -1;
    if ((tail + count - head) % count < n) return -1; /* not room for all: the engine counts the rest in MPC */
    uint64_t base = (uint64_t)regs[FASTDEV_REG_RDBAL] | ((uint64_t)regs[FASTDEV_REG_RDBAH] << 32);
    if (rx_burst_scatter(mem, mem_size, base, count, head, n, data, lengths, RXD_STAT_DD | RXD_STAT_EOP, snap,
                         &out_total[0], iotlb) < 0)
        return -1;
    regs[FASTDEV_REG_RDH] = head + n >= count ? head + n - count : head + n;
    out_total[1] = (int64_t)n + (head + n <= count ? 2 : 4); /* fetch and write-back of each run, one per buffer */
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
