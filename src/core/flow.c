/*
 * Flows: what the sending side (flow_send.c) and the receiving side (flow_recv.c) share: the
 * connection's memory budget, finding a flow by id, reaping and freeing flows, and the flow
 * calls of the public API (open, send, send_ref, send_msg, close, queued). Message IDs,
 * dependencies and tern_flow_flush are in flow_send.c. Pausing delivery is in
 * flow_recv.c; the sending side's events (on_flow_acked, on_flow_writable, on_flow_release) in
 * flow_events.c.
 */
#include <string.h>

#include "core/conn.h"
#include "core/fec.h"
#include "core/flow_int.h"

/* ---------------------------------------------------------------- memory budget */

/* Everything a connection's flows and datagram queue allocate is counted in c->flows.mem at its
 * real size (tern__mem_charge). What the peer makes us hold (receive flows, reassembly) is refused
 * past tern_settings.conn_memory and the connection is closed with TERN_ERR_BUDGET; what our
 * own application queues is refused earlier, at three quarters of it (tern_flow_send and
 * tern_conn_send_datagram say AGAIN), so a peer we queued much for (a slow reader) still has a
 * quarter of the budget for what it sends us and is not closed for our queue. The sender's
 * bookkeeping of fragments in flight is counted but never refused for the budget: refusing it could
 * stall a connection whose queue holds the budget, and it is bounded by the congestion window. */
int tern__conn_mem_over(const tern_conn *c, size_t size)
{
    uint64_t max = c->ep->s.conn_memory;
    return max != 0 && c->flows.mem + tern__mem_charge(size) > max;
}

int tern__conn_send_over(const tern_conn *c, size_t size)
{
    uint64_t max = c->ep->s.conn_memory;
    return max != 0 && c->flows.mem + tern__mem_charge(size) > max - max / 4;
}

int tern__conn_mem_err(const tern_conn *c, size_t size)
{
    return tern__conn_mem_over(c, size) ? TERN_ERR_BUDGET : TERN_ERR_NOMEM;
}

void *tern__conn_alloc(tern_conn *c, size_t size, int enforce)
{
    if (enforce && tern__conn_mem_over(c, size)) return NULL;
    void *p = tern__malloc(&c->ep->alloc, size);
    if (p != NULL) c->flows.mem += tern__mem_charge(size);
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
    c->flows.mem -= tern__mem_charge(size);
    tern__free(&c->ep->alloc, p, size);
}

size_t tern_conn_memory(const tern_conn *c)
{
    return c ? (size_t)c->flows.mem : 0;
}

/* ---------------------------------------------------------------- lookup */

tern__sflow *tern__sflow_find(const tern_conn *c, uint64_t id)
{
    for (tern__sflow *f = c->flows.send; f; f = f->next)
        if (f->id == id) return f;
    return NULL;
}

tern__rflow *tern__rflow_find(const tern_conn *c, uint64_t id)
{
    for (tern__rflow *f = c->flows.recv; f; f = f->next)
        if (f->id == id) return f;
    return NULL;
}

void tern__flows_reap(tern_conn *c)
{
    tern__flow_events(c); /* before a finished flow goes */
    tern__sflows_reap(c);
    tern__rflows_reap(c);
}

void tern__flows_free(tern_conn *c)
{
    while (c->flows.send) {
        tern__sflow *f = c->flows.send;
        c->flows.send = f->next;
        tern__sflow_free(c, f);
    }
    while (c->flows.recv) {
        tern__rflow *f = c->flows.recv;
        c->flows.recv = f->next;
        tern__rflow_free(c, f);
    }
    c->flows.n_send = c->flows.n_recv = 0;
    tern__fec_conn_free(c);
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
    if (d.fec > TERN_FEC_ADAPTIVE || (d.fec && (d.fec_group < 1 || d.fec_group > 64)))
        return TERN_ERR_INVALID_ARG;
    if (c->flows.n_send >= c->peer.max_flows) return TERN_ERR_LIMIT;
    tern__sflow *f = tern__conn_calloc(c, sizeof(*f), 0);
    if (f == NULL) return TERN_ERR_NOMEM;
    f->id = c->flows.next_id;
    c->flows.next_id += 2;
    f->cfg = d;
    f->peer_max = c->peer.flow_window;
    f->final_fsn = UINT64_MAX;
    f->gop_id = TERN__NO_MSG;
    /* append: flows of one priority are served in opening order */
    tern__sflow **pp = &c->flows.send;
    while (*pp) pp = &(*pp)->next;
    *pp = f;
    c->flows.n_send++;
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

/* tern_flow_send (ref 0: copies data), tern_flow_send_ref (ref 1: keeps the pointer) and
 * tern_flow_send_msg (opts: its deadline, dependencies; NULL: the flow's defaults). */
static int flow_queue(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data,
                      size_t len, int priority, int ref, void *token, const tern_msg_opts *opts,
                      uint64_t *msg_id)
{
    if (c == NULL || (data == NULL && len > 0)) return TERN_ERR_INVALID_ARG;
    if (ref && c->ep->cb.on_flow_release == NULL) return TERN_ERR_INVALID_ARG;
    tern__sflow *f = tern__sflow_find(c, flow_id);
    if (f == NULL) return TERN_ERR_NOT_FOUND;
    if (c->state != TERN_CONN_ESTABLISHED || f->closing) return TERN_ERR_STATE;
    if (len > (64u << 20)) return TERN_ERR_TOO_LARGE;
    if (priority > 7) return TERN_ERR_INVALID_ARG;
    int rc = opts ? tern__flow_msg_check(f, opts) : TERN_OK;
    if (rc != TERN_OK) return rc;
    rc = tern__flow_send_admit(c, f, len, ref);
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
    uint32_t deadline_ms = opts && opts->deadline_ms ? opts->deadline_ms : f->cfg.deadline_ms;
    m->deadline = f->cfg.reliability != TERN_FLOW_RELIABLE && deadline_ms
                      ? now + (uint64_t)deadline_ms * TERN_NS_PER_MS
                      : TERN_TIME_NEVER;
    tern__flow_msg_number(f, m, opts);
    if (msg_id) *msg_id = m->id;
    if (f->tail) f->tail->next = m;
    else f->head = m;
    f->tail = m;
    m->queued = 1;
    f->queued_bytes += len;
    f->uncut_bytes += len;
    f->blocked = 0; /* taken: no writable event owed */
    tern__ep_mark_send(c->ep, c);
    tern__conn_update_timer(c);
    return TERN_OK;
}

int tern_flow_send(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data, size_t len,
                   int priority)
{
    return flow_queue(c, flow_id, now, data, len, priority, 0, NULL, NULL, NULL);
}

int tern_flow_send_ref(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data,
                       size_t len, int priority, void *token)
{
    return flow_queue(c, flow_id, now, data, len, priority, 1, token, NULL, NULL);
}

int tern_flow_send_msg(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data,
                       size_t len, const tern_msg_opts *opts, uint64_t *msg_id)
{
    tern_msg_opts d = {-1, 0, 0, 0};
    return flow_queue(c, flow_id, now, data, len, opts ? opts->priority : -1, 0, NULL,
                      opts ? opts : &d, msg_id);
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
