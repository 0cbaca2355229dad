/*
 * The counting allocator every layer allocates through: a tern_mem hook plus the accounting that
 * memory budgets and the stats' mem_current / mem_peak report. One instance per object that has
 * a budget (an endpoint, a rendezvous server, a relay, a driver).
 */
#ifndef TERN_BASE_ALLOC_H
#define TERN_BASE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "tern/base.h"

/* Allocation through the hook, with accounting. current counts the bytes asked of the hook; an
 * allocation that would take it past max (0: no limit, e.g. tern_settings.max_memory) fails as
 * if the hook had returned NULL, and is counted in refused. */
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
/* size must be what was asked for; p may be NULL. */
void tern__free(tern__alloc *a, void *p, size_t size);

#endif
