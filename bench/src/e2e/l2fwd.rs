//! The AF_XDP forwarding floor: receive a batch on one port, swap the
//! MACs, transmit it on the other; nothing else. It uses the same steering
//! program, sockets and rings as xvr (`XskPorts`), so the gap between it
//! and xvr is the pipeline's cost.
use std::sync::atomic::{AtomicBool, Ordering};
use xvr::netdev::ifindex;
use xvr_dataplane::io::xsk::Umem;
use xvr_dataplane::io::xsk_ports::XskPorts;
use xvr_dataplane::io::FrameIo;
use xvr_dataplane::Verdict;
use xvr_ebpf::{AttachMode, Steering};

/// A bound forwarder from `in_dev` to `out_dev` (queue 0 of each).
pub struct L2Fwd {
    io: XskPorts,
    _steering: Steering,
}

impl L2Fwd {
    pub fn start(in_dev: &str, out_dev: &str) -> Result<L2Fwd, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut steering = Steering::load().map_err(|x| e(&x))?;
        let index = ifindex(in_dev)?;
        steering.add_vm_port(index).map_err(|x| e(&x))?;
        steering
            .attach(in_dev, AttachMode::Native)
            .map_err(|x| e(&x))?;
        let mut io = XskPorts::new(Umem::new(4096).map_err(|x| e(&x))?);
        for (queue, fd) in io.bind_port(in_dev, &[0]).map_err(|x| e(&x))? {
            steering.set_socket(index, queue, fd).map_err(|x| e(&x))?;
        }
        io.bind_port(out_dev, &[0]).map_err(|x| e(&x))?;
        // Port 0 receives, port 1 transmits.
        io.remap(&[in_dev, out_dev]);
        Ok(L2Fwd {
            io,
            _steering: steering,
        })
    }

    /// Busy-polls until `stop`; returns the frames transmitted.
    pub fn run(&mut self, core: usize, stop: &AtomicBool) -> u64 {
        xvr::affinity::pin_to(core);
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            self.io.service();
            let done = self.io.exchange(0, |frames| {
                for frame in frames.iter_mut() {
                    let data = frame.data_mut();
                    for i in 0..6 {
                        data.swap(i, i + 6);
                    }
                    frame.meta.verdict = Verdict::Tx(1);
                }
            });
            sent += done.transmitted as u64;
        }
        sent
    }
}
