/*
 * The endpoint: creation and teardown, demultiplexing of received datagrams (long headers go to
 * the handshake, short headers to the connection named by their connection ID), the queue of
 * stateless replies (Retry, Reject, version negotiation, stateless reset), the send loop that
 * drains those and every connection with output, and the timer heap that drives expiry.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "tern/tern.h"

static void *default_malloc(size_t size, void *user)
{
    (void)user;
    return malloc(size);
}

static void default_free(void *p, size_t size, void *user)
{
    (void)size;
    (void)user;
    free(p);
}

static const tern_mem DEFAULT_MEM = {default_malloc, default_free, NULL};

const tern_mem *tern_mem_default(void)
{
    return &DEFAULT_MEM;
}

static void default_rand(uint8_t *dst, size_t len, void *user)
{
    (void)user;
    randombytes_buf(dst, len);
}

void tern_settings_default(tern_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->idle_timeout_ns = 30 * TERN_NS_PER_S;
    s->keepalive_ns = 15 * TERN_NS_PER_S;
    s->handshake_timeout_ns = 15 * TERN_NS_PER_S;
    s->initial_rtt_ns = 333 * TERN_NS_PER_MS;
    s->max_backoff_ns = 2 * TERN_NS_PER_S;
    s->max_udp_payload = 1200;
    s->key_update_packets = 1ull << 22;
    s->aead = TERN_AEAD_AUTO;
    s->integrity_only = 0;
    s->max_half_open = 256;
    s->max_connections = 100000;
    s->handshake_rate = 100;
    s->handshake_burst = 200;
    s->max_datagram_queue = 1024;
    s->flow_window = 4096;
    s->max_flows = 64;
    s->send_buffer = 32u << 20;
    s->max_ack_delay_ns = 25 * TERN_NS_PER_MS;
    s->ack_every = 2;
    s->cc = TERN_CC_BBR;
    s->probe_tries = 30;
    s->new_paths_per_s = 4;
    s->conn_memory = 0; /* a bulk transfer may hold its windows: see the server profile */
    s->max_memory = 0;
    /* Carrier-grade NATs put many subscribers behind one public IPv4 address (RFC 6888 port
     * blocks of 1-4k ports give 16-64 per address, large pools a few hundred); each runs an app
     * or two with one connection to its server. 256 serves such an address in full, while one
     * address can fill at most 1/390 of the default 100,000 connections. An IPv6 /64 is one
     * subscriber's network. */
    s->max_conns_per_ip = 256;
    s->stream_window = 1u << 20;
}

void tern_settings_server_default(tern_settings *s)
{
    tern_settings_default(s);
    /* rendezvous and relay, not bulk transfer: what one anonymous peer can make the server hold
     * is bounded by conn_memory (1 MiB), and within it by flow control: 8 flows x 256
     * fragments (about 2.4 MB of full-size fragments, so the budget binds first) */
    s->flow_window = 256;
    s->max_flows = 8;
    s->send_buffer = 256u << 10;
    s->max_datagram_queue = 256;
    s->conn_memory = 1u << 20;
    s->max_memory = 2ull << 30;
}

void tern_endpoint_config_default(tern_endpoint_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    tern_settings_default(&cfg->settings);
}

void tern__ep_rand(tern_endpoint *ep, void *dst, size_t len)
{
    ep->rand((uint8_t *)dst, len, ep->rand_user);
}

void tern__key_hint(const uint8_t pub[TERN_KEY_LEN], uint8_t hint[TERN__KEY_HINT_LEN])
{
    static const uint8_t label[] = "tern key hint";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, TERN__KEY_HINT_LEN);
    crypto_generichash_update(&st, label, sizeof(label) - 1);
    crypto_generichash_update(&st, pub, TERN_KEY_LEN);
    crypto_generichash_final(&st, hint, TERN__KEY_HINT_LEN);
}

void tern__mac1_key(const uint8_t pub[TERN_KEY_LEN], uint8_t key[32])
{
    static const uint8_t label[] = "tern mac1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, label, sizeof(label) - 1);
    crypto_generichash_update(&st, pub, TERN_KEY_LEN);
    crypto_generichash_final(&st, key, 32);
}

void tern__reset_token(const tern_endpoint *ep, const uint8_t cid[TERN_CID_LEN],
                       uint8_t token[TERN__RESET_TOKEN_LEN])
{
    tern__mac16(token, ep->reset_key, cid, TERN_CID_LEN, NULL, 0);
}

int tern_endpoint_new(const tern_endpoint_config *cfg, uint64_t now, tern_endpoint **out)
{
    (void)now;
    if (cfg == NULL || out == NULL) return TERN_ERR_INVALID_ARG;
    if (cfg->is_server && !cfg->has_static_key) return TERN_ERR_INVALID_ARG;
    if (tern__crypto_init() != TERN_OK) return TERN_ERR_CRYPTO;
    const tern_mem *mem = cfg->mem ? cfg->mem : &DEFAULT_MEM;
    tern__alloc a = {.mem = *mem};
    tern_endpoint *ep = tern__calloc(&a, sizeof(*ep));
    if (ep == NULL) return TERN_ERR_NOMEM;
    ep->alloc = a;
    ep->alloc.current = sizeof(*ep);
    ep->alloc.peak = sizeof(*ep);
    ep->alloc.max = cfg->settings.max_memory;
    ep->rand = cfg->rand ? cfg->rand : default_rand;
    ep->rand_user = cfg->rand ? cfg->rand_user : NULL;
    ep->s = cfg->settings;
    if (ep->s.max_udp_payload < 1200) ep->s.max_udp_payload = 1200;
    if (ep->s.max_udp_payload > TERN_MAX_DATAGRAM) ep->s.max_udp_payload = TERN_MAX_DATAGRAM;
    if (ep->s.initial_rtt_ns == 0) ep->s.initial_rtt_ns = 333 * TERN_NS_PER_MS;
    if (ep->s.max_backoff_ns == 0) ep->s.max_backoff_ns = 2 * TERN_NS_PER_S;
    if (ep->s.flow_window == 0) ep->s.flow_window = 4096;
    if (ep->s.flow_window > (1u << 20)) ep->s.flow_window = 1u << 20;
    if (ep->s.max_flows == 0) ep->s.max_flows = 64;
    if (ep->s.send_buffer == 0) ep->s.send_buffer = 32u << 20;
    if (ep->s.max_ack_delay_ns == 0) ep->s.max_ack_delay_ns = 25 * TERN_NS_PER_MS;
    if (ep->s.ack_every == 0) ep->s.ack_every = 2;
    if (ep->s.probe_tries == 0) ep->s.probe_tries = 30;
    if (ep->s.new_paths_per_s == 0) ep->s.new_paths_per_s = 4;
    if (ep->s.stream_window == 0) ep->s.stream_window = 1u << 20;
    ep->cb = cfg->callbacks;
    ep->user_data = cfg->user_data;
    ep->is_server = cfg->is_server;
    ep->aes_hw = tern__aes_available();

    if (cfg->has_static_key) {
        ep->static_key = cfg->static_key;
    } else {
        uint8_t priv[TERN_KEY_LEN];
        tern__ep_rand(ep, priv, sizeof(priv));
        tern_keypair_from_private(&ep->static_key, priv);
        sodium_memzero(priv, sizeof(priv));
    }
    tern__key_hint(ep->static_key.pub, ep->key_hint);
    tern__mac1_key(ep->static_key.pub, ep->mac1_key);
    tern__ep_rand(ep, ep->cookie_key, sizeof(ep->cookie_key));
    {
        /* Reset tokens survive a restart with the same static key. */
        static const uint8_t label[] = "tern stateless reset";
        uint8_t unused[32];
        tern__hkdf2(ep->reset_key, unused, ep->static_key.priv, label, sizeof(label) - 1);
        sodium_memzero(unused, sizeof(unused));
    }

    uint8_t k[16 * 5];
    tern__ep_rand(ep, k, sizeof(k));
    int rc = tern__map_init(&ep->by_cid, &ep->alloc, TERN_CID_LEN, k);
    if (rc == TERN_OK) rc = tern__map_init(&ep->by_initial, &ep->alloc, TERN_CID_LEN, k + 16);
    if (rc == TERN_OK)
        rc = tern__map_init(&ep->by_reset, &ep->alloc, TERN__RESET_TOKEN_LEN, k + 32);
    if (rc == TERN_OK && ep->is_server) {
        /* a key of its own for the per-source table, derived so the random stream is unchanged */
        uint8_t sk[16];
        crypto_generichash(sk, sizeof(sk), k, sizeof(k), (const uint8_t *)"tern by_src", 11);
        rc = tern__map_init(&ep->by_src, &ep->alloc, TERN__SRC_KEY_LEN, sk);
        sodium_memzero(sk, sizeof(sk));
    }
    if (rc == TERN_OK) rc = tern__heap_init(&ep->timers, &ep->alloc);
    if (rc == TERN_OK && ep->is_server) /* only servers take handshakes */
        rc = tern__srclim_init(&ep->hs_limit, &ep->alloc, ep->s.handshake_rate,
                               ep->s.handshake_burst, TERN__SRC_MAX, k + 48);
    if (rc == TERN_OK)
        rc = tern__srclim_init(&ep->err_limit, &ep->alloc, TERN__ERR_RATE, TERN__ERR_BURST,
                               TERN__SRC_MAX, k + 64);
    /* a server's tables are made now, so its memory under attack is what it was at start; a
     * client makes its error-reply table only if it ever replies to a stray packet */
    if (rc == TERN_OK && ep->is_server) rc = tern__srclim_reserve(&ep->hs_limit);
    if (rc == TERN_OK && ep->is_server) rc = tern__srclim_reserve(&ep->err_limit);
    tern__rate_set(&ep->new_paths, ep->s.new_paths_per_s, 2ull * ep->s.new_paths_per_s);
    if (rc != TERN_OK) {
        tern_endpoint_del(ep);
        return rc;
    }
    *out = ep;
    return TERN_OK;
}

void tern_endpoint_del(tern_endpoint *ep)
{
    if (ep == NULL) return;
    ep->cb.on_conn_free = NULL; /* teardown frees without callbacks */
    ep->cb.on_closed = NULL;
    while (ep->all) tern__conn_free(ep->all);
    tern__map_free(&ep->by_cid);
    tern__map_free(&ep->by_initial);
    tern__map_free(&ep->by_reset);
    tern__map_free(&ep->by_src);
    tern__heap_free(&ep->timers);
    tern__srclim_free(&ep->hs_limit);
    tern__srclim_free(&ep->err_limit);
    if (ep->expects) tern__free(&ep->alloc, ep->expects, TERN__MAX_EXPECTS * sizeof(*ep->expects));
    tern__alloc a = ep->alloc;
    sodium_memzero(ep, sizeof(*ep));
    tern__free(&a, ep, sizeof(*ep));
}

/* ---------------------------------------------------------------- admission */

int tern__ep_admit(tern_endpoint *ep, const tern__rx *rx)
{
    /* near the memory budget, refuse newcomers rather than fail the connections we have */
    uint64_t max = ep->alloc.max;
    if (max != 0 && ep->alloc.current > max - max / 8) {
        ep->st.conns_refused_memory++;
        return TERN_ERR_LIMIT;
    }
    if (ep->s.max_conns_per_ip == 0 || rx->relayed || !ep->is_server) return TERN_OK;
    uint8_t key[TERN__SRC_KEY_LEN];
    tern__src_key(rx->remote, key);
    uintptr_t n = (uintptr_t)tern__map_get(&ep->by_src, key);
    if (n >= ep->s.max_conns_per_ip) {
        ep->st.conns_refused_per_ip++;
        return TERN_ERR_LIMIT;
    }
    return TERN_OK;
}

/* The table holds one entry per source with at least one connection, so it never has more
 * entries than the endpoint has connections (max_connections); an entry is removed when its
 * count drops to zero and the table shrinks with it. Connections through a relay are not
 * counted: their source is the relay. */
int tern__ep_src_hold(tern_conn *c, const tern__rx *rx)
{
    tern_endpoint *ep = c->ep;
    if (ep->s.max_conns_per_ip == 0 || rx->relayed || !ep->is_server) return TERN_OK;
    tern__src_key(rx->remote, c->link.src_key);
    void **v = tern__map_ref(&ep->by_src, c->link.src_key);
    if (v != NULL) {
        *v = (void *)((uintptr_t)*v + 1);
    } else {
        int rc = tern__map_put(&ep->by_src, c->link.src_key, (void *)(uintptr_t)1);
        if (rc != TERN_OK) return rc;
        ep->st.sources_current++;
    }
    c->link.src_held = 1;
    return TERN_OK;
}

void tern__ep_src_release(tern_conn *c)
{
    tern_endpoint *ep = c->ep;
    if (!c->link.src_held) return;
    c->link.src_held = 0;
    void **v = tern__map_ref(&ep->by_src, c->link.src_key);
    if (v == NULL) return;
    uintptr_t n = (uintptr_t)*v;
    if (n > 1) {
        *v = (void *)(n - 1);
    } else {
        tern__map_del(&ep->by_src, c->link.src_key, *v);
        ep->st.sources_current--;
    }
}

void tern__ep_mark_send(tern_endpoint *ep, tern_conn *c)
{
    if (c->link.in_send_list) return;
    c->link.in_send_list = 1;
    c->link.send_next = NULL;
    if (ep->send_tail) ep->send_tail->link.send_next = c;
    else ep->send_head = c;
    ep->send_tail = c;
}

int tern__ep_queue_stateless(tern_endpoint *ep, const tern_addr *local, const tern_addr *remote,
                             const uint8_t *data, size_t len)
{
    if (len > TERN__STATELESS_MAX || ep->sq_len == TERN__STATELESS_QUEUE) {
        ep->st.drop_queue_full++;
        return TERN_ERR_AGAIN;
    }
    tern__stateless *s = &ep->sq[(ep->sq_head + ep->sq_len) % TERN__STATELESS_QUEUE];
    s->local = *local;
    s->remote = *remote;
    s->len = len;
    memcpy(s->data, data, len);
    ep->sq_len++;
    return TERN_OK;
}

int tern__ep_reply_stateless(tern_endpoint *ep, const tern__rx *rx, const uint8_t *data,
                             size_t len)
{
    if (rx->relayed) return TERN_ERR_IGNORED; /* no stateless replies through a relay */
    return tern__ep_queue_stateless(ep, rx->local, rx->remote, data, len);
}

static void count_drop(tern_endpoint *ep, int rc)
{
    switch (rc) {
    case TERN_ERR_TRUNCATED: ep->st.drop_truncated++; break;
    case TERN_ERR_MALFORMED: ep->st.drop_malformed++; break;
    case TERN_ERR_VERSION: ep->st.drop_version++; break;
    case TERN_ERR_AUTH: ep->st.drop_auth++; break;
    case TERN_ERR_REPLAY: ep->st.drop_replay++; break;
    case TERN_ERR_UNKNOWN_CID: ep->st.drop_unknown_cid++; break;
    case TERN_ERR_RATE_LIMITED: ep->st.drop_rate_limited++; break;
    case TERN_ERR_TOKEN: ep->st.drop_token++; break;
    default: ep->st.drop_ignored++; break;
    }
}

int tern_endpoint_recv(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                       const tern_addr *remote, const uint8_t *data, size_t len)
{
    int rc;
    if (ep == NULL || local == NULL || remote == NULL || (data == NULL && len > 0))
        return TERN_ERR_INVALID_ARG;
    ep->st.rx_packets++;
    ep->st.rx_bytes += len;
    tern__rx rx = {.now = now, .local = local, .remote = remote, .cand = -1};
    if (len == 0) {
        rc = TERN_ERR_TRUNCATED;
    } else if (len > TERN_MAX_DATAGRAM) {
        rc = TERN_ERR_MALFORMED;
    } else if (data[0] == TERN__RELAY_TYPE) {
        /* a packet through a relay: the channel says which route it came on */
        if (len <= TERN__RELAY_HDR_LEN) {
            rc = TERN_ERR_TRUNCATED;
        } else if (!(data[TERN__RELAY_HDR_LEN] & TERN__HDR_FIXED)) {
            rc = TERN_ERR_MALFORMED;
        } else {
            const uint8_t *in = data + TERN__RELAY_HDR_LEN;
            size_t in_len = len - TERN__RELAY_HDR_LEN;
            rx.relayed = 1;
            rx.channel = data + 1;
            rc = (in[0] & TERN__HDR_LONG) ? tern__hs_recv_long(ep, &rx, in, in_len)
                                          : tern__conn_recv_short(ep, &rx, in, in_len);
        }
    } else if (data[0] == TERN__PUNCH_TYPE) {
        rc = tern__p2p_on_punch(ep, now, local, remote, data, len);
    } else if (!(data[0] & TERN__HDR_FIXED)) {
        rc = TERN_ERR_MALFORMED; /* not tern (STUN, or noise) */
    } else if (data[0] & TERN__HDR_LONG) {
        rc = tern__hs_recv_long(ep, &rx, data, len);
    } else {
        rc = tern__conn_recv_short(ep, &rx, data, len);
    }
    if (rc < 0 && rc > TERN_ERR_FATAL) count_drop(ep, rc);
    return rc;
}

int tern_endpoint_send(tern_endpoint *ep, uint64_t now, tern_datagram *dgrams, size_t max_dgrams,
                       uint8_t *buf, size_t buf_len)
{
    size_t n = 0, off = 0;
    if (ep == NULL || dgrams == NULL || buf == NULL) return TERN_ERR_INVALID_ARG;
    while (n < max_dgrams && ep->sq_len > 0) {
        tern__stateless *s = &ep->sq[ep->sq_head];
        if (buf_len - off < s->len) break;
        memcpy(buf + off, s->data, s->len);
        dgrams[n].local = s->local;
        dgrams[n].remote = s->remote;
        dgrams[n].data = buf + off;
        dgrams[n].len = s->len;
        off += s->len;
        n++;
        ep->sq_head = (ep->sq_head + 1) % TERN__STATELESS_QUEUE;
        ep->sq_len--;
    }
    while (n < max_dgrams && ep->send_head != NULL) {
        tern_conn *c = ep->send_head;
        if (buf_len - off < TERN_MAX_DATAGRAM) break;
        const tern__path *via = NULL;
        int len = tern__conn_write(c, now, buf + off, buf_len - off, &via);
        if (len <= 0) {
            /* nothing more from this connection: unlink it */
            ep->send_head = c->link.send_next;
            if (ep->send_head == NULL) ep->send_tail = NULL;
            c->link.in_send_list = 0;
            c->link.send_next = NULL;
            continue;
        }
        dgrams[n].local = via->local;
        dgrams[n].remote = via->remote;
        if (tern__path_is_stream(via)) c->st.stream_packets_sent++;
        dgrams[n].data = buf + off;
        dgrams[n].len = (size_t)len;
        off += (size_t)len;
        n++;
        /* round robin: move the connection to the back */
        if (c->link.send_next != NULL) {
            ep->send_head = c->link.send_next;
            c->link.send_next = NULL;
            ep->send_tail->link.send_next = c;
            ep->send_tail = c;
        }
    }
    if (n == 0 && buf_len < TERN_MAX_DATAGRAM && (ep->send_head || ep->sq_len))
        return TERN_ERR_BUFFER;
    for (size_t i = 0; i < n; i++) {
        ep->st.tx_packets++;
        ep->st.tx_bytes += dgrams[i].len;
    }
    return (int)n;
}

uint64_t tern_endpoint_next_deadline(const tern_endpoint *ep)
{
    const tern__heap_item *it = tern__heap_top(&ep->timers);
    uint64_t d = it ? it->deadline : TERN_TIME_NEVER;
    if (ep->n_expects > 0 && ep->expect_deadline < d) d = ep->expect_deadline;
    return d;
}

void tern_endpoint_handle_expiry(tern_endpoint *ep, uint64_t now)
{
    if (ep->n_expects > 0 && now >= ep->expect_deadline) tern__expect_on_timer(ep, now);
    /* Each connection's timer handler moves its deadline past now or frees it, so this ends. */
    for (;;) {
        tern__heap_item *it = tern__heap_top(&ep->timers);
        if (it == NULL || it->deadline > now) break;
        tern_conn *c = (tern_conn *)(void *)it;
        uint64_t before = it->deadline;
        tern__conn_on_timer(c, now);
        /* c may be freed; if it is still the top with an unmoved deadline, push it on. */
        tern__heap_item *top = tern__heap_top(&ep->timers);
        if (top == it && top->deadline == before) tern__heap_set(&ep->timers, it, now + 1);
    }
}

void tern_endpoint_get_stats(const tern_endpoint *ep, tern_endpoint_stats *st)
{
    *st = ep->st;
    st->mem_current = ep->alloc.current;
    st->mem_peak = ep->alloc.peak;
    st->mem_refused = ep->alloc.refused;
}
