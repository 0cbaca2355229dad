/*
 * The rendezvous client (tern/rendezvous.h, "client") on the simulated network, against the real
 * rendezvous server (tern_rdv_server) on a server endpoint: peers are is_server endpoints with
 * their own keys, each running a tern_rdv_client on its connection to the server, exactly as
 * tern ping/send/recv/chat --via do. Checks: registration (the public address the server sees),
 * requests before the connection is up, introductions (PEER_INFO -> tern_endpoint_connect_peer
 * -> a direct connection both ways, the target accepting only the introduced key), an unknown
 * peer failing within one round trip, the relay when the direct path is blocked (and the move
 * to the direct path once it opens), the relay over each peer's own stream when their server
 * connections run over TCP (issue 14), groups (joined, presence, fan-out, leave), RPC (reply,
 * no service, the server's timeout, the local deadline when the server goes silent, a dropped
 * server connection), bad input, and that the client's memory goes back to zero.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/rdv_node.h"
#include "support/tnet.h"
#include "tern/rendezvous.h"

#define MS (1000000ull)
#define S (1000000000ull)

/* ---------------------------------------------------------------- the server */

/* support/rdv_node.h, made in world_init_opts with the endpoint's default settings. */

/* ---------------------------------------------------------------- a peer */

typedef struct peer {
    sim *s;
    tern_endpoint *ep;
    sim_node *node;
    tern_addr addr;
    tt_mem mem, cmem;
    tt_rng rng;
    tern_keypair key;
    uint8_t id[TERN_PEER_ID_LEN];
    tern_rdv_client *rc;
    tern_conn *srv_conn;
    int srv_up;
    /* rendezvous events */
    int registered;
    tern_addr public_addr;
    int peer_conns, peer_conn_err;
    tern_conn *out_conn;             /* from on_peer_conn */
    int intro_failed, intro_error;
    uint64_t intro_failed_at;
    uint8_t intro_failed_id[TERN_PEER_ID_LEN];
    int introduced, introduced_err;
    uint8_t introduced_id[TERN_PEER_ID_LEN];
    int joined;
    uint32_t joined_count;
    size_t joined_members;
    uint8_t first_member[TERN_PEER_ID_LEN];
    int presence_join, presence_leave;
    uint8_t presence_id[TERN_PEER_ID_LEN];
    int group_msgs;
    uint8_t group_sender[TERN_PEER_ID_LEN];
    char group_text[64];
    int offered;
    int calls_in;
    uint64_t call_in_id;
    int auto_reply;                  /* answer on_call with "re:" + payload */
    int replies;
    uint64_t reply_id;
    uint32_t reply_status;
    char reply_text[64];
    int errors[32];
    uint64_t error_call_id;
    uint64_t error_at;
    /* peer connections */
    int accepted, refused, peer_established;
    tern_conn *in_conn;              /* accepted from a peer */
    int peer_msgs;
    char peer_text[64];
    int closed_err;
    char closed_reason[64];
    tern_addr stream_local; /* its stream to the server (family NONE: its connection is UDP) */
} peer;

static void p_recv(void *node, uint64_t now, const tern_addr *local, const tern_addr *remote,
                   const uint8_t *data, size_t len)
{
    (void)tern_endpoint_recv(((peer *)node)->ep, now, local, remote, data, len);
}

/* As a driver does, a datagram to a stream address goes on the one stream to it: it leaves
 * from that stream's local address (the peer's server connection's), whatever path sent it. */
static int p_send(void *node, uint64_t now, tern_datagram *d, size_t max, uint8_t *buf,
                  size_t len)
{
    peer *p = node;
    int n = tern_endpoint_send(p->ep, now, d, max, buf, len);
    for (int i = 0; i < n; i++)
        if (tern_addr_is_stream(&d[i].remote) && p->stream_local.family != TERN_AF_NONE)
            d[i].local = p->stream_local;
    return n;
}

static uint64_t p_deadline(void *node)
{
    peer *p = node;
    uint64_t a = tern_endpoint_next_deadline(p->ep);
    uint64_t b = p->rc ? tern_rdv_client_next_deadline(p->rc) : TERN_TIME_NEVER;
    return a < b ? a : b;
}

static void p_expire(void *node, uint64_t now)
{
    peer *p = node;
    if (p->rc) tern_rdv_client_handle_expiry(p->rc, now);
    tern_endpoint_handle_expiry(p->ep, now);
}

static const sim_node_ops peer_ops = {p_recv, p_send, p_deadline, p_expire};

static void copy_text(char *dst, size_t cap, const uint8_t *src, size_t len)
{
    if (len >= cap) len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* endpoint callbacks */
static int p_on_accept(tern_conn *c, void *u)
{
    peer *p = u;
    int rc = tern_rdv_client_accept(p->rc, c, sim_now(p->s));
    if (rc == TERN_OK) {
        p->accepted++;
        p->in_conn = c;
    } else {
        p->refused++;
    }
    return rc;
}

static int p_on_accept_hold(tern_conn *c, void *u)
{
    peer *p = u;
    return tern_rdv_client_hold(p->rc, c, sim_now(p->s));
}

static void p_on_established(tern_conn *c, void *u)
{
    peer *p = u;
    if (c == p->srv_conn) p->srv_up = 1;
    else p->peer_established++;
}

static void p_on_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *u)
{
    peer *p = u;
    if (tern_rdv_client_on_message(p->rc, c, flow, d, len, sim_now(p->s))) return;
    p->peer_msgs++;
    copy_text(p->peer_text, sizeof(p->peer_text), d, len);
}

static void p_on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                        void *u)
{
    (void)code;
    peer *p = u;
    if (c != p->srv_conn) {
        p->closed_err = err;
        const uint8_t *why = (const uint8_t *)(reason ? reason : "");
        copy_text(p->closed_reason, sizeof(p->closed_reason), why, reason ? len : 0);
    }
    tern_rdv_client_on_gone(p->rc, c, sim_now(p->s));
}

static void p_on_free(tern_conn *c, void *u)
{
    peer *p = u;
    tern_rdv_client_on_gone(p->rc, c, sim_now(p->s));
    if (c == p->srv_conn) p->srv_conn = NULL;
    if (c == p->in_conn) p->in_conn = NULL;
    if (c == p->out_conn) p->out_conn = NULL;
}

/* rendezvous client callbacks */
static void c_registered(tern_rdv_client *rc, const tern_addr *a, void *u)
{
    (void)rc;
    peer *p = u;
    p->registered++;
    p->public_addr = *a;
}

static void c_peer_conn(tern_rdv_client *rc, const uint8_t id[32], tern_conn *c, int err, void *u)
{
    (void)rc, (void)id;
    peer *p = u;
    p->peer_conns++;
    p->peer_conn_err = err;
    p->out_conn = c;
}

static void c_intro_failed(tern_rdv_client *rc, const uint8_t id[32], int code, void *u)
{
    (void)rc;
    peer *p = u;
    p->intro_failed++;
    p->intro_error = code;
    p->intro_failed_at = sim_now(p->s);
    memcpy(p->intro_failed_id, id, 32);
}

static void c_introduced(tern_rdv_client *rc, const uint8_t id[32], int err, void *u)
{
    (void)rc;
    peer *p = u;
    p->introduced++;
    p->introduced_err = err;
    memcpy(p->introduced_id, id, 32);
}

static void c_joined(tern_rdv_client *rc, const uint8_t *g, size_t gl, uint32_t count,
                     const uint8_t *members, size_t n, void *u)
{
    (void)rc, (void)g, (void)gl;
    peer *p = u;
    p->joined++;
    p->joined_count = count;
    p->joined_members = n;
    if (n) memcpy(p->first_member, members, 32);
}

static void c_presence(tern_rdv_client *rc, const uint8_t *g, size_t gl, const uint8_t id[32],
                       int ev, void *u)
{
    (void)rc, (void)g, (void)gl;
    peer *p = u;
    if (ev == TERN_RDV_PRESENCE_JOIN) p->presence_join++;
    else p->presence_leave++;
    memcpy(p->presence_id, id, 32);
}

static void c_group_msg(tern_rdv_client *rc, const uint8_t *g, size_t gl, const uint8_t from[32],
                        const uint8_t *d, size_t len, void *u)
{
    (void)rc, (void)g, (void)gl;
    peer *p = u;
    p->group_msgs++;
    memcpy(p->group_sender, from, 32);
    copy_text(p->group_text, sizeof(p->group_text), d, len);
}

static void c_offered(tern_rdv_client *rc, const uint8_t *sv, size_t sl, void *u)
{
    (void)rc, (void)sv, (void)sl;
    ((peer *)u)->offered++;
}

static void c_call(tern_rdv_client *rc, const uint8_t *sv, size_t sl, const uint8_t *m,
                   size_t ml, uint64_t id, const uint8_t caller[32], uint32_t timeout_ms,
                   const uint8_t *d, size_t len, void *u)
{
    (void)sv, (void)sl, (void)m, (void)ml, (void)caller, (void)timeout_ms;
    peer *p = u;
    p->calls_in++;
    p->call_in_id = id;
    if (!p->auto_reply) return;
    uint8_t out[80] = "re:";
    size_t n = len < 64 ? len : 64;
    memcpy(out + 3, d, n);
    TT_CHECK(tern_rdv_client_reply(rc, sim_now(p->s), id, 0, out, 3 + n) == TERN_OK);
}

static void c_reply(tern_rdv_client *rc, uint64_t id, uint32_t status, const uint8_t *d,
                    size_t len, void *u)
{
    (void)rc;
    peer *p = u;
    p->replies++;
    p->reply_id = id;
    p->reply_status = status;
    copy_text(p->reply_text, sizeof(p->reply_text), d, len);
}

static void c_error(tern_rdv_client *rc, const tern_rdv_msg *e, void *u)
{
    (void)rc;
    peer *p = u;
    if (e->error < 32) p->errors[e->error]++;
    if (e->has_call_id) p->error_call_id = e->call_id;
    p->error_at = sim_now(p->s);
}

/* A peer at 10.0.0.i:5000, is_server with its own key, connected to the server. */
/* Peer i at 10.0.0.i:5000; its server connection over UDP, or (transport TCP or TLS) over a
 * stream only, from 10.0.0.i:5001 with that transport to the server's address with it (the server
 * node holds that address too: world_init_opts). */
static void peer_init_over(peer *p, sim *s, const rdv_node *srv, uint8_t i, uint8_t transport)
{
    memset(p, 0, sizeof(*p));
    p->s = s;
    tern_addr_ipv4(&p->addr, 10, 0, 0, i, 5000);
    tt_mem_init(&p->mem);
    tt_mem_init(&p->cmem);
    tt_rng_seed(&p->rng, sim_derive_seed(s, 10 + i));
    uint8_t priv[TERN_KEY_LEN];
    tt_rand_fill(priv, sizeof(priv), &p->rng);
    tern_keypair_from_private(&p->key, priv);
    tern_peer_id(p->key.pub, p->id);
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.is_server = 1;
    cfg.has_static_key = 1;
    cfg.static_key = p->key;
    cfg.mem = &p->mem.mem;
    cfg.rand = tt_rand_fill;
    cfg.rand_user = &p->rng;
    cfg.user_data = p;
    cfg.callbacks.on_accept = p_on_accept;
    cfg.callbacks.on_accept_hold = p_on_accept_hold;
    cfg.callbacks.on_established = p_on_established;
    cfg.callbacks.on_message = p_on_message;
    cfg.callbacks.on_closed = p_on_closed;
    cfg.callbacks.on_conn_free = p_on_free;
    TT_REQUIRE(tern_endpoint_new(&cfg, sim_now(s), &p->ep) == TERN_OK);
    p->node = sim_add_node(s, &peer_ops, p, &p->addr);
    TT_REQUIRE(p->node != NULL);
    if (transport == TERN_TRANSPORT_UDP) {
        TT_REQUIRE(tern_endpoint_connect(p->ep, sim_now(s), &p->addr, &srv->addr, srv->key.pub,
                                         &p->srv_conn) == TERN_OK);
    } else {
        tern_connect_opts co;
        tern_connect_opts_default(&co);
        co.stream_local = p->addr;
        co.stream_local.port = 5001;
        co.stream_local.transport = transport;
        co.stream_remote = srv->addr;
        co.stream_remote.transport = transport;
        memcpy(co.server_pub, srv->key.pub, TERN_KEY_LEN);
        TT_REQUIRE(sim_node_add_addr(s, p->node, &co.stream_local) == SIM_OK);
        p->stream_local = co.stream_local;
        TT_REQUIRE(tern_endpoint_connect_opts(p->ep, sim_now(s), &co, &p->srv_conn) == TERN_OK);
    }
    tern_rdv_client_config cc;
    tern_rdv_client_config_default(&cc);
    cc.mem = &p->cmem.mem;
    cc.local = p->addr;
    cc.user_data = p;
    cc.callbacks.on_registered = c_registered;
    cc.callbacks.on_peer_conn = c_peer_conn;
    cc.callbacks.on_intro_failed = c_intro_failed;
    cc.callbacks.on_introduced = c_introduced;
    cc.callbacks.on_joined = c_joined;
    cc.callbacks.on_presence = c_presence;
    cc.callbacks.on_group_msg = c_group_msg;
    cc.callbacks.on_offered = c_offered;
    cc.callbacks.on_call = c_call;
    cc.callbacks.on_reply = c_reply;
    cc.callbacks.on_error = c_error;
    TT_REQUIRE(tern_rdv_client_new(&cc, p->srv_conn, &p->rc) == TERN_OK);
    /* nothing can be asked before the connection is up */
    TT_CHECK_EQ_INT(tern_rdv_client_register(p->rc, sim_now(s), NULL, 0, NULL), TERN_ERR_STATE);
}

static void peer_init(peer *p, sim *s, const rdv_node *srv, uint8_t i)
{
    peer_init_over(p, s, srv, i, TERN_TRANSPORT_UDP);
}

static void peer_free(peer *p)
{
    if (p->node) sim_node_remove(p->s, p->node);
    tern_endpoint_del(p->ep);
    tern_rdv_client_del(p->rc);
    tt_mem_check_clean(&p->mem, "peer endpoint");
    tt_mem_check_clean(&p->cmem, "rendezvous client");
}

static void wake(peer *p)
{
    sim_node_wake(p->s, p->node);
}

/* A server and n peers (n <= 4), connected and registered with one LOCAL candidate each. */
typedef struct world {
    sim *s;
    rdv_node srv;
    peer p[4];
    int n;
} world;

/* The world, with the server's relay when with_relay, and its intro_target_rate replaced when
 * intro_target_rate >= 0; peer i's server connection over transports[i] (NULL: all UDP; the
 * server then also holds its address with each stream transport used). */
static void world_init_over(world *w, int n, int with_relay, int intro_target_rate,
                            const uint8_t *transports)
{
    memset(w, 0, sizeof(*w));
    w->s = sim_new(tt_seed());
    TT_REQUIRE(w->s != NULL);
    sim_link_params lp;
    sim_link_params_init(&lp);
    lp.delay_ns = 5 * MS;
    sim_set_default_link(w->s, &lp);
    tern_rdv_config rc;
    tern_rdv_config_default(&rc);
    if (intro_target_rate >= 0) rc.intro_target_rate = (uint32_t)intro_target_rate;
    tern_settings st;
    tern_settings_default(&st);
    rdv_node_opts o = {.rdv = &rc, .settings = &st, .with_relay = with_relay};
    rdv_node_init(&w->srv, w->s, &o);
    w->n = n;
    for (int i = 0; i < n; i++) {
        uint8_t t = transports ? transports[i] : TERN_TRANSPORT_UDP;
        int held = t == TERN_TRANSPORT_UDP;
        for (int j = 0; j < i && !held; j++) held = transports[j] == t;
        tern_addr sa = w->srv.addr;
        sa.transport = t;
        if (!held) TT_REQUIRE(sim_node_add_addr(w->s, w->srv.node, &sa) == SIM_OK);
        peer_init_over(&w->p[i], w->s, &w->srv, (uint8_t)(i + 1), t);
    }
    tnet_run_ms(w->s, 100);
    for (int i = 0; i < n; i++) {
        peer *p = &w->p[i];
        TT_REQUIRE(p->srv_up);
        tern_addr local = p->addr; /* its own address is its local candidate here */
        TT_REQUIRE(tern_rdv_client_register(p->rc, sim_now(w->s), &local, 1, NULL) == TERN_OK);
        wake(p);
    }
    tnet_run_ms(w->s, 50);
    for (int i = 0; i < n; i++) TT_REQUIRE(w->p[i].registered == 1);
}

static void world_init_opts(world *w, int n, int with_relay, int intro_target_rate)
{
    world_init_over(w, n, with_relay, intro_target_rate, NULL);
}

static void world_init(world *w, int n)
{
    world_init_opts(w, n, 0, -1);
}

static void world_free(world *w)
{
    for (int i = 0; i < w->n; i++) peer_free(&w->p[i]);
    rdv_node_free(&w->srv);
    sim_del(w->s);
}

/* Both directions of the direct path between a and b are black-holed until t_open. */
static void block_direct(world *w, peer *a, peer *b, uint64_t t_open)
{
    sim_link *ab = sim_link_lookup(w->s, &a->addr, &b->addr);
    if (ab == NULL) tnet_link(w->s, &a->addr, &b->addr, 5, 0, 0);
    ab = sim_link_lookup(w->s, &a->addr, &b->addr);
    sim_link *ba = sim_link_lookup(w->s, &b->addr, &a->addr);
    TT_REQUIRE(ab && ba);
    TT_REQUIRE(sim_link_blackhole(ab, sim_now(w->s), t_open) == 0);
    TT_REQUIRE(sim_link_blackhole(ba, sim_now(w->s), t_open) == 0);
}

/* ---------------------------------------------------------------- tests */

static void test_register(void)
{
    world w;
    world_init(&w, 2);
    for (int i = 0; i < 2; i++) {
        tern_addr a;
        TT_CHECK(tern_addr_equal(&w.p[i].public_addr, &w.p[i].addr));
        TT_CHECK(tern_rdv_client_registered(w.p[i].rc, &a) == 1);
        TT_CHECK(tern_addr_equal(&a, &w.p[i].addr));
        TT_CHECK(tern_rdv_client_conn(w.p[i].rc) == w.p[i].srv_conn);
    }
    tern_rdv_stats st;
    tern_rdv_server_get_stats(w.srv.rdv, &st);
    TT_CHECK_EQ_U64(st.registered, 2);
    /* too many candidates, a candidate without a family */
    tern_addr many[TERN_RDV_MAX_CANDS + 1];
    memset(many, 0, sizeof(many));
    TT_CHECK_EQ_INT(tern_rdv_client_register(w.p[0].rc, sim_now(w.s), many, TERN_RDV_MAX_CANDS + 1,
                                             NULL),
                    TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_rdv_client_register(w.p[0].rc, sim_now(w.s), many, 1, NULL),
                    TERN_ERR_INVALID_ARG);
    world_free(&w);
}

static void test_introduce_connects_and_target_accepts_only_the_introduced(void)
{
    world w;
    world_init(&w, 3);
    peer *a = &w.p[0], *b = &w.p[1], *c = &w.p[2];
    TT_REQUIRE(tern_rdv_client_introduce(a->rc, sim_now(w.s), b->id) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 500);
    TT_REQUIRE(a->peer_conns == 1);
    TT_CHECK_EQ_INT(a->peer_conn_err, TERN_OK);
    TT_REQUIRE(a->out_conn != NULL);
    TT_CHECK_EQ_INT(b->introduced, 1);
    TT_CHECK_EQ_INT(b->introduced_err, TERN_OK);
    TT_CHECK(memcmp(b->introduced_id, a->id, 32) == 0);
    /* one connection, established both ways, accepted by b because the server introduced a */
    TT_CHECK_EQ_INT(a->peer_established, 1);
    TT_CHECK_EQ_INT(b->accepted, 1);
    TT_CHECK_EQ_INT(b->refused, 0);
    TT_REQUIRE(b->in_conn != NULL);
    uint8_t id[32];
    TT_REQUIRE(tern_conn_peer_id(b->in_conn, id) == TERN_OK);
    TT_CHECK(memcmp(id, a->id, 32) == 0);
    TT_REQUIRE(tern_conn_peer_id(a->out_conn, id) == TERN_OK);
    TT_CHECK(memcmp(id, b->id, 32) == 0);
    tern_path_info pi;
    tern_conn_path(a->out_conn, &pi);
    TT_CHECK(!pi.relayed);
    TT_CHECK(tern_addr_equal(&pi.remote, &b->addr));
    /* data flows peer to peer, not through the server */
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    uint64_t fid;
    TT_REQUIRE(tern_flow_open(a->out_conn, &fc, &fid) == TERN_OK);
    TT_REQUIRE(tern_flow_send(a->out_conn, fid, sim_now(w.s), (const uint8_t *)"hi b", 4, -1) ==
               TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 100);
    TT_CHECK_EQ_INT(b->peer_msgs, 1);
    TT_CHECK(strcmp(b->peer_text, "hi b") == 0);
    const sim_link_stats *ls = sim_link_get_stats(sim_link_lookup(w.s, &a->addr, &b->addr));
    TT_CHECK(ls != NULL && ls->delivered > 0);

    /* c was never introduced to b: b refuses its handshake */
    tern_conn *cc = NULL;
    TT_REQUIRE(tern_endpoint_connect(c->ep, sim_now(w.s), &c->addr, &b->addr, b->key.pub, &cc) ==
               TERN_OK);
    wake(c);
    tnet_run_ms(w.s, 3000); /* held for TERN_RDV_CLIENT_HOLD_NS in case INTRODUCED comes */
    TT_CHECK_EQ_INT(b->refused, 1);
    TT_CHECK_EQ_INT(b->accepted, 1);
    TT_CHECK_MSG(c->closed_err == TERN_ERR_REFUSED, "c closed with %d (%s)", c->closed_err,
                 c->closed_reason);
    /* the expectation was used up: a second handshake from a is refused too */
    tern_conn *again = NULL;
    TT_REQUIRE(tern_endpoint_connect(a->ep, sim_now(w.s), &a->addr, &b->addr, b->key.pub,
                                     &again) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 3000);
    TT_CHECK_EQ_INT(b->refused, 2);
    tern_rdv_client_stats st;
    tern_rdv_client_get_stats(b->rc, &st);
    TT_CHECK_EQ_U64(st.introduced, 1);
    TT_CHECK_EQ_U64(st.accepted, 1);
    TT_CHECK_EQ_U64(st.refused, 2);
    tern_rdv_client_get_stats(a->rc, &st);
    TT_CHECK_EQ_U64(st.introductions, 1);
    TT_CHECK_EQ_U64(st.peer_conns, 1);
    world_free(&w);
}

static void test_expectation_expires(void)
{
    world w;
    world_init(&w, 2);
    peer *a = &w.p[0], *b = &w.p[1];
    /* b is introduced but a's handshake comes only after the expectation ended: refused */
    /* the direct path between them is down for 30 s: b's handshake never reaches a */
    uint64_t t0 = sim_now(w.s);
    block_direct(&w, a, b, t0 + 30 * S);
    TT_REQUIRE(tern_rdv_client_introduce(b->rc, sim_now(w.s), a->id) == TERN_OK); /* a expects b */
    wake(b);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(a->introduced == 1);
    TT_CHECK(tern_rdv_client_next_deadline(a->rc) != TERN_TIME_NEVER);
    tnet_run_ms(w.s, 21000); /* probe duration (15 s) + margin (5 s) */
    TT_CHECK_EQ_U64(tern_rdv_client_next_deadline(a->rc), TERN_TIME_NEVER);
    TT_CHECK_EQ_INT(a->accepted, 0);
    tnet_run_ms(w.s, 10000); /* the path is back */
    /* (b's own connection from the introduction is long settled; open a fresh one to a) */
    tern_conn *late = NULL;
    TT_REQUIRE(tern_endpoint_connect(b->ep, sim_now(w.s), &b->addr, &a->addr, a->key.pub, &late) ==
               TERN_OK);
    wake(b);
    int refused0 = a->refused;
    tnet_run_ms(w.s, 3000); /* after the hold */
    TT_CHECK_EQ_INT(a->refused, refused0 + 1);
    world_free(&w);
}

/* The server's INTRODUCED to the target and the initiator's handshake take different paths:
 * here the server's link to b is slow (200 ms), so a's Initial (PEER_INFO after 10 ms, then
 * 5 ms to b) reaches b long before INTRODUCED. b holds the handshake and accepts it once
 * INTRODUCED arrives, instead of refusing it. */
static void test_handshake_before_introduced_is_held_then_accepted(void)
{
    world w;
    world_init(&w, 2);
    peer *a = &w.p[0], *b = &w.p[1];
    tnet_link(w.s, &w.srv.addr, &b->addr, 200, 0, 0);
    uint64_t t0 = sim_now(w.s);
    TT_REQUIRE(tern_rdv_client_introduce(a->rc, t0, b->id) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 100); /* a's handshake is at b; INTRODUCED is not */
    TT_REQUIRE(a->peer_conns == 1);
    TT_CHECK_EQ_INT(b->introduced, 0);
    TT_CHECK_EQ_INT(b->refused, 0);
    TT_CHECK_EQ_INT(b->accepted, 0);
    tern_rdv_client_stats st;
    tern_rdv_client_get_stats(b->rc, &st);
    TT_CHECK_EQ_U64(st.held, 1);
    tern_endpoint_stats es;
    tern_endpoint_get_stats(b->ep, &es);
    TT_CHECK(es.accepts_held >= 1);
    tnet_run_ms(w.s, 900);
    TT_CHECK_EQ_INT(b->introduced, 1);
    TT_CHECK_EQ_INT(b->refused, 0);
    TT_CHECK_EQ_INT(b->accepted, 1);
    TT_CHECK_EQ_INT(a->peer_established, 1);
    TT_CHECK_MSG(a->closed_err == 0, "a closed with %d (%s)", a->closed_err, a->closed_reason);
    tern_rdv_client_get_stats(b->rc, &st);
    TT_CHECK_EQ_U64(st.accepted, 1);
    TT_CHECK_EQ_U64(st.refused, 0);
    TT_CHECK_EQ_U64(st.held, 1);
    world_free(&w);
}

/* Held handshakes are bounded: past TERN_RDV_CLIENT_MAX_HELD the oldest is forgotten (counted),
 * a forgotten one asks again as new, and everything held is forgotten after the hold. */
static void test_held_handshakes_are_bounded(void)
{
    world w;
    world_init(&w, 2);
    peer *b = &w.p[1];
    /* N peers the server never introduced, each with its own key, connect to b at once */
    enum { N = TERN_RDV_CLIENT_MAX_HELD + 3 };
    static tnet_node cl[N];
    for (int i = 0; i < N; i++) {
        tern_addr addr;
        tern_addr_ipv4(&addr, 198, 51, 100, (uint8_t)(10 + i), 5000);
        tnet_node_init(&cl[i], w.s, &addr, 0, NULL, 100 + (uint64_t)i);
        tern_conn *c = NULL;
        TT_REQUIRE(tern_endpoint_connect(cl[i].ep, sim_now(w.s), &cl[i].addr, &b->addr,
                                         b->key.pub, &c) == TERN_OK);
        sim_node_wake(w.s, cl[i].node);
    }
    tnet_run_ms(w.s, 100);
    tern_rdv_client_stats st;
    tern_rdv_client_get_stats(b->rc, &st);
    TT_CHECK_EQ_U64(st.held, N);                                 /* each held once so far */
    TT_CHECK_EQ_U64(st.hold_evicted, N - TERN_RDV_CLIENT_MAX_HELD); /* the oldest made room */
    TT_CHECK_EQ_INT(b->accepted, 0);
    TT_CHECK_EQ_INT(b->refused, 0);
    /* none is ever accepted: refused after its hold, or given up by the handshake timeout */
    tnet_run_ms(w.s, 20000);
    TT_CHECK_EQ_INT(b->accepted, 0);
    for (int i = 0; i < N; i++) TT_CHECK_MSG(cl[i].closed, "client %d still open", i);
    TT_CHECK(b->refused >= TERN_RDV_CLIENT_MAX_HELD);
    tern_rdv_client_get_stats(b->rc, &st);
    TT_CHECK_EQ_U64(st.accepted, 0);
    TT_CHECK(st.hold_evicted >= N - TERN_RDV_CLIENT_MAX_HELD);
    /* nothing held stays: the client's next deadline is gone once the holds are forgotten */
    TT_CHECK_EQ_U64(tern_rdv_client_next_deadline(b->rc), TERN_TIME_NEVER);
    for (int i = 0; i < N; i++) tnet_node_free(&cl[i], w.s);
    world_free(&w);
}

static void test_unknown_peer_fails_fast(void)
{
    world w;
    world_init(&w, 1);
    peer *a = &w.p[0];
    uint8_t nobody[32];
    memset(nobody, 0x5a, sizeof(nobody));
    uint64_t t0 = sim_now(w.s);
    TT_REQUIRE(tern_rdv_client_introduce(a->rc, t0, nobody) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 200);
    TT_REQUIRE(a->intro_failed == 1);
    TT_CHECK_EQ_INT(a->intro_error, TERN_RDV_E_UNKNOWN_PEER);
    TT_CHECK(memcmp(a->intro_failed_id, nobody, 32) == 0);
    /* one round trip of 10 ms (and the peer's ACK delay at most) */
    TT_CHECK_MSG(a->intro_failed_at - t0 <= 40 * MS, "took %llu ns",
                 (unsigned long long)(a->intro_failed_at - t0));
    TT_CHECK_EQ_INT(a->peer_conns, 0);
    /* oneself: INVALID, through the same callback */
    TT_REQUIRE(tern_rdv_client_introduce(a->rc, sim_now(w.s), a->id) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 100);
    TT_CHECK_EQ_INT(a->intro_failed, 2);
    TT_CHECK_EQ_INT(a->intro_error, TERN_RDV_E_INVALID);
    /* a stray PEER_INFO nobody asked for is ignored, not connected to */
    tern_rdv_client_stats st;
    tern_rdv_client_get_stats(a->rc, &st);
    TT_CHECK_EQ_U64(st.peer_conns, 0);
    TT_CHECK_EQ_U64(st.intro_failed, 2);
    world_free(&w);
}

static void test_groups(void)
{
    world w;
    world_init(&w, 3);
    peer *a = &w.p[0], *b = &w.p[1], *c = &w.p[2];
    const uint8_t *g = (const uint8_t *)"lobby";
    TT_REQUIRE(tern_rdv_client_join(a->rc, sim_now(w.s), g, 5, NULL) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(a->joined == 1);
    TT_CHECK_EQ_U64(a->joined_count, 1);
    TT_CHECK_EQ_U64(a->joined_members, 0);
    TT_REQUIRE(tern_rdv_client_join(b->rc, sim_now(w.s), g, 5, NULL) == TERN_OK);
    wake(b);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(b->joined == 1);
    TT_CHECK_EQ_U64(b->joined_count, 2);
    TT_CHECK_EQ_U64(b->joined_members, 1);
    TT_CHECK(memcmp(b->first_member, a->id, 32) == 0);
    TT_CHECK_EQ_INT(a->presence_join, 1);
    TT_CHECK(memcmp(a->presence_id, b->id, 32) == 0);

    TT_REQUIRE(tern_rdv_client_group_send(a->rc, sim_now(w.s), g, 5, (const uint8_t *)"hello all",
                                          9) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(b->group_msgs, 1);
    TT_CHECK(strcmp(b->group_text, "hello all") == 0);
    TT_CHECK(memcmp(b->group_sender, a->id, 32) == 0);
    TT_CHECK_EQ_INT(a->group_msgs, 0); /* not back to the sender */
    TT_CHECK_EQ_INT(c->group_msgs, 0); /* not a member */
    /* an empty message is allowed */
    TT_REQUIRE(tern_rdv_client_group_send(b->rc, sim_now(w.s), g, 5, NULL, 0) == TERN_OK);
    wake(b);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(a->group_msgs, 1);
    TT_CHECK(a->group_text[0] == '\0');
    /* c is not a member: NOT_MEMBER through on_error */
    TT_REQUIRE(tern_rdv_client_group_send(c->rc, sim_now(w.s), g, 5, (const uint8_t *)"x", 1) ==
               TERN_OK);
    wake(c);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(c->errors[TERN_RDV_E_NOT_MEMBER], 1);
    /* b leaves: a sees it */
    TT_REQUIRE(tern_rdv_client_leave(b->rc, sim_now(w.s), g, 5) == TERN_OK);
    wake(b);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(a->presence_leave, 1);
    TT_CHECK(memcmp(a->presence_id, b->id, 32) == 0);
    /* names over the limit are refused locally */
    uint8_t longname[300];
    memset(longname, 'g', sizeof(longname));
    TT_CHECK_EQ_INT(tern_rdv_client_join(a->rc, sim_now(w.s), longname, 256, NULL),
                    TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_rdv_client_join(a->rc, sim_now(w.s), longname, 0, NULL),
                    TERN_ERR_INVALID_ARG);
    world_free(&w);
}

static void test_rpc(void)
{
    world w;
    world_init(&w, 3);
    peer *prov = &w.p[0], *caller = &w.p[1], *silent = &w.p[2];
    prov->auto_reply = 1;
    const uint8_t *svc = (const uint8_t *)"echo", *m = (const uint8_t *)"say";
    TT_REQUIRE(tern_rdv_client_offer(prov->rc, sim_now(w.s), svc, 4, NULL) == TERN_OK);
    TT_REQUIRE(tern_rdv_client_offer(silent->rc, sim_now(w.s), (const uint8_t *)"mute", 4, NULL) ==
               TERN_OK);
    wake(prov);
    wake(silent);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(prov->offered, 1);
    TT_CHECK_EQ_INT(silent->offered, 1);

    uint64_t id1 = 0, id2 = 0, id3 = 0;
    TT_REQUIRE(tern_rdv_client_call(caller->rc, sim_now(w.s), svc, 4, m, 3,
                                    (const uint8_t *)"ping", 4, 0, &id1) == TERN_OK);
    wake(caller);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(prov->calls_in, 1);
    TT_REQUIRE(caller->replies == 1);
    TT_CHECK_EQ_U64(caller->reply_id, id1);
    TT_CHECK_EQ_U64(caller->reply_status, 0);
    TT_CHECK(strcmp(caller->reply_text, "re:ping") == 0);

    /* nobody offers it: NO_SERVICE with our call id */
    TT_REQUIRE(tern_rdv_client_call(caller->rc, sim_now(w.s), (const uint8_t *)"none", 4, m, 3,
                                    NULL, 0, 0, &id2) == TERN_OK);
    TT_CHECK(id2 != id1);
    wake(caller);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(caller->errors[TERN_RDV_E_NO_SERVICE], 1);
    TT_CHECK_EQ_U64(caller->error_call_id, id2);

    /* the provider never answers: the server's TIMEOUT */
    uint64_t t0 = sim_now(w.s);
    TT_REQUIRE(tern_rdv_client_call(caller->rc, t0, (const uint8_t *)"mute", 4, m, 3,
                                    (const uint8_t *)"?", 1, 200, &id3) == TERN_OK);
    wake(caller);
    tnet_run_ms(w.s, 400);
    TT_CHECK_EQ_INT(silent->calls_in, 1);
    TT_CHECK_EQ_INT(caller->errors[TERN_RDV_E_TIMEOUT], 1);
    TT_CHECK_EQ_U64(caller->error_call_id, id3);
    TT_CHECK_RANGE(caller->error_at - t0, 200 * MS, 260 * MS);
    tern_rdv_client_stats st;
    tern_rdv_client_get_stats(caller->rc, &st);
    TT_CHECK_EQ_U64(st.calls, 3);
    TT_CHECK_EQ_U64(st.replies, 1);
    TT_CHECK_EQ_U64(st.call_errors, 2);
    TT_CHECK_EQ_U64(st.calls_timed_out_locally, 0);
    TT_CHECK_EQ_U64(tern_rdv_client_next_deadline(caller->rc), TERN_TIME_NEVER);

    /* the server goes silent (both directions black-holed): the call fails locally at its
     * timeout plus the grace (2 s) */
    uint64_t id4 = 0;
    t0 = sim_now(w.s);
    sim_link *up = sim_link_lookup(w.s, &caller->addr, &w.srv.addr);
    sim_link *down = sim_link_lookup(w.s, &w.srv.addr, &caller->addr);
    TT_REQUIRE(up && down);
    TT_REQUIRE(sim_link_blackhole(up, t0, t0 + 10 * S) == 0);
    TT_REQUIRE(sim_link_blackhole(down, t0, t0 + 10 * S) == 0);
    TT_REQUIRE(tern_rdv_client_call(caller->rc, t0, svc, 4, m, 3, (const uint8_t *)"x", 1, 500,
                                    &id4) == TERN_OK);
    wake(caller);
    tnet_run_ms(w.s, 3000);
    TT_CHECK_EQ_INT(caller->errors[TERN_RDV_E_TIMEOUT], 2);
    TT_CHECK_EQ_U64(caller->error_call_id, id4);
    TT_CHECK_RANGE(caller->error_at - t0, 2500 * MS, 2501 * MS);
    tern_rdv_client_get_stats(caller->rc, &st);
    TT_CHECK_EQ_U64(st.calls_timed_out_locally, 1);
    tnet_run_ms(w.s, 8000); /* links back */

    /* a call in flight when the server connection goes: PROVIDER_GONE at once */
    uint64_t id5 = 0;
    TT_REQUIRE(tern_rdv_client_call(caller->rc, sim_now(w.s), (const uint8_t *)"mute", 4, m, 3,
                                    NULL, 0, 5000, &id5) == TERN_OK);
    wake(caller);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(caller->srv_conn != NULL);
    tern_conn_close(caller->srv_conn, sim_now(w.s), 0, "bye", 3);
    wake(caller);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(caller->errors[TERN_RDV_E_PROVIDER_GONE], 1);
    TT_CHECK_EQ_U64(caller->error_call_id, id5);
    TT_CHECK(tern_rdv_client_conn(caller->rc) == NULL);
    TT_CHECK_EQ_INT(tern_rdv_client_call(caller->rc, sim_now(w.s), svc, 4, m, 3, NULL, 0, 0, &id5),
                    TERN_ERR_STATE);
    world_free(&w);
}

static void test_bad_input_and_other_conns(void)
{
    world w;
    world_init(&w, 1);
    peer *a = &w.p[0];
    static const uint8_t junk[][6] = {{0}, {1, 99}, {2, 2}, {1, 2, 3, 0, 9, 1}};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        TT_CHECK_EQ_INT(tern_rdv_client_on_message(a->rc, a->srv_conn, 0, junk[i], i + 2,
                                                   sim_now(w.s)),
                        1);
    /* a message for another connection is not the client's */
    TT_CHECK_EQ_INT(tern_rdv_client_on_message(a->rc, (tern_conn *)&w, 0, junk[1], 2,
                                               sim_now(w.s)),
                    0);
    /* a client-to-server kind, a REPLY nobody waits for: decoded, counted as unexpected */
    uint8_t buf[256];
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_JOIN);
    m.group = (const uint8_t *)"g", m.group_len = 1;
    int n = tern_rdv_encode(&m, buf, sizeof(buf));
    TT_REQUIRE(n > 0);
    TT_CHECK_EQ_INT(tern_rdv_client_on_message(a->rc, a->srv_conn, 0, buf, (size_t)n,
                                               sim_now(w.s)),
                    1);
    tern_rdv_msg_init(&m, TERN_RDV_REPLY);
    m.has_call_id = m.has_status = 1;
    m.call_id = 999;
    m.payload = buf, m.payload_len = 0, m.has_payload = 1;
    n = tern_rdv_encode(&m, buf, sizeof(buf));
    TT_REQUIRE(n > 0);
    TT_CHECK_EQ_INT(tern_rdv_client_on_message(a->rc, a->srv_conn, 0, buf, (size_t)n,
                                               sim_now(w.s)),
                    1);
    TT_CHECK_EQ_INT(a->replies, 0);
    /* PEER_INFO whose ID is not the hash of its key: ignored, nothing connects */
    tern_rdv_msg_init(&m, TERN_RDV_PEER_INFO);
    m.has_peer_id = m.has_pubkey = m.has_nonce = 1;
    memset(m.peer_id, 7, 32);
    memset(m.pubkey, 8, 32);
    n = tern_rdv_encode(&m, buf, sizeof(buf));
    TT_REQUIRE(n > 0);
    TT_CHECK_EQ_INT(tern_rdv_client_on_message(a->rc, a->srv_conn, 0, buf, (size_t)n,
                                               sim_now(w.s)),
                    1);
    TT_CHECK_EQ_INT(a->peer_conns, 0);
    tern_rdv_client_stats st;
    tern_rdv_client_get_stats(a->rc, &st);
    TT_CHECK_EQ_U64(st.bad_messages, 4);
    TT_CHECK_EQ_U64(st.unexpected, 3);
    world_free(&w);
}


/* Two peers whose connections to the server run over TCP only (UDP to the server blocked by the
 * setup, the direct path between them blackholed): each is offered the relay over its own stream
 * (the RELAY candidate means the server connection's stream), the relay forwards between the two
 * streams, and a message goes through. */
static void test_relay_over_streams(void)
{
    world w;
    const uint8_t tr[2] = {TERN_TRANSPORT_TCP, TERN_TRANSPORT_TCP};
    world_init_over(&w, 2, 1, -1, tr);
    peer *a = &w.p[0], *b = &w.p[1];
    uint64_t t0 = sim_now(w.s);
    block_direct(&w, a, b, t0 + 60 * S);
    TT_REQUIRE(tern_rdv_client_introduce(a->rc, t0, b->id) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 3000);
    TT_REQUIRE(a->out_conn != NULL);
    TT_REQUIRE_MSG(a->peer_established == 1, "not established through the relay within 3 s");
    TT_CHECK_EQ_INT(b->accepted, 1);
    tern_path_info pi;
    tern_conn_path(a->out_conn, &pi);
    TT_CHECK(pi.relayed);
    tern_addr srv_tcp = w.srv.addr;
    srv_tcp.transport = TERN_TRANSPORT_TCP;
    TT_CHECK_MSG(tern_addr_equal(&pi.remote, &srv_tcp), "the relay route is not A's stream");
    tern_relay_stats rs;
    tern_relay_get_stats(w.srv.relay, &rs);
    TT_CHECK(rs.fwd_packets > 0);
    TT_CHECK_EQ_U64(rs.drop_wrong_source + rs.drop_unknown_channel, 0);
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    uint64_t fid;
    TT_REQUIRE(tern_flow_open(a->out_conn, &fc, &fid) == TERN_OK);
    TT_REQUIRE(tern_flow_send(a->out_conn, fid, sim_now(w.s), (const uint8_t *)"over tcp", 8, -1) ==
               TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 200);
    TT_CHECK_EQ_INT(b->peer_msgs, 1);
    TT_CHECK(strcmp(b->peer_text, "over tcp") == 0);
    world_free(&w);
}

static void test_relay_when_no_direct_path_then_direct(void)
{
    world w;
    world_init_opts(&w, 2, 1, -1);
    peer *a = &w.p[0], *b = &w.p[1];
    uint64_t t0 = sim_now(w.s);
    block_direct(&w, a, b, t0 + 4 * S);
    TT_REQUIRE(tern_rdv_client_introduce(a->rc, t0, b->id) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 3000);
    /* the relay (the wildcard RELAY candidate made into the server's address) carried it */
    TT_REQUIRE(a->out_conn != NULL);
    TT_REQUIRE_MSG(a->peer_established == 1, "not established through the relay within 3 s");
    TT_CHECK_EQ_INT(b->accepted, 1);
    tern_path_info pi;
    tern_conn_path(a->out_conn, &pi);
    TT_CHECK(pi.relayed);
    TT_CHECK(tern_addr_equal(&pi.remote, &w.srv.addr));
    tern_relay_stats rs;
    tern_relay_get_stats(w.srv.relay, &rs);
    TT_CHECK(rs.fwd_packets > 0);
    TT_CHECK_EQ_U64(rs.drop_wrong_source + rs.drop_unknown_channel, 0);
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    uint64_t fid;
    TT_REQUIRE(tern_flow_open(a->out_conn, &fc, &fid) == TERN_OK);
    TT_REQUIRE(tern_flow_send(a->out_conn, fid, sim_now(w.s), (const uint8_t *)"via relay", 9,
                              -1) == TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 200);
    TT_CHECK_EQ_INT(b->peer_msgs, 1);
    TT_CHECK(strcmp(b->peer_text, "via relay") == 0);
    /* the direct path opens at 4 s: the connection moves to it while probing lasts (15 s) */
    tnet_run_ms(w.s, 10000);
    tern_conn_path(a->out_conn, &pi);
    TT_CHECK_MSG(!pi.relayed, "still relayed after the direct path opened");
    TT_CHECK(tern_addr_equal(&pi.remote, &b->addr));
    TT_CHECK(pi.moves >= 1);
    TT_REQUIRE(tern_flow_send(a->out_conn, fid, sim_now(w.s), (const uint8_t *)"direct", 6, -1) ==
               TERN_OK);
    wake(a);
    tnet_run_ms(w.s, 200);
    TT_CHECK_EQ_INT(b->peer_msgs, 2);
    TT_CHECK(strcmp(b->peer_text, "direct") == 0);
    world_free(&w);
}

/* M1 (issue 12): a flood of introductions to one target, each from a fresh key, fills every
 * table of expectations it has; a legitimate introduction during the flood still connects. */
static void test_intro_flood_cannot_lock_expectations(void)
{
    enum { ATT = 70 };
    world w;
    world_init_opts(&w, 2, 0, 0); /* the whole flood through the server: the client is the subject */
    peer *t = &w.p[0], *l = &w.p[1];
    peer *att = calloc(ATT, sizeof(*att));
    TT_REQUIRE(att != NULL);
    for (int i = 0; i < ATT; i++) peer_init(&att[i], w.s, &w.srv, (uint8_t)(20 + i));
    tnet_run_ms(w.s, 100);
    for (int i = 0; i < ATT; i++) {
        TT_REQUIRE(att[i].srv_up);
        TT_REQUIRE(tern_rdv_client_register(att[i].rc, sim_now(w.s), &att[i].addr, 1, NULL) ==
                   TERN_OK);
        wake(&att[i]);
    }
    tnet_run_ms(w.s, 50);
    /* each attacker asks for the target on a flow of its own (no client, so it never connects
     * and the target's expectation of it is never used up) */
    for (int i = 0; i < ATT; i++) {
        tern_flow_config fc;
        tern_flow_config_default(&fc);
        uint64_t f;
        TT_REQUIRE(tern_flow_open(att[i].srv_conn, &fc, &f) == TERN_OK);
        tern_rdv_msg m;
        tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
        m.has_peer_id = 1;
        memcpy(m.peer_id, t->id, TERN_PEER_ID_LEN);
        TT_REQUIRE(tern_rdv_send(att[i].srv_conn, f, sim_now(w.s), &m) == TERN_OK);
        wake(&att[i]);
        tnet_run_ms(w.s, 2);
    }
    tnet_run_ms(w.s, 100);
    tern_rdv_client_stats st;
    tern_rdv_client_get_stats(t->rc, &st);
    TT_CHECK_EQ_INT(t->introduced, ATT);
    TT_CHECK_EQ_U64(st.expect_evicted, ATT - TERN_RDV_CLIENT_MAX_PENDING);
    /* during the flood: a real introduction connects */
    TT_REQUIRE(tern_rdv_client_introduce(l->rc, sim_now(w.s), t->id) == TERN_OK);
    wake(l);
    tnet_run_ms(w.s, 500);
    tern_rdv_client_get_stats(t->rc, &st);
    printf("  %d introductions from fresh keys to one target: %llu expectations evicted, the "
           "legitimate peer %s (target's endpoint: %s)\n", ATT,
           (unsigned long long)st.expect_evicted,
           l->peer_established == 1 && t->accepted == 1 ? "connected" : "DID NOT connect",
           t->introduced_err == TERN_OK ? "expecting" : tern_strerror(t->introduced_err));
    TT_CHECK_EQ_INT(l->peer_conns, 1);
    TT_CHECK_EQ_INT(l->peer_established, 1);
    TT_CHECK_EQ_INT(t->accepted, 1);
    TT_REQUIRE(t->in_conn != NULL);
    uint8_t id[32];
    TT_REQUIRE(tern_conn_peer_id(t->in_conn, id) == TERN_OK);
    TT_CHECK(memcmp(id, l->id, 32) == 0);
    for (int i = 0; i < ATT; i++) peer_free(&att[i]);
    free(att);
    world_free(&w);
}

/* A datagram sink at one address: counts what arrives. */
typedef struct sink {
    uint64_t got;
} sink;

static void sink_recv(void *node, uint64_t now, const tern_addr *local, const tern_addr *remote,
                      const uint8_t *data, size_t len)
{
    (void)now, (void)local, (void)remote, (void)data, (void)len;
    ((sink *)node)->got++;
}

static int sink_send(void *node, uint64_t now, tern_datagram *d, size_t max, uint8_t *buf,
                     size_t len)
{
    (void)node, (void)now, (void)d, (void)max, (void)buf, (void)len;
    return 0;
}

static uint64_t sink_deadline(void *node)
{
    (void)node;
    return TERN_TIME_NEVER;
}

static void sink_expire(void *node, uint64_t now)
{
    (void)node, (void)now;
}

static const sim_node_ops sink_ops = {sink_recv, sink_send, sink_deadline, sink_expire};

/* M2 (issue 12): an introduction naming somebody else's public address as LOCAL (here straight
 * from a server we do not trust, as the server itself drops them): the client never punches it,
 * and still punches a LOCAL address in a private range. */
static void test_client_drops_public_local_candidates(void)
{
    world w;
    world_init(&w, 1);
    peer *t = &w.p[0];
    sink victim = {0}, lan = {0};
    tern_addr va, la;
    tern_addr_ipv4(&va, 203, 0, 113, 77, 9);
    tern_addr_ipv4(&la, 10, 0, 0, 99, 5000);
    TT_REQUIRE(sim_add_node(w.s, &sink_ops, &victim, &va) != NULL);
    TT_REQUIRE(sim_add_node(w.s, &sink_ops, &lan, &la) != NULL);
    uint8_t priv[32];
    memset(priv, 0x31, sizeof(priv));
    tern_keypair kp;
    tern_keypair_from_private(&kp, priv);
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCED);
    m.has_peer_id = m.has_pubkey = m.has_nonce = 1;
    memcpy(m.pubkey, kp.pub, 32);
    tern_peer_id(kp.pub, m.peer_id);
    memset(m.nonce, 7, sizeof(m.nonce));
    m.n_cands = 4;
    m.cands[0].kind = TERN_RDV_CAND_LOCAL, m.cands[0].addr = va;
    m.cands[1].kind = TERN_RDV_CAND_LOCAL;
    tern_addr_ipv4(&m.cands[1].addr, 8, 8, 8, 8, 53);
    m.cands[2].kind = TERN_RDV_CAND_LOCAL, m.cands[2].addr = la;
    m.cands[3].kind = TERN_RDV_CAND_PUBLIC;
    tern_addr_ipv4(&m.cands[3].addr, 198, 51, 100, 200, 4000);
    uint8_t buf[TERN_RDV_MAX_MSG];
    int n = tern_rdv_encode(&m, buf, sizeof(buf));
    TT_REQUIRE(n > 0);
    TT_CHECK_EQ_INT(tern_rdv_client_on_message(t->rc, t->srv_conn, 1, buf, (size_t)n,
                                               sim_now(w.s)), 1);
    wake(t);
    tnet_run_ms(w.s, 3000);
    tern_rdv_client_stats st;
    tern_rdv_client_get_stats(t->rc, &st);
    printf("  INTRODUCED with 2 public LOCAL candidates: %llu dropped; the victim received %llu "
           "datagrams, the private LOCAL one %llu\n", (unsigned long long)st.local_cands_dropped,
           (unsigned long long)victim.got, (unsigned long long)lan.got);
    TT_CHECK_EQ_U64(st.local_cands_dropped, 2);
    TT_CHECK_EQ_U64(victim.got, 0);
    TT_CHECK(lan.got > 0);
    world_free(&w);
}

static const tt_case cases[] = {
    TT_CASE(test_register),
    TT_CASE(test_introduce_connects_and_target_accepts_only_the_introduced),
    TT_CASE(test_expectation_expires),
    TT_CASE(test_handshake_before_introduced_is_held_then_accepted),
    TT_CASE(test_held_handshakes_are_bounded),
    TT_CASE(test_relay_when_no_direct_path_then_direct),
    TT_CASE(test_relay_over_streams),
    TT_CASE(test_unknown_peer_fails_fast),
    TT_CASE(test_groups),
    TT_CASE(test_rpc),
    TT_CASE(test_bad_input_and_other_conns),
    TT_CASE(test_intro_flood_cannot_lock_expectations),
    TT_CASE(test_client_drops_public_local_candidates),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
