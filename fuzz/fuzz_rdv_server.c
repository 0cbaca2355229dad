/*
 * libFuzzer target: the rendezvous server's state machine (tern/rendezvous.h, "server") with a
 * relay, facing four clients that completed real handshakes in memory (authenticated peers with
 * their own keys, as an attacker's clients would be).
 *
 * World (rebuilt every 256 inputs): a server endpoint S whose callbacks feed the rendezvous
 * server exactly as ternd's do (on_accept, on_message, on_closed / on_conn_free -> on_gone), a
 * relay the server opens a session on for every introduction, and four client endpoints, each
 * with its own long-term key and one connection to S. When the world is built, a warm-up fills
 * every table of the server to the most any input can reach (each client joins groups, offers
 * services and places calls until a limit says no), then every client leaves: the server's
 * accounted memory at that point is the baseline (its hash tables and deadline heap give their
 * arrays back when they empty, src/base, so what stays is what the server holds for itself).
 *
 * Each input is a program of at most MAX_STEPS steps, after the four connections were handed to
 * the server (tern_rdv_server_on_accept). A step is an op byte:
 *   bits 0-1  which client;
 *   bits 2-4  action: 0, 1 a structured message (a kind and fields built from the next bytes,
 *             encoded with tern_rdv_encode) handed to tern_rdv_server_on_message; 2 the same
 *             sent on the client's flow through the transport; 3 raw bytes (length byte, bytes)
 *             handed to on_message; 4 the client closes its connection and connects again; 5 the
 *             client connects again from a new port without closing (the server replaces the old
 *             connection when the new one registers); 6 a relay datagram (length byte, bytes) on
 *             the last channel the client was given; 7 nothing but time, except that with
 *             bits 0-1 = k > 0 the server's k-th allocation from now fails (its NOMEM paths);
 *   bits 5-7  how far the clock moves afterwards (0 .. 61 s), then every timer due runs and the
 *             datagrams are exchanged.
 * Everything the server sends a client must decode, and say only true things (peer IDs that are
 * the hash of the key beside them and belong to one of the clients, the client's own address).
 * After each step: the server's stats are consistent (registered <= peers <= connections handed
 * to it, memberships <= peers x max_groups_per_peer, calls within their limits) and its
 * accounted memory equals what its allocation hook holds (every free names the size that was
 * allocated). At the end of the input every connection leaves (on_gone): nothing may remain
 * (peers, groups, services, calls, joins == leaves) and the accounted memory must be back at the
 * baseline exactly.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern/relay.h"
#include "tern/rendezvous.h"

#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NC 4             /* clients */
#define MAX_STEPS 32
#define MAX_RECONNECTS 3 /* per input (each costs a handshake) */
#define MAX_SCONNS 32
#define MAX_GROUPS_PER_PEER 8
#define MAX_CALLS 32
#define MAX_CALLS_PER_PEER 8
#define UNIX_OFFSET 1700000000

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c)) fz_die(#c);                                                                     \
    } while (0)

/* ---------------------------------------------------------------- determinism, memory */

/* ---------------------------------------------------------------- the world */

static tern_endpoint *srv, *cli[NC];
static tern_keypair skey, ckey[NC];
static uint8_t cid[NC][TERN_PEER_ID_LEN];
static tern_addr sa;
static tern_conn *cc[NC];      /* each client's current connection */
static tern_addr ca[NC];       /* its local address */
static uint64_t cflow[NC];     /* its request flow (0: none yet; flow IDs are stored + 1) */
static uint16_t next_port[NC];
static tern_conn *sconn[MAX_SCONNS]; /* the server's connections, accepted to freed */
static int attached;           /* the server's callbacks feed the rendezvous server */
static tern_rdv_server *rdv;
static tern_relay *relay;
static tern_rdv_config rcfg;
static uint64_t now, baseline;
static unsigned runs;
static uint8_t secret[TERN_RDV_SECRET_LEN] = {7, 7, 7};
/* what the clients learned from the server */
static uint8_t chan[NC][TERN_RELAY_CHANNEL_LEN];
static int has_chan[NC];
static uint64_t sids[NC][4]; /* server call IDs of the calls routed to each client */
static unsigned n_sids[NC];
static uint8_t dgbuf[32 * TERN_MAX_DATAGRAM];

static int client_of_id(const uint8_t *id)
{
    for (int i = 0; i < NC; i++)
        if (memcmp(id, cid[i], TERN_PEER_ID_LEN) == 0) return i;
    return -1;
}

static int srv_accept(tern_conn *c, void *u)
{
    (void)u;
    int slot = -1;
    for (int i = 0; i < MAX_SCONNS; i++)
        if (sconn[i] == NULL) {
            slot = i;
            break;
        }
    if (slot < 0) return TERN_ERR_LIMIT;
    if (attached) {
        int rc = tern_rdv_server_on_accept(rdv, c, now);
        if (rc != TERN_OK) return rc;
    }
    sconn[slot] = c;
    return 0;
}

static void srv_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *u)
{
    (void)u;
    if (attached) tern_rdv_server_on_message(rdv, c, flow, d, len, now);
}

static void srv_closed(tern_conn *c, int err, uint64_t code, const char *r, size_t rl, void *u)
{
    (void)err, (void)code, (void)r, (void)rl, (void)u;
    if (rdv) tern_rdv_server_on_gone(rdv, c, now);
}

static void srv_free(tern_conn *c, void *u)
{
    (void)u;
    if (rdv) tern_rdv_server_on_gone(rdv, c, now);
    for (int i = 0; i < MAX_SCONNS; i++)
        if (sconn[i] == c) sconn[i] = NULL;
}

/* Everything the server says to a client: it must decode and be true. */
static void cli_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *u)
{
    (void)c, (void)flow;
    int i = (int)(intptr_t)u;
    tern_rdv_msg m;
    if (tern_rdv_decode(d, len, &m) != TERN_OK) fz_die("the server sent a message that does not decode");
    switch (m.kind) {
    case TERN_RDV_REGISTERED:
        CHECK(m.n_cands >= 1 && m.cands[0].kind == TERN_RDV_CAND_PUBLIC);
        CHECK(m.cands[0].addr.family == TERN_AF_INET && m.cands[0].addr.ip[2] == 1 &&
              m.cands[0].addr.ip[3] == i);
        break;
    case TERN_RDV_PEER_INFO:
    case TERN_RDV_INTRODUCED: {
        uint8_t id[TERN_PEER_ID_LEN];
        tern_peer_id(m.pubkey, id);
        CHECK(memcmp(id, m.peer_id, TERN_PEER_ID_LEN) == 0);
        int who = client_of_id(m.peer_id);
        CHECK(who >= 0 && who != i);
        CHECK(m.n_cands <= TERN_RDV_MAX_CANDS);
        if (m.has_channel) {
            memcpy(chan[i], m.channel, TERN_RELAY_CHANNEL_LEN);
            has_chan[i] = 1;
        }
        break;
    }
    case TERN_RDV_JOINED:
        CHECK(m.count >= 1 && m.n_members < m.count);
        for (size_t k = 0; k < m.n_members; k++) {
            int who = client_of_id(m.members + k * TERN_PEER_ID_LEN);
            CHECK(who >= 0 && who != i);
        }
        break;
    case TERN_RDV_PRESENCE:
    case TERN_RDV_GROUP_MSG:
        CHECK(client_of_id(m.peer_id) >= 0);
        break;
    case TERN_RDV_CALL:
        CHECK(client_of_id(m.peer_id) >= 0 && m.has_call_id);
        sids[i][n_sids[i]++ % 4] = m.call_id;
        break;
    case TERN_RDV_OFFERED:
    case TERN_RDV_REPLY:
    case TERN_RDV_ERROR:
        break;
    default:
        fz_die("the server sent a client-to-server kind");
    }
}

static void cli_free(tern_conn *c, void *u)
{
    int i = (int)(intptr_t)u;
    if (cc[i] == c) cc[i] = NULL;
}

/* Delivers datagrams between S and the clients until nothing moves. */
static void pump(void)
{
    tern_datagram d[32];
    for (int round = 0; round < 16; round++) {
        int moved = 0, n;
        for (int i = 0; i < NC; i++)
            while ((n = tern_endpoint_send(cli[i], now, d, 32, dgbuf, sizeof(dgbuf))) > 0) {
                for (int k = 0; k < n; k++)
                    if (tern_addr_equal(&d[k].remote, &sa))
                        tern_endpoint_recv(srv, now, &sa, &d[k].local, d[k].data, d[k].len);
                moved = 1;
            }
        while ((n = tern_endpoint_send(srv, now, d, 32, dgbuf, sizeof(dgbuf))) > 0) {
            for (int k = 0; k < n; k++) {
                const tern_addr *to = &d[k].remote;
                if (to->family == TERN_AF_INET && to->ip[0] == 10 && to->ip[1] == 0 &&
                    to->ip[2] == 1 && to->ip[3] < NC)
                    tern_endpoint_recv(cli[to->ip[3]], now, to, &sa, d[k].data, d[k].len);
            }
            moved = 1;
        }
        if (!moved) break;
    }
}

static void run_timers(void)
{
    if (tern_rdv_server_next_deadline(rdv) <= now) tern_rdv_server_handle_expiry(rdv, now);
    if (tern_relay_next_deadline(relay) <= now) tern_relay_handle_expiry(relay, now);
    if (tern_endpoint_next_deadline(srv) <= now) tern_endpoint_handle_expiry(srv, now);
    for (int i = 0; i < NC; i++)
        if (tern_endpoint_next_deadline(cli[i]) <= now) tern_endpoint_handle_expiry(cli[i], now);
    pump();
}

/* Client i connects (again) from a new port. Returns 1 when established. */
static int connect_client(int i)
{
    tern_addr_ipv4(&ca[i], 10, 0, 1, (uint8_t)i, next_port[i]++);
    cflow[i] = 0;
    has_chan[i] = 0;
    n_sids[i] = 0;
    cc[i] = NULL;
    tern_conn *c;
    if (tern_endpoint_connect(cli[i], now, &ca[i], &sa, skey.pub, &c) != TERN_OK) return 0;
    cc[i] = c;
    pump();
    return tern_conn_get_state(c) == TERN_CONN_ESTABLISHED;
}

static int live(int i)
{
    return cc[i] != NULL && tern_conn_get_state(cc[i]) == TERN_CONN_ESTABLISHED;
}

/* The server side of client i's current connection. */
static tern_conn *server_side(int i)
{
    if (!live(i)) return NULL;
    for (int k = 0; k < MAX_SCONNS; k++) {
        tern_conn *c = sconn[k];
        if (c && tern_conn_get_state(c) == TERN_CONN_ESTABLISHED &&
            tern_addr_equal(tern_conn_remote(c), &ca[i]))
            return c;
    }
    return NULL;
}

static void send_direct(int i, const uint8_t *msg, size_t len)
{
    tern_conn *s = server_side(i);
    if (s) tern_rdv_server_on_message(rdv, s, 0, msg, len, now);
}

static void send_flow(int i, const uint8_t *msg, size_t len)
{
    if (!live(i)) return;
    if (cflow[i] == 0) {
        tern_flow_config fc;
        tern_flow_config_default(&fc);
        uint64_t f;
        if (tern_flow_open(cc[i], &fc, &f) != TERN_OK) return;
        cflow[i] = f + 1;
    }
    (void)tern_flow_send(cc[i], cflow[i] - 1, now, msg, len, -1);
    pump();
}

static void send_msg(int i, const tern_rdv_msg *m, int via_flow)
{
    static uint8_t out[TERN_RDV_MAX_MSG];
    int n = tern_rdv_encode(m, out, sizeof(out));
    if (n < 0) return;
    if (via_flow) send_flow(i, out, (size_t)n);
    else send_direct(i, out, (size_t)n);
}

/* ---------------------------------------------------------------- checks */

static void check_stats(void)
{
    tern_rdv_stats st;
    tern_rdv_server_get_stats(rdv, &st);
    uint64_t handed = 0;
    for (int k = 0; k < MAX_SCONNS; k++) handed += sconn[k] != NULL;
    CHECK(st.mem_current == fz_live);
    CHECK(st.registered <= st.peers);
    CHECK(st.peers <= handed && st.peers <= rcfg.max_peers);
    CHECK(st.joins >= st.leaves);
    CHECK(st.joins - st.leaves <= st.peers * rcfg.max_groups_per_peer);
    CHECK(st.groups <= st.joins - st.leaves);
    CHECK(st.calls_pending <= rcfg.max_calls);
    CHECK(st.calls_pending <= st.peers * rcfg.max_calls_per_peer);
    CHECK(st.calls >= st.replies + st.call_timeouts + st.call_gone + st.calls_pending);
    CHECK(st.introductions <= st.relay_opened + st.relay_refused);
    tern_relay_stats rs;
    tern_relay_get_stats(relay, &rs);
    CHECK(rs.sessions <= rs.opened);
}

/* Every connection leaves the rendezvous server: nothing of them may remain. */
static void detach_all(void)
{
    fz_fail_at = 0;
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_RDV_SERVER_VERBOSE") != NULL;
    if (verbose && attached) {
        tern_rdv_stats v;
        tern_rdv_server_get_stats(rdv, &v);
        fprintf(stderr,
                "peers %llu registered %llu groups %llu services %llu calls_pending %llu | "
                "registrations %llu introductions %llu joins %llu leaves %llu group_msgs %llu "
                "rate_dropped %llu/%llu calls %llu replies %llu timeouts %llu gone %llu "
                "no_service %llu late %llu tokens_rejected %llu relay %llu/%llu bad %llu tx %llu "
                "mem %llu\n",
                (unsigned long long)v.peers, (unsigned long long)v.registered,
                (unsigned long long)v.groups, (unsigned long long)v.services,
                (unsigned long long)v.calls_pending, (unsigned long long)v.registrations,
                (unsigned long long)v.introductions, (unsigned long long)v.joins,
                (unsigned long long)v.leaves, (unsigned long long)v.group_msgs,
                (unsigned long long)v.rate_dropped_group, (unsigned long long)v.rate_dropped_peer,
                (unsigned long long)v.calls, (unsigned long long)v.replies,
                (unsigned long long)v.call_timeouts, (unsigned long long)v.call_gone,
                (unsigned long long)v.call_no_service, (unsigned long long)v.late_replies,
                (unsigned long long)v.token_rejected, (unsigned long long)v.relay_opened,
                (unsigned long long)v.relay_refused, (unsigned long long)v.bad_messages,
                (unsigned long long)v.tx_messages, (unsigned long long)v.mem_current);
    }
    for (int k = 0; k < MAX_SCONNS; k++)
        if (sconn[k]) tern_rdv_server_on_gone(rdv, sconn[k], now);
    attached = 0;
    tern_rdv_stats st;
    tern_rdv_server_get_stats(rdv, &st);
    CHECK(st.peers == 0 && st.registered == 0 && st.groups == 0 && st.services == 0 &&
          st.calls_pending == 0);
    CHECK(st.joins == st.leaves);
    CHECK(st.mem_current == fz_live);
    if (baseline && st.mem_current != baseline) {
        fprintf(stderr, "fuzz_rdv_server: %llu bytes accounted after every peer left, baseline %llu\n",
                (unsigned long long)st.mem_current, (unsigned long long)baseline);
        fz_die("the rendezvous server kept memory after every connection left");
    }
}

static void attach_all(void)
{
    attached = 1;
    for (int k = 0; k < MAX_SCONNS; k++)
        if (sconn[k] && tern_conn_get_state(sconn[k]) == TERN_CONN_ESTABLISHED)
            (void)tern_rdv_server_on_accept(rdv, sconn[k], now);
}

/* ---------------------------------------------------------------- messages from bytes */

typedef struct rd {
    const uint8_t *p, *end;
} rd;

static uint8_t u8(rd *r)
{
    return r->p < r->end ? *r->p++ : 0;
}

static uint8_t names[16][TERN_RDV_MAX_NAME];
static uint8_t big[TERN_RDV_MAX_PAYLOAD];

/* A name: mostly one of a few short ones (so that requests meet), or odd lengths. */
static void pick_name(rd *r, char base, const uint8_t **p, size_t *len, int slot)
{
    uint8_t b = u8(r);
    uint8_t *n = names[slot];
    switch (b >> 5) {
    case 0: case 1: case 2: case 3: /* "g0" .. "g7" */
        n[0] = (uint8_t)base, n[1] = (uint8_t)('0' + (b & 7));
        *len = 2;
        break;
    case 4: /* one byte, any value */
        n[0] = (uint8_t)(b & 0x1f);
        *len = 1;
        break;
    case 5: /* the longest name */
        memset(n, base, TERN_RDV_MAX_NAME);
        n[0] = (uint8_t)('0' + (b & 7));
        *len = TERN_RDV_MAX_NAME;
        break;
    default: { /* bytes from the input */
        size_t l = 1 + (b & 0x3f) % 16;
        for (size_t k = 0; k < l; k++) n[k] = u8(r);
        *len = l;
        break;
    }
    }
    *p = n;
}

static void pick_id(rd *r, int self, uint8_t id[TERN_PEER_ID_LEN])
{
    uint8_t b = u8(r);
    if (b < 0xe0) {
        int who = b & 3;
        if (b & 4) who = self; /* oneself, now and then */
        memcpy(id, cid[who], TERN_PEER_ID_LEN);
    } else {
        memset(id, b, TERN_PEER_ID_LEN);
    }
}

static void pick_token(rd *r, int self, uint8_t kind, const tern_rdv_msg *m, tern_rdv_msg *out)
{
    uint8_t b = u8(r);
    out->has_token = 1;
    const uint8_t *subj = cid[self];
    size_t sl = TERN_PEER_ID_LEN;
    uint8_t tk = TERN_RDV_TOKEN_REGISTER;
    if (kind == TERN_RDV_JOIN && m->group) subj = m->group, sl = m->group_len, tk = TERN_RDV_TOKEN_JOIN;
    if (kind == TERN_RDV_OFFER && m->service)
        subj = m->service, sl = m->service_len, tk = TERN_RDV_TOKEN_OFFER;
    uint64_t unow = UNIX_OFFSET + now / TERN_NS_PER_S;
    switch (b & 3) {
    case 0: /* valid */
        (void)tern_rdv_token_make(secret, tk, subj, sl, unow + 3600, out->token);
        break;
    case 1: /* expired */
        (void)tern_rdv_token_make(secret, tk, subj, sl, unow - 1 - (b >> 2), out->token);
        break;
    case 2: /* valid for another kind */
        (void)tern_rdv_token_make(secret, (uint8_t)(1 + (tk % 3)), subj, sl, unow + 3600, out->token);
        break;
    default:
        memset(out->token, b, TERN_RDV_TOKEN_LEN);
        break;
    }
}

static void pick_payload(rd *r, tern_rdv_msg *m)
{
    uint8_t b = u8(r);
    m->has_payload = 1;
    if (b < 0xf0) {
        size_t l = b;
        if (l > (size_t)(r->end - r->p)) l = (size_t)(r->end - r->p);
        m->payload = r->p;
        m->payload_len = l;
        r->p += l;
    } else { /* large: 4 KiB steps up to the largest payload */
        size_t l = (size_t)(b - 0xef) * 4096;
        if (l > TERN_RDV_MAX_PAYLOAD) l = TERN_RDV_MAX_PAYLOAD;
        m->payload = big;
        m->payload_len = l;
    }
}

/* Builds one message for client `self` from the input: a kind, the fields it needs, and others
 * the flags byte asks for. */
static void build(rd *r, int self, tern_rdv_msg *m)
{
    static const uint8_t client_kinds[8] = {TERN_RDV_REGISTER, TERN_RDV_INTRODUCE, TERN_RDV_JOIN,
                                            TERN_RDV_LEAVE,    TERN_RDV_GROUP_MSG, TERN_RDV_OFFER,
                                            TERN_RDV_CALL,     TERN_RDV_REPLY};
    uint8_t kb = u8(r), flags = u8(r);
    uint8_t kind = (kb & 0x80) ? (uint8_t)(1 + (kb & 0x7f) % TERN_RDV_KIND_MAX_) : client_kinds[kb & 7];
    tern_rdv_msg_init(m, kind);
    int need_group = kind == TERN_RDV_JOIN || kind == TERN_RDV_JOINED || kind == TERN_RDV_LEAVE ||
                     kind == TERN_RDV_PRESENCE || kind == TERN_RDV_GROUP_MSG;
    int need_service = kind == TERN_RDV_OFFER || kind == TERN_RDV_OFFERED || kind == TERN_RDV_CALL;
    int need_id = kind == TERN_RDV_INTRODUCE || kind == TERN_RDV_PEER_INFO ||
                  kind == TERN_RDV_INTRODUCED || kind == TERN_RDV_PRESENCE;
    if (need_group || (flags & 0x01)) pick_name(r, 'g', &m->group, &m->group_len, 0);
    if (need_service || (flags & 0x02)) pick_name(r, 's', &m->service, &m->service_len, 1);
    if (kind == TERN_RDV_CALL || (flags & 0x04)) pick_name(r, 'm', &m->method, &m->method_len, 2);
    if (need_id || (flags & 0x08)) {
        m->has_peer_id = 1;
        pick_id(r, self, m->peer_id);
    }
    if (kind == TERN_RDV_REGISTER || kind == TERN_RDV_REGISTERED || (flags & 0x10)) {
        size_t n = u8(r) % (TERN_RDV_MAX_CANDS + 1);
        if (kind == TERN_RDV_REGISTERED && n == 0) n = 1;
        for (size_t k = 0; k < n; k++) {
            uint8_t a = u8(r), b = u8(r);
            tern_rdv_cand *c = &m->cands[m->n_cands++];
            c->kind = (uint8_t)(1 + a % 3);
            if (a & 0x80) {
                memset(&c->addr, 0, sizeof(c->addr));
                c->addr.family = TERN_AF_INET6;
                c->addr.ip[15] = b;
                c->addr.port = (uint16_t)(a << 8 | b);
            } else {
                tern_addr_ipv4(&c->addr, (a & 0x40) ? 192 : 10, 0, (uint8_t)(a & 3), b,
                               (uint16_t)(1000 + b));
            }
        }
    }
    if ((kind == TERN_RDV_REGISTER || kind == TERN_RDV_JOIN || kind == TERN_RDV_OFFER) &&
        (flags & 0x20))
        pick_token(r, self, kind, m, m);
    if (kind == TERN_RDV_CALL || kind == TERN_RDV_REPLY || (flags & 0x40)) {
        uint8_t b = u8(r);
        m->has_call_id = 1;
        if (kind == TERN_RDV_REPLY && !(b & 0x80) && n_sids[self])
            m->call_id = sids[self][(n_sids[self] - 1 - (b & 3)) % 4];
        else
            m->call_id = (b & 0x40) ? UINT64_MAX - (b & 3) : b;
    }
    if (kind == TERN_RDV_CALL && (flags & 0x80)) {
        static const uint32_t t[8] = {0, 1, 50, 1000, 3000, 20000, 60000, UINT32_MAX};
        m->has_timeout = 1;
        m->timeout_ms = t[u8(r) & 7];
    }
    if (kind == TERN_RDV_REPLY) {
        m->has_status = 1;
        m->status = u8(r);
    }
    if (kind == TERN_RDV_GROUP_MSG || kind == TERN_RDV_CALL || kind == TERN_RDV_REPLY)
        pick_payload(r, m);
    /* the fields of server-to-client kinds (the server must refuse those politely) */
    if (kind == TERN_RDV_PEER_INFO || kind == TERN_RDV_INTRODUCED) {
        m->has_pubkey = m->has_nonce = 1;
        memset(m->pubkey, 0x42, TERN_KEY_LEN);
        memset(m->nonce, 0x43, TERN_RDV_NONCE_LEN);
    }
    if (kind == TERN_RDV_JOINED) m->has_count = 1, m->count = u8(r);
    if (kind == TERN_RDV_PRESENCE) m->has_event = 1, m->event = (uint8_t)(1 + (u8(r) & 1));
    if (kind == TERN_RDV_ERROR) m->has_error = 1, m->error = u8(r), m->req_kind = u8(r);
}

/* ---------------------------------------------------------------- setup and warm-up */

static tern_rdv_stats stats(void)
{
    tern_rdv_stats st;
    tern_rdv_server_get_stats(rdv, &st);
    return st;
}

static void warm_up(void)
{
    attach_all();
    tern_rdv_msg m;
    for (int i = 0; i < NC; i++) {
        tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
        m.n_cands = 1;
        m.cands[0].kind = TERN_RDV_CAND_LOCAL;
        tern_addr_ipv4(&m.cands[0].addr, 192, 168, 0, (uint8_t)i, 1000);
        send_msg(i, &m, 0);
    }
    CHECK(stats().registered == NC);
    uint8_t name[16];
    for (int i = 0; i < NC; i++) {
        for (int k = 0; k < 4 * MAX_STEPS; k++) { /* groups until a limit says no */
            uint64_t before = stats().joins;
            tern_rdv_msg_init(&m, TERN_RDV_JOIN);
            int l = snprintf((char *)name, sizeof(name), "w%d.%d", i, k);
            m.group = name, m.group_len = (size_t)l;
            send_msg(i, &m, 0);
            if (stats().joins == before) break;
        }
        for (int k = 0; k < MAX_STEPS; k++) { /* services: at least as many as one input offers */
            uint64_t before = stats().services;
            tern_rdv_msg_init(&m, TERN_RDV_OFFER);
            int l = snprintf((char *)name, sizeof(name), "ws%d.%d", i, k);
            m.service = name, m.service_len = (size_t)l;
            m.has_token = 1;
            (void)tern_rdv_token_make(secret, TERN_RDV_TOKEN_OFFER, name, (size_t)l,
                                      UNIX_OFFSET + now / TERN_NS_PER_S + 3600, m.token);
            send_msg(i, &m, 0);
            if (stats().services == before) break;
        }
        for (int j = 0; j < NC; j++) {
            if (j == i) continue;
            tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
            m.has_peer_id = 1;
            memcpy(m.peer_id, cid[j], TERN_PEER_ID_LEN);
            send_msg(i, &m, 0);
        }
    }
    for (int k = 0; k < 2 * MAX_CALLS; k++) { /* calls until the limits say no */
        int i = k % NC;
        uint64_t before = stats().calls_pending;
        tern_rdv_msg_init(&m, TERN_RDV_CALL);
        int l = snprintf((char *)name, sizeof(name), "ws%d.0", (i + 1) % NC);
        m.service = name, m.service_len = (size_t)l;
        m.method = (const uint8_t *)"m", m.method_len = 1;
        m.has_call_id = 1, m.call_id = (uint64_t)k;
        m.has_payload = 1;
        send_msg(i, &m, 0);
        if (stats().calls_pending == before && k >= NC) break;
    }
    pump();
    detach_all();
    baseline = stats().mem_current;
}

static void world_free(void)
{
    attached = 0;
    for (int i = 0; i < NC; i++) {
        if (cli[i]) tern_endpoint_del(cli[i]);
        cli[i] = NULL;
        cc[i] = NULL;
    }
    if (srv) tern_endpoint_del(srv); /* frees its connections without callbacks */
    srv = NULL;
    memset(sconn, 0, sizeof(sconn));
    if (rdv) tern_rdv_server_del(rdv);
    rdv = NULL;
    if (relay) tern_relay_del(relay);
    relay = NULL;
    CHECK(fz_live == 0);
}

static void world_new(void)
{
    world_free();
    fz_rng_state = 13;
    uint8_t priv[32];
    fz_rand(priv, sizeof(priv), NULL);
    tern_keypair_from_private(&skey, priv);
    for (size_t k = 0; k < sizeof(big); k++) big[k] = (uint8_t)(k * 7);
    now = 1000;
    tern_addr_ipv4(&sa, 10, 0, 0, 1, 4433);

    tern_relay_config lc;
    tern_relay_config_default(&lc);
    lc.rand = fz_rand;
    lc.max_sessions = 4; /* both relay limits within reach of four clients */
    lc.max_per_addr = 2;
    lc.idle_timeout_ns = 30 * TERN_NS_PER_S;
    lc.burst_bytes = 20000;
    lc.rate_bytes_per_s = 100000;
    if (tern_relay_new(&lc, &relay) != TERN_OK) abort();

    tern_rdv_config_default(&rcfg);
    rcfg.mem = &fz_mem;
    rcfg.rand = fz_rand;
    rcfg.max_peers = NC + 2;
    rcfg.max_groups_per_peer = MAX_GROUPS_PER_PEER;
    rcfg.bootstrap_recent = 1;
    rcfg.bootstrap_random = 1;
    rcfg.group_rate = 20, rcfg.group_burst = 6;
    rcfg.peer_rate = 5, rcfg.peer_burst = 5;
    rcfg.max_calls = MAX_CALLS;
    rcfg.max_calls_per_peer = MAX_CALLS_PER_PEER;
    rcfg.default_timeout_ms = 2000;
    rcfg.max_timeout_ms = 20000;
    rcfg.has_relay = 1;
    tern_addr_ipv4(&rcfg.relay, 10, 0, 0, 1, 3478);
    rcfg.relay_sessions = relay;
    rcfg.has_secret = 1;
    memcpy(rcfg.secret, secret, sizeof(secret));
    rcfg.require_offer_token = 1; /* offers need a token; register and join check one if given */
    rcfg.unix_offset_s = UNIX_OFFSET;
    if (tern_rdv_server_new(&rcfg, &rdv) != TERN_OK) abort();

    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.rand = fz_rand;
    cfg.settings.idle_timeout_ns = 3600 * TERN_NS_PER_S; /* time jumps must not end them */
    cfg.settings.max_flows = 1024;                        /* one server flow per input */
    cfg.settings.flow_window = 256;
    cfg.is_server = 1;
    cfg.has_static_key = 1;
    cfg.static_key = skey;
    cfg.callbacks.on_accept = srv_accept;
    cfg.callbacks.on_message = srv_message;
    cfg.callbacks.on_closed = srv_closed;
    cfg.callbacks.on_conn_free = srv_free;
    if (tern_endpoint_new(&cfg, now, &srv) != TERN_OK) abort();
    memset(&cfg.callbacks, 0, sizeof(cfg.callbacks));
    cfg.callbacks.on_message = cli_message;
    cfg.callbacks.on_conn_free = cli_free;
    for (int i = 0; i < NC; i++) {
        fz_rand(priv, sizeof(priv), NULL);
        tern_keypair_from_private(&ckey[i], priv);
        tern_peer_id(ckey[i].pub, cid[i]);
        cfg.static_key = ckey[i];
        cfg.user_data = (void *)(intptr_t)i;
        if (tern_endpoint_new(&cfg, now, &cli[i]) != TERN_OK) abort();
        next_port[i] = 5000;
        if (!connect_client(i)) abort();
    }
    warm_up();
}

/* ---------------------------------------------------------------- one input */

static const uint64_t dt_ns[8] = {0,
                                  TERN_NS_PER_MS,
                                  10 * TERN_NS_PER_MS,
                                  100 * TERN_NS_PER_MS,
                                  TERN_NS_PER_S,
                                  3 * TERN_NS_PER_S,
                                  11 * TERN_NS_PER_S,
                                  61 * TERN_NS_PER_S};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (srv == NULL || ++runs % 256 == 0) world_new();
    for (int i = 0; i < NC; i++)
        if (!live(i) && !connect_client(i)) {
            world_new();
            break;
        }
    attach_all();
    rd r = {data, data + size};
    int steps = 0, reconnects = 0;
    while (r.p < r.end && steps++ < MAX_STEPS) {
        uint8_t op = u8(&r);
        int i = op & 3, action = (op >> 2) & 7;
        tern_rdv_msg m;
        switch (action) {
        case 0:
        case 1:
        case 2:
            build(&r, i, &m);
            send_msg(i, &m, action == 2);
            break;
        case 3: {
            size_t l = u8(&r);
            if (l > (size_t)(r.end - r.p)) l = (size_t)(r.end - r.p);
            send_direct(i, r.p, l);
            r.p += l;
            break;
        }
        case 4:
        case 5:
            if (reconnects++ >= MAX_RECONNECTS) break;
            if (action == 4 && cc[i]) {
                (void)tern_conn_close(cc[i], now, 0, "bye", 3);
                pump();
            }
            (void)connect_client(i);
            break;
        case 6: {
            uint8_t buf[TERN_MAX_DATAGRAM + 16];
            memset(buf, 0, sizeof(buf));
            size_t l = u8(&r);
            if (l > (size_t)(r.end - r.p)) l = (size_t)(r.end - r.p);
            buf[0] = TERN_RELAY_TYPE;
            memcpy(buf + 1, chan[i], TERN_RELAY_CHANNEL_LEN);
            buf[TERN_RELAY_HDR_LEN] = 0x40;
            memcpy(buf + TERN_RELAY_HDR_LEN + 1, r.p, l);
            r.p += l;
            size_t n = TERN_RELAY_HDR_LEN + 1 + l;
            if (op & 0x80) n = TERN_RELAY_HDR_LEN + 1 + 8 * l; /* larger, up to the limit and past it */
            if (n > sizeof(buf)) n = sizeof(buf);
            tern_addr to;
            int rc = tern_relay_forward(relay, now, &ca[i], buf, n, &to);
            if (rc >= 0) {
                CHECK(has_chan[i] && (size_t)rc == n && n <= TERN_MAX_DATAGRAM);
                CHECK(to.family == TERN_AF_INET && to.ip[0] == 10 && to.ip[2] == 1 && to.ip[3] < NC &&
                      to.ip[3] != i);
            }
            break;
        }
        default: /* time; and an allocation that fails */
            if (op & 3) fz_fail_at = fz_allocs + (op & 3);
            break;
        }
        now += dt_ns[op >> 5];
        run_timers();
        check_stats();
    }
    run_timers();
    check_stats();
    detach_all();
    /* connections left behind by reconnections close now (they are freed as time passes) */
    for (int k = 0; k < MAX_SCONNS; k++) {
        tern_conn *c = sconn[k];
        int current = 0;
        for (int i = 0; i < NC; i++)
            if (c && live(i) && tern_addr_equal(tern_conn_remote(c), &ca[i])) current = 1;
        if (c && !current && tern_conn_get_state(c) == TERN_CONN_ESTABLISHED)
            (void)tern_conn_close(c, now, 0, "old", 3);
    }
    now += TERN_NS_PER_MS;
    run_timers();
    return 0;
}
