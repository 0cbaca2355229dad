/*
 * Write-side events of sending flows (tern.h, beside tern_flow_send) on the simulated network:
 * on_flow_writable fires once after a full queue drains to its low-water mark and a transfer
 * driven by it alone completes; on_flow_acked's cumulative counts add up to what was sent, over
 * a lossy link too; tern_flow_send_ref's buffers arrive intact, are released exactly once when
 * acknowledged, and exactly once (undelivered) when the connection closes or the endpoint is
 * deleted, always before on_conn_free.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "support/tnet.h"

#define MS (1000000ull)
#define S (1000000000ull)
#define MSG (64u << 10)
#define NREF 64

static tern_addr SA, CA;

static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 2654435761u >> 13);
}

/* One sender (the client) and what its events and the receiver saw. */
typedef struct ev {
    sim *s;
    tnet_node srv, cli;
    tern_conn *c;
    uint64_t flow;
    uint64_t send_buffer;
    /* sending */
    uint64_t total, queued, msgs_queued;
    int use_ref;
    uint8_t *bufs[NREF];  /* send_ref: one buffer per message, released one by one */
    int busy[NREF];
    /* events */
    uint64_t refusals, writables, writable_unasked, writable_over_low;
    uint64_t acked_calls, acked_backwards;
    tern_flow_progress last;
    uint64_t releases, released_delivered, released_twice, released_after_free;
    int refused_pending;
    /* receiver */
    uint64_t received, bad;
} ev;

static ev *g; /* the callbacks' state (tnet's user_data is the node) */

static void rcv_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d, size_t len)
{
    (void)n, (void)c, (void)flow;
    for (size_t i = 0; i < len; i++)
        if (d[i] != pattern(g->received + i)) {
            g->bad++;
            break;
        }
    g->received += len;
}

static int free_slot(void)
{
    for (int i = 0; i < NREF; i++)
        if (!g->busy[i]) return i;
    return -1;
}

/* Queues messages until the flow refuses one (or everything is queued). */
static void fill(void)
{
    while (g->queued < g->total) {
        size_t n = MSG;
        if (n > g->total - g->queued) n = (size_t)(g->total - g->queued);
        int rc;
        if (g->use_ref) {
            int k = free_slot();
            if (k < 0) return; /* every buffer is out: a release will call again */
            for (size_t i = 0; i < n; i++) g->bufs[k][i] = pattern(g->queued + i);
            rc = tern_flow_send_ref(g->c, g->flow, sim_now(g->s), g->bufs[k], n, -1,
                                    (void *)(uintptr_t)(k + 1));
            if (rc == TERN_OK) g->busy[k] = 1;
        } else {
            static uint8_t buf[MSG];
            for (size_t i = 0; i < n; i++) buf[i] = pattern(g->queued + i);
            rc = tern_flow_send(g->c, g->flow, sim_now(g->s), buf, n, -1);
        }
        if (rc == TERN_ERR_AGAIN) {
            g->refusals++;
            g->refused_pending = 1;
            return;
        }
        TT_REQUIRE_MSG(rc == TERN_OK, "send: %s", tern_strerror(rc));
        g->queued += n;
        g->msgs_queued++;
    }
}

static void on_writable(tern_conn *c, uint64_t flow, void *u)
{
    (void)u;
    TT_CHECK(c == g->c && flow == g->flow);
    g->writables++;
    if (!g->refused_pending) g->writable_unasked++;
    if (tern_flow_queued(c, flow) > g->send_buffer / 2) g->writable_over_low++;
    g->refused_pending = 0;
    fill();
}

static void on_acked(tern_conn *c, uint64_t flow, const tern_flow_progress *p, void *u)
{
    (void)u;
    TT_CHECK(c == g->c && flow == g->flow);
    g->acked_calls++;
    if (p->acked_bytes < g->last.acked_bytes || p->acked_messages < g->last.acked_messages)
        g->acked_backwards++;
    TT_CHECK_EQ_U64(p->queued, tern_flow_queued(c, flow));
    g->last = *p;
}

static void on_release(tern_conn *c, uint64_t flow, void *token, int delivered, void *u)
{
    tnet_node *n = u;
    (void)c;
    TT_CHECK(flow == g->flow);
    if (n->freed) g->released_after_free++; /* on_conn_free is the last callback */
    int k = (int)(uintptr_t)token - 1;
    TT_REQUIRE(k >= 0 && k < NREF);
    if (!g->busy[k]) g->released_twice++;
    g->busy[k] = 0;
    g->releases++;
    if (delivered) g->released_delivered++;
    if (g->c && tern_conn_get_state(g->c) == TERN_CONN_ESTABLISHED && g->refused_pending == 0)
        fill(); /* a buffer is free again */
}

/* Sets up both nodes, connects, opens the client's flow and wires the write-side events. */
static void setup(ev *e, uint64_t send_buffer, double loss)
{
    memset(e, 0, sizeof(*e));
    g = e;
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    e->s = sim_new(tt_seed());
    tern_settings set;
    tern_settings_default(&set);
    set.send_buffer = send_buffer;
    e->send_buffer = send_buffer;
    tnet_node_init(&e->srv, e->s, &SA, 1, &set, 1);
    tnet_node_init(&e->cli, e->s, &CA, 0, &set, 2);
    e->cli.ep->cb.on_flow_writable = on_writable;
    e->cli.ep->cb.on_flow_acked = on_acked;
    e->cli.ep->cb.on_flow_release = on_release;
    e->srv.on_message = rcv_message;
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 10 * MS;
    p.rate_bps = 200000000;
    p.queue_bytes = 500000;
    p.loss = loss;
    TT_REQUIRE(sim_link_set_both(e->s, &SA, &CA, &p) != NULL);
    e->c = tnet_connect(e->s, &e->cli, &e->srv, NULL);
    sim_run_until(e->s, sim_now(e->s) + 1 * S);
    TT_REQUIRE(e->cli.established);
    TT_REQUIRE(tern_flow_open(e->c, NULL, &e->flow) == TERN_OK);
}

static void teardown(ev *e)
{
    tnet_node_free(&e->cli, e->s);
    tnet_node_free(&e->srv, e->s);
    sim_del(e->s);
    for (int i = 0; i < NREF; i++) free(e->bufs[i]);
    g = NULL;
}

static int not_done(void *arg)
{
    ev *e = arg;
    return e->received < e->total && e->bad == 0 && !e->cli.closed;
}

/* Queues until refused, then nothing but the events drive the sender to the end. */
static void run_transfer(ev *e, uint64_t total)
{
    e->total = total;
    fill();
    sim_node_wake(e->s, e->cli.node);
    TT_CHECK(e->refusals > 0); /* the queue did fill */
    int rc = sim_run_while(e->s, not_done, e, sim_now(e->s) + 120 * S);
    TT_CHECK_MSG(rc == SIM_OK || rc == SIM_TIMEOUT, "sim: %s", sim_error(e->s));
    sim_run_until(e->s, sim_now(e->s) + 1 * S); /* the last ACKs */
    TT_CHECK_EQ_U64(e->received, total);
    TT_CHECK_EQ_U64(e->bad, 0);
}

static void test_writable_after_full_queue_drains(void)
{
    ev e;
    setup(&e, 1u << 20, 0);
    run_transfer(&e, 24u << 20);
    printf("    24 MiB through a 1 MiB send buffer: %llu refusals, %llu writable events, %llu "
           "acked events\n",
           (unsigned long long)e.refusals, (unsigned long long)e.writables,
           (unsigned long long)e.acked_calls);
    /* one event per refusal, none unasked, each at the low-water mark */
    TT_CHECK(e.writables >= 1);
    TT_CHECK(e.writables == e.refusals || e.writables + 1 == e.refusals);
    TT_CHECK_EQ_U64(e.writable_unasked, 0);
    TT_CHECK_EQ_U64(e.writable_over_low, 0);
    /* refilled in large steps: far fewer refusals than messages */
    TT_CHECK(e.refusals * 4 < e.msgs_queued);
    teardown(&e);
}

static void test_acked_counts_sum_to_what_was_sent(void)
{
    const double losses[2] = {0, 0.02};
    for (int i = 0; i < 2; i++) {
        ev e;
        setup(&e, 1u << 20, losses[i]);
        run_transfer(&e, (8u << 20) + 12345);
        tern_conn_stats cs;
        tern_conn_get_stats(e.c, &cs);
        printf("    %.0f%% loss: %llu acked events for %llu messages, %llu fragments "
               "retransmitted\n",
               losses[i] * 100, (unsigned long long)e.acked_calls,
               (unsigned long long)e.msgs_queued,
               (unsigned long long)cs.packets_retransmitted_frags);
        TT_CHECK_EQ_U64(e.last.acked_bytes, e.total);
        TT_CHECK_EQ_U64(e.last.acked_messages, e.msgs_queued);
        TT_CHECK_EQ_U64(e.last.given_up_messages, 0);
        TT_CHECK_EQ_U64(e.last.queued, 0);
        TT_CHECK_EQ_U64(e.acked_backwards, 0);
        /* batched per packet, not per fragment */
        TT_CHECK(e.acked_calls < cs.tx_packets);
        if (losses[i] > 0) TT_CHECK(cs.packets_retransmitted_frags > 0);
        teardown(&e);
    }
}

static void alloc_bufs(ev *e)
{
    e->use_ref = 1;
    for (int i = 0; i < NREF; i++) {
        e->bufs[i] = malloc(MSG);
        TT_REQUIRE(e->bufs[i] != NULL);
    }
}

static void test_send_ref_released_once_on_ack(void)
{
    ev e;
    setup(&e, 1u << 20, 0.01);
    alloc_bufs(&e);
    size_t mem_before = tern_conn_memory(e.c);
    run_transfer(&e, 6u << 20);
    printf("    6 MiB by reference at 1%% loss: %llu releases, conn memory %zu bytes before\n",
           (unsigned long long)e.releases, mem_before);
    TT_CHECK_EQ_U64(e.releases, e.msgs_queued);
    TT_CHECK_EQ_U64(e.released_delivered, e.msgs_queued);
    TT_CHECK_EQ_U64(e.released_twice, 0);
    TT_CHECK_EQ_U64(e.last.acked_messages, e.msgs_queued);
    for (int i = 0; i < NREF; i++) TT_CHECK(!e.busy[i]);
    teardown(&e);
}

static void test_send_ref_counts_in_queue_not_budget(void)
{
    ev e;
    setup(&e, 1u << 20, 0);
    alloc_bufs(&e);
    size_t m0 = tern_conn_memory(e.c);
    uint64_t now = sim_now(e.s);
    TT_REQUIRE(tern_flow_send_ref(e.c, e.flow, now, e.bufs[0], MSG, -1, (void *)1) == TERN_OK);
    e.busy[0] = 1;
    TT_CHECK_EQ_U64(tern_flow_queued(e.c, e.flow), MSG);
    TT_CHECK(tern_conn_memory(e.c) - m0 < 1024); /* the record, not the bytes */
    /* the queue limit holds for referenced bytes: 16 x 64 KiB fill 1 MiB */
    int k = 1, rc = TERN_OK;
    for (; k < NREF && rc == TERN_OK; k++) {
        rc = tern_flow_send_ref(e.c, e.flow, now, e.bufs[k], MSG, -1, (void *)(uintptr_t)(k + 1));
        if (rc == TERN_OK) e.busy[k] = 1;
    }
    TT_CHECK_EQ_INT(rc, TERN_ERR_AGAIN);
    TT_CHECK_EQ_U64(tern_flow_queued(e.c, e.flow), 16u * MSG);
    teardown(&e); /* released from tern_endpoint_del */
    TT_CHECK_EQ_U64(e.releases, 16);
    TT_CHECK_EQ_U64(e.released_delivered, 0);
}

static void test_send_ref_released_once_on_close(void)
{
    ev e;
    setup(&e, 4u << 20, 0);
    alloc_bufs(&e);
    e.total = 4u << 20;
    fill();
    sim_node_wake(e.s, e.cli.node);
    sim_run_until(e.s, sim_now(e.s) + 15 * MS); /* some on the wire, nothing acknowledged */
    uint64_t out = e.msgs_queued;
    TT_CHECK(out > 8);
    TT_CHECK_EQ_U64(e.releases, 0);
    TT_REQUIRE(tern_conn_close(e.c, sim_now(e.s), 7, "bye", 3) == TERN_OK);
    sim_run_until(e.s, sim_now(e.s) + 5 * S); /* closing, then freed */
    TT_CHECK_EQ_INT(e.cli.freed, 1);
    printf("    closed with %llu referenced messages queued: %llu released, %llu of them "
           "delivered\n",
           (unsigned long long)out, (unsigned long long)e.releases,
           (unsigned long long)e.released_delivered);
    TT_CHECK_EQ_U64(e.releases, out);
    TT_CHECK_EQ_U64(e.released_twice, 0);
    TT_CHECK_EQ_U64(e.released_after_free, 0);
    TT_CHECK(e.released_delivered < out);
    for (int i = 0; i < NREF; i++) TT_CHECK(!e.busy[i]);
    teardown(&e);
    TT_CHECK_EQ_U64(e.releases, out); /* nothing more from tern_endpoint_del */
}

static void test_send_ref_needs_release_callback(void)
{
    ev e;
    setup(&e, 1u << 20, 0);
    e.cli.ep->cb.on_flow_release = NULL;
    uint8_t b[16] = {0};
    TT_CHECK_EQ_INT(tern_flow_send_ref(e.c, e.flow, sim_now(e.s), b, sizeof(b), -1, NULL),
                    TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_U64(tern_flow_queued(e.c, e.flow), 0);
    teardown(&e);
}

static const tt_case cases[] = {
    TT_CASE(test_writable_after_full_queue_drains),
    TT_CASE(test_acked_counts_sum_to_what_was_sent),
    TT_CASE(test_send_ref_released_once_on_ack),
    TT_CASE(test_send_ref_counts_in_queue_not_budget),
    TT_CASE(test_send_ref_released_once_on_close),
    TT_CASE(test_send_ref_needs_release_callback),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
