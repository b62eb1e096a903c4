//! Flow offload's maps (`src/bpf/lib/flows.h`): the entries workers
//! install for the directions of established flows they forwarded, which
//! the steering program then forwards itself, and what it tells back (when
//! an entry last forwarded, how much).
use crate::{Context, Error};
use aya::maps::{HashMap, IterableMap, Map, MapData};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

/// One direction of a flow as it arrives: on interface `ifindex`, with
/// these addresses and ports (over the overlay, the inner packet's, in
/// VXLAN of VNI `overlay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    pub overlay: Option<u32>,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// What happens around the rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    Plain,
    /// Encapsulated after the rewrite: `outer` as the workers write it
    /// for this flow, lengths zero (and the IPv4 checksum computed so).
    Encap {
        outer: [u8; crate::VXLAN_OVERHEAD],
    },
    /// It arrives in VXLAN of `vni` from VTEP `vtep`, and leaves
    /// decapsulated.
    Decap {
        vtep: Ipv4Addr,
        vni: u32,
    },
}

/// What the steering program does with that direction's packets: what a
/// worker did with one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowAction {
    /// The tables generation it was decided under.
    pub generation: u32,
    pub out_ifindex: u32,
    /// Destination and source MAC a packet must arrive with.
    pub in_macs: [u8; 12],
    /// Destination and source MAC it leaves with.
    pub out_macs: [u8; 12],
    /// Addresses and ports it leaves with.
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    /// Routed: the TTL goes down by one.
    pub ttl_dec: bool,
    pub kind: FlowKind,
    /// Longest IPv4 packet (before encapsulation) to forward; longer
    /// ones go to the workers (which fragment or answer them).
    pub max_ip_len: u16,
}

/// What an entry forwarded since it was installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowUse {
    /// CLOCK_MONOTONIC nanoseconds of its last packet (read coarsely,
    /// to a few milliseconds); 0: none yet.
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// What an entry depends on: the tables it was decided under, and the
/// interfaces and VNIs it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRefs {
    pub generation: u32,
    pub in_ifindex: u32,
    pub out_ifindex: u32,
    /// The VNI it arrives in, if over the overlay.
    pub in_vni: Option<u32>,
    /// The VNI it leaves in, if encapsulated.
    pub out_vni: Option<u32>,
}

/// `struct flow_key` of flows.h.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct FlowKeyValue {
    ifindex: u32,
    vni: u32,
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    overlay: u8,
    pad: [u8; 2],
}

/// `struct flow_action` of flows.h.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct FlowActionValue {
    generation: u32,
    out_ifindex: u32,
    in_eth: [u8; 12],
    out_eth: [u8; 12],
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    ttl_dec: u8,
    kind: u8,
    max_ip_len: u16,
    last_seen_ns: u64,
    packets: u64,
    bytes: u64,
    /// `outer`, or `from` (VTEP in network order, VNI) of flows.h: a
    /// union of 52 bytes there, with 4 of padding after it.
    overlay: [u8; crate::VXLAN_OVERHEAD],
    pad: [u8; 6],
}

// SAFETY: plain C structs without padding holes (checked by their sizes
// below), valid for any bytes.
unsafe impl aya::Pod for FlowKeyValue {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowActionValue {}
const _: () = assert!(std::mem::size_of::<FlowKeyValue>() == 24);
const _: () = assert!(std::mem::size_of::<FlowActionValue>() == 128);

/// Addresses and ports in network byte order, as the program reads them.
fn be32(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

fn be16(port: u16) -> u16 {
    u16::from_ne_bytes(port.to_be_bytes())
}

impl FlowKeyValue {
    fn new(k: &FlowKey) -> FlowKeyValue {
        FlowKeyValue {
            ifindex: k.ifindex,
            vni: k.overlay.unwrap_or(0),
            overlay: u8::from(k.overlay.is_some()),
            saddr: be32(k.src),
            daddr: be32(k.dst),
            sport: be16(k.sport),
            dport: be16(k.dport),
            proto: k.proto,
            pad: [0; 2],
        }
    }
}

/// Where the VNI sits in `FlowKind::Encap`'s outer headers: after
/// Ethernet, IPv4 and UDP, bytes 4-6 of the VXLAN header.
const OUTER_VNI: usize = 14 + 20 + 8 + 4;

impl FlowActionValue {
    fn refs(&self, key: &FlowKeyValue) -> FlowRefs {
        let out_vni = (self.kind == 1).then(|| {
            let vni = &self.overlay[OUTER_VNI..OUTER_VNI + 3];
            u32::from_be_bytes([0, vni[0], vni[1], vni[2]])
        });
        FlowRefs {
            generation: self.generation,
            in_ifindex: key.ifindex,
            out_ifindex: self.out_ifindex,
            in_vni: (key.overlay != 0).then_some(key.vni),
            out_vni,
        }
    }

    fn new(a: &FlowAction) -> FlowActionValue {
        let mut overlay = [0; crate::VXLAN_OVERHEAD];
        let kind = match a.kind {
            FlowKind::Plain => 0,
            FlowKind::Encap { outer } => {
                overlay = outer;
                1
            }
            FlowKind::Decap { vtep, vni } => {
                overlay[..4].copy_from_slice(&vtep.octets());
                overlay[4..8].copy_from_slice(&vni.to_ne_bytes());
                2
            }
        };
        FlowActionValue {
            generation: a.generation,
            out_ifindex: a.out_ifindex,
            in_eth: a.in_macs,
            out_eth: a.out_macs,
            saddr: be32(a.src),
            daddr: be32(a.dst),
            sport: be16(a.sport),
            dport: be16(a.dport),
            ttl_dec: u8::from(a.ttl_dec),
            kind,
            max_ip_len: a.max_ip_len,
            overlay,
            pad: [0; 6],
            last_seen_ns: 0,
            packets: 0,
            bytes: 0,
        }
    }
}

/// A handle on the offloaded flows. Each worker holds its own
/// (`try_clone`); the entries are the kernel's, shared by all.
pub struct FlowTable(HashMap<MapData, FlowKeyValue, FlowActionValue>);

impl FlowTable {
    pub(crate) fn new(map: Map) -> Result<FlowTable, Error> {
        Ok(FlowTable(HashMap::try_from(map).context("flows")?))
    }

    /// Another handle on the same map (a duplicated descriptor).
    pub fn try_clone(&self) -> Result<FlowTable, Error> {
        let fd = self
            .0
            .map()
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| {
                aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "dup",
                    io_error: e,
                })
            })
            .context("flows")?;
        let data = MapData::from_fd(fd).context("flows")?;
        FlowTable::new(Map::LruHashMap(data))
    }

    /// The program forwards `key`'s packets as `action` says, from now
    /// on; its use counts start again.
    pub fn install(&mut self, key: &FlowKey, action: &FlowAction) -> Result<(), Error> {
        self.0
            .insert(FlowKeyValue::new(key), FlowActionValue::new(action), 0)
            .context("flows")
    }

    /// `key`'s packets go to the workers again. A key that is not there
    /// (never installed, or aged out) is no error.
    pub fn remove(&mut self, key: &FlowKey) -> Result<(), Error> {
        crate::remove_key(&mut self.0, FlowKeyValue::new(key), "flows")
    }

    /// Removes every entry `gone` picks by what it names; returns how
    /// many went. A walk of the map: for the control plane, when ports or
    /// tenants were deleted.
    pub fn remove_where(&mut self, gone: impl Fn(&FlowRefs) -> bool) -> Result<usize, Error> {
        let mut doomed = Vec::new();
        for entry in self.0.iter() {
            // An entry that went while walking is no error.
            let Ok((key, action)) = entry else { continue };
            if gone(&action.refs(&key)) {
                doomed.push(key);
            }
        }
        for key in &doomed {
            crate::remove_key(&mut self.0, *key, "flows")?;
        }
        Ok(doomed.len())
    }

    /// What `key`'s entry forwarded; None if it has none.
    pub fn usage(&self, key: &FlowKey) -> Result<Option<FlowUse>, Error> {
        match self.0.get(&FlowKeyValue::new(key), 0) {
            Ok(v) => Ok(Some(FlowUse {
                last_seen_ns: v.last_seen_ns,
                packets: v.packets,
                bytes: v.bytes,
            })),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("flows"),
        }
    }

    /// How many entries the map holds (a walk of the map: for tests and
    /// the control plane, not the data path).
    pub fn len(&self) -> usize {
        self.0.keys().filter(Result::is_ok).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Nanoseconds of CLOCK_MONOTONIC, the clock of `FlowUse::last_seen_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
