/*
 * Forward error correction on the simulated network (docs/protocol.md 6.4): a live flow at
 * 300 ms RTT whose deadlines leave no time for a retransmission gets clearly more messages on
 * time with FEC (ADAPTIVE, and FIXED) than without, at 1% and 3% random loss and under
 * Gilbert-Elliott bursts, and none late; at 40 ms RTT ADAPTIVE sends no repair (NACK is in
 * time); the same frames on a RELIABLE flow come in time far more often with ADAPTIVE (tail
 * repair after each frame); a RELIABLE transfer with ADAPTIVE FEC on a lossy link still
 * delivers every byte exactly once, in order. 25 fps video at 300 ms RTT, 1%: with 600 ms
 * deadlines ADAPTIVE delivers at least what FIXED does; in the live cell (1.1 Mbit/s)
 * the share of frames within one-way delay + 100 ms, seeds 1..10.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/fec.h"
#include "support/tnet.h"
#include "support/xfer.h"

#define MS (1000000ull)
#define S (1000000000ull)

/* The deadline of the live messages. At 300 ms RTT a retransmission arrives no sooner than
 * about 1.5 RTT (450 ms) after the original was sent, so none can make it in time. (At 400 ms
 * the sender's cutoff, deadline less the RTT as the one-way bound, less a quarter RTT of slack,
 * less the time to pace the message out, gives up every 3000-byte message before it is sent:
 * see flow_send.c's send_cutoff.) */
#define DEADLINE_MS 450
/* messages counted: after the first WARMUP (the first seconds, while the congestion controller
 * finds the rate, are the same with FEC or without) */
#define WARMUP 90
#define MESSAGES 600

typedef struct live {
    uint64_t sent, on_time, late, bytes_bad;
    uint64_t deadline_ns, last_seq;
    tern_conn *sc;
    sim *s;
} live;

/* A message: its sequence number and send time (8 bytes each), then a pattern of the seq. */
static void live_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d,
                            size_t len)
{
    (void)c;
    (void)flow;
    live *l = n->user;
    uint64_t seq, at;
    if (len < 16) {
        l->bytes_bad++;
        return;
    }
    memcpy(&seq, d, 8);
    memcpy(&at, d + 8, 8);
    for (size_t i = 16; i < len; i++)
        if (d[i] != (uint8_t)(seq + i)) {
            l->bytes_bad++;
            return;
        }
    /* the simulator's clock is the receiver's: on time means within the deadline of sending */
    if (seq < WARMUP) {
        l->last_seq = seq;
        return;
    }
    if (sim_now(l->s) <= at + l->deadline_ns) l->on_time++;
    else l->late++;
    /* FEC_TRACE=1: which messages were missed, when (BBR's PROBE_RTT, 10 s in, shows as a run
     * of 3 or 4 given up at the sender, with FEC or without) */
    if (getenv("FEC_TRACE") && seq > l->last_seq + 1)
        fprintf(stderr, "missing %llu..%llu at %.3f s (sender: %llu given up, %llu lost)\n",
                (unsigned long long)l->last_seq + 1, (unsigned long long)seq - 1,
                (double)sim_now(l->s) / 1e9, (unsigned long long)l->sc->st.messages_abandoned,
                (unsigned long long)l->sc->st.packets_lost);
    l->last_seq = seq;
}

typedef enum { LOSS_RANDOM, LOSS_GE } loss_kind;

static sim_link_params link_params(loss_kind kind, double loss, uint64_t rtt_ms)
{
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = rtt_ms / 2 * MS;
    p.rate_bps = 4000000;       /* 4 Mbit/s */
    p.queue_bytes = 150000;     /* one bandwidth-delay product */
    p.overhead_bytes = 28;
    p.mtu = 1500;
    if (kind == LOSS_RANDOM) {
        p.loss = loss;
    } else {
        /* bad state: mean 2 packets, loses half of them; entered so that the mean rate is loss */
        p.ge_p_bad_to_good = 0.5;
        p.ge_loss_in_bad = 0.5;
        double bad_share = loss / p.ge_loss_in_bad;
        p.ge_p_good_to_bad = p.ge_p_bad_to_good * bad_share / (1 - bad_share);
    }
    return p;
}

/* 30 messages a second of 3000 bytes (about 0.75 Mbit/s) for 20 s, each with a deadline,
 * on a PARTIAL flow with the given FEC mode; returns the share on time. */
/* reliable: a RELIABLE flow without deadline instead (on time still means within DEADLINE_MS;
 * ADAPTIVE repairs each frame as the tail of a burst) */
/* repair's share of the live flow's bytes at the end of the last live_run (the sender's
 * average, tern__fec_repair_share_q16) */
static double last_share;

static double live_run(loss_kind kind, double loss, uint64_t rtt_ms, uint8_t fec, int reliable,
                       tern_conn_stats *out)
{
    tern_addr sa, ca;
    tern_addr_ipv4(&sa, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&ca, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    TT_REQUIRE(s != NULL);
    tnet_node srv, cli;
    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    tnet_node_init(&srv, s, &sa, 1, NULL, 1);
    tnet_node_init(&cli, s, &ca, 0, NULL, 2);
    sim_link_params p = link_params(kind, loss, rtt_ms);
    sim_link_set_both(s, &ca, &sa, &p);
    live l;
    memset(&l, 0, sizeof(l));
    l.deadline_ns = DEADLINE_MS * MS;
    l.s = s;
    srv.user = &l;
    srv.on_message = live_on_message;
    tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
    l.sc = c;
    sim_run_until(s, 2 * S);
    TT_REQUIRE(cli.established);
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.reliability = reliable ? TERN_FLOW_RELIABLE : TERN_FLOW_PARTIAL;
    cfg.deadline_ms = reliable ? 0 : DEADLINE_MS;
    cfg.fec = fec;
    cfg.fec_repair_pct = 50;
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(c, &cfg, &flow) == TERN_OK);
    uint8_t msg[3000];
    uint64_t t = sim_now(s);
    for (uint64_t seq = 0; seq < MESSAGES; seq++) {
        uint64_t now = sim_now(s);
        memcpy(msg, &seq, 8);
        memcpy(msg + 8, &now, 8);
        for (size_t i = 16; i < sizeof(msg); i++) msg[i] = (uint8_t)(seq + i);
        TT_CHECK_EQ_INT(tern_flow_send(c, flow, now, msg, sizeof(msg), -1), TERN_OK);
        if (seq >= WARMUP) l.sent++;
        sim_node_wake(s, cli.node);
        t += 33 * MS;
        TT_REQUIRE(sim_run_until(s, t) == SIM_OK);
    }
    TT_REQUIRE(sim_run_until(s, t + 2 * S) == SIM_OK);
    tern_conn_get_stats(c, out);
    last_share = tern__fec_repair_share_q16(c) / 65536.0;
    tern_conn_stats rs;
    tern_conn_get_stats(srv.conn, &rs);
    out->fec_repair_received = rs.fec_repair_received;
    out->fec_recovered = rs.fec_recovered;
    out->fec_dropped = rs.fec_dropped;
    out->fec_unrecoverable = rs.fec_unrecoverable;
    TT_CHECK_EQ_U64(l.bytes_bad, 0);
    /* with a deadline, never delivered after it, rebuilt messages included */
    if (!reliable) TT_CHECK_EQ_U64(l.late, 0);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
    return (double)l.on_time / (double)l.sent;
}

static void live_compare(loss_kind kind, double loss)
{
    tern_conn_stats off, ad, fx;
    double r_off = live_run(kind, loss, 300, TERN_FEC_OFF, 0, &off);
    double r_ad = live_run(kind, loss, 300, TERN_FEC_ADAPTIVE, 0, &ad);
    double share_ad = last_share;
    double r_fx = live_run(kind, loss, 300, TERN_FEC_FIXED, 0, &fx);
    printf("    %s %.0f%%: on time OFF %.2f%%, ADAPTIVE %.2f%% (%llu repair, %.0f%% of the bytes, "
           "%llu rebuilt, %llu unrecoverable, %llu dropped), FIXED 50%% %.2f%% (%llu repair, %llu "
           "rebuilt)\n",
           kind == LOSS_RANDOM ? "random" : "Gilbert-Elliott", loss * 100, r_off * 100,
           r_ad * 100, (unsigned long long)ad.fec_repair_sent, share_ad * 100,
           (unsigned long long)ad.fec_recovered, (unsigned long long)ad.fec_unrecoverable,
           (unsigned long long)ad.fec_dropped, r_fx * 100,
           (unsigned long long)fx.fec_repair_sent, (unsigned long long)fx.fec_recovered);
    TT_CHECK_EQ_U64(off.fec_repair_sent, 0);
    TT_CHECK(ad.fec_repair_sent > 0);
    TT_CHECK(ad.fec_recovered > 0);
    TT_CHECK(share_ad > 0.05 && share_ad < 0.6); /* m at most half of k (fec_repair_pct 50) */
    /* a clear margin: FEC removes at least 40% of the messages that OFF misses */
    TT_CHECK_MSG(1 - r_ad <= (1 - r_off) * 0.6, "ADAPTIVE %.4f vs OFF %.4f", r_ad, r_off);
    TT_CHECK_MSG(1 - r_fx <= (1 - r_off) * 0.6, "FIXED %.4f vs OFF %.4f", r_fx, r_off);
}

static void test_live_random_loss(void)
{
    live_compare(LOSS_RANDOM, 0.01);
    live_compare(LOSS_RANDOM, 0.03);
}

static void test_live_bursty_loss(void)
{
    live_compare(LOSS_GE, 0.01);
    live_compare(LOSS_GE, 0.03);
}

/* At 40 ms RTT a retransmission arrives well within the deadline: ADAPTIVE sends (almost) no
 * repair and does as well as OFF (NACK repairs it). Almost: where a queue spike makes the
 * latest RTT sample large (186 ms at one point with seed 6), the sender's own rules say a
 * retransmission would be late for that moment's groups, and they get repair. */
static void test_live_low_rtt_no_repair(void)
{
    tern_conn_stats off, ad;
    double r_off = live_run(LOSS_RANDOM, 0.03, 40, TERN_FEC_OFF, 0, &off);
    double r_ad = live_run(LOSS_RANDOM, 0.03, 40, TERN_FEC_ADAPTIVE, 0, &ad);
    printf("    40 ms RTT, 3%% random: on time OFF %.2f%%, ADAPTIVE %.2f%% (%llu repair)\n",
           r_off * 100, r_ad * 100, (unsigned long long)ad.fec_repair_sent);
    TT_CHECK(ad.fec_repair_sent <= 12); /* a few groups at most, of 600 */
    TT_CHECK(r_off >= 0.99 && r_ad >= 0.99);
}

/* The same live frames on a RELIABLE flow (no deadline in the core; every frame is delivered,
 * late or not): ADAPTIVE's tail repair after each frame brings clearly more of them in time. */
static void test_live_reliable_tail_repair(void)
{
    tern_conn_stats off, ad;
    double r_off = live_run(LOSS_RANDOM, 0.03, 300, TERN_FEC_OFF, 1, &off);
    double r_ad = live_run(LOSS_RANDOM, 0.03, 300, TERN_FEC_ADAPTIVE, 1, &ad);
    printf("    reliable live, 3%% random: in time OFF %.2f%%, ADAPTIVE %.2f%% (%llu repair, %llu "
           "rebuilt)\n",
           r_off * 100, r_ad * 100, (unsigned long long)ad.fec_repair_sent,
           (unsigned long long)ad.fec_recovered);
    TT_CHECK(ad.fec_repair_sent > 0);
    TT_CHECK_MSG(1 - r_ad <= (1 - r_off) * 0.6, "ADAPTIVE %.4f vs OFF %.4f", r_ad, r_off);
}

typedef struct burst {
    sim_xfer x; /* first: the receiver's user */
    uint64_t next_at;
} burst;

/* one message of 20 kB every 100 ms (1.6 Mbit/s on a 4 Mbit/s link): the flow's queue runs
 * empty after each, so each message's last group gets tail repair */
static int burst_running(void *arg)
{
    burst *u = arg;
    sim_xfer *x = &u->x;
    uint64_t now = sim_now(x->s);
    if (x->queued < x->total && now >= u->next_at) {
        static uint8_t msg[20000];
        size_t n = sizeof(msg);
        if (n > x->total - x->queued) n = (size_t)(x->total - x->queued);
        for (size_t i = 0; i < n; i++) msg[i] = sim_xfer_pattern(x->queued + i);
        if (tern_flow_send(x->sc, x->flow, now, msg, n, -1) == TERN_OK) {
            x->queued += n;
            u->next_at = now + 100 * MS;
            sim_node_wake(x->s, x->snd->node);
        }
    }
    return x->received < x->total && x->bad == 0 && !x->snd->closed && !x->rcv->closed;
}

/* A RELIABLE transfer with ADAPTIVE FEC over 3% Gilbert-Elliott loss: every byte exactly once
 * (rebuilt fragments and retransmissions never deliver a byte twice), with tail repair after
 * every message. */
static void test_reliable_exactly_once(void)
{
    tern_addr sa, ca;
    tern_addr_ipv4(&sa, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&ca, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    TT_REQUIRE(s != NULL);
    tnet_node srv, cli;
    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    tnet_node_init(&srv, s, &sa, 1, NULL, 1);
    tnet_node_init(&cli, s, &ca, 0, NULL, 2);
    sim_link_params p = link_params(LOSS_GE, 0.03, 300);
    sim_link_set_both(s, &ca, &sa, &p);
    burst u;
    memset(&u, 0, sizeof(u));
    sim_xfer *xp = &u.x;
#define x (*xp)
    x.s = s;
    x.snd = &cli;
    x.rcv = &srv;
    x.total = 2u << 20;
    srv.user = &x;
    srv.on_message = sim_xfer_on_message;
    x.sc = tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 2 * S);
    TT_REQUIRE(cli.established);
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.fec = TERN_FEC_ADAPTIVE;
    cfg.fec_repair_pct = 50;
    TT_REQUIRE(tern_flow_open(x.sc, &cfg, &x.flow) == TERN_OK);
    uint64_t t0 = sim_now(s);
    u.next_at = t0;
    int rc = sim_run_while(s, burst_running, &u, t0 + 120 * S);
    TT_REQUIRE_MSG(rc == SIM_OK, "sim: %d %s", rc, sim_error(s));
    tern_conn_stats st, rs;
    tern_conn_get_stats(x.sc, &st);
    tern_conn_get_stats(srv.conn, &rs);
    tern_network_info ni;
    tern_conn_network_info(x.sc, &ni);
    printf("    reliable 2 MB in 20 kB bursts, 3%% GE loss: %.2f s, %llu lost, %llu retx frags, "
           "%llu repair sent, %llu rebuilt, loss burst %.2f\n",
           (double)(x.done_at - t0) / 1e9, (unsigned long long)st.packets_lost,
           (unsigned long long)st.packets_retransmitted_frags,
           (unsigned long long)st.fec_repair_sent, (unsigned long long)rs.fec_recovered,
           ni.loss_burst);
    TT_CHECK_EQ_U64(x.bad, 0);
    TT_CHECK_EQ_U64(x.received, x.total);
    TT_CHECK(ni.loss_burst >= 1.0);
    TT_CHECK(st.fec_repair_sent > 0);
    TT_CHECK(rs.fec_recovered > 0);
#undef x
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}


/* ---------------------------------------------------------------- live video */

/* 25 fps video, P-frames of pframe bytes and a keyframe of kf_mult x that every 50 frames,
 * each frame one message with a deadline (tern_flow_send_msg, keyframes TERN_MSG_KEYFRAME
 * when tagged, else tern_flow_send), over a link of rate_bps with a one-BDP queue and random
 * loss. The sim's clock is shared by both ends, so capture (the send call) to delivery is
 * exact: on time means within one-way delay + playout_ms. */
typedef struct video_cfg {
    uint64_t seed, rate_bps, rtt_ms, deadline_ms, playout_ms;
    double loss;
    size_t pframe;
    unsigned kf_mult, frames;
    uint8_t fec, tagged;
} video_cfg;

typedef struct video {
    uint64_t counted, on_time, late, bad;
    uint64_t budget_ns, last;
    unsigned warmup;
    sim *s;
} video;

static void video_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d,
                             size_t len)
{
    (void)c;
    (void)flow;
    video *v = n->user;
    uint64_t seq, at;
    if (len < 16) {
        v->bad++;
        return;
    }
    memcpy(&seq, d, 8);
    memcpy(&at, d + 8, 8);
    for (size_t i = 16; i < len; i++)
        if (d[i] != (uint8_t)(seq * 7 + i)) {
            v->bad++;
            return;
        }
    if (getenv("FEC_VIDEO_MISS") && seq > v->last + 1)
        fprintf(stderr, "missing %llu..%llu\n", (unsigned long long)v->last + 1,
                (unsigned long long)seq - 1);
    v->last = seq;
    if (seq < v->warmup) return;
    if (sim_now(v->s) <= at + v->budget_ns) v->on_time++;
    else v->late++;
    if (getenv("FEC_VIDEO_TRACE") && sim_now(v->s) > at + v->budget_ns)
        fprintf(stderr, "late %llu by %.1f ms%s\n", (unsigned long long)seq,
                (double)(sim_now(v->s) - at - v->budget_ns) / 1e6, seq % 50 == 0 ? " key" : "");
}

/* Runs the video; returns the share of the frames after the warmup (3 s) on time. */
static double video_run(const video_cfg *vc, tern_conn_stats *out)
{
    tern_addr sa, ca;
    tern_addr_ipv4(&sa, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&ca, 198, 51, 100, 7, 50000);
    sim *s = sim_new(vc->seed);
    TT_REQUIRE(s != NULL);
    tnet_node srv, cli;
    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    tnet_node_init(&srv, s, &sa, 1, NULL, 1);
    tnet_node_init(&cli, s, &ca, 0, NULL, 2);
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = vc->rtt_ms / 2 * MS;
    p.rate_bps = vc->rate_bps;
    p.queue_bytes = vc->rate_bps / 8 * vc->rtt_ms / 1000; /* one BDP */
    p.overhead_bytes = 28;
    p.mtu = 1500;
    p.loss = vc->loss;
    sim_link_set_both(s, &ca, &sa, &p);
    video v;
    memset(&v, 0, sizeof(v));
    v.budget_ns = (vc->rtt_ms / 2 + vc->playout_ms) * MS;
    v.warmup = 75;
    v.s = s;
    srv.user = &v;
    srv.on_message = video_on_message;
    tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 2 * S);
    TT_REQUIRE(cli.established);
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.reliability = TERN_FLOW_PARTIAL;
    cfg.deadline_ms = (uint32_t)vc->deadline_ms;
    cfg.fec = vc->fec;
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(c, &cfg, &flow) == TERN_OK);
    size_t maxlen = vc->pframe * vc->kf_mult;
    uint8_t *msg = malloc(maxlen);
    TT_REQUIRE(msg != NULL);
    uint64_t t = sim_now(s);
    for (uint64_t seq = 0; seq < vc->frames; seq++) {
        uint64_t now = sim_now(s);
        int key = seq % 50 == 0;
        size_t len = key ? maxlen : vc->pframe;
        memcpy(msg, &seq, 8);
        memcpy(msg + 8, &now, 8);
        for (size_t i = 16; i < len; i++) msg[i] = (uint8_t)(seq * 7 + i);
        int rc;
        if (vc->tagged) {
            tern_msg_opts mo;
            memset(&mo, 0, sizeof(mo));
            mo.priority = -1;
            mo.flags = key ? TERN_MSG_KEYFRAME : 0;
            rc = tern_flow_send_msg(c, flow, now, msg, len, &mo, NULL);
        } else {
            rc = tern_flow_send(c, flow, now, msg, len, -1);
        }
        TT_CHECK_EQ_INT(rc, TERN_OK);
        if (seq >= v.warmup) v.counted++;
        sim_node_wake(s, cli.node);
        t += 40 * MS;
        TT_REQUIRE(sim_run_until(s, t) == SIM_OK);
    }
    TT_REQUIRE(sim_run_until(s, t + 2 * S) == SIM_OK);
    free(msg);
    if (getenv("FEC_VIDEO_MISS"))
        fprintf(stderr, "end of run fec %d seed %llu\n", vc->fec, (unsigned long long)vc->seed);
    tern_conn_get_stats(c, out);
    tern_conn_stats rs;
    tern_conn_get_stats(srv.conn, &rs);
    out->fec_repair_received = rs.fec_repair_received;
    out->fec_recovered = rs.fec_recovered;
    out->fec_unrecoverable = rs.fec_unrecoverable;
    TT_CHECK_EQ_U64(v.bad, 0);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
    if (getenv("FEC_VIDEO_TRACE"))
        fprintf(stderr, "counted %llu on time %llu late %llu\n", (unsigned long long)v.counted,
                (unsigned long long)v.on_time, (unsigned long long)v.late);
    return (double)v.on_time / (double)v.counted;
}

/* The frames helper's case: 25 fps at 300 ms RTT and 1% loss with 600 ms deadlines. A
 * retransmission is declared lost ~340 ms after the original and must leave before the
 * deadline less the RTT (300 ms): none is in time, so ADAPTIVE must repair every frame and
 * deliver at least as many as FIXED (it was 1851 vs FIXED 2270 and OFF 1865 of 2500 when
 * ADAPTIVE stopped repairing at 1.5 RTT). */
static void test_video_600ms_deadline(void)
{
    video_cfg vc = {.rate_bps = 4000000, .rtt_ms = 300, .deadline_ms = 600, .playout_ms = 450,
                    .loss = 0.01, .pframe = 4000, .kf_mult = 4, .frames = 750};
    double off = 0, ad = 0, fx = 0;
    uint64_t rep_ad = 0, rep_fx = 0;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        tern_conn_stats st;
        vc.seed = tt_seed() * 100 + seed;
        vc.fec = TERN_FEC_OFF;
        off += video_run(&vc, &st) / 3;
        vc.fec = TERN_FEC_ADAPTIVE;
        ad += video_run(&vc, &st) / 3;
        rep_ad += st.fec_repair_sent;
        vc.fec = TERN_FEC_FIXED;
        fx += video_run(&vc, &st) / 3;
        rep_fx += st.fec_repair_sent;
    }
    printf("    600 ms deadline, 300 ms RTT, 1%%: delivered OFF %.2f%%, ADAPTIVE %.2f%% (%llu "
           "repair), FIXED %.2f%% (%llu repair)\n",
           off * 100, ad * 100, (unsigned long long)rep_ad, fx * 100,
           (unsigned long long)rep_fx);
    /* match: within one episode of ~10 frames (a PROBE_RTT, or an unrecoverable frame holding
     * the ordered flow) of the 2025, which either may meet (before the fix ADAPTIVE was 4.4%
     * below FIXED) */
    TT_CHECK_MSG(ad >= fx - 0.005, "ADAPTIVE %.4f vs FIXED %.4f", ad, fx);
    TT_CHECK_MSG(1 - ad <= (1 - off) * 0.5, "ADAPTIVE %.4f vs OFF %.4f", ad, off);
}

/* The live cell: 1.1 Mbit/s, 300 ms RTT, 1% random loss, 25 fps, a keyframe (5x) every
 * 50 frames at bench/media/live.sh's load (0.35 of the link: P-frames of 1800 bytes), each
 * frame a live frame (tern_flow_send_msg) with about tern stream's auto deadline (1.25 RTT +
 * 100 ms + the keyframe's time on the wire: 500 ms), on time within one-way delay + 100 ms;
 * seeds 1..10. ADAPTIVE repairs every frame (a retransmission comes ~1.1 RTT + one way after
 * the original). What it misses is not loss: BBR's PROBE_RTT (half a BDP in flight for
 * 200 ms + a round every 10 s: the samples of a paced multi-packet frame stay above min RTT
 * + 1/128) gives ~10 frames up or queues them past the playout each time, ~2.6% of the
 * frames; with PROBE_RTT disabled the same runs give 99.96% mean, 99.56% worst (one frame
 * neither its data nor its repair could save, holding the ordered flow's next 4 behind it).
 * FEC_VIDEO_PFRAME / _KF / _DEADLINE / _SEED / _TRACE / _MISS vary and trace it (4 KB frames,
 * 0.85 Mbit/s: ~26%: the keyframe alone is 120 ms on the wire, and the repair does not fit). */
static void test_video_live_playout(void)
{
    video_cfg vc = {.rate_bps = 1100000, .rtt_ms = 300, .deadline_ms = 500, .playout_ms = 100,
                    .loss = 0.01, .pframe = 1800, .kf_mult = 5, .frames = 750,
                    .fec = TERN_FEC_ADAPTIVE, .tagged = 1};
    if (getenv("FEC_VIDEO_PFRAME")) vc.pframe = (size_t)atoi(getenv("FEC_VIDEO_PFRAME"));
    if (getenv("FEC_VIDEO_KF")) vc.kf_mult = (unsigned)atoi(getenv("FEC_VIDEO_KF"));
    if (getenv("FEC_VIDEO_DEADLINE"))
        vc.deadline_ms = (uint64_t)atoi(getenv("FEC_VIDEO_DEADLINE"));
    double worst = 1, sum = 0, off = 0;
    uint64_t rep = 0, sent = 0;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        tern_conn_stats st;
        vc.seed = seed;
        if (getenv("FEC_VIDEO_SEED") && (uint64_t)atoi(getenv("FEC_VIDEO_SEED")) != seed) continue;
        vc.fec = TERN_FEC_ADAPTIVE;
        double r = video_run(&vc, &st);
        if (getenv("FEC_VIDEO_TRACE"))
            printf("      seed %llu: %.2f%% on time, %llu repair, %llu rebuilt, %llu "
                   "unrecoverable, %llu given up\n",
                   (unsigned long long)seed, r * 100, (unsigned long long)st.fec_repair_sent,
                   (unsigned long long)st.fec_recovered, (unsigned long long)st.fec_unrecoverable,
                   (unsigned long long)st.messages_abandoned);
        if (r < worst) worst = r;
        sum += r;
        rep += st.fec_repair_sent;
        sent += st.tx_packets;
        vc.fec = TERN_FEC_OFF;
        off += video_run(&vc, &st);
    }
    printf("    live 1.1 Mbit/s, 300 ms, 1%%, seeds 1-10: on time (one-way + 100 ms) ADAPTIVE mean "
           "%.2f%% worst %.2f%% (repair %.1f%% of packets), OFF mean %.2f%%\n",
           sum * 10, worst * 100, 100.0 * (double)rep / (double)sent, off * 10);
    /* the robust bound today (PROBE_RTT: see above); 99.9% is the goal */
    TT_CHECK_MSG(worst >= 0.95, "worst seed %.4f", worst);
    TT_CHECK_MSG(sum / 10 >= 0.96, "mean %.4f", sum / 10);
    TT_CHECK_MSG(sum - off >= 0.3, "ADAPTIVE %.4f vs OFF %.4f", sum / 10, off / 10);
}

/* The same live cell without the stall BBR's PROBE_RTT used to cause (cc_bbr.c: an
 * application-limited sender refreshes its min RTT from its own samples and does not enter
 * PROBE_RTT): the 99.9% of frames on time, as a mean over seeds 1-10 (99.96% at the
 * change; the worst seed, 99.56%, is one frame neither data nor repair could save). */
static void test_video_live_no_probe_rtt_stall(void)
{
    video_cfg vc = {.rate_bps = 1100000, .rtt_ms = 300, .deadline_ms = 500, .playout_ms = 100,
                    .loss = 0.01, .pframe = 1800, .kf_mult = 5, .frames = 750,
                    .fec = TERN_FEC_ADAPTIVE, .tagged = 1};
    uint64_t first = 1, last = 10; /* BBR_LIVE_SEEDS=N: seeds 11..N instead (robustness) */
    if (getenv("BBR_LIVE_SEEDS")) last = (uint64_t)atoi(getenv("BBR_LIVE_SEEDS"));
    if (last > 10) first = 11;
    double worst = 1, sum = 0;
    for (uint64_t seed = first; seed <= last; seed++) {
        tern_conn_stats st;
        vc.seed = seed;
        double r = video_run(&vc, &st);
        if (r < worst) worst = r;
        sum += r;
    }
    double mean = sum / (double)(last - first + 1);
    printf("    live cell, seeds %llu-%llu: mean %.2f%% worst %.2f%% on time\n",
           (unsigned long long)first, (unsigned long long)last, mean * 100, worst * 100);
    TT_CHECK_MSG(mean >= 0.999, "mean %.4f", mean);
    TT_CHECK_MSG(worst >= 0.99, "worst seed %.4f", worst);
}

static const tt_case cases[] = {
    TT_CASE(test_video_live_no_probe_rtt_stall),
    TT_CASE(test_video_600ms_deadline),
    TT_CASE(test_video_live_playout),
    TT_CASE(test_live_random_loss),
    TT_CASE(test_live_bursty_loss),
    TT_CASE(test_live_low_rtt_no_repair),
    TT_CASE(test_live_reliable_tail_repair),
    TT_CASE(test_reliable_exactly_once),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
