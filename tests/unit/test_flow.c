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

static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 2654435761u >> 13);
}

/* ---------------------------------------------------------------- a bulk transfer */

typedef struct xfer {
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
    xfer_fill(&x);
    int rc = sim_run_while(s, xfer_running, &x, t0 + t_max);
    TT_CHECK_MSG(rc == SIM_OK || rc == SIM_TIMEOUT, "sim: %s", sim_error(s));
    r.bytes = x.received;
    r.bad = x.bad;
    r.done = x.received == total && x.bad == 0;
    r.seconds_ns = (x.done_at ? x.done_at : sim_now(s)) - t0;
    r.goodput_mbps = (double)x.received * 8 / ((double)r.seconds_ns / 1e9) / 1e6;
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
           what, r->done ? "ok  " : "FAIL", (double)r->bytes / 1e6, (double)r->seconds_ns / 1e9,
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

static const tt_case cases[] = {
    TT_CASE(test_10mb_clean),
    TT_CASE(test_10mb_bursty_loss),
    TT_CASE(test_10mb_reorder_dup_corrupt),
    TT_CASE(test_10mb_300ms_1pct),
    TT_CASE(test_10mb_on5_off2),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
