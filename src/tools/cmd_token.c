/*
 * tern token: the access tokens of a ternd that requires them (ternd --token-secret FILE
 * --require-tokens ...).
 *
 *   tern token new-secret FILE            32 random bytes, 64 hex characters, mode 0600: the
 *                                         secret ternd and this command share
 *   tern token register PEER_ID|--key FILE --secret FILE [--lifetime S | --expires UNIX]
 *   tern token join GROUP --secret FILE ...
 *   tern token offer SERVICE --secret FILE ...
 *
 * A token is tern_rdv_token_make's 40 bytes (expiry, HMAC-SHA256 over the kind, the subject
 * and the expiry), printed in hex alone on its line; the tools take it with --token (REGISTER)
 * and tern chat --join-token (JOIN). The subject of a registration token is the peer ID (the
 * hash of the peer's public key: `registered as` prints it; --key derives it from a key file).
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tern/driver.h"
#include "tern/rendezvous.h"
#include "tools/tools.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tern token new-secret FILE [--force]\n"
            "       tern token register PEER_ID --secret FILE [--lifetime S | --expires UNIX]\n"
            "       tern token register --key KEYFILE --secret FILE [...]\n"
            "       tern token join GROUP --secret FILE [...]\n"
            "       tern token offer SERVICE --secret FILE [...]\n"
            "new-secret writes a fresh secret for ternd --token-secret (64 hex characters, mode\n"
            "0600). The others print a token (80 hex characters) for a peer: register for its\n"
            "peer ID (tern ping/send/recv/chat --token), join for a group (tern chat\n"
            "--join-token), offer for a service name (applications: tern_rdv_client_offer).\n"
            "  --secret FILE     the secret ternd was started with\n"
            "  --key KEYFILE     register: the peer ID of this key (tern keygen --out KEYFILE)\n"
            "  --lifetime S      valid for S seconds from now (default 86400)\n"
            "  --expires UNIX    valid until this unix time instead\n"
            "Exit: 0 done, 1 cannot read or write a file, 2 usage.\n");
}

/* Reads a secret file (tern_secretfile_read). Returns 0, or -1 after printing why. */
static int read_secret(const char *path, uint8_t secret[TERN_RDV_SECRET_LEN])
{
    int rc = tern_secretfile_read(path, secret, TERN_RDV_SECRET_LEN);
    if (rc == TERN_ERR_STATE) {
        fprintf(stderr, "tern token: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (rc != TERN_OK) {
        fprintf(stderr, "tern token: %s is not a token secret (64 hex characters: tern token "
                        "new-secret)\n",
                path);
        return -1;
    }
    return 0;
}

static int new_secret(const char *path, int force)
{
    uint8_t secret[TERN_RDV_SECRET_LEN];
    char text[2 * TERN_RDV_SECRET_LEN + 2];
    randombytes_buf(secret, sizeof(secret));
    tern_hex_encode(secret, sizeof(secret), text);
    sodium_memzero(secret, sizeof(secret));
    size_t len = strlen(text);
    text[len++] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), 0600);
    int ok = fd >= 0 && write(fd, text, len) == (ssize_t)len;
    int e = errno;
    if (fd >= 0 && close(fd) != 0) ok = 0;
    sodium_memzero(text, sizeof(text));
    if (!ok) {
        fprintf(stderr, "tern token: cannot write %s: %s%s\n", path, strerror(e),
                e == EEXIST ? " (--force to replace it)" : "");
        if (fd >= 0) unlink(path);
        return 1;
    }
    fprintf(stderr, "tern token: secret written to %s (mode 0600); start ternd with "
                    "--token-secret %s\n",
            path, path);
    return 0;
}

int cmd_token(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    if (!strcmp(what, "new-secret")) {
        const char *path = NULL;
        int force = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--force")) force = 1;
            else if (path == NULL && argv[i][0] != '-') path = argv[i];
            else path = NULL, i = argc;
        }
        if (path == NULL) {
            usage(stderr);
            return 2;
        }
        return new_secret(path, force);
    }
    uint8_t kind = !strcmp(what, "register") ? TERN_RDV_TOKEN_REGISTER
                   : !strcmp(what, "join")   ? TERN_RDV_TOKEN_JOIN
                   : !strcmp(what, "offer")  ? TERN_RDV_TOKEN_OFFER
                                             : 0;
    if (kind == 0) {
        fprintf(stderr, "tern token: unknown kind %s (new-secret, register, join, offer)\n", what);
        usage(stderr);
        return 2;
    }
    const char *subject = NULL, *secret_file = NULL, *key_file = NULL;
    uint64_t lifetime = 86400, expires = 0;
    int has_expires = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--secret") && v) {
            secret_file = v, i++;
        } else if (!strcmp(a, "--key") && v && kind == TERN_RDV_TOKEN_REGISTER) {
            key_file = v, i++;
        } else if (!strcmp(a, "--lifetime") && v) {
            bad = tools_parse_u64(v, 1, 100ull * 365 * 86400, 0, &lifetime), i++;
        } else if (!strcmp(a, "--expires") && v) {
            bad = tools_parse_u64(v, 0, UINT64_MAX / 2, 0, &expires), i++;
            has_expires = 1;
        } else if (subject == NULL && (a[0] != '-' || a[1] == '\0')) {
            subject = a;
        } else {
            bad = 1;
        }
        if (bad) return tools_bad_argument("tern token", a, v, usage);
    }
    if (secret_file == NULL || (subject == NULL) == (key_file == NULL)) {
        fprintf(stderr, "tern token: %s needs --secret FILE and %s\n", what,
                kind == TERN_RDV_TOKEN_REGISTER ? "a peer ID or --key KEYFILE"
                : kind == TERN_RDV_TOKEN_JOIN   ? "a group name"
                                                : "a service name");
        return 2;
    }
    uint8_t subj[TERN_RDV_MAX_NAME];
    size_t subj_len;
    if (kind == TERN_RDV_TOKEN_REGISTER) {
        if (key_file) {
            tern_keypair kp;
            if (tern_keyfile_read(key_file, &kp) != TERN_OK) {
                fprintf(stderr, "tern token: cannot read the key %s\n", key_file);
                return 1;
            }
            tern_peer_id(kp.pub, subj);
            tern_keypair_wipe(&kp);
        } else if (strlen(subject) != 2 * TERN_PEER_ID_LEN ||
                   tern_hex_decode(subject, subj, TERN_PEER_ID_LEN) != TERN_OK) {
            fprintf(stderr, "tern token: a peer ID is 64 hex characters (the `registered as` "
                            "line), not %s\n",
                    subject);
            return 2;
        }
        subj_len = TERN_PEER_ID_LEN;
    } else {
        subj_len = strlen(subject);
        if (subj_len == 0 || subj_len > TERN_RDV_MAX_NAME) {
            fprintf(stderr, "tern token: a %s name has 1 to %d bytes\n",
                    kind == TERN_RDV_TOKEN_JOIN ? "group" : "service", TERN_RDV_MAX_NAME);
            return 2;
        }
        memcpy(subj, subject, subj_len);
    }
    uint8_t secret[TERN_RDV_SECRET_LEN];
    if (read_secret(secret_file, secret) != 0) return 1;
    if (!has_expires) expires = (uint64_t)time(NULL) + lifetime;
    uint8_t token[TERN_RDV_TOKEN_LEN];
    int rc = tern_rdv_token_make(secret, kind, subj, subj_len, expires, token);
    sodium_memzero(secret, sizeof(secret));
    if (rc != TERN_OK) {
        fprintf(stderr, "tern token: %s\n", tern_strerror(rc));
        return 2;
    }
    char hex[2 * TERN_RDV_TOKEN_LEN + 1];
    tern_hex_encode(token, sizeof(token), hex);
    printf("%s\n", hex);
    return 0;
}
