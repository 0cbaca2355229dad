/*
 * tern send: one file to a `tern recv` listener over an encrypted tern connection.
 *
 * Design. The driver's ready loop runs the connection; everything happens in callbacks and one
 * driver timer. Once the handshake completes the sender opens one RELIABLE ordered flow and sends
 * on it, in order: a header message ('H': version, file size, base name), the file in data
 * messages ('D' + up to --chunk bytes, 64 KiB by default: the core's reassembly costs the
 * receiver more than linearly in the message size) and an end message ('E' + the
 * SHA-256 of the whole file, OpenSSL's libcrypto, computed while reading), then
 * closes the flow. Back-pressure is the flow's send buffer: a chunk that tern_flow_send refuses
 * with TERN_ERR_AGAIN stays in our buffer (read once, hashed once) and the timer, every
 * millisecond, tries again as ACKs free the queue. Progress is the bytes the receiver has
 * acknowledged (sent minus tern_flow_queued): a bar with rate and time left when stderr is a
 * terminal, a plain line every few seconds otherwise. Flows go one way, so the receiver answers
 * on a flow of its own with one verdict message ('V', a status byte, a text); only a verdict of
 * success gives exit 0. Every other ending (wrong key, nothing listening, the receiver gone,
 * its disk full, a hash mismatch) prints one clear line and exits with the code in usage().
 * Connections are closed by tern_driver_shutdown() after the loop, never from a callback (closing
 * inside on_message frees the flow the core is still delivering from).
 *
 * This file also holds the helpers that tern recv and tern bench share (tools.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tern/driver.h"
#include "tools/peer.h"
#include "tools/peer_text.h"
#include "tools/tools.h"

/* ---------------------------------------------------------------- shared helpers */

int tools_explain_conn_error(const char *cmd, const char *where, int err, uint64_t code,
                             const char *reason, uint64_t timeout_ms, uint64_t idle_ms)
{
    if (reason == NULL) reason = "";
    switch (err) {
    case TERN_ERR_BAD_SERVER_KEY:
    case TERN_ERR_HANDSHAKE_AUTH:
        fprintf(stderr, "%s: %s does not hold the pinned key (%s): wrong --server-key?\n", cmd,
                where, tern_strerror(err));
        return XFER_EXIT_BAD_KEY;
    case TERN_ERR_HANDSHAKE_TIMEOUT:
        fprintf(stderr, "%s: no answer from %s within %llu ms: is a tern listener running there?\n",
                cmd, where, (unsigned long long)timeout_ms);
        return XFER_EXIT_NO_ANSWER;
    case TERN_ERR_NO_VERSION:
        fprintf(stderr, "%s: %s speaks none of our protocol versions\n", cmd, where);
        return XFER_EXIT_NO_ANSWER;
    case TERN_ERR_IDLE_TIMEOUT:
        fprintf(stderr,
                "%s: connection to %s lost: nothing heard for %llu ms (idle timeout); the peer "
                "stopped or the path broke\n",
                cmd, where, (unsigned long long)idle_ms);
        return XFER_EXIT_LOST;
    case TERN_ERR_STATELESS_RESET:
        fprintf(stderr,
                "%s: connection to %s lost: the peer no longer knows it (stateless reset; "
                "restarted?)\n",
                cmd, where);
        return XFER_EXIT_LOST;
    case TERN_ERR_PEER_CLOSED:
        fprintf(stderr, "%s: %s closed the connection (code %llu%s%s)\n", cmd, where,
                (unsigned long long)code, reason[0] ? ": " : "", reason);
        return XFER_EXIT_LOST;
    case TERN_ERR_REFUSED:
        fprintf(stderr, "%s: %s refused the connection%s%s\n", cmd, where, reason[0] ? ": " : "",
                reason);
        return XFER_EXIT_LOST;
    default:
        fprintf(stderr, "%s: connection to %s failed: %s\n", cmd, where, tern_strerror(err));
        return XFER_EXIT_OTHER;
    }
}

int tools_parse_u64(const char *text, uint64_t lo, uint64_t hi, int scaled, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] == '\0' || text[0] == '-' || end == text || errno != 0) return -1;
    if (scaled && *end != '\0') {
        unsigned shift = *end == 'K' || *end == 'k' ? 10
                         : *end == 'M' || *end == 'm' ? 20
                         : *end == 'G' || *end == 'g' ? 30
                                                      : 64;
        if (shift == 64 || end[1] != '\0' || v > (UINT64_MAX >> shift)) return -1;
        v <<= shift;
        end++;
    }
    if (*end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

uint64_t tools_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * TERN_NS_PER_S +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

static void fmt_bytes(uint64_t b, char *out, size_t len)
{
    if (b >= (1ull << 30)) snprintf(out, len, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20)) snprintf(out, len, "%.1f MiB", (double)b / (1ull << 20));
    else snprintf(out, len, "%.1f KiB", (double)b / 1024.0);
}

void xfer_progress_init(xfer_progress *p, const char *cmd, const char *name, uint64_t total,
                        uint64_t now, int quiet)
{
    memset(p, 0, sizeof(*p));
    p->cmd = cmd;
    p->name = name;
    p->total = total;
    p->t0 = p->last_t = p->rate_t = now;
    p->tty = isatty(STDERR_FILENO);
    p->quiet = quiet;
}

void xfer_progress_update(xfer_progress *p, uint64_t done, uint64_t now, int final)
{
    if (p->quiet) return;
    uint64_t period = p->tty ? 200 * TERN_NS_PER_MS : 2 * TERN_NS_PER_S;
    if (!final && now - p->last_t < period) return;
    /* rate over the last second or so, smoothed, so the time left does not jump about */
    if (now - p->rate_t >= 200 * TERN_NS_PER_MS) {
        double inst = (double)(done - p->rate_done) * 8e9 / (double)(now - p->rate_t);
        p->rate_bps = p->rate_bps == 0 ? inst : 0.7 * p->rate_bps + 0.3 * inst;
        p->rate_t = now;
        p->rate_done = done;
    }
    p->last_t = now;
    double pct = p->total ? 100.0 * (double)done / (double)p->total : 100.0;
    char d[32], t[32], left[32] = "--";
    fmt_bytes(done, d, sizeof(d));
    fmt_bytes(p->total, t, sizeof(t));
    if (p->rate_bps > 0 && done < p->total) {
        double s = (double)(p->total - done) * 8.0 / p->rate_bps;
        if (s < 360000) snprintf(left, sizeof(left), "%d:%02d", (int)s / 60, (int)s % 60);
    } else if (done >= p->total) {
        snprintf(left, sizeof(left), "0:00");
    }
    if (p->tty) {
        char bar[31];
        int fill = (int)(pct * 30 / 100);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%.24s [%s] %5.1f%% %s/%s %8.1f Mbit/s %s left\033[K", p->name, bar,
                pct, d, t, p->rate_bps / 1e6, left);
        if (final) fputc('\n', stderr);
    } else if (!final) {
        fprintf(stderr, "%s: %s: %.1f%%, %s of %s, %.1f Mbit/s, %s left\n", p->cmd, p->name, pct, d,
                t, p->rate_bps / 1e6, left);
    }
    fflush(stderr);
}

const char *xfer_base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---------------------------------------------------------------- tern send */

typedef struct send_state {
    tern_driver *d;
    tern_conn *conn;
    tern_driver_timer *timer;
    char where[64];
    const char *path, *name;
    char shown[4 * XFER_MAX_NAME + 16]; /* name, escaped for the terminal */
    int fd;
    uint64_t size, read_off;        /* file size; bytes read and hashed so far */
    uint64_t sent;                  /* payload bytes handed to tern_flow_send */
    uint64_t flow;
    int flow_open;
    int phase;                      /* 0 connecting, 1 sending, 2 waiting for the verdict, 3 done */
    uint8_t *buf;                   /* one message: type byte + chunk */
    size_t chunk, pending;          /* pending: bytes of buf waiting for tern_flow_send (0: none) */
    xfer_hash hash;
    uint8_t digest[XFER_HASH_LEN];
    uint64_t timeout_ms, idle_ms;
    uint64_t t_established, t_done, cpu0;
    xfer_progress prog;
    int quiet, verbose;
    int err;                        /* TERN_ERR_* the connection ended with, 0 */
    uint64_t close_code;
    char reason[300];
    int verdict;                    /* -1 none yet, else XFER_V_* */
    char verdict_text[600];
    int exit_code;                  /* set by a local failure (file), else 0 */
    /* peer mode (--via): the session, the peer, when INTRODUCE went out */
    peer_session *ps;
    char peer_hex[2 * TERN_PEER_ID_LEN + 1];
    uint8_t peer_id[TERN_PEER_ID_LEN];
    uint64_t t_intro;
    int connected;
} send_state;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tern send FILE --to ADDR:PORT --server-key HEX [options]\n"
            "       tern send FILE --to PEER_ID --via ADDR:PORT --server-key HEX  (to a peer;\n"
            "       see tern send --via x --help)\n"
            "Sends FILE to a `tern recv` listener; exits 0 only once the receiver has stored it\n"
            "and confirmed its SHA-256 hash.\n"
            "  --to ADDR:PORT      the receiver (tern recv prints its address and key)\n"
            "  --server-key HEX    the receiver's public key (64 hex characters)\n"
            "  --aead aes|chacha   cipher preference (default: AES-256-GCM where the CPU has AES)\n"
            "  --integrity-only    authenticate but do not encrypt (the receiver must allow it)\n"
            "  --chunk BYTES       message size (default 64K; 1K..16M)\n"
            "  --cc bbr|cubic|newreno  congestion controller (default: the core's, BBR)\n"
            "  --payload BYTES     UDP payload size before path MTU discovery (1200..1500)\n"
            "  --timeout MS        give up the handshake after this long (default 5000)\n"
            "  --idle-timeout MS   declare the receiver gone after this long unheard (default "
            "30000)\n"
            "  --quiet             no progress output\n"
            "  --verbose           print the driver's and the connection's counters at the end\n"
            "Progress: a bar with rate and time left when stderr is a terminal, a line every 2 s\n"
            "otherwise. Exit: 0 stored and verified, 1 other failure, 2 usage, 3 wrong server key,\n"
            "      4 no answer (nothing listening, unreachable), 5 connection lost (the receiver\n"
            "      went away, closed, reset or refused), 6 file error (cannot read FILE, or the\n"
            "      receiver cannot write it: disk full, exists, permissions), 7 the receiver's hash\n"
            "      or size did not match.\n");
}

static void send_fail_local(send_state *s, int code)
{
    s->exit_code = code;
    s->phase = 3;
    tern_driver_stop(s->d); /* tern_driver_shutdown() closes the connection */
}

/* Pushes as much of the file into the flow as its send buffer takes. */
static void pump(send_state *s)
{
    uint64_t now = tern_driver_now(s->d);
    while (s->phase == 1 && s->conn) {
        if (s->pending == 0) {
            if (s->read_off == s->size) {
                s->buf[0] = XFER_MSG_END;
                xfer_hash_final(&s->hash, s->digest);
                memcpy(s->buf + 1, s->digest, XFER_HASH_LEN);
                s->pending = 1 + XFER_HASH_LEN;
            } else {
                uint64_t want = s->size - s->read_off;
                if (want > s->chunk) want = s->chunk;
                ssize_t n;
                do n = pread(s->fd, s->buf + 1, (size_t)want, (off_t)s->read_off);
                while (n < 0 && errno == EINTR);
                if (n <= 0) {
                    fprintf(stderr, "tern send: cannot read %s at byte %llu: %s\n", s->path,
                            (unsigned long long)s->read_off,
                            n == 0 ? "the file shrank while being sent" : strerror(errno));
                    send_fail_local(s, XFER_EXIT_FILE);
                    return;
                }
                xfer_hash_update(&s->hash, s->buf + 1, (size_t)n);
                s->read_off += (uint64_t)n;
                s->buf[0] = XFER_MSG_DATA;
                s->pending = 1 + (size_t)n;
            }
        }
        int rc = tern_flow_send(s->conn, s->flow, now, s->buf, s->pending, -1);
        if (rc == TERN_ERR_AGAIN) return;
        if (rc != TERN_OK) {
            fprintf(stderr, "tern send: cannot queue data: %s\n", tern_strerror(rc));
            send_fail_local(s, XFER_EXIT_OTHER);
            return;
        }
        int was_end = s->buf[0] == XFER_MSG_END;
        s->sent += s->pending - 1;
        s->pending = 0;
        if (was_end) {
            tern_flow_close(s->conn, s->flow);
            s->phase = 2;
        }
    }
}

static void on_timer(tern_driver *d, tern_driver_timer *t, void *user)
{
    send_state *s = user;
    uint64_t now = tern_driver_now(d);
    pump(s);
    if (s->conn && s->phase >= 1 && s->phase <= 2) {
        uint64_t acked = s->sent - (s->sent ? tern_flow_queued(s->conn, s->flow) : 0);
        if (acked > s->size) acked = s->size; /* the end message's 33 bytes */
        xfer_progress_update(&s->prog, acked, now, 0);
    }
    if (s->phase <= 2) tern_driver_timer_set(t, now + TERN_NS_PER_MS);
}

static void on_established(tern_conn *c, void *user)
{
    send_state *s = user;
    uint64_t now = tern_driver_now(s->d);
    s->t_established = now;
    s->cpu0 = tools_cpu_ns();
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.reliability = TERN_FLOW_RELIABLE;
    fc.ordered = 1;
    int rc = tern_flow_open(c, &fc, &s->flow);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern send: cannot open a flow: %s\n", tern_strerror(rc));
        send_fail_local(s, XFER_EXIT_OTHER);
        return;
    }
    s->flow_open = 1;
    size_t nl = strlen(s->name);
    uint8_t hdr[1 + 1 + 8 + 2 + XFER_MAX_NAME];
    hdr[0] = XFER_MSG_HEADER;
    hdr[1] = XFER_VERSION;
    for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)(s->size >> (56 - 8 * i));
    hdr[10] = (uint8_t)(nl >> 8);
    hdr[11] = (uint8_t)nl;
    memcpy(hdr + 12, s->name, nl);
    rc = tern_flow_send(c, s->flow, now, hdr, 12 + nl, -1);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern send: cannot queue the header: %s\n", tern_strerror(rc));
        send_fail_local(s, XFER_EXIT_OTHER);
        return;
    }
    tern_conn_stats st;
    tern_conn_get_stats(c, &st);
    if (!s->quiet)
        fprintf(stderr, "tern send: connected to %s in %.2f ms, %s%s; sending %s (%llu bytes)\n",
                s->where, (double)st.handshake_ns / 1e6,
                st.aead == TERN_AEAD_AES256GCM ? "AES-256-GCM" : "ChaCha20-Poly1305",
                st.integrity_only ? " (integrity only: not encrypted)" : "", s->shown,
                (unsigned long long)s->size);
    xfer_progress_init(&s->prog, "tern send", s->shown, s->size, now, s->quiet);
    s->phase = 1;
    pump(s);
    tern_driver_timer_set(s->timer, now + TERN_NS_PER_MS);
}

static void on_message(tern_conn *c, uint64_t flow_id, const uint8_t *data, size_t len,
                       void *user)
{
    send_state *s = user;
    (void)flow_id;
    int status;
    const uint8_t *text;
    size_t tl;
    if (s->verdict >= 0 || xfer_parse_verdict(data, len, &status, &text, &tl) != 0) return;
    s->verdict = status;
    tools_text_escape(s->verdict_text, sizeof(s->verdict_text), text, tl); /* the peer's words */
    s->t_done = tern_driver_now(s->d);
    s->phase = 3;
    /* not tern_conn_close() here: closing from inside on_message frees the flow the core is
     * still delivering from (use after free in flow.c deliver()); tern_driver_shutdown() closes */
    (void)c;
    tern_driver_stop(s->d);
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *user)
{
    send_state *s = user;
    (void)c;
    if (err == TERN_ERR_LOCAL_CLOSED) return;
    s->err = err;
    s->close_code = code;
    tools_copy_reason(s->reason, sizeof(s->reason), reason ? reason : "", len);
    tern_driver_stop(s->d);
}

static void on_conn_free(tern_conn *c, void *user)
{
    send_state *s = user;
    if (s->conn == c) s->conn = NULL;
}

static int finish(send_state *s)
{
    if (s->exit_code != 0) return s->exit_code;
    if (s->verdict == XFER_V_OK) {
        xfer_progress_update(&s->prog, s->size, s->t_done, 1);
        double secs = (double)(s->t_done - s->t_established) / 1e9;
        if (secs <= 0) secs = 1e-9;
        double cpu = (double)(tools_cpu_ns() - s->cpu0) / 1e9;
        char hex[2 * XFER_HASH_LEN + 1];
        tern_hex_encode(s->digest, XFER_HASH_LEN, hex);
        printf("tern send: %s: %llu bytes in %.3f s, %.1f Mbit/s, cpu %.3f s (%.0f%%); stored "
               "and verified by the receiver, sha-256 %s",
               s->shown, (unsigned long long)s->size, secs, (double)s->size * 8 / secs / 1e6, cpu,
               100 * cpu / secs, hex);
        if (s->ps && s->conn) {
            char addr[64];
            uint64_t moves = 0;
            const char *kind = peer_path_kind(s->conn, addr, sizeof(addr), &moves);
            printf("; path %s %s, %llu path moves", kind, addr, (unsigned long long)moves);
        }
        printf("\n");
        fflush(stdout);
        return XFER_EXIT_OK;
    }
    if (s->verdict >= 0) {
        if (s->prog.tty && !s->quiet) fputc('\n', stderr);
        fprintf(stderr, "tern send: the receiver did not store %s: %s\n", s->shown,
                s->verdict_text[0] ? s->verdict_text : "no reason given");
        return s->verdict == XFER_V_FILE     ? XFER_EXIT_FILE
               : s->verdict == XFER_V_VERIFY ? XFER_EXIT_VERIFY
                                             : XFER_EXIT_OTHER;
    }
    if (s->prog.tty && !s->quiet && s->phase >= 1) fputc('\n', stderr);
    if (s->err != 0) {
        if (s->phase >= 1 && s->err != TERN_ERR_PEER_CLOSED) {
            uint64_t acked = s->sent - (s->conn && s->flow_open ? tern_flow_queued(s->conn, s->flow) : 0);
            fprintf(stderr, "tern send: transfer of %s failed after %llu of %llu bytes\n", s->shown,
                    (unsigned long long)(acked > s->size ? s->size : acked),
                    (unsigned long long)s->size);
        }
        return tools_explain_conn_error("tern send", s->where, s->err, s->close_code, s->reason,
                                        s->timeout_ms, s->idle_ms);
    }
    if (tools_interrupted()) {
        fprintf(stderr, "tern send: interrupted; %s was not stored\n", s->shown);
        return XFER_EXIT_OTHER;
    }
    fprintf(stderr, "tern send: the connection ended without a verdict from the receiver\n");
    return XFER_EXIT_OTHER;
}

/* Opens s->path, sizes the message buffer, starts the hash. Returns 0 or an exit code (printed;
 * nothing left open). */
static int send_prepare(send_state *s, uint64_t chunk)
{
    s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (s->fd < 0 || fstat(s->fd, &sb) != 0) {
        fprintf(stderr, "tern send: cannot read %s: %s\n", s->path, strerror(errno));
        if (s->fd >= 0) close(s->fd);
        s->fd = -1;
        return XFER_EXIT_FILE;
    }
    if (!S_ISREG(sb.st_mode)) {
        fprintf(stderr, "tern send: %s is not a regular file\n", s->path);
        close(s->fd);
        s->fd = -1;
        return XFER_EXIT_FILE;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    s->size = (uint64_t)sb.st_size;
    s->chunk = (size_t)chunk;
    s->buf = malloc(1 + s->chunk > 1 + XFER_HASH_LEN ? 1 + s->chunk : 1 + XFER_HASH_LEN);
    if (s->buf == NULL || sodium_init() < 0 || xfer_hash_init(&s->hash) != 0) {
        fprintf(stderr, "tern send: out of memory\n");
        xfer_hash_free(&s->hash);
        free(s->buf);
        s->buf = NULL;
        close(s->fd);
        s->fd = -1;
        return XFER_EXIT_OTHER;
    }
    return 0;
}

static int send_via(int argc, char **argv);

int cmd_send(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--via")) return send_via(argc, argv); /* peer mode */
    send_state s;
    memset(&s, 0, sizeof(s));
    s.fd = -1;
    s.verdict = -1;
    s.timeout_ms = 5000;
    s.idle_ms = 30000;
    const char *target = NULL, *key_hex = NULL;
    uint64_t chunk = 64 << 10;
    int aead = TERN_AEAD_AUTO, integrity = 0, cc = -1;
    uint64_t payload = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return XFER_EXIT_OK;
        } else if (!strcmp(a, "--to") && v) {
            target = v;
            i++;
        } else if (!strcmp(a, "--server-key") && v) {
            key_hex = v;
            i++;
        } else if (!strcmp(a, "--aead") && v) {
            if (!strcmp(v, "aes")) aead = TERN_AEAD_AES256GCM;
            else if (!strcmp(v, "chacha")) aead = TERN_AEAD_CHACHA20POLY1305;
            else bad = 1;
            i++;
        } else if (!strcmp(a, "--integrity-only")) {
            integrity = 1;
        } else if (!strcmp(a, "--cc") && v) {
            cc = !strcmp(v, "bbr")       ? TERN_CC_BBR
                 : !strcmp(v, "cubic")   ? TERN_CC_CUBIC
                 : !strcmp(v, "newreno") ? TERN_CC_NEWRENO
                                         : -1;
            bad = cc < 0;
            i++;
        } else if (!strcmp(a, "--payload") && v) {
            bad = tools_parse_u64(v, 1200, TERN_MAX_DATAGRAM, 0, &payload);
            i++;
        } else if (!strcmp(a, "--chunk") && v) {
            bad = tools_parse_u64(v, 1024, 16u << 20, 1, &chunk);
            i++;
        } else if (!strcmp(a, "--timeout") && v) {
            bad = tools_parse_u64(v, 1, 3600000, 0, &s.timeout_ms);
            i++;
        } else if (!strcmp(a, "--idle-timeout") && v) {
            bad = tools_parse_u64(v, 1, 3600000, 0, &s.idle_ms);
            i++;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            s.quiet = 1;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            s.verbose = 1;
        } else if (a[0] != '-' && s.path == NULL) {
            s.path = a;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "tern send: bad argument %s%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return XFER_EXIT_USAGE;
        }
    }
    uint8_t server_pub[TERN_KEY_LEN];
    if (s.path == NULL || target == NULL || key_hex == NULL) {
        usage(stderr);
        return XFER_EXIT_USAGE;
    }
    if (tern_hex_decode(key_hex, server_pub, TERN_KEY_LEN) != TERN_OK) {
        fprintf(stderr, "tern send: --server-key needs 64 hex characters\n");
        return XFER_EXIT_USAGE;
    }
    s.name = xfer_base_name(s.path);
    tools_text_escape(s.shown, sizeof(s.shown), (const uint8_t *)s.name, strlen(s.name));
    if (s.name[0] == '\0' || strlen(s.name) > XFER_MAX_NAME) {
        fprintf(stderr, "tern send: %s: the file name must have 1 to %d bytes\n", s.path,
                XFER_MAX_NAME);
        return XFER_EXIT_USAGE;
    }
    tern_addr remote;
    if (tools_resolve(target, 4433, &remote) != 0) return XFER_EXIT_USAGE;
    tern_addr_format(&remote, s.where, sizeof(s.where));

    int prc = send_prepare(&s, chunk);
    if (prc != 0) return prc;

    tern_driver_config dc;
    tern_driver_config_default(&dc);
    dc.endpoint.settings.handshake_timeout_ns = s.timeout_ms * TERN_NS_PER_MS;
    dc.endpoint.settings.idle_timeout_ns = s.idle_ms * TERN_NS_PER_MS;
    dc.endpoint.settings.aead = (uint8_t)aead;
    dc.endpoint.settings.integrity_only = (uint8_t)integrity;
    if (cc >= 0) dc.endpoint.settings.cc = (uint8_t)cc;
    if (payload) dc.endpoint.settings.max_udp_payload = (uint16_t)payload;
    dc.endpoint.callbacks.on_established = on_established;
    dc.endpoint.callbacks.on_message = on_message;
    dc.endpoint.callbacks.on_closed = on_closed;
    dc.endpoint.callbacks.on_conn_free = on_conn_free;
    dc.endpoint.user_data = &s;
    int exit_code = XFER_EXIT_OTHER;
    int rc = tern_driver_new(&dc, &s.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern send: cannot set up: %s (%s)\n", tern_strerror(rc), strerror(errno));
        goto out;
    }
    rc = tern_driver_timer_new(s.d, on_timer, &s, &s.timer);
    if (rc == TERN_OK) rc = tern_driver_connect(s.d, &remote, server_pub, &s.conn);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern send: cannot connect to %s: %s\n", s.where, tern_strerror(rc));
        goto out;
    }
    tools_catch_signals(s.d);

    rc = tern_driver_run(s.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern send: event loop failed: %s\n", strerror(errno));
        goto out;
    }
    exit_code = finish(&s);
    if (s.verbose) tools_print_counters("tern send", s.d, s.conn);
    /* close the connection: the receiver learns that we are done, or that we gave up */
    tern_driver_shutdown(s.d, exit_code == 0 ? 0 : XFER_V_PROTOCOL,
                         exit_code == 0 ? "done" : "sender gave up", 300 * TERN_NS_PER_MS);
out:
    tools_release_signals();
    tern_driver_timer_del(s.timer);
    tern_driver_del(s.d);
    xfer_hash_free(&s.hash);
    free(s.buf);
    close(s.fd);
    return exit_code;
}

/* ---------------------------------------------------------------- tern send --to PEER --via */

static void via_usage(FILE *f)
{
    fprintf(f,
            "usage: tern send FILE --to PEER_ID --via ADDR:PORT --server-key HEX [options]\n"
            "Registers with the rendezvous server, asks it to introduce PEER_ID (a `tern recv\n"
            "--via`), connects to it directly through the NATs (or through the relay) and sends\n"
            "FILE as tern send --to ADDR:PORT does; exits 0 once the receiver stored it and\n"
            "confirmed its SHA-256 hash. Prints \"connected to <id> path <direct|relayed>\n"
            "<addr> in <ms> ms\", \"path now <direct|relayed> <addr>\" on each move, and a final\n"
            "line with bytes, rate, path and the number of path moves.\n"
            "  --to PEER_ID        the receiver's peer ID (its `registered as` line)\n"
            "  --chunk BYTES       message size (default 64K; 1K..16M)\n"
            "  --quiet             no progress output\n");
    peer_usage_opts(f);
    fprintf(f, "Exit: as tern send; 1 also for an unknown peer.\n");
}

static void sv_established(tern_conn *c, void *user)
{
    send_state *s = user;
    if (c != s->conn) return;
    uint64_t now = tern_driver_now(s->d);
    char addr[64];
    const char *kind = peer_path_kind(c, addr, sizeof(addr), NULL);
    s->connected = 1;
    printf("connected to %s path %s %s in %.3f ms\n", s->peer_hex, kind, addr,
           (double)(now - s->t_intro) / 1e6);
    fflush(stdout);
    on_established(c, user);
}

static void sv_path(tern_conn *c, void *user)
{
    send_state *s = user;
    if (c != s->conn || !s->connected) return;
    char addr[64];
    const char *kind = peer_path_kind(c, addr, sizeof(addr), NULL);
    printf("path now %s %s\n", kind, addr);
    fflush(stdout);
}

static void sv_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *user)
{
    send_state *s = user;
    if (c == s->conn) on_closed(c, err, code, reason, len, user);
}

static void sv_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *user)
{
    send_state *s = user;
    if (c == s->conn) on_message(c, flow, d, len, user);
}

static void sv_registered(tern_rdv_client *rc, const tern_addr *pub, void *u)
{
    (void)pub;
    send_state *s = u;
    s->t_intro = tern_driver_now(s->d);
    int r = tern_rdv_client_introduce(rc, s->t_intro, s->peer_id);
    if (r != TERN_OK) {
        fprintf(stderr, "tern send: cannot ask for an introduction: %s\n", tern_strerror(r));
        send_fail_local(s, XFER_EXIT_OTHER);
    }
}

static void sv_intro_failed(tern_rdv_client *rc, const uint8_t *id, int code, void *u)
{
    (void)rc, (void)id;
    send_state *s = u;
    if (code == TERN_RDV_E_UNKNOWN_PEER)
        printf("error: unknown peer %s\n", s->peer_hex);
    else
        printf("error: introduction to %s failed: %s\n", s->peer_hex, tern_rdv_error_name(code));
    fflush(stdout);
    send_fail_local(s, XFER_EXIT_OTHER);
}

static void sv_peer_conn(tern_rdv_client *rc, const uint8_t *id, tern_conn *c, int err, void *u)
{
    (void)rc, (void)id;
    send_state *s = u;
    if (c == NULL) {
        printf("error: cannot connect to %s: %s\n", s->peer_hex, tern_strerror(err));
        fflush(stdout);
        send_fail_local(s, XFER_EXIT_OTHER);
        return;
    }
    s->conn = c;
}

static int send_via(int argc, char **argv)
{
    send_state s;
    memset(&s, 0, sizeof(s));
    s.fd = -1;
    s.verdict = -1;
    peer_opts o;
    peer_opts_default(&o);
    const char *to = NULL;
    uint64_t chunk = 64 << 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, r = peer_parse_opt(&o, argc, argv, &i);
        if (r == 1) continue;
        if (r < 0) {
            bad = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            via_usage(stdout);
            return XFER_EXIT_OK;
        } else if (!strcmp(a, "--to") && v) {
            to = v;
            i++;
        } else if (!strcmp(a, "--chunk") && v) {
            bad = tools_parse_u64(v, 1024, 16u << 20, 1, &chunk);
            i++;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            s.quiet = 1;
        } else if (a[0] != '-' && s.path == NULL) {
            s.path = a;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "tern send: bad argument %s%s%s\n", a, v ? " " : "", v ? v : "");
            via_usage(stderr);
            return XFER_EXIT_USAGE;
        }
    }
    if (s.path == NULL || to == NULL) {
        via_usage(stderr);
        return XFER_EXIT_USAGE;
    }
    if (peer_parse_id("tern send", to, s.peer_id) != 0) return XFER_EXIT_USAGE;
    tern_hex_encode(s.peer_id, TERN_PEER_ID_LEN, s.peer_hex);
    snprintf(s.where, sizeof(s.where), "peer %.16s", s.peer_hex);
    s.timeout_ms = o.timeout_ms;
    s.idle_ms = o.idle_ms;
    s.name = xfer_base_name(s.path);
    tools_text_escape(s.shown, sizeof(s.shown), (const uint8_t *)s.name, strlen(s.name));
    if (s.name[0] == '\0' || strlen(s.name) > XFER_MAX_NAME) {
        fprintf(stderr, "tern send: %s: the file name must have 1 to %d bytes\n", s.path,
                XFER_MAX_NAME);
        return XFER_EXIT_USAGE;
    }
    int exit_code = send_prepare(&s, chunk);
    if (exit_code != 0) return exit_code;

    peer_session *ps = calloc(1, sizeof(*ps));
    if (ps == NULL) {
        exit_code = XFER_EXIT_OTHER;
        goto out;
    }
    tern_callbacks app;
    memset(&app, 0, sizeof(app));
    app.on_established = sv_established;
    app.on_message = sv_message;
    app.on_closed = sv_closed;
    app.on_conn_free = on_conn_free;
    app.on_path = sv_path;
    tern_rdv_client_callbacks rcb;
    memset(&rcb, 0, sizeof(rcb));
    rcb.on_registered = sv_registered;
    rcb.on_intro_failed = sv_intro_failed;
    rcb.on_peer_conn = sv_peer_conn;
    exit_code = peer_session_start(ps, "tern send", &o, &app, &rcb, &s, 0);
    s.ps = ps;
    s.d = ps->d;
    if (exit_code != 0) goto out;
    exit_code = XFER_EXIT_OTHER;
    if (tern_driver_timer_new(s.d, on_timer, &s, &s.timer) != TERN_OK) goto out;
    tools_catch_signals(s.d);
    if (tern_driver_run(s.d) != TERN_OK) {
        fprintf(stderr, "tern send: event loop failed: %s\n", strerror(errno));
        goto out;
    }
    exit_code = ps->exit_code ? ps->exit_code : finish(&s);
out:
    tools_release_signals();
    tern_driver_timer_del(s.timer);
    if (ps)
        peer_session_end(ps, exit_code == 0 ? 0 : XFER_V_PROTOCOL,
                         exit_code == 0 ? "done" : "sender gave up",
                         ps->d ? 300 * TERN_NS_PER_MS : 0);
    free(ps);
    xfer_hash_free(&s.hash);
    free(s.buf);
    if (s.fd >= 0) close(s.fd);
    return exit_code;
}
