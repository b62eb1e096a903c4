//! Loads xvr's XDP steering program (`src/bpf/steer.bpf.c`), attaches it to
//! interfaces, and fills the maps that tell it which frames are xvr's: all
//! of a VM port's, UDP 4789 to a local VTEP, IPv4 to a public NAT address.
//! Those go to the AF_XDP socket of their queue; the rest to the kernel.
//! Dropping a `Steering` detaches the program from every interface.
//!
//! The program also replays xvr's L2 decisions (`FastPath`): frames
//! between VMs of a tenant, local or behind a VTEP, are forwarded in XDP.
pub mod netdev;

use aya::maps::{HashMap, MapData, PerCpuArray, XskMap};
use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{ProgramError, SchedClassifier, Xdp, XdpMode};
use aya::{include_bytes_aligned, Ebpf};
use std::collections::HashMap as StdHashMap;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::Arc;

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));
const PROGRAM: &str = "xvr_steer";
const TC_PROGRAM: &str = "xvr_tc";

/// What the program decided for a frame; indexes its per-CPU counters.
/// Keep in step with `enum decision` in steer.bpf.c.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    ToSocketVmPort,
    ToSocketVxlan,
    ToSocketPublic,
    /// Ours, but no AF_XDP socket on that queue: passed to the kernel.
    NoSocket,
    PassNotOurs,
    PassNotIpv4,
    PassLaterFragment,
    PassMalformed,
    /// Fast path: from a VM port to a local VM's port.
    FastBridge,
    /// Fast path: from a VM port, encapsulated toward a VTEP.
    FastEncap,
    /// Fast path: from a VTEP, decapsulated to a local VM's port.
    FastDecap,
    /// Fast path in tc: left to the tc program, which forwards it.
    PassToTc,
    /// Fast path in tc: a GSO packet it does not take, larger than a
    /// socket's frame: passed on to the tc program to be segmented.
    PassToSegment,
    /// The tc program sent such a packet through the segmenter.
    ToSegmenter,
    /// Such a packet with no segmenter to go to: dropped.
    DropTooBig,
    /// From a VM port with no socket on its queue (or, in tc mode, not
    /// taken and no segmenter): dropped, never passed to the host.
    DropVmNoSocket,
    /// TC mode: a VM port's frame the tc program did not forward (not a
    /// too-big GSO packet), sent to the workers through the segmenter.
    TcToWorkers,
}

impl Decision {
    pub const ALL: [Decision; 17] = [
        Decision::ToSocketVmPort,
        Decision::ToSocketVxlan,
        Decision::ToSocketPublic,
        Decision::NoSocket,
        Decision::PassNotOurs,
        Decision::PassNotIpv4,
        Decision::PassLaterFragment,
        Decision::PassMalformed,
        Decision::FastBridge,
        Decision::FastEncap,
        Decision::FastDecap,
        Decision::PassToTc,
        Decision::PassToSegment,
        Decision::ToSegmenter,
        Decision::DropTooBig,
        Decision::DropVmNoSocket,
        Decision::TcToWorkers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Decision::ToSocketVmPort => "to_socket_vm_port",
            Decision::ToSocketVxlan => "to_socket_vxlan",
            Decision::ToSocketPublic => "to_socket_public",
            Decision::NoSocket => "no_socket",
            Decision::PassNotOurs => "pass_not_ours",
            Decision::PassNotIpv4 => "pass_not_ipv4",
            Decision::PassLaterFragment => "pass_later_fragment",
            Decision::PassMalformed => "pass_malformed",
            Decision::FastBridge => "fast_bridge",
            Decision::FastEncap => "fast_encap",
            Decision::FastDecap => "fast_decap",
            Decision::PassToTc => "pass_to_tc",
            Decision::PassToSegment => "pass_to_segment",
            Decision::ToSegmenter => "to_segmenter",
            Decision::DropTooBig => "drop_too_big",
            Decision::DropVmNoSocket => "drop_vm_no_socket",
            Decision::TcToWorkers => "tc_to_workers",
        }
    }
}

/// How to attach: native (in the driver, the default and what veth
/// supports) or generic (in the kernel stack, for drivers without XDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

/// What went wrong loading, attaching or updating the steering program.
/// Each message names what was being done, as the kernel's or aya's
/// error alone would not. (aya's errors are boxed: they are large, and
/// every map update returns this.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading the object.
    #[error("{context}: {source}")]
    Load {
        context: String,
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// Verifying, attaching, detaching or running a program.
    #[error("{context}: {source}")]
    Program {
        context: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Reading or writing a map.
    #[error("{context}: {source}")]
    Map {
        context: String,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("map {0} missing")]
    MissingMap(String),
    #[error("program {0} missing")]
    MissingProgram(&'static str),
    #[error("XDP is attached to {0} already")]
    AlreadyAttached(String),
    #[error("at most {MAX_PORTS} interfaces")]
    TooManyInterfaces,
    #[error("queue {0}: at most {MAX_QUEUES} queues per interface")]
    QueueOutOfRange(u32),
}

/// Names what was being done when aya failed.
trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, aya::EbpfError> {
    fn context(self, what: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Load {
            context: what.into(),
            source: Box::new(source),
        })
    }
}

impl<T> Context<T> for Result<T, aya::programs::ProgramError> {
    fn context(self, what: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Program {
            context: what.into(),
            source: Box::new(source),
        })
    }
}

impl<T> Context<T> for Result<T, aya::maps::MapError> {
    fn context(self, what: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Map {
            context: what.into(),
            source: Box::new(source),
        })
    }
}

pub struct Steering {
    ebpf: Ebpf,
    local_vteps: HashMap<MapData, u32, u8>,
    public_addrs: HashMap<MapData, u32, u8>,
    vm_ports: HashMap<MapData, u32, u8>,
    sockets: XskMap<MapData>,
    port_slots: HashMap<MapData, u32, u32>,
    /// ifindex -> its slot of `sockets` (mirrors `port_slots`).
    slots: StdHashMap<u32, u32>,
    /// Interface name -> the link attaching the program to it.
    links: StdHashMap<String, XdpLinkId>,
    tc_links: StdHashMap<String, SchedClassifierLinkId>,
    fast_mode: aya::maps::Array<MapData, u32>,
    segmenter: aya::maps::Array<MapData, u32>,
    decisions: Arc<DecisionCounters>,
    fast_path: Option<FastPath>,
}

/// The program's per-CPU decision counters, readable by anyone holding
/// them (the control socket's `stats`) while the program runs.
pub struct DecisionCounters(PerCpuArray<MapData, u64>);

impl DecisionCounters {
    /// Each decision's count, summed over CPUs.
    pub fn read(&self) -> Result<Vec<(Decision, u64)>, Error> {
        Decision::ALL
            .iter()
            .map(|d| {
                let per_cpu = self.0.get(&(*d as u32), 0).context("decisions")?;
                Ok((*d, per_cpu.iter().sum()))
            })
            .collect()
    }
}

/// What `Steering::test_run` saw.
#[derive(Debug)]
pub struct TestRun {
    pub action: u32,
    pub frame: Vec<u8>,
    pub decisions: Vec<(Decision, u64)>,
}

/// The size of a VXLAN encapsulation: outer Ethernet, IPv4, UDP, VXLAN.
pub const VXLAN_OVERHEAD: usize = 50;

/// What the fast path does with unicast IPv4 to a MAC in a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Fwd {
    /// Redirect to a local VM's port.
    Port { ifindex: u32 },
    /// Encapsulate in VXLAN (the tenant's VNI) with `outer` (the VTEP's
    /// template: lengths, source port and VNI zero) and redirect to the
    /// uplink `ifindex`.
    /// Frames whose IPv4 part exceeds `max_inner_ip` go to the workers,
    /// which answer them with ICMP.
    Encap {
        ifindex: u32,
        max_inner_ip: u32,
        outer: [u8; VXLAN_OVERHEAD],
    },
}

/// A tier of a tenant (its subnet): the fast path bridges only inside one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FastTier {
    pub net: Ipv4Addr,
    pub len: u8,
}

/// Who may send through the fast path (its port security): a VM's
/// address, the VTEP it is behind (overlay sources only) and its tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    pub ip: Ipv4Addr,
    pub vtep: Option<Ipv4Addr>,
    pub tier: FastTier,
}

/// `struct tier` of steer.bpf.c.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct TierValue {
    net: u32,
    len: u32,
}

impl TierValue {
    fn new(tier: FastTier) -> TierValue {
        TierValue {
            net: u32::from_ne_bytes(tier.net.octets()),
            len: u32::from(tier.len),
        }
    }
}

/// `struct source` of steer.bpf.c.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct SourceValue {
    ip: u32,
    vtep: u32,
    tier: TierValue,
}

/// `struct l2_key` of steer.bpf.c.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct L2Key {
    vni: u32,
    mac: [u8; 6],
    pad: u16,
}

/// `struct l2_fwd` of steer.bpf.c.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct L2FwdValue {
    kind: u32,
    ifindex: u32,
    max_inner_ip: u32,
    tier: TierValue,
    outer: [u8; VXLAN_OVERHEAD],
    pad: [u8; 2],
}

// SAFETY: plain C structs without padding holes (checked by their sizes
// below), valid for any bytes.
unsafe impl aya::Pod for L2Key {}
// SAFETY: as above.
unsafe impl aya::Pod for L2FwdValue {}
// SAFETY: as above.
unsafe impl aya::Pod for SourceValue {}
const _: () = assert!(std::mem::size_of::<L2Key>() == 12);
const _: () = assert!(std::mem::size_of::<L2FwdValue>() == 72);
const _: () = assert!(std::mem::size_of::<SourceValue>() == 16);

impl L2FwdValue {
    fn new(fwd: L2Fwd, tier: FastTier) -> L2FwdValue {
        let mut value = L2FwdValue {
            kind: 1,
            ifindex: 0,
            max_inner_ip: 0,
            tier: TierValue::new(tier),
            outer: [0; VXLAN_OVERHEAD],
            pad: [0; 2],
        };
        match fwd {
            L2Fwd::Port { ifindex } => value.ifindex = ifindex,
            L2Fwd::Encap {
                ifindex,
                max_inner_ip,
                outer,
            } => {
                value = L2FwdValue {
                    kind: 2,
                    ifindex,
                    max_inner_ip,
                    outer,
                    ..value
                }
            }
        }
        value
    }
}

/// The fast path's maps: which VM port is in which tenant, which MACs of
/// a tenant go where, which VTEPs' VXLAN is accepted. A tenant is known by
/// its VNI. Each entry is a whole decision, so a frame sees an old entry or
/// a new one, never a mix.
pub struct FastPath {
    port_vnis: HashMap<MapData, u32, u32>,
    remote_vteps: HashMap<MapData, u32, u8>,
    l2_fwd: HashMap<MapData, L2Key, L2FwdValue>,
    vm_sources: HashMap<MapData, L2Key, SourceValue>,
    overlay_sources: HashMap<MapData, L2Key, SourceValue>,
}

impl FastPath {
    /// VM port `ifindex` is in the tenant of VNI `vni`.
    pub fn set_port_vni(&mut self, ifindex: u32, vni: u32) -> Result<(), Error> {
        self.port_vnis.insert(ifindex, vni, 0).context("port_vnis")
    }

    pub fn remove_port_vni(&mut self, ifindex: u32) -> Result<(), Error> {
        self.port_vnis.remove(&ifindex).context("port_vnis")
    }

    pub fn add_remote_vtep(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        self.remote_vteps
            .insert(u32::from_ne_bytes(ip.octets()), 1, 0)
            .context("remote_vteps")
    }

    pub fn remove_remote_vtep(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        self.remote_vteps
            .remove(&u32::from_ne_bytes(ip.octets()))
            .context("remote_vteps")
    }

    /// Unicast IPv4 to `mac` (a VM of `tier`) in the tenant of `vni` goes
    /// as `fwd` says.
    pub fn set_l2(
        &mut self,
        vni: u32,
        mac: [u8; 6],
        fwd: L2Fwd,
        tier: FastTier,
    ) -> Result<(), Error> {
        let key = L2Key { vni, mac, pad: 0 };
        self.l2_fwd
            .insert(key, L2FwdValue::new(fwd, tier), 0)
            .context("l2_fwd")
    }

    /// The VM `mac` may send through the fast path as `source` says: from
    /// VM port `scope` (an ifindex) when `source.vtep` is None, else over
    /// the overlay in the VNI `scope`.
    pub fn set_source(&mut self, scope: u32, mac: [u8; 6], source: Source) -> Result<(), Error> {
        let key = L2Key {
            vni: scope,
            mac,
            pad: 0,
        };
        let value = SourceValue {
            ip: u32::from_ne_bytes(source.ip.octets()),
            vtep: source.vtep.map_or(0, |v| u32::from_ne_bytes(v.octets())),
            tier: TierValue::new(source.tier),
        };
        let (map, name) = self.sources(source.vtep.is_some());
        map.insert(key, value, 0).context(name)
    }

    /// Removes what `set_source` wrote for (`scope`, `mac`).
    pub fn remove_source(&mut self, overlay: bool, scope: u32, mac: [u8; 6]) -> Result<(), Error> {
        let key = L2Key {
            vni: scope,
            mac,
            pad: 0,
        };
        let (map, name) = self.sources(overlay);
        map.remove(&key).context(name)
    }

    fn sources(&mut self, overlay: bool) -> (&mut HashMap<MapData, L2Key, SourceValue>, &str) {
        match overlay {
            true => (&mut self.overlay_sources, "overlay_sources"),
            false => (&mut self.vm_sources, "vm_sources"),
        }
    }

    pub fn remove_l2(&mut self, vni: u32, mac: [u8; 6]) -> Result<(), Error> {
        let key = L2Key { vni, mac, pad: 0 };
        self.l2_fwd.remove(&key).context("l2_fwd")
    }
}

/// Must match steer.bpf.c.
const MAX_QUEUES: u32 = 16;
const FAST_IN_TC: u32 = 1;
const MAX_PORTS: u32 = 4094;

impl Steering {
    /// Loads the program into the kernel (needs CAP_BPF and CAP_NET_ADMIN).
    pub fn load() -> Result<Steering, Error> {
        let mut ebpf = Ebpf::load(OBJECT).context("loading the XDP program")?;
        let program: &mut Xdp = program_mut(&mut ebpf)?;
        program.load().context("verifying the XDP program")?;
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| Error::MissingMap(name.to_string()))
        };
        let (vteps, public, vms, xsks, slots, decisions) = (
            take("local_vteps")?,
            take("public_addrs")?,
            take("vm_ports")?,
            take("xsks")?,
            take("port_slots")?,
            take("decisions")?,
        );
        let fast_mode = take("fast_mode")?;
        let segmenter = take("segmenter")?;
        let fast_path = FastPath {
            port_vnis: HashMap::try_from(take("port_vnis")?).context("port_vnis")?,
            remote_vteps: HashMap::try_from(take("remote_vteps")?).context("remote_vteps")?,
            l2_fwd: HashMap::try_from(take("l2_fwd")?).context("l2_fwd")?,
            vm_sources: HashMap::try_from(take("vm_sources")?).context("vm_sources")?,
            overlay_sources: HashMap::try_from(take("overlay_sources")?)
                .context("overlay_sources")?,
        };
        Ok(Steering {
            fast_path: Some(fast_path),
            local_vteps: HashMap::try_from(vteps).context("local_vteps")?,
            public_addrs: HashMap::try_from(public).context("public_addrs")?,
            vm_ports: HashMap::try_from(vms).context("vm_ports")?,
            sockets: XskMap::try_from(xsks).context("xsks")?,
            port_slots: HashMap::try_from(slots).context("port_slots")?,
            slots: StdHashMap::new(),
            links: StdHashMap::new(),
            tc_links: StdHashMap::new(),
            fast_mode: aya::maps::Array::try_from(fast_mode).context("fast_mode")?,
            segmenter: aya::maps::Array::try_from(segmenter).context("segmenter")?,
            decisions: Arc::new(DecisionCounters(
                PerCpuArray::try_from(decisions).context("decisions")?,
            )),
            ebpf,
        })
    }

    /// Attaches to `interface`; detached again by `detach` or when `self`
    /// is dropped.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<(), Error> {
        if self.links.contains_key(interface) {
            return Err(Error::AlreadyAttached(interface.to_string()));
        }
        let mode = match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        };
        let link = program_mut(&mut self.ebpf)?
            .attach(interface, mode)
            .context(format!("attaching XDP to {interface} ({mode:?} mode)"))?;
        self.links.insert(interface.to_string(), link);
        Ok(())
    }

    /// Detaches from `interface` (nothing if not attached; an interface
    /// that is gone took its program with it).
    pub fn detach(&mut self, interface: &str) -> Result<(), Error> {
        if let Some(link) = self.tc_links.remove(interface) {
            // An interface that is gone took its filter with it.
            let _ = tc_program(&mut self.ebpf).map(|p| p.detach(link));
        }
        let Some(link) = self.links.remove(interface) else {
            return Ok(());
        };
        program_mut(&mut self.ebpf)?
            .detach(link)
            .context(format!("detaching XDP from {interface}"))
    }

    /// Moves the fast path into tc: the tc program (loaded now) forwards
    /// whole GSO packets on the interfaces `attach_tc` puts it on, and the
    /// XDP program (attach it in generic mode there, which leaves the
    /// senders their GSO) passes it the frames it would have forwarded.
    pub fn fast_path_in_tc(&mut self) -> Result<(), Error> {
        tc_program(&mut self.ebpf)?
            .load()
            .context("verifying the tc program")?;
        self.fast_mode.set(0, FAST_IN_TC, 0).context("fast_mode")
    }

    /// Puts the tc program on `interface`'s ingress (a clsact qdisc is
    /// added if missing); taken off when `self` is dropped.
    pub fn attach_tc(&mut self, interface: &str) -> Result<(), Error> {
        // EEXIST: the interface has its clsact already.
        let _ = tc::qdisc_add_clsact(interface);
        let link = tc_program(&mut self.ebpf)?
            .attach(interface, TcAttachType::Ingress)
            .context(format!("attaching tc to {interface}"))?;
        self.tc_links.insert(interface.to_string(), link);
        Ok(())
    }

    pub fn remove_local_vtep(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        remove_key(
            &mut self.local_vteps,
            u32::from_ne_bytes(ip.octets()),
            "local_vteps",
        )
    }

    pub fn remove_public_addr(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        remove_key(
            &mut self.public_addrs,
            u32::from_ne_bytes(ip.octets()),
            "public_addrs",
        )
    }

    pub fn remove_vm_port(&mut self, ifindex: u32) -> Result<(), Error> {
        remove_key(&mut self.vm_ports, ifindex, "vm_ports")
    }

    /// Stops sending interface `ifindex`'s frames to sockets: its queues'
    /// entries and its slot go (the slot is free for another interface).
    pub fn remove_sockets(&mut self, ifindex: u32) -> Result<(), Error> {
        let Some(slot) = self.slots.remove(&ifindex) else {
            return Ok(());
        };
        for queue in 0..MAX_QUEUES {
            // Queues without a socket have no entry to remove.
            let _ = self.sockets.unset(slot * MAX_QUEUES + queue);
        }
        remove_key(&mut self.port_slots, ifindex, "port_slots")
    }

    pub fn add_local_vtep(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        self.local_vteps
            .insert(u32::from_ne_bytes(ip.octets()), 1, 0)
            .context("local_vteps")
    }

    pub fn add_public_addr(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        self.public_addrs
            .insert(u32::from_ne_bytes(ip.octets()), 1, 0)
            .context("public_addrs")
    }

    pub fn add_vm_port(&mut self, ifindex: u32) -> Result<(), Error> {
        self.vm_ports.insert(ifindex, 1, 0).context("vm_ports")
    }

    /// The fast path's maps, to be kept by whoever keeps them in step with
    /// the configuration (once; later calls return `None`). While they are
    /// empty, every frame that is ours goes to a socket.
    pub fn take_fast_path(&mut self) -> Option<FastPath> {
        self.fast_path.take()
    }

    /// Sends frames that are ours, received on interface `ifindex` queue
    /// `queue`, to the AF_XDP socket `fd` (the map keeps its own
    /// reference).
    pub fn set_socket(&mut self, ifindex: u32, queue: u32, fd: RawFd) -> Result<(), Error> {
        if queue >= MAX_QUEUES {
            return Err(Error::QueueOutOfRange(queue));
        }
        let slot = self.slot(ifindex)?;
        // SAFETY: the caller's open descriptor, read by the map update only.
        let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        self.sockets
            .set(slot * MAX_QUEUES + queue, socket, 0)
            .context("xsks")
    }

    /// Interface `ifindex`'s slot of the socket map (given it now if it
    /// has none). The fast path in tc tags the packets it sends through
    /// the segmenter with VLAN ID slot + 1.
    pub fn slot(&mut self, ifindex: u32) -> Result<u32, Error> {
        if let Some(&slot) = self.slots.get(&ifindex) {
            return Ok(slot);
        }
        // The lowest slot free (interfaces come and go).
        let slot = (0..MAX_PORTS)
            .find(|s| !self.slots.values().any(|used| used == s))
            .ok_or(Error::TooManyInterfaces)?;
        self.port_slots
            .insert(ifindex, slot, 0)
            .context("port_slots")?;
        self.slots.insert(ifindex, slot);
        Ok(slot)
    }

    /// The fast path in tc sends GSO packets it does not take out of
    /// `ifindex` to be segmented (see `Decision::ToSegmenter`).
    pub fn set_segmenter(&mut self, ifindex: u32) -> Result<(), Error> {
        self.segmenter.set(0, ifindex, 0).context("segmenter")
    }

    /// Each decision's count, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<(Decision, u64)>, Error> {
        self.decisions.read()
    }

    /// The decision counters, to read from elsewhere while this runs.
    pub fn decision_counters(&self) -> Arc<DecisionCounters> {
        self.decisions.clone()
    }

    /// Runs the program in the kernel on `frame` as if received on
    /// interface `ifindex` queue 0 (BPF_PROG_TEST_RUN: redirects are
    /// decided, not carried out). Returns the XDP action, the frame as the
    /// program left it, and each decision counted meanwhile with its count
    /// (one decision once, unless other frames went through the program).
    pub fn test_run(&self, ifindex: u32, frame: &[u8]) -> Result<TestRun, Error> {
        let before = self.counters()?;
        use aya::programs::{TestRun as _, TestRunOptions};
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex
        let ctx: Vec<u8> = [0, frame.len() as u32, 0, ifindex, 0, 0]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        };
        let result = self
            .program()?
            .test_run(opts)
            .context("running the XDP program on a test frame")?;
        out.truncate(result.data_size_out as usize);
        let after = self.counters()?;
        let decisions = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| a.1 != b.1)
            .map(|(b, a)| (a.0, a.1 - b.1))
            .collect();
        Ok(TestRun {
            action: result.return_value,
            frame: out,
            decisions,
        })
    }

    /// The loaded program, e.g. to run it on test frames.
    pub fn program(&self) -> Result<&Xdp, Error> {
        let program = self
            .ebpf
            .program(PROGRAM)
            .ok_or(Error::MissingProgram(PROGRAM))?;
        let xdp: Result<&Xdp, ProgramError> = program.try_into();
        xdp.context(PROGRAM)
    }
}

/// Removes `key`; a key that is not there is no error.
fn remove_key<V: aya::Pod>(
    map: &mut HashMap<MapData, u32, V>,
    key: u32,
    name: &str,
) -> Result<(), Error> {
    match map.remove(&key) {
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other.context(name),
    }
}

fn tc_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, Error> {
    let program = ebpf
        .program_mut(TC_PROGRAM)
        .ok_or(Error::MissingProgram(TC_PROGRAM))?;
    let tc: Result<&mut SchedClassifier, ProgramError> = program.try_into();
    tc.context(TC_PROGRAM)
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, Error> {
    let program = ebpf
        .program_mut(PROGRAM)
        .ok_or(Error::MissingProgram(PROGRAM))?;
    let xdp: Result<&mut Xdp, ProgramError> = program.try_into();
    xdp.context(PROGRAM)
}

/// The end-to-end benchmark rig's XDP programs (`src/bpf/bench.bpf.c`):
/// `generate` and `count_and_drop`. Loaded by `xvr-bench`.
pub static BENCH_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench.bpf.o"));
