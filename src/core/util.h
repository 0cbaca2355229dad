/*
 * Small internal data structures of the core: the replay window. The counting allocator, the hash
 * map (connection IDs, reset tokens, sources), the deadline heap and the rate limits (per-source
 * handshake and error-reply limits, new paths, PATH_RESPONSEs) are the shared ones of src/base,
 * included here for the core's files.
 */
#ifndef TERN_CORE_UTIL_H
#define TERN_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"
#include "base/heap.h"
#include "base/map.h"
#include "base/rate.h"
#include "core/wire.h"
#include "tern/tern.h"

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
