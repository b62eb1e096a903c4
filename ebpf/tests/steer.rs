//! The steering program run in the kernel on test frames (BPF_PROG_TEST_RUN):
//! each kind of frame gets the decision and the XDP action it should. No
//! AF_XDP socket is bound here, so frames that are ours fall back to
//! XDP_PASS and count as `no_socket`; the counters tell what was decided.
use std::net::Ipv4Addr;
use xvr_ebpf::{Decision, Steering};
use xvr_testkit::netns::require_root;
use xvr_testkit::{arp_request, headers};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// The loopback device: it exists in every network namespace, so the
/// program can be told frames arrived on it without creating anything.
const LOOPBACK_IFINDEX: u32 = 1;
const LOCAL_VTEP: [u8; 4] = [198, 18, 0, 1];
const PUBLIC: [u8; 4] = [203, 0, 113, 10];

/// Runs one frame as if received on `ifindex` and returns the XDP action
/// and the decision it counted.
fn run(steering: &Steering, ifindex: u32, frame: &[u8]) -> (u32, Decision) {
    let run = steering.test_run(ifindex, frame).unwrap();
    let counted = run.decisions;
    assert!(
        matches!(counted[..], [(_, 1)]),
        "exactly one decision per frame: {counted:?}"
    );
    (run.action, counted[0].0)
}

fn vxlan_to(dst: [u8; 4], port: u16) -> Vec<u8> {
    let inner = headers(
        [2, 0, 0, 0, 0, 0x10],
        [2, 0, 0, 0, 0, 0x20],
        [10, 0, 0, 1],
        [10, 0, 0, 2],
    )
    .udp(1, 2, b"x");
    let mut frame = headers([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], [198, 18, 0, 2], dst)
        .vxlan(50000, 1001, 0x08, &inner);
    frame[36..38].copy_from_slice(&port.to_be_bytes());
    frame
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn steers_what_is_ours_and_passes_the_rest() {
    require_root("loading BPF programs");
    let mut steering = Steering::load().unwrap();
    steering.add_local_vtep(Ipv4Addr::from(LOCAL_VTEP)).unwrap();
    steering.add_public_addr(Ipv4Addr::from(PUBLIC)).unwrap();
    let uplink = LOOPBACK_IFINDEX;

    let host = headers(
        [2, 0, 0, 0, 0, 2],
        [2, 0, 0, 0, 0, 1],
        [198, 18, 0, 2],
        LOCAL_VTEP,
    );
    let mut later_fragment = vxlan_to(LOCAL_VTEP, 4789);
    later_fragment[20..22].copy_from_slice(&0x0010u16.to_be_bytes());
    let mut bad_ihl = vxlan_to(LOCAL_VTEP, 4789);
    bad_ihl[14] = 0x44;
    let cases: Vec<(&str, Vec<u8>, Decision)> = vec![
        (
            "VXLAN to the local VTEP",
            vxlan_to(LOCAL_VTEP, 4789),
            Decision::NoSocket,
        ),
        (
            "VXLAN to another address",
            vxlan_to([198, 18, 0, 9], 4789),
            Decision::PassNotOurs,
        ),
        (
            "other UDP to the local VTEP",
            vxlan_to(LOCAL_VTEP, 53),
            Decision::PassNotOurs,
        ),
        (
            "TCP to the local VTEP (ssh)",
            host.tcp_syn(40000, 22),
            Decision::PassNotOurs,
        ),
        (
            "ping to the local VTEP",
            host.ping(1, 1, b"x"),
            Decision::PassNotOurs,
        ),
        (
            "a later fragment to the VTEP",
            later_fragment,
            Decision::PassLaterFragment,
        ),
        (
            "to a public NAT address",
            headers([2; 6], [4; 6], [198, 19, 0, 5], PUBLIC).tcp_syn(40000, 80),
            Decision::NoSocket,
        ),
        (
            "ARP on the uplink",
            arp_request([2, 0, 0, 0, 0, 2], [198, 18, 0, 2], LOCAL_VTEP),
            Decision::PassNotIpv4,
        ),
        // The kernel refuses test frames shorter than an Ethernet header.
        (
            "Ethernet header alone",
            vxlan_to(LOCAL_VTEP, 4789)[..14].to_vec(),
            Decision::PassMalformed,
        ),
        ("bad IHL", bad_ihl, Decision::PassMalformed),
        (
            "IPv4 header cut short",
            vxlan_to(LOCAL_VTEP, 4789)[..30].to_vec(),
            Decision::PassMalformed,
        ),
    ];
    for (name, frame, want) in &cases {
        let (action, decision) = run(&steering, uplink, frame);
        assert_eq!(action, XDP_PASS, "{name}");
        assert_eq!(decision, *want, "{name}");
    }

    // Once the interface is a VM port, everything on it is ours: with no
    // socket to take it, dropped, never passed to the host.
    steering.add_vm_port(uplink).unwrap();
    let arp = arp_request([2, 0, 0, 0, 0, 0x10], [10, 0, 0, 10], [10, 0, 0, 1]);
    let to_host = host.tcp_syn(40000, 22);
    for frame in [arp, to_host] {
        assert_eq!(
            run(&steering, uplink, &frame),
            (XDP_DROP, Decision::DropVmNoSocket)
        );
    }
}
