/*
 * Paths, the sending side of probing (see path.c for the rules): what goes to candidate paths
 * (the Initial or Response of a peer handshake, PATH_CHALLENGE and PATH_RESPONSE, padded when
 * the anti-amplification budget allows), the probe timers and their backoff, and the hooks the
 * handshake calls to make, attach and adopt candidates.
 */
#include <sodium.h>
#include <string.h>

#include "core/conn.h"
#include "core/path_int.h"
#include "core/wire.h"

/* ---------------------------------------------------------------- send */

static size_t put_relay_hdr(uint8_t *out, const tern__path *path)
{
    return path->relayed ? tern_relay_hdr_put(out, path->channel) : 0;
}

/* A probe went to candidate k: counted when it is the UDP address of a connect_opts connection
 * (tern_conn_stats.udp_probes). */
static void count_probe(tern_conn *c, const tern__cand *k)
{
    if (k->path.chosen && !tern__path_is_stream(&k->path)) c->st.udp_probes++;
}

/* The probe allowance of a handed address ran out unanswered: probing it stops. */
static void give_up(tern_conn *c, tern__cand *k)
{
    if (k->state != TERN__CAND_FAILED) c->ep->st.probes_exhausted++;
    k->state = TERN__CAND_FAILED;
    k->next_probe = TERN_TIME_NEVER;
    k->initial_due = k->challenge_due = k->response_due = k->held = 0;
}

/* A handshake packet (the client's Initial, the server's Response) for candidate k, or 0. */
static int write_hs(tern_conn *c, tern__cand *k, uint8_t *out, size_t cap, const tern__path **via)
{
    size_t hdr = k->path.relayed ? TERN__RELAY_HDR_LEN : 0, n = hdr + c->hs.pkt_len;
    if (cap < n) return -1;
    k->initial_due = 0;
    if (!tern__path_may_send(c, &k->path, n)) {
        c->ep->st.amplification_blocked++;
        if (tern__path_exhausted(c, &k->path)) give_up(c, k);
        return 0;
    }
    put_relay_hdr(out, &k->path);
    memcpy(out + hdr, c->hs.pkt, c->hs.pkt_len);
    k->probes++;
    count_probe(c, k);
    tern__path_count_sent(&k->path, n);
    *via = &k->path;
    return (int)n;
}

int tern__p2p_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const tern__path **via)
{
    tern__p2p *p = c->p2p;
    if (p == NULL) return 0;
    if (c->state == TERN_CONN_HANDSHAKE) {
        if (c->hs.pkt == NULL) return 0;
        if (c->is_server) {
            /* copies of the Initial that came from other addresses: each gets the Response
             * within its own budget, and the path the client's first 1-RTT packet comes on
             * wins (tern__p2p_hs_adopt). The first copy's Response goes first. */
            if (c->hs.pending) return 0;
            for (size_t i = 0; i < p->n; i++) {
                if (!p->cands[i].initial_due) continue;
                int n = write_hs(c, &p->cands[i], out, cap, via);
                if (n != 0) return n < 0 ? 0 : n;
            }
            return 0;
        }
        if (!p->probing) return 0;
        if (c->hs.pending) { /* a new Initial (first, or after a Retry): everywhere at once */
            c->hs.pending = 0;
            for (size_t i = 0; i < p->n; i++)
                if (p->cands[i].state != TERN__CAND_FAILED) p->cands[i].initial_due = 1;
        }
        for (size_t i = 0; i < p->n; i++) {
            if (!p->cands[i].initial_due) continue;
            int n = write_hs(c, &p->cands[i], out, cap, via);
            if (n != 0) return n < 0 ? 0 : n;
        }
        return 0;
    }
    if (c->state != TERN_CONN_ESTABLISHED) return 0;
    for (size_t i = 0; i < p->n; i++) {
        tern__cand *k = &p->cands[i];
        if (!k->challenge_due && !k->response_due) continue;
        /* padded to the connection's datagram size (a path that validates carries it), unless
         * the path's budget is short: then unpadded if that fits (RFC 9000 8.2.1), else held
         * until more arrives from there */
        size_t hdr = k->path.relayed ? TERN__RELAY_HDR_LEN : 0;
        size_t size = c->pmtu.size - hdr, flen = size - tern__conn_packet_overhead();
        size_t need = (k->challenge_due ? 9 : 0) + (k->response_due ? 9 : 0);
        int padded = 1;
        if (cap < hdr + size) return 0;
        if (!tern__path_may_send(c, &k->path, hdr + size)) {
            padded = 0;
            flen = need;
            if (!tern__path_may_send(c, &k->path, hdr + tern__conn_packet_overhead() + flen)) {
                if (tern__path_exhausted(c, &k->path)) {
                    give_up(c, k);
                } else if (!k->held) {
                    k->held = 1;
                    c->ep->st.amplification_blocked++;
                }
                continue;
            }
        }
        uint8_t frames[TERN_MAX_DATAGRAM], *f = frames, *end = frames + flen;
        memset(frames, 0, flen); /* PADDING */
        if (k->challenge_due) f = tern__frame_put_path(f, end, TERN__FRAME_PATH_CHALLENGE, k->challenge);
        if (k->response_due && f)
            f = tern__frame_put_path(f, end, TERN__FRAME_PATH_RESPONSE, k->response);
        if (f == NULL) return 0;
        int n = tern__conn_seal(c, now, out + hdr, cap - hdr, frames, flen);
        if (n <= 0) return n;
        put_relay_hdr(out, &k->path);
        if (k->challenge_due) {
            k->challenged = 1;
            k->probes++;
            count_probe(c, k);
        }
        if (!padded) c->ep->st.probes_unpadded++;
        k->challenge_due = k->response_due = k->held = 0;
        tern__path_count_sent(&k->path, hdr + (size_t)n);
        *via = &k->path;
        return (int)hdr + n;
    }
    return 0;
}

/* ---------------------------------------------------------------- timers */

uint64_t tern__p2p_deadline(const tern_conn *c)
{
    const tern__p2p *p = c->p2p;
    uint64_t d = TERN_TIME_NEVER;
    if (p == NULL || !p->probing) return d;
    if (c->state == TERN_CONN_HANDSHAKE && !c->is_server) {
        for (size_t i = 0; i < p->n; i++)
            if (p->cands[i].next_probe < d) d = p->cands[i].next_probe;
        if (p->has_relay && !p->relay_added && p->relay_at < d) d = p->relay_at;
        if (p->has_stream && !p->stream_added && p->stream_at < d) d = p->stream_at;
    } else if (tern__p2p_probing_active(c)) {
        for (size_t i = 0; i < p->n; i++)
            if (p->cands[i].state == TERN__CAND_PROBING && p->cands[i].next_probe < d)
                d = p->cands[i].next_probe;
    } else if (c->state == TERN_CONN_ESTABLISHED && !tern__path_is_fallback(&c->path)) {
        /* direct: the relay route kept in reserve, and the silence that sends us back to the
         * fallback (relay, stream) */
        if (!c->is_server && p->has_relay && p->relay_ka_next < d) d = p->relay_ka_next;
        if (c->path.await_since != 0 && (c->is_server || tern__p2p_has_fallback(p))) {
            uint64_t t = c->path.await_since + tern__p2p_fallback_after(c);
            if (p->silent_next > t) t = p->silent_next;
            if (t < d) d = t;
        }
    }
    return d;
}

static void next_gap(tern_conn *c, tern__cand *k, uint64_t now, uint64_t cap)
{
    /* a handed address that has not answered: the second half of its allowance is spread out */
    int unanswered = k->path.handed && k->path.rx_bytes == 0 &&
                     k->path.tx_dgrams >= c->ep->s.probe_tries / 2;
    if (now >= c->p2p->probe_until || k->path.relayed || unanswered) {
        k->gap *= 2;
        if (k->gap > cap) k->gap = cap;
    }
    k->next_probe = now + k->gap;
}

void tern__p2p_on_timer(tern_conn *c, uint64_t now)
{
    tern__p2p *p = c->p2p;
    int any = 0;
    if (p == NULL || !p->probing) return;
    if (c->state == TERN_CONN_HANDSHAKE && !c->is_server) {
        if (p->has_relay && !p->relay_added && now >= p->relay_at) {
            p->relay_added = 1;
            tern__cand *k =
                tern__cand_add(c, now, &c->path.local, &p->relay.addr, 1, p->relay.channel, 0);
            if (k) k->next_probe = now;
        }
        if (p->has_stream && !p->stream_added && now >= p->stream_at) {
            /* UDP has not answered in time (happy eyeballs): the stream joins the race */
            tern__cand *k = tern__p2p_stream_add(c, now);
            if (k) {
                k->gap = c->hs.backoff;
                k->next_probe = now;
            }
        }
        for (size_t i = 0; i < p->n; i++) {
            tern__cand *k = &p->cands[i];
            if (now < k->next_probe || k->state == TERN__CAND_FAILED) continue;
            if (tern__path_exhausted(c, &k->path)) {
                give_up(c, k);
                continue;
            }
            k->initial_due = 1;
            next_gap(c, k, now, c->ep->s.max_backoff_ns);
            any = 1;
        }
    } else if (c->state == TERN_CONN_ESTABLISHED && !tern__path_is_fallback(&c->path) &&
               c->path.validated) {
        if (!c->is_server) {
            int i;
            if (tern__p2p_has_fallback(p) && tern__p2p_direct_silent(c, now)) {
                if ((i = tern__p2p_fallback_cand(c, now)) >= 0)
                    tern__p2p_fall_back(c, now, i); /* probed below */
                else
                    p->silent_next =
                        now + tern__p2p_fallback_after(c); /* no room: try again later */
            } else if (p->has_relay && now >= p->relay_ka_next) {
                if ((i = tern__p2p_fallback_cand(c, now)) >= 0) {
                    p->cands[i].challenge_due = 1;
                    any = 1;
                }
                p->relay_ka_next = now + TERN__RELAY_KEEPALIVE;
            }
        } else if (tern__p2p_direct_silent(c, now)) {
            /* our packets go unanswered: tell the peer through the relay or a stream it came
             * on, if there is one */
            int i = tern__p2p_fallback_cand(c, now);
            if (i >= 0) {
                p->cands[i].challenge_due = 1;
                any = 1;
            }
            p->silent_next = now + tern__p2p_fallback_after(c);
        }
    }
    if (tern__p2p_probing_active(c)) {
        for (size_t i = 0; i < p->n; i++) {
            tern__cand *k = &p->cands[i];
            if (k->state != TERN__CAND_PROBING || now < k->next_probe) continue;
            if (tern__path_exhausted(c, &k->path)) {
                give_up(c, k);
                continue;
            }
            k->challenge_due = 1;
            next_gap(c, k, now,
                     tern__path_is_stream(&c->path) ? TERN__STREAM_PROBE_MAX : TERN__BG_PROBE_MAX);
            any = 1;
        }
    }
    if (any) tern__ep_mark_send(c->ep, c);
}

/* ---------------------------------------------------------------- handshake hooks */

void tern__p2p_client_response(tern_conn *c, const tern__rx *rx)
{
    const tern_addr *remote = rx->remote;
    int relayed = rx->relayed;
    const uint8_t *channel = rx->channel;
    if (c->p2p == NULL) return;
    tern__p2p_stop_punch_match(c);
    int i = tern__cand_find(c->p2p, remote, relayed, channel);
    if (i >= 0) {
        tern__cand *k = &c->p2p->cands[i];
        tern__path chosen = k->path;
        /* the candidate list keeps every other path; the chosen one leaves it */
        c->p2p->cands[i] = c->p2p->cands[--c->p2p->n];
        c->path = chosen;
    } else {
        tern__path_set(&c->path, rx->local, remote, relayed, channel);
    }
    c->path.validated = 1;
    for (size_t j = 0; j < c->p2p->n; j++) c->p2p->cands[j].initial_due = 0;
    if (c->ep->cb.on_path && c->exposed) c->ep->cb.on_path(c, c->ep->user_data);
}

void tern__p2p_server_attach(tern_conn *c, uint64_t now)
{
    tern_endpoint *ep = c->ep;
    for (size_t e = 0; e < ep->n_expects; e++) {
        tern__expect *x = &ep->expects[e];
        if (sodium_memcmp(x->peer_pub, c->peer.static_pub, TERN_KEY_LEN) != 0) continue;
        tern__p2p *p = tern__p2p_get(c);
        if (p != NULL) {
            p->probing = 1;
            p->has_relay = x->t.has_relay;
            p->relay = x->t.relay;
            p->interval = x->t.probe_interval_ns ? x->t.probe_interval_ns : DEFAULT_INTERVAL;
            p->probe_until = now + x->t.probe_duration_ns;
            for (size_t i = 0; i < x->t.n_cands; i++) {
                const tern_addr *a = &x->t.cands[i];
                if (tern__path_is(&c->path, a, 0, NULL)) continue;
                int j = tern__cand_find(p, a, 0, NULL);
                tern__cand *k =
                    j >= 0 ? &p->cands[j] : tern__cand_add(c, now, &x->local, a, 0, NULL, 0);
                if (k == NULL) break;
                /* the punches sent there count in its allowance */
                k->path.handed = 1;
                k->path.tx_dgrams += x->punches;
                k->path.tx_bytes += (uint64_t)x->punches * TERN__PUNCH_LEN;
            }
        }
        sodium_memzero(x, sizeof(*x));
        ep->expects[e] = ep->expects[--ep->n_expects];
        return;
    }
}

/* Server: a copy of a half-open handshake's Initial came from another address (a client
 * whose first copy was beaten by a replay from elsewhere, or a peer's Initial on several
 * candidate paths). That address gets the Response too, within its own 3x budget; the
 * address the client's first 1-RTT packet comes from wins. */
int tern__p2p_hs_copy(tern_conn *c, const tern__rx *rx, size_t len)
{
    uint64_t now = rx->now;
    const tern_addr *remote = rx->remote;
    int relayed = rx->relayed;
    const uint8_t *channel = rx->channel;
    if (tern__p2p_get(c) == NULL) return TERN_ERR_NOMEM;
    tern__p2p *p = c->p2p;
    int i = tern__cand_find(p, remote, relayed, channel);
    tern__cand *k =
        i >= 0 ? &p->cands[i] : tern__cand_add(c, now, rx->local, remote, relayed, channel, 1);
    if (k == NULL) return TERN_ERR_LIMIT;
    if (i < 0) c->ep->st.initial_copies++;
    k->path.rx_bytes += len;
    k->initial_due = 1;
    tern__ep_mark_send(c->ep, c);
    return TERN_OK;
}

/* Server: the client's first 1-RTT packet (rx) came on candidate rx->cand. If the Response went
 * there, that is the client's address: it becomes the active path (the old one stays a
 * candidate) and rx->cand says the packet came on the active path. */
void tern__p2p_hs_adopt(tern_conn *c, tern__rx *rx)
{
    tern__cand *k = &c->p2p->cands[rx->cand];
    if (k->probes == 0) return; /* no Response went there (punches do not count) */
    tern__path old = c->path;
    c->path = k->path;
    k->path = old;
    k->path.handed = 0;
    k->state = TERN__CAND_PROBING;
    k->initial_due = 0;
    k->challenge_due = 0;
    rx->cand = -1;
}

void tern__p2p_established(tern_conn *c, uint64_t now)
{
    tern__p2p *p = c->p2p;
    if (p == NULL) return;
    tern__p2p_stop_punch_match(c);
    p->relay_ka_next = now; /* a direct connection checks its relay route at once */
    for (size_t i = 0; i < p->n; i++) {
        tern__cand *k = &p->cands[i];
        k->initial_due = 0;
        if (k->state == TERN__CAND_PROBING) {
            k->next_probe = now;
            k->gap = p->interval;
        }
    }
    if (tern__p2p_probing_active(c)) tern__p2p_on_timer(c, now);
}
