/*
 * Batched UDP sockets (see tern/udp.h): socket setup with SO_REUSEPORT, recvmmsg/sendmmsg loops
 * with EINTR retried and EAGAIN reported as "nothing more", and sockaddr <-> tern_addr.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tern/udp.h"

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* One control buffer per message: UDP_SEGMENT (u16) on send, UDP_GRO (int) on receive. */
typedef union batch_ctrl {
    struct cmsghdr hdr;
    char buf[64];
} batch_ctrl;

typedef struct batch_impl {
    struct mmsghdr *msgs;
    struct iovec *iov;
    struct sockaddr_storage *names;
    batch_ctrl *ctrl;
    size_t *first; /* send: first slot of message i */
    size_t *nseg;  /* send: slots in message i */
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

int tern_udp_gso_supported(int fd)
{
    int v = 0;
    socklen_t vl = sizeof(v);
    return getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &vl) == 0;
}

int tern_udp_gro_enabled(int fd)
{
    int v = 0;
    socklen_t vl = sizeof(v);
    return getsockopt(fd, SOL_UDP, UDP_GRO, &v, &vl) == 0 && v != 0;
}

int tern_udp_local_addr(int fd, tern_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return TERN_ERR_STATE;
    return tern_addr_from_sockaddr(out, (struct sockaddr *)&ss, sl) == TERN_OK ? TERN_OK
                                                                               : TERN_ERR_STATE;
}

int tern_udp_batch_init(tern_udp_batch *b, size_t count, size_t slot_size)
{
    memset(b, 0, sizeof(*b));
    if (count == 0 || count > 1024 || slot_size == 0 || slot_size > 65536)
        return TERN_ERR_INVALID_ARG;
    batch_impl *im = calloc(1, sizeof(*im));
    b->data = malloc(count * slot_size);
    b->len = calloc(count, sizeof(*b->len));
    b->addr = calloc(count, sizeof(*b->addr));
    b->seg = calloc(count, sizeof(*b->seg));
    if (im) {
        im->msgs = calloc(count, sizeof(*im->msgs));
        im->iov = calloc(count, sizeof(*im->iov));
        im->names = calloc(count, sizeof(*im->names));
        im->ctrl = calloc(count, sizeof(*im->ctrl));
        im->first = calloc(count, sizeof(*im->first));
        im->nseg = calloc(count, sizeof(*im->nseg));
    }
    b->impl_ = im;
    b->count = count;
    b->slot_size = slot_size;
    if (!im || !im->msgs || !im->iov || !im->names || !im->ctrl || !im->first || !im->nseg ||
        !b->data || !b->len || !b->addr || !b->seg) {
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
        free(im->first);
        free(im->nseg);
        free(im);
    }
    free(b->data);
    free(b->len);
    free(b->addr);
    free(b->seg);
    memset(b, 0, sizeof(*b));
}

int tern_udp_recv_batch(int fd, tern_udp_batch *b)
{
    batch_impl *im = b->impl_;
    for (size_t i = 0; i < b->count; i++) {
        im->iov[i].iov_base = tern_udp_slot(b, i);
        im->iov[i].iov_len = b->slot_size;
        memset(&im->msgs[i].msg_hdr, 0, sizeof(im->msgs[i].msg_hdr));
        im->msgs[i].msg_hdr.msg_iov = &im->iov[i];
        im->msgs[i].msg_hdr.msg_iovlen = 1;
        im->msgs[i].msg_hdr.msg_name = &im->names[i];
        im->msgs[i].msg_hdr.msg_namelen = sizeof(im->names[i]);
        if (b->gro) {
            im->msgs[i].msg_hdr.msg_control = im->ctrl[i].buf;
            im->msgs[i].msg_hdr.msg_controllen = sizeof(im->ctrl[i].buf);
        }
    }
    int n;
    do {
        n = recvmmsg(fd, im->msgs, (unsigned)b->count, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : TERN_ERR_STATE;
    for (int i = 0; i < n; i++) {
        b->len[i] = (im->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? b->slot_size + 1
                                                                 : im->msgs[i].msg_len;
        if (tern_addr_from_sockaddr(&b->addr[i], (struct sockaddr *)&im->names[i],
                                    im->msgs[i].msg_hdr.msg_namelen) != TERN_OK)
            b->len[i] = b->slot_size + 1; /* unknown family: the caller drops it */
        b->seg[i] = 0;
        if (!b->gro) continue;
        struct msghdr *h = &im->msgs[i].msg_hdr;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
            if (c->cmsg_level != SOL_UDP || c->cmsg_type != UDP_GRO ||
                c->cmsg_len < CMSG_LEN(sizeof(int)))
                continue;
            int gs;
            memcpy(&gs, CMSG_DATA(c), sizeof(gs));
            if (gs > 0 && (size_t)gs < b->len[i] && b->len[i] <= b->slot_size)
                b->seg[i] = (size_t)gs;
        }
    }
    return n;
}

/* Fills messages base.. for slots [s, n): one message per slot, or with b->gso one per run of
 * consecutive slots with the same destination and length. Returns the message count. */
static size_t build_msgs(tern_udp_batch *b, batch_impl *im, size_t base, size_t s, size_t n)
{
    size_t j = base;
    while (s < n) {
        size_t run = 1, len = b->len[s];
        if (b->gso && len > 0) {
            size_t total = len;
            while (s + run < n && run < TERN_UDP_GSO_MAX_SEGS && b->len[s + run] == len &&
                   total + len <= 65000 && tern_addr_equal(&b->addr[s + run], &b->addr[s])) {
                total += len;
                run++;
            }
        }
        struct msghdr *h = &im->msgs[j].msg_hdr;
        memset(h, 0, sizeof(*h));
        for (size_t k = s; k < s + run; k++) {
            im->iov[k].iov_base = tern_udp_slot(b, k);
            im->iov[k].iov_len = b->len[k];
        }
        h->msg_iov = &im->iov[s];
        h->msg_iovlen = run;
        if (b->addr[s].family != TERN_AF_NONE) { /* NONE: a connected socket's own peer */
            int sl = tern_addr_to_sockaddr(&b->addr[s], &im->names[j]);
            h->msg_name = &im->names[j];
            h->msg_namelen = sl > 0 ? (socklen_t)sl : 0;
        }
        if (run > 1) {
            h->msg_control = im->ctrl[j].buf;
            h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t gs = (uint16_t)len;
            memcpy(CMSG_DATA(c), &gs, sizeof(gs));
        }
        im->first[j] = s;
        im->nseg[j] = run;
        s += run;
        j++;
    }
    return j - base;
}

int tern_udp_send_batch(int fd, tern_udp_batch *b, size_t n, uint64_t *failed)
{
    batch_impl *im = b->impl_;
    if (n > b->count) n = b->count;
    size_t nm = build_msgs(b, im, 0, 0, n);
    size_t done = 0, sent = 0;
    while (done < nm) {
        int r = sendmmsg(fd, im->msgs + done, (unsigned)(nm - done), MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (im->nseg[done] > 1 && (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP ||
                                       errno == ENOPROTOOPT || errno == EMSGSIZE)) {
                /* the kernel will not segment here: datagram by datagram from now on */
                b->gso = 0;
                b->gso_fallbacks++;
                nm = done + build_msgs(b, im, done, im->first[done], n);
                continue;
            }
            /* the first message was refused: skip it and go on */
            if (failed) *failed += im->nseg[done];
            done++;
            continue;
        }
        for (size_t k = done; k < done + (size_t)r; k++) {
            sent += im->nseg[k];
            if (im->nseg[k] > 1) b->gso_sends++;
        }
        done += (size_t)r;
    }
    return (int)sent;
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
