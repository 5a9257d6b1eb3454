/* ring_bench: the C baseline for `scripts/bench ring`, using liburing directly.
 *
 * It does what the Python contenders do through ringleader.uring, with the same ring
 * flags (passed in by the caller), so the ratio measures the binding's overhead:
 *
 *   ring_bench nop <batch> <seconds> <setup_flags>
 *       NOPs, <batch> per io_uring_enter (1 = one op per enter); prints "ops <n> secs <s>".
 *   ring_bench pingpong <depth> <seconds> <setup_flags> <fd>...
 *       one socket per <fd> (fixed files; <depth> is informational), each with a multishot recv into a provided-buffer
 *       ring; every round sends 64 bytes on each and waits for all echoes; prints
 *       "ops <round trips> secs <s>".
 *   ring_bench echo <fd>...
 *       The peer: for each fd in turn read 64 bytes and write them back, until EOF.
 *
 * Not a general tool: no error recovery; any failure exits non-zero with a message.
 * Build: gcc -O2 ring_bench.c -o ring_bench -luring
 */
#include <liburing.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define NBUF 256
#define BUFSZ 4096
#define SEND_TAG (1ull << 32)

static void die(const char *what, int err)
{
    fprintf(stderr, "ring_bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void ring_init(struct io_uring *ring, unsigned entries, unsigned flags)
{
    struct io_uring_params p;
    int ret;
    memset(&p, 0, sizeof(p));
    p.flags = flags | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 8;  /* as ringleader.uring.Ring does */
    ret = io_uring_queue_init_params(entries, ring, &p);
    if (ret < 0)
        die("io_uring_queue_init_params", ret);
}

/* Harvest every ready CQE (like Ring.enter's copy-out), return how many. */
static unsigned reap(struct io_uring *ring, unsigned long long *ud, int *res, unsigned *fl, unsigned max)
{
    struct io_uring_cqe *cqes[256];
    unsigned n = io_uring_peek_batch_cqe(ring, cqes, max < 256 ? max : 256), i;
    for (i = 0; i < n; i++) {
        ud[i] = cqes[i]->user_data;
        res[i] = cqes[i]->res;
        fl[i] = cqes[i]->flags;
    }
    io_uring_cq_advance(ring, n);
    return n;
}

/* Print the result line the Python side parses, and tear the ring down. */
static int report(struct io_uring *ring, unsigned long long ops, double secs)
{
    printf("ops %llu secs %.6f\n", ops, secs);
    io_uring_queue_exit(ring);
    return 0;
}

/* A multishot recv on fixed file `slot` into buffer group 0, user_data = slot. */
static void arm_recv(struct io_uring *ring, unsigned slot)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_recv_multishot(sqe, (int)slot, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    sqe->user_data = slot;
}

static int bench_nop(unsigned batch, double secs, unsigned flags)
{
    struct io_uring ring;
    unsigned long long ud[256];
    int res[256];
    unsigned fl[256];
    unsigned long long ops = 0;
    double t0, t1, end;
    unsigned i;

    ring_init(&ring, batch < 256 ? 256 : batch, flags);
    t0 = now();
    end = t0 + secs;
    do {
        for (int k = 0; k < 64; k++) {
            unsigned got = 0;
            for (i = 0; i < batch; i++) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                io_uring_prep_nop(sqe);
                sqe->user_data = ops + i;
            }
            io_uring_submit_and_wait(&ring, batch);
            while (got < batch)
                got += reap(&ring, ud, res, fl, batch - got);
            ops += batch;
        }
        t1 = now();
    } while (t1 < end);
    return report(&ring, ops, t1 - t0);
}

static int bench_pingpong(unsigned depth, double secs, unsigned flags, int *fds)
{
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    struct io_uring_buf_reg reg;
    char *bufs, msg[MSG], scratch[BUFSZ];
    unsigned long long ud[256], rounds = 0;
    int res[256];
    unsigned fl[256], i, mask = io_uring_buf_ring_mask(NBUF);
    double t0, t1, end;
    int ret;

    memset(msg, 'p', sizeof(msg));
    ring_init(&ring, 256, flags);
    ret = io_uring_register_files(&ring, fds, depth);
    if (ret < 0)
        die("register_files", ret);
    br = mmap(NULL, NBUF * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
              MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    bufs = mmap(NULL, (size_t)NBUF * BUFSZ, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED)
        die("mmap", errno);
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)br;
    reg.ring_entries = NBUF;
    reg.bgid = 0;
    ret = io_uring_register_buf_ring(&ring, &reg, 0);
    if (ret < 0)
        die("register_buf_ring", ret);
    io_uring_buf_ring_init(br);
    for (i = 0; i < NBUF; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUFSZ, BUFSZ, i, mask, i);
    io_uring_buf_ring_advance(br, NBUF);

    for (i = 0; i < depth; i++)
        arm_recv(&ring, i);
    io_uring_submit(&ring);

    t0 = now();
    end = t0 + secs;
    do {
        for (int k = 0; k < 16; k++) {
            unsigned long need = (unsigned long)depth * MSG, sends = depth;
            for (i = 0; i < depth; i++) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                io_uring_prep_send(sqe, i, msg, MSG, MSG_NOSIGNAL);
                sqe->flags |= IOSQE_FIXED_FILE;
                sqe->user_data = SEND_TAG | i;
            }
            while (need || sends) {
                unsigned n, j;
                io_uring_submit_and_wait(&ring, 1);
                n = reap(&ring, ud, res, fl, 256);
                for (j = 0; j < n; j++) {
                    if (ud[j] & SEND_TAG) {
                        if (res[j] != MSG)
                            die("send", res[j] < 0 ? res[j] : EIO);
                        sends--;
                        continue;
                    }
                    if (res[j] > 0) {
                        unsigned bid = fl[j] >> IORING_CQE_BUFFER_SHIFT;
                        memcpy(scratch, bufs + (size_t)bid * BUFSZ, res[j]);  /* as take() */
                        io_uring_buf_ring_add(br, bufs + (size_t)bid * BUFSZ, BUFSZ, bid, mask, 0);
                        io_uring_buf_ring_advance(br, 1);
                        need -= res[j];
                    } else if (res[j] != -ENOBUFS) {
                        die("recv", res[j] ? res[j] : EPIPE);
                    }
                    if (!(fl[j] & IORING_CQE_F_MORE))  /* ran dry: re-arm */
                        arm_recv(&ring, (unsigned)ud[j]);
                }
            }
            rounds += depth;
        }
        t1 = now();
    } while (t1 < end);
    return report(&ring, rounds, t1 - t0);
}

static int echo(int n, int *fds)
{
    char buf[MSG];
    for (;;) {
        for (int i = 0; i < n; i++) {
            size_t got = 0;
            while (got < MSG) {
                ssize_t r = read(fds[i], buf + got, MSG - got);
                if (r == 0)
                    return 0;  /* the ring side is done */
                if (r < 0)
                    die("echo read", errno);
                got += (size_t)r;
            }
            if (write(fds[i], buf, MSG) != MSG)
                return 0;
        }
    }
}

int main(int argc, char **argv)
{
    int fds[256], n = 0;
    if (argc >= 5 && !strcmp(argv[1], "nop"))
        return bench_nop((unsigned)atoi(argv[2]), atof(argv[3]), (unsigned)strtoul(argv[4], NULL, 0));
    if (argc >= 6 && !strcmp(argv[1], "pingpong")) {
        for (int i = 5; i < argc && n < 256; i++)
            fds[n++] = atoi(argv[i]);
        return bench_pingpong((unsigned)n, atof(argv[3]), (unsigned)strtoul(argv[4], NULL, 0), fds);
    }
    if (argc >= 3 && !strcmp(argv[1], "echo")) {
        for (int i = 2; i < argc && n < 256; i++)
            fds[n++] = atoi(argv[i]);
        return echo(n, fds);
    }
    fprintf(stderr, "usage: ring_bench nop <batch> <seconds> <flags> | "
                    "pingpong <depth> <seconds> <flags> <fd>... | echo <fd>...\n");
    return 2;
}
