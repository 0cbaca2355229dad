/*
 * Forward error correction (src/core/fec.c, docs/protocol.md 6.4), white box: the erasure code
 * rebuilds every loss pattern of small groups that leaves k symbols (and refuses the others),
 * one repair is the XOR of the sources, the adaptive repair count follows loss and bursts;
 * REPAIR and REPAIRED frames between two bare connections rebuild a lost fragment (repair after
 * the data, and before it), the sender counts it acknowledged; malformed frames are protocol
 * errors; what a peer can make us hold for repair stays under its budget (fec_dropped).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fec.h"
#include "core/flow_int.h"
#include "support/core_rig.h"

/* ---------------------------------------------------------------- codec */

static uint8_t *scratch_for(unsigned k, unsigned m)
{
    uint8_t *s = malloc(tern__fec_scratch_size(k, m));
    TT_REQUIRE(s != NULL);
    return s;
}

/* Every pattern of lost symbols (a bit mask over the k + m) for a group: those that leave k
 * rebuild the sources exactly; those that leave fewer say TERN_ERR_AGAIN. */
static void codec_all_patterns(unsigned k, unsigned m, size_t len)
{
    uint8_t src[TERN__FEC_MAX_K][64], rep[TERN__FEC_MAX_M][64], work[TERN__FEC_MAX_K][64];
    uint8_t *sp[TERN__FEC_MAX_K], *rp[TERN__FEC_MAX_M], *wp[TERN__FEC_MAX_K];
    for (unsigned j = 0; j < k; j++) {
        for (size_t i = 0; i < len; i++) src[j][i] = (uint8_t)(rand() & 0xff);
        sp[j] = src[j];
        wp[j] = work[j];
    }
    for (unsigned i = 0; i < m; i++) rp[i] = rep[i];
    uint8_t *scratch = scratch_for(k, m);
    TT_REQUIRE(tern__fec_encode(k, m, len, sp, rp, scratch) == TERN_OK);
    unsigned n = k + m, bad = 0, rebuilt = 0;
    for (uint32_t lost = 0; lost < (1u << n); lost++) {
        uint8_t have[TERN__FEC_MAX_K], rep_have[TERN__FEC_MAX_M];
        unsigned nlost = (unsigned)__builtin_popcount(lost);
        for (unsigned j = 0; j < k; j++) {
            have[j] = !(lost & (1u << j));
            if (have[j]) memcpy(work[j], src[j], len);
            else memset(work[j], 0xee, len);
        }
        for (unsigned i = 0; i < m; i++) rep_have[i] = !(lost & (1u << (k + i)));
        int rc = tern__fec_decode(k, m, len, wp, have, rp, rep_have, scratch);
        unsigned src_lost = (unsigned)__builtin_popcount(lost & ((1u << k) - 1));
        unsigned rep_left = m - (nlost - src_lost);
        if (src_lost > rep_left) {
            if (rc != TERN_ERR_AGAIN) bad++;
            continue;
        }
        if (rc != TERN_OK) {
            bad++;
            continue;
        }
        for (unsigned j = 0; j < k; j++)
            if (memcmp(work[j], src[j], len) != 0) bad++;
        rebuilt++;
    }
    TT_CHECK_MSG(bad == 0, "k %u m %u: %u bad of %u patterns", k, m, bad, 1u << n);
    TT_CHECK(rebuilt > 0);
    free(scratch);
}

static void test_codec_every_loss_pattern(void)
{
    static const unsigned ks[] = {1, 2, 3, 4, 5, 8};
    for (size_t a = 0; a < sizeof(ks) / sizeof(ks[0]); a++)
        for (unsigned m = 1; m <= 4; m++) codec_all_patterns(ks[a], m, 1 + (ks[a] * 7 + m) % 61);
    /* the largest group with a few repair: one pattern per count of lost sources */
    codec_all_patterns(12, 3, 40);
}

/* Groups of up to 64 with many repair: random loss patterns that leave k symbols rebuild. */
static void test_codec_large_groups(void)
{
    static uint8_t src[64][50], rep[64][50], work[64][50];
    uint8_t *sp[64], *rp[64], *wp[64];
    static const unsigned ms[] = {2, 7, 64};
    for (size_t a = 0; a < 3; a++) {
        unsigned k = 64, m = ms[a], bad = 0;
        for (unsigned j = 0; j < k; j++) {
            for (size_t i = 0; i < sizeof(src[j]); i++) src[j][i] = (uint8_t)rand();
            sp[j] = src[j];
            wp[j] = work[j];
        }
        for (unsigned i = 0; i < m; i++) rp[i] = rep[i];
        uint8_t *scratch = scratch_for(k, m);
        TT_REQUIRE(tern__fec_encode(k, m, sizeof(src[0]), sp, rp, scratch) == TERN_OK);
        for (int trial = 0; trial < 200; trial++) {
            uint8_t have[64], rep_have[64];
            unsigned lost = 0, reps = 0;
            for (unsigned j = 0; j < k; j++) {
                have[j] = (uint8_t)(rand() % 4 != 0);
                lost += !have[j];
                memcpy(work[j], src[j], sizeof(src[j]));
                if (!have[j]) memset(work[j], 0xee, sizeof(work[j]));
            }
            for (unsigned i = 0; i < m; i++) reps += rep_have[i] = (uint8_t)(rand() % 3 != 0);
            int rc = tern__fec_decode(k, m, sizeof(src[0]), wp, have, rp, rep_have, scratch);
            if (lost > reps) {
                bad += rc != TERN_ERR_AGAIN;
                continue;
            }
            bad += rc != TERN_OK;
            for (unsigned j = 0; j < k; j++) bad += memcmp(work[j], src[j], sizeof(src[j])) != 0;
        }
        TT_CHECK_MSG(bad == 0, "k 64 m %u: %u bad", m, bad);
        free(scratch);
    }
}

/* Rebuilding one source of a group of 64 costs about what the rebuilt bytes cost, not the
 * inversion of a 64 x 64 matrix: a peer can ask for one rebuild with every tiny REPAIR of a
 * sliding group (k 64, m 64, the rest cached), so 4000 of them must take well under a second
 * (the full inversion took about 1 ms each). */
static void test_codec_decode_cost(void)
{
    static uint8_t src[64][8], rep[64][8];
    uint8_t *sp[64], *rp[64], have[64], rep_have[64];
    for (unsigned j = 0; j < 64; j++) {
        sp[j] = src[j];
        rp[j] = rep[j];
        memset(src[j], (int)j, sizeof(src[j]));
        have[j] = rep_have[j] = 1;
    }
    uint8_t *scratch = scratch_for(64, 64);
    TT_REQUIRE(tern__fec_encode(64, 64, 8, sp, rp, scratch) == TERN_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned bad = 0;
    for (unsigned n = 0; n < 4000; n++) {
        unsigned j = n % 64;
        have[j] = 0;
        memset(src[j], 0, sizeof(src[j]));
        bad += tern__fec_decode(64, 64, 8, sp, have, rp, rep_have, scratch) != TERN_OK;
        bad += src[j][0] != j || src[j][7] != j;
        have[j] = 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("    4000 single rebuilds in groups of 64: %.1f ms\n", ms);
    TT_CHECK_EQ_INT(bad, 0);
    TT_CHECK_MSG(ms < 400, "%.1f ms", ms);
    free(scratch);
}

static void test_codec_one_repair_is_xor(void)
{
    uint8_t src[5][33], rep[33], x[33];
    uint8_t *sp[5], *rp[1] = {rep};
    memset(x, 0, sizeof(x));
    for (unsigned j = 0; j < 5; j++) {
        for (size_t i = 0; i < sizeof(src[j]); i++) src[j][i] = (uint8_t)(j * 31 + i * 7);
        for (size_t i = 0; i < sizeof(x); i++) x[i] ^= src[j][i];
        sp[j] = src[j];
    }
    uint8_t *scratch = scratch_for(5, 1);
    TT_REQUIRE(tern__fec_encode(5, 1, sizeof(rep), sp, rp, scratch) == TERN_OK);
    TT_CHECK(memcmp(rep, x, sizeof(x)) == 0);
    /* bad arguments */
    TT_CHECK_EQ_INT(tern__fec_encode(0, 1, 10, sp, rp, scratch), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern__fec_encode(65, 1, 10, sp, rp, scratch), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern__fec_encode(5, 0, 10, sp, rp, scratch), TERN_ERR_INVALID_ARG);
    free(scratch);
}

static void test_choose_m(void)
{
    TT_CHECK_EQ_INT(tern__fec_choose_m(8, 4, 0.0, 1.0, TERN__FEC_TARGET_FAIL), 0);
    TT_CHECK_EQ_INT(tern__fec_choose_m(8, 0, 0.05, 1.0, TERN__FEC_TARGET_FAIL), 0);
    /* 1% random loss, 3 sources: 1 repair leaves about 6e-4 */
    TT_CHECK_EQ_INT(tern__fec_choose_m(3, 4, 0.01, 1.0, TERN__FEC_TARGET_FAIL), 1);
    /* ... at 3% in bursts of 2 one is far from enough (the cap decides) */
    TT_CHECK(tern__fec_choose_m(3, 64, 0.03, 2.0, TERN__FEC_TARGET_FAIL) > 1);
    /* a live frame of 2 sources at 1% costing 10 frames when lost: 1 repair leaves 3e-4,
     * below TERN__FEC_TARGET_FAIL but not below a tenth of it */
    TT_CHECK_EQ_INT(tern__fec_choose_m(2, 4, 0.01, 1.0, TERN__FEC_TARGET_FAIL), 1);
    TT_CHECK_EQ_INT(tern__fec_choose_m(2, 4, 0.01, 1.0, TERN__FEC_TARGET_FAIL / 10), 2);
    unsigned r1 = tern__fec_choose_m(16, 16, 0.01, 1.0, TERN__FEC_TARGET_FAIL);
    unsigned r3 = tern__fec_choose_m(16, 16, 0.03, 1.0, TERN__FEC_TARGET_FAIL);
    unsigned b3 = tern__fec_choose_m(16, 16, 0.03, 3.0, TERN__FEC_TARGET_FAIL);
    printf("    16 sources: 1%% -> %u, 3%% -> %u, 3%% in bursts of 3 -> %u\n", r1, r3, b3);
    TT_CHECK(r1 >= 1 && r1 < r3);
    TT_CHECK(b3 > r3); /* bursts need more */
    TT_CHECK_EQ_INT(tern__fec_choose_m(16, 2, 0.3, 4.0, TERN__FEC_TARGET_FAIL), 2); /* the cap */
}

/* ---------------------------------------------------------------- frames */

typedef struct rx_log {
    unsigned n;
    size_t len[8];
    uint8_t data[8][8192];
} rx_log;

static rx_log *the_log;

static void on_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *u)
{
    (void)c;
    (void)flow;
    (void)u;
    if (the_log == NULL || the_log->n >= 8 || len > sizeof(the_log->data[0])) return;
    memcpy(the_log->data[the_log->n], d, len);
    the_log->len[the_log->n++] = len;
}

static void pair_init(core_rig *a, core_rig *b)
{
    tern_settings s;
    tern_settings_default(&s);
    s.flow_window = 1024;
    core_rig_init(a, &s);
    core_rig_init(b, &s);
    /* b plays the server: it receives a's (client, even) flows */
    b->c->is_server = 1;
    b->c->flows.peer_next = 0;
    a->c->peer.max_flows = b->c->peer.max_flows = 8;
    a->c->peer.flow_window = b->c->peer.flow_window = 1024;
    b->ep->cb.on_message = on_message;
}

/* The end of the frame of type `type` whose body starts at q (FLOW_DATA or REPAIR). */
static const uint8_t *frame_end(uint64_t type, const uint8_t *q, const uint8_t *end)
{
    uint64_t v;
    q = tern__get_varint(tern__get_varint(q, end, &v), end, &v); /* flow_id, fsn / first_fsn */
    if (type == TERN__FRAME_REPAIR) {
        for (int i = 0; i < 4; i++) q = tern__get_varint(q, end, &v); /* k, m, index, ttl */
    } else {
        uint64_t flags = 0;
        q = tern__get_varint(q, end, &flags);
        if (flags & TERN__FD_TTL) q = tern__get_varint(q, end, &v);
        if (flags & TERN__FD_DEP)
            for (int i = 0; i < 3; i++) q = tern__get_varint(q, end, &v);
    }
    q = tern__get_varint(q, end, &v); /* length */
    return q ? q + v : NULL;
}

/* What a's scheduler sends now goes into b as frames, except the FLOW_DATA of fsns drop ..
 * drop + ndrop - 1; with repair_first 1 the REPAIR frames go in before the data (they overtook
 * it), with 2 not at all. Returns the REPAIR frames sent. */
static unsigned transfer_n(core_rig *a, core_rig *b, uint64_t drop, uint64_t ndrop,
                           int repair_first)
{
    uint8_t buf[8][1400];
    const uint8_t *fr[64], *fe[64];
    uint64_t ft[64];
    unsigned n = 0, repairs = 0;
    for (unsigned k = 0; k < 8; k++) {
        tern__sent rec;
        memset(&rec, 0, sizeof(rec));
        uint8_t *end = tern__flow_write_data(a->c, a->now, buf[k], buf[k] + sizeof(buf[k]), &rec);
        if (end == buf[k]) break;
        for (const uint8_t *p = buf[k]; p < end;) {
            uint64_t type, id, fsn;
            const uint8_t *q = tern__get_varint(p, end, &type);
            TT_REQUIRE(q != NULL && n < 64);
            TT_REQUIRE(tern__get_varint(tern__get_varint(q, end, &id), end, &fsn) != NULL);
            const uint8_t *e = frame_end(type, q, end);
            TT_REQUIRE(e != NULL && e <= end);
            repairs += type == TERN__FRAME_REPAIR;
            if (!(type == TERN__FRAME_FLOW_DATA && fsn >= drop && fsn - drop < ndrop) &&
                !(type == TERN__FRAME_REPAIR && repair_first == 2)) {
                fr[n] = q;
                fe[n] = e;
                ft[n++] = type;
            }
            p = e;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < n; i++) {
            int is_repair = ft[i] == TERN__FRAME_REPAIR;
            if (repair_first ? is_repair != (pass == 0) : pass == 1) continue;
            const uint8_t *q = fr[i];
            TT_REQUIRE(tern__flow_on_frame(b->c, ft[i], &q, fe[i]) == TERN_OK);
            TT_CHECK(q == fe[i]);
        }
    }
    return repairs;
}

/* transfer_n dropping the FLOW_DATA of fsn `drop` only */
static unsigned transfer(core_rig *a, core_rig *b, uint64_t drop, int repair_first)
{
    return transfer_n(a, b, drop, 1, repair_first);
}

static void test_rebuild_between_connections(void)
{
    core_rig a, b;
    pair_init(&a, &b);
    rx_log log;
    memset(&log, 0, sizeof(log));
    the_log = &log;
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.fec = TERN_FEC_FIXED;
    cfg.fec_repair_pct = 25;
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(a.c, &cfg, &flow) == TERN_OK);
    /* a first message of one fragment: b learns the flow uses FEC from its repair */
    static uint8_t msg[4000];
    for (size_t i = 0; i < sizeof(msg); i++) msg[i] = (uint8_t)(i * 13 + 5);
    TT_REQUIRE(tern_flow_send(a.c, flow, a.now, msg, 100, -1) == TERN_OK);
    TT_CHECK_EQ_U64(transfer(&a, &b, UINT64_MAX, 0), 1);
    TT_CHECK_EQ_U64(log.n, 1);
    /* then 4000 bytes in 3 fragments (1..3), the middle one lost: rebuilt from 1 repair */
    TT_REQUIRE(tern_flow_send(a.c, flow, a.now, msg, sizeof(msg), -1) == TERN_OK);
    TT_CHECK(transfer(&a, &b, 2, 0) >= 1);
    TT_REQUIRE(log.n == 2);
    TT_CHECK_EQ_U64(log.len[1], sizeof(msg));
    TT_CHECK(memcmp(log.data[1], msg, sizeof(msg)) == 0);
    TT_CHECK(b.c->st.fec_repair_received >= 2);
    TT_CHECK_EQ_U64(b.c->st.fec_recovered, 1);
    TT_CHECK_EQ_U64(a.c->st.fec_repair_sent, b.c->st.fec_repair_received);
    /* b reports it; a counts fragment 2 as acknowledged */
    TT_REQUIRE(tern__fec_has_control(b.c));
    uint8_t ctl[200];
    tern__sent rec;
    memset(&rec, 0, sizeof(rec));
    uint8_t *e = tern__flow_write_control(b.c, ctl, ctl + sizeof(ctl), &rec);
    TT_CHECK(!tern__fec_has_control(b.c));
    const uint8_t *p = ctl;
    int repaired = 0;
    while (p < e) {
        uint64_t type;
        p = tern__get_varint(p, e, &type);
        TT_REQUIRE(p != NULL);
        repaired += type == TERN__FRAME_REPAIRED;
        TT_REQUIRE(tern__flow_on_frame(a.c, type, &p, e) == TERN_OK);
    }
    TT_CHECK_EQ_INT(repaired, 1);
    tern__sflow *sf = tern__sflow_find(a.c, flow);
    TT_REQUIRE(sf != NULL);
    TT_CHECK_EQ_INT(sf->frags[2 % sf->cap].state, FRAG_ACKED);
    TT_CHECK_EQ_INT(sf->frags[1 % sf->cap].state, FRAG_INFLIGHT);
    /* the repair overtakes the data: rebuilt when the last needed fragment comes */
    TT_REQUIRE(tern_flow_send(a.c, flow, a.now, msg, sizeof(msg), -1) == TERN_OK);
    TT_CHECK(transfer(&a, &b, sf->next_fsn + 1, 1) >= 1);
    TT_REQUIRE(log.n == 3);
    TT_CHECK(memcmp(log.data[2], msg, sizeof(msg)) == 0);
    TT_CHECK(b.c->st.fec_recovered >= 2); /* the lost one, and one rebuilt before it came */
    /* a new flow's first group: nothing cached yet, its fragments wait in the window for the
     * message to complete, and are the sources */
    uint64_t flow2;
    TT_REQUIRE(tern_flow_open(a.c, &cfg, &flow2) == TERN_OK);
    TT_REQUIRE(flow2 != flow);
    TT_REQUIRE(tern_flow_send(a.c, flow2, a.now, msg, sizeof(msg), -1) == TERN_OK);
    uint64_t rebuilt = b.c->st.fec_recovered;
    TT_CHECK(transfer(&a, &b, 1, 0) >= 1);
    TT_REQUIRE(log.n == 4);
    TT_CHECK(memcmp(log.data[3], msg, sizeof(msg)) == 0);
    TT_CHECK_EQ_U64(b.c->st.fec_recovered, rebuilt + 1);
    /* frame-aware messages: a keyframe and a frame that depends on it, each one's first
     * fragment lost and rebuilt with its DEP fields (an untagged rebuild would be a protocol
     * error or a skip) */
    tern_msg_opts o;
    memset(&o, 0, sizeof(o));
    o.priority = -1;
    o.flags = TERN_MSG_KEYFRAME;
    uint64_t kf, pf;
    TT_REQUIRE(tern_flow_send_msg(a.c, flow2, a.now, msg, sizeof(msg), &o, &kf) == TERN_OK);
    sf = tern__sflow_find(a.c, flow2);
    TT_REQUIRE(sf != NULL);
    TT_CHECK(transfer(&a, &b, sf->next_fsn, 0) >= 1);
    o.flags = TERN_MSG_DEPENDS;
    o.depends_on = kf;
    TT_REQUIRE(tern_flow_send_msg(a.c, flow2, a.now, msg, 3000, &o, &pf) == TERN_OK);
    TT_CHECK(transfer(&a, &b, sf->next_fsn, 0) >= 1);
    TT_REQUIRE(log.n == 6);
    TT_CHECK(memcmp(log.data[4], msg, sizeof(msg)) == 0);
    TT_CHECK_EQ_U64(log.len[5], 3000);
    TT_CHECK_EQ_U64(b.c->st.fec_recovered, rebuilt + 3);
    TT_CHECK_EQ_U64(b.c->st.msgs_skipped_dep, 0);
    tern__rflow *rf = tern__rflow_find(b.c, flow2);
    TT_REQUIRE(rf != NULL);
    TT_CHECK_EQ_U64(rf->next_mid, pf + 1); /* both were taken as tagged messages */
    the_log = NULL;
    core_rig_free(&a);
    core_rig_free(&b);
}

/* A repair packet declared lost and then acknowledged after all (a spurious loss) counts
 * once: the lost fragment stays held while its group's other repair is in flight (it was let
 * go and retransmitted, though that repair could still rebuild it). */
static void test_repair_spurious_loss_counts_once(void)
{
    core_rig a, b;
    pair_init(&a, &b);
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.fec = TERN_FEC_FIXED;
    cfg.fec_repair_pct = 50; /* 2 repair or more */
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(a.c, &cfg, &flow) == TERN_OK);
    static uint8_t msg[4000];
    memset(msg, 3, sizeof(msg));
    TT_REQUIRE(tern_flow_send(a.c, flow, a.now, msg, sizeof(msg), -1) == TERN_OK);
    tern__sflow *sf = tern__sflow_find(a.c, flow);
    TT_REQUIRE(sf != NULL);
    unsigned nrep = transfer(&a, &b, 1, 2);
    TT_REQUIRE_MSG(nrep >= 2, "%u repairs", nrep);
    tern__sent_entry d, r;
    memset(&d, 0, sizeof(d));
    d.flow_id = flow;
    d.fsn = 1;
    d.kind = ENT_DATA;
    memset(&r, 0, sizeof(r));
    r.flow_id = flow;
    r.fsn = 0;
    r.kind = ENT_REPAIR;
    tern__flow_on_lost(a.c, &d, a.now);
    TT_CHECK_EQ_INT(sf->frags[1 % sf->cap].state, FRAG_INFLIGHT); /* held */
    r.part = 0;
    tern__flow_on_lost(a.c, &r, a.now);
    tern__flow_on_acked(a.c, &r); /* the same packet: a late ACK */
    TT_CHECK_EQ_U64(a.c->st.fec_repair_lost, 1); /* declared lost once */
    for (unsigned i = 1; i + 1 < nrep; i++) {
        r.part = (uint8_t)i;
        tern__flow_on_acked(a.c, &r);
    }
    tern__flow_has_data(a.c, a.now);
    TT_CHECK_EQ_INT(sf->frags[1 % sf->cap].state, FRAG_INFLIGHT); /* the last repair is out */
    TT_CHECK_EQ_U64(sf->lost_n, 0);
    r.part = (uint8_t)(nrep - 1);
    tern__flow_on_acked(a.c, &r); /* and nothing rebuilt: back to loss recovery */
    tern__flow_has_data(a.c, a.now);
    TT_CHECK_EQ_INT(sf->frags[1 % sf->cap].state, FRAG_LOST);
    TT_CHECK_EQ_U64(sf->lost_n, 1);
    TT_CHECK_EQ_U64(a.c->st.fec_unsaved, 1); /* its repair did not save it */
    core_rig_free(&a);
    core_rig_free(&b);
}

/* A message whose deadline is further than the day a REPAIR's ttl may carry (deadline_ms
 * goes to 49 days): its repair says a day, and the receiver rebuilds it (it refused the frame,
 * a protocol violation that closed the connection). */
static void test_repair_ttl_beyond_a_day(void)
{
    core_rig a, b;
    pair_init(&a, &b);
    rx_log log;
    memset(&log, 0, sizeof(log));
    the_log = &log;
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.fec = TERN_FEC_FIXED;
    cfg.reliability = TERN_FLOW_PARTIAL;
    cfg.deadline_ms = 3u * 86400000u;
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(a.c, &cfg, &flow) == TERN_OK);
    static uint8_t msg[4000];
    for (size_t i = 0; i < sizeof(msg); i++) msg[i] = (uint8_t)(i * 7 + 1);
    TT_REQUIRE(tern_flow_send(a.c, flow, a.now, msg, sizeof(msg), -1) == TERN_OK);
    TT_CHECK(transfer(&a, &b, 0, 0) >= 1); /* its first fragment (BEGIN, with TTL) lost */
    TT_CHECK_EQ_INT(tern_conn_get_state(b.c), TERN_CONN_ESTABLISHED);
    TT_REQUIRE(log.n == 1);
    TT_CHECK(memcmp(log.data[0], msg, sizeof(msg)) == 0);
    TT_CHECK_EQ_U64(b.c->st.fec_recovered, 1);
    the_log = NULL;
    core_rig_free(&a);
    core_rig_free(&b);
}

/* A REPAIR frame's body (after the type) into buf; returns its end. */
static uint8_t *put_repair(uint8_t *buf, size_t cap, uint64_t id, uint64_t first, uint64_t k,
                           uint64_t m, uint64_t idx, uint64_t ttl, uint64_t len)
{
    uint8_t *p = buf, *end = buf + cap;
    p = tern__put_varint(p, end, id);
    p = tern__put_varint(p, end, first);
    p = tern__put_varint(p, end, k);
    p = tern__put_varint(p, end, m);
    p = tern__put_varint(p, end, idx);
    p = tern__put_varint(p, end, ttl);
    p = tern__put_varint(p, end, len);
    TT_REQUIRE(p != NULL && (size_t)(end - p) >= len);
    memset(p, 0x5a, len);
    return p + len;
}

static int repair_in(core_rig *b, uint64_t id, uint64_t first, uint64_t k, uint64_t m,
                     uint64_t idx, uint64_t ttl, uint64_t len, size_t cut)
{
    static uint8_t buf[2000];
    uint8_t *e = put_repair(buf, sizeof(buf), id, first, k, m, idx, ttl, len);
    const uint8_t *p = buf;
    return tern__flow_on_frame(b->c, TERN__FRAME_REPAIR, &p, e - cut);
}

static int repaired_in(core_rig *a, uint64_t id, uint64_t fsn, uint64_t n)
{
    uint8_t buf[40], *p = buf, *end = buf + sizeof(buf);
    p = tern__put_varint(tern__put_varint(tern__put_varint(p, end, id), end, fsn), end, n);
    const uint8_t *q = buf;
    return tern__flow_on_frame(a->c, TERN__FRAME_REPAIRED, &q, p);
}

/* One fragment of flow 0 into b (fsn, a whole one-fragment message). */
static void data_in(core_rig *b, uint64_t fsn)
{
    uint8_t buf[64], *p = buf, *end = buf + sizeof(buf);
    p = tern__put_varint(p, end, 0);
    p = tern__put_varint(p, end, fsn);
    p = tern__put_varint(p, end, TERN__FD_BEGIN | TERN__FD_END | TERN__FD_ORDERED);
    p = tern__put_varint(p, end, 4);
    p = tern__put_bytes(p, end, (const uint8_t *)"abcd", 4);
    const uint8_t *q = buf;
    int rc = tern__flow_on_frame(b->c, TERN__FRAME_FLOW_DATA, &q, p);
    TT_REQUIRE_MSG(rc == TERN_OK, "fsn %llu: %d", (unsigned long long)fsn, rc);
}

/* The sender holds a lost fragment whose group's repair is in flight: rebuilt (REPAIRED), it
 * is never retransmitted; not rebuilt (the repair acknowledged, no REPAIRED), it goes back to
 * loss recovery and is retransmitted. */
static void test_sender_holds_lost_for_repair(void)
{
    core_rig a, b;
    pair_init(&a, &b);
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.fec = TERN_FEC_FIXED;
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(a.c, &cfg, &flow) == TERN_OK);
    static uint8_t msg[4000];
    memset(msg, 7, sizeof(msg));
    TT_REQUIRE(tern_flow_send(a.c, flow, a.now, msg, sizeof(msg), -1) == TERN_OK);
    tern__sflow *sf = tern__sflow_find(a.c, flow);
    TT_REQUIRE(sf != NULL);
    /* b gets neither fragment 1 nor the repair yet: the test plays the network */
    TT_CHECK(transfer(&a, &b, 1, 2) >= 1);
    tern__sent_entry d, r;
    memset(&d, 0, sizeof(d));
    d.flow_id = flow;
    d.fsn = 1;
    d.kind = ENT_DATA;
    memset(&r, 0, sizeof(r));
    r.flow_id = flow;
    r.fsn = 0;
    r.kind = ENT_REPAIR;
    tern__flow_on_lost(a.c, &d, a.now);
    TT_CHECK_EQ_INT(sf->frags[1 % sf->cap].state, FRAG_INFLIGHT); /* held */
    TT_CHECK_EQ_U64(sf->lost_n, 0);
    /* its repair is acknowledged and b said nothing: back to loss recovery, retransmitted */
    for (uint64_t i = 0; i < a.c->st.fec_repair_sent; i++) {
        r.part = (uint8_t)i;
        tern__flow_on_acked(a.c, &r);
    }
    TT_CHECK(tern__flow_has_data(a.c, a.now));
    TT_CHECK_EQ_INT(sf->frags[1 % sf->cap].state, FRAG_LOST);
    uint64_t retx = a.c->st.packets_retransmitted_frags;
    uint8_t buf[1400];
    tern__sent rec;
    memset(&rec, 0, sizeof(rec));
    tern__flow_write_data(a.c, a.now, buf, buf + sizeof(buf), &rec);
    TT_CHECK_EQ_U64(a.c->st.packets_retransmitted_frags, retx + 1);
    /* a second message, fragment lost, rebuilt: REPAIRED acknowledges it, nothing resent */
    TT_REQUIRE(tern_flow_send(a.c, flow, a.now, msg, sizeof(msg), -1) == TERN_OK);
    uint64_t first = sf->next_fsn, sent = a.c->st.fec_repair_sent;
    TT_CHECK(transfer(&a, &b, first + 1, 0) >= 1); /* b rebuilds it */
    d.fsn = first + 1;
    tern__flow_on_lost(a.c, &d, a.now);
    TT_CHECK_EQ_INT(sf->frags[(first + 1) % sf->cap].state, FRAG_INFLIGHT);
    TT_CHECK_EQ_INT(repaired_in(&a, flow, first + 1, 1), TERN_OK);
    TT_CHECK_EQ_INT(sf->frags[(first + 1) % sf->cap].state, FRAG_ACKED);
    r.fsn = first;
    for (uint64_t i = 0; i < a.c->st.fec_repair_sent - sent; i++) {
        r.part = (uint8_t)i;
        tern__flow_on_lost(a.c, &r, a.now); /* lost or not: the fragment is safe */
    }
    tern__flow_has_data(a.c, a.now);
    TT_CHECK_EQ_U64(sf->lost_n, 0);
    TT_CHECK_EQ_U64(a.c->st.packets_retransmitted_frags, retx + 1);
    /* the first fragment was not saved by its repair, the second was; the second group's
     * repairs were all declared lost, the first group's none */
    TT_CHECK_EQ_U64(a.c->st.fec_unsaved, 1);
    TT_CHECK_EQ_U64(a.c->st.fec_repair_lost, a.c->st.fec_repair_sent - sent);
    core_rig_free(&a);
    core_rig_free(&b);
}

/* A frame (a message with a deadline) is one group, closed at its end, and its repair goes
 * right after it, before the next frame's data, even with the next frame already queued. */
static void test_frame_is_group(void)
{
    core_rig a, b;
    pair_init(&a, &b);
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.reliability = TERN_FLOW_PARTIAL;
    cfg.deadline_ms = 2000;
    cfg.fec = TERN_FEC_FIXED;
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(a.c, &cfg, &flow) == TERN_OK);
    static uint8_t msg[2500];
    memset(msg, 3, sizeof(msg));
    for (int i = 0; i < 2; i++)
        TT_REQUIRE(tern_flow_send(a.c, flow, a.now, msg, sizeof(msg), -1) == TERN_OK);
    /* the frames in the order the scheduler writes them: D fsn (E: a message's end), R
     * first/k; and what they should be: each message's fragments, then its repair */
    char seq[256] = "", want[256] = "";
    size_t sl = 0, wl = 0;
    uint64_t group = 0, ends = 0;
    for (int k = 0; k < 16; k++) {
        uint8_t buf[1400];
        tern__sent rec;
        memset(&rec, 0, sizeof(rec));
        uint8_t *end = tern__flow_write_data(a.c, a.now, buf, buf + sizeof(buf), &rec);
        if (end == buf) break;
        for (const uint8_t *p = buf; p < end;) {
            uint64_t type, id, fsn, v = 0;
            const uint8_t *q = tern__get_varint(p, end, &type);
            const uint8_t *r = tern__get_varint(tern__get_varint(q, end, &id), end, &fsn);
            TT_REQUIRE(r != NULL);
            tern__get_varint(r, end, &v); /* FLOW_DATA: flags; REPAIR: k */
            int rep = type == TERN__FRAME_REPAIR, fin = !rep && (v & TERN__FD_END);
            if (rep)
                sl += (size_t)snprintf(seq + sl, sizeof(seq) - sl, "R%llu/%llu ",
                                       (unsigned long long)fsn, (unsigned long long)v);
            else
                sl += (size_t)snprintf(seq + sl, sizeof(seq) - sl, "D%llu%s ",
                                       (unsigned long long)fsn, fin ? "E" : "");
            if (!rep) {
                wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "D%llu%s ",
                                       (unsigned long long)fsn, fin ? "E" : "");
                if (fin) {
                    uint64_t kk = fsn + 1 - group;
                    for (unsigned i = 0; i < (kk * 25 + 99) / 100; i++)
                        wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "R%llu/%llu ",
                                               (unsigned long long)group, (unsigned long long)kk);
                    group = fsn + 1;
                    ends++;
                }
            }
            p = frame_end(type, q, end);
            TT_REQUIRE(p != NULL && p <= end);
        }
    }
    printf("    %s\n", seq);
    TT_CHECK_EQ_U64(ends, 2);
    TT_CHECK(group >= 4); /* two frames of several fragments each */
    TT_CHECK_MSG(strcmp(seq, want) == 0, "got %s want %s", seq, want);
    core_rig_free(&a);
    core_rig_free(&b);
}

/* fec_unrecoverable on a RELIABLE flow: a group that lost more than its repair is counted
 * once, when the first of its missing fragments comes retransmitted (after its repair), not
 * only when a fragment is given up (which a RELIABLE flow never does). */
static void test_unrecoverable_reliable(void)
{
    core_rig a, b;
    pair_init(&a, &b);
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.fec = TERN_FEC_FIXED; /* 6 fragments here, 25%: two repair */
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(a.c, &cfg, &flow) == TERN_OK);
    static uint8_t msg[4000];
    memset(msg, 9, sizeof(msg));
    TT_REQUIRE(tern_flow_send(a.c, flow, a.now, msg, sizeof(msg), -1) == TERN_OK);
    tern__sflow *sf = tern__sflow_find(a.c, flow);
    TT_REQUIRE(sf != NULL && sf->next_fsn == 0);
    /* fragments 0..2 lost, the rest and both repair arrive: b holds the group, cannot rebuild */
    TT_CHECK_EQ_INT(transfer_n(&a, &b, 0, 3, 0), 2);
    TT_REQUIRE(sf->next_fsn == 6);
    TT_CHECK_EQ_U64(b.c->st.fec_repair_received, 2);
    TT_CHECK_EQ_U64(b.c->st.fec_recovered, 0);
    TT_CHECK_EQ_U64(b.c->st.fec_unrecoverable, 0); /* more repair might have been coming */
    /* a: the three lost, the repair acknowledged: retransmitted, b gets fragment 0 first */
    tern__sent_entry d, r;
    memset(&d, 0, sizeof(d));
    d.flow_id = flow;
    d.kind = ENT_DATA;
    for (d.fsn = 0; d.fsn < 3; d.fsn++) tern__flow_on_lost(a.c, &d, a.now);
    memset(&r, 0, sizeof(r));
    r.flow_id = flow;
    r.fsn = 0;
    r.kind = ENT_REPAIR;
    for (r.part = 0; r.part < 2; r.part++) tern__flow_on_acked(a.c, &r);
    TT_CHECK(tern__flow_has_data(a.c, a.now));
    TT_CHECK_EQ_INT(transfer_n(&a, &b, 1, 2, 0), 0); /* fragment 0 again; 1 and 2 lost again */
    TT_CHECK_EQ_U64(b.c->st.fec_unrecoverable, 1);
    /* with 0 back, the repair rebuilds 1 and 2: the group is done, counted once */
    TT_CHECK_EQ_U64(b.c->st.fec_recovered, 2);
    TT_CHECK_EQ_U64(b.c->st.fec_unrecoverable, 1);
    core_rig_free(&a);
    core_rig_free(&b);
}

/* REPAIRED frames naming fragments long acknowledged (below the flow's base) or again and
 * again the same ones cost a look each, not an acknowledgement each (which looks the flow up
 * among all of them): a packet of such frames names 64 fragments per 4 bytes. */
static void test_repaired_cost(void)
{
    core_rig a, b;
    pair_init(&a, &b);
    a.c->peer.max_flows = 200;
    uint64_t flow = 0;
    for (int i = 0; i < 100; i++) TT_REQUIRE(tern_flow_open(a.c, NULL, &flow) == TERN_OK);
    tern__sflow *sf = tern__sflow_find(a.c, 0);
    TT_REQUIRE(sf != NULL);
    static uint8_t msg[300];
    for (int i = 0; i < 64; i++) TT_REQUIRE(tern_flow_send(a.c, 0, a.now, msg, 300, -1) == TERN_OK);
    for (int i = 0; i < 100; i++) { /* sent (into the void) */
        uint8_t buf[1400];
        tern__sent rec;
        memset(&rec, 0, sizeof(rec));
        if (tern__flow_write_data(a.c, a.now, buf, buf + sizeof(buf), &rec) == buf) break;
    }
    TT_REQUIRE(sf->next_fsn >= 64);
    TT_REQUIRE(repaired_in(&a, 0, 0, 64) == TERN_OK); /* acknowledged */
    TT_CHECK_EQ_U64(sf->base, 64);
    uint64_t acked = sf->acked_bytes;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 20000; i++) TT_REQUIRE(repaired_in(&a, 0, 0, 64) == TERN_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("    20000 REPAIRED of 64 acknowledged fragments, 100 flows: %.1f ms\n", ms);
    TT_CHECK_EQ_U64(sf->acked_bytes, acked);
    TT_CHECK_MSG(ms < 100, "%.1f ms", ms);
    core_rig_free(&a);
    core_rig_free(&b);
}

static void test_malformed_frames(void)
{
    core_rig a, b;
    pair_init(&a, &b);
    data_in(&b, 0); /* opens flow 0 at b */
    const int P = TERN_ERR_PROTOCOL;
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 0, 1, 0, 0, 10, 0), P);  /* k 0 */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 65, 1, 0, 0, 10, 0), P); /* k 65 */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 0, 0, 0, 10, 0), P);  /* m 0 */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 65, 0, 0, 10, 0), P); /* m 65 */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 2, 2, 0, 10, 0), P);  /* index m */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 1, 0, 0, 2, 0), P);   /* shorter than a symbol header */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 1, 0, 0, TERN__FEC_SYM_MAX + 1, 0), P); /* too long */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 1, 0, 0, 100, 1), P); /* past the packet */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 1, 0, TERN__FEC_MAX_TTL + 1, 10, 0), P); /* ttl */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1020, 8, 1, 0, 0, 10, 0), P); /* beyond the window */
    TT_CHECK_EQ_INT(repair_in(&b, 1, 1, 2, 1, 0, 0, 10, 0), P); /* b's own (odd) flow */
    uint8_t one[1] = {9};
    const uint8_t *q = one;
    TT_CHECK_EQ_INT(tern__flow_on_frame(b.c, TERN__FRAME_REPAIR, &q, one + 1), P); /* truncated */
    /* ignored and counted: a flow not open, a complete group, the same repair twice */
    uint64_t d0 = b.c->st.fec_dropped;
    TT_CHECK_EQ_INT(repair_in(&b, 2, 0, 1, 1, 0, 0, 10, 0), TERN_OK);
    TT_CHECK_EQ_U64(b.c->st.fec_dropped, d0 + 1);
    TT_CHECK_EQ_INT(repair_in(&b, 0, 0, 1, 1, 0, 0, 10, 0), TERN_OK); /* fsn 0 delivered */
    TT_CHECK_EQ_U64(b.c->st.fec_dropped, d0 + 2);
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 2, 0, 0, 10, 0), TERN_OK);
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 2, 0, 0, 10, 0), TERN_OK);
    TT_CHECK_EQ_U64(b.c->st.fec_dropped, d0 + 3);
    /* a group that disagrees with itself */
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 3, 2, 1, 0, 10, 0), P);
    TT_CHECK_EQ_INT(repair_in(&b, 0, 1, 2, 2, 1, 0, 11, 0), P);
    /* REPAIRED at the sender: flow 0 sent nothing yet */
    uint64_t flow;
    TT_REQUIRE(tern_flow_open(a.c, NULL, &flow) == TERN_OK);
    TT_CHECK_EQ_INT(repaired_in(&a, flow, 0, 1), P);      /* never sent */
    TT_CHECK_EQ_INT(repaired_in(&a, flow, 0, 0), P);      /* count 0 */
    TT_CHECK_EQ_INT(repaired_in(&a, flow, 0, 65), P);     /* count 65 */
    TT_CHECK_EQ_INT(repaired_in(&a, 1, 0, 1), P);         /* not a's flow */
    TT_CHECK_EQ_INT(repaired_in(&a, 6, 0, 1), TERN_OK);   /* a's, finished (or never opened) */
    /* the flow's configuration */
    tern_flow_config cfg;
    tern_flow_config_default(&cfg);
    cfg.fec = 3;
    TT_CHECK_EQ_INT(tern_flow_open(a.c, &cfg, &flow), TERN_ERR_INVALID_ARG);
    cfg.fec = TERN_FEC_FIXED;
    cfg.fec_group = 0;
    TT_CHECK_EQ_INT(tern_flow_open(a.c, &cfg, &flow), TERN_ERR_INVALID_ARG);
    cfg.fec_group = 65;
    TT_CHECK_EQ_INT(tern_flow_open(a.c, &cfg, &flow), TERN_ERR_INVALID_ARG);
    cfg.fec_group = 64;
    TT_CHECK_EQ_INT(tern_flow_open(a.c, &cfg, &flow), TERN_OK);
    core_rig_free(&a);
    core_rig_free(&b);
}

/* A peer that sends repair for ever more groups with missing fragments makes us hold at most
 * TERN__FEC_RX_BUDGET for it; the rest is dropped and counted, and the connection lives on. */
static void test_repair_budget(void)
{
    core_rig a, b;
    pair_init(&a, &b);
    data_in(&b, 0);
    size_t before = tern_conn_memory(b.c);
    uint64_t d0 = b.c->st.fec_dropped, sent = 0;
    for (uint64_t first = 1; first + 2 <= 1000; first += 2) {
        TT_REQUIRE(repair_in(&b, 0, first, 2, 1, 0, 0, 1503, 0) == TERN_OK);
        sent++;
    }
    size_t held = tern_conn_memory(b.c) - before;
    printf("    %llu repairs of 1503 bytes: %zu bytes held, %llu dropped\n",
           (unsigned long long)sent, held, (unsigned long long)(b.c->st.fec_dropped - d0));
    TT_CHECK(held <= TERN__FEC_RX_BUDGET + 1024); /* + the per-connection record */
    TT_CHECK(held >= TERN__FEC_RX_BUDGET / 2);
    TT_CHECK(b.c->st.fec_dropped - d0 >= sent / 2);
    TT_CHECK_EQ_INT(tern_conn_get_state(b.c), TERN_CONN_ESTABLISHED);
    /* the sender gives those fragments up (FLOW_FORWARD): at the next fragment the groups
     * below the base go, counted as unrecoverable */
    uint8_t fw[20], *e = tern__put_varint(tern__put_varint(fw, fw + sizeof(fw), 0), fw + 20, 1000);
    const uint8_t *q = fw;
    TT_REQUIRE(tern__flow_on_frame(b.c, TERN__FRAME_FLOW_FORWARD, &q, e) == TERN_OK);
    data_in(&b, 1000);
    TT_CHECK(tern_conn_memory(b.c) < before + held / 4);
    TT_CHECK(b.c->st.fec_unrecoverable > 0);
    core_rig_free(&a);
    core_rig_free(&b);
}

static const tt_case cases[] = {
    TT_CASE(test_codec_every_loss_pattern),
    TT_CASE(test_codec_large_groups),
    TT_CASE(test_codec_decode_cost),
    TT_CASE(test_codec_one_repair_is_xor),
    TT_CASE(test_choose_m),
    TT_CASE(test_rebuild_between_connections),
    TT_CASE(test_sender_holds_lost_for_repair),
    TT_CASE(test_repair_ttl_beyond_a_day),
    TT_CASE(test_repaired_cost),
    TT_CASE(test_unrecoverable_reliable),
    TT_CASE(test_frame_is_group),
    TT_CASE(test_repair_spurious_loss_counts_once),
    TT_CASE(test_malformed_frames),
    TT_CASE(test_repair_budget),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
