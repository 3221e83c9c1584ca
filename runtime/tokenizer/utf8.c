/* utf8.c — strict UTF-8 decoding and the GPT-2 byte alphabet (see utf8.h). */
#include "tokenizer/utf8.h"

size_t qn_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const uint8_t *u = (const uint8_t *)s;
    if (n == 0) return 0;
    const size_t len = qn_utf8_seq_len(u[0]);
    if (len == 0 || len > n) return 0;
    if (len == 1) {
        *cp = u[0];
        return 1;
    }
    uint32_t c = u[0] & (0xFF >> (len + 1));
    for (size_t k = 1; k < len; k++) {
        if (!qn_utf8_cont_ok(u[0], k, u[k])) return 0;
        c = (c << 6) | (u[k] & 0x3F);
    }
    *cp = c;
    return len;
}

size_t qn_utf8_bad_len(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    const size_t len = qn_utf8_seq_len(u[0]);
    if (len <= 1) return 1;
    size_t k = 1;
    while (k < len && k < n && qn_utf8_cont_ok(u[0], k, u[k])) k++;
    return k;
}

size_t qn_utf8_encode(uint32_t cp, char *buf) {
    uint8_t *b = (uint8_t *)buf;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (uint8_t)(0xC0 | (cp >> 6));
        b[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12));
        b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (uint8_t)(0xF0 | (cp >> 18));
    b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

bool qn_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((uint8_t)s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        const size_t k = qn_utf8_decode(s + i, n - i, &cp);
        if (k == 0) return false;
        i += k;
    }
    return true;
}

static bool gpt2_printable(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

uint32_t qn_gpt2_byte_to_cp(uint8_t b) {
    if (gpt2_printable(b)) return b;
    uint32_t n = 0; /* rank of b among the non-printable bytes */
    for (unsigned c = 0; c < b; c++) n += !gpt2_printable(c);
    return 256 + n;
}

int qn_gpt2_cp_to_byte(uint32_t cp) {
    if (cp < 256) return gpt2_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = 0;
    for (unsigned c = 0; c < 256; c++) {
        if (gpt2_printable(c)) continue;
        if (n == cp - 256) return (int)c;
        n++;
    }
    return -1;
}
