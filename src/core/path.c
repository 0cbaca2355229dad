/*
 * Paths: hole punching between introduced peers, the relay route, path validation and
 * migration (docs/protocol.md, section 9).
 *
 * A connection has one active path (conn->path) and, once there is more than one way to the
 * peer, a small table of candidate paths (conn->p2p). The initiator of a peer connection sends
 * its Initial to every candidate at once, again every probe interval, and through the relay
 * after relay_after; the first Response decides the active path. After the handshake both sides
 * send PATH_CHALLENGE to every candidate not yet validated (while the connection is relayed or
 * its path unvalidated); a PATH_RESPONSE with a challenge's data validates that candidate.
 * Who moves:
 *   - the client moves to the first direct candidate that validates while it is relayed;
 *   - the client moves back to the relay when its direct path goes silent: an ack-eliciting
 *     packet sent on it unanswered for 3 PTO (at least 1 s) and two probe timeouts in a row
 *     without an answer, or a PATH_CHALLENGE from the peer
 *     through the relay (the server's way of saying that its own packets go unanswered). While
 *     direct it challenges the relay route every 20 s so that the relay keeps the session;
 *   - the server follows the peer: it moves to the path the peer's newest packet (other than a
 *     probe) came on, once that path is validated (this also covers NAT rebinding). It never
 *     leaves a direct path on its own (the peer might still be sending there); when that path
 *     goes silent it challenges the peer through the relay, once per silence period.
 * Loss recovery is per connection, not per path: a move to a working path retransmits nothing
 * by itself, while a move away from a silent one declares what is outstanding there lost (it is
 * retransmitted on the new path at once) and restarts congestion control for the new path.
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
 * datagrams before it answers, the second half of them at doubling gaps. A probe that a padded
 * datagram would not fit goes unpadded when that fits, else waits; PATH_RESPONSEs are
 * rate-limited per path, and a connection takes on new source addresses at a bounded rate.
 */
#include <sodium.h>
#include <string.h>

#include "core/conn.h"
#include "core/wire.h"

#define DEFAULT_INTERVAL (200 * TERN_NS_PER_MS)

void tern_peer_target_default(tern_peer_target *t)
{
    if (t == NULL) return;
    memset(t, 0, sizeof(*t));
    t->relay_after_ns = 2 * TERN_NS_PER_S;
    t->probe_interval_ns = DEFAULT_INTERVAL;
    t->probe_duration_ns = 15 * TERN_NS_PER_S;
}

int tern__path_is(const tern__path *p, const tern_addr *remote, int relayed,
                  const uint8_t *channel)
{
    if (!tern_addr_equal(&p->remote, remote) || p->relayed != (relayed != 0)) return 0;
    return !relayed || memcmp(p->channel, channel, TERN_RELAY_CHANNEL_LEN) == 0;
}

static void path_set(tern__path *p, const tern_addr *local, const tern_addr *remote, int relayed,
                     const uint8_t *channel)
{
    memset(p, 0, sizeof(*p));
    p->local = *local;
    p->remote = *remote;
    p->relayed = relayed ? 1 : 0;
    if (relayed) memcpy(p->channel, channel, TERN_RELAY_CHANNEL_LEN);
}

static void punch_tag(const uint8_t nonce[TERN_PUNCH_NONCE_LEN], uint8_t tag[16])
{
    static const char label[] = "tern punch v1";
    uint8_t in[sizeof(label) - 1 + TERN_PUNCH_NONCE_LEN];
    memcpy(in, label, sizeof(label) - 1);
    memcpy(in + sizeof(label) - 1, nonce, TERN_PUNCH_NONCE_LEN);
    crypto_generichash(tag, 16, in, sizeof(in), NULL, 0);
}

/* May n more bytes go to the path? (the rule above) */
int tern__path_may_send(const tern_conn *c, const tern__path *p, size_t n)
{
    if (p->validated) return 1;
    /* our own relay route (from the introduction): the relay forwards only to registered
     * addresses, so it cannot be aimed at anyone */
    if (p->relayed && c->p2p != NULL && c->p2p->has_relay &&
        tern__path_is(p, &c->p2p->relay.addr, 1, c->p2p->relay.channel))
        return 1;
    if (p->handed && p->tx_dgrams < c->ep->s.probe_tries) return 1;
    return p->tx_bytes + n <= 3 * p->rx_bytes;
}

/* A handed address that never answered and has used its allowance: nothing may go there. */
static int exhausted(const tern_conn *c, const tern__path *p)
{
    return p->handed && !p->validated && p->rx_bytes == 0 &&
           p->tx_dgrams >= c->ep->s.probe_tries;
}

static void count_sent(tern__path *p, size_t n)
{
    p->tx_bytes += n;
    p->tx_dgrams++;
}

static tern__p2p *p2p_get(tern_conn *c)
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

static void stop_punch_match(tern_conn *c)
{
    if (c->p2p && c->p2p->punch_match) {
        c->p2p->punch_match = 0;
        c->ep->n_punch_match--;
    }
}

static int cand_find(const tern__p2p *p, const tern_addr *remote, int relayed,
                     const uint8_t *channel)
{
    for (size_t i = 0; i < p->n; i++)
        if (tern__path_is(&p->cands[i].path, remote, relayed, channel)) return (int)i;
    return -1;
}

/* Adds a candidate (probing); NULL when the table is full. */
static tern__cand *cand_add(tern_conn *c, uint64_t now, const tern_addr *local,
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
                (int)i != p->latest && (int)i != c->rx_cand)
                k = &p->cands[i];
    }
    if (k == NULL) return NULL;
    memset(k, 0, sizeof(*k));
    path_set(&k->path, local, remote, relayed, channel);
    k->state = TERN__CAND_PROBING;
    k->learned = learned ? 1 : 0;
    k->path.handed = !learned && !relayed; /* an introduction's candidate */
    tern__ep_rand(c->ep, &k->challenge, sizeof(k->challenge));
    k->gap = relayed ? tern__rec_rtt_pto(c) : p->interval;
    k->next_probe = p->probing ? now : TERN_TIME_NEVER;
    k->resp_tokens = TERN__RESP_BURST;
    k->resp_at = now;
    return k;
}

/* Probing goes on while the connection is relayed (or its path unvalidated). */
static int probing_active(const tern_conn *c)
{
    const tern__p2p *p = c->p2p;
    return p != NULL && p->probing && c->state == TERN_CONN_ESTABLISHED &&
           (c->path.relayed || !c->path.validated);
}

int tern__p2p_is_peer_handshake(const tern_conn *c)
{
    return !c->is_server && c->p2p != NULL && c->p2p->probing && c->state == TERN_CONN_HANDSHAKE;
}

static void moved(tern_conn *c, uint64_t now)
{
    (void)now;
    c->path_moves++;
    tern__conn_update_timer(c);
    if (c->ep->cb.on_path && c->exposed) c->ep->cb.on_path(c, c->ep->user_data);
}

/* Makes candidate i the active path; the old active path becomes candidate i. */
static void migrate(tern_conn *c, uint64_t now, int i)
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
    if (c->rx_cand == i) c->rx_cand = -1; /* the packet being processed came on the new path */
    moved(c, now);
}

/* How long a direct path may leave an ack-eliciting packet unanswered. */
static uint64_t fallback_after(const tern_conn *c)
{
    uint64_t t = 3 * tern__rec_rtt_pto(c);
    return t > TERN__FALLBACK_MIN ? t : TERN__FALLBACK_MIN;
}

/* The direct active path is silent: an ack-eliciting packet sent on it has gone unanswered for
 * fallback_after, and at least two probe timeouts in a row have passed without an answer (so
 * that a lost packet and a lost pair of probes on a lossy path are not taken for a dead path).
 * When only the second condition is missing, a re-check is armed one PTO later. */
static int direct_silent(tern_conn *c, uint64_t now)
{
    tern__p2p *p = c->p2p;
    if (c->state != TERN_CONN_ESTABLISHED || c->path.relayed || c->path.await_since == 0 ||
        now < c->path.await_since + fallback_after(c) || now < p->silent_next)
        return 0;
    if (c->rec_ready && c->recp->pto_count >= 2) return 1;
    p->silent_next = now + tern__rec_rtt_pto(c);
    return 0;
}

/* The candidate that is our relay route (added from the introduction if it is not there yet),
 * or -1. A server without the route uses a relayed path the peer's packets came on. */
static int relay_cand(tern_conn *c, uint64_t now)
{
    tern__p2p *p = c->p2p;
    if (p == NULL) return -1;
    if (p->has_relay) {
        int i = cand_find(p, &p->relay.addr, 1, p->relay.channel);
        if (i >= 0) return i;
        tern__cand *k = cand_add(c, now, &c->path.local, &p->relay.addr, 1, p->relay.channel, 0);
        if (k == NULL) return -1;
        p->relay_added = 1;
        k->next_probe = TERN_TIME_NEVER; /* challenged when needed, not by the probe schedule */
        return (int)(k - p->cands);
    }
    for (size_t i = 0; i < p->n; i++)
        if (p->cands[i].path.relayed) return (int)i;
    return -1;
}

/* Client: the direct path went silent; candidate i (the relay) carries the connection now and
 * the direct path is probed again, so that the connection returns once it answers. */
static void fall_back(tern_conn *c, uint64_t now, int i)
{
    tern__p2p *p = c->p2p;
    tern__cand *k = &p->cands[i];
    if (k->response_due) { /* an answer owed to the relay path goes on it, now the active one */
        c->path_response_due = 1;
        c->path_response = k->response;
        k->response_due = 0;
    }
    migrate(c, now, i); /* cands[i] now holds the silent direct path */
    k->state = TERN__CAND_PROBING;
    k->path.validated = 0;
    /* it proved once that the peer is there: it gets a fresh allowance, and its 3x budget
     * counts from now */
    k->path.handed = 1;
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

int tern__p2p_rx_path(tern_conn *c, uint64_t now, const tern_addr *local, const tern_addr *remote,
                      int relayed, const uint8_t *channel)
{
    c->rx_cand = -1;
    if (c->p2p != NULL) c->p2p->relay_challenged = 0;
    if (tern__path_is(&c->path, remote, relayed, channel)) return -1;
    if (p2p_get(c) == NULL) return c->rx_cand = -2;
    tern__p2p *p = c->p2p;
    int i = cand_find(p, remote, relayed, channel);
    if (i < 0) {
        /* a new source address: at most new_paths_per_s a second (bursts of twice that), so
         * that spoofed sources cannot each draw probes */
        uint64_t rate = c->ep->s.new_paths_per_s, burst = 2 * rate, gap = TERN_NS_PER_S / rate;
        if (p->np_at == 0) {
            p->np_at = now;
            p->np_tokens = (uint32_t)burst;
        } else if (now >= p->np_at + gap) {
            uint64_t add = (now - p->np_at) / gap;
            p->np_tokens = (uint32_t)(p->np_tokens + add > burst ? burst : p->np_tokens + add);
            p->np_at += add * gap;
        }
        if (p->np_tokens == 0) {
            c->ep->st.paths_refused++;
            return c->rx_cand = -2;
        }
        tern__cand *k = cand_add(c, now, local, remote, relayed, channel, 1);
        if (k == NULL) return c->rx_cand = -2;
        p->np_tokens--;
        i = (int)(k - p->cands);
    }
    c->rx_cand = i;
    return i;
}

/* Bytes of an authenticated packet arrived on candidate i: a probe waiting for budget may go. */
void tern__p2p_rx_bytes(tern_conn *c, int i, size_t len)
{
    tern__cand *k = &c->p2p->cands[i];
    k->path.rx_bytes += len;
    if (k->held) tern__ep_mark_send(c->ep, c);
}

void tern__p2p_on_rx_done(tern_conn *c, uint64_t now, int newest, int probing_only)
{
    int i = c->rx_cand;
    c->rx_cand = -1;
    if (i < 0 || c->p2p == NULL || c->state != TERN_CONN_ESTABLISHED) return;
    tern__p2p *p = c->p2p;
    tern__cand *k = &p->cands[i];
    if (!c->is_server) {
        /* the peer challenged us through the relay: it hears nothing on our direct path */
        if (p->relay_challenged && k->path.relayed && !c->path.relayed) fall_back(c, now, i);
        p->relay_challenged = 0;
        return;
    }
    if (probing_only || !newest) return;
    /* the peer sends its data on another path: follow once that path is validated */
    p->latest = i;
    if (k->state == TERN__CAND_VALID) {
        migrate(c, now, i);
    } else if (!k->challenge_due && (!k->challenged || now >= k->next_probe)) {
        k->state = TERN__CAND_PROBING;
        k->challenge_due = 1;
        k->next_probe = now + tern__rec_rtt_pto(c); /* at most one challenge per PTO from here */
        tern__ep_mark_send(c->ep, c);
    }
}

void tern__p2p_on_challenge(tern_conn *c, uint64_t now, uint64_t data)
{
    if (c->rx_cand == -1) {
        c->path_response_due = 1;
        c->path_response = data;
    } else if (c->rx_cand >= 0) {
        tern__cand *k = &c->p2p->cands[c->rx_cand];
        /* responses on a candidate path: TERN__RESP_BURST, then one per TERN__RESP_GAP */
        if (now >= k->resp_at + TERN__RESP_GAP) {
            uint64_t add = (now - k->resp_at) / TERN__RESP_GAP;
            k->resp_tokens = (uint8_t)(k->resp_tokens + add > TERN__RESP_BURST
                                           ? TERN__RESP_BURST
                                           : k->resp_tokens + add);
            k->resp_at += add * TERN__RESP_GAP;
        }
        if (k->resp_tokens == 0) {
            c->ep->st.responses_limited++;
            return;
        }
        k->resp_tokens--;
        k->response_due = 1;
        k->response = data;
        if (!c->is_server && k->path.relayed && !c->path.relayed) c->p2p->relay_challenged = 1;
    } else {
        return; /* no room to remember the path: the peer will try again */
    }
    tern__ep_mark_send(c->ep, c);
}

void tern__p2p_on_response(tern_conn *c, uint64_t now, uint64_t data)
{
    tern__p2p *p = c->p2p;
    if (p == NULL) return;
    for (size_t i = 0; i < p->n; i++) {
        tern__cand *k = &p->cands[i];
        if (!k->challenged || k->challenge != data || k->state == TERN__CAND_VALID) continue;
        k->state = TERN__CAND_VALID;
        k->path.validated = 1;
        if (!c->is_server) {
            /* off the relay (or an unvalidated path) onto the first direct path that works */
            if ((c->path.relayed || !c->path.validated) && !k->path.relayed)
                migrate(c, now, (int)i);
        } else if (p->latest == (int)i) {
            migrate(c, now, (int)i);
        }
        tern__conn_update_timer(c);
        return;
    }
}

/* ---------------------------------------------------------------- send */

static size_t put_relay_hdr(uint8_t *out, const tern__path *path)
{
    if (!path->relayed) return 0;
    out[0] = TERN__RELAY_TYPE;
    memcpy(out + 1, path->channel, TERN_RELAY_CHANNEL_LEN);
    return TERN__RELAY_HDR_LEN;
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
    size_t hdr = k->path.relayed ? TERN__RELAY_HDR_LEN : 0, n = hdr + c->hs_pkt_len;
    if (cap < n) return -1;
    k->initial_due = 0;
    if (!tern__path_may_send(c, &k->path, n)) {
        c->ep->st.amplification_blocked++;
        if (exhausted(c, &k->path)) give_up(c, k);
        return 0;
    }
    put_relay_hdr(out, &k->path);
    memcpy(out + hdr, c->hs_pkt, c->hs_pkt_len);
    k->probes++;
    count_sent(&k->path, n);
    *via = &k->path;
    return (int)n;
}

int tern__p2p_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const tern__path **via)
{
    tern__p2p *p = c->p2p;
    if (p == NULL) return 0;
    if (c->state == TERN_CONN_HANDSHAKE) {
        if (c->hs_pkt == NULL) return 0;
        if (c->is_server) {
            /* copies of the Initial that came from other addresses: each gets the Response
             * within its own budget, and the path the client's first 1-RTT packet comes on
             * wins (tern__p2p_hs_adopt). The first copy's Response goes first. */
            if (c->hs_pending) return 0;
            for (size_t i = 0; i < p->n; i++) {
                if (!p->cands[i].initial_due) continue;
                int n = write_hs(c, &p->cands[i], out, cap, via);
                if (n != 0) return n < 0 ? 0 : n;
            }
            return 0;
        }
        if (!p->probing) return 0;
        if (c->hs_pending) { /* a new Initial (first, or after a Retry): everywhere at once */
            c->hs_pending = 0;
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
                if (exhausted(c, &k->path)) {
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
        }
        if (!padded) c->ep->st.probes_unpadded++;
        k->challenge_due = k->response_due = k->held = 0;
        count_sent(&k->path, hdr + (size_t)n);
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
    } else if (probing_active(c)) {
        for (size_t i = 0; i < p->n; i++)
            if (p->cands[i].state == TERN__CAND_PROBING && p->cands[i].next_probe < d)
                d = p->cands[i].next_probe;
    } else if (c->state == TERN_CONN_ESTABLISHED && !c->path.relayed) {
        /* direct: the relay route kept in reserve, and the silence that sends us back to it */
        if (!c->is_server && p->has_relay && p->relay_ka_next < d) d = p->relay_ka_next;
        if (c->path.await_since != 0 && (c->is_server || p->has_relay)) {
            uint64_t t = c->path.await_since + fallback_after(c);
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
            tern__cand *k = cand_add(c, now, &c->path.local, &p->relay.addr, 1, p->relay.channel, 0);
            if (k) k->next_probe = now;
        }
        for (size_t i = 0; i < p->n; i++) {
            tern__cand *k = &p->cands[i];
            if (now < k->next_probe || k->state == TERN__CAND_FAILED) continue;
            if (exhausted(c, &k->path)) {
                give_up(c, k);
                continue;
            }
            k->initial_due = 1;
            next_gap(c, k, now, c->ep->s.max_backoff_ns);
            any = 1;
        }
    } else if (c->state == TERN_CONN_ESTABLISHED && !c->path.relayed && c->path.validated) {
        if (!c->is_server) {
            int i;
            if (p->has_relay && direct_silent(c, now)) {
                if ((i = relay_cand(c, now)) >= 0) fall_back(c, now, i); /* probed below */
                else p->silent_next = now + fallback_after(c); /* no room: try again later */
            } else if (p->has_relay && now >= p->relay_ka_next) {
                if ((i = relay_cand(c, now)) >= 0) {
                    p->cands[i].challenge_due = 1;
                    any = 1;
                }
                p->relay_ka_next = now + TERN__RELAY_KEEPALIVE;
            }
        } else if (direct_silent(c, now)) {
            /* our packets go unanswered: tell the peer through the relay, if there is one */
            int i = relay_cand(c, now);
            if (i >= 0) {
                p->cands[i].challenge_due = 1;
                any = 1;
            }
            p->silent_next = now + fallback_after(c);
        }
    }
    if (probing_active(c)) {
        for (size_t i = 0; i < p->n; i++) {
            tern__cand *k = &p->cands[i];
            if (k->state != TERN__CAND_PROBING || now < k->next_probe) continue;
            if (exhausted(c, &k->path)) {
                give_up(c, k);
                continue;
            }
            k->challenge_due = 1;
            next_gap(c, k, now, TERN__BG_PROBE_MAX);
            any = 1;
        }
    }
    if (any) tern__ep_mark_send(c->ep, c);
}

/* ---------------------------------------------------------------- handshake hooks */

void tern__p2p_client_response(tern_conn *c, uint64_t now, const tern_addr *local,
                               const tern_addr *remote, int relayed, const uint8_t *channel)
{
    (void)now;
    if (c->p2p == NULL) return;
    stop_punch_match(c);
    int i = cand_find(c->p2p, remote, relayed, channel);
    if (i >= 0) {
        tern__cand *k = &c->p2p->cands[i];
        tern__path chosen = k->path;
        /* the candidate list keeps every other path; the chosen one leaves it */
        c->p2p->cands[i] = c->p2p->cands[--c->p2p->n];
        c->path = chosen;
    } else {
        path_set(&c->path, local, remote, relayed, channel);
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
        if (sodium_memcmp(x->peer_pub, c->peer_static, TERN_KEY_LEN) != 0) continue;
        tern__p2p *p = p2p_get(c);
        if (p != NULL) {
            p->probing = 1;
            p->has_relay = x->t.has_relay;
            p->relay = x->t.relay;
            p->interval = x->t.probe_interval_ns ? x->t.probe_interval_ns : DEFAULT_INTERVAL;
            p->probe_until = now + x->t.probe_duration_ns;
            for (size_t i = 0; i < x->t.n_cands; i++) {
                const tern_addr *a = &x->t.cands[i];
                if (tern__path_is(&c->path, a, 0, NULL)) continue;
                int j = cand_find(p, a, 0, NULL);
                tern__cand *k = j >= 0 ? &p->cands[j] : cand_add(c, now, &x->local, a, 0, NULL, 0);
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
int tern__p2p_hs_copy(tern_conn *c, uint64_t now, const tern_addr *local, const tern_addr *remote,
                      int relayed, const uint8_t *channel, size_t len)
{
    if (p2p_get(c) == NULL) return TERN_ERR_NOMEM;
    tern__p2p *p = c->p2p;
    int i = cand_find(p, remote, relayed, channel);
    tern__cand *k = i >= 0 ? &p->cands[i] : cand_add(c, now, local, remote, relayed, channel, 1);
    if (k == NULL) return TERN_ERR_LIMIT;
    if (i < 0) c->ep->st.initial_copies++;
    k->path.rx_bytes += len;
    k->initial_due = 1;
    tern__ep_mark_send(c->ep, c);
    return TERN_OK;
}

/* Server: the client's first 1-RTT packet came on candidate i. If the Response went there, that
 * is the client's address: it becomes the active path (the old one stays a candidate). */
void tern__p2p_hs_adopt(tern_conn *c, int i)
{
    tern__cand *k = &c->p2p->cands[i];
    if (k->probes == 0) return; /* no Response went there (punches do not count) */
    tern__path old = c->path;
    c->path = k->path;
    k->path = old;
    k->path.handed = 0;
    k->state = TERN__CAND_PROBING;
    k->initial_due = 0;
    k->challenge_due = 0;
    c->rx_cand = -1;
}

void tern__p2p_established(tern_conn *c, uint64_t now)
{
    tern__p2p *p = c->p2p;
    if (p == NULL) return;
    stop_punch_match(c);
    p->relay_ka_next = now; /* a direct connection checks its relay route at once */
    for (size_t i = 0; i < p->n; i++) {
        tern__cand *k = &p->cands[i];
        k->initial_due = 0;
        if (k->state == TERN__CAND_PROBING) {
            k->next_probe = now;
            k->gap = p->interval;
        }
    }
    if (probing_active(c)) tern__p2p_on_timer(c, now);
}

/* ---------------------------------------------------------------- punches and expectations */

int tern__p2p_on_punch(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                       const tern_addr *remote, const uint8_t *data, size_t len)
{
    if (len != TERN__PUNCH_LEN) return TERN_ERR_MALFORMED;
    if (ep->n_punch_match == 0) return TERN_ERR_IGNORED;
    for (tern_conn *c = ep->all; c != NULL; c = c->all_next) {
        if (c->p2p == NULL || !c->p2p->punch_match) continue;
        if (sodium_memcmp(c->p2p->punch_tag, data + 1, 16) != 0) continue;
        tern__p2p *p = c->p2p;
        int i = cand_find(p, remote, 0, NULL);
        tern__cand *k = i >= 0 ? &p->cands[i] : cand_add(c, now, local, remote, 0, NULL, 1);
        if (k == NULL) return TERN_ERR_LIMIT;
        k->path.rx_bytes += len;
        if (i < 0 && p->n_punch_learned < TERN_MAX_CANDIDATES) {
            /* a peer behind a symmetric NAT shows up here: its source gets the allowance too
             * (at most TERN_MAX_CANDIDATES such sources per connection) */
            p->n_punch_learned++;
            k->path.handed = 1;
        }
        if (k->state == TERN__CAND_FAILED) return TERN_OK; /* its allowance is spent */
        /* the peer's NAT has just opened towards us: try that candidate again at once */
        k->initial_due = 1;
        k->next_probe = now + k->gap;
        tern__ep_mark_send(ep, c);
        tern__conn_update_timer(c);
        return TERN_OK;
    }
    return TERN_ERR_IGNORED;
}

static void expect_recompute(tern_endpoint *ep)
{
    uint64_t d = TERN_TIME_NEVER;
    for (size_t i = 0; i < ep->n_expects; i++) {
        const tern__expect *x = &ep->expects[i];
        uint64_t t = x->next_punch < x->until ? x->next_punch : x->until;
        if (t < d) d = t;
    }
    ep->expect_deadline = d;
}

void tern__expect_on_timer(tern_endpoint *ep, uint64_t now)
{
    uint8_t punch[TERN__PUNCH_LEN];
    punch[0] = TERN__PUNCH_TYPE;
    for (size_t i = 0; i < ep->n_expects;) {
        tern__expect *x = &ep->expects[i];
        if (now >= x->until) {
            sodium_memzero(x, sizeof(*x));
            ep->expects[i] = ep->expects[--ep->n_expects];
            continue;
        }
        if (now >= x->next_punch) {
            memcpy(punch + 1, x->punch_tag, 16);
            for (size_t k = 0; k < x->t.n_cands; k++)
                tern__ep_queue_stateless(ep, &x->local, &x->t.cands[k], punch, sizeof(punch));
            /* each candidate's allowance (settings.probe_tries): the first half of it at the
             * probe interval, then at doubling gaps (up to TERN__BG_PROBE_MAX), then no more */
            uint32_t half = ep->s.probe_tries / 2;
            uint64_t gap = x->t.probe_interval_ns;
            if (++x->punches >= half)
                for (uint32_t d = half; d <= x->punches && gap < TERN__BG_PROBE_MAX; d++) gap *= 2;
            if (gap > TERN__BG_PROBE_MAX) gap = TERN__BG_PROBE_MAX;
            x->next_punch = now + gap;
            if (x->punches >= ep->s.probe_tries) {
                x->next_punch = TERN_TIME_NEVER;
                ep->st.probes_exhausted += x->t.n_cands;
            }
        }
        i++;
    }
    expect_recompute(ep);
}

static int target_ok(const tern_peer_target *t)
{
    return t != NULL && t->n_cands <= TERN_MAX_CANDIDATES;
}

static void target_fix(tern_peer_target *t)
{
    if (t->probe_interval_ns == 0) t->probe_interval_ns = DEFAULT_INTERVAL;
    if (t->probe_duration_ns == 0) t->probe_duration_ns = 15 * TERN_NS_PER_S;
}

int tern_endpoint_expect_peer(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                              const tern_peer_target *t)
{
    if (ep == NULL || local == NULL || !target_ok(t)) return TERN_ERR_INVALID_ARG;
    if (!ep->is_server) return TERN_ERR_STATE;
    if (ep->expects == NULL) {
        ep->expects = tern__calloc(&ep->alloc, TERN__MAX_EXPECTS * sizeof(*ep->expects));
        if (ep->expects == NULL) return TERN_ERR_NOMEM;
    }
    tern__expect *x = NULL;
    for (size_t i = 0; i < ep->n_expects; i++)
        if (sodium_memcmp(ep->expects[i].peer_pub, t->peer_pub, TERN_KEY_LEN) == 0)
            x = &ep->expects[i]; /* introduced again: the newer introduction wins */
    if (x == NULL && ep->n_expects >= TERN__MAX_EXPECTS) {
        /* full: the oldest expectation makes room, so that a flood of introductions (each
         * server-side rate-limited per target and requester IP) can delay a legitimate peer's
         * punches by at most one table's worth, never lock them out */
        size_t old = 0;
        for (size_t i = 1; i < ep->n_expects; i++)
            if (ep->expects[i].until - ep->expects[i].t.probe_duration_ns <
                ep->expects[old].until - ep->expects[old].t.probe_duration_ns)
                old = i;
        x = &ep->expects[old];
        ep->st.expects_evicted++;
    } else if (x == NULL) {
        x = &ep->expects[ep->n_expects++];
    }
    memset(x, 0, sizeof(*x));
    memcpy(x->peer_pub, t->peer_pub, TERN_KEY_LEN);
    punch_tag(t->nonce, x->punch_tag);
    x->local = *local;
    x->t = *t;
    target_fix(&x->t);
    x->next_punch = now;
    x->until = now + x->t.probe_duration_ns;
    expect_recompute(ep);
    return TERN_OK;
}

int tern_endpoint_connect_peer(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                               const tern_peer_target *t_in, tern_conn **out)
{
    if (ep == NULL || local == NULL || out == NULL || !target_ok(t_in)) return TERN_ERR_INVALID_ARG;
    if (t_in->n_cands == 0 && !t_in->has_relay) return TERN_ERR_INVALID_ARG;
    tern_peer_target t = *t_in;
    target_fix(&t);
    tern_conn *c = tern__conn_new(ep, 0, now);
    if (c == NULL) return TERN_ERR_NOMEM;
    c->exposed = 1;
    memcpy(c->server_pub, t.peer_pub, TERN_KEY_LEN);
    tern__ep_rand(ep, c->initial_dcid, TERN_CID_LEN);
    memcpy(c->remote_cid, c->initial_dcid, TERN_CID_LEN);
    tern__p2p *p = p2p_get(c);
    if (p == NULL) {
        tern__conn_free(c);
        return TERN_ERR_NOMEM;
    }
    p->probing = 1;
    p->interval = t.probe_interval_ns;
    p->probe_until = now + t.probe_duration_ns;
    punch_tag(t.nonce, p->punch_tag);
    p->punch_match = 1;
    ep->n_punch_match++;
    p->has_relay = t.has_relay;
    p->relay = t.relay;
    p->relay_at = now + t.relay_after_ns;
    for (size_t i = 0; i < t.n_cands; i++)
        if (cand_find(p, &t.cands[i], 0, NULL) < 0) cand_add(c, now, local, &t.cands[i], 0, NULL, 0);
    if (t.has_relay && (t.relay_after_ns == 0 || t.n_cands == 0)) {
        p->relay_added = 1;
        cand_add(c, now, local, &t.relay.addr, 1, t.relay.channel, 0);
    }
    for (size_t i = 0; i < p->n; i++) p->cands[i].next_probe = now + p->cands[i].gap;
    /* before the handshake picks one, the active path is the first candidate */
    if (p->n > 0) c->path = p->cands[0].path;
    else path_set(&c->path, local, &t.relay.addr, 1, t.relay.channel);
    c->path.validated = 1;
    int rc = tern__hs_client_start(c, now);
    if (rc != TERN_OK) {
        tern__conn_free(c);
        return rc;
    }
    c->hs_retx_at = TERN_TIME_NEVER; /* the candidates' schedules resend the Initial */
    tern__conn_update_timer(c);
    *out = c;
    return TERN_OK;
}

void tern_conn_path(const tern_conn *c, tern_path_info *info)
{
    if (c == NULL || info == NULL) return;
    memset(info, 0, sizeof(*info));
    info->remote = c->path.remote;
    info->relayed = c->path.relayed;
    info->validated = c->path.validated;
    info->moves = c->path_moves;
    if (c->p2p != NULL) {
        info->fallbacks = c->p2p->fallbacks;
        info->n_cands = c->p2p->n;
        for (size_t i = 0; i < c->p2p->n; i++)
            if (c->p2p->cands[i].state == TERN__CAND_VALID) info->n_validated++;
    }
}
