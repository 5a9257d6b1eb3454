/* C helpers compiled into ringleader.uring._liburing (cffi API mode).
 *
 * Why C: each call from Python into cffi costs ~100 ns, and the runtime's
 * hot path is "prepare an SQE" and "harvest a batch of CQEs".  Every helper
 * here does one whole step (get SQE + prep + flags + user_data, or
 * flush + wait + copy N CQEs out + advance) in a single call, and keeps the
 * ring counters (batch size, flush depth) in C so telemetry costs nothing
 * in Python.
 *
 * What this file does not do: own any policy.  It never decides what to
 * submit; it only fills SQEs it is asked to fill.  liburing 2.3 lacks a few
 * helpers the kernel supports (msg_ring SEND_FD, setup_buf_ring); those SQEs
 * are filled by hand below, following the kernel's uapi.  The ring's
 * resources (provided-buffer rings, registered files) and the opcode probe
 * are in _resources.c, compiled in after this file.
 */
#include <liburing.h>
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

#define RL_HIST 16

struct rl_stats {
    uint64_t enters;          /* io_uring_enter calls made by rl_enter/flush */
    uint64_t waits;           /* enters that blocked waiting for completions */
    uint64_t sqes_submitted;
    uint64_t cqes_reaped;
    uint64_t flushes;         /* flushes with at least one SQE pending */
    uint64_t bytes_flushed;   /* send bytes handed to the kernel */
    uint64_t cq_overflow;     /* kernel's CQ overflow counter, last seen */
    uint64_t sq_full;         /* times an SQE was not free and we flushed early */
    uint64_t wait_ns;         /* time spent blocked in the kernel */
    uint64_t batch_hist[RL_HIST];   /* CQEs per harvest: bucket 0 = 0, k = [2^(k-1), 2^k) */
    uint64_t flush_hist[RL_HIST];   /* SQEs pending at each flush */
    uint64_t flush_bytes_hist[RL_HIST]; /* send bytes pending at each flush, log2 buckets */
    uint64_t cq_backlog;      /* harvests that found CQEs parked in the kernel's overflow
                               * list (CQ ring was full; with FEAT_NODROP none are lost) */
};

struct rl_ring {
    struct io_uring ring;
    struct rl_stats st;
    uint64_t pending_bytes;
    struct __kernel_timespec *ts;  /* one per SQ slot: the kernel copies it at submit */
    unsigned sq_entries;
    unsigned setup_flags;
    unsigned features;
    int initialized;
};

struct rl_bufring {
    struct io_uring_buf_ring *br;
    char *base;
    size_t ring_bytes;
    size_t buf_bytes;
    unsigned count;
    unsigned size;
    unsigned mask;
    int bgid;
    int registered;
};

static inline unsigned rl_bucket(uint64_t v)
{
    unsigned b = 0;
    while (v && b < RL_HIST - 1) { v >>= 1; b++; }
    return b;
}

static uint64_t rl_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int rl_ring_init(struct rl_ring *r, unsigned entries, unsigned cq_entries,
                        unsigned flags, unsigned sq_idle_ms)
{
    struct io_uring_params p;
    int ret;
    memset(&p, 0, sizeof(p));
    p.flags = flags;
    if (cq_entries) {
        p.flags |= IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
    }
    if (flags & IORING_SETUP_SQPOLL)
        p.sq_thread_idle = sq_idle_ms;
    ret = io_uring_queue_init_params(entries, &r->ring, &p);
    if (ret < 0)
        return ret;
    r->sq_entries = p.sq_entries;
    r->ts = calloc(p.sq_entries, sizeof(struct __kernel_timespec));
    if (!r->ts) {
        io_uring_queue_exit(&r->ring);
        return -ENOMEM;
    }
    r->setup_flags = p.flags;
    r->features = p.features;
    r->initialized = 1;
    return 0;
}

static void rl_ring_exit(struct rl_ring *r)
{
    if (!r->initialized)
        return;
    io_uring_queue_exit(&r->ring);
    free(r->ts);
    r->ts = NULL;
    r->initialized = 0;
}

static int rl_ring_fd(struct rl_ring *r) { return r->ring.ring_fd; }
static unsigned rl_sq_ready(struct rl_ring *r) { return io_uring_sq_ready(&r->ring); }
static unsigned rl_cq_ready(struct rl_ring *r) { return io_uring_cq_ready(&r->ring); }

static void rl_note_flush(struct rl_ring *r, unsigned pending)
{
    if (!pending)
        return;
    r->st.flushes++;
    r->st.flush_hist[rl_bucket(pending)]++;
    r->st.flush_bytes_hist[rl_bucket(r->pending_bytes)]++;
    r->st.bytes_flushed += r->pending_bytes;
    r->pending_bytes = 0;
}

/* Counters after a harvest of `got` CQEs (both harvest helpers end with this). */
static inline void rl_note_harvest(struct rl_ring *r, unsigned got)
{
    r->st.cqes_reaped += got;
    r->st.batch_hist[rl_bucket(got)]++;
    if (r->ring.cq.koverflow)
        r->st.cq_overflow = *r->ring.cq.koverflow;
}

/* Submit what is queued, without waiting.  Returns SQEs submitted or -errno. */
static int rl_flush(struct rl_ring *r)
{
    unsigned pending = io_uring_sq_ready(&r->ring);
    int ret;
    if (!pending)
        return 0;
    rl_note_flush(r, pending);
    ret = io_uring_submit(&r->ring);
    r->st.enters++;
    if (ret > 0)
        r->st.sqes_submitted += (unsigned)ret;
    return ret;
}

static inline struct io_uring_sqe *rl_sqe(struct rl_ring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        /* SQ full: push the batch to the kernel now rather than failing. */
        r->st.sq_full++;
        rl_flush(r);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

static inline int rl_finish(struct io_uring_sqe *sqe, uint64_t ud, unsigned sqe_flags)
{
    sqe->user_data = ud;
    sqe->flags |= (uint8_t)sqe_flags;
    return 0;
}

#define RL_GET_SQE(r) struct io_uring_sqe *sqe = rl_sqe(r); if (!sqe) return -EBUSY

/* Flush queued SQEs, optionally wait, then copy up to max CQEs out.
 * wait_nr == 0: never block (still enters the kernel so DEFER_TASKRUN work runs).
 * timeout_ns < 0: wait without a deadline.
 * Returns the number of CQEs copied, or -errno (never -ETIME / -EINTR). */
static int rl_submit_wait(struct rl_ring *r, unsigned wait_nr, int64_t timeout_ns)
{
    struct io_uring_cqe *cqe = NULL;
    unsigned pending = io_uring_sq_ready(&r->ring);
    int ret = 0;

    rl_note_flush(r, pending);
    if (wait_nr && io_uring_cq_ready(&r->ring))
        wait_nr = 0;  /* completions already waiting: don't sleep */
    if (wait_nr == 0) {
        if (pending || (r->setup_flags & IORING_SETUP_DEFER_TASKRUN) ||
            !io_uring_cq_ready(&r->ring)) {
            ret = io_uring_submit_and_get_events(&r->ring);
            r->st.enters++;
        }
    } else {
        uint64_t t0 = rl_now_ns();
        r->st.waits++;
        if (timeout_ns < 0) {
            ret = io_uring_submit_and_wait(&r->ring, wait_nr);
        } else {
            struct __kernel_timespec ts;
            ts.tv_sec = timeout_ns / 1000000000ll;
            ts.tv_nsec = timeout_ns % 1000000000ll;
            ret = io_uring_submit_and_wait_timeout(&r->ring, &cqe, wait_nr, &ts, NULL);
        }
        r->st.enters++;
        r->st.wait_ns += rl_now_ns() - t0;
    }
    if (pending)
        r->st.sqes_submitted += pending - io_uring_sq_ready(&r->ring);
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        return ret;
    return 0;
}

static int rl_enter(struct rl_ring *r, unsigned wait_nr, int64_t timeout_ns,
                    uint64_t *ud, int32_t *res, uint32_t *flags, unsigned max)
{
    struct io_uring_cqe *cqes[256];
    unsigned got = 0, n, i;
    int ret = rl_submit_wait(r, wait_nr, timeout_ns);

    if (ret < 0)
        return ret;
    if (io_uring_cq_has_overflow(&r->ring))
        r->st.cq_backlog++;
    while (got < max) {
        unsigned want = max - got;
        if (want > 256)
            want = 256;
        n = io_uring_peek_batch_cqe(&r->ring, cqes, want);
        if (!n)
            break;
        for (i = 0; i < n; i++) {
            ud[got + i] = cqes[i]->user_data;
            res[got + i] = cqes[i]->res;
            flags[got + i] = cqes[i]->flags;
        }
        io_uring_cq_advance(&r->ring, n);
        got += n;
    }
    rl_note_harvest(r, got);
    return (int)got;
}

static void rl_bufring_recycle(struct rl_bufring *b, unsigned bid);
static char *rl_buf_addr(struct rl_bufring *b, unsigned bid);

/* Harvest for an event loop that owns one provided-buffer ring: like rl_enter's
 * copy-out, but a completion that carries a buffer (F_BUFFER) has its bytes
 * copied into arena (offs[i] = where) and the buffer handed straight back to
 * the kernel, in this same call.  This saves Python two C calls per received
 * chunk (copy out, recycle) and means no buffer is ever held across a harvest.
 * Every F_BUFFER completion on this ring must come from b.  A completion whose
 * bytes do not fit the arena stays in the CQ for the next call (arena_size must
 * be >= b->size, so each call makes progress).  *used = bytes in arena. */
static int rl_harvest_bufs(struct rl_ring *r, uint64_t *ud, int32_t *res, uint32_t *flags,
                           uint32_t *offs, unsigned max, struct rl_bufring *b, char *arena,
                           unsigned arena_size, unsigned *used_out)
{
    struct io_uring_cqe *cqes[256];
    unsigned got = 0, used = 0, n, i;
    int full = 0;

    if (io_uring_cq_has_overflow(&r->ring))
        r->st.cq_backlog++;
    while (got < max && !full) {
        unsigned want = max - got;
        if (want > 256)
            want = 256;
        n = io_uring_peek_batch_cqe(&r->ring, cqes, want);
        if (!n)
            break;
        for (i = 0; i < n; i++) {
            struct io_uring_cqe *c = cqes[i];
            uint32_t f = c->flags;
            int32_t rs = c->res;
            if (f & IORING_CQE_F_BUFFER) {
                unsigned bid = f >> IORING_CQE_BUFFER_SHIFT;
                if (rs > 0) {
                    if (used + (unsigned)rs > arena_size) {
                        full = 1;
                        break;
                    }
                    memcpy(arena + used, rl_buf_addr(b, bid), (size_t)rs);
                    offs[got + i] = used;
                    used += (unsigned)rs;
                }
                rl_bufring_recycle(b, bid);
            }
            ud[got + i] = c->user_data;
            res[got + i] = rs;
            flags[got + i] = f;
        }
        io_uring_cq_advance(&r->ring, i);
        got += i;
    }
    rl_note_harvest(r, got);
    *used_out = used;
    return (int)got;
}

/* rl_enter's submit-and-wait step followed by rl_harvest_bufs. */
static int rl_enter_bufs(struct rl_ring *r, unsigned wait_nr, int64_t timeout_ns,
                         uint64_t *ud, int32_t *res, uint32_t *flags, uint32_t *offs,
                         unsigned max, struct rl_bufring *b, char *arena,
                         unsigned arena_size, unsigned *used)
{
    int ret = rl_submit_wait(r, wait_nr, timeout_ns);
    *used = 0;
    if (ret < 0)
        return ret;
    return rl_harvest_bufs(r, ud, res, flags, offs, max, b, arena, arena_size, used);
}

/* A send on a fixed file with MSG_NOSIGNAL: the runtime's per-request send in one
 * call with no flag arithmetic in Python.  buf must stay alive until the CQE. */
static int rl_prep_send_fixed(struct rl_ring *r, int slot, const char *buf, unsigned len,
                              uint64_t ud)
{
    RL_GET_SQE(r);
    io_uring_prep_send(sqe, slot, buf, len, MSG_NOSIGNAL);
    r->pending_bytes += len;
    return rl_finish(sqe, ud, IOSQE_FIXED_FILE);
}

/* ---- operations: each fills one SQE; returns 0 or -EBUSY (SQ full) ---- */

static int rl_prep_nop(struct rl_ring *r, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_nop(sqe);
    return rl_finish(sqe, ud, sf);
}

/* n NOPs with consecutive user_data: used by the benchmark and tests. */
static int rl_prep_nops(struct rl_ring *r, unsigned n, uint64_t ud0)
{
    unsigned i;
    for (i = 0; i < n; i++) {
        RL_GET_SQE(r);
        io_uring_prep_nop(sqe);
        sqe->user_data = ud0 + i;
    }
    return 0;
}

/* mode: 0 single, 1 multishot; direct: allocate a fixed slot for the new socket */
static int rl_prep_accept(struct rl_ring *r, int fd, int multishot, int direct,
                          uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    /* Direct accepts: the kernel refuses SOCK_CLOEXEC with a file slot (-EINVAL; a fixed
     * slot has no close-on-exec anyway), and liburing 2.3's accept_direct adds 1 to the
     * index, so ALLOC must be passed as ALLOC - 1 (ALLOC itself wraps to 0 = no slot).
     * Plain accepts hand out non-blocking fds (every user of them is an event loop),
     * which saves the fcntl/ioctl per connection that would make them so. */
    if (multishot && direct)
        io_uring_prep_multishot_accept_direct(sqe, fd, NULL, NULL, 0);
    else if (multishot)
        io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    else if (direct)
        io_uring_prep_accept_direct(sqe, fd, NULL, NULL, 0, IORING_FILE_INDEX_ALLOC - 1);
    else
        io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_connect(struct rl_ring *r, int fd, const void *addr, unsigned addrlen,
                           uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)addr, (socklen_t)addrlen);
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_recv(struct rl_ring *r, int fd, void *buf, unsigned len, int msg_flags,
                        uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_recv(sqe, fd, buf, len, msg_flags);
    return rl_finish(sqe, ud, sf);
}

/* One datagram's message header: the iovec and peer address live beside the
 * msghdr so Python keeps a single cffi object alive until the completion. */
struct rl_msg {
    struct msghdr hdr;
    struct iovec iov;
    struct sockaddr_storage addr;
};

static void rl_msg_fill(struct rl_msg *m, void *buf, unsigned len, const void *addr,
                        unsigned addrlen)
{
    memset(&m->hdr, 0, sizeof(m->hdr));
    m->iov.iov_base = buf;
    m->iov.iov_len = len;
    m->hdr.msg_iov = &m->iov;
    m->hdr.msg_iovlen = 1;
    if (addr != NULL && addrlen > 0) {
        if (addrlen > sizeof(m->addr))
            addrlen = sizeof(m->addr);
        memcpy(&m->addr, addr, addrlen);
        m->hdr.msg_name = &m->addr;
        m->hdr.msg_namelen = addrlen;
    } else if (addr == NULL && addrlen > 0) {
        /* receive: room for the sender's address */
        m->hdr.msg_name = &m->addr;
        m->hdr.msg_namelen = sizeof(m->addr);
    }
}

/* recvmsg of one datagram into buf; the sender's address lands in m. */
static int rl_prep_recvmsg(struct rl_ring *r, int fd, struct rl_msg *m, void *buf, unsigned len,
                           int msg_flags, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    rl_msg_fill(m, buf, len, NULL, 1);
    io_uring_prep_recvmsg(sqe, fd, &m->hdr, msg_flags);
    return rl_finish(sqe, ud, sf);
}

/* sendmsg of one datagram to addr (addrlen 0: the connected peer). */
static int rl_prep_sendmsg(struct rl_ring *r, int fd, struct rl_msg *m, const void *buf,
                           unsigned len, const void *addr, unsigned addrlen, int msg_flags,
                           uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    rl_msg_fill(m, (void *)buf, len, addr, addrlen);
    io_uring_prep_sendmsg(sqe, fd, &m->hdr, msg_flags);
    return rl_finish(sqe, ud, sf);
}

static unsigned rl_msg_namelen(struct rl_msg *m) { return m->hdr.msg_namelen; }
static char *rl_msg_name(struct rl_msg *m) { return (char *)&m->addr; }
static int rl_msg_flags(struct rl_msg *m) { return m->hdr.msg_flags; }

/* Receive into a buffer picked by the kernel from provided-buffer group bgid. */
static int rl_prep_recv_bufsel(struct rl_ring *r, int fd, int bgid, int multishot,
                               uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    if (multishot)
        io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    else
        io_uring_prep_recv(sqe, fd, NULL, 0, 0);
    sqe->buf_group = (uint16_t)bgid;
    return rl_finish(sqe, ud, sf | IOSQE_BUFFER_SELECT);
}

static int rl_prep_send(struct rl_ring *r, int fd, const void *buf, unsigned len,
                        int msg_flags, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_send(sqe, fd, buf, len, msg_flags);
    r->pending_bytes += len;
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_send_zc(struct rl_ring *r, int fd, const void *buf, unsigned len,
                           int msg_flags, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_send_zc(sqe, fd, buf, len, msg_flags, 0);
    r->pending_bytes += len;
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_read(struct rl_ring *r, int fd, void *buf, unsigned len, uint64_t off,
                        uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_read(sqe, fd, buf, len, off);
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_write(struct rl_ring *r, int fd, const void *buf, unsigned len, uint64_t off,
                         uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_write(sqe, fd, buf, len, off);
    r->pending_bytes += len;
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_close(struct rl_ring *r, int fd, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_close(sqe, fd);
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_close_direct(struct rl_ring *r, unsigned slot, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_close_direct(sqe, slot);
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_shutdown(struct rl_ring *r, int fd, int how, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_shutdown(sqe, fd, how);
    return rl_finish(sqe, ud, sf);
}

/* A relative timeout; count > 0 also completes it after that many CQEs. */
static int rl_prep_timeout(struct rl_ring *r, int64_t ns, unsigned count, unsigned tflags,
                           uint64_t ud, unsigned sf)
{
    struct __kernel_timespec *ts;
    RL_GET_SQE(r);
    ts = &r->ts[sqe - r->ring.sq.sqes];
    ts->tv_sec = ns / 1000000000ll;
    ts->tv_nsec = ns % 1000000000ll;
    io_uring_prep_timeout(sqe, ts, count, tflags);
    return rl_finish(sqe, ud, sf);
}

/* Must directly follow an SQE that carried IOSQE_IO_LINK. */
static int rl_prep_link_timeout(struct rl_ring *r, int64_t ns, uint64_t ud, unsigned sf)
{
    struct __kernel_timespec *ts;
    RL_GET_SQE(r);
    ts = &r->ts[sqe - r->ring.sq.sqes];
    ts->tv_sec = ns / 1000000000ll;
    ts->tv_nsec = ns % 1000000000ll;
    io_uring_prep_link_timeout(sqe, ts, 0);
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_timeout_remove(struct rl_ring *r, uint64_t target, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_timeout_remove(sqe, target, 0);
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_cancel(struct rl_ring *r, uint64_t target, int cflags, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_cancel64(sqe, target, cflags);
    return rl_finish(sqe, ud, sf);
}

/* Cancel every request on fd (a fixed slot when fixed != 0). */
static int rl_prep_cancel_fd(struct rl_ring *r, int fd, int fixed, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL |
                            (fixed ? IORING_ASYNC_CANCEL_FD_FIXED : 0));
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_poll(struct rl_ring *r, int fd, unsigned mask, int multishot,
                        uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    if (multishot)
        io_uring_prep_poll_multishot(sqe, fd, mask);
    else
        io_uring_prep_poll_add(sqe, fd, mask);
    return rl_finish(sqe, ud, sf);
}

static int rl_prep_poll_remove(struct rl_ring *r, uint64_t target, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_poll_remove(sqe, target);
    return rl_finish(sqe, ud, sf);
}

/* MSG_RING data message: the target ring gets a CQE {user_data=target_ud, res=value}. */
static int rl_prep_msg_ring(struct rl_ring *r, int target_ring_fd, unsigned value,
                            uint64_t target_ud, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_msg_ring(sqe, target_ring_fd, value, target_ud, 0);
    return rl_finish(sqe, ud, sf);
}

/* MSG_RING SEND_FD: install fixed file src_slot of this ring into slot dst_slot of the
 * target ring (dst_slot == IORING_FILE_INDEX_ALLOC lets the kernel pick one; the target's
 * CQE res then carries it).  liburing 2.3 has no prep helper for this; fields per uapi. */
static int rl_prep_msg_ring_fd(struct rl_ring *r, int target_ring_fd, unsigned src_slot,
                               unsigned dst_slot, uint64_t target_ud, int skip_cqe,
                               uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    io_uring_prep_rw(IORING_OP_MSG_RING, sqe, target_ring_fd, (void *)(uintptr_t)IORING_MSG_SEND_FD,
                     0, target_ud);
    sqe->addr3 = src_slot;
    /* file_index is 1-based, except the ALLOC sentinel, which is passed as is */
    sqe->file_index = dst_slot == IORING_FILE_INDEX_ALLOC ? IORING_FILE_INDEX_ALLOC : dst_slot + 1;
    sqe->msg_ring_flags = skip_cqe ? IORING_MSG_RING_CQE_SKIP : 0;
    return rl_finish(sqe, ud, sf);
}
