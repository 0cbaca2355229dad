/*
 * Flows, the receiving side: the bounded reassembly window of each flow the peer opens, ordered,
 * unordered and stream delivery, large-message assembly, the flow frames coming in (FLOW_DATA,
 * FLOW_FORWARD, MAX_FLOW, FLOW_FIN) and pausing delivery (tern_flow_set_paused).
 */
#include <string.h>

#include "core/conn.h"
#include "core/fec.h"
#include "core/flow_int.h"

/* ---------------------------------------------------------------- receiver */

static void partial_discard(tern_conn *c, tern__rflow *f)
{
    if (f->pbuf) {
        tern__conn_dealloc(c, f->pbuf, f->pcap);
        c->flows.assembly_bytes -= f->pcap;
    }
    f->pbuf = NULL;
    f->plen = f->pcap = 0;
    f->pactive = 0;
    f->pdeadline = 0;
}

/* The bytes allocated at s->data: the fragment, and the bitmap of a fragment sent in parts. */
static size_t slot_alloc_len(const tern__rfrag *s)
{
    return (size_t)s->len + (s->parts ? ((size_t)s->len + 7) / 8 : 0);
}

void tern__rflow_free(tern_conn *c, tern__rflow *f)
{
    partial_discard(c, f);
    tern__fec_rflow_free(c, f);
    for (uint64_t i = 0; i < f->slots_cap; i++) {
        tern__rfrag *s = &f->slots[i];
        if (s->data) tern__conn_dealloc(c, s->data, slot_alloc_len(s));
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
    if (c->ep->s.conn_memory && c->flows.mem - tern__mem_charge(f->slots_cap * sizeof(*f->slots)) +
                                        tern__mem_charge(nsize) >
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
        tern__conn_dealloc(c, s->data, slot_alloc_len(s));
        f->buffered -= s->len;
    }
    memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------- frame dependencies */

/* Was message id not delivered here (skipped, expired, or never seen)? IDs before tracking
 * began or more than TERN__DEP_WINDOW back are taken as delivered. */
static int bad_get(const tern__rflow *f, uint64_t id)
{
    if (f->next_mid == TERN__NO_MSG || id < f->mid_base || id >= f->next_mid ||
        f->next_mid - id > TERN__DEP_WINDOW)
        return 0;
    uint64_t b = id % TERN__DEP_WINDOW;
    return (f->bad[b / 64] >> (b % 64)) & 1u;
}

static void bad_set(tern__rflow *f, uint64_t id, int v)
{
    uint64_t b = id % TERN__DEP_WINDOW, bit = (uint64_t)1 << (b % 64);
    if (v) f->bad[b / 64] |= bit;
    else f->bad[b / 64] &= ~bit;
}

/* on_msg_skipped for the run of skipped messages not yet reported. */
static void skip_report(tern_conn *c, tern__rflow *f)
{
    if (f->skip_count == 0) return;
    uint64_t first = f->skip_first, n = f->skip_count;
    f->skip_count = 0;
    if (c->ep->cb.on_msg_skipped) c->ep->cb.on_msg_skipped(c, f->id, first, n, c->ep->user_data);
}

/* The message (mid, dep, gop) is next in order: every ID between the last one and it was not
 * delivered here (given up by the sender, or expired). Returns 1 when it may be delivered, 0
 * when it is skipped because a message it needs was not delivered (counted, reported, and a
 * KEYFRAME_REQUEST owed to the sender, at most one per RTT), TERN_ERR_PROTOCOL when IDs go
 * backwards. Costs at most TERN__DEP_WINDOW steps whatever IDs the peer sends. */
static int dep_admit(tern_conn *c, tern__rflow *f, uint64_t mid, uint64_t dep, uint64_t gop)
{
    if (f->next_mid == TERN__NO_MSG) {
        /* tracking begins: at 0 when every message of the flow carried an ID so far */
        f->next_mid = f->mid_base = f->untagged ? mid : 0;
    }
    if (mid < f->next_mid) return TERN_ERR_PROTOCOL;
    /* the IDs skipped over were lost, unless as many messages without an ID came between (a
     * fragment rebuilt without its DEP fields): then they were those */
    uint64_t gap = mid - f->next_mid;
    int lost = gap > f->untagged_run;
    if (gap >= TERN__DEP_WINDOW) memset(f->bad, lost ? 0xff : 0, sizeof(f->bad));
    else
        for (uint64_t q = f->next_mid; q < mid; q++) bad_set(f, q, lost);
    if (gap && lost) f->last_bad = mid - 1;
    f->untagged_run = 0;
    f->next_mid = mid + 1;
    int skip = (dep != TERN__NO_MSG && bad_get(f, dep)) ||
               (gop != TERN__NO_MSG && gop != mid && f->last_bad != TERN__NO_MSG &&
                f->last_bad >= gop);
    bad_set(f, mid, skip);
    if (!skip) {
        if (gop == mid && f->kf_want != TERN__NO_MSG && mid > f->kf_want) {
            f->kf_want = TERN__NO_MSG; /* the keyframe asked for came */
            f->kf_pending = 0;
        }
        return 1;
    }
    f->last_bad = mid;
    c->st.msgs_skipped_dep++;
    if (f->skip_count && f->skip_first + f->skip_count != mid) skip_report(c, f);
    if (f->skip_count == 0) f->skip_first = mid;
    f->skip_count++;
    int again = !f->kf_sent || c->rx.last >= f->kf_last + c->rec.rtt.srtt;
    /* a request made again names the latest skip: the keyframe that answered the first may
     * have been lost here too (expired), and the sender ignores a request for a message
     * before the last keyframe it queued */
    if (f->kf_want == TERN__NO_MSG || (again && !f->kf_pending)) f->kf_want = mid;
    if (again) {
        f->kf_pending = 1;
        tern__ep_mark_send(c->ep, c);
    }
    return 0;
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
    int ok = 1;
    if (head->deadline && c->rx.last >= head->deadline) {
        c->st.messages_expired++; /* too late to be of use: never delivered after its deadline */
        ok = 0; /* with an ID: counted as not delivered when the next one comes */
    } else if (head->flags & TERN__FD_DEP) {
        ok = dep_admit(c, f, head->mid, head->dep, head->gop);
    } else {
        f->untagged = 1;
        f->untagged_run++;
    }
    if (ok < 0) {
        if (buf) tern__conn_dealloc(c, buf, total ? total : 1);
        return ok;
    }
    if (ok) {
        skip_report(c, f);
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
        if (c->flows.assembly_bytes - f->pcap + ncap > TERN__MAX_ASSEMBLY) return TERN_ERR_PROTOCOL;
        /* the fragment's own buffer is freed as it is copied in: the budget sees the growth */
        if (c->ep->s.conn_memory && c->flows.mem - (f->pbuf ? tern__mem_charge(f->pcap) : 0) +
                                            tern__mem_charge(ncap) >
                                        c->ep->s.conn_memory)
            return TERN_ERR_BUDGET;
        uint8_t *nb = tern__conn_alloc(c, ncap, 0);
        if (nb == NULL) return TERN_ERR_NOMEM;
        if (f->plen) memcpy(nb, f->pbuf, f->plen);
        if (f->pbuf) tern__conn_dealloc(c, f->pbuf, f->pcap);
        c->flows.assembly_bytes += ncap - f->pcap;
        f->pbuf = nb;
        f->pcap = ncap;
    }
    if (s->len) memcpy(f->pbuf + f->plen, s->data, s->len);
    f->plen += s->len;
    if (s->flags & TERN__FD_BEGIN) {
        f->pdeadline = s->deadline;
        f->pdepf = (s->flags & TERN__FD_DEP) != 0;
        f->pmid = s->mid;
        f->pdep = s->dep;
        f->pgop = s->gop;
    }
    slot_clear(c, f, s);
    f->base++;
    return TERN_OK;
}

static int partial_deliver(tern_conn *c, tern__rflow *f)
{
    tern_endpoint *ep = c->ep;
    int ok = 1;
    if (f->pdeadline && c->rx.last >= f->pdeadline) {
        c->st.messages_expired++;
        ok = 0;
    } else if (f->pdepf) {
        ok = dep_admit(c, f, f->pmid, f->pdep, f->pgop);
    } else {
        f->untagged = 1;
        f->untagged_run++;
    }
    if (ok < 0) return ok;
    if (ok) {
        skip_report(c, f);
        c->st.messages_received++;
        c->st.stream_bytes_received += f->plen;
        if (ep->cb.on_message) ep->cb.on_message(c, f->id, f->pbuf, f->plen, ep->user_data);
    }
    partial_discard(c, f);
    return TERN_OK;
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
            if ((*err = partial_deliver(c, f)) != TERN_OK) return 0;
            break;
        }
    }
    if (progress) rflow_advance(c, f);
    return progress;
}

/* Delivers whatever is deliverable now. */
static int rflow_deliver_now(tern_conn *c, tern__rflow *f, uint64_t hint)
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
                if (f->pactive && f->pdeadline && c->rx.last >= f->pdeadline) {
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
            if (dl == 0 || c->rx.last < dl || next == UINT64_MAX) break;
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

/* Delivers whatever is deliverable now, then reports the messages skipped on the way. */
static int rflow_deliver(tern_conn *c, tern__rflow *f, uint64_t hint)
{
    int rc = rflow_deliver_now(c, f, hint);
    if (rc == TERN_OK && c->state == TERN_CONN_ESTABLISHED) skip_report(c, f);
    return rc;
}

/* The receive side of a flow the peer opens; opening id implies every lower id of its side. */
static int rflow_get(tern_conn *c, uint64_t id, tern__rflow **out)
{
    *out = tern__rflow_find(c, id);
    if (*out) return TERN_OK;
    if ((id & 1) == (uint64_t)(c->is_server ? 1 : 0)) return TERN_ERR_PROTOCOL; /* ours */
    if (id < c->flows.peer_next) return TERN_ERR_IGNORED; /* finished long ago */
    uint64_t count = (id - c->flows.peer_next) / 2 + 1;
    if (c->flows.n_recv + count > c->ep->s.max_flows) return TERN_ERR_PROTOCOL;
    for (uint64_t nid = c->flows.peer_next; nid <= id; nid += 2) {
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
        f->next_mid = f->last_bad = f->kf_want = TERN__NO_MSG;
        f->next = c->flows.recv;
        c->flows.recv = f;
        c->flows.n_recv++;
        c->flows.peer_next = nid + 2;
        *out = f;
    }
    return TERN_OK;
}

void tern__rflows_reap(tern_conn *c)
{
    tern__rflow **pp = &c->flows.recv;
    while (*pp) {
        tern__rflow *f = *pp;
        if (f->finished) {
            *pp = f->next;
            tern__rflow_free(c, f);
            c->flows.n_recv--;
            continue;
        }
        pp = &f->next;
    }
}

/* ---------------------------------------------------------------- frames in */

/* Bytes [off, off+len) of a fragment of whole bytes that comes in parts (FLOW_DATA_PART, or a
 * whole FLOW_DATA for a fragment whose parts began to arrive): the first part allocates the
 * fragment and a bitmap of the bytes received, so a byte that comes twice (parts cut
 * differently on two retransmissions, or the whole fragment after a part) is stored once. The
 * fragment is present when every byte came. TERN_ERR_PROTOCOL when the parts disagree about
 * the fragment's length or flags. */
static int part_store(tern_conn *c, tern__rflow *f, tern__rfrag *s, uint8_t flags, size_t whole,
                      size_t off, const uint8_t *data, size_t len)
{
    if (!s->parts) {
        size_t map = (whole + 7) / 8, alloc = whole + map;
        s->data = tern__conn_alloc(c, alloc, 1);
        if (s->data == NULL) return tern__conn_mem_err(c, alloc);
        memset(s->data + whole, 0, map);
        s->len = (uint16_t)whole;
        s->flags = flags;
        s->parts = 1;
        s->got = 0;
        f->buffered += whole;
    } else if (s->len != whole || ((s->flags ^ flags) & ~TERN__FD_DEP)) {
        /* DEP aside: a fragment rebuilt from repair comes without its DEP fields */
        return TERN_ERR_PROTOCOL;
    }
    s->flags |= flags & TERN__FD_DEP;
    uint8_t *map = s->data + s->len;
    for (size_t i = 0; i < len; i++) {
        size_t b = off + i;
        if (map[b >> 3] & (1u << (b & 7))) continue;
        map[b >> 3] = (uint8_t)(map[b >> 3] | (1u << (b & 7)));
        s->data[b] = data[i];
        s->got++;
    }
    if (s->got == s->len) s->present = 1;
    return TERN_OK;
}

/* Fragment fsn is present now: delivers what it completes; FEC keeps it and rebuilds what its
 * groups now can (fec.c). */
static int frag_arrived(tern_conn *c, tern__rflow *f, uint64_t fsn)
{
    if (f->fec) tern__fec_on_stored(c, f, fsn, slot(f, fsn));
    int rc = rflow_deliver(c, f, fsn);
    if (rc == TERN_OK && f->fec) rc = tern__fec_after_data(c, f, fsn);
    return rc;
}

int tern__flow_on_frame(tern_conn *c, uint64_t type, const uint8_t **pp, const uint8_t *end)
{
    if (type == TERN__FRAME_REPAIR || type == TERN__FRAME_REPAIRED)
        return tern__fec_on_frame(c, type, pp, end);
    const uint8_t *p = *pp;
    uint64_t id, fsn, flags = 0, len = 0, ttl = 0, whole = 0, off = 0;
    uint64_t dep[3] = {0, 0, 0}; /* DEP: msg_id, depends (distance), group */
    int part = type == TERN__FRAME_FLOW_DATA_PART;
    p = tern__get_varint(p, end, &id);
    p = tern__get_varint(p, end, &fsn);
    if (type == TERN__FRAME_FLOW_DATA || part) {
        p = tern__get_varint(p, end, &flags);
        if (p != NULL && (flags & TERN__FD_TTL)) p = tern__get_varint(p, end, &ttl);
        if (p != NULL && (flags & TERN__FD_DEP))
            for (int i = 0; i < 3; i++) p = tern__get_varint(p, end, &dep[i]);
        if (part) p = tern__get_varint(tern__get_varint(p, end, &whole), end, &off);
        p = tern__get_varint(p, end, &len);
        if (p == NULL || len > (uint64_t)(end - p) || flags > TERN__FD_ALL) return TERN_ERR_PROTOCOL;
        if ((flags & TERN__FD_STREAM) && !(flags & TERN__FD_ORDERED)) return TERN_ERR_PROTOCOL;
        if ((flags & TERN__FD_TTL) && !(flags & TERN__FD_BEGIN)) return TERN_ERR_PROTOCOL;
        /* dependencies: on a BEGIN fragment of an ordered message flow, and only backwards */
        if ((flags & TERN__FD_DEP) &&
            (!(flags & TERN__FD_BEGIN) || !(flags & TERN__FD_ORDERED) ||
             (flags & TERN__FD_STREAM) || dep[1] > dep[0] || (dep[2] > 1 && dep[2] - 1 > dep[0])))
            return TERN_ERR_PROTOCOL;
        /* a part is a non-empty byte range inside a fragment of at most TERN_MAX_DATAGRAM */
        if (part && (len == 0 || whole > TERN_MAX_DATAGRAM || off > whole || len > whole - off))
            return TERN_ERR_PROTOCOL;
        if (!part) whole = len;
    }
    if (p == NULL) return TERN_ERR_PROTOCOL;
    const uint8_t *data = p;
    *pp = p + len;

    if (type == TERN__FRAME_KEYFRAME_REQUEST) { /* fsn: the message ID skipped */
        tern__sflow *f = tern__sflow_find(c, id);
        if (f == NULL && (id & 1) != (uint64_t)(c->is_server ? 1 : 0)) return TERN_ERR_PROTOCOL;
        /* the receiver names a message it got: one we never numbered is made up */
        if (f && fsn >= f->next_msg_id) return TERN_ERR_PROTOCOL;
        c->st.keyframe_requests_received++;
        if (f) tern__flow_on_kf_request(c, f, fsn);
        return TERN_OK;
    }
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
    case TERN__FRAME_FLOW_DATA:
    case TERN__FRAME_FLOW_DATA_PART: {
        if (fsn >= f->final_fsn) return TERN_ERR_PROTOCOL;
        if (fsn < f->base) return TERN_OK; /* duplicate */
        if (fsn >= f->base + f->window) return TERN_ERR_PROTOCOL; /* flow control */
        if (len > TERN_MAX_DATAGRAM) return TERN_ERR_PROTOCOL;
        if ((rc = rflow_reserve(c, f, fsn)) != TERN_OK) return rc;
        tern__rfrag *s = slot(f, fsn);
        if (s->present || s->done) return TERN_OK;
        f->ordered = (flags & TERN__FD_ORDERED) != 0;
        f->stream = (flags & TERN__FD_STREAM) != 0;
        if (flags & TERN__FD_DEP) {
            s->mid = dep[0];
            s->dep = dep[1] ? dep[0] - dep[1] : TERN__NO_MSG;
            s->gop = dep[2] ? dep[0] - (dep[2] - 1) : TERN__NO_MSG;
        }
        if (part || s->parts) {
            /* in parts, or the whole of a fragment whose parts began to arrive */
            rc = part_store(c, f, s, (uint8_t)flags, (size_t)whole, (size_t)off, data, (size_t)len);
            if (rc != TERN_OK) return rc;
            if ((flags & TERN__FD_TTL) && s->deadline == 0)
                s->deadline = c->rx.last + ttl * TERN_NS_PER_MS; /* as below */
            if (!s->present) return TERN_OK;
            return frag_arrived(c, f, fsn);
        }
        if (len) {
            s->data = tern__conn_alloc(c, (size_t)len, 1);
            if (s->data == NULL) return tern__conn_mem_err(c, (size_t)len);
            memcpy(s->data, data, (size_t)len);
        }
        s->len = (uint16_t)len;
        s->flags = (uint8_t)flags;
        s->present = 1;
        if (flags & TERN__FD_TTL) {
            /* c->rx.last is this packet's arrival time */
            /* the sender already took the path's delay off (see put_fragment) */
            s->deadline = c->rx.last + ttl * TERN_NS_PER_MS; /* ttl 0: already too late */
        }
        f->buffered += len;
        c->st.stream_bytes_received += 0;
        return frag_arrived(c, f, fsn);
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

int tern_flow_set_paused(tern_conn *c, uint64_t flow_id, int paused)
{
    tern__rflow *f = c ? tern__rflow_find(c, flow_id) : NULL;
    if (f == NULL) return TERN_ERR_NOT_FOUND;
    f->paused = paused != 0;
    if (!paused) {
        int rc = rflow_deliver(c, f, f->base);
        if (rc != TERN_OK) return rc;
        rflow_advance(c, f);
    }
    return TERN_OK;
}
