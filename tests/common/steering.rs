//! The steering program in a namespace of veths, for the tests that run
//! it in the kernel on test frames (BPF_PROG_TEST_RUN).
use std::net::Ipv4Addr;
use xvr_ebpf::Steering;
use xvr_testkit::netns::Rig;

/// `ports` as veths of a namespace (their peers in another), and inside
/// it the steering program with the first port as the uplink (local VTEP
/// 198.18.0.1) and the others as VM ports; runs `test` there with each
/// port's ifindex and the program.
pub fn with_steering<T: Send>(
    name: &str,
    ports: &[&str],
    test: impl FnOnce(Vec<u32>, Steering) -> T + Send,
) -> T {
    let mut rig = Rig::new(name);
    let ns = rig.namespace();
    let peers = rig.namespace();
    for (i, port) in ports.iter().enumerate() {
        rig.veth(&ns, port, None, &peers, &format!("p{i}"), None);
    }
    rig.inside(&ns, || {
        let ifindexes: Vec<u32> = ports
            .iter()
            .map(|p| xvr::netdev::ifindex(p).unwrap())
            .collect();
        let mut steering = Steering::load().unwrap();
        steering
            .add_local_vtep(Ipv4Addr::new(198, 18, 0, 1))
            .unwrap();
        for &index in &ifindexes[1..] {
            steering.add_vm_port(index).unwrap();
        }
        test(ifindexes, steering)
    })
}

/// `len` bytes of payload that are not all alike.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}
