/* tcpxfer: the TCP peer of bench/media/files.sh. One file over one TCP connection with a chosen
 * congestion control, verified byte for byte by the receiver.
 *
 *   tcpxfer recv PORT FILE        listens on PORT, accepts one connection, reads an 8-byte
 *                                 big-endian length and that many bytes, compares them with FILE
 *                                 (the same file the sender reads: both ends share a filesystem
 *                                 in the netlab namespaces), answers one byte and prints
 *                                 "tcpxfer: N bytes verified" (exit 0) or a mismatch (exit 1).
 *   tcpxfer send HOST PORT FILE CC  connects (retrying for 5 s while the receiver starts), sets
 *                                 TCP_CONGESTION to CC (bbr, cubic, ...), sends the length and the
 *                                 file, then waits for the receiver's byte, so the sender's exit
 *                                 is also after the verified end.
 *
 * The wall time is measured by the script (start of the sender to the receiver's exit). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what)
{
    fprintf(stderr, "tcpxfer: %s: %s\n", what, strerror(errno));
    return 2;
}

/* map_file: maps PATH read-only; sets *len. NULL (errno set) on failure. */
static const unsigned char *map_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) return NULL;
    *len = (size_t)st.st_size;
    void *p = *len ? mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0) : (void *)"";
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

static int read_full(int fd, void *buf, size_t n)
{
    unsigned char *b = buf;
    while (n > 0) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    const unsigned char *b = buf;
    while (n > 0) {
        ssize_t r = write(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int do_recv(const char *port, const char *path)
{
    size_t len;
    const unsigned char *want = map_file(path, &len);
    if (!want) return die(path);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0)
        return die("listen");
    int s = accept(ls, NULL, NULL);
    if (s < 0) return die("accept");
    unsigned char hdr[8];
    if (read_full(s, hdr, 8) < 0) return die("length");
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n = n << 8 | hdr[i];
    if (n != len) {
        fprintf(stderr, "tcpxfer: length %llu, file has %zu\n", (unsigned long long)n, len);
        return 1;
    }
    static unsigned char buf[1 << 16];
    size_t got = 0;
    while (got < len) {
        size_t want_n = len - got < sizeof(buf) ? len - got : sizeof(buf);
        ssize_t r = read(s, buf, want_n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            fprintf(stderr, "tcpxfer: connection ended after %zu of %zu bytes\n", got, len);
            return 1;
        }
        if (memcmp(buf, want + got, (size_t)r) != 0) {
            fprintf(stderr, "tcpxfer: bytes differ near offset %zu\n", got);
            return 1;
        }
        got += (size_t)r;
    }
    unsigned char ok = 1;
    if (write_full(s, &ok, 1) < 0) return die("answer");
    printf("tcpxfer: %zu bytes verified\n", got);
    close(s);
    close(ls);
    return 0;
}

static int do_send(const char *host, const char *port, const char *path, const char *cc)
{
    size_t len;
    const unsigned char *data = map_file(path, &len);
    if (!data) return die(path);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "tcpxfer: cannot resolve %s\n", host);
        return 2;
    }
    int s = -1;
    for (int tries = 0; tries < 100; tries++) { /* the receiver may still be starting */
        s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) return die("socket");
        if (setsockopt(s, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)strlen(cc)) < 0)
            return die("TCP_CONGESTION");
        if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0) break;
        close(s);
        s = -1;
        nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
    }
    freeaddrinfo(ai);
    if (s < 0) return die("connect");
    unsigned char hdr[8];
    for (int i = 0; i < 8; i++)
        hdr[i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    if (write_full(s, hdr, 8) < 0 || write_full(s, data, len) < 0) return die("send");
    unsigned char ok;
    if (read_full(s, &ok, 1) < 0 || ok != 1) {
        fprintf(stderr, "tcpxfer: no verification from the receiver\n");
        return 1;
    }
    close(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "recv") == 0) return do_recv(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "send") == 0)
        return do_send(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr, "usage: tcpxfer recv PORT FILE | tcpxfer send HOST PORT FILE CC\n");
    return 2;
}
