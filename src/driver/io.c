/*
 * The driver's socket I/O: opening and tuning sockets, batched receive with GRO, batched send
 * with GSO.
 *
 * tern/udp.h (owned elsewhere) has no control messages, so this file does its own recvmmsg and
 * sendmmsg. Receive: up to rx_per_wakeup datagrams per socket per iteration, rx.batch per call;
 * with UDP_GRO a slot may hold several datagrams of one sender, all gso_size long but the last,
 * and they are handed to the core one by one. After each recvmmsg batch the core's output is
 * flushed, so replies (and the core's small stateless-reply queue) drain while a flood is read.
 * Send: the datagrams from one tern_endpoint_send call are grouped in order; a run of datagrams
 * that leave one socket for one destination with equal sizes (the last may be shorter) becomes
 * one message with a UDP_SEGMENT control message (GSO: the kernel splits it, one traversal of
 * the stack for up to 64 datagrams); everything else is one message per datagram. The messages of
 * one socket go out in one sendmmsg. When the kernel refuses a GSO message (EIO: no checksum
 * offload on the route's device; EINVAL/EOPNOTSUPP: no GSO support) GSO is turned off on that
 * socket and the same datagrams go out again one by one. EAGAIN leaves the rest queued and asks
 * epoll for EPOLLOUT; any other refusal drops that message and counts it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver/driver_int.h"
#include "tern/udp.h"

#ifndef SOL_UDP
#define SOL_UDP IPPROTO_UDP
#endif

static void set_buf(int fd, int opt_force, int opt, int bytes, int *granted)
{
    /* FORCE passes rmem_max/wmem_max when we have CAP_NET_ADMIN; otherwise the plain option,
     * which the kernel caps at the sysctl maximum */
    if (bytes > 0 && setsockopt(fd, SOL_SOCKET, opt_force, &bytes, sizeof(bytes)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes));
    int v = 0;
    socklen_t l = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) == 0 && granted) *granted = v;
}

int drv_sock_open(drv_sock *s, const tern_addr *addr, int bufsize, int no_gso, int no_gro,
                  int *rcvbuf, int *sndbuf)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    /* an IPv6 wildcard socket is dual-stack; a specific IPv6 address only speaks IPv6 */
    static const uint8_t any6[16];
    int flags = 0;
    if (addr->family == TERN_AF_INET6 && memcmp(addr->ip, any6, 16) != 0) flags |= TERN_UDP_V6ONLY;
    int rc = tern_udp_open(addr, flags, &s->fd);
    if (rc != TERN_OK) return rc;
    s->family = addr->family == TERN_AF_INET6 ? AF_INET6 : AF_INET;
    s->v6only = (flags & TERN_UDP_V6ONLY) != 0;
    if (tern_udp_local_addr(s->fd, &s->local) != TERN_OK) {
        int e = errno;
        close(s->fd);
        s->fd = -1;
        errno = e;
        return TERN_ERR_STATE;
    }
    set_buf(s->fd, SO_RCVBUFFORCE, SO_RCVBUF, bufsize, rcvbuf);
    set_buf(s->fd, SO_SNDBUFFORCE, SO_SNDBUF, bufsize, sndbuf);
    /* Don't fragment, and don't let the kernel's path MTU cache refuse our probes: the core
     * discovers the path MTU itself with padded probes (a too-large one is simply lost or gets
     * EMSGSIZE here, which counts as a send error and drops that datagram). */
#if defined(IP_MTU_DISCOVER) && defined(IP_PMTUDISC_PROBE)
    {
        int v = IP_PMTUDISC_PROBE;
        (void)setsockopt(s->fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof(v));
    }
#endif
#if defined(IPV6_MTU_DISCOVER) && defined(IPV6_PMTUDISC_PROBE)
    if (s->family == AF_INET6) {
        int v = IPV6_PMTUDISC_PROBE;
        (void)setsockopt(s->fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof(v));
    }
#endif
#ifdef UDP_SEGMENT
    if (!no_gso) {
        /* the option exists iff the kernel can segment (4.18+) */
        int v = 0;
        socklen_t l = sizeof(v);
        s->gso = getsockopt(s->fd, SOL_UDP, UDP_SEGMENT, &v, &l) == 0;
    }
#else
    (void)no_gso;
#endif
#ifdef UDP_GRO
    if (!no_gro) {
        int one = 1;
        s->gro = setsockopt(s->fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    }
#else
    (void)no_gro;
#endif
    return TERN_OK;
}

int drv_rx_init(drv_rx *rx, size_t batch, size_t slot)
{
    memset(rx, 0, sizeof(*rx));
    rx->batch = batch;
    rx->slot = slot;
    rx->data = malloc(batch * slot);
    rx->msgs = calloc(batch, sizeof(*rx->msgs));
    rx->iov = calloc(batch, sizeof(*rx->iov));
    rx->names = calloc(batch, sizeof(*rx->names));
    rx->ctl = calloc(batch, DRV_CTL_LEN);
    if (!rx->data || !rx->msgs || !rx->iov || !rx->names || !rx->ctl) {
        drv_rx_free(rx);
        return TERN_ERR_NOMEM;
    }
    return TERN_OK;
}

void drv_rx_free(drv_rx *rx)
{
    free(rx->data);
    free(rx->msgs);
    free(rx->iov);
    free(rx->names);
    free(rx->ctl);
    memset(rx, 0, sizeof(*rx));
}

void drv_want_out(tern_driver *d, size_t i, int on)
{
    drv_sock *s = &d->socks[i];
    if (s->want_out == on) return;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.u64 = i;
    if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0) s->want_out = on;
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
    drv_rx *rx = &d->rx;
    size_t budget = d->rx_per_wakeup;
    while (budget > 0) {
        size_t want = rx->batch < budget ? rx->batch : budget;
        for (size_t k = 0; k < want; k++) {
            rx->iov[k].iov_base = rx->data + k * rx->slot;
            rx->iov[k].iov_len = rx->slot;
            struct msghdr *mh = &rx->msgs[k].msg_hdr;
            memset(mh, 0, sizeof(*mh));
            mh->msg_iov = &rx->iov[k];
            mh->msg_iovlen = 1;
            mh->msg_name = &rx->names[k];
            mh->msg_namelen = sizeof(rx->names[k]);
            mh->msg_control = rx->ctl + k * DRV_CTL_LEN;
            mh->msg_controllen = DRV_CTL_LEN;
        }
        int n;
        do {
            n = recvmmsg(s->fd, rx->msgs, (unsigned)want, MSG_DONTWAIT, NULL);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) d->st.rx_errors++;
            return;
        }
        if (n == 0) return;
        d->st.rx_syscalls++;
        for (int k = 0; k < n; k++) {
            struct msghdr *mh = &rx->msgs[k].msg_hdr;
            size_t len = rx->msgs[k].msg_len;
            uint8_t *p = rx->data + (size_t)k * rx->slot;
            tern_addr from;
            if (tern_addr_from_sockaddr(&from, (struct sockaddr *)&rx->names[k], mh->msg_namelen) !=
                TERN_OK)
                continue;
            if (mh->msg_flags & MSG_TRUNC) {
                d->st.rx_oversize++;
                budget = budget > 0 ? budget - 1 : 0;
                continue;
            }
            drv_rxmsg rm;
            drv_rx_parse(len, mh->msg_control, mh->msg_controllen, &s->local, &rm);
            if (rm.count == 1) {
                deliver(d, s, rm.local, &from, p, len);
                budget = budget > 0 ? budget - 1 : 0;
                continue;
            }
            d->st.rx_gro_batches++;
            for (size_t off = 0; off < len; off += rm.seg) {
                deliver(d, s, rm.local, &from, p + off, len - off < rm.seg ? len - off : rm.seg);
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

/* sockaddr for `to` as socket s needs it: IPv4 destinations become v4-mapped on IPv6 sockets. */
static socklen_t dest_sockaddr(const drv_sock *s, const tern_addr *to, struct sockaddr_storage *ss)
{
    if (s->family == AF_INET6 && to->family == TERN_AF_INET) {
        tern_addr m = *to;
        m.family = TERN_AF_INET6;
        memset(m.ip, 0, 10);
        m.ip[10] = m.ip[11] = 0xff;
        memcpy(m.ip + 12, to->ip, 4);
        return (socklen_t)tern_addr_to_sockaddr(&m, ss);
    }
    int l = tern_addr_to_sockaddr(to, ss);
    return l > 0 ? (socklen_t)l : 0;
}

static int gso_refused(int e)
{
    return e == EIO || e == EINVAL || e == EOPNOTSUPP || e == ENOPROTOOPT;
}

void drv_send_queued(tern_driver *d, drv_tx *tx)
{
    tern_driver_stats *st = &d->st;
    uint64_t *syscalls = tx->raw ? &st->tx_raw_syscalls : &st->tx_syscalls;
    uint64_t *sent = tx->raw ? &st->tx_raw : &st->tx_datagrams;
    uint64_t *errors = tx->raw ? &st->tx_raw_errors : &st->tx_errors;
    uint64_t *gso_msgs = tx->raw ? &st->tx_raw_gso_msgs : &st->tx_gso_msgs;
    while (tx->done < tx->n) {
        int si = pick_socket(d, &tx->dg[tx->done]);
        if (si < 0) {
            (*errors)++;
            tx->done++;
            continue;
        }
        drv_sock *s = &d->socks[si];
        /* build the messages for the run of datagrams that leave from socket si */
        size_t nmsg = 0, k = tx->done;
        while (k < tx->n && nmsg < DRV_TX_BATCH) {
            const tern_datagram *g = &tx->dg[k];
            if (k > tx->done && pick_socket(d, g) != si) break;
            size_t segs = 1, bytes = g->len;
            if (s->gso) {
                while (k + segs < tx->n && segs < DRV_GSO_MAX_SEGS) {
                    const tern_datagram *h = &tx->dg[k + segs];
                    const tern_datagram *prev = &tx->dg[k + segs - 1];
                    if (prev->len != g->len || h->len > g->len ||
                        bytes + h->len > DRV_GSO_MAX_BYTES ||
                        !tern_addr_equal(&h->remote, &g->remote) ||
                        !tern_addr_equal(&h->local, &g->local))
                        break;
                    bytes += h->len;
                    segs++;
                }
            }
            for (size_t j = 0; j < segs; j++) {
                tx->iov[k + j].iov_base = tx->dg[k + j].data;
                tx->iov[k + j].iov_len = tx->dg[k + j].len;
            }
            struct msghdr *mh = &tx->msgs[nmsg].msg_hdr;
            memset(mh, 0, sizeof(*mh));
            mh->msg_iov = &tx->iov[k];
            mh->msg_iovlen = segs;
            mh->msg_name = &tx->names[nmsg];
            mh->msg_namelen = dest_sockaddr(s, &g->remote, &tx->names[nmsg]);
#ifdef UDP_SEGMENT
            if (segs > 1) {
                mh->msg_control = tx->ctl[nmsg].buf;
                mh->msg_controllen = sizeof(tx->ctl[nmsg].buf);
                struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
                cm->cmsg_level = SOL_UDP;
                cm->cmsg_type = UDP_SEGMENT;
                cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                uint16_t gs = (uint16_t)g->len;
                memcpy(CMSG_DATA(cm), &gs, sizeof(gs));
            }
#endif
            tx->segs[nmsg++] = segs;
            k += segs;
        }
        /* send them; a partial sendmmsg resumes at the first unsent message */
        size_t m = 0;
        while (m < nmsg) {
            int r = sendmmsg(s->fd, tx->msgs + m, (unsigned)(nmsg - m), MSG_DONTWAIT);
            (*syscalls)++;
            if (r < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    d->st.tx_blocked++;
                    d->tx_blocked = 1;
                    drv_want_out(d, (size_t)si, 1);
                    return;
                }
                if (tx->segs[m] > 1 && gso_refused(errno)) {
                    s->gso = 0; /* the same datagrams go out again one by one */
                    d->st.gso_fallbacks++;
                    break;
                }
                *errors += tx->segs[m];
                tx->done += tx->segs[m];
                m++;
                continue;
            }
            for (int j = 0; j < r; j++, m++) {
                *sent += tx->segs[m];
                if (tx->segs[m] > 1) (*gso_msgs)++;
                tx->done += tx->segs[m];
            }
        }
    }
}

socklen_t drv_sockaddr_for(const drv_sock *s, const tern_addr *to, struct sockaddr_storage *ss)
{
    return dest_sockaddr(s, to, ss);
}
