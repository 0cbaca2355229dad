/*
 * White-box tests of src/core/ack.c: the received-packet range set (insertion in and out of
 * order, merging, duplicates, the TERN__ACK_RANGES limit and what it forgets), the ACK frame's
 * encoder (ack delay, ranges cut to the space given) and its bounded decoder (round trips,
 * truncated and malformed frames, ranges past the limit). Pure functions: no endpoint, no
 * network, a few milliseconds in all.
 */
#include <string.h>

#include "core/ack.h"
#include "core/wire.h"
#include "support/tt.h"

#define MS (1000000ull)

/* Checks the set's invariants: ranges valid, descending, disjoint and not adjacent (adjacent
 * ones must have been merged), at most TERN__ACK_RANGES. */
static void check_shape(const tern__ackset *a)
{
    TT_REQUIRE(a->n <= TERN__ACK_RANGES);
    for (size_t i = 0; i < a->n; i++) {
        TT_CHECK_MSG(a->r[i].lo <= a->r[i].hi, "range %zu: lo %llu > hi %llu", i,
                     (unsigned long long)a->r[i].lo, (unsigned long long)a->r[i].hi);
        if (i > 0)
            TT_CHECK_MSG(a->r[i].hi + 1 < a->r[i - 1].lo,
                         "ranges %zu and %zu overlap or touch: [%llu,%llu] [%llu,%llu]", i - 1, i,
                         (unsigned long long)a->r[i - 1].lo, (unsigned long long)a->r[i - 1].hi,
                         (unsigned long long)a->r[i].lo, (unsigned long long)a->r[i].hi);
    }
}

static int has(const tern__ackset *a, uint64_t pn)
{
    for (size_t i = 0; i < a->n; i++)
        if (pn >= a->r[i].lo && pn <= a->r[i].hi) return 1;
    return 0;
}

static void test_init_is_empty(void)
{
    tern__ackset a;
    memset(&a, 0xa5, sizeof(a));
    tern__ackset_init(&a);
    TT_CHECK_EQ_INT(a.n, 0);
    TT_CHECK_EQ_INT(a.ack_now, 0);
    TT_CHECK_EQ_INT(a.unacked_eliciting, 0);
    TT_CHECK_EQ_U64(a.ack_deadline, TERN_TIME_NEVER);
    uint8_t buf[64];
    TT_CHECK(tern__ack_encode(&a, 0, buf, buf + sizeof(buf)) == NULL); /* nothing to ack */
}

static void test_in_order_extends_one_range(void)
{
    tern__ackset a;
    tern__ackset_init(&a);
    TT_CHECK_EQ_INT(tern__ackset_add(&a, 0, 10), 0); /* packet 0 first: in order */
    for (uint64_t pn = 1; pn < 100; pn++) TT_CHECK_EQ_INT(tern__ackset_add(&a, pn, 10 + pn), 0);
    TT_CHECK_EQ_INT(a.n, 1);
    TT_CHECK_EQ_U64(a.r[0].lo, 0);
    TT_CHECK_EQ_U64(a.r[0].hi, 99);
    TT_CHECK_EQ_U64(a.largest_time, 10 + 99);
}

static void test_first_packet_not_zero_is_out_of_order(void)
{
    tern__ackset a;
    tern__ackset_init(&a);
    TT_CHECK_EQ_INT(tern__ackset_add(&a, 5, 1), 1); /* 0..4 are missing */
    TT_CHECK_EQ_INT(a.n, 1);
    TT_CHECK_EQ_U64(a.r[0].lo, 5);
}

static void test_gap_opens_range_and_fill_merges(void)
{
    tern__ackset a;
    tern__ackset_init(&a);
    for (uint64_t pn = 0; pn <= 3; pn++) tern__ackset_add(&a, pn, 1);
    TT_CHECK_EQ_INT(tern__ackset_add(&a, 6, 2), 1); /* 4, 5 missing: out of order */
    TT_CHECK_EQ_INT(a.n, 2);
    TT_CHECK_EQ_U64(a.r[0].lo, 6);
    TT_CHECK_EQ_U64(a.r[1].hi, 3);
    TT_CHECK_EQ_U64(a.largest_time, 2);
    /* 4 extends the lower range up (not adjacent to 6 yet) */
    TT_CHECK_EQ_INT(tern__ackset_add(&a, 4, 3), 1);
    TT_CHECK_EQ_INT(a.n, 2);
    TT_CHECK_EQ_U64(a.r[1].hi, 4);
    TT_CHECK_EQ_U64(a.largest_time, 2); /* only a new largest moves the ack delay's origin */
    /* 5 closes the gap: one range 0..6 */
    TT_CHECK_EQ_INT(tern__ackset_add(&a, 5, 4), 1);
    TT_CHECK_EQ_INT(a.n, 1);
    TT_CHECK_EQ_U64(a.r[0].lo, 0);
    TT_CHECK_EQ_U64(a.r[0].hi, 6);
    check_shape(&a);
}

static void test_fill_from_above_merges_three(void)
{
    tern__ackset a;
    tern__ackset_init(&a);
    uint64_t pns[] = {10, 12, 14};
    for (size_t i = 0; i < 3; i++) tern__ackset_add(&a, pns[i], 1);
    TT_CHECK_EQ_INT(a.n, 3);
    tern__ackset_add(&a, 13, 1); /* extends [14] down to 13 and merges with [12] */
    TT_CHECK_EQ_INT(a.n, 2);
    TT_CHECK_EQ_U64(a.r[0].lo, 12);
    TT_CHECK_EQ_U64(a.r[0].hi, 14);
    tern__ackset_add(&a, 11, 1);
    TT_CHECK_EQ_INT(a.n, 1);
    TT_CHECK_EQ_U64(a.r[0].lo, 10);
    TT_CHECK_EQ_U64(a.r[0].hi, 14);
}

static void test_duplicates_change_nothing(void)
{
    tern__ackset a;
    tern__ackset_init(&a);
    uint64_t pns[] = {1, 2, 3, 7, 8, 20};
    for (size_t i = 0; i < 6; i++) tern__ackset_add(&a, pns[i], 5);
    tern__ackset before = a;
    for (size_t i = 0; i < 6; i++) TT_CHECK_EQ_INT(tern__ackset_add(&a, pns[i], 99), 1);
    TT_REQUIRE(a.n == before.n);
    for (size_t i = 0; i < a.n; i++)
        TT_CHECK(a.r[i].lo == before.r[i].lo && a.r[i].hi == before.r[i].hi);
    TT_CHECK_EQ_U64(a.largest_time, 5); /* not a new largest: the delay's origin stays */
}

static void test_older_than_every_range_appends(void)
{
    tern__ackset a;
    tern__ackset_init(&a);
    tern__ackset_add(&a, 100, 1);
    tern__ackset_add(&a, 50, 1);
    tern__ackset_add(&a, 10, 1);
    TT_CHECK_EQ_INT(a.n, 3);
    TT_CHECK_EQ_U64(a.r[2].lo, 10);
    tern__ackset_add(&a, 30, 1); /* between 50 and 10 */
    TT_CHECK_EQ_INT(a.n, 4);
    TT_CHECK_EQ_U64(a.r[2].lo, 30);
    TT_CHECK_EQ_U64(a.r[3].lo, 10);
    check_shape(&a);
}

/* Fills the set with TERN__ACK_RANGES single-packet ranges at 0, 2, 4, ... */
static void fill_ranges(tern__ackset *a)
{
    tern__ackset_init(a);
    for (uint64_t i = 0; i < TERN__ACK_RANGES; i++) tern__ackset_add(a, 2 * i, 1);
    TT_REQUIRE(a->n == TERN__ACK_RANGES);
}

static void test_limit_forgets_oldest(void)
{
    tern__ackset a;
    uint64_t top = 2 * (TERN__ACK_RANGES - 1);
    /* a new largest with a gap: the oldest range (packet 0) is forgotten */
    fill_ranges(&a);
    TT_CHECK_EQ_INT(tern__ackset_add(&a, top + 2, 1), 1);
    TT_CHECK_EQ_INT(a.n, TERN__ACK_RANGES);
    TT_CHECK_EQ_U64(a.r[0].lo, top + 2);
    TT_CHECK(!has(&a, 0));
    TT_CHECK(has(&a, 2));
    check_shape(&a);

    /* a new range in the middle: the oldest goes too */
    fill_ranges(&a);
    tern__ackset_add(&a, top + 10, 1); /* forgets 0 */
    tern__ackset_add(&a, top + 5, 1);  /* between top and top + 10: forgets 2 */
    TT_CHECK_EQ_INT(a.n, TERN__ACK_RANGES);
    TT_CHECK(has(&a, top + 5));
    TT_CHECK(!has(&a, 2));
    TT_CHECK(has(&a, 4));
    check_shape(&a);

    /* a packet older than every kept range while full is dropped (the replay window rejects
     * such packets anyway; it is only not re-acknowledged) */
    fill_ranges(&a);
    tern__ackset_add(&a, top + 2, 1); /* forgets 0: now 2 is the oldest */
    tern__ackset_add(&a, 0, 1);
    TT_CHECK_EQ_INT(a.n, TERN__ACK_RANGES);
    TT_CHECK(!has(&a, 0));
    check_shape(&a);

    /* merging frees a slot */
    fill_ranges(&a);
    tern__ackset_add(&a, 1, 1); /* joins [0] and [2] */
    TT_CHECK_EQ_INT(a.n, TERN__ACK_RANGES - 1);
    TT_CHECK_EQ_U64(a.r[a.n - 1].lo, 0);
    TT_CHECK_EQ_U64(a.r[a.n - 1].hi, 2);
    check_shape(&a);
}

/* Random arrivals in a small window against a bitmap: while the reference never needs more
 * than TERN__ACK_RANGES ranges the set is exact; it always keeps its shape and never holds a
 * packet that did not arrive. */
static void test_random_against_reference(void)
{
    tt_rng rng;
    tt_rng_seed(&rng, tt_seed());
    for (int round = 0; round < 64; round++) {
        enum { W = 320 };
        uint8_t ref[W], got[W];
        memset(ref, 0, sizeof(ref));
        tern__ackset a;
        tern__ackset_init(&a);
        int exact = 1, any = 0;
        uint64_t largest = 0;
        size_t ref_ranges = 0;
        for (int k = 0; k < 300; k++) {
            /* mostly near the front, sometimes far behind (reordering) */
            uint64_t pn = tt_rng_chance(&rng, 0.8) ? (uint64_t)k + tt_rng_below(&rng, 8)
                                                   : tt_rng_below(&rng, (uint64_t)k + 8);
            if (pn >= W) continue;
            int out = tern__ackset_add(&a, pn, (uint64_t)k);
            if (ref[pn]) TT_CHECK_EQ_INT(out, 1); /* duplicate */
            else if (any) TT_CHECK_EQ_INT(out, pn == largest + 1 ? 0 : 1);
            if (!ref[pn]) {
                /* ranges in the reference: +1 for an island, -1 for a bridge */
                int below = pn > 0 && ref[pn - 1], above = pn + 1 < W && ref[pn + 1];
                ref_ranges = ref_ranges + 1 - (size_t)below - (size_t)above;
            }
            ref[pn] = 1;
            if (!any || pn > largest) largest = pn;
            any = 1;
            if (ref_ranges > TERN__ACK_RANGES) exact = 0;
            check_shape(&a);
            TT_REQUIRE(a.n > 0 && a.r[0].hi == largest);
            memset(got, 0, sizeof(got));
            for (size_t i = 0; i < a.n; i++)
                for (uint64_t p = a.r[i].lo; p <= a.r[i].hi; p++) {
                    TT_REQUIRE_MSG(p < W && ref[p], "round %d: holds %llu, never received",
                                   round, (unsigned long long)p);
                    got[p] = 1;
                }
            if (exact) TT_REQUIRE_MSG(memcmp(ref, got, W) == 0, "round %d step %d differs", round, k);
        }
        if (tt_case_failures()) return;
    }
}

static void roundtrip(const tern__ackset *a, uint64_t now, size_t cap, tern__ack_frame *f)
{
    uint8_t buf[1024];
    TT_REQUIRE(cap <= sizeof(buf));
    uint8_t *end = tern__ack_encode(a, now, buf, buf + cap);
    TT_REQUIRE(end != NULL);
    uint64_t type;
    const uint8_t *p = tern__get_varint(buf, end, &type);
    TT_REQUIRE(p != NULL && type == TERN__FRAME_ACK);
    int err = 0;
    const uint8_t *q = tern__ack_decode(p, end, f, &err);
    TT_REQUIRE_MSG(q == end, "decode stopped early (err %d)", err);
}

static void test_roundtrip_exact(void)
{
    tern__ackset a;
    tern__ackset_init(&a);
    uint64_t pns[] = {0, 1, 2, 5, 6, 9, 20, 21, 22, 23, 1000, 70000, 70001};
    for (size_t i = 0; i < sizeof(pns) / sizeof(pns[0]); i++)
        tern__ackset_add(&a, pns[i], 7 * MS);
    tern__ack_frame f;
    roundtrip(&a, 7 * MS + 2500 * 1000, 1024, &f); /* 2.5 ms after the largest arrived */
    TT_CHECK_EQ_U64(f.largest, 70001);
    TT_CHECK_EQ_U64(f.ack_delay_us, 2500);
    TT_REQUIRE(f.n == a.n);
    for (size_t i = 0; i < a.n; i++) {
        TT_CHECK_EQ_U64(f.r[i].lo, a.r[i].lo);
        TT_CHECK_EQ_U64(f.r[i].hi, a.r[i].hi);
    }
    /* a clock that went backwards gives a zero delay, not a huge one */
    roundtrip(&a, 1 * MS, 1024, &f);
    TT_CHECK_EQ_U64(f.ack_delay_us, 0);
}

static void test_roundtrip_full_set_and_large_numbers(void)
{
    tern__ackset a;
    tern__ackset_init(&a);
    uint64_t base = (1ull << 40);
    for (uint64_t i = 0; i < TERN__ACK_RANGES; i++) {
        tern__ackset_add(&a, base + 1000 * i, 1);
        tern__ackset_add(&a, base + 1000 * i + 1, 1);
    }
    TT_REQUIRE(a.n == TERN__ACK_RANGES);
    tern__ack_frame f;
    roundtrip(&a, 1, 1024, &f);
    TT_REQUIRE(f.n == TERN__ACK_RANGES);
    for (size_t i = 0; i < a.n; i++) {
        TT_CHECK_EQ_U64(f.r[i].lo, a.r[i].lo);
        TT_CHECK_EQ_U64(f.r[i].hi, a.r[i].hi);
    }
}

static void test_encode_cuts_ranges_to_space(void)
{
    tern__ackset a;
    fill_ranges(&a);
    uint8_t buf[256];
    uint8_t *full = tern__ack_encode(&a, 1, buf, buf + sizeof(buf));
    TT_REQUIRE(full != NULL);
    size_t full_len = (size_t)(full - buf);
    /* every byte fewer drops whole ranges (each gap/length pair is 2 bytes here), never
     * writes past the end, and what is written still decodes to the newest ranges */
    size_t prev_n = a.n + 1;
    for (size_t cap = full_len; cap > 0; cap--) {
        uint8_t small[256];
        memset(small, 0xee, sizeof(small));
        uint8_t *end = tern__ack_encode(&a, 1, small, small + cap);
        TT_CHECK(small[cap] == 0xee);
        if (end == NULL) {
            TT_CHECK_MSG(cap < 5, "no frame in %zu bytes", cap); /* type, largest, delay, n, first */
            continue;
        }
        TT_CHECK((size_t)(end - small) <= cap);
        uint64_t type;
        const uint8_t *p = tern__get_varint(small, end, &type);
        tern__ack_frame f;
        int err = 0;
        TT_REQUIRE(tern__ack_decode(p, end, &f, &err) == end);
        TT_CHECK(f.n >= 1 && f.n <= prev_n);
        prev_n = f.n;
        for (size_t i = 0; i < f.n; i++) {
            TT_CHECK_EQ_U64(f.r[i].lo, a.r[i].lo);
            TT_CHECK_EQ_U64(f.r[i].hi, a.r[i].hi);
        }
    }
    TT_CHECK_EQ_INT(prev_n, 1); /* the smallest frames carry only the first range */
}

/* Builds an ACK frame body from explicit fields. */
static size_t body(uint8_t *buf, size_t cap, uint64_t largest, uint64_t delay, uint64_t count,
                   uint64_t first, const uint64_t *pairs)
{
    uint8_t *p = buf, *end = buf + cap;
    p = tern__put_varint(p, end, largest);
    p = tern__put_varint(p, end, delay);
    p = tern__put_varint(p, end, count);
    p = tern__put_varint(p, end, first);
    for (uint64_t i = 0; pairs && i < 2 * count; i++) p = tern__put_varint(p, end, pairs[i]);
    return p ? (size_t)(p - buf) : 0;
}

static void test_decode_rejects_bad_frames(void)
{
    uint8_t buf[512];
    tern__ack_frame f;
    int err;
    size_t n;

    /* first range below zero */
    n = body(buf, sizeof(buf), 5, 0, 0, 6, NULL);
    err = 0;
    TT_CHECK(tern__ack_decode(buf, buf + n, &f, &err) == NULL);
    TT_CHECK_EQ_INT(err, TERN_ERR_MALFORMED);

    /* first range reaching exactly 0 is fine */
    n = body(buf, sizeof(buf), 5, 0, 0, 5, NULL);
    err = 0;
    TT_CHECK(tern__ack_decode(buf, buf + n, &f, &err) == buf + n);
    TT_CHECK(f.n == 1 && f.r[0].lo == 0 && f.r[0].hi == 5);

    /* a gap that goes below zero: [10,10], then gap 9 would end at -1 */
    uint64_t gap_under[] = {9, 0};
    n = body(buf, sizeof(buf), 10, 0, 1, 0, gap_under);
    err = 0;
    TT_CHECK(tern__ack_decode(buf, buf + n, &f, &err) == NULL);
    TT_CHECK_EQ_INT(err, TERN_ERR_MALFORMED);

    /* the largest legal gap: [10,10], gap 8 -> the next range ends at 0 */
    uint64_t gap_ok[] = {8, 0};
    n = body(buf, sizeof(buf), 10, 0, 1, 0, gap_ok);
    err = 0;
    TT_CHECK(tern__ack_decode(buf, buf + n, &f, &err) == buf + n);
    TT_CHECK(f.n == 2 && f.r[1].lo == 0 && f.r[1].hi == 0);

    /* a length that goes below zero */
    uint64_t len_under[] = {0, 9};
    n = body(buf, sizeof(buf), 10, 0, 1, 0, len_under); /* next range ends at 8, length 10 */
    err = 0;
    TT_CHECK(tern__ack_decode(buf, buf + n, &f, &err) == NULL);
    TT_CHECK_EQ_INT(err, TERN_ERR_MALFORMED);

    /* every truncation of a valid frame is TRUNCATED, never a read past the end */
    uint64_t pairs[] = {3, 2, 1, 4};
    n = body(buf, sizeof(buf), 1000, 77, 2, 5, pairs);
    err = 0;
    TT_REQUIRE(tern__ack_decode(buf, buf + n, &f, &err) == buf + n);
    TT_CHECK_EQ_INT(f.n, 3);
    for (size_t cut = 0; cut < n; cut++) {
        err = 0;
        TT_CHECK(tern__ack_decode(buf, buf + cut, &f, &err) == NULL);
        TT_CHECK_EQ_INT(err, TERN_ERR_TRUNCATED);
    }
}

static void test_decode_keeps_first_ranges_past_limit(void)
{
    /* 100 ranges of one packet each, 2 apart: parsed to the end, the newest kept */
    enum { COUNT = 100 };
    uint64_t pairs[2 * COUNT];
    for (size_t i = 0; i < COUNT; i++) {
        pairs[2 * i] = 0; /* one missing packet */
        pairs[2 * i + 1] = 0;
    }
    uint8_t buf[1024];
    size_t n = body(buf, sizeof(buf), 10000, 0, COUNT, 0, pairs);
    TT_REQUIRE(n > 0);
    tern__ack_frame f;
    int err = 0;
    TT_CHECK(tern__ack_decode(buf, buf + n, &f, &err) == buf + n);
    TT_CHECK_EQ_INT(f.n, TERN__ACK_RANGES);
    for (size_t i = 0; i < f.n; i++) {
        TT_CHECK_EQ_U64(f.r[i].hi, 10000 - 2 * i);
        TT_CHECK_EQ_U64(f.r[i].lo, 10000 - 2 * i);
    }
    /* the ranges past the limit are still checked: one that goes below zero is refused */
    n = body(buf, sizeof(buf), 150, 0, COUNT, 0, pairs); /* range 76 would be at -2 */
    err = 0;
    TT_CHECK(tern__ack_decode(buf, buf + n, &f, &err) == NULL);
    TT_CHECK_EQ_INT(err, TERN_ERR_MALFORMED);
}

static const tt_case cases[] = {
    TT_CASE(test_init_is_empty),
    TT_CASE(test_in_order_extends_one_range),
    TT_CASE(test_first_packet_not_zero_is_out_of_order),
    TT_CASE(test_gap_opens_range_and_fill_merges),
    TT_CASE(test_fill_from_above_merges_three),
    TT_CASE(test_duplicates_change_nothing),
    TT_CASE(test_older_than_every_range_appends),
    TT_CASE(test_limit_forgets_oldest),
    TT_CASE(test_random_against_reference),
    TT_CASE(test_roundtrip_exact),
    TT_CASE(test_roundtrip_full_set_and_large_numbers),
    TT_CASE(test_encode_cuts_ranges_to_space),
    TT_CASE(test_decode_rejects_bad_frames),
    TT_CASE(test_decode_keeps_first_ranges_past_limit),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
