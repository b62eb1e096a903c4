//! Identity comes from where a frame enters, never from what it claims.
//! A VM port accepts a frame only from one of its VMs: the source MAC is
//! a VM of that port, an IPv4 source is that VM's address (or one of its
//! allowed address pairs), and ARP names that VM as its sender (port
//! security, as OVN's `port_security`). Over the overlay the same holds
//! for the VMs behind the sending VTEP; a remote router's own MAC may
//! carry packets it routed from any VM behind that VTEP.
use super::DropReason;
use crate::table::{L2Dest, Location, PortId, Tables, TenantId, Tier, VtepId};
use crate::wire::arp::{self, Arp};
use crate::wire::{EthernetAddress, EthernetFrame, EthernetProtocol};
use std::net::Ipv4Addr;

/// Where a frame entered: a VM port, or the overlay from a VTEP in a
/// tenant's VNI, as one word (compared per frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry(u32);

impl Entry {
    pub(crate) fn port(port: PortId) -> Entry {
        Entry(1 << 31 | u32::from(port))
    }

    pub(crate) fn overlay(vtep: VtepId, tenant: TenantId) -> Entry {
        // VTEP ids stay below 2^15: the top bit is the port's.
        Entry(u32::from(vtep & 0x7fff) << 16 | u32::from(tenant))
    }
}

/// The last source a batch let in, where it entered, and what it was
/// found to be. A batch comes from one receive queue, usually from one VM,
/// so the checks run once for a run of frames from one source (by
/// callgrind: about 20 instructions a frame instead of 100 for IPv4, and
/// 150 for ARP). Only IPv4, and ARP whose sender is the frame's source,
/// are remembered: for those the key holds everything the checks read.
pub(crate) struct LastSource<T>(Option<(Entry, SourceKey, T)>);

impl<T> Default for LastSource<T> {
    fn default() -> Self {
        LastSource(None)
    }
}

/// A frame's source as bytes: its MAC with the ethertype (bytes 6 to 14),
/// and the address it claims: the IPv4 source, or ARP's sender address.
type SourceKey = (u64, u32);

#[inline(always)]
fn source_key(frame: &[u8]) -> Option<SourceKey> {
    // One bounds check; constant indices into the array need none.
    let b: &[u8; 26] = frame.get(6..32)?.try_into().ok()?;
    let mac_type = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    // The low 16 bits are the ethertype.
    match mac_type & 0xffff {
        0x0800 => Some((mac_type, u32::from_be_bytes([b[20], b[21], b[22], b[23]]))),
        // Ethernet/IPv4 ARP whose sender MAC is the frame's source MAC:
        // then the sender address is all that is left to check.
        0x0806 if b[8..14] == arp::ETHERNET_IPV4 && b[16..22] == b[..6] => {
            Some((mac_type, u32::from_be_bytes([b[22], b[23], b[24], b[25]])))
        }
        _ => None,
    }
}

impl<T: Copy> LastSource<T> {
    /// What the frame's source was found to be, if it is the last one
    /// let in through `entry`.
    #[inline(always)]
    pub(crate) fn get(&self, entry: Entry, frame: &[u8]) -> Option<T> {
        let (e, key, found) = self.0.as_ref()?;
        (*e == entry && source_key(frame) == Some(*key)).then_some(*found)
    }

    /// The frame's source, let in through `entry`, was found to be
    /// `found`.
    #[inline]
    pub(crate) fn remember(&mut self, entry: Entry, frame: &[u8], found: T) {
        if let Some(key) = source_key(frame) {
            self.0 = Some((entry, key, found));
        }
    }
}

/// What a VM port let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// A frame from the VM, as itself.
    Vm,
    /// A DHCP client's broadcast from `0.0.0.0` (a VM that has no
    /// address yet): for the router's DHCP service only, and never a
    /// source to remember (`LastSource`), or any packet from `0.0.0.0`
    /// would pass after it.
    DhcpClient,
}

/// Checks a frame from VM port `port` of `tenant` against its VMs.
pub(crate) fn vm_source(
    tables: &Tables,
    tenant: TenantId,
    port: PortId,
    frame: &[u8],
) -> Result<Admitted, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthTruncated)?;
    let src = eth.src_addr();
    let vm_ip = match tables.l2(tenant, src) {
        Some(L2Dest::Host(vm)) if vm.location == Location::Local(port) => vm.ip,
        _ => return Err(DropReason::PortSecurityMac),
    };
    if dhcp_discovery(&eth) {
        return Ok(Admitted::DhcpClient);
    }
    let lie = Lie {
        ip: DropReason::PortSecurityIp,
        arp: DropReason::PortSecurityArp,
    };
    sender(tables, tenant, src, vm_ip, &eth, lie).map(|()| Admitted::Vm)
}

/// Whether a frame is a DHCP client's broadcast from `0.0.0.0` to
/// `255.255.255.255`, as a VM without an address sends (RFC 2131 4.1).
fn dhcp_discovery(eth: &EthernetFrame<&[u8]>) -> bool {
    let ip = eth.payload();
    eth.ethertype() == EthernetProtocol::Ipv4
        && eth.dst_addr().is_broadcast()
        && ip.get(12..20) == Some(&[0, 0, 0, 0, 255, 255, 255, 255])
        && crate::service::dhcp::client_request(ip)
}

/// Checks the inner frame of VXLAN from `vtep` in `tenant`'s VNI; returns
/// the tier of the VM that sent it (None: routed by the remote router).
pub(crate) fn overlay_source(
    tables: &Tables,
    tenant: TenantId,
    vtep: VtepId,
    frame: &[u8],
) -> Result<Option<Tier>, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthTruncated)?;
    let src = eth.src_addr();
    let tenant_mac = tables
        .tenant(tenant)
        .ok_or(DropReason::StaleTables)?
        .router_mac;
    if src == tenant_mac {
        // Routed there: IPv4 from a VM behind that VTEP.
        let ip = ipv4_src(&eth).ok_or(DropReason::VxlanInnerSource)?;
        return match tables.host(tenant, ip).map(|h| h.location) {
            Some(Location::Remote(v)) if v == vtep => Ok(None),
            _ => Err(DropReason::VxlanInnerSource),
        };
    }
    let vm = match tables.l2(tenant, src) {
        Some(L2Dest::Host(vm)) if vm.location == Location::Remote(vtep) => vm,
        _ => return Err(DropReason::VxlanInnerSource),
    };
    let lie = Lie {
        ip: DropReason::VxlanInnerSource,
        arp: DropReason::VxlanInnerSource,
    };
    sender(tables, tenant, src, vm.ip, &eth, lie)?;
    Ok(Some(vm.tier))
}

/// The drops for a source that lies in IPv4 and in ARP.
struct Lie {
    ip: DropReason,
    arp: DropReason,
}

/// IPv4 must come from the VM's address or an allowed one; ARP must name
/// the VM as its sender (or nobody, for an address probe). Other
/// ethertypes carry no address to check.
fn sender(
    tables: &Tables,
    tenant: TenantId,
    mac: EthernetAddress,
    own: Ipv4Addr,
    eth: &EthernetFrame<&[u8]>,
    lie: Lie,
) -> Result<(), DropReason> {
    let may_use = |ip: Ipv4Addr| ip == own || tables.allowed_source(tenant, ip, mac);
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = ipv4_src(eth).ok_or(DropReason::Ipv4Truncated)?;
            may_use(ip).then_some(()).ok_or(lie.ip)
        }
        EthernetProtocol::Arp => {
            let arp = Arp::new(eth.payload()).ok_or(DropReason::ArpMalformed)?;
            let sender_ip = arp.sender_ip();
            let probe = sender_ip.is_unspecified();
            let ok = arp.sender_mac() == mac.0 && (probe || may_use(sender_ip));
            ok.then_some(()).ok_or(lie.arp)
        }
        _ => Ok(()),
    }
}

/// The IPv4 source address of an Ethernet frame carrying IPv4.
fn ipv4_src(eth: &EthernetFrame<&[u8]>) -> Option<Ipv4Addr> {
    let b: [u8; 4] = eth.payload().get(12..16)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}
