//! DNS queries asked again of an upstream over TCP when its UDP answer
//! came truncated (RFC 7766). They leave from the gateway address the
//! UDP query left from, into the pipeline at L3, so through the
//! tenant's source NAT like the UDP ones; a stack per (tenant, gateway)
//! holds their connections, each to one upstream for one query.
//!
//! A connection's sequence numbers are seeded at random, and only the
//! upstream asked, at that port, can answer it: a VM or an off-path
//! host would have to guess both.
use super::stack::{self, Stack};
use super::Outbox;
use crate::pipeline::{Meta, Stage};
use crate::table::{PortId, TenantId};
use crate::wire::{EthernetAddress, Ipv4Packet, ETH_HEADER_LEN};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How long a query over TCP may take, from the connection's SYN to
/// the answer's last byte.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Queries over TCP a tenant may have at once; past it, the truncated
/// answer is passed on.
const PER_TENANT: usize = 16;
/// Socket buffers: the query, and a window of answer (read as it comes).
const TX_BUFFER: usize = 1024;
const RX_BUFFER: usize = 16 * 1024;
/// The DNS port upstreams listen on.
const DNS_PORT: u16 = 53;

/// Where a stack's packets enter the pipeline: through a worker, as
/// routed by the tenant's gateway on a port of its.
#[derive(Debug, Clone, Copy)]
pub(super) struct Via {
    pub worker: u16,
    pub port: PortId,
    pub mac: EthernetAddress,
}

/// `port`, or the next of 0x8000..=0xffff that none of the stack's
/// connections uses: two queries on one port to one upstream would be
/// one connection to smoltcp, and each would read the other's answer.
fn free_port<P>(client: &mut ClientStack<P>, port: u16) -> u16 {
    let mut port = port | 0x8000;
    while client.asks.iter().any(|a| {
        let socket = client.stack.socket(a.handle);
        socket.local_endpoint().map(|e| e.port) == Some(port)
    }) {
        port = port.wrapping_add(1) | 0x8000;
    }
    port
}

/// One query on its way: its connection, and what it read.
struct Ask<P> {
    handle: SocketHandle,
    /// The query, length-prefixed, until written.
    unsent: Vec<u8>,
    read: Vec<u8>,
    started: Instant,
    /// Taken when the query ends; the socket then closes and goes.
    pending: Option<P>,
}

struct ClientStack<P> {
    stack: Stack,
    via: Via,
    asks: Vec<Ask<P>>,
}

/// An ended query: what it carried, and the answer (None: the upstream
/// did not give one in time).
pub(super) type Ended<P> = (P, Option<Vec<u8>>);

pub(super) struct UpstreamTcp<P> {
    stacks: HashMap<(TenantId, Ipv4Addr), ClientStack<P>>,
}

impl<P> Default for UpstreamTcp<P> {
    fn default() -> Self {
        UpstreamTcp {
            stacks: HashMap::new(),
        }
    }
}

impl<P> UpstreamTcp<P> {
    /// Asks `upstream` the DNS message `query` over TCP from `gateway`
    /// at local port `port`; `pending` comes back when it ends. Err:
    /// the tenant has too many asked, or the connection cannot be made.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ask(
        &mut self,
        (tenant, gateway, port): (TenantId, Ipv4Addr, u16),
        via: Via,
        upstream: Ipv4Addr,
        query: &[u8],
        pending: P,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<(), P> {
        let asked: usize = self
            .stacks
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|(_, s)| s.asks.len())
            .sum();
        let Some(unsent) = super::dns::tcp_framed(query) else {
            return Err(pending);
        };
        if asked >= PER_TENANT {
            return Err(pending);
        }
        let client = self
            .stacks
            .entry((tenant, gateway))
            .or_insert_with(|| ClientStack {
                stack: Stack::new(&[gateway], stack::seed(), now),
                via,
                asks: Vec::new(),
            });
        client.via = via;
        let port = free_port(client, port);
        let handle = client.stack.add_socket(RX_BUFFER, TX_BUFFER);
        if !client
            .stack
            .connect(handle, (upstream, DNS_PORT), (gateway, port))
        {
            client.stack.sockets.remove(handle);
            return Err(pending);
        }
        client.asks.push(Ask {
            handle,
            unsent,
            read: Vec::new(),
            started: now,
            pending: Some(pending),
        });
        let mut ended = Vec::new();
        poll(tenant, client, now, out, &mut ended);
        debug_assert!(ended.is_empty());
        Ok(())
    }

    /// A TCP segment from an upstream to `tenant`'s gateway address.
    pub(super) fn packet(
        &mut self,
        tenant: TenantId,
        frame: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) -> Vec<Ended<P>> {
        let mut ended = Vec::new();
        let ip = frame.get(ETH_HEADER_LEN..).unwrap_or_default();
        let Ok(packet) = Ipv4Packet::new_checked(ip) else {
            return ended;
        };
        if let Some(client) = self.stacks.get_mut(&(tenant, packet.dst_addr())) {
            client.stack.push(ip);
            poll(tenant, client, now, out, &mut ended);
        }
        ended
    }

    /// Retransmissions, and queries out of time; stacks with nothing
    /// left go.
    pub(super) fn tick(&mut self, now: Instant, out: &mut Outbox) -> Vec<Ended<P>> {
        let mut ended = Vec::new();
        for ((tenant, _), client) in &mut self.stacks {
            poll(*tenant, client, now, out, &mut ended);
        }
        self.stacks.retain(|_, c| !c.asks.is_empty());
        ended
    }

    /// Queries over TCP under way.
    pub fn asked(&self) -> usize {
        self.stacks.values().map(|s| s.asks.len()).sum()
    }
}

/// Runs a stack: writes queries, reads answers, ends what is answered
/// or late into `ended`, and sends its packets.
fn poll<P>(
    tenant: TenantId,
    client: &mut ClientStack<P>,
    now: Instant,
    out: &mut Outbox,
    ended: &mut Vec<Ended<P>>,
) {
    for _ in 0..4 {
        client.stack.poll(now);
        let mut progressed = false;
        for ask in &mut client.asks {
            progressed |= advance(&mut client.stack, ask, now, ended);
        }
        if !progressed {
            break;
        }
    }
    // Sockets of ended queries go once closed, or once late.
    let stack = &mut client.stack;
    client.asks.retain(|ask| {
        let open = stack.socket(ask.handle).is_open();
        let keep = ask.pending.is_some() || (open && now.duration_since(ask.started) < TIMEOUT * 2);
        if !keep {
            stack.sockets.remove(ask.handle);
        }
        keep
    });
    for packet in client.stack.sent() {
        let frame = stack::in_ethernet(client.via.mac, client.via.mac, &packet);
        // Routed from the gateway in the tenant's VRF.
        let mut meta = Meta::new(client.via.port);
        meta.classify(tenant);
        meta.stage = Stage::L3;
        out.push((client.via.worker, frame, meta));
    }
}

/// Moves one query on; returns whether it wrote, read or ended.
fn advance<P>(
    stack: &mut Stack,
    ask: &mut Ask<P>,
    now: Instant,
    ended: &mut Vec<Ended<P>>,
) -> bool {
    if ask.pending.is_none() {
        return false;
    }
    let socket = stack.socket(ask.handle);
    let mut progressed = socket.may_send() && stack::write_some(socket, &mut ask.unsent);
    progressed |= stack::read_all(socket, &mut ask.read);
    let answer = super::dns::tcp_length(&ask.read).and_then(|len| ask.read.get(2..2 + len));
    let late = now.duration_since(ask.started) >= TIMEOUT;
    let answer = answer.map(<[u8]>::to_vec);
    let hung_up =
        !socket.is_open() || matches!(socket.state(), tcp::State::CloseWait | tcp::State::LastAck);
    if answer.is_some() || late || hung_up {
        if answer.is_some() {
            socket.close();
        } else {
            socket.abort();
        }
        if let Some(pending) = ask.pending.take() {
            ended.push((pending, answer));
        }
        return true;
    }
    progressed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TCP ports of the SYNs in `out` (IPv4 from the gateway).
    fn syn_ports(out: &Outbox) -> Vec<u16> {
        out.iter()
            .filter_map(|(_, frame, _)| {
                let ip = Ipv4Packet::new_checked(frame.get(ETH_HEADER_LEN..)?).ok()?;
                let tcp = ip.payload();
                Some(u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]))
            })
            .collect()
    }

    #[test]
    fn two_queries_drawn_on_one_port_get_two_connections() {
        let mut tcp = UpstreamTcp::default();
        let gateway = Ipv4Addr::new(10, 0, 0, 1);
        let upstream = Ipv4Addr::new(198, 51, 100, 53);
        let via = Via {
            worker: 0,
            port: 1,
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
        };
        let query = [0u8; 17];
        let (now, mut out) = (Instant::now(), Outbox::new());
        for pending in [1, 2] {
            let from = (0, gateway, 0x9000);
            let asked = tcp.ask(from, via, upstream, &query, pending, now, &mut out);
            assert!(asked.is_ok());
        }
        assert_eq!(syn_ports(&out), [0x9000, 0x9001]);
    }
}
