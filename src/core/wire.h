/*
 * Wire constants, limits, and bounded cursors for reading untrusted bytes.
 *
 * Every constant of the tern v1 wire format lives here (docs/protocol.md is the spec). Readers
 * take (p, end) and return NULL on overrun; writers take (p, end) and return NULL when the
 * caller's buffer is too small. Nothing here ever reads or writes past `end`.
 */
#ifndef TERN_CORE_WIRE_H
#define TERN_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tern/tern.h"

/* ---- versions ---- */
#define TERN__VERSION_1 0x544e0001u /* "TN" 0x0001 */
#define TERN__VERSION_NEGOTIATION 0u

/* ---- first byte ---- */
#define TERN__HDR_LONG 0x80u  /* long header (handshake packets) */
#define TERN__HDR_FIXED 0x40u /* always 1: tells tern from STUN (whose top two bits are 00) */
#define TERN__LONG_TYPE_SHIFT 4
#define TERN__LONG_TYPE_MASK 0x30u
#define TERN__SHORT_KEY_PHASE 0x20u
#define TERN__SHORT_RESERVED 0x1cu /* must be zero (authenticated) */
#define TERN__SHORT_PN_LEN_MASK 0x03u

enum {
    TERN__PKT_INITIAL = 0,
    TERN__PKT_RESPONSE = 1,
    TERN__PKT_RETRY = 2,
    TERN__PKT_REJECT = 3,
};

/* ---- datagrams that are not tern packets themselves (docs/protocol.md, section 9) ---- */
#define TERN__RELAY_TYPE TERN_RELAY_TYPE /* 1 0 0 0 0 0 0 1: channel (8) || one tern packet;
                                          written by tern_relay_hdr_put (tern/base.h) */
#define TERN__PUNCH_TYPE 0x82u /* 1 0 0 0 0 0 1 0: tag (16), a MAC of the introduction nonce */
#define TERN__RELAY_HDR_LEN TERN_RELAY_HDR_LEN
#define TERN__PUNCH_LEN (1 + 16)

/* ---- sizes ---- */
#define TERN__LONG_HDR_LEN (1 + 4 + 2 * TERN_CID_LEN) /* flags, version, dcid, scid */
#define TERN__SHORT_HDR_MIN (1 + TERN_CID_LEN + 1)
#define TERN__AEAD_TAG_LEN 16
#define TERN__MAC1_LEN 16
#define TERN__KEY_HINT_LEN 8
#define TERN__TOKEN_LEN 24        /* retry token: 8-byte time + 16-byte MAC */
#define TERN__MAX_TOKEN_LEN 64    /* longest token field accepted */
#define TERN__RESET_TOKEN_LEN 16
#define TERN__MIN_SHORT_PACKET (TERN__SHORT_HDR_MIN + 1 + TERN__AEAD_TAG_LEN)
#define TERN__RESET_MIN_LEN (TERN__MIN_SHORT_PACKET) /* a reset looks like a short packet */
#define TERN__RESET_MAX_LEN 43
#define TERN__NOISE_MSG1_FIXED (32 + 32 + TERN__AEAD_TAG_LEN + TERN__AEAD_TAG_LEN)
#define TERN__NOISE_MSG2_FIXED (32 + TERN__AEAD_TAG_LEN)
#define TERN__MAX_HS_PAYLOAD 512  /* transport parameters in a handshake message */
#define TERN__MAX_REASON_LEN 256
#define TERN__REPLAY_WINDOW 1024  /* packets */
#define TERN__REPLAY_WORDS (TERN__REPLAY_WINDOW / 64)

/* ---- frame types (varints) ---- */
enum {
    TERN__FRAME_PADDING = 0x00,
    TERN__FRAME_PING = 0x01,
    TERN__FRAME_PONG = 0x02,
    /* 0x03-0x0f reserved for acknowledgement and loss recovery (flows) */
    TERN__FRAME_CLOSE = 0x10,
    TERN__FRAME_HANDSHAKE_DONE = 0x11,
    TERN__FRAME_PATH_CHALLENGE = 0x12, /* 8 bytes of data the peer must echo */
    TERN__FRAME_PATH_RESPONSE = 0x13,  /* the 8 bytes of a PATH_CHALLENGE */
    /* 0x14-0x1f reserved for connection IDs */
    TERN__FRAME_DATAGRAM = 0x30,
};

/* CLOSE frame error spaces */
enum { TERN__CLOSE_TRANSPORT = 0, TERN__CLOSE_APPLICATION = 1 };

/* Transport error codes carried in CLOSE (space 0) */
enum {
    TERN__TERR_NO_ERROR = 0,
    TERN__TERR_PROTOCOL = 1,
    TERN__TERR_REFUSED = 2,
    TERN__TERR_INTERNAL = 3,
    TERN__TERR_BUDGET = 4, /* the peer made the sender hold more memory than its budget */
};

/* Reject codes (long header type 3) */
enum { TERN__REJECT_WRONG_KEY = 1, TERN__REJECT_REFUSED = 2 };

/* ---- transport parameter IDs ---- */
enum {
    TERN__TP_IDLE_TIMEOUT_MS = 0x01,
    TERN__TP_MAX_UDP_PAYLOAD = 0x02,
    TERN__TP_AEADS = 0x03,
    TERN__TP_INTEGRITY_ONLY = 0x04,
    TERN__TP_RESET_TOKEN = 0x05,
    TERN__TP_CID = 0x06,
    TERN__TP_MAX_DATAGRAM_FRAME = 0x07,
    TERN__TP_FLOW_WINDOW = 0x08,
    TERN__TP_MAX_FLOWS = 0x09,
    TERN__TP_MAX_ACK_DELAY_MS = 0x0a,
};

/* AEAD identifiers on the wire */
enum { TERN__WIRE_AES256GCM = 1, TERN__WIRE_CHACHA20POLY1305 = 2 };

/* ---------------------------------------------------------------- cursors */

static inline const uint8_t *tern__get_u8(const uint8_t *p, const uint8_t *end, uint8_t *v)
{
    if (p == NULL || end - p < 1) return NULL;
    *v = p[0];
    return p + 1;
}

static inline const uint8_t *tern__get_u16(const uint8_t *p, const uint8_t *end, uint16_t *v)
{
    if (p == NULL || end - p < 2) return NULL;
    *v = (uint16_t)((uint16_t)p[0] << 8 | p[1]);
    return p + 2;
}

static inline const uint8_t *tern__get_u32(const uint8_t *p, const uint8_t *end, uint32_t *v)
{
    if (p == NULL || end - p < 4) return NULL;
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return p + 4;
}

static inline const uint8_t *tern__get_u64(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint32_t hi, lo;
    p = tern__get_u32(p, end, &hi);
    p = tern__get_u32(p, end, &lo);
    if (p == NULL) return NULL;
    *v = (uint64_t)hi << 32 | lo;
    return p;
}

static inline const uint8_t *tern__get_bytes(const uint8_t *p, const uint8_t *end, uint8_t *out,
                                             size_t n)
{
    if (p == NULL || (size_t)(end - p) < n) return NULL;
    memcpy(out, p, n);
    return p + n;
}

/* Points *out at the next n bytes without copying. */
static inline const uint8_t *tern__get_span(const uint8_t *p, const uint8_t *end,
                                            const uint8_t **out, size_t n)
{
    if (p == NULL || (size_t)(end - p) < n) return NULL;
    *out = p;
    return p + n;
}

/* QUIC-style variable-length integer: the top two bits of the first byte give the length
 * (1, 2, 4 or 8 bytes), the rest is the value, big-endian; values up to 2^62-1. */
#define TERN__VARINT_MAX ((1ull << 62) - 1)

static inline const uint8_t *tern__get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    if (p == NULL || end - p < 1) return NULL;
    size_t n = (size_t)1 << (p[0] >> 6);
    if ((size_t)(end - p) < n) return NULL;
    uint64_t x = p[0] & 0x3f;
    for (size_t i = 1; i < n; i++) x = x << 8 | p[i];
    *v = x;
    return p + n;
}

static inline size_t tern__varint_len(uint64_t v)
{
    return v < 64 ? 1 : v < 16384 ? 2 : v < (1ull << 30) ? 4 : 8;
}

static inline uint8_t *tern__put_u8(uint8_t *p, const uint8_t *end, uint8_t v)
{
    if (p == NULL || end - p < 1) return NULL;
    p[0] = v;
    return p + 1;
}

static inline uint8_t *tern__put_u32(uint8_t *p, const uint8_t *end, uint32_t v)
{
    if (p == NULL || end - p < 4) return NULL;
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static inline uint8_t *tern__put_u64(uint8_t *p, const uint8_t *end, uint64_t v)
{
    p = tern__put_u32(p, end, (uint32_t)(v >> 32));
    return tern__put_u32(p, end, (uint32_t)v);
}

static inline uint8_t *tern__put_bytes(uint8_t *p, const uint8_t *end, const void *src, size_t n)
{
    if (p == NULL || (size_t)(end - p) < n) return NULL;
    if (n) memcpy(p, src, n);
    return p + n;
}

static inline uint8_t *tern__put_varint(uint8_t *p, const uint8_t *end, uint64_t v)
{
    if (p == NULL || v > TERN__VARINT_MAX) return NULL;
    size_t n = tern__varint_len(v);
    if ((size_t)(end - p) < n) return NULL;
    static const uint8_t prefix[9] = {0, 0x00, 0x40, 0, 0x80, 0, 0, 0, 0xc0};
    for (size_t i = n; i-- > 0;) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
    p[0] |= prefix[n];
    return p + n;
}

#endif
