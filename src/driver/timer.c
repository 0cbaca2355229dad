/*
 * The driver's timers: base's indexed min-heap (base/heap.h) of the items embedded in
 * tern_driver_timer, ordered by expiry time. Each timer remembers its index, so re-arming or
 * cancelling one is O(log n) with no search; the loop only ever looks at the top. The
 * endpoint's next deadline is one entry like any application timer. Timers are allocated by the
 * application (tern_driver_timer_new) and the heap only holds pointers, so it never moves a
 * timer in memory.
 */
#include <stdlib.h>

#include "driver/driver_int.h"

int drv_heap_init(drv_heap *h, tern__alloc *a)
{
    return tern__heap_init(h, a);
}

int drv_heap_set(drv_heap *h, tern_driver_timer *t, uint64_t at)
{
    return tern__heap_set(h, &t->item, at);
}

void drv_heap_remove(drv_heap *h, tern_driver_timer *t)
{
    tern__heap_remove(h, &t->item);
}

tern_driver_timer *drv_heap_top(const drv_heap *h)
{
    return (tern_driver_timer *)(void *)tern__heap_top(h); /* item is the first member */
}

void drv_heap_free(drv_heap *h)
{
    for (size_t i = 0; i < h->n; i++) *h->items[i].it = TERN__HEAP_ITEM_INIT;
    tern__heap_free(h);
}

/* ---------------------------------------------------------------- public timer API */

int tern_driver_timer_new(tern_driver *d, tern_driver_timer_fn fn, void *user,
                          tern_driver_timer **out)
{
    if (d == NULL || fn == NULL || out == NULL) return TERN_ERR_INVALID_ARG;
    tern_driver_timer *t = calloc(1, sizeof(*t));
    if (t == NULL) return TERN_ERR_NOMEM;
    t->d = d;
    t->fn = fn;
    t->user = user;
    t->item = TERN__HEAP_ITEM_INIT;
    *out = t;
    return TERN_OK;
}

int tern_driver_timer_set(tern_driver_timer *t, uint64_t at_ns)
{
    if (t == NULL) return TERN_ERR_INVALID_ARG;
    return drv_heap_set(&t->d->timers, t, at_ns);
}

void tern_driver_timer_cancel(tern_driver_timer *t)
{
    if (t != NULL) drv_heap_remove(&t->d->timers, t);
}

void tern_driver_timer_del(tern_driver_timer *t)
{
    if (t == NULL) return;
    drv_heap_remove(&t->d->timers, t);
    free(t);
}
