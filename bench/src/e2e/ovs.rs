//! Open vSwitch's userspace datapath (`netdev`, ports of type `afxdp`) as
//! the device under test: ovsdb-server and ovs-vswitchd run inside the
//! rig's namespace with a private database, run and log directory, so
//! nothing on the host is touched; both stop (by PID) and the directory
//! goes when `Ovs` drops. Its one PMD thread is pinned to the core xvr's
//! worker gets.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Ovs {
    ns: String,
    dir: tempfile::TempDir,
}

impl Ovs {
    /// Starts OVS in `ns` with its PMD thread on `core`; an error says why
    /// it could not (not installed, no AF_XDP support, ...).
    pub fn start(ns: &str, core: usize) -> Result<Ovs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("ovs: {e}"))?;
        let ovs = Ovs {
            ns: ns.to_string(),
            dir,
        };
        let db = ovs.path("conf.db");
        let schema = "/usr/share/openvswitch/vswitch.ovsschema";
        if !Path::new(schema).exists() {
            return Err("ovs: not installed (apt-get install openvswitch-switch)".into());
        }
        ovs.run(&["ovsdb-tool", "create", &db, schema])?;
        let (remote, pid, log) = (
            format!("--remote=punix:{}", ovs.path("db.sock")),
            format!("--pidfile={}", ovs.path("ovsdb.pid")),
            format!("--log-file={}", ovs.path("ovsdb.log")),
        );
        ovs.run(&["ovsdb-server", &db, &remote, &pid, "--detach", &log])?;
        ovs.vsctl(&["--no-wait", "init"])?;
        let (db_sock, pid, log) = (
            format!("unix:{}", ovs.path("db.sock")),
            format!("--pidfile={}", ovs.path("vswitchd.pid")),
            format!("--log-file={}", ovs.path("vswitchd.log")),
        );
        ovs.run(&["ovs-vswitchd", &db_sock, &pid, "--detach", &log])?;
        let mask = format!("other_config:pmd-cpu-mask={:x}", 1u64 << core);
        ovs.vsctl(&["set", "Open_vSwitch", ".", &mask])?;
        let types = ovs.vsctl(&["get", "Open_vSwitch", ".", "iface_types"])?;
        if !types.contains("afxdp") {
            return Err(format!("ovs: no afxdp ports in this build ({types})"));
        }
        Ok(ovs)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Runs an OVS command in the namespace with the private directories.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let dir = self.dir.path().display().to_string();
        let out: Output = Command::new("ip")
            .args(["netns", "exec", &self.ns, "env"])
            .args(
                ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"]
                    .map(|v| format!("{v}={dir}")),
            )
            .args(args)
            .output()
            .map_err(|e| format!("ovs: {}: {e}", args[0]))?;
        if !out.status.success() {
            return Err(format!(
                "ovs: {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn vsctl(&self, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}", self.path("db.sock"));
        let mut all = vec!["ovs-vsctl", db.as_str(), "--timeout=10"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Replaces `bridge`'s OpenFlow table with `flows` (one a line).
    pub fn flows(&self, bridge: &str, flows: &str) -> Result<(), String> {
        let file = self.path(&format!("{bridge}.flows"));
        std::fs::write(&file, flows).map_err(|e| format!("ovs: {e}"))?;
        let target = format!("unix:{}", self.path(&format!("{bridge}.mgmt")));
        // OpenFlow 1.3: flows with a table and ct() need its OXM format.
        self.run(&[
            "ovs-ofctl",
            "-O",
            "OpenFlow13",
            "replace-flows",
            &target,
            &file,
        ])
        .map(|_| ())
    }

    /// Adds netdev bridge `bridge` with `ports` as AF_XDP ports in native
    /// XDP mode (copy: veth has no zero-copy), as xvr attaches, and waits
    /// until each has its OpenFlow number.
    pub fn bridge(&self, bridge: &str, ports: &[&str]) -> Result<(), String> {
        self.vsctl(&[
            "add-br",
            bridge,
            "--",
            "set",
            "bridge",
            bridge,
            "datapath_type=netdev",
        ])?;
        for port in ports {
            self.vsctl(&[
                "add-port",
                bridge,
                port,
                "--",
                "set",
                "interface",
                port,
                "type=afxdp",
                "options:xdp-mode=native",
            ])?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in ports {
            loop {
                let ofport = self.vsctl(&["get", "interface", port, "ofport"])?;
                if ofport.parse::<i32>().is_ok_and(|n| n > 0) {
                    break;
                }
                if Instant::now() > deadline {
                    let why = self.vsctl(&["get", "interface", port, "error"])?;
                    return Err(format!("ovs: port {port} not up: {why}"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Runs `ovs-appctl` against this ovs-vswitchd.
    pub fn appctl(&self, args: &[&str]) -> Result<String, String> {
        let pid = std::fs::read_to_string(self.dir.path().join("vswitchd.pid"))
            .map_err(|e| format!("ovs: its pidfile: {e}"))?;
        let target = self.path(&format!("ovs-vswitchd.{}.ctl", pid.trim()));
        let mut all = vec!["ovs-appctl", "-t", target.as_str()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// ovs-vswitchd's log so far (for an error message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vswitchd.log")).unwrap_or_default()
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        for pidfile in ["vswitchd.pid", "ovsdb.pid"] {
            let path: PathBuf = self.dir.path().join(pidfile);
            let Ok(pid) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: signalling a daemon this rig started, by its PID.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                // Its exit removes the pidfile; wait for it briefly.
                let deadline = Instant::now() + Duration::from_secs(3);
                while path.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}
