/*
 * The driver loop's side of its sockets; the batched UDP itself (recvmmsg/sendmmsg, control
 * messages, GSO runs and their fallback) is the shared module in udp.c (tern/udp.h).
 *
 * Receive: up to rx_per_wakeup datagrams per socket per iteration, rx.count per recvmmsg; a slot
 * the kernel filled by UDP_GRO holds several datagrams of one sender, all seg long but the last,
 * and they are handed to the core one by one where they lie (no copy). After each recvmmsg batch
 * the core's output is flushed, so replies (and the core's small stateless-reply queue) drain
 * while a flood is read.
 * Send: the datagrams from one tern_endpoint_send call are split, in order, into runs that leave
 * from one socket, and each run goes to tern_udp_send_dgrams (one sendmmsg per 64 messages, GSO
 * runs where the socket has GSO, the module's fallback policy). EAGAIN leaves the rest queued and
 * asks epoll for EPOLLOUT. The driver's tx counters are split by origin (the core's datagrams,
 * tern_driver_send_raw's) from the socket counters' growth during each send. A datagram to a
 * stream address (TCP or TLS) leaves the run and becomes a frame on its stream (stream.c).
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "driver/driver_int.h"
#include "tern/udp.h"

int drv_sock_open(drv_sock *s, const tern_addr *addr, int bufsize, int no_gso, int no_gro)
{
    /* an IPv6 wildcard socket is dual-stack; a specific IPv6 address only speaks IPv6 */
    static const uint8_t any6[16];
    int flags = TERN_UDP_PMTU_PROBE; /* the core discovers the path MTU itself (padded probes) */
    if (addr->family == TERN_AF_INET6 && memcmp(addr->ip, any6, 16) != 0) flags |= TERN_UDP_V6ONLY;
    if (!no_gso) flags |= TERN_UDP_GSO;
    if (!no_gro) flags |= TERN_UDP_GRO;
    return tern_udp_sock_open(s, addr, flags, bufsize);
}

void drv_want_out(tern_driver *d, size_t i, int on)
{
    if (d->want_out[i] == on) return;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.u64 = i;
    if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, d->socks[i].fd, &ev) == 0) d->want_out[i] = on;
}

/* ---------------------------------------------------------------- receive */

static void deliver(tern_driver *d, drv_sock *s, const tern_addr *local, const tern_addr *from,
                    uint8_t *p, size_t len)
{
    if (len > TERN_MAX_DATAGRAM) {
        d->st.rx_oversize++;
        return;
    }
    d->st.rx_datagrams++;
    if (d->rx_hook && drv_rx_hooked(d, s, from, p, len)) return;
    (void)tern_endpoint_recv(d->ep, d->now, local, from, p, len);
}

void drv_read_socket(tern_driver *d, size_t i)
{
    drv_sock *s = &d->socks[i];
    tern_udp_batch *rx = &d->rx;
    size_t budget = d->rx_per_wakeup;
    while (budget > 0) {
        size_t want = rx->count < budget ? rx->count : budget;
        int n = tern_udp_recv(s, rx, want);
        if (n <= 0) return; /* nothing waits, or an error (counted by the socket) */
        for (int k = 0; k < n; k++) {
            size_t len = rx->len[k], seg = rx->seg[k];
            uint8_t *p = tern_udp_slot(rx, (size_t)k);
            if (seg == 0) { /* one datagram (or a truncated one, dropped in deliver) */
                deliver(d, s, &rx->dst[k], &rx->addr[k], p, len);
                budget = budget > 0 ? budget - 1 : 0;
                continue;
            }
            for (size_t off = 0; off < len; off += seg) {
                deliver(d, s, &rx->dst[k], &rx->addr[k], p + off,
                        len - off < seg ? len - off : seg);
                budget = budget > 0 ? budget - 1 : 0;
            }
        }
        tern_driver_flush(d);
        if ((size_t)n < want) return; /* drained */
    }
    d->work_left = 1; /* the bound stopped us: come back without sleeping */
}

/* ---------------------------------------------------------------- send */

/* The socket a datagram leaves from: the one whose bound address the core was given, else the
 * first that can reach the destination's family. -1 when none can. */
static int pick_socket(const tern_driver *d, const tern_datagram *g)
{
    for (size_t i = 0; i < d->n_socks; i++)
        if (tern_addr_equal(&d->socks[i].local, &g->local)) return (int)i;
    for (size_t i = 0; i < d->n_socks; i++) {
        const drv_sock *s = &d->socks[i];
        if ((g->remote.family == TERN_AF_INET && (s->family == AF_INET || !s->v6only)) ||
            (g->remote.family == TERN_AF_INET6 && s->family == AF_INET6))
            return (int)i;
    }
    return -1;
}

void drv_send_queued(tern_driver *d, drv_tx *tx)
{
    tern_driver_stats *st = &d->st;
    uint64_t *syscalls = tx->raw ? &st->tx_raw_syscalls : &st->tx_syscalls;
    uint64_t *sent = tx->raw ? &st->tx_raw : &st->tx_datagrams;
    uint64_t *errors = tx->raw ? &st->tx_raw_errors : &st->tx_errors;
    uint64_t *gso_msgs = tx->raw ? &st->tx_raw_gso_msgs : &st->tx_gso_msgs;
    while (tx->done < tx->n) {
        if (tern_addr_is_stream(&tx->dg[tx->done].remote)) { /* a frame for a stream */
            (void)drv_stream_send(d, &tx->dg[tx->done++], 1); /* a drop is counted there */
            continue;
        }
        int si = pick_socket(d, &tx->dg[tx->done]);
        if (si < 0) {
            (*errors)++;
            tx->done++;
            continue;
        }
        size_t end = tx->done + 1; /* the run of datagrams that leave from socket si */
        while (end < tx->n && !tern_addr_is_stream(&tx->dg[end].remote) &&
               pick_socket(d, &tx->dg[end]) == si)
            end++;
        drv_sock *s = &d->socks[si];
        tern_udp_stats was = s->st;
        tx->done += tern_udp_send_dgrams(s, &d->txm, tx->dg + tx->done, end - tx->done);
        *syscalls += s->st.tx_syscalls - was.tx_syscalls;
        *sent += s->st.tx_datagrams - was.tx_datagrams;
        *errors += s->st.tx_errors - was.tx_errors;
        *gso_msgs += s->st.tx_gso_msgs - was.tx_gso_msgs;
        if (tx->done < end) { /* the socket is full: the rest waits for EPOLLOUT */
            d->tx_blocked = 1;
            drv_want_out(d, (size_t)si, 1);
            return;
        }
    }
}
