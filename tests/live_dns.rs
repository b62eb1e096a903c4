//! DNS live: VMs of two tenants with the same address ask their gateway
//! with `dig`; an upstream resolver (dnsmasq) runs on the internet side.
//! Each tenant's own names are answered authoritatively (A, PTR,
//! NXDOMAIN), never the other's; other names are forwarded through the
//! tenant's source NAT (dnsmasq's log says from which address), after
//! a first upstream that never answers, and then answered from the
//! cache; a tenant without upstreams is refused.
mod common;

use common::{count, start_xvrd, stats_of, stop_xvrd};
use std::process::{Child, Command, Stdio};
use xvr_testkit::netns::{require_root, Rig};

const STATE: &str = r#"{
  "tenants": [
    { "name": "acme", "vni": 100, "dns": { "upstreams": ["198.19.0.99", "198.19.0.10"] } },
    { "name": "globex", "vni": 200 }
  ],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:00:fe" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "acme", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "b1", "mac": "02:bb:00:00:00:01", "tenant": "globex", "gateway": "10.0.0.1/24" }
  ],
  "routes": [{ "tenant": "acme", "prefix": "0.0.0.0/0", "next_hop": "internet" }],
  "neighbors": [
    { "tenant": "acme", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1", "hostname": "web-1" },
    { "tenant": "globex", "ip": "10.0.0.10", "mac": "02:0b:00:00:00:10", "port": "b1", "hostname": "db-9" }
  ],
  "nat": { "source": [{ "tenant": "acme", "public_ip": "203.0.113.10" }] }
}"#;

const RESOLVER: &str = common::INTERNET_SERVER;

/// host (xvrd), acme's VM and globex's VM (both 10.0.0.10), and the
/// internet with dnsmasq on `RESOLVER`: www.example.test is
/// 198.51.100.7, every other name under example.test NXDOMAIN. Returns
/// (host, acme, globex, dnsmasq, its log).
fn rig(
    rig: &mut Rig,
    dir: &std::path::Path,
) -> (String, String, String, Child, std::path::PathBuf) {
    let (host, acme, internet) = common::internet_rig(rig, 1);
    let globex = rig.vm(&host, "b1", "10.0.0.10/24", "02:0b:00:00:00:10");
    rig.exec(
        &globex,
        &["ip", "route", "add", "default", "via", "10.0.0.1"],
    );
    let log = dir.join("dnsmasq.log");
    let dnsmasq = Command::new("ip")
        .args([
            "netns",
            "exec",
            &internet,
            "dnsmasq",
            "--keep-in-foreground",
        ])
        .args([
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
        ])
        .arg(format!("--listen-address={RESOLVER}"))
        .args([
            "--host-record=www.example.test,198.51.100.7",
            "--local=/example.test/",
        ])
        .args(big_txt_records())
        // Its own records have TTL 0 unless told: nothing to cache.
        .arg("--local-ttl=300")
        .arg("--log-queries")
        .arg(format!("--log-facility={}", log.display()))
        .arg("--pid-file=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_sockets(&internet, "-uln", 53, 1);
    common::wait_sockets(&internet, "-tln", 53, 1);
    (host, acme, globex, dnsmasq, log)
}

/// TXT records of big.example.test: 8 of 200 bytes, more than a UDP
/// answer of 1,232 bytes holds.
const BIG_TXT: usize = 8;

fn big_txt_records() -> Vec<String> {
    (0..BIG_TXT)
        .map(|i| {
            format!(
                "--txt-record=big.example.test,record-{i}-{}",
                "x".repeat(190)
            )
        })
        .collect()
}

/// `dig` in `ns` at its gateway: (status, answer section, flags line).
/// It waits 5 s: a forwarded query waits 2 s for the silent upstream.
fn dig(ns: &str, args: &[&str]) -> (String, String, String) {
    let mut all = vec![
        "dig",
        "@10.0.0.1",
        "+time=5",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
    ];
    all.extend_from_slice(args);
    // dig fails when nothing answers: that is a status here.
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(&all)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let flags = text
        .lines()
        .find(|l| l.contains(";; flags:"))
        .unwrap_or_default()
        .to_string();
    let answer = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    (status, answer, flags)
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn each_tenant_resolves_its_own_names_and_forwards_the_rest() {
    require_root("creating namespaces and running xvrd");
    let dir = tempfile::tempdir().unwrap();
    let mut r = Rig::new("dns");
    let (host, acme, globex, mut dnsmasq, log) = rig(&mut r, dir.path());
    let (_state_dir, config) = common::state_file(STATE);
    let daemon = start_xvrd(&r, &host, &config, &["up0", "a1", "b1"]);
    let upstream_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let context = |what: &str| {
        format!(
            "{what}\ndnsmasq: {}\nxvrd: {}",
            upstream_log(),
            daemon.log()
        )
    };

    // Its own names, authoritatively.
    let (status, answer, flags) = dig(&acme, &["web-1.acme.internal", "A"]);
    assert_eq!(status, "NOERROR", "{}", context(&answer));
    assert!(
        answer.contains("10.0.0.10") && flags.contains(" aa"),
        "{}",
        context(&answer)
    );
    let (_, answer, _) = dig(&acme, &["-x", "10.0.0.10"]);
    assert!(
        answer.contains("PTR\tweb-1.acme.internal."),
        "{}",
        context(&answer)
    );
    let (status, _, _) = dig(&acme, &["nope.acme.internal"]);
    assert_eq!(status, "NXDOMAIN");
    // The same address in the other tenant has the other name.
    let (_, answer, _) = dig(&globex, &["-x", "10.0.0.10"]);
    assert!(
        answer.contains("db-9.globex.internal."),
        "{}",
        context(&answer)
    );
    // Neither learns the other's names, and no upstream is asked them.
    let (status, answer, _) = dig(&acme, &["db-9.globex.internal"]);
    assert_eq!(status, "NXDOMAIN", "{}", context(&answer));
    let (status, _, _) = dig(&globex, &["web-1.acme.internal"]);
    assert_eq!(status, "NXDOMAIN");

    // Other names: forwarded from acme's public address (after 2 s of
    // silence from the first upstream), then cached.
    let (status, answer, _) = dig(&acme, &["www.example.test"]);
    assert_eq!(status, "NOERROR", "{}", context(&answer));
    assert!(answer.contains("198.51.100.7"), "{}", context(&answer));
    let (_, again, _) = dig(&acme, &["www.example.test"]);
    assert!(again.contains("198.51.100.7"), "{}", context(&again));
    let (status, _, _) = dig(&acme, &["nothere.example.test"]);
    assert_eq!(status, "NXDOMAIN", "{}", context("nothere"));
    // globex has no upstream.
    let (status, _, _) = dig(&globex, &["www.example.test"]);
    assert_eq!(status, "REFUSED");

    let seen = upstream_log();
    let asked = seen
        .matches("query[A] www.example.test from 203.0.113.10")
        .count();
    assert_eq!(asked, 1, "asked once, through acme's source NAT:\n{seen}");
    assert!(
        !seen.contains(".internal"),
        "no .internal name left the host:\n{seen}"
    );
    let stats = stats_of(&config);
    let acme_dns = &stats["services"]["dns_by_tenant"]["acme"];
    assert!(
        count(acme_dns, &["authoritative"]) >= 4
            // Each of the two names to the silent upstream, then to dnsmasq.
            && count(acme_dns, &["forwarded"]) == 4
            && count(acme_dns, &["from_cache"]) == 1,
        "{stats}"
    );
    assert_eq!(
        count(&stats["services"]["dns_by_tenant"]["globex"], &["refused"]),
        1
    );
    stop_xvrd(daemon);
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn dns_over_tcp_carries_what_udp_cannot_and_a_vm_holds_only_its_own_sockets() {
    require_root("creating namespaces and running xvrd");
    let dir = tempfile::tempdir().unwrap();
    let mut r = Rig::new("dnstcp");
    let (host, acme, globex, mut dnsmasq, log) = rig(&mut r, dir.path());
    let (_state_dir, config) = common::state_file(STATE);
    let daemon = start_xvrd(&r, &host, &config, &["up0", "a1", "b1"]);
    let context = |what: &str| {
        let seen = std::fs::read_to_string(&log).unwrap_or_default();
        let stats = stats_of(&config);
        format!("{what}\ndnsmasq: {seen}\nxvrd: {}\n{stats}", daemon.log())
    };
    let txt_records = |answer: &str| answer.lines().filter(|l| l.contains("\tTXT\t")).count();

    // A VM asks over TCP: its own names, and a name whose answer does
    // not fit UDP. xvr asks upstream over UDP, is told TC, and asks
    // again over TCP (after 2 s of silence from the first upstream).
    let (status, answer, flags) = dig(&acme, &["+tcp", "web-1.acme.internal"]);
    assert_eq!(status, "NOERROR", "{}", context(&answer));
    assert!(answer.contains("10.0.0.10") && flags.contains(" aa"));
    let (status, answer, flags) = dig(&acme, &["+tcp", "big.example.test", "TXT"]);
    assert_eq!(status, "NOERROR", "{}", context(&answer));
    assert_eq!(txt_records(&answer), BIG_TXT, "{}", context(&answer));
    assert!(!flags.contains(" tc"), "{flags}");
    // Over UDP the answer is too long for dig's 1,232 bytes: xvr says
    // TC (from its cache), and dig asks again over TCP by itself.
    let (status, answer, _) = dig(&acme, &["big.example.test", "TXT"]);
    assert_eq!(status, "NOERROR", "{}", context(&answer));
    assert_eq!(txt_records(&answer), BIG_TXT, "{}", context(&answer));
    let with_tc = dig(&acme, &["+ignore", "big.example.test", "TXT"]).2;
    assert!(with_tc.contains(" tc"), "truncated over UDP: {with_tc}");

    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    let asked = seen
        .matches("query[TXT] big.example.test from 203.0.113.10")
        .count();
    assert_eq!(asked, 2, "once over UDP, once over TCP:\n{seen}");
    let stats = stats_of(&config);
    let acme_dns = &stats["services"]["dns_by_tenant"]["acme"];
    assert_eq!(
        (
            count(acme_dns, &["tcp_retries"]),
            count(acme_dns, &["tcp_answers"]),
        ),
        (1, 1),
        "{stats}"
    );
    assert!(count(acme_dns, &["from_cache"]) >= 2, "{stats}");

    // Hostile: acme's VM holds both of its port's DNS sockets open and
    // silent. Its third connection is refused; globex's VM, on another
    // port, is answered at once; acme's sockets are closed once idle.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &acme, "bash", "-c"])
        .arg("exec 3<>/dev/tcp/10.0.0.1/53 4<>/dev/tcp/10.0.0.1/53; sleep 60")
        .spawn()
        .unwrap();
    let held = || {
        let out = r.exec(
            &acme,
            &["ss", "-tnH", "state", "established", "dport", "53"],
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    for _ in 0..50 {
        if held() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(held(), 2, "the VM holds two connections");
    let (status, _, _) = dig(&acme, &["+tcp", "web-1.acme.internal"]);
    assert_eq!(status, "no answer", "no third socket for acme's port");
    let (status, answer, _) = dig(&globex, &["+tcp", "db-9.globex.internal"]);
    assert_eq!(status, "NOERROR", "{}", context(&answer));
    std::thread::sleep(std::time::Duration::from_secs(11));
    let (status, answer, _) = dig(&acme, &["+tcp", "web-1.acme.internal"]);
    assert_eq!(status, "NOERROR", "idle ones closed: {}", context(&answer));
    let _ = holder.kill();
    let _ = holder.wait();

    stop_xvrd(daemon);
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
}
