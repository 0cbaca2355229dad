/*
 * The driver's stream transports: tern packets framed on TCP, and on TLS 1.3 over TCP
 * (docs/protocol.md, "Stream transport"), for networks that block UDP. The core stays sans-I/O
 * and sees a stream only as an address whose transport is TCP or TLS: a datagram it emits to
 * such an address is one frame here, and every frame read off a stream goes to
 * tern_endpoint_recv (or the rx_hook, sock TERN_DRIVER_STREAM_SOCK) with the stream's local and
 * remote addresses, transport included.
 *
 * Streams live in a map keyed by the remote address (transport included). Two kinds:
 *   - outgoing: opened when the core first sends to a stream address (non-blocking connect,
 *     then the TLS client handshake for TLS: SNI from tern_driver_connect_opts, no certificate
 *     check because the tern handshake inside authenticates the server by its pinned key). Our
 *     preamble and the frames the core sends meanwhile wait in the write buffer (bounded). When
 *     the stream fails or closes, the core hears tern_endpoint_stream_closed, and the entry stays
 *     in the map, down, for a backoff (250 ms doubling to 8 s, reset once a stream showed the
 *     server's preamble): frames the core sends meanwhile are dropped (counted), so the core's
 *     retries reopen the stream at a bounded rate, never in a storm. A down entry nobody sends to
 *     goes 16 s after its backoff. A server that is not tern (a wrong preamble, or TLS refused)
 *     or a refused connect is a definite answer: the one-line reason is kept
 *     (tern_driver_stream_error) and the application told (on_stream_error), which may have
 *     every connection still in its handshake towards that address closed with it, so a wrong
 *     service on the port fails at once instead of at the handshake timeout.
 *   - accepted: from the listeners (cfg->stream_listen), under tern_driver_stream_limits: at
 *     most max_streams at once, max_per_ip from one IPv4 address or IPv6 /64 and accept_rate a
 *     second from one (the rest are closed at accept), the TLS handshake and the client's preamble within preamble_timeout
 *     (slowloris), closed after idle_timeout without traffic, or when their write buffer made no
 *     progress that long. A client whose first bytes are not the tern preamble is closed at once,
 *     without a byte from us; our preamble goes out only after the client's.
 * Writes go through a per-stream buffer of at most write_buffer bytes: frames queued during a
 * flush are written at its end (one send or SSL_write per stream; at once when 64 KiB wait), the
 * rest waits for EPOLLOUT. The core treats a stream as reliable and caps what it has in flight on
 * one (stream_window, 1 MiB) below the buffer (1.25 MiB), so the buffer fills only towards a
 * peer that stops reading: then a packet of the core's that does not fit closes the stream (the
 * core sends what was in flight again on the next one; the limit is write_buffer for each live
 * connection whose path is the stream, since two client connections to one server share it).
 * A relay's frames (tern_driver_send_raw) are dropped, counted, once raw_cap is queued: half of
 * what write_buffer leaves above stream_window, at most a quarter of write_buffer (128 KiB at
 * the defaults), so a busy relay never takes the room the stream's own connections need.
 * All write buffers together stay under buffer_total (256 MiB; max_streams x write_buffer would
 * be 12.5 GiB): a relay's frame that would pass it is dropped, a core packet closes its stream
 * (counted: stream_over_budget; the bytes held are stream_buffer_bytes).
 * Epoll tags carry a stream's address in their low 61 bits: stream_alloc refuses (with an
 * error line) an allocation whose top 3 bits are not clear.
 * Reads share one 64 KiB buffer; at most 256 KiB per stream per wakeup (level-triggered epoll
 * comes back for the rest; TLS records already decrypted are drained).
 * A stream that closes during an iteration is unlinked at once and freed after the iteration's
 * events (drv_streams_reap), since a later event of the same batch may still name it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "base/rate.h"
#include "driver/driver_int.h"

#define TAG_MASK (3ull << 61)
#define TAG_LISTEN (1ull << 61)
#define TAG_STREAM (2ull << 61) /* | the stream's address (user space: below 2^61) */

#define ACCEPT_PER_WAKEUP 64
#define RBUF_LEN 65536
#define READ_PER_WAKEUP (4 * RBUF_LEN)
#define FLUSH_AT 65536
#define WBUF_MIN 4096    /* a write buffer's first size, kept while the stream lives */
#define WBUF_KEEP 65536  /* a larger one is given back once it drains */
#define RETRY_MIN_NS (250 * TERN_NS_PER_MS)
#define RETRY_MAX_NS (8 * TERN_NS_PER_S)
#define DOWN_LINGER_NS (16 * TERN_NS_PER_S)
#define LISTEN_PAUSE_NS (100 * TERN_NS_PER_MS)
#define KEY_LEN 20 /* family, transport, port (2), IP (16) */
#define IPKEY_LEN 9
#define SNI_MAX 253
#define ACCEPT_SOURCES 4096 /* sources whose accept rate is tracked at once */
#define STREAM_USER_TIMEOUT_MS 20000 /* unacknowledged data fails a stream after this long */
#define STREAM_CIDS 8 /* connections a stream's core budget counts (write_buffer each) */

enum { ST_CONNECTING, ST_TLS, ST_OPEN, ST_DOWN };

typedef struct drv_stream drv_stream;
struct drv_stream {
    tern_driver_timer tm; /* preamble deadline, then idle checks; a down entry's expiry */
    tern_addr remote;     /* the peer, transport included (canonical: the map's key) */
    tern_addr local;      /* this end as the core knows it */
    int fd;
    SSL *ssl;
    uint8_t state, accepted, tls, want_out, dirty, dead, rd_wants_write;
    uint8_t pre_seen;     /* the peer's preamble is in (and, accepted, ours is queued) */
    uint8_t ipkey[IPKEY_LEN];
    unsigned fails;       /* outgoing: failures since a stream last showed the preamble */
    uint64_t opened, last_rx, last_tx, wprog, retry_at;
    uint8_t *wbuf;        /* framed bytes waiting: [whead, whead + wlen) of wcap */
    size_t whead, wlen, wcap;
    /* the connections whose packets this stream carried: the destination CIDs of the core's
     * short-header packets on it, at most STREAM_CIDS (core_conns) */
    uint8_t cids[STREAM_CIDS][TERN_CID_LEN];
    uint8_t n_cids;
    drv_stream *next_dirty, *next_dead;
    drv_fdec dec;
};

struct drv_streams {
    tern__map by_addr;  /* canonical remote (KEY_LEN) -> drv_stream */
    tern__map per_ip;   /* IPKEY_LEN -> accepted streams from it (a count as a pointer) */
    tern__map sni;      /* canonical remote -> TLS server name (malloc'd) */
    tern__srclim accepts; /* accept_rate per source (ACCEPT_SOURCES at once, base/rate.h) */
    size_t n_listen;
    int lfd[TERN_DRIVER_MAX_SOCKETS];
    tern_addr laddr[TERN_DRIVER_MAX_SOCKETS];
    tern_driver_timer resume; /* listeners paused after EMFILE and the like */
    int paused;
    SSL_CTX *srv_ctx, *cli_ctx;
    tern_driver_stream_limits lim;
    size_t raw_cap;     /* what a tern_driver_send_raw frame may find queued (see the top) */
    size_t n_accepted, n_outgoing;
    drv_stream *dirty, *dead;
    uint8_t *rbuf;
    char error[256];
    int (*on_error)(tern_driver *d, const tern_addr *remote, const char *line, void *user);
    void *on_error_user;
};

/* ---------------------------------------------------------------- helpers */

static void make_key(uint8_t k[KEY_LEN], const tern_addr *a)
{
    memset(k, 0, KEY_LEN);
    k[0] = a->family;
    k[1] = a->transport;
    k[2] = (uint8_t)(a->port >> 8);
    k[3] = (uint8_t)a->port;
    memcpy(k + 4, a->ip, a->family == TERN_AF_INET ? 4 : 16);
}

static tern_addr canonical(const tern_addr *a)
{
    tern_addr c;
    memset(&c, 0, sizeof(c));
    c.family = a->family;
    c.transport = a->transport;
    c.port = a->port;
    memcpy(c.ip, a->ip, a->family == TERN_AF_INET ? 4 : 16);
    return c;
}

/* IPv4: the address; IPv6: its /64. */
static void make_ipkey(uint8_t k[IPKEY_LEN], const tern_addr *a)
{
    memset(k, 0, IPKEY_LEN);
    k[0] = a->family;
    memcpy(k + 1, a->ip, a->family == TERN_AF_INET ? 4 : 8);
}

/* Keeps the last stream failure as one line: "ADDRESS: what happened". */
__attribute__((format(printf, 3, 4))) static void set_error(tern_driver *d, const tern_addr *a,
                                                            const char *fmt, ...)
{
    char ab[64];
    char *e = d->streams->error;
    size_t cap = sizeof(d->streams->error);
    int n = snprintf(e, cap, "%s: ", tern_addr_format(a, ab, sizeof(ab)));
    if (n < 0 || (size_t)n >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(e + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
}

static void want_out(tern_driver *d, drv_stream *s, int on)
{
    if (s->fd < 0 || s->want_out == on) return;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.u64 = TAG_STREAM | (uint64_t)(uintptr_t)s;
    if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0) s->want_out = (uint8_t)on;
}

static void arm(tern_driver *d, drv_stream *s, uint64_t at)
{
    if (drv_heap_set(&d->timers, &s->tm, at) != TERN_OK) d->work_left = 1; /* next iteration */
}

/* Gives the write buffer of s back (its bytes leave the driver-wide budget). */
static void wbuf_release(tern_driver *d, drv_stream *s)
{
    if (s->wbuf) tern__free(&d->alloc, s->wbuf, s->wcap);
    d->st.stream_buffer_bytes -= s->wcap;
    s->wbuf = NULL;
    s->wcap = 0;
}

/* The size the write buffer of s needs for n more bytes (s->wcap when they fit). */
static size_t wbuf_need(const tern_driver *d, const drv_stream *s, size_t n)
{
    if (s->wlen + n <= s->wcap) return s->wcap;
    size_t cap = s->wcap ? s->wcap : WBUF_MIN;
    size_t most = (size_t)d->streams->lim.write_buffer + DRV_FRAME_MAX + DRV_PREAMBLE_LEN;
    while (cap < s->wlen + n) cap *= 2;
    if (cap > most && s->wlen + n <= most) cap = most; /* never past what the limit lets in */
    return cap;
}

/* Would n more bytes on s take the write buffers of all streams past stream_buffer_total? */
static int over_budget(const tern_driver *d, const drv_stream *s, size_t n)
{
    size_t cap = wbuf_need(d, s, n);
    return cap > s->wcap &&
           d->st.stream_buffer_bytes + (cap - s->wcap) > d->streams->lim.buffer_total;
}

/* Appends n bytes to the write buffer (the caller checked write_buffer). TERN_ERR_LIMIT: its
 * growth would pass the driver-wide buffer_total (counted by the caller). */
static int wbuf_put(tern_driver *d, drv_stream *s, const uint8_t *p, size_t n)
{
    if (s->whead + s->wlen + n > s->wcap && s->whead > 0) {
        memmove(s->wbuf, s->wbuf + s->whead, s->wlen);
        s->whead = 0;
    }
    if (s->wlen + n > s->wcap) {
        if (over_budget(d, s, n)) return TERN_ERR_LIMIT;
        size_t cap = wbuf_need(d, s, n);
        uint8_t *nb = tern__malloc(&d->alloc, cap);
        if (nb == NULL) return TERN_ERR_NOMEM;
        if (s->wlen) memcpy(nb, s->wbuf + s->whead, s->wlen);
        wbuf_release(d, s);
        s->wbuf = nb;
        s->wcap = cap;
        s->whead = 0;
        d->st.stream_buffer_bytes += cap;
        if (d->st.stream_buffer_bytes > d->st.stream_buffer_peak)
            d->st.stream_buffer_peak = d->st.stream_buffer_bytes;
    }
    if (s->wlen == 0) s->wprog = d->now; /* a stall is measured from here */
    memcpy(s->wbuf + s->whead + s->wlen, p, n);
    s->wlen += n;
    return TERN_OK;
}

static void mark_dirty(tern_driver *d, drv_stream *s)
{
    if (s->dirty) return;
    s->dirty = 1;
    s->next_dirty = d->streams->dirty;
    d->streams->dirty = s;
}

/* ---------------------------------------------------------------- closing */

/* Closes the socket of s; why is the counter to bump (NULL: none). Outgoing streams stay in
 * the map, down, for their backoff; accepted ones leave it and are freed by the reap. The core
 * hears about it unless the driver is going away. */
static void stream_close(tern_driver *d, drv_stream *s, uint64_t *why)
{
    drv_streams *ss = d->streams;
    if (s->fd < 0) return;
    if (why) (*why)++;
    if (s->ssl) {
        if (s->state == ST_OPEN) (void)SSL_shutdown(s->ssl); /* close_notify, if it fits */
        SSL_free(s->ssl);
        s->ssl = NULL;
        ERR_clear_error();
    }
    (void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
    s->want_out = 0;
    wbuf_release(d, s);
    s->wlen = s->whead = 0;
    if (s->dirty) { /* off the dirty list: the flush must not write to it */
        for (drv_stream **pp = &ss->dirty; *pp; pp = &(*pp)->next_dirty)
            if (*pp == s) {
                *pp = s->next_dirty;
                break;
            }
        s->dirty = 0;
    }
    d->st.streams_open--;
    if (s->accepted) {
        uint8_t k[KEY_LEN];
        make_key(k, &s->remote);
        tern__map_del(&ss->by_addr, k, s);
        void **ref = tern__map_ref(&ss->per_ip, s->ipkey);
        if (ref != NULL) {
            uintptr_t n = (uintptr_t)*ref;
            if (n <= 1) tern__map_del(&ss->per_ip, s->ipkey, *ref);
            else *ref = (void *)(n - 1);
        }
        ss->n_accepted--;
        drv_heap_remove(&d->timers, &s->tm);
        s->dead = 1;
        s->next_dead = ss->dead;
        ss->dead = s;
    } else {
        s->state = ST_DOWN;
        s->fails++;
        unsigned sh = s->fails - 1 < 6 ? s->fails - 1 : 6;
        uint64_t back = RETRY_MIN_NS << sh;
        if (back > RETRY_MAX_NS) back = RETRY_MAX_NS;
        s->retry_at = d->now + back;
        arm(d, s, s->retry_at + DOWN_LINGER_NS);
    }
    if (d->ep != NULL) tern_endpoint_stream_closed(d->ep, d->now, &s->local, &s->remote);
}

/* A definite "not tern there" (the reason is in ss->error): the application hears it
 * (on_stream_error), and when it asks, every connection still in its handshake towards
 * s->remote is closed with it (the core would otherwise retry until its timeout). The
 * application decides because a close it did not make (TERN_ERR_LOCAL_CLOSED) could surprise
 * it. */
static void refuse_conns(tern_driver *d, drv_stream *s)
{
    drv_streams *ss = d->streams;
    if (ss->on_error == NULL || !ss->on_error(d, &s->remote, ss->error, ss->on_error_user))
        return;
    size_t n;
    tern_conn **list = drv_conns_copy(&d->conns, &n);
    const char *msg = d->streams->error;
    for (size_t i = 0; i < n; i++) {
        const tern_addr *r = tern_conn_remote(list[i]);
        if (r != NULL && tern_addr_equal(r, &s->remote) &&
            tern_conn_get_state(list[i]) == TERN_CONN_HANDSHAKE && !tern_conn_is_server(list[i]))
            (void)tern_conn_close(list[i], d->now, 0, msg, strlen(msg));
    }
    free(list);
}

static void free_stream(tern_driver *d, drv_stream *s)
{
    drv_heap_remove(&d->timers, &s->tm);
    tern__free(&d->alloc, s, sizeof(*s));
}

/* ---------------------------------------------------------------- writing */

static void stream_write(tern_driver *d, drv_stream *s)
{
    while (s->wlen > 0 && s->state == ST_OPEN) {
        size_t n;
        if (s->ssl) {
            ERR_clear_error();
            int len = s->wlen > (1u << 30) ? 1 << 30 : (int)s->wlen;
            int r = SSL_write(s->ssl, s->wbuf + s->whead, len);
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) want_out(d, s, 1);
                else if (e != SSL_ERROR_WANT_READ) {
                    char eb[128];
                    if (!s->accepted) set_error(d, &s->remote, "TLS stream: write failed: %s",
                                                drv_tls_errstr(eb, sizeof(eb)));
                    stream_close(d, s, &d->st.stream_closed_error);
                }
                return;
            }
            n = (size_t)r;
        } else {
            ssize_t r = send(s->fd, s->wbuf + s->whead, s->wlen, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (r < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) want_out(d, s, 1);
                else {
                    if (!s->accepted)
                        set_error(d, &s->remote, "stream write failed: %s", strerror(errno));
                    stream_close(d, s, &d->st.stream_closed_error);
                }
                return;
            }
            n = (size_t)r;
        }
        s->whead += n;
        s->wlen -= n;
        d->st.stream_bytes_out += n;
        s->last_tx = s->wprog = d->now;
    }
    if (s->wlen == 0) {
        s->whead = 0;
        want_out(d, s, 0);
        if (s->wcap > WBUF_KEEP) /* a burst's buffer does not stay with an idle stream */
            wbuf_release(d, s);
    }
}

/* ---------------------------------------------------------------- reading */

/* The reason a peer's stream broke our framing, with what it sent instead (printable). */
static void framing_error(tern_driver *d, drv_stream *s, int err, const uint8_t *rest, size_t n)
{
    char seen[40];
    size_t k = 0;
    for (size_t i = 0; i < s->dec.pre_got && k < 24; i++, k++)
        seen[k] = s->dec.pre[i] >= 0x20 && s->dec.pre[i] < 0x7f ? (char)s->dec.pre[i] : '.';
    for (size_t i = 0; err == DRV_FDEC_BAD_PREAMBLE && i < n && k < 24; i++, k++)
        seen[k] = rest[i] >= 0x20 && rest[i] < 0x7f ? (char)rest[i] : '.';
    seen[k] = '\0';
    if (err == DRV_FDEC_BAD_PREAMBLE)
        set_error(d, &s->remote,
                  "not a tern stream service: it sent \"%s\" instead of the tern preamble",
                  seen);
    else
        set_error(d, &s->remote, "the stream broke the tern framing (a frame of length 0 or "
                                 "over the maximum)");
}

/* The peer's preamble is in: the timer turns to idle checks, our preamble follows (accepted
 * streams), the backoff is forgotten (outgoing ones). */
static void preamble_seen(tern_driver *d, drv_stream *s)
{
    if (s->pre_seen) return;
    s->pre_seen = 1;
    arm(d, s, d->now + d->streams->lim.idle_timeout_ns); /* from now on: the idle checks */
    if (s->accepted) {
        if (wbuf_put(d, s, drv_preamble_server, DRV_PREAMBLE_LEN) != TERN_OK) {
            stream_close(d, s, &d->st.stream_closed_error);
            return;
        }
        mark_dirty(d, s);
    } else {
        s->fails = 0;
    }
}

/* An outgoing stream the server closed. Before its preamble that is the server's answer (a tern
 * server closes a stream it will not serve: another transport, or its limits): a definite one. */
static void closed_by_server(tern_driver *d, drv_stream *s)
{
    if (s->accepted) return;
    if (s->dec.want == NULL) {
        set_error(d, &s->remote, "stream closed by the server");
        return;
    }
    set_error(d, &s->remote, "closed before the tern preamble: not a tern %s service, or it "
                             "refused the stream (its limits)",
              s->tls ? "TLS" : "TCP");
    refuse_conns(d, s);
}

static int on_frame(void *user, uint8_t *p, size_t len)
{
    drv_stream *s = user;
    tern_driver *d = s->tm.d;
    preamble_seen(d, s); /* before anything the frame makes us send (an rx_hook's reply) */
    if (s->fd < 0) return 1;
    d->st.stream_frames_in++;
    if (d->rx_hook && d->rx_hook(d, TERN_DRIVER_STREAM_SOCK, &s->remote, p, len, d->rx_hook_user))
        d->st.rx_hooked++;
    else
        (void)tern_endpoint_recv(d->ep, d->now, &s->local, &s->remote, p, len);
    return s->fd < 0; /* closed meanwhile (a write failed): stop */
}

static void stream_read(tern_driver *d, drv_stream *s)
{
    drv_streams *ss = d->streams;
    size_t budget = READ_PER_WAKEUP;
    while (s->fd >= 0 && s->state == ST_OPEN &&
           (budget > 0 || (s->ssl && SSL_pending(s->ssl) > 0))) {
        ssize_t n;
        if (s->ssl) {
            ERR_clear_error();
            int r = SSL_read(s->ssl, ss->rbuf, RBUF_LEN);
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e == SSL_ERROR_WANT_READ) return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    s->rd_wants_write = 1;
                    want_out(d, s, 1);
                    return;
                }
                if (e == SSL_ERROR_ZERO_RETURN) {
                    closed_by_server(d, s);
                    stream_close(d, s, &d->st.stream_closed_peer);
                } else {
                    char eb[128];
                    drv_tls_errstr(eb, sizeof(eb));
                    if (s->dec.want != NULL) closed_by_server(d, s); /* an unclean TLS end */
                    else if (!s->accepted)
                        set_error(d, &s->remote, "TLS stream: read failed: %s", eb);
                    stream_close(d, s, &d->st.stream_closed_peer);
                }
                return;
            }
            n = r;
        } else {
            n = recv(s->fd, ss->rbuf, RBUF_LEN, MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return;
                if (s->dec.want != NULL) closed_by_server(d, s); /* reset before its preamble */
                else if (!s->accepted) set_error(d, &s->remote, "stream: %s", strerror(errno));
                stream_close(d, s, &d->st.stream_closed_peer);
                return;
            }
            if (n == 0) {
                closed_by_server(d, s);
                stream_close(d, s, &d->st.stream_closed_peer);
                return;
            }
        }
        budget = (size_t)n < budget ? budget - (size_t)n : 0;
        d->st.stream_bytes_in += (uint64_t)n;
        s->last_rx = d->now;
        size_t used = 0;
        int rc = drv_fdec_feed(&s->dec, ss->rbuf, (size_t)n, on_frame, s, &used);
        if (s->fd < 0) return;
        if (s->dec.want == NULL) preamble_seen(d, s); /* a preamble with no frame after it */
        if (rc < 0) {
            framing_error(d, s, rc, ss->rbuf + used, (size_t)n - used);
            if (!s->accepted) refuse_conns(d, s);
            stream_close(d, s, rc == DRV_FDEC_BAD_PREAMBLE ? &d->st.stream_bad_preamble
                                                           : &d->st.stream_bad_length);
            return;
        }
        tern_driver_flush(d); /* replies leave while a busy stream is read */
    }
}

/* ---------------------------------------------------------------- opening */

static void tls_step(tern_driver *d, drv_stream *s);

/* TCP is up (outgoing: connected; accepted: at once). */
static void tcp_up(tern_driver *d, drv_stream *s)
{
    if (!s->tls) {
        s->state = ST_OPEN;
        stream_write(d, s);
        return;
    }
    drv_streams *ss = d->streams;
    s->ssl = SSL_new(s->accepted ? ss->srv_ctx : ss->cli_ctx);
    if (s->ssl == NULL || drv_tls_attach(s->ssl, s->fd) != 0) {
        d->st.tls_failures++;
        stream_close(d, s, &d->st.stream_closed_error);
        return;
    }
    if (s->accepted) {
        SSL_set_accept_state(s->ssl);
    } else {
        SSL_set_connect_state(s->ssl);
        uint8_t k[KEY_LEN];
        make_key(k, &s->remote);
        const char *name = tern__map_get(&ss->sni, k);
        if (name != NULL) (void)SSL_set_tlsext_host_name(s->ssl, name);
    }
    s->state = ST_TLS;
    tls_step(d, s);
}

static void tls_step(tern_driver *d, drv_stream *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        d->st.tls_handshakes++;
        s->state = ST_OPEN;
        want_out(d, s, 0);
        stream_write(d, s);
        if (s->fd >= 0) stream_read(d, s); /* a record may have come with the last flight */
        return;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        want_out(d, s, 0);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        want_out(d, s, 1);
        return;
    }
    d->st.tls_failures++;
    if (!s->accepted) {
        int en = errno;
        char eb[128];
        const char *why = drv_tls_errstr(eb, sizeof(eb));
        if (why[0] == '\0')
            why = e == SSL_ERROR_SYSCALL && en != 0 ? strerror(en)
                                                    : "the server closed the connection";
        set_error(d, &s->remote, "TLS handshake failed (not a TLS 1.3 tern service?): %s", why);
        refuse_conns(d, s);
    }
    stream_close(d, s, NULL);
}

/* The options of every stream socket (accepted ones inherit nothing: they get them too):
 * TCP_NODELAY, since each frame is a packet the core timed; TCP_USER_TIMEOUT, so a stream
 * whose data goes unacknowledged (a network gone under a phone, a peer whose window stays shut)
 * fails in STREAM_USER_TIMEOUT_MS instead of the kernel's quarter of an hour, and the core
 * hears it and sends on the next path. */
static void stream_opts(int fd)
{
    int one = 1, uto = STREAM_USER_TIMEOUT_MS;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto));
}

static int stream_sock(const tern_addr *a)
{
    int fd = socket(a->family == TERN_AF_INET6 ? AF_INET6 : AF_INET,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) stream_opts(fd);
    return fd;
}

/* The TCP connect failed with err. A refusal (nothing listens on that port) is as definite as a
 * wrong service: connections still in their handshake towards it fail at once. Anything else
 * (no route, a timeout: a network that may come back) waits for the backoff and the core's
 * retries. */
static void connect_failed(tern_driver *d, drv_stream *s, int err)
{
    set_error(d, &s->remote, "cannot connect: %s", strerror(err));
    if (err == ECONNREFUSED) refuse_conns(d, s);
    stream_close(d, s, &d->st.stream_connect_failures);
}

/* Opens (or reopens) the socket of an outgoing stream. */
static void stream_dial(tern_driver *d, drv_stream *s)
{
    drv_streams *ss = d->streams;
    drv_fdec_init(&s->dec, drv_preamble_server);
    s->pre_seen = 0;
    s->state = ST_CONNECTING;
    s->opened = s->last_rx = s->last_tx = d->now;
    s->rd_wants_write = 0;
    arm(d, s, d->now + ss->lim.preamble_timeout_ns);
    d->st.streams_connected++;
    struct sockaddr_storage sa;
    int sl = tern_addr_to_sockaddr(&s->remote, &sa);
    s->fd = sl > 0 ? stream_sock(&s->remote) : -1;
    if (s->fd < 0) {
        set_error(d, &s->remote, "cannot open a socket: %s", strerror(errno));
        d->st.stream_connect_failures++;
        s->state = ST_DOWN;
        s->fails++;
        s->retry_at = d->now + RETRY_MAX_NS;
        arm(d, s, s->retry_at + DOWN_LINGER_NS);
        if (d->ep != NULL)
            tern_endpoint_stream_closed(d->ep, d->now, &s->local, &s->remote);
        return;
    }
    d->st.streams_open++;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = TAG_STREAM | (uint64_t)(uintptr_t)s;
    s->want_out = 1;
    int rc = wbuf_put(d, s, drv_preamble_client, DRV_PREAMBLE_LEN);
    if (rc != TERN_OK || epoll_ctl(d->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
        set_error(d, &s->remote, "out of memory or epoll failed");
        d->st.stream_connect_failures++;
        s->want_out = 0;
        stream_close(d, s, NULL);
        return;
    }
    if (connect(s->fd, (struct sockaddr *)&sa, (socklen_t)sl) == 0) {
        tcp_up(d, s);
    } else if (errno != EINPROGRESS && errno != EINTR) {
        connect_failed(d, s, errno);
    }
}

static void connect_done(tern_driver *d, drv_stream *s)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0) err = errno;
    if (err != 0) {
        connect_failed(d, s, err);
        return;
    }
    want_out(d, s, 0);
    tcp_up(d, s);
}

static void stream_timer(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)t;
    drv_stream *s = user;
    drv_streams *ss = d->streams;
    uint64_t now = d->now;
    if (s->state == ST_DOWN) { /* nobody sent to it since its backoff: forget it */
        uint8_t k[KEY_LEN];
        make_key(k, &s->remote);
        tern__map_del(&ss->by_addr, k, s);
        ss->n_outgoing--;
        free_stream(d, s);
        return;
    }
    if (s->state != ST_OPEN || s->dec.want != NULL) { /* connect, TLS and the preamble */
        uint64_t dl = s->opened + ss->lim.preamble_timeout_ns;
        if (now < dl) {
            arm(d, s, dl);
            return;
        }
        if (!s->accepted)
            set_error(d, &s->remote, "%s",
                      s->state == ST_CONNECTING ? "no answer to the TCP connect"
                      : s->state == ST_TLS      ? "TLS handshake not done in time"
                                                : "no tern preamble in time (not a tern service?)");
        if (!s->accepted && s->state == ST_OPEN) refuse_conns(d, s);
        stream_close(d, s, &d->st.stream_preamble_timeouts);
        return;
    }
    uint64_t last = s->last_rx > s->last_tx ? s->last_rx : s->last_tx;
    uint64_t idle = ss->lim.idle_timeout_ns;
    if (now - last >= idle || (s->wlen > 0 && now - s->wprog >= idle)) {
        if (!s->accepted) set_error(d, &s->remote, "stream idle, closed");
        stream_close(d, s, &d->st.stream_idle_timeouts);
        return;
    }
    uint64_t at = last + idle;
    if (s->wlen > 0 && s->wprog + idle < at) at = s->wprog + idle;
    arm(d, s, at);
}

static drv_stream *stream_alloc(tern_driver *d, const tern_addr *remote)
{
    drv_stream *s = tern__calloc(&d->alloc, sizeof(*s));
    if (s == NULL) return NULL;
    if ((uint64_t)(uintptr_t)s & TAG_MASK) { /* the epoll tag keeps only 61 bits of it */
        set_error(d, remote, "stream state allocated above 2^61: cannot tag it for epoll");
        tern__free(&d->alloc, s, sizeof(*s));
        return NULL;
    }
    s->tm.item = TERN__HEAP_ITEM_INIT;
    s->tm.d = d;
    s->tm.fn = stream_timer;
    s->tm.user = s;
    s->fd = -1;
    s->remote = canonical(remote);
    s->tls = remote->transport == TERN_TRANSPORT_TLS;
    return s;
}

/* ---------------------------------------------------------------- accepting */

static void pause_listeners(tern_driver *d)
{
    drv_streams *ss = d->streams;
    if (ss->paused) return;
    for (size_t i = 0; i < ss->n_listen; i++) {
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.data.u64 = TAG_LISTEN | i;
        (void)epoll_ctl(d->epfd, EPOLL_CTL_MOD, ss->lfd[i], &ev);
    }
    ss->paused = 1;
    if (drv_heap_set(&d->timers, &ss->resume, d->now + LISTEN_PAUSE_NS) != TERN_OK)
        d->work_left = 1;
}

static void resume_listeners(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)t, (void)user;
    drv_streams *ss = d->streams;
    for (size_t i = 0; i < ss->n_listen; i++) {
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.u64 = TAG_LISTEN | i;
        (void)epoll_ctl(d->epfd, EPOLL_CTL_MOD, ss->lfd[i], &ev);
    }
    ss->paused = 0;
}

static void on_listen(tern_driver *d, size_t li)
{
    drv_streams *ss = d->streams;
    for (int k = 0; k < ACCEPT_PER_WAKEUP; k++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        int fd = accept4(ss->lfd[li], (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR || errno == ECONNABORTED) continue;
            d->st.stream_accept_errors++;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_listeners(d); /* level-triggered: the queue would wake us in a loop */
            return;
        }
        tern_addr from;
        if (tern_addr_from_sockaddr(&from, (struct sockaddr *)&sa, sl) != TERN_OK) {
            close(fd);
            continue;
        }
        from.transport = ss->laddr[li].transport;
        if (ss->n_accepted >= ss->lim.max_streams) {
            d->st.streams_refused_max++;
            close(fd);
            continue;
        }
        if (!tern__srclim_take(&ss->accepts, &from, d->now)) {
            d->st.streams_refused_rate++;
            close(fd);
            continue;
        }
        uint8_t ik[IPKEY_LEN];
        make_ipkey(ik, &from);
        void **ref = tern__map_ref(&ss->per_ip, ik);
        uintptr_t from_ip = ref ? (uintptr_t)*ref : 0;
        if (from_ip >= ss->lim.max_per_ip) {
            d->st.streams_refused_per_ip++;
            close(fd);
            continue;
        }
        drv_stream *s = stream_alloc(d, &from);
        uint8_t key[KEY_LEN];
        make_key(key, &from);
        int rc = s ? tern__map_put(&ss->by_addr, key, s) : TERN_ERR_NOMEM;
        if (rc == TERN_OK) {
            if (ref) *ref = (void *)(from_ip + 1);
            else rc = tern__map_put(&ss->per_ip, ik, (void *)(uintptr_t)1);
            if (rc != TERN_OK) tern__map_del(&ss->by_addr, key, s);
        }
        if (rc != TERN_OK) {
            d->st.stream_accept_errors++;
            if (s) tern__free(&d->alloc, s, sizeof(*s));
            close(fd);
            continue;
        }
        memcpy(s->ipkey, ik, IPKEY_LEN);
        s->accepted = 1;
        s->fd = fd;
        struct sockaddr_storage la;
        socklen_t ll = sizeof(la);
        if (getsockname(fd, (struct sockaddr *)&la, &ll) != 0 ||
            tern_addr_from_sockaddr(&s->local, (struct sockaddr *)&la, ll) != TERN_OK)
            s->local = ss->laddr[li];
        s->local.transport = from.transport;
        ss->n_accepted++;
        d->st.streams_accepted++;
        d->st.streams_open++;
        drv_fdec_init(&s->dec, drv_preamble_client);
        s->opened = s->last_rx = s->last_tx = d->now;
        arm(d, s, d->now + ss->lim.preamble_timeout_ns);
        stream_opts(fd);
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.u64 = TAG_STREAM | (uint64_t)(uintptr_t)s;
        if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            d->st.stream_accept_errors++;
            stream_close(d, s, NULL);
            continue;
        }
        tcp_up(d, s);
        if (s->fd >= 0 && s->state == ST_OPEN) stream_read(d, s); /* bytes may wait already */
    }
    d->work_left = 1; /* the bound stopped us */
}

/* ---------------------------------------------------------------- the loop's hooks */

int drv_stream_event(tern_driver *d, uint64_t tag, uint32_t events)
{
    uint64_t kind = tag & TAG_MASK;
    if (kind == TAG_LISTEN) {
        size_t li = (size_t)(tag & ~TAG_MASK);
        if (d->streams != NULL && li < d->streams->n_listen) on_listen(d, li);
        return 1;
    }
    if (kind != TAG_STREAM) return 0;
    drv_stream *s = (drv_stream *)(uintptr_t)(tag & ~TAG_MASK);
    if (s->dead || s->fd < 0) return 1; /* closed earlier in this batch */
    switch (s->state) {
    case ST_CONNECTING:
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) connect_done(d, s);
        break;
    case ST_TLS:
        tls_step(d, s);
        break;
    case ST_OPEN:
        if ((events & EPOLLOUT) && s->rd_wants_write) {
            s->rd_wants_write = 0;
            stream_read(d, s);
        }
        if ((events & EPOLLOUT) && s->fd >= 0) stream_write(d, s);
        if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && s->fd >= 0) stream_read(d, s);
        break;
    default:
        break;
    }
    return 1;
}

/* What a packet of our connections may find queued on s: write_buffer for each connection whose
 * packets it carried (the core keeps up to stream_window in flight per connection, and two
 * client connections to one server share its stream), counted by the destination CIDs of the
 * short-header packets seen on it, up to STREAM_CIDS; a connection that ended still counts until
 * the stream does. The driver-wide buffer_total bounds the sum over all streams. */
static size_t core_conns(drv_stream *s, const tern_datagram *g)
{
    if (g->len > TERN_CID_LEN && (g->data[0] & 0x80) == 0 && s->n_cids < STREAM_CIDS) {
        const uint8_t *cid = g->data + 1;
        size_t i = 0;
        while (i < s->n_cids && memcmp(s->cids[i], cid, TERN_CID_LEN) != 0) i++;
        if (i == s->n_cids) memcpy(s->cids[s->n_cids++], cid, TERN_CID_LEN);
    }
    return s->n_cids > 1 ? s->n_cids : 1;
}

int drv_stream_send(tern_driver *d, const tern_datagram *g, int from_core)
{
    int open_ok = from_core;
    drv_streams *ss = d->streams;
    uint8_t k[KEY_LEN];
    make_key(k, &g->remote);
    drv_stream *s = tern__map_get(&ss->by_addr, k);
    /* only this end's own connections dial: the core sends their stream packets from the
     * port-0 address tern_driver_connect(_opts) gave it; a packet of an accepted stream's
     * connection (from the listener's address) never makes us dial the peer back */
    open_ok = open_ok && g->local.port == 0;
    if (s == NULL) {
        if (!open_ok) {
            d->st.stream_tx_held++;
            return TERN_ERR_NOT_FOUND;
        }
        if (ss->n_outgoing >= ss->lim.max_streams) {
            set_error(d, &g->remote, "too many outgoing streams");
            d->st.streams_refused_max++;
            return TERN_ERR_LIMIT;
        }
        if (g->remote.transport == TERN_TRANSPORT_TLS && ss->cli_ctx == NULL) {
            char err[200];
            ss->cli_ctx = drv_tls_client_ctx(err, sizeof(err));
            if (ss->cli_ctx == NULL) {
                snprintf(ss->error, sizeof(ss->error), "%s", err);
                d->st.tls_failures++;
                return TERN_ERR_CRYPTO;
            }
        }
        s = stream_alloc(d, &g->remote);
        if (s == NULL || tern__map_put(&ss->by_addr, k, s) != TERN_OK) {
            if (s) tern__free(&d->alloc, s, sizeof(*s));
            d->st.stream_tx_dropped++;
            return TERN_ERR_NOMEM;
        }
        s->local = g->local;
        ss->n_outgoing++;
        stream_dial(d, s);
    } else if (s->state == ST_DOWN) {
        if (!open_ok || d->now < s->retry_at) { /* the backoff: no reconnect storm */
            d->st.stream_tx_held++;
            return TERN_ERR_AGAIN;
        }
        s->local = g->local;
        stream_dial(d, s);
    }
    if (s->state == ST_DOWN) { /* the dial failed at once */
        d->st.stream_tx_held++;
        return TERN_ERR_AGAIN;
    }
    if (g->len == 0 || g->len > TERN_MAX_DATAGRAM) {
        d->st.stream_tx_dropped++;
        return TERN_ERR_INVALID_ARG;
    }
    size_t n = DRV_FRAME_HDR + g->len;
    /* a relay's frame (every tern_driver_send_raw one) may find only raw_cap queued: the rest
     * of write_buffer stays for the packets of our own connections */
    size_t lim = from_core ? ss->lim.write_buffer * core_conns(s, g) : ss->raw_cap;
    if ((s->wlen + n > lim || over_budget(d, s, n)) && s->state == ST_OPEN)
        stream_write(d, s); /* the kernel may take it: only what it refuses counts */
    if (s->fd < 0) { /* that write failed */
        d->st.stream_tx_held++;
        return TERN_ERR_AGAIN;
    }
    if (!from_core && s->wlen + n > lim) {
        d->st.stream_tx_dropped++;
        d->st.stream_raw_limited++; /* the ends of a relayed path recover their losses */
        return TERN_ERR_AGAIN;
    }
    int over = s->wlen + n > lim ? 1 : over_budget(d, s, n) ? 2 : 0;
    if (over) {
        d->st.stream_tx_dropped++;
        if (over == 2) d->st.stream_over_budget++;
        /* The core counts on a stream to deliver (it retransmits nothing there until the stream
         * ends), so a packet of its own that does not fit ends the stream: the core then sends
         * what was in flight again (on the next one, or on another path). stream_window under
         * write_buffer keeps this from happening unless the peer stops reading. */
        if (from_core) {
            if (!s->accepted)
                set_error(d, &s->remote, over == 2 ? "stream buffers over their driver-wide "
                                                     "budget, closed"
                                                   : "stream write buffer full, closed");
            stream_close(d, s, &d->st.stream_closed_error);
        }
        return TERN_ERR_AGAIN;
    }
    uint8_t hdr[DRV_FRAME_HDR] = {(uint8_t)(g->len >> 8), (uint8_t)g->len};
    if (wbuf_put(d, s, hdr, sizeof(hdr)) != TERN_OK ||
        wbuf_put(d, s, g->data, g->len) != TERN_OK) {
        d->st.stream_tx_dropped++;
        return TERN_ERR_NOMEM;
    }
    d->st.stream_frames_out++;
    mark_dirty(d, s);
    if (s->wlen >= FLUSH_AT) stream_write(d, s);
    return TERN_OK;
}

int drv_stream_reroute(tern_driver *d, const tern_addr *remote)
{
    if (d->streams == NULL || !tern_addr_is_stream(remote)) return 0;
    uint8_t k[KEY_LEN];
    make_key(k, remote);
    drv_stream *s = tern__map_get(&d->streams->by_addr, k);
    if (s == NULL || s->accepted || s->fd < 0) return 0;
    unsigned fails = s->fails;
    stream_close(d, s, &d->st.stream_route_closes);
    /* not a failure of the server's: the core may dial again at once, from the new source */
    s->fails = fails;
    s->retry_at = d->now;
    return 1;
}

void drv_streams_flush(tern_driver *d)
{
    drv_streams *ss = d->streams;
    while (ss->dirty != NULL) {
        drv_stream *s = ss->dirty;
        ss->dirty = s->next_dirty;
        s->dirty = 0;
        stream_write(d, s);
    }
}

void drv_streams_reap(tern_driver *d)
{
    drv_streams *ss = d->streams;
    while (ss->dead != NULL) {
        drv_stream *s = ss->dead;
        ss->dead = s->next_dead;
        free_stream(d, s);
    }
}

/* ---------------------------------------------------------------- setup */

static int open_listener(tern_driver *d, const tern_addr *a, size_t i)
{
    drv_streams *ss = d->streams;
    struct sockaddr_storage sa;
    int sl = tern_addr_to_sockaddr(a, &sa);
    if (sl <= 0) return TERN_ERR_INVALID_ARG;
    int fd = stream_sock(a);
    if (fd < 0) return TERN_ERR_STATE;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->family == TERN_AF_INET6) { /* the wildcard is dual-stack, an address is not */
        static const uint8_t any6[16];
        int v6only = memcmp(a->ip, any6, 16) != 0;
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    }
    struct sockaddr_storage la;
    socklen_t ll = sizeof(la);
    if (bind(fd, (struct sockaddr *)&sa, (socklen_t)sl) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&la, &ll) != 0 ||
        tern_addr_from_sockaddr(&ss->laddr[i], (struct sockaddr *)&la, ll) != TERN_OK) {
        int e = errno;
        close(fd);
        errno = e;
        return TERN_ERR_STATE;
    }
    ss->laddr[i].transport = a->transport;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = TAG_LISTEN | i;
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return TERN_ERR_STATE;
    }
    ss->lfd[i] = fd;
    return TERN_OK;
}

/* Why the last tern_driver_new of this thread failed on its streams (tern_driver_stream_error
 * with NULL): the driver that would have held the line is gone. */
static _Thread_local char setup_error[256];

static int setup_failed(drv_streams *ss, int rc)
{
    memcpy(setup_error, ss->error, sizeof(setup_error));
    return rc;
}

int drv_streams_new(tern_driver *d, const tern_driver_config *cfg)
{
    setup_error[0] = '\0';
    if (cfg->n_stream_listen > TERN_DRIVER_MAX_SOCKETS) return TERN_ERR_INVALID_ARG;
    drv_streams *ss = calloc(1, sizeof(*ss));
    if (ss == NULL) return TERN_ERR_NOMEM;
    d->streams = ss;
    tern_driver_stream_limits def, *l = &ss->lim;
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    def = dc.stream_limits;
    *l = cfg->stream_limits;
    if (l->max_streams == 0) l->max_streams = def.max_streams; /* 0: the default, each */
    if (l->max_per_ip == 0) l->max_per_ip = def.max_per_ip;
    if (l->write_buffer == 0) l->write_buffer = def.write_buffer;
    if (l->preamble_timeout_ns == 0) l->preamble_timeout_ns = def.preamble_timeout_ns;
    if (l->idle_timeout_ns == 0) l->idle_timeout_ns = def.idle_timeout_ns;
    if (l->accept_rate == 0) l->accept_rate = def.accept_rate;
    if (l->buffer_total == 0) l->buffer_total = def.buffer_total;
    if (l->write_buffer < DRV_FRAME_MAX + DRV_PREAMBLE_LEN) return TERN_ERR_INVALID_ARG;
    uint64_t win = cfg->endpoint.settings.stream_window ? cfg->endpoint.settings.stream_window
                                                        : 1u << 20; /* the core's default */
    /* a relay's frames: half of what write_buffer leaves above stream_window (the other half
     * is room for what the window does not count: frame headers, acknowledgements), at most a
     * quarter of write_buffer */
    ss->raw_cap = l->write_buffer / 4;
    if (l->write_buffer > win && (l->write_buffer - win) / 2 < ss->raw_cap)
        ss->raw_cap = (size_t)(l->write_buffer - win) / 2;
    ss->on_error = cfg->on_stream_error;
    ss->on_error_user = cfg->on_stream_error_user;
    ss->resume.item = TERN__HEAP_ITEM_INIT;
    ss->resume.d = d;
    ss->resume.fn = resume_listeners;
    uint8_t k[16];
    randombytes_buf(k, sizeof(k));
    int rc = tern__map_init(&ss->by_addr, &d->alloc, KEY_LEN, k);
    if (rc == TERN_OK) rc = tern__map_init(&ss->per_ip, &d->alloc, IPKEY_LEN, k);
    if (rc == TERN_OK) rc = tern__map_init(&ss->sni, &d->alloc, KEY_LEN, k);
    if (rc == TERN_OK)
        rc = tern__srclim_init(&ss->accepts, &d->alloc, l->accept_rate, 2ull * l->accept_rate,
                               ACCEPT_SOURCES, k);
    if (rc != TERN_OK) return rc;
    if ((ss->rbuf = malloc(RBUF_LEN)) == NULL) return TERN_ERR_NOMEM;
    for (size_t i = 0; i < cfg->n_stream_listen; i++) {
        const tern_addr *a = &cfg->stream_listen[i];
        if (!tern_addr_is_stream(a) || a->transport > TERN_TRANSPORT_TLS)
            return TERN_ERR_INVALID_ARG;
        if (a->transport == TERN_TRANSPORT_TLS && ss->srv_ctx == NULL) {
            ss->srv_ctx = drv_tls_server_ctx(cfg->tls_cert_file, cfg->tls_key_file, ss->error,
                                             sizeof(ss->error));
            if (ss->srv_ctx == NULL) return setup_failed(ss, TERN_ERR_CRYPTO);
        }
        if ((rc = open_listener(d, a, i)) != TERN_OK) {
            char ab[64];
            int e = errno;
            snprintf(ss->error, sizeof(ss->error), "cannot listen on %s: %s",
                     tern_addr_format(a, ab, sizeof(ab)), strerror(e));
            errno = e;
            return setup_failed(ss, rc);
        }
        ss->n_listen++;
    }
    return TERN_OK;
}

void drv_streams_del(tern_driver *d)
{
    drv_streams *ss = d->streams;
    if (ss == NULL) return;
    drv_streams_reap(d);
    size_t pos = 0;
    drv_stream *s;
    while ((s = tern__map_next(&ss->by_addr, &pos)) != NULL) {
        if (s->ssl) SSL_free(s->ssl);
        if (s->fd >= 0) close(s->fd);
        wbuf_release(d, s);
        free_stream(d, s);
    }
    tern__map_free(&ss->by_addr);
    tern__map_free(&ss->per_ip);
    pos = 0;
    char *name;
    while ((name = tern__map_next(&ss->sni, &pos)) != NULL) free(name);
    tern__map_free(&ss->sni);
    tern__srclim_free(&ss->accepts);
    for (size_t i = 0; i < ss->n_listen; i++) close(ss->lfd[i]);
    drv_heap_remove(&d->timers, &ss->resume);
    if (ss->srv_ctx) drv_tls_ctx_free(ss->srv_ctx);
    if (ss->cli_ctx) drv_tls_ctx_free(ss->cli_ctx);
    free(ss->rbuf);
    free(ss);
    d->streams = NULL;
}

int drv_streams_set_sni(tern_driver *d, const tern_addr *remote, const char *name)
{
    drv_streams *ss = d->streams;
    uint8_t k[KEY_LEN];
    make_key(k, remote);
    uint8_t ip[16];
    if (name == NULL || inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1) {
        char *old = tern__map_get(&ss->sni, k); /* RFC 6066: no IP literal as a server name */
        if (old != NULL) {
            tern__map_del(&ss->sni, k, old);
            free(old);
        }
        return TERN_OK;
    }
    size_t n = strlen(name);
    if (n == 0 || n > SNI_MAX) return TERN_ERR_INVALID_ARG;
    char *copy = malloc(n + 1);
    if (copy == NULL) return TERN_ERR_NOMEM;
    memcpy(copy, name, n + 1);
    void **ref = tern__map_ref(&ss->sni, k);
    if (ref != NULL) {
        free(*ref);
        *ref = copy;
        return TERN_OK;
    }
    if (tern__map_put(&ss->sni, k, copy) != TERN_OK) {
        free(copy);
        return TERN_ERR_NOMEM;
    }
    return TERN_OK;
}

/* ---------------------------------------------------------------- public */

size_t tern_driver_n_stream_listeners(const tern_driver *d)
{
    return d->streams ? d->streams->n_listen : 0;
}

int tern_driver_stream_local_addr(const tern_driver *d, size_t i, tern_addr *out)
{
    if (d == NULL || out == NULL || d->streams == NULL || i >= d->streams->n_listen)
        return TERN_ERR_INVALID_ARG;
    *out = d->streams->laddr[i];
    return TERN_OK;
}

const char *tern_driver_stream_error(const tern_driver *d)
{
    if (d == NULL) return setup_error;
    return d->streams ? d->streams->error : "";
}
