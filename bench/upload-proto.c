// bench/upload-proto.c: an upload server reduced to its loop, for
// bench/upload (UPLOAD_PROTO=1), to measure what ferryd's upload costs
// beside the same work written plainly, and what the alternatives would
// give (issue 22). It speaks just enough of ferry's line protocol for
// `ferryload xfer --proto line --op put` (any AUTH is accepted), one
// client at a time, on 127.0.0.1:PORT, writing DIR/.tmp-NAME and renaming
// it to DIR/NAME as ferryd does. Not part of ferryd; a measuring tool.
//
//   cc -O2 -o upload-proto upload-proto.c -luring -lcrypto
//   (Debian: liburing-dev, libssl-dev)
//   upload-proto PORT DIR MODE [CHUNK_KIB]
//
// MODE, each reading CHUNK_KIB (default 128) per recv():
//   sync    recv, SHA-256 (OpenSSL, SHA-NI where the CPU has it), write:
//           ferryd's loop
//   nohash  recv, write: what a server that does not hash (vsftpd) does
//   falloc  sync, with the file's size fallocate()d first
//   uring   recv, SHA-256, then the write handed to io_uring with
//           IOSQE_ASYNC, so a kernel worker thread of the process copies
//           into the page cache while the main thread hashes the next
//           chunk (4 buffers in turn)
//   alg     splice socket -> pipe, tee to an AF_ALG sha256 socket, splice
//           pipe -> file: no copy to user space (needs the kernel's
//           CONFIG_CRYPTO_USER_API_HASH)
// Each upload prints a line on stderr: the rate, the process's CPU per
// MB and the main thread's.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/if_alg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *m) { perror(m); exit(1); }

static int readline(int fd, char *buf, int max) {
    int n = 0;
    while (n < max - 1) {
        ssize_t r = recv(fd, buf + n, 1, 0);
        if (r <= 0) return -1;
        if (buf[n] == '\n') { buf[n] = 0; return n; }
        n++;
    }
    return -1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static double cpu(int who) {
    struct rusage u;
    getrusage(who, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage\n"); return 2; }
    int port = atoi(argv[1]);
    const char *dir = argv[2], *mode = argv[3];
    size_t chunk = (argc > 4 ? atoi(argv[4]) : 128) * 1024;
    int depth = 4;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (void *)&a, sizeof a) || listen(ls, 16)) die("listen");
    char **bufs = calloc(depth, sizeof *bufs);
    for (int i = 0; i < depth; i++) bufs[i] = aligned_alloc(4096, chunk);
    struct io_uring ring;
    if (!strcmp(mode, "uring") && io_uring_queue_init(depth * 2, &ring, 0)) die("uring");
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char line[512];
        dprintf(c, "220 proto\n");
        if (readline(c, line, sizeof line) < 0) { close(c); continue; }
        dprintf(c, "230 ok\n");
        while (readline(c, line, sizeof line) >= 0) {
            unsigned long long size;
            char name[256];
            if (sscanf(line, "PUT %llu %255s", &size, name) != 2) { dprintf(c, "500 no\n"); continue; }
            char tmp[600], dst[600];
            snprintf(tmp, sizeof tmp, "%s/.tmp-%s", dir, name);
            snprintf(dst, sizeof dst, "%s/%s", dir, name);
            int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY, 0600);
            if (fd < 0) die("open");
            dprintf(c, "150 %llu\n", size);
            double t0 = now(), c0 = cpu(RUSAGE_SELF), m0 = cpu(RUSAGE_THREAD);
            SHA256_CTX sha;
            SHA256_Init(&sha);
            unsigned char md[32] = {0};
            unsigned long long left = size, off = 0;
            if (!strcmp(mode, "falloc") && fallocate(fd, 0, 0, size)) die("fallocate");
            if (!strcmp(mode, "sync") || !strcmp(mode, "nohash") || !strcmp(mode, "falloc")) {
                int hash = strcmp(mode, "nohash");
                while (left) {
                    size_t want = left < chunk ? left : chunk;
                    ssize_t n = recv(c, bufs[0], want, 0);
                    if (n <= 0) die("recv");
                    if (hash) SHA256_Update(&sha, bufs[0], n);
                    if (write(fd, bufs[0], n) != n) die("write");
                    left -= n;
                }
            } else if (!strcmp(mode, "uring")) {
                int busy[64] = {0}, inflight = 0, next = 0;
                while (left || inflight) {
                    struct io_uring_cqe *cqe;
                    // Reap what has completed; wait only when no buffer is free.
                    while ((inflight && (busy[next] || !left)) ? io_uring_wait_cqe(&ring, &cqe) == 0
                                                               : io_uring_peek_cqe(&ring, &cqe) == 0) {
                        if (cqe->res < 0) { errno = -cqe->res; die("uring write"); }
                        busy[cqe->user_data] = 0;
                        inflight--;
                        io_uring_cqe_seen(&ring, cqe);
                        if (!inflight || (!busy[next] && left)) break;
                    }
                    if (!left) continue;
                    size_t want = left < chunk ? left : chunk;
                    ssize_t n = recv(c, bufs[next], want, 0);
                    if (n <= 0) die("recv");
                    SHA256_Update(&sha, bufs[next], n);
                    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                    io_uring_prep_write(sqe, fd, bufs[next], n, off);
                    sqe->flags |= IOSQE_ASYNC;
                    sqe->user_data = next;
                    io_uring_submit(&ring);
                    busy[next] = 1;
                    inflight++;
                    off += n;
                    left -= n;
                    next = (next + 1) % depth;
                }
            } else if (!strcmp(mode, "alg")) {
                int tfm = socket(AF_ALG, SOCK_SEQPACKET, 0);
                struct sockaddr_alg sa = {.salg_family = AF_ALG, .salg_type = "hash", .salg_name = "sha256"};
                if (tfm < 0 || bind(tfm, (void *)&sa, sizeof sa)) die("af_alg");
                int op = accept(tfm, NULL, 0);
                int p1[2], p2[2];
                if (pipe(p1) || pipe(p2)) die("pipe");
                fcntl(p1[1], F_SETPIPE_SZ, (int)chunk);
                fcntl(p2[1], F_SETPIPE_SZ, (int)chunk);
                while (left) {
                    size_t want = left < chunk ? left : chunk;
                    ssize_t n = splice(c, NULL, p1[1], NULL, want, SPLICE_F_MOVE);
                    if (n <= 0) die("splice in");
                    ssize_t t = tee(p1[0], p2[1], n, 0);
                    if (t != n) die("tee");
                    for (ssize_t h = 0; h < n;) {
                        ssize_t r = splice(p2[0], NULL, op, NULL, n - h, SPLICE_F_MORE);
                        if (r <= 0) die("splice alg");
                        h += r;
                    }
                    for (ssize_t w = 0; w < n;) {
                        ssize_t r = splice(p1[0], NULL, fd, NULL, n - w, SPLICE_F_MOVE);
                        if (r <= 0) die("splice file");
                        w += r;
                    }
                    left -= n;
                }
                send(op, "", 0, 0);
                if (read(op, md, 32) != 32) die("alg read");
                close(op); close(tfm);
                close(p1[0]); close(p1[1]); close(p2[0]); close(p2[1]);
            }
            if (strcmp(mode, "alg")) SHA256_Final(md, &sha);
            if (rename(tmp, dst)) die("rename");
            close(fd);
            double t1 = now(), c1 = cpu(RUSAGE_SELF), m1 = cpu(RUSAGE_THREAD);
            fprintf(stderr, "%s\t%.0f MB/s\tcpu %.3f ms/MB\tmain %.3f ms/MB\n", mode, size / (t1 - t0) / 1e6,
                    (c1 - c0) * 1e3 / (size / 1e6), (m1 - m0) * 1e3 / (size / 1e6));
            dprintf(c, "226 stored %llu sha256=", size);
            for (int i = 0; i < 32; i++) dprintf(c, "%02x", md[i]);
            dprintf(c, "\n");
        }
        close(c);
    }
}
