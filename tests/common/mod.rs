//! Running xvrd as a process inside a test namespace.
#![allow(dead_code)]
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// An xvrd process we started; killed (SIGKILL) on drop unless stopped,
/// so a failing test leaves no daemon behind.
pub struct Daemon(Option<Child>);

impl Daemon {
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
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

/// Whether `dev` in `ns` carries an XDP program.
pub fn attached(rig: &Rig, ns: &str, dev: &str) -> bool {
    let out = rig.exec(ns, &["ip", "-d", "link", "show", "dev", dev]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// Starts xvrd in `ns` with `config` and waits until every device in
/// `ports` carries its program. `ip netns exec` execs xvrd, so the child's
/// PID is xvrd's own.
pub fn start_xvrd(rig: &Rig, ns: &str, config: &Path, ports: &[&str]) -> Daemon {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, XVRD, "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(Some(child));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ports.iter().all(|dev| attached(rig, ns, dev)) {
        assert!(
            Instant::now() < deadline,
            "xvrd did not attach to {ports:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// Stops xvrd with SIGTERM and checks it exited 0.
pub fn stop_xvrd(daemon: Daemon) {
    let status = daemon.stop_with(libc::SIGTERM);
    assert!(status.success(), "xvrd exited with {status}");
}
