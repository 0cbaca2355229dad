/*
 * The tern driver's event loop and public API (see tern/driver.h).
 *
 * One iteration: wait in epoll (level-triggered) for the sockets, the stop eventfd and the
 * earliest timer; read the monotonic clock once and keep it as `now` for everything the
 * iteration does; read each ready socket up to its bound (io.c); run the timers that are due from
 * the min-heap (timer.c), the endpoint's deadline being one of them; then, "before sleep", flush
 * what the core has to send and re-arm the endpoint timer from tern_endpoint_next_deadline().
 * The core's pacer expresses itself through that deadline: the driver asks the core for
 * datagrams only at `now`, and wakes at the next deadline, so sends leave at the times the core
 * chose (with epoll_pwait2 the wait has nanosecond resolution; the embedding API rounds up to
 * milliseconds). Every bound (datagrams read per socket, datagrams sent per flush, timers per
 * iteration) sets work_left when it stops the work, and the next wait then does not sleep, so
 * one busy socket or a flood of output cannot starve the rest.
 *
 * The driver watches on_accept, on_established and on_conn_free (the rest of the application's
 * callbacks, the flow events included, reach the core untouched; what a callback queues goes
 * out at the flush before the loop sleeps, so a sender refilling from on_flow_writable needs
 * no timer) to keep the set of live connections (conns.c), which
 * tern_driver_shutdown() closes with a code and reason before it drains the loop.
 * tern_driver_stop() only writes to an eventfd, so a signal handler or another thread may call it.
 * An rx_hook sees each datagram before the core (io.c's deliver asks drv_rx_hooked), and
 * tern_driver_send_raw queues a datagram past the core in a second send queue that goes out the
 * same way as the core's (sendmmsg, GSO for runs to one address, EPOLLOUT when a socket is full)
 * when the receive batch is done (tern_driver_flush) or the queue of 64 is full: ternd's relay
 * is the user.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "driver/driver_int.h"

#define STOP_TAG UINT64_MAX
#define MAX_EVENTS 16
#define MAX_WAIT_NS (3600ull * TERN_NS_PER_S)

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * TERN_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- callback wrappers */

/* The endpoint keeps the application's callbacks and user_data untouched (so callbacks the core
 * adds later pass straight through); the three the driver needs to see find their driver by
 * endpoint in this registry, a short list guarded by a mutex (one entry per driver). */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static tern_driver *reg_head;

static tern_driver *driver_of(const tern_conn *c)
{
    const tern_endpoint *ep = tern_conn_endpoint(c);
    pthread_mutex_lock(&reg_lock);
    tern_driver *d = reg_head;
    while (d && d->ep != ep) d = d->reg_next;
    pthread_mutex_unlock(&reg_lock);
    return d;
}

static void reg_add(tern_driver *d)
{
    pthread_mutex_lock(&reg_lock);
    d->reg_next = reg_head;
    reg_head = d;
    pthread_mutex_unlock(&reg_lock);
}

static void reg_del(tern_driver *d)
{
    pthread_mutex_lock(&reg_lock);
    for (tern_driver **pp = &reg_head; *pp; pp = &(*pp)->reg_next) {
        if (*pp == d) {
            *pp = d->reg_next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

static int cb_accept(tern_conn *c, void *user)
{
    tern_driver *d = driver_of(c);
    if (d == NULL) return 0;
    int rc = d->app_cb.on_accept ? d->app_cb.on_accept(c, user) : 0;
    (void)drv_conns_add(&d->conns, c); /* refused ones too: they still close and get freed */
    return rc;
}

static void cb_established(tern_conn *c, void *user)
{
    tern_driver *d = driver_of(c);
    if (d == NULL) return;
    (void)drv_conns_add(&d->conns, c);
    if (!tern_conn_is_server(c)) drv_netmon_track(d, c); /* automatic migration */
    if (d->app_cb.on_established) d->app_cb.on_established(c, user);
}

static void cb_conn_free(tern_conn *c, void *user)
{
    tern_driver *d = driver_of(c);
    if (d == NULL) return;
    drv_conns_del(&d->conns, c);
    drv_netmon_forget(d, c);
    if (d->app_cb.on_conn_free) d->app_cb.on_conn_free(c, user);
}

/* ---------------------------------------------------------------- setup */

void tern_driver_config_default(tern_driver_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    tern_endpoint_config_default(&cfg->endpoint);
    cfg->sockbuf_bytes = 4 << 20;
    cfg->rx_batch = 64;
    cfg->rx_per_wakeup = 256;
    cfg->tx_per_wakeup = 1024;
    cfg->migrate_linger_ns = 3 * TERN_NS_PER_S;
    cfg->stream_limits.max_streams = 10000;
    cfg->stream_limits.max_per_ip = 64;
    cfg->stream_limits.write_buffer = 1280 * 1024; /* above the core's stream_window */
    cfg->stream_limits.preamble_timeout_ns = 5 * TERN_NS_PER_S;
    cfg->stream_limits.idle_timeout_ns = 60 * TERN_NS_PER_S;
    cfg->stream_limits.accept_rate = 50;
    cfg->stream_limits.buffer_total = 256ull << 20; /* 12.5 GiB would be max x write_buffer */
}

static void ep_timer_fn(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)t;
    (void)user;
    tern_endpoint_handle_expiry(d->ep, d->now);
}

int drv_add_socket(tern_driver *d, const tern_addr *a, int bufsize, int no_gso, int no_gro)
{
    if (d->n_socks == TERN_DRIVER_MAX_SOCKETS) return TERN_ERR_LIMIT;
    drv_sock *s = &d->socks[d->n_socks];
    int rc = drv_sock_open(s, a, bufsize, no_gso, no_gro);
    if (rc != TERN_OK) return rc;
    if (d->n_socks == 0) {
        d->st.rcvbuf = s->rcvbuf;
        d->st.sndbuf = s->sndbuf;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = d->n_socks;
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
        int e = errno;
        tern_udp_sock_close(s);
        errno = e;
        return TERN_ERR_STATE;
    }
    d->want_out[d->n_socks] = 0;
    d->n_socks++;
    return TERN_OK;
}

static int add_socket(tern_driver *d, const tern_addr *a, const tern_driver_config *cfg)
{
    return drv_add_socket(d, a, cfg->sockbuf_bytes, cfg->disable_gso, cfg->disable_gro);
}

int tern_driver_new(const tern_driver_config *cfg, tern_driver **out)
{
    if (cfg == NULL || out == NULL || cfg->n_listen > TERN_DRIVER_MAX_SOCKETS ||
        cfg->rx_batch == 0 || cfg->rx_batch > 1024 || cfg->rx_per_wakeup == 0 ||
        cfg->tx_per_wakeup == 0)
        return TERN_ERR_INVALID_ARG;
    tern_driver *d = calloc(1, sizeof(*d));
    if (d == NULL) return TERN_ERR_NOMEM;
    d->epfd = d->stopfd = -1;
    d->ep_timer.d = d;
    d->ep_timer.fn = ep_timer_fn;
    d->ep_timer.item = TERN__HEAP_ITEM_INIT;
    d->rx_per_wakeup = cfg->rx_per_wakeup;
    d->tx_per_wakeup = cfg->tx_per_wakeup;
    d->use_pwait2 = 1;
    d->rx_hook = cfg->rx_hook;
    d->rx_hook_user = cfg->rx_hook_user;
    d->alloc.mem = *tern_mem_default();
    d->mig.nl_fd = -1;
    int rc = drv_heap_init(&d->timers, &d->alloc);
    if (rc == TERN_OK) rc = drv_conns_init(&d->conns, &d->alloc);
    if (rc != TERN_OK) goto fail;
    rc = TERN_ERR_STATE;
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    d->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->epfd < 0 || d->stopfd < 0) goto fail;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = STOP_TAG;
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->stopfd, &ev) != 0) goto fail;

    if (cfg->n_listen == 0) {
        tern_addr any4, any6;
        tern_addr_ipv4(&any4, 0, 0, 0, 0, 0);
        memset(&any6, 0, sizeof(any6));
        any6.family = TERN_AF_INET6;
        if ((rc = add_socket(d, &any4, cfg)) != TERN_OK) goto fail;
        (void)add_socket(d, &any6, cfg); /* a host without IPv6 is fine for a client */
    } else {
        for (size_t i = 0; i < cfg->n_listen; i++)
            if ((rc = add_socket(d, &cfg->listen[i], cfg)) != TERN_OK) goto fail;
    }
    int any_gro = 0;
    d->st.gso = d->st.gro = 1;
    for (size_t i = 0; i < d->n_socks; i++) {
        any_gro |= d->socks[i].gro;
        d->st.gso &= d->socks[i].gso;
        d->st.gro &= d->socks[i].gro;
    }
    rc = any_gro
             ? tern_udp_batch_init(&d->rx,
                                   cfg->rx_batch < DRV_GRO_BATCH ? cfg->rx_batch : DRV_GRO_BATCH,
                                   DRV_GRO_SLOT)
             : tern_udp_batch_init(&d->rx, cfg->rx_batch, 2048);
    if (rc == TERN_OK) rc = tern_udp_batch_init(&d->txm, DRV_TX_BATCH, 0);
    if (rc == TERN_OK) rc = drv_streams_new(d, cfg);
    if (rc != TERN_OK) goto fail;
    d->tx = calloc(1, sizeof(*d->tx));
    if (d->tx == NULL) {
        rc = TERN_ERR_NOMEM;
        goto fail;
    }

    tern_endpoint_config ecfg = cfg->endpoint;
    d->app_cb = ecfg.callbacks;
    ecfg.callbacks.on_accept = cb_accept;
    ecfg.callbacks.on_established = cb_established;
    ecfg.callbacks.on_conn_free = cb_conn_free;
    d->now = clock_ns();
    rc = tern_endpoint_new(&ecfg, d->now, &d->ep);
    if (rc != TERN_OK) goto fail;
    if ((rc = drv_mig_init(d, cfg, any_gro)) != TERN_OK) goto fail;
    reg_add(d);
    *out = d;
    return TERN_OK;
fail:;
    int e = errno;
    tern_driver_del(d);
    errno = e;
    return rc;
}

void tern_driver_del(tern_driver *d)
{
    if (d == NULL) return;
    if (d->ep) {
        reg_del(d);
        tern_endpoint_del(d->ep); /* no on_conn_free: the set below just goes */
        d->ep = NULL;
    }
    drv_mig_free(d);
    drv_streams_del(d); /* after the endpoint: nobody to tell that they close */
    for (size_t i = 0; i < d->n_socks; i++) tern_udp_sock_close(&d->socks[i]);
    if (d->epfd >= 0) close(d->epfd);
    if (d->stopfd >= 0) close(d->stopfd);
    tern_udp_batch_free(&d->rx);
    tern_udp_batch_free(&d->txm);
    free(d->tx);
    free(d->raw);
    drv_heap_free(&d->timers);
    drv_conns_free(&d->conns);
    free(d);
}

/* ---------------------------------------------------------------- accessors */

tern_endpoint *tern_driver_endpoint(tern_driver *d)
{
    return d->ep;
}

uint64_t tern_driver_now(const tern_driver *d)
{
    return d->now;
}

uint64_t tern_driver_update_now(tern_driver *d)
{
    d->now = clock_ns();
    return d->now;
}

size_t tern_driver_n_sockets(const tern_driver *d)
{
    return d->n_socks;
}

int tern_driver_local_addr(const tern_driver *d, size_t i, tern_addr *out)
{
    if (d == NULL || out == NULL || i >= d->n_socks) return TERN_ERR_INVALID_ARG;
    *out = d->socks[i].local;
    return TERN_OK;
}

int tern_driver_fd(const tern_driver *d)
{
    return d->epfd;
}

void tern_driver_get_stats(const tern_driver *d, tern_driver_stats *st)
{
    *st = d->st;
    for (size_t i = 0; i < d->n_socks; i++) { /* the counters the sockets keep themselves */
        const tern_udp_stats *u = &d->socks[i].st;
        st->rx_syscalls += u->rx_syscalls;
        st->rx_gro_batches += u->rx_gro_batches;
        st->rx_errors += u->rx_errors;
        st->tx_blocked += u->tx_blocked;
        st->gso_fallbacks += u->gso_fallbacks;
    }
}

/* The address a connection's packets to remote leave from: the bound address of the first UDP
 * socket that can reach remote's family, or for a stream remote the wildcard of its family with
 * its transport (the stream's own socket is opened by stream.c at the first send). */
static int local_for(const tern_driver *d, const tern_addr *remote, tern_addr *local)
{
    if (tern_addr_is_stream(remote)) {
        if (remote->family != TERN_AF_INET && remote->family != TERN_AF_INET6)
            return TERN_ERR_INVALID_ARG;
        memset(local, 0, sizeof(*local));
        local->family = remote->family;
        local->transport = remote->transport;
        return TERN_OK;
    }
    for (size_t i = 0; i < d->n_socks; i++) {
        const drv_sock *t = &d->socks[i];
        if ((remote->family == TERN_AF_INET && (t->family == AF_INET || !t->v6only)) ||
            (remote->family == TERN_AF_INET6 && t->family == AF_INET6)) {
            *local = t->local;
            return TERN_OK;
        }
    }
    return TERN_ERR_INVALID_ARG;
}

int tern_driver_connect(tern_driver *d, const tern_addr *remote,
                        const uint8_t server_pub[TERN_KEY_LEN], tern_conn **out)
{
    if (d == NULL || remote == NULL || server_pub == NULL || out == NULL)
        return TERN_ERR_INVALID_ARG;
    tern_addr local;
    if (local_for(d, remote, &local) != TERN_OK) return TERN_ERR_INVALID_ARG;
    d->now = clock_ns();
    int rc = tern_endpoint_connect(d->ep, d->now, &local, remote, server_pub, out);
    if (rc != TERN_OK) return rc;
    (void)drv_conns_add(&d->conns, *out);
    tern_driver_flush(d);
    return TERN_OK;
}

int tern_driver_connect_opts(tern_driver *d, const tern_driver_connect_cfg *o, tern_conn **out)
{
    if (d == NULL || o == NULL || out == NULL || o->choice > TERN_TRANSPORT_ONLY_STREAM)
        return TERN_ERR_INVALID_ARG;
    tern_connect_opts co;
    tern_connect_opts_default(&co);
    memcpy(co.server_pub, o->server_pub, TERN_KEY_LEN);
    if (o->stream_after_ns) co.stream_after_ns = o->stream_after_ns;
    int udp = o->choice != TERN_TRANSPORT_ONLY_STREAM && o->remote.family != TERN_AF_NONE;
    int stream = o->choice != TERN_TRANSPORT_ONLY_UDP && o->stream_remote.family != TERN_AF_NONE;
    if (!udp && !stream) return TERN_ERR_INVALID_ARG;
    if (udp) {
        if (tern_addr_is_stream(&o->remote) || local_for(d, &o->remote, &co.local) != TERN_OK)
            return TERN_ERR_INVALID_ARG;
        co.remote = o->remote;
    }
    if (stream) {
        if (!tern_addr_is_stream(&o->stream_remote) ||
            local_for(d, &o->stream_remote, &co.stream_local) != TERN_OK)
            return TERN_ERR_INVALID_ARG;
        co.stream_remote = o->stream_remote;
        int rc = drv_streams_set_sni(d, &o->stream_remote, o->tls_server_name);
        if (rc != TERN_OK) return rc;
    }
    d->now = clock_ns();
    int rc = tern_endpoint_connect_opts(d->ep, d->now, &co, out);
    if (rc != TERN_OK) return rc;
    (void)drv_conns_add(&d->conns, *out);
    tern_driver_flush(d);
    return TERN_OK;
}

/* ---------------------------------------------------------------- datagrams outside the core */

int drv_rx_hooked(tern_driver *d, const drv_sock *s, const tern_addr *from, uint8_t *p,
                  size_t len)
{
    if (!d->rx_hook(d, (size_t)(s - d->socks), from, p, len, d->rx_hook_user)) return 0;
    d->st.rx_hooked++;
    return 1;
}

int tern_driver_send_raw(tern_driver *d, size_t sock, const tern_addr *to, const uint8_t *data,
                         size_t len)
{
    if (d == NULL || to == NULL || (data == NULL && len) || len > TERN_MAX_DATAGRAM)
        return TERN_ERR_INVALID_ARG;
    if (tern_addr_is_stream(to)) { /* a frame on the open stream to `to` (stream.c) */
        tern_datagram g;
        memset(&g, 0, sizeof(g));
        g.remote = *to;
        g.data = (uint8_t *)(uintptr_t)data;
        g.len = len;
        int rc = drv_stream_send(d, &g, 0);
        if (rc == TERN_OK) d->st.tx_raw++;
        else d->st.tx_raw_errors++;
        return rc;
    }
    if (sock == TERN_DRIVER_STREAM_SOCK) { /* from a stream to UDP: a socket of to's family */
        tern_addr local;
        if (local_for(d, to, &local) != TERN_OK) return TERN_ERR_INVALID_ARG;
        for (sock = 0; sock < d->n_socks && !tern_addr_equal(&d->socks[sock].local, &local);)
            sock++;
    }
    if (sock >= d->n_socks) return TERN_ERR_INVALID_ARG;
    struct sockaddr_storage ss;
    if (tern_udp_sockaddr_for(&d->socks[sock], to, &ss) == 0) return TERN_ERR_INVALID_ARG;
    if (d->raw == NULL) {
        if ((d->raw = calloc(1, sizeof(*d->raw))) == NULL) return TERN_ERR_NOMEM;
        d->raw->raw = 1;
    }
    drv_tx *q = d->raw;
    if (q->done == q->n) q->n = q->done = 0;
    if (q->n == DRV_TX_BATCH && !d->tx_blocked) { /* full: send what waits, start again */
        drv_send_queued(d, q);
        if (q->done == q->n) q->n = q->done = 0;
    }
    if (q->n == DRV_TX_BATCH) { /* a socket is full and the queue with it: dropped */
        d->st.tx_raw_errors++;
        return TERN_ERR_AGAIN;
    }
    tern_datagram *g = &q->dg[q->n];
    g->local = d->socks[sock].local; /* leaves from socket sock */
    g->remote = *to;
    g->data = q->buf + q->n * TERN_MAX_DATAGRAM;
    g->len = len;
    if (len) memcpy(g->data, data, len);
    q->n++;
    return TERN_OK;
}

/* ---------------------------------------------------------------- the loop */

static void arm_ep_timer(tern_driver *d)
{
    uint64_t dl = tern_endpoint_next_deadline(d->ep);
    if (dl == TERN_TIME_NEVER) drv_heap_remove(&d->timers, &d->ep_timer);
    else if (drv_heap_set(&d->timers, &d->ep_timer, dl) != TERN_OK) d->work_left = 1;
}

void tern_driver_flush(tern_driver *d)
{
    if (d->raw != NULL && !d->tx_blocked) drv_send_queued(d, d->raw); /* the relay's first */
    drv_tx *tx = d->tx;
    size_t budget = d->tx_per_wakeup;
    while (!d->tx_blocked) {
        if (tx->done == tx->n) {
            if (budget == 0) {
                d->work_left = 1;
                break;
            }
            size_t max = budget < DRV_TX_BATCH ? budget : DRV_TX_BATCH;
            int n = tern_endpoint_send(d->ep, d->now, tx->dg, max, tx->buf, sizeof(tx->buf));
            if (n <= 0) break;
            tx->n = (size_t)n;
            tx->done = 0;
            budget -= (size_t)n;
        }
        drv_send_queued(d, tx);
    }
    drv_streams_flush(d); /* the frames queued on streams above */
    arm_ep_timer(d);
}

static void run_timers(tern_driver *d)
{
    for (unsigned k = 0;; k++) {
        tern_driver_timer *t = drv_heap_top(&d->timers);
        if (t == NULL || t->item.deadline > d->now) return;
        if (k == DRV_TIMERS_PER_ITER) {
            d->work_left = 1;
            return;
        }
        drv_heap_remove(&d->timers, t);
        if (t != &d->ep_timer) d->st.timers_fired++;
        t->fn(d, t, t->user); /* may free t */
    }
}

/* Nanoseconds to wait: -1 forever, 0 not at all. */
static int64_t wait_ns(tern_driver *d)
{
    if (d->work_left) return 0;
    const tern_driver_timer *t = drv_heap_top(&d->timers);
    if (t == NULL) return -1;
    uint64_t now = clock_ns();
    if (t->item.deadline <= now) return 0;
    uint64_t w = t->item.deadline - now;
    return (int64_t)(w > MAX_WAIT_NS ? MAX_WAIT_NS : w);
}

static int wait_events(tern_driver *d, struct epoll_event *ev, int64_t ns)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
    if (d->use_pwait2) {
        struct timespec ts, *tsp = NULL;
        if (ns >= 0) {
            ts.tv_sec = (time_t)(ns / (int64_t)TERN_NS_PER_S);
            ts.tv_nsec = (long)(ns % (int64_t)TERN_NS_PER_S);
            tsp = &ts;
        }
        int n = epoll_pwait2(d->epfd, ev, MAX_EVENTS, tsp, NULL);
        if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
        d->use_pwait2 = 0; /* old kernel or a seccomp filter: milliseconds it is */
    }
#endif
    int ms = ns < 0 ? -1 : (int)((ns + (int64_t)TERN_NS_PER_MS - 1) / (int64_t)TERN_NS_PER_MS);
    return epoll_wait(d->epfd, ev, MAX_EVENTS, ms);
}

/* One iteration. Returns 1 when a stop was requested, 0, or TERN_ERR_STATE. */
static int iterate(tern_driver *d, int64_t ns)
{
    struct epoll_event ev[MAX_EVENTS];
    int n = wait_events(d, ev, ns);
    if (n < 0) {
        if (errno != EINTR) return TERN_ERR_STATE;
        n = 0;
    }
    d->now = clock_ns();
    d->st.iterations++;
    d->work_left = 0;
    int stopped = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u64 == STOP_TAG) {
            uint64_t v = 0;
            ssize_t r;
            do {
                r = read(d->stopfd, &v, sizeof(v));
            } while (r < 0 && errno == EINTR);
            if (r == (ssize_t)sizeof(v)) d->stops += (unsigned)v;
            stopped = 1;
            continue;
        }
        if (ev[i].data.u64 == DRV_NETMON_TAG) { /* netlink: netmon.c */
            drv_netmon_read(d);
            continue;
        }
        if (drv_stream_event(d, ev[i].data.u64, ev[i].events)) continue; /* stream.c's */
        size_t si = (size_t)ev[i].data.u64;
        if (si >= d->n_socks) continue;
        if (ev[i].events & EPOLLOUT) {
            d->tx_blocked = 0;
            drv_want_out(d, si, 0);
        }
        if (ev[i].events & EPOLLERR) {
            int err = 0;
            socklen_t l = sizeof(err);
            (void)getsockopt(d->socks[si].fd, SOL_SOCKET, SO_ERROR, &err, &l); /* clears it */
        }
        if (ev[i].events & EPOLLIN) drv_read_socket(d, si);
    }
    drv_streams_reap(d); /* streams closed by this batch's events, no longer named by any */
    run_timers(d);
    tern_driver_flush(d);
    return stopped;
}

int tern_driver_run(tern_driver *d)
{
    for (;;) {
        int rc = iterate(d, wait_ns(d));
        if (rc < 0) return rc;
        if (rc == 1) return TERN_OK;
    }
}

void tern_driver_stop(tern_driver *d)
{
    uint64_t one = 1;
    ssize_t r;
    int e = errno; /* a signal handler must leave errno as it found it */
    do {
        r = write(d->stopfd, &one, sizeof(one));
    } while (r < 0 && errno == EINTR);
    errno = e;
}

int tern_driver_timeout_ms(tern_driver *d)
{
    int64_t ns = wait_ns(d);
    if (ns < 0) return -1;
    return (int)((ns + (int64_t)TERN_NS_PER_MS - 1) / (int64_t)TERN_NS_PER_MS);
}

int tern_driver_process(tern_driver *d)
{
    return iterate(d, 0);
}

int tern_driver_shutdown(tern_driver *d, uint64_t app_code, const char *reason, uint64_t grace_ns)
{
    unsigned stops0 = d->stops;
    size_t rlen = reason ? strlen(reason) : 0;
    d->now = clock_ns();
    size_t n;
    tern_conn **list = drv_conns_copy(&d->conns, &n);
    for (size_t i = 0; i < n; i++)
        if (tern_conn_get_state(list[i]) < TERN_CONN_CLOSING)
            (void)tern_conn_close(list[i], d->now, app_code, reason, rlen);
    free(list);
    tern_driver_flush(d);
    uint64_t deadline = d->now + grace_ns;
    while (d->conns.n > 0) {
        uint64_t now = clock_ns();
        if (now >= deadline) break;
        int64_t ns = wait_ns(d);
        if (ns < 0 || (uint64_t)ns > deadline - now) ns = (int64_t)(deadline - now);
        int rc = iterate(d, ns);
        if (rc < 0) return rc;
        if (d->stops != stops0) break; /* asked again: stop waiting */
    }
    return (int)d->conns.n;
}
