//! How a host's work is split among workers: each owns some receive
//! queues of every port, and a block of each source-NAT range.
use xvr_dataplane::Tables;

/// The queues of a port with `queues` receive queues that worker `w` of
/// `workers` owns: w, w + workers, ...
pub fn queues_of_worker(w: usize, workers: usize, queues: u32) -> Vec<u32> {
    (w as u32..queues).step_by(workers).collect()
}

/// Each worker allocates source-NAT ports from its own block of a public
/// address's range (replies find their session's owner by port), so each
/// range needs a port per worker at least.
pub fn snat_split(tables: &Tables, workers: usize) -> Result<(), String> {
    for (ip, tenant) in tables.nat().public_addrs() {
        let Some(snat) = tables.nat().source(tenant).filter(|s| s.ip == ip) else {
            continue;
        };
        let ports = usize::from(snat.ports.1 - snat.ports.0) + 1;
        if ports < workers {
            return Err(format!(
                "nat.source {ip}: {ports} port(s) cannot be split among {workers} workers"
            ));
        }
    }
    Ok(())
}
