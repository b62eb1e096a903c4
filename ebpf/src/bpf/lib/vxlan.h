// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// VXLAN as the workers' encap writes it: the flow's outer source port
// and the outer headers' lengths, checksum and VNI.
#ifndef XVR_VXLAN_H
#define XVR_VXLAN_H

// The workers' encap::flow_hash: one flow keeps one outer source port.
static __always_inline __u32 flow_hash(struct iphdr *ip, void *data_end)
{
    __u32 ports = 0;
    int fragment = ip->frag_off & bpf_htons(FRAGMENT_BITS);
    if (!fragment && (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)) {
        __u32 *word = (void *)(ip + 1);
        if ((void *)(word + 1) <= data_end)
            ports = bpf_ntohl(*word);
    }
    __u64 a = bpf_ntohl(ip->saddr), b = bpf_ntohl(ip->daddr), c = ports ^ ip->protocol;
    __u64 h = ((a << 32) | b) * 0x9e3779b97f4a7c15ULL;
    h ^= c * 0xc2b2ae3d27d4eb4fULL;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return h;
}

// Completes a VTEP's outer headers (`outer`, VXLAN_OVERHEAD bytes the
// caller has checked) for an inner frame of `inner_len` bytes: lengths,
// the IPv4 checksum updated for them, the flow's source port, the VNI.
// The lengths of outer headers written with none (and their IPv4
// checksum), for an inner frame of `inner_len` bytes.
static __always_inline void set_outer_lengths(void *outer, __u32 inner_len)
{
    struct iphdr *ip = outer + sizeof(struct ethhdr);
    struct udphdr *udp = (void *)(ip + 1);
    __u16 ip_len = inner_len + OUTER_IP_HEADERS;
    ip->tot_len = bpf_htons(ip_len);
    ip->check = bpf_htons(csum_update16(bpf_ntohs(ip->check), 0, ip_len));
    udp->len = bpf_htons(inner_len + sizeof(struct udphdr) + sizeof(struct vxlanhdr));
}

static __always_inline void fill_outer(void *outer, __u32 inner_len, __u32 hash, __u32 vni)
{
    struct iphdr *ip = outer + sizeof(struct ethhdr);
    struct udphdr *udp = (void *)(ip + 1);
    __u8 *vni_bytes = (__u8 *)(udp + 1) + 4;
    set_outer_lengths(outer, inner_len);
    udp->source = bpf_htons(49152 | (hash & 0x3fff));
    vni_bytes[0] = vni >> 16;
    vni_bytes[1] = vni >> 8;
    vni_bytes[2] = vni;
}

#endif
