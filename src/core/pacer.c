/*
 * The pacer: a token bucket in bytes. Tokens accrue at the pacing rate up to a burst allowance
 * (the quantum), and a packet may leave when the bucket holds its size. The quantum is about
 * 1 ms of data at the current rate, never less than two datagrams (so a GSO/sendmmsg batch is
 * worth having) nor more than 16 (so a burst never fills a shallow buffer on its own); at the
 * start it is the initial window of ten datagrams (RFC 9002, 7.7, lets the first flight go at
 * once). A packet sent before its time (the caller ignored tern__pacer_next) puts the bucket in
 * debt: the refill clock moves into the future by the time the excess takes at the rate.
 *
 * Integer arithmetic throughout; products go through 128 bits so rates of tens of Gbit/s and
 * idle periods of hours do not overflow. A rate of 0 means "not paced".
 */
#include "core/cc.h"

#define NS_PER_S 1000000000u
#define PACER_INITIAL_PACKETS 10
#define PACER_MIN_PACKETS 2
#define PACER_MAX_PACKETS 16

static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c)
{
    unsigned __int128 v = (unsigned __int128)a * b / c;
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

/* Adds the tokens earned since p->last. The refill clock moves only by the time the whole
 * tokens it credited took, so nothing is lost to rounding however often this runs. */
static void refill(tern__pacer *p, uint64_t now)
{
    if (now <= p->last) return;
    if (p->rate == 0 || p->tokens >= p->quantum) {
        p->tokens = p->tokens > p->quantum ? p->quantum : p->tokens;
        p->last = now;
        return;
    }
    uint64_t dt = now - p->last;
    uint64_t add = mul_div(p->rate, dt, NS_PER_S);
    if (add >= p->quantum - p->tokens) {
        p->tokens = p->quantum;
        p->last = now;
        return;
    }
    p->tokens += add;
    p->last += mul_div(add, NS_PER_S, p->rate);
}

/* Starts unpaced with a full bucket of the initial window. */
void tern__pacer_init(tern__pacer *p, uint64_t now, size_t max_datagram)
{
    p->rate = 0;
    p->quantum = (uint64_t)PACER_INITIAL_PACKETS * max_datagram;
    p->tokens = p->quantum;
    p->last = now;
}

/* Sets the rate (bytes per second; 0 = unpaced) and the burst quantum that goes with it. Tokens
 * already earned are kept up to the new quantum. */
void tern__pacer_set_rate(tern__pacer *p, uint64_t bytes_per_s, size_t max_datagram)
{
    uint64_t q = bytes_per_s / 1000; /* 1 ms worth */
    uint64_t lo = (uint64_t)PACER_MIN_PACKETS * max_datagram;
    uint64_t hi = (uint64_t)PACER_MAX_PACKETS * max_datagram;
    if (q < lo) q = lo;
    if (q > hi) q = hi;
    p->rate = bytes_per_s;
    p->quantum = q;
    if (p->tokens > q) p->tokens = q;
}

/* The earliest time a packet of `bytes` may leave: now when the bucket holds enough (or the pacer
 * is off), else when enough tokens will have accrued (rounded up to the next nanosecond). */
uint64_t tern__pacer_next(tern__pacer *p, uint64_t now, size_t bytes)
{
    if (p->rate == 0) return now;
    refill(p, now);
    uint64_t need = bytes > p->quantum ? p->quantum : bytes; /* a jumbo still gets out */
    if (p->last <= now && p->tokens >= need) return now;
    /* Tokens accrue from p->last (behind now by less than one byte's time, or ahead of it while
     * the bucket is in debt). */
    uint64_t missing = need > p->tokens ? need - p->tokens : 0;
    unsigned __int128 t =
        (unsigned __int128)p->last + ((unsigned __int128)missing * NS_PER_S + p->rate - 1) / p->rate;
    if (t < now) t = now;
    return t > UINT64_MAX ? UINT64_MAX : (uint64_t)t;
}

/* Takes `bytes` from the bucket; what the bucket lacks becomes debt on the refill clock. */
void tern__pacer_on_sent(tern__pacer *p, uint64_t now, size_t bytes)
{
    if (p->rate == 0) {
        p->last = now > p->last ? now : p->last;
        return;
    }
    refill(p, now);
    if (p->tokens >= bytes) {
        p->tokens -= bytes;
        return;
    }
    uint64_t debt = bytes - p->tokens;
    p->tokens = 0;
    if (p->last < now) p->last = now;
    p->last += mul_div(debt, NS_PER_S, p->rate);
}
