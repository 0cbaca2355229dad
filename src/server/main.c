/*
 * ternd: the tern server. Parses the command line into a ternd_config, starts each service in
 * the services[] list (STUN, and the tern listener with the rendezvous server, the relay and a
 * datagram echo), waits for SIGINT or SIGTERM with sigwait (the signals are blocked in every
 * thread), then stops the services, prints their counters and exits 0 (1 when a service did
 * not start, 2 on a bad command line).
 *
 * With no arguments it runs on embedded defaults: STUN on 0.0.0.0:3478, UDP and TCP, one UDP
 * worker per core; the tern listener (rendezvous, relay, datagram echo) on UDP 0.0.0.0:4433 with
 * a fresh key, and the same service over TCP on 0.0.0.0:4433 and over TLS on 0.0.0.0:443 with a
 * self-signed certificate (for clients whose network drops UDP; tern_service.c).
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/service.h"
#include "tern/driver.h"
#include "tern/rendezvous.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ternd [options]\n"
            "  --stun-only           run only the STUN service\n"
            "  --listen ADDR:PORT    STUN address, repeatable up to %d (default 0.0.0.0:%d)\n"
            "  --alt ADDR:PORT       RFC 5780 alternate address: answer CHANGE-REQUEST\n"
            "                        (needs exactly one --listen with a specific IP)\n"
            "  --workers N           UDP worker threads, one socket each (default: cores)\n"
            "  --batch N             datagrams per recvmmsg/sendmmsg (default 64)\n"
            "  --no-udp, --no-tcp    leave a transport out (both on by default)\n"
            "  --software TEXT       SOFTWARE attribute (default \"tern\")\n"
            "  --no-software         leave SOFTWARE out\n"
            "  --no-fingerprint      leave FINGERPRINT out of responses\n"
            "  --no-rfc3489          drop requests without the magic cookie\n"
            "  --user U --password P require short-term credentials (MESSAGE-INTEGRITY)\n"
            "  --error-rate N        error responses per second per source (default 20)\n"
            "  --tern-listen ADDR:PORT  tern listener, repeatable up to %d (default 0.0.0.0:%d);\n"
            "                        it accepts connections and echoes every datagram back\n"
            "  --key FILE            the tern listener's private key (from `tern keygen`);\n"
            "                        without it a fresh key is made and its public half printed\n"
            "  --no-tern             no tern listener\n"
            "  --no-relay            no relay on the tern port (introductions offer none)\n"
            "  --tcp-listen ADDR:PORT  tern over TCP, repeatable up to %d (default: each\n"
            "                        --tern-listen address that has a fixed port, 0.0.0.0:%d):\n"
            "                        rendezvous and relay as on UDP, for clients without UDP\n"
            "  --tls-listen ADDR:PORT  tern over TLS 1.3, repeatable up to %d (default: port %d\n"
            "                        of each --tern-listen IP; a default that cannot be bound,\n"
            "                        e.g. without the privilege for ports below 1024, is a\n"
            "                        warning and no TLS; a given one, an error)\n"
            "  --tls-cert FILE --tls-key FILE  PEM certificate (chain) and key for TLS\n"
            "                        (default: a self-signed certificate made at start)\n"
            "  --no-stream           no TCP or TLS listener (tern over UDP only)\n"
            "  --token-secret FILE   the secret of access tokens (`tern token new-secret FILE`);\n"
            "                        tokens that peers present are then checked\n"
            "  --require-tokens LIST register,join,offer or all: refuse those requests without\n"
            "                        a valid token (`tern token register|join|offer`); needs\n"
            "                        --token-secret\n"
            "  --stun-tcp-max N      STUN TCP connections held at once (default %d); when full\n"
            "                        a new one replaces the idlest of the address holding most\n"
            "  --stun-tcp-per-addr N per source address (IPv6: per /64) (default %d)\n"
            "  --stun-tcp-idle S     close a STUN TCP connection after S seconds without a\n"
            "                        complete request (default %d)\n"
            "  --no-malloc-trim      keep freed memory (by default, when the accounted memory\n"
            "                        falls by half and 1 MiB, it goes back to the system)\n"
            "  --limit NAME=VALUE    set one budget (connections, memory, rendezvous and relay\n"
            "                        limits; k/m/g suffixes), repeatable; --limits lists them\n"
            "  --limits              every limit with its default, then exit\n"
            "  --quiet               no startup lines\n"
            "  -h, --help            this text\n"
            "SIGINT/SIGTERM stop it and print its counters to stderr.\n",
            TERND_MAX_LISTEN, TERN_STUN_PORT, TERND_MAX_LISTEN, TERND_TERN_PORT,
            TERND_MAX_LISTEN, TERND_TERN_PORT, TERND_MAX_LISTEN, TERND_TLS_PORT,
            TERND_STUN_TCP_MAX, TERND_STUN_TCP_PER_ADDR, TERND_STUN_TCP_IDLE_S);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* ADDR[:PORT], default_port when it names none. */
static int parse_addr(const char *s, uint16_t default_port, tern_addr *a)
{
    if (tern_addr_parse(a, s) != TERN_OK) return -1;
    if (strchr(s, ':') == NULL || (s[0] == '[' && strstr(s, "]:") == NULL)) a->port = default_port;
    return 0;
}

/* The value v of option name, an integer in [lo, hi] (unit: after the range in the message).
 * Returns 0, or -1 after printing why. */
static int int_opt(const char *name, const char *v, int lo, int hi, const char *unit, int *out)
{
    if (parse_int(v, lo, hi, out) == 0) return 0;
    fprintf(stderr, "ternd: bad %s %s (%d..%d%s)\n", name, v, lo, hi, unit);
    return -1;
}

/* The value v of a repeatable address option (--listen, --tern-listen): appended to list[*n],
 * at most TERND_MAX_LISTEN. Returns 0, or -1 after printing why. */
static int addr_opt(const char *name, const char *v, uint16_t default_port, tern_addr *list,
                    int *n)
{
    if (*n == TERND_MAX_LISTEN || parse_addr(v, default_port, &list[*n]) != 0) {
        fprintf(stderr, "ternd: bad %s %s (ADDR:PORT, at most %d)\n", name, v, TERND_MAX_LISTEN);
        return -1;
    }
    (*n)++;
    return 0;
}

/* Reads the token secret (tern_secretfile_read). Returns 0, or -1 after printing why. */
static int read_secret(const char *path, uint8_t secret[TERN_RDV_SECRET_LEN])
{
    int rc = tern_secretfile_read(path, secret, TERN_RDV_SECRET_LEN);
    if (rc == TERN_ERR_STATE) {
        fprintf(stderr, "ternd: cannot read --token-secret %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (rc != TERN_OK) {
        fprintf(stderr, "ternd: %s is not a token secret (64 hex characters: tern token "
                        "new-secret)\n",
                path);
        return -1;
    }
    return 0;
}

/* "register,join,offer" (any of them) or "all". */
static int parse_require(const char *v, ternd_config *c)
{
    char buf[64];
    if (strlen(v) >= sizeof(buf)) return -1;
    strcpy(buf, v);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "all")) c->require_register_token = c->require_join_token =
            c->require_offer_token = 1;
        else if (!strcmp(t, "register")) c->require_register_token = 1;
        else if (!strcmp(t, "join")) c->require_join_token = 1;
        else if (!strcmp(t, "offer")) c->require_offer_token = 1;
        else return -1;
    }
    return c->require_register_token || c->require_join_token || c->require_offer_token ? 0 : -1;
}

static int parse_args(int argc, char **argv, ternd_config *c)
{
    memset(c, 0, sizeof(*c));
    c->udp = c->tcp = 1;
    c->batch = 64;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = cores > 0 ? (int)cores : 1;
    tern_stun_server_config_default(&c->stun);
    c->stun_tcp_max = TERND_STUN_TCP_MAX;
    c->stun_tcp_per_addr = TERND_STUN_TCP_PER_ADDR;
    c->stun_tcp_idle_s = TERND_STUN_TCP_IDLE_S;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (v == NULL) {                                                                           \
            fprintf(stderr, "ternd: %s needs a value\n", a);                                       \
            return -1;                                                                             \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--stun-only")) {
            c->stun_only = 1;
        } else if (!strcmp(a, "--listen")) {
            NEED_VALUE();
            if (addr_opt(a, v, TERN_STUN_PORT, c->listen, &c->n_listen) != 0) return -1;
        } else if (!strcmp(a, "--alt")) {
            NEED_VALUE();
            if (parse_addr(v, TERN_STUN_PORT, &c->alt) != 0) {
                fprintf(stderr, "ternd: bad --alt %s (ADDR:PORT)\n", v);
                return -1;
            }
            c->has_alt = 1;
        } else if (!strcmp(a, "--workers")) {
            NEED_VALUE();
            if (int_opt(a, v, 1, 1024, "", &c->workers) != 0) return -1;
        } else if (!strcmp(a, "--batch")) {
            NEED_VALUE();
            if (int_opt(a, v, 1, 1024, "", &c->batch) != 0) return -1;
        } else if (!strcmp(a, "--error-rate")) {
            int r;
            NEED_VALUE();
            if (parse_int(v, 0, 1000000, &r) != 0) {
                fprintf(stderr, "ternd: bad --error-rate %s\n", v);
                return -1;
            }
            c->stun.error_rate = (uint32_t)r;
            c->stun.error_burst = (uint32_t)(r > 0 ? 2 * r : 1);
        } else if (!strcmp(a, "--no-udp")) {
            c->udp = 0;
        } else if (!strcmp(a, "--no-tcp")) {
            c->tcp = 0;
        } else if (!strcmp(a, "--software")) {
            NEED_VALUE();
            c->stun.software = v;
        } else if (!strcmp(a, "--no-software")) {
            c->stun.software = NULL;
        } else if (!strcmp(a, "--no-fingerprint")) {
            c->stun.fingerprint = 0;
        } else if (!strcmp(a, "--no-rfc3489")) {
            c->stun.allow_rfc3489 = 0;
        } else if (!strcmp(a, "--user")) {
            NEED_VALUE();
            c->stun.username = v;
        } else if (!strcmp(a, "--password")) {
            NEED_VALUE();
            c->stun.password = v;
        } else if (!strcmp(a, "--tern-listen")) {
            NEED_VALUE();
            if (addr_opt(a, v, TERND_TERN_PORT, c->tern_listen, &c->n_tern_listen) != 0) return -1;
        } else if (!strcmp(a, "--key")) {
            NEED_VALUE();
            c->key_file = v;
        } else if (!strcmp(a, "--no-tern")) {
            c->no_tern = 1;
        } else if (!strcmp(a, "--no-relay")) {
            c->no_relay = 1;
        } else if (!strcmp(a, "--tcp-listen")) {
            NEED_VALUE();
            if (addr_opt(a, v, TERND_TERN_PORT, c->tcp_listen, &c->n_tcp_listen) != 0) return -1;
            c->tcp_listen[c->n_tcp_listen - 1].transport = TERN_TRANSPORT_TCP;
        } else if (!strcmp(a, "--tls-listen")) {
            NEED_VALUE();
            if (addr_opt(a, v, TERND_TLS_PORT, c->tls_listen, &c->n_tls_listen) != 0) return -1;
            c->tls_listen[c->n_tls_listen - 1].transport = TERN_TRANSPORT_TLS;
        } else if (!strcmp(a, "--tls-cert")) {
            NEED_VALUE();
            c->tls_cert = v;
        } else if (!strcmp(a, "--tls-key")) {
            NEED_VALUE();
            c->tls_key = v;
        } else if (!strcmp(a, "--no-stream")) {
            c->no_stream = 1;
        } else if (!strcmp(a, "--token-secret")) {
            NEED_VALUE();
            if (read_secret(v, c->token_secret) != 0) return -1;
            c->has_token_secret = 1;
        } else if (!strcmp(a, "--require-tokens")) {
            NEED_VALUE();
            if (parse_require(v, c) != 0) {
                fprintf(stderr, "ternd: bad --require-tokens %s (register,join,offer or all)\n",
                        v);
                return -1;
            }
        } else if (!strcmp(a, "--stun-tcp-max")) {
            NEED_VALUE();
            if (int_opt(a, v, 1, 65536, "", &c->stun_tcp_max) != 0) return -1;
        } else if (!strcmp(a, "--stun-tcp-per-addr")) {
            NEED_VALUE();
            if (int_opt(a, v, 1, 65536, "", &c->stun_tcp_per_addr) != 0) return -1;
        } else if (!strcmp(a, "--stun-tcp-idle")) {
            NEED_VALUE();
            if (int_opt(a, v, 1, 3600, " seconds", &c->stun_tcp_idle_s) != 0) return -1;
        } else if (!strcmp(a, "--no-malloc-trim")) {
            c->no_malloc_trim = 1;
        } else if (!strcmp(a, "--limit")) {
            NEED_VALUE();
            if (c->n_limits >= TERND_MAX_LIMITS) {
                fprintf(stderr, "ternd: at most %d --limit options\n", TERND_MAX_LIMITS);
                return -1;
            }
            if (ternd_limit_parse(v, &c->limits[c->n_limits], stderr) != 0) return -1;
            c->n_limits++;
        } else if (!strcmp(a, "--limits")) {
            ternd_limits_list(stdout);
            exit(0);
        } else if (!strcmp(a, "--quiet")) {
            c->quiet = 1;
        } else {
            fprintf(stderr, "ternd: unknown option %s (try --help)\n", a);
            return -1;
        }
#undef NEED_VALUE
    }
    if (c->n_listen == 0) {
        tern_addr_ipv4(&c->listen[0], 0, 0, 0, 0, TERN_STUN_PORT);
        c->n_listen = 1;
    }
    if (c->n_tern_listen == 0) {
        tern_addr_ipv4(&c->tern_listen[0], 0, 0, 0, 0, TERND_TERN_PORT);
        c->n_tern_listen = 1;
    }
    /* the stream listeners follow the tern listeners: each address with a fixed port over TCP
     * too (0.0.0.0:4433 by default), and port 443 of each of their IPs over TLS; a tern
     * address with port 0 (tests, several servers on one host) gets none */
    if (c->n_tcp_listen == 0) {
        c->tcp_default = 1;
        for (int i = 0; i < c->n_tern_listen; i++) {
            if (c->tern_listen[i].port == 0) continue;
            c->tcp_listen[c->n_tcp_listen] = c->tern_listen[i];
            c->tcp_listen[c->n_tcp_listen++].transport = TERN_TRANSPORT_TCP;
        }
    }
    if (c->n_tls_listen == 0) {
        c->tls_default = 1;
        for (int i = 0; i < c->n_tern_listen; i++) {
            tern_addr a = c->tern_listen[i];
            int dup = a.port == 0;
            a.port = TERND_TLS_PORT;
            a.transport = TERN_TRANSPORT_TLS;
            for (int j = 0; j < c->n_tls_listen && !dup; j++)
                dup = tern_addr_equal(&a, &c->tls_listen[j]);
            if (!dup) c->tls_listen[c->n_tls_listen++] = a;
        }
    }
    if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
        fprintf(stderr, "ternd: --tls-cert and --tls-key go together\n");
        return -1;
    }
    if (c->has_alt && (c->n_listen != 1 || c->alt.family != c->listen[0].family ||
                       c->alt.port == c->listen[0].port ||
                       memcmp(c->alt.ip, c->listen[0].ip, 16) == 0)) {
        fprintf(stderr, "ternd: --alt needs one --listen of the same family, with another IP "
                        "and another port\n");
        return -1;
    }
    if ((c->stun.username == NULL) != (c->stun.password == NULL)) {
        fprintf(stderr, "ternd: --user and --password go together\n");
        return -1;
    }
    if ((c->require_register_token || c->require_join_token || c->require_offer_token) &&
        !c->has_token_secret) {
        fprintf(stderr, "ternd: --require-tokens needs --token-secret FILE (tern token "
                        "new-secret FILE makes one)\n");
        return -1;
    }
    if (!c->udp && !c->tcp) {
        fprintf(stderr, "ternd: --no-udp and --no-tcp leave nothing to serve\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    ternd_config cfg;
    int prc = parse_args(argc, argv, &cfg);
    if (prc != 0) {
        sodium_memzero(cfg.token_secret, sizeof(cfg.token_secret));
        return 2;
    }
    /* glibc makes an arena per thread that allocates (up to 8 per core), each keeping its own
     * free memory; the services allocate from one or two threads, so two arenas serve them and
     * keep what an attack leaves behind in fewer places (MALLOC_ARENA_MAX still overrides) */
    if (getenv("MALLOC_ARENA_MAX") == NULL) mallopt(M_ARENA_MAX, 2);

    /* Block the stop signals before any thread starts, so only sigwait below sees them. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);

    ternd_service services[] = {ternd_stun_service, ternd_tern_service};
    size_t n_services = sizeof(services) / sizeof(services[0]);
    size_t started = 0;
    int rc = 0;
    for (; started < n_services; started++) {
        if (services[started].start(&services[started], &cfg) != TERN_OK) {
            fprintf(stderr, "ternd: the %s service did not start\n", services[started].name);
            services[started].destroy(&services[started]);
            rc = 1;
            break;
        }
    }
    if (rc == 0) {
        int sig = 0;
        sigwait(&stop_set, &sig);
        fprintf(stderr, "ternd: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    for (size_t i = started; i-- > 0;) {
        services[i].stop(&services[i]);
        services[i].report(&services[i], stderr);
        services[i].destroy(&services[i]);
    }
    sodium_memzero(cfg.token_secret, sizeof(cfg.token_secret));
    return rc;
}
