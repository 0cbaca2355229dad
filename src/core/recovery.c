/*
 * Loss recovery after RFC 9002: the record of sent packets (a ring indexed by packet number),
 * ACK processing (RTT samples with the peer's ACK delay, newly acknowledged and spurious
 * packets), loss detection by packet threshold (3) and time threshold (9/8 of the RTT), the
 * probe timeout with exponential backoff, and the hooks into congestion control, pacing and
 * delivery-rate sampling. ACKs for packets never sent are a protocol error.
 *
 * Packets sent on a direct stream path (TCP, TLS; marked stream) are never declared lost by the
 * thresholds: the stream delivers them, in order, or ends. A probe timeout there sends one PING
 * and retransmits nothing; the stream's end (tern__rec_stream_lost) or a move off it
 * (tern__rec_path_changed) declares them lost, and their frames go again on the next path. So
 * does an acknowledgement of a later stream packet that leaves one unacknowledged: on an
 * ordered stream that gap is certain (the driver dropped the frame, its stream being down or
 * its buffer full), never reordering.
 */
#include <string.h>

#include "core/conn.h"
#include "core/fec.h"

#define PACKET_THRESHOLD 3
/* probe timeouts in a row without an answer after which the path is taken as silent: each
 * further timeout sends one small PING instead of two packets of data, so a path that is down
 * for a long while costs a few dozen bytes per probe (counted in conn stats silent_bytes) */
#define TERN__SILENT_PTOS 2
/* the least gap between those PINGs (at most max_backoff): a low-RTT path's PTO sits near the
 * peer's 25 ms ACK delay, and 40 PINGs a second into a 20 s outage would be ~30 KB; at 4 a
 * second it is ~4 KB, and the return is still heard within a fraction of a second. Paths of
 * 31 ms srtt and more are unchanged (their cap, 8 srtt, is larger). */
#define TERN__SILENT_PING_GAP (250 * TERN_NS_PER_MS)
#define GRANULARITY (1 * TERN_NS_PER_MS)
/* records in the ring of an idle connection (it doubles as packets go out; a record is ~300 B,
 * so a server's idle connections stay small) */
#define RING_IDLE 4

static tern__sent *sent_at(const tern__recovery *r, uint64_t pn)
{
    return &r->ring[pn % r->cap];
}

int tern__rec_init(tern_conn *c, uint64_t now)
{
    tern__recovery *r = tern__calloc(&c->ep->alloc, sizeof(*r));
    if (r == NULL) return TERN_ERR_NOMEM;
    c->rec.r = r;
    r->cap = RING_IDLE;
    r->ring = tern__calloc(&c->ep->alloc, r->cap * sizeof(*r->ring));
    if (r->ring == NULL) return TERN_ERR_NOMEM;
    r->loss_time = TERN_TIME_NEVER;
    r->recovery_start = 0;
    /* the longer loss average starts from a prior of 1% worth 128 packets (flow.h) */
    r->loss_slow_q16 = 655;
    r->loss_slow_n = 128;
    r->peer_max_ack_delay = c->peer.max_ack_delay ? c->peer.max_ack_delay : 25 * TERN_NS_PER_MS;
    tern__ackset_init(&r->acks);
    const tern__cc_ops *ops = c->ep->s.cc == TERN_CC_CUBIC     ? &tern__cc_cubic
                              : c->ep->s.cc == TERN_CC_NEWRENO ? &tern__cc_newreno
                                                               : &tern__cc_bbr;
    r->cc.ops = ops;
    ops->init(r->cc.st, tern__conn_max_payload(c), now);
    tern__pacer_init(&r->pacer, now, tern__conn_max_payload(c));
    tern__rate_init(&r->rate, now);
    tern__target_init(&r->tgt, now);
    return TERN_OK;
}

void tern__rec_free(tern_conn *c)
{
    tern__recovery *r = c->rec.r;
    if (r == NULL) return;
    if (r->ring) tern__free(&c->ep->alloc, r->ring, r->cap * sizeof(*r->ring));
    tern__free(&c->ep->alloc, r, sizeof(*r));
    c->rec.r = NULL;
    c->rec.ready = 0;
}

static int ring_grow(tern_conn *c)
{
    tern__recovery *r = c->rec.r;
    size_t ncap = r->cap * 2;
    tern__sent *nr = tern__calloc(&c->ep->alloc, ncap * sizeof(*nr));
    if (nr == NULL) return TERN_ERR_NOMEM;
    for (uint64_t pn = r->base; pn < r->base + r->n; pn++) nr[pn % ncap] = r->ring[pn % r->cap];
    tern__free(&c->ep->alloc, r->ring, r->cap * sizeof(*r->ring));
    r->ring = nr;
    r->cap = ncap;
    return TERN_OK;
}

/* Room for the record of packet pn (the next one sent); 0 or TERN_ERR_NOMEM. */
int tern__rec_reserve(tern_conn *c, uint64_t pn)
{
    tern__recovery *r = c->rec.r;
    if (r->n == 0) r->base = pn;
    while (pn - r->base + 1 > r->cap)
        if (ring_grow(c) != TERN_OK) return TERN_ERR_NOMEM;
    return TERN_OK;
}

uint64_t tern__rec_pto(const tern_conn *c)
{
    uint64_t pto = tern__rec_rtt_pto(c) + c->rec.r->peer_max_ack_delay;
    uint32_t k = c->rec.r->pto_count < 16 ? c->rec.r->pto_count : 16;
    uint64_t base = pto;
    pto <<= k;
    /* mobile links come back after handovers: probe at least every 8 RTTs (at most every
     * max_backoff), so the sender notices within a fraction of a second */
    uint64_t cap = 8 * c->rec.rtt.srtt;
    if (cap > c->ep->s.max_backoff_ns) cap = c->ep->s.max_backoff_ns;
    if (cap < base) cap = base;
    if (pto > cap) pto = cap;
    if (c->rec.r->pto_count > TERN__SILENT_PTOS) {
        uint64_t gap = TERN__SILENT_PING_GAP;
        if (gap > c->ep->s.max_backoff_ns) gap = c->ep->s.max_backoff_ns;
        if (pto < gap) pto = gap;
    }
    return pto;
}

void tern__rec_on_sent(tern_conn *c, const tern__sent *rec_in, uint64_t now)
{
    tern__recovery *r = c->rec.r;
    uint64_t pn = rec_in->pn;
    /* pns are consecutive; gaps (packets not recorded) become acknowledged placeholders */
    while (r->base + r->n < pn) {
        tern__sent *gap = sent_at(r, r->base + r->n);
        memset(gap, 0, sizeof(*gap));
        gap->pn = r->base + r->n;
        gap->state = SENT_ACKED;
        r->n++;
    }
    tern__sent *s = sent_at(r, pn);
    *s = *rec_in;
    s->time = now;
    s->state = SENT_OUTSTANDING;
    r->n++;
    r->sent_total++;
    if (s->in_flight) {
        tern__rate_on_sent(&r->rate, &s->snap, now, r->bytes_in_flight);
        r->bytes_in_flight += s->bytes;
        r->cc.ops->on_sent(r->cc.st, now, s->bytes, r->bytes_in_flight);
        tern__pacer_on_sent(&r->pacer, now, s->bytes);
    }
    if (s->ack_eliciting) {
        r->last_eliciting_time = now;
        r->eliciting_out++;
        if (r->pto_count > 0) c->st.silent_bytes += s->bytes; /* sent into a silence */
    }
}

/* Drops finished records from the front of the ring; a lost one's number is kept for one PTO
 * (lost_hist), so that its late ACK still counts as spurious (RFC 9002 keeps lost packets'
 * state a while for the same reason). */
static void ring_trim(tern_conn *c, tern__recovery *r, uint64_t now)
{
    while (r->n > 0 && sent_at(r, r->base)->state != SENT_OUTSTANDING) {
        if (sent_at(r, r->base)->state == SENT_LOST) {
            tern__lost_pn *h = &r->lost_hist[r->lost_hist_next];
            if (h->until == 0) r->lost_hist_live++; /* else overwriting the oldest live one */
            h->pn = r->base;
            h->until = now + tern__rec_rtt_pto(c) + r->peer_max_ack_delay;
            r->lost_hist_next = (r->lost_hist_next + 1) % TERN__LOST_HISTORY;
        }
        r->base++;
        r->n--;
    }
    if (r->n == 0 && r->cap > RING_IDLE) {
        /* idle again: give back what a burst grew (memory per idle connection stays small) */
        tern__sent *nr = tern__calloc(&c->ep->alloc, RING_IDLE * sizeof(*nr));
        if (nr != NULL) {
            tern__free(&c->ep->alloc, r->ring, r->cap * sizeof(*r->ring));
            r->ring = nr;
            r->cap = RING_IDLE;
        }
    }
}

static void on_packet_lost(tern_conn *c, tern__sent *s, uint64_t now)
{
    tern__recovery *r = c->rec.r;
    s->state = SENT_LOST;
    if (s->ack_eliciting) r->eliciting_out--;
    r->lost_total++;
    c->st.packets_lost++;
    if (s->stream) c->st.stream_packets_lost++;
    r->loss_avg_q16 += (65536 - r->loss_avg_q16) / 64;
    if (r->loss_slow_n < 1024) r->loss_slow_n++;
    r->loss_slow_q16 += (65536 - r->loss_slow_q16) / r->loss_slow_n;
    if (s->in_flight) r->bytes_in_flight -= s->bytes;
    if (s->in_flight && !s->stream) tern__target_on_lost(&r->tgt, s->bytes);
    /* black-hole detection (pmtu.c); a stream's loss (its end) says nothing of a path MTU */
    if (!s->stream) tern__pmtu_on_lost(c, now, s->time, s->bytes);
    for (size_t i = 0; i < s->n; i++) tern__flow_on_lost(c, &s->e[i], now);
    if (s->hs_done && c->is_server) c->tx.hs_done_pending = 1;
    if (s->ping) {
        /* a keep-alive or probe PING: the timer resends it */
    }
}

/* Does pn follow the last lost packet with only packets not in flight (ACK-only, unrecorded)
 * between them? */
static int burst_continues(const tern__recovery *r, uint64_t pn)
{
    if (r->burst_run == 0 || pn <= r->burst_last_pn || pn - r->burst_last_pn > 8) return 0;
    for (uint64_t q = r->burst_last_pn + 1; q < pn; q++) {
        if (q < r->base || q >= r->base + r->n) return 0;
        if (sent_at(r, q)->in_flight) return 0;
    }
    return 1;
}

/* Loss bursts (tern_network_info.loss_burst, FEC's repair rate): packet pn was declared lost
 * by the thresholds. A run is lost packets in a row (packets not in flight between them do not
 * count); when a run ends (the next loss does not follow it) its length enters the mean. */
static void burst_on_lost(tern__recovery *r, uint64_t pn)
{
    if (burst_continues(r, pn)) {
        r->burst_run++;
    } else {
        if (r->burst_run > 0) {
            uint64_t run_q8 = (uint64_t)(r->burst_run > 1000 ? 1000 : r->burst_run) << 8;
            r->burst_avg_q8 = r->burst_avg_q8 == 0
                                  ? (uint32_t)run_q8
                                  : (uint32_t)((7 * (uint64_t)r->burst_avg_q8 + run_q8) / 8);
        }
        r->burst_run = 1;
    }
    r->burst_last_pn = pn;
}

uint64_t tern__rec_loss_delay(const tern_conn *c)
{
    uint64_t rtt = c->rec.rtt.latest > c->rec.rtt.srtt ? c->rec.rtt.latest : c->rec.rtt.srtt;
    uint64_t delay = rtt + rtt / 8;
    return delay < GRANULARITY ? GRANULARITY : delay;
}

/* Declares lost what the thresholds say; re-arms the loss timer. */
static void detect_losses(tern_conn *c, uint64_t now, uint64_t *lost_bytes, uint64_t *last_lost_time,
                          int *persistent)
{
    tern__recovery *r = c->rec.r;
    r->loss_time = TERN_TIME_NEVER;
    if (!r->have_largest_acked) return;
    uint64_t delay = tern__rec_loss_delay(c);
    uint64_t first_lost_time = TERN_TIME_NEVER, last_time = 0;
    for (uint64_t pn = r->base; pn < r->base + r->n && pn < r->largest_acked; pn++) {
        tern__sent *s = sent_at(r, pn);
        if (s->state != SENT_OUTSTANDING) continue;
        if (s->stream) {
            /* a stream delivers in order and never reorders: it is only slow, unless a later
             * packet on it was acknowledged and this one was not (the driver dropped it: the
             * stream was down, or its buffer full). No time threshold, no congestion signal. */
            if (r->have_stream_acked && pn < r->largest_acked_stream) {
                c->st.stream_gaps++;
                on_packet_lost(c, s, now);
            }
            continue;
        }
        if (r->largest_acked - pn >= PACKET_THRESHOLD || s->time + delay <= now) {
            if (s->in_flight) {
                *lost_bytes += s->bytes;
                if (s->time < first_lost_time) first_lost_time = s->time;
                if (s->time > last_time) last_time = s->time;
            }
            burst_on_lost(r, pn);
            on_packet_lost(c, s, now);
        } else if (s->time + delay < r->loss_time) {
            r->loss_time = s->time + delay;
        }
    }
    *last_lost_time = last_time;
    /* persistent congestion (simplified RFC 9002 7.6): losses spanning 3 PTOs */
    uint64_t span = 3 * (c->rec.rtt.srtt + 4 * c->rec.rtt.rttvar + r->peer_max_ack_delay);
    *persistent = first_lost_time != TERN_TIME_NEVER && c->rec.rtt.has_sample &&
                  last_time - first_lost_time > span;
}

static void congestion_event(tern_conn *c, uint64_t now, uint64_t lost_bytes, uint64_t last_time,
                             int persistent)
{
    tern__recovery *r = c->rec.r;
    if (lost_bytes == 0) return;
    tern__cc_loss l;
    l.now = now;
    l.lost_bytes = lost_bytes;
    l.largest_lost_sent_time = last_time;
    l.bytes_in_flight = r->bytes_in_flight;
    l.persistent = persistent;
    r->cc.ops->on_loss(r->cc.st, &l);
}

/* Counts the late ACK of [lo, hi] (below the ring) for the lost packets remembered in it. */
static void late_acks(tern_conn *c, tern__recovery *r, uint64_t lo, uint64_t hi, uint64_t now)
{
    for (size_t j = 0; j < TERN__LOST_HISTORY; j++) {
        tern__lost_pn *h = &r->lost_hist[j];
        if (h->until == 0) continue;
        if (h->until < now) { /* past its window: a late ACK no longer counts */
            h->until = 0;
            r->lost_hist_live--;
        } else if (h->pn >= lo && h->pn <= hi) {
            r->spurious++;
            c->st.spurious_losses++;
            h->until = 0;
            r->lost_hist_live--;
        }
    }
}

/* Processes one ACK frame. TERN_ERR_PROTOCOL when it acknowledges a packet never sent. */
int tern__rec_on_ack(tern_conn *c, const tern__ack_frame *f, uint64_t now)
{
    tern__recovery *r = c->rec.r;
    if (f->largest >= c->tx.next_pn) return TERN_ERR_PROTOCOL;
    uint64_t prior_in_flight = r->bytes_in_flight;
    uint64_t acked_bytes = 0;
    int new_largest = !r->have_largest_acked || f->largest > r->largest_acked;
    int largest_newly_acked_eliciting = 0;
    uint64_t largest_sent_time = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (r->lost_hist_live && f->r[i].lo < r->base)
            late_acks(c, r, f->r[i].lo, f->r[i].hi < r->base ? f->r[i].hi : r->base - 1, now);
        uint64_t lo = f->r[i].lo < r->base ? r->base : f->r[i].lo;
        uint64_t hi = f->r[i].hi;
        if (hi >= r->base + r->n) hi = r->base + r->n ? r->base + r->n - 1 : 0;
        if (r->n == 0 || hi < lo) continue;
        for (uint64_t pn = lo; pn <= hi; pn++) {
            tern__sent *s = sent_at(r, pn);
            if (s->state == SENT_ACKED) continue;
            if (s->state == SENT_LOST) {
                /* acknowledged after we declared it lost: spurious */
                r->spurious++;
                c->st.spurious_losses++;
                s->state = SENT_ACKED;
                tern__pmtu_on_acked(c, s->time, s->bytes);
                for (size_t k = 0; k < s->n; k++) tern__flow_on_acked(c, &s->e[k]);
                continue;
            }
            s->state = SENT_ACKED;
            if (s->stream && (!r->have_stream_acked || pn > r->largest_acked_stream)) {
                r->largest_acked_stream = pn;
                r->have_stream_acked = 1;
            }
            if (s->ack_eliciting) r->eliciting_out--;
            r->loss_avg_q16 -= r->loss_avg_q16 / 64;
            if (r->loss_slow_n < 1024) r->loss_slow_n++;
            r->loss_slow_q16 -= r->loss_slow_q16 / r->loss_slow_n;
            if (s->in_flight) {
                r->bytes_in_flight -= s->bytes;
                acked_bytes += s->bytes;
                tern__rate_on_acked(&r->rate, &s->snap, s->bytes, now);
            }
            if (pn == f->largest) {
                largest_newly_acked_eliciting = s->ack_eliciting;
                largest_sent_time = s->time;
            }
            tern__pmtu_on_acked(c, s->time, s->bytes);
            for (size_t k = 0; k < s->n; k++) tern__flow_on_acked(c, &s->e[k]);
            if (s->hs_done) c->rx.confirmed = 1;
        }
    }
    if (new_largest) {
        r->largest_acked = f->largest;
        r->have_largest_acked = 1;
    }
    /* RTT sample: the largest was newly acknowledged and ack-eliciting */
    if (new_largest && largest_newly_acked_eliciting) {
        uint64_t sample = now - largest_sent_time;
        uint64_t ack_delay = f->ack_delay_us * 1000;
        if (ack_delay > r->peer_max_ack_delay) ack_delay = r->peer_max_ack_delay;
        if (c->rec.rtt.has_sample && sample >= c->rec.rtt.min + ack_delay) sample -= ack_delay;
        tern__rec_rtt_sample(c, sample);
    }
    if (acked_bytes == 0 && !new_largest) {
        ring_trim(c, r, now);
        return TERN_OK;
    }
    uint64_t lost = 0, last_time = 0;
    int persistent = 0;
    detect_losses(c, now, &lost, &last_time, &persistent);
    r->pto_count = 0;
    r->probes_pending = 0;
    r->probe_ping_only = 0;
    tern__cc_ack a;
    memset(&a, 0, sizeof(a));
    a.now = now;
    a.acked_bytes = acked_bytes;
    a.bytes_in_flight = r->bytes_in_flight;
    a.prior_in_flight = prior_in_flight;
    a.largest_acked_sent_time = largest_sent_time;
    a.latest_rtt = c->rec.rtt.latest;
    a.min_rtt = c->rec.rtt.min;
    a.smoothed_rtt = c->rec.rtt.srtt;
    tern__rate_finish(&r->rate, now, &a.rs);
    if (acked_bytes) r->cc.ops->on_ack(r->cc.st, &a);
    congestion_event(c, now, lost, last_time, persistent);
    ring_trim(c, r, now);
    /* encoder feedback (target_rate.c) */
    tern__tgt_input ti;
    ti.now = now;
    ti.acked_bytes = acked_bytes;
    ti.srtt = c->rec.rtt.srtt;
    ti.latest_rtt = c->rec.rtt.latest;
    ti.rtt_sample = new_largest && largest_newly_acked_eliciting;
    ti.cc_bw = r->cc.ops->bandwidth(r->cc.st, c->rec.rtt.srtt);
    ti.cc_limited = a.rs.delivery_rate && !a.rs.is_app_limited;
    ti.datagram = tern__conn_max_payload(c);
    ti.pacing = r->cc.ops->pacing_rate(r->cc.st, c->rec.rtt.srtt);
    /* (a visit of every sending flow: sampled, not on every ACK) */
    ti.unsent = tern__target_backlog_due(&r->tgt, now) ? tern__target_unsent(c) : UINT64_MAX;
    ti.repair_q16 = tern__fec_repair_share_q16(c);
    tern__target_on_ack(&r->tgt, &ti);
    /* the window opened: whatever waits may go */
    tern__ep_mark_send(c->ep, c);
    tern__rec_network_changed(c);
    return TERN_OK;
}

/* The loss or probe timer. */
uint64_t tern__rec_timer(const tern_conn *c)
{
    const tern__recovery *r = c->rec.r;
    if (r->loss_time != TERN_TIME_NEVER) return r->loss_time;
    if (r->eliciting_out == 0) return TERN_TIME_NEVER;
    return r->last_eliciting_time + tern__rec_pto(c);
}

void tern__rec_on_timer(tern_conn *c, uint64_t now)
{
    tern__recovery *r = c->rec.r;
    if (r->loss_time != TERN_TIME_NEVER && now >= r->loss_time) {
        uint64_t lost = 0, last_time = 0;
        int persistent = 0;
        detect_losses(c, now, &lost, &last_time, &persistent);
        congestion_event(c, now, lost, last_time, persistent);
        ring_trim(c, r, now);
        tern__ep_mark_send(c->ep, c);
        return;
    }
    uint64_t t = tern__rec_timer(c);
    if (t != TERN_TIME_NEVER && now >= t) {
        /* probe timeout: two ack-eliciting probes; their ACKs reveal what was lost. The
         * backoff is capped (tern__rec_pto), so a path that comes back within the idle timeout
         * is heard from within one cap and a round trip; on a silent path one PING does, and on
         * a stream one PING: nothing there is lost while the stream lives, only slow */
        r->pto_count++;
        c->st.pto_count++;
        if (!tern__path_is_reliable(&c->path)) {
            size_t largest = 0; /* black-hole detection (pmtu.c): large packets unanswered? */
            for (uint64_t pn = r->base; pn < r->base + r->n; pn++)
                if (sent_at(r, pn)->state == SENT_OUTSTANDING && sent_at(r, pn)->bytes > largest)
                    largest = sent_at(r, pn)->bytes;
            tern__pmtu_on_pto(c, now, largest);
        }
        r->probe_ping_only =
            tern__path_is_reliable(&c->path) || r->pto_count > TERN__SILENT_PTOS;
        r->probes_pending = r->probe_ping_only ? 1 : 2;
        r->last_eliciting_time = now; /* re-arm from now even if the probes wait */
        tern__ep_mark_send(c->ep, c);
    }
}


void tern__rec_path_changed(tern_conn *c, uint64_t now)
{
    tern__recovery *r = c->rec.r;
    if (!c->rec.ready || r == NULL) return;
    /* The old path went silent: what is outstanding on it is lost (requeued for the new path
     * now, not a PTO or two later) and says nothing about the new path's capacity, so no
     * congestion event; the new path starts with a fresh congestion controller, pacer and
     * delivery-rate sampler, and its first RTT sample replaces the old estimate (RFC 9000
     * 9.4). */
    for (uint64_t pn = r->base; pn < r->base + r->n; pn++) {
        tern__sent *s = sent_at(r, pn);
        if (s->state == SENT_OUTSTANDING) on_packet_lost(c, s, now);
    }
    ring_trim(c, r, now);
    r->loss_time = TERN_TIME_NEVER;
    r->pto_count = 0;
    r->probes_pending = 0;
    r->probe_ping_only = 0;
    r->recovery_start = 0;
    size_t mss = tern__conn_max_payload(c);
    r->cc.ops->init(r->cc.st, mss, now);
    tern__pacer_init(&r->pacer, now, mss);
    tern__rate_init(&r->rate, now);
    tern__target_init(&r->tgt, now);
    c->rec.rtt.has_sample = 0;
    tern__rec_network_changed(c);
}

void tern__rec_stream_lost(tern_conn *c, uint64_t now)
{
    tern__recovery *r = c->rec.r;
    if (!c->rec.ready || r == NULL) return;
    /* what the stream had taken is gone with it: requeued for whatever carries the connection
     * next; no congestion event (it says nothing of a path's capacity) */
    for (uint64_t pn = r->base; pn < r->base + r->n; pn++) {
        tern__sent *s = sent_at(r, pn);
        if (s->state == SENT_OUTSTANDING && s->stream) on_packet_lost(c, s, now);
    }
    ring_trim(c, r, now);
    r->pto_count = 0;
    r->probes_pending = 0;
    tern__ep_mark_send(c->ep, c);
}

double tern__rec_loss_rate(const tern_conn *c)
{
    return (double)c->rec.r->loss_avg_q16 / 65536.0;
}

/* ---------------------------------------------------------------- RTT estimate */

/* The connection's RTT estimate (c->rec.rtt, RFC 9002 smoothing), fed by ACKs of ack-eliciting
 * packets and by PONGs, and what the application hears of it and of the congestion controller
 * (tern_conn_network_info, on_network when something moved by a tenth). */
void tern__rec_rtt_init(tern__rtt *r, uint64_t initial)
{
    memset(r, 0, sizeof(*r));
    r->srtt = initial;
    r->rttvar = initial / 2;
}

static void rtt_update(tern__rtt *r, uint64_t s)
{
    r->latest = s;
    if (!r->has_sample) {
        r->has_sample = 1;
        r->srtt = s;
        r->rttvar = s / 2;
        r->min = s;
        return;
    }
    if (s < r->min) r->min = s;
    uint64_t d = r->srtt > s ? r->srtt - s : s - r->srtt;
    r->rttvar = (3 * r->rttvar + d) / 4;
    r->srtt = (7 * r->srtt + s) / 8;
}

void tern__rec_rtt_sample(tern_conn *c, uint64_t sample)
{
    rtt_update(&c->rec.rtt, sample);
}

void tern__rec_network_changed(tern_conn *c)
{
    tern_endpoint *ep = c->ep;
    if (ep->cb.on_network == NULL || !c->rec.ready) return;
    tern_network_info ni;
    tern_conn_network_info(c, &ni);
    uint64_t lq = c->rec.r->loss_avg_q16;
    uint64_t lb = c->rec.r->last_bw_reported, lr = c->rec.r->last_rtt_reported;
    int changed = (ni.bandwidth_bps > lb + lb / 10 || ni.bandwidth_bps + lb / 10 < lb) ||
                  (ni.srtt_ns > lr + lr / 10 || ni.srtt_ns + lr / 10 < lr) ||
                  (lq > c->rec.r->last_loss_reported_q16 + 655 ||
                   lq + 655 < c->rec.r->last_loss_reported_q16);
    if (!changed) return;
    c->rec.r->last_bw_reported = ni.bandwidth_bps;
    c->rec.r->last_rtt_reported = ni.srtt_ns;
    c->rec.r->last_loss_reported_q16 = lq;
    ep->cb.on_network(c, &ni, ep->user_data);
}

void tern_conn_network_info(const tern_conn *c, tern_network_info *ni)
{
    memset(ni, 0, sizeof(*ni));
    ni->srtt_ns = c->rec.rtt.srtt;
    ni->min_rtt_ns = c->rec.rtt.min;
    ni->rttvar_ns = c->rec.rtt.rttvar;
    if (!c->rec.ready) return;
    const tern__cc *cc = &c->rec.r->cc;
    ni->bandwidth_bps = cc->ops->bandwidth(cc->st, c->rec.rtt.srtt) * 8;
    ni->pacing_rate_bps = cc->ops->pacing_rate(cc->st, c->rec.rtt.srtt) * 8;
    ni->cwnd_bytes = cc->ops->cwnd(cc->st);
    ni->bytes_in_flight = c->rec.r->bytes_in_flight;
    ni->loss_rate = tern__rec_loss_rate(c);
    ni->queue_delay_ns = c->rec.r->tgt.queue_delay;
    ni->target_rate_bps = c->rec.r->tgt.bps;
    ni->loss_burst = c->rec.r->burst_avg_q8 ? (double)c->rec.r->burst_avg_q8 / 256.0 : 1.0;
}

uint64_t tern__rec_rtt_pto(const tern_conn *c)
{
    uint64_t var = 4 * c->rec.rtt.rttvar;
    if (var < TERN_NS_PER_MS) var = TERN_NS_PER_MS;
    return c->rec.rtt.srtt + var;
}
