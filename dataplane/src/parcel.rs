//! Frames copied between threads: a worker's frame lives in its UMEM,
//! which only that worker's sockets transmit from, so a frame bound for
//! another thread (a worker that owns its NAT session, the router's
//! services, or back) travels as a copy in a parcel.
//!
//! A mailbox is two lock-free crossbeam `ArrayQueue`s: parcels waiting
//! for its owner, and empty parcels that senders fill. Parcels are
//! allocated once, so posting moves a box between two queues and copies
//! the frame, with no lock and no allocation. An owner asleep in poll()
//! is woken through an eventfd, with one write per batch and only while
//! it sleeps.
use crate::frame::{FRAME_SIZE, HEADROOM};
use crate::pipeline::Meta;
use crossbeam_queue::ArrayQueue;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};

/// The longest frame a parcel carries: what a chunk holds after the
/// headroom (every frame a worker hands over fits: nothing was pushed in
/// front of it yet).
pub const PARCEL_BYTES: usize = FRAME_SIZE - HEADROOM;

struct Parcel {
    meta: Meta,
    /// Who posted it (a worker's index), for an answer.
    from: u16,
    len: usize,
    data: [u8; PARCEL_BYTES],
}

pub struct Mailbox {
    full: ArrayQueue<Box<Parcel>>,
    empty: ArrayQueue<Box<Parcel>>,
    /// Set by the owner just before it sleeps in poll().
    sleeping: AtomicBool,
    wake: OwnedFd,
}

/// Why a frame could not be posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxFull;

impl Mailbox {
    /// A mailbox of `parcels` parcels.
    pub fn new(parcels: usize) -> std::io::Result<Mailbox> {
        let empty = ArrayQueue::new(parcels);
        for _ in 0..parcels {
            let parcel = Box::new(Parcel {
                meta: Meta::new(0),
                from: 0,
                len: 0,
                data: [0; PARCEL_BYTES],
            });
            let _ = empty.push(parcel);
        }
        // SAFETY: eventfd has no preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mailbox {
            full: ArrayQueue::new(parcels),
            empty,
            sleeping: AtomicBool::new(false),
            // SAFETY: a new descriptor that nothing else owns.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Copies `frame` with `meta` into an empty parcel and queues it;
    /// the caller wakes the owner (`wake`) once it posted a batch.
    pub fn post(&self, frame: &[u8], meta: Meta, from: u16) -> Result<(), MailboxFull> {
        let mut parcel = self.empty.pop().ok_or(MailboxFull)?;
        let Some(data) = parcel.data.get_mut(..frame.len()) else {
            let _ = self.empty.push(parcel);
            return Err(MailboxFull);
        };
        data.copy_from_slice(frame);
        parcel.len = frame.len();
        parcel.meta = meta;
        parcel.from = from;
        // As many slots as parcels: it cannot be full.
        self.full.push(parcel).map_err(|parcel| {
            let _ = self.empty.push(parcel);
            MailboxFull
        })
    }

    /// Moves the next parcel into `buf`; returns the frame's length, its
    /// meta and who posted it.
    pub fn take_into(&self, buf: &mut [u8]) -> Option<(usize, Meta, u16)> {
        let parcel = self.full.pop()?;
        let len = parcel.len.min(buf.len()).min(parcel.data.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..len), parcel.data.get(..len)) {
            to.copy_from_slice(from);
        }
        let got = (len, parcel.meta, parcel.from);
        let _ = self.empty.push(parcel);
        Some(got)
    }

    /// Parcels waiting.
    pub fn waiting(&self) -> usize {
        self.full.len()
    }

    /// Wakes the owner if it sleeps.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: an 8-byte write to our eventfd; a full counter
            // (EAGAIN) still wakes the reader.
            unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
    }

    /// The descriptor that becomes readable when parcels arrive for a
    /// sleeping owner (for its poll set).
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Before sleeping: asks senders to wake the owner. False if parcels
    /// arrived meanwhile (do not sleep).
    pub fn may_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.full.is_empty() {
            return true;
        }
        self.sleeping.store(false, Ordering::SeqCst);
        false
    }

    /// After sleeping: clears the request and the eventfd.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        let mut count = [0u8; 8];
        // SAFETY: an 8-byte read from our non-blocking eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    }
}
