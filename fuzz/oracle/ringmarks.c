/* The oracle's compiled reading of a watched ring after a step: see ringmarks.h. */
#include "ringmarks.h"

int64_t ringmarks_step(int64_t n, uint64_t *words, uint64_t mark_mask, uint64_t mark_value, int32_t completions,
                       uint64_t sent_mask, uint64_t sent_value, uint64_t eop_mask, uint64_t clear_mark,
                       uint64_t clear_sent, int64_t *marks, int64_t *split) {
    int64_t k = 0;
    split[0] = split[1] = split[2] = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((words[2 * i + 1] & mark_mask) == mark_value) marks[k++] = i;
    }
    if (completions) { /* read before any slot is reaped, as the numpy path reads the ring once */
        for (int64_t i = 0; i < n; i++) {
            uint64_t w = words[2 * i + 1];
            if ((w & sent_mask) != sent_value || (w & eop_mask) != 0) continue;
            int64_t next = i + 1 == n ? 0 : i + 1;
            if ((words[2 * next + 1] & mark_mask) == mark_value) {
                if (split[0]++ == 0) {
                    split[1] = i;
                    split[2] = next;
                }
            }
        }
        for (int64_t i = 0; i < n; i++) {
            if ((words[2 * i + 1] & sent_mask) == sent_value) words[2 * i + 1] &= ~clear_sent;
        }
    }
    for (int64_t j = 0; j < k; j++) words[2 * marks[j] + 1] &= ~clear_mark;
    return k;
}

int32_t ringmarks_match(int64_t n_marks, const int64_t *marks, int64_t n_described, const int64_t *described,
                        int64_t size, uint8_t *seen) {
    int32_t same = n_described == n_marks;
    int64_t j;
    for (j = 0; j < n_marks; j++) {
        if (marks[j] < 0 || marks[j] >= size) return -1; /* not this ring's slots: the caller compares in numpy */
    }
    for (j = 0; j < n_marks; j++) seen[marks[j]] = 1;
    for (j = 0; same && j < n_described; j++) {
        int64_t d = described[j];
        if (d < 0 || d >= size || seen[d] != 1) same = 0; /* not a mark, or a mark named twice */
        else seen[d] = 2;
    }
    for (j = 0; j < n_marks; j++) seen[marks[j]] = 0;
    return same;
}

int64_t ringmarks_count(int64_t n, const uint64_t *words, int64_t start, int64_t count, uint64_t mask,
                        uint64_t value) {
    int64_t marked = 0, slot = start;
    for (int64_t j = 0; j < count; j++, slot = slot + 1 == n ? 0 : slot + 1) {
        marked += (words[2 * slot + 1] & mask) == value;
    }
    return marked;
}

void ringmarks_held(int64_t n, const uint64_t *words, int64_t start, int64_t count, uint64_t done_mask,
                    uint64_t done_value, uint64_t sent_mask, uint64_t sent_value, uint64_t eop_mask, int64_t *out) {
    int64_t slot = start;
    out[0] = out[1] = out[2] = -1;
    out[3] = 0;
    for (int64_t j = 0; j < count; j++, slot = slot + 1 == n ? 0 : slot + 1) {
        uint64_t w = words[2 * slot + 1];
        int done = (w & done_mask) == done_value;
        if (!done && out[0] < 0) out[0] = j;
        else if (done && out[0] >= 0 && out[1] < 0) out[1] = j;
        if ((w & sent_mask) == sent_value) {
            out[2] = j;
            out[3] = (w & eop_mask) != 0;
        }
    }
}

void ringmarks_atomic(int64_t n, const uint64_t *words, int64_t start, int64_t count, uint64_t mark_mask,
                      uint64_t mark_value, uint64_t sent_mask, uint64_t sent_value, uint64_t eop_mask,
                      int64_t *out) {
    int refused = 0, sent = 0;
    int64_t first = start, slot = start;
    out[0] = out[1] = -1;
    for (int64_t j = 0; j < count; j++) {
        uint64_t w = words[2 * slot + 1];
        refused |= (w & mark_mask) == mark_value;
        sent |= (w & sent_mask) == sent_value;
        if ((w & eop_mask) != 0 || j + 1 == count) { /* the packet ends here (or the window does) */
            if (refused && sent) {
                out[0] = first;
                out[1] = slot;
                return;
            }
            refused = sent = 0;
            first = slot + 1 == n ? 0 : slot + 1;
        }
        slot = slot + 1 == n ? 0 : slot + 1;
    }
}
