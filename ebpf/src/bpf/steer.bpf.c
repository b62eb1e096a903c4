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
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define VXLAN_PORT 4789
#define MAX_QUEUES 16
#define MAX_PORTS 256

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

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, DECISIONS);
    __type(key, __u32);
    __type(value, __u64);
} decisions SEC(".maps");

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

static __always_inline int to_socket(struct xdp_md *ctx, __u32 decision)
{
    __u32 ifindex = ctx->ingress_ifindex;
    __u32 *slot = bpf_map_lookup_elem(&port_slots, &ifindex);
    if (!slot || *slot >= MAX_PORTS || ctx->rx_queue_index >= MAX_QUEUES)
        return pass(NO_SOCKET);
    __u32 key = *slot * MAX_QUEUES + ctx->rx_queue_index;
    int action = bpf_redirect_map(&xsks, key, XDP_PASS);
    count(action == XDP_REDIRECT ? decision : NO_SOCKET);
    return action;
}

SEC("xdp")
int xvr_steer(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 ifindex = ctx->ingress_ifindex;

    if (bpf_map_lookup_elem(&vm_ports, &ifindex))
        return to_socket(ctx, TO_XSK_VM_PORT);

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
    return to_socket(ctx, TO_XSK_VXLAN);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
