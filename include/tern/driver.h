/*
 * tern driver: a Linux event loop that owns UDP sockets and timers and feeds the sans-I/O core.
 *
 * A tern_driver holds one tern_endpoint, one or more non-blocking UDP sockets (IPv4 and/or IPv6),
 * an epoll instance and a min-heap of timers (the endpoint's next deadline is one of them). Each
 * iteration it reads the clock once, reads at most a bounded number of datagrams per socket with
 * recvmmsg (UDP GRO coalesced reads are split back into datagrams), hands them to the core, runs
 * the timers that are due, and before it sleeps flushes everything the core has to send with
 * sendmmsg, packing runs of equal-sized datagrams to one destination into UDP GSO messages.
 * GSO and GRO are used where the kernel offers them and silently dropped where it does not.
 * Where UDP does not pass it also carries the core's packets on TCP and TLS 1.3 streams (one
 * frame per packet, docs/protocol.md section 10): listeners from stream_listen, and streams
 * opened on demand when the core sends to an address whose transport is TCP or TLS.
 *
 * Two ways in:
 *   - the ready loop: tern_driver_run() until tern_driver_stop() (async-signal-safe), then
 *     tern_driver_shutdown() to close connections gracefully;
 *   - embedding in an application's own loop: wait until tern_driver_fd() is readable or
 *     tern_driver_timeout_ms() passes, then call tern_driver_process(). After calling tern_conn_*
 *     functions from outside a driver callback, call tern_driver_flush() (or process()).
 *
 * The driver is not thread-safe: one thread uses it, except tern_driver_stop() which any thread
 * or signal handler may call. OS failures return TERN_ERR_STATE with errno as the OS set it.
 */
#ifndef TERN_DRIVER_H
#define TERN_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "tern/tern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_DRIVER_MAX_SOCKETS 8

typedef struct tern_driver tern_driver;
typedef struct tern_driver_timer tern_driver_timer;

/* A look at every received datagram before the endpoint gets it (ternd's relay uses it for
 * datagrams that are not tern packets). sock is the socket it arrived on (for
 * tern_driver_send_raw), from its source. data is the driver's receive buffer: the hook may
 * rewrite it in place and pass it to tern_driver_send_raw, but must not keep the pointer. Returns
 * 1 when it took the datagram (the endpoint never sees it), 0 to hand it on. */
typedef int (*tern_driver_rx_hook)(tern_driver *d, size_t sock, const tern_addr *from,
                                   uint8_t *data, size_t len, void *user);

/* A stream frame's sock in the rx_hook; tern_driver_send_raw ignores sock when `to` is a stream
 * address (the frame goes on the open stream to it; none open: TERN_ERR_NOT_FOUND), and given
 * this sock with a UDP `to` sends from the first socket that can reach to's family (a relay
 * forwarding from a stream to a UDP peer). */
#define TERN_DRIVER_STREAM_SOCK ((size_t)-1)

/* What a remote party can make the driver hold in streams, each counted (tern_driver_stats). */
typedef struct tern_driver_stream_limits {
    uint32_t max_streams;        /* accepted streams open at once (10000) */
    uint32_t max_per_ip;         /* accepted streams from one IPv4 address or IPv6 /64 (64) */
    uint32_t write_buffer;       /* bytes queued per stream beyond what the kernel took
                                    (1.25 MiB: above the core's stream_window of 1 MiB, so only
                                    a peer that stops reading fills it), for each connection
                                    whose packets the stream carried (up to 8, by their
                                    destination connection IDs). Past it a packet of the core's
                                    closes the stream (the core resends what was in flight on
                                    the next one). A tern_driver_send_raw frame (a relay's) is
                                    dropped once write_buffer minus the endpoint's
                                    stream_window is queued (256 KiB at the defaults; a
                                    quarter of write_buffer when it is not above
                                    stream_window): a busy relay leaves the room the stream's
                                    own connections need */
    uint64_t preamble_timeout_ns;/* an accepted stream (and its TLS handshake) must show the
                                    tern preamble within this, or it is closed (5 s) */
    uint64_t idle_timeout_ns;    /* a stream that carried nothing this long is closed (60 s) */
    uint32_t accept_rate;        /* streams accepted per second from one IPv4 address or IPv6
                                    /64, in bursts of twice that; more are closed at accept
                                    (50: a TLS handshake costs the server CPU before tern's own
                                    handshake_rate applies) */
    uint64_t buffer_total;       /* bytes of write buffers all streams together may hold
                                    (256 MiB; without it max_streams x write_buffer is
                                    12.5 GiB). A frame that would pass it: a send_raw one is
                                    dropped, a core packet closes its stream (the core sends
                                    again on the next stream or another path) */
} tern_driver_stream_limits; /* a field left 0: its default. max_streams also bounds the
                                outgoing streams, counted apart. */

typedef struct tern_driver_config {
    /* The endpoint to create, with the application's callbacks and user_data (the driver also
     * watches on_accept, on_established and on_conn_free to track live connections). */
    tern_endpoint_config endpoint;
    /* Addresses to bind (port 0: any free port). None: one socket on 0.0.0.0:0 and, where the
     * host has IPv6, one on [::]:0 (what a client needs). */
    size_t n_listen;
    tern_addr listen[TERN_DRIVER_MAX_SOCKETS];
    int sockbuf_bytes;         /* SO_RCVBUF and SO_SNDBUF asked for (4 MiB: ~1 Gbit/s x 32 ms) */
    unsigned rx_batch;         /* datagrams per recvmmsg (64; 1..1024) */
    unsigned rx_per_wakeup;    /* datagrams read per socket per iteration (256) */
    unsigned tx_per_wakeup;    /* datagrams taken from the core per flush (1024); more waits
                                  for the next iteration, which then does not sleep */
    int disable_gso;           /* never use UDP_SEGMENT (0) */
    int disable_gro;           /* never ask for UDP_GRO (0) */
    tern_driver_rx_hook rx_hook; /* NULL: every datagram goes to the endpoint; it also sees
                                    every frame that arrives on a stream, with sock
                                    TERN_DRIVER_STREAM_SOCK and from's transport TCP or TLS */
    void *rx_hook_user;
    /* Stream transports (docs/protocol.md, "Stream transport"): addresses to accept tern over
     * TCP or TLS 1.3 on (each tern_addr's transport says which). None: no listening stream. A
     * client needs none: its streams are opened when the core first sends to a stream address
     * (tern_driver_connect_opts). */
    size_t n_stream_listen;
    tern_addr stream_listen[TERN_DRIVER_MAX_SOCKETS];
    const char *tls_cert_file; /* PEM certificate (chain) and key for the TLS listeners; NULL */
    const char *tls_key_file;  /* both: a self-signed certificate made at start (for tests) */
    tern_driver_stream_limits stream_limits;
    /* A definite stream failure towards remote (a port that refused the connection, a service
     * that is not tern, a TLS handshake that failed): line is tern_driver_stream_error's. Return
     * 1 to have the driver close at once every connection still in its handshake towards remote,
     * with line as the reason (on_closed follows, with TERN_ERR_LOCAL_CLOSED, before this call
     * returns to the driver); 0 to leave them to the handshake timeout (the core keeps retrying
     * at a bounded rate). NULL: 0. Called from inside the driver: it may call tern_driver_stop
     * and tern_conn_* but not process, run or del. */
    int (*on_stream_error)(tern_driver *d, const tern_addr *remote, const char *line, void *user);
    void *on_stream_error_user;
    /* Migration (tern_driver_migrate). A driver whose endpoint is not is_server moves its client
     * connections by itself (src/driver/netmon.c): when the kernel's route to a connection's
     * server starts to use another source address (an address went away, a link went down, a
     * default route came or went: netlink tells), and when a connection's active path is silent
     * (tern_path_info: an ack-eliciting packet unanswered for 3 PTO, at least 1 s), since a NAT
     * mapping may have died: a fresh socket gets a fresh mapping. Each silence of a connection
     * moves it at most 3 times, each waiting twice as long as the one before; all automatic
     * moves together at most 6 a minute (bursts of 3); the rest are counted and dropped. A
     * connection that cannot move (on a stream or relayed) takes no token and opens no socket.
     * The silence of a connection with a fallback (tern_path_info.has_fallback) is the core's:
     * it moves to its relay or stream then. A client connection on a stream of ours whose
     * route changed source has that stream closed instead (stream_route_closes): the core
     * dials it again at once from the new address, not after TCP_USER_TIMEOUT (20 s). */
    int no_auto_migrate;        /* 1: never move connections by itself (0) */
    uint64_t migrate_linger_ns; /* a socket its connections left stays open this long for the
                                   packets still on their way to it, then closes (3 s) */
} tern_driver_config;

/* Zeroes cfg, fills cfg->endpoint with tern_endpoint_config_default() and the driver's
 * defaults above. */
void tern_driver_config_default(tern_driver_config *cfg);

/* Creates the endpoint, opens and binds the sockets, sizes their buffers, probes GSO/GRO and sets
 * up epoll, the stop eventfd and the timer heap. Errors: TERN_ERR_INVALID_ARG (bad config),
 * TERN_ERR_NOMEM, TERN_ERR_CRYPTO, TERN_ERR_STATE (socket/bind/epoll failed: errno says why). */
int tern_driver_new(const tern_driver_config *cfg, tern_driver **out);

/* Frees the endpoint (no callbacks but on_flow_release, as tern_endpoint_del), closes the
 * sockets, frees the timers. NULL is a no-op. */
void tern_driver_del(tern_driver *d);

/* The core endpoint: for stats, tern_conn_* calls and the like. */
tern_endpoint *tern_driver_endpoint(tern_driver *d);

/* The time (CLOCK_MONOTONIC, ns) read at the start of the current iteration: the `now` to pass
 * to tern_conn_* calls made from callbacks. */
uint64_t tern_driver_now(const tern_driver *d);

/* Reads the clock again and returns it (for calls made outside an iteration). */
uint64_t tern_driver_update_now(tern_driver *d);

/* Number of sockets and the address socket i is bound to (the actual port when 0 was asked).
 * Errors: TERN_ERR_INVALID_ARG (i out of range). */
size_t tern_driver_n_sockets(const tern_driver *d);
int tern_driver_local_addr(const tern_driver *d, size_t i, tern_addr *out);

/* Opens a connection to the server at remote holding server_pub, from the first socket that can
 * reach remote's family. The handshake reports through on_established or on_closed. Errors:
 * TERN_ERR_INVALID_ARG (no socket of that family), TERN_ERR_NOMEM. */
int tern_driver_connect(tern_driver *d, const tern_addr *remote,
                        const uint8_t server_pub[TERN_KEY_LEN], tern_conn **out);

/* How tern_driver_connect_opts reaches the server. */
typedef enum tern_transport_choice {
    TERN_TRANSPORT_AUTO = 0, /* UDP, and the stream (stream_remote) after the race delay */
    TERN_TRANSPORT_ONLY_UDP,
    TERN_TRANSPORT_ONLY_STREAM,
} tern_transport_choice;

typedef struct tern_driver_connect_cfg {
    tern_addr remote;        /* the server's UDP address (family NONE: none) */
    tern_addr stream_remote; /* the server's TCP or TLS address (family NONE: none) */
    tern_transport_choice choice;
    uint64_t stream_after_ns;/* 0: the core's default (tern_connect_opts) */
    uint8_t server_pub[TERN_KEY_LEN];
    /* The TLS server name (SNI) sent on a TLS stream_remote: the host name the user gave
     * (NULL, or an IP literal: none, RFC 6066). The certificate is not checked: the tern
     * handshake inside authenticates the server by server_pub. */
    const char *tls_server_name;
} tern_driver_connect_cfg;

/* Opens a connection over UDP, a stream, or both raced (tern_endpoint_connect_opts): the UDP
 * side leaves from the first socket of remote's family, the stream is opened by the driver when
 * the core first sends to it. Errors: TERN_ERR_INVALID_ARG (no usable remote for the choice),
 * TERN_ERR_NOMEM. */
int tern_driver_connect_opts(tern_driver *d, const tern_driver_connect_cfg *o,
                             tern_conn **out);

/* Client-driven migration (docs/protocol.md, "Migration"): opens a fresh UDP socket bound to
 * local (NULL: the wildcard address of each connection's family with a new ephemeral port, so
 * that a NAT makes a new mapping), adds it to the driver's sockets and moves conn to it with
 * tern_conn_migrate (conn NULL: every established client connection whose path is direct UDP).
 * A socket every connection left stays open migrate_linger_ns for packets still on their way,
 * then closes; the sockets of a server's configuration (endpoint is_server) never close, since
 * peers know their addresses. Socket indices (tern_driver_local_addr) may shift when one
 * closes. What the move queues goes out at the loop's next flush (tern_driver_flush). Returns
 * how many connections moved (0: none could), or TERN_ERR_INVALID_ARG, TERN_ERR_LIMIT
 * (TERN_DRIVER_MAX_SOCKETS are open and none is lingering), TERN_ERR_STATE (socket or bind
 * failed: errno set), or tern_conn_migrate's error for the one conn given. Counted in
 * tern_driver_stats (migrations, sockets_opened, sockets_closed). */
int tern_driver_migrate(tern_driver *d, tern_conn *conn, const tern_addr *local);
/* (local of the other family than a connection's path: that connection is refused with
 * TERN_ERR_INVALID_ARG, either way round.) */
/* The stream listeners (cfg->stream_listen, in order) and the address listener i is bound to,
 * transport included (the actual port when 0 was asked). Errors: TERN_ERR_INVALID_ARG. */
size_t tern_driver_n_stream_listeners(const tern_driver *d);
int tern_driver_stream_local_addr(const tern_driver *d, size_t i, tern_addr *out);

/* The last stream failure as one line (a connect refused, a TLS handshake that failed, "X is not
 * a tern stream service: it sent ..." when the port answered with something else, a listener
 * that could not be opened), "" when none. A server that is not tern, or a port that refuses
 * the connection, is a definite answer: cfg.on_stream_error hears it at once and may have the
 * connections still in their handshake towards it closed with this line as the reason. Valid until the next driver call. With d NULL: why
 * the last tern_driver_new of this thread failed on its streams (a certificate or key it could
 * not use, a listener it could not open), "" when it did not. */
const char *tern_driver_stream_error(const tern_driver *d);

/* Sends one datagram from socket sock (0..n_sockets-1) to `to`, outside the core (a relay
 * forwarding what an rx_hook took). The datagram is copied into a queue of 64 that goes out like
 * the core's datagrams (sendmmsg; consecutive datagrams of one size to one address as one UDP GSO
 * message where the kernel offers it) when the current receive batch is done, when the loop
 * flushes (before it sleeps; tern_driver_flush), or when the queue is full. Errors:
 * TERN_ERR_INVALID_ARG (bad socket, address or length over TERN_MAX_DATAGRAM), TERN_ERR_NOMEM
 * (the queue, allocated at the first call), TERN_ERR_AGAIN (a socket's send buffer is full and
 * the queue too: the datagram is dropped; to a stream address: its relay's share of the write
 * buffer, or the driver-wide buffer_total, is used up, stream_limits). Counted in stats.tx_raw
 * (sent), tx_raw_errors (refused or dropped), tx_raw_syscalls and tx_raw_gso_msgs. */
int tern_driver_send_raw(tern_driver *d, size_t sock, const tern_addr *to, const uint8_t *data,
                         size_t len);

/* ---------------------------------------------------------------- the ready loop */

/* Runs iterations until tern_driver_stop() is called. Returns TERN_OK after a stop, or
 * TERN_ERR_STATE when epoll_wait fails for a reason other than EINTR (errno set). */
int tern_driver_run(tern_driver *d);

/* Asks run() to return (and a running shutdown() to give up waiting). Async-signal-safe and
 * thread-safe: it writes to an eventfd. */
void tern_driver_stop(tern_driver *d);

/* Closes every open connection with app_code and reason, then runs the loop until each has been
 * freed, grace_ns has passed, or tern_driver_stop() is called again. Returns how many connections
 * were still alive when it returned (0: all closed cleanly), or TERN_ERR_STATE (epoll failed). */
int tern_driver_shutdown(tern_driver *d, uint64_t app_code, const char *reason, uint64_t grace_ns);

/* ---------------------------------------------------------------- embedding */

/* A file descriptor (epoll) that becomes readable when the driver has input to process. */
int tern_driver_fd(const tern_driver *d);

/* Milliseconds until the driver's earliest timer (rounded up): -1 when there is none, 0 when
 * one is due or work is left over from the last iteration. */
int tern_driver_timeout_ms(tern_driver *d);

/* One iteration without sleeping: reads the clock, reads ready sockets (bounded), runs due
 * timers, flushes sends. Returns TERN_OK, 1 when tern_driver_stop() was called since the last
 * call, or TERN_ERR_STATE when epoll fails (errno set). */
int tern_driver_process(tern_driver *d);

/* Sends what the core has queued (bounded by tx_per_wakeup) and re-arms the endpoint timer. */
void tern_driver_flush(tern_driver *d);

/* ---------------------------------------------------------------- timers */

typedef void (*tern_driver_timer_fn)(tern_driver *d, tern_driver_timer *t, void *user);

/* Creates a stopped timer that calls fn(d, t, user) when it fires (once per tern_driver_timer_set).
 * Errors: TERN_ERR_INVALID_ARG, TERN_ERR_NOMEM. */
int tern_driver_timer_new(tern_driver *d, tern_driver_timer_fn fn, void *user,
                          tern_driver_timer **out);
/* Arms (or re-arms) t to fire at the monotonic time at_ns (TERN_TIME_NEVER disarms it). Errors:
 * TERN_ERR_NOMEM (heap growth). */
int tern_driver_timer_set(tern_driver_timer *t, uint64_t at_ns);
/* Disarms t (no-op when not armed). */
void tern_driver_timer_cancel(tern_driver_timer *t);
/* Disarms and frees t; allowed from its own callback. NULL is a no-op. */
void tern_driver_timer_del(tern_driver_timer *t);

/* ---------------------------------------------------------------- counters */

typedef struct tern_driver_stats {
    uint64_t iterations;        /* loop iterations */
    uint64_t rx_syscalls;       /* recvmmsg calls that returned data */
    uint64_t rx_datagrams;      /* datagrams handed to the core (GRO segments counted apart) */
    uint64_t rx_gro_batches;    /* received buffers that held several coalesced datagrams */
    uint64_t rx_oversize;       /* datagrams dropped for being larger than TERN_MAX_DATAGRAM */
    uint64_t rx_errors;         /* recvmmsg failures other than EAGAIN/EINTR */
    uint64_t tx_syscalls;       /* sendmmsg/sendmsg calls */
    uint64_t tx_datagrams;      /* datagrams the kernel accepted */
    uint64_t tx_gso_msgs;       /* messages sent with UDP_SEGMENT (each carrying >= 2 datagrams) */
    uint64_t tx_errors;         /* datagrams the kernel refused (dropped) */
    uint64_t tx_blocked;        /* times a socket's send buffer was full (EAGAIN) */
    uint64_t gso_fallbacks;     /* sockets on which GSO was turned off after the kernel refused */
    uint64_t timers_fired;      /* application timers run */
    int gso, gro;               /* 1 when every socket has GSO / GRO enabled */
    int rcvbuf, sndbuf;         /* buffer sizes the kernel granted on socket 0 */
    uint64_t rx_hooked;         /* datagrams the rx_hook took */
    uint64_t tx_raw, tx_raw_errors; /* tern_driver_send_raw: sent, refused by the kernel */
    uint64_t tx_raw_syscalls;       /* sendmmsg calls that sent them */
    uint64_t tx_raw_gso_msgs;       /* of their messages, those with UDP_SEGMENT */
    /* migration (tern_driver_migrate, the automatic moves of a client driver) */
    uint64_t migrations;        /* connections moved to a fresh socket */
    uint64_t auto_route_moves;  /* automatic moves after the route's source address changed */
    uint64_t auto_silent_moves; /* automatic moves of a connection whose path was silent */
    uint64_t auto_limited;      /* automatic moves the rate limit (6 a minute) dropped */
    uint64_t netlink_events;    /* address, link and default-route messages read from netlink */
    uint64_t sockets_opened, sockets_closed; /* by migration */
    /* stream transports (docs/protocol.md, "Stream transport"; limits: stream_limits) */
    uint64_t streams_open;             /* streams open now, accepted and outgoing */
    uint64_t streams_connected;        /* outgoing streams dialled (first tries and reopens) */
    uint64_t streams_accepted;         /* incoming streams accepted */
    uint64_t streams_refused_max;      /* streams refused: max_streams accepted (closed at
                                          accept) or outgoing (not opened) */
    uint64_t streams_refused_per_ip;   /* accepted streams closed at once: max_per_ip */
    uint64_t streams_refused_rate;     /* accepted streams closed at once: accept_rate */
    uint64_t stream_accept_errors;     /* accept() failures; EMFILE and the like pause the
                                          listeners for 100 ms */
    uint64_t stream_connect_failures;  /* outgoing streams whose TCP connect failed */
    uint64_t stream_preamble_timeouts; /* closed: connect, TLS handshake and preamble not done
                                          within preamble_timeout (slowloris, silent service) */
    uint64_t stream_idle_timeouts;     /* closed: nothing carried for idle_timeout, or a write
                                          buffer that made no progress that long */
    uint64_t stream_bad_preamble;      /* closed: the peer's first bytes are not tern's */
    uint64_t stream_bad_length;        /* closed: a frame of length 0 or over the maximum */
    uint64_t stream_closed_peer;       /* closed by the peer (EOF, reset, TLS close) */
    uint64_t stream_closed_error;      /* closed: a write failed, the write buffer overflowed
                                          with a core packet, or out of memory */
    uint64_t stream_frames_in, stream_frames_out; /* packets read, packets queued */
    uint64_t stream_bytes_in, stream_bytes_out;   /* stream bytes (inside TLS) read, written */
    uint64_t stream_tx_dropped;        /* frames that did not fit the write buffer (a core
                                          packet's also closes the stream: stream_closed_error) */
    uint64_t stream_tx_held;           /* frames dropped: the stream is down, waiting for its
                                          reconnect backoff (or none for send_raw) */
    uint64_t stream_raw_limited;       /* of stream_tx_dropped, send_raw frames (a relay's)
                                          dropped at their share of write_buffer */
    uint64_t stream_over_budget;       /* of stream_tx_dropped, frames refused at
                                          buffer_total (a core packet's closed its stream) */
    uint64_t stream_buffer_bytes;      /* bytes the streams' write buffers hold now */
    uint64_t stream_buffer_peak;       /* the most they held at once */
    uint64_t stream_route_closes;      /* outgoing streams closed because the route to their
                                          server took another source address (automatic
                                          migration: the core reopens them from the new one) */
    uint64_t tls_handshakes, tls_failures; /* TLS handshakes completed, failed */
} tern_driver_stats;

void tern_driver_get_stats(const tern_driver *d, tern_driver_stats *st);

/* ---------------------------------------------------------------- key files */

/* Writes kp's private key as 64 hex characters and a newline to path, created with mode 0600
 * (replaced if it exists, never world-readable). Errors: TERN_ERR_STATE (errno set). */
int tern_keyfile_write(const char *path, const tern_keypair *kp);
/* Reads a key file written by tern_keyfile_write and derives the key pair. Errors:
 * TERN_ERR_STATE (cannot read: errno set), TERN_ERR_MALFORMED (not 64 hex characters). */
int tern_keyfile_read(const char *path, tern_keypair *kp);
/* Reads a secret file (ternd --token-secret, written by tern token new-secret): exactly 2 * len
 * hex characters, then optional white space (newline, carriage return, space), into secret
 * (len 1..64). Errors: TERN_ERR_STATE (cannot open: errno set), TERN_ERR_MALFORMED (not
 * 2 * len hex characters), TERN_ERR_INVALID_ARG. The text read is wiped, and secret on error. */
int tern_secretfile_read(const char *path, uint8_t *secret, size_t len);

#ifdef __cplusplus
}
#endif
#endif
