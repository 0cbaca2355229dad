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
 * them without a search. Rate limits are GCRA (one "theoretical arrival time" per bucket).
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
 * sessions, LOCAL candidates) are checked before anything is allocated; rates are GCRA buckets
 * (JOIN/LEAVE per peer, PRESENCE per group, INTRODUCE per requester and per target per requester
 * IP); each peer's state is accounted in bytes (acct, max_peer_state) and the server's in
 * mem_current (max_mem). Before each send the server looks at what is queued to the peer
 * (tern_flow_queued): an event over max_queue_bytes is not queued for it, and a peer that does not
 * read is put on the `doomed` list and closed by reap() once the current callback is done (closing
 * reports on_closed at once, which must not happen in the middle of a fan-out).
 */
#include <sodium.h>
#include <string.h>

#include "base/alloc.h"
#include "base/heap.h"
#include "base/map.h"
#include "tern/rendezvous.h"

#define RECENT_MAX 16
#define INTRO_SRC 4              /* requester IPs tracked per introduction target */
#define SLOW_CLOSE_NS (20 * TERN_NS_PER_S) /* events dropped this long: the reader is closed */
#define SLOT_COST 24             /* a hash map slot (16 bytes at <= 3/4 load) */

typedef struct rdv_peer rdv_peer;
typedef struct rdv_group rdv_group;
typedef struct rdv_service rdv_service;
typedef struct rdv_call rdv_call;

typedef struct membership {
    rdv_group *g;
    uint32_t idx; /* in g->members */
} membership;

typedef struct member {
    rdv_peer *p;
    uint32_t idx; /* in p->groups */
} member;

/* A relay session this peer's introductions opened (its channel identifies it). */
typedef struct relay_ref {
    uint8_t ch[TERN_RELAY_CHANNEL_LEN];
    uint8_t requested; /* 1: this peer asked for the introduction; 0: it was the target */
} relay_ref;

/* Per introduction target: a rate bucket per requester IP (/32, or /64 for IPv6). */
typedef struct intro_src {
    uint64_t tat;
    uint8_t key[9];
} intro_src;

struct rdv_peer {
    uint8_t id[TERN_PEER_ID_LEN];
    uint8_t pub[TERN_KEY_LEN];
    tern_conn *conn;
    rdv_peer *prev, *next;    /* every tracked peer, for tern_rdv_server_del */
    uint64_t flow;
    uint64_t rl_tat;          /* GCRA for GROUP_MSG */
    tern_addr *cands;         /* local candidates, n_cands of them */
    membership *groups;
    rdv_service *services;    /* offered by this peer (linked by next_of) */
    rdv_call *calls_out;      /* made by this peer */
    rdv_call *calls_in;       /* routed to this peer */
    uint32_t n_groups, cap_groups, n_calls_out, rate_drops;
    uint32_t n_calls_in, n_services, n_relay, cap_relay;
    uint32_t n_relay_req;     /* of relay[], the sessions this peer asked for (requested) */
    uint64_t join_tat, intro_tat; /* GCRA for JOIN/LEAVE and INTRODUCE */
    uint64_t acct;            /* accounted bytes of state (max_peer_state) */
    uint64_t drop_since;      /* events to it dropped since (0: none being dropped) */
    relay_ref *relay;         /* sessions of its introductions (cap_relay) */
    intro_src *isrc;          /* INTRO_SRC entries once it is introduced to */
    rdv_peer *doom_next;      /* on s->doomed: to be closed once the current event is done */
    uint8_t n_cands, registered, has_flow, doomed;
};

struct rdv_group {
    member *members;
    uint32_t n, cap;
    uint64_t rl_tat;
    uint64_t pres_tat;        /* GCRA for PRESENCE */
    rdv_peer *recent[RECENT_MAX];
    uint32_t recent_pos;
    uint8_t name_len;
    uint8_t name[];
};

struct rdv_service {
    rdv_peer *provider;
    rdv_service *next_of;
    uint8_t name_len;
    uint8_t name[];
};

struct rdv_call {
    tern__heap_item h;
    uint64_t sid;       /* the server's call ID (the map key) */
    uint64_t cid;       /* the caller's call ID */
    rdv_peer *caller, *provider;
    rdv_call *out_prev, *out_next, *in_prev, *in_next;
};

struct tern_rdv_server {
    tern_rdv_config cfg;
    tern__alloc alloc;     /* cfg.mem, counted (stats.mem_current; max_mem is checked by the
                              callers, which count each refusal by kind) */
    tern__map peers, groups, services, calls;
    tern__heap deadlines;
    rdv_peer *all;         /* every tracked peer */
    int dying;             /* in tern_rdv_server_del: send nothing */
    rdv_peer *doomed;      /* peers to close (too slow to read), see reap() */
    int reaping;
    uint64_t next_sid;
    uint8_t *out;          /* TERN_RDV_MAX_MSG */
    tern_rdv_stats st;
};

/* ---------------------------------------------------------------- memory, keys, helpers */

static void *alloc(tern_rdv_server *s, size_t n)
{
    return tern__malloc(&s->alloc, n);
}

static void release(tern_rdv_server *s, void *p, size_t n)
{
    tern__free(&s->alloc, p, n);
}

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

static void rand_bytes(tern_rdv_server *s, uint8_t *dst, size_t n)
{
    if (s->cfg.rand) s->cfg.rand(dst, n, s->cfg.rand_user);
    else randombytes_buf(dst, n);
}

static uint32_t rand_below(tern_rdv_server *s, uint32_t n)
{
    uint32_t r;
    rand_bytes(s, (uint8_t *)&r, sizeof(r));
    return n ? (uint32_t)(((uint64_t)r * n) >> 32) : 0;
}

/* GCRA: allow one event at now under rate per second with burst depth. */
static int gcra(uint64_t *tat, uint64_t now, uint32_t rate, uint32_t burst)
{
    if (rate == 0) return 1;
    uint64_t t = TERN_NS_PER_S / rate;
    uint64_t tau = (uint64_t)(burst ? burst - 1 : 0) * t;
    uint64_t base = *tat > now ? *tat : now;
    if (base - now > tau) return 0;
    *tat = base + t;
    return 1;
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

/* What a message is to its recipient: the answer to its own request, or an event others caused
 * (max_queue_bytes treats them differently). */
enum { RESP = 0, EVENT = 1 };

/* p is to be closed: it does not read. Closing runs in reap(), once the event being handled is
 * done, because closing reports on_closed (and so on_gone) at once, in the middle of a fan-out. */
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
static int send_raw(tern_rdv_server *s, rdv_peer *p, uint64_t now, const uint8_t *buf,
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
static size_t encode(tern_rdv_server *s, const tern_rdv_msg *m)
{
    int n = tern_rdv_encode(m, s->out, TERN_RDV_MAX_MSG);
    if (n < 0) {
        s->st.tx_failed++;
        return 0;
    }
    return (size_t)n;
}

static int send_as(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m,
                   int event)
{
    size_t n = encode(s, m);
    return n ? send_raw(s, p, now, s->out, n, event) : 0;
}

static void send_msg(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    (void)send_as(s, p, now, m, RESP);
}

/* ERROR(code) answering a request of kind req; the request's subject fields are echoed. */
static void send_error(tern_rdv_server *s, rdv_peer *p, uint64_t now, uint16_t code,
                       const tern_rdv_msg *req)
{
    tern_rdv_msg e;
    tern_rdv_msg_init(&e, TERN_RDV_ERROR);
    e.has_error = 1;
    e.error = code;
    e.req_kind = req ? req->kind : 0;
    if (req) {
        if (req->has_peer_id && req->kind == TERN_RDV_INTRODUCE) {
            e.has_peer_id = 1;
            memcpy(e.peer_id, req->peer_id, TERN_PEER_ID_LEN);
        }
        e.group = req->group, e.group_len = req->group_len;
        e.service = req->service, e.service_len = req->service_len;
        if (req->has_call_id) e.has_call_id = 1, e.call_id = req->call_id;
    }
    send_msg(s, p, now, &e);
}

static uint64_t unix_now(const tern_rdv_server *s, uint64_t now)
{
    int64_t u = s->cfg.unix_offset_s + (int64_t)(now / TERN_NS_PER_S);
    return u < 0 ? 0 : (uint64_t)u;
}

/* Checks the token a request needs (when required). Returns 0 or an error code (sent). */
static int token_gate(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m,
                      int required, uint8_t kind, const uint8_t *subject, size_t len)
{
    if (!s->cfg.has_secret || (!required && !m->has_token)) return 0;
    int rc = m->has_token ? tern_rdv_token_check(s->cfg.secret, kind, subject, len,
                                                 unix_now(s, now), m->token)
                          : TERN_RDV_E_TOKEN_REQUIRED;
    if (rc != 0) {
        s->st.token_rejected++;
        send_error(s, p, now, (uint16_t)rc, m);
    }
    return rc;
}

/* ---------------------------------------------------------------- accounting */

/* Whether p may hold n more bytes of state (max_peer_state) and the server n more bytes of
 * memory (max_mem). Counts a refusal; the caller answers ERROR(LIMIT). */
static int can_hold(tern_rdv_server *s, rdv_peer *p, uint64_t n)
{
    if (s->cfg.max_peer_state && p->acct + n > s->cfg.max_peer_state) {
        s->st.limit_peer_state++;
        return 0;
    }
    if (s->cfg.max_mem && s->alloc.current + n > s->cfg.max_mem) {
        s->st.limit_mem++;
        return 0;
    }
    return 1;
}

static void charge(tern_rdv_server *s, rdv_peer *p, uint64_t n)
{
    p->acct += n;
    if (p->acct > s->st.peer_state_max) s->st.peer_state_max = p->acct;
}

static void uncharge(rdv_peer *p, uint64_t n)
{
    p->acct = p->acct > n ? p->acct - n : 0;
}

/* What one membership may cost: both array entries and the group's record, as if it made it. */
static uint64_t membership_cost(size_t name_len)
{
    return sizeof(membership) + sizeof(member) + sizeof(rdv_group) + name_len + SLOT_COST;
}

static uint64_t service_cost(size_t name_len)
{
    return sizeof(rdv_service) + name_len + SLOT_COST;
}

#define CALL_COST (sizeof(rdv_call) + SLOT_COST + sizeof(void *))

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

static void group_remove(tern_rdv_server *s, rdv_peer *p, uint32_t midx, uint64_t now);
static void calls_end_for(tern_rdv_server *s, rdv_peer *p, uint64_t now);

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
    while (p->n_groups) group_remove(s, p, p->n_groups - 1, now);
    while (p->services) {
        rdv_service *sv = p->services;
        p->services = sv->next_of;
        tern__map_del(&s->services, NULL, sv);
        release(s, sv, sizeof(*sv) + sv->name_len);
        s->st.services--;
    }
    p->n_services = 0;
    calls_end_for(s, p, now);
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
static void reap(tern_rdv_server *s, uint64_t now)
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
    reap(s, now);
}

static void on_register(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (token_gate(s, p, now, m, s->cfg.require_register_token, TERN_RDV_TOKEN_REGISTER, p->id,
                   TERN_PEER_ID_LEN))
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
        send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    tern_addr *nc = NULL;
    if (n) {
        nc = alloc(s, n * sizeof(*nc));
        if (nc == NULL) {
            send_error(s, p, now, TERN_RDV_E_LIMIT, m);
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
            send_error(s, p, now, TERN_RDV_E_LIMIT, m);
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
    send_msg(s, p, now, &r);
}

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
    uint8_t key[9] = {0};
    const tern_addr *a = tern_conn_remote(p->conn);
    key[0] = a->family;
    memcpy(key + 1, a->ip, a->family == TERN_AF_INET ? 4 : 8); /* an IPv6 /64 is one source */
    uint64_t t = TERN_NS_PER_S / s->cfg.intro_target_rate;
    uint64_t half = (uint64_t)(s->cfg.intro_target_burst > 1 ? s->cfg.intro_target_burst - 1 : 0) *
                    t / 2;
    intro_src *slot = NULL, *free_slot = NULL;
    for (int i = 0; i < INTRO_SRC && slot == NULL; i++) {
        if (memcmp(b->isrc[i].key, key, sizeof(key)) == 0) slot = &b->isrc[i];
        else if (free_slot == NULL && b->isrc[i].tat <= now + half) free_slot = &b->isrc[i];
    }
    if (slot == NULL) {
        if (free_slot == NULL) return 0; /* INTRO_SRC other IPs are introducing at full rate */
        slot = free_slot;
        memcpy(slot->key, key, sizeof(key));
        slot->tat = 0;
    }
    return gcra(&slot->tat, now, s->cfg.intro_target_rate, s->cfg.intro_target_burst);
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

static void on_introduce(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (!gcra(&p->intro_tat, now, s->cfg.intro_rate, s->cfg.intro_burst)) {
        s->st.intro_limited_peer++;
        send_error(s, p, now, TERN_RDV_E_RATE_LIMITED, m);
        return;
    }
    rdv_peer *b = tern__map_find(&s->peers, m->peer_id, TERN_PEER_ID_LEN);
    if (b == NULL) {
        s->st.intro_unknown++;
        send_error(s, p, now, TERN_RDV_E_UNKNOWN_PEER, m);
        return;
    }
    if (b == p) {
        send_error(s, p, now, TERN_RDV_E_INVALID, m);
        return;
    }
    if (b->conn == NULL || !intro_target_ok(s, b, p, now)) {
        s->st.intro_limited_target++;
        send_error(s, p, now, TERN_RDV_E_RATE_LIMITED, m);
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
    send_msg(s, p, now, &to_a);
    (void)send_as(s, b, now, &to_b, EVENT);
    s->st.introductions++;
}

/* ---------------------------------------------------------------- groups */

static void presence(tern_rdv_server *s, rdv_group *g, const rdv_peer *who, uint8_t event,
                     uint64_t now)
{
    if (g->n == 0 || (g->n == 1 && g->members[0].p == who)) return;
    /* a large group, or one whose membership churns faster than presence_rate, hears no more
     * presence: a joiner learns the count and a bootstrap list in JOINED instead */
    if ((s->cfg.presence_max_members && g->n > s->cfg.presence_max_members) ||
        !gcra(&g->pres_tat, now, s->cfg.presence_rate, s->cfg.presence_burst)) {
        s->st.presence_dropped++;
        return;
    }
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_PRESENCE);
    m.group = g->name, m.group_len = g->name_len;
    m.has_peer_id = m.has_event = 1;
    memcpy(m.peer_id, who->id, TERN_PEER_ID_LEN);
    m.event = event;
    size_t n = encode(s, &m);
    if (n == 0) return;
    for (uint32_t i = 0; i < g->n; i++)
        if (g->members[i].p != who) (void)send_raw(s, g->members[i].p, now, s->out, n, EVENT);
}

static int peer_in_list(const uint8_t *ids, size_t n, const rdv_peer *p)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(ids + i * TERN_PEER_ID_LEN, p->id, TERN_PEER_ID_LEN) == 0) return 1;
    return 0;
}

/* The bootstrap list for joiner p: recent joiners first (newest first), then random members. */
static size_t bootstrap(tern_rdv_server *s, const rdv_group *g, const rdv_peer *p,
                        uint8_t ids[TERN_RDV_MAX_MEMBERS * TERN_PEER_ID_LEN])
{
    size_t n = 0;
    uint32_t nr = s->cfg.bootstrap_recent;
    for (uint32_t k = 1; k <= RECENT_MAX && n < nr; k++) {
        const rdv_peer *q = g->recent[(g->recent_pos + RECENT_MAX - k) % RECENT_MAX];
        if (q == NULL || q == p || peer_in_list(ids, n, q)) continue;
        memcpy(ids + n++ * TERN_PEER_ID_LEN, q->id, TERN_PEER_ID_LEN);
    }
    size_t want = n + s->cfg.bootstrap_random;
    if (want > TERN_RDV_MAX_MEMBERS) want = TERN_RDV_MAX_MEMBERS;
    if (g->n <= want + 1) { /* small group: everyone */
        for (uint32_t i = 0; i < g->n && n < want; i++) {
            const rdv_peer *q = g->members[i].p;
            if (q != p && !peer_in_list(ids, n, q))
                memcpy(ids + n++ * TERN_PEER_ID_LEN, q->id, TERN_PEER_ID_LEN);
        }
        return n;
    }
    for (size_t tries = 0; n < want && tries < 4 * want; tries++) {
        const rdv_peer *q = g->members[rand_below(s, g->n)].p;
        if (q != p && !peer_in_list(ids, n, q))
            memcpy(ids + n++ * TERN_PEER_ID_LEN, q->id, TERN_PEER_ID_LEN);
    }
    return n;
}

/* JOIN and LEAVE share one bucket per peer (join_rate): each changes the membership that every
 * other member hears about. Over it: ERROR(RATE_LIMITED), nothing changes. */
static int join_rate_ok(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (gcra(&p->join_tat, now, s->cfg.join_rate, s->cfg.join_burst)) return 1;
    s->st.rate_dropped_join++;
    send_error(s, p, now, TERN_RDV_E_RATE_LIMITED, m);
    return 0;
}

static void on_join(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (token_gate(s, p, now, m, s->cfg.require_join_token, TERN_RDV_TOKEN_JOIN, m->group,
                   m->group_len))
        return;
    if (!join_rate_ok(s, p, now, m)) return;
    rdv_group *g = tern__map_find(&s->groups, m->group, m->group_len);
    int is_member = 0;
    for (uint32_t i = 0; g && i < p->n_groups; i++) is_member |= p->groups[i].g == g;
    if (!is_member) {
        if (p->n_groups >= s->cfg.max_groups_per_peer ||
            (g == NULL && s->cfg.max_groups && s->st.groups >= s->cfg.max_groups) ||
            (g != NULL && s->cfg.max_group_members && g->n >= s->cfg.max_group_members)) {
            s->st.limit_groups++;
            send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        if (!can_hold(s, p, membership_cost(m->group_len))) {
            send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        if (p->n_groups == p->cap_groups) {
            uint32_t nc = p->cap_groups ? 2 * p->cap_groups : 2;
            membership *ng = alloc(s, nc * sizeof(*ng));
            if (ng == NULL) goto nomem;
            if (p->n_groups) memcpy(ng, p->groups, p->n_groups * sizeof(*ng));
            if (p->groups) release(s, p->groups, p->cap_groups * sizeof(*ng));
            p->groups = ng;
            p->cap_groups = nc;
        }
        if (g == NULL) {
            g = alloc(s, sizeof(*g) + m->group_len);
            if (g == NULL) goto nomem;
            memset(g, 0, sizeof(*g));
            g->name_len = (uint8_t)m->group_len;
            memcpy(g->name, m->group, m->group_len);
            if (tern__map_put(&s->groups, NULL, g) != TERN_OK) {
                release(s, g, sizeof(*g) + m->group_len);
                goto nomem;
            }
            s->st.groups++;
        }
        if (g->n == g->cap) {
            uint32_t nc = g->cap ? 2 * g->cap : 4;
            member *nm = alloc(s, nc * sizeof(*nm));
            if (nm == NULL) {
                if (g->n == 0) { /* just made: undo */
                    tern__map_del(&s->groups, NULL, g);
                    release(s, g, sizeof(*g) + g->name_len);
                    s->st.groups--;
                }
                goto nomem;
            }
            if (g->n) memcpy(nm, g->members, g->n * sizeof(*nm));
            if (g->members) release(s, g->members, g->cap * sizeof(*nm));
            g->members = nm;
            g->cap = nc;
        }
        g->members[g->n] = (member){p, p->n_groups};
        p->groups[p->n_groups++] = (membership){g, g->n++};
        charge(s, p, membership_cost(g->name_len));
        s->st.joins++;
    }
    uint8_t ids[TERN_RDV_MAX_MEMBERS * TERN_PEER_ID_LEN];
    tern_rdv_msg r;
    tern_rdv_msg_init(&r, TERN_RDV_JOINED);
    r.group = g->name, r.group_len = g->name_len;
    r.n_members = bootstrap(s, g, p, ids);
    r.members = ids;
    r.has_count = 1;
    r.count = g->n;
    send_msg(s, p, now, &r);
    if (!is_member) {
        g->recent[g->recent_pos] = p;
        g->recent_pos = (g->recent_pos + 1) % RECENT_MAX;
        presence(s, g, p, TERN_RDV_PRESENCE_JOIN, now);
    }
    return;
nomem:
    send_error(s, p, now, TERN_RDV_E_LIMIT, m);
}

/* Removes p's membership midx (swap-remove on both sides), tells the others, frees an empty
 * group. */
static void group_remove(tern_rdv_server *s, rdv_peer *p, uint32_t midx, uint64_t now)
{
    rdv_group *g = p->groups[midx].g;
    uint32_t gi = p->groups[midx].idx;
    /* the group's member array */
    g->members[gi] = g->members[--g->n];
    if (gi < g->n) g->members[gi].p->groups[g->members[gi].idx].idx = gi;
    /* the peer's membership array */
    p->groups[midx] = p->groups[--p->n_groups];
    if (midx < p->n_groups) p->groups[midx].g->members[p->groups[midx].idx].idx = midx;
    uncharge(p, membership_cost(g->name_len));
    for (uint32_t k = 0; k < RECENT_MAX; k++)
        if (g->recent[k] == p) g->recent[k] = NULL;
    s->st.leaves++;
    if (g->n == 0) {
        tern__map_del(&s->groups, NULL, g);
        if (g->members) release(s, g->members, g->cap * sizeof(*g->members));
        release(s, g, sizeof(*g) + g->name_len);
        s->st.groups--;
        return;
    }
    /* presence() skips `who`; p is no longer a member, so every remaining member hears it */
    presence(s, g, p, TERN_RDV_PRESENCE_LEAVE, now);
}

static int find_membership(const rdv_peer *p, const tern_rdv_msg *m, uint32_t *midx)
{
    for (uint32_t i = 0; i < p->n_groups; i++) {
        const rdv_group *g = p->groups[i].g;
        if (g->name_len == m->group_len && memcmp(g->name, m->group, m->group_len) == 0) {
            *midx = i;
            return 1;
        }
    }
    return 0;
}

static void on_leave(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    uint32_t midx;
    if (!find_membership(p, m, &midx)) {
        send_error(s, p, now, TERN_RDV_E_NOT_MEMBER, m);
        return;
    }
    if (!join_rate_ok(s, p, now, m)) return;
    group_remove(s, p, midx, now);
}

static void on_group_msg(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    uint32_t midx;
    if (!find_membership(p, m, &midx)) {
        send_error(s, p, now, TERN_RDV_E_NOT_MEMBER, m);
        return;
    }
    rdv_group *g = p->groups[midx].g;
    /* the peer's bucket first, so one noisy peer cannot spend the group's */
    int ok_peer = gcra(&p->rl_tat, now, s->cfg.peer_rate, s->cfg.peer_burst);
    int ok_group = ok_peer && gcra(&g->rl_tat, now, s->cfg.group_rate, s->cfg.group_burst);
    if (!ok_group) {
        if (!ok_peer) s->st.rate_dropped_peer++;
        else s->st.rate_dropped_group++;
        p->rate_drops++;
        tern_rdv_msg e;
        tern_rdv_msg_init(&e, TERN_RDV_ERROR);
        e.has_error = 1;
        e.error = TERN_RDV_E_RATE_LIMITED;
        e.req_kind = TERN_RDV_GROUP_MSG;
        e.group = g->name, e.group_len = g->name_len;
        e.has_count = 1;
        e.count = p->rate_drops;
        send_msg(s, p, now, &e);
        return;
    }
    tern_rdv_msg f;
    tern_rdv_msg_init(&f, TERN_RDV_GROUP_MSG);
    f.group = g->name, f.group_len = g->name_len;
    f.has_peer_id = 1;
    memcpy(f.peer_id, p->id, TERN_PEER_ID_LEN);
    f.payload = m->payload, f.payload_len = m->payload_len, f.has_payload = 1;
    size_t n = encode(s, &f);
    if (n == 0) return;
    s->st.group_msgs++;
    for (uint32_t i = 0; i < g->n; i++)
        if (g->members[i].p != p && send_raw(s, g->members[i].p, now, s->out, n, EVENT))
            s->st.fanout_msgs++;
}

/* ---------------------------------------------------------------- services and calls */

static void on_offer(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (token_gate(s, p, now, m, s->cfg.require_offer_token, TERN_RDV_TOKEN_OFFER, m->service,
                   m->service_len))
        return;
    rdv_service *sv = tern__map_find(&s->services, m->service, m->service_len);
    if (sv != NULL && sv->provider != p) {
        send_error(s, p, now, TERN_RDV_E_SERVICE_TAKEN, m);
        return;
    }
    if (sv == NULL) {
        if ((s->cfg.max_services_per_peer && p->n_services >= s->cfg.max_services_per_peer) ||
            (s->cfg.max_services && s->st.services >= s->cfg.max_services)) {
            s->st.limit_services++;
            send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        if (!can_hold(s, p, service_cost(m->service_len))) {
            send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        sv = alloc(s, sizeof(*sv) + m->service_len);
        if (sv == NULL) {
            send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        memset(sv, 0, sizeof(*sv));
        sv->provider = p;
        sv->name_len = (uint8_t)m->service_len;
        memcpy(sv->name, m->service, m->service_len);
        if (tern__map_put(&s->services, NULL, sv) != TERN_OK) {
            release(s, sv, sizeof(*sv) + m->service_len);
            send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        sv->next_of = p->services;
        p->services = sv;
        p->n_services++;
        charge(s, p, service_cost(sv->name_len));
        s->st.services++;
    }
    tern_rdv_msg r;
    tern_rdv_msg_init(&r, TERN_RDV_OFFERED);
    r.service = sv->name, r.service_len = sv->name_len;
    send_msg(s, p, now, &r);
}

static void call_free(tern_rdv_server *s, rdv_call *c)
{
    tern__map_del(&s->calls, NULL, c);
    tern__heap_remove(&s->deadlines, &c->h);
    if (c->out_prev) c->out_prev->out_next = c->out_next;
    else c->caller->calls_out = c->out_next;
    if (c->out_next) c->out_next->out_prev = c->out_prev;
    if (c->in_prev) c->in_prev->in_next = c->in_next;
    else c->provider->calls_in = c->in_next;
    if (c->in_next) c->in_next->in_prev = c->in_prev;
    c->caller->n_calls_out--;
    c->provider->n_calls_in--;
    uncharge(c->caller, CALL_COST);
    release(s, c, sizeof(*c));
    s->st.calls_pending--;
}

/* ERROR(code) for call c to its caller, then frees c. */
static void call_fail(tern_rdv_server *s, rdv_call *c, uint16_t code, uint64_t now)
{
    tern_rdv_msg e;
    tern_rdv_msg_init(&e, TERN_RDV_ERROR);
    e.has_error = 1;
    e.error = code;
    e.req_kind = TERN_RDV_CALL;
    e.has_call_id = 1;
    e.call_id = c->cid;
    send_msg(s, c->caller, now, &e);
    call_free(s, c);
}

static void calls_end_for(tern_rdv_server *s, rdv_peer *p, uint64_t now)
{
    while (p->calls_out) call_free(s, p->calls_out); /* the caller is gone: nobody to tell */
    while (p->calls_in) {
        s->st.call_gone++;
        call_fail(s, p->calls_in, TERN_RDV_E_PROVIDER_GONE, now);
    }
}

static void on_call(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    rdv_service *sv = tern__map_find(&s->services, m->service, m->service_len);
    if (sv == NULL) {
        s->st.call_no_service++;
        send_error(s, p, now, TERN_RDV_E_NO_SERVICE, m);
        return;
    }
    if (s->st.calls_pending >= s->cfg.max_calls || p->n_calls_out >= s->cfg.max_calls_per_peer ||
        (s->cfg.max_calls_per_provider &&
         sv->provider->n_calls_in >= s->cfg.max_calls_per_provider)) {
        s->st.limit_calls++;
        send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    if (!can_hold(s, p, CALL_COST)) {
        send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    rdv_call *c = alloc(s, sizeof(*c));
    if (c == NULL) {
        send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->sid = ++s->next_sid;
    c->cid = m->call_id;
    c->caller = p;
    c->provider = sv->provider;
    uint32_t t = m->has_timeout && m->timeout_ms ? m->timeout_ms : s->cfg.default_timeout_ms;
    if (t > s->cfg.max_timeout_ms) t = s->cfg.max_timeout_ms;
    c->h = TERN__HEAP_ITEM_INIT;
    if (tern__map_put(&s->calls, NULL, c) != TERN_OK) {
        release(s, c, sizeof(*c));
        send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    if (tern__heap_set(&s->deadlines, &c->h, now + (uint64_t)t * TERN_NS_PER_MS) != TERN_OK) {
        tern__map_del(&s->calls, NULL, c);
        release(s, c, sizeof(*c));
        send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    c->out_next = p->calls_out;
    if (p->calls_out) p->calls_out->out_prev = c;
    p->calls_out = c;
    c->in_next = c->provider->calls_in;
    if (c->provider->calls_in) c->provider->calls_in->in_prev = c;
    c->provider->calls_in = c;
    p->n_calls_out++;
    c->provider->n_calls_in++;
    charge(s, p, CALL_COST);
    s->st.calls_pending++;
    s->st.calls++;

    tern_rdv_msg f;
    tern_rdv_msg_init(&f, TERN_RDV_CALL);
    f.service = sv->name, f.service_len = sv->name_len;
    f.method = m->method, f.method_len = m->method_len;
    f.has_call_id = 1, f.call_id = c->sid;
    f.has_timeout = 1, f.timeout_ms = t;
    f.has_peer_id = 1;
    memcpy(f.peer_id, p->id, TERN_PEER_ID_LEN);
    f.payload = m->payload, f.payload_len = m->payload_len, f.has_payload = 1;
    if (!send_as(s, c->provider, now, &f, EVENT)) {
        /* the provider is not reading (max_queue_bytes) or the flow refused: fail it now */
        s->st.limit_calls++;
        call_fail(s, c, TERN_RDV_E_LIMIT, now);
    }
}

static void on_reply(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    uint64_t sid = m->call_id;
    rdv_call *c = tern__map_find(&s->calls, (const uint8_t *)&sid, sizeof(sid));
    if (c == NULL || c->provider != p) { /* late (timed out) or not this provider's call */
        s->st.late_replies++;
        return;
    }
    tern_rdv_msg r;
    tern_rdv_msg_init(&r, TERN_RDV_REPLY);
    r.has_call_id = 1, r.call_id = c->cid;
    r.has_status = 1, r.status = m->status;
    r.payload = m->payload, r.payload_len = m->payload_len, r.has_payload = 1;
    send_msg(s, c->caller, now, &r);
    s->st.replies++;
    call_free(s, c);
}

uint64_t tern_rdv_server_next_deadline(const tern_rdv_server *s)
{
    const tern__heap_item *it = tern__heap_top(&s->deadlines);
    return it ? it->deadline : TERN_TIME_NEVER;
}

void tern_rdv_server_handle_expiry(tern_rdv_server *s, uint64_t now)
{
    for (;;) {
        tern__heap_item *it = tern__heap_top(&s->deadlines);
        if (it == NULL || it->deadline > now) return;
        rdv_call *c = (rdv_call *)(void *)((uint8_t *)it - offsetof(rdv_call, h));
        s->st.call_timeouts++;
        call_fail(s, c, TERN_RDV_E_TIMEOUT, now);
        reap(s, now);
    }
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
        send_error(s, p, now, TERN_RDV_E_MALFORMED, NULL);
        reap(s, now);
        return;
    }
    if (m.kind != TERN_RDV_REGISTER && !p->registered) {
        send_error(s, p, now, TERN_RDV_E_NOT_REGISTERED, &m);
        reap(s, now);
        return;
    }
    switch (m.kind) {
    case TERN_RDV_REGISTER: on_register(s, p, now, &m); break;
    case TERN_RDV_INTRODUCE: on_introduce(s, p, now, &m); break;
    case TERN_RDV_JOIN: on_join(s, p, now, &m); break;
    case TERN_RDV_LEAVE: on_leave(s, p, now, &m); break;
    case TERN_RDV_GROUP_MSG: on_group_msg(s, p, now, &m); break;
    case TERN_RDV_OFFER: on_offer(s, p, now, &m); break;
    case TERN_RDV_CALL: on_call(s, p, now, &m); break;
    case TERN_RDV_REPLY: on_reply(s, p, now, &m); break;
    default: /* a server-to-client kind sent to the server */
        s->st.bad_messages++;
        send_error(s, p, now, TERN_RDV_E_INVALID, &m);
        break;
    }
    reap(s, now);
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
