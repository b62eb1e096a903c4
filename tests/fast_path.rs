//! The XDP fast path against the workers' pipeline: the steering program is
//! run in the kernel on test frames (BPF_PROG_TEST_RUN) with the maps that
//! `FastPathSync` derives from a state, and every frame it forwards must
//! leave byte for byte as the pipeline would send it, to the same port.
//! Frames it must not decide (router MACs, broadcast, another tenant's
//! MACs, IP options, too big for the overlay, unknown VTEPs, forged
//! sources, other tiers) go to the workers.
mod common;

use common::steering::{payload, with_steering};
use xvr::fast_path::FastPathSync;
use xvr_control::State;
use xvr_dataplane::{Frame, Pipeline, Tables, Verdict};
use xvr_ebpf::{Decision, Steering};
use xvr_testkit::netns::require_root;
use xvr_testkit::{headers, partial_checksum};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }, { "name": "u", "vni": 200 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1", "mtu": 1600 },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "b1", "mac": "02:bb:00:00:00:01", "tenant": "u", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a3", "mac": "02:aa:00:00:00:03", "tenant": "t", "gateway": "10.0.1.1/24" }
  ],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "t", "ip": "10.0.0.11", "mac": "02:0a:00:00:00:11", "port": "a2" },
    { "tenant": "u", "ip": "10.0.0.10", "mac": "02:0b:00:00:00:10", "port": "b1" },
    { "tenant": "t", "ip": "10.0.1.10", "mac": "02:0a:00:00:01:10", "port": "a3" }
  ],
  "vteps": [{ "ip": "198.18.0.2", "mac": "02:00:00:00:00:02" }],
  "remote_vms": [
    { "tenant": "t", "ip": "10.0.0.20", "mac": "02:0a:00:00:00:20", "vtep": "198.18.0.2" }
  ]
}"#;

const VM10: [u8; 6] = [2, 0x0a, 0, 0, 0, 0x10];
const VM11: [u8; 6] = [2, 0x0a, 0, 0, 0, 0x11];
const VM20: [u8; 6] = [2, 0x0a, 0, 0, 0, 0x20];
const U_VM10: [u8; 6] = [2, 0x0b, 0, 0, 0, 0x10];
const ROUTER_A1: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];
const UPLINK: [u8; 6] = [2, 0, 0, 0, 0, 1];
const VTEP: [u8; 6] = [2, 0, 0, 0, 0, 2];
const DB10: [u8; 6] = [2, 0x0a, 0, 0, 1, 0x10];
const PORTS: [&str; 5] = ["up0", "a1", "a2", "b1", "a3"];

struct Rigged {
    steering: Steering,
    ifindexes: Vec<u32>,
    tables: Tables,
}

impl Rigged {
    /// Runs `frame` as received on port `port` (an index of PORTS): the
    /// XDP action, the frame after the program, the decision counted.
    fn xdp(&self, port: usize, frame: &[u8]) -> (u32, Vec<u8>, Decision) {
        let run = self.steering.test_run(self.ifindexes[port], frame).unwrap();
        let counted = run.decisions;
        assert!(
            matches!(counted[..], [(_, 1)]),
            "one decision per frame: {counted:?}"
        );
        (run.action, run.frame, counted[0].0)
    }

    /// What the workers' pipeline does with `frame` from port `port`.
    fn pipeline(&self, port: usize, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let mut buf = vec![0u8; 4096];
        let mut frames = [Frame::with_data(&mut buf, frame, port as u16)];
        Pipeline::new().run(&self.tables, &mut frames);
        (frames[0].meta.verdict, frames[0].data().to_vec())
    }
}

fn with_rig(name: &str, test: impl FnOnce(&Rigged) + Send) {
    with_steering(name, &PORTS, |ifindexes, mut steering| {
        let tables = State::from_json(STATE).unwrap().build().unwrap();
        let mut sync = FastPathSync::new(steering.take_fast_path().unwrap(), false);
        let exported = sync.sync_with(&tables, |_| true).unwrap();
        assert_eq!(exported, 5, "every host of both tenants");
        test(&Rigged {
            steering,
            ifindexes,
            tables,
        });
    });
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn the_fast_path_forwards_as_the_workers_do() {
    require_root("running BPF programs");
    with_rig("fast-path-same", |r| {
        let a10_to_a20 = headers(VM10, VM20, [10, 0, 0, 10], [10, 0, 0, 20]);
        let a10_to_a11 = headers(VM10, VM11, [10, 0, 0, 10], [10, 0, 0, 11]);
        let cases: Vec<(&str, usize, Vec<u8>, Decision, usize)> = vec![
            (
                "TCP to a remote VM, checksum left to offload",
                1,
                partial_checksum(a10_to_a20.tcp_ack(40000, 5201, &payload(1448))),
                Decision::FastEncap,
                0,
            ),
            (
                "UDP to a remote VM, odd length, checksum left to offload",
                1,
                partial_checksum(a10_to_a20.udp(40000, 5201, &payload(1001))),
                Decision::FastEncap,
                0,
            ),
            (
                "TCP to a remote VM, checksum complete",
                1,
                a10_to_a20.tcp_ack(40000, 5201, &payload(100)),
                Decision::FastEncap,
                0,
            ),
            (
                "ping to a remote VM",
                1,
                a10_to_a20.ping(7, 1, &payload(56)),
                Decision::FastEncap,
                0,
            ),
            (
                "TCP to a local VM on another port",
                1,
                partial_checksum(a10_to_a11.tcp_ack(40000, 5201, &payload(700))),
                Decision::FastBridge,
                2,
            ),
        ];
        let remote = headers(VTEP, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]);
        let inner = partial_checksum(headers(VM20, VM10, [10, 0, 0, 20], [10, 0, 0, 10]).tcp_ack(
            5201,
            40000,
            &payload(999),
        ));
        let decap = (
            "VXLAN from the VTEP to a local VM",
            0,
            remote.vxlan(50000, 100, 0x08, &inner),
        );
        let cases = cases
            .into_iter()
            .chain([(decap.0, decap.1, decap.2, Decision::FastDecap, 1)]);
        for (name, port, frame, decision, out_port) in cases {
            let (action, out, counted) = r.xdp(port, &frame);
            assert_eq!((action, counted), (XDP_REDIRECT, decision), "{name}");
            let (verdict, expected) = r.pipeline(port, &frame);
            assert_eq!(
                verdict,
                Verdict::Tx(out_port as u16),
                "{name}: the workers' verdict"
            );
            assert_eq!(out, expected, "{name}: XDP's frame is the workers' frame");
        }
    });
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn what_the_fast_path_must_not_decide_goes_to_the_workers() {
    require_root("running BPF programs");
    with_rig("fast-path-not", |r| {
        let to_a20 = headers(VM10, VM20, [10, 0, 0, 10], [10, 0, 0, 20]);
        let mut options = to_a20.udp(1, 2, b"options");
        options[14] = 0x46;
        options.splice(34..34, [1, 1, 1, 0]);
        let mut fragment = to_a20.udp(1, 2, b"first fragment");
        fragment[20] = 0x20; // more fragments
        let mut bad_outer_checksum = headers(VTEP, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]).vxlan(
            50000,
            100,
            0x08,
            &headers(VM20, VM10, [10, 0, 0, 20], [10, 0, 0, 10]).udp(1, 2, b"x"),
        );
        bad_outer_checksum[24] ^= 0xff;
        let inner_to_a10 = headers(VM20, VM10, [10, 0, 0, 20], [10, 0, 0, 10]).udp(1, 2, b"x");
        let cases: Vec<(&str, usize, Vec<u8>)> = vec![
            (
                "to the router's MAC (routed by the workers)",
                1,
                headers(VM10, ROUTER_A1, [10, 0, 0, 10], [10, 0, 1, 10]).udp(1, 2, b"x"),
            ),
            (
                "broadcast ARP",
                1,
                xvr_testkit::arp_request(VM10, [10, 0, 0, 10], [10, 0, 0, 1]),
            ),
            (
                "another tenant's MAC from a port of tenant u",
                3,
                headers(U_VM10, VM20, [10, 0, 0, 10], [10, 0, 0, 20]).udp(1, 2, b"x"),
            ),
            (
                "an unknown MAC",
                1,
                headers(VM10, [2, 9, 9, 9, 9, 9], [10, 0, 0, 10], [10, 0, 0, 20]).udp(1, 2, b"x"),
            ),
            ("IPv4 options", 1, options),
            (
                "a forged source address (port security)",
                1,
                headers(VM10, VM20, [10, 0, 0, 99], [10, 0, 0, 20]).udp(1, 2, b"x"),
            ),
            (
                "a forged source MAC (port security)",
                1,
                headers([2, 6, 6, 6, 6, 6], VM20, [10, 0, 0, 10], [10, 0, 0, 20]).udp(1, 2, b"x"),
            ),
            (
                "another VM's MAC, from the wrong port (port security)",
                2,
                headers(VM10, VM20, [10, 0, 0, 10], [10, 0, 0, 20]).udp(1, 2, b"x"),
            ),
            (
                "to a VM of another tier (routed by the workers)",
                1,
                headers(VM10, DB10, [10, 0, 0, 10], [10, 0, 1, 10]).udp(1, 2, b"x"),
            ),
            (
                "too big for the overlay (ICMP from the workers)",
                1,
                to_a20.udp(1, 2, &payload(1560)),
            ),
            (
                "VXLAN from an unknown VTEP",
                0,
                headers(VTEP, UPLINK, [198, 18, 0, 9], [198, 18, 0, 1]).vxlan(
                    50000,
                    100,
                    0x08,
                    &inner_to_a10,
                ),
            ),
            (
                "VXLAN with another tenant's VNI for this MAC",
                0,
                headers(VTEP, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]).vxlan(
                    50000,
                    200,
                    0x08,
                    &inner_to_a10,
                ),
            ),
            (
                "VXLAN to a remote VM (split horizon)",
                0,
                headers(VTEP, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]).vxlan(
                    50000,
                    100,
                    0x08,
                    &headers(VM10, VM20, [10, 0, 0, 10], [10, 0, 0, 20]).udp(1, 2, b"x"),
                ),
            ),
            (
                "VXLAN with a bad outer IPv4 checksum",
                0,
                bad_outer_checksum,
            ),
            (
                "VXLAN whose inner source lies about its address",
                0,
                headers(VTEP, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]).vxlan(
                    50000,
                    100,
                    0x08,
                    &headers(VM20, VM10, [10, 0, 0, 21], [10, 0, 0, 10]).udp(1, 2, b"x"),
                ),
            ),
            (
                "VXLAN from a local VM's MAC",
                0,
                headers(VTEP, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]).vxlan(
                    50000,
                    100,
                    0x08,
                    &headers(VM11, VM10, [10, 0, 0, 11], [10, 0, 0, 10]).udp(1, 2, b"x"),
                ),
            ),
        ];
        for (name, port, frame) in cases {
            let (action, out, decision) = r.xdp(port, &frame);
            // No AF_XDP socket is bound: the workers' frames from the
            // uplink fall back to the kernel (no_socket); a VM's are
            // dropped, never passed to the host.
            let fallback = match port {
                0 => (XDP_PASS, Decision::NoSocket),
                _ => (XDP_DROP, Decision::DropVmNoSocket),
            };
            assert_eq!((action, decision), fallback, "{name}");
            assert_eq!(out, frame, "{name}: untouched");
        }
        let (action, _, decision) = r.xdp(1, &fragment);
        assert_eq!(action, XDP_REDIRECT, "a first fragment is bridged as it is");
        assert_eq!(decision, Decision::FastEncap);
    });
}
