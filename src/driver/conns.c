/*
 * The set of connections a driver knows to be alive, so tern_driver_shutdown() can close them
 * all: the core has no public iteration, so the driver wraps the endpoint's callbacks, adds a
 * handle at connect/accept/established and removes it at on_conn_free. An open-addressing hash
 * set of pointers with linear probing and backward-shift deletion (no tombstones), kept at most
 * half full; add, delete and lookup are O(1) on average.
 */
#include <stdlib.h>

#include "driver/driver_int.h"

static size_t slot_of(const drv_conns *s, const tern_conn *c)
{
    uintptr_t x = (uintptr_t)c;
    x ^= x >> 17;
    x *= (uintptr_t)0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return (size_t)x & (s->cap - 1);
}

static int grow(drv_conns *s)
{
    size_t cap = s->cap ? 2 * s->cap : 64;
    tern_conn **old = s->slots;
    size_t old_cap = s->cap;
    tern_conn **slots = calloc(cap, sizeof(*slots));
    if (slots == NULL) return TERN_ERR_NOMEM;
    s->slots = slots;
    s->cap = cap;
    s->n = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i]) drv_conns_add(s, old[i]);
    free(old);
    return TERN_OK;
}

int drv_conns_add(drv_conns *s, tern_conn *c)
{
    if (2 * (s->n + 1) > s->cap && grow(s) != TERN_OK) return TERN_ERR_NOMEM;
    size_t i = slot_of(s, c);
    while (s->slots[i]) {
        if (s->slots[i] == c) return TERN_OK;
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = c;
    s->n++;
    return TERN_OK;
}

void drv_conns_del(drv_conns *s, tern_conn *c)
{
    if (s->cap == 0) return;
    size_t mask = s->cap - 1, i = slot_of(s, c);
    while (s->slots[i] != c) {
        if (s->slots[i] == NULL) return;
        i = (i + 1) & mask;
    }
    s->slots[i] = NULL;
    s->n--;
    /* shift back the entries of the run that follows, so lookups never stop at the hole early */
    for (size_t j = (i + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        size_t home = slot_of(s, s->slots[j]);
        /* j's entry may move into hole i when its home is not cyclically within (i, j] */
        int in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            s->slots[i] = s->slots[j];
            s->slots[j] = NULL;
            i = j;
        }
    }
}

size_t drv_conns_list(const drv_conns *s, tern_conn **out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < s->cap && k < max; i++)
        if (s->slots[i]) out[k++] = s->slots[i];
    return k;
}

void drv_conns_free(drv_conns *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = s->n = 0;
}
