/*
 * The hash map of every layer: byte-string keys to non-NULL pointers, with a keyed hash
 * (SipHash through libsodium's crypto_shorthash, so peers cannot aim keys at one bucket).
 *
 * Two ways to hold keys:
 *   - copied into the map (tern__map_init, key_len fixed, at most TERN__MAP_KEY_MAX bytes): the
 *     core's connection-ID, reset-token and per-source tables, the driver's connection set;
 *   - kept in the record the value points to (tern__map_init_keyof, any length): the rendezvous
 *     server's peers, groups, services and calls and the relay's channels, where the record
 *     already holds its name and copying it would double the memory.
 *
 * Open addressing with linear probing; each slot keeps the full 64-bit hash, so a probe compares
 * keys only when hashes match, and deletion shifts the following entries back (no tombstones:
 * lookups stay short under churn). An empty map holds no memory: the first put allocates
 * TERN__MAP_MIN_CAP slots, the table doubles at 3/4 load, halves when under 1/8 full and is given
 * back when the last entry goes (which needs no allocation, so memory always returns to zero).
 * Nothing is allocated on lookup.
 */
#ifndef TERN_BASE_MAP_H
#define TERN_BASE_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"

#define TERN__MAP_KEY_MAX 32
#define TERN__MAP_MIN_CAP 16

/* Returns the key of a stored record and its length (maps made with tern__map_init_keyof). */
typedef const uint8_t *(*tern__map_keyof)(const void *rec, size_t *len);

/* One slot; a copied key follows it in the slot array (stride bytes per slot). */
typedef struct tern__map_slot {
    uint64_t hash;
    void *val; /* NULL: empty */
} tern__map_slot;

typedef struct tern__map {
    tern__alloc *alloc;
    uint8_t *slots;        /* cap slots of stride bytes; NULL while empty */
    size_t cap, n;         /* cap is 0 or a power of two; n <= 3/4 cap */
    size_t key_len;        /* copied keys: their length; 0 with keyof */
    size_t stride;
    tern__map_keyof keyof; /* NULL: keys are copied */
    uint8_t sip_key[16];
} tern__map;

/* A map that copies keys of key_len (1..TERN__MAP_KEY_MAX) bytes. TERN_ERR_INVALID_ARG.
 * Allocates nothing. */
int tern__map_init(tern__map *m, tern__alloc *a, size_t key_len, const uint8_t sip_key[16]);
/* A map of records that hold their own keys. It allocates nothing yet, so it returns TERN_OK. */
int tern__map_init_keyof(tern__map *m, tern__alloc *a, tern__map_keyof keyof,
                         const uint8_t sip_key[16]);
/* Bytes the next tern__map_put allocates (a larger slot array; the old one is given back after
 * it), 0 when it allocates nothing: for callers that check a memory budget before they insert. */
size_t tern__map_put_bytes(const tern__map *m);
/* Makes room for n entries at once (one allocation now, none by tern__map_put until there are
 * more than n; deletions give it back only as described above). TERN_ERR_NOMEM. */
int tern__map_reserve(tern__map *m, size_t n);
/* Empties the map and gives its slot array back; the map stays usable. */
void tern__map_free(tern__map *m);

/* Lookup by a key of len bytes; NULL when absent. */
void *tern__map_find(const tern__map *m, const uint8_t *key, size_t len);
/* Lookup in a map of copied keys. */
static inline void *tern__map_get(const tern__map *m, const uint8_t *key)
{
    return tern__map_find(m, key, m->key_len);
}
/* Inserts val (not NULL) under key; a keyof map takes the key from val (key is ignored, pass
 * NULL). TERN_ERR_LIMIT if the key is present already; TERN_ERR_NOMEM. */
int tern__map_put(tern__map *m, const uint8_t *key, void *val);
/* Removes key if it maps to val (keyof maps: val's own key; pass key NULL). */
void tern__map_del(tern__map *m, const uint8_t *key, const void *val);
/* The value slot of a copied key (to change a value in place, never to NULL), NULL when absent. */
void **tern__map_ref(tern__map *m, const uint8_t *key);
/* Iteration: the first value at or after *pos, which it moves past it; NULL at the end. Start
 * with *pos = 0; the map must not change during a walk. */
void *tern__map_next(const tern__map *m, size_t *pos);

#endif
