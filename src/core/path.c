/*
 * Paths: hole punching between introduced peers, the relay route, path validation and
 * migration (docs/protocol.md, section 9). This file: the candidate table, anti-amplification,
 * validation, migration and fallback, and what arrives on a path; path_probe.c sends the probes
 * and runs their timers, path_punch.c punches holes before a connection exists.
 *
 * A connection has one active path (conn->path) and, once there is more than one way to the
 * peer, a small table of candidate paths (conn->p2p). The initiator of a peer connection sends
 * its Initial to every candidate at once, again every probe interval, and through the relay
 * after relay_after; the first Response decides the active path. After the handshake both sides
 * send PATH_CHALLENGE to every candidate not yet validated (while the connection is relayed or
 * its path unvalidated); a PATH_RESPONSE with a challenge's data validates that candidate.
 * The relay and the stream of tern_endpoint_connect_opts (path_stream.c) are *fallbacks*: a
 * client on one keeps probing its direct UDP candidates. Who moves:
 *   - the client moves to the first direct candidate that validates while it is on a fallback;
 *   - the client moves back to its fallback when its direct path goes silent: an ack-eliciting
 *     packet sent on it unanswered for 3 PTO (at least 1 s) and two probe timeouts in a row
 *     without an answer, or a PATH_CHALLENGE from the peer
 *     through the relay (the server's way of saying that its own packets go unanswered). While
 *     direct it challenges the relay route every 20 s so that the relay keeps the session;
 *   - the server follows the peer: it moves to the path the peer's newest packet (other than a
 *     probe) came on, once that path is validated (this also covers NAT rebinding, and a client
 *     that moved itself with tern_conn_migrate: migrate.c, which also restarts the server's
 *     congestion control when the peer's IP address changed). It never
 *     leaves a direct path on its own (the peer might still be sending there); when that path
 *     goes silent it challenges the peer through the relay, once per silence period.
 * Loss recovery is per connection, not per path: a move to a working path retransmits nothing
 * by itself, while a move away from a silent one, or off a stream, declares what is outstanding
 * there lost (it is retransmitted on the new path at once) and restarts congestion control for
 * the new path; so do a client's own migration and a server's move to a new IP address of its
 * peer (migrate.c).
 *
 * The target of an introduction has no connection before the initiator's Initial arrives, so
 * the endpoint keeps "expectations": it sends punches (0x82 || BLAKE2b-128("tern punch v1" ||
 * nonce)) to the initiator's candidates so that its own NAT lets the Initials in. The initiator
 * adds the source of a matching punch as a candidate: that is how a peer behind a symmetric NAT
 * is found at a port nobody could predict.
 *
 * Anti-amplification on every path (docs/protocol.md 9.6): nothing goes to an unvalidated
 * address beyond three times the bytes received from it, except that an address handed to us
 * (a candidate of an introduction, the source of a matching punch) may get probe_tries
 * datagrams before it answers, the second half of them at doubling gaps; the addresses of
 * tern_endpoint_connect_opts (the application's choice) and stream addresses (proven by TCP)
 * are exempt. A probe that a padded
 * datagram would not fit goes unpadded when that fits, else waits; PATH_RESPONSEs are
 * rate-limited per path, and a connection takes on new source addresses at a bounded rate.
 */
#include <sodium.h>
#include <string.h>

#include "core/conn.h"
#include "core/path_int.h"
#include "core/wire.h"

int tern__path_is(const tern__path *p, const tern_addr *remote, int relayed,
                  const uint8_t *channel)
{
    if (!tern_addr_equal(&p->remote, remote) || p->relayed != (relayed != 0)) return 0;
    return !relayed || memcmp(p->channel, channel, TERN_RELAY_CHANNEL_LEN) == 0;
}

/* May n more bytes go to the path? (the rule above) */
int tern__path_may_send(const tern_conn *c, const tern__path *p, size_t n)
{
    /* validated; or named by the application; or a stream, whose TCP handshake proved that
     * the peer is at that address (and TCP's own window paces what goes there) */
    if (p->validated || p->chosen || tern__path_is_stream(p)) return 1;
    /* our own relay route (from the introduction): the relay forwards only to registered
     * addresses, so it cannot be aimed at anyone */
    if (p->relayed && c->p2p != NULL && c->p2p->has_relay &&
        tern__path_is(p, &c->p2p->relay.addr, 1, c->p2p->relay.channel))
        return 1;
    if (p->handed && p->tx_dgrams < c->ep->s.probe_tries) return 1;
    return p->tx_bytes + n <= 3 * p->rx_bytes;
}

tern__p2p *tern__p2p_get(tern_conn *c)
{
    if (c->p2p == NULL) {
        c->p2p = tern__calloc(&c->ep->alloc, sizeof(*c->p2p));
        if (c->p2p == NULL) return NULL;
        c->p2p->latest = -1;
        c->p2p->interval = DEFAULT_INTERVAL;
    }
    return c->p2p;
}

void tern__p2p_free(tern_conn *c)
{
    if (c->p2p == NULL) return;
    if (c->p2p->punch_match) c->ep->n_punch_match--;
    tern__free(&c->ep->alloc, c->p2p, sizeof(*c->p2p));
    c->p2p = NULL;
}

void tern__p2p_stop_punch_match(tern_conn *c)
{
    if (c->p2p && c->p2p->punch_match) {
        c->p2p->punch_match = 0;
        c->ep->n_punch_match--;
    }
}

int tern__cand_find(const tern__p2p *p, const tern_addr *remote, int relayed,
                     const uint8_t *channel)
{
    for (size_t i = 0; i < p->n; i++)
        if (tern__path_is(&p->cands[i].path, remote, relayed, channel)) return (int)i;
    return -1;
}

/* Adds a candidate (probing); NULL when the table is full. */
tern__cand *tern__cand_add(tern_conn *c, uint64_t now, const tern_addr *local,
                            const tern_addr *remote, int relayed, const uint8_t *channel,
                            int learned)
{
    tern__p2p *p = c->p2p;
    tern__cand *k = NULL;
    if (p->n < TERN__MAX_PATHS) {
        k = &p->cands[p->n++];
    } else if (learned) {
        /* full: an address learned earlier and never validated makes room (so that junk
         * sources cannot lock a later, genuine move out) */
        for (size_t i = 0; i < p->n && k == NULL; i++)
            if (p->cands[i].learned && p->cands[i].state != TERN__CAND_VALID &&
                (int)i != p->latest)
                k = &p->cands[i];
    }
    if (k == NULL) return NULL;
    memset(k, 0, sizeof(*k));
    tern__path_set(&k->path, local, remote, relayed, channel);
    k->state = TERN__CAND_PROBING;
    k->learned = learned ? 1 : 0;
    k->path.handed = !learned && !relayed; /* an introduction's candidate */
    tern__ep_rand(c->ep, &k->challenge, sizeof(k->challenge));
    k->gap = relayed ? tern__rec_rtt_pto(c) : p->interval;
    k->next_probe = p->probing ? now : TERN_TIME_NEVER;
    return k;
}

tern__cand *tern__p2p_stream_add(tern_conn *c, uint64_t now)
{
    tern__p2p *p = c->p2p;
    tern__cand *k = tern__cand_add(c, now, &p->stream_local, &p->stream_remote, 0, NULL, 0);
    if (k == NULL) return NULL;
    k->path.chosen = 1;  /* the application named it */
    k->path.handed = 0;  /* no probe allowance: TCP proves the address */
    k->next_probe = TERN_TIME_NEVER;
    p->stream_added = 1;
    return k;
}

/* Probing goes on while the connection is on a fallback path (relayed, a stream) or its path
 * is unvalidated. */
int tern__p2p_probing_active(const tern_conn *c)
{
    const tern__p2p *p = c->p2p;
    return p != NULL && p->probing && c->state == TERN_CONN_ESTABLISHED &&
           (tern__path_is_fallback(&c->path) || !c->path.validated);
}

int tern__p2p_is_peer_handshake(const tern_conn *c)
{
    return !c->is_server && c->p2p != NULL && c->p2p->probing && c->state == TERN_CONN_HANDSHAKE;
}

static void moved(tern_conn *c, uint64_t now)
{
    c->path_moves++;
    tern__pmtu_path_changed(c, now); /* a new path: base size and a fresh search (pmtu.c) */
    tern__conn_update_timer(c);
    if (c->ep->cb.on_path && c->exposed) c->ep->cb.on_path(c, c->ep->user_data);
}

void tern__path_moved(tern_conn *c, uint64_t now)
{
    moved(c, now);
}

/* Makes candidate i the active path; the old active path becomes candidate i. rx: the packet
 * being processed, if any (when it came on candidate i, it came on the active path now). */
static void migrate(tern_conn *c, tern__rx *rx, uint64_t now, int i)
{
    tern__cand *k = &c->p2p->cands[i];
    tern__path old = c->path;
    c->path = k->path;
    c->path.validated = 1;
    c->path.await_since = 0;
    k->path = old;
    k->state = old.validated ? TERN__CAND_VALID : TERN__CAND_PROBING;
    k->challenge_due = 0;
    if (c->p2p->latest == i) c->p2p->latest = -1;
    if (rx != NULL && rx->cand == i) rx->cand = -1;
    /* off a stream: what it still holds is declared lost and goes again here (the stream may
     * deliver it too: the receiver drops the copy), and the congestion controller, idle on the
     * stream, starts afresh for this path */
    if (tern__path_is_reliable(&old)) tern__rec_path_changed(c, now);
    if (c->is_server) tern__mig_peer_moved(c, &old, now); /* the peer moved: migrate.c */
    moved(c, now);
}

void tern__p2p_move(tern_conn *c, uint64_t now, int i)
{
    migrate(c, NULL, now, i);
}

/* How long a direct path may leave an ack-eliciting packet unanswered. */
uint64_t tern__p2p_fallback_after(const tern_conn *c)
{
    uint64_t t = 3 * tern__rec_rtt_pto(c);
    return t > TERN__FALLBACK_MIN ? t : TERN__FALLBACK_MIN;
}

/* The direct active path is silent: an ack-eliciting packet sent on it has gone unanswered for
 * fallback_after, and at least two probe timeouts in a row have passed without an answer (so
 * that a lost packet and a lost pair of probes on a lossy path are not taken for a dead path).
 * When only the second condition is missing, a re-check is armed one PTO later. */
int tern__p2p_direct_silent(tern_conn *c, uint64_t now)
{
    tern__p2p *p = c->p2p;
    if (c->state != TERN_CONN_ESTABLISHED || tern__path_is_fallback(&c->path) ||
        c->path.await_since == 0 ||
        now < c->path.await_since + tern__p2p_fallback_after(c) || now < p->silent_next)
        return 0;
    if (c->rec.ready && c->rec.r->pto_count >= 2) return 1;
    p->silent_next = now + tern__rec_rtt_pto(c);
    return 0;
}

/* The candidate that is our fallback route: the relay (added from the introduction if it is not
 * there yet), else the stream of tern_endpoint_connect_opts (likewise), or -1. A server without
 * a route of its own uses a relayed or stream path the peer's packets came on. */
int tern__p2p_fallback_cand(tern_conn *c, uint64_t now)
{
    tern__p2p *p = c->p2p;
    if (p == NULL) return -1;
    if (p->has_stream && !p->has_relay) {
        int i = tern__cand_find(p, &p->stream_remote, 0, NULL);
        if (i >= 0) return i;
        tern__cand *k = tern__p2p_stream_add(c, now);
        return k == NULL ? -1 : (int)(k - p->cands);
    }
    if (p->has_relay) {
        int i = tern__cand_find(p, &p->relay.addr, 1, p->relay.channel);
        if (i >= 0) return i;
        tern__cand *k =
            tern__cand_add(c, now, &c->path.local, &p->relay.addr, 1, p->relay.channel, 0);
        if (k == NULL) return -1;
        p->relay_added = 1;
        k->next_probe = TERN_TIME_NEVER; /* challenged when needed, not by the probe schedule */
        return (int)(k - p->cands);
    }
    for (size_t i = 0; i < p->n; i++)
        if (tern__path_is_fallback(&p->cands[i].path) && !p->cands[i].path.closed) return (int)i;
    return -1;
}

/* Client: the direct path went silent; candidate i (the relay, the stream) carries the
 * connection now and the direct path is probed again, so that the connection returns once it
 * answers. */
void tern__p2p_fall_back(tern_conn *c, uint64_t now, int i)
{
    tern__p2p *p = c->p2p;
    tern__cand *k = &p->cands[i];
    if (k->response_due) { /* an answer owed to the relay path goes on it, now the active one */
        c->tx.path_response_due = 1;
        c->tx.path_response = k->response;
        k->response_due = 0;
    }
    migrate(c, NULL, now, i); /* cands[i] now holds the silent direct path */
    k->state = TERN__CAND_PROBING;
    k->path.validated = 0;
    /* it proved once that the peer is there: it gets a fresh allowance, and its 3x budget
     * counts from now (an address the application named needs neither) */
    k->path.handed = !k->path.chosen;
    k->path.rx_bytes = k->path.tx_bytes = 0;
    k->path.tx_dgrams = 0;
    k->challenged = 0;
    tern__ep_rand(c->ep, &k->challenge, sizeof(k->challenge));
    k->gap = p->interval;
    k->next_probe = now + k->gap;
    p->fallbacks++;
    p->probe_until = now; /* from here the direct paths are probed with growing gaps */
    /* what went out on the silent path is lost: it goes again on the relay, at once */
    tern__rec_path_changed(c, now);
    tern__ep_mark_send(c->ep, c);
}

/* ---------------------------------------------------------------- receive */

/* Which path did the packet of rx come on? Sets rx->cand (see tern__rx) and returns it. */
int tern__p2p_rx_path(tern_conn *c, tern__rx *rx)
{
    uint64_t now = rx->now;
    const tern_addr *remote = rx->remote;
    int relayed = rx->relayed;
    const uint8_t *channel = rx->channel;
    rx->cand = -1;
    if (tern__path_is(&c->path, remote, relayed, channel)) return -1;
    if (tern__p2p_get(c) == NULL) return rx->cand = -2;
    tern__p2p *p = c->p2p;
    int i = tern__cand_find(p, remote, relayed, channel);
    if (i < 0) {
        /* a new source address: at most new_paths_per_s a second (bursts of twice that), so
         * that spoofed sources cannot each draw probes (one the candidate table has no room
         * for spends nothing) */
        const tern__rate *np = &c->ep->new_paths;
        if (tern__bucket_debt(np, &p->np, now) + TERN_NS_PER_S > np->cap) {
            c->ep->st.paths_refused++;
            return rx->cand = -2;
        }
        tern__cand *k = tern__cand_add(c, now, rx->local, remote, relayed, channel, 1);
        if (k == NULL) return rx->cand = -2;
        (void)tern__bucket_take(np, &p->np, now, 1); /* room was checked above */
        i = (int)(k - p->cands);
    }
    rx->cand = i;
    return i;
}

/* Bytes of an authenticated packet arrived on candidate i: a probe waiting for budget may go. */
void tern__p2p_rx_bytes(tern_conn *c, int i, size_t len)
{
    tern__cand *k = &c->p2p->cands[i];
    k->path.rx_bytes += len;
    if (k->held) tern__ep_mark_send(c->ep, c);
}

void tern__p2p_on_rx_done(tern_conn *c, const tern__rx *rx, int newest, int probing_only)
{
    uint64_t now = rx->now;
    int i = rx->cand;
    if (i < 0 || c->p2p == NULL || c->state != TERN_CONN_ESTABLISHED) return;
    tern__p2p *p = c->p2p;
    tern__cand *k = &p->cands[i];
    if (!c->is_server) {
        /* the peer challenged us through our fallback (relay, stream): it hears nothing on
         * our direct path */
        if (rx->relay_challenged && tern__path_is_fallback(&k->path) &&
            !tern__path_is_fallback(&c->path))
            tern__p2p_fall_back(c, now, i);
        return;
    }
    if (probing_only || !newest) return;
    /* the peer sends its data on another path: follow once that path is validated */
    p->latest = i;
    if (k->state == TERN__CAND_VALID) {
        migrate(c, NULL, now, i);
    } else if (!k->challenge_due && (!k->challenged || now >= k->next_probe)) {
        k->state = TERN__CAND_PROBING;
        k->challenge_due = 1;
        k->next_probe = now + tern__rec_rtt_pto(c); /* at most one challenge per PTO from here */
        tern__ep_mark_send(c->ep, c);
    }
}

void tern__p2p_on_challenge(tern_conn *c, tern__rx *rx, uint64_t data)
{
    uint64_t now = rx->now;
    if (rx->cand == -1) {
        c->tx.path_response_due = 1;
        c->tx.path_response = data;
    } else if (rx->cand >= 0) {
        tern__cand *k = &c->p2p->cands[rx->cand];
        /* responses on a candidate path: TERN__RESP_BURST, then one per TERN__RESP_GAP */
        static const tern__rate resp_rate = {.per_s = TERN_NS_PER_S / TERN__RESP_GAP,
                                             .cap = TERN__RESP_BURST * TERN_NS_PER_S};
        if (!tern__bucket_take(&resp_rate, &k->resp, now, 1)) {
            c->ep->st.responses_limited++;
            return;
        }
        k->response_due = 1;
        k->response = data;
        if (!c->is_server && tern__path_is_fallback(&k->path) &&
            !tern__path_is_fallback(&c->path))
            rx->relay_challenged = 1;
    } else {
        return; /* no room to remember the path: the peer will try again */
    }
    tern__ep_mark_send(c->ep, c);
}

void tern__p2p_on_response(tern_conn *c, tern__rx *rx, uint64_t data)
{
    uint64_t now = rx->now;
    tern__p2p *p = c->p2p;
    if (rx->cand == -1 && tern__mig_on_response(c, data)) return; /* our migration's path */
    if (p == NULL) return;
    for (size_t i = 0; i < p->n; i++) {
        tern__cand *k = &p->cands[i];
        if (!k->challenged || k->challenge != data || k->state == TERN__CAND_VALID) continue;
        k->state = TERN__CAND_VALID;
        k->path.validated = 1;
        if (!c->is_server) {
            /* off the fallback (relay, stream) or an unvalidated path onto the first direct
             * path that works */
            if ((tern__path_is_fallback(&c->path) || !c->path.validated) &&
                !tern__path_is_fallback(&k->path))
                migrate(c, rx, now, (int)i);
        } else if (p->latest == (int)i) {
            migrate(c, rx, now, (int)i);
        }

        tern__conn_update_timer(c);
        return;
    }
}


void tern_conn_path(const tern_conn *c, tern_path_info *info)
{
    if (c == NULL || info == NULL) return;
    memset(info, 0, sizeof(*info));
    info->remote = c->path.remote;
    info->relayed = c->path.relayed;
    info->validated = c->path.validated && !c->mig.validating;
    info->moves = c->path_moves;
    info->local = c->path.local;
    info->unanswered_since = c->path.await_since;
    info->silent_after_ns = tern__p2p_fallback_after(c);
    if (c->p2p != NULL) {
        info->has_fallback = !c->is_server && !tern__path_is_fallback(&c->path) &&
                             tern__p2p_has_fallback(c->p2p);
        info->fallbacks = c->p2p->fallbacks;
        info->n_cands = c->p2p->n;
        for (size_t i = 0; i < c->p2p->n; i++)
            if (c->p2p->cands[i].state == TERN__CAND_VALID) info->n_validated++;
    }
}
