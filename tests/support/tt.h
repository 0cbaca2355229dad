/*
 * tt: the minimal test framework shared by every test in tern.
 *
 * A test program is a list of cases run by tt_main():
 *
 *     static void test_something(void) {
 *         TT_CHECK(x == 1);                 // records a failure, continues
 *         TT_CHECK_EQ_INT(len, 42);         // shows both values on failure
 *         TT_CHECK_MSG(ok, "got %d", v);    // with a printf-style message
 *         TT_REQUIRE(p != NULL);            // records a failure and ends this case
 *     }
 *     static const tt_case cases[] = { TT_CASE(test_something), {NULL, NULL} };
 *     int main(int argc, char **argv) { return tt_main(argc, argv, cases); }
 *
 * Running `test_foo` runs every case; `test_foo name` runs only the case called name. Each case
 * prints "ok name (x ms)" or "FAIL name"; the last line is exactly "N passed, N failed".
 *
 * Every run has one seed (tt_seed(): $TERN_SEED, else 1). Every failure line prints it with
 * "seed=N, rerun with TERN_SEED=N", so a random failure can be replayed exactly.
 *
 * Also here: a counting allocator that implements tern_mem (leak and size-mismatch checks, peak
 * usage, injected failures) and a seeded PRNG (xoshiro256**) with a tern_rand_fn adapter.
 */
#ifndef TERN_TESTS_TT_H
#define TERN_TESTS_TT_H

#include <stddef.h>
#include <stdint.h>

#include "tern/tern.h"

/* ---------------------------------------------------------------- cases and checks */

typedef struct tt_case {
    const char *name;
    void (*fn)(void);
} tt_case;

/* Builds a tt_case from a function name: TT_CASE(test_foo) -> {"test_foo", test_foo}. */
#define TT_CASE(fn) { #fn, fn }

/* Runs the cases of a NULL-terminated array (optionally only the one named by argv[1]), prints
 * one line per case and the "N passed, N failed" summary. Returns 0 when every case passed,
 * 1 otherwise (also when argv[1] names no case). */
int tt_main(int argc, char **argv, const tt_case *cases);

/* The seed of this run: $TERN_SEED (decimal or 0x hex) when set, else 1. */
uint64_t tt_seed(void);

/* Records a failure at file:line with a printf-style message and the seed; the case goes on. */
void tt_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the current case at once (after a failure was recorded). Only valid inside a case. */
_Noreturn void tt_abort_case(void);

/* Failures recorded so far in the current case (lets a helper stop early). */
int tt_case_failures(void);

/* Monotonic wall-clock time in nanoseconds (for speed measurements only; never for the sim). */
uint64_t tt_wall_ns(void);

#define TT_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) tt_fail(__FILE__, __LINE__, "check failed: %s", #cond);                      \
    } while (0)

#define TT_CHECK_MSG(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond)) tt_fail(__FILE__, __LINE__, __VA_ARGS__);                                     \
    } while (0)

#define TT_CHECK_EQ_INT(a, b)                                                                      \
    do {                                                                                           \
        long long tt_a_ = (long long)(a), tt_b_ = (long long)(b);                                  \
        if (tt_a_ != tt_b_)                                                                        \
            tt_fail(__FILE__, __LINE__, "check failed: %s == %s (%lld != %lld)", #a, #b, tt_a_,    \
                    tt_b_);                                                                        \
    } while (0)

#define TT_CHECK_EQ_U64(a, b)                                                                      \
    do {                                                                                           \
        unsigned long long tt_a_ = (unsigned long long)(a), tt_b_ = (unsigned long long)(b);       \
        if (tt_a_ != tt_b_)                                                                        \
            tt_fail(__FILE__, __LINE__, "check failed: %s == %s (%llu != %llu)", #a, #b, tt_a_,    \
                    tt_b_);                                                                        \
    } while (0)

/* Checks lo <= v <= hi (as doubles), showing all three on failure. */
#define TT_CHECK_RANGE(v, lo, hi)                                                                  \
    do {                                                                                           \
        double tt_v_ = (double)(v), tt_lo_ = (double)(lo), tt_hi_ = (double)(hi);                  \
        if (!(tt_v_ >= tt_lo_ && tt_v_ <= tt_hi_))                                                 \
            tt_fail(__FILE__, __LINE__, "check failed: %s = %g not in [%g, %g]", #v, tt_v_,       \
                    tt_lo_, tt_hi_);                                                               \
    } while (0)

#define TT_REQUIRE(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tt_fail(__FILE__, __LINE__, "requirement failed: %s", #cond);                         \
            tt_abort_case();                                                                       \
        }                                                                                          \
    } while (0)

#define TT_REQUIRE_MSG(cond, ...)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tt_fail(__FILE__, __LINE__, __VA_ARGS__);                                              \
            tt_abort_case();                                                                       \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------- counting allocator */

/* A tern_mem that counts. Every block carries a small header holding its size, so free() can
 * check that the size it is given is the size that was asked for. Initialise with tt_mem_init()
 * and pass &m->mem as tern_endpoint_config.mem. Not thread-safe. */
typedef struct tt_mem {
    tern_mem mem;          /* the hook; mem.user points back at this struct */
    size_t current;        /* bytes live now (as asked for, headers not counted) */
    size_t peak;           /* highest value of current */
    size_t live;           /* blocks live now */
    uint64_t allocs;       /* successful malloc calls */
    uint64_t frees;        /* free calls with a non-NULL pointer */
    uint64_t bad_frees;    /* frees whose size did not match, or whose header was damaged */
    uint64_t fail_at;      /* when non-zero: the fail_at-th malloc call (1-based) returns NULL */
    int fail_sticky;       /* with fail_at: every malloc call from fail_at on fails */
    uint64_t calls;        /* malloc calls, failed ones included */
    int report;            /* 1 (default): a bad free is also a test failure via tt_fail */
} tt_mem;

/* Zeroes m and wires m->mem to the counting functions. */
void tt_mem_init(tt_mem *m);

/* Checks that nothing is live (records a test failure naming `what` otherwise); returns 1 when
 * clean. Call before tearing down a test. */
int tt_mem_check_clean(const tt_mem *m, const char *what);

/* ---------------------------------------------------------------- seeded PRNG */

/* xoshiro256**, seeded through splitmix64. Deterministic across platforms. */
typedef struct tt_rng {
    uint64_t s[4];
} tt_rng;

/* One splitmix64 step: advances *state and returns a well-mixed 64-bit value. */
uint64_t tt_splitmix64(uint64_t *state);

/* Mixes a seed and a stream number into an independent seed (for per-node / per-link PRNGs). */
uint64_t tt_derive_seed(uint64_t seed, uint64_t stream);

void tt_rng_seed(tt_rng *r, uint64_t seed);
uint64_t tt_rng_next(tt_rng *r);
/* Uniform in [0, 1) with 53 bits. */
double tt_rng_double(tt_rng *r);
/* Uniform in [0, n) without modulo bias; 0 when n == 0. */
uint64_t tt_rng_below(tt_rng *r, uint64_t n);
/* 1 with probability p (never draws when p <= 0 or p >= 1, so a zero rate costs no randomness). */
int tt_rng_chance(tt_rng *r, double p);

/* tern_rand_fn adapter: user must be a tt_rng *. Use as cfg.rand = tt_rand_fill,
 * cfg.rand_user = &rng. */
void tt_rand_fill(uint8_t *dst, size_t len, void *user);

#endif
