/*
 * Frame-aware delivery (tern_flow_send_msg, tern_flow_flush, docs/protocol.md 6.2 "Frame
 * dependencies"). White box: two bare connections of support/core_rig, the sender's frames
 * (tern__flow_write_data / write_control) handed straight to the receiver's
 * tern__flow_on_frame, each packet's fate chosen by the test: the DEP fields on the wire; a
 * message given up at the sender drops what depends on it (directly, through a chain, through
 * its group of pictures), refuses new dependents, and asks for a keyframe once per RTT; the
 * receiver skips what depends on a message it never got, reports it, sends one
 * KEYFRAME_REQUEST, and delivers again from the next keyframe; tern_flow_flush in both modes;
 * API errors; a hostile peer's message IDs cost the receiver nothing more. Then on the simulated
 * network: a 25 fps video flow (GOP 50) over a lossy 300 ms link loses a reference frame for
 * good: its dependents are never delivered, the sender hears a keyframe request, and the next
 * group of pictures arrives.
 */
#include <stdio.h>
#include <string.h>

#include "core/conn_int.h"
#include "core/fec.h"
#include "core/flow_int.h"
#include "core/conn.h"
#include "support/core_rig.h"
#include "support/tnet.h"

#define MS (1000000ull)

/* ---------------------------------------------------------------- white-box pair */

typedef struct pkt {
    uint8_t frames[TERN_MAX_DATAGRAM];
    size_t len;
    tern__sent rec;
} pkt;

typedef struct duo {
    core_rig a, b; /* a (client) sends on its flow, b (server) receives */
    uint64_t flow, now;
    /* receiver */
    uint64_t delivered, last_len;
    uint8_t last[64];
    uint64_t skipped_calls, skipped_first, skipped_count;
    /* sender */
    uint64_t kf_requests, released, released_delivered;
    tern_flow_progress prog;
} duo;

static duo *cur;        /* the callbacks' duo (each rig's user_data is the duo too) */
static uint8_t duo_fec; /* the next duo's flow's TERN_FEC_* */

static void d_message(tern_conn *c, uint64_t flow, const uint8_t *data, size_t len, void *u)
{
    (void)c, (void)flow;
    duo *d = u;
    d->delivered++;
    d->last_len = len;
    memcpy(d->last, data, len < sizeof(d->last) ? len : sizeof(d->last));
}

static void d_skipped(tern_conn *c, uint64_t flow, uint64_t first, uint64_t count, void *u)
{
    (void)c, (void)flow;
    duo *d = u;
    if (d->skipped_calls++ == 0) d->skipped_first = first;
    d->skipped_count += count;
}

static void d_kf(tern_conn *c, uint64_t flow, void *u)
{
    (void)c, (void)flow;
    ((duo *)u)->kf_requests++;
}

static void d_acked(tern_conn *c, uint64_t flow, const tern_flow_progress *p, void *u)
{
    (void)c, (void)flow;
    ((duo *)u)->prog = *p;
}

static void d_release(tern_conn *c, uint64_t flow, void *token, int delivered, void *u)
{
    (void)c, (void)flow, (void)token;
    duo *d = u;
    d->released++;
    d->released_delivered += delivered != 0;
}

/* A flow of a to b with reliability rel (ordered unless unordered). */
static void duo_init(duo *d, int rel, uint32_t deadline_ms, int unordered)
{
    memset(d, 0, sizeof(*d));
    cur = d;
    core_rig_init(&d->a, NULL);
    core_rig_init(&d->b, NULL);
    d->b.c->is_server = 1; /* b receives the client's (even) flows */
    d->b.c->flows.peer_next = 0;
    d->b.ep->cb.on_message = d_message;
    d->b.ep->cb.on_msg_skipped = d_skipped;
    d->b.ep->user_data = d;
    d->a.ep->cb.on_keyframe_request = d_kf;
    d->a.ep->cb.on_flow_acked = d_acked;
    d->a.ep->user_data = d;
    d->a.c->peer.flow_window = 1024;
    d->now = 1000 * MS;
    for (int i = 0; i < 2; i++) {
        tern_conn *c = i ? d->b.c : d->a.c;
        c->rec.rtt.srtt = c->rec.rtt.min = c->rec.rtt.latest = 100 * MS;
        c->rec.rtt.has_sample = 1;
        c->tx.last = c->rx.last = d->now;
    }
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.reliability = (uint8_t)rel;
    fc.deadline_ms = deadline_ms;
    fc.ordered = unordered ? 0 : 1;
    fc.fec = duo_fec;
    fc.fec_group = 3;
    fc.fec_repair_pct = 34;
    TT_REQUIRE(tern_flow_open(d->a.c, &fc, &d->flow) == TERN_OK);
}

static void duo_free(duo *d)
{
    core_rig_free(&d->a);
    core_rig_free(&d->b);
}

static void tick(duo *d, uint64_t ms)
{
    d->now += ms * MS;
    d->a.c->tx.last = d->a.c->rx.last = d->now;
    d->b.c->tx.last = d->b.c->rx.last = d->now;
}

/* Queues one message of n bytes (its first byte: tag) with the given flags. */
static int msg(duo *d, uint8_t tag, size_t n, uint32_t flags, uint64_t dep, uint64_t *id)
{
    uint8_t buf[4000];
    memset(buf, tag, n);
    tern_msg_opts o = {-1, 0, flags, dep};
    return tern_flow_send_msg(d->a.c, d->flow, d->now, buf, n, &o, id);
}

/* The next data packet of `from` (a: data, or b/a control frames when ctl). */
static int build(tern_conn *from, uint64_t now, pkt *k, int ctl)
{
    memset(k, 0, sizeof(*k));
    uint8_t *end = k->frames + 1200;
    uint8_t *p = ctl ? tern__flow_write_control(from, k->frames, end, &k->rec)
                     : tern__flow_write_data(from, now, k->frames, end, &k->rec);
    k->len = (size_t)(p - k->frames);
    return k->len > 0;
}

/* `to` takes the packet's frames; the first error. */
static int take(tern_conn *to, const pkt *k)
{
    const uint8_t *q = k->frames, *end = k->frames + k->len;
    while (q < end) {
        uint64_t type;
        q = tern__get_varint(q, end, &type);
        TT_REQUIRE(q != NULL);
        int rc = tern__flow_on_frame(to, type, &q, end);
        if (rc != TERN_OK) return rc;
    }
    return TERN_OK;
}

static void acked(tern_conn *c, const pkt *k)
{
    for (size_t i = 0; i < k->rec.n; i++) tern__flow_on_acked(c, &k->rec.e[i]);
}

static void lost(tern_conn *c, const pkt *k, uint64_t now)
{
    for (size_t i = 0; i < k->rec.n; i++) tern__flow_on_lost(c, &k->rec.e[i], now);
}

/* One message queued, sent in one packet (k), and optionally received. */
static void send_one(duo *d, uint8_t tag, uint32_t flags, uint64_t dep, pkt *k, int arrive)
{
    TT_REQUIRE(msg(d, tag, 100, flags, dep, NULL) == TERN_OK);
    TT_REQUIRE(build(d->a.c, d->now, k, 0));
    if (arrive) TT_REQUIRE(take(d->b.c, k) == TERN_OK);
}

/* Control frames a -> b and b -> a, then the sender's events. */
static void exchange_control(duo *d)
{
    pkt k;
    if (build(d->a.c, d->now, &k, 1)) TT_REQUIRE(take(d->b.c, &k) == TERN_OK);
    if (build(d->b.c, d->now, &k, 1)) TT_REQUIRE(take(d->a.c, &k) == TERN_OK);
    tern__flow_events(d->a.c);
}

/* ---------------------------------------------------------------- wire */

static void test_wire(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 0, 0);
    /* a plain message first carries no DEP: the flow tags from its first send_msg on */
    uint8_t one = 1;
    TT_CHECK_EQ_INT(tern_flow_send(d.a.c, d.flow, d.now, &one, 1, -1), TERN_OK);
    uint64_t ids[5];
    TT_CHECK_EQ_INT(msg(&d, 2, 10, TERN_MSG_KEYFRAME, 0, &ids[1]), TERN_OK);
    TT_CHECK_EQ_INT(msg(&d, 3, 10, TERN_MSG_DEPENDS, 1, &ids[2]), TERN_OK);
    TT_CHECK_EQ_INT(msg(&d, 4, 10, TERN_MSG_GOP | TERN_MSG_DEPENDS, 1, &ids[3]), TERN_OK);
    TT_CHECK_EQ_INT(tern_flow_send(d.a.c, d.flow, d.now, &one, 1, -1), TERN_OK); /* id 4 */
    for (int i = 1; i < 4; i++) TT_CHECK_EQ_U64(ids[i], (uint64_t)i);
    pkt k;
    TT_REQUIRE(build(d.a.c, d.now, &k, 0));
    /* expected per message: DEP flag, msg_id, depends (distance), group */
    const uint64_t want[5][4] = {{0, 0, 0, 0}, {1, 1, 0, 1}, {1, 2, 1, 0}, {1, 3, 2, 3},
                                 {1, 4, 0, 0}};
    const uint8_t *q = k.frames, *end = k.frames + k.len;
    for (int i = 0; i < 5; i++) {
        uint64_t type, flow, fsn, flags, v[3] = {0, 0, 0}, len;
        q = tern__get_varint(q, end, &type);
        q = tern__get_varint(q, end, &flow);
        q = tern__get_varint(q, end, &fsn);
        q = tern__get_varint(q, end, &flags);
        TT_REQUIRE(q != NULL);
        TT_CHECK_EQ_U64(type, TERN__FRAME_FLOW_DATA);
        TT_CHECK_EQ_U64(fsn, (uint64_t)i);
        TT_CHECK_EQ_U64(flags & ~(uint64_t)TERN__FD_DEP,
                        TERN__FD_BEGIN | TERN__FD_END | TERN__FD_ORDERED);
        TT_CHECK_EQ_U64((flags & TERN__FD_DEP) != 0, want[i][0]);
        if (flags & TERN__FD_DEP)
            for (int j = 0; j < 3; j++) q = tern__get_varint(q, end, &v[j]);
        q = tern__get_varint(q, end, &len);
        TT_REQUIRE(q != NULL && len <= (uint64_t)(end - q));
        q += len;
        for (int j = 0; j < 3 && want[i][0]; j++) TT_CHECK_EQ_U64(v[j], want[i][j + 1]);
    }
    TT_CHECK(q == end);
    /* the receiver decodes it: everything delivered, IDs tracked from 1 (a message came
     * without one first) */
    TT_CHECK_EQ_INT(take(d.b.c, &k), TERN_OK);
    TT_CHECK_EQ_U64(d.delivered, 5);
    tern__rflow *rf = tern__rflow_find(d.b.c, d.flow);
    TT_REQUIRE(rf != NULL);
    TT_CHECK_EQ_U64(rf->next_mid, 5);
    TT_CHECK_EQ_U64(rf->mid_base, 1);
    TT_CHECK_EQ_U64(d.b.c->st.msgs_skipped_dep, 0);
    duo_free(&d);
}

/* ---------------------------------------------------------------- sender and receiver */

static void test_cascade_and_skip(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 300, 0);
    pkt k0, k1, k2, k3, k4;
    /* one message every 50 ms, as frames come from an encoder */
    send_one(&d, 10, TERN_MSG_KEYFRAME, 0, &k0, 1);       /* 0 */
    tick(&d, 50);
    send_one(&d, 11, TERN_MSG_GOP, 0, &k1, 0);            /* 1: lost */
    tick(&d, 50);
    send_one(&d, 12, TERN_MSG_GOP, 0, &k2, 1);            /* 2: needs 1 (group) */
    tick(&d, 50);
    send_one(&d, 13, TERN_MSG_DEPENDS, 2, &k3, 1);        /* 3: needs 2 */
    tick(&d, 50);
    uint8_t plain = 14;                                   /* 4: needs nothing */
    TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, &plain, 1, -1) == TERN_OK);
    TT_REQUIRE(build(d.a.c, d.now, &k4, 0));
    TT_REQUIRE(take(d.b.c, &k4) == TERN_OK);
    TT_REQUIRE(msg(&d, 15, 100, TERN_MSG_GOP, 0, NULL) == TERN_OK); /* 5: queued, unsent */
    acked(d.a.c, &k0);
    TT_CHECK_EQ_U64(d.delivered, 1); /* 0; the rest waits behind fsn 1 */
    /* message 1 is declared lost once it can no longer arrive in time (its deadline, 300 ms,
     * less the one-way bound): given up, and with it 2, 3 (in flight) and 5 (queued); the
     * others are still in time at the receiver */
    tick(&d, 60);
    lost(d.a.c, &k1, d.now);
    TT_CHECK_EQ_U64(d.a.c->st.msgs_dropped_dep, 3);
    TT_CHECK_EQ_U64(tern_flow_queued(d.a.c, d.flow), 201); /* 2, 3 and 4 wait for their ACK */
    /* what depends on a given-up message is refused; a keyframe or a plain message is not */
    TT_CHECK_EQ_INT(msg(&d, 0, 10, TERN_MSG_GOP, 0, NULL), TERN_ERR_STATE);
    TT_CHECK_EQ_INT(msg(&d, 0, 10, TERN_MSG_DEPENDS, 2, NULL), TERN_ERR_STATE);
    TT_CHECK_EQ_INT(msg(&d, 0, 10, TERN_MSG_DEPENDS, 5, NULL), TERN_ERR_STATE);
    /* FLOW_FORWARD past 1: the receiver skips 2 and 3 (they need 1), delivers 4 */
    exchange_control(&d);
    TT_CHECK_EQ_U64(d.delivered, 2);
    TT_CHECK_EQ_U64(d.last_len, 1);
    TT_CHECK_EQ_U64(d.b.c->st.msgs_skipped_dep, 2);
    TT_CHECK_EQ_U64(d.skipped_calls, 1);
    TT_CHECK_EQ_U64(d.skipped_first, 2);
    TT_CHECK_EQ_U64(d.skipped_count, 2);
    /* one KEYFRAME_REQUEST went; the sender reports its own loss and the request once */
    TT_CHECK_EQ_U64(d.b.c->st.keyframe_requests_sent, 1);
    TT_CHECK_EQ_U64(d.a.c->st.keyframe_requests_received, 1);
    TT_CHECK_EQ_U64(d.kf_requests, 1);
    /* acknowledged late, the dropped messages still count as given up, once each */
    acked(d.a.c, &k2);
    acked(d.a.c, &k3);
    acked(d.a.c, &k4);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.prog.given_up_messages, 4);
    TT_CHECK_EQ_U64(d.prog.acked_messages, 2);
    TT_CHECK_EQ_U64(tern_flow_queued(d.a.c, d.flow), 0);
    /* the next keyframe and its group go through; a dependency on 0 (delivered) too */
    pkt k;
    send_one(&d, 20, TERN_MSG_DEPENDS, 0, &k, 1); /* 6 */
    send_one(&d, 21, TERN_MSG_KEYFRAME, 0, &k, 1); /* 7 */
    send_one(&d, 22, TERN_MSG_GOP, 0, &k, 1);      /* 8 */
    TT_CHECK_EQ_U64(d.delivered, 5);
    TT_CHECK_EQ_INT(d.last[0], 22);
    tern__rflow *rf = tern__rflow_find(d.b.c, d.flow);
    TT_CHECK_EQ_U64(rf->kf_want, TERN__NO_MSG); /* answered: no more requests */
    duo_free(&d);
}

/* A dependent waiting for retransmission is dropped from the queue of retransmissions. */
static void test_cascade_retransmission(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 1000, 0);
    pkt k0, k1, k;
    send_one(&d, 1, TERN_MSG_KEYFRAME, 0, &k0, 0);
    tick(&d, 300);
    send_one(&d, 2, TERN_MSG_GOP, 0, &k1, 0);
    lost(d.a.c, &k0, d.now); /* both wait for retransmission */
    lost(d.a.c, &k1, d.now);
    TT_CHECK_EQ_U64(tern__sflow_find(d.a.c, d.flow)->lost_n, 2);
    /* past the keyframe's last moment, before its dependent's: the scheduler gives the
     * keyframe up, and drops the dependent instead of resending it */
    tick(&d, 700);
    TT_CHECK(!build(d.a.c, d.now, &k, 0));
    TT_CHECK_EQ_U64(d.a.c->st.msgs_dropped_dep, 1);
    TT_CHECK_EQ_U64(d.a.c->st.packets_retransmitted_frags, 0);
    TT_CHECK_EQ_U64(tern_flow_queued(d.a.c, d.flow), 0);
    TT_REQUIRE(build(d.a.c, d.now, &k, 1));
    TT_CHECK_EQ_U64(k.frames[0], TERN__FRAME_FLOW_FORWARD);
    TT_CHECK_EQ_U64(k.frames[2], 2); /* past both */
    duo_free(&d);
}

/* Requests are reported at most once per RTT, each side. */
static void test_keyframe_rate(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 300, 0);
    pkt k;
    send_one(&d, 1, TERN_MSG_KEYFRAME, 0, &k, 1);
    /* the peer asks three times within an RTT, then once more after it */
    uint8_t fr[16];
    for (int i = 0; i < 4; i++) {
        if (i == 3) tick(&d, 150);
        uint8_t *p = tern__put_varint(fr, fr + sizeof(fr), TERN__FRAME_KEYFRAME_REQUEST);
        p = tern__put_varint(p, fr + sizeof(fr), d.flow);
        p = tern__put_varint(p, fr + sizeof(fr), 0);
        const uint8_t *q = fr + 1;
        TT_CHECK_EQ_INT(tern__flow_on_frame(d.a.c, TERN__FRAME_KEYFRAME_REQUEST, &q, p), TERN_OK);
        tern__flow_events(d.a.c);
    }
    TT_CHECK_EQ_U64(d.a.c->st.keyframe_requests_received, 4);
    TT_CHECK_EQ_U64(d.kf_requests, 2);
    /* a keyframe queued after the skipped message answers a request already */
    uint64_t id;
    TT_REQUIRE(msg(&d, 2, 10, TERN_MSG_KEYFRAME, 0, &id) == TERN_OK);
    tick(&d, 150);
    tern__flow_on_kf_request(d.a.c, tern__sflow_find(d.a.c, d.flow), id - 1);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.kf_requests, 2);
    duo_free(&d);

    /* the receiver's request is sent again when the packet carrying it is lost, and not once
     * the keyframe came */
    duo_init(&d, TERN_FLOW_PARTIAL, 0, 0);
    send_one(&d, 1, TERN_MSG_KEYFRAME, 0, &k, 1);
    acked(d.a.c, &k);
    pkt lost_k, k2;
    TT_REQUIRE(msg(&d, 2, 10, TERN_MSG_GOP, 0, NULL) == TERN_OK);
    TT_REQUIRE(build(d.a.c, d.now, &lost_k, 0)); /* 1: never arrives */
    send_one(&d, 3, TERN_MSG_GOP, 0, &k2, 1);   /* 2: waits behind 1 */
    TT_REQUIRE(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_ALL) == 110);
    TT_REQUIRE(build(d.a.c, d.now, &k, 1));     /* FLOW_FORWARD */
    TT_REQUIRE(take(d.b.c, &k) == TERN_OK);
    TT_CHECK_EQ_U64(d.b.c->st.msgs_skipped_dep, 1);
    TT_REQUIRE(build(d.b.c, d.now, &k, 1));
    TT_CHECK_EQ_U64(d.b.c->st.keyframe_requests_sent, 1);
    lost(d.b.c, &k, d.now);
    TT_REQUIRE(build(d.b.c, d.now, &k, 1));
    TT_CHECK_EQ_U64(d.b.c->st.keyframe_requests_sent, 2);
    send_one(&d, 4, TERN_MSG_KEYFRAME, 0, &k2, 1);
    TT_CHECK_EQ_U64(d.delivered, 2);
    lost(d.b.c, &k, d.now);
    TT_CHECK(!build(d.b.c, d.now, &k, 1));
    duo_free(&d);
}

/* A dependent partly on the wire when its dependency dies, on a flow without deadlines: the
 * rest of it is never sent, so its fragments in flight are given up too and FLOW_FORWARD
 * covers them; the receiver (which never skips a message without a deadline) would otherwise
 * wait for its END for good, and the flow would stall. */
static void test_cascade_partly_cut(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 0, 0);
    pkt k0, k1, k;
    tern_msg_opts o = {-1, 300, TERN_MSG_KEYFRAME, 0}; /* only the keyframe has a deadline */
    uint8_t buf[3000];
    memset(buf, 1, sizeof(buf));
    TT_REQUIRE(tern_flow_send_msg(d.a.c, d.flow, d.now, buf, 100, &o, NULL) == TERN_OK);
    TT_REQUIRE(build(d.a.c, d.now, &k0, 0)); /* 0: lost */
    TT_REQUIRE(msg(&d, 2, 3000, TERN_MSG_GOP, 0, NULL) == TERN_OK);
    TT_REQUIRE(build(d.a.c, d.now, &k1, 0)); /* 1: its first fragment, arrives */
    TT_REQUIRE(take(d.b.c, &k1) == TERN_OK);
    tern__sflow *f = tern__sflow_find(d.a.c, d.flow);
    TT_REQUIRE(f->head != NULL && f->head->cut > 0 && f->head->cut < f->head->len);
    tick(&d, 400);
    lost(d.a.c, &k0, d.now); /* the keyframe is given up, its dependent with it */
    TT_CHECK_EQ_U64(d.a.c->st.msgs_dropped_dep, 1);
    TT_CHECK(f->head == NULL);
    acked(d.a.c, &k1); /* late: the fragment was given up, nothing counts twice */
    TT_CHECK_EQ_U64(f->base, f->next_fsn);
    TT_CHECK_EQ_U64(tern_flow_queued(d.a.c, d.flow), 0);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.prog.given_up_messages, 2);
    TT_CHECK_EQ_U64(d.prog.acked_bytes, 0);
    /* the receiver hears FLOW_FORWARD past the dependent, then takes the next keyframe */
    TT_REQUIRE(build(d.a.c, d.now, &k, 1));
    TT_CHECK_EQ_U64(k.frames[0], TERN__FRAME_FLOW_FORWARD);
    TT_REQUIRE(take(d.b.c, &k) == TERN_OK);
    send_one(&d, 3, TERN_MSG_KEYFRAME, 0, &k, 1);
    TT_CHECK_EQ_U64(d.delivered, 1);
    TT_CHECK_EQ_INT(d.last[0], 3);
    duo_free(&d);
}

/* A keyframe request that comes within an RTT of the last report waits for the RTT to end
 * instead of being lost: the keyframe sent for the last report may be what died. It is dropped
 * once a keyframe is queued after it. */
static void test_keyframe_request_held(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_UNRELIABLE, 0, 0);
    pkt k;
    send_one(&d, 1, TERN_MSG_KEYFRAME, 0, &k, 1);
    acked(d.a.c, &k);
    send_one(&d, 2, TERN_MSG_GOP, 0, &k, 0);
    lost(d.a.c, &k, d.now); /* given up: the encoder is asked for a keyframe */
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.kf_requests, 1);
    send_one(&d, 3, TERN_MSG_KEYFRAME, 0, &k, 0); /* the answer, lost too */
    tick(&d, 50);
    lost(d.a.c, &k, d.now);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.kf_requests, 1); /* within the RTT (100 ms) of the last */
    tick(&d, 60);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.kf_requests, 2); /* not lost */
    /* held again, then answered by a keyframe queued before the RTT ended: nothing owed */
    TT_CHECK_EQ_INT(msg(&d, 4, 10, TERN_MSG_GOP, 0, NULL), TERN_ERR_STATE); /* group broken */
    send_one(&d, 5, TERN_MSG_KEYFRAME, 0, &k, 0);
    lost(d.a.c, &k, d.now);
    tern__flow_events(d.a.c);
    TT_REQUIRE(msg(&d, 6, 10, TERN_MSG_KEYFRAME, 0, NULL) == TERN_OK);
    tick(&d, 110);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.kf_requests, 2);
    TT_CHECK(!tern__sflow_find(d.a.c, d.flow)->kf_pending);
    duo_free(&d);
}

/* The receiver asks again (an RTT later) naming its latest skip: the keyframe that answered
 * the first request expired at the receiver, and the sender, which queued it after the first
 * ID named, would ignore a repeat of that one for good. */
static void test_keyframe_request_again(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 300, 0);
    pkt k0, k1, k2, kp, kk, k;
    send_one(&d, 1, TERN_MSG_KEYFRAME, 0, &k0, 1); /* 0 */
    acked(d.a.c, &k0);
    send_one(&d, 2, TERN_MSG_GOP, 0, &k1, 0); /* 1: lost */
    tick(&d, 100);
    send_one(&d, 3, TERN_MSG_GOP, 0, &k2, 1); /* 2: waits behind 1 */
    tick(&d, 110); /* past 1's last moment (300 ms less the 100 ms bound), not 2's */
    lost(d.a.c, &k1, d.now);
    acked(d.a.c, &k2);
    exchange_control(&d); /* FLOW_FORWARD: 2 skipped, KEYFRAME_REQUEST(2) */
    tern__rflow *rf = tern__rflow_find(d.b.c, d.flow);
    TT_CHECK_EQ_U64(rf->kf_want, 2);
    TT_CHECK_EQ_U64(d.kf_requests, 1);
    /* the encoder's keyframe (4) arrives behind a lost message (3) and expires there */
    uint8_t plain = 7;
    TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, &plain, 1, -1) == TERN_OK); /* 3 */
    TT_REQUIRE(build(d.a.c, d.now, &kp, 0));
    send_one(&d, 4, TERN_MSG_KEYFRAME, 0, &kk, 1); /* 4 */
    acked(d.a.c, &kk);
    tick(&d, 400);
    lost(d.a.c, &kp, d.now); /* 3 given up: not of the current group, nothing asked */
    exchange_control(&d);    /* FLOW_FORWARD: 4 expired at the receiver */
    TT_CHECK_EQ_U64(d.b.c->st.messages_expired, 1);
    TT_CHECK_EQ_U64(d.kf_requests, 1);
    /* its group's next message is skipped; the request names it, and the sender asks */
    send_one(&d, 5, TERN_MSG_GOP, 0, &k, 1); /* 5 */
    TT_CHECK_EQ_U64(rf->kf_want, 5);
    exchange_control(&d);
    TT_CHECK_EQ_U64(d.b.c->st.keyframe_requests_sent, 2);
    TT_CHECK_EQ_U64(d.kf_requests, 2);
    duo_free(&d);
}

/* Empty messages still queued (cut == len from the start) given up by a flush, by their
 * deadline, or with the message they depend on: each leaves the queue before it is freed
 * (it was freed while still linked: a use after free, then a second free with the flow). */
static void test_empty_messages(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 300, 0);
    pkt k0, k;
    for (int i = 0; i < 3; i++)
        TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, NULL, 0, -1) == TERN_OK);
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_UNSENT), 0);
    tern__sflow *f = tern__sflow_find(d.a.c, d.flow);
    TT_CHECK(f->head == NULL && f->tail == NULL);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.prog.given_up_messages, 3);
    /* past their deadline before they were sent */
    for (int i = 0; i < 3; i++)
        TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, NULL, 0, -1) == TERN_OK);
    tick(&d, 400);
    TT_CHECK(!build(d.a.c, d.now, &k, 0));
    TT_CHECK(f->head == NULL && f->tail == NULL);
    /* empty dependents of a keyframe that dies */
    send_one(&d, 1, TERN_MSG_KEYFRAME, 0, &k0, 0);
    uint64_t kid = f->next_msg_id - 1;
    TT_REQUIRE(tern_flow_send_msg(d.a.c, d.flow, d.now, NULL, 0,
                                  &(tern_msg_opts){-1, 0, TERN_MSG_GOP, 0}, NULL) == TERN_OK);
    TT_REQUIRE(tern_flow_send_msg(d.a.c, d.flow, d.now, NULL, 0,
                                  &(tern_msg_opts){-1, 0, TERN_MSG_DEPENDS, kid}, NULL) == TERN_OK);
    TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, NULL, 0, -1) == TERN_OK); /* needs nothing */
    tick(&d, 400);
    lost(d.a.c, &k0, d.now);
    TT_CHECK_EQ_U64(d.a.c->st.msgs_dropped_dep, 2);
    TT_CHECK(f->head != NULL && f->head == f->tail && f->head->len == 0);
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_ALL), 0);
    TT_CHECK(f->head == NULL);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.prog.given_up_messages, 10);
    duo_free(&d); /* no second free */
}

/* The backlog the encoder feedback samples (tern__target_unsent) is the flow's count of bytes
 * not yet cut, kept as messages are queued, cut, flushed and given up, not a walk over the
 * queue (thousands of small messages made every sample cost as many steps). */
static uint64_t walk_uncut(const tern__sflow *f)
{
    uint64_t n = 0;
    for (const tern__msg *m = f->head; m; m = m->next)
        n += m->len - m->cut;
    return n;
}

static void test_unsent_counter(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 300, 0);
    tern__sflow *f = tern__sflow_find(d.a.c, d.flow);
    pkt k0, k1;
    TT_REQUIRE(msg(&d, 1, 100, TERN_MSG_KEYFRAME, 0, NULL) == TERN_OK);
    TT_REQUIRE(msg(&d, 2, 3000, TERN_MSG_GOP, 0, NULL) == TERN_OK);
    for (int i = 0; i < 2000; i++)
        TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, NULL, 0, -1) == TERN_OK);
    TT_REQUIRE(msg(&d, 3, 50, 0, 0, NULL) == TERN_OK);
    TT_CHECK_EQ_U64(f->uncut_bytes, 3150);
    TT_CHECK_EQ_U64(tern__target_unsent(d.a.c), 3150);
    TT_REQUIRE(build(d.a.c, d.now, &k0, 0)); /* the keyframe and a part of 2 */
    TT_CHECK(f->uncut_bytes < 3050 && f->uncut_bytes > 50);
    TT_CHECK_EQ_U64(f->uncut_bytes, walk_uncut(f));
    TT_CHECK_EQ_U64(tern__target_unsent(d.a.c), f->uncut_bytes);
    TT_REQUIRE(build(d.a.c, d.now, &k1, 0)); /* more of 2 */
    TT_CHECK_EQ_U64(f->uncut_bytes, walk_uncut(f));
    /* the keyframe given up: 2 (partly cut) dropped, its rest no longer counts */
    tick(&d, 300);
    lost(d.a.c, &k0, d.now);
    TT_CHECK_EQ_U64(f->uncut_bytes, walk_uncut(f));
    TT_CHECK_EQ_U64(f->uncut_bytes, 50);
    /* a flush leaves nothing; what the loss put in the retransmission queue still counts */
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_UNSENT), 50);
    TT_CHECK_EQ_U64(f->uncut_bytes, 0);
    TT_CHECK_EQ_U64(walk_uncut(f), 0);
    TT_CHECK_EQ_U64(tern__target_unsent(d.a.c),
                    (uint64_t)f->lost_n * tern__conn_max_payload(d.a.c));
    duo_free(&d);
}

/* FLOW_FORWARD never lands inside a message still being delivered: the base stops inside B
 * (its first fragments acknowledged, its last in flight) when A before it is given up; the
 * forward point is B's BEGIN, so the receiver keeps B's head and delivers B when its last
 * fragment comes (it dropped the head, and held the orphan tail for good on a flow without
 * deadlines). Fragments of a message given up that are acknowledged later still need one. */
static void test_forward_mid_message(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_UNRELIABLE, 0, 0);
    pkt ka, kb[3], k;
    uint8_t buf[3000];
    memset(buf, 2, sizeof(buf));
    TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, buf, 100, -1) == TERN_OK);
    TT_REQUIRE(build(d.a.c, d.now, &ka, 0)); /* A: lost */
    TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, buf, 3000, -1) == TERN_OK);
    for (int i = 0; i < 3; i++) TT_REQUIRE(build(d.a.c, d.now, &kb[i], 0)); /* 2+2+1 */
    TT_REQUIRE(take(d.b.c, &kb[0]) == TERN_OK);
    TT_REQUIRE(take(d.b.c, &kb[1]) == TERN_OK);
    acked(d.a.c, &kb[0]);
    acked(d.a.c, &kb[1]);
    lost(d.a.c, &ka, d.now); /* A given up: the base moves to B's last fragment */
    tern__sflow *f = tern__sflow_find(d.a.c, d.flow);
    TT_CHECK_EQ_U64(f->base, f->next_fsn - 1);
    TT_REQUIRE(build(d.a.c, d.now, &k, 1));
    TT_REQUIRE(take(d.b.c, &k) == TERN_OK);
    TT_CHECK_EQ_U64(tern__rflow_find(d.b.c, d.flow)->base, 1); /* B's BEGIN */
    TT_REQUIRE(take(d.b.c, &kb[2]) == TERN_OK);
    acked(d.a.c, &kb[2]);
    TT_CHECK_EQ_U64(d.delivered, 1);
    TT_CHECK_EQ_U64(d.last_len, 3000);
    duo_free(&d);

    /* a message given up whose last fragment is acknowledged after a FLOW_FORWARD went */
    duo_init(&d, TERN_FLOW_UNRELIABLE, 0, 0);
    f = tern__sflow_find(d.a.c, d.flow);
    TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, buf, 2000, -1) == TERN_OK);
    TT_REQUIRE(build(d.a.c, d.now, &kb[0], 0));
    TT_REQUIRE(build(d.a.c, d.now, &kb[1], 0));
    lost(d.a.c, &kb[0], d.now); /* the head given up: FLOW_FORWARD to 1 */
    TT_REQUIRE(build(d.a.c, d.now, &k, 1));
    TT_REQUIRE(take(d.b.c, &k) == TERN_OK);
    TT_REQUIRE(take(d.b.c, &kb[1]) == TERN_OK); /* the tail arrives: an orphan */
    acked(d.a.c, &kb[1]);
    TT_CHECK_EQ_U64(f->base, f->next_fsn);
    TT_REQUIRE(build(d.a.c, d.now, &k, 1)); /* a second FLOW_FORWARD, past the tail */
    TT_REQUIRE(take(d.b.c, &k) == TERN_OK);
    TT_CHECK_EQ_U64(tern__rflow_find(d.b.c, d.flow)->base, f->next_fsn);
    TT_REQUIRE(tern_flow_send(d.a.c, d.flow, d.now, buf, 10, -1) == TERN_OK);
    TT_REQUIRE(build(d.a.c, d.now, &k, 0));
    TT_REQUIRE(take(d.b.c, &k) == TERN_OK);
    TT_CHECK_EQ_U64(d.delivered, 1); /* the flow moves on */
    duo_free(&d);
}

/* Random sequences of the sender's calls (messages of any size, 0 included, with random
 * dependencies; flushes; empty messages) and packet fates (delivered and acknowledged, lost,
 * delivered but declared lost, acknowledged late), on every reliability, with and without a
 * deadline: the receiver never sees a protocol violation from this honest sender, the backlog
 * count matches the queue, and once every packet is settled the flow drains: nothing queued,
 * the receiver's base at the sender's, no memory left (the rig checks frees). */
static void test_random_sequences(void)
{
    tt_rng r;
    tt_rng_seed(&r, tt_seed());
    static const int rels[3] = {TERN_FLOW_RELIABLE, TERN_FLOW_PARTIAL, TERN_FLOW_UNRELIABLE};
    for (int run = 0; run < 30; run++) {
        duo d;
        duo_init(&d, rels[run % 3], tt_rng_chance(&r, 0.5) ? 300 : 0, 0);
        tern__sflow *f = tern__sflow_find(d.a.c, d.flow);
        static pkt held[8];
        int used[8] = {0};
        uint8_t buf[3000];
        memset(buf, 5, sizeof(buf));
        for (int step = 0; step < 250; step++) {
            unsigned i = (unsigned)tt_rng_below(&r, 8);
            switch (tt_rng_below(&r, 8)) {
            case 0:
            case 1: {
                static const uint32_t fl[5] = {0, TERN_MSG_KEYFRAME, TERN_MSG_GOP, TERN_MSG_DEPENDS,
                                               TERN_MSG_GOP | TERN_MSG_DEPENDS};
                uint64_t n = f->next_msg_id;
                tern_msg_opts o = {-1, 0, fl[tt_rng_below(&r, 5)], n ? n - 1 - tt_rng_below(&r, n < 4 ? n : 4) : 0};
                if (n == 0) o.flags &= ~(uint32_t)TERN_MSG_DEPENDS;
                (void)tern_flow_send_msg(d.a.c, d.flow, d.now, buf, (size_t)tt_rng_below(&r, 3001), &o,
                                         NULL);
                break;
            }
            case 2:
                if (!used[i] && build(d.a.c, d.now, &held[i], 0)) used[i] = 1;
                break;
            case 3:
                if (used[i]) {
                    unsigned fate = (unsigned)tt_rng_below(&r, 4);
                    if (fate != 1) TT_REQUIRE(take(d.b.c, &held[i]) == TERN_OK);
                    if (fate == 0 || fate == 3) acked(d.a.c, &held[i]);
                    if (fate == 1 || fate == 2) lost(d.a.c, &held[i], d.now);
                    if (fate == 3) lost(d.a.c, &held[i], d.now); /* late: changes nothing */
                    used[i] = 0;
                }
                break;
            case 4:
                tick(&d, tt_rng_below(&r, 120));
                break;
            case 5:
                if (tt_rng_chance(&r, 0.3))
                    (void)tern_flow_flush(d.a.c, d.flow, (int)tt_rng_below(&r, 2));
                break;
            case 6:
                exchange_control(&d);
                break;
            default:
                (void)tern_flow_send(d.a.c, d.flow, d.now, NULL, 0, -1);
                break;
            }
            TT_REQUIRE(f->uncut_bytes == walk_uncut(f));
        }
        /* settle: what is held arrives and is acknowledged, then the rest goes out loss-free */
        for (int i = 0; i < 8; i++)
            if (used[i]) {
                TT_REQUIRE(take(d.b.c, &held[i]) == TERN_OK);
                acked(d.a.c, &held[i]);
            }
        pkt k;
        for (int round = 0; round < 400; round++) {
            if (build(d.a.c, d.now, &k, 0)) {
                TT_REQUIRE(take(d.b.c, &k) == TERN_OK);
                acked(d.a.c, &k);
            }
            exchange_control(&d);
            tick(&d, 5);
        }
        tern__rflow *rf = tern__rflow_find(d.b.c, d.flow);
        TT_CHECK_EQ_U64(tern_flow_queued(d.a.c, d.flow), 0);
        TT_CHECK_EQ_U64(f->base, f->next_fsn);
        TT_CHECK(rf == NULL || rf->base == f->next_fsn);
        duo_free(&d);
    }
}

/* ---------------------------------------------------------------- flush */

static void test_flush(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 0, 0);
    pkt k0, k;
    send_one(&d, 1, TERN_MSG_KEYFRAME, 0, &k0, 0); /* in flight, 100 bytes */
    TT_REQUIRE(msg(&d, 2, 500, TERN_MSG_GOP, 0, NULL) == TERN_OK);
    TT_REQUIRE(msg(&d, 3, 700, 0, 0, NULL) == TERN_OK);
    TT_CHECK_EQ_U64(tern_flow_queued(d.a.c, d.flow), 1300);
    /* UNSENT: the two not begun */
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_UNSENT), 1200);
    TT_CHECK_EQ_U64(tern_flow_queued(d.a.c, d.flow), 100);
    TT_CHECK_EQ_U64(d.a.c->st.flushed_bytes, 1200);
    TT_CHECK(!build(d.a.c, d.now, &k, 0)); /* nothing left to send */
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_UNSENT), 0);
    /* ALL: the one in flight too; the receiver hears FLOW_FORWARD and the late copy is stale */
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_ALL), 100);
    TT_CHECK_EQ_U64(d.a.c->st.flushed_bytes, 1300);
    TT_CHECK_EQ_U64(tern_flow_queued(d.a.c, d.flow), 0);
    TT_REQUIRE(build(d.a.c, d.now, &k, 1));
    TT_CHECK_EQ_U64(k.frames[0], TERN__FRAME_FLOW_FORWARD);
    TT_CHECK_EQ_INT(take(d.b.c, &k), TERN_OK);
    TT_CHECK_EQ_INT(take(d.b.c, &k0), TERN_OK);
    TT_CHECK_EQ_U64(d.delivered, 0);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.prog.given_up_messages, 3);
    TT_CHECK_EQ_U64(d.kf_requests, 1); /* the group was flushed: the encoder restarts it */
    TT_CHECK_EQ_INT(msg(&d, 4, 10, TERN_MSG_GOP, 0, NULL), TERN_ERR_STATE);
    TT_CHECK_EQ_INT(msg(&d, 4, 10, TERN_MSG_KEYFRAME, 0, NULL), TERN_OK);
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, 2), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow + 2, TERN_FLUSH_ALL), TERN_ERR_NOT_FOUND);
    duo_free(&d);

    /* referenced messages come back undelivered, once each */
    duo_init(&d, TERN_FLOW_UNRELIABLE, 0, 0);
    d.a.ep->cb.on_flow_release = d_release;
    static const uint8_t ref[3][40];
    for (int i = 0; i < 3; i++)
        TT_REQUIRE(tern_flow_send_ref(d.a.c, d.flow, d.now, ref[i], sizeof(ref[i]), -1,
                                      (void *)&ref[i]) == TERN_OK);
    TT_REQUIRE(build(d.a.c, d.now, &k0, 0));
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_ALL), 120);
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.released, 3);
    TT_CHECK_EQ_U64(d.released_delivered, 0);
    acked(d.a.c, &k0); /* a late ACK changes nothing */
    tern__flow_events(d.a.c);
    TT_CHECK_EQ_U64(d.released, 3);
    duo_free(&d);

    /* RELIABLE: what is not begun may go, what is on the wire may not */
    duo_init(&d, TERN_FLOW_RELIABLE, 0, 0);
    send_one(&d, 1, 0, 0, &k0, 0);
    TT_REQUIRE(msg(&d, 2, 50, 0, 0, NULL) == TERN_OK);
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_ALL), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_flow_flush(d.a.c, d.flow, TERN_FLUSH_UNSENT), 50);
    TT_CHECK_EQ_U64(tern_flow_queued(d.a.c, d.flow), 100);
    duo_free(&d);
}

/* ---------------------------------------------------------------- API errors */

static void test_errors(void)
{
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 0, 0);
    uint64_t id = 99;
    TT_CHECK_EQ_INT(msg(&d, 0, 10, 8, 0, &id), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(msg(&d, 0, 10, TERN_MSG_KEYFRAME | TERN_MSG_GOP, 0, &id), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(msg(&d, 0, 10, TERN_MSG_DEPENDS, 0, &id), TERN_ERR_INVALID_ARG); /* later */
    TT_CHECK_EQ_U64(id, 99); /* untouched on error */
    TT_CHECK_EQ_INT(tern_flow_send_msg(d.a.c, d.flow, d.now, NULL, 0, NULL, &id), TERN_OK);
    TT_CHECK_EQ_U64(id, 0);
    TT_CHECK_EQ_INT(msg(&d, 0, 10, TERN_MSG_DEPENDS, 0, &id), TERN_OK);
    TT_CHECK_EQ_U64(id, 1);
    TT_CHECK_EQ_INT(msg(&d, 0, 10, TERN_MSG_DEPENDS, 2, &id), TERN_ERR_INVALID_ARG); /* itself */
    tern_msg_opts o = {8, 0, 0, 0};
    TT_CHECK_EQ_INT(tern_flow_send_msg(d.a.c, d.flow, d.now, (const uint8_t *)"x", 1, &o, NULL),
                    TERN_ERR_INVALID_ARG); /* priority 8 */
    TT_CHECK_EQ_INT(
        tern_flow_send_msg(d.a.c, d.flow + 2, d.now, (const uint8_t *)"x", 1, NULL, NULL),
        TERN_ERR_NOT_FOUND);
    /* dependencies need an ordered message flow */
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.ordered = 0;
    fc.reliability = TERN_FLOW_PARTIAL;
    uint64_t uf, sf;
    TT_REQUIRE(tern_flow_open(d.a.c, &fc, &uf) == TERN_OK);
    tern_msg_opts dep = {-1, 0, TERN_MSG_GOP, 0};
    TT_CHECK_EQ_INT(tern_flow_send_msg(d.a.c, uf, d.now, (const uint8_t *)"x", 1, &dep, NULL),
                    TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_flow_send_msg(d.a.c, uf, d.now, (const uint8_t *)"x", 1, NULL, &id),
                    TERN_OK);
    tern_flow_config_default(&fc);
    fc.stream = 1;
    TT_REQUIRE(tern_flow_open(d.a.c, &fc, &sf) == TERN_OK);
    tern_msg_opts key = {-1, 0, TERN_MSG_KEYFRAME, 0};
    TT_CHECK_EQ_INT(tern_flow_send_msg(d.a.c, sf, d.now, (const uint8_t *)"x", 1, &key, NULL),
                    TERN_ERR_INVALID_ARG);
    /* unordered and stream flows never carry DEP fields */
    TT_CHECK(!tern__sflow_find(d.a.c, uf)->tag_ids);
    /* a per-message deadline overrides the flow's */
    tern_msg_opts dl = {-1, 250, 0, 0};
    TT_CHECK_EQ_INT(tern_flow_send_msg(d.a.c, d.flow, d.now, (const uint8_t *)"x", 1, &dl, NULL),
                    TERN_OK);
    TT_CHECK_EQ_U64(tern__sflow_find(d.a.c, d.flow)->tail->deadline, d.now + 250 * MS);
    duo_free(&d);
}

/* ---------------------------------------------------------------- hostile peer */

/* A FLOW_DATA frame of flow 0 at fsn with flags and DEP fields v (when DEP), 1 byte of data. */
static size_t put_frame(uint8_t *buf, uint64_t fsn, uint64_t flags, const uint64_t v[3])
{
    uint8_t *p = buf, *end = buf + 64;
    p = tern__put_varint(p, end, TERN__FRAME_FLOW_DATA);
    p = tern__put_varint(p, end, 0);
    p = tern__put_varint(p, end, fsn);
    p = tern__put_varint(p, end, flags);
    if (flags & TERN__FD_DEP)
        for (int i = 0; i < 3; i++) p = tern__put_varint(p, end, v[i]);
    p = tern__put_varint(p, end, 1);
    *p++ = 0x5a;
    return (size_t)(p - buf);
}

static int feed(duo *d, uint64_t fsn, uint64_t flags, uint64_t mid, uint64_t dist, uint64_t grp)
{
    uint8_t buf[64];
    uint64_t v[3] = {mid, dist, grp};
    size_t n = put_frame(buf, fsn, flags, v);
    const uint8_t *q = buf + 1;
    return tern__flow_on_frame(d->b.c, TERN__FRAME_FLOW_DATA, &q, buf + n);
}

static void test_hostile(void)
{
    const uint64_t ok = TERN__FD_BEGIN | TERN__FD_END | TERN__FD_ORDERED | TERN__FD_DEP;
    const uint64_t huge = (uint64_t)1 << 61;
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 0, 0);
    /* malformed DEP fields */
    TT_CHECK_EQ_INT(feed(&d, 0, ok & ~(uint64_t)TERN__FD_BEGIN, 5, 0, 0), TERN_ERR_PROTOCOL);
    TT_CHECK_EQ_INT(feed(&d, 0, ok & ~(uint64_t)TERN__FD_ORDERED, 5, 0, 0), TERN_ERR_PROTOCOL);
    TT_CHECK_EQ_INT(feed(&d, 0, ok, 5, 6, 0), TERN_ERR_PROTOCOL);  /* depends before 0 */
    TT_CHECK_EQ_INT(feed(&d, 0, ok, 5, 0, 7), TERN_ERR_PROTOCOL);  /* group before 0 */
    TT_CHECK_EQ_INT(feed(&d, 0, ok | 64, 5, 0, 0), TERN_ERR_PROTOCOL);
    uint8_t trunc[64];
    uint64_t v[3] = {huge, 1, 0};
    size_t n = put_frame(trunc, 0, ok, v);
    const uint8_t *q = trunc + 1;
    TT_CHECK_EQ_INT(tern__flow_on_frame(d.b.c, TERN__FRAME_FLOW_DATA, &q, trunc + 12),
                    TERN_ERR_PROTOCOL);
    (void)n;
    /* a KEYFRAME_REQUEST naming a flow the server could not have opened is a violation */
    uint8_t kr[8] = {TERN__FRAME_KEYFRAME_REQUEST, 0, 0};
    q = kr + 1;
    TT_CHECK_EQ_INT(tern__flow_on_frame(d.b.c, TERN__FRAME_KEYFRAME_REQUEST, &q, kr + 3),
                    TERN_ERR_PROTOCOL);
    kr[1] = 1; /* one of its own, not open (closed): ignored */
    q = kr + 1;
    TT_CHECK_EQ_INT(tern__flow_on_frame(d.b.c, TERN__FRAME_KEYFRAME_REQUEST, &q, kr + 3), TERN_OK);
    /* one for a message the sender never numbered is made up: a violation, not a request */
    kr[1] = (uint8_t)d.flow;
    q = kr + 1;
    TT_CHECK_EQ_INT(tern__flow_on_frame(d.a.c, TERN__FRAME_KEYFRAME_REQUEST, &q, kr + 3),
                    TERN_ERR_PROTOCOL);
    TT_REQUIRE(msg(&d, 1, 10, TERN_MSG_KEYFRAME, 0, NULL) == TERN_OK); /* message 0 */
    q = kr + 1;
    TT_CHECK_EQ_INT(tern__flow_on_frame(d.a.c, TERN__FRAME_KEYFRAME_REQUEST, &q, kr + 3), TERN_OK);
    kr[2] = 1;
    q = kr + 1;
    TT_CHECK_EQ_INT(tern__flow_on_frame(d.a.c, TERN__FRAME_KEYFRAME_REQUEST, &q, kr + 3),
                    TERN_ERR_PROTOCOL);
    TT_CHECK_EQ_U64(d.a.c->st.keyframe_requests_received, 1);
    /* IDs leaping by 2^61 and dependencies from far away, one message after another: the state
     * stays the fixed window and the memory does not grow */
    TT_CHECK_EQ_INT(feed(&d, 0, ok, 0, 0, 1), TERN_OK);
    size_t mem = tern_conn_memory(d.b.c);
    uint64_t mid = 0, t0 = tt_wall_ns();
    for (uint64_t i = 1; i <= 3000; i++) {
        mid += i % 3 ? huge / 4096 : 1;
        TT_REQUIRE(feed(&d, i, ok, mid, i % 2 ? mid : 0, i % 5 ? mid + 1 : 1) == TERN_OK);
    }
    TT_CHECK_EQ_U64(tern_conn_memory(d.b.c), mem);
    TT_CHECK_MSG(tt_wall_ns() - t0 < 500 * MS, "3000 leaps took %llu ns",
                 (unsigned long long)(tt_wall_ns() - t0));
    TT_CHECK(d.delivered > 0 && d.b.c->st.msgs_skipped_dep > 0);
    /* a skip asks for a keyframe (the keyframes above answered the earlier requests); a second
     * skip within the RTT does not ask again */
    pkt k;
    build(d.b.c, d.now, &k, 1); /* what was owed (MAX_FLOW: the base moved) */
    uint64_t sent = d.b.c->st.keyframe_requests_sent;
    TT_CHECK(!build(d.b.c, d.now, &k, 1));
    TT_REQUIRE(feed(&d, 3001, ok, mid + 5, 0, 0) == TERN_OK);      /* after a gap of 4 */
    TT_REQUIRE(feed(&d, 3002, ok, mid + 6, 1, 0) == TERN_OK);      /* needs mid + 5: fine */
    TT_REQUIRE(feed(&d, 3003, ok, mid + 7, 5, 0) == TERN_OK);      /* needs mid + 2: skipped */
    TT_REQUIRE(build(d.b.c, d.now, &k, 1));
    TT_CHECK_EQ_U64(d.b.c->st.keyframe_requests_sent, sent + 1);
    TT_REQUIRE(feed(&d, 3004, ok, mid + 8, 0, 3) == TERN_OK);      /* group from mid + 6 */
    TT_CHECK(!build(d.b.c, d.now, &k, 1));
    /* IDs going backwards: a violation */
    TT_CHECK_EQ_INT(feed(&d, 3005, ok, mid + 7, 0, 0), TERN_ERR_PROTOCOL);
    duo_free(&d);
}

/* A fragment rebuilt without its DEP fields (by a repair layer that does not carry them) takes
 * the ID it fills: as many messages without an ID as IDs skipped mean nothing was lost. */
static void test_untagged_between(void)
{
    const uint64_t ok = TERN__FD_BEGIN | TERN__FD_END | TERN__FD_ORDERED | TERN__FD_DEP;
    const uint64_t plain = TERN__FD_BEGIN | TERN__FD_END | TERN__FD_ORDERED;
    duo d;
    duo_init(&d, TERN_FLOW_PARTIAL, 0, 0);
    TT_REQUIRE(feed(&d, 0, ok, 0, 0, 1) == TERN_OK);     /* keyframe 0 */
    TT_REQUIRE(feed(&d, 1, plain, 0, 0, 0) == TERN_OK);  /* 1, rebuilt without its ID */
    TT_REQUIRE(feed(&d, 2, ok, 2, 0, 3) == TERN_OK);     /* 2: group from 0 */
    TT_CHECK_EQ_U64(d.delivered, 3);
    TT_CHECK_EQ_U64(d.b.c->st.msgs_skipped_dep, 0);
    TT_REQUIRE(feed(&d, 3, plain, 0, 0, 0) == TERN_OK);  /* 3 */
    TT_REQUIRE(feed(&d, 4, ok, 5, 0, 6) == TERN_OK);     /* 5: 4 is missing, group from 0 */
    TT_CHECK_EQ_U64(d.delivered, 4);
    TT_CHECK_EQ_U64(d.b.c->st.msgs_skipped_dep, 1);
    TT_CHECK_EQ_U64(d.skipped_first, 5);
    /* a fragment whose first part came with DEP, completed by a whole copy without it (rebuilt
     * from repair): one fragment, its DEP fields kept. Keyframe 6, 2 bytes. */
    uint8_t fr[64], *p = fr, *end = fr + sizeof(fr);
    p = tern__put_varint(p, end, TERN__FRAME_FLOW_DATA_PART);
    p = tern__put_varint(p, end, 0);
    p = tern__put_varint(p, end, 5);
    p = tern__put_varint(p, end, ok);
    for (int i = 0; i < 3; i++) p = tern__put_varint(p, end, i == 0 ? 6 : i == 2 ? 1 : 0);
    p = tern__put_varint(p, end, 2); /* frag_len */
    p = tern__put_varint(p, end, 0); /* offset */
    p = tern__put_varint(p, end, 1);
    *p++ = 0x5a;
    const uint8_t *q = fr + 1;
    TT_REQUIRE(tern__flow_on_frame(d.b.c, TERN__FRAME_FLOW_DATA_PART, &q, p) == TERN_OK);
    p = fr;
    p = tern__put_varint(p, end, TERN__FRAME_FLOW_DATA);
    p = tern__put_varint(p, end, 0);
    p = tern__put_varint(p, end, 5);
    p = tern__put_varint(p, end, plain);
    p = tern__put_varint(p, end, 2);
    *p++ = 0x5a;
    *p++ = 0x5a;
    q = fr + 1;
    TT_CHECK_EQ_INT(tern__flow_on_frame(d.b.c, TERN__FRAME_FLOW_DATA, &q, p), TERN_OK);
    TT_CHECK_EQ_U64(d.delivered, 5);
    TT_CHECK_EQ_U64(tern__rflow_find(d.b.c, 0)->next_mid, 7); /* taken as message 6 */
    duo_free(&d);
}

/* Forward error correction rebuilds a lost fragment with its DEP fields (its symbol carries
 * them): the rebuilt message is checked and numbered like any other. */
static void test_fec_rebuilt(void)
{
    duo d;
    duo_fec = TERN_FEC_FIXED;
    duo_init(&d, TERN_FLOW_PARTIAL, 0, 0);
    duo_fec = TERN_FEC_OFF;
    core_rig sink; /* takes the frames the network loses */
    core_rig_init(&sink, NULL);
    sink.c->is_server = 1;
    sink.c->flows.peer_next = 0;
    TT_REQUIRE(msg(&d, 1, 100, TERN_MSG_KEYFRAME, 0, NULL) == TERN_OK);
    TT_REQUIRE(msg(&d, 2, 100, TERN_MSG_GOP, 0, NULL) == TERN_OK);
    TT_REQUIRE(msg(&d, 3, 100, TERN_MSG_DEPENDS, 1, NULL) == TERN_OK);
    pkt k;
    int repairs = 0;
    for (int n = 0; n < 8 && build(d.a.c, d.now, &k, 0); n++) {
        const uint8_t *q = k.frames, *end = k.frames + k.len;
        while (q < end) {
            uint64_t type, flow, fsn;
            q = tern__get_varint(q, end, &type);
            const uint8_t *body = q;
            TT_REQUIRE(tern__get_varint(tern__get_varint(body, end, &flow), end, &fsn) != NULL);
            repairs += type == TERN__FRAME_REPAIR;
            tern_conn *to = type == TERN__FRAME_FLOW_DATA && fsn == 1 ? sink.c : d.b.c;
            TT_REQUIRE(tern__flow_on_frame(to, type, &q, end) == TERN_OK);
        }
    }
    TT_CHECK(repairs >= 1);
    TT_CHECK_EQ_U64(d.b.c->st.fec_recovered, 1);
    TT_CHECK_EQ_U64(d.delivered, 3);
    TT_CHECK_EQ_U64(d.b.c->st.msgs_skipped_dep, 0);
    tern__rflow *rf = tern__rflow_find(d.b.c, d.flow);
    TT_CHECK_EQ_U64(rf->next_mid, 3);
    TT_CHECK(!rf->untagged); /* message 1 came back with its ID */
    core_rig_free(&sink);
    duo_free(&d);
}

/* ---------------------------------------------------------------- simulated video */

#define FPS_MS 40     /* 25 frames per second */
#define GOP 50
#define FRAMES 250    /* 10 s */

typedef struct video {
    sim *s;
    tnet_node srv, cli;
    tern_conn *sc;
    uint64_t flow;
    uint32_t next_frame;
    int force_key;
    uint32_t gop_start[FRAMES]; /* frame index -> the index of its group's keyframe */
    uint8_t got[FRAMES];
    uint64_t kf_requests, skipped_cb, refused, keyframes;
    uint64_t bad_order, bad_dep;
    int64_t last_got;
} video;

static video *vid;

/* The payload: frame index (4 bytes), then filler. */
static void v_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d, size_t len)
{
    (void)n, (void)c, (void)flow;
    if (len < 4) return;
    uint32_t i = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    if (i >= FRAMES) return;
    if ((int64_t)i <= vid->last_got) vid->bad_order++;
    vid->last_got = i;
    /* a frame is delivered only with its whole group before it */
    for (uint32_t j = vid->gop_start[i]; j < i; j++)
        if (!vid->got[j]) vid->bad_dep++;
    vid->got[i] = 1;
}

static void v_skipped(tern_conn *c, uint64_t flow, uint64_t first, uint64_t count, void *u)
{
    (void)c, (void)flow, (void)first, (void)count, (void)u;
    vid->skipped_cb += count;
}

static void v_kf(tern_conn *c, uint64_t flow, void *u)
{
    (void)c, (void)flow, (void)u;
    vid->kf_requests++;
    vid->force_key = 1;
}

/* The encoder: one frame now, a keyframe every GOP frames or when asked (or when a group
 * member is refused because the group is broken). */
static void v_frame(video *v)
{
    static uint8_t buf[12000];
    uint32_t i = v->next_frame++;
    int key = v->force_key || i % GOP == 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t len = key ? 12000 : 2500;
        memset(buf, (int)i, len);
        buf[0] = (uint8_t)i, buf[1] = (uint8_t)(i >> 8), buf[2] = 0, buf[3] = 0;
        tern_msg_opts o = {-1, 0, key ? TERN_MSG_KEYFRAME : TERN_MSG_GOP, 0};
        v->gop_start[i] = key ? i : v->gop_start[i - 1];
        int rc = tern_flow_send_msg(v->sc, v->flow, sim_now(v->s), buf, len, &o, NULL);
        if (rc == TERN_ERR_STATE && !key) {
            v->refused++;
            key = 1;
            continue;
        }
        TT_CHECK_MSG(rc == TERN_OK, "frame %u: %s", i, tern_strerror(rc));
        break;
    }
    if (key) {
        v->keyframes++;
        v->force_key = 0;
    }
}

static void test_sim_video(void)
{
    video v;
    memset(&v, 0, sizeof(v));
    v.last_got = -1;
    vid = &v;
    tern_addr sa, ca;
    tern_addr_ipv4(&sa, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&ca, 198, 51, 100, 7, 50000);
    v.s = sim_new(tt_seed());
    TT_REQUIRE(v.s != NULL);
    tnet_node_init(&v.srv, v.s, &sa, 1, NULL, 1);
    tnet_node_init(&v.cli, v.s, &ca, 0, NULL, 2);
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 150 * MS; /* 300 ms round trip */
    p.rate_bps = 4000000;
    p.queue_bytes = 150000;
    p.overhead_bytes = 28;
    p.loss = 0.01;
    sim_link *down = sim_link_set_both(v.s, &sa, &ca, &p);
    TT_REQUIRE(down != NULL);
    /* the video's direction loses 1%; the way back is clean, so that the one KEYFRAME_REQUEST
     * this test looks for is not lost (a lost one is sent again: test_keyframe_rate) */
    p.loss = 0;
    TT_REQUIRE(sim_link_set(v.s, &ca, &sa, &p) != NULL);
    tern_conn *cc = tnet_connect(v.s, &v.cli, &v.srv, NULL);
    for (int i = 0; i < 100 && !(v.cli.established && v.srv.conn != NULL); i++)
        tnet_run_ms(v.s, 50);
    TT_REQUIRE(v.cli.established && v.srv.conn != NULL);
    (void)cc;
    /* the server sends video to the client */
    v.sc = v.srv.conn;
    v.srv.ep->cb.on_keyframe_request = v_kf;
    v.cli.ep->cb.on_msg_skipped = v_skipped;
    v.cli.on_message = v_message;
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.reliability = TERN_FLOW_PARTIAL;
    fc.deadline_ms = 600; /* two round trips: a loss is detected too late to repair it */
    TT_REQUIRE(tern_flow_open(v.sc, &fc, &v.flow) == TERN_OK);
    /* a second of small messages first, so the server has measured the round trip */
    uint64_t warm;
    TT_REQUIRE(tern_flow_open(v.sc, NULL, &warm) == TERN_OK);
    for (int i = 0; i < 10; i++) {
        TT_REQUIRE(tern_flow_send(v.sc, warm, sim_now(v.s), (const uint8_t *)"warm", 4, -1) == 0);
        tnet_run_ms(v.s, 100);
    }
    TT_REQUIRE(v.sc->rec.rtt.has_sample);
    /* frame 70 (a P frame in the second group, referenced by the rest of it) never arrives:
     * the link drops everything for the 20 ms it takes to leave */
    uint64_t start = sim_now(v.s);
    uint64_t lost_at = start + 70 * FPS_MS * MS;
    TT_REQUIRE(sim_link_blackhole(down, lost_at, lost_at + 20 * MS) == SIM_OK);
    while (v.next_frame < FRAMES) {
        v_frame(&v);
        tnet_run_ms(v.s, FPS_MS);
    }
    tnet_run_ms(v.s, 2000);
    tern_conn_stats ss, cs;
    tern_conn_get_stats(v.sc, &ss);
    tern_conn_get_stats(v.cli.conn, &cs);
    /* what arrived, the first keyframe after frame 70 that arrived, and the most frames of one
     * group after it (random loss may break the first one too) */
    uint64_t got = 0, key = 0, best_group = 0;
    for (uint32_t i = 0; i < FRAMES; i++) {
        got += v.got[i];
        if (i > 70 && key == 0 && v.got[i] && v.gop_start[i] == i) key = i;
        if (i > 70 && v.got[i] && v.gop_start[i] == i) {
            uint64_t n = 0;
            for (uint32_t j = i; j < FRAMES && v.gop_start[j] == i; j++) n += v.got[j];
            if (n > best_group) best_group = n;
        }
    }
    TT_CHECK_EQ_U64(v.bad_order, 0);
    TT_CHECK_EQ_U64(v.bad_dep, 0);  /* nothing was delivered without its references */
    TT_CHECK(!v.got[70]);            /* the reference frame was lost for good */
    TT_CHECK(v.gop_start[71] == 71 || !v.got[71]); /* what needed it was not delivered */
    TT_CHECK(ss.msgs_dropped_dep > 0 && cs.msgs_skipped_dep > 0);
    TT_CHECK(v.skipped_cb == cs.msgs_skipped_dep);
    /* the receiver asked, the request reached the sender, the encoder heard it */
    TT_CHECK(cs.keyframe_requests_sent >= 1 && ss.keyframe_requests_received >= 1);
    TT_CHECK(v.kf_requests >= 1);
    /* a new group started: its keyframe arrived within a second of the loss; later groups
     * arrive with their frames */
    TT_CHECK_MSG(key > 70 && key < 70 + 1000 / FPS_MS, "first keyframe after the loss: %llu",
                 (unsigned long long)key);
    TT_CHECK_MSG(best_group >= 20, "frames of a group after the loss: %llu",
                 (unsigned long long)best_group);
    /* random loss (1%) breaks a group now and then too: with a deadline of two round trips a
     * lost packet is never repaired in time (that is what FEC is for); most frames arrive */
    TT_CHECK_MSG(got > FRAMES / 2, "frames delivered: %llu", (unsigned long long)got);
    printf("video: %llu/%d frames, dropped %llu at the sender, skipped %llu at the receiver, "
           "keyframe requests %llu (sent %llu, received %llu), refused %llu, keyframes %llu",
           (unsigned long long)got, FRAMES, (unsigned long long)ss.msgs_dropped_dep,
           (unsigned long long)cs.msgs_skipped_dep, (unsigned long long)v.kf_requests,
           (unsigned long long)cs.keyframe_requests_sent,
           (unsigned long long)ss.keyframe_requests_received, (unsigned long long)v.refused,
           (unsigned long long)v.keyframes);
    printf("\n");
    tnet_node_free(&v.cli, v.s);
    tnet_node_free(&v.srv, v.s);
    sim_del(v.s);
}

int main(int argc, char **argv)
{
    static const tt_case cases[] = {
        TT_CASE(test_wire),
        TT_CASE(test_cascade_and_skip),
        TT_CASE(test_cascade_retransmission),
        TT_CASE(test_keyframe_rate),
        TT_CASE(test_cascade_partly_cut),
        TT_CASE(test_empty_messages),
        TT_CASE(test_keyframe_request_held),
        TT_CASE(test_keyframe_request_again),
        TT_CASE(test_unsent_counter),
        TT_CASE(test_forward_mid_message),
        TT_CASE(test_random_sequences),
        TT_CASE(test_flush),
        TT_CASE(test_errors),
        TT_CASE(test_hostile),
        TT_CASE(test_untagged_between),
        TT_CASE(test_fec_rebuilt),
        TT_CASE(test_sim_video),
        {NULL, NULL},
    };
    return tt_main(argc, argv, cases);
}
