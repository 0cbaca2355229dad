/*
 * Rate limits (base/rate.h): the limit's parameters and the per-source table. The bucket's own
 * arithmetic is inline in rate.h, for the relay's forwarding path.
 */
#include "base/rate.h"

#include <string.h>

#include "tern/errors.h"

void tern__rate_set(tern__rate *r, uint64_t per_s, uint64_t burst)
{
    if (burst == 0) burst = 1;
    if (burst > TERN__RATE_MAX_BURST) burst = TERN__RATE_MAX_BURST;
    r->per_s = per_s;
    r->cap = burst * TERN_NS_PER_S;
}

void tern__src_key(const tern_addr *a, uint8_t key[TERN__SRC_KEY_LEN])
{
    memset(key, 0, TERN__SRC_KEY_LEN);
    key[0] = a->family;
    memcpy(key + 1, a->ip, a->family == TERN_AF_INET6 ? 8 : 4); /* an IPv6 /64 is one source */
}

static const uint8_t *entry_key(const void *rec, size_t *len)
{
    *len = TERN__SRC_KEY_LEN;
    return ((const tern__src_entry *)rec)->key;
}

static size_t round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* The hook of tern__srclim_init_in: hands out the caller's buffer in order; nothing is given
 * back one by one (tern__srclim_free starts the buffer over). */
static void *buf_malloc(size_t size, void *user)
{
    tern__srclim *l = user;
    size = round16(size);
    if (size > l->buf_len - l->buf_used) return NULL;
    void *p = l->buf + l->buf_used;
    l->buf_used += size;
    return p;
}

static void buf_free(void *p, size_t size, void *user)
{
    (void)p, (void)size, (void)user;
}

size_t tern__srclim_buf_size(uint32_t max)
{
    if (max < 2) max = 2;
    size_t cap = TERN__MAP_MIN_CAP; /* as tern__map_reserve sizes it */
    while ((size_t)max * 4 > cap * 3) cap *= 2;
    return round16((size_t)max * sizeof(tern__src_entry)) + round16(cap * sizeof(tern__map_slot));
}

static int init(tern__srclim *l, tern__alloc *a, uint64_t per_s, uint64_t burst, uint32_t max,
                const uint8_t sip_key[16]);

int tern__srclim_init_in(tern__srclim *l, void *buf, size_t len, uint64_t per_s, uint64_t burst,
                         uint32_t max, const uint8_t sip_key[16])
{
    memset(l, 0, sizeof(*l));
    if (buf == NULL) return TERN_ERR_INVALID_ARG;
    if (len < tern__srclim_buf_size(max)) return TERN_ERR_NOMEM;
    l->own.mem = (tern_mem){.malloc = buf_malloc, .free = buf_free, .user = l};
    l->buf = buf;
    l->buf_len = len;
    int rc = init(l, &l->own, per_s, burst, max, sip_key);
    return rc == TERN_OK ? tern__srclim_reserve(l) : rc;
}

int tern__srclim_init(tern__srclim *l, tern__alloc *a, uint64_t per_s, uint64_t burst,
                      uint32_t max, const uint8_t sip_key[16])
{
    memset(l, 0, sizeof(*l));
    return init(l, a, per_s, burst, max, sip_key);
}

static int init(tern__srclim *l, tern__alloc *a, uint64_t per_s, uint64_t burst, uint32_t max,
                const uint8_t sip_key[16])
{
    if (a == NULL || max == 0) return TERN_ERR_INVALID_ARG;
    if (max < 2) max = 2; /* so that taking an entry over never empties the map (see free) */
    tern__rate_set(&l->rate, per_s, burst);
    l->alloc = a;
    l->max = max;
    tern__map_init_keyof(&l->map, a, entry_key, sip_key);
    return TERN_OK;
}

int tern__srclim_reserve(tern__srclim *l)
{
    if (l->alloc == NULL) return TERN_ERR_STATE;          /* never initialised, or freed */
    if (l->pool != NULL || l->rate.per_s == 0) return TERN_OK; /* made, or no limit: no table */
    l->pool = tern__calloc(l->alloc, (size_t)l->max * sizeof(*l->pool));
    if (l->pool == NULL || tern__map_reserve(&l->map, l->max) != TERN_OK) {
        tern__map_free(&l->map);
        if (l->pool) tern__free(l->alloc, l->pool, (size_t)l->max * sizeof(*l->pool));
        l->pool = NULL;
        return TERN_ERR_NOMEM;
    }
    return TERN_OK;
}

void tern__srclim_free(tern__srclim *l)
{
    if (l->alloc == NULL) return; /* never initialised, or freed already */
    tern__map_free(&l->map);
    if (l->pool) tern__free(l->alloc, l->pool, (size_t)l->max * sizeof(*l->pool));
    l->pool = NULL;
    l->n = 0;
    l->buf_used = 0;
    l->alloc = NULL; /* takes are refused from now on */
}

/* The entry a new source gets when every entry is in use (see rate.h). */
static tern__src_entry *take_over(tern__srclim *l, uint64_t now)
{
    tern__src_entry *e = &l->pool[l->hand];
    for (uint32_t i = 0, h = l->hand; i < TERN__SRC_SCAN && i < l->max; i++) {
        tern__src_entry *c = &l->pool[h];
        if (tern__bucket_debt(&l->rate, &c->b, now) == 0) {
            e = c;
            break;
        }
        h = h + 1 == l->max ? 0 : h + 1;
    }
    l->hand = (uint32_t)(e - l->pool) + 1 == l->max ? 0 : (uint32_t)(e - l->pool) + 1;
    tern__map_del(&l->map, NULL, e); /* n stays >= 1: the map keeps its reserved slots */
    return e;
}

int tern__srclim_take(tern__srclim *l, const tern_addr *src, uint64_t now)
{
    if (l->alloc == NULL) return 0; /* never initialised, or freed: nothing allowed */
    if (l->rate.per_s == 0) return 1;
    if (l->pool == NULL && tern__srclim_reserve(l) != TERN_OK) return 0; /* no memory: refused */
    uint8_t key[TERN__SRC_KEY_LEN];
    tern__src_key(src, key);
    tern__src_entry *e = tern__map_find(&l->map, key, sizeof(key));
    if (e == NULL) {
        e = l->n < l->max ? &l->pool[l->n++] : take_over(l, now);
        memset(e, 0, sizeof(*e)); /* a full bucket */
        memcpy(e->key, key, sizeof(key));
        if (tern__map_put(&l->map, NULL, e) != TERN_OK) return 0; /* cannot happen: reserved */
    }
    return tern__bucket_take(&l->rate, &e->b, now, 1);
}
