//! The router's own services for its tenants (DHCP), in a thread of
//! their own so that no request ever holds up a worker.
//!
//! A worker marks a frame for the services (`Verdict::Local`) and posts a
//! copy into the services' mailbox (`ServiceLink::send`), within a budget
//! per port and second, so one VM flooding requests cannot crowd out the
//! others: over budget, or with the mailbox full, the frame is dropped
//! and counted. The service thread (`Services`) answers each request from
//! the tables current then and posts the reply into the mailbox of the
//! worker that sent the request, which transmits it out of the port the
//! request came in on (`ServiceLink::receive_into`).
pub mod dhcp;

use crate::frame::Frame;
use crate::parcel::Mailbox;
use crate::pipeline::{DropReason, Meta, Stats, Verdict};
use crate::table::{PortId, Tables, TenantId};
use crate::worker::TableSource;
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Requests a port may send the services in a second: a DHCP client
/// sends a handful a minute.
pub const REQUESTS_PER_PORT_SECOND: u16 = 100;
/// Parcels in the services' mailbox (requests from every worker), and in
/// each worker's (replies).
pub const PARCELS: usize = 1024;

/// A worker's end: where it posts requests and finds replies.
pub struct ServiceLink {
    requests: Arc<Mailbox>,
    replies: Arc<Mailbox>,
    worker: u16,
    /// Per port id: the second of its last request, and requests in it.
    budget: Vec<(u32, u16)>,
}

/// The service thread's end.
pub struct Services {
    requests: Arc<Mailbox>,
    replies: Vec<Arc<Mailbox>>,
    counters: Arc<Mutex<ServiceCounters>>,
}

/// The services' ends, and one link per worker.
pub fn links(workers: usize) -> std::io::Result<(Services, Vec<ServiceLink>)> {
    let requests = Arc::new(Mailbox::new(PARCELS)?);
    let replies = (0..workers)
        .map(|_| Mailbox::new(PARCELS).map(Arc::new))
        .collect::<std::io::Result<Vec<_>>>()?;
    let links = replies
        .iter()
        .enumerate()
        .map(|(worker, replies)| ServiceLink {
            requests: requests.clone(),
            replies: replies.clone(),
            worker: u16::try_from(worker).unwrap_or(u16::MAX),
            budget: Vec::new(),
        })
        .collect();
    let services = Services {
        requests,
        replies,
        counters: Arc::default(),
    };
    Ok((services, links))
}

impl ServiceLink {
    /// Posts the frames marked for the services (their buffers are then
    /// free); `now` is the worker's clock in seconds.
    pub fn send(&mut self, frames: &mut [Frame<'_>], now: u32, stats: &mut Stats) {
        let mut posted = false;
        for frame in frames.iter_mut() {
            if frame.meta.verdict != Verdict::Local {
                continue;
            }
            if !self.within_budget(frame.meta.in_port, now) {
                frame.meta.drop(stats, DropReason::ServiceRateLimited);
                continue;
            }
            match self.requests.post(frame.data(), frame.meta, self.worker) {
                Ok(()) => posted = true,
                Err(_) => frame.meta.drop(stats, DropReason::ServiceBusy),
            }
        }
        if posted {
            self.requests.wake();
        }
    }

    fn within_budget(&mut self, port: PortId, now: u32) -> bool {
        let at = usize::from(port);
        if self.budget.len() <= at {
            // Once per port id ever seen: not per packet.
            self.budget.resize(at + 1, (0, 0));
        }
        let Some((second, count)) = self.budget.get_mut(at) else {
            return false;
        };
        if *second != now {
            (*second, *count) = (now, 0);
        }
        *count = count.saturating_add(1);
        *count <= REQUESTS_PER_PORT_SECOND
    }

    /// Replies waiting to be sent.
    pub fn waiting(&self) -> usize {
        self.replies.waiting()
    }

    /// Moves the next reply into `buf`: its length, and its meta (sent
    /// out of the port its request came in on).
    pub fn receive_into(&self, buf: &mut [u8]) -> Option<(usize, Meta)> {
        self.replies
            .take_into(buf)
            .map(|(len, meta, _)| (len, meta))
    }

    /// Becomes readable when a reply arrives for a sleeping worker.
    pub fn wake_fd(&self) -> RawFd {
        self.replies.wake_fd()
    }

    /// Before sleeping: false if replies arrived meanwhile.
    pub fn may_sleep(&self) -> bool {
        self.replies.may_sleep()
    }

    pub fn awake(&self) {
        self.replies.awake()
    }
}

/// What the services answered, in total and per tenant.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceCounters {
    pub dhcp: DhcpCounters,
    pub dhcp_by_tenant: BTreeMap<TenantId, DhcpCounters>,
    /// Requests whose handling panicked (the thread goes on).
    pub panics: u64,
}

/// DHCP messages by what they got.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DhcpCounters {
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    /// RELEASE and DECLINE: counted, not answered.
    pub noted: u64,
    pub malformed: u64,
    /// From a MAC that is no VM of its port, or for another MAC.
    pub not_our_client: u64,
    /// A REQUEST to another server, or a type a server ignores.
    pub ignored: u64,
}

impl DhcpCounters {
    fn count(&mut self, outcome: &Result<dhcp::Answer, dhcp::Refusal>) {
        use smoltcp::wire::DhcpMessageType as Type;
        let counter = match outcome {
            Ok(dhcp::Answer::Sent(Type::Offer, _)) => &mut self.offers,
            Ok(dhcp::Answer::Sent(Type::Ack, _)) => &mut self.acks,
            Ok(dhcp::Answer::Sent(_, _)) => &mut self.naks,
            Ok(dhcp::Answer::Noted(_)) => &mut self.noted,
            Err(dhcp::Refusal::Malformed) => &mut self.malformed,
            Err(dhcp::Refusal::NotOurClient) => &mut self.not_our_client,
            Err(dhcp::Refusal::OtherServer | dhcp::Refusal::Unexpected) => &mut self.ignored,
        };
        *counter += 1;
    }
}

/// How long the service thread sleeps with nothing to do before it
/// looks at `stop` again.
const IDLE_MS: i32 = 100;

impl Services {
    /// Where `counters` can be read from another thread.
    pub fn counters(&self) -> Arc<Mutex<ServiceCounters>> {
        self.counters.clone()
    }

    /// Answers requests until `stop` is set.
    pub fn run(&mut self, tables: &impl TableSource, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if tables.with_current(|t| self.serve_waiting(t)) > 0 {
                continue;
            }
            if self.requests.may_sleep() {
                let mut fd = libc::pollfd {
                    fd: self.requests.wake_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for at most IDLE_MS.
                unsafe { libc::poll(&mut fd, 1, IDLE_MS) };
                self.requests.awake();
            }
        }
    }

    /// Answers every request waiting now; returns how many there were.
    pub fn serve_waiting(&mut self, tables: &Tables) -> usize {
        let mut request = [0u8; crate::parcel::PARCEL_BYTES];
        let mut reply = [0u8; dhcp::MAX_REPLY];
        let mut counters = ServiceCounters::default();
        let mut woken = vec![false; self.replies.len()];
        let mut served = 0;
        while let Some((len, meta, from)) = self.requests.take_into(&mut request) {
            served += 1;
            let frame = request.get(..len).unwrap_or_default();
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                dhcp::answer(tables, meta.in_port, frame, &mut reply)
            }));
            let Ok(outcome) = answered else {
                counters.panics += 1;
                continue;
            };
            counters.dhcp.count(&outcome);
            counters
                .dhcp_by_tenant
                .entry(meta.tenant)
                .or_default()
                .count(&outcome);
            let Ok(dhcp::Answer::Sent(_, reply_len)) = outcome else {
                continue;
            };
            let (Some(mailbox), Some(bytes)) =
                (self.replies.get(usize::from(from)), reply.get(..reply_len))
            else {
                continue;
            };
            let mut out = Meta::new(meta.in_port);
            out.classify(meta.tenant);
            out.tx(meta.in_port);
            // A worker with a full mailbox has far more to do than one
            // reply: the client asks again.
            if mailbox.post(bytes, out, 0).is_ok() {
                if let Some(w) = woken.get_mut(usize::from(from)) {
                    *w = true;
                }
            }
        }
        for (mailbox, _) in self.replies.iter().zip(&woken).filter(|(_, w)| **w) {
            mailbox.wake();
        }
        if served > 0 {
            self.add(&counters);
        }
        served
    }

    fn add(&self, new: &ServiceCounters) {
        let Ok(mut counters) = self.counters.lock() else {
            return;
        };
        counters.panics += new.panics;
        counters.dhcp.add(&new.dhcp);
        for (tenant, c) in &new.dhcp_by_tenant {
            counters.dhcp_by_tenant.entry(*tenant).or_default().add(c);
        }
    }
}

impl DhcpCounters {
    fn add(&mut self, o: &DhcpCounters) {
        self.offers += o.offers;
        self.acks += o.acks;
        self.naks += o.naks;
        self.noted += o.noted;
        self.malformed += o.malformed;
        self.not_our_client += o.not_our_client;
        self.ignored += o.ignored;
    }
}

/// A DNS label (RFC 1123): what a host name, or a tenant's name in its
/// domain, must be.
pub fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Marks for the router's services the frames the pipeline found for
/// them, when no service thread runs (a bare pipeline, replay): dropped
/// and counted instead.
pub fn refuse_without_services(frames: &mut [Frame<'_>], stats: &mut Stats) {
    for frame in frames.iter_mut() {
        if frame.meta.verdict == Verdict::Local {
            frame.meta.drop(stats, DropReason::NoService);
        }
    }
}
