/*
 * tern stream's media model (src/tools/stream_media.c) on its own: the frame and end messages
 * round-trip and refuse what does not add up; the synthetic encoder averages its bitrate with a
 * keyframe every GOP and is repeatable from its seed; the MPEG-TS cutter finds the video PID
 * through the PAT/PMT and cuts at its payload unit starts; UDP reassembly completes frames out
 * of order, checks their bytes, refuses malformed parts and stays within its slot table; the
 * statistics classify frames shown on time / undecodable / late / lost (a P-frame needs the
 * frame before it decoded, a late frame still serves as a reference), compute percentiles and stall
 * time, and refuse frame numbers over the budget.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/stream.h"

static int failures;
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void test_messages(void)
{
    uint8_t m[STREAM_HDR_LEN + 100];
    stream_hdr h = {.num = 77,
                    .flags = STREAM_F_KEY,
                    .capture_ns = 0x0102030405060708ull,
                    .size = 100,
                    .interval_us = 40000};
    stream_hdr_put(m, &h);
    stream_fill(m + STREAM_HDR_LEN, 100, 77, 0);
    stream_hdr g;
    CHECK(stream_hdr_get(m, sizeof(m), &g) == 0);
    CHECK(g.num == 77 && g.flags == STREAM_F_KEY && g.capture_ns == h.capture_ns && g.size == 100 &&
          g.interval_us == 40000);
    CHECK(stream_check(m + STREAM_HDR_LEN, 100, 77, 0) == 0);
    CHECK(stream_check(m + STREAM_HDR_LEN, 100, 78, 0) != 0);
    CHECK(stream_hdr_get(m, sizeof(m) - 1, &g) != 0); /* size disagrees with the bytes */
    CHECK(stream_hdr_get(m, STREAM_HDR_LEN - 1, &g) != 0);
    m[0] = 'X';
    CHECK(stream_hdr_get(m, sizeof(m), &g) != 0);
    uint8_t e[5];
    uint32_t n = 0;
    stream_end_put(e, 1500);
    CHECK(stream_end_get(e, 5, &n) == 0 && n == 1500);
    CHECK(stream_end_get(e, 4, &n) != 0);
    uint64_t r;
    CHECK(stream_parse_rate("1.1M", &r) == 0 && r == 1100000);
    CHECK(stream_parse_rate("800k", &r) == 0 && r == 800000);
    CHECK(stream_parse_rate("1M5", &r) != 0 && stream_parse_rate("0", &r) != 0);
}

static void test_gen(void)
{
    stream_gen a, b;
    stream_gen_init(&a, 1000000, 25, 50, 7);
    stream_gen_init(&b, 1000000, 25, 50, 7);
    uint64_t total = 0;
    unsigned keys = 0;
    size_t key_size = 0, p_sum = 0;
    for (int i = 0; i < 500; i++) {
        int ka, kb;
        size_t sa = stream_gen_next(&a, &ka), sb = stream_gen_next(&b, &kb);
        CHECK(sa == sb && ka == kb); /* same seed, same frames */
        CHECK(ka == (i % 50 == 0));
        total += sa;
        keys += (unsigned)ka;
        if (ka)
            key_size += sa;
        else
            p_sum += sa;
    }
    /* 20 s at 1 Mbit/s: 2.5 MB within 5% */
    CHECK(total > 2375000 && total < 2625000);
    CHECK(keys == 10);
    double ratio = (double)key_size / keys / ((double)p_sum / (500 - keys));
    CHECK(ratio > 4.5 && ratio < 5.5);
    a.force_key = 1;
    int k;
    stream_gen_next(&a, &k);
    CHECK(k == 1);
}

/* A TS packet of pid with payload_unit_start pusi and random_access_indicator rai. */
static void ts_pkt(uint8_t *p, int pid, int pusi, int rai)
{
    memset(p, 0xff, STREAM_TS_PACKET);
    p[0] = 0x47;
    p[1] = (uint8_t)((pusi ? 0x40 : 0) | (pid >> 8));
    p[2] = (uint8_t)pid;
    p[3] = rai ? 0x30 : 0x10;
    if (rai) {
        p[4] = 1;
        p[5] = 0x40;
    }
}

static void test_ts(void)
{
    stream_ts t;
    stream_ts_init(&t, -1);
    uint8_t p[STREAM_TS_PACKET];
    const uint8_t *out;
    size_t len;
    int key;
    /* PAT: program 1 -> PMT PID 0x100 */
    ts_pkt(p, 0, 1, 0);
    uint8_t pat[] = {0, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xe1, 0x00, 0, 0, 0, 0};
    memcpy(p + 4, pat, sizeof(pat));
    CHECK(stream_ts_packet(&t, p, &out, &len, &key) == 0);
    /* PMT: audio 0x0f on 0x102, H.264 0x1b on 0x101 */
    ts_pkt(p, 0x100, 1, 0);
    uint8_t pmt[] = {0,    0x02, 0xb0, 23, 0,    1,    0xc1, 0,    0, 0xe1, 0x01, 0xf0, 0, 0x0f,
                     0xe1, 0x02, 0xf0, 0,  0x1b, 0xe1, 0x01, 0xf0, 0, 0,    0,    0,    0};
    memcpy(p + 4, pmt, sizeof(pmt));
    CHECK(stream_ts_packet(&t, p, &out, &len, &key) == 0);
    CHECK(t.pmt_pid == 0x100 && t.pid == 0x101);
    ts_pkt(p, 0x101, 1, 1); /* keyframe starts */
    CHECK(stream_ts_packet(&t, p, &out, &len, &key) == 0);
    ts_pkt(p, 0x101, 0, 0);
    CHECK(stream_ts_packet(&t, p, &out, &len, &key) == 0);
    ts_pkt(p, 0x102, 1, 0); /* audio rides along */
    CHECK(stream_ts_packet(&t, p, &out, &len, &key) == 0);
    ts_pkt(p, 0x101, 1, 0); /* next frame: the first one (PAT, PMT and 3 packets) is out */
    CHECK(stream_ts_packet(&t, p, &out, &len, &key) == 1);
    CHECK(len == 5 * STREAM_TS_PACKET && key == 1);
    CHECK(stream_ts_flush(&t, &out, &len, &key) == 1 && len == STREAM_TS_PACKET && key == 0);
    CHECK(stream_ts_flush(&t, &out, &len, &key) == 0);
    p[0] = 0;
    CHECK(stream_ts_packet(&t, p, &out, &len, &key) == 0 && t.bad == 1);
    /* a truncated, lying PMT section never reads past the packet */
    ts_pkt(p, 0x100, 1, 0);
    p[4] = 183; /* pointer field past the end */
    stream_ts_free(&t);
    stream_ts_init(&t, -1);
    t.pmt_pid = 0x100;
    CHECK(stream_ts_packet(&t, p, &out, &len, &key) == 0 && t.pid == -1);
    stream_ts_free(&t);
}

static void test_udp(void)
{
    static stream_udp_rx rx;
    stream_udp_rx_init(&rx);
    size_t size = 5000;
    uint8_t *pl = malloc(size), dg[STREAM_UDP_MAX];
    stream_fill(pl, size, 9, 0);
    stream_hdr h = {
        .num = 9, .flags = 0, .capture_ns = 123, .size = (uint32_t)size, .interval_us = 40000};
    unsigned parts = stream_udp_parts(&h, STREAM_UDP_MAX);
    CHECK(parts == 4);
    stream_hdr got;
    int corrupt = -1;
    /* out of order: 3, 1, 0, 1 again (duplicate), 2 */
    unsigned order[] = {3, 1, 0, 1, 2};
    int r = 0;
    for (int i = 0; i < 5; i++) {
        size_t n = stream_udp_part(&h, pl, order[i], STREAM_UDP_MAX, dg);
        CHECK(n <= STREAM_UDP_MAX);
        r = stream_udp_rx_datagram(&rx, dg, n, &got, &corrupt);
        CHECK(r == (i == 4 ? 1 : 0));
    }
    CHECK(r == 1 && got.num == 9 && corrupt == 0 && rx.dup == 1);
    /* a changed byte is caught */
    h.num = 10;
    stream_fill(pl, size, 10, 0);
    pl[4000] ^= 1;
    for (unsigned i = 0; i < parts; i++) {
        size_t n = stream_udp_part(&h, pl, i, STREAM_UDP_MAX, dg);
        r = stream_udp_rx_datagram(&rx, dg, n, &got, &corrupt);
    }
    CHECK(r == 1 && corrupt == 1);
    /* malformed: index past count, a part longer than the frame, a short datagram */
    size_t n = stream_udp_part(&h, pl, 0, STREAM_UDP_MAX, dg);
    dg[23] = 9; /* index 9 of 4 */
    CHECK(stream_udp_rx_datagram(&rx, dg, n, &got, &corrupt) == 0);
    dg[23] = 0;
    dg[14] = dg[15] = dg[16] = 0, dg[17] = 10; /* size 10, part of 1290 bytes */
    CHECK(stream_udp_rx_datagram(&rx, dg, n, &got, &corrupt) == 0);
    CHECK(stream_udp_rx_datagram(&rx, dg, 10, &got, &corrupt) == 0);
    CHECK(rx.malformed == 3);
    /* the slot table: 100 frames started and never finished take 64 slots, no more */
    for (uint32_t f = 100; f < 200; f++) {
        h.num = f;
        n = stream_udp_part(&h, pl, 0, STREAM_UDP_MAX, dg);
        stream_udp_rx_datagram(&rx, dg, n, &got, &corrupt);
    }
    CHECK(rx.evicted == 100 - STREAM_UDP_SLOTS);
    stream_end_put(dg, 200);
    CHECK(stream_udp_rx_datagram(&rx, dg, 5, &got, &corrupt) == 2 && rx.end_frames == 200);
    free(pl);
}

static void test_stats(void)
{
    stream_stats s;
    stream_stats_init(&s);
    const uint64_t ms = 1000000;
    /* 20 frames at 40 ms: 0-9 at 150 ms, 10 late (400 ms), 11-13 lost, 14-19 at 160 ms;
     * keyframes 0 and 15: 14 arrives in time but its reference (13) is lost */
    for (uint32_t i = 0; i < 20; i++) {
        if (i >= 11 && i <= 13) continue;
        stream_hdr h = {.num = i,
                        .flags = (uint8_t)(i == 0 || i == 15 ? STREAM_F_KEY : 0),
                        .capture_ns = 1000 * ms + i * 40 * ms,
                        .size = 10,
                        .interval_us = 40000};
        uint64_t lat = i < 10 ? 150 * ms : i == 10 ? 400 * ms : 160 * ms;
        CHECK(stream_stats_frame(&s, &h, h.capture_ns + lat, 0) == 0);
    }
    s.total = 21; /* the last frame never came */
    stream_summary o;
    CHECK(stream_stats_summary(&s, 250 * ms, &o) == 0);
    CHECK(o.frames == 21 && o.ontime == 15 && o.undecodable == 1 && o.late == 1 && o.lost == 4);
    CHECK(o.arrived_ontime == 16 && o.keyframes == 2);
    CHECK(o.p50_ms == 150.0 && o.max_ms == 400.0 && o.owd_ms == 150.0);
    /* gaps between shown frames: 9 -> 15 (6 intervals: 5 counted), 19 -> end 21 (2: none) */
    CHECK(o.stall_ms == 5 * 40.0);
    /* with 155 ms of playout the frames at 160 ms are late too */
    CHECK(stream_stats_summary(&s, 155 * ms, &o) == 0 && o.ontime == 10 && o.late == 7);
    CHECK(stream_stats_summary(&s, 0, &o) == 0 && o.playout_ms == 250.0);
    /* a duplicate counts once; a frame number over the budget is refused */
    stream_hdr h = {.num = 3, .capture_ns = 0, .size = 10, .interval_us = 40000};
    CHECK(stream_stats_frame(&s, &h, 5, 0) == 0 && s.dup == 1);
    s.max_frames = 1000;
    h.num = 5000;
    CHECK(stream_stats_frame(&s, &h, 5, 0) == -1 && s.refused == 1 && s.cap <= 1024);
    stream_stats_free(&s);
    /* a late keyframe is not shown but is a reference from when it came: keyframe 0 at 300 ms,
     * frames 1 and 2 at 150 ms with 250 ms of playout: 1 must be shown by 290 ms after 0's
     * capture, before 0 came (undecodable); 2 by 330 ms, after (shown) */
    stream_stats_init(&s);
    for (uint32_t i = 0; i < 3; i++) {
        stream_hdr k = {.num = i,
                        .flags = (uint8_t)(i == 0 ? STREAM_F_KEY : 0),
                        .capture_ns = 1000 * ms + i * 40 * ms,
                        .size = 10,
                        .interval_us = 40000};
        CHECK(stream_stats_frame(&s, &k, k.capture_ns + (i ? 150 : 300) * ms, 0) == 0);
    }
    CHECK(stream_stats_summary(&s, 250 * ms, &o) == 0);
    CHECK(o.late == 1 && o.undecodable == 1 && o.ontime == 1 && o.lost == 0);
    stream_stats_free(&s);
}

int main(void)
{
    test_messages();
    test_gen();
    test_ts();
    test_udp();
    test_stats();
    if (failures) {
        fprintf(stderr, "test_stream_media: %d failures\n", failures);
        return 1;
    }
    printf("test_stream_media: ok\n");
    return 0;
}
