//! The overlay rig shared by the interop test and the benchmark: a host
//! with VM `a1` (10.0.0.10) and uplink `up0` (198.18.0.1), and a Linux
//! kernel VTEP host with `eth0` (198.18.0.2) whose `vxlan100` (VNI 100)
//! is bridged with VM `b1` (10.0.0.20). The underlay MTU is 1600, so
//! 1500-byte inner packets fit once encapsulated.
use crate::netns::Rig;

/// xvr's state for the host side (`examples/kernel-vtep-peer.json`).
pub const STATE: &str = include_str!("../../examples/kernel-vtep-peer.json");

pub struct Overlay {
    pub host: String,
    pub vm1: String,
    pub kernel: String,
    pub vm2: String,
}

impl Rig {
    /// Builds the overlay rig. With `kernel_on_host`, the host is a kernel
    /// VTEP too (vxlan100 bridged with a1): the kernel-to-kernel baseline.
    /// Otherwise a1 and up0 are left for xvr.
    pub fn overlay(&mut self, kernel_on_host: bool) -> Overlay {
        let host = self.namespace();
        let vm1 = self.vm(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10");
        let kernel = self.namespace();
        let vm2 = self.vm(&kernel, "b1", "10.0.0.20/24", "02:0a:00:00:00:20");
        self.veth(
            &host,
            "up0",
            Some("198.18.0.1/24"),
            &kernel,
            "eth0",
            Some("198.18.0.2/24"),
        );
        for (ns, dev, mac) in [
            (&host, "up0", "02:00:00:00:00:01"),
            (&kernel, "eth0", "02:00:00:00:00:02"),
        ] {
            let set = ["ip", "link", "set", dev, "address", mac, "mtu", "1600"];
            self.exec(ns, &set);
        }
        self.kernel_vtep(&kernel, "eth0", "198.18.0.2", "198.18.0.1", "b1");
        if kernel_on_host {
            self.kernel_vtep(&host, "up0", "198.18.0.1", "198.18.0.2", "a1");
        }
        Overlay {
            host,
            vm1,
            kernel,
            vm2,
        }
    }

    /// Turns GRO on at every veth end of the overlay rig. A veth accepts
    /// frames that XDP redirects to it only while its peer has GRO (or an
    /// XDP program) on, as a physical NIC or a VM's tap always does; the
    /// kernel's own path gets the same setting, for a fair comparison.
    pub fn gro_everywhere(&self, o: &Overlay) {
        let ends = [
            (&o.host, "a1"),
            (&o.host, "up0"),
            (&o.vm1, "eth0"),
            (&o.kernel, "eth0"),
            (&o.kernel, "b1"),
            (&o.vm2, "eth0"),
        ];
        for (ns, dev) in ends {
            self.exec(ns, &["ethtool", "-K", dev, "gro", "on"]);
        }
    }

    /// A kernel VTEP in `ns`: vxlan100 (VNI 100, UDP 4789) from `local` to
    /// `remote` over `dev`, bridged with `vm_port`.
    fn kernel_vtep(&self, ns: &str, dev: &str, local: &str, remote: &str, vm_port: &str) {
        let vxlan = [
            "ip", "link", "add", "vxlan100", "type", "vxlan", "id", "100", "local", local,
            "remote", remote, "dstport", "4789", "dev", dev,
        ];
        self.exec(ns, &vxlan);
        self.exec(ns, &["ip", "link", "add", "br0", "type", "bridge"]);
        self.exec(ns, &["ip", "link", "set", "vxlan100", "master", "br0"]);
        self.exec(ns, &["ip", "link", "set", vm_port, "master", "br0"]);
        for dev in ["vxlan100", "br0"] {
            self.exec(ns, &["ip", "link", "set", dev, "up"]);
        }
    }
}
