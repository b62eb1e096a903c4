// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Flow offload: the fast path replays a worker's decision for one
// direction of an established flow (routed, through NAT, or both): the
// MACs it wrote, the addresses and ports it translated, the TTL it took,
// the port it sent to. A worker installs the entry after forwarding a
// packet of the flow itself (see dataplane/src/pipeline/offer.rs), with
// the tables' generation; whatever the entry cannot vouch for goes to the
// workers: another generation, TCP SYN, FIN or RST, fragments, IP
// options, TTL <= 1, another source MAC or router MAC than the worker
// saw (port security), a packet longer than the output's MTU, an output
// that no longer takes redirected frames.
#ifndef XVR_FLOWS_H
#define XVR_FLOWS_H

// Keep in step with `FlowKeyValue` in flows.rs. Over the overlay the
// addresses and ports are the inner packet's, and `vni` its tenant's.
struct flow_key {
    __u32 ifindex; // where the packet arrives
    __u32 vni;
    __be32 saddr;
    __be32 daddr;
    __be16 sport;
    __be16 dport;
    __u8 proto;
    __u8 overlay; // it arrives VXLAN-encapsulated
    __u8 pad[2];
};

// What happens around the rewrite.
enum flow_kind {
    FLOW_PLAIN = 0,
    // Encapsulated toward a VTEP after the rewrite.
    FLOW_ENCAP = 1,
    // Arrives encapsulated from a VTEP, forwarded decapsulated.
    FLOW_DECAP = 2,
};

struct flow_overlay_source {
    __be32 vtep; // the remote VTEP it must come from
    __u32 vni;
};

// Keep in step with `FlowActionValue` in lib.rs.
struct flow_action {
    __u32 generation;
    __u32 out_ifindex;
    // Destination and source MAC the packet must arrive with, and the
    // ones it leaves with.
    __u8 in_eth[2 * ETH_ALEN];
    __u8 out_eth[2 * ETH_ALEN];
    // The addresses and ports it leaves with (network byte order).
    __be32 saddr;
    __be32 daddr;
    __be16 sport;
    __be16 dport;
    __u8 ttl_dec;
    __u8 kind;
    // Longest IPv4 packet (before encapsulation) to forward.
    __u16 max_ip_len;
    // Written here, read by xvrd: when this entry last forwarded a
    // packet (CLOCK_MONOTONIC, coarse: expiry counts seconds), and how
    // much it forwarded. Beside the fields every packet reads, so that a
    // packet touches as few cache lines as it can. One entry is shared
    // by every CPU (a per-CPU map would multiply its memory by the CPU
    // count); a flow arrives on one CPU at a time, so the atomic adds
    // rarely contend.
    __u64 last_seen_ns;
    __u64 packets;
    __u64 bytes;
    union {
        // FLOW_ENCAP: the outer headers, their lengths zero (and their
        // IPv4 checksum computed so), with the flow's source port and VNI.
        __u8 outer[VXLAN_OVERHEAD];
        // FLOW_DECAP: where the packet must come from.
        struct flow_overlay_source from;
    };
    __u8 pad[4];
};

// Entries age out least recently used first when full; a flow that
// loses its entry goes to the workers, which install it again.
#define MAX_FLOWS 262144
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_FLOWS);
    __type(key, struct flow_key);
    __type(value, struct flow_action);
} flows SEC(".maps");

// The tables generation in force: only entries installed under it apply.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} flow_generation SEC(".maps");

// Output interfaces that take redirected frames (ifindex -> MTU): a veth
// does only while its peer has an XDP program or GRO on. Kept by xvrd.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_PORTS);
    __type(key, __u32);
    __type(value, __u32);
} flow_outputs SEC(".maps");

static __always_inline int same_macs(struct ethhdr *eth, __u8 *want)
{
    __u16 *a = (void *)eth, *b = (void *)want;
    return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
           a[5] == b[5];
}

// A packet of an offloaded flow, found and checked.
struct offloaded {
    struct flow_action *action;
    struct iphdr *ip;
    __u16 *check; // the transport checksum
    __be16 *ports;
    __u32 out_ifindex;
};

// What `decide_flow` holds a packet's length to: its IPv4 header's
// (XDP), none (generic XDP in tc mode, which cannot tell a linearized GSO
// packet from a frame: tc judges), or a GSO packet's segments (tc).
#define FLOW_LEN_OF_HEADER 0
#define FLOW_LEN_UNCHECKED 0xffffffff

// Fills `out` if frame `f` (over the overlay: the inner frame, of VNI
// `vni`), whose IPv4 header `unicast_ipv4` found at `ip` (NULL: none),
// belongs to an offloaded flow whose entry vouches for it, its IPv4
// length taken as `seg_len` (or a FLOW_LEN_*); 0 if the workers must see
// it.
static __always_inline int decide_flow_at(struct frame *f, struct iphdr *ip, __u32 overlay,
                                          __u32 vni, __u32 seg_len, struct offloaded *out)
{
    if (!ip || (ip->frag_off & bpf_htons(FRAGMENT_BITS)))
        return 0;
    void *l4 = ip + 1;
    __u16 *check;
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = l4;
        if ((void *)(tcp + 1) > f->data_end || tcp->syn || tcp->fin || tcp->rst)
            return 0;
        check = &tcp->check;
    } else if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *udp = l4;
        if ((void *)(udp + 1) > f->data_end)
            return 0;
        check = &udp->check;
    } else {
        return 0;
    }
    __be16 *ports = l4;
    struct flow_key key = {
        .ifindex = f->ifindex,
        .saddr = ip->saddr,
        .daddr = ip->daddr,
        .sport = ports[0],
        .dport = ports[1],
        .proto = ip->protocol,
        .vni = vni,
        .overlay = overlay,
    };
    struct flow_action *a = bpf_map_lookup_elem(&flows, &key);
    if (!a)
        return 0;
    __u32 zero = 0;
    __u32 *generation = bpf_map_lookup_elem(&flow_generation, &zero);
    if (!generation || a->generation != *generation)
        return 0;
    if (!same_macs(f->data, a->in_eth) || (a->ttl_dec && ip->ttl <= 1))
        return 0;
    __u32 out_ifindex = a->out_ifindex;
    __u32 *mtu = bpf_map_lookup_elem(&flow_outputs, &out_ifindex);
    __u32 ip_len = seg_len == FLOW_LEN_OF_HEADER ? bpf_ntohs(ip->tot_len) : seg_len;
    __u32 out_len = a->kind == FLOW_ENCAP ? ip_len + ETH_HLEN + OUTER_IP_HEADERS : ip_len;
    if (!mtu)
        return 0;
    if (seg_len != FLOW_LEN_UNCHECKED && (out_len > *mtu || ip_len > a->max_ip_len))
        return 0;
    out->action = a;
    out->ip = ip;
    out->check = check;
    out->ports = ports;
    out->out_ifindex = out_ifindex;
    return 1;
}

// `decide_flow_at` for a frame not parsed yet.
static __always_inline int decide_flow(struct frame *f, __u32 overlay, __u32 vni,
                                       __u32 seg_len, struct offloaded *out)
{
    return decide_flow_at(f, unicast_ipv4(f), overlay, vni, seg_len, out);
}

// Counts a packet the entry forwarded, for the workers' expiry and stats.
static __always_inline void count_flow(struct flow_action *a, __u32 len)
{
    a->last_seen_ns = bpf_ktime_get_coarse_ns();
    __sync_fetch_and_add(&a->packets, 1);
    __sync_fetch_and_add(&a->bytes, len);
}

// Rewrites the packet as the worker did, in the worker's order of
// updates (TTL, then source, then destination), and counts it.
static __always_inline void apply_flow(struct frame *f, struct offloaded *o)
{
    struct flow_action *a = o->action;
    struct iphdr *ip = o->ip;
    __builtin_memcpy(f->data, a->out_eth, sizeof(a->out_eth));
    if (a->ttl_dec) {
        __u16 *word = (void *)&ip->ttl;
        __u16 old = *word;
        ip->ttl -= 1;
        ip->check = csum_update16(ip->check, old, *word);
    }
    __u8 proto = ip->protocol;
    if (a->saddr != ip->saddr || a->sport != o->ports[0]) {
        ip->check = csum_update32(ip->check, ip->saddr, a->saddr);
        *o->check = l4_update(proto, *o->check, ip->saddr, a->saddr, o->ports[0], a->sport);
        ip->saddr = a->saddr;
        o->ports[0] = a->sport;
    }
    if (a->daddr != ip->daddr || a->dport != o->ports[1]) {
        ip->check = csum_update32(ip->check, ip->daddr, a->daddr);
        *o->check = l4_update(proto, *o->check, ip->daddr, a->daddr, o->ports[1], a->dport);
        ip->daddr = a->daddr;
        o->ports[1] = a->dport;
    }
    count_flow(a, f->len);
}

#endif
