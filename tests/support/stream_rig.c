/*
 * stream_rig: the harness the stream-transport e2e tests share (test_stream_drv,
 * test_stream_limits); see stream_rig.h.
 */
#include "support/stream_rig.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/tt.h"
#include "tern/udp.h"

static int on_stream_error(tern_driver *d, const tern_addr *remote, const char *line, void *user)
{
    side *s = user;
    (void)d, (void)remote;
    s->stream_errors++;
    snprintf(s->stream_line, sizeof(s->stream_line), "%s", line);
    return !s->keep_trying;
}

/* Byte i of the bulk transfer. */
uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 7 + (i >> 13));
}

static void on_message(tern_conn *c, uint64_t flow_id, const uint8_t *data, size_t len,
                       void *user)
{
    side *s = user;
    (void)c, (void)flow_id;
    for (size_t i = 0; i < len; i++)
        if (data[i] != pattern(s->rx_bytes + i)) s->rx_bad++;
    s->rx_bytes += len;
}

void on_established(tern_conn *c, void *user)
{
    side *s = user;
    s->established = 1;
    s->conn = c;
}

/* Message q: 2..max bytes (q * 37 apart), each byte a function of q and its place. */
size_t msg_len(unsigned q, size_t max)
{
    return 2 + (q * 37u) % (max - 1);
}

void fill(uint8_t *b, unsigned q, size_t len)
{
    b[0] = (uint8_t)q;
    if (len > 1) b[1] = (uint8_t)(q >> 8);
    for (size_t i = 2; i < len; i++) b[i] = (uint8_t)(q * 31 + i);
}

void on_datagram(tern_conn *c, const uint8_t *data, size_t len, void *user)
{
    side *s = user;
    if (s->echo) {
        (void)tern_conn_send_datagram(c, tern_driver_now(s->d), data, len);
        return;
    }
    if (len < 2) {
        s->bad++;
        return;
    }
    unsigned q = data[0] | (unsigned)data[1] << 8;
    uint8_t want[TERN_MAX_DATAGRAM];
    fill(want, q, len);
    if (memcmp(want, data, len) == 0 &&
        (len == msg_len(q, tern_conn_max_datagram(c)) || len == msg_len(q, 1000)))
        s->got++;
    else
        s->bad++;
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *r, size_t l, void *user)
{
    side *s = user;
    (void)c, (void)code;
    s->closed = 1;
    s->close_err = err;
    snprintf(s->reason, sizeof(s->reason), "%.*s", (int)l, r ? r : "");
}

static void on_free(tern_conn *c, void *user)
{
    side *s = user;
    if (s->conn == c) s->conn = NULL;
}

static int hook(tern_driver *d, size_t sock, const tern_addr *from, uint8_t *data, size_t len,
                void *user)
{
    side *s = user;
    (void)d;
    if (len == 0 || data[0] != TERN_RELAY_TYPE) return 0;
    s->hooked++;
    s->hook_from = *from;
    s->hook_sock = sock;
    return 1;
}

uint64_t g_stream_window = 0; /* the next server's stream_window (0: the default) */

/* A server (listening on 127.0.0.1:0 over TCP and TLS) or a client driver (no stream listener,
 * and UDP on loopback only, so a datagram that leaves it would show in tx_datagrams). */
void make(side *s, int server, const tern_keypair *kp, const tern_driver_stream_limits *lim)
{
    memset(s, 0, sizeof(*s));
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.endpoint.is_server = server;
    if (kp) {
        dc.endpoint.has_static_key = 1;
        dc.endpoint.static_key = *kp;
    } else if (server) { /* a server the test never connects to with tern itself */
        dc.endpoint.has_static_key = 1;
        TT_CHECK(tern_keypair_generate(&dc.endpoint.static_key) == TERN_OK);
    }
    dc.endpoint.callbacks.on_established = on_established;
    dc.endpoint.callbacks.on_datagram = on_datagram;
    dc.endpoint.callbacks.on_closed = on_closed;
    dc.endpoint.callbacks.on_message = on_message;
    dc.endpoint.callbacks.on_conn_free = on_free;
    dc.endpoint.user_data = s;
    dc.n_listen = 1;
    tern_addr_ipv4(&dc.listen[0], 127, 0, 0, 1, 0);
    dc.on_stream_error = on_stream_error;
    dc.on_stream_error_user = s;
    if (server) {
        dc.n_stream_listen = 2;
        tern_addr_ipv4(&dc.stream_listen[0], 127, 0, 0, 1, 0);
        dc.stream_listen[0].transport = TERN_TRANSPORT_TCP;
        dc.stream_listen[1] = dc.stream_listen[0];
        dc.stream_listen[1].transport = TERN_TRANSPORT_TLS;
        dc.rx_hook = hook;
        dc.rx_hook_user = s;
        if (lim) dc.stream_limits = *lim;
        if (g_stream_window) dc.endpoint.settings.stream_window = g_stream_window;
    }
    s->echo = server;
    int rc = tern_driver_new(&dc, &s->d);
    TT_CHECK_MSG(rc == TERN_OK, "tern_driver_new: %d", rc);
    if (rc != TERN_OK) tt_abort_case();
}

tern_addr listener(side *srv, int tls)
{
    tern_addr a;
    TT_CHECK(tern_driver_n_stream_listeners(srv->d) == 2);
    TT_CHECK(tern_driver_stream_local_addr(srv->d, tls ? 1 : 0, &a) == TERN_OK);
    TT_CHECK(a.port != 0 && a.transport == (tls ? TERN_TRANSPORT_TLS : TERN_TRANSPORT_TCP));
    return a;
}

void pump(side *a, side *b, int (*done)(side *, side *), uint64_t limit_ms, turn_fn turn,
          void *tu)
{
    tern_driver *any = a ? a->d : b->d;
    uint64_t end = tern_driver_update_now(any) + limit_ms * TERN_NS_PER_MS;
    while ((done == NULL || !done(a, b)) && tern_driver_update_now(any) < end) {
        struct pollfd p[2];
        int n = 0, t = 20;
        side *sides[2] = {a, b};
        for (int i = 0; i < 2; i++) {
            if (sides[i] == NULL) continue;
            p[n].fd = tern_driver_fd(sides[i]->d);
            p[n].events = POLLIN;
            n++;
            int ti = tern_driver_timeout_ms(sides[i]->d);
            if (ti >= 0 && ti < t) t = ti;
        }
        (void)poll(p, (nfds_t)n, t);
        for (int i = 0; i < 2; i++)
            if (sides[i]) TT_CHECK(tern_driver_process(sides[i]->d) >= 0);
        if (turn) turn(tu);
    }
}

void serve(side *srv, uint64_t ms)
{
    pump(srv, NULL, NULL, ms, NULL, NULL);
}

int both_established(side *c, side *s)
{
    return c->established && s->established;
}
int all_back(side *c, side *s)
{
    (void)s;
    return c->got + c->bad >= N_MSG;
}
int any_back(side *c, side *s)
{
    (void)s;
    return c->got + c->bad >= 1;
}
int client_closed(side *c, side *s)
{
    (void)s;
    return c->closed;
}

/* A server and a client driver connected over the server's TCP (tls 0) or TLS (1) listener
 * only, established; ends the case when they are not. Returns the address connected to. */
tern_addr connect_pair(side *srv, side *cli, int tls, const tern_driver_stream_limits *lim)
{
    tern_keypair kp;
    TT_CHECK(tern_keypair_generate(&kp) == TERN_OK);
    make(srv, 1, &kp, lim);
    g_stream_window = 0;
    make(cli, 0, NULL, NULL);
    tern_addr to = listener(srv, tls);
    tern_conn *c = NULL;
    TT_CHECK(tern_driver_connect(cli->d, &to, kp.pub, &c) == TERN_OK);
    pump(cli, srv, both_established, 5000, NULL, NULL);
    TT_REQUIRE(both_established(cli, srv) && cli->conn != NULL && srv->conn != NULL);
    return to;
}

/* ---------------------------------------------------------------- raw sockets */

int tcp_listen(tern_addr *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    TT_CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 64) == 0);
    socklen_t l = sizeof(sa);
    TT_CHECK(getsockname(fd, (struct sockaddr *)&sa, &l) == 0);
    TT_CHECK(tern_addr_from_sockaddr(bound, (struct sockaddr *)&sa, l) == TERN_OK);
    return fd;
}

/* A blocking TCP client socket to a (connected before it returns); rcvbuf 0: the default. */
int tcp_dial(const tern_addr *a, int rcvbuf)
{
    struct sockaddr_storage ss;
    int sl = tern_addr_to_sockaddr(a, &ss);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    TT_CHECK(connect(fd, (struct sockaddr *)&ss, (socklen_t)sl) == 0);
    return fd;
}

/* Reads what waits without blocking: bytes read, 0 at EOF, -1 when nothing waits. */
ssize_t peek_read(int fd, uint8_t *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
    if (n < 0) return 0; /* a reset is an end too */
    return n;
}
