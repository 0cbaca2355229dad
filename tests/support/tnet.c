/* tnet: endpoints on the simulated network with recorded events (see tnet.h). */
#include "support/tnet.h"

#include <string.h>

static int on_accept(tern_conn *c, void *u)
{
    tnet_node *n = u;
    n->conn = c;
    return n->refuse ? -1 : 0;
}

static void on_established(tern_conn *c, void *u)
{
    tnet_node *n = u;
    n->established++;
    n->established_at = 0;
    n->conn = c;
}

static void on_datagram(tern_conn *c, const uint8_t *d, size_t len, void *u)
{
    (void)c;
    (void)d;
    tnet_node *n = u;
    n->datagrams++;
    n->datagram_bytes += len;
}

static void on_rtt(tern_conn *c, uint64_t rtt, void *u)
{
    (void)c;
    (void)rtt;
    ((tnet_node *)u)->rtt_samples++;
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *u)
{
    (void)c;
    tnet_node *n = u;
    n->closed++;
    n->close_err = err;
    n->close_code = code;
    n->reason_len = len < sizeof(n->reason) - 1 ? len : sizeof(n->reason) - 1;
    memcpy(n->reason, reason ? reason : "", n->reason_len);
    n->reason[n->reason_len] = '\0';
}

static void on_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *u)
{
    tnet_node *n = u;
    n->messages++;
    n->message_bytes += len;
    if (n->on_message) n->on_message(n, c, flow, d, len);
}

static void on_flow_closed(tern_conn *c, uint64_t flow, void *u)
{
    (void)c;
    (void)flow;
    ((tnet_node *)u)->flows_closed++;
}

static void on_path(tern_conn *c, void *u)
{
    (void)c;
    ((tnet_node *)u)->path_changes++;
}

static void on_target_rate(tern_conn *c, uint64_t bps, void *u)
{
    tnet_node *n = u;
    n->target_events++;
    n->target_bps = bps;
    (void)c;
    n->target_at = sim_now(n->sim);
}

static void on_conn_free(tern_conn *c, void *u)
{
    tnet_node *n = u;
    n->freed++;
    if (n->conn == c) n->conn = NULL;
}

void tnet_node_init(tnet_node *n, sim *s, const tern_addr *addr, int is_server,
                    const tern_settings *settings, uint64_t stream)
{
    memset(n, 0, sizeof(*n));
    n->addr = *addr;
    n->sim = s;
    tt_mem_init(&n->mem);
    tt_rng_seed(&n->rng, sim_derive_seed(s, stream));
    uint8_t priv[TERN_KEY_LEN];
    tt_rand_fill(priv, sizeof(priv), &n->rng);
    tern_keypair_from_private(&n->key, priv);

    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    if (settings) cfg.settings = *settings;
    cfg.is_server = is_server;
    cfg.has_static_key = 1;
    cfg.static_key = n->key;
    cfg.mem = &n->mem.mem;
    cfg.rand = tt_rand_fill;
    cfg.rand_user = &n->rng;
    cfg.user_data = n;
    cfg.callbacks.on_accept = on_accept;
    cfg.callbacks.on_established = on_established;
    cfg.callbacks.on_datagram = on_datagram;
    cfg.callbacks.on_rtt = on_rtt;
    cfg.callbacks.on_closed = on_closed;
    cfg.callbacks.on_conn_free = on_conn_free;
    cfg.callbacks.on_message = on_message;
    cfg.callbacks.on_flow_closed = on_flow_closed;
    cfg.callbacks.on_path = on_path;
    cfg.callbacks.on_target_rate = on_target_rate;
    TT_REQUIRE(tern_endpoint_new(&cfg, sim_now(s), &n->ep) == TERN_OK);
    n->node = sim_add_tern_endpoint(s, n->ep, addr);
    TT_REQUIRE(n->node != NULL);
}

void tnet_node_free(tnet_node *n, sim *s)
{
    if (n->node) sim_node_remove(s, n->node);
    n->node = NULL;
    tern_endpoint_del(n->ep);
    n->ep = NULL;
    tt_mem_check_clean(&n->mem, "endpoint");
}

tern_conn *tnet_connect(sim *s, tnet_node *client, const tnet_node *server, const uint8_t *key)
{
    tern_conn *c = NULL;
    int rc = tern_endpoint_connect(client->ep, sim_now(s), &client->addr, &server->addr,
                                   key ? key : server->key.pub, &c);
    TT_REQUIRE_MSG(rc == TERN_OK, "connect: %s", tern_strerror(rc));
    client->conn = c;
    return c;
}

tern_endpoint_stats tnet_stats(const tnet_node *n)
{
    tern_endpoint_stats st;
    tern_endpoint_get_stats(n->ep, &st);
    return st;
}

void tnet_run_ms(sim *s, uint64_t ms)
{
    int rc = sim_run_until(s, sim_now(s) + ms * 1000000ull);
    TT_REQUIRE_MSG(rc == SIM_OK, "sim: %s", sim_error(s));
}

void tnet_link(sim *s, const tern_addr *a, const tern_addr *b, double delay_ms, double loss,
               int burst_max)
{
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = (uint64_t)(delay_ms * 1e6);
    p.loss = loss;
    p.burst_max = burst_max;
    TT_REQUIRE(sim_link_set_both(s, a, b, &p) != NULL);
}
