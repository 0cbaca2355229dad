/* Rendezvous clients on the simulated network (see rdv_cli.h). */
#include "support/rdv_cli.h"

#include <stdlib.h>
#include <string.h>

#define MS (1000000ull)

static void on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d, size_t len)
{
    rdv_cli *k = n->user;
    if (k->pause_rx) (void)tern_flow_set_paused(c, flow, 1);
    tern_rdv_msg m;
    if (tern_rdv_decode(d, len, &m) != TERN_OK) {
        k->decode_fail++;
        return;
    }
    k->got[m.kind]++;
    if (m.kind == TERN_RDV_INTRODUCED && memcmp(m.peer_id, k->watch_id, TERN_PEER_ID_LEN) == 0)
        k->watch_hits++;
    k->last_at[m.kind] = sim_now(k->s);
    if (m.kind == TERN_RDV_JOINED && m.n_members)
        memcpy(k->members, m.members, m.n_members * TERN_PEER_ID_LEN);
    if (m.kind == TERN_RDV_GROUP_MSG && m.payload_len >= 1 && m.payload[0] < 64)
        k->group_seen[m.payload[0]]++;
    if (m.kind == TERN_RDV_PRESENCE) {
        if (m.event == TERN_RDV_PRESENCE_JOIN) k->presence_join++;
        else k->presence_leave++;
    }
    if (m.kind == TERN_RDV_ERROR && m.error < 32) k->errors[m.error]++;
    if (m.has_payload) {
        k->payload_len = m.payload_len < sizeof(k->payload) ? m.payload_len : sizeof(k->payload);
        memcpy(k->payload, m.payload, k->payload_len);
    }
    if (m.kind == TERN_RDV_CALL && k->auto_reply) {
        tern_rdv_msg r;
        tern_rdv_msg_init(&r, TERN_RDV_REPLY);
        r.has_call_id = 1, r.call_id = m.call_id;
        r.has_status = 1, r.status = 0;
        r.payload = m.payload, r.payload_len = m.payload_len, r.has_payload = 1;
        TT_CHECK(tern_rdv_send(c, k->flow, sim_now(k->s), &r) == TERN_OK);
    }
    m.group = m.service = m.method = m.payload = m.members = NULL;
    k->last[m.kind] = m;
}

void rdv_cli_start_at(rdv_cli *k, sim *s, const rdv_node *r, const tern_addr *at, uint32_t stream,
                      const tern_settings *settings)
{
    memset(k, 0, sizeof(*k));
    k->s = s;
    tern_addr a = *at;
    tnet_node_init(&k->n, s, &a, 0, settings, 100 + stream);
    k->n.user = k;
    k->n.on_message = on_message;
    tern_conn *c = NULL;
    TT_REQUIRE(tern_endpoint_connect(k->n.ep, sim_now(s), &a, &r->addr, r->key.pub, &c) ==
               TERN_OK);
    k->n.conn = c;
}

void rdv_cli_start(rdv_cli *k, sim *s, const rdv_node *r, uint32_t i)
{
    tern_addr a;
    tern_addr_ipv4(&a, 10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 40000);
    rdv_cli_start_at(k, s, r, &a, i, NULL);
}

int rdv_cli_try(rdv_cli *k, const tern_rdv_msg *m)
{
    TT_REQUIRE(k->n.conn != NULL);
    if (!k->has_flow) {
        tern_flow_config fc;
        tern_flow_config_default(&fc);
        TT_REQUIRE(tern_flow_open(k->n.conn, &fc, &k->flow) == TERN_OK);
        k->has_flow = 1;
    }
    int rc = tern_rdv_send(k->n.conn, k->flow, sim_now(k->s), m);
    sim_node_wake(k->s, k->n.node);
    return rc;
}

void rdv_cli_send(rdv_cli *k, const tern_rdv_msg *m)
{
    TT_REQUIRE(k->n.conn != NULL && k->n.established);
    int rc = rdv_cli_try(k, m);
    TT_REQUIRE_MSG(rc == TERN_OK, "send: %s", tern_strerror(rc));
}

void rdv_cli_register(rdv_cli *k)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    m.n_cands = 1;
    m.cands[0].kind = TERN_RDV_CAND_LOCAL;
    tern_addr_ipv4(&m.cands[0].addr, 192, 168, 1, 7, 5000);
    rdv_cli_send(k, &m);
}

void rdv_cli_group(rdv_cli *k, uint8_t kind, const char *group, const uint8_t *payload,
                   size_t len)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, kind);
    m.group = (const uint8_t *)group, m.group_len = strlen(group);
    if (payload) m.payload = payload, m.payload_len = len, m.has_payload = 1;
    rdv_cli_send(k, &m);
}

void rdv_cli_free(rdv_cli *k)
{
    tnet_node_free(&k->n, k->s);
}

void rdv_world_init(rdv_world *w, uint32_t n, const tern_rdv_config *cfg, int reg)
{
    memset(w, 0, sizeof(*w));
    w->s = sim_new(tt_seed());
    TT_REQUIRE(w->s != NULL);
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 5 * MS;
    sim_set_default_link(w->s, &p);
    rdv_node_opts o = {.rdv = cfg};
    rdv_node_init(&w->srv, w->s, &o);
    w->n = n;
    w->c = calloc(n ? n : 1, sizeof(*w->c));
    TT_REQUIRE(w->c != NULL);
    for (uint32_t i = 0; i < n; i++) rdv_cli_start(&w->c[i], w->s, &w->srv, i + 1);
    tnet_run_ms(w->s, 200);
    for (uint32_t i = 0; i < n; i++) TT_REQUIRE(w->c[i].n.established == 1);
    if (!reg) return;
    for (uint32_t i = 0; i < n; i++) rdv_cli_register(&w->c[i]);
    tnet_run_ms(w->s, 100);
    for (uint32_t i = 0; i < n; i++) TT_REQUIRE(w->c[i].got[TERN_RDV_REGISTERED] == 1);
}

void rdv_world_free(rdv_world *w)
{
    for (uint32_t i = 0; i < w->n; i++) rdv_cli_free(&w->c[i]);
    rdv_node_free(&w->srv);
    free(w->c);
    sim_del(w->s);
    w->s = NULL;
}
