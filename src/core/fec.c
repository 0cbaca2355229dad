/*
 * Forward error correction for flows: the erasure code (ISA-L), the sender's groups and repair
 * rate, the receiver's repair store, source cache and rebuild, and the REPAIR / REPAIRED frames.
 * See fec.h for the design and docs/protocol.md 6.4 for the wire format.
 */
#include "core/fec.h"

#include <isa-l/erasure_code.h>
#include <string.h>

#include "core/flow_int.h"

/* ---------------------------------------------------------------- codec */

size_t tern__fec_scratch_size(unsigned k, unsigned m)
{
    /* encode: the generator (k + m rows) and ISA-L's tables for m rows; decode (nm <= k, m
     * sources missing): their repairs' coefficients and decoding matrix (nm x k each), the
     * nm x nm system and its inverse, and the tables for nm rows; both fit */
    return (size_t)(k + m) * k + 3u * k * k + 32u * k * m;
}

static int codec_args_ok(unsigned k, unsigned m, size_t len)
{
    return k >= 1 && k <= TERN__FEC_MAX_K && m >= 1 && m <= TERN__FEC_MAX_M && len > 0;
}

static void xor_into(uint8_t *dst, const uint8_t *src, size_t len)
{
    for (size_t i = 0; i < len; i++) dst[i] ^= src[i];
}

int tern__fec_encode(unsigned k, unsigned m, size_t len, uint8_t *const *src, uint8_t *const *rep,
                     uint8_t *scratch)
{
    if (!codec_args_ok(k, m, len)) return TERN_ERR_INVALID_ARG;
    if (m == 1) {
        memcpy(rep[0], src[0], len);
        for (unsigned j = 1; j < k; j++) xor_into(rep[0], src[j], len);
        return TERN_OK;
    }
    uint8_t *a = scratch, *tbls = scratch + (size_t)(k + m) * k + 3u * k * k;
    /* rows 0..k-1 the identity (systematic), row k + i the coefficients of repair i */
    gf_gen_cauchy1_matrix(a, (int)(k + m), (int)k);
    ec_init_tables((int)k, (int)m, a + (size_t)k * k, tbls);
    ec_encode_data((int)len, (int)k, (int)m, tbls, (uint8_t **)src, (uint8_t **)rep);
    return TERN_OK;
}

int tern__fec_decode(unsigned k, unsigned m, size_t len, uint8_t *const *src, const uint8_t *have,
                     uint8_t *const *rep, const uint8_t *rep_have, uint8_t *scratch)
{
    if (!codec_args_ok(k, m, len)) return TERN_ERR_INVALID_ARG;
    unsigned mis[TERN__FEC_MAX_K], nm = 0, ridx[TERN__FEC_MAX_M], nr = 0;
    for (unsigned j = 0; j < k; j++)
        if (!have[j]) mis[nm++] = j;
    if (nm == 0) return TERN_OK;
    for (unsigned i = 0; i < m; i++)
        if (rep_have[i]) ridx[nr++] = i;
    if (nr < nm) return TERN_ERR_AGAIN;
    if (m == 1) {
        uint8_t *out = src[mis[0]];
        memcpy(out, rep[0], len);
        for (unsigned j = 0; j < k; j++)
            if (j != mis[0]) xor_into(out, src[j], len);
        return TERN_OK;
    }
    /* Only the nm missing sources are unknown. With the first nm repairs there (repair ridx[t]
     * is row k + ridx[t] of the generator: C[t][j] = 1 / ((k + ridx[t]) ^ j)) they satisfy
     *   sum_u C[t][mis[u]] src[mis[u]] = rep[ridx[t]] + sum_{j there} C[t][j] src[j]  (+: XOR).
     * M[t][u] = C[t][mis[u]] is a square submatrix of a Cauchy matrix, so invertible, and
     *   src[mis[u]] = sum_t Minv[u][t] rep[ridx[t]] + sum_{j there} (Minv C)[u][j] src[j]:
     * one pass of ec_encode_data over the k symbols there (the sources, then the nm repairs)
     * with that nm x k decoding matrix. Setting it up costs O(nm^2 k), not the inversion of a
     * k x k matrix (O(k^3)), which a peer could otherwise ask for with every tiny REPAIR. */
    uint8_t *cf = scratch;                /* nm x k: C */
    uint8_t *mm = cf + (size_t)nm * k;    /* nm x nm: M */
    uint8_t *minv = mm + (size_t)nm * nm; /* nm x nm: its inverse */
    uint8_t *d = minv + (size_t)nm * nm;  /* nm x k: the decoding matrix */
    uint8_t *tbls = d + (size_t)nm * k;   /* 32 k nm: ISA-L's tables for d */
    uint8_t *in[TERN__FEC_MAX_K], *out[TERN__FEC_MAX_K];
    for (unsigned t = 0; t < nm; t++) {
        for (unsigned j = 0; j < k; j++)
            cf[(size_t)t * k + j] = gf_inv((uint8_t)((k + ridx[t]) ^ j));
        for (unsigned u = 0; u < nm; u++) mm[(size_t)t * nm + u] = cf[(size_t)t * k + mis[u]];
    }
    if (gf_invert_matrix(mm, minv, (int)nm) != 0) return TERN_ERR_INVALID_ARG; /* Cauchy: never */
    for (unsigned u = 0; u < nm; u++) {
        uint8_t *row = d + (size_t)u * k;
        unsigned r = 0;
        for (unsigned j = 0; j < k; j++) {
            if (!have[j]) continue;
            uint8_t v = 0;
            for (unsigned t = 0; t < nm; t++)
                v ^= gf_mul(minv[(size_t)u * nm + t], cf[(size_t)t * k + j]);
            row[r] = v;
            in[r++] = src[j];
        }
        for (unsigned t = 0; t < nm; t++) {
            row[r] = minv[(size_t)u * nm + t];
            in[r++] = rep[ridx[t]];
        }
        out[u] = src[mis[u]];
    }
    ec_init_tables((int)k, (int)nm, d, tbls);
    ec_encode_data((int)len, (int)k, (int)nm, tbls, in, out);
    return TERN_OK;
}

unsigned tern__fec_choose_m(unsigned k, unsigned cap, double loss, double burst, double target)
{
    if (!(loss > 0) || cap == 0 || k == 0) return 0;
    if (cap > TERN__FEC_MAX_M) cap = TERN__FEC_MAX_M;
    if (loss > 0.5) loss = 0.5;
    if (!(burst >= 1)) burst = 1;
    /* two states: good (delivers) and bad (loses), staying bad with p_bb (mean run 1/(1-p_bb)
     * = burst) and entering it with q_gb, so that the stationary share of bad is loss */
    double p_bb = 1.0 - 1.0 / burst;
    double q_gb = loss * (1.0 - p_bb) / (1.0 - loss);
    if (q_gb > 1) q_gb = 1;
    /* g[l], bl[l]: probability of l losses so far and the last packet good / bad; bin cap+1
     * holds "more than cap" */
    double g[TERN__FEC_MAX_M + 2], bl[TERN__FEC_MAX_M + 2];
    unsigned top = cap + 1;
    memset(g, 0, sizeof(g));
    memset(bl, 0, sizeof(bl));
    g[0] = 1.0 - loss; /* the state before the group: stationary */
    bl[0] = loss;
    for (unsigned n = 1; n <= k + cap; n++) {
        double ng[TERN__FEC_MAX_M + 2], nb[TERN__FEC_MAX_M + 2];
        memset(ng, 0, sizeof(ng));
        memset(nb, 0, sizeof(nb));
        for (unsigned l = 0; l <= top; l++) {
            unsigned up = l + 1 > top ? top : l + 1;
            ng[l] += g[l] * (1 - q_gb) + bl[l] * (1 - p_bb);
            nb[up] += g[l] * q_gb + bl[l] * p_bb;
        }
        memcpy(g, ng, sizeof(g));
        memcpy(bl, nb, sizeof(bl));
        if (n < k) continue;
        unsigned m = n - k; /* the group with m repair: can it lose more than m? */
        double tail = 0;
        for (unsigned l = m + 1; l <= top; l++) tail += g[l] + bl[l];
        if (tail < target) return m;
    }
    return cap;
}

/* ---------------------------------------------------------------- sender */

#define TX_GROUPS 32

struct tern__fec_tx {
    /* the group being filled: k sources from fsn first, the longest symbol len, the earliest
     * deadline of their messages and the priority of the last one */
    uint64_t first;
    unsigned k;
    size_t len;
    uint64_t deadline;
    uint8_t prio;
    uint8_t live; /* a message of the group has frame dependencies (a live frame) */
    /* live frames: when the last one's first fragment went out, and the mean interval between
     * them (0: not known yet), for how many frames a lost one costs (group_repair) */
    uint64_t live_last, live_ivl;
    uint16_t slen[TERN__FEC_MAX_K];
    uint8_t *src; /* capacity symbols of TERN__FEC_SYM_MAX bytes */
    unsigned capacity;
    /* the repair of the last group closed, waiting to be sent (a group closing before the
     * previous one's repair went replaces it: that repair came too late to help) */
    uint64_t r_first, r_deadline;
    unsigned r_k, r_m, r_next;
    int r_slot; /* its group in g[], or -1 */
    size_t r_len;
    uint8_t r_prio;
    uint8_t *rep;
    size_t rep_size;
    /* closed groups with repair waiting or in flight (for holding their lost fragments): its
     * first fsn and k, repair symbols still to send, those in flight (bit i: repair i, so that
     * a packet acknowledged after it was declared lost counts once), lost fragments held (bit
     * j: first + j); a free slot has k 0. A group finding no free slot is not tracked: its
     * losses go the usual way. */
    struct {
        uint64_t first, held, out;
        uint8_t k, to_send;
    } g[TX_GROUPS];
    uint8_t release_due;
};

size_t tern__fec_reserve(const tern__sflow *f)
{
    return f->cfg.fec != TERN_FEC_OFF ? TERN__FEC_RESERVE : 0;
}

void tern__fec_tx_free(tern_conn *c, tern__sflow *f)
{
    tern__fec_tx *t = f->fec;
    if (t == NULL) return;
    tern__conn_dealloc(c, t->src, (size_t)t->capacity * TERN__FEC_SYM_MAX);
    tern__conn_dealloc(c, t->rep, t->rep_size);
    tern__conn_dealloc(c, t, sizeof(*t));
    f->fec = NULL;
}

/* Group slot i's repair is all sent or dropped, and none is in flight: its held fragments are
 * due back to loss recovery (tern__fec_release), or the slot is free. */
static void slot_check(tern__fec_tx *t, int i)
{
    if (i < 0 || t->g[i].k == 0 || t->g[i].to_send || t->g[i].out) return;
    if (t->g[i].held) t->release_due = 1;
    else t->g[i].k = 0;
}

/* The repair waiting to be sent will not be: its group's slot learns it. */
static void pending_drop(tern__fec_tx *t)
{
    t->r_next = t->r_m;
    if (t->r_slot >= 0) {
        t->g[t->r_slot].to_send = 0;
        slot_check(t, t->r_slot);
    }
    t->r_slot = -1;
}

int tern__fec_hold_lost(tern_conn *c, tern__sflow *f, uint64_t fsn)
{
    (void)c;
    tern__fec_tx *t = f->fec;
    if (t == NULL) return 0;
    for (int i = 0; i < TX_GROUPS; i++) {
        if (t->g[i].k == 0 || fsn < t->g[i].first || fsn - t->g[i].first >= t->g[i].k) continue;
        if (!t->g[i].to_send && !t->g[i].out) return 0;
        t->g[i].held |= (uint64_t)1 << (fsn - t->g[i].first);
        return 1;
    }
    return 0;
}

void tern__fec_repair_done(tern_conn *c, tern__sflow *f, const tern__sent_entry *e)
{
    tern__fec_tx *t = f->fec;
    if (t == NULL) return;
    for (int i = 0; i < TX_GROUPS; i++) {
        if (t->g[i].k == 0 || t->g[i].first != e->fsn) continue;
        t->g[i].out &= ~((uint64_t)1 << (e->part & 63)); /* a late ACK of a lost one: no-op */
        slot_check(t, i);
        if (t->release_due) tern__ep_mark_send(c->ep, c);
        return;
    }
}

void tern__fec_release(tern_conn *c, tern__sflow *f, uint64_t now)
{
    tern__fec_tx *t = f->fec;
    if (t == NULL || !t->release_due) return;
    t->release_due = 0;
    for (int i = 0; i < TX_GROUPS; i++) {
        if (t->g[i].k == 0 || t->g[i].to_send || t->g[i].out || !t->g[i].held) continue;
        uint64_t first = t->g[i].first, held = t->g[i].held;
        t->g[i].k = 0; /* free before the calls: none of these is held again */
        t->g[i].held = 0;
        for (unsigned j = 0; j < 64; j++) {
            if (!(held & ((uint64_t)1 << j))) continue;
            /* not rebuilt (REPAIRED would have acknowledged it): retransmitted or given up */
            tern__sent_entry e;
            memset(&e, 0, sizeof(e));
            e.flow_id = f->id;
            e.fsn = first + j;
            e.kind = ENT_DATA;
            e.released = 1;
            tern__flow_on_lost(c, &e, now);
        }
    }
}

/* The flags of a fragment in its symbol: those of its FLOW_DATA without TTL. */
#define SYM_FLAGS (TERN__FD_ALL & ~TERN__FD_TTL)

/* The bytes of a symbol for a fragment of len bytes with flags and, with DEP, the DEP fields
 * as FLOW_DATA carries them. */
static size_t sym_len(uint8_t flags, const uint64_t dep[3], size_t len)
{
    size_t n = TERN__FEC_SYM_HDR + len;
    if (flags & TERN__FD_DEP)
        for (int i = 0; i < 3; i++) n += tern__varint_len(dep[i]);
    return n;
}

/* Writes the symbol (sym_len bytes); returns its size. */
static size_t sym_put(uint8_t *sym, uint8_t flags, const uint64_t dep[3], const uint8_t *data,
                      size_t len)
{
    size_t n = sym_len(flags, dep, len);
    uint8_t *p = sym + TERN__FEC_SYM_HDR, *end = sym + n;
    sym[0] = (uint8_t)(flags & SYM_FLAGS);
    sym[1] = (uint8_t)(len >> 8);
    sym[2] = (uint8_t)len;
    if (flags & TERN__FD_DEP)
        for (int i = 0; i < 3; i++) p = tern__put_varint(p, end, dep[i]);
    if (len) memcpy(p, data, len);
    return n;
}

/* Whether a retransmission of a fragment of the group, lost, could still arrive by `due`
 * (TERN_TIME_NEVER: no bound), by the sender's own rules. The fragment was sent at or before
 * now; loss recovery declares it lost at the latest tern__rec_loss_delay after that (the time
 * threshold; the packet threshold may be sooner); the retransmission goes out only while the
 * message's deadline less the one-way delay bound has not passed (flow_send.c's send_cutoff
 * for a message begun, the same bound FLOW_DATA's TTL uses), so it arrives at most that bound
 * later; and it may wait behind the pacer and other data for a margin, max(4 rttvar, 20 ms).
 * So: in time iff now + loss delay + margin + one-way bound <= due. */
static int retx_in_time(const tern_conn *c, uint64_t due, uint64_t now)
{
    if (due == TERN_TIME_NEVER) return 1;
    uint64_t margin = 4 * c->rec.rtt.rttvar;
    if (margin < 20 * TERN_NS_PER_MS) margin = 20 * TERN_NS_PER_MS;
    uint64_t need = tern__rec_loss_delay(c) + margin + tern__flow_owd_bound(c);
    return due >= now && due - now >= need;
}

/* How many repair symbols the group gets. */
static unsigned group_repair(const tern_conn *c, const tern__sflow *f, const tern__fec_tx *t,
                             int tail, uint64_t now)
{
    unsigned k = t->k, pct = f->cfg.fec_repair_pct;
    unsigned cap = (k * pct + 99) / 100;
    if (cap > TERN__FEC_MAX_M) cap = TERN__FEC_MAX_M;
    if (f->cfg.fec == TERN_FEC_FIXED) return cap;
    if (c->rec.r == NULL || !c->rec.ready) return 0;
    /* ADAPTIVE: repair exactly where a retransmission could not arrive in time
     * (retx_in_time): by the group's earliest deadline, and for a live frame (a message with
     * frame dependencies, TERN_MSG_KEYFRAME / GOP / DEPENDS, whatever its deadline and
     * reliability) also by a live receiver's playout, taken as the one-way delay bound plus
     * TERN__FEC_LIVE_SLACK from now: a frame delivered after it is as good as lost. Besides,
     * the tail of a burst of a flow without deadline (its loss would wait for a probe
     * timeout). */
    uint64_t due = t->deadline;
    if (t->live) {
        uint64_t play = now + tern__flow_owd_bound(c) + TERN__FEC_LIVE_SLACK;
        if (play < due) due = play;
    }
    int tail_repair = tail && t->deadline == TERN_TIME_NEVER;
    if (retx_in_time(c, due, now) && !tail_repair) return 0;
    const tern__recovery *r = c->rec.r;
    /* the loss rate: the larger of the recent (64 packets) and the longer (1024) average, so
     * that the quiet stretches between random losses do not leave small groups bare */
    uint64_t lq = r->loss_avg_q16 > r->loss_slow_q16 ? r->loss_avg_q16 : r->loss_slow_q16;
    double loss = (double)lq / 65536.0;
    double burst = r->burst_avg_q8 ? (double)r->burst_avg_q8 / 256.0 : 1.0;
    /* a live frame lost costs the frames after it until the keyframe it makes the receiver
     * ask for arrives, about a round trip: 1 + srtt / frame interval frames in all */
    double target = TERN__FEC_TARGET_FAIL;
    if (t->live && t->live_ivl > 0) {
        double frames = 1.0 + (double)c->rec.rtt.srtt / (double)t->live_ivl;
        if (frames > TERN__FEC_LIVE_CASCADE_MAX) frames = TERN__FEC_LIVE_CASCADE_MAX;
        target /= frames;
    }
    return tern__fec_choose_m(k, cap, loss, burst, target);
}

uint32_t tern__fec_repair_share_q16(const tern_conn *c)
{
    return c->flows.fec_share_q16;
}

/* The group's repair share (m symbols of len over its sources and them) into the average. */
static void share_note(tern_conn *c, const tern__fec_tx *t, unsigned k, unsigned m)
{
    uint64_t src = 0, rep = (uint64_t)m * t->len;
    for (unsigned j = 0; j < k; j++) src += t->slen[j];
    uint64_t s = src + rep ? (rep << 16) / (src + rep) : 0;
    c->flows.fec_share_q16 = (uint32_t)((7 * (uint64_t)c->flows.fec_share_q16 + s) / 8);
}

static void group_close(tern_conn *c, tern__sflow *f, tern__fec_tx *t, int tail, uint64_t now)
{
    unsigned k = t->k, m = group_repair(c, f, t, tail, now);
    t->k = 0;
    share_note(c, t, k, m);
    if (m == 0) return;
    if (t->r_next < t->r_m) pending_drop(t); /* the previous group's repair came too late */
    size_t len = t->len, need = (size_t)m * len;
    if (need > t->rep_size) {
        uint8_t *nr = tern__conn_alloc(c, need, 0);
        if (nr == NULL) return;
        tern__conn_dealloc(c, t->rep, t->rep_size);
        t->rep = nr;
        t->rep_size = need;
    }
    size_t ss = tern__fec_scratch_size(k, m);
    uint8_t *scratch = tern__malloc(&c->ep->alloc, ss);
    if (scratch == NULL) return;
    uint8_t *src[TERN__FEC_MAX_K], *rep[TERN__FEC_MAX_M];
    for (unsigned j = 0; j < k; j++) {
        src[j] = t->src + (size_t)j * TERN__FEC_SYM_MAX;
        memset(src[j] + t->slen[j], 0, len - t->slen[j]); /* zero-padded to the longest */
    }
    for (unsigned i = 0; i < m; i++) rep[i] = t->rep + (size_t)i * len;
    int rc = tern__fec_encode(k, m, len, src, rep, scratch);
    tern__free(&c->ep->alloc, scratch, ss);
    if (rc != TERN_OK) return;
    t->r_first = t->first;
    t->r_k = k;
    t->r_m = m;
    t->r_next = 0;
    t->r_len = len;
    t->r_deadline = t->deadline;
    t->r_prio = t->prio;
    t->r_slot = -1;
    for (int i = 0; i < TX_GROUPS; i++) {
        if (t->g[i].k != 0) continue;
        t->g[i].first = t->first;
        t->g[i].k = (uint8_t)k;
        t->g[i].to_send = (uint8_t)m;
        t->g[i].out = 0;
        t->g[i].held = 0;
        t->r_slot = i;
        break;
    }
    tern__ep_mark_send(c->ep, c);
}

void tern__fec_on_sent(tern_conn *c, tern__sflow *f, uint64_t fsn, const tern__frag *fr,
                       uint64_t now)
{
    if (f->cfg.fec == TERN_FEC_OFF || fr->msg == NULL) return;
    tern__fec_tx *t = f->fec;
    unsigned group = f->cfg.fec_group;
    if (group < 1) group = 1;
    if (group > TERN__FEC_MAX_K) group = TERN__FEC_MAX_K;
    if (t == NULL) {
        t = tern__conn_calloc(c, sizeof(*t), 0);
        if (t == NULL) return;
        t->r_slot = -1;
        t->src = tern__conn_alloc(c, (size_t)group * TERN__FEC_SYM_MAX, 0);
        if (t->src == NULL) {
            tern__conn_dealloc(c, t, sizeof(*t));
            return;
        }
        t->capacity = group;
        f->fec = t;
    }
    if (group > t->capacity) group = t->capacity;
    if (t->k > 0 && fsn != t->first + t->k) t->k = 0; /* cannot happen: fsns go up by one */
    if (t->k == 0) {
        t->first = fsn;
        t->len = 0;
        t->deadline = TERN_TIME_NEVER;
        t->live = 0;
    }
    const tern__msg *m = fr->msg;
    const uint8_t *bytes = (m->is_ref ? m->ref : m->data) + fr->off;
    uint64_t dep[3] = {0, 0, 0};
    /* the flags exactly as its FLOW_DATA has them (put_frag_hdr), TTL aside */
    uint8_t flags = (uint8_t)(fr->flags | (f->cfg.ordered ? TERN__FD_ORDERED : 0) |
                              (f->cfg.stream ? TERN__FD_STREAM : 0) |
                              (tern__flow_frag_dep(fr, dep) ? TERN__FD_DEP : 0));
    t->slen[t->k] =
        (uint16_t)sym_put(t->src + (size_t)t->k * TERN__FEC_SYM_MAX, flags, dep, bytes, fr->len);
    if (t->slen[t->k] > t->len) t->len = t->slen[t->k];
    if (m->deadline < t->deadline) t->deadline = m->deadline;
    t->prio = m->priority;
    int frame = m->deadline != TERN_TIME_NEVER ||
                (m->mflags & (TERN_MSG_KEYFRAME | TERN_MSG_DEPENDS | TERN_MSG_GOP));
    if (m->mflags & (TERN_MSG_KEYFRAME | TERN_MSG_DEPENDS | TERN_MSG_GOP)) {
        t->live = 1;
        if (fr->flags & TERN__FD_BEGIN) { /* a new frame: the interval into the mean (1/8) */
            if (t->live_last != 0 && now > t->live_last) {
                uint64_t d = now - t->live_last;
                t->live_ivl = t->live_ivl ? (7 * t->live_ivl + d) / 8 : d;
            }
            t->live_last = now;
        }
    }
    t->k++;
    /* the group closes when full, when the queue ran empty, and at the end of a message with a
     * deadline or frame dependencies (a frame: its repair must not wait for the next one) */
    int tail = f->head == NULL;
    if (t->k >= group || tail || (frame && (fr->flags & TERN__FD_END)))
        group_close(c, f, t, tail, now);
}

int tern__fec_tx_priority(tern_conn *c, tern__sflow *f, uint64_t now)
{
    tern__fec_tx *t = f->fec;
    if (t == NULL || t->r_next >= t->r_m) return -1;
    if (t->r_deadline != TERN_TIME_NEVER) {
        /* past the deadline less the one-way delay bound, repair only costs the link */
        uint64_t d = tern__flow_owd_bound(c);
        if (now + d >= t->r_deadline) {
            pending_drop(t);
            return -1;
        }
    }
    return t->r_prio;
}

uint8_t *tern__fec_write_repair(tern_conn *c, tern__sflow *f, uint8_t *p, const uint8_t *end,
                                tern__sent *rec, uint64_t now)
{
    tern__fec_tx *t = f->fec;
    if (rec->n >= TERN__PKT_ENTRIES) return NULL;
    /* the time left at the receiver for the group's earliest message, as a FLOW_DATA's TTL
     * (plus one; 0: no deadline): a rebuilt first fragment carries it */
    uint64_t ttl = 0;
    if (t->r_deadline != TERN_TIME_NEVER) {
        uint64_t d = tern__flow_owd_bound(c);
        uint64_t left = t->r_deadline > now ? t->r_deadline - now : 0;
        ttl = 1 + (left > d ? (left - d) / TERN_NS_PER_MS : 0);
        /* a deadline_ms may reach 49 days; the frame carries a day at most (the receiver
         * refuses more): a rebuilt message then expires a day from now at the earliest */
        if (ttl > TERN__FEC_MAX_TTL) ttl = TERN__FEC_MAX_TTL;
    }
    size_t hdr = tern__varint_len(TERN__FRAME_REPAIR) + tern__varint_len(f->id) +
                 tern__varint_len(t->r_first) + tern__varint_len(t->r_k) +
                 tern__varint_len(t->r_m) + tern__varint_len(t->r_next) + tern__varint_len(ttl) +
                 tern__varint_len(t->r_len);
    size_t room = tern__conn_max_payload(c) - tern__conn_packet_overhead();
    if (hdr + t->r_len > room) {
        pending_drop(t); /* the packets became smaller than the group's symbols: give up */
        return p;
    }
    uint8_t *q = tern__put_varint(p, end, TERN__FRAME_REPAIR);
    q = tern__put_varint(q, end, f->id);
    q = tern__put_varint(q, end, t->r_first);
    q = tern__put_varint(q, end, t->r_k);
    q = tern__put_varint(q, end, t->r_m);
    q = tern__put_varint(q, end, t->r_next);
    q = tern__put_varint(q, end, ttl);
    q = tern__put_varint(q, end, t->r_len);
    q = tern__put_bytes(q, end, t->rep + (size_t)t->r_next * t->r_len, t->r_len);
    if (q == NULL) return NULL;
    tern__sent_entry *e = &rec->e[rec->n++];
    e->flow_id = f->id;
    e->fsn = t->r_first;
    e->kind = ENT_REPAIR;
    e->part = (uint8_t)t->r_next;
    e->released = 0;
    t->r_next++;
    if (t->r_slot >= 0) {
        t->g[t->r_slot].to_send--;
        t->g[t->r_slot].out |= (uint64_t)1 << e->part;
        if (t->r_next == t->r_m) t->r_slot = -1;
    }
    c->st.fec_repair_sent++;
    return q;
}

/* ---------------------------------------------------------------- receiver */

typedef struct fec_group {
    struct fec_group *next;
    uint64_t first;
    uint64_t deadline; /* of its earliest message, from its first repair's ttl (0: none) */
    uint16_t len;      /* symbol length */
    uint8_t k, m, nrep;
    uint8_t counted; /* counted in fec_unrecoverable */
    uint64_t miss;   /* bit j: source j was not there when the group last looked */
    uint8_t idx[TERN__FEC_MAX_K];
    uint8_t *rep[TERN__FEC_MAX_K]; /* at most k repairs are of use */
} fec_group;

/* The source cache: the symbol of fragment fsn at [fsn % FEC_CACHE]; symbols more than twice
 * the largest group seen behind the newest are dropped (a group's repair comes right after its
 * last fragment, when its first one is at most a group back). */
#define FEC_CACHE (2 * TERN__FEC_MAX_K)

struct tern__fec_rflow {
    fec_group *groups;
    unsigned kmax; /* the largest k seen (at first the default fec_group, 16) */
    uint64_t c_fsn[FEC_CACHE];
    uint8_t *c_sym[FEC_CACHE];
};

struct tern__fec_conn {
    uint64_t held; /* bytes charged for repair: groups, symbols, caches */
    struct {
        uint64_t flow, fsn, n;
    } done[TERN__FEC_REPAIRED_MAX];
    unsigned n_done;
    int rebuilding;
};

static tern__fec_conn *fec_conn(tern_conn *c)
{
    if (c->flows.fec == NULL) c->flows.fec = tern__conn_calloc(c, sizeof(tern__fec_conn), 1);
    return c->flows.fec;
}

/* An allocation held for repair: under TERN__FEC_RX_BUDGET and the connection's budget. */
static void *fec_hold(tern_conn *c, size_t size)
{
    tern__fec_conn *fc = c->flows.fec;
    if (fc == NULL || fc->held + tern__mem_charge(size) > TERN__FEC_RX_BUDGET) return NULL;
    void *p = tern__conn_alloc(c, size, 1);
    if (p) fc->held += tern__mem_charge(size);
    return p;
}

static void fec_release(tern_conn *c, void *p, size_t size)
{
    if (p == NULL) return;
    c->flows.fec->held -= tern__mem_charge(size);
    tern__conn_dealloc(c, p, size);
}

/* The size of a symbol we wrote (sym_put). */
static size_t sym_size(const uint8_t *sym)
{
    size_t n = TERN__FEC_SYM_HDR + ((size_t)sym[1] << 8 | sym[2]);
    if (sym[0] & TERN__FD_DEP) {
        /* the three DEP varints sym_put wrote after the header */
        const uint8_t *p = sym + TERN__FEC_SYM_HDR, *end = sym + TERN__FEC_SYM_MAX;
        uint64_t v;
        for (int i = 0; i < 3 && p != NULL; i++) p = tern__get_varint(p, end, &v);
        if (p != NULL) n += (size_t)(p - (sym + TERN__FEC_SYM_HDR));
    }
    return n;
}

/* The DEP fields of a received fragment (its BEGIN carried them), as FLOW_DATA has them. */
static void frag_dep(const tern__rfrag *s, uint64_t dep[3])
{
    dep[0] = s->mid;
    dep[1] = s->dep == TERN__NO_MSG ? 0 : s->mid - s->dep;
    dep[2] = s->gop == TERN__NO_MSG ? 0 : s->mid - s->gop + 1;
}

static void group_free(tern_conn *c, tern__fec_rflow *fr, fec_group *g)
{
    fec_group **pp = &fr->groups;
    while (*pp != g) pp = &(*pp)->next;
    *pp = g->next;
    for (unsigned i = 0; i < g->nrep; i++) fec_release(c, g->rep[i], g->len);
    fec_release(c, g, sizeof(*g));
}

static void cache_drop(tern_conn *c, tern__fec_rflow *fr, unsigned i)
{
    if (fr->c_sym[i] == NULL) return;
    fec_release(c, fr->c_sym[i], sym_size(fr->c_sym[i]));
    fr->c_sym[i] = NULL;
}

void tern__fec_rflow_free(tern_conn *c, tern__rflow *f)
{
    tern__fec_rflow *fr = f->fec;
    if (fr == NULL) return;
    while (fr->groups) group_free(c, fr, fr->groups);
    for (unsigned i = 0; i < FEC_CACHE; i++) cache_drop(c, fr, i);
    fec_release(c, fr, sizeof(*fr));
    f->fec = NULL;
}

void tern__fec_conn_free(tern_conn *c)
{
    if (c->flows.fec) tern__conn_dealloc(c, c->flows.fec, sizeof(tern__fec_conn));
    c->flows.fec = NULL;
}

static const uint8_t *cache_get(const tern__fec_rflow *fr, uint64_t fsn)
{
    unsigned i = (unsigned)(fsn % FEC_CACHE);
    return fr->c_sym[i] && fr->c_fsn[i] == fsn ? fr->c_sym[i] : NULL;
}

void tern__fec_on_stored(tern_conn *c, tern__rflow *f, uint64_t fsn, const tern__rfrag *s)
{
    tern__fec_rflow *fr = f->fec;
    if (fr == NULL) return;
    unsigned i = (unsigned)(fsn % FEC_CACHE);
    if (fr->c_sym[i] && fr->c_fsn[i] == fsn) return;
    cache_drop(c, fr, i);
    /* what fell out of reach (fragments come mostly in order: one out per one in) */
    unsigned old = (unsigned)((fsn + FEC_CACHE - 2 * fr->kmax) % FEC_CACHE);
    if (2 * fr->kmax < FEC_CACHE && fr->c_sym[old] && fr->c_fsn[old] + 2 * fr->kmax <= fsn)
        cache_drop(c, fr, old);
    /* no room: the fragment cannot help rebuild its group's others (never an error) */
    uint64_t dep[3];
    frag_dep(s, dep);
    uint8_t *sym = fec_hold(c, sym_len(s->flags, dep, s->len));
    if (sym == NULL) return;
    sym_put(sym, s->flags, dep, s->data, s->len);
    fr->c_sym[i] = sym;
    fr->c_fsn[i] = fsn;
}

/* Is fragment fsn of f still wanted (at or above base, neither present nor delivered)? */
static int frag_wanted(const tern__rflow *f, uint64_t fsn)
{
    if (fsn < f->base || fsn >= f->final_fsn) return 0;
    if (fsn - f->base >= f->slots_cap) return 1;
    const tern__rfrag *s = &f->slots[fsn % f->slots_cap];
    return !s->present && !s->done;
}

static void repaired_note(tern_conn *c, uint64_t flow, uint64_t fsn)
{
    tern__fec_conn *fc = c->flows.fec;
    for (unsigned i = 0; i < fc->n_done; i++) {
        if (fc->done[i].flow == flow && fc->done[i].fsn + fc->done[i].n == fsn &&
            fc->done[i].n < TERN__FEC_MAX_K) {
            fc->done[i].n++;
            return;
        }
    }
    if (fc->n_done == TERN__FEC_REPAIRED_MAX) return; /* forgotten: the sender retransmits */
    fc->done[fc->n_done].flow = flow;
    fc->done[fc->n_done].fsn = fsn;
    fc->done[fc->n_done].n = 1;
    fc->n_done++;
    tern__ep_mark_send(c->ep, c);
}

/* Feeds a rebuilt symbol to the flow exactly as a received FLOW_DATA; a first fragment gets
 * the time left of its group's deadline as its TTL. */
static int rebuilt_in(tern_conn *c, tern__rflow *f, uint64_t fsn, const uint8_t *sym, size_t len,
                      uint64_t deadline)
{
    /* the rebuilt bytes are the peer's: parsed with every bound checked */
    size_t dlen = (size_t)sym[1] << 8 | sym[2];
    const uint8_t *q = sym + TERN__FEC_SYM_HDR, *send = sym + len;
    uint64_t dep[3] = {0, 0, 0};
    if (sym[0] & TERN__FD_DEP)
        for (int i = 0; i < 3; i++) q = tern__get_varint(q, send, &dep[i]);
    if (q == NULL || dlen > (size_t)(send - q) || dlen > TERN_MAX_DATAGRAM ||
        (sym[0] & ~SYM_FLAGS))
        return TERN_ERR_PROTOCOL;
    uint8_t frame[TERN__FEC_SYM_MAX + 32];
    uint8_t *p = frame, *end = frame + sizeof(frame);
    uint64_t flags = sym[0];
    if ((flags & TERN__FD_BEGIN) && deadline) flags |= TERN__FD_TTL;
    if (fsn - f->base < f->slots_cap && f->slots[fsn % f->slots_cap].parts) {
        /* parts of it came (FLOW_DATA_PART): the whole must carry their flags exactly */
        flags = f->slots[fsn % f->slots_cap].flags;
        if (deadline == 0) deadline = c->rx.last; /* a TTL there already set its deadline */
    }
    p = tern__put_varint(p, end, f->id);
    p = tern__put_varint(p, end, fsn);
    p = tern__put_varint(p, end, flags);
    if (flags & TERN__FD_TTL)
        p = tern__put_varint(p, end,
                             deadline > c->rx.last ? (deadline - c->rx.last) / TERN_NS_PER_MS : 0);
    if (flags & TERN__FD_DEP)
        for (int i = 0; i < 3; i++) p = tern__put_varint(p, end, dep[i]);
    p = tern__put_varint(p, end, dlen);
    p = tern__put_bytes(p, end, q, dlen);
    if (p == NULL) return TERN_ERR_PROTOCOL;
    q = frame;
    c->st.fec_recovered++;
    repaired_note(c, f->id, fsn);
    return tern__flow_on_frame(c, TERN__FRAME_FLOW_DATA, &q, p);
}

/* The fragment fsn of f still held for delivery (received, not delivered), or NULL. */
static const tern__rfrag *frag_held(const tern__rflow *f, uint64_t fsn)
{
    if (fsn < f->base || fsn - f->base >= f->slots_cap) return NULL;
    const tern__rfrag *s = &f->slots[fsn % f->slots_cap];
    return s->present && !s->done && (s->data || s->len == 0) ? s : NULL;
}

/* Source symbol fsn of a group of symbol length len: from the cache, or from the flow's
 * window while the fragment waits for delivery (the first group of a flow, received before
 * its first repair told us to cache, is rebuilt that way as long as its message is not
 * complete). Written into out (len bytes, zero-padded) when out is not NULL. */
static int src_symbol(const tern__rflow *f, uint64_t fsn, size_t len, uint8_t *out)
{
    const uint8_t *sym = cache_get(f->fec, fsn);
    size_t n = sym != NULL ? sym_size(sym) : 0;
    if (sym != NULL && n <= len) {
        if (out) {
            memcpy(out, sym, n);
            memset(out + n, 0, len - n);
        }
        return 1;
    }
    const tern__rfrag *s = frag_held(f, fsn);
    uint64_t dep[3];
    if (s == NULL) return 0;
    frag_dep(s, dep);
    n = sym_len(s->flags, dep, s->len);
    if (n > len) return 0;
    if (out) {
        sym_put(out, s->flags, dep, s->data, s->len);
        memset(out + n, 0, len - n);
    }
    return 1;
}

/* Rebuilds what group g can rebuild; frees it once nothing of it is wanted. */
static int group_try(tern_conn *c, tern__rflow *f, fec_group *g)
{
    tern__fec_rflow *fr = f->fec;
    unsigned k = g->k, wanted = 0, have_n = 0;
    uint8_t have[TERN__FEC_MAX_K];
    for (unsigned j = 0; j < k; j++) {
        have[j] = (uint8_t)src_symbol(f, g->first + j, g->len, NULL);
        have_n += have[j];
        if (frag_wanted(f, g->first + j)) wanted++;
    }
    if (wanted == 0) {
        /* a fragment neither received (every one received since the flow's first repair is
         * in the cache) nor rebuilt: it was given up, its group lost more than the repair
         * that came could rebuild */
        if (have_n < k && !g->counted) c->st.fec_unrecoverable++;
        group_free(c, fr, g);
        return TERN_OK;
    }
    if (have_n + g->nrep < k) {
        g->miss = 0;
        for (unsigned j = 0; j < k; j++)
            if (!have[j]) g->miss |= (uint64_t)1 << j;
        return TERN_OK;
    }
    /* k symbols: rebuild every missing source into scratch, feed the wanted ones */
    size_t len = g->len, ss = tern__fec_scratch_size(k, g->m), bytes = (size_t)k * len + ss;
    uint8_t *buf = tern__malloc(&c->ep->alloc, bytes);
    if (buf == NULL) return TERN_OK; /* tried again at the next fragment or repair */
    uint8_t *src[TERN__FEC_MAX_K], *rep[TERN__FEC_MAX_M], rep_have[TERN__FEC_MAX_M];
    memset(rep_have, 0, sizeof(rep_have));
    for (unsigned j = 0; j < k; j++) {
        src[j] = buf + (size_t)j * len;
        if (!have[j]) memset(src[j], 0, len);
        else src_symbol(f, g->first + j, len, src[j]);
    }
    for (unsigned i = 0; i < TERN__FEC_MAX_M; i++) rep[i] = NULL;
    for (unsigned i = 0; i < g->nrep; i++) {
        rep[g->idx[i]] = g->rep[i];
        rep_have[g->idx[i]] = 1;
    }
    int rc = tern__fec_decode(k, g->m, len, src, have, rep, rep_have, buf + (size_t)k * len);
    uint64_t first = g->first, deadline = g->deadline;
    group_free(c, fr, g); /* before the rebuilt fragments go in: they may deliver */
    if (rc == TERN_OK) {
        for (unsigned j = 0; j < k && rc == TERN_OK; j++) {
            if (have[j] || !frag_wanted(f, first + j)) continue;
            if (c->state != TERN_CONN_ESTABLISHED) break;
            rc = rebuilt_in(c, f, first + j, src[j], len, deadline);
        }
    } else {
        rc = TERN_OK;
    }
    tern__free(&c->ep->alloc, buf, bytes);
    return rc;
}

int tern__fec_after_data(tern_conn *c, tern__rflow *f, uint64_t fsn)
{
    tern__fec_conn *fc = c->flows.fec;
    if (f->fec == NULL || fc == NULL || fc->rebuilding) return TERN_OK;
    fc->rebuilding = 1;
    int rc = TERN_OK;
    /* group_try frees only the group it looks at */
    fec_group *g = f->fec->groups;
    while (g && rc == TERN_OK && c->state == TERN_CONN_ESTABLISHED) {
        fec_group *next = g->next;
        int in = fsn >= g->first && fsn < g->first + g->k;
        /* a source the group was missing came after its repair: a retransmission (the sender
         * resends a fragment of a group only once the group's repair was all acknowledged or
         * lost), so that repair was exhausted (fec_unrecoverable, once a group) */
        if (in && (g->miss >> (fsn - g->first) & 1) && !g->counted) {
            c->st.fec_unrecoverable++;
            g->counted = 1;
        }
        if (g->first + g->k <= f->base || in) rc = group_try(c, f, g);
        g = next;
    }
    fc->rebuilding = 0;
    return rc;
}

static int on_repair(tern_conn *c, const uint8_t **pp, const uint8_t *end)
{
    uint64_t id, first, k, m, idx, ttl, len;
    const uint8_t *p = *pp;
    p = tern__get_varint(p, end, &id);
    p = tern__get_varint(p, end, &first);
    p = tern__get_varint(p, end, &k);
    p = tern__get_varint(p, end, &m);
    p = tern__get_varint(p, end, &idx);
    p = tern__get_varint(p, end, &ttl);
    p = tern__get_varint(p, end, &len);
    if (p == NULL || len > (uint64_t)(end - p)) return TERN_ERR_PROTOCOL;
    if (k < 1 || k > TERN__FEC_MAX_K || m < 1 || m > TERN__FEC_MAX_M || idx >= m ||
        len < TERN__FEC_SYM_HDR || len > TERN__FEC_SYM_MAX || first > UINT64_MAX - k ||
        ttl > TERN__FEC_MAX_TTL)
        return TERN_ERR_PROTOCOL;
    const uint8_t *data = p;
    *pp = p + len;
    c->st.fec_repair_received++;
    if ((id & 1) == (uint64_t)(c->is_server ? 1 : 0)) return TERN_ERR_PROTOCOL; /* ours */
    tern__rflow *f = tern__rflow_find(c, id);
    if (f == NULL || f->finished) {
        c->st.fec_dropped++; /* a flow not open yet or finished: nothing to rebuild for */
        return TERN_OK;
    }
    if (first + k > f->final_fsn || first + k > f->base + f->window) return TERN_ERR_PROTOCOL;
    tern__fec_conn *fc = fec_conn(c);
    if (fc == NULL) {
        c->st.fec_dropped++;
        return TERN_OK;
    }
    if (f->fec == NULL) {
        f->fec = fec_hold(c, sizeof(tern__fec_rflow));
        if (f->fec == NULL) {
            c->st.fec_dropped++;
            return TERN_OK;
        }
        memset(f->fec, 0, sizeof(tern__fec_rflow));
        f->fec->kmax = 16;
    }
    tern__fec_rflow *fr = f->fec;
    if (k > fr->kmax) fr->kmax = (unsigned)k;
    fec_group *g = fr->groups;
    while (g && g->first != first) g = g->next;
    if (g && (g->k != k || g->m != m || g->len != len)) return TERN_ERR_PROTOCOL;
    int wanted = 0;
    for (uint64_t q = first; q < first + k && !wanted; q++) wanted = frag_wanted(f, q);
    int dup = 0;
    for (unsigned i = 0; g && i < g->nrep; i++) dup |= g->idx[i] == idx;
    if (!wanted || dup || (g && g->nrep >= g->k)) {
        c->st.fec_dropped++; /* every fragment there, the same repair twice, or enough */
        if (g && !wanted) return group_try(c, f, g); /* frees it */
        return TERN_OK;
    }
    if (g == NULL) {
        g = fec_hold(c, sizeof(*g));
        if (g == NULL) {
            c->st.fec_dropped++;
            return TERN_OK;
        }
        memset(g, 0, sizeof(*g));
        g->first = first;
        g->k = (uint8_t)k;
        g->m = (uint8_t)m;
        g->len = (uint16_t)len;
        /* c->rx.last: this packet's arrival (at least 1 ns: 0 says none) */
        if (ttl) g->deadline = c->rx.last + (ttl - 1) * TERN_NS_PER_MS + (c->rx.last == 0);
        g->next = fr->groups;
        fr->groups = g;
    }
    uint8_t *sym = fec_hold(c, (size_t)len);
    if (sym == NULL) {
        c->st.fec_dropped++;
        if (g->nrep == 0) group_free(c, fr, g);
        return TERN_OK;
    }
    memcpy(sym, data, (size_t)len);
    g->idx[g->nrep] = (uint8_t)idx;
    g->rep[g->nrep] = sym;
    g->nrep++;
    fc->rebuilding = 1;
    int rc = group_try(c, f, g);
    fc->rebuilding = 0;
    /* groups wholly below the base (delivered or skipped) are of no more use */
    if (rc == TERN_OK && f->fec) {
        fec_group *h = f->fec->groups;
        while (h) {
            fec_group *next = h->next;
            if (h->first + h->k <= f->base) group_try(c, f, h); /* frees it, counted */
            h = next;
        }
    }
    return rc;
}

static int on_repaired(tern_conn *c, const uint8_t **pp, const uint8_t *end)
{
    uint64_t id, fsn, n;
    const uint8_t *p = *pp;
    p = tern__get_varint(p, end, &id);
    p = tern__get_varint(p, end, &fsn);
    p = tern__get_varint(p, end, &n);
    if (p == NULL || n < 1 || n > TERN__FEC_MAX_K || fsn > UINT64_MAX - n) return TERN_ERR_PROTOCOL;
    *pp = p;
    if ((id & 1) != (uint64_t)(c->is_server ? 1 : 0)) return TERN_ERR_PROTOCOL; /* not ours */
    tern__sflow *f = tern__sflow_find(c, id);
    if (f == NULL) return TERN_OK; /* finished and reaped */
    if (fsn + n > f->next_fsn) return TERN_ERR_PROTOCOL; /* never sent */
    /* the peer holds them: as good as acknowledged (a retransmission waiting is skipped).
     * Only those still in flight or lost are looked at (an acknowledgement looks the flow up
     * again): a peer naming the same 64 fragments again and again, 4 bytes a frame, costs a
     * look at each, and none below the base. */
    for (uint64_t q = fsn < f->base ? f->base : fsn; q < fsn + n; q++) {
        uint8_t st = f->frags[q % f->cap].state;
        if (st != FRAG_INFLIGHT && st != FRAG_LOST) continue;
        tern__sent_entry e;
        memset(&e, 0, sizeof(e));
        e.flow_id = id;
        e.fsn = q;
        e.kind = ENT_DATA;
        tern__flow_on_acked(c, &e);
    }
    return TERN_OK;
}

int tern__fec_on_frame(tern_conn *c, uint64_t type, const uint8_t **pp, const uint8_t *end)
{
    if (type == TERN__FRAME_REPAIR) return on_repair(c, pp, end);
    if (type == TERN__FRAME_REPAIRED) return on_repaired(c, pp, end);
    return TERN_ERR_PROTOCOL;
}

int tern__fec_has_control(const tern_conn *c)
{
    return c->flows.fec != NULL && c->flows.fec->n_done > 0;
}

uint8_t *tern__fec_write_control(tern_conn *c, uint8_t *p, const uint8_t *end)
{
    tern__fec_conn *fc = c->flows.fec;
    if (fc == NULL) return p;
    unsigned i = 0;
    for (; i < fc->n_done; i++) {
        uint8_t *q = tern__put_varint(p, end, TERN__FRAME_REPAIRED);
        q = tern__put_varint(q, end, fc->done[i].flow);
        q = tern__put_varint(q, end, fc->done[i].fsn);
        q = tern__put_varint(q, end, fc->done[i].n);
        if (q == NULL) break;
        p = q;
    }
    /* sent once: a lost REPAIRED costs a retransmission of those fragments, nothing more */
    memmove(fc->done, fc->done + i, (fc->n_done - i) * sizeof(fc->done[0]));
    fc->n_done -= i;
    return p;
}
