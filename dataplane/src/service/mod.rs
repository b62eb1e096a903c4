//! The router's own services for its tenants (DHCP, DNS), in a thread
//! of their own so that no request ever holds up a worker.
//!
//! A worker marks a frame for the services (`Verdict::Local`) and posts a
//! copy into the services' mailbox (`ServiceLink::send`), within a budget
//! per port and second, so one VM flooding requests cannot crowd out the
//! others: over budget, or with the mailbox full, the frame is dropped
//! and counted. The service thread (`Services`) answers each request from
//! the tables current then and posts the reply into the mailbox of the
//! worker that sent the request, which transmits it out of the port the
//! request came in on (`ServiceLink::receive_into`). A DNS query the
//! service forwards goes the same way, into the pipeline at L3 as if the
//! tenant's gateway had routed it. TCP (the metadata service, DNS over
//! TCP) is served by TCP/IP stacks of the services' own, fed the same
//! way (`gateway_tcp`, `upstream_tcp`).
pub mod dhcp;
pub mod dns;
mod gateway_tcp;
pub mod metadata;
mod stack;
pub mod udp;
mod upstream_tcp;

use crate::frame::Frame;
use crate::parcel::Mailbox;
use crate::pipeline::{DropReason, Meta, Stats, Verdict};
use crate::table::{PortRole, Tables, TenantId};
use crate::wire::IpProtocol::{self, Tcp, Udp};
use crate::worker::TableSource;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests a port may send the services in a second, unless its
/// tenant's limits say: a DHCP client sends a handful a minute, a VM's
/// resolver some per connection.
pub const REQUESTS_PER_PORT_SECOND: u32 = 1000;
/// Requests a tenant's ports may have answered in a second, together:
/// past it, a tenant with many VMs asking at once still leaves the
/// services' time to the others.
pub const REQUESTS_PER_TENANT_SECOND: u32 = 5000;
/// Parcels in the services' mailbox (requests from every worker), and in
/// each worker's (replies).
pub const PARCELS: usize = 1024;

/// A worker's end: where it posts requests and finds replies.
pub struct ServiceLink {
    requests: Arc<Mailbox>,
    replies: Arc<Mailbox>,
    worker: u16,
}

/// A worker's count of each port's requests to the services this second.
/// What arrives on a port every tenant shares (the uplink's upstream
/// answers) is counted per tenant there, so that one tenant's answers
/// never use up another's share.
#[derive(Debug, Default)]
pub struct PortBudget {
    /// Per VM port id: the second of its last request, and requests in it.
    ports: Vec<(u32, u32)>,
    /// The same per tenant id, of what came in on shared ports.
    shared: Vec<(u32, u32)>,
}

/// Frames the services send, each to a worker: (worker, frame, meta).
pub type Outbox = Vec<(u16, Vec<u8>, Meta)>;

/// The service thread's end.
pub struct Services {
    requests: Arc<Mailbox>,
    replies: Vec<Arc<Mailbox>>,
    counters: Arc<Mutex<ServiceCounters>>,
    dns: dns::Dns,
    gateway_tcp: gateway_tcp::GatewayTcp,
    /// Per tenant: the second of its last request, and requests in it.
    tenant_budget: HashMap<TenantId, (u64, u32)>,
    started: Instant,
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
        })
        .collect();
    let services = Services {
        requests,
        replies,
        counters: Arc::default(),
        dns: dns::Dns::new(),
        gateway_tcp: gateway_tcp::GatewayTcp::default(),
        tenant_budget: HashMap::new(),
        started: Instant::now(),
    };
    Ok((services, links))
}

impl ServiceLink {
    /// Posts the frames marked for the services (their buffers are then
    /// free); `now` is the worker's clock in seconds.
    pub fn send(
        &self,
        frames: &mut [Frame<'_>],
        (tables, budget, now): (&Tables, &mut PortBudget, u32),
        stats: &mut Stats,
    ) {
        let mut posted = false;
        for frame in frames.iter_mut() {
            if frame.meta.verdict != Verdict::Local {
                continue;
            }
            let share = tables
                .tenant(frame.meta.tenant)
                .and_then(|t| t.limits.service_requests_per_port_second)
                .unwrap_or(REQUESTS_PER_PORT_SECOND);
            let vm_port = matches!(
                tables.port(frame.meta.in_port).map(|p| p.role),
                Some(PortRole::Vm { .. })
            );
            let counts = match vm_port {
                true => (&mut budget.ports, usize::from(frame.meta.in_port)),
                false => (&mut budget.shared, usize::from(frame.meta.tenant)),
            };
            if !allows(counts, (now, share)) {
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

/// Counts a request at index `at` of `counts` (a port's or a tenant's)
/// in second `now`: whether it is within `share`.
fn allows((counts, at): (&mut Vec<(u32, u32)>, usize), (now, share): (u32, u32)) -> bool {
    if counts.len() <= at {
        // Once per id ever seen: not per packet.
        counts.resize(at + 1, (0, 0));
    }
    let Some((second, count)) = counts.get_mut(at) else {
        return false;
    };
    if *second != now {
        (*second, *count) = (now, 0);
    }
    *count = count.saturating_add(1);
    *count <= share
}

/// What the services answered, in total and per tenant.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceCounters {
    pub dhcp: DhcpCounters,
    pub dhcp_by_tenant: BTreeMap<TenantId, DhcpCounters>,
    pub dns: dns::DnsCounters,
    pub dns_by_tenant: BTreeMap<TenantId, dns::DnsCounters>,
    pub metadata: metadata::MetadataCounters,
    /// Requests over their tenant's share of a second, by tenant.
    pub rate_limited_by_tenant: BTreeMap<TenantId, u64>,
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
/// How often the services look at their timers (DNS upstreams).
const TICK: Duration = Duration::from_millis(100);

/// What a request to the services is, by its protocol and ports.
enum Request {
    Dhcp,
    DnsQuery,
    DnsAnswer,
    /// A VM's TCP to its port's services: metadata, DNS over TCP.
    GatewayTcp,
    /// An upstream's TCP, answering a query asked over TCP.
    DnsTcpAnswer,
}

impl Request {
    fn of(frame: &[u8]) -> Option<Request> {
        let ip = crate::pipeline::after_ethernet(frame);
        match ports(ip)? {
            (Tcp, dns::PORT, _) => Some(Request::DnsTcpAnswer),
            (Tcp, _, dns::PORT | metadata::PORT) => Some(Request::GatewayTcp),
            (Udp, dhcp::CLIENT_PORT, dhcp::SERVER_PORT) => Some(Request::Dhcp),
            (Udp, dns::PORT, _) => Some(Request::DnsAnswer),
            (Udp, _, dns::PORT) => Some(Request::DnsQuery),
            _ => None,
        }
    }
}

/// The protocol and ports of an IPv4 packet carrying TCP or UDP, not
/// fragmented (TCP segments from Linux have DF); None: not one. Only
/// this much is read on a worker; the services read the rest.
pub(crate) fn ports(ip: &[u8]) -> Option<(IpProtocol, u16, u16)> {
    let packet = crate::wire::Ipv4Packet::new_checked(ip).ok()?;
    if packet.more_frags() || packet.frag_offset() != 0 {
        return None;
    }
    match packet.next_header() {
        Tcp => {
            let tcp = crate::wire::TcpPacket::new_checked(packet.payload()).ok()?;
            Some((Tcp, tcp.src_port(), tcp.dst_port()))
        }
        Udp => {
            let udp = crate::wire::UdpPacket::new_checked(packet.payload()).ok()?;
            Some((Udp, udp.src_port(), udp.dst_port()))
        }
        _ => None,
    }
}

/// Whether an IPv4 packet is TCP to the metadata service.
pub(crate) fn metadata_packet(ip: &[u8]) -> bool {
    let to_service =
        crate::wire::Ipv4Packet::new_checked(ip).is_ok_and(|p| p.dst_addr() == metadata::ADDRESS);
    to_service && matches!(ports(ip), Some((Tcp, _, metadata::PORT)))
}

/// Whether the router's services take an IPv4 packet to a gateway
/// address (`local`: from a VM of this host): a DHCP client's, a VM's
/// DNS query (UDP or TCP), or an upstream's DNS answer (from anywhere
/// its NAT lets in; the service takes only the answers it waits for).
pub(crate) fn wanted_at_gateway(ip: &[u8], local: bool) -> bool {
    match ports(ip) {
        Some((Udp, dhcp::CLIENT_PORT, dhcp::SERVER_PORT)) => local,
        Some((_, dns::PORT, _)) => true,
        Some((_, _, dns::PORT)) => local,
        _ => false,
    }
}

impl Services {
    /// Where `counters` can be read from another thread.
    pub fn counters(&self) -> Arc<Mutex<ServiceCounters>> {
        self.counters.clone()
    }

    /// Answers requests until `stop` is set.
    pub fn run(&mut self, tables: &impl TableSource, stop: &AtomicBool) {
        let mut ticked = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if ticked.elapsed() >= TICK {
                ticked = Instant::now();
                tables.with_current(|t| self.tick(t, ticked));
            }
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
        let mut counters = ServiceCounters::default();
        let mut out = Outbox::new();
        let now = Instant::now();
        let mut served = 0;
        while let Some((len, meta, from)) = self.requests.take_into(&mut request) {
            served += 1;
            if !self.tenant_allows(tables, meta.tenant, now) {
                *counters
                    .rate_limited_by_tenant
                    .entry(meta.tenant)
                    .or_default() += 1;
                continue;
            }
            let frame = request.get(..len).unwrap_or_default();
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match Request::of(frame) {
                    Some(Request::Dhcp) => {
                        let outcome = self.dhcp(tables, (meta, from), frame, &mut out);
                        counters.dhcp.count(&outcome);
                        let by_tenant = counters.dhcp_by_tenant.entry(meta.tenant).or_default();
                        by_tenant.count(&outcome);
                    }
                    Some(Request::DnsQuery) => {
                        self.dns.query(tables, (meta, from), frame, now, &mut out)
                    }
                    Some(Request::DnsAnswer) => {
                        self.dns.upstream_answer(tables, meta, frame, now, &mut out)
                    }
                    Some(Request::GatewayTcp) => {
                        let queries =
                            self.gateway_tcp
                                .packet(tables, (meta, from), frame, now, &mut out);
                        self.tcp_queries(tables, queries, now, &mut out, &mut counters);
                    }
                    Some(Request::DnsTcpAnswer) => {
                        self.dns.upstream_tcp(meta, frame, now, &mut out)
                    }
                    // Not a request any service takes (the workers
                    // mark only these): nothing to answer.
                    None => counters.dns.malformed += 1,
                }
            }));
            if handled.is_err() {
                counters.panics += 1;
            }
        }
        self.tcp_queries(tables, Vec::new(), now, &mut out, &mut counters);
        self.post(out);
        if served > 0 {
            self.take_dns(&mut counters);
            self.take_metadata(&mut counters);
            self.add(&counters);
        }
        served
    }

    /// Answers DNS queries VMs sent over TCP, and writes every answer
    /// waiting for a TCP connection (which may let it read more).
    fn tcp_queries(
        &mut self,
        tables: &Tables,
        mut queries: Vec<gateway_tcp::TcpQuery>,
        now: Instant,
        out: &mut Outbox,
        counters: &mut ServiceCounters,
    ) {
        for _ in 0..4 {
            for query in queries.drain(..) {
                // Each query counts, however many a segment carries.
                if self.tenant_allows(tables, query.tenant, now) {
                    self.dns.query_tcp(tables, query, now, out);
                } else {
                    *counters
                        .rate_limited_by_tenant
                        .entry(query.tenant)
                        .or_default() += 1;
                }
            }
            let mut ports = std::collections::BTreeSet::new();
            for (conn, answer) in std::mem::take(&mut self.dns.tcp_answers) {
                if self.gateway_tcp.answer(conn, &answer) {
                    ports.insert(conn.port);
                }
            }
            for port in ports {
                queries.extend(self.gateway_tcp.poll(tables, port, now, out));
            }
            if queries.is_empty() {
                break;
            }
        }
    }

    /// Counts a request of `tenant`: whether it is within its share.
    fn tenant_allows(&mut self, tables: &Tables, tenant: TenantId, now: Instant) -> bool {
        let share = tables
            .tenant(tenant)
            .and_then(|t| t.limits.service_requests_per_second)
            .unwrap_or(REQUESTS_PER_TENANT_SECOND);
        let second = now.duration_since(self.started).as_secs();
        let (at, count) = self.tenant_budget.entry(tenant).or_insert((second, 0));
        if *at != second {
            (*at, *count) = (second, 0);
        }
        *count = count.saturating_add(1);
        *count <= share
    }

    /// Answers a DHCP client into `out`.
    fn dhcp(
        &mut self,
        tables: &Tables,
        (meta, from): (Meta, u16),
        frame: &[u8],
        out: &mut Outbox,
    ) -> Result<dhcp::Answer, dhcp::Refusal> {
        let mut reply = vec![0u8; dhcp::MAX_REPLY];
        let outcome = dhcp::answer(tables, meta.in_port, frame, &mut reply);
        if let Ok(dhcp::Answer::Sent(_, len)) = outcome {
            reply.truncate(len);
            let mut to = Meta::new(meta.in_port);
            to.classify(meta.tenant);
            to.tx(meta.in_port);
            out.push((from, reply, to));
        }
        outcome
    }

    /// The services' timers: DNS queries whose upstream is silent, TCP
    /// retransmissions and timeouts.
    fn tick(&mut self, tables: &Tables, now: Instant) {
        let mut out = Outbox::new();
        let mut counters = ServiceCounters::default();
        self.dns.tick(tables, now, &mut out);
        let queries = self.gateway_tcp.tick(tables, now, &mut out);
        self.tcp_queries(tables, queries, now, &mut out, &mut counters);
        self.post(out);
        self.take_dns(&mut counters);
        self.take_metadata(&mut counters);
        if counters != ServiceCounters::default() {
            self.add(&counters);
        }
    }

    /// Moves what the metadata service counted into `counters`.
    fn take_metadata(&mut self, counters: &mut ServiceCounters) {
        counters.metadata = std::mem::take(&mut self.gateway_tcp.counters);
        counters.metadata.dropped += std::mem::take(&mut self.gateway_tcp.dropped);
    }

    /// Moves what DNS counted into `counters`, in total and by tenant.
    fn take_dns(&mut self, counters: &mut ServiceCounters) {
        for (tenant, c) in std::mem::take(&mut self.dns.counters) {
            counters.dns.add(&c);
            counters.dns_by_tenant.entry(tenant).or_default().add(&c);
        }
    }

    /// Posts each frame into its worker's mailbox, and wakes them. A
    /// worker with a full mailbox has far more to do than this: the
    /// client asks again.
    fn post(&self, out: Outbox) {
        let mut woken = vec![false; self.replies.len()];
        for (worker, frame, meta) in out {
            let Some(mailbox) = self.replies.get(usize::from(worker)) else {
                continue;
            };
            if mailbox.post(&frame, meta, 0).is_ok() {
                if let Some(w) = woken.get_mut(usize::from(worker)) {
                    *w = true;
                }
            }
        }
        for (mailbox, _) in self.replies.iter().zip(&woken).filter(|(_, w)| **w) {
            mailbox.wake();
        }
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
        counters.dns.add(&new.dns);
        counters.metadata.add(&new.metadata);
        for (tenant, n) in &new.rate_limited_by_tenant {
            *counters.rate_limited_by_tenant.entry(*tenant).or_default() += n;
        }
        for (tenant, c) in new
            .dns_by_tenant
            .iter()
            .filter(|(_, c)| **c != Default::default())
        {
            counters.dns_by_tenant.entry(*tenant).or_default().add(c);
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
