/*
 * Received-packet ranges and the ACK frame (see ack.h). The range set keeps the newest
 * TERN__ACK_RANGES ranges; packets older than the oldest kept range are still rejected as
 * replays by the replay window, so forgetting them only means they are not re-acknowledged.
 */
#include "core/ack.h"

#include <string.h>

#include "core/wire.h"
#include "tern/errors.h"

void tern__ackset_init(tern__ackset *a)
{
    memset(a, 0, sizeof(*a));
    a->ack_deadline = TERN_TIME_NEVER;
}

int tern__ackset_add(tern__ackset *a, uint64_t pn, uint64_t now)
{
    if (a->n == 0) {
        a->r[0].lo = a->r[0].hi = pn;
        a->n = 1;
        a->largest_time = now;
        return pn != 0;
    }
    if (pn > a->r[0].hi) {
        int gap = pn > a->r[0].hi + 1;
        a->largest_time = now;
        if (!gap) {
            a->r[0].hi = pn;
            return 0;
        }
        size_t keep = a->n < TERN__ACK_RANGES ? a->n : TERN__ACK_RANGES - 1;
        memmove(&a->r[1], &a->r[0], keep * sizeof(a->r[0]));
        a->r[0].lo = a->r[0].hi = pn;
        a->n = keep + 1;
        return 1;
    }
    /* below the largest: find its place */
    for (size_t i = 0; i < a->n; i++) {
        tern__range *r = &a->r[i];
        if (pn >= r->lo && pn <= r->hi) return 1; /* duplicate */
        if (pn == r->lo - 1) {
            r->lo = pn;
            /* merge with the next (lower) range */
            if (i + 1 < a->n && a->r[i + 1].hi + 1 == r->lo) {
                r->lo = a->r[i + 1].lo;
                memmove(&a->r[i + 1], &a->r[i + 2], (a->n - i - 2) * sizeof(a->r[0]));
                a->n--;
            }
            return 1;
        }
        if (pn == r->hi + 1) { /* only reachable for i > 0: extends up toward r[i-1] */
            r->hi = pn;
            return 1;
        }
        if (pn > r->hi) {
            /* a new range between r[i-1] and r[i] */
            if (a->n == TERN__ACK_RANGES) {
                if (i == TERN__ACK_RANGES) return 1;
                a->n--; /* forget the oldest */
            }
            memmove(&a->r[i + 1], &a->r[i], (a->n - i) * sizeof(a->r[0]));
            a->r[i].lo = a->r[i].hi = pn;
            a->n++;
            return 1;
        }
    }
    /* older than every kept range */
    if (a->n < TERN__ACK_RANGES) {
        a->r[a->n].lo = a->r[a->n].hi = pn;
        a->n++;
    }
    return 1;
}

uint8_t *tern__ack_encode(const tern__ackset *a, uint64_t now, uint8_t *p, const uint8_t *end)
{
    if (a->n == 0) return NULL;
    uint64_t delay_us = now > a->largest_time ? (now - a->largest_time) / 1000 : 0;
    /* encode as many ranges as fit */
    uint8_t *start = p;
    p = tern__put_varint(p, end, TERN__FRAME_ACK);
    p = tern__put_varint(p, end, a->r[0].hi);
    p = tern__put_varint(p, end, delay_us);
    uint8_t *count_at = p;
    p = tern__put_varint(p, end, 0); /* placeholder: 1 byte, fixed below (n < 64) */
    p = tern__put_varint(p, end, a->r[0].hi - a->r[0].lo);
    if (p == NULL) return NULL;
    size_t written = 0;
    for (size_t i = 1; i < a->n; i++) {
        uint64_t gap = a->r[i - 1].lo - a->r[i].hi - 2;
        uint64_t len = a->r[i].hi - a->r[i].lo;
        uint8_t *q = tern__put_varint(p, end, gap);
        q = tern__put_varint(q, end, len);
        if (q == NULL) break;
        p = q;
        written++;
    }
    *count_at = (uint8_t)written; /* < 64: a one-byte varint */
    (void)start;
    return p;
}

const uint8_t *tern__ack_decode(const uint8_t *p, const uint8_t *end, tern__ack_frame *f,
                                int *err)
{
    uint64_t count, first;
    memset(f, 0, sizeof(*f));
    p = tern__get_varint(p, end, &f->largest);
    p = tern__get_varint(p, end, &f->ack_delay_us);
    p = tern__get_varint(p, end, &count);
    p = tern__get_varint(p, end, &first);
    if (p == NULL) goto truncated;
    if (first > f->largest) goto malformed;
    f->r[0].hi = f->largest;
    f->r[0].lo = f->largest - first;
    f->n = 1;
    uint64_t next_hi_limit = f->r[0].lo; /* the next range ends at least 2 below this */
    for (uint64_t i = 0; i < count; i++) {
        uint64_t gap, len;
        p = tern__get_varint(p, end, &gap);
        p = tern__get_varint(p, end, &len);
        if (p == NULL) goto truncated;
        if (next_hi_limit < gap + 2) goto malformed;
        uint64_t hi = next_hi_limit - gap - 2;
        if (len > hi) goto malformed;
        if (f->n < TERN__ACK_RANGES) {
            f->r[f->n].hi = hi;
            f->r[f->n].lo = hi - len;
            f->n++;
        }
        next_hi_limit = hi - len;
    }
    return p;
truncated:
    *err = TERN_ERR_TRUNCATED;
    return NULL;
malformed:
    *err = TERN_ERR_MALFORMED;
    return NULL;
}
