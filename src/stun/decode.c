/*
 * STUN message decoding (RFC 8489 5, 14; RFC 5780 7; RFC 3489 11.2 for cookie-less clients).
 *
 * tern_stun_decode validates the whole message before anything looks at it: cheap header checks
 * first (size, top bits, length field, cookie), then one bounded walk over the attributes that
 * checks each value's length, the order rules for MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT, and
 * finally the FINGERPRINT's CRC. Nothing is allocated; the result points into the input.
 */
#include <sodium.h>
#include <string.h>

#include "stun/stun_int.h"

static const char *const drop_names[TERN_STUN_DROP_COUNT] = {
    "truncated", "too_large", "bad_header", "no_cookie", "bad_attribute", "too_many_attributes",
    "bad_fingerprint", "misplaced_attribute", "not_request", "rate_limited", "output",
};

const char *tern_stun_drop_name(int reason)
{
    if (reason < 0 || reason >= TERN_STUN_DROP_COUNT) return "unknown";
    return drop_names[reason];
}

static int fail(tern_stun_msg *m, int reason, int err)
{
    m->drop = (uint8_t)reason;
    return err;
}

/* Comprehension-required attributes this implementation understands (or knowingly ignores). */
static int known_required(uint16_t t)
{
    switch (t) {
    case TERN_STUN_ATTR_MAPPED_ADDRESS:
    case TERN_STUN_ATTR_CHANGE_REQUEST:
    case TERN_STUN_ATTR_SOURCE_ADDRESS:
    case TERN_STUN_ATTR_CHANGED_ADDRESS:
    case TERN_STUN_ATTR_USERNAME:
    case TERN_STUN_ATTR_MESSAGE_INTEGRITY:
    case TERN_STUN_ATTR_ERROR_CODE:
    case TERN_STUN_ATTR_UNKNOWN_ATTRIBUTES:
    case TERN_STUN_ATTR_REALM:
    case TERN_STUN_ATTR_NONCE:
    case TERN_STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
    case TERN_STUN_ATTR_XOR_MAPPED_ADDRESS:
    case TERN_STUN_ATTR_PRIORITY:
    case TERN_STUN_ATTR_USE_CANDIDATE:
    case TERN_STUN_ATTR_PADDING:
    case TERN_STUN_ATTR_RESPONSE_PORT:
        return 1;
    default:
        return 0;
    }
}

/* MAPPED-ADDRESS family: 8 bytes for IPv4, 20 for IPv6; XOR variants use the cookie and ID. */
static int get_addr(const uint8_t *v, uint16_t len, int xor, const uint8_t *hdr, tern_addr *a)
{
    const uint8_t *p = v, *end = v + len;
    uint16_t fam_word, port;
    p = stun_get_u16(p, end, &fam_word);
    p = stun_get_u16(p, end, &port);
    if (p == NULL) return TERN_ERR_MALFORMED;
    uint8_t fam = (uint8_t)fam_word;
    memset(a, 0, sizeof(*a));
    size_t n;
    if (fam == 1 && len == 8) {
        a->family = TERN_AF_INET;
        n = 4;
    } else if (fam == 2 && len == 20) {
        a->family = TERN_AF_INET6;
        n = 16;
    } else {
        return TERN_ERR_MALFORMED; /* unknown family, or a length that does not match it */
    }
    memcpy(a->ip, p, n);
    a->port = port;
    if (xor) {
        a->port ^= (uint16_t)(TERN_STUN_MAGIC >> 16);
        for (size_t i = 0; i < n && i < sizeof(a->ip); i++) a->ip[i] ^= hdr[4 + i]; /* cookie, then transaction ID */
    }
    return TERN_OK;
}

static void note_unknown(tern_stun_msg *m, uint16_t t)
{
    for (unsigned i = 0; i < m->n_unknown; i++)
        if (m->unknown[i] == t) return;
    if (m->n_unknown < TERN_STUN_MAX_UNKNOWN) m->unknown[m->n_unknown++] = t;
}

static int decode_attr(tern_stun_msg *m, uint16_t t, const uint8_t *v, uint16_t len,
                       uint16_t off)
{
    const uint8_t *hdr = m->raw;
    tern_addr *slot = NULL;
    uint32_t bit = 0;
    int xor = 0;
    switch (t) {
    case TERN_STUN_ATTR_MAPPED_ADDRESS: slot = &m->mapped; bit = TERN_STUN_HAS_MAPPED; break;
    case TERN_STUN_ATTR_XOR_MAPPED_ADDRESS:
        slot = &m->xor_mapped; bit = TERN_STUN_HAS_XOR_MAPPED; xor = 1;
        break;
    case TERN_STUN_ATTR_RESPONSE_ORIGIN:
        slot = &m->response_origin; bit = TERN_STUN_HAS_RESPONSE_ORIGIN;
        break;
    case TERN_STUN_ATTR_OTHER_ADDRESS:
        slot = &m->other_address; bit = TERN_STUN_HAS_OTHER_ADDRESS;
        break;
    case TERN_STUN_ATTR_SOURCE_ADDRESS:
        slot = &m->source_address; bit = TERN_STUN_HAS_SOURCE_ADDRESS;
        break;
    case TERN_STUN_ATTR_CHANGED_ADDRESS:
        slot = &m->changed_address; bit = TERN_STUN_HAS_CHANGED_ADDRESS;
        break;
    case TERN_STUN_ATTR_CHANGE_REQUEST: {
        uint32_t f;
        if (len != 4 || stun_get_u32(v, v + len, &f) == NULL) return TERN_ERR_MALFORMED;
        if (!(m->present & TERN_STUN_HAS_CHANGE_REQUEST)) {
            m->change_flags = f & (TERN_STUN_CHANGE_IP | TERN_STUN_CHANGE_PORT);
            m->present |= TERN_STUN_HAS_CHANGE_REQUEST;
        }
        return TERN_OK;
    }
    case TERN_STUN_ATTR_RESPONSE_PORT: {
        uint16_t port;
        if (len != 4 || stun_get_u16(v, v + len, &port) == NULL || port == 0)
            return TERN_ERR_MALFORMED;
        if (!(m->present & TERN_STUN_HAS_RESPONSE_PORT)) {
            m->response_port = port;
            m->present |= TERN_STUN_HAS_RESPONSE_PORT;
        }
        return TERN_OK;
    }
    case TERN_STUN_ATTR_PADDING:
        if (!(m->present & TERN_STUN_HAS_PADDING)) {
            m->padding_len = len;
            m->present |= TERN_STUN_HAS_PADDING;
        }
        return TERN_OK;
    case TERN_STUN_ATTR_USERNAME:
        if (len > 512) return TERN_ERR_MALFORMED; /* RFC 8489 14.3: less than 513 bytes */
        if (!(m->present & TERN_STUN_HAS_USERNAME)) {
            m->username = v;
            m->username_len = len;
            m->present |= TERN_STUN_HAS_USERNAME;
        }
        return TERN_OK;
    case TERN_STUN_ATTR_SOFTWARE:
        if (len > 763) return TERN_ERR_MALFORMED; /* RFC 8489 14.14 */
        if (!(m->present & TERN_STUN_HAS_SOFTWARE)) {
            m->software = v;
            m->software_len = len;
            m->present |= TERN_STUN_HAS_SOFTWARE;
        }
        return TERN_OK;
    case TERN_STUN_ATTR_ERROR_CODE: {
        uint32_t w;
        if (len < 4 || len > 4 + 763 || stun_get_u32(v, v + len, &w) == NULL)
            return TERN_ERR_MALFORMED;
        unsigned cls = (w >> 8) & 7, num = w & 0xff;
        if (cls < 3 || cls > 6 || num > 99) return TERN_ERR_MALFORMED;
        if (!(m->present & TERN_STUN_HAS_ERROR_CODE)) {
            m->error_code = (uint16_t)(cls * 100 + num);
            m->reason = v + 4;
            m->reason_len = (uint16_t)(len - 4);
            m->present |= TERN_STUN_HAS_ERROR_CODE;
        }
        return TERN_OK;
    }
    case TERN_STUN_ATTR_UNKNOWN_ATTRIBUTES:
        if (len % 2 != 0) return TERN_ERR_MALFORMED;
        if (!(m->present & TERN_STUN_HAS_UNKNOWN_ATTRS)) {
            m->unknown_attrs = v;
            m->unknown_attrs_len = len;
            m->present |= TERN_STUN_HAS_UNKNOWN_ATTRS;
        }
        return TERN_OK;
    case TERN_STUN_ATTR_MESSAGE_INTEGRITY:
        if (len != 20) return TERN_ERR_MALFORMED;
        m->mi_off = off;
        m->present |= TERN_STUN_HAS_INTEGRITY;
        return TERN_OK;
    case TERN_STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
        if (len < 16 || len > 32 || len % 4 != 0) return TERN_ERR_MALFORMED;
        m->mi256_off = off;
        m->mi256_len = len;
        m->present |= TERN_STUN_HAS_INTEGRITY_SHA256;
        return TERN_OK;
    default:
        if (t < 0x8000 && !known_required(t)) note_unknown(m, t);
        return TERN_OK;
    }
    if (get_addr(v, len, xor, hdr, slot) != TERN_OK) return TERN_ERR_MALFORMED;
    if (m->present & bit) return TERN_OK; /* only the first occurrence counts; already parsed */
    m->present |= bit;
    return TERN_OK;
}

int tern_stun_frame_len(const uint8_t *buf, size_t len)
{
    uint16_t type, mlen;
    if (buf == NULL || len < TERN_STUN_HEADER_LEN) return 0;
    const uint8_t *p = stun_get_u16(buf, buf + len, &type);
    p = stun_get_u16(p, buf + len, &mlen);
    if (p == NULL || (type & 0xc000) != 0 || mlen % 4 != 0) return TERN_ERR_MALFORMED;
    if ((size_t)mlen + TERN_STUN_HEADER_LEN > TERN_STUN_MAX_MSG) return TERN_ERR_TOO_LARGE;
    return TERN_STUN_HEADER_LEN + mlen;
}

int tern_stun_decode(tern_stun_msg *m, const uint8_t *buf, size_t len, int allow_rfc3489)
{
    if (m == NULL) return TERN_ERR_INVALID_ARG;
    memset(m, 0, sizeof(*m));
    if (buf == NULL || len < TERN_STUN_HEADER_LEN)
        return fail(m, TERN_STUN_DROP_TRUNCATED, TERN_ERR_TRUNCATED);
    if (len > TERN_STUN_MAX_MSG) return fail(m, TERN_STUN_DROP_TOO_LARGE, TERN_ERR_MALFORMED);
    const uint8_t *end = buf + len, *p = buf;
    uint16_t type, mlen;
    uint32_t cookie;
    p = stun_get_u16(p, end, &type);
    p = stun_get_u16(p, end, &mlen);
    p = stun_get_u32(p, end, &cookie);
    if ((type & 0xc000) != 0 || mlen % 4 != 0)
        return fail(m, TERN_STUN_DROP_BAD_HEADER, TERN_ERR_MALFORMED);
    if ((size_t)mlen + TERN_STUN_HEADER_LEN > len)
        return fail(m, TERN_STUN_DROP_TRUNCATED, TERN_ERR_TRUNCATED);
    if ((size_t)mlen + TERN_STUN_HEADER_LEN < len)
        return fail(m, TERN_STUN_DROP_BAD_HEADER, TERN_ERR_MALFORMED);
    m->has_cookie = cookie == TERN_STUN_MAGIC;
    if (!m->has_cookie && !allow_rfc3489)
        return fail(m, TERN_STUN_DROP_NO_COOKIE, TERN_ERR_VERSION);
    m->raw = buf;
    m->len = len;
    m->method = stun_type_method(type);
    m->cls = stun_type_class(type);
    memcpy(m->tid, buf + 8, TERN_STUN_TID_LEN);
    p = buf + TERN_STUN_HEADER_LEN;

    /* 0: before MESSAGE-INTEGRITY; 1: after it; 2: after MESSAGE-INTEGRITY-SHA256; 3: after FP */
    int stage = 0;
    while (p < end) {
        uint16_t t, alen;
        const uint8_t *v;
        uint16_t off = (uint16_t)(p - buf);
        p = stun_get_u16(p, end, &t);
        p = stun_get_u16(p, end, &alen);
        if (p == NULL) return fail(m, TERN_STUN_DROP_BAD_ATTR, TERN_ERR_MALFORMED);
        size_t padded = ((size_t)alen + 3) & ~(size_t)3;
        if (stun_get_bytes(p, end, padded, &v) == NULL)
            return fail(m, TERN_STUN_DROP_BAD_ATTR, TERN_ERR_MALFORMED);
        p += padded;
        if (++m->n_attrs > TERN_STUN_MAX_ATTRS)
            return fail(m, TERN_STUN_DROP_TOO_MANY_ATTRS, TERN_ERR_MALFORMED);
        if (stage == 3) return fail(m, TERN_STUN_DROP_BAD_FINGERPRINT, TERN_ERR_MALFORMED);
        if (t == TERN_STUN_ATTR_FINGERPRINT) {
            uint32_t got;
            if (!m->has_cookie) return fail(m, TERN_STUN_DROP_NO_COOKIE, TERN_ERR_VERSION);
            if (alen != 4 || p != end || stun_get_u32(v, v + 4, &got) == NULL)
                return fail(m, TERN_STUN_DROP_BAD_FINGERPRINT, TERN_ERR_MALFORMED);
            uint32_t want = tern_stun_crc32(0, buf, off) ^ TERN_STUN_FINGERPRINT_XOR;
            if (got != want) return fail(m, TERN_STUN_DROP_BAD_FINGERPRINT, TERN_ERR_AUTH);
            m->fp_off = off;
            m->present |= TERN_STUN_HAS_FINGERPRINT;
            stage = 3;
            continue;
        }
        if (t == TERN_STUN_ATTR_MESSAGE_INTEGRITY) {
            if (stage != 0) return fail(m, TERN_STUN_DROP_MISPLACED, TERN_ERR_MALFORMED);
            stage = 1;
        } else if (t == TERN_STUN_ATTR_MESSAGE_INTEGRITY_SHA256) {
            if (stage > 1) return fail(m, TERN_STUN_DROP_MISPLACED, TERN_ERR_MALFORMED);
            stage = 2;
        } else if (stage != 0) {
            return fail(m, TERN_STUN_DROP_MISPLACED, TERN_ERR_MALFORMED);
        }
        if (decode_attr(m, t, v, alen, off) != TERN_OK)
            return fail(m, TERN_STUN_DROP_BAD_ATTR, TERN_ERR_MALFORMED);
    }
    return TERN_OK;
}

/* The MAC covers the message up to the attribute at off, with the header's length field set as
 * if the message ended right after that attribute (RFC 8489 14.5, 14.6). */
static void mac_header(const tern_stun_msg *m, uint16_t off, uint16_t alen, uint8_t hdr[20])
{
    memcpy(hdr, m->raw, TERN_STUN_HEADER_LEN);
    stun_put_u16(hdr + 2, (uint16_t)(off + 4 + alen - TERN_STUN_HEADER_LEN));
}

int tern_stun_check_integrity(const tern_stun_msg *m, const uint8_t *key, size_t key_len)
{
    uint8_t hdr[20], mac[32];
    if (m == NULL || m->raw == NULL) return TERN_ERR_INVALID_ARG;
    if (m->present & TERN_STUN_HAS_INTEGRITY_SHA256) {
        mac_header(m, m->mi256_off, m->mi256_len, hdr);
        stun_hmac_sha256(key, key_len, hdr, 20, m->raw + 20, m->mi256_off - 20u, mac,
                         m->mi256_len);
        if (sodium_memcmp(mac, m->raw + m->mi256_off + 4, m->mi256_len) != 0) return TERN_ERR_AUTH;
        return TERN_OK;
    }
    if (m->present & TERN_STUN_HAS_INTEGRITY) {
        mac_header(m, m->mi_off, 20, hdr);
        tern_stun_hmac_sha1(key, key_len, hdr, 20, m->raw + 20, m->mi_off - 20u, mac);
        if (sodium_memcmp(mac, m->raw + m->mi_off + 4, 20) != 0) return TERN_ERR_AUTH;
        return TERN_OK;
    }
    return TERN_ERR_NOT_FOUND;
}
