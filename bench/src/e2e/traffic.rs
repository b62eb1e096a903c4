//! The rig's traffic ends, all XDP (`xvr_ebpf::BENCH_OBJECT`):
//! - `generate`: a live-frames generator. BPF_PROG_RUN with
//!   BPF_F_TEST_XDP_LIVE_FRAMES redirects copies of one test frame into a
//!   veth at several Mpps per core, where trafgen manages ~0.7 (DESIGN.md
//!   section 8); the UDP source port cycles so flows spread.
//! - `Sink`: counts and drops at the far end, in XDP.
//! - `KernelHandoff`: feeds a kernel-forwarding device under test through
//!   a CPUMAP, since live frames passed to the stack directly mostly never
//!   arrive.
//!
//! Each function acts in the calling thread's network namespace.
use aya::maps::{Array, CpuMap, DevMap, PerCpuArray};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::Ebpf;
use std::time::{Duration, Instant};
use xvr::router::ifindex;

/// Frames per BPF_PROG_RUN call: short enough to stop near the deadline.
const CHUNK: u32 = 1 << 18;
/// Frames per live-frames batch (the kernel's default, and its maximum).
const BATCH: u32 = 64;

fn load(program: &str) -> Result<Ebpf, String> {
    let mut ebpf = Ebpf::load(xvr_ebpf::BENCH_OBJECT).map_err(|e| format!("loading: {e}"))?;
    let xdp: &mut Xdp = ebpf
        .program_mut(program)
        .ok_or(format!("no program {program}"))?
        .try_into()
        .map_err(|e| format!("{program}: {e}"))?;
    xdp.load()
        .map_err(|e| format!("verifying {program}: {e}"))?;
    Ok(ebpf)
}

fn xdp<'a>(ebpf: &'a mut Ebpf, program: &str) -> &'a mut Xdp {
    ebpf.program_mut(program)
        .expect("loaded")
        .try_into()
        .expect("an XDP program")
}

fn set_u32(ebpf: &mut Ebpf, map: &str, value: u32) -> Result<(), String> {
    let mut array: Array<_, u32> =
        Array::try_from(ebpf.map_mut(map).ok_or(map)?).map_err(|e| format!("{map}: {e}"))?;
    array.set(0, value, 0).map_err(|e| format!("{map}: {e}"))
}

/// Sends `frame` out of `dev` from one thread per core in `cores` (each
/// pinned) for `duration`, cycling the UDP source port over `flows`
/// values; returns the frames sent.
pub fn generate(
    dev: &str,
    frame: &[u8],
    flows: u32,
    cores: &[usize],
    duration: Duration,
) -> Result<u64, String> {
    let index = ifindex(dev)?;
    let deadline = Instant::now() + duration;
    std::thread::scope(|s| {
        let threads: Vec<_> = cores
            .iter()
            .map(|&core| {
                // Threads inherit this thread's network namespace.
                s.spawn(move || -> Result<u64, String> {
                    xvr::affinity::pin_to(core);
                    let mut ebpf = load("generate")?;
                    let mut tx: DevMap<_> = DevMap::try_from(ebpf.map_mut("tx_port").unwrap())
                        .map_err(|e| e.to_string())?;
                    tx.set(0, index, None, 0)
                        .map_err(|e| format!("tx_port: {e}"))?;
                    set_u32(&mut ebpf, "flows", flows)?;
                    let program = xdp(&mut ebpf, "generate");
                    let mut sent = 0u64;
                    while Instant::now() < deadline {
                        let opts = TestRunOptions {
                            data_in: Some(frame),
                            repeat: CHUNK,
                            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                            ..Default::default()
                        };
                        program
                            .test_run(opts)
                            .map_err(|e| format!("live frames on {dev}: {e}"))?;
                        sent += u64::from(CHUNK);
                    }
                    Ok(sent)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("generator thread"))
            .sum()
    })
}

/// Counts and drops every frame arriving on a device, in XDP (native).
pub struct Sink {
    ebpf: Ebpf,
}

impl Sink {
    pub fn attach(dev: &str) -> Result<Sink, String> {
        let mut ebpf = load("count_and_drop")?;
        xdp(&mut ebpf, "count_and_drop")
            .attach(dev, XdpMode::Driver)
            .map_err(|e| format!("sink on {dev}: {e}"))?;
        Ok(Sink { ebpf })
    }

    /// Frames received so far, over all CPUs.
    pub fn received(&self) -> u64 {
        let map = self.ebpf.map("received").expect("in the object");
        let counts: PerCpuArray<_, u64> = PerCpuArray::try_from(map).expect("a per-CPU array");
        counts.get(&0, 0).map(|c| c.iter().sum()).unwrap_or(0)
    }
}

/// Hands every frame arriving on a device to the kernel stack on `cpu`,
/// through a CPUMAP.
pub struct KernelHandoff {
    _ebpf: Ebpf,
}

impl KernelHandoff {
    pub fn attach(dev: &str, cpu: u32) -> Result<KernelHandoff, String> {
        let mut ebpf = load("to_cpu")?;
        let mut cpus: CpuMap<_> =
            CpuMap::try_from(ebpf.map_mut("cpus").unwrap()).map_err(|e| e.to_string())?;
        cpus.set(cpu, 2048, None, 0)
            .map_err(|e| format!("cpus: {e}"))?;
        set_u32(&mut ebpf, "target_cpu", cpu)?;
        xdp(&mut ebpf, "to_cpu")
            .attach(dev, XdpMode::Driver)
            .map_err(|e| format!("handoff on {dev}: {e}"))?;
        Ok(KernelHandoff { _ebpf: ebpf })
    }
}
