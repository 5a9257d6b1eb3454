/* Datagram receive helpers (appended to _helpers.c by _build.py).
 *
 * Multishot recvmsg: one SQE keeps receiving datagrams, each into a buffer the
 * kernel takes from a provided-buffer group.  The buffer then holds, in order:
 * struct io_uring_recvmsg_out (16 bytes: namelen, controllen, payloadlen,
 * flags), the sender's address in a region of exactly the msg_namelen given
 * here, no control data (msg_controllen 0), and the payload, cut at the
 * buffer's end (flags then carry MSG_TRUNC; payloadlen is the full length).
 * The kernel reads the template msghdr when the request is prepared and
 * issued; the caller keeps it alive until the final completion anyway. */

/* The layout constant Python parses the buffer with. */
static unsigned rl_recvmsg_out_size(void) { return (unsigned)sizeof(struct io_uring_recvmsg_out); }

/* namelen: the room for the sender's address in each buffer (the family's sockaddr size). */
static int rl_prep_recvmsg_multi(struct rl_ring *r, int fd, struct rl_msg *m, unsigned namelen,
                                 int bgid, uint64_t ud, unsigned sf)
{
    RL_GET_SQE(r);
    memset(&m->hdr, 0, sizeof(m->hdr));
    if (namelen > sizeof(m->addr))
        namelen = sizeof(m->addr);
    m->hdr.msg_namelen = namelen;
    io_uring_prep_recvmsg_multishot(sqe, fd, &m->hdr, 0);
    sqe->buf_group = (uint16_t)bgid;
    return rl_finish(sqe, ud, sf | IOSQE_BUFFER_SELECT);
}
