// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// xvr's XDP steering program. It decides, per frame, whether xvr owns it:
//   - every frame arriving on a VM port (ifindex in vm_ports),
//   - IPv4 to a tenant's public NAT address (public_addrs),
//   - UDP to port 4789 of a local VTEP address (local_vteps), first fragments
//     only (later fragments carry no UDP header: the kernel reassembles);
// those go to the AF_XDP socket of their interface and rx queue (xsks at
// slot * MAX_QUEUES + queue, the interface's slot from port_slots), with
// XDP_PASS as the fallback, so a queue without a socket still reaches the
// kernel.
// Everything else is XDP_PASS. The maps are the only interface; xvrd fills
// them. Per-CPU counters record each decision.
//
// The fast path replays xvr's L2 decisions inside a tenant here, so that
// bulk traffic between VMs never reaches userspace (AF_XDP on veth is copy
// mode, and its transmit runs the peer's whole receive path per frame):
//   - from a VM port, unicast IPv4 to a MAC that l2_fwd knows in the port's
//     tenant is sent to the local VM's port, or encapsulated in VXLAN toward
//     its VTEP and sent out of the uplink;
//   - VXLAN from a known VTEP to a local VM's MAC is decapsulated and sent
//     to the VM's port.
// l2_fwd holds only decisions the workers would make the same way, for
// interfaces that accept redirected frames (xvrd checks). Anything else
// (router MACs, broadcast, ARP, IP options, frames too big for the
// overlay, anything malformed) goes to the workers as before. Checksums
// left to offload are finished here too, as the workers do.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define VXLAN_PORT 4789
#define MAX_QUEUES 16
// Interfaces a host serves: the segmenter tags frames with slot + 1 as a
// VLAN ID (12 bits, 4095 reserved), so at most 4094.
#define MAX_PORTS 4094
#define VXLAN_OVERHEAD 50
#define VXLAN_FLAG_VNI 0x08
// The largest frame an AF_XDP socket takes: a UMEM chunk (FRAME_SIZE in
// dataplane/src/frame.rs) less the kernel's headroom.
#define MAX_SOCKET_FRAME (2048 - 256)

// Keep in step with `Decision` in lib.rs.
enum decision {
    TO_XSK_VM_PORT,
    TO_XSK_VXLAN,
    TO_XSK_PUBLIC,
    NO_SOCKET,
    PASS_NOT_OURS,
    PASS_NOT_IPV4,
    PASS_LATER_FRAGMENT,
    PASS_MALFORMED,
    FAST_BRIDGE,
    FAST_ENCAP,
    FAST_DECAP,
    // TC mode: left to the tc program (`xvr_tc`), which forwards it.
    PASS_TO_TC,
    // TC mode: a GSO packet that the fast path does not take is larger
    // than a socket's frame; the tc program sends it to be segmented.
    PASS_TO_SEGMENT,
    // TC mode: such a packet, tagged with its port and sent through the
    // segmenter (a veth pair whose far end gives the segments to the
    // workers' sockets).
    TO_SEGMENTER,
    // TC mode: such a packet with no segmenter to go to: dropped (the
    // kernel would answer VXLAN for the local VTEP with ICMP).
    DROP_TOO_BIG,
    // From a VM port with no socket on its queue (or, in tc mode, not
    // taken and no segmenter): dropped, never passed to the host.
    DROP_VM_NO_SOCKET,
    // TC mode: a VM port's frame the tc program did not forward (not a
    // too-big GSO packet), sent to the workers through the segmenter.
    TC_TO_WORKERS,
    DECISIONS,
};

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, MAX_PORTS * MAX_QUEUES);
    __type(key, __u32);
    __type(value, __u32);
} xsks SEC(".maps");

// Interface index -> its slot in xsks.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_PORTS);
    __type(key, __u32);
    __type(value, __u32);
} port_slots SEC(".maps");

// Keys are IPv4 addresses in network byte order; values are unused.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u8);
} local_vteps SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, __u8);
} public_addrs SEC(".maps");

// Keys are interface indexes.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u8);
} vm_ports SEC(".maps");

// Fast path: a VM port's interface index -> its tenant's VNI. Tenants are
// known by their VNI here: it is what VXLAN carries, and it does not
// change when tenants are added or removed around it.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u32);
} port_vnis SEC(".maps");

// Fast path: the remote VTEPs (IPv4, network byte order) whose VXLAN is
// accepted; values are unused.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, __u8);
} remote_vteps SEC(".maps");

// Keep in step with `L2Key` and `L2Fwd` in lib.rs.
struct l2_key {
    __u32 vni;
    __u8 mac[6];
    __u16 pad;
};

enum fwd_kind {
    FWD_PORT = 1,
    FWD_ENCAP = 2,
};

// A tier: one L2 domain of a tenant, named by its subnet. The fast path
// bridges only inside a tier, as the workers do.
struct tier {
    __u32 net; // network byte order
    __u32 len;
};

struct l2_fwd {
    __u32 kind;
    // Where the frame leaves: the VM's port, or the uplink.
    __u32 ifindex;
    // FWD_ENCAP: the largest inner frame less its Ethernet header that
    // the underlay carries, and the VTEP's outer headers (lengths, source
    // port, VNI zero; IPv4 checksum of that).
    __u32 max_inner_ip;
    // The destination VM's tier.
    struct tier tier;
    __u8 outer[VXLAN_OVERHEAD];
    __u8 pad[2];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 262144);
    __type(key, struct l2_key);
    __type(value, struct l2_fwd);
} l2_fwd SEC(".maps");

// Port security in the fast path: who may send. Keyed by (VM port
// ifindex, source MAC) in vm_sources and by (VNI, inner source MAC) in
// overlay_sources; a frame is forwarded here only if its source is there,
// from that VTEP (overlay), with that IPv4 source and in the destination's
// tier. Anything else goes to the workers, which drop it by name. Keep in
// step with `SourceValue` in lib.rs.
struct source {
    __u32 ip;   // network byte order
    __u32 vtep; // overlay_sources: the VTEP the VM is behind
    struct tier tier;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 262144);
    __type(key, struct l2_key);
    __type(value, struct source);
} vm_sources SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 262144);
    __type(key, struct l2_key);
    __type(value, struct source);
} overlay_sources SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, DECISIONS);
    __type(key, __u32);
    __type(value, __u64);
} decisions SEC(".maps");

// Where the fast path runs: FAST_IN_XDP (this program forwards), or
// FAST_IN_TC (the interfaces carry this program in generic mode, so the
// senders keep GSO, and `xvr_tc` forwards whole GSO packets; this program
// passes the frames it would forward on to it).
#define FAST_IN_XDP 0
#define FAST_IN_TC 1
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} fast_mode SEC(".maps");

// TC mode: the ifindex of the segmenter's near end (0: none).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} segmenter SEC(".maps");

static __always_inline int fast_in_tc(void)
{
    __u32 key = 0;
    __u32 *mode = bpf_map_lookup_elem(&fast_mode, &key);
    return mode && *mode == FAST_IN_TC;
}

static __always_inline void count(__u32 decision)
{
    __u64 *n = bpf_map_lookup_elem(&decisions, &decision);
    if (n)
        *n += 1;
}

static __always_inline int pass(__u32 decision)
{
    count(decision);
    return XDP_PASS;
}

// To the AF_XDP socket of the frame's queue. Without one, a frame from
// the uplink goes to the kernel (it may be the host's); a VM's frame is
// dropped: nothing a VM sends reaches the host stack.
static __always_inline int to_socket(struct xdp_md *ctx, __u32 decision)
{
    if (ctx->data_end - ctx->data > MAX_SOCKET_FRAME && fast_in_tc())
        return pass(PASS_TO_SEGMENT);
    int from_vm = decision == TO_XSK_VM_PORT;
    __u32 fallback = from_vm ? XDP_DROP : XDP_PASS;
    __u32 no_socket = from_vm ? DROP_VM_NO_SOCKET : NO_SOCKET;
    __u32 ifindex = ctx->ingress_ifindex;
    __u32 *slot = bpf_map_lookup_elem(&port_slots, &ifindex);
    if (!slot || *slot >= MAX_PORTS || ctx->rx_queue_index >= MAX_QUEUES) {
        count(no_socket);
        return fallback;
    }
    __u32 key = *slot * MAX_QUEUES + ctx->rx_queue_index;
    int action = bpf_redirect_map(&xsks, key, fallback);
    count(action == XDP_REDIRECT ? decision : no_socket);
    return action;
}

static __always_inline __u32 fold(__u64 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return sum;
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
    if (ip->frag_off & bpf_htons(0x3fff))
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

// The workers' encap::flow_hash: one flow keeps one outer source port.
static __always_inline __u32 flow_hash(struct iphdr *ip, void *data_end)
{
    __u32 ports = 0;
    int fragment = ip->frag_off & bpf_htons(0x3fff);
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
static __always_inline void fill_outer(void *outer, __u32 inner_len, __u32 hash, __u32 vni)
{
    struct iphdr *ip = outer + sizeof(struct ethhdr);
    struct udphdr *udp = (void *)(ip + 1);
    __u8 *vni_bytes = (__u8 *)(udp + 1) + 4;
    __u16 ip_len = inner_len + 36;
    ip->tot_len = bpf_htons(ip_len);
    __u32 check = (__u16)~bpf_ntohs(ip->check) + 0xffff + ip_len;
    ip->check = bpf_htons(~fold(check));
    udp->source = bpf_htons(49152 | (hash & 0x3fff));
    udp->len = bpf_htons(inner_len + 16);
    vni_bytes[0] = vni >> 16;
    vni_bytes[1] = vni >> 8;
    vni_bytes[2] = vni;
}

// As the workers' encap::write_outer does.
static __always_inline int encap(struct xdp_md *ctx, struct l2_fwd *fwd, __u32 vni,
                                 __u32 inner_len, __u32 hash)
{
    if (bpf_xdp_adjust_head(ctx, -VXLAN_OVERHEAD))
        return -1;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (data + VXLAN_OVERHEAD > data_end)
        return XDP_ABORTED;
    __builtin_memcpy(data, fwd->outer, VXLAN_OVERHEAD);
    fill_outer(data, inner_len, hash, vni);
    count(FAST_ENCAP);
    return bpf_redirect(fwd->ifindex, 0);
}

// The inner IPv4 header of a frame whose Ethernet header is `eth`, if it
// is unicast IPv4 without options and its length fits the frame.
static __always_inline struct iphdr *unicast_ipv4(struct ethhdr *eth, void *data_end)
{
    if ((void *)(eth + 1) > data_end)
        return 0;
    if ((eth->h_dest[0] & 1) || eth->h_proto != bpf_htons(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || *(__u8 *)ip != 0x45)
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

// A frame from a VM port: its action, or -1 for the workers.
static __always_inline int fast_from_vm(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 ifindex = ctx->ingress_ifindex;
    __u32 *vni = bpf_map_lookup_elem(&port_vnis, &ifindex);
    if (!vni)
        return -1;
    struct ethhdr *eth = data;
    struct iphdr *ip = unicast_ipv4(eth, data_end);
    if (!ip)
        return -1;
    struct l2_fwd *fwd = l2_lookup(*vni, eth);
    if (!fwd || !source_ok(&vm_sources, ifindex, eth, ip->saddr, 0, fwd))
        return -1;
    if (fwd->kind != FWD_PORT && fwd->kind != FWD_ENCAP)
        return -1;
    __u32 frame_len = data_end - data;
    // Too big for the underlay: the workers answer (ICMP) or fragment. In
    // tc mode a GSO packet (larger than a socket's frame) is checked by
    // its segment size there.
    int too_big = fwd->kind == FWD_ENCAP && frame_len - sizeof(*eth) > fwd->max_inner_ip;
    if (fast_in_tc())
        return too_big && frame_len <= MAX_SOCKET_FRAME ? -1 : pass(PASS_TO_TC);
    if (too_big)
        return -1;
    if (finish_checksum(ip, bpf_ntohs(ip->tot_len), data_end))
        return -1;
    if (fwd->kind == FWD_PORT) {
        count(FAST_BRIDGE);
        return bpf_redirect(fwd->ifindex, 0);
    }
    return encap(ctx, fwd, *vni, frame_len, flow_hash(ip, data_end));
}

struct vxlanhdr {
    __u8 flags;
    __u8 reserved[3];
    __be32 vni;
};

// VXLAN to the local VTEP (`ip` checked up to the UDP header): its action,
// or -1 for the workers.
static __always_inline int fast_from_overlay(struct xdp_md *ctx, struct iphdr *ip,
                                             struct udphdr *udp)
{
    void *data_end = (void *)(long)ctx->data_end;
    if (*(__u8 *)ip != 0x45 || (ip->frag_off & bpf_htons(0x3fff)))
        return -1;
    __u32 udp_len = bpf_ntohs(udp->len);
    if (bpf_ntohs(ip->tot_len) != sizeof(*ip) + udp_len || (void *)udp + udp_len != data_end)
        return -1;
    if (fold(bpf_csum_diff(0, 0, (void *)ip, sizeof(*ip), 0)) != 0xffff)
        return -1;
    __u32 src = ip->saddr;
    if (!bpf_map_lookup_elem(&remote_vteps, &src))
        return -1;
    struct vxlanhdr *vx = (void *)(udp + 1);
    if ((void *)(vx + 1) > data_end || !(vx->flags & VXLAN_FLAG_VNI))
        return -1;
    struct ethhdr *eth = (void *)(vx + 1);
    struct iphdr *inner = unicast_ipv4(eth, data_end);
    if (!inner || outer_checksum_to_verify(ip, udp, inner, data_end))
        return -1;
    __u32 vni = bpf_ntohl(vx->vni) >> 8;
    struct l2_fwd *fwd = l2_lookup(vni, eth);
    // Never from the overlay back into it (split horizon).
    if (!fwd || fwd->kind != FWD_PORT)
        return -1;
    if (!source_ok(&overlay_sources, vni, eth, inner->saddr, src, fwd))
        return -1;
    if (fast_in_tc())
        return pass(PASS_TO_TC);
    if (finish_checksum(inner, bpf_ntohs(inner->tot_len), data_end))
        return -1;
    __u32 out = fwd->ifindex;
    if (bpf_xdp_adjust_head(ctx, VXLAN_OVERHEAD))
        return -1;
    count(FAST_DECAP);
    return bpf_redirect(out, 0);
}

SEC("xdp")
int xvr_steer(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 ifindex = ctx->ingress_ifindex;

    if (bpf_map_lookup_elem(&vm_ports, &ifindex)) {
        int action = fast_from_vm(ctx);
        if (action >= 0)
            return action;
        return to_socket(ctx, TO_XSK_VM_PORT);
    }

    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return pass(PASS_MALFORMED);
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return pass(PASS_NOT_IPV4);

    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->ihl < 5)
        return pass(PASS_MALFORMED);
    __u32 dst = ip->daddr;
    if (bpf_map_lookup_elem(&public_addrs, &dst))
        return to_socket(ctx, TO_XSK_PUBLIC);
    if (ip->protocol != IPPROTO_UDP || !bpf_map_lookup_elem(&local_vteps, &dst))
        return pass(PASS_NOT_OURS);
    if (ip->frag_off & bpf_htons(0x1fff))
        return pass(PASS_LATER_FRAGMENT);

    struct udphdr *udp = (void *)ip + ip->ihl * 4;
    if ((void *)(udp + 1) > data_end)
        return pass(PASS_MALFORMED);
    if (udp->dest != bpf_htons(VXLAN_PORT))
        return pass(PASS_NOT_OURS);
    int action = fast_from_overlay(ctx, ip, udp);
    if (action >= 0)
        return action;
    return to_socket(ctx, TO_XSK_VXLAN);
}


// ---- The fast path in tc (FAST_IN_TC) ----
// The same decisions as above, on whole GSO packets: encapsulation and
// decapsulation with bpf_skb_adjust_room, which keeps the packet's GSO
// (and a checksum left to offload stays so, for the receiver's stack).
// Only packets the XDP program passed on come here; what this program
// does not take goes on to the kernel.

#define ENCAP_FLAGS                                                            \
    (BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |                 \
     BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |                 \
     BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN))

// Headers read directly: outer Ethernet, IPv4, UDP, VXLAN, inner
// Ethernet and IPv4, and the inner ports.
#define TC_HEADERS (VXLAN_OVERHEAD + ETH_HLEN + 20 + 4)

static __always_inline struct iphdr *tc_ipv4(struct ethhdr *eth, void *data_end)
{
    if ((void *)(eth + 1) > data_end)
        return 0;
    if ((eth->h_dest[0] & 1) || eth->h_proto != bpf_htons(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || *(__u8 *)ip != 0x45)
        return 0;
    return ip;
}


// A GSO packet the fast path does not take, too big for a socket: tagged
// with its port's slot (VLAN ID slot + 1) and sent out of the segmenter's
// near end, which has no GSO (its peer carries this program natively), so
// the kernel segments it there; the far end gives the tagged segments to
// the workers' sockets, which read the port from the tag.
static __always_inline int to_segmenter(struct __sk_buff *skb, __u32 drop, __u32 sent)
{
    __u32 key = 0, ifindex = skb->ingress_ifindex;
    __u32 *out = bpf_map_lookup_elem(&segmenter, &key);
    __u32 *slot = bpf_map_lookup_elem(&port_slots, &ifindex);
    if (!out || !*out || !slot || *slot >= MAX_PORTS) {
        count(drop);
        return TC_ACT_SHOT;
    }
    if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), *slot + 1)) {
        count(drop);
        return TC_ACT_SHOT;
    }
    count(sent);
    return bpf_redirect(*out, 0);
}

static __always_inline int tc_too_big(struct __sk_buff *skb)
{
    if (skb->len <= MAX_SOCKET_FRAME + ETH_HLEN)
        return TC_ACT_OK;
    return to_segmenter(skb, DROP_TOO_BIG, TO_SEGMENTER);
}

static __always_inline int tc_from_vm(struct __sk_buff *skb, __u32 vni)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = tc_ipv4(eth, data_end);
    if (!ip || bpf_ntohs(ip->tot_len) + ETH_HLEN != skb->len)
        return -1;
    struct l2_fwd *fwd = l2_lookup(vni, eth);
    if (!fwd || !source_ok(&vm_sources, skb->ingress_ifindex, eth, ip->saddr, 0, fwd))
        return -1;
    if (fwd->kind == FWD_PORT) {
        count(FAST_BRIDGE);
        return bpf_redirect(fwd->ifindex, 0);
    }
    if (fwd->kind != FWD_ENCAP)
        return -1;
    __u32 len = skb->len;
    // A GSO packet leaves as segments of gso_size, each of which must fit.
    __u32 inner_ip = skb->gso_segs ? skb->gso_size + 20 + 60 : len - ETH_HLEN;
    if (inner_ip > fwd->max_inner_ip || len + 36 > 0xffff)
        return -1;
    __u32 hash = flow_hash(ip, data_end);
    struct ethhdr inner = *eth;
    __u32 out = fwd->ifindex;
    if (bpf_skb_adjust_room(skb, VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, ENCAP_FLAGS))
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, 0, fwd->outer, VXLAN_OVERHEAD, 0) ||
        bpf_skb_store_bytes(skb, VXLAN_OVERHEAD, &inner, ETH_HLEN, 0))
        return TC_ACT_SHOT;
    data = (void *)(long)skb->data;
    data_end = (void *)(long)skb->data_end;
    if (data + VXLAN_OVERHEAD > data_end)
        return TC_ACT_SHOT;
    fill_outer(data, len, hash, vni);
    count(FAST_ENCAP);
    return bpf_redirect(out, 0);
}

static __always_inline int tc_from_overlay(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return -1;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || *(__u8 *)ip != 0x45 || ip->protocol != IPPROTO_UDP ||
        (ip->frag_off & bpf_htons(0x3fff)) || bpf_ntohs(ip->tot_len) + ETH_HLEN != skb->len)
        return -1;
    __u32 dst = ip->daddr, src = ip->saddr;
    if (!bpf_map_lookup_elem(&local_vteps, &dst) || !bpf_map_lookup_elem(&remote_vteps, &src))
        return -1;
    struct udphdr *udp = (void *)(ip + 1);
    struct vxlanhdr *vx = (void *)(udp + 1);
    if ((void *)(vx + 1) > data_end || udp->dest != bpf_htons(VXLAN_PORT) ||
        !(vx->flags & VXLAN_FLAG_VNI))
        return -1;
    struct ethhdr *inner_eth = (void *)(vx + 1);
    struct iphdr *inner_ip = tc_ipv4(inner_eth, data_end);
    if (!inner_ip || outer_checksum_to_verify(ip, udp, inner_ip, data_end))
        return -1;
    __u32 vni = bpf_ntohl(vx->vni) >> 8;
    struct l2_fwd *fwd = l2_lookup(vni, inner_eth);
    if (!fwd || fwd->kind != FWD_PORT)
        return -1;
    if (!source_ok(&overlay_sources, vni, inner_eth, inner_ip->saddr, src, fwd))
        return -1;
    struct ethhdr inner = *inner_eth;
    __u32 out = fwd->ifindex;
    if (bpf_skb_adjust_room(skb, -VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, 0, &inner, ETH_HLEN, 0))
        return TC_ACT_SHOT;
    count(FAST_DECAP);
    return bpf_redirect(out, 0);
}

// Whether the uplink's packet is xvr's (as the XDP program decides):
// IPv4 to a public address, or VXLAN to a local VTEP.
static __always_inline int tc_ours_on_uplink(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return 0;
    __u32 dst = ip->daddr;
    if (bpf_map_lookup_elem(&public_addrs, &dst))
        return 1;
    struct udphdr *udp = (void *)ip + ip->ihl * 4;
    if (ip->protocol != IPPROTO_UDP || (void *)(udp + 1) > data_end)
        return 0;
    return udp->dest == bpf_htons(VXLAN_PORT) && bpf_map_lookup_elem(&local_vteps, &dst);
}

SEC("classifier")
int xvr_tc(struct __sk_buff *skb)
{
    if (!fast_in_tc())
        return TC_ACT_OK;
    __u32 pull = skb->len < TC_HEADERS ? skb->len : TC_HEADERS;
    if (bpf_skb_pull_data(skb, pull))
        return TC_ACT_OK;
    __u32 ifindex = skb->ingress_ifindex;
    if (bpf_map_lookup_elem(&vm_ports, &ifindex)) {
        __u32 *vni = bpf_map_lookup_elem(&port_vnis, &ifindex);
        int action = vni ? tc_from_vm(skb, *vni) : -1;
        // What the fast path does not take goes to the workers, whatever
        // its size: never to the host stack.
        if (action >= 0)
            return action;
        if (skb->len > MAX_SOCKET_FRAME + ETH_HLEN)
            return to_segmenter(skb, DROP_TOO_BIG, TO_SEGMENTER);
        return to_segmenter(skb, DROP_VM_NO_SOCKET, TC_TO_WORKERS);
    }
    int action = tc_from_overlay(skb);
    if (action >= 0)
        return action;
    return tc_ours_on_uplink(skb) ? tc_too_big(skb) : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
