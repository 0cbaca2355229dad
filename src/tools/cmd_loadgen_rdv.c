/*
 * `tern loadgen rdv ADDR:PORT --server-key HEX`: rendezvous load on a real ternd over real UDP.
 *
 * N peers, each a tern client endpoint with its own long-term key (a peer ID is the hash of an
 * endpoint's static key, so N identities need N endpoints; a tern_driver holds one endpoint and
 * three descriptors, and N drivers would need 3N descriptors, so this command runs its own loop
 * over the core endpoints instead). The peers share S UDP sockets bound to 0.0.0.0 on S ports;
 * peer i leaves from socket i mod S with the source address 127.2.x.y number i / S (IP_PKTINFO
 * on send), and a datagram that arrives is handed to the endpoint of the peer whose address it
 * was sent to (IP_PKTINFO on receive): loopback accepts every 127/8 address. With --sources K,
 * the peers come from K addresses (ternd's handshake rate limit is per source IP: 100/s, bucket
 * 200, so the default K keeps 100 peers or fewer on each address), and at most --connect-window
 * handshakes are in flight (below ternd's 256 half-open handshakes, past which it asks every
 * client for a retry round trip).
 *
 * Phase 1 (register): every peer connects, opens a reliable ordered flow and sends REGISTER with
 * one LOCAL candidate (its own address); REGISTERED must carry a PUBLIC candidate equal to that
 * address. Timed from the first Initial to the last REGISTERED.
 * Phase 2 (introduce): for --duration seconds, W INTRODUCE requests are kept in flight, each from
 * a random registered peer with nothing in flight to a random other registered peer. A PEER_INFO
 * counts when it names the target, carries its key, its LOCAL candidate and a nonce; the target's
 * INTRODUCED must carry a key, the peer ID that is its hash, and a nonce. Latency is from queuing
 * INTRODUCE to handling PEER_INFO. PEER_INFOs with a RELAY candidate and a CHANNEL (a relay
 * session ternd opened for the pair) are counted apart (with_relay).
 * With --server-pid, ternd's CPU time (/proc/PID/stat) and memory (VmRSS, VmHWM in
 * /proc/PID/status) are read before the first peer, when all are registered and at the end.
 *
 * The event loop: one epoll over the S sockets, waiting (epoll_pwait2, nanoseconds) until input
 * or the earliest of the N endpoints' deadlines (an indexed min-heap). Each iteration reads at
 * most 64 datagrams per socket per recvmmsg (up to 4 calls per socket) and, after each of those
 * batches, refills the handshake and introduction windows and drains every endpoint it touched
 * into per-socket sendmmsg batches (so requests leave while the rest of the input waits: the
 * generator and ternd then work at the same time instead of taking turns); then it runs the
 * endpoints whose deadline passed and does the same. At the end every connection is closed.
 *
 * Relay phase (--relay S): K disjoint pairs of registered peers are introduced once (ternd opens
 * a relay session per pair; PEER_INFO and INTRODUCED carry each side its channel); then, for S
 * seconds, the first side of each pair sends W relay datagrams (0x81 | its channel | inner, inner
 * = 0x40, the pair number, filler) to the server from its registered address, and each side
 * answers every relay datagram it receives at once, from its own address with the channel it
 * received (which must be its own: the relay rewrote it) and the same bytes; relay datagrams are
 * never handed to the endpoints. A pair that received nothing for 200 ms gets W new datagrams.
 * Answers go out in the same per-socket sendmmsg batches as the endpoints' packets. Lost =
 * datagrams sent minus received after a 300 ms drain without answers.
 */
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tern/relay.h"
#include "tern/rendezvous.h"
#include "tern/udp.h"
#include "tools/tools.h"

#define RX_BATCH 64
#define TX_BATCH 64
#define MAX_SOCKS 1024
#define NO_HEAP UINT32_MAX
#define INTRO_LOST_NS (5ull * TERN_NS_PER_S)
#define CTRL_LEN CMSG_SPACE(sizeof(struct in_pktinfo))
#define NO_PAIR UINT32_MAX
#define RELAY_SILENT_NS (200ull * TERN_NS_PER_MS) /* a pair silent this long is refilled */
#define RELAY_DRAIN_NS (300ull * TERN_NS_PER_MS)  /* after the run: what is in flight lands */
#define RELAY_SETUP_NS (5ull * TERN_NS_PER_S)     /* the pairs' introductions */

enum { P_IDLE, P_CONNECTING, P_REGISTERING, P_REGISTERED, P_FAILED };

typedef struct lgr lgr;

typedef struct rpeer {
    lgr *g;
    tern_endpoint *ep;
    tern_conn *conn;
    tern_addr local;
    uint8_t pub[TERN_KEY_LEN];
    uint8_t id[TERN_PEER_ID_LEN];
    uint64_t flow;
    uint64_t deadline;
    uint64_t sent_ns;   /* INTRODUCE in flight since */
    uint32_t heap_idx;
    uint32_t target;    /* the peer asked for */
    uint32_t pair;      /* relay phase: the pair this peer is a side of, or NO_PAIR */
    uint8_t state, dirty, busy;
    uint8_t has_ch;     /* relay phase: ch is this peer's own relay channel */
    uint8_t ch[TERN_RELAY_CHANNEL_LEN];
} rpeer;

/* Relay phase: a peers a and b that were introduced to each other. */
typedef struct rpair {
    uint32_t a, b;
    uint64_t last_rx;   /* when either side last received a relay datagram */
} rpair;

typedef struct rsock {
    int fd;
    uint16_t port;
    /* receive */
    struct mmsghdr rmsg[RX_BATCH];
    struct iovec riov[RX_BATCH];
    struct sockaddr_in rfrom[RX_BATCH];
    uint8_t rctl[RX_BATCH][CTRL_LEN];
    uint8_t rbuf[RX_BATCH][TERN_MAX_DATAGRAM + 1];
    /* send */
    size_t tn, tused;
    struct mmsghdr tmsg[TX_BATCH];
    struct iovec tiov[TX_BATCH];
    struct sockaddr_in tto[TX_BATCH];
    uint8_t tctl[TX_BATCH][CTRL_LEN];
    uint8_t tbuf[TX_BATCH * TERN_MAX_DATAGRAM];
} rsock;

struct lgr {
    tern_addr server;
    uint8_t server_pub[TERN_KEY_LEN];
    uint32_t n, n_socks, n_sources, window, cwindow;
    rpeer *p;
    rsock *s;
    int epfd;
    /* deadlines */
    uint32_t *heap, heap_n;
    uint32_t *dirty, dirty_n;
    /* registration */
    uint32_t next_connect, connecting, registered, failed, closed;
    uint32_t *reg; /* indices of registered peers */
    /* introductions */
    int intro_on;
    uint32_t inflight;
    uint64_t intro_sent, intro_ok, intro_bad, intro_err, intro_lost, introduced, introduced_bad;
    uint64_t other_err, late;
    uint64_t with_relay; /* PEER_INFOs that carried a RELAY candidate and a CHANNEL */
    uint32_t *lat_us;
    size_t lat_n, lat_cap;
    uint64_t rng;
    /* sockets */
    uint64_t rx, tx, tx_dropped, rx_unknown;
    int no_pwait2;
    int closing; /* the run is over: closes are ours */
    /* relay phase */
    rpair *pairs;
    uint32_t n_pairs, relay_window, relay_size;
    int relay_answer;  /* answer each relay datagram received (off while draining) */
    uint64_t relay_tx, relay_tx_dropped, relay_rx, relay_rx_bytes, relay_misrouted;
    uint64_t relay_stray, relay_refills;
};

static void help(FILE *f)
{
    fprintf(f,
            "usage: tern loadgen rdv ADDR:PORT --server-key HEX [--peers N] [--duration S]\n"
            "                        [--window W] [--sources K] [--connect-window C]\n"
            "                        [--server-pid PID] [--relay S [--relay-pairs K]\n"
            "                        [--relay-size BYTES] [--relay-window W]]\n"
            "Rendezvous load on a real ternd over UDP: N peers (10000), each with its own key,\n"
            "connect and REGISTER (C handshakes in flight, 128), then W INTRODUCE requests (64)\n"
            "are kept in flight between random registered peers for S seconds (10).\n"
            "  --sources K     source addresses 127.2.x.y the peers come from (default: one per\n"
            "                  100 peers, inside ternd's per-IP handshake burst)\n"
            "  --server-pid P  read ternd's CPU time and memory from /proc/P at each phase\n"
            "Relay forwarding (ternd's relay, docs/rendezvous.md section 8):\n"
            "  --relay S       after registering (and the introductions, only when --duration\n"
            "                  is given too), introduce K disjoint pairs once and, for S seconds,\n"
            "                  run a closed loop through the relay: the first side of each pair\n"
            "                  sends W relay datagrams (0x81, its channel, an inner packet), each\n"
            "                  side answers every one it receives at once with the channel it\n"
            "                  received, and a pair that received nothing for 200 ms gets W new\n"
            "                  ones; needs N >= 2K\n"
            "  --relay-pairs K pairs (100)\n"
            "  --relay-size B  whole relay datagram, 9-byte header included, 14..1500 (1200)\n"
            "  --relay-window W datagrams each pair starts with (8)\n"
            "Prints a 'register' line, an 'introduce' line (unless --relay is given without\n"
            "--duration), with --relay a 'relay' line (datagrams received per second, payload\n"
            "Gbit/s, lost, misrouted; with --server-pid ternd's CPU seconds in the phase and\n"
            "datagrams per ternd CPU-second) and, with --server-pid, a 'server' line. Exits 0\n"
            "when every peer registered and every answer was right (with --relay: every pair\n"
            "got its channels, datagrams came back, none misrouted), 1 otherwise.\n");
}

/* ---------------------------------------------------------------- deadline heap */

static int heap_less(const lgr *g, uint32_t a, uint32_t b)
{
    return g->p[g->heap[a]].deadline < g->p[g->heap[b]].deadline;
}

static void heap_swap(lgr *g, uint32_t a, uint32_t b)
{
    uint32_t t = g->heap[a];
    g->heap[a] = g->heap[b];
    g->heap[b] = t;
    g->p[g->heap[a]].heap_idx = a;
    g->p[g->heap[b]].heap_idx = b;
}

static void heap_fix(lgr *g, uint32_t i)
{
    while (i > 0 && heap_less(g, i, (i - 1) / 2)) {
        heap_swap(g, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < g->heap_n && heap_less(g, l, m)) m = l;
        if (r < g->heap_n && heap_less(g, r, m)) m = r;
        if (m == i) break;
        heap_swap(g, i, m);
        i = m;
    }
}

/* Files peer pi under its endpoint's next deadline (out of the heap when it has none). */
static void heap_set(lgr *g, uint32_t pi)
{
    rpeer *p = &g->p[pi];
    p->deadline = p->ep ? tern_endpoint_next_deadline(p->ep) : TERN_TIME_NEVER;
    if (p->deadline == TERN_TIME_NEVER) {
        if (p->heap_idx == NO_HEAP) return;
        uint32_t i = p->heap_idx;
        heap_swap(g, i, g->heap_n - 1);
        g->heap_n--;
        p->heap_idx = NO_HEAP;
        if (i < g->heap_n) heap_fix(g, i);
        return;
    }
    if (p->heap_idx == NO_HEAP) {
        p->heap_idx = g->heap_n;
        g->heap[g->heap_n++] = pi;
    }
    heap_fix(g, p->heap_idx);
}

static void touch(rpeer *p)
{
    if (p->dirty) return;
    p->dirty = 1;
    p->g->dirty[p->g->dirty_n++] = (uint32_t)(p - p->g->p);
}

/* ---------------------------------------------------------------- sockets */

/* Peer i's address: 127.2.x.y (source number i / S, y never 0) and socket i mod S's port. */
static void peer_addr(const lgr *g, uint32_t i, tern_addr *a)
{
    uint32_t k = i / g->n_socks;
    tern_addr_ipv4(a, 127, (uint8_t)(2 + k / 62500), (uint8_t)(k / 250 % 250),
                   (uint8_t)(k % 250 + 1), g->s[i % g->n_socks].port);
}

/* The peer a datagram to ip on socket si is for, or UINT32_MAX. */
static uint32_t peer_of(const lgr *g, uint32_t si, const uint8_t ip[4])
{
    if (ip[0] != 127 || ip[1] < 2 || ip[3] == 0 || ip[2] >= 250 || ip[3] > 250) return UINT32_MAX;
    uint64_t k = (uint64_t)(ip[1] - 2) * 62500 + (uint64_t)ip[2] * 250 + (ip[3] - 1u);
    uint64_t i = k * g->n_socks + si;
    return i < g->n ? (uint32_t)i : UINT32_MAX;
}

static int sock_open(rsock *s)
{
    tern_addr any;
    memset(&any, 0, sizeof(any));
    any.family = TERN_AF_INET;
    if (tern_udp_open(&any, 0, &s->fd) != TERN_OK) return -1;
    int on = 1, buf = 4 << 20;
    setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    if (setsockopt(s->fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) != 0) return -1;
    tern_addr la;
    if (tern_udp_local_addr(s->fd, &la) != TERN_OK) return -1;
    s->port = la.port;
    for (size_t i = 0; i < RX_BATCH; i++) {
        s->riov[i].iov_base = s->rbuf[i];
        s->riov[i].iov_len = sizeof(s->rbuf[i]);
    }
    return 0;
}

static int is_relay_msg(const rsock *s, size_t i)
{
    return s->tiov[i].iov_len > 0 && *(const uint8_t *)s->tiov[i].iov_base == TERN_RELAY_TYPE;
}

static void sock_flush(lgr *g, rsock *s)
{
    size_t done = 0;
    while (done < s->tn) {
        int r = sendmmsg(s->fd, s->tmsg + done, (unsigned)(s->tn - done), 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            g->tx_dropped += s->tn - done; /* EAGAIN or worse: tern retransmits what matters */
            for (size_t i = done; i < s->tn; i++) g->relay_tx_dropped += is_relay_msg(s, i);
            break;
        }
        g->tx += (uint64_t)r;
        for (size_t i = done; i < done + (size_t)r; i++) g->relay_tx += is_relay_msg(s, i);
        done += (size_t)r;
    }
    s->tn = 0;
    s->tused = 0;
}

/* Queues tbuf[..] bytes at data (already in s->tbuf) from local's IP to remote. */
static void sock_push(rsock *s, const tern_addr *local, const tern_addr *remote, uint8_t *data,
                      size_t len)
{
    size_t m = s->tn++;
    struct sockaddr_in *to = &s->tto[m];
    memset(to, 0, sizeof(*to));
    to->sin_family = AF_INET;
    to->sin_port = htons(remote->port);
    memcpy(&to->sin_addr, remote->ip, 4);
    s->tiov[m].iov_base = data;
    s->tiov[m].iov_len = len;
    memset(s->tctl[m], 0, CTRL_LEN);
    struct msghdr *h = &s->tmsg[m].msg_hdr;
    memset(h, 0, sizeof(*h));
    h->msg_name = to;
    h->msg_namelen = sizeof(*to);
    h->msg_iov = &s->tiov[m];
    h->msg_iovlen = 1;
    h->msg_control = s->tctl[m];
    h->msg_controllen = CTRL_LEN;
    struct cmsghdr *c = CMSG_FIRSTHDR(h);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo pi4;
    memset(&pi4, 0, sizeof(pi4));
    memcpy(&pi4.ipi_spec_dst, local->ip, 4); /* leave from the peer's address */
    memcpy(CMSG_DATA(c), &pi4, sizeof(pi4));
    size_t end = (size_t)(data + len - s->tbuf);
    if (end > s->tused) s->tused = end;
}

/* Drains peer pi's endpoint into its socket's send batch and re-files its deadline. */
static void peer_send(lgr *g, uint32_t pi, uint64_t now)
{
    rpeer *p = &g->p[pi];
    p->dirty = 0;
    rsock *s = &g->s[pi % g->n_socks];
    for (;;) {
        if (s->tn == TX_BATCH || sizeof(s->tbuf) - s->tused < TERN_MAX_DATAGRAM) sock_flush(g, s);
        tern_datagram dg[TX_BATCH];
        int k = tern_endpoint_send(p->ep, now, dg, TX_BATCH - s->tn, s->tbuf + s->tused,
                                   sizeof(s->tbuf) - s->tused);
        if (k <= 0) break;
        for (int j = 0; j < k; j++)
            sock_push(s, &dg[j].local, &dg[j].remote, dg[j].data, dg[j].len);
    }
    heap_set(g, pi);
}

/* Queues one relay datagram from peer pi to the server: 0x81 | ch | inner, where inner is
 * copied from src (len bytes in all, src's header overwritten with pi's channel). */
static void relay_queue(lgr *g, uint32_t pi, const uint8_t *src, size_t len)
{
    rpeer *p = &g->p[pi];
    rsock *s = &g->s[pi % g->n_socks];
    if (s->tn == TX_BATCH || sizeof(s->tbuf) - s->tused < TERN_MAX_DATAGRAM) sock_flush(g, s);
    uint8_t *d = s->tbuf + s->tused;
    memcpy(d, src, len);
    d[0] = TERN_RELAY_TYPE;
    memcpy(d + 1, p->ch, TERN_RELAY_CHANNEL_LEN);
    sock_push(s, &p->local, &g->server, d, len);
}

/* W new datagrams from pair k's first side: inner = 0x40, the pair number, then filler. */
static void relay_fill(lgr *g, uint32_t k)
{
    uint8_t b[TERN_MAX_DATAGRAM];
    memset(b, 0xa5, g->relay_size);
    b[TERN_RELAY_HDR_LEN] = TERN_RELAY_INNER_FIXED;
    memcpy(b + TERN_RELAY_HDR_LEN + 1, &k, sizeof(k));
    for (uint32_t i = 0; i < g->relay_window; i++) relay_queue(g, g->pairs[k].a, b, g->relay_size);
}

/* A relay datagram for peer pi (never handed to its endpoint): it must come from the server,
 * carry pi's own channel and the number of pi's pair; counted, and answered when the run is on. */
static void relay_recv(lgr *g, uint32_t pi, const tern_addr *from, const uint8_t *d, size_t len,
                       uint64_t now)
{
    if (pi == UINT32_MAX || g->p[pi].pair == NO_PAIR) {
        g->relay_stray++;
        return;
    }
    rpeer *p = &g->p[pi];
    uint32_t k;
    if (len < TERN_RELAY_HDR_LEN + 1 + sizeof(k)) {
        g->relay_misrouted++;
        return;
    }
    memcpy(&k, d + TERN_RELAY_HDR_LEN + 1, sizeof(k));
    if (!tern_addr_equal(from, &g->server) || !p->has_ch ||
        memcmp(d + 1, p->ch, TERN_RELAY_CHANNEL_LEN) != 0 || k != p->pair ||
        len != g->relay_size) {
        g->relay_misrouted++;
        return;
    }
    g->relay_rx++;
    g->relay_rx_bytes += len - TERN_RELAY_HDR_LEN;
    g->pairs[k].last_rx = now;
    if (g->relay_answer) relay_queue(g, pi, d, len);
}

/* Reads what waits on socket si (a bounded number of batches) into the endpoints. */
static void pump(lgr *g);

static void sock_read(lgr *g, uint32_t si, uint64_t now)
{
    rsock *s = &g->s[si];
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < RX_BATCH; i++) {
            struct msghdr *h = &s->rmsg[i].msg_hdr;
            memset(h, 0, sizeof(*h));
            h->msg_name = &s->rfrom[i];
            h->msg_namelen = sizeof(s->rfrom[i]);
            h->msg_iov = &s->riov[i];
            h->msg_iovlen = 1;
            h->msg_control = s->rctl[i];
            h->msg_controllen = CTRL_LEN;
        }
        int n = recvmmsg(s->fd, s->rmsg, RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return;
        for (int i = 0; i < n; i++) {
            struct msghdr *h = &s->rmsg[i].msg_hdr;
            size_t len = s->rmsg[i].msg_len;
            uint8_t dst[4] = {0, 0, 0, 0};
            for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
                if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                    struct in_pktinfo pi4;
                    memcpy(&pi4, CMSG_DATA(c), sizeof(pi4));
                    memcpy(dst, &pi4.ipi_addr, 4);
                }
            uint32_t pi = peer_of(g, si, dst);
            tern_addr from;
            if (len > 0 && s->rbuf[i][0] == TERN_RELAY_TYPE && len <= TERN_MAX_DATAGRAM &&
                tern_addr_from_sockaddr(&from, (struct sockaddr *)&s->rfrom[i],
                                        h->msg_namelen) == TERN_OK) {
                relay_recv(g, pi, &from, s->rbuf[i], len, now);
                continue;
            }
            if (pi == UINT32_MAX || g->p[pi].ep == NULL || len > TERN_MAX_DATAGRAM ||
                tern_addr_from_sockaddr(&from, (struct sockaddr *)&s->rfrom[i],
                                        h->msg_namelen) != TERN_OK) {
                g->rx_unknown++;
                continue;
            }
            g->rx++;
            rpeer *p = &g->p[pi];
            (void)tern_endpoint_recv(p->ep, now, &p->local, &from, s->rbuf[i], len);
            touch(p);
        }
        pump(g);
        if (n < RX_BATCH) return;
    }
}

/* ---------------------------------------------------------------- rendezvous */

static uint64_t rnd(lgr *g)
{
    g->rng ^= g->rng << 13; /* xorshift64 */
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return g->rng;
}

static void lat_add(lgr *g, uint64_t ns)
{
    if (g->lat_n == g->lat_cap) {
        size_t cap = g->lat_cap ? 2 * g->lat_cap : 65536;
        uint32_t *n = realloc(g->lat_us, cap * sizeof(*n));
        if (n == NULL) return;
        g->lat_us = n;
        g->lat_cap = cap;
    }
    uint64_t us = ns / 1000;
    g->lat_us[g->lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void intro_done(lgr *g, rpeer *p)
{
    p->busy = 0;
    g->inflight--;
}

static void on_established(tern_conn *c, void *user)
{
    rpeer *p = user;
    uint64_t now = tools_now_ns();
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    m.n_cands = 1;
    m.cands[0].kind = TERN_RDV_CAND_LOCAL;
    m.cands[0].addr = p->local;
    if (tern_flow_open(c, &fc, &p->flow) != TERN_OK || tern_rdv_send(c, p->flow, now, &m) != 0) {
        p->g->other_err++;
        tern_conn_close(c, now, 1, "cannot register", 15);
        return;
    }
    p->state = P_REGISTERING;
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *user)
{
    rpeer *p = user;
    lgr *g = p->g;
    (void)c, (void)code;
    if (g->closing) {
        p->conn = NULL;
        return;
    }
    if (p->state == P_CONNECTING || p->state == P_REGISTERING) {
        g->connecting--;
        g->failed++;
        if (g->failed <= 5) {
            char why[128];
            tools_copy_reason(why, sizeof(why), reason, len);
            fprintf(stderr, "tern loadgen: peer %u: %s%s%s\n", (unsigned)(p - g->p),
                    tern_strerror(err), len ? ": " : "", why);
        }
    } else if (p->state == P_REGISTERED) {
        g->closed++;
    }
    if (p->busy) {
        g->intro_err++;
        intro_done(g, p);
    }
    p->state = P_FAILED;
    p->conn = NULL;
}

static int has_local(const tern_rdv_msg *m, const tern_addr *a)
{
    for (size_t i = 0; i < m->n_cands; i++)
        if (m->cands[i].kind == TERN_RDV_CAND_LOCAL && tern_addr_equal(&m->cands[i].addr, a))
            return 1;
    return 0;
}

static void on_message(tern_conn *c, uint64_t flow, const uint8_t *data, size_t len, void *user)
{
    rpeer *p = user;
    lgr *g = p->g;
    (void)c, (void)flow;
    tern_rdv_msg m;
    if (tern_rdv_decode(data, len, &m) != TERN_OK) {
        g->other_err++;
        return;
    }
    uint64_t now = tools_now_ns();
    switch (m.kind) {
    case TERN_RDV_REGISTERED: {
        int ok = 0;
        for (size_t i = 0; i < m.n_cands; i++)
            if (m.cands[i].kind == TERN_RDV_CAND_PUBLIC &&
                tern_addr_equal(&m.cands[i].addr, &p->local))
                ok = 1;
        if (p->state != P_REGISTERING || !ok) {
            g->other_err++;
            return;
        }
        p->state = P_REGISTERED;
        g->connecting--;
        g->reg[g->registered++] = (uint32_t)(p - g->p);
        break;
    }
    case TERN_RDV_PEER_INFO: {
        if (!p->busy) {
            g->late++;
            return;
        }
        const rpeer *t = &g->p[p->target];
        int ok = m.has_peer_id && m.has_pubkey && m.has_nonce &&
                 !memcmp(m.peer_id, t->id, TERN_PEER_ID_LEN) &&
                 !memcmp(m.pubkey, t->pub, TERN_KEY_LEN) && has_local(&m, &t->local);
        if (ok) {
            g->intro_ok++;
            lat_add(g, now - p->sent_ns);
            for (size_t i = 0; i < m.n_cands; i++)
                if (m.cands[i].kind == TERN_RDV_CAND_RELAY && m.has_channel) {
                    g->with_relay++;
                    if (p->pair != NO_PAIR && g->pairs[p->pair].b == p->target) {
                        memcpy(p->ch, m.channel, TERN_RELAY_CHANNEL_LEN);
                        p->has_ch = 1;
                    }
                    break;
                }
        } else {
            g->intro_bad++;
        }
        intro_done(g, p);
        break;
    }
    case TERN_RDV_INTRODUCED: {
        /* the requester is one of ours: its ID and key as we made them */
        int ok = 0;
        if (m.has_peer_id && m.has_pubkey && m.has_nonce) {
            uint8_t id[TERN_PEER_ID_LEN];
            tern_peer_id(m.pubkey, id);
            ok = !memcmp(id, m.peer_id, TERN_PEER_ID_LEN);
        }
        if (ok) g->introduced++;
        else g->introduced_bad++;
        /* the second side of a relay pair, introduced by its first side: its channel */
        if (ok && m.has_channel && p->pair != NO_PAIR &&
            g->pairs[p->pair].b == (uint32_t)(p - g->p) &&
            !memcmp(m.peer_id, g->p[g->pairs[p->pair].a].id, TERN_PEER_ID_LEN)) {
            memcpy(p->ch, m.channel, TERN_RELAY_CHANNEL_LEN);
            p->has_ch = 1;
        }
        break;
    }
    case TERN_RDV_ERROR:
        if (p->busy && m.req_kind == TERN_RDV_INTRODUCE) {
            g->intro_err++;
            intro_done(g, p);
        } else {
            g->other_err++;
        }
        if (g->intro_err + g->other_err <= 5)
            fprintf(stderr, "tern loadgen: ERROR %s for request kind %u\n",
                    tern_rdv_error_name(m.error), m.req_kind);
        break;
    default: g->other_err++; break;
    }
}

/* Starts one introduction from a random idle registered peer to a random other one. */
static int intro_start(lgr *g, uint64_t now)
{
    if (g->registered < 2) return -1;
    for (int tries = 0; tries < 16; tries++) {
        uint32_t a = g->reg[rnd(g) % g->registered];
        uint32_t b = g->reg[rnd(g) % g->registered];
        rpeer *p = &g->p[a];
        if (a == b || p->busy || p->state != P_REGISTERED || g->p[b].state != P_REGISTERED)
            continue;
        tern_rdv_msg m;
        tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
        m.has_peer_id = 1;
        memcpy(m.peer_id, g->p[b].id, TERN_PEER_ID_LEN);
        if (tern_rdv_send(p->conn, p->flow, now, &m) != 0) {
            g->other_err++;
            return -1;
        }
        p->busy = 1;
        p->target = b;
        p->sent_ns = now;
        g->inflight++;
        g->intro_sent++;
        touch(p);
        return 0;
    }
    return -1;
}

/* ---------------------------------------------------------------- the loop */

typedef struct proc_sample {
    int ok;
    uint64_t cpu_ns, rss_kb, hwm_kb;
} proc_sample;

static void proc_read(long pid, proc_sample *o)
{
    memset(o, 0, sizeof(*o));
    if (pid <= 0) return;
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *q = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (q == NULL || sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                            &st) != 2)
        return;
    long hz = sysconf(_SC_CLK_TCK);
    o->cpu_ns = (ut + st) * (TERN_NS_PER_S / (uint64_t)(hz > 0 ? hz : 100));
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f == NULL) return;
    while (fgets(buf, sizeof(buf), f)) {
        unsigned long long v;
        if (sscanf(buf, "VmRSS: %llu", &v) == 1) o->rss_kb = v;
        if (sscanf(buf, "VmHWM: %llu", &v) == 1) o->hwm_kb = v;
    }
    fclose(f);
    o->ok = 1;
}

/* Refills the handshake and introduction windows and sends what every touched endpoint has.
 * Runs after each batch read, so requests leave while the rest of the input is handled. */
static void pump(lgr *g)
{
    uint64_t now = tools_now_ns();
    /* handshakes */
    while (g->next_connect < g->n && g->connecting < g->cwindow) {
        rpeer *p = &g->p[g->next_connect++];
        if (tern_endpoint_connect(p->ep, now, &p->local, &g->server, g->server_pub, &p->conn) !=
            TERN_OK) {
            p->state = P_FAILED;
            g->failed++;
            continue;
        }
        p->state = P_CONNECTING;
        g->connecting++;
        touch(p);
    }
    /* introductions */
    while (g->intro_on && g->inflight < g->window)
        if (intro_start(g, now) != 0) break;
    for (uint32_t i = 0; i < g->dirty_n; i++) peer_send(g, g->dirty[i], now);
    g->dirty_n = 0;
    for (uint32_t si = 0; si < g->n_socks; si++)
        if (g->s[si].tn) sock_flush(g, &g->s[si]);
}

/* Waits for the sockets up to ns nanoseconds (epoll_pwait2 where there is one: the endpoints'
 * pacing and ACK timers are finer than a millisecond). */
static int wait_events(lgr *g, struct epoll_event *ev, int max, uint64_t ns)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
    if (!g->no_pwait2) {
        struct timespec ts = {(time_t)(ns / TERN_NS_PER_S), (long)(ns % TERN_NS_PER_S)};
        int n = epoll_pwait2(g->epfd, ev, max, &ts, NULL);
        if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
        g->no_pwait2 = 1;
    }
#endif
    return epoll_wait(g->epfd, ev, max, (int)((ns + TERN_NS_PER_MS - 1) / TERN_NS_PER_MS));
}

/* One loop iteration; waits at most max_wait_ms for input or a deadline. */
static void iterate(lgr *g, int max_wait_ms)
{
    uint64_t now = tools_now_ns();
    uint64_t wait = (uint64_t)max_wait_ms * TERN_NS_PER_MS;
    if (g->dirty_n) wait = 0;
    if (g->heap_n) {
        uint64_t t = g->p[g->heap[0]].deadline;
        if (t <= now) wait = 0;
        else if (t - now < wait) wait = t - now;
    }
    struct epoll_event ev[MAX_SOCKS];
    int ne = wait_events(g, ev, MAX_SOCKS, wait);
    now = tools_now_ns();
    for (int i = 0; i < ne; i++) sock_read(g, ev[i].data.u32, now);
    while (g->heap_n && g->p[g->heap[0]].deadline <= now) {
        uint32_t pi = g->heap[0];
        rpeer *p = &g->p[pi];
        tern_endpoint_handle_expiry(p->ep, now);
        p->deadline = TERN_TIME_NEVER; /* re-filed after its sends */
        heap_fix(g, 0);
        touch(p);
    }
    pump(g);
}

/* The relay phase (--relay): introduces K disjoint pairs of registered peers, then runs the
 * closed loop for secs seconds and prints the 'relay' line. 0 when every pair got both channels,
 * datagrams came back and none was misrouted. */
static int relay_phase(lgr *g, double secs, long server_pid)
{
    uint32_t k_max = g->registered / 2;
    if (g->n_pairs > k_max) g->n_pairs = k_max;
    uint64_t now = tools_now_ns();
    /* wait for what the introduce phase left in flight, then introduce the pairs */
    while (g->inflight && !tools_interrupted() && tools_now_ns() < now + TERN_NS_PER_S)
        iterate(g, 10);
    now = tools_now_ns();
    for (uint32_t k = 0; k < g->n_pairs; k++) {
        rpair *r = &g->pairs[k];
        r->a = g->reg[2 * k];
        r->b = g->reg[2 * k + 1];
        g->p[r->a].pair = g->p[r->b].pair = k;
        rpeer *p = &g->p[r->a];
        if (p->busy) continue; /* its earlier request was lost: left without channels */
        tern_rdv_msg m;
        tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
        m.has_peer_id = 1;
        memcpy(m.peer_id, g->p[r->b].id, TERN_PEER_ID_LEN);
        if (tern_rdv_send(p->conn, p->flow, now, &m) != 0) {
            g->other_err++;
            continue;
        }
        p->busy = 1;
        p->target = r->b;
        p->sent_ns = now;
        g->inflight++;
        g->intro_sent++;
        touch(p);
    }
    pump(g);
    uint32_t ready = 0;
    uint64_t give_up = tools_now_ns() + RELAY_SETUP_NS;
    while (!tools_interrupted() && tools_now_ns() < give_up) {
        iterate(g, 10);
        ready = 0;
        for (uint32_t k = 0; k < g->n_pairs; k++)
            ready += g->p[g->pairs[k].a].has_ch && g->p[g->pairs[k].b].has_ch;
        if (ready == g->n_pairs && g->inflight == 0) break;
    }
    /* the closed loop, over the pairs whose both sides hold a channel */
    proc_sample s0, s1;
    proc_read(server_pid, &s0);
    uint64_t c0 = tools_cpu_ns(), t0 = tools_now_ns();
    uint64_t end = t0 + (uint64_t)(secs * 1e9), last_scan = t0;
    g->relay_answer = 1;
    for (uint32_t k = 0; k < g->n_pairs; k++) {
        g->pairs[k].last_rx = t0;
        if (g->p[g->pairs[k].a].has_ch && g->p[g->pairs[k].b].has_ch) relay_fill(g, k);
    }
    pump(g);
    while (!tools_interrupted() && tools_now_ns() < end) {
        iterate(g, 10);
        now = tools_now_ns(); /* after what iterate received: last_rx is never later */
        if (now - last_scan < 20 * TERN_NS_PER_MS) continue;
        last_scan = now;
        for (uint32_t k = 0; k < g->n_pairs; k++) {
            rpair *r = &g->pairs[k];
            if (now - r->last_rx > RELAY_SILENT_NS && g->p[r->a].has_ch && g->p[r->b].has_ch) {
                r->last_rx = now;
                g->relay_refills++;
                relay_fill(g, k);
            }
        }
        pump(g);
    }
    uint64_t t1 = tools_now_ns(), c1 = tools_cpu_ns();
    proc_read(server_pid, &s1);
    uint64_t rx_in_time = g->relay_rx, bytes_in_time = g->relay_rx_bytes;
    /* stop answering; what is in flight lands (counted as received, not in the rate) */
    g->relay_answer = 0;
    while (!tools_interrupted() && tools_now_ns() < t1 + RELAY_DRAIN_NS) iterate(g, 10);
    double el = (double)(t1 - t0) / 1e9;
    double rate = el > 0 ? (double)rx_in_time / el : 0;
    int64_t lost = (int64_t)g->relay_tx - (int64_t)g->relay_rx;
    printf("relay seconds=%.3f pairs=%u ready=%u size=%u window=%u sent=%llu received=%llu "
           "lost=%lld send_dropped=%llu misrouted=%llu stray=%llu refills=%llu rate=%.0f "
           "gbps=%.3f client_cpu=%.0f%%",
           el, (unsigned)g->n_pairs, (unsigned)ready, (unsigned)g->relay_size,
           (unsigned)g->relay_window, (unsigned long long)g->relay_tx,
           (unsigned long long)g->relay_rx, (long long)lost,
           (unsigned long long)g->relay_tx_dropped, (unsigned long long)g->relay_misrouted,
           (unsigned long long)g->relay_stray, (unsigned long long)g->relay_refills, rate,
           el > 0 ? (double)bytes_in_time * 8 / el / 1e9 : 0.0,
           t1 - t0 > TERN_NS_PER_MS ? 100.0 * (double)(c1 - c0) / (double)(t1 - t0) : 0.0);
    if (s0.ok && s1.ok) {
        double cpu = (double)(s1.cpu_ns - s0.cpu_ns) / 1e9;
        printf(" server_cpu=%.0f%% server_cpu_s=%.2f per_server_cpu_s=%.0f", 100.0 * cpu / el,
               cpu, cpu > 0 ? (double)rx_in_time / cpu : 0.0);
    }
    printf("\n");
    fflush(stdout);
    return ready == g->n_pairs && g->relay_rx > 0 && g->relay_misrouted == 0 && g->relay_stray == 0
               ? 0
               : -1;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const lgr *g, double q)
{
    if (g->lat_n == 0) return 0;
    size_t i = (size_t)(q * (double)(g->lat_n - 1) + 0.5);
    return g->lat_us[i];
}

static int parse_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
    uint64_t x;
    if (tools_parse_u64(v, lo, hi, 0, &x) != 0) return -1;
    *out = (uint32_t)x;
    return 0;
}

int cmd_loadgen_rdv(int argc, char **argv)
{
    lgr *g = calloc(1, sizeof(*g));
    if (g == NULL) return 1;
    g->n = 10000;
    g->window = 64;
    g->cwindow = 128;
    double duration = 10, relay_secs = 0;
    int duration_set = 0;
    g->n_pairs = 100;
    g->relay_size = 1200;
    g->relay_window = 8;
    long server_pid = 0;
    const char *host = NULL, *key = NULL;
    int rc = 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            free(g);
            return 0;
        } else if (!strcmp(a, "--server-key") && v) {
            key = v, i++;
        } else if (!strcmp(a, "--peers") && v) {
            if (parse_u32(v, 2, 1000000, &g->n)) goto usage;
            i++;
        } else if (!strcmp(a, "--duration") && v) {
            duration = atof(v), i++;
            duration_set = 1;
        } else if (!strcmp(a, "--relay") && v) {
            relay_secs = atof(v), i++;
            if (!(relay_secs > 0 && relay_secs <= 3600)) goto usage;
        } else if (!strcmp(a, "--relay-pairs") && v) {
            if (parse_u32(v, 1, 500000, &g->n_pairs)) goto usage;
            i++;
        } else if (!strcmp(a, "--relay-size") && v) {
            if (parse_u32(v, TERN_RELAY_HDR_LEN + 1 + 4, TERN_MAX_DATAGRAM, &g->relay_size))
                goto usage;
            i++;
        } else if (!strcmp(a, "--relay-window") && v) {
            if (parse_u32(v, 1, 4096, &g->relay_window)) goto usage;
            i++;
        } else if (!strcmp(a, "--window") && v) {
            if (parse_u32(v, 1, 100000, &g->window)) goto usage;
            i++;
        } else if (!strcmp(a, "--connect-window") && v) {
            if (parse_u32(v, 1, 100000, &g->cwindow)) goto usage;
            i++;
        } else if (!strcmp(a, "--sources") && v) {
            if (parse_u32(v, 1, 1000000, &g->n_sources)) goto usage;
            i++;
        } else if (!strcmp(a, "--server-pid") && v) {
            server_pid = atol(v), i++;
        } else if (a[0] != '-' && host == NULL) {
            host = a;
        } else {
            fprintf(stderr, "tern loadgen rdv: unexpected argument %s\n", a);
            goto usage;
        }
    }
    if (host == NULL || key == NULL || !(duration > 0 && duration <= 3600)) goto usage;
    if (tern_hex_decode(key, g->server_pub, TERN_KEY_LEN) != TERN_OK) {
        fprintf(stderr, "tern loadgen rdv: --server-key needs 64 hex characters\n");
        goto usage;
    }
    rc = 1;
    if (tools_resolve(host, 4433, &g->server) != 0) goto out;
    if (g->server.family != TERN_AF_INET || g->server.ip[0] != 127) {
        fprintf(stderr, "tern loadgen rdv: the server must be on loopback (127.x.y.z): the "
                        "peers' addresses are 127.2.x.y\n");
        goto out;
    }
    if (relay_secs > 0 && g->n < 2 * g->n_pairs) {
        fprintf(stderr, "tern loadgen rdv: --relay-pairs %u needs --peers %u or more\n",
                (unsigned)g->n_pairs, 2 * (unsigned)g->n_pairs);
        goto out;
    }
    if (g->n_sources == 0) g->n_sources = (g->n + 99) / 100;
    if (g->n_sources > g->n) g->n_sources = g->n;
    g->n_socks = (g->n + g->n_sources - 1) / g->n_sources;
    if (g->n_socks > MAX_SOCKS || g->n_sources > 62500u * 125) {
        fprintf(stderr, "tern loadgen rdv: %u peers per address is too many (--sources)\n",
                g->n_socks);
        goto out;
    }
    g->p = calloc(g->n, sizeof(*g->p));
    g->s = calloc(g->n_socks, sizeof(*g->s));
    g->heap = calloc(g->n, sizeof(*g->heap));
    g->dirty = calloc(g->n, sizeof(*g->dirty));
    g->reg = calloc(g->n, sizeof(*g->reg));
    g->pairs = calloc(g->n_pairs, sizeof(*g->pairs));
    g->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!g->p || !g->s || !g->heap || !g->dirty || !g->reg || !g->pairs || g->epfd < 0) goto oom;
    for (uint32_t si = 0; si < g->n_socks; si++) g->s[si].fd = -1;
    for (uint32_t si = 0; si < g->n_socks; si++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = si};
        if (sock_open(&g->s[si]) != 0 || epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->s[si].fd, &ev)) {
            perror("tern loadgen rdv: socket");
            goto out;
        }
    }
    randombytes_buf(&g->rng, sizeof(g->rng));
    g->rng |= 1;

    /* the peers' keys and endpoints, before anything is timed */
    uint64_t t_setup = tools_now_ns();
    for (uint32_t i = 0; i < g->n; i++) {
        rpeer *p = &g->p[i];
        p->g = g;
        p->heap_idx = NO_HEAP;
        p->deadline = TERN_TIME_NEVER;
        p->pair = NO_PAIR;
        peer_addr(g, i, &p->local);
        tern_endpoint_config ec;
        tern_endpoint_config_default(&ec);
        if (tern_keypair_generate(&ec.static_key) != TERN_OK) goto oom;
        ec.has_static_key = 1;
        memcpy(p->pub, ec.static_key.pub, TERN_KEY_LEN);
        tern_peer_id(p->pub, p->id);
        ec.callbacks.on_established = on_established;
        ec.callbacks.on_closed = on_closed;
        ec.callbacks.on_message = on_message;
        ec.user_data = p;
        int erc = tern_endpoint_new(&ec, t_setup, &p->ep);
        tern_keypair_wipe(&ec.static_key);
        if (erc != TERN_OK) {
            fprintf(stderr, "tern loadgen rdv: endpoint %u: %s\n", (unsigned)i,
                    tern_strerror(erc));
            goto out;
        }
    }
    fprintf(stderr,
            "tern loadgen rdv: %u peers from %u addresses x %u ports, keys and endpoints made "
            "in %.2f s\n",
            (unsigned)g->n, (unsigned)g->n_sources, (unsigned)g->n_socks,
            (double)(tools_now_ns() - t_setup) / 1e9);
    tools_catch_signals(NULL);

    /* phase 1: register */
    proc_sample s0, s1, s2;
    proc_read(server_pid, &s0);
    uint64_t c0 = tools_cpu_ns(), t0 = tools_now_ns();
    uint64_t give_up = t0 + 60 * TERN_NS_PER_S + (uint64_t)g->n * 10 * TERN_NS_PER_MS;
    while (g->registered + g->failed < g->n && !tools_interrupted()) {
        iterate(g, 100);
        if (tools_now_ns() > give_up) {
            fprintf(stderr, "tern loadgen rdv: gave up waiting for registrations\n");
            break;
        }
    }
    uint64_t t1 = tools_now_ns(), c1 = tools_cpu_ns();
    proc_read(server_pid, &s1);
    double reg_s = (double)(t1 - t0) / 1e9;
    printf("register peers=%u registered=%u failed=%u seconds=%.3f rate=%.0f client_cpu=%.0f%%",
           (unsigned)g->n, (unsigned)g->registered, (unsigned)g->failed, reg_s,
           reg_s > 0 ? g->registered / reg_s : 0.0, 100.0 * (double)(c1 - c0) / (double)(t1 - t0));
    if (s0.ok && s1.ok)
        printf(" server_cpu=%.0f%%", 100.0 * (double)(s1.cpu_ns - s0.cpu_ns) / (double)(t1 - t0));
    printf("\n");
    fflush(stdout);

    /* phase 2: introductions (with --relay only when --duration was given as well) */
    int run_intro = relay_secs <= 0 || duration_set;
    g->intro_on = run_intro;
    uint64_t t2 = tools_now_ns(), c2 = tools_cpu_ns();
    uint64_t end = t2 + (uint64_t)(duration * 1e9);
    uint64_t last_scan = t2;
    while (run_intro && tools_now_ns() < end && !tools_interrupted() && g->registered >= 2) {
        iterate(g, 10);
        uint64_t now = tools_now_ns();
        if (now - last_scan > 100 * TERN_NS_PER_MS) { /* answers that never came */
            last_scan = now;
            for (uint32_t i = 0; i < g->registered; i++) {
                rpeer *p = &g->p[g->reg[i]];
                if (p->busy && now - p->sent_ns > INTRO_LOST_NS) {
                    g->intro_lost++;
                    intro_done(g, p);
                }
            }
        }
    }
    g->intro_on = 0;
    uint64_t t3 = tools_now_ns(), c3 = tools_cpu_ns();
    proc_read(server_pid, &s2);
    uint64_t ok_in_time = g->intro_ok;
    /* let the answers in flight arrive (not counted in the rate) */
    uint64_t drain_end = t3 + TERN_NS_PER_S;
    while (g->inflight && tools_now_ns() < drain_end && !tools_interrupted()) iterate(g, 10);
    double intro_s = (double)(t3 - t2) / 1e9;
    if (g->lat_n) qsort(g->lat_us, g->lat_n, sizeof(*g->lat_us), cmp_u32);
    if (run_intro) {
        printf(
            "introduce seconds=%.3f window=%u sent=%llu ok=%llu rate=%.0f bad=%llu errors=%llu "
            "lost=%llu introduced=%llu introduced_bad=%llu with_relay=%llu p50_us=%.0f p99_us=%.0f "
            "p999_us=%.0f max_us=%.0f client_cpu=%.0f%%",
            intro_s, (unsigned)g->window, (unsigned long long)g->intro_sent,
            (unsigned long long)g->intro_ok, intro_s > 0 ? (double)ok_in_time / intro_s : 0.0,
            (unsigned long long)g->intro_bad, (unsigned long long)g->intro_err,
            (unsigned long long)g->intro_lost, (unsigned long long)g->introduced,
            (unsigned long long)g->introduced_bad, (unsigned long long)g->with_relay, pct(g, 0.5),
            pct(g, 0.99), pct(g, 0.999), g->lat_n ? (double)g->lat_us[g->lat_n - 1] : 0.0,
            t3 - t2 > TERN_NS_PER_MS ? 100.0 * (double)(c3 - c2) / (double)(t3 - t2) : 0.0);
        if (s1.ok && s2.ok)
            printf(" server_cpu=%.0f%%",
                   100.0 * (double)(s2.cpu_ns - s1.cpu_ns) / (double)(t3 - t2));
        printf("\n");
    }
    fflush(stdout);
    int relay_ok = 1;
    if (relay_secs > 0) relay_ok = relay_phase(g, relay_secs, server_pid) == 0;
    if (s0.ok && s1.ok && s2.ok)
        printf("server rss_before_kb=%llu rss_registered_kb=%llu hwm_registered_kb=%llu "
               "rss_end_kb=%llu hwm_end_kb=%llu bytes_per_peer=%.0f\n",
               (unsigned long long)s0.rss_kb, (unsigned long long)s1.rss_kb,
               (unsigned long long)s1.hwm_kb, (unsigned long long)s2.rss_kb,
               (unsigned long long)s2.hwm_kb,
               g->registered ? (double)(s1.rss_kb - s0.rss_kb) * 1024.0 / g->registered : 0.0);
    printf("sockets rx=%llu tx=%llu tx_dropped=%llu rx_unknown=%llu other_errors=%llu "
           "closed_after_register=%u late=%llu\n",
           (unsigned long long)g->rx, (unsigned long long)g->tx,
           (unsigned long long)g->tx_dropped, (unsigned long long)g->rx_unknown,
           (unsigned long long)g->other_err, (unsigned)g->closed, (unsigned long long)g->late);
    fflush(stdout);
    /* leave gracefully: ternd frees the connections now rather than at their idle timeout */
    uint64_t tc = tools_now_ns();
    g->closing = 1;
    for (uint32_t i = 0; i < g->n; i++)
        if (g->p[i].conn && tern_conn_close(g->p[i].conn, tc, 0, "loadgen done", 12) == TERN_OK)
            touch(&g->p[i]);
    pump(g);
    while (tools_now_ns() < tc + 200 * TERN_NS_PER_MS) iterate(g, 10);
    rc = (g->registered == g->n && relay_ok && (g->intro_ok > 0 || !run_intro) &&
          g->intro_bad == 0 && g->intro_err == 0 &&
          g->intro_lost == 0 && g->introduced_bad == 0 && g->other_err == 0)
             ? 0
             : 1;
    tools_release_signals();
    goto out;
oom:
    fprintf(stderr, "tern loadgen rdv: out of memory\n");
    rc = 1;
    goto out;
usage:
    help(stderr);
out:
    if (g->p)
        for (uint32_t i = 0; i < g->n; i++) tern_endpoint_del(g->p[i].ep);
    if (g->s)
        for (uint32_t si = 0; si < g->n_socks; si++)
            if (g->s[si].fd >= 0) close(g->s[si].fd);
    if (g->epfd > 0) close(g->epfd);
    free(g->p);
    free(g->s);
    free(g->heap);
    free(g->dirty);
    free(g->reg);
    free(g->pairs);
    free(g->lat_us);
    free(g);
    return rc;
}
