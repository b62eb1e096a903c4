// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The fast path's decisions, shared by XDP and tc: which frames it may
// forward, where, and whether their source may send there (as the
// workers' port security, tiers and overlay membership decide).
#ifndef XVR_DECIDE_H
#define XVR_DECIDE_H

// IPv4 without options: all the fast path takes.
static __always_inline int plain_ipv4(struct iphdr *ip)
{
    return ip->version == 4 && ip->ihl == sizeof(*ip) / 4;
}

// The IPv4 header after Ethernet header `eth`, if it is unicast IPv4
// without options (its header within the bytes at hand).
static __always_inline struct iphdr *unicast_ipv4_header(struct ethhdr *eth, void *data_end)
{
    if ((void *)(eth + 1) > data_end)
        return 0;
    if ((eth->h_dest[0] & 1) || eth->h_proto != bpf_htons(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || !plain_ipv4(ip))
        return 0;
    return ip;
}

// `unicast_ipv4_header` of frame `f`, with a length that matches the
// frame: within the bytes of a linear frame (which may carry Ethernet
// padding), exactly the length of an skb.
static __always_inline struct iphdr *unicast_ipv4(struct frame *f)
{
    struct iphdr *ip = unicast_ipv4_header(f->data, f->data_end);
    if (!ip)
        return 0;
    __u32 tot_len = bpf_ntohs(ip->tot_len);
    if (f->linear ? tot_len < sizeof(*ip) || (void *)ip + tot_len > f->data_end
                  : tot_len + ETH_HLEN != f->len)
        return 0;
    return ip;
}

// What the steering makes of a frame from the uplink, XDP and tc alike.
struct uplink {
    struct iphdr *ip;
    struct udphdr *udp;
};

// TO_SOCKET_PUBLIC, TO_SOCKET_VXLAN (with `out` filled) or the PASS_*
// reason the frame is not xvr's.
static __always_inline __u32 classify_uplink(struct frame *f, struct uplink *out)
{
    struct ethhdr *eth = f->data;
    if ((void *)(eth + 1) > f->data_end)
        return PASS_MALFORMED;
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return PASS_NOT_IPV4;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > f->data_end || ip->ihl < 5)
        return PASS_MALFORMED;
    __u32 dst = ip->daddr;
    if (bpf_map_lookup_elem(&public_addrs, &dst))
        return TO_SOCKET_PUBLIC;
    if (ip->protocol != IPPROTO_UDP || !bpf_map_lookup_elem(&local_vteps, &dst))
        return PASS_NOT_OURS;
    // Later fragments carry no UDP header: the kernel reassembles.
    if (ip->frag_off & bpf_htons(FRAGMENT_OFFSET))
        return PASS_LATER_FRAGMENT;
    struct udphdr *udp = (void *)ip + ip->ihl * 4;
    if ((void *)(udp + 1) > f->data_end)
        return PASS_MALFORMED;
    if (udp->dest != bpf_htons(VXLAN_PORT))
        return PASS_NOT_OURS;
    out->ip = ip;
    out->udp = udp;
    return TO_SOCKET_VXLAN;
}

static __always_inline struct l2_fwd *l2_lookup(__u32 vni, struct ethhdr *eth)
{
    struct l2_key key = {.vni = vni};
    __builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
    return bpf_map_lookup_elem(&l2_fwd, &key);
}

// Whether the frame's source may send it to `fwd`'s VM here, as the
// workers' port security and tier checks decide: its MAC is a VM known in
// `sources` under `scope` (the VM port's ifindex, or the VNI), from VTEP
// `vtep` (0 for a VM port), with IPv4 source `saddr`, in `fwd`'s tier.
static __always_inline int source_ok(void *sources, __u32 scope, struct ethhdr *eth,
                                     __u32 saddr, __u32 vtep, struct l2_fwd *fwd)
{
    struct l2_key key = {.vni = scope};
    __builtin_memcpy(key.mac, eth->h_source, ETH_ALEN);
    struct source *src = bpf_map_lookup_elem(sources, &key);
    return src && src->ip == saddr && src->vtep == vtep && src->tier.net == fwd->tier.net &&
           src->tier.len == fwd->tier.len;
}

// Where a VM's frame (`eth`, IPv4 `ip`) on port `ifindex` of VNI `vni`
// goes on the fast path: to a local port or a VTEP, if the source may
// send there (XDP and tc alike).
static __always_inline struct l2_fwd *fwd_from_vm(__u32 vni, __u32 ifindex, struct ethhdr *eth,
                                                   struct iphdr *ip)
{
    struct l2_fwd *fwd = l2_lookup(vni, eth);
    if (!fwd || !source_ok(&vm_sources, ifindex, eth, ip->saddr, 0, fwd))
        return 0;
    if (fwd->kind != FWD_PORT && fwd->kind != FWD_ENCAP)
        return 0;
    return fwd;
}

// A VM's frame as the fast path may take it.
struct from_vm {
    struct l2_fwd *fwd;
    struct iphdr *ip;
    __u32 vni;
};

// Fills `out` for a frame from a VM port that the fast path may forward;
// 0 if it may not (the workers decide).
static __always_inline int decide_from_vm(struct frame *f, struct from_vm *out)
{
    __u32 ifindex = f->ifindex;
    __u32 *vni = bpf_map_lookup_elem(&port_vnis, &ifindex);
    if (!vni)
        return 0;
    struct iphdr *ip = unicast_ipv4(f);
    if (!ip)
        return 0;
    struct l2_fwd *fwd = fwd_from_vm(*vni, ifindex, f->data, ip);
    if (!fwd)
        return 0;
    out->fwd = fwd;
    out->ip = ip;
    out->vni = *vni;
    return 1;
}

// A VXLAN frame from remote VTEP `src` (outer `ip` and `udp` checked),
// as the fast path may take it (XDP and tc alike).
struct from_overlay {
    struct l2_fwd *fwd;
    struct ethhdr *inner_eth;
    struct iphdr *inner_ip;
    __u32 vni;
};

// The inner frame of VXLAN frame `f` (classified by `classify_uplink`
// as `up`) and its VNI, if the outer headers are as the fast paths take
// them: IPv4 without options, no fragment, its length the frame's; a
// linear frame's UDP length and header checksum checked against its
// bytes; the VNI flag set. 0 if not.
static __always_inline int overlay_inner(struct frame *f, struct uplink *up, struct frame *inner,
                                         __u32 *vni)
{
    struct iphdr *ip = up->ip;
    struct udphdr *udp = up->udp;
    if (!plain_ipv4(ip) || (ip->frag_off & bpf_htons(FRAGMENT_BITS)))
        return 0;
    if (bpf_ntohs(ip->tot_len) + ETH_HLEN != f->len)
        return 0;
    if (f->linear && (bpf_ntohs(udp->len) + sizeof(*ip) != bpf_ntohs(ip->tot_len) ||
                      fold(bpf_csum_diff(0, 0, (void *)ip, sizeof(*ip), 0)) != 0xffff))
        return 0;
    struct vxlanhdr *vx = (void *)(udp + 1);
    if ((void *)(vx + 1) > f->data_end || !(vx->flags & VXLAN_FLAG_VNI))
        return 0;
    inner->data = vx + 1;
    inner->data_end = f->data_end;
    inner->len = f->len - VXLAN_OVERHEAD;
    inner->ifindex = f->ifindex;
    inner->linear = 1;
    *vni = bpf_ntohl(vx->vni) >> 8;
    return 1;
}

// Fills `out` for VXLAN frame `f` (classified by `classify_uplink` as
// `up`) that the fast path may decapsulate to a local VM; 0 if it may
// not. The outer IPv4 header has no options, is no fragment and its
// length is the frame's; a linear frame's UDP length and header checksum
// are checked against its bytes, and so is the inner IPv4 length (an
// skb's inner headers may be nonlinear past the pulled part).
static __always_inline int decide_from_overlay(struct frame *f, struct uplink *up,
                                               struct from_overlay *out)
{
    struct iphdr *ip = up->ip;
    struct udphdr *udp = up->udp;
    void *data_end = f->data_end;
    struct frame inner;
    __u32 vni;
    if (!overlay_inner(f, up, &inner, &vni))
        return 0;
    __u32 src = ip->saddr;
    if (!bpf_map_lookup_elem(&remote_vteps, &src))
        return 0;
    struct ethhdr *eth = inner.data;
    struct iphdr *inner_ip = f->linear ? unicast_ipv4(&inner) : unicast_ipv4_header(eth, data_end);
    if (!inner_ip || outer_checksum_to_verify(ip, udp, inner_ip, data_end))
        return 0;
    struct l2_fwd *fwd = l2_lookup(vni, eth);
    // Never from the overlay back into it (split horizon).
    if (!fwd || fwd->kind != FWD_PORT)
        return 0;
    if (!source_ok(&overlay_sources, vni, eth, inner_ip->saddr, src, fwd))
        return 0;
    out->fwd = fwd;
    out->inner_eth = eth;
    out->inner_ip = inner_ip;
    out->vni = vni;
    return 1;
}

#endif
