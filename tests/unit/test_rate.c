/*
 * White-box tests of base's rate limits (base/rate.h): the token bucket's exact arithmetic over
 * time, its burst, rate 0, weighted takes (byte budgets), a clock that stands still or goes back,
 * and the per-source limiter: keyed by IPv4 address or IPv6 /64, its table made at the first take
 * (or when reserved) and fixed from then on, and what happens when the table is full.
 */
#include <string.h>

#include "base/rate.h"
#include "support/tt.h"
#include "tern/errors.h"

#define S TERN_NS_PER_S
#define MS TERN_NS_PER_MS

/* Takes one unit n times at now; returns how many were allowed. */
static int take_n(const tern__rate *r, tern__bucket *b, uint64_t now, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++) ok += tern__bucket_take(r, b, now, 1);
    return ok;
}

/* A rate that does not divide a second (7/s): the k-th unit after the burst is allowed exactly
 * at ceil(k x 1e9 / 7) ns and not one nanosecond before, for as long as the test runs. */
static void test_bucket_exact_over_time(void)
{
    tern__rate r;
    tern__rate_set(&r, 7, 10);
    tern__bucket b = {0};
    const uint64_t t0 = 5 * S;
    TT_CHECK_EQ_INT(take_n(&r, &b, t0, 11), 10); /* a zeroed bucket is full: the burst */
    for (uint64_t k = 1; k <= 7000; k++) {
        uint64_t at = t0 + (k * S + 6) / 7;
        TT_REQUIRE_MSG(!tern__bucket_take(&r, &b, at - 1, 1), "unit %llu early",
                       (unsigned long long)k);
        TT_REQUIRE_MSG(tern__bucket_take(&r, &b, at, 1), "unit %llu on time",
                       (unsigned long long)k);
    }
    /* 1000 s at 7/s: 7000 units and no drift; the bucket owes exactly one burst */
    TT_CHECK_EQ_U64(tern__bucket_debt(&r, &b, t0 + 1000 * S), 10 * S);

    /* polled every millisecond for 10 s after the burst: 3/s gives exactly 30 */
    tern__rate_set(&r, 3, 1000);
    memset(&b, 0, sizeof(b));
    TT_CHECK_EQ_INT(take_n(&r, &b, 0, 1000), 1000);
    int ok = 0;
    for (uint64_t t = MS; t <= 10 * S; t += MS) ok += tern__bucket_take(&r, &b, t, 1);
    TT_CHECK_EQ_INT(ok, 30);
}

static void test_bucket_burst(void)
{
    tern__rate r;
    tern__rate_set(&r, 10, 20);
    tern__bucket b = {0};
    TT_CHECK_EQ_INT(take_n(&r, &b, 1000, 100), 20);
    TT_CHECK_EQ_INT(take_n(&r, &b, 1000 + 100 * MS - 1, 5), 0);
    TT_CHECK_EQ_INT(take_n(&r, &b, 1000 + 100 * MS, 5), 1); /* one per 1/rate */
    /* an idle bucket refills to its depth and no further */
    TT_CHECK_EQ_U64(tern__bucket_debt(&r, &b, 1000 + 3600 * S), 0);
    TT_CHECK_EQ_INT(take_n(&r, &b, 1000 + 3600 * S, 100), 20);

    /* burst 0 counts as 1; a burst above the maximum is cut to it */
    tern__rate_set(&r, 1, 0);
    TT_CHECK_EQ_U64(r.cap, S);
    memset(&b, 0, sizeof(b));
    TT_CHECK_EQ_INT(take_n(&r, &b, 0, 3), 1);
    tern__rate_set(&r, 1, UINT64_MAX);
    TT_CHECK_EQ_U64(r.cap, TERN__RATE_MAX_BURST * S);

    /* the time until full is debt / rate */
    tern__rate_set(&r, 2, 10);
    memset(&b, 0, sizeof(b));
    TT_CHECK_EQ_INT(take_n(&r, &b, S, 10), 10);
    TT_CHECK_EQ_U64(tern__bucket_debt(&r, &b, S) / r.per_s, 5 * S);
    TT_CHECK_EQ_U64(tern__bucket_debt(&r, &b, 6 * S), 0);
}

static void test_bucket_rate_zero_is_unlimited(void)
{
    tern__rate r;
    tern__rate_set(&r, 0, 5);
    tern__bucket b = {0};
    TT_CHECK_EQ_INT(take_n(&r, &b, 7, 100000), 100000);
    TT_CHECK(tern__bucket_take(&r, &b, 7, 1000000000));
    TT_CHECK_EQ_U64(b.debt, 0);
    TT_CHECK_EQ_U64(b.at, 0); /* untouched */
    TT_CHECK_EQ_U64(tern__bucket_debt(&r, &b, 8), 0);
}

/* The relay's use: bytes per second, each datagram taken by its length. */
static void test_bucket_weighted(void)
{
    tern__rate r;
    tern__rate_set(&r, 1000, 1500); /* 1000 bytes/s, 1500 bytes deep */
    tern__bucket b = {0};
    TT_CHECK(!tern__bucket_take(&r, &b, S, 1501)); /* more than the depth: never */
    TT_CHECK(tern__bucket_take(&r, &b, S, 1200));
    TT_CHECK(!tern__bucket_take(&r, &b, S, 301)); /* a refused take takes nothing */
    TT_CHECK(tern__bucket_take(&r, &b, S, 300));
    TT_CHECK(!tern__bucket_take(&r, &b, S, 1));
    TT_CHECK(tern__bucket_take(&r, &b, S, 0)); /* nothing is always there */
    TT_CHECK(!tern__bucket_take(&r, &b, S + 500 * MS - 1, 500));
    TT_CHECK(tern__bucket_take(&r, &b, S + 500 * MS, 500));
    TT_CHECK(!tern__bucket_take(&r, &b, S + 500 * MS, 1));
    TT_CHECK(!tern__bucket_take(&r, &b, 1000 * S, UINT64_MAX)); /* no overflow */
    TT_CHECK(!tern__bucket_take(&r, &b, 1000 * S, TERN__RATE_MAX_BURST + 1));
    TT_CHECK(tern__bucket_take(&r, &b, 1000 * S, 1500));

    /* the relay's defaults: 50 MB/s, 4 MB deep; a refill after a very long idle time cannot
     * overflow (dt x rate > 2^64 counts as full) */
    tern__rate_set(&r, 50000000, 4000000);
    memset(&b, 0, sizeof(b));
    int n = 0;
    while (tern__bucket_take(&r, &b, S, 1500)) n++;
    TT_CHECK_EQ_INT(n, 4000000 / 1500);
    /* 1000 bytes were left; the 500 missing take 10 us at 0.05 bytes/ns, to the nanosecond */
    TT_CHECK(!tern__bucket_take(&r, &b, S + 9999, 1500));
    TT_CHECK(tern__bucket_take(&r, &b, S + 10000, 1500));
    tern__rate_set(&r, UINT64_MAX / 2, TERN__RATE_MAX_BURST);
    memset(&b, 0, sizeof(b));
    TT_CHECK(tern__bucket_take(&r, &b, 1, TERN__RATE_MAX_BURST));
    TT_CHECK(tern__bucket_take(&r, &b, UINT64_MAX - 1, TERN__RATE_MAX_BURST));
}

static void test_bucket_clock(void)
{
    tern__rate r;
    tern__rate_set(&r, 10, 2);
    tern__bucket b = {0};
    const uint64_t t = 100 * S;
    TT_CHECK_EQ_INT(take_n(&r, &b, t, 2), 2);
    /* a clock that does not move adds nothing */
    TT_CHECK_EQ_INT(take_n(&r, &b, t, 10), 0);
    /* one that goes back adds nothing and does not move the refill time back */
    TT_CHECK_EQ_INT(take_n(&r, &b, t - 50 * S, 10), 0);
    TT_CHECK_EQ_U64(b.at, t);
    TT_CHECK_EQ_U64(b.debt, 2 * S);
    /* so the interval after it is credited once: 100 ms gives one unit, not more */
    TT_CHECK_EQ_INT(take_n(&r, &b, t + 100 * MS, 10), 1);
    TT_CHECK_EQ_INT(take_n(&r, &b, t + 50 * MS, 10), 0);
    TT_CHECK_EQ_INT(take_n(&r, &b, t + 200 * MS, 10), 1);
    /* time 0 is an ordinary time */
    memset(&b, 0, sizeof(b));
    TT_CHECK_EQ_INT(take_n(&r, &b, 0, 3), 2);
    TT_CHECK_EQ_INT(take_n(&r, &b, 100 * MS, 3), 1);
}

static void addr6(tern_addr *a, const char *s)
{
    TT_REQUIRE(tern_addr_parse(a, s) == TERN_OK);
}

static void test_srclim_keys(void)
{
    tt_mem m;
    tt_mem_init(&m);
    tern__alloc a = {.mem = m.mem};
    static const uint8_t k[16] = {1, 2, 3};
    tern__srclim l;
    TT_REQUIRE(tern__srclim_init(&l, &a, 1, 3, 64, k) == TERN_OK);
    tern_addr x, y, z, v4a, v4b, v4c;
    addr6(&x, "[2001:db8:1:2::1]:1000");
    addr6(&y, "[2001:db8:1:2:ffff:eeee:dddd:9]:2000"); /* the same /64 */
    addr6(&z, "[2001:db8:1:3::1]:1000");                /* the next /64 */
    tern_addr_ipv4(&v4a, 192, 0, 2, 1, 1000);
    tern_addr_ipv4(&v4b, 192, 0, 2, 1, 2000); /* the same address, another port */
    tern_addr_ipv4(&v4c, 192, 0, 2, 2, 1000);
    int ok = 0;
    for (int i = 0; i < 2; i++) ok += tern__srclim_take(&l, &x, S);
    for (int i = 0; i < 5; i++) ok += tern__srclim_take(&l, &y, S);
    TT_CHECK_EQ_INT(ok, 3); /* one /64, one bucket */
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &z, S), 1);
    ok = 0;
    for (int i = 0; i < 2; i++) ok += tern__srclim_take(&l, &v4a, S);
    for (int i = 0; i < 5; i++) ok += tern__srclim_take(&l, &v4b, S);
    TT_CHECK_EQ_INT(ok, 3); /* the port does not count */
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &v4c, S), 1);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &y, 2 * S), 1); /* refilled at 1/s */
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &y, 2 * S), 0);
    /* an IPv4 address and the IPv6 /64 that begins with the same bytes are two sources */
    tern_addr w;
    addr6(&w, "[c000:201::]:1");
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &w, S), 1);
    tern__srclim_free(&l);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &z, 10 * S), 0); /* freed: nothing allowed */
    tern__srclim_free(&l);                                 /* twice is fine */
    TT_CHECK_EQ_U64(a.current, 0);

    /* rate 0: no limit and no table; a limiter never initialised allows nothing */
    TT_REQUIRE(tern__srclim_init(&l, &a, 0, 3, 4096, k) == TERN_OK);
    TT_CHECK_EQ_U64(a.current, 0);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &x, S), 1);
    tern__srclim_free(&l);
    tern__srclim zero;
    memset(&zero, 0, sizeof(zero));
    TT_CHECK_EQ_INT(tern__srclim_take(&zero, &x, S), 0);
    tern__srclim_free(&zero);
    TT_CHECK_EQ_INT(tern__srclim_init(&l, &a, 1, 1, 0, k), TERN_ERR_INVALID_ARG);
    tt_mem_check_clean(&m, "srclim");
}

static void src(tern_addr *a, uint32_t i)
{
    tern_addr_ipv4(a, 10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 1);
}

/* The table is made at the first take and its memory is fixed from then on; when full, a new source takes over a refilled entry (found
 * near the hand), else the entry at the hand, whose source starts over with a full bucket. */
static void test_srclim_table_full(void)
{
    tt_mem m;
    tt_mem_init(&m);
    tern__alloc a = {.mem = m.mem};
    static const uint8_t k[16] = {9};
    tern__srclim l;
    TT_REQUIRE(tern__srclim_init(&l, &a, 1, 2, 4, k) == TERN_OK);
    TT_CHECK_EQ_U64(a.current, 0); /* nothing until the first take */
    tern_addr A, B, C, D, E;
    src(&A, 1), src(&B, 2), src(&C, 3), src(&D, 4), src(&E, 5);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &A, 0) + tern__srclim_take(&l, &A, 0), 2);
    uint64_t fixed = a.current;
    TT_CHECK(fixed > 0);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &B, 0) + tern__srclim_take(&l, &B, 0), 2);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &C, 0), 1); /* C owes one unit only */
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &D, 0) + tern__srclim_take(&l, &D, 0), 2);
    /* 1 s later only C is full again: E takes C's entry, A and B keep theirs */
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &E, S), 1);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &A, S) + tern__srclim_take(&l, &A, S), 1);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &B, S) + tern__srclim_take(&l, &B, S), 1);
    /* C comes back: nothing is full now, so the entry at the hand goes (D's, next after C's);
     * C starts with a full bucket */
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &C, S) + tern__srclim_take(&l, &C, S) +
                        tern__srclim_take(&l, &C, S), 2);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &E, S), 1); /* E kept its entry */
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &D, S) + tern__srclim_take(&l, &D, S), 2); /* anew */
    TT_CHECK_EQ_U64(l.n, 4);
    TT_CHECK_EQ_U64(a.current, fixed);

    /* many sources through a table of 4096: memory stays what init took */
    tern__srclim big;
    TT_REQUIRE(tern__srclim_init(&big, &a, 100, 200, 4096, k) == TERN_OK);
    TT_REQUIRE(tern__srclim_reserve(&big) == TERN_OK); /* as a server does at start */
    uint64_t before = a.current;
    TT_CHECK(before > fixed);
    TT_CHECK_EQ_INT(tern__srclim_reserve(&big), TERN_OK); /* once is enough */
    TT_CHECK_EQ_U64(a.current, before);
    int ok = 0;
    for (uint32_t i = 0; i < 50000; i++) {
        tern_addr s;
        src(&s, i);
        ok += tern__srclim_take(&big, &s, S + i);
    }
    TT_CHECK_EQ_INT(ok, 50000); /* each new source starts full */
    TT_CHECK_EQ_U64(big.n, 4096);
    TT_CHECK_EQ_U64(a.current, before);
    /* a source that stays within its table entry is limited as usual */
    tern_addr s;
    src(&s, 49999);
    ok = 0;
    for (int i = 0; i < 1000; i++) ok += tern__srclim_take(&big, &s, S + 50000);
    TT_CHECK_EQ_INT(ok, 199);
    tern__srclim_free(&big);
    tern__srclim_free(&l);
    TT_CHECK_EQ_INT(tern__srclim_reserve(&l), TERN_ERR_STATE);
    TT_CHECK_EQ_U64(a.current, 0);

    /* a table that cannot be made refuses (and is tried again at the next take) */
    a.max = 1000;
    TT_REQUIRE(tern__srclim_init(&l, &a, 1, 2, 4096, k) == TERN_OK);
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &A, 0), 0);
    TT_CHECK_EQ_U64(a.current, 0);
    a.max = 0;
    TT_CHECK_EQ_INT(tern__srclim_take(&l, &A, 0), 1);
    tern__srclim_free(&l);
    tt_mem_check_clean(&m, "srclim full");
}

/* The STUN responder's way: the table in the caller's buffer, nothing allocated. */
static void test_srclim_in_buffer(void)
{
    static uint64_t buf[16384];
    static const uint8_t k[16] = {7};
    tern__srclim l;
    size_t need = tern__srclim_buf_size(1024);
    TT_CHECK(need <= sizeof(buf));
    TT_CHECK_EQ_INT(tern__srclim_init_in(&l, buf, need - 1, 20, 40, 1024, k), TERN_ERR_NOMEM);
    for (int round = 0; round < 2; round++) { /* initialised again: starts over */
        TT_REQUIRE(tern__srclim_init_in(&l, buf, need, 20, 40, 1024, k) == TERN_OK);
        int ok = 0;
        for (uint32_t i = 0; i < 5000; i++) {
            tern_addr s;
            src(&s, i % 2000);
            ok += tern__srclim_take(&l, &s, S);
        }
        TT_CHECK(ok >= 2000);
        tern_addr one;
        src(&one, 77777);
        ok = 0;
        for (int i = 0; i < 100; i++) ok += tern__srclim_take(&l, &one, 2 * S);
        TT_CHECK_EQ_INT(ok, 40);
        ok = 0;
        for (int i = 0; i < 100; i++) ok += tern__srclim_take(&l, &one, 3 * S);
        TT_CHECK_EQ_INT(ok, 20);
        TT_CHECK(l.buf_used <= need);
    }
    tern__srclim_free(&l);
}

static const tt_case cases[] = {
    TT_CASE(test_bucket_exact_over_time), TT_CASE(test_bucket_burst),
    TT_CASE(test_bucket_rate_zero_is_unlimited), TT_CASE(test_bucket_weighted),
    TT_CASE(test_bucket_clock), TT_CASE(test_srclim_keys),
    TT_CASE(test_srclim_table_full), TT_CASE(test_srclim_in_buffer),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
