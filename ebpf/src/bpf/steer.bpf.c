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

#include "lib/defs.h"
#include "lib/ctx.h"
#include "lib/maps.h"
#include "lib/checksum.h"
#include "lib/vxlan.h"
#include "lib/decide.h"
#include "lib/flows.h"

// finish_checksum as a function of its own, verified once rather than
// inlined at each of its callers (inlined in all four fast paths, it
// took the program past the verifier's limit). `ip_at`: the offset of
// the frame's IPv4 header (no options); -1 sends the frame to the
// workers.
__attribute__((noinline)) int xdp_finish_checksum(struct xdp_md *ctx, __u32 ip_at)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (ip_at > VXLAN_OVERHEAD + ETH_HLEN)
        return -1;
    struct iphdr *ip = data + ip_at;
    if ((void *)(ip + 1) > data_end)
        return -1;
    return finish_checksum(ip, bpf_ntohs(ip->tot_len), data_end);
}

// The offset of `ip` in frame `f`, for xdp_finish_checksum.
static __always_inline __u32 offset_in(struct frame *f, void *p)
{
    return p - f->data;
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
    int from_vm = decision == TO_SOCKET_VM_PORT;
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
// As the workers' encap::write_outer does.
static __always_inline int encap(struct xdp_md *ctx, struct l2_fwd *fwd, __u32 vni,
                                 __u32 inner_len, __u32 hash)
{
    if (bpf_xdp_adjust_head(ctx, -(int)VXLAN_OVERHEAD))
        return NOT_TAKEN;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (data + VXLAN_OVERHEAD > data_end)
        return XDP_ABORTED;
    __builtin_memcpy(data, fwd->outer, VXLAN_OVERHEAD);
    fill_outer(data, inner_len, hash, vni);
    count(FAST_ENCAP);
    return bpf_redirect(fwd->ifindex, 0);
}

// A frame from a VM port: its action, or NOT_TAKEN for the workers.
static __always_inline int fast_from_vm(struct xdp_md *ctx, struct frame *f)
{
    struct from_vm d;
    if (!decide_from_vm(f, &d))
        return NOT_TAKEN;
    // In tc mode every size is judged there: generic XDP hands this
    // program a GSO packet linearized, with nothing to tell it from a
    // frame, and one of two small segments (1,570 bytes) would look too
    // big for a 1,600-byte underlay, earning its sender a false "need to
    // frag" and a retransmit. tc sees the skb's segment size.
    if (fast_in_tc())
        return pass(PASS_TO_TC);
    // Too big for the underlay: the workers answer (ICMP) or fragment.
    if (d.fwd->kind == FWD_ENCAP && f->len - ETH_HLEN > d.fwd->max_inner_ip)
        return NOT_TAKEN;
    if (xdp_finish_checksum(ctx, offset_in(f, d.ip)))
        return NOT_TAKEN;
    if (d.fwd->kind == FWD_PORT) {
        count(FAST_BRIDGE);
        return bpf_redirect(d.fwd->ifindex, 0);
    }
    return encap(ctx, d.fwd, d.vni, f->len, flow_hash(d.ip, f->data_end));
}

// VXLAN to the local VTEP: its action, or NOT_TAKEN for the workers.
static __always_inline int fast_from_overlay(struct xdp_md *ctx, struct frame *f,
                                             struct uplink *up)
{
    struct from_overlay d;
    if (!decide_from_overlay(f, up, &d))
        return NOT_TAKEN;
    if (fast_in_tc())
        return pass(PASS_TO_TC);
    if (xdp_finish_checksum(ctx, offset_in(f, d.inner_ip)))
        return NOT_TAKEN;
    __u32 out = d.fwd->ifindex;
    if (bpf_xdp_adjust_head(ctx, VXLAN_OVERHEAD))
        return NOT_TAKEN;
    count(FAST_DECAP);
    return bpf_redirect(out, 0);
}

// bpf_redirect's verdict, never NOT_TAKEN: the verifier cannot know what
// the helper returns, and a caller that went on after NOT_TAKEN would
// read packet pointers that moving the head invalidated.
static __always_inline int redirect_to(__u32 ifindex)
{
    return bpf_redirect(ifindex, 0) == XDP_REDIRECT ? XDP_REDIRECT : XDP_ABORTED;
}

// How decide_flow judges a packet's length here: by its header in XDP
// mode; in tc mode not at all, as tc judges it (see fast_from_vm) and
// the packet goes on to the tc program.
static __always_inline __u32 xdp_flow_len(void)
{
    return fast_in_tc() ? FLOW_LEN_UNCHECKED : FLOW_LEN_OF_HEADER;
}

// A packet of an offloaded flow: rewritten as its worker did (and
// encapsulated, if it did) and sent on (in tc mode, passed on to the tc
// program); NOT_TAKEN for anything its entry does not vouch for.
static __always_inline int fast_flow(struct xdp_md *ctx, struct frame *f)
{
    struct offloaded o;
    // Decapsulated flows are fast_flow_decap's.
    if (!decide_flow(f, 0, 0, xdp_flow_len(), &o) || o.action->kind == FLOW_DECAP)
        return NOT_TAKEN;
    if (fast_in_tc())
        return pass(PASS_TO_TC);
    if (xdp_finish_checksum(ctx, offset_in(f, o.ip)))
        return NOT_TAKEN;
    struct flow_action *a = o.action;
    apply_flow(f, &o);
    if (a->kind == FLOW_ENCAP) {
        // Rewritten already: from here it leaves or is dropped.
        if (bpf_xdp_adjust_head(ctx, -(int)VXLAN_OVERHEAD))
            return XDP_DROP;
        void *data = (void *)(long)ctx->data;
        if (data + VXLAN_OVERHEAD > (void *)(long)ctx->data_end)
            return XDP_DROP;
        __builtin_memcpy(data, a->outer, VXLAN_OVERHEAD);
        set_outer_lengths(data, f->len);
    }
    count(FAST_FLOW);
    return redirect_to(o.out_ifindex);
}

// VXLAN to the local VTEP carrying a packet of an offloaded flow: checked
// as the fast path checks overlay frames, then decapsulated, rewritten
// as its worker did and sent on; NOT_TAKEN otherwise.
static __always_inline int fast_flow_decap(struct xdp_md *ctx, struct frame *f,
                                           struct uplink *up)
{
    struct iphdr *ip = up->ip;
    struct frame inner;
    __u32 vni;
    if (!overlay_inner(f, up, &inner, &vni))
        return NOT_TAKEN;
    struct offloaded o;
    if (!decide_flow(&inner, 1, vni, xdp_flow_len(), &o) || o.action->kind != FLOW_DECAP)
        return NOT_TAKEN;
    if (o.action->from.vtep != ip->saddr || o.action->from.vni != vni)
        return NOT_TAKEN;
    if (outer_checksum_to_verify(ip, up->udp, o.ip, f->data_end))
        return NOT_TAKEN;
    if (fast_in_tc())
        return pass(PASS_TO_TC);
    if (xdp_finish_checksum(ctx, offset_in(f, o.ip)))
        return NOT_TAKEN;
    apply_flow(&inner, &o);
    __u32 out = o.out_ifindex;
    if (bpf_xdp_adjust_head(ctx, VXLAN_OVERHEAD))
        return XDP_DROP;
    count(FAST_FLOW);
    return redirect_to(out);
}

SEC("xdp")
int xvr_steer(struct xdp_md *ctx)
{
    struct frame f = frame_of_xdp(ctx);
    __u32 ifindex = f.ifindex;

    // Offloaded flows first: they are the bulk of what is ours. (In tc
    // mode, plain ones pass on to the tc program.)
    int action = fast_flow(ctx, &f);
    if (action != NOT_TAKEN)
        return action;

    if (bpf_map_lookup_elem(&vm_ports, &ifindex)) {
        action = fast_from_vm(ctx, &f);
        if (action != NOT_TAKEN)
            return action;
        return to_socket(ctx, TO_SOCKET_VM_PORT);
    }

    struct uplink up;
    __u32 decision = classify_uplink(&f, &up);
    if (decision == TO_SOCKET_VXLAN) {
        action = fast_flow_decap(ctx, &f, &up);
        if (action != NOT_TAKEN)
            return action;
    }
    if (decision == TO_SOCKET_VXLAN) {
        action = fast_from_overlay(ctx, &f, &up);
        if (action != NOT_TAKEN)
            return action;
    }
    if (decision == TO_SOCKET_VXLAN || decision == TO_SOCKET_PUBLIC)
        return to_socket(ctx, decision);
    return pass(decision);
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
// Ethernet and IPv4, and the inner TCP header (without options).
#define TC_HEADERS (VXLAN_OVERHEAD + ETH_HLEN + sizeof(struct iphdr) + sizeof(struct tcphdr))

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

// What is ours and reached this program, not taken here, goes to the
// workers through the segmenter, never to the host: a VM's frame, or on
// the uplink what the XDP program passed on as too big for a socket or
// as a packet of an offloaded flow that this program then judged by its
// size (the host would route a public address's packet by its own
// tables). `no_segmenter`: the drop counted for a frame that fits a
// socket when there is no segmenter.
static __always_inline int tc_to_workers(struct __sk_buff *skb, __u32 no_segmenter)
{
    if (skb->len > MAX_SOCKET_FRAME + ETH_HLEN)
        return to_segmenter(skb, DROP_TOO_BIG, TO_SEGMENTER);
    return to_segmenter(skb, no_segmenter, TC_TO_WORKERS);
}

// The length of IPv4 packet `ip` as judged for the fast path: a GSO
// packet leaves as segments of gso_size (of payload), each of which must
// fit with its headers. 0 if its TCP header is out of reach.
static __always_inline __u32 tc_seg_len(struct __sk_buff *skb, struct iphdr *ip, void *data_end)
{
    if (!skb->gso_size)
        return bpf_ntohs(ip->tot_len);
    struct tcphdr *tcp = (void *)(ip + 1);
    __u32 l4_len = sizeof(struct udphdr);
    if (ip->protocol == IPPROTO_TCP) {
        if ((void *)(tcp + 1) > data_end)
            return 0;
        l4_len = tcp->doff * 4;
    }
    return skb->gso_size + sizeof(struct iphdr) + l4_len;
}

static __always_inline int tc_from_vm(struct __sk_buff *skb, struct frame *f)
{
    struct from_vm d;
    if (!decide_from_vm(f, &d))
        return NOT_TAKEN;
    struct l2_fwd *fwd = d.fwd;
    if (fwd->kind == FWD_PORT) {
        count(FAST_BRIDGE);
        return bpf_redirect(fwd->ifindex, 0);
    }
    __u32 len = f->len;
    __u32 inner_ip = tc_seg_len(skb, d.ip, f->data_end);
    if (!inner_ip || inner_ip > fwd->max_inner_ip || len + OUTER_IP_HEADERS > 0xffff)
        return NOT_TAKEN;
    __u32 hash = flow_hash(d.ip, f->data_end);
    struct ethhdr inner = *(struct ethhdr *)f->data;
    __u32 out = fwd->ifindex, vni = d.vni;
    if (bpf_skb_adjust_room(skb, VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, ENCAP_FLAGS))
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, 0, fwd->outer, VXLAN_OVERHEAD, 0) ||
        bpf_skb_store_bytes(skb, VXLAN_OVERHEAD, &inner, ETH_HLEN, 0))
        return TC_ACT_SHOT;
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    if (data + VXLAN_OVERHEAD > data_end)
        return TC_ACT_SHOT;
    fill_outer(data, len, hash, vni);
    count(FAST_ENCAP);
    return bpf_redirect(out, 0);
}

static __always_inline int tc_from_overlay(struct __sk_buff *skb, struct frame *f,
                                           struct uplink *up)
{
    struct from_overlay d;
    if (!decide_from_overlay(f, up, &d))
        return NOT_TAKEN;
    struct ethhdr inner = *d.inner_eth;
    __u32 out = d.fwd->ifindex;
    if (bpf_skb_adjust_room(skb, -(int)VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC,
                            BPF_F_ADJ_ROOM_FIXED_GSO))
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, 0, &inner, ETH_HLEN, 0))
        return TC_ACT_SHOT;
    count(FAST_DECAP);
    return bpf_redirect(out, 0);
}

// What tc_apply_flow needs of a packet, read before the helpers move it
// (its pointers then go stale); offsets as the packet will be when
// rewritten (decapsulated, if it is to be).
struct tc_packet {
    __u32 ip_off;
    __u32 check_off;
    __be32 saddr, daddr;
    __be16 sport, dport;
    __u16 ttl_word;
    // A UDP checksum of 0 (none) stays 0.
    __u64 l4_flags;
};

static __always_inline void tc_packet_of(struct frame *f, struct offloaded *o, __u32 removed,
                                         struct tc_packet *p)
{
    p->ip_off = (void *)o->ip - f->data - removed;
    p->check_off = (void *)o->check - f->data - removed;
    p->saddr = o->ip->saddr;
    p->daddr = o->ip->daddr;
    p->sport = o->ports[0];
    p->dport = o->ports[1];
    p->ttl_word = *(__u16 *)&o->ip->ttl;
    p->l4_flags = o->ip->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

// An address at `at` from `from` to `to`, with the IPv4 header checksum
// and the transport one (through its pseudo-header); nonzero on failure.
static __always_inline int tc_set_addr(struct __sk_buff *skb, struct tc_packet *p, __u32 at,
                                       __be32 from, __be32 to)
{
    if (from == to)
        return 0;
    __u32 ip_check = p->ip_off + __builtin_offsetof(struct iphdr, check);
    return bpf_l4_csum_replace(skb, p->check_off, from, to, p->l4_flags | BPF_F_PSEUDO_HDR | 4) ||
           bpf_l3_csum_replace(skb, ip_check, from, to, 4) ||
           bpf_skb_store_bytes(skb, at, &to, 4, 0);
}

// A port at `at` from `from` to `to`, with the transport checksum.
static __always_inline int tc_set_port(struct __sk_buff *skb, struct tc_packet *p, __u32 at,
                                       __be16 from, __be16 to)
{
    if (from == to)
        return 0;
    return bpf_l4_csum_replace(skb, p->check_off, from, to, p->l4_flags | 2) ||
           bpf_skb_store_bytes(skb, at, &to, 2, 0);
}

// Rewrites packet `p` as the worker did, with the checksum helpers, which
// keep a checksum left to offload (a GSO packet's) as it must be: only the
// pseudo-header's fields change it. Nonzero if a helper failed.
static __always_inline int tc_apply_flow(struct __sk_buff *skb, struct flow_action *a,
                                         struct tc_packet *p)
{
    __u32 ip_off = p->ip_off, l4_off = ip_off + sizeof(struct iphdr);
    if (bpf_skb_store_bytes(skb, 0, a->out_eth, sizeof(a->out_eth), 0))
        return -1;
    if (a->ttl_dec) {
        __u16 old = p->ttl_word;
        __u8 ttl = (__u8)(old & 0xff) - 1; // ttl is the word's first byte
        __u16 new_word = (old & 0xff00) | ttl;
        __u32 ip_check = ip_off + __builtin_offsetof(struct iphdr, check);
        if (bpf_l3_csum_replace(skb, ip_check, old, new_word, 2) ||
            bpf_skb_store_bytes(skb, ip_off + __builtin_offsetof(struct iphdr, ttl), &ttl, 1, 0))
            return -1;
    }
    return tc_set_addr(skb, p, ip_off + __builtin_offsetof(struct iphdr, saddr), p->saddr,
                       a->saddr) ||
           tc_set_port(skb, p, l4_off, p->sport, a->sport) ||
           tc_set_addr(skb, p, ip_off + __builtin_offsetof(struct iphdr, daddr), p->daddr,
                       a->daddr) ||
           tc_set_port(skb, p, l4_off + 2, p->dport, a->dport);
}

// bpf_redirect's verdict, never NOT_TAKEN (see redirect_to): the helpers
// moved the packet, and the caller must not read it again.
static __always_inline int tc_redirect_to(__u32 ifindex)
{
    return bpf_redirect(ifindex, 0) == TC_ACT_REDIRECT ? TC_ACT_REDIRECT : TC_ACT_SHOT;
}

// A packet of an offloaded flow that arrived plain (routed, translated):
// rewritten as its worker did, then encapsulated if its worker did, as
// tc_from_vm does. NOT_TAKEN for what the entry does not vouch for.
static __always_inline int tc_flow(struct __sk_buff *skb, struct frame *f)
{
    struct offloaded o;
    struct iphdr *ip = unicast_ipv4(f);
    if (!ip)
        return NOT_TAKEN;
    __u32 seg_len = tc_seg_len(skb, ip, f->data_end);
    if (!seg_len || !decide_flow_at(f, ip, 0, 0, seg_len, &o) || o.action->kind == FLOW_DECAP)
        return NOT_TAKEN;
    struct flow_action *a = o.action;
    if (a->kind == FLOW_ENCAP && f->len + OUTER_IP_HEADERS > 0xffff)
        return NOT_TAKEN;
    struct tc_packet p;
    tc_packet_of(f, &o, 0, &p);
    __u32 out = o.out_ifindex, len = f->len;
    if (tc_apply_flow(skb, a, &p))
        return TC_ACT_SHOT;
    if (a->kind == FLOW_ENCAP) {
        // The inner Ethernet header as rewritten, then the outer headers
        // in front of it.
        struct ethhdr inner;
        __builtin_memcpy(&inner, a->out_eth, sizeof(inner.h_dest) + sizeof(inner.h_source));
        inner.h_proto = bpf_htons(ETH_P_IP);
        if (bpf_skb_adjust_room(skb, VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, ENCAP_FLAGS) ||
            bpf_skb_store_bytes(skb, 0, a->outer, VXLAN_OVERHEAD, 0) ||
            bpf_skb_store_bytes(skb, VXLAN_OVERHEAD, &inner, ETH_HLEN, 0))
            return TC_ACT_SHOT;
        void *data = (void *)(long)skb->data;
        if (data + VXLAN_OVERHEAD > (void *)(long)skb->data_end)
            return TC_ACT_SHOT;
        set_outer_lengths(data, len);
    }
    count_flow(a, len);
    count(FAST_FLOW);
    return tc_redirect_to(out);
}

// VXLAN to the local VTEP carrying a packet of an offloaded flow: checked
// as fast_flow_decap checks it, decapsulated as tc_from_overlay does (the
// outer Ethernet header stays, and takes the entry's MACs), then rewritten
// as its worker did. NOT_TAKEN for what the entry does not vouch for.
static __always_inline int tc_flow_decap(struct __sk_buff *skb, struct frame *f,
                                         struct uplink *up)
{
    struct frame inner;
    __u32 vni;
    if (!overlay_inner(f, up, &inner, &vni))
        return NOT_TAKEN;
    struct iphdr *ip = unicast_ipv4(&inner);
    if (!ip)
        return NOT_TAKEN;
    struct offloaded o;
    __u32 seg_len = tc_seg_len(skb, ip, inner.data_end);
    if (!seg_len || !decide_flow_at(&inner, ip, 1, vni, seg_len, &o) ||
        o.action->kind != FLOW_DECAP)
        return NOT_TAKEN;
    struct flow_action *a = o.action;
    if (a->from.vtep != up->ip->saddr || a->from.vni != vni)
        return NOT_TAKEN;
    if (outer_checksum_to_verify(up->ip, up->udp, o.ip, f->data_end))
        return NOT_TAKEN;
    // A GSO packet keeps its tunnel GSO state through bpf_skb_adjust_room
    // (no flag clears it before BPF_F_ADJ_ROOM_DECAP_L4_UDP): harmless to
    // a VM's stack, wrong wherever the packet might be segmented again.
    // Only a VM's port takes one (as from tc_from_overlay).
    __u32 out = o.out_ifindex;
    if (skb->gso_size && !bpf_map_lookup_elem(&vm_ports, &out))
        return NOT_TAKEN;
    struct tc_packet p;
    tc_packet_of(f, &o, VXLAN_OVERHEAD, &p);
    __u32 len = inner.len;
    if (bpf_skb_adjust_room(skb, -(int)VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC,
                            BPF_F_ADJ_ROOM_FIXED_GSO))
        return TC_ACT_SHOT;
    if (tc_apply_flow(skb, a, &p))
        return TC_ACT_SHOT;
    count_flow(a, len);
    count(FAST_FLOW);
    return tc_redirect_to(out);
}

SEC("classifier")
int xvr_tc(struct __sk_buff *skb)
{
    if (!fast_in_tc())
        return TC_ACT_OK;
    __u32 pull = skb->len < TC_HEADERS ? skb->len : TC_HEADERS;
    if (bpf_skb_pull_data(skb, pull))
        return TC_ACT_OK;
    struct frame f = frame_of_skb(skb);
    __u32 ifindex = f.ifindex;
    int flow = tc_flow(skb, &f);
    if (flow != NOT_TAKEN)
        return flow;
    if (bpf_map_lookup_elem(&vm_ports, &ifindex)) {
        int action = tc_from_vm(skb, &f);
        if (action != NOT_TAKEN)
            return action;
        return tc_to_workers(skb, DROP_VM_NO_SOCKET);
    }
    struct uplink up;
    __u32 decision = classify_uplink(&f, &up);
    if (decision == TO_SOCKET_VXLAN) {
        int action = tc_flow_decap(skb, &f, &up);
        if (action != NOT_TAKEN)
            return action;
        action = tc_from_overlay(skb, &f, &up);
        if (action != NOT_TAKEN)
            return action;
    }
    if (decision == TO_SOCKET_VXLAN || decision == TO_SOCKET_PUBLIC)
        return tc_to_workers(skb, DROP_TOO_BIG);
    return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
