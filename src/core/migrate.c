/*
 * Client-driven migration (docs/protocol.md, "Migration"): tern_conn_migrate moves a client's
 * connection to a new local address (a new socket after a network change), and the server side
 * of such a move.
 *
 * The client. The new path carries the connection at once: its remote is the server's address,
 * which the handshake validated, so nothing limits what goes there. Everything in flight is
 * declared lost and requeued (tern__rec_path_changed): it goes again on the new path at once
 * instead of a probe timeout or two later, under a congestion controller and RTT estimate that
 * start afresh for the new path (RFC 9000 9.4). A copy that still arrives by the old path is a
 * duplicate the receiver drops (flows keep each fragment's sequence number), so nothing is
 * delivered twice. A PATH_CHALLENGE, padded to the datagram size so that it also shows the path
 * carries full-size datagrams, goes on the new path first, then a PING, so that the server sees
 * a non-probing packet from the new address even when the application is idle. The challenge is
 * repeated at doubling gaps (from one PTO, at most max_backoff) until the PATH_RESPONSE comes
 * (tern_path_info.validated turns 1 again) or TERN__MIG_TRIES went unanswered.
 *
 * The server. A packet from a new source address is handled by path.c: the address becomes a
 * candidate, gets a PATH_CHALLENGE within three times the bytes received from it (the
 * anti-amplification rule), and once its PATH_RESPONSE came the server moves there if the
 * peer's newest packet came from it. Until then the server's own packets keep going to the old
 * address. When the move changes the peer's IP address (not only its port, as a NAT rebinding
 * does) the server too declares what it had in flight lost and restarts congestion control and
 * the RTT estimate (tern__mig_peer_moved).
 *
 * Peer to peer: the initiator of a peer connection (the client role) may migrate while its
 * active path is direct; its candidates move to the new local address with it. A relayed
 * path cannot move (TERN_ERR_STATE): the relay forwards only from the address the rendezvous
 * server registered. The target (the server role) follows the initiator as any server does,
 * but cannot move itself (the initiator only moves to paths it validated itself).
 */
#include <string.h>

#include "core/conn.h"
#include "core/path_int.h"
#include "core/wire.h"

int tern_conn_migrate(tern_conn *c, uint64_t now, const tern_addr *local)
{
    if (c == NULL || local == NULL || local->family == TERN_AF_NONE) return TERN_ERR_INVALID_ARG;
    if (c->is_server || c->state != TERN_CONN_ESTABLISHED || c->path.relayed)
        return TERN_ERR_STATE;
    if (local->transport != c->path.local.transport) return TERN_ERR_INVALID_ARG;
    if (tern_addr_equal(local, &c->path.local)) return TERN_OK; /* already there */
    tern_addr old = c->path.local;
    c->path.local = *local;
    c->path.rx_bytes = c->path.tx_bytes = 0;
    c->path.tx_dgrams = 0;
    c->path.await_since = 0; /* the new path has not been asked anything yet */
    if (c->p2p != NULL) {
        /* the direct candidates are probed from the new address too */
        for (size_t i = 0; i < c->p2p->n; i++) {
            tern__path *k = &c->p2p->cands[i].path;
            if (!k->relayed && tern_addr_equal(&k->local, &old)) k->local = *local;
        }
    }
    tern__mig *m = &c->mig;
    tern__ep_rand(c->ep, &m->challenge, sizeof(m->challenge));
    m->challenge_due = 1;
    m->validating = 1;
    m->tries = 0;
    m->gap = tern__rec_rtt_pto(c);
    m->next_try = TERN_TIME_NEVER;
    c->st.migrations++;
    /* a non-probing packet, so the server takes the new address as ours even when idle */
    c->live.ping_pending = 1;
    c->live.ping_backoff = tern__rec_rtt_pto(c);
    tern__ep_mark_send(c->ep, c);
    tern__path_moved(c, now); /* path MTU back to the base size, on_path */
    if (c->state != TERN_CONN_ESTABLISHED) return TERN_OK; /* closed from on_path */
    /* what was in flight goes again on the new path now; congestion control (sized for the
     * base datagram) and RTT restart */
    tern__rec_path_changed(c, now);
    return TERN_OK;
}

int tern__mig_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap)
{
    tern__mig *m = &c->mig;
    if (!m->challenge_due || c->state != TERN_CONN_ESTABLISHED) return 0;
    size_t size = c->pmtu.size, flen = size - tern__conn_packet_overhead();
    if (cap < size) return 0;
    uint8_t frames[TERN_MAX_DATAGRAM];
    memset(frames, 0, flen); /* PADDING */
    if (tern__frame_put_path(frames, frames + flen, TERN__FRAME_PATH_CHALLENGE, m->challenge) ==
        NULL)
        return 0;
    int n = tern__conn_seal(c, now, out, cap, frames, flen);
    if (n <= 0) return n;
    m->challenge_due = 0;
    m->tries++;
    m->next_try = now + m->gap;
    m->gap *= 2;
    if (m->gap > c->ep->s.max_backoff_ns) m->gap = c->ep->s.max_backoff_ns;
    tern__conn_update_timer(c);
    return n;
}

uint64_t tern__mig_deadline(const tern_conn *c)
{
    return c->mig.validating && !c->mig.challenge_due ? c->mig.next_try : TERN_TIME_NEVER;
}

void tern__mig_on_timer(tern_conn *c, uint64_t now)
{
    tern__mig *m = &c->mig;
    if (!m->validating || m->challenge_due || now < m->next_try) return;
    if (m->tries >= TERN__MIG_TRIES) {
        /* unanswered: the path stays (there is no other), the idle timeout decides */
        m->validating = 0;
        m->next_try = TERN_TIME_NEVER;
        return;
    }
    m->challenge_due = 1;
    tern__ep_mark_send(c->ep, c);
}

int tern__mig_on_response(tern_conn *c, uint64_t data)
{
    tern__mig *m = &c->mig;
    if (!m->validating || m->tries == 0 || data != m->challenge) return 0;
    m->validating = 0;
    m->challenge_due = 0;
    m->next_try = TERN_TIME_NEVER;
    c->st.migrations_validated++;
    tern__conn_update_timer(c);
    return 1;
}

/* Same IP address (the port may differ)? */
static int same_host(const tern_addr *a, const tern_addr *b)
{
    size_t n = a->family == TERN_AF_INET6 ? 16 : 4;
    return a->family == b->family && memcmp(a->ip, b->ip, n) == 0;
}

void tern__mig_peer_moved(tern_conn *c, const tern__path *old, uint64_t now)
{
    /* a move to or from the relay or a stream is not the peer moving (path.c, 9.7 rule those) */
    if (old->relayed || c->path.relayed || tern_addr_is_stream(&old->remote) ||
        tern_addr_is_stream(&c->path.remote) || c->state != TERN_CONN_ESTABLISHED)
        return;
    c->st.migrations++;
    /* RFC 9000 9.4: a new peer address, not only a new port, is a new path whose capacity and
     * RTT say nothing of the old one's; what went to the old address is likely gone with it */
    if (!same_host(&old->remote, &c->path.remote)) tern__rec_path_changed(c, now);
}
