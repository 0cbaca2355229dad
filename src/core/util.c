/*
 * Internal data structures: fixed-size per-source token buckets (memory does not grow with the
 * number of sources) and a sliding replay window of TERN__REPLAY_WINDOW packet numbers.
 */
#include "core/util.h"

#include <sodium.h>
#include <string.h>

#include "tern/errors.h"

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
