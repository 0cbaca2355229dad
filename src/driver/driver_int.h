/*
 * Internals of the tern driver (include/tern/driver.h) shared by its files: the driver struct,
 * the timer min-heap (timer.c), the set of live connections (conns.c) and the loop's side of the
 * sockets (io.c: which socket a datagram leaves from, GRO trains cut into datagrams for the core;
 * the batched UDP itself is tern/udp.h). loop.c holds the event loop and the public API.
 */
#ifndef TERN_DRIVER_INT_H
#define TERN_DRIVER_INT_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include "base/heap.h"
#include "base/map.h"
#include "base/rate.h"
#include "driver/stream.h"
#include "tern/driver.h"
#include "tern/udp.h"

#define DRV_TX_BATCH 64      /* datagrams per tern_endpoint_send call and per sendmmsg */
#define DRV_GRO_SLOT 65536   /* receive slot when GRO may coalesce */
#define DRV_GRO_BATCH 16     /* recvmmsg slots with GRO (16 x 64 KiB) */
#define DRV_TIMERS_PER_ITER 1024

/* ---------------------------------------------------------------- timers (timer.c) */

struct tern_driver_timer {
    tern__heap_item item; /* first (the heap hands items back); item.deadline: when it fires */
    tern_driver *d;
    tern_driver_timer_fn fn;
    void *user;
};

/* The timers by expiry: base's indexed min-heap, through the driver's allocator. */
typedef tern__heap drv_heap;

int drv_heap_init(drv_heap *h, tern__alloc *a);
int drv_heap_set(drv_heap *h, tern_driver_timer *t, uint64_t at);
void drv_heap_remove(drv_heap *h, tern_driver_timer *t);
tern_driver_timer *drv_heap_top(const drv_heap *h);
/* Frees the heap and leaves every timer it held stopped. */
void drv_heap_free(drv_heap *h);

/* ---------------------------------------------------------------- live connections (conns.c) */

/* The set of connection handles: base's hash map keyed by the handle itself (n: how many). */
typedef tern__map drv_conns;

int drv_conns_init(drv_conns *s, tern__alloc *a);
int drv_conns_add(drv_conns *s, tern_conn *c); /* TERN_OK (also when present) or NOMEM */
void drv_conns_del(drv_conns *s, tern_conn *c);
/* Copies up to max handles into out; returns how many. */
/* A copy of the set (the calls made while walking it may close connections), which the caller
 * frees with free(); NULL and *n 0 when it is empty or memory ran out. */
tern_conn **drv_conns_copy(const drv_conns *s, size_t *n);
void drv_conns_free(drv_conns *s);

/* The kernel's UDP GSO/GRO options, defined here (the one place) when the libc headers lack them:
 * the features are probed at run time (tern_udp_sock_open), never compiled out. */
#ifndef SOL_UDP
#define SOL_UDP IPPROTO_UDP
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* ---------------------------------------------------------------- sockets (io.c) */

/* A driver socket is a batched-UDP socket (tern/udp.h): its features and counters live there. */
typedef tern_udp_sock drv_sock;

/* The datagrams of one tern_endpoint_send call (or of tern_driver_send_raw), waiting to leave. */
typedef struct drv_tx {
    tern_datagram dg[DRV_TX_BATCH];
    uint8_t buf[DRV_TX_BATCH * TERN_MAX_DATAGRAM];
    size_t n, done; /* datagrams in dg, how many of them are finished */
    int raw;        /* datagrams from tern_driver_send_raw: counted in the tx_raw* stats */
} drv_tx;

/* Opens, binds and tunes a socket (buffers, path MTU probing, GSO/GRO where the kernel has them
 * and cfg does not turn them off). Errors: TERN_ERR_STATE. */
int drv_sock_open(drv_sock *s, const tern_addr *addr, int bufsize, int no_gso, int no_gro);

/* ---------------------------------------------------------------- received messages (rxmsg.c) */

/* One message as recvmmsg returned it: its datagrams and where it was sent to. */
typedef struct drv_rxmsg {
    size_t seg;             /* each datagram's size (the last may be shorter); len when one */
    size_t count;           /* datagrams in it: 1 when not coalesced (an empty one too) */
    const tern_addr *local; /* the address it was sent to: dst, or the socket's bound address */
    int has_dst, has_tos;
    tern_addr dst;          /* IP_PKTINFO / IPV6_PKTINFO (the port is the bound one) */
    uint8_t tos;            /* IP_TOS / IPV6_TCLASS */
} drv_rxmsg;

/* Reads a received message of len bytes: its control buffer (ctl, ctl_len bytes: nothing
 * outside it is read, whatever its cmsg_len fields say) and how its bytes split into datagrams
 * (UDP_GRO): datagram i is bytes [i * seg, min((i + 1) * seg, len)), count of them. Pure. */
void drv_rx_parse(size_t len, const uint8_t *ctl, size_t ctl_len, const tern_addr *bound,
                  drv_rxmsg *m);

/* ---------------------------------------------------------------- migration (migrate.c, netmon.c) */

#define DRV_NETMON_TAG (UINT64_MAX - 1) /* epoll tag of the netlink socket */
#define DRV_TRACKED 64                 /* client connections whose route source is followed */
#define DRV_SILENT_MOVES 3             /* moves per silence of one connection */

/* A client connection netmon.c follows: the source address the kernel's route to its server
 * used when last looked at, and its moves during the current silence of its path. */
typedef struct drv_tracked {
    tern_conn *c;
    tern_addr src;
    int has_src;           /* a route existed */
    uint32_t silent_moves; /* moves since the path was last heard (0..DRV_SILENT_MOVES) */
} drv_tracked;

typedef struct drv_mig {
    uint64_t linger_ns;
    uint64_t close_at[TERN_DRIVER_MAX_SOCKETS]; /* socket i closes then (TERN_TIME_NEVER: no) */
    uint8_t keep[TERN_DRIVER_MAX_SOCKETS];      /* never closes (a server's configured one) */
    int sockbuf, no_gso, no_gro;                /* how a fresh socket is opened */
    tern_driver_timer linger;                   /* at the earliest close_at */
    /* automatic moves (netmon.c) */
    int auto_on;
    int nl_fd;                     /* NETLINK_ROUTE socket, -1 */
    tern_driver_timer settle;      /* a burst of netlink messages has settled: look at routes */
    tern_driver_timer watch;       /* the next look at the paths' silence */
    tern__rate rate;               /* automatic moves: 6 a minute, bursts of 3 */
    tern__bucket bucket;
    drv_tracked tracked[DRV_TRACKED];
    size_t n_tracked;
} drv_mig;
/* ---------------------------------------------------------------- the driver */

struct tern_driver {
    tern_endpoint *ep;
    tern_callbacks app_cb;
    tern_driver *reg_next; /* registry of drivers by endpoint (loop.c) */
    int epfd, stopfd;
    size_t n_socks;
    drv_sock socks[TERN_DRIVER_MAX_SOCKETS];
    int want_out[TERN_DRIVER_MAX_SOCKETS]; /* EPOLLOUT registered for socket i */
    tern_udp_batch rx;                     /* receive slots (64 KiB each where a socket has GRO) */
    tern_udp_batch txm; /* message arrays for sending d->tx and d->raw (no slots) */
    drv_tx *tx;
    unsigned rx_per_wakeup, tx_per_wakeup;
    uint64_t now;
    tern__alloc alloc;          /* libc (tern_mem_default), counted: the timers and the set */
    drv_heap timers;
    tern_driver_timer ep_timer; /* the endpoint's next deadline */
    drv_conns conns;
    int tx_blocked;   /* a socket is full: wait for EPOLLOUT */
    int work_left;    /* the last iteration stopped at a bound: do not sleep */
    unsigned stops;   /* stop requests read from stopfd */
    int use_pwait2;   /* epoll_pwait2 (ns timeouts) works */
    tern_driver_rx_hook rx_hook;
    void *rx_hook_user;
    drv_tx *raw;  /* tern_driver_send_raw's queue (allocated at its first call) */
    drv_mig mig;  /* migration: sockets opened and lingering, automatic moves */
    drv_streams *streams; /* TCP and TLS streams, their listeners and limits (stream.c) */
    tern_driver_stats st;
};

/* io.c: reads up to the per-wakeup bound from socket i into the core; flushes in between. */
void drv_read_socket(tern_driver *d, size_t i);
/* io.c: sends the queued datagrams of tx (d->tx or d->raw), consecutive ones to one address
 * as one GSO message where the socket can; sets d->tx_blocked on EAGAIN. */
void drv_send_queued(tern_driver *d, drv_tx *tx);
/* io.c: registers or drops EPOLLOUT interest for socket i. */
void drv_want_out(tern_driver *d, size_t i, int on);
/* loop.c: opens a socket bound to a (buffers bufsize, GSO/GRO unless turned off), registers it
 * with epoll as socket n_socks and counts it. Errors: TERN_ERR_LIMIT, TERN_ERR_STATE. */
int drv_add_socket(tern_driver *d, const tern_addr *a, int bufsize, int no_gso, int no_gro);
/* migrate.c: the migration state after the configured sockets are open (any_gro: the receive
 * slots hold GRO trains); netmon.c's automatic moves for a client driver. */
int drv_mig_init(tern_driver *d, const tern_driver_config *cfg, int any_gro);
/* May c move to a fresh socket? (established, client side, on a direct UDP path) */
int drv_mig_movable(tern_conn *c);
void drv_mig_free(tern_driver *d);
/* netmon.c */
int drv_netmon_start(tern_driver *d);
void drv_netmon_stop(tern_driver *d);
void drv_netmon_read(tern_driver *d);
void drv_netmon_track(tern_driver *d, tern_conn *c);
void drv_netmon_forget(tern_driver *d, tern_conn *c);
/* loop.c: offers a received datagram to the rx_hook; 1 when it took it. */
int drv_rx_hooked(tern_driver *d, const drv_sock *s, const tern_addr *from, uint8_t *p,
                  size_t len);

#endif
