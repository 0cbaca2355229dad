/*
 * tern batched UDP: a small Linux socket module the driver, ternd and the tools share.
 *
 * Opens non-blocking UDP sockets (IPv4 or IPv6, optionally SO_REUSEPORT so each worker thread can
 * own a socket on a shared port), moves datagrams in batches with recvmmsg/sendmmsg, and converts
 * between struct sockaddr and tern_addr. A tern_udp_batch owns count slots of slot_size bytes; after
 * a receive, slot i holds len[i] bytes from addr[i]; before a send, the caller fills the same
 * fields with the destination. OS failures return TERN_ERR_STATE with errno left as the OS set it.
 */
#ifndef TERN_UDP_H
#define TERN_UDP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tern/tern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_UDP_REUSEPORT 0x1 /* SO_REUSEPORT: several sockets share the port */
#define TERN_UDP_V6ONLY 0x2    /* IPv6 socket that does not take IPv4-mapped traffic */
#define TERN_UDP_BLOCKING 0x4  /* leave the socket blocking (default: O_NONBLOCK) */
#define TERN_UDP_GRO 0x8       /* UDP_GRO: the kernel may hand over several datagrams of one flow
                                * as one (see tern_udp_batch.seg); silently off where unsupported */

/* Most datagrams one UDP_SEGMENT send may carry (the kernel's UDP_MAX_SEGMENTS is 64 or more). */
#define TERN_UDP_GSO_MAX_SEGS 64

/* Opens a UDP socket bound to addr (port 0: any port). Errors: TERN_ERR_INVALID_ARG (family),
 * TERN_ERR_STATE (socket/bind failed: errno says why). */
int tern_udp_open(const tern_addr *addr, int flags, int *fd_out);

/* 1 when this kernel knows UDP_SEGMENT on fd (probed with getsockopt), else 0. A kernel without
 * it would ignore the control message and send one long datagram, so never set batch.gso without
 * asking. The kernel may still refuse a GSO send later (no checksum offload on the route: EIO);
 * tern_udp_send_batch then clears batch.gso and sends datagram by datagram. */
int tern_udp_gso_supported(int fd);

/* 1 when UDP_GRO is on for fd. */
int tern_udp_gro_enabled(int fd);

/* The address the socket is bound to. Errors: TERN_ERR_STATE. */
int tern_udp_local_addr(int fd, tern_addr *out);

/* tern_addr <-> sockaddr. to_sockaddr returns the length to pass to the OS, or
 * TERN_ERR_INVALID_ARG; from_sockaddr maps IPv4-mapped IPv6 addresses back to IPv4 and returns
 * TERN_ERR_INVALID_ARG for other families. */
int tern_addr_to_sockaddr(const tern_addr *a, struct sockaddr_storage *ss);
int tern_addr_from_sockaddr(tern_addr *a, const struct sockaddr *sa, socklen_t len);

typedef struct tern_udp_batch {
    size_t count;         /* slots */
    size_t slot_size;     /* bytes per slot */
    uint8_t *data;        /* count * slot_size */
    size_t *len;          /* bytes in each slot */
    tern_addr *addr;      /* source (after receive) or destination (before send) */
    size_t *seg;          /* after a receive with gro set: 0 when slot i holds one datagram, else
                           * the size of each of the datagrams the kernel coalesced into it (the
                           * last one may be shorter) */
    int gso;              /* send: coalesce runs of consecutive slots with the same destination
                           * and the same length into one UDP_SEGMENT datagram (set it only where
                           * tern_udp_gso_supported said yes; cleared when the kernel refuses) */
    int gro;              /* receive: ask for the UDP_GRO segment size (socket opened with
                           * TERN_UDP_GRO; slots must then be 65535 bytes or trains are dropped) */
    uint64_t gso_sends;     /* datagrams sent with UDP_SEGMENT (each carrying 2+ slots) */
    uint64_t gso_fallbacks; /* times the kernel refused GSO (EIO/EINVAL/...) and gso was cleared */
    void *impl_;          /* mmsghdr, iovec, sockaddr and control arrays */
} tern_udp_batch;

static inline uint8_t *tern_udp_slot(const tern_udp_batch *b, size_t i)
{
    return b->data + i * b->slot_size;
}

/* Allocates a batch of count slots. Errors: TERN_ERR_INVALID_ARG, TERN_ERR_NOMEM. */
int tern_udp_batch_init(tern_udp_batch *b, size_t count, size_t slot_size);
void tern_udp_batch_free(tern_udp_batch *b);

/* Receives up to b->count datagrams with one recvmmsg (EINTR retried). Returns how many (0 when
 * none is waiting on a non-blocking socket). Datagrams longer than slot_size are truncated by the
 * kernel and reported with len = slot_size + 1 so the caller can drop them. Errors: TERN_ERR_STATE. */
int tern_udp_recv_batch(int fd, tern_udp_batch *b);

/* Sends slots [0, n) with sendmmsg (a slot whose addr has family TERN_AF_NONE goes to the
 * connected socket's peer, which spares the kernel a route lookup), looping until all went out or
 * the socket would block. With b->gso, runs of up to TERN_UDP_GSO_MAX_SEGS consecutive slots with
 * the same destination and the same length leave as one UDP_SEGMENT send (the receiver still gets
 * separate datagrams unless it asked for GRO); if the kernel refuses that (EIO, EINVAL,
 * EOPNOTSUPP, ENOPROTOOPT), b->gso is cleared, b->gso_fallbacks counted and the rest goes out
 * datagram by datagram. Returns how many slots were sent; a datagram the kernel refuses (e.g.
 * EPERM from a firewall) is skipped and counted in *failed when failed is not NULL. Errors:
 * TERN_ERR_STATE. */
int tern_udp_send_batch(int fd, tern_udp_batch *b, size_t n, uint64_t *failed);

/* One datagram, for the rare packets that leave from another socket. Errors: TERN_ERR_AGAIN,
 * TERN_ERR_STATE. */
int tern_udp_send_one(int fd, const tern_addr *to, const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
