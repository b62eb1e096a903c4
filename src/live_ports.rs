//! Ports and public addresses that change while xvrd runs.
//!
//! A commit that adds a port makes the interface ready before the new
//! tables are current: each worker binds sockets to its queues of it (on
//! its own UMEM, at its next report), the steering program's XSKMAP points
//! at them, the program's maps learn the port's role, and the program is
//! attached. A commit that removes a port undoes that after the tables
//! without it are current: roles first, then the XSKMAP entries, the
//! program, and last the sockets, whose chunks go back to their UMEM. So
//! a frame of a new port finds its socket and port, and a frame of an old
//! one finds nothing that dangles. Public addresses follow the same
//! order: added to the steering map before, removed after.
use crate::mailbox::{Live, PortRequest};
use crate::netdev::interface;
use crate::split::queues_of_worker;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xvr_dataplane::table::PortRole;
use xvr_dataplane::Tables;
use xvr_ebpf::{AttachMode, Steering};

/// How long a removed port's frames may still be in flight in the kernel
/// after its XSKMAP entries are gone and the program detached (a NAPI
/// poll: microseconds), before its sockets' rings are read back.
const QUIESCE: Duration = Duration::from_millis(20);

/// How long a queue may stay busy after its socket went.
const BUSY_FOR: Duration = Duration::from_secs(2);

pub struct LivePorts {
    steering: Arc<Mutex<Steering>>,
    live: Arc<Live>,
    /// Each port's interface index, by name.
    ifindexes: HashMap<String, u32>,
    workers: usize,
    mode: AttachMode,
    /// The fast path runs in tc: added ports get the tc program too.
    tc: bool,
}

/// What the steering program must know of a set of tables.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Roles {
    /// By interface name.
    vm_ports: BTreeSet<String>,
    local_vteps: BTreeSet<Ipv4Addr>,
    public_addrs: BTreeSet<Ipv4Addr>,
}

impl Roles {
    fn of(tables: &Tables) -> Roles {
        let mut roles = Roles::default();
        for port in tables.ports() {
            match port.role {
                PortRole::Vm { .. } => {
                    roles.vm_ports.insert(port.name.clone());
                }
                PortRole::Uplink { ip, .. } => {
                    roles.local_vteps.insert(ip);
                }
            }
        }
        roles.public_addrs = tables.nat().public_addrs().map(|(ip, _)| ip).collect();
        roles
    }
}

/// What a change of tables does to interfaces and the steering maps.
#[derive(Debug)]
pub struct PortPlan {
    before: Roles,
    after: Roles,
    /// Interfaces to attach to: name, index and receive queues.
    added: Vec<(String, u32, u32)>,
    removed: Vec<String>,
}

impl PortPlan {
    /// Whether the change touches the data path's interfaces or maps.
    pub fn is_empty(&self) -> bool {
        self.before == self.after && self.added.is_empty() && self.removed.is_empty()
    }
}

impl LivePorts {
    pub fn new(
        steering: Arc<Mutex<Steering>>,
        live: Arc<Live>,
        ifindexes: HashMap<String, u32>,
        workers: usize,
        mode: AttachMode,
    ) -> LivePorts {
        LivePorts {
            steering,
            live,
            ifindexes,
            workers,
            mode,
            tc: false,
        }
    }

    pub fn with_tc(mut self, tc: bool) -> LivePorts {
        self.tc = tc;
        self
    }

    /// What going from `old` to `new` takes; an error (naming the field
    /// it is about, `ports` or `nat`) if it cannot be done: an added
    /// port's interface is missing or has too few queues, or a source-NAT
    /// range cannot be split among the workers.
    pub fn plan(&self, old: &Tables, new: &Tables) -> Result<PortPlan, (&'static str, String)> {
        crate::split::snat_split(new, self.workers).map_err(|e| ("nat", e))?;
        let names =
            |t: &Tables| -> BTreeSet<String> { t.ports().iter().map(|p| p.name.clone()).collect() };
        let (was, is) = (names(old), names(new));
        let mut added = Vec::new();
        for name in is.difference(&was) {
            let (index, queues) = interface(name, self.workers).map_err(|e| ("ports", e))?;
            added.push((name.clone(), index, queues));
        }
        Ok(PortPlan {
            before: Roles::of(old),
            after: Roles::of(new),
            added,
            removed: was.difference(&is).cloned().collect(),
        })
    }

    /// Readies what `plan` adds, before its tables are current. All or
    /// nothing: on error, what was done is undone.
    pub fn prepare(&mut self, plan: &PortPlan) -> Result<(), String> {
        let result = self.try_prepare(plan);
        if result.is_err() {
            self.undo_prepare(plan);
        }
        result
    }

    fn try_prepare(&mut self, plan: &PortPlan) -> Result<(), String> {
        for (name, index, queues) in &plan.added {
            self.ifindexes.insert(name.clone(), *index);
            let bound = self.bind(name, *index, *queues)?;
            let mut steering = self.steering.lock().expect("steering");
            for (queue, fd) in bound {
                steering
                    .set_socket(*index, queue, fd)
                    .map_err(|e| e.to_string())?;
            }
        }
        let (before, after) = (&plan.before, &plan.after);
        let mut steering = self.steering.lock().expect("steering");
        let e = |e: xvr_ebpf::Error| e.to_string();
        for name in after.vm_ports.difference(&before.vm_ports) {
            steering.add_vm_port(self.ifindexes[name]).map_err(e)?;
        }
        for ip in after.local_vteps.difference(&before.local_vteps) {
            steering.add_local_vtep(*ip).map_err(e)?;
        }
        for ip in after.public_addrs.difference(&before.public_addrs) {
            steering.add_public_addr(*ip).map_err(e)?;
        }
        for (name, _, _) in &plan.added {
            if self.tc {
                steering.attach_tc(name).map_err(e)?;
            }
            steering.attach(name, self.mode).map_err(e)?;
        }
        Ok(())
    }

    /// Has every worker bind its queues of `name`; returns every (queue,
    /// socket). A queue whose socket was retired lately stays busy until
    /// the kernel's deferred release runs: tried again for a while.
    fn bind(&self, name: &str, index: u32, queues: u32) -> Result<Vec<(u32, RawFd)>, String> {
        // With the fast path in tc, the port's frames may come back from
        // the segmenter tagged with its slot.
        let tag = match self.tc {
            true => {
                let mut steering = self.steering.lock().expect("steering");
                steering.slot(index).map_err(|e| e.to_string())? as u16 + 1
            }
            false => 0,
        };
        let deadline = Instant::now() + BUSY_FOR;
        loop {
            let answers = self.live.ports(|w| PortRequest::Bind {
                interface: name.to_string(),
                queues: queues_of_worker(w, self.workers, queues),
                tag,
            })?;
            let mut bound = Vec::new();
            let mut failed = None;
            for answer in answers {
                match answer {
                    Ok(sockets) => bound.extend(sockets),
                    Err(e) => failed = Some(e),
                }
            }
            let Some(e) = failed else {
                return Ok(bound);
            };
            // All or none: the workers that bound let go again.
            self.live.ports(|_| PortRequest::Unbind {
                interface: name.to_string(),
            })?;
            if e.kind() != std::io::ErrorKind::ResourceBusy || Instant::now() > deadline {
                return Err(e.to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Takes back whatever `prepare` may have done (removing what is not
    /// there is no error).
    fn undo_prepare(&mut self, plan: &PortPlan) {
        let _ = self.remove_roles(&plan.after, &plan.before);
        for (name, _, _) in &plan.added {
            let _ = self.retire(name);
        }
    }

    /// Takes down what `plan` removes, once its tables are current.
    pub fn finish(&mut self, plan: &PortPlan) -> Result<(), String> {
        self.remove_roles(&plan.before, &plan.after)?;
        for name in &plan.removed {
            self.retire(name)?;
        }
        Ok(())
    }

    /// Takes out of the steering maps the roles of `from` that `kept` has
    /// not. Every one is tried; the first error is returned.
    fn remove_roles(&self, from: &Roles, kept: &Roles) -> Result<(), String> {
        let mut steering = self.steering.lock().expect("steering");
        let mut results = Vec::new();
        for name in from.vm_ports.difference(&kept.vm_ports) {
            if let Some(&index) = self.ifindexes.get(name) {
                results.push(steering.remove_vm_port(index));
            }
        }
        for ip in from.local_vteps.difference(&kept.local_vteps) {
            results.push(steering.remove_local_vtep(*ip));
        }
        for ip in from.public_addrs.difference(&kept.public_addrs) {
            results.push(steering.remove_public_addr(*ip));
        }
        let first_error = results.into_iter().find_map(Result::err);
        first_error.map_or(Ok(()), |e| Err(e.to_string()))
    }

    /// Stops steering `name`'s frames to sockets, detaches the program
    /// and has the workers retire their sockets on it.
    fn retire(&mut self, name: &str) -> Result<(), String> {
        {
            let mut steering = self.steering.lock().expect("steering");
            if let Some(index) = self.ifindexes.remove(name) {
                steering.remove_sockets(index).map_err(|e| e.to_string())?;
            }
            steering.detach(name).map_err(|e| e.to_string())?;
        }
        std::thread::sleep(QUIESCE);
        let answers = self.live.ports(|_| PortRequest::Unbind {
            interface: name.to_string(),
        })?;
        answers
            .into_iter()
            .try_for_each(|a| a.map(|_| ()).map_err(|e| e.to_string()))
    }
}
