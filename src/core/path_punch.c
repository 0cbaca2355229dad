/*
 * Paths, hole punching before a connection exists (see path.c): the punches of an introduction's
 * target (its "expectations") towards the initiator's candidates, the initiator's matching of
 * punches to its handshakes, and the public calls that start either side
 * (tern_endpoint_expect_peer, tern_endpoint_connect_peer).
 */
#include <sodium.h>
#include <string.h>

#include "core/conn.h"
#include "core/path_int.h"
#include "core/wire.h"

void tern_peer_target_default(tern_peer_target *t)
{
    if (t == NULL) return;
    memset(t, 0, sizeof(*t));
    t->relay_after_ns = 2 * TERN_NS_PER_S;
    t->probe_interval_ns = DEFAULT_INTERVAL;
    t->probe_duration_ns = 15 * TERN_NS_PER_S;
}

static void punch_tag(const uint8_t nonce[TERN_PUNCH_NONCE_LEN], uint8_t tag[16])
{
    static const char label[] = "tern punch v1";
    uint8_t in[sizeof(label) - 1 + TERN_PUNCH_NONCE_LEN];
    memcpy(in, label, sizeof(label) - 1);
    memcpy(in + sizeof(label) - 1, nonce, TERN_PUNCH_NONCE_LEN);
    crypto_generichash(tag, 16, in, sizeof(in), NULL, 0);
}

/* ---------------------------------------------------------------- punches and expectations */

int tern__p2p_on_punch(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                       const tern_addr *remote, const uint8_t *data, size_t len)
{
    if (len != TERN__PUNCH_LEN) return TERN_ERR_MALFORMED;
    if (ep->n_punch_match == 0) return TERN_ERR_IGNORED;
    for (tern_conn *c = ep->all; c != NULL; c = c->link.all_next) {
        if (c->p2p == NULL || !c->p2p->punch_match) continue;
        if (sodium_memcmp(c->p2p->punch_tag, data + 1, 16) != 0) continue;
        tern__p2p *p = c->p2p;
        int i = tern__cand_find(p, remote, 0, NULL);
        tern__cand *k = i >= 0 ? &p->cands[i] : tern__cand_add(c, now, local, remote, 0, NULL, 1);
        if (k == NULL) return TERN_ERR_LIMIT;
        k->path.rx_bytes += len;
        if (i < 0 && p->n_punch_learned < TERN_MAX_CANDIDATES) {
            /* a peer behind a symmetric NAT shows up here: its source gets the allowance too
             * (at most TERN_MAX_CANDIDATES such sources per connection) */
            p->n_punch_learned++;
            k->path.handed = 1;
        }
        if (k->state == TERN__CAND_FAILED) return TERN_OK; /* its allowance is spent */
        /* the peer's NAT has just opened towards us: try that candidate again at once */
        k->initial_due = 1;
        k->next_probe = now + k->gap;
        tern__ep_mark_send(ep, c);
        tern__conn_update_timer(c);
        return TERN_OK;
    }
    return TERN_ERR_IGNORED;
}

static void expect_recompute(tern_endpoint *ep)
{
    uint64_t d = TERN_TIME_NEVER;
    for (size_t i = 0; i < ep->n_expects; i++) {
        const tern__expect *x = &ep->expects[i];
        uint64_t t = x->next_punch < x->until ? x->next_punch : x->until;
        if (t < d) d = t;
    }
    ep->expect_deadline = d;
}

void tern__expect_on_timer(tern_endpoint *ep, uint64_t now)
{
    uint8_t punch[TERN__PUNCH_LEN];
    punch[0] = TERN__PUNCH_TYPE;
    for (size_t i = 0; i < ep->n_expects;) {
        tern__expect *x = &ep->expects[i];
        if (now >= x->until) {
            sodium_memzero(x, sizeof(*x));
            ep->expects[i] = ep->expects[--ep->n_expects];
            continue;
        }
        if (now >= x->next_punch) {
            memcpy(punch + 1, x->punch_tag, 16);
            for (size_t k = 0; k < x->t.n_cands; k++)
                tern__ep_queue_stateless(ep, &x->local, &x->t.cands[k], punch, sizeof(punch));
            /* each candidate's allowance (settings.probe_tries): the first half of it at the
             * probe interval, then at doubling gaps (up to TERN__BG_PROBE_MAX), then no more */
            uint32_t half = ep->s.probe_tries / 2;
            uint64_t gap = x->t.probe_interval_ns;
            if (++x->punches >= half)
                for (uint32_t d = half; d <= x->punches && gap < TERN__BG_PROBE_MAX; d++) gap *= 2;
            if (gap > TERN__BG_PROBE_MAX) gap = TERN__BG_PROBE_MAX;
            x->next_punch = now + gap;
            if (x->punches >= ep->s.probe_tries) {
                x->next_punch = TERN_TIME_NEVER;
                ep->st.probes_exhausted += x->t.n_cands;
            }
        }
        i++;
    }
    expect_recompute(ep);
}

static int target_ok(const tern_peer_target *t)
{
    return t != NULL && t->n_cands <= TERN_MAX_CANDIDATES;
}

static void target_fix(tern_peer_target *t)
{
    if (t->probe_interval_ns == 0) t->probe_interval_ns = DEFAULT_INTERVAL;
    if (t->probe_duration_ns == 0) t->probe_duration_ns = 15 * TERN_NS_PER_S;
}

int tern_endpoint_expect_peer(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                              const tern_peer_target *t)
{
    if (ep == NULL || local == NULL || !target_ok(t)) return TERN_ERR_INVALID_ARG;
    if (!ep->is_server) return TERN_ERR_STATE;
    if (ep->expects == NULL) {
        ep->expects = tern__calloc(&ep->alloc, TERN__MAX_EXPECTS * sizeof(*ep->expects));
        if (ep->expects == NULL) return TERN_ERR_NOMEM;
    }
    tern__expect *x = NULL;
    for (size_t i = 0; i < ep->n_expects; i++)
        if (sodium_memcmp(ep->expects[i].peer_pub, t->peer_pub, TERN_KEY_LEN) == 0)
            x = &ep->expects[i]; /* introduced again: the newer introduction wins */
    if (x == NULL && ep->n_expects >= TERN__MAX_EXPECTS) {
        /* full: the oldest expectation makes room, so that a flood of introductions (each
         * server-side rate-limited per target and requester IP) can delay a legitimate peer's
         * punches by at most one table's worth, never lock them out */
        size_t old = 0;
        for (size_t i = 1; i < ep->n_expects; i++)
            if (ep->expects[i].until - ep->expects[i].t.probe_duration_ns <
                ep->expects[old].until - ep->expects[old].t.probe_duration_ns)
                old = i;
        x = &ep->expects[old];
        ep->st.expects_evicted++;
    } else if (x == NULL) {
        x = &ep->expects[ep->n_expects++];
    }
    memset(x, 0, sizeof(*x));
    memcpy(x->peer_pub, t->peer_pub, TERN_KEY_LEN);
    punch_tag(t->nonce, x->punch_tag);
    x->local = *local;
    x->t = *t;
    target_fix(&x->t);
    x->next_punch = now;
    x->until = now + x->t.probe_duration_ns;
    expect_recompute(ep);
    return TERN_OK;
}

tern_conn *tern__p2p_client_new(tern_endpoint *ep, uint64_t now, const uint8_t pub[TERN_KEY_LEN])
{
    tern_conn *c = tern__conn_new(ep, 0, now);
    if (c == NULL) return NULL;
    c->exposed = 1;
    memcpy(c->hs.server_pub, pub, TERN_KEY_LEN);
    tern__ep_rand(ep, c->hs.initial_dcid, TERN_CID_LEN);
    memcpy(c->remote_cid, c->hs.initial_dcid, TERN_CID_LEN);
    if (tern__p2p_get(c) == NULL) {
        tern__conn_free(c);
        return NULL;
    }
    c->p2p->probing = 1;
    return c;
}

int tern_endpoint_connect_peer(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                               const tern_peer_target *t_in, tern_conn **out)
{
    if (ep == NULL || local == NULL || out == NULL || !target_ok(t_in)) return TERN_ERR_INVALID_ARG;
    if (t_in->n_cands == 0 && !t_in->has_relay) return TERN_ERR_INVALID_ARG;
    tern_peer_target t = *t_in;
    target_fix(&t);
    tern_conn *c = tern__p2p_client_new(ep, now, t.peer_pub);
    if (c == NULL) return TERN_ERR_NOMEM;
    tern__p2p *p = c->p2p;
    p->interval = t.probe_interval_ns;
    p->probe_until = now + t.probe_duration_ns;
    punch_tag(t.nonce, p->punch_tag);
    p->punch_match = 1;
    ep->n_punch_match++;
    p->has_relay = t.has_relay;
    p->relay = t.relay;
    p->relay_at = now + t.relay_after_ns;
    for (size_t i = 0; i < t.n_cands; i++)
        if (tern__cand_find(p, &t.cands[i], 0, NULL) < 0)
            tern__cand_add(c, now, local, &t.cands[i], 0, NULL, 0);
    if (t.has_relay && (t.relay_after_ns == 0 || t.n_cands == 0)) {
        p->relay_added = 1;
        tern__cand_add(c, now, local, &t.relay.addr, 1, t.relay.channel, 0);
    }
    for (size_t i = 0; i < p->n; i++) p->cands[i].next_probe = now + p->cands[i].gap;
    /* before the handshake picks one, the active path is the first candidate */
    if (p->n > 0) c->path = p->cands[0].path;
    else tern__path_set(&c->path, local, &t.relay.addr, 1, t.relay.channel);
    c->path.validated = 1;
    int rc = tern__hs_client_start(c, now);
    if (rc != TERN_OK) {
        tern__conn_free(c);
        return rc;
    }
    c->hs.retx_at = TERN_TIME_NEVER; /* the candidates' schedules resend the Initial */
    tern__conn_update_timer(c);
    *out = c;
    return TERN_OK;
}
