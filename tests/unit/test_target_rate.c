/*
 * Encoder feedback, the pure parts (target_rate.c): the payload share of the wire rate at a
 * loss rate, the drain factor while a queue stands, and the queueing-delay threshold.
 */
#include "core/target_rate.h"
#include "support/tt.h"

#define MS (1000000ull)
#define Q16 65536ull

static void test_payload_share(void)
{
    /* no loss: only headers, tag and frame header (41 bytes of 1452) */
    uint64_t s0 = tern__target_payload_share_q16(0, 0, 1452);
    TT_CHECK_RANGE(s0, Q16 * 96 / 100, Q16 * 98 / 100);
    /* 1% and 3% loss: twice that in repair */
    uint64_t s1 = tern__target_payload_share_q16(Q16 / 100, 0, 1452);
    uint64_t s3 = tern__target_payload_share_q16(Q16 * 3 / 100, 0, 1452);
    TT_CHECK_RANGE(s1, s0 * 100 / 103, s0 * 100 / 101);
    TT_CHECK_RANGE(s3, s0 * 100 / 107, s0 * 100 / 105);
    /* heavy loss: the repair share is capped at half the payload */
    TT_CHECK_EQ_U64(tern__target_payload_share_q16(Q16, 0, 1452),
                    tern__target_payload_share_q16(Q16 / 2, 0, 1452));
    TT_CHECK_RANGE(tern__target_payload_share_q16(Q16, 0, 1452), s0 * 2 / 3 - 1, s0 * 2 / 3 + 1);
    /* FEC that sends 20% of the bytes as repair: a quarter more per payload byte, more than
     * 2 x 3% loss; 2% repair at 3% loss: the loss allowance stands */
    TT_CHECK_RANGE(tern__target_payload_share_q16(Q16 * 3 / 100, Q16 / 5, 1452), s0 * 4 / 5 - 1,
                   s0 * 4 / 5 + 1);
    TT_CHECK_EQ_U64(tern__target_payload_share_q16(Q16 * 3 / 100, Q16 / 50, 1452), s3);
    /* a tiny datagram does not underflow */
    TT_CHECK(tern__target_payload_share_q16(0, 0, 10) > 0);
}

static void test_drain(void)
{
    /* no queue: no cut; 300 ms of queue on a 300 ms path: a third; far more: at most 3/4 */
    TT_CHECK_EQ_U64(tern__target_drain_q16(0, 300 * MS), Q16);
    TT_CHECK_RANGE(tern__target_drain_q16(300 * MS, 300 * MS), Q16 * 2 / 3 - 1, Q16 * 2 / 3 + 1);
    TT_CHECK_EQ_U64(tern__target_drain_q16(5000 * MS, 300 * MS), Q16 / 4);
    /* a short path drains against 100 ms, not its 10 ms */
    TT_CHECK_EQ_U64(tern__target_drain_q16(30 * MS, 10 * MS),
                    tern__target_drain_q16(30 * MS, 100 * MS));
}

static void test_threshold(void)
{
    /* 20 ms at least, an eighth of the min RTT, three datagrams' serialization */
    TT_CHECK_EQ_U64(tern__target_queue_threshold(40 * MS, 1452, 0), 20 * MS);
    TT_CHECK_EQ_U64(tern__target_queue_threshold(300 * MS, 1452, 0), 300 * MS / 8);
    /* 0.5 Mbit/s: 62500 bytes/s, 3 x 1452 bytes take 69.7 ms */
    uint64_t t = tern__target_queue_threshold(300 * MS, 1452, 62500);
    TT_CHECK_RANGE(t, 69 * MS, 70 * MS);
    TT_CHECK_EQ_U64(tern__target_queue_threshold(300 * MS, 1452, 1250000), 300 * MS / 8);
}

/* The model alone: ACKs of a sender at a steady rate with no queue make the target rise in
 * steps; a standing queue makes it fall at once to the capacity it shows, less the drain. */
static void test_model_steps(void)
{
    tern__target t;
    tern__target_init(&t, 0);
    tern__tgt_input in = {0};
    in.datagram = 1452;
    in.srtt = in.latest_rtt = 100 * MS;
    in.rtt_sample = 1;
    in.cc_bw = 125000; /* 1 Mbit/s */
    uint64_t now = 0, wire = 125000;
    /* 10 s of ACKs every 10 ms at the target's wire rate, no queue */
    uint64_t first = 0;
    for (int i = 1; i <= 1000; i++) {
        now = (uint64_t)i * 10 * MS;
        in.now = now;
        in.acked_bytes = wire / 100;
        tern__target_on_ack(&t, &in);
        if (!first) first = t.bps;
        wire = t.bps / 8 * 100 / 95; /* the sender follows */
    }
    TT_CHECK(first > 0);
    TT_CHECK_MSG(t.bps > first * 4, "rose from %llu to %llu", (unsigned long long)first,
                 (unsigned long long)t.bps);
    /* now the link holds 2 Mbit/s and a queue of 200 ms stands: ACKs at 250000 bytes/s */
    uint64_t before = t.bps;
    in.srtt = in.latest_rtt = 300 * MS;
    for (int i = 1; i <= 100; i++) {
        in.now = now + (uint64_t)i * 10 * MS;
        in.acked_bytes = 2500;
        tern__target_on_ack(&t, &in);
    }
    TT_CHECK(t.bps < before);
    /* 2 Mbit/s less overheads (~0.97), 95%, drain for 200 ms on 100 ms: 1 - 200/300 */
    TT_CHECK_RANGE(t.bps, 580000, 650000);
    TT_CHECK(t.pending || t.reported == t.bps);
}

/* Degenerate inputs: a zero RTT (a loopback or a simulator without delay), a controller
 * estimate near 2^64 and no pacing rate: no division by zero, and a huge rate stays a huge
 * target (it wrapped to the floor) that the hysteresis can multiply without overflow. */
static void test_model_extremes(void)
{
    tern__target t;
    tern__target_init(&t, 1000 * MS);
    tern__tgt_input in = {0};
    in.datagram = 1452;
    in.rtt_sample = 1;
    in.cc_bw = (uint64_t)1 << 62;
    in.unsent = UINT64_MAX / 2;
    for (int i = 1; i <= 100; i++) {
        in.now = 1000 * MS + (uint64_t)i * MS;
        in.acked_bytes = (uint64_t)1 << 40;
        tern__target_on_ack(&t, &in);
        TT_CHECK(t.bps >= 24000);
    }
    TT_CHECK_MSG(t.bps > 1000000000000ull, "target %llu", (unsigned long long)t.bps);
    TT_CHECK(t.bps <= (uint64_t)1 << 50);
    TT_CHECK(t.reported > 0);
    /* every input at its largest */
    in.cc_bw = in.pacing = in.acked_bytes = UINT64_MAX;
    in.srtt = in.latest_rtt = 1;
    for (int i = 101; i <= 200; i++) {
        in.now = 1000 * MS + (uint64_t)i * 30 * MS;
        tern__target_on_ack(&t, &in);
    }
    TT_CHECK(t.bps >= 24000 && t.bps <= (uint64_t)1 << 50);
}

static const tt_case cases[] = {
    TT_CASE(test_payload_share), TT_CASE(test_drain),          TT_CASE(test_threshold),
    TT_CASE(test_model_steps),   TT_CASE(test_model_extremes), {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
