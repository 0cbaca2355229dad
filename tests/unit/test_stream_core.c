/*
 * White-box tests of the core's stream rules (docs/protocol.md "Stream paths") on the bare
 * connection of support/core_rig, its active path turned into a TCP one: packets sent on a
 * stream are never declared lost by the packet or time threshold (while UDP packets before them
 * are), only below a later stream packet that was acknowledged, a probe timeout there asks for one PING, the stream's end declares exactly its packets
 * lost, tern_endpoint_stream_closed moves the connection to a validated UDP candidate when there
 * is one (and a server stops sending into a stream it cannot reopen), and what a packet on a
 * stream carries is recorded as stream.
 */
#include <string.h>

#include "core/conn.h"
#include "support/core_rig.h"

#define MS (1000000ull)
#define S (1000000000ull)

/* Records packet next_pn as sent now, on a stream or not; returns its number. */
static uint64_t sent(core_rig *g, uint32_t bytes, int stream)
{
    tern_conn *c = g->c;
    uint64_t pn = c->tx.next_pn++;
    TT_REQUIRE(tern__rec_reserve(c, pn) == TERN_OK);
    tern__sent s;
    memset(&s, 0, sizeof(s));
    s.pn = pn;
    s.bytes = bytes;
    s.ack_eliciting = 1;
    s.in_flight = 1;
    s.stream = (uint8_t)stream;
    tern__rec_on_sent(c, &s, g->now);
    return pn;
}

static int acked(core_rig *g, uint64_t lo, uint64_t hi)
{
    tern__ack_frame f;
    memset(&f, 0, sizeof(f));
    f.largest = hi;
    f.r[0].lo = lo;
    f.r[0].hi = hi;
    f.n = 1;
    return tern__rec_on_ack(g->c, &f, g->now);
}

static void to_stream(core_rig *g)
{
    g->c->path.remote.transport = TERN_TRANSPORT_TCP;
    g->c->path.local.transport = TERN_TRANSPORT_TCP;
}

static void test_no_threshold_loss_on_stream(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern__recovery *r = g.c->rec.r;
    g.now = 1 * S;
    uint64_t first = sent(&g, 1000, 0);
    g.now += 50 * MS;
    TT_REQUIRE(acked(&g, first, first) == TERN_OK); /* an RTT sample of 50 ms */
    /* four UDP packets, then ten on the stream; the first stream packet is acknowledged */
    for (int i = 0; i < 4; i++) sent(&g, 1000, 0);
    uint64_t s[10];
    for (int i = 0; i < 10; i++) s[i] = sent(&g, 1000, 1);
    g.now += 60 * MS;
    TT_REQUIRE(acked(&g, s[0], s[0]) == TERN_OK);
    /* two UDP packets pass the packet threshold, the other two the time threshold a little
     * later; the stream ones after the acknowledged one are only slow */
    TT_CHECK_EQ_U64(r->lost_total, 2);
    TT_REQUIRE(r->loss_time != TERN_TIME_NEVER);
    g.now = r->loss_time;
    tern__rec_on_timer(g.c, g.now);
    TT_CHECK_EQ_U64(r->lost_total, 4);
    TT_CHECK_EQ_U64(g.c->st.stream_packets_lost, 0);
    TT_CHECK_EQ_U64(r->bytes_in_flight, 9000);
    TT_CHECK_EQ_U64(r->loss_time, TERN_TIME_NEVER); /* no time threshold armed for them */
    /* long after, the loss timer still sees nothing to do */
    g.now += 5 * S;
    tern__rec_on_timer(g.c, g.now);
    TT_CHECK_EQ_U64(r->lost_total, 4);
    TT_REQUIRE(acked(&g, s[1], s[9]) == TERN_OK);
    TT_CHECK_EQ_U64(r->bytes_in_flight, 0);
    TT_CHECK_EQ_U64(g.c->st.spurious_losses, 0);
    core_rig_free(&g);
}

static void test_gap_below_acked_stream_packet(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern__recovery *r = g.c->rec.r;
    g.now = 1 * S;
    uint64_t s[6];
    for (int i = 0; i < 6; i++) s[i] = sent(&g, 1000, 1);
    g.now += 50 * MS;
    /* s[3] acknowledged, s[0..2] not: on an ordered stream the driver dropped them (s[4], s[5]
     * are only behind) */
    TT_REQUIRE(acked(&g, s[3], s[3]) == TERN_OK);
    TT_CHECK_EQ_U64(r->lost_total, 3);
    TT_CHECK_EQ_U64(g.c->st.stream_gaps, 3);
    TT_CHECK_EQ_U64(g.c->st.stream_packets_lost, 3);
    TT_CHECK_EQ_U64(r->bytes_in_flight, 2000);
    g.now += 10 * S;
    tern__rec_on_timer(g.c, g.now);
    TT_CHECK_EQ_U64(r->lost_total, 3);
    TT_REQUIRE(acked(&g, s[3], s[5]) == TERN_OK);
    TT_CHECK_EQ_U64(r->lost_total, 3);
    TT_CHECK_EQ_U64(r->bytes_in_flight, 0);
    core_rig_free(&g);
}

static void test_pto_on_stream_is_one_ping(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern__recovery *r = g.c->rec.r;
    g.now = 1 * S;
    sent(&g, 1000, 0);
    uint64_t t = tern__rec_timer(g.c);
    g.now = t;
    tern__rec_on_timer(g.c, g.now);
    TT_CHECK_EQ_INT(r->probes_pending, 2); /* UDP: two probes */
    to_stream(&g);
    r->probes_pending = 0;
    sent(&g, 1000, 1);
    g.now = tern__rec_timer(g.c);
    tern__rec_on_timer(g.c, g.now);
    TT_CHECK_EQ_INT(r->probes_pending, 1); /* a stream: one PING, nothing declared lost */
    TT_CHECK_EQ_U64(r->lost_total, 0);
    /* the probe goes out as a PING even with the stream window full */
    r->bytes_in_flight = g.ep->s.stream_window;
    uint8_t out[TERN_MAX_DATAGRAM];
    const tern__path *via = NULL;
    int n = tern__conn_write(g.c, g.now, out, sizeof(out), &via);
    TT_CHECK(n > 0);
    TT_CHECK_EQ_INT(r->probes_pending, 0);
    TT_CHECK(via == &g.c->path);
    r->bytes_in_flight = 0;
    core_rig_free(&g);
}

static void test_stream_end_declares_its_packets_lost(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern__recovery *r = g.c->rec.r;
    g.now = 1 * S;
    sent(&g, 1000, 0);
    for (int i = 0; i < 4; i++) sent(&g, 500, 1);
    tern__rec_stream_lost(g.c, g.now);
    TT_CHECK_EQ_U64(g.c->st.stream_packets_lost, 4);
    TT_CHECK_EQ_U64(g.c->st.packets_lost, 4);
    TT_CHECK_EQ_U64(r->bytes_in_flight, 1000); /* the UDP packet stays outstanding */
    core_rig_free(&g);
}

static void test_written_packets_marked_stream(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern__recovery *r = g.c->rec.r;
    to_stream(&g);
    uint8_t out[TERN_MAX_DATAGRAM];
    const tern__path *via = NULL;
    TT_REQUIRE(tern_conn_ping(g.c, g.now) == TERN_OK);
    uint64_t pn = g.c->tx.next_pn;
    TT_REQUIRE(tern__conn_write(g.c, g.now, out, sizeof(out), &via) > 0);
    TT_CHECK_EQ_U64(r->ring[pn % r->cap].stream, 1);
    /* no path MTU probing on a stream */
    g.c->pmtu.due = 1;
    TT_CHECK_EQ_INT(tern__pmtu_write(g.c, g.now, out, sizeof(out)), 0);
    TT_CHECK_EQ_INT(g.c->pmtu.due, 0);
    core_rig_free(&g);
}

static void test_stream_closed_moves_to_validated_udp(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    to_stream(&g);
    tern_addr stream_remote = c->path.remote;
    for (int i = 0; i < 3; i++) sent(&g, 800, 1);
    /* a validated UDP candidate */
    c->p2p = tern__calloc(&g.ep->alloc, sizeof(*c->p2p));
    TT_REQUIRE(c->p2p != NULL);
    c->p2p->latest = -1;
    c->p2p->n = 1;
    tern__cand *k = &c->p2p->cands[0];
    k->path.local = g.local;
    tern_addr_ipv4(&k->path.remote, 192, 0, 2, 1, 4433);
    k->path.validated = 1;
    k->state = TERN__CAND_VALID;
    tern_endpoint_stream_closed(g.ep, g.now, &c->path.local, &stream_remote);
    TT_CHECK_EQ_INT(c->path.remote.transport, TERN_TRANSPORT_UDP);
    TT_CHECK_EQ_U64(c->path_moves, 1);
    TT_CHECK_EQ_U64(c->st.stream_packets_lost, 3);
    /* the stream is now the candidate, no longer taken as working */
    TT_CHECK(tern_addr_equal(&k->path.remote, &stream_remote));
    TT_CHECK_EQ_INT(k->state, TERN__CAND_VALID); /* moved off while it worked */
    tern_endpoint_stream_closed(g.ep, g.now, &g.local, &stream_remote);
    TT_CHECK_EQ_INT(k->state, TERN__CAND_PROBING);
    TT_CHECK_EQ_INT(k->path.validated, 0);
    core_rig_free(&g);
}

static void test_server_waits_on_closed_stream(void)
{
    for (int server = 0; server < 2; server++) {
        core_rig g;
        core_rig_init(&g, NULL);
        tern_conn *c = g.c;
        c->is_server = server;
        to_stream(&g);
        sent(&g, 800, 1);
        tern_endpoint_stream_closed(g.ep, g.now, &c->path.local, &c->path.remote);
        TT_CHECK_EQ_U64(c->st.stream_packets_lost, 1);
        TT_CHECK_EQ_INT(c->path.closed, server);
        /* what was lost waits to go again: a client sends it into the stream its driver
         * reopens, a server sends nothing until the client is back */
        TT_REQUIRE(tern_conn_ping(c, g.now) == TERN_OK);
        uint8_t out[TERN_MAX_DATAGRAM];
        const tern__path *via = NULL;
        int n = tern__conn_write(c, g.now, out, sizeof(out), &via);
        if (server) TT_CHECK_EQ_INT(n, 0);
        else TT_CHECK(n > 0);
        core_rig_free(&g);
    }
}

static const tt_case cases[] = {
    TT_CASE(test_no_threshold_loss_on_stream),
    TT_CASE(test_gap_below_acked_stream_packet),
    TT_CASE(test_pto_on_stream_is_one_ping),
    TT_CASE(test_stream_end_declares_its_packets_lost),
    TT_CASE(test_written_packets_marked_stream),
    TT_CASE(test_stream_closed_moves_to_validated_udp),
    TT_CASE(test_server_waits_on_closed_stream),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
