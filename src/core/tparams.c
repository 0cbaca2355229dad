/*
 * Transport parameters, carried encrypted in the two handshake messages: a sequence of
 * (varint id, varint length, value). Unknown IDs are skipped so later versions can add some;
 * a repeated ID, or a known ID whose value has the wrong length, is malformed.
 */
#include "core/packet.h"

#include "tern/errors.h"

static uint8_t *put_varint_param(uint8_t *p, const uint8_t *end, uint64_t id, uint64_t v)
{
    p = tern__put_varint(p, end, id);
    p = tern__put_varint(p, end, tern__varint_len(v));
    return tern__put_varint(p, end, v);
}

static uint8_t *put_bytes_param(uint8_t *p, const uint8_t *end, uint64_t id, const uint8_t *b,
                                size_t n)
{
    p = tern__put_varint(p, end, id);
    p = tern__put_varint(p, end, n);
    return tern__put_bytes(p, end, b, n);
}

int tern__tparams_encode(const tern__tparams *tp, uint8_t *out, size_t cap)
{
    uint8_t *p = out, *end = out + cap;
    p = put_varint_param(p, end, TERN__TP_IDLE_TIMEOUT_MS, tp->idle_timeout_ms);
    p = put_varint_param(p, end, TERN__TP_MAX_UDP_PAYLOAD, tp->max_udp_payload);
    p = put_varint_param(p, end, TERN__TP_MAX_DATAGRAM_FRAME, tp->max_datagram_frame);
    p = put_varint_param(p, end, TERN__TP_FLOW_WINDOW, tp->flow_window);
    p = put_varint_param(p, end, TERN__TP_MAX_FLOWS, tp->max_flows);
    p = put_varint_param(p, end, TERN__TP_MAX_ACK_DELAY_MS, tp->max_ack_delay_ms);
    if (tp->n_aeads) p = put_bytes_param(p, end, TERN__TP_AEADS, tp->aeads, tp->n_aeads);
    if (tp->integrity_only) p = put_bytes_param(p, end, TERN__TP_INTEGRITY_ONLY, NULL, 0);
    if (tp->has_reset_token)
        p = put_bytes_param(p, end, TERN__TP_RESET_TOKEN, tp->reset_token, TERN__RESET_TOKEN_LEN);
    if (tp->has_cid) p = put_bytes_param(p, end, TERN__TP_CID, tp->cid, TERN_CID_LEN);
    if (p == NULL) return TERN_ERR_BUFFER;
    return (int)(p - out);
}

int tern__tparams_decode(const uint8_t *p, size_t len, tern__tparams *tp)
{
    const uint8_t *end = p + len;
    uint32_t seen = 0;
    memset(tp, 0, sizeof(*tp));
    tp->max_udp_payload = 1200;
    tp->flow_window = 64;
    tp->max_flows = 4;
    tp->max_ack_delay_ms = 25;
    while (p < end) {
        uint64_t id, vlen, v;
        const uint8_t *val;
        p = tern__get_varint(p, end, &id);
        p = tern__get_varint(p, end, &vlen);
        if (p == NULL) return TERN_ERR_TRUNCATED;
        if (vlen > (uint64_t)(end - p)) return TERN_ERR_TRUNCATED;
        val = p;
        p += vlen;
        if (id < 32) {
            if (seen & (1u << id)) return TERN_ERR_MALFORMED;
            seen |= 1u << id;
        }
        switch (id) {
        case TERN__TP_IDLE_TIMEOUT_MS:
        case TERN__TP_MAX_UDP_PAYLOAD:
        case TERN__TP_MAX_DATAGRAM_FRAME:
        case TERN__TP_FLOW_WINDOW:
        case TERN__TP_MAX_FLOWS:
        case TERN__TP_MAX_ACK_DELAY_MS:
            if (tern__get_varint(val, val + vlen, &v) != val + vlen) return TERN_ERR_MALFORMED;
            if (id == TERN__TP_IDLE_TIMEOUT_MS) tp->idle_timeout_ms = v;
            else if (id == TERN__TP_MAX_UDP_PAYLOAD) {
                if (v < 1200 || v > 65527) return TERN_ERR_MALFORMED;
                tp->max_udp_payload = v;
            } else if (id == TERN__TP_MAX_DATAGRAM_FRAME) tp->max_datagram_frame = v;
            else if (id == TERN__TP_FLOW_WINDOW) {
                if (v < 1 || v > (1u << 24)) return TERN_ERR_MALFORMED;
                tp->flow_window = v;
            } else if (id == TERN__TP_MAX_FLOWS) {
                if (v > (1u << 20)) return TERN_ERR_MALFORMED;
                tp->max_flows = v;
            } else {
                if (v > 16384) return TERN_ERR_MALFORMED;
                tp->max_ack_delay_ms = v;
            }
            break;
        case TERN__TP_AEADS:
            if (vlen == 0 || vlen > sizeof(tp->aeads)) return TERN_ERR_MALFORMED;
            memcpy(tp->aeads, val, (size_t)vlen);
            tp->n_aeads = (size_t)vlen;
            break;
        case TERN__TP_INTEGRITY_ONLY:
            if (vlen != 0) return TERN_ERR_MALFORMED;
            tp->integrity_only = 1;
            break;
        case TERN__TP_RESET_TOKEN:
            if (vlen != TERN__RESET_TOKEN_LEN) return TERN_ERR_MALFORMED;
            memcpy(tp->reset_token, val, TERN__RESET_TOKEN_LEN);
            tp->has_reset_token = 1;
            break;
        case TERN__TP_CID:
            if (vlen != TERN_CID_LEN) return TERN_ERR_MALFORMED;
            memcpy(tp->cid, val, TERN_CID_LEN);
            tp->has_cid = 1;
            break;
        default:
            break; /* unknown: skipped */
        }
    }
    return TERN_OK;
}
