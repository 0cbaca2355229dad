/*
 * Internal data structures: keyed-hash map with linear probing, a binary min-heap of deadlines,
 * fixed-size per-source token buckets (memory does not grow with the number of sources), and a
 * sliding replay window of TERN__REPLAY_WINDOW packet numbers.
 */
#include "core/util.h"

#include <sodium.h>
#include <string.h>

#include "tern/errors.h"

void *tern__malloc(tern__alloc *a, size_t size)
{
    if (a->max != 0 && (size > a->max || a->current > a->max - size)) {
        a->refused++;
        return NULL;
    }
    void *p = a->mem.malloc(size, a->mem.user);
    if (p != NULL) {
        a->current += size;
        if (a->current > a->peak) a->peak = a->current;
    }
    return p;
}

void *tern__calloc(tern__alloc *a, size_t size)
{
    void *p = tern__malloc(a, size);
    if (p != NULL) memset(p, 0, size);
    return p;
}

void tern__free(tern__alloc *a, void *p, size_t size)
{
    if (p == NULL) return;
    a->current -= size;
    a->mem.free(p, size, a->mem.user);
}

/* ---------------------------------------------------------------- hash map */

static size_t map_hash(const tern__map *m, const uint8_t *key)
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, key, m->key_len, m->sip_key);
    uint64_t h;
    memcpy(&h, out, sizeof(h));
    return (size_t)h;
}

int tern__map_init(tern__map *m, tern__alloc *a, size_t key_len, const uint8_t sip_key[16])
{
    memset(m, 0, sizeof(*m));
    if (key_len == 0 || key_len > TERN__MAP_KEY_MAX) return TERN_ERR_INVALID_ARG;
    m->alloc = a;
    m->key_len = key_len;
    memcpy(m->sip_key, sip_key, 16);
    m->cap = 16;
    m->slots = tern__calloc(a, m->cap * sizeof(*m->slots));
    return m->slots ? TERN_OK : TERN_ERR_NOMEM;
}

void tern__map_free(tern__map *m)
{
    if (m->slots) tern__free(m->alloc, m->slots, m->cap * sizeof(*m->slots));
    m->slots = NULL;
}

static tern__map_slot *map_find(const tern__map *m, const uint8_t *key)
{
    size_t mask = m->cap - 1, i = map_hash(m, key) & mask;
    for (size_t n = 0; n < m->cap; n++, i = (i + 1) & mask) {
        tern__map_slot *s = &m->slots[i];
        if (s->state == 0) return NULL;
        if (s->state == 1 && memcmp(s->key, key, m->key_len) == 0) return s;
    }
    return NULL;
}

void *tern__map_get(const tern__map *m, const uint8_t *key)
{
    tern__map_slot *s = map_find(m, key);
    return s ? s->val : NULL;
}

static int map_resize(tern__map *m, size_t ncap)
{
    tern__map_slot *old = m->slots;
    size_t ocap = m->cap;
    tern__map_slot *ns = tern__calloc(m->alloc, ncap * sizeof(*ns));
    if (ns == NULL) return TERN_ERR_NOMEM;
    m->slots = ns;
    m->cap = ncap;
    m->used = 0;
    m->tombs = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].state != 1) continue;
        size_t mask = ncap - 1, j = map_hash(m, old[i].key) & mask;
        while (ns[j].state != 0) j = (j + 1) & mask;
        ns[j] = old[i];
        m->used++;
    }
    tern__free(m->alloc, old, ocap * sizeof(*old));
    return TERN_OK;
}

int tern__map_put(tern__map *m, const uint8_t *key, void *val)
{
    if (map_find(m, key) != NULL) return TERN_ERR_LIMIT;
    if ((m->used + m->tombs + 1) * 10 > m->cap * 7) {
        size_t ncap = (m->used + 1) * 10 > m->cap * 5 ? m->cap * 2 : m->cap;
        int rc = map_resize(m, ncap);
        if (rc != TERN_OK) return rc;
    }
    size_t mask = m->cap - 1, i = map_hash(m, key) & mask;
    while (m->slots[i].state == 1) i = (i + 1) & mask;
    if (m->slots[i].state == 2) m->tombs--;
    m->slots[i].state = 1;
    memcpy(m->slots[i].key, key, m->key_len);
    m->slots[i].val = val;
    m->used++;
    return TERN_OK;
}

void tern__map_del(tern__map *m, const uint8_t *key, const void *val)
{
    tern__map_slot *s = map_find(m, key);
    if (s == NULL || s->val != val) return;
    s->state = 2;
    s->val = NULL;
    m->used--;
    m->tombs++;
    if (m->cap > 16 && m->used * 8 < m->cap) (void)map_resize(m, m->cap / 2);
}

void **tern__map_ref(tern__map *m, const uint8_t *key)
{
    tern__map_slot *s = map_find(m, key);
    return s ? &s->val : NULL;
}

/* ---------------------------------------------------------------- heap */

int tern__heap_init(tern__heap *h, tern__alloc *a)
{
    memset(h, 0, sizeof(*h));
    h->alloc = a;
    h->items = tern__malloc(a, 64 * sizeof(*h->items));
    if (h->items == NULL) return TERN_ERR_NOMEM;
    h->cap = 64;
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
        if (h->cap > 64 && h->n < h->cap / 4) {
            /* shrink, so memory returns to baseline after a burst of connections */
            tern__heap_ent *ni = tern__malloc(h->alloc, (h->cap / 2) * sizeof(*ni));
            if (ni != NULL) {
                memcpy(ni, h->items, h->n * sizeof(*ni));
                tern__free(h->alloc, h->items, h->cap * sizeof(*h->items));
                h->items = ni;
                h->cap /= 2;
            }
        }
        it->idx = SIZE_MAX;
        it->deadline = TERN_TIME_NEVER;
        return TERN_OK;
    }
    if (it->idx == SIZE_MAX) {
        if (h->n == h->cap) {
            size_t ncap = h->cap ? h->cap * 2 : 64;
            tern__heap_ent *ni = tern__malloc(h->alloc, ncap * sizeof(*ni));
            if (ni == NULL) return TERN_ERR_NOMEM;
            if (h->n) memcpy(ni, h->items, h->n * sizeof(*ni));
            if (h->items) tern__free(h->alloc, h->items, h->cap * sizeof(*h->items));
            h->items = ni;
            h->cap = ncap;
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

tern__heap_item *tern__heap_top(const tern__heap *h)
{
    return h->n ? h->items[0].it : NULL;
}

/* ---------------------------------------------------------------- rate limiter */

int tern__rl_init(tern__ratelimit *rl, tern__alloc *a, uint32_t rate, uint32_t burst,
                  const uint8_t key[16])
{
    rl->b = tern__calloc(a, TERN__RL_BUCKETS * sizeof(*rl->b));
    if (rl->b == NULL) return TERN_ERR_NOMEM;
    rl->rate = rate;
    rl->burst = burst ? burst : 1;
    memcpy(rl->key, key, 16);
    return TERN_OK;
}

void tern__rl_free(tern__ratelimit *rl, tern__alloc *a)
{
    if (rl->b) tern__free(a, rl->b, TERN__RL_BUCKETS * sizeof(*rl->b));
    rl->b = NULL;
}

int tern__rl_take(tern__ratelimit *rl, const tern_addr *src, uint64_t now)
{
    if (rl->b == NULL) return TERN_ERR_RATE_LIMITED; /* never initialised: nothing allowed */
    uint8_t in[17], out[crypto_shorthash_BYTES];
    size_t n = src->family == TERN_AF_INET6 ? 8 : 4; /* an IPv6 /64 counts as one source */
    in[0] = src->family;
    memcpy(in + 1, src->ip, n);
    crypto_shorthash(out, in, n + 1, rl->key);
    uint64_t tag;
    memcpy(&tag, out, sizeof(tag));
    tern__rl_bucket *b = &rl->b[tag & (TERN__RL_BUCKETS - 1)];
    const uint64_t full = (uint64_t)rl->burst * 1000000u;
    if (b->tag != tag || b->last_ns == 0) {
        b->tag = tag;
        b->micro_tokens = full;
    } else if (now > b->last_ns) {
        uint64_t elapsed = now - b->last_ns;
        if (elapsed > 1000ull * TERN_NS_PER_S) elapsed = 1000ull * TERN_NS_PER_S;
        uint64_t add = elapsed / 1000u * rl->rate; /* micro-tokens: ns * rate / 1e3 */
        b->micro_tokens = b->micro_tokens + add > full ? full : b->micro_tokens + add;
    }
    b->last_ns = now ? now : 1;
    if (b->micro_tokens < 1000000u) return TERN_ERR_RATE_LIMITED;
    b->micro_tokens -= 1000000u;
    return TERN_OK;
}

/* ---------------------------------------------------------------- replay window */

int tern__replay_check(const tern__replay *r, uint64_t pn)
{
    if (!r->have || pn > r->largest) return TERN_OK;
    uint64_t diff = r->largest - pn;
    if (diff >= TERN__REPLAY_WINDOW) return TERN_ERR_REPLAY;
    uint64_t bit = pn % TERN__REPLAY_WINDOW;
    return (r->bits[bit / 64] >> (bit % 64)) & 1 ? TERN_ERR_REPLAY : TERN_OK;
}

void tern__replay_mark(tern__replay *r, uint64_t pn)
{
    if (!r->have) {
        memset(r->bits, 0, sizeof(r->bits));
        r->have = 1;
        r->largest = pn;
    } else if (pn > r->largest) {
        uint64_t shift = pn - r->largest;
        if (shift >= TERN__REPLAY_WINDOW) {
            memset(r->bits, 0, sizeof(r->bits));
        } else {
            for (uint64_t q = r->largest + 1; q <= pn; q++) {
                uint64_t b = q % TERN__REPLAY_WINDOW;
                r->bits[b / 64] &= ~(1ull << (b % 64));
            }
        }
        r->largest = pn;
    }
    uint64_t bit = pn % TERN__REPLAY_WINDOW;
    r->bits[bit / 64] |= 1ull << (bit % 64);
}
