//! The rig's traffic ends, all XDP (`xvr_ebpf::BENCH_OBJECT`):
//! - `generate`: a live-frames generator. BPF_PROG_RUN with
//!   BPF_F_TEST_XDP_LIVE_FRAMES redirects copies of one test frame into a
//!   veth at several Mpps per core, where trafgen manages ~0.7 (measured
//!   here); the UDP source port cycles so flows spread.
//! - `Sink`: counts and drops at the far end, in XDP.
//! - `generate_afxdp`: the generator for kernel forwarding, since live
//!   frames passed to the stack mostly never arrive (measured here),
//!   and through a CPUMAP only a trickle did here (~0.1 Mpps).
//!
//! Each function acts in the calling thread's network namespace.
use aya::maps::{Array, DevMap, PerCpuArray};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::Ebpf;
use std::time::{Duration, Instant};
use xvr::netdev::ifindex;
use xvr_dataplane::io::xsk::{Socket, Umem};

/// How long a BPF_PROG_RUN call of the generator should last. Each call
/// waits twice for an RCU grace period with its core idle (the kernel
/// points the XDP dispatcher at the program and back, at 6.18; perf's
/// sched_switch: `synchronize_rcu` in `bpf_dispatcher_change_prog`,
/// some 10 ms each here), so calls of 2^18 frames left the generator's
/// core idle a third of the time (`perf record -e cpu-clock -C 0`: 35% in
/// `pv_native_safe_halt`) and every row on one core was held to about
/// two thirds of what it could do.
const CALL_TIME: Duration = Duration::from_secs(1);
/// Frames of the first call, before its rate is known, and the bounds.
const FIRST_CALL: u32 = 1 << 16;
const MAX_CALL: u32 = 1 << 24;
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

/// `struct head` of bench.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct Head {
    len: u32,
    port_at: u32,
    bytes: [u8; VXLAN_HEADERS],
}

// SAFETY: a plain C struct without padding holes (100 bytes), valid for
// any bytes.
unsafe impl aya::Pod for Head {}
const _: () = assert!(std::mem::size_of::<Head>() == 100);
const PLAIN_HEADERS: usize = 14 + 20 + 8;
const VXLAN_HEADERS: usize = PLAIN_HEADERS + 8 + PLAIN_HEADERS;
const VXLAN_PORT: [u8; 2] = 4789u16.to_be_bytes();

/// Has the generator write `frame`'s headers into each frame it sends,
/// and cycle the ports of its UDP header (its inner one, if `frame` is
/// VXLAN).
fn set_head(ebpf: &mut Ebpf, frame: &[u8]) -> Result<(), String> {
    let vxlan = frame.len() >= VXLAN_HEADERS && frame.get(36..38) == Some(&VXLAN_PORT[..]);
    let len = if vxlan { VXLAN_HEADERS } else { PLAIN_HEADERS };
    let mut head = Head {
        len: 0,
        port_at: (len - 8) as u32,
        bytes: [0; VXLAN_HEADERS],
    };
    if let Some(headers) = frame.get(..len) {
        head.len = len as u32;
        head.bytes[..len].copy_from_slice(headers);
    }
    let map = ebpf.map_mut("heads").ok_or("heads")?;
    let mut array: Array<_, Head> = Array::try_from(map).map_err(|e| format!("heads: {e}"))?;
    array.set(0, head, 0).map_err(|e| format!("heads: {e}"))
}

/// Sends `frame` out of `dev` from one thread per core in `cores` (each
/// pinned) for `duration`, cycling the UDP source port over `flows`
/// values (the inner packet's, in VXLAN); returns the frames sent.
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
                    set_head(&mut ebpf, frame)?;
                    let program = xdp(&mut ebpf, "generate");
                    let mut sent = 0u64;
                    let mut call = FIRST_CALL;
                    loop {
                        let start = Instant::now();
                        if start >= deadline {
                            break;
                        }
                        let opts = TestRunOptions {
                            data_in: Some(frame),
                            repeat: call,
                            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                            ..Default::default()
                        };
                        program
                            .test_run(opts)
                            .map_err(|e| format!("live frames on {dev}: {e}"))?;
                        sent += u64::from(call);
                        call = next_call(call, start.elapsed(), deadline);
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

/// Frames for the next generator call, after one of `frames` took
/// `took`: about CALL_TIME's worth at that rate, and no more than the
/// time left before `deadline` holds (so the run ends near it).
fn next_call(frames: u32, took: Duration, deadline: Instant) -> u32 {
    let left = deadline.saturating_duration_since(Instant::now());
    let per_second = f64::from(frames) / took.as_secs_f64().max(1e-6);
    let want = per_second * CALL_TIME.min(left).as_secs_f64();
    (want as u32).clamp(BATCH, MAX_CALL)
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

/// Sends `frame` out of `dev` through the TX ring of an AF_XDP socket,
/// from `core`, for `duration`, cycling the UDP source port over `flows`
/// values; returns the frames sent. In copy mode the kernel builds an
/// ordinary skb per frame, which the receiver's stack takes like any
/// other: the generator for kernel forwarding.
pub fn generate_afxdp(
    dev: &str,
    frame: &[u8],
    flows: u32,
    core: usize,
    duration: Duration,
) -> Result<u64, String> {
    xvr::affinity::pin_to(core);
    let mut umem = Umem::new(4096).map_err(|e| e.to_string())?;
    // The kernel frees a closed socket's queue asynchronously, so a bind
    // right after the previous run's socket closed may find it busy.
    let mut tries = 0;
    let mut socket = loop {
        match Socket::bind(&mut umem, dev, 0) {
            Ok(socket) => break socket,
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    // Write the frame into every chunk once, each with its source port.
    let mut chunks = Vec::new();
    while let Some(addr) = umem.take() {
        // SAFETY: a free chunk, not lent to the kernel; one slice at a time.
        let (chunk, _) = unsafe { umem.chunk(addr) };
        chunk[..frame.len()].copy_from_slice(frame);
        let port = 1024 + (chunks.len() as u32 % flows.max(1)) as u16;
        chunk[34..36].copy_from_slice(&port.to_be_bytes());
        chunks.push(addr);
    }
    for addr in chunks {
        umem.release(addr);
    }
    let deadline = Instant::now() + duration;
    let mut sent = 0u64;
    let mut batch = Vec::with_capacity(BATCH as usize);
    while Instant::now() < deadline {
        socket.complete(&mut umem);
        while batch.len() < BATCH as usize {
            match umem.take() {
                Some(addr) => batch.push((addr, frame.len() as u32)),
                None => break,
            }
        }
        let queued = socket.transmit(&batch);
        for (addr, _) in batch.drain(..).skip(queued) {
            umem.release(addr);
        }
        sent += queued as u64;
    }
    Ok(sent)
}
