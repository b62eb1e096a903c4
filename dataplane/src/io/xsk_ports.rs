//! A worker's AF_XDP I/O: its own UMEM shared by all its sockets, one
//! socket per (port, queue) it owns. Receiving takes descriptors from a
//! socket's RX ring; forwarding moves a frame's address to the TX ring of
//! the output port's socket, so the payload is never copied, and the only
//! syscalls are the kicks the kernel asks for (need_wakeup).
use super::xsk::{Socket, Umem};
use super::{Exchanged, FrameIo};
pub use crate::counters::{PortCounters, SocketDrops, UmemChunks};
use crate::frame::{Frame, BATCH_SIZE, HEADROOM};
use crate::pipeline::{Meta, Verdict};
use crate::table::PortId;
use arrayvec::ArrayVec;
use std::io;
use std::iter;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Chunks kept at most in the fill ring of a socket that is receiving
/// full batches: the whole ring, so a worker that loses its core for a
/// while (a time slice, an interrupt storm) does not make the kernel drop
/// for want of buffers.
const FILL_BUSY: u32 = super::xsk::RING_SIZE;
/// Chunks kept in the fill ring of a VM port's socket that has received
/// nothing lately: a first burst's worth, without parking the UMEM in
/// idle ports (a host has hundreds; at 128 each, 64 ports took a UMEM of
/// 8,192 chunks).
pub const FILL_IDLE: u32 = 32;
/// The least kept for the uplink's and the segmenter's sockets, which
/// carry every tenant's traffic and its bursts.
const FILL_SHARED: u32 = 1024;
/// How often each level is set again from the frames its socket took.
const FILL_WINDOW: Duration = Duration::from_millis(10);
/// A socket keeps buffers for this many windows of its recent traffic:
/// 100 ms, so that a worker that loses its core that long (a busy
/// 2-core host does) drops nothing of a steady stream.
const FILL_WINDOWS_KEPT: u32 = 10;

pub struct XskPorts {
    // Sockets are declared before the UMEM so they are dropped first.
    sockets: Vec<Bound>,
    umem: Umem,
    /// Port id -> the socket that transmits on it (the first one bound).
    tx_socket_of_port: Vec<Option<usize>>,
    /// Per socket, the descriptors to transmit from this batch.
    tx: Vec<ArrayVec<(u64, u32), BATCH_SIZE>>,
    /// The sockets' descriptors, then the watched ones.
    poll_fds: Vec<libc::pollfd>,
    watched: Vec<RawFd>,
    /// When the current window of `Bound::recent` began.
    window: Instant,
    /// Frames received on a socket whose interface is no port of the
    /// current tables (bound ahead of a commit that adds the port, or
    /// left over from one that removed it), dropped.
    unknown_port: u64,
}

/// A socket and what it is bound to.
struct Bound {
    interface: String,
    /// The port of the current tables named `interface`.
    port: Option<PortId>,
    socket: Socket,
    counters: PortCounters,
    /// The VLAN ID that the segmenter's frames from this interface carry
    /// (0: none).
    tag: u16,
    /// Bound to the segmenter's far end: its frames carry their port's tag.
    segmenter: bool,
    /// The least its fill ring is kept at (`FILL_IDLE`, `FILL_SHARED`).
    floor: u32,
    /// The level its fill ring is topped up to: it doubles
    /// (up to `FILL_BUSY`) each time a receive takes a full batch, and
    /// every `FILL_WINDOW` it is set to hold `FILL_WINDOWS_KEPT` windows of
    /// the frames the socket took in the last one, halving at most (never
    /// below its floor). It follows time, not receive calls: a worker that
    /// polls faster finds more empty receives, and a level that decayed
    /// per empty receive sat at the floor under a steady stream, whose
    /// frames a stall of a few tens of milliseconds then lost
    /// (`fill_ring_empty`). A port that sees a few frames (ARP, neighbour
    /// discovery) stays at its floor, so a host's hundreds of quiet ports
    /// do not park the UMEM; chunks already in a fill ring stay there
    /// until frames use them.
    level: u32,
    /// Frames taken in the current window.
    recent: u32,
}

impl XskPorts {
    /// I/O over `umem`, with no socket yet (`bind_port` adds them).
    pub fn new(umem: Umem) -> XskPorts {
        XskPorts {
            sockets: Vec::new(),
            umem,
            tx_socket_of_port: Vec::new(),
            tx: Vec::new(),
            poll_fds: Vec::new(),
            watched: Vec::new(),
            window: Instant::now(),
            unknown_port: 0,
        }
    }

    /// Binds a socket to each of `queues` of `interface`, sharing the
    /// UMEM; all or none. Returns (queue, socket descriptor) for the
    /// steering program's XSKMAP. The sockets carry the port of that name
    /// once the tables have one (`tables_changed`). A queue that was
    /// bound until lately may still be busy (the kernel lets it go after
    /// an RCU grace period): `ErrorKind::ResourceBusy`, try again.
    pub fn bind_port(&mut self, interface: &str, queues: &[u32]) -> io::Result<Vec<(u32, RawFd)>> {
        if self.sockets.iter().any(|b| b.interface == interface) {
            let message = format!("{interface} is bound already");
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, message));
        }
        if !self.umem.is_anchored() {
            self.umem = Umem::new(self.umem.frames())?;
        }
        let mut bound = Vec::new();
        for &queue in queues {
            match Socket::bind(&mut self.umem, interface, queue) {
                Ok(socket) => {
                    bound.push((queue, socket.fd()));
                    self.sockets.push(Bound {
                        interface: interface.to_string(),
                        port: None,
                        socket,
                        counters: PortCounters::default(),
                        tag: 0,
                        segmenter: false,
                        floor: FILL_IDLE,
                        level: FILL_IDLE,
                        recent: 0,
                    });
                }
                Err(e) => {
                    self.unbind_port(interface);
                    return Err(e);
                }
            }
        }
        self.sockets_changed();
        Ok(bound)
    }

    /// Frames of `interface` come back from the segmenter (the fast path
    /// in tc sends it the GSO packets it does not take) tagged with VLAN
    /// ID `tag`.
    pub fn set_tag(&mut self, interface: &str, tag: u16) {
        for bound in self.sockets.iter_mut().filter(|b| b.interface == interface) {
            bound.tag = tag;
        }
    }

    /// `interface`'s sockets receive from the segmenter: each frame is
    /// tagged with the VLAN ID of the port it came from, which is popped.
    pub fn set_segmenter(&mut self, interface: &str) {
        for bound in self.sockets.iter_mut().filter(|b| b.interface == interface) {
            bound.segmenter = true;
        }
    }

    /// Retires every socket bound to `interface` (see `Socket::retire`:
    /// nothing may steer frames to them any more), recovering their
    /// chunks. Returns the chunks not recovered.
    pub fn unbind_port(&mut self, interface: &str) -> u32 {
        let mut lost = 0;
        while let Some(at) = self.sockets.iter().position(|b| b.interface == interface) {
            let retired = self.sockets.remove(at);
            let others: Vec<&Socket> = self.sockets.iter().map(|b| &b.socket).collect();
            lost += retired.socket.retire(&mut self.umem, &others);
        }
        if !self.umem.is_anchored() {
            // The last socket went, and the UMEM's descriptor still holds
            // it bound: a new UMEM lets it go now (a later bind to its
            // queue would find it busy).
            match Umem::new(self.umem.frames()) {
                Ok(umem) => self.umem = umem,
                Err(e) => eprintln!("xvr: a new UMEM: {e}; the next bind tries again"),
            }
        }
        self.sockets_changed();
        lost
    }

    /// Gives each socket the port of its interface (`ports`: the ports'
    /// interface names, by port id), and each port its transmitting socket.
    pub fn remap(&mut self, ports: &[&str]) {
        for bound in &mut self.sockets {
            bound.port = ports
                .iter()
                .position(|p| *p == bound.interface)
                .map(|id| id as PortId);
        }
        self.map_tx_sockets(ports.len());
    }

    /// Gives each of `ports` ports the first socket that carries it.
    fn map_tx_sockets(&mut self, ports: usize) {
        self.tx_socket_of_port = vec![None; ports];
        for (i, bound) in self.sockets.iter().enumerate() {
            if let Some(port) = bound.port {
                if let Some(socket) = self.tx_socket_of_port.get_mut(usize::from(port)) {
                    socket.get_or_insert(i);
                }
            }
        }
    }

    /// Each interface's frames and bytes, summed over its sockets.
    pub fn port_counters(&self) -> Vec<(String, PortCounters)> {
        let mut ports: Vec<(String, PortCounters)> = Vec::new();
        for bound in &self.sockets {
            match ports.iter_mut().find(|(name, _)| *name == bound.interface) {
                Some((_, counters)) => counters.add(&bound.counters),
                None => ports.push((bound.interface.clone(), bound.counters)),
            }
        }
        ports
    }

    /// The UMEM's chunks: all, free, and lent to the sockets. Between
    /// passes free + lent = all; less means chunks were lost.
    pub fn chunks(&self) -> UmemChunks {
        UmemChunks {
            all: self.umem.frames(),
            free: self.umem.free_frames() as u32,
            lent: self.sockets.iter().map(|b| b.socket.lent()).sum(),
        }
    }

    /// Sets each socket's level from the frames it took in the window
    /// that ended (see `Bound::level`).
    fn follow_recent_traffic(&mut self) {
        for bound in &mut self.sockets {
            let wanted = bound
                .recent
                .saturating_mul(FILL_WINDOWS_KEPT)
                .next_power_of_two();
            bound.level = wanted.max(bound.level / 2).max(bound.floor).min(FILL_BUSY);
            bound.recent = 0;
        }
    }

    /// Rebuilds the per-socket vectors after sockets came or went; the
    /// port mapping is made again at once from the names, so a port id
    /// never points at a moved socket.
    fn sockets_changed(&mut self) {
        self.tx = self.sockets.iter().map(|_| ArrayVec::new()).collect();
        self.poll_fds = self
            .sockets
            .iter()
            .map(|b| b.socket.fd())
            .chain(self.watched.iter().copied())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        self.map_tx_sockets(self.tx_socket_of_port.len());
    }
}

impl XskPorts {
    /// Runs frames held in our chunks (`descs`: address and length, and
    /// each one's meta in `metas`) through `process`, queues the ones it
    /// forwards for transmission and frees the rest.
    fn forward(
        &mut self,
        descs: &[(u64, u32)],
        metas: impl IntoIterator<Item = Meta>,
        process: impl FnOnce(&mut [Frame<'_>]),
    ) -> Exchanged {
        let mut frames: ArrayVec<Frame<'_>, BATCH_SIZE> = ArrayVec::new();
        for ((addr, len), meta) in descs.iter().zip(metas) {
            // SAFETY: each descriptor names a distinct chunk that is ours
            // (from an RX ring, or taken off the free list).
            let (chunk, offset) = unsafe { self.umem.chunk(*addr) };
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
                Verdict::Drop(_)
                | Verdict::Kernel
                | Verdict::Pending
                | Verdict::Local
                | Verdict::Handoff { .. } => None,
            };
            match out.and_then(|j| self.tx.get_mut(j)) {
                Some(tx) => tx.push((Umem::addr_in_chunk(*addr, frame.head()), frame.len() as u32)),
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
        for (bound, tx) in self.sockets.iter_mut().zip(&mut self.tx) {
            let sent = bound.socket.transmit(tx);
            bound.counters.tx_packets += sent as u64;
            let bytes: u32 = tx.iter().take(sent).map(|(_, len)| len).sum();
            bound.counters.tx_bytes += u64::from(bytes);
            done.transmitted += sent;
            done.tx_full += tx.len() - sent;
            for (addr, _) in tx.drain(..).skip(sent) {
                self.umem.release(addr);
            }
        }
        done
    }

    /// Frames from the segmenter: each one's VLAN tag names the port it
    /// came from; the tag is popped (the MACs move up four bytes) and the
    /// frame goes on as that port's. Untagged frames, or tags of no
    /// current port, are dropped (`unknown_port`).
    fn take_segmented(
        &mut self,
        descs: &[(u64, u32)],
        process: impl FnOnce(&mut [Frame<'_>]),
    ) -> Exchanged {
        let mut kept: ArrayVec<(u64, u32), BATCH_SIZE> = ArrayVec::new();
        let mut ports: ArrayVec<PortId, BATCH_SIZE> = ArrayVec::new();
        for &(addr, len) in descs.iter() {
            // SAFETY: a chunk just received, ours alone.
            let (chunk, offset) = unsafe { self.umem.chunk(addr) };
            // A descriptor past its chunk reads as empty: untagged.
            let end = (offset + len as usize).min(chunk.len());
            let frame = chunk.get_mut(offset..end).unwrap_or_default();
            let tag = match frame.get(12..16) {
                Some([0x81, 0x00, hi, lo]) => u16::from_be_bytes([*hi, *lo]) & 0x0fff,
                _ => 0,
            };
            let port = self
                .sockets
                .iter()
                .find(|b| tag != 0 && b.tag == tag)
                .and_then(|b| b.port);
            let Some(port) = port else {
                self.unknown_port += 1;
                self.umem.release(addr);
                continue;
            };
            frame.copy_within(0..12, 4);
            kept.push((addr + 4, len - 4));
            ports.push(port);
        }
        let metas = ports.iter().map(|&port| Meta::new(port));
        let mut done = self.forward(&kept, metas, process);
        done.received = descs.len();
        done
    }

    /// The kernel's drop counters, summed over this worker's sockets.
    pub fn socket_drops(&self) -> SocketDrops {
        let mut drops = SocketDrops {
            unknown_port: self.unknown_port,
            ..SocketDrops::default()
        };
        for Bound { socket, .. } in &self.sockets {
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
        // A vDSO clock read a pass, no syscall.
        let now = Instant::now();
        if now.duration_since(self.window) >= FILL_WINDOW {
            self.window = now;
            self.follow_recent_traffic();
        }
        for Bound { socket, level, .. } in &mut self.sockets {
            socket.complete(&mut self.umem);
            socket.refill(&mut self.umem, *level);
        }
    }

    fn exchange(&mut self, source: usize, process: impl FnOnce(&mut [Frame<'_>])) -> Exchanged {
        let mut descs = [(0u64, 0u32); BATCH_SIZE];
        let Some(bound) = self.sockets.get_mut(source) else {
            return Exchanged::default();
        };
        let n = bound.socket.receive(&mut descs);
        let received = descs.get(..n).unwrap_or_default();
        // A receive that took a whole batch, or all the ring held.
        if n == BATCH_SIZE || n as u32 >= bound.level {
            bound.level = (bound.level * 2).min(FILL_BUSY);
        }
        bound.recent += n as u32;
        if n == 0 {
            return Exchanged::default();
        }
        bound.counters.rx_packets += n as u64;
        let bytes: u32 = received.iter().map(|(_, len)| len).sum();
        bound.counters.rx_bytes += u64::from(bytes);
        if bound.segmenter {
            return self.take_segmented(received, process);
        }
        let Some(port) = bound.port else {
            self.unknown_port += n as u64;
            for (addr, _) in received {
                self.umem.release(*addr);
            }
            return Exchanged {
                received: n,
                ..Exchanged::default()
            };
        };
        self.forward(received, iter::repeat(Meta::new(port)), process)
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
            match chunk.get_mut(HEADROOM..).and_then(&mut make) {
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
        self.forward(&descs, metas, process)
    }

    fn tables_changed(&mut self, tables: &crate::Tables) {
        let names: Vec<&str> = tables.ports().iter().map(|p| p.name.as_str()).collect();
        self.remap(&names);
        for bound in &mut self.sockets {
            let shared = bound.segmenter
                || bound
                    .port
                    .and_then(|p| tables.port(p))
                    .is_some_and(|p| p.is_uplink());
            bound.floor = if shared { FILL_SHARED } else { FILL_IDLE };
            bound.level = bound.level.max(bound.floor);
        }
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

    fn watch(&mut self, fd: RawFd) {
        self.watched.push(fd);
        self.poll_fds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }

    fn wake_fill(&mut self) {
        for Bound { socket, .. } in &self.sockets {
            if socket.fill_needs_wakeup() {
                socket.wake_rx();
            }
        }
    }
}
