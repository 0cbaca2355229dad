/*
 * Rendezvous server (tern/rendezvous.h): directory, introductions, groups and RPC routing.
 *
 * Every accepted connection gets a peer record (its ID, key and candidate addresses), reached
 * from the connection's user data; a REGISTER puts it in the directory, a hash map keyed by peer
 * ID. Groups and services are hash maps keyed by name. A group keeps its members in an array and
 * each peer keeps its memberships in an array, each entry holding its index in the other, so join,
 * leave and a peer's departure are O(1) per membership and a fan-out is a walk over the array.
 * A group also remembers its last joiners in a small ring for the "recent" half of the bootstrap
 * list. Calls in flight are records in a map keyed by the server's call ID, in a deadline heap,
 * and on two intrusive lists (the caller's and the provider's) so either side's departure ends
 * them without a search. Rate limits are base's token buckets (base/rate.h), one per limited
 * thing in its record, their rates set once in s->rate.
 * With a relay configured (cfg.relay_sessions), each introduction opens a relay session between
 * the two connections' remote addresses and hands each side its channel (tern/relay.h).
 *
 * Output: each message is encoded once into one server-owned buffer and handed to tern_flow_send
 * (which copies it), on a reliable ordered flow the server opens toward the peer on first use;
 * a fan-out encodes once and sends the same bytes to every member. The only allocations are the
 * records themselves and the growth of their arrays.
 *
 * Limits (docs/rendezvous.md, 7.1): every resource a peer can make the server hold has a budget in
 * tern_rdv_config and a counter in tern_rdv_stats. Counts (services, groups, members, calls, relay
 * sessions, LOCAL candidates) are checked before anything is allocated; rates are token buckets
 * (JOIN/LEAVE per peer, PRESENCE per group, INTRODUCE per requester and per target per requester
 * IP); each peer's state is accounted in bytes (acct, max_peer_state) and the server's in
 * mem_current (max_mem). Before each send the server looks at what is queued to the peer
 * (tern_flow_queued): an event over max_queue_bytes is not queued for it, and a peer that does not
 * read is put on the `doomed` list and closed by tern__rdv_reap() once the current callback is
 * done (closing reports on_closed at once, which must not happen in the middle of a fan-out).
 *
 * Files (rdv_server_int.h holds the records and what they share): this one has the server
 * object, output, accounting, the peers' lifecycle, REGISTER and the dispatch; rdv_intro.c,
 * rdv_groups.c and rdv_calls.c the other requests.
 */
#include <string.h>

#include "rendezvous/rdv_server_int.h"

/* ---------------------------------------------------------------- memory, keys, helpers */



static const uint8_t *peer_key(const void *r, size_t *len)
{
    *len = TERN_PEER_ID_LEN;
    return ((const rdv_peer *)r)->id;
}

static const uint8_t *group_key(const void *r, size_t *len)
{
    *len = ((const rdv_group *)r)->name_len;
    return ((const rdv_group *)r)->name;
}

static const uint8_t *service_key(const void *r, size_t *len)
{
    *len = ((const rdv_service *)r)->name_len;
    return ((const rdv_service *)r)->name;
}

static const uint8_t *call_key(const void *r, size_t *len)
{
    *len = sizeof(uint64_t);
    return (const uint8_t *)&((const rdv_call *)r)->sid;
}




void tern_rdv_config_default(tern_rdv_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_peers = 1000000;
    cfg->max_groups_per_peer = 64;
    cfg->bootstrap_recent = 8;
    cfg->bootstrap_random = 24;
    cfg->group_rate = 1000;
    cfg->group_burst = 2000;
    cfg->peer_rate = 100;
    cfg->peer_burst = 200;
    cfg->max_calls = 1000000;
    cfg->max_calls_per_peer = 64;
    cfg->max_calls_per_provider = 4096;
    cfg->default_timeout_ms = 10000;
    cfg->max_timeout_ms = 60000;
    cfg->max_services = 200000;
    cfg->max_services_per_peer = 16;
    cfg->max_groups = 100000;
    cfg->max_group_members = 5000;
    cfg->join_rate = 10;
    cfg->join_burst = 20;
    cfg->presence_rate = 20;
    cfg->presence_burst = 40;
    cfg->presence_max_members = 256;
    cfg->intro_rate = 10;
    cfg->intro_burst = 64;
    cfg->intro_target_rate = 2;
    cfg->intro_target_burst = 10;
    cfg->max_local_cands = 4;
    cfg->max_relay_per_peer = 32;
    cfg->max_queue_bytes = 256 * 1024;
    cfg->max_peer_state = 64 * 1024;
    cfg->max_mem = 512ull * 1024 * 1024;
}

int tern_rdv_server_new(const tern_rdv_config *cfg, tern_rdv_server **out)
{
    if (cfg == NULL || out == NULL) return TERN_ERR_INVALID_ARG;
    if (!cfg->has_secret && (cfg->require_register_token || cfg->require_join_token ||
                             cfg->require_offer_token))
        return TERN_ERR_INVALID_ARG;
    if (sodium_init() < 0) return TERN_ERR_CRYPTO;
    tern__alloc a = {.mem = cfg->mem ? *cfg->mem : *tern_mem_default()};
    tern_rdv_server *s = tern__calloc(&a, sizeof(*s));
    if (s == NULL) return TERN_ERR_NOMEM;
    s->alloc = a;
    s->cfg = *cfg;
    tern__rate_set(&s->rate.join, cfg->join_rate, cfg->join_burst);
    tern__rate_set(&s->rate.presence, cfg->presence_rate, cfg->presence_burst);
    tern__rate_set(&s->rate.group, cfg->group_rate, cfg->group_burst);
    tern__rate_set(&s->rate.peer, cfg->peer_rate, cfg->peer_burst);
    tern__rate_set(&s->rate.intro, cfg->intro_rate, cfg->intro_burst);
    tern__rate_set(&s->rate.intro_target, cfg->intro_target_rate, cfg->intro_target_burst);
    if (s->cfg.bootstrap_recent > RECENT_MAX) s->cfg.bootstrap_recent = RECENT_MAX;
    if (s->cfg.bootstrap_recent + s->cfg.bootstrap_random > TERN_RDV_MAX_MEMBERS)
        s->cfg.bootstrap_random = TERN_RDV_MAX_MEMBERS - s->cfg.bootstrap_recent;
    uint8_t k[16];
    rand_bytes(s, k, sizeof(k));
    int rc = tern__map_init_keyof(&s->peers, &s->alloc, peer_key, k);
    if (rc == TERN_OK) rc = tern__map_init_keyof(&s->groups, &s->alloc, group_key, k);
    if (rc == TERN_OK) rc = tern__map_init_keyof(&s->services, &s->alloc, service_key, k);
    if (rc == TERN_OK) rc = tern__map_init_keyof(&s->calls, &s->alloc, call_key, k);
    if (rc == TERN_OK) rc = tern__heap_init(&s->deadlines, &s->alloc);
    if (rc == TERN_OK) {
        s->out = alloc(s, TERN_RDV_MAX_MSG);
        if (s->out == NULL) rc = TERN_ERR_NOMEM;
    }
    if (rc != TERN_OK) {
        tern_rdv_server_del(s);
        return rc;
    }
    *out = s;
    return TERN_OK;
}

/* ---------------------------------------------------------------- output */

/* p is to be closed: it does not read. Closing runs in tern__rdv_reap(), once the event being
 * handled is done, because closing reports on_closed (and so on_gone) at once, in the middle of a fan-out. */
static void doom(tern_rdv_server *s, rdv_peer *p)
{
    if (p->doomed) return;
    p->doomed = 1;
    p->doom_next = s->doomed;
    s->doomed = p;
    s->st.slow_closed++;
}

/* Sends len bytes of buf to p on the server's flow, opening it on first use. Returns 1 when
 * queued. Over max_queue_bytes an EVENT is not sent (counted; after SLOW_CLOSE_NS of that the
 * peer is closed); over 1.25 x max_queue_bytes a RESP closes the peer. */
int tern__rdv_send_raw(tern_rdv_server *s, rdv_peer *p, uint64_t now, const uint8_t *buf,
                    size_t len, int event)
{
    if (p->conn == NULL || s->dying || p->doomed) return 0;
    if (!p->has_flow) {
        tern_flow_config fc;
        tern_flow_config_default(&fc);
        if (tern_flow_open(p->conn, &fc, &p->flow) != TERN_OK) {
            s->st.tx_failed++;
            return 0;
        }
        p->has_flow = 1;
    }
    uint64_t q = tern_flow_queued(p->conn, p->flow);
    /* a response may use a quarter more, so that a reader whose queue events have filled can
     * still be answered; past that it is not reading */
    uint64_t limit = s->cfg.max_queue_bytes + (event ? 0 : s->cfg.max_queue_bytes / 4);
    if (s->cfg.max_queue_bytes && q + len > limit) {
        if (!event) {
            doom(s, p);
            return 0;
        }
        s->st.queue_dropped++;
        if (p->drop_since == 0) p->drop_since = now ? now : 1;
        else if (now - p->drop_since >= SLOW_CLOSE_NS) doom(s, p);
        return 0;
    }
    p->drop_since = 0;
    if (tern_flow_send(p->conn, p->flow, now, buf, len, -1) != TERN_OK) {
        s->st.tx_failed++;
        return 0;
    }
    s->st.tx_messages++;
    if (q + len > s->st.queue_max) s->st.queue_max = q + len;
    return 1;
}

/* Encodes m into s->out; returns the length or 0 (counted as a failed send). */
size_t tern__rdv_encode(tern_rdv_server *s, const tern_rdv_msg *m)
{
    int n = tern_rdv_encode(m, s->out, TERN_RDV_MAX_MSG);
    if (n < 0) {
        s->st.tx_failed++;
        return 0;
    }
    return (size_t)n;
}

int tern__rdv_send_as(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m,
                   int event)
{
    size_t n = tern__rdv_encode(s, m);
    return n ? tern__rdv_send_raw(s, p, now, s->out, n, event) : 0;
}

void tern__rdv_send_msg(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    (void)tern__rdv_send_as(s, p, now, m, RESP);
}

/* ERROR(code) answering a request of kind req; the request's subject fields are echoed. */
void tern__rdv_send_error(tern_rdv_server *s, rdv_peer *p, uint64_t now, uint16_t code,
                       const tern_rdv_msg *req)
{
    tern_rdv_msg e;
    tern_rdv_msg_error(&e, req ? req->kind : 0, code);
    if (req) {
        if (req->has_peer_id && req->kind == TERN_RDV_INTRODUCE) {
            e.has_peer_id = 1;
            memcpy(e.peer_id, req->peer_id, TERN_PEER_ID_LEN);
        }
        e.group = req->group, e.group_len = req->group_len;
        e.service = req->service, e.service_len = req->service_len;
        if (req->has_call_id) e.has_call_id = 1, e.call_id = req->call_id;
    }
    tern__rdv_send_msg(s, p, now, &e);
}

static uint64_t unix_now(const tern_rdv_server *s, uint64_t now)
{
    int64_t u = s->cfg.unix_offset_s + (int64_t)(now / TERN_NS_PER_S);
    return u < 0 ? 0 : (uint64_t)u;
}

/* Checks the token a request needs (when required). Returns 0 or an error code (sent). */
int tern__rdv_token_gate(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m,
                      int required, uint8_t kind, const uint8_t *subject, size_t len)
{
    if (!s->cfg.has_secret || (!required && !m->has_token)) return 0;
    int rc = m->has_token ? tern_rdv_token_check(s->cfg.secret, kind, subject, len,
                                                 unix_now(s, now), m->token)
                          : TERN_RDV_E_TOKEN_REQUIRED;
    if (rc != 0) {
        s->st.token_rejected++;
        tern__rdv_send_error(s, p, now, (uint16_t)rc, m);
    }
    return rc;
}

/* ---------------------------------------------------------------- accounting */






/* ---------------------------------------------------------------- peers and introductions */

int tern_rdv_server_on_accept(tern_rdv_server *s, tern_conn *c, uint64_t now)
{
    (void)now;
    if (s == NULL || c == NULL) return TERN_ERR_INVALID_ARG;
    if (s->st.peers >= s->cfg.max_peers) return TERN_ERR_LIMIT;
    if (s->cfg.max_mem && s->alloc.current + sizeof(rdv_peer) > s->cfg.max_mem) {
        s->st.limit_mem++; /* near the budget: refuse the new, keep the old */
        return TERN_ERR_LIMIT;
    }
    rdv_peer *p = alloc(s, sizeof(*p));
    if (p == NULL) return TERN_ERR_NOMEM;
    memset(p, 0, sizeof(*p));
    if (tern_conn_peer_key(c, p->pub) != TERN_OK || tern_conn_peer_id(c, p->id) != TERN_OK) {
        release(s, p, sizeof(*p));
        return TERN_ERR_STATE;
    }
    p->conn = c;
    tern_conn_set_user_data(c, p);
    p->next = s->all;
    if (s->all) s->all->prev = p;
    s->all = p;
    s->st.peers++;
    return TERN_OK;
}


/* Closes the relay sessions of p's introductions (a session whose peer left is of no use). */
static void relay_refs_close(tern_rdv_server *s, rdv_peer *p)
{
    for (uint32_t i = 0; i < p->n_relay; i++)
        if (s->cfg.relay_sessions && tern_relay_close(s->cfg.relay_sessions, p->relay[i].ch) ==
                                         TERN_OK)
            s->st.relay_closed++;
    p->n_relay = p->n_relay_req = 0;
    if (p->relay) release(s, p->relay, p->cap_relay * sizeof(*p->relay));
    p->relay = NULL;
    p->cap_relay = 0;
}

/* Takes p out of everything, frees it and detaches it from its connection (if p->conn is set). */
static void peer_drop(tern_rdv_server *s, rdv_peer *p, uint64_t now)
{
    if (p->conn) tern_conn_set_user_data(p->conn, NULL);
    p->conn = NULL; /* nothing more is sent to it */
    if (p->doomed) { /* off the list of peers to close */
        for (rdv_peer **pp = &s->doomed; *pp != NULL; pp = &(*pp)->doom_next)
            if (*pp == p) {
                *pp = p->doom_next;
                break;
            }
        p->doomed = 0;
    }
    if (!s->dying) relay_refs_close(s, p);
    else if (p->relay) release(s, p->relay, p->cap_relay * sizeof(*p->relay));
    if (p->isrc) release(s, p->isrc, INTRO_SRC * sizeof(*p->isrc));
    while (p->n_groups) tern__rdv_group_remove(s, p, p->n_groups - 1, now);
    while (p->services) {
        rdv_service *sv = p->services;
        p->services = sv->next_of;
        tern__map_del(&s->services, NULL, sv);
        release(s, sv, sizeof(*sv) + sv->name_len);
        s->st.services--;
    }
    p->n_services = 0;
    tern__rdv_calls_end_for(s, p, now);
    if (p->registered) {
        tern__map_del(&s->peers, NULL, p);
        s->st.registered--;
    }
    if (p->groups) release(s, p->groups, p->cap_groups * sizeof(*p->groups));
    if (p->cands) release(s, p->cands, p->n_cands * sizeof(*p->cands));
    if (p->prev) p->prev->next = p->next;
    else s->all = p->next;
    if (p->next) p->next->prev = p->prev;
    release(s, p, sizeof(*p));
    s->st.peers--;
}

/* Closes the peers doomed while handling the last event (they do not read what they asked for,
 * or have not read their events for SLOW_CLOSE_NS); each leaves its groups first. */
void tern__rdv_reap(tern_rdv_server *s, uint64_t now)
{
    static const char why[] = "rendezvous: not reading (queue over max_queue_bytes)";
    if (s->reaping) return;
    s->reaping = 1;
    while (s->doomed) {
        rdv_peer *p = s->doomed;
        s->doomed = p->doom_next;
        p->doomed = 0;
        tern_conn *c = p->conn;
        peer_drop(s, p, now);
        if (c) (void)tern_conn_close(c, now, 0, why, sizeof(why) - 1);
    }
    s->reaping = 0;
}

void tern_rdv_server_on_gone(tern_rdv_server *s, tern_conn *c, uint64_t now)
{
    if (s == NULL || c == NULL) return;
    rdv_peer *p = tern_conn_get_user_data(c);
    if (p == NULL || p->conn != c) return;
    peer_drop(s, p, now);
    tern__rdv_reap(s, now);
}

static void on_register(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (tern__rdv_token_gate(s, p, now, m, s->cfg.require_register_token,
                             TERN_RDV_TOKEN_REGISTER, p->id, TERN_PEER_ID_LEN))
        return;
    /* the local candidates: at most max_local_cands (and MAX_CANDS - 2, leaving room for the
     * public and relay ones), each in a range that can be local (tern_rdv_local_cand_ok), so
     * that an introduced peer is never made to send to somebody else's public address */
    size_t n = 0, max = s->cfg.max_local_cands;
    if (max == 0 || max > TERN_RDV_MAX_CANDS - 2) max = TERN_RDV_MAX_CANDS - 2;
    tern_addr local[TERN_RDV_MAX_CANDS];
    const tern_addr *seen = tern_conn_remote(p->conn);
    for (size_t i = 0; i < m->n_cands; i++) {
        if (m->cands[i].kind != TERN_RDV_CAND_LOCAL) continue;
        int dup = 0;
        for (size_t j = 0; j < n && !dup; j++) dup = tern_addr_equal(&local[j], &m->cands[i].addr);
        if (dup) continue;
        if (n < max && tern_rdv_local_cand_ok(&m->cands[i].addr, seen)) local[n++] = m->cands[i].addr;
        else s->st.local_cands_dropped++;
    }
    uint64_t old_cost = p->n_cands * sizeof(*p->cands);
    if (n * sizeof(tern_addr) > old_cost && !can_hold(s, p, n * sizeof(tern_addr) - old_cost)) {
        tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    tern_addr *nc = NULL;
    if (n) {
        nc = alloc(s, n * sizeof(*nc));
        if (nc == NULL) {
            tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        memcpy(nc, local, n * sizeof(*nc));
    }
    if (!p->registered) {
        rdv_peer *old = tern__map_find(&s->peers, p->id, TERN_PEER_ID_LEN);
        if (old != NULL) { /* the same key on a newer connection replaces the older one */
            tern_conn *oc = old->conn;
            peer_drop(s, old, now);
            if (oc) tern_conn_close(oc, now, 0, "replaced by a newer connection", 30);
        }
        if (tern__map_put(&s->peers, NULL, p) != TERN_OK) {
            if (nc) release(s, nc, n * sizeof(*nc));
            tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        p->registered = 1;
        s->st.registered++;
    }
    if (p->cands) release(s, p->cands, p->n_cands * sizeof(*p->cands));
    uncharge(p, old_cost);
    p->cands = nc;
    p->n_cands = (uint8_t)n;
    charge(s, p, n * sizeof(*nc));
    s->st.registrations++;

    tern_rdv_msg r;
    tern_rdv_msg_init(&r, TERN_RDV_REGISTERED);
    r.cands[r.n_cands].kind = TERN_RDV_CAND_PUBLIC;
    r.cands[r.n_cands++].addr = *tern_conn_remote(p->conn);
    if (s->cfg.has_relay) {
        r.cands[r.n_cands].kind = TERN_RDV_CAND_RELAY;
        r.cands[r.n_cands++].addr = s->cfg.relay;
    }
    tern__rdv_send_msg(s, p, now, &r);
}

/* ---------------------------------------------------------------- dispatch */

void tern_rdv_server_on_message(tern_rdv_server *s, tern_conn *c, uint64_t flow_id,
                                const uint8_t *data, size_t len, uint64_t now)
{
    (void)flow_id;
    if (s == NULL || c == NULL) return;
    rdv_peer *p = tern_conn_get_user_data(c);
    if (p == NULL || p->conn != c) return;
    tern_rdv_msg m;
    if (tern_rdv_decode(data, len, &m) != TERN_OK) {
        s->st.bad_messages++;
        tern__rdv_send_error(s, p, now, TERN_RDV_E_MALFORMED, NULL);
        tern__rdv_reap(s, now);
        return;
    }
    if (m.kind != TERN_RDV_REGISTER && !p->registered) {
        tern__rdv_send_error(s, p, now, TERN_RDV_E_NOT_REGISTERED, &m);
        tern__rdv_reap(s, now);
        return;
    }
    switch (m.kind) {
    case TERN_RDV_REGISTER: on_register(s, p, now, &m); break;
    case TERN_RDV_INTRODUCE: tern__rdv_on_introduce(s, p, now, &m); break;
    case TERN_RDV_JOIN: tern__rdv_on_join(s, p, now, &m); break;
    case TERN_RDV_LEAVE: tern__rdv_on_leave(s, p, now, &m); break;
    case TERN_RDV_GROUP_MSG: tern__rdv_on_group_msg(s, p, now, &m); break;
    case TERN_RDV_OFFER: tern__rdv_on_offer(s, p, now, &m); break;
    case TERN_RDV_CALL: tern__rdv_on_call(s, p, now, &m); break;
    case TERN_RDV_REPLY: tern__rdv_on_reply(s, p, now, &m); break;
    default: /* a server-to-client kind sent to the server */
        s->st.bad_messages++;
        tern__rdv_send_error(s, p, now, TERN_RDV_E_INVALID, &m);
        break;
    }
    tern__rdv_reap(s, now);
}

void tern_rdv_server_get_stats(const tern_rdv_server *s, tern_rdv_stats *st)
{
    *st = s->st;
    st->mem_current = s->alloc.current;
}

void tern_rdv_server_del(tern_rdv_server *s)
{
    if (s == NULL) return;
    s->dying = 1;
    while (s->all) {
        s->all->conn = NULL; /* send nothing; the connection's user data is left as documented */
        peer_drop(s, s->all, 0);
    }
    tern__map_free(&s->peers);
    tern__map_free(&s->groups);
    tern__map_free(&s->services);
    tern__map_free(&s->calls);
    tern__heap_free(&s->deadlines);
    release(s, s->out, TERN_RDV_MAX_MSG);
    tern__alloc a = s->alloc;
    tern__free(&a, s, sizeof(*s));
}
