/* The ring's resources: provided-buffer rings, registered (fixed) files, and
 * the opcode probe.  Compiled after _helpers.c into the same translation unit
 * (uring/_build.py for the cffi module, runtime/_loopcore.c for the core),
 * whose struct rl_ring / rl_bufring and forward declarations it uses.
 *
 * What this file does not do: decide sizes or counts (the Python side,
 * uring/resources.py, does), or keep any state of its own.
 */

/* ---- provided-buffer ring (kernel >= 5.19) ---- */

/* Buffers get ids bid_base + i.  A completion names its buffer's id but not its
 * group, so a loop with two groups gives them disjoint id ranges (0.. and 32768..)
 * and tells them apart by the id alone.  bid_base: 0 or a multiple of count below
 * 65536 (ids are 16 bits). */
static int rl_bufring_setup_at(struct rl_ring *r, struct rl_bufring *b, unsigned count,
                               unsigned size, int bgid, unsigned bid_base)
{
    struct io_uring_buf_reg reg;
    unsigned i;
    int ret;
    if (!count || (count & (count - 1)) || count > 32768)
        return -EINVAL;
    if (bid_base % count || bid_base + count > 65536)
        return -EINVAL;
    memset(b, 0, sizeof(*b));
    b->ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
    b->br = mmap(NULL, b->ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (b->br == MAP_FAILED) {
        b->br = NULL;
        return -errno;
    }
    b->buf_bytes = (size_t)count * size;
    b->base = mmap(NULL, b->buf_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (b->base == MAP_FAILED) {
        b->base = NULL;
        munmap(b->br, b->ring_bytes);
        b->br = NULL;
        return -errno;
    }
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)b->br;
    reg.ring_entries = count;
    reg.bgid = (uint16_t)bgid;
    ret = io_uring_register_buf_ring(&r->ring, &reg, 0);
    if (ret < 0) {
        munmap(b->base, b->buf_bytes);
        munmap(b->br, b->ring_bytes);
        b->base = NULL;
        b->br = NULL;
        return ret;
    }
    b->registered = 1;
    b->count = count;
    b->size = size;
    b->bgid = bgid;
    b->mask = io_uring_buf_ring_mask(count);
    io_uring_buf_ring_init(b->br);
    for (i = 0; i < count; i++)
        io_uring_buf_ring_add(b->br, b->base + (size_t)i * size, size, (uint16_t)(bid_base + i),
                              b->mask, (int)i);
    io_uring_buf_ring_advance(b->br, (int)count);
    return 0;
}

static int rl_bufring_setup(struct rl_ring *r, struct rl_bufring *b, unsigned count,
                            unsigned size, int bgid)
{
    return rl_bufring_setup_at(r, b, count, size, bgid, 0);
}

static void rl_bufring_free(struct rl_ring *r, struct rl_bufring *b)
{
    if (b->registered && r->initialized)
        io_uring_unregister_buf_ring(&r->ring, b->bgid);
    b->registered = 0;
    if (b->base)
        munmap(b->base, b->buf_bytes);
    if (b->br)
        munmap(b->br, b->ring_bytes);
    b->base = NULL;
    b->br = NULL;
}

/* A buffer's id is bid_base + its index (see rl_bufring_setup_at); bid_base is a
 * multiple of count, so the index is bid & mask. */
static char *rl_buf_addr(struct rl_bufring *b, unsigned bid)
{
    return b->base + (size_t)(bid & b->mask) * b->size;
}

/* Hand buffer bid back to the kernel. */
static void rl_bufring_recycle(struct rl_bufring *b, unsigned bid)
{
    io_uring_buf_ring_add(b->br, rl_buf_addr(b, bid), b->size, (uint16_t)bid, b->mask, 0);
    io_uring_buf_ring_advance(b->br, 1);
}

/* Copy a received buffer's bytes out and recycle it in one call. */
static void rl_buf_take(struct rl_bufring *b, unsigned bid, unsigned len, char *out)
{
    memcpy(out, rl_buf_addr(b, bid), len);
    rl_bufring_recycle(b, bid);
}

/* ---- registered files ---- */

static int rl_files_sparse(struct rl_ring *r, unsigned n) { return io_uring_register_files_sparse(&r->ring, n); }

static int rl_files_update(struct rl_ring *r, unsigned slot, int fd)
{
    int fds[1];
    fds[0] = fd;
    return io_uring_register_files_update(&r->ring, slot, fds, 1);
}

static int rl_files_alloc_range(struct rl_ring *r, unsigned off, unsigned len)
{
    return io_uring_register_file_alloc_range(&r->ring, off, len);
}

/* ---- probe ---- */

/* Fills ops[0..n) with 1 where the opcode is supported; returns last_op+1 or -errno. */
static int rl_probe_ops(struct rl_ring *r, unsigned char *ops, unsigned n)
{
    struct io_uring_probe *p = io_uring_get_probe_ring(&r->ring);
    unsigned i;
    int last;
    if (!p)
        return -ENOSYS;
    last = p->last_op;
    for (i = 0; i < n; i++)
        ops[i] = (unsigned char)io_uring_opcode_supported(p, (int)i);
    io_uring_free_probe(p);
    return last + 1;
}
