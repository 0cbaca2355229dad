/*
 * STUN over TCP, the pure part (no sockets, no clock): RFC 8489 framing of one connection's byte
 * stream (messages back to back, each cut by its length field) into the responder, and the
 * choice of which connection gives way when ternd's table is full. stun_service.c owns the
 * sockets; fuzz/fuzz_stun_tcp.c runs this on arbitrary bytes in arbitrary pieces.
 */
#ifndef TERND_STUN_TCP_H
#define TERND_STUN_TCP_H

#include <stddef.h>
#include <stdint.h>

#include "tern/stun.h"

#define STUN_TCP_BUF 4096 /* bytes of one connection held while a message is incomplete */

/* One connection's input. */
typedef struct stun_tcp_stream {
    size_t fill;
    uint8_t buf[STUN_TCP_BUF];
} stun_tcp_stream;

/* Why stun_tcp_input wants the connection closed. */
enum {
    STUN_TCP_CLOSE_MALFORMED = -1, /* not a STUN header, a length over the limit, a request the
                                      responder calls malformed: nothing after it can be trusted */
    STUN_TCP_CLOSE_SEND = -2,      /* send() could not take an answer whole */
};

/* The free part of the buffer, where the next read goes (cap 0 never happens between calls:
 * stun_tcp_input closes a connection whose buffer is full without a complete message). */
uint8_t *stun_tcp_space(stun_tcp_stream *st, size_t *cap);

/* After n more bytes were written at stun_tcp_space: answers every complete message with srv
 * (now, local and remote as tern_stun_server_respond takes them), passing each answer to
 * send(user, answer, len), which returns 0 or -1 (could not send it whole). Keeps the bytes of
 * an incomplete message for the next call. Returns the number of complete requests consumed
 * (answered, rate limited or ignored; >= 0), or STUN_TCP_CLOSE_*. */
int stun_tcp_input(stun_tcp_stream *st, size_t n, tern_stun_server *srv, uint64_t now,
                   const tern_addr *local, const tern_addr *remote,
                   int (*send)(void *user, const uint8_t *data, size_t len), void *user);

/* 1 when a and b count as one source for the per-address limit: the same IPv4 address, or the
 * same IPv6 /64 (one subscriber's prefix). */
int stun_tcp_same_source(const tern_addr *a, const tern_addr *b);

/* When the table is full: which of the n connections (their sources and the times of their last
 * complete request, or of their accept) gives way to a new one. The source holding the most
 * connections loses its idlest one; between sources holding as many, the idlest connection
 * loses. Returns an index in [0, n), or -1 when n is 0. O(n) time with the caller's scratch of
 * at least 6 * n uint32_t (with less, the idlest connection of all loses). */
int stun_tcp_pick_victim(const tern_addr *const *src, const uint64_t *last_ns, size_t n,
                         uint32_t *scratch, size_t scratch_len);

#endif
