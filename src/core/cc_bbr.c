/*
 * A BBR-style rate-based controller (after draft-cardwell-iccrg-bbr-congestion-control, BBR v1,
 * with one element of v2): the default for real-time media, because it does not read random
 * loss as congestion and keeps the bottleneck queue short.
 *
 * The model is two numbers: the bottleneck bandwidth, the maximum delivery rate (rate.c) seen
 * over the last 10 round trips, and the round-trip propagation time, the minimum RTT seen over
 * the last 10 s. Their product is the BDP. The sender paces at pacing_gain x bandwidth and keeps
 * at most cwnd_gain x BDP + a send quantum + the ACK aggregation seen lately in flight. A round
 * trip ends when a packet sent after the previous round ended is acknowledged.
 *
 * ACK aggregation (BBR v1 as deployed, the draft's "extra_acked"): once the pipe is full, the
 * window also holds the largest excess of acknowledged data over what the bandwidth estimate
 * would have delivered since an aggregation epoch began, the maximum over the last 5-10 rounds
 * (at most the window, at most 100 ms at the estimated rate). A receiver that answers in bursts
 * (it sleeps between batches, delays ACKs, or, on loopback, spends tens of microseconds in the
 * application before it gets to acknowledge) would otherwise hold a window of 2 BDP computed from
 * a min RTT far below the ACK interval: the sender stalls between bursts, the samples never show
 * more, and the estimate stays at that fixed point (measured on loopback with tern send: 1-2
 * Gbit/s instead of 4).
 *
 * States:
 *   STARTUP    pacing and cwnd gain 2/ln2 = 2.885 (the rate doubles each round) until the
 *              bandwidth estimate has grown less than 25% in three rounds: the pipe is full;
 *   DRAIN      pacing gain 1/2.885 until what is in flight falls to one BDP (the startup queue
 *              is gone);
 *   PROBE_BW   cwnd gain 2; the pacing gain cycles through 1.25, 0.75, 1, 1, 1, 1, 1, 1, one
 *              phase per min RTT (1.25 goes on past that until it has put 1.25 BDP in flight or
 *              seen a loss; 0.75 ends early once in flight is down to one BDP). It
 *              starts at a pseudo-random phase other than 0.75 so flows sharing a link do not
 *              probe in step;
 *   PROBE_RTT  when no RTT sample has matched or lowered the min RTT for 10 s: at most half a
 *              BDP in flight (BBRv2; v1's 4 datagrams idle a long path) for max(200 ms, one
 *              round), so the queue empties and the min
 *              RTT can be measured again; then back to PROBE_BW (or STARTUP if the pipe was never
 *              filled). Not entered by a sender application-limited for the last two rounds
 *              (live media): its least RTT sample of those rounds becomes the minimum.
 *
 * Loss: random loss of a few per cent changes nothing (BBR v1 behaviour; a Reno-style halving
 * on every loss is what makes loss-based controllers collapse on lossy radio links). From v2 it
 * borrows a bound for heavy loss: a round trip that lost more than 15% of its data (and at least
 * 8 datagrams) caps what may be in flight at 85% of what was in flight then (inflight_hi), and
 * ends STARTUP. The cap grows back while rounds stay below the threshold, by 1, 2, 4, ...
 * datagrams per round. Loss seen while the RTT shows a standing queue (more than 1.25 x min RTT)
 * is congestion, not radio noise: a round in which such loss passes 2% (and 3 datagrams) sets
 * the same cap and scales the bandwidth filter by 0.7 (v2's beta). Without this, flows sharing
 * a shallow buffer each keep an estimate above their share, sit window-limited on a full queue,
 * and any split between them is stable (measured: Jain 0.75 for two flows, now 0.99). Persistent
 * congestion sets the window to its minimum of 4 datagrams, from where it grows by the acknowledged
 * bytes.
 *
 * Radio loss on long paths (bench/media/files.sh: 1.1 and 10 Mbit/s, 300-600 ms, 1-3% random or
 * bursty loss, a buffer of one BDP):
 *   - the background loss, an average (weight 1/8 per round) of the loss of rounds without a
 *     standing queue, raises the congestive threshold to 2% + twice that, plus one burst of 4
 *     datagrams when it is not 0 (one radio burst is 10-15% of a round at 1.1 Mbit/s), and
 *     the pacing rate is divided by (1 - background loss), at most 10%: the estimate counts
 *     delivered bytes, but loss after the bottleneck used the link too (3% idle otherwise);
 *   - STARTUP's overshoot into a buffer of one BDP (up to 3 BDP in flight at 2.885 x) is lost
 *     and reported in the round that ends STARTUP and the two after it: that loss does not scale
 *     the estimate again (DRAIN already answers it), and a cap it sets grows back by an eighth
 *     of itself, doubling, not from one datagram (measured at 10 Mbit/s, 300 ms: seven rounds
 *     at 60-80% of the link, now three). A delay-based STARTUP exit (HyStart-like) avoided the
 *     overshoot but left a flow joining a busy link with a small share for good (Jain 0.76-0.88
 *     in test_cc's two-flow model), so it is not used;
 *   - an RTT sample within min RTT / 128 of the minimum re-stamps it (below).
 *
 * Integer arithmetic; gains in thousandths. Deterministic: the pseudo-random start phase is
 * drawn from a hash of the time.
 */
#include <assert.h>

#include "core/cc.h"

#define NS_PER_S 1000000000ull
#define MS 1000000ull

#define GAIN_UNIT 1000
#define STARTUP_GAIN 2885      /* 2 / ln 2 */
#define DRAIN_GAIN 347         /* 1 / 2.885 */
#define CWND_GAIN 2000
#define PACING_MARGIN 99       /* pace at 99% of the estimate (percent) */
#define BW_FILTER_ROUNDS 10
#define MIN_RTT_WINDOW (10 * NS_PER_S)
#define PROBE_RTT_TIME (200 * MS)
#define MIN_CWND_PACKETS 4
#define HEADROOM_PACKETS 3
#define FULL_BW_GROWTH 1250    /* thousandths: 25% */
#define FULL_BW_ROUNDS 3
#define LOSS_THRESH 150        /* thousandths of a round's data */
#define CONG_LOSS_THRESH 20    /* thousandths: loss while a queue stands */
#define CONG_LOSS_MIN_PACKETS 3
#define BW_BETA 700            /* thousandths: the bandwidth estimate after congestive loss */
#define LOSS_MIN_PACKETS 8
#define INFLIGHT_HI_BETA 850   /* thousandths */
#define CYCLE_LEN 8
#define EXTRA_ACKED_WIN_ROUNDS 5     /* each of the two aggregation maxima covers 5 rounds */
#define EXTRA_ACKED_MAX_NS (100 * MS) /* aggregation allowance: at most 100 ms at the estimate */
#define ACK_EPOCH_RESET_BYTES (1u << 20)
#define BG_LOSS_SHIFT 3           /* background loss: EWMA over rounds, weight 1/8 */
#define BURST_ALLOWANCE_PACKETS 4 /* one burst of radio loss (with background loss) */

enum { BBR_STARTUP, BBR_DRAIN, BBR_PROBE_BW, BBR_PROBE_RTT };

static const uint16_t cycle_gain[CYCLE_LEN] = {1250, 750, 1000, 1000, 1000, 1000, 1000, 1000};

typedef struct bbr {
    uint64_t mds;
    uint64_t cwnd;
    uint64_t pacing_rate;            /* bytes/s; 0 until the first bandwidth sample */
    uint64_t bw_hist[BW_FILTER_ROUNDS]; /* the largest sample of each of the last rounds */
    uint64_t max_bw;                 /* max of bw_hist */
    uint64_t min_rtt;                /* UINT64_MAX until the first sample */
    uint64_t min_rtt_stamp;
    uint64_t delivered;              /* bytes acknowledged so far */
    uint64_t next_round_delivered;
    uint64_t round_count;
    uint64_t full_bw;
    uint64_t cycle_stamp;
    uint64_t probe_rtt_done_stamp;   /* 0 while waiting for in flight to fall to 4 datagrams */
    uint64_t prior_cwnd;
    uint64_t inflight_hi;            /* 0: no cap */
    uint64_t inflight_hi_step;
    uint64_t round_lost, round_delivered;
    uint64_t round_cong_lost;        /* lost while the RTT showed a standing queue */
    uint32_t bg_loss;                /* thousandths: loss of rounds without a standing queue */
    uint64_t last_rtt;
    uint64_t round_min_rtt, prev_round_min_rtt; /* least RTT sample of this and the last round */
    uint64_t rand_state;
    uint64_t pipe_filled_round;      /* the round STARTUP ended */
    uint64_t extra_acked[2];         /* the largest aggregation excess of two windows of rounds */
    uint64_t ack_epoch_start;        /* when the current aggregation epoch began */
    uint64_t ack_epoch_acked;        /* bytes acknowledged since then */
    uint8_t extra_acked_win_rounds;
    uint8_t extra_acked_win_idx;
    uint32_t pacing_gain, cwnd_gain;
    uint8_t state;
    uint8_t full_bw_count;
    uint8_t filled_pipe;
    uint8_t cycle_index;
    uint8_t probe_rtt_round_done;
    uint8_t idle_restart;
    uint8_t loss_in_cycle_phase;
    uint8_t round_cwnd_limited, prev_round_cwnd_limited; /* a sample not app-limited came */
} bbr;

static_assert(sizeof(bbr) <= TERN__CC_STATE_MAX, "bbr state too large");

static uint64_t min_cwnd(const bbr *s) { return MIN_CWND_PACKETS * s->mds; }

static uint64_t bdp(const bbr *s, uint32_t gain);

/* The window while probing the RTT: half a BDP (BBRv2), not BBRv1's 4 datagrams. Half a BDP
 * still empties a standing queue, and on a 300 ms path BBRv1's 4 datagrams cost 6-9% of the
 * throughput (a near-idle RTT plus 200 ms every 10 s). */
static uint64_t probe_rtt_cwnd(const bbr *s)
{
    uint64_t w = bdp(s, GAIN_UNIT / 2);
    return w < min_cwnd(s) ? min_cwnd(s) : w;
}

/* The initial window: 32 datagrams (RFC 9002's is 10). BBR paces it (2.885 x the window per
 * handshake RTT, so it leaves over about a third of the first round, not as one burst), which is
 * what makes a larger one safe; on a long path each doubling it saves is a round trip of an
 * almost idle link (300 ms at 10 Mbit/s: 0.3 s of a 24 s transfer per round). */
#define INITIAL_WINDOW_PACKETS 32

static uint64_t initial_window(uint64_t mds)
{
    return INITIAL_WINDOW_PACKETS * mds;
}

static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c)
{
    unsigned __int128 v = (unsigned __int128)a * b / c;
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

/* gain x BDP in bytes; the initial window while there is no model yet. */
static uint64_t bdp(const bbr *s, uint32_t gain)
{
    if (s->min_rtt == UINT64_MAX || s->max_bw == 0)
        return mul_div(initial_window(s->mds), gain, GAIN_UNIT);
    return mul_div(mul_div(s->max_bw, s->min_rtt, NS_PER_S), gain, GAIN_UNIT);
}

static uint64_t next_rand(bbr *s)
{
    uint64_t z = (s->rand_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void enter_startup(bbr *s)
{
    s->state = BBR_STARTUP;
    s->pacing_gain = STARTUP_GAIN;
    s->cwnd_gain = STARTUP_GAIN;
}

static void enter_probe_bw(bbr *s, uint64_t now)
{
    s->state = BBR_PROBE_BW;
    s->cwnd_gain = CWND_GAIN;
    s->rand_state ^= now;
    /* any phase but 0.75 (index 1) */
    uint8_t i = (uint8_t)(2 + next_rand(s) % (CYCLE_LEN - 1));
    s->cycle_index = i % CYCLE_LEN;
    s->pacing_gain = cycle_gain[s->cycle_index];
    s->cycle_stamp = now;
    s->loss_in_cycle_phase = 0;
}

static void bbr_init(void *st, size_t max_datagram, uint64_t now)
{
    bbr *s = st;
    *s = (bbr){0};
    s->mds = max_datagram;
    s->cwnd = initial_window(max_datagram);
    s->min_rtt = UINT64_MAX;
    s->min_rtt_stamp = now;
    s->round_min_rtt = s->prev_round_min_rtt = UINT64_MAX;
    s->prev_round_cwnd_limited = 1; /* no round seen yet */
    s->rand_state = 0x5bd1e995u ^ now;
    enter_startup(s);
}

/* Restarting from idle: in PROBE_BW pace at the estimate itself rather than a probing gain. */
static void bbr_on_sent(void *st, uint64_t now, size_t bytes, uint64_t bytes_in_flight)
{
    bbr *s = st;
    (void)now, (void)bytes;
    if (bytes_in_flight == 0 && s->delivered > 0) {
        s->idle_restart = 1;
        if (s->state == BBR_PROBE_BW && s->max_bw)
            s->pacing_rate = s->max_bw * PACING_MARGIN / 100;
    }
}

/* The max filter of the bandwidth: a slot per round for the last BW_FILTER_ROUNDS rounds, each
 * the largest sample accepted in its round, emptied when its round comes again. A sample is
 * accepted unless it is application-limited and below the estimate (it then says only what the
 * application sent), or when its RTT shows a standing queue: delivered while the bottleneck
 * was busy, it measures the link whatever was sent. A live sender whose link rate fell queues
 * until its encoder slows, and its samples of that queue are the new rate; rejected, they left
 * the filter empty ten rounds later and the estimate fell to the next sample that passed, far
 * below the link (test_target_sim, 10 -> 2 Mbit/s: 0.41-0.95 Mbit/s; now 1.1-1.8). Slots are
 * still emptied by round, not only when an accepted sample comes (Linux's filter): that held
 * the old 10 Mbit/s through the whole 2 Mbit/s phase, and the target's probes built 250-320 ms
 * queues. */
static void update_bw(bbr *s, const tern__cc_ack *ack, int round_start)
{
    uint64_t slot = s->round_count % BW_FILTER_ROUNDS;
    if (round_start) s->bw_hist[slot] = 0;
    const tern__rate_sample *rs = &ack->rs;
    int queued = rs->rtt_ns && s->min_rtt != UINT64_MAX && rs->rtt_ns > s->min_rtt + s->min_rtt / 4;
    if (rs->delivery_rate && (!rs->is_app_limited || queued || rs->delivery_rate >= s->max_bw)) {
        if (rs->delivery_rate > s->bw_hist[slot]) s->bw_hist[slot] = rs->delivery_rate;
    }
    uint64_t m = 0;
    for (int i = 0; i < BW_FILTER_ROUNDS; i++)
        if (s->bw_hist[i] > m) m = s->bw_hist[i];
    s->max_bw = m;
}

/* Called when a round ends: was it a round of heavy loss, or of loss from a standing queue? */
static void check_round_loss(bbr *s, uint64_t inflight)
{
    uint64_t lost = s->round_lost, total = s->round_lost + s->round_delivered;
    uint64_t cong = s->round_cong_lost;
    int overshoot = !s->filled_pipe || s->round_count <= s->pipe_filled_round + 2;
    int heavy = lost >= LOSS_MIN_PACKETS * s->mds && lost * GAIN_UNIT > LOSS_THRESH * total;
    /* Loss the path shows with no queue standing (radio loss) is not a sign of congestion: a
     * queued round is congestive only when its loss passes that background by the threshold
     * (with 3% random loss every round that probes with a small queue would otherwise cut the
     * estimate by 30%). */
    uint64_t burst = s->bg_loss ? BURST_ALLOWANCE_PACKETS * s->mds : 0;
    int congestive = cong >= CONG_LOSS_MIN_PACKETS * s->mds &&
                     cong * GAIN_UNIT >
                         (CONG_LOSS_THRESH + 2 * (uint64_t)s->bg_loss) * total + burst * GAIN_UNIT;
    if (total >= LOSS_MIN_PACKETS * s->mds && cong == 0) {
        uint64_t frac = lost * GAIN_UNIT / total;
        s->bg_loss =
            (uint32_t)(s->bg_loss - (s->bg_loss >> BG_LOSS_SHIFT) + (frac >> BG_LOSS_SHIFT));
    }
    if (heavy || congestive) {
        uint64_t base = inflight;
        if (s->inflight_hi && s->inflight_hi < base) base = s->inflight_hi;
        if (base < bdp(s, GAIN_UNIT) / 2 && !s->inflight_hi) base = bdp(s, GAIN_UNIT) / 2;
        s->inflight_hi = mul_div(base, INFLIGHT_HI_BETA, GAIN_UNIT);
        /* A round of heavy loss that ends STARTUP is its own overshoot (at 2.885 x it puts up
         * to 3 BDP in flight, and a buffer of one BDP drops the rest): the path still carries
         * one BDP, so that cap is at least one BDP. The overshoot is mostly reported in the
         * rounds after (in DRAIN, with little in flight): a cap set then starts from what is in
         * flight then (about 0.6 BDP) and grows back by an eighth of itself, doubling, rather
         * than one datagram (seven rounds at 60-80% of the link at 10 Mbit/s, 300 ms). */
        uint64_t floor = bdp(s, GAIN_UNIT) + HEADROOM_PACKETS * s->mds;
        if (s->state == BBR_STARTUP && s->inflight_hi < floor) s->inflight_hi = floor;
        if (s->inflight_hi < min_cwnd(s)) s->inflight_hi = min_cwnd(s);
        s->inflight_hi_step = overshoot ? s->inflight_hi / 8 : s->mds;
        if (s->inflight_hi_step < s->mds) s->inflight_hi_step = s->mds;
        if (s->state == BBR_STARTUP) s->filled_pipe = 1;
    } else if (s->inflight_hi && lost * GAIN_UNIT <= LOSS_THRESH / 2 * total) {
        s->inflight_hi += s->inflight_hi_step;
        if (s->inflight_hi_step < s->inflight_hi / 4) s->inflight_hi_step *= 2;
        /* far above anything the model asks for: lift the cap */
        if (s->inflight_hi > 2 * bdp(s, CWND_GAIN) + 4 * s->mds) s->inflight_hi = 0;
    }
    if (congestive && !overshoot) { /* STARTUP's overshoot: DRAIN answers it */
        /* The queue did not drain and overflowed: flows sharing the link estimate more than it
         * carries between them. Lower every entry of the max filter so the estimate falls now,
         * not 10 rounds later; every flow that saw the loss scales down alike. */
        for (int i = 0; i < BW_FILTER_ROUNDS; i++)
            s->bw_hist[i] = mul_div(s->bw_hist[i], BW_BETA, GAIN_UNIT);
    }
    s->round_lost = 0;
    s->round_cong_lost = 0;
    s->round_delivered = 0;
}

/* The ACK aggregation estimate: how far ahead of the bandwidth estimate the ACKs have run. An
 * epoch starts whenever the ACKs have fallen behind the estimated rate (or after 1 MiB); within
 * it, acknowledged bytes beyond max_bw x the time since its start are the excess. */
static void update_ack_aggregation(bbr *s, const tern__cc_ack *ack, int round_start)
{
    if (ack->acked_bytes == 0 || s->max_bw == 0) return;
    if (round_start && ++s->extra_acked_win_rounds >= EXTRA_ACKED_WIN_ROUNDS) {
        s->extra_acked_win_rounds = 0;
        s->extra_acked_win_idx ^= 1;
        s->extra_acked[s->extra_acked_win_idx] = 0;
    }
    uint64_t now = ack->now;
    uint64_t elapsed = now > s->ack_epoch_start ? now - s->ack_epoch_start : 0;
    uint64_t expected = mul_div(s->max_bw, elapsed, NS_PER_S);
    if (s->ack_epoch_acked <= expected ||
        s->ack_epoch_acked + ack->acked_bytes >= ACK_EPOCH_RESET_BYTES) {
        s->ack_epoch_acked = 0;
        s->ack_epoch_start = now;
        expected = 0;
    }
    s->ack_epoch_acked += ack->acked_bytes;
    uint64_t extra = s->ack_epoch_acked - expected;
    if (extra > s->cwnd) extra = s->cwnd;
    if (extra > s->extra_acked[s->extra_acked_win_idx]) s->extra_acked[s->extra_acked_win_idx] = extra;
}

static uint64_t aggregation_allowance(const bbr *s)
{
    uint64_t a = s->extra_acked[0] > s->extra_acked[1] ? s->extra_acked[0] : s->extra_acked[1];
    uint64_t cap = mul_div(s->max_bw, EXTRA_ACKED_MAX_NS, NS_PER_S);
    return a < cap ? a : cap;
}

static void check_full_pipe(bbr *s, const tern__cc_ack *ack, int round_start)
{
    if (s->filled_pipe || !round_start || ack->rs.is_app_limited) return;
    if (s->max_bw * GAIN_UNIT >= s->full_bw * FULL_BW_GROWTH) {
        s->full_bw = s->max_bw;
        s->full_bw_count = 0;
        return;
    }
    if (++s->full_bw_count >= FULL_BW_ROUNDS) s->filled_pipe = 1;
}

static void update_cycle(bbr *s, const tern__cc_ack *ack)
{
    uint64_t now = ack->now;
    int full_length = s->min_rtt != UINT64_MAX && now - s->cycle_stamp > s->min_rtt;
    int advance;
    if (s->pacing_gain > GAIN_UNIT)
        advance = full_length &&
                  (s->loss_in_cycle_phase || ack->prior_in_flight >= bdp(s, s->pacing_gain));
    else if (s->pacing_gain < GAIN_UNIT)
        advance = full_length || ack->prior_in_flight <= bdp(s, GAIN_UNIT);
    else
        advance = full_length;
    if (!advance) return;
    s->cycle_index = (uint8_t)((s->cycle_index + 1) % CYCLE_LEN);
    s->pacing_gain = cycle_gain[s->cycle_index];
    s->cycle_stamp = now;
    s->loss_in_cycle_phase = 0;
}

static void update_probe_rtt(bbr *s, const tern__cc_ack *ack, int expired, int round_start)
{
    uint64_t now = ack->now;
    if (s->state != BBR_PROBE_RTT && expired && !s->idle_restart) {
        s->state = BBR_PROBE_RTT;
        s->pacing_gain = GAIN_UNIT;
        s->cwnd_gain = GAIN_UNIT;
        s->prior_cwnd = s->cwnd;
        s->probe_rtt_done_stamp = 0;
        s->probe_rtt_round_done = 0;
    }
    if (s->state != BBR_PROBE_RTT) return;
    if (s->probe_rtt_done_stamp == 0) {
        if (ack->bytes_in_flight <= probe_rtt_cwnd(s)) {
            s->probe_rtt_done_stamp = now + PROBE_RTT_TIME;
            s->probe_rtt_round_done = 0;
            s->next_round_delivered = s->delivered; /* wait for one full round from here */
        }
        return;
    }
    if (round_start) s->probe_rtt_round_done = 1;
    if (s->probe_rtt_round_done && now >= s->probe_rtt_done_stamp) {
        s->min_rtt_stamp = now;
        if (s->cwnd < s->prior_cwnd) s->cwnd = s->prior_cwnd;
        if (s->filled_pipe)
            enter_probe_bw(s, now);
        else
            enter_startup(s);
    }
}

static void set_controls(bbr *s, const tern__cc_ack *ack)
{
    if (s->max_bw) {
        uint64_t rate = mul_div(s->max_bw, s->pacing_gain, GAIN_UNIT) * PACING_MARGIN / 100;
        /* The estimate counts delivered bytes; what random loss takes was sent too, and where
         * it is lost after the bottleneck (a radio hop) it used the link: paced at the delivery
         * rate, a flow with 3% background loss leaves 3% of the link idle. Send that much more
         * (the background loss of rounds without a standing queue, at most 10%). */
        uint32_t bg = s->bg_loss < 100 ? s->bg_loss : 100;
        rate = mul_div(rate, GAIN_UNIT, GAIN_UNIT - bg);
        if (!s->filled_pipe && s->pacing_rate == 0 && ack->smoothed_rtt) {
            /* Start from the initial window per RTT, as before any sample: the first samples
             * often come from small app-limited exchanges (a handshake, pings) and would pin
             * the pacing rate far below the path's (startup only ever raises it). */
            uint64_t init = mul_div(mul_div(s->cwnd, STARTUP_GAIN, GAIN_UNIT), NS_PER_S,
                                    ack->smoothed_rtt);
            if (init > rate) rate = init;
        }
        if (s->filled_pipe || rate > s->pacing_rate) s->pacing_rate = rate;
    }
    /* Headroom for ACKs that come back in bursts: at least 3 datagrams, or 1 ms of data at the
     * estimated rate (at most 64 KB), as Linux sizes its send quantum. On a path whose min RTT
     * is tens of microseconds (loopback, a LAN) the ACK clock is coarser than the RTT, and a
     * window of 2 BDP + 3 datagrams caps the rate far below the path's: the samples then never
     * show more. */
    uint64_t headroom = s->max_bw / 1000;
    if (headroom > 65536) headroom = 65536;
    if (headroom < HEADROOM_PACKETS * s->mds) headroom = HEADROOM_PACKETS * s->mds;
    uint64_t target = bdp(s, s->cwnd_gain) + headroom;
    if (s->filled_pipe) target += aggregation_allowance(s);
    if (s->filled_pipe) {
        uint64_t w = s->cwnd + ack->acked_bytes;
        s->cwnd = w < target ? w : target;
    } else if (s->cwnd < target || s->delivered < initial_window(s->mds)) {
        s->cwnd += ack->acked_bytes;
    }
    if (s->cwnd < min_cwnd(s)) s->cwnd = min_cwnd(s);
    if (s->state == BBR_PROBE_RTT && s->cwnd > probe_rtt_cwnd(s)) s->cwnd = probe_rtt_cwnd(s);
}

static void bbr_on_ack(void *st, const tern__cc_ack *ack)
{
    bbr *s = st;
    const tern__rate_sample *rs = &ack->rs;
    uint64_t now = ack->now;

    s->delivered += ack->acked_bytes;
    s->round_delivered += ack->acked_bytes;

    int round_start = 0;
    if (ack->acked_bytes && (rs->delivered || rs->interval_ns) &&
        rs->prior_delivered >= s->next_round_delivered) {
        s->next_round_delivered = s->delivered;
        s->round_count++;
        round_start = 1;
        check_round_loss(s, ack->prior_in_flight);
        s->prev_round_min_rtt = s->round_min_rtt;
        s->prev_round_cwnd_limited = s->round_cwnd_limited;
        s->round_min_rtt = UINT64_MAX;
        s->round_cwnd_limited = 0;
    }
    update_bw(s, ack, round_start);
    update_ack_aggregation(s, ack, round_start);

    uint64_t rtt = rs->rtt_ns ? rs->rtt_ns : ack->latest_rtt;
    if (rtt) s->last_rtt = rtt;
    int expired = now > s->min_rtt_stamp + MIN_RTT_WINDOW;
    if (rtt) {
        if (rtt < s->round_min_rtt) s->round_min_rtt = rtt;
        if (!rs->is_app_limited) s->round_cwnd_limited = 1;
    }
    /* An application-limited sender needs no PROBE_RTT (BBRv2 lets its min RTT refresh
     * without one too): it leaves gaps, so what it queues at the bottleneck drains between
     * its bursts while it sends less than the link carries, and the least RTT of its recent
     * samples is what PROBE_RTT would measure. When the minimum expires while this round and
     * the last one were application-limited throughout, the least sample of those two rounds
     * becomes the minimum and PROBE_RTT is not entered. The limit of this: a sender that
     * produces slightly more than the link carries is window-limited only once its queue
     * passes about a BDP (the window is 2 BDP); until then a queue of its own stays in that
     * sample (a live encoder is expected to follow the target rate, which drains such a
     * queue: target_rate.c). For live media PROBE_RTT's cap and its 200 ms and a round of
     * waiting hold frames back past their playout time (test_fec_sim's live cell, 1.1
     * Mbit/s, 300 ms, 1%: 97.4% of frames on time with it, 99.96% without); a queue other
     * flows keep is not drained by one flow's PROBE_RTT anyway. */
    int probed = expired && rtt && rs->is_app_limited && !s->round_cwnd_limited &&
                 !s->prev_round_cwnd_limited && s->prev_round_min_rtt != UINT64_MAX;
    if (probed) {
        uint64_t m =
            s->round_min_rtt < s->prev_round_min_rtt ? s->round_min_rtt : s->prev_round_min_rtt;
        s->min_rtt = m;
        s->min_rtt_stamp = now;
        expired = 0;
    }
    /* "matches or lowers": a sample within min RTT / 128 of the minimum (2.3 ms at 300 ms)
     * re-stamps it: it shows no queue worth draining, and a long path's samples jitter by a
     * fraction of a millisecond, so an exact match rarely comes and PROBE_RTT (half the window
     * for a round and 200 ms) would come back every 10 s for nothing. */
    if (rtt && (rtt <= s->min_rtt || expired)) {
        s->min_rtt = rtt;
        s->min_rtt_stamp = now;
    } else if (rtt && rtt <= s->min_rtt + s->min_rtt / 128) {
        s->min_rtt_stamp = now;
    }

    check_full_pipe(s, ack, round_start);
    if (s->state == BBR_STARTUP && s->filled_pipe) {
        s->pipe_filled_round = s->round_count;
        s->state = BBR_DRAIN;
        s->pacing_gain = DRAIN_GAIN;
        s->cwnd_gain = STARTUP_GAIN;
    }
    if (s->state == BBR_DRAIN && ack->bytes_in_flight <= bdp(s, GAIN_UNIT)) enter_probe_bw(s, now);
    if (s->state == BBR_PROBE_BW) update_cycle(s, ack);
    update_probe_rtt(s, ack, expired, round_start);
    if (ack->acked_bytes) s->idle_restart = 0;

    set_controls(s, ack);
}

static void bbr_on_loss(void *st, const tern__cc_loss *loss)
{
    bbr *s = st;
    s->round_lost += loss->lost_bytes;
    /* a queue of more than a quarter of the min RTT stood when the loss was seen */
    if (s->min_rtt != UINT64_MAX && s->last_rtt > s->min_rtt + s->min_rtt / 4)
        s->round_cong_lost += loss->lost_bytes;
    s->loss_in_cycle_phase = 1;
    if (loss->persistent) s->cwnd = min_cwnd(s);
}

static uint64_t bbr_cwnd(const void *st)
{
    const bbr *s = st;
    uint64_t w = s->cwnd;
    if (s->inflight_hi && s->inflight_hi < w) w = s->inflight_hi;
    return w < min_cwnd(s) ? min_cwnd(s) : w;
}

static uint64_t bbr_pacing_rate(const void *st, uint64_t smoothed_rtt)
{
    const bbr *s = st;
    if (s->pacing_rate) return s->pacing_rate;
    /* no bandwidth sample yet: 2.885 x the initial window per RTT (per ms when no RTT) */
    uint64_t rtt = smoothed_rtt ? smoothed_rtt : MS;
    return mul_div(mul_div(s->cwnd, STARTUP_GAIN, GAIN_UNIT), NS_PER_S, rtt);
}

static uint64_t bbr_bandwidth(const void *st, uint64_t smoothed_rtt)
{
    const bbr *s = st;
    if (s->max_bw) return s->max_bw;
    return smoothed_rtt ? mul_div(s->cwnd, NS_PER_S, smoothed_rtt) : 0;
}

const tern__cc_ops tern__cc_bbr = {
    .name = "bbr",
    .init = bbr_init,
    .on_sent = bbr_on_sent,
    .on_ack = bbr_on_ack,
    .on_loss = bbr_on_loss,
    .cwnd = bbr_cwnd,
    .pacing_rate = bbr_pacing_rate,
    .bandwidth = bbr_bandwidth,
};
