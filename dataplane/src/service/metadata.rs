//! The metadata service at 169.254.169.254:80, as EC2, OpenStack and
//! CloudStack's user-data service serve it: a VM reads its instance id,
//! addresses, host name, public keys and user data over HTTP.
//!
//! Who asks is never taken from the request: each VM port has a TCP/IP
//! stack of its own (smoltcp sockets over an IP-medium device), fed only
//! with that port's packets, and a connection's VM is the one the tables
//! place at its source address on that port (port security already held
//! the source to the port's VMs). Two VMs with the same address in two
//! tenants sit on two ports, so on two stacks, and get their own data.
use super::Outbox;
use crate::pipeline::Meta;
use crate::table::{Location, PortId, PortRole, Tables, TenantId};
use crate::wire::{EthernetProtocol, ETH_HEADER_LEN};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as NetInstant;
use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Packet};
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The link-local address every cloud serves metadata on.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
pub const PORT: u16 = 80;
/// Connections a port's stack serves at once.
const SOCKETS_PER_PORT: usize = 2;
const RX_BUFFER: usize = 2048;
/// The longest user data a VM may be given (EC2 allows 16 KiB; cloud-init
/// configs with keys and scripts run larger).
pub const MAX_USER_DATA: usize = 32 * 1024;
/// Holds the longest answer: the largest user data and its header.
const TX_BUFFER: usize = MAX_USER_DATA + 1024;
/// How long a connection may take to send its request; then it is
/// reset, so a VM cannot hold its port's sockets open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A port's stack goes after this long without a packet.
const IDLE: Duration = Duration::from_secs(60);
/// Ports with a stack at once; past it, new ports wait for one to idle.
const MAX_STACKS: usize = 1024;

/// Metadata requests by what they got.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MetadataCounters {
    pub answered: u64,
    pub not_found: u64,
    /// Packets dropped: no stack free, or not IPv4 to the service.
    pub dropped: u64,
}

impl MetadataCounters {
    pub(super) fn add(&mut self, o: &MetadataCounters) {
        self.answered += o.answered;
        self.not_found += o.not_found;
        self.dropped += o.dropped;
    }
}

/// IP packets in and out of a port's stack.
#[derive(Default)]
struct Queue {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let result = f(&mut packet);
        self.0.push(packet);
        result
    }
}

impl Device for Queue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: NetInstant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: NetInstant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// One port's stack: the service's address, and its listening sockets.
struct Stack {
    tenant: TenantId,
    iface: Interface,
    device: Queue,
    sockets: SocketSet<'static>,
    handles: Vec<SocketHandle>,
    /// What each connection has read of its request, since when.
    requests: HashMap<SocketHandle, (Vec<u8>, Instant)>,
    last_used: Instant,
}

impl Stack {
    fn new(tenant: TenantId, now: Instant) -> Stack {
        let mut device = Queue::default();
        let config = Config::new(HardwareAddress::Ip);
        let mut iface = Interface::new(config, &mut device, net_now(now));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(ADDRESS.into(), 32));
        });
        // The IP medium has no neighbours to find: every answer goes back
        // out of the port, whatever the VM's address.
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Addr::new(169, 254, 0, 1));
        let mut sockets = SocketSet::new(Vec::new());
        let handles = (0..SOCKETS_PER_PORT)
            .map(|_| {
                let rx = tcp::SocketBuffer::new(vec![0; RX_BUFFER]);
                let tx = tcp::SocketBuffer::new(vec![0; TX_BUFFER]);
                sockets.add(tcp::Socket::new(rx, tx))
            })
            .collect();
        Stack {
            tenant,
            iface,
            device,
            sockets,
            handles,
            requests: HashMap::new(),
            last_used: now,
        }
    }
}

fn net_now(now: Instant) -> NetInstant {
    // smoltcp's clock only needs to move forward: time since an epoch of
    // this process.
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    NetInstant::from_micros(now.saturating_duration_since(epoch).as_micros() as i64)
}

#[derive(Default)]
pub struct Metadata {
    stacks: HashMap<PortId, Stack>,
    pub counters: MetadataCounters,
}

impl Metadata {
    /// A packet from a VM of `meta.in_port` to the service: into that
    /// port's stack, and whatever the stack answers into `out`.
    pub(super) fn packet(
        &mut self,
        tables: &Tables,
        (meta, worker): (Meta, u16),
        frame: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) {
        let ip = frame.get(ETH_HEADER_LEN..).unwrap_or_default();
        let to_us = Ipv4Packet::new_checked(ip).is_ok_and(|p| p.dst_addr() == ADDRESS);
        let vm_port = matches!(
            tables.port(meta.in_port).map(|p| p.role),
            Some(PortRole::Vm { .. })
        );
        if !to_us || !vm_port {
            self.counters.dropped += 1;
            return;
        }
        if !self.stacks.contains_key(&meta.in_port) && self.stacks.len() >= MAX_STACKS {
            self.counters.dropped += 1;
            return;
        }
        let stack = self
            .stacks
            .entry(meta.in_port)
            .or_insert_with(|| Stack::new(meta.tenant, now));
        if stack.tenant != meta.tenant {
            // The port moved to another tenant: a new stack.
            *stack = Stack::new(meta.tenant, now);
        }
        stack.last_used = now;
        stack.device.rx.push_back(ip.to_vec());
        self.poll(tables, (meta.in_port, worker), now, out);
    }

    /// Runs a port's stack: serves its connections, sends what it wrote.
    fn poll(
        &mut self,
        tables: &Tables,
        (port, worker): (PortId, u16),
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(stack) = self.stacks.get_mut(&port) else {
            return;
        };
        for _ in 0..4 {
            // Closed sockets listen again before packets meet them (a
            // SYN with no listener is reset).
            for &handle in &stack.handles {
                let socket = stack.sockets.get_mut::<tcp::Socket>(handle);
                if !socket.is_open() {
                    stack.requests.remove(&handle);
                    let _ = socket.listen(PORT);
                }
            }
            stack
                .iface
                .poll(net_now(now), &mut stack.device, &mut stack.sockets);
            let served = serve(tables, (port, now), stack, &mut self.counters);
            if !served {
                break;
            }
        }
        for packet in stack.device.tx.drain(..) {
            if let Some(frame) = in_ethernet(tables, port, &packet) {
                let mut meta = Meta::new(port);
                meta.classify(stack.tenant);
                meta.tx(port);
                out.push((worker, frame, meta));
            }
        }
    }

    /// Retransmits and closes in every stack; idle stacks go, and those
    /// of ports that are no longer VM ports.
    pub(super) fn tick(&mut self, tables: &Tables, worker: u16, now: Instant, out: &mut Outbox) {
        self.stacks.retain(|port, s| {
            now.duration_since(s.last_used) < IDLE
                && matches!(tables.port(*port).map(|p| p.role), Some(PortRole::Vm { tenant, .. }) if tenant == s.tenant)
        });
        let ports: Vec<PortId> = self.stacks.keys().copied().collect();
        for port in ports {
            self.poll(tables, (port, worker), now, out);
        }
    }
}

/// Reads requests, answers complete ones;
/// returns whether it answered any (the stack has more to send).
fn serve(
    tables: &Tables,
    (port, now): (PortId, Instant),
    stack: &mut Stack,
    counters: &mut MetadataCounters,
) -> bool {
    let mut answered = false;
    for &handle in &stack.handles {
        let socket = stack.sockets.get_mut::<tcp::Socket>(handle);
        let connected = socket.is_open() && !socket.is_listening();
        let (request, since) = stack
            .requests
            .entry(handle)
            .or_insert_with(|| (Vec::new(), now));
        if connected && now.duration_since(*since) > REQUEST_TIMEOUT {
            socket.abort();
            stack.requests.remove(&handle);
            continue;
        }
        if !connected {
            *since = now;
        }
        if !socket.can_recv() {
            continue;
        }
        let mut chunk = [0u8; 1024];
        while let Ok(n) = socket.recv_slice(&mut chunk) {
            if n == 0 {
                break;
            }
            request.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        let Some(end) = find(request, b"\r\n\r\n") else {
            if request.len() > RX_BUFFER {
                socket.abort();
            }
            continue;
        };
        let head = String::from_utf8_lossy(request.get(..end).unwrap_or_default()).to_string();
        let vm = socket.remote_endpoint().map(|e| match e.addr {
            smoltcp::wire::IpAddress::Ipv4(ip) => ip,
        });
        let (status, body) = match vm.and_then(|ip| answer(tables, port, stack.tenant, ip, &head)) {
            Some(body) => {
                counters.answered += 1;
                ("200 OK", body)
            }
            None => {
                counters.not_found += 1;
                ("404 Not Found", "not found\n".to_string())
            }
        };
        let response = format!(
            "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.send_slice(response.as_bytes());
        socket.close();
        stack.requests.remove(&handle);
        answered = true;
    }
    answered
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The body for `GET path` by the VM at `ip` on `port`; None: 404.
fn answer(
    tables: &Tables,
    port: PortId,
    tenant: TenantId,
    ip: Ipv4Addr,
    head: &str,
) -> Option<String> {
    let mut words = head.lines().next()?.split(' ');
    let (method, path) = (words.next()?, words.next()?);
    if method != "GET" {
        return None;
    }
    // Only a VM of this port, by the address it was held to.
    let host = tables.host(tenant, ip)?;
    if host.location != Location::Local(port) {
        return None;
    }
    let guest = tables.guest(tenant, ip).cloned().unwrap_or_default();
    let hostname = guest.hostname.clone().unwrap_or_else(|| ip.to_string());
    let public = tables
        .nat()
        .static_of_vm(tenant, ip)
        .or_else(|| tables.nat().source(tenant).map(|s| s.ip));
    let keys = || {
        let list: Vec<String> = (0..guest.public_keys.len())
            .map(|i| format!("{i}=key-{i}"))
            .collect();
        (!list.is_empty()).then(|| list.join("\n") + "\n")
    };
    let line = |s: String| Some(s + "\n");
    let path = path.trim_end_matches('/');
    match path {
        "/latest" => line("meta-data/\nuser-data".into()),
        "/latest/meta-data" => {
            let mut items = vec!["instance-id", "local-ipv4", "local-hostname", "hostname"];
            if public.is_some() {
                items.push("public-ipv4");
            }
            if !guest.public_keys.is_empty() {
                items.push("public-keys/");
            }
            line(items.join("\n"))
        }
        "/latest/meta-data/instance-id" => guest.instance_id.clone().and_then(line),
        "/latest/meta-data/local-ipv4" => line(ip.to_string()),
        "/latest/meta-data/local-hostname" | "/latest/meta-data/hostname" => line(hostname),
        "/latest/meta-data/public-ipv4" => public.map(|p| p.to_string()).and_then(line),
        "/latest/meta-data/public-keys" => keys(),
        // CloudStack's path: every key.
        "/latest/public-keys" => {
            (!guest.public_keys.is_empty()).then(|| guest.public_keys.join("\n") + "\n")
        }
        "/latest/user-data" => guest.user_data.clone(),
        _ => {
            let key = path
                .strip_prefix("/latest/meta-data/public-keys/")?
                .split('/')
                .next()?
                .parse::<usize>()
                .ok()?;
            guest.public_keys.get(key).cloned().and_then(line)
        }
    }
}

/// An IP packet from the service to a VM of `port`, in an Ethernet
/// frame from the port's router MAC to that VM's MAC.
fn in_ethernet(tables: &Tables, port: PortId, packet: &[u8]) -> Option<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    let p = tables.port(port)?;
    let tenant = p.tenant()?;
    let host = tables.host(tenant, ip.dst_addr())?;
    if host.location != Location::Local(port) {
        return None;
    }
    let mut frame = Vec::with_capacity(ETH_HEADER_LEN + packet.len());
    frame.extend_from_slice(&host.mac.0);
    frame.extend_from_slice(&p.mac.0);
    frame.extend_from_slice(&u16::from(EthernetProtocol::Ipv4).to_be_bytes());
    frame.extend_from_slice(packet);
    Some(frame)
}
