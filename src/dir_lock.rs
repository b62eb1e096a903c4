//! One xvrd per directory: an exclusive `flock` on `DIR/lock`, held for
//! as long as the returned file is open (the kernel drops it when the
//! process dies, `kill -9` included).
use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Creates `dir` if need be (readable by its owner only: it holds the
/// tenants' state or their connections) and locks it; `what` names it in
/// errors.
pub fn lock(dir: &Path, what: &str) -> Result<File, String> {
    let at = |e: std::io::Error| format!("{what} {}: {e}", dir.display());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(at)?;
    let lock = File::create(dir.join("lock")).map_err(at)?;
    // SAFETY: flock on a file descriptor this function owns.
    let locked = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if locked != 0 {
        return Err(format!(
            "{what} {} is in use by another xvrd",
            dir.display()
        ));
    }
    Ok(lock)
}
