/*
 * White-box tests of src/core/recovery.c, driven directly (no packets, no network): the bare
 * connection of support/core_rig, whose loss recovery is fed records of sent packets and ACK
 * frames at chosen times.
 *
 *   - RTT estimation (RFC 9002 5 / RFC 6298): the first sample sets srtt and rttvar = sample/2,
 *     later ones move them by 1/8 and 1/4; min_rtt; the peer's ACK delay is subtracted only
 *     when that leaves the sample at or above min_rtt, and never more than its max_ack_delay;
 *     only a newly acknowledged, ack-eliciting largest gives a sample.
 *   - the probe timeout: srtt + max(4 rttvar, 1 ms) + max_ack_delay, doubled per PTO, capped at
 *     8 srtt (at most max_backoff, never below one PTO); two probes per PTO; an ACK resets it.
 *   - loss detection by packet threshold (3) and by time threshold (9/8 of the RTT, the loss
 *     timer), persistent congestion (losses spanning 3 PTOs: the minimum window), late ACKs of
 *     lost packets (a spurious loss when within one PTO, from the bounded history of lost
 *     packet numbers once their records left the ring), ACKs of packets never sent, the ring of records growing and
 *     shrinking back, a path change declaring everything outstanding lost.
 */
#include <string.h>

#include "support/core_rig.h"

#define MS (1000000ull)
#define S (1000000000ull)

/* The bare connection (support/core_rig) and its recovery state. */
typedef struct rig {
    core_rig k;
    tern_conn *c;
    tern__recovery *r;
    uint64_t now;
} rig;

static void rig_init(rig *g, uint8_t cc)
{
    tern_settings s;
    tern_settings_default(&s);
    s.cc = cc;
    core_rig_init(&g->k, &s);
    g->c = g->k.c;
    g->r = g->c->rec.r;
    g->now = 0;
}

static void rig_free(rig *g)
{
    core_rig_free(&g->k);
}

/* Records packet number next_pn as sent now; returns its number. */
static uint64_t sent(rig *g, uint32_t bytes, int eliciting)
{
    tern_conn *c = g->c;
    uint64_t pn = c->tx.next_pn++;
    TT_REQUIRE(tern__rec_reserve(c, pn) == TERN_OK);
    tern__sent s;
    memset(&s, 0, sizeof(s));
    s.pn = pn;
    s.bytes = bytes;
    s.ack_eliciting = (uint8_t)eliciting;
    s.in_flight = (uint8_t)eliciting;
    tern__rec_on_sent(c, &s, g->now);
    return pn;
}

/* An ACK of [lo, hi] (and optionally a second, lower range [lo2, hi2]) with the peer's ack
 * delay, processed now. */
static int acked2(rig *g, uint64_t lo, uint64_t hi, uint64_t lo2, uint64_t hi2, uint64_t delay_us)
{
    tern__ack_frame f;
    memset(&f, 0, sizeof(f));
    f.largest = hi;
    f.ack_delay_us = delay_us;
    f.r[0].lo = lo;
    f.r[0].hi = hi;
    f.n = 1;
    if (hi2 >= lo2 && hi2 + 1 < lo) {
        f.r[1].lo = lo2;
        f.r[1].hi = hi2;
        f.n = 2;
    }
    return tern__rec_on_ack(g->c, &f, g->now);
}

static int acked(rig *g, uint64_t lo, uint64_t hi, uint64_t delay_us)
{
    return acked2(g, lo, hi, 1, 0, delay_us);
}

/* Sends one ack-eliciting packet now and has it acknowledged rtt later (no ack delay). */
static void rtt_sample(rig *g, uint64_t rtt)
{
    uint64_t pn = sent(g, 1200, 1);
    g->now += rtt;
    TT_REQUIRE(acked(g, pn, pn, 0) == TERN_OK);
}

static void test_initial_rtt_before_samples(void)
{
    rig g;
    rig_init(&g, TERN_CC_BBR);
    TT_CHECK_EQ_INT(g.c->rec.rtt.has_sample, 0);
    TT_CHECK_EQ_U64(g.c->rec.rtt.srtt, 333 * MS); /* tern_settings.initial_rtt_ns */
    TT_CHECK_EQ_U64(g.c->rec.rtt.rttvar, 333 * MS / 2);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), TERN_TIME_NEVER); /* nothing outstanding */
    rig_free(&g);
}

static void test_rtt_first_and_later_samples(void)
{
    rig g;
    rig_init(&g, TERN_CC_BBR);
    g.now = 1 * S;
    rtt_sample(&g, 100 * MS);
    TT_CHECK_EQ_INT(g.c->rec.rtt.has_sample, 1);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 100 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.srtt, 100 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.rttvar, 50 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.min, 100 * MS);

    rtt_sample(&g, 200 * MS);
    /* rttvar = 3/4 rttvar + 1/4 |srtt - sample|; srtt = 7/8 srtt + 1/8 sample */
    TT_CHECK_EQ_U64(g.c->rec.rtt.rttvar, (3 * 50 * MS + 100 * MS) / 4);
    TT_CHECK_EQ_U64(g.c->rec.rtt.srtt, (7 * 100 * MS + 200 * MS) / 8);
    TT_CHECK_EQ_U64(g.c->rec.rtt.min, 100 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 200 * MS);

    rtt_sample(&g, 40 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.min, 40 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 40 * MS);

    /* a steady path converges: srtt to the RTT, rttvar toward 0 */
    for (int i = 0; i < 200; i++) rtt_sample(&g, 60 * MS);
    TT_CHECK_RANGE(g.c->rec.rtt.srtt, 60 * MS - 10, 60 * MS + 10);
    TT_CHECK(g.c->rec.rtt.rttvar < 1 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.min, 40 * MS);
    rig_free(&g);
}

static void test_rtt_ack_delay(void)
{
    rig g;
    rig_init(&g, TERN_CC_BBR);
    g.now = 1 * S;
    /* the first sample ignores the ack delay */
    uint64_t pn = sent(&g, 1200, 1);
    g.now += 100 * MS;
    TT_REQUIRE(acked(&g, pn, pn, 20000) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 100 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.min, 100 * MS);

    /* later: subtracted when the result stays >= min_rtt */
    pn = sent(&g, 1200, 1);
    g.now += 130 * MS;
    TT_REQUIRE(acked(&g, pn, pn, 20000) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 110 * MS);

    /* not subtracted when it would go below min_rtt */
    pn = sent(&g, 1200, 1);
    g.now += 110 * MS;
    TT_REQUIRE(acked(&g, pn, pn, 20000) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 110 * MS);

    /* capped at the peer's max_ack_delay (25 ms by default) */
    TT_CHECK_EQ_U64(g.r->peer_max_ack_delay, 25 * MS);
    pn = sent(&g, 1200, 1);
    g.now += 200 * MS;
    TT_REQUIRE(acked(&g, pn, pn, 150000) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 175 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.min, 100 * MS); /* min_rtt never includes the delay adjustment */
    rig_free(&g);
}

static void test_rtt_sample_only_from_new_eliciting_largest(void)
{
    rig g;
    rig_init(&g, TERN_CC_BBR);
    g.now = 1 * S;
    rtt_sample(&g, 100 * MS);
    uint64_t srtt = g.c->rec.rtt.srtt;

    /* an ACK-only packet (not ack-eliciting) as the largest: no sample */
    uint64_t a = sent(&g, 1200, 1);
    uint64_t b = sent(&g, 50, 0);
    g.now += 300 * MS;
    TT_REQUIRE(acked(&g, a, b, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.srtt, srtt);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 100 * MS);

    /* the same ACK again, much later: nothing new, no sample */
    uint64_t c = sent(&g, 1200, 1);
    g.now += 50 * MS;
    TT_REQUIRE(acked(&g, c, c, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 50 * MS);
    g.now += 5 * S;
    TT_REQUIRE(acked(&g, c, c, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 50 * MS);

    /* a newly acknowledged packet below the largest gives none either */
    uint64_t d = sent(&g, 1200, 1);
    uint64_t e = sent(&g, 1200, 1);
    g.now += 70 * MS;
    TT_REQUIRE(acked(&g, e, e, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 70 * MS);
    g.now += 500 * MS;
    TT_REQUIRE(acked2(&g, e, e, d, d, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 70 * MS);
    rig_free(&g);
}

static void test_ack_of_unsent_packet_is_protocol_error(void)
{
    rig g;
    rig_init(&g, TERN_CC_BBR);
    sent(&g, 1200, 1);
    sent(&g, 1200, 1);
    TT_CHECK_EQ_INT(acked(&g, 0, 2, 0), TERN_ERR_PROTOCOL);
    TT_CHECK_EQ_INT(acked(&g, 5, 5, 0), TERN_ERR_PROTOCOL);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 2400); /* nothing was taken as acknowledged */
    TT_CHECK_EQ_INT(acked(&g, 0, 1, 0), TERN_OK);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 0);
    rig_free(&g);
}

/* Sets the RTT estimate directly (white box), as if from samples. */
static void set_rtt(rig *g, uint64_t srtt, uint64_t rttvar)
{
    g->c->rec.rtt.srtt = srtt;
    g->c->rec.rtt.rttvar = rttvar;
    g->c->rec.rtt.min = srtt;
    g->c->rec.rtt.latest = srtt;
    g->c->rec.rtt.has_sample = 1;
}

static void test_pto_formula_and_backoff(void)
{
    rig g;
    rig_init(&g, TERN_CC_BBR);
    uint64_t mad = g.r->peer_max_ack_delay;
    set_rtt(&g, 100 * MS, 50 * MS);
    uint64_t base = 100 * MS + 4 * 50 * MS + mad;
    TT_CHECK_EQ_U64(tern__rec_pto(g.c), base);
    g.r->pto_count = 1;
    TT_CHECK_EQ_U64(tern__rec_pto(g.c), 2 * base);
    g.r->pto_count = 2; /* 4 base = 1300 ms is past 8 srtt = 800 ms */
    TT_CHECK_EQ_U64(tern__rec_pto(g.c), 800 * MS);
    g.r->pto_count = 40; /* the shift is bounded: no overflow to a small value */
    TT_CHECK_EQ_U64(tern__rec_pto(g.c), 800 * MS);

    /* 4 rttvar below the 1 ms granularity counts as 1 ms */
    g.r->pto_count = 0;
    set_rtt(&g, 10 * MS, 100);
    TT_CHECK_EQ_U64(tern__rec_pto(g.c), 10 * MS + 1 * MS + mad);

    /* long paths: 8 srtt is past max_backoff (2 s), which caps it */
    set_rtt(&g, 400 * MS, 50 * MS);
    base = 400 * MS + 200 * MS + mad;
    g.r->pto_count = 3;
    TT_CHECK_EQ_U64(tern__rec_pto(g.c), 2 * S);

    /* one PTO above max_backoff: never below one PTO */
    set_rtt(&g, 1 * S, 500 * MS);
    base = 1 * S + 2 * S + mad;
    g.r->pto_count = 0;
    TT_CHECK_EQ_U64(tern__rec_pto(g.c), base);
    g.r->pto_count = 5;
    TT_CHECK_EQ_U64(tern__rec_pto(g.c), base);
    rig_free(&g);
}

static void test_pto_timer_probes_and_reset(void)
{
    rig g;
    rig_init(&g, TERN_CC_NEWRENO);
    g.now = 1 * S;
    rtt_sample(&g, 100 * MS); /* srtt 100, rttvar 50 */
    uint64_t base = tern__rec_pto(g.c);
    TT_CHECK_EQ_U64(base, 100 * MS + 200 * MS + 25 * MS);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), TERN_TIME_NEVER);

    /* an ACK-only packet arms nothing */
    uint64_t ack_only = sent(&g, 40, 0);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), TERN_TIME_NEVER);

    uint64_t t0 = g.now;
    uint64_t pn = sent(&g, 1200, 1);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), t0 + base);
    /* early: nothing happens */
    g.now = t0 + base - 1;
    tern__rec_on_timer(g.c, g.now);
    TT_CHECK_EQ_INT(g.r->pto_count, 0);
    TT_CHECK_EQ_INT(g.r->probes_pending, 0);
    /* first PTO: two probes, the timer re-armed from now at twice the PTO */
    g.now = t0 + base;
    tern__rec_on_timer(g.c, g.now);
    TT_CHECK_EQ_INT(g.r->pto_count, 1);
    TT_CHECK_EQ_INT(g.r->probes_pending, 2);
    TT_CHECK_EQ_INT(g.c->st.pto_count, 1);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), g.now + 2 * base);
    /* second PTO: capped at 8 srtt = 800 ms */
    g.now += 2 * base;
    tern__rec_on_timer(g.c, g.now);
    TT_CHECK_EQ_INT(g.r->pto_count, 2);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), g.now + 800 * MS);
    /* a PTO declares nothing lost by itself */
    TT_CHECK_EQ_U64(g.r->lost_total, 0);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 1200);

    /* the ACK resets the backoff and disarms the timer */
    g.now += 10 * MS;
    TT_REQUIRE(acked(&g, ack_only, pn, 0) == TERN_OK);
    TT_CHECK_EQ_INT(g.r->pto_count, 0);
    TT_CHECK_EQ_INT(g.r->probes_pending, 0);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), TERN_TIME_NEVER);
    rig_free(&g);
}

static void test_loss_by_packet_threshold(void)
{
    rig g;
    rig_init(&g, TERN_CC_NEWRENO);
    g.now = 1 * S;
    rtt_sample(&g, 100 * MS);
    uint64_t p[6];
    for (int i = 0; i < 6; i++) p[i] = sent(&g, 1000, 1);
    g.now += 100 * MS;
    uint64_t flight = g.r->bytes_in_flight;
    TT_CHECK_EQ_U64(flight, 6000);

    /* p[3] acknowledged: p[0] is 3 below the largest acknowledged, lost; p[1], p[2] not yet */
    TT_REQUIRE(acked(&g, p[3], p[3], 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->lost_total, 1);
    TT_CHECK_EQ_U64(g.c->st.packets_lost, 1);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 6000 - 1000 - 1000);
    /* the others wait for the time threshold: the loss timer is armed */
    TT_CHECK(g.r->loss_time != TERN_TIME_NEVER);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), g.r->loss_time);

    /* p[4]: p[1] reaches the threshold */
    TT_REQUIRE(acked2(&g, p[4], p[4], p[3], p[3], 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->lost_total, 2);
    /* p[5]: p[2]; nothing left outstanding, nothing armed */
    TT_REQUIRE(acked(&g, p[3], p[5], 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->lost_total, 3);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 0);
    TT_CHECK_EQ_U64(g.r->loss_time, TERN_TIME_NEVER);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), TERN_TIME_NEVER);
    TT_CHECK_EQ_U64(g.r->eliciting_out, 0);
    rig_free(&g);
}

static void test_loss_by_time_threshold(void)
{
    rig g;
    rig_init(&g, TERN_CC_NEWRENO);
    g.now = 1 * S;
    rtt_sample(&g, 80 * MS); /* srtt = latest = 80 ms: the threshold is 90 ms */
    uint64_t t0 = g.now;
    uint64_t a = sent(&g, 1000, 1);
    g.now += 9 * MS;
    uint64_t b = sent(&g, 1000, 1);
    g.now = t0 + 89 * MS; /* b's sample is 80 ms again: srtt stays 80 ms */
    TT_REQUIRE(acked(&g, b, b, 0) == TERN_OK);
    /* a is one packet below and 89 ms old: not lost; the loss timer fires at t0 + 90 ms */
    TT_CHECK_EQ_U64(g.r->lost_total, 0);
    TT_CHECK_EQ_U64(g.r->loss_time, t0 + 90 * MS);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), t0 + 90 * MS); /* before the PTO */
    tern__rec_on_timer(g.c, t0 + 90 * MS - 1);
    TT_CHECK_EQ_U64(g.r->lost_total, 0);
    g.now = t0 + 90 * MS;
    tern__rec_on_timer(g.c, g.now);
    TT_CHECK_EQ_U64(g.r->lost_total, 1);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 0);
    TT_CHECK_EQ_INT(g.r->pto_count, 0); /* the loss timer is not a PTO */
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), TERN_TIME_NEVER);

    /* the latest RTT when above srtt sets the threshold: a sudden 400 ms sample */
    uint64_t c = sent(&g, 1000, 1);
    uint64_t d = sent(&g, 1000, 1);
    g.now += 400 * MS;
    TT_REQUIRE(acked(&g, d, d, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.c->rec.rtt.latest, 400 * MS);
    TT_CHECK_EQ_U64(g.r->lost_total, 1); /* c: 400 ms old, threshold 450 ms */
    TT_CHECK_EQ_U64(g.r->loss_time, g.now + 50 * MS);
    (void)a;
    (void)c;
    rig_free(&g);
}

static void test_late_ack_of_lost_packet(void)
{
    rig g;
    rig_init(&g, TERN_CC_NEWRENO);
    g.now = 1 * S;
    rtt_sample(&g, 50 * MS);
    uint64_t srtt = g.c->rec.rtt.srtt;
    uint64_t p[4];
    for (int i = 0; i < 4; i++) p[i] = sent(&g, 1000, 1);
    g.now += 50 * MS;
    TT_REQUIRE(acked(&g, p[3], p[3], 0) == TERN_OK); /* p[0] declared lost */
    TT_CHECK_EQ_U64(g.r->lost_total, 1);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 2000);
    /* its ACK arrives after all (reordered), with the others: no byte is taken off twice, no
     * error, no RTT sample from the old largest */
    g.now += 500 * MS;
    TT_REQUIRE(acked(&g, p[0], p[3], 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 0);
    TT_CHECK_EQ_U64(g.r->lost_total, 1);
    TT_CHECK_EQ_U64(g.r->eliciting_out, 0);
    TT_CHECK_EQ_U64(g.c->rec.rtt.srtt, srtt);
    rig_free(&g);
}

/* With srtt 80 ms: sends a, then b 9 ms later, acknowledges b at 89 ms and fires the loss timer
 * at 90 ms, which declares a lost by the time threshold. Returns a (b in *b_out). */
static uint64_t lose_one_by_time(rig *g, uint64_t *b_out)
{
    uint64_t t0 = g->now;
    uint64_t a = sent(g, 1000, 1);
    g->now += 9 * MS;
    *b_out = sent(g, 1000, 1);
    g->now = t0 + 89 * MS;
    TT_REQUIRE(acked(g, *b_out, *b_out, 0) == TERN_OK);
    g->now = t0 + 90 * MS;
    tern__rec_on_timer(g->c, g->now);
    return a;
}

/* A packet declared lost by the time threshold whose ACK comes late (reordering): its record
 * has left the ring, but its number is kept for one PTO, so the ACK counts one spurious loss
 * (once, however often the peer repeats the range); after the window an ACK counts nothing. */
static void test_spurious_loss_counted_within_window(void)
{
    rig g;
    rig_init(&g, TERN_CC_NEWRENO);
    g.now = 1 * S;
    rtt_sample(&g, 80 * MS); /* threshold 90 ms; PTO 80 + 4 x 40 + 25 = 265 ms */
    uint64_t b, a = lose_one_by_time(&g, &b);
    TT_CHECK_EQ_U64(g.r->lost_total, 1);
    TT_CHECK(g.r->base > a); /* its record is gone from the ring */
    TT_CHECK_EQ_U64(g.r->lost_hist_live, 1);
    g.now += 20 * MS; /* a's ACK, late */
    TT_REQUIRE(acked(&g, a, b, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->spurious, 1);
    TT_CHECK_EQ_U64(g.c->st.spurious_losses, 1);
    TT_CHECK_EQ_U64(g.r->lost_hist_live, 0);
    TT_REQUIRE(acked(&g, a, b, 0) == TERN_OK); /* repeated: counted once */
    TT_CHECK_EQ_U64(g.r->spurious, 1);
    TT_CHECK_EQ_U64(g.r->lost_total, 1);

    /* another loss, acknowledged only long after the window: nothing counts */
    uint64_t d, c = lose_one_by_time(&g, &d);
    TT_CHECK_EQ_U64(g.r->lost_total, 2);
    TT_CHECK_EQ_U64(g.r->lost_hist_live, 1);
    g.now += 2 * S;
    TT_REQUIRE(acked(&g, c, d, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->spurious, 1);
    TT_CHECK_EQ_U64(g.r->lost_hist_live, 0); /* the expired entry was dropped */
    rig_free(&g);
}

/* The remembered losses are a fixed ring: many more losses than it holds neither allocate nor
 * grow anything, the oldest are overwritten, and the newest ones still count when acked late. */
static void test_lost_history_is_bounded(void)
{
    rig g;
    rig_init(&g, TERN_CC_NEWRENO);
    g.now = 1 * S;
    rtt_sample(&g, 50 * MS);
    enum { N = 10 * TERN__LOST_HISTORY };
    uint64_t first = 0, last = 0;
    for (int i = 0; i < N; i++) {
        uint64_t pn = sent(&g, 1000, 1);
        if (i == 0) first = pn;
        last = pn;
    }
    uint64_t t = sent(&g, 1000, 1), u = sent(&g, 1000, 1), v = sent(&g, 1000, 1);
    g.now += 50 * MS;
    TT_REQUIRE(acked(&g, t, v, 0) == TERN_OK); /* the N before: lost by the packet threshold */
    TT_CHECK_EQ_U64(g.r->lost_total, N);
    TT_CHECK_EQ_U64(g.r->lost_hist_live, TERN__LOST_HISTORY);
    size_t mem = (size_t)g.k.mem.current;
    (void)u;
    /* every one of them acknowledged late: only the newest TERN__LOST_HISTORY are known */
    g.now += 10 * MS;
    TT_REQUIRE(acked(&g, first, v, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->spurious, TERN__LOST_HISTORY);
    TT_CHECK_EQ_U64(g.r->lost_hist_live, 0);
    TT_CHECK((size_t)g.k.mem.current <= mem);
    (void)last;
    rig_free(&g);
}

/* Loses every packet sent from t0 to t0 + span (one each 50 ms): the three sent after them are
 * acknowledged, 100 ms later. Returns the congestion window after that ACK. */
static uint64_t cwnd_after_losses_over(uint64_t span)
{
    rig g;
    rig_init(&g, TERN_CC_NEWRENO);
    g.now = 1 * S;
    rtt_sample(&g, 100 * MS);
    uint64_t t0 = g.now;
    for (; g.now <= t0 + span; g.now += 50 * MS) sent(&g, 1000, 1);
    uint64_t first = sent(&g, 1000, 1);
    sent(&g, 1000, 1);
    uint64_t last = sent(&g, 1000, 1);
    g.now += 100 * MS;
    TT_CHECK(acked(&g, first, last, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->lost_total, span / (50 * MS) + 1);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 0);
    uint64_t cwnd = g.r->cc.ops->cwnd(g.r->cc.st);
    rig_free(&g);
    return cwnd;
}

static void test_persistent_congestion(void)
{
    rig g;
    rig_init(&g, TERN_CC_NEWRENO);
    uint64_t cwnd0 = g.r->cc.ops->cwnd(g.r->cc.st);
    size_t mss = tern__conn_max_payload(g.c);
    rig_free(&g);
    /* the ACK's sample leaves srtt 100 ms and rttvar 37.5 ms: 3 PTOs (with the peer's 25 ms
     * ACK delay) are 825 ms. Losses within that: one congestion event, the window halves */
    uint64_t halved = cwnd_after_losses_over(700 * MS);
    TT_CHECK_EQ_U64(halved, (cwnd0 + 1200 + 3000) / 2); /* after slow start grew it by the acked */
    /* losses spanning more (RFC 9002 7.6): persistent congestion, the minimum window */
    uint64_t collapsed = cwnd_after_losses_over(1100 * MS);
    TT_CHECK_EQ_U64(collapsed, 2 * mss);
}

static void test_ring_grows_and_shrinks(void)
{
    rig g;
    rig_init(&g, TERN_CC_BBR);
    g.now = 1 * S;
    size_t idle_cap = g.r->cap;
    /* a burst of 1000 packets outstanding at once */
    uint64_t first = g.c->tx.next_pn;
    for (int i = 0; i < 1000; i++) sent(&g, 1200, 1);
    TT_CHECK(g.r->cap >= 1000);
    TT_CHECK_EQ_U64(g.r->n, 1000);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 1200 * 1000);
    TT_CHECK_EQ_U64(g.r->eliciting_out, 1000);
    size_t grown = g.k.mem.current;
    /* the newest half and a piece below acknowledged: everything unacknowledged 3 or more
     * below the largest (0..99, 401..499) is lost */
    g.now += 30 * MS;
    TT_REQUIRE(acked2(&g, first + 500, first + 999, first + 100, first + 400, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->lost_total, 100 + 99);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 0);
    TT_CHECK_EQ_U64(g.r->eliciting_out, 0);
    /* nothing outstanding: the ring is empty and back at its idle size, memory with it */
    TT_CHECK_EQ_U64(g.r->n, 0);
    TT_CHECK_EQ_U64(g.r->cap, idle_cap);
    TT_CHECK(g.k.mem.current < grown);
    /* numbers skipped by the sender (records it never made) are placeholders: when the ACK
     * of b shows a lost, the ten numbers between them are not counted as losses */
    g.c->tx.next_pn += 10;
    uint64_t a = sent(&g, 1200, 1);
    g.c->tx.next_pn += 10;
    uint64_t b = sent(&g, 1200, 1);
    TT_CHECK_EQ_U64(g.r->n, b - a + 1);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 2400);
    g.now += 30 * MS;
    TT_REQUIRE(acked(&g, b, b, 0) == TERN_OK);
    TT_CHECK_EQ_U64(g.r->lost_total, 199 + 1);
    TT_CHECK_EQ_U64(g.r->n, 0);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 0);
    rig_free(&g);
}

static void test_path_change_requeues_outstanding(void)
{
    rig g;
    rig_init(&g, TERN_CC_CUBIC);
    g.now = 1 * S;
    rtt_sample(&g, 20 * MS);
    for (int i = 0; i < 5; i++) sent(&g, 1000, 1);
    g.r->pto_count = 3;
    g.now += 1 * MS;
    tern__rec_path_changed(g.c, g.now);
    TT_CHECK_EQ_U64(g.r->lost_total, 5);
    TT_CHECK_EQ_U64(g.r->bytes_in_flight, 0);
    TT_CHECK_EQ_U64(g.r->eliciting_out, 0);
    TT_CHECK_EQ_INT(g.r->pto_count, 0);
    TT_CHECK_EQ_U64(tern__rec_timer(g.c), TERN_TIME_NEVER);
    TT_CHECK_EQ_INT(g.c->rec.rtt.has_sample, 0); /* the next sample replaces the estimate */
    rtt_sample(&g, 200 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.srtt, 200 * MS);
    TT_CHECK_EQ_U64(g.c->rec.rtt.rttvar, 100 * MS);
    rig_free(&g);
}

static const tt_case cases[] = {
    TT_CASE(test_initial_rtt_before_samples),
    TT_CASE(test_rtt_first_and_later_samples),
    TT_CASE(test_rtt_ack_delay),
    TT_CASE(test_rtt_sample_only_from_new_eliciting_largest),
    TT_CASE(test_ack_of_unsent_packet_is_protocol_error),
    TT_CASE(test_pto_formula_and_backoff),
    TT_CASE(test_pto_timer_probes_and_reset),
    TT_CASE(test_loss_by_packet_threshold),
    TT_CASE(test_loss_by_time_threshold),
    TT_CASE(test_late_ack_of_lost_packet),
    TT_CASE(test_spurious_loss_counted_within_window),
    TT_CASE(test_lost_history_is_bounded),
    TT_CASE(test_persistent_congestion),
    TT_CASE(test_ring_grows_and_shrinks),
    TT_CASE(test_path_change_requeues_outstanding),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
