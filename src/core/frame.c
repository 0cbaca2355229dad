/*
 * Frames inside protected packets: PADDING, PING/PONG, CLOSE, HANDSHAKE_DONE, PATH_CHALLENGE/
 * PATH_RESPONSE, DATAGRAM.
 * Each frame starts with a varint type; lengths are varints and are checked against the packet
 * before any byte they announce is touched.
 */
#include "core/packet.h"

#include "tern/errors.h"

const uint8_t *tern__frame_decode(const uint8_t *p, const uint8_t *end, tern__frame *f, int *err)
{
    uint64_t v;
    memset(f, 0, sizeof(*f));
    if ((p = tern__get_varint(p, end, &f->type)) == NULL) goto truncated;
    switch (f->type) {
    case TERN__FRAME_PADDING:
        while (p < end && *p == 0) p++;
        return p;
    case TERN__FRAME_PING:
    case TERN__FRAME_PONG:
        if ((p = tern__get_varint(p, end, &f->id)) == NULL) goto truncated;
        return p;
    case TERN__FRAME_HANDSHAKE_DONE:
        return p;
    case TERN__FRAME_PATH_CHALLENGE:
    case TERN__FRAME_PATH_RESPONSE:
        if ((p = tern__get_u64(p, end, &f->id)) == NULL) goto truncated;
        return p;
    case TERN__FRAME_CLOSE:
        p = tern__get_varint(p, end, &f->close_space);
        p = tern__get_varint(p, end, &f->close_code);
        p = tern__get_varint(p, end, &v);
        if (p == NULL) goto truncated;
        if (f->close_space > TERN__CLOSE_APPLICATION || v > TERN__MAX_REASON_LEN) goto malformed;
        f->data_len = (size_t)v;
        if ((p = tern__get_span(p, end, &f->data, f->data_len)) == NULL) goto truncated;
        return p;
    case TERN__FRAME_DATAGRAM:
        if ((p = tern__get_varint(p, end, &v)) == NULL) goto truncated;
        if (v > TERN_MAX_DATAGRAM) goto malformed;
        f->data_len = (size_t)v;
        if ((p = tern__get_span(p, end, &f->data, f->data_len)) == NULL) goto truncated;
        return p;
    default:
        goto malformed;
    }
truncated:
    *err = TERN_ERR_TRUNCATED;
    return NULL;
malformed:
    *err = TERN_ERR_MALFORMED;
    return NULL;
}

uint8_t *tern__frame_put_ping(uint8_t *p, const uint8_t *end, uint64_t type, uint64_t id)
{
    p = tern__put_varint(p, end, type);
    return tern__put_varint(p, end, id);
}

uint8_t *tern__frame_put_path(uint8_t *p, const uint8_t *end, uint64_t type, uint64_t data)
{
    p = tern__put_varint(p, end, type);
    return tern__put_u64(p, end, data);
}

uint8_t *tern__frame_put_close(uint8_t *p, const uint8_t *end, uint64_t space, uint64_t code,
                               const uint8_t *reason, size_t reason_len)
{
    if (reason_len > TERN__MAX_REASON_LEN) reason_len = TERN__MAX_REASON_LEN;
    p = tern__put_varint(p, end, TERN__FRAME_CLOSE);
    p = tern__put_varint(p, end, space);
    p = tern__put_varint(p, end, code);
    p = tern__put_varint(p, end, reason_len);
    return tern__put_bytes(p, end, reason, reason_len);
}

size_t tern__frame_datagram_overhead(size_t len)
{
    return tern__varint_len(TERN__FRAME_DATAGRAM) + tern__varint_len(len);
}

uint8_t *tern__frame_put_datagram(uint8_t *p, const uint8_t *end, const uint8_t *data, size_t len)
{
    p = tern__put_varint(p, end, TERN__FRAME_DATAGRAM);
    p = tern__put_varint(p, end, len);
    return tern__put_bytes(p, end, data, len);
}
