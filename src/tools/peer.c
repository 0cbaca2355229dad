/*
 * Peer mode of the tern command (see peer.h): the rendezvous session that tern ping/send/recv
 * --via and tern chat share.
 *
 * Design. One driver, bound to one UDP socket (--bind, default any address and a free port),
 * whose endpoint is is_server with this peer's key: the same socket talks to the rendezvous
 * server and to peers, because hole punching works only from the socket whose public address
 * the server saw, and because the target of an introduction accepts the initiator's handshake.
 * Once the server connection is up the session registers with its local candidates (the bound
 * port on every IPv4/IPv6 address of an interface that is up, from getifaddrs; loopback
 * addresses only when the server itself is on loopback; link-local IPv6 never), prints
 * "registered as <id> public <addr>" when REGISTERED arrives, then hands over to the command
 * (rcb.on_registered); for a command with one peer (peer_session_target) it first asks for that
 * peer's introduction, and reports the connection to it. The client's timer (call deadlines,
 * expectations) runs on a driver timer. A server connection that fails or ends stops the loop
 * with an exit code chosen from its error (as tern send's: 3 wrong key, 4 no answer, 5 lost).
 *
 * Transports: the server connection races UDP and TCP by default, or goes over UDP, TCP or TLS
 * alone (--transport, --stream; transport.c); "CMD: rendezvous server: transport ..." says which
 * once it is up, and again at each move. Peers punch over UDP; a peer whose server connection
 * runs over a stream is offered the relay over that stream (rdv_client.c), so the address in
 * "connected to <id> path relayed <addr>" then ends in /tcp or /tls.
 */
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern/udp.h"
#include "tools/peer.h"
#include "tools/tools.h"

void peer_opts_default(peer_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = 10000;
    o->idle_ms = 30000;
    tools_transport_opts_default(&o->transport);
}

int peer_parse_opt(peer_opts *o, int argc, char **argv, int *i)
{
    int t = tools_transport_opt(&o->transport, argc, argv, i);
    if (t != 0) return t;
    const char *a = argv[*i];
    const char **str = !strcmp(a, "--via")          ? &o->via
                       : !strcmp(a, "--server-key") ? &o->server_key
                       : !strcmp(a, "--key")        ? &o->key_file
                       : !strcmp(a, "--bind")       ? &o->bind
                       : !strcmp(a, "--token")      ? &o->token
                                                    : NULL;
    uint64_t *num = !strcmp(a, "--timeout")        ? &o->timeout_ms
                    : !strcmp(a, "--idle-timeout") ? &o->idle_ms
                                                   : NULL;
    if (str == NULL && num == NULL) return 0;
    if (*i + 1 >= argc) return -1;
    const char *v = argv[++*i];
    if (str) *str = v;
    else if (tools_parse_u64(v, 1, 3600000, 0, num) != 0) return -1;
    return 1;
}

void peer_usage_opts(FILE *f)
{
    fprintf(f,
            "  --via ADDR:PORT     the rendezvous server (ternd's tern listener, port 4433)\n"
            "  --server-key HEX    its public key (ternd prints it)\n"
            "  --key FILE          this peer's key (tern keygen; default: a fresh key). The peer\n"
            "                      ID is the hash of its public key and is printed at start\n"
            "  --bind ADDR:PORT    local socket (default 0.0.0.0:0: every address, a free port)\n"
            "  --timeout MS        give up a handshake (server or peer) after this long (10000)\n"
            "  --idle-timeout MS   declare a peer gone after this long unheard (30000)\n"
            "  --token HEX         registration token, for a ternd that requires one (`tern\n"
            "                      token register --key FILE` on the server's secret)\n"
            "Transport of the server connection (a peer without UDP is relayed over it):\n");
    tools_transport_usage(f);
}

int peer_parse_token(const char *cmd, const char *opt, const char *text,
                     uint8_t token[TERN_RDV_TOKEN_LEN])
{
    if (text == NULL || strlen(text) != 2 * TERN_RDV_TOKEN_LEN ||
        tern_hex_decode(text, token, TERN_RDV_TOKEN_LEN) != TERN_OK) {
        fprintf(stderr, "%s: %s needs %d hex characters (what `tern token` prints)\n", cmd, opt,
                2 * TERN_RDV_TOKEN_LEN);
        return -1;
    }
    return 0;
}

int peer_parse_id(const char *cmd, const char *text, uint8_t id[TERN_PEER_ID_LEN])
{
    if (text == NULL || strlen(text) != 2 * TERN_PEER_ID_LEN ||
        tern_hex_decode(text, id, TERN_PEER_ID_LEN) != TERN_OK) {
        fprintf(stderr, "%s: a peer ID is 64 hex characters (the `registered as` line of the "
                        "peer), not %s\n",
                cmd, text ? text : "nothing");
        return -1;
    }
    return 0;
}

const char *peer_path_kind(tern_conn *c, char *addr, size_t addr_len, uint64_t *moves)
{
    tern_path_info pi;
    tern_conn_path(c, &pi);
    tern_addr_format(&pi.remote, addr, addr_len);
    if (moves) *moves = pi.moves;
    return pi.relayed ? "relayed" : "direct";
}

/* ---------------------------------------------------------------- candidates */

static int is_loopback(const tern_addr *a)
{
    static const uint8_t v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return (a->family == TERN_AF_INET && a->ip[0] == 127) ||
           (a->family == TERN_AF_INET6 && memcmp(a->ip, v6lo, 16) == 0);
}

static int is_unspecified(const tern_addr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->ip, zero, a->family == TERN_AF_INET ? 4 : 16) == 0;
}

/* The local candidates: the bound address itself when it is specific, else the bound port on
 * each interface address of the socket's family. */
static size_t local_candidates(const peer_session *ps, tern_addr *out, size_t max)
{
    size_t n = 0;
    if (!is_unspecified(&ps->local)) {
        out[n++] = ps->local;
        return n;
    }
    int want_lo = is_loopback(&ps->server);
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0) return 0;
    for (struct ifaddrs *it = ifs; it && n < max; it = it->ifa_next) {
        if (it->ifa_addr == NULL || !(it->ifa_flags & IFF_UP)) continue;
        int fam = it->ifa_addr->sa_family;
        if (fam != AF_INET && fam != AF_INET6) continue;
        tern_addr a;
        socklen_t len = fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        if (tern_addr_from_sockaddr(&a, it->ifa_addr, len) != TERN_OK) continue;
        if (a.family != ps->local.family) continue;
        if (a.family == TERN_AF_INET6 && a.ip[0] == 0xfe && (a.ip[1] & 0xc0) == 0x80) continue;
        if (is_loopback(&a) && !want_lo) continue; /* only for a server on loopback */
        a.port = ps->local.port;
        int dup = 0;
        for (size_t i = 0; i < n && !dup; i++) dup = tern_addr_equal(&out[i], &a);
        if (!dup) out[n++] = a;
    }
    freeifaddrs(ifs);
    return n;
}

/* ---------------------------------------------------------------- endpoint callbacks */

static void rearm(peer_session *ps)
{
    if (ps->rdv == NULL || ps->rdv_timer == NULL) return;
    uint64_t t = tern_rdv_client_next_deadline(ps->rdv);
    if (t == TERN_TIME_NEVER) tern_driver_timer_cancel(ps->rdv_timer);
    else tern_driver_timer_set(ps->rdv_timer, t);
}

void peer_session_kick(peer_session *ps)
{
    rearm(ps);
    tern_driver_flush(ps->d);
}

static void on_rdv_timer(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)t;
    peer_session *ps = user;
    tern_rdv_client_handle_expiry(ps->rdv, tern_driver_now(d));
    rearm(ps);
}

static int s_accept(tern_conn *c, void *u)
{
    peer_session *ps = u;
    int rc = tern_rdv_client_accept(ps->rdv, c, tern_driver_now(ps->d));
    if (rc != TERN_OK) return rc;
    return ps->app.on_accept ? ps->app.on_accept(c, ps->user) : 0;
}

/* A handshake that beat its INTRODUCED waits for it (tern_rdv_client_hold). */
static int s_accept_hold(tern_conn *c, void *u)
{
    peer_session *ps = u;
    int held = tern_rdv_client_hold(ps->rdv, c, tern_driver_now(ps->d));
    if (held) rearm(ps); /* the held handshake is forgotten at the client's deadline */
    return held;
}

/* With a target (peer_session_target): 1 when c is another connection, which the command does
 * not hear of. */
static int not_target(const peer_session *ps, const tern_conn *c)
{
    return ps->link && c != ps->link->conn;
}

static void s_established(tern_conn *c, void *u)
{
    peer_session *ps = u;
    if (c != ps->srv) {
        if (not_target(ps, c)) return;
        if (ps->link) {
            char addr[64];
            const char *kind = peer_path_kind(c, addr, sizeof(addr), NULL);
            ps->target_connected = 1;
            printf("connected to %s path %s %s in %.3f ms\n", ps->target_hex, kind, addr,
                   (double)(tern_driver_now(ps->d) - ps->t_intro) / 1e6);
            fflush(stdout);
        }
        if (ps->app.on_established) ps->app.on_established(c, ps->user);
        return;
    }
    char label[64];
    snprintf(label, sizeof(label), "%s: rendezvous server", ps->cmd);
    tools_transport_connected(stdout, label, c, ps->t_connect, &ps->srv_cfg);
    tern_addr cands[6];
    size_t n = local_candidates(ps, cands, 6);
    int rc = tern_rdv_client_register(ps->rdv, tern_driver_now(ps->d), cands, n,
                                      ps->has_token ? ps->token : NULL);
    if (rc != TERN_OK) {
        fprintf(stderr, "%s: cannot register with %s: %s\n", ps->cmd, ps->where,
                tern_strerror(rc));
        ps->exit_code = XFER_EXIT_OTHER;
        tern_driver_stop(ps->d);
    }
}

static void s_message(tern_conn *c, uint64_t flow, const uint8_t *data, size_t len, void *u)
{
    peer_session *ps = u;
    if (tern_rdv_client_on_message(ps->rdv, c, flow, data, len, tern_driver_now(ps->d))) {
        rearm(ps);
        return;
    }
    if (!not_target(ps, c) && ps->app.on_message) ps->app.on_message(c, flow, data, len, ps->user);
}

static void s_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                     void *u)
{
    peer_session *ps = u;
    if (c != ps->srv) {
        if (ps->app.on_closed) ps->app.on_closed(c, err, code, reason, len, ps->user);
        return;
    }
    tern_rdv_client_on_gone(ps->rdv, c, tern_driver_now(ps->d));
    if (err == TERN_ERR_LOCAL_CLOSED) return;
    tools_close_note why;
    tools_close_note_set(&why, err, code, reason, len);
    char what[96];
    snprintf(what, sizeof(what), "the rendezvous server %s", ps->where);
    ps->srv_err = err;
    ps->exit_code = tools_explain_conn_error(ps->cmd, what, &why, ps->opts.timeout_ms,
                                             ps->opts.idle_ms);
    tern_driver_stop(ps->d);
}

static void s_free(tern_conn *c, void *u)
{
    peer_session *ps = u;
    if (c == ps->srv) {
        tern_rdv_client_on_gone(ps->rdv, c, tern_driver_now(ps->d));
        ps->srv = NULL;
        return;
    }
    if (ps->app.on_conn_free) ps->app.on_conn_free(c, ps->user);
}

static void s_rtt(tern_conn *c, uint64_t rtt, void *u)
{
    peer_session *ps = u;
    if (c != ps->srv && !not_target(ps, c) && ps->app.on_rtt) ps->app.on_rtt(c, rtt, ps->user);
}

static void s_datagram(tern_conn *c, const uint8_t *d, size_t len, void *u)
{
    peer_session *ps = u;
    if (c != ps->srv && ps->app.on_datagram) ps->app.on_datagram(c, d, len, ps->user);
}

static void s_flow_closed(tern_conn *c, uint64_t flow, void *u)
{
    peer_session *ps = u;
    if (c != ps->srv && ps->app.on_flow_closed) ps->app.on_flow_closed(c, flow, ps->user);
}

static void s_path(tern_conn *c, void *u)
{
    peer_session *ps = u;
    if (c == ps->srv && tern_conn_get_state(c) == TERN_CONN_ESTABLISHED) {
        char label[64];
        snprintf(label, sizeof(label), "%s: rendezvous server", ps->cmd);
        tools_transport_changed(stdout, label, c);
    }
    if (c == ps->srv || not_target(ps, c)) return;
    if (ps->link) {
        if (!ps->target_connected) return;
        char addr[64];
        const char *kind = peer_path_kind(c, addr, sizeof(addr), NULL);
        printf("path now %s %s\n", kind, addr);
        fflush(stdout);
    }
    if (ps->app.on_path) ps->app.on_path(c, ps->user);
}

static void s_flow_writable(tern_conn *c, uint64_t flow, void *u)
{
    peer_session *ps = u;
    if (c != ps->srv && ps->app.on_flow_writable) ps->app.on_flow_writable(c, flow, ps->user);
}

static void s_flow_acked(tern_conn *c, uint64_t flow, const tern_flow_progress *p, void *u)
{
    peer_session *ps = u;
    if (c != ps->srv && ps->app.on_flow_acked) ps->app.on_flow_acked(c, flow, p, ps->user);
}

/* Every release reaches the command, whose token it is (also from tern_driver_del). */
static void s_flow_release(tern_conn *c, uint64_t flow, void *token, int delivered, void *u)
{
    peer_session *ps = u;
    if (ps->app.on_flow_release) ps->app.on_flow_release(c, flow, token, delivered, ps->user);
}

/* ---------------------------------------------------------------- client callbacks */

/* The target cannot be reached: the command fails with exit code 1. */
static void target_failed(peer_session *ps)
{
    ps->exit_code = XFER_EXIT_OTHER;
    tern_driver_stop(ps->d);
}

static void r_registered(tern_rdv_client *rc, const tern_addr *pub, void *u)
{
    peer_session *ps = u;
    char txt[64];
    int first = !ps->registered;
    ps->registered = 1;
    ps->public_addr = *pub;
    if (first) {
        printf("registered as %s public %s\n", ps->id_hex, tern_addr_format(pub, txt, sizeof(txt)));
        fflush(stdout);
    }
    if (first && ps->link) {
        ps->t_intro = tern_driver_now(ps->d);
        int r = tern_rdv_client_introduce(rc, ps->t_intro, ps->target);
        if (r != TERN_OK) {
            fprintf(stderr, "%s: cannot ask for an introduction: %s\n", ps->cmd,
                    tern_strerror(r));
            target_failed(ps);
        }
    }
    if (first && ps->rcb.on_registered) ps->rcb.on_registered(rc, pub, ps->user);
    rearm(ps);
}

static void r_peer_conn(tern_rdv_client *rc, const uint8_t *id, tern_conn *c, int err, void *u)
{
    peer_session *ps = u;
    if (ps->link && c == NULL) {
        printf("error: cannot connect to %s: %s\n", ps->target_hex, tern_strerror(err));
        fflush(stdout);
        target_failed(ps);
    } else if (ps->link) {
        ps->link->conn = c;
    }
    if (ps->rcb.on_peer_conn) ps->rcb.on_peer_conn(rc, id, c, err, ps->user);
    rearm(ps);
}

static void r_intro_failed(tern_rdv_client *rc, const uint8_t *id, int code, void *u)
{
    peer_session *ps = u;
    if (ps->link) {
        if (code == TERN_RDV_E_UNKNOWN_PEER)
            printf("error: unknown peer %s\n", ps->target_hex);
        else
            printf("error: introduction to %s failed: %s\n", ps->target_hex,
                   tern_rdv_error_name(code));
        fflush(stdout);
        target_failed(ps);
    }
    if (ps->rcb.on_intro_failed) ps->rcb.on_intro_failed(rc, id, code, ps->user);
    rearm(ps);
}

#define FORWARD(name, params, args)                                                                \
    static void r_##name params                                                                    \
    {                                                                                              \
        peer_session *ps = u;                                                                      \
        if (ps->rcb.on_##name) ps->rcb.on_##name args;                                             \
        rearm(ps);                                                                                 \
    }

FORWARD(introduced, (tern_rdv_client *rc, const uint8_t *id, int err, void *u),
        (rc, id, err, ps->user))
FORWARD(joined,
        (tern_rdv_client *rc, const uint8_t *g, size_t gl, uint32_t n, const uint8_t *m,
         size_t nm, void *u),
        (rc, g, gl, n, m, nm, ps->user))
FORWARD(presence,
        (tern_rdv_client *rc, const uint8_t *g, size_t gl, const uint8_t *id, int ev, void *u),
        (rc, g, gl, id, ev, ps->user))
FORWARD(group_msg,
        (tern_rdv_client *rc, const uint8_t *g, size_t gl, const uint8_t *from,
         const uint8_t *d, size_t len, void *u),
        (rc, g, gl, from, d, len, ps->user))

/* A refused REGISTER ends the session at once with one line (nothing else can work without
 * it); other errors go to the command. */
static void r_error(tern_rdv_client *rc, const tern_rdv_msg *e, void *u)
{
    peer_session *ps = u;
    if (e->req_kind == TERN_RDV_REGISTER && !ps->registered) {
        fprintf(stderr, "%s: ternd refused registration: %s\n", ps->cmd,
                tern_rdv_error_name(e->error));
        ps->exit_code = XFER_EXIT_OTHER;
        tern_driver_stop(ps->d);
        return;
    }
    if (ps->rcb.on_error) ps->rcb.on_error(rc, e, ps->user);
    rearm(ps);
}

/* ---------------------------------------------------------------- life */

int peer_session_start(peer_session *ps, const char *cmd, const peer_opts *o,
                       const tern_callbacks *app, const tern_rdv_client_callbacks *rcb, void *user,
                       int accept_any)
{
    memset(ps, 0, sizeof(*ps));
    ps->cmd = cmd;
    ps->opts = *o;
    if (app) ps->app = *app;
    if (rcb) ps->rcb = *rcb;
    ps->user = user;
    uint8_t server_pub[TERN_KEY_LEN];
    if (o->via == NULL || o->server_key == NULL) {
        fprintf(stderr, "%s: peer mode needs --via ADDR:PORT and --server-key HEX\n", cmd);
        return XFER_EXIT_USAGE;
    }
    if (tools_server_key(cmd, o->server_key, server_pub) != 0) return XFER_EXIT_USAGE;
    if (o->token) {
        if (peer_parse_token(cmd, "--token", o->token, ps->token) != 0) return XFER_EXIT_USAGE;
        ps->has_token = 1;
    }
    if (tools_resolve(o->via, 4433, &ps->server) != 0) return XFER_EXIT_USAGE;
    tern_addr_format(&ps->server, ps->where, sizeof(ps->where));

    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.n_listen = 1;
    if (o->bind) {
        if (tools_resolve(o->bind, 0, &dc.listen[0]) != 0) return XFER_EXIT_USAGE;
    } else if (ps->server.family == TERN_AF_INET6) {
        tern_addr_parse(&dc.listen[0], "[::]:0");
    } else {
        tern_addr_ipv4(&dc.listen[0], 0, 0, 0, 0, 0);
    }
    dc.endpoint.is_server = 1;
    dc.endpoint.has_static_key = 1;
    int rc = o->key_file ? tern_keyfile_read(o->key_file, &dc.endpoint.static_key)
                         : tern_keypair_generate(&dc.endpoint.static_key);
    if (rc != TERN_OK) {
        fprintf(stderr, "%s: cannot read the key %s: %s\n", cmd, o->key_file ? o->key_file : "",
                rc == TERN_ERR_MALFORMED ? "not a tern key file" : "unreadable");
        return XFER_EXIT_USAGE;
    }
    tern_peer_id(dc.endpoint.static_key.pub, ps->id);
    tern_hex_encode(ps->id, TERN_PEER_ID_LEN, ps->id_hex);
    dc.endpoint.settings.handshake_timeout_ns = o->timeout_ms * TERN_NS_PER_MS;
    dc.endpoint.settings.idle_timeout_ns = o->idle_ms * TERN_NS_PER_MS;
    dc.endpoint.callbacks.on_accept = s_accept;
    dc.endpoint.callbacks.on_accept_hold = s_accept_hold;
    dc.endpoint.callbacks.on_established = s_established;
    dc.endpoint.callbacks.on_message = s_message;
    dc.endpoint.callbacks.on_closed = s_closed;
    dc.endpoint.callbacks.on_conn_free = s_free;
    dc.endpoint.callbacks.on_rtt = s_rtt;
    dc.endpoint.callbacks.on_datagram = s_datagram;
    dc.endpoint.callbacks.on_flow_closed = s_flow_closed;
    dc.endpoint.callbacks.on_path = s_path;
    dc.endpoint.callbacks.on_flow_writable = s_flow_writable;
    dc.endpoint.callbacks.on_flow_acked = s_flow_acked;
    dc.endpoint.callbacks.on_flow_release = s_flow_release;
    dc.endpoint.user_data = ps;
    rc = tern_driver_new(&dc, &ps->d);
    tern_keypair_wipe(&dc.endpoint.static_key);
    if (rc != TERN_OK) {
        fprintf(stderr, "%s: cannot open a socket: %s\n", cmd, tern_strerror(rc));
        return XFER_EXIT_OTHER;
    }
    tern_driver_local_addr(ps->d, 0, &ps->local);
    rc = tern_driver_timer_new(ps->d, on_rdv_timer, ps, &ps->rdv_timer);
    if (rc == TERN_OK &&
        tools_transport_connect_cfg(cmd, &o->transport, &ps->server, server_pub, &ps->srv_cfg) != 0)
        return XFER_EXIT_USAGE;
    ps->t_connect = tools_now_ns();
    if (rc == TERN_OK) rc = tern_driver_connect_opts(ps->d, &ps->srv_cfg, &ps->srv);
    if (rc != TERN_OK) {
        fprintf(stderr, "%s: cannot connect to %s: %s\n", cmd, ps->where, tern_strerror(rc));
        return XFER_EXIT_OTHER;
    }
    tern_rdv_client_config cc;
    tern_rdv_client_config_default(&cc);
    cc.local = ps->local;
    cc.accept_any = accept_any;
    cc.user_data = ps;
    cc.callbacks.on_registered = r_registered;
    cc.callbacks.on_peer_conn = r_peer_conn;
    cc.callbacks.on_intro_failed = r_intro_failed;
    cc.callbacks.on_introduced = r_introduced;
    cc.callbacks.on_joined = r_joined;
    cc.callbacks.on_presence = r_presence;
    cc.callbacks.on_group_msg = r_group_msg;
    cc.callbacks.on_error = r_error;
    rc = tern_rdv_client_new(&cc, ps->srv, &ps->rdv);
    if (rc != TERN_OK) {
        fprintf(stderr, "%s: out of memory\n", cmd);
        return XFER_EXIT_OTHER;
    }
    return 0;
}

void peer_session_target(peer_session *ps, const uint8_t id[TERN_PEER_ID_LEN], tools_conn *link)
{
    ps->link = link;
    link->d = ps->d;
    memcpy(ps->target, id, TERN_PEER_ID_LEN);
    tern_hex_encode(id, TERN_PEER_ID_LEN, ps->target_hex);
}

void peer_session_end(peer_session *ps, uint64_t code, const char *reason, uint64_t grace_ns)
{
    tools_session_close(ps->d, ps->rdv_timer, code, reason, grace_ns);
    ps->rdv_timer = NULL;
    ps->d = NULL;
    tern_rdv_client_del(ps->rdv);
    ps->rdv = NULL;
}
