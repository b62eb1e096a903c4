//! Frames handed from one worker to another: a NAT flow's packets must
//! be processed by the worker that owns its session (`pipeline::owner`),
//! and a packet may arrive on another worker's queue. Each worker has a
//! mailbox (`crate::parcel`) that the others post copies into.
use crate::frame::Frame;
use crate::parcel::Mailbox;
use crate::pipeline::{DropReason, Event, Meta, Stats, Verdict};
use std::os::fd::RawFd;
use std::sync::Arc;

/// Parcels per mailbox: a few batches from every other worker in flight.
pub const PARCELS: usize = 1024;

/// One worker's end of the handoff: its own mailbox and every other's.
pub struct Handoff {
    mine: Arc<Mailbox>,
    mailboxes: Arc<[Arc<Mailbox>]>,
}

impl Handoff {
    /// The ends of `count` workers, which share the mailboxes.
    pub fn all(count: usize) -> std::io::Result<Vec<Handoff>> {
        let mailboxes: Arc<[Arc<Mailbox>]> = (0..count)
            .map(|_| Mailbox::new(PARCELS).map(Arc::new))
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
        self.mine.wake_fd()
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
            let meta = Meta {
                stage: resume,
                verdict: Verdict::Pending,
                ..frame.meta
            };
            let posted = self
                .mailboxes
                .get(to)
                .map(|m| m.post(frame.data(), meta, 0));
            if posted != Some(Ok(())) {
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
        self.mine.take_into(buf).map(|(len, meta, _)| (len, meta))
    }

    /// Parcels waiting for this worker.
    pub fn waiting(&self) -> usize {
        self.mine.waiting()
    }

    /// Before sleeping: asks senders to wake this worker. False if parcels
    /// arrived meanwhile (do not sleep).
    pub fn may_sleep(&self) -> bool {
        self.mine.may_sleep()
    }

    /// After sleeping: clears the request and the eventfd.
    pub fn awake(&self) {
        self.mine.awake()
    }
}
