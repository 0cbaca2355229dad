/*
 * Rate limits, the one arithmetic of every layer: a token bucket over nanoseconds, and a table of
 * them per source address.
 *
 * A limit (tern__rate) is a rate in units per second and a burst, the bucket's depth in units; a
 * unit is whatever the user counts (a handshake, an error reply, a rendezvous message, a byte of
 * a relay session). A bucket (tern__bucket) starts full, which is what a zeroed one is, so a
 * bucket inside a calloc'd record needs no setup. Taking n units succeeds when the bucket holds
 * n, and then removes them; a refused take removes nothing. The bucket refills at the rate,
 * continuously, up to its depth: after a burst of `burst` units, one more unit is allowed every
 * 1/rate seconds, and an idle bucket is full again after burst/rate seconds.
 *
 * The arithmetic is exact: the bucket counts what it owes (debt) in unit-nanoseconds, units x 1e9,
 * so a refill of dt nanoseconds at `rate` units per second is dt x rate with no division and no
 * rounding, whatever the rate (3/s refills exactly as 1,000,000/s does). A zero debt is a full
 * bucket; debt / rate is the time in nanoseconds until the bucket is full again (GCRA's
 * "theoretical arrival time" minus now).
 *
 * Rate 0 means no limit: every take succeeds and touches nothing. A burst of 0 counts as 1; a
 * burst above TERN__RATE_MAX_BURST is cut to it (so that burst x 1e9 fits in 64 bits). A take of
 * more units than the burst never succeeds.
 *
 * Time: now is the caller's monotonic clock. A clock that does not move adds nothing; one that goes
 * backwards adds nothing and leaves the bucket's last refill time where it was, so the same
 * interval is never credited twice.
 */
#ifndef TERN_BASE_RATE_H
#define TERN_BASE_RATE_H

#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"
#include "base/map.h"
#include "tern/base.h"

#define TERN__RATE_MAX_BURST 10000000000ull /* x 1e9 still fits in 64 bits */

typedef struct tern__rate {
    uint64_t per_s; /* units per second; 0: no limit */
    uint64_t cap;   /* the depth in unit-nanoseconds: burst x 1e9 */
} tern__rate;

typedef struct tern__bucket {
    uint64_t debt; /* unit-nanoseconds taken and not yet refilled (0: full) */
    uint64_t at;   /* the time debt was last brought up to date */
} tern__bucket;

/* A limit of per_s units per second with a depth of burst units (see above for 0 and bounds). */
void tern__rate_set(tern__rate *r, uint64_t per_s, uint64_t burst);

/* Brings b up to date at now (the refill since b->at). */
static inline void tern__bucket_refill(const tern__rate *r, tern__bucket *b, uint64_t now)
{
    if (now <= b->at) return; /* the clock did not move, or went back: nothing to add */
    if (b->debt != 0) {
        uint64_t add;
        if (__builtin_mul_overflow(now - b->at, r->per_s, &add) || add >= b->debt) b->debt = 0;
        else b->debt -= add;
    }
    b->at = now;
}

/* Takes n units from b at now: 1 when they were there (and are now taken), 0 when not (nothing
 * taken). Inline: the relay calls it for every datagram it forwards. */
static inline int tern__bucket_take(const tern__rate *r, tern__bucket *b, uint64_t now, uint64_t n)
{
    if (r->per_s == 0) return 1;
    tern__bucket_refill(r, b, now);
    if (n > TERN__RATE_MAX_BURST) return 0; /* more than any bucket holds; n x 1e9 fits below */
    uint64_t cost = n * TERN_NS_PER_S;
    if (cost > r->cap - b->debt) return 0;
    b->debt += cost;
    return 1;
}

/* What b owes at now, in unit-nanoseconds (0: full; r->cap: empty); debt / rate is the time
 * until it is full. Brings b up to date. */
static inline uint64_t tern__bucket_debt(const tern__rate *r, tern__bucket *b, uint64_t now)
{
    if (r->per_s == 0) return 0;
    tern__bucket_refill(r, b, now);
    return b->debt;
}

/* ---------------------------------------------------------------- per source */

/* A source is an IPv4 address or an IPv6 /64 (one host's, or one site's, usual share of the
 * address space): the family byte, then 4 or 8 bytes of address, zero-padded. */
#define TERN__SRC_KEY_LEN 9
void tern__src_key(const tern_addr *a, uint8_t key[TERN__SRC_KEY_LEN]);

typedef struct tern__src_entry {
    tern__bucket b;
    uint8_t key[TERN__SRC_KEY_LEN];
} tern__src_entry;

/* One bucket per source, at most max sources at once. The entries are allocated once, with the
 * map (base/map.h, keyed SipHash so a sender cannot aim sources at one chain) sized to hold them
 * all, at the first take or by tern__srclim_reserve: memory is then fixed until freed, whatever
 * the sources do (a limiter that is never used, such as a client's error-reply limit, costs only
 * its struct). Either from an allocator (tern__srclim_init), or carved from the caller's buffer
 * at init (tern__srclim_init_in: for objects that promise not to allocate, such as the STUN
 * responder; the limiter then points into itself and must not be moved or copied until
 * freed).
 *
 * When all max entries are in use, a new source takes over an existing entry: the first full one
 * (a source that stayed quiet long enough to refill, so forgetting it changes nothing) among the
 * next TERN__SRC_SCAN entries from a rotating hand, else the entry at the hand (entries are taken
 * over in turn). The source that lost its entry starts again with a full bucket if it comes back.
 * So the limit per source holds while fewer than max sources are active at once; beyond that each
 * of them may get up to a burst per turn of the hand (a sender with that many addresses is beyond
 * what a per-source limit can hold; the server-wide limits still do). Nothing is refused for
 * lack of memory once the table is made; a take that cannot make it is refused. */
#define TERN__SRC_SCAN 8

typedef struct tern__srclim {
    tern__rate rate;
    tern__alloc *alloc;     /* the caller's, or &own */
    tern__alloc own;        /* tern__srclim_init_in: hands out buf */
    uint8_t *buf;
    size_t buf_len, buf_used;
    tern__map map;          /* source key -> entry (keys kept in the entries) */
    tern__src_entry *pool;  /* max entries, n of them in use */
    uint32_t max, n, hand;
} tern__srclim;

/* A limiter of max (>= 1) sources, each limited to per_s a second with the given burst
 * (tern__rate_set; per_s 0: no limit, and never a table). sip_key keys the map. Allocates
 * nothing yet. TERN_ERR_INVALID_ARG. */
int tern__srclim_init(tern__srclim *l, tern__alloc *a, uint64_t per_s, uint64_t burst,
                      uint32_t max, const uint8_t sip_key[16]);
/* Makes the table now rather than at the first take (a server: so that its memory is what it
 * is from the start). TERN_ERR_NOMEM; TERN_ERR_STATE when freed or never initialised. */
int tern__srclim_reserve(tern__srclim *l);
/* The same in len bytes at buf (8-byte aligned), which must be at least
 * tern__srclim_buf_size(max); TERN_ERR_NOMEM when it is not. Nothing is allocated. */
int tern__srclim_init_in(tern__srclim *l, void *buf, size_t len, uint64_t per_s, uint64_t burst,
                         uint32_t max, const uint8_t sip_key[16]);
size_t tern__srclim_buf_size(uint32_t max);
/* Gives the table back; l stays safe to free again, and every take is refused from then on. */
void tern__srclim_free(tern__srclim *l);
/* Takes one unit for src's source at now: 1 allowed, 0 refused (or never initialised). */
int tern__srclim_take(tern__srclim *l, const tern_addr *src, uint64_t now);

#endif
