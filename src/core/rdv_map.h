/*
 * Internal containers of the rendezvous server: a hash map from byte-string keys (peer IDs,
 * group and service names, call IDs) to records that hold their own key, and a min-heap of call
 * deadlines. Both allocate through a tern_mem and never on lookup.
 */
#ifndef TERN_CORE_RDV_MAP_H
#define TERN_CORE_RDV_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "tern/tern.h"

/* Returns the key of a stored record (the map stores only the record pointer). */
typedef const uint8_t *(*tern__rdv_keyof)(const void *rec, size_t *len);

typedef struct tern__rdv_slot {
    uint64_t hash;
    void *rec; /* NULL: empty */
} tern__rdv_slot;

typedef struct tern__rdv_map {
    const tern_mem *mem;
    tern__rdv_slot *slots;
    size_t cap, n; /* cap is 0 or a power of two; n <= 3/4 cap */
    tern__rdv_keyof keyof;
    uint8_t sip_key[16]; /* keyed SipHash: peers cannot aim keys at one chain */
} tern__rdv_map;

void tern__rdv_map_init(tern__rdv_map *m, const tern_mem *mem, tern__rdv_keyof keyof,
                        const uint8_t sip_key[16]);
void tern__rdv_map_free(tern__rdv_map *m);
void *tern__rdv_map_get(const tern__rdv_map *m, const uint8_t *key, size_t len);
/* Inserts rec (whose key must not be present). TERN_ERR_NOMEM. */
int tern__rdv_map_put(tern__rdv_map *m, void *rec);
/* Removes rec if it is stored; an empty map gives its array back, a sparse one shrinks. */
void tern__rdv_map_del(tern__rdv_map *m, const void *rec);

/* A heap item embedded in a record. */
typedef struct tern__rdv_hitem {
    uint64_t deadline;
    size_t idx; /* SIZE_MAX when absent */
} tern__rdv_hitem;

typedef struct tern__rdv_heap {
    const tern_mem *mem;
    tern__rdv_hitem **items;
    size_t n, cap;
} tern__rdv_heap;

void tern__rdv_heap_init(tern__rdv_heap *h, const tern_mem *mem);
void tern__rdv_heap_free(tern__rdv_heap *h);
/* TERN_ERR_NOMEM. */
int tern__rdv_heap_push(tern__rdv_heap *h, tern__rdv_hitem *it);
void tern__rdv_heap_remove(tern__rdv_heap *h, tern__rdv_hitem *it);
tern__rdv_hitem *tern__rdv_heap_top(const tern__rdv_heap *h);

#endif
