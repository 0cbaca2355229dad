/* Helpers shared by the tern sub-commands: name resolution, the clock, waiting on a socket. */
#include <netdb.h>
#include <openssl/evp.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tern/driver.h"
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

void tools_copy_reason(char *dst, size_t cap, const char *reason, size_t len)
{
    tools_text_escape(dst, cap, (const uint8_t *)reason, len); /* the peer's words */
}

int xfer_hash_init(xfer_hash *h)
{
    EVP_MD_CTX *ctx = h->ctx ? h->ctx : EVP_MD_CTX_new();
    if (ctx == NULL) return -1;
    h->ctx = ctx;
    return EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

void xfer_hash_update(xfer_hash *h, const void *data, size_t len)
{
    if (len) EVP_DigestUpdate(h->ctx, data, len);
}

void xfer_hash_final(xfer_hash *h, uint8_t out[XFER_HASH_LEN])
{
    unsigned int n = XFER_HASH_LEN;
    EVP_DigestFinal_ex(h->ctx, out, &n);
}

void xfer_hash_free(xfer_hash *h)
{
    EVP_MD_CTX_free(h->ctx); /* also wipes the state */
    h->ctx = NULL;
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
}
