// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Constants and lengths shared by the steering and tc programs.
#ifndef XVR_DEFS_H
#define XVR_DEFS_H

#define VXLAN_PORT 4789
#define MAX_QUEUES 16
// Interfaces a host serves: the segmenter tags frames with slot + 1 as a
// VLAN ID (12 bits, 4095 reserved), so at most 4094.
#define MAX_PORTS 4094
#define VXLAN_FLAG_VNI 0x08

struct vxlanhdr {
    __u8 flags;
    __u8 reserved[3];
    __be32 vni;
};

// What VXLAN puts in front of the inner frame: outer Ethernet, IPv4
// without options, UDP, VXLAN.
#define OUTER_IP_HEADERS (sizeof(struct iphdr) + sizeof(struct udphdr) + sizeof(struct vxlanhdr))
#define VXLAN_OVERHEAD (ETH_HLEN + OUTER_IP_HEADERS)
// IPv4 flags and fragment offset that make a fragment (MF or an offset).
#define FRAGMENT_BITS 0x3fff
// The fragment offset alone: set on every fragment but the first.
#define FRAGMENT_OFFSET 0x1fff
// What a fast-path helper returns when it does not take the frame: the
// caller sends it on to the workers. Never an XDP or tc verdict.
#define NOT_TAKEN (-1)
// The largest frame an AF_XDP socket takes: a UMEM chunk (FRAME_SIZE in
// dataplane/src/frame.rs) less the kernel's headroom.
#define MAX_SOCKET_FRAME (2048 - 256)

#endif
