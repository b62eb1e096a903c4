//! A poll-mode worker: one thread, its own UMEM shared by all its AF_XDP
//! sockets, run to completion. Each pass takes up to a batch from every
//! socket's RX ring, runs it through the pipeline, and moves the frames'
//! addresses to the TX rings of their output ports; nothing is copied, and
//! the only syscall is the TX kick the kernel asks for.
use crate::frame::{Frame, BATCH_SIZE};
use crate::io::xsk::{Socket, Umem};
use crate::pipeline::{Pipeline, Verdict};
use crate::table::{PortId, Tables};
use arrayvec::ArrayVec;

/// Frames each socket keeps posted in its fill ring.
const FILL_TARGET: u32 = 512;

pub struct Worker {
    // Sockets are declared before the UMEM so they are dropped first.
    sockets: Vec<(PortId, Socket)>,
    umem: Umem,
    /// Port id -> index into `sockets`.
    socket_of_port: Vec<Option<usize>>,
    /// Per socket, the descriptors to transmit from this batch.
    tx: Vec<Vec<(u64, u32)>>,
    pub pipeline: Pipeline,
}

impl Worker {
    /// A worker serving `sockets` (each bound to a port's interface and
    /// queue, all sharing `umem`), for a configuration of `port_count` ports.
    pub fn new(umem: Umem, sockets: Vec<(PortId, Socket)>, port_count: usize) -> Worker {
        let mut socket_of_port = vec![None; port_count];
        for (i, (port, _)) in sockets.iter().enumerate() {
            if let Some(slot) = socket_of_port.get_mut(usize::from(*port)) {
                *slot = Some(i);
            }
        }
        let tx = sockets
            .iter()
            .map(|_| Vec::with_capacity(BATCH_SIZE))
            .collect();
        Worker {
            sockets,
            umem,
            socket_of_port,
            tx,
            pipeline: Pipeline::new(),
        }
    }

    /// One pass over every socket; returns the number of frames received.
    pub fn poll(&mut self, tables: &Tables) -> usize {
        let mut received = 0;
        for (_, socket) in &mut self.sockets {
            socket.complete(&mut self.umem);
            socket.refill(&mut self.umem, FILL_TARGET);
        }
        for i in 0..self.sockets.len() {
            received += self.run_batch(i, tables);
        }
        received
    }

    fn run_batch(&mut self, i: usize, tables: &Tables) -> usize {
        let mut descs = [(0u64, 0u32); BATCH_SIZE];
        let (port, socket) = &mut self.sockets[i];
        let n = socket.receive(&mut descs);
        if n == 0 {
            return 0;
        }
        let mut frames: ArrayVec<Frame<'_>, BATCH_SIZE> = ArrayVec::new();
        for (addr, len) in &descs[..n] {
            // SAFETY: each descriptor from the RX ring names a distinct
            // chunk that the kernel has handed to us.
            let (chunk, offset) = unsafe { self.umem.chunk(*addr) };
            frames.push(Frame::new(chunk, offset, *len as usize, *port));
        }
        self.pipeline.run(tables, &mut frames);
        let mut freed: ArrayVec<u64, BATCH_SIZE> = ArrayVec::new();
        for (frame, (addr, _)) in frames.iter().zip(&descs[..n]) {
            let out = match frame.meta.verdict {
                Verdict::Tx(out) => self.socket_of_port.get(usize::from(out)).copied().flatten(),
                // Frames here were steered to us; the kernel never sees them.
                Verdict::Drop(_) | Verdict::Kernel | Verdict::Pending => None,
            };
            match out {
                Some(j) => {
                    self.tx[j].push((Umem::addr_in_chunk(*addr, frame.head()), frame.len() as u32))
                }
                None => freed.push(*addr),
            }
        }
        drop(frames);
        for addr in freed {
            self.umem.release(addr);
        }
        for j in 0..self.sockets.len() {
            let sent = self.sockets[j].1.transmit(&self.tx[j]);
            for (addr, _) in self.tx[j].drain(..).skip(sent) {
                self.umem.release(addr);
            }
        }
        n
    }

    /// Polls until `stop` is set, sleeping in poll() on the sockets when a
    /// pass finds nothing, so an idle router does not burn a core.
    pub fn run(&mut self, tables: &Tables, stop: &std::sync::atomic::AtomicBool) {
        let mut fds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|(_, s)| libc::pollfd {
                fd: s.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if self.poll(tables) == 0 {
                // SAFETY: polling our own socket fds, 10 ms at most so
                // `stop` is noticed.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10) };
            }
        }
    }
}
