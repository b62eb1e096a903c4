//! DNS answers a second, with `dnsperf` as the client, in one run: xvr's
//! DNS on a VM's gateway (its own name, authoritatively; and a name its
//! upstream answered once, from the cache) beside dnsmasq answering a
//! name of its own to a client one veth away; then both over TCP (two
//! connections, as many as a VM port's stack takes, queries pipelined on
//! them). Each side runs on one core: xvr's services thread (and its
//! worker), dnsmasq's one process (and, over TCP, a child per
//! connection).
use std::path::Path;
use std::process::{Child, Command, Stdio};
use xvr::router::{Options, Router};
use xvr_control::State;
use xvr_testkit::netns::Rig;

/// Queries a second each answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct DnsRates {
    pub xvr_authoritative: f64,
    pub xvr_cached: f64,
    pub dnsmasq: f64,
    pub xvr_tcp: f64,
    pub dnsmasq_tcp: f64,
}

/// How dnsperf asks.
#[derive(Clone, Copy)]
enum Transport {
    Udp,
    /// Over two TCP connections.
    Tcp,
}

const RESOLVER: &str = "198.19.0.10";

/// A VM (10.0.0.10, `web.t.internal`) behind xvr on port a1, whose
/// tenant forwards other names through its source NAT to dnsmasq. Its
/// share of the services is lifted: the row measures the service, not
/// the fair share a tenant gets by default.
const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100, "dns": { "upstreams": ["198.19.0.10"] },
                "limits": { "service_requests_per_second": 4000000000,
                            "service_requests_per_port_second": 4000000000 } }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:00:fe" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" }
  ],
  "routes": [{ "tenant": "t", "prefix": "0.0.0.0/0", "next_hop": "internet" }],
  "neighbors": [{ "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1",
                  "hostname": "web" }],
  "nat": { "source": [{ "tenant": "t", "public_ip": "203.0.113.10" }] }
}"#;

/// dnsperf from `ns` at `server` for `name`, `seconds` long: queries a
/// second answered.
fn dnsperf(
    rig: &Rig,
    (ns, server): (&str, &str),
    (name, transport): (&str, Transport),
    seconds: u32,
    dir: &Path,
) -> Result<f64, String> {
    let queries = dir.join(format!("queries-{name}"));
    std::fs::write(&queries, format!("{name} A\n")).map_err(|e| e.to_string())?;
    let (mode, clients) = match transport {
        Transport::Udp => ("udp", "1"),
        Transport::Tcp => ("tcp", "2"),
    };
    let out = rig.exec(
        ns,
        &[
            "dnsperf",
            "-m",
            mode,
            "-c",
            clients,
            "-s",
            server,
            "-d",
            queries.to_str().unwrap_or_default(),
            "-l",
            &seconds.to_string(),
            "-q",
            "200",
            "-t",
            "1",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let qps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("dnsperf at {server}: {text}"))?;
    let lost = text
        .lines()
        .find(|l| l.contains("Queries lost:"))
        .unwrap_or_default();
    eprintln!(
        "  dnsperf {name} at {server} over {mode}: {qps:.0}/s, {}",
        lost.trim()
    );
    Ok(qps)
}

fn dnsmasq(ns: &str, log: &Path) -> Result<Child, String> {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
        ])
        .args([
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
        ])
        .arg(format!("--listen-address={RESOLVER}"))
        .args([
            "--host-record=www.example.test,198.51.100.7",
            "--local-ttl=3600",
        ])
        .args(["--local=/example.test/", "--cache-size=1000"])
        .arg(format!("--log-facility={}", log.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("dnsmasq: {e}"))
}

/// The five rates, `seconds` each.
pub fn measure(seconds: u32) -> Result<DnsRates, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rig = Rig::new("e2e-dns");
    let host = rig.namespace();
    let vm = rig.vm(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10");
    rig.exec(&vm, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    let internet = rig.namespace();
    let (up, gw) = (Some("198.18.0.1/24"), Some("198.18.0.254/24"));
    rig.veth(&host, "up0", up, &internet, "eth0", gw);
    rig.exec(
        &host,
        &["ip", "link", "set", "up0", "address", "02:00:00:00:00:01"],
    );
    for args in [
        &["ip", "link", "set", "eth0", "address", "02:00:00:00:00:fe"][..],
        &["ip", "link", "set", "lo", "up"],
        &["ip", "addr", "add", "198.19.0.10/32", "dev", "lo"],
        &["ip", "route", "add", "203.0.113.0/24", "via", "198.18.0.1"],
    ] {
        rig.exec(&internet, args);
    }
    // dnsmasq's own client, one veth away.
    let peer = rig.namespace();
    rig.veth(
        &internet,
        "p0",
        Some("198.18.1.1/24"),
        &peer,
        "eth0",
        Some("198.18.1.2/24"),
    );
    rig.exec(
        &peer,
        &["ip", "route", "add", "198.19.0.10/32", "via", "198.18.1.1"],
    );
    let mut server = dnsmasq(&internet, &dir.path().join("dnsmasq.log"))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let result = (|| {
        let name = "www.example.test";
        let ask_dnsmasq = |transport| {
            dnsperf(
                &rig,
                (&peer, RESOLVER),
                (name, transport),
                seconds,
                dir.path(),
            )
        };
        let dnsmasq = ask_dnsmasq(Transport::Udp)?;
        let dnsmasq_tcp = ask_dnsmasq(Transport::Tcp)?;
        let tables = State::from_json(STATE)
            .and_then(|s| s.build())
            .map_err(|e| e.to_string())?;
        let (authoritative, cached, tcp) = rig.inside(&host, || {
            let mut router =
                Router::start(&tables, &Options::default()).map_err(|e| e.to_string())?;
            let (rates, _) = router.run_while(&tables, || {
                let ask = |name, transport| {
                    dnsperf(
                        &rig,
                        (&vm, "10.0.0.1"),
                        (name, transport),
                        seconds,
                        dir.path(),
                    )
                };
                let own = ask("web.t.internal", Transport::Udp)?;
                let cached = ask(name, Transport::Udp)?;
                let tcp = ask(name, Transport::Tcp)?;
                Ok::<_, String>((own, cached, tcp))
            })?;
            rates
        })?;
        Ok(DnsRates {
            xvr_authoritative: authoritative,
            xvr_cached: cached,
            dnsmasq,
            xvr_tcp: tcp,
            dnsmasq_tcp,
        })
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}
