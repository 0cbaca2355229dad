/*
 * White-box tests of src/base, the mechanisms every layer shares: the counting allocator, the
 * hash map (copied keys and keys kept in records, backward-shift deletion under churn checked
 * against a plain array, iteration, memory back to the starting figure), the indexed min-heap
 * (order, moves, removals, memory; random operations against a plain array at every step), a
 * failed allocation while growing leaving the map and the heap intact, and the relay header's
 * encoder and decoder.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/alloc.h"
#include "base/heap.h"
#include "base/map.h"
#include "support/tt.h"

static void test_alloc_counts_and_limits(void)
{
    tt_mem m;
    tt_mem_init(&m);
    tern__alloc a = {.mem = m.mem, .max = 1000};
    void *p = tern__malloc(&a, 600);
    TT_REQUIRE(p != NULL);
    TT_CHECK_EQ_U64(a.current, 600);
    TT_CHECK(tern__malloc(&a, 401) == NULL); /* past max: refused, counted, hook not called */
    TT_CHECK_EQ_U64(a.refused, 1);
    TT_CHECK_EQ_U64(m.calls, 1);
    uint8_t *q = tern__calloc(&a, 400);
    TT_REQUIRE(q != NULL);
    for (int i = 0; i < 400; i++) TT_CHECK(q[i] == 0);
    TT_CHECK_EQ_U64(a.peak, 1000);
    tern__free(&a, p, 600);
    tern__free(&a, q, 400);
    tern__free(&a, NULL, 0);
    TT_CHECK_EQ_U64(a.current, 0);
    TT_CHECK_EQ_U64(a.peak, 1000);
    TT_CHECK_EQ_U64(tern__mem_charge(1), 32);
    TT_CHECK_EQ_U64(tern__mem_charge(100), 112);
    tt_mem_check_clean(&m, "alloc");
}

/* A record that holds its own key, of any length (like the rendezvous server's). */
typedef struct rec {
    uint8_t len;
    uint8_t key[40];
    int present;
} rec;

static const uint8_t *rec_key(const void *r, size_t *len)
{
    *len = ((const rec *)r)->len;
    return ((const rec *)r)->key;
}

/* Random inserts and deletes, every lookup checked against the records' own flags; few distinct
 * hash values' worth of slots, so clusters form and backward shifts happen often. */
static void test_map_keyof_churn(void)
{
    tt_mem m;
    tt_mem_init(&m);
    tern__alloc a = {.mem = m.mem};
    tt_rng rng;
    tt_rng_seed(&rng, tt_seed());
    uint8_t k[16] = {7};
    tern__map map;
    TT_REQUIRE(tern__map_init_keyof(&map, &a, rec_key, k) == TERN_OK);
    const uint64_t base = a.current;
    static rec recs[3000];
    for (size_t i = 0; i < 3000; i++) {
        /* lengths 1..40 (8 at least when i needs it), so keys are unique and differ in length */
        recs[i].len = (uint8_t)(1 + i % 40);
        if (recs[i].len < sizeof(i) && i >> (8 * recs[i].len)) recs[i].len = sizeof(i);
        memset(recs[i].key, 0, sizeof(recs[i].key));
        memcpy(recs[i].key, &i, sizeof(i) < recs[i].len ? sizeof(i) : recs[i].len);
        recs[i].present = 0;
    }
    size_t n = 0;
    for (int step = 0; step < 60000; step++) {
        rec *r = &recs[tt_rng_below(&rng, 3000)];
        if (tt_rng_chance(&rng, step < 30000 ? 0.6 : 0.3)) {
            int rc = tern__map_put(&map, NULL, r);
            TT_CHECK_EQ_INT(rc, r->present ? TERN_ERR_LIMIT : TERN_OK);
            if (!r->present) n++;
            r->present = 1;
        } else {
            tern__map_del(&map, NULL, r);
            if (r->present) n--;
            r->present = 0;
        }
        if (step % 1000 == 0) {
            for (size_t i = 0; i < 3000; i++) {
                void *got = tern__map_find(&map, recs[i].key, recs[i].len);
                TT_CHECK(got == (recs[i].present ? &recs[i] : NULL));
            }
            TT_CHECK_EQ_U64(map.n, n);
            if (tt_case_failures()) return;
        }
    }
    /* the walk sees every record once */
    size_t pos = 0, seen = 0;
    for (rec *r; (r = tern__map_next(&map, &pos)) != NULL; seen++) TT_CHECK(r->present);
    TT_CHECK_EQ_U64(seen, n);
    /* emptied, the table is back at its starting size */
    for (size_t i = 0; i < 3000; i++) tern__map_del(&map, NULL, &recs[i]);
    TT_CHECK_EQ_U64(map.n, 0);
    TT_CHECK_EQ_U64(a.current, base);
    /* after tern__map_free a put starts a new table */
    tern__map_free(&map);
    TT_CHECK_EQ_INT(tern__map_put(&map, NULL, &recs[0]), TERN_OK);
    TT_CHECK(tern__map_find(&map, recs[0].key, recs[0].len) == &recs[0]);
    tern__map_free(&map);
    tt_mem_check_clean(&m, "keyof map");
}

static void test_map_copied_keys(void)
{
    tt_mem m;
    tt_mem_init(&m);
    tern__alloc a = {.mem = m.mem};
    uint8_t k[16] = {3};
    tern__map map;
    TT_CHECK_EQ_INT(tern__map_init(&map, &a, 0, k), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern__map_init(&map, &a, TERN__MAP_KEY_MAX + 1, k), TERN_ERR_INVALID_ARG);
    TT_REQUIRE(tern__map_init(&map, &a, 5, k) == TERN_OK); /* odd length: slots padded */
    static int vals[2000];
    uint8_t key[5] = {0};
    for (int i = 0; i < 2000; i++) {
        memcpy(key, &i, 4);
        TT_CHECK_EQ_INT(tern__map_put(&map, key, &vals[i]), TERN_OK);
    }
    memcpy(key, &(int){7}, 4);
    TT_CHECK_EQ_INT(tern__map_put(&map, key, &vals[8]), TERN_ERR_LIMIT); /* present already */
    TT_CHECK_EQ_U64(map.n, 2000);
    /* the map holds its own copy: the caller's buffer may change */
    memset(key, 0xff, sizeof(key));
    for (int i = 0; i < 2000; i++) {
        memcpy(key, &i, 4);
        key[4] = 0;
        TT_CHECK(tern__map_get(&map, key) == &vals[i]);
    }
    /* del only removes the key when it maps to the value given */
    memset(key, 0, sizeof(key));
    tern__map_del(&map, key, &vals[1]);
    TT_CHECK(tern__map_get(&map, key) == &vals[0]);
    /* values change in place through ref */
    void **v = tern__map_ref(&map, key);
    TT_REQUIRE(v != NULL);
    *v = &vals[1999];
    TT_CHECK(tern__map_get(&map, key) == &vals[1999]);
    key[0] = 0xfe, key[4] = 1;
    TT_CHECK(tern__map_ref(&map, key) == NULL);
    tern__map_free(&map);
    tt_mem_check_clean(&m, "copied-key map");
}

typedef struct owner {
    int tag;
    tern__heap_item it;
} owner;

static void test_heap_order_moves_memory(void)
{
    tt_mem m;
    tt_mem_init(&m);
    tern__alloc a = {.mem = m.mem};
    tt_rng rng;
    tt_rng_seed(&rng, tt_seed() + 1);
    tern__heap h;
    TT_REQUIRE(tern__heap_init(&h, &a) == TERN_OK);
    const uint64_t base = a.current;
    static owner o[5000];
    for (int i = 0; i < 5000; i++) {
        o[i].tag = i;
        o[i].it = TERN__HEAP_ITEM_INIT;
        TT_CHECK_EQ_INT(tern__heap_set(&h, &o[i].it, 1 + tt_rng_below(&rng, 1000000)), TERN_OK);
    }
    /* moves both ways, removals of any item, a removal of an absent item */
    for (int i = 0; i < 5000; i += 3) tern__heap_set(&h, &o[i].it, 1 + tt_rng_below(&rng, 1000000));
    for (int i = 0; i < 5000; i += 5) tern__heap_remove(&h, &o[i].it);
    tern__heap_remove(&h, &o[0].it);
    TT_CHECK(o[0].it.idx == SIZE_MAX && o[0].it.deadline == TERN_TIME_NEVER);
    /* every index is where the heap says */
    for (size_t i = 0; i < h.n; i++) TT_CHECK(h.items[i].it->idx == i);
    size_t expect = 5000 - 1000;
    TT_CHECK_EQ_U64(h.n, expect);
    uint64_t last = 0;
    size_t popped = 0;
    for (tern__heap_item *it; (it = tern__heap_top(&h)) != NULL; popped++) {
        TT_CHECK(it->deadline >= last);
        last = it->deadline;
        owner *ow = (owner *)(void *)((uint8_t *)it - offsetof(owner, it));
        TT_CHECK(ow->tag % 5 != 0);
        tern__heap_remove(&h, it);
    }
    TT_CHECK_EQ_U64(popped, expect);
    TT_CHECK_EQ_U64(a.current, base); /* shrunk back to the starting array */
    tern__heap_free(&h);
    /* after tern__heap_free a set starts a new array */
    o[1].it = TERN__HEAP_ITEM_INIT;
    TT_CHECK_EQ_INT(tern__heap_set(&h, &o[1].it, 5), TERN_OK);
    TT_CHECK(tern__heap_top(&h) == &o[1].it);
    tern__heap_free(&h);
    tt_mem_check_clean(&m, "heap");
}

/* Random inserts, moves, removals and pops, checked at every step against a plain array of
 * deadlines: the top is the earliest, every index is where the heap says, the count matches. */
static void test_heap_against_reference(void)
{
    tt_mem m;
    tt_mem_init(&m);
    tern__alloc a = {.mem = m.mem};
    tt_rng rng;
    tt_rng_seed(&rng, tt_seed() + 2);
    tern__heap h;
    TT_REQUIRE(tern__heap_init(&h, &a) == TERN_OK);
    enum { N = 300 };
    static owner o[N];
    uint64_t ref[N]; /* TERN_TIME_NEVER: not in the heap */
    for (int i = 0; i < N; i++) {
        o[i].tag = i;
        o[i].it = TERN__HEAP_ITEM_INIT;
        ref[i] = TERN_TIME_NEVER;
    }
    for (int step = 0; step < 20000; step++) {
        int i = (int)tt_rng_below(&rng, N);
        uint64_t r = tt_rng_below(&rng, 10);
        if (r < 6) {
            /* insert or move; few distinct deadlines, so ties are common */
            uint64_t d = 1 + tt_rng_below(&rng, 50);
            TT_REQUIRE(tern__heap_set(&h, &o[i].it, d) == TERN_OK);
            ref[i] = d;
        } else if (r < 8) {
            tern__heap_remove(&h, &o[i].it); /* present or not */
            ref[i] = TERN_TIME_NEVER;
        } else if (h.n > 0) {
            tern__heap_item *top = tern__heap_top(&h);
            owner *ow = (owner *)(void *)((uint8_t *)top - offsetof(owner, it));
            tern__heap_remove(&h, top);
            ref[ow->tag] = TERN_TIME_NEVER;
        }
        uint64_t min = TERN_TIME_NEVER;
        size_t n = 0;
        for (int k = 0; k < N; k++) {
            if (ref[k] == TERN_TIME_NEVER) {
                TT_CHECK(o[k].it.idx == SIZE_MAX);
                continue;
            }
            n++;
            if (ref[k] < min) min = ref[k];
            TT_CHECK(o[k].it.deadline == ref[k]);
            TT_CHECK(o[k].it.idx < h.n && h.items[o[k].it.idx].it == &o[k].it);
        }
        TT_REQUIRE_MSG(h.n == n, "step %d: %zu items, %zu expected", step, h.n, n);
        if (n) TT_REQUIRE_MSG(tern__heap_top(&h)->deadline == min, "step %d: top is not the min", step);
        else TT_REQUIRE(tern__heap_top(&h) == NULL);
        if (tt_case_failures()) break;
    }
    tern__heap_free(&h);
    tt_mem_check_clean(&m, "heap against reference");
}

/* A failed allocation while growing leaves the map and the heap as they were. */
static void test_growth_failure_keeps_contents(void)
{
    tt_mem m;
    tt_mem_init(&m);
    tern__alloc a = {.mem = m.mem};
    uint8_t k[16] = {5};
    tern__map map;
    TT_REQUIRE(tern__map_init(&map, &a, 4, k) == TERN_OK);
    static int vals[64];
    /* the first put makes the table; fill it up to where the next put must grow it */
    uint32_t i = 0;
    TT_REQUIRE(tern__map_put(&map, (const uint8_t *)&i, &vals[i]) == TERN_OK);
    i++;
    size_t cap = map.cap;
    TT_REQUIRE(cap > 0);
    while (map.n + 1 <= cap * 3 / 4) {
        TT_REQUIRE(tern__map_put(&map, (const uint8_t *)&i, &vals[i]) == TERN_OK);
        i++;
        TT_REQUIRE(i < 64);
    }
    m.fail_at = m.calls + 1;
    TT_CHECK_EQ_INT(tern__map_put(&map, (const uint8_t *)&i, &vals[i]), TERN_ERR_NOMEM);
    m.fail_at = 0;
    TT_CHECK_EQ_U64(map.cap, cap);
    TT_CHECK(tern__map_get(&map, (const uint8_t *)&i) == NULL);
    for (uint32_t j = 0; j < i; j++) TT_CHECK(tern__map_get(&map, (const uint8_t *)&j) == &vals[j]);
    TT_CHECK_EQ_INT(tern__map_put(&map, (const uint8_t *)&i, &vals[i]), TERN_OK); /* now it grows */
    TT_CHECK(map.cap > cap);
    tern__map_free(&map);

    tern__heap h;
    TT_REQUIRE(tern__heap_init(&h, &a) == TERN_OK);
    static owner o[TERN__HEAP_MIN_CAP + 1];
    for (int j = 0; j < TERN__HEAP_MIN_CAP; j++) {
        o[j].it = TERN__HEAP_ITEM_INIT;
        TT_REQUIRE(tern__heap_set(&h, &o[j].it, (uint64_t)(100 - j)) == TERN_OK);
    }
    o[TERN__HEAP_MIN_CAP].it = TERN__HEAP_ITEM_INIT;
    m.fail_at = m.calls + 1;
    TT_CHECK_EQ_INT(tern__heap_set(&h, &o[TERN__HEAP_MIN_CAP].it, 1), TERN_ERR_NOMEM);
    m.fail_at = 0;
    TT_CHECK(o[TERN__HEAP_MIN_CAP].it.idx == SIZE_MAX); /* left out */
    TT_CHECK_EQ_U64(h.n, TERN__HEAP_MIN_CAP);
    TT_CHECK(tern__heap_top(&h) == &o[TERN__HEAP_MIN_CAP - 1].it);
    for (size_t j = 0; j < h.n; j++) TT_CHECK(h.items[j].it->idx == j);
    tern__heap_free(&h);
    tt_mem_check_clean(&m, "growth failure");
}

static void test_relay_header(void)
{
    const uint8_t ch[TERN_RELAY_CHANNEL_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t d[TERN_RELAY_HDR_LEN + 1];
    TT_CHECK_EQ_U64(tern_relay_hdr_put(d, ch), TERN_RELAY_HDR_LEN);
    d[TERN_RELAY_HDR_LEN] = 0x40;
    TT_CHECK(d[0] == TERN_RELAY_TYPE);
    const uint8_t *got = tern_relay_hdr_get(d, sizeof(d));
    TT_REQUIRE(got != NULL);
    TT_CHECK(memcmp(got, ch, sizeof(ch)) == 0);
    TT_CHECK(tern_relay_hdr_get(d, TERN_RELAY_HDR_LEN) == NULL); /* no packet after it */
    d[0] = 0x82;
    TT_CHECK(tern_relay_hdr_get(d, sizeof(d)) == NULL);
}

static const tt_case cases[] = {
    TT_CASE(test_alloc_counts_and_limits), TT_CASE(test_map_keyof_churn),
    TT_CASE(test_map_copied_keys),         TT_CASE(test_heap_order_moves_memory),
    TT_CASE(test_heap_against_reference),  TT_CASE(test_growth_failure_keeps_contents),
    TT_CASE(test_relay_header),            {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
