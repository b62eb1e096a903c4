//! iperf3 between two namespaces of a rig: the kernels' own TCP and UDP
//! stacks as the independent sender and receiver. Results come from
//! iperf3's JSON report.
use crate::netns::Rig;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What the receiving side counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Iperf {
    pub bytes_received: u64,
    pub bits_per_second: f64,
    /// TCP retransmissions by the sender (0 for UDP).
    pub retransmits: u64,
    /// UDP datagrams lost (0 for TCP).
    pub lost_packets: u64,
}

/// Kills the server when a test gives up on it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Rig {
    /// Runs `iperf3 -c server_ip -t seconds ARGS` in `client_ns` against a
    /// one-shot server in `server_ns` (pass `-R` to send from the server,
    /// `-u -b RATE` for UDP).
    pub fn iperf3(
        &self,
        server_ns: &str,
        client_ns: &str,
        server_ip: &str,
        seconds: u32,
        args: &[&str],
    ) -> Result<Iperf, String> {
        let server = Command::new("ip")
            .args([
                "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", "5201",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the iperf3 server: {e}"))?;
        let _server = Server(server);
        let t = seconds.to_string();
        let mut last = String::new();
        // The server needs a moment to listen (longer on a loaded CI
        // machine); retry while it refuses, for 5 s.
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            let out = Command::new("ip")
                .args(["netns", "exec", client_ns, "timeout", "60", "iperf3", "-J"])
                .args(["-c", server_ip, "-p", "5201", "-t", &t])
                .args(args)
                .output()
                .map_err(|e| format!("running the iperf3 client: {e}"))?;
            let report = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() {
                return parse(&report);
            }
            last = report;
            if !last.contains("Connection refused") {
                break;
            }
        }
        Err(format!("iperf3 client failed: {last}"))
    }
}

fn parse(report: &str) -> Result<Iperf, String> {
    let json: serde_json::Value =
        serde_json::from_str(report).map_err(|e| format!("iperf3 JSON: {e}: {report}"))?;
    let end = &json["end"];
    let number = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    // TCP reports sum_received (the receiver's view); UDP reports sum.
    let received = if end["sum_received"].is_object() {
        &end["sum_received"]
    } else {
        &end["sum"]
    };
    if !received.is_object() {
        return Err(format!("iperf3 report without a summary: {report}"));
    }
    Ok(Iperf {
        bytes_received: number(&received["bytes"]) as u64,
        bits_per_second: number(&received["bits_per_second"]),
        retransmits: number(&end["sum_sent"]["retransmits"]) as u64,
        lost_packets: number(&received["lost_packets"]) as u64,
    })
}
