/*
 * Paths, the stream side (see path.c for the rules every path follows, docs/protocol.md "Stream
 * paths"): a client connection that races UDP and a stream (tern_endpoint_connect_opts), and
 * what the driver tells us when a stream ends (tern_endpoint_stream_closed).
 *
 * The core stays sans-I/O: a stream path is a path whose remote address has transport TCP or
 * TLS. The driver frames every packet we emit to such an address onto its TCP (TLS) connection
 * to it, opening one on demand, and hands us the frames it reads with that transport in the
 * addresses. The race reuses the peer-to-peer candidates: the UDP remote and the stream are two
 * candidates of one client handshake; the stream joins stream_after_ns after the first Initial
 * (as the relay joins a peer handshake relay_after_ns later) and the first that answers carries
 * the connection. The stream is a fallback like the relay: while it carries the connection the
 * UDP candidate is challenged in the background (doubling gaps up to TERN__STREAM_PROBE_MAX, for
 * as long as the connection lives, counted in udp_probes) and the client moves to UDP once it
 * validates; when UDP goes silent the client falls back to the stream.
 */
#include <string.h>

#include "core/conn.h"
#include "core/path_int.h"

void tern_connect_opts_default(tern_connect_opts *o)
{
    if (o == NULL) return;
    memset(o, 0, sizeof(*o));
    o->stream_after_ns = 250 * TERN_NS_PER_MS; /* as happy eyeballs (RFC 8305) */
}

int tern_endpoint_connect_opts(tern_endpoint *ep, uint64_t now, const tern_connect_opts *o,
                               tern_conn **out)
{
    if (ep == NULL || o == NULL || out == NULL) return TERN_ERR_INVALID_ARG;
    int has_udp = o->remote.family != TERN_AF_NONE;
    int has_stream = o->stream_remote.family != TERN_AF_NONE;
    if (!has_udp && !has_stream) return TERN_ERR_INVALID_ARG;
    if (has_udp && tern_addr_is_stream(&o->remote)) return TERN_ERR_INVALID_ARG;
    if (has_stream && !tern_addr_is_stream(&o->stream_remote)) return TERN_ERR_INVALID_ARG;
    if (!has_stream) return tern_endpoint_connect(ep, now, &o->local, &o->remote, o->server_pub, out);

    tern_conn *c = tern__p2p_client_new(ep, now, o->server_pub);
    if (c == NULL) return TERN_ERR_NOMEM;
    tern__p2p *p = c->p2p;
    p->interval = DEFAULT_INTERVAL;
    p->probe_until = now; /* every candidate's gaps double from the start */
    p->has_stream = 1;
    p->stream_local = o->stream_local;
    p->stream_remote = o->stream_remote;
    if (has_udp) {
        tern__cand *k = tern__cand_add(c, now, &o->local, &o->remote, 0, NULL, 0);
        if (k == NULL) { /* an empty table has room: cannot happen */
            tern__conn_free(c);
            return TERN_ERR_NOMEM;
        }
        k->path.chosen = 1;
        k->path.handed = 0;
        p->stream_at = now + o->stream_after_ns;
    } else {
        /* a stream-only remote (the application forced the choice): the stream at once */
        if (tern__p2p_stream_add(c, now) == NULL) {
            tern__conn_free(c);
            return TERN_ERR_NOMEM;
        }
        p->stream_at = now;
    }
    /* before the handshake picks one, the active path is the first candidate */
    c->path = p->cands[0].path;
    c->path.validated = 1; /* we chose to send there */
    int rc = tern__hs_client_start(c, now);
    if (rc != TERN_OK) {
        tern__conn_free(c);
        return rc;
    }
    /* the candidates' schedules resend the Initial, from one PTO on at doubling gaps (up to
     * max_backoff), as tern_endpoint_connect's timer does */
    for (size_t i = 0; i < p->n; i++) {
        p->cands[i].gap = c->hs.backoff;
        p->cands[i].next_probe = now + c->hs.backoff;
    }
    c->hs.retx_at = TERN_TIME_NEVER;
    tern__conn_update_timer(c);
    *out = c;
    return TERN_OK;
}

/* The stream to remote that carried c's active path ended. */
static void active_closed(tern_conn *c, uint64_t now)
{
    tern__p2p *p = c->p2p;
    int j = -1;
    for (size_t i = 0; p != NULL && i < p->n && j < 0; i++)
        if (p->cands[i].state == TERN__CAND_VALID && !tern__path_is_fallback(&p->cands[i].path))
            j = (int)i;
    if (j >= 0) {
        /* a validated UDP path is there: it carries the connection now (what the stream held
         * is declared lost on the way, tern__rec_path_changed) */
        tern__p2p_move(c, now, j);
    } else {
        tern__rec_stream_lost(c, now);
        /* a client's driver opens the stream again for the packets that go there now; a
         * server cannot reach the client's side of a TCP connection, so it waits for the
         * client to come back (a new stream, UDP) within the idle timeout */
        if (c->is_server) c->path.closed = 1;
    }
    tern__ep_mark_send(c->ep, c);
    tern__conn_update_timer(c);
}

void tern_endpoint_stream_closed(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                                 const tern_addr *remote)
{
    /* Paths are told apart by their remote address (as received: a client's driver may see
     * another local port when it reopens), so local only documents the call. */
    (void)local;
    if (ep == NULL || remote == NULL || !tern_addr_is_stream(remote)) return;
    for (tern_conn *c = ep->all; c != NULL; c = c->link.all_next) {
        /* a handshake records nothing: its candidates' schedule sends the Initial again,
         * over a stream the driver reopens */
        if (c->state != TERN_CONN_ESTABLISHED) continue;
        if (tern_addr_equal(&c->path.remote, remote)) {
            active_closed(c, now);
            continue;
        }
        for (size_t i = 0; c->p2p != NULL && i < c->p2p->n; i++) {
            tern__cand *k = &c->p2p->cands[i];
            if (!tern_addr_equal(&k->path.remote, remote)) continue;
            /* a stream in reserve: no longer known to work (a client falls back to it all
             * the same, reopening it; a server never moves there again) */
            if (k->state == TERN__CAND_VALID) k->state = TERN__CAND_PROBING;
            k->path.validated = 0;
            k->path.closed = c->is_server ? 1 : 0;
        }
    }
}
