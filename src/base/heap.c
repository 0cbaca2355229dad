/* The indexed min-heap (heap.h): a binary heap of (deadline, item) entries. */
#include "base/heap.h"

#include <string.h>

/* Replaces the array by one of ncap entries. TERN_ERR_NOMEM leaves the heap as it was. */
static int resize(tern__heap *h, size_t ncap)
{
    tern__heap_ent *ni = tern__malloc(h->alloc, ncap * sizeof(*ni));
    if (ni == NULL) return TERN_ERR_NOMEM;
    if (h->n) memcpy(ni, h->items, h->n * sizeof(*ni));
    if (h->items) tern__free(h->alloc, h->items, h->cap * sizeof(*h->items));
    h->items = ni;
    h->cap = ncap;
    return TERN_OK;
}

int tern__heap_init(tern__heap *h, tern__alloc *a)
{
    memset(h, 0, sizeof(*h));
    h->alloc = a;
    return TERN_OK;
}

void tern__heap_free(tern__heap *h)
{
    if (h->items) tern__free(h->alloc, h->items, h->cap * sizeof(*h->items));
    h->items = NULL;
    h->n = h->cap = 0;
}

/* Moves the entry e into the hole at i, up towards the root as far as it belongs. */
static void heap_up(tern__heap *h, size_t i, tern__heap_ent e)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent].deadline <= e.deadline) break;
        h->items[i] = h->items[parent];
        h->items[i].it->idx = i;
        i = parent;
    }
    h->items[i] = e;
    e.it->idx = i;
}

/* Moves the entry e into the hole at i, down towards the leaves as far as it belongs. */
static void heap_down(tern__heap *h, size_t i, tern__heap_ent e)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = l;
        if (l >= h->n) break;
        if (r < h->n && h->items[r].deadline < h->items[l].deadline) m = r;
        if (h->items[m].deadline >= e.deadline) break;
        h->items[i] = h->items[m];
        h->items[i].it->idx = i;
        i = m;
    }
    h->items[i] = e;
    e.it->idx = i;
}

static void heap_place(tern__heap *h, size_t i, tern__heap_ent e)
{
    if (i > 0 && h->items[(i - 1) / 2].deadline > e.deadline) heap_up(h, i, e);
    else heap_down(h, i, e);
}

int tern__heap_set(tern__heap *h, tern__heap_item *it, uint64_t deadline)
{
    if (deadline == TERN_TIME_NEVER) {
        if (it->idx == SIZE_MAX) return TERN_OK;
        size_t i = it->idx;
        h->n--;
        if (i != h->n) heap_place(h, i, h->items[h->n]);
        /* shrink, so memory returns to baseline after a burst (a failure keeps the array; the
         * last item leaving gives it all back) */
        if (h->n == 0) tern__heap_free(h);
        else if (h->cap > TERN__HEAP_MIN_CAP && h->n < h->cap / 4) (void)resize(h, h->cap / 2);
        it->idx = SIZE_MAX;
        it->deadline = TERN_TIME_NEVER;
        return TERN_OK;
    }
    if (it->idx == SIZE_MAX) {
        if (h->n == h->cap) {
            int rc = resize(h, h->cap ? h->cap * 2 : TERN__HEAP_MIN_CAP);
            if (rc != TERN_OK) return rc;
        }
        it->deadline = deadline;
        heap_up(h, h->n++, (tern__heap_ent){deadline, it});
        return TERN_OK;
    }
    if (it->deadline == deadline) return TERN_OK;
    it->deadline = deadline;
    heap_place(h, it->idx, (tern__heap_ent){deadline, it});
    return TERN_OK;
}
