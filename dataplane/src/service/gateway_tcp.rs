//! The TCP a VM opens to the router on its port: the metadata service
//! (169.254.169.254:80) and DNS over TCP on its gateway (RFC 7766).
//!
//! Each VM port has a stack of its own, fed only with that port's
//! packets, so a connection's VM is one of that port's, by the source
//! address port security held it to; what it says never picks another.
//! A port's stack has two sockets for each service: a VM holding them
//! open holds up its own port only, and only until its request is late
//! (metadata) or its connection idle (DNS).
use super::metadata::{self, MetadataCounters, Served};
use super::stack::{self, Stack};
use super::Outbox;
use crate::pipeline::Meta;
use crate::table::{Location, PortId, PortRole, Tables, TenantId};
use crate::wire::{Ipv4Packet, ETH_HEADER_LEN};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Connections a port's stack serves at once, per service.
const SOCKETS_PER_SERVICE: usize = 2;
/// Socket buffers: a request, and a window of answer (longer answers
/// are written as the VM acknowledges).
const RX_BUFFER: usize = 4096;
const TX_BUFFER: usize = 16 * 1024;
/// How long a metadata connection may take to send its request; then it
/// is reset.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A DNS connection with nothing asked or answered for this long is
/// closed (RFC 7766 leaves it to the server; forwarded queries wait 2 s
/// an upstream).
const DNS_IDLE: Duration = Duration::from_secs(10);
/// A peer that acknowledges nothing for this long is reset.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// A port's stack goes after this long without a packet.
const IDLE: Duration = Duration::from_secs(60);
/// Ports with a stack at once (80 KiB of socket buffers each); past it,
/// see `make_room`.
#[cfg(not(test))]
const MAX_STACKS: usize = 1024;
#[cfg(test)]
const MAX_STACKS: usize = 4;
/// The longest DNS query taken over TCP; a longer length resets.
const MAX_QUERY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Metadata,
    Dns,
}

/// A connection: which socket, and which of the connections it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConn {
    pub port: PortId,
    handle: SocketHandle,
    serial: u64,
}

/// A DNS query a VM sent over TCP, and where its answer goes.
pub(super) struct TcpQuery {
    pub conn: TcpConn,
    pub tenant: TenantId,
    pub worker: u16,
    pub message: Vec<u8>,
}

/// A socket and what its connection has read and has yet to write.
struct Conn {
    service: Service,
    handle: SocketHandle,
    /// 0 while it listens.
    serial: u64,
    read: Vec<u8>,
    unsent: Vec<u8>,
    /// Since it connected (metadata), or last asked or answered (DNS).
    since: Instant,
    /// Close once `unsent` is written.
    closing: bool,
    /// DNS queries read and not yet answered.
    owed: usize,
}

struct PortStack {
    tenant: TenantId,
    gateway: Ipv4Addr,
    /// The worker the port's packets last came through: its replies
    /// go back through it.
    worker: u16,
    stack: Stack,
    conns: Vec<Conn>,
    last_used: Instant,
}

impl PortStack {
    fn new(tenant: TenantId, gateway: Ipv4Addr, now: Instant) -> PortStack {
        let mut stack = Stack::new(&[metadata::ADDRESS, gateway], stack::seed(), now);
        let services = [Service::Metadata, Service::Dns];
        let conns = services
            .iter()
            .flat_map(|s| std::iter::repeat_n(*s, SOCKETS_PER_SERVICE))
            .map(|service| {
                let handle = stack.add_socket(RX_BUFFER, TX_BUFFER);
                stack.socket(handle).set_timeout(Some(ACK_TIMEOUT.into()));
                Conn {
                    service,
                    handle,
                    serial: 0,
                    read: Vec::new(),
                    unsent: Vec::new(),
                    since: now,
                    closing: false,
                    owed: 0,
                }
            })
            .collect();
        PortStack {
            tenant,
            gateway,
            worker: 0,
            stack,
            conns,
            last_used: now,
        }
    }
}

#[derive(Default)]
pub(super) struct GatewayTcp {
    stacks: HashMap<PortId, PortStack>,
    serials: u64,
    pub counters: MetadataCounters,
    /// Packets for no stack: none free, or not from a VM port.
    pub dropped: u64,
}

/// What `poll` passes between a port's stack and its services.
struct Ctx<'a> {
    tables: &'a Tables,
    port: PortId,
    now: Instant,
    queries: &'a mut Vec<TcpQuery>,
}

impl GatewayTcp {
    /// A TCP segment from a VM of `meta.in_port` to the metadata service
    /// or its gateway: into that port's stack. Returns the DNS queries
    /// it completed.
    pub(super) fn packet(
        &mut self,
        tables: &Tables,
        (meta, worker): (Meta, u16),
        frame: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) -> Vec<TcpQuery> {
        let ip = frame.get(ETH_HEADER_LEN..).unwrap_or_default();
        let gateway = match tables.port(meta.in_port).map(|p| p.role) {
            Some(PortRole::Vm {
                tenant, gateway, ..
            }) if tenant == meta.tenant => gateway.addr(),
            _ => {
                self.dropped += 1;
                return Vec::new();
            }
        };
        let full = self.stacks.len() >= MAX_STACKS;
        if full && !self.stacks.contains_key(&meta.in_port) && !self.make_room(meta.tenant) {
            self.dropped += 1;
            return Vec::new();
        }
        let stack = self
            .stacks
            .entry(meta.in_port)
            .or_insert_with(|| PortStack::new(meta.tenant, gateway, now));
        if (stack.tenant, stack.gateway) != (meta.tenant, gateway) {
            // The port moved to another tenant or tier: a new stack.
            *stack = PortStack::new(meta.tenant, gateway, now);
        }
        stack.last_used = now;
        stack.worker = worker;
        stack.stack.push(ip);
        self.poll(tables, meta.in_port, now, out)
    }

    /// Every stack is taken and a port of `tenant` wants one: the least
    /// recently used stack of the tenant that holds the most goes (its
    /// connections with it), if that tenant would still hold more than
    /// `tenant`. So one tenant's ports, however many, keep no other
    /// tenant from the services. Returns whether there is room now.
    fn make_room(&mut self, tenant: TenantId) -> bool {
        let mut held: HashMap<TenantId, usize> = HashMap::new();
        for s in self.stacks.values() {
            *held.entry(s.tenant).or_default() += 1;
        }
        let mine = held.get(&tenant).copied().unwrap_or(0);
        let Some((largest, most)) = held.into_iter().max_by_key(|(_, n)| *n) else {
            return true;
        };
        if mine + 1 >= most {
            return false;
        }
        let victim = self
            .stacks
            .iter()
            .filter(|(_, s)| s.tenant == largest)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(port, _)| *port);
        if let Some(port) = victim {
            self.stacks.remove(&port);
            self.counters.stacks_evicted += 1;
        }
        true
    }

    /// An answer to a DNS query of `conn`, written after what it owes
    /// (dropped if the connection is gone); returns whether it is.
    pub(super) fn answer(&mut self, conn: TcpConn, message: &[u8]) -> bool {
        let Some(c) = self.stacks.get_mut(&conn.port).and_then(|s| {
            s.conns
                .iter_mut()
                .find(|c| c.handle == conn.handle && c.serial == conn.serial)
        }) else {
            return false;
        };
        let Some(framed) = super::dns::tcp_framed(message) else {
            return false;
        };
        c.unsent.extend(framed);
        c.owed = c.owed.saturating_sub(1);
        true
    }

    /// Runs a port's stack: serves its connections, sends what it
    /// wrote; returns the DNS queries it read.
    pub(super) fn poll(
        &mut self,
        tables: &Tables,
        port: PortId,
        now: Instant,
        out: &mut Outbox,
    ) -> Vec<TcpQuery> {
        let mut queries = Vec::new();
        let Some(ps) = self.stacks.get_mut(&port) else {
            return queries;
        };
        let mut ctx = Ctx {
            tables,
            port,
            now,
            queries: &mut queries,
        };
        for _ in 0..4 {
            // Closed sockets listen again before packets meet them (a
            // SYN with no listener is reset).
            for c in &mut ps.conns {
                let socket = ps.stack.socket(c.handle);
                if !socket.is_open() {
                    let endpoint = match c.service {
                        Service::Metadata => (metadata::ADDRESS, metadata::PORT),
                        Service::Dns => (ps.gateway, super::dns::PORT),
                    };
                    let _ = socket.listen(endpoint);
                    (c.serial, c.closing, c.owed) = (0, false, 0);
                    c.read.clear();
                    c.unsent.clear();
                }
            }
            ps.stack.poll(now);
            let mut progressed = false;
            for c in &mut ps.conns {
                let owner = (&mut ps.stack, ps.tenant, ps.worker);
                progressed |= serve(&mut ctx, owner, c, &mut self.serials, &mut self.counters);
            }
            if !progressed {
                break;
            }
        }
        for packet in ps.stack.sent() {
            if let Some(frame) = in_ethernet(tables, port, &packet) {
                let mut meta = Meta::new(port);
                meta.classify(ps.tenant);
                meta.tx(port);
                out.push((ps.worker, frame, meta));
            }
        }
        queries
    }

    /// Retransmits and closes in every stack; idle stacks go, and those
    /// of ports that are no longer VM ports of their tenant.
    pub(super) fn tick(
        &mut self,
        tables: &Tables,
        now: Instant,
        out: &mut Outbox,
    ) -> Vec<TcpQuery> {
        self.stacks.retain(|port, s| {
            now.duration_since(s.last_used) < IDLE
                && matches!(tables.port(*port).map(|p| p.role), Some(PortRole::Vm { tenant, .. }) if tenant == s.tenant)
        });
        let ports: Vec<PortId> = self.stacks.keys().copied().collect();
        let mut queries = Vec::new();
        for port in ports {
            queries.extend(self.poll(tables, port, now, out));
        }
        queries
    }
}

/// Serves one connection of a port's stack: writes what it owes, reads
/// its requests. Returns whether it wrote (the stack has more to send).
fn serve(
    ctx: &mut Ctx<'_>,
    (stack, tenant, worker): (&mut Stack, TenantId, u16),
    c: &mut Conn,
    serials: &mut u64,
    counters: &mut MetadataCounters,
) -> bool {
    let socket = stack.socket(c.handle);
    if !socket.is_open() || socket.is_listening() {
        return false;
    }
    if c.serial == 0 {
        *serials += 1;
        c.serial = *serials;
        c.since = ctx.now;
    }
    let idle = ctx.now.duration_since(c.since);
    match c.service {
        Service::Metadata if !c.closing && idle > REQUEST_TIMEOUT => {
            socket.abort();
            return false;
        }
        Service::Dns if c.unsent.is_empty() && idle > DNS_IDLE => {
            socket.close();
            return true;
        }
        _ => {}
    }
    let mut wrote = flush(socket, c, ctx.now);
    if c.closing {
        return wrote;
    }
    stack::read_all(socket, &mut c.read);
    let vm = stack::remote_ip(socket);
    match c.service {
        Service::Metadata => {
            let who = (ctx.port, tenant, vm);
            match metadata::serve(ctx.tables, who, &c.read, counters) {
                Served::Incomplete => {}
                Served::TooLong => socket.abort(),
                Served::Response(response) => {
                    c.unsent = response;
                    c.closing = true;
                    wrote |= flush(socket, c, ctx.now);
                }
            }
        }
        Service::Dns => {
            let conn = TcpConn {
                port: ctx.port,
                handle: c.handle,
                serial: c.serial,
            };
            while let Some(message) = next_message(&mut c.read) {
                let Some(message) = message else {
                    socket.abort();
                    break;
                };
                c.since = ctx.now;
                c.owed += 1;
                ctx.queries.push(TcpQuery {
                    conn,
                    tenant,
                    worker,
                    message,
                });
            }
            // The VM is done asking, and has every answer: the socket
            // is free for its next connection.
            let hung_up = socket.state() == tcp::State::CloseWait;
            if hung_up && c.owed == 0 && c.unsent.is_empty() {
                socket.close();
                wrote = true;
            }
        }
    }
    wrote
}

/// Writes what the connection owes, as far as its socket takes it; a
/// closing one closes once it is all written. Returns whether it wrote.
fn flush(socket: &mut tcp::Socket<'static>, c: &mut Conn, now: Instant) -> bool {
    let wrote = stack::write_some(socket, &mut c.unsent);
    if wrote && c.service == Service::Dns {
        // An answer on its way is not idleness.
        c.since = now;
    }
    if c.closing && c.unsent.is_empty() {
        socket.close();
        return true;
    }
    wrote
}

/// The next length-prefixed DNS message read whole, taken out of
/// `read`: None if it is not all here; Some(None) if its length is
/// more than a query may be.
fn next_message(read: &mut Vec<u8>) -> Option<Option<Vec<u8>>> {
    let len = super::dns::tcp_length(read)?;
    if len > MAX_QUERY {
        return Some(None);
    }
    let message = read.get(2..2 + len)?.to_vec();
    read.drain(..2 + len);
    Some(Some(message))
}

/// An IP packet from a port's stack to a VM of the port, in an Ethernet
/// frame from the port's router MAC to that VM's MAC.
fn in_ethernet(tables: &Tables, port: PortId, packet: &[u8]) -> Option<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    let p = tables.port(port)?;
    let tenant = p.tenant()?;
    let host = tables.host(tenant, ip.dst_addr())?;
    if host.location != Location::Local(port) {
        return None;
    }
    Some(stack::in_ethernet(host.mac, p.mac, packet))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Port, TablesBuilder, Tenant};
    use crate::wire::EthernetAddress;

    /// Tenant a with VM ports 0..=4, tenant b with port 5, all on
    /// 10.0.0.0/24, VM 10.0.0.(10 + port) on each.
    fn tables() -> Tables {
        let mut b = TablesBuilder::new();
        let tenants = [
            b.add_tenant(Tenant::new("a", 1, Tenant::default_router_mac(1))),
            b.add_tenant(Tenant::new("b", 2, Tenant::default_router_mac(2))),
        ];
        for port in 0..6u8 {
            let tenant = tenants[usize::from(port / 5)];
            let role = PortRole::Vm {
                tenant,
                gateway: "10.0.0.1/24".parse().unwrap(),
            };
            let mac = EthernetAddress([2, 0xaa, 0, 0, 0, port]);
            let name = format!("p{port}");
            let id = b.add_port(Port { name, mac, role });
            let vm = EthernetAddress([2, 0x0a, 0, 0, 0, port]);
            b.add_local_host(tenant, Ipv4Addr::new(10, 0, 0, 10 + port), vm, id);
        }
        b.build()
    }

    /// A SYN to the metadata service from the VM on `port`.
    fn syn(t: &Tables, gw: &mut GatewayTcp, port: PortId, now: Instant) {
        let p = port as u8;
        let vm = xvr_testkit::headers(
            [2, 0x0a, 0, 0, 0, p],
            [2, 0xaa, 0, 0, 0, p],
            [10, 0, 0, 10 + p],
            [169, 254, 169, 254],
        );
        let mut meta = Meta::new(port);
        meta.tenant = u16::from(p / 5);
        gw.packet(
            t,
            (meta, 0),
            &vm.tcp_syn(40000, 80),
            now,
            &mut Outbox::new(),
        );
    }

    #[test]
    fn a_tenant_holding_every_stack_gives_its_oldest_to_another() {
        let t = tables();
        let mut gw = GatewayTcp::default();
        let start = Instant::now();
        for port in 0..5 {
            syn(
                &t,
                &mut gw,
                port,
                start + Duration::from_millis(port.into()),
            );
        }
        // Tenant a took all 4; its fifth port waits (no other tenant's
        // stack to take, and none of its own).
        let mut held: Vec<PortId> = gw.stacks.keys().copied().collect();
        held.sort();
        assert_eq!((held, gw.dropped), (vec![0, 1, 2, 3], 1));
        // Tenant b's port gets the least recently used of a's.
        syn(&t, &mut gw, 5, start + Duration::from_millis(10));
        let mut held: Vec<PortId> = gw.stacks.keys().copied().collect();
        held.sort();
        assert_eq!(held, [1, 2, 3, 5]);
        assert_eq!((gw.counters.stacks_evicted, gw.dropped), (1, 1));
    }
}
