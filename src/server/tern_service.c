/*
 * ternd's tern service: a tern listener on the driver (tern/driver.h) with the rendezvous
 * service (tern/rendezvous.h: directory, introductions, groups, RPC routing over flows) and an
 * echo of unreliable datagrams.
 *
 * One thread runs one tern_driver bound to every --tern-listen address (default 0.0.0.0:4433).
 * The long-term key comes from --key FILE (written by `tern keygen`), or is made fresh at start;
 * either way the public key is printed in hex, since clients pin it. The service accepts every
 * client that completes the handshake, hands every flow message to the rendezvous server (whose
 * call timeouts run on a driver timer), and echoes each datagram back on the same connection,
 * byte for byte (an echo that does not fit the connection's queue is dropped and counted: the
 * datagrams are unreliable by contract). stop() asks the driver to stop (an eventfd write), and
 * the thread then closes every connection with code 0 and reason "server shutting down",
 * waiting up to a second for the closes to go out, before the thread ends.
 *
 * The relay (tern/relay.h) shares the tern port: the driver's rx_hook takes every datagram whose
 * first byte is TERN_RELAY_TYPE (never a tern packet, whose fixed bit 0x40 is set), the relay
 * checks and rewrites it in place, and it leaves from the socket it came in on
 * (tern_driver_send_raw) toward the other side of its session. Sessions are opened by the
 * rendezvous server at each introduction (tern_rdv_config.relay_sessions) and idle out on a
 * driver timer. --no-relay leaves all of it out.
 *
 * Access control: with --token-secret the rendezvous server checks the tokens peers present,
 * and with --require-tokens it refuses REGISTER, JOIN or OFFER without a valid one
 * (ERROR(TOKEN_REQUIRED / FORGED / EXPIRED), counted in the "rendezvous tokens" line).
 *
 * Memory: a one-second driver timer compares the memory the core accounts for (endpoint,
 * rendezvous, relay) with its peak since the last trim and calls malloc_trim(0) once it fell by
 * half and by 1 MiB (TRIM_MIN_DROP), so the pages an attack or a burst left behind go back to the system
 * (rate-limited; --no-malloc-trim turns it off; the "memory" line counts it).
 *
 * When no --tern-listen was given and the default port is taken, the service prints a warning
 * and stays off, so a second ternd on one host still serves STUN; an explicit address that
 * cannot be bound is an error.
 *
 * Streams (docs/protocol.md, "Stream transport"): the same driver also accepts tern over TCP
 * (--tcp-listen, default 0.0.0.0:4433) and TLS 1.3 (--tls-listen, default 0.0.0.0:443; the
 * certificate from --tls-cert/--tls-key, else a self-signed one the driver makes at start), for
 * clients whose network drops UDP or passes only web traffic. Connections over a stream get the
 * rendezvous service and the echo like any other. Relay frames that arrive on a stream reach
 * relay_rx with sock TERN_DRIVER_STREAM_SOCK and a TCP/TLS source address; the relay's sessions
 * hold each side's address with its transport (a peer on a stream was introduced by the address
 * of its stream connection, and reaches the relay over that same stream: rdv_client.c), so one
 * session joins a UDP peer and a stream peer, or two stream peers, and tern_driver_send_raw
 * puts each forwarded frame on the stream or UDP socket its destination names. Each stream
 * listener is checked before the driver binds it: a default one that cannot be bound (443
 * without the privilege, 4433/tcp taken) costs a one-line warning and that transport; an
 * explicit one fails the start with one line. The stream budgets (tern_driver_stream_limits)
 * are the driver's defaults, --limit stream_* changes them; the report prints them.
 */
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/service.h"
#include "tern/driver.h"
#include "tern/relay.h"
#include "tern/rendezvous.h"
#include "tern/udp.h"

#define SHUTDOWN_GRACE_NS (1 * TERN_NS_PER_S)
/* Memory back to the system: every second the accounted memory (endpoint, rendezvous, relay) is
 * compared with its peak since the last trim; when it fell by half and by TRIM_MIN_DROP,
 * malloc_trim(0) returns the free pages of every arena (at most once per TRIM_MIN_GAP_NS: it
 * walks the free lists with the arena locked, a few ms per GB, on this thread). */
#define TRIM_CHECK_NS (1 * TERN_NS_PER_S)
#define TRIM_MIN_GAP_NS (5 * TERN_NS_PER_S)
#define TRIM_MIN_DROP (1ull << 20) /* a small server trims after a small attack too (RSS within 2x) */

typedef struct tern_svc {
    tern_driver *d;
    tern_rdv_server *rdv;
    tern_driver_timer *rdv_timer;
    tern_relay *relay;
    tern_driver_timer *relay_timer;
    uint64_t relay_sent, relay_send_failed;
    pthread_t th;
    int started;
    int run_rc, shutdown_left;
    uint64_t accepted, closed, datagrams, echo_bytes, echo_dropped;
    /* memory (mem_on_timer) */
    tern_driver_timer *mem_timer;
    uint64_t mem_peak, mem_last_trim, mem_trims, mem_trim_ns, mem_trimmed_from;
    /* streams, for the report */
    size_t n_stream;
    tern_addr stream[TERN_DRIVER_MAX_SOCKETS];
    tern_driver_stream_limits stream_limits;
    uint64_t relay_to_stream, relay_from_stream;
    /* access control, for the report */
    uint8_t req_register, req_join, req_offer;
    int has_secret;
} tern_svc;

/* Bytes the core accounts for now: connections, rendezvous state, relay sessions (each part
 * in parts[3] when parts is not NULL). */
static uint64_t mem_accounted(tern_svc *s, uint64_t *parts)
{
    uint64_t p[3] = {0, 0, 0};
    tern_endpoint_stats es;
    tern_endpoint_get_stats(tern_driver_endpoint(s->d), &es);
    p[0] = es.mem_current;
    if (s->rdv) {
        tern_rdv_stats rs;
        tern_rdv_server_get_stats(s->rdv, &rs);
        p[1] = rs.mem_current;
    }
    if (s->relay) {
        tern_relay_stats ls;
        tern_relay_get_stats(s->relay, &ls);
        p[2] = ls.mem_current;
    }
    if (parts) memcpy(parts, p, sizeof(p));
    return p[0] + p[1] + p[2];
}

/* Resident set size of this process in bytes (0 when /proc cannot tell). */
static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (f == NULL) return 0;
    int n = fscanf(f, "%llu %llu", &size, &res);
    fclose(f);
    return n == 2 ? (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static void mem_on_timer(tern_driver *d, tern_driver_timer *t, void *user)
{
    tern_svc *s = user;
    uint64_t now = tern_driver_now(d);
    uint64_t m = mem_accounted(s, NULL);
    if (m > s->mem_peak) s->mem_peak = m;
    if (s->mem_peak - m >= TRIM_MIN_DROP && m <= s->mem_peak / 2 &&
        (s->mem_trims == 0 || now - s->mem_last_trim >= TRIM_MIN_GAP_NS)) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        malloc_trim(0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        s->mem_trim_ns += (uint64_t)((b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec));
        s->mem_trims++;
        s->mem_trimmed_from = s->mem_peak;
        s->mem_last_trim = now;
        s->mem_peak = m;
    }
    tern_driver_timer_set(t, now + TRIM_CHECK_NS);
}

/* The rendezvous server's next call timeout on the driver's timer. */
static void rdv_rearm(tern_svc *s)
{
    if (s->rdv_timer == NULL) return;
    uint64_t t = tern_rdv_server_next_deadline(s->rdv);
    if (t == TERN_TIME_NEVER) tern_driver_timer_cancel(s->rdv_timer);
    else tern_driver_timer_set(s->rdv_timer, t);
}

/* The relay's next idle expiry on its timer (introductions open sessions: re-armed after each
 * rendezvous message). */
static void relay_rearm(tern_svc *s)
{
    if (s->relay_timer == NULL) return;
    uint64_t t = tern_relay_next_deadline(s->relay);
    if (t == TERN_TIME_NEVER) tern_driver_timer_cancel(s->relay_timer);
    else tern_driver_timer_set(s->relay_timer, t);
}

static void rdv_on_timer(tern_driver *d, tern_driver_timer *t, void *user)
{
    tern_svc *s = user;
    (void)t;
    tern_rdv_server_handle_expiry(s->rdv, tern_driver_now(d));
    rdv_rearm(s);
}

static void relay_on_timer(tern_driver *d, tern_driver_timer *t, void *user)
{
    tern_svc *s = user;
    (void)t;
    tern_relay_handle_expiry(s->relay, tern_driver_now(d));
    relay_rearm(s);
}

/* The driver's rx_hook: relay datagrams go to the relay and on toward the other side of their
 * session: from the socket they came in on when both sides are on UDP, on the other side's
 * stream when it reached the relay over TCP/TLS (send_raw ignores the socket then), from a UDP
 * socket of the right family when they came in on a stream (sock TERN_DRIVER_STREAM_SOCK) for a
 * UDP side (send_raw picks it). */
static int relay_rx(tern_driver *d, size_t sock, const tern_addr *from, uint8_t *data, size_t len,
                    void *user)
{
    tern_svc *s = user;
    if (len == 0 || data[0] != TERN_RELAY_TYPE || s->relay == NULL) return 0;
    tern_addr to;
    int n = tern_relay_forward(s->relay, tern_driver_now(d), from, data, len, &to);
    if (n > 0) {
        if (sock == TERN_DRIVER_STREAM_SOCK) s->relay_from_stream++;
        if (tern_addr_is_stream(&to)) s->relay_to_stream++;
        if (tern_driver_send_raw(d, sock, &to, data, (size_t)n) == TERN_OK) s->relay_sent++;
        else s->relay_send_failed++; /* not even queued */
    }
    return 1; /* dropped ones too: the relay counted why */
}

static int on_accept(tern_conn *c, void *user)
{
    tern_svc *s = user;
    int rc = tern_rdv_server_on_accept(s->rdv, c, tern_driver_now(s->d));
    if (rc != TERN_OK) return rc; /* the directory is full: refuse */
    s->accepted++;
    return 0;
}

static void on_message(tern_conn *c, uint64_t flow, const uint8_t *data, size_t len, void *user)
{
    tern_svc *s = user;
    tern_rdv_server_on_message(s->rdv, c, flow, data, len, tern_driver_now(s->d));
    rdv_rearm(s);
    relay_rearm(s);
}

static void on_conn_free(tern_conn *c, void *user)
{
    tern_svc *s = user;
    tern_rdv_server_on_gone(s->rdv, c, tern_driver_now(s->d));
    rdv_rearm(s);
}

static void on_datagram(tern_conn *c, const uint8_t *data, size_t len, void *user)
{
    tern_svc *s = user;
    s->datagrams++;
    if (tern_conn_send_datagram(c, tern_driver_now(s->d), data, len) == TERN_OK)
        s->echo_bytes += len;
    else
        s->echo_dropped++;
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *user)
{
    tern_svc *s = user;
    (void)err, (void)code, (void)reason, (void)len;
    s->closed++;
    tern_rdv_server_on_gone(s->rdv, c, tern_driver_now(s->d));
    rdv_rearm(s);
}

static void *run_thread(void *arg)
{
    tern_svc *s = arg;
    s->run_rc = tern_driver_run(s->d);
    if (s->run_rc != TERN_OK)
        fprintf(stderr, "ternd: tern: event loop failed: %s\n", strerror(errno));
    s->shutdown_left = tern_driver_shutdown(s->d, 0, "server shutting down", SHUTDOWN_GRACE_NS);
    return NULL;
}

static int load_key(const ternd_config *cfg, tern_keypair *kp)
{
    if (cfg->key_file == NULL) {
        if (tern_keypair_generate(kp) != TERN_OK) {
            fprintf(stderr, "ternd: tern: cannot generate a key\n");
            return TERN_ERR_CRYPTO;
        }
        return TERN_OK;
    }
    int rc = tern_keyfile_read(cfg->key_file, kp);
    if (rc == TERN_ERR_STATE)
        fprintf(stderr, "ternd: tern: cannot read key file %s: %s\n", cfg->key_file,
                strerror(errno));
    else if (rc != TERN_OK)
        fprintf(stderr, "ternd: tern: %s is not a key file (64 hex characters expected)\n",
                cfg->key_file);
    return rc;
}

/* Can a TCP listener be bound at a (the stream listener's address)? Returns 0, or the errno of
 * the failed bind (the socket is closed at once; nothing stays bound). */
static int probe_stream_bind(const tern_addr *a)
{
    struct sockaddr_storage ss;
    int sl = tern_addr_to_sockaddr(a, &ss);
    if (sl < 0) return EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    int one = 1, e = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->family == TERN_AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0) e = errno;
    close(fd);
    return e;
}

/* The stream listeners of cfg into dc (none with --no-stream). A default address that cannot be
 * bound is left out after a one-line warning; an explicit one fails (one line, TERN_ERR_STATE). */
static int add_stream_listeners(const ternd_config *cfg, tern_driver_config *dc)
{
    if (cfg->no_stream) return TERN_OK;
    const struct {
        const tern_addr *list;
        int n, is_default;
        const char *name, *opt;
    } kinds[2] = {{cfg->tcp_listen, cfg->n_tcp_listen, cfg->tcp_default, "TCP", "--tcp-listen"},
                  {cfg->tls_listen, cfg->n_tls_listen, cfg->tls_default, "TLS", "--tls-listen"}};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < kinds[k].n; i++) {
            const tern_addr *a = &kinds[k].list[i];
            char txt[64];
            tern_addr_format(a, txt, sizeof(txt));
            int e = probe_stream_bind(a);
            const char *why = e == EACCES ? " (ports below 1024 need root or "
                                            "CAP_NET_BIND_SERVICE)"
                                          : "";
            if (e != 0 && kinds[k].is_default) {
                fprintf(stderr,
                        "ternd: tern: cannot listen for %s on %s: %s%s; going on without "
                        "%s (%s to choose another address, --no-stream for none)\n",
                        kinds[k].name, txt, strerror(e), why, kinds[k].name, kinds[k].opt);
                continue;
            }
            if (e != 0) {
                fprintf(stderr, "ternd: tern: cannot listen for %s on %s (%s): %s%s\n",
                        kinds[k].name, txt, kinds[k].opt, strerror(e), why);
                return TERN_ERR_STATE;
            }
            dc->stream_listen[dc->n_stream_listen++] = *a;
        }
    }
    dc->tls_cert_file = cfg->tls_cert;
    dc->tls_key_file = cfg->tls_key;
    return TERN_OK;
}

static int start(ternd_service *svc, const ternd_config *cfg)
{
    svc->state = NULL;
    if (cfg->no_tern || cfg->stun_only) return TERN_OK;
    tern_svc *s = calloc(1, sizeof(*s));
    if (s == NULL) return TERN_ERR_NOMEM;
    svc->state = s;

    if (!cfg->no_relay) {
        tern_relay_config rl_cfg;
        tern_relay_config_default(&rl_cfg);
        ternd_limits_apply(cfg->limits, cfg->n_limits, NULL, NULL, &rl_cfg, NULL);
        if (tern_relay_new(&rl_cfg, &s->relay) != TERN_OK) return TERN_ERR_NOMEM;
    }
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    /* a public server: windows, queues and memory sized for rendezvous and relay, per-peer
     * and server-wide memory budgets, connections per source address (docs/security.md) */
    tern_settings_server_default(&dc.endpoint.settings);
    ternd_limits_apply(cfg->limits, cfg->n_limits, &dc.endpoint.settings, NULL, NULL,
                       &dc.stream_limits);
    s->stream_limits = dc.stream_limits;
    int rc = add_stream_listeners(cfg, &dc);
    if (rc != TERN_OK) return rc;
    rc = load_key(cfg, &dc.endpoint.static_key);
    if (rc != TERN_OK) return rc;
    dc.endpoint.is_server = 1;
    dc.endpoint.has_static_key = 1;
    dc.endpoint.callbacks.on_accept = on_accept;
    dc.endpoint.callbacks.on_datagram = on_datagram;
    dc.endpoint.callbacks.on_closed = on_closed;
    dc.endpoint.callbacks.on_message = on_message;
    dc.endpoint.callbacks.on_conn_free = on_conn_free;
    dc.endpoint.user_data = s;
    if (s->relay) {
        dc.rx_hook = relay_rx;
        dc.rx_hook_user = s;
    }
    dc.n_listen = (size_t)cfg->n_tern_listen;
    memcpy(dc.listen, cfg->tern_listen, sizeof(cfg->tern_listen[0]) * dc.n_listen);
    rc = tern_driver_new(&dc, &s->d);
    int e = errno;
    char hex[2 * TERN_KEY_LEN + 1];
    tern_hex_encode(dc.endpoint.static_key.pub, TERN_KEY_LEN, hex);
    tern_keypair_wipe(&dc.endpoint.static_key);
    if (rc != TERN_OK) {
        char txt[64];
        static const uint8_t any4[4];
        const tern_addr *l0 = &cfg->tern_listen[0];
        int is_default = cfg->n_tern_listen == 1 && l0->family == TERN_AF_INET &&
                         l0->port == TERND_TERN_PORT && memcmp(l0->ip, any4, 4) == 0;
        if (rc == TERN_ERR_STATE && e == EADDRINUSE && is_default) {
            fprintf(stderr, "ternd: tern: %s is in use; the tern listener stays off "
                            "(--tern-listen to choose another, --no-tern to silence this)\n",
                    tern_addr_format(&cfg->tern_listen[0], txt, sizeof(txt)));
            return TERN_OK;
        }
        const char *why = tern_driver_stream_error(NULL); /* a certificate, a stream listener */
        if (why[0] != '\0') fprintf(stderr, "ternd: tern: cannot start the listener: %s\n", why);
        else
            fprintf(stderr, "ternd: tern: cannot start the listener: %s\n",
                    rc == TERN_ERR_STATE ? strerror(e) : tern_strerror(rc));
        return rc;
    }
    /* the stream listeners as bound (the actual port where 0 was asked), for the lines below
     * and the report */
    s->n_stream = tern_driver_n_stream_listeners(s->d);
    for (size_t i = 0; i < s->n_stream; i++) tern_driver_stream_local_addr(s->d, i, &s->stream[i]);
    /* the rendezvous server, after the bind: the relay candidate it offers is the first tern
     * address with its actual port (a wildcard IP tells peers "where you reach this server") */
    tern_rdv_config rc_cfg;
    tern_rdv_config_default(&rc_cfg);
    ternd_limits_apply(cfg->limits, cfg->n_limits, NULL, &rc_cfg, NULL, NULL);
    struct timespec rt, mt;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mt);
    rc_cfg.unix_offset_s = (int64_t)rt.tv_sec - (int64_t)mt.tv_sec; /* token expiry */
    tern_addr relay_addr;
    if (s->relay && tern_driver_local_addr(s->d, 0, &relay_addr) == TERN_OK) {
        rc_cfg.has_relay = 1;
        rc_cfg.relay = relay_addr;
        rc_cfg.relay_sessions = s->relay;
    }
    if (cfg->has_token_secret) {
        rc_cfg.has_secret = 1;
        memcpy(rc_cfg.secret, cfg->token_secret, TERN_RDV_SECRET_LEN);
        rc_cfg.require_register_token = cfg->require_register_token;
        rc_cfg.require_join_token = cfg->require_join_token;
        rc_cfg.require_offer_token = cfg->require_offer_token;
        s->has_secret = 1;
        s->req_register = cfg->require_register_token;
        s->req_join = cfg->require_join_token;
        s->req_offer = cfg->require_offer_token;
    }
    rc = tern_rdv_server_new(&rc_cfg, &s->rdv);
    sodium_memzero(rc_cfg.secret, sizeof(rc_cfg.secret));
    if (rc != TERN_OK) return rc;
    if (tern_driver_timer_new(s->d, rdv_on_timer, s, &s->rdv_timer) != TERN_OK ||
        (s->relay && tern_driver_timer_new(s->d, relay_on_timer, s, &s->relay_timer) != TERN_OK) ||
        (!cfg->no_malloc_trim &&
         tern_driver_timer_new(s->d, mem_on_timer, s, &s->mem_timer) != TERN_OK)) {
        fprintf(stderr, "ternd: tern: cannot create a timer\n");
        return TERN_ERR_NOMEM;
    }
    if (s->mem_timer) tern_driver_timer_set(s->mem_timer, tern_driver_now(s->d) + TRIM_CHECK_NS);
    if (pthread_create(&s->th, NULL, run_thread, s) != 0) {
        fprintf(stderr, "ternd: tern: cannot start its thread\n");
        return TERN_ERR_STATE;
    }
    s->started = 1;
    if (!cfg->quiet) {
        for (size_t i = 0; i < tern_driver_n_sockets(s->d); i++) {
            tern_addr a;
            char txt[64];
            tern_driver_local_addr(s->d, i, &a);
            printf("ternd: tern listening on udp %s\n", tern_addr_format(&a, txt, sizeof(txt)));
        }
        for (size_t i = 0; i < s->n_stream; i++) {
            char txt[64];
            int tls = s->stream[i].transport == TERN_TRANSPORT_TLS;
            printf("ternd: tern listening on %s %s%s\n", tls ? "tls" : "tcp",
                   tern_addr_format(&s->stream[i], txt, sizeof(txt)),
                   !tls            ? ""
                   : cfg->tls_cert ? " (certificate from --tls-cert)"
                                   : " (self-signed certificate made at start; --tls-cert "
                                     "and --tls-key for a real one)");
        }
        if (cfg->no_stream) printf("ternd: tern over TCP and TLS off (--no-stream)\n");
        printf("ternd: tern public key %s\n", hex);
        if (s->has_secret) {
            char list[32] = "";
            if (s->req_register) strcat(list, ",register");
            if (s->req_join) strcat(list, ",join");
            if (s->req_offer) strcat(list, ",offer");
            printf("ternd: tokens required for %s (others checked when presented)\n",
                   list[0] ? list + 1 : "nothing");
        }
        printf("ternd: tern services: rendezvous (directory, introductions, groups, RPC) on "
               "flows; echo of datagrams\n");
        if (s->relay) {
            char txt[64];
            printf("ternd: relay on the tern port (udp %s%s), for introduced peers; sessions idle "
                   "out after 60 s\n",
                   tern_addr_format(&relay_addr, txt, sizeof(txt)),
                   s->n_stream ? ", and over each peer's own TCP/TLS stream" : "");
        } else {
            printf("ternd: relay off (--no-relay)\n");
        }
        fflush(stdout);
    }
    return TERN_OK;
}

static void stop(ternd_service *svc)
{
    tern_svc *s = svc->state;
    if (s == NULL || !s->started) return;
    tern_driver_stop(s->d);
    pthread_join(s->th, NULL);
    s->started = 0;
}

static void report(ternd_service *svc, FILE *out)
{
    tern_svc *s = svc->state;
    if (s == NULL || s->d == NULL) return;
    tern_endpoint_stats es;
    tern_driver_stats ds;
    tern_endpoint_get_stats(tern_driver_endpoint(s->d), &es);
    tern_driver_get_stats(s->d, &ds);
#define U(x) (unsigned long long)(x) /* for %llu */
    fprintf(out,
            "tern accepted=%llu closed=%llu datagrams=%llu echo_bytes=%llu echo_dropped=%llu "
            "closing_at_exit=%d\n",
            U(s->accepted), U(s->closed), U(s->datagrams), U(s->echo_bytes), U(s->echo_dropped),
            s->shutdown_left > 0 ? s->shutdown_left : 0);
    fprintf(out,
            "tern endpoint rx=%llu tx=%llu handshakes=%llu/%llu drop_auth=%llu "
            "drop_unknown_cid=%llu drop_rate_limited=%llu retries=%llu resets=%llu\n",
            U(es.rx_packets), U(es.tx_packets), U(es.handshakes_completed),
            U(es.handshakes_started), U(es.drop_auth), U(es.drop_unknown_cid),
            U(es.drop_rate_limited), U(es.retries_sent), U(es.resets_sent));
    fprintf(out,
            "tern limits amplification_blocked=%llu probes_unpadded=%llu probes_exhausted=%llu "
            "paths_refused=%llu responses_limited=%llu initial_copies=%llu "
            "refused_per_ip=%llu refused_memory=%llu closed_budget=%llu closed_nomem=%llu "
            "mem_refused=%llu mem_peak=%llu sources=%llu\n",
            U(es.amplification_blocked), U(es.probes_unpadded), U(es.probes_exhausted),
            U(es.paths_refused), U(es.responses_limited), U(es.initial_copies),
            U(es.conns_refused_per_ip), U(es.conns_refused_memory), U(es.conns_closed_budget),
            U(es.conns_closed_nomem), U(es.mem_refused), U(es.mem_peak), U(es.sources_current));
    fprintf(out,
            "tern driver iterations=%llu rx_syscalls=%llu rx_datagrams=%llu rx_gro=%llu "
            "tx_syscalls=%llu tx_datagrams=%llu tx_gso=%llu tx_errors=%llu gso=%d gro=%d\n",
            U(ds.iterations), U(ds.rx_syscalls), U(ds.rx_datagrams), U(ds.rx_gro_batches),
            U(ds.tx_syscalls), U(ds.tx_datagrams), U(ds.tx_gso_msgs), U(ds.tx_errors), ds.gso,
            ds.gro);
    {
        const tern_driver_stream_limits *sl = &s->stream_limits;
        char list[TERN_DRIVER_MAX_SOCKETS * 48] = "";
        size_t off = 0;
        for (size_t i = 0; i < s->n_stream && off < sizeof(list); i++) {
            char txt[64];
            int n = snprintf(list + off, sizeof(list) - off, "%s%s", i ? "," : "",
                             tern_addr_format(&s->stream[i], txt, sizeof(txt)));
            if (n > 0) off += (size_t)n;
        }
        fprintf(out,
                "tern streams listen=%s max_streams=%llu max_per_ip=%llu write_buffer=%llu "
                "preamble_ms=%llu idle_s=%llu accept_rate=%llu buffer_total=%llu relay_from_stream=%llu "
                "relay_to_stream=%llu\n",
                s->n_stream ? list : "none", U(sl->max_streams), U(sl->max_per_ip),
                U(sl->write_buffer), U(sl->preamble_timeout_ns / TERN_NS_PER_MS),
                U(sl->idle_timeout_ns / TERN_NS_PER_S), U(sl->accept_rate),
                U(sl->buffer_total), U(s->relay_from_stream), U(s->relay_to_stream));
        fprintf(out,
                "tern streams open=%llu accepted=%llu refused_max=%llu refused_per_ip=%llu "
                "refused_rate=%llu accept_errors=%llu preamble_timeouts=%llu idle_timeouts=%llu "
                "bad_preamble=%llu bad_length=%llu closed_peer=%llu closed_error=%llu "
                "frames_in=%llu frames_out=%llu bytes_in=%llu bytes_out=%llu tx_dropped=%llu "
                "tx_held=%llu raw_limited=%llu over_budget=%llu buffer_bytes=%llu buffer_peak=%llu "
                "tls_handshakes=%llu tls_failures=%llu\n",
                U(ds.streams_open), U(ds.streams_accepted), U(ds.streams_refused_max),
                U(ds.streams_refused_per_ip), U(ds.streams_refused_rate),
                U(ds.stream_accept_errors),
                U(ds.stream_preamble_timeouts), U(ds.stream_idle_timeouts),
                U(ds.stream_bad_preamble), U(ds.stream_bad_length), U(ds.stream_closed_peer),
                U(ds.stream_closed_error), U(ds.stream_frames_in), U(ds.stream_frames_out),
                U(ds.stream_bytes_in), U(ds.stream_bytes_out), U(ds.stream_tx_dropped),
                U(ds.stream_tx_held), U(ds.stream_raw_limited), U(ds.stream_over_budget),
                U(ds.stream_buffer_bytes), U(ds.stream_buffer_peak), U(ds.tls_handshakes), U(ds.tls_failures));
    }
    if (s->rdv) {
        tern_rdv_stats rs;
        tern_rdv_server_get_stats(s->rdv, &rs);
        fprintf(out,
                "rendezvous peers=%llu registered=%llu groups=%llu services=%llu "
                "introductions=%llu group_msgs=%llu calls=%llu bad_messages=%llu\n",
                U(rs.peers), U(rs.registered), U(rs.groups), U(rs.services), U(rs.introductions),
                U(rs.group_msgs), U(rs.calls), U(rs.bad_messages));
        fprintf(out,
                "rendezvous limits services=%llu groups=%llu join_rate=%llu presence_dropped=%llu "
                "intro_peer=%llu intro_target=%llu local_cands_dropped=%llu relay_refused_peer=%llu "
                "relay_closed=%llu calls=%llu peer_state=%llu mem=%llu queue_dropped=%llu "
                "slow_closed=%llu queue_max=%llu peer_state_max=%llu\n",
                U(rs.limit_services), U(rs.limit_groups), U(rs.rate_dropped_join),
                U(rs.presence_dropped), U(rs.intro_limited_peer), U(rs.intro_limited_target),
                U(rs.local_cands_dropped), U(rs.relay_refused_peer), U(rs.relay_closed),
                U(rs.limit_calls), U(rs.limit_peer_state), U(rs.limit_mem), U(rs.queue_dropped),
                U(rs.slow_closed), U(rs.queue_max), U(rs.peer_state_max));
        fprintf(out, "rendezvous tokens secret=%d register=%d join=%d offer=%d rejected=%llu\n",
                s->has_secret, s->req_register, s->req_join, s->req_offer, U(rs.token_rejected));
    }
    uint64_t parts[3];
    uint64_t acc = mem_accounted(s, parts);
    fprintf(out,
            "memory accounted=%llu endpoint=%llu rendezvous=%llu relay=%llu "
            "peak_since_trim=%llu trims=%llu trimmed_from=%llu trim_ms=%.1f rss=%llu\n",
            U(acc), U(parts[0]), U(parts[1]), U(parts[2]), U(s->mem_peak), U(s->mem_trims),
            U(s->mem_trimmed_from), (double)s->mem_trim_ns / 1e6, U(rss_bytes()));
    if (s->relay) {
        tern_relay_stats ls;
        tern_relay_get_stats(s->relay, &ls);
        fprintf(out,
                "relay sessions=%llu opened=%llu expired=%llu refused=%llu fwd_packets=%llu "
                "fwd_bytes=%llu queued=%llu queue_failed=%llu sent=%llu send_refused=%llu "
                "sendmmsg=%llu gso=%llu drop_short=%llu drop_malformed=%llu "
                "drop_oversize=%llu drop_unknown_channel=%llu drop_wrong_source=%llu "
                "drop_rate_limited=%llu evicted=%llu closed=%llu mem=%llu\n",
                U(ls.sessions), U(ls.opened), U(ls.expired), U(ls.open_refused), U(ls.fwd_packets),
                U(ls.fwd_bytes), U(s->relay_sent), U(s->relay_send_failed), U(ds.tx_raw),
                U(ds.tx_raw_errors), U(ds.tx_raw_syscalls), U(ds.tx_raw_gso_msgs), U(ls.drop_short),
                U(ls.drop_malformed), U(ls.drop_oversize), U(ls.drop_unknown_channel),
                U(ls.drop_wrong_source), U(ls.drop_rate_limited), U(ls.evicted), U(ls.closed),
                U(ls.mem_current));
    }
#undef U
}

static void destroy(ternd_service *svc)
{
    tern_svc *s = svc->state;
    if (s == NULL) return;
    stop(svc);
    if (s->rdv_timer) tern_driver_timer_del(s->rdv_timer);
    if (s->relay_timer) tern_driver_timer_del(s->relay_timer);
    if (s->mem_timer) tern_driver_timer_del(s->mem_timer);
    tern_driver_del(s->d); /* frees every connection: the rendezvous server hears on_conn_free */
    tern_rdv_server_del(s->rdv);
    tern_relay_del(s->relay);
    free(s);
    svc->state = NULL;
}

const ternd_service ternd_tern_service = {
    .name = "tern",
    .start = start,
    .stop = stop,
    .report = report,
    .destroy = destroy,
};
