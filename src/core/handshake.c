/*
 * The handshake packets (long headers): the client's Initial, the server's Response, and the
 * stateless Retry, Reject and version negotiation replies.
 *
 * The server checks the cheap things first and allocates nothing until they pass: datagram size
 * (an Initial is padded to 1200 bytes), version, the key hint and mac1 (a keyed hash anyone who
 * knows the server's public key can make: it stops random junk before any public-key work),
 * a retry token when too many handshakes are half-open, and a per-source rate limit. Only then
 * does it run the Noise message (three X25519 operations) and create a connection.
 *
 * Until the client proves it receives at its address (its first 1-RTT packet, or a valid retry
 * token), the server sends at most three times the bytes it received from that address. An
 * Initial that came over a stream (TCP, TLS) needs neither: the TCP handshake proved the address,
 * so that path is validated at once and no retry token is asked for. Stateless replies go back
 * the way the Initial came, the stream included.
 */
#include <sodium.h>
#include <string.h>

#include "core/conn.h"

#define PROLOGUE_LEN (6 + 4 + 2 * TERN_CID_LEN)

static void make_prologue(uint8_t out[PROLOGUE_LEN], uint32_t version,
                          const uint8_t dcid[TERN_CID_LEN], const uint8_t scid[TERN_CID_LEN])
{
    memcpy(out, "tern/1", 6);
    tern__put_u32(out + 6, out + PROLOGUE_LEN, version);
    memcpy(out + 10, dcid, TERN_CID_LEN);
    memcpy(out + 10 + TERN_CID_LEN, scid, TERN_CID_LEN);
}

static size_t offer_aeads(const tern_endpoint *ep, uint8_t out[4])
{
    size_t n = 0;
    switch (ep->s.aead) {
    case TERN_AEAD_AES256GCM:
        if (ep->aes_hw) out[n++] = TERN__WIRE_AES256GCM;
        out[n++] = TERN__WIRE_CHACHA20POLY1305;
        break;
    case TERN_AEAD_CHACHA20POLY1305:
        out[n++] = TERN__WIRE_CHACHA20POLY1305;
        if (ep->aes_hw) out[n++] = TERN__WIRE_AES256GCM;
        break;
    default:
        if (ep->aes_hw) out[n++] = TERN__WIRE_AES256GCM;
        out[n++] = TERN__WIRE_CHACHA20POLY1305;
        break;
    }
    return n;
}

static void local_tparams(const tern_conn *c, tern__tparams *tp)
{
    const tern_endpoint *ep = c->ep;
    memset(tp, 0, sizeof(*tp));
    tp->idle_timeout_ms = ep->s.idle_timeout_ns / TERN_NS_PER_MS;
    tp->max_udp_payload = TERN_MAX_DATAGRAM; /* what we accept; what we send is discovered */
    tp->max_datagram_frame = TERN_MAX_DATAGRAM;
    tp->has_reset_token = 1;
    tern__reset_token(ep, c->local_cid, tp->reset_token);
    tp->has_cid = 1;
    memcpy(tp->cid, c->local_cid, TERN_CID_LEN);
    tp->flow_window = ep->s.flow_window;
    tp->max_flows = ep->s.max_flows;
    tp->max_ack_delay_ms = ep->s.max_ack_delay_ns / TERN_NS_PER_MS;
}

/* Applies the peer's transport parameters common to both sides. */
static void apply_peer_tparams(tern_conn *c, const tern__tparams *tp)
{
    if (tp->idle_timeout_ms > 0) {
        uint64_t peer = tp->idle_timeout_ms * TERN_NS_PER_MS;
        if (peer < c->live.idle_timeout) c->live.idle_timeout = peer;
    }
    c->peer.max_udp_payload = tp->max_udp_payload;
    c->peer.flow_window = tp->flow_window;
    c->peer.max_flows = tp->max_flows;
    c->peer.max_ack_delay = tp->max_ack_delay_ms * TERN_NS_PER_MS;
    if (tp->has_reset_token) {
        memcpy(c->peer.reset_token, tp->reset_token, TERN__RESET_TOKEN_LEN);
        c->peer.has_reset_token = 1;
        if (tern__map_put(&c->ep->by_reset, c->peer.reset_token, c) == TERN_OK)
            c->peer.in_reset_map = 1;
    }
}

/* ---------------------------------------------------------------- client */

static int build_initial(tern_conn *c)
{
    tern_endpoint *ep = c->ep;
    uint8_t prologue[PROLOGUE_LEN], tpbuf[TERN__MAX_HS_PAYLOAD], e_priv[32];
    tern__tparams tp;
    local_tparams(c, &tp);
    tp.n_aeads = offer_aeads(ep, tp.aeads);
    tp.integrity_only = ep->s.integrity_only ? 1 : 0;
    int tplen = tern__tparams_encode(&tp, tpbuf, sizeof(tpbuf));
    if (tplen < 0) return tplen;

    if (c->hs.noise == NULL) {
        c->hs.noise = tern__malloc(&ep->alloc, sizeof(*c->hs.noise));
        if (c->hs.noise == NULL) return TERN_ERR_NOMEM;
    }
    if (c->hs.pkt == NULL) {
        c->hs.pkt = tern__malloc(&ep->alloc, TERN_MIN_INITIAL_SIZE);
        if (c->hs.pkt == NULL) return TERN_ERR_NOMEM;
    }
    make_prologue(prologue, TERN__VERSION_1, c->hs.initial_dcid, c->local_cid);
    tern__noise_init(c->hs.noise, prologue, sizeof(prologue), c->hs.server_pub);

    uint8_t *pkt = c->hs.pkt, *end = pkt + TERN_MIN_INITIAL_SIZE, *p;
    uint8_t hint[TERN__KEY_HINT_LEN], mac1_key[32];
    tern__key_hint(c->hs.server_pub, hint);
    p = tern__long_encode_prefix(pkt, end, TERN__PKT_INITIAL, TERN__VERSION_1, c->hs.initial_dcid,
                                 c->local_cid);
    p = tern__put_bytes(p, end, hint, sizeof(hint));
    p = tern__put_varint(p, end, c->hs.token_len);
    p = tern__put_bytes(p, end, c->hs.token, c->hs.token_len);
    p = tern__put_varint(p, end, TERN__NOISE_MSG1_FIXED + (size_t)tplen);
    if (p == NULL) return TERN_ERR_BUFFER;
    tern__ep_rand(ep, e_priv, sizeof(e_priv));
    /* -> e, es, s, ss, payload */
    int n = tern__noise_write_msg1(c->hs.noise, &ep->static_key, e_priv, tpbuf, (size_t)tplen, p,
                                   (size_t)(end - p));
    sodium_memzero(e_priv, sizeof(e_priv));
    if (n < 0) return n;
    p += n;
    if ((size_t)(end - p) < TERN__MAC1_LEN) return TERN_ERR_BUFFER;
    tern__mac1_key(c->hs.server_pub, mac1_key);
    tern__mac16(p, mac1_key, pkt, (size_t)(p - pkt), NULL, 0);
    p += TERN__MAC1_LEN;
    memset(p, 0, (size_t)(end - p)); /* padding to 1200 bytes */
    c->hs.pkt_len = TERN_MIN_INITIAL_SIZE;
    c->hs.pending = 1;
    tern__ep_mark_send(ep, c);
    return TERN_OK;
}

int tern__hs_client_start(tern_conn *c, uint64_t now)
{
    int rc = build_initial(c);
    if (rc != TERN_OK) return rc;
    c->hs.start = now;
    c->hs.deadline = now + c->ep->s.handshake_timeout_ns;
    c->hs.backoff = tern__rec_rtt_pto(c);
    c->hs.retx_at = now + c->hs.backoff;
    c->ep->st.handshakes_started++;
    tern__conn_update_timer(c);
    return TERN_OK;
}

static int client_on_response(tern_conn *c, const tern__rx *rx, const tern__long_hdr *h)
{
    uint64_t now = rx->now;
    tern_endpoint *ep = c->ep;
    uint8_t payload[TERN__MAX_HS_PAYLOAD], i2r[32], r2i[32];
    size_t plen = 0;
    tern__tparams tp;
    if (c->state != TERN_CONN_HANDSHAKE || c->hs.noise == NULL) return TERN_ERR_IGNORED;
    /* <- e, ee, se, payload (on a copy: a damaged header must not spoil the state) */
    tern__noise saved = *c->hs.noise;
    int rc = tern__noise_read_msg2(c->hs.noise, &ep->static_key, h->body, h->body_len, payload,
                                   sizeof(payload), &plen);
    if (rc == TERN_OK) rc = tern__tparams_decode(payload, plen, &tp);
    if (rc == TERN_OK && (!tp.has_cid || memcmp(tp.cid, h->scid, TERN_CID_LEN) != 0))
        rc = TERN_ERR_AUTH; /* the unauthenticated SCID was changed in transit */
    if (rc != TERN_OK) {
        *c->hs.noise = saved;
        sodium_memzero(&saved, sizeof(saved));
        c->hs.auth_failures++;
        return TERN_ERR_AUTH;
    }
    sodium_memzero(&saved, sizeof(saved));
    if (tp.n_aeads != 1) rc = TERN_ERR_MALFORMED;
    if (rc == TERN_OK) {
        uint8_t offered[4];
        size_t n = offer_aeads(ep, offered);
        rc = TERN_ERR_MALFORMED;
        for (size_t i = 0; i < n; i++)
            if (offered[i] == tp.aeads[0]) rc = TERN_OK;
        if (tp.integrity_only && !ep->s.integrity_only) rc = TERN_ERR_MALFORMED;
    }
    if (rc != TERN_OK) {
        /* The server proved its key but sent nonsense: a protocol error, not a forgery. */
        tern__noise_wipe(c->hs.noise);
        tern__conn_terminate(c, now, TERN_ERR_PROTOCOL, 0, NULL, 0, 1);
        return rc;
    }
    tern__noise_split(c->hs.noise, i2r, r2i);
    c->keys.aead = tp.aeads[0];
    c->keys.integrity_only = tp.integrity_only;
    memcpy(c->remote_cid, h->scid, TERN_CID_LEN);
    memcpy(c->peer.static_pub, c->hs.server_pub, TERN_KEY_LEN);
    c->peer.known = 1;
    apply_peer_tparams(c, &tp);
    rc = tern__conn_install_keys(c, i2r, r2i);
    sodium_memzero(i2r, sizeof(i2r));
    sodium_memzero(r2i, sizeof(r2i));
    if (rc != TERN_OK) {
        tern__conn_terminate(c, now, rc, 0, NULL, 0, 1);
        return rc;
    }
    c->path.validated = 1;
    tern__p2p_client_response(c, rx);
    tern__conn_established(c, now);
    return TERN_OK;
}

static int client_on_retry(tern_conn *c, uint64_t now, const tern__long_hdr *h)
{
    if (c->state != TERN_CONN_HANDSHAKE || c->hs.noise == NULL ||
        c->hs.retries >= TERN__MAX_RETRIES)
        return TERN_ERR_IGNORED;
    if (memcmp(h->odcid, c->hs.initial_dcid, TERN_CID_LEN) != 0) return TERN_ERR_IGNORED;
    if (h->token_len > sizeof(c->hs.token)) return TERN_ERR_MALFORMED;
    memcpy(c->hs.token, h->token, h->token_len);
    c->hs.token_len = h->token_len;
    c->hs.retries++;
    c->hs.tx_since_retry = 0;
    int rc = build_initial(c);
    if (rc != TERN_OK) return rc;
    c->hs.backoff = tern__rec_rtt_pto(c);
    c->hs.retx_at = now + c->hs.backoff;
    tern__conn_update_timer(c);
    return TERN_OK;
}

static int client_on_reject(tern_conn *c, uint64_t now, const tern__long_hdr *h)
{
    uint8_t hint[TERN__KEY_HINT_LEN];
    if (c->state != TERN_CONN_HANDSHAKE) return TERN_ERR_IGNORED;
    if (memcmp(h->scid, c->hs.initial_dcid, TERN_CID_LEN) != 0) return TERN_ERR_IGNORED;
    if (h->reject_code == TERN__REJECT_WRONG_KEY) {
        /* Only believe it when the server names a key other than the one we pinned: if our own
         * Initial was damaged in transit, the server names our key and we keep trying. */
        tern__key_hint(c->hs.server_pub, hint);
        if (memcmp(hint, h->key_hint, sizeof(hint)) == 0) return TERN_ERR_IGNORED;
        tern__conn_terminate(c, now, TERN_ERR_BAD_SERVER_KEY, 0, NULL, 0, 1);
        return TERN_OK;
    }
    if (h->reject_code == TERN__REJECT_REFUSED) {
        tern__conn_terminate(c, now, TERN_ERR_REFUSED, 0, NULL, 0, 1);
        return TERN_OK;
    }
    return TERN_ERR_MALFORMED;
}

static int client_on_version_negotiation(tern_conn *c, uint64_t now, const tern__long_hdr *h)
{
    if (c->state != TERN_CONN_HANDSHAKE) return TERN_ERR_IGNORED;
    if (memcmp(h->scid, c->hs.initial_dcid, TERN_CID_LEN) != 0) return TERN_ERR_IGNORED;
    for (size_t i = 0; i < h->n_versions; i++) {
        uint32_t v = 0;
        tern__get_u32(h->versions + 4 * i, h->versions + 4 * i + 4, &v);
        if (v == TERN__VERSION_1) return TERN_ERR_IGNORED; /* forged: the server speaks ours */
    }
    tern__conn_terminate(c, now, TERN_ERR_NO_VERSION, 0, NULL, 0, 1);
    return TERN_OK;
}

/* ---------------------------------------------------------------- server: stateless replies */

static void send_version_negotiation(tern_endpoint *ep, const tern__rx *rx,
                                     const tern__long_hdr *h)
{
    uint8_t buf[TERN__LONG_HDR_LEN + 4], r;
    tern__ep_rand(ep, &r, 1);
    uint8_t *p = tern__long_encode_prefix(buf, buf + sizeof(buf), 0, TERN__VERSION_NEGOTIATION,
                                          h->scid, h->dcid);
    buf[0] = (uint8_t)(TERN__HDR_LONG | TERN__HDR_FIXED | (r & 0x3f));
    p = tern__put_u32(p, buf + sizeof(buf), TERN__VERSION_1);
    if (tern__ep_reply_stateless(ep, rx, buf, (size_t)(p - buf)) == TERN_OK)
        ep->st.version_negotiations_sent++;
}

static void send_reject(tern_endpoint *ep, const tern__rx *rx, const tern__long_hdr *h,
                        uint64_t code)
{
    uint8_t buf[TERN__LONG_HDR_LEN + 8 + TERN__KEY_HINT_LEN];
    uint8_t *end = buf + sizeof(buf);
    uint8_t *p = tern__long_encode_prefix(buf, end, TERN__PKT_REJECT, TERN__VERSION_1, h->scid,
                                          h->dcid);
    p = tern__put_varint(p, end, code);
    p = tern__put_bytes(p, end, ep->key_hint, TERN__KEY_HINT_LEN);
    if (p && tern__ep_reply_stateless(ep, rx, buf, (size_t)(p - buf)) == TERN_OK)
        ep->st.rejects_sent++;
}

static void token_mac(const tern_endpoint *ep, uint8_t out[16], const uint8_t ts[8],
                      const tern_addr *remote, const tern__long_hdr *h)
{
    uint8_t in[8 + 1 + 16 + 2 + 2 * TERN_CID_LEN];
    memcpy(in, ts, 8);
    in[8] = remote->family;
    memcpy(in + 9, remote->ip, 16);
    in[25] = (uint8_t)(remote->port >> 8);
    in[26] = (uint8_t)remote->port;
    memcpy(in + 27, h->scid, TERN_CID_LEN);
    memcpy(in + 27 + TERN_CID_LEN, h->dcid, TERN_CID_LEN);
    tern__mac16(out, ep->cookie_key, in, sizeof(in), NULL, 0);
}

static void send_retry(tern_endpoint *ep, const tern__rx *rx, const tern__long_hdr *h)
{
    uint8_t token[TERN__TOKEN_LEN] = {0}; /* (gcc -O0 thinks put_u64 reads it) */
    uint8_t buf[TERN__LONG_HDR_LEN + TERN_CID_LEN + 1 + TERN__TOKEN_LEN], *end = buf + sizeof(buf);
    tern__put_u64(token, token + 8, rx->now);
    token_mac(ep, token + 8, token, rx->remote, h);
    uint8_t *p = tern__long_encode_prefix(buf, end, TERN__PKT_RETRY, TERN__VERSION_1, h->scid,
                                          h->dcid);
    p = tern__put_bytes(p, end, h->dcid, TERN_CID_LEN);
    p = tern__put_varint(p, end, sizeof(token));
    p = tern__put_bytes(p, end, token, sizeof(token));
    if (p && tern__ep_reply_stateless(ep, rx, buf, (size_t)(p - buf)) == TERN_OK)
        ep->st.retries_sent++;
}

static int token_valid(const tern_endpoint *ep, uint64_t now, const tern_addr *remote,
                       const tern__long_hdr *h)
{
    uint8_t mac[16];
    uint64_t ts;
    if (h->token_len != TERN__TOKEN_LEN) return 0;
    tern__get_u64(h->token, h->token + 8, &ts);
    token_mac(ep, mac, h->token, remote, h);
    if (sodium_memcmp(mac, h->token + 8, sizeof(mac)) != 0) return 0;
    if (ts > now || now - ts > TERN__RETRY_TOKEN_LIFETIME) return 0;
    return 1;
}

/* ---------------------------------------------------------------- server: Initial */

static int choose_aead(const tern_endpoint *ep, const tern__tparams *tp)
{
    for (size_t i = 0; i < tp->n_aeads; i++) {
        if (tp->aeads[i] == TERN__WIRE_AES256GCM && ep->aes_hw &&
            ep->s.aead != TERN_AEAD_CHACHA20POLY1305)
            return TERN__WIRE_AES256GCM;
        if (tp->aeads[i] == TERN__WIRE_CHACHA20POLY1305 && ep->s.aead != TERN_AEAD_AES256GCM)
            return TERN__WIRE_CHACHA20POLY1305;
    }
    /* our preference excluded everything the client offered: take what we can run */
    for (size_t i = 0; i < tp->n_aeads; i++) {
        if (tp->aeads[i] == TERN__WIRE_CHACHA20POLY1305) return TERN__WIRE_CHACHA20POLY1305;
        if (tp->aeads[i] == TERN__WIRE_AES256GCM && ep->aes_hw) return TERN__WIRE_AES256GCM;
    }
    return -1;
}

static int server_on_initial(tern_endpoint *ep, const tern__rx *rx, const uint8_t *pkt,
                             size_t len, const tern__long_hdr *h)
{
    uint64_t now = rx->now;
    const tern_addr *remote = rx->remote;
    uint8_t mac[TERN__MAC1_LEN];

    /* a retransmitted Initial of a handshake in progress: resend the Response */
    tern_conn *c = tern__map_get(&ep->by_initial, h->dcid);
    if (c != NULL && c->state != TERN_CONN_HANDSHAKE) {
        /* the connection of that Initial is established (it keeps its entry): a copy over
         * another transport is the slow side of the client's race of UDP and a stream
         * (docs/protocol.md 9.7), ignored; a copy over the same one is handled as any new
         * Initial (a replay cannot complete the handshake) */
        if (c->state == TERN_CONN_ESTABLISHED &&
            rx->remote->transport != c->path.remote.transport)
            return TERN_ERR_IGNORED;
        c = NULL;
    }
    if (c != NULL) {
        if (!tern__path_is(&c->path, remote, rx->relayed, rx->channel)) {
            /* the same Initial from another address: a replay that beat the client's own copy
             * must not lock the client out, so every such address that passes mac1 gets the
             * Response within its own 3x budget; the client's first 1-RTT packet picks the path
             * (tern__p2p_hs_adopt) */
            if (memcmp(h->key_hint, ep->key_hint, TERN__KEY_HINT_LEN) != 0) return TERN_ERR_AUTH;
            tern__mac16(mac, ep->mac1_key, pkt, h->mac1_covered, NULL, 0);
            if (sodium_memcmp(mac, h->mac1, sizeof(mac)) != 0) return TERN_ERR_AUTH;
            int rc = tern__p2p_hs_copy(c, rx, len);
            return rc == TERN_ERR_LIMIT ? TERN_ERR_IGNORED : rc;
        }
        c->path.rx_bytes += len;
        c->hs.pending = 1;
        tern__ep_mark_send(ep, c);
        return TERN_OK;
    }
    if (!ep->is_server) return TERN_ERR_IGNORED;

    /* mac1 (cheap): is this Initial meant for our key, and undamaged? */
    if (memcmp(h->key_hint, ep->key_hint, TERN__KEY_HINT_LEN) != 0) {
        if (tern__srclim_take(&ep->err_limit, remote, now))
            send_reject(ep, rx, h, TERN__REJECT_WRONG_KEY);
        return TERN_ERR_AUTH;
    }
    tern__mac16(mac, ep->mac1_key, pkt, h->mac1_covered, NULL, 0);
    if (sodium_memcmp(mac, h->mac1, sizeof(mac)) != 0) return TERN_ERR_AUTH;

    if (ep->st.conns_current >= ep->s.max_connections || tern__ep_admit(ep, rx) != TERN_OK) {
        if (tern__srclim_take(&ep->err_limit, remote, now))
            send_reject(ep, rx, h, TERN__REJECT_REFUSED);
        return TERN_ERR_LIMIT;
    }

    /* retry token: required under load; a bad one is answered as if absent. A stream's source
     * address is proven by TCP itself. */
    int validated = tern_addr_is_stream(remote);
    if (!validated && h->token_len > 0) {
        validated = token_valid(ep, now, remote, h);
        if (!validated) ep->st.drop_token++;
    }
    if (!validated && ep->st.conns_half_open >= ep->s.max_half_open) {
        send_retry(ep, rx, h);
        return TERN_OK;
    }
    if (!tern__srclim_take(&ep->hs_limit, remote, now)) return TERN_ERR_RATE_LIMITED;

    /* the expensive part: <- s, then -> e, es, s, ss, payload */
    tern__noise noise;
    uint8_t prologue[PROLOGUE_LEN], payload[TERN__MAX_HS_PAYLOAD];
    size_t plen = 0;
    tern__tparams tp;
    make_prologue(prologue, h->version, h->dcid, h->scid);
    tern__noise_init(&noise, prologue, sizeof(prologue), ep->static_key.pub);
    int rc = tern__noise_read_msg1(&noise, &ep->static_key, h->body, h->body_len, payload,
                                   sizeof(payload), &plen);
    if (rc != TERN_OK) {
        tern__noise_wipe(&noise);
        return TERN_ERR_AUTH;
    }
    rc = tern__tparams_decode(payload, plen, &tp);
    int aead = rc == TERN_OK ? choose_aead(ep, &tp) : -1;
    if (aead < 0) {
        tern__noise_wipe(&noise);
        return TERN_ERR_MALFORMED;
    }

    c = tern__conn_new(ep, 1, now);
    if (c == NULL) {
        tern__noise_wipe(&noise);
        return TERN_ERR_NOMEM;
    }
    if (tern__ep_src_hold(c, rx) != TERN_OK) { /* per-source count (endpoint.c) */
        tern__noise_wipe(&noise);
        tern__conn_free(c);
        return TERN_ERR_NOMEM;
    }
    c->path.local = *rx->local;
    c->path.remote = *remote;
    c->path.relayed = (uint8_t)(rx->relayed != 0);
    if (rx->relayed) memcpy(c->path.channel, rx->channel, TERN_RELAY_CHANNEL_LEN);
    c->path.rx_bytes = len;
    c->path.validated = validated;
    memcpy(c->remote_cid, h->scid, TERN_CID_LEN);
    memcpy(c->hs.initial_dcid, h->dcid, TERN_CID_LEN);
    memcpy(c->peer.static_pub, noise.rs, TERN_KEY_LEN);
    c->peer.known = 1;
    c->keys.aead = (uint8_t)aead;
    c->keys.integrity_only = tp.integrity_only && ep->s.integrity_only;
    apply_peer_tparams(c, &tp);
    tern__p2p_server_attach(c, now); /* an introduced peer: its candidates, to probe later */
    c->hs.start = now;
    ep->st.handshakes_started++;

    /* Response: <- e, ee, se, payload */
    tern__tparams stp;
    uint8_t tpbuf[TERN__MAX_HS_PAYLOAD], e_priv[32], i2r[32], r2i[32];
    local_tparams(c, &stp);
    stp.aeads[0] = (uint8_t)aead;
    stp.n_aeads = 1;
    stp.integrity_only = c->keys.integrity_only;
    int tplen = tern__tparams_encode(&stp, tpbuf, sizeof(tpbuf));
    size_t cap = TERN__LONG_HDR_LEN + 2 + TERN__NOISE_MSG2_FIXED + (size_t)(tplen > 0 ? tplen : 0);
    c->hs.pkt = tplen > 0 ? tern__malloc(&ep->alloc, cap) : NULL;
    if (c->hs.pkt == NULL) {
        tern__noise_wipe(&noise);
        tern__conn_free(c);
        return TERN_ERR_NOMEM;
    }
    uint8_t *p = tern__long_encode_prefix(c->hs.pkt, c->hs.pkt + cap, TERN__PKT_RESPONSE,
                                          TERN__VERSION_1, c->remote_cid, c->local_cid);
    p = tern__put_varint(p, c->hs.pkt + cap, TERN__NOISE_MSG2_FIXED + (size_t)tplen);
    tern__ep_rand(ep, e_priv, sizeof(e_priv));
    rc = p ? tern__noise_write_msg2(&noise, e_priv, tpbuf, (size_t)tplen, p,
                                    (size_t)(c->hs.pkt + cap - p))
           : TERN_ERR_BUFFER;
    sodium_memzero(e_priv, sizeof(e_priv));
    if (rc < 0) {
        tern__noise_wipe(&noise);
        tern__conn_free(c);
        return rc;
    }
    c->hs.pkt_len = (size_t)(p + rc - c->hs.pkt);
    tern__noise_split(&noise, i2r, r2i);
    rc = tern__conn_install_keys(c, r2i, i2r);
    sodium_memzero(i2r, sizeof(i2r));
    sodium_memzero(r2i, sizeof(r2i));
    if (rc == TERN_OK) {
        /* an established connection's entry gives way to the new handshake (above) */
        tern_conn *old = tern__map_get(&ep->by_initial, c->hs.initial_dcid);
        if (old != NULL && old->state != TERN_CONN_HANDSHAKE) {
            tern__map_del(&ep->by_initial, old->hs.initial_dcid, old);
            old->hs.in_initial_map = 0;
        }
        rc = tern__map_put(&ep->by_initial, c->hs.initial_dcid, c);
    }
    if (rc != TERN_OK) {
        tern__conn_free(c);
        return rc == TERN_ERR_LIMIT ? TERN_ERR_IGNORED : rc;
    }
    c->hs.in_initial_map = 1;
    c->rx.last = now;
    c->hs.deadline = now + ep->s.handshake_timeout_ns;
    c->hs.backoff = tern__rec_rtt_pto(c);
    c->hs.retx_at = now + c->hs.backoff;
    c->hs.pending = 1;
    tern__ep_mark_send(ep, c);
    tern__conn_update_timer(c);
    return TERN_OK;
}

/* ---------------------------------------------------------------- dispatch */

int tern__hs_recv_long(tern_endpoint *ep, const tern__rx *rx, const uint8_t *pkt, size_t len)
{
    uint64_t now = rx->now;
    tern__long_hdr h;
    int rc = tern__long_decode(pkt, len, &h);
    if (rc == TERN_ERR_VERSION) {
        /* only a padded first packet earns a (small) version negotiation reply */
        if (ep->is_server && len >= TERN_MIN_INITIAL_SIZE &&
            tern__srclim_take(&ep->err_limit, rx->remote, now))
            send_version_negotiation(ep, rx, &h);
        return TERN_ERR_VERSION;
    }
    if (rc != TERN_OK) return rc;

    if (h.version == TERN__VERSION_NEGOTIATION || h.type != TERN__PKT_INITIAL) {
        tern_conn *c = tern__map_get(&ep->by_cid, h.dcid);
        if (c == NULL) return TERN_ERR_UNKNOWN_CID;
        if (c->is_server) return TERN_ERR_IGNORED;
        if (h.version == TERN__VERSION_NEGOTIATION)
            return client_on_version_negotiation(c, now, &h);
        switch (h.type) {
        case TERN__PKT_RESPONSE: rc = client_on_response(c, rx, &h); break;
        case TERN__PKT_RETRY: rc = client_on_retry(c, now, &h); break;
        default: rc = client_on_reject(c, now, &h); break;
        }
        return rc;
    }
    if (len < TERN_MIN_INITIAL_SIZE) {
        ep->st.drop_small_initial++; /* also counted as truncated */
        return TERN_ERR_TRUNCATED;
    }
    return server_on_initial(ep, rx, pkt, len, &h);
}

int tern__hs_write(tern_conn *c, uint8_t *out, size_t cap)
{
    if (!c->hs.pending || c->hs.pkt == NULL) return 0;
    if (cap < c->hs.pkt_len) return 0;
    if (c->is_server && !c->path.validated &&
        c->path.tx_bytes + c->hs.pkt_len > 3 * c->path.rx_bytes) {
        c->ep->st.amplification_blocked++;
        c->hs.pending = 0;
        return 0;
    }
    memcpy(out, c->hs.pkt, c->hs.pkt_len);
    c->hs.pending = 0;
    return (int)c->hs.pkt_len; /* tern__conn_write counts it in path.tx_bytes */
}

void tern__hs_on_timer(tern_conn *c, uint64_t now)
{
    if (now >= c->hs.deadline) {
        c->ep->st.handshakes_failed++;
        tern__conn_terminate(c, now,
                             c->hs.auth_failures ? TERN_ERR_HANDSHAKE_AUTH
                                                 : TERN_ERR_HANDSHAKE_TIMEOUT,
                             0, NULL, 0, 1);
        return;
    }
    if (now >= c->hs.retx_at && !tern__p2p_is_peer_handshake(c)) {
        if (!c->is_server && c->hs.retries > 0 && ++c->hs.tx_since_retry >= 3) {
            /* our token seems not to work (damaged?): start over without it */
            c->hs.token_len = 0;
            c->hs.tx_since_retry = 0;
            if (build_initial(c) != TERN_OK) {
                tern__conn_terminate(c, now, TERN_ERR_NOMEM, 0, NULL, 0, 1);
                return;
            }
        }
        c->hs.pending = 1;
        tern__ep_mark_send(c->ep, c);
        c->hs.backoff *= 2;
        if (c->hs.backoff > c->ep->s.max_backoff_ns) c->hs.backoff = c->ep->s.max_backoff_ns;
        c->hs.retx_at = now + c->hs.backoff;
    }
}
