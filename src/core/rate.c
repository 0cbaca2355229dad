/*
 * Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation), the measurement BBR's
 * model is built on. Every packet carries a snapshot of the connection's delivery counters taken
 * when it was sent; when it is acknowledged, the bytes delivered since that snapshot divided by
 * the longer of the send interval (how long the flight took to leave) and the ACK interval (how
 * long it took to be acknowledged) is one sample of the path's delivery rate. Taking the longer
 * of the two keeps ACK compression from inflating the sample. Of all the packets one ACK covers,
 * the most recently sent one defines the sample (its interval is the freshest).
 *
 * A sample is marked app-limited when the packet that defines it was sent while the sender had
 * run out of data: such samples may show less than the path can carry, so BBR uses them only
 * when they raise its estimate. The app-limited period ends once everything that was in flight
 * when the sender ran dry has been delivered.
 */
#include "core/cc.h"

#include <string.h>

/* Initialises the per-connection delivery state at time now. */
void tern__rate_init(tern__rate_state *r, uint64_t now)
{
    memset(r, 0, sizeof *r);
    r->delivered_time = now;
    r->first_sent_time = now;
}

/* Snapshots the delivery state into the record of a packet sent now. When nothing was in flight
 * the interval starts afresh at this packet, so an idle period is never counted as delivery
 * time. */
void tern__rate_on_sent(tern__rate_state *r, tern__rate_snap *snap, uint64_t now,
                        uint64_t bytes_in_flight)
{
    if (bytes_in_flight == 0) {
        r->first_sent_time = now;
        r->delivered_time = now;
    }
    snap->delivered = r->delivered;
    snap->delivered_time = r->delivered_time;
    snap->first_sent_time = r->first_sent_time;
    snap->sent_time = now;
    snap->is_app_limited = r->app_limited != 0;
}

/* Marks the start of an app-limited period: it lasts until what is in flight now is delivered.
 * The value is kept non-zero (at least 1) so "0" keeps meaning "not app-limited". */
void tern__rate_on_app_limited(tern__rate_state *r, uint64_t bytes_in_flight)
{
    uint64_t end = r->delivered + bytes_in_flight;
    r->app_limited = end ? end : 1;
}

/* Counts one acknowledged packet and, when it is the most recently sent of this ACK so far (the
 * largest snapshot of `delivered`, ties broken by send time), makes it the sample's reference. */
void tern__rate_on_acked(tern__rate_state *r, const tern__rate_snap *snap, uint32_t bytes,
                         uint64_t now)
{
    r->delivered += bytes;
    r->delivered_time = now;

    int newer = !r->have_sample || snap->delivered > r->prior_delivered ||
                (snap->delivered == r->prior_delivered && snap->sent_time > r->newest_sent_time);
    if (!newer) return;
    r->have_sample = 1;
    r->prior_delivered = snap->delivered;
    r->prior_time = snap->delivered_time;
    r->sample_app_limited = snap->is_app_limited;
    r->send_elapsed = snap->sent_time - snap->first_sent_time;
    r->ack_elapsed = now - snap->delivered_time;
    r->newest_sent_time = snap->sent_time;
    r->rtt_of_newest = now >= snap->sent_time ? now - snap->sent_time : 0;
    /* The next interval starts at this packet's send time. */
    r->first_sent_time = snap->sent_time;
}

/* Closes the ACK: fills rs from the packet chosen by tern__rate_on_acked and resets the per-ACK
 * fields. rs->delivery_rate is 0 when this ACK acknowledged nothing or the interval is empty. */
void tern__rate_finish(tern__rate_state *r, uint64_t now, tern__rate_sample *rs)
{
    (void)now;
    memset(rs, 0, sizeof *rs);
    /* The app-limited period is over once its bubble has been delivered. */
    if (r->app_limited && r->delivered > r->app_limited) r->app_limited = 0;
    if (!r->have_sample) return;

    rs->prior_delivered = r->prior_delivered;
    rs->delivered = r->delivered - r->prior_delivered;
    rs->interval_ns = r->send_elapsed > r->ack_elapsed ? r->send_elapsed : r->ack_elapsed;
    rs->rtt_ns = r->rtt_of_newest;
    rs->is_app_limited = r->sample_app_limited;
    if (rs->interval_ns > 0 && rs->delivered > 0)
        rs->delivery_rate =
            (uint64_t)((unsigned __int128)rs->delivered * 1000000000u / rs->interval_ns);

    r->have_sample = 0;
    r->prior_delivered = 0;
    r->prior_time = 0;
    r->send_elapsed = r->ack_elapsed = 0;
    r->newest_sent_time = 0;
    r->sample_app_limited = 0;
    r->rtt_of_newest = 0;
}
