//! Flow offload against the workers' pipeline: a real `Pipeline` with the
//! real installer (`BpfFlows`) decides each flow's first packets and
//! offers them (a direction is installed at its second established
//! packet); then the steering program is run in the kernel on the
//! flow's next packets (BPF_PROG_TEST_RUN), and every packet it forwards
//! must leave byte for byte as the pipeline sends the same packet. Both
//! directions of: source NAT (TCP and UDP, checksums complete or left to
//! offload), a port forward, static NAT, and routing between tiers
//! through their ACL, to and from a VM behind a VTEP too (encapsulated
//! and decapsulated). What an entry cannot vouch for goes to the workers:
//! TCP FIN, SYN and RST, TTL 1, fragments, another source MAC, another
//! generation, a closed session. In tc mode the same for the flows the
//! tc program replays (no VXLAN), run by the tc program on skbs.
mod common;

use common::steering::{payload, with_steering};
use std::net::Ipv4Addr;
use xvr::fast_path::FastPathSync;
use xvr::flow_offload::BpfFlows;
use xvr_control::State;
use xvr_dataplane::{Frame, Pipeline, Tables, Verdict};
use xvr_ebpf::{Decision, Steering};
use xvr_testkit::netns::require_root;
use xvr_testkit::{headers, partial_checksum};

const XDP_REDIRECT: u32 = 4;
const TC_ACT_REDIRECT: u32 = 7;
const TC_ACT_SHOT: u32 = 2;

const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:00:fe", "mtu": 1500 },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.1.1/24" }
  ],
  "routes": [{ "tenant": "t", "prefix": "0.0.0.0/0", "next_hop": "internet" }],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "t", "ip": "10.0.1.10", "mac": "02:0a:00:00:01:10", "port": "a2" }
  ],
  "vteps": [{ "ip": "198.18.0.2", "mac": "02:00:00:00:00:02" }],
  "remote_vms": [{ "tenant": "t", "ip": "10.0.1.20", "mac": "02:0a:00:00:01:20", "vtep": "198.18.0.2" }],
  "nat": {
    "source": [{ "tenant": "t", "public_ip": "203.0.113.10", "ports": [20000, 65535] }],
    "static": [{ "tenant": "t", "public_ip": "203.0.113.20", "vm_ip": "10.0.1.10" }],
    "port_forwards": [{ "tenant": "t", "public_ip": "203.0.113.10", "protocol": "tcp",
                        "public_ports": [8080, 8080], "vm_ip": "10.0.0.10", "vm_ports": [80, 80] }]
  },
  "firewall": [
    { "tenant": "t", "direction": "ingress", "action": "allow", "protocol": "tcp",
      "destination": "203.0.113.10/32", "ports": [8080, 8080] },
    { "tenant": "t", "direction": "ingress", "action": "allow", "destination": "203.0.113.20/32" }
  ],
  "network_acls": [
    { "tenant": "t", "tier": "10.0.1.0/24", "rules": [
      { "direction": "ingress", "action": "allow", "protocol": "tcp", "source": "10.0.0.0/24", "ports": [5432, 5432] },
      { "direction": "ingress", "action": "allow", "protocol": "udp", "source": "0.0.0.0/0", "ports": [7001, 7001] },
      { "direction": "egress", "action": "allow", "protocol": "udp", "destination": "0.0.0.0/0", "ports": [53, 53] }
    ] }
  ]
}"#;

const VM10: [u8; 6] = [2, 0x0a, 0, 0, 0, 0x10];
const DB10: [u8; 6] = [2, 0x0a, 0, 0, 1, 0x10];
const ROUTER_A1: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];
const ROUTER_A2: [u8; 6] = [2, 0xaa, 0, 0, 0, 2];
const UPLINK: [u8; 6] = [2, 0, 0, 0, 0, 1];
const VTEP: [u8; 6] = [2, 0, 0, 0, 0, 2];
const FAR20: [u8; 6] = [2, 0x0a, 0, 0, 1, 0x20];
const GATEWAY: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const REMOTE: [u8; 4] = [198, 51, 100, 7];
const PUBLIC: [u8; 4] = [203, 0, 113, 10];
const STATIC: [u8; 4] = [203, 0, 113, 20];
const PORTS: [&str; 3] = ["up0", "a1", "a2"];
const UP: usize = 0;
const A1: usize = 1;
const A2: usize = 2;

struct Rigged {
    steering: Steering,
    sync: FastPathSync,
    ifindexes: Vec<u32>,
    tables: Tables,
    pipeline: Pipeline,
}

impl Rigged {
    /// The steering program on `frame` from port `port`: its action, the
    /// frame after it, the decision counted.
    fn xdp(&self, port: usize, frame: &[u8]) -> (u32, Vec<u8>, Decision) {
        let run = self.steering.test_run(self.ifindexes[port], frame).unwrap();
        assert!(
            matches!(run.decisions[..], [(_, 1)]),
            "one decision per frame: {:?}",
            run.decisions
        );
        (run.action, run.frame, run.decisions[0].0)
    }

    /// The workers' pipeline on `frame` from port `port` (offering what
    /// it forwards).
    fn pipeline(&mut self, port: usize, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let mut buf = vec![0u8; 4096];
        let mut frames = [Frame::with_data(&mut buf, frame, port as u16)];
        self.pipeline.run(&self.tables, &mut frames);
        (frames[0].meta.verdict, frames[0].data().to_vec())
    }

    /// Sends `frame` through the pipeline, which must forward it to
    /// `out`; returns what it sent.
    fn worker_sends(&mut self, name: &str, port: usize, frame: &[u8], out: usize) -> Vec<u8> {
        let (verdict, sent) = self.pipeline(port, frame);
        assert_eq!(
            verdict,
            Verdict::Tx(out as u16),
            "{name}: the workers' verdict"
        );
        sent
    }

    /// `frame` is forwarded by the steering program exactly as the
    /// pipeline forwards it to `out`.
    fn offloaded_as_workers(&mut self, name: &str, port: usize, frame: &[u8], out: usize) {
        let (action, fast, decision) = self.xdp(port, frame);
        assert_eq!(
            (action, decision),
            (XDP_REDIRECT, Decision::FastFlow),
            "{name}: offloaded"
        );
        let sent = self.worker_sends(name, port, frame, out);
        assert_eq!(
            fast, sent,
            "{name}: the fast path's frame is the workers' frame"
        );
    }

    /// In tc mode: `frame` is passed on by the XDP program and forwarded
    /// by the tc program exactly as the pipeline forwards it to `out`.
    fn offloaded_in_tc_as_workers(&mut self, name: &str, port: usize, frame: &[u8], out: usize) {
        let (_, _, decision) = self.xdp(port, frame);
        assert_eq!(decision, Decision::PassToTc, "{name}: passed on to tc");
        let run = self
            .steering
            .tc_test_run(self.ifindexes[port], frame)
            .unwrap();
        assert_eq!(
            (run.action, &run.decisions[..]),
            (TC_ACT_REDIRECT, &[(Decision::FastFlow, 1)][..]),
            "{name}: offloaded in tc"
        );
        let sent = self.worker_sends(name, port, frame, out);
        assert_eq!(
            run.frame, sent,
            "{name}: the tc program's frame is the workers' frame"
        );
    }

    /// `frame` goes to the workers' socket (the rig binds none: a VM's
    /// frame is dropped for it, a public address's passed).
    fn to_workers(&self, name: &str, port: usize, frame: &[u8]) {
        let (_, _, decision) = self.xdp(port, frame);
        let expected = match port {
            UP => Decision::NoSocket,
            _ => Decision::DropVmNoSocket,
        };
        assert_eq!(decision, expected, "{name}: left to the workers");
    }
}

fn with_rig(name: &str, test: impl FnOnce(&mut Rigged) + Send) {
    with_rig_in(name, false, test)
}

/// `with_rig`, the fast path in tc if `in_tc`.
fn with_rig_in(name: &str, in_tc: bool, test: impl FnOnce(&mut Rigged) + Send) {
    with_steering(name, &PORTS, |ifindexes, mut steering| {
        let tables = State::from_json(STATE).unwrap().build().unwrap();
        for public in [PUBLIC, STATIC] {
            steering.add_public_addr(Ipv4Addr::from(public)).unwrap();
        }
        if in_tc {
            steering.fast_path_in_tc().unwrap();
        }
        let mut sync = FastPathSync::new(steering.take_fast_path().unwrap(), in_tc)
            .with_flow_table(steering.flow_table().unwrap());
        sync.sync_with(&tables, |_| true).unwrap();
        let mut pipeline = Pipeline::new();
        let flows = BpfFlows::new(steering.flow_table().unwrap(), sync.flow_ports());
        pipeline.offload = Some(Box::new(flows));
        test(&mut Rigged {
            steering,
            sync,
            ifindexes,
            tables,
            pipeline,
        });
    });
}

/// `inner` in VXLAN from the VTEP of 10.0.1.20, VNI 100.
fn vxlan(inner: Vec<u8>) -> Vec<u8> {
    let from_vtep = headers(VTEP, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]);
    from_vtep.vxlan(50000, 100, 0x08, &inner)
}

/// TCP between tiers from 10.0.0.10 to the VM behind a VTEP (10.0.1.20),
/// through the workers until both directions were offered twice: routed
/// and encapsulated one way, decapsulated and routed (to this router's
/// MAC, its gateway) the other. Returns the headers each way (the far
/// VM's inner ones).
fn open_overlay_flow(r: &mut Rigged) -> (xvr_testkit::Headers, xvr_testkit::Headers) {
    let web_far = headers(VM10, ROUTER_A1, [10, 0, 0, 10], [10, 0, 1, 20]);
    let syn = r.worker_sends("overlay SYN", A1, &web_far.tcp_syn(40003, 5432), UP);
    let mut router = [0u8; 6];
    router.copy_from_slice(&syn[50 + 6..50 + 12]);
    let far_web = headers(FAR20, router, [10, 0, 1, 20], [10, 0, 0, 10]);
    let syn_ack = vxlan(far_web.tcp_syn_ack(5432, 40003));
    r.worker_sends("overlay SYN-ACK", UP, &syn_ack, A1);
    let answer = vxlan(far_web.tcp_ack(5432, 40003, &[1]));
    for _ in 0..2 {
        r.worker_sends("overlay ACK", A1, &web_far.tcp_ack(40003, 5432, &[]), UP);
        r.worker_sends("overlay answer", UP, &answer, A1);
    }
    (web_far, far_web)
}

/// TCP from 10.0.0.10 to the internet through source NAT: the handshake
/// through the workers. Returns the headers out and back, and the public
/// port.
fn snat_handshake(r: &mut Rigged) -> (xvr_testkit::Headers, xvr_testkit::Headers, u16) {
    let out = headers(VM10, ROUTER_A1, [10, 0, 0, 10], REMOTE);
    let syn = r.worker_sends("SYN out", A1, &out.tcp_syn(40000, 443), UP);
    let nat_port = public_port(&syn);
    let back = headers(GATEWAY, UPLINK, REMOTE, PUBLIC);
    r.worker_sends("SYN-ACK in", UP, &back.tcp_syn_ack(443, nat_port), A1);
    (out, back, nat_port)
}

/// `snat_handshake`, then two packets each way through the workers, so
/// that both directions are offloaded.
fn open_snat_flow(r: &mut Rigged) -> (xvr_testkit::Headers, xvr_testkit::Headers, u16) {
    let (out, back, nat_port) = snat_handshake(r);
    let ack = out.tcp_ack(40000, 443, &payload(100));
    let reply = back.tcp_ack(443, nat_port, &payload(300));
    for _ in 0..2 {
        r.worker_sends("an ACK out", A1, &ack, UP);
        r.worker_sends("a reply in", UP, &reply, A1);
    }
    (out, back, nat_port)
}

/// The source port source NAT gave a frame the pipeline sent out.
fn public_port(sent: &[u8]) -> u16 {
    u16::from_be_bytes([sent[34], sent[35]])
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn offloaded_flows_leave_as_the_workers_send_them() {
    require_root("running BPF programs");
    with_rig("flow-same", |r| {
        // Source NAT, TCP: the handshake through the workers, then data
        // both ways offloaded.
        let (out, back, nat_port) = snat_handshake(r);
        let ack = out.tcp_ack(40000, 443, &payload(100));
        r.to_workers("the first ACK (not yet offered)", A1, &ack);
        r.worker_sends("the first ACK", A1, &ack, UP);
        let reply = back.tcp_ack(443, nat_port, &payload(300));
        r.worker_sends("the first reply", UP, &reply, A1);
        r.to_workers("the second ACK (offered once)", A1, &ack);
        r.worker_sends("the second ACK", A1, &ack, UP);
        r.worker_sends("the second reply", UP, &reply, A1);
        let cases = [
            (
                "SNAT TCP out",
                A1,
                out.tcp_ack(40000, 443, &payload(1000)),
                UP,
            ),
            (
                "SNAT TCP out, checksum left to offload",
                A1,
                partial_checksum(out.tcp_ack(40000, 443, &payload(777))),
                UP,
            ),
            (
                "SNAT TCP in",
                UP,
                back.tcp_ack(443, nat_port, &payload(1400)),
                A1,
            ),
            (
                "SNAT TCP in, checksum left to offload",
                UP,
                partial_checksum(back.tcp_ack(443, nat_port, &payload(5))),
                A1,
            ),
        ];
        for (name, port, frame, to) in cases {
            r.offloaded_as_workers(name, port, &frame, to);
        }

        // Source NAT, UDP: offered from its first packet each way.
        let dns = r.worker_sends("UDP out", A1, &out.udp(5353, 53, &payload(40)), UP);
        let dns_port = public_port(&dns);
        r.worker_sends("UDP in", UP, &back.udp(53, dns_port, &payload(90)), A1);
        r.worker_sends("UDP out again", A1, &out.udp(5353, 53, &payload(40)), UP);
        r.worker_sends("UDP in again", UP, &back.udp(53, dns_port, &payload(9)), A1);
        let udp_out = partial_checksum(out.udp(5353, 53, &payload(41)));
        r.offloaded_as_workers("SNAT UDP out", A1, &udp_out, UP);
        let udp_in = back.udp(53, dns_port, &payload(1001));
        r.offloaded_as_workers("SNAT UDP in", UP, &udp_in, A1);

        // A port forward: opened from the internet.
        let to_fwd = headers(GATEWAY, UPLINK, REMOTE, PUBLIC);
        let from_vm = headers(VM10, ROUTER_A1, [10, 0, 0, 10], REMOTE);
        r.worker_sends("forward SYN", UP, &to_fwd.tcp_syn(50000, 8080), A1);
        r.worker_sends("forward SYN-ACK", A1, &from_vm.tcp_syn_ack(80, 50000), UP);
        r.worker_sends("forward ACK", UP, &to_fwd.tcp_ack(50000, 8080, &[]), A1);
        r.worker_sends(
            "forward answer",
            A1,
            &from_vm.tcp_ack(80, 50000, &payload(9)),
            UP,
        );
        r.worker_sends(
            "forward ACK again",
            UP,
            &to_fwd.tcp_ack(50000, 8080, &[]),
            A1,
        );
        r.worker_sends(
            "forward answer again",
            A1,
            &from_vm.tcp_ack(80, 50000, &[9]),
            UP,
        );
        let frame = to_fwd.tcp_ack(50000, 8080, &payload(200));
        r.offloaded_as_workers("port forward in", UP, &frame, A1);
        let frame = from_vm.tcp_ack(80, 50000, &payload(1200));
        r.offloaded_as_workers("port forward out", A1, &frame, UP);

        // Static NAT, UDP, opened from the internet.
        let to_static = headers(GATEWAY, UPLINK, REMOTE, STATIC);
        let from_db = headers(DB10, ROUTER_A2, [10, 0, 1, 10], REMOTE);
        r.worker_sends("static in", UP, &to_static.udp(7000, 7001, b"hello"), A2);
        r.worker_sends("static out", A2, &from_db.udp(7001, 7000, b"hi"), UP);
        r.worker_sends(
            "static in again",
            UP,
            &to_static.udp(7000, 7001, b"hello"),
            A2,
        );
        r.worker_sends("static out again", A2, &from_db.udp(7001, 7000, b"hi"), UP);
        let frame = to_static.udp(7000, 7001, &payload(500));
        r.offloaded_as_workers("static NAT in", UP, &frame, A2);
        let frame = from_db.udp(7001, 7000, &payload(64));
        r.offloaded_as_workers("static NAT out", A2, &frame, UP);

        // Routed between tiers through their ACL.
        let web_db = headers(VM10, ROUTER_A1, [10, 0, 0, 10], [10, 0, 1, 10]);
        let db_web = headers(DB10, ROUTER_A2, [10, 0, 1, 10], [10, 0, 0, 10]);
        r.worker_sends("tiers SYN", A1, &web_db.tcp_syn(40001, 5432), A2);
        r.worker_sends("tiers SYN-ACK", A2, &db_web.tcp_syn_ack(5432, 40001), A1);
        r.worker_sends("tiers ACK", A1, &web_db.tcp_ack(40001, 5432, &[]), A2);
        r.worker_sends("tiers answer", A2, &db_web.tcp_ack(5432, 40001, &[1]), A1);
        r.worker_sends("tiers ACK again", A1, &web_db.tcp_ack(40001, 5432, &[]), A2);
        r.worker_sends(
            "tiers answer again",
            A2,
            &db_web.tcp_ack(5432, 40001, &[1]),
            A1,
        );
        let frame = partial_checksum(web_db.tcp_ack(40001, 5432, &payload(1300)));
        r.offloaded_as_workers("between tiers, web to db", A1, &frame, A2);
        let frame = db_web.tcp_ack(5432, 40001, &payload(60));
        r.offloaded_as_workers("between tiers, db to web", A2, &frame, A1);

        // Between tiers to a VM behind a VTEP: routed and encapsulated,
        // and its answers, which use this router as their gateway,
        // decapsulated and routed.
        let (web_far, far_web) = open_overlay_flow(r);
        let from_vtep = headers(VTEP, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]);
        let cases = [
            (
                "routed and encapsulated",
                A1,
                partial_checksum(web_far.tcp_ack(40003, 5432, &payload(1000))),
                UP,
            ),
            (
                "routed and encapsulated, odd length",
                A1,
                web_far.tcp_ack(40003, 5432, &payload(333)),
                UP,
            ),
            (
                "decapsulated and routed",
                UP,
                vxlan(far_web.tcp_ack(5432, 40003, &payload(700))),
                A1,
            ),
            (
                "decapsulated and routed, checksum left to offload",
                UP,
                vxlan(partial_checksum(far_web.tcp_ack(5432, 40003, &payload(81)))),
                A1,
            ),
        ];
        for (name, port, frame, to) in cases {
            r.offloaded_as_workers(name, port, &frame, to);
        }
        let elsewhere = headers(VTEP, UPLINK, [198, 18, 0, 9], [198, 18, 0, 1]);
        let inner = far_web.tcp_ack(5432, 40003, &payload(70));
        let forged = elsewhere.vxlan(50000, 100, 0x08, &inner);
        r.to_workers("the same inner flow from another VTEP", UP, &forged);
        let other_vni = from_vtep.vxlan(50000, 200, 0x08, &inner);
        r.to_workers("the same inner flow in another VNI", UP, &other_vni);
        // 1,460 bytes of IPv4: over the underlay's 1,450 for inner packets.
        let big = web_far.tcp_ack(40003, 5432, &payload(1420));
        r.to_workers("too big for the underlay (the workers cut it)", A1, &big);

        // The tenant's VNI changes: the entries into and out of the old
        // VNI leave the map with the sync of the new tables (no session
        // could withdraw them: the tables no longer place them); the
        // others stay, inert, for their sessions to withdraw.
        let offloaded = r.sync.offloaded_flows().unwrap();
        let renumbered = STATE.replace(r#""vni": 100"#, r#""vni": 300"#);
        let renumbered = State::from_json(&renumbered).unwrap().build().unwrap();
        r.sync.sync_with(&renumbered, |_| true).unwrap();
        assert_eq!(
            r.sync.offloaded_flows().unwrap(),
            offloaded - 2,
            "the overlay flow's two directions went with VNI 100"
        );
        r.to_workers("an encapsulated flow of a vanished VNI", A1, &ack);
    });
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn what_an_entry_cannot_vouch_for_goes_to_the_workers() {
    require_root("running BPF programs");
    with_rig("flow-not", |r| {
        let (out, back, nat_port) = open_snat_flow(r);
        let data = out.tcp_ack(40000, 443, &payload(100));
        r.offloaded_as_workers("offloaded", A1, &data, UP);

        let mut fragment = out.tcp_ack(40000, 443, &payload(100));
        fragment[20] = 0x20; // more fragments
        let mut options = data.clone();
        options[14] = 0x46;
        options.splice(34..34, [1, 1, 1, 0]);
        let other_mac = headers([2, 6, 6, 6, 6, 6], ROUTER_A1, [10, 0, 0, 10], REMOTE);
        let other_router = headers(VM10, ROUTER_A2, [10, 0, 0, 10], REMOTE);
        let cases = [
            ("TTL 1", out.ttl(1).tcp_ack(40000, 443, &payload(10))),
            ("a SYN", out.tcp_syn(40000, 443)),
            ("a fragment", fragment),
            ("IP options", options),
            ("another source MAC", other_mac.tcp_ack(40000, 443, &[])),
            ("another router MAC", other_router.tcp_ack(40000, 443, &[])),
            ("another source port", out.tcp_ack(40002, 443, &[])),
        ];
        for (name, frame) in cases {
            r.to_workers(name, A1, &frame);
        }
        // From another internet endpoint to the flow's public port: no
        // entry is its; the workers' filtering decides.
        let stranger = headers(GATEWAY, UPLINK, [198, 51, 100, 8], PUBLIC);
        let stranger = stranger.tcp_ack(443, nat_port, &[]);
        r.to_workers("another endpoint to the mapping", UP, &stranger);

        // Another generation: nothing offloaded applies until the
        // workers offer it again under it.
        let generation = r.tables.generation();
        r.sync.follow_generation(generation + 1).unwrap();
        r.to_workers("another generation", A1, &data);
        r.sync.follow_generation(generation).unwrap();
        r.offloaded_as_workers("its generation again", A1, &data, UP);

        // A FIN goes to the workers, which close the session and withdraw
        // both directions.
        let fin = out.tcp_fin(40000, 443);
        r.to_workers("a FIN", A1, &fin);
        r.worker_sends("the FIN", A1, &fin, UP);
        r.to_workers("after the FIN, out", A1, &data);
        let reply = back.tcp_ack(443, nat_port, &payload(10));
        r.to_workers("after the FIN, in", UP, &reply);
    });
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn in_tc_mode_offloaded_flows_leave_as_the_workers_send_them() {
    require_root("running BPF programs");
    with_rig_in("flow-same-tc", true, |r| {
        // Source NAT, TCP: opened through the workers, then data both
        // ways offloaded to tc.
        let (out, back, nat_port) = open_snat_flow(r);
        let data_out = out.tcp_ack(40000, 443, &payload(1000));
        r.offloaded_in_tc_as_workers("SNAT TCP out", A1, &data_out, UP);
        let data_in = back.tcp_ack(443, nat_port, &payload(1400));
        r.offloaded_in_tc_as_workers("SNAT TCP in", UP, &data_in, A1);

        // Source NAT, UDP, odd length.
        let dns = r.worker_sends("UDP out", A1, &out.udp(5353, 53, &payload(40)), UP);
        let dns_port = public_port(&dns);
        r.worker_sends("UDP in", UP, &back.udp(53, dns_port, &payload(90)), A1);
        r.worker_sends("UDP out again", A1, &out.udp(5353, 53, &payload(40)), UP);
        r.worker_sends("UDP in again", UP, &back.udp(53, dns_port, &payload(9)), A1);
        r.offloaded_in_tc_as_workers("SNAT UDP out", A1, &out.udp(5353, 53, &payload(41)), UP);
        r.offloaded_in_tc_as_workers(
            "SNAT UDP in",
            UP,
            &back.udp(53, dns_port, &payload(1001)),
            A1,
        );

        // Between tiers to a VM behind a VTEP: routed and encapsulated
        // by the tc program, and its answers decapsulated and routed.
        let (web_far, far_web) = open_overlay_flow(r);
        let frame = web_far.tcp_ack(40003, 5432, &payload(1000));
        r.offloaded_in_tc_as_workers("routed and encapsulated", A1, &frame, UP);
        let frame = web_far.tcp_ack(40003, 5432, &payload(333));
        r.offloaded_in_tc_as_workers("routed and encapsulated, odd length", A1, &frame, UP);
        let frame = vxlan(far_web.tcp_ack(5432, 40003, &payload(700)));
        r.offloaded_in_tc_as_workers("decapsulated and routed", UP, &frame, A1);
        // (A checksum left to offload stays so in tc, where the skb says
        // so; a test run's skb cannot, so no such case here.)
        let elsewhere = headers(VTEP, UPLINK, [198, 18, 0, 9], [198, 18, 0, 1]);
        let forged = elsewhere.vxlan(50000, 100, 0x08, &far_web.tcp_ack(5432, 40003, &[7]));
        let run = r.steering.tc_test_run(r.ifindexes[UP], &forged).unwrap();
        assert_ne!(
            run.action, TC_ACT_REDIRECT,
            "the same inner flow from another VTEP"
        );

        // The far VM through source NAT: decapsulated and translated,
        // translated and encapsulated.
        let (query, answer) = open_far_nat_flow(r, &far_web);
        r.offloaded_in_tc_as_workers("decapsulated and translated", UP, &query, UP);
        r.offloaded_in_tc_as_workers("translated and encapsulated", UP, &answer, UP);

        // What the entry cannot vouch for stays with the workers: a FIN,
        // TTL 1, another source MAC.
        let run = |r: &Rigged, port: usize, frame: &[u8]| {
            r.steering.tc_test_run(r.ifindexes[port], frame).unwrap()
        };
        let fin = out.tcp_fin(40000, 443);
        assert_ne!(run(r, A1, &fin).action, TC_ACT_REDIRECT, "FIN");
        // Bigger than a1 takes: passed on by the XDP program, declined by
        // the tc program, and then the workers', never the host's (this
        // rig has no segmenter to reach them by: dropped).
        let big = back.tcp_ack(443, nat_port, &payload(1500));
        assert_eq!(r.xdp(UP, &big).2, Decision::PassToTc, "too big, in XDP");
        let declined = run(r, UP, &big);
        assert_eq!(
            (declined.action, &declined.decisions[..]),
            (TC_ACT_SHOT, &[(Decision::DropTooBig, 1)][..]),
            "too big for a1, in tc"
        );
        let mut ttl1 = data_out.clone();
        ttl1[22] = 1;
        assert_ne!(run(r, A1, &ttl1).action, TC_ACT_REDIRECT, "TTL 1");
        let stranger = headers([2, 9, 9, 9, 9, 9], ROUTER_A1, [10, 0, 0, 10], REMOTE).tcp_ack(
            40000,
            443,
            &payload(10),
        );
        assert_ne!(run(r, A1, &stranger).action, TC_ACT_REDIRECT, "another MAC");
    });
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_vm_behind_a_vtep_through_source_nat_is_offloaded_both_ways() {
    require_root("running BPF programs");
    with_rig("flow-far-nat", |r| {
        // The far VM (10.0.1.20) uses this router as its gateway to the
        // internet: decapsulated and translated out, translated and
        // encapsulated back.
        let (_, far_web) = open_overlay_flow(r);
        let (query, answer) = open_far_nat_flow(r, &far_web);
        r.offloaded_as_workers("decapsulated and translated", UP, &query, UP);
        r.offloaded_as_workers("translated and encapsulated", UP, &answer, UP);
    });
}

/// UDP from the far VM (whose inner headers toward this router are
/// `far_web`'s) to the internet through source NAT, through the workers
/// until both directions were offered twice. Returns a later query (in
/// VXLAN) and a later answer.
fn open_far_nat_flow(r: &mut Rigged, far_web: &xvr_testkit::Headers) -> (Vec<u8>, Vec<u8>) {
    let router: [u8; 6] = far_web.tcp_syn(1, 2)[..6].try_into().unwrap();
    let far_out = headers(FAR20, router, [10, 0, 1, 20], REMOTE);
    let back = headers(GATEWAY, UPLINK, REMOTE, PUBLIC);
    let query = vxlan(far_out.udp(6000, 53, &payload(40)));
    let sent = r.worker_sends("far UDP out", UP, &query, UP);
    let port = public_port(&sent);
    let answer = back.udp(53, port, &payload(90));
    for _ in 0..2 {
        r.worker_sends("far UDP in", UP, &answer, UP);
        r.worker_sends("far UDP out again", UP, &query, UP);
    }
    let query = vxlan(far_out.udp(6000, 53, &payload(333)));
    (query, back.udp(53, port, &payload(1001)))
}
