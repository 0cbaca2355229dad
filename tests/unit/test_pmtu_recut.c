/*
 * White-box tests of retransmissions cut to the current path MTU (src/core/flow_send.c and
 * flow_recv.c, FLOW_DATA_PART): two bare connections of support/core_rig, a sender whose flow
 * frames (tern__flow_write_data) go straight into the receiver's tern__flow_on_frame, with
 * the packets' fate (delivered, lost, delivered late, twice) and its acknowledgement decided
 * by each test. A fragment cut at 1472 and lost after the size fell to 1200 is resent in parts
 * that fit; parts lost again, duplicated, or overtaken by the late whole fragment leave the
 * message byte-exact and delivered once. The receiver refuses malformed parts, and a fragment
 * held in parts counts against the connection's memory budget.
 */
#include <string.h>

#include "core/conn_int.h"
#include "support/core_rig.h"

#define MS (1000000ull)

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 2654435761u >> 11);
}

/* What the receiver delivered. */
typedef struct got {
    uint8_t buf[200000];
    size_t len;
    int messages;
} got;

static void on_message(tern_conn *c, uint64_t flow, const uint8_t *data, size_t len, void *user)
{
    (void)c;
    (void)flow;
    got *g = user;
    g->messages++;
    if (g->len + len <= sizeof(g->buf)) memcpy(g->buf + g->len, data, len);
    g->len += len;
}

/* One packet's frames as the sender built them, and its record. */
typedef struct pkt {
    uint8_t frames[TERN_MAX_DATAGRAM];
    size_t len;
    tern__sent rec;
} pkt;

typedef struct pair {
    core_rig a, b; /* a sends, b receives */
    got g;
    uint64_t flow, now;
    size_t parts, wholes, max_packet;
} pair;

static void pair_init(pair *p)
{
    memset(p, 0, sizeof(*p));
    core_rig_init(&p->a, NULL);
    core_rig_init(&p->b, NULL);
    /* b plays the server: it receives the client's flows */
    p->b.c->is_server = 1;
    p->b.c->flows.peer_next = 0;
    p->b.ep->cb.on_message = on_message;
    p->b.ep->user_data = &p->g;
    p->a.c->peer.flow_window = 1024;
    p->now = 1000 * MS;
    p->a.c->rec.rtt.srtt = 50 * MS;
    p->a.c->rec.rtt.has_sample = 1;
}

static void pair_free(pair *p)
{
    core_rig_free(&p->a);
    core_rig_free(&p->b);
}

/* The sender's next packet at its current size (as conn_tx.c bounds it); 0 when it has none. */
static int build(pair *p, pkt *k)
{
    memset(k, 0, sizeof(*k));
    size_t room = tern__conn_max_payload(p->a.c) - tern__conn_packet_overhead();
    uint8_t *end = tern__flow_write_data(p->a.c, p->now, k->frames, k->frames + room, &k->rec);
    k->len = (size_t)(end - k->frames);
    if (k->len + tern__conn_packet_overhead() > p->max_packet)
        p->max_packet = k->len + tern__conn_packet_overhead();
    return k->len > 0;
}

/* The receiver takes the packet's frames; counts FLOW_DATA and FLOW_DATA_PART frames. */
static int deliver(pair *p, const pkt *k)
{
    const uint8_t *q = k->frames, *end = k->frames + k->len;
    while (q < end) {
        uint64_t type;
        q = tern__get_varint(q, end, &type);
        TT_REQUIRE(q != NULL);
        if (type == TERN__FRAME_FLOW_DATA_PART) p->parts++;
        if (type == TERN__FRAME_FLOW_DATA) p->wholes++;
        int rc = tern__flow_on_frame(p->b.c, type, &q, end);
        if (rc != TERN_OK) return rc;
    }
    return TERN_OK;
}

static void acked(pair *p, const pkt *k)
{
    for (size_t i = 0; i < k->rec.n; i++) tern__flow_on_acked(p->a.c, &k->rec.e[i]);
}

static void lost(pair *p, const pkt *k)
{
    for (size_t i = 0; i < k->rec.n; i++) tern__flow_on_lost(p->a.c, &k->rec.e[i], p->now);
}

/* Sends and acknowledges everything that is left. */
static void drain(pair *p)
{
    pkt k;
    for (int i = 0; i < 10000 && build(p, &k); i++) {
        TT_REQUIRE(deliver(p, &k) == TERN_OK);
        acked(p, &k);
    }
}

static void check_exact(const pair *p, size_t len)
{
    TT_CHECK_EQ_INT(p->g.messages, 1);
    TT_CHECK_EQ_U64(p->g.len, len);
    size_t bad = 0;
    for (size_t i = 0; i < len && i < sizeof(p->g.buf); i++) bad += p->g.buf[i] != pattern(i);
    TT_CHECK_EQ_U64(bad, 0);
}

static void send_message(pair *p, size_t len)
{
    static uint8_t msg[100000];
    for (size_t i = 0; i < len; i++) msg[i] = pattern(i);
    TT_REQUIRE(tern_flow_open(p->a.c, NULL, &p->flow) == TERN_OK);
    TT_REQUIRE(tern_flow_send(p->a.c, p->flow, p->now, msg, len, -1) == TERN_OK);
}

/* Every other packet of a 60 kB message cut at 1472 is lost; the size falls to 1200: the lost
 * fragments go again in parts no larger than 1200, some parts are lost again and resent. */
static void test_lost_fragments_recut_to_the_smaller_size(void)
{
    pair p;
    pair_init(&p);
    p.a.c->pmtu.size = 1472;
    send_message(&p, 60000);
    static pkt first[64];
    size_t n = 0;
    while (n < 64 && build(&p, &first[n])) n++;
    TT_REQUIRE(n > 30 && n < 64);
    TT_CHECK_EQ_U64(p.max_packet, 1472);
    for (size_t i = 0; i < n; i++) {
        if (i % 2 == 0) {
            TT_REQUIRE(deliver(&p, &first[i]) == TERN_OK);
            acked(&p, &first[i]);
        }
    }
    /* the path drops to 1200, then the losses are found */
    p.a.c->pmtu.size = 1200;
    for (size_t i = 1; i < n; i += 2) lost(&p, &first[i]);
    p.max_packet = 0;
    /* the first round of retransmissions: one packet in three lost again */
    static pkt second[128];
    size_t m = 0;
    while (m < 128 && build(&p, &second[m])) m++;
    TT_CHECK(p.max_packet <= 1200);
    for (size_t i = 0; i < m; i++) {
        if (i % 3 == 1) {
            lost(&p, &second[i]);
        } else {
            TT_REQUIRE(deliver(&p, &second[i]) == TERN_OK);
            acked(&p, &second[i]);
        }
    }
    TT_CHECK_EQ_INT(p.g.messages, 0);
    drain(&p);
    TT_CHECK(p.max_packet <= 1200);
    /* every lost fragment but the last, short one went in (at least) two parts */
    TT_CHECK_MSG(p.parts >= (n / 2 - 1) * 2, "%zu parts for %zu lost", p.parts, n / 2);
    check_exact(&p, 60000);
    pair_free(&p);
}

/* A part delivered twice, and the whole fragment that was declared lost arriving (and being
 * acknowledged) after its parts started: each byte is kept once, the message once. */
static void test_late_whole_and_duplicate_parts(void)
{
    pair p;
    pair_init(&p);
    p.a.c->pmtu.size = 1472;
    send_message(&p, 4000); /* three fragments */
    pkt w[4], part[4];
    size_t n = 0;
    while (n < 4 && build(&p, &w[n])) n++;
    TT_REQUIRE(n == 3);
    TT_REQUIRE(deliver(&p, &w[0]) == TERN_OK);
    acked(&p, &w[0]);
    TT_REQUIRE(deliver(&p, &w[2]) == TERN_OK);
    acked(&p, &w[2]);
    p.a.c->pmtu.size = 1200;
    lost(&p, &w[1]);
    /* its first part arrives twice */
    TT_REQUIRE(build(&p, &part[0]));
    TT_CHECK_EQ_U64(p.a.c->flows.send->frags[1].part_size > 0, 1);
    TT_REQUIRE(deliver(&p, &part[0]) == TERN_OK);
    TT_REQUIRE(deliver(&p, &part[0]) == TERN_OK);
    TT_CHECK_EQ_INT(p.g.messages, 0);
    /* the whole, declared lost, arrives after all: complete, delivered, acknowledged */
    TT_REQUIRE(deliver(&p, &w[1]) == TERN_OK);
    acked(&p, &w[1]);
    check_exact(&p, 4000);
    /* the second part still goes out (it was queued); the receiver ignores it, the ACK is
     * harmless */
    while (build(&p, &part[1])) {
        TT_REQUIRE(deliver(&p, &part[1]) == TERN_OK);
        acked(&p, &part[1]);
    }
    acked(&p, &part[0]);
    check_exact(&p, 4000);
    TT_CHECK_EQ_U64(p.a.c->flows.send->base, 3); /* all three acknowledged */
    pair_free(&p);
}

/* A FLOW_DATA_PART frame for flow 0, fsn 0, BEGIN|END|ORDERED. */
static size_t part_frame(uint8_t *out, uint64_t whole, uint64_t off, uint64_t len, size_t base)
{
    uint8_t *p = out, *end = out + 1600;
    p = tern__put_varint(p, end, 0); /* flow */
    p = tern__put_varint(p, end, 0); /* fsn */
    p = tern__put_varint(p, end, TERN__FD_BEGIN | TERN__FD_END | TERN__FD_ORDERED);
    p = tern__put_varint(p, end, whole);
    p = tern__put_varint(p, end, off);
    p = tern__put_varint(p, end, len);
    for (uint64_t i = 0; i < len; i++) *p++ = pattern(base + (size_t)(off + i));
    return (size_t)(p - out);
}

static int take(pair *p, uint64_t whole, uint64_t off, uint64_t len, size_t base)
{
    uint8_t f[1600];
    size_t n = part_frame(f, whole, off, len, base);
    const uint8_t *q = f;
    return tern__flow_on_frame(p->b.c, TERN__FRAME_FLOW_DATA_PART, &q, f + n);
}

/* Parts cut differently (overlapping) on two retransmissions, received in any order. */
static void test_overlapping_parts_and_bad_parts(void)
{
    pair p;
    pair_init(&p);
    TT_CHECK_EQ_INT(take(&p, 1000, 400, 600, 0), TERN_OK);
    TT_CHECK_EQ_INT(take(&p, 1000, 0, 350, 0), TERN_OK);
    TT_CHECK_EQ_INT(take(&p, 1000, 500, 200, 0), TERN_OK);
    TT_CHECK_EQ_INT(p.g.messages, 0);
    TT_CHECK_EQ_INT(take(&p, 1000, 300, 150, 0), TERN_OK);
    check_exact(&p, 1000);
    TT_CHECK_EQ_U64(p.b.c->flows.recv->buffered, 0);
    /* a part of a fragment already delivered: a duplicate, ignored */
    TT_CHECK_EQ_INT(take(&p, 1000, 0, 10, 0), TERN_OK);
    TT_CHECK_EQ_INT(p.g.messages, 1);
    pair_free(&p);

    /* malformed: beyond the fragment, empty, a fragment too large, lengths that disagree */
    pair_init(&p);
    TT_CHECK_EQ_INT(take(&p, 1000, 900, 101, 0), TERN_ERR_PROTOCOL);
    TT_CHECK_EQ_INT(take(&p, 1000, 1001, 0, 0), TERN_ERR_PROTOCOL);
    TT_CHECK_EQ_INT(take(&p, 1000, 10, 0, 0), TERN_ERR_PROTOCOL);
    TT_CHECK_EQ_INT(take(&p, TERN_MAX_DATAGRAM + 1, 0, 100, 0), TERN_ERR_PROTOCOL);
    TT_CHECK_EQ_INT(take(&p, 1000, 0, 100, 0), TERN_OK);
    TT_CHECK_EQ_INT(take(&p, 999, 100, 100, 0), TERN_ERR_PROTOCOL);
    /* the held fragment is freed with the connection (the rig checks the allocator) */
    TT_CHECK_EQ_U64(p.b.c->flows.recv->buffered, 1000);
    pair_free(&p);

    /* a fragment held in parts counts against the connection's memory budget (conn_memory):
     * its bytes and its bitmap; past the budget the peer is refused (TERN_ERR_BUDGET) */
    pair_init(&p);
    TT_CHECK_EQ_INT(take(&p, 1000, 0, 10, 0), TERN_OK);
    uint64_t mem = p.b.c->flows.mem;
    uint8_t f[1600];
    size_t n = part_frame(f, 1000, 0, 10, 0);
    f[1] = 1; /* fsn 1 */
    const uint8_t *q = f;
    TT_CHECK_EQ_INT(tern__flow_on_frame(p.b.c, TERN__FRAME_FLOW_DATA_PART, &q, f + n), TERN_OK);
    TT_CHECK_EQ_U64(p.b.c->flows.mem - mem, tern__mem_charge(1000 + 125));
    p.b.ep->s.conn_memory = p.b.c->flows.mem + 100;
    f[1] = 2;
    q = f;
    TT_CHECK_EQ_INT(tern__flow_on_frame(p.b.c, TERN__FRAME_FLOW_DATA_PART, &q, f + n),
                    TERN_ERR_BUDGET);
    pair_free(&p);
}

static const tt_case cases[] = {
    TT_CASE(test_lost_fragments_recut_to_the_smaller_size),
    TT_CASE(test_late_whole_and_duplicate_parts),
    TT_CASE(test_overlapping_parts_and_bad_parts),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
