/* The audit log's compiled line formatter (declared and explained in encode.h). */
#include <string.h>

#include "encode.h"

static const char DIGIT_PAIRS[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";
static const char HEX_DIGITS[] = "0123456789abcdef";
/* 10**k for k < 20: POWERS_OF_TEN[k] is the least number of k + 1 digits. */
static const uint64_t POWERS_OF_TEN[20] = {
    1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u, 10000000000u,
    100000000000u, 1000000000000u, 10000000000000u, 100000000000000u, 1000000000000000u, 10000000000000000u,
    100000000000000000u, 1000000000000000000u, 10000000000000000000u};

/* The row's integer, widened: ``*negative`` set when a signed value is below zero (its magnitude returned). */
static int element(const struct enc_column *c, uint64_t row, uint64_t *magnitude, int *negative) {
    const uint8_t *p = c->data + (int64_t)row * c->stride;
    int64_t s;
    uint64_t u;
    switch (c->width) {
    case 1: { uint8_t v; memcpy(&v, p, 1); s = c->is_signed ? (int8_t)v : 0; u = v; break; }
    case 2: { uint16_t v; memcpy(&v, p, 2); s = c->is_signed ? (int16_t)v : 0; u = v; break; }
    case 4: { uint32_t v; memcpy(&v, p, 4); s = c->is_signed ? (int32_t)v : 0; u = v; break; }
    case 8: { uint64_t v; memcpy(&v, p, 8); s = c->is_signed ? (int64_t)v : 0; u = v; break; }
    default: return -1;
    }
    *negative = 0;
    if (c->is_signed) {
        if (s < 0) {
            *negative = 1;
            u = (uint64_t)0 - (uint64_t)s; /* |INT64_MIN| fits in uint64 */
        } else {
            u = (uint64_t)s;
        }
    }
    *magnitude = u;
    return 0;
}

/* True when the row's element is all ones in its width (-1 signed): ENC_SKIP_ONES writes nothing there. */
static int all_ones(const struct enc_column *c, uint64_t row) {
    const uint8_t *p = c->data + (int64_t)row * c->stride;
    for (uint32_t k = 0; k < c->width; k++)
        if (p[k] != 0xFF) return 0;
    return 1;
}

/* ``*at`` = the position of ``key`` in the column's ascending ``keys`` (binary search); 0 when it is not there. */
static int lookup(const struct enc_column *c, int64_t key, uint64_t *at) {
    uint64_t lo = 0, hi = c->entries;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (c->keys[mid] < key) {
            lo = mid + 1;
        } else if (c->keys[mid] > key) {
            hi = mid;
        } else {
            *at = mid;
            return 1;
        }
    }
    return 0;
}

/* How many digits ``value`` has in decimal. */
static uint64_t decimal_digits(uint64_t value) {
    uint64_t digits = 1;
    while (digits < 20 && value >= POWERS_OF_TEN[digits]) digits++;
    return digits;
}

/* ``value`` in decimal ending just before ``end`` (``decimal_digits`` of it before). */
static void decimal_into(uint64_t value, uint8_t *end) {
    uint8_t *p = end;
    while (value >= 100) {
        unsigned pair = (unsigned)(value % 100) * 2;
        value /= 100;
        *--p = (uint8_t)DIGIT_PAIRS[pair + 1];
        *--p = (uint8_t)DIGIT_PAIRS[pair];
    }
    if (value >= 10) {
        unsigned pair = (unsigned)value * 2;
        *--p = (uint8_t)DIGIT_PAIRS[pair + 1];
        *--p = (uint8_t)DIGIT_PAIRS[pair];
    } else {
        *--p = (uint8_t)('0' + value);
    }
}

int64_t enc_lines(const struct enc_column *columns, uint32_t ncolumns, uint64_t rows, uint8_t *out,
                  uint64_t capacity) {
    for (uint32_t j = 0; j < ncolumns; j++) { /* the specs first: nothing is written for a batch refused here */
        const struct enc_column *c = &columns[j];
        if (c->op > ENC_COUNT || c->flags > (ENC_SKIP_ONES | ENC_KEYED) || c->shift >= 64) return ENC_ERR_SPEC;
        int integer = c->op == ENC_PICK || c->op == ENC_DEC || c->op == ENC_HEX ||
                      (c->op == ENC_CONST && (c->flags & ENC_SKIP_ONES));
        if (integer && c->width != 1 && c->width != 2 && c->width != 4 && c->width != 8) return ENC_ERR_SPEC;
        if ((c->flags & ENC_SKIP_ONES) && !integer) return ENC_ERR_SPEC;
        if (c->shift && (c->is_signed || (c->op != ENC_DEC && c->op != ENC_HEX))) return ENC_ERR_SPEC;
        if ((c->flags & ENC_KEYED) && (c->op != ENC_PICK || !c->is_signed || (c->entries && c->keys == NULL)))
            return ENC_ERR_SPEC;
        if (c->op == ENC_PICK && c->offsets[c->entries] > c->text_len) return ENC_ERR_SPEC;
    }
    uint64_t at = 0;
    for (uint64_t row = 0; row < rows; row++) {
        for (uint32_t j = 0; j < ncolumns; j++) {
            const struct enc_column *c = &columns[j];
            if (c->mask != NULL && !c->mask[row]) continue;
            if ((c->flags & ENC_SKIP_ONES) && all_ones(c, row)) continue;
            const uint8_t *src;
            uint64_t len;
            uint64_t value;
            int negative;
            switch (c->op) {
            case ENC_CONST:
                src = c->text;
                len = c->text_len;
                break;
            case ENC_PICK:
                element(c, row, &value, &negative);
                if (c->flags & ENC_KEYED) {
                    if (!lookup(c, negative ? (int64_t)((uint64_t)0 - value) : (int64_t)value, &value))
                        return ENC_ERR_KEY;
                } else if (negative || value >= c->entries) {
                    return ENC_ERR_INDEX;
                }
                if (c->offsets[value] > c->offsets[value + 1]) return ENC_ERR_SPEC;
                src = c->text + c->offsets[value];
                len = c->offsets[value + 1] - c->offsets[value];
                break;
            case ENC_COUNT:
            case ENC_DEC: { /* the digits straight into ``out``: counted first, written from the last */
                negative = 0;
                if (c->op == ENC_COUNT) {
                    value = c->base + row;
                } else {
                    element(c, row, &value, &negative);
                    value >>= c->shift;
                }
                len = (uint64_t)negative + decimal_digits(value);
                if (len > capacity - at) return ENC_ERR_ROOM;
                out[at] = '-';
                at += len;
                decimal_into(value, out + at);
                continue;
            }
            case ENC_HEX: { /* as ENC_DEC: ``-``, ``0x``, the digits from the last */
                element(c, row, &value, &negative);
                value >>= c->shift;
                uint64_t digits = value ? (uint64_t)(64 - __builtin_clzll(value) + 3) / 4 : 1;
                len = (uint64_t)negative + 2 + digits;
                if (len > capacity - at) return ENC_ERR_ROOM;
                out[at] = '-';
                at += len;
                uint8_t *p = out + at;
                do {
                    *--p = (uint8_t)HEX_DIGITS[value & 15];
                    value >>= 4;
                } while (value);
                *--p = 'x';
                *--p = '0';
                continue;
            }
            default: { /* ENC_HEXROW */
                uint64_t width = c->width;
                if (width * 2 > capacity - at) return ENC_ERR_ROOM;
                const uint8_t *p = c->data + (int64_t)row * c->stride;
                for (uint64_t k = 0; k < width; k++) {
                    out[at++] = (uint8_t)HEX_DIGITS[p[k] >> 4];
                    out[at++] = (uint8_t)HEX_DIGITS[p[k] & 15];
                }
                continue;
            }
            }
            if (len > capacity - at) return ENC_ERR_ROOM;
            memcpy(out + at, src, len);
            at += len;
        }
    }
    return (int64_t)at;
}
