//! Shared pieces of the benchmarks: the example topology, one batch of
//! input frames per packet path, and buffers that are reset between
//! iterations without allocating.
pub mod e2e;

use xvr_control::{
    Direction, FirewallRuleConfig, PortForwardConfig, Protocol, RuleAction, RuleProtocol,
    SourceNatConfig, State,
};
use xvr_dataplane::frame::{Frame, BATCH_SIZE, FRAME_SIZE, HEADROOM};
use xvr_dataplane::table::{PortId, Tables};
use xvr_dataplane::{Pipeline, Verdict};
use xvr_testkit::{arp_request, headers, Mac};

pub const EXAMPLE: &str = include_str!("../../examples/two-tenants.json");

const UPLINK: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const VTEP2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const ACME_WEB_PORT: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
const ACME_WEB: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x10];
const ACME_REMOTE: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x20];

const INTERNET_GW: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
/// acme's source NAT address in the benches.
pub const ACME_PUBLIC: [u8; 4] = [203, 0, 113, 10];

/// The example topology, with source NAT for acme.
pub fn example_tables() -> Tables {
    example_state().build().unwrap()
}

/// `example_tables`'s desired state, for benches that add to it.
pub fn example_state() -> State {
    let mut state = State::from_json(EXAMPLE).unwrap();
    // acme is the only tenant the benches drive: it may hold every
    // session and open them as fast as the pipeline can (with the
    // defaults, the conntrack benches measured drops past its share).
    for tenant in state.tenants.iter_mut().filter(|t| t.name == "acme") {
        tenant.limits.sessions = Some(u32::MAX);
        tenant.limits.new_sessions_per_second = Some(u32::MAX);
    }
    // The example's source NAT, with its ports clear of the forwards.
    state.nat.source = vec![SourceNatConfig {
        tenant: "acme".into(),
        public_ip: ACME_PUBLIC.into(),
        ports: Some([20000, 65535]),
        filtering: None,
    }];
    state.nat.port_forwards.push(PortForwardConfig {
        tenant: "acme".into(),
        public_ip: ACME_PUBLIC.into(),
        protocol: Protocol::Udp,
        public_ports: [5000, 5063],
        vm_ip: [10, 0, 0, 10].into(),
        vm_ports: [5000, 5063],
    });
    state.firewall.push(FirewallRuleConfig {
        tenant: "acme".into(),
        direction: Direction::Ingress,
        action: RuleAction::Allow,
        protocol: RuleProtocol::Udp,
        source: None,
        destination: None,
        ports: Some([5000, 5063]),
        icmp_type: None,
        icmp_code: None,
    });
    state
}

/// A UDP frame from acme-web (10.0.0.10, port `sport`) to the internet
/// host `dst` port 5001, as the VM sends it to its gateway.
pub fn acme_to_internet(dst: [u8; 4], sport: u16) -> Vec<u8> {
    udp(ACME_WEB, ACME_WEB_PORT, [10, 0, 0, 10], dst, sport, 18)
}

/// The reply to `acme_to_internet(src, dport)` as it arrives on up0.
pub fn internet_to_acme(src: [u8; 4], dport: u16) -> Vec<u8> {
    headers(INTERNET_GW, UPLINK, src, ACME_PUBLIC).udp(5001, dport, &[0x5a; 18])
}

/// One packet path of the pipeline, as benchmarked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Routed between two local subnets of one tenant (VRF lookup, TTL, MACs).
    EastWest64,
    /// Bridged to a remote VM: VXLAN encapsulation, 60-byte inner frame.
    VxlanEncap64,
    /// Same with a 1514-byte inner frame.
    VxlanEncap1500,
    /// VXLAN from a remote VTEP, decapsulated to a local VM.
    VxlanDecap64,
    /// ARP requests for a gateway address, answered.
    ArpReply,
    /// acme-web to the internet through source NAT, sessions established.
    SnatEstablished64,
    /// Their replies, arriving at the public address: reverse NAT.
    SnatReply64,
    /// From the internet to acme's forwarded UDP ports 5000-5063,
    /// sessions established: destination NAT to acme-web.
    DnatEstablished64,
}

impl Path {
    pub const ALL: [Path; 8] = [
        Path::EastWest64,
        Path::VxlanEncap64,
        Path::VxlanDecap64,
        Path::ArpReply,
        Path::VxlanEncap1500,
        Path::SnatEstablished64,
        Path::SnatReply64,
        Path::DnatEstablished64,
    ];

    /// The criterion id in group `pipeline`.
    pub fn id(self) -> &'static str {
        match self {
            Path::EastWest64 => "east_west_64",
            Path::VxlanEncap64 => "vxlan_encap_64",
            Path::VxlanEncap1500 => "vxlan_encap_1500",
            Path::VxlanDecap64 => "vxlan_decap_64",
            Path::ArpReply => "arp_reply",
            Path::SnatEstablished64 => "snat_established_64",
            Path::SnatReply64 => "snat_reply_64",
            Path::DnatEstablished64 => "dnat_established_64",
        }
    }

    pub fn from_id(id: &str) -> Option<Path> {
        Path::ALL.into_iter().find(|p| p.id() == id)
    }

    /// A batch of `BATCH_SIZE` frames, 64 flows (distinct UDP source
    /// ports), with the port each arrives on.
    pub fn inputs(self, tables: &Tables) -> Vec<(PortId, Vec<u8>)> {
        let port = |name| tables.port_by_name(name).unwrap();
        (0..BATCH_SIZE as u16)
            .map(|i| match self {
                Path::EastWest64 => (
                    port("acme-web"),
                    udp(
                        ACME_WEB,
                        ACME_WEB_PORT,
                        [10, 0, 0, 10],
                        [10, 0, 1, 10],
                        1000 + i,
                        18,
                    ),
                ),
                Path::VxlanEncap64 => (
                    port("acme-web"),
                    udp(
                        ACME_WEB,
                        ACME_REMOTE,
                        [10, 0, 0, 10],
                        [10, 0, 0, 20],
                        1000 + i,
                        18,
                    ),
                ),
                Path::VxlanEncap1500 => (
                    port("acme-web"),
                    udp(
                        ACME_WEB,
                        ACME_REMOTE,
                        [10, 0, 0, 10],
                        [10, 0, 0, 20],
                        1000 + i,
                        1472,
                    ),
                ),
                Path::VxlanDecap64 => {
                    let inner = udp(
                        ACME_REMOTE,
                        ACME_WEB,
                        [10, 0, 0, 20],
                        [10, 0, 0, 10],
                        1000 + i,
                        18,
                    );
                    (port("up0"), vxlan(1001, 49152 + i, &inner))
                }
                Path::ArpReply => (
                    port("acme-web"),
                    arp_request(ACME_WEB, [10, 0, 0, 10], [10, 0, 0, 1]),
                ),
                Path::SnatEstablished64 => (
                    port("acme-web"),
                    acme_to_internet([198, 19, 0, i as u8], 30000 + i),
                ),
                Path::SnatReply64 => (
                    port("up0"),
                    internet_to_acme([198, 19, 0, i as u8], 30000 + i),
                ),
                Path::DnatEstablished64 => (
                    port("up0"),
                    internet_to_acme([198, 19, 1, i as u8], 5000 + i),
                ),
            })
            .collect()
    }

    /// Puts `pipeline` in the state the path needs: the sessions that
    /// replies belong to.
    pub fn prime(self, pipeline: &mut Pipeline, tables: &Tables) {
        let opening = match self {
            Path::SnatReply64 => Path::SnatEstablished64,
            Path::SnatEstablished64 | Path::DnatEstablished64 => self,
            _ => return,
        };
        let inputs = opening.inputs(tables);
        let mut buffers = Buffers::default();
        pipeline.run(tables, &mut buffers.frames(&inputs));
    }

    /// The port every frame of this path must leave on.
    pub fn expected_port(self, tables: &Tables) -> PortId {
        let name = match self {
            Path::EastWest64 => "acme-db",
            Path::VxlanEncap64 | Path::VxlanEncap1500 | Path::SnatEstablished64 => "up0",
            Path::VxlanDecap64 | Path::ArpReply | Path::SnatReply64 | Path::DnatEstablished64 => {
                "acme-web"
            }
        };
        tables.port_by_name(name).unwrap()
    }
}

fn udp(
    src_mac: Mac,
    dst_mac: Mac,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    payload_len: usize,
) -> Vec<u8> {
    headers(src_mac, dst_mac, src, dst).udp(sport, 5001, &vec![0x5a; payload_len])
}

fn vxlan(vni: u32, sport: u16, inner: &[u8]) -> Vec<u8> {
    headers(VTEP2, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]).vxlan(sport, vni, 0x08, inner)
}

/// Frame buffers allocated once.
pub struct Buffers {
    bufs: Vec<Vec<u8>>,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            bufs: (0..BATCH_SIZE).map(|_| vec![0u8; FRAME_SIZE]).collect(),
        }
    }
}

impl Buffers {
    pub fn frames<'a>(&'a mut self, inputs: &[(PortId, Vec<u8>)]) -> Vec<Frame<'a>> {
        self.bufs
            .iter_mut()
            .zip(inputs)
            .map(|(buf, (port, data))| Frame::with_data(buf, data, *port))
            .collect()
    }
}

/// Bytes from the start of a frame that the pipeline may rewrite in place.
const REWRITTEN: usize = 64;

/// Puts frames back as they were received: start, length, metadata, and
/// the header bytes the pipeline rewrites (a 64-byte copy per frame, part
/// of every measured iteration).
#[inline]
pub fn reset(frames: &mut [Frame<'_>], inputs: &[(PortId, Vec<u8>)]) {
    for (frame, (port, data)) in frames.iter_mut().zip(inputs) {
        frame.reset(HEADROOM, data.len(), *port);
        let n = data.len().min(REWRITTEN);
        frame.data_mut()[..n].copy_from_slice(&data[..n]);
    }
}

/// Runs one batch and checks every frame went where the path says, so a
/// benchmark never measures a path that silently drops.
pub fn check_path(path: Path, tables: &Tables) {
    let inputs = path.inputs(tables);
    let mut buffers = Buffers::default();
    let mut frames = buffers.frames(&inputs);
    for round in 0..3 {
        reset(&mut frames, &inputs);
        let mut pipeline = Pipeline::new();
        path.prime(&mut pipeline, tables);
        pipeline.run(tables, &mut frames);
        let want = Verdict::Tx(path.expected_port(tables));
        for f in &frames {
            assert_eq!(
                f.meta.verdict,
                want,
                "{} round {round}: {:?}",
                path.id(),
                pipeline.stats
            );
        }
    }
}

/// Flow `k` from acme-web to the internet: a distinct (destination,
/// source port) for each k < 2^24. Its 40,000 source ports fit acme's
/// 45,536 public ports (one mapping each).
pub fn flow(tables: &Tables, k: u32) -> (PortId, Vec<u8>) {
    let port = tables.port_by_name("acme-web").unwrap();
    let dst = [198, 19 + (k >> 16) as u8, (k >> 8) as u8, k as u8];
    (port, acme_to_internet(dst, 1024 + (k % 40_000) as u16))
}

/// The flows `ks`, in batches of `BATCH_SIZE`.
pub fn flow_batches(tables: &Tables, ks: impl Iterator<Item = u32>) -> Vec<Vec<(PortId, Vec<u8>)>> {
    let all: Vec<_> = ks.map(|k| flow(tables, k)).collect();
    all.chunks(BATCH_SIZE).map(|c| c.to_vec()).collect()
}

/// A criterion `iter_custom` routine that runs batches of first packets:
/// every iteration takes the next batch of `inputs` (flows never seen by
/// the pipeline); when they run out, `fresh()` makes a new pipeline.
/// Only `Pipeline::run` is timed.
pub fn first_packets<'a>(
    tables: &'a Tables,
    inputs: &'a [Vec<(PortId, Vec<u8>)>],
    fresh: impl Fn() -> Pipeline + 'a,
) -> impl FnMut(u64) -> std::time::Duration + 'a {
    let mut buffers = Buffers::default();
    let mut pipeline = fresh();
    let mut next = 0;
    move |iters| {
        let mut frames = buffers.frames(&inputs[0]);
        let mut elapsed = std::time::Duration::ZERO;
        for _ in 0..iters {
            if next == inputs.len() {
                pipeline = fresh();
                next = 0;
            }
            reset(&mut frames, &inputs[next]);
            next += 1;
            let start = std::time::Instant::now();
            pipeline.run(tables, std::hint::black_box(&mut frames));
            elapsed += start.elapsed();
            // What is measured is forwarding, never a drop.
            assert!(
                frames
                    .iter()
                    .all(|f| matches!(f.meta.verdict, Verdict::Tx(_))),
                "a first packet was not forwarded: {:?}",
                pipeline.stats
            );
        }
        elapsed
    }
}

/// Input frames in batches, each with the port it arrives on.
pub type Batches = Vec<Vec<(PortId, Vec<u8>)>>;

/// A pipeline whose conntrack holds `sessions` sessions.
pub fn pipeline_for(sessions: u32) -> Pipeline {
    Pipeline::with_conntrack(xvr_dataplane::conntrack::Config {
        max_sessions: sessions,
        ..Default::default()
    })
}

/// Runs every batch once (opening their sessions) and checks each frame
/// went out of the uplink.
pub fn open_all(pipeline: &mut Pipeline, tables: &Tables, batches: &[Vec<(PortId, Vec<u8>)>]) {
    let mut buffers = Buffers::default();
    let uplink = Verdict::Tx(tables.port_by_name("up0").unwrap());
    for batch in batches {
        let mut frames = buffers.frames(batch);
        pipeline.run(tables, &mut frames);
        assert!(
            frames.iter().all(|f| f.meta.verdict == uplink),
            "{:?}",
            pipeline.stats
        );
    }
}

/// `sessions` established sessions through source NAT, and 1,024
/// batches of their frames drawn at random among them (the
/// `conntrack/established_*` benchmarks).
pub fn established_sessions(tables: &Tables, sessions: u32) -> (Pipeline, Batches) {
    let mut pipeline = pipeline_for(sessions);
    open_all(&mut pipeline, tables, &flow_batches(tables, 0..sessions));
    assert_eq!(pipeline.conntrack.len(), sessions as usize);
    let mut rng = SplitMix(7);
    let draws = (0..1024 * BATCH_SIZE).map(|_| (rng.next_u64() % u64::from(sessions)) as u32);
    (pipeline, flow_batches(tables, draws))
}

/// A deterministic pseudo-random sequence (splitmix64) for benchmark inputs.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_benchmarked_path_forwards_every_frame() {
        let tables = example_tables();
        for path in Path::ALL {
            check_path(path, &tables);
        }
    }
}
