/* The tenant driver's compiled burst path (a poll-mode driver's inner loops, as DPDK's and ixy's are C).
 *
 * Four loops of driver/tenant/txq.py and rxq.py, for the common burst only: reaping finished TX descriptors
 * (their buffers back onto the pool's stack), posting frames that each fit one buffer (buffers from the
 * stack, frame bytes copied in, one legacy descriptor written per frame), and taking a run of complete,
 * error-free, one-descriptor frames out of the RX ring and re-arming their slots.  Every function either
 * does exactly what the numpy code does, or returns -1 having changed nothing, and the numpy code runs:
 * it stays the semantics, and tests hold the two to the same rings, pools and frames.
 *
 * The descriptor structs are ring/descriptors.py's dtypes (driver/tenant/pmd.py checks them through
 * ring/compiled.py); the pool's free stack is driver/tenant/mempool.py's: ``stack[0:*top]`` holds the free
 * buffer ids, ``free`` pushes ids in reverse order, ``alloc`` pops the last n and returns them reversed.
 */
#ifndef NIC_SANDBOX_PMD_H
#define NIC_SANDBOX_PMD_H

#include <stdint.h>

#include "descriptors.h" /* struct tx_desc, struct rx_desc (ring/descriptors.h) */

/* cdef-begin */

/* ring/descriptors.py: TXD_STAT_DD, TXD_STAT_REFUSED, RXD_STAT_DD, RXD_STAT_EOP. */
#define PMD_TXD_STAT_DD 1
#define PMD_TXD_STAT_REFUSED 128
#define PMD_RXD_STAT_DD 1
#define PMD_RXD_STAT_EOP 2

/* TX reap: k = the run of descriptors with DD from ``clean`` (at most ``pending``); their buffers
 * (slot_buf >= 0) are pushed onto the pool stack and the slots set to -1; ``*refused`` gets how many of the k
 * carry TXD_STAT_REFUSED.  Returns k, or -1 when the pushes would overflow the pool (a double free: the numpy
 * code raises), nothing changed. */
int64_t pmd_tx_reap(const uint8_t *ring, uint32_t size, uint32_t clean, uint32_t pending, int64_t *slot_buf,
                    int64_t *stack, int64_t *top, int64_t pool_count, int64_t *refused);

/* TX post: n frames (back to back in ``data``, each 1..buf_size bytes) into n buffers popped from the pool,
 * one descriptor each from ``tail``: addr, length, ``cmd``, the rest zero.  Returns n, or -1 (a frame of 0 or
 * more than buf_size bytes, fewer than n free buffers, or an id on the stack outside the pool's ``pool_count``
 * buffers, where the numpy code would fail its index: nothing changed). */
int64_t pmd_tx_post(uint8_t *ring, uint32_t size, uint32_t tail, uint32_t n, const uint8_t *data,
                    const int64_t *lengths, int64_t *stack, int64_t *top, int64_t pool_count, uint8_t *pool_mem,
                    uint64_t buf_size, uint64_t pool_bus, uint8_t cmd, int64_t *slot_buf);

/* RX: the run of descriptors with DD from ``next`` (at most ``posted``) must all end a frame (EOP), carry no
 * error and no length beyond ``buf_size``; then the first m = min(run, max_frames) frames are copied out of
 * slot i's buffer (slot i owns buffer i) into ``out`` (``*out_total`` bytes) with their lengths, and their slots re-armed (addr of
 * buffer i, the rest zero).  Returns m (0: nothing done yet), or -1 (the general path is needed, or ``out``
 * is too small: nothing changed). */
int64_t pmd_rx_burst(uint8_t *ring, uint32_t size, uint32_t next, uint32_t posted, uint64_t max_frames,
                     const uint8_t *pool_mem, uint64_t buf_size, uint64_t pool_bus, uint8_t *out, uint64_t out_cap,
                     int64_t *out_len, int64_t *out_total);

/* SHA-256 (hex) of pmd.h and pmd.c as compiled (defined by the build). */
const char *pmd_source_digest(void);

/* cdef-end */

#endif
