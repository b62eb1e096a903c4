//! Where the workers' sessions outlive xvrd: `--session-dir` (tmpfs,
//! `/dev/shm/xvr` by default) holds one session file per worker
//! (`xvr_dataplane::conntrack::SessionFile`), written by the worker as
//! its sessions open, change state and close. On start each worker takes
//! back what its predecessor of the same number saved, then writes on in
//! a new file. The directory is locked by one xvrd at a time.
use std::fs::File;
use std::path::{Path, PathBuf};
use xvr_dataplane::conntrack::{Resumed, SessionFile, Writer};

pub const DEFAULT_DIR: &str = "/dev/shm/xvr";

pub struct SessionDir {
    dir: PathBuf,
    _lock: File,
}

impl SessionDir {
    /// Creates (if need be) and locks `dir`.
    pub fn open(dir: &Path) -> Result<SessionDir, String> {
        let lock = crate::dir_lock::lock(dir, "session directory")?;
        Ok(SessionDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    fn file_of(&self, worker: usize) -> PathBuf {
        self.dir.join(format!("worker-{worker}.sessions"))
    }

    /// What worker `worker` of `workers` saved last time, and its new
    /// file with room for `capacity` sessions.
    pub fn resume(&self, worker: usize, workers: usize, capacity: u32) -> Result<Resumed, String> {
        let path = self.file_of(worker);
        let writer = Writer {
            worker: worker as u16,
            workers: workers as u16,
        };
        SessionFile::resume(&path, capacity, writer)
            .map_err(|e| format!("session file {}: {e}", path.display()))
    }

    /// Removes the files of workers `workers` and beyond (a previous
    /// process ran more workers; their sessions cannot be placed).
    /// Returns the paths removed.
    pub fn forget_workers_from(&self, workers: usize) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for worker in workers.. {
            let path = self.file_of(worker);
            if std::fs::remove_file(&path).is_err() {
                break;
            }
            removed.push(path);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sessions_are_for_the_owners_eyes_and_one_xvrd() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sessions");
        let store = SessionDir::open(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let mut resumed = store.resume(0, 1, 16).unwrap();
        resumed.file.publish().unwrap();
        assert_eq!(mode(&dir.join("worker-0.sessions")), 0o600);
        let second = SessionDir::open(&dir).err().unwrap();
        assert!(second.contains("in use by another xvrd"), "{second}");
    }
}
