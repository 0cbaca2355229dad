/*
 * ternd's tern service: a tern listener on the driver (tern/driver.h), with an echo service.
 *
 * One thread runs one tern_driver bound to every --tern-listen address (default 0.0.0.0:4433).
 * The long-term key comes from --key FILE (written by `tern keygen`), or is made fresh at start;
 * either way the public key is printed in hex, since clients pin it. The service accepts every
 * client that completes the handshake and echoes each datagram back on the same connection,
 * byte for byte (an echo that does not fit the connection's queue is dropped and counted: the
 * datagrams are unreliable by contract). stop() asks the driver to stop (an eventfd write), and
 * the thread then closes every connection with code 0 and reason "server shutting down",
 * waiting up to a second for the closes to go out, before the thread ends.
 *
 * When no --tern-listen was given and the default port is taken, the service prints a warning
 * and stays off, so a second ternd on one host still serves STUN; an explicit address that
 * cannot be bound is an error.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/service.h"
#include "tern/driver.h"

#define SHUTDOWN_GRACE_NS (1 * TERN_NS_PER_S)

typedef struct tern_svc {
    tern_driver *d;
    pthread_t th;
    int started;
    int run_rc, shutdown_left;
    uint64_t accepted, closed, datagrams, echo_bytes, echo_dropped;
} tern_svc;

static int on_accept(tern_conn *c, void *user)
{
    tern_svc *s = user;
    (void)c;
    s->accepted++;
    return 0;
}

static void on_datagram(tern_conn *c, const uint8_t *data, size_t len, void *user)
{
    tern_svc *s = user;
    s->datagrams++;
    if (tern_conn_send_datagram(c, tern_driver_now(s->d), data, len) == TERN_OK)
        s->echo_bytes += len;
    else
        s->echo_dropped++;
}

static void on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *user)
{
    tern_svc *s = user;
    (void)c, (void)err, (void)code, (void)reason, (void)len;
    s->closed++;
}

static void *run_thread(void *arg)
{
    tern_svc *s = arg;
    s->run_rc = tern_driver_run(s->d);
    if (s->run_rc != TERN_OK)
        fprintf(stderr, "ternd: tern: event loop failed: %s\n", strerror(errno));
    s->shutdown_left = tern_driver_shutdown(s->d, 0, "server shutting down", SHUTDOWN_GRACE_NS);
    return NULL;
}

static int load_key(const ternd_config *cfg, tern_keypair *kp)
{
    if (cfg->key_file == NULL) {
        if (tern_keypair_generate(kp) != TERN_OK) {
            fprintf(stderr, "ternd: tern: cannot generate a key\n");
            return TERN_ERR_CRYPTO;
        }
        return TERN_OK;
    }
    int rc = tern_keyfile_read(cfg->key_file, kp);
    if (rc == TERN_ERR_STATE)
        fprintf(stderr, "ternd: tern: cannot read key file %s: %s\n", cfg->key_file,
                strerror(errno));
    else if (rc != TERN_OK)
        fprintf(stderr, "ternd: tern: %s is not a key file (64 hex characters expected)\n",
                cfg->key_file);
    return rc;
}

static int start(ternd_service *svc, const ternd_config *cfg)
{
    svc->state = NULL;
    if (cfg->no_tern || cfg->stun_only) return TERN_OK;
    tern_svc *s = calloc(1, sizeof(*s));
    if (s == NULL) return TERN_ERR_NOMEM;
    svc->state = s;

    tern_driver_config dc;
    tern_driver_config_default(&dc);
    int rc = load_key(cfg, &dc.endpoint.static_key);
    if (rc != TERN_OK) return rc;
    dc.endpoint.is_server = 1;
    dc.endpoint.has_static_key = 1;
    dc.endpoint.callbacks.on_accept = on_accept;
    dc.endpoint.callbacks.on_datagram = on_datagram;
    dc.endpoint.callbacks.on_closed = on_closed;
    dc.endpoint.user_data = s;
    dc.n_listen = (size_t)cfg->n_tern_listen;
    memcpy(dc.listen, cfg->tern_listen, sizeof(cfg->tern_listen[0]) * dc.n_listen);
    rc = tern_driver_new(&dc, &s->d);
    int e = errno;
    char hex[2 * TERN_KEY_LEN + 1];
    tern_hex_encode(dc.endpoint.static_key.pub, TERN_KEY_LEN, hex);
    tern_keypair_wipe(&dc.endpoint.static_key);
    if (rc != TERN_OK) {
        char txt[64];
        static const uint8_t any4[4];
        const tern_addr *l0 = &cfg->tern_listen[0];
        int is_default = cfg->n_tern_listen == 1 && l0->family == TERN_AF_INET &&
                         l0->port == TERND_TERN_PORT && memcmp(l0->ip, any4, 4) == 0;
        if (rc == TERN_ERR_STATE && e == EADDRINUSE && is_default) {
            fprintf(stderr, "ternd: tern: %s is in use; the tern listener stays off "
                            "(--tern-listen to choose another, --no-tern to silence this)\n",
                    tern_addr_format(&cfg->tern_listen[0], txt, sizeof(txt)));
            return TERN_OK;
        }
        fprintf(stderr, "ternd: tern: cannot start the listener: %s\n",
                rc == TERN_ERR_STATE ? strerror(e) : tern_strerror(rc));
        return rc;
    }
    if (pthread_create(&s->th, NULL, run_thread, s) != 0) {
        fprintf(stderr, "ternd: tern: cannot start its thread\n");
        return TERN_ERR_STATE;
    }
    s->started = 1;
    if (!cfg->quiet) {
        for (size_t i = 0; i < tern_driver_n_sockets(s->d); i++) {
            tern_addr a;
            char txt[64];
            tern_driver_local_addr(s->d, i, &a);
            printf("ternd: tern listening on udp %s\n", tern_addr_format(&a, txt, sizeof(txt)));
        }
        printf("ternd: tern public key %s\n", hex);
        printf("ternd: tern service: echo (every datagram is sent back on its connection)\n");
        fflush(stdout);
    }
    return TERN_OK;
}

static void stop(ternd_service *svc)
{
    tern_svc *s = svc->state;
    if (s == NULL || !s->started) return;
    tern_driver_stop(s->d);
    pthread_join(s->th, NULL);
    s->started = 0;
}

static void report(ternd_service *svc, FILE *out)
{
    tern_svc *s = svc->state;
    if (s == NULL || s->d == NULL) return;
    tern_endpoint_stats es;
    tern_driver_stats ds;
    tern_endpoint_get_stats(tern_driver_endpoint(s->d), &es);
    tern_driver_get_stats(s->d, &ds);
    fprintf(out,
            "tern accepted=%llu closed=%llu datagrams=%llu echo_bytes=%llu echo_dropped=%llu "
            "closing_at_exit=%d\n",
            (unsigned long long)s->accepted, (unsigned long long)s->closed,
            (unsigned long long)s->datagrams, (unsigned long long)s->echo_bytes,
            (unsigned long long)s->echo_dropped, s->shutdown_left > 0 ? s->shutdown_left : 0);
    fprintf(out,
            "tern endpoint rx=%llu tx=%llu handshakes=%llu/%llu drop_auth=%llu "
            "drop_unknown_cid=%llu drop_rate_limited=%llu retries=%llu resets=%llu\n",
            (unsigned long long)es.rx_packets, (unsigned long long)es.tx_packets,
            (unsigned long long)es.handshakes_completed, (unsigned long long)es.handshakes_started,
            (unsigned long long)es.drop_auth, (unsigned long long)es.drop_unknown_cid,
            (unsigned long long)es.drop_rate_limited, (unsigned long long)es.retries_sent,
            (unsigned long long)es.resets_sent);
    fprintf(out,
            "tern driver iterations=%llu rx_syscalls=%llu rx_datagrams=%llu rx_gro=%llu "
            "tx_syscalls=%llu tx_datagrams=%llu tx_gso=%llu tx_errors=%llu gso=%d gro=%d\n",
            (unsigned long long)ds.iterations, (unsigned long long)ds.rx_syscalls,
            (unsigned long long)ds.rx_datagrams, (unsigned long long)ds.rx_gro_batches,
            (unsigned long long)ds.tx_syscalls, (unsigned long long)ds.tx_datagrams,
            (unsigned long long)ds.tx_gso_msgs, (unsigned long long)ds.tx_errors, ds.gso, ds.gro);
}

static void destroy(ternd_service *svc)
{
    tern_svc *s = svc->state;
    if (s == NULL) return;
    stop(svc);
    tern_driver_del(s->d);
    free(s);
    svc->state = NULL;
}

const ternd_service ternd_tern_service = {
    .name = "tern",
    .start = start,
    .stop = stop,
    .report = report,
    .destroy = destroy,
};
