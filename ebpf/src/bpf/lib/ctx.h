// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// One view of a frame for both hooks, as Cilium's __ctx_buff is: the
// parse-and-decide code reads a `struct frame`, never an xdp_md or an
// __sk_buff, so XDP and tc run the same checks on the same bytes.
#ifndef XVR_CTX_H
#define XVR_CTX_H

struct frame {
    void *data;
    void *data_end;
    // The whole frame's length; an skb's may run past data_end.
    __u32 len;
    __u32 ifindex;
    // All `len` bytes lie between data and data_end (XDP): lengths in
    // the headers are checked against the bytes themselves.
    int linear;
};

static __always_inline struct frame frame_of_xdp(struct xdp_md *ctx)
{
    struct frame f = {
        .data = (void *)(long)ctx->data,
        .data_end = (void *)(long)ctx->data_end,
        .ifindex = ctx->ingress_ifindex,
        .linear = 1,
    };
    f.len = f.data_end - f.data;
    return f;
}

static __always_inline struct frame frame_of_skb(struct __sk_buff *skb)
{
    struct frame f = {
        .data = (void *)(long)skb->data,
        .data_end = (void *)(long)skb->data_end,
        .len = skb->len,
        .ifindex = skb->ingress_ifindex,
        .linear = 0,
    };
    return f;
}

#endif
