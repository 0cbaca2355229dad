/*
 * tern_driver_migrate and the client driver's automatic migration, on loopback, two drivers in
 * one thread through the embedding API. A client sends a byte stream to a server, checked byte
 * for byte in order (nothing lost, nothing twice):
 *   - explicit: mid-transfer the client moves to a fresh socket (a new port); the server
 *     validates it and follows; the old socket closes after the linger; the refused calls;
 *   - silence: mid-transfer the server drops everything from the client's port (a NAT mapping
 *     that died); the client finds its path silent and moves by itself to a fresh socket;
 *   - a long silence (the server hears nothing at all for 9 s): the client moves 3 times, no
 *     more, and the transfer resumes when the server hears it again.
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

#define TOTAL (6u << 20)

static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 2654435761u >> 13);
}

typedef struct side {
    tern_driver *d;
    tern_conn *conn;
    int established, closed, paths;
    uint64_t received, bad, queued, flow;
    uint16_t drop_port; /* server: datagrams from this client port are swallowed (0: none) */
    int drop_all;       /* server: every datagram is swallowed */
    uint64_t dropped;
} side;

static void on_established(tern_conn *c, void *user)
{
    side *s = user;
    s->established = 1;
    s->conn = c;
}

static void on_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *user)
{
    side *s = user;
    (void)c, (void)flow;
    for (size_t i = 0; i < len; i++)
        if (d[i] != pattern(s->received + i)) {
            s->bad++;
            break;
        }
    s->received += len;
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *r, size_t l, void *user)
{
    side *s = user;
    (void)c, (void)err, (void)code, (void)r, (void)l;
    s->closed = 1;
}

static void on_path(tern_conn *c, void *user)
{
    (void)c;
    ((side *)user)->paths++;
}

static int drop_hook(tern_driver *d, size_t sock, const tern_addr *from, uint8_t *data,
                     size_t len, void *user)
{
    side *s = user;
    (void)d, (void)sock, (void)data, (void)len;
    if (!s->drop_all && (s->drop_port == 0 || from->port != s->drop_port)) return 0;
    s->dropped++;
    return 1;
}

static int make(side *s, int server, const tern_keypair *kp, const tern_addr *bind)
{
    memset(s, 0, sizeof(*s));
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.endpoint.is_server = server;
    if (kp) {
        dc.endpoint.has_static_key = 1;
        dc.endpoint.static_key = *kp;
    }
    dc.endpoint.callbacks.on_established = on_established;
    dc.endpoint.callbacks.on_message = on_message;
    dc.endpoint.callbacks.on_closed = on_closed;
    dc.endpoint.callbacks.on_path = on_path;
    dc.endpoint.user_data = s;
    dc.n_listen = 1;
    dc.listen[0] = *bind;
    dc.migrate_linger_ns = 300 * TERN_NS_PER_MS;
    if (server) {
        dc.rx_hook = drop_hook;
        dc.rx_hook_user = s;
    }
    return tern_driver_new(&dc, &s->d);
}

static void fill(side *c)
{
    static uint8_t buf[16384];
    while (c->conn && c->queued < TOTAL && tern_flow_queued(c->conn, c->flow) < (512u << 10)) {
        size_t n = sizeof(buf);
        if (n > TOTAL - c->queued) n = TOTAL - c->queued;
        for (size_t i = 0; i < n; i++) buf[i] = pattern(c->queued + i);
        if (tern_flow_send(c->conn, c->flow, tern_driver_now(c->d), buf, n, -1) != TERN_OK)
            break;
        c->queued += n;
    }
    tern_driver_flush(c->d);
}

/* Drives both drivers until done() or limit_ms; the client keeps its flow's queue full. */
static void pump(side *c, side *s, int (*done)(side *, side *), uint64_t limit_ms)
{
    uint64_t end = tern_driver_update_now(c->d) + limit_ms * TERN_NS_PER_MS;
    while (!done(c, s) && tern_driver_update_now(c->d) < end) {
        struct pollfd p[2] = {{tern_driver_fd(c->d), POLLIN, 0}, {tern_driver_fd(s->d), POLLIN, 0}};
        int ta = tern_driver_timeout_ms(c->d), tb = tern_driver_timeout_ms(s->d);
        int t = ta < 0 ? tb : tb < 0 ? ta : (ta < tb ? ta : tb);
        if (t < 0 || t > 20) t = 20;
        (void)poll(p, 2, t);
        CHECK(tern_driver_process(c->d) >= 0);
        CHECK(tern_driver_process(s->d) >= 0);
        if (c->flow != UINT64_MAX) fill(c);
    }
}

static int both_established(side *c, side *s)
{
    return c->established && s->established;
}
static int never(side *c, side *s)
{
    (void)c, (void)s;
    return 0;
}
static int a_third(side *c, side *s)
{
    (void)c;
    return s->received >= TOTAL / 3 || s->bad;
}
static int all_there(side *c, side *s)
{
    (void)c;
    return s->received >= TOTAL || s->bad || s->closed;
}

/* A server and a client on 127.0.0.1, connected, the client's stream flow open. */
static int setup(side *c, side *s)
{
    tern_keypair kp;
    tern_addr lo;
    tern_addr_ipv4(&lo, 127, 0, 0, 1, 0);
    if (tern_keypair_generate(&kp) != TERN_OK || make(s, 1, &kp, &lo) != TERN_OK ||
        make(c, 0, NULL, &lo) != TERN_OK)
        return -1;
    c->flow = UINT64_MAX;
    tern_addr sa;
    CHECK(tern_driver_local_addr(s->d, 0, &sa) == TERN_OK);
    tern_conn *conn;
    CHECK(tern_driver_connect(c->d, &sa, kp.pub, &conn) == TERN_OK);
    pump(c, s, both_established, 3000);
    if (!both_established(c, s)) return -1;
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.stream = 1;
    CHECK(tern_flow_open(c->conn, &fc, &c->flow) == TERN_OK);
    return 0;
}

static void teardown(side *c, side *s)
{
    tern_driver_del(c->d);
    tern_driver_del(s->d);
}

static void test_explicit(void)
{
    side c, s;
    if (setup(&c, &s) != 0) {
        CHECK(!"setup");
        return;
    }
    pump(&c, &s, a_third, 10000);
    CHECK(s.received >= TOTAL / 3);
    /* refused: the server's connection, a stream address */
    CHECK(tern_driver_migrate(s.d, s.conn, NULL) == TERN_ERR_STATE);
    tern_addr tcp;
    tern_addr_ipv4(&tcp, 127, 0, 0, 1, 0);
    tcp.transport = TERN_TRANSPORT_TCP;
    CHECK(tern_driver_migrate(c.d, c.conn, &tcp) == TERN_ERR_INVALID_ARG);
    CHECK(tern_driver_migrate(NULL, NULL, NULL) == TERN_ERR_INVALID_ARG);
    /* an IPv6 socket bound to an address sends no IPv4: the IPv4 connection stays, and no
     * socket is opened for it */
    size_t socks = tern_driver_n_sockets(c.d);
    tern_addr v6;
    CHECK(tern_addr_parse(&v6, "[::1]:0") == TERN_OK);
    CHECK(tern_driver_migrate(c.d, c.conn, &v6) == TERN_ERR_INVALID_ARG);
    CHECK(tern_driver_n_sockets(c.d) == socks);
    tern_path_info before, after;
    tern_conn_path(c.conn, &before);
    int paths = c.paths;
    CHECK(tern_driver_migrate(c.d, NULL, NULL) == 1); /* every client connection: the one */
    tern_driver_flush(c.d);
    CHECK(tern_driver_n_sockets(c.d) == socks + 1);
    tern_conn_path(c.conn, &after);
    CHECK(after.local.port != before.local.port);
    CHECK(c.paths == paths + 1);
    pump(&c, &s, all_there, 20000);
    CHECK(s.received == TOTAL);
    CHECK(s.bad == 0);
    tern_conn_stats cs, ss;
    tern_conn_get_stats(c.conn, &cs);
    tern_conn_get_stats(s.conn, &ss);
    CHECK(cs.migrations == 1 && cs.migrations_validated == 1);
    CHECK(ss.migrations == 1); /* the server validated the new port and followed */
    tern_path_info sp;
    tern_conn_path(s.conn, &sp);
    CHECK(sp.remote.port == after.local.port);
    /* the old socket lingers 300 ms, then closes */
    pump(&c, &s, never, 500);
    tern_driver_stats ds;
    tern_driver_get_stats(c.d, &ds);
    printf("explicit: %u bytes, client migrations %llu, driver opened %llu closed %llu sockets\n",
           TOTAL, (unsigned long long)cs.migrations, (unsigned long long)ds.sockets_opened,
           (unsigned long long)ds.sockets_closed);
    CHECK(ds.migrations == 1 && ds.sockets_opened == 1 && ds.sockets_closed == 1);
    CHECK(tern_driver_n_sockets(c.d) == socks);
    teardown(&c, &s);
}

static void test_silence(void)
{
    side c, s;
    if (setup(&c, &s) != 0) {
        CHECK(!"setup");
        return;
    }
    pump(&c, &s, a_third, 10000);
    tern_path_info pi;
    tern_conn_path(c.conn, &pi);
    s.drop_port = pi.local.port; /* the mapping died: nothing from that port gets in */
    uint64_t t0 = tern_driver_update_now(c.d);
    pump(&c, &s, all_there, 30000);
    uint64_t ms = (tern_driver_update_now(c.d) - t0) / TERN_NS_PER_MS;
    CHECK(s.received == TOTAL);
    CHECK(s.bad == 0);
    tern_driver_stats ds;
    tern_driver_get_stats(c.d, &ds);
    tern_conn_path(c.conn, &pi);
    printf("silence: %llu datagrams swallowed, %llu silent moves, the rest took %llu ms\n",
           (unsigned long long)s.dropped, (unsigned long long)ds.auto_silent_moves,
           (unsigned long long)ms);
    CHECK(ds.auto_silent_moves >= 1);
    CHECK(pi.local.port != s.drop_port);
    teardown(&c, &s);
}

static void test_long_silence_bounded(void)
{
    side c, s;
    if (setup(&c, &s) != 0) {
        CHECK(!"setup");
        return;
    }
    pump(&c, &s, a_third, 10000);
    s.drop_all = 1;
    pump(&c, &s, never, 9000); /* moves after 1 s, 2 s and 4 s of silence, then none */
    tern_driver_stats ds;
    tern_driver_get_stats(c.d, &ds);
    size_t socks = tern_driver_n_sockets(c.d);
    printf("long silence: %llu silent moves in 9 s, %zu sockets open\n",
           (unsigned long long)ds.auto_silent_moves, socks);
    CHECK(ds.auto_silent_moves == 3);
    CHECK(ds.auto_limited == 0);
    CHECK(socks <= 2); /* the configured one and the last; the others lingered and closed */
    s.drop_all = 0;
    pump(&c, &s, all_there, 20000);
    CHECK(s.received == TOTAL);
    CHECK(s.bad == 0);
    CHECK(!c.closed && !s.closed);
    teardown(&c, &s);
}

int main(void)
{
    test_explicit();
    test_silence();
    test_long_silence_bounded();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
