/*
 * Rendezvous client (tern/rendezvous.h, "client"): the peer side of docs/rendezvous.md.
 *
 * Design. The client sits on one established tern connection to the rendezvous server that the
 * embedding program opened; it opens one reliable ordered flow on it for its requests (on the
 * first request) and decodes whatever the server sends on any flow (tern_rdv_decode: bounded,
 * never trusts a length). State is small and fixed: introductions asked and not yet answered,
 * peers the server introduced us to (the key we accept their handshake with, and until when),
 * handshakes of peers not introduced yet, held for a while in case INTRODUCED is on its way,
 * and calls in flight (each with a local deadline of last resort: the server answers a call's
 * timeout itself, but a server that went quiet must not leave a call hanging). All four are
 * arrays of at most TERN_RDV_CLIENT_MAX_* entries scanned linearly: a peer has a handful of
 * introductions and calls at once, not thousands. The client allocates only itself, through
 * the memory hook; it never reads a clock (now is passed in) and never closes a connection.
 */
#include <string.h>

#include "base/alloc.h"
#include "tern/rendezvous.h"

typedef struct intro_pending {
    uint8_t peer_id[TERN_PEER_ID_LEN];
    uint64_t asked_at;
} intro_pending;

typedef struct expectation {
    uint8_t peer_pub[TERN_KEY_LEN];
    uint64_t until;
    uint64_t since;    /* when it was made or last refreshed (the oldest is evicted first) */
} expectation;

/* A handshake held until INTRODUCED (tern_rdv_client_hold): an authenticated peer's key. */
typedef struct held {
    uint8_t peer_pub[TERN_KEY_LEN];
    uint64_t since; /* first held (the oldest is evicted first; the hold ends HOLD_NS after) */
} held;

typedef struct call_pending {
    uint64_t call_id;
    uint64_t deadline; /* local last resort */
} call_pending;

struct tern_rdv_client {
    tern__alloc alloc;
    tern_rdv_client_config cfg;
    tern_conn *conn;
    uint64_t flow;
    int has_flow;
    int registered;
    tern_addr public_addr;
    uint64_t next_call_id;
    size_t n_intros, n_expects, n_calls, n_held;
    intro_pending intros[TERN_RDV_CLIENT_MAX_PENDING];
    expectation expects[TERN_RDV_CLIENT_MAX_PENDING];
    held helds[TERN_RDV_CLIENT_MAX_HELD];
    call_pending calls[TERN_RDV_CLIENT_MAX_CALLS];
    tern_rdv_client_stats st;
};

#define DEFAULT_CALL_GRACE_NS (2 * TERN_NS_PER_S)
#define EXPECT_MARGIN_NS (5 * TERN_NS_PER_S) /* an expectation outlives the probing by this */
/* A held handshake whose connection went away undecided (the peer gave up) is forgotten this
 * long after it was first held: past the hold, so a packet that comes meanwhile is refused. */
#define HELD_FORGET_NS (2 * TERN_RDV_CLIENT_HOLD_NS)

void tern_rdv_client_config_default(tern_rdv_client_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->call_grace_ns = DEFAULT_CALL_GRACE_NS;
}

int tern_rdv_client_new(const tern_rdv_client_config *cfg, tern_conn *server_conn,
                        tern_rdv_client **out)
{
    if (cfg == NULL || server_conn == NULL || out == NULL) return TERN_ERR_INVALID_ARG;
    tern__alloc a = {.mem = cfg->mem ? *cfg->mem : *tern_mem_default()}; /* no max */
    tern_rdv_client *rc = tern__calloc(&a, sizeof(*rc));
    if (rc == NULL) return TERN_ERR_NOMEM;
    rc->alloc = a; /* its count includes the client itself */
    rc->cfg = *cfg;
    if (rc->cfg.call_grace_ns == 0) rc->cfg.call_grace_ns = DEFAULT_CALL_GRACE_NS;
    rc->conn = server_conn;
    rc->next_call_id = 1;
    *out = rc;
    return TERN_OK;
}

void tern_rdv_client_del(tern_rdv_client *rc)
{
    if (rc == NULL) return;
    tern__alloc a = rc->alloc;
    tern__free(&a, rc, sizeof(*rc));
}

tern_conn *tern_rdv_client_conn(const tern_rdv_client *rc)
{
    return rc->conn;
}

uint64_t tern_rdv_client_queued(const tern_rdv_client *rc)
{
    if (rc->conn == NULL || !rc->has_flow) return 0;
    return tern_flow_queued(rc->conn, rc->flow);
}

int tern_rdv_client_registered(const tern_rdv_client *rc, tern_addr *out)
{
    if (rc->registered && out) *out = rc->public_addr;
    return rc->registered;
}

void tern_rdv_client_get_stats(const tern_rdv_client *rc, tern_rdv_client_stats *st)
{
    *st = rc->st;
}

/* ---------------------------------------------------------------- requests */

static int send_msg(tern_rdv_client *rc, uint64_t now, const tern_rdv_msg *m)
{
    if (rc->conn == NULL || tern_conn_get_state(rc->conn) != TERN_CONN_ESTABLISHED)
        return TERN_ERR_STATE;
    if (!rc->has_flow) {
        tern_flow_config fc;
        tern_flow_config_default(&fc); /* reliable, ordered */
        int r = tern_flow_open(rc->conn, &fc, &rc->flow);
        if (r != TERN_OK) return r;
        rc->has_flow = 1;
    }
    return tern_rdv_send(rc->conn, rc->flow, now, m);
}

static int name_ok(const uint8_t *p, size_t len)
{
    return p != NULL && len >= 1 && len <= TERN_RDV_MAX_NAME;
}

/* A request's token (tern_rdv_token_make), when there is one (token not NULL). */
static void set_token(tern_rdv_msg *m, const uint8_t *token)
{
    if (token == NULL) return;
    m->has_token = 1;
    memcpy(m->token, token, TERN_RDV_TOKEN_LEN);
}

int tern_rdv_client_register(tern_rdv_client *rc, uint64_t now, const tern_addr *cands,
                             size_t n_cands, const uint8_t *token)
{
    if (n_cands > TERN_RDV_MAX_CANDS || (n_cands && cands == NULL)) return TERN_ERR_INVALID_ARG;
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    for (size_t i = 0; i < n_cands; i++) {
        if (cands[i].family != TERN_AF_INET && cands[i].family != TERN_AF_INET6)
            return TERN_ERR_INVALID_ARG;
        m.cands[i].kind = TERN_RDV_CAND_LOCAL;
        m.cands[i].addr = cands[i];
    }
    m.n_cands = n_cands;
    set_token(&m, token);
    return send_msg(rc, now, &m);
}

int tern_rdv_client_introduce(tern_rdv_client *rc, uint64_t now,
                              const uint8_t peer_id[TERN_PEER_ID_LEN])
{
    if (peer_id == NULL) return TERN_ERR_INVALID_ARG;
    if (rc->n_intros == TERN_RDV_CLIENT_MAX_PENDING) return TERN_ERR_LIMIT;
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    m.has_peer_id = 1;
    memcpy(m.peer_id, peer_id, TERN_PEER_ID_LEN);
    int r = send_msg(rc, now, &m);
    if (r != TERN_OK) return r;
    intro_pending *ip = &rc->intros[rc->n_intros++];
    memcpy(ip->peer_id, peer_id, TERN_PEER_ID_LEN);
    ip->asked_at = now;
    rc->st.introductions++;
    return TERN_OK;
}

/* JOIN a group or OFFER a service: its name and, when not NULL, a token for it. */
static int send_named(tern_rdv_client *rc, uint64_t now, uint8_t kind, const uint8_t *name,
                      size_t name_len, const uint8_t *token)
{
    if (!name_ok(name, name_len)) return TERN_ERR_INVALID_ARG;
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, kind);
    if (kind == TERN_RDV_OFFER) m.service = name, m.service_len = name_len;
    else m.group = name, m.group_len = name_len;
    set_token(&m, token);
    return send_msg(rc, now, &m);
}

int tern_rdv_client_join(tern_rdv_client *rc, uint64_t now, const uint8_t *group,
                         size_t group_len, const uint8_t *token)
{
    return send_named(rc, now, TERN_RDV_JOIN, group, group_len, token);
}

int tern_rdv_client_leave(tern_rdv_client *rc, uint64_t now, const uint8_t *group,
                          size_t group_len)
{
    if (!name_ok(group, group_len)) return TERN_ERR_INVALID_ARG;
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_LEAVE);
    m.group = group, m.group_len = group_len;
    return send_msg(rc, now, &m);
}

int tern_rdv_client_group_send(tern_rdv_client *rc, uint64_t now, const uint8_t *group,
                               size_t group_len, const uint8_t *payload, size_t len)
{
    if (!name_ok(group, group_len) || len > TERN_RDV_MAX_PAYLOAD || (len && payload == NULL))
        return TERN_ERR_INVALID_ARG;
    static const uint8_t empty[1];
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_GROUP_MSG);
    m.group = group, m.group_len = group_len;
    m.payload = len ? payload : empty, m.payload_len = len, m.has_payload = 1;
    return send_msg(rc, now, &m);
}

int tern_rdv_client_offer(tern_rdv_client *rc, uint64_t now, const uint8_t *service,
                          size_t service_len, const uint8_t *token)
{
    return send_named(rc, now, TERN_RDV_OFFER, service, service_len, token);
}

int tern_rdv_client_call(tern_rdv_client *rc, uint64_t now, const uint8_t *service,
                         size_t service_len, const uint8_t *method, size_t method_len,
                         const uint8_t *payload, size_t len, uint32_t timeout_ms,
                         uint64_t *call_id)
{
    if (!name_ok(service, service_len) || !name_ok(method, method_len) ||
        len > TERN_RDV_MAX_PAYLOAD || (len && payload == NULL) || call_id == NULL)
        return TERN_ERR_INVALID_ARG;
    if (rc->n_calls == TERN_RDV_CLIENT_MAX_CALLS) return TERN_ERR_LIMIT;
    static const uint8_t empty[1];
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_CALL);
    m.service = service, m.service_len = service_len;
    m.method = method, m.method_len = method_len;
    m.payload = len ? payload : empty, m.payload_len = len, m.has_payload = 1;
    m.has_call_id = 1;
    m.call_id = rc->next_call_id;
    if (timeout_ms) m.has_timeout = 1, m.timeout_ms = timeout_ms;
    int r = send_msg(rc, now, &m);
    if (r != TERN_OK) return r;
    /* the server caps timeouts at its max (60 s by default) and answers TIMEOUT itself; the
     * local deadline only catches a server that never answers */
    uint64_t t = timeout_ms ? timeout_ms : 10000;
    call_pending *cp = &rc->calls[rc->n_calls++];
    cp->call_id = rc->next_call_id++;
    cp->deadline = now + t * TERN_NS_PER_MS + rc->cfg.call_grace_ns;
    *call_id = cp->call_id;
    rc->st.calls++;
    return TERN_OK;
}

int tern_rdv_client_reply(tern_rdv_client *rc, uint64_t now, uint64_t call_id, uint32_t status,
                          const uint8_t *payload, size_t len)
{
    if (len > TERN_RDV_MAX_PAYLOAD || (len && payload == NULL)) return TERN_ERR_INVALID_ARG;
    static const uint8_t empty[1];
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REPLY);
    m.has_call_id = 1, m.call_id = call_id;
    m.has_status = 1, m.status = status;
    m.payload = len ? payload : empty, m.payload_len = len, m.has_payload = 1;
    return send_msg(rc, now, &m);
}

/* ---------------------------------------------------------------- peers */

/* The live expectation of pub, or NULL. */
static expectation *find_expect(tern_rdv_client *rc, const uint8_t *pub, uint64_t now)
{
    for (size_t i = 0; i < rc->n_expects; i++) {
        if (rc->expects[i].until < now) continue; /* stale: handle_expiry drops it */
        if (memcmp(rc->expects[i].peer_pub, pub, TERN_KEY_LEN) == 0) return &rc->expects[i];
    }
    return NULL;
}

/* Forgets pub's held handshake, if any (decided: accepted or refused). */
static void unhold(tern_rdv_client *rc, const uint8_t *pub)
{
    for (size_t i = 0; i < rc->n_held; i++)
        if (memcmp(rc->helds[i].peer_pub, pub, TERN_KEY_LEN) == 0) {
            rc->helds[i] = rc->helds[--rc->n_held];
            return;
        }
}

int tern_rdv_client_hold(tern_rdv_client *rc, tern_conn *conn, uint64_t now)
{
    uint8_t pub[TERN_KEY_LEN];
    if (rc->cfg.accept_any || conn == NULL || tern_conn_peer_key(conn, pub) != TERN_OK) return 0;
    if (find_expect(rc, pub, now) != NULL) return 0;
    held *h = NULL;
    for (size_t i = 0; i < rc->n_held && h == NULL; i++)
        if (memcmp(rc->helds[i].peer_pub, pub, TERN_KEY_LEN) == 0) h = &rc->helds[i];
    if (h != NULL) return now - h->since < TERN_RDV_CLIENT_HOLD_NS; /* over: on_accept refuses */
    if (rc->n_held < TERN_RDV_CLIENT_MAX_HELD) {
        h = &rc->helds[rc->n_held++];
    } else { /* full: the oldest gives its place up */
        h = &rc->helds[0];
        for (size_t i = 1; i < rc->n_held; i++)
            if (rc->helds[i].since < h->since) h = &rc->helds[i];
        rc->st.hold_evicted++;
    }
    memcpy(h->peer_pub, pub, TERN_KEY_LEN);
    h->since = now;
    rc->st.held++;
    return 1;
}

int tern_rdv_client_accept(tern_rdv_client *rc, tern_conn *conn, uint64_t now)
{
    uint8_t pub[TERN_KEY_LEN];
    if (conn != NULL && tern_conn_peer_key(conn, pub) == TERN_OK) {
        unhold(rc, pub);
        expectation *e = find_expect(rc, pub, now);
        if (e != NULL) {
            *e = rc->expects[--rc->n_expects];
            rc->st.accepted++;
            return TERN_OK;
        }
    }
    if (rc->cfg.accept_any) {
        rc->st.accepted++;
        return TERN_OK;
    }
    rc->st.refused++;
    return TERN_ERR_REFUSED;
}

static int unspecified(const tern_addr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->ip, zero, a->family == TERN_AF_INET ? 4 : 16) == 0;
}

/* The peer target from PEER_INFO / INTRODUCED: direct candidates LOCAL first, then PUBLIC,
 * without duplicates or unusable addresses, and the relay when the server gave a channel. */
static void make_target(tern_rdv_client *rc, const tern_rdv_msg *m, tern_peer_target *t)
{
    tern_peer_target_default(t);
    memcpy(t->peer_pub, m->pubkey, TERN_KEY_LEN);
    memcpy(t->nonce, m->nonce, TERN_PUNCH_NONCE_LEN);
    if (rc->cfg.relay_after_ns) t->relay_after_ns = rc->cfg.relay_after_ns;
    if (rc->cfg.probe_interval_ns) t->probe_interval_ns = rc->cfg.probe_interval_ns;
    if (rc->cfg.probe_duration_ns) t->probe_duration_ns = rc->cfg.probe_duration_ns;
    static const uint8_t order[2] = {TERN_RDV_CAND_LOCAL, TERN_RDV_CAND_PUBLIC};
    /* LOCAL candidates as the server filters them (a server we do not trust may not make us
     * probe a public address as "local"): in a local range, at most TERN_RDV_CLIENT_MAX_LOCAL;
     * loopback only when the peer's PUBLIC address is loopback too */
    const tern_addr *pub = NULL;
    for (size_t i = 0; i < m->n_cands && pub == NULL; i++)
        if (m->cands[i].kind == TERN_RDV_CAND_PUBLIC) pub = &m->cands[i].addr;
    size_t n_local = 0;
    t->n_cands = 0;
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < m->n_cands && t->n_cands < TERN_MAX_CANDIDATES; i++) {
            const tern_rdv_cand *c = &m->cands[i];
            if (c->kind != order[k] || c->addr.port == 0 || unspecified(&c->addr)) continue;
            int dup = 0;
            for (size_t j = 0; j < t->n_cands && !dup; j++)
                dup = tern_addr_equal(&t->cands[j], &c->addr);
            if (dup) continue;
            if (c->kind == TERN_RDV_CAND_LOCAL) {
                if (n_local >= TERN_RDV_CLIENT_MAX_LOCAL || !tern_rdv_local_cand_ok(&c->addr, pub)) {
                    rc->st.local_cands_dropped++;
                    continue;
                }
                n_local++;
            }
            t->cands[t->n_cands++] = c->addr;
        }
    }
    /* RELAY: the server's relay with this peer's own channel on it (CHANNEL); without a
     * channel there is no session to use. An unspecified IP means "the address you reach the
     * server at" (ternd binds a wildcard address), with the candidate's port. When this peer
     * reaches the server over a stream (TCP/TLS: its network may drop UDP), the relay route is
     * that stream itself: the relay shares the server's tern port and transports, and the
     * server opened the session for the address its connection comes from, the stream's. */
    const tern_addr *srv = rc->conn ? tern_conn_remote(rc->conn) : NULL;
    t->has_relay = 0;
    for (size_t i = 0; i < m->n_cands && m->has_channel && !t->has_relay; i++) {
        const tern_rdv_cand *c = &m->cands[i];
        if (c->kind != TERN_RDV_CAND_RELAY || c->addr.port == 0) continue;
        tern_addr a = c->addr;
        if (srv != NULL && tern_addr_is_stream(srv)) {
            a = *srv;
        } else if (unspecified(&a)) {
            if (srv == NULL || srv->family != a.family) continue;
            memcpy(a.ip, srv->ip, sizeof(a.ip));
        }
        t->relay.addr = a;
        memcpy(t->relay.channel, m->channel, TERN_RELAY_CHANNEL_LEN);
        t->has_relay = 1;
    }
}

static int take_intro(tern_rdv_client *rc, const uint8_t peer_id[TERN_PEER_ID_LEN])
{
    for (size_t i = 0; i < rc->n_intros; i++) {
        if (memcmp(rc->intros[i].peer_id, peer_id, TERN_PEER_ID_LEN) != 0) continue;
        memmove(&rc->intros[i], &rc->intros[i + 1], (rc->n_intros - i - 1) * sizeof(rc->intros[0]));
        rc->n_intros--;
        return 1;
    }
    return 0;
}

static void on_peer_info(tern_rdv_client *rc, const tern_rdv_msg *m, uint64_t now)
{
    /* the ID the server names must be the hash of the key it vouches for */
    uint8_t id[TERN_PEER_ID_LEN];
    tern_peer_id(m->pubkey, id);
    if (memcmp(id, m->peer_id, TERN_PEER_ID_LEN) != 0 || !take_intro(rc, m->peer_id)) {
        rc->st.unexpected++;
        return;
    }
    tern_peer_target t;
    make_target(rc, m, &t);
    tern_conn *c = NULL;
    int r = tern_endpoint_connect_peer(tern_conn_endpoint(rc->conn), now, &rc->cfg.local, &t, &c);
    if (r == TERN_OK) rc->st.peer_conns++;
    else rc->st.intro_failed++;
    if (rc->cfg.callbacks.on_peer_conn)
        rc->cfg.callbacks.on_peer_conn(rc, m->peer_id, r == TERN_OK ? c : NULL, r,
                                       rc->cfg.user_data);
}

static void on_introduced(tern_rdv_client *rc, const tern_rdv_msg *m, uint64_t now)
{
    uint8_t id[TERN_PEER_ID_LEN];
    tern_peer_id(m->pubkey, id);
    if (memcmp(id, m->peer_id, TERN_PEER_ID_LEN) != 0) {
        rc->st.unexpected++;
        return;
    }
    tern_peer_target t;
    make_target(rc, m, &t);
    int r = tern_endpoint_expect_peer(tern_conn_endpoint(rc->conn), now, &rc->cfg.local, &t);
    /* The endpoint's own table never refuses (a full one gives up its oldest expectation);
     * TERN_ERR_LIMIT is still taken as "not punching for it": the peer's handshake is accepted
     * when its packets reach us, so the key is remembered all the same and the error reported. */
    if (r == TERN_OK || r == TERN_ERR_LIMIT) {
        /* remember the key: a peer expected already is refreshed; a full table gives up its
         * oldest expectation, so a flood of introductions cannot lock out the next one */
        expectation *e = NULL;
        for (size_t i = 0; i < rc->n_expects && e == NULL; i++)
            if (memcmp(rc->expects[i].peer_pub, m->pubkey, TERN_KEY_LEN) == 0)
                e = &rc->expects[i];
        if (e == NULL && rc->n_expects < TERN_RDV_CLIENT_MAX_PENDING)
            e = &rc->expects[rc->n_expects++];
        if (e == NULL) {
            e = &rc->expects[0];
            for (size_t i = 1; i < rc->n_expects; i++)
                if (rc->expects[i].since < e->since) e = &rc->expects[i];
            rc->st.expect_evicted++;
        }
        memcpy(e->peer_pub, m->pubkey, TERN_KEY_LEN);
        if (t.probe_duration_ns == 0) t.probe_duration_ns = 15 * TERN_NS_PER_S;
        e->until = now + t.probe_duration_ns + EXPECT_MARGIN_NS;
        e->since = now;
    }
    if (r == TERN_OK) rc->st.introduced++;
    else rc->st.expect_failed++;
    if (rc->cfg.callbacks.on_introduced)
        rc->cfg.callbacks.on_introduced(rc, m->peer_id, r, rc->cfg.user_data);
}

/* ---------------------------------------------------------------- incoming */

static int take_call(tern_rdv_client *rc, uint64_t call_id)
{
    for (size_t i = 0; i < rc->n_calls; i++) {
        if (rc->calls[i].call_id != call_id) continue;
        rc->calls[i] = rc->calls[--rc->n_calls];
        return 1;
    }
    return 0;
}

static void on_error_msg(tern_rdv_client *rc, const tern_rdv_msg *m)
{
    const tern_rdv_client_callbacks *cb = &rc->cfg.callbacks;
    if (m->req_kind == TERN_RDV_INTRODUCE && m->has_peer_id) {
        if (!take_intro(rc, m->peer_id)) {
            rc->st.unexpected++;
            return;
        }
        rc->st.intro_failed++;
        if (cb->on_intro_failed) cb->on_intro_failed(rc, m->peer_id, m->error, rc->cfg.user_data);
        return;
    }
    if (m->req_kind == TERN_RDV_CALL && m->has_call_id) {
        if (!take_call(rc, m->call_id)) {
            rc->st.unexpected++;
            return;
        }
        rc->st.call_errors++;
    }
    if (cb->on_error) cb->on_error(rc, m, rc->cfg.user_data);
}

int tern_rdv_client_on_message(tern_rdv_client *rc, tern_conn *conn, uint64_t flow_id,
                               const uint8_t *data, size_t len, uint64_t now)
{
    (void)flow_id;
    if (conn == NULL || conn != rc->conn) return 0;
    tern_rdv_msg m;
    if (tern_rdv_decode(data, len, &m) != TERN_OK) {
        rc->st.bad_messages++;
        return 1;
    }
    rc->st.rx_messages++;
    const tern_rdv_client_callbacks *cb = &rc->cfg.callbacks;
    void *u = rc->cfg.user_data;
    switch (m.kind) {
    case TERN_RDV_REGISTERED: {
        const tern_rdv_cand *pub = NULL;
        for (size_t i = 0; i < m.n_cands && pub == NULL; i++)
            if (m.cands[i].kind == TERN_RDV_CAND_PUBLIC) pub = &m.cands[i];
        if (pub == NULL) {
            rc->st.unexpected++;
            break;
        }
        rc->registered = 1;
        rc->public_addr = pub->addr;
        if (cb->on_registered) cb->on_registered(rc, &rc->public_addr, u);
        break;
    }
    case TERN_RDV_PEER_INFO:
        on_peer_info(rc, &m, now);
        break;
    case TERN_RDV_INTRODUCED:
        on_introduced(rc, &m, now);
        break;
    case TERN_RDV_JOINED:
        if (cb->on_joined)
            cb->on_joined(rc, m.group, m.group_len, m.count, m.members, m.n_members, u);
        break;
    case TERN_RDV_PRESENCE:
        rc->st.presence++;
        if (cb->on_presence) cb->on_presence(rc, m.group, m.group_len, m.peer_id, m.event, u);
        break;
    case TERN_RDV_GROUP_MSG: {
        rc->st.group_msgs++;
        static const uint8_t nobody[TERN_PEER_ID_LEN];
        if (cb->on_group_msg)
            cb->on_group_msg(rc, m.group, m.group_len, m.has_peer_id ? m.peer_id : nobody,
                             m.payload, m.payload_len, u);
        break;
    }
    case TERN_RDV_OFFERED:
        if (cb->on_offered) cb->on_offered(rc, m.service, m.service_len, u);
        break;
    case TERN_RDV_CALL:
        if (!m.has_peer_id) { /* server -> provider calls name the caller */
            rc->st.unexpected++;
            break;
        }
        if (cb->on_call)
            cb->on_call(rc, m.service, m.service_len, m.method, m.method_len, m.call_id,
                        m.peer_id, m.has_timeout ? m.timeout_ms : 0, m.payload, m.payload_len, u);
        break;
    case TERN_RDV_REPLY:
        if (!take_call(rc, m.call_id)) {
            rc->st.unexpected++; /* late (timed out locally) or never asked */
            break;
        }
        rc->st.replies++;
        if (cb->on_reply) cb->on_reply(rc, m.call_id, m.status, m.payload, m.payload_len, u);
        break;
    case TERN_RDV_ERROR:
        on_error_msg(rc, &m);
        break;
    default: /* a client-to-server kind */
        rc->st.unexpected++;
        break;
    }
    return 1;
}

/* Fails one call locally with code (the ERROR the server would have sent). */
static void fail_call(tern_rdv_client *rc, uint64_t call_id, uint16_t code)
{
    tern_rdv_msg e;
    tern_rdv_msg_error(&e, TERN_RDV_CALL, code);
    e.has_call_id = 1;
    e.call_id = call_id;
    rc->st.call_errors++;
    if (rc->cfg.callbacks.on_error) rc->cfg.callbacks.on_error(rc, &e, rc->cfg.user_data);
}

void tern_rdv_client_on_gone(tern_rdv_client *rc, tern_conn *conn, uint64_t now)
{
    (void)now;
    if (conn == NULL || conn != rc->conn) return;
    rc->conn = NULL;
    rc->has_flow = 0;
    rc->registered = 0;
    rc->n_intros = 0;
    while (rc->n_calls > 0) {
        uint64_t id = rc->calls[--rc->n_calls].call_id;
        fail_call(rc, id, TERN_RDV_E_PROVIDER_GONE);
    }
}

uint64_t tern_rdv_client_next_deadline(const tern_rdv_client *rc)
{
    uint64_t t = TERN_TIME_NEVER;
    for (size_t i = 0; i < rc->n_calls; i++)
        if (rc->calls[i].deadline < t) t = rc->calls[i].deadline;
    for (size_t i = 0; i < rc->n_expects; i++)
        if (rc->expects[i].until < t) t = rc->expects[i].until;
    for (size_t i = 0; i < rc->n_held; i++)
        if (rc->helds[i].since + HELD_FORGET_NS < t) t = rc->helds[i].since + HELD_FORGET_NS;
    return t;
}

void tern_rdv_client_handle_expiry(tern_rdv_client *rc, uint64_t now)
{
    for (size_t i = 0; i < rc->n_expects;) {
        if (rc->expects[i].until <= now) rc->expects[i] = rc->expects[--rc->n_expects];
        else i++;
    }
    for (size_t i = 0; i < rc->n_held;) {
        if (rc->helds[i].since + HELD_FORGET_NS <= now) rc->helds[i] = rc->helds[--rc->n_held];
        else i++;
    }
    for (size_t i = 0; i < rc->n_calls;) {
        if (rc->calls[i].deadline > now) {
            i++;
            continue;
        }
        uint64_t id = rc->calls[i].call_id;
        rc->calls[i] = rc->calls[--rc->n_calls];
        rc->st.calls_timed_out_locally++;
        fail_call(rc, id, TERN_RDV_E_TIMEOUT);
    }
}
