/* `audit verify`'s compiled line check (declared and explained in check.h).
 *
 * Every function here takes a cursor ``*pp`` and the end of the buffer, never reads at or past the end, and
 * returns 1 with the cursor past what it accepted, or 0 (not sure) with the cursor anywhere.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"

typedef const uint8_t *cur;

/* What a field's value may be (one per key of FIELDS, in order). */
enum value {
    VAL_VERSION,       /* the schema's number */
    VAL_SEQ,           /* the expected seq (0 .. SEQ_MAX) */
    VAL_WALL,          /* "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" */
    VAL_U64,           /* 0 .. 2**64 - 1 */
    VAL_TENANT,        /* -1 .. 2**32 - 1 */
    VAL_STR,           /* a string */
    VAL_STR_OR_NULL,   /* a string or null */
    VAL_U32_OR_NULL,   /* 0 .. 2**32 - 1, or null */
    VAL_KIND,          /* one of KINDS */
    VAL_DESC_HEX,      /* CHK_DESC_HEX lower-case hex digits, or null */
    VAL_DICT_OR_NULL,  /* an object of scalars, or null */
    VAL_REASON,        /* [A-Z][A-Z0-9_]*, at most CHK_MAX_REASON */
    VAL_DICT,          /* an object of scalars */
    VAL_HASH,          /* CHK_HASH_HEX lower-case hex digits */
};

/* The keys of a record in the order the writer writes them (verifier/audit/log.py: FIELDS; FIELDS_V2 is the
 * first V2_FIELDS of them), as written, and what each one's value may be. */
#define KEY(text) text, sizeof(text) - 1
static const struct {
    const char *key; /* as written before the value: ``{"v":`` for the first, ``,"name":`` for the others */
    size_t length;
    enum value value;
} FIELDS[] = {
    {KEY("{\"v\":"), VAL_VERSION},
    {KEY(",\"seq\":"), VAL_SEQ},
    {KEY(",\"wall\":"), VAL_WALL},
    {KEY(",\"mono_ns\":"), VAL_U64},
    {KEY(",\"tenant\":"), VAL_TENANT},
    {KEY(",\"tenant_name\":"), VAL_STR},
    {KEY(",\"nic\":"), VAL_STR_OR_NULL},
    {KEY(",\"queue\":"), VAL_U32_OR_NULL},
    {KEY(",\"kind\":"), VAL_KIND},
    {KEY(",\"ring_index\":"), VAL_U32_OR_NULL},
    {KEY(",\"desc_hex\":"), VAL_DESC_HEX},
    {KEY(",\"desc\":"), VAL_DICT_OR_NULL},
    {KEY(",\"reason\":"), VAL_REASON},
    {KEY(",\"detail\":"), VAL_DICT},
    {KEY(",\"protection\":"), VAL_STR},
    {KEY(",\"prev\":"), VAL_HASH},
    {KEY(",\"hash\":"), VAL_HASH},
};
#define V1_FIELDS (sizeof FIELDS / sizeof FIELDS[0])
#define V2_FIELDS (V1_FIELDS - 2)

/* verifier/audit/log.py: KINDS. */
static const char *const KINDS[] = {"tx", "rx", "register", "iommu", "pin"};
#define NKINDS (sizeof KINDS / sizeof KINDS[0])

/* verifier/audit/read.py: RANGES. */
#define SEQ_MAX INT64_MAX
#define U32_MAX UINT32_MAX
/* Integers inside ``desc`` and ``detail`` (a descriptor's 64-bit address): the reference takes any size, this
 * check -2**63 .. 2**64 - 1 (what a 64-bit integer of either sign holds, as msgspec decodes them). */
#define SCALAR_NEGATIVE_MAX ((uint64_t)INT64_MAX + 1)

/* The form of a ``wall``: 'd' a digit, anything else itself. */
static const char WALL_FORM[CHK_WALL + 1] = "dddd-dd-ddTdd:dd:dd.dddddddddZ";

/* A byte a string holds as itself (json.dumps(ensure_ascii=True)): printable ASCII but ``"`` and ``\``. */
static inline int plain(uint8_t c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Bytes of ``w`` (each below 0x80) that are ``n`` or above (1 <= ``n`` <= 0x80): their high bit set.  Exact per
 * byte: no byte's sum reaches 0x100, so no carry crosses into the next. */
#define AT_LEAST(w, n) (((w) + ONES * (0x80 - (n))) & HIGHS)

/* Bytes of ``w`` (each below 0x80) equal to ``c`` (below 0x80): their high bit set (exact per byte as above: a
 * byte of ``x`` is not zero iff ``x + 0x7f`` or ``x`` reaches 0x80). */
static inline uint64_t equal_bytes(uint64_t w, uint8_t c) {
    uint64_t x = w ^ (ONES * c);
    return ~((x + ONES * 0x7f) | x) & HIGHS;
}

/* The bytes of ``w`` that are not ``plain`` -- below 0x20, 0x7f or above, ``"`` or ``\`` -- their high bit set. */
static inline uint64_t special_bytes(uint64_t w) {
    uint64_t low = w & ~HIGHS;
    return (w & HIGHS) | (~AT_LEAST(low, 0x20) & HIGHS) | equal_bytes(low, '"') | equal_bytes(low, '\\') |
           equal_bytes(low, 0x7f);
}

#ifdef __SSE2__
#include <emmintrin.h>

/* ``special_bytes`` for sixteen bytes at once (SSE2, which every x86-64 has): one bit per byte, in memory order.
 * A signed compare with 0x20 catches the bytes below 0x20 and those from 0x80 on (negative as signed). */
static inline unsigned special_bytes16(const uint8_t *p) {
    __m128i w = _mm_loadu_si128((const __m128i *)p);
    __m128i marks = _mm_or_si128(
        _mm_or_si128(_mm_cmplt_epi8(w, _mm_set1_epi8(0x20)), _mm_cmpeq_epi8(w, _mm_set1_epi8(0x7f))),
        _mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8('"')), _mm_cmpeq_epi8(w, _mm_set1_epi8('\\'))));
    return (unsigned)_mm_movemask_epi8(marks);
}
#endif

/* How many bytes of a word come before its first byte marked in ``marks`` (not zero), in memory order. */
static inline unsigned first_marked(uint64_t marks) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (unsigned)__builtin_clzll(marks) / 8;
#else
    return (unsigned)__builtin_ctzll(marks) / 8;
#endif
}

/* The value of a lower-case hex digit, or -1. */
static inline int hex_digit(uint8_t c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Inlined, so that each call's ``length`` is a constant and memcmp a few compares. */
static inline __attribute__((always_inline)) int literal(cur *pp, cur end, const char *text, size_t length) {
    if ((size_t)(end - *pp) < length || memcmp(*pp, text, length) != 0)
        return 0;
    *pp += length;
    return 1;
}

static inline uint64_t load8(const void *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint32_t load4(const void *p) {
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* ``literal`` for a key (4 to 16 bytes, ``text`` as long): two overlapping loads instead of a call to memcmp. */
static inline int key(cur *pp, cur end, const char *text, size_t length) {
    cur p = *pp;
    if ((size_t)(end - p) < length)
        return 0;
    int same = length >= 8 ? load8(p) == load8(text) && load8(p + length - 8) == load8(text + length - 8)
                           : load4(p) == load4(text) && load4(p + length - 4) == load4(text + length - 4);
    *pp += same ? length : 0;
    return same;
}

#define LITERAL(pp, end, text) literal((pp), (end), (text), sizeof(text) - 1)

/* A string's body and closing quote (the opening quote already read), in json.dumps(ensure_ascii=True)'s form:
 * printable ASCII as itself, ``\"`` ``\\`` ``\b`` ``\f`` ``\n`` ``\r`` ``\t``, every other character below 0x20
 * and from 0x7f on as ``\u`` and four lower-case hex digits.  Surrogates (``\ud800``..``\udfff``, which
 * json.dumps writes for characters past 0xffff and for lone surrogates): not sure. */
static inline __attribute__((always_inline)) int string_body(cur *pp, cur end) { /* inlined: a tenth fewer steps */
    cur p = *pp;
    for (;;) {
#ifdef __SSE2__
        while (end - p >= 16) {
            unsigned marks = special_bytes16(p);
            if (marks != 0) {
                p += __builtin_ctz(marks);
                goto special;
            }
            p += 16;
        }
#endif
        while (end - p >= 8) {
            uint64_t marks = special_bytes(load8(p));
            if (marks != 0) {
                p += first_marked(marks);
                goto special;
            }
            p += 8;
        }
        while (p < end && plain(*p))
            p++;
        if (p >= end)
            return 0;
    special:
        if (*p == '"') {
            *pp = p + 1;
            return 1;
        }
        if (*p != '\\' || end - p < 2)
            return 0; /* a control byte, DEL or a byte past ASCII as itself */
        switch (p[1]) {
        case '"':
        case '\\':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            continue;
        case 'u': {
            if (end - p < 6)
                return 0;
            unsigned v = 0;
            for (int i = 2; i < 6; i++) {
                int digit = hex_digit(p[i]);
                if (digit < 0)
                    return 0;
                v = v << 4 | (unsigned)digit;
            }
            if (v >= 0x20 && v < 0x7f)
                return 0; /* written as itself */
            if (v == '\b' || v == '\f' || v == '\n' || v == '\r' || v == '\t')
                return 0; /* written with its short escape */
            if (v >= 0xd800 && v <= 0xdfff)
                return 0; /* a surrogate: not sure */
            p += 6;
            continue;
        }
        default:
            return 0; /* ``\/`` or no escape at all */
        }
    }
}

static int string(cur *pp, cur end) {
    return LITERAL(pp, end, "\"") && string_body(pp, end);
}

/* An integer as Python writes it: ``0``, or ``-`` then digits without a leading zero (``-0`` is not), its
 * magnitude within 64 bits.  A fraction or an exponent after it is left for the caller's next literal to
 * refuse. */
static inline __attribute__((always_inline)) int integer(cur *pp, cur end, int *negative, uint64_t *magnitude) {
    cur p = *pp;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return 0;
    uint64_t v = 0;
    if (*p == '0') {
        if (neg)
            return 0;
        p++;
    } else {
        cur digits = p;
        while (p < end && *p >= '0' && *p <= '9')
            v = v * 10 + (uint64_t)(*p++ - '0'); /* wraps past 20 digits: refused below */
        /* 20 digits overflow 64 bits from "18446744073709551616" on; more always do */
        if (p - digits > 20 || (p - digits == 20 && memcmp(digits, "18446744073709551615", 20) > 0))
            return 0;
    }
    *negative = neg;
    *magnitude = v;
    *pp = p;
    return 1;
}

static inline int unsigned_up_to(cur *pp, cur end, uint64_t high, uint64_t *value) {
    int neg;
    return integer(pp, end, &neg, value) && !neg && *value <= high;
}

/* Whether all eight bytes of ``w`` are lower-case hex digits: '0'..'9' or 'a'..'f'. */
static inline int word_is_hex(uint64_t w) {
    if (w & HIGHS)
        return 0;
    uint64_t digit = AT_LEAST(w, '0') & ~AT_LEAST(w, '9' + 1), letter = AT_LEAST(w, 'a') & ~AT_LEAST(w, 'f' + 1);
    return (digit | letter) == HIGHS;
}

/* ``digits`` (a multiple of 8) lower-case hex digits between quotes. */
static int hex_string(cur *pp, cur end, size_t digits) {
    cur p = *pp;
    if ((size_t)(end - p) < digits + 2 || p[0] != '"' || p[digits + 1] != '"')
        return 0;
    for (size_t i = 1; i <= digits; i += 8)
        if (!word_is_hex(load8(p + i)))
            return 0;
    *pp = p + digits + 2;
    return 1;
}

/* A scalar of ``desc`` or ``detail``: a string, an integer of 64 bits, true, false or null. */
static int scalar(cur *pp, cur end) {
    if (*pp >= end)
        return 0;
    switch (**pp) {
    case '"':
        ++*pp;
        return string_body(pp, end);
    case 't':
        return LITERAL(pp, end, "true");
    case 'f':
        return LITERAL(pp, end, "false");
    case 'n':
        return LITERAL(pp, end, "null");
    default: {
        int neg;
        uint64_t magnitude;
        return integer(pp, end, &neg, &magnitude) && (!neg || magnitude <= SCALAR_NEGATIVE_MAX);
    }
    }
}

/* The first ``n`` (1 to 7) bytes of a word loaded from memory, the others zero. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HEAD_MASK(n) (~0ULL << (64 - 8 * (n)))
#else
#define HEAD_MASK(n) ((1ULL << (8 * (n))) - 1)
#endif

/* An object of scalars with distinct keys (json.loads keeps the last of a repeated key, and its encoding then
 * differs from the line: the reference refuses it).  Keys are compared as written: every key accepted here is
 * in canonical form, so equal keys are equal bytes. */
static int dict(cur *pp, cur end) {
    cur keys[CHK_MAX_KEYS];
    size_t lengths[CHK_MAX_KEYS];
    uint64_t heads[CHK_MAX_KEYS]; /* each key's first (up to) eight bytes: most keys differ there */
    size_t nkeys = 0;
    uint64_t seen = 0;
    if (!LITERAL(pp, end, "{"))
        return 0;
    if (LITERAL(pp, end, "}"))
        return 1;
    for (;;) {
        if (nkeys == CHK_MAX_KEYS || !LITERAL(pp, end, "\""))
            return 0;
        cur name = *pp;
        if (!string_body(pp, end))
            return 0;
        size_t length = (size_t)(*pp - name); /* the key and its closing quote: more bytes follow (``:``) */
        uint64_t head = end - name >= 8 ? load8(name) & (length >= 8 ? ~0ULL : HEAD_MASK(length)) : 0;
        /* a 64-bit filter of the keys seen, by their first word: only a key whose bit is set can repeat one */
        uint64_t bit = 1ULL << ((head * 0x9E3779B97F4A7C15ULL) >> 58);
        if (seen & bit) {
            for (size_t k = 0; k < nkeys; k++)
                if (heads[k] == head && lengths[k] == length && memcmp(keys[k], name, length) == 0)
                    return 0;
        }
        seen |= bit;
        keys[nkeys] = name;
        heads[nkeys] = head;
        lengths[nkeys++] = length;
        if (!LITERAL(pp, end, ":") || !scalar(pp, end))
            return 0;
        if (LITERAL(pp, end, "}"))
            return 1;
        if (!LITERAL(pp, end, ","))
            return 0;
    }
}

static int kind(cur *pp, cur end) {
    if (!LITERAL(pp, end, "\""))
        return 0;
    for (size_t k = 0; k < NKINDS; k++) {
        size_t length = strlen(KINDS[k]);
        if ((size_t)(end - *pp) > length && memcmp(*pp, KINDS[k], length) == 0 && (*pp)[length] == '"') {
            *pp += length + 1;
            return 1;
        }
    }
    return 0;
}

static int reason(cur *pp, cur end) {
    cur p = *pp;
    if (end - p < 3 || p[0] != '"' || p[1] < 'A' || p[1] > 'Z')
        return 0;
    cur q = p + 2;
    while (q < end && ((*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '_'))
        q++;
    if (q >= end || *q != '"' || q - (p + 1) > CHK_MAX_REASON)
        return 0;
    *pp = q + 1;
    return 1;
}

static int wall(cur *pp, cur end) {
    cur p = *pp;
    if (end - p < CHK_WALL + 2 || p[0] != '"' || p[CHK_WALL + 1] != '"')
        return 0;
    for (int i = 0; i < CHK_WALL; i++) {
        uint8_t c = p[i + 1];
        if (WALL_FORM[i] == 'd' ? c < '0' || c > '9' : c != (uint8_t)WALL_FORM[i])
            return 0;
    }
    *pp = p + CHK_WALL + 2;
    return 1;
}

int64_t chk_lines(const char *raw, uint64_t len, uint64_t n, uint64_t expected, uint32_t schema, uint64_t *walls,
                  uint64_t capacity) {
    if ((schema != 1 && schema != 2) || n == 0 || expected > (uint64_t)SEQ_MAX ||
        n - 1 > (uint64_t)SEQ_MAX - expected)
        return CHK_UNSURE;
    size_t nfields = schema == 1 ? V1_FIELDS : V2_FIELDS;
    const uint8_t version = (uint8_t)('0' + schema);
    cur start = (cur)raw, p = start, end = start + len;
    cur second = NULL;    /* the last ``wall`` handed back: the second of the line before */
    cur last_wall = NULL; /* the ``wall`` of the line before, quotes included */
    uint64_t nwalls = 0;
    for (uint64_t line = 0; line < n; line++) {
        for (size_t f = 0; f < nfields; f++) {
            if (!key(&p, end, FIELDS[f].key, FIELDS[f].length))
                return CHK_UNSURE;
            int ok, neg;
            uint64_t value;
            switch (FIELDS[f].value) {
            case VAL_VERSION:
                ok = p < end && *p == version;
                p += ok;
                break;
            case VAL_SEQ:
                ok = unsigned_up_to(&p, end, (uint64_t)SEQ_MAX, &value) && value == expected + line;
                break;
            case VAL_WALL:
                if (last_wall != NULL && end - p >= CHK_WALL + 2 && memcmp(p, last_wall, CHK_WALL + 2) == 0) {
                    p += CHK_WALL + 2; /* the line before's ``wall`` again (a v2 batch's one wall): checked */
                    ok = 1;
                    break;
                }
                last_wall = p;
                ok = wall(&p, end);
                if (ok && (second == NULL || memcmp(second, p - CHK_WALL - 1, CHK_SECOND) != 0)) {
                    if (nwalls == capacity)
                        return CHK_UNSURE;
                    second = p - CHK_WALL - 1;
                    walls[nwalls++] = (uint64_t)(second - start);
                }
                break;
            case VAL_U64:
                ok = unsigned_up_to(&p, end, UINT64_MAX, &value);
                break;
            case VAL_TENANT:
                ok = integer(&p, end, &neg, &value) && (neg ? value == 1 : value <= U32_MAX);
                break;
            case VAL_STR:
                ok = string(&p, end);
                break;
            case VAL_STR_OR_NULL:
                ok = LITERAL(&p, end, "null") || string(&p, end);
                break;
            case VAL_U32_OR_NULL:
                ok = LITERAL(&p, end, "null") || unsigned_up_to(&p, end, U32_MAX, &value);
                break;
            case VAL_KIND:
                ok = kind(&p, end);
                break;
            case VAL_DESC_HEX:
                ok = LITERAL(&p, end, "null") || hex_string(&p, end, CHK_DESC_HEX);
                break;
            case VAL_DICT_OR_NULL:
                ok = LITERAL(&p, end, "null") || dict(&p, end);
                break;
            case VAL_REASON:
                ok = reason(&p, end);
                break;
            case VAL_DICT:
                ok = dict(&p, end);
                break;
            case VAL_HASH:
                ok = hex_string(&p, end, CHK_HASH_HEX);
                break;
            default:
                ok = 0;
            }
            if (!ok)
                return CHK_UNSURE;
        }
        if (!LITERAL(&p, end, "}\n"))
            return CHK_UNSURE;
    }
    return p == end ? (int64_t)nwalls : CHK_UNSURE;
}

/* The end of a v1 line: ``,"prev":"<64>","hash":"<64>"}`` before its newline, and where in it each part starts. */
#define PREV_KEY ",\"prev\":\""
#define HASH_KEY "\",\"hash\":\""
#define PREV_TAIL (sizeof PREV_KEY - 1 + CHK_HASH_HEX + sizeof HASH_KEY - 1 + CHK_HASH_HEX + 2)
#define HASH_TAIL (sizeof HASH_KEY - 2 + CHK_HASH_HEX + 2) /* ``,"hash":"<64>"}``: what the digest leaves out */

int64_t chk_chain(const char *raw, uint64_t len, uint64_t n, const char *prev, const struct chk_sha256 *sha) {
    static const char HEX[] = "0123456789abcdef";
    char link[CHK_HASH_HEX];
    unsigned char digest[32];
    /* libcrypto's SHA256_CTX, when its SHA256_* functions were given (else EVP with ``sha->ctx``) */
    _Alignas(16) unsigned char context[CHK_SHA256_CTX_BYTES];
    int direct = sha->sha256_init != NULL && sha->sha256_update != NULL && sha->sha256_final != NULL;
    memcpy(link, prev, CHK_HASH_HEX);
    const char *p = raw, *end = raw + len;
    for (uint64_t line = 0; line < n; line++) {
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        if (newline == NULL || (size_t)(newline - p) <= PREV_TAIL)
            return (int64_t)line;
        const char *tail = newline - PREV_TAIL; /* ``,"prev":"`` */
        const char *cut = newline - HASH_TAIL;  /* ``,"hash":"`` */
        if (memcmp(tail, PREV_KEY, sizeof PREV_KEY - 1) != 0 || memcmp(cut - 1, HASH_KEY, sizeof HASH_KEY - 1) != 0 ||
            newline[-2] != '"' || newline[-1] != '}' || memcmp(tail + sizeof PREV_KEY - 1, link, CHK_HASH_HEX) != 0)
            return (int64_t)line;
        if (direct) {
            if (!sha->sha256_init(context) || !sha->sha256_update(context, link, CHK_HASH_HEX) ||
                !sha->sha256_update(context, p, (size_t)(cut - p)) || !sha->sha256_update(context, "}", 1) ||
                !sha->sha256_final(digest, context))
                return (int64_t)line;
        } else {
            unsigned int size = 0;
            if (!sha->init(sha->ctx, sha->md, NULL) || !sha->update(sha->ctx, link, CHK_HASH_HEX) ||
                !sha->update(sha->ctx, p, (size_t)(cut - p)) || !sha->update(sha->ctx, "}", 1) ||
                !sha->final(sha->ctx, digest, &size) || size != sizeof digest)
                return (int64_t)line;
        }
        for (size_t i = 0; i < sizeof digest; i++) {
            link[2 * i] = HEX[digest[i] >> 4];
            link[2 * i + 1] = HEX[digest[i] & 15];
        }
        if (memcmp(cut + sizeof HASH_KEY - 2, link, CHK_HASH_HEX) != 0)
            return (int64_t)line;
        p = newline + 1;
    }
    return p == end ? (int64_t)n : (int64_t)n - 1;
}

int64_t chk_find_line(const char *data, uint64_t len, uint64_t start, const char *prefix, uint64_t prefix_len,
                      uint64_t *lines) {
    uint64_t count = 0;
    *lines = 0;
    if (start > len)
        return -1;
    const char *p = data + start, *end = data + len;
    for (;;) {
        if ((uint64_t)(end - p) >= prefix_len && memcmp(p, prefix, prefix_len) == 0) {
            *lines = count;
            return p - data;
        }
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        if (newline == NULL) {
            *lines = count;
            return -1;
        }
        count++;
        p = newline + 1;
    }
}

int64_t chk_line_end(const char *data, uint64_t len, uint64_t start, uint64_t n, uint64_t *found) {
    *found = 0;
    if (start > len)
        return -1;
    const char *p = data + start, *end = data + len;
    for (uint64_t i = 0; i < n; i++) {
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        if (newline == NULL)
            return -1;
        p = newline + 1;
        ++*found;
    }
    return p - data;
}

const char *chk_fields(uint32_t schema) {
    static char text[512];
    size_t used = 0, nfields = schema == 1 ? V1_FIELDS : V2_FIELDS;
    text[0] = '\0';
    for (size_t f = 0; f < nfields; f++) /* the name between ``{"``/``,"`` and ``":`` */
        used += (size_t)snprintf(text + used, sizeof text - used, "%s%.*s", f ? "," : "",
                                 (int)FIELDS[f].length - 4, FIELDS[f].key + 2);
    return text;
}

const char *chk_kinds(void) {
    static char text[64];
    size_t used = 0;
    text[0] = '\0';
    for (size_t k = 0; k < NKINDS; k++)
        used += (size_t)snprintf(text + used, sizeof text - used, "%s%s", k ? "," : "", KINDS[k]);
    return text;
}

const char *chk_ranges(void) {
    static char text[256];
    snprintf(text, sizeof text, "seq:0:%lld,mono_ns:0:%llu,tenant:-1:%llu,queue:0:%llu,ring_index:0:%llu",
             (long long)SEQ_MAX, (unsigned long long)UINT64_MAX, (unsigned long long)U32_MAX,
             (unsigned long long)U32_MAX, (unsigned long long)U32_MAX);
    return text;
}

const char *chk_reason_pattern(void) {
    return "^[A-Z][A-Z0-9_]*$";
}
