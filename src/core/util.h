/*
 * Small internal data structures of the core: a hash map from fixed-size keys (connection IDs,
 * reset tokens) to pointers, a min-heap of connection deadlines, per-source token buckets, and
 * the replay window. All allocate through the endpoint's memory hook.
 */
#ifndef TERN_CORE_UTIL_H
#define TERN_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core/wire.h"
#include "tern/tern.h"

/* Allocation through the hook, with accounting. current counts the bytes asked of the hook; an
 * allocation that would take it past max (0: no limit, tern_settings.max_memory) fails as if the
 * hook had returned NULL, and is counted in refused. */
typedef struct tern__alloc {
    tern_mem mem;
    uint64_t current;
    uint64_t max;     /* 0: unlimited */
    uint64_t peak;    /* highest current seen */
    uint64_t refused; /* allocations refused because of max */
} tern__alloc;

/* What an allocation of size bytes really costs in a typical malloc (a 16-byte aligned chunk
 * with an 8-byte header, at least 32 bytes): what per-connection budgets count, so that many
 * small allocations cannot hide their overhead. */
static inline uint64_t tern__mem_charge(size_t size)
{
    uint64_t c = ((uint64_t)size + 8 + 15) & ~(uint64_t)15;
    return c < 32 ? 32 : c;
}

void *tern__malloc(tern__alloc *a, size_t size);
void *tern__calloc(tern__alloc *a, size_t size);
void tern__free(tern__alloc *a, void *p, size_t size);

/* ---------------------------------------------------------------- hash map */

#define TERN__MAP_KEY_MAX 16

typedef struct tern__map_slot {
    uint8_t state; /* 0 empty, 1 used, 2 deleted */
    uint8_t key[TERN__MAP_KEY_MAX];
    void *val;
} tern__map_slot;

typedef struct tern__map {
    tern__alloc *alloc;
    tern__map_slot *slots;
    size_t cap, used, tombs, key_len;
    uint8_t sip_key[16]; /* keyed hash: peers cannot aim keys at one bucket */
} tern__map;

int tern__map_init(tern__map *m, tern__alloc *a, size_t key_len, const uint8_t sip_key[16]);
void tern__map_free(tern__map *m);
void *tern__map_get(const tern__map *m, const uint8_t *key);
/* TERN_ERR_LIMIT if the key is present already; TERN_ERR_NOMEM. */
int tern__map_put(tern__map *m, const uint8_t *key, void *val);
/* Removes key if it maps to val. */
void tern__map_del(tern__map *m, const uint8_t *key, const void *val);
/* The value slot of key (to change a value in place), NULL when absent. */
void **tern__map_ref(tern__map *m, const uint8_t *key);

/* ---------------------------------------------------------------- deadline heap */

typedef struct tern__heap_item {
    uint64_t deadline;
    size_t idx; /* position in the heap, SIZE_MAX when absent */
} tern__heap_item;

/* The array holds each deadline next to its item, so sifting compares without chasing a
 * pointer per level (a server moves a connection's deadline on nearly every packet). */
typedef struct tern__heap_ent {
    uint64_t deadline;
    tern__heap_item *it;
} tern__heap_ent;

typedef struct tern__heap {
    tern__alloc *alloc;
    tern__heap_ent *items;
    size_t n, cap;
} tern__heap;

int tern__heap_init(tern__heap *h, tern__alloc *a);
void tern__heap_free(tern__heap *h);
/* Inserts, moves or (deadline == TERN_TIME_NEVER) removes the item. TERN_ERR_NOMEM. */
int tern__heap_set(tern__heap *h, tern__heap_item *it, uint64_t deadline);
tern__heap_item *tern__heap_top(const tern__heap *h);

/* ---------------------------------------------------------------- rate limiter */

#define TERN__RL_BUCKETS 4096

typedef struct tern__rl_bucket {
    uint64_t tag;
    uint64_t last_ns;
    uint64_t micro_tokens;
} tern__rl_bucket;

typedef struct tern__ratelimit {
    tern__rl_bucket *b; /* TERN__RL_BUCKETS, fixed: memory never grows with sources */
    uint32_t rate, burst;
    uint8_t key[16];
} tern__ratelimit;

int tern__rl_init(tern__ratelimit *rl, tern__alloc *a, uint32_t rate, uint32_t burst,
                  const uint8_t key[16]);
void tern__rl_free(tern__ratelimit *rl, tern__alloc *a);
/* Takes one token for the source's IP address; 0 when allowed, TERN_ERR_RATE_LIMITED. */
int tern__rl_take(tern__ratelimit *rl, const tern_addr *src, uint64_t now);

/* ---------------------------------------------------------------- replay window */

typedef struct tern__replay {
    uint64_t largest;
    int have;
    uint64_t bits[TERN__REPLAY_WORDS];
} tern__replay;

/* 0 when pn is new, TERN_ERR_REPLAY when seen or older than the window. Does not record. */
int tern__replay_check(const tern__replay *r, uint64_t pn);
void tern__replay_mark(tern__replay *r, uint64_t pn);

#endif
