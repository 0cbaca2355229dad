/*
 * tern stream's frame source (stream.h): the synthetic encoder on a frame clock, or MPEG-TS
 * read from stdin and cut into frames. Capture times: a synthetic frame n is captured at the
 * first frame's time plus n intervals (not when the loop got round to it, so a late loop shows
 * as latency); a TS frame when its first packet was read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/stream.h"
#include "tools/tools.h"

uint64_t stream_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int stream_source_init(stream_source *s, int ts, uint64_t bitrate, unsigned fps, unsigned gop,
                       uint64_t seed, double duration_s, int ts_pid)
{
    memset(s, 0, sizeof(*s));
    s->ts = ts;
    stream_gen_init(&s->gen, bitrate, fps, gop, seed);
    stream_ts_init(&s->tsr, ts_pid);
    s->interval_ns = 1000000000ull / (fps ? fps : 25);
    s->limit = (uint32_t)(duration_s * (fps ? fps : 25) + 0.5);
    s->t0_mono = tools_now_ns();
    s->t0_real = stream_realtime_ns();
    s->cap = 64 << 10;
    s->buf = malloc(s->cap);
    return s->buf ? 0 : -1;
}

void stream_source_free(stream_source *s)
{
    free(s->buf);
    s->buf = NULL;
    stream_ts_free(&s->tsr);
}

uint64_t stream_source_wait(const stream_source *s, uint64_t now_mono)
{
    if (s->ts || s->eof) return UINT64_MAX;
    uint64_t due = s->t0_mono + (uint64_t)s->next * s->interval_ns;
    return due > now_mono ? due - now_mono : 0;
}

static int reserve(stream_source *s, size_t need)
{
    if (need <= s->cap) return 0;
    size_t nc = s->cap;
    while (nc < need)
        nc *= 2;
    uint8_t *b = realloc(s->buf, nc);
    if (b == NULL) return -2;
    s->buf = b, s->cap = nc;
    return 0;
}

/* Builds frame h (h->size payload bytes: copied from data, or the pattern when data is NULL). */
static int build(stream_source *s, stream_hdr *h, const uint8_t *data, const uint8_t **msg,
                 size_t *len)
{
    if (reserve(s, STREAM_HDR_LEN + (size_t)h->size) != 0) return -2;
    stream_hdr_put(s->buf, h);
    if (data)
        memcpy(s->buf + STREAM_HDR_LEN, data, h->size);
    else
        stream_fill(s->buf + STREAM_HDR_LEN, h->size, h->num, 0);
    *msg = s->buf;
    *len = STREAM_HDR_LEN + (size_t)h->size;
    s->frames++;
    s->bytes += h->size;
    if (h->flags & STREAM_F_KEY) s->keyframes++;
    return 1;
}

static int synthetic(stream_source *s, stream_hdr *h, const uint8_t **msg, size_t *len)
{
    int key;
    memset(h, 0, sizeof(*h));
    h->num = s->next;
    h->size = (uint32_t)stream_gen_next(&s->gen, &key);
    h->flags = key ? STREAM_F_KEY : 0;
    h->capture_ns = s->t0_real + (uint64_t)s->next * s->interval_ns;
    h->interval_us = (uint32_t)(s->interval_ns / 1000);
    s->next++;
    if (s->next >= s->limit) s->eof = 1;
    return build(s, h, NULL, msg, len);
}

static int ts_frame(stream_source *s, const uint8_t *data, size_t n, int key, uint64_t capture,
                    stream_hdr *h, const uint8_t **msg, size_t *len)
{
    memset(h, 0, sizeof(*h));
    h->num = s->next++;
    h->size = (uint32_t)n;
    h->flags = (uint8_t)(STREAM_F_TS | (key ? STREAM_F_KEY : 0));
    h->capture_ns = capture;
    h->interval_us = (uint32_t)(s->interval_ns / 1000);
    return build(s, h, data, msg, len);
}

int stream_source_next(stream_source *s, uint64_t now_mono, uint64_t now_real, int stdin_readable,
                       stream_hdr *h, const uint8_t **msg, size_t *len)
{
    if (!s->ts) {
        if (s->eof) return -1;
        if (stream_source_wait(s, now_mono) > 0) return 0;
        return synthetic(s, h, msg, len);
    }
    for (;;) {
        /* cut what is buffered, packet by packet */
        size_t used = 0;
        int got = 0;
        const uint8_t *out = NULL;
        size_t out_len = 0;
        int key = 0;
        uint64_t cap = s->ts_capture;
        while (!got && s->in_len - used >= STREAM_TS_PACKET) {
            int was_empty = s->tsr.len == 0;
            int r = stream_ts_packet(&s->tsr, s->in + used, &out, &out_len, &key);
            used += STREAM_TS_PACKET;
            if (r < 0) return -2;
            if (r == 1) {
                got = 1;
                cap = s->ts_capture;
                s->ts_capture = now_real; /* the packet just taken starts the next frame */
            } else if (was_empty) {
                s->ts_capture = now_real;
            }
        }
        memmove(s->in, s->in + used, s->in_len - used);
        s->in_len -= used;
        if (got) return ts_frame(s, out, out_len, key, cap, h, msg, len);
        if (s->eof) {
            if (stream_ts_flush(&s->tsr, &out, &out_len, &key))
                return ts_frame(s, out, out_len, key, s->ts_capture, h, msg, len);
            return -1;
        }
        if (!stdin_readable) return 0;
        ssize_t n;
        do
            n = read(0, s->in + s->in_len, sizeof(s->in) - s->in_len);
        while (n < 0 && errno == EINTR);
        stdin_readable = 0; /* one read per readiness: the next could block */
        if (n < 0 && errno == EAGAIN) return 0;
        if (n < 0) return -2;
        if (n == 0) s->eof = 1;
        s->in_len += (size_t)n;
    }
}

int stream_source_rekey(stream_source *s, stream_hdr *h, const uint8_t **msg, size_t *len)
{
    s->frames--;
    s->bytes -= h->size;
    if (h->flags & STREAM_F_KEY) s->keyframes--;
    if (s->ts) {
        h->flags |= STREAM_F_KEY;
        s->buf[1] = h->flags;
        s->frames++, s->bytes += h->size, s->keyframes++;
        *msg = s->buf;
        *len = STREAM_HDR_LEN + (size_t)h->size;
        return 0;
    }
    int key;
    s->gen.force_key = 1;
    h->size = (uint32_t)stream_gen_next(&s->gen, &key);
    h->flags = STREAM_F_KEY;
    return build(s, h, NULL, msg, len) == 1 ? 0 : -2;
}
