/*
 * Long and short packet headers: encoders, and decoders that only ever read through the bounded
 * cursors of wire.h. A decoder fills spans that point into the caller's packet; it allocates
 * nothing and checks every announced length against the bytes actually present.
 */
#include "core/packet.h"

#include "tern/errors.h"

uint8_t *tern__long_encode_prefix(uint8_t *p, const uint8_t *end, uint8_t type, uint32_t version,
                                  const uint8_t dcid[TERN_CID_LEN],
                                  const uint8_t scid[TERN_CID_LEN])
{
    p = tern__put_u8(p, end, (uint8_t)(TERN__HDR_LONG | TERN__HDR_FIXED |
                                       (type << TERN__LONG_TYPE_SHIFT)));
    p = tern__put_u32(p, end, version);
    p = tern__put_bytes(p, end, dcid, TERN_CID_LEN);
    return tern__put_bytes(p, end, scid, TERN_CID_LEN);
}

int tern__long_decode(const uint8_t *pkt, size_t len, tern__long_hdr *h)
{
    const uint8_t *p = pkt, *end = pkt + len;
    uint8_t flags;
    uint64_t v;
    memset(h, 0, sizeof(*h));
    p = tern__get_u8(p, end, &flags);
    p = tern__get_u32(p, end, &h->version);
    p = tern__get_bytes(p, end, h->dcid, TERN_CID_LEN);
    p = tern__get_bytes(p, end, h->scid, TERN_CID_LEN);
    if (p == NULL) return TERN_ERR_TRUNCATED;
    if (!(flags & TERN__HDR_LONG)) return TERN_ERR_MALFORMED;
    if (h->version == TERN__VERSION_NEGOTIATION) {
        size_t rest = (size_t)(end - p);
        if (rest == 0 || rest % 4 != 0) return TERN_ERR_MALFORMED;
        h->versions = p;
        h->n_versions = rest / 4;
        return TERN_OK;
    }
    if (h->version != TERN__VERSION_1) return TERN_ERR_VERSION;
    if (!(flags & TERN__HDR_FIXED) || (flags & 0x0f) != 0) return TERN_ERR_MALFORMED;
    h->type = (uint8_t)((flags & TERN__LONG_TYPE_MASK) >> TERN__LONG_TYPE_SHIFT);

    switch (h->type) {
    case TERN__PKT_INITIAL:
        if ((p = tern__get_span(p, end, &h->key_hint, TERN__KEY_HINT_LEN)) == NULL)
            return TERN_ERR_TRUNCATED;
        if ((p = tern__get_varint(p, end, &v)) == NULL) return TERN_ERR_TRUNCATED;
        if (v > TERN__MAX_TOKEN_LEN) return TERN_ERR_MALFORMED;
        h->token_len = (size_t)v;
        if ((p = tern__get_span(p, end, &h->token, h->token_len)) == NULL)
            return TERN_ERR_TRUNCATED;
        if ((p = tern__get_varint(p, end, &v)) == NULL) return TERN_ERR_TRUNCATED;
        if (v < TERN__NOISE_MSG1_FIXED || v > TERN__NOISE_MSG1_FIXED + TERN__MAX_HS_PAYLOAD)
            return TERN_ERR_MALFORMED;
        h->body_len = (size_t)v;
        if ((p = tern__get_span(p, end, &h->body, h->body_len)) == NULL)
            return TERN_ERR_TRUNCATED;
        h->mac1_covered = (size_t)(p - pkt);
        if ((p = tern__get_span(p, end, &h->mac1, TERN__MAC1_LEN)) == NULL)
            return TERN_ERR_TRUNCATED;
        /* the rest is padding */
        return TERN_OK;
    case TERN__PKT_RESPONSE:
        if ((p = tern__get_varint(p, end, &v)) == NULL) return TERN_ERR_TRUNCATED;
        if (v < TERN__NOISE_MSG2_FIXED || v > TERN__NOISE_MSG2_FIXED + TERN__MAX_HS_PAYLOAD)
            return TERN_ERR_MALFORMED;
        h->body_len = (size_t)v;
        if ((p = tern__get_span(p, end, &h->body, h->body_len)) == NULL)
            return TERN_ERR_TRUNCATED;
        return p == end ? TERN_OK : TERN_ERR_MALFORMED;
    case TERN__PKT_RETRY:
        if ((p = tern__get_bytes(p, end, h->odcid, TERN_CID_LEN)) == NULL)
            return TERN_ERR_TRUNCATED;
        if ((p = tern__get_varint(p, end, &v)) == NULL) return TERN_ERR_TRUNCATED;
        if (v == 0 || v > TERN__MAX_TOKEN_LEN) return TERN_ERR_MALFORMED;
        h->token_len = (size_t)v;
        if ((p = tern__get_span(p, end, &h->token, h->token_len)) == NULL)
            return TERN_ERR_TRUNCATED;
        return p == end ? TERN_OK : TERN_ERR_MALFORMED;
    case TERN__PKT_REJECT:
        if ((p = tern__get_varint(p, end, &h->reject_code)) == NULL) return TERN_ERR_TRUNCATED;
        if ((p = tern__get_span(p, end, &h->key_hint, TERN__KEY_HINT_LEN)) == NULL)
            return TERN_ERR_TRUNCATED;
        return p == end ? TERN_OK : TERN_ERR_MALFORMED;
    default:
        return TERN_ERR_MALFORMED;
    }
}

int tern__short_decode(const uint8_t *pkt, size_t len, tern__short_hdr *h)
{
    const uint8_t *p = pkt, *end = pkt + len;
    memset(h, 0, sizeof(*h));
    p = tern__get_u8(p, end, &h->flags);
    p = tern__get_bytes(p, end, h->dcid, TERN_CID_LEN);
    if (p == NULL) return TERN_ERR_TRUNCATED;
    if ((h->flags & TERN__HDR_LONG) || !(h->flags & TERN__HDR_FIXED)) return TERN_ERR_MALFORMED;
    h->pn_len = (size_t)(h->flags & TERN__SHORT_PN_LEN_MASK) + 1;
    if ((size_t)(end - p) < h->pn_len + 1 + TERN__AEAD_TAG_LEN) return TERN_ERR_TRUNCATED;
    uint64_t pn = 0;
    for (size_t i = 0; i < h->pn_len; i++) pn = pn << 8 | p[i];
    h->pn_truncated = pn;
    h->hdr_len = 1 + TERN_CID_LEN + h->pn_len;
    return TERN_OK;
}

uint8_t *tern__short_encode(uint8_t *p, const uint8_t *end, int key_phase,
                            const uint8_t dcid[TERN_CID_LEN], uint64_t pn, size_t pn_len)
{
    if (pn_len < 1 || pn_len > 4) return NULL;
    uint8_t flags = (uint8_t)(TERN__HDR_FIXED | (key_phase ? TERN__SHORT_KEY_PHASE : 0) |
                              (uint8_t)(pn_len - 1));
    p = tern__put_u8(p, end, flags);
    p = tern__put_bytes(p, end, dcid, TERN_CID_LEN);
    if (p == NULL || (size_t)(end - p) < pn_len) return NULL;
    for (size_t i = 0; i < pn_len; i++) p[i] = (uint8_t)(pn >> (8 * (pn_len - 1 - i)));
    return p + pn_len;
}

uint64_t tern__pn_decode(uint64_t largest_received, int have_largest, uint64_t truncated,
                         size_t pn_len)
{
    uint64_t expected = have_largest ? largest_received + 1 : 0;
    uint64_t win = 1ull << (pn_len * 8);
    uint64_t hwin = win / 2;
    uint64_t mask = win - 1;
    uint64_t candidate = (expected & ~mask) | truncated;
    if (candidate + hwin <= expected && candidate < (1ull << 62) - win) return candidate + win;
    if (candidate > expected + hwin && candidate >= win) return candidate - win;
    return candidate;
}
