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
 * TCP (RFC 8489 framing: messages back to back, cut by their length field, stun_tcp.c): one
 * thread polls the listeners and up to --stun-tcp-max connections (1024), each with a fixed
 * buffer; a malformed frame, a full output queue or --stun-tcp-idle seconds (10) without a
 * complete request closes the connection (a byte now and then does not keep it). One source
 * address (an IPv6 /64) holds at most --stun-tcp-per-addr of them (8; more are accepted and
 * closed at once); when the table is full, a new connection replaces the idlest connection of
 * the source holding the most, so no set of addresses locks the others out. Spare descriptor:
 * when accept fails for want of descriptors, one kept open for it is closed, the connection
 * accepted and closed, and the spare reopened, so a full descriptor table never spins the
 * thread on a listener that stays readable.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "server/service.h"
#include "server/stun_tcp.h"
#include "tern/udp.h"

#define MAX_SOCKS 4

typedef struct stun_svc stun_svc;

typedef struct worker {
    pthread_t th;
    int started;
    stun_svc *svc;
    int n_fds;
    tern_udp_sock socks[MAX_SOCKS]; /* their receive errors, GSO and send counters are theirs */
    tern_addr local[MAX_SOCKS];
    tern_udp_batch rx, tx;
    uint64_t oversize, tx_failed, tx_unsent; /* tx_failed: CHANGE-REQUEST answers not sent */
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
    uint64_t last_ns; /* accept, then each complete request */
    tern_addr remote, local;
    stun_tcp_stream in;
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
    int tcp_max, tcp_per_addr;       /* limits in force */
    uint64_t tcp_idle_ns;
    int n_conns;                     /* connections held (in conns[0..n_conns)) */
    tcp_conn **conns;                /* tcp_max entries */
    struct pollfd *pfd;              /* n_listeners + tcp_max entries */
    const tern_addr **vsrc;          /* stun_tcp_pick_victim's arguments */
    uint64_t *vlast;
    uint32_t *vscratch;
    size_t vscratch_len;
    int spare_fd;                    /* closed to accept one connection when out of fds */
    uint64_t tcp_accepted, tcp_refused, tcp_closed_bad, tcp_idle_closed, tcp_tx_short;
    uint64_t tcp_refused_per_addr, tcp_evicted, tcp_no_fd, tcp_requests, tcp_peak;
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
                    sent = tern_udp_send_one(w->socks[j].fd, &rep.to, tern_udp_slot(&w->tx, m),
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
        size_t done = tern_udp_send_batch(&w->socks[k], &w->tx, m);
        w->tx_unsent += m - done; /* the socket was full: those answers are dropped */
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct pollfd pfd[MAX_SOCKS];
    for (int k = 0; k < w->n_fds; k++) {
        pfd[k].fd = w->socks[k].fd;
        pfd[k].events = POLLIN;
    }
    while (!atomic_load_explicit(&w->svc->stop, memory_order_relaxed)) {
        int busy = 0;
        for (int k = 0; k < w->n_fds; k++) {
            /* at most 8 batches per socket per round, so one socket cannot starve the rest */
            for (int round = 0; round < 8; round++) {
                int n = tern_udp_recv(&w->socks[k], &w->rx, 0);
                if (n <= 0) break; /* nothing waits, or an error (counted by the socket) */
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

/* Closes conns[i]; the last connection takes its place. */
static void tcp_close(stun_svc *s, int i)
{
    close(s->conns[i]->fd);
    free(s->conns[i]);
    s->conns[i] = s->conns[--s->n_conns];
    s->conns[s->n_conns] = NULL;
}

/* accept() failed with EMFILE/ENFILE: take the connection with the spare descriptor and close
 * it, so the listener is not readable forever. */
static void tcp_shed(stun_svc *s, int lfd)
{
    s->tcp_no_fd++;
    if (s->spare_fd < 0) return;
    close(s->spare_fd);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) close(fd);
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void tcp_accept(stun_svc *s, int li, uint64_t now)
{
    for (int budget = 0; budget < 64; budget++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->listeners[li], (struct sockaddr *)&ss, &sl,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) tcp_shed(s, s->listeners[li]);
            return;
        }
        tern_addr remote;
        memset(&remote, 0, sizeof(remote));
        tern_addr_from_sockaddr(&remote, (struct sockaddr *)&ss, sl);
        int same = 0;
        for (int i = 0; i < s->n_conns; i++) same += stun_tcp_same_source(&s->conns[i]->remote, &remote);
        if (same >= s->tcp_per_addr) {
            s->tcp_refused_per_addr++;
            close(fd);
            continue;
        }
        if (s->n_conns == s->tcp_max) {
            for (int i = 0; i < s->n_conns; i++) {
                s->vsrc[i] = &s->conns[i]->remote;
                s->vlast[i] = s->conns[i]->last_ns;
            }
            int v = stun_tcp_pick_victim(s->vsrc, s->vlast, (size_t)s->n_conns, s->vscratch,
                                         s->vscratch_len);
            s->tcp_evicted++;
            tcp_close(s, v);
        }
        tcp_conn *c = malloc(sizeof(*c));
        if (c == NULL) {
            s->tcp_refused++;
            close(fd);
            continue;
        }
        c->fd = fd;
        c->in.fill = 0;
        c->last_ns = now;
        c->remote = remote;
        c->local = s->listen_addr[li];
        s->conns[s->n_conns++] = c;
        s->tcp_accepted++;
        if ((uint64_t)s->n_conns > s->tcp_peak) s->tcp_peak = (uint64_t)s->n_conns;
    }
}

static int tcp_send(void *user, const uint8_t *data, size_t len)
{
    tcp_conn *c = user;
    ssize_t w = send(c->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return w == (ssize_t)len ? 0 : -1;
}

/* Reads what is there and answers every complete message. Returns 0 to keep the connection. */
static int tcp_read(stun_svc *s, tcp_conn *c, uint64_t now)
{
    size_t cap;
    uint8_t *space = stun_tcp_space(&c->in, &cap);
    ssize_t r = recv(c->fd, space, cap, MSG_DONTWAIT);
    if (r == 0) return -1;
    if (r < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    int n = stun_tcp_input(&c->in, (size_t)r, &s->tcp_srv, now, &c->local, &c->remote, tcp_send,
                           c);
    if (n == STUN_TCP_CLOSE_SEND) {
        s->tcp_tx_short++;
        return -1;
    }
    if (n < 0) {
        s->tcp_closed_bad++; /* malformed input on a stream: nothing after it can be trusted */
        return -1;
    }
    if (n > 0) {
        c->last_ns = now; /* only complete requests keep a connection */
        s->tcp_requests += (uint64_t)n;
    }
    return 0;
}

static void *tcp_main(void *arg)
{
    stun_svc *s = arg;
    struct pollfd *pfd = s->pfd;
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        int n = 0;
        for (int i = 0; i < s->n_listeners; i++) {
            pfd[n].fd = s->listeners[i];
            pfd[n++].events = POLLIN;
        }
        int nc = s->n_conns;
        for (int i = 0; i < nc; i++) {
            pfd[n].fd = s->conns[i]->fd;
            pfd[n++].events = POLLIN;
        }
        int r = poll(pfd, (nfds_t)n, 100);
        uint64_t now = now_ns();
        if (r > 0) {
            /* connections first (from the last, as tcp_close moves the last one into the hole),
             * then the listeners: accepting may close or move connections */
            for (int j = nc; j-- > 0;) {
                short ev = pfd[s->n_listeners + j].revents;
                if (ev == 0) continue;
                if (tcp_read(s, s->conns[j], now) != 0) tcp_close(s, j);
            }
            for (int i = 0; i < s->n_listeners; i++)
                if (pfd[i].revents & POLLIN) tcp_accept(s, i, now);
        }
        for (int i = s->n_conns; i-- > 0;)
            if (now > s->conns[i]->last_ns && now - s->conns[i]->last_ns > s->tcp_idle_ns) {
                s->tcp_idle_closed++;
                tcp_close(s, i);
            }
    }
    while (s->n_conns > 0) tcp_close(s, s->n_conns - 1);
    return NULL;
}

/* The connection table, and room for it under RLIMIT_NOFILE (the soft limit is raised toward
 * the hard one; when even that is too low, the table shrinks to fit, and says so). */
static int tcp_setup(stun_svc *s, const ternd_config *cfg)
{
    s->tcp_max = cfg->stun_tcp_max > 0 ? cfg->stun_tcp_max : TERND_STUN_TCP_MAX;
    s->tcp_per_addr = cfg->stun_tcp_per_addr > 0 ? cfg->stun_tcp_per_addr : TERND_STUN_TCP_PER_ADDR;
    s->tcp_idle_ns = (uint64_t)(cfg->stun_tcp_idle_s > 0 ? cfg->stun_tcp_idle_s
                                                         : TERND_STUN_TCP_IDLE_S) * TERN_NS_PER_S;
    struct rlimit rl;
    rlim_t want = (rlim_t)s->tcp_max + 256; /* UDP sockets, the tern service, the spare */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
            int fit = rl.rlim_cur > 512 ? (int)(rl.rlim_cur - 256) : 64;
            if (fit < s->tcp_max) {
                fprintf(stderr, "ternd: stun: %llu descriptors allowed: STUN TCP connections "
                                "held at once cut from %d to %d\n",
                        (unsigned long long)rl.rlim_cur, s->tcp_max, fit);
                s->tcp_max = fit;
            }
        }
    }
    size_t m = (size_t)s->tcp_max;
    s->vscratch_len = 8 * m;
    s->conns = calloc(m, sizeof(*s->conns));
    s->pfd = calloc(m + TERND_MAX_LISTEN, sizeof(*s->pfd));
    s->vsrc = calloc(m, sizeof(*s->vsrc));
    s->vlast = calloc(m, sizeof(*s->vlast));
    s->vscratch = calloc(s->vscratch_len, sizeof(*s->vscratch));
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!s->conns || !s->pfd || !s->vsrc || !s->vlast || !s->vscratch) return TERN_ERR_NOMEM;
    return TERN_OK;
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
    s->spare_fd = -1;
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
            for (int k = 0; k < MAX_SOCKS; k++) w->socks[k].fd = -1;
            tern_stun_server_init(&w->srv, &scfg);
            if (tern_udp_batch_init(&w->rx, (size_t)cfg->batch, TERN_STUN_MAX_MSG) != TERN_OK ||
                tern_udp_batch_init(&w->tx, (size_t)cfg->batch, TERN_STUN_MAX_RESP_V6) != TERN_OK)
                return TERN_ERR_NOMEM;
            for (int k = 0; k < s->n_addrs; k++) {
                int flags =
                    TERN_UDP_REUSEPORT | TERN_UDP_V6ONLY | (gso_wanted() ? TERN_UDP_GSO : 0);
                if (tern_udp_sock_open(&w->socks[k], &s->addrs[k], flags, 0) != TERN_OK)
                    return fail_errno("cannot bind udp", &s->addrs[k]);
                w->n_fds = k + 1;
                if (s->addrs[k].port == 0) s->addrs[k] = w->socks[k].local;
                w->local[k] = s->addrs[k];
            }
        }
    }
    if (cfg->tcp) {
        if (tcp_setup(s, cfg) != TERN_OK) return TERN_ERR_NOMEM;
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
            printf("ternd: stun listening on tcp %s (at most %d connections, %d per address, "
                   "closed after %d s without a request)\n",
                   tern_addr_format(&s->listen_addr[k], txt, sizeof(txt)), s->tcp_max,
                   s->tcp_per_addr, (int)(s->tcp_idle_ns / TERN_NS_PER_S));
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
        oversize += w->oversize;
        tx_failed += w->tx_failed;
        tx_unsent += w->tx_unsent;
        for (int k = 0; k < w->n_fds; k++) {
            const tern_udp_stats *u = &w->socks[k].st;
            rx_err += u->rx_errors;
            tx_failed += u->tx_errors;
            gso += u->tx_gso_msgs;
            gso_fb += u->gso_fallbacks;
        }
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
                 "tx_short=%llu refused_per_addr=%llu evicted=%llu no_fd=%llu requests=%llu "
                 "open=%d peak=%llu max=%d per_addr=%d idle_s=%d\n",
            (unsigned long long)s->tcp_accepted, (unsigned long long)s->tcp_refused,
            (unsigned long long)s->tcp_closed_bad, (unsigned long long)s->tcp_idle_closed,
            (unsigned long long)s->tcp_tx_short, (unsigned long long)s->tcp_refused_per_addr,
            (unsigned long long)s->tcp_evicted, (unsigned long long)s->tcp_no_fd,
            (unsigned long long)s->tcp_requests, s->n_conns, (unsigned long long)s->tcp_peak,
            s->tcp_max, s->tcp_per_addr, (int)(s->tcp_idle_ns / TERN_NS_PER_S));
}

/* Frees everything (after stop). */
static void svc_free(stun_svc *s)
{
    for (int i = 0; i < s->n_workers && s->workers; i++) {
        for (int k = 0; k < s->workers[i].n_fds; k++)
            tern_udp_sock_close(&s->workers[i].socks[k]);
        tern_udp_batch_free(&s->workers[i].rx);
        tern_udp_batch_free(&s->workers[i].tx);
    }
    for (int k = 0; k < s->n_listeners; k++) close(s->listeners[k]);
    while (s->n_conns > 0) tcp_close(s, s->n_conns - 1);
    if (s->spare_fd >= 0) close(s->spare_fd);
    free(s->conns);
    free(s->pfd);
    free(s->vsrc);
    free(s->vlast);
    free(s->vscratch);
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
