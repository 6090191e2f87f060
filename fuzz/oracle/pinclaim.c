/* The oracle's compiled judgement of a pin or access claim: see pinclaim.h. */
#include "pinclaim.h"

int64_t pinclaim_judge(int64_t n, const uint64_t *addr, const uint64_t *length, const uint64_t *bad,
                       const uint8_t *table, int64_t frames, uint64_t memory_size, uint8_t need,
                       const uint8_t *frame_bad, uint8_t *status, int64_t *frame) {
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t a = addr[i], b = bad[i];
        uint8_t s;
        frame[i] = 0;
        if (b == UINT64_MAX) {
            s = PINCLAIM_UNNAMED;
        } else if (b < a || b - a >= length[i] || b >= memory_size) {
            s = PINCLAIM_OUTSIDE;
        } else {
            uint64_t at = b >> PINCLAIM_PAGE_SHIFT;
            if (at >= (uint64_t)frames) return PINCLAIM_UNSURE; /* the reference is smaller than memory */
            frame[i] = (int64_t)at;
            s = frame_bad[table[at]] ? PINCLAIM_TRUE : PINCLAIM_FRAME;
            if (b > a) { /* every frame holding a byte before it: addr's frame .. (b - 1)'s frame */
                for (uint64_t f = a >> PINCLAIM_PAGE_SHIFT; f <= (b - 1) >> PINCLAIM_PAGE_SHIFT; f++) {
                    if ((table[f] & need) == 0) {
                        s = PINCLAIM_BEFORE;
                        break;
                    }
                }
            }
        }
        status[i] = s;
        wrong += s != PINCLAIM_TRUE;
    }
    return wrong;
}
