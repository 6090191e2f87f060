/* The oracle's columns reader of an audit log's lines: see logcols.h. */
#include <string.h>

#include "logcols.h"

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

#define MAX_DEPTH 4

/* A string of printable ASCII without escapes: its bytes (without the quotes). */
static int read_string(cursor *c, const uint8_t **s, int64_t *n) {
    if (c->p >= c->end || *c->p != '"') return -1;
    const uint8_t *start = ++c->p;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p < 0x20 || *c->p > 0x7e || *c->p == '\\') return -1;
        c->p++;
    }
    if (c->p >= c->end) return -1;
    *s = start;
    *n = c->p - start;
    c->p++;
    return 0;
}

/* A JSON integer in int64's range (no fraction, no exponent: the caller checks what follows). */
static int read_i64(cursor *c, int64_t *v) {
    int negative = 0;
    if (c->p < c->end && *c->p == '-') {
        negative = 1;
        c->p++;
    }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return -1;
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9') return -1; /* a leading zero */
    uint64_t value = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        uint64_t digit = (uint64_t)(*c->p - '0');
        if (value > (UINT64_C(9223372036854775808) - digit) / 10) return -1;
        value = value * 10 + digit;
        c->p++;
    }
    if (!negative && value > (uint64_t)INT64_MAX) return -1;
    *v = negative ? (int64_t)(0 - value) : (int64_t)value;
    return 0;
}

/* A JSON integer in uint64's range (no sign). */
static int read_u64(cursor *c, uint64_t *v) {
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return -1;
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9') return -1;
    uint64_t value = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        uint64_t digit = (uint64_t)(*c->p - '0');
        if (value > (UINT64_MAX - digit) / 10) return -1;
        value = value * 10 + digit;
        c->p++;
    }
    *v = value;
    return 0;
}

static int literal(cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return -1;
    c->p += n;
    return 0;
}

static int skip_value(cursor *c, int depth);

/* ``{"key":value,...}``, each value skipped; ``depth``: objects above this one. */
static int skip_object(cursor *c, int depth) {
    if (depth >= MAX_DEPTH || c->p >= c->end || *c->p != '{') return -1;
    c->p++;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        const uint8_t *k;
        int64_t kn;
        if (read_string(c, &k, &kn) || c->p >= c->end || *c->p++ != ':') return -1;
        if (skip_value(c, depth + 1)) return -1;
        if (c->p >= c->end) return -1;
        if (*c->p == '}') {
            c->p++;
            return 0;
        }
        if (*c->p++ != ',') return -1;
    }
}

static int skip_value(cursor *c, int depth) {
    if (c->p >= c->end) return -1;
    switch (*c->p) {
    case '"': {
        const uint8_t *s;
        int64_t n;
        return read_string(c, &s, &n);
    }
    case '{':
        return skip_object(c, depth);
    case 'n':
        return literal(c, "null");
    case 't':
        return literal(c, "true");
    case 'f':
        return literal(c, "false");
    default: {
        int64_t v;
        return read_i64(c, &v);
    }
    }
}

/* Whether key ``k`` (``n`` bytes) is the literal ``name`` (its length known when compiled). */
#define is_key(k, n, name) ((n) == (int64_t)sizeof(name) - 1 && memcmp((k), (name), sizeof(name) - 1) == 0)

typedef struct {
    const uint8_t *chunk;
    int64_t *strings;
    int64_t count;
} table;

/* The id of string ``s`` (``n`` bytes) in the chunk's table, added on first use; -1 when the table is full. */
static int32_t intern(table *t, const uint8_t *s, int64_t n) {
    for (int64_t i = 0; i < t->count; i++) {
        if (t->strings[2 * i + 1] == n && memcmp(t->chunk + t->strings[2 * i], s, (size_t)n) == 0) return (int32_t)i;
    }
    if (t->count >= LOGCOLS_MAX_STRINGS) return -1;
    t->strings[2 * t->count] = s - t->chunk;
    t->strings[2 * t->count + 1] = n;
    return (int32_t)t->count++;
}

/* Object fields: ``{"key":value,...}`` with a callback per key. */
#define OBJECT_BEGIN(c)                                                                                                \
    if ((c)->p >= (c)->end || *(c)->p != '{') return -1;                                                               \
    (c)->p++;                                                                                                          \
    if ((c)->p < (c)->end && *(c)->p == '}') {                                                                         \
        (c)->p++;                                                                                                      \
    } else                                                                                                             \
        for (;;)

#define OBJECT_NEXT(c)                                                                                                 \
    if ((c)->p >= (c)->end) return -1;                                                                                 \
    if (*(c)->p == '}') {                                                                                              \
        (c)->p++;                                                                                                      \
        break;                                                                                                         \
    }                                                                                                                  \
    if (*(c)->p++ != ',') return -1;

enum { D_ADDR = 1, D_LENGTH = 2, D_CMD = 4, D_CSO = 8, D_CSS = 16 };

static int read_desc(cursor *c, uint64_t *addr, int64_t *length, int64_t *cmd, int64_t *cso, int64_t *css) {
    unsigned seen = 0;
    *length = *cmd = *cso = *css = 0;
    OBJECT_BEGIN(c) {
        const uint8_t *k;
        int64_t kn;
        if (read_string(c, &k, &kn) || c->p >= c->end || *c->p++ != ':') return -1;
        unsigned bit = is_key(k, kn, "addr")     ? D_ADDR
                       : is_key(k, kn, "length") ? D_LENGTH
                       : is_key(k, kn, "cmd")    ? D_CMD
                       : is_key(k, kn, "cso")    ? D_CSO
                       : is_key(k, kn, "css")    ? D_CSS
                                                 : 0;
        if (bit & seen) return -1;
        seen |= bit;
        int bad = bit == D_ADDR     ? read_u64(c, addr)
                  : bit == D_LENGTH ? read_i64(c, length)
                  : bit == D_CMD    ? read_i64(c, cmd)
                  : bit == D_CSO    ? read_i64(c, cso)
                  : bit == D_CSS    ? read_i64(c, css)
                                    : skip_value(c, 2);
        if (bad) return -1;
        OBJECT_NEXT(c)
    }
    return (seen & D_ADDR) ? 0 : -1;
}

static int hex_digit(uint8_t ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

enum { T_BAD = 1, T_OWNER = 2, T_CHECKED = 4 };

static int read_detail(cursor *c, table *t, uint64_t *bad, int64_t *checked, int32_t *owner) {
    unsigned seen = 0;
    *bad = UINT64_MAX;
    *checked = -1;
    *owner = -2; /* "": set by the caller */
    if (c->p < c->end && *c->p == 'n') return literal(c, "null");
    OBJECT_BEGIN(c) {
        const uint8_t *k;
        int64_t kn;
        if (read_string(c, &k, &kn) || c->p >= c->end || *c->p++ != ':') return -1;
        if (is_key(k, kn, "format")) return -1; /* (a virtqueue's record, or another format: the reference says) */
        unsigned bit = is_key(k, kn, "first_bad_byte") ? T_BAD
                       : is_key(k, kn, "owner")        ? T_OWNER
                       : is_key(k, kn, "checked_bytes") ? T_CHECKED
                                                        : 0;
        if (bit & seen) return -1;
        seen |= bit;
        if (bit == T_BAD) {
            const uint8_t *s;
            int64_t n;
            if (read_string(c, &s, &n) || n < 3 || n > 18 || s[0] != '0' || s[1] != 'x') return -1;
            uint64_t value = 0;
            for (int64_t i = 2; i < n; i++) {
                int d = hex_digit(s[i]);
                if (d < 0) return -1;
                value = value << 4 | (uint64_t)d;
            }
            *bad = value;
        } else if (bit == T_OWNER) {
            const uint8_t *s;
            int64_t n;
            if (read_string(c, &s, &n)) return -1;
            *owner = intern(t, s, n);
            if (*owner < 0) return -1;
        } else if (bit == T_CHECKED) {
            if (read_i64(c, checked)) return -1;
        } else if (skip_value(c, 2)) {
            return -1;
        }
        OBJECT_NEXT(c)
    }
    return 0;
}

enum {
    K_SEQ = 1,
    K_NIC = 2,
    K_KIND = 4,
    K_QUEUE = 8,
    K_SLOT = 16,
    K_HEX = 32,
    K_DESC = 64,
    K_REASON = 128,
    K_DETAIL = 256,
    K_CHECKPOINT = 512,
    K_RECORD = K_SEQ | K_NIC | K_KIND | K_QUEUE | K_SLOT | K_HEX | K_DESC | K_REASON,
};

int64_t logcols_read(const uint8_t *chunk, int64_t size, int64_t capacity, int64_t *seq, int64_t *queue,
                     int64_t *slot, uint64_t *addr, int64_t *length, int64_t *cmd, int64_t *cso, int64_t *css,
                     int64_t *checked, uint64_t *bad, int64_t *line, int32_t *nic, int32_t *kind, int32_t *reason,
                     int32_t *owner, int64_t *strings, int64_t *n_strings) {
    table t = {chunk, strings, 0};
    int32_t empty = -1;
    int64_t n = 0;
    const uint8_t *p = chunk, *stop = chunk + size;
    while (p < stop) {
        const uint8_t *eol = memchr(p, '\n', (size_t)(stop - p));
        if (eol == NULL) return LOGCOLS_UNSURE;
        if (n >= capacity) return LOGCOLS_UNSURE;
        const uint8_t *start = p;
        cursor c = {p, eol};
        cursor *cp = &c;
        unsigned seen = 0;
        int64_t i = n;
        owner[i] = -2;
        bad[i] = UINT64_MAX;
        checked[i] = -1;
        OBJECT_BEGIN(cp) {
            const uint8_t *k, *s;
            int64_t kn, sn;
            if (read_string(cp, &k, &kn) || cp->p >= cp->end || *cp->p++ != ':') return LOGCOLS_UNSURE;
            unsigned bit = is_key(k, kn, "seq")          ? K_SEQ
                           : is_key(k, kn, "nic")        ? K_NIC
                           : is_key(k, kn, "kind")       ? K_KIND
                           : is_key(k, kn, "queue")      ? K_QUEUE
                           : is_key(k, kn, "ring_index") ? K_SLOT
                           : is_key(k, kn, "desc_hex")   ? K_HEX
                           : is_key(k, kn, "desc")       ? K_DESC
                           : is_key(k, kn, "reason")     ? K_REASON
                           : is_key(k, kn, "detail")     ? K_DETAIL
                           : is_key(k, kn, "checkpoint") ? K_CHECKPOINT
                                                         : 0;
            if (bit & seen) return LOGCOLS_UNSURE;
            seen |= bit;
            int fail;
            switch (bit) {
            case K_SEQ:
                fail = read_i64(cp, &seq[i]);
                break;
            case K_QUEUE:
                fail = read_i64(cp, &queue[i]);
                break;
            case K_SLOT:
                fail = read_i64(cp, &slot[i]);
                break;
            case K_NIC:
            case K_KIND:
            case K_REASON: {
                fail = read_string(cp, &s, &sn);
                if (fail) break;
                int32_t id = intern(&t, s, sn);
                if (id < 0) return LOGCOLS_UNSURE;
                (bit == K_NIC ? nic : bit == K_KIND ? kind : reason)[i] = id;
                break;
            }
            case K_HEX:
                fail = read_string(cp, &s, &sn);
                break;
            case K_DESC:
                fail = read_desc(cp, &addr[i], &length[i], &cmd[i], &cso[i], &css[i]);
                break;
            case K_DETAIL:
                fail = read_detail(cp, &t, &bad[i], &checked[i], &owner[i]);
                break;
            default: /* checkpoint's value, or a key the oracle does not read */
                fail = skip_value(cp, 1);
            }
            if (fail) return LOGCOLS_UNSURE;
            OBJECT_NEXT(cp)
        }
        if (cp->p != eol) return LOGCOLS_UNSURE; /* one value a line */
        p = eol + 1;
        if (seen & K_CHECKPOINT) continue;
        if ((seen & K_RECORD) != K_RECORD) return LOGCOLS_UNSURE;
        if (owner[i] == -2) {
            if (empty < 0) {
                empty = intern(&t, chunk, 0);
                if (empty < 0) return LOGCOLS_UNSURE;
            }
            owner[i] = empty;
        }
        line[i] = start - chunk;
        n++;
    }
    *n_strings = t.count;
    return n;
}

int64_t logcols_runs(int64_t n, int64_t limit, const int64_t *seq, const int64_t *queue, const int64_t *cmd,
                     const int32_t *nic, const int32_t *kind, const int32_t *reason, int64_t tx, int64_t *starts,
                     uint8_t *code, int32_t *names, int64_t *n_names) {
    int16_t local[LOGCOLS_MAX_STRINGS];
    int64_t runs = 0, run_start = 0;
    for (int64_t i = 0; i < n; i++) {
        if (kind[i] != kind[0]) return LOGCOLS_UNSURE;
        if (tx && (cmd[i] < 0 || cmd[i] > 0xFF)) return LOGCOLS_UNSURE;
        int cut = i == 0;
        if (!cut) {
            int64_t held = i - run_start;
            cut = seq[i - 1] == INT64_MAX || seq[i] != seq[i - 1] + 1 || nic[i] != nic[i - 1] || queue[i] != queue[i - 1] ||
                  (held >= limit && ((cmd[i - 1] & LOGCOLS_EOP) || !tx || held >= 2 * limit));
        }
        if (cut) {
            starts[runs] = i;
            n_names[runs] = 0;
            run_start = i;
            runs++;
            for (int j = 0; j < LOGCOLS_MAX_STRINGS; j++) local[j] = -1;
        }
        int32_t id = reason[i];
        if (local[id] < 0) {
            int64_t r = runs - 1;
            local[id] = (int16_t)n_names[r];
            names[r * LOGCOLS_MAX_STRINGS + n_names[r]] = id;
            n_names[r]++;
        }
        code[i] = (uint8_t)local[id];
    }
    return runs;
}
