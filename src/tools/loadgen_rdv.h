/*
 * `tern loadgen rdv` (cmd_loadgen_rdv.c): what its files share. The state of one run (lgr) with
 * its peers, sockets and relay pairs, and the functions each phase file offers the others:
 * loadgen_rdv_loop.c (sockets, deadlines, the event loop), loadgen_rdv_peers.c (the peers'
 * endpoints and what they do with the rendezvous messages), loadgen_rdv_relay.c (the relay
 * phase), cmd_loadgen_rdv.c (options, the register and introduce phases, the report).
 */
#ifndef TERN_TOOLS_LOADGEN_RDV_H
#define TERN_TOOLS_LOADGEN_RDV_H

#include <stdint.h>

#include "base/heap.h"
#include "tern/relay.h"
#include "tern/rendezvous.h"
#include "tern/udp.h"

#define LGR_RX_BATCH 64 /* datagrams per recvmmsg */
#define LGR_TX_BATCH 64 /* datagrams per socket queued before a sendmmsg */
#define LGR_MAX_SOCKS 1024
#define LGR_NO_PAIR UINT32_MAX
#define LGR_NO_PEER UINT32_MAX
#define INTRO_LOST_NS (5ull * TERN_NS_PER_S)
#define RELAY_SILENT_NS (200ull * TERN_NS_PER_MS) /* a pair silent this long is refilled */
#define RELAY_DRAIN_NS (300ull * TERN_NS_PER_MS)  /* after the run: what is in flight lands */
#define RELAY_SETUP_NS (5ull * TERN_NS_PER_S)     /* the pairs' introductions */

enum { P_IDLE, P_CONNECTING, P_REGISTERING, P_REGISTERED, P_FAILED };

typedef struct lgr lgr;

typedef struct rpeer {
    tern__heap_item item; /* first: the endpoint's next deadline in lgr.deadlines */
    lgr *g;
    tern_endpoint *ep;
    tern_conn *conn;
    tern_addr local;
    uint8_t pub[TERN_KEY_LEN];
    uint8_t id[TERN_PEER_ID_LEN];
    uint64_t flow;
    uint64_t sent_ns;   /* INTRODUCE in flight since */
    uint32_t target;    /* the peer asked for */
    uint32_t pair;      /* relay phase: the pair this peer is a side of, or LGR_NO_PAIR */
    uint8_t state, dirty, busy;
    uint8_t has_ch;     /* relay phase: ch is this peer's own relay channel */
    uint8_t ch[TERN_RELAY_CHANNEL_LEN];
} rpeer;

/* Relay phase: peers a and b that were introduced to each other. */
typedef struct rpair {
    uint32_t a, b;
    uint64_t last_rx;   /* when either side last received a relay datagram */
} rpair;

/* One of the S sockets (bound to 0.0.0.0, IP_PKTINFO on): a receive batch, and the datagrams
 * queued to leave from it (each from its peer's own 127.2.x.y address). */
typedef struct rsock {
    tern_udp_sock u;
    tern_udp_batch rx;
    tern_udp_batch txm; /* message arrays for sending dg (no slots) */
    size_t tn, tused;   /* datagrams queued in dg; bytes of tbuf they use */
    tern_datagram dg[LGR_TX_BATCH];
    uint8_t tbuf[LGR_TX_BATCH * TERN_MAX_DATAGRAM];
} rsock;

struct lgr {
    tern_addr server;
    uint8_t server_pub[TERN_KEY_LEN];
    uint32_t n, n_socks, n_sources, window, cwindow;
    rpeer *p;
    rsock *s;
    int epfd;
    /* deadlines */
    tern__alloc alloc; /* the heap's memory (tern_mem_default) */
    tern__heap deadlines;
    uint32_t *dirty, dirty_n;
    /* registration */
    uint32_t next_connect, connecting, registered, failed, closed;
    uint32_t *reg; /* indices of registered peers */
    /* introductions */
    int intro_on;
    uint32_t inflight;
    uint64_t intro_sent, intro_ok, intro_bad, intro_err, intro_lost, introduced, introduced_bad;
    uint64_t other_err, late;
    uint64_t with_relay; /* PEER_INFOs that carried a RELAY candidate and a CHANNEL */
    uint32_t *lat_us;
    size_t lat_n, lat_cap;
    uint64_t rng;
    /* sockets */
    uint64_t rx, tx, tx_dropped, rx_unknown;
    int no_pwait2;
    int closing; /* the run is over: closes are ours */
    /* relay phase */
    rpair *pairs;
    uint32_t n_pairs, relay_window, relay_size;
    int relay_answer;  /* answer each relay datagram received (off while draining) */
    uint64_t relay_tx, relay_tx_dropped, relay_rx, relay_rx_bytes, relay_misrouted;
    uint64_t relay_stray, relay_refills;
};

/* ternd's CPU time and memory from /proc (cmd_loadgen_rdv.c); ok = 0 when unreadable. */
typedef struct proc_sample {
    int ok;
    uint64_t cpu_ns, rss_kb, hwm_kb;
} proc_sample;
void lgr_proc_read(long pid, proc_sample *o);

/* loadgen_rdv_loop.c */
int lgr_socks_open(lgr *g);     /* the S sockets and the epoll over them; -1 (errno) on failure */
void lgr_socks_close(lgr *g);
void lgr_peer_addr(const lgr *g, uint32_t i, tern_addr *a);
void lgr_touch(rpeer *p);       /* p's endpoint has something to send: drained at the next pump */
/* Queues len bytes from local to remote on socket si; returns where to write them (in the
 * socket's buffer), flushing the socket first when it is full. */
uint8_t *lgr_queue(lgr *g, uint32_t si, const tern_addr *local, const tern_addr *remote,
                   size_t len);
void lgr_pump(lgr *g);          /* refills the windows, sends what every touched endpoint has */
void lgr_iterate(lgr *g, int max_wait_ms); /* one turn of the event loop */

/* loadgen_rdv_peers.c */
int lgr_peers_make(lgr *g);     /* the N peers' keys and endpoints; -1 on failure (printed) */
void lgr_peers_free(lgr *g);
int lgr_intro_send(lgr *g, uint32_t a, uint32_t b, uint64_t now); /* INTRODUCE a to b */
int lgr_intro_start(lgr *g, uint64_t now); /* one from a random idle peer to a random other */
void lgr_intro_done(lgr *g, rpeer *p);

/* loadgen_rdv_relay.c */
void lgr_relay_recv(lgr *g, uint32_t pi, const tern_addr *from, const uint8_t *d, size_t len,
                    uint64_t now);
int lgr_relay_phase(lgr *g, double secs, long server_pid); /* prints the 'relay' line */

#endif
