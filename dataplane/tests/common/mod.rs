//! A two-tenant host used by the pipeline tests: tenants A and B with the
//! same subnet 10.0.0.0/24, local VMs, remote VMs behind one VTEP, and an
//! uplink. Packets are built and parsed with etherparse, independently of
//! the smoltcp views the pipeline uses (see `xvr-testkit`).
#![allow(dead_code, unused_imports)]
use std::net::Ipv4Addr;
use xvr_dataplane::handoff::Handoff;
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::pipeline::owner::Workers;
use xvr_dataplane::table::{
    NextHop, Port, PortId, PortRole, SourceNat, Tables, TablesBuilder, Tenant, TenantId,
};
use xvr_dataplane::wire::EthernetAddress;
use xvr_dataplane::worker::Worker;
use xvr_dataplane::{Pipeline, Verdict};
use xvr_testkit::headers;
pub use xvr_testkit::{checksum_ok, fix_ipv4_checksum};

pub const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const INTERNET_GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
pub const VTEP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Underlay MTU: inner IPv4 packets of up to 1500 bytes fit.
pub const UPLINK_MTU: u16 = 1550;
pub const VNI_A: u32 = 1001;
pub const VNI_B: u32 = 1002;

pub const UP: PortId = 0;
pub const A1: PortId = 1; // tenant A, 10.0.0.1/24
pub const A2: PortId = 2; // tenant A, 10.0.1.1/24
pub const A3: PortId = 3; // tenant A, 10.0.0.1/24 (a second VM in A1's subnet)
pub const B1: PortId = 4; // tenant B, 10.0.0.1/24

pub const A1_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
pub const A2_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x02];
pub const A3_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x03];
pub const B1_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x01];

pub const VM_A10_MAC: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x10]; // A 10.0.0.10 on A1
pub const VM_A11_MAC: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x11]; // A 10.0.0.11 on A3
pub const VM_A110_MAC: [u8; 6] = [0x02, 0x0a, 0, 0, 1, 0x10]; // A 10.0.1.10 on A2
pub const VM_A20_MAC: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x20]; // A 10.0.0.20, remote
pub const VM_B10_MAC: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 0x10]; // B 10.0.0.10 on B1
pub const VM_B20_MAC: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 0x20]; // B 10.0.0.20, remote

pub const TENANT_A: TenantId = 0;
pub const TENANT_B: TenantId = 1;

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn mac(m: [u8; 6]) -> EthernetAddress {
    EthernetAddress(m)
}

pub fn tables() -> Tables {
    builder().build()
}

/// The tables of `tables()`, still open for more.
pub fn builder() -> TablesBuilder {
    let mut b = TablesBuilder::new();
    let a = b.add_tenant(Tenant::new("a", VNI_A, Tenant::default_router_mac(VNI_A)));
    let bt = b.add_tenant(Tenant::new("b", VNI_B, Tenant::default_router_mac(VNI_B)));
    assert_eq!((a, bt), (TENANT_A, TENANT_B));
    let up = PortRole::Uplink {
        ip: LOCAL_VTEP,
        internet_gateway_mac: Some(mac(INTERNET_GW_MAC)),
        mtu: UPLINK_MTU,
    };
    let vm = |tenant, gw: &str| PortRole::Vm {
        tenant,
        gateway: gw.parse().unwrap(),
    };
    let ports = [
        ("up0", UPLINK_MAC, up),
        ("a1", A1_MAC, vm(a, "10.0.0.1/24")),
        ("a2", A2_MAC, vm(a, "10.0.1.1/24")),
        ("a3", A3_MAC, vm(a, "10.0.0.1/24")),
        ("b1", B1_MAC, vm(bt, "10.0.0.1/24")),
    ];
    for (i, (name, m, role)) in ports.into_iter().enumerate() {
        assert_eq!(
            b.add_port(Port {
                name: name.into(),
                mac: mac(m),
                role
            }),
            i as PortId
        );
    }
    b.add_local_host(a, ip("10.0.0.10"), mac(VM_A10_MAC), A1);
    b.add_local_host(a, ip("10.0.0.11"), mac(VM_A11_MAC), A3);
    b.add_local_host(a, ip("10.0.1.10"), mac(VM_A110_MAC), A2);
    b.add_local_host(bt, ip("10.0.0.10"), mac(VM_B10_MAC), B1);
    let vtep = b.add_vtep(REMOTE_VTEP, mac(VTEP_MAC));
    b.add_remote_host(a, ip("10.0.0.20"), mac(VM_A20_MAC), vtep);
    b.add_remote_host(bt, ip("10.0.0.20"), mac(VM_B20_MAC), vtep);
    b.add_route(a, "0.0.0.0/0".parse().unwrap(), NextHop::Internet);
    b.add_route(a, "10.9.0.0/16".parse().unwrap(), NextHop::Blackhole);
    b.add_route(
        a,
        "10.5.0.0/16".parse().unwrap(),
        NextHop::Via(ip("10.0.0.10")),
    );
    b
}

/// Runs one frame arriving on `port` through a fresh pipeline.
pub fn run(tables: &Tables, port: PortId, frame: &[u8]) -> (Verdict, Vec<u8>, Pipeline) {
    let mut pipeline = Pipeline::new();
    let (verdict, out) = MemoryIo::new().run_one(&mut pipeline, tables, port, frame);
    (verdict, out, pipeline)
}

pub fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    headers(src_mac, dst_mac, ip(src).octets(), ip(dst).octets())
        .ttl(ttl)
        .udp(40000, 5001, payload)
}

pub fn tcp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    headers(src_mac, dst_mac, ip(src).octets(), ip(dst).octets())
        .ttl(ttl)
        .tcp_ack(40000, 80, payload)
}

pub fn ping(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, ttl: u8) -> Vec<u8> {
    headers(src_mac, dst_mac, ip(src).octets(), ip(dst).octets())
        .ttl(ttl)
        .ping(0x1234, 7, b"xvr-ping-payload")
}

pub fn arp_request(src_mac: [u8; 6], sender: &str, target: &str) -> Vec<u8> {
    xvr_testkit::arp_request(src_mac, ip(sender).octets(), ip(target).octets())
}

/// A VXLAN frame from `vtep` to the local VTEP carrying `inner`.
pub fn vxlan(vtep: Ipv4Addr, vni: u32, inner: &[u8]) -> Vec<u8> {
    headers(VTEP_MAC, UPLINK_MAC, vtep.octets(), LOCAL_VTEP.octets()).vxlan(51234, vni, 0x08, inner)
}

/// `tenant`'s internet traffic leaves from `ip`, ports 1024 and up, with
/// the default filtering.
pub fn with_public_ip(b: &mut TablesBuilder, tenant: TenantId, ip: [u8; 4]) {
    let snat = SourceNat {
        ip: ip.into(),
        ports: (1024, 65535),
        filtering: Default::default(),
    };
    b.set_source_nat(tenant, snat);
}

/// The port unreachable a VM (`src_mac`, `src`) sends through its
/// gateway (`dst_mac`) to `dst`, quoting the first 28 bytes of `ip`.
pub fn port_unreachable(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    (src, dst): ([u8; 4], [u8; 4]),
    ip: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut out, &ip[..28])
        .unwrap();
    out
}

/// Two workers over memory I/O that hand frames to each other.
pub fn two_workers() -> Vec<Worker<MemoryIo>> {
    two_workers_with(Pipeline::new)
}

/// Two workers whose pipelines `pipeline` makes.
pub fn two_workers_with(pipeline: impl Fn() -> Pipeline) -> Vec<Worker<MemoryIo>> {
    let mut handoffs = Handoff::all(2).unwrap();
    Workers::all(2)
        .into_iter()
        .map(|view| {
            let mut p = pipeline();
            p.workers = view;
            Worker::with_pipeline(MemoryIo::new(), p).with_handoff(handoffs.remove(0))
        })
        .collect()
}

/// Receives `frame` on `port` of worker `at`, then lets both workers run
/// until nothing moves; returns (worker, port, bytes) of what was sent.
pub fn deliver(
    w: &mut [Worker<MemoryIo>],
    t: &Tables,
    at: usize,
    port: u16,
    frame: &[u8],
) -> Vec<(usize, u16, Vec<u8>)> {
    deliver_batch(w, t, at, port, &[frame.to_vec()])
}

/// `deliver` for `frames` received in one batch.
pub fn deliver_batch(
    w: &mut [Worker<MemoryIo>],
    t: &Tables,
    at: usize,
    port: u16,
    frames: &[Vec<u8>],
) -> Vec<(usize, u16, Vec<u8>)> {
    for frame in frames {
        w[at].io.push(port, frame);
    }
    while w.iter_mut().map(|w| w.poll(t)).sum::<usize>() > 0 {}
    let mut sent = Vec::new();
    for (i, w) in w.iter_mut().enumerate() {
        sent.extend(w.io.sent.drain(..).map(|(port, bytes)| (i, port, bytes)));
    }
    sent
}

/// Sends 64 flows, `flow(sport)` for 64 source ports, to worker 0 of two:
/// each goes out once, and each worker holds sessions of some.
pub fn assert_flows_spread(
    w: &mut [Worker<MemoryIo>],
    t: &Tables,
    port: u16,
    flow: impl Fn(u16) -> Vec<u8>,
) {
    for sport in 40000..40064 {
        let sent = deliver(w, t, 0, port, &flow(sport));
        assert_eq!(sent.len(), 1, "{sport}: {:?}", w[0].pipeline.stats);
    }
    let (first, second) = (w[0].pipeline.conntrack.len(), w[1].pipeline.conntrack.len());
    assert_eq!(first + second, 64);
    assert!(first >= 16 && second >= 16, "sessions {first} and {second}");
}

/// Splits a frame's IPv4 packet into fragments of `size` payload bytes
/// (a multiple of 8), with IP id `id`, as a sender would.
pub fn fragments(frame: &[u8], size: usize, id: u16) -> Vec<Vec<u8>> {
    let (eth, ip) = frame.split_at(14);
    let header = &ip[..20];
    let payload = &ip[20..];
    payload
        .chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let offset = i * size;
            let more = offset + chunk.len() < payload.len();
            let mut h = header.to_vec();
            h[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&id.to_be_bytes());
            let flags = if more { 0x2000 } else { 0 } | (offset / 8) as u16;
            h[6..8].copy_from_slice(&flags.to_be_bytes());
            let mut out = [eth, &h, chunk].concat();
            fix_ipv4_checksum(&mut out);
            out
        })
        .collect()
}

/// Reassembles fragments' payloads (in order) under the first header.
pub fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut out = frags[0][..34].to_vec();
    for f in frags {
        out.extend_from_slice(&f[34..]);
    }
    let total = (out.len() - 14) as u16;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out[20..22].fill(0);
    fix_ipv4_checksum(&mut out);
    out
}
