/*
 * `tern loadgen stun HOST:PORT`: a closed-loop STUN load generator. Each of K sockets keeps W
 * Binding requests in flight; every answer is decoded, matched to its slot by transaction ID, and
 * its XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS from RFC 3489 servers) compared with the socket's own
 * address, then the slot sends its next request. Requests unanswered for 200 ms count as lost
 * and are replaced. The run stops at the time limit or request limit, whichever comes first.
 */
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tern/stun.h"
#include "tern/udp.h"
#include "tools/tools.h"

#define MAX_SOCKETS 64
#define MAX_WINDOW 256
#define LOST_NS (200ull * TERN_NS_PER_MS)

typedef struct lg_slot {
    uint32_t seq;
    uint64_t sent_ns;
} lg_slot;

typedef struct lg_sock {
    tern_udp_sock u;    /* connected to the server; its counters hold the send errors */
    uint8_t expect[12]; /* the XOR-MAPPED-ADDRESS attribute a correct IPv4 answer carries */
    int has_expect;
    lg_slot slot[MAX_WINDOW];
    tern_udp_batch rx, tx;
} lg_sock;

typedef struct lg {
    tern_addr server;
    int n_socks, window, rfc3489, fingerprint, gso, gro, full_check;
    uint8_t run[4];
    uint64_t sent, ok, bad, stale, lost, errors, gso_fallbacks; /* the last two: sums at the end */
    lg_sock *socks;
} lg;

static void help(FILE *f)
{
    fprintf(f, "usage: tern loadgen rdv ADDR:PORT --server-key HEX ...  (loadgen rdv --help)\n"
               "       tern loadgen stun HOST:PORT [--duration S] [--sockets K] [--window W]\n"
               "                        [--requests N] [--rfc3489] [--fingerprint]\n"
               "                        [--no-gso] [--no-gro] [--full-check]\n"
               "Closed-loop STUN load: K sockets (1) x W requests in flight (32) for S seconds\n"
               "(5, at most 3600) or N requests; checks every mapped address it gets back.\n"
               "Prints one line: sent, ok, bad, lost, rate; exits 1 when any answer was wrong.\n"
               "  --rfc3489      requests without the magic cookie (for RFC 3489-only servers)\n"
               "  --fingerprint  add FINGERPRINT to the requests\n"
               "  --no-gso       one datagram per request send (default: UDP GSO, one send per\n"
               "                 batch of equal requests; the server still gets separate datagrams)\n"
               "  --no-gro       no UDP_GRO on the sockets (default: on where the kernel has it)\n"
               "  --full-check   decode every answer completely (default: an IPv4 Binding success\n"
               "                 whose ID and XOR-MAPPED-ADDRESS match byte for byte is accepted\n"
               "                 after a bounded attribute walk; anything else is fully decoded)\n");
}

static size_t build(lg *g, int si, int slot, uint8_t *out)
{
    uint8_t tid[TERN_STUN_TID_LEN];
    memcpy(tid, g->run, 4);
    tid[4] = (uint8_t)si;
    tid[5] = (uint8_t)(slot >> 8);
    tid[6] = (uint8_t)slot;
    tid[7] = 0;
    uint32_t seq = g->socks[si].slot[slot].seq;
    tid[8] = (uint8_t)(seq >> 24);
    tid[9] = (uint8_t)(seq >> 16);
    tid[10] = (uint8_t)(seq >> 8);
    tid[11] = (uint8_t)seq;
    tern_stun_builder b;
    static const uint8_t old_cookie[4] = {0x54, 0x45, 0x52, 0x4e};
    tern_stun_build_init(&b, out, 64, TERN_STUN_METHOD_BINDING, TERN_STUN_CLASS_REQUEST, tid,
                         !g->rfc3489, old_cookie);
    if (g->fingerprint && !g->rfc3489) tern_stun_add_fingerprint(&b);
    int n = tern_stun_build_finish(&b);
    return n > 0 ? (size_t)n : 0;
}

static void queue(lg *g, int si, int slot, size_t *m, uint64_t now)
{
    lg_sock *s = &g->socks[si];
    s->slot[slot].sent_ns = now;
    s->tx.len[*m] = build(g, si, slot, tern_udp_slot(&s->tx, *m));
    memset(&s->tx.addr[*m], 0, sizeof(tern_addr)); /* connected: no per-datagram route lookup */
    (*m)++;
}

static void flush(lg *g, lg_sock *s, size_t m)
{
    if (m == 0) return;
    uint64_t refused = s->u.st.tx_errors;
    size_t done = tern_udp_send_batch(&s->u, &s->tx, m); /* the rest (EAGAIN) times out: lost */
    g->sent += done - (s->u.st.tx_errors - refused);
}

/* The cheap check: an IPv4 Binding success for this run and socket whose attribute walk stays
 * inside the datagram and whose XOR-MAPPED-ADDRESS is byte for byte the expected one. Returns the
 * slot it answers, or -1 when the full decoder must judge. */
static int fast_ok(const lg *g, const lg_sock *s, int si, const uint8_t *p, size_t len,
                   uint32_t *seq)
{
    static const uint8_t cookie[4] = {0x21, 0x12, 0xa4, 0x42};
    if (!s->has_expect || len < 32 || len > TERN_STUN_MAX_MSG || (len & 3) != 0 || p[0] != 0x01 ||
        p[1] != 0x01 || (size_t)((p[2] << 8) | p[3]) != len - 20 || memcmp(p + 4, cookie, 4) != 0 ||
        memcmp(p + 8, g->run, 4) != 0 || p[12] != si || p[15] != 0)
        return -1;
    size_t off = 20;
    while (off + 4 <= len) {
        uint16_t t = (uint16_t)((p[off] << 8) | p[off + 1]);
        size_t l = (size_t)((p[off + 2] << 8) | p[off + 3]);
        if (l > len - off - 4) return -1;
        if (t == TERN_STUN_ATTR_XOR_MAPPED_ADDRESS) {
            if (l != 8 || memcmp(p + off, s->expect, 12) != 0) return -1;
            *seq = ((uint32_t)p[16] << 24) | ((uint32_t)p[17] << 16) | ((uint32_t)p[18] << 8) |
                   p[19];
            return (p[13] << 8) | p[14];
        }
        off += 4 + ((l + 3) & ~(size_t)3);
    }
    return -1;
}

/* Judges one answer on socket si and, unless it is stale or foreign, queues the slot's next
 * request at tx slot *m. */
static void answer(lg *g, int si, const uint8_t *p, size_t len, size_t *m, uint64_t now)
{
    lg_sock *s = &g->socks[si];
    uint32_t seq = 0;
    int slot = g->full_check ? -1 : fast_ok(g, s, si, p, len, &seq);
    int good = 1;
    if (slot < 0) {
        tern_stun_msg msg;
        if (len > TERN_STUN_MAX_MSG || tern_stun_decode(&msg, p, len, 1) != TERN_OK ||
            memcmp(msg.tid, g->run, 4) != 0 || msg.tid[4] != si) {
            g->bad++;
            return;
        }
        slot = (msg.tid[5] << 8) | msg.tid[6];
        seq = ((uint32_t)msg.tid[8] << 24) | ((uint32_t)msg.tid[9] << 16) |
              ((uint32_t)msg.tid[10] << 8) | msg.tid[11];
        /* RFC 3489 servers XOR (if at all) with their own rules: trust MAPPED-ADDRESS there */
        int use_xor = (msg.present & TERN_STUN_HAS_XOR_MAPPED) &&
                      (msg.has_cookie || !(msg.present & TERN_STUN_HAS_MAPPED));
        const tern_addr *mapped = use_xor                                ? &msg.xor_mapped
                                  : (msg.present & TERN_STUN_HAS_MAPPED) ? &msg.mapped
                                                                         : NULL;
        good = msg.cls == TERN_STUN_CLASS_SUCCESS && mapped && tern_addr_equal(mapped, &s->u.local);
    }
    if (slot >= g->window || seq != s->slot[slot].seq) {
        g->stale++; /* a late answer to a request already counted lost */
        return;
    }
    if (good) g->ok++;
    else g->bad++;
    s->slot[slot].seq++;
    queue(g, si, slot, m, now);
}

/* Handles the answers waiting on socket si; returns how many datagrams were read. */
static int drain(lg *g, int si, uint64_t now)
{
    lg_sock *s = &g->socks[si];
    int n = tern_udp_recv(&s->u, &s->rx, 0);
    if (n <= 0) return 0;
    size_t m = 0;
    int got = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *p = tern_udp_slot(&s->rx, (size_t)i);
        size_t len = s->rx.len[i];
        if (len > s->rx.slot_size) {
            g->bad++;
            got++;
            continue;
        }
        size_t seg = s->rx.seg[i] ? s->rx.seg[i] : len;
        for (size_t off = 0; off < len; off += seg) { /* GRO: several answers in one slot */
            answer(g, si, p + off, len - off < seg ? len - off : seg, &m, now);
            got++;
            if (m == s->tx.count) { /* cannot happen with one answer per slot; kept safe */
                flush(g, s, m);
                m = 0;
            }
        }
    }
    flush(g, s, m);
    return got;
}

int cmd_loadgen(int argc, char **argv)
{
    lg g;
    memset(&g, 0, sizeof(g));
    g.n_socks = 1;
    g.window = 32;
    g.gso = 1;
    g.gro = 1;
    double duration = 5;
    uint64_t max_requests = UINT64_MAX;
    const char *host = NULL;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        help(stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "rdv")) return cmd_loadgen_rdv(argc, argv);
    if (argc < 3 || strcmp(argv[1], "stun") != 0) {
        help(stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(a, "--duration") && i + 1 < argc) {
            duration = atof(argv[++i]);
        } else if (!strcmp(a, "--sockets") && i + 1 < argc) {
            g.n_socks = atoi(argv[++i]);
        } else if (!strcmp(a, "--window") && i + 1 < argc) {
            g.window = atoi(argv[++i]);
        } else if (!strcmp(a, "--requests") && i + 1 < argc) {
            max_requests = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--rfc3489")) {
            g.rfc3489 = 1;
        } else if (!strcmp(a, "--fingerprint")) {
            g.fingerprint = 1;
        } else if (!strcmp(a, "--no-gso")) {
            g.gso = 0;
        } else if (!strcmp(a, "--no-gro")) {
            g.gro = 0;
        } else if (!strcmp(a, "--full-check")) {
            g.full_check = 1;
        } else if (a[0] != '-' && host == NULL) {
            host = a;
        } else {
            fprintf(stderr, "tern loadgen: unexpected argument %s\n", a);
            return 2;
        }
    }
    if (host == NULL || duration <= 0 || duration > 3600 || g.n_socks < 1 ||
        g.n_socks > MAX_SOCKETS || g.window < 1 || g.window > MAX_WINDOW) {
        help(stderr);
        return 2;
    }
    if (tools_resolve(host, TERN_STUN_PORT, &g.server) != 0) return 1;
    randombytes_buf(g.run, sizeof(g.run));
    g.socks = calloc((size_t)g.n_socks, sizeof(lg_sock));
    if (g.socks == NULL) return 1;
    struct pollfd pfd[MAX_SOCKETS];
    int rc = 1;
    for (int si = 0; si < g.n_socks; si++) {
        lg_sock *s = &g.socks[si];
        tern_addr any;
        memset(&any, 0, sizeof(any));
        any.family = g.server.family;
        int flags = (g.gro ? TERN_UDP_GRO : 0) | (g.gso ? TERN_UDP_GSO : 0);
        s->u.fd = -1;
        if (tern_udp_sock_open(&s->u, &any, flags, 0) != TERN_OK ||
            tern_udp_sock_connect(&s->u, &g.server) != TERN_OK ||
            tern_udp_local_addr(s->u.fd, &s->u.local) != TERN_OK || /* the connected address */
            tern_udp_batch_init(&s->rx, (size_t)g.window, s->u.gro ? 65535 : TERN_STUN_MAX_MSG) !=
                TERN_OK ||
            tern_udp_batch_init(&s->tx, (size_t)g.window, 64) != TERN_OK) {
            perror("tern loadgen: socket");
            g.n_socks = si + 1;
            goto out;
        }
        if (s->u.local.family == TERN_AF_INET && !g.rfc3489) {
            uint16_t xp = (uint16_t)(s->u.local.port ^ (TERN_STUN_MAGIC >> 16));
            const uint8_t hdr[6] = {0x00, 0x20, 0x00, 0x08, 0x00, 0x01};
            memcpy(s->expect, hdr, 6);
            s->expect[6] = (uint8_t)(xp >> 8);
            s->expect[7] = (uint8_t)xp;
            for (int k = 0; k < 4; k++)
                s->expect[8 + k] = (uint8_t)(s->u.local.ip[k] ^ (TERN_STUN_MAGIC >> (24 - 8 * k)));
            s->has_expect = 1;
        }
        pfd[si].fd = s->u.fd;
        pfd[si].events = POLLIN;
    }
    uint64_t start = tools_now_ns();
    uint64_t end = start + (uint64_t)(duration * 1e9);
    for (int si = 0; si < g.n_socks; si++) {
        size_t m = 0;
        for (int k = 0; k < g.window; k++) queue(&g, si, k, &m, start);
        flush(&g, &g.socks[si], m);
    }
    uint64_t now = start, last_scan = start;
    while (now < end && g.sent < max_requests) {
        int got = 0;
        for (int si = 0; si < g.n_socks; si++) got += drain(&g, si, now);
        now = tools_now_ns();
        if (!got) poll(pfd, (nfds_t)g.n_socks, 10);
        if (now - last_scan >= 50 * TERN_NS_PER_MS) {
            last_scan = now;
            for (int si = 0; si < g.n_socks; si++) {
                size_t m = 0;
                lg_sock *s = &g.socks[si];
                for (int k = 0; k < g.window; k++)
                    if (now - s->slot[k].sent_ns > LOST_NS) {
                        g.lost++;
                        s->slot[k].seq++;
                        queue(&g, si, k, &m, now);
                    }
                flush(&g, s, m);
            }
        }
    }
    double secs = (double)(tools_now_ns() - start) / 1e9;
    for (int si = 0; si < g.n_socks; si++) {
        g.gso_fallbacks += g.socks[si].u.st.gso_fallbacks;
        g.errors += g.socks[si].u.st.tx_errors;
    }
    if (g.gso_fallbacks) fprintf(stderr, "tern loadgen: the kernel refused UDP GSO; sent singly\n");
    printf("sent=%llu ok=%llu bad=%llu lost=%llu stale=%llu send_errors=%llu seconds=%.2f "
           "rate=%.0f\n",
           (unsigned long long)g.sent, (unsigned long long)g.ok, (unsigned long long)g.bad,
           (unsigned long long)g.lost, (unsigned long long)g.stale,
           (unsigned long long)g.errors, secs, secs > 0 ? (double)g.ok / secs : 0.0);
    rc = (g.bad == 0 && g.ok > 0) ? 0 : 1;
out:
    for (int si = 0; si < g.n_socks; si++) {
        tern_udp_sock_close(&g.socks[si].u);
        tern_udp_batch_free(&g.socks[si].rx);
        tern_udp_batch_free(&g.socks[si].tx);
    }
    free(g.socks);
    return rc;
}
