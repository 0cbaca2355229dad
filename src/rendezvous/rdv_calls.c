/*
 * Rendezvous server: services and calls (OFFER, CALL, REPLY), the calls' deadlines and their
 * expiry. See rdv_server.c for the design.
 */
#include <string.h>

#include "rendezvous/rdv_server_int.h"

/* ---------------------------------------------------------------- services and calls */

void tern__rdv_on_offer(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (tern__rdv_token_gate(s, p, now, m, s->cfg.require_offer_token, TERN_RDV_TOKEN_OFFER,
                             m->service, m->service_len))
        return;
    rdv_service *sv = tern__map_find(&s->services, m->service, m->service_len);
    if (sv != NULL && sv->provider != p) {
        tern__rdv_send_error(s, p, now, TERN_RDV_E_SERVICE_TAKEN, m);
        return;
    }
    if (sv == NULL) {
        if ((s->cfg.max_services_per_peer && p->n_services >= s->cfg.max_services_per_peer) ||
            (s->cfg.max_services && s->st.services >= s->cfg.max_services)) {
            s->st.limit_services++;
            tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        if (!can_hold(s, p, service_cost(m->service_len))) {
            tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        sv = alloc(s, sizeof(*sv) + m->service_len);
        if (sv == NULL) {
            tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        memset(sv, 0, sizeof(*sv));
        sv->provider = p;
        sv->name_len = (uint8_t)m->service_len;
        memcpy(sv->name, m->service, m->service_len);
        if (tern__map_put(&s->services, NULL, sv) != TERN_OK) {
            release(s, sv, sizeof(*sv) + m->service_len);
            tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        sv->next_of = p->services;
        p->services = sv;
        p->n_services++;
        charge(s, p, service_cost(sv->name_len));
        s->st.services++;
    }
    tern_rdv_msg r;
    tern_rdv_msg_init(&r, TERN_RDV_OFFERED);
    r.service = sv->name, r.service_len = sv->name_len;
    tern__rdv_send_msg(s, p, now, &r);
}

static void call_free(tern_rdv_server *s, rdv_call *c)
{
    tern__map_del(&s->calls, NULL, c);
    tern__heap_remove(&s->deadlines, &c->h);
    if (c->out_prev) c->out_prev->out_next = c->out_next;
    else c->caller->calls_out = c->out_next;
    if (c->out_next) c->out_next->out_prev = c->out_prev;
    if (c->in_prev) c->in_prev->in_next = c->in_next;
    else c->provider->calls_in = c->in_next;
    if (c->in_next) c->in_next->in_prev = c->in_prev;
    c->caller->n_calls_out--;
    c->provider->n_calls_in--;
    uncharge(c->caller, CALL_COST);
    release(s, c, sizeof(*c));
    s->st.calls_pending--;
}

/* ERROR(code) for call c to its caller, then frees c. */
static void call_fail(tern_rdv_server *s, rdv_call *c, uint16_t code, uint64_t now)
{
    tern_rdv_msg e;
    tern_rdv_msg_error(&e, TERN_RDV_CALL, code);
    e.has_call_id = 1;
    e.call_id = c->cid;
    tern__rdv_send_msg(s, c->caller, now, &e);
    call_free(s, c);
}

void tern__rdv_calls_end_for(tern_rdv_server *s, rdv_peer *p, uint64_t now)
{
    while (p->calls_out) call_free(s, p->calls_out); /* the caller is gone: nobody to tell */
    while (p->calls_in) {
        s->st.call_gone++;
        call_fail(s, p->calls_in, TERN_RDV_E_PROVIDER_GONE, now);
    }
}

void tern__rdv_on_call(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    rdv_service *sv = tern__map_find(&s->services, m->service, m->service_len);
    if (sv == NULL) {
        s->st.call_no_service++;
        tern__rdv_send_error(s, p, now, TERN_RDV_E_NO_SERVICE, m);
        return;
    }
    if (s->st.calls_pending >= s->cfg.max_calls || p->n_calls_out >= s->cfg.max_calls_per_peer ||
        (s->cfg.max_calls_per_provider &&
         sv->provider->n_calls_in >= s->cfg.max_calls_per_provider)) {
        s->st.limit_calls++;
        tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    if (!can_hold(s, p, CALL_COST)) {
        tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    rdv_call *c = alloc(s, sizeof(*c));
    if (c == NULL) {
        tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->sid = ++s->next_sid;
    c->cid = m->call_id;
    c->caller = p;
    c->provider = sv->provider;
    uint32_t t = m->has_timeout && m->timeout_ms ? m->timeout_ms : s->cfg.default_timeout_ms;
    if (t > s->cfg.max_timeout_ms) t = s->cfg.max_timeout_ms;
    c->h = TERN__HEAP_ITEM_INIT;
    if (tern__map_put(&s->calls, NULL, c) != TERN_OK) {
        release(s, c, sizeof(*c));
        tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    if (tern__heap_set(&s->deadlines, &c->h, now + (uint64_t)t * TERN_NS_PER_MS) != TERN_OK) {
        tern__map_del(&s->calls, NULL, c);
        release(s, c, sizeof(*c));
        tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
        return;
    }
    c->out_next = p->calls_out;
    if (p->calls_out) p->calls_out->out_prev = c;
    p->calls_out = c;
    c->in_next = c->provider->calls_in;
    if (c->provider->calls_in) c->provider->calls_in->in_prev = c;
    c->provider->calls_in = c;
    p->n_calls_out++;
    c->provider->n_calls_in++;
    charge(s, p, CALL_COST);
    s->st.calls_pending++;
    s->st.calls++;

    tern_rdv_msg f;
    tern_rdv_msg_init(&f, TERN_RDV_CALL);
    f.service = sv->name, f.service_len = sv->name_len;
    f.method = m->method, f.method_len = m->method_len;
    f.has_call_id = 1, f.call_id = c->sid;
    f.has_timeout = 1, f.timeout_ms = t;
    f.has_peer_id = 1;
    memcpy(f.peer_id, p->id, TERN_PEER_ID_LEN);
    f.payload = m->payload, f.payload_len = m->payload_len, f.has_payload = 1;
    if (!tern__rdv_send_as(s, c->provider, now, &f, EVENT)) {
        /* the provider is not reading (max_queue_bytes) or the flow refused: fail it now */
        s->st.limit_calls++;
        call_fail(s, c, TERN_RDV_E_LIMIT, now);
    }
}

void tern__rdv_on_reply(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    uint64_t sid = m->call_id;
    rdv_call *c = tern__map_find(&s->calls, (const uint8_t *)&sid, sizeof(sid));
    if (c == NULL || c->provider != p) { /* late (timed out) or not this provider's call */
        s->st.late_replies++;
        return;
    }
    tern_rdv_msg r;
    tern_rdv_msg_init(&r, TERN_RDV_REPLY);
    r.has_call_id = 1, r.call_id = c->cid;
    r.has_status = 1, r.status = m->status;
    r.payload = m->payload, r.payload_len = m->payload_len, r.has_payload = 1;
    tern__rdv_send_msg(s, c->caller, now, &r);
    s->st.replies++;
    call_free(s, c);
}

uint64_t tern_rdv_server_next_deadline(const tern_rdv_server *s)
{
    const tern__heap_item *it = tern__heap_top(&s->deadlines);
    return it ? it->deadline : TERN_TIME_NEVER;
}

void tern_rdv_server_handle_expiry(tern_rdv_server *s, uint64_t now)
{
    for (;;) {
        tern__heap_item *it = tern__heap_top(&s->deadlines);
        if (it == NULL || it->deadline > now) return;
        rdv_call *c = (rdv_call *)(void *)((uint8_t *)it - offsetof(rdv_call, h));
        s->st.call_timeouts++;
        call_fail(s, c, TERN_RDV_E_TIMEOUT, now);
        tern__rdv_reap(s, now);
    }
}
