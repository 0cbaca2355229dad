/*
 * rdv_load: rendezvous server load on the simulated network.
 *
 * One sim holds a rendezvous server (a tern server endpoint whose callbacks feed
 * tern_rdv_server) and PEERS tern client endpoints, each with its own long-term key, joined by
 * 1 ms links. Three phases, each timed on the wall clock:
 *   1. connect: every peer completes its tern handshake (both sides' public-key work runs here);
 *   2. register: every peer sends REGISTER and waits for REGISTERED;
 *   3. introduce: INTROS introductions between random registered pairs (A asks for B; A gets
 *      PEER_INFO and B gets INTRODUCED), sent in batches of 1,000.
 * Each phase reports its rate twice: on the wall clock for the whole simulation (every client
 * endpoint's encryption and the simulator included, so a lower bound for the server), and per
 * second of time spent inside the rendezvous server's own entry points. Memory: bytes held by
 * the rendezvous server per registered peer (its counting allocator, fixed buffers excluded), and
 * by the server's tern endpoint per connection.
 *
 * Nothing here is asserted; tests/unit/test_rendezvous.c checks the behaviour.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"
#include "sim/sim_tern.h"
#include "support/tt.h"
#include "tern/rendezvous.h"

#define MS (1000000ull)

typedef struct peer {
    tern_endpoint *ep;
    tern_conn *conn;
    tern_addr addr;
    uint8_t id[TERN_PEER_ID_LEN];
    uint64_t flow;
    int established, registered, has_flow;
    uint64_t peer_info, introduced, errors;
} peer;

typedef struct server {
    tern_endpoint *ep;
    tern_rdv_server *rdv;
    tern_addr addr;
    tt_mem mem, rmem;
    tt_rng rng;
    uint64_t rdv_ns; /* wall time inside tern_rdv_server_* */
} server;

static sim *g_sim;
static server g_srv;
static uint64_t g_registered, g_peer_info;

static void s_recv(void *n, uint64_t now, const tern_addr *l, const tern_addr *r,
                   const uint8_t *d, size_t len)
{
    (void)tern_endpoint_recv(((server *)n)->ep, now, l, r, d, len);
}

static int s_send(void *n, uint64_t now, tern_datagram *dg, size_t max, uint8_t *b, size_t bl)
{
    return tern_endpoint_send(((server *)n)->ep, now, dg, max, b, bl);
}

static uint64_t s_deadline(void *n)
{
    server *s = n;
    uint64_t a = tern_endpoint_next_deadline(s->ep), b = tern_rdv_server_next_deadline(s->rdv);
    return a < b ? a : b;
}

static void s_expire(void *n, uint64_t now)
{
    server *s = n;
    tern_rdv_server_handle_expiry(s->rdv, now);
    tern_endpoint_handle_expiry(s->ep, now);
}

static const sim_node_ops server_ops = {s_recv, s_send, s_deadline, s_expire};

static int s_accept(tern_conn *c, void *u)
{
    server *s = u;
    uint64_t t = tt_wall_ns();
    int rc = tern_rdv_server_on_accept(s->rdv, c, sim_now(g_sim));
    s->rdv_ns += tt_wall_ns() - t;
    return rc;
}

static void s_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *u)
{
    server *s = u;
    uint64_t t = tt_wall_ns();
    tern_rdv_server_on_message(s->rdv, c, flow, d, len, sim_now(g_sim));
    s->rdv_ns += tt_wall_ns() - t;
}

static void s_gone(tern_conn *c, void *u)
{
    tern_rdv_server_on_gone(((server *)u)->rdv, c, sim_now(g_sim));
}

static void p_established(tern_conn *c, void *u)
{
    peer *p = u;
    p->established = 1;
    p->conn = c;
}

static void p_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *u)
{
    (void)c, (void)flow;
    peer *p = u;
    tern_rdv_msg m;
    if (tern_rdv_decode(d, len, &m) != TERN_OK) return;
    if (m.kind == TERN_RDV_REGISTERED) p->registered = 1, g_registered++;
    else if (m.kind == TERN_RDV_PEER_INFO) p->peer_info++, g_peer_info++;
    else if (m.kind == TERN_RDV_INTRODUCED) p->introduced++;
    else if (m.kind == TERN_RDV_ERROR) p->errors++;
}

static int run_until(uint64_t *counter, uint64_t want, uint64_t limit_ms)
{
    uint64_t end = sim_now(g_sim) + limit_ms * MS;
    while (*counter < want && sim_now(g_sim) < end) {
        int rc = sim_run_until(g_sim, sim_now(g_sim) + 5 * MS);
        if (rc != SIM_OK) {
            fprintf(stderr, "sim: %s\n", sim_error(g_sim));
            return -1;
        }
    }
    return *counter >= want ? 0 : -1;
}

static void send_msg(peer *p, const tern_rdv_msg *m)
{
    if (!p->has_flow) {
        tern_flow_config fc;
        tern_flow_config_default(&fc);
        if (tern_flow_open(p->conn, &fc, &p->flow) != TERN_OK) return;
        p->has_flow = 1;
    }
    (void)tern_rdv_send(p->conn, p->flow, sim_now(g_sim), m);
}

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 10000;
    uint64_t intros = argc > 2 ? strtoull(argv[2], NULL, 10) : 50000;
    if (n < 2 || n > 1000000) {
        fprintf(stderr, "usage: rdv_load [PEERS (2..1000000)] [INTROS]\n");
        return 2;
    }
    g_sim = sim_new(1);
    sim_link_params lp;
    sim_link_params_init(&lp);
    lp.delay_ns = 1 * MS;
    sim_set_default_link(g_sim, &lp);

    /* the server */
    server *s = &g_srv;
    tt_mem_init(&s->mem);
    tt_mem_init(&s->rmem);
    s->mem.report = s->rmem.report = 0;
    tt_rng_seed(&s->rng, 7);
    tern_rdv_config rc;
    tern_rdv_config_default(&rc);
    rc.mem = &s->rmem.mem;
    if (tern_rdv_server_new(&rc, &s->rdv) != TERN_OK) return 1;
    size_t rdv_base = s->rmem.current;
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.is_server = 1;
    cfg.has_static_key = 1;
    uint8_t priv[TERN_KEY_LEN];
    tt_rand_fill(priv, sizeof(priv), &s->rng);
    tern_keypair_from_private(&cfg.static_key, priv);
    cfg.settings.max_half_open = 1u << 30;
    cfg.settings.handshake_rate = 1u << 30;
    cfg.settings.handshake_burst = 1u << 30;
    cfg.settings.max_connections = n + 16;
    cfg.mem = &s->mem.mem;
    cfg.user_data = s;
    cfg.callbacks.on_accept = s_accept;
    cfg.callbacks.on_message = s_message;
    cfg.callbacks.on_conn_free = s_gone;
    uint8_t server_pub[TERN_KEY_LEN];
    memcpy(server_pub, cfg.static_key.pub, TERN_KEY_LEN);
    if (tern_endpoint_new(&cfg, 0, &s->ep) != TERN_OK) return 1;
    tern_addr_ipv4(&s->addr, 192, 0, 2, 1, 4433);
    sim_node *sn = sim_add_node(g_sim, &server_ops, s, &s->addr);
    size_t ep_base = s->mem.current;

    /* the peers */
    peer *ps = calloc(n, sizeof(*ps));
    sim_node **nodes = calloc(n, sizeof(*nodes));
    if (ps == NULL || nodes == NULL || sn == NULL) return 1;
    uint64_t t0 = tt_wall_ns();
    for (uint32_t i = 0; i < n; i++) {
        peer *p = &ps[i];
        tern_endpoint_config pc;
        tern_endpoint_config_default(&pc);
        pc.user_data = p;
        pc.has_static_key = 1;
        if (tern_keypair_generate(&pc.static_key) != TERN_OK) return 1;
        tern_peer_id(pc.static_key.pub, p->id);
        pc.callbacks.on_established = p_established;
        pc.callbacks.on_message = p_message;
        if (tern_endpoint_new(&pc, sim_now(g_sim), &p->ep) != TERN_OK) return 1;
        tern_addr_ipv4(&p->addr, 10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 40000);
        nodes[i] = sim_add_tern_endpoint(g_sim, p->ep, &p->addr);
        tern_conn *c;
        if (tern_endpoint_connect(p->ep, 0, &p->addr, &s->addr, server_pub, &c) != TERN_OK)
            return 1;
    }
    uint64_t established = 0;
    for (;;) {
        if (sim_run_until(g_sim, sim_now(g_sim) + 5 * MS) != SIM_OK) return 1;
        established = 0;
        for (uint32_t i = 0; i < n; i++) established += ps[i].established;
        if (established == n || sim_now(g_sim) > 60000 * MS) break;
    }
    uint64_t t1 = tt_wall_ns();
    printf("connect:    %u peers in %.2f s wall (%.0f handshakes/s, both sides' crypto)\n", n,
           (double)(t1 - t0) / 1e9, n / ((double)(t1 - t0) / 1e9));
    if (established != n) {
        fprintf(stderr, "only %llu of %u peers connected\n", (unsigned long long)established, n);
        return 1;
    }

    /* register */
    uint64_t srv0 = s->rdv_ns;
    t0 = tt_wall_ns();
    for (uint32_t i = 0; i < n; i++) {
        tern_rdv_msg m;
        tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
        m.n_cands = 1;
        m.cands[0].kind = TERN_RDV_CAND_LOCAL;
        tern_addr_ipv4(&m.cands[0].addr, 192, 168, (uint8_t)(i >> 8), (uint8_t)i, 5000);
        send_msg(&ps[i], &m);
    }
    if (run_until(&g_registered, n, 60000) != 0) {
        fprintf(stderr, "registration incomplete: %llu\n", (unsigned long long)g_registered);
        return 1;
    }
    t1 = tt_wall_ns();
    double reg_srv = (double)(s->rdv_ns - srv0) / 1e9;
    printf("register:   %u in %.3f s wall = %.0f registrations/s (simulation total); "
           "server's rendezvous code %.3f s = %.0f registrations/s\n",
           n, (double)(t1 - t0) / 1e9, n / ((double)(t1 - t0) / 1e9), reg_srv, n / reg_srv);
    tern_rdv_stats st;
    tern_rdv_server_get_stats(s->rdv, &st);
    printf("memory:     rendezvous server %.0f bytes per registered peer (%zu fixed); tern "
           "endpoint %.0f bytes per connection\n",
           (double)(s->rmem.current - rdv_base) / n, rdv_base,
           (double)(s->mem.current - ep_base) / n);

    /* introduce */
    tt_rng r;
    tt_rng_seed(&r, 11);
    srv0 = s->rdv_ns;
    t0 = tt_wall_ns();
    uint64_t sent = 0;
    while (sent < intros) {
        uint64_t batch = intros - sent < 1000 ? intros - sent : 1000;
        for (uint64_t k = 0; k < batch; k++) {
            uint32_t a = (uint32_t)tt_rng_below(&r, n), b = (uint32_t)tt_rng_below(&r, n - 1);
            if (b >= a) b++;
            tern_rdv_msg m;
            tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
            m.has_peer_id = 1;
            memcpy(m.peer_id, ps[b].id, TERN_PEER_ID_LEN);
            send_msg(&ps[a], &m);
        }
        sent += batch;
        if (run_until(&g_peer_info, sent, 60000) != 0) {
            fprintf(stderr, "introductions incomplete: %llu of %llu\n",
                    (unsigned long long)g_peer_info, (unsigned long long)sent);
            return 1;
        }
    }
    t1 = tt_wall_ns();
    double in_srv = (double)(s->rdv_ns - srv0) / 1e9;
    printf("introduce:  %llu in %.3f s wall = %.0f introductions/s (simulation total); "
           "server's rendezvous code %.3f s = %.0f introductions/s\n",
           (unsigned long long)intros, (double)(t1 - t0) / 1e9,
           intros / ((double)(t1 - t0) / 1e9), in_srv, intros / in_srv);
    tern_rdv_server_get_stats(s->rdv, &st);
    printf("server:     registered=%llu introductions=%llu unknown=%llu tx=%llu tx_failed=%llu\n",
           (unsigned long long)st.registered, (unsigned long long)st.introductions,
           (unsigned long long)st.intro_unknown, (unsigned long long)st.tx_messages,
           (unsigned long long)st.tx_failed);

    for (uint32_t i = 0; i < n; i++) {
        sim_node_remove(g_sim, nodes[i]);
        tern_endpoint_del(ps[i].ep);
    }
    sim_node_remove(g_sim, sn);
    tern_endpoint_del(s->ep);
    tern_rdv_server_del(s->rdv);
    sim_del(g_sim);
    free(ps);
    free(nodes);
    return 0;
}
