/*
 * Rendezvous server: introductions (INTRODUCE -> INTRODUCED to both sides), with the relay
 * session each one opens when a relay is configured. See rdv_server.c for the design.
 */
#include <string.h>

#include "rendezvous/rdv_server_int.h"

/* Fills the identity and candidates of `of` into m (PEER_INFO / INTRODUCED); the RELAY candidate
 * when with_relay. */
static void describe(const tern_rdv_server *s, const rdv_peer *of, int with_relay, tern_rdv_msg *m)
{
    m->has_peer_id = m->has_pubkey = 1;
    memcpy(m->peer_id, of->id, TERN_PEER_ID_LEN);
    memcpy(m->pubkey, of->pub, TERN_KEY_LEN);
    for (size_t i = 0; i < of->n_cands; i++) {
        m->cands[m->n_cands].kind = TERN_RDV_CAND_LOCAL;
        m->cands[m->n_cands++].addr = of->cands[i];
    }
    if (of->conn) {
        m->cands[m->n_cands].kind = TERN_RDV_CAND_PUBLIC;
        m->cands[m->n_cands++].addr = *tern_conn_remote(of->conn);
    }
    if (with_relay) {
        m->cands[m->n_cands].kind = TERN_RDV_CAND_RELAY;
        m->cands[m->n_cands++].addr = s->cfg.relay;
    }
}

/* The introduction target b's rate bucket for requests from p's IP: at most INTRO_SRC IPs are
 * tracked per target; an entry whose bucket is at least half full again is reused (an IP that
 * introduces at full rate keeps its entry, one that introduced a few times lately does not hold
 * a slot that another IP needs: a popular target introduced from many addresses at a modest
 * rate is never refused). Returns 1 when the introduction may go ahead. */
static int intro_target_ok(tern_rdv_server *s, rdv_peer *b, const rdv_peer *p, uint64_t now)
{
    if (s->cfg.intro_target_rate == 0) return 1;
    if (b->isrc == NULL) {
        b->isrc = alloc(s, INTRO_SRC * sizeof(*b->isrc));
        if (b->isrc == NULL) return 0;
        memset(b->isrc, 0, INTRO_SRC * sizeof(*b->isrc));
        charge(s, b, INTRO_SRC * sizeof(*b->isrc));
    }
    uint8_t key[TERN__SRC_KEY_LEN];
    tern__src_key(tern_conn_remote(p->conn), key);
    const tern__rate *r = &s->rate.intro_target;
    /* "at least half full again": it owes at most half of what a burst minus one takes */
    uint64_t half = (r->cap - TERN_NS_PER_S) / 2;
    intro_src *slot = NULL, *free_slot = NULL;
    for (int i = 0; i < INTRO_SRC && slot == NULL; i++) {
        if (memcmp(b->isrc[i].key, key, sizeof(key)) == 0) slot = &b->isrc[i];
        else if (free_slot == NULL && tern__bucket_debt(r, &b->isrc[i].b, now) <= half)
            free_slot = &b->isrc[i];
    }
    if (slot == NULL) {
        if (free_slot == NULL) return 0; /* INTRO_SRC other IPs are introducing at full rate */
        slot = free_slot;
        memcpy(slot->key, key, sizeof(key));
        memset(&slot->b, 0, sizeof(slot->b)); /* a full bucket */
    }
    return tern__bucket_take(r, &slot->b, now, 1);
}

/* Forgets p's relay references to sessions that are gone (idle, evicted, closed). One relay
 * lookup per reference: run only when a decision needs the live count (the list is full, or the
 * peer is at max_relay_per_peer), not at every introduction. */
static void relay_refs_purge(tern_rdv_server *s, rdv_peer *p)
{
    uint32_t k = 0, req = 0;
    for (uint32_t i = 0; i < p->n_relay; i++)
        if (tern_relay_alive(s->cfg.relay_sessions, p->relay[i].ch)) {
            req += p->relay[i].requested;
            p->relay[k++] = p->relay[i];
        }
    p->n_relay = k;
    p->n_relay_req = req;
}

static int channel_eq(const uint8_t *a, const uint8_t *b)
{
    uint64_t x, y;
    memcpy(&x, a, sizeof(x));
    memcpy(&y, b, sizeof(y));
    return x == y;
}

/* Remembers that p is part of the session with channel ch (once). A full list first forgets
 * the sessions that are gone, then its oldest target-side entry (that session still idles
 * out). */
static void relay_ref_add(tern_rdv_server *s, rdv_peer *p, const uint8_t *ch, int requested)
{
    _Static_assert(TERN_RELAY_CHANNEL_LEN == 8, "channel_eq compares 8 bytes");
    for (uint32_t i = 0; i < p->n_relay; i++)
        if (channel_eq(p->relay[i].ch, ch)) return;
    if (p->relay == NULL) {
        uint32_t cap = 2 * (s->cfg.max_relay_per_peer ? s->cfg.max_relay_per_peer : 32);
        p->relay = alloc(s, cap * sizeof(*p->relay));
        if (p->relay == NULL) return;
        p->cap_relay = cap;
        charge(s, p, cap * sizeof(*p->relay));
    }
    if (p->n_relay == p->cap_relay) relay_refs_purge(s, p);
    if (p->n_relay == p->cap_relay) {
        uint32_t i = 0;
        while (i < p->n_relay && p->relay[i].requested) i++;
        if (i == p->n_relay) return; /* all requested: cannot happen below max_relay_per_peer */
        memmove(&p->relay[i], &p->relay[i + 1], (p->n_relay - i - 1) * sizeof(*p->relay));
        p->n_relay--;
    }
    memcpy(p->relay[p->n_relay].ch, ch, TERN_RELAY_CHANNEL_LEN);
    p->relay[p->n_relay++].requested = (uint8_t)requested;
    p->n_relay_req += requested != 0;
}

void tern__rdv_on_introduce(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (!tern__bucket_take(&s->rate.intro, &p->intro, now, 1)) {
        s->st.intro_limited_peer++;
        tern__rdv_send_error(s, p, now, TERN_RDV_E_RATE_LIMITED, m);
        return;
    }
    rdv_peer *b = tern__map_find(&s->peers, m->peer_id, TERN_PEER_ID_LEN);
    if (b == NULL) {
        s->st.intro_unknown++;
        tern__rdv_send_error(s, p, now, TERN_RDV_E_UNKNOWN_PEER, m);
        return;
    }
    if (b == p) {
        tern__rdv_send_error(s, p, now, TERN_RDV_E_INVALID, m);
        return;
    }
    if (b->conn == NULL || !intro_target_ok(s, b, p, now)) {
        s->st.intro_limited_target++;
        tern__rdv_send_error(s, p, now, TERN_RDV_E_RATE_LIMITED, m);
        return;
    }
    tern_rdv_msg to_a, to_b;
    tern_rdv_msg_init(&to_a, TERN_RDV_PEER_INFO);
    tern_rdv_msg_init(&to_b, TERN_RDV_INTRODUCED);
    rand_bytes(s, to_a.nonce, TERN_RDV_NONCE_LEN);
    memcpy(to_b.nonce, to_a.nonce, TERN_RDV_NONCE_LEN);
    to_a.has_nonce = to_b.has_nonce = 1;
    /* a relay session between the two public addresses: A's channel goes to A, B's to B; when
     * the relay is full they are introduced without it */
    int with_relay = s->cfg.has_relay;
    if (with_relay && s->cfg.relay_sessions != NULL) {
        uint32_t max = s->cfg.max_relay_per_peer;
        if (max && p->n_relay_req >= max) relay_refs_purge(s, p); /* some may have idled out */
        if (max && p->n_relay_req >= max) {
            with_relay = 0;
            s->st.relay_refused_peer++;
        } else if (p->conn != NULL && b->conn != NULL &&
                   tern_relay_open(s->cfg.relay_sessions, now, tern_conn_remote(p->conn),
                                   tern_conn_remote(b->conn), to_a.channel,
                                   to_b.channel) == TERN_OK) {
            to_a.has_channel = to_b.has_channel = 1;
            s->st.relay_opened++;
            relay_ref_add(s, p, to_a.channel, 1);
            relay_ref_add(s, b, to_b.channel, 0);
        } else {
            with_relay = 0;
            s->st.relay_refused++;
        }
    }
    describe(s, b, with_relay, &to_a);
    describe(s, p, with_relay, &to_b);
    tern__rdv_send_msg(s, p, now, &to_a);
    (void)tern__rdv_send_as(s, b, now, &to_b, EVENT);
    s->st.introductions++;
}
