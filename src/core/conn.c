/*
 * A connection's life: creation and freeing, installing the 1-RTT keys, closing with a code and
 * reason (CLOSING, DRAINING, silent), becoming established, the connection's timer (what is due
 * next and what runs when it fires), and the public tern_conn_* API. Receiving protected packets
 * is in conn_rx.c, building them in conn_tx.c, path MTU discovery in pmtu.c, RTT in recovery.c.
 *
 * Lifecycle: HANDSHAKE -> ESTABLISHED -> CLOSING (we closed; CLOSE is repeated when the peer
 * keeps sending) or DRAINING (the peer closed) for three PTOs -> CLOSED -> freed by the timer.
 */
#include <sodium.h>
#include <string.h>

#include "core/conn.h"
#include "core/conn_int.h"

/* ---------------------------------------------------------------- life */

tern_conn *tern__conn_new(tern_endpoint *ep, int is_server, uint64_t now)
{
    tern_conn *c = tern__calloc(&ep->alloc, sizeof(*c));
    if (c == NULL) return NULL;
    c->timer.idx = SIZE_MAX;
    c->timer.deadline = TERN_TIME_NEVER;
    c->ep = ep;
    c->is_server = is_server;
    c->state = TERN_CONN_HANDSHAKE;
    c->live.idle_timeout = ep->s.idle_timeout_ns;
    c->rx.last = c->tx.last = now;
    tern__rec_rtt_init(&c->rec.rtt, ep->s.initial_rtt_ns);
    c->flows.next_id = is_server ? 1 : 0;
    c->flows.peer_next = is_server ? 0 : 1;
    c->tx.pacer_wake = TERN_TIME_NEVER;
    tern__pmtu_init(&c->pmtu, ep->s.max_udp_payload);
    c->peer.flow_window = 64;
    c->peer.max_flows = 4;
    for (int tries = 0;; tries++) {
        tern__ep_rand(ep, c->local_cid, TERN_CID_LEN);
        int rc = tern__map_put(&ep->by_cid, c->local_cid, c);
        if (rc == TERN_OK) break;
        if (rc != TERN_ERR_LIMIT || tries > 8) {
            tern__free(&ep->alloc, c, sizeof(*c));
            return NULL;
        }
    }
    c->link.all_next = ep->all;
    if (ep->all) ep->all->link.all_prev = c;
    ep->all = c;
    ep->st.conns_current++;
    if (is_server) ep->st.conns_half_open++;
    return c;
}

static void free_dgrams(tern_conn *c)
{
    while (c->dq.head) {
        tern__dgram *d = c->dq.head;
        c->dq.head = d->next;
        tern__conn_dealloc(c, d, sizeof(*d) + d->len);
    }
    c->dq.tail = NULL;
    c->dq.len = 0;
}

/* Frees what only the handshake needed. keep_initial: the server keeps the client's Initial DCID
 * in by_initial while the connection is established, so that a late copy of the Initial that
 * came the slow way (over UDP after the stream won the client's race, or the other way round)
 * is recognised and ignored rather than starting a second connection (handshake.c). */
static void release_handshake(tern_conn *c, int keep_initial)
{
    tern_endpoint *ep = c->ep;
    if (c->hs.noise) {
        tern__noise_wipe(c->hs.noise);
        tern__free(&ep->alloc, c->hs.noise, sizeof(*c->hs.noise));
        c->hs.noise = NULL;
    }
    if (c->hs.pkt) {
        size_t cap = c->is_server ? c->hs.pkt_len : TERN_MIN_INITIAL_SIZE;
        tern__free(&ep->alloc, c->hs.pkt, cap);
        c->hs.pkt = NULL;
    }
    c->hs.pending = 0;
    if (c->hs.in_initial_map && !keep_initial) {
        tern__map_del(&ep->by_initial, c->hs.initial_dcid, c);
        c->hs.in_initial_map = 0;
    }
}

void tern__conn_free(tern_conn *c)
{
    tern_endpoint *ep = c->ep;
    if (c->is_server && c->state == TERN_CONN_HANDSHAKE) ep->st.conns_half_open--;
    tern__flows_free(c); /* releases referenced send buffers: before on_conn_free, the last */
    if (ep->cb.on_conn_free && c->exposed)
        ep->cb.on_conn_free(c, ep->user_data);
    release_handshake(c, 0);
    free_dgrams(c);
    tern__rec_free(c);
    tern__p2p_free(c);
    tern__ep_src_release(c);
    tern__map_del(&ep->by_cid, c->local_cid, c);
    if (c->peer.in_reset_map) tern__map_del(&ep->by_reset, c->peer.reset_token, c);
    tern__heap_set(&ep->timers, &c->timer, TERN_TIME_NEVER);
    if (c->link.in_send_list) {
        tern_conn **pp = &ep->send_head, *prev = NULL;
        while (*pp && *pp != c) {
            prev = *pp;
            pp = &(*pp)->link.send_next;
        }
        if (*pp) *pp = c->link.send_next;
        if (ep->send_tail == c) ep->send_tail = prev;
    }
    if (c->link.all_prev) c->link.all_prev->link.all_next = c->link.all_next;
    else ep->all = c->link.all_next;
    if (c->link.all_next) c->link.all_next->link.all_prev = c->link.all_prev;
    ep->st.conns_current--;
    sodium_memzero(c, sizeof(*c)); /* keys included */
    tern__free(&ep->alloc, c, sizeof(*c));
}

int tern__conn_install_keys(tern_conn *c, const uint8_t tx_secret[32], const uint8_t rx_secret[32])
{
    int rc = tern__aead_init(&c->keys.tx, c->keys.aead, tx_secret);
    if (rc == TERN_OK) rc = tern__aead_init(&c->keys.rx, c->keys.aead, rx_secret);
    if (rc == TERN_OK) c->keys.have = 1;
    c->st.aead =
        c->keys.aead == TERN__WIRE_AES256GCM ? TERN_AEAD_AES256GCM : TERN_AEAD_CHACHA20POLY1305;
    c->st.integrity_only = c->keys.integrity_only;
    return rc;
}

static void report_closed(tern_conn *c, int err, uint64_t code, const uint8_t *reason, size_t len)
{
    tern_endpoint *ep = c->ep;
    /* a server connection the application never saw ends without a word */
    if (c->close.reported || !c->exposed) return;
    c->close.reported = 1;
    if (ep->cb.on_closed)
        ep->cb.on_closed(c, err, code, (const char *)reason, len, ep->user_data);
}

void tern__conn_close_as(tern_conn *c, uint64_t now, int err, uint64_t space, uint64_t code,
                      const uint8_t *reason, size_t reason_len, int mode)
{
    tern_endpoint *ep = c->ep;
    if (c->state >= TERN_CONN_CLOSING) return;
    if (c->state == TERN_CONN_HANDSHAKE && c->is_server) ep->st.conns_half_open--;
    if (err == TERN_ERR_BUDGET) ep->st.conns_closed_budget++;
    if (err == TERN_ERR_NOMEM) ep->st.conns_closed_nomem++;
    if (mode == TERM_SEND_CLOSE && !c->keys.have) mode = TERM_SILENT;
    if (reason_len > TERN__MAX_REASON_LEN) reason_len = TERN__MAX_REASON_LEN;
    c->close.space = space;
    c->close.code = code;
    if (reason_len) memcpy(c->close.reason, reason, reason_len);
    c->close.reason_len = reason_len;
    switch (mode) {
    case TERM_SEND_CLOSE:
        c->state = TERN_CONN_CLOSING;
        c->close.pending = 1;
        c->close.deadline = now + 3 * tern__rec_rtt_pto(c);
        tern__ep_mark_send(ep, c);
        break;
    case TERM_DRAIN:
        c->state = TERN_CONN_DRAINING;
        c->close.deadline = now + 3 * tern__rec_rtt_pto(c);
        break;
    default:
        c->state = TERN_CONN_CLOSED;
        c->close.deadline = now;
        break;
    }
    release_handshake(c, 0);
    free_dgrams(c);
    /* Flows stay until the connection is freed: this may run inside on_message, with the
     * flow being delivered still in use. */
    report_closed(c, err, code, c->close.reason, c->close.reason_len);
    tern__conn_update_timer(c);
}

void tern__conn_terminate(tern_conn *c, uint64_t now, int err, uint64_t code, const uint8_t *reason,
                          size_t reason_len, int silent)
{
    uint64_t tcode = err == TERN_ERR_PROTOCOL ? TERN__TERR_PROTOCOL
                     : err == TERN_ERR_REFUSED ? TERN__TERR_REFUSED
                     : err == TERN_ERR_NOMEM   ? TERN__TERR_INTERNAL
                     : err == TERN_ERR_BUDGET  ? TERN__TERR_BUDGET
                                               : code;
    tern__conn_close_as(c, now, err, TERN__CLOSE_TRANSPORT, tcode, reason, reason_len,
              silent ? TERM_SILENT : TERM_SEND_CLOSE);
}

void tern__conn_established(tern_conn *c, uint64_t now)
{
    tern_endpoint *ep = c->ep;
    if (c->is_server) ep->st.conns_half_open--;
    c->state = TERN_CONN_ESTABLISHED;
    c->st.handshake_ns = now - c->hs.start;
    c->rx.last = c->tx.last = now;
    release_handshake(c, 1);
    if (tern__rec_init(c, now) != TERN_OK) {
        tern__conn_close_as(c, now, TERN_ERR_NOMEM, TERN__CLOSE_TRANSPORT, TERN__TERR_INTERNAL,
                            NULL, 0, TERM_SILENT);
        return;
    }
    c->rec.ready = 1;
    ep->st.handshakes_completed++;
    if (c->is_server) {
        c->tx.hs_done_pending = 1;
        c->exposed = 1;
        if (ep->cb.on_accept && ep->cb.on_accept(c, ep->user_data) < 0) {
            static const char why[] = "refused by server";
            /* on_accept saw the connection: it will hear on_closed and on_conn_free */
            tern__conn_close_as(c, now, TERN_ERR_REFUSED, TERN__CLOSE_TRANSPORT, TERN__TERR_REFUSED,
                      (const uint8_t *)why, sizeof(why) - 1, TERM_SEND_CLOSE);
            return;
        }
    } else {
        /* confirm: the server learns we have the keys; repeated until it answers */
        c->live.ping_pending = 1;
        c->live.ping_backoff = tern__rec_rtt_pto(c);
    }
    tern__ep_mark_send(ep, c);
    tern__p2p_established(c, now);
    tern__pmtu_start(c, now);
    tern__conn_update_timer(c);
    if (ep->cb.on_established) ep->cb.on_established(c, ep->user_data);
}

/* ---------------------------------------------------------------- timers */

static uint64_t next_deadline(const tern_conn *c)
{
    uint64_t d = TERN_TIME_NEVER;
#define MIN_INTO(x)                                                                                \
    do {                                                                                           \
        if ((x) < d) d = (x);                                                                      \
    } while (0)
    switch (c->state) {
    case TERN_CONN_HANDSHAKE:
        MIN_INTO(c->hs.deadline);
        MIN_INTO(c->hs.retx_at);
        MIN_INTO(tern__p2p_deadline(c));
        break;
    case TERN_CONN_ESTABLISHED:
        MIN_INTO(c->rx.last + c->live.idle_timeout);
        MIN_INTO(tern__p2p_deadline(c));
        MIN_INTO(tern__pmtu_deadline(c));
        MIN_INTO(tern__mig_deadline(c));
        if (!c->live.ping_pending) {
            if (c->live.ping_outstanding) MIN_INTO(c->live.ping_retx_at);
            else if (c->ep->s.keepalive_ns) MIN_INTO(c->tx.last + c->ep->s.keepalive_ns);
        }
        if (c->rec.ready) {
            if (!c->rec.r->acks.ack_now) MIN_INTO(c->rec.r->acks.ack_deadline);
            if (c->rec.r->probes_pending == 0) MIN_INTO(tern__rec_timer(c));
            MIN_INTO(c->tx.pacer_wake);
        }
        break;
    case TERN_CONN_CLOSING:
    case TERN_CONN_DRAINING:
    case TERN_CONN_CLOSED:
        MIN_INTO(c->close.deadline);
        break;
    }
#undef MIN_INTO
    return d;
}

void tern__conn_update_timer(tern_conn *c)
{
    tern__heap_set(&c->ep->timers, &c->timer, next_deadline(c));
}

void tern__conn_on_timer(tern_conn *c, uint64_t now)
{
    switch (c->state) {
    case TERN_CONN_HANDSHAKE:
        tern__hs_on_timer(c, now);
        if (c->state == TERN_CONN_CLOSED && now >= c->close.deadline) {
            tern__conn_free(c);
            return;
        }
        tern__p2p_on_timer(c, now);
        break;
    case TERN_CONN_ESTABLISHED:
        if (now >= c->rx.last + c->live.idle_timeout) {
            tern__conn_close_as(c, now, TERN_ERR_IDLE_TIMEOUT, TERN__CLOSE_TRANSPORT, 0, NULL, 0,
                      TERM_SILENT);
            tern__conn_free(c);
            return;
        }
        if (c->live.ping_outstanding && now >= c->live.ping_retx_at) {
            c->live.ping_pending = 1;
            c->live.ping_backoff *= 2;
            if (c->live.ping_backoff > c->ep->s.max_backoff_ns)
                c->live.ping_backoff = c->ep->s.max_backoff_ns;
            tern__ep_mark_send(c->ep, c);
        } else if (!c->live.ping_outstanding && c->ep->s.keepalive_ns &&
                   now >= c->tx.last + c->ep->s.keepalive_ns) {
            c->live.ping_pending = 1;
            c->live.ping_backoff = tern__rec_rtt_pto(c);
            tern__ep_mark_send(c->ep, c);
        }
        if (c->rec.ready) {
            if (now >= c->rec.r->acks.ack_deadline) {
                c->rec.r->acks.ack_now = 1;
                tern__ep_mark_send(c->ep, c);
            }
            if (c->rec.r->probes_pending == 0 && now >= tern__rec_timer(c))
                tern__rec_on_timer(c, now);
            if (now >= c->tx.pacer_wake) {
                c->tx.pacer_wake = TERN_TIME_NEVER;
                tern__ep_mark_send(c->ep, c);
            }
        }
        tern__p2p_on_timer(c, now);
        tern__pmtu_on_timer(c, now);
        tern__mig_on_timer(c, now);
        break;
    default:
        if (now >= c->close.deadline) {
            c->state = TERN_CONN_CLOSED;
            tern__conn_free(c);
            return;
        }
        break;
    }
    tern__conn_update_timer(c);
}

/* ---------------------------------------------------------------- public API */

int tern_endpoint_connect(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                          const tern_addr *remote, const uint8_t server_pub[TERN_KEY_LEN],
                          tern_conn **out)
{
    if (ep == NULL || local == NULL || remote == NULL || server_pub == NULL || out == NULL)
        return TERN_ERR_INVALID_ARG;
    tern_conn *c = tern__conn_new(ep, 0, now);
    if (c == NULL) return TERN_ERR_NOMEM;
    c->path.local = *local;
    c->path.remote = *remote;
    c->path.validated = 1; /* we chose to send there */
    c->exposed = 1;
    memcpy(c->hs.server_pub, server_pub, TERN_KEY_LEN);
    tern__ep_rand(ep, c->hs.initial_dcid, TERN_CID_LEN);
    memcpy(c->remote_cid, c->hs.initial_dcid, TERN_CID_LEN);
    int rc = tern__hs_client_start(c, now);
    if (rc != TERN_OK) {
        tern__conn_free(c);
        return rc;
    }
    *out = c;
    return TERN_OK;
}

size_t tern_conn_max_datagram(const tern_conn *c)
{
    size_t room = tern__conn_max_payload(c) - SHORT_HDR_LEN - TERN__AEAD_TAG_LEN;
    return room - tern__frame_datagram_overhead(room);
}

int tern_conn_send_datagram(tern_conn *c, uint64_t now, const uint8_t *data, size_t len)
{
    (void)now;
    if (c == NULL || (data == NULL && len > 0)) return TERN_ERR_INVALID_ARG;
    if (c->state != TERN_CONN_ESTABLISHED) return TERN_ERR_STATE;
    if (len > tern_conn_max_datagram(c)) return TERN_ERR_TOO_LARGE;
    if (c->dq.len >= c->ep->s.max_datagram_queue) {
        c->st.datagrams_dropped++;
        return TERN_ERR_AGAIN;
    }
    if (tern__conn_send_over(c, sizeof(tern__dgram) + len)) { /* the connection's budget */
        c->st.datagrams_dropped++;
        return TERN_ERR_AGAIN;
    }
    tern__dgram *d = tern__conn_alloc(c, sizeof(*d) + len, 0);
    if (d == NULL) return TERN_ERR_NOMEM;
    d->next = NULL;
    d->len = len;
    if (len) memcpy(d->data, data, len);
    if (c->dq.tail) c->dq.tail->next = d;
    else c->dq.head = d;
    c->dq.tail = d;
    c->dq.len++;
    tern__ep_mark_send(c->ep, c);
    return TERN_OK;
}

int tern_conn_ping(tern_conn *c, uint64_t now)
{
    (void)now;
    if (c == NULL) return TERN_ERR_INVALID_ARG;
    if (c->state != TERN_CONN_ESTABLISHED) return TERN_ERR_STATE;
    c->live.ping_pending = 1;
    c->live.ping_backoff = tern__rec_rtt_pto(c);
    tern__ep_mark_send(c->ep, c);
    tern__conn_update_timer(c);
    return TERN_OK;
}

int tern_conn_close(tern_conn *c, uint64_t now, uint64_t app_code, const char *reason,
                    size_t reason_len)
{
    if (c == NULL || (reason == NULL && reason_len > 0)) return TERN_ERR_INVALID_ARG;
    if (c->state >= TERN_CONN_CLOSING) return TERN_ERR_STATE;
    tern__conn_close_as(c, now, TERN_ERR_LOCAL_CLOSED, TERN__CLOSE_APPLICATION, app_code,
              (const uint8_t *)reason, reason_len, TERM_SEND_CLOSE);
    return TERN_OK;
}

tern_conn_state tern_conn_get_state(const tern_conn *c)
{
    return c->state;
}

tern_endpoint *tern_conn_endpoint(const tern_conn *c)
{
    return c->ep;
}

void tern_conn_set_user_data(tern_conn *c, void *p)
{
    c->user_data = p;
}

void *tern_conn_get_user_data(const tern_conn *c)
{
    return c->user_data;
}

int tern_conn_peer_key(const tern_conn *c, uint8_t pub[TERN_KEY_LEN])
{
    if (!c->peer.known) return TERN_ERR_STATE;
    memcpy(pub, c->peer.static_pub, TERN_KEY_LEN);
    return TERN_OK;
}

int tern_conn_peer_id(const tern_conn *c, uint8_t id[TERN_PEER_ID_LEN])
{
    if (!c->peer.known) return TERN_ERR_STATE;
    tern_peer_id(c->peer.static_pub, id);
    return TERN_OK;
}

const tern_addr *tern_conn_remote(const tern_conn *c)
{
    return &c->path.remote;
}

int tern_conn_is_server(const tern_conn *c)
{
    return c->is_server;
}

void tern_conn_get_stats(const tern_conn *c, tern_conn_stats *st)
{
    *st = c->st;
    st->pto_count = c->st.pto_count;
    st->srtt_ns = c->rec.rtt.srtt;
    st->rttvar_ns = c->rec.rtt.rttvar;
    st->min_rtt_ns = c->rec.rtt.min;
    st->latest_rtt_ns = c->rec.rtt.latest;
    st->pmtu_size = tern__conn_max_payload(c);
}
