/* The tenant driver's compiled burst path (a poll-mode driver's inner loops, as DPDK's and ixy's are C).
 *
 * The loops of driver/tenant/txq.py and rxq.py, for the common burst only: reaping finished TX descriptors
 * (their buffers back onto the pool's stack), posting frames that each fit one buffer (buffers from the
 * stack, frame bytes copied in, one legacy descriptor written per frame), and taking a run of complete,
 * error-free, one-descriptor frames out of the RX ring and re-arming their slots.  One C call per burst
 * and direction (reap and post together; receive, copy out and re-arm together), returning the new ring
 * indices and the statistics, so that the Python around it is a handful of attribute updates and the one
 * doorbell write per burst that DPDK and ixy do.  Every function either
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
 * code raises) or ``clean``, ``pending`` or ``*top`` is out of range, nothing changed. */
int64_t pmd_tx_reap(const uint8_t *ring, uint32_t size, uint32_t clean, uint32_t pending, int64_t *slot_buf,
                    int64_t *stack, int64_t *top, int64_t pool_count, int64_t *refused);

/* Where pmd_tx_post reports what it did (an int64_t[PMD_TX_OUT] the queue keeps): descriptors reaped, how many
 * of them the kernel refused, the new clean index, the new tail, and the bytes posted. */
#define PMD_TX_REAPED 0
#define PMD_TX_REFUSED 1
#define PMD_TX_CLEAN 2
#define PMD_TX_TAIL 3
#define PMD_TX_BYTES 4
#define PMD_TX_OUT 5

/* TX burst, one call (DPDK's rte_eth_tx_burst: reap, then post): first pmd_tx_reap from ``clean`` over the
 * descriptors in flight up to ``tail``; then n frames (back to back in ``data``, ``data_len`` bytes, each
 * 1..buf_size bytes) into n buffers popped from the pool, one descriptor each from ``tail``: addr, length,
 * ``cmd``, the rest zero.  Returns n (``out`` says what was reaped and posted); -2 when the reap was done
 * (``out`` says what) but the frames are not posted (more frames than free slots or buffers, a frame of 0 or
 * more than buf_size bytes, lengths adding up past ``data_len``, NULL ``data`` or ``lengths``, or an id on
 * the stack outside the pool's ``pool_count`` buffers, where the numpy code would fail its index): the numpy
 * code posts them, counts the back-pressure or raises; -1 when nothing was done at all (a double free or a
 * bad index: the numpy reap raises). */
int64_t pmd_tx_post(uint8_t *ring, uint32_t size, uint32_t clean, uint32_t tail, uint32_t n, const uint8_t *data,
                    uint64_t data_len, const int64_t *lengths, int64_t *stack, int64_t *top, int64_t pool_count,
                    uint8_t *pool_mem, uint64_t buf_size, uint64_t pool_bus, uint8_t cmd, int64_t *slot_buf,
                    int64_t *out);

/* Where pmd_rx_burst reports what it did (an int64_t[PMD_RX_OUT]): bytes copied out, the longest frame, and
 * the new next and tail indices.  (Whether more frames are ready is asked after the doorbell write, which may
 * bring them: that is the caller's.) */
#define PMD_RX_BYTES 0
#define PMD_RX_LONGEST 1
#define PMD_RX_NEXT 2
#define PMD_RX_TAIL 3
#define PMD_RX_OUT 4

/* RX burst, one call (rte_eth_rx_burst: receive, copy out, re-arm): the run of descriptors with DD from
 * ``next`` (at most the posted ones, up to ``tail``) must all end a frame (EOP), carry no error and no length
 * beyond ``buf_size``; then the first m = min(run, max_frames) frames are copied out of slot i's buffer (slot
 * i owns buffer i) into ``out`` (room for ``out_cap`` bytes) with their lengths in ``out_len`` (room for
 * ``len_cap``), their slots re-armed (addr of buffer i, the rest zero), and ``res`` filled in (the tail moves
 * by m: the caller writes it to the doorbell once).  Returns m (0: nothing done), -1 (the general path is
 * needed: nothing changed) or -3 (``out`` or ``out_len`` has too little room: nothing changed). */
int64_t pmd_rx_burst(uint8_t *ring, uint32_t size, uint32_t next, uint32_t tail, uint64_t max_frames,
                     const uint8_t *pool_mem, uint64_t buf_size, uint64_t pool_bus, uint8_t *out, uint64_t out_cap,
                     int64_t *out_len, uint64_t len_cap, int64_t *res);

/* SHA-256 (hex) of pmd.h and pmd.c as compiled (defined by the build). */
const char *pmd_source_digest(void);

/* cdef-end */

#endif
