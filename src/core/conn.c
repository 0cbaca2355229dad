/*
 * A connection after its keys exist: protected (short-header) packets in and out, the frames
 * they carry, liveness (keep-alive PINGs, idle timeout, RTT from PING/PONG), closing with a code
 * and reason, stateless reset, and the public tern_conn_* API.
 *
 * Receive order for a short packet: header bounds, connection lookup by connection ID, the
 * replay window (cheap, before crypto), AEAD open, then frames. A packet that fails any step is
 * dropped and counted; only a peer that breaks the protocol inside an authenticated packet
 * closes the connection.
 *
 * Lifecycle: HANDSHAKE -> ESTABLISHED -> CLOSING (we closed; CLOSE is repeated when the peer
 * keeps sending) or DRAINING (the peer closed) for three PTOs -> CLOSED -> freed by the timer.
 */
#include <sodium.h>
#include <string.h>

#include "core/conn.h"

#define PN_LEN 4
/* failed decryptions a connection tolerates (below AES-GCM's 2^52 and ChaCha20-Poly1305's 2^36
 * integrity limits) */
#define TERN__MAX_FORGERIES (1ull << 32)
#define SHORT_HDR_LEN (1 + TERN_CID_LEN + PN_LEN)
#define MAX_CLOSE_SENDS 8

enum { TERM_SILENT, TERM_SEND_CLOSE, TERM_DRAIN };

static void rtt_init(tern__rtt *r, uint64_t initial)
{
    memset(r, 0, sizeof(*r));
    r->srtt = initial;
    r->rttvar = initial / 2;
}

static void rtt_update(tern__rtt *r, uint64_t s)
{
    r->latest = s;
    if (!r->has_sample) {
        r->has_sample = 1;
        r->srtt = s;
        r->rttvar = s / 2;
        r->min = s;
        return;
    }
    if (s < r->min) r->min = s;
    uint64_t d = r->srtt > s ? r->srtt - s : s - r->srtt;
    r->rttvar = (3 * r->rttvar + d) / 4;
    r->srtt = (7 * r->srtt + s) / 8;
}

void tern__conn_rtt_sample(tern_conn *c, uint64_t sample)
{
    rtt_update(&c->rtt, sample);
}

void tern__conn_network_changed(tern_conn *c)
{
    tern_endpoint *ep = c->ep;
    if (ep->cb.on_network == NULL || !c->rec_ready) return;
    tern_network_info ni;
    tern_conn_network_info(c, &ni);
    uint64_t lq = c->recp->loss_avg_q16;
    uint64_t lb = c->recp->last_bw_reported, lr = c->recp->last_rtt_reported;
    int changed = (ni.bandwidth_bps > lb + lb / 10 || ni.bandwidth_bps + lb / 10 < lb) ||
                  (ni.srtt_ns > lr + lr / 10 || ni.srtt_ns + lr / 10 < lr) ||
                  (lq > c->recp->last_loss_reported_q16 + 655 ||
                   lq + 655 < c->recp->last_loss_reported_q16);
    if (!changed) return;
    c->recp->last_bw_reported = ni.bandwidth_bps;
    c->recp->last_rtt_reported = ni.srtt_ns;
    c->recp->last_loss_reported_q16 = lq;
    ep->cb.on_network(c, &ni, ep->user_data);
}

void tern_conn_network_info(const tern_conn *c, tern_network_info *ni)
{
    memset(ni, 0, sizeof(*ni));
    ni->srtt_ns = c->rtt.srtt;
    ni->min_rtt_ns = c->rtt.min;
    ni->rttvar_ns = c->rtt.rttvar;
    if (!c->rec_ready) return;
    const tern__cc *cc = &c->recp->cc;
    ni->bandwidth_bps = cc->ops->bandwidth(cc->st, c->rtt.srtt) * 8;
    ni->pacing_rate_bps = cc->ops->pacing_rate(cc->st, c->rtt.srtt) * 8;
    ni->cwnd_bytes = cc->ops->cwnd(cc->st);
    ni->bytes_in_flight = c->recp->bytes_in_flight;
    ni->loss_rate = tern__rec_loss_rate(c);
}

uint64_t tern__conn_pto(const tern_conn *c)
{
    uint64_t var = 4 * c->rtt.rttvar;
    if (var < TERN_NS_PER_MS) var = TERN_NS_PER_MS;
    return c->rtt.srtt + var;
}

static int seal_packet(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const uint8_t *frames,
                       size_t frames_len, uint64_t *pn_out);

/* Sizes path MTU discovery tries, largest first: Ethernet's 1500 less IPv4+UDP and less
 * IPv6+UDP, then common tunnel sizes. */
static const uint16_t PMTU_LADDER[] = {1472, 1452, 1400, 1350};
#define PMTU_N (sizeof(PMTU_LADDER) / sizeof(PMTU_LADDER[0]))
#define PMTU_TRIES 3                     /* probes of one size before the next smaller one */
#define PMTU_RAISE (600 * TERN_NS_PER_S) /* try larger sizes again after this (RFC 8899) */

size_t tern__conn_packet_overhead(void)
{
    return SHORT_HDR_LEN + TERN__AEAD_TAG_LEN;
}

size_t tern__conn_max_payload(const tern_conn *c)
{
    size_t m = c->pmtu ? c->pmtu : c->ep->s.max_udp_payload;
    if (c->peer_max_udp_payload && c->peer_max_udp_payload < m) m = c->peer_max_udp_payload;
    /* the relay's header rides in front; an introduced peer's connection leaves room for it
     * even on a direct path, since fragments keep their size when retransmitted after a move to
     * the relay */
    if (c->path.relayed || (c->p2p != NULL && c->p2p->probing)) m -= TERN__RELAY_HDR_LEN;
    return m;
}

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
    c->idle_timeout = ep->s.idle_timeout_ns;
    c->last_rx = c->last_tx = now;
    rtt_init(&c->rtt, ep->s.initial_rtt_ns);
    c->next_flow_id = is_server ? 1 : 0;
    c->peer_next_flow = is_server ? 0 : 1;
    c->pacer_wake = TERN_TIME_NEVER;
    c->pmtu = ep->s.max_udp_payload;
    c->pmtu_next = TERN_TIME_NEVER;
    c->peer_flow_window = 64;
    c->peer_max_flows = 4;
    for (int tries = 0;; tries++) {
        tern__ep_rand(ep, c->local_cid, TERN_CID_LEN);
        int rc = tern__map_put(&ep->by_cid, c->local_cid, c);
        if (rc == TERN_OK) break;
        if (rc != TERN_ERR_LIMIT || tries > 8) {
            tern__free(&ep->alloc, c, sizeof(*c));
            return NULL;
        }
    }
    c->all_next = ep->all;
    if (ep->all) ep->all->all_prev = c;
    ep->all = c;
    ep->st.conns_current++;
    if (is_server) ep->st.conns_half_open++;
    return c;
}

static void free_dgrams(tern_conn *c)
{
    while (c->dq_head) {
        tern__dgram *d = c->dq_head;
        c->dq_head = d->next;
        tern__conn_dealloc(c, d, sizeof(*d) + d->len);
    }
    c->dq_tail = NULL;
    c->dq_len = 0;
}

static void release_handshake(tern_conn *c)
{
    tern_endpoint *ep = c->ep;
    if (c->noise) {
        tern__noise_wipe(c->noise);
        tern__free(&ep->alloc, c->noise, sizeof(*c->noise));
        c->noise = NULL;
    }
    if (c->hs_pkt) {
        size_t cap = c->is_server ? c->hs_pkt_len : TERN_MIN_INITIAL_SIZE;
        tern__free(&ep->alloc, c->hs_pkt, cap);
        c->hs_pkt = NULL;
    }
    c->hs_pending = 0;
    if (c->in_initial_map) {
        tern__map_del(&ep->by_initial, c->initial_dcid, c);
        c->in_initial_map = 0;
    }
}

void tern__conn_free(tern_conn *c)
{
    tern_endpoint *ep = c->ep;
    if (c->is_server && c->state == TERN_CONN_HANDSHAKE) ep->st.conns_half_open--;
    tern__flows_free(c); /* releases referenced send buffers: before on_conn_free, the last */
    if (ep->cb.on_conn_free && c->exposed)
        ep->cb.on_conn_free(c, ep->user_data);
    release_handshake(c);
    free_dgrams(c);
    tern__rec_free(c);
    tern__p2p_free(c);
    tern__ep_src_release(c);
    tern__map_del(&ep->by_cid, c->local_cid, c);
    if (c->in_reset_map) tern__map_del(&ep->by_reset, c->peer_reset_token, c);
    tern__heap_set(&ep->timers, &c->timer, TERN_TIME_NEVER);
    if (c->in_send_list) {
        tern_conn **pp = &ep->send_head, *prev = NULL;
        while (*pp && *pp != c) {
            prev = *pp;
            pp = &(*pp)->send_next;
        }
        if (*pp) *pp = c->send_next;
        if (ep->send_tail == c) ep->send_tail = prev;
    }
    if (c->all_prev) c->all_prev->all_next = c->all_next;
    else ep->all = c->all_next;
    if (c->all_next) c->all_next->all_prev = c->all_prev;
    ep->st.conns_current--;
    sodium_memzero(c, sizeof(*c)); /* keys included */
    tern__free(&ep->alloc, c, sizeof(*c));
}

/* Moves the sending direction to its next key and flips its key phase. */
static void update_tx_key(tern_conn *c)
{
    tern__aead next;
    if (tern__aead_next(&next, &c->tx) != TERN_OK) return; /* keep the old key: no worse */
    c->tx = next;
    sodium_memzero(&next, sizeof(next));
    c->tx_phase ^= 1;
    c->tx_phase_packets = 0;
    c->st.key_updates++;
}

int tern__conn_install_keys(tern_conn *c, const uint8_t tx_secret[32], const uint8_t rx_secret[32])
{
    int rc = tern__aead_init(&c->tx, c->aead, tx_secret);
    if (rc == TERN_OK) rc = tern__aead_init(&c->rx, c->aead, rx_secret);
    if (rc == TERN_OK) c->have_keys = 1;
    c->st.aead = c->aead == TERN__WIRE_AES256GCM ? TERN_AEAD_AES256GCM : TERN_AEAD_CHACHA20POLY1305;
    c->st.integrity_only = c->integrity_only;
    return rc;
}

static void report_closed(tern_conn *c, int err, uint64_t code, const uint8_t *reason, size_t len)
{
    tern_endpoint *ep = c->ep;
    /* a server connection the application never saw ends without a word */
    if (c->closed_reported || !c->exposed) return;
    c->closed_reported = 1;
    if (ep->cb.on_closed)
        ep->cb.on_closed(c, err, code, (const char *)reason, len, ep->user_data);
}

static void terminate(tern_conn *c, uint64_t now, int err, uint64_t space, uint64_t code,
                      const uint8_t *reason, size_t reason_len, int mode)
{
    tern_endpoint *ep = c->ep;
    if (c->state >= TERN_CONN_CLOSING) return;
    if (c->state == TERN_CONN_HANDSHAKE && c->is_server) ep->st.conns_half_open--;
    if (err == TERN_ERR_BUDGET) ep->st.conns_closed_budget++;
    if (err == TERN_ERR_NOMEM) ep->st.conns_closed_nomem++;
    if (mode == TERM_SEND_CLOSE && !c->have_keys) mode = TERM_SILENT;
    if (reason_len > TERN__MAX_REASON_LEN) reason_len = TERN__MAX_REASON_LEN;
    c->close_space = space;
    c->close_code = code;
    if (reason_len) memcpy(c->reason, reason, reason_len);
    c->reason_len = reason_len;
    switch (mode) {
    case TERM_SEND_CLOSE:
        c->state = TERN_CONN_CLOSING;
        c->close_pending = 1;
        c->close_deadline = now + 3 * tern__conn_pto(c);
        tern__ep_mark_send(ep, c);
        break;
    case TERM_DRAIN:
        c->state = TERN_CONN_DRAINING;
        c->close_deadline = now + 3 * tern__conn_pto(c);
        break;
    default:
        c->state = TERN_CONN_CLOSED;
        c->close_deadline = now;
        break;
    }
    release_handshake(c);
    free_dgrams(c);
    /* Flows stay until the connection is freed: this may run inside on_message, with the
     * flow being delivered still in use. */
    report_closed(c, err, code, c->reason, c->reason_len);
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
    terminate(c, now, err, TERN__CLOSE_TRANSPORT, tcode, reason, reason_len,
              silent ? TERM_SILENT : TERM_SEND_CLOSE);
}

void tern__conn_established(tern_conn *c, uint64_t now)
{
    tern_endpoint *ep = c->ep;
    if (c->is_server) ep->st.conns_half_open--;
    c->state = TERN_CONN_ESTABLISHED;
    c->st.handshake_ns = now - c->hs_start;
    c->last_rx = c->last_tx = now;
    release_handshake(c);
    if (tern__rec_init(c, now) != TERN_OK) {
        terminate(c, now, TERN_ERR_NOMEM, TERN__CLOSE_TRANSPORT, TERN__TERR_INTERNAL, NULL, 0,
                  TERM_SILENT);
        return;
    }
    c->rec_ready = 1;
    ep->st.handshakes_completed++;
    if (c->is_server) {
        c->hs_done_pending = 1;
        c->exposed = 1;
        if (ep->cb.on_accept && ep->cb.on_accept(c, ep->user_data) < 0) {
            static const char why[] = "refused by server";
            /* on_accept saw the connection: it will hear on_closed and on_conn_free */
            terminate(c, now, TERN_ERR_REFUSED, TERN__CLOSE_TRANSPORT, TERN__TERR_REFUSED,
                      (const uint8_t *)why, sizeof(why) - 1, TERM_SEND_CLOSE);
            return;
        }
    } else {
        /* confirm: the server learns we have the keys; repeated until it answers */
        c->ping_pending = 1;
        c->ping_backoff = tern__conn_pto(c);
    }
    tern__ep_mark_send(ep, c);
    tern__p2p_established(c, now);
    if (!ep->s.no_pmtud) c->pmtu_next = now + c->rtt.srtt; /* once the handshake settled */
    tern__conn_update_timer(c);
    if (ep->cb.on_established) ep->cb.on_established(c, ep->user_data);
}

/* ---------------------------------------------------------------- path MTU discovery */

static uint64_t pmtu_probe_timeout(const tern_conn *c)
{
    return 3 * tern__conn_pto(c) + c->peer_max_ack_delay;
}

/* The next size to probe, or 0 when no size above the current one is left to try. */
static size_t pmtu_candidate(tern_conn *c)
{
    size_t limit = TERN_MAX_DATAGRAM;
    if (c->peer_max_udp_payload && c->peer_max_udp_payload < limit) limit = c->peer_max_udp_payload;
    while ((size_t)c->pmtu_step < PMTU_N) {
        size_t s = PMTU_LADDER[c->pmtu_step];
        if (s > c->pmtu && s <= limit) return s;
        if (s <= c->pmtu) return 0; /* smaller sizes would teach nothing */
        c->pmtu_step++;
    }
    return 0;
}

static void pmtu_timer(tern_conn *c, uint64_t now)
{
    if (c->pmtu_in_flight && now >= c->pmtu_probe_at + pmtu_probe_timeout(c)) {
        c->pmtu_in_flight = 0; /* lost: not a congestion signal, just too large (or unlucky) */
        if (++c->pmtu_fails >= PMTU_TRIES) {
            c->pmtu_fails = 0;
            c->pmtu_step++;
        }
        c->pmtu_next = now;
    }
    if (!c->pmtu_in_flight && now >= c->pmtu_next && c->pmtu_next != TERN_TIME_NEVER) {
        c->pmtu_due = 1;
        c->pmtu_next = TERN_TIME_NEVER;
        tern__ep_mark_send(c->ep, c);
    }
}

/* An ACK frame arrived: did it acknowledge the probe? */
static void pmtu_on_ack(tern_conn *c, uint64_t now, const tern__ack_frame *f)
{
    if (!c->pmtu_in_flight) return;
    for (size_t i = 0; i < f->n; i++) {
        if (c->pmtu_probe_pn < f->r[i].lo || c->pmtu_probe_pn > f->r[i].hi) continue;
        c->pmtu_in_flight = 0;
        c->pmtu = c->pmtu_probe_size;
        c->pmtu_fails = 0;
        /* the ladder runs from the top: the first size that passes is the answer for now */
        c->pmtu_step = 0;
        c->pmtu_next = now + PMTU_RAISE;
        tern__conn_network_changed(c);
        return;
    }
}

/* A padded PING of the next size on the active path (never through a relay). 0 when none is
 * due. The packet is not recorded for loss recovery: its loss says nothing about congestion. */
static int pmtu_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap)
{
    if (!c->pmtu_due || c->state != TERN_CONN_ESTABLISHED) return 0;
    if (c->path.relayed) {
        c->pmtu_due = 0; /* a relay adds a hop we cannot probe; base size there */
        return 0;
    }
    size_t size = pmtu_candidate(c);
    if (size == 0) {
        c->pmtu_due = 0;
        c->pmtu_step = 0;
        c->pmtu_next = now + PMTU_RAISE;
        return 0;
    }
    if (cap < size) return 0;
    uint8_t frames[TERN_MAX_DATAGRAM];
    size_t flen = size - SHORT_HDR_LEN - TERN__AEAD_TAG_LEN;
    memset(frames, 0, flen); /* PADDING */
    if (tern__frame_put_ping(frames, frames + flen, TERN__FRAME_PING, 0) == NULL) return 0;
    uint64_t pn = c->next_pn;
    int n = seal_packet(c, now, out, cap, frames, flen, NULL);
    if (n <= 0) return n;
    c->pmtu_due = 0;
    c->pmtu_in_flight = 1;
    c->pmtu_probe_pn = pn;
    c->pmtu_probe_size = size;
    c->pmtu_probe_at = now;
    tern__conn_update_timer(c);
    return n;
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
        MIN_INTO(c->hs_deadline);
        MIN_INTO(c->hs_retx_at);
        MIN_INTO(tern__p2p_deadline(c));
        break;
    case TERN_CONN_ESTABLISHED:
        MIN_INTO(c->last_rx + c->idle_timeout);
        MIN_INTO(tern__p2p_deadline(c));
        if (c->pmtu_in_flight) MIN_INTO(c->pmtu_probe_at + pmtu_probe_timeout(c));
        else if (!c->pmtu_due) MIN_INTO(c->pmtu_next);
        if (!c->ping_pending) {
            if (c->ping_outstanding) MIN_INTO(c->ping_retx_at);
            else if (c->ep->s.keepalive_ns) MIN_INTO(c->last_tx + c->ep->s.keepalive_ns);
        }
        if (c->rec_ready) {
            if (!c->recp->acks.ack_now) MIN_INTO(c->recp->acks.ack_deadline);
            if (c->recp->probes_pending == 0) MIN_INTO(tern__rec_timer(c));
            MIN_INTO(c->pacer_wake);
        }
        break;
    case TERN_CONN_CLOSING:
    case TERN_CONN_DRAINING:
    case TERN_CONN_CLOSED:
        MIN_INTO(c->close_deadline);
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
        if (c->state == TERN_CONN_CLOSED && now >= c->close_deadline) {
            tern__conn_free(c);
            return;
        }
        tern__p2p_on_timer(c, now);
        break;
    case TERN_CONN_ESTABLISHED:
        if (now >= c->last_rx + c->idle_timeout) {
            terminate(c, now, TERN_ERR_IDLE_TIMEOUT, TERN__CLOSE_TRANSPORT, 0, NULL, 0,
                      TERM_SILENT);
            tern__conn_free(c);
            return;
        }
        if (c->ping_outstanding && now >= c->ping_retx_at) {
            c->ping_pending = 1;
            c->ping_backoff *= 2;
            if (c->ping_backoff > c->ep->s.max_backoff_ns) c->ping_backoff = c->ep->s.max_backoff_ns;
            tern__ep_mark_send(c->ep, c);
        } else if (!c->ping_outstanding && c->ep->s.keepalive_ns &&
                   now >= c->last_tx + c->ep->s.keepalive_ns) {
            c->ping_pending = 1;
            c->ping_backoff = tern__conn_pto(c);
            tern__ep_mark_send(c->ep, c);
        }
        if (c->rec_ready) {
            if (now >= c->recp->acks.ack_deadline) {
                c->recp->acks.ack_now = 1;
                tern__ep_mark_send(c->ep, c);
            }
            if (c->recp->probes_pending == 0 && now >= tern__rec_timer(c)) tern__rec_on_timer(c, now);
            if (now >= c->pacer_wake) {
                c->pacer_wake = TERN_TIME_NEVER;
                tern__ep_mark_send(c->ep, c);
            }
        }
        tern__p2p_on_timer(c, now);
        pmtu_timer(c, now);
        break;
    default:
        if (now >= c->close_deadline) {
            c->state = TERN_CONN_CLOSED;
            tern__conn_free(c);
            return;
        }
        break;
    }
    tern__conn_update_timer(c);
}

/* ---------------------------------------------------------------- receive */

static void send_reset(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                       const tern_addr *remote, const uint8_t cid[TERN_CID_LEN], size_t trigger_len)
{
    uint8_t buf[TERN__RESET_MAX_LEN];
    /* smaller than what provoked it, so two endpoints cannot ping-pong resets forever */
    if (trigger_len <= TERN__RESET_MIN_LEN) return;
    size_t len = trigger_len - 1 < sizeof(buf) ? trigger_len - 1 : sizeof(buf);
    if (tern__rl_take(&ep->err_limit, remote, now) != TERN_OK) return;
    tern__ep_rand(ep, buf, len - TERN__RESET_TOKEN_LEN);
    buf[0] = (uint8_t)((buf[0] & ~(TERN__HDR_LONG)) | TERN__HDR_FIXED);
    tern__reset_token(ep, cid, buf + len - TERN__RESET_TOKEN_LEN);
    if (tern__ep_queue_stateless(ep, local, remote, buf, len) == TERN_OK) ep->st.resets_sent++;
}

static int check_reset(tern_endpoint *ep, uint64_t now, const uint8_t *pkt, size_t len)
{
    if (len < TERN__RESET_MIN_LEN) return 0;
    tern_conn *c = tern__map_get(&ep->by_reset, pkt + len - TERN__RESET_TOKEN_LEN);
    if (c == NULL || c->state >= TERN_CONN_CLOSING) return 0;
    ep->st.resets_received++;
    terminate(c, now, TERN_ERR_STATELESS_RESET, TERN__CLOSE_TRANSPORT, 0, NULL, 0, TERM_DRAIN);
    return 1;
}

static int process_frames(tern_conn *c, uint64_t now, const uint8_t *p, const uint8_t *end,
                          int *eliciting, int *probing_only)
{
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
            pmtu_on_ack(c, now, &af);
            if (tern__rec_on_ack(c, &af, now) != TERN_OK) return TERN_ERR_PROTOCOL;
            continue;
        }
        if (type >= TERN__FRAME_FLOW_DATA && type <= TERN__FRAME_FLOW_FIN) {
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
            tern__p2p_on_challenge(c, now, f.id);
            break;
        case TERN__FRAME_PATH_RESPONSE:
            tern__p2p_on_response(c, now, f.id);
            break;
        case TERN__FRAME_PING:
            if (c->n_pongs < TERN__MAX_PONGS) c->pongs[c->n_pongs++] = f.id;
            else c->pongs[TERN__MAX_PONGS - 1] = f.id;
            tern__ep_mark_send(ep, c);
            break;
        case TERN__FRAME_PONG:
            if (c->ping_outstanding && f.id == c->ping_id) {
                c->ping_outstanding = 0;
                rtt_update(&c->rtt, now - c->ping_sent_at);
                if (ep->cb.on_rtt) ep->cb.on_rtt(c, c->rtt.latest, ep->user_data);
            }
            break;
        case TERN__FRAME_HANDSHAKE_DONE:
            if (c->is_server) return TERN_ERR_PROTOCOL;
            c->confirmed = 1;
            break;
        case TERN__FRAME_CLOSE: {
            /* a server whose application refused us says so with transport error REFUSED */
            int why = f.close_space == TERN__CLOSE_TRANSPORT && f.close_code == TERN__TERR_REFUSED
                          ? TERN_ERR_REFUSED
                          : TERN_ERR_PEER_CLOSED;
            terminate(c, now, why, f.close_space, f.close_code, f.data, f.data_len, TERM_DRAIN);
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

int tern__conn_recv_short(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                          const tern_addr *remote, const uint8_t *pkt, size_t len)
{
    tern__short_hdr h;
    int rc = tern__short_decode(pkt, len, &h);
    tern_conn *c = rc == TERN_OK ? tern__map_get(&ep->by_cid, h.dcid) : NULL;
    if (c == NULL || !c->have_keys) {
        if (check_reset(ep, now, pkt, len)) return TERN_OK;
        if (rc != TERN_OK) return rc;
        if (c == NULL) {
            send_reset(ep, now, local, remote, h.dcid, len);
            return TERN_ERR_UNKNOWN_CID;
        }
        return TERN_ERR_IGNORED; /* client still handshaking: nothing can be opened yet */
    }
    if (c->state == TERN_CONN_DRAINING || c->state == TERN_CONN_CLOSED) return TERN_ERR_IGNORED;

    uint64_t pn = tern__pn_decode(c->replay.largest, c->replay.have, h.pn_truncated, h.pn_len);
    if (tern__replay_check(&c->replay, pn) != TERN_OK) {
        c->st.drop_replay++;
        return TERN_ERR_REPLAY;
    }
    uint8_t plain[TERN_MAX_DATAGRAM];
    size_t ct_len = len - h.hdr_len;
    uint8_t *frames = plain;
    /* key phase: the other phase on a packet newer than this phase's first is the peer's key
     * update (try the next key); on an older one it is a late packet under the old key, which
     * is gone (the data in it is retransmitted) */
    const tern__aead *key = &c->rx;
    tern__aead next;
    int phase = (h.flags & TERN__SHORT_KEY_PHASE) != 0, rotating = 0;
    if (phase != c->rx_phase) {
        if (pn < c->rx_phase_first) {
            c->st.drop_auth++;
            return TERN_ERR_AUTH;
        }
        if (tern__aead_next(&next, &c->rx) != TERN_OK) return TERN_ERR_AUTH;
        key = &next;
        rotating = 1;
    }
    if (c->integrity_only) {
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
        c->rx = next;
        sodium_memzero(&next, sizeof(next));
        c->rx_phase = phase;
        c->rx_phase_first = pn;
        if (c->tx_phase != phase) update_tx_key(c); /* answer the peer's update */
    }
    size_t plain_len = ct_len - TERN__AEAD_TAG_LEN;
    int newest = !c->replay.have || pn > c->replay.largest;
    tern__replay_mark(&c->replay, pn);
    c->last_rx = now;
    c->st.rx_packets++;
    c->st.rx_bytes += len;
    /* which path did it come on? A new source address is a candidate until validated */
    int rxc = tern__p2p_rx_path(c, now, local, remote, ep->rx_relayed, ep->rx_channel);
    if (rxc == -1) {
        c->path.rx_bytes += len;
        c->path.await_since = 0; /* the path works */
    } else if (rxc >= 0) tern__p2p_rx_bytes(c, rxc, len);

    if (h.flags & TERN__SHORT_RESERVED) {
        tern__conn_terminate(c, now, TERN_ERR_PROTOCOL, 0, NULL, 0, 0);
        return TERN_ERR_PROTOCOL;
    }
    if (c->state == TERN_CONN_CLOSING) {
        if (c->close_sends < MAX_CLOSE_SENDS) {
            c->close_pending = 1;
            tern__ep_mark_send(ep, c);
        }
        return TERN_OK;
    }
    if (c->state == TERN_CONN_HANDSHAKE) {
        /* server: the client has our Response, so it receives at its address (the one this
         * packet came from, when a copy of the Response went there too) */
        if (rxc >= 0) tern__p2p_hs_adopt(c, rxc);
        c->path.validated = 1;
        tern__conn_established(c, now);
        if (c->state != TERN_CONN_ESTABLISHED) return TERN_OK;
    }
    if (!c->is_server) c->confirmed = 1;
    int out_of_order = tern__ackset_add(&c->recp->acks, pn, now);
    int eliciting = 0, probing_only = 1;
    rc = process_frames(c, now, frames, frames + plain_len, &eliciting, &probing_only);
    if (rc == TERN_OK) tern__p2p_on_rx_done(c, now, newest, probing_only);
    c->rx_cand = -1;
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
    /* ACK policy: every ack_every ack-eliciting packets, at once on a gap (a NACK), or after
     * max_ack_delay */
    if (eliciting) {
        tern__ackset *a = &c->recp->acks;
        a->unacked_eliciting++;
        if (out_of_order || a->unacked_eliciting >= c->ep->s.ack_every) a->ack_now = 1;
        else if (a->ack_deadline == TERN_TIME_NEVER)
            a->ack_deadline = now + c->ep->s.max_ack_delay_ns;
        if (a->ack_now) tern__ep_mark_send(ep, c);
    }
    tern__conn_update_timer(c);
    return TERN_OK;
}

/* ---------------------------------------------------------------- send */

static int seal_packet(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const uint8_t *frames,
                       size_t frames_len, uint64_t *pn_out)
{
    size_t total = SHORT_HDR_LEN + frames_len + TERN__AEAD_TAG_LEN;
    if (total > cap) return 0;
    uint64_t pn = c->next_pn++;
    uint8_t *p = tern__short_encode(out, out + cap, c->tx_phase, c->remote_cid, pn, PN_LEN);
    if (p == NULL) return 0;
    int rc;
    if (c->integrity_only) {
        memcpy(p, frames, frames_len);
        rc = tern__aead_seal(&c->tx, pn, 1, out, SHORT_HDR_LEN, p, frames_len, p);
    } else {
        rc = tern__aead_seal(&c->tx, pn, 0, out, SHORT_HDR_LEN, frames, frames_len, p);
    }
    if (rc != TERN_OK) return 0;
    c->last_tx = now;
    c->st.tx_packets++;
    c->st.tx_bytes += total;
    if (pn_out) *pn_out = pn;
    /* enough under this key: the next packet goes out under the next one, once the peer
     * answered under the current one (so it can tell old from new) */
    if (++c->tx_phase_packets >= c->ep->s.key_update_packets && c->tx_phase == c->rx_phase &&
        c->replay.have && c->replay.largest >= c->rx_phase_first)
        update_tx_key(c);
    return (int)total;
}

int tern__conn_seal(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const uint8_t *frames,
                    size_t frames_len)
{
    return seal_packet(c, now, out, cap, frames, frames_len, NULL);
}

/* May data go out now? Congestion window and pacer (probes ignore both). */
static int data_allowed(tern_conn *c, uint64_t now, size_t bytes)
{
    tern__recovery *r = c->recp;
    if (r->probes_pending) return 1;
    if (r->bytes_in_flight + bytes > r->cc.ops->cwnd(r->cc.st)) return 0;
    tern__pacer_set_rate(&r->pacer, r->cc.ops->pacing_rate(r->cc.st, c->rtt.srtt),
                         tern__conn_max_payload(c));
    uint64_t t = tern__pacer_next(&r->pacer, now, bytes);
    if (t > now) {
        c->pacer_wake = t;
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
    int n = pmtu_write(c, now, out + hdr, cap - hdr);
    if (n == 0) n = write_active(c, now, out + hdr, cap - hdr);
    if (n <= 0) return n;
    if (hdr) {
        out[0] = TERN__RELAY_TYPE;
        memcpy(out + 1, c->path.channel, TERN_RELAY_CHANNEL_LEN);
    }
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
        if (!c->close_pending) return 0;
        c->close_pending = 0;
        c->close_sends++;
        p = tern__frame_put_close(p, end, c->close_space, c->close_code, c->reason, c->reason_len);
        return p ? seal_packet(c, now, out, cap, frames, (size_t)(p - frames), NULL) : 0;
    case TERN_CONN_ESTABLISHED:
        break;
    default:
        return 0;
    }
    if (tern__rec_reserve(c, c->next_pn) != TERN_OK) return 0;

    tern__sent rec;
    memset(&rec, 0, sizeof(rec));
    rec.pn = c->next_pn;
    int eliciting = 0, ack_written = 0;
    uint8_t *q;
    tern__ackset *acks = &c->recp->acks;
    /* an ACK rides on every packet while something is unacknowledged */
    if (acks->n > 0 && (acks->ack_now || now >= acks->ack_deadline || acks->unacked_eliciting)) {
        q = tern__ack_encode(acks, now, p, end);
        if (q != NULL) {
            p = q;
            ack_written = 1;
        }
    }
    if (c->path_response_due &&
        (q = tern__frame_put_path(p, end, TERN__FRAME_PATH_RESPONSE, c->path_response)) != NULL) {
        p = q;
        c->path_response_due = 0;
        eliciting = 1;
    }
    if (c->hs_done_pending && (q = tern__put_varint(p, end, TERN__FRAME_HANDSHAKE_DONE)) != NULL) {
        p = q;
        c->hs_done_pending = 0;
        rec.hs_done = 1;
        eliciting = 1;
    }
    while (c->n_pongs > 0 &&
           (q = tern__frame_put_ping(p, end, TERN__FRAME_PONG, c->pongs[0])) != NULL) {
        p = q;
        memmove(c->pongs, c->pongs + 1, (c->n_pongs - 1) * sizeof(c->pongs[0]));
        c->n_pongs--;
        eliciting = 1;
    }
    if (c->ping_pending &&
        (q = tern__frame_put_ping(p, end, TERN__FRAME_PING, c->ping_id + 1)) != NULL) {
        p = q;
        c->ping_id++;
        c->ping_pending = 0;
        c->ping_outstanding = 1;
        c->ping_sent_at = now;
        if (c->ping_backoff == 0) c->ping_backoff = tern__conn_pto(c);
        c->ping_retx_at = now + c->ping_backoff;
        rec.ping = 1;
        eliciting = 1;
    }
    uint8_t *before = p;
    p = tern__flow_write_control(c, p, end, &rec);
    if (p != before) eliciting = 1;

    /* application data: under the congestion window and the pacer */
    int want_data = c->dq_head != NULL || tern__flow_has_data(c, now);
    if (want_data && data_allowed(c, now, limit)) {
        before = p;
        p = tern__flow_write_data(c, now, p, end, &rec);
        while (c->dq_head != NULL) {
            tern__dgram *d = c->dq_head;
            q = tern__frame_put_datagram(p, end, d->data, d->len);
            if (q == NULL) break;
            p = q;
            c->dq_head = d->next;
            if (c->dq_head == NULL) c->dq_tail = NULL;
            c->dq_len--;
            c->st.datagrams_sent++;
            tern__conn_dealloc(c, d, sizeof(*d) + d->len);
        }
        if (p != before) eliciting = 1;
    } else if (!want_data && now > c->last_give_up + c->rtt.srtt) {
        /* nothing to send although the window may allow: later samples are app-limited. Not
         * so while messages are being given up for lack of time: that sender is limited by
         * the network, however empty its queue looks for a moment. */
        if (c->recp->bytes_in_flight < c->recp->cc.ops->cwnd(c->recp->cc.st))
            tern__rate_on_app_limited(&c->recp->rate, c->recp->bytes_in_flight);
    }
    if (c->recp->probes_pending && !eliciting) {
        if ((q = tern__frame_put_ping(p, end, TERN__FRAME_PING, ++c->ping_id)) != NULL) {
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
    int n = seal_packet(c, now, out, cap, frames, (size_t)(p - frames), &pn);
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
        tern__rec_on_sent(c, &rec, now);
        if (c->recp->probes_pending) c->recp->probes_pending--;
    }
    tern__conn_update_timer(c);
    return n;
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
    memcpy(c->server_pub, server_pub, TERN_KEY_LEN);
    tern__ep_rand(ep, c->initial_dcid, TERN_CID_LEN);
    memcpy(c->remote_cid, c->initial_dcid, TERN_CID_LEN);
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
    if (c->dq_len >= c->ep->s.max_datagram_queue) {
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
    if (c->dq_tail) c->dq_tail->next = d;
    else c->dq_head = d;
    c->dq_tail = d;
    c->dq_len++;
    tern__ep_mark_send(c->ep, c);
    return TERN_OK;
}

int tern_conn_ping(tern_conn *c, uint64_t now)
{
    (void)now;
    if (c == NULL) return TERN_ERR_INVALID_ARG;
    if (c->state != TERN_CONN_ESTABLISHED) return TERN_ERR_STATE;
    c->ping_pending = 1;
    c->ping_backoff = tern__conn_pto(c);
    tern__ep_mark_send(c->ep, c);
    tern__conn_update_timer(c);
    return TERN_OK;
}

int tern_conn_close(tern_conn *c, uint64_t now, uint64_t app_code, const char *reason,
                    size_t reason_len)
{
    if (c == NULL || (reason == NULL && reason_len > 0)) return TERN_ERR_INVALID_ARG;
    if (c->state >= TERN_CONN_CLOSING) return TERN_ERR_STATE;
    terminate(c, now, TERN_ERR_LOCAL_CLOSED, TERN__CLOSE_APPLICATION, app_code,
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
    if (!c->peer_known) return TERN_ERR_STATE;
    memcpy(pub, c->peer_static, TERN_KEY_LEN);
    return TERN_OK;
}

int tern_conn_peer_id(const tern_conn *c, uint8_t id[TERN_PEER_ID_LEN])
{
    if (!c->peer_known) return TERN_ERR_STATE;
    tern_peer_id(c->peer_static, id);
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
    st->srtt_ns = c->rtt.srtt;
    st->rttvar_ns = c->rtt.rttvar;
    st->min_rtt_ns = c->rtt.min;
    st->latest_rtt_ns = c->rtt.latest;
}
