//! The live router on one host: the steering program attached to every
//! configured port, an AF_XDP socket per port sharing one UMEM, and a
//! poll-mode worker running the pipeline over them. (One worker and queue
//! 0 for now; xvrd will add threads, cores and queues.)
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use xvr_dataplane::io::xsk::{Socket, Umem};
use xvr_dataplane::table::PortRole;
use xvr_dataplane::worker::Worker;
use xvr_dataplane::{Stats, Tables};
use xvr_ebpf::{AttachMode, Steering};

/// UMEM chunks per worker.
const UMEM_FRAMES: u32 = 4096;

pub struct Router {
    // The worker (its sockets) goes before the program is detached.
    worker: Worker,
    steering: Steering,
}

/// Index of interface `name` in the current network namespace.
pub fn ifindex(name: &str) -> Result<u32, String> {
    let c_name = CString::new(name).map_err(|_| format!("bad interface name {name:?}"))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(format!(
            "interface {name}: {}",
            std::io::Error::last_os_error()
        )),
        index => Ok(index),
    }
}

impl Router {
    /// Attaches to every port of `tables` (interfaces of the same names in
    /// the calling thread's network namespace) and binds their sockets.
    /// On error, whatever was attached is detached again.
    pub fn start(tables: &Tables, mode: AttachMode) -> Result<Router, String> {
        let mut steering = Steering::load().map_err(|e| e.to_string())?;
        let mut umem = Umem::new(UMEM_FRAMES).map_err(|e| e.to_string())?;
        let mut sockets = Vec::new();
        for (id, port) in tables.ports().iter().enumerate() {
            let index = ifindex(&port.name)?;
            match port.role {
                PortRole::Uplink { ip, .. } => steering.add_local_vtep(ip),
                PortRole::Vm { .. } => steering.add_vm_port(index),
            }
            .map_err(|e| e.to_string())?;
            steering
                .attach(&port.name, mode)
                .map_err(|e| e.to_string())?;
            let socket = Socket::bind(&mut umem, &port.name, 0).map_err(|e| e.to_string())?;
            steering
                .set_socket(index, 0, socket.fd())
                .map_err(|e| e.to_string())?;
            sockets.push((id as u16, socket));
        }
        let worker = Worker::new(umem, sockets, tables.ports().len());
        Ok(Router { worker, steering })
    }

    /// Forwards on a worker thread while `f` runs; returns what `f`
    /// returned and the pipeline's counters.
    pub fn run_while<T>(&mut self, tables: &Tables, f: impl FnOnce() -> T) -> (T, Stats) {
        let stop = AtomicBool::new(false);
        let worker = &mut self.worker;
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                worker.run(tables, &stop);
                worker.pipeline.stats.clone()
            });
            let result = f();
            stop.store(true, Ordering::Relaxed);
            (result, handle.join().expect("worker thread"))
        })
    }

    pub fn steering(&self) -> &Steering {
        &self.steering
    }
}
