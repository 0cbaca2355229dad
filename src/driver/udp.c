/*
 * The batched UDP module (see tern/udp.h): socket setup and tuning, recvmmsg with its control
 * messages (read by drv_rx_parse, rxmsg.c), sendmmsg with GSO runs and the one fallback policy.
 * The driver's loop (io.c), ternd's STUN service and the load generators all send and receive
 * here; nothing else in the tree calls recvmmsg or sendmmsg.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver/driver_int.h"
#include "tern/udp.h"

/* One control buffer per message: UDP_SEGMENT (u16) and a source IP_PKTINFO / IPV6_PKTINFO on
 * send; UDP_GRO (int) and the destination's pktinfo on receive. */
#define CTRL_LEN 64
typedef union batch_ctrl {
    struct cmsghdr hdr;
    uint8_t buf[CTRL_LEN];
} batch_ctrl;

typedef struct batch_impl {
    struct mmsghdr *msgs;
    struct iovec *iov;
    struct sockaddr_storage *names;
    batch_ctrl *ctrl;
    size_t *nseg; /* send: datagrams in message i */
} batch_impl;

int tern_addr_to_sockaddr(const tern_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (a->family == TERN_AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        memcpy(&s4->sin_addr, a->ip, 4);
        return (int)sizeof(*s4);
    }
    if (a->family == TERN_AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        memcpy(&s6->sin6_addr, a->ip, 16);
        return (int)sizeof(*s6);
    }
    return TERN_ERR_INVALID_ARG;
}

int tern_addr_from_sockaddr(tern_addr *a, const struct sockaddr *sa, socklen_t len)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(a, 0, sizeof(*a));
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a->family = TERN_AF_INET;
        a->port = ntohs(s4->sin_port);
        memcpy(a->ip, &s4->sin_addr, 4);
        return TERN_OK;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        a->port = ntohs(s6->sin6_port);
        if (memcmp(&s6->sin6_addr, mapped, 12) == 0) {
            a->family = TERN_AF_INET;
            memcpy(a->ip, (const uint8_t *)&s6->sin6_addr + 12, 4);
        } else {
            a->family = TERN_AF_INET6;
            memcpy(a->ip, &s6->sin6_addr, 16);
        }
        return TERN_OK;
    }
    return TERN_ERR_INVALID_ARG;
}

/* ---------------------------------------------------------------- sockets */

int tern_udp_open(const tern_addr *addr, int flags, int *fd_out)
{
    struct sockaddr_storage ss;
    int sl = tern_addr_to_sockaddr(addr, &ss);
    if (sl < 0 || fd_out == NULL) return TERN_ERR_INVALID_ARG;
    int type = SOCK_DGRAM | SOCK_CLOEXEC | ((flags & TERN_UDP_BLOCKING) ? 0 : SOCK_NONBLOCK);
    int fd = socket(ss.ss_family, type, 0);
    if (fd < 0) return TERN_ERR_STATE;
    int one = 1;
    if ((flags & TERN_UDP_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    if (ss.ss_family == AF_INET6) {
        int v6only = (flags & TERN_UDP_V6ONLY) ? 1 : 0;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) != 0) goto fail;
    }
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0) goto fail;
    if (flags & TERN_UDP_GRO) /* best effort: older kernels lack it */
        (void)setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
    *fd_out = fd;
    return TERN_OK;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return TERN_ERR_STATE;
}

int tern_udp_local_addr(int fd, tern_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return TERN_ERR_STATE;
    return tern_addr_from_sockaddr(out, (struct sockaddr *)&ss, sl) == TERN_OK ? TERN_OK
                                                                               : TERN_ERR_STATE;
}

static void set_buf(int fd, int opt_force, int opt, int bytes, int *granted)
{
    /* FORCE passes rmem_max/wmem_max when we have CAP_NET_ADMIN; otherwise the plain option,
     * which the kernel caps at the sysctl maximum */
    if (bytes > 0 && setsockopt(fd, SOL_SOCKET, opt_force, &bytes, sizeof(bytes)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes));
    int v = 0;
    socklen_t l = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) == 0) *granted = v;
}

int tern_udp_sock_open(tern_udp_sock *s, const tern_addr *addr, int flags, int bufsize)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    int rc = tern_udp_open(addr, flags & (TERN_UDP_REUSEPORT | TERN_UDP_V6ONLY | TERN_UDP_BLOCKING),
                           &s->fd);
    if (rc != TERN_OK) return rc;
    s->family = addr->family == TERN_AF_INET6 ? AF_INET6 : AF_INET;
    s->v6only = s->family == AF_INET6 && (flags & TERN_UDP_V6ONLY);
    if (tern_udp_local_addr(s->fd, &s->local) != TERN_OK) {
        int e = errno;
        tern_udp_sock_close(s);
        errno = e;
        return TERN_ERR_STATE;
    }
    set_buf(s->fd, SO_RCVBUFFORCE, SO_RCVBUF, bufsize, &s->rcvbuf);
    set_buf(s->fd, SO_SNDBUFFORCE, SO_SNDBUF, bufsize, &s->sndbuf);
    int one = 1;
    if (flags & TERN_UDP_PMTU_PROBE) {
#if defined(IP_MTU_DISCOVER) && defined(IP_PMTUDISC_PROBE)
        int v = IP_PMTUDISC_PROBE;
        (void)setsockopt(s->fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof(v));
#endif
#if defined(IPV6_MTU_DISCOVER) && defined(IPV6_PMTUDISC_PROBE)
        int v6 = IPV6_PMTUDISC_PROBE;
        if (s->family == AF_INET6)
            (void)setsockopt(s->fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v6, sizeof(v6));
#endif
    }
    if (flags & TERN_UDP_PKTINFO) {
        s->pktinfo =
            s->family == AF_INET
                ? setsockopt(s->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) == 0
                : setsockopt(s->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) == 0;
    }
    if (flags & TERN_UDP_GSO) { /* the option exists iff the kernel can segment (4.18+) */
        int v = 0;
        socklen_t l = sizeof(v);
        s->gso = getsockopt(s->fd, SOL_UDP, UDP_SEGMENT, &v, &l) == 0;
    }
    if (flags & TERN_UDP_GRO) s->gro = setsockopt(s->fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    return TERN_OK;
}

socklen_t tern_udp_sockaddr_for(const tern_udp_sock *s, const tern_addr *to,
                                struct sockaddr_storage *ss)
{
    if (s->family == AF_INET6 && to->family == TERN_AF_INET) {
        if (s->v6only) return 0;
        tern_addr m = *to;
        m.family = TERN_AF_INET6;
        memset(m.ip, 0, 10);
        m.ip[10] = m.ip[11] = 0xff;
        memcpy(m.ip + 12, to->ip, 4);
        return (socklen_t)tern_addr_to_sockaddr(&m, ss);
    }
    if (s->family == AF_INET && to->family != TERN_AF_INET) return 0;
    int l = tern_addr_to_sockaddr(to, ss);
    return l > 0 ? (socklen_t)l : 0;
}

int tern_udp_sock_connect(tern_udp_sock *s, const tern_addr *peer)
{
    struct sockaddr_storage ss;
    socklen_t sl = tern_udp_sockaddr_for(s, peer, &ss);
    if (sl == 0) return TERN_ERR_INVALID_ARG;
    if (connect(s->fd, (struct sockaddr *)&ss, sl) != 0) return TERN_ERR_STATE;
    s->connected = 1;
    return TERN_OK;
}

void tern_udp_sock_close(tern_udp_sock *s)
{
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
}

/* ---------------------------------------------------------------- batches */

int tern_udp_batch_init(tern_udp_batch *b, size_t count, size_t slot_size)
{
    memset(b, 0, sizeof(*b));
    if (count == 0 || count > 1024 || slot_size > 65536) return TERN_ERR_INVALID_ARG;
    batch_impl *im = calloc(1, sizeof(*im));
    b->data = slot_size ? malloc(count * slot_size) : NULL;
    b->len = calloc(count, sizeof(*b->len));
    b->addr = calloc(count, sizeof(*b->addr));
    b->seg = calloc(count, sizeof(*b->seg));
    b->dst = calloc(count, sizeof(*b->dst));
    if (im) {
        im->msgs = calloc(count, sizeof(*im->msgs));
        im->iov = calloc(count, sizeof(*im->iov));
        im->names = calloc(count, sizeof(*im->names));
        im->ctrl = calloc(count, sizeof(*im->ctrl));
        im->nseg = calloc(count, sizeof(*im->nseg));
    }
    b->impl_ = im;
    b->count = count;
    b->slot_size = slot_size;
    if (!im || !im->msgs || !im->iov || !im->names || !im->ctrl || !im->nseg ||
        (slot_size && !b->data) || !b->len || !b->addr || !b->seg || !b->dst) {
        tern_udp_batch_free(b);
        return TERN_ERR_NOMEM;
    }
    return TERN_OK;
}

void tern_udp_batch_free(tern_udp_batch *b)
{
    batch_impl *im = b->impl_;
    if (im) {
        free(im->msgs);
        free(im->iov);
        free(im->names);
        free(im->ctrl);
        free(im->nseg);
        free(im);
    }
    free(b->data);
    free(b->len);
    free(b->addr);
    free(b->seg);
    free(b->dst);
    memset(b, 0, sizeof(*b));
}

/* ---------------------------------------------------------------- receive */

int tern_udp_recv(tern_udp_sock *s, tern_udp_batch *b, size_t max)
{
    batch_impl *im = b->impl_;
    size_t want = max == 0 || max > b->count ? b->count : max;
    int ctl = s->gro || s->pktinfo; /* control messages only where they can come */
    for (size_t i = 0; i < want; i++) {
        im->iov[i].iov_base = tern_udp_slot(b, i);
        im->iov[i].iov_len = b->slot_size;
        struct msghdr *h = &im->msgs[i].msg_hdr;
        memset(h, 0, sizeof(*h));
        h->msg_iov = &im->iov[i];
        h->msg_iovlen = 1;
        h->msg_name = &im->names[i];
        h->msg_namelen = sizeof(im->names[i]);
        if (ctl) {
            h->msg_control = im->ctrl[i].buf;
            h->msg_controllen = sizeof(im->ctrl[i].buf);
        }
    }
    int n;
    do {
        n = recvmmsg(s->fd, im->msgs, (unsigned)want, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        s->st.rx_errors++;
        return TERN_ERR_STATE;
    }
    if (n > 0) s->st.rx_syscalls++;
    s->st.rx_msgs += (uint64_t)n;
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &im->msgs[i].msg_hdr;
        size_t len = im->msgs[i].msg_len;
        b->len[i] = (h->msg_flags & MSG_TRUNC) ? b->slot_size + 1 : len;
        if (tern_addr_from_sockaddr(&b->addr[i], (struct sockaddr *)&im->names[i],
                                    h->msg_namelen) != TERN_OK)
            b->len[i] = b->slot_size + 1; /* unknown family: the caller drops it */
        b->seg[i] = 0;
        if (!ctl) {
            b->dst[i] = s->local;
            continue;
        }
        drv_rxmsg m;
        drv_rx_parse(len, h->msg_control, h->msg_controllen, &s->local, &m);
        b->dst[i] = *m.local;
        if (m.count > 1 && b->len[i] <= b->slot_size) {
            b->seg[i] = m.seg;
            s->st.rx_gro_batches++;
        }
    }
    return n;
}

/* ---------------------------------------------------------------- send */

/* What is being sent: the core's datagrams, or a batch's own slots. */
typedef struct out_src {
    const tern_datagram *dg; /* NULL: the slots of b */
    const tern_udp_batch *b;
} out_src;

static inline void out_get(const out_src *o, size_t i, uint8_t **p, size_t *len,
                           const tern_addr **to, const tern_addr **from)
{
    if (o->dg) {
        *p = o->dg[i].data;
        *len = o->dg[i].len;
        *to = &o->dg[i].remote;
        *from = &o->dg[i].local;
    } else {
        *p = tern_udp_slot(o->b, i);
        *len = o->b->len[i];
        *to = &o->b->addr[i];
        *from = NULL;
    }
}

/* Adds a source-address control message where s leaves from something else than its bound IP;
 * returns the bytes it took at c. */
static size_t add_source(const tern_udp_sock *s, const tern_addr *from, uint8_t *c)
{
    if (!s->pktinfo || from == NULL) return 0;
    union {
        struct in_pktinfo v4;
        struct in6_pktinfo v6;
    } pi;
    memset(&pi, 0, sizeof(pi));
    struct cmsghdr h;
    memset(&h, 0, sizeof(h));
    size_t len;
    if (s->family == AF_INET && from->family == TERN_AF_INET &&
        memcmp(from->ip, s->local.ip, 4) != 0) {
        memcpy(&pi.v4.ipi_spec_dst, from->ip, 4);
        h.cmsg_level = IPPROTO_IP;
        h.cmsg_type = IP_PKTINFO;
        len = sizeof(pi.v4);
    } else if (s->family == AF_INET6 && from->family == TERN_AF_INET6 &&
               memcmp(from->ip, s->local.ip, 16) != 0) {
        memcpy(&pi.v6.ipi6_addr, from->ip, 16);
        h.cmsg_level = IPPROTO_IPV6;
        h.cmsg_type = IPV6_PKTINFO;
        len = sizeof(pi.v6);
    } else {
        return 0; /* the bound address, or a family this socket cannot set */
    }
    h.cmsg_len = CMSG_LEN(len);
    memcpy(c, &h, sizeof(h));
    memcpy(c + CMSG_LEN(0), &pi, len);
    return CMSG_SPACE(len);
}

/* Fills up to cap messages for items [i, n) (never more than cap items: one iovec each): one
 * message per datagram, or with gso one per run of consecutive datagrams with one source, one
 * destination and equal sizes (the last may be shorter). Returns the message count. */
static size_t build_msgs(const tern_udp_sock *s, batch_impl *im, size_t cap, const out_src *o,
                         size_t i, size_t n, int gso)
{
    size_t j = 0, first = i;
    if (n - i > cap) n = i + cap;
    while (i < n) {
        uint8_t *p;
        size_t len;
        const tern_addr *to, *from;
        out_get(o, i, &p, &len, &to, &from);
        size_t run = 1, bytes = len, prev = len;
        if (gso && len > 0) {
            while (i + run < n && run < TERN_UDP_GSO_MAX_SEGS && prev == len) {
                uint8_t *q;
                size_t ql;
                const tern_addr *qto, *qfrom;
                out_get(o, i + run, &q, &ql, &qto, &qfrom);
                if (ql > len || ql == 0 || bytes + ql > TERN_UDP_GSO_MAX_BYTES ||
                    !tern_addr_equal(qto, to) || (from && !tern_addr_equal(qfrom, from)))
                    break;
                bytes += ql;
                prev = ql;
                run++;
            }
        }
        struct iovec *iov = &im->iov[i - first];
        for (size_t k = 0; k < run; k++) {
            uint8_t *kp;
            size_t kl;
            const tern_addr *kto, *kfrom;
            if (k == 0) {
                kp = p;
                kl = len;
            } else {
                out_get(o, i + k, &kp, &kl, &kto, &kfrom);
            }
            iov[k].iov_base = kp;
            iov[k].iov_len = kl;
        }
        struct msghdr *h = &im->msgs[j].msg_hdr;
        memset(h, 0, sizeof(*h));
        h->msg_iov = iov;
        h->msg_iovlen = run;
        if (to->family != TERN_AF_NONE) { /* NONE: a connected socket's own peer */
            h->msg_name = &im->names[j];
            h->msg_namelen = tern_udp_sockaddr_for(s, to, &im->names[j]);
        }
        uint8_t *c = im->ctrl[j].buf;
        size_t cl = 0;
        if (run > 1) {
            struct cmsghdr ch;
            memset(&ch, 0, sizeof(ch));
            ch.cmsg_level = SOL_UDP;
            ch.cmsg_type = UDP_SEGMENT;
            ch.cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t gs = (uint16_t)len;
            memcpy(c, &ch, sizeof(ch));
            memcpy(c + CMSG_LEN(0), &gs, sizeof(gs));
            cl = CMSG_SPACE(sizeof(uint16_t));
        }
        cl += add_source(s, from, c + cl);
        if (cl) {
            h->msg_control = c;
            h->msg_controllen = cl;
        }
        im->nseg[j++] = run;
        i += run;
    }
    return j;
}

static int gso_refused(int e)
{
    return e == EIO || e == EINVAL || e == EOPNOTSUPP || e == ENOPROTOOPT;
}

/* The one send loop (the policy is in tern/udp.h). Returns the items dealt with. */
static size_t send_items(tern_udp_sock *s, tern_udp_batch *b, const out_src *o, size_t n)
{
    batch_impl *im = b->impl_;
    size_t item = 0; /* items before it are sent or dropped */
    int gso = s->gso;
    while (item < n) {
        size_t nm = build_msgs(s, im, b->count, o, item, n, gso), m = 0;
        while (m < nm) {
            int r = sendmmsg(s->fd, im->msgs + m, (unsigned)(nm - m), MSG_DONTWAIT);
            s->st.tx_syscalls++;
            if (r < 0) {
                int e = errno;
                if (e == EINTR) continue;
                if (e == EAGAIN || e == EWOULDBLOCK) {
                    s->st.tx_blocked++;
                    return item;
                }
                if (im->nseg[m] > 1 && (gso_refused(e) || e == EMSGSIZE)) {
                    if (e != EMSGSIZE) { /* the kernel will not segment here, ever */
                        s->gso = 0;
                        s->st.gso_fallbacks++;
                    }
                    gso = 0; /* this call: the same datagrams again, one by one */
                    break;
                }
                s->st.tx_errors += im->nseg[m]; /* refused (firewall, too large): dropped */
                item += im->nseg[m++];
                continue;
            }
            for (size_t k = m; k < m + (size_t)r; k++) {
                s->st.tx_datagrams += im->nseg[k];
                if (im->nseg[k] > 1) s->st.tx_gso_msgs++;
                item += im->nseg[k];
            }
            m += (size_t)r;
        }
    }
    return item;
}

size_t tern_udp_send_batch(tern_udp_sock *s, tern_udp_batch *b, size_t n)
{
    if (n > b->count) n = b->count;
    out_src o = {NULL, b};
    return send_items(s, b, &o, n);
}

size_t tern_udp_send_dgrams(tern_udp_sock *s, tern_udp_batch *b, const tern_datagram *dg, size_t n)
{
    out_src o = {dg, b};
    return send_items(s, b, &o, n);
}

int tern_udp_send_one(int fd, const tern_addr *to, const uint8_t *data, size_t len)
{
    struct sockaddr_storage ss;
    int sl = tern_addr_to_sockaddr(to, &ss);
    if (sl < 0) return TERN_ERR_INVALID_ARG;
    ssize_t r;
    do {
        r = sendto(fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&ss, (socklen_t)sl);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? TERN_ERR_AGAIN : TERN_ERR_STATE;
    return TERN_OK;
}
