/*
 * tern error convention: every function that can fail returns a negative TERN_ERR_* value;
 * 0 (TERN_OK) or a positive count means success. tern_strerror() names each code.
 * Codes at or below TERN_ERR_FATAL close the connection they happen on.
 */
#ifndef TERN_ERRORS_H
#define TERN_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    TERN_OK = 0,

    /* caller errors */
    TERN_ERR_INVALID_ARG = -1,  /* an argument is out of range or NULL */
    TERN_ERR_NOMEM = -2,        /* the allocation hook returned NULL */
    TERN_ERR_BUFFER = -3,       /* the caller's output buffer is too small */
    TERN_ERR_STATE = -4,        /* not allowed in the object's current state */
    TERN_ERR_AGAIN = -5,        /* a queue is full: try again after the next send */
    TERN_ERR_TOO_LARGE = -6,    /* the payload does not fit the limit */
    TERN_ERR_LIMIT = -7,        /* a configured resource limit was reached */
    TERN_ERR_CRYPTO = -8,       /* the crypto library failed (should not happen) */
    TERN_ERR_NOT_FOUND = -9,    /* no such connection, key or entry */

    /* untrusted input: the packet is dropped and counted, nothing else happens */
    TERN_ERR_TRUNCATED = -20,   /* input ends before a field it announces */
    TERN_ERR_MALFORMED = -21,   /* well-sized input with an invalid value */
    TERN_ERR_VERSION = -22,     /* a protocol version this endpoint does not speak */
    TERN_ERR_AUTH = -23,        /* authentication (AEAD tag or MAC) failed */
    TERN_ERR_REPLAY = -24,      /* a packet number seen before or older than the window */
    TERN_ERR_UNKNOWN_CID = -25, /* no connection has this connection ID */
    TERN_ERR_RATE_LIMITED = -26,/* a per-source rate limit dropped it */
    TERN_ERR_TOKEN = -27,       /* a retry token that is forged, stale or for another client */
    TERN_ERR_AMPLIFICATION = -28,/* unvalidated address: the 3x send budget is spent */
    TERN_ERR_IGNORED = -29,     /* well-formed but not for us now (a late or duplicate packet) */

    /* fatal for the connection: it closes with this code */
    TERN_ERR_FATAL = -50,
    TERN_ERR_PROTOCOL = -50,        /* the peer broke the protocol */
    TERN_ERR_BAD_SERVER_KEY = -51,  /* the server does not hold the pinned public key */
    TERN_ERR_HANDSHAKE_AUTH = -52,  /* handshake replies failed authentication (key substitution?) */
    TERN_ERR_HANDSHAKE_TIMEOUT = -53,/* no handshake within the handshake timeout */
    TERN_ERR_IDLE_TIMEOUT = -54,    /* nothing heard from the peer within the idle timeout */
    TERN_ERR_STATELESS_RESET = -55, /* the peer lost the connection's state */
    TERN_ERR_PEER_CLOSED = -56,     /* the peer closed the connection (see code and reason) */
    TERN_ERR_LOCAL_CLOSED = -57,    /* this side closed the connection */
    TERN_ERR_REFUSED = -58,         /* the server refused the connection */
    TERN_ERR_NO_VERSION = -59,      /* the server speaks none of our versions */
    TERN_ERR_BUDGET = -60,          /* the peer made us hold more than conn_memory */
};

/* A short, constant English description of err ("unknown error" for unknown codes). */
const char *tern_strerror(int err);

/* Non-zero when err closes a connection. */
static inline int tern_err_is_fatal(int err)
{
    return err <= TERN_ERR_FATAL;
}

#ifdef __cplusplus
}
#endif
#endif
