//! `xvr replay` end to end: the shipped captures are current, the VXLAN
//! frames it writes are decoded by tshark (an independent dissector) with
//! the right VNI, inner packet and checksums, and bad input is refused.
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../examples/make_example_pcaps.rs"]
mod example_pcaps;

const XVR: &str = env!("CARGO_BIN_EXE_xvr");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails unless `tool` runs. Its tests are `#[ignore]`d, so a plain
/// `cargo test` on a machine without it reports them skipped;
/// `scripts/test` installs it and runs them.
fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "{tool} is not installed (scripts/test installs it)");
}

fn replay(out: &Path, json: bool) -> std::process::Output {
    let pcaps = root().join("examples/pcaps");
    let mut cmd = Command::new(XVR);
    cmd.arg("replay")
        .arg("--config")
        .arg(root().join("examples/two-tenants.json"));
    for port in ["acme-web", "globex-web", "up0"] {
        cmd.arg("--port").arg(format!(
            "{port}={}",
            pcaps.join(format!("{port}.pcap")).display()
        ));
    }
    cmd.arg("--out").arg(out);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

#[test]
fn shipped_captures_are_current() {
    let dir = tempfile::tempdir().unwrap();
    example_pcaps::write_captures(dir.path());
    for (name, _) in example_pcaps::captures() {
        let file = format!("{name}.pcap");
        let shipped = std::fs::read(root().join("examples/pcaps").join(&file)).unwrap();
        let fresh = std::fs::read(dir.path().join(&file)).unwrap();
        assert_eq!(
            shipped, fresh,
            "examples/pcaps/{file} is stale: cargo run --example make_example_pcaps"
        );
    }
}

#[test]
fn replay_summary_counts_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let output = replay(dir.path(), true);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let sum = |v: &serde_json::Value| {
        v.as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum(&summary["received"]), 19);
    let drops = &summary["drops"];
    for reason in [
        "vxlan_bad_flags",
        "vxlan_unknown_vni",
        "ttl_exceeded",
        "no_route",
        "blackhole",
        "host_unknown",
        "nat_no_session",
    ] {
        assert_eq!(drops[reason], 1, "{reason} in {drops}");
    }
    // acme's SYN left from its public address, and the answer came back.
    assert_eq!(summary["events"]["nat_out"], 1);
    assert_eq!(summary["events"]["nat_in"], 1);
    assert_eq!(summary["events"]["icmp_error_sent"], 3);
    assert_eq!(summary["to_kernel"], 1);
    // Every frame is accounted for: sent, to the kernel, or dropped without reply.
    let silent_drops = sum(drops) - 3;
    assert_eq!(sum(&summary["sent"]) + 1 + silent_drops, 19);
    for file in [
        "acme-web.pcap",
        "acme-db.pcap",
        "globex-web.pcap",
        "up0.pcap",
        "kernel.pcap",
    ] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
}

/// Runs tshark with checksum validation on and returns one line per frame
/// of the requested fields, multiple occurrences joined by `,`.
fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file);
    for pref in [
        "ip.check_checksum:TRUE",
        "udp.check_checksum:TRUE",
        "tcp.check_checksum:TRUE",
    ] {
        cmd.arg("-o").arg(pref);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        "-E",
        "separator=|",
    ]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs tshark: scripts/test installs it and runs it"]
fn tshark_decodes_replayed_vxlan_with_correct_checksums() {
    require("tshark");
    let dir = tempfile::tempdir().unwrap();
    assert!(replay(dir.path(), false).status.success());
    let up0 = dir.path().join("up0.pcap");
    let fields = [
        "vxlan.vni",
        "vxlan.flags",
        "ip.src",
        "ip.dst",
        "ip.checksum.status",
        "udp.checksum.status",
        "icmp.checksum.status",
        "frame.protocols",
    ];
    let lines = tshark_fields(&up0, &fields);
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('|').collect()).collect();
    let vxlan: Vec<_> = rows.iter().filter(|r| !r[0].is_empty()).collect();
    assert_eq!(vxlan.len(), 2, "{lines:#?}");
    // globex's ping to its remote VM, then acme's UDP to its remote VM.
    let want = [
        ("1002", "10.0.0.10", "10.0.0.20", "icmp"),
        ("1001", "10.0.0.10", "10.0.0.20", "udp"),
    ];
    for (row, (vni, inner_src, inner_dst, proto)) in vxlan.iter().zip(want) {
        assert_eq!(row[0], vni);
        assert_eq!(row[1], "0x0800", "flags: only I");
        assert_eq!(row[2], format!("198.18.0.1,{inner_src}"));
        assert_eq!(row[3], format!("198.18.0.2,{inner_dst}"));
        assert_eq!(row[4], "1,1", "outer and inner IPv4 checksums Good");
        assert!(
            row[7].ends_with(&format!("vxlan:eth:ethertype:ip:{proto}:data")),
            "{}",
            row[7]
        );
        match proto {
            // outer UDP checksum zero (not present), inner UDP Good
            "udp" => assert_eq!(row[5], "3,1"),
            _ => {
                assert_eq!(row[5], "3");
                assert_eq!(row[6], "1", "ICMP checksum Good");
            }
        }
    }
    // No checksum tshark checked anywhere in any output is bad.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        for line in tshark_fields(
            &path,
            &[
                "ip.checksum.status",
                "udp.checksum.status",
                "tcp.checksum.status",
                "icmp.checksum.status",
            ],
        ) {
            for status in line.split(['|', ',']).filter(|s| !s.is_empty()) {
                assert_ne!(status, "0", "bad checksum in {}: {line}", path.display());
            }
        }
    }
}

#[test]
fn replay_refuses_bad_input_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = root().join("examples/pcaps/up0.pcap");
    let out = Command::new(XVR)
        .args(["replay", "--config"])
        .arg(root().join("examples/two-tenants.json"))
        .arg("--port")
        .arg(format!("nosuch={}", pcap.display()))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port \"nosuch\""));
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"tenants":[{"name":"a","vni":1},{"name":"b","vni":1}]}"#,
    )
    .unwrap();
    let out = Command::new(XVR)
        .args(["replay", "--config"])
        .arg(&bad)
        .arg("--port")
        .arg(format!("x={}", pcap.display()))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tenants[1].vni: duplicate VNI 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
