/*
 * Relay (tern/relay.h): forwards opaque tern packets between the two sides of a session by
 * channel, rewriting the channel in place.
 *
 * A session holds two sides, each with its random channel and its registered address. A hash
 * map from channel to side (the shared map of base/map.h, keyed SipHash so a sender cannot aim
 * channels at one chain) makes forward() one lookup, one address comparison and an
 * 8-byte copy; nothing is allocated on that path. A second map counts the sessions each address
 * is part of (the max_per_addr limit), and a third finds the session of an address pair, so a
 * repeated introduction of the same two peers reuses it instead of spending their quotas. When
 * the target's address (addr_b) is at max_per_addr, its least recently active session is freed
 * to make room (a list per address, at most max_per_addr long), so sessions aimed at a peer
 * cannot lock it out of the relay; the requester's address (addr_a) is refused instead. Idle expiry is lazy: each session sits in a min-heap at
 * (the last time it forwarded, as of when it was pushed) + idle_timeout; forward() only records
 * the time, and handle_expiry() either frees a session whose deadline really passed or pushes it
 * back at its real deadline, so a busy session costs no heap work per packet. The per-session
 * byte budget is base's token bucket (base/rate.h) taken by the datagram's length: exact integer
 * refills (byte-nanoseconds), no division on the forwarding path. The maps and the heap shrink as sessions go, so memory returns
 * to what an empty relay holds.
 *
 * Checks run cheapest first: length and type byte, then the inner packet's fixed bit, then the
 * lookup, then the source address, then the byte budget.
 */
#include <sodium.h>
#include <string.h>

#include "base/alloc.h"
#include "base/heap.h"
#include "base/map.h"
#include "base/rate.h"
#include "tern/relay.h"

#define ADDR_KEY_LEN 19 /* family, port (2), ip (16) */

typedef struct relay_session relay_session;

typedef struct relay_side relay_side;

typedef struct addr_count {
    uint8_t key[ADDR_KEY_LEN];
    uint32_t n;
    relay_side *sides; /* the n sides at this address (for the least recently active one) */
} addr_count;

struct relay_side {
    uint8_t ch[TERN_RELAY_CHANNEL_LEN];
    tern_addr addr;
    addr_count *ac;
    relay_session *s;
    relay_side *ac_prev, *ac_next;
};

struct relay_session {
    tern__heap_item h;      /* deadline: last_active (when pushed) + idle_timeout */
    relay_side side[2];
    uint8_t pair[2 * ADDR_KEY_LEN]; /* the two address keys, smaller first (the pairs map) */
    uint64_t last_active;
    tern__bucket budget;    /* bytes both sides may still send (r->rate) */
};

struct tern_relay {
    tern_relay_config cfg;
    tern__alloc alloc;      /* the configured hook, counted (stats.mem_current) */
    tern__map channels;     /* channel -> relay_side */
    tern__map addrs;        /* address -> addr_count */
    tern__map pairs;        /* address pair -> relay_session */
    tern__heap idle;
    tern__rate rate;        /* rate_bytes_per_s, burst_bytes */
    tern_relay_stats st;
};

/* ---------------------------------------------------------------- memory and helpers */

static const uint8_t *channel_key(const void *rec, size_t *len)
{
    *len = TERN_RELAY_CHANNEL_LEN;
    return ((const relay_side *)rec)->ch;
}

static const uint8_t *addr_key_of(const void *rec, size_t *len)
{
    *len = ADDR_KEY_LEN;
    return ((const addr_count *)rec)->key;
}

static const uint8_t *pair_key_of(const void *rec, size_t *len)
{
    *len = 2 * ADDR_KEY_LEN;
    return ((const relay_session *)rec)->pair;
}

static void addr_key(const tern_addr *a, uint8_t key[ADDR_KEY_LEN])
{
    memset(key, 0, ADDR_KEY_LEN);
    key[0] = a->family;
    key[1] = (uint8_t)(a->port >> 8);
    key[2] = (uint8_t)a->port;
    memcpy(key + 3, a->ip, a->family == TERN_AF_INET ? 4 : 16);
}

static void rand_bytes(const tern_relay *r, uint8_t *dst, size_t n)
{
    if (r->cfg.rand) r->cfg.rand(dst, n, r->cfg.rand_user);
    else randombytes_buf(dst, n);
}

void tern_relay_config_default(tern_relay_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_sessions = 100000;
    cfg->max_per_addr = 256;
    cfg->idle_timeout_ns = 60 * TERN_NS_PER_S;
    cfg->rate_bytes_per_s = 50000000;
    cfg->burst_bytes = 4000000;
}

int tern_relay_new(const tern_relay_config *cfg, tern_relay **out)
{
    if (cfg == NULL || out == NULL || cfg->max_sessions == 0 || cfg->max_per_addr == 0 ||
        cfg->idle_timeout_ns == 0)
        return TERN_ERR_INVALID_ARG;
    if (sodium_init() < 0) return TERN_ERR_CRYPTO;
    tern__alloc a = {.mem = cfg->mem ? *cfg->mem : *tern_mem_default()};
    tern_relay *r = tern__calloc(&a, sizeof(*r));
    if (r == NULL) return TERN_ERR_NOMEM;
    r->alloc = a;
    r->cfg = *cfg;
    if (r->cfg.burst_bytes > TERN__RATE_MAX_BURST) r->cfg.burst_bytes = TERN__RATE_MAX_BURST;
    if (r->cfg.burst_bytes < TERN_MAX_DATAGRAM) r->cfg.burst_bytes = TERN_MAX_DATAGRAM;
    tern__rate_set(&r->rate, r->cfg.rate_bytes_per_s, r->cfg.burst_bytes);
    uint8_t k[16];
    rand_bytes(r, k, sizeof(k));
    int rc = tern__map_init_keyof(&r->channels, &r->alloc, channel_key, k);
    if (rc == TERN_OK) rc = tern__map_init_keyof(&r->addrs, &r->alloc, addr_key_of, k);
    if (rc == TERN_OK) rc = tern__map_init_keyof(&r->pairs, &r->alloc, pair_key_of, k);
    if (rc == TERN_OK) rc = tern__heap_init(&r->idle, &r->alloc);
    sodium_memzero(k, sizeof(k));
    if (rc != TERN_OK) {
        tern_relay_del(r);
        return rc;
    }
    *out = r;
    return TERN_OK;
}

/* ---------------------------------------------------------------- sessions */

/* The count record for a, created (with n = 0) when absent. NULL: out of memory. */
static addr_count *addr_ref(tern_relay *r, const tern_addr *a)
{
    uint8_t key[ADDR_KEY_LEN];
    addr_key(a, key);
    addr_count *ac = tern__map_find(&r->addrs, key, ADDR_KEY_LEN);
    if (ac) return ac;
    ac = tern__malloc(&r->alloc, sizeof(*ac));
    if (ac == NULL) return NULL;
    memcpy(ac->key, key, ADDR_KEY_LEN);
    ac->n = 0;
    ac->sides = NULL;
    if (tern__map_put(&r->addrs, NULL, ac) != TERN_OK) {
        tern__free(&r->alloc, ac, sizeof(*ac));
        return NULL;
    }
    return ac;
}

/* Drops the record once no session uses it. */
static void addr_unref_if_unused(tern_relay *r, addr_count *ac)
{
    if (ac == NULL || ac->n > 0) return;
    tern__map_del(&r->addrs, NULL, ac);
    tern__free(&r->alloc, ac, sizeof(*ac));
}

static void side_link(relay_side *sd, addr_count *ac)
{
    sd->ac = ac;
    ac->n++;
    sd->ac_prev = NULL;
    sd->ac_next = ac->sides;
    if (ac->sides) ac->sides->ac_prev = sd;
    ac->sides = sd;
}

static void side_unlink(relay_side *sd)
{
    addr_count *ac = sd->ac;
    if (ac == NULL) return;
    if (sd->ac_prev) sd->ac_prev->ac_next = sd->ac_next;
    else ac->sides = sd->ac_next;
    if (sd->ac_next) sd->ac_next->ac_prev = sd->ac_prev;
    sd->ac_prev = sd->ac_next = NULL;
    ac->n--;
}

static void session_free(tern_relay *r, relay_session *s)
{
    tern__heap_remove(&r->idle, &s->h);
    tern__map_del(&r->pairs, NULL, s);
    for (int i = 0; i < 2; i++) {
        tern__map_del(&r->channels, NULL, &s->side[i]);
        side_unlink(&s->side[i]);
    }
    for (int i = 0; i < 2; i++) addr_unref_if_unused(r, s->side[i].ac);
    tern__free(&r->alloc, s, sizeof(*s));
    r->st.sessions--;
}

/* Frees the session at ac (an address at its max_per_addr) that forwarded least recently,
 * unless that is `keep` (the session being opened). Returns 1 when one was freed; ac stays (the
 * caller holds it: it is freed with its last session only when n reaches 0, and the caller
 * counts on it). */
static int evict_lra(tern_relay *r, addr_count *ac, const relay_session *keep)
{
    relay_side *old = NULL;
    for (relay_side *sd = ac->sides; sd != NULL; sd = sd->ac_next)
        if (sd->s != keep && (old == NULL || sd->s->last_active < old->s->last_active)) old = sd;
    if (old == NULL) return 0;
    ac->n++; /* held: the caller goes on using ac */
    session_free(r, old->s);
    ac->n--;
    return 1;
}

/* A random channel that no live session uses (nor `other`). */
static int fresh_channel(tern_relay *r, const uint8_t *other, uint8_t ch[TERN_RELAY_CHANNEL_LEN])
{
    for (int tries = 0; tries < 16; tries++) {
        rand_bytes(r, ch, TERN_RELAY_CHANNEL_LEN);
        if (other && memcmp(ch, other, TERN_RELAY_CHANNEL_LEN) == 0) continue;
        if (tern__map_find(&r->channels, ch, TERN_RELAY_CHANNEL_LEN) == NULL) return TERN_OK;
    }
    return TERN_ERR_LIMIT; /* a broken random source: 64-bit collisions do not happen */
}

static int addr_ok(const tern_addr *a)
{
    return a != NULL && (a->family == TERN_AF_INET || a->family == TERN_AF_INET6);
}

int tern_relay_open(tern_relay *r, uint64_t now, const tern_addr *addr_a, const tern_addr *addr_b,
                    uint8_t ch_a_out[TERN_RELAY_CHANNEL_LEN],
                    uint8_t ch_b_out[TERN_RELAY_CHANNEL_LEN])
{
    if (r == NULL || !addr_ok(addr_a) || !addr_ok(addr_b) || ch_a_out == NULL ||
        ch_b_out == NULL || tern_addr_equal(addr_a, addr_b))
        return TERN_ERR_INVALID_ARG;
    /* the pair has a session already (a repeated introduction): the same channels, kept alive */
    uint8_t pair[2 * ADDR_KEY_LEN], ka[ADDR_KEY_LEN], kb[ADDR_KEY_LEN];
    addr_key(addr_a, ka);
    addr_key(addr_b, kb);
    int a_first = memcmp(ka, kb, ADDR_KEY_LEN) < 0;
    memcpy(pair, a_first ? ka : kb, ADDR_KEY_LEN);
    memcpy(pair + ADDR_KEY_LEN, a_first ? kb : ka, ADDR_KEY_LEN);
    relay_session *old = tern__map_find(&r->pairs, pair, sizeof(pair));
    if (old != NULL) {
        int a0 = tern_addr_equal(addr_a, &old->side[0].addr);
        memcpy(ch_a_out, old->side[a0 ? 0 : 1].ch, TERN_RELAY_CHANNEL_LEN);
        memcpy(ch_b_out, old->side[a0 ? 1 : 0].ch, TERN_RELAY_CHANNEL_LEN);
        if (now > old->last_active) old->last_active = now;
        r->st.reused++;
        return TERN_OK;
    }
    if (r->st.sessions >= r->cfg.max_sessions) {
        r->st.open_refused++;
        return TERN_ERR_LIMIT;
    }
    relay_session *s = tern__calloc(&r->alloc, sizeof(*s));
    if (s == NULL) return TERN_ERR_NOMEM;
    memcpy(s->pair, pair, sizeof(pair));
    s->h = TERN__HEAP_ITEM_INIT;
    s->last_active = s->budget.at = now; /* calloc'd: the budget starts full */
    const tern_addr *addrs[2] = {addr_a, addr_b};
    int rc = TERN_OK, in_map = 0;
    for (int i = 0; i < 2 && rc == TERN_OK; i++) {
        relay_side *sd = &s->side[i];
        sd->s = s;
        sd->addr = *addrs[i]; /* the transport too: a peer may reach the relay over a stream */
        addr_count *ac = addr_ref(r, addrs[i]);
        if (ac != NULL && ac->n >= r->cfg.max_per_addr && i == 1 && evict_lra(r, ac, s))
            r->st.evicted++; /* the target's address is full: its least recently active goes */
        if (ac == NULL) {
            rc = TERN_ERR_NOMEM;
        } else if (ac->n >= r->cfg.max_per_addr) {
            r->st.open_refused++;
            rc = TERN_ERR_LIMIT;
        } else {
            side_link(sd, ac); /* set only once counted: the undo below releases exactly these */
        }
        if (rc != TERN_OK && ac != NULL && sd->ac == NULL) addr_unref_if_unused(r, ac);
    }
    for (int i = 0; i < 2 && rc == TERN_OK; i++) {
        rc = fresh_channel(r, i ? s->side[0].ch : NULL, s->side[i].ch);
        if (rc == TERN_OK) rc = tern__map_put(&r->channels, NULL, &s->side[i]);
        if (rc == TERN_OK) in_map++;
    }
    int in_pairs = 0;
    if (rc == TERN_OK) {
        rc = tern__map_put(&r->pairs, NULL, s);
        in_pairs = rc == TERN_OK;
    }
    if (rc == TERN_OK) rc = tern__heap_set(&r->idle, &s->h, now + r->cfg.idle_timeout_ns);
    if (rc != TERN_OK) {
        if (in_pairs) tern__map_del(&r->pairs, NULL, s);
        for (int i = 0; i < in_map; i++) tern__map_del(&r->channels, NULL, &s->side[i]);
        addr_count *acs[2] = {s->side[0].ac, s->side[1].ac};
        for (int i = 0; i < 2; i++) side_unlink(&s->side[i]);
        for (int i = 0; i < 2; i++) addr_unref_if_unused(r, acs[i]);
        tern__free(&r->alloc, s, sizeof(*s));
        return rc;
    }
    memcpy(ch_a_out, s->side[0].ch, TERN_RELAY_CHANNEL_LEN);
    memcpy(ch_b_out, s->side[1].ch, TERN_RELAY_CHANNEL_LEN);
    r->st.sessions++;
    r->st.opened++;
    return TERN_OK;
}

/* ---------------------------------------------------------------- forwarding */

int tern_relay_forward(tern_relay *r, uint64_t now, const tern_addr *from, uint8_t *data,
                       size_t len, tern_addr *to_out)
{
    if (r == NULL || from == NULL || (data == NULL && len) || to_out == NULL)
        return TERN_ERR_INVALID_ARG;
    if (len < TERN_RELAY_HDR_LEN + 1) {
        r->st.drop_short++;
        return TERN_ERR_TRUNCATED;
    }
    if (len > TERN_MAX_DATAGRAM) {
        r->st.drop_oversize++;
        return TERN_ERR_MALFORMED;
    }
    const uint8_t *ch = tern_relay_hdr_get(data, len);
    if (ch == NULL || !(data[TERN_RELAY_HDR_LEN] & TERN_RELAY_INNER_FIXED)) {
        r->st.drop_malformed++;
        return TERN_ERR_MALFORMED;
    }
    relay_side *in = tern__map_find(&r->channels, ch, TERN_RELAY_CHANNEL_LEN);
    if (in == NULL) {
        r->st.drop_unknown_channel++;
        return TERN_ERR_UNKNOWN_CID;
    }
    if (!tern_addr_equal(from, &in->addr)) {
        r->st.drop_wrong_source++;
        return TERN_ERR_AUTH;
    }
    relay_session *s = in->s;
    if (!tern__bucket_take(&r->rate, &s->budget, now, len)) {
        r->st.drop_rate_limited++;
        return TERN_ERR_RATE_LIMITED;
    }
    const relay_side *out = in == &s->side[0] ? &s->side[1] : &s->side[0];
    tern_relay_hdr_put(data, out->ch); /* the type byte stays, the channel is rewritten */
    *to_out = out->addr;
    if (now > s->last_active) s->last_active = now;
    r->st.fwd_packets++;
    r->st.fwd_bytes += len;
    return (int)len;
}

/* ---------------------------------------------------------------- expiry, stats, teardown */

uint64_t tern_relay_next_deadline(const tern_relay *r)
{
    const tern__heap_item *h = r ? tern__heap_top(&r->idle) : NULL;
    return h ? h->deadline : TERN_TIME_NEVER;
}

void tern_relay_handle_expiry(tern_relay *r, uint64_t now)
{
    if (r == NULL) return;
    for (;;) {
        tern__heap_item *h = tern__heap_top(&r->idle);
        if (h == NULL || h->deadline > now) return;
        relay_session *s = (relay_session *)h; /* h is the first member */
        uint64_t due = s->last_active + r->cfg.idle_timeout_ns;
        if (due > now) {
            /* it forwarded since it was pushed: moved to its real deadline (a move allocates
             * nothing, so it cannot fail) */
            (void)tern__heap_set(&r->idle, h, due);
            continue;
        }
        session_free(r, s);
        r->st.expired++;
    }
}

int tern_relay_close(tern_relay *r, const uint8_t ch[TERN_RELAY_CHANNEL_LEN])
{
    if (r == NULL || ch == NULL) return TERN_ERR_INVALID_ARG;
    relay_side *sd = tern__map_find(&r->channels, ch, TERN_RELAY_CHANNEL_LEN);
    if (sd == NULL) return TERN_ERR_NOT_FOUND;
    session_free(r, sd->s);
    r->st.closed++;
    return TERN_OK;
}

int tern_relay_alive(const tern_relay *r, const uint8_t ch[TERN_RELAY_CHANNEL_LEN])
{
    return r != NULL && ch != NULL &&
           tern__map_find(&r->channels, ch, TERN_RELAY_CHANNEL_LEN) != NULL;
}

void tern_relay_get_stats(const tern_relay *r, tern_relay_stats *st)
{
    *st = r->st;
    st->mem_current = r->alloc.current;
}

void tern_relay_del(tern_relay *r)
{
    if (r == NULL) return;
    while (r->idle.n) session_free(r, (relay_session *)r->idle.items[0].it);
    tern__map_free(&r->channels);
    tern__map_free(&r->addrs);
    tern__map_free(&r->pairs);
    tern__heap_free(&r->idle);
    tern__alloc a = r->alloc;
    tern__free(&a, r, sizeof(*r));
}
