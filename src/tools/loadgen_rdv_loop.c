/*
 * `tern loadgen rdv`: the sockets and the event loop (see cmd_loadgen_rdv.c for the run).
 *
 * Why not the driver's loop (tern/driver.h): a peer ID is the hash of an endpoint's static key,
 * so N identities need N core endpoints, and a tern_driver owns exactly one endpoint with its own
 * epoll, eventfd and sockets (3N descriptors for N drivers, and one wait per driver). This loop
 * instead runs N endpoints over S shared sockets: one epoll over the S sockets, waiting
 * (epoll_pwait2, nanoseconds) until input or the earliest of the N endpoints' deadlines (base's
 * indexed min-heap, base/heap.h, over the peers). The sockets themselves are the shared batched-UDP module
 * (tern/udp.h): bound to 0.0.0.0 with IP_PKTINFO, so a datagram is handed to the peer whose
 * 127.2.x.y address it was sent to, and each peer's datagrams leave from its own address.
 *
 * Each iteration reads at most 64 datagrams per socket per recvmmsg (up to 4 calls per socket)
 * and, after each of those batches, refills the handshake and introduction windows and drains
 * every endpoint it touched into per-socket send queues that leave in one sendmmsg each (so
 * requests leave while the rest of the input waits: the generator and ternd then work at the
 * same time instead of taking turns); then it runs the endpoints whose deadline passed and does
 * the same. A send the kernel stops (EAGAIN) drops the rest of that queue, counted in
 * tx_dropped: tern retransmits what matters, and relay datagrams count as lost.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "tools/loadgen_rdv.h"
#include "tools/tools.h"

/* ---------------------------------------------------------------- deadlines */

/* Files peer pi under its endpoint's next deadline in base's heap (out of it when it has none).
 * A heap that cannot grow (out of memory) leaves the peer without timers: counted as an error. */
static void deadline_set(lgr *g, uint32_t pi)
{
    rpeer *p = &g->p[pi];
    uint64_t at = p->ep ? tern_endpoint_next_deadline(p->ep) : TERN_TIME_NEVER;
    if (tern__heap_set(&g->deadlines, &p->item, at) != TERN_OK) g->other_err++;
}

static rpeer *deadline_top(const lgr *g)
{
    return (rpeer *)(void *)tern__heap_top(&g->deadlines); /* item is rpeer's first member */
}

/* ---------------------------------------------------------------- sockets */

void lgr_touch(rpeer *p)
{
    if (p->dirty) return;
    p->dirty = 1;
    p->g->dirty[p->g->dirty_n++] = (uint32_t)(p - p->g->p);
}

/* Peer i's address: 127.2.x.y (source number i / S, y never 0) and socket i mod S's port. */
void lgr_peer_addr(const lgr *g, uint32_t i, tern_addr *a)
{
    uint32_t k = i / g->n_socks;
    tern_addr_ipv4(a, 127, (uint8_t)(2 + k / 62500), (uint8_t)(k / 250 % 250),
                   (uint8_t)(k % 250 + 1), g->s[i % g->n_socks].u.local.port);
}

/* The peer a datagram to ip on socket si is for, or LGR_NO_PEER. */
static uint32_t peer_of(const lgr *g, uint32_t si, const uint8_t ip[4])
{
    if (ip[0] != 127 || ip[1] < 2 || ip[3] == 0 || ip[2] >= 250 || ip[3] > 250) return LGR_NO_PEER;
    uint64_t k = (uint64_t)(ip[1] - 2) * 62500 + (uint64_t)ip[2] * 250 + (ip[3] - 1u);
    uint64_t i = k * g->n_socks + si;
    return i < g->n ? (uint32_t)i : LGR_NO_PEER;
}

int lgr_socks_open(lgr *g)
{
    g->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (g->epfd < 0) return -1;
    for (uint32_t si = 0; si < g->n_socks; si++) g->s[si].u.fd = -1;
    tern_addr any;
    memset(&any, 0, sizeof(any));
    any.family = TERN_AF_INET;
    for (uint32_t si = 0; si < g->n_socks; si++) {
        rsock *s = &g->s[si];
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = si};
        if (tern_udp_sock_open(&s->u, &any, TERN_UDP_PKTINFO, 4 << 20) != TERN_OK ||
            !s->u.pktinfo || tern_udp_batch_init(&s->rx, LGR_RX_BATCH, TERN_MAX_DATAGRAM) ||
            tern_udp_batch_init(&s->txm, LGR_TX_BATCH, 0) ||
            epoll_ctl(g->epfd, EPOLL_CTL_ADD, s->u.fd, &ev) != 0)
            return -1;
    }
    return 0;
}

void lgr_socks_close(lgr *g)
{
    for (uint32_t si = 0; g->s && si < g->n_socks; si++) {
        tern_udp_sock_close(&g->s[si].u);
        tern_udp_batch_free(&g->s[si].rx);
        tern_udp_batch_free(&g->s[si].txm);
    }
    if (g->epfd >= 0) close(g->epfd);
    g->epfd = -1;
}

static int is_relay(const tern_datagram *d)
{
    return d->len > 0 && d->data[0] == TERN_RELAY_TYPE;
}

/* Sends what waits on s. A datagram the kernel refuses outright (never seen on loopback) counts
 * in tx_dropped; one stopped by a full socket too, with the rest of the queue. */
static void sock_flush(lgr *g, rsock *s)
{
    uint64_t refused = s->u.st.tx_errors;
    size_t done = tern_udp_send_dgrams(&s->u, &s->txm, s->dg, s->tn);
    refused = s->u.st.tx_errors - refused;
    g->tx += done - refused;
    g->tx_dropped += s->tn - done + refused;
    for (size_t i = 0; i < s->tn; i++) {
        if (!is_relay(&s->dg[i])) continue;
        if (i < done) g->relay_tx++;
        else g->relay_tx_dropped++;
    }
    s->tn = 0;
    s->tused = 0;
}

static int sock_full(const rsock *s)
{
    return s->tn == LGR_TX_BATCH || sizeof(s->tbuf) - s->tused < TERN_MAX_DATAGRAM;
}

uint8_t *lgr_queue(lgr *g, uint32_t si, const tern_addr *local, const tern_addr *remote,
                   size_t len)
{
    rsock *s = &g->s[si];
    if (sock_full(s)) sock_flush(g, s);
    tern_datagram *d = &s->dg[s->tn++];
    d->local = *local; /* leaves from the peer's address (IP_PKTINFO) */
    d->remote = *remote;
    d->data = s->tbuf + s->tused;
    d->len = len;
    s->tused += len;
    return d->data;
}

/* Drains peer pi's endpoint into its socket's queue (in place: no copy) and re-files its
 * deadline. */
static void peer_send(lgr *g, uint32_t pi, uint64_t now)
{
    rpeer *p = &g->p[pi];
    p->dirty = 0;
    rsock *s = &g->s[pi % g->n_socks];
    for (;;) {
        if (sock_full(s)) sock_flush(g, s);
        int k = tern_endpoint_send(p->ep, now, s->dg + s->tn, LGR_TX_BATCH - s->tn,
                                   s->tbuf + s->tused, sizeof(s->tbuf) - s->tused);
        if (k <= 0) break;
        for (int j = 0; j < k; j++, s->tn++) {
            size_t end = (size_t)(s->dg[s->tn].data + s->dg[s->tn].len - s->tbuf);
            if (end > s->tused) s->tused = end;
        }
    }
    deadline_set(g, pi);
}

/* Reads what waits on socket si (a bounded number of batches) into the endpoints; relay
 * datagrams go to the relay phase, never to an endpoint. */
static void sock_read(lgr *g, uint32_t si, uint64_t now)
{
    rsock *s = &g->s[si];
    for (int round = 0; round < 4; round++) {
        int n = tern_udp_recv(&s->u, &s->rx, 0);
        if (n <= 0) return;
        for (int i = 0; i < n; i++) {
            size_t len = s->rx.len[i]; /* > TERN_MAX_DATAGRAM: truncated or unknown family */
            uint8_t *d = tern_udp_slot(&s->rx, (size_t)i);
            uint32_t pi = peer_of(g, si, s->rx.dst[i].ip);
            if (len > 0 && d[0] == TERN_RELAY_TYPE && len <= TERN_MAX_DATAGRAM) {
                lgr_relay_recv(g, pi, &s->rx.addr[i], d, len, now);
                continue;
            }
            if (pi == LGR_NO_PEER || g->p[pi].ep == NULL || len > TERN_MAX_DATAGRAM) {
                g->rx_unknown++;
                continue;
            }
            g->rx++;
            rpeer *p = &g->p[pi];
            (void)tern_endpoint_recv(p->ep, now, &p->local, &s->rx.addr[i], d, len);
            lgr_touch(p);
        }
        lgr_pump(g);
        if (n < LGR_RX_BATCH) return;
    }
}

/* ---------------------------------------------------------------- the loop */

/* Refills the handshake and introduction windows and sends what every touched endpoint has.
 * Runs after each batch read, so requests leave while the rest of the input is handled. */
void lgr_pump(lgr *g)
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
        lgr_touch(p);
    }
    /* introductions */
    while (g->intro_on && g->inflight < g->window)
        if (lgr_intro_start(g, now) != 0) break;
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
void lgr_iterate(lgr *g, int max_wait_ms)
{
    uint64_t now = tools_now_ns();
    uint64_t wait = (uint64_t)max_wait_ms * TERN_NS_PER_MS;
    if (g->dirty_n) wait = 0;
    const rpeer *top = deadline_top(g);
    if (top != NULL) {
        uint64_t t = top->item.deadline;
        if (t <= now) wait = 0;
        else if (t - now < wait) wait = t - now;
    }
    struct epoll_event ev[LGR_MAX_SOCKS];
    int ne = wait_events(g, ev, LGR_MAX_SOCKS, wait);
    now = tools_now_ns();
    for (int i = 0; i < ne; i++) sock_read(g, ev[i].data.u32, now);
    for (rpeer *p; (p = deadline_top(g)) != NULL && p->item.deadline <= now;) {
        tern_endpoint_handle_expiry(p->ep, now);
        tern__heap_remove(&g->deadlines, &p->item); /* re-filed after its sends */
        lgr_touch(p);
    }
    lgr_pump(g);
}
