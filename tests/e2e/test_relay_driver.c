/*
 * The relay behind a real driver on loopback, the way ternd runs it: a server driver whose
 * rx_hook hands datagrams starting with TERN_RELAY_TYPE to a tern_relay and sends what it returns
 * with tern_driver_send_raw from the same socket. Two plain UDP sockets play the peers. Checks:
 * a datagram from A on A's channel arrives at B, from the driver's address, with B's channel and
 * the inner bytes unchanged, and the reverse; a datagram on A's channel from a third socket, one
 * on an unknown channel and one without the inner fixed bit reach nobody and are counted; a
 * tern client still completes its handshake with the same driver (tern packets pass the hook).
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tern/driver.h"
#include "tern/relay.h"
#include "tern/udp.h"

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);              \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct srv {
    tern_driver *d;
    tern_relay *relay;
    uint64_t sent, send_failed;
    int established;
} srv;

static int relay_rx(tern_driver *d, size_t sock, const tern_addr *from, uint8_t *data, size_t len,
                    void *user)
{
    srv *s = user;
    if (len == 0 || data[0] != TERN_RELAY_TYPE) return 0;
    tern_addr to;
    int n = tern_relay_forward(s->relay, tern_driver_now(d), from, data, len, &to);
    if (n > 0) {
        if (tern_driver_send_raw(d, sock, &to, data, (size_t)n) == TERN_OK) s->sent++;
        else s->send_failed++;
    }
    return 1;
}

static void on_established(tern_conn *c, void *user)
{
    (void)c;
    ((srv *)user)->established = 1;
}

/* Runs the drivers and waits up to ms for a datagram on fd; returns its length or -1. */
static int recv_within(srv *s, tern_driver *other, int fd, uint8_t *buf, size_t cap,
                       tern_addr *from, int ms)
{
    for (int waited = 0; waited <= ms; waited += 5) {
        CHECK(tern_driver_process(s->d) >= 0);
        if (other) CHECK(tern_driver_process(other) >= 0);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t r = recvfrom(fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
        if (r >= 0) {
            CHECK(tern_addr_from_sockaddr(from, (struct sockaddr *)&ss, sl) == TERN_OK);
            return (int)r;
        }
        struct pollfd p = {tern_driver_fd(s->d), POLLIN, 0};
        (void)poll(&p, 1, 5);
    }
    return -1;
}

static void send_to(int fd, const tern_addr *to, const uint8_t *d, size_t len)
{
    struct sockaddr_storage ss;
    int sl = tern_addr_to_sockaddr(to, &ss);
    CHECK(sl > 0);
    CHECK(sendto(fd, d, len, 0, (struct sockaddr *)&ss, (socklen_t)sl) == (ssize_t)len);
}

int main(void)
{
    srv s;
    memset(&s, 0, sizeof(s));
    tern_relay_config rc;
    tern_relay_config_default(&rc);
    if (tern_relay_new(&rc, &s.relay) != TERN_OK) return 1;
    tern_keypair kp;
    CHECK(tern_keypair_generate(&kp) == TERN_OK);
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.endpoint.is_server = 1;
    dc.endpoint.has_static_key = 1;
    dc.endpoint.static_key = kp;
    dc.endpoint.callbacks.on_established = on_established;
    dc.endpoint.user_data = &s;
    dc.n_listen = 1;
    tern_addr_ipv4(&dc.listen[0], 127, 0, 0, 1, 0);
    dc.rx_hook = relay_rx;
    dc.rx_hook_user = &s;
    if (tern_driver_new(&dc, &s.d) != TERN_OK) {
        fprintf(stderr, "cannot start the driver\n");
        return 1;
    }
    tern_addr relay_addr;
    CHECK(tern_driver_local_addr(s.d, 0, &relay_addr) == TERN_OK);

    int fa, fb, fc;
    tern_addr lo, a, b, c;
    tern_addr_ipv4(&lo, 127, 0, 0, 1, 0);
    CHECK(tern_udp_open(&lo, 0, &fa) == TERN_OK && tern_udp_open(&lo, 0, &fb) == TERN_OK &&
          tern_udp_open(&lo, 0, &fc) == TERN_OK);
    CHECK(tern_udp_local_addr(fa, &a) == TERN_OK && tern_udp_local_addr(fb, &b) == TERN_OK &&
          tern_udp_local_addr(fc, &c) == TERN_OK);
    uint8_t ca[TERN_RELAY_CHANNEL_LEN], cb[TERN_RELAY_CHANNEL_LEN];
    CHECK(tern_relay_open(s.relay, tern_driver_update_now(s.d), &a, &b, ca, cb) == TERN_OK);

    uint8_t d[TERN_MAX_DATAGRAM], got[2048];
    tern_addr from;
    /* A -> B */
    d[0] = TERN_RELAY_TYPE;
    memcpy(d + 1, ca, sizeof(ca));
    for (size_t i = TERN_RELAY_HDR_LEN; i < sizeof(d); i++) d[i] = (uint8_t)(i * 7);
    d[TERN_RELAY_HDR_LEN] = 0x45;
    send_to(fa, &relay_addr, d, sizeof(d));
    int n = recv_within(&s, NULL, fb, got, sizeof(got), &from, 1000);
    CHECK(n == (int)sizeof(d));
    CHECK(tern_addr_equal(&from, &relay_addr));
    CHECK(n > 0 && got[0] == TERN_RELAY_TYPE && memcmp(got + 1, cb, sizeof(cb)) == 0);
    CHECK(n > 0 && memcmp(got + TERN_RELAY_HDR_LEN, d + TERN_RELAY_HDR_LEN,
                          sizeof(d) - TERN_RELAY_HDR_LEN) == 0);
    /* B -> A */
    memcpy(d + 1, cb, sizeof(cb));
    send_to(fb, &relay_addr, d, 100);
    n = recv_within(&s, NULL, fa, got, sizeof(got), &from, 1000);
    CHECK(n == 100 && memcmp(got + 1, ca, sizeof(ca)) == 0);
    /* from C on A's channel, an unknown channel, no fixed bit: nobody gets anything */
    memcpy(d + 1, ca, sizeof(ca));
    send_to(fc, &relay_addr, d, 100);
    d[1] ^= 0xff;
    send_to(fa, &relay_addr, d, 100);
    d[1] ^= 0xff;
    d[TERN_RELAY_HDR_LEN] = 0x05;
    send_to(fa, &relay_addr, d, 100);
    CHECK(recv_within(&s, NULL, fb, got, sizeof(got), &from, 200) < 0);
    CHECK(recv_within(&s, NULL, fc, got, sizeof(got), &from, 10) < 0);
    CHECK(recv_within(&s, NULL, fa, got, sizeof(got), &from, 10) < 0);
    tern_relay_stats rs;
    tern_relay_get_stats(s.relay, &rs);
    CHECK(rs.fwd_packets == 2 && rs.drop_wrong_source == 1 && rs.drop_unknown_channel == 1 &&
          rs.drop_malformed == 1);
    tern_driver_stats ds;
    tern_driver_get_stats(s.d, &ds);
    CHECK(ds.rx_hooked == 5 && ds.tx_raw == 2 && ds.tx_raw_errors == 0);
    CHECK(s.sent == 2 && s.send_failed == 0);
    /* a burst of 100 from A, all read before the relay runs: they leave batched (sendmmsg of
     * up to 64), in order, each once, to B */
    memcpy(d + 1, ca, sizeof(ca));
    d[TERN_RELAY_HDR_LEN] = 0x45;
    for (int i = 0; i < 100; i++) {
        d[TERN_RELAY_HDR_LEN + 1] = (uint8_t)i;
        send_to(fa, &relay_addr, d, 200);
    }
    tern_driver_get_stats(s.d, &ds);
    uint64_t calls0 = ds.tx_raw_syscalls;
    int burst = 0, in_order = 1;
    while (burst < 100) {
        n = recv_within(&s, NULL, fb, got, sizeof(got), &from, 500);
        if (n < 0) break;
        if (n != 200 || got[TERN_RELAY_HDR_LEN + 1] != (uint8_t)burst ||
            memcmp(got + 1, cb, sizeof(cb)) != 0)
            in_order = 0;
        burst++;
    }
    CHECK(burst == 100 && in_order);
    CHECK(recv_within(&s, NULL, fb, got, sizeof(got), &from, 20) < 0);
    tern_driver_get_stats(s.d, &ds);
    printf("100 relayed datagrams in %llu sendmmsg calls, %llu GSO messages (GSO %s)\n",
           (unsigned long long)(ds.tx_raw_syscalls - calls0),
           (unsigned long long)ds.tx_raw_gso_msgs, ds.gso ? "on" : "off");
    if (ds.gso) CHECK(ds.tx_raw_gso_msgs > 0); /* runs of one size to B went as one message */
    CHECK(ds.tx_raw == 102 && ds.tx_raw_errors == 0);
    CHECK(ds.tx_raw_syscalls - calls0 <= 10);
    s.sent -= 100;
    /* send_raw's argument checks */
    CHECK(tern_driver_send_raw(s.d, 1, &a, d, 10) == TERN_ERR_INVALID_ARG);
    CHECK(tern_driver_send_raw(s.d, 0, &a, d, TERN_MAX_DATAGRAM + 1) == TERN_ERR_INVALID_ARG);

    /* a tern client still gets through the hook to the endpoint */
    tern_driver *cli = NULL;
    tern_driver_config cc;
    tern_driver_config_default(&cc);
    cc.n_listen = 1;
    cc.listen[0] = lo;
    CHECK(tern_driver_new(&cc, &cli) == TERN_OK);
    tern_conn *conn = NULL;
    if (cli) CHECK(tern_driver_connect(cli, &relay_addr, kp.pub, &conn) == TERN_OK);
    for (int i = 0; cli && i < 400 && !s.established; i++) {
        CHECK(tern_driver_process(s.d) >= 0);
        CHECK(tern_driver_process(cli) >= 0);
        struct pollfd p[2] = {{tern_driver_fd(s.d), POLLIN, 0}, {tern_driver_fd(cli), POLLIN, 0}};
        (void)poll(p, 2, 5);
    }
    CHECK(s.established);
    tern_driver_get_stats(s.d, &ds);
    CHECK(ds.rx_hooked == 105); /* the tern packets went past the hook */

    tern_driver_del(cli);
    tern_driver_del(s.d);
    tern_relay_del(s.relay);
    close(fa), close(fb), close(fc);
    tern_keypair_wipe(&kp);
    if (failures) {
        fprintf(stderr, "test_relay_driver: %d checks failed\n", failures);
        return 1;
    }
    printf("test_relay_driver: ok\n");
    return 0;
}
