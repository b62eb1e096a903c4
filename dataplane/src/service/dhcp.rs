//! DHCPv4 (RFC 2131, options of RFC 2132) on each VM port's gateway
//! address, from static bindings: a VM's address is the one the tables
//! give its MAC on that port. Nothing is leased from a pool, so there is
//! no lease state to keep or lose: DISCOVER gets an OFFER of the bound
//! address; REQUEST an ACK if it asks for that address (a NAK if not);
//! INFORM an ACK with the options alone; RELEASE and DECLINE are counted
//! and need no answer.
//!
//! A port answers only its own VMs: the client's hardware address must be
//! the frame's source MAC, and a VM of that port (port security already
//! held the frame to it). The wire format is smoltcp's (`DhcpRepr`).
use super::udp::End;
use crate::table::{L2Dest, Location, PortId, PortRole, Tables, VtepId};
use crate::wire::{EthernetAddress, ETH_HEADER_LEN};
use ipnet::Ipv4Net;
use smoltcp::wire::{
    DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, DHCP_CLIENT_PORT, DHCP_SERVER_PORT,
};
use std::net::Ipv4Addr;

/// The ports DHCP clients send from and servers listen on.
pub const CLIENT_PORT: u16 = DHCP_CLIENT_PORT;
pub const SERVER_PORT: u16 = DHCP_SERVER_PORT;

/// How long a lease lasts. Bindings are static, so this only sets how
/// often a VM checks in (it renews at half of it).
pub const LEASE_SECONDS: u32 = 86_400;

/// The shortest DHCP message a reply is padded to: BOOTP's 300 bytes,
/// which some clients still insist on (RFC 1542 2.1).
const MIN_MESSAGE: usize = 300;

/// Longest reply this writes (a 576-byte IP packet, RFC 2131's minimum
/// every client takes).
pub const MAX_REPLY: usize = ETH_HEADER_LEN + 576;

/// The MTU of an Ethernet link that nobody changed.
const ETHERNET_MTU: usize = 1500;

// Option codes of RFC 2132 and RFC 3442 that smoltcp has no field for.
const OPT_DNS_SERVER: u8 = 6;
const OPT_HOSTNAME: u8 = 12;
const OPT_DOMAIN_NAME: u8 = 15;
const OPT_INTERFACE_MTU: u8 = 26;
const OPT_RENEWAL_TIME: u8 = 58;
const OPT_REBINDING_TIME: u8 = 59;

/// Whether an IPv4 packet is a DHCP client's message to a server: UDP
/// from port 68 to 67, not fragmented.
pub(crate) fn client_request(ip: &[u8]) -> bool {
    let udp = crate::wire::IpProtocol::Udp;
    super::ports(ip) == Some((udp, DHCP_CLIENT_PORT, DHCP_SERVER_PORT))
}

/// What a message got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A reply of this type, `len` bytes written.
    Sent(DhcpMessageType, usize),
    /// Nothing to send (RELEASE, DECLINE), as the protocol asks.
    Noted(DhcpMessageType),
}

/// Why a message got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a well-formed DHCP client message over UDP/IPv4.
    Malformed,
    /// Its client hardware address is not its frame's source, or no VM
    /// of its port (or the VM's address is outside the port's subnet).
    NotOurClient,
    /// A REQUEST that chose another server (its server identifier).
    OtherServer,
    /// A message type a server does not answer.
    Unexpected,
}

/// Answers `request` (an Ethernet frame that arrived on VM port `port`)
/// into `reply`, which holds `MAX_REPLY` bytes.
pub fn answer(
    tables: &Tables,
    port: PortId,
    request: &[u8],
    reply: &mut [u8],
) -> Result<Answer, Refusal> {
    let (src_mac, dhcp) = read(request)?;
    let packet = DhcpPacket::new_checked(dhcp).map_err(|_| Refusal::Malformed)?;
    let message = DhcpRepr::parse(&packet).map_err(|_| Refusal::Malformed)?;
    let bound = binding(tables, port, src_mac, &message)?;
    let Some(answer) = decide(&message, &bound)? else {
        return Ok(Answer::Noted(message.message_type));
    };
    let len = write(&bound, &message, &answer, reply).ok_or(Refusal::Malformed)?;
    Ok(Answer::Sent(answer.kind, len))
}

/// The DHCP message of a client's frame, and the frame's source MAC.
fn read(frame: &[u8]) -> Result<(EthernetAddress, &[u8]), Refusal> {
    let datagram = super::udp::read(frame).ok_or(Refusal::Malformed)?;
    if (datagram.from.port, datagram.to.port) != (DHCP_CLIENT_PORT, DHCP_SERVER_PORT) {
        return Err(Refusal::Malformed);
    }
    Ok((datagram.from.mac, datagram.payload))
}

/// The client as the tables bind it.
struct Bound<'a> {
    /// The tenant's DNS domain.
    domain: Option<&'a str>,
    router_mac: EthernetAddress,
    client_mac: EthernetAddress,
    address: Ipv4Addr,
    gateway: Ipv4Net,
    hostname: Option<&'a str>,
    /// The MTU to tell the VM, where its tenant spans hosts.
    mtu: Option<u16>,
}

fn binding<'a>(
    tables: &'a Tables,
    port: PortId,
    src_mac: EthernetAddress,
    message: &DhcpRepr<'_>,
) -> Result<Bound<'a>, Refusal> {
    let client_mac = message.client_hardware_address;
    if client_mac != src_mac {
        return Err(Refusal::NotOurClient);
    }
    let p = tables.port(port).ok_or(Refusal::NotOurClient)?;
    let PortRole::Vm { tenant, gateway } = p.role else {
        return Err(Refusal::NotOurClient);
    };
    let vm = match tables.l2(tenant, client_mac) {
        Some(L2Dest::Host(vm)) if vm.location == Location::Local(port) => vm,
        _ => return Err(Refusal::NotOurClient),
    };
    if !gateway.contains(&vm.ip) {
        return Err(Refusal::NotOurClient);
    }
    tables.tenant(tenant).ok_or(Refusal::NotOurClient)?;
    let spans_hosts = (0..tables.vteps().len())
        .any(|v| VtepId::try_from(v).is_ok_and(|v| tables.vtep_member(v, tenant)));
    // Never above Ethernet's 1500, which a VM's NIC and its port have
    // unless told otherwise: a jumbo underlay must not make VMs send
    // frames their own link drops.
    let mtu = match (spans_hosts, tables.overlay_ip_mtu()) {
        (true, Some(mtu)) => u16::try_from(mtu.min(ETHERNET_MTU)).ok(),
        _ => None,
    };
    Ok(Bound {
        domain: tables.tenant_dns(tenant).map(|d| d.domain.as_str()),
        router_mac: p.mac,
        client_mac,
        address: vm.ip,
        gateway,
        hostname: tables
            .guest(tenant, vm.ip)
            .and_then(|g| g.hostname.as_deref()),
        mtu,
    })
}

/// The reply to send: its type and the address it gives (`yiaddr`).
struct Reply {
    kind: DhcpMessageType,
    your_ip: Ipv4Addr,
    lease: bool,
}

fn decide(message: &DhcpRepr<'_>, bound: &Bound<'_>) -> Result<Option<Reply>, Refusal> {
    let offer = |kind| Reply {
        kind,
        your_ip: bound.address,
        lease: true,
    };
    match message.message_type {
        DhcpMessageType::Discover => Ok(Some(offer(DhcpMessageType::Offer))),
        DhcpMessageType::Request => {
            if message
                .server_identifier
                .is_some_and(|s| s != bound.gateway.addr())
            {
                return Err(Refusal::OtherServer);
            }
            // SELECTING and INIT-REBOOT name the address in an option;
            // RENEWING and REBINDING in `ciaddr`.
            let asked = message.requested_ip.unwrap_or(message.client_ip);
            Ok(Some(match asked == bound.address {
                true => offer(DhcpMessageType::Ack),
                false => Reply {
                    kind: DhcpMessageType::Nak,
                    your_ip: Ipv4Addr::UNSPECIFIED,
                    lease: false,
                },
            }))
        }
        DhcpMessageType::Inform => Ok(Some(Reply {
            kind: DhcpMessageType::Ack,
            your_ip: Ipv4Addr::UNSPECIFIED,
            lease: false,
        })),
        DhcpMessageType::Release | DhcpMessageType::Decline => Ok(None),
        _ => Err(Refusal::Unexpected),
    }
}

/// Where a reply goes (RFC 2131 4.1): to `ciaddr` if the client has
/// one, broadcast if it asked so or is told NAK, else to its MAC and the
/// address it is given.
fn destination(
    message: &DhcpRepr<'_>,
    reply: &Reply,
    bound: &Bound<'_>,
) -> (EthernetAddress, Ipv4Addr) {
    if reply.kind != DhcpMessageType::Nak && !message.client_ip.is_unspecified() {
        (bound.client_mac, message.client_ip)
    } else if message.broadcast || reply.kind == DhcpMessageType::Nak {
        (EthernetAddress::BROADCAST, Ipv4Addr::BROADCAST)
    } else {
        (bound.client_mac, reply.your_ip)
    }
}

/// Writes the reply frame; returns its length (None: `out` too short).
fn write(
    bound: &Bound<'_>,
    message: &DhcpRepr<'_>,
    reply: &Reply,
    out: &mut [u8],
) -> Option<usize> {
    let gateway = bound.gateway.addr();
    let lease = reply.lease.then_some(LEASE_SECONDS);
    let renew = (LEASE_SECONDS / 2).to_be_bytes();
    let rebind = (LEASE_SECONDS / 8 * 7).to_be_bytes();
    let mtu = bound.mtu.map(u16::to_be_bytes);
    let gateway_octets = gateway.octets();
    let mut options: Vec<DhcpOption<'_>> = Vec::with_capacity(5);
    if reply.kind != DhcpMessageType::Nak {
        if reply.lease {
            options.push(DhcpOption {
                kind: OPT_RENEWAL_TIME,
                data: &renew,
            });
            options.push(DhcpOption {
                kind: OPT_REBINDING_TIME,
                data: &rebind,
            });
        }
        if let Some(mtu) = &mtu {
            options.push(DhcpOption {
                kind: OPT_INTERFACE_MTU,
                data: mtu,
            });
        }
        // The gateway's DNS service answers its tenant's names.
        options.push(DhcpOption {
            kind: OPT_DNS_SERVER,
            data: &gateway_octets,
        });
        if let Some(name) = bound.hostname {
            options.push(DhcpOption {
                kind: OPT_HOSTNAME,
                data: name.as_bytes(),
            });
        }
        if let Some(domain) = bound
            .domain
            .filter(|d| d.split('.').all(super::is_dns_label))
        {
            options.push(DhcpOption {
                kind: OPT_DOMAIN_NAME,
                data: domain.as_bytes(),
            });
        }
    }
    let full = reply.kind != DhcpMessageType::Nak;
    let repr = DhcpRepr {
        message_type: reply.kind,
        transaction_id: message.transaction_id,
        secs: 0,
        client_hardware_address: bound.client_mac,
        client_ip: message.client_ip,
        your_ip: reply.your_ip,
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: full.then_some(gateway),
        subnet_mask: full.then(|| bound.gateway.netmask()),
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: message.broadcast,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(gateway),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: lease,
        renew_duration: None,
        rebind_duration: None,
        additional_options: &options,
    };
    let dhcp_len = repr.buffer_len().max(MIN_MESSAGE);
    let (dst_mac, dst_ip) = destination(message, reply, bound);
    let from = End {
        mac: bound.router_mac,
        ip: gateway,
        port: DHCP_SERVER_PORT,
    };
    let to = End {
        mac: dst_mac,
        ip: dst_ip,
        port: DHCP_CLIENT_PORT,
    };
    super::udp::write(out, (from, to), dhcp_len, |payload| {
        repr.emit(&mut DhcpPacket::new_unchecked(payload)).is_ok()
    })
}
