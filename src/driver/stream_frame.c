/*
 * The stream framing codec (docs/protocol.md, "Stream transport"): each side's 8-byte
 * preamble, then packets as a 2-byte big-endian length and that many bytes (1..TERN_MAX_DATAGRAM).
 * Pure: no I/O, no allocation; the decoder holds at most one packet (its own buffer), so a
 * stream costs the same whatever the peer sends. A frame that lies whole inside one read is
 * handed over in place; only a frame cut by a read boundary is copied. Any violation (a wrong
 * preamble, a length 0 or over the maximum) is final: the caller closes the stream.
 */
#include <string.h>

#include "driver/stream.h"

const uint8_t drv_preamble_client[DRV_PREAMBLE_LEN] = {'t', 'e', 'r', 'n', '/', '1', 'c', '\n'};
const uint8_t drv_preamble_server[DRV_PREAMBLE_LEN] = {'t', 'e', 'r', 'n', '/', '1', 's', '\n'};

void drv_fdec_init(drv_fdec *f, const uint8_t *want)
{
    f->want = want;
    f->pre_got = 0;
    f->hdr_got = 0;
    f->len = f->got = 0;
    f->err = 0;
}

size_t drv_frame_put(uint8_t *out, const uint8_t *data, size_t len)
{
    if (len == 0 || len > TERN_MAX_DATAGRAM) return 0;
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)len;
    memcpy(out + DRV_FRAME_HDR, data, len);
    return len + DRV_FRAME_HDR;
}

int drv_fdec_feed(drv_fdec *f, uint8_t *in, size_t n, drv_frame_fn fn, void *user, size_t *used)
{
    size_t off = 0;
    *used = 0;
    if (f->err) return f->err;
    while (f->want != NULL && off < n) { /* the preamble, compared byte by byte as it comes */
        uint8_t b = in[off++];
        f->pre[f->pre_got] = b;
        if (b != f->want[f->pre_got]) {
            f->pre_got++;
            *used = off;
            return f->err = DRV_FDEC_BAD_PREAMBLE;
        }
        if (++f->pre_got == DRV_PREAMBLE_LEN) f->want = NULL;
    }
    while (off < n) {
        if (f->hdr_got < DRV_FRAME_HDR) { /* the length, possibly a byte at a time */
            f->len = (uint16_t)(f->len << 8 | in[off++]);
            if (++f->hdr_got < DRV_FRAME_HDR) continue;
            if (f->len == 0 || f->len > TERN_MAX_DATAGRAM) {
                *used = off;
                return f->err = DRV_FDEC_BAD_LENGTH;
            }
            f->got = 0;
            if (n - off >= f->len) { /* whole in this read: hand it over in place */
                uint8_t *p = in + off;
                size_t l = f->len;
                off += l;
                f->hdr_got = 0;
                f->len = 0;
                if (fn(user, p, l)) {
                    *used = off;
                    return DRV_FDEC_STOPPED;
                }
            }
            continue;
        }
        size_t take = f->len - f->got; /* the rest of a frame cut by a read */
        if (take > n - off) take = n - off;
        memcpy(f->buf + f->got, in + off, take);
        f->got = (uint16_t)(f->got + take);
        off += take;
        if (f->got < f->len) break;
        size_t l = f->len;
        f->hdr_got = 0;
        f->len = f->got = 0;
        if (fn(user, f->buf, l)) {
            *used = off;
            return DRV_FDEC_STOPPED;
        }
    }
    *used = off;
    return DRV_FDEC_OK;
}
