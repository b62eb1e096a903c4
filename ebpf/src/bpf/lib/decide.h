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

// The IPv4 header of a frame whose Ethernet header is `eth`, if it is
// unicast IPv4 without options (its header in the linear data).
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

// `unicast_ipv4_header`, and its length fits the frame (XDP: the whole
// frame is linear).
static __always_inline struct iphdr *unicast_ipv4(struct ethhdr *eth, void *data_end)
{
    struct iphdr *ip = unicast_ipv4_header(eth, data_end);
    if (!ip)
        return 0;
    __u32 tot_len = bpf_ntohs(ip->tot_len);
    if (tot_len < sizeof(*ip) || (void *)ip + tot_len > data_end)
        return 0;
    return ip;
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

// A VXLAN frame from remote VTEP `src` (outer `ip` and `udp` checked),
// as the fast path may take it (XDP and tc alike).
struct from_overlay {
    struct l2_fwd *fwd;
    struct ethhdr *inner_eth;
    struct iphdr *inner_ip;
    __u32 vni;
};

// Fills `out` for a VXLAN frame the fast path may decapsulate to a local
// VM; 0 if it may not. With `whole_frame` (XDP) the inner IPv4 length
// must fit the frame too; an skb's data may be nonlinear, so tc checks
// the outer length against the skb instead.
static __always_inline int decide_from_overlay(struct iphdr *ip, struct udphdr *udp,
                                               void *data_end, __u32 src,
                                               struct from_overlay *out, int whole_frame)
{
    if (!bpf_map_lookup_elem(&remote_vteps, &src))
        return 0;
    struct vxlanhdr *vx = (void *)(udp + 1);
    if ((void *)(vx + 1) > data_end || !(vx->flags & VXLAN_FLAG_VNI))
        return 0;
    struct ethhdr *eth = (void *)(vx + 1);
    struct iphdr *inner = whole_frame ? unicast_ipv4(eth, data_end)
                                      : unicast_ipv4_header(eth, data_end);
    if (!inner || outer_checksum_to_verify(ip, udp, inner, data_end))
        return 0;
    __u32 vni = bpf_ntohl(vx->vni) >> 8;
    struct l2_fwd *fwd = l2_lookup(vni, eth);
    // Never from the overlay back into it (split horizon).
    if (!fwd || fwd->kind != FWD_PORT)
        return 0;
    if (!source_ok(&overlay_sources, vni, eth, inner->saddr, src, fwd))
        return 0;
    out->fwd = fwd;
    out->inner_eth = eth;
    out->inner_ip = inner;
    out->vni = vni;
    return 1;
}

#endif
