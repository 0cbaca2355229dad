/*
 * Flows and loss recovery: internal structures shared by flow.c, flow_send.c and flow_recv.c
 * (messages, fragments, reassembly, flow control, the scheduler), recovery.c (the sent-packet
 * record, ACK processing, RFC 9002 loss detection and probe timeouts, congestion control hooks)
 * and conn.c.
 *
 * A flow is one direction of messages. The sender cuts each message into fragments; every
 * fragment gets the flow's next fragment sequence number (FSN) when it is first sent, and keeps
 * it across retransmissions. Frames:
 *
 *   FLOW_DATA (0x04)    flow_id, fsn, flags (1 BEGIN of message, 2 END of message, 4 ORDERED,
 *                       8 TTL, 16 STREAM, 32 DEP), [ttl_ms if TTL], [msg_id, depends, group if
 *                       DEP], length, data. TTL (BEGIN fragments of messages
 *                       with a deadline): the time left at the receiver, i.e. the time left at
 *                       sending minus the sender's current RTT (an upper bound of the one-way
 *                       delay); the receiver drops the message rather than deliver it after
 *                       (arrival of that fragment + ttl). DEP (BEGIN fragments of an ordered
 *                       flow that uses tern_flow_send_msg): the message's ID and what it depends
 *                       on (docs/protocol.md 6.2, "Frame dependencies").
 *   FLOW_FORWARD (0x05) flow_id, fsn: every fragment below fsn was delivered or given up: stop
 *                       waiting for it (RTMFP's forward acknowledgement)
 *   MAX_FLOW (0x06)     flow_id, max_fsn: the sender may use fragment numbers below max_fsn
 *   FLOW_FIN (0x07)     flow_id, final_fsn: the flow ends at final_fsn
 *   FLOW_DATA_PART (0x08) flow_id, fsn, flags, [ttl_ms if TTL], frag_len, offset, length, data:
 *                       bytes [offset, offset+length) of fragment fsn, whose whole length is
 *                       frag_len. A lost fragment too large for the current packet size
 *                       (the path MTU dropped after it was cut) is retransmitted in parts; the
 *                       receiver holds the fragment until every byte of it came, in parts or
 *                       whole, and then treats it as if it had come in one FLOW_DATA.
 *   KEYFRAME_REQUEST (0x0f) flow_id, msg_id: the receiver skipped msg_id of the sender's flow
 *                       for a lost dependency: the sender's encoder should send a keyframe.
 *
 * The receiver keeps at most flow_window fragments per flow and max_flows flows, so its memory
 * is bounded by what it advertised whatever numbers a peer sends; a fragment beyond the window is
 * a protocol error. The sent-packet record remembers which (flow, fsn) each packet carried, so
 * a loss re-queues exactly those fragments (or gives them up, per the flow's reliability), and
 * a late ACK of a packet declared lost is detected as spurious. Forward error correction
 * (fec.c, fec.h) adds REPAIR frames as another kind of entry in the same record (ENT_REPAIR).
 */
#ifndef TERN_CORE_FLOW_H
#define TERN_CORE_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include "core/ack.h"
#include "core/cc.h"
#include "core/target_rate.h"
#include "tern/tern.h"

enum {
    TERN__FRAME_FLOW_DATA = 0x04,
    TERN__FRAME_FLOW_FORWARD = 0x05,
    TERN__FRAME_MAX_FLOW = 0x06,
    TERN__FRAME_FLOW_FIN = 0x07,
    TERN__FRAME_FLOW_DATA_PART = 0x08,
    /* 0x09-0x0e: repair (forward error correction, docs/protocol.md 6.4) */
    TERN__FRAME_KEYFRAME_REQUEST = 0x0f,
};

enum {
    TERN__FD_BEGIN = 1,
    TERN__FD_END = 2,
    TERN__FD_ORDERED = 4,
    TERN__FD_TTL = 8,
    TERN__FD_STREAM = 16,
    TERN__FD_DEP = 32,
    TERN__FD_ALL = 63,
};

/* Frame-aware delivery (tern_flow_send_msg): how far back message IDs are remembered, by the
 * sender (which messages it gave up: a dependency further back is taken as delivered) and by
 * the receiver (which messages it delivered or skipped): a fixed bitmap per flow, so a peer's
 * message IDs, however far apart, never make either side hold more. */
#define TERN__DEP_WINDOW 1024
#define TERN__NO_MSG UINT64_MAX

#define TERN__PKT_ENTRIES 10

/* ENT_REPAIR: a REPAIR frame (fec.c; fsn the group's first, part the repair's index): never
 * retransmitted, recorded so the packet counts like data */
enum { ENT_DATA = 1, ENT_FIN = 2, ENT_FORWARD = 3, ENT_MAXFLOW = 4, ENT_REPAIR = 5,
       ENT_KFREQ = 6 /* a KEYFRAME_REQUEST frame (flow_recv.c) */ };

/* forward error correction state (fec.c) */
typedef struct tern__fec_tx tern__fec_tx;
typedef struct tern__fec_rflow tern__fec_rflow;
typedef struct tern__fec_conn tern__fec_conn;

/* ---------------------------------------------------------------- sender */

typedef struct tern__msg {
    struct tern__msg *next;
    uint64_t deadline;   /* TERN_TIME_NEVER when none */
    size_t len;
    size_t cut;          /* bytes already cut into fragments */
    uint32_t live_frags; /* fragments not yet acknowledged or given up */
    uint8_t priority;
    uint8_t abandoned;
    uint8_t is_ref;      /* tern_flow_send_ref: the bytes are the application's, at ref */
    const uint8_t *ref;
    void *token;         /* handed back by on_flow_release */
    /* frame-aware delivery: the message's ID (every message queued on the flow takes the next
     * one, from 0), the ID it depends on (TERN__NO_MSG: none), the ID of the keyframe that
     * starts its group of pictures (TERN__NO_MSG: none yet), TERN_MSG_* flags, and whether its
     * BEGIN fragment carries them (DEP: queued once the flow used tern_flow_send_msg) */
    uint64_t id, dep, gop;
    uint64_t first_fsn; /* its BEGIN fragment's number, once cut */
    uint8_t mflags;
    uint8_t tagged;
    uint8_t queued;      /* on the flow's queue (head .. tail): not completely cut yet. Not
                            cut == len, which an empty message is from the start */
    uint8_t data[];      /* the copied bytes (tern_flow_send) */
} tern__msg;

enum { FRAG_NONE = 0, FRAG_INFLIGHT, FRAG_LOST, FRAG_ACKED, FRAG_GIVEN_UP };

/* The most parts a re-cut fragment is sent in (part_acked/part_lost are bit sets). */
#define TERN__FRAG_MAX_PARTS 8

typedef struct tern__frag {
    tern__msg *msg;
    uint32_t off, len;
    uint8_t state, flags;
    uint16_t retx;
    /* re-cut for a smaller path MTU (flow_send.c): sent as parts of part_size bytes (0: whole),
     * which of them were acknowledged, which wait for retransmission */
    uint16_t part_size;
    uint8_t part_acked, part_lost;
} tern__frag;

typedef struct tern__sflow {
    struct tern__sflow *next;
    uint64_t id;
    tern_flow_config cfg;
    tern__msg *head, *tail;  /* messages not yet completely cut into fragments */
    tern__frag *frags;       /* ring: fsn base .. next_fsn-1 */
    size_t cap;
    uint64_t base;           /* lowest fsn not acknowledged or given up */
    uint64_t next_fsn;
    uint64_t peer_max;       /* flow control: fsn < peer_max */
    uint64_t *lost;          /* fsns waiting for retransmission (FIFO ring) */
    size_t lost_cap, lost_head, lost_n;
    uint64_t queued_bytes;
    uint64_t uncut_bytes;    /* of them, bytes not yet cut into fragments (never sent): the
                                backlog target_rate.c samples, kept here so that it costs O(1)
                                however many messages are queued */
    uint64_t forward_sent;   /* highest FORWARD acknowledged-or-sent value */
    uint64_t base_begin;     /* the BEGIN of the message base is in (what FORWARD says when
                                the base stops inside a message: flow_send.c forward_point) */
    int forward_pending;
    int closing, fin_pending, fin_acked;
    uint64_t final_fsn;
    /* write-side events (flow_events.c): cumulative counts, what on_flow_acked last reported,
     * referenced messages that ended and wait for on_flow_release, and the size of the last
     * send refused with TERN_ERR_AGAIN (for on_flow_writable) */
    uint64_t acked_bytes, acked_msgs, given_up_msgs;
    uint64_t rep_bytes, rep_msgs, rep_given_up;
    tern__msg *rel_head, *rel_tail;
    size_t blocked_len;
    uint8_t blocked, blocked_ref;
    uint8_t freeing;         /* tern__sflow_free runs: messages end undelivered */
    /* frame-aware delivery (flow_send.c): the next message ID; the current group of pictures
     * (its keyframe's ID, TERN__NO_MSG before the first) and whether a message of it was given
     * up (then a TERN_MSG_GOP message is refused until the next keyframe); messages given up,
     * one bit per ID for the last TERN__DEP_WINDOW IDs (bit id % window); whether the flow
     * tags its messages (DEP) and uses dependencies (keyframe requests); a keyframe request
     * owed to the application (on_keyframe_request, flow_events.c: held until an RTT after
     * the last report, dropped once a keyframe is queued after it), the group it was owed for,
     * and when the last was reported (at most one per RTT) */
    uint64_t next_msg_id;
    uint64_t gop_id;
    uint8_t gop_broken, tag_ids, deps_used, kf_pending, kf_reported;
    uint64_t kf_gop, kf_last;
    uint64_t dead[TERN__DEP_WINDOW / 64];
    tern__fec_tx *fec;       /* the group being filled and repair waiting (fec.c; NULL: none) */
} tern__sflow;

/* ---------------------------------------------------------------- receiver */

typedef struct tern__rfrag {
    uint8_t *data;
    uint64_t deadline; /* BEGIN fragments with a TTL: deliver no later (0: none) */
    uint16_t len;      /* at most TERN_MAX_DATAGRAM */
    uint16_t got;      /* fragments arriving in parts (FLOW_DATA_PART): bytes received so far */
    uint8_t flags, present, done;
    uint8_t parts;     /* data holds len bytes then a bitmap of the bytes received (parts) */
    /* DEP (BEGIN fragments): the message's ID, the ID it depends on and its keyframe's ID
     * (TERN__NO_MSG: none; a keyframe names itself) */
    uint64_t mid, dep, gop;
} tern__rfrag;

typedef struct tern__rflow {
    struct tern__rflow *next;
    uint64_t id;
    tern__rfrag *slots;   /* ring for fsn base .. base+slots_cap-1; grows up to window */
    uint64_t slots_cap;
    uint64_t base;        /* every fsn below was delivered or skipped */
    uint64_t window;
    uint64_t advertised;  /* max_fsn told to the peer */
    int max_pending;
    int paused;
    int ordered;
    int stream;       /* deliver bytes as they arrive in order */
    uint64_t scan, scan_base; /* [base, scan) is known present, one message, no END yet */
    uint64_t final_fsn;   /* UINT64_MAX until FLOW_FIN */
    uint64_t buffered;    /* bytes held */
    int finished;
    /* a message bigger than a quarter of the window is assembled here, in order, as its
     * fragments reach the base, so the window keeps moving (messages up to TERN__MAX_MESSAGE) */
    uint8_t *pbuf;
    size_t plen, pcap;
    uint64_t pdeadline;
    int pactive;
    uint64_t pmid, pdep, pgop; /* the assembled message's DEP fields (pflags & DEP) */
    uint8_t pdepf;
    /* frame-aware delivery (flow_recv.c), ordered flows whose messages carry IDs: the next ID
     * expected (TERN__NO_MSG until the first), which of the last TERN__DEP_WINDOW IDs were not
     * delivered (skipped, expired, or never seen: bit id % window), the highest such ID
     * (TERN__NO_MSG: none), skipped messages not yet reported (on_msg_skipped), and the
     * KEYFRAME_REQUEST owed to the peer: for which ID (the first skip; a request made again
     * an RTT later, the latest), pending, when the last one went (at most one per RTT),
     * cleared once a keyframe after it arrives */
    uint64_t next_mid, mid_base;
    uint64_t last_bad;
    uint8_t untagged; /* a message without an ID was delivered: tracking begins at the first ID */
    uint64_t untagged_run; /* messages without an ID delivered since the last one with */
    uint64_t bad[TERN__DEP_WINDOW / 64];
    uint64_t skip_first, skip_count;
    uint64_t kf_want, kf_last;
    uint8_t kf_pending, kf_sent;
    tern__fec_rflow *fec;     /* repair held and the source cache (fec.c; NULL until a REPAIR) */
} tern__rflow;

#define TERN__MAX_MESSAGE (64u << 20)      /* largest message a receiver assembles */
#define TERN__MAX_ASSEMBLY (128u << 20)    /* all messages in assembly on one connection */

/* ---------------------------------------------------------------- sent packets */

typedef struct tern__sent_entry {
    uint64_t flow_id, fsn;
    uint8_t kind;
    uint8_t part; /* ENT_DATA: 0 the whole fragment, k its part k-1 (FLOW_DATA_PART) */
    uint8_t released; /* ENT_DATA on loss: held for its group's repair, not rebuilt (fec.c) */
} tern__sent_entry;

enum { SENT_OUTSTANDING = 0, SENT_ACKED = 1, SENT_LOST = 2 };

typedef struct tern__sent {
    uint64_t pn, time;
    uint32_t bytes;
    uint8_t ack_eliciting, in_flight, state, n;
    uint8_t hs_done, ping;
    uint8_t stream;      /* sent on a stream path: the stream delivers it or closes, so the
                            loss thresholds never declare it lost (recovery.c) */
    tern__rate_snap snap;
    tern__sent_entry e[TERN__PKT_ENTRIES];
} tern__sent;

/* A packet declared lost whose record has left the ring (recovery.c): kept a while so that its
 * late ACK still counts as a spurious loss. */
#define TERN__LOST_HISTORY 16
typedef struct tern__lost_pn {
    uint64_t pn;
    uint64_t until; /* a late ACK counts until then; 0: counted already (or unused) */
} tern__lost_pn;

typedef struct tern__recovery {
    tern__sent *ring;
    size_t cap, n;           /* records for pn base .. base+n-1 */
    uint64_t base;
    uint64_t largest_acked;
    int have_largest_acked;
    uint64_t largest_acked_stream; /* the largest acknowledged packet marked stream */
    int have_stream_acked;
    uint64_t bytes_in_flight;
    uint64_t eliciting_out;  /* outstanding ack-eliciting packets (arms the probe timer) */
    uint64_t loss_time;      /* time-threshold loss timer, TERN_TIME_NEVER when none */
    uint64_t last_eliciting_time;
    uint32_t pto_count;
    uint32_t probes_pending;
    uint8_t probe_ping_only;  /* the path is silent (TERN__SILENT_PTOS): a probe is one PING */
    uint64_t recovery_start; /* congestion events for packets sent before this are ignored */
    /* loss rate over recent packets (exponential average, 1/64 per packet) */
    uint64_t loss_avg_q16;
    /* the same over about a thousand packets: the plain mean of a prior of 1% worth 128
     * packets and the packets since (loss_slow_n counts both), then, from 1024 on, an
     * exponential average of 1/1024 per packet. FEC's repair rate takes the larger of the two,
     * so that a quiet stretch between random losses (at 1%, 300 packets without one happen)
     * does not take the repair of small groups away, nor does the quiet before the first loss
     * (fec.c): a live frame that a retransmission cannot save is protected from the start,
     * and on a clean path the prior fades within a few thousand packets */
    uint64_t loss_slow_q16;
    uint32_t loss_slow_n;
    uint64_t lost_total, sent_total, spurious;
    /* packets declared lost, trimmed from the ring, for one PTO after (a ring of the newest
     * TERN__LOST_HISTORY, overwritten oldest first; no flow references: their frames were
     * requeued when they were declared lost, a late ACK only counts) */
    tern__lost_pn lost_hist[TERN__LOST_HISTORY];
    uint32_t lost_hist_next;  /* where the next one goes */
    uint32_t lost_hist_live;  /* entries that may still count (0: the ACK path skips them) */
    tern__cc cc;
    tern__pacer pacer;
    tern__rate_state rate;
    tern__ackset acks;       /* what we received, to acknowledge */
    uint64_t peer_max_ack_delay;
    uint64_t last_bw_reported, last_rtt_reported;
    uint64_t last_loss_reported_q16;
    tern__target tgt;        /* encoder feedback (target_rate.c), reset with the path */
    /* loss bursts (tern_network_info.loss_burst): the run of consecutive packet numbers
     * declared lost being counted, and the mean run length (exponential average, 1/8 per run,
     * in 1/256ths; 0 before the first run ends) */
    uint64_t burst_last_pn;
    uint32_t burst_run;
    uint32_t burst_avg_q8;
} tern__recovery;

/* A connection's flows (flow.c, flow_send.c, flow_recv.c; conn.c sets the first ids). */
typedef struct tern__flows {
    struct tern__sflow *send;
    struct tern__rflow *recv;
    size_t n_send, n_recv;
    uint64_t next_id;         /* ours: clients even, servers odd */
    uint64_t peer_next;       /* the peer's next new flow id */
    uint64_t last_give_up;    /* when a message was last given up for lack of time */
    uint64_t assembly_bytes;  /* bytes in every flow's large-message assembly buffer */
    /* memory budget (tern_settings.conn_memory): bytes held for this connection's flows and
     * datagram queue, each allocation at tern__mem_charge() of its size (tern__conn_alloc) */
    uint64_t mem;
    tern__fec_conn *fec;      /* repair held for the peer's flows, REPAIRED due (fec.c) */
    uint32_t fec_share_q16;   /* repair's share of what our FEC flows send (fec.c, 1/65536ths:
                                 exponential average over groups closed, 1/8 each) */
} tern__flows;

typedef struct tern__rtt {
    uint64_t srtt, rttvar, min, latest;
    int has_sample;
} tern__rtt;

/* A connection's loss recovery and RTT estimate (recovery.c; conn.c sets ready when
 * established). */
typedef struct tern__rec {
    tern__recovery *r;   /* allocated when established */
    int ready;
    tern__rtt rtt;
} tern__rec;

#endif
