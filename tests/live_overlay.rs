//! Overlay interop with the Linux kernel's own VXLAN device: a VM behind
//! xvr and a VM behind a kernel VTEP (a `vxlan` device with the same VNI,
//! bridged to its VM) ping each other across a veth underlay. The kernel
//! decapsulates what xvr encapsulates and the other way round, and answers
//! its ARP through the overlay. iperf3 runs TCP both ways and UDP across
//! it with the VMs' checksum offload on; the VMs' kernels count no bad
//! checksum, and tshark on the underlay checks every frame xvr sent.
//!
//! Three times: on plain veths, which take no frames redirected by XDP,
//! so xvr's workers carry everything; with GRO on every veth end, where
//! xvr's XDP fast path carries the VM-to-VM traffic, and stops
//! redirecting to a VM whose veth stops taking redirects; and with the
//! fast path in tc, which forwards whole GSO packets. There xvr's uplink
//! and VM port are made to segment and checksum in software (tx offload
//! off), so that the kernel VTEP, vm1 and tshark see real segments and
//! check every checksum the GSO metadata left to offload.
use xvr::router::{total_stats, Options, Router};
use xvr_control::State;
use xvr_dataplane::Event;
use xvr_ebpf::{Decision, DecisionCounters};
use xvr_testkit::netns::{require_root, Rig};
use xvr_testkit::overlay::{self, Overlay};

/// What carries the VMs' traffic through xvr.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Carrier {
    Workers,
    /// The XDP fast path, with GRO on every veth end.
    Xdp,
    /// The fast path in tc, on plain veths.
    Tc,
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn vm_behind_xvr_and_vm_behind_kernel_vxlan_ping_each_other() {
    interop("overlay", Carrier::Workers);
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn the_xdp_fast_path_carries_the_overlay_where_veths_take_redirects() {
    interop("overlay-fast", Carrier::Xdp);
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn the_fast_path_in_tc_carries_whole_gso_packets() {
    interop("overlay-tc", Carrier::Tc);
}

fn fast(counters: &DecisionCounters, decision: Decision) -> u64 {
    let counters = counters.read().unwrap();
    counters.iter().find(|(d, _)| *d == decision).unwrap().1
}

fn interop(name: &str, carrier: Carrier) {
    require_root("the live data path over veth");
    let tables = State::from_json(overlay::STATE).unwrap().build().unwrap();
    let mut rig = Rig::new(name);
    let overlay = rig.overlay(false);
    if carrier == Carrier::Xdp {
        rig.gro_everywhere(&overlay);
    }
    if carrier == Carrier::Tc {
        for dev in ["up0", "a1"] {
            rig.exec(&overlay.host, &["ethtool", "-K", dev, "tx", "off"]);
        }
    }
    let Overlay {
        host,
        vm1,
        kernel,
        vm2,
    } = overlay;

    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("underlay.pcap");
    let pcap_arg = pcap.to_str().unwrap();

    rig.inside(&host, || {
        let options = Options {
            fast_path_in_tc: carrier == Carrier::Tc,
            ..Options::default()
        };
        let mut router = Router::start(&tables, &options).unwrap();
        let fast_path = router.fast_path().unwrap();
        let ((pings, udp, tcp_out, tcp_in, after_gro_off), reports) = router
            .run_while(&tables, || {
                // Underlay capture on the kernel VTEP's side, while the
                // pings and the UDP stream (checksums left to offload)
                // cross it.
                let capture = std::process::Command::new("ip")
                    .args(["netns", "exec", &kernel, "timeout", "20", "tcpdump"])
                    // -Z root: tcpdump would otherwise drop to a user that
                    // cannot write into the test's private directory.
                    .args([
                        "-n", "-U", "-Z", "root", "-i", "eth0", "-c", "300", "-w", pcap_arg,
                    ])
                    .arg("udp port 4789")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                std::thread::sleep(std::time::Duration::from_millis(500));
                let ping = |ns: &str, to: &str| {
                    rig.try_exec(ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", to])
                };
                let pings = (
                    ping(&vm1, "10.0.0.20"),
                    ping(&vm2, "10.0.0.10"),
                    ping(&kernel, "198.18.0.1"),
                );
                let udp = rig.iperf3(&vm2, &vm1, "10.0.0.20", 1, &["-u", "-b", "20M"]);
                capture.wait_with_output().unwrap();
                // TCP both ways: vm1 -> vm2, and vm2 -> vm1 (-R).
                let tcp_out = rig.iperf3(&vm2, &vm1, "10.0.0.20", 2, &[]);
                let tcp_in = rig.iperf3(&vm2, &vm1, "10.0.0.20", 2, &["-R"]);
                // vm1's veth stops taking redirects: after the next sync,
                // frames to vm1 go through the workers again (XDP; tc's
                // redirects need no GRO), and arrive.
                rig.exec(&vm1, &["ethtool", "-K", "eth0", "gro", "off"]);
                fast_path.lock().unwrap().sync(&tables).unwrap();
                let after_gro_off = ping(&vm2, "10.0.0.10");
                (pings, udp, tcp_out, tcp_in, after_gro_off)
            })
            .unwrap();
        let stats = total_stats(&reports);
        assert!(after_gro_off, "ping vm2->vm1 once vm1's GRO is off");
        let (encap, decap) = (
            fast(&router.xdp_counters(), Decision::FastEncap),
            fast(&router.xdp_counters(), Decision::FastDecap),
        );
        match carrier {
            // The TCP streams alone are hundreds of thousands of frames.
            Carrier::Xdp => assert!(
                encap > 100_000 && decap > 100_000,
                "fast path: {encap} encap, {decap} decap"
            ),
            // Whole GSO packets (the UDP stream's datagrams are some
            // 1,700 of the encapsulated ones).
            Carrier::Tc => assert!(
                encap > 1_000 && decap > 1_000,
                "fast path in tc: {encap} encap, {decap} decap"
            ),
            Carrier::Workers => {
                assert_eq!((encap, decap), (0, 0), "no redirect targets, no fast path")
            }
        }
        let what = "pings vm1->vm2, vm2->vm1, kernel->host underlay";
        assert_eq!(pings, (true, true, true), "{what}; {stats:?}");
        let udp = udp.unwrap();
        assert!(udp.bytes_received > 1_000_000, "UDP vm1->vm2: {udp:?}");
        for (way, tcp) in [("vm1->vm2", tcp_out), ("vm2->vm1", tcp_in)] {
            let tcp = tcp.unwrap_or_else(|e| panic!("TCP {way}: {e}; {stats:?}"));
            assert!(tcp.bytes_received > 1_000_000, "TCP {way}: {tcp:?}");
        }
        match carrier {
            Carrier::Workers => assert!(stats.events_of(Event::Encap) >= 6, "{stats:?}"),
            // The last ping's echoes came through the workers (vm1 no
            // longer takes redirects).
            Carrier::Xdp => assert!(stats.events_of(Event::Decap) >= 3, "{stats:?}"),
            // Broadcast ARP still goes to the workers.
            Carrier::Tc => assert!(stats.events_of(Event::Decap) >= 1, "{stats:?}"),
        }
    });

    // Every packet fits the 1600-byte underlay: no VM was told to
    // fragment (in tc mode, a GSO packet of two small segments once
    // looked too big to the XDP program, and its sender got "need to
    // frag" and retransmitted).
    for vm in [&vm1, &vm2] {
        let snmp = rig.exec(vm, &["cat", "/proc/net/snmp"]);
        let told = snmp_field(
            &String::from_utf8_lossy(&snmp.stdout),
            "Icmp",
            "InDestUnreachs",
        );
        assert_eq!(told, Some(0), "ICMP destination unreachable in {vm}");
    }
    // Both VMs' kernels found every TCP and UDP checksum good.
    for vm in [&vm1, &vm2] {
        let snmp = rig.exec(vm, &["cat", "/proc/net/snmp"]);
        let snmp = String::from_utf8_lossy(&snmp.stdout);
        let errors = checksum_errors(&snmp);
        assert_eq!(errors, [("Tcp", 0), ("Udp", 0)], "InCsumErrors in {vm}");
    }
    // tshark: every frame xvr put on the underlay is VXLAN VNI 100 with a
    // good outer IPv4 checksum, a zero outer UDP checksum, and good inner
    // checksums.
    let out = std::process::Command::new("tshark")
        .args(["-r", pcap_arg, "-o", "ip.check_checksum:TRUE"])
        .args(["-o", "udp.check_checksum:TRUE"])
        .args([
            "-Y",
            "ip.src == 198.18.0.1",
            "-T",
            "fields",
            "-E",
            "separator=|",
        ])
        .args([
            "-e",
            "vxlan.vni",
            "-e",
            "ip.checksum.status",
            "-e",
            "udp.checksum",
        ])
        .args(["-e", "udp.checksum.status", "-e", "icmp.checksum.status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    assert!(
        rows.len() > 100,
        "frames from xvr on the underlay:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in &rows {
        assert_eq!(row[0], "100", "VNI: {row:?}");
        assert!(
            row[1].split(',').all(|s| s == "1"),
            "outer (and inner) IPv4 checksums Good: {row:?}"
        );
        assert!(
            row[2].starts_with("0x0000"),
            "outer UDP checksum zero: {row:?}"
        );
        assert!(
            !row[3].contains('0') && !row[4].contains('0'),
            "bad checksum: {row:?}"
        );
    }
    let inner_udp = rows.iter().filter(|r| r[3] == "3,1").count();
    assert!(
        inner_udp > 100,
        "inner UDP with good checksums: {inner_udp}"
    );
}

/// (protocol, InCsumErrors) for Tcp and Udp in a /proc/net/snmp text.
fn checksum_errors(snmp: &str) -> Vec<(&str, u64)> {
    ["Tcp", "Udp"]
        .into_iter()
        .filter_map(|proto| Some((proto, snmp_field(snmp, proto, "InCsumErrors")?)))
        .collect()
}

/// Field `name` of section `proto` in /proc/net/snmp's text (a line of
/// names, then one of values, each starting with `proto:`).
fn snmp_field(snmp: &str, proto: &str, name: &str) -> Option<u64> {
    let lines: Vec<&str> = snmp.lines().collect();
    let head = format!("{proto}:");
    lines.windows(2).find_map(|pair| {
        let (names, values) = (pair[0], pair[1]);
        if !names.starts_with(&head) || !values.starts_with(&head) {
            return None;
        }
        let at = names.split_whitespace().position(|n| n == name)?;
        values.split_whitespace().nth(at)?.parse().ok()
    })
}
