/*
 * tern send: one file to a `tern recv` listener over an encrypted tern connection.
 *
 * Design. The driver's ready loop runs the connection; everything happens in callbacks, and the
 * flow's own events drive the sending (no timer). Once the handshake completes the sender opens
 * one RELIABLE ordered flow and sends on it, in order: a header message ('H': version, file size,
 * base name), the file in data messages ('D' + up to --chunk bytes, 64 KiB by default: the core's
 * reassembly costs the receiver more than linearly in the message size) and an end message ('E' +
 * the SHA-256 of the whole file, OpenSSL's libcrypto, computed while reading), then closes the
 * flow. The file is read (and hashed, once) straight into chunk buffers that the core references
 * without copying them (tern_flow_send_ref) until the receiver acknowledged them; on_flow_release
 * puts each back on a free list, so no more chunks exist than the flow's send buffer holds, plus
 * one. Back-pressure is that send buffer: a chunk that tern_flow_send_ref refuses with
 * TERN_ERR_AGAIN stays pending until on_flow_writable says the queue drained to its low-water
 * mark. Progress is the bytes the receiver has acknowledged (on_flow_acked): a bar with rate and
 * time left when stderr is a terminal, a plain line every few seconds otherwise. Flows go one
 * way, so the receiver answers on a flow of its own with one verdict message ('V', a status
 * byte, a text); only a verdict of success gives exit 0. Every other ending (wrong key, nothing
 * listening, the receiver gone, its disk full, a hash mismatch) prints one clear line and exits
 * with the code in usage(). The transport (--transport: UDP raced with TCP by default, or UDP,
 * TCP or TLS alone; transport.c) and address the connection uses are printed once it is
 * established, and again at each move (on_path: back to UDP when UDP starts to answer). A verdict or a failure only stops the loop: the summary after it
 * still reads the connection (its path, --verbose counters), and tools_session_close() then
 * closes it with a code the receiver sees.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tern/driver.h"
#include "tools/peer.h"
#include "tools/peer_text.h"
#include "tools/tools.h"

/* ---------------------------------------------------------------- tern send */

/* A data message (type byte + file bytes) the core references until the receiver has it. */
typedef struct send_chunk {
    struct send_chunk *next; /* on the free list */
    uint8_t msg[];
} send_chunk;

typedef struct send_state {
    tools_conn link;                /* first: tools_on_closed, tools_on_conn_free */
    char where[64];
    const char *path, *name;
    char shown[4 * XFER_MAX_NAME + 16]; /* name, escaped for the terminal */
    int fd;
    uint64_t size, read_off;        /* file size; bytes read and hashed so far */
    uint64_t sent;                  /* file bytes handed to the flow */
    uint64_t acked;                 /* file bytes the receiver acknowledged (on_flow_acked) */
    uint64_t flow;
    size_t hdr_len;                 /* the header message's bytes */
    int phase;                      /* 0 connecting, 1 sending, 2 waiting for the verdict, 3 done */
    size_t chunk;                   /* file bytes per data message */
    send_chunk *free_chunks;        /* released by the core, ready for the next read */
    send_chunk *pending;            /* read and hashed, refused (TERN_ERR_AGAIN): sent next */
    size_t pending_len;
    xfer_hash hash;
    int hashed;                     /* digest holds the whole file's hash */
    uint8_t digest[XFER_HASH_LEN];
    uint64_t timeout_ms, idle_ms;
    uint64_t t_connect, t_established, t_done, cpu0; /* t_connect: tools_now_ns() */
    tern_driver_connect_cfg cc;     /* how the connection was opened (direct mode) */
    xfer_progress prog;
    int quiet, verbose;
    int verdict;                    /* -1 none yet, else XFER_V_* */
    char verdict_text[600];
    int exit_code;                  /* set by a local failure (file), else 0 */
    peer_session *ps;               /* peer mode (--via): the session, whose target we send to */
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
            "30000)\n");
    tools_transport_usage(f);
    fprintf(f,
            "  --quiet             no progress output\n"
            "  --verbose           print the driver's and the connection's counters at the end\n"
            "Progress: a bar with rate and time left when stderr is a terminal, a line every 2 s\n"
            "otherwise. \"tern send: transport tcp ADDR/tcp, connected N ms after the first\n"
            "attempt\" says how the connection goes, \"tern send: transport now ...\" each move.\n"
            "Exit: 0 stored and verified, 1 other failure, 2 usage, 3 wrong server key,\n"
            "      4 no answer (nothing listening, unreachable), 5 connection lost (the receiver\n"
            "      went away, closed, reset or refused), 6 file error (cannot read FILE, or the\n"
            "      receiver cannot write it: disk full, exists, permissions), 7 the receiver's hash\n"
            "      or size did not match.\n");
}

static void send_fail_local(send_state *s, int code)
{
    s->exit_code = code;
    s->phase = 3;
    tern_driver_stop(s->link.d); /* tools_session_close() closes the connection */
}

/* Reads and hashes the next chunk of the file into a free buffer (s->pending). Returns 0, or -1
 * after failing the transfer. */
static int read_chunk(send_state *s)
{
    send_chunk *k = s->free_chunks;
    if (k) s->free_chunks = k->next;
    else if ((k = malloc(sizeof(*k) + 1 + s->chunk)) == NULL) {
        fprintf(stderr, "tern send: out of memory\n");
        send_fail_local(s, XFER_EXIT_OTHER);
        return -1;
    }
    uint64_t want = s->size - s->read_off;
    if (want > s->chunk) want = s->chunk;
    ssize_t n;
    do n = pread(s->fd, k->msg + 1, (size_t)want, (off_t)s->read_off);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        fprintf(stderr, "tern send: cannot read %s at byte %llu: %s\n", s->path,
                (unsigned long long)s->read_off,
                n == 0 ? "the file shrank while being sent" : strerror(errno));
        k->next = s->free_chunks;
        s->free_chunks = k;
        send_fail_local(s, XFER_EXIT_FILE);
        return -1;
    }
    xfer_hash_update(&s->hash, k->msg + 1, (size_t)n);
    s->read_off += (uint64_t)n;
    k->msg[0] = XFER_MSG_DATA;
    s->pending = k;
    s->pending_len = 1 + (size_t)n;
    return 0;
}

/* Pushes as much of the file into the flow as its send buffer takes; on_flow_writable calls it
 * again when a refused chunk would be taken. */
static void pump(send_state *s)
{
    uint64_t now = tern_driver_now(s->link.d);
    while (s->phase == 1 && s->link.conn) {
        int rc;
        if (s->pending == NULL && s->read_off == s->size) {
            uint8_t end[1 + XFER_HASH_LEN];
            if (!s->hashed) xfer_hash_final(&s->hash, s->digest);
            s->hashed = 1;
            end[0] = XFER_MSG_END;
            memcpy(end + 1, s->digest, XFER_HASH_LEN);
            rc = tern_flow_send(s->link.conn, s->flow, now, end, sizeof(end), -1);
            if (rc == TERN_OK) {
                tern_flow_close(s->link.conn, s->flow);
                s->phase = 2;
                return;
            }
        } else {
            if (s->pending == NULL && read_chunk(s) != 0) return;
            rc = tern_flow_send_ref(s->link.conn, s->flow, now, s->pending->msg, s->pending_len,
                                    -1, s->pending);
            if (rc == TERN_OK) {
                s->sent += s->pending_len - 1;
                s->pending = NULL; /* the core's until on_flow_release */
                continue;
            }
        }
        if (rc == TERN_ERR_AGAIN) return;
        fprintf(stderr, "tern send: cannot queue data: %s\n", tern_strerror(rc));
        send_fail_local(s, XFER_EXIT_OTHER);
        return;
    }
}

static void on_flow_writable(tern_conn *c, uint64_t flow, void *user)
{
    send_state *s = user;
    if (c == s->link.conn && flow == s->flow) pump(s);
}

static void on_flow_acked(tern_conn *c, uint64_t flow, const tern_flow_progress *p, void *user)
{
    send_state *s = user;
    if (c != s->link.conn || flow != s->flow || s->phase < 1) return;
    /* file bytes: less the header and the type byte of each message acknowledged whole (the
     * end message's hash is cut off by the cap) */
    uint64_t over = s->hdr_len + (p->acked_messages ? p->acked_messages - 1 : 0);
    s->acked = p->acked_bytes > over ? p->acked_bytes - over : 0;
    if (s->acked > s->size) s->acked = s->size;
    xfer_progress_update(&s->prog, s->acked, tern_driver_now(s->link.d), 0);
}

static void on_flow_release(tern_conn *c, uint64_t flow, void *token, int delivered, void *user)
{
    send_state *s = user;
    send_chunk *k = token;
    (void)c, (void)flow, (void)delivered;
    k->next = s->free_chunks;
    s->free_chunks = k;
}

static void on_established(tern_conn *c, void *user)
{
    send_state *s = user;
    uint64_t now = tern_driver_now(s->link.d);
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
    size_t nl = strlen(s->name);
    uint8_t hdr[1 + 1 + 8 + 2 + XFER_MAX_NAME];
    hdr[0] = XFER_MSG_HEADER;
    hdr[1] = XFER_VERSION;
    for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)(s->size >> (56 - 8 * i));
    hdr[10] = (uint8_t)(nl >> 8);
    hdr[11] = (uint8_t)nl;
    memcpy(hdr + 12, s->name, nl);
    s->hdr_len = 12 + nl;
    rc = tern_flow_send(c, s->flow, now, hdr, s->hdr_len, -1);
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
    if (s->ps == NULL) tools_transport_connected(stderr, "tern send", c, s->t_connect, &s->cc);
    xfer_progress_init(&s->prog, "tern send", s->shown, s->size, now, s->quiet);
    s->phase = 1;
    pump(s);
}

/* The connection moved (direct mode; peer.c reports the moves of a peer connection). */
static void on_path(tern_conn *c, void *user)
{
    send_state *s = user;
    if (c == s->link.conn && s->phase >= 1) tools_transport_changed(stderr, "tern send", c);
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
    s->t_done = tern_driver_now(s->link.d);
    s->phase = 3;
    (void)c;
    tern_driver_stop(s->link.d); /* finish() reads the connection, tools_session_close() ends it */
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
        printf("tern send: %s: %llu bytes in %.3f s, %.1f Mbit/s, cpu %.3f s (%.0f%%); ",
               s->shown, (unsigned long long)s->size, secs, (double)s->size * 8 / secs / 1e6, cpu,
               100 * cpu / secs);
        if (s->ps == NULL && s->link.conn) { /* direct mode: the transport it ended on */
            char what[96];
            tools_transport_describe(s->link.conn, what, sizeof(what));
            printf("transport %s; ", what);
        }
        printf("stored and verified by the receiver, sha-256 %s", hex);
        if (s->ps && s->link.conn) {
            char addr[64];
            uint64_t moves = 0;
            const char *kind = peer_path_kind(s->link.conn, addr, sizeof(addr), &moves);
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
    if (s->link.closed.err != 0) {
        if (s->phase >= 1 && s->link.closed.err != TERN_ERR_PEER_CLOSED) {
            fprintf(stderr, "tern send: transfer of %s failed after %llu of %llu bytes\n", s->shown,
                    (unsigned long long)s->acked, (unsigned long long)s->size);
        }
        return tools_explain_conn_error("tern send", s->where, &s->link.closed, s->timeout_ms,
                                        s->idle_ms);
    }
    if (tools_interrupted()) {
        fprintf(stderr, "tern send: interrupted; %s was not stored\n", s->shown);
        return XFER_EXIT_OTHER;
    }
    fprintf(stderr, "tern send: the connection ended without a verdict from the receiver\n");
    return XFER_EXIT_OTHER;
}

/* Frees what send_prepare and the transfer made, once the driver is gone (its endpoint released
 * every chunk the core still referenced to the free list). */
static void send_cleanup(send_state *s)
{
    while (s->free_chunks) {
        send_chunk *k = s->free_chunks;
        s->free_chunks = k->next;
        free(k);
    }
    free(s->pending);
    s->pending = NULL;
    xfer_hash_free(&s->hash);
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
}

/* The name the receiver gets: s->path's base name (and s->shown, escaped for the terminal).
 * Returns 0, or -1 after printing why it cannot be sent. */
static int send_name(send_state *s)
{
    s->name = xfer_base_name(s->path);
    tools_text_escape(s->shown, sizeof(s->shown), (const uint8_t *)s->name, strlen(s->name));
    if (s->name[0] != '\0' && strlen(s->name) <= XFER_MAX_NAME) return 0;
    fprintf(stderr, "tern send: %s: the file name must have 1 to %d bytes\n", s->path,
            XFER_MAX_NAME);
    return -1;
}

/* Opens s->path, notes the chunk size, starts the hash. Returns 0 or an exit code (printed;
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
    if (sodium_init() < 0 || xfer_hash_init(&s->hash) != 0) {
        fprintf(stderr, "tern send: out of memory\n");
        send_cleanup(s);
        return XFER_EXIT_OTHER;
    }
    return 0;
}

static void via_usage(FILE *f);
static int send_via(send_state *s, int argc, char **argv);

/* Parses tern send's arguments: the direct mode's options (co) or, with po, peer mode's
 * (--via; --to is then a peer ID). Returns -1 to go on, else the exit code (after --help, or a
 * bad argument). */
static int send_args(send_state *s, int argc, char **argv, tools_client_opts *co, peer_opts *po,
                     uint64_t *chunk)
{
    void (*help)(FILE *f) = po ? via_usage : usage;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        int r = po ? peer_parse_opt(po, argc, argv, &i) : tools_client_opt(co, argc, argv, &i);
        if (r == 1) continue;
        if (r < 0) {
            bad = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return XFER_EXIT_OK;
        } else if (po && !strcmp(a, "--to") && v) {
            co->to = v;
            i++;
        } else if (!strcmp(a, "--chunk") && v) {
            bad = tools_parse_u64(v, 1024, 16u << 20, 1, chunk);
            i++;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            s->quiet = 1;
        } else if (a[0] != '-' && s->path == NULL) {
            s->path = a;
        } else {
            bad = 1;
        }
        if (bad) return tools_bad_argument("tern send", a, v, help);
    }
    return -1;
}

int cmd_send(int argc, char **argv)
{
    send_state s;
    memset(&s, 0, sizeof(s));
    s.fd = -1;
    s.verdict = -1;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--via")) return send_via(&s, argc, argv); /* peer mode */
    tools_client_opts o;
    tools_client_opts_default(&o);
    uint64_t chunk = 64 << 10;
    int prc = send_args(&s, argc, argv, &o, NULL, &chunk);
    if (prc >= 0) return prc;
    uint8_t server_pub[TERN_KEY_LEN];
    if (s.path == NULL || o.to == NULL || o.server_key == NULL) {
        usage(stderr);
        return XFER_EXIT_USAGE;
    }
    if (tools_server_key("tern send", o.server_key, server_pub) != 0) return XFER_EXIT_USAGE;
    if (send_name(&s) != 0) return XFER_EXIT_USAGE;
    tern_addr remote;
    tern_driver_connect_cfg *cc = &s.cc;
    if (tools_resolve(o.to, 4433, &remote) != 0 ||
        tools_transport_connect_cfg("tern send", &o.transport, &remote, server_pub, cc) != 0)
        return XFER_EXIT_USAGE;
    tern_addr_format(cc->remote.family ? &cc->remote : &cc->stream_remote, s.where,
                     sizeof(s.where));
    s.timeout_ms = o.timeout_ms;
    s.idle_ms = o.idle_ms;
    s.verbose = o.verbose;

    prc = send_prepare(&s, chunk);
    if (prc != 0) return prc;

    tern_driver_config dc;
    tern_driver_config_default(&dc);
    tools_client_settings(&o, &dc.endpoint.settings);
    dc.endpoint.callbacks.on_established = on_established;
    dc.endpoint.callbacks.on_message = on_message;
    dc.endpoint.callbacks.on_closed = tools_on_closed;
    dc.endpoint.callbacks.on_conn_free = tools_on_conn_free;
    dc.endpoint.callbacks.on_flow_writable = on_flow_writable;
    dc.endpoint.callbacks.on_flow_acked = on_flow_acked;
    dc.endpoint.callbacks.on_flow_release = on_flow_release;
    dc.endpoint.callbacks.on_path = on_path;
    dc.endpoint.user_data = &s;
    tools_transport_watch(&dc, cc, &s.link);
    int exit_code = XFER_EXIT_OTHER;
    uint64_t grace = 0; /* no goodbye when the loop never ran */
    int rc = tern_driver_new(&dc, &s.link.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern send: cannot set up: %s (%s)\n", tern_strerror(rc), strerror(errno));
        goto out;
    }
    s.t_connect = tools_now_ns();
    rc = tern_driver_connect_opts(s.link.d, cc, &s.link.conn);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern send: cannot connect to %s: %s\n", s.where, tern_strerror(rc));
        goto out;
    }
    tools_catch_signals(s.link.d);

    rc = tern_driver_run(s.link.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern send: event loop failed: %s\n", strerror(errno));
        goto out;
    }
    exit_code = finish(&s);
    if (s.verbose) tools_print_counters("tern send", s.link.d, s.link.conn);
    grace = 300 * TERN_NS_PER_MS; /* the receiver learns that we are done, or that we gave up */
out:
    tools_session_close(s.link.d, NULL, exit_code == 0 ? 0 : XFER_V_PROTOCOL,
                        exit_code == 0 ? "done" : "sender gave up", grace);
    send_cleanup(&s);
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

static int send_via(send_state *s, int argc, char **argv)
{
    peer_opts o;
    peer_opts_default(&o);
    tools_client_opts to; /* --to only */
    tools_client_opts_default(&to);
    uint64_t chunk = 64 << 10;
    int exit_code = send_args(s, argc, argv, &to, &o, &chunk);
    if (exit_code >= 0) return exit_code;
    if (s->path == NULL || to.to == NULL) {
        via_usage(stderr);
        return XFER_EXIT_USAGE;
    }
    uint8_t peer_id[TERN_PEER_ID_LEN];
    char peer_hex[2 * TERN_PEER_ID_LEN + 1];
    if (peer_parse_id("tern send", to.to, peer_id) != 0) return XFER_EXIT_USAGE;
    tern_hex_encode(peer_id, TERN_PEER_ID_LEN, peer_hex);
    snprintf(s->where, sizeof(s->where), "peer %.16s", peer_hex);
    s->timeout_ms = o.timeout_ms;
    s->idle_ms = o.idle_ms;
    if (send_name(s) != 0) return XFER_EXIT_USAGE;
    exit_code = send_prepare(s, chunk);
    if (exit_code != 0) return exit_code;

    peer_session *ps = calloc(1, sizeof(*ps));
    if (ps == NULL) {
        exit_code = XFER_EXIT_OTHER;
        goto out;
    }
    tern_callbacks app;
    memset(&app, 0, sizeof(app));
    app.on_established = on_established;
    app.on_message = on_message;
    app.on_closed = tools_on_closed;
    app.on_conn_free = tools_on_conn_free;
    app.on_flow_writable = on_flow_writable;
    app.on_flow_acked = on_flow_acked;
    app.on_flow_release = on_flow_release;
    exit_code = peer_session_start(ps, "tern send", &o, &app, NULL, s, 0);
    s->ps = ps;
    if (exit_code != 0) goto out;
    peer_session_target(ps, peer_id, &s->link);
    exit_code = XFER_EXIT_OTHER;
    tools_catch_signals(s->link.d);
    if (tern_driver_run(s->link.d) != TERN_OK) {
        fprintf(stderr, "tern send: event loop failed: %s\n", strerror(errno));
        goto out;
    }
    exit_code = ps->exit_code ? ps->exit_code : finish(s);
out:
    if (ps)
        peer_session_end(ps, exit_code == 0 ? 0 : XFER_V_PROTOCOL,
                         exit_code == 0 ? "done" : "sender gave up",
                         ps->d ? 300 * TERN_NS_PER_MS : 0);
    free(ps);
    send_cleanup(s);
    return exit_code;
}
