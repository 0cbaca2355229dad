/*
 * Handshake tests on the simulated network: one round trip, 30% loss, wrong and substituted
 * keys, damaged packets of every handshake type, spoofed Initials (amplification, flood, retry),
 * version negotiation and refusal.
 */
#include <stdlib.h>
#include <string.h>

#include "support/tnet.h"
#include "core/packet.h"

#define MS (1000000ull)
#define S (1000000000ull)

static tern_addr SERVER_ADDR, CLIENT_ADDR;

static void addrs(void)
{
    tern_addr_ipv4(&SERVER_ADDR, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CLIENT_ADDR, 198, 51, 100, 7, 50000);
}

static void test_one_round_trip(void)
{
    addrs();
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SERVER_ADDR, 1, NULL, 1);
    tnet_node_init(&cli, s, &CLIENT_ADDR, 0, NULL, 2);
    tnet_link(s, &SERVER_ADDR, &CLIENT_ADDR, 50, 0, 0);
    tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
    /* client established after exactly one RTT (100 ms) */
    TT_CHECK_EQ_INT(sim_run_until(s, 100 * MS), SIM_OK);
    TT_CHECK_EQ_INT(cli.established, 1);
    TT_CHECK_EQ_INT(srv.established, 0);
    tern_conn_stats st;
    tern_conn_get_stats(c, &st);
    TT_CHECK_EQ_U64(st.handshake_ns, 100 * MS);
    /* the server confirms half an RTT later, on the client's first 1-RTT packet */
    TT_CHECK_EQ_INT(sim_run_until(s, 150 * MS), SIM_OK);
    TT_CHECK_EQ_INT(srv.established, 1);
    uint8_t id_seen[TERN_PEER_ID_LEN], id_real[TERN_PEER_ID_LEN];
    TT_REQUIRE(srv.conn != NULL);
    TT_CHECK_EQ_INT(tern_conn_peer_id(srv.conn, id_seen), TERN_OK);
    tern_peer_id(cli.key.pub, id_real);
    TT_CHECK(memcmp(id_seen, id_real, sizeof(id_real)) == 0);
    /* data both ways */
    TT_CHECK_EQ_INT(tern_conn_send_datagram(c, sim_now(s), (const uint8_t *)"hello", 5), TERN_OK);
    TT_CHECK_EQ_INT(tern_conn_send_datagram(srv.conn, sim_now(s), (const uint8_t *)"hi", 2),
                    TERN_OK);
    sim_run_until(s, 300 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, 1);
    TT_CHECK_EQ_U64(cli.datagrams, 1);
    tern_conn_get_stats(c, &st);
    TT_CHECK_EQ_U64(st.srtt_ns, 100 * MS); /* the confirming PING measured the RTT */
    TT_CHECK(st.aead == TERN_AEAD_AES256GCM || st.aead == TERN_AEAD_CHACHA20POLY1305);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_fifty_handshakes_30pct_loss(void)
{
    addrs();
    sim *s = sim_new(tt_seed());
    enum { N = 50 };
    static tnet_node srv, cli[N];
    tnet_node_init(&srv, s, &SERVER_ADDR, 1, NULL, 1);
    for (int i = 0; i < N; i++) {
        tern_addr a = CLIENT_ADDR;
        a.port = (uint16_t)(40000 + i);
        tnet_node_init(&cli[i], s, &a, 0, NULL, 100 + (uint64_t)i);
        tnet_link(s, &SERVER_ADDR, &a, 50, 0.30, 3);
        tnet_connect(s, &cli[i], &srv, NULL);
    }
    TT_CHECK_EQ_INT(sim_run_until(s, 15 * S), SIM_OK);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        ok += cli[i].established == 1 && cli[i].closed == 0;
        TT_CHECK_MSG(cli[i].established, "client %d: closed=%d err=%s", i, cli[i].closed,
                     tern_strerror(cli[i].close_err));
    }
    TT_CHECK_EQ_INT(ok, N);
    TT_CHECK_EQ_INT(srv.established, N);
    sim_link_stats ls;
    sim_total_link_stats(s, &ls);
    TT_CHECK_MSG(ls.dropped_loss > 0, "the link lost nothing");
    for (int i = 0; i < N; i++) tnet_node_free(&cli[i], s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_wrong_pinned_key(void)
{
    addrs();
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SERVER_ADDR, 1, NULL, 1);
    tnet_node_init(&cli, s, &CLIENT_ADDR, 0, NULL, 2);
    tnet_link(s, &SERVER_ADDR, &CLIENT_ADDR, 20, 0, 0);
    uint8_t wrong[TERN_KEY_LEN];
    memcpy(wrong, srv.key.pub, sizeof(wrong));
    wrong[0] ^= 1;
    tnet_connect(s, &cli, &srv, wrong);
    sim_run_until(s, 1 * S);
    TT_CHECK_EQ_INT(cli.established, 0);
    TT_CHECK_EQ_INT(cli.closed, 1);
    TT_CHECK_MSG(cli.close_err == TERN_ERR_BAD_SERVER_KEY, "err=%s", tern_strerror(cli.close_err));
    tern_endpoint_stats st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.rejects_sent, 1);
    TT_CHECK_EQ_U64(st.conns_current, 0);
    TT_CHECK_EQ_U64(st.handshakes_started, 0); /* no public-key work was done */
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* A man in the middle who swaps the ephemeral key in the server's Response for his own. */
typedef struct mitm {
    int swapped_response, swapped_initial;
    tern_keypair k;
    int target; /* 0: Response, 1: Initial */
} mitm;

static int mitm_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    (void)s;
    (void)now;
    mitm *m = user;
    if (pkt->len < 1 || !(pkt->data[0] & 0x80)) return SIM_PASS;
    int type = (pkt->data[0] >> 4) & 3;
    if (m->target == 0 && type == 1 && pkt->len > 22 + 32) {
        /* Response: header 21, noise_len varint (2 bytes), then e */
        memcpy(pkt->data + 23, m->k.pub, 32);
        m->swapped_response++;
    } else if (m->target == 1 && type == 0 && pkt->len >= 1200) {
        /* Initial: header 21, key hint 8, token_len 1 (0), noise_len 2, then e. The attacker
         * knows the server's public key, so he can recompute mac1 too: the DH must catch it. */
        memcpy(pkt->data + 21 + 8 + 1 + 2, m->k.pub, 32);
        m->swapped_initial++;
    }
    return SIM_PASS;
}

static void run_mitm(int target)
{
    addrs();
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SERVER_ADDR, 1, NULL, 1);
    tnet_node_init(&cli, s, &CLIENT_ADDR, 0, NULL, 2);
    tnet_link(s, &SERVER_ADDR, &CLIENT_ADDR, 20, 0, 0);
    mitm m = {0};
    m.target = target;
    tern_keypair_generate(&m.k);
    sim_set_middlebox(s, mitm_box, &m);
    tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 20 * S);
    TT_CHECK_EQ_INT(cli.established, 0);
    TT_CHECK_EQ_INT(srv.established, 0);
    TT_CHECK_EQ_INT(cli.closed, 1);
    tern_endpoint_stats st = tnet_stats(&srv), cst = tnet_stats(&cli);
    if (target == 0) {
        TT_CHECK(m.swapped_response > 0);
        TT_CHECK_MSG(cli.close_err == TERN_ERR_HANDSHAKE_AUTH, "err=%s",
                     tern_strerror(cli.close_err));
        TT_CHECK(cst.drop_auth > 0);
    } else {
        TT_CHECK(m.swapped_initial > 0);
        TT_CHECK_MSG(cli.close_err == TERN_ERR_HANDSHAKE_TIMEOUT, "err=%s",
                     tern_strerror(cli.close_err));
        TT_CHECK_EQ_U64(st.drop_auth, (uint64_t)m.swapped_initial);
        TT_CHECK_EQ_U64(st.conns_current, 0);
    }
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_key_substitution_response(void)
{
    run_mitm(0);
}

static void test_key_substitution_initial(void)
{
    run_mitm(1);
}

/* Flips one byte in the first packet of a chosen kind; the handshake must still complete. */
typedef struct flipper {
    int kind; /* 0 Initial, 1 Response, 2 client short, 3 server short */
    int done;
    uint64_t at;
    tt_rng rng;
    tern_addr client;
} flipper;

static int flip_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    (void)s;
    flipper *f = user;
    if (f->done || pkt->len == 0) return SIM_PASS;
    int is_long = pkt->data[0] & 0x80;
    int from_client = tern_addr_equal(&pkt->from, &f->client);
    int kind = is_long ? (from_client ? 0 : 1) : (from_client ? 2 : 3);
    if (kind != f->kind) return SIM_PASS;
    size_t limit = pkt->len;
    if (kind == 0) {
        /* inside the authenticated part (up to the end of mac1), not the padding */
        tern__long_hdr h;
        if (tern__long_decode(pkt->data, pkt->len, &h) != TERN_OK) return SIM_PASS;
        limit = h.mac1_covered + TERN__MAC1_LEN;
    }
    size_t pos = (size_t)tt_rng_below(&f->rng, limit);
    pkt->data[pos] ^= (uint8_t)(1 + tt_rng_below(&f->rng, 255));
    f->done = 1;
    f->at = now;
    return SIM_PASS;
}

static void test_flipped_byte_every_type(void)
{
    addrs();
    for (int kind = 0; kind < 4; kind++) {
        for (int trial = 0; trial < 8; trial++) {
            sim *s = sim_new(tt_derive_seed(tt_seed(), (uint64_t)(kind * 100 + trial)));
            tnet_node srv, cli;
            tnet_node_init(&srv, s, &SERVER_ADDR, 1, NULL, 1);
            tnet_node_init(&cli, s, &CLIENT_ADDR, 0, NULL, 2);
            tnet_link(s, &SERVER_ADDR, &CLIENT_ADDR, 20, 0, 0);
            flipper f = {0};
            f.kind = kind;
            f.client = CLIENT_ADDR;
            tt_rng_seed(&f.rng, sim_derive_seed(s, 99));
            sim_set_middlebox(s, flip_box, &f);
            tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
            sim_run_until(s, 200 * MS);
            /* make sure short packets flow in both directions after the handshake */
            if (cli.established && c) tern_conn_send_datagram(c, sim_now(s), (const uint8_t *)"x", 1);
            sim_run_until(s, 6 * S);
            if (cli.conn && srv.conn)
                tern_conn_send_datagram(srv.conn, sim_now(s), (const uint8_t *)"y", 1);
            sim_run_until(s, 7 * S);
            TT_CHECK_MSG(f.done, "kind %d: nothing flipped", kind);
            TT_CHECK_MSG(cli.established == 1 && srv.established == 1 && cli.closed == 0 &&
                             srv.closed == 0,
                         "kind %d trial %d: cli est=%d closed=%d (%s) srv est=%d", kind, trial,
                         cli.established, cli.closed, tern_strerror(cli.close_err),
                         srv.established);
            tern_endpoint_stats ss = tnet_stats(&srv), cs = tnet_stats(&cli);
            uint64_t dropped = ss.drop_auth + ss.drop_malformed + ss.drop_truncated +
                               ss.drop_unknown_cid + ss.drop_version + ss.drop_ignored +
                               cs.drop_auth + cs.drop_malformed + cs.drop_truncated +
                               cs.drop_unknown_cid + cs.drop_ignored + cs.drop_version;
            TT_CHECK_MSG(dropped >= 1, "kind %d trial %d: the damaged packet was not counted",
                         kind, trial);
            tnet_node_free(&cli, s);
            tnet_node_free(&srv, s);
            sim_del(s);
        }
    }
}

/* N genuine Initials from one throw-away client endpoint (1200 bytes each, into out). */
static int make_initials(const uint8_t server_pub[TERN_KEY_LEN], uint64_t seed, int n, uint8_t *out)
{
    tt_rng rng;
    tt_rng_seed(&rng, seed);
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.rand = tt_rand_fill;
    cfg.rand_user = &rng;
    tern_endpoint *ep;
    TT_REQUIRE(tern_endpoint_new(&cfg, 0, &ep) == TERN_OK);
    tern_addr a, b;
    tern_addr_ipv4(&a, 10, 0, 0, 1, 1);
    tern_addr_ipv4(&b, 10, 0, 0, 2, 2);
    int got = 0;
    static uint8_t buf[64 * TERN_MAX_DATAGRAM];
    tern_datagram d[64];
    for (int i = 0; i < n; i++) {
        tern_conn *c;
        TT_REQUIRE(tern_endpoint_connect(ep, 0, &a, &b, server_pub, &c) == TERN_OK);
        if ((i + 1) % 64 == 0 || i == n - 1) {
            int k;
            while ((k = tern_endpoint_send(ep, 0, d, 64, buf, sizeof(buf))) > 0)
                for (int j = 0; j < k; j++) {
                    TT_REQUIRE(d[j].len == 1200);
                    memcpy(out + (size_t)got * 1200, d[j].data, 1200);
                    got++;
                }
        }
    }
    tern_endpoint_del(ep);
    return got;
}

/* The Initial a throw-away client would send, for spoofing. */
static size_t make_initial(const uint8_t server_pub[TERN_KEY_LEN], uint64_t seed, uint8_t *out)
{
    return make_initials(server_pub, seed, 1, out) == 1 ? 1200 : 0;
}

typedef struct bytes_to {
    tern_addr victim;
    uint64_t bytes, packets;
} bytes_to;

static void count_trace(void *user, const sim_trace_event *ev)
{
    bytes_to *b = user;
    if (ev->kind == SIM_TR_SEND && ev->to && tern_addr_equal(ev->to, &b->victim)) {
        b->bytes += ev->len;
        b->packets++;
    }
}

static void test_spoofed_initial_amplification(void)
{
    addrs();
    sim *s = sim_new(tt_seed());
    tnet_node srv;
    tern_settings set;
    tern_settings_default(&set);
    set.handshake_timeout_ns = 120 * S; /* long enough that the 3x budget is what stops it */
    tnet_node_init(&srv, s, &SERVER_ADDR, 1, &set, 1);
    size_t base_mem = srv.mem.current;
    uint8_t pkt[TERN_MAX_DATAGRAM];
    size_t len = make_initial(srv.key.pub, 7, pkt);
    TT_CHECK_EQ_U64(len, 1200);
    bytes_to b = {0};
    tern_addr_ipv4(&b.victim, 203, 0, 113, 9, 9999); /* nobody lives there */
    sim_set_trace(s, count_trace, &b);
    TT_REQUIRE(sim_inject(s, 0, &b.victim, &SERVER_ADDR, pkt, len) == SIM_OK);
    sim_run_until(s, 1 * MS);
    TT_CHECK_EQ_U64(tnet_stats(&srv).conns_half_open, 1);
    TT_CHECK(srv.mem.current > base_mem);
    sim_run_until(s, 130 * S);
    TT_CHECK_MSG(b.bytes <= 3 * len, "server sent %llu bytes to an unvalidated address",
                 (unsigned long long)b.bytes);
    TT_CHECK(b.packets >= 2); /* it did retransmit, within the budget */
    tern_endpoint_stats st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.conns_current, 0);
    TT_CHECK_EQ_U64(st.conns_half_open, 0);
    TT_CHECK_MSG(st.amplification_blocked > 0, "sent %llu bytes in %llu packets, never blocked",
                 (unsigned long long)b.bytes, (unsigned long long)b.packets);
    TT_CHECK_EQ_U64(srv.mem.current, base_mem); /* freed at the handshake timeout */
    TT_CHECK_EQ_INT(srv.established, 0);
    TT_CHECK_EQ_INT(srv.closed, 0); /* the application never heard of it */
    tnet_node_free(&srv, s);
    sim_del(s);
}

typedef struct flood {
    tnet_node *srv;
    uint64_t max_conns, max_mem;
} flood;

static void watch_flood(void *user, const sim_trace_event *ev)
{
    (void)ev;
    flood *f = user;
    tern_endpoint_stats st = tnet_stats(f->srv);
    if (st.conns_current > f->max_conns) f->max_conns = st.conns_current;
    if (f->srv->mem.current > f->max_mem) f->max_mem = f->srv->mem.current;
}

static void run_flood(uint32_t max_half_open)
{
    addrs();
    sim *s = sim_new(tt_seed());
    tern_settings set;
    tern_settings_default(&set);
    set.max_half_open = max_half_open;
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SERVER_ADDR, 1, &set, 1);
    tnet_node_init(&cli, s, &CLIENT_ADDR, 0, NULL, 2);
    tnet_link(s, &SERVER_ADDR, &CLIENT_ADDR, 20, 0, 0);
    size_t base_mem = srv.mem.current;
    enum { N = 10000 };
    /* Every spoofed Initial is a genuine one (the attacker knows the server's public key), each
     * from a different random source address. */
    uint8_t *pkts = malloc((size_t)N * 1200);
    TT_REQUIRE(pkts != NULL);
    TT_REQUIRE(make_initials(srv.key.pub, 1000, N, pkts) == N);
    tt_rng rng;
    tt_rng_seed(&rng, sim_derive_seed(s, 5));
    for (int i = 0; i < N; i++) {
        tern_addr from;
        tern_addr_ipv4(&from, 100, (uint8_t)tt_rng_below(&rng, 256), (uint8_t)tt_rng_below(&rng, 256),
                       (uint8_t)tt_rng_below(&rng, 256), (uint16_t)(1024 + tt_rng_below(&rng, 60000)));
        TT_REQUIRE(sim_inject(s, (uint64_t)i * 100000, &from, &SERVER_ADDR, pkts + (size_t)i * 1200,
                              1200) == SIM_OK);
    }
    free(pkts);
    flood f = {&srv, 0, 0};
    sim_set_trace(s, watch_flood, &f);
    /* a legitimate client arrives in the middle of the flood */
    sim_run_until(s, 500 * MS);
    tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 2 * S);
    TT_CHECK_MSG(cli.established == 1 && srv.established == 1,
                 "legit client under flood: est=%d closed=%d (%s)", cli.established, cli.closed,
                 tern_strerror(cli.close_err));
    tern_endpoint_stats st = tnet_stats(&srv);
    /* everything the flood could do: at most max_half_open half-open connections */
    TT_CHECK_MSG(f.max_conns <= (uint64_t)max_half_open + 1, "max conns %llu > %u + 1",
                 (unsigned long long)f.max_conns, max_half_open);
    TT_CHECK(st.drop_auth + st.retries_sent + st.handshakes_started >= N);
    sim_run_until(s, 40 * S);
    st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.conns_current, 1); /* only the legitimate client */
    TT_CHECK_EQ_U64(st.conns_half_open, 0);
    tern_conn_close(cli.conn, sim_now(s), 0, "", 0);
    sim_run_until(s, 45 * S);
    TT_CHECK_EQ_U64(srv.mem.current, base_mem);
    TT_CHECK_MSG(f.max_mem - base_mem < 64 * 1024 + (uint64_t)max_half_open * 4096,
                 "memory grew by %llu bytes under the flood",
                 (unsigned long long)(f.max_mem - base_mem));
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_spoof_flood_threshold(void)
{
    run_flood(64);
}

static void test_spoof_flood_always_retry(void)
{
    run_flood(0);
}

static void test_version_negotiation(void)
{
    addrs();
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SERVER_ADDR, 1, NULL, 1);
    tnet_node_init(&cli, s, &CLIENT_ADDR, 0, NULL, 2);
    uint8_t pkt[TERN_MAX_DATAGRAM];
    size_t len = make_initial(srv.key.pub, 3, pkt);
    pkt[1] = 0xde; /* unknown version */
    sim_inject(s, 0, &CLIENT_ADDR, &SERVER_ADDR, pkt, len);
    sim_run_until(s, 10 * MS);
    TT_CHECK_EQ_U64(tnet_stats(&srv).version_negotiations_sent, 1);
    TT_CHECK_EQ_U64(tnet_stats(&srv).drop_version, 1);
    /* a short one gets nothing (no reflection) */
    sim_inject(s, sim_now(s), &CLIENT_ADDR, &SERVER_ADDR, pkt, 600);
    sim_run_until(s, 20 * MS);
    TT_CHECK_EQ_U64(tnet_stats(&srv).version_negotiations_sent, 1);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_refused_by_application(void)
{
    addrs();
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SERVER_ADDR, 1, NULL, 1);
    tnet_node_init(&cli, s, &CLIENT_ADDR, 0, NULL, 2);
    tnet_link(s, &SERVER_ADDR, &CLIENT_ADDR, 20, 0, 0);
    srv.refuse = 1;
    tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 5 * S);
    TT_CHECK_EQ_INT(cli.closed, 1);
    TT_CHECK_MSG(cli.close_err == TERN_ERR_REFUSED && cli.close_code == 2,
                 "err=%s code=%llu", tern_strerror(cli.close_err),
                 (unsigned long long)cli.close_code);
    TT_CHECK(strcmp(cli.reason, "refused by server") == 0);
    TT_CHECK_EQ_U64(tnet_stats(&srv).conns_current, 0);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static const tt_case cases[] = {
    TT_CASE(test_one_round_trip),
    TT_CASE(test_fifty_handshakes_30pct_loss),
    TT_CASE(test_wrong_pinned_key),
    TT_CASE(test_key_substitution_response),
    TT_CASE(test_key_substitution_initial),
    TT_CASE(test_flipped_byte_every_type),
    TT_CASE(test_spoofed_initial_amplification),
    TT_CASE(test_spoof_flood_threshold),
    TT_CASE(test_spoof_flood_always_retry),
    TT_CASE(test_version_negotiation),
    TT_CASE(test_refused_by_application),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
