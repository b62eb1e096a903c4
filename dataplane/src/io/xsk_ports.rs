//! A worker's AF_XDP I/O: its own UMEM shared by all its sockets, one
//! socket per (port, queue) it owns. Receiving takes descriptors from a
//! socket's RX ring; forwarding moves a frame's address to the TX ring of
//! the output port's socket, so the payload is never copied, and the only
//! syscalls are the kicks the kernel asks for (need_wakeup).
use super::xsk::{Socket, Umem};
use super::{Exchanged, FrameIo};
use crate::frame::{Frame, BATCH_SIZE, HEADROOM};
use crate::pipeline::{Meta, Verdict};
use crate::table::PortId;
use arrayvec::ArrayVec;

/// Chunks kept in the fill ring of a socket that is receiving: the whole
/// ring, so a worker that loses its core for a while (a time slice, an
/// interrupt storm) does not make the kernel drop for want of buffers.
const FILL_BUSY: u32 = super::xsk::RING_SIZE;
/// Chunks kept in the fill ring of a socket that has received nothing
/// lately: enough for its first batches, without parking the UMEM in
/// idle ports.
const FILL_IDLE: u32 = 128;

pub struct XskPorts {
    // Sockets are declared before the UMEM so they are dropped first.
    sockets: Vec<(PortId, Socket)>,
    umem: Umem,
    /// Port id -> the socket that transmits on it (the first one bound).
    tx_socket_of_port: Vec<Option<usize>>,
    /// Per socket, the descriptors to transmit from this batch.
    tx: Vec<ArrayVec<(u64, u32), BATCH_SIZE>>,
    poll_fds: Vec<libc::pollfd>,
    /// Per socket, whether its last receive found frames.
    busy: Vec<bool>,
}

impl XskPorts {
    /// I/O over `sockets` (each bound to a port's interface and queue, all
    /// sharing `umem`), for a configuration of `port_count` ports.
    pub fn new(umem: Umem, sockets: Vec<(PortId, Socket)>, port_count: usize) -> XskPorts {
        let mut tx_socket_of_port = vec![None; port_count];
        for (i, (port, _)) in sockets.iter().enumerate() {
            if let Some(slot @ None) = tx_socket_of_port.get_mut(usize::from(*port)) {
                *slot = Some(i);
            }
        }
        let poll_fds = sockets
            .iter()
            .map(|(_, s)| libc::pollfd {
                fd: s.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        XskPorts {
            tx: sockets.iter().map(|_| ArrayVec::new()).collect(),
            busy: vec![false; sockets.len()],
            sockets,
            umem,
            tx_socket_of_port,
            poll_fds,
        }
    }
}

/// Frames the kernel could not hand to a worker's sockets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SocketDrops {
    /// RX ring full: the worker did not keep up.
    pub rx_ring_full: u64,
    /// No free chunk in the fill ring.
    pub fill_ring_empty: u64,
    /// Other receive drops (e.g. a frame larger than a chunk).
    pub rx_dropped: u64,
}

impl XskPorts {
    /// Runs frames held in our chunks (`descs`: address and length, and
    /// each one's meta) through `process`, queues the ones it forwards for
    /// transmission and frees the rest.
    fn forward(
        &mut self,
        descs: &[(u64, u32)],
        meta_of: impl Fn(usize) -> Meta,
        process: impl FnOnce(&mut [Frame<'_>]),
    ) -> Exchanged {
        let mut frames: ArrayVec<Frame<'_>, BATCH_SIZE> = ArrayVec::new();
        for (i, (addr, len)) in descs.iter().enumerate() {
            // SAFETY: each descriptor names a distinct chunk that is ours
            // (from an RX ring, or taken off the free list).
            let (chunk, offset) = unsafe { self.umem.chunk(*addr) };
            let meta = meta_of(i);
            let mut frame = Frame::new(chunk, offset, *len as usize, meta.in_port);
            frame.meta = meta;
            frames.push(frame);
        }
        process(&mut frames);
        let mut freed: ArrayVec<u64, BATCH_SIZE> = ArrayVec::new();
        for (frame, (addr, _)) in frames.iter().zip(descs) {
            let out = match frame.meta.verdict {
                Verdict::Tx(out) => self
                    .tx_socket_of_port
                    .get(usize::from(out))
                    .copied()
                    .flatten(),
                // Frames here were steered to us; the kernel never sees
                // them. A handed-off frame was copied to its owner.
                Verdict::Drop(_) | Verdict::Kernel | Verdict::Pending | Verdict::Handoff { .. } => {
                    None
                }
            };
            match out {
                Some(j) => {
                    let desc = (Umem::addr_in_chunk(*addr, frame.head()), frame.len() as u32);
                    self.tx[j].push(desc);
                }
                None => freed.push(*addr),
            }
        }
        drop(frames);
        for addr in freed {
            self.umem.release(addr);
        }
        let mut done = Exchanged {
            received: descs.len(),
            ..Exchanged::default()
        };
        for j in 0..self.sockets.len() {
            let sent = self.sockets[j].1.transmit(&self.tx[j]);
            done.transmitted += sent;
            done.tx_full += self.tx[j].len() - sent;
            for (addr, _) in self.tx[j].drain(..).skip(sent) {
                self.umem.release(addr);
            }
        }
        done
    }

    /// The kernel's drop counters, summed over this worker's sockets.
    pub fn socket_drops(&self) -> SocketDrops {
        let mut drops = SocketDrops::default();
        for (_, socket) in &self.sockets {
            if let Ok(s) = socket.kernel_stats() {
                drops.rx_ring_full += s.rx_ring_full;
                drops.fill_ring_empty += s.rx_fill_ring_empty_descs;
                drops.rx_dropped += s.rx_dropped;
            }
        }
        drops
    }
}

impl FrameIo for XskPorts {
    fn sources(&self) -> usize {
        self.sockets.len()
    }

    fn service(&mut self) {
        for ((_, socket), busy) in self.sockets.iter_mut().zip(&self.busy) {
            socket.complete(&mut self.umem);
            let target = if *busy { FILL_BUSY } else { FILL_IDLE };
            socket.refill(&mut self.umem, target);
        }
    }

    fn exchange(&mut self, source: usize, process: impl FnOnce(&mut [Frame<'_>])) -> Exchanged {
        let mut descs = [(0u64, 0u32); BATCH_SIZE];
        let (port, socket) = &mut self.sockets[source];
        let n = socket.receive(&mut descs);
        self.busy[source] = n > 0;
        if n == 0 {
            return Exchanged::default();
        }
        let port = *port;
        self.forward(&descs[..n], |_| Meta::new(port), process)
    }

    fn inject(
        &mut self,
        mut make: impl FnMut(&mut [u8]) -> Option<(usize, Meta)>,
        process: impl FnOnce(&mut [Frame<'_>]),
    ) -> Exchanged {
        let mut descs: ArrayVec<(u64, u32), BATCH_SIZE> = ArrayVec::new();
        let mut metas: ArrayVec<Meta, BATCH_SIZE> = ArrayVec::new();
        while !descs.is_full() {
            let Some(addr) = self.umem.take() else {
                break;
            };
            // SAFETY: a chunk just taken off the free list is ours alone.
            let (chunk, _) = unsafe { self.umem.chunk(addr) };
            match make(&mut chunk[HEADROOM..]) {
                Some((len, meta)) => {
                    descs.push((Umem::addr_in_chunk(addr, HEADROOM), len as u32));
                    metas.push(meta);
                }
                None => {
                    self.umem.release(addr);
                    break;
                }
            }
        }
        if descs.is_empty() {
            return Exchanged::default();
        }
        self.forward(&descs, |i| metas[i], process)
    }

    fn wait(&mut self, timeout_ms: i32) {
        // SAFETY: polling our own sockets' fds.
        unsafe {
            libc::poll(
                self.poll_fds.as_mut_ptr(),
                self.poll_fds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
    }

    fn watch(&mut self, fd: std::os::fd::RawFd) {
        self.poll_fds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }

    fn wake_fill(&mut self) {
        for (_, socket) in &self.sockets {
            if socket.fill_needs_wakeup() {
                socket.wake_rx();
            }
        }
    }
}
