//! ARP for Ethernet and IPv4 (RFC 826), the only kind the router speaks,
//! read and written at fixed offsets. smoltcp's `ArpPacket` and `ArpRepr`
//! check and copy field by field and cost the ARP reply path about 50
//! instructions a frame more (callgrind, `scripts/insn-count`, path
//! `arp_reply`); this layout has one shape, so one length check and one
//! 6-byte compare decide it.
use std::borrow::Borrow;
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const LEN: usize = 28;
/// Hardware type Ethernet, protocol IPv4, address lengths 6 and 4.
pub const ETHERNET_IPV4: [u8; 6] = [0, 1, 0x08, 0x00, 6, 4];
/// The `operation` of a request and of a reply.
pub const REQUEST: u16 = 1;
pub const REPLY: u16 = 2;

/// A view of an Ethernet/IPv4 ARP packet (the bytes after the Ethernet
/// header). Once `new` succeeds no accessor can fail.
pub struct Arp<T>(T);

impl<'a> Arp<&'a [u8; LEN]> {
    /// The packet at the start of `bytes`, if it is Ethernet/IPv4 ARP.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        let a: &[u8; LEN] = bytes.get(..LEN)?.try_into().ok()?;
        (a[..6] == ETHERNET_IPV4).then_some(Arp(a))
    }
}

impl<'a> Arp<&'a mut [u8; LEN]> {
    #[inline]
    pub fn new_mut(bytes: &'a mut [u8]) -> Option<Self> {
        let a: &mut [u8; LEN] = bytes.get_mut(..LEN)?.try_into().ok()?;
        (a[..6] == ETHERNET_IPV4).then_some(Arp(a))
    }

    /// Turns the request into the reply that `mac` owns its target
    /// address, in place: to the requester, from `mac`.
    #[inline]
    pub fn answer(&mut self, mac: [u8; 6]) {
        let a = &mut *self.0;
        let (requester_mac, requester_ip, target_ip) = (
            [a[8], a[9], a[10], a[11], a[12], a[13]],
            [a[14], a[15], a[16], a[17]],
            [a[24], a[25], a[26], a[27]],
        );
        a[6..8].copy_from_slice(&REPLY.to_be_bytes());
        a[8..14].copy_from_slice(&mac);
        a[14..18].copy_from_slice(&target_ip);
        a[18..24].copy_from_slice(&requester_mac);
        a[24..28].copy_from_slice(&requester_ip);
    }
}

impl<T: Borrow<[u8; LEN]>> Arp<T> {
    #[inline]
    pub fn operation(&self) -> u16 {
        let a = self.0.borrow();
        u16::from_be_bytes([a[6], a[7]])
    }

    #[inline]
    pub fn sender_mac(&self) -> [u8; 6] {
        let a = self.0.borrow();
        [a[8], a[9], a[10], a[11], a[12], a[13]]
    }

    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        let a = self.0.borrow();
        Ipv4Addr::new(a[14], a[15], a[16], a[17])
    }

    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        let a = self.0.borrow();
        Ipv4Addr::new(a[24], a[25], a[26], a[27])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress};

    fn request() -> Vec<u8> {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 0x0a]),
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 10),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
        };
        let mut b = vec![0; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        b
    }

    #[test]
    fn reads_what_smoltcp_writes() {
        let b = request();
        let arp = Arp::new(&b).unwrap();
        assert_eq!(arp.operation(), REQUEST);
        assert_eq!(arp.sender_mac(), [2, 0, 0, 0, 0, 0x0a]);
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(arp.target_ip(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn answers_as_smoltcp_would() {
        let mut b = request();
        let router = [2, 0, 0, 0, 0, 1];
        Arp::new_mut(&mut b).unwrap().answer(router);
        let parsed = ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            parsed,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(router),
                source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
                target_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 0x0a]),
                target_protocol_addr: Ipv4Addr::new(10, 0, 0, 10),
            }
        );
    }

    #[test]
    fn refuses_short_and_foreign_arp() {
        let b = request();
        assert!(Arp::new(&b[..LEN - 1]).is_none());
        let mut other = b.clone();
        other[4] = 8; // an 8-byte hardware address
        assert!(Arp::new(&other).is_none());
    }
}
