/*
 * tern ping: round-trip times to a tern listener, on the driver's ready loop.
 *
 * Connects to ADDR:PORT pinning --server-key, prints the handshake time, then sends one PING at
 * a time (tern_conn_ping; the core retransmits it until its PONG arrives, and on_rtt reports the
 * sample), each --interval ms after the previous one was sent, and prints every RTT and the
 * min/avg/max at the end. A driver timer paces the pings; tern_driver_stop() (also from the
 * SIGINT/SIGTERM handler) ends the loop, and tern_driver_shutdown() closes the connection
 * gracefully. The exit code says what happened (see usage()).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern/driver.h"
#include "tools/tools.h"

enum {
    EXIT_DONE = 0,
    EXIT_OTHER = 1,
    EXIT_USAGE = 2,
    EXIT_BAD_KEY = 3,
    EXIT_NO_ANSWER = 4,
    EXIT_LOST = 5,
};

typedef struct ping_state {
    tern_driver *d;
    tern_conn *conn;
    tern_driver_timer *timer;
    char where[64];
    unsigned count, sent, answered; /* count 0: until interrupted */
    uint64_t interval_ns, idle_ms, timeout_ms;
    uint64_t sent_at;
    int waiting;
    uint64_t rtt_min, rtt_max, rtt_sum;
    int err; /* 0, or the TERN_ERR_* the connection ended with */
    uint64_t close_code;
    char reason[300];
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
            "  --idle-timeout MS   declare the peer gone after this long unheard (default 30000)\n"
            "Exit: 0 every ping answered, 1 other failure, 2 usage, 3 wrong server key,\n"
            "      4 no answer (nothing listening, unreachable), 5 connection lost (the peer\n"
            "      went away, closed or reset the connection).\n");
}

static void send_ping(ping_state *p)
{
    uint64_t now = tern_driver_now(p->d);
    if (p->conn == NULL || tern_conn_ping(p->conn, now) != TERN_OK) return;
    p->sent++;
    p->sent_at = now;
    p->waiting = 1;
}

static void on_timer(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)d, (void)t;
    send_ping(user);
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
    fflush(stdout);
    send_ping(p);
}

static void on_rtt(tern_conn *c, uint64_t rtt_ns, void *user)
{
    ping_state *p = user;
    (void)c;
    if (!p->waiting) return; /* a keep-alive's answer */
    p->waiting = 0;
    p->answered++;
    if (p->answered == 1 || rtt_ns < p->rtt_min) p->rtt_min = rtt_ns;
    if (rtt_ns > p->rtt_max) p->rtt_max = rtt_ns;
    p->rtt_sum += rtt_ns;
    printf("seq=%u rtt=%.3f ms\n", p->sent, (double)rtt_ns / 1e6);
    fflush(stdout);
    if (p->count != 0 && p->sent >= p->count) {
        tern_driver_stop(p->d);
        return;
    }
    uint64_t next = p->sent_at + p->interval_ns;
    uint64_t now = tern_driver_now(p->d);
    tern_driver_timer_set(p->timer, next > now ? next : now);
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *user)
{
    ping_state *p = user;
    (void)c;
    if (err == TERN_ERR_LOCAL_CLOSED) return;
    p->err = err;
    p->close_code = code;
    tools_copy_reason(p->reason, sizeof(p->reason), reason ? reason : "", len);
    tern_driver_stop(p->d);
}

static void on_conn_free(tern_conn *c, void *user)
{
    ping_state *p = user;
    if (p->conn == c) p->conn = NULL;
}

/* Prints why the connection ended and returns the exit code. */
static int explain(const ping_state *p, const char *key_hex)
{
    switch (p->err) {
    case TERN_ERR_BAD_SERVER_KEY:
    case TERN_ERR_HANDSHAKE_AUTH:
        fprintf(stderr,
                "tern ping: %s does not hold the key %.16s... (%s): wrong --server-key?\n",
                p->where, key_hex, tern_strerror(p->err));
        return EXIT_BAD_KEY;
    case TERN_ERR_HANDSHAKE_TIMEOUT:
        fprintf(stderr,
                "tern ping: no answer from %s within %llu ms: is a tern listener running there?\n",
                p->where, (unsigned long long)p->timeout_ms);
        return EXIT_NO_ANSWER;
    case TERN_ERR_NO_VERSION:
        fprintf(stderr, "tern ping: %s speaks none of our protocol versions\n", p->where);
        return EXIT_NO_ANSWER;
    case TERN_ERR_IDLE_TIMEOUT:
        fprintf(stderr,
                "tern ping: connection to %s lost: nothing heard for %llu ms (idle timeout); the "
                "listener stopped or the path broke\n",
                p->where, (unsigned long long)p->idle_ms);
        return EXIT_LOST;
    case TERN_ERR_STATELESS_RESET:
        fprintf(stderr,
                "tern ping: connection to %s lost: the listener no longer knows it (stateless "
                "reset; restarted?)\n",
                p->where);
        return EXIT_LOST;
    case TERN_ERR_PEER_CLOSED:
        fprintf(stderr, "tern ping: %s closed the connection (code %llu%s%s)\n", p->where,
                (unsigned long long)p->close_code, p->reason[0] ? ": " : "", p->reason);
        return EXIT_LOST;
    case TERN_ERR_REFUSED:
        fprintf(stderr, "tern ping: %s refused the connection%s%s\n", p->where,
                p->reason[0] ? ": " : "", p->reason);
        return EXIT_LOST;
    default:
        fprintf(stderr, "tern ping: connection to %s failed: %s\n", p->where,
                tern_strerror(p->err));
        return EXIT_OTHER;
    }
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] == '\0' || s[0] == '-' || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cmd_ping(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--via")) return cmd_ping_via(argc, argv); /* peer mode */
    ping_state p;
    memset(&p, 0, sizeof(p));
    const char *target = NULL, *key_hex = NULL;
    uint64_t count = 5, interval_ms = 1000;
    p.timeout_ms = 5000;
    p.idle_ms = 30000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return EXIT_DONE;
        } else if (!strcmp(a, "--server-key") && v) {
            key_hex = v;
            i++;
        } else if (!strcmp(a, "--count") && v) {
            bad = parse_u64(v, 0, 1000000000, &count);
            i++;
        } else if (!strcmp(a, "--interval") && v) {
            bad = parse_u64(v, 1, 3600000, &interval_ms);
            i++;
        } else if (!strcmp(a, "--timeout") && v) {
            bad = parse_u64(v, 1, 3600000, &p.timeout_ms);
            i++;
        } else if (!strcmp(a, "--idle-timeout") && v) {
            bad = parse_u64(v, 1, 3600000, &p.idle_ms);
            i++;
        } else if (a[0] != '-' && target == NULL) {
            target = a;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "tern ping: bad argument %s%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    uint8_t server_pub[TERN_KEY_LEN];
    if (target == NULL || key_hex == NULL) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (tern_hex_decode(key_hex, server_pub, TERN_KEY_LEN) != TERN_OK) {
        fprintf(stderr, "tern ping: --server-key needs 64 hex characters\n");
        return EXIT_USAGE;
    }
    tern_addr remote;
    if (tools_resolve(target, 4433, &remote) != 0) return EXIT_USAGE;
    tern_addr_format(&remote, p.where, sizeof(p.where));
    p.count = (unsigned)count;
    p.interval_ns = interval_ms * TERN_NS_PER_MS;

    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.endpoint.settings.handshake_timeout_ns = p.timeout_ms * TERN_NS_PER_MS;
    dc.endpoint.settings.idle_timeout_ns = p.idle_ms * TERN_NS_PER_MS;
    dc.endpoint.callbacks.on_established = on_established;
    dc.endpoint.callbacks.on_rtt = on_rtt;
    dc.endpoint.callbacks.on_closed = on_closed;
    dc.endpoint.callbacks.on_conn_free = on_conn_free;
    dc.endpoint.user_data = &p;
    dc.sockbuf_bytes = 256 << 10; /* one ping at a time needs little */
    int rc = tern_driver_new(&dc, &p.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern ping: cannot set up: %s\n", tern_strerror(rc));
        return EXIT_OTHER;
    }
    int exit_code = EXIT_OTHER;
    rc = tern_driver_timer_new(p.d, on_timer, &p, &p.timer);
    if (rc == TERN_OK) rc = tern_driver_connect(p.d, &remote, server_pub, &p.conn);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern ping: cannot connect to %s: %s\n", p.where, tern_strerror(rc));
        goto out;
    }
    tools_catch_signals(p.d);

    rc = tern_driver_run(p.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern ping: event loop failed\n");
        goto out;
    }
    tern_driver_shutdown(p.d, 0, "ping done", 500 * TERN_NS_PER_MS);
    if (p.sent > 0) {
        printf("--- %s tern ping ---\n%u sent, %u answered", p.where, p.sent, p.answered);
        if (p.answered > 0)
            printf(", rtt min/avg/max = %.3f/%.3f/%.3f ms", (double)p.rtt_min / 1e6,
                   (double)p.rtt_sum / p.answered / 1e6, (double)p.rtt_max / 1e6);
        printf("\n");
        fflush(stdout);
    }
    if (p.err != 0) exit_code = explain(&p, key_hex);
    else if (tools_interrupted()) exit_code = p.answered > 0 ? EXIT_DONE : EXIT_OTHER;
    else exit_code = p.answered == p.sent ? EXIT_DONE : EXIT_OTHER;
out:
    tools_session_close(p.d, p.timer, 0, NULL, 0); /* closed above, before the summary */
    return exit_code;
}
