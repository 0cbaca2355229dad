/*
 * STUN message building (RFC 8489 5, 14). A builder writes into the caller's buffer and keeps the
 * header's length field current after every attribute, so MESSAGE-INTEGRITY(-SHA256) and
 * FINGERPRINT can be computed over "the message so far" exactly as the RFC describes. The first
 * error sticks: later calls do nothing and tern_stun_build_finish returns it.
 */
#include <string.h>

#include "stun/stun_int.h"

int tern_stun_build_init(tern_stun_builder *b, uint8_t *buf, size_t cap, uint16_t method,
                         uint8_t cls, const uint8_t tid[TERN_STUN_TID_LEN], int has_cookie,
                         const uint8_t *cookie3489)
{
    memset(b, 0, sizeof(*b));
    b->buf = buf;
    b->cap = cap > 0xffff ? 0xffff : cap;
    if (buf == NULL || cap < TERN_STUN_HEADER_LEN || tid == NULL) {
        b->err = TERN_ERR_BUFFER;
        return b->err;
    }
    b->has_cookie = has_cookie != 0;
    stun_put_u16(buf, stun_type(method, cls));
    stun_put_u16(buf + 2, 0);
    if (has_cookie || cookie3489 == NULL) stun_put_u32(buf + 4, TERN_STUN_MAGIC);
    else memcpy(buf + 4, cookie3489, 4);
    memcpy(buf + 8, tid, TERN_STUN_TID_LEN);
    b->len = TERN_STUN_HEADER_LEN;
    return TERN_OK;
}

/* Reserves an attribute of len value bytes; returns where the value goes, or NULL. */
static uint8_t *reserve(tern_stun_builder *b, uint16_t type, size_t len)
{
    if (b->err) return NULL;
    if (len > 0xffff) {
        b->err = TERN_ERR_TOO_LARGE;
        return NULL;
    }
    size_t padded = (len + 3) & ~(size_t)3;
    if (b->cap - b->len < 4 + padded) {
        b->err = TERN_ERR_BUFFER;
        return NULL;
    }
    uint8_t *p = b->buf + b->len;
    stun_put_u16(p, type);
    stun_put_u16(p + 2, (uint16_t)len);
    if (padded > len) memset(p + 4 + len, 0, padded - len);
    b->len += 4 + padded;
    stun_put_u16(b->buf + 2, (uint16_t)(b->len - TERN_STUN_HEADER_LEN));
    return p + 4;
}

int tern_stun_add_attr(tern_stun_builder *b, uint16_t type, const void *value, size_t len)
{
    uint8_t *v = reserve(b, type, len);
    if (v == NULL) return b->err;
    if (len) {
        if (value) memcpy(v, value, len);
        else memset(v, 0, len);
    }
    return TERN_OK;
}

int tern_stun_add_u32(tern_stun_builder *b, uint16_t type, uint32_t val)
{
    uint8_t *v = reserve(b, type, 4);
    if (v == NULL) return b->err;
    stun_put_u32(v, val);
    return TERN_OK;
}

int tern_stun_add_addr(tern_stun_builder *b, uint16_t type, const tern_addr *a)
{
    size_t n;
    if (b->err) return b->err;
    if (a->family == TERN_AF_INET) n = 4;
    else if (a->family == TERN_AF_INET6) n = 16;
    else return b->err = TERN_ERR_INVALID_ARG;
    uint8_t *v = reserve(b, type, 4 + n);
    if (v == NULL) return b->err;
    int xor = type == TERN_STUN_ATTR_XOR_MAPPED_ADDRESS;
    v[0] = 0;
    v[1] = n == 4 ? 1 : 2;
    stun_put_u16(v + 2, xor ? (uint16_t)(a->port ^ (TERN_STUN_MAGIC >> 16)) : a->port);
    for (size_t i = 0; i < n; i++) v[4 + i] = xor ? (uint8_t)(a->ip[i] ^ b->buf[4 + i]) : a->ip[i];
    return TERN_OK;
}

static const char *std_reason(uint16_t code)
{
    switch (code) {
    case 300: return "Try Alternate";
    case 400: return "Bad Request";
    case 401: return "Unauthenticated";
    case 420: return "Unknown Attribute";
    case 438: return "Stale Nonce";
    case 500: return "Server Error";
    default: return "Error";
    }
}

int tern_stun_add_error(tern_stun_builder *b, uint16_t code, const char *reason)
{
    if (reason == NULL) reason = std_reason(code);
    size_t rl = strlen(reason);
    if (rl > 763) rl = 763;
    uint8_t *v = reserve(b, TERN_STUN_ATTR_ERROR_CODE, 4 + rl);
    if (v == NULL) return b->err;
    v[0] = v[1] = 0;
    v[2] = (uint8_t)((code / 100) & 7);
    v[3] = (uint8_t)(code % 100);
    memcpy(v + 4, reason, rl);
    return TERN_OK;
}

int tern_stun_add_unknown(tern_stun_builder *b, const uint16_t *types, size_t n)
{
    uint8_t *v = reserve(b, TERN_STUN_ATTR_UNKNOWN_ATTRIBUTES, 2 * n);
    if (v == NULL) return b->err;
    for (size_t i = 0; i < n; i++) stun_put_u16(v + 2 * i, types[i]);
    return TERN_OK;
}

int tern_stun_add_integrity(tern_stun_builder *b, const uint8_t *key, size_t key_len)
{
    size_t before = b->len;
    uint8_t *v = reserve(b, TERN_STUN_ATTR_MESSAGE_INTEGRITY, 20);
    if (v == NULL) return b->err;
    /* the header already counts this attribute, as the MAC requires */
    tern_stun_hmac_sha1(key, key_len, b->buf, before, NULL, 0, v);
    return TERN_OK;
}

int tern_stun_add_integrity_sha256(tern_stun_builder *b, const uint8_t *key, size_t key_len)
{
    size_t before = b->len;
    uint8_t *v = reserve(b, TERN_STUN_ATTR_MESSAGE_INTEGRITY_SHA256, 32);
    if (v == NULL) return b->err;
    stun_hmac_sha256(key, key_len, b->buf, before, NULL, 0, v, 32);
    return TERN_OK;
}

int tern_stun_add_fingerprint(tern_stun_builder *b)
{
    size_t before = b->len;
    uint8_t *v = reserve(b, TERN_STUN_ATTR_FINGERPRINT, 4);
    if (v == NULL) return b->err;
    stun_put_u32(v, tern_stun_crc32(0, b->buf, before) ^ TERN_STUN_FINGERPRINT_XOR);
    return TERN_OK;
}

int tern_stun_build_finish(tern_stun_builder *b)
{
    if (b->err) return b->err;
    return (int)b->len;
}
