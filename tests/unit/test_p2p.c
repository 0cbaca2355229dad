/*
 * Peer to peer on the simulated network: hole punching through modelled NATs of every RFC 4787
 * kind, the relay route when punching cannot work, the move from the relay to a direct path
 * with nothing lost, a relay that sees only ciphertext, peers behind one NAT, NAT rebinding
 * of an ordinary client, and the initiator of a direct connection migrating (tern_conn_migrate).
 *
 * The NATs are a middlebox model (mapping and filtering as RFC 4787 names them); the server is
 * support/rdv_node, a tern endpoint (the peers connect to it, so their NATs hold the mapping the
 * server saw) with ternd's relay (tern_relay) on the same address, a session opened between the
 * two public addresses it saw as the rendezvous server does for an introduction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/rdv_node.h"
#include "support/tnet.h"

#define MS (1000000ull)
#define S (1000000000ull)

/* ---------------------------------------------------------------- NAT model */

enum { NAT_NONE = 0, NAT_FULL, NAT_RESTRICTED, NAT_PORT_RESTRICTED, NAT_SYMMETRIC };
static const char *const NAT_NAME[] = {"public", "full-cone", "restricted", "port-restricted",
                                       "symmetric"};

typedef struct nat_map {
    tern_addr in;       /* inside address */
    tern_addr dst;      /* symmetric: the one destination of this mapping */
    uint16_t port;      /* public port */
    tern_addr contacted[32];
    size_t n_contacted;
} nat_map;

typedef struct nat {
    int type;
    uint8_t net;        /* inside addresses are 10.net.0.x */
    tern_addr pub;      /* public IP (port unused) */
    nat_map maps[64];
    size_t n;
    uint16_t next_port;
    uint64_t dropped_in;
    int rebind;         /* next outbound packet gets a fresh mapping (NAT rebinding) */
    int scramble;       /* so many outbound packets leave from a random port (an on-path
                           attacker rewriting sources) */
} nat;

typedef struct world {
    nat nats[2];
    size_t n_nats;
    int block_direct;   /* drop everything between the two NATs' public sides */
    tern_addr block_a, block_b;
    uint64_t blocked;
} world;

static int inside(const nat *n, const tern_addr *a)
{
    return n->type != NAT_NONE && a->ip[0] == 10 && a->ip[1] == n->net;
}

static int same_ip(const tern_addr *a, const tern_addr *b)
{
    return a->family == b->family && memcmp(a->ip, b->ip, 4) == 0;
}

static nat_map *nat_out(nat *n, const tern_addr *from, const tern_addr *to)
{
    if (n->rebind) { /* the NAT forgets every mapping of this host */
        n->rebind = 0;
        for (size_t i = 0; i < n->n;)
            if (tern_addr_equal(&n->maps[i].in, from)) n->maps[i] = n->maps[--n->n];
            else i++;
    }
    for (size_t i = 0; i < n->n; i++) {
        nat_map *m = &n->maps[i];
        if (!tern_addr_equal(&m->in, from)) continue;
        if (n->type == NAT_SYMMETRIC && !tern_addr_equal(&m->dst, to)) continue;
        return m;
    }
    if (n->n == 64) return NULL;
    nat_map *m = &n->maps[n->n++];
    memset(m, 0, sizeof(*m));
    m->in = *from;
    m->dst = *to;
    m->port = n->next_port;
    n->next_port = (uint16_t)(n->next_port + (n->type == NAT_SYMMETRIC ? 7 : 1));
    return m;
}

static int nat_in_ok(const nat *n, const nat_map *m, const tern_addr *from)
{
    switch (n->type) {
    case NAT_FULL: return 1;
    case NAT_SYMMETRIC: return tern_addr_equal(&m->dst, from);
    default:
        for (size_t i = 0; i < m->n_contacted; i++) {
            if (n->type == NAT_RESTRICTED && same_ip(&m->contacted[i], from)) return 1;
            if (tern_addr_equal(&m->contacted[i], from)) return 1;
        }
        return 0;
    }
}

static int nat_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    (void)s;
    (void)now;
    world *w = user;
    /* out through the sender's NAT */
    for (size_t i = 0; i < w->n_nats; i++) {
        nat *n = &w->nats[i];
        if (!inside(n, &pkt->from) || inside(n, &pkt->to)) continue;
        if (same_ip(&pkt->to, &n->pub)) return SIM_DROP; /* no hairpinning */
        nat_map *m = nat_out(n, &pkt->from, &pkt->to);
        if (m == NULL) return SIM_DROP;
        int known = 0;
        for (size_t k = 0; k < m->n_contacted; k++)
            if (tern_addr_equal(&m->contacted[k], &pkt->to)) known = 1;
        if (!known && m->n_contacted < 32) m->contacted[m->n_contacted++] = pkt->to;
        pkt->from = n->pub;
        pkt->from.port = m->port;
        if (n->scramble > 0) {
            n->scramble--;
            pkt->from.port = (uint16_t)(20000 + 37 * n->scramble);
        }
    }
    /* private addresses do not route between sites */
    if (pkt->to.ip[0] == 10) {
        int lan = 0;
        for (size_t i = 0; i < w->n_nats; i++)
            if (inside(&w->nats[i], &pkt->to) && inside(&w->nats[i], &pkt->from)) lan = 1;
        if (!lan) return SIM_DROP;
    }
    if (w->block_direct &&
        ((same_ip(&pkt->from, &w->block_a) && same_ip(&pkt->to, &w->block_b)) ||
         (same_ip(&pkt->from, &w->block_b) && same_ip(&pkt->to, &w->block_a)))) {
        w->blocked++;
        return SIM_DROP;
    }
    /* in through the receiver's NAT */
    for (size_t i = 0; i < w->n_nats; i++) {
        nat *n = &w->nats[i];
        if (n->type == NAT_NONE || !same_ip(&pkt->to, &n->pub)) continue;
        for (size_t k = 0; k < n->n; k++) {
            nat_map *m = &n->maps[k];
            if (m->port != pkt->to.port) continue;
            if (!nat_in_ok(n, m, &pkt->from)) break;
            pkt->to = m->in;
            return SIM_PASS;
        }
        n->dropped_in++;
        return SIM_DROP;
    }
    return SIM_PASS;
}

/* ---------------------------------------------------------------- the server and its relay */

/* The server is support/rdv_node with its relay (tern_relay, as ternd runs it on the tern port);
 * the peers only connect to it, so that their NATs hold the mapping the server saw. */
#define MARKER "plaintext-marker-that-must-not-cross-the-relay"

/* ---------------------------------------------------------------- a scenario */

typedef struct scene {
    sim *s;
    world w;
    rdv_node sv;
    uint8_t ch[2][TERN_RELAY_CHANNEL_LEN]; /* the relay session's channels: A's, B's */
    rdv_needle marker;                     /* relayed datagrams carrying the plaintext marker */
    tnet_node a, b;
    tern_addr a_pub, b_pub; /* as the server sees them */
    tern_conn *ca;          /* A's connection to B */
    /* delivery check: B gets messages "<seq>" in order (and A gets B's, a_*) */
    uint64_t next_expected, bad, delivered;
    uint64_t a_next, a_bad, a_delivered;
} scene;

static void check_seq(const uint8_t *d, size_t len, uint64_t *next, uint64_t *bad,
                      uint64_t *delivered)
{
    uint64_t seq = 0;
    if (len < 8) {
        (*bad)++;
        return;
    }
    for (int i = 0; i < 8; i++) seq = seq << 8 | d[i];
    if (seq != *next) (*bad)++;
    *next = seq + 1;
    (*delivered)++;
}

static void a_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d, size_t len)
{
    (void)c;
    (void)flow;
    scene *sc = n->user;
    check_seq(d, len, &sc->a_next, &sc->a_bad, &sc->a_delivered);
}

static void b_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d, size_t len)
{
    (void)c;
    (void)flow;
    scene *sc = n->user;
    check_seq(d, len, &sc->next_expected, &sc->bad, &sc->delivered);
}

/* Places peer `idx` (0 = A, 1 = B) behind a NAT of `type` (or on a public address). */
static tern_addr place(scene *sc, int idx, int type, int shared_nat)
{
    tern_addr at;
    if (type == NAT_NONE) {
        tern_addr_ipv4(&at, 198, 51, 100, (uint8_t)(10 + idx), 5000);
        return at;
    }
    nat *n;
    if (shared_nat && sc->w.n_nats == 1) {
        n = &sc->w.nats[0];
    } else {
        n = &sc->w.nats[sc->w.n_nats++];
        memset(n, 0, sizeof(*n));
        n->type = type;
        n->net = (uint8_t)(1 + idx);
        tern_addr_ipv4(&n->pub, 203, 0, 113, (uint8_t)(1 + idx), 0);
        n->next_port = (uint16_t)(40000 + 1000 * idx);
    }
    tern_addr_ipv4(&at, 10, n->net, 0, (uint8_t)(2 + idx), 5000);
    return at;
}

static int both_registered(void *arg)
{
    scene *sc = arg;
    return !(sc->a.established >= 1 && sc->b.established >= 1 && sc->sv.n_conns >= 2);
}

static void scene_init(scene *sc, int ta, int tb, int shared_nat, double delay_ms)
{
    memset(sc, 0, sizeof(*sc));
    sc->s = sim_new(tt_seed());
    TT_REQUIRE(sc->s != NULL);
    sim_link_params lp;
    sim_link_params_init(&lp);
    lp.delay_ns = (uint64_t)(delay_ms * (double)MS);
    sim_set_default_link(sc->s, &lp);
    sim_set_middlebox(sc->s, nat_box, &sc->w);
    rdv_node_opts o = {.with_relay = 1};
    rdv_node_init(&sc->sv, sc->s, &o);
    sc->marker.text = MARKER;
    sc->sv.relay_tap = rdv_needle_tap;
    sc->sv.relay_tap_user = &sc->marker;
    tern_addr aa = place(sc, 0, ta, shared_nat);
    tern_addr ba = place(sc, 1, tb, shared_nat);
    tnet_node_init(&sc->a, sc->s, &aa, 1, NULL, 1);
    tnet_node_init(&sc->b, sc->s, &ba, 1, NULL, 2);
    sc->b.user = sc;
    sc->b.on_message = b_on_message;
    sc->a.user = sc;
    sc->a.on_message = a_on_message;
    /* both register with the server: their NATs now map what the server sees */
    tern_conn *x;
    TT_REQUIRE(tern_endpoint_connect(sc->a.ep, sim_now(sc->s), &aa, &sc->sv.addr, sc->sv.key.pub,
                                     &x) == TERN_OK);
    TT_REQUIRE(tern_endpoint_connect(sc->b.ep, sim_now(sc->s), &ba, &sc->sv.addr, sc->sv.key.pub,
                                     &x) == TERN_OK);
    TT_REQUIRE(sim_run_while(sc->s, both_registered, sc, 5 * S) == SIM_OK);
    for (size_t i = 0; i < sc->sv.n_conns; i++) {
        uint8_t pub[TERN_KEY_LEN];
        TT_REQUIRE(tern_conn_peer_key(sc->sv.conns[i], pub) == TERN_OK);
        if (memcmp(pub, sc->a.key.pub, TERN_KEY_LEN) == 0) sc->a_pub = *tern_conn_remote(sc->sv.conns[i]);
        else sc->b_pub = *tern_conn_remote(sc->sv.conns[i]);
    }
    /* the relay session the server would open with the introduction */
    TT_REQUIRE(tern_relay_open(sc->sv.relay, sim_now(sc->s), &sc->a_pub, &sc->b_pub, sc->ch[0],
                               sc->ch[1]) == TERN_OK);
}

/* The introduction: B expects A, A connects to B over B's candidates. */
static void introduce(scene *sc, uint64_t relay_after)
{
    tern_peer_target ta, tb;
    tern_peer_target_default(&ta);
    tern_peer_target_default(&tb);
    memset(ta.nonce, 0x5a, sizeof(ta.nonce));
    memcpy(tb.nonce, ta.nonce, sizeof(tb.nonce));
    /* A learns B's: LOCAL first, then PUBLIC; the relay with A's channel */
    memcpy(ta.peer_pub, sc->b.key.pub, TERN_KEY_LEN);
    ta.cands[ta.n_cands++] = sc->b.addr;
    if (!tern_addr_equal(&sc->b.addr, &sc->b_pub)) ta.cands[ta.n_cands++] = sc->b_pub;
    ta.has_relay = 1;
    ta.relay.addr = sc->sv.addr;
    memcpy(ta.relay.channel, sc->ch[0], TERN_RELAY_CHANNEL_LEN);
    ta.relay_after_ns = relay_after;
    memcpy(tb.peer_pub, sc->a.key.pub, TERN_KEY_LEN);
    tb.cands[tb.n_cands++] = sc->a.addr;
    if (!tern_addr_equal(&sc->a.addr, &sc->a_pub)) tb.cands[tb.n_cands++] = sc->a_pub;
    tb.has_relay = 1;
    tb.relay.addr = sc->sv.addr;
    memcpy(tb.relay.channel, sc->ch[1], TERN_RELAY_CHANNEL_LEN);
    uint64_t now = sim_now(sc->s);
    TT_REQUIRE(tern_endpoint_expect_peer(sc->b.ep, now, &sc->b.addr, &tb) == TERN_OK);
    TT_REQUIRE(tern_endpoint_connect_peer(sc->a.ep, now, &sc->a.addr, &ta, &sc->ca) == TERN_OK);
}

static int a_not_established(void *arg)
{
    scene *sc = arg;
    return tern_conn_get_state(sc->ca) != TERN_CONN_ESTABLISHED;
}

/* Introduces A to B (the relay after 2 s) and runs until A's connection is established, at most
 * `limit`; returns how long it took. The firewall between the two NATs (block_direct) is set up
 * to act on their public addresses. */
static uint64_t connect_peers(scene *sc, uint64_t limit)
{
    sc->w.block_a = sc->w.nats[0].pub;
    sc->w.block_b = sc->w.nats[1].pub;
    uint64_t t0 = sim_now(sc->s);
    introduce(sc, 2 * S);
    TT_REQUIRE(sim_run_while(sc->s, a_not_established, sc, t0 + limit) == SIM_OK);
    return sim_now(sc->s) - t0;
}

/* Datagrams the relay forwarded, and dropped (any reason). */
static uint64_t relayed(const scene *sc)
{
    tern_relay_stats st;
    tern_relay_get_stats(sc->sv.relay, &st);
    return st.fwd_packets;
}

static uint64_t relay_drops(const scene *sc)
{
    tern_relay_stats st;
    tern_relay_get_stats(sc->sv.relay, &st);
    return st.drop_short + st.drop_malformed + st.drop_oversize + st.drop_unknown_channel +
           st.drop_wrong_source + st.drop_rate_limited + sc->sv.relay_q_full;
}

static void scene_free(scene *sc)
{
    tnet_node_free(&sc->a, sc->s);
    tnet_node_free(&sc->b, sc->s);
    rdv_node_free(&sc->sv);
    sim_del(sc->s);
}

/* Sends n messages of `size` bytes carrying their sequence number (and the marker) on c. */
static void send_seq_on(tern_conn *c, sim *s, uint64_t flow, uint64_t *seq, int n, size_t size)
{
    uint8_t buf[4096];
    TT_REQUIRE(size >= 8 + sizeof(MARKER) && size <= sizeof(buf));
    for (int i = 0; i < n; i++) {
        memset(buf, 'x', size);
        for (int k = 0; k < 8; k++) buf[k] = (uint8_t)(*seq >> (56 - 8 * k));
        memcpy(buf + 8, MARKER, sizeof(MARKER) - 1);
        if (tern_flow_send(c, flow, sim_now(s), buf, size, -1) != TERN_OK) return;
        (*seq)++;
    }
}

/* The same from A on its connection to B. */
static void send_seq(scene *sc, uint64_t flow, uint64_t *seq, int n, size_t size)
{
    send_seq_on(sc->ca, sc->s, flow, seq, n, size);
}

/* ---------------------------------------------------------------- tests */

static int expect_direct(int ta, int tb)
{
    if (ta == NAT_SYMMETRIC && (tb == NAT_SYMMETRIC || tb == NAT_PORT_RESTRICTED)) return 0;
    if (tb == NAT_SYMMETRIC && ta == NAT_PORT_RESTRICTED) return 0;
    return 1;
}

static void test_nat_matrix(void)
{
    for (int ta = NAT_NONE; ta <= NAT_SYMMETRIC; ta++) {
        for (int tb = NAT_NONE; tb <= NAT_SYMMETRIC; tb++) {
            scene sc;
            scene_init(&sc, ta, tb, 0, 20);
            uint64_t t0 = sim_now(sc.s);
            introduce(&sc, 2 * S);
            int rc = sim_run_while(sc.s, a_not_established, &sc, t0 + 10 * S);
            uint64_t took = sim_now(sc.s) - t0;
            tern_path_info pi;
            tern_conn_path(sc.ca, &pi);
            int direct = rc == SIM_OK && !pi.relayed;
            printf("A %-15s B %-15s: %s after %llu ms (%s)\n", NAT_NAME[ta], NAT_NAME[tb],
                   rc != SIM_OK ? "FAILED" : pi.relayed ? "relayed" : "direct",
                   (unsigned long long)(took / MS), rc == SIM_OK ? "ok" : sim_error(sc.s));
            if (getenv("P2P_DEBUG"))
                printf("  relay forwarded %llu dropped %llu; nat drops %llu %llu\n",
                       (unsigned long long)relayed(&sc), (unsigned long long)relay_drops(&sc),
                       (unsigned long long)sc.w.nats[0].dropped_in,
                       (unsigned long long)sc.w.nats[1].dropped_in);
            if (getenv("P2P_DEBUG")) {
                tern_endpoint_stats st = tnet_stats(&sc.b);
                printf("  B: rx %llu hs_started %llu completed %llu trunc %llu malformed %llu auth %llu "
                       "ignored %llu unknown %llu rate %llu\n",
                       (unsigned long long)st.rx_packets, (unsigned long long)st.handshakes_started,
                       (unsigned long long)st.handshakes_completed,
                       (unsigned long long)st.drop_truncated, (unsigned long long)st.drop_malformed,
                       (unsigned long long)st.drop_auth, (unsigned long long)st.drop_ignored,
                       (unsigned long long)st.drop_unknown_cid,
                       (unsigned long long)st.drop_rate_limited);
            }
            TT_CHECK_EQ_INT(rc, SIM_OK);
            TT_CHECK_EQ_INT(direct, expect_direct(ta, tb));
            if (direct) TT_CHECK(took < 1 * S);   /* a few round trips of 40 ms */
            else TT_CHECK(took < 3 * S);          /* the relay after 2 s */
            /* data flows both ways on whatever path won */
            uint64_t flow, seq = 0;
            TT_REQUIRE(tern_flow_open(sc.ca, NULL, &flow) == TERN_OK);
            send_seq(&sc, flow, &seq, 20, 1000);
            TT_CHECK_EQ_INT(sim_run_until(sc.s, sim_now(sc.s) + 2 * S), SIM_OK);
            TT_CHECK_EQ_U64(sc.delivered, 20);
            TT_CHECK_EQ_U64(sc.bad, 0);
            TT_CHECK(sc.b.conn != NULL && tern_conn_get_state(sc.b.conn) == TERN_CONN_ESTABLISHED);
            if (!direct) TT_CHECK(relayed(&sc) > 0);
            TT_CHECK_EQ_U64(sc.marker.seen, 0);
            scene_free(&sc);
        }
    }
}

/* Punching fails for a while (a firewall between the peers), so the connection starts on the
 * relay; a stream of messages flows; the firewall opens; the connection moves to the direct
 * path; every message arrives exactly once, in order. */
static void test_relay_then_direct_nothing_lost(void)
{
    scene sc;
    scene_init(&sc, NAT_PORT_RESTRICTED, NAT_RESTRICTED, 0, 30);
    sc.w.block_direct = 1;
    uint64_t took = connect_peers(&sc, 6 * S);
    tern_path_info pi;
    tern_conn_path(sc.ca, &pi);
    TT_CHECK(pi.relayed);
    TT_CHECK(took >= 2 * S && took < 3 * S);
    uint64_t flow, seq = 0;
    TT_REQUIRE(tern_flow_open(sc.ca, NULL, &flow) == TERN_OK);
    /* 8 s of messages, 50 per 100 ms; the firewall opens at +4 s */
    uint64_t open_at = sim_now(sc.s) + 4 * S, moved_at = 0;
    for (int step = 0; step < 80; step++) {
        send_seq(&sc, flow, &seq, 50, 1100);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
        if (sc.w.block_direct && sim_now(sc.s) >= open_at) sc.w.block_direct = 0;
        tern_conn_path(sc.ca, &pi);
        if (!pi.relayed && moved_at == 0) moved_at = sim_now(sc.s);
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 3 * S) == SIM_OK);
    tern_conn_path(sc.ca, &pi);
    printf("relayed until +%llu ms after the firewall opened; %llu messages, %llu forwarded by "
           "the relay, A moves %llu\n", (unsigned long long)((moved_at - open_at) / MS),
           (unsigned long long)seq, (unsigned long long)relayed(&sc),
           (unsigned long long)pi.moves);
    TT_CHECK(sc.w.blocked > 0);
    TT_CHECK(!pi.relayed);
    TT_CHECK_EQ_U64(pi.moves, 1);
    TT_CHECK(moved_at > open_at && moved_at - open_at < 6 * S);
    TT_CHECK_EQ_U64(seq, 4000);
    TT_CHECK_EQ_U64(sc.delivered, seq);
    TT_CHECK_EQ_U64(sc.bad, 0);
    TT_CHECK(relayed(&sc) > 100);
    TT_CHECK_EQ_U64(sc.marker.seen, 0);
    /* B followed A onto the direct path */
    TT_REQUIRE(sc.b.conn != NULL);
    tern_path_info pb;
    tern_conn_path(sc.b.conn, &pb);
    TT_CHECK(!pb.relayed);
    /* after the move nothing more goes through the relay */
    uint64_t fwd = relayed(&sc);
    send_seq(&sc, flow, &seq, 200, 1100);
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 2 * S) == SIM_OK);
    TT_CHECK_EQ_U64(sc.delivered, seq);
    TT_CHECK(relayed(&sc) - fwd < 5);
    scene_free(&sc);
}

/* A direct connection whose path dies (a firewall between the two NATs closes) while A streams
 * to B: A's packets go unanswered, A moves to the relay, B follows; when the firewall opens
 * again the connection returns to the direct path. Every message arrives exactly once, in
 * order, and the relay sees only ciphertext. */
static void test_direct_then_relay_then_direct(void)
{
    scene sc;
    scene_init(&sc, NAT_PORT_RESTRICTED, NAT_RESTRICTED, 0, 30);
    connect_peers(&sc, 6 * S);
    tern_path_info pi, pb;
    tern_conn_path(sc.ca, &pi);
    TT_REQUIRE(!pi.relayed);
    uint64_t flow, seq = 0;
    TT_REQUIRE(tern_flow_open(sc.ca, NULL, &flow) == TERN_OK);
    /* 16 s of messages, 50 per 100 ms; the firewall closes at +3 s and opens at +9 s */
    uint64_t start = sim_now(sc.s), close_at = start + 3 * S, open_at = start + 9 * S;
    uint64_t fell_at = 0, back_at = 0, b_fell_at = 0, at_open = 0, at_open_seq = 0;
    for (int step = 0; step < 160; step++) {
        send_seq(&sc, flow, &seq, 50, 1100);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
        uint64_t now = sim_now(sc.s);
        if (!sc.w.block_direct && now >= close_at && now < open_at) sc.w.block_direct = 1;
        if (sc.w.block_direct && now >= open_at) {
            sc.w.block_direct = 0;
            at_open = sc.delivered;
            at_open_seq = seq;
        }
        tern_conn_path(sc.ca, &pi);
        if (pi.relayed && fell_at == 0) fell_at = now;
        if (!pi.relayed && fell_at != 0 && back_at == 0) back_at = now;
        if (sc.b.conn != NULL) {
            tern_conn_path(sc.b.conn, &pb);
            if (pb.relayed && b_fell_at == 0) b_fell_at = now;
        }
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 3 * S) == SIM_OK);
    tern_conn_path(sc.ca, &pi);
    printf("direct path closed: A on the relay after %llu ms (B after %llu ms); back direct %llu "
           "ms after it opened; %llu messages, %llu relayed datagrams, A moves %llu\n",
           (unsigned long long)((fell_at - close_at) / MS),
           (unsigned long long)((b_fell_at - close_at) / MS),
           (unsigned long long)((back_at - open_at) / MS), (unsigned long long)seq,
           (unsigned long long)relayed(&sc), (unsigned long long)pi.moves);
    printf("  when the firewall opened: %llu of %llu messages delivered\n",
           (unsigned long long)at_open, (unsigned long long)at_open_seq);
    TT_CHECK(sc.w.blocked > 0);
    /* on the relay the backlog cleared: within half a second of what was sent */
    TT_CHECK(at_open + 250 >= at_open_seq);
    TT_CHECK(fell_at > close_at && fell_at - close_at <= 2 * S);
    TT_CHECK(b_fell_at >= fell_at && b_fell_at - close_at <= 3 * S);
    TT_CHECK(back_at > open_at && back_at - open_at < 6 * S);
    TT_CHECK(!pi.relayed);
    TT_CHECK_EQ_U64(pi.fallbacks, 1);
    TT_CHECK_EQ_U64(pi.moves, 2);
    TT_CHECK_EQ_U64(seq, 8000);
    TT_CHECK_EQ_U64(sc.delivered, seq);
    TT_CHECK_EQ_U64(sc.bad, 0);
    TT_CHECK(relayed(&sc) > 100);
    TT_CHECK_EQ_U64(sc.marker.seen, 0);
    TT_REQUIRE(sc.b.conn != NULL);
    tern_conn_path(sc.b.conn, &pb);
    TT_CHECK(!pb.relayed);
    scene_free(&sc);
}

/* The target (B) streams to an idle initiator (A, which only acknowledges) when the direct
 * path dies: B's packets go unanswered, B challenges A through the relay, A moves there and B
 * follows. Nothing is lost; it takes about one silence period, not a keep-alive interval. */
static void test_target_streams_when_direct_path_dies(void)
{
    scene sc;
    scene_init(&sc, NAT_FULL, NAT_PORT_RESTRICTED, 0, 40);
    connect_peers(&sc, 6 * S);
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 200 * MS) == SIM_OK);
    TT_REQUIRE(sc.b.conn != NULL);
    tern_conn *cb = sc.b.conn;
    tern_path_info pi, pb;
    tern_conn_path(sc.ca, &pi);
    TT_REQUIRE(!pi.relayed);
    uint64_t flow, seq = 0;
    TT_REQUIRE(tern_flow_open(cb, NULL, &flow) == TERN_OK);
    uint64_t close_at = sim_now(sc.s) + 2 * S, fell_at = 0, b_fell_at = 0;
    for (int step = 0; step < 80; step++) {
        send_seq_on(cb, sc.s, flow, &seq, 30, 1000);
        sim_node_wake(sc.s, sc.b.node);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
        uint64_t now = sim_now(sc.s);
        if (!sc.w.block_direct && now >= close_at) sc.w.block_direct = 1;
        tern_conn_path(sc.ca, &pi);
        tern_conn_path(cb, &pb);
        if (pi.relayed && fell_at == 0) fell_at = now;
        if (pb.relayed && b_fell_at == 0) b_fell_at = now;
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 3 * S) == SIM_OK);
    printf("direct path closed under B's stream: A on the relay after %llu ms, B after %llu ms; "
           "%llu messages\n", (unsigned long long)((fell_at - close_at) / MS),
           (unsigned long long)((b_fell_at - close_at) / MS), (unsigned long long)seq);
    TT_CHECK(fell_at > close_at && fell_at - close_at <= 2500 * MS);
    TT_CHECK(b_fell_at > close_at && b_fell_at - close_at <= 3 * S);
    tern_conn_path(sc.ca, &pi);
    tern_conn_path(cb, &pb);
    TT_CHECK(pi.relayed && pb.relayed);
    TT_CHECK_EQ_U64(pi.fallbacks, 1);
    TT_CHECK_EQ_U64(seq, 2400);
    TT_CHECK_EQ_U64(sc.a_delivered, seq);
    TT_CHECK_EQ_U64(sc.a_bad, 0);
    TT_CHECK_EQ_U64(sc.marker.seen, 0);
    scene_free(&sc);
}

/* The conditions tern is tuned for (300 ms RTT, 3% loss in bursts of up to 3) are not a dead
 * path: 30 s of a stream and 3 minutes of one message a second on a direct connection never
 * fall back to the relay. */
static void test_lossy_long_path_does_not_fall_back(void)
{
    scene sc;
    scene_init(&sc, NAT_RESTRICTED, NAT_PORT_RESTRICTED, 0, 75);
    sim_link_params lp;
    sim_link_params_init(&lp);
    lp.delay_ns = 75 * MS; /* each way on each of the two hops: 300 ms RTT peer to peer */
    lp.loss = 0.03;
    lp.burst_max = 3;
    sim_set_default_link(sc.s, &lp);
    connect_peers(&sc, 10 * S);
    tern_path_info pi;
    tern_conn_path(sc.ca, &pi);
    TT_REQUIRE(!pi.relayed);
    uint64_t flow, seq = 0;
    TT_REQUIRE(tern_flow_open(sc.ca, NULL, &flow) == TERN_OK);
    for (int step = 0; step < 300; step++) {
        send_seq(&sc, flow, &seq, 20, 1100);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
    }
    /* then 3 minutes of one message a second: lost packets are tails, found by probe timeouts */
    for (int step = 0; step < 180; step++) {
        send_seq(&sc, flow, &seq, 1, 200);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + S) == SIM_OK);
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 10 * S) == SIM_OK);
    tern_conn_path(sc.ca, &pi);
    tern_conn_stats st;
    tern_conn_get_stats(sc.ca, &st);
    printf("300 ms RTT, 3%% bursty loss, 30 s + 3 min: %llu messages, %llu packets lost, %llu PTOs, "
           "fallbacks %llu\n", (unsigned long long)seq, (unsigned long long)st.packets_lost,
           (unsigned long long)st.pto_count, (unsigned long long)pi.fallbacks);
    TT_CHECK(st.packets_lost > 50);
    TT_CHECK_EQ_U64(pi.fallbacks, 0);
    TT_CHECK(!pi.relayed);
    TT_CHECK(st.pto_count > 0);
    TT_CHECK_EQ_U64(seq, 6180);
    TT_CHECK_EQ_U64(sc.delivered, seq);
    TT_CHECK_EQ_U64(sc.bad, 0);
    scene_free(&sc);
}

/* Both peers behind one NAT without hairpinning: only the local addresses work. */
static void test_same_nat_uses_local_addresses(void)
{
    scene sc;
    scene_init(&sc, NAT_PORT_RESTRICTED, NAT_PORT_RESTRICTED, 1, 20);
    TT_CHECK_EQ_U64(sc.w.n_nats, 1);
    uint64_t t0 = sim_now(sc.s);
    introduce(&sc, 2 * S);
    TT_REQUIRE(sim_run_while(sc.s, a_not_established, &sc, t0 + 5 * S) == SIM_OK);
    tern_path_info pi;
    tern_conn_path(sc.ca, &pi);
    TT_CHECK(!pi.relayed);
    TT_CHECK(tern_addr_equal(&pi.remote, &sc.b.addr));
    TT_CHECK(sim_now(sc.s) - t0 < 500 * MS);
    scene_free(&sc);
}

/* An ordinary client's NAT gives it a new public port mid-connection: the server validates the
 * new address and moves there; data keeps flowing. */
static void test_nat_rebinding(void)
{
    scene sc;
    scene_init(&sc, NAT_PORT_RESTRICTED, NAT_NONE, 0, 20);
    /* A talks to B (public, a plain server) with an ordinary connection */
    TT_REQUIRE(tern_endpoint_connect(sc.a.ep, sim_now(sc.s), &sc.a.addr, &sc.b.addr, sc.b.key.pub,
                                     &sc.ca) == TERN_OK);
    TT_REQUIRE(sim_run_while(sc.s, a_not_established, &sc, sim_now(sc.s) + 3 * S) == SIM_OK);
    uint64_t flow, seq = 0;
    TT_REQUIRE(tern_flow_open(sc.ca, NULL, &flow) == TERN_OK);
    send_seq(&sc, flow, &seq, 50, 1000);
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 1 * S) == SIM_OK);
    TT_REQUIRE(sc.b.conn != NULL);
    tern_addr before = *tern_conn_remote(sc.b.conn);
    /* first an on-path attacker rewrites the source of 40 packets: B learns (and challenges)
     * addresses that never answer, and stays where it is */
    sc.w.nats[0].scramble = 40;
    for (int i = 0; i < 10; i++) {
        send_seq(&sc, flow, &seq, 20, 1000);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 1 * S) == SIM_OK);
    TT_CHECK(tern_addr_equal(&before, tern_conn_remote(sc.b.conn)));
    TT_CHECK_EQ_U64(sc.delivered, seq);
    sc.w.nats[0].rebind = 1;
    for (int i = 0; i < 20; i++) {
        send_seq(&sc, flow, &seq, 20, 1000);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 2 * S) == SIM_OK);
    tern_addr after = *tern_conn_remote(sc.b.conn);
    TT_CHECK(!tern_addr_equal(&before, &after));
    TT_CHECK_EQ_U64(sc.delivered, seq);
    TT_CHECK_EQ_U64(sc.bad, 0);
    tern_path_info pb;
    tern_conn_path(sc.b.conn, &pb);
    TT_CHECK_EQ_U64(pb.moves, 1);
    scene_free(&sc);
}

/* Junk that looks like relay or punch datagrams is dropped and counted; nothing breaks. */
static void test_bad_relay_and_punch_datagrams(void)
{
    scene sc;
    scene_init(&sc, NAT_NONE, NAT_NONE, 0, 10);
    introduce(&sc, 2 * S);
    TT_REQUIRE(sim_run_while(sc.s, a_not_established, &sc, sim_now(sc.s) + 2 * S) == SIM_OK);
    tern_endpoint_stats before = tnet_stats(&sc.a);
    uint8_t junk[64];
    memset(junk, 0, sizeof(junk));
    junk[0] = 0x81;                    /* relay header, nothing inside */
    TT_CHECK(tern_endpoint_recv(sc.a.ep, sim_now(sc.s), &sc.a.addr, &sc.sv.addr, junk, 9) < 0);
    junk[9] = 0x00;                    /* inner without the fixed bit */
    TT_CHECK(tern_endpoint_recv(sc.a.ep, sim_now(sc.s), &sc.a.addr, &sc.sv.addr, junk, 30) < 0);
    junk[9] = 0x41;                    /* inner short packet for an unknown CID: no reset */
    TT_CHECK(tern_endpoint_recv(sc.a.ep, sim_now(sc.s), &sc.a.addr, &sc.sv.addr, junk, 64) < 0);
    junk[0] = 0x82;                    /* punch with a wrong length, then an unknown tag */
    TT_CHECK(tern_endpoint_recv(sc.a.ep, sim_now(sc.s), &sc.a.addr, &sc.sv.addr, junk, 20) < 0);
    TT_CHECK(tern_endpoint_recv(sc.a.ep, sim_now(sc.s), &sc.a.addr, &sc.sv.addr, junk, 17) < 0);
    tern_endpoint_stats after = tnet_stats(&sc.a);
    uint64_t drops_before = before.drop_truncated + before.drop_malformed + before.drop_unknown_cid +
                            before.drop_ignored;
    uint64_t drops_after = after.drop_truncated + after.drop_malformed + after.drop_unknown_cid +
                           after.drop_ignored;
    TT_CHECK_EQ_U64(drops_after - drops_before, 5);
    TT_CHECK_EQ_U64(after.resets_sent, before.resets_sent);
    TT_CHECK(tern_conn_get_state(sc.ca) == TERN_CONN_ESTABLISHED);
    /* the expectation at B is gone once A's connection arrived */
    TT_CHECK(tern_endpoint_next_deadline(sc.b.ep) >= sim_now(sc.s));
    scene_free(&sc);
}

/* The initiator of a direct peer connection migrates (tern_conn_migrate) to another address
 * behind its NAT, which maps it to a new public port: the target validates that address and
 * follows, every message arrives once and in order. */
static void test_initiator_migrates(void)
{
    scene sc;
    scene_init(&sc, NAT_FULL, NAT_FULL, 0, 20);
    connect_peers(&sc, 6 * S);
    tern_path_info pi, pb;
    tern_conn_path(sc.ca, &pi);
    TT_REQUIRE(!pi.relayed);
    uint64_t flow, seq = 0;
    TT_REQUIRE(tern_flow_open(sc.ca, NULL, &flow) == TERN_OK);
    for (int i = 0; i < 10; i++) {
        send_seq(&sc, flow, &seq, 20, 1000);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
    }
    TT_REQUIRE(sc.b.conn != NULL);
    tern_addr before = *tern_conn_remote(sc.b.conn);
    tern_addr moved;
    tern_addr_ipv4(&moved, 10, sc.w.nats[0].net, 0, 12, 5000); /* another host of A's network */
    TT_REQUIRE(sim_node_add_addr(sc.s, sc.a.node, &moved) == SIM_OK);
    TT_CHECK_EQ_INT(tern_conn_migrate(sc.ca, sim_now(sc.s), &moved), TERN_OK);
    for (int i = 0; i < 20; i++) {
        send_seq(&sc, flow, &seq, 20, 1000);
        TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 100 * MS) == SIM_OK);
    }
    TT_REQUIRE(sim_run_until(sc.s, sim_now(sc.s) + 2 * S) == SIM_OK);
    tern_conn_path(sc.ca, &pi);
    tern_conn_path(sc.b.conn, &pb);
    TT_CHECK(!pi.relayed && pi.validated);
    TT_CHECK(tern_addr_equal(&pi.local, &moved));
    TT_CHECK(!pb.relayed);
    TT_CHECK(!tern_addr_equal(&before, &pb.remote)); /* B follows A's new public port */
    tern_conn_stats st;
    tern_conn_get_stats(sc.ca, &st);
    TT_CHECK_EQ_U64(st.migrations, 1);
    TT_CHECK_EQ_U64(st.migrations_validated, 1);
    TT_CHECK_EQ_U64(sc.delivered, seq);
    TT_CHECK_EQ_U64(sc.bad, 0);
    scene_free(&sc);
}

static const tt_case cases[] = {
    TT_CASE(test_nat_matrix),
    TT_CASE(test_relay_then_direct_nothing_lost),
    TT_CASE(test_direct_then_relay_then_direct),
    TT_CASE(test_target_streams_when_direct_path_dies),
    TT_CASE(test_lossy_long_path_does_not_fall_back),
    TT_CASE(test_same_nat_uses_local_addresses),
    TT_CASE(test_nat_rebinding),
    TT_CASE(test_bad_relay_and_punch_datagrams),
    TT_CASE(test_initiator_migrates),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
