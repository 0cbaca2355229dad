/*
 * Building a connection's protected (short-header) packets: sealing under the current key (and
 * the key update after key_update_packets), the amplification limit of an unvalidated active
 * path, the relay header, and what one packet carries, in order: ACK, PATH_RESPONSE,
 * HANDSHAKE_DONE, PONGs, PING, flow control frames, then flow data and datagrams under the
 * congestion window and the pacer. Probes of candidate paths are built by path_probe.c, path MTU
 * probes by pmtu.c.
 */
#include <sodium.h>
#include <string.h>

#include "core/conn.h"
#include "core/conn_int.h"

/* Moves the sending direction to its next key and flips its key phase. */
void tern__conn_update_tx_key(tern_conn *c)
{
    tern__aead next;
    if (tern__aead_next(&next, &c->keys.tx) != TERN_OK) return; /* keep the old key: no worse */
    c->keys.tx = next;
    sodium_memzero(&next, sizeof(next));
    c->keys.tx_phase ^= 1;
    c->keys.tx_phase_packets = 0;
    c->st.key_updates++;
}

/* ---------------------------------------------------------------- send */

/* The bytes of the packet number in the next packet (docs/protocol.md section 4; RFC 9000
 * A.2): enough that the receiver, which has received at least the largest packet the peer
 * acknowledged, reconstructs it from the low bits: twice the distance from that packet fits,
 * at least 2 bytes (a reordering of up to 32767 packets then still decodes). Before any ACK,
 * 4. Data packets use it; probes of an exact size (PMTU, path validation) keep PN_LEN. */
static size_t data_pn_len(const tern_conn *c)
{
    const tern__recovery *r = c->rec.r;
    if (r == NULL || !r->have_largest_acked || c->tx.next_pn <= r->largest_acked) return PN_LEN;
    uint64_t range = c->tx.next_pn - r->largest_acked;
    if (range < (1u << 15)) return 2;
    if (range < (1u << 23)) return 3;
    return PN_LEN;
}

static int seal(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const uint8_t *frames,
                size_t frames_len, uint64_t *pn_out, size_t pn_len)
{
    size_t hdr_len = 1 + TERN_CID_LEN + pn_len;
    size_t total = hdr_len + frames_len + TERN__AEAD_TAG_LEN;
    if (total > cap) return 0;
    uint64_t pn = c->tx.next_pn++;
    uint8_t *p = tern__short_encode(out, out + cap, c->keys.tx_phase, c->remote_cid, pn, pn_len);
    if (p == NULL) return 0;
    int rc;
    if (c->keys.integrity_only) {
        memcpy(p, frames, frames_len);
        rc = tern__aead_seal(&c->keys.tx, pn, 1, out, hdr_len, p, frames_len, p);
    } else {
        rc = tern__aead_seal(&c->keys.tx, pn, 0, out, hdr_len, frames, frames_len, p);
    }
    if (rc != TERN_OK) return 0;
    c->tx.last = now;
    c->st.tx_packets++;
    c->st.tx_bytes += total;
    if (pn_out) *pn_out = pn;
    /* enough under this key: the next packet goes out under the next one, once the peer
     * answered under the current one (so it can tell old from new) */
    if (++c->keys.tx_phase_packets >= c->ep->s.key_update_packets &&
        c->keys.tx_phase == c->keys.rx_phase && c->rx.replay.have &&
        c->rx.replay.largest >= c->keys.rx_phase_first)
        tern__conn_update_tx_key(c);
    return (int)total;
}

int tern__conn_seal_pn(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const uint8_t *frames,
                       size_t frames_len, uint64_t *pn_out)
{
    return seal(c, now, out, cap, frames, frames_len, pn_out, PN_LEN);
}

int tern__conn_seal(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const uint8_t *frames,
                    size_t frames_len)
{
    return tern__conn_seal_pn(c, now, out, cap, frames, frames_len, NULL);
}

/* May data go out now? Congestion window and pacer (probes ignore both). On a direct stream
 * neither applies: TCP paces and controls congestion below us, and only stream_window bounds
 * what is outstanding there (a probe too: it is a PING, not data past the cap). */
static int data_allowed(tern_conn *c, uint64_t now, size_t bytes)
{
    tern__recovery *r = c->rec.r;
    if (tern__path_is_reliable(&c->path))
        return r->bytes_in_flight + bytes <= c->ep->s.stream_window;
    if (r->probes_pending && !r->probe_ping_only) return 1;
    if (r->bytes_in_flight + bytes > r->cc.ops->cwnd(r->cc.st)) return 0;
    tern__pacer_set_rate(&r->pacer, r->cc.ops->pacing_rate(r->cc.st, c->rec.rtt.srtt),
                         tern__conn_max_payload(c));
    uint64_t t = tern__pacer_next(&r->pacer, now, bytes);
    if (t > now) {
        c->tx.pacer_wake = t;
        return 0;
    }
    return 1;
}

static int write_active(tern_conn *c, uint64_t now, uint8_t *out, size_t cap);

/* One datagram for the connection: a probe or handshake packet for a candidate path (*via says
 * which), else the next packet on the active path. Relayed paths get the relay's header. */
int tern__conn_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const tern__path **via)
{
    *via = &c->path;
    if (c->p2p != NULL) {
        int n = tern__p2p_write(c, now, out, cap, via);
        if (n > 0) return n;
        *via = &c->path;
    }
    if (c->path.closed) return 0; /* a server's stream that ended: wait for the client */
    size_t hdr = c->path.relayed ? TERN__RELAY_HDR_LEN : 0;
    if (cap <= hdr) return 0;
    /* an unvalidated active path (a server before the client's first 1-RTT packet) gets at
     * most three times what came from it: no datagram is built that would pass that */
    if (!c->path.validated) {
        size_t budget = 0;
        if (3 * c->path.rx_bytes > c->path.tx_bytes + hdr)
            budget = (size_t)(3 * c->path.rx_bytes - c->path.tx_bytes - hdr);
        if (c->state != TERN_CONN_HANDSHAKE && budget < cap - hdr) {
            if (budget < tern__conn_packet_overhead() + 1) {
                c->ep->st.amplification_blocked++;
                return 0;
            }
            cap = hdr + budget;
        }
    }
    int n = tern__mig_write(c, now, out + hdr, cap - hdr); /* a migration's challenge */
    if (n == 0 && c->pmtu.due) n = tern__pmtu_write(c, now, out + hdr, cap - hdr);
    if (n == 0) n = write_active(c, now, out + hdr, cap - hdr);
    if (n <= 0) return n;
    if (hdr) tern_relay_hdr_put(out, c->path.channel);
    c->path.tx_bytes += hdr + (size_t)n;
    c->path.tx_dgrams++;
    return (int)hdr + n;
}

static int write_active(tern_conn *c, uint64_t now, uint8_t *out, size_t cap)
{
    uint8_t frames[TERN_MAX_DATAGRAM];
    size_t limit = tern__conn_max_payload(c);
    if (limit > cap) limit = cap;
    if (limit < SHORT_HDR_LEN + TERN__AEAD_TAG_LEN + 1) return 0;
    uint8_t *p = frames, *end = frames + (limit - SHORT_HDR_LEN - TERN__AEAD_TAG_LEN);

    switch (c->state) {
    case TERN_CONN_HANDSHAKE:
        return tern__hs_write(c, out, cap);
    case TERN_CONN_CLOSING:
        if (!c->close.pending) return 0;
        c->close.pending = 0;
        c->close.sends++;
        p = tern__frame_put_close(p, end, c->close.space, c->close.code, c->close.reason,
                                  c->close.reason_len);
        return p ? seal(c, now, out, cap, frames, (size_t)(p - frames), NULL, data_pn_len(c)) : 0;
    case TERN_CONN_ESTABLISHED:
        break;
    default:
        return 0;
    }
    if (tern__rec_reserve(c, c->tx.next_pn) != TERN_OK) return 0;

    tern__sent rec;
    memset(&rec, 0, sizeof(rec));
    rec.pn = c->tx.next_pn;
    int eliciting = 0, ack_written = 0;
    uint8_t *q;
    tern__ackset *acks = &c->rec.r->acks;
    /* an ACK rides on every packet while something is unacknowledged */
    if (acks->n > 0 && (acks->ack_now || now >= acks->ack_deadline || acks->unacked_eliciting)) {
        q = tern__ack_encode(acks, now, p, end);
        if (q != NULL) {
            p = q;
            ack_written = 1;
        }
    }
    if (c->tx.path_response_due && (q = tern__frame_put_path(p, end, TERN__FRAME_PATH_RESPONSE,
                                                             c->tx.path_response)) != NULL) {
        p = q;
        c->tx.path_response_due = 0;
        eliciting = 1;
    }
    if (c->tx.hs_done_pending &&
        (q = tern__put_varint(p, end, TERN__FRAME_HANDSHAKE_DONE)) != NULL) {
        p = q;
        c->tx.hs_done_pending = 0;
        rec.hs_done = 1;
        eliciting = 1;
    }
    while (c->live.n_pongs > 0 &&
           (q = tern__frame_put_ping(p, end, TERN__FRAME_PONG, c->live.pongs[0])) != NULL) {
        p = q;
        memmove(c->live.pongs, c->live.pongs + 1, (c->live.n_pongs - 1) * sizeof(c->live.pongs[0]));
        c->live.n_pongs--;
        eliciting = 1;
    }
    if (c->live.ping_pending &&
        (q = tern__frame_put_ping(p, end, TERN__FRAME_PING, c->live.ping_id + 1)) != NULL) {
        p = q;
        c->live.ping_id++;
        c->live.ping_pending = 0;
        c->live.ping_outstanding = 1;
        c->live.ping_sent_at = now;
        if (c->live.ping_backoff == 0) c->live.ping_backoff = tern__rec_rtt_pto(c);
        c->live.ping_retx_at = now + c->live.ping_backoff;
        rec.ping = 1;
        eliciting = 1;
    }
    uint8_t *before = p;
    p = tern__flow_write_control(c, p, end, &rec);
    if (p != before) eliciting = 1;

    /* application data: under the congestion window and the pacer */
    int want_data = c->dq.head != NULL || tern__flow_has_data(c, now);
    if (want_data && data_allowed(c, now, limit)) {
        before = p;
        p = tern__flow_write_data(c, now, p, end, &rec);
        while (c->dq.head != NULL) {
            tern__dgram *d = c->dq.head;
            if (d->len > tern_conn_max_datagram(c)) {
                /* queued for a path with larger packets than the one we are on now (a move
                 * from a stream or after a smaller path MTU): it never fits, drop it */
                c->dq.head = d->next;
                if (c->dq.head == NULL) c->dq.tail = NULL;
                c->dq.len--;
                c->st.datagrams_dropped++;
                tern__conn_dealloc(c, d, sizeof(*d) + d->len);
                continue;
            }
            q = tern__frame_put_datagram(p, end, d->data, d->len);
            if (q == NULL) break;
            p = q;
            c->dq.head = d->next;
            if (c->dq.head == NULL) c->dq.tail = NULL;
            c->dq.len--;
            c->st.datagrams_sent++;
            tern__conn_dealloc(c, d, sizeof(*d) + d->len);
        }
        if (p != before) eliciting = 1;
    } else if (!want_data && now > c->flows.last_give_up + c->rec.rtt.srtt) {
        /* nothing to send although the window may allow: later samples are app-limited. Not
         * so while messages are being given up for lack of time: that sender is limited by
         * the network, however empty its queue looks for a moment. */
        if (c->rec.r->bytes_in_flight < c->rec.r->cc.ops->cwnd(c->rec.r->cc.st))
            tern__rate_on_app_limited(&c->rec.r->rate, c->rec.r->bytes_in_flight);
    }
    if (c->rec.r->probes_pending && !eliciting) {
        if ((q = tern__frame_put_ping(p, end, TERN__FRAME_PING, ++c->live.ping_id)) != NULL) {
            p = q;
            eliciting = 1;
            rec.ping = 1;
        }
    }
    if (p == frames) {
        tern__conn_update_timer(c); /* the pacer may have set a wake-up time */
        return 0;
    }
    uint64_t pn;
    /* frames were fitted for a 4-byte packet number; a shorter one makes the packet smaller */
    int n = seal(c, now, out, cap, frames, (size_t)(p - frames), &pn, data_pn_len(c));
    if (n <= 0) return n;
    if (ack_written) {
        acks->ack_now = 0;
        acks->ack_deadline = TERN_TIME_NEVER;
        acks->unacked_eliciting = 0;
    }
    if (eliciting) {
        if (c->path.await_since == 0) c->path.await_since = now; /* answered when it works */
        rec.pn = pn;
        rec.bytes = (uint32_t)n;
        rec.ack_eliciting = 1;
        rec.in_flight = 1;
        rec.stream = tern__path_is_reliable(&c->path);
        tern__rec_on_sent(c, &rec, now);
        if (c->rec.r->probes_pending) c->rec.r->probes_pending--;
    }
    tern__conn_update_timer(c);
    return n;
}
