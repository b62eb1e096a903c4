//! Pinning threads to cores (workers, and the benchmark's generators).

/// Whether this process may run on `core` (it exists and is in our
/// affinity mask).
pub fn check_core(core: usize) -> Result<(), String> {
    // SAFETY: reads our own affinity mask into a zeroed set.
    let allowed = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
            && core < libc::CPU_SETSIZE as usize
            && libc::CPU_ISSET(core, &set)
    };
    match allowed {
        true => Ok(()),
        false => Err(format!(
            "cores: core {core} does not exist or is not allowed"
        )),
    }
}

/// Pins the calling thread to `core` (checked by `check_core`).
pub fn pin_to(core: usize) {
    // SAFETY: sets the calling thread's affinity to one core.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
