/*
 * `tern loadgen rdv ADDR:PORT --server-key HEX`: rendezvous load on a real ternd over real UDP.
 *
 * N peers, each a tern client endpoint with its own long-term key (a peer ID is the hash of an
 * endpoint's static key, so N identities need N endpoints; a tern_driver holds one endpoint and
 * three descriptors, and N drivers would need 3N descriptors, so this command runs its own loop
 * over the core endpoints instead). The peers share S UDP sockets bound to 0.0.0.0 on S ports;
 * peer i leaves from socket i mod S with the source address 127.2.x.y number i / S (IP_PKTINFO
 * on send), and a datagram that arrives is handed to the endpoint of the peer whose address it
 * was sent to (IP_PKTINFO on receive): loopback accepts every 127/8 address. With --sources K,
 * the peers come from K addresses (ternd's handshake rate limit is per source IP: 100/s, bucket
 * 200, so the default K keeps 100 peers or fewer on each address), and at most --connect-window
 * handshakes are in flight (below ternd's 256 half-open handshakes, past which it asks every
 * client for a retry round trip).
 *
 * Phase 1 (register): every peer connects, opens a reliable ordered flow and sends REGISTER with
 * one LOCAL candidate (its own address); REGISTERED must carry a PUBLIC candidate equal to that
 * address. Timed from the first Initial to the last REGISTERED.
 * Phase 2 (introduce): for --duration seconds, W INTRODUCE requests are kept in flight, each from
 * a random registered peer with nothing in flight to a random other registered peer. A PEER_INFO
 * counts when it names the target, carries its key, its LOCAL candidate and a nonce; the target's
 * INTRODUCED must carry a key, the peer ID that is its hash, and a nonce. Latency is from queuing
 * INTRODUCE to handling PEER_INFO. PEER_INFOs with a RELAY candidate and a CHANNEL (a relay
 * session ternd opened for the pair) are counted apart (with_relay).
 * With --server-pid, ternd's CPU time (/proc/PID/stat) and memory (VmRSS, VmHWM in
 * /proc/PID/status) are read before the first peer, when all are registered and at the end.
 *
 * The files: cmd_loadgen_rdv.c (options, setup, the register and introduce phases, the report),
 * loadgen_rdv_peers.c (the peers' endpoints and their rendezvous messages), loadgen_rdv_loop.c
 * (the sockets and the event loop, and why it is not the driver's), loadgen_rdv_relay.c (the
 * relay phase, --relay S: K disjoint pairs of registered peers introduced once, then a closed
 * loop of relay datagrams through ternd's relay for S seconds). At the end every connection is
 * closed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/loadgen_rdv.h"
#include "tools/tools.h"

/* The command line beyond what lives in lgr. */
typedef struct lgr_opts {
    const char *host, *key;
    double duration, relay_secs;
    int duration_set;
    long server_pid;
} lgr_opts;

static void help(FILE *f)
{
    fprintf(f,
            "usage: tern loadgen rdv ADDR:PORT --server-key HEX [--peers N] [--duration S]\n"
            "                        [--window W] [--sources K] [--connect-window C]\n"
            "                        [--server-pid PID] [--relay S [--relay-pairs K]\n"
            "                        [--relay-size BYTES] [--relay-window W]]\n"
            "Rendezvous load on a real ternd over UDP: N peers (10000), each with its own key,\n"
            "connect and REGISTER (C handshakes in flight, 128), then W INTRODUCE requests (64)\n"
            "are kept in flight between random registered peers for S seconds (10).\n"
            "  --sources K     source addresses 127.2.x.y the peers come from (default: one per\n"
            "                  100 peers, inside ternd's per-IP handshake burst)\n"
            "  --server-pid P  read ternd's CPU time and memory from /proc/P at each phase\n"
            "Relay forwarding (ternd's relay, docs/rendezvous.md section 8):\n"
            "  --relay S       after registering (and the introductions, only when --duration\n"
            "                  is given too), introduce K disjoint pairs once and, for S seconds,\n"
            "                  run a closed loop through the relay: the first side of each pair\n"
            "                  sends W relay datagrams (0x81, its channel, an inner packet), each\n"
            "                  side answers every one it receives at once with the channel it\n"
            "                  received, and a pair that received nothing for 200 ms gets W new\n"
            "                  ones; needs N >= 2K\n"
            "  --relay-pairs K pairs (100)\n"
            "  --relay-size B  whole relay datagram, 9-byte header included, 14..1500 (1200)\n"
            "  --relay-window W datagrams each pair starts with (8)\n"
            "Prints a 'register' line, an 'introduce' line (unless --relay is given without\n"
            "--duration), with --relay a 'relay' line (datagrams received per second, payload\n"
            "Gbit/s, lost, misrouted; with --server-pid ternd's CPU seconds in the phase and\n"
            "datagrams per ternd CPU-second) and, with --server-pid, a 'server' line. Exits 0\n"
            "when every peer registered and every answer was right (with --relay: every pair\n"
            "got its channels, datagrams came back, none misrouted), 1 otherwise.\n");
}

void lgr_proc_read(long pid, proc_sample *o)
{
    memset(o, 0, sizeof(*o));
    if (pid <= 0) return;
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *q = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (q == NULL || sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                            &st) != 2)
        return;
    long hz = sysconf(_SC_CLK_TCK);
    o->cpu_ns = (ut + st) * (TERN_NS_PER_S / (uint64_t)(hz > 0 ? hz : 100));
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f == NULL) return;
    while (fgets(buf, sizeof(buf), f)) {
        unsigned long long v;
        if (sscanf(buf, "VmRSS: %llu", &v) == 1) o->rss_kb = v;
        if (sscanf(buf, "VmHWM: %llu", &v) == 1) o->hwm_kb = v;
    }
    fclose(f);
    o->ok = 1;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const lgr *g, double q)
{
    if (g->lat_n == 0) return 0;
    size_t i = (size_t)(q * (double)(g->lat_n - 1) + 0.5);
    return g->lat_us[i];
}

static int parse_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
    uint64_t x;
    if (tools_parse_u64(v, lo, hi, 0, &x) != 0) return -1;
    *out = (uint32_t)x;
    return 0;
}

/* Reads the command line into g and o. Returns 0 to run, 1 when --help was printed, 2 on a
 * usage error. */
static int parse_options(lgr *g, lgr_opts *o, int argc, char **argv)
{
    g->n = 10000;
    g->window = 64;
    g->cwindow = 128;
    g->n_pairs = 100;
    g->relay_size = 1200;
    g->relay_window = 8;
    o->duration = 10;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            return 1;
        } else if (!strcmp(a, "--server-key") && v) {
            o->key = v, i++;
        } else if (!strcmp(a, "--peers") && v) {
            if (parse_u32(v, 2, 1000000, &g->n)) return 2;
            i++;
        } else if (!strcmp(a, "--duration") && v) {
            o->duration = atof(v), i++;
            o->duration_set = 1;
        } else if (!strcmp(a, "--relay") && v) {
            o->relay_secs = atof(v), i++;
            if (!(o->relay_secs > 0 && o->relay_secs <= 3600)) return 2;
        } else if (!strcmp(a, "--relay-pairs") && v) {
            if (parse_u32(v, 1, 500000, &g->n_pairs)) return 2;
            i++;
        } else if (!strcmp(a, "--relay-size") && v) {
            if (parse_u32(v, TERN_RELAY_HDR_LEN + 1 + 4, TERN_MAX_DATAGRAM, &g->relay_size))
                return 2;
            i++;
        } else if (!strcmp(a, "--relay-window") && v) {
            if (parse_u32(v, 1, 4096, &g->relay_window)) return 2;
            i++;
        } else if (!strcmp(a, "--window") && v) {
            if (parse_u32(v, 1, 100000, &g->window)) return 2;
            i++;
        } else if (!strcmp(a, "--connect-window") && v) {
            if (parse_u32(v, 1, 100000, &g->cwindow)) return 2;
            i++;
        } else if (!strcmp(a, "--sources") && v) {
            if (parse_u32(v, 1, 1000000, &g->n_sources)) return 2;
            i++;
        } else if (!strcmp(a, "--server-pid") && v) {
            o->server_pid = atol(v), i++;
        } else if (a[0] != '-' && o->host == NULL) {
            o->host = a;
        } else {
            fprintf(stderr, "tern loadgen rdv: unexpected argument %s\n", a);
            return 2;
        }
    }
    if (o->host == NULL || o->key == NULL || !(o->duration > 0 && o->duration <= 3600)) return 2;
    if (tools_server_key("tern loadgen rdv", o->key, g->server_pub) != 0) return 2;
    return 0;
}

/* The server's address, the sources and sockets, the memory, the sockets and the peers, before
 * anything is timed. -1 on failure (printed). */
static int setup(lgr *g, const lgr_opts *o)
{
    if (tools_resolve(o->host, 4433, &g->server) != 0) return -1;
    if (g->server.family != TERN_AF_INET || g->server.ip[0] != 127) {
        fprintf(stderr, "tern loadgen rdv: the server must be on loopback (127.x.y.z): the "
                        "peers' addresses are 127.2.x.y\n");
        return -1;
    }
    if (o->relay_secs > 0 && g->n < 2 * g->n_pairs) {
        fprintf(stderr, "tern loadgen rdv: --relay-pairs %u needs --peers %u or more\n",
                (unsigned)g->n_pairs, 2 * (unsigned)g->n_pairs);
        return -1;
    }
    if (g->n_sources == 0) g->n_sources = (g->n + 99) / 100;
    if (g->n_sources > g->n) g->n_sources = g->n;
    g->n_socks = (g->n + g->n_sources - 1) / g->n_sources;
    if (g->n_socks > LGR_MAX_SOCKS || g->n_sources > 62500u * 125) {
        fprintf(stderr, "tern loadgen rdv: %u peers per address is too many (--sources)\n",
                g->n_socks);
        return -1;
    }
    g->p = calloc(g->n, sizeof(*g->p));
    g->s = calloc(g->n_socks, sizeof(*g->s));
    g->dirty = calloc(g->n, sizeof(*g->dirty));
    g->reg = calloc(g->n, sizeof(*g->reg));
    g->pairs = calloc(g->n_pairs, sizeof(*g->pairs));
    g->alloc.mem = *tern_mem_default();
    if (!g->p || !g->s || !g->dirty || !g->reg || !g->pairs ||
        tern__heap_init(&g->deadlines, &g->alloc) != TERN_OK) {
        fprintf(stderr, "tern loadgen rdv: out of memory\n");
        return -1;
    }
    if (lgr_socks_open(g) != 0) {
        perror("tern loadgen rdv: socket");
        return -1;
    }
    return lgr_peers_make(g);
}

/* Phase 1: every peer connects and registers; prints the 'register' line. */
static void phase_register(lgr *g, long server_pid, proc_sample *s0, proc_sample *s1)
{
    lgr_proc_read(server_pid, s0);
    uint64_t c0 = tools_cpu_ns(), t0 = tools_now_ns();
    uint64_t give_up = t0 + 60 * TERN_NS_PER_S + (uint64_t)g->n * 10 * TERN_NS_PER_MS;
    while (g->registered + g->failed < g->n && !tools_interrupted()) {
        lgr_iterate(g, 100);
        if (tools_now_ns() > give_up) {
            fprintf(stderr, "tern loadgen rdv: gave up waiting for registrations\n");
            break;
        }
    }
    uint64_t t1 = tools_now_ns(), c1 = tools_cpu_ns();
    lgr_proc_read(server_pid, s1);
    double reg_s = (double)(t1 - t0) / 1e9;
    printf("register peers=%u registered=%u failed=%u seconds=%.3f rate=%.0f client_cpu=%.0f%%",
           (unsigned)g->n, (unsigned)g->registered, (unsigned)g->failed, reg_s,
           reg_s > 0 ? g->registered / reg_s : 0.0, 100.0 * (double)(c1 - c0) / (double)(t1 - t0));
    if (s0->ok && s1->ok)
        printf(" server_cpu=%.0f%%", 100.0 * (double)(s1->cpu_ns - s0->cpu_ns) / (double)(t1 - t0));
    printf("\n");
    fflush(stdout);
}

/* Keeps W introductions in flight until end; an answer that never came is lost. */
static void introduce_until(lgr *g, uint64_t end)
{
    uint64_t last_scan = tools_now_ns();
    while (tools_now_ns() < end && !tools_interrupted() && g->registered >= 2) {
        lgr_iterate(g, 10);
        uint64_t now = tools_now_ns();
        if (now - last_scan <= 100 * TERN_NS_PER_MS) continue;
        last_scan = now;
        for (uint32_t i = 0; i < g->registered; i++) {
            rpeer *p = &g->p[g->reg[i]];
            if (p->busy && now - p->sent_ns > INTRO_LOST_NS) {
                g->intro_lost++;
                lgr_intro_done(g, p);
            }
        }
    }
}

/* Phase 2: introductions for the duration (with --relay only when --duration was given as
 * well); prints the 'introduce' line. Returns whether it ran. */
static int phase_introduce(lgr *g, const lgr_opts *o, const proc_sample *s1, proc_sample *s2)
{
    int run_intro = o->relay_secs <= 0 || o->duration_set;
    g->intro_on = run_intro;
    uint64_t t2 = tools_now_ns(), c2 = tools_cpu_ns();
    if (run_intro) introduce_until(g, t2 + (uint64_t)(o->duration * 1e9));
    g->intro_on = 0;
    uint64_t t3 = tools_now_ns(), c3 = tools_cpu_ns();
    lgr_proc_read(o->server_pid, s2);
    uint64_t ok_in_time = g->intro_ok;
    /* let the answers in flight arrive (not counted in the rate) */
    uint64_t drain_end = t3 + TERN_NS_PER_S;
    while (g->inflight && tools_now_ns() < drain_end && !tools_interrupted()) lgr_iterate(g, 10);
    double intro_s = (double)(t3 - t2) / 1e9;
    if (g->lat_n) qsort(g->lat_us, g->lat_n, sizeof(*g->lat_us), cmp_u32);
    if (run_intro) {
        printf(
            "introduce seconds=%.3f window=%u sent=%llu ok=%llu rate=%.0f bad=%llu errors=%llu "
            "lost=%llu introduced=%llu introduced_bad=%llu with_relay=%llu p50_us=%.0f p99_us=%.0f "
            "p999_us=%.0f max_us=%.0f client_cpu=%.0f%%",
            intro_s, (unsigned)g->window, (unsigned long long)g->intro_sent,
            (unsigned long long)g->intro_ok, intro_s > 0 ? (double)ok_in_time / intro_s : 0.0,
            (unsigned long long)g->intro_bad, (unsigned long long)g->intro_err,
            (unsigned long long)g->intro_lost, (unsigned long long)g->introduced,
            (unsigned long long)g->introduced_bad, (unsigned long long)g->with_relay, pct(g, 0.5),
            pct(g, 0.99), pct(g, 0.999), g->lat_n ? (double)g->lat_us[g->lat_n - 1] : 0.0,
            t3 - t2 > TERN_NS_PER_MS ? 100.0 * (double)(c3 - c2) / (double)(t3 - t2) : 0.0);
        if (s1->ok && s2->ok)
            printf(" server_cpu=%.0f%%",
                   100.0 * (double)(s2->cpu_ns - s1->cpu_ns) / (double)(t3 - t2));
        printf("\n");
    }
    fflush(stdout);
    return run_intro;
}

/* The 'server' line (with --server-pid) and the 'sockets' line. */
static void report(const lgr *g, const proc_sample *s0, const proc_sample *s1,
                   const proc_sample *s2)
{
    if (s0->ok && s1->ok && s2->ok)
        printf("server rss_before_kb=%llu rss_registered_kb=%llu hwm_registered_kb=%llu "
               "rss_end_kb=%llu hwm_end_kb=%llu bytes_per_peer=%.0f\n",
               (unsigned long long)s0->rss_kb, (unsigned long long)s1->rss_kb,
               (unsigned long long)s1->hwm_kb, (unsigned long long)s2->rss_kb,
               (unsigned long long)s2->hwm_kb,
               g->registered ? (double)(s1->rss_kb - s0->rss_kb) * 1024.0 / g->registered : 0.0);
    printf("sockets rx=%llu tx=%llu tx_dropped=%llu rx_unknown=%llu other_errors=%llu "
           "closed_after_register=%u late=%llu\n",
           (unsigned long long)g->rx, (unsigned long long)g->tx,
           (unsigned long long)g->tx_dropped, (unsigned long long)g->rx_unknown,
           (unsigned long long)g->other_err, (unsigned)g->closed, (unsigned long long)g->late);
    fflush(stdout);
}

/* Leaves gracefully: ternd frees the connections now rather than at their idle timeout. */
static void close_all(lgr *g)
{
    uint64_t tc = tools_now_ns();
    g->closing = 1;
    for (uint32_t i = 0; i < g->n; i++)
        if (g->p[i].conn && tern_conn_close(g->p[i].conn, tc, 0, "loadgen done", 12) == TERN_OK)
            lgr_touch(&g->p[i]);
    lgr_pump(g);
    while (tools_now_ns() < tc + 200 * TERN_NS_PER_MS) lgr_iterate(g, 10);
}

static void lgr_free(lgr *g)
{
    lgr_peers_free(g);
    lgr_socks_close(g);
    free(g->p);
    free(g->s);
    tern__heap_free(&g->deadlines);
    free(g->dirty);
    free(g->reg);
    free(g->pairs);
    free(g->lat_us);
    free(g);
}

int cmd_loadgen_rdv(int argc, char **argv)
{
    lgr *g = calloc(1, sizeof(*g));
    if (g == NULL) return 1;
    g->epfd = -1;
    lgr_opts o;
    memset(&o, 0, sizeof(o));
    int rc = parse_options(g, &o, argc, argv);
    if (rc != 0) {
        if (rc == 2) help(stderr);
        lgr_free(g);
        return rc == 1 ? 0 : 2;
    }
    if (setup(g, &o) != 0) {
        lgr_free(g);
        return 1;
    }
    tools_catch_signals(NULL);
    proc_sample s0, s1, s2;
    phase_register(g, o.server_pid, &s0, &s1);
    int run_intro = phase_introduce(g, &o, &s1, &s2);
    int relay_ok = 1;
    if (o.relay_secs > 0) relay_ok = lgr_relay_phase(g, o.relay_secs, o.server_pid) == 0;
    report(g, &s0, &s1, &s2);
    close_all(g);
    rc = (g->registered == g->n && relay_ok && (g->intro_ok > 0 || !run_intro) &&
          g->intro_bad == 0 && g->intro_err == 0 && g->intro_lost == 0 &&
          g->introduced_bad == 0 && g->other_err == 0)
             ? 0
             : 1;
    tools_release_signals();
    lgr_free(g);
    return rc;
}
