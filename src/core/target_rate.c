/*
 * Encoder feedback: the payload rate a live application (a video encoder) should produce now,
 * tern_conn_target_rate() and the on_target_rate event. Informative; nothing of it is on the
 * wire (docs/protocol.md 6.3, docs/driver.md "Encoder feedback").
 *
 * Why not simply the congestion controller's estimate: BBR's bottleneck bandwidth is the
 * maximum over 10 round trips, so it learns of a fall only 10 rounds later (3 s at 300 ms),
 * while an encoder that keeps producing at the old rate fills the bottleneck's queue at the
 * difference; and an application-limited sender (one that produces exactly what it is told)
 * never shows BBR more than its own rate, so the estimate cannot tell it to grow either. The
 * target is therefore built from what the ACKs show directly (tern__target_on_ack, every ACK):
 *
 *   - delivery windows: the bytes acknowledged over windows of half a min RTT (at least 20 ms)
 *     give the delivery rate. A window throughout which our own queue stood (its lowest RTT
 *     sample at least half the queue threshold above the min RTT; or, for a shallow buffer, a
 *     tenth of its bytes lost with some queue showing) kept the bottleneck busy from start to
 *     end, so its rate is the capacity: a capacity sample. While the queue drains the
 *     bottleneck stays busy too, so what we send less does not pull the estimate down;
 *   - the queueing delay: smoothed RTT above the min RTT of the last 10 s (a path that became
 *     longer stops counting as a queue within 10 s), plus the sender's own backlog when it
 *     stood through the last window (what the flows hold unsent, at the pacing rate: the
 *     controller lets out less than the application produces). The threshold: max(20 ms, min
 *     RTT / 8, 3 datagrams' serialization at the delivery rate, as every RTT sample holds its
 *     own packet's and a frame sent as one burst the others');
 *   - an episode: above the threshold our queue stands. The target falls at once to the
 *     capacity of the last min RTT (before the first sample, to the target when the episode
 *     began), less the overheads below, times a drain factor 1 - queue delay / (3 max(min RTT,
 *     100 ms)), at least 1/4, so the queue empties in a few round trips. The episode ends when
 *     a delivery window of packets sent after it began saw the queue empty (the smoothed RTT
 *     lags by many samples), and the target goes straight back to the capacity it showed (for
 *     a queue that stood only at the sender: to where it was, at most the controller's
 *     estimate): that is no probe. The next episode waits for the smoothed RTT to come down, for
 *     2 min RTTs, or for the queue to grow by the threshold again;
 *   - overheads: the payload share of the wire rate, (datagram - TERN__TGT_OVERHEAD) /
 *     datagram for headers, tag and frame header, divided by 1 + the larger of
 *     TERN__TGT_REPAIR_PER_LOSS x the loss rate of windows without a queue (the path's own
 *     loss, not drop-tail) and the repair the flows' FEC sends per byte of the rest
 *     (tern__fec_repair_share_q16), then TERN__TGT_UTIL_PCT (95%) of that, room for an
 *     encoder's frame-size swings;
 *   - rises: with no queue (below half the threshold), in steps, one per two smoothed RTTs at
 *     most (time for a queue the last step built to show): x1.40 until the first episode (a
 *     startup), then x1.25 while below 80% of the capacity last seen (or none is known), x1.10
 *     at most every 3 smoothed RTTs near it, or when the last step raised the queueing delay by
 *     a quarter of the threshold; 20% past the old capacity without a queue it is forgotten. A
 *     step never goes beyond the step times what was delivered over the last 3 smoothed RTTs,
 *     nor, while the sender uses its whole window, beyond the controller's estimate: a sender
 *     that does not use what it is given is not given more, and none is asked for more than
 *     the controller lets out.
 *
 * Loss alone never lowers the target beyond the repair share: random loss of a few per cent on
 * a radio link is not congestion (BBR does not read it as such either). With CUBIC or NewReno
 * loss shrinks the window, the sender's backlog builds, and the signals above follow.
 *
 * Reporting: on_target_rate when the target has moved 10% from what was last reported: a fall
 * at most every half min RTT, a rise at most every smoothed RTT; after each received packet
 * (tern__target_events), where the flows' events are delivered. A link whose rate falls shows
 * in the ACKs one round trip later; the first cut is reported within about 2 RTTs of the fall
 * and the new rate within about 2-4 (test_target_sim: at most 3 and 5 at 300 ms).
 *
 * The state lives in the connection's loss recovery (tern__recovery.tgt) and is reset with it
 * when the path changes: the new path starts from no estimate.
 */
#include "core/target_rate.h"

#include <string.h>

#include "core/conn.h"
#include "core/wire.h"

#define MS (1000000ull)
#define NS_PER_S (1000000000ull)
#define Q16 65536ull

/* bytes of each datagram that are not payload: a short header with a 3-byte packet number,
 * the AEAD tag and a FLOW_DATA frame header (flow ID, sequence number, offset, length) */
#define TERN__TGT_OVERHEAD (TERN__SHORT_HDR_MIN + 3 + TERN__AEAD_TAG_LEN + 12)
/* Repair and retransmission per lost packet, in packets: adaptive FEC sends about twice the
 * loss rate in repair for groups of 16 at 1-3% random loss (and retransmission repairs what it
 * does not). A constant here rather than the FEC's own figure: the target is per connection,
 * repair per flow. */
#define TERN__TGT_REPAIR_PER_LOSS 2
#define TERN__TGT_REPAIR_MAX_Q16 (Q16 / 2) /* at most half again of the payload */
#define TERN__TGT_UTIL_PCT 95              /* of the capacity, less overheads */
#define TERN__TGT_MIN_RTT_WIN (10000 * MS) /* the min RTT's sliding window */
#define TERN__TGT_QUEUE_MIN (20 * MS)      /* the queue threshold's floor */
#define TERN__TGT_QUEUE_PACKETS 3          /* ... and at least this many datagrams' time */
#define TERN__TGT_WIN_MIN (20 * MS)        /* a delivery window's shortest length */
#define TERN__TGT_DRAIN_RTT_MIN (100 * MS)
#define TERN__TGT_DRAIN_RTTS 3            /* the drain factor: 1 - queue delay / (3 min RTT) */
#define TERN__TGT_DRAIN_MIN_Q16 (Q16 / 4) /* ... at least 1/4 */
#define TERN__TGT_INIT_DATAGRAMS 10       /* the first target: the initial window per RTT */
#define TERN__TGT_STEP_START 140          /* percent, until the first standing queue */
#define TERN__TGT_STEP_FAST 125
#define TERN__TGT_STEP_NEAR 110
#define TERN__TGT_DLV_RTTS 3      /* look-back of the delivered-rate bound */
#define TERN__TGT_FLOOR_BPS 24000 /* the least target (a low audio rate) */
#define TERN__TGT_LOSS_GAIN 8     /* the loss estimate's EWMA: 1/8 per window */
/* the most target (2^50 bit/s, about 1 Pbit/s): the hysteresis and the steps multiply it by
 * up to 12 without overflow, whatever rate a controller or a zero RTT makes up */
#define TERN__TGT_MAX_BPS (1ull << 50)

static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c)
{
    unsigned __int128 v = (unsigned __int128)a * b / (c ? c : 1);
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}
static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

void tern__target_init(tern__target *t, uint64_t now)
{
    memset(t, 0, sizeof(*t));
    t->min_rtt[0] = t->min_rtt[1] = UINT64_MAX;
    t->min_rtt_start = now;
    t->win_start = now;
    t->win_min_rtt = UINT64_MAX;
    t->win_min_backlog = UINT64_MAX;
}

uint64_t tern__target_payload_share_q16(uint64_t loss_q16, uint64_t repair_q16, uint64_t datagram)
{
    if (datagram < 2 * TERN__TGT_OVERHEAD) datagram = 2 * TERN__TGT_OVERHEAD;
    uint64_t share = mul_div(datagram - TERN__TGT_OVERHEAD, Q16, datagram);
    /* what repair and retransmission add per payload byte: the allowance for the loss rate, or
     * the repair the flows' FEC actually sent (a fraction of the wire: r / (1 - r) per byte of
     * the rest), whichever is more */
    uint64_t extra = TERN__TGT_REPAIR_PER_LOSS * min_u64(loss_q16, Q16);
    if (repair_q16 >= Q16 / 2) repair_q16 = Q16 / 2;
    extra = max_u64(extra, mul_div(repair_q16, Q16, Q16 - repair_q16));
    if (extra > TERN__TGT_REPAIR_MAX_Q16) extra = TERN__TGT_REPAIR_MAX_Q16;
    return mul_div(share, Q16, Q16 + extra);
}

uint64_t tern__target_drain_q16(uint64_t queue_delay, uint64_t min_rtt)
{
    uint64_t d = TERN__TGT_DRAIN_RTTS * max_u64(min_rtt, TERN__TGT_DRAIN_RTT_MIN);
    uint64_t cut = mul_div(queue_delay, Q16, d);
    if (cut > Q16 - TERN__TGT_DRAIN_MIN_Q16) cut = Q16 - TERN__TGT_DRAIN_MIN_Q16;
    return Q16 - cut;
}

uint64_t tern__target_queue_threshold(uint64_t min_rtt, uint64_t datagram, uint64_t rate)
{
    uint64_t thr = max_u64(TERN__TGT_QUEUE_MIN, min_rtt / 8);
    /* every RTT sample holds its own packet's serialization at the bottleneck, and a frame
     * sent as one burst the others': at 0.5 Mbit/s a full datagram alone takes 24 ms */
    if (rate) thr = max_u64(thr, mul_div(TERN__TGT_QUEUE_PACKETS * datagram, NS_PER_S, rate));
    return thr;
}

static uint64_t min_rtt(const tern__target *t)
{
    return min_u64(t->min_rtt[0], t->min_rtt[1]);
}

static void min_rtt_update(tern__target *t, uint64_t now, uint64_t sample)
{
    if (now - t->min_rtt_start >= TERN__TGT_MIN_RTT_WIN / 2) {
        t->min_rtt[0] = t->min_rtt[1];
        t->min_rtt[1] = UINT64_MAX;
        t->min_rtt_start = now;
    }
    if (sample < t->min_rtt[1]) t->min_rtt[1] = sample;
}

/* The highest rate of ring samples taken at `since` or later (0: none). */
static uint64_t ring_max(const tern__tgt_sample *ring, uint64_t since)
{
    uint64_t m = 0;
    for (size_t i = 0; i < TERN__TGT_RING; i++)
        if (ring[i].at && ring[i].at >= since && ring[i].rate > m) m = ring[i].rate;
    return m;
}

static void ring_push(tern__tgt_sample *ring, uint32_t *next, uint64_t rate, uint64_t at)
{
    ring[*next].rate = rate;
    ring[*next].at = at;
    *next = (*next + 1) % TERN__TGT_RING;
}

/* Closes the delivery window at now: a delivery sample, a capacity sample when our queue
 * stood throughout it, the loss estimate when no queue stood. Returns 1 when the window saw the
 * queue empty (an RTT sample less than half the threshold above the min RTT). */
static int close_window(tern__target *t, const tern__tgt_input *in, uint64_t mrtt, uint64_t thr)
{
    uint64_t now = in->now, datagram = in->datagram;
    uint64_t rate = mul_div(t->win_bytes, NS_PER_S, now - t->win_start);
    ring_push(t->dlv, &t->dlv_next, rate, now);
    int sampled = t->win_min_rtt != UINT64_MAX;
    int queued = sampled && t->win_min_rtt >= mrtt + thr / 2;
    /* a backlog that stood at the sender through the whole window (a frame waiting between
     * two ACKs is no backlog) counts in the queueing delay until the next window */
    t->backlog = t->win_min_backlog == UINT64_MAX ? 0 : t->win_min_backlog;
    int lossy = sampled && t->win_min_rtt >= mrtt + thr / 4 && t->win_lost >= 3 * datagram &&
                t->win_lost * 10 >= t->win_bytes + t->win_lost;
    if ((queued || lossy) && rate > 0) {
        ring_push(t->cap, &t->cap_next, rate, now);
        t->ceiling = ring_max(t->cap, now - mrtt);
        if (t->episode) t->episode_cap = t->ceiling;
    }
    if (sampled && t->win_min_rtt < mrtt + thr / 4 && t->win_bytes + t->win_lost > 0) {
        /* no queue: what was lost is the path's own loss (a radio's), not congestion */
        uint64_t l = mul_div(t->win_lost, Q16, t->win_bytes + t->win_lost);
        t->loss_q16 = (t->loss_q16 * (TERN__TGT_LOSS_GAIN - 1) + l) / TERN__TGT_LOSS_GAIN;
    }
    /* (its samples are of packets sent after the episode began: earlier ones may have passed
     * before the queue built) */
    int empty = sampled && !queued && t->backlog < thr / 2 && t->win_start >= t->episode_at + mrtt;
    t->win_start = now;
    t->win_bytes = 0;
    t->win_lost = 0;
    t->win_min_rtt = UINT64_MAX;
    t->win_min_backlog = UINT64_MAX;
    return empty;
}

/* wire bytes/s -> payload bits/s at share (q16) and util (percent), at most TERN__TGT_MAX_BPS
 * (wire * 8 wrapped for rates above 2^61 bytes/s) */
static uint64_t payload_bps(uint64_t wire, uint64_t share, uint64_t pct)
{
    return min_u64(mul_div(mul_div(wire, 8 * share, Q16), pct, 100), TERN__TGT_MAX_BPS);
}

int tern__target_backlog_due(tern__target *t, uint64_t now)
{
    if (now < t->backlog_next) return 0;
    uint64_t mrtt = min_rtt(t);
    uint64_t gap = mrtt == UINT64_MAX ? 0 : max_u64(mrtt / 2, TERN__TGT_WIN_MIN) / 16;
    t->backlog_next = now + max_u64(gap, MS);
    return 1;
}

void tern__target_on_lost(tern__target *t, uint64_t bytes)
{
    t->win_lost += bytes;
}

/* A rise beyond the last measured capacity: one step, if the last one built no queue. */
static void probe(tern__target *t, const tern__tgt_input *in, uint64_t share, uint64_t srtt,
                  uint64_t qd, uint64_t thr)
{
    uint64_t now = in->now;
    if (now < t->last_rise + 2 * srtt || now < t->last_fall + 2 * srtt) return;
    uint64_t step = t->queue_seen ? TERN__TGT_STEP_FAST : TERN__TGT_STEP_START;
    if (t->ceiling) {
        /* near the capacity last seen a small overload builds its queue slowly: small steps,
         * 3 RTTs apart; 20% past it without a queue it was stale */
        uint64_t ceil = payload_bps(t->ceiling, share, TERN__TGT_UTIL_PCT);
        if (t->bps * 10 >= ceil * 12)
            t->ceiling = 0;
        else if (t->bps * 10 >= ceil * 8)
            step = TERN__TGT_STEP_NEAR;
        if (step == TERN__TGT_STEP_NEAR && now < t->last_rise + 3 * srtt) return;
    }
    /* the last step started a queue, too small yet to count: a small one */
    if (qd > t->rise_qd + thr / 4) step = TERN__TGT_STEP_NEAR;
    uint64_t dlv = ring_max(t->dlv, now - TERN__TGT_DLV_RTTS * srtt);
    uint64_t up = min_u64(mul_div(t->bps, step, 100), payload_bps(dlv, share, step));
    if (in->cc_limited) up = min_u64(up, payload_bps(in->cc_bw, share, 100));
    if (up > t->bps) {
        t->bps = up;
        t->last_rise = now;
        t->rise_qd = qd;
    }
}

void tern__target_on_ack(tern__target *t, const tern__tgt_input *in)
{
    uint64_t now = in->now;
    if (in->rtt_sample) {
        min_rtt_update(t, now, in->latest_rtt);
        if (in->latest_rtt < t->win_min_rtt) t->win_min_rtt = in->latest_rtt;
    }
    uint64_t mrtt = min_rtt(t);
    t->win_bytes += in->acked_bytes;
    if (mrtt == UINT64_MAX) return; /* no RTT sample yet */
    uint64_t srtt = in->srtt > mrtt ? in->srtt : mrtt;
    uint64_t rate = ring_max(t->dlv, now - 2 * mrtt);
    uint64_t thr = tern__target_queue_threshold(mrtt, in->datagram, rate);
    /* the queue is ours wherever it stands: in the network (the RTT above its minimum) or still
     * at the sender, when the controller lets out less than the application produces (what
     * waits, at the pacing rate) */
    if (in->unsent != UINT64_MAX) {
        uint64_t backlog = in->pacing ? mul_div(in->unsent, NS_PER_S, in->pacing) : 0;
        if (backlog < t->win_min_backlog) t->win_min_backlog = backlog;
    }
    int emptied = 0;
    if (now - t->win_start >= max_u64(mrtt / 2, TERN__TGT_WIN_MIN))
        emptied = close_window(t, in, mrtt, thr);
    uint64_t qd = srtt - mrtt + t->backlog;
    t->queue_delay = qd;
    /* after an episode, the next one waits for the smoothed RTT to come down, for the time its
     * lag takes, or for the queue to grow again */
    if (qd <= thr / 2 || now >= t->episode_end + 2 * mrtt || qd > t->end_qd + thr) t->armed = 1;

    uint64_t share = tern__target_payload_share_q16(t->loss_q16, in->repair_q16, in->datagram);
    if (t->bps == 0) {
        /* the first estimate: the controller's, at least the initial window per RTT (its
         * first samples come from the handshake's small exchanges) */
        uint64_t init = mul_div(TERN__TGT_INIT_DATAGRAMS * in->datagram, NS_PER_S, srtt);
        t->bps = max_u64(payload_bps(max_u64(in->cc_bw, init), share, TERN__TGT_UTIL_PCT),
                         TERN__TGT_FLOOR_BPS);
        t->last_rise = now;
    } else if (t->episode && emptied) {
        /* drained (a window saw the queue empty; the smoothed RTT lags): back to the capacity
         * the queue showed, which is no probe, or, if it stood only at the sender, to where the
         * target was. A new episode needs the smoothed RTT down first (or the time its lag
         * takes), or that lag would cut again. */
        t->episode = 0;
        t->armed = 0;
        t->episode_end = now;
        t->end_qd = qd;
        uint64_t back = t->episode_cap
                            ? payload_bps(t->episode_cap, share, TERN__TGT_UTIL_PCT)
                            : min_u64(t->episode_bps, payload_bps(in->cc_bw, share, 100));
        if (back > t->bps) {
            t->bps = back;
            t->last_rise = now;
        }
    } else if (qd > thr && (t->episode || t->armed)) {
        /* our queue stands: down to the capacity it shows, and below it while it drains */
        if (!t->episode) {
            t->episode = 1;
            t->queue_seen = 1;
            t->episode_at = now;
            t->episode_bps = t->bps;
            t->episode_cap = 0;
        }
        uint64_t cap = ring_max(t->cap, now - 2 * mrtt);
        uint64_t base = cap ? payload_bps(cap, share, TERN__TGT_UTIL_PCT) : t->episode_bps;
        uint64_t lim = mul_div(base, tern__target_drain_q16(qd, mrtt), Q16);
        lim = max_u64(lim, TERN__TGT_FLOOR_BPS);
        if (lim < t->bps) {
            t->bps = lim;
            t->last_fall = now;
        }
    } else if (!t->episode && qd <= thr / 2) {
        probe(t, in, share, srtt, qd, thr);
    }
    /* hysteresis: report a move of 10%, a fall at most every half min RTT, a rise every RTT */
    uint64_t r = t->reported;
    int due = r == 0 || (t->bps * 10 <= r * 9 && now >= t->reported_at + mrtt / 2) ||
              (t->bps * 10 >= r * 11 && now >= t->reported_at + srtt);
    if (due && t->bps) {
        t->reported = t->bps;
        t->reported_at = now;
        t->pending = 1;
    }
}

/* ---------------------------------------------------------------- the connection's side */

void tern__target_events(tern_conn *c)
{
    if (!c->rec.ready || c->rec.r == NULL || !c->rec.r->tgt.pending) return;
    c->rec.r->tgt.pending = 0;
    c->st.target_rate_events++;
    tern_endpoint *ep = c->ep;
    if (ep->cb.on_target_rate) ep->cb.on_target_rate(c, c->rec.r->tgt.reported, ep->user_data);
}

uint64_t tern__target_unsent(const tern_conn *c)
{
    uint64_t n = 0;
    for (const tern__sflow *f = c->flows.send; f; f = f->next) {
        n += f->uncut_bytes;
        n += (uint64_t)f->lost_n * tern__conn_max_payload(c);
    }
    return n;
}

uint64_t tern_conn_target_rate(const tern_conn *c)
{
    if (!c->rec.ready || c->rec.r == NULL) return 0;
    return c->rec.r->tgt.bps;
}
