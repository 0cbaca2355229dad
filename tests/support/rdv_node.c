/* rdv_node: a rendezvous server on the simulated network (see rdv_node.h). */
#include "support/rdv_node.h"

#include <stdlib.h>
#include <string.h>

struct rdv_node_pkt {
    tern_addr to;
    size_t len;
    uint8_t data[TERN_MAX_DATAGRAM];
};

static void node_recv(void *node, uint64_t now, const tern_addr *local, const tern_addr *remote,
                      const uint8_t *data, size_t len)
{
    rdv_node *r = node;
    if (r->relay && len > 0 && data[0] == TERN_RELAY_TYPE && len <= TERN_MAX_DATAGRAM) {
        /* the relay on the tern port, as ternd runs it: forwarded from the same address */
        if (r->relay_tap) r->relay_tap(r->relay_tap_user, data, len);
        if (r->relay_q == NULL) {
            r->relay_q = calloc(RDV_NODE_RELAY_Q, sizeof(*r->relay_q));
            TT_REQUIRE(r->relay_q != NULL);
        }
        if (r->relay_q_len == RDV_NODE_RELAY_Q) {
            r->relay_q_full++;
            return;
        }
        struct rdv_node_pkt *p = &r->relay_q[(r->relay_q_head + r->relay_q_len) % RDV_NODE_RELAY_Q];
        memcpy(p->data, data, len);
        int n = tern_relay_forward(r->relay, now, remote, p->data, len, &p->to);
        if (n <= 0) return;
        p->len = (size_t)n;
        r->relay_q_len++;
        return;
    }
    (void)tern_endpoint_recv(r->ep, now, local, remote, data, len);
}

static int node_send(void *node, uint64_t now, tern_datagram *d, size_t max, uint8_t *buf,
                     size_t len)
{
    rdv_node *r = node;
    size_t n = 0, off = 0;
    while (n < max && r->relay_q_len > 0 && off + TERN_MAX_DATAGRAM <= len) {
        struct rdv_node_pkt *p = &r->relay_q[r->relay_q_head];
        memcpy(buf + off, p->data, p->len);
        d[n].local = r->addr; /* toward a stream: on that stream, whose end here is ours */
        d[n].local.transport = p->to.transport;
        d[n].remote = p->to;
        d[n].data = buf + off;
        d[n].len = p->len;
        off += p->len;
        n++;
        r->relay_q_head = (r->relay_q_head + 1) % RDV_NODE_RELAY_Q;
        r->relay_q_len--;
    }
    if (n > 0) return (int)n;
    return tern_endpoint_send(r->ep, now, d, max, buf, len);
}

static uint64_t node_deadline(void *node)
{
    rdv_node *r = node;
    uint64_t a = tern_endpoint_next_deadline(r->ep), b = tern_rdv_server_next_deadline(r->rdv);
    uint64_t c = r->owns_relay ? tern_relay_next_deadline(r->relay) : TERN_TIME_NEVER;
    a = a < b ? a : b;
    return a < c ? a : c;
}

static void node_expire(void *node, uint64_t now)
{
    rdv_node *r = node;
    if (r->owns_relay) tern_relay_handle_expiry(r->relay, now);
    tern_rdv_server_handle_expiry(r->rdv, now);
    tern_endpoint_handle_expiry(r->ep, now);
}

static const sim_node_ops node_ops = {node_recv, node_send, node_deadline, node_expire};

static int on_accept(tern_conn *c, void *u)
{
    rdv_node *r = u;
    int rc = tern_rdv_server_on_accept(r->rdv, c, sim_now(r->s));
    if (rc != TERN_OK) r->refused++;
    else if (r->n_conns < RDV_NODE_CONNS) r->conns[r->n_conns++] = c;
    return rc;
}

static void on_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *u)
{
    rdv_node *r = u;
    tern_rdv_server_on_message(r->rdv, c, flow, d, len, sim_now(r->s));
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *u)
{
    (void)err, (void)code, (void)reason, (void)len;
    rdv_node *r = u;
    tern_rdv_server_on_gone(r->rdv, c, sim_now(r->s));
}

static void on_free(tern_conn *c, void *u)
{
    rdv_node *r = u;
    for (size_t i = 0; i < r->n_conns; i++)
        if (r->conns[i] == c) r->conns[i] = r->conns[--r->n_conns];
    tern_rdv_server_on_gone(r->rdv, c, sim_now(r->s));
}

void rdv_node_init(rdv_node *r, sim *s, const rdv_node_opts *o)
{
    static const rdv_node_opts none;
    if (o == NULL) o = &none;
    memset(r, 0, sizeof(*r));
    r->s = s;
    tern_addr_ipv4(&r->addr, 192, 0, 2, 1, 4433);
    tt_mem_init(&r->mem);
    tt_mem_init(&r->rmem);
    tt_rng_seed(&r->rng, sim_derive_seed(s, 1));
    tt_rng_seed(&r->rrng, sim_derive_seed(s, 2));
    uint8_t priv[TERN_KEY_LEN];
    tt_rand_fill(priv, sizeof(priv), &r->rng);
    tern_keypair_from_private(&r->key, priv);

    tern_rdv_config rc;
    if (o->rdv) rc = *o->rdv;
    else tern_rdv_config_default(&rc);
    rc.mem = &r->rmem.mem;
    rc.rand = tt_rand_fill;
    rc.rand_user = &r->rrng;
    if (o->with_relay) {
        tt_mem_init(&r->lmem);
        tt_rng_seed(&r->lrng, sim_derive_seed(s, 3));
        tern_relay_config lc;
        tern_relay_config_default(&lc);
        lc.mem = &r->lmem.mem;
        lc.rand = tt_rand_fill;
        lc.rand_user = &r->lrng;
        TT_REQUIRE(tern_relay_new(&lc, &r->relay) == TERN_OK);
        r->owns_relay = 1;
        r->relay_base_mem = r->lmem.current;
        rc.has_relay = 1;
        tern_addr_ipv4(&rc.relay, 0, 0, 0, 0, 4433); /* "where you reach this server" */
        rc.relay_sessions = r->relay;
    }
    TT_REQUIRE(tern_rdv_server_new(&rc, &r->rdv) == TERN_OK);
    r->base_mem = rdv_node_stats(r).mem_current;

    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    if (o->settings) {
        cfg.settings = *o->settings;
    } else {
        cfg.settings.max_half_open = 100000; /* many clients at once: no retry round trip */
        cfg.settings.handshake_rate = 1000000;
        cfg.settings.handshake_burst = 1000000;
    }
    cfg.is_server = 1;
    cfg.has_static_key = 1;
    cfg.static_key = r->key;
    cfg.mem = &r->mem.mem;
    cfg.rand = tt_rand_fill;
    cfg.rand_user = &r->rng;
    cfg.user_data = r;
    cfg.callbacks.on_accept = on_accept;
    cfg.callbacks.on_message = on_message;
    cfg.callbacks.on_closed = on_closed;
    cfg.callbacks.on_conn_free = on_free;
    TT_REQUIRE(tern_endpoint_new(&cfg, sim_now(s), &r->ep) == TERN_OK);
    r->node = sim_add_node(s, &node_ops, r, &r->addr);
    TT_REQUIRE(r->node != NULL);
}

void rdv_node_free(rdv_node *r)
{
    if (r->node) sim_node_remove(r->s, r->node);
    tern_endpoint_del(r->ep); /* no callbacks: the rendezvous server frees its peers below */
    tern_rdv_server_del(r->rdv);
    free(r->relay_q);
    r->relay_q = NULL;
    if (r->owns_relay) {
        tern_relay_del(r->relay);
        tt_mem_check_clean(&r->lmem, "relay");
    }
    tt_mem_check_clean(&r->mem, "server endpoint");
    tt_mem_check_clean(&r->rmem, "rendezvous server");
}

tern_rdv_stats rdv_node_stats(const rdv_node *r)
{
    tern_rdv_stats st;
    tern_rdv_server_get_stats(r->rdv, &st);
    return st;
}

void rdv_needle_tap(void *needle, const uint8_t *data, size_t len)
{
    rdv_needle *nd = needle;
    size_t n = strlen(nd->text);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(data + i, nd->text, n) == 0) {
            nd->seen++;
            return;
        }
}
