//! Identity comes from where a frame enters, never from what it claims.
//! A VM port accepts a frame only from one of its VMs: the source MAC is
//! a VM of that port, an IPv4 source is that VM's address (or one of its
//! allowed address pairs), and ARP names that VM as its sender (port
//! security, as OVN's `port_security`). Over the overlay the same holds
//! for the VMs behind the sending VTEP; a remote router's own MAC may
//! carry packets it routed from any VM behind that VTEP.
use super::DropReason;
use crate::table::{L2Dest, Location, PortId, Tables, TenantId, Tier, VtepId};
use crate::wire::{ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol};
use smoltcp::wire::ArpRepr;
use std::net::Ipv4Addr;

/// Checks a frame from VM port `port` of `tenant` against its VMs.
pub(crate) fn vm_source(
    tables: &Tables,
    tenant: TenantId,
    port: PortId,
    frame: &[u8],
) -> Result<(), DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthTruncated)?;
    let src = eth.src_addr();
    let vm = match tables.l2(tenant, src) {
        Some(L2Dest::Host(vm)) if vm.location == Location::Local(port) => vm,
        _ => return Err(DropReason::PortSecurityMac),
    };
    sender(tables, tenant, src, vm.ip, &eth, DropReason::PortSecurityIp)
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
    if src == tables.tenant(tenant).router_mac {
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
    sender(
        tables,
        tenant,
        src,
        vm.ip,
        &eth,
        DropReason::VxlanInnerSource,
    )?;
    Ok(Some(vm.tier))
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
    bad_ip: DropReason,
) -> Result<(), DropReason> {
    let may_use = |ip: Ipv4Addr| ip == own || tables.allowed_source(tenant, ip, mac);
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = ipv4_src(eth).ok_or(DropReason::Ipv4Truncated)?;
            may_use(ip).then_some(()).ok_or(bad_ip)
        }
        EthernetProtocol::Arp => {
            let arp =
                ArpPacket::new_checked(eth.payload()).map_err(|_| DropReason::ArpMalformed)?;
            let Ok(ArpRepr::EthernetIpv4 {
                source_hardware_addr,
                source_protocol_addr,
                ..
            }) = ArpRepr::parse(&arp)
            else {
                return Err(DropReason::ArpMalformed);
            };
            let probe = source_protocol_addr.is_unspecified();
            let ok = source_hardware_addr == mac && (probe || may_use(source_protocol_addr));
            let arp_lie = match bad_ip {
                DropReason::PortSecurityIp => DropReason::PortSecurityArp,
                other => other,
            };
            ok.then_some(()).ok_or(arp_lie)
        }
        _ => Ok(()),
    }
}

/// The IPv4 source address of an Ethernet frame carrying IPv4.
fn ipv4_src(eth: &EthernetFrame<&[u8]>) -> Option<Ipv4Addr> {
    let b: [u8; 4] = eth.payload().get(12..16)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}
