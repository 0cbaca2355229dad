/*
 * Write-side events of our sending flows (tern.h, beside tern_flow_send): on_flow_acked
 * (cumulative progress), on_keyframe_request (frame-aware delivery: the encoder should send a
 * keyframe), on_flow_writable (a refused send would now be taken) and on_flow_release (a
 * tern_flow_send_ref buffer is no longer referenced).
 *
 * The sender's bookkeeping only counts and lists here (flow_send.c calls tern__flow_msg_ended
 * when a message leaves the queue for good, and counts acknowledged fragment bytes); the
 * application hears about it at one safe point, after each received packet (tern__flows_reap),
 * never from inside ACK processing, loss detection or the scheduler, so a callback may queue,
 * open, close flows or close the connection without pulling anything from under the core. A referenced
 * message that ended keeps its small record on its flow's release list until then; a flow that
 * is freed (reaped, or with its connection: always before on_conn_free) releases its list at
 * once, so every referenced buffer is released exactly once.
 */
#include "core/flow_int.h"

void tern__flow_msg_ended(tern_conn *c, tern__sflow *f, tern__msg *m)
{
    if (m->abandoned) f->given_up_msgs++;
    else if (!f->freeing) f->acked_msgs++;
    else m->abandoned = 1; /* the flow is freed under it: not delivered */
    if (!m->is_ref) {
        tern__conn_dealloc(c, m, sizeof(*m) + m->len);
        return;
    }
    m->next = NULL;
    if (f->rel_tail) f->rel_tail->next = m;
    else f->rel_head = m;
    f->rel_tail = m;
}

void tern__flow_releases(tern_conn *c, tern__sflow *f)
{
    tern_endpoint *ep = c->ep;
    while (f->rel_head) {
        tern__msg *m = f->rel_head;
        f->rel_head = m->next;
        if (f->rel_head == NULL) f->rel_tail = NULL;
        int delivered = !m->abandoned;
        void *token = m->token;
        tern__conn_dealloc(c, m, sizeof(*m));
        if (ep->cb.on_flow_release) ep->cb.on_flow_release(c, f->id, token, delivered, ep->user_data);
    }
}

/* A send refused with TERN_ERR_AGAIN would now be taken, and the queue is at its low-water mark
 * (half of send_buffer), so the application refills in large steps rather than per ACK. */
static int writable(const tern_conn *c, const tern__sflow *f)
{
    return c->state == TERN_CONN_ESTABLISHED && !f->closing &&
           f->queued_bytes <= c->ep->s.send_buffer / 2 &&
           tern__flow_send_admit(c, f, f->blocked_len, f->blocked_ref) == TERN_OK;
}

void tern__flow_events(tern_conn *c)
{
    tern_endpoint *ep = c->ep;
    /* callbacks may open flows (appended: visited too) or close them (freed only by the reap
     * that follows), never unlink one */
    for (tern__sflow *f = c->flows.send; f; f = f->next) {
        tern__flow_releases(c, f);
        if (f->acked_bytes != f->rep_bytes || f->acked_msgs != f->rep_msgs ||
            f->given_up_msgs != f->rep_given_up) {
            f->rep_bytes = f->acked_bytes;
            f->rep_msgs = f->acked_msgs;
            f->rep_given_up = f->given_up_msgs;
            if (ep->cb.on_flow_acked) {
                tern_flow_progress p;
                p.acked_bytes = f->acked_bytes;
                p.acked_messages = f->acked_msgs;
                p.given_up_messages = f->given_up_msgs;
                p.queued = f->queued_bytes;
                ep->cb.on_flow_acked(c, f->id, &p, ep->user_data);
            }
        }
        if (f->kf_pending && f->kf_gop != f->gop_id) {
            f->kf_pending = 0; /* a keyframe was queued since the request: it answers it */
        } else if (f->kf_pending) {
            /* a keyframe request (a message of the current group of pictures given up here,
             * or the receiver's KEYFRAME_REQUEST): at most one report per RTT; one within the
             * RTT waits for its end rather than being lost (the keyframe that answered the
             * last report may be the message that died) */
            uint64_t now = c->tx.last > c->rx.last ? c->tx.last : c->rx.last;
            if (!f->kf_reported || now >= f->kf_last + c->rec.rtt.srtt) {
                f->kf_pending = 0;
                f->kf_reported = 1;
                f->kf_last = now;
                if (ep->cb.on_keyframe_request) ep->cb.on_keyframe_request(c, f->id, ep->user_data);
            }
        }
        if (f->blocked && writable(c, f)) {
            f->blocked = 0;
            if (ep->cb.on_flow_writable) ep->cb.on_flow_writable(c, f->id, ep->user_data);
        }
    }
}
