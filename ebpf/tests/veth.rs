//! The steering program on a real veth in a network namespace: attached in
//! native mode, the host's own traffic still reaches the kernel (checked by
//! ping, an independent receiver), VXLAN to the local VTEP is recognised as
//! ours, and dropping the loader detaches it.
use std::net::Ipv4Addr;
use xvr_ebpf::{AttachMode, Decision, Steering};
use xvr_testkit::netns::{require_root, Rig};

fn count(steering: &Steering, decision: Decision) -> u64 {
    steering
        .counters()
        .unwrap()
        .into_iter()
        .find(|(d, _)| *d == decision)
        .unwrap()
        .1
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn attached_program_passes_host_traffic_and_detaches_on_drop() {
    require_root("attaching XDP in a network namespace");
    let mut rig = Rig::new("steer");
    let host = rig.namespace();
    let peer = rig.namespace();
    rig.veth(
        &host,
        "up0",
        Some("198.18.0.1/24"),
        &peer,
        "eth0",
        Some("198.18.0.2/24"),
    );

    rig.inside(&host, || {
        let mut steering = Steering::load().unwrap();
        steering
            .add_local_vtep(Ipv4Addr::new(198, 18, 0, 1))
            .unwrap();
        steering.attach("up0", AttachMode::Native).unwrap();
        assert!(rig.xdp_attached(&host, "up0"));

        rig.exec(
            &peer,
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.0.1"],
        );
        assert!(
            count(&steering, Decision::PassNotOurs) >= 3,
            "{:?}",
            steering.counters()
        );
        assert!(
            count(&steering, Decision::PassNotIpv4) >= 1,
            "ARP: {:?}",
            steering.counters()
        );

        // A UDP datagram to the VXLAN port: ours, but no AF_XDP socket is
        // bound, so it falls back to the kernel.
        rig.exec(
            &peer,
            &["bash", "-c", "echo vxlan > /dev/udp/198.18.0.1/4789"],
        );
        assert_eq!(
            count(&steering, Decision::NoSocket),
            1,
            "{:?}",
            steering.counters()
        );

        drop(steering);
        assert!(
            !rig.xdp_attached(&host, "up0"),
            "the program stays attached after drop"
        );
    });
    // The host still answers once the program is gone.
    rig.exec(&peer, &["ping", "-c", "1", "-W", "2", "198.18.0.1"]);
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn attaching_to_a_missing_interface_is_a_clear_error() {
    require_root("loading BPF programs");
    let mut rig = Rig::new("steer-missing");
    let host = rig.namespace();
    rig.inside(&host, || {
        let mut steering = Steering::load().unwrap();
        let err = steering
            .attach("nosuch0", AttachMode::Native)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nosuch0"), "{err}");
    });
}

/// The kernel says a veth accepts redirected frames only while its peer
/// has GRO on or an XDP program attached (and the fast path relies on it).
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_veth_accepts_redirects_once_its_peer_has_gro_or_xdp() {
    require_root("reading XDP features in a network namespace");
    let mut rig = Rig::new("steer-features");
    let host = rig.namespace();
    let peer = rig.namespace();
    rig.veth(&host, "up0", None, &peer, "eth0", None);
    rig.veth(&host, "up1", None, &peer, "eth1", None);
    let features = |dev: &str| {
        rig.inside(&host, || {
            let index = xvr_ebpf::netdev::xdp_features(ifindex(dev)).unwrap();
            index & xvr_ebpf::netdev::XDP_ACT_NDO_XMIT != 0
        })
    };
    assert!(!features("up0"), "a plain veth pair takes no redirects");
    rig.exec(&peer, &["ethtool", "-K", "eth0", "gro", "on"]);
    assert!(features("up0"), "GRO on the peer");
    assert!(!features("up1"));
    rig.inside(&peer, || {
        let mut steering = Steering::load().unwrap();
        steering.attach("eth1", AttachMode::Native).unwrap();
        assert!(
            rig.inside(&host, || xvr_ebpf::netdev::accepts_redirects(ifindex(
                "up1"
            ))
            .unwrap()),
            "an XDP program on the peer"
        );
    });
    assert!(!features("up1"), "the peer's program is gone");
    let missing = rig.inside(&host, || xvr_ebpf::netdev::xdp_features(999_999));
    assert!(missing.is_err(), "{missing:?}");
}

fn ifindex(name: &str) -> u32 {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "{name:?}");
    index
}
