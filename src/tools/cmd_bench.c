/*
 * tern bench: throughput and latency between two tern endpoints (and a TCP reference).
 *
 * Design. `tern bench --listen ADDR:PORT` is a server driver (ready loop) that serves every
 * client until SIGINT/SIGTERM. `tern bench --to ADDR:PORT --server-key HEX` is the client. Each
 * side sends on one reliable ordered flow of its own (flows are one-way):
 *   throughput (default): the client sends 'T' messages of --msg bytes (64 KiB) for --seconds,
 *     or until --bytes were sent, keeping the flow's send buffer full (TERN_ERR_AGAIN is the
 *     back-pressure; on_flow_writable refills; every message references the one client buffer,
 *     tern_flow_send_ref, so the sender copies nothing; a one-shot driver timer at the end of
 *     --seconds stops the refills), then 'F'. The server counts the bytes from the
 *     first 'T' to the 'F' and its own CPU time (getrusage) over that span, and answers 'R' with
 *     bytes, nanoseconds and CPU nanoseconds. The client prints goodput as the receiver saw it,
 *     and the CPU of each side as a share of one core over the transfer.
 *   --latency: the client sends one 'Q' message of --size bytes (64) at a time; the server echoes
 *     it as 'P' on its flow; the client records each round trip (a request goes out as soon as
 *     the previous answer arrives) for --seconds and prints p50/p90/p99/p99.9/max.
 * `--tcp` runs the latency test over TCP with TCP_NODELAY (blocking sockets, the same sizes and
 * the same statistics), the kernel's reference; TCP throughput is iperf3's job. tern itself
 * runs over UDP, TCP or TLS (--transport on the client, --tcp-listen/--tls-listen on the
 * listener; transport.c): the client prints the transport in use once connected and at each
 * move, and names it in its last line (net=udp|tcp|tls).
 * The last line of a client run is machine-readable: `bench: key=value ...`.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tern/driver.h"
#include "tern/udp.h"
#include "tools/tools.h"

#define BENCH_MAX_SAMPLES (1u << 22)

enum {
    BM_DATA = 'T',
    BM_FIN = 'F',
    BM_REPORT = 'R',
    BM_REQ = 'Q',
    BM_RESP = 'P',
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tern bench --listen ADDR:PORT [--key FILE] [--allow-integrity-only] [--tcp]\n"
            "                  [--tcp-listen ADDR:PORT] [--tls-listen ADDR:PORT]\n"
            "       tern bench --to ADDR:PORT --server-key HEX [options]\n"
            "The listener serves clients until interrupted (it prints its address and key).\n"
            "Listener options:\n");
    tools_listen_usage(f);
    fprintf(f,
            "Client options:\n"
            "  --seconds N         how long to measure (default 5)\n"
            "  --bytes N           throughput: stop after N bytes (K/M/G suffixes) instead\n"
            "  --msg BYTES         throughput message size (default 64K)\n"
            "  --latency           request/response round trips instead of throughput\n"
            "  --size BYTES        latency message size (default 64)\n"
            "  --aead aes|chacha   cipher preference; --integrity-only: no encryption\n"
            "  --tcp               latency over TCP with TCP_NODELAY (the listener needs --tcp)\n"
            "  --timeout MS        handshake timeout (5000); --idle-timeout MS (30000)\n"
            "  --cc bbr|cubic|newreno, --payload BYTES (1200..1500): sender settings to compare\n"
            "  --verbose           print the driver's and the connection's counters at the end\n");
    tools_transport_usage(f);
    fprintf(f,
            "Output: goodput (as the receiver counted it) and CPU of each side as %% of one core,\n"
            "or round-trip percentiles; then one line `bench: key=value ...`.\n"
            "Exit: 0 measured, 1 other failure, 2 usage, 3 wrong server key, 4 no answer,\n"
            "      5 connection lost.\n");
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p)
{
    if (n == 0) return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i < n ? i : n - 1] / 1e3;
}

/* The percentiles of v; net: the transport the samples went over ("udp", "tcp", "tls"; the TCP
 * reference run: "kernel-tcp"). */
static void print_latency(const char *what, const char *net, uint64_t *v, size_t n, double secs)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    printf("%s: %zu round trips in %.2f s; rtt us p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max "
           "%.1f\n",
           what, n, secs, pct(v, n, 50), pct(v, n, 90), pct(v, n, 99), pct(v, n, 99.9),
           pct(v, n, 100));
    printf("bench: mode=latency transport=%s n=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f "
           "p999_us=%.1f max_us=%.1f net=%s\n",
           what, n, pct(v, n, 50), pct(v, n, 90), pct(v, n, 99), pct(v, n, 99.9), pct(v, n, 100),
           net);
    fflush(stdout);
}

/* ---------------------------------------------------------------- server */

typedef struct srv_conn {
    uint64_t flow;          /* our reply flow */
    int has_flow;
    uint64_t bytes, t_first, cpu_first;
} srv_conn;

typedef struct srv_state {
    tern_driver *d;
    uint64_t served;
} srv_state;

static int srv_on_accept(tern_conn *c, void *user)
{
    (void)user;
    srv_conn *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) return -1;
    tern_conn_set_user_data(c, sc);
    return 0;
}

static void srv_reply(srv_state *s, tern_conn *c, srv_conn *sc, const uint8_t *m, size_t len)
{
    if (!sc->has_flow) {
        tern_flow_config fc;
        tern_flow_config_default(&fc);
        if (tern_flow_open(c, &fc, &sc->flow) != TERN_OK) return;
        sc->has_flow = 1;
    }
    tern_flow_send(c, sc->flow, tern_driver_now(s->d), m, len, -1);
}

static void srv_on_message(tern_conn *c, uint64_t flow_id, const uint8_t *data, size_t len,
                           void *user)
{
    srv_state *s = user;
    srv_conn *sc = tern_conn_get_user_data(c);
    (void)flow_id;
    if (sc == NULL || len == 0) return;
    uint64_t now = tern_driver_now(s->d);
    if (data[0] == BM_DATA) {
        if (sc->bytes == 0) {
            sc->t_first = now;
            sc->cpu_first = tools_cpu_ns();
        }
        sc->bytes += len;
    } else if (data[0] == BM_FIN) {
        uint8_t r[1 + 24];
        r[0] = BM_REPORT;
        put64(r + 1, sc->bytes);
        put64(r + 9, sc->bytes ? now - sc->t_first : 0);
        put64(r + 17, sc->bytes ? tools_cpu_ns() - sc->cpu_first : 0);
        srv_reply(s, c, sc, r, sizeof(r));
        sc->bytes = 0;
        s->served++;
    } else if (data[0] == BM_REQ && len <= 65536) {
        uint8_t buf[65536];
        memcpy(buf, data, len);
        buf[0] = BM_RESP;
        srv_reply(s, c, sc, buf, len);
    }
}

static void srv_on_conn_free(tern_conn *c, void *user)
{
    (void)user;
    free(tern_conn_get_user_data(c));
    tern_conn_set_user_data(c, NULL);
}

static int tcp_listen(const tern_addr *a, char *where, size_t wlen);

static int run_server(const tern_addr *listen, const tools_listen_opts *lo, const char *keyfile,
                      int integrity, int tcp)
{
    if (tcp) {
        char where[64];
        int fd = tcp_listen(listen, where, sizeof(where));
        if (fd < 0) return XFER_EXIT_OTHER;
        printf("tern bench: listening on tcp %s\n", where);
        fflush(stdout);
        tools_catch_signals(NULL);
        uint8_t buf[65536];
        while (!tools_interrupted()) {
            int c = accept(fd, NULL, NULL);
            if (c < 0) continue;
            int one = 1;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            ssize_t n;
            while (!tools_interrupted() && (n = read(c, buf, sizeof(buf))) > 0)
                if (write(c, buf, (size_t)n) != n) break;
            close(c);
        }
        close(fd);
        return XFER_EXIT_OK;
    }
    srv_state s;
    memset(&s, 0, sizeof(s));
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.n_listen = 1;
    dc.listen[0] = *listen;
    if (tools_listen_apply("tern bench", lo, &dc) != 0) return XFER_EXIT_USAGE;
    dc.endpoint.is_server = 1;
    dc.endpoint.has_static_key = 1;
    int rc = keyfile ? tern_keyfile_read(keyfile, &dc.endpoint.static_key)
                     : tern_keypair_generate(&dc.endpoint.static_key);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern bench: cannot read the key %s\n", keyfile ? keyfile : "");
        return XFER_EXIT_USAGE;
    }
    dc.endpoint.settings.integrity_only = (uint8_t)integrity;
    dc.endpoint.callbacks.on_accept = srv_on_accept;
    dc.endpoint.callbacks.on_message = srv_on_message;
    dc.endpoint.callbacks.on_conn_free = srv_on_conn_free;
    dc.endpoint.user_data = &s;
    char hex[2 * TERN_KEY_LEN + 1], where[64];
    tern_hex_encode(dc.endpoint.static_key.pub, TERN_KEY_LEN, hex);
    rc = tern_driver_new(&dc, &s.d);
    tern_keypair_wipe(&dc.endpoint.static_key);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern bench: cannot listen: %s\n", strerror(errno));
        return XFER_EXIT_OTHER;
    }
    tern_addr la;
    tern_driver_local_addr(s.d, 0, &la);
    printf("tern bench: listening on udp %s\ntern bench: public key %s\n",
           tern_addr_format(&la, where, sizeof(where)), hex);
    tools_listen_print("tern bench", s.d, lo);
    tools_catch_signals(s.d);
    rc = tern_driver_run(s.d);
    tools_session_close(s.d, NULL, 0, "bench listener stopping", 300 * TERN_NS_PER_MS);
    fprintf(stderr, "tern bench: served %llu throughput runs\n", (unsigned long long)s.served);
    return rc == TERN_OK ? XFER_EXIT_OK : XFER_EXIT_OTHER;
}

/* ---------------------------------------------------------------- client */

typedef struct cli_state {
    tools_conn link;               /* first: tools_on_closed, tools_on_conn_free */
    tern_driver_timer *end_timer;  /* fires once, when --seconds are over */
    char where[64];
    int latency;
    uint64_t seconds_ns, max_bytes;
    size_t msg, size;
    uint8_t *buf;
    uint64_t flow;
    int phase;              /* 0 connecting, 1 running, 2 waiting for the report, 3 done */
    uint64_t t0, t_end, cpu0, sent;
    uint64_t *samples;
    size_t n_samples;
    uint64_t req_at;
    uint64_t r_bytes, r_ns, r_cpu; /* the server's report */
    uint64_t t_report, cpu_report;
    tools_client_opts opts;
    uint8_t aead, integrity_only; /* what the handshake chose */
    uint64_t t_connect;           /* tools_now_ns() at the connect call */
    tern_driver_connect_cfg cc;   /* how it was opened */
} cli_state;

/* --verbose: the driver's and the connection's counters, to see what limits a run */
static void cli_print_counters(cli_state *s)
{
    tern_driver_stats ds;
    tern_driver_get_stats(s->link.d, &ds);
    fprintf(stderr,
            "driver: iterations %llu rx_syscalls %llu rx_datagrams %llu rx_gro_batches %llu "
            "tx_syscalls %llu tx_datagrams %llu tx_gso_msgs %llu tx_blocked %llu gso %d gro %d "
            "rcvbuf %d sndbuf %d\n",
            (unsigned long long)ds.iterations, (unsigned long long)ds.rx_syscalls,
            (unsigned long long)ds.rx_datagrams, (unsigned long long)ds.rx_gro_batches,
            (unsigned long long)ds.tx_syscalls, (unsigned long long)ds.tx_datagrams,
            (unsigned long long)ds.tx_gso_msgs, (unsigned long long)ds.tx_blocked, ds.gso, ds.gro,
            ds.rcvbuf, ds.sndbuf);
    if (s->link.conn == NULL) return;
    tern_conn_stats cs;
    tern_network_info ni;
    tern_conn_get_stats(s->link.conn, &cs);
    tern_conn_network_info(s->link.conn, &ni);
    fprintf(stderr,
            "conn: tx_packets %llu tx_bytes %llu rx_packets %llu lost %llu retransmitted_frags "
            "%llu spurious %llu pto %llu srtt_us %.1f min_rtt_us %.1f\n"
            "network: bandwidth %.3f Gbit/s pacing %.3f Gbit/s cwnd %llu in_flight %llu loss "
            "%.4f\n",
            (unsigned long long)cs.tx_packets, (unsigned long long)cs.tx_bytes,
            (unsigned long long)cs.rx_packets, (unsigned long long)cs.packets_lost,
            (unsigned long long)cs.packets_retransmitted_frags,
            (unsigned long long)cs.spurious_losses, (unsigned long long)cs.pto_count,
            (double)cs.srtt_ns / 1e3, (double)cs.min_rtt_ns / 1e3, (double)ni.bandwidth_bps / 1e9,
            (double)ni.pacing_rate_bps / 1e9, (unsigned long long)ni.cwnd_bytes,
            (unsigned long long)ni.bytes_in_flight, ni.loss_rate);
}

static void cli_send_req(cli_state *s, uint64_t now)
{
    s->buf[0] = BM_REQ;
    s->req_at = now;
    if (tern_flow_send(s->link.conn, s->flow, now, s->buf, s->size, -1) != TERN_OK) {
        s->phase = 3;
        tern_driver_stop(s->link.d);
    }
}

/* Fills the flow until it refuses (on_flow_writable calls again) or the run is over, then sends
 * 'F' (again on the next on_flow_writable while the queue refuses it). */
static void cli_pump(cli_state *s, uint64_t now)
{
    if (s->phase != 1 || s->latency || s->link.conn == NULL) return;
    while (now - s->t0 < s->seconds_ns && (s->max_bytes == 0 || s->sent < s->max_bytes)) {
        size_t n = s->msg;
        if (s->max_bytes && s->max_bytes - s->sent < n) n = (size_t)(s->max_bytes - s->sent);
        /* s->buf stays as it is until after the driver is freed: no copy, no release to wait for */
        int rc = tern_flow_send_ref(s->link.conn, s->flow, now, s->buf, n, -1, NULL);
        if (rc == TERN_ERR_AGAIN) return;
        if (rc != TERN_OK) {
            fprintf(stderr, "tern bench: cannot queue data: %s\n", tern_strerror(rc));
            s->phase = 3;
            tern_driver_stop(s->link.d);
            return;
        }
        s->sent += n;
    }
    uint8_t fin = BM_FIN;
    if (tern_flow_send(s->link.conn, s->flow, now, &fin, 1, -1) == TERN_OK) {
        s->t_end = now;
        s->phase = 2;
    }
}

/* --seconds are over: latency ends here when no answer ended it; throughput sends 'F'. */
static void cli_on_end_timer(tern_driver *d, tern_driver_timer *t, void *user)
{
    cli_state *s = user;
    uint64_t now = tern_driver_now(d);
    (void)t;
    if (s->phase == 1 && s->latency) {
        s->t_end = now;
        s->phase = 3;
        tern_driver_stop(d);
        return;
    }
    cli_pump(s, now);
}

static void cli_on_writable(tern_conn *c, uint64_t flow, void *user)
{
    cli_state *s = user;
    if (c == s->link.conn && flow == s->flow) cli_pump(s, tern_driver_now(s->link.d));
}

static void cli_on_release(tern_conn *c, uint64_t flow, void *token, int delivered, void *user)
{
    (void)c, (void)flow, (void)token, (void)delivered, (void)user; /* s->buf is never reused */
}

static void cli_on_established(tern_conn *c, void *user)
{
    cli_state *s = user;
    uint64_t now = tern_driver_now(s->link.d);
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    if (tern_flow_open(c, &fc, &s->flow) != TERN_OK) {
        s->phase = 3;
        tern_driver_stop(s->link.d);
        return;
    }
    tern_conn_stats st;
    tern_conn_get_stats(c, &st);
    s->aead = st.aead;
    s->integrity_only = st.integrity_only;
    s->phase = 1;
    s->t0 = now;
    tools_transport_connected(stderr, "tern bench", c, s->t_connect, &s->cc);
    s->cpu0 = tools_cpu_ns();
    s->buf[0] = s->latency ? BM_REQ : BM_DATA;
    tern_driver_timer_set(s->end_timer, now + s->seconds_ns);
    if (s->latency) cli_send_req(s, now);
    else cli_pump(s, now);
}

static void cli_on_message(tern_conn *c, uint64_t flow_id, const uint8_t *data, size_t len,
                           void *user)
{
    cli_state *s = user;
    (void)c, (void)flow_id;
    uint64_t now = tern_driver_now(s->link.d);
    if (len == 25 && data[0] == BM_REPORT && s->phase == 2) {
        s->r_bytes = get64(data + 1);
        s->r_ns = get64(data + 9);
        s->r_cpu = get64(data + 17);
        s->t_report = now;
        s->cpu_report = tools_cpu_ns();
        s->phase = 3;
        tern_driver_stop(s->link.d);
    } else if (len >= 1 && data[0] == BM_RESP && s->phase == 1 && s->latency) {
        /* the driver's clock is read once per iteration: take a fresh one for the sample */
        uint64_t t = tools_now_ns();
        if (s->n_samples < BENCH_MAX_SAMPLES) s->samples[s->n_samples++] = t - s->req_at;
        if (t - s->t0 >= s->seconds_ns) {
            s->t_end = t;
            s->phase = 3;
            tern_driver_stop(s->link.d);
            return;
        }
        cli_send_req(s, t);
    }
}

static void cli_on_path(tern_conn *c, void *user)
{
    cli_state *s = user;
    if (c == s->link.conn && s->phase >= 1) tools_transport_changed(stderr, "tern bench", c);
}

static int cli_report(cli_state *s)
{
    const char *cipher = s->integrity_only                  ? "integrity-only"
                         : s->aead == TERN_AEAD_AES256GCM ? "aes-256-gcm"
                                                            : "chacha20-poly1305";
    tern_path_info pi;
    if (s->link.conn) tern_conn_path(s->link.conn, &pi);
    const char *net = s->link.conn ? tools_transport_name(&pi.remote) : "?";
    if (s->latency) {
        print_latency(cipher, net, s->samples, s->n_samples, (double)(s->t_end - s->t0) / 1e9);
        return s->n_samples > 0 ? XFER_EXIT_OK : XFER_EXIT_OTHER;
    }
    double rsec = (double)s->r_ns / 1e9, ssec = (double)(s->t_report - s->t0) / 1e9;
    if (rsec <= 0) rsec = 1e-9;
    if (ssec <= 0) ssec = 1e-9;
    double gbps = (double)s->r_bytes * 8 / rsec / 1e9;
    double scpu = 100.0 * (double)(s->cpu_report - s->cpu0) / 1e9 / ssec;
    double rcpu = 100.0 * (double)s->r_cpu / 1e9 / rsec;
    printf("tern bench: %s: %llu bytes received in %.3f s: goodput %.3f Gbit/s; cpu sender %.0f%% "
           "receiver %.0f%% of a core\n",
           cipher, (unsigned long long)s->r_bytes, rsec, gbps, scpu, rcpu);
    printf("bench: mode=throughput transport=%s bytes=%llu secs=%.3f gbps=%.3f snd_cpu=%.1f "
           "rcv_cpu=%.1f net=%s\n",
           cipher, (unsigned long long)s->r_bytes, rsec, gbps, scpu, rcpu, net);
    fflush(stdout);
    return s->r_bytes > 0 ? XFER_EXIT_OK : XFER_EXIT_OTHER;
}

static int tcp_latency(const tern_addr *to, size_t size, uint64_t seconds_ns);

static int run_client(cli_state *s)
{
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    tools_client_settings(&s->opts, &dc.endpoint.settings);
    dc.endpoint.callbacks.on_established = cli_on_established;
    dc.endpoint.callbacks.on_message = cli_on_message;
    dc.endpoint.callbacks.on_closed = tools_on_closed;
    dc.endpoint.callbacks.on_conn_free = tools_on_conn_free;
    dc.endpoint.callbacks.on_flow_writable = cli_on_writable;
    dc.endpoint.callbacks.on_flow_release = cli_on_release;
    dc.endpoint.callbacks.on_path = cli_on_path;
    dc.endpoint.user_data = s;
    tools_transport_watch(&dc, &s->cc, &s->link);
    int rc = tern_driver_new(&dc, &s->link.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern bench: cannot set up: %s\n", tern_strerror(rc));
        return XFER_EXIT_OTHER;
    }
    int exit_code = XFER_EXIT_OTHER;
    uint64_t grace = 0;
    rc = tern_driver_timer_new(s->link.d, cli_on_end_timer, s, &s->end_timer);
    s->t_connect = tools_now_ns();
    if (rc == TERN_OK) rc = tern_driver_connect_opts(s->link.d, &s->cc, &s->link.conn);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern bench: cannot connect to %s: %s\n", s->where, tern_strerror(rc));
        goto out;
    }
    tools_catch_signals(s->link.d);
    if (tern_driver_run(s->link.d) != TERN_OK) {
        fprintf(stderr, "tern bench: event loop failed: %s\n", strerror(errno));
        goto out;
    }
    if (s->opts.verbose) cli_print_counters(s);
    if (s->phase == 3 && s->link.closed.err == 0 && !tools_interrupted())
        exit_code = cli_report(s);
    else if (s->link.closed.err != 0)
        exit_code = tools_explain_conn_error("tern bench", s->where, &s->link.closed,
                                             s->opts.timeout_ms, s->opts.idle_ms);
    else fprintf(stderr, "tern bench: interrupted\n");
    grace = 300 * TERN_NS_PER_MS;
out:
    tools_session_close(s->link.d, s->end_timer, 0, "bench done", grace);
    return exit_code;
}

int cmd_bench(int argc, char **argv)
{
    cli_state s;
    memset(&s, 0, sizeof(s));
    tools_client_opts_default(&s.opts);
    const char *listen = NULL, *keyfile = NULL;
    tools_listen_opts lo;
    memset(&lo, 0, sizeof(lo));
    uint64_t seconds = 5, msg = 64 << 10, size = 64;
    int tcp = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, r = tools_client_opt(&s.opts, argc, argv, &i);
        if (r == 0) r = tools_listen_opt(&lo, argc, argv, &i);
        if (r == 1) continue;
        if (r < 0) {
            bad = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return XFER_EXIT_OK;
        } else if (!strcmp(a, "--listen") && v) {
            listen = v;
            i++;
        } else if (!strcmp(a, "--key") && v) {
            keyfile = v;
            i++;
        } else if (!strcmp(a, "--seconds") && v) {
            bad = tools_parse_u64(v, 1, 3600, 0, &seconds);
            i++;
        } else if (!strcmp(a, "--bytes") && v) {
            bad = tools_parse_u64(v, 1, UINT64_MAX >> 1, 1, &s.max_bytes);
            i++;
        } else if (!strcmp(a, "--msg") && v) {
            bad = tools_parse_u64(v, 16, 16u << 20, 1, &msg);
            i++;
        } else if (!strcmp(a, "--size") && v) {
            bad = tools_parse_u64(v, 1, 65536, 1, &size);
            i++;
        } else if (!strcmp(a, "--latency")) {
            s.latency = 1;
        } else if (!strcmp(a, "--tcp")) {
            tcp = 1;
        } else if (!strcmp(a, "--allow-integrity-only")) {
            s.opts.integrity_only = 1;
        } else {
            bad = 1;
        }
        if (bad) return tools_bad_argument("tern bench", a, v, usage);
    }
    const char *target = s.opts.to;
    if ((listen == NULL) == (target == NULL)) {
        usage(stderr);
        return XFER_EXIT_USAGE;
    }
    tern_addr addr;
    if (tools_resolve(listen ? listen : target, 4433, &addr) != 0) return XFER_EXIT_USAGE;
    if (listen) return run_server(&addr, &lo, keyfile, s.opts.integrity_only, tcp);
    s.seconds_ns = s.max_bytes ? 3600 * TERN_NS_PER_S : seconds * TERN_NS_PER_S;
    if (tcp) {
        if (!s.latency) {
            fprintf(stderr, "tern bench: --tcp measures latency only (use iperf3 for TCP "
                            "throughput)\n");
            return XFER_EXIT_USAGE;
        }
        return tcp_latency(&addr, (size_t)size, seconds * TERN_NS_PER_S);
    }
    uint8_t pub[TERN_KEY_LEN];
    if (tools_server_key("tern bench", s.opts.server_key, pub) != 0 ||
        tools_transport_connect_cfg("tern bench", &s.opts.transport, &addr, pub, &s.cc) != 0)
        return XFER_EXIT_USAGE;
    tern_addr_format(s.cc.remote.family ? &s.cc.remote : &s.cc.stream_remote, s.where,
                     sizeof(s.where));
    s.msg = (size_t)msg;
    s.size = (size_t)size;
    s.buf = calloc(1, s.msg > s.size ? s.msg : s.size);
    s.samples = s.latency ? malloc(BENCH_MAX_SAMPLES * sizeof(uint64_t)) : NULL;
    if (s.buf == NULL || (s.latency && s.samples == NULL)) {
        fprintf(stderr, "tern bench: out of memory\n");
        free(s.buf);
        free(s.samples);
        return XFER_EXIT_OTHER;
    }
    int rc = run_client(&s);
    free(s.buf);
    free(s.samples);
    return rc;
}

/* ---------------------------------------------------------------- TCP reference */

static int tcp_listen(const tern_addr *a, char *where, size_t wlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = tern_addr_to_sockaddr(a, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 16) != 0) {
        fprintf(stderr, "tern bench: cannot listen on tcp: %s\n", strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    tern_addr la;
    tern_addr_from_sockaddr(&la, (struct sockaddr *)&ss, sl);
    tern_addr_format(&la, where, wlen);
    return fd;
}

static int tcp_latency(const tern_addr *to, size_t size, uint64_t seconds_ns)
{
    struct sockaddr_storage ss;
    socklen_t sl = tern_addr_to_sockaddr(to, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        fprintf(stderr, "tern bench: cannot connect over tcp: %s\n", strerror(errno));
        if (fd >= 0) close(fd);
        return XFER_EXIT_NO_ANSWER;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint8_t *buf = calloc(1, size);
    uint64_t *v = malloc(BENCH_MAX_SAMPLES * sizeof(uint64_t));
    size_t n = 0;
    int ok = buf && v;
    uint64_t t0 = tools_now_ns(), t = t0;
    while (ok && t - t0 < seconds_ns && n < BENCH_MAX_SAMPLES) {
        uint64_t s0 = tools_now_ns();
        if (write(fd, buf, size) != (ssize_t)size) ok = 0;
        for (size_t got = 0; ok && got < size;) {
            ssize_t r = read(fd, buf + got, size - got);
            if (r <= 0) ok = 0;
            else got += (size_t)r;
        }
        t = tools_now_ns();
        if (ok) v[n++] = t - s0;
    }
    close(fd);
    if (!ok) fprintf(stderr, "tern bench: tcp connection failed: %s\n", strerror(errno));
    else print_latency("tcp-nodelay", "kernel-tcp", v, n, (double)(t - t0) / 1e9);
    free(buf);
    free(v);
    return ok ? XFER_EXIT_OK : XFER_EXIT_LOST;
}
