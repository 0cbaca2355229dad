/*
 * tt: the test framework, counting allocator and seeded PRNG.
 *
 * Design: one process runs the cases of one test file in order. Each case runs under a setjmp so
 * TT_REQUIRE can leave it early (tt_abort_case longjmps back to the runner); the failure count of
 * the case decides "ok" or "FAIL". Failures go to stdout as "file:line: message (seed=N, rerun
 * with TERN_SEED=N)" so CTest's --output-on-failure shows them next to the case line.
 * The seed is read once from $TERN_SEED. The allocator prepends a header of max_align_t size
 * holding a magic and the requested size, so a mismatched or double free is caught. The PRNG is
 * xoshiro256** (Blackman and Vigna), seeded by splitmix64, written from the published algorithm.
 */
#include "support/tt.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- runner state */

static jmp_buf tt_jmp;
static int tt_in_case;
static int tt_failures;      /* in the current case */
static const char *tt_current;
static int tt_seed_read;
static uint64_t tt_seed_value;

uint64_t tt_seed(void)
{
    if (!tt_seed_read) {
        const char *env = getenv("TERN_SEED");
        tt_seed_value = 1;
        if (env && *env) {
            char *end = NULL;
            unsigned long long v = strtoull(env, &end, 0);
            if (end && *end == '\0')
                tt_seed_value = (uint64_t)v;
            else
                fprintf(stderr, "tt: ignoring malformed TERN_SEED=%s\n", env);
        }
        tt_seed_read = 1;
    }
    return tt_seed_value;
}

void tt_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    uint64_t seed = tt_seed();
    tt_failures++;
    printf("%s:%d: %s: ", file, line, tt_current ? tt_current : "(no case)");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf(" (seed=%" PRIu64 ", rerun with TERN_SEED=%" PRIu64 ")\n", seed, seed);
    fflush(stdout);
}

_Noreturn void tt_abort_case(void)
{
    if (!tt_in_case) {
        fprintf(stderr, "tt: TT_REQUIRE outside a test case\n");
        abort();
    }
    longjmp(tt_jmp, 1);
}

int tt_case_failures(void)
{
    return tt_failures;
}

uint64_t tt_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Runs one case under setjmp; returns its failure count. The volatile locals survive longjmp. */
static int run_case(const tt_case *c)
{
    uint64_t t0 = tt_wall_ns();
    tt_current = c->name;
    tt_failures = 0;
    tt_in_case = 1;
    if (setjmp(tt_jmp) == 0)
        c->fn();
    tt_in_case = 0;
    double ms = (double)(tt_wall_ns() - t0) / 1e6;
    if (tt_failures == 0)
        printf("ok %s (%.1f ms)\n", c->name, ms);
    else
        printf("FAIL %s\n", c->name);
    fflush(stdout);
    tt_current = NULL;
    return tt_failures;
}

int tt_main(int argc, char **argv, const tt_case *cases)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0, matched = 0;
    (void)tt_seed();
    for (const tt_case *c = cases; c->name; c++) {
        if (only && strcmp(only, c->name) != 0)
            continue;
        matched++;
        if (run_case(c) == 0)
            passed++;
        else
            failed++;
    }
    if (only && !matched) {
        printf("no case named %s\n", only);
        failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    return failed ? 1 : 0;
}

/* ---------------------------------------------------------------- counting allocator */

#define TT_MEM_MAGIC 0x7465726e6d656d21ull /* "ternmem!" */
#define TT_MEM_DEAD 0x64656164626c6f63ull  /* written on free to catch double frees */

/* The header sits in front of every block; its size keeps the block max_align_t-aligned. */
typedef union tt_mem_hdr {
    struct {
        uint64_t magic;
        size_t size;
    } h;
    max_align_t align_;
} tt_mem_hdr;

static void *tt_mem_malloc(size_t size, void *user)
{
    tt_mem *m = user;
    m->calls++;
    if (m->fail_at && (m->calls == m->fail_at || (m->fail_sticky && m->calls > m->fail_at)))
        return NULL;
    if (size > SIZE_MAX - sizeof(tt_mem_hdr))
        return NULL;
    tt_mem_hdr *h = malloc(sizeof(tt_mem_hdr) + size);
    if (!h)
        return NULL;
    h->h.magic = TT_MEM_MAGIC;
    h->h.size = size;
    m->allocs++;
    m->live++;
    m->current += size;
    if (m->current > m->peak)
        m->peak = m->current;
    return h + 1;
}

static void tt_mem_free(void *ptr, size_t size, void *user)
{
    tt_mem *m = user;
    if (!ptr)
        return;
    tt_mem_hdr *h = (tt_mem_hdr *)ptr - 1;
    m->frees++;
    if (h->h.magic != TT_MEM_MAGIC) {
        m->bad_frees++;
        if (m->report)
            tt_fail(__FILE__, __LINE__, "tt_mem: free of %p with a damaged header (double free?)",
                    ptr);
        return; /* do not touch a block we cannot trust */
    }
    if (h->h.size != size) {
        m->bad_frees++;
        if (m->report)
            tt_fail(__FILE__, __LINE__, "tt_mem: free of %p with size %zu, allocated %zu", ptr,
                    size, h->h.size);
    }
    m->live--;
    m->current -= h->h.size;
    h->h.magic = TT_MEM_DEAD;
    free(h);
}

void tt_mem_init(tt_mem *m)
{
    memset(m, 0, sizeof(*m));
    m->mem.malloc = tt_mem_malloc;
    m->mem.free = tt_mem_free;
    m->mem.user = m;
    m->report = 1;
}

int tt_mem_check_clean(const tt_mem *m, const char *what)
{
    if (m->live == 0 && m->current == 0 && m->bad_frees == 0)
        return 1;
    tt_fail(__FILE__, __LINE__, "%s: %zu blocks (%zu bytes) still allocated, %" PRIu64
            " bad frees", what, m->live, m->current, m->bad_frees);
    return 0;
}

/* ---------------------------------------------------------------- PRNG */

uint64_t tt_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t tt_derive_seed(uint64_t seed, uint64_t stream)
{
    uint64_t st = seed ^ (stream * 0xd1b54a32d192ed03ull);
    (void)tt_splitmix64(&st);
    return tt_splitmix64(&st);
}

void tt_rng_seed(tt_rng *r, uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = tt_splitmix64(&st);
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tt_rng_next(tt_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double tt_rng_double(tt_rng *r)
{
    return (double)(tt_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t tt_rng_below(tt_rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    /* Rejection sampling: discard the top partial range so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    uint64_t v;
    do {
        v = tt_rng_next(r);
    } while (v >= limit);
    return v % n;
}

int tt_rng_chance(tt_rng *r, double p)
{
    if (p <= 0.0)
        return 0;
    if (p >= 1.0)
        return 1;
    return tt_rng_double(r) < p;
}

void tt_rand_fill(uint8_t *dst, size_t len, void *user)
{
    tt_rng *r = user;
    while (len >= 8) {
        uint64_t v = tt_rng_next(r);
        for (int i = 0; i < 8; i++)
            dst[i] = (uint8_t)(v >> (8 * i));
        dst += 8;
        len -= 8;
    }
    if (len) {
        uint64_t v = tt_rng_next(r);
        for (size_t i = 0; i < len; i++)
            dst[i] = (uint8_t)(v >> (8 * i));
    }
}
