/*
 * Small internal data structures of the core: per-source token buckets and the replay window.
 * The counting allocator, the hash map (connection IDs, reset tokens, sources) and the deadline
 * heap are the shared ones of src/base, included here for the core's files.
 */
#ifndef TERN_CORE_UTIL_H
#define TERN_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"
#include "base/heap.h"
#include "base/map.h"
#include "core/wire.h"
#include "tern/tern.h"

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
