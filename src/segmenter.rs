//! The segmenter: a veth pair for the fast path in tc.
/// The segmenter's near and far ends (see `Segmenter`).
pub const SEGMENTER: (&str, &str) = ("xvrseg0", "xvrseg1");

/// A veth pair through which the fast path in tc sends the GSO packets it
/// does not take, tagged with their port: the far end carries the
/// steering program natively, so the near end has no GSO and the kernel
/// segments them there, and the far end gives the segments to the
/// workers' sockets. The near end inserts VLAN tags in the frame (its
/// VLAN offload is off), where the far end's XDP program and the workers
/// see them. Deleted when dropped.
pub struct Segmenter;

impl Segmenter {
    pub(crate) fn create(workers: usize) -> Result<Segmenter, String> {
        let q = workers.to_string();
        let run = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .map_err(|e| format!("{}: {e} (install iproute2 and ethtool)", args[0]))?;
            match out.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "{}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            }
        };
        let (near, far) = SEGMENTER;
        // Left over by a daemon that was killed: start afresh.
        let _ = run(&["ip", "link", "del", near]);
        run(&[
            "ip",
            "link",
            "add",
            near,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            far,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        let segmenter = Segmenter;
        run(&["ethtool", "-K", near, "txvlan", "off"])?;
        for dev in [near, far] {
            // Only the tc program sends here: no IPv6 link-local chatter.
            let knob = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
            let _ = std::fs::write(knob, "1");
            run(&["ip", "link", "set", dev, "up"])?;
        }
        Ok(segmenter)
    }
}

impl Drop for Segmenter {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", SEGMENTER.0])
            .output();
    }
}
