/*
 * tern_hostile: a hostile client against a real ternd (docs/security.md, issue 12). Each
 * sub-command is one attack of the table, made the way an attacker would make it: every
 * connection completes the handshake with a fresh key (client keys are free) and then sends
 * well-formed, authenticated traffic. Packets the library would never send (fragments without
 * fragment 0, a connection's packets from addresses it never used, PATH_CHALLENGE floods) are
 * sealed with the connection's own 1-RTT keys (core internals, as fuzz/fuzz_conn.c does);
 * rendezvous requests are encoded with tern_rdv_encode and sent with tern_flow_send.
 *
 * Everything goes over loopback with real sockets: a socket per identity, bound to its own
 * 127.x.y.z address where a row needs distinct source addresses, plus "count-only" sockets
 * (spoofed sources, victims) that never feed the endpoint and only count what ternd (or a peer
 * it introduced) sends them. Each attack is bounded in time and count, samples ternd's VmRSS
 * (/proc/PID/status) all along, prints key=value figures on stdout, prints "attack_hold=1" when
 * the legitimate clients of the test should run (the attack is then at full effect and stays so
 * for --hold seconds), and closes every connection before it exits.
 *
 * Files: hostile.h and hostile_core.c (options, sockets, identities, the loop, the figures
 * common to rows), this file (the rows, and main), hostile_m4.c (row m4, access control).
 *
 * Usage: tern_hostile ROW SERVER_ADDR:PORT SERVER_KEY [options]
 *   rows: h1 h2 h3 h4a h4b m1 m2 m3 m4 m5 m6 m7 l (see usage())
 */
#include "hostile.h"

/* ---------------------------------------------------------------- H1: spoofed sources */

static void row_h1(void)
{
    begin();
    int a = spawn(1, 11, 1, 1, 0);
    hpeer *p = &peers[a];
    if (!p->established) die("h1: no connection");
    loop(200, NULL);
    /* part 1: one authenticated PING packet from each of n new addresses, one every 5 ms */
    int n = opt.n ? opt.n : 500;
    int first = n_socks;
    for (int i = 0; i < n; i++) sock_open(12, (uint8_t)(1 + i / 250), (uint8_t)(1 + i % 250), -1);
    out("attack_start=1\n");
    for (int i = 0; i < n; i++) {
        uint8_t fr[16];
        uint8_t *q = tern__frame_put_ping(fr, fr + sizeof(fr), TERN__FRAME_PING, 1000 + i);
        craft_send(p, first + i, fr, (size_t)(q - fr));
        loop(5, NULL);
    }
    /* part 2: PATH_CHALLENGEs from one more new address, one a millisecond (each is answered on
     * its own, not coalesced with the next) */
    int pc = sock_open(14, 1, 1, -1);
    int n_pc = 2000;
    for (int i = 0; i < n_pc; i++) {
        uint8_t fr[16];
        uint8_t *q = tern__frame_put_path(fr, fr + sizeof(fr), TERN__FRAME_PATH_CHALLENGE,
                                          0x1234567800000000ull + (uint64_t)i);
        craft_send(p, pc, fr, (size_t)(q - fr));
        loop(1, NULL);
    }
    hold();
    loop(500, NULL);
    uint64_t tx = 0, rx = 0, rxd = 0;
    double max_ratio = 0;
    int got = 0;
    for (int i = first; i < first + n; i++) {
        tx += socks[i].tx_bytes;
        rx += socks[i].rx_bytes;
        rxd += socks[i].rx_dgrams;
        if (socks[i].rx_bytes) got++;
        double r = socks[i].tx_bytes ? (double)socks[i].rx_bytes / (double)socks[i].tx_bytes : 0;
        if (r > max_ratio) max_ratio = r;
    }
    out("h1_addrs=%d h1_sent_bytes=%llu h1_recv_bytes=%llu h1_recv_dgrams=%llu "
        "h1_addrs_answered=%d h1_ratio=%.2f h1_max_ratio=%.2f\n",
        n, (unsigned long long)tx, (unsigned long long)rx, (unsigned long long)rxd, got,
        tx ? (double)rx / (double)tx : 0.0, max_ratio);
    out("h1_pc_sent=%d h1_pc_sent_bytes=%llu h1_pc_recv_dgrams=%llu h1_pc_recv_bytes=%llu "
        "h1_pc_ratio=%.2f\n",
        n_pc, (unsigned long long)socks[pc].tx_bytes, (unsigned long long)socks[pc].rx_dgrams,
        (unsigned long long)socks[pc].rx_bytes,
        socks[pc].tx_bytes ? (double)socks[pc].rx_bytes / (double)socks[pc].tx_bytes : 0.0);
    out("h1_conn_closed=%d\n", p->closed);
    finish(1);
}

/* ---------------------------------------------------------------- H2: fragments without 0 */

typedef struct h2_state {
    int first, nc;
    uint32_t rate;
    uint64_t t0, sent, bytes;
    uint64_t *fsn, *fl; /* per connection: the next fragment number and flow index */
    int finished;       /* every connection used all its flows (or is gone) */
} h2_state;

static int h2_step(void *ctx)
{
    h2_state *h = ctx;
    static uint8_t junk[1400];
    uint8_t fr[TERN_MAX_DATAGRAM];
    memset(junk, 0x5a, sizeof(junk));
    uint64_t due = (uint64_t)((double)(now_ns() - h->t0) * h->rate / 1e9);
    h->finished = 1;
    for (int i = 0; i < h->nc; i++) {
        hpeer *p = &peers[h->first + i];
        if (p->c != NULL && !p->closed && h->fl[i] < p->c->peer.max_flows) h->finished = 0;
    }
    while (h->sent < due && !h->finished) {
        int progress = 0;
        for (int i = 0; i < h->nc && h->sent < due; i++) {
            hpeer *p = &peers[h->first + i];
            if (p->c == NULL || p->closed) continue;
            uint64_t win = p->c->peer.flow_window, maxf = p->c->peer.max_flows;
            if (h->fl[i] >= maxf) continue;
            size_t payload = 1200 - tern__conn_packet_overhead() - 16;
            uint8_t *q = fr, *e = fr + sizeof(fr);
            q = tern__put_varint(q, e, TERN__FRAME_FLOW_DATA);
            q = tern__put_varint(q, e, 2 * h->fl[i]);
            q = tern__put_varint(q, e, h->fsn[i]);
            q = tern__put_varint(q, e, TERN__FD_ORDERED);
            q = tern__put_varint(q, e, payload);
            q = tern__put_bytes(q, e, junk, payload);
            if (craft_send(p, p->sock, fr, (size_t)(q - fr)) == 0) {
                h->bytes += (size_t)(q - fr);
                h->sent++;
                progress = 1;
            }
            if (++h->fsn[i] >= win) {
                h->fsn[i] = 1;
                h->fl[i]++;
            }
        }
        if (!progress) break;
        if ((h->sent & 127) == 0) loop(0, NULL);
    }
    loop(1, NULL);
    return !h->finished;
}

static void row_h2(void)
{
    begin();
    h2_state h = {0};
    h.nc = opt.conns ? opt.conns : 1;
    h.first = spawn(h.nc, 15, 1, 1, 0);
    loop(200, NULL);
    h.rate = opt.rate ? opt.rate : 60000;
    double secs = opt.secs > 0 ? opt.secs : 6;
    /* per connection: flow f (ids 0, 2, 4, ...) and fsn 1..window-1, flows round-robin */
    h.fsn = calloc((size_t)h.nc, sizeof(uint64_t));
    h.fl = calloc((size_t)h.nc, sizeof(uint64_t));
    if (h.fsn == NULL || h.fl == NULL) die("calloc");
    for (int i = 0; i < h.nc; i++) h.fsn[i] = 1;
    h.t0 = now_ns();
    double took = attack(secs, h2_step, &h);
    int closed;
    count_est(h.first, h.nc, &closed);
    hpeer *p0 = &peers[h.first];
    out("h2_conns=%d h2_packets=%llu h2_bytes=%llu h2_secs=%.1f h2_all_sent=%d "
        "h2_closed_by_server=%d h2_window=%llu h2_max_flows=%llu\n",
        h.nc, (unsigned long long)h.sent, (unsigned long long)h.bytes, took, h.finished, closed,
        (unsigned long long)(p0->c ? p0->c->peer.flow_window : 0),
        (unsigned long long)(p0->c ? p0->c->peer.max_flows : 0));
    free(h.fsn);
    free(h.fl);
    finish(h.nc);
}

/* ---------------------------------------------------------------- H3: OFFER names */

/* One attacker keeping its rendezvous flow full: the messages make() builds are queued until
 * `limit` bytes wait (or the flow refuses), then the loop runs 2 ms. */
typedef struct flood {
    hpeer *p;
    size_t limit;
    void (*make)(struct flood *f, tern_rdv_msg *m); /* the next message (f->sent before it) */
    uint64_t sent;
    char name[64];        /* room for a generated name */
    const uint8_t *data;  /* a payload, for make */
    size_t data_len;
} flood;

static int flood_step(void *ctx)
{
    flood *f = ctx;
    if (f->p->c == NULL || f->p->closed) return 0;
    while (tern_flow_queued(f->p->c, f->p->flow) < f->limit) {
        tern_rdv_msg m;
        f->make(f, &m);
        if (rdv_send(f->p, now_ns(), &m) != TERN_OK) break;
        f->sent++;
    }
    loop(2, NULL);
    return 1;
}

/* H3: a distinct service name in every OFFER */
static void make_offer(flood *f, tern_rdv_msg *m)
{
    int len = snprintf(f->name, sizeof(f->name), "hostile-service-%llu",
                       (unsigned long long)f->sent);
    tern_rdv_msg_init(m, TERN_RDV_OFFER);
    m->service = (const uint8_t *)f->name;
    m->service_len = (size_t)len;
}

static void row_h3(void)
{
    begin();
    int a = spawn(1, 16, 1, 1, 1);
    hpeer *p = &peers[a];
    flood f = {.p = p, .limit = 256u << 10, .make = make_offer};
    attack(opt.secs > 0 ? opt.secs : 6, flood_step, &f);
    out("h3_offers_sent=%llu h3_offered=%llu h3_conn_closed=%d\n", (unsigned long long)f.sent,
        (unsigned long long)p->offered, p->closed);
    sum_errors(a, 1, "h3");
    finish(1);
}

/* ---------------------------------------------------------------- H4: groups */

static void join(int pi, const char *group)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_JOIN);
    m.group = (const uint8_t *)group;
    m.group_len = strlen(group);
    rdv_send(&peers[pi], now_ns(), &m);
}

static int jw_first, jw_n;
static int all_joined(void)
{
    for (int i = jw_first; i < jw_first + jw_n; i++)
        if (!peers[i].joined && !peers[i].closed) return 0;
    return 1;
}

/* a: n members that never read while one sender posts as fast as the server lets it */
static void make_group_msg(flood *f, tern_rdv_msg *m)
{
    tern_rdv_msg_init(m, TERN_RDV_GROUP_MSG);
    m->group = (const uint8_t *)"hostile-room";
    m->group_len = 12;
    m->payload = f->data;
    m->payload_len = f->data_len;
    m->has_payload = 1;
}

static void row_h4a(void)
{
    begin();
    int n = opt.n ? opt.n : 20;
    int first = spawn(n + 1, 17, 1, 4, 1);
    for (int i = first; i < first + n + 1; i++) join(i, "hostile-room");
    jw_first = first;
    jw_n = n + 1;
    loop(5000, all_joined);
    for (int i = first; i < first + n; i++) peers[i].silent = 1;
    hpeer *snd = &peers[first + n];
    static uint8_t payload[60000];
    memset(payload, 0x42, sizeof(payload));
    flood f = {.p = snd, .limit = 1u << 20, .make = make_group_msg, .data = payload,
               .data_len = sizeof(payload)};
    attack(opt.secs > 0 ? opt.secs : 6, flood_step, &f);
    uint64_t silent_rx = 0;
    int closed = 0;
    for (int i = first; i < first + n; i++) {
        silent_rx += socks[peers[i].sock].rx_bytes;
        closed += peers[i].closed;
    }
    out("h4_members=%d h4_msgs_sent=%llu h4_msg_bytes=%llu h4_silent_rx_bytes=%llu "
        "h4_sender_closed=%d h4_silent_closed=%d\n",
        n, (unsigned long long)f.sent, (unsigned long long)(f.sent * sizeof(payload)),
        (unsigned long long)silent_rx, snd->closed, closed);
    sum_errors(first + n, 1, "h4_sender");
    finish(n + 1);
}

/* b: one attacker joins and leaves in a loop beside n members who read */
static void make_join_leave(flood *f, tern_rdv_msg *m)
{
    tern_rdv_msg_init(m, f->sent % 2 == 0 ? TERN_RDV_JOIN : TERN_RDV_LEAVE);
    m->group = (const uint8_t *)"hostile-room2";
    m->group_len = 13;
}

static void row_h4b(void)
{
    begin();
    int n = opt.n ? opt.n : 50;
    int first = spawn(n + 1, 18, 1, 4, 1);
    for (int i = first; i < first + n; i++) join(i, "hostile-room2");
    jw_first = first;
    jw_n = n;
    loop(5000, all_joined);
    hpeer *atk = &peers[first + n];
    flood f = {.p = atk, .limit = 64u << 10, .make = make_join_leave};
    attack(opt.secs > 0 ? opt.secs : 6, flood_step, &f);
    uint64_t joins = (f.sent + 1) / 2, leaves = f.sent / 2;
    uint64_t pres = 0;
    for (int i = first; i < first + n; i++) pres += peers[i].presence;
    out("h4b_members=%d h4b_joins=%llu h4b_leaves=%llu h4b_presence_received=%llu "
        "h4b_attacker_closed=%d\n",
        n, (unsigned long long)joins, (unsigned long long)leaves, (unsigned long long)pres,
        atk->closed);
    sum_errors(first + n, 1, "h4b_attacker");
    finish(n + 1);
}

/* ---------------------------------------------------------------- M1, M2, M3: introductions */

static void introduce(int pi, const uint8_t id[TERN_PEER_ID_LEN])
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    memcpy(m.peer_id, id, TERN_PEER_ID_LEN);
    m.has_peer_id = 1;
    rdv_send(&peers[pi], now_ns(), &m);
}

static void need_target(void)
{
    if (!opt.has_target) die("this row needs --target PEER_ID (a registered peer)");
}

static void sum_intro(int first, int count, const char *pfx)
{
    uint64_t pi = 0, pr = 0;
    for (int i = first; i < first + count; i++) {
        pi += peers[i].peer_info;
        pr += peers[i].peer_info_relay;
    }
    out("%s_peer_info=%llu %s_peer_info_relay=%llu\n", pfx, (unsigned long long)pi, pfx,
        (unsigned long long)pr);
    sum_errors(first, count, pfx);
}

typedef struct m1_state {
    int first, n;
    uint64_t sent;
} m1_state;

/* every attacker asks once per 500 ms */
static int m1_step(void *ctx)
{
    m1_state *m = ctx;
    for (int i = m->first; i < m->first + m->n; i++)
        if (peers[i].registered && !peers[i].closed) {
            introduce(i, opt.target);
            m->sent++;
        }
    loop(500, NULL);
    return 1;
}

static void row_m1(void)
{
    need_target();
    begin();
    m1_state m = {.n = opt.n ? opt.n : 80};
    m.first = spawn(m.n, 19, 1, 4, 1);
    attack(opt.secs > 0 ? opt.secs : 8, m1_step, &m);
    out("m1_attackers=%d m1_intros_sent=%llu m1_registered=%d\n", m.n, (unsigned long long)m.sent,
        count_est(m.first, m.n, NULL));
    sum_intro(m.first, m.n, "m1");
    finish(m.n);
}

static void row_m2(void)
{
    need_target();
    begin();
    int n = opt.n ? opt.n : 10;
    /* n attackers (fresh keys), each registering the victims' addresses as its LOCAL
     * candidates: as many as the server keeps */
    int first = spawn(n, 20, 1, 1, 0);
    int nv = TERN_RDV_MAX_CANDS - 2;
    tern_addr v[TERN_RDV_MAX_CANDS];
    int vfirst = n_socks;
    for (int i = 0; i < nv; i++) v[i] = socks[sock_open(21, 1, (uint8_t)(1 + i), -1)].local;
    for (int i = first; i < first + n; i++) do_register(i, v, (size_t)nv);
    wait_registered(first, n, 5000);
    double secs = opt.secs > 0 ? opt.secs : 10;
    out("attack_start=1\n");
    uint64_t t0 = now_ns();
    for (int i = first; i < first + n; i++) {
        introduce(i, opt.target);
        loop(100, NULL);
    }
    out("attack_hold=1\n");
    while (now_ns() - t0 < (uint64_t)(secs * 1e9)) loop(100, NULL);
    uint64_t d = 0, b = 0, mx = 0;
    for (int i = vfirst; i < vfirst + nv; i++) {
        d += socks[i].rx_dgrams;
        b += socks[i].rx_bytes;
        if (socks[i].rx_dgrams > mx) mx = socks[i].rx_dgrams;
    }
    out("m2_intros=%d m2_victims=%d m2_secs=%.0f m2_victim_dgrams=%llu m2_victim_bytes=%llu "
        "m2_victim_max_dgrams=%llu m2_victim_sent_bytes=0 m2_per_victim_per_intro=%.1f\n",
        n, nv, secs, (unsigned long long)d, (unsigned long long)b, (unsigned long long)mx,
        (double)mx / n);
    sum_intro(first, n, "m2");
    finish(n);
}

static void row_m3(void)
{
    need_target();
    begin();
    /* n identities behind one IP address (one port each, like peers behind one NAT) each ask
     * for an introduction to the target: every introduction opens a relay session between the
     * pair's addresses */
    int n = opt.n ? opt.n : 300;
    int first = spawn(n, 22, 1, n, 1);
    out("attack_start=1\n");
    for (int i = first; i < first + n; i++) {
        introduce(i, opt.target);
        if (i % 20 == 19) loop(20, NULL);
    }
    loop(1000, NULL);
    /* another address: a fresh identity introduced to the same target must get the relay */
    int b = spawn(1, 22, 2, 1, 1);
    introduce(b, opt.target);
    loop(1000, NULL);
    uint64_t pi = 0, pr = 0;
    for (int i = first; i < first + n; i++) {
        pi += peers[i].peer_info;
        pr += peers[i].peer_info_relay;
    }
    out("m3_intros=%d m3_registered=%d m3_attacker_relay=%llu m3_attacker_no_relay=%llu "
        "m3_other_peer_info=%llu m3_other_relay=%llu\n",
        n, count_est(first, n, NULL), (unsigned long long)pr, (unsigned long long)(pi - pr),
        (unsigned long long)peers[b].peer_info, (unsigned long long)peers[b].peer_info_relay);
    sum_errors(first, n, "m3");
    hold();
    finish(n);
}

/* ---------------------------------------------------------------- M5: connections from one IP */

static void row_m5(void)
{
    begin();
    int n = opt.n ? opt.n : 1000;
    double secs = opt.secs > 0 ? opt.secs : 12;
    out("attack_start=1\n");
    uint64_t t0 = now_ns();
    int first = n_peers;
    for (int i = 0; i < n; i++) {
        peer_new(23, 1, 1);
        if ((i & 63) == 63) loop(1, NULL);
    }
    wait_first = first;
    wait_count = n;
    uint64_t last_est_t = t0;
    int last_est = 0;
    while (now_ns() - t0 < (uint64_t)(secs * 1e9) && !all_established()) {
        loop(100, NULL);
        int e = count_est(first, n, NULL);
        if (e != last_est) {
            last_est = e;
            last_est_t = now_ns();
        }
    }
    int closed;
    int est = count_est(first, n, &closed);
    int alive = 0;
    for (int i = first; i < first + n; i++) alive += peers[i].established && !peers[i].closed;
    out("m5_attempted=%d m5_established=%d m5_held=%d m5_refused_or_failed=%d "
        "m5_secs_to_last=%.1f\n",
        n, est, alive, closed, (double)(last_est_t - t0) / 1e9);
    hold();
    finish(est > 0 ? est : 1);
}

/* ---------------------------------------------------------------- M6: STUN over TCP */

/* A TCP connection from 127.a.b.c to ternd's STUN port (non-blocking; -1 when it did not
 * connect within 1 s: a server that stops accepting leaves connects hanging in its backlog) */
static int tcp_from(uint8_t a, uint8_t b, uint8_t c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    tern_addr l;
    tern_addr_ipv4(&l, 127, a, b, c, 0);
    struct sockaddr_in sin;
    to_sockaddr(&l, &sin);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }
    to_sockaddr(&opt.stun, &sin);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t el = sizeof(err);
        if (errno != EINPROGRESS || poll(&p, 1, 1000) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static int stun_request(int fd)
{
    uint8_t tid[TERN_STUN_TID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t req[256];
    int n = tern_stun_binding_request(req, sizeof(req), tid, 0, NULL);
    return n > 0 && write(fd, req, (size_t)n) == n ? 0 : -1;
}

/* A Binding request over TCP from 127.a.b.c: 1 when a response came within ms. */
static int stun_tcp_ok(uint8_t a, uint8_t b, uint8_t c, int ms)
{
    int fd = tcp_from(a, b, c);
    if (fd < 0) return 0;
    uint8_t resp[512];
    int ok = 0;
    if (stun_request(fd) == 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) == 1 && read(fd, resp, sizeof(resp)) >= 20) ok = 1;
    }
    close(fd);
    return ok;
}

/* Whether ternd closed fd (EOF or reset; without blocking). */
static int tcp_closed_by_peer(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) != 1) return 0;
    uint8_t b[512];
    ssize_t r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* A socket ternd holds for the idle timeout: when its clock started on this side (the request
 * sent, or the connect) and what kind it is */
enum { IDLE_SERVED, IDLE_SILENT, IDLE_TRICKLE };
typedef struct idle_sock {
    int fd, kind, sent;
    uint64_t ref;
} idle_sock;

static void row_m6(void)
{
    if (!opt.has_stun) die("m6 needs --stun ADDR:PORT (ternd's STUN TCP address)");
    begin();
    int n = opt.n ? opt.n : 300;
    int *fds = calloc((size_t)n, sizeof(int));
    uint64_t *t_req = calloc((size_t)n, sizeof(uint64_t));
    char *answered = calloc((size_t)n, 1);
    int before = stun_tcp_ok(24, 1, 2, 2000);
    out("attack_start=1\n");
    /* n connections from one address, a Binding request on each as soon as it is connected */
    int connected = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = tcp_from(24, 1, 1);
        if (fds[i] < 0) continue;
        connected++;
        t_req[i] = now_ns();
        if (stun_request(fds[i]) != 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
    /* which of them the server serves: answered within 1 s (a connection it closed at once,
     * or left unaccepted in its backlog, is not) */
    int n_answered = 0;
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < TERN_NS_PER_S) {
        int pending = 0;
        for (int i = 0; i < n; i++) {
            if (fds[i] < 0 || answered[i]) continue;
            uint8_t resp[512];
            ssize_t r = recv(fds[i], resp, sizeof(resp), MSG_DONTWAIT);
            if (r > 0) {
                answered[i] = 1;
                n_answered++;
            } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                close(fds[i]);
                fds[i] = -1;
            } else {
                pending++;
            }
        }
        if (!pending) break;
        usleep(10 * 1000);
    }
    /* held now: served and still open (with a short idle timeout the first ones served may
     * already be closed when the flood ends; their places are then taken by later ones) */
    int alive = 0;
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0 && answered[i]) {
            if (tcp_closed_by_peer(fds[i])) {
                close(fds[i]);
                fds[i] = -1;
            } else {
                alive++;
            }
        }
    int other = stun_tcp_ok(24, 1, 2, 2000);
    int same = stun_tcp_ok(24, 1, 1, 2000);
    rss_sample(now_ns() + TERN_NS_PER_S);
    out("m6_held_tried=%d m6_connected=%d m6_answered=%d m6_held_served=%d "
        "m6_other_addr_served=%d m6_same_addr_served=%d m6_served_before=%d\n",
        n, connected, n_answered, alive, other, same, before);
    /* the idle timeout (--stun-idle S = ternd's --stun-tcp-idle): the served ones held, now
     * idle; from a second address, sockets that each had one request answered; from a third,
     * sockets that never send a byte; from a fourth, sockets that trickle a Binding request
     * one byte every 250 ms (never complete within S) */
    enum { EXTRA = 8 };
    int cap = n + 3 * EXTRA, nw = 0;
    idle_sock *w = calloc((size_t)cap, sizeof(idle_sock));
    uint8_t req[256];
    uint8_t tid[TERN_STUN_TID_LEN] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    int req_len = tern_stun_binding_request(req, sizeof(req), tid, 0, NULL);
    for (int i = 0; i < n && opt.stun_idle; i++)
        if (fds[i] >= 0 && answered[i]) {
            w[nw++] = (idle_sock){fds[i], IDLE_SERVED, 0, t_req[i]};
            fds[i] = -1;
        }
    for (int i = 0; i < EXTRA && opt.stun_idle; i++) {
        int fd = tcp_from(24, 1, 5);
        if (fd >= 0) {
            uint64_t t = now_ns();
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            uint8_t resp[512];
            if (stun_request(fd) == 0 && poll(&pf, 1, 1000) == 1 &&
                recv(fd, resp, sizeof(resp), MSG_DONTWAIT) > 0) {
                w[nw++] = (idle_sock){fd, IDLE_SERVED, 0, t};
            } else {
                close(fd);
            }
        }
        fd = tcp_from(24, 1, 3);
        if (fd >= 0) w[nw++] = (idle_sock){fd, IDLE_SILENT, 0, now_ns()};
        fd = tcp_from(24, 1, 4);
        if (fd >= 0) w[nw++] = (idle_sock){fd, IDLE_TRICKLE, 0, now_ns()};
    }
    out("attack_hold=1\n");
    uint64_t hold_start = now_ns(), hold_ns = (uint64_t)(opt.hold * 1e9);
    /* watch every one until ternd closes it, or S + 4 s: the delay from its request (served),
     * or its connect (silent, trickling), to the close; another address is served throughout
     * (a Binding request every 500 ms) */
    int closed = 0, closed_kind[3] = {0}, watched_kind[3] = {0}, probes = 0, probes_ok = 0;
    int trickled = 0;
    double dmin = 1e9, dmax = 0;
    uint64_t last_probe = 0, last_trickle = 0;
    uint64_t deadline = hold_start + (uint64_t)(opt.stun_idle + 4) * TERN_NS_PER_S;
    for (int k = 0; k < nw; k++) watched_kind[w[k].kind]++;
    for (;;) {
        uint64_t now = now_ns();
        int open = 0;
        for (int k = 0; k < nw; k++) {
            if (w[k].fd < 0) continue;
            if (tcp_closed_by_peer(w[k].fd)) {
                double d = (double)(now - w[k].ref) / 1e9;
                if (d < dmin) dmin = d;
                if (d > dmax) dmax = d;
                closed++;
                closed_kind[w[k].kind]++;
                close(w[k].fd);
                w[k].fd = -1;
            } else {
                open++;
            }
        }
        if (now - last_trickle >= 250 * TERN_NS_PER_MS) {
            last_trickle = now;
            for (int k = 0; k < nw; k++)
                if (w[k].fd >= 0 && w[k].kind == IDLE_TRICKLE && w[k].sent < req_len &&
                    send(w[k].fd, req + w[k].sent, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) {
                    w[k].sent++;
                    trickled++;
                }
        }
        if (now - last_probe >= 500 * TERN_NS_PER_MS) {
            last_probe = now;
            probes++;
            probes_ok += stun_tcp_ok(24, 1, 2, 1000);
        }
        if ((open == 0 || now >= deadline) && now - hold_start >= hold_ns) break;
        usleep(20 * 1000);
    }
    /* the idle ones gone, the attacking address is served again */
    int same_after = stun_tcp_ok(24, 1, 1, 2000);
    out("m6_idle_s=%d m6_idle_watched=%d m6_idle_closed=%d m6_idle_served_watched=%d "
        "m6_idle_served_closed=%d m6_idle_silent_closed=%d m6_idle_trickle_closed=%d "
        "m6_idle_trickle_bytes=%d m6_idle_close_min_s=%.2f m6_idle_close_max_s=%.2f "
        "m6_other_probes=%d m6_other_probes_served=%d m6_same_addr_served_after=%d\n",
        opt.stun_idle, nw, closed, watched_kind[IDLE_SERVED], closed_kind[IDLE_SERVED],
        closed_kind[IDLE_SILENT], closed_kind[IDLE_TRICKLE], trickled, closed ? dmin : 0.0, dmax,
        probes, probes_ok, same_after);
    for (int k = 0; k < nw; k++)
        if (w[k].fd >= 0) close(w[k].fd);
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(w);
    free(fds);
    free(t_req);
    free(answered);
    finish(alive > 0 ? alive : 1);
}

/* ---------------------------------------------------------------- M7: RPC calls in flight */

static void offer(int pi, const char *svc)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_OFFER);
    m.service = (const uint8_t *)svc;
    m.service_len = strlen(svc);
    rdv_send(&peers[pi], now_ns(), &m);
}

static void call(int pi, const char *svc, uint64_t id, uint32_t timeout_ms)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_CALL);
    m.service = (const uint8_t *)svc;
    m.service_len = strlen(svc);
    m.method = (const uint8_t *)"m";
    m.method_len = 1;
    m.has_call_id = 1;
    m.call_id = id;
    m.has_timeout = 1;
    m.timeout_ms = timeout_ms;
    m.payload = (const uint8_t *)"x";
    m.payload_len = 1;
    m.has_payload = 1;
    rdv_send(&peers[pi], now_ns(), &m);
}

static void row_m7(void)
{
    begin();
    int n = opt.n ? opt.n : 400;
    int per = 256; /* the server's per-caller limit today */
    int sink = spawn(1, 25, 1, 1, 1);
    int echo = spawn(1, 25, 2, 1, 1);
    int legit = spawn(1, 25, 3, 1, 1);
    peers[echo].provider = 1;
    peers[sink].provider = 2;
    offer(sink, "hostile-sink");
    offer(echo, "hostile-echo");
    loop(500, NULL);
    int first = spawn(n, 26, 1, 4, 1);
    out("attack_start=1\n");
    uint64_t sent = 0;
    for (int i = first; i < first + n; i++) {
        for (int k = 0; k < per; k++) {
            call(i, "hostile-sink", (uint64_t)k + 1, 60000);
            sent++;
        }
        if ((i & 7) == 7) loop(5, NULL);
    }
    loop(3000, NULL);
    uint64_t legit_replies0 = peers[legit].replies, legit_err0 = peers[legit].errors;
    call(legit, "hostile-echo", 7, 5000);
    uint64_t t0 = now_ns();
    while (peers[legit].replies == legit_replies0 && peers[legit].errors == legit_err0 &&
           now_ns() - t0 < 3 * TERN_NS_PER_S)
        loop(50, NULL);
    int legit_ok = peers[legit].replies > legit_replies0;
    out("m7_callers=%d m7_calls_sent=%llu m7_sink_calls_received=%llu m7_legit_call_ok=%d\n", n,
        (unsigned long long)sent, (unsigned long long)peers[sink].calls_in, legit_ok);
    sum_errors(first, n, "m7");
    sum_errors(legit, 1, "m7_legit");
    hold();
    finish(n + 3);
}

/* ---------------------------------------------------------------- L: replayed Initial */

static void row_l(void)
{
    begin();
    int trials = opt.n ? opt.n : 20;
    int atk = sock_open(27, 1, 1, -1);
    /* control: clients whose Initial nobody replays complete their handshake */
    int ctl = spawn(5, 27, 3, 1, 0);
    int ctl_est = count_est(ctl, 5, NULL);
    int first = n_peers;
    out("attack_start=1\n");
    for (int t = 0; t < trials; t++) {
        int pi = n_peers++;
        hpeer *p = &peers[pi];
        memset(p, 0, sizeof(*p));
        p->sock = sock_open(27, 2, (uint8_t)(1 + t), pi);
        tern_endpoint_config cfg;
        tern_endpoint_config_default(&cfg);
        peer_callbacks(&cfg, p);
        uint64_t now = now_ns();
        if (tern_endpoint_new(&cfg, now, &p->ep) != TERN_OK) die("endpoint");
        if (tern_endpoint_connect(p->ep, now, &socks[p->sock].local, &opt.server, opt.server_key,
                                  &p->c) != TERN_OK)
            die("connect");
        /* capture the client's Initial; the attacker (who saw it on the path) sends it first,
         * from its own address; the client's own copy follows 1 ms later */
        static uint8_t buf[8 * TERN_MAX_DATAGRAM];
        tern_datagram d[8];
        int n = tern_endpoint_send(p->ep, now, d, 8, buf, sizeof(buf));
        for (int i = 0; i < n; i++) sock_send(atk, &d[i].remote, d[i].data, d[i].len);
        usleep(1000);
        for (int i = 0; i < n; i++) sock_send(p->sock, &d[i].remote, d[i].data, d[i].len);
        loop(20, NULL);
    }
    out("attack_hold=1\n");
    wait_first = first;
    wait_count = trials;
    loop(opt.hold > 3 ? opt.hold * 1000 : 3000, all_established);
    int closed;
    int est = count_est(first, trials, &closed);
    out("l_control=5 l_control_established=%d\n", ctl_est);
    out("l_trials=%d l_legit_established=%d l_legit_failed=%d l_attacker_sent_bytes=%llu "
        "l_attacker_recv_bytes=%llu l_attacker_recv_dgrams=%llu\n",
        trials, est, closed, (unsigned long long)socks[atk].tx_bytes,
        (unsigned long long)socks[atk].rx_bytes, (unsigned long long)socks[atk].rx_dgrams);
    finish(trials);
}

/* ---------------------------------------------------------------- names from the network */

/* SERVER_ADDR/KEY are a `tern recv --listen` receiver's: one transfer (tern send's protocol:
 * 'H' header, 'D' data, 'E' SHA-256, on one reliable ordered flow) whose file name carries a
 * newline, a forged "received" line and a terminal escape. Prints the receiver's verdict. */
static void row_names(void)
{
    int a = spawn(1, 28, 1, 1, 0);
    hpeer *p = &peers[a];
    if (!p->flow_open) die("names: no connection to the receiver");
    const char *name = "x\nreceived forged.bin 1 bytes hash ok path direct\n\033[2J";
    size_t nl = strlen(name);
    uint8_t hdr[12 + 256];
    hdr[0] = 'H';
    hdr[1] = 2; /* tern send's XFER_VERSION */
    for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)(i == 7 ? 1 : 0); /* size 1 */
    hdr[10] = (uint8_t)(nl >> 8);
    hdr[11] = (uint8_t)nl;
    memcpy(hdr + 12, name, nl);
    uint8_t data[2] = {'D', 'z'}, end[1 + crypto_hash_sha256_BYTES];
    end[0] = 'E';
    crypto_hash_sha256(end + 1, data + 1, 1);
    uint64_t now = now_ns();
    tern_flow_send(p->c, p->flow, now, hdr, 12 + nl, -1);
    tern_flow_send(p->c, p->flow, now, data, sizeof(data), -1);
    tern_flow_send(p->c, p->flow, now, end, sizeof(end), -1);
    p->dirty = 1;
    wait_first = a;
    wait_count = 1;
    uint64_t t0 = now_ns();
    while (!p->got_raw && !p->closed && now_ns() - t0 < 3 * TERN_NS_PER_S) loop(50, NULL);
    int status = p->got_raw && p->raw_len >= 2 && p->raw[0] == 'V' ? p->raw[1] : -1;
    char text[300];
    size_t tl = 0;
    for (size_t i = 2; p->got_raw && i < p->raw_len && tl + 1 < sizeof(text); i++)
        text[tl++] = (p->raw[i] >= 0x20 && p->raw[i] < 0x7f && p->raw[i] != ' ') ? (char)p->raw[i]
                                                                              : '_';
    text[tl] = '\0';
    out("names_verdict=%d names_text=%s\n", status, text);
    close_all();
    out("done=1\n");
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
    fprintf(stderr,
            "usage: tern_hostile ROW SERVER_ADDR:PORT SERVER_KEY [options]\n"
            "rows (each bounded in time and count, loopback only):\n"
            "  h1   authenticated 1-RTT packets from --n new source addresses (500), then 2,000\n"
            "       PATH_CHALLENGEs from one new address; bytes received there vs sent\n"
            "  h2   fragments 1..window-1 on every flow, never fragment 0, on --conns\n"
            "       connections (1) for --secs (6) at --rate packets/s (60000)\n"
            "  h3   OFFER distinct service names for --secs (6)\n"
            "  h4a  --n members (20) that never read while one sender posts for --secs (6)\n"
            "  h4b  one attacker JOIN/LEAVE in a loop beside --n members (50) for --secs (6)\n"
            "  m1   --n fresh keys (80) introduce themselves to --target for --secs (8)\n"
            "  m2   --n attackers (10) REGISTER victim sockets as LOCAL candidates and each asks\n"
            "       for an introduction to --target; datagrams at the victims over --secs (10)\n"
            "  m3   --n identities (300) behind one IP address each introduced to --target;\n"
            "       then another address asks for one: relay offered?\n"
            "  m4   ternd requires tokens (--secret FILE: its --token-secret): --n attackers\n"
            "       (16) without a register token and --n with one of their own try for --secs\n"
            "       (6) to REGISTER, JOIN, OFFER (squat) and CALL with no, forged, expired and\n"
            "       other-subject tokens; legitimate peers with tokens join, offer and call\n"
            "  m5   --n connections (1000) from one address within --secs (12)\n"
            "  m6   --n TCP STUN sockets (300) held from one address to --stun ADDR:PORT; with\n"
            "       --stun-idle S (ternd's --stun-tcp-idle), idle and trickling sockets too:\n"
            "       when ternd closes each, while another address is served\n"
            "  m7   --n callers (400) fill the calls in flight; a legitimate call then\n"
            "  l    --n Initials (20) replayed from another address before the client's own\n"
            "  names  SERVER is a `tern recv --listen`: a file whose name holds a newline, a\n"
            "       forged output line and a terminal escape\n"
            "options: --pid PID (ternd: VmRSS), --idle K (idle registered peers first: their\n"
            "  cost per connection), --hold S (2), --target PEER_ID, --stun ADDR:PORT,\n"
            "  --stun-idle S, --secret FILE\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 4) usage();
    const char *row = argv[1];
    if (tern_addr_parse(&opt.server, argv[2]) != TERN_OK || opt.server.family != TERN_AF_INET)
        die("bad server address %s", argv[2]);
    if (tern_hex_decode(argv[3], opt.server_key, TERN_KEY_LEN) != TERN_OK) die("bad key");
    opt.hold = 2;
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) usage();
        i++;
        if (!strcmp(a, "--pid")) opt.pid = atoi(v);
        else if (!strcmp(a, "--n")) opt.n = atoi(v);
        else if (!strcmp(a, "--conns")) opt.conns = atoi(v);
        else if (!strcmp(a, "--secs")) opt.secs = atof(v);
        else if (!strcmp(a, "--hold")) opt.hold = atof(v);
        else if (!strcmp(a, "--idle")) opt.idle = atoi(v);
        else if (!strcmp(a, "--rate")) opt.rate = (uint32_t)atoi(v);
        else if (!strcmp(a, "--target")) {
            if (tern_hex_decode(v, opt.target, TERN_PEER_ID_LEN) != TERN_OK) die("bad --target");
            opt.has_target = 1;
        } else if (!strcmp(a, "--secret")) {
            read_secret(v);
        } else if (!strcmp(a, "--stun-idle")) {
            opt.stun_idle = atoi(v);
        } else if (!strcmp(a, "--stun")) {
            if (tern_addr_parse(&opt.stun, v) != TERN_OK) die("bad --stun");
            opt.has_stun = 1;
        } else usage();
    }
    if (opt.n < 0 || opt.n > 1500 || opt.conns < 0 || opt.conns > 64 || opt.secs > 60 ||
        opt.hold > 60 || opt.idle < 0 || opt.idle > 400 || opt.stun_idle < 0 ||
        opt.stun_idle > 30)
        die("a count or duration over this harness's bounds");
    hostile_init();
    out("row=%s\n", row);
    if (!strcmp(row, "h1")) row_h1();
    else if (!strcmp(row, "h2")) row_h2();
    else if (!strcmp(row, "h3")) row_h3();
    else if (!strcmp(row, "h4a")) row_h4a();
    else if (!strcmp(row, "h4b")) row_h4b();
    else if (!strcmp(row, "m1")) row_m1();
    else if (!strcmp(row, "m2")) row_m2();
    else if (!strcmp(row, "m3")) row_m3();
    else if (!strcmp(row, "m5")) row_m5();
    else if (!strcmp(row, "m6")) row_m6();
    else if (!strcmp(row, "m7")) row_m7();
    else if (!strcmp(row, "m4")) row_m4();
    else if (!strcmp(row, "l")) row_l();
    else if (!strcmp(row, "names")) row_names();
    else usage();
    hostile_exit();
    return 0;
}
