/* The hash map (map.h): linear probing over (hash, value[, key]) slots, backward-shift deletion. */
#include "base/map.h"

#include <sodium.h>
#include <string.h>

static tern__map_slot *slot_at(const tern__map *m, size_t i)
{
    return (tern__map_slot *)(void *)(m->slots + i * m->stride);
}

static const uint8_t *slot_key(const tern__map *m, const tern__map_slot *s, size_t *len)
{
    if (m->keyof) return m->keyof(s->val, len);
    *len = m->key_len;
    return (const uint8_t *)(s + 1);
}

static uint64_t hash_key(const tern__map *m, const uint8_t *key, size_t len)
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, key, len, m->sip_key);
    uint64_t h;
    memcpy(&h, out, sizeof(h));
    return h;
}

/* Allocates ncap empty slots and moves every entry into them. TERN_ERR_NOMEM leaves the map as
 * it was. */
static int resize(tern__map *m, size_t ncap)
{
    uint8_t *ns = tern__calloc(m->alloc, ncap * m->stride);
    if (ns == NULL) return TERN_ERR_NOMEM;
    uint8_t *old = m->slots;
    size_t ocap = m->cap;
    m->slots = ns;
    m->cap = ncap;
    size_t mask = ncap - 1;
    for (size_t i = 0; i < ocap; i++) {
        const tern__map_slot *s = (const tern__map_slot *)(void *)(old + i * m->stride);
        if (s->val == NULL) continue;
        size_t j = s->hash & mask;
        while (slot_at(m, j)->val != NULL) j = (j + 1) & mask;
        memcpy(slot_at(m, j), s, m->stride);
    }
    if (old) tern__free(m->alloc, old, ocap * m->stride);
    return TERN_OK;
}

static void init(tern__map *m, tern__alloc *a, size_t key_len, tern__map_keyof keyof,
                 const uint8_t sip_key[16])
{
    memset(m, 0, sizeof(*m));
    m->alloc = a;
    m->key_len = key_len;
    m->keyof = keyof;
    m->stride = sizeof(tern__map_slot) + ((key_len + 7) & ~(size_t)7);
    memcpy(m->sip_key, sip_key, 16);
}

int tern__map_init(tern__map *m, tern__alloc *a, size_t key_len, const uint8_t sip_key[16])
{
    if (key_len == 0 || key_len > TERN__MAP_KEY_MAX) {
        memset(m, 0, sizeof(*m));
        return TERN_ERR_INVALID_ARG;
    }
    init(m, a, key_len, NULL, sip_key);
    return TERN_OK;
}

int tern__map_init_keyof(tern__map *m, tern__alloc *a, tern__map_keyof keyof,
                         const uint8_t sip_key[16])
{
    init(m, a, 0, keyof, sip_key);
    return TERN_OK;
}

size_t tern__map_put_bytes(const tern__map *m)
{
    if ((m->n + 1) * 4 <= m->cap * 3) return 0;
    return (m->cap ? m->cap * 2 : TERN__MAP_MIN_CAP) * m->stride;
}

int tern__map_reserve(tern__map *m, size_t n)
{
    size_t cap = TERN__MAP_MIN_CAP;
    while (n * 4 > cap * 3) cap *= 2; /* the load tern__map_put keeps */
    return cap > m->cap ? resize(m, cap) : TERN_OK;
}

void tern__map_free(tern__map *m)
{
    if (m->slots) tern__free(m->alloc, m->slots, m->cap * m->stride);
    m->slots = NULL;
    m->cap = m->n = 0;
}

/* The index of key's slot, or of the empty slot that ends its probe sequence (*found 0). */
static size_t probe(const tern__map *m, const uint8_t *key, size_t len, uint64_t h, int *found)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const tern__map_slot *s = slot_at(m, i);
        *found = 0;
        if (s->val == NULL) return i;
        if (s->hash != h) continue;
        size_t kl;
        const uint8_t *k = slot_key(m, s, &kl);
        if (kl == len && memcmp(k, key, len) == 0) {
            *found = 1;
            return i;
        }
    }
}

void *tern__map_find(const tern__map *m, const uint8_t *key, size_t len)
{
    if (m->n == 0) return NULL;
    int found;
    size_t i = probe(m, key, len, hash_key(m, key, len), &found);
    return found ? slot_at(m, i)->val : NULL;
}

int tern__map_put(tern__map *m, const uint8_t *key, void *val)
{
    size_t len = m->key_len;
    if (m->keyof) key = m->keyof(val, &len);
    if ((m->n + 1) * 4 > m->cap * 3) {
        int rc = resize(m, m->cap ? m->cap * 2 : TERN__MAP_MIN_CAP);
        if (rc != TERN_OK) return rc;
    }
    uint64_t h = hash_key(m, key, len);
    int found;
    size_t i = probe(m, key, len, h, &found);
    if (found) return TERN_ERR_LIMIT;
    tern__map_slot *s = slot_at(m, i);
    s->hash = h;
    s->val = val;
    if (!m->keyof) memcpy(s + 1, key, len);
    m->n++;
    return TERN_OK;
}

void tern__map_del(tern__map *m, const uint8_t *key, const void *val)
{
    if (m->n == 0 || val == NULL) return;
    size_t len = m->key_len;
    if (m->keyof) key = m->keyof(val, &len);
    int found;
    size_t i = probe(m, key, len, hash_key(m, key, len), &found);
    if (!found || slot_at(m, i)->val != val) return;
    /* backward-shift deletion: move later entries of the cluster into the hole when their home
     * slot is not cyclically within (hole, j] */
    size_t mask = m->cap - 1, hole = i;
    for (size_t j = (i + 1) & mask; slot_at(m, j)->val != NULL; j = (j + 1) & mask) {
        size_t home = slot_at(m, j)->hash & mask;
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            memcpy(slot_at(m, hole), slot_at(m, j), m->stride);
            hole = j;
        }
    }
    memset(slot_at(m, hole), 0, m->stride);
    m->n--;
    /* memory comes back as entries go (a failed allocation just keeps the larger array; the
     * last entry leaving gives it all back) */
    if (m->n == 0) tern__map_free(m);
    else if (m->cap > TERN__MAP_MIN_CAP && m->n * 8 < m->cap) (void)resize(m, m->cap / 2);
}

void **tern__map_ref(tern__map *m, const uint8_t *key)
{
    if (m->n == 0) return NULL;
    int found;
    size_t i = probe(m, key, m->key_len, hash_key(m, key, m->key_len), &found);
    return found ? &slot_at(m, i)->val : NULL;
}

void *tern__map_next(const tern__map *m, size_t *pos)
{
    for (; *pos < m->cap; (*pos)++) {
        void *v = slot_at(m, *pos)->val;
        if (v != NULL) {
            (*pos)++;
            return v;
        }
    }
    return NULL;
}
