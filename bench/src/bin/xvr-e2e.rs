//! xvr-e2e: end-to-end packet rates on a veth rig of network namespaces,
//! gen -> device under test -> sink, for xvr and its peers in one run:
//!
//! - raw ceiling: the generator connected straight to the sink;
//! - AF_XDP l2fwd: the floor of any AF_XDP forwarder here (receive, swap
//!   MACs, transmit), on the same rings as xvr;
//! - Open vSwitch's userspace datapath on AF_XDP ports (`e2e::ovs`): as
//!   an L2 forwarder, and translating sources through its conntrack;
//! - Linux kernel forwarding (fed through a CPUMAP, see `traffic`);
//! - xvr east-west (VM to VM) and VXLAN encap (VM to a remote VM), with
//!   one worker and, for encap, two; and encap on one worker with the
//!   generator on both cores, as it runs beside two workers;
//! - xvr's flow offload: source NAT, routing between tiers (into VXLAN
//!   too), and a VM behind a VTEP going out through source NAT (VXLAN in
//!   and translated frames out on the uplink, where the generator and the
//!   sink share one veth end), at 64, 1k or 100k flows, and new flows;
//!
//! and DNS answers a second (`e2e::dns`): xvr's DNS on a VM's gateway
//! beside dnsmasq, both driven by dnsperf;
//!
//! and iperf3 TCP across the overlay: a VM behind xvr to a VM behind a
//! kernel VTEP, beside kernel VTEP to kernel VTEP; on plain veths (xvr's
//! workers carry the flow) and with GRO on every veth end (veths then take
//! frames redirected by XDP, and xvr's XDP fast path carries it).
//!
//! 64-byte UDP frames (60 without the FCS) from the live-frames generator;
//! the sink counts and drops in XDP. Cores: the generator runs on core 0,
//! the device under test on core 1 (for two workers, and the row marked
//! "generator on both cores", a generator thread on each core, workers
//! included). Needs root. `--json` prints one JSON object.
use clap::Parser;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use xvr::router::{Options, Router};
use xvr_bench::e2e::l2fwd::L2Fwd;
use xvr_bench::e2e::ovs::Ovs;
use xvr_bench::e2e::traffic::{generate, generate_afxdp, Sink};
use xvr_control::{SourceNatConfig, State};
use xvr_dataplane::worker::Idle;
use xvr_testkit::netns::Rig;
use xvr_testkit::{headers, overlay};

#[derive(Parser)]
#[command(about = "End-to-end packet rates of xvr and its peers on a veth rig")]
struct Args {
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Seconds each packet-rate measurement sends for.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Seconds of each iperf3 run (0: skip the TCP comparison).
    #[arg(long, default_value_t = 5)]
    iperf_seconds: u32,
    /// Seconds of each dnsperf run (0: skip the DNS comparison).
    #[arg(long, default_value_t = 5)]
    dns_seconds: u32,
    /// Run only these measurements (JSON key prefixes such as
    /// `raw_ceiling`, `xvr_vxlan_encap`, or `tcp`); repeatable.
    #[arg(long)]
    only: Vec<String>,
    /// Also print each XDP program's time per run during each row
    /// (BPF_ENABLE_STATS: the kernel times every run, which costs each
    /// run some 20 ns, so rows measured so are not compared with others).
    #[arg(long)]
    xdp_cost: bool,
}

/// `--xdp-cost`, for the rows' measurements.
static XDP_COST: AtomicBool = AtomicBool::new(false);

/// Each loaded XDP program's (runs, nanoseconds running) by name.
fn xdp_run_times() -> Vec<(String, u64, u64)> {
    aya::programs::loaded_programs()
        .flatten()
        .filter_map(|p| {
            let name = p.name_as_str()?.to_string();
            Some((name, p.run_count(), p.run_time().as_nanos() as u64))
        })
        .collect()
}

/// Prints the nanoseconds per run of each program that ran between
/// `before` and `after` (from `xdp_run_times`).
fn print_run_times(before: &[(String, u64, u64)], after: &[(String, u64, u64)]) {
    for (name, runs, ns) in after {
        let (runs0, ns0) = before
            .iter()
            .find(|b| &b.0 == name)
            .map_or((0, 0), |b| (b.1, b.2));
        let runs = runs.saturating_sub(runs0);
        if runs > 1000 {
            let per_run = ns.saturating_sub(ns0) as f64 / runs as f64;
            eprintln!("  {name}: {per_run:.0} ns per run over {runs} runs");
        }
    }
}

/// Flows the generator cycles over (UDP source ports, then destination
/// ports).
const FLOWS: u32 = 64;
/// The "100k flows" rows.
const MANY_FLOWS: u32 = 100_000;
/// The new-flows row: more flows than it sends packets, so each packet
/// opens one (its sessions then fill the table, sized for 4M).
const NEW_FLOWS: u32 = 1 << 24;
const GEN_CORE: usize = 0;
const DUT_CORE: usize = 1;

const VM1_MAC: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x10];
const VM2_MAC: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x11];
const REMOTE_VM_MAC: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x20];
const ROUTER_IN_MAC: &str = "02:00:00:00:01:01";
const SINK_MAC: &str = "02:00:00:00:02:02";

/// One tenant: VM 10.0.0.10 on a1, VM 10.0.0.11 on a2, a remote VM
/// 10.0.0.20 behind VTEP 198.18.0.2 through uplink up0, and the internet
/// (the sink's MAC); `xvr` adds source NAT to 203.0.113.10 when asked.
const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:02:02" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.0.1/24" }
  ],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "t", "ip": "10.0.0.11", "mac": "02:0a:00:00:00:11", "port": "a2" }
  ],
  "vteps": [{ "ip": "198.18.0.2", "mac": "02:00:00:00:00:02" }],
  "remote_vms": [{ "tenant": "t", "ip": "10.0.0.20", "mac": "02:0a:00:00:00:20", "vtep": "198.18.0.2" }],
  "routes": [{ "tenant": "t", "prefix": "0.0.0.0/0", "next_hop": "internet" }]
}"#;

/// A 60-byte Ethernet/IPv4/UDP frame (64 on the wire with the FCS) with
/// a zero UDP checksum, so the generator may change the source port.
fn udp64(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut frame = headers(src_mac, dst_mac, src, dst).udp(1024, 9, &[0; 18]);
    assert_eq!(frame.len(), 60);
    frame[40..42].fill(0);
    frame
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut out = [0; 6];
    for (o, part) in out.iter_mut().zip(mac.split(':')) {
        *o = u8::from_str_radix(part, 16).unwrap();
    }
    out
}

#[derive(Clone, Copy, Default)]
struct Rate {
    generator_pps: f64,
    sink_pps: f64,
}

/// The gen -> dut -> sink namespaces: `g0` in gen is the peer of
/// `dut_in`, `dut_out` the peer of `s0` in sink, where the sink counts.
struct Line {
    rig: Rig,
    gen: String,
    dut: String,
    sink: Sink,
    /// Sending before the measurement: long enough for the device to
    /// have set up every flow.
    warmup: Duration,
}

impl Line {
    /// With `dut_in` None, the generator is wired straight to the sink.
    fn new(name: &str, dut_in: Option<&str>, dut_out: &str, queues: u32) -> Result<Line, String> {
        let mut rig = Rig::new(name);
        let gen = rig.namespace();
        let dut = rig.namespace();
        let sink_ns = rig.namespace();
        match dut_in {
            Some(dev) => {
                rig.veth_queues(&gen, "g0", None, &dut, dev, None, queues);

                rig.veth_queues(&dut, dut_out, None, &sink_ns, "s0", None, queues);
            }
            None => rig.veth_queues(&gen, "g0", None, &sink_ns, "s0", None, queues),
        }
        Line::sinking_at(rig, gen, dut, (sink_ns, "s0"))
    }

    /// The generator and the sink on one veth end, `g0`, whose peer `dev`
    /// in the device under test both takes and sends the frames (the
    /// uplink, for traffic between the overlay and the internet).
    fn one_armed(name: &str, dev: &str, queues: u32) -> Result<Line, String> {
        let mut rig = Rig::new(name);
        let gen = rig.namespace();
        let dut = rig.namespace();
        rig.veth_queues(&gen, "g0", None, &dut, dev, None, queues);
        let sink = (gen.clone(), "g0");
        Line::sinking_at(rig, gen, dut, sink)
    }

    /// The line whose sink counts on `sink_dev` in `sink_ns` (taking the
    /// MAC the device under test sends to).
    fn sinking_at(
        rig: Rig,
        gen: String,
        dut: String,
        (sink_ns, sink_dev): (String, &str),
    ) -> Result<Line, String> {
        let set_mac = ["ip", "link", "set", sink_dev, "address", SINK_MAC];
        rig.exec(&sink_ns, &set_mac);
        let sink = rig.inside(&sink_ns, || Sink::attach(sink_dev))?;
        Ok(Line {
            rig,
            gen,
            dut,
            sink,
            warmup: Duration::from_millis(300),
        })
    }

    /// Sends `frame` from `cores` for `seconds` after a short warm-up and
    /// returns the generator's and the sink's rates.
    fn measure(&self, frame: &[u8], cores: &[usize], seconds: f64) -> Result<Rate, String> {
        self.measure_with(seconds, |duration| {
            generate("g0", frame, FLOWS, cores, duration)
        })
    }

    /// `measure` with a generator of one's own: `send(duration)` runs in
    /// the gen namespace and returns the frames it sent.
    fn measure_with(
        &self,
        seconds: f64,
        send: impl Fn(Duration) -> Result<u64, String> + Sync,
    ) -> Result<Rate, String> {
        let run = |duration| self.rig.inside(&self.gen, || send(duration));
        run(self.warmup)?;
        let stats = match XDP_COST.load(Ordering::Relaxed) {
            true => Some(
                aya::sys::enable_stats(aya::sys::Stats::RunTime)
                    .map_err(|e| format!("BPF_ENABLE_STATS: {e}"))?,
            ),
            false => None,
        };
        let times = stats.as_ref().map(|_| xdp_run_times());
        let before = self.sink.received();
        let start = Instant::now();
        let sent = run(Duration::from_secs_f64(seconds))?;
        let elapsed = start.elapsed().as_secs_f64();
        let received = self.sink.received() - before;
        if let Some(times) = times {
            print_run_times(&times, &xdp_run_times());
        }
        Ok(Rate {
            generator_pps: sent as f64 / elapsed,
            sink_pps: received as f64 / elapsed,
        })
    }
}

fn raw_ceiling(seconds: f64) -> Result<Rate, String> {
    let line = Line::new("e2e-raw", None, "", 1)?;
    line.measure(&east_west_frame(), &[GEN_CORE], seconds)
}

/// The ceiling of the rows whose generator runs on both cores: a thread
/// on each, two queues on each veth.
fn raw_ceiling_2c(seconds: f64) -> Result<Rate, String> {
    let line = Line::new("e2e-raw2", None, "", 2)?;
    line.measure(&east_west_frame(), &[GEN_CORE, DUT_CORE], seconds)
}

fn east_west_frame() -> Vec<u8> {
    udp64(VM1_MAC, VM2_MAC, [10, 0, 0, 10], [10, 0, 0, 11])
}

/// To the internet, through the gateway (a1's MAC): source NAT.
fn snat_frame() -> Vec<u8> {
    udp64(
        VM1_MAC,
        mac_bytes("02:aa:00:00:00:01"),
        [10, 0, 0, 10],
        [198, 19, 0, 1],
    )
}

/// To VM 10.0.1.11 in another tier (`routed_state`), through the
/// gateway: routed by the ACL between the tiers.
fn routed_frame() -> Vec<u8> {
    udp64(
        VM1_MAC,
        mac_bytes("02:aa:00:00:00:01"),
        [10, 0, 0, 10],
        [10, 0, 1, 11],
    )
}

/// To VM 10.0.1.20 behind the VTEP, in the second tier of
/// `routed_state`: routed, then encapsulated.
fn routed_vxlan_frame() -> Vec<u8> {
    udp64(
        VM1_MAC,
        mac_bytes("02:aa:00:00:00:01"),
        [10, 0, 0, 10],
        [10, 0, 1, 20],
    )
}

/// `frame` to `out` on `workers` workers, a generator thread on each core.
fn on_both_cores(
    name: &str,
    (out, frame): (&str, &[u8]),
    workers: usize,
    path: Carrier,
    seconds: f64,
) -> Result<Rate, String> {
    let shared = (workers, Generator::EveryCore);
    xvr_on(name, out, frame, shared, path, seconds)
}

/// `STATE` with a2 in a tier of its own (10.0.1.0/24), whose ACL lets UDP
/// in from the first tier, and a VM of that tier behind the VTEP.
fn routed_state() -> String {
    let a2 = r#""a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.0.1/24""#;
    let acl = r#""network_acls": [
    { "tenant": "t", "tier": "10.0.1.0/24", "rules": [
      { "direction": "ingress", "action": "allow", "protocol": "udp", "source": "10.0.0.0/24" }
    ] }
  ],
  "routes""#;
    assert!(STATE.contains(a2));
    STATE
        .replace(a2, &a2.replace("10.0.0.1/24", "10.0.1.1/24"))
        .replace("10.0.0.11", "10.0.1.11")
        .replace(r#""routes""#, acl)
        .replace(
            r#""remote_vms": ["#,
            r#""remote_vms": [{ "tenant": "t", "ip": "10.0.1.20", "mac": "02:0a:00:00:01:20", "vtep": "198.18.0.2" },"#,
        )
}

/// From the remote VM 10.0.0.20, in VXLAN from its VTEP, to the internet
/// through its gateway (the tenant's router MAC): decapsulated, then
/// source NAT. 110 bytes: the 60 of the other rows in 50 of VXLAN, whose
/// outer UDP checksum is zero, so the generator may change inner ports.
fn snat_vxlan_frame() -> Vec<u8> {
    let router = xvr_dataplane::table::Tenant::default_router_mac(100).0;
    let inner = udp64(REMOTE_VM_MAC, router, [10, 0, 0, 20], [198, 19, 0, 1]);
    let from_vtep = headers(
        mac_bytes(SINK_MAC),
        mac_bytes("02:00:00:00:00:01"),
        [198, 18, 0, 2],
        [198, 18, 0, 1],
    );
    let mut frame = from_vtep.vxlan(50000, 100, 0x08, &inner);
    frame[40..42].fill(0);
    frame
}

/// `snat_vxlan_frame` over 1k flows (as Open vSwitch's row), in and out
/// of the uplink.
fn far_vm_snat(name: &str, path: Carrier, seconds: f64) -> Result<Rate, String> {
    far_vm_snat_on(name, (1, Generator::OwnCore), path, seconds)
}

/// `far_vm_snat` on `workers`, the generator where it says.
fn far_vm_snat_on(
    name: &str,
    workers: (usize, Generator),
    path: Carrier,
    seconds: f64,
) -> Result<Rate, String> {
    let frame = snat_vxlan_frame();
    xvr_run(name, ("up0", "up0", &frame), workers, path, 1000, seconds)
}

fn encap_frame() -> Vec<u8> {
    udp64(VM1_MAC, REMOTE_VM_MAC, [10, 0, 0, 10], [10, 0, 0, 20])
}

fn afxdp_l2fwd(seconds: f64) -> Result<Rate, String> {
    let line = Line::new("e2e-l2fwd", Some("in0"), "out0", 1)?;
    line.rig.inside(&line.dut, || {
        let mut fwd = L2Fwd::start("in0", "out0")?;
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let forwarder = s.spawn(|| fwd.run(DUT_CORE, &stop));
            let rate = line.measure(&east_west_frame(), &[GEN_CORE], seconds);
            stop.store(true, Ordering::Relaxed);
            forwarder.join().expect("forwarder");
            rate
        })
    })
}

/// Open vSwitch's userspace datapath on AF_XDP ports between in0 and
/// out0, its PMD thread on the core xvr's worker gets, with `flows` on
/// bridge br0.
/// `check` looks at OVS after the run (its conntrack, say).
fn ovs(
    name: &str,
    flows: &str,
    frame: &[u8],
    seconds: f64,
    check: impl Fn(&Ovs) -> Result<(), String>,
) -> Result<Rate, String> {
    let line = Line::new(name, Some("in0"), "out0", 1)?;
    let ovs = Ovs::start(&line.dut, DUT_CORE)?;
    ovs.bridge("br0", &["in0", "out0"])?;
    ovs.flows("br0", flows)?;
    ovs_measure(&line, &ovs, frame, FLOWS, seconds, check)
}

fn ovs_measure(
    line: &Line,
    ovs: &Ovs,
    frame: &[u8],
    flows: u32,
    seconds: f64,
    check: impl Fn(&Ovs) -> Result<(), String>,
) -> Result<Rate, String> {
    let rate = line.measure_with(seconds, |duration| {
        generate("g0", frame, flows, &[GEN_CORE], duration)
    })?;
    if rate.sink_pps == 0.0 {
        return Err(format!("ovs forwarded nothing; its log:\n{}", ovs.log()));
    }
    check(ovs)?;
    Ok(rate)
}

/// OVS as a VTEP, as xvr's encap row: in0 on bridge br-int, whose
/// vxlan0 port (VNI 100, to 198.18.0.2) is pushed by the userspace
/// datapath out of bridge br-phy, which holds out0 and the local VTEP
/// address 198.18.0.1 on its internal port. `int_flows` go on br-int.
fn ovs_vxlan(
    name: &str,
    int_flows: &str,
    frame: &[u8],
    flows: u32,
    seconds: f64,
) -> Result<Rate, String> {
    let line = Line::new(name, Some("in0"), "out0", 1)?;
    let ovs = Ovs::start(&line.dut, DUT_CORE)?;
    ovs.bridge("br-phy", &["out0"])?;
    line.rig.exec(
        &line.dut,
        &["ip", "addr", "add", "198.18.0.1/24", "dev", "br-phy"],
    );
    line.rig
        .exec(&line.dut, &["ip", "link", "set", "br-phy", "up"]);
    ovs.appctl(&["ovs/route/add", "198.18.0.2/24", "br-phy"])?;
    ovs.appctl(&["tnl/arp/set", "br-phy", "198.18.0.2", SINK_MAC])?;
    ovs.flows("br-phy", "actions=output:out0\n")?;
    ovs.bridge("br-int", &["in0"])?;
    ovs.vsctl(&[
        "add-port",
        "br-int",
        "vxlan0",
        "--",
        "set",
        "interface",
        "vxlan0",
        "type=vxlan",
        "options:remote_ip=198.18.0.2",
        "options:local_ip=198.18.0.1",
        "options:key=100",
    ])?;
    ovs.flows("br-int", int_flows)?;
    // The datapath pushed the tunnel header (the sink counts any frame),
    // and with ct() translated each flow.
    let encapsulated = |ovs: &Ovs| {
        let dp = ovs.appctl(&["dpctl/dump-flows"])?;
        if !dp.contains("tnl_push") {
            return Err(format!("ovs: no tunnel push in its datapath flows:\n{dp}"));
        }
        if int_flows.contains("ct(") {
            ovs_translated(ovs, flows)?;
        }
        Ok(())
    };
    ovs_measure(&line, &ovs, frame, flows, seconds, encapsulated)
}

/// At least `flows` connections translated to 203.0.113.10 in OVS's
/// conntrack.
fn ovs_translated(ovs: &Ovs, flows: u32) -> Result<(), String> {
    let table = ovs.appctl(&["dpctl/dump-conntrack"])?;
    let nat = table
        .lines()
        .filter(|l| l.contains("dst=203.0.113.10"))
        .count();
    match nat as u32 >= flows {
        true => Ok(()),
        false => Err(format!("ovs: {nat} translated connections:\n{table}")),
    }
}

/// OVS encapsulating a VM's frames to a remote VTEP.
fn ovs_vxlan_encap(seconds: f64) -> Result<Rate, String> {
    let flows = "in_port=in0,actions=output:vxlan0\n";
    ovs_vxlan("e2e-ovs-vxlan", flows, &encap_frame(), FLOWS, seconds)
}

/// OVS translating sources, then encapsulating toward a remote VTEP, over
/// 1,000 flows (as a gateway chassis does for a tenant network).
fn ovs_snat_vxlan_1k(seconds: f64) -> Result<Rate, String> {
    let flows = "table=0,ip,in_port=in0,actions=ct(commit,zone=1,nat(src=203.0.113.10),table=1)\n\
                 table=1,ip,in_port=in0,actions=output:vxlan0\n";
    ovs_vxlan("e2e-ovs-snatvx", flows, &snat_frame(), 1000, seconds)
}

/// OVS as a plain L2 forwarder, in0 to out0 (the l2fwd row's job).
fn ovs_l2(seconds: f64) -> Result<Rate, String> {
    let flows = "in_port=in0,actions=output:out0\n";
    ovs("e2e-ovs-l2", flows, &east_west_frame(), seconds, |_| Ok(()))
}

/// OVS source NAT through its userspace conntrack (`ct(nat)`), as an
/// OpenStack or OVN gateway does it, to 203.0.113.10.
fn ovs_snat(seconds: f64) -> Result<Rate, String> {
    let flows = format!(
        "table=0,ip,in_port=in0,actions=ct(commit,zone=1,nat(src=203.0.113.10),table=1)\n\
         table=1,ip,in_port=in0,actions=mod_dl_dst:{SINK_MAC},output:out0\n"
    );
    // Every flow went through conntrack and was translated.
    let translated = |ovs: &Ovs| ovs_translated(ovs, FLOWS);
    ovs("e2e-ovs-snat", &flows, &snat_frame(), seconds, translated)
}

fn kernel_forward(seconds: f64) -> Result<Rate, String> {
    kernel(seconds, false)
}

/// Kernel forwarding with nftables source NAT to 203.0.113.10 on out0.
fn kernel_snat(seconds: f64) -> Result<Rate, String> {
    kernel(seconds, true)
}

fn kernel(seconds: f64, snat: bool) -> Result<Rate, String> {
    let line = Line::new("e2e-kernel", Some("in0"), "out0", 1)?;
    let (rig, dut) = (&line.rig, &line.dut);
    rig.exec(dut, &["ip", "link", "set", "in0", "address", ROUTER_IN_MAC]);
    rig.exec(dut, &["ip", "addr", "add", "198.18.1.1/24", "dev", "in0"]);
    rig.exec(dut, &["ip", "addr", "add", "198.18.2.1/24", "dev", "out0"]);
    rig.exec(dut, &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"]);
    let neigh = [
        "ip",
        "neigh",
        "add",
        "198.18.2.2",
        "lladdr",
        SINK_MAC,
        "dev",
        "out0",
        "nud",
        "permanent",
    ];
    rig.exec(dut, &neigh);
    // RPS moves the stack's work off the generator's core, to the
    // core the xvr worker gets.
    let rps = format!(
        "echo {:x} > /sys/class/net/in0/queues/rx-0/rps_cpus",
        1 << DUT_CORE
    );
    rig.exec(dut, &["sh", "-c", &rps]);
    if snat {
        let rules = "table ip nat {\n\
                     \x20 chain post {\n\
                     \x20   type nat hook postrouting priority srcnat;\n\
                     \x20   oifname \"out0\" snat to 203.0.113.10\n\
                     \x20 }\n\
                     }\n";
        let script = format!("printf '%s' '{rules}' | nft -f -");
        if !rig.try_exec(dut, &["sh", "-c", &script]) {
            return Err("nftables SNAT: nft failed (apt-get install nftables)".into());
        }
    }
    let frame = udp64(
        [0x02, 0, 0, 0, 0x01, 0x02],
        mac_bytes(ROUTER_IN_MAC),
        [198, 18, 1, 2],
        [198, 18, 2, 2],
    );
    line.measure_with(seconds, |duration| {
        generate_afxdp("g0", &frame, FLOWS, GEN_CORE, duration)
    })
}

/// xvr's workers forwarding (the XDP fast path off, so that every frame
/// crosses a worker).
fn xvr(name: &str, out: &str, frame: &[u8], workers: usize, seconds: f64) -> Result<Rate, String> {
    let generator = match workers {
        1 => Generator::OwnCore,
        _ => Generator::EveryCore,
    };
    xvr_on(
        name,
        out,
        frame,
        (workers, generator),
        Carrier::Workers,
        seconds,
    )
}

/// Where the generator's threads run. On this 2-core rig two workers
/// leave it no core of its own; a one-worker row with the generator on
/// both cores is their like-for-like comparison.
#[derive(Clone, Copy, PartialEq)]
enum Generator {
    /// Core `GEN_CORE`, beside one worker on `DUT_CORE`.
    OwnCore,
    /// A thread on each core, sharing them with the workers.
    EveryCore,
}

/// What carries the frames in an xvr row.
#[derive(Clone, Copy, PartialEq)]
enum Carrier {
    Workers,
    /// The workers, translating the source (source NAT configured).
    WorkersSnat,
    /// The steering program's fast path (frames the workers would only
    /// bridge, the sink taking redirected frames).
    XdpFast,
    /// The fast path in tc (the steering program in generic mode).
    TcFast,
    /// Source NAT, the workers offloading each flow to the XDP fast path
    /// after its first packet.
    OffloadSnat,
    /// Routed between tiers through their ACL (`routed_state`) by the
    /// workers.
    WorkersRouted,
    /// The same, offloaded as `OffloadSnat` is.
    OffloadRouted,
}

fn xvr_with(
    name: &str,
    out: &str,
    frame: &[u8],
    workers: usize,
    path: Carrier,
    seconds: f64,
) -> Result<Rate, String> {
    xvr_on(
        name,
        out,
        frame,
        (workers, Generator::OwnCore),
        path,
        seconds,
    )
}

fn xvr_on(
    name: &str,
    out: &str,
    frame: &[u8],
    (workers, generator): (usize, Generator),
    path: Carrier,
    seconds: f64,
) -> Result<Rate, String> {
    xvr_run(
        name,
        ("a1", out, frame),
        (workers, generator),
        path,
        FLOWS,
        seconds,
    )
}

/// One worker, the generator on its own core, over `flows` flows (the
/// workers' session tables sized for them), `frame` sent into `input`.
fn xvr_flows(
    name: &str,
    (input, out, frame): (&str, &str, &[u8]),
    path: Carrier,
    flows: u32,
    seconds: f64,
) -> Result<Rate, String> {
    xvr_run(
        name,
        (input, out, frame),
        (1, Generator::OwnCore),
        path,
        flows,
        seconds,
    )
}

fn xvr_run(
    name: &str,
    (input, out, frame): (&str, &str, &[u8]),
    (workers, generator): (usize, Generator),
    path: Carrier,
    flows: u32,
    seconds: f64,
) -> Result<Rate, String> {
    let snat = matches!(path, Carrier::WorkersSnat | Carrier::OffloadSnat);
    let offloaded = matches!(path, Carrier::OffloadSnat | Carrier::OffloadRouted);
    // A queue per worker, and per generator thread: on veth a queue's
    // XDP runs on one core at a time.
    let queues = match generator {
        Generator::OwnCore => workers as u32,
        Generator::EveryCore => workers.max(2) as u32,
    };
    let mut line = match input == out {
        true => Line::one_armed(name, input, queues)?,
        false => Line::new(name, Some(input), out, queues)?,
    };
    let on_workers = matches!(
        path,
        Carrier::Workers | Carrier::WorkersSnat | Carrier::WorkersRouted
    );
    if !on_workers && flows > FLOWS && flows < NEW_FLOWS {
        // Every flow offloaded before the measurement: the workers
        // install INSTALLS_PER_SECOND directions a second at most.
        let install = flows / xvr_dataplane::pipeline::INSTALLS_PER_SECOND + 1;
        line.warmup = Duration::from_secs(u64::from(install));
    }
    if path == Carrier::TcFast {
        // The generator's frames are XDP frames redirected into a1: with
        // the steering program in generic mode there, a1 takes them only
        // with GRO on (a VM's own sends need nothing of the sort).
        line.rig
            .exec(&line.dut, &["ethtool", "-K", "a1", "gro", "on"]);
    }
    // The other configured ports exist but carry nothing.
    for dev in ["up0", "a1", "a2"]
        .into_iter()
        .filter(|d| *d != out && *d != input)
    {
        let q = queues.to_string();
        let add = [
            "ip",
            "link",
            "add",
            dev,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
        ];
        line.rig.exec(&line.dut, &add);
        line.rig.exec(&line.dut, &["ip", "link", "set", dev, "up"]);
    }
    let json = match path {
        Carrier::WorkersRouted | Carrier::OffloadRouted => routed_state(),
        _ => STATE.to_string(),
    };
    let mut state = State::from_json(&json).map_err(|e| e.to_string())?;
    if snat {
        state.nat.source.push(SourceNatConfig {
            tenant: "t".into(),
            public_ip: [203, 0, 113, 10].into(),
            ports: None,
            filtering: None,
        });
    }
    let max_sessions = (2 * flows).next_power_of_two().clamp(1 << 16, 1 << 22);
    if flows > FLOWS {
        // The tenant may take the whole table, as fast as it can: the
        // row measures the workers' setup, not the tenant's fair share.
        for tenant in &mut state.tenants {
            tenant.limits.sessions = Some(max_sessions);
            tenant.limits.new_sessions_per_second = Some(u32::MAX);
        }
    }
    let tables = state.build().map_err(|e| e.to_string())?;
    let cores: Vec<usize> = match workers {
        1 => vec![DUT_CORE],
        _ => (0..workers).collect(),
    };
    let gen_cores = match generator {
        Generator::OwnCore => vec![GEN_CORE],
        Generator::EveryCore => vec![GEN_CORE, DUT_CORE],
    };
    // Offloaded, the workers see a flow's first packets only: beside a
    // generator on every core they sleep when idle, as xvrd does by
    // default, rather than spin on the generator's cores.
    let idle = match (offloaded, generator) {
        (true, Generator::EveryCore) => Idle::Sleep,
        _ => Idle::BusyPoll,
    };
    let options = Options {
        workers,
        cores,
        idle,
        fast_path: !on_workers,
        conntrack: xvr_dataplane::conntrack::Config {
            max_sessions,
            ..Default::default()
        },
        fast_path_in_tc: path == Carrier::TcFast,
        ..Options::default()
    };
    line.rig.inside(&line.dut, || {
        let mut router = Router::start(&tables, &options).map_err(|e| e.to_string())?;
        let (rate, reports) =
            router.run_while(&tables, || {
                line.measure_with(seconds, |duration| {
                    generate("g0", frame, flows, &gen_cores, duration)
                })
            })?;
        for (w, r) in reports.iter().enumerate() {
            let c = &r.counters;
            let drops: Vec<_> = r.stats.nonzero_drops().collect();
            eprintln!(
                "  worker {w}: rx {} tx {} idle passes {} kernel drops {:?} pipeline drops {drops:?}",
                c.rx_packets, c.tx_packets, c.idle_passes, r.socket_drops
            );
        }
        rate
    })
}

#[derive(Clone, Copy, Default)]
struct Tcp {
    forward_bps: f64,
    reverse_bps: f64,
    /// Sender retransmissions, forward and reverse.
    retransmits: (u64, u64),
}

/// iperf3 TCP vm1 -> vm2 and back (-R) over the overlay rig, with GRO on
/// every veth end or none.
fn overlay_tcp(with_xvr: bool, gro: bool, seconds: u32) -> Result<Tcp, String> {
    overlay_tcp_with(with_xvr, gro, false, seconds)
}

fn overlay_tcp_with(with_xvr: bool, gro: bool, in_tc: bool, seconds: u32) -> Result<Tcp, String> {
    let mut rig = Rig::new(if with_xvr { "e2e-ovx" } else { "e2e-ovk" });
    let o = rig.overlay(!with_xvr);
    if gro {
        rig.gro_everywhere(&o);
    }
    let run = || -> Result<Tcp, String> {
        let forward = rig.iperf3(&o.vm2, &o.vm1, "10.0.0.20", seconds, &[])?;
        let reverse = rig.iperf3(&o.vm2, &o.vm1, "10.0.0.20", seconds, &["-R"])?;
        Ok(Tcp {
            forward_bps: forward.bits_per_second,
            reverse_bps: reverse.bits_per_second,
            retransmits: (forward.retransmits, reverse.retransmits),
        })
    };
    if !with_xvr {
        return run();
    }
    let tables = State::from_json(overlay::STATE)
        .and_then(|s| s.build())
        .map_err(|e| e.to_string())?;
    rig.inside(&o.host, || {
        let options = Options {
            fast_path_in_tc: in_tc,
            ..Options::default()
        };
        let mut router = Router::start(&tables, &options).map_err(|e| e.to_string())?;
        let (result, reports) = router.run_while(&tables, run)?;
        if let Ok(counters) = router.xdp_counters().read() {
            let taken = counters.iter().filter(|(_, n)| *n > 0);
            eprintln!("xvr steering: {:?}", taken.collect::<Vec<_>>());
        }
        for report in &reports {
            eprintln!(
                "xvr worker: {:?}, {:?}",
                report.counters, report.socket_drops
            );
        }
        result
    })
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("xvr-e2e: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (network namespaces, XDP, AF_XDP)".into());
    }
    let s = args.seconds;
    XDP_COST.store(args.xdp_cost, Ordering::Relaxed);
    let step = |what: &str| eprintln!("measuring {what}...");
    type Scenario = (&'static str, &'static str, fn(f64) -> Result<Rate, String>);
    let scenarios: [Scenario; 38] = [
        ("raw ceiling (gen -> XDP drop)", "raw_ceiling", raw_ceiling),
        (
            "raw ceiling, generator on both cores",
            "raw_ceiling_2c",
            raw_ceiling_2c,
        ),
        ("AF_XDP l2fwd, 1 core", "afxdp_l2fwd", afxdp_l2fwd),
        ("Open vSwitch AF_XDP, L2", "ovs_l2", ovs_l2),
        ("Open vSwitch AF_XDP, ct SNAT", "ovs_snat", ovs_snat),
        (
            "Open vSwitch AF_XDP, VXLAN encap",
            "ovs_vxlan_encap",
            ovs_vxlan_encap,
        ),
        (
            "Open vSwitch AF_XDP, ct SNAT + VXLAN, 1k flows",
            "ovs_snat_vxlan_1k",
            ovs_snat_vxlan_1k,
        ),
        ("Linux kernel forwarding", "kernel_forward", kernel_forward),
        ("xvr east-west, 1 worker", "xvr_east_west", |s| {
            xvr("e2e-xew", "a2", &east_west_frame(), 1, s)
        }),
        ("xvr VXLAN encap, 1 worker", "xvr_vxlan_encap", |s| {
            xvr("e2e-xen", "up0", &encap_frame(), 1, s)
        }),
        (
            "xvr VXLAN encap, 1 worker, generator on both cores",
            "xvr_vxlan_encap_1w_shared",
            |s| {
                let shared = (1, Generator::EveryCore);
                xvr_on(
                    "e2e-xen1s",
                    "up0",
                    &encap_frame(),
                    shared,
                    Carrier::Workers,
                    s,
                )
            },
        ),
        ("xvr VXLAN encap, 2 workers", "xvr_vxlan_encap_2w", |s| {
            xvr("e2e-xen2", "up0", &encap_frame(), 2, s)
        }),
        ("xvr east-west, XDP fast path", "xvr_east_west_fast", |s| {
            xvr_with("e2e-xewf", "a2", &east_west_frame(), 1, Carrier::XdpFast, s)
        }),
        (
            "xvr VXLAN encap, XDP fast path",
            "xvr_vxlan_encap_fast",
            |s| xvr_with("e2e-xenf", "up0", &encap_frame(), 1, Carrier::XdpFast, s),
        ),
        (
            "xvr VXLAN encap, fast path in tc",
            "xvr_vxlan_encap_tc",
            |s| xvr_with("e2e-xent", "up0", &encap_frame(), 1, Carrier::TcFast, s),
        ),
        (
            "Linux kernel forwarding + nftables SNAT",
            "kernel_snat",
            kernel_snat,
        ),
        ("xvr source NAT, 1 worker", "xvr_snat", |s| {
            xvr_with(
                "e2e-xsnat",
                "up0",
                &snat_frame(),
                1,
                Carrier::WorkersSnat,
                s,
            )
        }),
        (
            "xvr source NAT, offloaded to XDP",
            "xvr_snat_offload",
            |s| {
                let frame = snat_frame();
                xvr_with("e2e-xsnato", "up0", &frame, 1, Carrier::OffloadSnat, s)
            },
        ),
        (
            "xvr source NAT, offloaded, 1 worker, generator on both cores",
            "xvr_snat_offload_1w_shared",
            |s| {
                on_both_cores(
                    "e2e-xsnato1s",
                    ("up0", &snat_frame()),
                    1,
                    Carrier::OffloadSnat,
                    s,
                )
            },
        ),
        (
            "xvr source NAT, offloaded, 2 workers, generator on both cores",
            "xvr_snat_offload_2w",
            |s| {
                on_both_cores(
                    "e2e-xsnato2",
                    ("up0", &snat_frame()),
                    2,
                    Carrier::OffloadSnat,
                    s,
                )
            },
        ),
        (
            "xvr source NAT, 1 worker, generator on both cores",
            "xvr_snat_1w_shared",
            |s| {
                on_both_cores(
                    "e2e-xsnat1s",
                    ("up0", &snat_frame()),
                    1,
                    Carrier::WorkersSnat,
                    s,
                )
            },
        ),
        (
            "xvr source NAT, 2 workers, generator on both cores",
            "xvr_snat_2w",
            |s| {
                on_both_cores(
                    "e2e-xsnat2",
                    ("up0", &snat_frame()),
                    2,
                    Carrier::WorkersSnat,
                    s,
                )
            },
        ),
        (
            "xvr routed between tiers (ACL), offloaded to XDP",
            "xvr_routed_offload",
            |s| {
                let frame = routed_frame();
                xvr_with("e2e-xrto", "a2", &frame, 1, Carrier::OffloadRouted, s)
            },
        ),
        (
            "xvr routed between tiers (ACL), offloaded, generator on both cores",
            "xvr_routed_offload_1w_shared",
            |s| {
                on_both_cores(
                    "e2e-xrto1s",
                    ("a2", &routed_frame()),
                    1,
                    Carrier::OffloadRouted,
                    s,
                )
            },
        ),
        (
            "xvr routed between tiers (ACL), offloaded, 2 workers, generator on both cores",
            "xvr_routed_offload_2w",
            |s| {
                on_both_cores(
                    "e2e-xrto2",
                    ("a2", &routed_frame()),
                    2,
                    Carrier::OffloadRouted,
                    s,
                )
            },
        ),
        (
            "xvr routed between tiers (ACL), 1 worker",
            "xvr_routed",
            |s| {
                xvr_with(
                    "e2e-xrt",
                    "a2",
                    &routed_frame(),
                    1,
                    Carrier::WorkersRouted,
                    s,
                )
            },
        ),
        (
            "xvr routed between tiers (ACL), 1 worker, generator on both cores",
            "xvr_routed_1w_shared",
            |s| {
                on_both_cores(
                    "e2e-xrt1s",
                    ("a2", &routed_frame()),
                    1,
                    Carrier::WorkersRouted,
                    s,
                )
            },
        ),
        (
            "xvr routed between tiers (ACL), 2 workers, generator on both cores",
            "xvr_routed_2w",
            |s| {
                on_both_cores(
                    "e2e-xrt2",
                    ("a2", &routed_frame()),
                    2,
                    Carrier::WorkersRouted,
                    s,
                )
            },
        ),
        (
            "xvr routed between tiers (ACL) into VXLAN, offloaded to XDP",
            "xvr_routed_vxlan_offload",
            |s| {
                let frame = routed_vxlan_frame();
                xvr_with("e2e-xrvo", "up0", &frame, 1, Carrier::OffloadRouted, s)
            },
        ),
        (
            "xvr decap + source NAT (a VM behind a VTEP), 1 worker, 1k flows",
            "xvr_snat_vxlan_1k",
            |s| far_vm_snat("e2e-xsvx", Carrier::WorkersSnat, s),
        ),
        (
            "xvr decap + source NAT, 1 worker, 1k flows, generator on both cores",
            "xvr_snat_vxlan_1k_1w_shared",
            |s| {
                let shared = (1, Generator::EveryCore);
                far_vm_snat_on("e2e-xsvx1s", shared, Carrier::WorkersSnat, s)
            },
        ),
        (
            "xvr decap + source NAT, 2 workers, 1k flows, generator on both cores",
            "xvr_snat_vxlan_1k_2w",
            |s| {
                let shared = (2, Generator::EveryCore);
                far_vm_snat_on("e2e-xsvx2", shared, Carrier::WorkersSnat, s)
            },
        ),
        (
            "xvr decap + source NAT (a VM behind a VTEP), offloaded to XDP, 1k flows",
            "xvr_snat_vxlan_offload",
            |s| far_vm_snat("e2e-xsvxo", Carrier::OffloadSnat, s),
        ),
        (
            "xvr source NAT, offloaded to XDP, 100k flows",
            "xvr_snat_offload_100k",
            |s| {
                let frame = snat_frame();
                let path = Carrier::OffloadSnat;
                xvr_flows("e2e-xsnat1", ("a1", "up0", &frame), path, MANY_FLOWS, s)
            },
        ),
        (
            "xvr routed between tiers (ACL), offloaded to XDP, 100k flows",
            "xvr_routed_offload_100k",
            |s| {
                let frame = routed_frame();
                let path = Carrier::OffloadRouted;
                xvr_flows("e2e-xrto1", ("a1", "a2", &frame), path, MANY_FLOWS, s)
            },
        ),
        (
            "xvr routed between tiers (ACL) into VXLAN, offloaded to XDP, 100k flows",
            "xvr_routed_vxlan_offload_100k",
            |s| {
                let frame = routed_vxlan_frame();
                let path = Carrier::OffloadRouted;
                xvr_flows("e2e-xrvo1", ("a1", "up0", &frame), path, MANY_FLOWS, s)
            },
        ),
        (
            "xvr source NAT, 1 worker, every packet a new flow",
            "xvr_snat_new_flows_workers",
            |s| {
                let frame = snat_frame();
                let path = Carrier::WorkersSnat;
                xvr_flows("e2e-xsnatw", ("a1", "up0", &frame), path, NEW_FLOWS, s)
            },
        ),
        (
            "xvr source NAT, offloaded, every packet a new flow",
            "xvr_snat_new_flows",
            |s| {
                let frame = snat_frame();
                let path = Carrier::OffloadSnat;
                xvr_flows("e2e-xsnatn", ("a1", "up0", &frame), path, NEW_FLOWS, s)
            },
        ),
    ];
    let wanted = |key: &str| args.only.is_empty() || args.only.iter().any(|k| k == key);
    let mut rows = Vec::new();
    for (name, key, measure) in scenarios {
        if wanted(key) {
            step(name);
            rows.push((name, key, measure(s)?));
        }
    }
    let rate_of = |key: &str| {
        rows.iter()
            .find(|r| r.1 == key)
            .map_or(0.0, |r| r.2.sink_pps)
    };
    let (raw, l2fwd, kernel) = (
        rate_of("raw_ceiling"),
        rate_of("afxdp_l2fwd"),
        rate_of("kernel_forward"),
    );
    let tcp_ran = args.iperf_seconds > 0 && wanted("tcp");
    // (name, JSON key, figures, the kernel row it is compared with)
    let mut tcp_rows: Vec<(&str, &str, Tcp, usize)> = Vec::new();
    if tcp_ran {
        step("iperf3 over the overlay");
        let secs = args.iperf_seconds;
        tcp_rows = vec![
            (
                "xvr fast path -> kernel VTEP (GRO on)",
                "xvr_overlay",
                overlay_tcp(true, true, secs)?,
                1,
            ),
            (
                "kernel VTEP -> kernel VTEP (GRO on)",
                "kernel_vxlan",
                overlay_tcp(false, true, secs)?,
                1,
            ),
            (
                "xvr workers -> kernel VTEP (plain veth)",
                "xvr_overlay_workers",
                overlay_tcp(true, false, secs)?,
                3,
            ),
            (
                "kernel VTEP -> kernel VTEP (plain veth)",
                "kernel_vxlan_plain",
                overlay_tcp(false, false, secs)?,
                3,
            ),
            (
                "xvr fast path in tc -> kernel VTEP (plain veth)",
                "xvr_overlay_tc",
                overlay_tcp_with(true, false, true, secs)?,
                3,
            ),
        ];
    }
    let dns_ran = args.dns_seconds > 0 && wanted("dns");
    let dns = match dns_ran {
        true => {
            step("DNS answers a second (dnsperf)");
            xvr_bench::e2e::dns::measure(args.dns_seconds)?
        }
        false => Default::default(),
    };
    let dns_rows = [
        (
            "xvr DNS, authoritative (the VM's own name)",
            "xvr_dns_authoritative",
            dns.xvr_authoritative,
        ),
        ("xvr DNS, from its cache", "xvr_dns_cached", dns.xvr_cached),
        ("dnsmasq, its own name", "dnsmasq", dns.dnsmasq),
        (
            "xvr DNS over TCP, from its cache",
            "xvr_dns_tcp",
            dns.xvr_tcp,
        ),
        (
            "dnsmasq over TCP, its own name",
            "dnsmasq_tcp",
            dns.dnsmasq_tcp,
        ),
    ];

    if args.json {
        let mut json = serde_json::Map::new();
        if dns_ran {
            for (_, key, qps) in &dns_rows {
                json.insert(format!("{key}_qps"), qps.round().into());
            }
        }
        for (_, key, rate) in &rows {
            json.insert(format!("{key}_pps"), rate.sink_pps.round().into());
            json.insert(
                format!("{key}_generator_pps"),
                rate.generator_pps.round().into(),
            );
        }
        for (_, key, tcp, _) in &tcp_rows {
            json.insert(format!("{key}_tcp_bps"), tcp.forward_bps.round().into());
            json.insert(
                format!("{key}_tcp_reverse_bps"),
                tcp.reverse_bps.round().into(),
            );
        }
        json.insert("seconds".into(), s.into());
        println!("{}", serde_json::Value::Object(json));
        return Ok(());
    }
    let ratio = |a: f64, b: f64| match b > 0.0 {
        true => format!("{:.2}", a / b),
        false => "-".into(),
    };
    if !rows.is_empty() {
        println!("64-byte UDP, {FLOWS} flows, {s} s each; generator on core {GEN_CORE}, device under test on core {DUT_CORE}\n");
        println!("| path | Mpps at sink | generator Mpps | x ceiling | x l2fwd | x kernel |");
        println!("|---|---|---|---|---|---|");
    }
    for (name, key, rate) in &rows {
        // The sink got nearly all that was sent: the figure is a lower
        // bound on what the device under test can do.
        let bound = match *key != "raw_ceiling" && rate.sink_pps > 0.9 * rate.generator_pps {
            true => " (generator-bound)",
            false => "",
        };
        println!(
            "| {name}{bound} | {:.2} | {:.2} | {} | {} | {} |",
            rate.sink_pps / 1e6,
            rate.generator_pps / 1e6,
            ratio(rate.sink_pps, raw),
            ratio(rate.sink_pps, l2fwd),
            ratio(rate.sink_pps, kernel),
        );
    }
    if dns_ran {
        println!(
            "\nDNS answers a second, dnsperf (200 in flight; over TCP on 2 connections), {} s each\n",
            args.dns_seconds
        );
        println!("| server | answers/s | x dnsmasq (same transport) |");
        println!("|---|---|---|");
        for (name, key, qps) in &dns_rows {
            let dnsmasq = match key.ends_with("_tcp") {
                true => dns.dnsmasq_tcp,
                false => dns.dnsmasq,
            };
            println!("| {name} | {qps:.0} | {} |", ratio(*qps, dnsmasq));
        }
    }
    if tcp_ran {
        println!(
            "\niperf3 TCP, VM to VM over VXLAN (underlay MTU 1600), {} s each\n",
            args.iperf_seconds
        );
        println!("| path | vm1 -> vm2 Gbit/s | vm2 -> vm1 Gbit/s | x kernel | retransmits |");
        println!("|---|---|---|---|---|");
        for (name, _, tcp, kernel) in &tcp_rows {
            let kernel_tcp = tcp_rows[*kernel].2;
            println!(
                "| {name} | {:.2} | {:.2} | {} / {} | {} / {} |",
                tcp.forward_bps / 1e9,
                tcp.reverse_bps / 1e9,
                ratio(tcp.forward_bps, kernel_tcp.forward_bps),
                ratio(tcp.reverse_bps, kernel_tcp.reverse_bps),
                tcp.retransmits.0,
                tcp.retransmits.1,
            );
        }
    }
    Ok(())
}
