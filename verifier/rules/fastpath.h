/* The compiled fast path's interface, declared once: descriptor layouts, the page size, the functions.
 *
 * The structs are the Intel 8254x (e1000) legacy descriptors, 16 bytes, little endian (PCI/PCI-X Family
 * of Gigabit Ethernet Controllers Software Developer's Manual 317453-006, 3.3.3 "Legacy Transmit
 * Descriptor Format" and 3.2.3 "Receive Descriptor Format"), the same as ring/descriptors.py's TX_DESC
 * and RX_DESC.  The numpy dtypes stay the declaration the rest of the project reads: when Python loads
 * the compiled module, verifier/rules/fastpath.py compares every field's offset and size, each struct's
 * size and FASTPATH_PAGE_SHIFT with them and refuses the module on any difference.
 *
 * The text between the cdef markers is also what cffi is told (ring/cbuild.py reads
 * it), so no prototype is written twice.  It may hold only what cffi's cdef parser accepts: plain
 * declarations and integer #defines.
 */
#ifndef NIC_SANDBOX_FASTPATH_H
#define NIC_SANDBOX_FASTPATH_H

#include <stdint.h>

#include "descriptors.h" /* struct tx_desc, struct rx_desc (ring/descriptors.h) */

/* cdef-begin */

/* x86-64 base page, the pinning granule (ring/memory.py PAGE_SHIFT): frame number = address >> this. */
#define FASTPATH_PAGE_SHIFT 12

/* The rings and the snapshot buffer are raw bytes (a ring is wherever the tenant put it); the functions
 * read and write them one whole struct at a time.  Return 1: the batch was accepted and posted; 0: the
 * snapshot is taken, nothing is posted, the caller judges the snapshot with the numpy checks. */
int tx_snapshot_check_post(const uint8_t *user_ring, uint32_t size, uint32_t tail, uint32_t k, uint8_t *snap,
                           const uint8_t *frame_ok, uint64_t nframes, uint8_t cmd_mask, uint8_t cmd_expect,
                           uint32_t max_len, uint8_t *shadow, uint32_t shadow_tail, int64_t *to_user);
int rx_snapshot_check_post(const uint8_t *user_ring, uint32_t size, uint32_t tail, uint32_t k, uint8_t *snap,
                           const uint8_t *frame_ok, uint64_t nframes, uint32_t buffer_size, uint8_t *shadow,
                           uint32_t shadow_tail, int64_t *to_user);
void tx_complete(uint8_t *user_ring, uint32_t size, const int64_t *to_user, uint32_t first, uint32_t n,
                 uint8_t status);
void rx_complete(uint8_t *user_ring, uint32_t size, const uint8_t *shadow, const int64_t *to_user, uint32_t first,
                 uint32_t n);

/* SHA-256 (hex) of fastpath.h and fastpath.c as they were compiled; defined by the build
 * (ring/cbuild.py), so that a module compiled from older sources is noticed and not used. */
const char *fastpath_source_digest(void);

/* cdef-end */

#endif
