/* The audit log's compiled line formatter (declared and explained in encode.h). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <string.h>
#include <time.h>

#include "encode.h"

/* The small helpers each row calls a dozen times: inlined, so that a row is one stretch of code. */
#define ALWAYS_INLINE __attribute__((always_inline))

static const char DIGIT_PAIRS[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";
static const char HEX_DIGITS[] = "0123456789abcdef";
/* Each byte's two lower-case hex digits: HEX_PAIRS[2 * b], HEX_PAIRS[2 * b + 1]. */
#define HEX_ROW(h) #h "0" #h "1" #h "2" #h "3" #h "4" #h "5" #h "6" #h "7" #h "8" #h "9" #h "a" #h "b" #h "c" #h "d" #h "e" #h "f"
static const char HEX_PAIRS[] = HEX_ROW(0) HEX_ROW(1) HEX_ROW(2) HEX_ROW(3) HEX_ROW(4) HEX_ROW(5) HEX_ROW(6) HEX_ROW(7)
    HEX_ROW(8) HEX_ROW(9) HEX_ROW(a) HEX_ROW(b) HEX_ROW(c) HEX_ROW(d) HEX_ROW(e) HEX_ROW(f);
/* 10**k for k < 20: POWERS_OF_TEN[k] is the least number of k + 1 digits. */
static const uint64_t POWERS_OF_TEN[20] = {
    1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u, 10000000000u,
    100000000000u, 1000000000000u, 10000000000000u, 100000000000000u, 1000000000000000u, 10000000000000000u,
    100000000000000000u, 1000000000000000000u, 10000000000000000000u};

/* The row's integer, widened: ``*negative`` set when a signed value is below zero (its magnitude returned). */
static inline ALWAYS_INLINE int element(const struct enc_column *c, uint64_t row, uint64_t *magnitude, int *negative) {
    const uint8_t *p = c->data + (int64_t)row * c->stride;
    int64_t s;
    uint64_t u;
    switch (c->width) {
    case 1: { uint8_t v; memcpy(&v, p, 1); s = c->is_signed ? (int8_t)v : 0; u = v; break; }
    case 2: { uint16_t v; memcpy(&v, p, 2); s = c->is_signed ? (int16_t)v : 0; u = v; break; }
    case 4: { uint32_t v; memcpy(&v, p, 4); s = c->is_signed ? (int32_t)v : 0; u = v; break; }
    case 8: { uint64_t v; memcpy(&v, p, 8); s = c->is_signed ? (int64_t)v : 0; u = v; break; }
    default: *magnitude = 0; *negative = 0; return -1; /* not after check_specs */
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
    if (c->width == 8) { /* the common width (a byte's address), read as one word */
        uint64_t v;
        memcpy(&v, p, 8);
        return v == ~(uint64_t)0;
    }
    for (uint32_t k = 0; k < c->width; k++)
        if (p[k] != 0xFF) return 0;
    return 1;
}

/* ``len`` bytes from ``src`` to ``dst``: the short texts of a row (a key, a separator) as two overlapping words
 * that cover them exactly (nothing read or written outside either range), longer ones by memcpy. */
static inline ALWAYS_INLINE void copy_short(uint8_t *dst, const uint8_t *src, uint64_t len) {
    if (len >= 16 && len <= 32) {
        memcpy(dst, src, 16);
        memcpy(dst + len - 16, src + len - 16, 16);
    } else if (len >= 8 && len < 16) {
        memcpy(dst, src, 8);
        memcpy(dst + len - 8, src + len - 8, 8);
    } else if (len >= 4 && len < 8) {
        memcpy(dst, src, 4);
        memcpy(dst + len - 4, src + len - 4, 4);
    } else {
        memcpy(dst, src, len);
    }
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

/* How many digits ``value`` has in decimal: from its bit length (log10(2) ~ 1233 / 4096), one compare. */
static inline ALWAYS_INLINE uint64_t decimal_digits(uint64_t value) {
    if (value == 0) return 1;
    uint64_t guess = (uint64_t)(64 - __builtin_clzll(value)) * 1233 >> 12; /* 0..19: digits or digits - 1 */
    return guess + 1 - (value < POWERS_OF_TEN[guess]);
}

/* ``value`` in decimal ending just before ``end`` (``decimal_digits`` of it before). */
static inline ALWAYS_INLINE void decimal_into(uint64_t value, uint8_t *end) {
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

/* The specs' own checks (enc_lines refuses a batch with ENC_ERR_SPEC before writing anything): 0 when they hold. */
static int check_specs(const struct enc_column *columns, uint32_t ncolumns) {
    for (uint32_t j = 0; j < ncolumns; j++) {
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
    return 0;
}

/* Rows ``row`` to ``rows`` - 1 of the columns (checked by ``check_specs``), from ``out`` + ``at``: the generic loop,
 * one op dispatch per column and row.  Returns where the last row ends, or a refusal. */
static int64_t generic_rows(const struct enc_column *columns, uint32_t ncolumns, uint64_t row, uint64_t rows,
                            uint8_t *out, uint64_t at, uint64_t capacity) {
    for (; row < rows; row++) {
        for (uint32_t j = 0; j < ncolumns; j++) {
            const struct enc_column *c = &columns[j];
            if (c->op == ENC_CONST && c->flags == 0 && c->mask == NULL) { /* half a row's columns: no dispatch */
                if (c->text_len > capacity - at) return ENC_ERR_ROOM;
                copy_short(out + at, c->text, c->text_len);
                at += c->text_len;
                continue;
            }
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
                    memcpy(out + at, HEX_PAIRS + 2 * p[k], 2);
                    at += 2;
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

int64_t enc_lines(const struct enc_column *columns, uint32_t ncolumns, uint64_t rows, uint8_t *out,
                  uint64_t capacity) {
    int refused = check_specs(columns, ncolumns); /* the specs first: nothing is written for a batch refused here */
    if (refused) return refused;
    return generic_rows(columns, ncolumns, 0, rows, out, 0, capacity);
}

/* -- The rejection record's formatter: the template verifier/audit/programs.py builds for every refusal of a
 * doorbell, written row by row in straight-line code.  The generic loop above dispatches on each column's op,
 * checks the room before each column and the table's offsets before each pick; here the columns' order is known
 * (``rejection_shape`` checks it once per batch), the tables' offsets are checked once per batch, and the room
 * once per row against the most a row can take: the same bytes with a fifth of the branches. */

/* Descriptor fields the shape takes (a descriptor of DESC_SIZE bytes has at most 16). */
#define REJ_FIELDS 16
/* The most a column writes in a row beyond its texts: a seq's 20 digits; ``-`` and 20; ``-0x`` and 16. */
#define COUNT_MAX 20
#define DEC_MAX 21
#define HEX_MAX 19
/* A text longer than this (never a template's) takes the generic loop: the row's size below cannot wrap. */
#define TEXT_MAX ((uint64_t)1 << 32)

struct rejection_shape {
    const struct enc_column *lead, *count, *stamp; /* NULL: no lead, seq or stamp (schema v1's tails) */
    const struct enc_column *place, *ring, *hex_key, *hexrow, *close, *reason;
    const struct enc_column *bad_key, *bad_hex, *frame_key, *frame, *owner, *end;
    const struct enc_column *key[REJ_FIELDS], *field[REJ_FIELDS];
    uint32_t fields;
    uint64_t row_max; /* the most bytes one row writes */
};

/* A constant written in every row. */
static int plain_const(const struct enc_column *c) {
    return c->op == ENC_CONST && c->flags == 0 && c->mask == NULL && c->text_len < TEXT_MAX;
}

/* A column of ``op`` written in every row. */
static int plain_op(const struct enc_column *c, uint32_t op) {
    return c->op == op && c->flags == 0 && c->mask == NULL;
}

/* A column of ``op`` skipped where the bad byte (``bad``'s element) is all ones, as ``bad`` is. */
static int skipped_with(const struct enc_column *c, uint32_t op, const struct enc_column *bad) {
    return c->op == op && c->flags == ENC_SKIP_ONES && c->mask == NULL && c->data == bad->data &&
           c->stride == bad->stride && c->width == bad->width && (op != ENC_CONST || c->text_len < TEXT_MAX);
}

/* ``*longest`` = the longest of a pick's strings; 0 when its offsets go backwards (the generic loop refuses a row
 * that picks such a string) or its text is too long to sum. */
static int longest_pick(const struct enc_column *c, uint64_t *longest) {
    uint64_t most = 0;
    if (c->text_len >= TEXT_MAX) return 0;
    for (uint64_t k = 0; k < c->entries; k++) {
        if (c->offsets[k] > c->offsets[k + 1]) return 0;
        uint64_t len = c->offsets[k + 1] - c->offsets[k];
        if (len > most) most = len;
    }
    *longest = most;
    return 1;
}

/* The columns of a rejection template (programs.py ``_build``), or 0: ``lead`` COUNT ``stamp`` (or none of the
 * three), ``place`` DEC ``hex_key`` HEXROW, then per descriptor field its key and DEC, ``close``, the reason's
 * PICK, the bad byte's key, HEX, frame key and DEC (all four skipped together), the owner's keyed PICK, ``end``. */
static int rejection_shape(const struct enc_column *c, uint32_t n, struct rejection_shape *s) {
    uint32_t i = 0;
    s->lead = s->count = s->stamp = NULL;
    uint64_t row_max = 0;
    if (n >= 3 && c[1].op == ENC_COUNT) {
        if (!plain_const(&c[0]) || !plain_op(&c[1], ENC_COUNT) || !plain_const(&c[2])) return 0;
        s->lead = &c[0];
        s->count = &c[1];
        s->stamp = &c[2];
        row_max += c[0].text_len + COUNT_MAX + c[2].text_len;
        i = 3;
    }
    if (n - i < 4 + 2 + 2 + 4 + 2) return 0; /* place..hexrow, a field, close and reason, the bad byte, owner, end */
    s->place = &c[i];
    s->ring = &c[i + 1];
    s->hex_key = &c[i + 2];
    s->hexrow = &c[i + 3];
    if (!plain_const(s->place) || !plain_op(s->ring, ENC_DEC) || !plain_const(s->hex_key) ||
        !plain_op(s->hexrow, ENC_HEXROW))
        return 0;
    row_max += s->place->text_len + DEC_MAX + s->hex_key->text_len + 2 * (uint64_t)s->hexrow->width;
    i += 4;
    s->fields = 0;
    while (n - i >= 2 + 2 + 4 + 2 && plain_const(&c[i]) && plain_op(&c[i + 1], ENC_DEC)) {
        if (s->fields == REJ_FIELDS) return 0;
        s->key[s->fields] = &c[i];
        s->field[s->fields] = &c[i + 1];
        s->fields++;
        row_max += c[i].text_len + DEC_MAX;
        i += 2;
    }
    if (n - i != 2 + 4 + 2) return 0;
    s->close = &c[i];
    s->reason = &c[i + 1];
    s->bad_key = &c[i + 2];
    s->bad_hex = &c[i + 3];
    s->frame_key = &c[i + 4];
    s->frame = &c[i + 5];
    s->owner = &c[i + 6];
    s->end = &c[i + 7];
    uint64_t reason_max, owner_max;
    if (!plain_const(s->close) || !plain_op(s->reason, ENC_PICK) || !longest_pick(s->reason, &reason_max) ||
        s->bad_key->op != ENC_CONST || !skipped_with(s->bad_key, ENC_CONST, s->bad_key) ||
        !skipped_with(s->bad_hex, ENC_HEX, s->bad_key) || !skipped_with(s->frame_key, ENC_CONST, s->bad_key) ||
        !skipped_with(s->frame, ENC_DEC, s->bad_key) || s->owner->op != ENC_PICK || s->owner->flags != ENC_KEYED ||
        s->owner->mask != NULL || !longest_pick(s->owner, &owner_max) || !plain_const(s->end))
        return 0;
    row_max += s->close->text_len + reason_max + s->bad_key->text_len + HEX_MAX + s->frame_key->text_len + DEC_MAX +
               owner_max + s->end->text_len;
    s->row_max = row_max;
    return 1;
}

/* A constant at ``p``; where it ends. */
static inline uint8_t *put_text(uint8_t *p, const struct enc_column *c) {
    copy_short(p, c->text, c->text_len);
    return p + c->text_len;
}

/* ``value`` in decimal (``negative``: a ``-`` first) at ``p``; where it ends. */
static inline uint8_t *put_decimal(uint8_t *p, uint64_t value, int negative) {
    if (value < 10 && !negative) { /* most of a descriptor's fields: one digit */
        *p = (uint8_t)('0' + value);
        return p + 1;
    }
    uint64_t len = (uint64_t)negative + decimal_digits(value);
    *p = '-';
    decimal_into(value, p + len);
    return p + len;
}

/* ENC_DEC of the row's element, as the generic loop writes it. */
static inline uint8_t *put_dec(uint8_t *p, const struct enc_column *c, uint64_t row) {
    uint64_t value;
    int negative;
    element(c, row, &value, &negative);
    return put_decimal(p, value >> c->shift, negative);
}

/* ENC_HEX of the row's element, as the generic loop writes it. */
static inline uint8_t *put_hex(uint8_t *p, const struct enc_column *c, uint64_t row) {
    uint64_t value;
    int negative;
    element(c, row, &value, &negative);
    value >>= c->shift;
    uint64_t digits = value ? (uint64_t)(64 - __builtin_clzll(value) + 3) / 4 : 1;
    *p = '-';
    uint8_t *end = p + negative + 2 + digits, *q = end;
    do {
        *--q = (uint8_t)HEX_DIGITS[value & 15];
        value >>= 4;
    } while (value);
    *--q = 'x';
    *--q = '0';
    return end;
}

/* ENC_HEXROW: the row's bytes in hex. */
static inline uint8_t *put_hexrow(uint8_t *p, const struct enc_column *c, uint64_t row) {
    const uint8_t *src = c->data + (int64_t)row * c->stride;
    uint32_t width = c->width;
    if (width <= 16) { /* a descriptor: the digits in a local buffer (no store of them can move ``c``), one copy */
        uint8_t digits[32];
        for (uint32_t k = 0; k < width; k++) memcpy(digits + 2 * k, HEX_PAIRS + 2 * src[k], 2);
        memcpy(p, digits, 2 * (size_t)width);
    } else {
        for (uint32_t k = 0; k < width; k++) memcpy(p + 2 * k, HEX_PAIRS + 2 * src[k], 2);
    }
    return p + 2 * (uint64_t)width;
}

/* ENC_PICK (keyed or not) of the row's element at ``*p``: 0, or the generic loop's refusal of that row. */
static inline int put_pick(uint8_t **p, const struct enc_column *c, uint64_t row) {
    uint64_t value;
    int negative;
    element(c, row, &value, &negative);
    if (c->flags & ENC_KEYED) {
        if (!lookup(c, negative ? (int64_t)((uint64_t)0 - value) : (int64_t)value, &value)) return ENC_ERR_KEY;
    } else if (negative || value >= c->entries) {
        return ENC_ERR_INDEX;
    }
    uint64_t start = c->offsets[value], len = c->offsets[value + 1] - start; /* ordered: ``longest_pick`` */
    copy_short(*p, c->text + start, len);
    *p += len;
    return 0;
}

/* One row of a rejection template at ``*at`` (room for ``s->row_max`` bytes checked by the caller): 0, or the
 * generic loop's refusal of that row (a reason outside its table, an owner not in its keys). */
static inline ALWAYS_INLINE int rejection_row(const struct rejection_shape *s, uint64_t row, uint8_t **at) {
    uint8_t *p = *at;
    if (s->lead != NULL) {
        p = put_text(p, s->lead);
        p = put_decimal(p, s->count->base + row, 0);
        p = put_text(p, s->stamp);
    }
    p = put_text(p, s->place);
    p = put_dec(p, s->ring, row);
    p = put_text(p, s->hex_key);
    p = put_hexrow(p, s->hexrow, row);
    for (uint32_t f = 0; f < s->fields; f++) {
        p = put_text(p, s->key[f]);
        p = put_dec(p, s->field[f], row);
    }
    p = put_text(p, s->close);
    int failed = put_pick(&p, s->reason, row);
    if (failed) return failed;
    if (!all_ones(s->bad_key, row)) {
        p = put_text(p, s->bad_key);
        p = put_hex(p, s->bad_hex, row);
        p = put_text(p, s->frame_key);
        p = put_dec(p, s->frame, row);
    }
    failed = put_pick(&p, s->owner, row);
    if (failed) return failed;
    *at = put_text(p, s->end);
    return 0;
}

int64_t enc_rejections(const struct enc_column *columns, uint32_t ncolumns, uint64_t rows, uint8_t *out,
                       uint64_t capacity) {
    int refused = check_specs(columns, ncolumns);
    if (refused) return refused;
    struct rejection_shape s;
    if (!rejection_shape(columns, ncolumns, &s)) return ENC_ERR_SHAPE;
    uint64_t at = 0;
    for (uint64_t row = 0; row < rows; row++) {
        if (s.row_max > capacity - at) /* maybe too little room for this row: the generic loop decides */
            return generic_rows(columns, ncolumns, row, rows, out, at, capacity);
        uint8_t *p = out + at;
        int failed = rejection_row(&s, row, &p);
        if (failed) return failed;
        at = (uint64_t)(p - out);
    }
    return (int64_t)at;
}

/* The civil date of ``days`` since 1970-01-01 (proleptic Gregorian, as gmtime): Howard Hinnant's days_from_civil
 * inverted (http://howardhinnant.github.io/date_algorithms.html), for days >= 0. */
static void civil_date(uint64_t days, uint64_t *year, unsigned *month, unsigned *day) {
    uint64_t z = days + 719468;
    uint64_t era = z / 146097;
    uint64_t doe = z - era * 146097;                                   /* [0, 146096] */
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);             /* [0, 365] */
    uint64_t mp = (5 * doy + 2) / 153;                                  /* [0, 11], from March */
    *day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

/* Two decimal digits of ``value`` (below 100) at ``p``. */
static void two_digits(uint8_t *p, unsigned value) {
    p[0] = (uint8_t)DIGIT_PAIRS[2 * value];
    p[1] = (uint8_t)DIGIT_PAIRS[2 * value + 1];
}

/* ``YYYY-MM-DDTHH:MM:SS`` of ``sec`` (>= 0, so a year of 1970 to 2262 for an int64 of ns: four digits) at ``p``,
 * as time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) writes it (log.py ``_utc_second``). */
static void utc_second(uint64_t sec, uint8_t *p) {
    uint64_t year;
    unsigned month, day;
    civil_date(sec / 86400, &year, &month, &day);
    unsigned in_day = (unsigned)(sec % 86400);
    two_digits(p, (unsigned)(year / 100));
    two_digits(p + 2, (unsigned)(year % 100));
    p[4] = '-';
    two_digits(p + 5, month);
    p[7] = '-';
    two_digits(p + 8, day);
    p[10] = 'T';
    two_digits(p + 11, in_day / 3600);
    p[13] = ':';
    two_digits(p + 14, in_day / 60 % 60);
    p[16] = ':';
    two_digits(p + 17, in_day % 60);
}

#define WALL_KEY ",\"wall\":\""
#define MONO_KEY "\",\"mono_ns\":"
#define HASH_KEY "\",\"hash\":\""
/* What a line has after its tail: ``prev``, ``","hash":"``, ``hash``, ``"}`` and the newline. */
#define CHAIN_END (ENC_HASH_HEX + sizeof HASH_KEY - 1 + ENC_HASH_HEX + 3)
/* ``YYYY-MM-DDTHH:MM:SS``: the part of a wall that names its second. */
#define SECOND_CHARS 19

/* ``value`` (signed) in decimal at ``p``; returns how many bytes. */
static uint64_t signed_decimal(int64_t value, uint8_t *p) {
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    uint64_t len = (uint64_t)(value < 0) + decimal_digits(magnitude);
    p[0] = '-';
    decimal_into(magnitude, p + len);
    return len;
}

/* The most bytes of a stamp: ``,"wall":"``, the second, ``.nnnnnnnnnZ``, ``","mono_ns":`` and ``-`` with 19 digits. */
#define STAMP_MAX (sizeof WALL_KEY - 1 + SECOND_CHARS + 11 + sizeof MONO_KEY - 1 + 20)
_Static_assert(STAMP_MAX == ENC_STAMP_MAX, "encode.h's ENC_STAMP_MAX is a stamp's most bytes");
_Static_assert(COUNT_MAX + STAMP_MAX + CHAIN_END <= ENC_CHAIN_ROW, "ENC_CHAIN_ROW holds a line's seq, stamp, chain");

/* The second a run of stamps last named, formatted once (records come by the thousand per second). */
struct second_cache {
    int64_t of; /* -1: none yet */
    uint8_t text[SECOND_CHARS];
};

/* ``,"wall":"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ","mono_ns":M`` of a reading (``wall`` >= 0) at ``p``, as log.py's
 * ``_stamps`` and ``format_wall`` write it; where it ends. */
static uint8_t *put_stamp(uint8_t *p, int64_t wall, int64_t mono, struct second_cache *second) {
    memcpy(p, WALL_KEY, sizeof WALL_KEY - 1);
    p += sizeof WALL_KEY - 1;
    int64_t sec = wall / 1000000000;
    if (sec != second->of) {
        utc_second((uint64_t)sec, second->text);
        second->of = sec;
    }
    memcpy(p, second->text, SECOND_CHARS);
    p += SECOND_CHARS;
    *p++ = '.';
    uint64_t ns = (uint64_t)(wall % 1000000000);
    for (int d = 8; d >= 0; d--) { /* nine digits, leading zeros kept (``%09d``) */
        p[d] = (uint8_t)('0' + ns % 10);
        ns /= 10;
    }
    p += 9;
    *p++ = 'Z';
    memcpy(p, MONO_KEY, sizeof MONO_KEY - 1);
    p += sizeof MONO_KEY - 1;
    return p + signed_decimal(mono, p);
}

/* One SHA-256 at a time through libcrypto: SHA256_* on this struct's own context when handed, EVP otherwise. */
struct digest {
    const struct enc_sha256 *sha;
    int direct;
    _Alignas(16) unsigned char context[ENC_SHA256_CTX_BYTES];
};

static void digest_open(struct digest *d, const struct enc_sha256 *sha) {
    d->sha = sha;
    d->direct = sha->sha256_init != NULL && sha->sha256_update != NULL && sha->sha256_final != NULL;
}

static int digest_start(struct digest *d) {
    return d->direct ? d->sha->sha256_init(d->context) : d->sha->init(d->sha->ctx, d->sha->md, NULL);
}

static int digest_update(struct digest *d, const void *data, size_t count) {
    return d->direct ? d->sha->sha256_update(d->context, data, count) : d->sha->update(d->sha->ctx, data, count);
}

/* The digest as ENC_HASH_HEX lower-case hex digits at ``hex``: 0 when libcrypto said no. */
static int digest_hex(struct digest *d, uint8_t *hex) {
    unsigned char sum[32];
    if (d->direct) {
        if (!d->sha->sha256_final(sum, d->context)) return 0;
    } else {
        unsigned int size = 0;
        if (!d->sha->final(d->sha->ctx, sum, &size) || size != sizeof sum) return 0;
    }
    for (size_t i = 0; i < sizeof sum; i++) {
        hex[2 * i] = (uint8_t)HEX_DIGITS[sum[i] >> 4];
        hex[2 * i + 1] = (uint8_t)HEX_DIGITS[sum[i] & 15];
    }
    return 1;
}

/* Close a v1 line that starts at ``out`` + ``start`` and runs to ``*at`` (up to ``,"prev":"``): ``link`` (the
 * previous hash) as its ``prev``, then ``","hash":"``, the SHA-256 hex of ``link`` + the line up to ``prev"`` +
 * ``}`` (log.py ``chain_hash``), ``"}`` and a newline; ``link`` becomes that hash.  0, or ENC_ERR_DIGEST. */
static int chain_close(struct digest *d, uint8_t *link, uint8_t *out, uint64_t start, uint64_t *at) {
    uint64_t k = *at;
    memcpy(out + k, link, ENC_HASH_HEX); /* the line's ``prev`` */
    k += ENC_HASH_HEX;
    out[k++] = '"';
    if (!digest_start(d) || !digest_update(d, link, ENC_HASH_HEX) ||
        !digest_update(d, out + start, (size_t)(k - start)) || !digest_update(d, "}", 1) || !digest_hex(d, link))
        return ENC_ERR_DIGEST;
    memcpy(out + k, HASH_KEY + 1, sizeof HASH_KEY - 2); /* ``,"hash":"``: the ``"`` is written */
    k += sizeof HASH_KEY - 2;
    memcpy(out + k, link, ENC_HASH_HEX);
    k += ENC_HASH_HEX;
    out[k++] = '"';
    out[k++] = '}';
    out[k++] = '\n';
    *at = k;
    return 0;
}

/* A v1 line's head at ``out`` + ``*at``: ``lead``, the seq, the stamp of reading ``k`` (``readings``, or the system
 * clock read here when NULL, as log.py's ``system_clock`` reads it).  0, or ENC_ERR_CLOCK (a wall before 1970). */
static int chain_head(const uint8_t *lead, uint64_t lead_len, uint64_t seq, const int64_t *readings, uint64_t k,
                      struct second_cache *second, uint8_t *out, uint64_t *at) {
    int64_t wall, mono;
    if (readings != NULL) {
        wall = readings[2 * k];
        mono = readings[2 * k + 1];
    } else {
        struct timespec real, steady;
        clock_gettime(CLOCK_REALTIME, &real);
        clock_gettime(CLOCK_MONOTONIC, &steady);
        wall = (int64_t)real.tv_sec * 1000000000 + real.tv_nsec;
        mono = (int64_t)steady.tv_sec * 1000000000 + steady.tv_nsec;
    }
    if (wall < 0) return ENC_ERR_CLOCK;
    uint8_t *p = out + *at;
    memcpy(p, lead, lead_len);
    p += lead_len;
    uint64_t digits = decimal_digits(seq);
    decimal_into(seq, p + digits);
    p = put_stamp(p + digits, wall, mono, second);
    *at = (uint64_t)(p - out);
    return 0;
}

/* ``program`` pointed at a batch into ``columns`` (enc_template_rows): 0, or ENC_ERR_SPEC (an unknown part, too
 * many columns). */
static int point_template(const struct enc_column *program, uint32_t ncolumns, const uint8_t *const *sources,
                          const uint8_t *stamp, uint64_t stamp_len, uint64_t first, struct enc_column *columns) {
    if (ncolumns > ENC_TEMPLATE_COLUMNS) return ENC_ERR_SPEC;
    for (uint32_t j = 0; j < ncolumns; j++) {
        struct enc_column *c = &columns[j];
        *c = program[j];
        uint32_t from = c->reserved;
        if (from >= ENC_FROM_DESCS && from <= ENC_FROM_OWNER) {
            c->data = sources[from - ENC_FROM_DESCS] + (uintptr_t)c->data;
        } else if (from == ENC_FROM_STAMP) {
            c->text = stamp;
            c->text_len = stamp_len;
        } else if (from == ENC_FROM_FIRST) {
            c->base = first;
        } else if (from != 0) {
            return ENC_ERR_SPEC;
        }
        c->reserved = 0;
    }
    return 0;
}

int64_t enc_template_rows(const struct enc_column *program, uint32_t ncolumns, const uint8_t *descs,
                          const uint8_t *ring_index, const uint8_t *reason, const uint8_t *bad_byte,
                          const uint8_t *owner, const char *stamp, uint64_t stamp_len, int64_t wall, int64_t mono,
                          uint64_t first, uint64_t rows, uint8_t *out, uint64_t capacity) {
    const uint8_t *sources[ENC_FROM_OWNER] = {descs, ring_index, reason, bad_byte, owner};
    struct enc_column columns[ENC_TEMPLATE_COLUMNS];
    uint8_t formatted[STAMP_MAX];
    const uint8_t *text = (const uint8_t *)stamp;
    if (stamp == NULL) { /* the batch's one reading, formatted here as log.py's ``_stamps`` formats it */
        if (wall < 0) return ENC_ERR_CLOCK;
        struct second_cache second = {-1, {0}};
        stamp_len = (uint64_t)(put_stamp(formatted, wall, mono, &second) - formatted);
        text = formatted;
    }
    int refused = point_template(program, ncolumns, sources, text, stamp_len, first, columns);
    if (refused) return refused;
    int64_t written = enc_rejections(columns, ncolumns, rows, out, capacity);
    if (written == ENC_ERR_SHAPE) written = enc_lines(columns, ncolumns, rows, out, capacity);
    return written;
}

int64_t enc_chain(const uint8_t *tails, uint64_t tails_len, uint64_t n, const uint8_t *lead, uint64_t lead_len,
                  uint64_t first, const int64_t *readings, uint8_t *prev, const struct enc_sha256 *sha, uint8_t *out,
                  uint64_t capacity, uint64_t *ends) {
    uint8_t link[ENC_HASH_HEX];
    struct second_cache second = {-1, {0}};
    struct digest d;
    digest_open(&d, sha);
    if (lead != NULL && lead_len > capacity)
        return ENC_ERR_ROOM;
    /* the most a line adds before its tail (the lead, seq and stamp) */
    uint64_t head = lead == NULL ? 0 : lead_len + ENC_CHAIN_ROW - CHAIN_END;
    memcpy(link, prev, ENC_HASH_HEX);
    const uint8_t *p = tails, *end = tails + tails_len;
    uint64_t at = 0;
    for (uint64_t k = 0; k < n; k++) {
        const uint8_t *newline = memchr(p, '\n', (size_t)(end - p));
        if (newline == NULL)
            return ENC_ERR_SPEC;
        uint64_t tail_len = (uint64_t)(newline - p);
        if (tail_len > capacity - at || head > capacity - at - tail_len || CHAIN_END > capacity - at - tail_len - head)
            return ENC_ERR_ROOM;
        uint64_t start = at;
        if (lead != NULL) {
            int failed = chain_head(lead, lead_len, first + k, readings, k, &second, out, &at);
            if (failed) return failed;
        }
        memcpy(out + at, p, tail_len);
        at += tail_len;
        int failed = chain_close(&d, link, out, start, &at);
        if (failed) return failed;
        if (ends != NULL)
            ends[k] = at;
        p = newline + 1;
    }
    memcpy(prev, link, ENC_HASH_HEX);
    return (int64_t)at;
}

int64_t enc_template_chain(const struct enc_column *program, uint32_t ncolumns, const uint8_t *descs,
                           const uint8_t *ring_index, const uint8_t *reason, const uint8_t *bad_byte,
                           const uint8_t *owner, const uint8_t *lead, uint64_t lead_len, uint64_t first,
                           uint64_t rows, const int64_t *readings, uint8_t *prev, const struct enc_sha256 *sha,
                           uint8_t *out, uint64_t capacity, uint64_t *ends) {
    const uint8_t *sources[ENC_FROM_OWNER] = {descs, ring_index, reason, bad_byte, owner};
    struct enc_column columns[ENC_TEMPLATE_COLUMNS];
    int refused = point_template(program, ncolumns, sources, NULL, 0, 0, columns);
    if (refused) return refused;
    refused = check_specs(columns, ncolumns);
    if (refused) return refused;
    struct rejection_shape s;
    if (!rejection_shape(columns, ncolumns, &s) || s.lead != NULL) return ENC_ERR_SHAPE;
    if (lead_len > TEXT_MAX) return ENC_ERR_ROOM;
    uint64_t row_max = lead_len + ENC_CHAIN_ROW + s.row_max; /* the head, the tail, the chain */
    uint8_t link[ENC_HASH_HEX];
    struct second_cache second = {-1, {0}};
    struct digest d;
    digest_open(&d, sha);
    memcpy(link, prev, ENC_HASH_HEX);
    uint64_t at = 0;
    for (uint64_t row = 0; row < rows; row++) {
        if (row_max > capacity - at) return ENC_ERR_ROOM;
        uint64_t start = at;
        int failed = chain_head(lead, lead_len, first + row, readings, row, &second, out, &at);
        if (failed) return failed;
        uint8_t *p = out + at;
        failed = rejection_row(&s, row, &p);
        if (failed) return failed;
        at = (uint64_t)(p - out);
        failed = chain_close(&d, link, out, start, &at);
        if (failed) return failed;
        ends[row] = at;
    }
    memcpy(prev, link, ENC_HASH_HEX);
    return (int64_t)at;
}

#define CHECKPOINT_KEY "{\"v\":2,\"checkpoint\":"
#define RECORDS_KEY ",\"records\":"
#define PREV_KEY ",\"prev\":\""

int64_t enc_checkpoint(uint8_t *lines, uint64_t used, uint64_t capacity, uint64_t last, uint64_t records,
                       uint8_t *prev, const struct enc_sha256 *sha) {
    if (used > capacity || ENC_CHECKPOINT_MAX > capacity - used) return ENC_ERR_ROOM;
    uint8_t *p = lines + used;
    memcpy(p, CHECKPOINT_KEY, sizeof CHECKPOINT_KEY - 1);
    p += sizeof CHECKPOINT_KEY - 1;
    uint64_t digits = decimal_digits(last);
    decimal_into(last, p + digits);
    p += digits;
    memcpy(p, RECORDS_KEY, sizeof RECORDS_KEY - 1);
    p += sizeof RECORDS_KEY - 1;
    digits = decimal_digits(records);
    decimal_into(records, p + digits);
    p += digits;
    memcpy(p, PREV_KEY, sizeof PREV_KEY - 1);
    p += sizeof PREV_KEY - 1;
    memcpy(p, prev, ENC_HASH_HEX);
    p += ENC_HASH_HEX;
    *p++ = '"';
    /* prev, the batch's lines and the checkpoint up to here, then the ``}`` that closes it without ``hash`` */
    struct digest d;
    digest_open(&d, sha);
    uint8_t hash[ENC_HASH_HEX];
    if (!digest_start(&d) || !digest_update(&d, prev, ENC_HASH_HEX) ||
        !digest_update(&d, lines, (size_t)(p - lines)) || !digest_update(&d, "}", 1) || !digest_hex(&d, hash))
        return ENC_ERR_DIGEST;
    memcpy(p, HASH_KEY + 1, sizeof HASH_KEY - 2);
    p += sizeof HASH_KEY - 2;
    memcpy(p, hash, ENC_HASH_HEX);
    p += ENC_HASH_HEX;
    *p++ = '"';
    *p++ = '}';
    *p++ = '\n';
    memcpy(prev, hash, ENC_HASH_HEX);
    return (int64_t)(p - (lines + used));
}
