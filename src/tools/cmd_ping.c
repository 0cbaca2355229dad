/*
 * tern ping: round-trip times to a tern listener, on the driver's ready loop.
 *
 * Connects to ADDR:PORT pinning --server-key, prints the handshake time, then sends one PING at
 * a time (tern_conn_ping; the core retransmits it until its PONG arrives, and on_rtt reports the
 * sample), each --interval ms after the previous one was sent, and prints every RTT and the
 * min/avg/max at the end. A driver timer paces the pings; tern_driver_stop() (also from the
 * SIGINT/SIGTERM handler) ends the loop, and tern_driver_shutdown() closes the connection
 * gracefully. The exit code says what happened (see usage()). --transport chooses UDP, TCP, TLS
 * or UDP raced with a stream (the default; transport.c); the transport and address in use are
 * printed once connected and at each move.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern/driver.h"
#include "tools/tools.h"

typedef struct ping_state {
    tools_conn link; /* first: tools_on_closed, tools_on_conn_free */
    tools_pinger pg;
    char where[64];
    uint64_t idle_ms, timeout_ms;
    uint64_t t_connect;         /* tools_now_ns() at the connect call */
    tern_driver_connect_cfg cc; /* how it was opened */
} ping_state;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tern ping ADDR:PORT --server-key HEX [options]\n"
            "       tern ping PEER_ID --via ADDR:PORT --server-key HEX  (a peer: --via --help)\n"
            "  --server-key HEX    the listener's public key (ternd prints it; tern keygen too)\n"
            "  --count N           pings to send (default 5; 0: until interrupted)\n"
            "  --interval MS       between pings (default 1000)\n"
            "  --timeout MS        give up the handshake after this long (default 5000)\n"
            "  --idle-timeout MS   declare the peer gone after this long unheard (default 30000)\n");
    tools_transport_usage(f);
    fprintf(f,
            "Prints \"transport tcp ADDR/tcp, connected N ms after the first attempt\" once\n"
            "connected and \"transport now ...\" at each move.\n"
            "Exit: 0 every ping answered, 1 other failure, 2 usage, 3 wrong server key,\n"
            "      4 no answer (nothing listening, unreachable), 5 connection lost (the peer\n"
            "      went away, closed or reset the connection).\n");
}

static void on_established(tern_conn *c, void *user)
{
    ping_state *p = user;
    tern_conn_stats st;
    tern_conn_get_stats(c, &st);
    printf("PING %s: connected, handshake %.3f ms, %s%s\n", p->where,
           (double)st.handshake_ns / 1e6,
           st.aead == TERN_AEAD_AES256GCM ? "AES-256-GCM" : "ChaCha20-Poly1305",
           st.integrity_only ? " (integrity only)" : "");
    tools_transport_connected(stdout, "tern ping", c, p->t_connect, &p->cc);
    tools_pinger_send(&p->pg);
}

static void on_path(tern_conn *c, void *user)
{
    ping_state *p = user;
    if (c == p->link.conn && tern_conn_get_state(c) == TERN_CONN_ESTABLISHED)
        tools_transport_changed(stdout, "tern ping", c);
}

static void on_rtt(tern_conn *c, uint64_t rtt_ns, void *user)
{
    ping_state *p = user;
    (void)c;
    if (!tools_pinger_answer(&p->pg, rtt_ns)) return;
    printf("seq=%u rtt=%.3f ms\n", p->pg.sent, (double)rtt_ns / 1e6);
    fflush(stdout);
    tools_pinger_next(&p->pg);
}

/* Prints why the connection ended and returns the exit code: tern ping's own words (the
 * listener, the key it was given) where they differ from tools_explain_conn_error's. */
static int explain(const ping_state *p, const char *key_hex)
{
    const tools_close_note *n = &p->link.closed;
    switch (n->err) {
    case TERN_ERR_BAD_SERVER_KEY:
    case TERN_ERR_HANDSHAKE_AUTH:
        fprintf(stderr,
                "tern ping: %s does not hold the key %.16s... (%s): wrong --server-key?\n",
                p->where, key_hex, tern_strerror(n->err));
        return XFER_EXIT_BAD_KEY;
    case TERN_ERR_IDLE_TIMEOUT:
        fprintf(stderr,
                "tern ping: connection to %s lost: nothing heard for %llu ms (idle timeout); the "
                "listener stopped or the path broke\n",
                p->where, (unsigned long long)p->idle_ms);
        return XFER_EXIT_LOST;
    case TERN_ERR_STATELESS_RESET:
        fprintf(stderr,
                "tern ping: connection to %s lost: the listener no longer knows it (stateless "
                "reset; restarted?)\n",
                p->where);
        return XFER_EXIT_LOST;
    default:
        return tools_explain_conn_error("tern ping", p->where, n, p->timeout_ms, p->idle_ms);
    }
}

int cmd_ping(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--via")) return cmd_ping_via(argc, argv); /* peer mode */
    ping_state p;
    memset(&p, 0, sizeof(p));
    const char *target = NULL, *key_hex = NULL;
    uint64_t count = 5, interval_ms = 1000;
    tools_transport_opts topt;
    tools_transport_opts_default(&topt);
    p.timeout_ms = 5000;
    p.idle_ms = 30000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, t = tools_transport_opt(&topt, argc, argv, &i);
        if (t == 1) continue;
        if (t < 0) {
            bad = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return XFER_EXIT_OK;
        } else if (!strcmp(a, "--server-key") && v) {
            key_hex = v;
            i++;
        } else if (!strcmp(a, "--count") && v) {
            bad = tools_parse_u64(v, 0, 1000000000, 0, &count);
            i++;
        } else if (!strcmp(a, "--interval") && v) {
            bad = tools_parse_u64(v, 1, 3600000, 0, &interval_ms);
            i++;
        } else if (!strcmp(a, "--timeout") && v) {
            bad = tools_parse_u64(v, 1, 3600000, 0, &p.timeout_ms);
            i++;
        } else if (!strcmp(a, "--idle-timeout") && v) {
            bad = tools_parse_u64(v, 1, 3600000, 0, &p.idle_ms);
            i++;
        } else if (a[0] != '-' && target == NULL) {
            target = a;
        } else {
            bad = 1;
        }
        if (bad) return tools_bad_argument("tern ping", a, v, usage);
    }
    uint8_t server_pub[TERN_KEY_LEN];
    if (target == NULL || key_hex == NULL) {
        usage(stderr);
        return XFER_EXIT_USAGE;
    }
    if (tools_server_key("tern ping", key_hex, server_pub) != 0) return XFER_EXIT_USAGE;
    tern_addr remote;
    tern_driver_connect_cfg *cc = &p.cc;
    if (tools_resolve(target, 4433, &remote) != 0 ||
        tools_transport_connect_cfg("tern ping", &topt, &remote, server_pub, cc) != 0)
        return XFER_EXIT_USAGE;
    tern_addr_format(cc->remote.family ? &cc->remote : &cc->stream_remote, p.where,
                     sizeof(p.where));

    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.endpoint.settings.handshake_timeout_ns = p.timeout_ms * TERN_NS_PER_MS;
    dc.endpoint.settings.idle_timeout_ns = p.idle_ms * TERN_NS_PER_MS;
    dc.endpoint.callbacks.on_established = on_established;
    dc.endpoint.callbacks.on_rtt = on_rtt;
    dc.endpoint.callbacks.on_path = on_path;
    tools_transport_watch(&dc, cc, &p.link);
    dc.endpoint.callbacks.on_closed = tools_on_closed;
    dc.endpoint.callbacks.on_conn_free = tools_on_conn_free;
    dc.endpoint.user_data = &p;
    dc.sockbuf_bytes = 256 << 10; /* one ping at a time needs little */
    int rc = tern_driver_new(&dc, &p.link.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern ping: cannot set up: %s\n", tern_strerror(rc));
        return XFER_EXIT_OTHER;
    }
    int exit_code = XFER_EXIT_OTHER;
    rc = tools_pinger_init(&p.pg, &p.link, (unsigned)count, interval_ms * TERN_NS_PER_MS);
    p.t_connect = tools_now_ns();
    if (rc == TERN_OK) rc = tern_driver_connect_opts(p.link.d, cc, &p.link.conn);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern ping: cannot connect to %s: %s\n", p.where, tern_strerror(rc));
        goto out;
    }
    tools_catch_signals(p.link.d);

    rc = tern_driver_run(p.link.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern ping: event loop failed\n");
        goto out;
    }
    tern_driver_shutdown(p.link.d, 0, "ping done", 500 * TERN_NS_PER_MS);
    tools_pinger_summary(&p.pg, p.where);
    if (p.link.closed.err != 0) exit_code = explain(&p, key_hex);
    else if (tools_interrupted()) exit_code = p.pg.answered > 0 ? XFER_EXIT_OK : XFER_EXIT_OTHER;
    else exit_code = p.pg.answered == p.pg.sent ? XFER_EXIT_OK : XFER_EXIT_OTHER;
out:
    tools_session_close(p.link.d, p.pg.timer, 0, NULL, 0); /* closed above, before the summary */
    return exit_code;
}
