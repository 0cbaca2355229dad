/*
 * tern STUN: RFC 8489 (compatible with RFC 5389 and RFC 3489 clients) and RFC 5780, sans-I/O.
 *
 * Four parts, none of which touches a socket or a clock (time is always an argument, in ns):
 *   - the codec: tern_stun_decode() validates a whole message with bounded cursors and fills a
 *     tern_stun_msg view that points into the caller's bytes; tern_stun_builder writes one;
 *   - the responder: tern_stun_server answers Binding requests statelessly (no allocation per
 *     request), counts everything it drops, and rate-limits error responses per source;
 *   - the client transaction: RFC 8489 retransmission (RTO 500 ms doubling, 7 tries, Rm = 16);
 *   - NAT behaviour discovery (RFC 5780 mapping and filtering) as a state machine.
 *
 * Errors follow tern/errors.h: TERN_ERR_TRUNCATED / TERN_ERR_MALFORMED / TERN_ERR_AUTH for bad
 * input, TERN_ERR_BUFFER for a caller buffer that is too small.
 */
#ifndef TERN_STUN_H
#define TERN_STUN_H

#include <stddef.h>
#include <stdint.h>

#include "tern/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- wire constants */

#define TERN_STUN_PORT 3478
#define TERN_STUN_MAGIC 0x2112A442u
#define TERN_STUN_HEADER_LEN 20
#define TERN_STUN_TID_LEN 12
#define TERN_STUN_MAX_MSG 2048       /* longer messages are dropped (TERN_STUN_DROP_TOO_LARGE) */
#define TERN_STUN_MAX_ATTRS 64       /* more attributes than this: dropped */
#define TERN_STUN_MAX_UNKNOWN 8      /* at most this many types listed in a 420 */
#define TERN_STUN_MAX_RESP_V4 548    /* RFC 8489 6.1: 576-byte IPv4 datagrams, minus headers */
#define TERN_STUN_MAX_RESP_V6 1232   /* 1280-byte IPv6 datagrams, minus headers */
#define TERN_STUN_FINGERPRINT_XOR 0x5354554eu

enum { TERN_STUN_METHOD_BINDING = 0x001 };

enum {
    TERN_STUN_CLASS_REQUEST = 0,
    TERN_STUN_CLASS_INDICATION = 1,
    TERN_STUN_CLASS_SUCCESS = 2,
    TERN_STUN_CLASS_ERROR = 3,
};

enum {
    TERN_STUN_ATTR_MAPPED_ADDRESS = 0x0001,
    TERN_STUN_ATTR_RESPONSE_ADDRESS = 0x0002, /* RFC 3489 only: never honoured (reflection) */
    TERN_STUN_ATTR_CHANGE_REQUEST = 0x0003,
    TERN_STUN_ATTR_SOURCE_ADDRESS = 0x0004,   /* RFC 3489 */
    TERN_STUN_ATTR_CHANGED_ADDRESS = 0x0005,  /* RFC 3489 */
    TERN_STUN_ATTR_USERNAME = 0x0006,
    TERN_STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
    TERN_STUN_ATTR_ERROR_CODE = 0x0009,
    TERN_STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
    TERN_STUN_ATTR_REALM = 0x0014,
    TERN_STUN_ATTR_NONCE = 0x0015,
    TERN_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C,
    TERN_STUN_ATTR_USERHASH = 0x001E,
    TERN_STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
    TERN_STUN_ATTR_PRIORITY = 0x0024,         /* ICE (RFC 8445), accepted and ignored */
    TERN_STUN_ATTR_USE_CANDIDATE = 0x0025,
    TERN_STUN_ATTR_PADDING = 0x0026,
    TERN_STUN_ATTR_RESPONSE_PORT = 0x0027,
    TERN_STUN_ATTR_SOFTWARE = 0x8022,
    TERN_STUN_ATTR_ALTERNATE_SERVER = 0x8023,
    TERN_STUN_ATTR_FINGERPRINT = 0x8028,
    TERN_STUN_ATTR_ICE_CONTROLLED = 0x8029,
    TERN_STUN_ATTR_ICE_CONTROLLING = 0x802A,
    TERN_STUN_ATTR_RESPONSE_ORIGIN = 0x802B,
    TERN_STUN_ATTR_OTHER_ADDRESS = 0x802C,
};

/* CHANGE-REQUEST flags */
#define TERN_STUN_CHANGE_IP 0x4u
#define TERN_STUN_CHANGE_PORT 0x2u

/* Why an input was dropped: index into tern_stun_counters.drop. */
enum {
    TERN_STUN_DROP_TRUNCATED = 0,  /* shorter than 20 bytes or than its length field */
    TERN_STUN_DROP_TOO_LARGE,      /* longer than TERN_STUN_MAX_MSG */
    TERN_STUN_DROP_BAD_HEADER,     /* top bits set, length not a multiple of 4, trailing bytes */
    TERN_STUN_DROP_NO_COOKIE,      /* no magic cookie and RFC 3489 not allowed for it */
    TERN_STUN_DROP_BAD_ATTR,       /* attribute past the end, bad value length or family */
    TERN_STUN_DROP_TOO_MANY_ATTRS, /* more than TERN_STUN_MAX_ATTRS */
    TERN_STUN_DROP_BAD_FINGERPRINT,/* FINGERPRINT wrong, or not last */
    TERN_STUN_DROP_MISPLACED,      /* an attribute after MESSAGE-INTEGRITY(-SHA256) */
    TERN_STUN_DROP_NOT_REQUEST,    /* indication, response, or a method other than Binding */
    TERN_STUN_DROP_RATE_LIMITED,   /* an error response suppressed by the per-source limit */
    TERN_STUN_DROP_OUTPUT,         /* the response would not fit (should not happen) */
    TERN_STUN_DROP_COUNT
};

/* A short name for a TERN_STUN_DROP_* reason ("truncated", ...). */
const char *tern_stun_drop_name(int reason);

/* ---------------------------------------------------------------- decoding */

/* Bits of tern_stun_msg.present */
#define TERN_STUN_HAS_MAPPED (1u << 0)
#define TERN_STUN_HAS_XOR_MAPPED (1u << 1)
#define TERN_STUN_HAS_RESPONSE_ORIGIN (1u << 2)
#define TERN_STUN_HAS_OTHER_ADDRESS (1u << 3)
#define TERN_STUN_HAS_CHANGE_REQUEST (1u << 4)
#define TERN_STUN_HAS_RESPONSE_PORT (1u << 5)
#define TERN_STUN_HAS_PADDING (1u << 6)
#define TERN_STUN_HAS_USERNAME (1u << 7)
#define TERN_STUN_HAS_SOFTWARE (1u << 8)
#define TERN_STUN_HAS_ERROR_CODE (1u << 9)
#define TERN_STUN_HAS_UNKNOWN_ATTRS (1u << 10)
#define TERN_STUN_HAS_INTEGRITY (1u << 11)
#define TERN_STUN_HAS_INTEGRITY_SHA256 (1u << 12)
#define TERN_STUN_HAS_FINGERPRINT (1u << 13)
#define TERN_STUN_HAS_SOURCE_ADDRESS (1u << 14)
#define TERN_STUN_HAS_CHANGED_ADDRESS (1u << 15)

/* A decoded message. Pointers point into the bytes given to tern_stun_decode. */
typedef struct tern_stun_msg {
    const uint8_t *raw;
    size_t len;                 /* whole message, header included */
    uint16_t method;
    uint8_t cls;                /* TERN_STUN_CLASS_* */
    uint8_t has_cookie;         /* 0: an RFC 3489 message (the cookie is part of its 128-bit ID) */
    uint8_t tid[TERN_STUN_TID_LEN];
    uint32_t present;           /* TERN_STUN_HAS_* */
    uint16_t n_attrs;
    uint8_t n_unknown;          /* unknown comprehension-required attributes (at most 8 kept) */
    uint16_t unknown[TERN_STUN_MAX_UNKNOWN];
    tern_addr mapped, xor_mapped, response_origin, other_address, source_address, changed_address;
    uint32_t change_flags;      /* TERN_STUN_CHANGE_* */
    uint16_t response_port;
    uint16_t padding_len;
    uint16_t error_code;        /* 300..699 */
    const uint8_t *reason;
    uint16_t reason_len;
    const uint8_t *username;
    uint16_t username_len;
    const uint8_t *software;
    uint16_t software_len;
    const uint8_t *unknown_attrs; /* UNKNOWN-ATTRIBUTES value in an error response */
    uint16_t unknown_attrs_len;
    uint16_t mi_off, mi256_off, mi256_len, fp_off; /* offsets of those attributes' headers */
    uint8_t drop;               /* TERN_STUN_DROP_* when tern_stun_decode failed */
} tern_stun_msg;

/* Validates and decodes one whole STUN message (exactly len bytes: a UDP payload, or one message
 * cut from a TCP stream with tern_stun_frame_len). Checks the header, every attribute's bounds and
 * value length, the position of MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT, and the FINGERPRINT's
 * CRC when present. It does not check MESSAGE-INTEGRITY: see tern_stun_check_integrity.
 * Messages without the magic cookie are decoded as RFC 3489 messages only when allow_rfc3489 is
 * set and they carry no FINGERPRINT. On failure m->drop names the reason.
 * Errors: TERN_ERR_TRUNCATED, TERN_ERR_MALFORMED, TERN_ERR_AUTH (bad FINGERPRINT),
 * TERN_ERR_INVALID_ARG. */
int tern_stun_decode(tern_stun_msg *m, const uint8_t *buf, size_t len, int allow_rfc3489);

/* For a TCP stream: the length of the message that starts at buf (header + body), or 0 when fewer
 * than 20 bytes are there yet. Errors: TERN_ERR_MALFORMED (not a STUN header), TERN_ERR_TOO_LARGE
 * (announces more than TERN_STUN_MAX_MSG). */
int tern_stun_frame_len(const uint8_t *buf, size_t len);

/* Checks MESSAGE-INTEGRITY (HMAC-SHA1) or, when present, MESSAGE-INTEGRITY-SHA256 with a
 * short-term key (the password bytes). Errors: TERN_ERR_NOT_FOUND (neither attribute),
 * TERN_ERR_AUTH (wrong MAC). */
int tern_stun_check_integrity(const tern_stun_msg *m, const uint8_t *key, size_t key_len);

/* ---------------------------------------------------------------- encoding */

typedef struct tern_stun_builder {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;                    /* first error; every later call does nothing */
    uint8_t has_cookie;
} tern_stun_builder;

/* Starts a message in buf. has_cookie = 0 writes an RFC 3489 header whose 128-bit ID is
 * cookie3489 (4 bytes) followed by tid. Errors: TERN_ERR_BUFFER (cap < 20). */
int tern_stun_build_init(tern_stun_builder *b, uint8_t *buf, size_t cap, uint16_t method,
                         uint8_t cls, const uint8_t tid[TERN_STUN_TID_LEN], int has_cookie,
                         const uint8_t *cookie3489);
/* Appends one attribute (padded to 4 bytes with zeros). Errors: TERN_ERR_BUFFER, TERN_ERR_TOO_LARGE
 * (len > 65535). */
int tern_stun_add_attr(tern_stun_builder *b, uint16_t type, const void *value, size_t len);
/* Appends an address attribute; XOR-MAPPED-ADDRESS is XORed with the cookie and ID.
 * Errors: TERN_ERR_BUFFER, TERN_ERR_INVALID_ARG (family). */
int tern_stun_add_addr(tern_stun_builder *b, uint16_t type, const tern_addr *a);
int tern_stun_add_u32(tern_stun_builder *b, uint16_t type, uint32_t v);
/* ERROR-CODE with a reason phrase (NULL: the standard one). */
int tern_stun_add_error(tern_stun_builder *b, uint16_t code, const char *reason);
int tern_stun_add_unknown(tern_stun_builder *b, const uint16_t *types, size_t n);
/* MESSAGE-INTEGRITY (HMAC-SHA1, 20 bytes) / MESSAGE-INTEGRITY-SHA256 (32 bytes) over the message
 * so far, keyed with key. */
int tern_stun_add_integrity(tern_stun_builder *b, const uint8_t *key, size_t key_len);
int tern_stun_add_integrity_sha256(tern_stun_builder *b, const uint8_t *key, size_t key_len);
/* FINGERPRINT: must be the last attribute. */
int tern_stun_add_fingerprint(tern_stun_builder *b);
/* The message's length, or the first error met. */
int tern_stun_build_finish(tern_stun_builder *b);

/* CRC-32 (ISO-HDLC, as zlib) of len bytes, continuing from crc (0 to start). */
uint32_t tern_stun_crc32(uint32_t crc, const uint8_t *p, size_t len);
/* HMAC-SHA1 of the concatenation of two pieces (either may be empty). */
void tern_stun_hmac_sha1(const uint8_t *key, size_t key_len, const uint8_t *a, size_t a_len,
                         const uint8_t *b, size_t b_len, uint8_t out[20]);

/* ---------------------------------------------------------------- responder */

typedef struct tern_stun_server_config {
    const char *software;       /* SOFTWARE value; NULL leaves it out ("tern") */
    int fingerprint;            /* add FINGERPRINT to responses to RFC 5389+ clients (1) */
    int allow_rfc3489;          /* answer requests without the magic cookie (1) */
    /* short-term credentials: when username is set every request must carry USERNAME and
     * MESSAGE-INTEGRITY(-SHA256) keyed with password, or gets a 400/401 (NULL) */
    const char *username;
    const char *password;
    /* RFC 5780: with has_alternate the server owns {primary, alternate} IP x {primary, alternate}
     * port and answers CHANGE-REQUEST; OTHER-ADDRESS is advertised (0) */
    int has_alternate;
    tern_addr primary;          /* IP1:PORT1 */
    tern_addr alternate;        /* IP2:PORT2 (same family as primary) */
    uint32_t error_rate;        /* error responses per second per source address (an IPv4
                                   address or an IPv6 /64; 20; 0: no limit) */
    uint32_t error_burst;       /* bucket depth (40) */
} tern_stun_server_config;

void tern_stun_server_config_default(tern_stun_server_config *cfg);

typedef struct tern_stun_counters {
    uint64_t rx;                /* messages handed to tern_stun_server_respond */
    uint64_t tx_success, tx_error;
    uint64_t tx_rfc3489;        /* of which answered to cookie-less clients */
    uint64_t change_requests;   /* answered from a changed address or port */
    uint64_t drop[TERN_STUN_DROP_COUNT];
} tern_stun_counters;

#define TERN_STUN_RL_SLOTS 1024 /* sources whose error rate is tracked at once */
#define TERN_STUN_RL_WORDS (8192 + 64) /* room for that table (checked by tern_stun_server_init) */

/* One responder; give each worker thread its own (no locks, no allocation). It holds its
 * per-source table of error-response buckets (the library's per-source limiter, which points
 * into the responder): do not copy or move a responder once initialised (initialising it again
 * is fine). */
typedef struct tern_stun_server {
    tern_stun_server_config cfg;
    size_t software_len, username_len, password_len;
    tern_stun_counters counters;
    uint64_t rl_[TERN_STUN_RL_WORDS]; /* internal: the error-response limiter and its table */
} tern_stun_server;

/* Copies cfg (its strings must outlive the server). Errors: TERN_ERR_INVALID_ARG (alternate of
 * another family than primary, strings longer than 763 bytes), TERN_ERR_CRYPTO (libsodium, whose
 * randomness keys the per-source table, failed to initialise). */
int tern_stun_server_init(tern_stun_server *s, const tern_stun_server_config *cfg);

/* What to send back. from is the local address to send from (it differs from the local address
 * the request came to after a CHANGE-REQUEST); to is the destination (RESPONSE-PORT may change
 * its port; never over TCP). */
typedef struct tern_stun_reply {
    tern_addr from, to;
    size_t len;
} tern_stun_reply;

/* Handles one received message: the request arrived at local from remote (over TCP when is_tcp).
 * Writes the response to out and returns its length (> 0), or a negative error when nothing must
 * be sent: the reason is counted in s->counters.drop. Never answers malformed input; answers an
 * unknown comprehension-required attribute with 420 and bad credentials with 400/401, subject to
 * the per-source error rate limit. Errors: TERN_ERR_TRUNCATED, TERN_ERR_MALFORMED, TERN_ERR_AUTH,
 * TERN_ERR_IGNORED (not a Binding request), TERN_ERR_RATE_LIMITED, TERN_ERR_BUFFER. */
int tern_stun_server_respond(tern_stun_server *s, uint64_t now, const tern_addr *local,
                             const tern_addr *remote, int is_tcp, const uint8_t *in, size_t in_len,
                             uint8_t *out, size_t out_cap, tern_stun_reply *reply);

/* ---------------------------------------------------------------- client transaction */

#define TERN_STUN_RTO_NS (500ull * TERN_NS_PER_MS)
#define TERN_STUN_RC 7
#define TERN_STUN_RM 16

typedef struct tern_stun_txn {
    uint8_t tid[TERN_STUN_TID_LEN];
    uint64_t rto_ns;            /* initial RTO (500 ms) */
    uint32_t max_tries;         /* Rc (7) */
    uint32_t last_wait_mult;    /* Rm (16) */
    uint32_t sent;              /* transmissions so far */
    uint64_t next_ns;           /* next retransmission or the give-up time */
    uint64_t cur_rto_ns;
    int state;                  /* TERN_STUN_TXN_* */
} tern_stun_txn;

enum {
    TERN_STUN_TXN_IDLE = 0,
    TERN_STUN_TXN_WAITING,      /* sent, waiting for an answer */
    TERN_STUN_TXN_DONE,         /* an answer matched */
    TERN_STUN_TXN_TIMEOUT,      /* Rc transmissions and Rm x RTO without an answer */
};

/* Starts a transaction with the given ID and RFC 8489 defaults; the caller sends the request at
 * now. rto_ns 0 means 500 ms; max_tries 0 means 7. */
void tern_stun_txn_start(tern_stun_txn *t, uint64_t now, const uint8_t tid[TERN_STUN_TID_LEN],
                         uint64_t rto_ns, uint32_t max_tries);
/* When tern_stun_txn_expire must next run; TERN_TIME_NEVER when the transaction is over. */
uint64_t tern_stun_txn_deadline(const tern_stun_txn *t);
/* Runs the timer: returns 1 when the request must be sent again now, 0 when nothing is due,
 * TERN_ERR_HANDSHAKE_TIMEOUT when the transaction gave up. */
int tern_stun_txn_expire(tern_stun_txn *t, uint64_t now);
/* Offers a received message: returns TERN_OK and fills m when it is the (success or error)
 * response to this transaction; TERN_ERR_IGNORED when it is for another transaction or not a
 * response; decode errors otherwise. */
int tern_stun_txn_recv(tern_stun_txn *t, const uint8_t *buf, size_t len, tern_stun_msg *m);

/* Writes a Binding request with the given ID (flags: TERN_STUN_CHANGE_* for CHANGE-REQUEST, 0 for
 * none; software may be NULL; FINGERPRINT always). Returns its length or TERN_ERR_BUFFER. */
int tern_stun_binding_request(uint8_t *buf, size_t cap, const uint8_t tid[TERN_STUN_TID_LEN],
                              uint32_t change_flags, const char *software);

/* ---------------------------------------------------------------- RFC 5780 NAT discovery */

enum {
    TERN_STUN_NAT_UNKNOWN = 0,
    TERN_STUN_NAT_NONE,                 /* mapping: no NAT (mapped == local address) */
    TERN_STUN_NAT_ENDPOINT_INDEPENDENT,
    TERN_STUN_NAT_ADDRESS_DEPENDENT,
    TERN_STUN_NAT_ADDRESS_PORT_DEPENDENT,
};

/* One Binding transaction the caller must run: send req to dest, feed replies and timers. */
typedef struct tern_stun_nat {
    int step;                   /* internal */
    int done;
    int error;                  /* < 0: the server is unreachable or lacks RFC 5780 */
    tern_addr local;            /* the client's socket address (for "no NAT") */
    tern_addr server;           /* primary address */
    tern_addr other;            /* OTHER-ADDRESS from test I */
    tern_addr mapped[3];        /* mapped address from mapping tests I, II, III */
    int mapping, filtering;     /* TERN_STUN_NAT_* */
    int filtering_phase;        /* set when the filtering tests begin: a driver should send them
                                   from a fresh socket, since the mapping tests opened filters */
    tern_stun_txn txn;
    tern_addr dest;             /* where the current request goes */
    uint32_t change_flags;      /* its CHANGE-REQUEST */
    uint64_t rto_ns;
    uint32_t max_tries;
    uint32_t tid_seq;
    uint8_t tid_base[8];
} tern_stun_nat;

/* Starts discovery against server from a socket bound to local (tid_seed: 8 random bytes).
 * rto_ns/max_tries as for tern_stun_txn_start (filtering tests expect timeouts, so a shorter
 * RTO makes them quicker). */
void tern_stun_nat_start(tern_stun_nat *n, uint64_t now, const tern_addr *local,
                         const tern_addr *server, const uint8_t tid_seed[8], uint64_t rto_ns,
                         uint32_t max_tries);
/* When the current request must be (re)sent, writes it to buf and its destination to dest and
 * returns its length; returns 0 when nothing is to be sent now. Errors: TERN_ERR_BUFFER. */
int tern_stun_nat_poll(tern_stun_nat *n, uint64_t now, uint8_t *buf, size_t cap, tern_addr *dest);
/* Feeds a received datagram (from anywhere). Returns TERN_OK when it advanced the discovery,
 * TERN_ERR_IGNORED otherwise. */
int tern_stun_nat_recv(tern_stun_nat *n, uint64_t now, const uint8_t *buf, size_t len);
/* The next time tern_stun_nat_poll must run; TERN_TIME_NEVER when done. */
uint64_t tern_stun_nat_deadline(const tern_stun_nat *n);
/* "endpoint-independent", "address-dependent", "address and port-dependent", "no NAT", "unknown" */
const char *tern_stun_nat_name(int behaviour);

#ifdef __cplusplus
}
#endif
#endif
