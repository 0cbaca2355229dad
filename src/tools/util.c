/*
 * Helpers shared by the tern sub-commands (tools.h): name resolution, the clock, waiting on a
 * socket, SIGINT/SIGTERM, the end of a driver session, the command's connection and why it
 * ended, the client and STUN options, bad arguments, numbers, CPU time.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tern/driver.h"
#include "tern/stun.h"
#include "tern/udp.h"
#include "tools/peer_text.h"
#include "tools/tools.h"

uint64_t tools_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * TERN_NS_PER_S + (uint64_t)ts.tv_nsec;
}

int tools_wait_readable(int fd, uint64_t deadline_ns)
{
    uint64_t now = tools_now_ns();
    if (now >= deadline_ns) return 0;
    uint64_t ms = (deadline_ns - now + TERN_NS_PER_MS - 1) / TERN_NS_PER_MS;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms > 60000 ? 60000 : (int)ms) > 0;
}

int tools_resolve(const char *text, uint16_t default_port, tern_addr *out)
{
    if (tern_addr_parse(out, text) == TERN_OK) {
        int has_port = text[0] == '[' ? strstr(text, "]:") != NULL
                                      : (out->family == TERN_AF_INET && strchr(text, ':'));
        if (!has_port) out->port = default_port;
        return 0;
    }
    char host[256];
    const char *colon = strrchr(text, ':');
    size_t hl = colon ? (size_t)(colon - text) : strlen(text);
    if (hl == 0 || hl >= sizeof(host)) {
        fprintf(stderr, "tern: bad address %s\n", text);
        return -1;
    }
    memcpy(host, text, hl);
    host[hl] = '\0';
    uint16_t port = default_port;
    if (colon) {
        char *end = NULL;
        unsigned long p = strtoul(colon + 1, &end, 10);
        if (*end != '\0' || p == 0 || p > 65535) {
            fprintf(stderr, "tern: bad port in %s\n", text);
            return -1;
        }
        port = (uint16_t)p;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        fprintf(stderr, "tern: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    rc = tern_addr_from_sockaddr(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern: %s has no IPv4 or IPv6 address\n", host);
        return -1;
    }
    out->port = port;
    return 0;
}

/* ---- SIGINT/SIGTERM for the commands that run a driver */

static tern_driver *volatile g_stop_driver;
static volatile sig_atomic_t g_interrupted;

static void on_stop_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
    if (g_stop_driver) tern_driver_stop(g_stop_driver); /* an eventfd write: signal-safe */
}

static void set_handlers(void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = fn; /* no SA_RESTART: a blocking accept() returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void tools_catch_signals(tern_driver *d)
{
    g_stop_driver = d;
    set_handlers(on_stop_signal);
}

void tools_release_signals(void)
{
    set_handlers(SIG_DFL);
    g_stop_driver = NULL;
}

int tools_interrupted(void)
{
    return g_interrupted;
}

void tools_session_close(tern_driver *d, tern_driver_timer *timer, uint64_t code,
                         const char *reason, uint64_t grace_ns)
{
    if (d && grace_ns) tern_driver_shutdown(d, code, reason, grace_ns);
    tools_release_signals(); /* before the driver goes: the handler stops it */
    tern_driver_timer_del(timer);
    tern_driver_del(d); /* frees what is left without callbacks */
}

void tools_copy_reason(char *dst, size_t cap, const char *reason, size_t len)
{
    tools_text_escape(dst, cap, (const uint8_t *)reason, len); /* the peer's words */
}

void tools_print_counters(const char *cmd, tern_driver *d, tern_conn *c)
{
    tern_driver_stats ds;
    tern_driver_get_stats(d, &ds);
    fprintf(stderr,
            "%s: driver: iterations %llu rx_syscalls %llu rx_datagrams %llu tx_syscalls %llu "
            "tx_datagrams %llu tx_gso_msgs %llu tx_blocked %llu\n",
            cmd, (unsigned long long)ds.iterations, (unsigned long long)ds.rx_syscalls,
            (unsigned long long)ds.rx_datagrams, (unsigned long long)ds.tx_syscalls,
            (unsigned long long)ds.tx_datagrams, (unsigned long long)ds.tx_gso_msgs,
            (unsigned long long)ds.tx_blocked);
    if (ds.streams_connected + ds.streams_accepted > 0)
        fprintf(stderr,
                "%s: streams: connected %llu accepted %llu connect_failures %llu frames_in %llu "
                "frames_out %llu bytes_in %llu bytes_out %llu tx_dropped %llu tx_held %llu "
                "closed_peer %llu closed_error %llu tls_handshakes %llu tls_failures %llu\n",
                cmd, (unsigned long long)ds.streams_connected,
                (unsigned long long)ds.streams_accepted,
                (unsigned long long)ds.stream_connect_failures,
                (unsigned long long)ds.stream_frames_in, (unsigned long long)ds.stream_frames_out,
                (unsigned long long)ds.stream_bytes_in, (unsigned long long)ds.stream_bytes_out,
                (unsigned long long)ds.stream_tx_dropped, (unsigned long long)ds.stream_tx_held,
                (unsigned long long)ds.stream_closed_peer,
                (unsigned long long)ds.stream_closed_error, (unsigned long long)ds.tls_handshakes,
                (unsigned long long)ds.tls_failures);
    if (c == NULL) return;
    tern_conn_stats cs;
    tern_network_info ni;
    tern_conn_get_stats(c, &cs);
    tern_conn_network_info(c, &ni);
    fprintf(stderr,
            "%s: conn: tx_packets %llu rx_packets %llu lost %llu pto %llu srtt_us %.1f "
            "min_rtt_us %.1f bandwidth %.3f Gbit/s pacing %.3f Gbit/s cwnd %llu\n",
            cmd, (unsigned long long)cs.tx_packets, (unsigned long long)cs.rx_packets,
            (unsigned long long)cs.packets_lost, (unsigned long long)cs.pto_count,
            (double)cs.srtt_ns / 1e3, (double)cs.min_rtt_ns / 1e3,
            (double)ni.bandwidth_bps / 1e9, (double)ni.pacing_rate_bps / 1e9,
            (unsigned long long)ni.cwnd_bytes);
    fprintf(stderr, "%s: conn: pmtu_size %llu pmtu_suspicions %llu pmtu_black_holes %llu\n", cmd,
            (unsigned long long)cs.pmtu_size, (unsigned long long)cs.pmtu_suspicions,
            (unsigned long long)cs.pmtu_black_holes);
    fprintf(stderr,
            "%s: migration: driver moves %llu (auto_route_moves %llu auto_silent_moves %llu "
            "auto_limited %llu stream_route_closes %llu) netlink_events %llu; conn migrations %llu "
            "validated %llu silent_bytes %llu\n",
            cmd, (unsigned long long)ds.migrations, (unsigned long long)ds.auto_route_moves,
            (unsigned long long)ds.auto_silent_moves, (unsigned long long)ds.auto_limited,
            (unsigned long long)ds.stream_route_closes,
            (unsigned long long)ds.netlink_events, (unsigned long long)cs.migrations,
            (unsigned long long)cs.migrations_validated, (unsigned long long)cs.silent_bytes);
}

/* ---- the one connection of a command, why it ended, options, numbers, CPU time */

void tools_close_note_set(tools_close_note *n, int err, uint64_t code, const char *reason,
                          size_t len)
{
    n->err = err;
    n->code = code;
    tools_copy_reason(n->reason, sizeof(n->reason), reason ? reason : "", len);
}

void tools_on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                     void *user)
{
    tools_conn *t = user; /* the state's first member */
    if (c != t->conn || err == TERN_ERR_LOCAL_CLOSED) return;
    tools_close_note_set(&t->closed, err, code, reason, len);
    tern_driver_stop(t->d);
}

void tools_on_conn_free(tern_conn *c, void *user)
{
    tools_conn *t = user;
    if (t->conn == c) t->conn = NULL;
}

int tools_bad_argument(const char *cmd, const char *a, const char *v, void (*usage)(FILE *f))
{
    fprintf(stderr, "%s: bad argument %s%s%s\n", cmd, a, v ? " " : "", v ? v : "");
    usage(stderr);
    return XFER_EXIT_USAGE;
}

int tools_explain_conn_error(const char *cmd, const char *where, const tools_close_note *n,
                             uint64_t timeout_ms, uint64_t idle_ms)
{
    int err = n->err;
    uint64_t code = n->code;
    const char *reason = n->reason;
    switch (err) {
    case TERN_ERR_BAD_SERVER_KEY:
    case TERN_ERR_HANDSHAKE_AUTH:
        fprintf(stderr, "%s: %s does not hold the pinned key (%s): wrong --server-key?\n", cmd,
                where, tern_strerror(err));
        return XFER_EXIT_BAD_KEY;
    case TERN_ERR_HANDSHAKE_TIMEOUT:
        fprintf(stderr, "%s: no answer from %s within %llu ms: is a tern listener running there?\n",
                cmd, where, (unsigned long long)timeout_ms);
        return XFER_EXIT_NO_ANSWER;
    case TERN_ERR_NO_VERSION:
        fprintf(stderr, "%s: %s speaks none of our protocol versions\n", cmd, where);
        return XFER_EXIT_NO_ANSWER;
    case TERN_ERR_IDLE_TIMEOUT:
        fprintf(stderr,
                "%s: connection to %s lost: nothing heard for %llu ms (idle timeout); the peer "
                "stopped or the path broke\n",
                cmd, where, (unsigned long long)idle_ms);
        return XFER_EXIT_LOST;
    case TERN_ERR_STATELESS_RESET:
        fprintf(stderr,
                "%s: connection to %s lost: the peer no longer knows it (stateless reset; "
                "restarted?)\n",
                cmd, where);
        return XFER_EXIT_LOST;
    case TERN_ERR_PEER_CLOSED:
        fprintf(stderr, "%s: %s closed the connection (code %llu%s%s)\n", cmd, where,
                (unsigned long long)code, reason[0] ? ": " : "", reason);
        return XFER_EXIT_LOST;
    case TERN_ERR_REFUSED:
        fprintf(stderr, "%s: %s refused the connection%s%s\n", cmd, where, reason[0] ? ": " : "",
                reason);
        return XFER_EXIT_LOST;
    default:
        fprintf(stderr, "%s: connection to %s failed: %s\n", cmd, where, tern_strerror(err));
        return XFER_EXIT_OTHER;
    }
}

void tools_client_opts_default(tools_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->aead = TERN_AEAD_AUTO;
    o->cc = -1;
    o->timeout_ms = 5000;
    o->idle_ms = 30000;
    tools_transport_opts_default(&o->transport);
}

int tools_client_opt(tools_client_opts *o, int argc, char **argv, int *i)
{
    int t = tools_transport_opt(&o->transport, argc, argv, i);
    if (t != 0) return t;
    const char *a = argv[*i];
    if (!strcmp(a, "--integrity-only")) {
        o->integrity_only = 1;
        return 1;
    }
    if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
        o->verbose = 1;
        return 1;
    }
    const char **str = !strcmp(a, "--to") ? &o->to : !strcmp(a, "--server-key") ? &o->server_key
                                                                                 : NULL;
    int is_num = !strcmp(a, "--payload") || !strcmp(a, "--timeout") ||
                 !strcmp(a, "--idle-timeout");
    if (str == NULL && !is_num && strcmp(a, "--aead") != 0 && strcmp(a, "--cc") != 0) return 0;
    if (*i + 1 >= argc) return -1;
    const char *v = argv[++*i];
    if (str) {
        *str = v;
    } else if (!strcmp(a, "--aead")) {
        o->aead = !strcmp(v, "aes")      ? TERN_AEAD_AES256GCM
                  : !strcmp(v, "chacha") ? TERN_AEAD_CHACHA20POLY1305
                                         : -1;
        if (o->aead < 0) return -1;
    } else if (!strcmp(a, "--cc")) {
        o->cc = !strcmp(v, "bbr")       ? TERN_CC_BBR
                : !strcmp(v, "cubic")   ? TERN_CC_CUBIC
                : !strcmp(v, "newreno") ? TERN_CC_NEWRENO
                                        : -1;
        if (o->cc < 0) return -1;
    } else if (!strcmp(a, "--payload")) {
        if (tools_parse_u64(v, 1200, TERN_MAX_DATAGRAM, 0, &o->payload) != 0) return -1;
    } else if (tools_parse_u64(v, 1, 3600000, 0,
                               !strcmp(a, "--timeout") ? &o->timeout_ms : &o->idle_ms) != 0) {
        return -1;
    }
    return 1;
}

void tools_client_settings(const tools_client_opts *o, tern_settings *s)
{
    s->handshake_timeout_ns = o->timeout_ms * TERN_NS_PER_MS;
    s->idle_timeout_ns = o->idle_ms * TERN_NS_PER_MS;
    s->aead = (uint8_t)o->aead;
    s->integrity_only = (uint8_t)o->integrity_only;
    if (o->cc >= 0) s->cc = (uint8_t)o->cc;
    if (o->payload) s->max_udp_payload = (uint16_t)o->payload;
}

int tools_server_key(const char *cmd, const char *hex, uint8_t pub[TERN_KEY_LEN])
{
    if (hex != NULL && tern_hex_decode(hex, pub, TERN_KEY_LEN) == TERN_OK) return 0;
    fprintf(stderr, "%s: --server-key needs 64 hex characters\n", cmd);
    return -1;
}

int tools_stun_args_parse(const char *cmd, int argc, char **argv, void (*help)(FILE *f),
                          int allow_verbose, tools_stun_args *a, tern_addr *server)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--rto") && i + 1 < argc) {
            a->rto_ms = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--tries") && i + 1 < argc) {
            a->tries = strtol(argv[++i], NULL, 10);
        } else if (allow_verbose && !strcmp(argv[i], "-v")) {
            a->verbose = 1;
        } else if (argv[i][0] != '-' && a->host == NULL) {
            a->host = argv[i];
        } else {
            fprintf(stderr, "%s: unexpected argument %s\n", cmd, argv[i]);
            help(stderr);
            return 2;
        }
    }
    if (a->host == NULL || a->rto_ms <= 0 || a->rto_ms > 60000 || a->tries <= 0 ||
        a->tries > 20) {
        help(stderr);
        return 2;
    }
    return tools_resolve(a->host, TERN_STUN_PORT, server) != 0 ? 1 : -1;
}

int tools_parse_u64(const char *text, uint64_t lo, uint64_t hi, int scaled, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] == '\0' || text[0] == '-' || end == text || errno != 0) return -1;
    if (scaled && *end != '\0') {
        unsigned shift = *end == 'K' || *end == 'k' ? 10
                         : *end == 'M' || *end == 'm' ? 20
                         : *end == 'G' || *end == 'g' ? 30
                                                      : 64;
        if (shift == 64 || end[1] != '\0' || v > (UINT64_MAX >> shift)) return -1;
        v <<= shift;
        end++;
    }
    if (*end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

uint64_t tools_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * TERN_NS_PER_S +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}
