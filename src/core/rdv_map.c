/*
 * Rendezvous containers (rdv_map.h). The map is open addressing with linear probing over slots
 * of (hash, record); the full 64-bit keyed hash is kept in the slot so a probe compares keys only
 * when hashes match, and deletion shifts the following entries back (no tombstones, so lookups
 * stay short under churn). It doubles at 3/4 load and never shrinks below its peak. The heap is
 * a binary min-heap of pointers to items embedded in their records, each knowing its index, so
 * removal of any item is O(log n).
 */
#include <sodium.h>
#include <string.h>

#include "core/rdv_map.h"

static uint64_t hash_key(const tern__rdv_map *m, const uint8_t *key, size_t len)
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, key, len, m->sip_key);
    uint64_t h;
    memcpy(&h, out, sizeof(h));
    return h;
}

void tern__rdv_map_init(tern__rdv_map *m, const tern_mem *mem, tern__rdv_keyof keyof,
                        const uint8_t sip_key[16])
{
    memset(m, 0, sizeof(*m));
    m->mem = mem;
    m->keyof = keyof;
    memcpy(m->sip_key, sip_key, 16);
}

void tern__rdv_map_free(tern__rdv_map *m)
{
    if (m->slots) m->mem->free(m->slots, m->cap * sizeof(*m->slots), m->mem->user);
    m->slots = NULL;
    m->cap = m->n = 0;
}

static int key_is(const tern__rdv_map *m, const void *rec, const uint8_t *key, size_t len)
{
    size_t l;
    const uint8_t *k = m->keyof(rec, &l);
    return l == len && memcmp(k, key, len) == 0;
}

void *tern__rdv_map_get(const tern__rdv_map *m, const uint8_t *key, size_t len)
{
    if (m->n == 0) return NULL;
    uint64_t h = hash_key(m, key, len);
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const tern__rdv_slot *s = &m->slots[i];
        if (s->rec == NULL) return NULL;
        if (s->hash == h && key_is(m, s->rec, key, len)) return s->rec;
    }
}

static void place(tern__rdv_slot *slots, size_t cap, uint64_t h, void *rec)
{
    size_t mask = cap - 1;
    size_t i = h & mask;
    while (slots[i].rec != NULL) i = (i + 1) & mask;
    slots[i].hash = h;
    slots[i].rec = rec;
}

/* Moves every record into a new array of ncap slots. TERN_ERR_NOMEM leaves the map as it was. */
static int resize(tern__rdv_map *m, size_t ncap)
{
    tern__rdv_slot *ns = m->mem->malloc(ncap * sizeof(*ns), m->mem->user);
    if (ns == NULL) return TERN_ERR_NOMEM;
    memset(ns, 0, ncap * sizeof(*ns));
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].rec) place(ns, ncap, m->slots[i].hash, m->slots[i].rec);
    if (m->slots) m->mem->free(m->slots, m->cap * sizeof(*m->slots), m->mem->user);
    m->slots = ns;
    m->cap = ncap;
    return TERN_OK;
}

int tern__rdv_map_put(tern__rdv_map *m, void *rec)
{
    if ((m->n + 1) * 4 > m->cap * 3 && resize(m, m->cap ? m->cap * 2 : 16) != TERN_OK)
        return TERN_ERR_NOMEM;
    size_t len;
    const uint8_t *k = m->keyof(rec, &len);
    place(m->slots, m->cap, hash_key(m, k, len), rec);
    m->n++;
    return TERN_OK;
}

void tern__rdv_map_del(tern__rdv_map *m, const void *rec)
{
    if (m->n == 0) return;
    size_t len;
    const uint8_t *k = m->keyof(rec, &len);
    uint64_t h = hash_key(m, k, len);
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    for (;; i = (i + 1) & mask) {
        if (m->slots[i].rec == NULL) return;
        if (m->slots[i].rec == rec) break;
    }
    /* backward-shift deletion: move later entries of the cluster into the hole when their home
     * slot is not between the hole and themselves */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->slots[j].rec != NULL; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        int movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].rec = NULL;
    m->slots[hole].hash = 0;
    m->n--;
    /* memory comes back as records go: an empty map frees its array, one under 1/8 full halves
     * it (a failed allocation just keeps the larger array) */
    if (m->n == 0) tern__rdv_map_free(m);
    else if (m->cap > 16 && m->n * 8 < m->cap) (void)resize(m, m->cap / 2);
}

/* ---------------------------------------------------------------- heap */

void tern__rdv_heap_init(tern__rdv_heap *h, const tern_mem *mem)
{
    memset(h, 0, sizeof(*h));
    h->mem = mem;
}

void tern__rdv_heap_free(tern__rdv_heap *h)
{
    if (h->items) h->mem->free(h->items, h->cap * sizeof(*h->items), h->mem->user);
    h->items = NULL;
    h->n = h->cap = 0;
}

static void hswap(tern__rdv_heap *h, size_t i, size_t j)
{
    tern__rdv_hitem *t = h->items[i];
    h->items[i] = h->items[j];
    h->items[j] = t;
    h->items[i]->idx = i;
    h->items[j]->idx = j;
}

static void up(tern__rdv_heap *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->items[p]->deadline <= h->items[i]->deadline) break;
        hswap(h, i, p);
        i = p;
    }
}

static void down(tern__rdv_heap *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && h->items[l]->deadline < h->items[m]->deadline) m = l;
        if (r < h->n && h->items[r]->deadline < h->items[m]->deadline) m = r;
        if (m == i) return;
        hswap(h, i, m);
        i = m;
    }
}

int tern__rdv_heap_push(tern__rdv_heap *h, tern__rdv_hitem *it)
{
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 16;
        tern__rdv_hitem **ni = h->mem->malloc(ncap * sizeof(*ni), h->mem->user);
        if (ni == NULL) return TERN_ERR_NOMEM;
        if (h->n) memcpy(ni, h->items, h->n * sizeof(*ni));
        if (h->items) h->mem->free(h->items, h->cap * sizeof(*h->items), h->mem->user);
        h->items = ni;
        h->cap = ncap;
    }
    it->idx = h->n;
    h->items[h->n++] = it;
    up(h, it->idx);
    return TERN_OK;
}

void tern__rdv_heap_remove(tern__rdv_heap *h, tern__rdv_hitem *it)
{
    size_t i = it->idx;
    if (i >= h->n || h->items[i] != it) return;
    h->n--;
    if (i != h->n) {
        h->items[i] = h->items[h->n];
        h->items[i]->idx = i;
        down(h, i);
        up(h, i);
    }
    it->idx = SIZE_MAX;
}

tern__rdv_hitem *tern__rdv_heap_top(const tern__rdv_heap *h)
{
    return h->n ? h->items[0] : NULL;
}
