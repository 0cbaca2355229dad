/*
 * Connection-life tests on the simulated network: keep-alives over 10 minutes, idle timeout,
 * close with code and reason, stateless reset after a server restart, replayed and damaged
 * 1-RTT packets, integrity-only mode, cipher choice, and datagrams over an impaired link.
 */
#include <stdio.h>
#include <string.h>

#include "support/tnet.h"

#define MS (1000000ull)
#define S (1000000000ull)

static tern_addr SA, CA;

static void setup(sim **s, tnet_node *srv, tnet_node *cli, const tern_settings *ss,
                  const tern_settings *cs, double delay_ms)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    *s = sim_new(tt_seed());
    tnet_node_init(srv, *s, &SA, 1, ss, 1);
    tnet_node_init(cli, *s, &CA, 0, cs, 2);
    tnet_link(*s, &SA, &CA, delay_ms, 0, 0);
    tnet_connect(*s, cli, srv, NULL);
    TT_REQUIRE(sim_run_until(*s, (uint64_t)(4 * delay_ms) * MS + 10 * MS) == SIM_OK);
    TT_REQUIRE(cli->established == 1 && srv->established == 1);
}

static void teardown(sim *s, tnet_node *srv, tnet_node *cli)
{
    tnet_node_free(cli, s);
    tnet_node_free(srv, s);
    sim_del(s);
}

typedef struct counter {
    tern_addr from;
    uint64_t packets;
} counter;

static void count_from(void *user, const sim_trace_event *ev)
{
    counter *c = user;
    if (ev->kind == SIM_TR_SEND && ev->from && tern_addr_equal(ev->from, &c->from)) c->packets++;
}

static void test_keepalive_holds_ten_minutes(void)
{
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, NULL, NULL, 50);
    counter cnt = {CA, 0};
    sim_set_trace(s, count_from, &cnt);
    TT_CHECK_EQ_INT(sim_run_until(s, 600 * S), SIM_OK);
    TT_CHECK_EQ_INT(cli.closed, 0);
    TT_CHECK_EQ_INT(srv.closed, 0);
    TT_CHECK(cli.conn != NULL && tern_conn_get_state(cli.conn) == TERN_CONN_ESTABLISHED);
    /* a PING every 15 s (or less: answering the server's PINGs resets the clock) */
    TT_CHECK_RANGE(cnt.packets, 600 / 15 - 2, 2 * 600 / 15 + 4);
    TT_CHECK(cli.rtt_samples >= 600 / 15 / 2);
    /* and still usable */
    TT_CHECK_EQ_INT(tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"late", 4),
                    TERN_OK);
    sim_run_until(s, 601 * S);
    TT_CHECK_EQ_U64(srv.datagrams, 1);
    teardown(s, &srv, &cli);
}

static void test_idle_timeout(void)
{
    tern_settings set;
    tern_settings_default(&set);
    set.keepalive_ns = 0;
    set.idle_timeout_ns = 5 * S;
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, &set, &set, 10);
    uint64_t t0 = sim_now(s);
    sim_run_until(s, t0 + 4 * S);
    TT_CHECK_EQ_INT(cli.closed, 0);
    sim_run_until(s, t0 + 6 * S);
    TT_CHECK_EQ_INT(cli.closed, 1);
    TT_CHECK_EQ_INT(srv.closed, 1);
    TT_CHECK_EQ_INT(cli.close_err, TERN_ERR_IDLE_TIMEOUT);
    TT_CHECK_EQ_INT(srv.close_err, TERN_ERR_IDLE_TIMEOUT);
    TT_CHECK_EQ_INT(cli.freed, 1);
    TT_CHECK_EQ_INT(srv.freed, 1);
    TT_CHECK_EQ_U64(tnet_stats(&srv).conns_current, 0);
    teardown(s, &srv, &cli);
}

static void test_idle_timeout_is_the_smaller_one(void)
{
    tern_settings ss, cs;
    tern_settings_default(&ss);
    tern_settings_default(&cs);
    ss.keepalive_ns = cs.keepalive_ns = 0;
    ss.idle_timeout_ns = 3 * S;
    cs.idle_timeout_ns = 60 * S;
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, &ss, &cs, 10);
    sim_run_until(s, sim_now(s) + 4 * S);
    TT_CHECK_EQ_INT(cli.closed, 1);
    TT_CHECK_EQ_INT(cli.close_err, TERN_ERR_IDLE_TIMEOUT);
    teardown(s, &srv, &cli);
}

static void test_close_delivers_code_and_reason(void)
{
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, NULL, NULL, 20);
    size_t base = srv.mem.current;
    static const char why[] = "going home";
    TT_CHECK_EQ_INT(tern_conn_close(cli.conn, sim_now(s), 4242, why, strlen(why)), TERN_OK);
    TT_CHECK_EQ_INT(tern_conn_close(cli.conn, sim_now(s), 1, "", 0), TERN_ERR_STATE);
    TT_CHECK_EQ_INT(cli.closed, 1);
    TT_CHECK_EQ_INT(cli.close_err, TERN_ERR_LOCAL_CLOSED);
    sim_run_until(s, sim_now(s) + 100 * MS);
    TT_CHECK_EQ_INT(srv.closed, 1);
    TT_CHECK_EQ_INT(srv.close_err, TERN_ERR_PEER_CLOSED);
    TT_CHECK_EQ_U64(srv.close_code, 4242);
    TT_CHECK(strcmp(srv.reason, why) == 0);
    sim_run_until(s, sim_now(s) + 5 * S);
    TT_CHECK_EQ_INT(srv.freed, 1);
    TT_CHECK_EQ_INT(cli.freed, 1);
    TT_CHECK(srv.mem.current < base);
    TT_CHECK_EQ_U64(tnet_stats(&srv).conns_current, 0);
    TT_CHECK_EQ_U64(tnet_stats(&cli).conns_current, 0);
    teardown(s, &srv, &cli);
}

static void test_stateless_reset_after_server_restart(void)
{
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, NULL, NULL, 20);
    /* the server process dies and comes back with the same key and address, no state */
    tern_keypair key = srv.key;
    tnet_node_free(&srv, s);
    tnet_node_init(&srv, s, &SA, 1, NULL, 1);
    TT_CHECK(memcmp(srv.key.pub, key.pub, sizeof(key.pub)) == 0);
    uint64_t t0 = sim_now(s);
    TT_CHECK_EQ_INT(tern_conn_send_datagram(cli.conn, t0, (const uint8_t *)"anyone?", 7), TERN_OK);
    sim_run_until(s, t0 + 100 * MS);
    TT_CHECK_EQ_INT(cli.closed, 1);
    TT_CHECK_MSG(cli.close_err == TERN_ERR_STATELESS_RESET, "err=%s",
                 tern_strerror(cli.close_err));
    TT_CHECK(tnet_stats(&srv).resets_sent >= 1);
    TT_CHECK_EQ_U64(tnet_stats(&cli).resets_received, 1);
    teardown(s, &srv, &cli);
}

/* Records every short packet the client sends; replays or damages on request. */
typedef struct tap {
    tern_addr from;
    uint8_t last[TERN_MAX_DATAGRAM];
    size_t last_len;
    int flip_next;
    int seen_plain;
    const char *needle;
} tap;

static int tap_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    (void)s;
    (void)now;
    tap *t = user;
    if (!tern_addr_equal(&pkt->from, &t->from) || pkt->len == 0 || (pkt->data[0] & 0x80))
        return SIM_PASS;
    if (t->needle && memmem(pkt->data, pkt->len, t->needle, strlen(t->needle))) t->seen_plain++;
    if (t->flip_next) {
        pkt->data[pkt->len / 2] ^= 0x40;
        t->flip_next = 0;
        return SIM_PASS;
    }
    memcpy(t->last, pkt->data, pkt->len);
    t->last_len = pkt->len;
    return SIM_PASS;
}

static void test_replay_and_damage_of_1rtt_packets(void)
{
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, NULL, NULL, 20);
    tap t = {0};
    t.from = CA;
    t.needle = "secret payload";
    sim_set_middlebox(s, tap_box, &t);
    tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"secret payload", 14);
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, 1);
    TT_CHECK_EQ_INT(t.seen_plain, 0); /* encrypted */
    /* replay the captured packet five times */
    for (int i = 0; i < 5; i++) sim_inject(s, sim_now(s), &CA, &SA, t.last, t.last_len);
    sim_run_until(s, sim_now(s) + 10 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, 1);
    TT_CHECK_EQ_U64(tnet_stats(&srv).drop_replay, 5);
    /* damage the next one: dropped and counted, the connection lives on */
    t.flip_next = 1;
    tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"two", 3);
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, 1);
    TT_CHECK_EQ_U64(tnet_stats(&srv).drop_auth, 1);
    tern_conn_stats st;
    tern_conn_get_stats(srv.conn, &st);
    TT_CHECK_EQ_U64(st.drop_auth, 1);
    tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"three", 5);
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, 2);
    TT_CHECK_EQ_INT(srv.closed + cli.closed, 0);
    teardown(s, &srv, &cli);
}

/* Counts the client's short-header packets by their packet-number length (byte 0's PP). */
static int pn_len_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    (void)s;
    (void)now;
    uint64_t *by_len = user;
    if (tern_addr_equal(&pkt->from, &CA) && pkt->len > 0 && !(pkt->data[0] & 0x80))
        by_len[(pkt->data[0] & 3) + 1]++;
    return SIM_PASS;
}

/* Data packets carry a 2-byte packet number once the peer acknowledged something (twice the
 * distance from the largest acknowledged fits; docs/protocol.md section 4), so each is 2 bytes
 * shorter than with 4; the receiver reconstructs the full number and delivers everything. */
static void test_short_packet_numbers(void)
{
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, NULL, NULL, 20);
    uint64_t by_len[5] = {0};
    sim_set_middlebox(s, pn_len_box, by_len);
    for (int i = 0; i < 300; i++) {
        TT_CHECK_EQ_INT(tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"x", 1),
                        TERN_OK);
        sim_run_until(s, sim_now(s) + 2 * MS);
    }
    sim_run_until(s, sim_now(s) + 100 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, 300);
    TT_CHECK_RANGE(by_len[2], 290, 400);
    TT_CHECK_EQ_U64(by_len[1], 0);
    TT_CHECK_EQ_U64(tnet_stats(&srv).drop_auth, 0);
    teardown(s, &srv, &cli);
}

static void test_integrity_only_mode(void)
{
    tern_settings set;
    tern_settings_default(&set);
    set.integrity_only = 1;
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, &set, &set, 20);
    tern_conn_stats st;
    tern_conn_get_stats(cli.conn, &st);
    TT_CHECK_EQ_INT(st.integrity_only, 1);
    tap t = {0};
    t.from = CA;
    t.needle = "public comment";
    sim_set_middlebox(s, tap_box, &t);
    tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"public comment", 14);
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, 1);
    TT_CHECK_EQ_INT(t.seen_plain, 1); /* readable on the wire */
    t.flip_next = 1;                  /* but not forgeable */
    tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"public comment", 14);
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, 1);
    TT_CHECK_EQ_U64(tnet_stats(&srv).drop_auth, 1);
    teardown(s, &srv, &cli);

    /* a server that does not allow it keeps encrypting */
    tern_settings plain;
    tern_settings_default(&plain);
    setup(&s, &srv, &cli, &plain, &set, 20);
    tern_conn_get_stats(cli.conn, &st);
    TT_CHECK_EQ_INT(st.integrity_only, 0);
    teardown(s, &srv, &cli);
}

static void test_cipher_choice(void)
{
    tern_settings chacha;
    tern_settings_default(&chacha);
    chacha.aead = TERN_AEAD_CHACHA20POLY1305;
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, NULL, &chacha, 20);
    tern_conn_stats st;
    tern_conn_get_stats(cli.conn, &st);
    TT_CHECK_EQ_INT(st.aead, TERN_AEAD_CHACHA20POLY1305);
    tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"x", 1);
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, 1);
    teardown(s, &srv, &cli);

    setup(&s, &srv, &cli, NULL, NULL, 20);
    tern_conn_get_stats(cli.conn, &st);
    extern int tern__aes_available(void);
    TT_CHECK_EQ_INT(st.aead, tern__aes_available() ? TERN_AEAD_AES256GCM
                                                   : TERN_AEAD_CHACHA20POLY1305);
    teardown(s, &srv, &cli);
}

/* A link that drops datagrams over `mtu` bytes (IP with DF set: too big is gone). */
static int mtu_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    (void)s;
    (void)now;
    return pkt->len > *(size_t *)user ? SIM_DROP : SIM_PASS;
}

/* Path MTU discovery: over an unlimited path the connection moves to 1472-byte datagrams; over
 * a path that carries at most 1400 bytes it settles at 1400 after the larger probes are lost;
 * no probe loss counts as a lost packet or slows the data; with no_pmtud it stays at 1200. */
static void test_path_mtu_discovery(void)
{
    static const size_t mtus[] = {1500, 1400, 1300};
    static const size_t expect[] = {1472, 1400, 1200};
    for (int off = 0; off < 2; off++) {
        for (size_t i = 0; i < 3; i++) {
            tern_settings set;
            tern_settings_default(&set);
            set.no_pmtud = (uint8_t)off;
            sim *s;
            tnet_node srv, cli;
            setup(&s, &srv, &cli, &set, &set, 20);
            size_t mtu = mtus[i];
            sim_link_set_middlebox(sim_link_lookup(s, &CA, &SA), mtu_box, &mtu);
            sim_link_set_middlebox(sim_link_lookup(s, &SA, &CA), mtu_box, &mtu);
            /* data flows while discovery runs */
            uint64_t flow;
            TT_REQUIRE(tern_flow_open(cli.conn, NULL, &flow) == TERN_OK);
            static uint8_t buf[4 << 20];
            TT_CHECK_EQ_INT(tern_flow_send(cli.conn, flow, sim_now(s), buf, sizeof(buf), -1),
                            TERN_OK);
            TT_CHECK_EQ_INT(sim_run_until(s, sim_now(s) + 10 * S), SIM_OK);
            size_t want = off ? 1200 : expect[i];
            size_t overhead = 1 + TERN_CID_LEN + 4 + 16; /* short header, tag */
            size_t dg = tern_conn_max_datagram(cli.conn);
            TT_CHECK_MSG(dg + overhead + 2 + 1 <= want && dg + overhead + 4 + 1 >= want,
                         "path %zu: max datagram %zu, want a %zu-byte packet", mtu, dg, want);
            TT_CHECK_EQ_U64(srv.messages, 1);
            tern_conn_stats st;
            tern_conn_get_stats(cli.conn, &st);
            TT_CHECK_EQ_U64(st.packets_lost, 0);
            tnet_node_free(&cli, s);
            tnet_node_free(&srv, s);
            sim_del(s);
        }
    }
}

/* Key updates: with a key every 300 packets, 6 MB each way over a lossy, reordering link
 * arrive intact while both sides move through many keys; a flipped key-phase bit is a forgery. */
static void test_key_update(void)
{
    tern_settings set;
    tern_settings_default(&set);
    set.key_update_packets = 300;
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, &set, &set, 10);
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 10 * MS;
    p.jitter_ns = 2 * MS;
    p.rate_bps = 50000000;
    p.queue_bytes = 256 * 1024;
    p.loss = 0.01;
    p.reorder = 0.02;
    sim_link_set_both(s, &SA, &CA, &p);
    uint64_t fc, fs;
    TT_REQUIRE(tern_flow_open(cli.conn, NULL, &fc) == TERN_OK);
    TT_REQUIRE(tern_flow_open(srv.conn, NULL, &fs) == TERN_OK);
    static uint8_t buf[6 << 20];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)(i * 31 + 7);
    TT_CHECK_EQ_INT(tern_flow_send(cli.conn, fc, sim_now(s), buf, sizeof(buf), -1), TERN_OK);
    TT_CHECK_EQ_INT(tern_flow_send(srv.conn, fs, sim_now(s), buf, sizeof(buf), -1), TERN_OK);
    TT_CHECK_EQ_INT(sim_run_until(s, sim_now(s) + 20 * S), SIM_OK);
    TT_CHECK_EQ_U64(srv.messages, 1);
    TT_CHECK_EQ_U64(cli.messages, 1);
    TT_CHECK_EQ_U64(srv.message_bytes, sizeof(buf));
    tern_conn_stats a, b;
    tern_conn_get_stats(cli.conn, &a);
    tern_conn_get_stats(srv.conn, &b);
    printf("    key updates: client %llu, server %llu (%llu and %llu packets sent)\n",
           (unsigned long long)a.key_updates, (unsigned long long)b.key_updates,
           (unsigned long long)a.tx_packets, (unsigned long long)b.tx_packets);
    TT_CHECK(a.key_updates >= a.tx_packets / 300 / 2);
    TT_CHECK(b.key_updates >= 10);
    TT_CHECK(a.key_updates + 1 >= b.key_updates && b.key_updates + 1 >= a.key_updates);
    TT_CHECK(tern_conn_get_state(cli.conn) == TERN_CONN_ESTABLISHED);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_datagrams_over_impaired_link(void)
{
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, NULL, NULL, 30);
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 30 * MS;
    p.jitter_ns = 5 * MS;
    p.rate_bps = 10000000;
    p.queue_bytes = 64 * 1024;
    p.loss = 0.02;
    p.burst_max = 3;
    p.reorder = 0.01;
    p.duplicate = 0.01;
    p.corrupt = 0.01;
    sim_link_set_both(s, &SA, &CA, &p);
    uint8_t msg[1000];
    memset(msg, 0xab, sizeof(msg));
    uint64_t sent = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t now = sim_now(s);
        if (tern_conn_send_datagram(cli.conn, now, msg, sizeof(msg)) == TERN_OK) sent++;
        sim_run_until(s, now + 1 * MS); /* 8 Mbit/s offered */
    }
    sim_run_until(s, sim_now(s) + 1 * S);
    sim_link_stats ls = *sim_link_get_stats(sim_link_lookup(s, &CA, &SA));
    TT_CHECK_EQ_U64(sent, 2000);
    /* nothing delivered twice (duplicates are replays), nothing damaged accepted */
    uint64_t lost = ls.dropped_loss + ls.dropped_queue + ls.corrupted;
    TT_CHECK_MSG(srv.datagrams <= sent && srv.datagrams + lost + 5 >= sent,
                 "got %llu of %llu, link lost %llu", (unsigned long long)srv.datagrams,
                 (unsigned long long)sent, (unsigned long long)lost);
    TT_CHECK(ls.duplicated > 0 && ls.corrupted > 0 && ls.reordered > 0);
    tern_endpoint_stats st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.drop_replay, ls.duplicated);
    TT_CHECK(st.drop_auth >= ls.corrupted - 2); /* a corrupted duplicate may be counted once */
    TT_CHECK_EQ_INT(srv.closed + cli.closed, 0);
    teardown(s, &srv, &cli);
}

static void test_api_errors(void)
{
    sim *s;
    tnet_node srv, cli;
    setup(&s, &srv, &cli, NULL, NULL, 10);
    uint8_t big[2000] = {0};
    size_t max = tern_conn_max_datagram(cli.conn);
    TT_CHECK(max >= 1100 && max < 1200);
    TT_CHECK_EQ_INT(tern_conn_send_datagram(cli.conn, sim_now(s), big, max), TERN_OK);
    TT_CHECK_EQ_INT(tern_conn_send_datagram(cli.conn, sim_now(s), big, max + 1),
                    TERN_ERR_TOO_LARGE);
    int again = 0;
    for (int i = 0; i < 2000; i++)
        if (tern_conn_send_datagram(cli.conn, sim_now(s), big, 10) == TERN_ERR_AGAIN) again++;
    TT_CHECK(again > 0);
    TT_CHECK_EQ_INT(tern_endpoint_connect(NULL, 0, &CA, &SA, srv.key.pub, NULL),
                    TERN_ERR_INVALID_ARG);
    TT_CHECK(strcmp(tern_strerror(TERN_ERR_BAD_SERVER_KEY), "unknown error") != 0);
    TT_CHECK(strcmp(tern_strerror(12345), "unknown error") == 0);
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.is_server = 1; /* without a key */
    tern_endpoint *ep = NULL;
    TT_CHECK_EQ_INT(tern_endpoint_new(&cfg, 0, &ep), TERN_ERR_INVALID_ARG);
    teardown(s, &srv, &cli);
}

static void test_out_of_memory_everywhere(void)
{
    /* every allocation of a handshake fails once in turn: errors, never crashes or leaks */
    for (uint64_t k = 1; k < 40; k++) {
        tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
        tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
        sim *s = sim_new(tt_seed());
        tnet_node srv, cli;
        tnet_node_init(&srv, s, &SA, 1, NULL, 1);
        tnet_node_init(&cli, s, &CA, 0, NULL, 2);
        tnet_link(s, &SA, &CA, 10, 0, 0);
        srv.mem.fail_at = srv.mem.calls + k;
        cli.mem.fail_at = cli.mem.calls + k;
        tern_conn *c = NULL;
        int rc = tern_endpoint_connect(cli.ep, 0, &CA, &SA, srv.key.pub, &c);
        TT_CHECK(rc == TERN_OK || rc == TERN_ERR_NOMEM);
        sim_run_until(s, 20 * S);
        tnet_node_free(&cli, s);
        tnet_node_free(&srv, s);
        sim_del(s);
    }
}

static const tt_case cases[] = {
    TT_CASE(test_keepalive_holds_ten_minutes),
    TT_CASE(test_idle_timeout),
    TT_CASE(test_idle_timeout_is_the_smaller_one),
    TT_CASE(test_close_delivers_code_and_reason),
    TT_CASE(test_stateless_reset_after_server_restart),
    TT_CASE(test_replay_and_damage_of_1rtt_packets),
    TT_CASE(test_short_packet_numbers),
    TT_CASE(test_integrity_only_mode),
    TT_CASE(test_cipher_choice),
    TT_CASE(test_datagrams_over_impaired_link),
    TT_CASE(test_path_mtu_discovery),
    TT_CASE(test_key_update),
    TT_CASE(test_api_errors),
    TT_CASE(test_out_of_memory_everywhere),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
