/*
 * Internal data structures: a sliding replay window of TERN__REPLAY_WINDOW packet numbers.
 */
#include "core/util.h"

#include <string.h>

#include "tern/errors.h"

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
