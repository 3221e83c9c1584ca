/* utf8.h — UTF-8 helpers shared by the tokenizer: lead-byte lengths, strict decoding per Unicode table 3-7,
 * replacement of ill-formed sequences by U+FFFD, and the GPT-2 byte <-> code point alphabet used by byte-level
 * BPE vocabularies. Pure functions and static const tables only; no state. */
#ifndef QN_TOK_UTF8_H
#define QN_TOK_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Byte count announced by a lead byte (1 for ASCII and for stray continuation bytes, like llama.cpp). */
static inline size_t qn_utf8_lead_len(uint8_t b) {
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[b >> 4];
}

/* Decodes one well-formed code point at s[0..n). Returns its byte length (1..4) and sets *cp, or 0 when the
 * bytes there are ill-formed or truncated (overlongs, surrogates and > U+10FFFF are ill-formed). */
size_t qn_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Length of the maximal prefix of an ill-formed sequence at s[0..n) that Unicode replaces with one U+FFFD
 * (always >= 1). Only meaningful where qn_utf8_decode returned 0. */
size_t qn_utf8_bad_len(const char *s, size_t n);

/* Encodes cp (<= U+10FFFF) into buf[4]; returns the byte count. */
size_t qn_utf8_encode(uint32_t cp, char *buf);

/* True when s[0..n) is entirely well-formed UTF-8. */
bool qn_utf8_valid(const char *s, size_t n);

/* Expected continuation-byte range for position k (1..3) of a sequence led by `lead`; lead must be a valid lead
 * byte (C2..F4). Shared by the decoder and the streaming detokenizer. */
static inline bool qn_utf8_cont_ok(uint8_t lead, size_t k, uint8_t b) {
    if (k == 1) {
        if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
        if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
        if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
        if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
    }
    return b >= 0x80 && b <= 0xBF;
}

/* Total length of a sequence led by b, or 0 when b cannot start a well-formed sequence (80..C1, F5..FF). */
static inline size_t qn_utf8_seq_len(uint8_t b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* --- GPT-2 byte-level alphabet: every byte maps to one printable code point --- */
/* Bytes 0x21..0x7E, 0xA1..0xAC and 0xAE..0xFF map to themselves; the other 68 bytes map, in order, to
 * U+0100..U+0143. */
uint32_t qn_gpt2_byte_to_cp(uint8_t b);
/* Inverse mapping; returns -1 for code points outside the alphabet. */
int qn_gpt2_cp_to_byte(uint32_t cp);

#endif
