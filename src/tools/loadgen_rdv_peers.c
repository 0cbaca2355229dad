/*
 * `tern loadgen rdv`: the peers (see cmd_loadgen_rdv.c for the run). Each is a tern client
 * endpoint with its own long-term key; on_established opens a reliable ordered flow and sends
 * REGISTER with one LOCAL candidate (its own address), REGISTERED must carry a PUBLIC candidate
 * equal to that address. An INTRODUCE goes from an idle registered peer to another; its
 * PEER_INFO counts when it names the target, carries its key, its LOCAL candidate and a nonce;
 * the target's INTRODUCED must carry a key, the peer ID that is its hash, and a nonce. In the
 * relay phase the PEER_INFO and INTRODUCED of a pair carry each side its relay channel.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/loadgen_rdv.h"
#include "tools/tools.h"

static uint64_t rnd(lgr *g)
{
    g->rng ^= g->rng << 13; /* xorshift64 */
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return g->rng;
}

static void lat_add(lgr *g, uint64_t ns)
{
    if (g->lat_n == g->lat_cap) {
        size_t cap = g->lat_cap ? 2 * g->lat_cap : 65536;
        uint32_t *n = realloc(g->lat_us, cap * sizeof(*n));
        if (n == NULL) return;
        g->lat_us = n;
        g->lat_cap = cap;
    }
    uint64_t us = ns / 1000;
    g->lat_us[g->lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

void lgr_intro_done(lgr *g, rpeer *p)
{
    p->busy = 0;
    g->inflight--;
}

static void on_established(tern_conn *c, void *user)
{
    rpeer *p = user;
    uint64_t now = tools_now_ns();
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    m.n_cands = 1;
    m.cands[0].kind = TERN_RDV_CAND_LOCAL;
    m.cands[0].addr = p->local;
    if (tern_flow_open(c, &fc, &p->flow) != TERN_OK || tern_rdv_send(c, p->flow, now, &m) != 0) {
        p->g->other_err++;
        tern_conn_close(c, now, 1, "cannot register", 15);
        return;
    }
    p->state = P_REGISTERING;
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *user)
{
    rpeer *p = user;
    lgr *g = p->g;
    (void)c, (void)code;
    if (g->closing) {
        p->conn = NULL;
        return;
    }
    if (p->state == P_CONNECTING || p->state == P_REGISTERING) {
        g->connecting--;
        g->failed++;
        if (g->failed <= 5) {
            char why[128];
            tools_copy_reason(why, sizeof(why), reason, len);
            fprintf(stderr, "tern loadgen: peer %u: %s%s%s\n", (unsigned)(p - g->p),
                    tern_strerror(err), len ? ": " : "", why);
        }
    } else if (p->state == P_REGISTERED) {
        g->closed++;
    }
    if (p->busy) {
        g->intro_err++;
        lgr_intro_done(g, p);
    }
    p->state = P_FAILED;
    p->conn = NULL;
}

static int has_local(const tern_rdv_msg *m, const tern_addr *a)
{
    for (size_t i = 0; i < m->n_cands; i++)
        if (m->cands[i].kind == TERN_RDV_CAND_LOCAL && tern_addr_equal(&m->cands[i].addr, a))
            return 1;
    return 0;
}

static void on_message(tern_conn *c, uint64_t flow, const uint8_t *data, size_t len, void *user)
{
    rpeer *p = user;
    lgr *g = p->g;
    (void)c, (void)flow;
    tern_rdv_msg m;
    if (tern_rdv_decode(data, len, &m) != TERN_OK) {
        g->other_err++;
        return;
    }
    uint64_t now = tools_now_ns();
    switch (m.kind) {
    case TERN_RDV_REGISTERED: {
        int ok = 0;
        for (size_t i = 0; i < m.n_cands; i++)
            if (m.cands[i].kind == TERN_RDV_CAND_PUBLIC &&
                tern_addr_equal(&m.cands[i].addr, &p->local))
                ok = 1;
        if (p->state != P_REGISTERING || !ok) {
            g->other_err++;
            return;
        }
        p->state = P_REGISTERED;
        g->connecting--;
        g->reg[g->registered++] = (uint32_t)(p - g->p);
        break;
    }
    case TERN_RDV_PEER_INFO: {
        if (!p->busy) {
            g->late++;
            return;
        }
        const rpeer *t = &g->p[p->target];
        int ok = m.has_peer_id && m.has_pubkey && m.has_nonce &&
                 !memcmp(m.peer_id, t->id, TERN_PEER_ID_LEN) &&
                 !memcmp(m.pubkey, t->pub, TERN_KEY_LEN) && has_local(&m, &t->local);
        if (ok) {
            g->intro_ok++;
            lat_add(g, now - p->sent_ns);
            for (size_t i = 0; i < m.n_cands; i++)
                if (m.cands[i].kind == TERN_RDV_CAND_RELAY && m.has_channel) {
                    g->with_relay++;
                    if (p->pair != LGR_NO_PAIR && g->pairs[p->pair].b == p->target) {
                        memcpy(p->ch, m.channel, TERN_RELAY_CHANNEL_LEN);
                        p->has_ch = 1;
                    }
                    break;
                }
        } else {
            g->intro_bad++;
        }
        lgr_intro_done(g, p);
        break;
    }
    case TERN_RDV_INTRODUCED: {
        /* the requester is one of ours: its ID and key as we made them */
        int ok = 0;
        if (m.has_peer_id && m.has_pubkey && m.has_nonce) {
            uint8_t id[TERN_PEER_ID_LEN];
            tern_peer_id(m.pubkey, id);
            ok = !memcmp(id, m.peer_id, TERN_PEER_ID_LEN);
        }
        if (ok) g->introduced++;
        else g->introduced_bad++;
        /* the second side of a relay pair, introduced by its first side: its channel */
        if (ok && m.has_channel && p->pair != LGR_NO_PAIR &&
            g->pairs[p->pair].b == (uint32_t)(p - g->p) &&
            !memcmp(m.peer_id, g->p[g->pairs[p->pair].a].id, TERN_PEER_ID_LEN)) {
            memcpy(p->ch, m.channel, TERN_RELAY_CHANNEL_LEN);
            p->has_ch = 1;
        }
        break;
    }
    case TERN_RDV_ERROR:
        if (p->busy && m.req_kind == TERN_RDV_INTRODUCE) {
            g->intro_err++;
            lgr_intro_done(g, p);
        } else {
            g->other_err++;
        }
        if (g->intro_err + g->other_err <= 5)
            fprintf(stderr, "tern loadgen: ERROR %s for request kind %u\n",
                    tern_rdv_error_name(m.error), m.req_kind);
        break;
    default: g->other_err++; break;
    }
}

int lgr_intro_send(lgr *g, uint32_t a, uint32_t b, uint64_t now)
{
    rpeer *p = &g->p[a];
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    m.has_peer_id = 1;
    memcpy(m.peer_id, g->p[b].id, TERN_PEER_ID_LEN);
    if (tern_rdv_send(p->conn, p->flow, now, &m) != 0) {
        g->other_err++;
        return -1;
    }
    p->busy = 1;
    p->target = b;
    p->sent_ns = now;
    g->inflight++;
    g->intro_sent++;
    lgr_touch(p);
    return 0;
}

int lgr_intro_start(lgr *g, uint64_t now)
{
    if (g->registered < 2) return -1;
    for (int tries = 0; tries < 16; tries++) {
        uint32_t a = g->reg[rnd(g) % g->registered];
        uint32_t b = g->reg[rnd(g) % g->registered];
        rpeer *p = &g->p[a];
        if (a == b || p->busy || p->state != P_REGISTERED || g->p[b].state != P_REGISTERED)
            continue;
        return lgr_intro_send(g, a, b, now);
    }
    return -1;
}

int lgr_peers_make(lgr *g)
{
    randombytes_buf(&g->rng, sizeof(g->rng));
    g->rng |= 1;
    uint64_t t_setup = tools_now_ns();
    for (uint32_t i = 0; i < g->n; i++) {
        rpeer *p = &g->p[i];
        p->g = g;
        p->item = TERN__HEAP_ITEM_INIT;
        p->pair = LGR_NO_PAIR;
        lgr_peer_addr(g, i, &p->local);
        tern_endpoint_config ec;
        tern_endpoint_config_default(&ec);
        if (tern_keypair_generate(&ec.static_key) != TERN_OK) {
            fprintf(stderr, "tern loadgen rdv: out of memory\n");
            return -1;
        }
        ec.has_static_key = 1;
        memcpy(p->pub, ec.static_key.pub, TERN_KEY_LEN);
        tern_peer_id(p->pub, p->id);
        ec.callbacks.on_established = on_established;
        ec.callbacks.on_closed = on_closed;
        ec.callbacks.on_message = on_message;
        ec.user_data = p;
        int erc = tern_endpoint_new(&ec, t_setup, &p->ep);
        tern_keypair_wipe(&ec.static_key);
        if (erc != TERN_OK) {
            fprintf(stderr, "tern loadgen rdv: endpoint %u: %s\n", (unsigned)i,
                    tern_strerror(erc));
            return -1;
        }
    }
    fprintf(stderr,
            "tern loadgen rdv: %u peers from %u addresses x %u ports, keys and endpoints made "
            "in %.2f s\n",
            (unsigned)g->n, (unsigned)g->n_sources, (unsigned)g->n_socks,
            (double)(tools_now_ns() - t_setup) / 1e9);
    return 0;
}

void lgr_peers_free(lgr *g)
{
    for (uint32_t i = 0; g->p && i < g->n; i++) tern_endpoint_del(g->p[i].ep);
}
