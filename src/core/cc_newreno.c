/*
 * NewReno as RFC 9002 (section 7 and appendix B) describes it for QUIC, which is RFC 6582's
 * window arithmetic without its fast-recovery bookkeeping: selective ACKs and never-reused
 * packet numbers make "partial ACKs" unnecessary.
 *
 * Slow start grows the window by every acknowledged byte (doubling per round trip) until the
 * first loss; congestion avoidance adds one datagram per window's worth of ACKs. A loss of a
 * packet sent after the current recovery period began starts a new period: the window halves
 * once (ssthresh = cwnd / 2) and stays put until an ACK arrives for a packet sent inside the
 * period; further losses of packets sent before the period began are the same congestion event.
 * Persistent congestion (RFC 9002, 7.6) collapses the window to its minimum of two datagrams.
 * While the sender is application-limited the window does not grow (RFC 9002, 7.8).
 *
 * The pacing rate is 1.25 x cwnd / smoothed_rtt (RFC 9002, 7.7), 2 x in slow start so pacing never
 * holds the doubling back.
 */
#include <assert.h>

#include "core/cc.h"

#define NS_PER_S 1000000000u

typedef struct newreno {
    uint64_t mds;             /* max datagram size */
    uint64_t cwnd;
    uint64_t ssthresh;        /* UINT64_MAX until the first loss */
    uint64_t recovery_start;  /* when the current recovery period began */
    uint64_t acked_in_ca;     /* bytes acknowledged toward the next congestion-avoidance step */
    int in_recovery_ever;     /* recovery_start is meaningful */
} newreno;

static_assert(sizeof(newreno) <= TERN__CC_STATE_MAX, "newreno state too large");

static uint64_t min_window(const newreno *s) { return 2 * s->mds; }

/* RFC 9002, 7.2: min(10 * mds, max(2 * mds, 14720)). */
static uint64_t initial_window(uint64_t mds)
{
    uint64_t w = 2 * mds > 14720 ? 2 * mds : 14720;
    return w < 10 * mds ? w : 10 * mds;
}

static void nr_init(void *st, size_t max_datagram, uint64_t now)
{
    newreno *s = st;
    (void)now;
    s->mds = max_datagram;
    s->cwnd = initial_window(max_datagram);
    s->ssthresh = UINT64_MAX;
    s->recovery_start = 0;
    s->acked_in_ca = 0;
    s->in_recovery_ever = 0;
}

static void nr_on_sent(void *st, uint64_t now, size_t bytes, uint64_t bytes_in_flight)
{
    (void)st, (void)now, (void)bytes, (void)bytes_in_flight;
}

static int in_recovery(const newreno *s, uint64_t sent_time)
{
    return s->in_recovery_ever && sent_time <= s->recovery_start;
}

static void nr_on_ack(void *st, const tern__cc_ack *ack)
{
    newreno *s = st;
    if (in_recovery(s, ack->largest_acked_sent_time)) return;
    if (ack->app_limited) return;
    if (s->cwnd < s->ssthresh) {
        s->cwnd += ack->acked_bytes; /* slow start */
        return;
    }
    s->acked_in_ca += ack->acked_bytes;
    while (s->acked_in_ca >= s->cwnd) {
        s->acked_in_ca -= s->cwnd;
        s->cwnd += s->mds;
    }
}

static void nr_on_loss(void *st, const tern__cc_loss *loss)
{
    newreno *s = st;
    if (!in_recovery(s, loss->largest_lost_sent_time)) { /* else: the same congestion event */
        s->in_recovery_ever = 1;
        s->recovery_start = loss->now;
        s->ssthresh = s->cwnd / 2;
        if (s->ssthresh < min_window(s)) s->ssthresh = min_window(s);
        s->cwnd = s->ssthresh;
        s->acked_in_ca = 0;
    }
    if (loss->persistent) {
        s->cwnd = min_window(s);
        s->acked_in_ca = 0;
        s->in_recovery_ever = 0; /* RFC 9002: the recovery period ends too */
    }
}

static uint64_t nr_cwnd(const void *st) { return ((const newreno *)st)->cwnd; }

static uint64_t nr_pacing_rate(const void *st, uint64_t smoothed_rtt)
{
    const newreno *s = st;
    if (smoothed_rtt == 0) return 0;
    uint64_t gain_x4 = s->cwnd < s->ssthresh ? 8 : 5; /* 2.0 or 1.25 */
    return (uint64_t)((unsigned __int128)s->cwnd * gain_x4 * NS_PER_S / 4 / smoothed_rtt);
}

static uint64_t nr_bandwidth(const void *st, uint64_t smoothed_rtt)
{
    const newreno *s = st;
    if (smoothed_rtt == 0) return 0;
    return (uint64_t)((unsigned __int128)s->cwnd * NS_PER_S / smoothed_rtt);
}

const tern__cc_ops tern__cc_newreno = {
    .name = "newreno",
    .init = nr_init,
    .on_sent = nr_on_sent,
    .on_ack = nr_on_ack,
    .on_loss = nr_on_loss,
    .cwnd = nr_cwnd,
    .pacing_rate = nr_pacing_rate,
    .bandwidth = nr_bandwidth,
};
