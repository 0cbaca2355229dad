/*
 * tern recv: listens for one `tern send`, stores the file, verifies it, answers with a verdict.
 *
 * Design. A server driver (ready loop) bound to --listen with the key from --key (or a fresh one,
 * printed at start like ternd does) accepts one connection at a time; others are refused while a
 * transfer runs. The sender's one reliable ordered flow brings a header (size, base name), the
 * data and an end message with the SHA-256 of the whole file (see tern send). The header
 * names the file; only a plain base name is accepted (no '/', not "." or ".."), and it is stored
 * in --dir (or at --out) through a temporary file (".NAME.tern-XXXXXX" beside it), after a check
 * that the file system has room for it (fstatvfs, so a disk too small is reported before any data
 * moves; not posix_fallocate, which on tmpfs zeroes every page up front: 0.3 s of CPU per GB,
 * during which nothing is read from the socket), and that is renamed into place only when the
 * byte count and the hash match. Every write error
 * (disk full, I/O error) ends the transfer: the temporary file is removed and the sender is told.
 * Flows are one-way, so the verdict goes back on a flow this side opens: 'V', a status, a text.
 * Then the receiver waits (a few seconds at most) for the sender to close, so that the verdict
 * is delivered, and exits: 0 stored and verified, other codes as in usage(). A sender that
 * disappears mid-transfer is noticed by the idle timeout. Besides UDP it accepts tern over TCP
 * and TLS where asked (--tcp-listen, --tls-listen; transport.c), and says which transport and
 * address each sender's connection uses, and each move it makes.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "tern/driver.h"
#include "tools/peer.h"
#include "tools/peer_text.h"
#include "tools/tools.h"

typedef struct recv_state {
    tools_conn link; /* first (tools_on_closed, tools_on_conn_free): the transfer's connection
                      * (one at a time) */
    tern_driver_timer *timer;
    char where[64];
    const char *dir, *out;
    int force, quiet;
    int fd;
    char tmp_path[4096], final_path[4096];
    char name[4 * XFER_MAX_NAME + 16]; /* the sender's name, escaped for printing */
    uint64_t size, received;
    int phase;                      /* 0 waiting, 1 header seen, 2 verdict sent, 3 done */
    int status;                     /* XFER_V_* once decided */
    char text[400];
    xfer_hash hash;
    uint64_t idle_ms;
    uint64_t t_first, t_end, cpu0;
    xfer_progress prog;
    /* peer mode (--via): transfers one after the other from introduced peers */
    peer_session *ps;
    uint64_t count, done, stored; /* files wanted (0: until interrupted), finished, stored */
    int last_fail;                /* exit code of the last transfer that failed */
    tern_conn *last_conn;         /* the last transfer's, once count is reached */
} recv_state;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tern recv --listen ADDR:PORT [options]\n"
            "       tern recv --via ADDR:PORT --server-key HEX [options]  (from peers; see\n"
            "       tern recv --via x --help)\n"
            "Receives one file from `tern send`, checks its size and SHA-256 hash, stores it,\n"
            "tells the sender, and exits. Prints its address and public key at start.\n"
            "  --listen ADDR:PORT      where to listen (UDP; port 0: any free port)\n");
    tools_listen_usage(f);
    fprintf(f,
            "  --key FILE              private key file (tern keygen); default: a fresh key\n"
            "  --dir DIR               store the file under its own name in DIR (default .)\n"
            "  --out PATH              store it at PATH instead\n"
            "  --force                 replace an existing file\n"
            "  --allow-integrity-only  accept senders that ask for authentication without\n"
            "                          encryption (--integrity-only)\n"
            "  --idle-timeout MS       declare the sender gone after this long unheard (30000)\n"
            "  --quiet                 no progress output\n"
            "Prints \"receiving NAME (N bytes) from ADDR over udp|tcp|tls\" for the sender,\n"
            "\"tern recv: transport now ...\" when its connection moves.\n"
            "Exit: 0 stored and verified, 1 other failure, 2 usage, 5 connection lost (the\n"
            "      sender went away or gave up), 6 file error (cannot write: disk full, exists,\n"
            "      permissions), 7 the hash or size did not match (nothing stored).\n");
}

static void drop_tmp(recv_state *r)
{
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    if (r->tmp_path[0]) unlink(r->tmp_path);
    r->tmp_path[0] = '\0';
}

static void on_grace(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)t, (void)user;
    tern_driver_stop(d); /* the sender never closed after the verdict */
}

/* Sends a verdict to the sender on c, on a flow of its own. */
static int send_verdict(recv_state *r, tern_conn *c, int status, const char *text)
{
    uint64_t now = tern_driver_now(r->link.d), fid;
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    uint8_t msg[2 + sizeof(r->text)];
    size_t tl = strlen(text);
    if (tl > sizeof(r->text) - 1) tl = sizeof(r->text) - 1;
    msg[0] = XFER_MSG_VERDICT;
    msg[1] = (uint8_t)status;
    memcpy(msg + 2, text, tl);
    int rc = tern_flow_open(c, &fc, &fid);
    if (rc == TERN_OK) rc = tern_flow_send(c, fid, now, msg, 2 + tl, 7);
    if (rc == TERN_OK) tern_flow_close(c, fid);
    return rc;
}

static void via_transfer_done(recv_state *r);

/* Decides the transfer's outcome and tells the sender. */
static void verdict(recv_state *r, int status, const char *text)
{
    if (r->phase >= 2) return;
    r->phase = 2;
    r->status = status;
    snprintf(r->text, sizeof(r->text), "%s", text);
    if (status != XFER_V_OK) drop_tmp(r);
    if (r->link.conn == NULL) return;
    int rc = send_verdict(r, r->link.conn, status, r->text);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern recv: cannot send the verdict: %s\n", tern_strerror(rc));
        tern_driver_stop(r->link.d); /* shutdown closes; not from inside on_message */
        return;
    }
    if (r->ps) {
        via_transfer_done(r);
        return;
    }
    tern_driver_timer_set(r->timer, tern_driver_now(r->link.d) + 3 * TERN_NS_PER_S);
}

static void on_header(recv_state *r, const uint8_t *p, size_t len)
{
    char msg[sizeof(r->text)];
    uint64_t size;
    const uint8_t *name;
    size_t nl;
    const char *why;
    if (xfer_parse_header(p, len, &size, &name, &nl, &why) != 0) {
        verdict(r, XFER_V_PROTOCOL, why);
        return;
    }
    /* the name is printed escaped (a peer's text on our terminal), and stored only when it is
     * a plain, printable UTF-8 base name */
    tools_text_escape(r->name, sizeof(r->name), name, nl);
    why = tools_name_problem(name, nl);
    if (r->out == NULL && why != NULL) {
        snprintf(msg, sizeof(msg), "refusing the file name \"%.200s\": %s", r->name, why);
        verdict(r, XFER_V_FILE, msg);
        return;
    }
    r->size = size;
    if (r->out) snprintf(r->final_path, sizeof(r->final_path), "%s", r->out);
    else snprintf(r->final_path, sizeof(r->final_path), "%s/%s", r->dir, r->name);
    const char *base = xfer_base_name(r->final_path);
    size_t dirlen = (size_t)(base - r->final_path);
    snprintf(r->tmp_path, sizeof(r->tmp_path), "%.*s.%s.tern-XXXXXX", (int)dirlen, r->final_path,
             base);
    if (!r->force && access(r->final_path, F_OK) == 0) {
        r->tmp_path[0] = '\0';
        snprintf(msg, sizeof(msg), "%.200s exists on the receiver (tern recv --force replaces it)",
                 r->final_path);
        verdict(r, XFER_V_FILE, msg);
        return;
    }
    r->fd = mkostemp(r->tmp_path, O_CLOEXEC);
    if (r->fd < 0) {
        snprintf(msg, sizeof(msg), "cannot create %.200s: %s", r->tmp_path, strerror(errno));
        r->tmp_path[0] = '\0';
        verdict(r, XFER_V_FILE, msg);
        return;
    }
    fchmod(r->fd, 0644);
    struct statvfs vfs;
    if (size > 0 && fstatvfs(r->fd, &vfs) == 0 && vfs.f_frsize > 0 &&
        (uint64_t)vfs.f_bavail < (size + vfs.f_frsize - 1) / vfs.f_frsize) {
        snprintf(msg, sizeof(msg), "cannot store %llu bytes in %.200s: %s (%llu bytes free)",
                 (unsigned long long)size, r->final_path, strerror(ENOSPC),
                 (unsigned long long)vfs.f_bavail * vfs.f_frsize);
        verdict(r, XFER_V_FILE, msg);
        return;
    }
    if (xfer_hash_init(&r->hash) != 0) {
        verdict(r, XFER_V_FILE, "out of memory");
        return;
    }
    r->phase = 1;
    r->t_first = tern_driver_now(r->link.d);
    r->cpu0 = tools_cpu_ns();
    xfer_progress_init(&r->prog, "tern recv", r->name, size, r->t_first, r->quiet);
    if (!r->quiet) {
        char from[64];
        const tern_addr *ra = tern_conn_remote(r->link.conn);
        tern_addr_format(ra, from, sizeof(from));
        fprintf(stderr, "tern recv: receiving %s (%llu bytes) from %s over %s into %s\n", r->name,
                (unsigned long long)size, from, tools_transport_name(ra), r->final_path);
    }
}

static void on_data(recv_state *r, const uint8_t *p, size_t len)
{
    char msg[sizeof(r->text)];
    if (r->received + len > r->size) {
        verdict(r, XFER_V_PROTOCOL, "the sender sent more bytes than it announced");
        return;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = pwrite(r->fd, p + off, len - off, (off_t)(r->received + off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            snprintf(msg, sizeof(msg), "cannot write %.200s at byte %llu: %s", r->final_path,
                     (unsigned long long)(r->received + off),
                     n == 0 ? "no progress" : strerror(errno));
            fprintf(stderr, "%stern recv: %s\n", r->prog.tty && !r->quiet ? "\n" : "", msg);
            verdict(r, XFER_V_FILE, msg);
            return;
        }
        off += (size_t)n;
    }
    xfer_hash_update(&r->hash, p, len);
    r->received += len;
    xfer_progress_update(&r->prog, r->received, tern_driver_now(r->link.d), 0);
}

static void on_end(recv_state *r, const uint8_t *p, size_t len)
{
    char msg[sizeof(r->text)];
    uint8_t digest[XFER_HASH_LEN];
    r->t_end = tern_driver_now(r->link.d);
    if (len != XFER_HASH_LEN) {
        verdict(r, XFER_V_PROTOCOL, "malformed end message");
        return;
    }
    if (r->received != r->size) {
        snprintf(msg, sizeof(msg), "received %llu bytes of %llu", (unsigned long long)r->received,
                 (unsigned long long)r->size);
        verdict(r, XFER_V_VERIFY, msg);
        return;
    }
    xfer_hash_final(&r->hash, digest);
    if (sodium_memcmp(digest, p, XFER_HASH_LEN) != 0) {
        verdict(r, XFER_V_VERIFY, "SHA-256 of the received file does not match the sender's");
        return;
    }
    if (ftruncate(r->fd, (off_t)r->size) != 0 || close(r->fd) != 0) {
        r->fd = -1;
        snprintf(msg, sizeof(msg), "cannot finish %.200s: %s", r->final_path, strerror(errno));
        verdict(r, XFER_V_FILE, msg);
        return;
    }
    r->fd = -1;
    if (rename(r->tmp_path, r->final_path) != 0) {
        snprintf(msg, sizeof(msg), "cannot rename into %.200s: %s", r->final_path, strerror(errno));
        verdict(r, XFER_V_FILE, msg);
        return;
    }
    r->tmp_path[0] = '\0';
    char hex[2 * XFER_HASH_LEN + 1];
    tern_hex_encode(digest, XFER_HASH_LEN, hex);
    snprintf(msg, sizeof(msg), "stored as %.200s, sha-256 %s", r->final_path, hex);
    verdict(r, XFER_V_OK, msg);
}

static void on_message(tern_conn *c, uint64_t flow_id, const uint8_t *data, size_t len,
                       void *user)
{
    recv_state *r = user;
    (void)flow_id;
    if (len == 0) return;
    if (r->ps && c != r->link.conn && data[0] == XFER_MSG_HEADER) {
        /* peer mode: the first sender's header starts the next transfer; others wait */
        if (r->link.conn != NULL || r->phase != 0 || r->last_conn != NULL) {
            (void)send_verdict(r, c, XFER_V_PROTOCOL, "the receiver is busy with another transfer");
            return;
        }
        r->link.conn = c;
    }
    if (c != r->link.conn || r->phase >= 2) return;
    if (r->phase == 0) {
        if (data[0] == XFER_MSG_HEADER) on_header(r, data, len);
        else verdict(r, XFER_V_PROTOCOL, "expected a transfer header");
    } else if (data[0] == XFER_MSG_DATA) {
        on_data(r, data + 1, len - 1);
    } else if (data[0] == XFER_MSG_END) {
        on_end(r, data + 1, len - 1);
    } else {
        verdict(r, XFER_V_PROTOCOL, "unexpected message");
    }
}

/* The sender's connection moved (a direct sender, or a peer's: relayed, direct, its transport). */
static void on_path(tern_conn *c, void *user)
{
    recv_state *r = user;
    if (c == r->link.conn && r->phase >= 1) tools_transport_changed(stderr, "tern recv", c);
}

static int on_accept(tern_conn *c, void *user)
{
    recv_state *r = user;
    if (r->link.conn != NULL) return -1; /* one transfer at a time */
    r->link.conn = c;
    return 0;
}

static int finish(recv_state *r)
{
    if (r->phase >= 2) {
        if (r->status == XFER_V_OK) {
            xfer_progress_update(&r->prog, r->received, r->t_end, 1);
            double secs = (double)(r->t_end - r->t_first) / 1e9;
            if (secs <= 0) secs = 1e-9;
            double cpu = (double)(tools_cpu_ns() - r->cpu0) / 1e9;
            printf("tern recv: %s: %llu bytes in %.3f s, %.1f Mbit/s, cpu %.3f s (%.0f%%); %s\n",
                   r->name, (unsigned long long)r->size, secs, (double)r->size * 8 / secs / 1e6,
                   cpu, 100 * cpu / secs, r->text);
            fflush(stdout);
            return XFER_EXIT_OK;
        }
        fprintf(stderr, "tern recv: %s not stored: %s\n", r->name[0] ? r->name : "file", r->text);
        return r->status == XFER_V_FILE     ? XFER_EXIT_FILE
               : r->status == XFER_V_VERIFY ? XFER_EXIT_VERIFY
                                            : XFER_EXIT_OTHER;
    }
    if (r->prog.tty && !r->quiet && r->phase == 1) fputc('\n', stderr);
    if (r->link.closed.err != 0) {
        if (r->phase == 1)
            fprintf(stderr, "tern recv: transfer of %s broke off after %llu of %llu bytes; "
                            "nothing stored\n",
                    r->name, (unsigned long long)r->received, (unsigned long long)r->size);
        char from[64] = "the sender";
        return tools_explain_conn_error("tern recv", from, &r->link.closed, 0, r->idle_ms);
    }
    fprintf(stderr, "tern recv: interrupted%s\n", r->phase == 1 ? "; nothing stored" : "");
    return XFER_EXIT_OTHER;
}

static int recv_via(int argc, char **argv);

int cmd_recv(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--via")) return recv_via(argc, argv); /* peer mode */
    recv_state r;
    memset(&r, 0, sizeof(r));
    r.fd = -1;
    r.dir = ".";
    r.idle_ms = 30000;
    const char *listen = NULL, *keyfile = NULL;
    int integrity = 0;
    tools_listen_opts lo;
    memset(&lo, 0, sizeof(lo));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, l = tools_listen_opt(&lo, argc, argv, &i);
        if (l == 1) continue;
        if (l < 0) {
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
        } else if (!strcmp(a, "--dir") && v) {
            r.dir = v;
            i++;
        } else if (!strcmp(a, "--out") && v) {
            r.out = v;
            i++;
        } else if (!strcmp(a, "--force")) {
            r.force = 1;
        } else if (!strcmp(a, "--allow-integrity-only")) {
            integrity = 1;
        } else if (!strcmp(a, "--idle-timeout") && v) {
            bad = tools_parse_u64(v, 1, 3600000, 0, &r.idle_ms);
            i++;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            r.quiet = 1;
        } else {
            bad = 1;
        }
        if (bad) return tools_bad_argument("tern recv", a, v, usage);
    }
    if (listen == NULL) {
        usage(stderr);
        return XFER_EXIT_USAGE;
    }
    struct stat sb;
    if (r.out == NULL && (stat(r.dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        fprintf(stderr, "tern recv: %s is not a directory\n", r.dir);
        return XFER_EXIT_FILE;
    }
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    if (tools_resolve(listen, 4433, &dc.listen[0]) != 0) return XFER_EXIT_USAGE;
    dc.n_listen = 1;
    if (tools_listen_apply("tern recv", &lo, &dc) != 0) return XFER_EXIT_USAGE;
    dc.endpoint.is_server = 1;
    dc.endpoint.has_static_key = 1;
    int rc = keyfile ? tern_keyfile_read(keyfile, &dc.endpoint.static_key)
                     : tern_keypair_generate(&dc.endpoint.static_key);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern recv: cannot read the key %s: %s\n", keyfile ? keyfile : "",
                rc == TERN_ERR_MALFORMED ? "not a tern key file" : strerror(errno));
        return XFER_EXIT_USAGE;
    }
    dc.endpoint.settings.idle_timeout_ns = r.idle_ms * TERN_NS_PER_MS;
    dc.endpoint.settings.integrity_only = (uint8_t)integrity;
    dc.endpoint.callbacks.on_accept = on_accept;
    dc.endpoint.callbacks.on_message = on_message;
    dc.endpoint.callbacks.on_path = on_path;
    dc.endpoint.callbacks.on_closed = tools_on_closed;
    dc.endpoint.callbacks.on_conn_free = tools_on_conn_free;
    dc.endpoint.user_data = &r;
    char hex[2 * TERN_KEY_LEN + 1];
    tern_hex_encode(dc.endpoint.static_key.pub, TERN_KEY_LEN, hex);
    rc = tern_driver_new(&dc, &r.link.d);
    tern_keypair_wipe(&dc.endpoint.static_key);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern recv: cannot listen on %s: %s\n", listen, strerror(errno));
        return XFER_EXIT_OTHER;
    }
    int exit_code = XFER_EXIT_OTHER;
    uint64_t grace = 0; /* no goodbye when the loop failed */
    if (tern_driver_timer_new(r.link.d, on_grace, &r, &r.timer) != TERN_OK) goto out;
    tern_addr la;
    tern_driver_local_addr(r.link.d, 0, &la);
    tern_addr_format(&la, r.where, sizeof(r.where));
    printf("tern recv: listening on udp %s\ntern recv: public key %s\n", r.where, hex);
    tools_listen_print("tern recv", r.link.d, &lo);

    tools_catch_signals(r.link.d);
    rc = tern_driver_run(r.link.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern recv: event loop failed: %s\n", strerror(errno));
        drop_tmp(&r);
        goto out;
    }
    drop_tmp(&r); /* whatever did not complete */
    exit_code = finish(&r);
    grace = 300 * TERN_NS_PER_MS;
out:
    tools_session_close(r.link.d, r.timer, tools_interrupted() ? XFER_V_PROTOCOL : 0,
                        tools_interrupted() ? "receiver interrupted" : "done", grace);
    drop_tmp(&r);
    xfer_hash_free(&r.hash);
    return exit_code;
}

/* ---------------------------------------------------------------- tern recv --via */

static void via_usage(FILE *f)
{
    fprintf(f,
            "usage: tern recv --via ADDR:PORT --server-key HEX [options]\n"
            "Registers with the rendezvous server (prints \"registered as <peer-id> public\n"
            "<addr>\"), accepts the peers it introduces (tern send --to <peer-id> --via, tern\n"
            "ping <peer-id> --via) and receives files one after the other as tern recv --listen\n"
            "does, printing \"received <name> <bytes> bytes hash ok path <direct|relayed>\" for\n"
            "each stored file. Pings are answered.\n"
            "  --count N               exit after N transfers (default 0: until interrupted)\n"
            "  -o, --out DIR|PATH      store into DIR (a directory) or at PATH (default .)\n"
            "  --force                 replace an existing file\n"
            "  --quiet                 no progress output\n");
    peer_usage_opts(f);
    fprintf(f, "Exit: 0 every transfer stored and verified, else the last failure's code as tern\n"
               "      recv --listen; 2 usage; 3, 4, 5 for the rendezvous server as tern send.\n");
}

/* Peer mode: the verdict went out; report, count, and get ready for the next transfer. */
static void via_transfer_done(recv_state *r)
{
    r->done++;
    if (r->status == XFER_V_OK) {
        char addr[64];
        const char *kind = peer_path_kind(r->link.conn, addr, sizeof(addr), NULL);
        xfer_progress_update(&r->prog, r->received, tern_driver_now(r->link.d), 1);
        printf("received %s %llu bytes hash ok path %s\n", r->name, (unsigned long long)r->size,
               kind);
        fflush(stdout);
        r->stored++;
    } else {
        fprintf(stderr, "tern recv: %s not stored: %s\n", r->name[0] ? r->name : "file", r->text);
        r->last_fail = r->status == XFER_V_FILE     ? XFER_EXIT_FILE
                       : r->status == XFER_V_VERIFY ? XFER_EXIT_VERIFY
                                                    : XFER_EXIT_OTHER;
    }
    if (r->count != 0 && r->done >= r->count) {
        /* the last one: wait (3 s at most) for the sender to close after its verdict */
        r->last_conn = r->link.conn;
        tern_driver_timer_set(r->timer, tern_driver_now(r->link.d) + 3 * TERN_NS_PER_S);
    }
    r->link.conn = NULL;
    r->phase = 0;
    r->size = r->received = 0;
    r->name[0] = '\0';
    r->tmp_path[0] = '\0';
}

static void rv_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *user)
{
    recv_state *r = user;
    (void)code, (void)reason, (void)len;
    if (c == r->last_conn) {
        tern_driver_stop(r->link.d);
        return;
    }
    if (c != r->link.conn) return;
    if (r->phase == 1) {
        if (r->prog.tty && !r->quiet) fputc('\n', stderr);
        fprintf(stderr, "tern recv: transfer of %s broke off after %llu of %llu bytes (%s); "
                        "nothing stored\n",
                r->name, (unsigned long long)r->received, (unsigned long long)r->size,
                tern_strerror(err));
        drop_tmp(r);
        r->last_fail = XFER_EXIT_LOST;
        r->done++;
        if (r->count != 0 && r->done >= r->count) tern_driver_stop(r->link.d);
    }
    r->link.conn = NULL;
    r->phase = 0;
    r->size = r->received = 0;
    r->name[0] = '\0';
}

static void rv_free(tern_conn *c, void *user)
{
    recv_state *r = user;
    if (c == r->link.conn) r->link.conn = NULL;
    if (c == r->last_conn) r->last_conn = NULL;
}

static int recv_via(int argc, char **argv)
{
    recv_state r;
    memset(&r, 0, sizeof(r));
    r.fd = -1;
    r.dir = ".";
    peer_opts o;
    peer_opts_default(&o);
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, pr = peer_parse_opt(&o, argc, argv, &i);
        if (pr == 1) continue;
        if (pr < 0) {
            bad = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            via_usage(stdout);
            return XFER_EXIT_OK;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--dir")) && v) {
            out = v;
            i++;
        } else if (!strcmp(a, "--count") && v) {
            bad = tools_parse_u64(v, 0, 1000000000, 0, &r.count);
            i++;
        } else if (!strcmp(a, "--force")) {
            r.force = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            r.quiet = 1;
        } else {
            bad = 1;
        }
        if (bad) return tools_bad_argument("tern recv", a, v, via_usage);
    }
    struct stat sb;
    if (out != NULL && stat(out, &sb) == 0 && S_ISDIR(sb.st_mode)) r.dir = out;
    else if (out != NULL) r.out = out;
    if (r.out && r.count == 0) r.count = 1; /* a file name is good for one transfer */
    if (r.out == NULL && (stat(r.dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        fprintf(stderr, "tern recv: %s is not a directory\n", r.dir);
        return XFER_EXIT_FILE;
    }
    r.idle_ms = o.idle_ms;
    peer_session *ps = calloc(1, sizeof(*ps));
    if (ps == NULL) return XFER_EXIT_OTHER;
    tern_callbacks app;
    memset(&app, 0, sizeof(app));
    app.on_message = on_message;
    app.on_path = on_path;
    app.on_closed = rv_closed;
    app.on_conn_free = rv_free;
    int exit_code = peer_session_start(ps, "tern recv", &o, &app, NULL, &r, 0);
    r.ps = ps;
    r.link.d = ps->d;
    if (exit_code != 0) goto out;
    exit_code = XFER_EXIT_OTHER;
    if (tern_driver_timer_new(r.link.d, on_grace, &r, &r.timer) != TERN_OK) goto out;
    tools_catch_signals(r.link.d);
    if (tern_driver_run(r.link.d) != TERN_OK) {
        fprintf(stderr, "tern recv: event loop failed: %s\n", strerror(errno));
        goto out;
    }
    if (r.phase == 1) {
        if (r.prog.tty && !r.quiet) fputc('\n', stderr);
        fprintf(stderr, "tern recv: interrupted during %s; nothing stored\n", r.name);
    }
    if (ps->exit_code) exit_code = ps->exit_code;
    else exit_code = r.last_fail ? r.last_fail : XFER_EXIT_OK;
out:
    drop_tmp(&r);
    tern_driver_timer_del(r.timer);
    peer_session_end(ps, tools_interrupted() ? XFER_V_PROTOCOL : 0,
                     tools_interrupted() ? "receiver interrupted" : "done",
                     ps->d ? 300 * TERN_NS_PER_MS : 0);
    free(ps);
    xfer_hash_free(&r.hash);
    return exit_code;
}
