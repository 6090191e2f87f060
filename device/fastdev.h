/* The emulated e1000's compiled burst path, declared once: descriptor layouts, limits, the functions.
 *
 * One call does what the numpy engines do in a few dozen array operations for the common burst: the TX
 * engine's fetch of TDH..TDT, the gather of every buffer and the DD write-back (8254x manual 3.3,
 * 317453-006), and the RX engine's fetch of the posted descriptors, the scatter of the frames and the
 * length/status write-back (3.2).  It is an accelerator, not a second device: each function first checks
 * that every descriptor of the burst is of the plain kind (TX: one legacy descriptor per packet, EOP set,
 * DEXT and IC clear, a length the numpy fast path would send unchanged; every range inside memory) and,
 * if any is not, returns -1 having touched nothing, and the numpy engine (device/tx_engine.py,
 * device/rx_engine.py) runs instead: it stays the semantics, and tests hold the two to the same bytes.
 *
 * The structs are ring/descriptors.py's TX_DESC and RX_DESC; device/fastdev.py compares their layout with
 * the dtypes (ring/compiled.py) and refuses a module that differs.  The text between the cdef markers is
 * what cffi is told (ring/cbuild.py reads it).
 */
#ifndef NIC_SANDBOX_FASTDEV_H
#define NIC_SANDBOX_FASTDEV_H

#include <stdint.h>

#include "descriptors.h" /* struct tx_desc, struct rx_desc (ring/descriptors.h) */

/* cdef-begin */

/* ring/descriptors.py: ETH_MIN_FRAME (60, shorter frames take the padding path) and MAX_TX_PACKET. */
#define FASTDEV_MIN_FRAME 60
#define FASTDEV_MAX_TX_PACKET 16288

/* An IOMMU's translation cache as the burst path may read it (verifier/modes/iommu.py's IOTLB): per set, the
 * IOVA page cached there if its entry grants read (``tags_read``) or write (``tags_write``), and its frame as a
 * base address.  An access is translated only when it spans at most two pages, both cached with the access
 * it needs, on consecutive frames -- the IOTLB's own hit rule; anything else is a miss, and a miss anywhere
 * in a burst sends the whole burst to the numpy engine, which walks the table (and fills the cache).  NULL
 * for no IOMMU: bus addresses are physical. */
struct iotlb_view {
    const uint64_t *tags_read;
    const uint64_t *tags_write;
    const uint64_t *bases;
    uint64_t index_mask;
};

/* TX: the n = (tail - head) mod count descriptors from TDH of the ring at ``base``.  On success the frames
 * are in ``out`` back to back (at most ``out_cap`` bytes), their lengths in ``out_len``, descriptors with RS
 * got DD; ``out_total[0]`` is the bytes gathered, ``out_total[1]`` the longest frame and ``out_total[2]`` the
 * accesses the numpy engine would have translated (fetch bursts, buffers, write-back bursts); returns n.  -1: not a
 * plain burst, nothing done. */
int64_t tx_burst_gather(uint8_t *mem, uint64_t mem_size, uint64_t base, uint32_t count, uint32_t head,
                        uint32_t tail, uint8_t *out, uint64_t out_cap, int64_t *out_len, int64_t *out_total,
                        const struct iotlb_view *iotlb);

/* RX: ``n`` frames of ``lengths`` (each at most one buffer), back to back in ``data``, into the n descriptors
 * from RDH of the ring at ``base``.  The descriptors are fetched first, into ``snap`` (n * 24 bytes: each
 * descriptor and its buffer's physical address), as the
 * numpy engine fetches them before it writes a byte (a buffer may overlap the ring itself); then the frames
 * are written and each descriptor is written back whole: its address as fetched, length, csum 0, ``status``,
 * errors 0, special 0; ``*out_total`` gets the bytes written.  Returns n, or -1 (a descriptor or buffer outside
 * memory: nothing done). */
int64_t rx_burst_scatter(uint8_t *mem, uint64_t mem_size, uint64_t base, uint32_t count, uint32_t head,
                         uint32_t n, const uint8_t *data, const int64_t *lengths, uint8_t status, uint8_t *snap,
                         int64_t *out_total, const struct iotlb_view *iotlb);

/* The register file (BAR0) as the two kicks below read and write it: word indices (offset / 4) of the registers
 * they touch, and their bits (ring/regs.py, checked against it when the module is loaded).  Queue q's ring
 * registers are at the queue-0 word plus q * FASTDEV_QUEUE_STRIDE_WORDS. */
#define FASTDEV_REG_CTRL 0
#define FASTDEV_REG_STATUS 2
#define FASTDEV_REG_RCTL 64
#define FASTDEV_REG_TCTL 256
#define FASTDEV_REG_RAL0 5376
#define FASTDEV_REG_RDBAL 2560
#define FASTDEV_REG_RDBAH 2561
#define FASTDEV_REG_RDLEN 2562
#define FASTDEV_REG_RDH 2564
#define FASTDEV_REG_RDT 2566
#define FASTDEV_REG_TDBAL 3584
#define FASTDEV_REG_TDBAH 3585
#define FASTDEV_REG_TDLEN 3586
#define FASTDEV_REG_TDH 3588
#define FASTDEV_REG_TDT 3590
#define FASTDEV_QUEUE_STRIDE_WORDS 64
#define FASTDEV_REG_COUNT 32768
#define FASTDEV_RAL_ENTRIES 16
#define FASTDEV_CTRL_RFCE 0x8000000
#define FASTDEV_STATUS_LU 0x2
#define FASTDEV_TCTL_EN 0x2
#define FASTDEV_RCTL_EN 0x2
#define FASTDEV_RCTL_LPE 0x20
#define FASTDEV_RCTL_BSIZE_SHIFT 16
#define FASTDEV_RCTL_BSEX 0x2000000
#define FASTDEV_RCTL_SECRC 0x4000000
#define FASTDEV_RAH_AV 0x80000000
#define FASTDEV_MAX_STD_FRAME 1518

/* TX, the whole kick of a plain burst from the register file (``regs``, FASTDEV_REG_COUNT words) of one queue:
 * TCTL.EN set, CTRL.RFCE clear (no PAUSE can hold the transmitter), a ring with descriptors between TDH and
 * TDT, both inside it; then ``tx_burst_gather`` of that window, and TDH moved to TDT.  Returns the
 * descriptors consumed, or -1: not a plain kick, nothing done (the engine's own code decides what it is). */
int64_t tx_kick(uint8_t *mem, uint64_t mem_size, uint32_t *regs, uint32_t queue, uint8_t *out, uint64_t out_cap,
                int64_t *out_len, int64_t *out_total, const struct iotlb_view *iotlb);

/* RX, the whole arrival of ``n`` frames (back to back in ``data``, ``lengths``) at a one-queue NIC whose register
 * file is ``regs``, when it is the plain case: RCTL.EN, STATUS.LU and RCTL.SECRC set (no FCS to append); every
 * frame at least 6 bytes, at most one receive buffer (RCTL.BSIZE/BSEX, 2048 for a reserved code) and, without
 * RCTL.LPE, at most FASTDEV_MAX_STD_FRAME, addressed to the first valid RAL/RAH entry (13.4.23); a ring with
 * at least ``n`` descriptors between RDH and RDT.  Then ``rx_burst_scatter`` with DD|EOP, and RDH moved past
 * the n descriptors.  ``out_total[0]`` gets the bytes written, ``out_total[1]`` the accesses the numpy
 * engine would have translated.  Returns n, or -1: not the plain case, nothing done. */
int64_t rx_arrive(uint8_t *mem, uint64_t mem_size, uint32_t *regs, uint32_t n, const uint8_t *data,
                  const int64_t *lengths, uint8_t *snap, int64_t *out_total, const struct iotlb_view *iotlb);

/* The receive address filter's common case (8254x 13.4.23, RAL/RAH): 1 if every one of the ``n`` frames (back
 * to back in ``data``) is at least 6 bytes long, at most ``max_len`` bytes (RCTL.LPE clear: the long packet
 * limit; 0 for none), and addressed to ``mac`` (6 bytes, wire order), else 0. */
int all_addressed_to(const uint8_t *data, const int64_t *lengths, uint32_t n, const uint8_t *mac, int64_t max_len);

/* The DMA engine's byte moves (device/dma.py), once the bus and any observer have seen and allowed the batch:
 * copy ``n`` ranges ``[starts[i], starts[i] + lengths[i])`` of ``mem`` out to ``out`` back to back, or ``data``
 * (back to back) into them, in order (a later range overwrites an earlier one it overlaps, as numpy's fancy
 * assignment does).  The caller has checked every range against memory; these only move bytes. */
void gather_ranges(const uint8_t *mem, const int64_t *starts, const int64_t *lengths, uint32_t n, uint8_t *out);
void scatter_ranges(uint8_t *mem, const int64_t *starts, const int64_t *lengths, uint32_t n, const uint8_t *data);

/* SHA-256 (hex) of fastdev.h and fastdev.c as compiled (defined by the build). */
const char *fastdev_source_digest(void);

/* cdef-end */

#endif
