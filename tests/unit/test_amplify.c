/*
 * Anti-amplification on every path, attacked as an authenticated peer would (docs/protocol.md
 * 9.6, docs/security.md, "Anti-amplification on every path"). The hostile client completes a real handshake and then seals
 * its own 1-RTT packets with its connection's keys (white box, as fuzz/fuzz_conn.c does), sent
 * from source addresses it does not own (sim_inject). Each test measures what the server sends
 * to those addresses, asserts the bound, prints the figures, and shows a legitimate client
 * served during the attack (messages delivered and a PING/PONG round trip).
 *
 *   (a) 500 packets of 31 bytes from 500 spoofed sources: bytes to each <= 3x bytes from it;
 *   (b) 2,000 PATH_CHALLENGEs from one unvalidated address: responses rate-limited, <= 3x;
 *   (c) an introduction whose candidates are someone else's addresses that never answer:
 *       datagrams to each <= probe_tries (punches, Initials and challenges together);
 *   (d) a replay of the client's Initial from another address that arrives first: the genuine
 *       client still connects, and the replay's address gets <= 3x.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "support/tnet.h"

#define MS (1000000ull)
#define S (1000000000ull)

/* ---------------------------------------------------------------- counting what goes where */

typedef struct dest {
    tern_addr from, to;
    uint64_t dgrams, bytes;
} dest;

typedef struct tally {
    dest d[1024];
    size_t n;
    tern_addr only_from; /* count datagrams from this address only (family NONE: all) */
} tally;

static dest *tally_get(tally *t, const tern_addr *from, const tern_addr *to)
{
    for (size_t i = 0; i < t->n; i++)
        if (tern_addr_equal(&t->d[i].to, to) && tern_addr_equal(&t->d[i].from, from))
            return &t->d[i];
    if (t->n == sizeof(t->d) / sizeof(t->d[0])) return NULL;
    dest *d = &t->d[t->n++];
    memset(d, 0, sizeof(*d));
    d->from = *from;
    d->to = *to;
    return d;
}

static void on_trace(void *user, const sim_trace_event *ev)
{
    tally *t = user;
    if (ev->kind != SIM_TR_SEND || ev->from == NULL || ev->to == NULL) return;
    if (t->only_from.family != TERN_AF_NONE && !tern_addr_equal(ev->from, &t->only_from)) return;
    dest *d = tally_get(t, ev->from, ev->to);
    if (d == NULL) return;
    d->dgrams++;
    d->bytes += ev->len;
}

static const dest *tally_find(const tally *t, const tern_addr *from, const tern_addr *to)
{
    for (size_t i = 0; i < t->n; i++)
        if (tern_addr_equal(&t->d[i].to, to) && tern_addr_equal(&t->d[i].from, from))
            return &t->d[i];
    return NULL;
}

/* ---------------------------------------------------------------- a server, a legitimate
 * client and a hostile one */

typedef struct scene {
    sim *s;
    tnet_node srv, good, bad;
    tern_conn *gc, *bc; /* the clients' connections */
    uint64_t good_flow, sent;
    tally t;
} scene;

static tern_addr SA, GA, BA;

static int not_both(void *arg)
{
    scene *sc = arg;
    return !(sc->good.established && sc->bad.established);
}

static void scene_init(scene *sc)
{
    memset(sc, 0, sizeof(*sc));
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&GA, 198, 51, 100, 7, 50000);
    tern_addr_ipv4(&BA, 198, 51, 100, 66, 40000);
    sc->s = sim_new(tt_seed());
    TT_REQUIRE(sc->s != NULL);
    sim_link_params lp;
    sim_link_params_init(&lp);
    lp.delay_ns = 10 * MS;
    sim_set_default_link(sc->s, &lp);
    tnet_node_init(&sc->srv, sc->s, &SA, 1, NULL, 1);
    tnet_node_init(&sc->good, sc->s, &GA, 0, NULL, 2);
    tnet_node_init(&sc->bad, sc->s, &BA, 0, NULL, 3);
    sc->t.only_from = SA;
    sim_set_trace(sc->s, on_trace, &sc->t);
    sc->gc = tnet_connect(sc->s, &sc->good, &sc->srv, NULL);
    sc->bc = tnet_connect(sc->s, &sc->bad, &sc->srv, NULL);
    TT_REQUIRE(sim_run_while(sc->s, not_both, sc, 2 * S) == SIM_OK);
    TT_REQUIRE(sim_run_until(sc->s, sim_now(sc->s) + 100 * MS) == SIM_OK);
    TT_REQUIRE(tern_flow_open(sc->gc, NULL, &sc->good_flow) == TERN_OK);
}

static void scene_free(scene *sc)
{
    tnet_node_free(&sc->bad, sc->s);
    tnet_node_free(&sc->good, sc->s);
    tnet_node_free(&sc->srv, sc->s);
    sim_del(sc->s);
}

/* The legitimate client keeps talking: a message and a PING every call. */
static void good_talks(scene *sc)
{
    uint8_t msg[500];
    memset(msg, 'g', sizeof(msg));
    if (tern_flow_send(sc->gc, sc->good_flow, sim_now(sc->s), msg, sizeof(msg), -1) == TERN_OK)
        sc->sent++;
    tern_conn_ping(sc->gc, sim_now(sc->s));
}

/* Checks the legitimate client was served: every message arrived, PINGs were answered. */
static void good_was_served(scene *sc, uint64_t rtt_before)
{
    TT_REQUIRE(sim_run_until(sc->s, sim_now(sc->s) + 1 * S) == SIM_OK);
    TT_CHECK(sc->sent > 0);
    TT_CHECK_EQ_U64(sc->srv.messages, sc->sent);
    TT_CHECK(sc->good.rtt_samples > rtt_before);
    TT_CHECK(tern_conn_get_state(sc->gc) == TERN_CONN_ESTABLISHED);
    printf("  legitimate client: %llu of %llu messages delivered, %llu PING round trips\n",
           (unsigned long long)sc->srv.messages, (unsigned long long)sc->sent,
           (unsigned long long)(sc->good.rtt_samples - rtt_before));
}

/* Seals frames as the hostile client's next 1-RTT packet. */
static size_t seal(tern_conn *x, const uint8_t *frames, size_t flen, uint8_t *pkt)
{
    uint64_t pn = x->tx.next_pn++;
    uint8_t *q = tern__short_encode(pkt, pkt + TERN_MAX_DATAGRAM, x->keys.tx_phase, x->remote_cid, pn, 4);
    TT_REQUIRE(q != NULL);
    size_t hl = (size_t)(q - pkt);
    TT_REQUIRE(tern__aead_seal(&x->keys.tx, pn, 0, pkt, hl, frames, flen, q) == TERN_OK);
    return hl + flen + TERN__AEAD_TAG_LEN;
}

/* ---------------------------------------------------------------- (a) spoofed sources */

static void test_spoofed_sources_get_at_most_3x(void)
{
    scene sc;
    scene_init(&sc);
    uint64_t rtt0 = sc.good.rtt_samples;
    tern_endpoint_stats st0 = tnet_stats(&sc.srv);
    enum { N = 500 };
    static tern_addr from[N];
    const uint8_t ping[2] = {TERN__FRAME_PING, 0};
    size_t len = 0;
    /* 500 packets over 1 s (one every 2 ms), each from a new address, while the legitimate
     * client talks every 100 ms */
    for (int i = 0; i < N; i++) {
        uint8_t pkt[TERN_MAX_DATAGRAM];
        len = seal(sc.bc, ping, sizeof(ping), pkt);
        tern_addr_ipv4(&from[i], 100, 64, (uint8_t)(i / 250), (uint8_t)(i % 250), (uint16_t)(1000 + i));
        TT_REQUIRE(sim_inject(sc.s, sim_now(sc.s), &from[i], &SA, pkt, len) == SIM_OK);
        if (i % 50 == 0) good_talks(&sc);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 2 * MS) == SIM_OK);
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 10 * S) == SIM_OK);
    TT_CHECK_EQ_INT(len, 31);
    uint64_t total = 0, worst = 0, reached = 0;
    for (int i = 0; i < N; i++) {
        const dest *d = tally_find(&sc.t, &SA, &from[i]);
        uint64_t b = d ? d->bytes : 0;
        total += b;
        if (b > worst) worst = b;
        if (b) reached++;
        TT_CHECK_MSG(b <= 3 * len, "%llu bytes to spoofed source %d (received %zu)",
                     (unsigned long long)b, i, len);
    }
    tern_endpoint_stats st = tnet_stats(&sc.srv);
    printf("  500 spoofed sources x %zu bytes: %llu bytes sent back in all (%.2fx), to %llu of "
           "them, at most %llu to one (%.2fx); new paths refused %llu, probes unpadded %llu, "
           "held %llu\n",
           len, (unsigned long long)total, (double)total / (double)(N * len),
           (unsigned long long)reached, (unsigned long long)worst, (double)worst / (double)len,
           (unsigned long long)(st.paths_refused - st0.paths_refused),
           (unsigned long long)(st.probes_unpadded - st0.probes_unpadded),
           (unsigned long long)(st.amplification_blocked - st0.amplification_blocked));
    TT_CHECK(total <= 3 * (uint64_t)N * len);
    TT_CHECK(st.paths_refused > st0.paths_refused); /* the per-connection rate of new paths */
    /* the hostile client's own connection was never moved to a spoofed address */
    TT_REQUIRE(sc.bad.conn != NULL);
    good_was_served(&sc, rtt0);
    scene_free(&sc);
}

/* ---------------------------------------------------------------- (b) challenge flood */

static void challenge_flood(int padded)
{
    scene sc;
    scene_init(&sc);
    uint64_t rtt0 = sc.good.rtt_samples;
    tern_endpoint_stats st0 = tnet_stats(&sc.srv);
    tern_addr ya;
    tern_addr_ipv4(&ya, 203, 0, 113, 99, 7777);
    uint64_t rx = 0;
    uint64_t t0 = sim_now(sc.s);
    /* 2,000 challenges over 2 s, one a millisecond, from one address that is not the client's */
    for (int i = 0; i < 2000; i++) {
        uint8_t frames[1200], pkt[TERN_MAX_DATAGRAM];
        size_t flen = padded ? 1200 - tern__conn_packet_overhead() : 9;
        memset(frames, 0, flen);
        TT_REQUIRE(tern__frame_put_path(frames, frames + flen, TERN__FRAME_PATH_CHALLENGE,
                                        0x1000 + (uint64_t)i) != NULL);
        size_t len = seal(sc.bc, frames, flen, pkt);
        rx += len;
        TT_REQUIRE(sim_inject(sc.s, sim_now(sc.s), &ya, &SA, pkt, len) == SIM_OK);
        if (i % 100 == 0) good_talks(&sc);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 1 * MS) == SIM_OK);
    }
    uint64_t secs = (sim_now(sc.s) - t0 + S - 1) / S;
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 5 * S) == SIM_OK);
    const dest *d = tally_find(&sc.t, &SA, &ya);
    uint64_t dg = d ? d->dgrams : 0, by = d ? d->bytes : 0;
    tern_endpoint_stats st = tnet_stats(&sc.srv);
    printf("  2,000 %s PATH_CHALLENGEs (%llu bytes) from one address: %llu responses, %llu "
           "bytes (%.2fx); limited %llu, unpadded %llu\n",
           padded ? "padded" : "small", (unsigned long long)rx, (unsigned long long)dg,
           (unsigned long long)by, (double)by / (double)rx,
           (unsigned long long)(st.responses_limited - st0.responses_limited),
           (unsigned long long)(st.probes_unpadded - st0.probes_unpadded));
    TT_CHECK(by <= 3 * rx);
    /* TERN__RESP_BURST at once, then one per TERN__RESP_GAP */
    TT_CHECK(dg >= 1);
    TT_CHECK(dg <= TERN__RESP_BURST + secs * (TERN_NS_PER_S / TERN__RESP_GAP) + 1);
    TT_CHECK(st.responses_limited - st0.responses_limited >= 2000 - dg);
    good_was_served(&sc, rtt0);
    scene_free(&sc);
}

static void test_challenge_flood_small(void)
{
    challenge_flood(0);
}

static void test_challenge_flood_padded(void)
{
    challenge_flood(1);
}

/* ---------------------------------------------------------------- (c) introduced candidates */

/* A relay for one session between two addresses (as ternd's: `0x81 | channel | packet`, the
 * channel replaced with the receiver's). */
typedef struct relay {
    sim_node *node;
    tern_addr addr, side[2];
    uint8_t ch[2][TERN_RELAY_CHANNEL_LEN];
    struct {
        tern_addr to;
        size_t len;
        uint8_t data[TERN_MAX_DATAGRAM];
    } q[256];
    size_t q_head, q_len;
    uint64_t forwarded;
} relay;

static void relay_recv(void *node, uint64_t now, const tern_addr *local, const tern_addr *remote,
                       const uint8_t *data, size_t len)
{
    (void)now;
    (void)local;
    relay *r = node;
    if (len <= 9 || data[0] != 0x81 || r->q_len == 256) return;
    for (int k = 0; k < 2; k++) {
        if (memcmp(data + 1, r->ch[k], TERN_RELAY_CHANNEL_LEN) != 0 ||
            !tern_addr_equal(remote, &r->side[k]))
            continue;
        size_t at = (r->q_head + r->q_len++) % 256;
        r->q[at].to = r->side[1 - k];
        r->q[at].len = len;
        memcpy(r->q[at].data, data, len);
        memcpy(r->q[at].data + 1, r->ch[1 - k], TERN_RELAY_CHANNEL_LEN);
        r->forwarded++;
        return;
    }
}

static int relay_send(void *node, uint64_t now, tern_datagram *dgrams, size_t max, uint8_t *buf,
                      size_t buf_len)
{
    (void)now;
    relay *r = node;
    size_t n = 0, off = 0;
    while (n < max && r->q_len > 0 && off + TERN_MAX_DATAGRAM <= buf_len) {
        memcpy(buf + off, r->q[r->q_head].data, r->q[r->q_head].len);
        dgrams[n].local = r->addr;
        dgrams[n].remote = r->q[r->q_head].to;
        dgrams[n].data = buf + off;
        dgrams[n].len = r->q[r->q_head].len;
        off += dgrams[n].len;
        n++;
        r->q_head = (r->q_head + 1) % 256;
        r->q_len--;
    }
    return (int)n;
}

static const sim_node_ops RELAY_OPS = {relay_recv, relay_send, NULL, NULL};

typedef struct wall {
    tern_addr a, b;
    uint64_t dropped;
} wall;

/* Nothing passes directly between the two peers: the connection lives on the relay, where
 * candidates are probed for as long as it lasts. */
static int wall_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    (void)s;
    (void)now;
    wall *w = user;
    if ((tern_addr_equal(&pkt->from, &w->a) && tern_addr_equal(&pkt->to, &w->b)) ||
        (tern_addr_equal(&pkt->from, &w->b) && tern_addr_equal(&pkt->to, &w->a))) {
        w->dropped++;
        return SIM_DROP;
    }
    return SIM_PASS;
}

static int a_not_established(void *arg)
{
    return tern_conn_get_state((tern_conn *)arg) != TERN_CONN_ESTABLISHED;
}

static void test_introduced_candidates_that_never_answer(void)
{
    sim *s = sim_new(tt_seed());
    TT_REQUIRE(s != NULL);
    sim_link_params lp;
    sim_link_params_init(&lp);
    lp.delay_ns = 20 * MS;
    sim_set_default_link(s, &lp);
    tally t;
    memset(&t, 0, sizeof(t));
    sim_set_trace(s, on_trace, &t);
    relay r;
    memset(&r, 0, sizeof(r));
    tern_addr_ipv4(&r.addr, 192, 0, 2, 1, 4433);
    r.node = sim_add_node(s, &RELAY_OPS, &r, &r.addr);
    TT_REQUIRE(r.node != NULL);
    tern_addr aa, ba;
    tern_addr_ipv4(&aa, 198, 51, 100, 10, 5000);
    tern_addr_ipv4(&ba, 198, 51, 100, 11, 5000);
    tnet_node a, b;
    tnet_node_init(&a, s, &aa, 1, NULL, 1);
    tnet_node_init(&b, s, &ba, 1, NULL, 2);
    r.side[0] = aa;
    r.side[1] = ba;
    memset(r.ch[0], 0xa1, TERN_RELAY_CHANNEL_LEN);
    memset(r.ch[1], 0xb2, TERN_RELAY_CHANNEL_LEN);
    wall w = {aa, ba, 0};
    sim_set_middlebox(s, wall_box, &w);

    /* victims: three sets of 7-8 ports on addresses nobody here owns (they never answer) */
    tern_addr v[3][8];
    for (int set = 0; set < 3; set++)
        for (int i = 0; i < 8; i++)
            tern_addr_ipv4(&v[set][i], 203, 0, 113, (uint8_t)(10 * set + i + 1), (uint16_t)(7000 + i));
    tern_peer_target ta, tb, tx;
    tern_peer_target_default(&ta);
    tern_peer_target_default(&tb);
    memset(ta.nonce, 0x5a, sizeof(ta.nonce));
    memcpy(tb.nonce, ta.nonce, sizeof(ta.nonce));
    /* A (initiator) was told B's candidates: 7 victims and B's real address (walled off) */
    memcpy(ta.peer_pub, b.key.pub, TERN_KEY_LEN);
    for (int i = 0; i < 7; i++) ta.cands[ta.n_cands++] = v[0][i];
    ta.cands[ta.n_cands++] = ba;
    ta.has_relay = 1;
    ta.relay.addr = r.addr;
    memcpy(ta.relay.channel, r.ch[0], TERN_RELAY_CHANNEL_LEN);
    /* B (target) was told A's: 7 victims and A's real address */
    memcpy(tb.peer_pub, a.key.pub, TERN_KEY_LEN);
    for (int i = 0; i < 7; i++) tb.cands[tb.n_cands++] = v[1][i];
    tb.cands[tb.n_cands++] = aa;
    tb.has_relay = 1;
    tb.relay.addr = r.addr;
    memcpy(tb.relay.channel, r.ch[1], TERN_RELAY_CHANNEL_LEN);
    /* and an introduction of a peer X that never connects: 8 victims, punched by B */
    tern_peer_target_default(&tx);
    memset(tx.peer_pub, 0x77, TERN_KEY_LEN);
    memset(tx.nonce, 0x33, sizeof(tx.nonce));
    for (int i = 0; i < 8; i++) tx.cands[tx.n_cands++] = v[2][i];
    uint64_t t0 = sim_now(s);
    tern_conn *ca = NULL;
    TT_REQUIRE(tern_endpoint_expect_peer(b.ep, t0, &ba, &tx) == TERN_OK);
    TT_REQUIRE(tern_endpoint_expect_peer(b.ep, t0, &ba, &tb) == TERN_OK);
    TT_REQUIRE(tern_endpoint_connect_peer(a.ep, t0, &aa, &ta, &ca) == TERN_OK);
    TT_REQUIRE(sim_run_while(s, a_not_established, ca, t0 + 10 * S) == SIM_OK);
    tern_path_info pi;
    tern_conn_path(ca, &pi);
    TT_CHECK(pi.relayed);
    printf("  connected through the relay after %llu ms\n",
           (unsigned long long)((sim_now(s) - t0) / MS));

    /* two minutes on the relay: a message and a PING from A every second */
    uint64_t flow, sent = 0, rtt0 = a.rtt_samples;
    TT_REQUIRE(tern_flow_open(ca, NULL, &flow) == TERN_OK);
    for (int sec = 0; sec < 120; sec++) {
        uint8_t msg[800];
        memset(msg, 'm', sizeof(msg));
        if (tern_flow_send(ca, flow, sim_now(s), msg, sizeof(msg), -1) == TERN_OK) sent++;
        tern_conn_ping(ca, sim_now(s));
        TT_REQUIRE(sim_run_until(s, sim_now(s) + 1 * S) == SIM_OK);
    }
    tern_settings defaults;
    tern_settings_default(&defaults);
    uint32_t tries = defaults.probe_tries;
    const char *who[3] = {"A (Initials, challenges) -> B's 7 victim candidates",
                          "B (punches, challenges) -> A's 7 victim candidates",
                          "B (punches) -> X's 8 victim candidates"};
    const tern_addr *sender[3] = {&aa, &ba, &ba};
    int count[3] = {7, 7, 8};
    uint64_t all = 0;
    for (int set = 0; set < 3; set++) {
        uint64_t dg = 0, by = 0, most = 0;
        for (int i = 0; i < count[set]; i++) {
            const dest *d = tally_find(&t, sender[set], &v[set][i]);
            uint64_t n = d ? d->dgrams : 0;
            dg += n;
            by += d ? d->bytes : 0;
            if (n > most) most = n;
            TT_CHECK_MSG(n <= tries, "%s: %llu datagrams to victim %d", who[set],
                         (unsigned long long)n, i);
            TT_CHECK(n > 0); /* hole punching still tried them */
        }
        all += by;
        printf("  %s: %llu datagrams, %llu bytes in 122 s; at most %llu to one (allowance %u)\n",
               who[set], (unsigned long long)dg, (unsigned long long)by, (unsigned long long)most,
               tries);
    }
    TT_CHECK(all <= (uint64_t)tries * 22 * TERN_MAX_DATAGRAM);
    tern_endpoint_stats sa = tnet_stats(&a), sb = tnet_stats(&b);
    printf("  probes_exhausted: A %llu, B %llu\n", (unsigned long long)sa.probes_exhausted,
           (unsigned long long)sb.probes_exhausted);
    TT_CHECK(sa.probes_exhausted >= 7 && sb.probes_exhausted >= 7);
    /* the connection itself was served throughout */
    TT_REQUIRE(sim_run_until(s, sim_now(s) + 2 * S) == SIM_OK);
    TT_CHECK_EQ_U64(b.messages, sent);
    TT_CHECK(a.rtt_samples >= rtt0 + 100);
    TT_CHECK(tern_conn_get_state(ca) == TERN_CONN_ESTABLISHED);
    printf("  over the relay: %llu of %llu messages delivered, %llu PING round trips, %llu "
           "datagrams forwarded\n", (unsigned long long)b.messages, (unsigned long long)sent,
           (unsigned long long)(a.rtt_samples - rtt0), (unsigned long long)r.forwarded);
    tnet_node_free(&a, s);
    tnet_node_free(&b, s);
    sim_node_remove(s, r.node);
    sim_del(s);
}

/* ---------------------------------------------------------------- (d) replayed Initial */

typedef struct replayer {
    tern_addr client, server, from;
    int done;
    uint64_t len;
} replayer;

/* Sees the client's first Initial and delivers a copy from another address at once, so that
 * the copy reaches the server 10 ms before the original. */
static int replay_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    replayer *r = user;
    if (!r->done && tern_addr_equal(&pkt->from, &r->client) &&
        tern_addr_equal(&pkt->to, &r->server) && pkt->len >= TERN_MIN_INITIAL_SIZE &&
        (pkt->data[0] & 0x80)) {
        r->done = 1;
        r->len = pkt->len;
        sim_inject(s, now, &r->from, &r->server, pkt->data, pkt->len);
    }
    return SIM_PASS;
}

static int good_not_established(void *arg)
{
    return !((tnet_node *)arg)->established;
}

static void test_replayed_initial_does_not_lock_the_client_out(void)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&GA, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    TT_REQUIRE(s != NULL);
    sim_link_params lp;
    sim_link_params_init(&lp);
    lp.delay_ns = 10 * MS;
    sim_set_default_link(s, &lp);
    tnet_node srv, good;
    tnet_node_init(&srv, s, &SA, 1, NULL, 1);
    tnet_node_init(&good, s, &GA, 0, NULL, 2);
    tally t;
    memset(&t, 0, sizeof(t));
    t.only_from = SA;
    sim_set_trace(s, on_trace, &t);
    replayer rp;
    memset(&rp, 0, sizeof(rp));
    rp.client = GA;
    rp.server = SA;
    tern_addr_ipv4(&rp.from, 203, 0, 113, 200, 6000);
    sim_set_middlebox(s, replay_box, &rp);
    uint64_t t0 = sim_now(s);
    tern_conn *gc = tnet_connect(s, &good, &srv, NULL);
    int rc = sim_run_while(s, good_not_established, &good, t0 + 5 * S);
    TT_CHECK(rp.done);
    TT_CHECK_EQ_INT(rc, SIM_OK);
    TT_REQUIRE(good.established == 1);
    uint64_t took = sim_now(s) - t0;
    TT_REQUIRE(sim_run_until(s, sim_now(s) + 200 * MS) == SIM_OK);
    /* a message and a PING round trip on the connection */
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(gc, NULL, &flow) == TERN_OK);
    TT_REQUIRE(tern_flow_send(gc, flow, sim_now(s), (const uint8_t *)"hello", 5, -1) == TERN_OK);
    TT_REQUIRE(tern_conn_ping(gc, sim_now(s)) == TERN_OK);
    TT_REQUIRE(sim_run_until(s, sim_now(s) + 5 * S) == SIM_OK);
    TT_CHECK_EQ_U64(srv.messages, 1);
    TT_CHECK(good.rtt_samples >= 1);
    TT_REQUIRE(srv.conn != NULL);
    TT_CHECK(tern_addr_equal(tern_conn_remote(srv.conn), &GA));
    const dest *d = tally_find(&t, &SA, &rp.from);
    uint64_t to_replayer = d ? d->bytes : 0;
    tern_endpoint_stats st = tnet_stats(&srv);
    printf("  a replay of the Initial arrived 10 ms first from another address: the client "
           "connected in %llu ms; %llu bytes went to the replay's address (%.2fx of %llu); "
           "initial_copies %llu\n",
           (unsigned long long)(took / MS), (unsigned long long)to_replayer,
           (double)to_replayer / (double)rp.len, (unsigned long long)rp.len,
           (unsigned long long)st.initial_copies);
    TT_CHECK(to_replayer <= 3 * rp.len);
    TT_CHECK_EQ_U64(st.initial_copies, 1);
    TT_CHECK_EQ_U64(st.handshakes_completed, 1);
    tnet_node_free(&good, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* (e) A flood of introductions cannot lock a target's expectations: the 65th replaces the
 * oldest (counted), and the newest peer is the one punched for, the evicted one no longer. */
static void test_expectation_flood_evicts_the_oldest(void)
{
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.is_server = 1;
    cfg.has_static_key = 1;
    TT_REQUIRE(tern_keypair_generate(&cfg.static_key) == TERN_OK);
    tern_endpoint *ep;
    uint64_t now = 1 * S;
    TT_REQUIRE(tern_endpoint_new(&cfg, now, &ep) == TERN_OK);
    tern_addr local;
    tern_addr_ipv4(&local, 10, 0, 0, 1, 4000);
    for (int i = 0; i < 65; i++) {
        tern_peer_target t;
        tern_peer_target_default(&t);
        memset(t.peer_pub, 0, sizeof(t.peer_pub));
        t.peer_pub[0] = (uint8_t)(i + 1);
        t.nonce[0] = (uint8_t)i;
        t.n_cands = 1;
        tern_addr_ipv4(&t.cands[0], 10, 1, 0, (uint8_t)(i + 1), 5000);
        TT_CHECK_EQ_INT(tern_endpoint_expect_peer(ep, now, &local, &t), TERN_OK);
        now += 1 * MS;
    }
    tern_endpoint_stats st;
    tern_endpoint_get_stats(ep, &st);
    TT_CHECK_EQ_U64(st.expects_evicted, 1);
    /* punches due now: one to each pending peer's candidate; none to the evicted first one */
    tern_endpoint_handle_expiry(ep, now);
    static uint8_t buf[64 * TERN_MAX_DATAGRAM];
    tern_datagram d[64];
    int n, to_first = 0, to_newest = 0, total = 0;
    while ((n = tern_endpoint_send(ep, now, d, 64, buf, sizeof(buf))) > 0) {
        for (int k = 0; k < n; k++) {
            total++;
            if (d[k].remote.ip[3] == 1) to_first++;
            if (d[k].remote.ip[3] == 65) to_newest++;
        }
    }
    printf("amplify: 65 expectations: evicted %llu, punches now %d (to the evicted one %d, to "
           "the newest %d)\n",
           (unsigned long long)st.expects_evicted, total, to_first, to_newest);
    TT_CHECK_EQ_INT(to_first, 0);
    TT_CHECK_EQ_INT(to_newest, 1);
    TT_CHECK_EQ_INT(total, 64);
    tern_endpoint_del(ep);
}

static const tt_case cases[] = {
    TT_CASE(test_spoofed_sources_get_at_most_3x),
    TT_CASE(test_challenge_flood_small),
    TT_CASE(test_challenge_flood_padded),
    TT_CASE(test_introduced_candidates_that_never_answer),
    TT_CASE(test_replayed_initial_does_not_lock_the_client_out),
    TT_CASE(test_expectation_flood_evicts_the_oldest),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
