//! AF_XDP sockets sharing one UMEM (XDP_SHARED_UMEM), through libxdp.
//!
//! Why libxdp (via `libxdp-sys`, the layer xsk-rs itself is built on) and
//! not xsk-rs's own API: xsk-rs 0.11 keeps a descriptor's address private
//! and transmits from the start of the received data, so a frame cannot
//! grow into its headroom (VXLAN encap) or shrink from the front (decap)
//! without copying the payload. Here a descriptor is just (address,
//! length) into the UMEM, so the pipeline's `Frame` head moves freely and
//! forwarding hands a frame from an RX ring to a TX ring without a copy.
//!
//! The UMEM is split into `FRAME_SIZE` chunks. Each socket gets its own
//! fill and completion rings (the kernel needs that when sockets on
//! different devices share a UMEM); chunk addresses move between a free
//! list, fill rings, RX rings, TX rings and completion rings, and nothing
//! else owns them.
use crate::frame::FRAME_SIZE;
use libxdp_sys as xdp;
use std::ffi::CString;
use std::io;
use std::ptr;

/// Ring sizes (descriptors).
pub const RING_SIZE: u32 = 2048;

fn os_error(what: &str, rc: i32) -> io::Error {
    let e = io::Error::from_raw_os_error(-rc);
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Memory shared with the kernel, split into chunks of `FRAME_SIZE`.
pub struct Umem {
    area: *mut u8,
    size: usize,
    umem: *mut xdp::xsk_umem,
    /// The fill and completion rings created with the UMEM; the first
    /// socket takes them. Boxed: libxdp keeps pointers to ring structs,
    /// so they must not move.
    rings: Option<(Box<xdp::xsk_ring_prod>, Box<xdp::xsk_ring_cons>)>,
    free: Vec<u64>,
    frames: u32,
    /// The socket whose kernel object the UMEM's own descriptor holds
    /// (libxdp binds the first socket on it and never closes it; see
    /// `Socket::retire`).
    anchor: Option<i32>,
}

// SAFETY: the raw pointers refer to memory and kernel objects owned by
// this value alone; a Umem is used by one worker thread at a time.
unsafe impl Send for Umem {}

impl Umem {
    pub fn new(frames: u32) -> io::Result<Umem> {
        let size = frames as usize * FRAME_SIZE;
        // SAFETY: an anonymous private mapping; checked for failure below.
        let area = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let config = xdp::xsk_umem_config {
            fill_size: RING_SIZE,
            comp_size: RING_SIZE,
            frame_size: FRAME_SIZE as u32,
            frame_headroom: 0,
            flags: 0,
        };
        let mut umem = ptr::null_mut();
        // SAFETY: zeroed ring structs are what libxdp expects to fill in.
        let (mut fill, mut comp): (Box<xdp::xsk_ring_prod>, Box<xdp::xsk_ring_cons>) =
            unsafe { (Box::new(std::mem::zeroed()), Box::new(std::mem::zeroed())) };
        // SAFETY: `area` is a fresh mapping of `size` bytes.
        let rc = unsafe {
            xdp::xsk_umem__create(
                &mut umem,
                area,
                size as u64,
                &mut *fill,
                &mut *comp,
                &config,
            )
        };
        if rc != 0 {
            // SAFETY: unmapping what was mapped above.
            unsafe { libc::munmap(area, size) };
            return Err(os_error("creating the UMEM", rc));
        }
        let free = (0..frames as u64).map(|i| i * FRAME_SIZE as u64).collect();
        Ok(Umem {
            area: area.cast(),
            size,
            umem,
            rings: Some((fill, comp)),
            free,
            frames,
            anchor: None,
        })
    }

    /// Chunks in all.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Chunks not lent to the kernel.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// The whole chunk that holds `addr`.
    ///
    /// # Safety
    /// The chunk must be owned by the caller (taken from an RX ring and
    /// not yet given back), and no other slice of it may be alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn chunk(&self, addr: u64) -> (&mut [u8], usize) {
        let base = (addr as usize) & !(FRAME_SIZE - 1);
        let chunk = unsafe { std::slice::from_raw_parts_mut(self.area.add(base), FRAME_SIZE) };
        (chunk, addr as usize - base)
    }

    /// Address of the byte at `offset` of the chunk that holds `addr`.
    pub fn addr_in_chunk(addr: u64, offset: usize) -> u64 {
        (addr & !(FRAME_SIZE as u64 - 1)) + offset as u64
    }

    /// Takes a chunk off the free list (a sender writes a frame into it).
    pub fn take(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Returns a chunk to the free list.
    pub fn release(&mut self, addr: u64) {
        self.free.push(addr & !(FRAME_SIZE as u64 - 1));
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: sockets borrow the UMEM mutably when created and are
        // dropped first (see `Socket`); then the UMEM and its memory go.
        unsafe {
            xdp::xsk_umem__delete(self.umem);
            libc::munmap(self.area.cast(), self.size);
        }
    }
}

/// One AF_XDP socket bound to (interface, queue), with its RX, TX, fill
/// and completion rings.
pub struct Socket {
    xsk: *mut xdp::xsk_socket,
    // Boxed: libxdp keeps pointers to these ring structs.
    rx: Box<xdp::xsk_ring_cons>,
    tx: Box<xdp::xsk_ring_prod>,
    fill: Box<xdp::xsk_ring_prod>,
    comp: Box<xdp::xsk_ring_cons>,
    fd: i32,
    /// Frames transmitted and not yet completed.
    in_flight: u32,
}

// SAFETY: as for Umem: owned by one worker thread at a time.
unsafe impl Send for Socket {}

impl Socket {
    /// Binds a socket to `interface` queue `queue`, in copy mode where the
    /// driver has no zero-copy (veth), with need_wakeup. libxdp loads no
    /// XDP program of its own: put `fd()` into the steering program's
    /// XSKMAP at `queue`.
    pub fn bind(umem: &mut Umem, interface: &str, queue: u32) -> io::Result<Socket> {
        let name = CString::new(interface)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        let config = xdp::xsk_socket_config {
            rx_size: RING_SIZE,
            tx_size: RING_SIZE,
            __bindgen_anon_1: xdp::xsk_socket_config__bindgen_ty_1 {
                libxdp_flags: xdp::XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
            },
            xdp_flags: 0,
            bind_flags: xdp::XDP_USE_NEED_WAKEUP as u16,
        };
        // SAFETY: zeroed ring structs are filled in by libxdp.
        let zeroed = || unsafe { (Box::new(std::mem::zeroed()), Box::new(std::mem::zeroed())) };
        // The first socket takes the rings created with the UMEM (libxdp
        // keeps pointers to them); they go back if the bind fails.
        let first = umem.rings.is_some();
        let (mut fill, mut comp) = umem.rings.take().unwrap_or_else(zeroed);
        // SAFETY: zeroed ring structs are filled in by libxdp.
        let (mut rx, mut tx): (Box<xdp::xsk_ring_cons>, Box<xdp::xsk_ring_prod>) =
            unsafe { (Box::new(std::mem::zeroed()), Box::new(std::mem::zeroed())) };
        let mut xsk = ptr::null_mut();
        // SAFETY: all pointers are valid for the call; libxdp keeps `umem`.
        let rc = unsafe {
            xdp::xsk_socket__create_shared(
                &mut xsk,
                name.as_ptr(),
                queue,
                umem.umem,
                &mut *rx,
                &mut *tx,
                &mut *fill,
                &mut *comp,
                &config,
            )
        };
        if rc != 0 {
            if first {
                umem.rings = Some((fill, comp));
            }
            return Err(os_error(
                &format!("binding AF_XDP to {interface} queue {queue}"),
                rc,
            ));
        }
        // SAFETY: `xsk` was just created.
        let fd = unsafe { xdp::xsk_socket__fd(xsk) };
        if first {
            umem.anchor = Some(fd);
        }
        Ok(Socket {
            xsk,
            rx,
            tx,
            fill,
            comp,
            fd,
            in_flight: 0,
        })
    }

    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// Tops the fill ring up to `target` chunks from `umem`'s free list.
    /// A level, not an amount: a socket that receives nothing must not
    /// soak up the chunks its busy siblings need.
    pub fn refill(&mut self, umem: &mut Umem, target: u32) -> u32 {
        let n = target
            .saturating_sub(self.fill_level())
            .min(umem.free.len() as u32);
        if n == 0 {
            return 0;
        }
        let mut idx = 0;
        // SAFETY: ring operations on this socket's own fill ring.
        let got = unsafe { xdp::xsk_ring_prod__reserve(&mut *self.fill, n, &mut idx) };
        // `got` <= `n` <= the free chunks: the last `got` of them.
        let from = umem.free.len().saturating_sub(got as usize);
        for (i, addr) in (0..got).zip(umem.free.drain(from..)) {
            // SAFETY: `idx + i` was reserved above.
            unsafe { *xdp::xsk_ring_prod__fill_addr(&mut *self.fill, idx + i) = addr };
        }
        // SAFETY: submitting what was reserved and written.
        unsafe { xdp::xsk_ring_prod__submit(&mut *self.fill, got) };
        got
    }

    /// Chunks in the fill ring that the kernel has not taken yet.
    fn fill_level(&self) -> u32 {
        // SAFETY: the ring's producer and consumer words, mapped for the
        // socket's lifetime; the kernel writes the consumer, hence the
        // atomic (acquire) read.
        unsafe {
            let producer = *self.fill.producer;
            let consumer = (*(self.fill.consumer as *const std::sync::atomic::AtomicU32))
                .load(std::sync::atomic::Ordering::Acquire);
            producer.wrapping_sub(consumer)
        }
    }

    /// Chunks the socket holds: in its fill ring, received and not taken
    /// yet, and transmitted but not completed.
    pub fn lent(&self) -> u32 {
        // SAFETY: the RX ring's words, mapped for the socket's lifetime;
        // the kernel writes the producer, hence the atomic read.
        let received = unsafe {
            let producer = (*(self.rx.producer as *const std::sync::atomic::AtomicU32))
                .load(std::sync::atomic::Ordering::Acquire);
            producer.wrapping_sub(*self.rx.consumer)
        };
        self.fill_level() + received + self.in_flight
    }

    /// Takes up to `out.len()` received descriptors as (address, length);
    /// their chunks belong to the caller until released or transmitted.
    pub fn receive(&mut self, out: &mut [(u64, u32)]) -> usize {
        let mut idx = 0;
        // SAFETY: ring operations on this socket's own RX ring.
        let n = unsafe { xdp::xsk_ring_cons__peek(&mut *self.rx, out.len() as u32, &mut idx) };
        for (i, slot) in out.iter_mut().take(n as usize).enumerate() {
            // SAFETY: `idx + i` was peeked above.
            let desc = unsafe { &*xdp::xsk_ring_cons__rx_desc(&*self.rx, idx + i as u32) };
            *slot = (desc.addr, desc.len);
        }
        // SAFETY: releasing what was peeked.
        unsafe { xdp::xsk_ring_cons__release(&mut *self.rx, n) };
        n as usize
    }

    /// Queues descriptors for transmission and kicks the kernel if it asks
    /// to be woken. Returns how many were queued; the rest stay the
    /// caller's (the ring was full).
    pub fn transmit(&mut self, descs: &[(u64, u32)]) -> usize {
        if descs.is_empty() {
            return 0;
        }
        let mut idx = 0;
        // SAFETY: ring operations on this socket's own TX ring.
        let n = unsafe { xdp::xsk_ring_prod__reserve(&mut *self.tx, descs.len() as u32, &mut idx) };
        for (i, (addr, len)) in descs.iter().take(n as usize).enumerate() {
            // SAFETY: `idx + i` was reserved above.
            let desc = unsafe { &mut *xdp::xsk_ring_prod__tx_desc(&mut *self.tx, idx + i as u32) };
            desc.addr = *addr;
            desc.len = *len;
            desc.options = 0;
        }
        // SAFETY: submitting what was reserved and written.
        unsafe { xdp::xsk_ring_prod__submit(&mut *self.tx, n) };
        self.in_flight += n;
        self.kick();
        n as usize
    }

    /// Copy-mode TX runs in sendto(); only call it when the kernel asks
    /// (need_wakeup), once per batch.
    fn kick(&self) {
        // SAFETY: reads the flag word of this socket's TX ring.
        if unsafe { xdp::xsk_ring_prod__needs_wakeup(&*self.tx) } != 0 {
            // SAFETY: a zero-length sendto on our own socket.
            unsafe { libc::sendto(self.fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
        }
    }

    /// Returns completed transmissions' chunks to `umem`'s free list.
    pub fn complete(&mut self, umem: &mut Umem) -> u32 {
        if self.in_flight == 0 {
            return 0;
        }
        let mut idx = 0;
        // SAFETY: ring operations on this socket's own completion ring.
        let n = unsafe { xdp::xsk_ring_cons__peek(&mut *self.comp, RING_SIZE, &mut idx) };
        for i in 0..n {
            // SAFETY: `idx + i` was peeked above.
            let addr = unsafe { *xdp::xsk_ring_cons__comp_addr(&*self.comp, idx + i) };
            umem.release(addr);
        }
        // SAFETY: releasing what was peeked.
        unsafe { xdp::xsk_ring_cons__release(&mut *self.comp, n) };
        self.in_flight -= n;
        if self.in_flight > 0 {
            self.kick();
        }
        n
    }

    /// Lets the kernel take frames from the fill ring (busy polling, when
    /// `fill_needs_wakeup`): a non-blocking recvfrom, as libxdp's samples do.
    pub fn wake_rx(&self) {
        // SAFETY: a zero-length non-blocking recvfrom on our own socket.
        unsafe {
            libc::recvfrom(
                self.fd,
                ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
    }

    /// The kernel's counters for this socket (XDP_STATISTICS): frames it
    /// could not deliver because the RX ring was full or the fill ring
    /// empty, among others.
    pub fn kernel_stats(&self) -> io::Result<libc::xdp_statistics> {
        // SAFETY: a plain-integer struct, valid zeroed.
        let mut stats: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: getsockopt into a buffer of `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut stats as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        match rc {
            0 => Ok(stats),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Whether the fill ring wants a wakeup (poll) to get more frames.
    pub fn fill_needs_wakeup(&self) -> bool {
        // SAFETY: reads the flag word of this socket's fill ring.
        unsafe { xdp::xsk_ring_prod__needs_wakeup(&*self.fill) != 0 }
    }
}

impl Socket {
    /// Unbinds and deletes the socket, returning its chunks to `umem`:
    /// what its RX, fill and completion rings hold, and what it still had
    /// to transmit. Call it once nothing steers frames to the socket any
    /// more (its XSKMAP entries removed, the program detached): the rings
    /// are read as the kernel left them. `others` are the UMEM's other
    /// sockets. Returns the chunks not recovered (transmissions the
    /// kernel did not complete within 100 ms).
    ///
    /// libxdp binds the UMEM's first socket on the UMEM's own descriptor
    /// and, to keep the UMEM, never closes it, which would leave that
    /// socket bound to its queue. So when this socket is that anchor, the
    /// descriptor is pointed at another socket of the UMEM (dup2), which
    /// releases this one; with no other socket left, the caller must drop
    /// the UMEM (`Umem::is_anchored` is false then).
    pub fn retire(mut self, umem: &mut Umem, others: &[&Socket]) -> u32 {
        for _ in 0..100 {
            self.complete(umem);
            if self.in_flight == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut descs = [(0u64, 0u32); 64];
        loop {
            let n = self.receive(&mut descs);
            if n == 0 {
                break;
            }
            for (addr, _) in descs.iter().take(n) {
                umem.release(*addr);
            }
        }
        // SAFETY: the fill ring's words and entries, mapped until the
        // socket is deleted below; nothing fills from it any more.
        unsafe {
            let consumer = (*(self.fill.consumer as *const std::sync::atomic::AtomicU32))
                .load(std::sync::atomic::Ordering::Acquire);
            let producer = *self.fill.producer;
            let mut idx = consumer;
            while idx != producer {
                umem.release(*xdp::xsk_ring_prod__fill_addr(&mut *self.fill, idx));
                idx = idx.wrapping_add(1);
            }
        }
        let lost = self.in_flight;
        let fd = self.fd;
        drop(self);
        if umem.anchor == Some(fd) {
            umem.anchor = others.first().map(|other| other.fd);
            if let Some(other) = umem.anchor {
                // SAFETY: both are open AF_XDP descriptors of this UMEM;
                // dup2 closes the UMEM's hold on the retired socket.
                unsafe { libc::dup2(other, xdp::xsk_umem__fd(umem.umem)) };
            }
        }
        lost
    }
}

impl Umem {
    /// Whether the UMEM can take more sockets: false after its anchor
    /// socket was retired with no other socket left (make a new one).
    pub fn is_anchored(&self) -> bool {
        self.anchor.is_some() || self.rings.is_some()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: the socket was created by `bind` and is deleted once.
        unsafe { xdp::xsk_socket__delete(self.xsk) };
    }
}
