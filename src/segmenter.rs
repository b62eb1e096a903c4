//! The segmenter: a veth pair for the fast path in tc.
use crate::{netdev, netlink};

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
        let (near, far) = SEGMENTER;
        let queues = u32::try_from(workers).unwrap_or(u32::MAX);
        // Left over by a daemon that was killed: start afresh.
        remove();
        netlink::add_veth(near, far, queues)
            .map_err(|e| format!("creating the segmenter {near}/{far}: {e}"))?;
        let segmenter = Segmenter;
        netdev::disable_tx_vlan_offload(near)
            .map_err(|e| format!("{near}: turning VLAN offload off: {e}"))?;
        for dev in [near, far] {
            // Only the tc program sends here: no IPv6 link-local chatter.
            let knob = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
            let _ = std::fs::write(knob, "1");
            netdev::ifindex(dev)
                .and_then(|index| netlink::set_up(index).map_err(|e| e.to_string()))
                .map_err(|e| format!("{dev}: setting it up: {e}"))?;
        }
        Ok(segmenter)
    }
}

/// Deletes the segmenter if there is one (its peer goes with it).
fn remove() {
    if let Ok(index) = netdev::ifindex(SEGMENTER.0) {
        let _ = netlink::delete(index);
    }
}

impl Drop for Segmenter {
    fn drop(&mut self) {
        remove();
    }
}
