/*
 * The driver's side of client-driven migration (tern_driver_migrate, tern/driver.h): fresh UDP
 * sockets added to the driver's set, connections moved onto them with tern_conn_migrate, and the
 * sockets they left kept open a while for packets still on their way, then closed.
 *
 * Sockets. A migration opens one socket per address family it needs (bound to the caller's
 * address, or to the wildcard with an ephemeral port) the way the configured ones were opened
 * (buffers, GSO; GRO only where the receive slots can hold a GRO train), and registers it with
 * epoll as the last socket. A socket that a move left gets a close time migrate_linger_ns ahead;
 * when that comes (one driver timer, at the earliest close time) it closes if no connection uses
 * it any more (a connection uses a socket when its path's local address has the socket's port
 * and, unless the socket is bound to a wildcard, its address), else it is looked at again one
 * linger later. A server's configured sockets never close. Closing shifts the sockets above it
 * down one index and re-registers them with epoll under their new index. When every slot is
 * taken, the lingering socket that would close first closes at once to make room.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "driver/driver_int.h"

static void linger_fn(tern_driver *d, tern_driver_timer *t, void *user);

int drv_mig_init(tern_driver *d, const tern_driver_config *cfg, int any_gro)
{
    drv_mig *m = &d->mig;
    m->linger_ns = cfg->migrate_linger_ns;
    m->sockbuf = cfg->sockbuf_bytes;
    m->no_gso = cfg->disable_gso;
    m->no_gro = cfg->disable_gro || !any_gro; /* the receive slots were sized without GRO */
    for (size_t i = 0; i < TERN_DRIVER_MAX_SOCKETS; i++) {
        m->close_at[i] = TERN_TIME_NEVER;
        m->keep[i] = i < d->n_socks && cfg->endpoint.is_server;
    }
    m->linger.d = d;
    m->linger.fn = linger_fn;
    m->linger.item = TERN__HEAP_ITEM_INIT;
    m->auto_on = !cfg->no_auto_migrate && !cfg->endpoint.is_server;
    return m->auto_on ? drv_netmon_start(d) : TERN_OK;
}

void drv_mig_free(tern_driver *d)
{
    drv_netmon_stop(d); /* the timers go with the driver's heap */
}

/* Does the connection with path local address a use socket s? */
static int serves(const drv_sock *s, const tern_addr *a)
{
    static const uint8_t any[16];
    if (a->port != s->local.port || tern_addr_is_stream(a)) return 0;
    size_t n = s->local.family == TERN_AF_INET6 ? 16 : 4;
    return memcmp(s->local.ip, any, n) == 0 || tern_addr_equal(a, &s->local);
}

static int sock_in_use(tern_driver *d, size_t i, tern_conn **list, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        tern_path_info pi;
        tern_conn_path(list[k], &pi);
        if (tern_conn_get_state(list[k]) < TERN_CONN_CLOSING && serves(&d->socks[i], &pi.local))
            return 1;
    }
    return 0;
}

/* Closes socket i: the sockets above it move down one index (epoll learns their new one). */
static void close_socket(tern_driver *d, size_t i)
{
    drv_sock *s = &d->socks[i];
    /* its counters stay in the driver's totals */
    d->st.rx_syscalls += s->st.rx_syscalls;
    d->st.rx_gro_batches += s->st.rx_gro_batches;
    d->st.rx_errors += s->st.rx_errors;
    d->st.tx_blocked += s->st.tx_blocked;
    d->st.gso_fallbacks += s->st.gso_fallbacks;
    (void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    tern_udp_sock_close(s);
    if (d->want_out[i]) d->tx_blocked = 0; /* the queue tries again (pick_socket finds another) */
    for (size_t j = i; j + 1 < d->n_socks; j++) {
        d->socks[j] = d->socks[j + 1];
        d->want_out[j] = d->want_out[j + 1];
        d->mig.close_at[j] = d->mig.close_at[j + 1];
        d->mig.keep[j] = d->mig.keep[j + 1];
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | (d->want_out[j] ? EPOLLOUT : 0);
        ev.data.u64 = j;
        (void)epoll_ctl(d->epfd, EPOLL_CTL_MOD, d->socks[j].fd, &ev);
    }
    d->n_socks--;
    d->socks[d->n_socks].fd = -1;
    d->want_out[d->n_socks] = 0;
    d->mig.close_at[d->n_socks] = TERN_TIME_NEVER;
    d->mig.keep[d->n_socks] = 0;
    d->st.sockets_closed++;
}

static void arm_linger(tern_driver *d)
{
    uint64_t t = TERN_TIME_NEVER;
    for (size_t i = 0; i < d->n_socks; i++)
        if (d->mig.close_at[i] < t) t = d->mig.close_at[i];
    if (t == TERN_TIME_NEVER) drv_heap_remove(&d->timers, &d->mig.linger);
    else (void)drv_heap_set(&d->timers, &d->mig.linger, t); /* no room: the next move re-arms */
}

/* Closes the lingering sockets that are due and no longer used (a used one is looked at again
 * one linger later); force: also the unused lingering socket due first, at once. */
static void close_due(tern_driver *d, int force)
{
    size_t n;
    tern_conn **list = drv_conns_copy(&d->conns, &n);
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < d->n_socks;) {
        if (d->mig.close_at[i] == TERN_TIME_NEVER) {
            i++;
        } else if (sock_in_use(d, i, list, n)) {
            if (d->mig.close_at[i] <= d->now) d->mig.close_at[i] = d->now + d->mig.linger_ns;
            i++;
        } else if (d->mig.close_at[i] <= d->now) {
            close_socket(d, i); /* the next one is at i now */
        } else {
            if (best == SIZE_MAX || d->mig.close_at[i] < d->mig.close_at[best]) best = i;
            i++;
        }
    }
    if (force && best != SIZE_MAX && d->n_socks == TERN_DRIVER_MAX_SOCKETS) close_socket(d, best);
    free(list);
    arm_linger(d);
}

static void linger_fn(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)t;
    (void)user;
    close_due(d, 0);
}

/* Opens a fresh socket bound to a (when every slot is taken, the unused lingering socket due
 * first closes to make room); its bound address in *out. Errors as drv_add_socket. */
static int open_socket(tern_driver *d, const tern_addr *a, tern_addr *out)
{
    if (d->n_socks == TERN_DRIVER_MAX_SOCKETS) close_due(d, 1);
    int rc = drv_add_socket(d, a, d->mig.sockbuf, d->mig.no_gso, d->mig.no_gro);
    if (rc != TERN_OK) return rc;
    size_t i = d->n_socks - 1;
    d->mig.close_at[i] = TERN_TIME_NEVER;
    d->mig.keep[i] = 0;
    d->st.gso &= d->socks[i].gso;
    d->st.gro &= d->socks[i].gro;
    d->st.sockets_opened++;
    *out = d->socks[i].local;
    return TERN_OK;
}

/* The socket whose local address is a, or -1. */
static int socket_of(const tern_driver *d, const tern_addr *a)
{
    for (size_t i = 0; i < d->n_socks; i++)
        if (serves(&d->socks[i], a)) return (int)i;
    return -1;
}

int drv_mig_movable(tern_conn *c)
{
    tern_path_info pi;
    tern_conn_path(c, &pi);
    return !tern_conn_is_server(c) && tern_conn_get_state(c) == TERN_CONN_ESTABLISHED &&
           !pi.relayed && !tern_addr_is_stream(&pi.remote);
}

int tern_driver_migrate(tern_driver *d, tern_conn *conn, const tern_addr *local)
{
    if (d == NULL || (local != NULL && (local->family == TERN_AF_NONE ||
                                        tern_addr_is_stream(local))))
        return TERN_ERR_INVALID_ARG;
    size_t n = 0;
    tern_conn **list = NULL, *one[1] = {conn};
    if (conn != NULL) {
        n = 1;
    } else if ((list = drv_conns_copy(&d->conns, &n)) == NULL && d->conns.n > 0) {
        return TERN_ERR_NOMEM;
    }
    tern_conn **cs = conn != NULL ? one : list;
    /* the fresh socket for IPv4 and for IPv6 destinations (by address: indices may shift) */
    tern_addr fresh[2];
    int opened[2] = {0, 0}, moved_to[2] = {0, 0}, moved = 0, err = TERN_OK;
    tern_driver_update_now(d);
    for (size_t k = 0; k < n; k++) {
        tern_conn *c = cs[k];
        if (conn == NULL && !drv_mig_movable(c)) continue;
        tern_path_info pi;
        tern_conn_path(c, &pi);
        int v6 = pi.remote.family == TERN_AF_INET6;
        /* a socket of the other family cannot reach it (either way: an IPv6 socket bound to
         * an address sends no IPv4) */
        if (local != NULL && local->family != pi.remote.family) {
            err = TERN_ERR_INVALID_ARG;
            continue;
        }
        if (!opened[v6]) {
            tern_addr a;
            if (local != NULL) {
                a = *local;
            } else {
                memset(&a, 0, sizeof(a));
                a.family = v6 ? TERN_AF_INET6 : TERN_AF_INET;
            }
            int rc = open_socket(d, &a, &fresh[v6]);
            if (rc != TERN_OK) {
                err = rc;
                break;
            }
            opened[v6] = 1;
        }
        int old = socket_of(d, &pi.local);
        int rc = tern_conn_migrate(c, d->now, &fresh[v6]);
        if (rc != TERN_OK) {
            err = rc;
            continue;
        }
        moved++;
        moved_to[v6]++;
        d->st.migrations++;
        if (old >= 0 && !tern_addr_equal(&d->socks[old].local, &fresh[v6]) &&
            !d->mig.keep[old] && d->mig.close_at[old] == TERN_TIME_NEVER)
            d->mig.close_at[old] = d->now + d->mig.linger_ns;
    }
    free(list);
    for (int f = 0; f < 2; f++) { /* a fresh socket nobody moved to goes again */
        if (!opened[f] || moved_to[f]) continue;
        for (size_t i = 0; i < d->n_socks; i++)
            if (tern_addr_equal(&d->socks[i].local, &fresh[f])) {
                close_socket(d, i);
                d->st.sockets_opened--;
                d->st.sockets_closed--;
                break;
            }
    }
    arm_linger(d);
    if (moved > 0) return moved;
    return conn != NULL || err == TERN_ERR_LIMIT || err == TERN_ERR_STATE ? err : 0;
}
