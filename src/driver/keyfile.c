/*
 * Long-term key files: the private key as 64 lower-case hex characters and a newline, nothing
 * else, in a file created with mode 0600 (written to a temporary name in the same directory and
 * renamed over the target, so a reader never sees half a key and an old file's looser mode is
 * not inherited). The public key is always derived from the private one.
 *
 * Secret files (tern_secretfile_read): a token secret in hex the same way, read by ternd and
 * tern token.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "tern/driver.h"

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int tern_keyfile_write(const char *path, const tern_keypair *kp)
{
    if (path == NULL || kp == NULL) return TERN_ERR_INVALID_ARG;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return TERN_ERR_STATE;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return TERN_ERR_STATE;
    char hex[2 * TERN_KEY_LEN + 2];
    tern_hex_encode(kp->priv, TERN_KEY_LEN, hex);
    hex[2 * TERN_KEY_LEN] = '\n';
    hex[2 * TERN_KEY_LEN + 1] = '\0';
    int bad = fchmod(fd, 0600) != 0 || write_all(fd, hex, 2 * TERN_KEY_LEN + 1) != 0 ||
              fsync(fd) != 0;
    sodium_memzero(hex, sizeof(hex));
    int e = errno;
    if (close(fd) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad && rename(tmp, path) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(tmp);
        errno = e;
        return TERN_ERR_STATE;
    }
    return TERN_OK;
}

int tern_keyfile_read(const char *path, tern_keypair *kp)
{
    if (path == NULL || kp == NULL) return TERN_ERR_INVALID_ARG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return TERN_ERR_STATE;
    char buf[256];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return TERN_ERR_STATE;
        }
        if (r == 0 || len + (size_t)r == sizeof(buf) - 1) {
            len += (size_t)r;
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    /* the key, optionally surrounded by white space */
    size_t a = 0, b = len;
    while (a < b && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\n' || buf[a] == '\r')) a++;
    while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\n' ||
                     buf[b - 1] == '\r'))
        b--;
    uint8_t priv[TERN_KEY_LEN];
    int rc = TERN_ERR_MALFORMED;
    if (b - a == 2 * TERN_KEY_LEN) {
        buf[b] = '\0';
        if (tern_hex_decode(buf + a, priv, TERN_KEY_LEN) == TERN_OK)
            rc = tern_keypair_from_private(kp, priv);
    }
    sodium_memzero(priv, sizeof(priv));
    sodium_memzero(buf, sizeof(buf));
    return rc;
}

int tern_secretfile_read(const char *path, uint8_t *secret, size_t len)
{
    enum { MAX = 64 };
    if (path == NULL || secret == NULL || len == 0 || len > MAX) return TERN_ERR_INVALID_ARG;
    FILE *f = fopen(path, "r");
    if (f == NULL) return TERN_ERR_STATE;
    char text[2 * MAX + 8];
    size_t n = fread(text, 1, 2 * len + 7, f);
    fclose(f);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ')) n--;
    text[n] = '\0';
    int rc = n == 2 * len ? tern_hex_decode(text, secret, len) : TERN_ERR_MALFORMED;
    sodium_memzero(text, sizeof(text));
    if (rc != TERN_OK) sodium_memzero(secret, len);
    return rc;
}
