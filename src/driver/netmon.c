/*
 * Automatic migration for a client driver (tern_driver_config.no_auto_migrate, tern/driver.h):
 * the driver moves a client connection to a fresh socket (tern_driver_migrate) when the network
 * under it changed or its path went silent.
 *
 * Network changes. A NETLINK_ROUTE socket in the driver's epoll listens to the kernel's address,
 * link and route groups (RTM_NEWADDR/DELADDR, RTM_NEWLINK/DELLINK, RTM_NEWROUTE/DELROUTE for
 * default routes of the main table). A burst of messages (a link going down sends several) is
 * let settle for NETMON_SETTLE; then, for each connection followed, the kernel is asked which
 * source address its route to the server uses now (connect() of a throwaway UDP socket, then
 * getsockname(): no packet is sent). A connection whose source changed (its address went away,
 * a link went down, a better default route came) moves; one with no route left waits for the
 * next change. The source each connection used is noted when it is established (the first
 * DRV_TRACKED client connections are followed; more are left to the silence rule's siblings).
 *
 * Silence. Every NETMON_WATCH (sooner when a path is about to count as silent) the followed
 * connections' paths are looked at (tern_path_info): a path whose oldest unanswered
 * ack-eliciting packet waited silent_after_ns (3 PTO, at least 1 s) moves to a fresh socket,
 * since the NAT mapping under it may have died; the next move of the same silence waits twice
 * as long, and after DRV_SILENT_MOVES the connection stays where it is until it hears from its
 * peer (the core keeps probing there, a PING per probe timeout; the idle timeout decides).
 * A connection with a fallback of its own (tern_path_info.has_fallback: a relay or stream
 * candidate) is left to the core, which falls back at that same moment (a migration would
 * reset the silence it goes by); one on a stream or relay cannot move.
 *
 * Streams. A client connection whose path is a stream of ours cannot move (the TCP connection
 * is bound to the old source): when its route changes source, its stream is closed
 * (drv_stream_reroute, counted: stream_route_closes) and the core, told at once, dials it
 * again from the new address, instead of TCP failing it after TCP_USER_TIMEOUT (20 s).
 *
 * Bounds: every automatic move takes a token from one bucket (6 a minute, bursts of 3), after
 * the connection was found movable (drv_mig_movable: no token, no socket for one that is not);
 * a move without one is counted (auto_limited) and dropped. A stream closed on a route change
 * takes none: only a real change of the route's source (a kernel event) closes it. Netlink
 * messages are read at most NETMON_READS datagrams per wake-up; only the kernel's count (sender
 * port 0), and of them only the type and, for routes, the bounds-checked rtmsg header are read
 * (nothing else is parsed: a change only makes the driver look at the routes itself).
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver/driver_int.h"

#define NETMON_SETTLE (100 * TERN_NS_PER_MS) /* netlink messages of one change come together */
#define NETMON_WATCH (1 * TERN_NS_PER_S)     /* looks at the paths' silence at least this often */
#define NETMON_READS 64                      /* netlink datagrams read per wake-up */
#define NETMON_PER_MIN 6                     /* automatic moves a minute ... */
#define NETMON_BURST 3                       /* ... in bursts of this many */

static void settle_fn(tern_driver *d, tern_driver_timer *t, void *user);
static void watch_fn(tern_driver *d, tern_driver_timer *t, void *user);

static void timer_init(tern_driver *d, tern_driver_timer *t, tern_driver_timer_fn fn)
{
    t->d = d;
    t->fn = fn;
    t->user = NULL;
    t->item = TERN__HEAP_ITEM_INIT;
}

int drv_netmon_start(tern_driver *d)
{
    drv_mig *m = &d->mig;
    timer_init(d, &m->settle, settle_fn);
    timer_init(d, &m->watch, watch_fn);
    /* NETMON_PER_MIN a minute: a bucket counts whole units per second, so a move costs
     * 60 / NETMON_PER_MIN units at one unit a second */
    tern__rate_set(&m->rate, 1, NETMON_BURST * (60 / NETMON_PER_MIN));
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd >= 0) {
        struct sockaddr_nl sa;
        memset(&sa, 0, sizeof(sa));
        sa.nl_family = AF_NETLINK;
        sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR |
                       RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.u64 = DRV_NETMON_TAG;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd); /* no netlink (a sandbox): the silence rule still works */
            fd = -1;
        }
    }
    m->nl_fd = fd;
    return TERN_OK;
}

void drv_netmon_stop(tern_driver *d)
{
    if (d->mig.nl_fd >= 0) close(d->mig.nl_fd);
    d->mig.nl_fd = -1;
}

/* The source address the kernel's route to remote uses now (port 0); 0 when there is none. */
static int route_src(const tern_addr *remote, tern_addr *src)
{
    struct sockaddr_storage ss;
    int len = tern_addr_to_sockaddr(remote, &ss);
    if (len <= 0) return 0;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int ok = connect(fd, (struct sockaddr *)&ss, (socklen_t)len) == 0 &&
             tern_udp_local_addr(fd, src) == TERN_OK;
    close(fd);
    if (ok) src->port = 0;
    return ok;
}

static drv_tracked *find(tern_driver *d, const tern_conn *c)
{
    for (size_t i = 0; i < d->mig.n_tracked; i++)
        if (d->mig.tracked[i].c == c) return &d->mig.tracked[i];
    return NULL;
}

void drv_netmon_track(tern_driver *d, tern_conn *c)
{
    drv_mig *m = &d->mig;
    if (!m->auto_on || find(d, c) != NULL || m->n_tracked == DRV_TRACKED) return;
    drv_tracked *t = &m->tracked[m->n_tracked++];
    memset(t, 0, sizeof(*t));
    t->c = c;
    t->has_src = route_src(tern_conn_remote(c), &t->src);
    if (m->watch.item.idx == SIZE_MAX) (void)drv_heap_set(&d->timers, &m->watch, d->now);
}

void drv_netmon_forget(tern_driver *d, tern_conn *c)
{
    drv_tracked *t = find(d, c);
    if (t != NULL) *t = d->mig.tracked[--d->mig.n_tracked];
}

/* Is the message a change that may move a route's source? */
static int relevant(const struct nlmsghdr *h)
{
    switch (h->nlmsg_type) {
    case RTM_NEWADDR:
    case RTM_DELADDR:
    case RTM_NEWLINK:
    case RTM_DELLINK:
        return 1;
    case RTM_NEWROUTE:
    case RTM_DELROUTE: {
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg))) return 0;
        const struct rtmsg *r = NLMSG_DATA(h);
        return r->rtm_dst_len == 0 && r->rtm_table == RT_TABLE_MAIN; /* a default route */
    }
    default:
        return 0;
    }
}

void drv_netmon_read(tern_driver *d)
{
    drv_mig *m = &d->mig;
    uint8_t buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
    int changed = 0;
    for (int k = 0; k < NETMON_READS; k++) {
        struct sockaddr_nl from;
        socklen_t flen = sizeof(from);
        ssize_t r = recvfrom(m->nl_fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOBUFS) changed = 1; /* messages were lost: look anyway */
            break;
        }
        if (flen < sizeof(from) || from.nl_pid != 0) continue; /* only the kernel's */
        /* a signed int length, as the macros intend (r <= sizeof(buf), so it fits): NLMSG_NEXT
         * lowers it by the aligned message length, which may take it below 0; only a length
         * left above 0 goes to NLMSG_OK, unsigned (its comparison with nlmsg_len) */
        int n = (int)r;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; n > 0 && NLMSG_OK(h, (unsigned)n);
             h = NLMSG_NEXT(h, n)) {
            if (!relevant(h)) continue;
            d->st.netlink_events++;
            changed = 1;
        }
        if (k == NETMON_READS - 1) d->work_left = 1; /* more may wait: come back */
    }
    if (changed && m->settle.item.idx == SIZE_MAX)
        (void)drv_heap_set(&d->timers, &m->settle, d->now + NETMON_SETTLE);
}

/* Takes a token for one automatic move; counts a refusal. */
static int may_move(tern_driver *d)
{
    if (tern__bucket_take(&d->mig.rate, &d->mig.bucket, d->now, 60 / NETMON_PER_MIN)) return 1;
    d->st.auto_limited++;
    return 0;
}

/* Moves c to a fresh socket; 1 when it moved. One that cannot move (drv_mig_movable) costs
 * neither a token nor a socket. */
static int auto_move(tern_driver *d, tern_conn *c)
{
    if (!drv_mig_movable(c) || !may_move(d)) return 0;
    return tern_driver_migrate(d, c, NULL) > 0;
}

/* The route of c took another source: a client connection on a stream of ours cannot move
 * (tern_conn_migrate keeps a stream's transport, and the TCP connection is bound to the old
 * address), so its stream closes and the core, told at once, reopens it from the new address
 * (instead of TCP failing it after TCP_USER_TIMEOUT). 1 when a stream closed. */
static int reroute_stream(tern_driver *d, tern_conn *c)
{
    tern_path_info pi;
    tern_conn_path(c, &pi);
    if (tern_conn_is_server(c) || tern_conn_get_state(c) != TERN_CONN_ESTABLISHED ||
        pi.relayed || !tern_addr_is_stream(&pi.remote))
        return 0;
    return drv_stream_reroute(d, &pi.remote);
}

static void settle_fn(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)t;
    (void)user;
    drv_mig *m = &d->mig;
    for (size_t i = 0; i < m->n_tracked; i++) {
        drv_tracked *k = &m->tracked[i];
        tern_addr src;
        int has = route_src(tern_conn_remote(k->c), &src);
        int moved_src = has && (!k->has_src || !tern_addr_equal(&src, &k->src));
        k->has_src = has;
        if (has) k->src = src;
        if (!moved_src) continue;
        if (auto_move(d, k->c)) d->st.auto_route_moves++;
        else (void)reroute_stream(d, k->c); /* counted: stream_route_closes */
    }
}

static void watch_fn(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)t;
    (void)user;
    drv_mig *m = &d->mig;
    uint64_t next = d->now + NETMON_WATCH;
    for (size_t i = 0; i < m->n_tracked; i++) {
        drv_tracked *k = &m->tracked[i];
        tern_path_info pi;
        tern_conn_path(k->c, &pi);
        if (pi.unanswered_since == 0) {
            k->silent_moves = 0; /* heard from: the next silence starts afresh */
            continue;
        }
        /* a connection with a fallback (relay, stream) is the core's to move: it falls back
         * at this same moment, and a migration would reset the silence it goes by */
        if (k->silent_moves >= DRV_SILENT_MOVES || pi.relayed || pi.has_fallback ||
            tern_addr_is_stream(&pi.remote))
            continue;
        uint64_t due = pi.unanswered_since + (pi.silent_after_ns << k->silent_moves);
        if (d->now < due) {
            if (due < next) next = due;
            continue;
        }
        k->silent_moves++; /* counted even when refused: the next try waits longer */
        if (auto_move(d, k->c)) d->st.auto_silent_moves++;
    }
    if (m->n_tracked > 0) (void)drv_heap_set(&d->timers, &m->watch, next);
}
