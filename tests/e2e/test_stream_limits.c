/*
 * The limits of the driver's stream transports (tern_driver_stream_limits), each tried as an
 * attacker would, on loopback in one thread through the embedding API (the harness is
 * tests/support/stream_rig.{c,h}; the transports' behaviour is in test_stream_drv.c):
 *   - many streams from one address (max_per_ip), more streams than max_streams, clients that
 *     never finish the preamble or the TLS handshake (preamble_timeout), one that opens and
 *     drops streams as fast as it can (accept_rate), a process out of descriptors (the listener
 *     pauses), a non-tern client (closed at once with not a byte from us), a client that sends
 *     a bad frame length, an idle stream (idle_timeout), and a relay client that never reads
 *     while frames are sent to it (write_buffer: drops counted, then the stalled stream is
 *     closed by the idle timeout); the rx_hook sees stream frames with TERN_DRIVER_STREAM_SOCK
 *     and tern_driver_send_raw answers on the stream;
 *   - a relay's frames fill a stalled stream only up to their share of write_buffer, so the
 *     server's own packets still fit; buffer_total shared by stalled streams; a core packet
 *     that overflows write_buffer or buffer_total closes the stream;
 */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tern/driver.h"
#include "tern/udp.h"
#include "support/stream_rig.h"
#include "support/tt.h"

/* A client that stops reading while the server's connection sends (its stream_window raised far
 * above write_buffer, which the defaults never allow): the kernel's buffers fill, then the write
 * buffer, and the core packet that does not fit closes the stream instead of being lost silently
 * (the core would wait on the stream for it). */
/* The server's connection sends datagrams as fast as its core lets it while the client driver
 * is not run (nothing it receives is read), until a stream closes on an error (5 s at most);
 * the server's counters then in *ss. */
static void flood_until_closed(side *srv, tern_driver_stats *ss)
{
    uint8_t b[TERN_MAX_DATAGRAM];
    memset(b, 0x5a, sizeof(b));
    uint64_t end = tern_driver_update_now(srv->d) + 5 * TERN_NS_PER_S;
    do {
        while (srv->conn && tern_conn_send_datagram(srv->conn, tern_driver_now(srv->d), b,
                                                    tern_conn_max_datagram(srv->conn)) == TERN_OK) {
        }
        tern_driver_flush(srv->d);
        serve(srv, 1);
        tern_driver_get_stats(srv->d, ss);
    } while (ss->stream_closed_error == 0 && tern_driver_update_now(srv->d) < end);
}

static void test_core_overflow_closes(void)
{
    tern_driver_stream_limits lim = {.write_buffer = 64 * 1024};
    side srv, cli;
    g_stream_window = 256u << 20;
    (void)connect_pair(&srv, &cli, 0, &lim);
    tern_driver_stats ss;
    flood_until_closed(&srv, &ss);
    printf("client not reading: %llu bytes written before the %llu KiB buffer overflowed\n",
           (unsigned long long)ss.stream_bytes_out, (unsigned long long)lim.write_buffer / 1024);
    TT_CHECK_EQ_INT(ss.stream_closed_error, 1);
    TT_CHECK(ss.stream_tx_dropped >= 1);
    TT_CHECK_EQ_INT(ss.streams_open, 0);
    tern_driver_del(cli.d);
    tern_driver_del(srv.d);
}

/* ---------------------------------------------------------------- limits, as an attacker */

static void test_limit_per_ip(void)
{
    tern_driver_stream_limits lim = {.max_streams = 100, .max_per_ip = 4};
    side srv;
    make(&srv, 1, NULL, &lim);
    tern_addr to = listener(&srv, 0);
    int fd[10];
    for (int i = 0; i < 10; i++) {
        fd[i] = tcp_dial(&to, 0);
        TT_CHECK(send(fd[i], "tern/1c\n", 8, 0) == 8);
    }
    serve(&srv, 200);
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_accepted, 4);
    TT_CHECK_EQ_INT(ss.streams_refused_per_ip, 6);
    TT_CHECK_EQ_INT(ss.streams_open, 4);
    int answered = 0, closed = 0;
    for (int i = 0; i < 10; i++) { /* the 4 got the server's preamble, the 6 an end */
        uint8_t b[16];
        ssize_t n = peek_read(fd[i], b, sizeof(b));
        if (n == 8 && memcmp(b, "tern/1s\n", 8) == 0) answered++;
        else if (n == 0) closed++;
        close(fd[i]);
    }
    TT_CHECK_EQ_INT(answered, 4);
    TT_CHECK_EQ_INT(closed, 6);
    serve(&srv, 100);
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_open, 0);
    TT_CHECK_EQ_INT(ss.stream_closed_peer, 4);
    tern_driver_del(srv.d);
}

/* A client that opens and drops streams as fast as it can (each one a TLS handshake the server
 * would pay for): accept_rate 5, so a burst of 10 and then 5 a second. */
static void test_limit_accept_rate(void)
{
    tern_driver_stream_limits lim = {.accept_rate = 5};
    side srv;
    make(&srv, 1, NULL, &lim);
    tern_addr tls = listener(&srv, 1);
    uint64_t t0 = tern_driver_update_now(srv.d);
    for (int i = 0; i < 30; i++) close(tcp_dial(&tls, 0)); /* all in the listen queue */
    serve(&srv, 50);
    uint64_t took = tern_driver_update_now(srv.d) - t0;
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    uint64_t allowed = 10 + 5 * took / TERN_NS_PER_S + 1;
    printf("30 streams in %llu ms: %llu accepted, %llu refused by the rate\n",
           (unsigned long long)(took / TERN_NS_PER_MS), (unsigned long long)ss.streams_accepted,
           (unsigned long long)ss.streams_refused_rate);
    TT_CHECK(ss.streams_accepted >= 10 && ss.streams_accepted <= allowed);
    TT_CHECK_EQ_INT(ss.streams_accepted + ss.streams_refused_rate, 30);
    tern_driver_del(srv.d);
}

static void test_limit_max_streams(void)
{
    tern_driver_stream_limits lim = {.max_streams = 3};
    side srv;
    make(&srv, 1, NULL, &lim);
    tern_addr tcp = listener(&srv, 0), tls = listener(&srv, 1);
    int fd[8];
    for (int i = 0; i < 8; i++) fd[i] = tcp_dial(i % 2 ? &tls : &tcp, 0);
    serve(&srv, 200);
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_accepted, 3);
    TT_CHECK_EQ_INT(ss.streams_refused_max, 5);
    TT_CHECK_EQ_INT(ss.streams_open, 3);
    for (int i = 0; i < 8; i++) close(fd[i]);
    serve(&srv, 100);
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_open, 0); /* room again */
    int again = tcp_dial(&tcp, 0);
    serve(&srv, 100);
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_accepted, 4);
    close(again);
    tern_driver_del(srv.d);
}

/* Out of file descriptors (EMFILE) with connections waiting: the listener pauses (100 ms at a
 * time) instead of spinning on a queue it cannot accept from, and takes them once there is room. */
static void test_accept_emfile(void)
{
    side srv;
    make(&srv, 1, NULL, NULL);
    tern_addr tcp = listener(&srv, 0);
    int fd[12], top = 0;
    for (int i = 0; i < 12; i++) {
        fd[i] = tcp_dial(&tcp, 0);
        if (fd[i] > top) top = fd[i];
    }
    struct rlimit was, low;
    TT_REQUIRE(getrlimit(RLIMIT_NOFILE, &was) == 0);
    low = was;
    low.rlim_cur = (rlim_t)top + 3; /* room for about two more descriptors */
    TT_REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    tern_driver_stats s0, ss;
    tern_driver_get_stats(srv.d, &s0);
    serve(&srv, 300);
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK(setrlimit(RLIMIT_NOFILE, &was) == 0);
    uint64_t iters = ss.iterations - s0.iterations;
    printf("EMFILE: %llu accepted, %llu accept errors, %llu loop iterations in 300 ms\n",
           (unsigned long long)ss.streams_accepted, (unsigned long long)ss.stream_accept_errors,
           (unsigned long long)iters);
    TT_CHECK(ss.stream_accept_errors >= 1 && ss.stream_accept_errors <= 5);
    TT_CHECK(ss.streams_accepted < 12);
    TT_CHECK(iters < 200); /* not spinning */
    serve(&srv, 200); /* room again: the rest are taken */
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_accepted, 12);
    for (int i = 0; i < 12; i++) close(fd[i]);
    tern_driver_del(srv.d);
}

/* Slowloris: a client that sends part of the preamble and stops, one that opens TLS and never
 * says hello, one that sends nothing: all closed at preamble_timeout, none before. */
static void test_limit_preamble_timeout(void)
{
    tern_driver_stream_limits lim = {.preamble_timeout_ns = 300 * TERN_NS_PER_MS};
    side srv;
    make(&srv, 1, NULL, &lim);
    tern_addr tcp = listener(&srv, 0), tls = listener(&srv, 1);
    int fd[3] = {tcp_dial(&tcp, 0), tcp_dial(&tls, 0), tcp_dial(&tcp, 0)};
    TT_CHECK(send(fd[0], "tern/", 5, 0) == 5);
    serve(&srv, 150);
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_open, 3);
    TT_CHECK_EQ_INT(ss.stream_preamble_timeouts, 0);
    serve(&srv, 300);
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.stream_preamble_timeouts, 3);
    TT_CHECK_EQ_INT(ss.streams_open, 0);
    for (int i = 0; i < 3; i++) {
        uint8_t b[8];
        TT_CHECK(peek_read(fd[i], b, sizeof(b)) == 0); /* nothing from us, then the end */
        close(fd[i]);
    }
    tern_driver_del(srv.d);
}

/* A non-tern client (an HTTP request) and a frame of length 0 / over the maximum: closed at
 * once, and the HTTP client never gets a byte. */
static void test_bad_client(void)
{
    side srv;
    make(&srv, 1, NULL, NULL);
    tern_addr tcp = listener(&srv, 0);
    int h = tcp_dial(&tcp, 0);
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    TT_CHECK(send(h, req, sizeof(req) - 1, 0) == (ssize_t)(sizeof(req) - 1));
    int z = tcp_dial(&tcp, 0);
    TT_CHECK(send(z, "tern/1c\n\x00\x00", 10, 0) == 10);
    int big = tcp_dial(&tcp, 0);
    uint8_t hdr[2] = {(uint8_t)((TERN_MAX_DATAGRAM + 1) >> 8), (uint8_t)(TERN_MAX_DATAGRAM + 1)};
    TT_CHECK(send(big, "tern/1c\n", 8, 0) == 8 && send(big, hdr, 2, 0) == 2);
    serve(&srv, 150);
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.stream_bad_preamble, 1);
    TT_CHECK_EQ_INT(ss.stream_bad_length, 2);
    TT_CHECK_EQ_INT(ss.streams_open, 0);
    uint8_t b[16];
    TT_CHECK(peek_read(h, b, sizeof(b)) == 0); /* closed, not a byte */
    TT_CHECK(peek_read(z, b, sizeof(b)) == 0); /* closed before our preamble left */
    close(h);
    close(z);
    close(big);
    tern_driver_del(srv.d);
}

/* A relay client over TCP that never reads: the server's frames to it (tern_driver_send_raw,
 * as ternd's relay forwards) fill the kernel's buffers, then write_buffer; the rest is dropped
 * and counted, and the stalled stream is closed at the idle timeout. */
static void test_limit_write_buffer(void)
{
    tern_driver_stream_limits lim = {.write_buffer = 32 * 1024,
                                     .idle_timeout_ns = 1000 * TERN_NS_PER_MS};
    side srv;
    make(&srv, 1, NULL, &lim);
    tern_addr tcp = listener(&srv, 0);
    int fd = tcp_dial(&tcp, 4096);
    uint8_t frame[2 + 100];
    frame[0] = 0;
    frame[1] = 100;
    memset(frame + 2, 0x55, 100);
    frame[2] = TERN_RELAY_TYPE;
    TT_CHECK(send(fd, "tern/1c\n", 8, 0) == 8 && send(fd, frame, sizeof(frame), 0) == 102);
    serve(&srv, 100);
    TT_REQUIRE(srv.hooked == 1);
    TT_CHECK(srv.hook_sock == TERN_DRIVER_STREAM_SOCK);
    TT_CHECK(srv.hook_from.transport == TERN_TRANSPORT_TCP);
    uint8_t big[1400];
    memset(big, 0xab, sizeof(big));
    big[0] = TERN_RELAY_TYPE;
    unsigned ok = 0, dropped = 0;
    /* up to 40 x 256 x 1400 B (14 MB) offered, until a few rounds have been dropped whole: well
     * inside the idle timeout that then closes the stalled stream, however slow the machine */
    for (int round = 0; round < 40 && dropped < 3 * 256; round++) {
        for (int i = 0; i < 256; i++) {
            int rc = tern_driver_send_raw(srv.d, TERN_DRIVER_STREAM_SOCK, &srv.hook_from, big,
                                          sizeof(big));
            if (rc == TERN_OK) ok++;
            else if (rc == TERN_ERR_AGAIN) dropped++;
        }
        tern_driver_flush(srv.d);
        serve(&srv, 2);
    }
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    printf("never reads: %u frames taken, %u dropped (counted %llu), %llu bytes written\n", ok,
           dropped, (unsigned long long)ss.stream_tx_dropped,
           (unsigned long long)ss.stream_bytes_out);
    TT_CHECK(dropped > 0);
    TT_CHECK_EQ_INT(ss.stream_tx_dropped, dropped);
    TT_CHECK_EQ_INT(ss.tx_raw, ok);
    /* what it holds is bounded: the kernel's buffers and 32 KiB of ours */
    TT_CHECK((uint64_t)ok * (sizeof(big) + 2) <= ss.stream_bytes_out + lim.write_buffer);
    TT_CHECK_EQ_INT(ss.streams_open, 1);
    serve(&srv, 1200); /* stalled longer than the idle timeout */
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.stream_idle_timeouts, 1);
    TT_CHECK_EQ_INT(ss.streams_open, 0);
    /* and no stream to send to now */
    TT_CHECK(tern_driver_send_raw(srv.d, TERN_DRIVER_STREAM_SOCK, &srv.hook_from, big,
                                  sizeof(big)) == TERN_ERR_NOT_FOUND);
    close(fd);
    tern_driver_del(srv.d);
}

/* A relay's two directions: a frame taken by the rx_hook from a stream goes back on that stream
 * and out to a UDP peer with tern_driver_send_raw(TERN_DRIVER_STREAM_SOCK, ...). */
static void test_relay_raw(void)
{
    side srv;
    make(&srv, 1, NULL, NULL);
    tern_addr tcp = listener(&srv, 0);
    int fd = tcp_dial(&tcp, 0);
    uint8_t frame[2 + 20] = {0, 20, TERN_RELAY_TYPE};
    for (int i = 3; i < 22; i++) frame[i] = (uint8_t)i;
    TT_CHECK(send(fd, "tern/1c\n", 8, 0) == 8 && send(fd, frame, sizeof(frame), 0) == 22);
    serve(&srv, 100);
    TT_REQUIRE(srv.hooked == 1);
    int u = -1;
    tern_addr ua;
    tern_addr_ipv4(&ua, 127, 0, 0, 1, 0);
    TT_REQUIRE(tern_udp_open(&ua, 0, &u) == TERN_OK);
    TT_CHECK(tern_udp_local_addr(u, &ua) == TERN_OK);
    TT_CHECK(tern_driver_send_raw(srv.d, TERN_DRIVER_STREAM_SOCK, &srv.hook_from, frame + 2, 20) ==
             TERN_OK);
    TT_CHECK(tern_driver_send_raw(srv.d, TERN_DRIVER_STREAM_SOCK, &ua, frame + 2, 20) == TERN_OK);
    tern_driver_flush(srv.d);
    serve(&srv, 50);
    uint8_t b[64];
    ssize_t n = peek_read(fd, b, sizeof(b)); /* our preamble, then the frame */
    TT_CHECK(n == 8 + 22 && memcmp(b, "tern/1s\n", 8) == 0 && memcmp(b + 8, frame, 22) == 0);
    n = recv(u, b, sizeof(b), MSG_DONTWAIT);
    TT_CHECK(n == 20 && memcmp(b, frame + 2, 20) == 0);
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.tx_raw, 2);
    TT_CHECK_EQ_INT(ss.rx_hooked, 1);
    close(u);
    close(fd);
    tern_driver_del(srv.d);
}

/* A busy relay does not close a peer's stream: tern_driver_send_raw frames (a relay's) fill a
 * stream whose reader stalls only up to their share of write_buffer (then they are dropped,
 * counted), so the packets of the server's own connection to that peer still fit (a full
 * buffer would close the stream at the first of them), and flow once the peer reads again. */
static void test_relay_leaves_room(void)
{
    side srv, cli;
    (void)connect_pair(&srv, &cli, 0, NULL); /* the default limits and stream_window */
    tern_path_info pi;
    tern_conn_path(srv.conn, &pi);
    tern_addr peer = pi.remote; /* the client's stream, as the server sees it */
    TT_REQUIRE(peer.transport == TERN_TRANSPORT_TCP);
    uint8_t big[1400];
    memset(big, 0xab, sizeof(big));
    big[0] = TERN_RELAY_TYPE;
    unsigned ok = 0, dropped = 0;
    /* the client driver is not run: the kernel's buffers fill, then ours */
    for (int round = 0; round < 400 && dropped < 3 * 256; round++) {
        for (int i = 0; i < 256; i++) {
            int rc = tern_driver_send_raw(srv.d, TERN_DRIVER_STREAM_SOCK, &peer, big, sizeof(big));
            if (rc == TERN_OK) ok++;
            else if (rc == TERN_ERR_AGAIN) dropped++;
        }
        tern_driver_flush(srv.d);
        serve(&srv, 1);
    }
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK(dropped > 0);
    TT_CHECK_EQ_INT(ss.stream_raw_limited, dropped);
    TT_CHECK_EQ_INT(ss.stream_closed_error, 0);
    /* the server's connection sends while the client still does not read: up to its
     * stream_window, which fits beside the relay's share */
    uint8_t buf[TERN_MAX_DATAGRAM];
    unsigned sent = 0;
    uint64_t end = tern_driver_update_now(srv.d) + 300 * TERN_NS_PER_MS;
    do {
        for (;;) {
            size_t len = msg_len(sent, 1000);
            fill(buf, sent, len);
            if (srv.conn == NULL ||
                tern_conn_send_datagram(srv.conn, tern_driver_now(srv.d), buf, len) != TERN_OK)
                break;
            sent++;
        }
        tern_driver_flush(srv.d);
        serve(&srv, 1);
    } while (tern_driver_update_now(srv.d) < end);
    tern_driver_get_stats(srv.d, &ss);
    printf("relay frames: %u taken, %u dropped at their share; then %u datagrams of the "
           "server's own sent, %llu bytes of buffers held at most (write_buffer 1.25 MiB)\n",
           ok, dropped, sent, (unsigned long long)ss.stream_buffer_peak);
    TT_CHECK_EQ_INT(ss.stream_closed_error, 0);
    TT_CHECK_EQ_INT(ss.streams_open, 1);
    TT_CHECK(sent > 0);
    /* the client reads again: the server's packets arrive */
    pump(&cli, &srv, any_back, 3000, NULL, NULL);
    TT_CHECK(cli.got > 0 && cli.bad == 0);
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.stream_closed_error, 0);
    tern_driver_del(cli.d);
    tern_driver_del(srv.d);
}

/* Dials a raw TCP client to tcp (a 4 KiB receive buffer, never read), shows the preamble and
 * one relay frame; returns its fd and the address the server's rx_hook saw it at. */
static int raw_client(side *srv, const tern_addr *tcp, tern_addr *from)
{
    int fd = tcp_dial(tcp, 4096);
    uint8_t frame[2 + 100] = {0, 100, TERN_RELAY_TYPE};
    unsigned before = srv->hooked;
    TT_CHECK(send(fd, "tern/1c\n", 8, 0) == 8 && send(fd, frame, sizeof(frame), 0) == 102);
    serve(srv, 100);
    TT_CHECK(srv->hooked == before + 1);
    *from = srv->hook_from;
    return fd;
}

/* buffer_total: two stalled streams that a relay keeps sending to share the driver-wide budget
 * of write buffers; past it their frames are dropped (counted), and the memory held never
 * passes it. */
static void test_limit_buffer_total(void)
{
    tern_driver_stream_limits lim = {.buffer_total = 96 * 1024};
    side srv;
    make(&srv, 1, NULL, &lim);
    tern_addr tcp = listener(&srv, 0), from[2];
    int fd[2];
    for (int k = 0; k < 2; k++) fd[k] = raw_client(&srv, &tcp, &from[k]);
    uint8_t big[1400];
    memset(big, 0xab, sizeof(big));
    big[0] = TERN_RELAY_TYPE;
    unsigned ok = 0, dropped = 0;
    for (int round = 0; round < 400 && dropped < 3 * 512; round++) {
        for (int i = 0; i < 512; i++) {
            int rc = tern_driver_send_raw(srv.d, TERN_DRIVER_STREAM_SOCK, &from[i & 1], big,
                                          sizeof(big));
            if (rc == TERN_OK) ok++;
            else dropped++;
        }
        tern_driver_flush(srv.d);
        serve(&srv, 1);
    }
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    printf("buffer_total 96 KiB: %u frames taken, %u dropped (%llu at the budget), %llu bytes "
           "held at most\n", ok, dropped, (unsigned long long)ss.stream_over_budget,
           (unsigned long long)ss.stream_buffer_peak);
    TT_CHECK(ss.stream_over_budget > 0);
    TT_CHECK_EQ_INT(ss.stream_tx_dropped, dropped);
    TT_CHECK(ss.stream_buffer_peak <= lim.buffer_total);
    TT_CHECK(ss.stream_buffer_bytes <= lim.buffer_total);
    TT_CHECK_EQ_INT(ss.streams_open, 2);
    for (int k = 0; k < 2; k++) close(fd[k]);
    serve(&srv, 200);
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.streams_open, 0);
    TT_CHECK_EQ_INT(ss.stream_buffer_bytes, 0); /* every buffer given back */
    tern_driver_del(srv.d);
}

/* buffer_total and a packet of the core's: the stream it would take past the budget closes
 * (the core sends again elsewhere), and its buffer goes back to the budget. */
static void test_core_over_budget_closes(void)
{
    tern_driver_stream_limits lim = {.buffer_total = 64 * 1024};
    side srv, cli;
    g_stream_window = 256u << 20;
    (void)connect_pair(&srv, &cli, 0, &lim);
    tern_driver_stats ss;
    flood_until_closed(&srv, &ss);
    TT_CHECK_EQ_INT(ss.stream_closed_error, 1);
    TT_CHECK(ss.stream_over_budget >= 1);
    TT_CHECK(ss.stream_buffer_peak <= lim.buffer_total);
    TT_CHECK_EQ_INT(ss.streams_open, 0);
    TT_CHECK_EQ_INT(ss.stream_buffer_bytes, 0);
    tern_driver_del(cli.d);
    tern_driver_del(srv.d);
}

/* An idle stream (preamble, then silence) is closed at idle_timeout; a busy one is not. */
static void test_limit_idle(void)
{
    tern_driver_stream_limits lim = {.idle_timeout_ns = 300 * TERN_NS_PER_MS};
    side srv;
    make(&srv, 1, NULL, &lim);
    tern_addr tcp = listener(&srv, 0);
    int quiet = tcp_dial(&tcp, 0), busy = tcp_dial(&tcp, 0);
    TT_CHECK(send(quiet, "tern/1c\n", 8, 0) == 8 && send(busy, "tern/1c\n", 8, 0) == 8);
    uint8_t frame[3] = {0, 1, 0}; /* a 1-byte packet: the endpoint drops it, the stream lives */
    for (int i = 0; i < 6; i++) {
        serve(&srv, 100);
        TT_CHECK(send(busy, frame, sizeof(frame), 0) == 3);
    }
    tern_driver_stats ss;
    tern_driver_get_stats(srv.d, &ss);
    TT_CHECK_EQ_INT(ss.stream_idle_timeouts, 1);
    TT_CHECK_EQ_INT(ss.streams_open, 1);
    TT_CHECK(ss.stream_frames_in >= 5);
    close(quiet);
    close(busy);
    tern_driver_del(srv.d);
}

static const tt_case cases[] = {
    TT_CASE(test_core_overflow_closes),
    TT_CASE(test_limit_per_ip),
    TT_CASE(test_limit_max_streams),
    TT_CASE(test_limit_accept_rate),
    TT_CASE(test_accept_emfile),
    TT_CASE(test_limit_preamble_timeout),
    TT_CASE(test_bad_client),
    TT_CASE(test_limit_write_buffer),
    TT_CASE(test_limit_idle),
    TT_CASE(test_relay_raw),
    TT_CASE(test_relay_leaves_room),
    TT_CASE(test_limit_buffer_total),
    TT_CASE(test_core_over_budget_closes),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
