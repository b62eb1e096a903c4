// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Checksums as the workers compute them: folding, incremental updates
// (RFC 1624), finishing what a sender left to offload, the outer UDP
// checksum of VXLAN.
#ifndef XVR_CHECKSUM_H
#define XVR_CHECKSUM_H

static __always_inline __u32 fold(__u64 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

// RFC 1624 eqn. 3, as the workers' checksum::update_u16 and update_u32
// (memory byte order: one's complement sums commute with byte swaps).
static __always_inline __u16 csum_update16(__u16 check, __u16 old, __u16 new)
{
    return ~fold((__u16)~check + (__u16)~old + new);
}

static __always_inline __u16 csum_update32(__u16 check, __u32 old, __u32 new)
{
    return ~fold((__u16)~check + (__u16)~(old >> 16) + (__u16)~old + (new >> 16) +
                 (new & 0xffff));
}

// A TCP or UDP checksum after an address and a port change, as the
// workers' transport_sum: UDP's 0 (no checksum) stays, a computed 0 is
// sent as 0xffff.
static __always_inline __u16 l4_update(__u8 proto, __u16 check, __u32 old_addr, __u32 addr,
                                       __u16 old_port, __u16 port)
{
    if (proto == IPPROTO_UDP && check == 0)
        return 0;
    __u16 sum = csum_update16(csum_update32(check, old_addr, addr), old_port, port);
    return sum == 0 && proto == IPPROTO_UDP ? 0xffff : sum;
}

// Sums `left` bytes at `*p` in whole chunks of `size` (at most `max` of
// them) into `sum`, advancing `*p` and `left`. bpf_csum_diff copies its
// input before summing it, so large chunks keep the calls few.
#define SUM_CHUNKS(p, left, sum, size, max, data_end)                          \
    for (int i = 0; i < (max) && (left) >= (size); i++) {                      \
        if ((p) + (size) > (data_end))                                         \
            return -1;                                                         \
        (sum) = bpf_csum_diff(0, 0, (p), (size), (sum));                       \
        (p) += (size);                                                         \
        (left) -= (size);                                                      \
    }

// Segments longer than 8 * 256 + 7 * 32 + 31 bytes are left to the workers.
#define CSUM_BIG 256
#define CSUM_BIG_CHUNKS 8
#define CSUM_SMALL 32

// Finishes a TCP or UDP checksum left to offload, as the workers'
// offload::finish_partial_checksum does: when the field holds exactly the
// folded pseudo-header sum. `ip` has IHL 5 and `tot_len` fits the frame.
// Sums are kept in memory byte order (one's complement sums commute with
// byte swaps). Returns -1 when the frame must go to the workers instead.
static __always_inline int finish_checksum(struct iphdr *ip, __u32 tot_len, void *data_end)
{
    if (ip->frag_off & bpf_htons(FRAGMENT_BITS))
        return 0;
    void *l4 = (void *)(ip + 1);
    __u16 *field;
    __u32 l4_len = tot_len - sizeof(*ip);
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = l4;
        if ((void *)(tcp + 1) > data_end || l4_len < sizeof(*tcp))
            return 0;
        field = &tcp->check;
    } else if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *udp = l4;
        if ((void *)(udp + 1) > data_end || l4_len < sizeof(*udp))
            return 0;
        field = &udp->check;
    } else {
        return 0;
    }
    __u64 pseudo = (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) +
                   (ip->daddr >> 16) + bpf_htons(ip->protocol) + bpf_htons(l4_len);
    __u32 sum = fold(pseudo);
    if (*field != sum)
        return 0;
    *field = 0;
    // bpf_csum_diff sums whole 4-byte words: chunks of the packet, then
    // the last bytes copied into a zeroed buffer.
    void *p = l4;
    __u32 left = l4_len;
    SUM_CHUNKS(p, left, sum, CSUM_BIG, CSUM_BIG_CHUNKS, data_end);
    if (left >= CSUM_BIG)
        return -1;
    SUM_CHUNKS(p, left, sum, CSUM_SMALL, CSUM_BIG / CSUM_SMALL, data_end);
    __u32 tail[CSUM_SMALL / 4] = {};
    for (int i = 0; i < CSUM_SMALL && i < left; i++) {
        __u8 *b = p + i;
        if ((void *)(b + 1) > data_end)
            return -1;
        ((__u8 *)tail)[i] = *b;
    }
    sum = bpf_csum_diff(0, 0, tail, CSUM_SMALL, sum);
    __u16 result = ~fold(sum);
    if (ip->protocol == IPPROTO_UDP && result == 0)
        result = 0xffff;
    *field = result;
    return 0;
}

// The folded pseudo-header sum of `ip`'s transport (memory order).
static __always_inline __u16 pseudo_sum(struct iphdr *ip, __u16 l4_len_be)
{
    __u64 pseudo = (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) +
                   (ip->daddr >> 16) + bpf_htons(ip->protocol) + l4_len_be;
    return fold(pseudo);
}

// Whether the TCP or UDP checksum of `ip` (IHL 5) was left to offload.
static __always_inline int l4_left_partial(struct iphdr *ip, void *data_end)
{
    __u16 *field;
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = (void *)(ip + 1);
        if ((void *)(tcp + 1) > data_end)
            return 0;
        field = &tcp->check;
    } else if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > data_end)
            return 0;
        field = &udp->check;
    } else {
        return 0;
    }
    __u16 l4_len = bpf_ntohs(ip->tot_len) - sizeof(*ip);
    return *field == pseudo_sum(ip, bpf_htons(l4_len));
}

// Whether a VXLAN frame's outer UDP checksum needs the workers, as their
// decap decides: 0 (none) does not, nor one left to offload by a local
// sending kernel (the field holds the pseudo-header sum, or the inner
// checksum is partial and the outer was computed as if it were not);
// any other is verified there.
static __always_inline int outer_checksum_to_verify(struct iphdr *ip, struct udphdr *udp,
                                                    struct iphdr *inner, void *data_end)
{
    if (!udp->check || udp->check == pseudo_sum(ip, udp->len))
        return 0;
    return !l4_left_partial(inner, data_end);
}

#endif
