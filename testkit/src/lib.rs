//! Frames for tests, benches and example captures, built with etherparse
//! so that what checks the data path does not share its code, and network
//! namespace rigs for tests that send real traffic.
use etherparse::PacketBuilder;

pub mod iperf;
pub mod netns;
pub mod overlay;

pub type Mac = [u8; 6];
pub type Ip = [u8; 4];

/// The Ethernet and IPv4 headers of a frame to build.
#[derive(Debug, Clone, Copy)]
pub struct Headers {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: Ip,
    pub dst: Ip,
    pub ttl: u8,
}

/// Headers with TTL 64.
pub fn headers(src_mac: Mac, dst_mac: Mac, src: Ip, dst: Ip) -> Headers {
    Headers {
        src_mac,
        dst_mac,
        src,
        dst,
        ttl: 64,
    }
}

impl Headers {
    pub fn ttl(self, ttl: u8) -> Headers {
        Headers { ttl, ..self }
    }

    fn ip(&self) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        PacketBuilder::ethernet2(self.src_mac, self.dst_mac).ipv4(self.src, self.dst, self.ttl)
    }

    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.ip()
            .udp(sport, dport)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    pub fn tcp_syn(&self, sport: u16, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        self.ip()
            .tcp(sport, dport, 1, 64240)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        out
    }

    pub fn tcp_syn_ack(&self, sport: u16, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        self.ip()
            .tcp(sport, dport, 500, 64240)
            .syn()
            .ack(2)
            .write(&mut out, &[])
            .unwrap();
        out
    }

    pub fn tcp_ack(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.ip()
            .tcp(sport, dport, 1000, 64240)
            .ack(77)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    pub fn tcp_fin(&self, sport: u16, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        self.ip()
            .tcp(sport, dport, 2000, 64240)
            .fin()
            .ack(77)
            .write(&mut out, &[])
            .unwrap();
        out
    }

    pub fn ping(&self, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.ip()
            .icmpv4_echo_request(id, seq)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    pub fn pong(&self, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.ip()
            .icmpv4_echo_reply(id, seq)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// A VXLAN frame with these outer headers (UDP source `sport`, port
    /// 4789) carrying `inner`; `flags` 0x08 is a valid header. The outer
    /// UDP checksum is 0, as Linux's and most VTEPs send it.
    pub fn vxlan(&self, sport: u16, vni: u32, flags: u8, inner: &[u8]) -> Vec<u8> {
        let mut frame = self.vxlan_checksummed(sport, vni, flags, inner);
        frame[40..42].fill(0);
        frame
    }

    /// `vxlan` with the outer UDP checksum computed.
    pub fn vxlan_checksummed(&self, sport: u16, vni: u32, flags: u8, inner: &[u8]) -> Vec<u8> {
        let mut payload = vec![flags, 0, 0, 0];
        payload.extend_from_slice(&(vni << 8).to_be_bytes());
        payload.extend_from_slice(inner);
        self.udp(sport, 4789, &payload)
    }
}

/// A broadcast ARP request from `sender` for `target`.
pub fn arp_request(src_mac: Mac, sender: Ip, target: Ip) -> Vec<u8> {
    let packet = etherparse::ArpEthIpv4Packet {
        operation: etherparse::ArpOperation::REQUEST,
        sender_mac: src_mac,
        sender_ipv4: sender,
        target_mac: [0; 6],
        target_ipv4: target,
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, [0xff; 6])
        .arp(packet.into())
        .write(&mut out)
        .unwrap();
    out
}

/// A unicast ARP reply from `eth_src` to `dst_mac` in which `sender_mac`
/// claims `sender` (the frame a poisoner sends).
pub fn arp_reply(eth_src: Mac, dst_mac: Mac, sender_mac: Mac, sender: Ip, target: Ip) -> Vec<u8> {
    let packet = etherparse::ArpEthIpv4Packet {
        operation: etherparse::ArpOperation::REPLY,
        sender_mac,
        sender_ipv4: sender,
        target_mac: dst_mac,
        target_ipv4: target,
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(eth_src, dst_mac)
        .arp(packet.into())
        .write(&mut out)
        .unwrap();
    out
}

/// `frame` (Ethernet, IPv4 without options, TCP or UDP) as a sender with
/// checksum offload leaves it: the L4 checksum field holds only the folded
/// pseudo-header sum (CHECKSUM_PARTIAL).
pub fn partial_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    let l4_len = u16::from_be_bytes([frame[16], frame[17]]) - 20;
    let field = match frame[23] {
        6 => 14 + 20 + 16,
        _ => 14 + 20 + 6,
    };
    let mut sum: u32 = frame[26..34]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>()
        + u32::from(frame[23])
        + u32::from(l4_len);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[field..field + 2].copy_from_slice(&(sum as u16).to_be_bytes());
    frame
}

/// True if the RFC 1071 sum over `bytes` (a header or message that
/// includes its checksum) is all ones.
pub fn checksum_ok(bytes: &[u8]) -> bool {
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// Rewrites the IPv4 header checksum of an Ethernet frame (20-byte header
/// at offset 14), for tests that corrupt other header fields on purpose.
pub fn fix_ipv4_checksum(frame: &mut [u8]) {
    frame[24..26].fill(0);
    let mut sum: u32 = frame[14..34]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}
