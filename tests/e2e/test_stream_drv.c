/*
 * The driver's stream transports on loopback (docs/protocol.md, "Stream transport"), in one
 * thread through the embedding API, like test_driver:
 *   - tcp, tls: a client driver reaches a server driver over a stream only (no UDP datagram
 *     leaves the client), the handshake completes, 400 datagrams of every size up to the maximum
 *     are echoed back byte-exact, with the counters on both sides, and a 16 MB byte-stream
 *     flow arrives byte-exact with no frame dropped; TLS with the self-signed certificate the
 *     server makes when it is given none; ipv6: a dual-stack TLS listener reached at ::1 and
 *     at 127.0.0.1;
 *   - wrong_service: a plain TCP echo, an HTTP-ish server, an HTTPS server (which also sees the
 *     SNI the client was given, and none for an IP literal), a closed port, and TLS spoken to a
 *     TCP tern port and TCP to a TLS one: on_stream_error hears one clear line at once, and the
 *     connection it asks to close fails in well under a second (not at the handshake timeout);
 *     one it keeps goes on trying at the backoff's pace;
 *   - auto_race (tern_driver_connect_opts, TCP and TLS): UDP blocked by an in-test UDP gate,
 *     the stream carries the connection after the race delay; the gate opens and the connection
 *     moves back to UDP; the choices UDP only and stream only, and the arguments refused;
 *   - a server never dials a client whose stream went away;
 *   - reconnect: the server goes away under a connection that keeps sending, and the backoff
 *     bounds how often the client dials (no reconnect storm);
 *   - route change: the client's stream closes and is dialled again at once (no backoff);
 *   - config: tern_driver_stream_limits' defaults, a bad stream listener refused with a reason.
 * The limits, as an attacker tries them, are in test_stream_limits.c; the harness (side, make,
 * connect_pair, pump) in tests/support/stream_rig.{c,h}.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "driver/stream.h" /* drv_tls_server_ctx: the in-test HTTPS server's certificate */
#include "tern/driver.h"
#include "tern/udp.h"
#include "support/stream_rig.h"
#include "support/tt.h"

/* ---------------------------------------------------------------- echo over a stream */

static void echo_over(int tls)
{
    side srv, cli;
    tern_addr to = connect_pair(&srv, &cli, tls, NULL);
    TT_CHECK(tern_addr_equal(tern_conn_remote(cli.conn), &to));
    size_t max = tern_conn_max_datagram(cli.conn);
    TT_CHECK(max > 1000);
    unsigned sent = 0;
    uint64_t payload = 0;
    uint8_t buf[TERN_MAX_DATAGRAM];
    uint64_t end = tern_driver_update_now(cli.d) + 10 * TERN_NS_PER_S;
    while (cli.got + cli.bad < N_MSG && tern_driver_update_now(cli.d) < end && cli.conn) {
        while (sent < N_MSG) { /* as many as the queue takes, then pump */
            size_t len = msg_len(sent, max);
            fill(buf, sent, len);
            payload += len;
            if (tern_conn_send_datagram(cli.conn, tern_driver_now(cli.d), buf, len) != TERN_OK)
                break;
            sent++;
        }
        tern_driver_flush(cli.d);
        pump(&cli, &srv, all_back, 20, NULL, NULL);
    }
    tern_driver_stats cs, ss;
    tern_driver_get_stats(cli.d, &cs);
    tern_driver_get_stats(srv.d, &ss);
    printf("%s: %u/%u echoed byte-exact (%u bad); client: frames out %llu in %llu, bytes out "
           "%llu, UDP datagrams %llu, TLS %llu; server: accepted %llu, TLS %llu\n",
           tls ? "tls" : "tcp", cli.got, N_MSG, cli.bad, (unsigned long long)cs.stream_frames_out,
           (unsigned long long)cs.stream_frames_in, (unsigned long long)cs.stream_bytes_out,
           (unsigned long long)cs.tx_datagrams, (unsigned long long)cs.tls_handshakes,
           (unsigned long long)ss.streams_accepted, (unsigned long long)ss.tls_handshakes);
    TT_CHECK_EQ_INT(cli.got, N_MSG);
    TT_CHECK_EQ_INT(cli.bad, 0);
    TT_CHECK_EQ_INT(cs.tx_datagrams, 0); /* nothing over UDP */
    TT_CHECK_EQ_INT(cs.streams_connected, 1);
    TT_CHECK_EQ_INT(ss.streams_accepted, 1);
    TT_CHECK_EQ_INT(cs.streams_open, 1);
    TT_CHECK_EQ_INT(ss.streams_open, 1);
    /* packets carry several datagrams: fewer frames than messages, every one delivered (all
     * but the last few acknowledgements, maybe still on their way) */
    TT_CHECK(cs.stream_bytes_out >= payload && ss.stream_bytes_out >= payload);
    TT_CHECK(ss.stream_frames_in <= cs.stream_frames_out);
    TT_CHECK(ss.stream_frames_in + 4 >= cs.stream_frames_out);
    TT_CHECK(cs.stream_frames_in <= ss.stream_frames_out);
    TT_CHECK(cs.stream_frames_in + 4 >= ss.stream_frames_out);
    TT_CHECK_EQ_INT(cs.stream_tx_dropped + ss.stream_tx_dropped, 0);
    TT_CHECK_EQ_INT(cs.tls_handshakes, tls ? 1 : 0);
    TT_CHECK_EQ_INT(ss.tls_handshakes, tls ? 1 : 0);
    TT_CHECK_EQ_INT(cs.tls_failures + ss.tls_failures, 0);

    /* the server shuts down: its CLOSE reaches the client over the stream */
    TT_CHECK(tern_driver_shutdown(srv.d, 7, "bye", 0) >= 0);
    pump(&cli, &srv, client_closed, 3000, NULL, NULL);
    TT_CHECK(cli.closed && cli.close_err == TERN_ERR_PEER_CLOSED);
    tern_driver_del(cli.d);
    tern_driver_del(srv.d);
}

/* A 16 MB byte stream over a stream path: byte-exact, in order, nothing dropped by the driver
 * (the core's stream_window keeps it under write_buffer). */
static void bulk_over(int tls)
{
    enum { TOTAL = 16 << 20, CHUNK = 64 << 10 };
    side srv, cli;
    (void)connect_pair(&srv, &cli, tls, NULL);
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.stream = 1;
    uint64_t fid = 0;
    TT_REQUIRE(tern_flow_open(cli.conn, &fc, &fid) == TERN_OK);
    static uint8_t chunk[CHUNK];
    uint64_t off = 0, t0 = tern_driver_update_now(cli.d);
    uint64_t end = t0 + 30 * TERN_NS_PER_S;
    while (srv.rx_bytes < TOTAL && tern_driver_update_now(cli.d) < end && cli.conn) {
        while (off < TOTAL) {
            for (size_t i = 0; i < CHUNK; i++) chunk[i] = pattern(off + i);
            if (tern_flow_send(cli.conn, fid, tern_driver_now(cli.d), chunk, CHUNK, -1) != TERN_OK)
                break;
            off += CHUNK;
        }
        tern_driver_flush(cli.d);
        pump(&cli, &srv, NULL, 1, NULL, NULL);
    }
    uint64_t took = tern_driver_update_now(cli.d) - t0;
    tern_driver_stats cs, ss;
    tern_driver_get_stats(cli.d, &cs);
    tern_driver_get_stats(srv.d, &ss);
    printf("%s bulk: %llu of %u bytes in order in %.2f s (%.0f Mbit/s), %llu bad; client frames "
           "out %llu, dropped %llu\n",
           tls ? "tls" : "tcp", (unsigned long long)srv.rx_bytes, TOTAL, (double)took / 1e9,
           (double)srv.rx_bytes * 8 / ((double)took / 1e9) / 1e6, (unsigned long long)srv.rx_bad,
           (unsigned long long)cs.stream_frames_out, (unsigned long long)cs.stream_tx_dropped);
    TT_CHECK_EQ_INT(srv.rx_bytes, TOTAL);
    TT_CHECK_EQ_INT(srv.rx_bad, 0);
    TT_CHECK_EQ_INT(cs.stream_tx_dropped + cs.stream_closed_error, 0);
    TT_CHECK_EQ_INT(cs.streams_connected, 1);
    TT_CHECK_EQ_INT(cs.tx_datagrams, 0);
    tern_driver_del(cli.d);
    tern_driver_del(srv.d);
}

/* IPv6: a listener on [::]:0/tls (dual-stack) reached at [::1] and at 127.0.0.1. */
static void test_ipv6(void)
{
    tern_keypair kp;
    TT_CHECK(tern_keypair_generate(&kp) == TERN_OK);
    side srv;
    memset(&srv, 0, sizeof(srv));
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.endpoint.is_server = 1;
    dc.endpoint.has_static_key = 1;
    dc.endpoint.static_key = kp;
    dc.endpoint.callbacks.on_established = on_established;
    dc.endpoint.callbacks.on_datagram = on_datagram;
    dc.endpoint.user_data = &srv;
    srv.echo = 1;
    dc.n_listen = 1;
    tern_addr_ipv4(&dc.listen[0], 127, 0, 0, 1, 0);
    dc.n_stream_listen = 1;
    TT_CHECK(tern_addr_parse(&dc.stream_listen[0], "[::]:0/tls") == TERN_OK);
    if (tern_driver_new(&dc, &srv.d) != TERN_OK) {
        printf("skip: no IPv6 (%s)\n", tern_driver_stream_error(NULL));
        return;
    }
    tern_addr l;
    TT_CHECK(tern_driver_stream_local_addr(srv.d, 0, &l) == TERN_OK);
    for (int v4 = 0; v4 < 2; v4++) {
        side cli;
        make(&cli, 0, NULL, NULL);
        char text[64];
        snprintf(text, sizeof(text), v4 ? "127.0.0.1:%u/tls" : "[::1]:%u/tls", l.port);
        tern_addr to;
        TT_CHECK(tern_addr_parse(&to, text) == TERN_OK);
        tern_conn *c = NULL;
        srv.established = 0;
        TT_CHECK(tern_driver_connect(cli.d, &to, kp.pub, &c) == TERN_OK);
        pump(&cli, &srv, both_established, 3000, NULL, NULL);
        TT_CHECK_MSG(both_established(&cli, &srv), "over %s", text);
        uint8_t b[300];
        fill(b, 7, msg_len(7, 1000));
        if (cli.conn)
            TT_CHECK(tern_conn_send_datagram(cli.conn, tern_driver_now(cli.d), b,
                                             msg_len(7, 1000)) == TERN_OK);
        tern_driver_flush(cli.d);
        pump(&cli, &srv, any_back, 300, NULL, NULL);
        TT_CHECK_MSG(cli.got == 1 && cli.bad == 0, "echo over %s", text);
        tern_driver_del(cli.d);
    }
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_accepted, 2);
    TT_CHECK_EQ_INT(ss.tls_handshakes, 2);
    tern_driver_del(srv.d);
}

static void test_tcp(void)
{
    echo_over(0);
    bulk_over(0);
}

static void test_tls(void)
{
    echo_over(1);
    bulk_over(1);
}

/* A client whose stream goes away: what the server's connection sends to it is dropped and
 * counted; the server never dials the client's address back. */
static void test_server_never_dials(void)
{
    side srv, cli;
    (void)connect_pair(&srv, &cli, 0, NULL);
    tern_driver_del(cli.d); /* the stream closes under the server */
    pump(&srv, NULL, NULL, 100, NULL, NULL);
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_open, 0);
    TT_CHECK_EQ_INT(ss.stream_closed_peer, 1);
    uint8_t b[100] = {1, 2, 3};
    if (srv.conn)
        TT_CHECK(tern_conn_send_datagram(srv.conn, tern_driver_now(srv.d), b, sizeof(b)) ==
                 TERN_OK);
    tern_driver_flush(srv.d);
    pump(&srv, NULL, NULL, 100, NULL, NULL);
    tern_driver_get_stats(srv.d, &ss);
    /* the core sends nothing more to a closed stream's client, and the driver would not dial
     * from a listener's address anyway */
    TT_CHECK_EQ_INT(ss.streams_connected, 0);
    tern_driver_del(srv.d);
}

/* ---------------------------------------------------------------- tern_driver_connect_opts */

/* A UDP relay between the client and the server's UDP socket that drops everything until told
 * to pass: UDP blocked, then UDP back. */
typedef struct udp_gate {
    int front, back;   /* the client's side, the server's side */
    tern_addr server, client;
    int have_client, open;
    unsigned passed;
} udp_gate;

static void gate_turn(void *user)
{
    udp_gate *g = user;
    uint8_t b[2048];
    struct sockaddr_storage from;
    for (;;) {
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(g->front, b, sizeof(b), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n < 0) break;
        TT_CHECK(tern_addr_from_sockaddr(&g->client, (struct sockaddr *)&from, fl) == TERN_OK);
        g->have_client = 1;
        if (g->open && tern_udp_send_one(g->back, &g->server, b, (size_t)n) == TERN_OK) g->passed++;
    }
    for (;;) {
        ssize_t n = recv(g->back, b, sizeof(b), MSG_DONTWAIT);
        if (n < 0) break;
        if (g->open && g->have_client &&
            tern_udp_send_one(g->front, &g->client, b, (size_t)n) == TERN_OK)
            g->passed++;
    }
}

static int on_udp(side *c, side *s)
{
    (void)s;
    if (c->conn == NULL) return 0;
    tern_path_info pi;
    tern_conn_path(c->conn, &pi);
    return pi.remote.transport == TERN_TRANSPORT_UDP;
}

/* Happy eyeballs through the driver: UDP blocked, so the stream carries the connection after the
 * race delay; UDP comes back and the connection moves to it; data flows on both. */
static void auto_race(int tls)
{
    tern_keypair kp;
    TT_CHECK(tern_keypair_generate(&kp) == TERN_OK);
    side srv, cli;
    make(&srv, 1, &kp, NULL);
    make(&cli, 0, NULL, NULL);
    udp_gate g;
    memset(&g, 0, sizeof(g));
    tern_addr lo;
    tern_addr_ipv4(&lo, 127, 0, 0, 1, 0);
    TT_REQUIRE(tern_udp_open(&lo, 0, &g.front) == TERN_OK && tern_udp_open(&lo, 0, &g.back) == 0);
    TT_CHECK(tern_driver_local_addr(srv.d, 0, &g.server) == TERN_OK);
    tern_driver_connect_cfg cc;
    memset(&cc, 0, sizeof(cc));
    cc.choice = TERN_TRANSPORT_AUTO;
    TT_CHECK(tern_udp_local_addr(g.front, &cc.remote) == TERN_OK);
    cc.stream_remote = listener(&srv, tls);
    cc.stream_after_ns = 100 * TERN_NS_PER_MS;
    cc.tls_server_name = "tern.example";
    memcpy(cc.server_pub, kp.pub, TERN_KEY_LEN);
    tern_conn *c = NULL;
    uint64_t t0 = tern_driver_update_now(cli.d);
    TT_CHECK(tern_driver_connect_opts(cli.d, &cc, &c) == TERN_OK);
    pump(&cli, &srv, both_established, 3000, gate_turn, &g);
    uint64_t took = tern_driver_update_now(cli.d) - t0;
    TT_REQUIRE(both_established(&cli, &srv));
    tern_path_info pi;
    tern_conn_path(cli.conn, &pi);
    TT_CHECK(pi.remote.transport == (tls ? TERN_TRANSPORT_TLS : TERN_TRANSPORT_TCP));
    TT_CHECK(pi.has_fallback == 0); /* on its fallback */
    TT_CHECK(took < cc.stream_after_ns + 500 * TERN_NS_PER_MS);
    g.open = 1; /* UDP comes back */
    uint64_t t1 = tern_driver_update_now(cli.d);
    pump(&cli, &srv, on_udp, 8000, gate_turn, &g);
    uint64_t back = tern_driver_update_now(cli.d) - t1;
    TT_CHECK(on_udp(&cli, &srv));
    /* on direct UDP with the stream in reserve: the core falls back by itself when UDP goes
     * silent, and the driver's silence rule (netmon) leaves the connection to it */
    tern_conn_path(cli.conn, &pi);
    TT_CHECK(pi.has_fallback == 1);
    tern_conn_path(srv.conn, &pi);
    TT_CHECK(pi.has_fallback == 0); /* a server never moves by itself */
    uint8_t buf[TERN_MAX_DATAGRAM];
    unsigned sent = 0;
    for (; sent < 50 && cli.conn; sent++) {
        size_t len = msg_len(sent, 1000); /* within either side's size on a fresh UDP path */
        fill(buf, sent, len);
        TT_CHECK(tern_conn_send_datagram(cli.conn, tern_driver_now(cli.d), buf, len) == TERN_OK);
    }
    tern_driver_flush(cli.d);
    pump(&cli, &srv, NULL, 300, gate_turn, &g);
    tern_driver_stats cs;
    tern_driver_get_stats(cli.d, &cs);
    printf("%s race: on the stream after %llu ms (UDP blocked), back on UDP %llu ms after it "
           "returned; %u/%u echoed over UDP; client stream frames out %llu, UDP datagrams %llu\n",
           tls ? "tls" : "tcp", (unsigned long long)(took / TERN_NS_PER_MS),
           (unsigned long long)(back / TERN_NS_PER_MS), cli.got, sent,
           (unsigned long long)cs.stream_frames_out, (unsigned long long)cs.tx_datagrams);
    TT_CHECK(cli.got >= sent * 9 / 10 && cli.bad == 0);
    TT_CHECK_EQ_INT(cs.streams_connected, 1);
    TT_CHECK(g.passed > 0);
    close(g.front);
    close(g.back);
    tern_driver_del(cli.d);
    tern_driver_del(srv.d);
}

static void test_auto_race_tcp(void)
{
    auto_race(0);
}

static void test_auto_race_tls(void)
{
    auto_race(1);
}

/* UDP only and stream only through tern_driver_connect_opts; the arguments it refuses. */
static void test_connect_opts_choice(void)
{
    tern_keypair kp;
    TT_CHECK(tern_keypair_generate(&kp) == TERN_OK);
    side srv;
    make(&srv, 1, &kp, NULL);
    for (int choice = TERN_TRANSPORT_ONLY_UDP; choice <= TERN_TRANSPORT_ONLY_STREAM; choice++) {
        side cli;
        make(&cli, 0, NULL, NULL);
        srv.established = 0;
        tern_driver_connect_cfg cc;
        memset(&cc, 0, sizeof(cc));
        cc.choice = (tern_transport_choice)choice;
        TT_CHECK(tern_driver_local_addr(srv.d, 0, &cc.remote) == TERN_OK);
        cc.stream_remote = listener(&srv, 1);
        memcpy(cc.server_pub, kp.pub, TERN_KEY_LEN);
        tern_conn *c = NULL;
        TT_CHECK(tern_driver_connect_opts(cli.d, &cc, &c) == TERN_OK);
        pump(&cli, &srv, both_established, 3000, NULL, NULL);
        TT_CHECK(both_established(&cli, &srv));
        tern_driver_stats cs;
        tern_driver_get_stats(cli.d, &cs);
        tern_path_info pi;
        if (cli.conn) tern_conn_path(cli.conn, &pi);
        if (choice == TERN_TRANSPORT_ONLY_UDP) {
            TT_CHECK(cs.streams_connected == 0 && cs.tx_datagrams > 0);
            TT_CHECK(cli.conn && pi.remote.transport == TERN_TRANSPORT_UDP);
        } else {
            TT_CHECK(cs.streams_connected == 1 && cs.tx_datagrams == 0);
            TT_CHECK(cli.conn && pi.remote.transport == TERN_TRANSPORT_TLS);
        }
        tern_driver_del(cli.d);
    }
    side cli;
    make(&cli, 0, NULL, NULL);
    tern_driver_connect_cfg cc;
    memset(&cc, 0, sizeof(cc));
    tern_conn *c = NULL;
    cc.choice = TERN_TRANSPORT_ONLY_STREAM; /* no stream remote */
    TT_CHECK(tern_driver_local_addr(srv.d, 0, &cc.remote) == TERN_OK);
    TT_CHECK(tern_driver_connect_opts(cli.d, &cc, &c) == TERN_ERR_INVALID_ARG);
    cc.choice = TERN_TRANSPORT_AUTO; /* a UDP address as the stream */
    cc.stream_remote = cc.remote;
    TT_CHECK(tern_driver_connect_opts(cli.d, &cc, &c) == TERN_ERR_INVALID_ARG);
    cc.stream_remote = listener(&srv, 0); /* a stream address as the UDP remote */
    cc.remote = cc.stream_remote;
    TT_CHECK(tern_driver_connect_opts(cli.d, &cc, &c) == TERN_ERR_INVALID_ARG);
    tern_driver_del(cli.d);
    tern_driver_del(srv.d);
}

/* A TLS client that goes away (with unread data: a reset) while the server writes to it: the
 * write fails (EPIPE, ECONNRESET), the stream closes, and the process takes no SIGPIPE (the
 * default action would end it here). */
static void test_tls_peer_reset(void)
{
    side srv, cli;
    (void)connect_pair(&srv, &cli, 1, NULL);
    uint8_t b[1000];
    memset(b, 1, sizeof(b));
    for (int i = 0; i < 200 && srv.conn; i++)
        (void)tern_conn_send_datagram(srv.conn, tern_driver_now(srv.d), b, sizeof(b));
    tern_driver_flush(srv.d);
    tern_driver_del(cli.d); /* unread data: the kernel answers with a reset */
    tern_driver_stats ss;
    uint64_t end = tern_driver_update_now(srv.d) + 2 * TERN_NS_PER_S;
    do {
        for (int i = 0; i < 50 && srv.conn; i++)
            (void)tern_conn_send_datagram(srv.conn, tern_driver_now(srv.d), b, sizeof(b));
        tern_driver_flush(srv.d);
        serve(&srv, 5);
        tern_driver_get_stats(srv.d, &ss);
    } while (ss.streams_open > 0 && tern_driver_update_now(srv.d) < end);
    TT_CHECK_EQ_INT(ss.streams_open, 0);
    TT_CHECK_EQ_INT(ss.stream_closed_peer + ss.stream_closed_error, 1);
    tern_driver_del(srv.d);
}

/* The in-test services on the wrong port: kind 0 echoes, kind 1 answers like an HTTP server. */
typedef struct fake {
    int lfd, kind;
    int cfd[8];
    int n;
} fake;

static void fake_turn(void *user)
{
    fake *f = user;
    int c = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK);
    if (c >= 0 && f->n < 8) f->cfd[f->n++] = c;
    for (int i = 0; i < f->n; i++) {
        if (f->cfd[i] < 0) continue;
        uint8_t buf[4096];
        ssize_t r = recv(f->cfd[i], buf, sizeof(buf), MSG_DONTWAIT);
        if (r <= 0) {
            if (r == 0) {
                close(f->cfd[i]);
                f->cfd[i] = -1;
            }
            continue;
        }
        if (f->kind == 0) {
            (void)send(f->cfd[i], buf, (size_t)r, MSG_NOSIGNAL);
        } else {
            static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
            (void)send(f->cfd[i], resp, sizeof(resp) - 1, MSG_NOSIGNAL);
            close(f->cfd[i]);
            f->cfd[i] = -1;
        }
    }
}

/* A stream-only connection to `to` must fail fast with a clear line containing want. */
static void must_fail_fast(const tern_addr *to, side *srv, turn_fn turn, void *tu,
                           const char *want)
{
    tern_keypair kp;
    TT_CHECK(tern_keypair_generate(&kp) == TERN_OK);
    side cli;
    make(&cli, 0, NULL, NULL);
    tern_conn *c = NULL;
    uint64_t t0 = tern_driver_update_now(cli.d);
    TT_CHECK(tern_driver_connect(cli.d, to, kp.pub, &c) == TERN_OK);
    pump(&cli, srv, client_closed, 3000, turn, tu);
    uint64_t took = tern_driver_update_now(cli.d) - t0;
    const char *e = tern_driver_stream_error(cli.d);
    char ab[64];
    printf("%s: closed after %llu ms: \"%s\" (reason \"%s\")\n",
           tern_addr_format(to, ab, sizeof(ab)), (unsigned long long)(took / TERN_NS_PER_MS), e,
           cli.reason);
    TT_CHECK(cli.closed);
    TT_CHECK_EQ_INT(cli.close_err, TERN_ERR_LOCAL_CLOSED);
    TT_CHECK(took < 1000 * TERN_NS_PER_MS);
    TT_CHECK_MSG(strstr(e, want) != NULL, "error \"%s\" lacks \"%s\"", e, want);
    TT_CHECK(strcmp(cli.reason, e) == 0);
    TT_CHECK(cli.stream_errors >= 1 && strcmp(cli.stream_line, e) == 0);
    tern_driver_del(cli.d);
}

/* An application that answers on_stream_error with 0 (or sets none) keeps its connection until
 * the handshake timeout; the line is there all the same. */
static void test_wrong_service_kept(void)
{
    fake f;
    memset(&f, 0, sizeof(f));
    f.kind = 1;
    tern_addr a;
    f.lfd = tcp_listen(&a);
    a.transport = TERN_TRANSPORT_TCP;
    tern_keypair kp;
    TT_CHECK(tern_keypair_generate(&kp) == TERN_OK);
    side cli;
    make(&cli, 0, NULL, NULL);
    cli.keep_trying = 1;
    tern_conn *c = NULL;
    TT_CHECK(tern_driver_connect(cli.d, &a, kp.pub, &c) == TERN_OK);
    pump(&cli, NULL, NULL, 600, fake_turn, &f);
    TT_CHECK(!cli.closed);
    TT_CHECK(cli.stream_errors >= 1);
    TT_CHECK(strstr(tern_driver_stream_error(cli.d), "HTTP/1.1 400") != NULL);
    tern_driver_stats cs;
    tern_driver_get_stats(cli.d, &cs);
    TT_CHECK(cs.streams_connected <= 3); /* the core's retries, held back by the backoff */
    tern_driver_del(cli.d);
    for (int i = 0; i < f.n; i++)
        if (f.cfd[i] >= 0) close(f.cfd[i]);
    close(f.lfd);
}

static void test_wrong_service(void)
{
    for (int kind = 0; kind < 2; kind++) {
        fake f;
        memset(&f, 0, sizeof(f));
        f.kind = kind;
        tern_addr a;
        f.lfd = tcp_listen(&a);
        a.transport = TERN_TRANSPORT_TCP;
        must_fail_fast(&a, NULL, fake_turn, &f, kind == 0 ? "it sent \"tern/1c" : "HTTP/1.1 400");
        for (int i = 0; i < f.n; i++)
            if (f.cfd[i] >= 0) close(f.cfd[i]);
        close(f.lfd);
    }
    /* nothing listening: the refusal is an answer too */
    tern_addr closed;
    int lfd = tcp_listen(&closed);
    close(lfd);
    closed.transport = TERN_TRANSPORT_TLS;
    must_fail_fast(&closed, NULL, NULL, NULL, "cannot connect: Connection refused");
    /* the right server, the wrong transport, both ways */
    tern_keypair kp;
    TT_CHECK(tern_keypair_generate(&kp) == TERN_OK);
    side srv;
    make(&srv, 1, &kp, NULL);
    tern_addr tcp = listener(&srv, 0), tls = listener(&srv, 1);
    tcp.transport = TERN_TRANSPORT_TLS; /* TLS to the TCP port */
    must_fail_fast(&tcp, &srv, NULL, NULL, "TLS");
    tls.transport = TERN_TRANSPORT_TCP; /* TCP to the TLS port */
    must_fail_fast(&tls, &srv, NULL, NULL, "closed before the tern preamble");
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK(ss.stream_bad_preamble >= 1); /* the ClientHello on the TCP port */
    TT_CHECK(ss.tls_failures >= 1);        /* our preamble on the TLS port */
    tern_driver_del(srv.d);
}

/* An HTTPS server on the port (TLS completes, then an HTTP answer inside it): the client sent
 * the server name it was given (SNI) and fails fast, naming what it got. */
typedef struct https {
    int lfd, cfd;
    SSL_CTX *ctx;
    SSL *ssl;
    int done;
    char sni[64];
} https;

static int on_sni(SSL *ssl, int *alert, void *arg)
{
    https *h = arg;
    (void)alert;
    const char *n = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(h->sni, sizeof(h->sni), "%s", n ? n : "");
    return SSL_TLSEXT_ERR_OK;
}

static void https_turn(void *user)
{
    https *h = user;
    if (h->cfd < 0) {
        h->cfd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK);
        if (h->cfd < 0) return;
        h->ssl = SSL_new(h->ctx);
        SSL_set_fd(h->ssl, h->cfd);
        SSL_set_accept_state(h->ssl);
    }
    if (h->done) return;
    uint8_t b[4096];
    if (SSL_read(h->ssl, b, sizeof(b)) <= 0) return; /* the handshake, then the client's bytes */
    static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    (void)SSL_write(h->ssl, resp, (int)sizeof(resp) - 1);
    h->done = 1;
}

static void test_https_server(void)
{
    https h;
    memset(&h, 0, sizeof(h));
    h.cfd = -1;
    char err[200];
    h.ctx = drv_tls_server_ctx(NULL, NULL, err, sizeof(err)); /* a self-signed certificate */
    TT_REQUIRE(h.ctx != NULL);
    SSL_CTX_set_tlsext_servername_callback(h.ctx, on_sni);
    SSL_CTX_set_tlsext_servername_arg(h.ctx, &h);
    tern_addr a;
    h.lfd = tcp_listen(&a);
    a.transport = TERN_TRANSPORT_TLS;
    tern_keypair kp;
    TT_CHECK(tern_keypair_generate(&kp) == TERN_OK);
    side cli;
    make(&cli, 0, NULL, NULL);
    tern_driver_connect_cfg cc;
    memset(&cc, 0, sizeof(cc));
    cc.choice = TERN_TRANSPORT_ONLY_STREAM;
    cc.stream_remote = a;
    cc.tls_server_name = "web.example";
    memcpy(cc.server_pub, kp.pub, TERN_KEY_LEN);
    tern_conn *c = NULL;
    uint64_t t0 = tern_driver_update_now(cli.d);
    TT_CHECK(tern_driver_connect_opts(cli.d, &cc, &c) == TERN_OK);
    pump(&cli, NULL, client_closed, 3000, https_turn, &h);
    uint64_t took = tern_driver_update_now(cli.d) - t0;
    const char *e = tern_driver_stream_error(cli.d);
    printf("https: closed after %llu ms, SNI \"%s\": %s\n",
           (unsigned long long)(took / TERN_NS_PER_MS), h.sni, e);
    TT_CHECK(cli.closed && cli.close_err == TERN_ERR_LOCAL_CLOSED);
    TT_CHECK(took < 1000 * TERN_NS_PER_MS);
    TT_CHECK(strcmp(h.sni, "web.example") == 0);
    TT_CHECK(strstr(e, "it sent \"HTTP/1.1 400") != NULL);
    tern_driver_stats cs;
    tern_driver_get_stats(cli.d, &cs);
    TT_CHECK_EQ_INT(cs.tls_handshakes, 1);
    /* an IP literal is never sent as a server name (RFC 6066) */
    tern_driver_del(cli.d);
    SSL_free(h.ssl);
    if (h.cfd >= 0) close(h.cfd);
    h.cfd = -1;
    h.ssl = NULL;
    h.done = 0;
    h.sni[0] = '\0';
    make(&cli, 0, NULL, NULL);
    cc.tls_server_name = "127.0.0.1";
    TT_CHECK(tern_driver_connect_opts(cli.d, &cc, &c) == TERN_OK);
    pump(&cli, NULL, client_closed, 3000, https_turn, &h);
    TT_CHECK(cli.closed && h.sni[0] == '\0');
    tern_driver_del(cli.d);
    SSL_free(h.ssl);
    if (h.cfd >= 0) close(h.cfd);
    close(h.lfd);
    drv_tls_ctx_free(h.ctx);
}

/* ---------------------------------------------------------------- reconnect backoff */

/* The server goes away under an established stream-only connection whose application keeps
 * sending (a datagram every 10 ms): every send would dial again, the backoff (250 ms doubling)
 * allows a handful of dials in 2 s and counts the rest as held. */
static void test_reconnect_backoff(void)
{
    side srv, cli;
    (void)connect_pair(&srv, &cli, 0, NULL);
    tern_driver_del(srv.d); /* the port is closed now: each dial is refused */
    uint8_t b[100] = {0};
    uint64_t end = tern_driver_update_now(cli.d) + 2 * TERN_NS_PER_S;
    while (tern_driver_update_now(cli.d) < end && cli.conn) {
        (void)tern_conn_send_datagram(cli.conn, tern_driver_now(cli.d), b, sizeof(b));
        tern_driver_flush(cli.d);
        pump(&cli, NULL, NULL, 10, NULL, NULL);
    }
    tern_driver_stats cs;
    tern_driver_get_stats(cli.d, &cs);
    printf("server gone: %llu dials in 2 s, %llu connect failures, %llu frames held: %s\n",
           (unsigned long long)cs.streams_connected,
           (unsigned long long)cs.stream_connect_failures, (unsigned long long)cs.stream_tx_held,
           tern_driver_stream_error(cli.d));
    /* the first stream, then dials 0.25, 0.5, 1 s apart: at most 5 in all */
    TT_CHECK(cs.streams_connected >= 2 && cs.streams_connected <= 5);
    TT_CHECK_EQ_INT(cs.stream_connect_failures, cs.streams_connected - 1);
    TT_CHECK(cs.stream_tx_held >= 10);
    TT_CHECK(strstr(tern_driver_stream_error(cli.d), "refused") != NULL);
    TT_CHECK_EQ_INT(cs.streams_open, 0);
    TT_CHECK_EQ_INT(cs.tx_datagrams, 0);
    tern_driver_del(cli.d);
}

/* The route to the server took another source address (netmon's settle_fn, called here
 * directly: loopback has no second uplink; netlab covers the netlink side): the client's
 * stream closes and the core dials it again at once, without the reconnect backoff, and the
 * echo goes on. A server's accepted stream is never closed that way. */
static void test_route_change_redials(void)
{
    side srv, cli;
    tern_addr to = connect_pair(&srv, &cli, 0, NULL);
    tern_path_info pi;
    tern_conn_path(srv.conn, &pi);
    TT_CHECK(drv_stream_reroute(srv.d, &pi.remote) == 0);
    TT_CHECK(drv_stream_reroute(cli.d, &to) == 1);
    tern_driver_stats cs;
    tern_driver_get_stats(cli.d, &cs);
    TT_CHECK_EQ_INT(cs.stream_route_closes, 1);
    TT_CHECK_EQ_INT(cs.streams_open, 0);
    uint8_t buf[TERN_MAX_DATAGRAM];
    for (unsigned q = 0; q < 10 && cli.conn; q++) {
        size_t len = msg_len(q, 1000);
        fill(buf, q, len);
        TT_CHECK(tern_conn_send_datagram(cli.conn, tern_driver_now(cli.d), buf, len) == TERN_OK);
    }
    tern_driver_flush(cli.d);
    uint64_t t0 = tern_driver_update_now(cli.d);
    pump(&cli, &srv, any_back, 3000, NULL, NULL);
    uint64_t took = tern_driver_update_now(cli.d) - t0;
    tern_driver_get_stats(cli.d, &cs);
    printf("route change: stream closed and dialled again, first echo after %llu ms "
           "(held by the backoff: %llu)\n",
           (unsigned long long)(took / TERN_NS_PER_MS), (unsigned long long)cs.stream_tx_held);
    TT_CHECK(cli.got > 0 && cli.bad == 0 && !cli.closed);
    TT_CHECK_EQ_INT(cs.streams_connected, 2);
    TT_CHECK_EQ_INT(cs.stream_tx_held, 0); /* no backoff: not the server's failure */
    tern_driver_del(cli.d);
    tern_driver_del(srv.d);
}

static void test_config(void)
{
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    TT_CHECK_EQ_INT(dc.stream_limits.max_streams, 10000);
    TT_CHECK_EQ_INT(dc.stream_limits.max_per_ip, 64);
    TT_CHECK_EQ_INT(dc.stream_limits.write_buffer, 1280 * 1024);
    TT_CHECK(dc.stream_limits.preamble_timeout_ns == 5 * TERN_NS_PER_S);
    TT_CHECK(dc.stream_limits.idle_timeout_ns == 60 * TERN_NS_PER_S);
    TT_CHECK_EQ_INT(dc.stream_limits.accept_rate, 50);
    /* a UDP address as a stream listener, an unusable certificate: refused with a reason */
    tern_addr_ipv4(&dc.stream_listen[0], 127, 0, 0, 1, 0);
    dc.n_stream_listen = 1;
    tern_driver *d = NULL;
    TT_CHECK(tern_driver_new(&dc, &d) == TERN_ERR_INVALID_ARG);
    dc.stream_listen[0].transport = TERN_TRANSPORT_TLS;
    dc.tls_cert_file = "/nonexistent/cert.pem";
    dc.tls_key_file = "/nonexistent/key.pem";
    TT_CHECK(tern_driver_new(&dc, &d) == TERN_ERR_CRYPTO);
    printf("bad certificate: %s\n", tern_driver_stream_error(NULL));
    TT_CHECK(strstr(tern_driver_stream_error(NULL), "/nonexistent/cert.pem") != NULL);
    /* a stream listener on a port in use */
    side srv;
    make(&srv, 1, NULL, NULL);
    dc.stream_listen[0] = listener(&srv, 0);
    dc.tls_cert_file = dc.tls_key_file = NULL;
    TT_CHECK(tern_driver_new(&dc, &d) == TERN_ERR_STATE);
    printf("port in use: %s\n", tern_driver_stream_error(NULL));
    TT_CHECK(strstr(tern_driver_stream_error(NULL), "in use") != NULL);
    tern_driver_del(srv.d);
}

static const tt_case cases[] = {
    TT_CASE(test_config),
    TT_CASE(test_tcp),
    TT_CASE(test_tls),
    TT_CASE(test_ipv6),
    TT_CASE(test_auto_race_tcp),
    TT_CASE(test_auto_race_tls),
    TT_CASE(test_connect_opts_choice),
    TT_CASE(test_server_never_dials),
    TT_CASE(test_tls_peer_reset),
    TT_CASE(test_wrong_service),
    TT_CASE(test_wrong_service_kept),
    TT_CASE(test_https_server),
    TT_CASE(test_reconnect_backoff),
    TT_CASE(test_route_change_redials),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
