//! Running xvrd as a process inside a test namespace.
#![allow(dead_code)]
pub mod steering;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// An xvrd process we started; killed (SIGKILL) on drop unless stopped,
/// so a failing test leaves no daemon behind.
pub struct Daemon(Option<Child>, PathBuf);

impl Daemon {
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// What xvrd has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    /// Sends `signal` and waits for the exit status.
    pub fn stop_with(mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("running");
        // SAFETY: signalling our own child process by PID.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
use std::time::{Duration, Instant};
use xvr_testkit::netns::Rig;

pub const XVRD: &str = env!("CARGO_BIN_EXE_xvrd");
pub const XVRCTL: &str = env!("CARGO_BIN_EXE_xvrctl");

/// Runs xvrctl against the xvrd listening on `socket`.
pub fn xvrctl(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(XVRCTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

/// One tenant with two VMs on this host: 10.0.0.10 behind port `a1`
/// and 10.0.0.11 behind port `a2`.
pub const TWO_VMS: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.0.1/24" }
  ],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "t", "ip": "10.0.0.11", "mac": "02:0a:00:00:00:11", "port": "a2" }
  ]
}"#;

/// The namespaces of `TWO_VMS`: (host, vm1, vm2).
pub fn two_vms(rig: &mut Rig) -> (String, String, String) {
    let host = rig.namespace();
    let vm1 = rig.vm(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10");
    let vm2 = rig.vm(&host, "a2", "10.0.0.11/24", "02:0a:00:00:00:11");
    (host, vm1, vm2)
}

/// One VM (10.0.0.10 behind port a1) whose tenant reaches the internet
/// through source NAT to 203.0.113.10 on uplink up0 (see `internet_rig`).
pub const SNAT_STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:00:fe" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" }
  ],
  "routes": [{ "tenant": "t", "prefix": "0.0.0.0/0", "next_hop": "internet" }],
  "neighbors": [{ "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" }],
  "nat": { "source": [{ "tenant": "t", "public_ip": "203.0.113.10" }] }
}"#;

/// The server on the internet side of `internet_rig`.
pub const INTERNET_SERVER: &str = "198.19.0.10";

/// host (xvrd: up0, a1, each end with `queues` queues), vm (10.0.0.10),
/// internet (the gateway at 198.18.0.254 with a server at
/// `INTERNET_SERVER`, routing 203.0.113.0/24 to the host). Returns
/// (host, vm, internet).
pub fn internet_rig(rig: &mut Rig, queues: u32) -> (String, String, String) {
    let host = rig.namespace();
    let vm = rig.vm_queues(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10", queues);
    rig.exec(&vm, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    let internet = rig.namespace();
    let (up, gw) = (Some("198.18.0.1/24"), Some("198.18.0.254/24"));
    rig.veth_queues(&host, "up0", up, &internet, "eth0", gw, queues);
    rig.exec(
        &host,
        &["ip", "link", "set", "up0", "address", "02:00:00:00:00:01"],
    );
    let i = |args: &[&str]| {
        rig.exec(&internet, args);
    };
    i(&["ip", "link", "set", "eth0", "address", "02:00:00:00:00:fe"]);
    i(&["ip", "link", "set", "lo", "up"]);
    i(&[
        "ip",
        "addr",
        "add",
        &format!("{INTERNET_SERVER}/32"),
        "dev",
        "lo",
    ]);
    i(&["ip", "route", "add", "203.0.113.0/24", "via", "198.18.0.1"]);
    (host, vm, internet)
}

/// The state of `two_tiers`: a tenant whose tiers 10.0.0.0/24 (port a1)
/// and 10.0.1.0/24 (port a2) each hold one VM.
pub const TWO_TIERS: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.1.1/24" }
  ],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "t", "ip": "10.0.1.10", "mac": "02:0a:00:00:01:10", "port": "a2" }
  ]
}"#;

/// Two tiers of one tenant routed by the host: vm1 10.0.0.10 behind port
/// `a1` (gateway 10.0.0.1) and vm2 10.0.1.10 behind port `a2` (gateway
/// 10.0.1.1), each with its default route via its gateway. Returns
/// (host, vm1, vm2).
pub fn two_tiers(rig: &mut Rig) -> (String, String, String) {
    let host = rig.namespace();
    let vm1 = rig.vm(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10");
    let vm2 = rig.vm(&host, "a2", "10.0.1.10/24", "02:0a:00:00:01:10");
    rig.exec(&vm1, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    rig.exec(&vm2, &["ip", "route", "add", "default", "via", "10.0.1.1"]);
    (host, vm1, vm2)
}

/// Starts xvrd in `ns` with `config` and waits until every device in
/// `ports` carries its program. `ip netns exec` execs xvrd, so the child's
/// PID is xvrd's own.
pub fn start_xvrd(rig: &Rig, ns: &str, config: &Path, ports: &[&str]) -> Daemon {
    start_xvrd_with(rig, ns, config, ports, &[])
}

/// `start_xvrd` with more arguments; xvrd's stderr goes to a file beside
/// `config` (see `Daemon::log`).
pub fn start_xvrd_with(
    rig: &Rig,
    ns: &str,
    config: &Path,
    ports: &[&str],
    args: &[&str],
) -> Daemon {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    spawn_xvrd(rig, ns, config, ports, &all, &[])
}

/// `start_xvrd_with` with environment variables set for xvrd.
pub fn start_xvrd_env(
    rig: &Rig,
    ns: &str,
    config: &Path,
    (ports, args): (&[&str], &[&str]),
    env: &[(&str, &str)],
) -> Daemon {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    spawn_xvrd(rig, ns, config, ports, &all, env)
}

/// `start_xvrd` without `--config`: xvrd resumes the state saved beside
/// `config` by an earlier start.
pub fn start_xvrd_resuming(rig: &Rig, ns: &str, config: &Path, ports: &[&str]) -> Daemon {
    spawn_xvrd(rig, ns, config, ports, &[], &[])
}

fn spawn_xvrd(
    rig: &Rig,
    ns: &str,
    config: &Path,
    ports: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> Daemon {
    let log = config.with_extension("log");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, XVRD])
        .envs(env.iter().copied())
        .arg("--socket")
        .arg(socket_beside(config))
        .arg("--state-dir")
        .arg(state_dir_beside(config))
        .arg("--session-dir")
        .arg(session_dir_beside(config))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(Some(child), log);
    // A thousand ports take xvrd some seconds to bind and attach.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ports.iter().all(|dev| rig.xdp_attached(ns, dev)) {
        let exited = daemon.0.as_mut().expect("running").try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "xvrd did not attach to {ports:?} ({exited:?}): {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// The control socket of the xvrd started with `config`: beside it, so
/// daemons of tests running at once never share one.
pub fn socket_beside(config: &Path) -> PathBuf {
    config.with_extension("sock")
}

/// The state directory of the xvrd started with `config`: beside it, so
/// each test's daemons have their own, and a restart resumes it.
pub fn state_dir_beside(config: &Path) -> PathBuf {
    config.with_extension("state")
}

/// The session directory of the xvrd started with `config`, beside it as
/// its state directory is.
pub fn session_dir_beside(config: &Path) -> PathBuf {
    config.with_extension("sessions")
}

/// Stops xvrd with SIGTERM, checks it exited 0, and returns its log.
pub fn stop_xvrd(daemon: Daemon) -> String {
    let log = daemon.1.clone();
    let status = daemon.stop_with(libc::SIGTERM);
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "xvrd exited with {status}: {log}");
    log
}

/// A number after `field` in xvrd's report line of worker `w`.
pub fn worker_field(log: &str, w: usize, field: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains(&format!(" worker {w} (core ")))
        .unwrap_or_else(|| panic!("no report of worker {w} in:\n{log}"));
    let after = line.split(&format!(" {field} ")).nth(1).expect(field);
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// The count xvrd's exit report gives `event` (a line `INFO <event> N`).
pub fn logged_count(log: &str, event: &str) -> Option<u64> {
    let prefix = format!(" INFO {event} ");
    let line = log.lines().find(|l| l.contains(&prefix))?;
    line.split(&prefix)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A state file holding `json` in a fresh temporary directory (removed
/// when the returned guard drops).
pub fn state_file(json: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("state.json");
    std::fs::write(&config, json).unwrap();
    (dir, config)
}

/// Runs a Python program in `ns`; returns (success, stdout, stderr).
pub fn python(ns: &str, program: &str) -> (bool, String, String) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "timeout", "60", "python3", "-c", program,
        ])
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// A TCP server in `ns` on `addr`:`port` that answers one connection with
/// the address it came from; it fails if none comes within `wait` seconds.
pub fn tell_peer_server_within(ns: &str, addr: &str, port: u16, wait: u32) -> std::process::Child {
    let program = format!(
        "import socket\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{addr}', {port})); s.listen(1); s.settimeout({wait})\n\
         c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()\n"
    );
    let server = spawn_python(ns, 30, &program, (Stdio::null(), Stdio::null()));
    wait_listening(ns, port);
    server
}

/// Starts a Python program in `ns`, ended after `seconds` at the latest,
/// with its (stdout, stderr).
pub fn spawn_python(ns: &str, seconds: u32, program: &str, (out, err): (Stdio, Stdio)) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", &seconds.to_string()])
        .args(["python3", "-c", program])
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

/// Returns once a TCP socket in `ns` listens on `port`: a fixed sleep
/// after starting a server loses the race on a loaded machine, and the
/// client's SYN meets a closed port.
pub fn wait_listening(ns: &str, port: u16) {
    wait_sockets(ns, "-Hltn", port, 1);
}

/// Returns once `count` sockets in `ns` that `ss FLAGS` lists (`-Hltn`:
/// listening TCP; `-Hlun`: bound UDP) have local port `port`.
pub fn wait_sockets(ns: &str, flags: &str, port: u16, count: usize) {
    let filter = format!("sport = :{port}");
    for _ in 0..200 {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", flags, &filter])
            .output()
            .unwrap();
        if out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() >= count {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no {count} socket(s) on port {port} in {ns} after 10 s");
}

pub fn tell_peer_server(ns: &str, addr: &str, port: u16) -> std::process::Child {
    tell_peer_server_within(ns, addr, port, 20)
}

/// Connects from `ns` to `addr`:`port` and returns what the server sent.
pub fn ask(ns: &str, addr: &str, port: u16) -> String {
    let program = format!(
        "import socket\n\
         c = socket.create_connection(('{addr}', {port}), timeout=10)\n\
         print(c.recv(64).decode())\n"
    );
    let (ok, out, err) = python(ns, &program);
    assert!(ok, "connect to {addr}:{port}: {err}");
    out.trim().to_string()
}

/// One request on a fresh connection; the answer's `result`, or panics
/// with its error.
pub fn call(socket: &std::path::Path, request: serde_json::Value) -> serde_json::Value {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let mut line = request.to_string();
    line.push('\n');
    std::io::Write::write_all(&mut stream, line.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut answer).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    match answer.get("result") {
        Some(result) => result.clone(),
        None => {
            let op = &request["op"];
            panic!("{op}: {:.400}", answer.to_string())
        }
    }
}

/// Two hosts joined by an underlay veth: `up0` in each, 198.18.0.1/24
/// (MAC 02:00:00:00:00:01) and 198.18.0.2/24 (02:00:00:00:00:02).
pub fn two_hosts(rig: &mut Rig) -> [String; 2] {
    let hosts = [rig.namespace(), rig.namespace()];
    rig.veth(
        &hosts[0],
        "up0",
        Some("198.18.0.1/24"),
        &hosts[1],
        "up0",
        Some("198.18.0.2/24"),
    );
    for (i, host) in hosts.iter().enumerate() {
        let mac = format!("02:00:00:00:00:0{}", i + 1);
        rig.exec(host, &["ip", "link", "set", "up0", "address", &mac]);
    }
    hosts
}

/// Echo requests the kernel in `ns` has received (its ICMP InEchos).
pub fn echo_requests_received(rig: &Rig, ns: &str) -> u64 {
    snmp(rig, ns, "Icmp:", "InEchos")
}

/// A counter of `/proc/net/snmp` in `ns`: `name` in the `section` lines.
pub fn snmp(rig: &Rig, ns: &str, section: &str, name: &str) -> u64 {
    let snmp = rig.exec(ns, &["cat", "/proc/net/snmp"]);
    let snmp = String::from_utf8_lossy(&snmp.stdout);
    let mut lines = snmp.lines().filter(|l| l.starts_with(section));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let column = names.split_whitespace().position(|n| n == name).unwrap();
    values
        .split_whitespace()
        .nth(column)
        .unwrap()
        .parse()
        .unwrap()
}

/// The number at `path` in a `stats` answer (0 where there is none).
pub fn count(stats: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(stats, |v, key| &v[*key])
        .as_u64()
        .unwrap_or(0)
}

/// The `stats` answer of the xvrd started with `config`.
pub fn stats_of(config: &Path) -> serde_json::Value {
    let out = xvrctl(&socket_beside(config), &["--json", "stats"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}
