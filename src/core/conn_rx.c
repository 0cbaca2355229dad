/*
 * Receiving a connection's protected (short-header) packets and the frames they carry;
 * stateless resets, sent for unknown connection IDs and recognised when they come in.
 *
 * Receive order for a short packet: header bounds, connection lookup by connection ID, the
 * replay window (cheap, before crypto), AEAD open, then frames. A packet that fails any step is
 * dropped and counted; only a peer that breaks the protocol inside an authenticated packet
 * closes the connection.
 */
#include <sodium.h>
#include <string.h>

#include "core/conn.h"
#include "core/fec.h"
#include "core/conn_int.h"

/* failed decryptions a connection tolerates (below AES-GCM's 2^52 and ChaCha20-Poly1305's 2^36
 * integrity limits) */
#define TERN__MAX_FORGERIES (1ull << 32)

/* ---------------------------------------------------------------- receive */

static void send_reset(tern_endpoint *ep, const tern__rx *rx, const uint8_t cid[TERN_CID_LEN],
                       size_t trigger_len)
{
    uint8_t buf[TERN__RESET_MAX_LEN];
    /* smaller than what provoked it, so two endpoints cannot ping-pong resets forever */
    if (trigger_len <= TERN__RESET_MIN_LEN) return;
    size_t len = trigger_len - 1 < sizeof(buf) ? trigger_len - 1 : sizeof(buf);
    if (!tern__srclim_take(&ep->err_limit, rx->remote, rx->now)) return;
    tern__ep_rand(ep, buf, len - TERN__RESET_TOKEN_LEN);
    buf[0] = (uint8_t)((buf[0] & ~(TERN__HDR_LONG)) | TERN__HDR_FIXED);
    tern__reset_token(ep, cid, buf + len - TERN__RESET_TOKEN_LEN);
    if (tern__ep_reply_stateless(ep, rx, buf, len) == TERN_OK) ep->st.resets_sent++;
}

static int check_reset(tern_endpoint *ep, uint64_t now, const uint8_t *pkt, size_t len)
{
    if (len < TERN__RESET_MIN_LEN) return 0;
    tern_conn *c = tern__map_get(&ep->by_reset, pkt + len - TERN__RESET_TOKEN_LEN);
    if (c == NULL || c->state >= TERN_CONN_CLOSING) return 0;
    ep->st.resets_received++;
    tern__conn_close_as(c, now, TERN_ERR_STATELESS_RESET, TERN__CLOSE_TRANSPORT, 0, NULL, 0,
                        TERM_DRAIN);
    return 1;
}

static int process_frames(tern_conn *c, tern__rx *rx, const uint8_t *p, const uint8_t *end,
                          int *eliciting, int *probing_only)
{
    uint64_t now = rx->now;
    *probing_only = 1;
    tern_endpoint *ep = c->ep;
    while (p < end && c->state == TERN_CONN_ESTABLISHED) {
        uint64_t type;
        if (tern__get_varint(p, end, &type) == NULL) return TERN_ERR_PROTOCOL;
        if (type == TERN__FRAME_ACK) {
            tern__ack_frame af;
            *probing_only = 0;
            int err = TERN_OK;
            p = tern__ack_decode(tern__get_varint(p, end, &type), end, &af, &err);
            if (p == NULL) return TERN_ERR_PROTOCOL;
            if (c->pmtu.in_flight) tern__pmtu_on_ack(c, now, &af);
            if (tern__rec_on_ack(c, &af, now) != TERN_OK) return TERN_ERR_PROTOCOL;
            continue;
        }
        /* flow frames, the repair frames of their forward error correction (fec.c) and
         * keyframe requests (frame dependencies) */
        if ((type >= TERN__FRAME_FLOW_DATA && type <= TERN__FRAME_REPAIRED) ||
            type == TERN__FRAME_KEYFRAME_REQUEST) {
            *probing_only = 0;
            const uint8_t *q = tern__get_varint(p, end, &type);
            int rc = tern__flow_on_frame(c, type, &q, end);
            if (rc != TERN_OK)
                return rc == TERN_ERR_NOMEM || rc == TERN_ERR_BUDGET ? rc : TERN_ERR_PROTOCOL;
            p = q;
            *eliciting = 1;
            continue;
        }
        tern__frame f;
        int err = TERN_OK;
        p = tern__frame_decode(p, end, &f, &err);
        if (p == NULL) return TERN_ERR_PROTOCOL;
        if (f.type != TERN__FRAME_PADDING && f.type != TERN__FRAME_CLOSE) *eliciting = 1;
        if (f.type != TERN__FRAME_PADDING && f.type != TERN__FRAME_PATH_CHALLENGE &&
            f.type != TERN__FRAME_PATH_RESPONSE)
            *probing_only = 0;
        switch (f.type) {
        case TERN__FRAME_PADDING:
            break;
        case TERN__FRAME_PATH_CHALLENGE:
            tern__p2p_on_challenge(c, rx, f.id);
            break;
        case TERN__FRAME_PATH_RESPONSE:
            tern__p2p_on_response(c, rx, f.id);
            break;
        case TERN__FRAME_PING:
            if (c->live.n_pongs < TERN__MAX_PONGS) c->live.pongs[c->live.n_pongs++] = f.id;
            else c->live.pongs[TERN__MAX_PONGS - 1] = f.id;
            tern__ep_mark_send(ep, c);
            break;
        case TERN__FRAME_PONG:
            if (c->live.ping_outstanding && f.id == c->live.ping_id) {
                c->live.ping_outstanding = 0;
                tern__rec_rtt_sample(c, now - c->live.ping_sent_at);
                if (ep->cb.on_rtt) ep->cb.on_rtt(c, c->rec.rtt.latest, ep->user_data);
            }
            break;
        case TERN__FRAME_HANDSHAKE_DONE:
            if (c->is_server) return TERN_ERR_PROTOCOL;
            c->rx.confirmed = 1;
            break;
        case TERN__FRAME_CLOSE: {
            /* a server whose application refused us says so with transport error REFUSED */
            int why = f.close_space == TERN__CLOSE_TRANSPORT && f.close_code == TERN__TERR_REFUSED
                          ? TERN_ERR_REFUSED
                          : TERN_ERR_PEER_CLOSED;
            tern__conn_close_as(c, now, why, f.close_space, f.close_code, f.data, f.data_len,
                                TERM_DRAIN);
            return TERN_OK;
        }
        case TERN__FRAME_DATAGRAM:
            c->st.datagrams_received++;
            if (ep->cb.on_datagram) ep->cb.on_datagram(c, f.data, f.data_len, ep->user_data);
            break;
        default:
            return TERN_ERR_PROTOCOL;
        }
    }
    return TERN_OK;
}

int tern__conn_recv_short(tern_endpoint *ep, tern__rx *rx, const uint8_t *pkt, size_t len)
{
    uint64_t now = rx->now;
    tern__short_hdr h;
    int rc = tern__short_decode(pkt, len, &h);
    tern_conn *c = rc == TERN_OK ? tern__map_get(&ep->by_cid, h.dcid) : NULL;
    if (c == NULL || !c->keys.have) {
        if (check_reset(ep, now, pkt, len)) return TERN_OK;
        if (rc != TERN_OK) return rc;
        if (c == NULL) {
            send_reset(ep, rx, h.dcid, len);
            return TERN_ERR_UNKNOWN_CID;
        }
        return TERN_ERR_IGNORED; /* client still handshaking: nothing can be opened yet */
    }
    if (c->state == TERN_CONN_DRAINING || c->state == TERN_CONN_CLOSED) return TERN_ERR_IGNORED;

    uint64_t pn =
        tern__pn_decode(c->rx.replay.largest, c->rx.replay.have, h.pn_truncated, h.pn_len);
    if (tern__replay_check(&c->rx.replay, pn) != TERN_OK) {
        c->st.drop_replay++;
        return TERN_ERR_REPLAY;
    }
    uint8_t plain[TERN_MAX_DATAGRAM];
    size_t ct_len = len - h.hdr_len;
    uint8_t *frames = plain;
    /* key phase: the other phase on a packet newer than this phase's first is the peer's key
     * update (try the next key); on an older one it is a late packet under the old key, which
     * is gone (the data in it is retransmitted) */
    const tern__aead *key = &c->keys.rx;
    tern__aead next;
    int phase = (h.flags & TERN__SHORT_KEY_PHASE) != 0, rotating = 0;
    if (phase != c->keys.rx_phase) {
        if (pn < c->keys.rx_phase_first) {
            c->st.drop_auth++;
            return TERN_ERR_AUTH;
        }
        if (tern__aead_next(&next, &c->keys.rx) != TERN_OK) return TERN_ERR_AUTH;
        key = &next;
        rotating = 1;
    }
    if (c->keys.integrity_only) {
        /* open in place would need a writable packet: copy, then verify header||frames */
        uint8_t whole[TERN_MAX_DATAGRAM];
        memcpy(whole, pkt, len);
        rc = tern__aead_open(key, pn, 1, whole, h.hdr_len, whole + h.hdr_len, ct_len,
                             whole + h.hdr_len);
        if (rc == TERN_OK) memcpy(plain, whole + h.hdr_len, ct_len - TERN__AEAD_TAG_LEN);
    } else {
        rc = tern__aead_open(key, pn, 0, pkt, h.hdr_len, pkt + h.hdr_len, ct_len, plain);
    }
    if (rc != TERN_OK) {
        if (rotating) sodium_memzero(&next, sizeof(next));
        if (check_reset(ep, now, pkt, len)) return TERN_OK;
        c->st.drop_auth++;
        if (c->st.drop_auth >= TERN__MAX_FORGERIES) {
            /* past the AEAD's integrity limit: forgeries could start to succeed */
            static const char why[] = "too many forged packets";
            tern__conn_terminate(c, now, TERN_ERR_PROTOCOL, 0, (const uint8_t *)why,
                                 sizeof(why) - 1, 0);
        }
        return TERN_ERR_AUTH;
    }
    if (rotating) {
        c->keys.rx = next;
        sodium_memzero(&next, sizeof(next));
        c->keys.rx_phase = phase;
        c->keys.rx_phase_first = pn;
        if (c->keys.tx_phase != phase) tern__conn_update_tx_key(c); /* answer the peer's update */
    }
    size_t plain_len = ct_len - TERN__AEAD_TAG_LEN;
    int newest = !c->rx.replay.have || pn > c->rx.replay.largest;
    tern__replay_mark(&c->rx.replay, pn);
    c->rx.last = now;
    c->st.rx_packets++;
    c->st.rx_bytes += len;
    if (tern_addr_is_stream(rx->remote)) c->st.stream_packets_received++;
    /* which path did it come on? A new source address is a candidate until validated */
    int rxc = tern__p2p_rx_path(c, rx);
    if (rxc == -1) {
        c->path.rx_bytes += len;
        c->path.await_since = 0; /* the path works */
        c->path.closed = 0;      /* a stream to that address is open again */
    } else if (rxc >= 0) {
        c->p2p->cands[rxc].path.closed = 0;
        tern__p2p_rx_bytes(c, rxc, len);
    }

    if (h.flags & TERN__SHORT_RESERVED) {
        tern__conn_terminate(c, now, TERN_ERR_PROTOCOL, 0, NULL, 0, 0);
        return TERN_ERR_PROTOCOL;
    }
    if (c->state == TERN_CONN_CLOSING) {
        if (c->close.sends < MAX_CLOSE_SENDS) {
            c->close.pending = 1;
            tern__ep_mark_send(ep, c);
        }
        return TERN_OK;
    }
    if (c->state == TERN_CONN_HANDSHAKE) {
        /* server: the client has our Response, so it receives at its address (the one this
         * packet came from, when a copy of the Response went there too) */
        if (ep->cb.on_accept_hold && ep->cb.on_accept_hold(c, ep->user_data) > 0) {
            ep->st.accepts_held++; /* asked again on the client's next packet */
            c->hs.held = 1;
            return TERN_OK;
        }
        /* held: the expectation (tern_endpoint_expect_peer) may have come meanwhile, after the
         * Initial looked for it; its candidates and relay are this connection's to probe */
        if (c->hs.held) tern__p2p_server_attach(c, now);
        if (rxc >= 0) tern__p2p_hs_adopt(c, rx);
        c->path.validated = 1;
        tern__conn_established(c, now);
        if (c->state != TERN_CONN_ESTABLISHED) return TERN_OK;
    }
    if (!c->is_server) c->rx.confirmed = 1;
    int out_of_order = tern__ackset_add(&c->rec.r->acks, pn, now);
    int eliciting = 0, probing_only = 1;
    rc = process_frames(c, rx, frames, frames + plain_len, &eliciting, &probing_only);
    if (rc == TERN_OK) tern__p2p_on_rx_done(c, rx, newest, probing_only);
    if (rc == TERN_ERR_PROTOCOL || rc == TERN_ERR_NOMEM || rc == TERN_ERR_BUDGET) {
        static const char proto[] = "protocol violation", nomem[] = "out of memory",
                          budget[] = "memory budget exceeded";
        const char *why = rc == TERN_ERR_NOMEM ? nomem : rc == TERN_ERR_BUDGET ? budget : proto;
        tern__conn_terminate(c, now, rc, 0, (const uint8_t *)why, strlen(why), 0);
        /* out of memory or over budget: give back what the peer made us hold now, not when the
         * connection is freed 3 PTO later, so the others do not find the endpoint full (no flow
         * is being delivered here: this is not inside on_message) */
        if (rc != TERN_ERR_PROTOCOL) tern__flows_free(c);
        return rc;
    }
    if (c->state != TERN_CONN_ESTABLISHED) return TERN_OK;
    tern__flows_reap(c);
    if (c->state == TERN_CONN_ESTABLISHED) tern__target_events(c);
    /* ACK policy: every ack_every ack-eliciting packets, at once on a gap (a NACK), or after
     * max_ack_delay */
    if (eliciting) {
        tern__ackset *a = &c->rec.r->acks;
        a->unacked_eliciting++;
        if (out_of_order || a->unacked_eliciting >= c->ep->s.ack_every) a->ack_now = 1;
        else if (a->ack_deadline == TERN_TIME_NEVER)
            a->ack_deadline = now + c->ep->s.max_ack_delay_ns;
        if (a->ack_now) tern__ep_mark_send(ep, c);
    }
    tern__conn_update_timer(c);
    return TERN_OK;
}
