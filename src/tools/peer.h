/*
 * Peer mode of the tern command (ping/send/recv --via, chat): one driver whose endpoint is a
 * server with this peer's key, a connection to the rendezvous server (--via, --server-key) and a
 * tern_rdv_client on it. The session owns the endpoint's callbacks: what concerns the server
 * connection it handles (registration, the rendezvous messages, accepting only introduced
 * peers), everything about other connections it hands to the command's callbacks.
 */
#ifndef TERN_TOOLS_PEER_H
#define TERN_TOOLS_PEER_H

#include "tern/driver.h"
#include "tern/rendezvous.h"
#include "tools/tools.h"

typedef struct peer_opts {
    const char *via;        /* ADDR:PORT of ternd's tern listener */
    const char *server_key; /* its public key, hex */
    const char *key_file;   /* this peer's key (tern keygen); NULL: a fresh one */
    const char *bind;       /* local ADDR:PORT (default 0.0.0.0:0, or [::]:0 for an IPv6 server) */
    uint64_t timeout_ms;    /* handshakes (server and peer) */
    uint64_t idle_ms;
    const char *token;      /* --token: registration token (tern token register), hex */
    tools_transport_opts transport; /* --transport, --stream, --race-delay: how the server
                                       connection goes (a peer without UDP reaches the others
                                       through the relay over that same stream) */
} peer_opts;

/* Defaults: timeout 10000 ms, idle 30000 ms. */
void peer_opts_default(peer_opts *o);

/* When argv[*i] is one of --via, --server-key, --key, --bind, --timeout, --idle-timeout, --token,
 * --transport, --stream, --race-delay: takes it and its value (advancing *i) and returns 1; -1
 * when its value is missing or bad; 0 when it is none of them. */
int peer_parse_opt(peer_opts *o, int argc, char **argv, int *i);

/* The usage lines of those options. */
void peer_usage_opts(FILE *f);

typedef struct peer_session {
    const char *cmd;            /* "tern ping", for messages */
    tern_driver *d;
    tern_conn *srv;             /* the rendezvous server connection */
    tern_rdv_client *rdv;
    tern_driver_timer *rdv_timer;
    tern_addr server, local, public_addr;
    uint8_t id[TERN_PEER_ID_LEN];
    char id_hex[2 * TERN_PEER_ID_LEN + 1];
    char where[64];             /* the server, printed */
    uint64_t t_connect;         /* tools_now_ns() when the server connection was opened */
    tern_driver_connect_cfg srv_cfg; /* how it was opened */
    peer_opts opts;
    int registered;
    int has_token;              /* --token, decoded */
    uint8_t token[TERN_RDV_TOKEN_LEN];
    /* the command's part */
    tern_callbacks app;         /* for every connection but the server's */
    tern_rdv_client_callbacks rcb; /* on_registered is called after the "registered" line */
    void *user;
    /* the one peer of peer_session_target (link NULL: none) */
    tools_conn *link;           /* the command's: link->conn is the connection to the peer */
    uint8_t target[TERN_PEER_ID_LEN];
    char target_hex[2 * TERN_PEER_ID_LEN + 1];
    uint64_t t_intro;           /* when INTRODUCE went out */
    int target_connected;       /* the "connected to" line is out */
    /* the server connection ended (err), or could not be made, or the target cannot be reached:
     * exit code chosen, loop stopped */
    int srv_err;
    int exit_code;
} peer_session;

/* Sets up the driver, the server connection and the client. accept_any: accept every peer that
 * connects (not only introduced ones). Returns 0, or an exit code (XFER_EXIT_*) after printing
 * why. */
int peer_session_start(peer_session *ps, const char *cmd, const peer_opts *o,
                       const tern_callbacks *app, const tern_rdv_client_callbacks *rcb, void *user,
                       int accept_any);
/* For a command that talks to one peer (tern ping/send PEER_ID --via), after
 * peer_session_start: once registered the session asks the server to introduce id, and
 * link->conn becomes the connection the client opens to it (link->d the session's driver). The
 * session prints the lines scripts read (cmd_peer.c's header): "connected to <id> path
 * <direct|relayed> <addr> in <ms> ms" once it is established, "path now <direct|relayed> <addr>"
 * on each move after that, and "error: ..." when the peer is unknown, the introduction fails or
 * the connection cannot be made (exit code 1, loop stopped). The command's on_established,
 * on_message, on_rtt and on_path then hear of that connection only. */
void peer_session_target(peer_session *ps, const uint8_t id[TERN_PEER_ID_LEN], tools_conn *link);
/* After calling tern_rdv_client_* outside a driver callback: re-arm the client's timer, flush. */
void peer_session_kick(peer_session *ps);
/* Closes every connection (grace_ns at most), gives SIGINT/SIGTERM back and frees everything
 * (tools_session_close). */
void peer_session_end(peer_session *ps, uint64_t code, const char *reason, uint64_t grace_ns);

/* Parses a token (2 * TERN_RDV_TOKEN_LEN hex characters, as tern token prints it) given to
 * option opt. Returns 0, or -1 after printing why. */
int peer_parse_token(const char *cmd, const char *opt, const char *text,
                     uint8_t token[TERN_RDV_TOKEN_LEN]);
/* Parses a 64-hex-character peer ID. Returns 0, or -1 after printing why. */
int peer_parse_id(const char *cmd, const char *text, uint8_t id[TERN_PEER_ID_LEN]);
/* "direct" or "relayed", and the address, of conn's path. */
const char *peer_path_kind(tern_conn *c, char *addr, size_t addr_len, uint64_t *moves);

#endif
