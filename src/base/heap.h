/*
 * The indexed min-heap of every layer: items embedded in their owners (a connection, a call, a
 * relay session, a driver timer), ordered by deadline. Each item knows its index, so moving or
 * removing one is O(log n) with no search, and the top is O(1). The array holds each deadline
 * next to its item, so sifting compares without chasing a pointer per level (a server moves a
 * connection's deadline on nearly every packet).
 *
 * Memory: none while empty; TERN__HEAP_MIN_CAP entries for the first item, doubled when full,
 * halved when under a quarter full (never below TERN__HEAP_MIN_CAP), and given back when the last
 * item goes (which needs no allocation, so memory always returns to zero).
 */
#ifndef TERN_BASE_HEAP_H
#define TERN_BASE_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"

#define TERN__HEAP_MIN_CAP 64

typedef struct tern__heap_item {
    uint64_t deadline;
    size_t idx; /* position in the heap, SIZE_MAX when absent */
} tern__heap_item;

/* An item that is in no heap (what an item must hold before its first tern__heap_set). */
#define TERN__HEAP_ITEM_INIT ((tern__heap_item){TERN_TIME_NEVER, SIZE_MAX})

typedef struct tern__heap_ent {
    uint64_t deadline;
    tern__heap_item *it;
} tern__heap_ent;

typedef struct tern__heap {
    tern__alloc *alloc;
    tern__heap_ent *items;
    size_t n, cap;
} tern__heap;

/* An empty heap allocating through a. It allocates nothing yet, so it returns TERN_OK. */
int tern__heap_init(tern__heap *h, tern__alloc *a);
/* Gives the array back; the heap stays usable, empty. The items it held keep their old indexes:
 * reset each one (TERN__HEAP_ITEM_INIT) before it goes into a heap again. */
void tern__heap_free(tern__heap *h);
/* Inserts, moves or (deadline == TERN_TIME_NEVER) removes the item. TERN_ERR_NOMEM (only when
 * inserting: the item is then left out). */
int tern__heap_set(tern__heap *h, tern__heap_item *it, uint64_t deadline);
static inline void tern__heap_remove(tern__heap *h, tern__heap_item *it)
{
    (void)tern__heap_set(h, it, TERN_TIME_NEVER);
}
/* The item with the earliest deadline, NULL when empty. */
static inline tern__heap_item *tern__heap_top(const tern__heap *h)
{
    return h->n ? h->items[0].it : NULL;
}

#endif
