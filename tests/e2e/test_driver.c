/*
 * Driver tests on loopback sockets, in one thread, through the embedding API: a server driver
 * and a client driver are both polled on tern_driver_fd() with tern_driver_timeout_ms() and
 * advanced with tern_driver_process(). Checks: the timer heap fires application timers in
 * order and honours cancel/re-arm; a handshake and a burst of equal-sized datagrams (GSO where
 * the kernel has it) arrive intact, once with GSO/GRO and once with both disabled (the plain
 * sendmmsg path); IPv6 on ::1 when the host has it; tern_driver_shutdown() closes the server's
 * connections so the client sees TERN_ERR_PEER_CLOSED; tern_driver_stop() ends tern_driver_run().
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern/driver.h"

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);              \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define BURST 200
#define DGRAM_LEN 1000

typedef struct side {
    tern_driver *d;
    tern_conn *conn;
    int established, closed, close_err;
    unsigned got, bad;
    int echo; /* server: send each datagram back */
} side;

static void on_established(tern_conn *c, void *user)
{
    side *s = user;
    s->established = 1;
    s->conn = c;
}

static void on_datagram(tern_conn *c, const uint8_t *data, size_t len, void *user)
{
    side *s = user;
    if (s->echo) {
        (void)tern_conn_send_datagram(c, tern_driver_now(s->d), data, len);
        return;
    }
    unsigned seq = data[0] | (unsigned)data[1] << 8;
    int ok = len == DGRAM_LEN;
    for (size_t i = 2; ok && i < len; i++) ok = data[i] == (uint8_t)(seq + i);
    if (ok) s->got++;
    else s->bad++;
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *r, size_t l, void *user)
{
    side *s = user;
    (void)c, (void)code, (void)r, (void)l;
    s->closed = 1;
    s->close_err = err;
}

static void on_free(tern_conn *c, void *user)
{
    side *s = user;
    if (s->conn == c) s->conn = NULL;
}

static int make(side *s, int server, const tern_keypair *kp, const tern_addr *bind, int plain)
{
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.endpoint.is_server = server;
    if (kp) {
        dc.endpoint.has_static_key = 1;
        dc.endpoint.static_key = *kp;
    }
    dc.endpoint.callbacks.on_established = on_established;
    dc.endpoint.callbacks.on_datagram = on_datagram;
    dc.endpoint.callbacks.on_closed = on_closed;
    dc.endpoint.callbacks.on_conn_free = on_free;
    dc.endpoint.user_data = s;
    dc.n_listen = 1;
    dc.listen[0] = *bind;
    dc.disable_gso = dc.disable_gro = plain;
    s->echo = server;
    return tern_driver_new(&dc, &s->d);
}

/* Drives both drivers through the embedding API until done(a) or the time limit. */
static void pump(side *a, side *b, int (*done)(side *, side *), uint64_t limit_ms)
{
    uint64_t end = tern_driver_update_now(a->d) + limit_ms * TERN_NS_PER_MS;
    while (!done(a, b) && tern_driver_update_now(a->d) < end) {
        struct pollfd p[2] = {{tern_driver_fd(a->d), POLLIN, 0}, {tern_driver_fd(b->d), POLLIN, 0}};
        int ta = tern_driver_timeout_ms(a->d), tb = tern_driver_timeout_ms(b->d);
        int t = ta < 0 ? tb : tb < 0 ? ta : (ta < tb ? ta : tb);
        if (t < 0 || t > 50) t = 50;
        (void)poll(p, 2, t);
        CHECK(tern_driver_process(a->d) >= 0);
        CHECK(tern_driver_process(b->d) >= 0);
    }
}

static int both_established(side *c, side *s)
{
    return c->established && s->established;
}
static int burst_back(side *c, side *s)
{
    (void)s;
    return c->got + c->bad >= BURST;
}
static int client_closed(side *c, side *s)
{
    (void)s;
    return c->closed;
}

static void echo_round(const tern_addr *bind, int plain)
{
    side srv, cli;
    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    tern_keypair kp;
    CHECK(tern_keypair_generate(&kp) == TERN_OK);
    if (make(&srv, 1, &kp, bind, plain) != TERN_OK) {
        fprintf(stderr, "skip: cannot bind %s\n", bind->family == TERN_AF_INET6 ? "::1" : "v4");
        return;
    }
    CHECK(make(&cli, 0, NULL, bind, plain) == TERN_OK);
    tern_addr to;
    CHECK(tern_driver_local_addr(srv.d, 0, &to) == TERN_OK);
    CHECK(to.port != 0);
    tern_conn *c = NULL;
    CHECK(tern_driver_connect(cli.d, &to, kp.pub, &c) == TERN_OK);
    pump(&cli, &srv, both_established, 5000);
    CHECK(both_established(&cli, &srv));

    /* a burst of equal-sized datagrams to one destination: GSO material */
    uint8_t buf[DGRAM_LEN];
    uint64_t now = tern_driver_update_now(cli.d);
    for (unsigned q = 0; q < BURST && cli.conn; q++) {
        buf[0] = (uint8_t)q, buf[1] = (uint8_t)(q >> 8);
        for (size_t i = 2; i < sizeof(buf); i++) buf[i] = (uint8_t)(q + i);
        CHECK(tern_conn_send_datagram(cli.conn, now, buf, sizeof(buf)) == TERN_OK);
    }
    tern_driver_flush(cli.d);
    pump(&cli, &srv, burst_back, 5000);
    CHECK(cli.bad == 0);
    CHECK(cli.got >= BURST * 9 / 10); /* datagrams are unreliable; loopback loses ~none */
    tern_driver_stats cs, ss;
    tern_driver_get_stats(cli.d, &cs);
    tern_driver_get_stats(srv.d, &ss);
    printf("%s %s: %u/%u echoed; client tx=%llu in %llu syscalls, %llu GSO msgs (gso=%d); "
           "server rx=%llu, %llu GRO buffers (gro=%d), tx %llu GSO msgs\n",
           bind->family == TERN_AF_INET6 ? "ipv6" : "ipv4", plain ? "plain" : "gso/gro", cli.got,
           BURST, (unsigned long long)cs.tx_datagrams, (unsigned long long)cs.tx_syscalls,
           (unsigned long long)cs.tx_gso_msgs, cs.gso, (unsigned long long)ss.rx_datagrams,
           (unsigned long long)ss.rx_gro_batches, ss.gro, (unsigned long long)ss.tx_gso_msgs);
    if (plain) {
        CHECK(cs.gso == 0 && cs.tx_gso_msgs == 0 && ss.rx_gro_batches == 0);
    } else if (cs.gso) {
        CHECK(cs.tx_gso_msgs > 0 || cs.gso_fallbacks > 0);
        CHECK(cs.tx_syscalls < cs.tx_datagrams);
    }
    CHECK(cs.tx_errors == 0);

    /* graceful shutdown of the server: the client hears PEER_CLOSED */
    int left = tern_driver_shutdown(srv.d, 7, "bye", 0);
    CHECK(left >= 0);
    pump(&cli, &srv, client_closed, 3000);
    CHECK(cli.closed && cli.close_err == TERN_ERR_PEER_CLOSED);
    tern_driver_del(cli.d);
    tern_driver_del(srv.d);
}

/* ---------------------------------------------------------------- timers */

typedef struct tlog {
    int order[16];
    int n;
    tern_driver_timer *rearm;
} tlog;

static int ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
static tlog g_log;

static void fire(tern_driver *d, tern_driver_timer *t, void *user)
{
    int id = *(int *)user;
    if (g_log.n < 16) g_log.order[g_log.n++] = id;
    if (id == 7) tern_driver_stop(d);
    (void)t;
}

static void test_timers(void)
{
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    tern_addr lo;
    tern_addr_ipv4(&lo, 127, 0, 0, 1, 0);
    dc.n_listen = 1;
    dc.listen[0] = lo;
    tern_driver *d;
    CHECK(tern_driver_new(&dc, &d) == TERN_OK);
    tern_driver_timer *t[8];
    uint64_t now = tern_driver_update_now(d);
    /* armed out of order: 7 last (it stops the loop), 3 cancelled, 5 re-armed earlier */
    static const int ms[8] = {40, 10, 30, 20, 60, 90, 50, 100};
    for (int i = 0; i < 8; i++) {
        CHECK(tern_driver_timer_new(d, fire, &ids[i], &t[i]) == TERN_OK);
        CHECK(tern_driver_timer_set(t[i], now + (uint64_t)ms[i] * TERN_NS_PER_MS) == TERN_OK);
    }
    tern_driver_timer_cancel(t[3]);
    CHECK(tern_driver_timer_set(t[5], now + 5 * TERN_NS_PER_MS) == TERN_OK);
    uint64_t t0 = now;
    CHECK(tern_driver_run(d) == TERN_OK);
    uint64_t took = tern_driver_update_now(d) - t0;
    static const int want[] = {5, 1, 2, 0, 6, 4, 7};
    CHECK(g_log.n == 7);
    for (int i = 0; i < 7 && i < g_log.n; i++) CHECK(g_log.order[i] == want[i]);
    CHECK(took >= 100 * TERN_NS_PER_MS && took < 1000 * TERN_NS_PER_MS);
    /* a stop before run() is not lost */
    tern_driver_stop(d);
    CHECK(tern_driver_run(d) == TERN_OK);
    for (int i = 0; i < 8; i++) tern_driver_timer_del(t[i]);
    tern_driver_del(d);
}

int main(void)
{
    test_timers();
    tern_addr v4, v6;
    tern_addr_ipv4(&v4, 127, 0, 0, 1, 0);
    memset(&v6, 0, sizeof(v6));
    v6.family = TERN_AF_INET6;
    v6.ip[15] = 1;
    echo_round(&v4, 0);
    echo_round(&v4, 1);
    echo_round(&v6, 0);
    if (failures) {
        fprintf(stderr, "test_driver: %d failures\n", failures);
        return 1;
    }
    printf("test_driver: ok\n");
    return 0;
}
