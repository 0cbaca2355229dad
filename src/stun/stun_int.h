/* Internal helpers of the STUN codec: bounded big-endian cursors and wire-level constants. */
#ifndef TERN_STUN_INT_H
#define TERN_STUN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "tern/stun.h"

/* Bounded readers: return NULL when the field would pass end, else the position after it. */
static inline const uint8_t *stun_get_u16(const uint8_t *p, const uint8_t *end, uint16_t *out)
{
    if (p == NULL || end - p < 2) return NULL;
    *out = (uint16_t)((p[0] << 8) | p[1]);
    return p + 2;
}

static inline const uint8_t *stun_get_u32(const uint8_t *p, const uint8_t *end, uint32_t *out)
{
    if (p == NULL || end - p < 4) return NULL;
    *out = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return p + 4;
}

static inline const uint8_t *stun_get_bytes(const uint8_t *p, const uint8_t *end, size_t n,
                                            const uint8_t **out)
{
    if (p == NULL || (size_t)(end - p) < n) return NULL;
    *out = p;
    return p + n;
}

static inline void stun_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void stun_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Message type <-> method and class (RFC 8489 5: M11..M0 interleaved with C1 C0). */
static inline uint16_t stun_type(uint16_t method, uint8_t cls)
{
    return (uint16_t)((method & 0x000f) | ((method & 0x0070) << 1) | ((method & 0x0f80) << 2) |
                      ((cls & 1) << 4) | ((cls & 2) << 7));
}

static inline uint16_t stun_type_method(uint16_t t)
{
    return (uint16_t)((t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2));
}

static inline uint8_t stun_type_class(uint16_t t)
{
    return (uint8_t)(((t >> 4) & 1) | ((t >> 7) & 2));
}

/* SHA-1 (for HMAC-SHA1 in MESSAGE-INTEGRITY). */
typedef struct stun_sha1 {
    uint32_t h[5];
    uint64_t total;
    uint8_t block[64];
    size_t fill;
} stun_sha1;

void stun_sha1_init(stun_sha1 *c);
void stun_sha1_update(stun_sha1 *c, const uint8_t *p, size_t n);
void stun_sha1_final(stun_sha1 *c, uint8_t out[20]);

/* HMAC-SHA256 of two pieces, truncated to out_len (<= 32). */
void stun_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *a, size_t a_len,
                      const uint8_t *b, size_t b_len, uint8_t *out, size_t out_len);

#endif
