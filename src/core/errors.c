/* tern_strerror: one English phrase per TERN_ERR_* code. */
#include "tern/errors.h"

const char *tern_strerror(int err)
{
    switch (err) {
    case TERN_OK: return "success";
    case TERN_ERR_INVALID_ARG: return "invalid argument";
    case TERN_ERR_NOMEM: return "out of memory";
    case TERN_ERR_BUFFER: return "output buffer too small";
    case TERN_ERR_STATE: return "not allowed in the current state";
    case TERN_ERR_AGAIN: return "queue full, try again later";
    case TERN_ERR_TOO_LARGE: return "payload too large";
    case TERN_ERR_LIMIT: return "resource limit reached";
    case TERN_ERR_CRYPTO: return "crypto library failure";
    case TERN_ERR_NOT_FOUND: return "not found";
    case TERN_ERR_TRUNCATED: return "truncated input";
    case TERN_ERR_MALFORMED: return "malformed input";
    case TERN_ERR_VERSION: return "unsupported protocol version";
    case TERN_ERR_AUTH: return "authentication failed";
    case TERN_ERR_REPLAY: return "replayed or too old packet";
    case TERN_ERR_UNKNOWN_CID: return "unknown connection ID";
    case TERN_ERR_RATE_LIMITED: return "rate limited";
    case TERN_ERR_TOKEN: return "invalid or expired retry token";
    case TERN_ERR_AMPLIFICATION: return "amplification limit reached for unvalidated address";
    case TERN_ERR_IGNORED: return "packet ignored";
    case TERN_ERR_PROTOCOL: return "protocol violation by the peer";
    case TERN_ERR_BAD_SERVER_KEY: return "server's public key does not match the pinned key";
    case TERN_ERR_HANDSHAKE_AUTH: return "handshake failed authentication (key substitution?)";
    case TERN_ERR_HANDSHAKE_TIMEOUT: return "handshake timed out";
    case TERN_ERR_IDLE_TIMEOUT: return "idle timeout";
    case TERN_ERR_STATELESS_RESET: return "peer reset the connection (state lost)";
    case TERN_ERR_PEER_CLOSED: return "closed by peer";
    case TERN_ERR_LOCAL_CLOSED: return "closed locally";
    case TERN_ERR_REFUSED: return "connection refused by server";
    case TERN_ERR_NO_VERSION: return "no common protocol version";
    case TERN_ERR_BUDGET: return "peer exceeded its memory budget";
    default: return "unknown error";
    }
}
