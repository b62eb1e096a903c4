//! Frames handed from one worker to another: a NAT flow's packets must
//! be processed by the worker that owns its session (`pipeline::owner`),
//! and a packet may arrive on another worker's queue.
//!
//! Each worker has a mailbox of two lock-free crossbeam `ArrayQueue`s:
//! parcels waiting for it, and empty parcels that senders fill. Parcels
//! are allocated once, so the per-packet path moves a box between two
//! queues and copies the frame, with no lock and no allocation. The copy
//! is needed: a frame lives in its worker's UMEM, and only that worker's
//! sockets can transmit from it. A worker asleep in poll() is woken
//! through an eventfd, with one write per batch and only while it sleeps.
use crate::frame::{Frame, FRAME_SIZE, HEADROOM};
use crate::pipeline::{DropReason, Event, Meta, Stats, Verdict};
use crossbeam_queue::ArrayQueue;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

/// Parcels per mailbox: a few batches from every other worker in flight.
pub const PARCELS: usize = 1024;
/// The longest frame a parcel carries: what a chunk holds after the
/// headroom (every frame at a NAT stage fits; nothing was pushed in
/// front of it yet).
const PARCEL_BYTES: usize = FRAME_SIZE - HEADROOM;

struct Parcel {
    meta: Meta,
    len: usize,
    data: [u8; PARCEL_BYTES],
}

struct Mailbox {
    full: ArrayQueue<Box<Parcel>>,
    empty: ArrayQueue<Box<Parcel>>,
    /// Set by the owner just before it sleeps in poll().
    sleeping: AtomicBool,
    wake: OwnedFd,
}

impl Mailbox {
    fn new() -> std::io::Result<Mailbox> {
        let empty = ArrayQueue::new(PARCELS);
        for _ in 0..PARCELS {
            let parcel = Box::new(Parcel {
                meta: Meta::new(0),
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
            full: ArrayQueue::new(PARCELS),
            empty,
            sleeping: AtomicBool::new(false),
            // SAFETY: a new descriptor that nothing else owns.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: an 8-byte write to our eventfd; a full counter
            // (EAGAIN) still wakes the reader.
            unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
    }
}

/// One worker's end of the handoff: its own mailbox and every other's.
pub struct Handoff {
    mine: Arc<Mailbox>,
    mailboxes: Arc<[Arc<Mailbox>]>,
}

impl Handoff {
    /// The ends of `count` workers, which share the mailboxes.
    pub fn all(count: usize) -> std::io::Result<Vec<Handoff>> {
        let mailboxes: Arc<[Arc<Mailbox>]> = (0..count)
            .map(|_| Mailbox::new().map(Arc::new))
            .collect::<std::io::Result<Vec<_>>>()?
            .into();
        Ok(mailboxes
            .iter()
            .map(|mine| Handoff {
                mine: mine.clone(),
                mailboxes: mailboxes.clone(),
            })
            .collect())
    }

    /// The descriptor that becomes readable when parcels arrive for a
    /// sleeping worker (for its poll set).
    pub fn wake_fd(&self) -> RawFd {
        self.mine.wake.as_raw_fd()
    }

    /// Copies the frames whose verdict is `Handoff` into their owners'
    /// mailboxes (their buffers are then free), or drops them, counted,
    /// if an owner has no empty parcel.
    pub fn send(&self, frames: &mut [Frame<'_>], stats: &mut Stats) {
        let mut woken = 0u64;
        for frame in frames.iter_mut() {
            let Verdict::Handoff { to, resume } = frame.meta.verdict else {
                continue;
            };
            let to = usize::from(to);
            let (Some(mailbox), true) = (self.mailboxes.get(to), frame.len() <= PARCEL_BYTES)
            else {
                frame.meta.drop(stats, DropReason::HandoffFull);
                continue;
            };
            let Some(mut parcel) = mailbox.empty.pop() else {
                frame.meta.drop(stats, DropReason::HandoffFull);
                continue;
            };
            // `frame.len() <= PARCEL_BYTES`, checked above.
            let Some(data) = parcel.data.get_mut(..frame.len()) else {
                let _ = mailbox.empty.push(parcel);
                frame.meta.drop(stats, DropReason::HandoffFull);
                continue;
            };
            data.copy_from_slice(frame.data());
            parcel.len = frame.len();
            parcel.meta = Meta {
                stage: resume,
                verdict: Verdict::Pending,
                ..frame.meta
            };
            // As many slots as parcels: it cannot be full.
            if let Err(parcel) = mailbox.full.push(parcel) {
                let _ = mailbox.empty.push(parcel);
                frame.meta.drop(stats, DropReason::HandoffFull);
                continue;
            }
            stats.event(Event::HandedOff);
            woken |= 1 << (to % 64);
        }
        for (i, mailbox) in self.mailboxes.iter().enumerate() {
            if woken & (1 << (i % 64)) != 0 {
                mailbox.wake();
            }
        }
    }

    /// Moves the next parcel for this worker into `buf` (a chunk after
    /// its headroom); returns the frame's length and meta.
    pub fn receive_into(&self, buf: &mut [u8]) -> Option<(usize, Meta)> {
        let mailbox = &self.mine;
        let parcel = mailbox.full.pop()?;
        let len = parcel.len.min(buf.len()).min(parcel.data.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..len), parcel.data.get(..len)) {
            to.copy_from_slice(from);
        }
        let got = (len, parcel.meta);
        let _ = mailbox.empty.push(parcel);
        Some(got)
    }

    /// Parcels waiting for this worker.
    pub fn waiting(&self) -> usize {
        self.mine.full.len()
    }

    /// Before sleeping: asks senders to wake this worker. False if parcels
    /// arrived meanwhile (do not sleep).
    pub fn may_sleep(&self) -> bool {
        let mailbox = &self.mine;
        mailbox.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if mailbox.full.is_empty() {
            return true;
        }
        mailbox.sleeping.store(false, Ordering::SeqCst);
        false
    }

    /// After sleeping: clears the request and the eventfd.
    pub fn awake(&self) {
        let mailbox = &self.mine;
        mailbox.sleeping.store(false, Ordering::SeqCst);
        let mut count = [0u8; 8];
        // SAFETY: an 8-byte read from our non-blocking eventfd.
        unsafe { libc::read(mailbox.wake.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    }
}
