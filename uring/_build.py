"""cffi build script for ``ringleader.uring._liburing`` (API mode, compiled at install).

Only declarations used by :mod:`ringleader.uring.ring` are listed; the C
helpers live in ``_helpers.c`` beside this file.  Structs the kernel owns are
opaque here: Python never reads SQE or CQE fields, the helpers do.
"""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

CDEF = r"""
#define RL_HIST 16
struct rl_stats {
    uint64_t enters;
    uint64_t waits;
    uint64_t sqes_submitted;
    uint64_t cqes_reaped;
    uint64_t flushes;
    uint64_t bytes_flushed;
    uint64_t cq_overflow;
    uint64_t sq_full;
    uint64_t wait_ns;
    uint64_t batch_hist[16];
    uint64_t flush_hist[16];
    uint64_t flush_bytes_hist[16];
    uint64_t cq_backlog;
};
struct rl_ring {
    struct rl_stats st;
    uint64_t pending_bytes;
    unsigned sq_entries;
    unsigned setup_flags;
    unsigned features;
    int initialized;
    ...;
};
struct rl_bufring {
    char *base;
    unsigned count;
    unsigned size;
    int bgid;
    int registered;
    ...;
};

#define IORING_SETUP_SQPOLL ...
#define IORING_SETUP_CQSIZE ...
#define IORING_SETUP_CLAMP ...
#define IORING_SETUP_SUBMIT_ALL ...
#define IORING_SETUP_COOP_TASKRUN ...
#define IORING_SETUP_TASKRUN_FLAG ...
#define IORING_SETUP_SINGLE_ISSUER ...
#define IORING_SETUP_DEFER_TASKRUN ...
#define IORING_FEAT_NODROP ...
#define IORING_FEAT_EXT_ARG ...
#define IORING_FEAT_FAST_POLL ...
#define IORING_FEAT_SUBMIT_STABLE ...
#define IORING_FEAT_RSRC_TAGS ...
#define IORING_FEAT_CQE_SKIP ...
#define IORING_FEAT_LINKED_FILE ...
#define IOSQE_FIXED_FILE ...
#define IOSQE_IO_LINK ...
#define IOSQE_IO_HARDLINK ...
#define IOSQE_ASYNC ...
#define IOSQE_BUFFER_SELECT ...
#define IOSQE_CQE_SKIP_SUCCESS ...
#define IORING_CQE_F_BUFFER ...
#define IORING_CQE_F_MORE ...
#define IORING_CQE_F_SOCK_NONEMPTY ...
#define IORING_CQE_F_NOTIF ...
#define MSG_TRUNC ...
#define IORING_FILE_INDEX_ALLOC ...
#define IORING_ASYNC_CANCEL_ALL ...
#define IORING_ASYNC_CANCEL_ANY ...
#define IORING_TIMEOUT_ETIME_SUCCESS ...
#define POLLIN ...
#define POLLOUT ...
#define POLLERR ...
#define POLLHUP ...
#define POLLRDHUP ...

int rl_ring_init(struct rl_ring *r, unsigned entries, unsigned cq_entries, unsigned flags,
                 unsigned sq_idle_ms);
void rl_ring_exit(struct rl_ring *r);
int rl_ring_fd(struct rl_ring *r);
unsigned rl_sq_ready(struct rl_ring *r);
unsigned rl_cq_ready(struct rl_ring *r);
int rl_flush(struct rl_ring *r);
int rl_enter(struct rl_ring *r, unsigned wait_nr, int64_t timeout_ns,
             uint64_t *ud, int32_t *res, uint32_t *flags, unsigned max);

int rl_enter_bufs(struct rl_ring *r, unsigned wait_nr, int64_t timeout_ns,
                  uint64_t *ud, int32_t *res, uint32_t *flags, uint32_t *offs, unsigned max,
                  struct rl_bufring *b, char *arena, unsigned arena_size, unsigned *used);
int rl_prep_send_fixed(struct rl_ring *r, int slot, const char *buf, unsigned len, uint64_t ud);

int rl_prep_nop(struct rl_ring *r, uint64_t ud, unsigned sf);
int rl_prep_nops(struct rl_ring *r, unsigned n, uint64_t ud0);
int rl_prep_accept(struct rl_ring *r, int fd, int multishot, int direct, uint64_t ud, unsigned sf);
int rl_prep_connect(struct rl_ring *r, int fd, const void *addr, unsigned addrlen,
                    uint64_t ud, unsigned sf);
int rl_prep_recv(struct rl_ring *r, int fd, void *buf, unsigned len, int msg_flags,
                 uint64_t ud, unsigned sf);
struct rl_msg { ...; };
int rl_prep_recvmsg(struct rl_ring *r, int fd, struct rl_msg *m, void *buf, unsigned len,
                    int msg_flags, uint64_t ud, unsigned sf);
int rl_prep_sendmsg(struct rl_ring *r, int fd, struct rl_msg *m, const void *buf, unsigned len,
                    const void *addr, unsigned addrlen, int msg_flags, uint64_t ud, unsigned sf);
unsigned rl_msg_namelen(struct rl_msg *m);
char *rl_msg_name(struct rl_msg *m);
int rl_msg_flags(struct rl_msg *m);
unsigned rl_recvmsg_out_size(void);
int rl_prep_recvmsg_multi(struct rl_ring *r, int fd, struct rl_msg *m, unsigned namelen, int bgid,
                          uint64_t ud, unsigned sf);
int rl_prep_recv_bufsel(struct rl_ring *r, int fd, int bgid, int multishot, uint64_t ud, unsigned sf);
int rl_prep_send(struct rl_ring *r, int fd, const void *buf, unsigned len, int msg_flags,
                 uint64_t ud, unsigned sf);
int rl_prep_send_zc(struct rl_ring *r, int fd, const void *buf, unsigned len, int msg_flags,
                    uint64_t ud, unsigned sf);
int rl_prep_read(struct rl_ring *r, int fd, void *buf, unsigned len, uint64_t off,
                 uint64_t ud, unsigned sf);
int rl_prep_write(struct rl_ring *r, int fd, const void *buf, unsigned len, uint64_t off,
                  uint64_t ud, unsigned sf);
int rl_prep_close(struct rl_ring *r, int fd, uint64_t ud, unsigned sf);
int rl_prep_close_direct(struct rl_ring *r, unsigned slot, uint64_t ud, unsigned sf);
int rl_prep_shutdown(struct rl_ring *r, int fd, int how, uint64_t ud, unsigned sf);
int rl_prep_timeout(struct rl_ring *r, int64_t ns, unsigned count, unsigned tflags,
                    uint64_t ud, unsigned sf);
int rl_prep_link_timeout(struct rl_ring *r, int64_t ns, uint64_t ud, unsigned sf);
int rl_prep_timeout_remove(struct rl_ring *r, uint64_t target, uint64_t ud, unsigned sf);
int rl_prep_cancel(struct rl_ring *r, uint64_t target, int cflags, uint64_t ud, unsigned sf);
int rl_prep_cancel_fd(struct rl_ring *r, int fd, int fixed, uint64_t ud, unsigned sf);
int rl_prep_poll(struct rl_ring *r, int fd, unsigned mask, int multishot, uint64_t ud, unsigned sf);
int rl_prep_poll_remove(struct rl_ring *r, uint64_t target, uint64_t ud, unsigned sf);
int rl_prep_msg_ring(struct rl_ring *r, int target_ring_fd, unsigned value, uint64_t target_ud,
                     uint64_t ud, unsigned sf);
int rl_prep_msg_ring_fd(struct rl_ring *r, int target_ring_fd, unsigned src_slot, unsigned dst_slot,
                        uint64_t target_ud, int skip_cqe, uint64_t ud, unsigned sf);

int rl_bufring_setup(struct rl_ring *r, struct rl_bufring *b, unsigned count, unsigned size, int bgid);
int rl_bufring_setup_at(struct rl_ring *r, struct rl_bufring *b, unsigned count, unsigned size, int bgid,
                       unsigned bid_base);
void rl_bufring_free(struct rl_ring *r, struct rl_bufring *b);
char *rl_buf_addr(struct rl_bufring *b, unsigned bid);
void rl_bufring_recycle(struct rl_bufring *b, unsigned bid);
void rl_buf_take(struct rl_bufring *b, unsigned bid, unsigned len, char *out);

int rl_files_sparse(struct rl_ring *r, unsigned n);
int rl_files_update(struct rl_ring *r, unsigned slot, int fd);
int rl_files_alloc_range(struct rl_ring *r, unsigned off, unsigned len);
int rl_probe_ops(struct rl_ring *r, unsigned char *ops, unsigned n);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
_SOURCE = "#include <poll.h>\n"
for _name in ("_helpers.c", "_resources.c", "_dgram.c"):   # in this order: each uses the ones before
    with open(os.path.join(HERE, _name)) as f:
        _SOURCE += f.read()
ffibuilder.set_source(
    "ringleader.uring._liburing",
    _SOURCE,
    libraries=["uring"],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
