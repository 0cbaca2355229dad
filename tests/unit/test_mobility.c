/*
 * Mobility on the simulated network (label sim): a client whose address changes in the middle
 * of a transfer moves its connection with tern_conn_migrate (no byte lost, none delivered twice,
 * the flow goes on, on_path fires, the server validates the new address before it moves), in
 * both directions of transfer; a path that is down for 20 s and comes back (the connection
 * resumes within about one probe-timeout cap and a round trip, and what it sent into the
 * silence stays small); and a path down past the idle timeout (keep-alives do not keep it
 * open: the connection closes at the idle timeout).
 */
#include <stdio.h>
#include <string.h>

#include "support/tnet.h"
#include "support/xfer.h"

#define MS (1000000ull)
#define S (1000000000ull)

typedef sim_xfer xfer;

static int running(void *arg)
{
    xfer *x = arg;
    if (x->snd->closed || x->rcv->closed) return 0; /* x->sc may be freed */
    if (tern_conn_get_state(x->sc) == TERN_CONN_ESTABLISHED) {
        uint64_t before = x->queued;
        sim_xfer_fill(x, 16384, 1u << 20);
        if (x->queued != before) sim_node_wake(x->s, x->snd->node);
    }
    return x->received < x->total && x->bad == 0 && !x->snd->closed && !x->rcv->closed;
}

/* Runs the transfer until `until` (or the end); SIM_OK or SIM_TIMEOUT. */
static int run_xfer(xfer *x, uint64_t until)
{
    int rc = sim_run_while(x->s, running, x, until);
    TT_CHECK_MSG(rc == SIM_OK || rc == SIM_TIMEOUT, "sim: %s", sim_error(x->s));
    return rc;
}

typedef struct rig {
    sim *s;
    tnet_node srv, cli;
    tern_addr sa, ca, ca2;
    tern_conn *cc, *scn; /* the client's and the server's connection */
    xfer x;
} rig;

static sim_link_params link_params(double mbps, double one_way_ms)
{
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = (uint64_t)(one_way_ms * 1e6);
    p.rate_bps = (uint64_t)(mbps * 1e6);
    p.queue_bytes = 100000;
    p.overhead_bytes = 28;
    p.loss = 0.002; /* a little, so that each seed runs differently */
    p.jitter_ns = 1 * MS;
    return p;
}

/* A client and a server one_way_ms apart at 20 Mbit/s, connected; the transfer of total bytes
 * goes client -> server (upload) or server -> client. */
static void rig_init(rig *g, const tern_settings *set, uint64_t total, int upload,
                     double one_way_ms)
{
    memset(g, 0, sizeof(*g));
    tern_addr_ipv4(&g->sa, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&g->ca, 198, 51, 100, 7, 50000);  /* the first network */
    tern_addr_ipv4(&g->ca2, 203, 0, 113, 9, 41000);  /* the second network */
    g->s = sim_new(tt_seed());
    TT_REQUIRE(g->s != NULL);
    tnet_node_init(&g->srv, g->s, &g->sa, 1, set, 1);
    tnet_node_init(&g->cli, g->s, &g->ca, 0, set, 2);
    sim_link_params p = link_params(20, one_way_ms);
    TT_REQUIRE(sim_link_set_both(g->s, &g->sa, &g->ca, &p) != NULL);
    g->cc = tnet_connect(g->s, &g->cli, &g->srv, NULL);
    /* a round trip, or a few seconds when the 0.2% loss took a handshake packet */
    for (int i = 0; i < 100 && !(g->cli.established && g->srv.conn != NULL); i++)
        tnet_run_ms(g->s, 50);
    TT_REQUIRE(g->cli.established && g->srv.conn != NULL);
    g->scn = g->srv.conn;
    xfer *x = &g->x;
    x->s = g->s;
    x->total = total;
    x->snd = upload ? &g->cli : &g->srv;
    x->rcv = upload ? &g->srv : &g->cli;
    x->sc = upload ? g->cc : g->scn;
    x->rcv->user = x;
    x->rcv->on_message = sim_xfer_on_message;
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.stream = 1;
    TT_REQUIRE(tern_flow_open(x->sc, &fc, &x->flow) == TERN_OK);
    sim_xfer_fill(x, 16384, 1u << 20);
}

static void rig_free(rig *g)
{
    tnet_node_free(&g->cli, g->s);
    tnet_node_free(&g->srv, g->s);
    sim_del(g->s);
}

/* ---------------------------------------------------------------- address change */

static void address_change(int upload)
{
    rig g;
    const uint64_t total = 8u << 20;
    rig_init(&g, NULL, total, upload, 20);
    xfer *x = &g.x;
    /* a quarter in, the client's first network goes and a second one (30 ms away) comes */
    int rc;
    while ((rc = run_xfer(x, sim_now(g.s) + 10 * MS)) == SIM_TIMEOUT && x->received < total / 4)
        ;
    TT_REQUIRE(x->received >= total / 4 && x->received < total);
    sim_link_params p2 = link_params(20, 30);
    TT_REQUIRE(sim_link_set_both(g.s, &g.sa, &g.ca2, &p2) != NULL);
    TT_REQUIRE(sim_node_add_addr(g.s, g.cli.node, &g.ca2) == SIM_OK);
    /* packets already on the old link still arrive at the server (copies of what the client
     * now sends again); those the server sends to the old address are lost */
    TT_REQUIRE(sim_node_del_addr(g.s, g.cli.node, &g.ca) == SIM_OK);
    sim_link *old_up = sim_link_lookup(g.s, &g.ca, &g.sa);
    uint64_t old_delivered = sim_link_get_stats(old_up)->delivered;
    uint64_t moved_at = sim_now(g.s), paths_before = g.cli.path_changes;
    TT_CHECK_EQ_INT(tern_conn_migrate(g.cc, moved_at, &g.ca2), TERN_OK);
    TT_CHECK_EQ_U64(g.cli.path_changes, paths_before + 1); /* on_path */
    tern_path_info pi;
    tern_conn_path(g.cc, &pi);
    TT_CHECK(tern_addr_equal(&pi.local, &g.ca2));
    TT_CHECK(!pi.validated); /* until the server answers the challenge */
    sim_node_wake(g.s, g.cli.node);
    run_xfer(x, moved_at + 60 * S);

    TT_CHECK_EQ_U64(x->received, total);
    TT_CHECK_EQ_U64(x->bad, 0);
    TT_CHECK(!g.cli.closed && !g.srv.closed);
    tern_conn_stats cs, ss;
    tern_conn_get_stats(g.cc, &cs);
    tern_conn_get_stats(g.scn, &ss);
    TT_CHECK_EQ_U64(cs.migrations, 1);
    TT_CHECK_EQ_U64(cs.migrations_validated, 1);
    tern_conn_path(g.cc, &pi);
    TT_CHECK(pi.validated);
    /* the server validated the new address and moved there, once */
    TT_CHECK_EQ_U64(ss.migrations, 1);
    tern_conn_path(g.scn, &pi);
    TT_CHECK(tern_addr_equal(&pi.remote, &g.ca2));
    TT_CHECK(pi.validated);
    TT_CHECK(g.srv.path_changes >= 1);
    /* the longest stall of the transfer is the switch: a few round trips, not a PTO backoff */
    printf("    %s: %.2f MB in %.2f s after the move, longest gap %.0f ms (ending %.0f ms after "
           "the move), client lost %llu pkts (%llu spurious), server lost %llu\n",
           upload ? "upload" : "download", (double)total / 1e6,
           (double)(x->done_at - moved_at) / 1e9, (double)x->max_gap / 1e6,
           (double)(x->gap_end - moved_at) / 1e6, (unsigned long long)cs.packets_lost,
           (unsigned long long)cs.spurious_losses, (unsigned long long)ss.packets_lost);
    TT_CHECK_RANGE(x->max_gap, 0, 600 * MS);
    /* what was in flight on the old path when the client moved still arrived, and the client
     * sent it all again on the new one: the receiver had two copies and delivered one */
    uint64_t late = sim_link_get_stats(old_up)->delivered - old_delivered;
    printf("    %llu datagrams of the old path arrived after the move\n",
           (unsigned long long)late);
    if (upload) TT_CHECK(late > 10);
    rig_free(&g);
}

static void test_client_address_change_upload(void)
{
    address_change(1);
}

static void test_client_address_change_download(void)
{
    address_change(0);
}

/* ---------------------------------------------------------------- silence */

/* The path is down both ways for [from, from + down). */
static void outage(rig *g, uint64_t from, uint64_t down)
{
    TT_REQUIRE(sim_link_blackhole(sim_link_lookup(g->s, &g->ca, &g->sa), from, from + down) ==
               SIM_OK);
    TT_REQUIRE(sim_link_blackhole(sim_link_lookup(g->s, &g->sa, &g->ca), from, from + down) ==
               SIM_OK);
}

/* The client uploads over a path one_way_ms each way that goes down both ways for 20 s, 1 s
 * in. What the docs promise (docs/mobility.md "No network at all", protocol.md 9.4): the
 * connection resumes within one backoff cap and a round trip of the path's return, and what it
 * sends into the silence stays under 20 KB. The cap is the probe timeout's: min(8 srtt,
 * max_backoff 2 s), never below the base PTO (srtt + 4 rttvar + the peer's 25 ms ACK delay),
 * and once the path is silent at least recovery.c's least gap between silent PINGs (250 ms;
 * without it a 2 ms RTT path sent ~280 PINGs, 13 KB, into the 20 s here, and a path with no
 * queue in its RTT twice that); taken from the RTT estimate just before the outage. After the client's first
 * PING past the return: one round trip to its ACK (which declares the outage's packets lost),
 * the peer's ACK delay, and one way for the first retransmitted byte: cap + 2 RTT + 25 ms,
 * plus 5 ms for the link's 1 ms jitter each way. */
static void path_down_20s(double one_way_ms)
{
    rig g;
    const uint64_t total = 6u << 20;
    rig_init(&g, NULL, total, 1, one_way_ms); /* idle timeout 30 s, max_backoff 2 s */
    xfer *x = &g.x;
    uint64_t down_at = sim_now(g.s) + 1 * S, up_at = down_at + 20 * S;
    outage(&g, down_at, 20 * S);
    run_xfer(x, down_at);
    tern_conn_stats before;
    tern_conn_get_stats(g.cc, &before);
    uint64_t ack_delay = 25 * MS, max_backoff = 2 * S, floor = 250 * MS;
    uint64_t var = 4 * before.rttvar_ns > MS ? 4 * before.rttvar_ns : MS;
    uint64_t base = before.srtt_ns + var + ack_delay;
    uint64_t cap = 8 * before.srtt_ns < max_backoff ? 8 * before.srtt_ns : max_backoff;
    if (cap < base) cap = base;
    if (cap < floor) cap = floor;
    uint64_t rtt = (uint64_t)(2 * one_way_ms * 1e6);
    uint64_t bound = cap + 2 * rtt + ack_delay + 5 * MS;
    run_xfer(x, up_at + 60 * S);

    TT_CHECK_EQ_U64(x->received, total);
    TT_CHECK_EQ_U64(x->bad, 0);
    TT_CHECK(!g.cli.closed && !g.srv.closed);
    uint64_t resumed = x->gap_end > up_at ? x->gap_end - up_at : 0;
    tern_conn_stats cs, ss;
    tern_conn_get_stats(g.cc, &cs);
    tern_conn_get_stats(g.scn, &ss);
    printf("    %.0f ms RTT (srtt %.1f ms before the outage): gap %.2f s, resumed %.0f ms after "
           "the path came back (bound %.0f ms); sent into the silence: client %llu B (%llu "
           "PTOs), server %llu B (%llu PTOs)\n",
           2 * one_way_ms, (double)before.srtt_ns / 1e6, (double)x->max_gap / 1e9,
           (double)resumed / 1e6, (double)bound / 1e6, (unsigned long long)cs.silent_bytes,
           (unsigned long long)(cs.pto_count - before.pto_count),
           (unsigned long long)ss.silent_bytes, (unsigned long long)ss.pto_count);
    TT_CHECK(x->gap_end > up_at);
    TT_CHECK_MSG(resumed <= bound, "resumed %llu ms after the return, bound %llu ms",
                 (unsigned long long)(resumed / MS), (unsigned long long)(bound / MS));
    /* bounded and small: two packets at each of the first two timeouts, then PINGs */
    TT_CHECK_RANGE(cs.silent_bytes, 1, 20000);
    TT_CHECK_RANGE(ss.silent_bytes, 0, 20000);
    rig_free(&g);
}

static void test_path_down_20s_resumes(void)
{
    path_down_20s(20); /* 40 ms RTT */
    path_down_20s(1);  /* 2 ms RTT: the PTO near its 25 ms ACK-delay floor */
}

static void test_path_down_past_idle_timeout_closes(void)
{
    rig g;
    rig_init(&g, NULL, 2u << 20, 1, 20);
    xfer *x = &g.x;
    uint64_t down_at = sim_now(g.s) + 500 * MS;
    outage(&g, down_at, 60 * S);
    run_xfer(x, down_at + 29500 * MS);
    TT_CHECK(!g.cli.closed && !g.srv.closed);
    run_xfer(x, down_at + 30500 * MS);
    tnet_run_ms(g.s, (down_at + 30500 * MS - sim_now(g.s)) / MS); /* the transfer ended first */
    /* keep-alives and probes went out all along, but nothing was heard: idle timeout (30 s
     * after the last packet received), on both sides */
    TT_CHECK(g.cli.closed && g.srv.closed);
    TT_CHECK_EQ_INT(g.cli.close_err, TERN_ERR_IDLE_TIMEOUT);
    TT_CHECK_EQ_INT(g.srv.close_err, TERN_ERR_IDLE_TIMEOUT);
    TT_CHECK(x->received < x->total);
    rig_free(&g);
}

static const tt_case cases[] = {
    TT_CASE(test_client_address_change_upload),
    TT_CASE(test_client_address_change_download),
    TT_CASE(test_path_down_20s_resumes),
    TT_CASE(test_path_down_past_idle_timeout_closes),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
