//! The metadata service at 169.254.169.254:80, as EC2, OpenStack and
//! CloudStack's user-data service serve it: a VM reads its instance id,
//! addresses, host name, public keys and user data over HTTP.
//!
//! Who asks is never taken from the request: the connection is one of
//! its port's own stack (`gateway_tcp`), and its VM is the one the
//! tables place at its source address on that port (port security
//! already held the source to the port's VMs). Two VMs with the same
//! address in two tenants sit on two ports, so on two stacks, and get
//! their own data.
use crate::table::{Location, PortId, Tables, TenantId};
use std::net::Ipv4Addr;

/// The link-local address every cloud serves metadata on.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
pub const PORT: u16 = 80;
/// The longest request head read: past it, the connection is reset.
pub(super) const MAX_REQUEST: usize = 2048;
/// The longest user data a VM may be given (EC2 allows 16 KiB; cloud-init
/// configs with keys and scripts run larger).
pub const MAX_USER_DATA: usize = 32 * 1024;

/// Metadata requests by what they got.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MetadataCounters {
    pub answered: u64,
    pub not_found: u64,
    /// Packets dropped: no stack free, or not from a VM port of its
    /// tenant (TCP to the port services: metadata and DNS).
    pub dropped: u64,
    /// Port stacks taken back, all being in use, from the tenant that
    /// held the most, for a port of another tenant.
    pub stacks_evicted: u64,
}

impl MetadataCounters {
    pub(super) fn add(&mut self, o: &MetadataCounters) {
        self.answered += o.answered;
        self.not_found += o.not_found;
        self.dropped += o.dropped;
        self.stacks_evicted += o.stacks_evicted;
    }
}

/// What a connection's request, read so far, gets.
pub(super) enum Served {
    /// Not all of its head yet.
    Incomplete,
    /// Longer than any request the service answers: reset.
    TooLong,
    /// The whole response; the connection closes after it.
    Response(Vec<u8>),
}

/// Answers `request` (what a connection read so far) from the VM at `vm`
/// on `port`.
pub(super) fn serve(
    tables: &Tables,
    (port, tenant, vm): (PortId, TenantId, Option<Ipv4Addr>),
    request: &[u8],
    counters: &mut MetadataCounters,
) -> Served {
    let Some(end) = find(request, b"\r\n\r\n") else {
        if request.len() > MAX_REQUEST {
            return Served::TooLong;
        }
        return Served::Incomplete;
    };
    let head = String::from_utf8_lossy(request.get(..end).unwrap_or_default());
    let (status, body) = match vm.and_then(|ip| answer(tables, port, tenant, ip, &head)) {
        Some(body) => {
            counters.answered += 1;
            ("200 OK", body)
        }
        None => {
            counters.not_found += 1;
            ("404 Not Found", "not found\n".to_string())
        }
    };
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Served::Response(response.into_bytes())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The body for `GET path` by the VM at `ip` on `port`; None: 404.
fn answer(
    tables: &Tables,
    port: PortId,
    tenant: TenantId,
    ip: Ipv4Addr,
    head: &str,
) -> Option<String> {
    let mut words = head.lines().next()?.split(' ');
    let (method, path) = (words.next()?, words.next()?);
    if method != "GET" {
        return None;
    }
    // Only a VM of this port, by the address it was held to.
    let host = tables.host(tenant, ip)?;
    if host.location != Location::Local(port) {
        return None;
    }
    let guest = tables.guest(tenant, ip).cloned().unwrap_or_default();
    let hostname = guest.hostname.clone().unwrap_or_else(|| ip.to_string());
    let public = tables
        .nat()
        .static_of_vm(tenant, ip)
        .or_else(|| tables.nat().source(tenant).map(|s| s.ip));
    let keys = || {
        let list: Vec<String> = (0..guest.public_keys.len())
            .map(|i| format!("{i}=key-{i}"))
            .collect();
        (!list.is_empty()).then(|| list.join("\n") + "\n")
    };
    let line = |s: String| Some(s + "\n");
    let path = path.trim_end_matches('/');
    match path {
        "/latest" => line("meta-data/\nuser-data".into()),
        "/latest/meta-data" => {
            let mut items = vec!["instance-id", "local-ipv4", "local-hostname", "hostname"];
            if public.is_some() {
                items.push("public-ipv4");
            }
            if !guest.public_keys.is_empty() {
                items.push("public-keys/");
            }
            line(items.join("\n"))
        }
        "/latest/meta-data/instance-id" => guest.instance_id.clone().and_then(line),
        "/latest/meta-data/local-ipv4" => line(ip.to_string()),
        "/latest/meta-data/local-hostname" | "/latest/meta-data/hostname" => line(hostname),
        "/latest/meta-data/public-ipv4" => public.map(|p| p.to_string()).and_then(line),
        "/latest/meta-data/public-keys" => keys(),
        // CloudStack's path: every key.
        "/latest/public-keys" => {
            (!guest.public_keys.is_empty()).then(|| guest.public_keys.join("\n") + "\n")
        }
        "/latest/user-data" => guest.user_data.clone(),
        _ => {
            let key = path
                .strip_prefix("/latest/meta-data/public-keys/")?
                .split('/')
                .next()?
                .parse::<usize>()
                .ok()?;
            guest.public_keys.get(key).cloned().and_then(line)
        }
    }
}
