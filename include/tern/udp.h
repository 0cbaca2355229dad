/*
 * tern batched UDP: the one Linux socket module the driver's loop, ternd's STUN service and the
 * load generators share.
 *
 * A tern_udp_sock is a non-blocking UDP socket (IPv4 or IPv6; optionally SO_REUSEPORT, bigger
 * buffers, UDP_GRO, UDP_SEGMENT, IP_PKTINFO, connected) with the kernel features it actually got
 * and its counters. Datagrams move in batches with recvmmsg/sendmmsg:
 * - receive (tern_udp_recv) into the slots of a tern_udp_batch, with the control messages read
 *   once here: the UDP_GRO segment size (the caller cuts the slot into datagrams in place, no
 *   copy) and, on a TERN_UDP_PKTINFO socket, the address each message was sent to;
 * - send either the batch's own slots (tern_udp_send_batch) or datagrams that live elsewhere
 *   (tern_udp_send_dgrams: the core's tern_datagram, no copy). Where the socket has GSO, runs of
 *   consecutive datagrams with one source and one destination whose sizes are equal (the last
 *   may be shorter) leave as one UDP_SEGMENT message; the receiver still gets separate datagrams.
 *
 * The send policy, the same for every user: EAGAIN stops the send and leaves the rest with the
 * caller (the return value says how far it got; counted in tx_blocked). A GSO message the kernel
 * refuses for want of GSO (EIO: no checksum offload on the route; EINVAL, EOPNOTSUPP,
 * ENOPROTOOPT) turns GSO off on that socket for good (gso_fallbacks) and the same datagrams go out
 * again one by one. EMSGSIZE on a GSO message is about size, not support: GSO stays on and the
 * rest of that call goes datagram by datagram, so only a datagram that is itself too large (a
 * path MTU probe) is dropped. Any other refusal drops that message's datagrams and counts them in
 * tx_errors. EINTR is retried everywhere. OS failures return TERN_ERR_STATE with errno as the OS
 * set it.
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

/* tern_udp_open / tern_udp_sock_open flags. GRO: UDP_GRO, the kernel may hand over several
 * datagrams of one flow as one (see tern_udp_batch.seg), off where unsupported. GSO: send with
 * UDP_SEGMENT where the kernel knows it (probed). PKTINFO: IP_PKTINFO / IPV6_RECVPKTINFO, receive
 * reports each message's destination (batch.dst) and a datagram sent with a local address other
 * than the bound one leaves from that address. PMTU_PROBE: don't fragment and ignore the kernel's
 * path MTU cache, the caller discovers the path MTU itself (too large: EMSGSIZE). */
#define TERN_UDP_REUSEPORT 0x1 /* SO_REUSEPORT: several sockets share the port */
#define TERN_UDP_V6ONLY 0x2    /* IPv6 socket that does not take IPv4-mapped traffic */
#define TERN_UDP_BLOCKING 0x4  /* leave the socket blocking (default: O_NONBLOCK) */
#define TERN_UDP_GRO 0x8
#define TERN_UDP_GSO 0x10
#define TERN_UDP_PKTINFO 0x20
#define TERN_UDP_PMTU_PROBE 0x40

/* Most datagrams one UDP_SEGMENT send may carry (the kernel's UDP_MAX_SEGMENTS is 64 or more),
 * and most bytes (a UDP datagram's limit, less headers). */
#define TERN_UDP_GSO_MAX_SEGS 64
#define TERN_UDP_GSO_MAX_BYTES 65000

/* Per-socket counters, the only ones: the driver's and the services' statistics are read here. */
typedef struct tern_udp_stats {
    uint64_t rx_syscalls;    /* recvmmsg calls that returned data */
    uint64_t rx_msgs;        /* messages received (a GRO message holds several datagrams) */
    uint64_t rx_gro_batches; /* received messages that held several coalesced datagrams */
    uint64_t rx_errors;      /* recvmmsg failures other than EAGAIN/EINTR */
    uint64_t tx_syscalls;    /* sendmmsg calls */
    uint64_t tx_datagrams;   /* datagrams the kernel accepted */
    uint64_t tx_gso_msgs;    /* messages sent with UDP_SEGMENT (each carrying >= 2 datagrams) */
    uint64_t tx_errors;      /* datagrams the kernel refused: dropped */
    uint64_t tx_blocked;     /* sends stopped by a full send buffer (EAGAIN) */
    uint64_t gso_fallbacks;  /* times the kernel refused GSO and gso was turned off */
} tern_udp_stats;

typedef struct tern_udp_sock {
    int fd;             /* -1 when not open */
    int family;         /* AF_INET or AF_INET6 */
    int v6only;         /* an IPv6 socket that cannot reach IPv4 destinations */
    int gso;            /* sends use UDP_SEGMENT (cleared when the kernel refuses it) */
    int gro;            /* UDP_GRO is on: a received slot may hold several datagrams */
    int pktinfo;        /* TERN_UDP_PKTINFO is on */
    int connected;      /* tern_udp_sock_connect succeeded */
    int rcvbuf, sndbuf; /* buffer sizes the kernel granted */
    tern_addr local;    /* the bound address */
    tern_udp_stats st;
} tern_udp_sock;

/* Opens a UDP socket bound to addr (port 0: any port) with the TERN_UDP_* flags; bufsize > 0
 * asks for that many bytes of receive and send buffer (SO_*BUFFORCE where permitted, else capped
 * by the sysctl maximum; 0 keeps the default). GRO, GSO and PKTINFO are best effort: s says what
 * the kernel granted. Errors: TERN_ERR_INVALID_ARG (family), TERN_ERR_STATE (errno says why). */
int tern_udp_sock_open(tern_udp_sock *s, const tern_addr *addr, int flags, int bufsize);

/* Connects s to peer: the kernel then drops datagrams from anyone else, and a datagram whose
 * destination has family TERN_AF_NONE goes to peer without a route lookup. Errors: TERN_ERR_STATE.
 */
int tern_udp_sock_connect(tern_udp_sock *s, const tern_addr *peer);

/* Closes s (harmless on a closed one). */
void tern_udp_sock_close(tern_udp_sock *s);

/* The sockaddr s needs to reach `to` (IPv4 destinations become v4-mapped on IPv6 sockets);
 * returns its length, 0 when s cannot reach that family. */
socklen_t tern_udp_sockaddr_for(const tern_udp_sock *s, const tern_addr *to,
                                struct sockaddr_storage *ss);

/* The low-level opener the above uses, for tools that only need a plain descriptor: a UDP socket
 * bound to addr with the REUSEPORT, V6ONLY, BLOCKING and GRO flags. */
int tern_udp_open(const tern_addr *addr, int flags, int *fd_out);

/* The address fd is bound to. Errors: TERN_ERR_STATE. */
int tern_udp_local_addr(int fd, tern_addr *out);

/* tern_addr <-> sockaddr. to_sockaddr returns the length to pass to the OS, or
 * TERN_ERR_INVALID_ARG; from_sockaddr maps IPv4-mapped IPv6 addresses back to IPv4 and returns
 * TERN_ERR_INVALID_ARG for other families. */
int tern_addr_to_sockaddr(const tern_addr *a, struct sockaddr_storage *ss);
int tern_addr_from_sockaddr(tern_addr *a, const struct sockaddr *sa, socklen_t len);

/* count slots of slot_size bytes plus the message arrays for count messages. After a receive,
 * slot i holds len[i] bytes from addr[i]; before tern_udp_send_batch the caller fills the same
 * fields with the destination. A batch with slot_size 0 has no slots: it only lends its message
 * arrays to tern_udp_send_dgrams. */
typedef struct tern_udp_batch {
    size_t count;     /* slots (and messages per sendmmsg/recvmmsg) */
    size_t slot_size; /* bytes per slot */
    uint8_t *data;    /* count * slot_size */
    size_t *len;      /* bytes in each slot */
    tern_addr *addr;  /* source (after receive) or destination (before send; TERN_AF_NONE: the
                       * connected peer) */
    size_t *seg;      /* after a receive on a GRO socket: 0 when slot i holds one datagram, else
                       * the size of each of the datagrams the kernel coalesced into it (the last
                       * one may be shorter) */
    tern_addr *dst;   /* after a receive: the address the message was sent to (PKTINFO sockets;
                       * the port is the bound one), else the socket's bound address */
    void *impl_;      /* mmsghdr, iovec, sockaddr and control arrays */
} tern_udp_batch;

static inline uint8_t *tern_udp_slot(const tern_udp_batch *b, size_t i)
{
    return b->data + i * b->slot_size;
}

/* Allocates a batch of count slots (1..1024, slot_size 0..65536; a GRO receiver needs 65535-byte
 * slots or trains are truncated). Errors: TERN_ERR_INVALID_ARG, TERN_ERR_NOMEM. */
int tern_udp_batch_init(tern_udp_batch *b, size_t count, size_t slot_size);
void tern_udp_batch_free(tern_udp_batch *b);

/* Receives up to max messages (0 or more than b->count: b->count) with one recvmmsg. Returns how
 * many (0 when none is waiting). A datagram longer than slot_size is truncated by the kernel and
 * reported with len = slot_size + 1 (and one of an unknown family likewise) so the caller can
 * drop it. Errors: TERN_ERR_STATE (counted in rx_errors). */
int tern_udp_recv(tern_udp_sock *s, tern_udp_batch *b, size_t max);

/* Sends slots [0, n) of b (see the send policy above). Returns how many slots were dealt with
 * (sent or dropped as refused): fewer than n only when the socket would block. */
size_t tern_udp_send_batch(tern_udp_sock *s, tern_udp_batch *b, size_t n);

/* Sends dg[0, n) (their data stays where it is), using b's message arrays b->count messages at a
 * time. A datagram's local address is its source: on a PKTINFO socket one that differs from the
 * bound address leaves from it; GSO runs never mix sources. Returns how many were dealt with, as
 * tern_udp_send_batch. */
size_t tern_udp_send_dgrams(tern_udp_sock *s, tern_udp_batch *b, const tern_datagram *dg, size_t n);

/* One datagram, for the rare packets that leave outside a batch. Errors: TERN_ERR_AGAIN,
 * TERN_ERR_STATE, TERN_ERR_INVALID_ARG. */
int tern_udp_send_one(int fd, const tern_addr *to, const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
