/*
 * CUBIC (RFC 9438). Slow start, recovery periods, persistent congestion and application-limited
 * behaviour are those of NewReno (cc_newreno.c); what differs is the reduction (to beta = 0.7 of
 * the window) and the growth in congestion avoidance, which is a function of the time t since
 * the current avoidance epoch began rather than of the ACK count:
 *
 *     W_cubic(t) = C * (t - K)^3 + W_max,    K = cbrt((W_max - cwnd_epoch) / C),  C = 0.4
 *
 * (windows in datagrams, time in seconds). W_max is the window at the last congestion event,
 * lowered to W_max * (1 + beta) / 2 when the window had not recovered to the previous W_max
 * (fast convergence, 4.7), so a newcomer can take its share. Each ACK moves cwnd a fraction
 * acked / cwnd of the way to the target W_cubic(t + RTT), clamped to [cwnd, 1.5 cwnd] (4.2).
 * Alongside it runs W_est, the window an AIMD flow with alpha = 3 (1 - beta) / (1 + beta) would
 * have (4.3; alpha becomes 1 once W_est passes the window before the reduction): when W_cubic is
 * below W_est, CUBIC is in the Reno-friendly region and uses W_est.
 *
 * Everything is integer: windows in bytes, time in microseconds, the cube and the cube root on
 * 128 bits. C * mds bytes/s^3 = 0.4 * mds; in microseconds that is 4 * mds / 10^19. Fractions of
 * a byte left by the per-ACK increments are carried to the next ACK, so many small ACKs add up
 * to the same window as one large one.
 */
#include <assert.h>

#include "core/cc.h"

#define NS_PER_S 1000000000u
#define US_PER_S 1000000u
/* beta = 7/10; alpha_cubic = 3 (1 - beta) / (1 + beta) = 9/17 */
#define BETA_NUM 7
#define BETA_DEN 10
#define ALPHA_NUM 9
#define ALPHA_DEN 17
#define T_MAX_US (3600ull * US_PER_S) /* time since the epoch saturates at an hour */

typedef struct cubic {
    uint64_t mds;
    uint64_t cwnd;
    uint64_t ssthresh;        /* UINT64_MAX until the first loss */
    uint64_t w_max;           /* bytes: the window at the last congestion event (fast-converged) */
    uint64_t cwnd_prior;      /* bytes: the window just before the last reduction */
    uint64_t cwnd_epoch;      /* bytes: the window when the epoch began */
    uint64_t k_us;            /* K in microseconds */
    uint64_t epoch_start;     /* ns; valid when have_epoch */
    uint64_t w_est;           /* bytes: the Reno-friendly estimate */
    uint64_t est_rem;         /* carried fractions of W_est's growth */
    uint64_t cub_rem;         /* carried fractions of the cubic growth */
    uint64_t recovery_start;
    int have_epoch;
    int in_recovery_ever;
} cubic;

static_assert(sizeof(cubic) <= TERN__CC_STATE_MAX, "cubic state too large");

static uint64_t min_window(const cubic *s) { return 2 * s->mds; }

static uint64_t initial_window(uint64_t mds)
{
    uint64_t w = 2 * mds > 14720 ? 2 * mds : 14720;
    return w < 10 * mds ? w : 10 * mds;
}

/* floor(cbrt(v)) for v < 2^126. */
static uint64_t icbrt(unsigned __int128 v)
{
    uint64_t lo = 0, hi = (uint64_t)1 << 43; /* (2^43)^3 = 2^129 > v */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        unsigned __int128 c = (unsigned __int128)mid * mid * mid;
        if (c <= v)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* W_cubic(t) in bytes for t microseconds after the epoch began; never negative. */
static uint64_t w_cubic(const cubic *s, uint64_t t_us)
{
    if (t_us > T_MAX_US) t_us = T_MAX_US;
    __int128 d = (__int128)t_us - (__int128)s->k_us;
    __int128 cube = d * d * d; /* |d| <= 2^32: fits */
    /* C * mds * d^3 with d in microseconds: 0.4 * mds * d^3 / 10^18 */
    __int128 delta = cube / 1000000000 * (__int128)(4 * s->mds) / 1000000000 / 10;
    __int128 w = (__int128)s->w_max + delta;
    if (w < 0) return 0;
    if (w > (__int128)(UINT64_MAX / 4)) return UINT64_MAX / 4;
    return (uint64_t)w;
}

static void cubic_init(void *st, size_t max_datagram, uint64_t now)
{
    cubic *s = st;
    (void)now;
    *s = (cubic){0};
    s->mds = max_datagram;
    s->cwnd = initial_window(max_datagram);
    s->ssthresh = UINT64_MAX;
}

static void cubic_on_sent(void *st, uint64_t now, size_t bytes, uint64_t bytes_in_flight)
{
    (void)st, (void)now, (void)bytes, (void)bytes_in_flight;
}

static int in_recovery(const cubic *s, uint64_t sent_time)
{
    return s->in_recovery_ever && sent_time <= s->recovery_start;
}

/* A congestion-avoidance epoch begins: K from how far the window is below W_max (4.2). */
static void start_epoch(cubic *s, uint64_t now)
{
    s->have_epoch = 1;
    s->epoch_start = now;
    s->cwnd_epoch = s->cwnd;
    if (s->w_max < s->cwnd) s->w_max = s->cwnd; /* left slow start without a loss */
    if (s->cwnd_prior < s->cwnd) s->cwnd_prior = s->cwnd;
    /* K^3 = (W_max - cwnd_epoch) / (C * mds) s^3 = (W_max - cwnd_epoch) * 10^19 / (4 mds) us^3 */
    unsigned __int128 num = (unsigned __int128)(s->w_max - s->cwnd_epoch) * 10000000000000000000u;
    s->k_us = icbrt(num / (4 * s->mds));
    s->w_est = s->cwnd;
    s->est_rem = 0;
    s->cub_rem = 0;
}

static void cubic_on_ack(void *st, const tern__cc_ack *ack)
{
    cubic *s = st;
    if (in_recovery(s, ack->largest_acked_sent_time)) return;
    if (ack->app_limited) return;
    if (s->cwnd < s->ssthresh) {
        s->cwnd += ack->acked_bytes;
        if (s->cwnd > s->ssthresh) s->cwnd = s->ssthresh; /* the rest goes to avoidance */
        return;
    }
    if (!s->have_epoch) start_epoch(s, ack->now);

    uint64_t rtt = ack->smoothed_rtt ? ack->smoothed_rtt : ack->latest_rtt;
    uint64_t t_us = (ack->now - s->epoch_start) / 1000;

    /* W_est: AIMD(alpha, beta); alpha = 1 once it passes the window before the reduction. */
    uint64_t an = ALPHA_NUM, ad = ALPHA_DEN;
    if (s->w_est >= s->cwnd_prior) an = ad = 1;
    unsigned __int128 en = (unsigned __int128)ack->acked_bytes * s->mds * an + s->est_rem;
    unsigned __int128 ed = (unsigned __int128)ad * s->cwnd;
    s->w_est += (uint64_t)(en / ed);
    s->est_rem = (uint64_t)(en % ed);

    if (w_cubic(s, t_us) < s->w_est) {
        s->cwnd = s->w_est; /* Reno-friendly region */
        return;
    }
    uint64_t target = w_cubic(s, t_us + rtt / 1000);
    if (target < s->cwnd) target = s->cwnd;
    if (target > s->cwnd + s->cwnd / 2) target = s->cwnd + s->cwnd / 2;
    unsigned __int128 cn = (unsigned __int128)(target - s->cwnd) * ack->acked_bytes + s->cub_rem;
    s->cwnd += (uint64_t)(cn / s->cwnd);
    s->cub_rem = (uint64_t)(cn % s->cwnd);
}

static void cubic_on_loss(void *st, const tern__cc_loss *loss)
{
    cubic *s = st;
    if (!in_recovery(s, loss->largest_lost_sent_time)) {
        s->in_recovery_ever = 1;
        s->recovery_start = loss->now;
        s->cwnd_prior = s->cwnd;
        /* fast convergence (4.7) */
        if (s->cwnd < s->w_max)
            s->w_max = s->cwnd * (BETA_DEN + BETA_NUM) / (2 * BETA_DEN);
        else
            s->w_max = s->cwnd;
        s->ssthresh = s->cwnd * BETA_NUM / BETA_DEN;
        if (s->ssthresh < min_window(s)) s->ssthresh = min_window(s);
        s->cwnd = s->ssthresh;
        s->have_epoch = 0; /* the epoch starts with the first ACK after recovery */
    }
    if (loss->persistent) {
        s->cwnd = min_window(s);
        s->have_epoch = 0;
        s->in_recovery_ever = 0;
    }
}

static uint64_t cubic_cwnd(const void *st) { return ((const cubic *)st)->cwnd; }

static uint64_t cubic_pacing_rate(const void *st, uint64_t smoothed_rtt)
{
    const cubic *s = st;
    if (smoothed_rtt == 0) return 0;
    uint64_t gain_x4 = s->cwnd < s->ssthresh ? 8 : 5; /* 2.0 in slow start, else 1.25 */
    return (uint64_t)((unsigned __int128)s->cwnd * gain_x4 * NS_PER_S / 4 / smoothed_rtt);
}

static uint64_t cubic_bandwidth(const void *st, uint64_t smoothed_rtt)
{
    const cubic *s = st;
    if (smoothed_rtt == 0) return 0;
    return (uint64_t)((unsigned __int128)s->cwnd * NS_PER_S / smoothed_rtt);
}

const tern__cc_ops tern__cc_cubic = {
    .name = "cubic",
    .init = cubic_init,
    .on_sent = cubic_on_sent,
    .on_ack = cubic_on_ack,
    .on_loss = cubic_on_loss,
    .cwnd = cubic_cwnd,
    .pacing_rate = cubic_pacing_rate,
    .bandwidth = cubic_bandwidth,
};
