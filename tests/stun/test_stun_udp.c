/*
 * The batched UDP module's GSO and GRO paths on loopback: runs of equal answers to one client
 * leave as one UDP_SEGMENT send yet arrive as separate, intact datagrams in order; a kernel that
 * refuses GSO (forced here with SO_NO_CHECK, which makes UDP_SEGMENT fail with EINVAL) makes the
 * batch fall back to one datagram per slot without losing any; a UDP_GRO receiver gets the train
 * back with its segment size and every datagram can be cut out of it. Also: datagrams that live
 * outside a batch sent from their own source addresses (PKTINFO) and reported with their
 * destination, and a connected socket.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/tt.h"
#include "tern/udp.h"

#ifndef SO_NO_CHECK
#define SO_NO_CHECK 11
#endif

static int open_lo(tern_udp_sock *s, int flags, tern_addr *bound)
{
    tern_addr a;
    tern_addr_parse(&a, "127.0.0.1:0");
    if (tern_udp_sock_open(s, &a, flags, 0) != TERN_OK) return -1;
    *bound = s->local;
    return s->fd;
}

static void fill(tern_udp_batch *b, size_t i, size_t len, const tern_addr *to, uint8_t tag)
{
    memset(tern_udp_slot(b, i), tag, len);
    tern_udp_slot(b, i)[0] = (uint8_t)i;
    b->len[i] = len;
    b->addr[i] = *to;
}

/* Receives until want datagrams were seen (cutting GRO trains); checks each against the sent
 * slot it names in its first byte. Returns how many arrived. */
static size_t collect(tern_udp_sock *s, tern_udp_batch *rx, const tern_udp_batch *tx,
                      const size_t *order, size_t want, size_t *trains)
{
    size_t seen = 0;
    for (int tries = 0; tries < 100 && seen < want; tries++) {
        int n = tern_udp_recv(s, rx, 0);
        if (n <= 0) {
            usleep(1000);
            continue;
        }
        for (int i = 0; i < n; i++) {
            size_t len = rx->len[i], seg = rx->seg[i] ? rx->seg[i] : len;
            if (rx->seg[i] && trains) (*trains)++;
            for (size_t off = 0; off < len; off += seg) {
                size_t l = len - off < seg ? len - off : seg;
                const uint8_t *p = tern_udp_slot(rx, (size_t)i) + off;
                TT_REQUIRE(seen < want);
                size_t k = order[seen++];
                TT_CHECK_MSG(p[0] == k && l == tx->len[k] &&
                                 memcmp(p, tern_udp_slot(tx, k), l) == 0,
                             "datagram %zu: got slot %u len %zu", seen - 1, p[0], l);
            }
        }
    }
    return seen;
}

static void test_gso_runs(void)
{
    tern_addr sa, ba, ca;
    tern_udp_sock s, b, c;
    TT_REQUIRE(open_lo(&s, TERN_UDP_GSO, &sa) >= 0 && open_lo(&b, 0, &ba) >= 0 &&
               open_lo(&c, 0, &ca) >= 0);
    tern_udp_batch tx, rx;
    TT_REQUIRE(tern_udp_batch_init(&tx, 16, 256) == TERN_OK);
    TT_REQUIRE(tern_udp_batch_init(&rx, 16, 2048) == TERN_OK);
    /* 0-5: a run to b; 6: other length; 7-8: to c; 9: to b again */
    for (size_t i = 0; i < 6; i++) fill(&tx, i, 32, &ba, 0xa0);
    fill(&tx, 6, 40, &ba, 0xb0);
    fill(&tx, 7, 32, &ca, 0xc0);
    fill(&tx, 8, 32, &ca, 0xc0);
    fill(&tx, 9, 32, &ba, 0xd0);
    TT_CHECK_EQ_INT(tern_udp_send_batch(&s, &tx, 10), 10);
    TT_CHECK_EQ_U64(s.st.tx_errors, 0);
    TT_CHECK_EQ_U64(s.st.tx_datagrams, 10);
    if (s.gso) {
        TT_CHECK_EQ_U64(s.st.tx_gso_msgs, 2); /* 0-5 and 7-8 */
        TT_CHECK_EQ_U64(s.st.gso_fallbacks, 0);
    }
    static const size_t to_b[] = {0, 1, 2, 3, 4, 5, 6, 9}, to_c[] = {7, 8};
    TT_CHECK_EQ_INT(collect(&b, &rx, &tx, to_b, 8, NULL), 8);
    TT_CHECK_EQ_INT(collect(&c, &rx, &tx, to_c, 2, NULL), 2);
    tern_udp_batch_free(&tx);
    tern_udp_batch_free(&rx);
    tern_udp_sock_close(&s);
    tern_udp_sock_close(&b);
    tern_udp_sock_close(&c);
}

static void test_gso_fallback(void)
{
    tern_addr sa, ba;
    tern_udp_sock s, b;
    TT_REQUIRE(open_lo(&s, TERN_UDP_GSO, &sa) >= 0 && open_lo(&b, 0, &ba) >= 0);
    int one = 1;
    if (!s.gso || setsockopt(s.fd, SOL_SOCKET, SO_NO_CHECK, &one, sizeof(one)) != 0) {
        printf("  (no UDP GSO or SO_NO_CHECK here: fallback not exercised)\n");
        tern_udp_sock_close(&s);
        tern_udp_sock_close(&b);
        return;
    }
    tern_udp_batch tx, rx;
    TT_REQUIRE(tern_udp_batch_init(&tx, 8, 64) == TERN_OK);
    TT_REQUIRE(tern_udp_batch_init(&rx, 8, 2048) == TERN_OK);
    fill(&tx, 0, 20, &ba, 0x11); /* alone: sent normally before the refused run */
    fill(&tx, 1, 24, &ba, 0x22);
    for (size_t i = 2; i < 6; i++) fill(&tx, i, 24, &ba, 0x22);
    TT_CHECK_EQ_INT(tern_udp_send_batch(&s, &tx, 6), 6);
    TT_CHECK_EQ_U64(s.st.tx_errors, 0);
    TT_CHECK_EQ_INT(s.gso, 0);
    TT_CHECK_EQ_U64(s.st.gso_fallbacks, 1);
    TT_CHECK_EQ_U64(s.st.tx_gso_msgs, 0);
    static const size_t order[] = {0, 1, 2, 3, 4, 5};
    TT_CHECK_EQ_INT(collect(&b, &rx, &tx, order, 6, NULL), 6);
    /* later batches go out one by one without trying again */
    TT_CHECK_EQ_INT(tern_udp_send_batch(&s, &tx, 6), 6);
    TT_CHECK_EQ_U64(s.st.gso_fallbacks, 1);
    TT_CHECK_EQ_INT(collect(&b, &rx, &tx, order, 6, NULL), 6);
    tern_udp_batch_free(&tx);
    tern_udp_batch_free(&rx);
    tern_udp_sock_close(&s);
    tern_udp_sock_close(&b);
}

static void test_gro_receive(void)
{
    tern_addr sa, ba;
    tern_udp_sock s, b;
    TT_REQUIRE(open_lo(&s, TERN_UDP_GSO, &sa) >= 0 && open_lo(&b, TERN_UDP_GRO, &ba) >= 0);
    tern_udp_batch tx, rx;
    TT_REQUIRE(tern_udp_batch_init(&tx, 16, 64) == TERN_OK);
    TT_REQUIRE(tern_udp_batch_init(&rx, 4, 65535) == TERN_OK);
    for (size_t i = 0; i < 12; i++) fill(&tx, i, 36, &ba, 0x5a);
    TT_CHECK_EQ_INT(tern_udp_send_batch(&s, &tx, 12), 12);
    size_t trains = 0;
    static const size_t order[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    TT_CHECK_EQ_INT(collect(&b, &rx, &tx, order, 12, &trains), 12);
    TT_CHECK_EQ_U64(b.st.rx_gro_batches, trains);
    printf("  gso=%d gro=%d trains=%zu\n", s.gso, b.gro, trains);
    tern_udp_batch_free(&tx);
    tern_udp_batch_free(&rx);
    tern_udp_sock_close(&s);
    tern_udp_sock_close(&b);
}

/* Datagrams that live outside a batch (the core's tern_datagram) from a PKTINFO socket bound to
 * the wildcard: each leaves from its own local address, and a PKTINFO receiver reports the
 * address each was sent to. Different sources never share a GSO run. */
static void test_dgrams_pktinfo(void)
{
    tern_udp_sock s, r;
    tern_addr any;
    tern_addr_parse(&any, "0.0.0.0:0");
    TT_REQUIRE(tern_udp_sock_open(&s, &any, TERN_UDP_PKTINFO | TERN_UDP_GSO, 0) == TERN_OK);
    TT_REQUIRE(tern_udp_sock_open(&r, &any, TERN_UDP_PKTINFO, 0) == TERN_OK);
    TT_REQUIRE(s.pktinfo && r.pktinfo);
    uint8_t buf[4][32];
    tern_datagram dg[4];
    for (int i = 0; i < 4; i++) {
        memset(buf[i], 0x30 + i, sizeof(buf[i]));
        tern_addr_ipv4(&dg[i].local, 127, 0, 0, (uint8_t)(5 + (i >= 2)), s.local.port);
        tern_addr_ipv4(&dg[i].remote, 127, 0, 0, (uint8_t)(20 + i % 2), r.local.port);
        dg[i].data = buf[i];
        dg[i].len = sizeof(buf[i]);
    }
    dg[1].remote = dg[0].remote; /* 0-1 one run; 2-3 from another source */
    dg[3].remote = dg[2].remote;
    tern_udp_batch msgs, rx;
    TT_REQUIRE(tern_udp_batch_init(&msgs, 2, 0) == TERN_OK); /* two messages per sendmmsg */
    TT_REQUIRE(tern_udp_batch_init(&rx, 8, 2048) == TERN_OK);
    TT_CHECK_EQ_INT(tern_udp_send_dgrams(&s, &msgs, dg, 4), 4);
    TT_CHECK_EQ_U64(s.st.tx_datagrams, 4);
    size_t got = 0;
    for (int tries = 0; tries < 100 && got < 4; tries++) {
        int n = tern_udp_recv(&r, &rx, 0);
        if (n <= 0) {
            usleep(1000);
            continue;
        }
        for (int i = 0; i < n; i++, got++) {
            int k = tern_udp_slot(&rx, (size_t)i)[0] - 0x30;
            TT_REQUIRE(k >= 0 && k < 4 && rx.len[i] == 32);
            TT_CHECK(rx.addr[i].ip[3] == dg[k].local.ip[3] && rx.addr[i].port == s.local.port);
            TT_CHECK(rx.dst[i].ip[3] == dg[k].remote.ip[3] && rx.dst[i].port == r.local.port);
        }
    }
    TT_CHECK_EQ_INT(got, 4);
    tern_udp_batch_free(&msgs);
    tern_udp_batch_free(&rx);
    tern_udp_sock_close(&s);
    tern_udp_sock_close(&r);
}

/* A connected socket: slots whose destination has family TERN_AF_NONE go to the peer it is
 * connected to, and it receives from that peer only. */
static void test_connected(void)
{
    tern_addr sa, ba, ca;
    tern_udp_sock s, b, c;
    TT_REQUIRE(open_lo(&s, TERN_UDP_GSO, &sa) >= 0 && open_lo(&b, 0, &ba) >= 0 &&
               open_lo(&c, 0, &ca) >= 0);
    TT_REQUIRE(tern_udp_sock_connect(&s, &ba) == TERN_OK);
    TT_CHECK(s.connected);
    tern_udp_batch tx, rx;
    TT_REQUIRE(tern_udp_batch_init(&tx, 8, 64) == TERN_OK);
    TT_REQUIRE(tern_udp_batch_init(&rx, 8, 2048) == TERN_OK);
    tern_addr none;
    memset(&none, 0, sizeof(none));
    for (size_t i = 0; i < 4; i++) fill(&tx, i, 24, &none, 0x70);
    TT_CHECK_EQ_INT(tern_udp_send_batch(&s, &tx, 4), 4);
    static const size_t order[] = {0, 1, 2, 3};
    TT_CHECK_EQ_INT(collect(&b, &rx, &tx, order, 4, NULL), 4);
    /* a stranger's datagram never reaches the connected socket */
    fill(&tx, 0, 24, &sa, 0x71);
    TT_CHECK_EQ_INT(tern_udp_send_batch(&c, &tx, 1), 1);
    usleep(2000);
    TT_CHECK_EQ_INT(tern_udp_recv(&s, &rx, 0), 0);
    tern_udp_batch_free(&tx);
    tern_udp_batch_free(&rx);
    tern_udp_sock_close(&s);
    tern_udp_sock_close(&b);
    tern_udp_sock_close(&c);
}

static const tt_case cases[] = {
    TT_CASE(test_gso_runs),
    TT_CASE(test_gso_fallback),
    TT_CASE(test_gro_receive),
    TT_CASE(test_dgrams_pktinfo),
    TT_CASE(test_connected),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
