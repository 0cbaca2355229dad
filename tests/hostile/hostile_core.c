/*
 * tern_hostile's shared parts (hostile.h): options, ternd's memory, sockets, identities, the
 * loop and the figures common to rows.
 */
#include "hostile.h"

/* ---------------------------------------------------------------- options and figures */

hostile_opt opt;

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * TERN_NS_PER_S + (uint64_t)ts.tv_nsec;
}

void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tern_hostile: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ---------------------------------------------------------------- ternd's memory */

long rss_kb(void)
{
    if (opt.pid <= 0) return 0;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", opt.pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    long v = 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            v = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static long rss_peak;
static uint64_t rss_next;

void rss_sample(uint64_t now)
{
    if (now < rss_next) return;
    rss_next = now + 50 * TERN_NS_PER_MS;
    long v = rss_kb();
    if (v > rss_peak) rss_peak = v;
}

/* ---------------------------------------------------------------- sockets */


hsock socks[MAX_SOCKS];
int n_socks;
static int epfd = -1;

void to_sockaddr(const tern_addr *a, struct sockaddr_in *sin)
{
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(a->port);
    memcpy(&sin->sin_addr, a->ip, 4);
}

void from_sockaddr(const struct sockaddr_in *sin, tern_addr *a)
{
    const uint8_t *ip = (const uint8_t *)&sin->sin_addr;
    tern_addr_ipv4(a, ip[0], ip[1], ip[2], ip[3], ntohs(sin->sin_port));
}

/* A UDP socket on 127.a.b.c (port chosen by the kernel). */
int sock_open(uint8_t a, uint8_t b, uint8_t c, int peer)
{
    if (n_socks == MAX_SOCKS) die("too many sockets");
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    int sz = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    tern_addr l;
    tern_addr_ipv4(&l, 127, a, b, c, 0);
    struct sockaddr_in sin;
    to_sockaddr(&l, &sin);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
        die("bind 127.%d.%d.%d: %s", a, b, c, strerror(errno));
    socklen_t sl = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &sl);
    hsock *s = &socks[n_socks];
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    from_sockaddr(&sin, &s->local);
    s->peer = peer;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)n_socks};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));
    return n_socks++;
}

int sock_send(int si, const tern_addr *to, const uint8_t *data, size_t len)
{
    struct sockaddr_in sin;
    to_sockaddr(to, &sin);
    for (int tries = 0; tries < 100; tries++) {
        ssize_t n = sendto(socks[si].fd, data, len, 0, (struct sockaddr *)&sin, sizeof(sin));
        if (n >= 0) {
            socks[si].tx_bytes += len;
            socks[si].tx_dgrams++;
            return 0;
        }
        if (errno != EAGAIN && errno != ENOBUFS) return -1;
        struct pollfd p = {.fd = socks[si].fd, .events = POLLOUT};
        poll(&p, 1, 10);
    }
    return -1;
}

/* ---------------------------------------------------------------- identities */


hpeer peers[MAX_PEERS];
int n_peers;

static void flow_ready(hpeer *p)
{
    if (p->flow_open || p->c == NULL) return;
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    if (tern_flow_open(p->c, &fc, &p->flow) == TERN_OK) p->flow_open = 1;
}

static void cb_established(tern_conn *c, void *u)
{
    hpeer *p = u;
    (void)c;
    p->established = 1;
    flow_ready(p);
}

static void cb_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *u)
{
    hpeer *p = u;
    (void)c, (void)code, (void)reason, (void)len;
    p->closed = 1;
    p->close_err = err;
}

static void cb_free(tern_conn *c, void *u)
{
    hpeer *p = u;
    if (p->c == c) p->c = NULL;
}

static int is_attacker_id(const uint8_t *id)
{
    for (int i = 0; i < n_peers; i++)
        if (peers[i].attacker && memcmp(peers[i].id, id, TERN_PEER_ID_LEN) == 0) return 1;
    return 0;
}

/* m4: one answer to an attacker, checked against the oldest request it has not had answered */
static void expect_check(hpeer *p, const tern_rdv_msg *m)
{
    expect_ring *x = p->exp;
    if (m->kind != TERN_RDV_ERROR) {
        x->accepted++;
        fprintf(stderr, "m4: an attacker was answered with kind %d (accepted)\n", m->kind);
        if (x->head != x->tail) x->tail++;
        return;
    }
    x->got[m->error < ERR_CODES ? m->error : 0]++;
    if (x->head == x->tail) {
        x->mismatched++;
        fprintf(stderr, "m4: an ERROR(%s) answered no request\n", tern_rdv_error_name(m->error));
        return;
    }
    uint32_t i = x->tail++ % EXP_RING;
    if (m->req_kind == x->kind[i] && m->error == x->code[i]) {
        x->matched++;
    } else {
        if (x->mismatched++ < 5)
            fprintf(stderr, "m4: request kind %d drew ERROR(%s) for kind %d, not ERROR(%s)\n",
                    x->kind[i], tern_rdv_error_name(m->error), m->req_kind,
                    tern_rdv_error_name(x->code[i]));
    }
}

int rdv_send(hpeer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (p->c == NULL || !p->flow_open) return TERN_ERR_STATE;
    int rc = tern_rdv_send(p->c, p->flow, now, m);
    p->dirty = 1;
    return rc;
}

static void cb_message(tern_conn *c, uint64_t flow, const uint8_t *data, size_t len, void *u)
{
    hpeer *p = u;
    (void)flow;
    p->got_raw = 1;
    p->raw_len = len < sizeof(p->raw) ? len : sizeof(p->raw);
    memcpy(p->raw, data, p->raw_len);
    tern_rdv_msg m;
    if (tern_rdv_decode(data, len, &m) != TERN_OK) return;
    p->rx_msgs++;
    if (p->exp) expect_check(p, &m);
    switch (m.kind) {
    case TERN_RDV_REGISTERED: p->registered = 1; break;
    case TERN_RDV_PEER_INFO:
        p->peer_info++;
        if (m.has_channel) p->peer_info_relay++;
        break;
    case TERN_RDV_INTRODUCED: p->introduced++; break;
    case TERN_RDV_JOINED:
        p->joined++;
        p->joined_count = m.count;
        for (size_t i = 0; i < m.n_members; i++)
            p->joined_attacker += is_attacker_id(m.members + i * TERN_PEER_ID_LEN);
        break;
    case TERN_RDV_PRESENCE:
        p->presence++;
        if (m.has_peer_id) p->presence_attacker += is_attacker_id(m.peer_id);
        break;
    case TERN_RDV_GROUP_MSG: p->group_msgs++; break;
    case TERN_RDV_OFFERED: p->offered++; break;
    case TERN_RDV_REPLY: p->replies++; break;
    case TERN_RDV_CALL:
        p->calls_in++;
        if (p->provider == 1 && m.has_call_id) {
            tern_rdv_msg r;
            tern_rdv_msg_init(&r, TERN_RDV_REPLY);
            r.has_call_id = 1;
            r.call_id = m.call_id;
            r.has_status = 1;
            r.status = 0;
            r.payload = m.payload;
            r.payload_len = m.payload_len;
            r.has_payload = 1;
            (void)c;
            rdv_send(p, now_ns(), &r);
        }
        break;
    case TERN_RDV_ERROR:
        p->errors++;
        p->err[m.error < ERR_CODES ? m.error : 0]++;
        break;
    default: break;
    }
}

/* The callbacks that keep p's figures, on an endpoint configuration. */
void peer_callbacks(tern_endpoint_config *cfg, hpeer *p)
{
    cfg->callbacks.on_established = cb_established;
    cfg->callbacks.on_closed = cb_closed;
    cfg->callbacks.on_conn_free = cb_free;
    cfg->callbacks.on_message = cb_message;
    cfg->user_data = p;
}

/* A new identity (fresh key, its own endpoint and socket on 127.a.b.c) connecting to ternd. */
int peer_new(uint8_t a, uint8_t b, uint8_t c)
{
    if (n_peers == MAX_PEERS) die("too many identities");
    int pi = n_peers++;
    hpeer *p = &peers[pi];
    memset(p, 0, sizeof(*p));
    p->sock = sock_open(a, b, c, pi);
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    if (tern_keypair_generate(&cfg.static_key) != TERN_OK) die("keygen");
    cfg.has_static_key = 1;
    peer_callbacks(&cfg, p);
    tern_peer_id(cfg.static_key.pub, p->id);
    uint64_t now = now_ns();
    if (tern_endpoint_new(&cfg, now, &p->ep) != TERN_OK) die("endpoint");
    tern_keypair_wipe(&cfg.static_key);
    if (tern_endpoint_connect(p->ep, now, &socks[p->sock].local, &opt.server, opt.server_key,
                              &p->c) != TERN_OK)
        die("connect");
    p->dirty = 1;
    return pi;
}

static void peer_flush(hpeer *p, uint64_t now)
{
    static uint8_t buf[32 * TERN_MAX_DATAGRAM];
    tern_datagram d[32];
    int n;
    while ((n = tern_endpoint_send(p->ep, now, d, 32, buf, sizeof(buf))) > 0)
        for (int i = 0; i < n; i++) sock_send(p->sock, &d[i].remote, d[i].data, d[i].len);
    p->dirty = 0;
}

/* ---------------------------------------------------------------- the loop */

/* Runs every socket and timer for ms milliseconds, or until done() says so. */
void loop(double ms, int (*done)(void))
{
    uint64_t end = now_ns() + (uint64_t)(ms * 1e6);
    static uint8_t buf[65536];
    for (;;) {
        uint64_t now = now_ns();
        rss_sample(now);
        for (int i = 0; i < n_peers; i++) {
            hpeer *p = &peers[i];
            if (p->ep == NULL) continue;
            if (tern_endpoint_next_deadline(p->ep) <= now) {
                tern_endpoint_handle_expiry(p->ep, now);
                p->dirty = 1;
            }
            if (p->dirty) peer_flush(p, now);
        }
        if ((done && done()) || now >= end) return;
        uint64_t wake = end;
        for (int i = 0; i < n_peers; i++)
            if (peers[i].ep) {
                uint64_t t = tern_endpoint_next_deadline(peers[i].ep);
                if (t < wake) wake = t;
            }
        int timeout = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
        if (timeout > 50) timeout = 50;
        struct epoll_event ev[64];
        int n = epoll_wait(epfd, ev, 64, timeout);
        now = now_ns();
        for (int k = 0; k < n; k++) {
            hsock *s = &socks[ev[k].data.u32];
            for (int j = 0; j < 256; j++) {
                struct sockaddr_in sin;
                socklen_t sl = sizeof(sin);
                ssize_t r = recvfrom(s->fd, buf, sizeof(buf), 0, (struct sockaddr *)&sin, &sl);
                if (r < 0) break;
                s->rx_bytes += (uint64_t)r;
                s->rx_dgrams++;
                if (s->peer < 0) continue;
                hpeer *p = &peers[s->peer];
                if (p->silent || p->ep == NULL) continue;
                tern_addr from;
                from_sockaddr(&sin, &from);
                tern_endpoint_recv(p->ep, now, &s->local, &from, buf, (size_t)r);
                p->dirty = 1;
            }
        }
    }
}

int wait_first, wait_count;
int all_established(void)
{
    for (int i = wait_first; i < wait_first + wait_count; i++)
        if (!peers[i].flow_open && !peers[i].closed) return 0;
    return 1;
}

int all_registered(void)
{
    for (int i = wait_first; i < wait_first + wait_count; i++)
        if (!peers[i].registered && !peers[i].closed) return 0;
    return 1;
}

void wait_established(int first, int count, double ms)
{
    wait_first = first;
    wait_count = count;
    loop(ms, all_established);
}

void do_register(int pi, const tern_addr *local_cands, size_t n)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    for (size_t i = 0; i < n; i++) {
        m.cands[i].kind = TERN_RDV_CAND_LOCAL;
        m.cands[i].addr = local_cands[i];
    }
    m.n_cands = n;
    if (opt.has_secret) { /* ternd requires tokens: the harness's own peers are the operator's */
        if (tern_rdv_token_make(opt.secret, TERN_RDV_TOKEN_REGISTER, peers[pi].id,
                                TERN_PEER_ID_LEN, (uint64_t)time(NULL) + 3600, m.token) != TERN_OK)
            die("token");
        m.has_token = 1;
    }
    rdv_send(&peers[pi], now_ns(), &m);
}

void wait_registered(int first, int count, double ms)
{
    wait_first = first;
    wait_count = count;
    loop(ms, all_registered);
}

/* count identities, connected and registered, on 127.net.(b0 + i/per).(1 + i%per) */
int spawn(int count, uint8_t net, uint8_t b0, int per_ip, int reg)
{
    int first = n_peers;
    for (int i = 0; i < count; i++) {
        int k = i / per_ip;
        peer_new(net, (uint8_t)(b0 + k / 250), (uint8_t)(1 + k % 250));
        if ((i & 63) == 63) loop(1, NULL); /* let the handshakes start */
    }
    wait_established(first, count, 15000);
    if (reg) {
        for (int i = first; i < first + count; i++) do_register(i, NULL, 0);
        wait_registered(first, count, 10000);
    }
    return first;
}

int count_est(int first, int count, int *closed)
{
    int e = 0, c = 0;
    for (int i = first; i < first + count; i++) {
        if (peers[i].established) e++;
        if (peers[i].closed) c++;
    }
    if (closed) *closed = c;
    return e;
}

void close_all(void)
{
    uint64_t now = now_ns();
    for (int i = 0; i < n_peers; i++) {
        hpeer *p = &peers[i];
        p->silent = 0;
        if (p->c && !p->closed) tern_conn_close(p->c, now, 0, "bye", 3);
        p->dirty = 1;
    }
    loop(300, NULL);
}

/* Seals frames as a genuine 1-RTT packet of p's connection and sends it from socket si. */
int craft_send(hpeer *p, int si, const uint8_t *frames, size_t len)
{
    uint8_t pkt[TERN_MAX_DATAGRAM];
    if (p->c == NULL || p->closed) return -1;
    int n = tern__conn_seal(p->c, now_ns(), pkt, sizeof(pkt), frames, len);
    if (n <= 0) return -1;
    return sock_send(si, &opt.server, pkt, (size_t)n);
}

/* ---------------------------------------------------------------- figures common to rows */

static long rss_start, rss_attack;
static int idle_first, idle_n;

void begin(void)
{
    rss_start = rss_kb();
    rss_peak = rss_start;
    if (opt.idle > 0) {
        idle_first = spawn(opt.idle, 10, 1, 4, 1); /* 127.10.x.y, 4 per address */
        idle_n = opt.idle;
        loop(1000, NULL);
    }
    rss_attack = rss_kb();
    long per = idle_n ? (rss_attack - rss_start) / idle_n : 0;
    int closed;
    int est = idle_n ? count_est(idle_first, idle_n, &closed) : 0;
    out("rss_start_kb=%ld idle_conns=%d idle_established=%d rss_idle_kb=%ld "
        "idle_per_conn_kb=%ld\n",
        rss_start, idle_n, est, rss_attack, per < 0 ? 0 : per);
    rss_peak = rss_attack;
}

void hold(void)
{
    out("attack_hold=1\n");
    loop(opt.hold * 1000, NULL);
}

double attack(double secs, int (*step)(void *ctx), void *ctx)
{
    out("attack_start=1\n");
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    int held = 0;
    while (now_ns() < end && step(ctx)) {
        if (!held && now_ns() - t0 > 2 * TERN_NS_PER_S) {
            out("attack_hold=1\n");
            held = 1;
        }
    }
    double took = (double)(now_ns() - t0) / 1e9;
    if (held) loop(opt.hold * 1000, NULL);
    else hold();
    return took;
}

void finish(int attack_conns)
{
    long rss_end = rss_kb();
    if (rss_end > rss_peak) rss_peak = rss_end;
    long growth = rss_peak - rss_attack;
    out("attack_conns=%d rss_attack_start_kb=%ld rss_peak_kb=%ld rss_end_kb=%ld "
        "attack_growth_kb=%ld attack_per_conn_kb=%ld\n",
        attack_conns, rss_attack, rss_peak, rss_end, growth,
        attack_conns > 0 ? growth / attack_conns : growth);
    close_all();
    out("done=1\n");
}

void sum_errors(int first, int count, const char *pfx)
{
    uint64_t e[ERR_CODES] = {0}, tot = 0;
    for (int i = first; i < first + count; i++)
        for (int k = 0; k < ERR_CODES; k++) {
            e[k] += peers[i].err[k];
            tot += peers[i].err[k];
        }
    out("%s_errors=%llu", pfx, (unsigned long long)tot);
    for (int k = 1; k < ERR_CODES; k++)
        if (e[k]) out(" %s_err_%s=%llu", pfx, tern_rdv_error_name(k), (unsigned long long)e[k]);
    out("\n");
}

/* ternd's --token-secret FILE (`tern token new-secret`): 64 hex characters */
void read_secret(const char *path)
{
    char hex[2 * TERN_RDV_SECRET_LEN + 1];
    FILE *f = fopen(path, "r");
    if (f == NULL) die("cannot read %s: %s", path, strerror(errno));
    size_t n = fread(hex, 1, sizeof(hex) - 1, f);
    fclose(f);
    hex[n] = '\0';
    if (tern_hex_decode(hex, opt.secret, TERN_RDV_SECRET_LEN) != TERN_OK)
        die("%s is not a token secret", path);
    opt.has_secret = 1;
}

/* The epoll set every socket joins (before any row), and everything closed after it. */
void hostile_init(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll: %s", strerror(errno));
}

void hostile_exit(void)
{
    for (int i = 0; i < n_peers; i++)
        if (peers[i].ep) tern_endpoint_del(peers[i].ep);
    for (int i = 0; i < n_socks; i++) close(socks[i].fd);
    close(epfd);
}
