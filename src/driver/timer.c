/*
 * The driver's timers: a binary min-heap of tern_driver_timer pointers ordered by expiry time.
 * Each timer remembers its index, so re-arming or cancelling one is O(log n) with no search;
 * the loop only ever looks at the top. The endpoint's next deadline is one entry like any
 * application timer. Timers are allocated by the application (tern_driver_timer_new) and the
 * heap only holds pointers, so it never moves a timer in memory.
 */
#include <stdlib.h>

#include "driver/driver_int.h"

static int before(const tern_driver_timer *a, const tern_driver_timer *b)
{
    return a->at < b->at;
}

static void place(drv_heap *h, size_t i, tern_driver_timer *t)
{
    h->items[i] = t;
    t->idx = i;
}

static void sift_up(drv_heap *h, size_t i)
{
    tern_driver_timer *t = h->items[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(t, h->items[p])) break;
        place(h, i, h->items[p]);
        i = p;
    }
    place(h, i, t);
}

static void sift_down(drv_heap *h, size_t i)
{
    tern_driver_timer *t = h->items[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const tern_driver_timer *best = t;
        if (l < h->n && before(h->items[l], best)) {
            m = l;
            best = h->items[l];
        }
        if (r < h->n && before(h->items[r], best)) m = r;
        if (m == i) break;
        place(h, i, h->items[m]);
        i = m;
    }
    place(h, i, t);
}

int drv_heap_set(drv_heap *h, tern_driver_timer *t, uint64_t at)
{
    if (t->idx == DRV_NOT_ARMED) {
        if (h->n == h->cap) {
            size_t cap = h->cap ? 2 * h->cap : 16;
            tern_driver_timer **items = realloc(h->items, cap * sizeof(*items));
            if (items == NULL) return TERN_ERR_NOMEM;
            h->items = items;
            h->cap = cap;
        }
        t->at = at;
        place(h, h->n++, t);
        sift_up(h, t->idx);
        return TERN_OK;
    }
    uint64_t old = t->at;
    t->at = at;
    if (at < old) sift_up(h, t->idx);
    else if (at > old) sift_down(h, t->idx);
    return TERN_OK;
}

void drv_heap_remove(drv_heap *h, tern_driver_timer *t)
{
    size_t i = t->idx;
    if (i == DRV_NOT_ARMED) return;
    t->idx = DRV_NOT_ARMED;
    tern_driver_timer *last = h->items[--h->n];
    if (i == h->n) return;
    place(h, i, last);
    if (i > 0 && before(last, h->items[(i - 1) / 2])) sift_up(h, i);
    else sift_down(h, i);
}

tern_driver_timer *drv_heap_top(const drv_heap *h)
{
    return h->n ? h->items[0] : NULL;
}

void drv_heap_free(drv_heap *h)
{
    for (size_t i = 0; i < h->n; i++) h->items[i]->idx = DRV_NOT_ARMED;
    free(h->items);
    h->items = NULL;
    h->n = h->cap = 0;
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
    t->idx = DRV_NOT_ARMED;
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
