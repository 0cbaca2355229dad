/*
 * Flows: the sender's message queues, fragmentation and retransmission queues; the receiver's
 * bounded reassembly windows and ordered/unordered delivery; flow control; and the scheduler
 * that fills a packet's payload with control frames first, then retransmissions and new data in
 * priority order (7 first; flows of one priority take turns).
 *
 * Giving up: a PARTIAL or UNRELIABLE message whose deadline passed, or a PARTIAL fragment over
 * its retransmission budget, gives up its whole message: every fragment of it, sent or not. The
 * sender's base then moves past them and a FLOW_FORWARD tells the receiver to stop waiting.
 * RELIABLE messages and control frames are never given up.
 */
#include <string.h>

#include "core/conn.h"

#define MAX_FRAG_HDR 24 /* worst-case FLOW_DATA header */

/* ---------------------------------------------------------------- memory budget */

/* Everything a connection's flows and datagram queue allocate is counted in c->mem at its real
 * size (tern__mem_charge). What the peer makes us hold (receive flows, reassembly) is refused
 * past tern_settings.conn_memory and the connection is closed with TERN_ERR_BUDGET; what our
 * own application queues is refused earlier, at three quarters of it (tern_flow_send and
 * tern_conn_send_datagram say AGAIN), so a peer we queued much for (a slow reader) still has a
 * quarter of the budget for what it sends us and is not closed for our queue. The sender's bookkeeping
 * of fragments in flight is counted but never refused for the budget: refusing it could stall a
 * connection whose queue holds the budget, and it is bounded by the congestion window. */
int tern__conn_mem_over(const tern_conn *c, size_t size)
{
    uint64_t max = c->ep->s.conn_memory;
    return max != 0 && c->mem + tern__mem_charge(size) > max;
}

int tern__conn_send_over(const tern_conn *c, size_t size)
{
    uint64_t max = c->ep->s.conn_memory;
    return max != 0 && c->mem + tern__mem_charge(size) > max - max / 4;
}

int tern__conn_mem_err(const tern_conn *c, size_t size)
{
    return tern__conn_mem_over(c, size) ? TERN_ERR_BUDGET : TERN_ERR_NOMEM;
}

void *tern__conn_alloc(tern_conn *c, size_t size, int enforce)
{
    if (enforce && tern__conn_mem_over(c, size)) return NULL;
    void *p = tern__malloc(&c->ep->alloc, size);
    if (p != NULL) c->mem += tern__mem_charge(size);
    return p;
}

void *tern__conn_calloc(tern_conn *c, size_t size, int enforce)
{
    void *p = tern__conn_alloc(c, size, enforce);
    if (p != NULL) memset(p, 0, size);
    return p;
}

void tern__conn_dealloc(tern_conn *c, void *p, size_t size)
{
    if (p == NULL) return;
    c->mem -= tern__mem_charge(size);
    tern__free(&c->ep->alloc, p, size);
}

size_t tern_conn_memory(const tern_conn *c)
{
    return c ? (size_t)c->mem : 0;
}

/* ---------------------------------------------------------------- lookup */

tern__sflow *tern__sflow_find(const tern_conn *c, uint64_t id)
{
    for (tern__sflow *f = c->sflows; f; f = f->next)
        if (f->id == id) return f;
    return NULL;
}

static tern__rflow *rflow_find(const tern_conn *c, uint64_t id)
{
    for (tern__rflow *f = c->rflows; f; f = f->next)
        if (f->id == id) return f;
    return NULL;
}

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
    if (!c->rtt.has_sample) return c->ep->s.initial_rtt_ns;
    if (c->recp == NULL || c->recp->bytes_in_flight == 0) return c->rtt.min;
    return c->rtt.latest > c->rtt.srtt ? c->rtt.latest : c->rtt.srtt;
}

static uint64_t send_cutoff(const tern_conn *c, const tern__msg *m)
{
    if (m->deadline == TERN_TIME_NEVER) return TERN_TIME_NEVER;
    uint64_t d = owd_bound(c);
    /* a message already started may finish while its fragments can still arrive in time:
     * dropping its rest would waste what was sent */
    if (m->cut > 0) return m->deadline > d ? m->deadline - d : 0;
    /* a new one must also fit on the wire at the pacing rate before then */
    if (c->recp) {
        const tern__cc *cc = &c->recp->cc;
        uint64_t rate = cc->ops->pacing_rate(cc->st, c->rtt.srtt);
        if (rate) d += (uint64_t)(m->len - m->cut) * TERN_NS_PER_S / rate;
    }
    /* ... and some slack for higher priorities cutting in between its fragments */
    d += c->rtt.srtt / 4;
    return m->deadline > d ? m->deadline - d : 0;
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
    if (m->live_frags == 0 && m->cut == m->len) free_msg(c, f, m);
}

/* Moves base past finished fragments; a given-up one makes a FLOW_FORWARD necessary. */
static void sflow_advance(tern_conn *c, tern__sflow *f)
{
    while (f->base < f->next_fsn) {
        tern__frag *fr = frag_at(f, f->base);
        if (fr->state != FRAG_ACKED && fr->state != FRAG_GIVEN_UP) break;
        if (fr->state == FRAG_GIVEN_UP) f->forward_pending = 1;
        fr->state = FRAG_NONE;
        f->base++;
    }
    if (f->forward_pending && f->base <= f->forward_sent) f->forward_pending = 0;
    if (f->forward_pending) tern__ep_mark_send(c->ep, c);
}

/* Gives up a whole message: its fragments waiting for retransmission and its uncut rest.
 * Fragments in flight are left to arrive (they usually do); if one of them is lost it is given
 * up then, since its message is abandoned. */
static void msg_give_up(tern_conn *c, tern__sflow *f, tern__msg *m)
{
    if (m->abandoned) return;
    m->abandoned = 1;
    c->st.messages_abandoned++;
    c->last_give_up = c->last_tx > c->last_rx ? c->last_tx : c->last_rx;
    int was_cut = m->cut == m->len;
    m->live_frags++; /* hold m while releasing its fragments */
    for (uint64_t fsn = f->base; fsn < f->next_fsn; fsn++) {
        tern__frag *fr = frag_at(f, fsn);
        if (fr->msg == m && fr->state == FRAG_LOST) {
            fr->state = FRAG_GIVEN_UP;
            frag_release(c, f, fr);
        }
    }
    if (!was_cut) {
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
        m->cut = m->len;
    }
    m->live_frags--;
    if (m->live_frags == 0) free_msg(c, f, m);
    sflow_advance(c, f);
}

void tern__flow_config_defaults(tern_flow_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->reliability = TERN_FLOW_RELIABLE;
    cfg->ordered = 1;
    cfg->priority = 3;
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
    if (f->frags) tern__conn_dealloc(c, f->frags, f->cap * sizeof(*f->frags));
    if (f->lost) tern__conn_dealloc(c, f->lost, f->lost_cap * sizeof(*f->lost));
    tern__conn_dealloc(c, f, sizeof(*f));
}

/* Unlinks and frees sending flows that are closed and fully acknowledged. */
static void sflows_reap(tern_conn *c)
{
    tern__sflow **pp = &c->sflows;
    while (*pp) {
        tern__sflow *f = *pp;
        if (f->closing && f->fin_acked && f->base == f->next_fsn && f->head == NULL) {
            *pp = f->next;
            tern__sflow_free(c, f);
            c->n_sflows--;
            continue;
        }
        pp = &f->next;
    }
}

/* ---------------------------------------------------------------- receiver */

static void partial_discard(tern_conn *c, tern__rflow *f)
{
    if (f->pbuf) {
        tern__conn_dealloc(c, f->pbuf, f->pcap);
        c->assembly_bytes -= f->pcap;
    }
    f->pbuf = NULL;
    f->plen = f->pcap = 0;
    f->pactive = 0;
    f->pdeadline = 0;
}

static void rflow_free(tern_conn *c, tern__rflow *f)
{
    partial_discard(c, f);
    for (uint64_t i = 0; i < f->slots_cap; i++) {
        tern__rfrag *s = &f->slots[i];
        if (s->data) tern__conn_dealloc(c, s->data, s->len);
    }
    tern__conn_dealloc(c, f->slots, f->slots_cap * sizeof(*f->slots));
    tern__conn_dealloc(c, f, sizeof(*f));
}

static tern__rfrag *slot(const tern__rflow *f, uint64_t fsn)
{
    return &f->slots[fsn % f->slots_cap];
}

/* Makes room for fsn (base <= fsn < base + window). TERN_ERR_BUDGET, TERN_ERR_NOMEM. */
static int rflow_reserve(tern_conn *c, tern__rflow *f, uint64_t fsn)
{
    if (fsn - f->base < f->slots_cap) return TERN_OK;
    uint64_t ncap = f->slots_cap;
    while (ncap <= fsn - f->base) ncap *= 2;
    if (ncap > f->window) ncap = f->window;
    size_t nsize = (size_t)ncap * sizeof(tern__rfrag);
    /* the old ring is freed right after: count only the growth against the budget */
    if (c->ep->s.conn_memory &&
        c->mem - tern__mem_charge(f->slots_cap * sizeof(*f->slots)) + tern__mem_charge(nsize) >
            c->ep->s.conn_memory)
        return TERN_ERR_BUDGET;
    tern__rfrag *ns = tern__conn_calloc(c, nsize, 0);
    if (ns == NULL) return TERN_ERR_NOMEM;
    for (uint64_t q = f->base; q < f->base + f->slots_cap; q++) ns[q % ncap] = *slot(f, q);
    tern__conn_dealloc(c, f->slots, f->slots_cap * sizeof(*f->slots));
    f->slots = ns;
    f->slots_cap = ncap;
    return TERN_OK;
}

static void slot_clear(tern_conn *c, tern__rflow *f, tern__rfrag *s)
{
    if (s->data) {
        tern__conn_dealloc(c, s->data, s->len);
        f->buffered -= s->len;
    }
    memset(s, 0, sizeof(*s));
}

/* Delivers the message made of fragments [first, last], then clears them. */
static int deliver(tern_conn *c, tern__rflow *f, uint64_t first, uint64_t last)
{
    tern_endpoint *ep = c->ep;
    size_t total = 0;
    for (uint64_t q = first; q <= last; q++) total += slot(f, q)->len;
    uint8_t *buf = NULL;
    const uint8_t *msg;
    if (first == last) {
        msg = slot(f, first)->data;
    } else {
        /* held only during the callback: counted, never refused for the budget */
        buf = tern__conn_alloc(c, total ? total : 1, 0);
        if (buf == NULL) return TERN_ERR_NOMEM;
        size_t off = 0;
        for (uint64_t q = first; q <= last; q++) {
            tern__rfrag *s = slot(f, q);
            if (s->len) memcpy(buf + off, s->data, s->len);
            off += s->len;
        }
        msg = buf;
    }
    const tern__rfrag *head = slot(f, first);
    if (head->deadline && c->last_rx >= head->deadline) {
        c->st.messages_expired++; /* too late to be of use: never delivered after its deadline */
    } else {
        c->st.messages_received++;
        c->st.stream_bytes_received += total;
        if (ep->cb.on_message)
            ep->cb.on_message(c, f->id, msg ? msg : (const uint8_t *)"", total, ep->user_data);
    }
    if (buf) tern__conn_dealloc(c, buf, total ? total : 1);
    for (uint64_t q = first; q <= last; q++) {
        tern__rfrag *s = slot(f, q);
        slot_clear(c, f, s);
        s->done = 1;
    }
    return TERN_OK;
}

/* The END of the message starting at fsn (BEGIN there), if every fragment is present. */
static int complete_from(const tern__rflow *f, uint64_t begin, uint64_t *end)
{
    for (uint64_t q = begin; q < f->base + f->slots_cap; q++) {
        const tern__rfrag *s = slot(f, q);
        if (!s->present || s->done) return 0;
        if (q != begin && (s->flags & TERN__FD_BEGIN)) return 0;
        if (s->flags & TERN__FD_END) {
            *end = q;
            return 1;
        }
    }
    return 0;
}

static void rflow_advance(tern_conn *c, tern__rflow *f)
{
    while (f->base < f->final_fsn) {
        tern__rfrag *s = slot(f, f->base);
        if (!s->done) break;
        memset(s, 0, sizeof(*s));
        f->base++;
    }
    if (f->base + f->window >= f->advertised + f->window / 4 && !f->finished) {
        f->max_pending = 1;
        tern__ep_mark_send(c->ep, c);
    }
    if (f->base == f->final_fsn && !f->finished) {
        f->finished = 1;
        if (c->ep->cb.on_flow_closed) c->ep->cb.on_flow_closed(c, f->id, c->ep->user_data);
    }
}

/* Is the message at base complete (its END in *end)? Remembers how far it already looked, so a
 * message of n fragments arriving one by one costs O(n) in all, not O(n^2). */
static int head_complete(tern__rflow *f, uint64_t *end)
{
    if (f->scan_base != f->base || f->scan < f->base) {
        f->scan_base = f->base;
        f->scan = f->base;
    }
    for (uint64_t q = f->scan; q < f->base + f->slots_cap && q < f->final_fsn; q++) {
        const tern__rfrag *s = slot(f, q);
        if (!s->present || s->done || (q != f->base && (s->flags & TERN__FD_BEGIN))) {
            f->scan = q;
            return 0;
        }
        if (s->flags & TERN__FD_END) {
            *end = q;
            return 1;
        }
        f->scan = q + 1;
    }
    return 0;
}

/* Fragments present in a row from fsn on, without a message boundary after the first. */
static uint64_t run_from(const tern__rflow *f, uint64_t fsn)
{
    uint64_t n = 0;
    for (uint64_t q = fsn; q < f->base + f->slots_cap && q < f->final_fsn; q++) {
        const tern__rfrag *s = slot(f, q);
        if (!s->present || s->done || (q != fsn && (s->flags & TERN__FD_BEGIN))) break;
        n++;
        if (s->flags & TERN__FD_END) break;
    }
    return n;
}

/* Appends the fragment at base to the assembly buffer and moves base. TERN_ERR_PROTOCOL when the
 * message grows past TERN__MAX_MESSAGE or the connection's assembly budget. */
static int partial_take(tern_conn *c, tern__rflow *f)
{
    tern__rfrag *s = slot(f, f->base);
    if (f->plen + s->len > TERN__MAX_MESSAGE) return TERN_ERR_PROTOCOL;
    if (f->plen + s->len > f->pcap) {
        size_t ncap = f->pcap ? f->pcap : 65536;
        while (ncap < f->plen + s->len) ncap *= 2;
        if (ncap > TERN__MAX_MESSAGE) ncap = TERN__MAX_MESSAGE;
        if (c->assembly_bytes - f->pcap + ncap > TERN__MAX_ASSEMBLY) return TERN_ERR_PROTOCOL;
        /* the fragment's own buffer is freed as it is copied in: the budget sees the growth */
        if (c->ep->s.conn_memory && c->mem - (f->pbuf ? tern__mem_charge(f->pcap) : 0) +
                                            tern__mem_charge(ncap) >
                                        c->ep->s.conn_memory)
            return TERN_ERR_BUDGET;
        uint8_t *nb = tern__conn_alloc(c, ncap, 0);
        if (nb == NULL) return TERN_ERR_NOMEM;
        if (f->plen) memcpy(nb, f->pbuf, f->plen);
        if (f->pbuf) tern__conn_dealloc(c, f->pbuf, f->pcap);
        c->assembly_bytes += ncap - f->pcap;
        f->pbuf = nb;
        f->pcap = ncap;
    }
    if (s->len) memcpy(f->pbuf + f->plen, s->data, s->len);
    f->plen += s->len;
    if (s->flags & TERN__FD_BEGIN) f->pdeadline = s->deadline;
    slot_clear(c, f, s);
    f->base++;
    return TERN_OK;
}

static void partial_deliver(tern_conn *c, tern__rflow *f)
{
    tern_endpoint *ep = c->ep;
    if (f->pdeadline && c->last_rx >= f->pdeadline) {
        c->st.messages_expired++;
    } else {
        c->st.messages_received++;
        c->st.stream_bytes_received += f->plen;
        if (ep->cb.on_message) ep->cb.on_message(c, f->id, f->pbuf, f->plen, ep->user_data);
    }
    partial_discard(c, f);
}

/* Assembles the message at base in order while its fragments are there; delivers it at its END.
 * Returns 1 when it made progress. */
static int absorb(tern_conn *c, tern__rflow *f, int *err)
{
    int progress = 0;
    *err = TERN_OK;
    while (f->base < f->final_fsn) {
        tern__rfrag *s = slot(f, f->base);
        if (!s->present || s->done) break;
        if (f->pactive && (s->flags & TERN__FD_BEGIN)) {
            partial_discard(c, f); /* the previous message never ended: it was given up */
            c->st.messages_expired++;
            break;
        }
        if (!f->pactive) {
            if (!(s->flags & TERN__FD_BEGIN)) break;
            f->pactive = 1;
        }
        int end = (s->flags & TERN__FD_END) != 0;
        if ((*err = partial_take(c, f)) != TERN_OK) return progress;
        progress = 1;
        if (end) {
            partial_deliver(c, f);
            break;
        }
    }
    if (progress) rflow_advance(c, f);
    return progress;
}

/* Delivers whatever is deliverable now. */
static int rflow_deliver(tern_conn *c, tern__rflow *f, uint64_t hint)
{
    int err = TERN_OK;
    if (f->paused) return TERN_OK;
    if (f->stream) {
        /* a byte stream: hand over every fragment as soon as it is next in order */
        while (f->base < f->final_fsn && c->state == TERN_CONN_ESTABLISHED) {
            tern__rfrag *s = slot(f, f->base);
            if (!s->present || s->done) break;
            c->st.stream_bytes_received += s->len;
            if (s->len && c->ep->cb.on_message)
                c->ep->cb.on_message(c, f->id, s->data, s->len, c->ep->user_data);
            if (s->flags & TERN__FD_END) c->st.messages_received++;
            slot_clear(c, f, s);
            f->base++;
            rflow_advance(c, f);
        }
        return TERN_OK;
    }
    if (f->ordered) {
        for (;;) {
            tern__rfrag *s = slot(f, f->base);
            uint64_t end;
            if (f->base >= f->final_fsn) break;
            if (c->state != TERN_CONN_ESTABLISHED) return TERN_OK;
            if (f->pactive) {
                if (absorb(c, f, &err)) continue;
                if (err != TERN_OK) return err;
                if (f->pactive && f->pdeadline && c->last_rx >= f->pdeadline) {
                    /* too late for the message in assembly: drop it, skip to the next one */
                    partial_discard(c, f);
                    c->st.messages_expired++;
                    uint64_t q = f->base;
                    while (q < f->base + f->slots_cap && q < f->final_fsn &&
                           !(slot(f, q)->present && (slot(f, q)->flags & TERN__FD_BEGIN)))
                        q++;
                    if (q >= f->base + f->slots_cap || q >= f->final_fsn) break;
                    for (uint64_t k = f->base; k < q; k++) slot_clear(c, f, slot(f, k));
                    f->base = q;
                    rflow_advance(c, f);
                    continue;
                }
                break;
            }
            int head = s->present && !s->done && (s->flags & TERN__FD_BEGIN);
            if (head && head_complete(f, &end)) {
                int rc = deliver(c, f, f->base, end);
                if (rc != TERN_OK) return rc;
                rflow_advance(c, f);
                continue;
            }
            /* a big message: assemble its head so the window keeps moving */
            if (head && f->scan - f->base >= f->window / 4) {
                if (absorb(c, f, &err)) continue;
                if (err != TERN_OK) return err;
            }
            /* Blocked. A message past its deadline is of no use: skip it so the ones behind
             * it are not held past theirs too. Its deadline is known from its first fragment,
             * or bounded by the next message's (messages of a flow are queued in order). */
            uint64_t dl = (s->present && (s->flags & TERN__FD_BEGIN)) ? s->deadline : 0;
            uint64_t next = UINT64_MAX;
            for (uint64_t q = f->base + 1; q < f->base + f->slots_cap && q < f->final_fsn; q++) {
                const tern__rfrag *t = slot(f, q);
                if (t->present && !t->done && (t->flags & TERN__FD_BEGIN)) {
                    next = q;
                    if (dl == 0) dl = t->deadline;
                    break;
                }
            }
            if (dl == 0 || c->last_rx < dl || next == UINT64_MAX) break;
            for (uint64_t q = f->base; q < next; q++) slot_clear(c, f, slot(f, q));
            f->base = next;
            c->st.messages_expired++;
            rflow_advance(c, f);
        }
    } else {
        /* the message holding `hint`: walk back to its BEGIN */
        uint64_t b = hint;
        while (b > f->base && !(slot(f, b)->flags & TERN__FD_BEGIN)) {
            if (!slot(f, b - 1)->present || slot(f, b - 1)->done) goto base_message;
            b--;
        }
        uint64_t end;
        if (slot(f, b)->present && !slot(f, b)->done && (slot(f, b)->flags & TERN__FD_BEGIN) &&
            complete_from(f, b, &end)) {
            int rc = deliver(c, f, b, end);
            if (rc != TERN_OK) return rc;
        }
    base_message:
        /* a big message at the base is assembled in order, as in an ordered flow */
        if (f->pactive || (slot(f, f->base)->present && !slot(f, f->base)->done &&
                           (slot(f, f->base)->flags & TERN__FD_BEGIN) &&
                           run_from(f, f->base) >= f->window / 4)) {
            absorb(c, f, &err);
            if (err != TERN_OK) return err;
        }
        rflow_advance(c, f);
    }
    return TERN_OK;
}

/* The receive side of a flow the peer opens; opening id implies every lower id of its side. */
static int rflow_get(tern_conn *c, uint64_t id, tern__rflow **out)
{
    *out = rflow_find(c, id);
    if (*out) return TERN_OK;
    if ((id & 1) == (uint64_t)(c->is_server ? 1 : 0)) return TERN_ERR_PROTOCOL; /* ours */
    if (id < c->peer_next_flow) return TERN_ERR_IGNORED; /* finished long ago */
    uint64_t count = (id - c->peer_next_flow) / 2 + 1;
    if (c->n_rflows + count > c->ep->s.max_flows) return TERN_ERR_PROTOCOL;
    for (uint64_t nid = c->peer_next_flow; nid <= id; nid += 2) {
        tern__rflow *f = tern__conn_calloc(c, sizeof(*f), 1);
        if (f == NULL) return tern__conn_mem_err(c, sizeof(*f));
        f->window = c->ep->s.flow_window;
        f->slots_cap = f->window < 16 ? f->window : 16;
        size_t ssize = f->slots_cap * sizeof(*f->slots);
        f->slots = tern__conn_calloc(c, ssize, 1);
        if (f->slots == NULL) {
            int err = tern__conn_mem_err(c, ssize);
            tern__conn_dealloc(c, f, sizeof(*f));
            return err;
        }
        f->id = nid;
        f->advertised = f->window;
        f->final_fsn = UINT64_MAX;
        f->ordered = 1;
        f->next = c->rflows;
        c->rflows = f;
        c->n_rflows++;
        c->peer_next_flow = nid + 2;
        *out = f;
    }
    return TERN_OK;
}

static void rflows_reap(tern_conn *c)
{
    tern__rflow **pp = &c->rflows;
    while (*pp) {
        tern__rflow *f = *pp;
        if (f->finished) {
            *pp = f->next;
            rflow_free(c, f);
            c->n_rflows--;
            continue;
        }
        pp = &f->next;
    }
}

/* ---------------------------------------------------------------- frames in */

int tern__flow_on_frame(tern_conn *c, uint64_t type, const uint8_t **pp, const uint8_t *end)
{
    const uint8_t *p = *pp;
    uint64_t id, fsn, flags = 0, len = 0, ttl = 0;
    p = tern__get_varint(p, end, &id);
    p = tern__get_varint(p, end, &fsn);
    if (type == TERN__FRAME_FLOW_DATA) {
        p = tern__get_varint(p, end, &flags);
        if (p != NULL && (flags & TERN__FD_TTL)) p = tern__get_varint(p, end, &ttl);
        p = tern__get_varint(p, end, &len);
        if (p == NULL || len > (uint64_t)(end - p) || flags > TERN__FD_ALL) return TERN_ERR_PROTOCOL;
        if ((flags & TERN__FD_STREAM) && !(flags & TERN__FD_ORDERED)) return TERN_ERR_PROTOCOL;
        if ((flags & TERN__FD_TTL) && !(flags & TERN__FD_BEGIN)) return TERN_ERR_PROTOCOL;
    }
    if (p == NULL) return TERN_ERR_PROTOCOL;
    const uint8_t *data = p;
    *pp = p + len;

    if (type == TERN__FRAME_MAX_FLOW) {
        tern__sflow *f = tern__sflow_find(c, id);
        if (f && fsn > f->peer_max) {
            f->peer_max = fsn;
            tern__ep_mark_send(c->ep, c);
        }
        if (f == NULL && (id & 1) != (uint64_t)(c->is_server ? 1 : 0)) return TERN_ERR_PROTOCOL;
        return TERN_OK;
    }

    tern__rflow *f;
    int rc = rflow_get(c, id, &f);
    if (rc == TERN_ERR_IGNORED) return TERN_OK;
    if (rc != TERN_OK) return rc;
    if (f->finished) return TERN_OK;
    switch (type) {
    case TERN__FRAME_FLOW_DATA: {
        if (fsn >= f->final_fsn) return TERN_ERR_PROTOCOL;
        if (fsn < f->base) return TERN_OK; /* duplicate */
        if (fsn >= f->base + f->window) return TERN_ERR_PROTOCOL; /* flow control */
        if (len > TERN_MAX_DATAGRAM) return TERN_ERR_PROTOCOL;
        if ((rc = rflow_reserve(c, f, fsn)) != TERN_OK) return rc;
        tern__rfrag *s = slot(f, fsn);
        if (s->present || s->done) return TERN_OK;
        f->ordered = (flags & TERN__FD_ORDERED) != 0;
        f->stream = (flags & TERN__FD_STREAM) != 0;
        if (len) {
            s->data = tern__conn_alloc(c, (size_t)len, 1);
            if (s->data == NULL) return tern__conn_mem_err(c, (size_t)len);
            memcpy(s->data, data, (size_t)len);
        }
        s->len = (uint32_t)len;
        s->flags = (uint8_t)flags;
        s->present = 1;
        if (flags & TERN__FD_TTL) {
            /* c->last_rx is this packet's arrival time */
            /* the sender already took the path's delay off (see put_fragment) */
            s->deadline = c->last_rx + ttl * TERN_NS_PER_MS; /* ttl 0: already too late */
        }
        f->buffered += len;
        c->st.stream_bytes_received += 0;
        return rflow_deliver(c, f, fsn);
    }
    case TERN__FRAME_FLOW_FORWARD: {
        if (fsn > f->final_fsn || fsn > f->base + f->window) return TERN_ERR_PROTOCOL;
        if (fsn <= f->base) return TERN_OK;
        if (f->pactive) partial_discard(c, f); /* its next fragment was given up */
        uint64_t lim = fsn - f->base > f->slots_cap ? f->base + f->slots_cap : fsn;
        if (f->ordered && !f->paused) {
            /* deliver what is complete below the forward point, in order; drop the rest */
            uint64_t q = f->base;
            while (q < lim) {
                tern__rfrag *s = slot(f, q);
                uint64_t e;
                if (s->present && !s->done && (s->flags & TERN__FD_BEGIN) &&
                    complete_from(f, q, &e) && e < fsn) {
                    rc = deliver(c, f, q, e);
                    if (rc != TERN_OK) return rc;
                    q = e + 1;
                    continue;
                }
                q++;
            }
        }
        for (uint64_t q = f->base; q < lim; q++) {
            tern__rfrag *s = slot(f, q);
            slot_clear(c, f, s);
        }
        f->base = fsn;
        rflow_advance(c, f);
        return rflow_deliver(c, f, f->base);
    }
    case TERN__FRAME_FLOW_FIN:
        if (f->final_fsn != UINT64_MAX && f->final_fsn != fsn) return TERN_ERR_PROTOCOL;
        if (fsn < f->base || fsn > f->base + f->window) return TERN_ERR_PROTOCOL;
        f->final_fsn = fsn;
        rflow_advance(c, f);
        return TERN_OK;
    default:
        return TERN_ERR_PROTOCOL;
    }
}

/* ---------------------------------------------------------------- acknowledgement and loss */

void tern__flow_on_acked(tern_conn *c, const tern__sent_entry *e)
{
    tern__sflow *f = tern__sflow_find(c, e->flow_id);
    if (e->kind == ENT_MAXFLOW || f == NULL) return;
    switch (e->kind) {
    case ENT_DATA: {
        if (e->fsn < f->base || e->fsn >= f->next_fsn) return;
        tern__frag *fr = frag_at(f, e->fsn);
        if (fr->state == FRAG_ACKED || fr->state == FRAG_GIVEN_UP || fr->state == FRAG_NONE) return;
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
        tern__rflow *rf = rflow_find(c, e->flow_id);
        if (rf && !rf->finished) rf->max_pending = 1;
        return;
    }
    tern__sflow *f = tern__sflow_find(c, e->flow_id);
    if (f == NULL) return;
    switch (e->kind) {
    case ENT_DATA: {
        if (e->fsn < f->base || e->fsn >= f->next_fsn) return;
        tern__frag *fr = frag_at(f, e->fsn);
        if (fr->state != FRAG_INFLIGHT) return;
        tern__msg *m = fr->msg;
        int give_up = f->cfg.reliability == TERN_FLOW_UNRELIABLE || (m && m->abandoned) ||
                      (m && now >= send_cutoff(c, m)) ||
                      (f->cfg.reliability == TERN_FLOW_PARTIAL && f->cfg.max_retransmits &&
                       fr->retx >= f->cfg.max_retransmits);
        if (give_up) {
            if (m) {
                m->live_frags++; /* hold m across the calls below */
                msg_give_up(c, f, m);
            }
            fr->state = FRAG_GIVEN_UP;
            frag_release(c, f, fr);
            if (m) {
                m->live_frags--;
                if (m->live_frags == 0 && m->cut == m->len) free_msg(c, f, m);
            }
            sflow_advance(c, f);
        } else {
            fr->state = FRAG_LOST;
            if (lost_push(c, f, e->fsn) != TERN_OK) fr->state = FRAG_INFLIGHT; /* retried by PTO */
        }
        break;
    }
    case ENT_FIN:
        if (!f->fin_acked) f->fin_pending = 1;
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

static int add_entry(tern__sent *rec, uint64_t flow, uint64_t fsn, uint8_t kind)
{
    if (rec->n >= TERN__PKT_ENTRIES) return 0;
    rec->e[rec->n].flow_id = flow;
    rec->e[rec->n].fsn = fsn;
    rec->e[rec->n].kind = kind;
    rec->n++;
    return 1;
}

/* Control frames of every flow: MAX_FLOW, FLOW_FORWARD, FLOW_FIN. */
uint8_t *tern__flow_write_control(tern_conn *c, uint8_t *p, const uint8_t *end, tern__sent *rec)
{
    uint8_t *q;
    for (tern__rflow *f = c->rflows; f; f = f->next) {
        if (!f->max_pending || rec->n >= TERN__PKT_ENTRIES) continue;
        uint64_t max = f->base + f->window;
        q = tern__put_varint(p, end, TERN__FRAME_MAX_FLOW);
        q = tern__put_varint(q, end, f->id);
        q = tern__put_varint(q, end, max);
        if (q == NULL) return p;
        p = q;
        f->advertised = max;
        f->max_pending = 0;
        add_entry(rec, f->id, max, ENT_MAXFLOW);
    }
    for (tern__sflow *f = c->sflows; f; f = f->next) {
        if (f->forward_pending && rec->n < TERN__PKT_ENTRIES) {
            q = tern__put_varint(p, end, TERN__FRAME_FLOW_FORWARD);
            q = tern__put_varint(q, end, f->id);
            q = tern__put_varint(q, end, f->base);
            if (q == NULL) return p;
            p = q;
            f->forward_sent = f->base;
            f->forward_pending = 0;
            add_entry(rec, f->id, f->base, ENT_FORWARD);
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
            add_entry(rec, f->id, f->final_fsn, ENT_FIN);
        }
    }
    return p;
}

static uint8_t *put_fragment(const tern_conn *c, uint8_t *p, const uint8_t *end,
                             const tern__sflow *f, uint64_t fsn, const tern__frag *fr, uint64_t now)
{
    uint8_t flags = (uint8_t)(fr->flags | (f->cfg.ordered ? TERN__FD_ORDERED : 0) |
                              (f->cfg.stream ? TERN__FD_STREAM : 0));
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
    p = tern__put_varint(p, end, TERN__FRAME_FLOW_DATA);
    p = tern__put_varint(p, end, f->id);
    p = tern__put_varint(p, end, fsn);
    p = tern__put_varint(p, end, flags);
    if (flags & TERN__FD_TTL) p = tern__put_varint(p, end, ttl);
    p = tern__put_varint(p, end, fr->len);
    const uint8_t *bytes = fr->msg->is_ref ? fr->msg->ref : fr->msg->data;
    return tern__put_bytes(p, end, bytes + fr->off, fr->len);
}

/* Drops queued messages that can no longer arrive in time (never RELIABLE ones). Messages are
 * queued in order, so their deadlines grow: looking at the head is enough, and keeps this O(1)
 * per packet however long the queue. */
static void expire_messages(tern_conn *c, tern__sflow *f, uint64_t now)
{
    if (f->cfg.reliability == TERN_FLOW_RELIABLE) return;
    while (f->head && now >= send_cutoff(c, f->head)) {
        tern__msg *m = f->head;
        msg_give_up(c, f, m);
        if (f->head == m) break; /* cannot happen: a given-up message leaves the queue */
    }
}

/* The priority of what the flow would send next, or -1. */
static int sflow_next_priority(tern_conn *c, tern__sflow *f, uint64_t now)
{
    while (f->lost_n) {
        uint64_t fsn = f->lost[f->lost_head];
        tern__frag *fr = fsn >= f->base && fsn < f->next_fsn ? frag_at(f, fsn) : NULL;
        if (fr && fr->state == FRAG_LOST && fr->msg) {
            tern__msg *m = fr->msg;
            if (f->cfg.reliability != TERN_FLOW_RELIABLE && now >= send_cutoff(c, m)) {
                msg_give_up(c, f, m);
                continue;
            }
            return m->priority;
        }
        f->lost_head = (f->lost_head + 1) % f->lost_cap;
        f->lost_n--;
    }
    expire_messages(c, f, now);
    if (f->head && f->next_fsn < f->peer_max) return f->head->priority;
    return -1;
}

int tern__flow_has_data(tern_conn *c, uint64_t now)
{
    for (tern__sflow *f = c->sflows; f; f = f->next)
        if (sflow_next_priority(c, f, now) >= 0) return 1;
    return 0;
}

int tern__flow_has_control(const tern_conn *c)
{
    for (tern__rflow *f = c->rflows; f; f = f->next)
        if (f->max_pending) return 1;
    for (tern__sflow *f = c->sflows; f; f = f->next)
        if (f->forward_pending || (f->closing && !f->fin_acked && f->head == NULL &&
                                   (f->fin_pending || f->final_fsn == UINT64_MAX)))
            return 1;
    return 0;
}

/* Writes data fragments, highest priority first, until the packet or the entries are full. */
uint8_t *tern__flow_write_data(tern_conn *c, uint64_t now, uint8_t *p, const uint8_t *end,
                               tern__sent *rec)
{
    while (rec->n < TERN__PKT_ENTRIES && end - p > MAX_FRAG_HDR + 1) {
        tern__sflow *best = NULL, *bprev = NULL, *prev = NULL;
        int bprio = -1;
        for (tern__sflow *f = c->sflows; f; prev = f, f = f->next) {
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
            q = put_fragment(c, p, end, f, fsn, fr, now);
            if (q == NULL) break; /* does not fit this packet */
            f->lost_head = (f->lost_head + 1) % f->lost_cap;
            f->lost_n--;
            fr->state = FRAG_INFLIGHT;
            fr->retx++;
            c->st.packets_retransmitted_frags++;
            add_entry(rec, f->id, fsn, ENT_DATA);
            p = q;
        } else {
            tern__msg *m = f->head;
            /* the header this fragment will have: type, flow, fsn, flags, [ttl], length */
            size_t hdr = 1 + tern__varint_len(f->id) + tern__varint_len(f->next_fsn) + 1 + 2 +
                         (m->cut == 0 && m->deadline != TERN_TIME_NEVER ? 4 : 0);
            if ((size_t)(end - p) <= hdr) break;
            size_t room = (size_t)(end - p) - hdr;
            size_t max = tern__conn_max_payload(c) - 13 - TERN__AEAD_TAG_LEN - hdr;
            if (room > max) room = max;
            size_t n = m->len - m->cut;
            if (n > room) n = room;
            if (n == 0 && m->len != 0) break;
            if (sflow_grow(c, f, (size_t)(f->next_fsn - f->base + 1)) != TERN_OK) break;
            uint64_t fsn = f->next_fsn;
            tern__frag *fr = frag_at(f, fsn);
            memset(fr, 0, sizeof(*fr));
            fr->msg = m;
            fr->off = (uint32_t)m->cut;
            fr->len = (uint32_t)n;
            fr->state = FRAG_INFLIGHT;
            fr->flags = (uint8_t)((m->cut == 0 ? TERN__FD_BEGIN : 0) |
                                  (m->cut + n == m->len ? TERN__FD_END : 0));
            q = put_fragment(c, p, end, f, fsn, fr, now);
            if (q == NULL) break;
            p = q;
            f->next_fsn++;
            m->cut += n;
            m->live_frags++;
            if (m->cut == m->len) {
                f->head = m->next;
                if (f->head == NULL) f->tail = NULL;
                m->next = NULL;
                c->st.messages_sent++;
            }
            add_entry(rec, f->id, fsn, ENT_DATA);
        }
        /* flows of one priority take turns: move the one served to the back */
        if (f->next) {
            if (bprev) bprev->next = f->next;
            else c->sflows = f->next;
            tern__sflow *t = c->sflows;
            while (t->next) t = t->next;
            t->next = f;
            f->next = NULL;
        }
    }
    return p;
}

void tern__flows_reap(tern_conn *c)
{
    tern__flow_events(c); /* before a finished flow goes */
    sflows_reap(c);
    rflows_reap(c);
}

void tern__flows_free(tern_conn *c)
{
    while (c->sflows) {
        tern__sflow *f = c->sflows;
        c->sflows = f->next;
        tern__sflow_free(c, f);
    }
    while (c->rflows) {
        tern__rflow *f = c->rflows;
        c->rflows = f->next;
        rflow_free(c, f);
    }
    c->n_sflows = c->n_rflows = 0;
}

/* ---------------------------------------------------------------- public API */

void tern_flow_config_default(tern_flow_config *cfg)
{
    tern__flow_config_defaults(cfg);
}

int tern_flow_open(tern_conn *c, const tern_flow_config *cfg, uint64_t *flow_id)
{
    if (c == NULL || flow_id == NULL) return TERN_ERR_INVALID_ARG;
    if (c->state != TERN_CONN_ESTABLISHED) return TERN_ERR_STATE;
    tern_flow_config d;
    tern__flow_config_defaults(&d);
    if (cfg) d = *cfg;
    if (d.reliability > TERN_FLOW_UNRELIABLE || d.priority > 7) return TERN_ERR_INVALID_ARG;
    if (d.stream && (d.reliability != TERN_FLOW_RELIABLE || !d.ordered)) return TERN_ERR_INVALID_ARG;
    if (c->n_sflows >= c->peer_max_flows) return TERN_ERR_LIMIT;
    tern__sflow *f = tern__conn_calloc(c, sizeof(*f), 0);
    if (f == NULL) return TERN_ERR_NOMEM;
    f->id = c->next_flow_id;
    c->next_flow_id += 2;
    f->cfg = d;
    f->peer_max = c->peer_flow_window;
    f->final_fsn = UINT64_MAX;
    /* append: flows of one priority are served in opening order */
    tern__sflow **pp = &c->sflows;
    while (*pp) pp = &(*pp)->next;
    *pp = f;
    c->n_sflows++;
    *flow_id = f->id;
    return TERN_OK;
}

int tern__flow_send_admit(const tern_conn *c, const tern__sflow *f, size_t len, int ref)
{
    if (f->queued_bytes + len > c->ep->s.send_buffer && f->queued_bytes > 0) return TERN_ERR_AGAIN;
    /* the connection's memory budget (three quarters of it for what we queue): a message that
     * could never fit is too large; one that does not fit now waits for what is queued to be
     * delivered. A referenced message costs the core its record only. */
    size_t size = sizeof(tern__msg) + (ref ? 0 : len);
    uint64_t cap = c->ep->s.conn_memory;
    if (cap != 0 && tern__mem_charge(size) > cap - cap / 4) return TERN_ERR_TOO_LARGE;
    if (tern__conn_send_over(c, size)) return TERN_ERR_AGAIN;
    return TERN_OK;
}

/* tern_flow_send (ref 0: copies data) and tern_flow_send_ref (ref 1: keeps the pointer). */
static int flow_queue(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data,
                      size_t len, int priority, int ref, void *token)
{
    if (c == NULL || (data == NULL && len > 0)) return TERN_ERR_INVALID_ARG;
    if (ref && c->ep->cb.on_flow_release == NULL) return TERN_ERR_INVALID_ARG;
    tern__sflow *f = tern__sflow_find(c, flow_id);
    if (f == NULL) return TERN_ERR_NOT_FOUND;
    if (c->state != TERN_CONN_ESTABLISHED || f->closing) return TERN_ERR_STATE;
    if (len > (64u << 20)) return TERN_ERR_TOO_LARGE;
    if (priority > 7) return TERN_ERR_INVALID_ARG;
    int rc = tern__flow_send_admit(c, f, len, ref);
    if (rc == TERN_ERR_AGAIN) { /* on_flow_writable tells when this size is taken */
        f->blocked = 1;
        f->blocked_len = len;
        f->blocked_ref = (uint8_t)ref;
    }
    if (rc != TERN_OK) return rc;
    tern__msg *m = tern__conn_alloc(c, sizeof(*m) + (ref ? 0 : len), 0);
    if (m == NULL) return TERN_ERR_NOMEM;
    memset(m, 0, sizeof(*m));
    m->len = len;
    if (ref) {
        m->is_ref = 1;
        m->ref = data;
        m->token = token;
    } else if (len) {
        memcpy(m->data, data, len);
    }
    m->priority = (uint8_t)(priority < 0 ? f->cfg.priority : priority);
    m->deadline = f->cfg.reliability != TERN_FLOW_RELIABLE && f->cfg.deadline_ms
                      ? now + (uint64_t)f->cfg.deadline_ms * TERN_NS_PER_MS
                      : TERN_TIME_NEVER;
    if (f->tail) f->tail->next = m;
    else f->head = m;
    f->tail = m;
    f->queued_bytes += len;
    f->blocked = 0; /* taken: no writable event owed */
    tern__ep_mark_send(c->ep, c);
    tern__conn_update_timer(c);
    return TERN_OK;
}

int tern_flow_send(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data, size_t len,
                   int priority)
{
    return flow_queue(c, flow_id, now, data, len, priority, 0, NULL);
}

int tern_flow_send_ref(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data,
                       size_t len, int priority, void *token)
{
    return flow_queue(c, flow_id, now, data, len, priority, 1, token);
}

int tern_flow_close(tern_conn *c, uint64_t flow_id)
{
    tern__sflow *f = c ? tern__sflow_find(c, flow_id) : NULL;
    if (f == NULL) return TERN_ERR_NOT_FOUND;
    if (f->closing) return TERN_ERR_STATE;
    f->closing = 1;
    tern__ep_mark_send(c->ep, c);
    return TERN_OK;
}

uint64_t tern_flow_queued(const tern_conn *c, uint64_t flow_id)
{
    tern__sflow *f = c ? tern__sflow_find(c, flow_id) : NULL;
    return f ? f->queued_bytes : 0;
}

int tern_flow_set_paused(tern_conn *c, uint64_t flow_id, int paused)
{
    tern__rflow *f = c ? rflow_find(c, flow_id) : NULL;
    if (f == NULL) return TERN_ERR_NOT_FOUND;
    f->paused = paused != 0;
    if (!paused) {
        int rc = rflow_deliver(c, f, f->base);
        if (rc != TERN_OK) return rc;
        rflow_advance(c, f);
    }
    return TERN_OK;
}
