/*
 * libFuzzer target for the driver's stream framing decoder (src/driver/stream_frame.c,
 * docs/protocol.md "Stream transport"): the input is a byte stream as a peer would send it, fed
 * to drv_fdec_feed in pieces whose sizes come from the input itself (reads cut anywhere: inside
 * the preamble, the length, a packet), sometimes with the frame callback asking to stop. Checked
 * against a plain reference parser of the whole stream: the same frames with the same bytes in
 * the same order, the same verdict (good, wrong preamble, bad length) at the same offset; every
 * frame 1..TERN_MAX_DATAGRAM bytes; an error is sticky; the frames re-encoded with
 * drv_frame_put give back the input they came from.
 * Input: [flags u8: bit 0 the server's preamble is expected, bit 1 stop after some frames]
 *        [n u8, then n piece sizes] [stream...].
 */
#include <stdlib.h>
#include <string.h>

#include "driver/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FRAMES 4096

typedef struct got {
    size_t n;
    size_t off[MAX_FRAMES], len[MAX_FRAMES]; /* each frame's place in the stream */
    uint8_t *copy;                           /* the frames' bytes, back to back */
    size_t copy_len;
    size_t stop_every; /* stop after this many frames per call (0: never) */
    size_t since_stop;
} got;

static int take(void *user, uint8_t *frame, size_t len)
{
    got *g = user;
    if (len == 0 || len > TERN_MAX_DATAGRAM) abort();
    if (g->n < MAX_FRAMES) {
        g->len[g->n] = len;
        memcpy(g->copy + g->copy_len, frame, len);
        g->copy_len += len;
    }
    g->n++;
    if (g->stop_every && ++g->since_stop >= g->stop_every) {
        g->since_stop = 0;
        return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t flags = data[0];
    size_t np = data[1];
    if (size < 2 + np) return 0;
    const uint8_t *pieces = data + 2;
    uint8_t *stream = malloc(size + 1); /* writable, as the driver's read buffer is */
    size_t len = size - 2 - np;
    memcpy(stream, data + 2 + np, len);
    const uint8_t *want = flags & 1 ? drv_preamble_server : drv_preamble_client;

    /* the reference: the whole stream at once, by the specification */
    size_t ref_n = 0, off = 0;
    int ref_err = 0;
    size_t ref_end = 0; /* bytes consumed when the verdict came */
    size_t ref_off[MAX_FRAMES], ref_len[MAX_FRAMES];
    size_t pre = len < DRV_PREAMBLE_LEN ? len : DRV_PREAMBLE_LEN;
    for (size_t i = 0; i < pre && !ref_err; i++)
        if (stream[i] != want[i]) {
            ref_err = DRV_FDEC_BAD_PREAMBLE;
            ref_end = i + 1;
        }
    if (!ref_err && len >= DRV_PREAMBLE_LEN) {
        off = DRV_PREAMBLE_LEN;
        while (off + 2 <= len) {
            size_t l = (size_t)stream[off] << 8 | stream[off + 1];
            if (l == 0 || l > TERN_MAX_DATAGRAM) {
                ref_err = DRV_FDEC_BAD_LENGTH;
                ref_end = off + 2;
                break;
            }
            if (off + 2 + l > len) break;
            if (ref_n < MAX_FRAMES) {
                ref_off[ref_n] = off + 2;
                ref_len[ref_n] = l;
            }
            ref_n++;
            off += 2 + l;
        }
    }

    /* the decoder, in pieces */
    static drv_fdec dec;
    drv_fdec_init(&dec, want);
    got g;
    memset(&g, 0, sizeof(g));
    g.copy = malloc(len + 1);
    g.stop_every = flags & 2 ? 1 + (flags >> 4) : 0;
    size_t pos = 0, pi = 0;
    int err = 0;
    while (pos < len) {
        size_t want_n = np ? pieces[pi++ % np] : 0;
        if (want_n == 0 || want_n > len - pos) want_n = len - pos;
        size_t used = 0;
        int rc = drv_fdec_feed(&dec, stream + pos, want_n, take, &g, &used);
        if (used > want_n) abort();
        pos += used;
        if (rc < 0) {
            err = rc;
            size_t again = 0;
            if (drv_fdec_feed(&dec, stream, len, take, &g, &again) != rc || again != 0)
                abort(); /* sticky, takes nothing */
            break;
        }
        if (rc == DRV_FDEC_OK && used != want_n) abort();
        if (rc == DRV_FDEC_STOPPED) continue; /* the rest of the piece comes again */
    }
    if (err != ref_err) abort();
    if (err && pos != ref_end) abort();
    if (g.n != ref_n) abort();
    size_t at = 0;
    for (size_t i = 0; i < ref_n && i < MAX_FRAMES; i++) {
        if (g.len[i] != ref_len[i] || memcmp(g.copy + at, stream + ref_off[i], ref_len[i]) != 0)
            abort();
        /* re-encoded, the frame is the input it came from */
        uint8_t enc[DRV_FRAME_MAX];
        size_t el = drv_frame_put(enc, g.copy + at, g.len[i]);
        if (el != g.len[i] + DRV_FRAME_HDR || memcmp(enc, stream + ref_off[i] - 2, el) != 0)
            abort();
        at += g.len[i];
    }
    uint8_t one = 0;
    if (drv_frame_put(&one, &one, 0) != 0) abort();
    free(g.copy);
    free(stream);
    return 0;
}
