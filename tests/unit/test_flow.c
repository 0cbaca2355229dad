/*
 * Flows and loss recovery on the simulated network: byte-exact transfers over impaired links,
 * goodput with each congestion controller at 300 ms RTT and 1% loss, fairness, unreliable and
 * partially reliable delivery, priorities, hostile peers, and a long churn run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "support/tnet.h"
#include "support/xfer.h"

#define MS (1000000ull)
#define S (1000000000ull)

static tern_addr SA, CA;
static uint16_t g_max_payload; /* 0: default (1200) */

/* ---------------------------------------------------------------- a bulk transfer */

typedef struct xfer {
    sim_xfer b; /* first: the receiver's user */
    uint64_t mark_at, mark_bytes; /* bytes received by mark_at (steady-state measurement) */
    uint64_t qsample_at, qsamples, qsum_ns; /* queueing delay (latest RTT - min RTT) samples */
    size_t msg_size;
} xfer;

static void xfer_on_rx(sim_xfer *b)
{
    xfer *x = (xfer *)b;
    if (x->mark_at && sim_now(b->s) <= x->mark_at) x->mark_bytes = b->received;
}

static int xfer_running(void *arg)
{
    xfer *x = arg;
    if (x->mark_at && x->b.sc && sim_now(x->b.s) >= x->mark_at &&
        sim_now(x->b.s) >= x->qsample_at) {
        x->qsample_at = sim_now(x->b.s) + 100 * MS;
        x->qsum_ns += x->b.sc->rec.rtt.latest - x->b.sc->rec.rtt.min;
        x->qsamples++;
    }
    static uint64_t next_dbg;
    if (getenv("TERN_FLOW_DEBUG") && sim_now(x->b.s) >= next_dbg && x->b.sc) {
        tern_network_info ni;
        tern_conn_network_info(x->b.sc, &ni);
        fprintf(stderr, "t=%.2f recv=%llu bw=%.2fM pace=%.2fM cwnd=%llu infl=%llu srtt=%.1fms q=%llu\n",
                (double)sim_now(x->b.s) / 1e9, (unsigned long long)x->b.received,
                ni.bandwidth_bps / 1e6, ni.pacing_rate_bps / 1e6,
                (unsigned long long)ni.cwnd_bytes, (unsigned long long)ni.bytes_in_flight,
                ni.srtt_ns / 1e6, (unsigned long long)tern_flow_queued(x->b.sc, x->b.flow));
        tern__sflow *f = tern__sflow_find(x->b.sc, x->b.flow);
        if (f)
            fprintf(stderr, "   sflow base=%llu next=%llu peer_max=%llu lost_n=%zu head=%p; rec loss_time=%lld pto_at=%lld pacer_wake=%lld probes=%u\n",
                    (unsigned long long)f->base, (unsigned long long)f->next_fsn,
                    (unsigned long long)f->peer_max, f->lost_n, (void *)f->head,
                    (long long)x->b.sc->rec.r->loss_time, (long long)tern__rec_timer(x->b.sc),
                    (long long)x->b.sc->tx.pacer_wake, x->b.sc->rec.r->probes_pending);
        if (f && f->lost_n) {
            for (size_t i = 0; i < f->lost_n; i++) {
                uint64_t fsn = f->lost[(f->lost_head + i) % f->lost_cap];
                tern__frag *fr = &f->frags[fsn % f->cap];
                fprintf(stderr, "     lost fsn=%llu state=%d msg=%p len=%u\n", (unsigned long long)fsn, fr->state, (void *)fr->msg, fr->len);
            }
            fprintf(stderr, "     has_data=%d\n", tern__flow_has_data(x->b.sc, sim_now(x->b.s)));
        }
        fprintf(stderr, "   ep deadline=%lld conn timer=%lld idx=%zu ack_deadline=%lld ack_now=%d in_send=%d\n",
                (long long)tern_endpoint_next_deadline(x->b.snd->ep), (long long)x->b.sc->timer.deadline,
                x->b.sc->timer.idx, (long long)x->b.sc->rec.r->acks.ack_deadline, x->b.sc->rec.r->acks.ack_now, x->b.sc->link.in_send_list);
        next_dbg = sim_now(x->b.s) + (sim_now(x->b.s) > 2500 * MS && sim_now(x->b.s) < 3000 * MS ? 0 : 500 * MS);
    }
    if (x->b.sc && tern_conn_get_state(x->b.sc) == TERN_CONN_ESTABLISHED) {
        uint64_t before = x->b.queued;
        sim_xfer_fill(&x->b, x->msg_size, 2u << 20);
        if (x->b.queued != before) sim_node_wake(x->b.s, x->b.snd->node);
    }
    return x->b.received < x->b.total && x->b.bad == 0 && x->b.snd->closed == 0 &&
           x->b.rcv->closed == 0;
}

typedef struct run_result {
    double steady_mbps; /* from 10 s after the start to the end */
    double queue_ms;    /* mean queueing delay after the first 10 s */
    uint64_t bytes, seconds_ns, bad;
    double goodput_mbps;
    int done;
    tern_conn_stats cs;
} run_result;

/* Transfers total bytes client -> server over link p (both ways), with controller cc. */
static run_result transfer(const sim_link_params *p, uint64_t total, int cc, uint64_t t_max,
                           size_t msg_size)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    tern_settings set;
    tern_settings_default(&set);
    set.cc = (uint8_t)cc;
    if (g_max_payload) set.max_udp_payload = g_max_payload;
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SA, 1, &set, 1);
    tnet_node_init(&cli, s, &CA, 0, &set, 2);
    sim_link_set_both(s, &SA, &CA, p);
    xfer x = {0};
    x.b.s = s;
    x.b.snd = &cli;
    x.b.rcv = &srv;
    x.b.total = total;
    x.msg_size = msg_size;
    x.b.on_rx = xfer_on_rx;
    srv.user = &x;
    srv.on_message = sim_xfer_on_message;
    x.b.sc = tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 2 * S);
    run_result r = {0};
    if (!cli.established) {
        TT_CHECK_MSG(0, "no handshake");
        goto out;
    }
    TT_REQUIRE(tern_flow_open(x.b.sc, NULL, &x.b.flow) == TERN_OK);
    uint64_t t0 = sim_now(s);
    x.mark_at = t0 + 10 * S;
    sim_xfer_fill(&x.b, x.msg_size, 2u << 20);
    int rc = sim_run_while(s, xfer_running, &x, t0 + t_max);
    TT_CHECK_MSG(rc == SIM_OK || rc == SIM_TIMEOUT, "sim: %s", sim_error(s));
    r.bytes = x.b.received;
    r.bad = x.b.bad;
    r.done = x.b.received == total && x.b.bad == 0;
    r.seconds_ns = (x.b.done_at ? x.b.done_at : sim_now(s)) - t0;
    r.goodput_mbps = (double)x.b.received * 8 / ((double)r.seconds_ns / 1e9) / 1e6;
    r.queue_ms = x.qsamples ? (double)x.qsum_ns / (double)x.qsamples / 1e6 : 0;
    if (r.seconds_ns > 10 * S)
        r.steady_mbps = (double)(x.b.received - x.mark_bytes) * 8 /
                        ((double)(r.seconds_ns - 10 * S) / 1e9) / 1e6;
    tern_conn_get_stats(x.b.sc, &r.cs);
out:
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
    return r;
}

static sim_link_params base_link(double mbps, double one_way_ms)
{
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = (uint64_t)(one_way_ms * 1e6);
    p.rate_bps = (uint64_t)(mbps * 1e6);
    /* one bandwidth-delay product of queue */
    p.queue_bytes = (size_t)(mbps * 1e6 / 8 * (2 * one_way_ms / 1e3));
    if (p.queue_bytes < 30000) p.queue_bytes = 30000;
    p.overhead_bytes = 28;
    return p;
}

static void report(const char *what, const run_result *r, double link_mbps)
{
    printf("    %-34s %s %6.2f MB in %6.2f s: %6.2f Mbit/s (%5.1f%% of link), lost %llu pkts, "
           "%llu retx frags, %llu spurious, %llu PTO\n",
           what, r->done ? "done" : "part", (double)r->bytes / 1e6, (double)r->seconds_ns / 1e9,
           r->goodput_mbps, 100 * r->goodput_mbps / link_mbps,
           (unsigned long long)r->cs.packets_lost,
           (unsigned long long)r->cs.packets_retransmitted_frags,
           (unsigned long long)r->cs.spurious_losses, (unsigned long long)r->cs.pto_count);
}

#define TEN_MB (10u * 1000 * 1000)

static void test_10mb_clean(void)
{
    sim_link_params p = base_link(10, 15);
    run_result r = transfer(&p, TEN_MB, TERN_CC_BBR, 60 * S, 65536);
    report("clean 10 Mbit/s 30 ms", &r, 10);
    TT_CHECK(r.done);
    TT_CHECK_EQ_U64(r.bad, 0);
}

static void test_10mb_bursty_loss(void)
{
    sim_link_params p = base_link(10, 15);
    p.loss = 0.02;
    p.burst_max = 3;
    run_result r = transfer(&p, TEN_MB, TERN_CC_BBR, 120 * S, 65536);
    report("2% loss, bursts up to 3", &r, 10);
    TT_CHECK(r.done);
}

static void test_10mb_reorder_dup_corrupt(void)
{
    sim_link_params p = base_link(10, 15);
    p.reorder = 0.01;
    p.jitter_ns = 2 * MS;
    run_result r = transfer(&p, TEN_MB, TERN_CC_BBR, 120 * S, 65536);
    report("1% reordering", &r, 10);
    TT_CHECK(r.done);
    p.reorder = 0;
    p.duplicate = 0.01;
    r = transfer(&p, TEN_MB, TERN_CC_BBR, 120 * S, 65536);
    report("1% duplication", &r, 10);
    TT_CHECK(r.done);
    p.duplicate = 0;
    p.corrupt = 0.01;
    r = transfer(&p, TEN_MB, TERN_CC_BBR, 120 * S, 65536);
    report("1% corruption", &r, 10);
    TT_CHECK(r.done);
}

static void test_10mb_300ms_1pct(void)
{
    sim_link_params p = base_link(10, 150);
    p.loss = 0.01;
    run_result r = transfer(&p, TEN_MB, TERN_CC_BBR, 120 * S, 65536);
    report("300 ms RTT, 1% loss", &r, 10);
    TT_CHECK(r.done);
}

static void test_10mb_on5_off2(void)
{
    sim_link_params p = base_link(10, 15);
    p.blackhole_up_ns = 5 * S;
    p.blackhole_down_ns = 2 * S;
    run_result r = transfer(&p, TEN_MB, TERN_CC_BBR, 60 * S, 65536);
    report("on 5 s / off 2 s", &r, 10);
    TT_CHECK(r.done);
    TT_CHECK_MSG(r.seconds_ns <= 15 * S, "took %.2f s", (double)r.seconds_ns / 1e9);
}

/* ---------------------------------------------------------------- goodput per controller */

static void test_goodput_300ms_1pct_by_controller(void)
{
    /* 60 s of a 10 Mbit/s link (28 bytes of IP/UDP counted per datagram) with 300 ms RTT, a
     * 1-BDP queue and 1% random loss, with the default 1200-byte datagrams
     * (TERN_TEST_PAYLOAD=1452 tries what path MTU discovery would find on a 1500-byte link). */
    sim_link_params p = base_link(10, 150);
    p.loss = 0.01;
    const uint64_t total = 80u * 1000 * 1000;
    static const struct {
        int cc;
        const char *name;
    } ccs[] = {{TERN_CC_BBR, "BBR"}, {TERN_CC_CUBIC, "CUBIC"}, {TERN_CC_NEWRENO, "NewReno"}};
    double bbr = 0, bbr_all = 0;
    g_max_payload = getenv("TERN_TEST_PAYLOAD") ? (uint16_t)atoi(getenv("TERN_TEST_PAYLOAD")) : 0;
    for (size_t i = 0; i < 3; i++) {
        run_result r = transfer(&p, total, ccs[i].cc, 60 * S, 65536);
        char what[64];
        snprintf(what, sizeof(what), "%s, 60 s, 300 ms RTT, 1%% loss", ccs[i].name);
        report(what, &r, 10);
        printf("    %-34s after startup (10-60 s): %.2f Mbit/s (%.1f%% of link), mean queueing "
               "delay %.1f ms\n", "", r.steady_mbps, 10 * r.steady_mbps, r.queue_ms);
        if (ccs[i].cc == TERN_CC_BBR) {
            bbr = 10 * r.steady_mbps;
            bbr_all = 10 * r.goodput_mbps;
            TT_CHECK_MSG(r.queue_ms < 100, "BBR keeps a %.1f ms queue", r.queue_ms);
        }
        TT_CHECK_EQ_U64(r.bad, 0);
    }
    g_max_payload = 0;
    /* The target: 90% of the link rate, measured strictly (IP/UDP and tern headers count as
     * link, startup excluded). Seeds 1-5 give 91.1-91.6% with 1200-byte datagrams. */
    TT_CHECK_MSG(bbr >= 90, "BBR goodput after startup %.1f%% of the link (want >= 90%%)", bbr);
    TT_CHECK_MSG(bbr_all >= 85, "BBR goodput over 60 s %.1f%% of the link", bbr_all);
}

/* ---------------------------------------------------------------- fairness */

typedef struct pair_state {
    xfer x[2];
} pair_state;

static int pair_running(void *arg)
{
    pair_state *ps = arg;
    for (int i = 0; i < 2; i++) {
        xfer *x = &ps->x[i];
        if (x->b.sc && tern_conn_get_state(x->b.sc) == TERN_CONN_ESTABLISHED &&
            x->b.flow != UINT64_MAX) {
            uint64_t before = x->b.queued;
            sim_xfer_fill(&x->b, x->msg_size, 2u << 20);
            if (x->b.queued != before) sim_node_wake(x->b.s, x->b.snd->node);
        }
    }
    return 1;
}

static void test_two_connections_share_fairly(void)
{
    /* the server sends to two clients through one 10 Mbit/s downlink (one queue), 60 ms RTT */
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli[2];
    tnet_node_init(&srv, s, &SA, 1, NULL, 1);
    pair_state ps;
    memset(&ps, 0, sizeof(ps));
    sim_link_params dn = base_link(10, 30), upl;
    sim_link_params_init(&upl);
    upl.delay_ns = 30 * MS;
    sim_link_set_node(s, srv.node, NULL, &dn); /* every datagram the server sends shares it */
    for (int i = 0; i < 2; i++) {
        tern_addr a;
        tern_addr_ipv4(&a, 198, 51, 100, (uint8_t)(7 + i), 50000);
        tnet_node_init(&cli[i], s, &a, 0, NULL, 2 + (uint64_t)i);
        sim_link_set(s, &a, &SA, &upl);
        tnet_connect(s, &cli[i], &srv, NULL);
        sim_run_until(s, sim_now(s) + 500 * MS);
        TT_REQUIRE(srv.conn != NULL && cli[i].established);
        ps.x[i].b.s = s;
        ps.x[i].b.snd = &srv;
        ps.x[i].b.rcv = &cli[i];
        ps.x[i].b.total = UINT64_MAX / 2;
        ps.x[i].msg_size = 65536;
        ps.x[i].b.flow = UINT64_MAX;
        ps.x[i].b.sc = srv.conn;
    }
    TT_REQUIRE(tern_flow_open(ps.x[0].b.sc, NULL, &ps.x[0].b.flow) == TERN_OK);
    uint64_t t0 = sim_now(s);
    sim_run_while(s, pair_running, &ps, t0 + 5 * S); /* the second starts 5 s later */
    TT_REQUIRE(tern_flow_open(ps.x[1].b.sc, NULL, &ps.x[1].b.flow) == TERN_OK);
    sim_run_while(s, pair_running, &ps, t0 + 25 * S);
    tern_conn_stats a0, b0, a1, b1;
    tern_conn_get_stats(ps.x[0].b.sc, &a0);
    tern_conn_get_stats(ps.x[1].b.sc, &b0);
    sim_run_while(s, pair_running, &ps, t0 + 65 * S); /* measure 25..65 s */
    tern_conn_get_stats(ps.x[0].b.sc, &a1);
    tern_conn_get_stats(ps.x[1].b.sc, &b1);
    double x0 = (double)(a1.stream_bytes_sent - a0.stream_bytes_sent) * 8 / 40 / 1e6;
    double x1 = (double)(b1.stream_bytes_sent - b0.stream_bytes_sent) * 8 / 40 / 1e6;
    double jain = (x0 + x1) * (x0 + x1) / (2 * (x0 * x0 + x1 * x1));
    printf("    two BBR connections through one 10 Mbit/s queue: %.2f and %.2f Mbit/s, "
           "Jain index %.3f, link use %.1f%%\n", x0, x1, jain, 10 * (x0 + x1));
    TT_CHECK_MSG(jain >= 0.9, "Jain index %.3f", jain);
    TT_CHECK_MSG(x0 + x1 >= 8 && x0 + x1 <= 10, "link use %.2f Mbit/s", x0 + x1);
    for (int i = 0; i < 2; i++) tnet_node_free(&cli[i], s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* ---------------------------------------------------------------- unreliable and partial */

typedef struct msg_log {
    sim *s;
    uint64_t count, late, bytes;
    uint64_t deadline_ns;
    uint64_t last_seq;
    int out_of_order;
} msg_log;

static void stamped_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d,
                               size_t len)
{
    (void)c;
    (void)flow;
    msg_log *ml = n->user;
    if (len < 16) return;
    uint64_t sent_at, seq;
    memcpy(&sent_at, d, 8);
    memcpy(&seq, d + 8, 8);
    ml->count++;
    ml->bytes += len;
    if (ml->deadline_ns && sim_now(ml->s) > sent_at + ml->deadline_ns) {
        ml->late++;
        if (getenv("TERN_FLOW_DEBUG"))
            fprintf(stderr, "late by %.3f ms: seq %llu sent %.3f s\n",
                    (double)(sim_now(ml->s) - sent_at - ml->deadline_ns) / 1e6,
                    (unsigned long long)seq, (double)sent_at / 1e9);
    }
    if (ml->count > 1 && seq <= ml->last_seq) ml->out_of_order++;
    ml->last_seq = seq;
}

typedef struct sender {
    sim *s;
    tern_conn *c;
    uint64_t flow;
    uint64_t next_at, interval, seq, sent;
    size_t size;
    tnet_node *node;
} sender;

static int sender_tick(void *arg)
{
    sender *sd = arg;
    while (sim_now(sd->s) >= sd->next_at) {
        uint8_t buf[4096];
        memset(buf, 0x5a, sizeof(buf));
        uint64_t now = sim_now(sd->s);
        memcpy(buf, &now, 8);
        memcpy(buf + 8, &sd->seq, 8);
        if (tern_flow_send(sd->c, sd->flow, now, buf, sd->size, -1) == TERN_OK) sd->sent++;
        sd->seq++;
        sd->next_at += sd->interval;
        sim_node_wake(sd->s, sd->node->node);
    }
    return 1;
}

static void run_media(uint8_t reliability, uint32_t deadline_ms, double loss, size_t size,
                      msg_log *ml, tern_conn_stats *cs, uint64_t *sent, int ordered)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SA, 1, NULL, 1);
    tnet_node_init(&cli, s, &CA, 0, NULL, 2);
    sim_link_params p = base_link(10, 50);
    p.loss = loss;
    sim_link_set_both(s, &SA, &CA, &p);
    memset(ml, 0, sizeof(*ml));
    ml->s = s;
    ml->deadline_ns = (uint64_t)deadline_ms * MS;
    srv.user = ml;
    srv.on_message = stamped_on_message;
    tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
    for (int i = 0; i < 100 && !cli.established; i++) sim_run_until(s, sim_now(s) + 100 * MS);
    TT_REQUIRE(cli.established);
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.reliability = reliability;
    fc.deadline_ms = deadline_ms;
    fc.ordered = (uint8_t)ordered;
    sender sd = {s, c, 0, sim_now(s), 10 * MS, 0, 0, size, &cli};
    TT_REQUIRE(tern_flow_open(c, &fc, &sd.flow) == TERN_OK);
    uint64_t t0 = sim_now(s);
    sim_run_while(s, sender_tick, &sd, t0 + 20 * S); /* 20 s of 100 messages/s */
    sd.next_at = UINT64_MAX;
    sim_run_until(s, t0 + 25 * S);
    tern_conn_get_stats(c, cs);
    *sent = sd.sent;
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_unreliable_flow_at_10pct_loss(void)
{
    msg_log ml;
    tern_conn_stats cs;
    uint64_t sent;
    run_media(TERN_FLOW_UNRELIABLE, 0, 0.10, 800, &ml, &cs, &sent, 1);
    printf("    unreliable, 10%% loss: %llu of %llu messages arrived, %llu fragments "
           "retransmitted\n",
           (unsigned long long)ml.count, (unsigned long long)sent,
           (unsigned long long)cs.packets_retransmitted_frags);
    TT_CHECK_EQ_U64(cs.packets_retransmitted_frags, 0);
    TT_CHECK_RANGE((double)ml.count / (double)sent, 0.82, 0.97);
    TT_CHECK_EQ_INT(ml.out_of_order, 0);
}

static void test_partial_flow_respects_deadline(void)
{
    msg_log ml;
    tern_conn_stats cs, rcs;
    uint64_t sent;
    /* 3 KB messages (3 fragments), 100 messages/s, 5% loss, 100 ms one-way delay. Unordered
     * with a 400 ms deadline: one retransmission fits, so nearly everything arrives in time. */
    run_media(TERN_FLOW_PARTIAL, 400, 0.05, 3000, &ml, &cs, &sent, 0);
    printf("    partial unordered (400 ms), 5%% loss: %llu of %llu delivered, %llu late, "
           "%llu given up, %llu fragments retransmitted\n",
           (unsigned long long)ml.count, (unsigned long long)sent, (unsigned long long)ml.late,
           (unsigned long long)cs.messages_abandoned,
           (unsigned long long)cs.packets_retransmitted_frags);
    TT_CHECK_EQ_U64(ml.late, 0); /* never delivered after its deadline */
    TT_CHECK(cs.packets_retransmitted_frags > 0); /* it did recover some */
    TT_CHECK(ml.count > sent * 97 / 100);
    /* ordered with a 250 ms deadline: losses hold later messages back past their deadline;
     * they are dropped, never delivered late, and nothing is retransmitted past a deadline */
    (void)rcs;
    run_media(TERN_FLOW_PARTIAL, 250, 0.05, 3000, &ml, &cs, &sent, 1);
    printf("    partial ordered (250 ms), 5%% loss: %llu of %llu delivered, %llu late, "
           "%llu given up\n",
           (unsigned long long)ml.count, (unsigned long long)sent, (unsigned long long)ml.late,
           (unsigned long long)cs.messages_abandoned);
    TT_CHECK_EQ_U64(ml.late, 0);
    TT_CHECK_EQ_INT(ml.out_of_order, 0);
}

/* ---------------------------------------------------------------- a clock for senders */

/* A node with no traffic whose timer calls fn every period: applications that send on a
 * schedule (media frames) run from here, so they run even when the network is silent. */
typedef struct ticker {
    uint64_t next_at, period;
    void (*fn)(void *arg);
    void *arg;
} ticker;

static void ticker_recv(void *node, uint64_t now, const tern_addr *l, const tern_addr *r,
                        const uint8_t *d, size_t len)
{
    (void)node, (void)now, (void)l, (void)r, (void)d, (void)len;
}

static int ticker_send(void *node, uint64_t now, tern_datagram *dg, size_t max, uint8_t *buf,
                       size_t buf_len)
{
    (void)node, (void)now, (void)dg, (void)max, (void)buf, (void)buf_len;
    return 0;
}

static uint64_t ticker_deadline(void *node)
{
    return ((ticker *)node)->next_at;
}

static void ticker_expire(void *node, uint64_t now)
{
    ticker *t = node;
    while (now >= t->next_at) {
        t->fn(t->arg);
        t->next_at += t->period;
    }
}

static const sim_node_ops TICKER_OPS = {ticker_recv, ticker_send, ticker_deadline, ticker_expire};

static sim_node *ticker_add(sim *s, ticker *t)
{
    tern_addr a;
    tern_addr_ipv4(&a, 127, 255, 255, 254, 1);
    return sim_add_node(s, &TICKER_OPS, t, &a);
}

/* ---------------------------------------------------------------- priorities */

typedef struct prio_rx {
    uint64_t bytes[3];
} prio_rx;

static void prio_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d,
                            size_t len)
{
    (void)c;
    (void)flow;
    prio_rx *pr = n->user;
    if (len > 0 && d[0] < 3) pr->bytes[d[0]] += len;
}

typedef struct prio_tx {
    sim *s;
    tern_conn *c;
    uint64_t flow[3];
    uint64_t next_at;
    tnet_node *node;
} prio_tx;

static void prio_send(void *arg);

static int prio_tick(void *arg)
{
    prio_tx *t = arg;
    static uint64_t next_dbg;
    if (getenv("TERN_FLOW_DEBUG") && sim_now(t->s) >= next_dbg) {
        tern_network_info ni;
        tern_conn_network_info(t->c, &ni);
        tern_conn_stats cs;
        tern_conn_get_stats(t->c, &cs);
        fprintf(stderr, "t=%.2f bw=%.3fM pace=%.3fM cwnd=%llu infl=%llu srtt=%.1fms latest=%.1f sent=%llu abandoned=%llu q=%llu/%llu/%llu\n",
                (double)sim_now(t->s) / 1e9, ni.bandwidth_bps / 1e6, ni.pacing_rate_bps / 1e6,
                (unsigned long long)ni.cwnd_bytes, (unsigned long long)ni.bytes_in_flight,
                ni.srtt_ns / 1e6, t->c->rec.rtt.latest / 1e6, (unsigned long long)cs.messages_sent, (unsigned long long)cs.messages_abandoned,
                (unsigned long long)tern_flow_queued(t->c, t->flow[0]), (unsigned long long)tern_flow_queued(t->c, t->flow[1]), (unsigned long long)tern_flow_queued(t->c, t->flow[2]));
        for (int k = 0; k < 3; k++) {
            tern__sflow *f = tern__sflow_find(t->c, t->flow[k]);
            if (f) fprintf(stderr, "   flow %d base=%llu next=%llu peer_max=%llu lost_n=%zu fwd_pending=%d\n", k,
                           (unsigned long long)f->base, (unsigned long long)f->next_fsn, (unsigned long long)f->peer_max, f->lost_n, f->forward_pending);
        }
        fprintf(stderr, "   pacer_wake=%lld in_send=%d timer=%lld now=%lld\n", (long long)t->c->tx.pacer_wake, t->c->link.in_send_list, (long long)t->c->timer.deadline, (long long)sim_now(t->s));
        next_dbg = sim_now(t->s) + 1000 * MS;
    }
    return 1;
}

static void prio_send(void *arg)
{
    prio_tx *t = arg;
    /* every 10 ms: top 625 bytes (0.5 Mbit/s), middle 1250 (1 Mbit/s), lowest 1875 (1.5) */
    static const size_t size[3] = {625, 1250, 1875};
    uint8_t buf[1875];
    for (int lvl = 0; lvl < 3; lvl++) {
        memset(buf, 0, sizeof(buf));
        buf[0] = (uint8_t)lvl;
        tern_flow_send(t->c, t->flow[lvl], sim_now(t->s), buf, size[lvl], -1);
    }
    sim_node_wake(t->s, t->node->node);
}

static uint64_t g_size_hist[13];
static void size_trace(void *user, const sim_trace_event *ev)
{
    (void)user;
    if (ev->kind == SIM_TR_SEND && ev->from && tern_addr_equal(ev->from, &CA))
        g_size_hist[ev->len / 100 > 12 ? 12 : ev->len / 100]++;
}

static void test_priorities_under_congestion(void)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SA, 1, NULL, 1);
    tnet_node_init(&cli, s, &CA, 0, NULL, 2);
    sim_link_params p = base_link(1, 50); /* 1 Mbit/s */
    sim_link_set_both(s, &SA, &CA, &p);
    prio_rx pr = {{0}};
    srv.user = &pr;
    srv.on_message = prio_on_message;
    tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 1 * S);
    TT_REQUIRE(cli.established);
    prio_tx t = {s, c, {0}, sim_now(s), &cli};
    /* three media flows, priorities 6 (top), 3, 0 (lowest), each dropping what is 300 ms late */
    static const uint8_t prio[3] = {6, 3, 0};
    for (int i = 0; i < 3; i++) {
        tern_flow_config fc;
        tern_flow_config_default(&fc);
        fc.reliability = TERN_FLOW_PARTIAL;
        fc.deadline_ms = 300;
        fc.priority = prio[i];
        TT_REQUIRE(tern_flow_open(c, &fc, &t.flow[i]) == TERN_OK);
    }
    uint64_t t0 = sim_now(s);
    if (getenv("TERN_FLOW_DEBUG")) sim_set_trace(s, size_trace, NULL);
    ticker tk = {t0, 10 * MS, prio_send, &t};
    sim_node *tn = ticker_add(s, &tk);
    TT_REQUIRE(tn != NULL);
    sim_run_while(s, prio_tick, &t, t0 + 5 * S);
    prio_rx warm = pr;
    sim_run_while(s, prio_tick, &t, t0 + 25 * S); /* measure 5..25 s */
    double mbps[3];
    for (int i = 0; i < 3; i++) mbps[i] = (double)(pr.bytes[i] - warm.bytes[i]) * 8 / 20 / 1e6;
    tern_conn_stats cs;
    tern_conn_get_stats(c, &cs);
    printf("    3 Mbit/s offered over 1 Mbit/s (0.5 + 1 + 1.5): top %.3f, middle %.3f, lowest %.3f "
           "Mbit/s; %llu messages given up\n",
           mbps[0], mbps[1], mbps[2], (unsigned long long)cs.messages_abandoned);
    if (getenv("TERN_FLOW_DEBUG"))
        fprintf(stderr, "tx_bytes=%llu acked payload=%llu lost pkts=%llu retx=%llu tx_pkts=%llu expired at rcv=%llu\n",
                (unsigned long long)cs.tx_bytes, (unsigned long long)cs.stream_bytes_sent,
                (unsigned long long)cs.packets_lost, (unsigned long long)cs.packets_retransmitted_frags,
                (unsigned long long)cs.tx_packets, 0ull);
    if (getenv("TERN_FLOW_DEBUG") && srv.conn) {
        tern_conn_stats rs;
        tern_conn_get_stats(srv.conn, &rs);
        fprintf(stderr, "receiver: received=%llu expired=%llu\n", (unsigned long long)rs.messages_received, (unsigned long long)rs.messages_expired);
    }
    if (getenv("TERN_FLOW_DEBUG"))
        for (int i = 0; i < 13; i++) fprintf(stderr, "size %d00: %llu\n", i, (unsigned long long)g_size_hist[i]);
    TT_CHECK_MSG(mbps[0] >= 0.49, "top priority got %.3f of its 0.5 Mbit/s", mbps[0]);
    TT_CHECK_MSG(mbps[2] <= 0.05, "the lowest priority got %.3f Mbit/s", mbps[2]);
    TT_CHECK_MSG(mbps[1] >= 0.2, "the middle priority got %.3f Mbit/s", mbps[1]);
    TT_CHECK(cs.messages_abandoned > 1000);
    sim_node_remove(s, tn);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* ---------------------------------------------------------------- slow reader */

static void test_slow_reader_holds_the_sender(void)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    tern_settings set;
    tern_settings_default(&set);
    set.flow_window = 256; /* fragments */
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SA, 1, &set, 1);
    tnet_node_init(&cli, s, &CA, 0, &set, 2);
    sim_link_params p = base_link(10, 10);
    sim_link_set_both(s, &SA, &CA, &p);
    tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 500 * MS);
    TT_REQUIRE(cli.established && srv.conn);
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(c, NULL, &flow) == TERN_OK);
    static uint8_t buf[1 << 20];
    TT_CHECK_EQ_INT(tern_flow_send(c, flow, sim_now(s), buf, sizeof(buf), -1), TERN_OK);
    sim_run_until(s, sim_now(s) + 50 * MS); /* the first fragments arrived: the flow exists */
    TT_REQUIRE(tern_flow_set_paused(srv.conn, flow, 1) == TERN_OK);
    size_t base_mem = srv.mem.current;
    sim_run_until(s, sim_now(s) + 5 * S);
    /* the receiver holds at most its window; the sender waits */
    TT_CHECK_EQ_U64(srv.messages, 0);
    TT_CHECK_MSG(srv.mem.current - base_mem <= 256 * TERN_MAX_DATAGRAM + 4096,
                 "receiver holds %zu bytes", srv.mem.current - base_mem);
    TT_CHECK(tern_flow_queued(c, flow) > 0);
    TT_CHECK_EQ_INT(cli.closed + srv.closed, 0);
    TT_CHECK_EQ_INT(tern_flow_set_paused(srv.conn, flow, 0), TERN_OK);
    sim_run_until(s, sim_now(s) + 5 * S);
    TT_CHECK_EQ_U64(srv.messages, 1);
    TT_CHECK_EQ_U64(srv.message_bytes, sizeof(buf));
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* ---------------------------------------------------------------- hostile peers */

/* Sends one forged 1-RTT packet with the given frames on c (white box: the test seals it with
 * the connection's real keys, as a malicious peer would). */
static void send_forged(sim *s, tern_conn *from, const tern_addr *src, const tern_addr *dst,
                        const uint8_t *frames, size_t len)
{
    uint8_t pkt[TERN_MAX_DATAGRAM];
    uint64_t pn = from->tx.next_pn++;
    uint8_t *p = tern__short_encode(pkt, pkt + sizeof(pkt), 0, from->remote_cid, pn, 4);
    TT_REQUIRE(p != NULL);
    size_t hl = (size_t)(p - pkt);
    TT_REQUIRE(tern__aead_seal(&from->keys.tx, pn, 0, pkt, hl, frames, len, p) == TERN_OK);
    sim_inject(s, sim_now(s), src, dst, pkt, hl + len + 16);
}

static size_t flow_data_frame(uint8_t *out, uint64_t flow, uint64_t fsn, size_t len)
{
    uint8_t *p = out, *end = out + 1200;
    p = tern__put_varint(p, end, TERN__FRAME_FLOW_DATA);
    p = tern__put_varint(p, end, flow);
    p = tern__put_varint(p, end, fsn);
    p = tern__put_varint(p, end, TERN__FD_BEGIN | TERN__FD_END | TERN__FD_ORDERED);
    p = tern__put_varint(p, end, len);
    memset(p, 0x77, len);
    return (size_t)(p + len - out);
}

static void hostile_setup(sim **s, tnet_node *srv, tnet_node *cli)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    *s = sim_new(tt_seed());
    tnet_node_init(srv, *s, &SA, 1, NULL, 1);
    tnet_node_init(cli, *s, &CA, 0, NULL, 2);
    tnet_link(*s, &SA, &CA, 10, 0, 0);
    tnet_connect(*s, cli, srv, NULL);
    sim_run_until(*s, 200 * MS);
    TT_REQUIRE(cli->established && srv->established);
}

static void test_hostile_offsets_beyond_the_window(void)
{
    sim *s;
    tnet_node srv, cli;
    hostile_setup(&s, &srv, &cli);
    size_t base = srv.mem.current;
    uint8_t fr[1300];
    /* fsn 0 then fsn 10,000,000 on many flows */
    for (uint64_t f = 0; f < 8; f += 2) {
        size_t n = flow_data_frame(fr, f, 0, 100);
        send_forged(s, cli.conn, &CA, &SA, fr, n);
    }
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_INT(srv.closed, 0);
    TT_CHECK(srv.mem.current - base < 64 * 1024); /* four small flows */
    size_t n = flow_data_frame(fr, 2, 10000000, 100);
    send_forged(s, cli.conn, &CA, &SA, fr, n);
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_INT(srv.closed, 1);
    TT_CHECK_MSG(srv.close_err == TERN_ERR_PROTOCOL, "err=%s", tern_strerror(srv.close_err));
    TT_CHECK_EQ_INT(cli.closed, 1); /* told: CLOSE with a protocol violation */
    TT_CHECK_EQ_U64(cli.close_code, 1);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_hostile_too_many_flows_and_wrap(void)
{
    sim *s;
    tnet_node srv, cli;
    hostile_setup(&s, &srv, &cli);
    uint8_t fr[1300];
    /* a flow id far away opens more flows than max_flows (64): protocol error, no allocation
     * spree */
    size_t n = flow_data_frame(fr, 1000000, 0, 10);
    size_t before = srv.mem.peak;
    send_forged(s, cli.conn, &CA, &SA, fr, n);
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_INT(srv.closed, 1);
    TT_CHECK(srv.mem.peak - before < 64 * 1024);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);

    /* fragment numbers near the top of the range */
    hostile_setup(&s, &srv, &cli);
    n = flow_data_frame(fr, 0, (1ull << 62) - 5, 10);
    send_forged(s, cli.conn, &CA, &SA, fr, n);
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_INT(srv.closed, 1);
    TT_CHECK_EQ_INT(srv.close_err, TERN_ERR_PROTOCOL);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_hostile_ack_for_unsent_packets(void)
{
    sim *s;
    tnet_node srv, cli;
    hostile_setup(&s, &srv, &cli);
    uint8_t fr[64], *p = fr, *end = fr + sizeof(fr);
    p = tern__put_varint(p, end, TERN__FRAME_ACK);
    p = tern__put_varint(p, end, 1000000); /* the server never sent that many */
    p = tern__put_varint(p, end, 0);
    p = tern__put_varint(p, end, 0);
    p = tern__put_varint(p, end, 0);
    send_forged(s, cli.conn, &CA, &SA, fr, (size_t)(p - fr));
    sim_run_until(s, sim_now(s) + 50 * MS);
    TT_CHECK_EQ_INT(srv.closed, 1);
    TT_CHECK_EQ_INT(srv.close_err, TERN_ERR_PROTOCOL);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* ---------------------------------------------------------------- big messages */

static void test_16mib_messages(void)
{
    /* two 16 MiB messages, far bigger than the 4096-fragment window, over 1% loss */
    sim_link_params p = base_link(50, 10);
    p.loss = 0.01;
    run_result r = transfer(&p, 32u << 20, TERN_CC_BBR, 60 * S, 16u << 20);
    report("two 16 MiB messages, 1% loss", &r, 50);
    TT_CHECK(r.done);
    TT_CHECK_EQ_U64(r.bad, 0);
    TT_CHECK_EQ_U64(r.cs.messages_sent, 2);
}

/* ---------------------------------------------------------------- churn */

/* Many flows opened and closed over 10 minutes of network time with loss and reordering; every
 * message is checked byte by byte and in order; memory returns to its baseline at the end. */
typedef struct churn {
    sim *s;
    tern_conn *c;
    tnet_node *cli, *srv;
    tt_rng rng;
    uint64_t flows_opened, flows_closed_rx, msgs_sent, msgs_rx, bad;
    struct {
        uint64_t id;
        uint64_t next_seq, left;
        int open;
    } f[8];
    uint64_t *rx_next; /* next expected sequence number, by flow id / 2 */
} churn;

#define CHURN_MAX_FLOWS 65536

static void churn_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d,
                             size_t len)
{
    (void)c;
    churn *ch = n->user;
    ch->msgs_rx++;
    if (len < 16) {
        ch->bad++;
        return;
    }
    uint64_t fid, seq;
    memcpy(&fid, d, 8);
    memcpy(&seq, d + 8, 8);
    if (fid != flow) ch->bad++;
    for (size_t i = 16; i < len; i++)
        if (d[i] != (uint8_t)(seq * 31 + i)) {
            ch->bad++;
            break;
        }
    if (flow / 2 >= CHURN_MAX_FLOWS) {
        ch->bad++;
        return;
    }
    uint64_t *next = &ch->rx_next[flow / 2];
    if (seq != *next) {
        ch->bad++; /* reliable ordered: nothing lost, nothing twice */
        if (getenv("TERN_FLOW_DEBUG") && ch->bad < 10)
            fprintf(stderr, "flow %llu: seq %llu, expected %llu\n", (unsigned long long)flow,
                    (unsigned long long)seq, (unsigned long long)*next);
    }
    *next = seq + 1;
}

static void churn_tick(void *arg)
{
    churn *ch = arg;
    if (tern_conn_get_state(ch->c) != TERN_CONN_ESTABLISHED) return;
    for (int i = 0; i < 8; i++) {
        if (!ch->f[i].open) {
            if (tt_rng_chance(&ch->rng, 0.2)) {
                if (tern_flow_open(ch->c, NULL, &ch->f[i].id) == TERN_OK) {
                    ch->f[i].open = 1;
                    ch->f[i].next_seq = 0;
                    ch->f[i].left = 1 + tt_rng_below(&ch->rng, 40);
                    ch->flows_opened++;
                }
            }
            continue;
        }
        if (tern_flow_queued(ch->c, ch->f[i].id) > 200000) continue;
        uint8_t buf[6000];
        size_t len = 16 + (size_t)tt_rng_below(&ch->rng, sizeof(buf) - 16);
        memcpy(buf, &ch->f[i].id, 8);
        memcpy(buf + 8, &ch->f[i].next_seq, 8);
        for (size_t k = 16; k < len; k++) buf[k] = (uint8_t)(ch->f[i].next_seq * 31 + k);
        if (tern_flow_send(ch->c, ch->f[i].id, sim_now(ch->s), buf, len, -1) == TERN_OK) {
            ch->f[i].next_seq++;
            ch->msgs_sent++;
            if (--ch->f[i].left == 0) {
                tern_flow_close(ch->c, ch->f[i].id);
                ch->f[i].open = 0;
            }
        }
    }
    sim_node_wake(ch->s, ch->cli->node);
}

static void test_ten_minutes_of_churn(void)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SA, 1, NULL, 1);
    tnet_node_init(&cli, s, &CA, 0, NULL, 2);
    sim_link_params p = base_link(5, 40);
    p.loss = 0.02;
    p.burst_max = 3;
    p.reorder = 0.01;
    p.jitter_ns = 3 * MS;
    p.duplicate = 0.005;
    sim_link_set_both(s, &SA, &CA, &p);
    churn ch;
    memset(&ch, 0, sizeof(ch));
    ch.s = s;
    ch.cli = &cli;
    ch.srv = &srv;
    tt_rng_seed(&ch.rng, sim_derive_seed(s, 42));
    ch.rx_next = calloc(CHURN_MAX_FLOWS, sizeof(uint64_t));
    TT_REQUIRE(ch.rx_next != NULL);
    srv.user = &ch;
    srv.on_message = churn_on_message;
    ch.c = tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 2 * S);
    TT_REQUIRE(cli.established && srv.established);
    size_t cli_base = cli.mem.current, srv_base = srv.mem.current;
    ticker tk = {sim_now(s), 20 * MS, churn_tick, &ch};
    sim_node *tn = ticker_add(s, &tk);
    TT_REQUIRE(tn != NULL);
    sim_run_until(s, sim_now(s) + 600 * S);
    sim_node_remove(s, tn);
    /* close everything, let it drain */
    for (int i = 0; i < 8; i++)
        if (ch.f[i].open) tern_flow_close(ch.c, ch.f[i].id);
    sim_run_until(s, sim_now(s) + 30 * S);
    printf("    10 min churn: %llu flows opened, %llu closed at the receiver, %llu of %llu "
           "messages, %llu bad; memory client %zu -> %zu, server %zu -> %zu bytes\n",
           (unsigned long long)ch.flows_opened, (unsigned long long)srv.flows_closed,
           (unsigned long long)ch.msgs_rx, (unsigned long long)ch.msgs_sent,
           (unsigned long long)ch.bad, cli_base, cli.mem.current, srv_base, srv.mem.current);
    TT_CHECK_EQ_U64(ch.bad, 0);
    TT_CHECK_EQ_U64(ch.msgs_rx, ch.msgs_sent);
    TT_CHECK_EQ_U64(srv.flows_closed, ch.flows_opened);
    TT_CHECK(ch.flows_opened > 100);
    TT_CHECK_EQ_INT(cli.closed + srv.closed, 0);
    TT_CHECK_EQ_U64(tern_flow_queued(ch.c, 0), 0);
    /* flows gone, buffers gone: back to the baseline (the sent-packet ring may have grown) */
    TT_CHECK_MSG(cli.mem.current <= cli_base + 64 * 1024, "client %zu -> %zu", cli_base,
                 cli.mem.current);
    TT_CHECK_MSG(srv.mem.current <= srv_base + 64 * 1024, "server %zu -> %zu", srv_base,
                 srv.mem.current);
    TT_CHECK_EQ_U64(ch.c->flows.n_send, 0);
    TT_CHECK_EQ_U64(srv.conn->flows.n_recv, 0);
    free(ch.rx_next);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* ---------------------------------------------------------------- byte stream */

typedef struct stream_rx {
    uint64_t received, chunks, bad;
    uint64_t first_at, last_at;
} stream_rx;

static void stream_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d,
                              size_t len)
{
    (void)c;
    (void)flow;
    stream_rx *sr = n->user;
    for (size_t i = 0; i < len; i++)
        if (d[i] != sim_xfer_pattern(sr->received + i)) {
            sr->bad++;
            break;
        }
    sr->received += len;
    sr->chunks++;
}

static void test_byte_stream(void)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SA, 1, NULL, 1);
    tnet_node_init(&cli, s, &CA, 0, NULL, 2);
    sim_link_params p = base_link(10, 20);
    p.loss = 0.02;
    sim_link_set_both(s, &SA, &CA, &p);
    stream_rx sr = {0};
    srv.user = &sr;
    srv.on_message = stream_on_message;
    tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 500 * MS);
    TT_REQUIRE(cli.established);
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.stream = 1;
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(c, &fc, &flow) == TERN_OK);
    fc.reliability = TERN_FLOW_PARTIAL;
    uint64_t bad_flow;
    TT_CHECK_EQ_INT(tern_flow_open(c, &fc, &bad_flow), TERN_ERR_INVALID_ARG);
    /* one 4 MB write: the receiver sees bytes long before the write completes */
    static uint8_t buf[4u << 20];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = sim_xfer_pattern(i);
    TT_REQUIRE(tern_flow_send(c, flow, sim_now(s), buf, sizeof(buf), -1) == TERN_OK);
    sim_run_until(s, sim_now(s) + 1 * S);
    uint64_t early = sr.received;
    sim_run_until(s, sim_now(s) + 20 * S);
    printf("    byte stream, 2%% loss: %llu bytes in %llu pieces (%llu after the first second)\n",
           (unsigned long long)sr.received, (unsigned long long)sr.chunks,
           (unsigned long long)early);
    TT_CHECK_EQ_U64(sr.received, sizeof(buf));
    TT_CHECK_EQ_U64(sr.bad, 0);
    TT_CHECK(early > 0 && early < sizeof(buf));
    TT_CHECK(sr.chunks > 100);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* ---------------------------------------------------------------- re-entrancy */

static void close_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d,
                             size_t len)
{
    (void)flow;
    (void)d;
    (void)len;
    (void)n;
    if (tern_conn_get_state(c) == TERN_CONN_ESTABLISHED)
        TT_CHECK_EQ_INT(tern_conn_close(c, n->established_at, 7, "enough", 6), TERN_OK);
}

static void test_close_from_inside_on_message(void)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SA, 1, NULL, 1);
    tnet_node_init(&cli, s, &CA, 0, NULL, 2);
    tnet_link(s, &SA, &CA, 10, 0, 0);
    srv.on_message = close_on_message;
    tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 200 * MS);
    TT_REQUIRE(cli.established);
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(c, NULL, &flow) == TERN_OK);
    static uint8_t buf[100000];
    /* several messages (one of many fragments) arrive together; the first closes */
    for (int i = 0; i < 4; i++)
        TT_CHECK_EQ_INT(tern_flow_send(c, flow, sim_now(s), buf, i == 0 ? 10 : sizeof(buf), -1),
                        TERN_OK);
    sim_run_until(s, sim_now(s) + 5 * S);
    TT_CHECK_EQ_U64(srv.messages, 1);
    TT_CHECK_EQ_INT(cli.closed, 1);
    TT_CHECK_EQ_INT(cli.close_err, TERN_ERR_PEER_CLOSED);
    TT_CHECK_EQ_U64(cli.close_code, 7);
    TT_CHECK_EQ_INT(srv.freed, 1);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static const tt_case cases[] = {
    TT_CASE(test_10mb_clean),
    TT_CASE(test_10mb_bursty_loss),
    TT_CASE(test_10mb_reorder_dup_corrupt),
    TT_CASE(test_10mb_300ms_1pct),
    TT_CASE(test_10mb_on5_off2),
    TT_CASE(test_goodput_300ms_1pct_by_controller),
    TT_CASE(test_two_connections_share_fairly),
    TT_CASE(test_unreliable_flow_at_10pct_loss),
    TT_CASE(test_partial_flow_respects_deadline),
    TT_CASE(test_priorities_under_congestion),
    TT_CASE(test_slow_reader_holds_the_sender),
    TT_CASE(test_hostile_offsets_beyond_the_window),
    TT_CASE(test_hostile_too_many_flows_and_wrap),
    TT_CASE(test_hostile_ack_for_unsent_packets),
    TT_CASE(test_16mib_messages),
    TT_CASE(test_byte_stream),
    TT_CASE(test_close_from_inside_on_message),
    TT_CASE(test_ten_minutes_of_churn),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
