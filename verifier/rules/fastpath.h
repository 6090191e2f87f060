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

/* The constants of one trapped queue, as the compiled doorbell and reap need them: set once when the queue opens
 * (verifier/modes/shadow.py ShadowQueue.__post_init__).  Numbers only, so that two machines built alike hold the
 * same bytes here (world/reset.py compares and restores them); the rings are passed as pointers on each call.
 * A doorbell or an interrupt then costs one call, with the ring positions passed by value (the Python
 * bookkeeping in verifier/queue_state.py stays the record of them). */
struct fp_queue {
    uint64_t nframes;        /* frames of memory: frame_ok has nframes + 1 entries (the last one 0) */
    uint32_t size;           /* slots of each ring */
    uint32_t max_len;        /* TX: Policy.tx_fast_path's buffer limit */
    uint32_t buffer_size;    /* RX: RCTL.BSIZE, every buffer is checked over this many bytes */
    uint8_t cmd_mask;        /* TX: Policy.tx_fast_path's command mask and expected bits */
    uint8_t cmd_expect;
    uint8_t done_status;     /* TX: the status a finished descriptor gets back (DD) */
};

/* What a compiled doorbell returns besides k > 0 (k descriptors were snapshot, checked and posted: ring the
 * device) and 0 (the tail did not move). */
#define FP_DECLINED -1 /* nothing read: the tail is not plainly good, Python judges the doorbell from the start */
#define FP_REFUSE -2   /* the snapshot is taken (in snap), nothing posted: Python judges snap with the numpy rules */

/* Judge the tail (as verifier/queue_state.py judge_tail accepts it), snapshot [tail, new_tail) of user_ring once
 * into snap, check it and post it to shadow from shadow_tail (tx_/rx_snapshot_check_post).  frame_ok is the
 * pin table's row for the access the device needs. */
int64_t tx_doorbell(const struct fp_queue *q, const uint8_t *user_ring, uint8_t *shadow, uint8_t *snap,
                    int64_t *to_user, const uint8_t *frame_ok, uint32_t new_tail, uint32_t tail, uint32_t done,
                    uint32_t shadow_tail);
int64_t rx_doorbell(const struct fp_queue *q, const uint8_t *user_ring, uint8_t *shadow, uint8_t *snap,
                    int64_t *to_user, const uint8_t *frame_ok, uint32_t new_tail, uint32_t tail, uint32_t done,
                    uint32_t shadow_tail);
/* The interrupt: the device's head moved from head to device_head.  When the finished shadow slots are exactly
 * the next user slots from done, in order, write them back (tx_complete / rx_complete) and return their number;
 * otherwise write nothing and return FP_DECLINED (Python's general path marks them done out of order). */
int64_t tx_reap(const struct fp_queue *q, uint8_t *user_ring, const uint8_t *shadow, const int64_t *to_user,
                uint32_t head, uint32_t device_head, uint32_t done);
int64_t rx_reap(const struct fp_queue *q, uint8_t *user_ring, const uint8_t *shadow, const int64_t *to_user,
                uint32_t head, uint32_t device_head, uint32_t done);

/* One trapped queue as its doorbell and interrupt reach the compiled path: the constants (``q``) and the five
 * arrays the calls above take as pointers.  Made once when the queue opens (verifier/modes/shadow.py
 * ShadowQueue._quick_queue) in memory cffi owns beside the queue: pointers differ between two machines built
 * alike, so they are kept out of ``struct fp_queue`` (world/reset.py compares and restores that), and they
 * point at arrays a reset restores in place.  The ring positions stay Python's (verifier/queue_state.py is their
 * record, every path reads and moves them there) and are passed by value: a trapped doorbell is then a call of
 * five arguments and an interrupt's reap one of four, instead of ten and seven (cffi converts each argument,
 * which costs more than the check of a small batch). */
struct fp_rings {
    const struct fp_queue *q;
    uint8_t *user;            /* the tenant's ring */
    uint8_t *shadow;          /* the kernel's copy the device reads */
    uint8_t *snap;            /* where a doorbell's snapshot is taken */
    int64_t *to_user;         /* shadow slot -> user slot */
    const uint8_t *frame_ok;  /* the pin table's row for the access the device needs */
    const uint32_t *head_reg; /* the device's head register word (TDH/RDH) where the bus maps it, else NULL */
    uint32_t seen_head;       /* what tx_/rx_reap_mapped last read there (the general path's head on a decline) */
};

/* An interrupt's reap with the device's head read here, from r->head_reg (never NULL for these calls), instead of
 * by the caller through the bus: tx_/rx_reap_rings with device_head = that word, which is left in r->seen_head. */
int64_t tx_reap_mapped(struct fp_rings *r, uint32_t head, uint32_t done);
int64_t rx_reap_mapped(struct fp_rings *r, uint32_t head, uint32_t done);

/* tx_/rx_doorbell and tx_/rx_reap through a ``struct fp_rings``: the same judgement, the same results. */
int64_t tx_doorbell_rings(const struct fp_rings *r, uint32_t new_tail, uint32_t tail, uint32_t done,
                          uint32_t shadow_tail);
int64_t rx_doorbell_rings(const struct fp_rings *r, uint32_t new_tail, uint32_t tail, uint32_t done,
                          uint32_t shadow_tail);
int64_t tx_reap_rings(const struct fp_rings *r, uint32_t head, uint32_t device_head, uint32_t done);
int64_t rx_reap_rings(const struct fp_rings *r, uint32_t head, uint32_t device_head, uint32_t done);

/* -- The full classification of a batch the fast check refused (verifier/rules/checks.py, in one pass) ---------
 *
 * check_tx and check_rx of verifier/rules/checks.py give every descriptor of a refused batch its reason, its first
 * offending byte and the owner of the offending frame; these do the same in one call, and are held to them by
 * tests/verifier/test_classify.py (identical Verdicts) and by mutants of their own (fuzz/mutants/targets.py).  The
 * numpy rules stay the semantics (NIC_SANDBOX_FASTPATH=0 runs them alone).  Every constant below is checked against
 * its Python declaration when the module loads (verifier/rules/fastpath.py). */

/* Reason codes (verifier/rules/reasons.py). */
#define FP_R_OK 0
#define FP_R_LEN_ZERO 10
#define FP_R_LEN_TOO_LONG 11
#define FP_R_PKT_TOO_LONG 12
#define FP_R_PKT_TOO_MANY_FRAGS 13
#define FP_R_PKT_BAD_FRAGMENT 15
#define FP_R_ADDR_WRAP 20
#define FP_R_ADDR_BEYOND_MEMORY 21
#define FP_R_ADDR_NOT_PINNED 22
#define FP_R_ACCESS_NO_READ 30
#define FP_R_ACCESS_NO_WRITE 31
#define FP_R_CMD_UNSUPPORTED 40
#define FP_R_CSUM_OFFSET 41
#define FP_R_PIN_RELEASED 50
/* Verdicts.owner when the offending frame is the tenant's own but unpinned, and when there is no offending frame
 * (checks.py OWNER_SELF_UNPINNED, NO_OWNER). */
#define FP_OWNER_SELF_UNPINNED -3
#define FP_NO_OWNER -4
/* The access a pin grants (verifier/pins.py Access) and the TX command bits the packet rules read
 * (ring/descriptors.py). */
#define FP_ACCESS_READ 1
#define FP_ACCESS_WRITE 2
#define FP_TXD_CMD_EOP 1
#define FP_TXD_CMD_IC 4

/* One tenant's pin table as the classification reads it (verifier/pins.py PinTable; the arrays are updated in
 * place, so the pointers stay right for the queue's life), with the memory's ground-truth owners. */
struct fp_pins {
    const uint8_t *access;   /* per frame: the access bits of the tenant's active pins */
    const uint8_t *released; /* per frame: pinned once, now released (numpy bool) */
    const int32_t *owners;   /* per frame: who owns it (ring/memory.py PhysicalMemory.owner) */
    uint64_t memory_size;    /* bytes of physical memory: nframes pages exactly */
    int32_t tenant;          /* the queue's owner */
};

/* The TX limits (verifier/rules/policy.py Policy), and its fast-path constants when it has them. */
struct fp_tx_rules {
    int64_t max_buffer;
    int64_t max_frame;
    int64_t max_fragments;
    uint8_t cmd_refused;  /* ~tx_cmd_allowed & 0xff: any of these bits is CMD_UNSUPPORTED */
    uint8_t fast;         /* 1: Policy.tx_fast_path exists, its constants follow */
    uint8_t cmd_mask;
    uint8_t cmd_expect;  /* (its buffer limit is max_buffer: Policy.tx_fast_path) */
};

/* check_tx for the n legacy TX descriptors at descs (16 bytes each, in ring order): writes one verdict per
 * descriptor into reason, bad_byte, owner and held (numpy bool), and returns 0 when check_tx's fast path passes
 * them all (check_tx returns None; the arrays are then written but mean nothing), 1 otherwise. */
int64_t tx_classify(const struct fp_pins *p, const struct fp_tx_rules *r, const uint8_t *descs, uint32_t n,
                    uint8_t *reason, int64_t *bad_byte, int32_t *owner, uint8_t *held);
/* check_rx for the n RX descriptors at descs, every buffer judged over buffer_size bytes: 0 when check_rx
 * returns None (buffer_size at most a page and every buffer passes), 1 otherwise. */
int64_t rx_classify(const struct fp_pins *p, uint64_t buffer_size, const uint8_t *descs, uint32_t n,
                    uint8_t *reason, int64_t *bad_byte, int32_t *owner);

/* SHA-256 (hex) of fastpath.h and fastpath.c as they were compiled; defined by the build
 * (ring/cbuild.py), so that a module compiled from older sources is noticed and not used. */
const char *fastpath_source_digest(void);

/* cdef-end */

#endif
