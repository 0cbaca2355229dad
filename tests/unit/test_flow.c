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

#define MS (1000000ull)
#define S (1000000000ull)

static tern_addr SA, CA;
static uint16_t g_max_payload; /* 0: default (1200) */

static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 2654435761u >> 13);
}

/* ---------------------------------------------------------------- a bulk transfer */

typedef struct xfer {
    uint64_t mark_at, mark_bytes; /* bytes received by mark_at (steady-state measurement) */
    sim *s;
    tnet_node *snd, *rcv;
    tern_conn *sc;
    uint64_t flow;
    uint64_t total, queued, chunk;
    uint64_t received, bad;
    uint64_t done_at;
    size_t msg_size;
} xfer;

static void xfer_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d,
                            size_t len)
{
    (void)c;
    (void)flow;
    xfer *x = n->user;
    for (size_t i = 0; i < len; i++)
        if (d[i] != pattern(x->received + i)) {
            x->bad++;
            break;
        }
    x->received += len;
    if (x->mark_at && sim_now(x->s) <= x->mark_at) x->mark_bytes = x->received;
    if (x->received == x->total && x->done_at == 0) x->done_at = sim_now(x->s);
}

static void xfer_fill(xfer *x)
{
    static uint8_t buf[1 << 16];
    while (x->queued < x->total && tern_flow_queued(x->sc, x->flow) < (2u << 20)) {
        size_t n = x->msg_size;
        if (n > x->total - x->queued) n = (size_t)(x->total - x->queued);
        for (size_t i = 0; i < n; i++) buf[i] = pattern(x->queued + i);
        int rc = tern_flow_send(x->sc, x->flow, sim_now(x->s), buf, n, -1);
        if (rc != TERN_OK) break;
        x->queued += n;
    }
}

static int xfer_running(void *arg)
{
    xfer *x = arg;
    static uint64_t next_dbg;
    if (getenv("TERN_FLOW_DEBUG") && sim_now(x->s) >= next_dbg && x->sc) {
        tern_network_info ni;
        tern_conn_network_info(x->sc, &ni);
        fprintf(stderr, "t=%.2f recv=%llu bw=%.2fM pace=%.2fM cwnd=%llu infl=%llu srtt=%.1fms q=%llu\n",
                (double)sim_now(x->s) / 1e9, (unsigned long long)x->received,
                ni.bandwidth_bps / 1e6, ni.pacing_rate_bps / 1e6,
                (unsigned long long)ni.cwnd_bytes, (unsigned long long)ni.bytes_in_flight,
                ni.srtt_ns / 1e6, (unsigned long long)tern_flow_queued(x->sc, x->flow));
        tern__sflow *f = tern__sflow_find(x->sc, x->flow);
        if (f)
            fprintf(stderr, "   sflow base=%llu next=%llu peer_max=%llu lost_n=%zu head=%p; rec loss_time=%lld pto_at=%lld pacer_wake=%lld probes=%u\n",
                    (unsigned long long)f->base, (unsigned long long)f->next_fsn,
                    (unsigned long long)f->peer_max, f->lost_n, (void *)f->head,
                    (long long)x->sc->recp->loss_time, (long long)tern__rec_timer(x->sc),
                    (long long)x->sc->pacer_wake, x->sc->recp->probes_pending);
        if (f && f->lost_n) {
            for (size_t i = 0; i < f->lost_n; i++) {
                uint64_t fsn = f->lost[(f->lost_head + i) % f->lost_cap];
                tern__frag *fr = &f->frags[fsn % f->cap];
                fprintf(stderr, "     lost fsn=%llu state=%d msg=%p len=%u\n", (unsigned long long)fsn, fr->state, (void *)fr->msg, fr->len);
            }
            fprintf(stderr, "     has_data=%d\n", tern__flow_has_data(x->sc, sim_now(x->s)));
        }
        fprintf(stderr, "   ep deadline=%lld conn timer=%lld idx=%zu ack_deadline=%lld ack_now=%d in_send=%d\n",
                (long long)tern_endpoint_next_deadline(x->snd->ep), (long long)x->sc->timer.deadline,
                x->sc->timer.idx, (long long)x->sc->recp->acks.ack_deadline, x->sc->recp->acks.ack_now, x->sc->in_send_list);
        next_dbg = sim_now(x->s) + (sim_now(x->s) > 2500 * MS && sim_now(x->s) < 3000 * MS ? 0 : 500 * MS);
    }
    if (x->sc && tern_conn_get_state(x->sc) == TERN_CONN_ESTABLISHED) {
        uint64_t before = x->queued;
        xfer_fill(x);
        if (x->queued != before) sim_node_wake(x->s, x->snd->node);
    }
    return x->received < x->total && x->bad == 0 && x->snd->closed == 0 && x->rcv->closed == 0;
}

typedef struct run_result {
    double steady_mbps; /* from 10 s after the start to the end */
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
    x.s = s;
    x.snd = &cli;
    x.rcv = &srv;
    x.total = total;
    x.msg_size = msg_size;
    srv.user = &x;
    srv.on_message = xfer_on_message;
    x.sc = tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 2 * S);
    run_result r = {0};
    if (!cli.established) {
        TT_CHECK_MSG(0, "no handshake");
        goto out;
    }
    TT_REQUIRE(tern_flow_open(x.sc, NULL, &x.flow) == TERN_OK);
    uint64_t t0 = sim_now(s);
    x.mark_at = t0 + 10 * S;
    xfer_fill(&x);
    int rc = sim_run_while(s, xfer_running, &x, t0 + t_max);
    TT_CHECK_MSG(rc == SIM_OK || rc == SIM_TIMEOUT, "sim: %s", sim_error(s));
    r.bytes = x.received;
    r.bad = x.bad;
    r.done = x.received == total && x.bad == 0;
    r.seconds_ns = (x.done_at ? x.done_at : sim_now(s)) - t0;
    r.goodput_mbps = (double)x.received * 8 / ((double)r.seconds_ns / 1e9) / 1e6;
    if (r.seconds_ns > 10 * S)
        r.steady_mbps = (double)(x.received - x.mark_bytes) * 8 /
                        ((double)(r.seconds_ns - 10 * S) / 1e9) / 1e6;
    tern_conn_get_stats(x.sc, &r.cs);
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
     * 1-BDP queue and 1% random loss. Datagrams of 1452 bytes, what path MTU discovery finds on
     * a 1500-byte link (the 1200-byte default costs 2.5 points of header overhead). */
    sim_link_params p = base_link(10, 150);
    p.loss = 0.01;
    const uint64_t total = 80u * 1000 * 1000;
    static const struct {
        int cc;
        const char *name;
    } ccs[] = {{TERN_CC_BBR, "BBR"}, {TERN_CC_CUBIC, "CUBIC"}, {TERN_CC_NEWRENO, "NewReno"}};
    double bbr = 0, bbr_all = 0;
    g_max_payload = 1452;
    for (size_t i = 0; i < 3; i++) {
        run_result r = transfer(&p, total, ccs[i].cc, 60 * S, 65536);
        char what[64];
        snprintf(what, sizeof(what), "%s, 60 s, 300 ms RTT, 1%% loss", ccs[i].name);
        report(what, &r, 10);
        printf("    %-34s after startup (10-60 s): %.2f Mbit/s (%.1f%% of link)\n", "",
               r.steady_mbps, 10 * r.steady_mbps);
        if (ccs[i].cc == TERN_CC_BBR) {
            bbr = 10 * r.steady_mbps;
            bbr_all = 10 * r.goodput_mbps;
        }
        TT_CHECK_EQ_U64(r.bad, 0);
    }
    g_max_payload = 0;
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
        if (x->sc && tern_conn_get_state(x->sc) == TERN_CONN_ESTABLISHED && x->flow != UINT64_MAX) {
            uint64_t before = x->queued;
            xfer_fill(x);
            if (x->queued != before) sim_node_wake(x->s, x->snd->node);
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
        ps.x[i].s = s;
        ps.x[i].snd = &srv;
        ps.x[i].rcv = &cli[i];
        ps.x[i].total = UINT64_MAX / 2;
        ps.x[i].msg_size = 65536;
        ps.x[i].flow = UINT64_MAX;
        ps.x[i].sc = srv.conn;
    }
    TT_REQUIRE(tern_flow_open(ps.x[0].sc, NULL, &ps.x[0].flow) == TERN_OK);
    uint64_t t0 = sim_now(s);
    sim_run_while(s, pair_running, &ps, t0 + 5 * S); /* the second starts 5 s later */
    TT_REQUIRE(tern_flow_open(ps.x[1].sc, NULL, &ps.x[1].flow) == TERN_OK);
    sim_run_while(s, pair_running, &ps, t0 + 25 * S);
    tern_conn_stats a0, b0, a1, b1;
    tern_conn_get_stats(ps.x[0].sc, &a0);
    tern_conn_get_stats(ps.x[1].sc, &b0);
    sim_run_while(s, pair_running, &ps, t0 + 65 * S); /* measure 25..65 s */
    tern_conn_get_stats(ps.x[0].sc, &a1);
    tern_conn_get_stats(ps.x[1].sc, &b1);
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
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
