/*
 * The whole relay path on the simulated network, with the real parts on both ends: a server node
 * (support/rdv_node) running a tern endpoint, the rendezvous server and the relay on one port
 * (tern_rdv_config.relay_sessions),
 * and two peers that register, get introduced, and connect with tern_endpoint_connect_peer /
 * tern_endpoint_expect_peer from what PEER_INFO and INTRODUCED carry (the RELAY candidate is the
 * wildcard 0.0.0.0:4433, which each peer reads as the server's own address). A middlebox drops
 * everything between the two peers, so the connection can only form through the relay.
 * Checks: it forms (relayed) a little after relay_after; 2,000 messages arrive in order, exactly
 * once; the relay forwarded them without ever holding the plaintext marker the messages carry;
 * once the block lifts the connection moves to the direct path, nothing more is relayed, and the
 * idle session is freed, leaving the relay's memory where it started.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/rdv_node.h"
#include "support/tnet.h"
#include "tern/relay.h"
#include "tern/rendezvous.h"

#define MS (1000000ull)
#define S (1000000000ull)
#define MARKER "plaintext-marker-that-must-not-cross-the-relay"

/* ---------------------------------------------------------------- peers */

typedef struct peer {
    tnet_node n;
    sim *s;
    tern_conn *rdv;      /* its rendezvous connection */
    uint64_t flow;
    int has_flow, registered, introduced;
    tern_rdv_msg intro;  /* PEER_INFO or INTRODUCED (fixed fields only) */
    tern_conn *p2p;      /* the connection to the other peer */
    uint64_t next_seq, delivered, bad;
} peer;

static void peer_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d,
                            size_t len)
{
    (void)flow;
    peer *p = n->user;
    if (c == p->rdv) {
        tern_rdv_msg m;
        if (tern_rdv_decode(d, len, &m) != TERN_OK) {
            p->bad++;
            return;
        }
        if (m.kind == TERN_RDV_REGISTERED) p->registered = 1;
        if (m.kind == TERN_RDV_PEER_INFO || m.kind == TERN_RDV_INTRODUCED) {
            m.group = m.service = m.method = m.payload = m.members = NULL;
            p->intro = m;
            p->introduced = 1;
        }
        return;
    }
    /* peer to peer: "<seq u64>MARKER..." in order */
    p->p2p = c;
    uint64_t seq = 0;
    if (len < 8) {
        p->bad++;
        return;
    }
    for (int i = 0; i < 8; i++) seq = seq << 8 | d[i];
    if (seq != p->next_seq) p->bad++;
    p->next_seq = seq + 1;
    p->delivered++;
}

static void peer_init(peer *p, sim *s, const rdv_node *sv, uint8_t last, uint64_t stream)
{
    memset(p, 0, sizeof(*p));
    p->s = s;
    tern_addr a;
    tern_addr_ipv4(&a, 198, 51, 100, last, 5000);
    tnet_node_init(&p->n, s, &a, 1, NULL, stream); /* a server endpoint: it accepts its peer */
    p->n.user = p;
    p->n.on_message = peer_on_message;
    TT_REQUIRE(tern_endpoint_connect(p->n.ep, sim_now(s), &a, &sv->addr, sv->key.pub, &p->rdv) ==
               TERN_OK);
}

static void peer_send(peer *p, const tern_rdv_msg *m)
{
    if (!p->has_flow) {
        TT_REQUIRE(tern_flow_open(p->rdv, NULL, &p->flow) == TERN_OK);
        p->has_flow = 1;
    }
    TT_REQUIRE(tern_rdv_send(p->rdv, p->flow, sim_now(p->s), m) == TERN_OK);
    sim_node_wake(p->s, p->n.node);
}

/* The peer target an introduction describes; an unspecified relay IP is the server's. */
static void target_of(const peer *p, const tern_addr *server_addr, tern_peer_target *t)
{
    const tern_rdv_msg *m = &p->intro;
    tern_peer_target_default(t);
    memcpy(t->peer_pub, m->pubkey, TERN_KEY_LEN);
    memcpy(t->nonce, m->nonce, TERN_PUNCH_NONCE_LEN);
    static const uint8_t zero[16];
    for (size_t i = 0; i < m->n_cands; i++) {
        const tern_rdv_cand *c = &m->cands[i];
        if (c->kind != TERN_RDV_CAND_RELAY) {
            if (t->n_cands < TERN_MAX_CANDIDATES) t->cands[t->n_cands++] = c->addr;
            continue;
        }
        if (!m->has_channel) continue;
        t->has_relay = 1;
        t->relay.addr = c->addr;
        size_t iplen = c->addr.family == TERN_AF_INET ? 4 : 16;
        if (memcmp(c->addr.ip, zero, iplen) == 0) {
            t->relay.addr = *server_addr;
            t->relay.addr.port = c->addr.port;
        }
        memcpy(t->relay.channel, m->channel, TERN_RELAY_CHANNEL_LEN);
    }
}

/* ---------------------------------------------------------------- the network */

typedef struct block {
    tern_addr a, b;
    int on;
    uint64_t dropped;
} block;

static int same_ip(const tern_addr *x, const tern_addr *y)
{
    return x->family == y->family && memcmp(x->ip, y->ip, 4) == 0;
}

static int blocker(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    (void)s, (void)now;
    block *b = user;
    if (b->on && ((same_ip(&pkt->from, &b->a) && same_ip(&pkt->to, &b->b)) ||
                  (same_ip(&pkt->from, &b->b) && same_ip(&pkt->to, &b->a)))) {
        b->dropped++;
        return SIM_DROP;
    }
    return SIM_PASS;
}

typedef struct scene {
    sim *s;
    rdv_node sv; /* the rendezvous server with its relay on the same port, as ternd runs them */
    rdv_needle marker; /* relayed datagrams carrying the plaintext marker */
    peer a, b;
    block blk;
} scene;

static int not_registered(void *arg)
{
    scene *sc = arg;
    return !(sc->a.registered && sc->b.registered);
}

static int not_introduced(void *arg)
{
    scene *sc = arg;
    return !(sc->a.introduced && sc->b.introduced);
}

static int a_not_established(void *arg)
{
    scene *sc = arg;
    return sc->a.p2p == NULL || tern_conn_get_state(sc->a.p2p) != TERN_CONN_ESTABLISHED;
}

static void send_seq(scene *sc, uint64_t flow, uint64_t *seq, int n)
{
    uint8_t buf[1100];
    for (int i = 0; i < n; i++) {
        memset(buf, 'x', sizeof(buf));
        for (int k = 0; k < 8; k++) buf[k] = (uint8_t)(*seq >> (56 - 8 * k));
        memcpy(buf + 8, MARKER, sizeof(MARKER) - 1);
        if (tern_flow_send(sc->a.p2p, flow, sim_now(sc->s), buf, sizeof(buf), -1) != TERN_OK)
            return;
        (*seq)++;
    }
}

static void test_relayed_connection_end_to_end(void)
{
    scene sc;
    memset(&sc, 0, sizeof(sc));
    sc.s = sim_new(tt_seed());
    TT_REQUIRE(sc.s != NULL);
    sim_link_params lp;
    sim_link_params_init(&lp);
    lp.delay_ns = 20 * MS;
    sim_set_default_link(sc.s, &lp);
    rdv_node_opts o = {.with_relay = 1};
    rdv_node_init(&sc.sv, sc.s, &o);
    sc.marker.text = MARKER;
    sc.sv.relay_tap = rdv_needle_tap;
    sc.sv.relay_tap_user = &sc.marker;
    peer_init(&sc.a, sc.s, &sc.sv, 10, 1);
    peer_init(&sc.b, sc.s, &sc.sv, 11, 2);
    sc.blk.a = sc.a.n.addr;
    sc.blk.b = sc.b.n.addr;
    sc.blk.on = 1;
    sim_set_middlebox(sc.s, blocker, &sc.blk);

    /* register (no LOCAL candidates), then A asks for B */
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 500 * MS) == SIM_OK);
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    peer_send(&sc.a, &m);
    peer_send(&sc.b, &m);
    TT_REQUIRE(sim_run_while(sc.s, not_registered, &sc, sim_now(sc.s) + 2 * S) == SIM_OK);
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    m.has_peer_id = 1;
    tern_peer_id(sc.b.n.key.pub, m.peer_id);
    peer_send(&sc.a, &m);
    TT_REQUIRE(sim_run_while(sc.s, not_introduced, &sc, sim_now(sc.s) + 2 * S) == SIM_OK);
    TT_REQUIRE(sc.a.intro.kind == TERN_RDV_PEER_INFO && sc.b.intro.kind == TERN_RDV_INTRODUCED);
    TT_REQUIRE(sc.a.intro.has_channel && sc.b.intro.has_channel);
    tern_relay_stats rs;
    tern_relay_get_stats(sc.sv.relay, &rs);
    TT_CHECK_EQ_U64(rs.sessions, 1);

    /* B expects A; A connects over B's candidates and the relay */
    tern_peer_target ta, tb;
    target_of(&sc.a, &sc.sv.addr, &ta);
    target_of(&sc.b, &sc.sv.addr, &tb);
    TT_REQUIRE(ta.has_relay && tb.has_relay);
    TT_CHECK(tern_addr_equal(&ta.relay.addr, &sc.sv.addr));
    TT_CHECK_EQ_INT(ta.n_cands, 1); /* B's PUBLIC address */
    uint64_t t0 = sim_now(sc.s);
    TT_REQUIRE(tern_endpoint_expect_peer(sc.b.n.ep, t0, &sc.b.n.addr, &tb) == TERN_OK);
    TT_REQUIRE(tern_endpoint_connect_peer(sc.a.n.ep, t0, &sc.a.n.addr, &ta, &sc.a.p2p) == TERN_OK);
    sim_node_wake(sc.s, sc.a.n.node);
    sim_node_wake(sc.s, sc.b.n.node);
    TT_REQUIRE(sim_run_while(sc.s, a_not_established, &sc, t0 + 10 * S) == SIM_OK);
    uint64_t took = sim_now(sc.s) - t0;
    tern_path_info pi;
    tern_conn_path(sc.a.p2p, &pi);
    printf("connected through ternd's relay after %llu ms (relayed %d)\n",
           (unsigned long long)(took / MS), pi.relayed);
    TT_CHECK(pi.relayed);
    TT_CHECK(took >= 2 * S && took < 3 * S);
    TT_CHECK(sc.blk.dropped > 0);

    /* 2,000 messages through the relay */
    uint64_t flow, seq = 0;
    TT_REQUIRE(tern_flow_open(sc.a.p2p, NULL, &flow) == TERN_OK);
    for (int step = 0; step < 40; step++) {
        send_seq(&sc, flow, &seq, 50);
        sim_node_wake(sc.s, sc.a.n.node);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 2 * S) == SIM_OK);
    TT_CHECK_EQ_U64(seq, 2000);
    TT_CHECK_EQ_U64(sc.b.delivered, 2000);
    TT_CHECK_EQ_U64(sc.b.bad, 0);
    tern_relay_get_stats(sc.sv.relay, &rs);
    printf("relay: %llu datagrams, %llu bytes forwarded; drops: unknown %llu wrong source %llu "
           "malformed %llu rate %llu\n",
           (unsigned long long)rs.fwd_packets, (unsigned long long)rs.fwd_bytes,
           (unsigned long long)rs.drop_unknown_channel, (unsigned long long)rs.drop_wrong_source,
           (unsigned long long)rs.drop_malformed, (unsigned long long)rs.drop_rate_limited);
    TT_CHECK(rs.fwd_bytes > 2000 * 1100);
    TT_CHECK_EQ_U64(rs.drop_wrong_source + rs.drop_unknown_channel + rs.drop_malformed, 0);
    TT_CHECK_EQ_U64(sc.marker.seen, 0); /* the relay only ever held ciphertext */
    TT_CHECK_EQ_U64(sc.sv.relay_q_full, 0);

    /* the block lifts: the connection moves to the direct path and the relay falls idle */
    sc.blk.on = 0;
    for (int step = 0; step < 60; step++) {
        send_seq(&sc, flow, &seq, 10);
        sim_node_wake(sc.s, sc.a.n.node);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
    }
    tern_conn_path(sc.a.p2p, &pi);
    TT_CHECK(!pi.relayed);
    tern_relay_get_stats(sc.sv.relay, &rs);
    uint64_t fwd = rs.fwd_packets;
    send_seq(&sc, flow, &seq, 100);
    sim_node_wake(sc.s, sc.a.n.node);
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 2 * S) == SIM_OK);
    TT_CHECK_EQ_U64(sc.b.delivered, seq);
    TT_CHECK_EQ_U64(sc.b.bad, 0);
    tern_relay_get_stats(sc.sv.relay, &rs);
    TT_CHECK(rs.fwd_packets - fwd <= 2); /* at most a keep-alive of the relay route */

    /* 90 s on the direct path, a few messages a second: the relay forwards only A's keep-alive
     * challenges (every 20 s) and B's answers, and keeps the session for a fallback */
    fwd = rs.fwd_packets;
    for (int step = 0; step < 90; step++) {
        send_seq(&sc, flow, &seq, 5);
        sim_node_wake(sc.s, sc.a.n.node);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + S) == SIM_OK);
    }
    tern_relay_get_stats(sc.sv.relay, &rs);
    printf("90 s direct: the relay forwarded %llu keep-alive datagrams; sessions %llu\n",
           (unsigned long long)(rs.fwd_packets - fwd), (unsigned long long)rs.sessions);
    TT_CHECK_EQ_U64(rs.sessions, 1);
    TT_CHECK_EQ_U64(rs.expired, 0);
    TT_CHECK(rs.fwd_packets - fwd >= 8 && rs.fwd_packets - fwd <= 14);
    TT_CHECK_EQ_U64(sc.b.delivered, seq);

    /* the direct path dies: A falls back to the relay it kept, nothing is lost */
    sc.blk.on = 1;
    uint64_t blocked_at = sim_now(sc.s), fell_at = 0;
    for (int step = 0; step < 50; step++) {
        send_seq(&sc, flow, &seq, 20);
        sim_node_wake(sc.s, sc.a.n.node);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
        tern_conn_path(sc.a.p2p, &pi);
        if (pi.relayed && fell_at == 0) fell_at = sim_now(sc.s);
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 2 * S) == SIM_OK);
    tern_conn_path(sc.a.p2p, &pi);
    printf("direct path blocked: back on ternd's relay after %llu ms; %llu messages delivered\n",
           (unsigned long long)((fell_at - blocked_at) / MS), (unsigned long long)sc.b.delivered);
    TT_CHECK(pi.relayed);
    TT_CHECK_EQ_U64(pi.fallbacks, 1);
    TT_CHECK(fell_at > blocked_at && fell_at - blocked_at <= 2 * S);
    TT_CHECK_EQ_U64(sc.b.delivered, seq);
    TT_CHECK_EQ_U64(sc.b.bad, 0);

    /* the connection closes; 60 s idle later the session is freed */
    TT_REQUIRE(tern_conn_close(sc.a.p2p, sim_now(sc.s), 0, NULL, 0) == TERN_OK);
    sim_node_wake(sc.s, sc.a.n.node);
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 62 * S) == SIM_OK);
    tern_relay_get_stats(sc.sv.relay, &rs);
    TT_CHECK_EQ_U64(rs.sessions, 0);
    TT_CHECK_EQ_U64(rs.expired, 1);
    TT_CHECK_EQ_U64(sc.sv.lmem.current, sc.sv.relay_base_mem);
    TT_CHECK_EQ_U64(sc.marker.seen, 0);

    tnet_node_free(&sc.a.n, sc.s);
    tnet_node_free(&sc.b.n, sc.s);
    rdv_node_free(&sc.sv);
    sim_del(sc.s);
}

static const tt_case cases[] = {
    TT_CASE(test_relayed_connection_end_to_end),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
