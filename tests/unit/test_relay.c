/*
 * Relay (tern/relay.h): forwarding both ways with the channel rewritten in place, the source
 * check, unknown channels, malformed / short / oversize datagrams, idle expiry back to the empty
 * relay's memory, the session limits (a repeated pair reuses its session), the per-session byte budget, allocation failures in
 * open, and random datagrams from random sources (never amplified, never misrouted).
 */
#include <stdlib.h>
#include <string.h>

#include "support/tt.h"
#include "tern/relay.h"

#define S (1000000000ull)
#define MS (1000000ull)

typedef struct rig {
    tt_mem mem;
    tt_rng rng;
    tern_relay *r;
    uint64_t base_mem;
} rig;

static void rig_init(rig *g, const tern_relay_config *in)
{
    memset(g, 0, sizeof(*g));
    tt_mem_init(&g->mem);
    tt_rng_seed(&g->rng, tt_seed());
    tern_relay_config cfg;
    if (in) cfg = *in;
    else tern_relay_config_default(&cfg);
    cfg.mem = &g->mem.mem;
    cfg.rand = tt_rand_fill;
    cfg.rand_user = &g->rng;
    TT_REQUIRE(tern_relay_new(&cfg, &g->r) == TERN_OK);
    g->base_mem = g->mem.current;
}

static void rig_free(rig *g)
{
    tern_relay_del(g->r);
    tt_mem_check_clean(&g->mem, "relay");
}

static tern_relay_stats stats(const rig *g)
{
    tern_relay_stats st;
    tern_relay_get_stats(g->r, &st);
    return st;
}

/* A relay datagram: header with channel ch, then an inner "tern packet" of n bytes. */
static size_t make_dgram(uint8_t *buf, const uint8_t ch[TERN_RELAY_CHANNEL_LEN], size_t n,
                         uint8_t fill)
{
    buf[0] = TERN_RELAY_TYPE;
    memcpy(buf + 1, ch, TERN_RELAY_CHANNEL_LEN);
    memset(buf + TERN_RELAY_HDR_LEN, fill, n);
    if (n) buf[TERN_RELAY_HDR_LEN] = 0x40 | (fill & 0x3f); /* tern's fixed bit */
    return TERN_RELAY_HDR_LEN + n;
}

static void addrs(tern_addr *a, tern_addr *b)
{
    tern_addr_ipv4(a, 198, 51, 100, 7, 40001);
    TT_REQUIRE(tern_addr_parse(b, "[2001:db8::9]:50002") == TERN_OK);
}

/* ---------------------------------------------------------------- cases */

static void test_forward_both_ways(void)
{
    rig g;
    rig_init(&g, NULL);
    tern_addr a, b, to;
    addrs(&a, &b);
    uint8_t ca[8], cb[8];
    TT_REQUIRE(tern_relay_open(g.r, 0, &a, &b, ca, cb) == TERN_OK);
    TT_CHECK(memcmp(ca, cb, 8) != 0);
    TT_CHECK_EQ_U64(stats(&g).sessions, 1);

    uint8_t d[TERN_MAX_DATAGRAM], orig[TERN_MAX_DATAGRAM];
    size_t n = make_dgram(d, ca, 300, 0x11);
    memcpy(orig, d, n);
    int rc = tern_relay_forward(g.r, 1 * MS, &a, d, n, &to);
    TT_CHECK_EQ_INT(rc, (int)n); /* the same length: no amplification */
    TT_CHECK(tern_addr_equal(&to, &b));
    TT_CHECK_EQ_INT(d[0], TERN_RELAY_TYPE);
    TT_CHECK(memcmp(d + 1, cb, 8) == 0);                            /* channel rewritten */
    TT_CHECK(memcmp(d + 9, orig + 9, n - 9) == 0);                  /* inner untouched */

    n = make_dgram(d, cb, 1200, 0x22);
    memcpy(orig, d, n);
    rc = tern_relay_forward(g.r, 2 * MS, &b, d, n, &to);
    TT_CHECK_EQ_INT(rc, (int)n);
    TT_CHECK(tern_addr_equal(&to, &a));
    TT_CHECK(memcmp(d + 1, ca, 8) == 0);
    TT_CHECK(memcmp(d + 9, orig + 9, n - 9) == 0);

    /* the largest allowed: 1500 bytes in all */
    n = make_dgram(d, ca, TERN_RELAY_MAX_INNER, 0x33);
    TT_CHECK_EQ_INT(n, TERN_MAX_DATAGRAM);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 3 * MS, &a, d, n, &to), TERN_MAX_DATAGRAM);
    /* the smallest: one inner byte */
    n = make_dgram(d, cb, 1, 0x44);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 4 * MS, &b, d, n, &to), TERN_RELAY_HDR_LEN + 1);

    tern_relay_stats st = stats(&g);
    TT_CHECK_EQ_U64(st.fwd_packets, 4);
    TT_CHECK_EQ_U64(st.fwd_bytes, 309 + 1209 + 1500 + 10);
    TT_CHECK_EQ_U64(st.opened, 1);
    rig_free(&g);
}

static void test_wrong_source_and_unknown_channel(void)
{
    rig g;
    rig_init(&g, NULL);
    tern_addr a, b, to, x;
    addrs(&a, &b);
    uint8_t ca[8], cb[8], d[64];
    TT_REQUIRE(tern_relay_open(g.r, 0, &a, &b, ca, cb) == TERN_OK);

    /* a's channel from another port of a's IP, from another IP, and from b */
    x = a;
    x.port++;
    size_t n = make_dgram(d, ca, 20, 1);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &x, d, n, &to), TERN_ERR_AUTH);
    TT_CHECK(memcmp(d + 1, ca, 8) == 0); /* a dropped datagram is not rewritten */
    x = a;
    x.ip[3] ^= 1;
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &x, d, n, &to), TERN_ERR_AUTH);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &b, d, n, &to), TERN_ERR_AUTH);
    /* the same IPv4 bytes as IPv6 are another address */
    memset(&x, 0, sizeof(x));
    x.family = TERN_AF_INET6;
    x.port = a.port;
    memcpy(x.ip, a.ip, 4);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &x, d, n, &to), TERN_ERR_AUTH);
    TT_CHECK_EQ_U64(stats(&g).drop_wrong_source, 4);

    /* a channel nobody has (a flipped bit of a real one) */
    uint8_t cz[8];
    memcpy(cz, ca, 8);
    cz[7] ^= 0x80;
    n = make_dgram(d, cz, 20, 1);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &a, d, n, &to), TERN_ERR_UNKNOWN_CID);
    TT_CHECK_EQ_U64(stats(&g).drop_unknown_channel, 1);
    TT_CHECK_EQ_U64(stats(&g).fwd_packets, 0);
    rig_free(&g);
}

static void test_malformed_short_oversize(void)
{
    rig g;
    rig_init(&g, NULL);
    tern_addr a, b, to;
    addrs(&a, &b);
    uint8_t ca[8], cb[8];
    static uint8_t d[65536];
    TT_REQUIRE(tern_relay_open(g.r, 0, &a, &b, ca, cb) == TERN_OK);
    size_t n = make_dgram(d, ca, 100, 7);
    /* every prefix up to the header is short */
    for (size_t i = 0; i <= TERN_RELAY_HDR_LEN; i++)
        TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &a, d, i, &to), TERN_ERR_TRUNCATED);
    TT_CHECK_EQ_U64(stats(&g).drop_short, TERN_RELAY_HDR_LEN + 1);
    /* wrong type byte: a tern long header (0xc0), a short one (0x40), STUN (0x00), 0x80 */
    const uint8_t types[] = {0xc0, 0x40, 0x00, 0x80, 0x01, 0xff};
    for (size_t i = 0; i < sizeof(types); i++) {
        d[0] = types[i];
        TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &a, d, n, &to), TERN_ERR_MALFORMED);
    }
    d[0] = TERN_RELAY_TYPE;
    /* inner without tern's fixed bit */
    d[TERN_RELAY_HDR_LEN] = 0x81;
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &a, d, n, &to), TERN_ERR_MALFORMED);
    d[TERN_RELAY_HDR_LEN] = 0x00;
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &a, d, n, &to), TERN_ERR_MALFORMED);
    TT_CHECK_EQ_U64(stats(&g).drop_malformed, sizeof(types) + 2);
    /* one byte over 1500, and far over */
    n = make_dgram(d, ca, TERN_RELAY_MAX_INNER + 1, 7);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &a, d, n, &to), TERN_ERR_MALFORMED);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &a, d, 65535, &to), TERN_ERR_MALFORMED);
    TT_CHECK_EQ_U64(stats(&g).drop_oversize, 2);
    TT_CHECK_EQ_U64(stats(&g).fwd_packets, 0);
    /* NULL arguments */
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, NULL, d, 20, &to), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &a, d, 20, NULL), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_relay_forward(NULL, 0, &a, d, 20, &to), TERN_ERR_INVALID_ARG);
    rig_free(&g);
}

static void test_idle_expiry_frees_memory(void)
{
    rig g;
    rig_init(&g, NULL);
    TT_CHECK_EQ_U64(tern_relay_next_deadline(g.r), TERN_TIME_NEVER);
    TT_CHECK_EQ_U64(stats(&g).mem_current, g.mem.current);
    enum { N = 1000 };
    static uint8_t ch[N][2][8];
    tern_addr a, b, to;
    for (int i = 0; i < N; i++) {
        tern_addr_ipv4(&a, 10, 0, (uint8_t)(i >> 8), (uint8_t)i, 1000);
        tern_addr_ipv4(&b, 10, 1, (uint8_t)(i >> 8), (uint8_t)i, 2000);
        TT_REQUIRE(tern_relay_open(g.r, 0, &a, &b, ch[i][0], ch[i][1]) == TERN_OK);
    }
    TT_CHECK(g.mem.current > g.base_mem);
    TT_CHECK_EQ_U64(stats(&g).mem_current, g.mem.current);
    TT_CHECK_EQ_U64(tern_relay_next_deadline(g.r), 60 * S);
    /* session 1 is introduced again at 20 s, session 0 used at 30 s: they outlive the rest */
    tern_addr_ipv4(&a, 10, 0, 0, 1, 1000);
    tern_addr_ipv4(&b, 10, 1, 0, 1, 2000);
    uint8_t x1[8], x2[8];
    TT_REQUIRE(tern_relay_open(g.r, 20 * S, &b, &a, x1, x2) == TERN_OK);
    TT_CHECK(memcmp(x1, ch[1][1], 8) == 0 && memcmp(x2, ch[1][0], 8) == 0);
    uint8_t d[64];
    tern_addr_ipv4(&a, 10, 0, 0, 0, 1000);
    size_t n = make_dgram(d, ch[0][0], 30, 9);
    TT_REQUIRE(tern_relay_forward(g.r, 30 * S, &a, d, n, &to) == (int)n);
    tern_relay_handle_expiry(g.r, 60 * S - 1);
    TT_CHECK_EQ_U64(stats(&g).sessions, N);
    tern_relay_handle_expiry(g.r, 60 * S);
    TT_CHECK_EQ_U64(stats(&g).sessions, 2);
    TT_CHECK_EQ_U64(stats(&g).expired, N - 2);
    TT_CHECK_EQ_U64(tern_relay_next_deadline(g.r), 80 * S);
    tern_relay_handle_expiry(g.r, 80 * S);
    TT_CHECK_EQ_U64(stats(&g).sessions, 1);
    TT_CHECK_EQ_U64(tern_relay_next_deadline(g.r), 90 * S);
    /* an expired session's channel is unknown from then on */
    tern_addr_ipv4(&a, 10, 0, 0, 5, 1000);
    n = make_dgram(d, ch[5][0], 30, 9);
    TT_CHECK_EQ_INT(tern_relay_forward(g.r, 61 * S, &a, d, n, &to), TERN_ERR_UNKNOWN_CID);
    tern_relay_handle_expiry(g.r, 90 * S);
    TT_CHECK_EQ_U64(stats(&g).sessions, 0);
    TT_CHECK_EQ_U64(tern_relay_next_deadline(g.r), TERN_TIME_NEVER);
    TT_CHECK_EQ_U64(g.mem.current, g.base_mem); /* back to the empty relay */
    TT_CHECK_EQ_U64(stats(&g).mem_current, g.base_mem);
    rig_free(&g);
}

static void test_limits(void)
{
    tern_relay_config cfg;
    tern_relay_config_default(&cfg);
    cfg.max_sessions = 50;
    cfg.max_per_addr = 4;
    rig g;
    rig_init(&g, &cfg);
    tern_addr a, b;
    uint8_t c1[8], c2[8];
    addrs(&a, &b);
    TT_CHECK_EQ_INT(tern_relay_open(g.r, 0, &a, &a, c1, c2), TERN_ERR_INVALID_ARG);
    tern_addr none;
    memset(&none, 0, sizeof(none));
    TT_CHECK_EQ_INT(tern_relay_open(g.r, 0, &a, &none, c1, c2), TERN_ERR_INVALID_ARG);
    /* the same pair again, in either order: the live session's channels, no new session */
    tern_addr_ipv4(&b, 10, 9, 9, 0, 7);
    uint8_t r1[8], r2[8];
    TT_REQUIRE(tern_relay_open(g.r, 0, &a, &b, c1, c2) == TERN_OK);
    for (int i = 0; i < 10; i++) {
        TT_CHECK_EQ_INT(tern_relay_open(g.r, 0, &a, &b, r1, r2), TERN_OK);
        TT_CHECK(memcmp(r1, c1, 8) == 0 && memcmp(r2, c2, 8) == 0);
        TT_CHECK_EQ_INT(tern_relay_open(g.r, 0, &b, &a, r1, r2), TERN_OK);
        TT_CHECK(memcmp(r1, c2, 8) == 0 && memcmp(r2, c1, 8) == 0);
    }
    TT_CHECK_EQ_U64(stats(&g).sessions, 1);
    TT_CHECK_EQ_U64(stats(&g).reused, 20);
    /* a is in 4 sessions (opened at t = 1..4 s); a fifth that a asks for is refused */
    uint8_t ch[4][8], chb[4][8];
    for (int i = 0; i < 4; i++) {
        tern_addr_ipv4(&b, 10, 9, 9, (uint8_t)i, 7);
        TT_REQUIRE(tern_relay_open(g.r, (uint64_t)(i + 1) * S, &a, &b, ch[i], chb[i]) == TERN_OK);
    }
    tern_addr_ipv4(&b, 10, 9, 9, 200, 7);
    TT_CHECK_EQ_INT(tern_relay_open(g.r, 5 * S, &a, &b, c1, c2), TERN_ERR_LIMIT);
    TT_CHECK_EQ_U64(stats(&g).open_refused, 1);
    TT_CHECK_EQ_U64(stats(&g).sessions, 4);
    TT_CHECK_EQ_U64(stats(&g).opened, 4);
    /* but a as the target of a fifth: its least recently active session makes room, so nobody
     * can lock a out of the relay by opening sessions to it. Session 0 forwarded at 10 s, so
     * session 1 (opened at 2 s, silent since) is the one that goes. */
    uint8_t d[32] = {TERN_RELAY_TYPE};
    memcpy(d + 1, ch[0], 8);
    d[TERN_RELAY_HDR_LEN] = 0x40;
    tern_addr to;
    TT_REQUIRE(tern_relay_forward(g.r, 10 * S, &a, d, sizeof(d), &to) == (int)sizeof(d));
    TT_CHECK_EQ_INT(tern_relay_open(g.r, 20 * S, &b, &a, c1, c2), TERN_OK);
    TT_CHECK_EQ_U64(stats(&g).evicted, 1);
    TT_CHECK_EQ_U64(stats(&g).sessions, 4);
    TT_CHECK(!tern_relay_alive(g.r, ch[1]) && !tern_relay_alive(g.r, chb[1]));
    TT_CHECK(tern_relay_alive(g.r, ch[0]) && tern_relay_alive(g.r, ch[2]) &&
             tern_relay_alive(g.r, ch[3]) && tern_relay_alive(g.r, c1));
    /* tern_relay_close frees one by either channel, once */
    TT_CHECK_EQ_INT(tern_relay_close(g.r, chb[3]), TERN_OK);
    TT_CHECK_EQ_INT(tern_relay_close(g.r, ch[3]), TERN_ERR_NOT_FOUND);
    TT_CHECK_EQ_U64(stats(&g).closed, 1);
    TT_CHECK_EQ_U64(stats(&g).sessions, 3);
    /* the refused open left nothing behind: b (in one session) can be in 3 more */
    for (int i = 0; i < 3; i++) {
        tern_addr o;
        tern_addr_ipv4(&o, 10, 8, 8, (uint8_t)i, 7);
        TT_CHECK_EQ_INT(tern_relay_open(g.r, 20 * S, &b, &o, c1, c2), TERN_OK);
    }
    tern_addr o4;
    tern_addr_ipv4(&o4, 10, 8, 8, 99, 7);
    TT_CHECK_EQ_INT(tern_relay_open(g.r, 20 * S, &b, &o4, c1, c2), TERN_ERR_LIMIT);
    TT_CHECK_EQ_U64(stats(&g).sessions, 6);
    /* the server-wide limit */
    int ok = 0;
    for (int i = 0; i < 100; i++) {
        tern_addr p, q;
        tern_addr_ipv4(&p, 10, 7, 0, (uint8_t)i, 1);
        tern_addr_ipv4(&q, 10, 7, 1, (uint8_t)i, 1);
        if (tern_relay_open(g.r, 20 * S, &p, &q, c1, c2) == TERN_OK) ok++;
    }
    TT_CHECK_EQ_INT(ok, 50 - 6);
    TT_CHECK_EQ_U64(stats(&g).sessions, 50);
    TT_CHECK_EQ_U64(stats(&g).open_refused, 2 + 100 - 44);
    rig_free(&g);
}

static void test_rate_limit(void)
{
    tern_relay_config cfg;
    tern_relay_config_default(&cfg);
    cfg.rate_bytes_per_s = 1000000; /* 1 MB/s */
    cfg.burst_bytes = 100000;       /* 100 kB */
    rig g;
    rig_init(&g, &cfg);
    tern_addr a, b, to;
    addrs(&a, &b);
    uint8_t ca[8], cb[8], d[TERN_MAX_DATAGRAM];
    TT_REQUIRE(tern_relay_open(g.r, 0, &a, &b, ca, cb) == TERN_OK);
    /* 1000-byte datagrams at one instant: exactly the burst goes through, both directions
     * drawing on one bucket */
    int fwd = 0;
    for (int i = 0; i < 200; i++) {
        size_t n = make_dgram(d, (i & 1) ? cb : ca, 1000 - TERN_RELAY_HDR_LEN, 5);
        if (tern_relay_forward(g.r, 0, (i & 1) ? &b : &a, d, n, &to) == (int)n) fwd++;
    }
    TT_CHECK_EQ_INT(fwd, 100);
    TT_CHECK_EQ_U64(stats(&g).drop_rate_limited, 100);
    /* 10 ms later, 10 kB more */
    fwd = 0;
    for (int i = 0; i < 50; i++) {
        size_t n = make_dgram(d, ca, 1000 - TERN_RELAY_HDR_LEN, 5);
        if (tern_relay_forward(g.r, 10 * MS, &a, d, n, &to) == (int)n) fwd++;
    }
    TT_CHECK_EQ_INT(fwd, 10);
    /* a long pause refills to the burst, not beyond */
    fwd = 0;
    for (int i = 0; i < 300; i++) {
        size_t n = make_dgram(d, ca, 1000 - TERN_RELAY_HDR_LEN, 5);
        if (tern_relay_forward(g.r, 3600 * S, &a, d, n, &to) == (int)n) fwd++;
    }
    TT_CHECK_EQ_INT(fwd, 100);
    /* paced at exactly the rate (1000 bytes per ms) for a second: nothing dropped */
    uint64_t drops = stats(&g).drop_rate_limited;
    for (int i = 1; i <= 1000; i++) {
        size_t n = make_dgram(d, ca, 1000 - TERN_RELAY_HDR_LEN, 5);
        TT_CHECK_EQ_INT(tern_relay_forward(g.r, 3600 * S + (uint64_t)i * MS, &a, d, n, &to),
                        (int)n);
    }
    TT_CHECK_EQ_U64(stats(&g).drop_rate_limited, drops);
    rig_free(&g);

    /* rate 0: no limit */
    tern_relay_config_default(&cfg);
    cfg.rate_bytes_per_s = 0;
    rig_init(&g, &cfg);
    TT_REQUIRE(tern_relay_open(g.r, 0, &a, &b, ca, cb) == TERN_OK);
    for (int i = 0; i < 10000; i++) {
        size_t n = make_dgram(d, ca, TERN_RELAY_MAX_INNER, 5);
        TT_CHECK_EQ_INT(tern_relay_forward(g.r, 0, &a, d, n, &to), (int)n);
    }
    TT_CHECK_EQ_U64(stats(&g).drop_rate_limited, 0);
    rig_free(&g);
}

static void test_alloc_failures_leave_nothing(void)
{
    /* fail the k-th allocation of an open, for every k until one succeeds */
    for (uint64_t k = 1; k < 64; k++) {
        rig g;
        rig_init(&g, NULL);
        tern_addr a, b;
        uint8_t c1[8], c2[8];
        /* a few sessions first so that failures hit map growth as well */
        for (int i = 0; i < 12; i++) {
            tern_addr_ipv4(&a, 10, 1, 1, (uint8_t)i, 1);
            tern_addr_ipv4(&b, 10, 2, 2, (uint8_t)i, 1);
            TT_REQUIRE(tern_relay_open(g.r, 0, &a, &b, c1, c2) == TERN_OK);
        }
        g.mem.fail_at = g.mem.calls + k;
        addrs(&a, &b);
        int rc = tern_relay_open(g.r, 0, &a, &b, c1, c2);
        g.mem.fail_at = 0;
        if (rc == TERN_OK) {
            TT_CHECK_EQ_U64(stats(&g).sessions, 13);
            rig_free(&g);
            TT_CHECK(k > 1);
            return;
        }
        TT_CHECK_EQ_INT(rc, TERN_ERR_NOMEM);
        TT_CHECK_EQ_U64(stats(&g).sessions, 12);
        TT_CHECK_EQ_U64(stats(&g).mem_current, g.mem.current);
        /* the relay still works, and once every session has gone it holds what it did empty
         * (nothing half-made was left behind; a grown array may stay until then) */
        TT_CHECK_EQ_INT(tern_relay_open(g.r, 0, &a, &b, c1, c2), TERN_OK);
        tern_relay_handle_expiry(g.r, 3600 * S);
        TT_CHECK_EQ_U64(stats(&g).sessions, 0);
        TT_CHECK_EQ_U64(g.mem.current, g.base_mem);
        rig_free(&g);
    }
    TT_CHECK_MSG(0, "open never succeeded");
}

static void test_random_datagrams_never_amplify(void)
{
    rig g;
    rig_init(&g, NULL);
    enum { NS = 8 };
    tern_addr peer[NS][2];
    uint8_t ch[NS][2][8];
    for (int i = 0; i < NS; i++) {
        tern_addr_ipv4(&peer[i][0], 172, 16, 0, (uint8_t)i, 3000);
        tern_addr_ipv4(&peer[i][1], 172, 16, 1, (uint8_t)i, 3000);
        TT_REQUIRE(tern_relay_open(g.r, 0, &peer[i][0], &peer[i][1], ch[i][0], ch[i][1]) ==
                   TERN_OK);
    }
    tt_rng rng;
    tt_rng_seed(&rng, tt_seed() ^ 0x5eed);
    static uint8_t d[2048];
    uint64_t ok = 0;
    for (int it = 0; it < 200000; it++) {
        size_t len = (size_t)tt_rng_below(&rng, sizeof(d) + 1);
        tt_rand_fill(d, len, &rng);
        int sess = (int)tt_rng_below(&rng, NS), side = (int)tt_rng_below(&rng, 2);
        tern_addr from = peer[sess][side];
        uint64_t how = tt_rng_below(&rng, 4);
        if (how >= 1 && len >= 1) d[0] = TERN_RELAY_TYPE;
        if (how >= 2 && len >= TERN_RELAY_HDR_LEN) memcpy(d + 1, ch[sess][side], 8);
        if (how == 3) from.port ^= (uint16_t)tt_rng_below(&rng, 2); /* sometimes a wrong port */
        tern_addr to;
        memset(&to, 0, sizeof(to));
        int rc = tern_relay_forward(g.r, (uint64_t)it * 1000, &from, d, len, &to);
        TT_REQUIRE(rc <= (int)len);
        if (rc < 0) continue;
        ok++;
        /* forwarded: it came from the right place and goes to the other side, channel set */
        TT_CHECK_EQ_INT(rc, (int)len);
        TT_CHECK(tern_addr_equal(&from, &peer[sess][side]));
        TT_CHECK(tern_addr_equal(&to, &peer[sess][!side]));
        TT_CHECK(memcmp(d + 1, ch[sess][!side], 8) == 0);
        TT_CHECK(d[TERN_RELAY_HDR_LEN] & 0x40);
    }
    tern_relay_stats st = stats(&g);
    TT_CHECK(ok > 10000);
    TT_CHECK_EQ_U64(st.fwd_packets, ok);
    TT_CHECK(st.drop_short && st.drop_malformed && st.drop_oversize && st.drop_unknown_channel &&
             st.drop_wrong_source);
    TT_CHECK_EQ_U64(st.fwd_packets + st.drop_short + st.drop_malformed + st.drop_oversize +
                        st.drop_unknown_channel + st.drop_wrong_source + st.drop_rate_limited,
                    200000);
    rig_free(&g);
}

static const tt_case cases[] = {
    TT_CASE(test_forward_both_ways),
    TT_CASE(test_wrong_source_and_unknown_channel),
    TT_CASE(test_malformed_short_oversize),
    TT_CASE(test_idle_expiry_frees_memory),
    TT_CASE(test_limits),
    TT_CASE(test_rate_limit),
    TT_CASE(test_alloc_failures_leave_nothing),
    TT_CASE(test_random_datagrams_never_amplify),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
