/*
 * Internals of the driver's stream transports (docs/protocol.md, "Stream transport"): tern
 * packets framed on TCP connections, and on TLS 1.3 over TCP, next to the UDP sockets.
 *
 *   - stream_frame.c: the pure framing codec (preambles, 2-byte length prefixes): no I/O, no
 *     allocation, fuzzed by fuzz/fuzz_stream_frame.c;
 *   - stream_tls.c: the OpenSSL contexts (TLS 1.3 only; the server's certificate from files or
 *     a self-signed one made in memory at start);
 *   - stream.c: the sockets: listeners, accepted and outgoing streams, their limits, timers,
 *     write buffers and counters, and the hooks the loop (loop.c) and the send path (io.c) call.
 *
 * The core stays sans-I/O: a datagram it emits to a stream address is one frame on the
 * driver's stream to that address (opened on demand), and each frame read off a stream goes
 * to tern_endpoint_recv (or the rx_hook) with the stream's addresses, transport included.
 */
#ifndef TERN_DRIVER_STREAM_H
#define TERN_DRIVER_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "tern/driver.h"

/* ---------------------------------------------------------------- framing (stream_frame.c) */

/* Each side's first 8 bytes on a stream: "tern/1" (the protocol and its version), the role
 * ('c' the side that connected, 's' the side that accepted) and a newline. They differ by role
 * so an echo service cannot pass for a tern server. */
#define DRV_PREAMBLE_LEN 8
extern const uint8_t drv_preamble_client[DRV_PREAMBLE_LEN];
extern const uint8_t drv_preamble_server[DRV_PREAMBLE_LEN];

#define DRV_FRAME_HDR 2 /* big-endian length before each packet */
#define DRV_FRAME_MAX (DRV_FRAME_HDR + TERN_MAX_DATAGRAM)

/* What drv_fdec_feed reports. Errors are sticky: the decoder takes nothing more. */
enum {
    DRV_FDEC_OK = 0,
    DRV_FDEC_STOPPED = 1,       /* the frame callback asked to stop (input left unread) */
    DRV_FDEC_BAD_PREAMBLE = -1, /* the first 8 bytes are not the expected preamble */
    DRV_FDEC_BAD_LENGTH = -2,   /* a frame of length 0 or over TERN_MAX_DATAGRAM */
};

/* The receiving side of one stream: the peer's preamble, then frames, cut anywhere by reads. */
typedef struct drv_fdec {
    const uint8_t *want; /* the preamble still expected (NULL once it was seen) */
    uint8_t pre[DRV_PREAMBLE_LEN];
    uint8_t pre_got;     /* bytes of the preamble read so far */
    uint8_t hdr_got;     /* bytes of the current frame's length read so far (0..2) */
    uint16_t len, got;   /* the current frame's length and the bytes of it copied to buf */
    int err;             /* sticky DRV_FDEC_* error, 0 while good */
    uint8_t buf[TERN_MAX_DATAGRAM]; /* a frame that a read cut in two, put back together */
} drv_fdec;

/* Called once per complete frame (len 1..TERN_MAX_DATAGRAM). frame points into the caller's
 * input or into the decoder's buffer, valid until the call returns (writable: an rx_hook may
 * rewrite it in place). Returns 0 to go on, non-zero to stop feeding. */
typedef int (*drv_frame_fn)(void *user, uint8_t *frame, size_t len);

/* Starts a decoder that expects preamble want (drv_preamble_client or _server). */
void drv_fdec_init(drv_fdec *f, const uint8_t *want);
/* Feeds n bytes; frames wholly inside in are handed over where they lie (no copy). Sets *used to
 * the bytes consumed (all of them unless stopped or in error). Returns DRV_FDEC_OK, _STOPPED, or
 * an error (sticky: later calls consume nothing and return it again). */
int drv_fdec_feed(drv_fdec *f, uint8_t *in, size_t n, drv_frame_fn fn, void *user, size_t *used);
/* Writes the frame for a packet of len (1..TERN_MAX_DATAGRAM) bytes to out (len + 2 bytes);
 * returns its length, 0 when len is out of range. */
size_t drv_frame_put(uint8_t *out, const uint8_t *data, size_t len);

/* ---------------------------------------------------------------- TLS (stream_tls.c) */

/* Opaque OpenSSL contexts (SSL_CTX *). */
void *drv_tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen);
void *drv_tls_client_ctx(char *err, size_t errlen);
void drv_tls_ctx_free(void *ctx);
/* Gives ssl (SSL *) the non-blocking socket fd through a BIO that never raises SIGPIPE.
 * Returns 0, or -1 (out of memory). */
int drv_tls_attach(void *ssl, int fd);
/* The last OpenSSL error as text (clears the queue); "" when none. */
const char *drv_tls_errstr(char *buf, size_t len);

/* ---------------------------------------------------------------- streams (stream.c) */

typedef struct drv_streams drv_streams;

/* Sets up the listeners (cfg->stream_listen) and TLS contexts (the counters are the driver's
 * own, d->st). Errors: TERN_ERR_STATE (socket,
 * bind or listen failed: errno set), TERN_ERR_CRYPTO (certificate or key unusable),
 * TERN_ERR_NOMEM, TERN_ERR_INVALID_ARG. */
int drv_streams_new(tern_driver *d, const tern_driver_config *cfg);
void drv_streams_del(tern_driver *d);
/* An epoll event whose tag is a stream's or a listener's: handles it and returns 1; 0 when the
 * tag is not one of ours. */
int drv_stream_event(tern_driver *d, uint64_t tag, uint32_t events);
/* Queues one framed packet for the stream to g->remote: a datagram the core made (from_core:
 * the stream is opened when there is none and g->local is a port-0 address, and a packet past
 * write_buffer per connection on the stream, or past the driver-wide buffer_total, closes it)
 * or tern_driver_send_raw's (only on an open stream; dropped once the relay's share of the
 * write buffer is queued, or at buffer_total). Returns TERN_OK, or the reason it was dropped
 * (counted): TERN_ERR_AGAIN (write buffer full or over budget, or the stream is waiting to be
 * reopened), TERN_ERR_NOT_FOUND (no stream it may use),
 * TERN_ERR_LIMIT, TERN_ERR_NOMEM, TERN_ERR_CRYPTO. */
int drv_stream_send(tern_driver *d, const tern_datagram *g, int from_core);
/* The route to remote's server took another source address: closes our outgoing stream to it
 * (counted: stream_route_closes) without the reconnect backoff, so the core, told by
 * tern_endpoint_stream_closed, dials again at once from the new address instead of waiting for
 * TCP to notice (TCP_USER_TIMEOUT, 20 s). Returns 1 when a stream was closed, 0 when there was
 * none open (or an accepted one: a server's streams are the client's to move). */
int drv_stream_reroute(tern_driver *d, const tern_addr *remote);
/* Writes what the send path queued on streams (end of each flush). */
void drv_streams_flush(tern_driver *d);
/* Frees the streams closed during the iteration (after its events: none is referenced). */
void drv_streams_reap(tern_driver *d);
/* Remembers the TLS server name (SNI) for stream_remote (tern_driver_connect_opts), replacing
 * the one before; NULL or an IP literal: none. Errors: TERN_ERR_INVALID_ARG (over 253
 * characters), TERN_ERR_NOMEM. */
int drv_streams_set_sni(tern_driver *d, const tern_addr *remote, const char *name);

#endif
