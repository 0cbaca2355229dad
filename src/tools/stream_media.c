/*
 * tern stream's media model (stream.h): frame and datagram formats, the payload pattern, the
 * synthetic encoder, the MPEG-TS cutter, UDP reassembly and the receiver's statistics. No I/O,
 * no clock: the callers pass the times. Everything a peer sends goes through the parsers here,
 * which check every length against the bytes that came and against the budgets in stream.h.
 */
#include <stdlib.h>
#include <string.h>

#include "tools/stream.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* type flags num capture size interval: the 22 bytes both formats start with */
static void hdr_common_put(uint8_t *p, uint8_t type, const stream_hdr *h)
{
    p[0] = type;
    p[1] = h->flags;
    put32(p + 2, h->num);
    put64(p + 6, h->capture_ns);
    put32(p + 14, h->size);
    put32(p + 18, h->interval_us);
}

static void hdr_common_get(const uint8_t *p, stream_hdr *h)
{
    h->flags = p[1];
    h->num = get32(p + 2);
    h->capture_ns = get64(p + 6);
    h->size = get32(p + 14);
    h->interval_us = get32(p + 18);
}

void stream_hdr_put(uint8_t *p, const stream_hdr *h)
{
    hdr_common_put(p, 'F', h);
}

int stream_hdr_get(const uint8_t *p, size_t len, stream_hdr *h)
{
    if (len < STREAM_HDR_LEN || p[0] != 'F') return -1;
    hdr_common_get(p, h);
    if (h->size > STREAM_MAX_FRAME || (size_t)h->size != len - STREAM_HDR_LEN) return -1;
    return 0;
}

void stream_end_put(uint8_t *p, uint32_t frames)
{
    p[0] = 'E';
    put32(p + 1, frames);
}

int stream_end_get(const uint8_t *p, size_t len, uint32_t *frames)
{
    if (len != 5 || p[0] != 'E') return -1;
    *frames = get32(p + 1);
    return 0;
}

/* ---------------------------------------------------------------- payload pattern */

uint8_t stream_pattern(uint32_t n, uint32_t j)
{
    uint32_t x = n * 0x9e3779b1u ^ (j >> 8) * 0x85ebca6bu;
    x ^= x >> 15;
    return (uint8_t)(x + j);
}

void stream_fill(uint8_t *p, size_t len, uint32_t n, uint32_t off)
{
    for (size_t i = 0; i < len; i++)
        p[i] = stream_pattern(n, off + (uint32_t)i);
}

int stream_check(const uint8_t *p, size_t len, uint32_t n, uint32_t off)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != stream_pattern(n, off + (uint32_t)i)) return -1;
    return 0;
}

/* ---------------------------------------------------------------- synthetic encoder */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

void stream_gen_init(stream_gen *g, uint64_t bitrate, unsigned fps, unsigned gop, uint64_t seed)
{
    memset(g, 0, sizeof(*g));
    g->bitrate = bitrate;
    g->fps = fps ? fps : 25;
    g->gop = gop ? gop : 1;
    g->rng = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
    if (g->rng == 0) g->rng = 1;
    g->since_key = g->gop; /* the first frame is a keyframe */
}

size_t stream_gen_next(stream_gen *g, int *key)
{
    /* per GOP: one keyframe of RATIO x P and gop-1 P-frames average bitrate */
    double gop_bytes = (double)g->bitrate / 8.0 / g->fps * g->gop;
    double p = gop_bytes / (g->gop - 1 + STREAM_KEY_RATIO);
    double u = (double)(xorshift(&g->rng) >> 11) / (double)(1ull << 53); /* [0, 1) */
    *key = g->force_key || g->since_key >= g->gop;
    double size = *key ? STREAM_KEY_RATIO * p * (0.9 + 0.2 * u) : p * (0.8 + 0.4 * u);
    if (*key) {
        g->since_key = 1;
        g->force_key = 0;
    } else {
        g->since_key++;
    }
    if (size < 16) size = 16;
    if (size > STREAM_MAX_FRAME) size = STREAM_MAX_FRAME;
    return (size_t)size;
}

/* ---------------------------------------------------------------- MPEG-TS */

void stream_ts_init(stream_ts *t, int pid)
{
    memset(t, 0, sizeof(*t));
    t->pid = pid;
    t->pid_fixed = pid >= 0;
    t->pmt_pid = -1;
}

void stream_ts_free(stream_ts *t)
{
    free(t->buf);
    free(t->done);
    t->buf = t->done = NULL;
}

/* The section a PSI packet's payload starts (pointer field skipped): its bytes within pkt, or
 * NULL. */
static const uint8_t *psi_section(const uint8_t *pkt, size_t off, size_t *len)
{
    if (off >= STREAM_TS_PACKET) return NULL;
    size_t ptr = pkt[off];
    off += 1 + ptr;
    if (off + 3 > STREAM_TS_PACKET) return NULL;
    size_t sl = ((size_t)(pkt[off + 1] & 0x0f) << 8) | pkt[off + 2];
    size_t end = off + 3 + sl;
    if (end > STREAM_TS_PACKET)
        end = STREAM_TS_PACKET; /* a section over several packets:
                                   what this packet has */
    *len = end - off;
    return pkt + off;
}

static void ts_psi(stream_ts *t, const uint8_t *pkt, int pid, size_t off)
{
    size_t len;
    const uint8_t *s = psi_section(pkt, off, &len);
    if (s == NULL) return;
    if (pid == 0 && s[0] == 0x00 && t->pmt_pid < 0) {
        /* PAT: 8 bytes of header, then program_number u16, PID u16 (13 bits); CRC at the end */
        for (size_t i = 8; i + 4 <= len && i + 4 <= len - 4; i += 4) {
            unsigned prog = (unsigned)s[i] << 8 | s[i + 1];
            if (prog != 0) {
                t->pmt_pid = ((s[i + 2] & 0x1f) << 8) | s[i + 3];
                return;
            }
        }
    } else if (pid == t->pmt_pid && s[0] == 0x02 && t->pid < 0 && len >= 12) {
        size_t pil = ((size_t)(s[10] & 0x0f) << 8) | s[11];
        for (size_t i = 12 + pil; i + 5 <= len && i + 5 <= len - 4;) {
            uint8_t type = s[i];
            int epid = ((s[i + 1] & 0x1f) << 8) | s[i + 2];
            size_t eil = ((size_t)(s[i + 3] & 0x0f) << 8) | s[i + 4];
            if (type == 0x01 || type == 0x02 || type == 0x10 || type == 0x1b || type == 0x24) {
                t->pid = epid;
                return;
            }
            i += 5 + eil;
        }
    }
}

/* Hands the frame being cut out (swapped into done) and starts an empty one. */
static void ts_emit(stream_ts *t, const uint8_t **out, size_t *out_len, int *key)
{
    uint8_t *b = t->done;
    size_t c = t->done_cap;
    t->done = t->buf, t->done_cap = t->cap;
    t->buf = b, t->cap = c;
    *out = t->done;
    *out_len = t->len;
    *key = t->key;
    t->len = 0;
    t->packets = 0;
    t->key = 0;
    t->started = 0;
}

int stream_ts_packet(stream_ts *t, const uint8_t *pkt, const uint8_t **out, size_t *out_len,
                     int *key)
{
    if (pkt[0] != 0x47) {
        t->bad++;
        return 0;
    }
    int pid = ((pkt[1] & 0x1f) << 8) | pkt[2];
    int pusi = (pkt[1] & 0x40) != 0;
    int afc = (pkt[3] >> 4) & 3;
    size_t off = 4;
    int rai = 0;
    if (afc & 2) {
        size_t al = pkt[4];
        rai = al > 0 && (pkt[5] & 0x40);
        off = 5 + al;
    }
    if (pusi && (afc & 1) && !t->pid_fixed && (pid == 0 || pid == t->pmt_pid))
        ts_psi(t, pkt, pid, off);
    int emitted = 0;
    int starts = t->pid >= 0 && pid == t->pid && pusi;
    if (t->len > 0 && ((starts && t->started) || (t->pid < 0 && t->packets >= STREAM_TS_CHUNK) ||
                       t->len + STREAM_TS_PACKET > STREAM_MAX_FRAME)) {
        ts_emit(t, out, out_len, key);
        emitted = 1;
    }
    if (t->len + STREAM_TS_PACKET > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 64 * STREAM_TS_PACKET;
        uint8_t *nb = realloc(t->buf, nc);
        if (nb == NULL) return -1;
        t->buf = nb, t->cap = nc;
    }
    memcpy(t->buf + t->len, pkt, STREAM_TS_PACKET);
    t->len += STREAM_TS_PACKET;
    t->packets++;
    if (starts && !t->started) {
        t->started = 1;
        t->key = rai;
    }
    return emitted;
}

int stream_ts_flush(stream_ts *t, const uint8_t **out, size_t *out_len, int *key)
{
    if (t->len == 0) return 0;
    ts_emit(t, out, out_len, key);
    return 1;
}

/* ---------------------------------------------------------------- receiver statistics */

void stream_stats_init(stream_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->max_frames = STREAM_MAX_FRAMES;
}

void stream_stats_free(stream_stats *s)
{
    free(s->rec);
    s->rec = NULL;
    s->n = s->cap = 0;
}

int stream_stats_frame(stream_stats *s, const stream_hdr *h, uint64_t now_ns, int corrupt)
{
    if (h->num >= s->max_frames) {
        s->refused++;
        return -1;
    }
    if (h->num >= s->cap) {
        uint64_t nc = s->cap ? s->cap : 1024;
        while (nc <= h->num)
            nc *= 2;
        if (nc > s->max_frames) nc = s->max_frames;
        stream_rec *r = realloc(s->rec, (size_t)nc * sizeof(*r));
        if (r == NULL) {
            s->refused++;
            return -1;
        }
        memset(r + s->cap, 0, (size_t)(nc - s->cap) * sizeof(*r));
        s->rec = r;
        s->cap = (uint32_t)nc;
    }
    if (h->num >= s->n) s->n = h->num + 1;
    stream_rec *r = &s->rec[h->num];
    if (r->state != 0) {
        s->dup++;
        return 0;
    }
    if (now_ns < h->capture_ns) s->early++;
    r->capture_ns = h->capture_ns;
    r->latency_ns = now_ns > h->capture_ns ? now_ns - h->capture_ns : 0;
    r->state = corrupt ? 2 : 1;
    r->key = (h->flags & STREAM_F_KEY) != 0;
    if (h->interval_us) s->interval_ns = (uint64_t)h->interval_us * 1000;
    if (!corrupt) s->bytes += h->size;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int stream_stats_summary(const stream_stats *s, uint64_t playout_ns, stream_summary *o)
{
    memset(o, 0, sizeof(*o));
    uint32_t frames = s->total > s->n ? s->total : s->n;
    o->frames = frames;
    uint64_t *lat = malloc(((size_t)s->n + 1) * sizeof(*lat));
    if (lat == NULL) return -1;
    size_t nl = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->rec[i].state == 1) lat[nl++] = s->rec[i].latency_ns;
        if (s->rec[i].state == 2) o->corrupt++;
        if (s->rec[i].state == 1 && s->rec[i].key) o->keyframes++;
    }
    qsort(lat, nl, sizeof(*lat), cmp_u64);
    uint64_t owd = nl ? lat[0] : 0;
    if (playout_ns == 0) playout_ns = owd + 100 * 1000000ull;
    o->playout_ms = (double)playout_ns / 1e6;
    o->owd_ms = (double)owd / 1e6;
    if (nl) {
        o->p50_ms = (double)lat[(nl * 50 + 99) / 100 - 1] / 1e6;
        o->p99_ms = (double)lat[(nl * 99 + 99) / 100 - 1] / 1e6;
        o->max_ms = (double)lat[nl - 1] / 1e6;
    }
    free(lat);
    /* shown: decodable by capture + playout (see stream.h); stall: gaps between shown frames,
     * with virtual shown frames at -1 and at frames */
    int64_t prev = -1;
    uint64_t gaps = 0;                /* in intervals, less one each */
    uint64_t avail_prev = UINT64_MAX; /* when the frame before became decodable (never) */
    for (uint32_t i = 0; i <= frames; i++) {
        int shown = 0;
        if (i < frames) {
            const stream_rec *r = i < s->n ? &s->rec[i] : NULL;
            int came = r && r->state == 1;
            uint64_t arrival = came ? r->capture_ns + r->latency_ns : UINT64_MAX;
            uint64_t avail = !came || r->key || avail_prev < arrival ? arrival : avail_prev;
            int intime = came && r->latency_ns <= playout_ns;
            shown = intime && avail <= r->capture_ns + playout_ns;
            if (shown)
                o->ontime++;
            else if (intime)
                o->undecodable++;
            else if (came)
                o->late++;
            else
                o->lost++;
            if (intime) o->arrived_ontime++;
            avail_prev = avail;
        }
        if (shown || i == frames) {
            int64_t gap = (int64_t)i - prev;
            if (gap > 2) gaps += (uint64_t)(gap - 1);
            prev = i;
        }
    }
    o->stall_ms = (double)gaps * (double)s->interval_ns / 1e6;
    o->ontime_pct = frames ? 100.0 * o->ontime / frames : 0;
    return 0;
}

/* ---------------------------------------------------------------- UDP mode */

void stream_udp_rx_init(stream_udp_rx *r)
{
    memset(r, 0, sizeof(*r));
}

unsigned stream_udp_parts(const stream_hdr *h, size_t dgram_max)
{
    size_t chunk = dgram_max - STREAM_UDP_HDR;
    return h->size == 0 ? 1 : (unsigned)((h->size + chunk - 1) / chunk);
}

size_t stream_udp_part(const stream_hdr *h, const uint8_t *payload, unsigned i, size_t dgram_max,
                       uint8_t *out)
{
    size_t chunk = dgram_max - STREAM_UDP_HDR;
    unsigned count = stream_udp_parts(h, dgram_max);
    size_t off = (size_t)i * chunk;
    size_t len = i + 1 < count ? chunk : h->size - off;
    hdr_common_put(out, 'U', h);
    out[22] = (uint8_t)(i >> 8), out[23] = (uint8_t)i;
    out[24] = (uint8_t)(count >> 8), out[25] = (uint8_t)count;
    memcpy(out + STREAM_UDP_HDR, payload + off, len);
    return STREAM_UDP_HDR + len;
}

/* The slot of frame num: the one holding it, else a free one, else the oldest (evicted). */
static stream_udp_slot *udp_slot(stream_udp_rx *r, uint32_t num, int *fresh)
{
    stream_udp_slot *free_s = NULL, *oldest = NULL;
    for (int i = 0; i < STREAM_UDP_SLOTS; i++) {
        stream_udp_slot *s = &r->slot[i];
        if (s->used && s->h.num == num) {
            *fresh = 0;
            return s;
        }
        if (!s->used && free_s == NULL) free_s = s;
        if (s->used && (oldest == NULL || s->h.num < oldest->h.num)) oldest = s;
    }
    *fresh = 1;
    if (free_s) return free_s;
    r->evicted++;
    return oldest;
}

int stream_udp_rx_datagram(stream_udp_rx *r, const uint8_t *p, size_t len, stream_hdr *h,
                           int *corrupt)
{
    r->datagrams++;
    uint32_t n;
    if (stream_end_get(p, len, &n) == 0) {
        r->end_frames = n;
        r->ended = 1;
        return 2;
    }
    if (len < STREAM_UDP_HDR || p[0] != 'U') {
        r->malformed++;
        return 0;
    }
    stream_hdr d;
    hdr_common_get(p, &d);
    unsigned idx = (unsigned)p[22] << 8 | p[23], count = (unsigned)p[24] << 8 | p[25];
    size_t pl = len - STREAM_UDP_HDR;
    /* where the part's bytes lie: every part but the last is full, the last is the tail */
    uint64_t off = idx + 1 < count ? (uint64_t)idx * pl : (uint64_t)d.size - pl;
    if (d.size > STREAM_MAX_FRAME || count == 0 || count > STREAM_MAX_PARTS || idx >= count ||
        pl > d.size || (idx + 1 < count && (pl == 0 || (uint64_t)(idx + 1) * pl > d.size)) ||
        (count == 1 && pl != d.size)) {
        r->malformed++;
        return 0;
    }
    if (d.num < r->done_frames && r->done_frames - d.num > 4 * STREAM_UDP_SLOTS) {
        r->dup++; /* long gone */
        return 0;
    }
    int fresh;
    stream_udp_slot *s = udp_slot(r, d.num, &fresh);
    if (fresh) {
        memset(s, 0, sizeof(*s));
        s->used = 1;
        s->h = d;
        s->count = (uint16_t)count;
    } else if (s->h.size != d.size || s->count != count || s->h.capture_ns != d.capture_ns ||
               s->h.flags != d.flags) {
        r->malformed++;
        return 0;
    }
    if (s->seen[idx / 8] & (1u << (idx % 8))) {
        r->dup++;
        return 0;
    }
    s->seen[idx / 8] |= (uint8_t)(1u << (idx % 8));
    s->got++;
    if (!(d.flags & STREAM_F_TS) && stream_check(p + STREAM_UDP_HDR, pl, d.num, (uint32_t)off) != 0)
        s->corrupt = 1;
    if (s->got < s->count) return 0;
    *h = s->h;
    *corrupt = s->corrupt;
    s->used = 0;
    if (d.num + 1 > r->done_frames) r->done_frames = d.num + 1;
    return 1;
}

/* ---------------------------------------------------------------- options */

int stream_parse_rate(const char *text, uint64_t *bps)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || v <= 0) return -1;
    double mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1e3, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1e6, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1e9, end++;
    if (*end != '\0' || v * mul > 1e11 || v * mul < 1000) return -1;
    *bps = (uint64_t)(v * mul);
    return 0;
}
