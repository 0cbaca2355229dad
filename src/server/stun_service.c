/*
 * ternd's STUN service: UDP workers and one TCP thread around the sans-I/O responder.
 *
 * UDP: every worker thread owns one socket per listening address, all bound to the shared port
 * with SO_REUSEPORT so the kernel spreads clients over the workers, and its own tern_stun_server
 * (no locks, no allocation per request). A worker drains its sockets with recvmmsg, answers the
 * batch, and sends the answers with one sendmmsg; it sleeps in poll() only when every socket is
 * empty, waking at least every 100 ms to see the stop flag. With an alternate address (RFC 5780)
 * each worker owns the four sockets {IP1, IP2} x {PORT1, PORT2} and sends CHANGE-REQUEST answers
 * from the one the responder picks.
 * TCP (RFC 8489 framing: messages back to back, cut by their length field): one thread polls the
 * listeners and up to 256 connections, each with a fixed buffer; a malformed frame, a full
 * output queue or 30 s of silence closes the connection.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/service.h"
#include "tern/udp.h"

#define MAX_SOCKS 4
#define TCP_MAX_CONNS 256
#define TCP_BUF 4096
#define TCP_IDLE_NS (30ull * TERN_NS_PER_S)

typedef struct stun_svc stun_svc;

typedef struct worker {
    pthread_t th;
    int started;
    stun_svc *svc;
    int n_fds;
    int fds[MAX_SOCKS];
    tern_addr local[MAX_SOCKS];
    tern_udp_batch rx, tx;
    uint64_t rx_errors, oversize, tx_failed, tx_unsent;
    tern_stun_server srv;
} worker;

/* UDP GSO for answers (on unless TERND_STUN_GSO=0 and where the kernel knows UDP_SEGMENT): the
 * answers of one batch to the same client with the same length leave in one send; the client
 * still receives one datagram per answer. */
static int gso_wanted(void)
{
    const char *e = getenv("TERND_STUN_GSO");
    return !(e && e[0] == '0');
}

typedef struct tcp_conn {
    int fd;
    size_t fill;
    uint64_t last_ns;
    tern_addr remote, local;
    uint8_t buf[TCP_BUF];
} tcp_conn;

struct stun_svc {
    ternd_config cfg;
    atomic_int stop;
    int n_workers;
    worker *workers;
    int n_addrs;
    tern_addr addrs[MAX_SOCKS];      /* the UDP addresses every worker binds */
    /* TCP */
    pthread_t tcp_th;
    int tcp_started;
    int n_listeners;
    int listeners[TERND_MAX_LISTEN];
    tern_addr listen_addr[TERND_MAX_LISTEN];
    tcp_conn *conns[TCP_MAX_CONNS];
    uint64_t tcp_accepted, tcp_refused, tcp_closed_bad, tcp_idle_closed, tcp_tx_short;
    tern_stun_server tcp_srv;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * TERN_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- UDP workers */

static void worker_serve(worker *w, int k, uint64_t now, int n)
{
    size_t m = 0;
    for (int i = 0; i < n; i++) {
        if (w->rx.len[i] > w->rx.slot_size) {
            w->oversize++; /* larger than any STUN message we accept: dropped, counted */
            continue;
        }
        tern_stun_reply rep;
        int rc = tern_stun_server_respond(&w->srv, now, &w->local[k], &w->rx.addr[i], 0,
                                          tern_udp_slot(&w->rx, (size_t)i), w->rx.len[i],
                                          tern_udp_slot(&w->tx, m), w->tx.slot_size, &rep);
        if (rc <= 0) continue;
        if (!tern_addr_equal(&rep.from, &w->local[k])) {
            /* CHANGE-REQUEST: answer from the socket bound to the changed address */
            int sent = 0;
            for (int j = 0; j < w->n_fds; j++)
                if (tern_addr_equal(&rep.from, &w->local[j])) {
                    sent = tern_udp_send_one(w->fds[j], &rep.to, tern_udp_slot(&w->tx, m),
                                             (size_t)rc) == TERN_OK;
                    break;
                }
            if (!sent) w->tx_failed++;
            continue;
        }
        w->tx.len[m] = (size_t)rc;
        w->tx.addr[m] = rep.to;
        m++;
    }
    if (m > 0) {
        int sent = tern_udp_send_batch(w->fds[k], &w->tx, m, &w->tx_failed);
        if (sent >= 0 && (size_t)sent < m) w->tx_unsent += m - (size_t)sent;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct pollfd pfd[MAX_SOCKS];
    for (int k = 0; k < w->n_fds; k++) {
        pfd[k].fd = w->fds[k];
        pfd[k].events = POLLIN;
    }
    while (!atomic_load_explicit(&w->svc->stop, memory_order_relaxed)) {
        int busy = 0;
        for (int k = 0; k < w->n_fds; k++) {
            /* at most 8 batches per socket per round, so one socket cannot starve the rest */
            for (int round = 0; round < 8; round++) {
                int n = tern_udp_recv_batch(w->fds[k], &w->rx);
                if (n < 0) {
                    w->rx_errors++;
                    break;
                }
                if (n == 0) break;
                busy = 1;
                worker_serve(w, k, now_ns(), n);
                if ((size_t)n < w->rx.count) break;
            }
        }
        if (!busy) poll(pfd, (nfds_t)w->n_fds, 100);
    }
    return NULL;
}

/* ---------------------------------------------------------------- TCP */

static void tcp_close(stun_svc *s, int i)
{
    close(s->conns[i]->fd);
    free(s->conns[i]);
    s->conns[i] = NULL;
}

static void tcp_accept(stun_svc *s, int li)
{
    for (int budget = 0; budget < 64; budget++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->listeners[li], (struct sockaddr *)&ss, &sl,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int slot = -1;
        for (int i = 0; i < TCP_MAX_CONNS; i++)
            if (s->conns[i] == NULL) {
                slot = i;
                break;
            }
        tcp_conn *c = slot >= 0 ? malloc(sizeof(*c)) : NULL;
        if (c == NULL) {
            s->tcp_refused++;
            close(fd);
            continue;
        }
        c->fd = fd;
        c->fill = 0;
        c->last_ns = now_ns();
        tern_addr_from_sockaddr(&c->remote, (struct sockaddr *)&ss, sl);
        c->local = s->listen_addr[li];
        s->conns[slot] = c;
        s->tcp_accepted++;
    }
}

/* Reads what is there and answers every complete message. Returns 0 to keep the connection. */
static int tcp_read(stun_svc *s, tcp_conn *c, uint64_t now)
{
    ssize_t r = recv(c->fd, c->buf + c->fill, sizeof(c->buf) - c->fill, MSG_DONTWAIT);
    if (r == 0) return -1;
    if (r < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    c->fill += (size_t)r;
    c->last_ns = now;
    for (;;) {
        int fl = tern_stun_frame_len(c->buf, c->fill);
        if (fl < 0) {
            s->tcp_closed_bad++;
            return -1;
        }
        if (fl == 0 || (size_t)fl > c->fill) return 0;
        uint8_t out[TERN_STUN_MAX_RESP_V6];
        tern_stun_reply rep;
        int rc = tern_stun_server_respond(&s->tcp_srv, now, &c->local, &c->remote, 1, c->buf,
                                          (size_t)fl, out, sizeof(out), &rep);
        if (rc < 0 && rc != TERN_ERR_RATE_LIMITED && rc != TERN_ERR_IGNORED) {
            s->tcp_closed_bad++; /* malformed input on a stream: nothing after it can be trusted */
            return -1;
        }
        if (rc > 0) {
            ssize_t w = send(c->fd, out, (size_t)rc, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w != rc) {
                s->tcp_tx_short++;
                return -1;
            }
        }
        memmove(c->buf, c->buf + fl, c->fill - (size_t)fl);
        c->fill -= (size_t)fl;
    }
}

static void *tcp_main(void *arg)
{
    stun_svc *s = arg;
    struct pollfd pfd[TERND_MAX_LISTEN + TCP_MAX_CONNS];
    int idx[TCP_MAX_CONNS];
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        int n = 0;
        for (int i = 0; i < s->n_listeners; i++) {
            pfd[n].fd = s->listeners[i];
            pfd[n++].events = POLLIN;
        }
        int nc = 0;
        for (int i = 0; i < TCP_MAX_CONNS; i++)
            if (s->conns[i]) {
                idx[nc++] = i;
                pfd[n].fd = s->conns[i]->fd;
                pfd[n++].events = POLLIN;
            }
        int r = poll(pfd, (nfds_t)n, 100);
        uint64_t now = now_ns();
        if (r > 0) {
            for (int i = 0; i < s->n_listeners; i++)
                if (pfd[i].revents & POLLIN) tcp_accept(s, i);
            for (int j = 0; j < nc; j++) {
                short ev = pfd[s->n_listeners + j].revents;
                if (ev == 0) continue;
                if (tcp_read(s, s->conns[idx[j]], now) != 0) tcp_close(s, idx[j]);
            }
        }
        for (int i = 0; i < TCP_MAX_CONNS; i++)
            if (s->conns[i] && now > s->conns[i]->last_ns &&
                now - s->conns[i]->last_ns > TCP_IDLE_NS) {
                s->tcp_idle_closed++;
                tcp_close(s, i);
            }
    }
    for (int i = 0; i < TCP_MAX_CONNS; i++)
        if (s->conns[i]) tcp_close(s, i);
    return NULL;
}

static int tcp_listen(const tern_addr *a, int *fd_out)
{
    struct sockaddr_storage ss;
    int sl = tern_addr_to_sockaddr(a, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return TERN_ERR_STATE;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return TERN_ERR_STATE;
    }
    *fd_out = fd;
    return TERN_OK;
}

/* ---------------------------------------------------------------- service */

static int fail_errno(const char *what, const tern_addr *a)
{
    char txt[64];
    fprintf(stderr, "ternd: stun: %s %s: %s\n", what, tern_addr_format(a, txt, sizeof(txt)),
            strerror(errno));
    return TERN_ERR_STATE;
}

static int svc_start(ternd_service *svc, const ternd_config *cfg)
{
    stun_svc *s = calloc(1, sizeof(*s));
    if (s == NULL) return TERN_ERR_NOMEM;
    svc->state = s;
    s->cfg = *cfg;
    tern_stun_server_config scfg = cfg->stun;
    if (cfg->has_alt) {
        /* RFC 5780: IP1:P1, IP1:P2, IP2:P1, IP2:P2 */
        scfg.has_alternate = 1;
        scfg.primary = cfg->listen[0];
        scfg.alternate = cfg->alt;
        s->addrs[0] = cfg->listen[0];
        s->addrs[1] = cfg->listen[0];
        s->addrs[1].port = cfg->alt.port;
        s->addrs[2] = cfg->alt;
        s->addrs[2].port = cfg->listen[0].port;
        s->addrs[3] = cfg->alt;
        s->n_addrs = 4;
    } else {
        s->n_addrs = cfg->n_listen;
        memcpy(s->addrs, cfg->listen, sizeof(tern_addr) * (size_t)cfg->n_listen);
    }
    if (tern_stun_server_init(&s->tcp_srv, &scfg) != TERN_OK) {
        fprintf(stderr, "ternd: stun: invalid settings (alternate address of another family?)\n");
        return TERN_ERR_INVALID_ARG;
    }
    char txt[64];
    if (cfg->udp) {
        s->n_workers = cfg->workers;
        s->workers = calloc((size_t)s->n_workers, sizeof(worker));
        if (s->workers == NULL) return TERN_ERR_NOMEM;
        for (int i = 0; i < s->n_workers; i++) {
            worker *w = &s->workers[i];
            w->svc = s;
            for (int k = 0; k < MAX_SOCKS; k++) w->fds[k] = -1;
            tern_stun_server_init(&w->srv, &scfg);
            if (tern_udp_batch_init(&w->rx, (size_t)cfg->batch, TERN_STUN_MAX_MSG) != TERN_OK ||
                tern_udp_batch_init(&w->tx, (size_t)cfg->batch, TERN_STUN_MAX_RESP_V6) != TERN_OK)
                return TERN_ERR_NOMEM;
            for (int k = 0; k < s->n_addrs; k++) {
                if (tern_udp_open(&s->addrs[k], TERN_UDP_REUSEPORT | TERN_UDP_V6ONLY,
                                  &w->fds[k]) != TERN_OK)
                    return fail_errno("cannot bind udp", &s->addrs[k]);
                w->n_fds = k + 1;
                if (s->addrs[k].port == 0) tern_udp_local_addr(w->fds[k], &s->addrs[k]);
                w->local[k] = s->addrs[k];
            }
            w->tx.gso = gso_wanted() && tern_udp_gso_supported(w->fds[0]);
        }
    }
    if (cfg->tcp) {
        int n = cfg->has_alt ? 1 : s->n_addrs;
        for (int k = 0; k < n; k++) {
            tern_addr a = s->addrs[k];
            if (tcp_listen(&a, &s->listeners[k]) != TERN_OK)
                return fail_errno("cannot listen tcp", &a);
            s->n_listeners = k + 1;
            s->listen_addr[k] = a;
        }
    }
    for (int i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i].th, NULL, worker_main, &s->workers[i]) != 0)
            return TERN_ERR_STATE;
        s->workers[i].started = 1;
    }
    if (s->n_listeners > 0) {
        if (pthread_create(&s->tcp_th, NULL, tcp_main, s) != 0) return TERN_ERR_STATE;
        s->tcp_started = 1;
    }
    if (!cfg->quiet) {
        for (int k = 0; k < s->n_addrs && cfg->udp; k++)
            printf("ternd: stun listening on udp %s (%d workers)\n",
                   tern_addr_format(&s->addrs[k], txt, sizeof(txt)), s->n_workers);
        for (int k = 0; k < s->n_listeners; k++)
            printf("ternd: stun listening on tcp %s\n",
                   tern_addr_format(&s->listen_addr[k], txt, sizeof(txt)));
        if (cfg->has_alt) printf("ternd: stun RFC 5780 alternate %s\n",
                                 tern_addr_format(&cfg->alt, txt, sizeof(txt)));
        fflush(stdout);
    }
    return TERN_OK;
}

static void svc_stop(ternd_service *svc)
{
    stun_svc *s = svc->state;
    if (s == NULL) return;
    atomic_store(&s->stop, 1);
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].started) pthread_join(s->workers[i].th, NULL);
    for (int i = 0; i < s->n_workers; i++) s->workers[i].started = 0;
    if (s->tcp_started) pthread_join(s->tcp_th, NULL);
    s->tcp_started = 0;
}

static void add_counters(tern_stun_counters *sum, const tern_stun_counters *c)
{
    sum->rx += c->rx;
    sum->tx_success += c->tx_success;
    sum->tx_error += c->tx_error;
    sum->tx_rfc3489 += c->tx_rfc3489;
    sum->change_requests += c->change_requests;
    for (int i = 0; i < TERN_STUN_DROP_COUNT; i++) sum->drop[i] += c->drop[i];
}

static void svc_report(ternd_service *svc, FILE *out)
{
    stun_svc *s = svc->state;
    if (s == NULL) return;
    tern_stun_counters sum;
    memset(&sum, 0, sizeof(sum));
    uint64_t rx_err = 0, oversize = 0, tx_failed = 0, tx_unsent = 0, gso = 0, gso_fb = 0;
    for (int i = 0; i < s->n_workers; i++) {
        worker *w = &s->workers[i];
        add_counters(&sum, &w->srv.counters);
        rx_err += w->rx_errors;
        oversize += w->oversize;
        tx_failed += w->tx_failed;
        tx_unsent += w->tx_unsent;
        gso += w->tx.gso_sends;
        gso_fb += w->tx.gso_fallbacks;
    }
    add_counters(&sum, &s->tcp_srv.counters);
    fprintf(out, "stun rx=%llu tx_success=%llu tx_error=%llu tx_rfc3489=%llu change_requests=%llu\n",
            (unsigned long long)sum.rx, (unsigned long long)sum.tx_success,
            (unsigned long long)sum.tx_error, (unsigned long long)sum.tx_rfc3489,
            (unsigned long long)sum.change_requests);
    fprintf(out, "stun drop");
    for (int i = 0; i < TERN_STUN_DROP_COUNT; i++)
        fprintf(out, " %s=%llu", tern_stun_drop_name(i), (unsigned long long)sum.drop[i]);
    fprintf(out, " oversize=%llu rx_errors=%llu tx_failed=%llu tx_unsent=%llu\n",
            (unsigned long long)oversize, (unsigned long long)rx_err,
            (unsigned long long)tx_failed, (unsigned long long)tx_unsent);
    fprintf(out, "stun udp gso_sends=%llu gso_fallbacks=%llu\n", (unsigned long long)gso,
            (unsigned long long)gso_fb);
    fprintf(out, "stun tcp accepted=%llu refused=%llu closed_malformed=%llu idle_closed=%llu "
                 "tx_short=%llu\n",
            (unsigned long long)s->tcp_accepted, (unsigned long long)s->tcp_refused,
            (unsigned long long)s->tcp_closed_bad, (unsigned long long)s->tcp_idle_closed,
            (unsigned long long)s->tcp_tx_short);
}

/* Frees everything (after stop). */
static void svc_free(stun_svc *s)
{
    for (int i = 0; i < s->n_workers && s->workers; i++) {
        for (int k = 0; k < s->workers[i].n_fds; k++) close(s->workers[i].fds[k]);
        tern_udp_batch_free(&s->workers[i].rx);
        tern_udp_batch_free(&s->workers[i].tx);
    }
    for (int k = 0; k < s->n_listeners; k++) close(s->listeners[k]);
    free(s->workers);
    free(s);
}

static void svc_destroy(ternd_service *svc)
{
    if (svc->state) {
        svc_stop(svc); /* joins whatever did start */
        svc_free(svc->state);
    }
    svc->state = NULL;
}

const ternd_service ternd_stun_service = {
    .name = "stun",
    .start = svc_start,
    .stop = svc_stop,
    .report = svc_report,
    .destroy = svc_destroy,
    .state = NULL,
};
