/*
 * The OpenSSL side of the TLS stream transport: one server context for the TLS listeners and one
 * client context for outgoing TLS streams, both TLS 1.3 only.
 *
 * TLS here is a disguise and a second envelope, not the authentication: every tern packet inside
 * is protected by the tern handshake, which authenticates the server by the public key the
 * client pinned (docs/protocol.md, section 2). So the client does not verify the server's
 * certificate (SSL_VERIFY_NONE), and a server with no certificate files makes a self-signed one
 * in memory at start (an EC P-256 key, valid for a year from an hour ago, subject CN "tern"):
 * enough for tests and for networks that only want to see a TLS handshake on port 443. A
 * server that must look like an ordinary web site is given a real certificate and key.
 * Session tickets are off (a stream lives as long as the connection that uses it). TLS reads and
 * writes its socket through a BIO of ours that never raises SIGPIPE (drv_tls_attach).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "driver/stream.h"

const char *drv_tls_errstr(char *buf, size_t len)
{
    unsigned long first = ERR_get_error(); /* the oldest error is usually the root cause */
    while (ERR_get_error() != 0) {
    }
    if (len == 0) return buf;
    buf[0] = '\0';
    if (first != 0) ERR_error_string_n(first, buf, len);
    return buf;
}

static SSL_CTX *ctx_new(const SSL_METHOD *m)
{
    SSL_CTX *ctx = SSL_CTX_new(m);
    if (ctx == NULL) return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* the write buffer moves (it is compacted) and grows between retries of one SSL_write */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* A self-signed certificate for key: CN "tern", a random serial, one year. */
static X509 *self_signed(EVP_PKEY *key)
{
    X509 *x = X509_new();
    if (x == NULL) return NULL;
    uint8_t serial[16];
    BIGNUM *bn = NULL;
    int ok = X509_set_version(x, 2) == 1 && RAND_bytes(serial, sizeof(serial)) == 1;
    if (ok) {
        serial[0] &= 0x7f; /* positive */
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    }
    BN_free(bn);
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600) != NULL &&
         X509_set_pubkey(x, key) == 1;
    X509_NAME *name = ok ? X509_get_subject_name(x) : NULL;
    ok = ok && name != NULL &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"tern", -1,
                                    -1, 0) == 1 &&
         X509_set_issuer_name(x, name) == 1 && X509_sign(x, key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

void *drv_tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_server_method());
    if (ctx == NULL) {
        char e[128];
        snprintf(err, errlen, "TLS: cannot make a context: %s", drv_tls_errstr(e, sizeof(e)));
        return NULL;
    }
    SSL_CTX_set_num_tickets(ctx, 0);
    if (cert_file != NULL || key_file != NULL) {
        if (cert_file == NULL || key_file == NULL) {
            snprintf(err, errlen, "TLS: a certificate needs its key and a key its certificate");
            goto fail;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
            char e[128];
            snprintf(err, errlen, "TLS: cannot use certificate %s: %s", cert_file,
                     drv_tls_errstr(e, sizeof(e)));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            char e[128];
            snprintf(err, errlen, "TLS: cannot use key %s with %s: %s", key_file, cert_file,
                     drv_tls_errstr(e, sizeof(e)));
            goto fail;
        }
        return ctx;
    }
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = key ? self_signed(key) : NULL;
    int ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, key) == 1;
    X509_free(x); /* the context holds its own references */
    EVP_PKEY_free(key);
    if (!ok) {
        char e[128];
        snprintf(err, errlen, "TLS: cannot make a self-signed certificate: %s",
                 drv_tls_errstr(e, sizeof(e)));
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void *drv_tls_client_ctx(char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_client_method());
    if (ctx == NULL) {
        char e[128];
        snprintf(err, errlen, "TLS: cannot make a context: %s", drv_tls_errstr(e, sizeof(e)));
        return NULL;
    }
    /* no certificate check: the tern handshake inside authenticates the server by its pinned
     * public key, whatever certificate the TLS layer shows (see the top of this file) */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

void drv_tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

/* ---------------------------------------------------------------- the socket BIO */

/* OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE on a stream the peer has
 * reset, and a library must not end its application for that (nor change its signal handling).
 * This BIO is the same over send(MSG_NOSIGNAL) and recv; its data is the descriptor. */
static BIO_METHOD *nosig_method;
static pthread_once_t nosig_once = PTHREAD_ONCE_INIT;

static int nosig_write(BIO *b, const char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do {
        n = send(fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(b);
    return (int)n;
}

static int nosig_read(BIO *b, char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do {
        n = recv(fd, buf, (size_t)len, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(b);
    return (int)n;
}

static long nosig_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* nothing buffered here; no other control applies */
}

static int nosig_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void nosig_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "tern stream socket");
    if (m == NULL) return;
    if (BIO_meth_set_write(m, nosig_write) != 1 || BIO_meth_set_read(m, nosig_read) != 1 ||
        BIO_meth_set_ctrl(m, nosig_ctrl) != 1 || BIO_meth_set_create(m, nosig_create) != 1) {
        BIO_meth_free(m);
        return;
    }
    nosig_method = m; /* kept for the life of the process, shared by every driver */
}

int drv_tls_attach(void *ssl, int fd)
{
    (void)pthread_once(&nosig_once, nosig_make);
    if (nosig_method == NULL) return -1;
    BIO *b = BIO_new(nosig_method);
    if (b == NULL) return -1;
    BIO_set_data(b, (void *)(intptr_t)fd);
    SSL_set_bio(ssl, b, b); /* one reference, owned by ssl from here */
    return 0;
}
