// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// XDP programs of the end-to-end benchmark rig (bench/, xvr-e2e):
//   - generate: run with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES, it
//     sends its test frame out of the interface in tx_port (a DEVMAP),
//     cycling over `flows` flows so they spread: the UDP source port runs
//     over 1024..65535, then the destination port moves on by one (in
//     VXLAN, the inner packet's);
//   - count_and_drop: the sink, counting what arrives (per CPU).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Source ports a flow may have (1024..65535).
#define SPORTS 64512
// Ethernet, IPv4 without options, UDP; and the same in VXLAN.
#define PLAIN_HEADERS (14 + 20 + 8)
#define VXLAN_HEADERS (PLAIN_HEADERS + 8 + PLAIN_HEADERS)

// The test frame's headers, written back into each frame before it is
// sent: live frames' pages are recycled without being reset, so a device
// under test that rewrites headers in place (NAT, routing, decapsulation)
// would otherwise send the generator its own rewrites.
struct head {
    // How many bytes of `bytes` to write: 0, PLAIN_HEADERS or VXLAN_HEADERS.
    __u32 len;
    // Where the UDP ports that the flows cycle over sit (the inner
    // ones in VXLAN).
    __u32 port_at;
    __u8 bytes[VXLAN_HEADERS];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct head);
} heads SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bpf_devmap_val);
} tx_port SEC(".maps");

// [0]: number of UDP source ports to cycle over (0 or 1: leave it alone).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} flows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} sequence SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} received SEC(".maps");

SEC("xdp")
int generate(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    __u32 *n_flows = bpf_map_lookup_elem(&flows, &zero);
    __u64 *seq = bpf_map_lookup_elem(&sequence, &zero);
    struct head *head = bpf_map_lookup_elem(&heads, &zero);
    if (!n_flows || !seq || !head)
        return XDP_ABORTED;
    if (head->len == PLAIN_HEADERS) {
        if (data + PLAIN_HEADERS > end)
            return XDP_ABORTED;
        __builtin_memcpy(data, head->bytes, PLAIN_HEADERS);
    } else if (head->len == VXLAN_HEADERS) {
        if (data + VXLAN_HEADERS > end)
            return XDP_ABORTED;
        __builtin_memcpy(data, head->bytes, VXLAN_HEADERS);
    }
    if (*n_flows > 1) {
        __u32 at = head->port_at;
        if (at > VXLAN_HEADERS)
            return XDP_ABORTED;
        __u16 *ports = data + at;
        if ((void *)(ports + 2) > end)
            return XDP_ABORTED;
        // The test frame's UDP checksum is zero, so the ports need no fix.
        __u32 flow = *seq % *n_flows;
        ports[0] = bpf_htons(1024 + flow % SPORTS);
        ports[1] = bpf_htons(bpf_ntohs(ports[1]) + flow / SPORTS);
        *seq += 1;
    }
    return bpf_redirect_map(&tx_port, 0, 0);
}

SEC("xdp")
int count_and_drop(struct xdp_md *ctx)
{
    __u32 zero = 0;
    __u64 *n = bpf_map_lookup_elem(&received, &zero);
    if (n)
        *n += 1;
    return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
