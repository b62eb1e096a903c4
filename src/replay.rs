//! `xvr replay`: runs capture files through the real pipeline, offline and
//! without privileges, and writes what each port would have sent.
use crate::pcap;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xvr_dataplane::frame::{FRAME_SIZE, HEADROOM};
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::table::PortId;
use xvr_dataplane::{Pipeline, Verdict};

/// Name of the capture that holds frames handed to the kernel.
pub const KERNEL_PCAP: &str = "kernel.pcap";

pub struct Args {
    pub config: PathBuf,
    /// (port name, capture file)
    pub inputs: Vec<(String, PathBuf)>,
    pub out: PathBuf,
    pub json: bool,
}

#[derive(Default)]
struct Summary {
    received: BTreeMap<String, u64>,
    sent: BTreeMap<String, u64>,
    to_kernel: u64,
    oversize: u64,
}

pub fn run(args: &Args) -> Result<(), String> {
    let tables = xvr::load_tables(&args.config)?;
    let mut summary = Summary::default();
    let mut frames: Vec<(Duration, PortId, Vec<u8>)> = Vec::new();
    for (name, path) in &args.inputs {
        let port = tables.port_by_name(name).ok_or_else(|| {
            let known: Vec<_> = tables.ports().iter().map(|p| p.name.as_str()).collect();
            format!(
                "--port {name}={}: no port {name:?} in the config (ports: {})",
                path.display(),
                known.join(", ")
            )
        })?;
        for packet in pcap::read(path)? {
            if packet.data.len() > FRAME_SIZE - HEADROOM {
                summary.oversize += 1;
                continue;
            }
            *summary.received.entry(name.clone()).or_default() += 1;
            frames.push((packet.timestamp, port, packet.data));
        }
    }
    // Interleave the ports by time; a stable sort keeps each file's order.
    frames.sort_by_key(|(ts, _, _)| *ts);
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut writers: BTreeMap<String, pcap::Writer> = BTreeMap::new();
    let mut pipeline = Pipeline::new();
    let mut result = Ok(());
    let mut io = MemoryIo::new();
    let start = frames.first().map(|(ts, _, _)| *ts).unwrap_or_default();
    // One frame per batch, so a reply in the capture finds the session its
    // request opened (live, a reply never shares a batch with its
    // request); session timeouts run on the capture's clock.
    for (timestamp, port, data) in &frames {
        pipeline.now = timestamp.saturating_sub(start).as_secs() as u32;
        io.run(
            &mut pipeline,
            &tables,
            [(*port, data.as_slice())],
            |_, verdict, data| {
                let file = match verdict {
                    Verdict::Tx(port) => {
                        let name = tables
                            .port(port)
                            .map_or("?", |p| p.name.as_str())
                            .to_string();
                        *summary.sent.entry(name.clone()).or_default() += 1;
                        format!("{name}.pcap")
                    }
                    Verdict::Kernel => {
                        summary.to_kernel += 1;
                        KERNEL_PCAP.to_string()
                    }
                    // One pipeline: nothing is handed off; no services
                    // run to answer DHCP.
                    Verdict::Drop(_)
                    | Verdict::Pending
                    | Verdict::Handoff { .. }
                    | Verdict::Local => return,
                };
                if result.is_err() {
                    return;
                }
                result = write(&mut writers, &args.out, &file, *timestamp, data);
            },
        );
    }
    result?;
    let stats = &pipeline.stats;
    if args.json {
        let drops: BTreeMap<_, _> = stats.nonzero_drops().collect();
        let events: BTreeMap<_, _> = stats.nonzero_events().collect();
        let out = json!({
            "received": summary.received, "sent": summary.sent, "to_kernel": summary.to_kernel,
            "oversize_skipped": summary.oversize, "events": events, "drops": drops,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
        return Ok(());
    }
    println!("{:<24} {:>8} {:>8}", "port", "in", "out");
    let names: std::collections::BTreeSet<_> =
        summary.received.keys().chain(summary.sent.keys()).collect();
    for name in names {
        let get = |m: &BTreeMap<String, u64>| m.get(name).copied().unwrap_or(0);
        println!(
            "{:<24} {:>8} {:>8}",
            name,
            get(&summary.received),
            get(&summary.sent)
        );
    }
    println!("{:<24} {:>8} {:>8}", "(kernel)", "", summary.to_kernel);
    if summary.oversize > 0 {
        println!(
            "skipped {} frames longer than {} bytes",
            summary.oversize,
            FRAME_SIZE - HEADROOM
        );
    }
    println!("\nevents:");
    for (name, n) in stats.nonzero_events() {
        println!("  {name:<28} {n:>8}");
    }
    println!("\ndrops by reason:");
    if stats.total_drops() == 0 {
        println!("  (none)");
    }
    for (name, n) in stats.nonzero_drops() {
        println!("  {name:<28} {n:>8}");
    }
    println!("\nwritten to {}", args.out.display());
    Ok(())
}

fn write(
    writers: &mut BTreeMap<String, pcap::Writer>,
    dir: &Path,
    file: &str,
    timestamp: Duration,
    data: &[u8],
) -> Result<(), String> {
    if !writers.contains_key(file) {
        writers.insert(file.to_string(), pcap::Writer::create(&dir.join(file))?);
    }
    writers
        .get_mut(file)
        .expect("just inserted")
        .write(timestamp, data)
}
