/*
 * Internals of the rendezvous server (rdv_server.c), shared by its files:
 *   rdv_server.c  the server object, output to peers, accounting, peer lifecycle, REGISTER,
 *                 dispatch of incoming messages;
 *   rdv_intro.c   INTRODUCE: peer descriptions, relay sessions per introduction;
 *   rdv_groups.c  JOIN / LEAVE / GROUP_MSG, presence and bootstrap lists;
 *   rdv_calls.c   OFFER / CALL / REPLY: services, calls in flight and their deadlines.
 * The design (records, maps, limits, output) is described at the top of rdv_server.c.
 */
#ifndef TERN_RENDEZVOUS_RDV_SERVER_INT_H
#define TERN_RENDEZVOUS_RDV_SERVER_INT_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"
#include "base/heap.h"
#include "base/map.h"
#include "base/rate.h"
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
    tern__bucket b;                 /* s->rate.intro_target */
    uint8_t key[TERN__SRC_KEY_LEN]; /* tern__src_key */
} intro_src;

struct rdv_peer {
    uint8_t id[TERN_PEER_ID_LEN];
    uint8_t pub[TERN_KEY_LEN];
    tern_conn *conn;
    rdv_peer *prev, *next;    /* every tracked peer, for tern_rdv_server_del */
    uint64_t flow;
    tern__bucket rl;          /* GROUP_MSG (s->rate.peer) */
    tern_addr *cands;         /* local candidates, n_cands of them */
    membership *groups;
    rdv_service *services;    /* offered by this peer (linked by next_of) */
    rdv_call *calls_out;      /* made by this peer */
    rdv_call *calls_in;       /* routed to this peer */
    uint32_t n_groups, cap_groups, n_calls_out, rate_drops;
    uint32_t n_calls_in, n_services, n_relay, cap_relay;
    uint32_t n_relay_req;     /* of relay[], the sessions this peer asked for (requested) */
    tern__bucket join, intro; /* JOIN/LEAVE and INTRODUCE (s->rate.join, s->rate.intro) */
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
    tern__bucket rl;          /* GROUP_MSG (s->rate.group) */
    tern__bucket pres;        /* PRESENCE (s->rate.presence) */
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
    struct {                /* cfg's *_rate and *_burst pairs (base/rate.h; rate 0: no limit) */
        tern__rate join, presence, group, peer, intro, intro_target;
    } rate;
    rdv_peer *all;         /* every tracked peer */
    int dying;             /* in tern_rdv_server_del: send nothing */
    rdv_peer *doomed;      /* peers to close (too slow to read), see reap() */
    int reaping;
    uint64_t next_sid;
    uint8_t *out;          /* TERN_RDV_MAX_MSG */
    tern_rdv_stats st;
};

/* ---------------------------------------------------------------- memory, randomness, budgets */

static inline void *alloc(tern_rdv_server *s, size_t n)
{
    return tern__malloc(&s->alloc, n);
}

static inline void release(tern_rdv_server *s, void *p, size_t n)
{
    tern__free(&s->alloc, p, n);
}

static inline void rand_bytes(tern_rdv_server *s, uint8_t *dst, size_t n)
{
    if (s->cfg.rand) s->cfg.rand(dst, n, s->cfg.rand_user);
    else randombytes_buf(dst, n);
}

static inline uint32_t rand_below(tern_rdv_server *s, uint32_t n)
{
    uint32_t r;
    rand_bytes(s, (uint8_t *)&r, sizeof(r));
    return n ? (uint32_t)(((uint64_t)r * n) >> 32) : 0;
}

/* Whether p may hold n more bytes of state (max_peer_state) and the server n + grow more bytes
 * of memory (max_mem; grow: what an array about to double allocates beyond the state accounted
 * to p, which the old array's release gives back afterwards). Counts a refusal; the caller
 * answers ERROR(LIMIT). */
static inline int can_hold_grow(tern_rdv_server *s, rdv_peer *p, uint64_t n, uint64_t grow)
{
    if (s->cfg.max_peer_state && p->acct + n > s->cfg.max_peer_state) {
        s->st.limit_peer_state++;
        return 0;
    }
    if (s->cfg.max_mem && s->alloc.current + n + grow > s->cfg.max_mem) {
        s->st.limit_mem++;
        return 0;
    }
    return 1;
}

static inline int can_hold(tern_rdv_server *s, rdv_peer *p, uint64_t n)
{
    return can_hold_grow(s, p, n, 0);
}

static inline void charge(tern_rdv_server *s, rdv_peer *p, uint64_t n)
{
    p->acct += n;
    if (p->acct > s->st.peer_state_max) s->st.peer_state_max = p->acct;
}

static inline void uncharge(rdv_peer *p, uint64_t n)
{
    p->acct = p->acct > n ? p->acct - n : 0;
}

/* What one membership may cost: both array entries and the group's record, as if it made it. */
static inline uint64_t membership_cost(size_t name_len)
{
    return sizeof(membership) + sizeof(member) + sizeof(rdv_group) + name_len + SLOT_COST;
}

static inline uint64_t service_cost(size_t name_len)
{
    return sizeof(rdv_service) + name_len + SLOT_COST;
}

#define CALL_COST (sizeof(rdv_call) + SLOT_COST + sizeof(void *))

/* ---------------------------------------------------------------- output (rdv_server.c) */

/* What a message is to its recipient: the answer to its own request, or an event others caused
 * (max_queue_bytes treats them differently). */
enum { RESP = 0, EVENT = 1 };

/* Encodes m into s->out; returns the length or 0 (counted as a failed send). */
size_t tern__rdv_encode(tern_rdv_server *s, const tern_rdv_msg *m);
/* Sends len bytes of buf to p, a response or an EVENT (max_queue_bytes treats them
 * differently); 1 when queued. send_as encodes m first. */
int tern__rdv_send_raw(tern_rdv_server *s, rdv_peer *p, uint64_t now, const uint8_t *buf,
                       size_t len, int event);
int tern__rdv_send_as(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m,
                      int event);
/* A response to p's own request. */
void tern__rdv_send_msg(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m);
/* ERROR(code) answering req (NULL: not tied to a request). */
void tern__rdv_send_error(tern_rdv_server *s, rdv_peer *p, uint64_t now, uint16_t code,
                          const tern_rdv_msg *req);
/* Checks the token a request needs (when required). Returns 0 or an error code (sent). */
int tern__rdv_token_gate(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m,
                         int required, uint8_t kind, const uint8_t *subject, size_t len);
/* Closes the peers that were doomed while handling the current event. */
void tern__rdv_reap(tern_rdv_server *s, uint64_t now);

/* ---------------------------------------------------------------- handlers and departures */

void tern__rdv_on_introduce(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m);
void tern__rdv_on_join(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m);
void tern__rdv_on_leave(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m);
void tern__rdv_on_group_msg(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m);
/* Removes p's membership midx from its group (presence LEFT; the group goes when empty). */
void tern__rdv_group_remove(tern_rdv_server *s, rdv_peer *p, uint32_t midx, uint64_t now);
void tern__rdv_on_offer(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m);
void tern__rdv_on_call(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m);
void tern__rdv_on_reply(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m);
/* Fails every call p made or was routed, for p's departure. */
void tern__rdv_calls_end_for(tern_rdv_server *s, rdv_peer *p, uint64_t now);

#endif
