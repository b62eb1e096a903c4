//! Remote VTEPs on the underlay. Each carries a prebuilt outer header
//! (Ethernet/IPv4/UDP/VXLAN) so that encapsulation is one 50-byte copy plus
//! the per-packet fields (lengths, source port, VNI, IP checksum delta).
use super::FastMap;
use super::VtepId;
use crate::wire::{checksum, vxlan, EthernetAddress, VXLAN_OVERHEAD};
use std::net::Ipv4Addr;

/// Outer IPv4 TTL, as Linux's VXLAN device uses by default.
pub const OUTER_TTL: u8 = 64;

#[derive(Debug, Clone)]
pub struct Vtep {
    pub ip: Ipv4Addr,
    /// Underlay next-hop MAC for this VTEP.
    pub mac: EthernetAddress,
    /// Outer headers with zero lengths, zero VNI, zero source port and the
    /// IPv4 checksum of that zero-length header.
    pub template: [u8; VXLAN_OVERHEAD],
}

#[derive(Debug, Default, Clone)]
pub struct VtepTable {
    vteps: Vec<Vtep>,
    by_ip: FastMap<u32, VtepId>,
}

impl VtepTable {
    pub fn insert(
        &mut self,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        local_ip: Ipv4Addr,
        local_mac: EthernetAddress,
    ) -> VtepId {
        let template = outer_template(local_mac, mac, local_ip, ip);
        let vtep = Vtep { ip, mac, template };
        if let Some(&id) = self.by_ip.get(&u32::from(ip)) {
            if let Some(known) = self.vteps.get_mut(usize::from(id)) {
                *known = vtep;
                return id;
            }
        }
        let id = self.vteps.len() as VtepId;
        self.vteps.push(vtep);
        self.by_ip.insert(u32::from(ip), id);
        id
    }

    #[inline]
    pub fn get(&self, id: VtepId) -> Option<&Vtep> {
        self.vteps.get(usize::from(id))
    }

    #[inline]
    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<VtepId> {
        self.by_ip.get(&u32::from(ip)).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Vtep> {
        self.vteps.iter()
    }

    pub fn len(&self) -> usize {
        self.vteps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vteps.is_empty()
    }
}

fn outer_template(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
) -> [u8; VXLAN_OVERHEAD] {
    let mut t = [0u8; VXLAN_OVERHEAD];
    t[0..6].copy_from_slice(&dst_mac.0);
    t[6..12].copy_from_slice(&src_mac.0);
    t[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[6] = 0x40; // DF: the underlay must carry the frame whole
    ip[8] = OUTER_TTL;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src_ip.octets());
    ip[16..20].copy_from_slice(&dst_ip.octets());
    let c = checksum::of(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    t[14..34].copy_from_slice(&ip);
    t[36..38].copy_from_slice(&vxlan::UDP_PORT.to_be_bytes());
    t[42] = vxlan::FLAG_VNI_VALID;
    t
}
