//! A TCP/IP stack of the services' own (smoltcp over an in-memory
//! IP-medium device): the services push it the IP packets the workers
//! handed them, poll it, and take what it sends. The metadata service
//! and DNS over TCP each run their sockets on such stacks.
use crate::wire::{EthernetAddress, EthernetProtocol, ETH_HEADER_LEN};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as NetInstant;
use smoltcp::wire::{HardwareAddress, IpCidr};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Instant;

/// Packets a stack holds unread; past it, new ones are dropped (the
/// peer retransmits).
const RX_QUEUE: usize = 64;

/// IP packets in and out of a stack.
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

/// A stack with its own addresses and sockets.
pub struct Stack {
    iface: Interface,
    device: Queue,
    pub sockets: SocketSet<'static>,
}

impl Stack {
    /// A stack answering on `addresses` (at most two), whose every packet
    /// goes back the way the services' packets came: the IP medium has
    /// no neighbours to find. `seed` seeds its initial sequence numbers.
    pub fn new(addresses: &[Ipv4Addr], seed: u64, now: Instant) -> Stack {
        let mut device = Queue::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, net_now(now));
        iface.update_ip_addrs(|addrs| {
            for address in addresses {
                let _ = addrs.push(IpCidr::new((*address).into(), 32));
            }
        });
        // Any next hop will do: packets leave by the services' queue.
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Addr::new(169, 254, 0, 1));
        Stack {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
        }
    }

    /// A TCP socket with buffers of these sizes.
    pub fn add_socket(&mut self, rx: usize, tx: usize) -> SocketHandle {
        let rx = tcp::SocketBuffer::new(vec![0; rx]);
        let tx = tcp::SocketBuffer::new(vec![0; tx]);
        self.sockets.add(tcp::Socket::new(rx, tx))
    }

    pub fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    /// Connects `handle` to `remote` from `local` (a port of its own).
    pub fn connect(
        &mut self,
        handle: SocketHandle,
        remote: (Ipv4Addr, u16),
        local: (Ipv4Addr, u16),
    ) -> bool {
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        socket.connect(self.iface.context(), remote, local).is_ok()
    }

    /// An IP packet that arrived for the stack.
    pub fn push(&mut self, packet: &[u8]) {
        if self.device.rx.len() < RX_QUEUE {
            self.device.rx.push_back(packet.to_vec());
        }
    }

    /// Lets the stack read its packets, and its timers run.
    pub fn poll(&mut self, now: Instant) {
        self.iface
            .poll(net_now(now), &mut self.device, &mut self.sockets);
    }

    /// The IP packets the stack sent since.
    pub fn sent(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.device.tx.drain(..)
    }
}

fn net_now(now: Instant) -> NetInstant {
    // smoltcp's clock only needs to move forward: time since an epoch of
    // this process.
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    NetInstant::from_micros(now.saturating_duration_since(epoch).as_micros() as i64)
}

/// Reads everything `socket` has into `read`; returns whether it read.
pub fn read_all(socket: &mut tcp::Socket<'static>, read: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 2048];
    let mut any = false;
    while let Ok(n) = socket.recv_slice(&mut chunk) {
        if n == 0 {
            break;
        }
        read.extend_from_slice(chunk.get(..n).unwrap_or_default());
        any = true;
    }
    any
}

/// Writes as much of `unsent` as `socket` takes, and drops it from
/// `unsent`; returns whether it wrote.
pub fn write_some(socket: &mut tcp::Socket<'static>, unsent: &mut Vec<u8>) -> bool {
    match socket.send_slice(unsent) {
        Ok(n) if n > 0 => {
            unsent.drain(..n);
            true
        }
        _ => false,
    }
}

/// An IP packet a stack sent, in an Ethernet frame from `src` to `dst`.
pub fn in_ethernet(dst: EthernetAddress, src: EthernetAddress, packet: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_HEADER_LEN + packet.len());
    frame.extend_from_slice(&dst.0);
    frame.extend_from_slice(&src.0);
    frame.extend_from_slice(&u16::from(EthernetProtocol::Ipv4).to_be_bytes());
    frame.extend_from_slice(packet);
    frame
}

/// The remote IPv4 address of a connected socket.
pub fn remote_ip(socket: &tcp::Socket<'_>) -> Option<Ipv4Addr> {
    socket.remote_endpoint().map(|e| match e.addr {
        smoltcp::wire::IpAddress::Ipv4(ip) => ip,
    })
}

/// A seed for a stack's sequence numbers: not guessable by whoever
/// sees only the stack's packets.
pub fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is keyed from the OS's randomness.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}
