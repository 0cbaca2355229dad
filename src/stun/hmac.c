/*
 * SHA-1 and HMAC-SHA1 for STUN MESSAGE-INTEGRITY (RFC 8489 14.5; SHA-1 per FIPS 180-4, HMAC per
 * RFC 2104), and HMAC-SHA256 for MESSAGE-INTEGRITY-SHA256 through libsodium. libsodium has no
 * SHA-1, and SHA-1 is only used here as the MAC STUN requires, so it is written out.
 */
#include <sodium.h>
#include <string.h>

#include "stun/stun_int.h"

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(stun_sha1 *c, const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = c->h[0], b = c->h[1], d = c->h[3], e = c->h[4], cc = c->h[2];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (b & cc) | (~b & d); k = 0x5a827999u; }
        else if (i < 40) { f = b ^ cc ^ d; k = 0x6ed9eba1u; }
        else if (i < 60) { f = (b & cc) | (b & d) | (cc & d); k = 0x8f1bbcdcu; }
        else { f = b ^ cc ^ d; k = 0xca62c1d6u; }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = cc;
        cc = rol(b, 30);
        b = a;
        a = t;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
}

void stun_sha1_init(stun_sha1 *c)
{
    c->h[0] = 0x67452301u;
    c->h[1] = 0xefcdab89u;
    c->h[2] = 0x98badcfeu;
    c->h[3] = 0x10325476u;
    c->h[4] = 0xc3d2e1f0u;
    c->total = 0;
    c->fill = 0;
}

void stun_sha1_update(stun_sha1 *c, const uint8_t *p, size_t n)
{
    c->total += n;
    while (n > 0) {
        size_t take = 64 - c->fill;
        if (take > n) take = n;
        memcpy(c->block + c->fill, p, take);
        c->fill += take;
        p += take;
        n -= take;
        if (c->fill == 64) {
            sha1_block(c, c->block);
            c->fill = 0;
        }
    }
}

void stun_sha1_final(stun_sha1 *c, uint8_t out[20])
{
    uint64_t bits = c->total * 8;
    uint8_t pad = 0x80;
    stun_sha1_update(c, &pad, 1);
    pad = 0;
    while (c->fill != 56) stun_sha1_update(c, &pad, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    stun_sha1_update(c, len, 8);
    for (int i = 0; i < 5; i++) stun_put_u32(out + 4 * i, c->h[i]);
}

void tern_stun_hmac_sha1(const uint8_t *key, size_t key_len, const uint8_t *a, size_t a_len,
                         const uint8_t *b, size_t b_len, uint8_t out[20])
{
    uint8_t k[64] = {0}, pad[64], inner[20];
    stun_sha1 c;
    if (key_len > 64) {
        stun_sha1_init(&c);
        stun_sha1_update(&c, key, key_len);
        stun_sha1_final(&c, k);
    } else if (key_len > 0) {
        memcpy(k, key, key_len);
    }
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    stun_sha1_init(&c);
    stun_sha1_update(&c, pad, 64);
    if (a_len) stun_sha1_update(&c, a, a_len);
    if (b_len) stun_sha1_update(&c, b, b_len);
    stun_sha1_final(&c, inner);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    stun_sha1_init(&c);
    stun_sha1_update(&c, pad, 64);
    stun_sha1_update(&c, inner, 20);
    stun_sha1_final(&c, out);
}

void stun_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *a, size_t a_len,
                      const uint8_t *b, size_t b_len, uint8_t *out, size_t out_len)
{
    crypto_auth_hmacsha256_state st;
    uint8_t mac[32];
    crypto_auth_hmacsha256_init(&st, key, key_len);
    if (a_len) crypto_auth_hmacsha256_update(&st, a, a_len);
    if (b_len) crypto_auth_hmacsha256_update(&st, b, b_len);
    crypto_auth_hmacsha256_final(&st, mac);
    memcpy(out, mac, out_len > 32 ? 32 : out_len);
}
