/*
 * Flows, the sending side: message queues, fragmentation, the retransmission queue, giving up
 * messages past their deadline or retransmission budget, what acknowledgements and losses do to
 * fragments, and the scheduler that fills a packet's payload with control frames first, then
 * retransmissions and new data in priority order (7 first; flows of one priority take turns).
 * The flow's public calls (open, send, close) are in flow.c.
 *
 * Giving up: a PARTIAL or UNRELIABLE message whose deadline passed, or a PARTIAL fragment over
 * its retransmission budget, gives up its whole message: every fragment of it, sent or not. The
 * sender's base then moves past them and a FLOW_FORWARD tells the receiver to stop waiting.
 * RELIABLE messages and control frames are never given up.
 *
 * Re-cutting: a fragment keeps its number and its bytes for good, but a lost one that no
 * longer fits a packet of the current size (the path MTU dropped after it was cut, or a black
 * hole is suspected: pmtu.c) is resent as parts (FLOW_DATA_PART, flow.h) of a size that fits
 * the base size on any path, relay header included; each part is acknowledged, lost and resent
 * on its own, and the fragment counts as acknowledged once every part is (or the whole, sent
 * earlier, was after all). Fragments cut after the drop are simply cut smaller.
 */
#include <string.h>

#include "core/conn.h"
#include "core/fec.h"
#include "core/flow_int.h"

#define MAX_FRAG_HDR 24 /* worst-case FLOW_DATA header */

/* ---------------------------------------------------------------- sender */

/* The last moment a message can still be (re)sent with any hope of arriving in time: its
 * deadline less the RTT (the bound of the one-way delay that the TTL also uses). Sending later
 * would only spend the link on data the receiver must drop. */
/* A bound, erring long, of how long a packet sent now takes to arrive. The one-way delay is
 * never more than a round trip measured now, queue included; once nothing is in flight the
 * queue has drained and the minimum RTT bounds it, so a sender that stopped sending is not
 * locked out by an old, queue-inflated RTT. */
static uint64_t owd_bound(const tern_conn *c)
{
    if (!c->rec.rtt.has_sample) return c->ep->s.initial_rtt_ns;
    if (c->rec.r == NULL || c->rec.r->bytes_in_flight == 0) return c->rec.rtt.min;
    return c->rec.rtt.latest > c->rec.rtt.srtt ? c->rec.rtt.latest : c->rec.rtt.srtt;
}

uint64_t tern__flow_owd_bound(const tern_conn *c)
{
    return owd_bound(c);
}

static uint64_t send_cutoff(const tern_conn *c, const tern__msg *m)
{
    if (m->deadline == TERN_TIME_NEVER) return TERN_TIME_NEVER;
    uint64_t d = owd_bound(c);
    /* a message already started may finish while its fragments can still arrive in time:
     * dropping its rest would waste what was sent */
    if (m->cut > 0) return m->deadline > d ? m->deadline - d : 0;
    /* a new one must also fit on the wire at the pacing rate before then */
    if (c->rec.r) {
        const tern__cc *cc = &c->rec.r->cc;
        uint64_t rate = cc->ops->pacing_rate(cc->st, c->rec.rtt.srtt);
        if (rate) d += (uint64_t)(m->len - m->cut) * TERN_NS_PER_S / rate;
    }
    /* ... and some slack for higher priorities cutting in between its fragments */
    d += c->rec.rtt.srtt / 4;
    return m->deadline > d ? m->deadline - d : 0;
}

/* How many parts a re-cut fragment (part_size > 0) is sent in. */
static unsigned frag_parts(const tern__frag *fr)
{
    return (fr->len + fr->part_size - 1u) / fr->part_size;
}

static tern__frag *frag_at(const tern__sflow *f, uint64_t fsn)
{
    return &f->frags[fsn % f->cap];
}

static void free_msg(tern_conn *c, tern__sflow *f, tern__msg *m)
{
    f->queued_bytes -= m->len;
    tern__flow_msg_ended(c, f, m); /* frees it, or keeps a referenced one for its release */
}

/* A fragment reaches its end (acknowledged or given up). */
static void frag_release(tern_conn *c, tern__sflow *f, tern__frag *fr)
{
    tern__msg *m = fr->msg;
    fr->msg = NULL;
    if (m == NULL) return;
    m->live_frags--;
    if (m->live_frags == 0 && !m->queued) free_msg(c, f, m);
}

/* What FLOW_FORWARD says: the base, or, when the base stops inside a message still being
 * delivered (its first fragments acknowledged, the rest on the way or not cut yet), that
 * message's BEGIN: the receiver drops what is incomplete below the forward point, and would
 * drop that message's head, leaving its rest undeliverable. */
static uint64_t forward_point(const tern__sflow *f)
{
    const tern__msg *m;
    if (f->base < f->next_fsn) {
        const tern__frag *fr = &f->frags[f->base % f->cap];
        if (fr->flags & TERN__FD_BEGIN) return f->base;
        m = fr->msg;
    } else {
        m = f->head && f->head->cut > 0 ? f->head : NULL; /* partly cut: open */
    }
    return m && !m->abandoned && f->base_begin < f->base ? f->base_begin : f->base;
}

/* Moves base past finished fragments; a given-up one makes a FLOW_FORWARD necessary. */
static void sflow_advance(tern_conn *c, tern__sflow *f)
{
    while (f->base < f->next_fsn) {
        tern__frag *fr = frag_at(f, f->base);
        if (fr->state != FRAG_ACKED && fr->state != FRAG_GIVEN_UP) break;
        if (fr->state == FRAG_GIVEN_UP) f->forward_pending = 1;
        if (fr->flags & TERN__FD_BEGIN) f->base_begin = f->base;
        fr->state = FRAG_NONE;
        f->base++;
    }
    if (f->forward_pending && f->base <= f->forward_sent) f->forward_pending = 0;
    if (f->forward_pending) tern__ep_mark_send(c->ep, c);
}

/* ---------------------------------------------------------------- frame dependencies */

static int dead_known(const tern__sflow *f, uint64_t id)
{
    return id < f->next_msg_id && f->next_msg_id - id <= TERN__DEP_WINDOW;
}

static int dead_get(const tern__sflow *f, uint64_t id)
{
    uint64_t b = id % TERN__DEP_WINDOW;
    return dead_known(f, id) && (f->dead[b / 64] >> (b % 64) & 1u);
}

static void dead_set(tern__sflow *f, uint64_t id, int v)
{
    uint64_t b = id % TERN__DEP_WINDOW, bit = (uint64_t)1 << (b % 64);
    if (v) f->dead[b / 64] |= bit;
    else f->dead[b / 64] &= ~bit;
}

int tern__flow_msg_check(const tern__sflow *f, const tern_msg_opts *o)
{
    uint32_t fl = o->flags;
    if (fl & ~(uint32_t)(TERN_MSG_KEYFRAME | TERN_MSG_DEPENDS | TERN_MSG_GOP))
        return TERN_ERR_INVALID_ARG;
    if ((fl & TERN_MSG_KEYFRAME) && (fl & (TERN_MSG_DEPENDS | TERN_MSG_GOP)))
        return TERN_ERR_INVALID_ARG; /* a keyframe depends on nothing */
    if (fl && (!f->cfg.ordered || f->cfg.stream)) return TERN_ERR_INVALID_ARG;
    if (fl & TERN_MSG_DEPENDS) {
        if (o->depends_on >= f->next_msg_id) return TERN_ERR_INVALID_ARG; /* not an earlier one */
        if (dead_get(f, o->depends_on)) return TERN_ERR_STATE;
    }
    if ((fl & TERN_MSG_GOP) && f->gop_broken) return TERN_ERR_STATE;
    return TERN_OK;
}

void tern__flow_msg_number(tern__sflow *f, tern__msg *m, const tern_msg_opts *o)
{
    uint32_t fl = o ? o->flags : 0;
    if (o && f->cfg.ordered && !f->cfg.stream) f->tag_ids = 1;
    if (fl) f->deps_used = 1;
    m->id = f->next_msg_id++;
    dead_set(f, m->id, 0); /* the bit of the ID a window back, forgotten */
    m->mflags = (uint8_t)fl;
    m->dep = (fl & TERN_MSG_DEPENDS) ? o->depends_on : TERN__NO_MSG;
    if (fl & TERN_MSG_KEYFRAME) {
        f->gop_id = m->id;
        f->gop_broken = 0;
    }
    m->gop = f->gop_id;
    m->tagged = f->tag_ids;
}

/* How a message is given up (msg_give_up). */
enum {
    GU_CASCADE = 1,  /* drop what depends on it too (msgs_dropped_dep) */
    GU_INFLIGHT = 2, /* give up its fragments in flight too (tern_flow_flush ALL) */
};

static void msg_give_up(tern_conn *c, tern__sflow *f, tern__msg *m, int how);

/* Does m need a message that died: its dependency, or (GOP) an earlier one of its group, gop
 * being the group of the last message that died? */
static int msg_needs_dead(const tern__sflow *f, const tern__msg *m, uint64_t gop)
{
    if (m->dep != TERN__NO_MSG && dead_get(f, m->dep)) return 1;
    return (m->mflags & TERN_MSG_GOP) && m->gop == gop;
}

/* Message `root` died: every message after it, in flight (waiting for retransmission) or
 * queued, that needs it, directly, through a chain, or through its group of pictures, is
 * dropped too. Messages are numbered in the order they are cut, so one pass in ID order (the
 * fragment ring, then the queue) sees a dependency die before what depends on it. */
static void drop_dependents(tern_conn *c, tern__sflow *f, uint64_t root, uint64_t root_gop)
{
    uint64_t gop = root_gop;
    for (uint64_t fsn = f->base; fsn < f->next_fsn; fsn++) {
        tern__msg *m = frag_at(f, fsn)->msg;
        if (m == NULL || m->abandoned || m->id <= root) continue;
        if (!msg_needs_dead(f, m, gop)) continue;
        c->st.msgs_dropped_dep++;
        gop = m->gop;
        msg_give_up(c, f, m, 0);
    }
    tern__msg *m = f->head;
    while (m) {
        tern__msg *next = m->next; /* m may be freed below */
        if (!m->abandoned && m->id > root && msg_needs_dead(f, m, gop)) {
            c->st.msgs_dropped_dep++;
            gop = m->gop;
            msg_give_up(c, f, m, 0);
        }
        m = next;
    }
}

/* Gives up a whole message: its fragments waiting for retransmission (GU_INFLIGHT: in flight
 * too) and its uncut rest. Fragments in flight are otherwise left to arrive (they usually do);
 * if one of them is lost it is given up then, since its message is abandoned. The message is
 * remembered as dead (tern_flow_send_msg refuses what depends on it); GU_CASCADE drops its
 * dependents, and a death in the current group of pictures of a flow that uses dependencies
 * owes the application a keyframe request. */
static void msg_give_up(tern_conn *c, tern__sflow *f, tern__msg *m, int how)
{
    if (m->abandoned) return;
    m->abandoned = 1;
    c->st.messages_abandoned++;
    c->flows.last_give_up = c->tx.last > c->rx.last ? c->tx.last : c->rx.last;
    if (dead_known(f, m->id)) dead_set(f, m->id, 1);
    if (m->gop == f->gop_id) {
        f->gop_broken = 1;
        if (f->deps_used) {
            f->kf_pending = 1;
            f->kf_gop = f->gop_id;
        }
    }
    int was_cut = !m->queued; /* (an empty message in the queue has cut == len) */
    /* a message partly on the wire whose rest is dropped never ends at the receiver, which
     * would wait for its END for good (a message without a deadline is never skipped there):
     * its fragments in flight are given up too, so the base moves past them and FLOW_FORWARD
     * tells the receiver to stop waiting */
    if (!was_cut && m->cut > 0) {
        how |= GU_INFLIGHT;
        /* ... and those already acknowledged (the receiver holds them: the message is the
         * last one cut, from first_fsn on) count as given up, so the base moving past them
         * sends FLOW_FORWARD; if it has, one is due now */
        if (m->first_fsn < f->base) f->forward_pending = 1;
        for (uint64_t fsn = m->first_fsn > f->base ? m->first_fsn : f->base; fsn < f->next_fsn;
             fsn++)
            if (frag_at(f, fsn)->state == FRAG_ACKED) frag_at(f, fsn)->state = FRAG_GIVEN_UP;
    }
    m->live_frags++; /* hold m while releasing its fragments */
    for (uint64_t fsn = f->base; fsn < f->next_fsn; fsn++) {
        tern__frag *fr = frag_at(f, fsn);
        if (fr->msg == m &&
            (fr->state == FRAG_LOST || ((how & GU_INFLIGHT) && fr->state == FRAG_INFLIGHT))) {
            fr->state = FRAG_GIVEN_UP;
            frag_release(c, f, fr);
        }
    }
    if (!was_cut) {
        f->uncut_bytes -= m->len - m->cut;
        /* the rest was never cut: drop it from the queue */
        tern__msg **pp = &f->head, *prev = NULL;
        while (*pp && *pp != m) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = m->next;
            if (f->tail == m) f->tail = prev;
        }
        m->next = NULL;
        m->queued = 0;
        m->cut = m->len;
    }
    uint64_t id = m->id, gop = m->gop;
    m->live_frags--;
    if (m->live_frags == 0) free_msg(c, f, m);
    if ((how & GU_CASCADE) && f->deps_used) drop_dependents(c, f, id, gop); /* else none */
    sflow_advance(c, f);
}

/* A KEYFRAME_REQUEST from the receiver: it skipped message mid for a lost dependency. A
 * keyframe queued after mid answers it already; a flow that never named a dependency or a
 * keyframe has no encoder to ask. */
void tern__flow_on_kf_request(tern_conn *c, tern__sflow *f, uint64_t mid)
{
    (void)c;
    if (!f->deps_used) return; /* not a flow of frames: nothing to ask an encoder */
    if (f->gop_id != TERN__NO_MSG && f->gop_id > mid) return;
    f->kf_pending = 1;
    f->kf_gop = f->gop_id;
}

int64_t tern_flow_flush(tern_conn *c, uint64_t flow_id, int mode)
{
    tern__sflow *f = c ? tern__sflow_find(c, flow_id) : NULL;
    if (f == NULL) return TERN_ERR_NOT_FOUND;
    if (mode != TERN_FLUSH_UNSENT && mode != TERN_FLUSH_ALL) return TERN_ERR_INVALID_ARG;
    if (mode == TERN_FLUSH_ALL && f->cfg.reliability == TERN_FLOW_RELIABLE)
        return TERN_ERR_INVALID_ARG;
    uint64_t bytes = 0;
    if (mode == TERN_FLUSH_ALL) {
        for (uint64_t fsn = f->base; fsn < f->next_fsn; fsn++) {
            tern__msg *m = frag_at(f, fsn)->msg;
            if (m == NULL || m->abandoned) continue;
            bytes += m->len;
            msg_give_up(c, f, m, GU_INFLIGHT);
        }
    }
    /* what was not begun; a message partly cut stays unless FLUSH_ALL gave it up above */
    tern__msg *m = f->head;
    while (m) {
        tern__msg *next = m->next;
        if (!m->abandoned && m->cut == 0) {
            bytes += m->len;
            msg_give_up(c, f, m, 0);
        }
        m = next;
    }
    c->st.flushed_bytes += bytes;
    tern__ep_mark_send(c->ep, c);
    return (int64_t)bytes;
}

void tern__flow_config_defaults(tern_flow_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->reliability = TERN_FLOW_RELIABLE;
    cfg->ordered = 1;
    cfg->priority = 3;
    cfg->fec = TERN_FEC_OFF;
    cfg->fec_group = 16;
    cfg->fec_repair_pct = 25;
}

static int sflow_grow(tern_conn *c, tern__sflow *f, size_t need)
{
    if (need <= f->cap) return TERN_OK;
    size_t ncap = f->cap ? f->cap : 64;
    while (ncap < need) ncap *= 2;
    tern__frag *nf = tern__conn_calloc(c, ncap * sizeof(*nf), 0);
    if (nf == NULL) return TERN_ERR_NOMEM;
    for (uint64_t fsn = f->base; fsn < f->next_fsn; fsn++) nf[fsn % ncap] = f->frags[fsn % f->cap];
    if (f->frags) tern__conn_dealloc(c, f->frags, f->cap * sizeof(*f->frags));
    f->frags = nf;
    f->cap = ncap;
    return TERN_OK;
}

static int lost_push(tern_conn *c, tern__sflow *f, uint64_t fsn)
{
    if (f->lost_n == f->lost_cap) {
        size_t ncap = f->lost_cap ? f->lost_cap * 2 : 32;
        uint64_t *nl = tern__conn_alloc(c, ncap * sizeof(*nl), 0);
        if (nl == NULL) return TERN_ERR_NOMEM;
        for (size_t i = 0; i < f->lost_n; i++) nl[i] = f->lost[(f->lost_head + i) % f->lost_cap];
        if (f->lost) tern__conn_dealloc(c, f->lost, f->lost_cap * sizeof(*f->lost));
        f->lost = nl;
        f->lost_cap = ncap;
        f->lost_head = 0;
    }
    f->lost[(f->lost_head + f->lost_n) % f->lost_cap] = fsn;
    f->lost_n++;
    return TERN_OK;
}

void tern__sflow_free(tern_conn *c, tern__sflow *f)
{
    f->freeing = 1; /* what ends now was not delivered */
    for (uint64_t fsn = f->base; fsn < f->next_fsn; fsn++) {
        tern__frag *fr = frag_at(f, fsn);
        if (fr->msg) frag_release(c, f, fr);
    }
    while (f->head) {
        tern__msg *m = f->head;
        f->head = m->next;
        if (m->live_frags == 0) free_msg(c, f, m);
        else m->cut = m->len; /* freed when its last fragment is released: cannot happen now */
    }
    tern__flow_releases(c, f); /* every referenced buffer, exactly once */
    tern__fec_tx_free(c, f);
    if (f->frags) tern__conn_dealloc(c, f->frags, f->cap * sizeof(*f->frags));
    if (f->lost) tern__conn_dealloc(c, f->lost, f->lost_cap * sizeof(*f->lost));
    tern__conn_dealloc(c, f, sizeof(*f));
}

/* Unlinks and frees sending flows that are closed and fully acknowledged. */
void tern__sflows_reap(tern_conn *c)
{
    tern__sflow **pp = &c->flows.send;
    while (*pp) {
        tern__sflow *f = *pp;
        if (f->closing && f->fin_acked && f->base == f->next_fsn && f->head == NULL) {
            *pp = f->next;
            tern__sflow_free(c, f);
            c->flows.n_send--;
            continue;
        }
        pp = &f->next;
    }
}

/* ---------------------------------------------------------------- acknowledgement and loss */

void tern__flow_on_acked(tern_conn *c, const tern__sent_entry *e)
{
    tern__sflow *f = tern__sflow_find(c, e->flow_id);
    if (e->kind == ENT_MAXFLOW || e->kind == ENT_KFREQ || f == NULL) return;
    if (e->kind == ENT_REPAIR) {
        tern__fec_repair_done(c, f, e);
        return;
    }
    switch (e->kind) {
    case ENT_DATA: {
        if (e->fsn < f->base || e->fsn >= f->next_fsn) return;
        tern__frag *fr = frag_at(f, e->fsn);
        if (fr->state == FRAG_ACKED || fr->state == FRAG_GIVEN_UP || fr->state == FRAG_NONE) return;
        if (e->part && fr->part_size) {
            /* one part: the fragment is acknowledged when all of them are */
            uint8_t bit = (uint8_t)(1u << (e->part - 1));
            fr->part_acked |= bit;
            fr->part_lost &= (uint8_t)~bit; /* a late ACK of a part already requeued */
            if (fr->part_acked != (uint8_t)((1u << frag_parts(fr)) - 1)) {
                /* nothing left to resend: a requeued entry is skipped (state INFLIGHT) */
                if (fr->state == FRAG_LOST && fr->part_lost == 0) fr->state = FRAG_INFLIGHT;
                return;
            }
        }
        if (fr->msg && fr->msg->abandoned) {
            /* a fragment of a message given up, arriving after all: the message never ends
             * at the receiver, which must be told to drop it (FLOW_FORWARD), as if this one
             * had been given up too; an acknowledged one would let the base move past it
             * without a FLOW_FORWARD once one had been sent below it, and the receiver would
             * hold it for good */
            fr->state = FRAG_GIVEN_UP;
            frag_release(c, f, fr);
            sflow_advance(c, f);
            break;
        }
        fr->state = FRAG_ACKED;
        c->st.stream_bytes_sent += fr->len;
        f->acked_bytes += fr->len;
        frag_release(c, f, fr);
        sflow_advance(c, f);
        break;
    }
    case ENT_FIN:
        f->fin_acked = 1;
        break;
    default:
        break;
    }
}

void tern__flow_on_lost(tern_conn *c, const tern__sent_entry *e, uint64_t now)
{
    if (e->kind == ENT_MAXFLOW) {
        tern__rflow *rf = tern__rflow_find(c, e->flow_id);
        if (rf && !rf->finished) rf->max_pending = 1;
        return;
    }
    if (e->kind == ENT_KFREQ) { /* again, unless the keyframe came meanwhile */
        tern__rflow *rf = tern__rflow_find(c, e->flow_id);
        if (rf && !rf->finished && rf->kf_want == e->fsn) {
            rf->kf_pending = 1;
            tern__ep_mark_send(c->ep, c);
        }
        return;
    }
    tern__sflow *f = tern__sflow_find(c, e->flow_id);
    if (f == NULL) return;
    switch (e->kind) {
    case ENT_DATA: {
        if (e->fsn < f->base || e->fsn >= f->next_fsn) return;
        tern__frag *fr = frag_at(f, e->fsn);
        uint8_t bit = e->part && fr->part_size ? (uint8_t)(1u << (e->part - 1)) : 0;
        /* a part may be lost while another one of its fragment waits for retransmission */
        if (fr->state != FRAG_INFLIGHT && !(bit && fr->state == FRAG_LOST)) return;
        if (bit && (fr->part_acked & bit)) return;
        /* repair of its group is on its way: the receiver may rebuild it (fec.c decides
         * later, once that repair was acknowledged or lost) */
        if (!e->part && tern__fec_hold_lost(c, f, e->fsn)) return;
        if (e->released) c->st.fec_unsaved++;
        tern__msg *m = fr->msg;
        int give_up = f->cfg.reliability == TERN_FLOW_UNRELIABLE || (m && m->abandoned) ||
                      (m && now >= send_cutoff(c, m)) ||
                      (f->cfg.reliability == TERN_FLOW_PARTIAL && f->cfg.max_retransmits &&
                       fr->retx >= f->cfg.max_retransmits);
        if (give_up) {
            if (m) {
                m->live_frags++; /* hold m across the calls below */
                msg_give_up(c, f, m, GU_CASCADE);
            }
            fr->state = FRAG_GIVEN_UP;
            frag_release(c, f, fr);
            if (m) {
                m->live_frags--;
                if (m->live_frags == 0 && !m->queued) free_msg(c, f, m);
            }
            sflow_advance(c, f);
        } else if (bit) {
            fr->part_lost |= bit;
            if (fr->state == FRAG_INFLIGHT) { /* else it waits in the queue already */
                fr->state = FRAG_LOST;
                if (lost_push(c, f, e->fsn) != TERN_OK) {
                    fr->state = FRAG_INFLIGHT; /* retried by PTO */
                    fr->part_lost &= (uint8_t)~bit;
                }
            }
        } else {
            fr->state = FRAG_LOST;
            /* a re-cut fragment lost whole again: every part not acknowledged goes again */
            if (fr->part_size)
                fr->part_lost = (uint8_t)(((1u << frag_parts(fr)) - 1) & ~fr->part_acked);
            if (lost_push(c, f, e->fsn) != TERN_OK) fr->state = FRAG_INFLIGHT; /* retried by PTO */
        }
        break;
    }
    case ENT_FIN:
        if (!f->fin_acked) f->fin_pending = 1;
        break;
    case ENT_REPAIR:
        c->st.fec_repair_lost++;
        tern__fec_repair_done(c, f, e);
        break;
    case ENT_FORWARD:
        if (f->base > 0) {
            f->forward_sent = 0;
            f->forward_pending = 1;
        }
        break;
    default:
        break;
    }
    tern__ep_mark_send(c->ep, c);
}

/* ---------------------------------------------------------------- scheduler */

static int add_entry(tern__sent *rec, uint64_t flow, uint64_t fsn, uint8_t kind, uint8_t part)
{
    if (rec->n >= TERN__PKT_ENTRIES) return 0;
    rec->e[rec->n].flow_id = flow;
    rec->e[rec->n].fsn = fsn;
    rec->e[rec->n].kind = kind;
    rec->e[rec->n].part = part;
    rec->e[rec->n].released = 0;
    rec->n++;
    return 1;
}

/* Control frames of every flow: MAX_FLOW, KEYFRAME_REQUEST, FLOW_FORWARD, FLOW_FIN. */
uint8_t *tern__flow_write_control(tern_conn *c, uint8_t *p, const uint8_t *end, tern__sent *rec)
{
    uint8_t *q;
    for (tern__rflow *f = c->flows.recv; f; f = f->next) {
        if (!f->max_pending || rec->n >= TERN__PKT_ENTRIES) continue;
        uint64_t max = f->base + f->window;
        q = tern__put_varint(p, end, TERN__FRAME_MAX_FLOW);
        q = tern__put_varint(q, end, f->id);
        q = tern__put_varint(q, end, max);
        if (q == NULL) return p;
        p = q;
        f->advertised = max;
        f->max_pending = 0;
        add_entry(rec, f->id, max, ENT_MAXFLOW, 0);
    }
    for (tern__rflow *f = c->flows.recv; f; f = f->next) {
        /* frame-aware delivery: we skipped f->kf_want for a lost dependency */
        if (!f->kf_pending || f->kf_want == TERN__NO_MSG || rec->n >= TERN__PKT_ENTRIES) continue;
        q = tern__put_varint(p, end, TERN__FRAME_KEYFRAME_REQUEST);
        q = tern__put_varint(q, end, f->id);
        q = tern__put_varint(q, end, f->kf_want);
        if (q == NULL) return p;
        p = q;
        f->kf_pending = 0;
        f->kf_sent = 1;
        f->kf_last = c->tx.last > c->rx.last ? c->tx.last : c->rx.last; /* about now */
        c->st.keyframe_requests_sent++;
        add_entry(rec, f->id, f->kf_want, ENT_KFREQ, 0);
    }
    for (tern__sflow *f = c->flows.send; f; f = f->next) {
        if (f->forward_pending && rec->n < TERN__PKT_ENTRIES) {
            q = tern__put_varint(p, end, TERN__FRAME_FLOW_FORWARD);
            q = tern__put_varint(q, end, f->id);
            uint64_t fwd = forward_point(f);
            q = tern__put_varint(q, end, fwd);
            if (q == NULL) return p;
            p = q;
            f->forward_sent = fwd;
            f->forward_pending = 0;
            add_entry(rec, f->id, fwd, ENT_FORWARD, 0);
        }
        if (f->closing && !f->fin_acked && f->head == NULL && rec->n < TERN__PKT_ENTRIES &&
            (f->fin_pending || f->final_fsn == UINT64_MAX)) {
            f->final_fsn = f->next_fsn;
            q = tern__put_varint(p, end, TERN__FRAME_FLOW_FIN);
            q = tern__put_varint(q, end, f->id);
            q = tern__put_varint(q, end, f->final_fsn);
            if (q == NULL) return p;
            p = q;
            f->fin_pending = 0;
            add_entry(rec, f->id, f->final_fsn, ENT_FIN, 0);
        }
    }
    return tern__fec_write_control(c, p, end); /* REPAIRED */
}

/* The DEP fields of a message's BEGIN fragment (docs/protocol.md 6.2): its ID, the distance
 * back to the message it depends on (0: none), and its group: 0 none, 1 a keyframe, n + 1 it
 * depends on every message from n back (its keyframe's, or message 0 before any keyframe). */
static void dep_fields(const tern__msg *m, uint64_t v[3])
{
    v[0] = m->id;
    v[1] = m->dep == TERN__NO_MSG ? 0 : m->id - m->dep;
    v[2] = 0;
    if (m->mflags & TERN_MSG_KEYFRAME) v[2] = 1;
    else if (m->mflags & TERN_MSG_GOP) {
        uint64_t n = m->id - (m->gop == TERN__NO_MSG ? 0 : m->gop);
        v[2] = n ? n + 1 : 0;
    }
}

static int has_dep(const tern__frag *fr)
{
    return (fr->flags & TERN__FD_BEGIN) && fr->msg->tagged;
}

int tern__flow_frag_dep(const tern__frag *fr, uint64_t v[3])
{
    if (!has_dep(fr)) return 0;
    dep_fields(fr->msg, v);
    return 1;
}

/* Bytes of the DEP fields a fragment carries (0: none). */
static size_t dep_len(const tern__frag *fr)
{
    if (!has_dep(fr)) return 0;
    uint64_t v[3];
    dep_fields(fr->msg, v);
    return tern__varint_len(v[0]) + tern__varint_len(v[1]) + tern__varint_len(v[2]);
}

/* A data frame's header up to its length: type, flow, fsn, flags, [ttl], [DEP fields]. */
static uint8_t *put_frag_hdr(const tern_conn *c, uint8_t *p, const uint8_t *end, uint64_t type,
                             const tern__sflow *f, uint64_t fsn, const tern__frag *fr, uint64_t now)
{
    uint8_t flags = (uint8_t)(fr->flags | (f->cfg.ordered ? TERN__FD_ORDERED : 0) |
                              (f->cfg.stream ? TERN__FD_STREAM : 0) |
                              (has_dep(fr) ? TERN__FD_DEP : 0));
    uint64_t ttl = 0;
    if ((fr->flags & TERN__FD_BEGIN) && fr->msg->deadline != TERN_TIME_NEVER) {
        /* The time left when it reaches the receiver, which has no synchronised clock: the
         * time left now less a generous bound of the one-way delay (owd_bound), so the
         * receiver does not deliver after the deadline; it may drop a message a little early. */
        uint64_t d = owd_bound(c);
        uint64_t left = fr->msg->deadline > now ? fr->msg->deadline - now : 0;
        flags |= TERN__FD_TTL;
        ttl = left > d ? (left - d) / TERN_NS_PER_MS : 0;
    }
    p = tern__put_varint(p, end, type);
    p = tern__put_varint(p, end, f->id);
    p = tern__put_varint(p, end, fsn);
    p = tern__put_varint(p, end, flags);
    if (flags & TERN__FD_TTL) p = tern__put_varint(p, end, ttl);
    if (flags & TERN__FD_DEP) {
        uint64_t v[3];
        dep_fields(fr->msg, v);
        for (int i = 0; i < 3; i++) p = tern__put_varint(p, end, v[i]);
    }
    return p;
}

static const uint8_t *frag_bytes(const tern__frag *fr)
{
    return (fr->msg->is_ref ? fr->msg->ref : fr->msg->data) + fr->off;
}

static uint8_t *put_fragment(const tern_conn *c, uint8_t *p, const uint8_t *end,
                             const tern__sflow *f, uint64_t fsn, const tern__frag *fr, uint64_t now)
{
    p = put_frag_hdr(c, p, end, TERN__FRAME_FLOW_DATA, f, fsn, fr, now);
    p = tern__put_varint(p, end, fr->len);
    return tern__put_bytes(p, end, frag_bytes(fr), fr->len);
}

/* Part idx of a re-cut fragment: FLOW_DATA_PART with the fragment's length and the offset. */
static uint8_t *put_part(const tern_conn *c, uint8_t *p, const uint8_t *end, const tern__sflow *f,
                         uint64_t fsn, const tern__frag *fr, unsigned idx, uint64_t now)
{
    size_t off = (size_t)idx * fr->part_size;
    size_t n = fr->len - off < fr->part_size ? fr->len - off : fr->part_size;
    p = put_frag_hdr(c, p, end, TERN__FRAME_FLOW_DATA_PART, f, fsn, fr, now);
    p = tern__put_varint(p, end, fr->len);
    p = tern__put_varint(p, end, off);
    p = tern__put_varint(p, end, n);
    return tern__put_bytes(p, end, frag_bytes(fr) + off, n);
}

/* The worst case of a FLOW_DATA_PART header: type, flow, fsn and ttl of 8 bytes, flags of 1,
 * the fragment's length, offset and part length of 2 (each below 16384); the DEP fields of a
 * BEGIN fragment come on top (dep_len). */
#define MAX_PART_HDR (1 + 8 + 8 + 1 + 8 + 2 + 2 + 2)

/* The bytes of a part: what fits a packet of the base size (the smaller of ours and the
 * peer's max_udp_payload) with the relay header in front, so parts fit whatever path the
 * connection moves to and however small the discovered size becomes. */
static size_t part_size(const tern_conn *c)
{
    size_t base = c->ep->s.max_udp_payload;
    if (c->peer.max_udp_payload && c->peer.max_udp_payload < base) base = c->peer.max_udp_payload;
    return base - TERN__RELAY_HDR_LEN - tern__conn_packet_overhead() - MAX_PART_HDR;
}

/* Does the whole fragment still fit a packet of the current size? */
static int frag_fits(const tern_conn *c, const tern__sflow *f, uint64_t fsn, const tern__frag *fr,
                     uint64_t now)
{
    uint8_t hdr[MAX_PART_HDR + 3 * 8];
    size_t h = (size_t)(put_frag_hdr(c, hdr, hdr + sizeof(hdr), TERN__FRAME_FLOW_DATA, f, fsn, fr,
                                     now) -
                        hdr);
    size_t room = tern__conn_max_payload(c) - tern__conn_packet_overhead();
    return h + tern__varint_len(fr->len) + fr->len <= room;
}

/* Re-cuts a lost fragment into parts, every one of them waiting for retransmission. */
static void frag_split(const tern_conn *c, tern__frag *fr)
{
    size_t ps = part_size(c) - dep_len(fr);
    size_t n = (fr->len + ps - 1) / ps;
    if (n > TERN__FRAG_MAX_PARTS) { /* cannot happen: a fragment is below TERN_MAX_DATAGRAM */
        n = TERN__FRAG_MAX_PARTS;
        ps = (fr->len + n - 1) / n;
    }
    fr->part_size = (uint16_t)ps;
    fr->part_acked = 0;
    fr->part_lost = (uint8_t)((1u << n) - 1);
}

/* Drops queued messages that can no longer arrive in time (never RELIABLE ones). Messages are
 * queued in order, so their deadlines grow: looking at the head is enough, and keeps this O(1)
 * per packet however long the queue. */
static void expire_messages(tern_conn *c, tern__sflow *f, uint64_t now)
{
    if (f->cfg.reliability == TERN_FLOW_RELIABLE) return;
    while (f->head && now >= send_cutoff(c, f->head)) {
        tern__msg *m = f->head;
        msg_give_up(c, f, m, GU_CASCADE);
        if (f->head == m) break; /* cannot happen: a given-up message leaves the queue */
    }
}

/* The priority of what the flow would send next, or -1. */
static int sflow_next_priority(tern_conn *c, tern__sflow *f, uint64_t now)
{
    if (f->fec) tern__fec_release(c, f, now); /* lost fragments their repair did not save */
    while (f->lost_n) {
        uint64_t fsn = f->lost[f->lost_head];
        tern__frag *fr = fsn >= f->base && fsn < f->next_fsn ? frag_at(f, fsn) : NULL;
        if (fr && fr->state == FRAG_LOST && fr->msg) {
            tern__msg *m = fr->msg;
            if (f->cfg.reliability != TERN_FLOW_RELIABLE && now >= send_cutoff(c, m)) {
                msg_give_up(c, f, m, GU_CASCADE);
                continue;
            }
            return m->priority;
        }
        f->lost_head = (f->lost_head + 1) % f->lost_cap;
        f->lost_n--;
    }
    int repair = tern__fec_tx_priority(c, f, now); /* a closed group's repair, before new data */
    if (repair >= 0) return repair;
    expire_messages(c, f, now);
    if (f->head && f->next_fsn < f->peer_max) return f->head->priority;
    return -1;
}

int tern__flow_has_data(tern_conn *c, uint64_t now)
{
    for (tern__sflow *f = c->flows.send; f; f = f->next)
        if (sflow_next_priority(c, f, now) >= 0) return 1;
    return 0;
}

int tern__flow_has_control(const tern_conn *c)
{
    for (tern__rflow *f = c->flows.recv; f; f = f->next)
        if (f->max_pending || (f->kf_pending && f->kf_want != TERN__NO_MSG)) return 1;
    for (tern__sflow *f = c->flows.send; f; f = f->next)
        if (f->forward_pending || (f->closing && !f->fin_acked && f->head == NULL &&
                                   (f->fin_pending || f->final_fsn == UINT64_MAX)))
            return 1;
    return tern__fec_has_control(c);
}

/* Writes data fragments, highest priority first, until the packet or the entries are full. */
uint8_t *tern__flow_write_data(tern_conn *c, uint64_t now, uint8_t *p, const uint8_t *end,
                               tern__sent *rec)
{
    while (rec->n < TERN__PKT_ENTRIES && end - p > MAX_FRAG_HDR + 1) {
        tern__sflow *best = NULL, *bprev = NULL, *prev = NULL;
        int bprio = -1;
        for (tern__sflow *f = c->flows.send; f; prev = f, f = f->next) {
            int pr = sflow_next_priority(c, f, now);
            if (pr > bprio) {
                bprio = pr;
                best = f;
                bprev = prev;
            }
        }
        if (best == NULL) break;
        tern__sflow *f = best;
        uint8_t *q;
        if (f->lost_n) {
            uint64_t fsn = f->lost[f->lost_head];
            tern__frag *fr = frag_at(f, fsn);
            uint8_t part = 0;
            /* cut to the current size: parts once the whole no longer fits a packet */
            if (fr->part_size == 0 && !frag_fits(c, f, fsn, fr, now)) frag_split(c, fr);
            if (fr->part_size && fr->part_lost == 0) { /* cannot happen: nothing to resend */
                f->lost_head = (f->lost_head + 1) % f->lost_cap;
                f->lost_n--;
                fr->state = FRAG_INFLIGHT;
                continue;
            }
            if (fr->part_size) {
                unsigned idx = 0;
                while (!(fr->part_lost & (1u << idx))) idx++;
                q = put_part(c, p, end, f, fsn, fr, idx, now);
                if (q == NULL) break; /* does not fit this packet */
                fr->part_lost &= (uint8_t)~(1u << idx);
                part = (uint8_t)(idx + 1);
            } else {
                q = put_fragment(c, p, end, f, fsn, fr, now);
                if (q == NULL) break; /* does not fit this packet */
            }
            if (fr->part_lost == 0) { /* every lost byte of it is on its way again */
                f->lost_head = (f->lost_head + 1) % f->lost_cap;
                f->lost_n--;
                fr->state = FRAG_INFLIGHT;
                fr->retx++;
            }
            c->st.packets_retransmitted_frags++;
            add_entry(rec, f->id, fsn, ENT_DATA, part);
            p = q;
        } else if (tern__fec_tx_priority(c, f, now) >= 0) {
            q = tern__fec_write_repair(c, f, p, end, rec, now);
            if (q == NULL) break; /* does not fit this packet */
            p = q;
        } else {
            tern__msg *m = f->head;
            /* the header this fragment will have: type, flow, fsn, flags, [ttl], length */
            size_t hdr = 1 + tern__varint_len(f->id) + tern__varint_len(f->next_fsn) + 1 + 2 +
                         (m->cut == 0 && m->deadline != TERN_TIME_NEVER ? 4 : 0);
            if (m->cut == 0 && m->tagged) {
                tern__frag probe = {.msg = m, .flags = TERN__FD_BEGIN};
                hdr += dep_len(&probe);
            }
            if ((size_t)(end - p) <= hdr) break;
            size_t room = (size_t)(end - p) - hdr;
            size_t max = tern__conn_max_payload(c) - 13 - TERN__AEAD_TAG_LEN - hdr -
                         tern__fec_reserve(f);
            if (room > max) room = max;
            size_t n = m->len - m->cut;
            if (n > room) n = room;
            if (n == 0 && m->len != 0) break;
            if (sflow_grow(c, f, (size_t)(f->next_fsn - f->base + 1)) != TERN_OK) break;
            uint64_t fsn = f->next_fsn;
            tern__frag *fr = frag_at(f, fsn);
            memset(fr, 0, sizeof(*fr)); /* whole: part_size 0 */
            fr->msg = m;
            fr->off = (uint32_t)m->cut;
            fr->len = (uint32_t)n;
            fr->state = FRAG_INFLIGHT;
            fr->flags = (uint8_t)((m->cut == 0 ? TERN__FD_BEGIN : 0) |
                                  (m->cut + n == m->len ? TERN__FD_END : 0));
            if (m->cut == 0) m->first_fsn = fsn;
            q = put_fragment(c, p, end, f, fsn, fr, now);
            if (q == NULL) break;
            p = q;
            f->next_fsn++;
            m->cut += n;
            f->uncut_bytes -= n;
            m->live_frags++;
            if (m->cut == m->len) {
                f->head = m->next;
                if (f->head == NULL) f->tail = NULL;
                m->next = NULL;
                m->queued = 0;
                c->st.messages_sent++;
            }
            add_entry(rec, f->id, fsn, ENT_DATA, 0);
            tern__fec_on_sent(c, f, fsn, fr, now); /* its group; closing it makes repair */
        }
        /* flows of one priority take turns: move the one served to the back */
        if (f->next) {
            if (bprev) bprev->next = f->next;
            else c->flows.send = f->next;
            tern__sflow *t = c->flows.send;
            while (t->next) t = t->next;
            t->next = f;
            f->next = NULL;
        }
    }
    return p;
}
