//! Tenant isolation as a property: over random configurations in which
//! tenants reuse the same subnets, addresses and MACs, with tiers under
//! network ACLs, and random packets (from real VMs and forged sources)
//! from every port and every VNI, no frame of tenant A ever leaves on a
//! port of tenant B or inside B's VNI, nothing leaves the uplink
//! unencapsulated but a tenant's internet traffic (never toward the
//! underlay), and after a tenant is deleted none of its frames leave.
use proptest::prelude::*;
use std::net::Ipv4Addr;
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::table::{
    Action, NextHop, Port, PortId, PortRole, Rule, Tables, TablesBuilder, Tenant, TenantId, TierAcl,
};
use xvr_dataplane::wire::EthernetAddress;
use xvr_dataplane::{Pipeline, Verdict};

const LOCAL_VTEP: [u8; 4] = [198, 18, 0, 1];
/// The host's underlay network, guarded from tenants' internet traffic.
const UNDERLAY: &str = "198.18.0.0/24";
const UPLINK_MTU: u16 = 1550;
const VTEPS: [[u8; 4]; 2] = [[198, 18, 0, 2], [198, 18, 0, 3]];
const SUBNETS: [&str; 3] = ["10.0.0.1/24", "10.0.1.1/24", "10.2.0.1/16"];
/// Host addresses drawn from the subnets above, shared by every tenant.
const HOSTS: [[u8; 4]; 7] = [
    [10, 0, 0, 10],
    [10, 0, 0, 11],
    [10, 0, 1, 10],
    [10, 2, 3, 4],
    [10, 0, 0, 1],
    [198, 19, 0, 1],
    [198, 18, 0, 7],
];

fn mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x10, i]
}

/// A host: address index, MAC index, and a local port slot (`Ok`) or a
/// remote VTEP index (`Err`).
type HostSpec = (usize, u8, Result<usize, usize>);
/// A tenant: subnet index per port, hosts, default route kind.
type TenantSpec = (Vec<usize>, Vec<HostSpec>, u8);

#[derive(Debug, Clone)]
struct Config {
    /// Per tenant: ports (subnet index each), hosts (address index, MAC
    /// index, local port slot or remote VTEP), default route kind.
    tenants: Vec<TenantSpec>,
}

fn config() -> impl Strategy<Value = Config> {
    let host = (
        0..HOSTS.len(),
        0u8..6,
        prop_oneof![(0usize..3).prop_map(Ok), (0usize..2).prop_map(Err)],
    );
    let tenant = (
        prop::collection::vec(0..SUBNETS.len(), 1..3),
        prop::collection::vec(host, 0..6),
        0u8..3,
    );
    prop::collection::vec(tenant, 2..4).prop_map(|tenants| Config { tenants })
}

struct Built {
    tables: Tables,
    vnis: Vec<u32>,
    /// MACs a frame may be sent to: router, port and host MACs of all tenants.
    macs: Vec<[u8; 6]>,
    /// The VMs a frame may come from: per port id, (MAC, address) of its
    /// local VMs; per VTEP index, of the VMs behind it.
    local: Vec<Vec<([u8; 6], [u8; 4])>>,
    remote: Vec<Vec<([u8; 6], [u8; 4])>>,
    /// Per tenant: whether its default route is the internet.
    internet: Vec<bool>,
}

/// The tables of `config`, with tenant `deleted` (if any) gone: its id
/// vacant, as the control plane leaves it.
fn build(config: &Config, deleted: Option<usize>) -> Built {
    let mut b = TablesBuilder::new();
    let mut local: Vec<Vec<([u8; 6], [u8; 4])>> = vec![Vec::new()];
    let mut remote: Vec<Vec<([u8; 6], [u8; 4])>> = vec![Vec::new(); VTEPS.len()];
    let mut internet = Vec::new();
    let mut vnis = Vec::new();
    let mut macs = vec![[0xff; 6]];
    for (t, _) in config.tenants.iter().enumerate() {
        let vni = 5000 + t as u32;
        vnis.push(vni);
        if Some(t) != deleted {
            let tenant = Tenant::new(format!("t{t}"), vni, Tenant::default_router_mac(vni));
            b.add_tenant_at(t as TenantId, tenant);
        }
        macs.push(Tenant::default_router_mac(vni).0);
    }
    let uplink = PortRole::Uplink {
        ip: LOCAL_VTEP.into(),
        internet_gateway_mac: Some(EthernetAddress(mac(0xfe))),
        mtu: UPLINK_MTU,
    };
    b.add_port(Port {
        name: "up0".into(),
        mac: EthernetAddress(mac(0xf0)),
        role: uplink,
    });
    let vteps: Vec<_> = VTEPS
        .iter()
        .enumerate()
        .map(|(i, ip)| b.add_vtep((*ip).into(), EthernetAddress(mac(0xe0 + i as u8))))
        .collect();
    let mut next_port: PortId = 1;
    for (t, (subnets, hosts, default)) in config.tenants.iter().enumerate() {
        let tenant = t as TenantId;
        internet.push(*default == 0);
        if Some(t) == deleted {
            continue;
        }
        let mut ports = Vec::new();
        let mut seen = Vec::new();
        for &s in subnets {
            if seen.contains(&s) {
                continue; // one port per subnet keeps gateways distinct
            }
            seen.push(s);
            // Port MACs repeat across tenants on purpose.
            let port_mac = mac(0x80 + s as u8);
            macs.push(port_mac);
            let role = PortRole::Vm {
                tenant,
                gateway: SUBNETS[s].parse().unwrap(),
            };
            b.add_port(Port {
                name: format!("p{next_port}"),
                mac: EthernetAddress(port_mac),
                role,
            });
            ports.push(next_port);
            local.push(Vec::new());
            next_port += 1;
        }
        for &(h, m, location) in hosts {
            let ip = Ipv4Addr::from(HOSTS[h]);
            macs.push(mac(m));
            match location {
                Ok(slot) => {
                    let port = ports[slot % ports.len()];
                    local[usize::from(port)].push((mac(m), HOSTS[h]));
                    b.add_local_host(tenant, ip, EthernetAddress(mac(m)), port)
                }
                Err(v) => {
                    remote[v].push((mac(m), HOSTS[h]));
                    b.add_remote_host(tenant, ip, EthernetAddress(mac(m)), vteps[v])
                }
            }
        }
        let next_hop = match default {
            0 => NextHop::Internet,
            1 => NextHop::Via(Ipv4Addr::from(HOSTS[0])),
            _ => NextHop::Blackhole,
        };
        b.add_route(tenant, "0.0.0.0/0".parse().unwrap(), next_hop);
        // The 10.0.1.0/24 tier takes only pings from other tiers.
        let ping = Rule {
            src: "0.0.0.0/0".parse().unwrap(),
            dst: "0.0.0.0/0".parse().unwrap(),
            proto: Some(1),
            ports: (8 << 8, 8 << 8 | 0xff),
            action: Action::Allow,
        };
        let tier = TierAcl::new("10.0.1.0/24".parse().unwrap(), vec![ping], Vec::new());
        b.set_tier_acl(tenant, tier);
    }
    Built {
        tables: b.build().with_protected(vec![UNDERLAY.parse().unwrap()]),
        vnis,
        macs,
        local,
        remote,
        internet,
    }
}

#[derive(Debug, Clone)]
struct Packet {
    port: usize,
    /// For uplink packets: VXLAN from this VTEP (index; 2 = unknown) with
    /// this VNI (index into the tenants' VNIs; past the end = unknown).
    vtep: usize,
    vni: usize,
    dst_mac: usize,
    /// The sending VM among those the port (or VTEP) has; past the end,
    /// a forged source (MAC 02:00:00:00:00:40, address `src_ip`).
    src_vm: usize,
    src_ip: usize,
    dst_ip: usize,
    kind: u8,
    ttl: u8,
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        (0usize..16, 0usize..3, 0usize..5, 0usize..64, 0usize..4),
        0..HOSTS.len(),
        0..HOSTS.len(),
        0u8..4,
        prop_oneof![Just(1u8), Just(2), Just(64)],
    )
        .prop_map(
            |((port, vtep, vni, dst_mac, src_vm), src_ip, dst_ip, kind, ttl)| Packet {
                port,
                vtep,
                vni,
                dst_mac,
                src_vm,
                src_ip,
                dst_ip,
                kind,
                ttl,
            },
        )
}

/// The frame `p` describes, from `vms[p.src_vm]` if there is one.
fn inner_frame(p: &Packet, dst_mac: [u8; 6], vms: &[([u8; 6], [u8; 4])]) -> Vec<u8> {
    let (src_mac, src) = vms
        .get(p.src_vm)
        .copied()
        .unwrap_or((mac(0x40), HOSTS[p.src_ip]));
    let dst = HOSTS[p.dst_ip];
    let h = xvr_testkit::headers(src_mac, dst_mac, src, dst).ttl(p.ttl);
    match p.kind {
        0 => h.udp(1000, 2000, b"payload"),
        1 => h.tcp_syn(1000, 80),
        2 => h.ping(1, 1, b"ping"),
        _ => xvr_testkit::arp_request(src_mac, src, dst),
    }
}

fn vxlan_frame(vtep: [u8; 4], vni: u32, inner: &[u8]) -> Vec<u8> {
    xvr_testkit::headers(mac(0xe0), mac(0xf0), vtep, LOCAL_VTEP).vxlan(50000, vni, 0x08, inner)
}

/// The VNI of a frame we sent into the overlay, if it is one.
fn sent_vni(frame: &[u8]) -> Option<u32> {
    let headers = etherparse::PacketHeaders::from_ethernet_slice(frame).ok()?;
    match headers.transport {
        Some(etherparse::TransportHeader::Udp(udp)) if udp.destination_port == 4789 => {
            let vx = headers.payload.slice();
            Some(u32::from_be_bytes([0, vx[4], vx[5], vx[6]]))
        }
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_frame_crosses_tenants(
        config in config(),
        packets in prop::collection::vec(packet(), 1..100),
        deleted in prop::option::of(0usize..4),
    ) {
        let deleted = deleted.filter(|&d| d < config.tenants.len());
        let built = build(&config, deleted);
        let tables = &built.tables;
        let port_count = tables.ports().len();
        // (in port, input frame, the tenant it belongs to, if any)
        let mut inputs: Vec<(PortId, Vec<u8>, Option<TenantId>)> = Vec::new();
        for p in &packets {
            let port = (p.port % port_count) as PortId;
            let dst_mac = built.macs[p.dst_mac % built.macs.len()];
            match tables.port(port).unwrap().tenant() {
                Some(tenant) => {
                    let inner = inner_frame(p, dst_mac, &built.local[usize::from(port)]);
                    inputs.push((port, inner, Some(tenant)))
                }
                None => {
                    let vni = built.vnis.get(p.vni).copied().unwrap_or(9999);
                    let vtep = VTEPS.get(p.vtep).copied().unwrap_or([198, 18, 0, 99]);
                    let known = VTEPS.get(p.vtep).is_some();
                    let vms = built.remote.get(p.vtep).map_or(&[][..], |v| v.as_slice());
                    let inner = inner_frame(p, dst_mac, vms);
                    let tenant = tables.tenant_by_vni(vni).filter(|_| known);
                    inputs.push((port, vxlan_frame(vtep, vni, &inner), tenant));
                }
            }
        }
        let mut pipeline = Pipeline::new();
        let mut outputs = Vec::new();
        MemoryIo::new().run(&mut pipeline, tables, inputs.iter().map(|(p, f, _)| (*p, f.as_slice())), |port, verdict, data| {
            outputs.push((port, verdict, data.to_vec()));
        });
        prop_assert_eq!(outputs.len(), inputs.len());
        for ((in_port, input, tenant), (_, verdict, data)) in inputs.iter().zip(&outputs) {
            let Verdict::Tx(out) = *verdict else { continue };
            let tenant = tenant.expect("a frame of no tenant was transmitted");
            prop_assert!(Some(usize::from(tenant)) != deleted, "a deleted tenant's frame left");
            let out_port = tables.port(out).unwrap();
            // Into the 10.0.1.0/24 tier from a VM port of another tier:
            // pings only (its ACL).
            let tier = |port: PortId| match tables.port(port).map(|p| p.role) {
                Some(PortRole::Vm { gateway, .. }) => Some(gateway.trunc()),
                _ => None,
            };
            let db: ipnet::Ipv4Net = "10.0.1.0/24".parse().unwrap();
            // Bridged there, or routed to an address of the tier (the
            // ACL judges addresses; a generated VM may sit outside its
            // port's subnet, which the control plane would refuse).
            let from_other_tier = tier(*in_port).is_some_and(|t| t != db);
            let routed = data[6..12] == out_port.mac.0;
            let to_db = db.contains(&std::net::Ipv4Addr::new(data[30], data[31], data[32], data[33]));
            if from_other_tier && tier(out) == Some(db) && data[12..14] == [0x08, 0x00] && (!routed || to_db) {
                prop_assert!(data[23] == 1, "past the tier's ACL: {:02x?}", data);
            }
            match out_port.tenant() {
                Some(t) => prop_assert_eq!(t, tenant, "frame from port {} left on port {} of another tenant: {:02x?}", in_port, out, input),
                None => match sent_vni(data) {
                    Some(vni) => prop_assert_eq!(vni, tables.tenant(tenant).unwrap().vni, "frame from port {} sent with another tenant's VNI", in_port),
                    None => {
                        // Unencapsulated out of the uplink: a tenant's
                        // internet traffic, never toward the underlay.
                        let answer = tables.port(*in_port).is_some_and(|p| p.is_uplink());
                        prop_assert!(answer || built.internet[usize::from(tenant)], "frame of a tenant without internet left the uplink bare: {:02x?}", input);
                        let dst = std::net::Ipv4Addr::new(data[30], data[31], data[32], data[33]);
                        let underlay: ipnet::Ipv4Net = UNDERLAY.parse().unwrap();
                        prop_assert!(!underlay.contains(&dst), "tenant traffic to the underlay: {:02x?}", data);
                    }
                },
            }
        }
        let transmitted = outputs.iter().filter(|o| matches!(o.1, Verdict::Tx(_))).count() as u64;
        let dropped = pipeline.stats.total_drops();
        let kernel = outputs.iter().filter(|o| o.1 == Verdict::Kernel).count() as u64;
        prop_assert_eq!(transmitted + kernel + dropped - pipeline.stats.events_of(xvr_dataplane::Event::IcmpErrorSent), inputs.len() as u64);
    }
}
