//! What xvrd has acknowledged, on disk: a snapshot of the desired state
//! and a journal of the commits made since, in `--state-dir`. A write is
//! durable before xvrd answers it: the journal line is written and
//! fsynced; a snapshot is written to a temporary file, fsynced, renamed
//! over the old one, and the directory fsynced. A crash at any point
//! leaves the last snapshot and whole journal lines (a line cut short by
//! the crash was never acknowledged and is dropped). On start the
//! snapshot and then the journal replay to the state last acknowledged.
//!
//! Both files carry a format version; one this xvrd cannot read, or a
//! corrupt one, stops the start with a message naming the file.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use xvr_control::change::{self, Change};
use xvr_control::State;
use xvr_dataplane::Tables;

/// The version of the files this xvrd writes and reads.
pub const FORMAT: u32 = 1;
/// Journal lines after which a commit writes a new snapshot instead.
const COMPACT_AFTER: usize = 1000;

const SNAPSHOT: &str = "state.json";
const JOURNAL: &str = "journal.jsonl";
/// The `--config` state that seeded the store, as it was then.
const SEED: &str = "seed.json";

/// The state directory, locked for this process.
pub struct StateStore {
    dir: PathBuf,
    journal: File,
    journal_lines: usize,
    /// Held for the store's life: a second xvrd on the same directory is
    /// refused rather than interleaving its writes.
    _lock: File,
}

/// What the store held at start.
pub struct Saved {
    pub state: State,
    /// The generation of the last acknowledged write.
    pub generation: u32,
}

#[derive(Serialize, Deserialize)]
struct Snapshot<S> {
    format: u32,
    generation: u32,
    state: S,
}

#[derive(Serialize, Deserialize)]
struct Entry<C> {
    format: u32,
    generation: u32,
    /// As the commit request gave them (a list of `Change`s).
    changes: C,
}

impl StateStore {
    /// Opens (creating it if need be) and locks `dir`, and reads what it
    /// holds: `None` for an empty directory.
    pub fn open(dir: &Path) -> Result<(StateStore, Option<Saved>), String> {
        let at = |e: std::io::Error| format!("state directory {}: {e}", dir.display());
        let lock = crate::dir_lock::lock(dir, "state directory")?;
        let saved = read(dir)?;
        let journal_path = dir.join(JOURNAL);
        let (journal_lines, valid_len) = match &saved {
            Some((_, lines, len)) => (*lines, *len),
            None => (0, 0),
        };
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(at)?;
        // A line cut short by a crash was never acknowledged: drop it, so
        // the next line starts clean.
        journal.set_len(valid_len).map_err(at)?;
        let store = StateStore {
            dir: dir.to_path_buf(),
            journal,
            journal_lines,
            _lock: lock,
        };
        Ok((store, saved.map(|(saved, _, _)| saved)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `state` at `generation` the saved state: a new snapshot,
    /// and an empty journal.
    pub fn save(&mut self, state: &State, generation: u32) -> std::io::Result<()> {
        // Written from the running state itself, not a copy of it.
        let snapshot = Snapshot {
            format: FORMAT,
            generation,
            state,
        };
        write_durably(&self.dir, SNAPSHOT, &snapshot)?;
        self.journal.set_len(0)?;
        self.journal.sync_all()?;
        self.journal_lines = 0;
        Ok(())
    }

    /// Records a commit of `changes` that makes `generation`, made on
    /// `running` (at `running_generation`). Once the journal is long,
    /// `running` becomes the snapshot first.
    pub fn record(
        &mut self,
        changes: &Value,
        generation: u32,
        running: &State,
        running_generation: u32,
    ) -> std::io::Result<()> {
        if self.journal_lines >= COMPACT_AFTER {
            self.save(running, running_generation)?;
        }
        // Written from the request's own value, not a copy of it.
        let entry = Entry {
            format: FORMAT,
            generation,
            changes,
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        self.journal.write_all(&line)?;
        self.journal.sync_data()?;
        self.journal_lines += 1;
        Ok(())
    }
}

/// Writes `value` as JSON to `dir/name` so that a crash leaves either the
/// old file or the new one whole: a temporary file, fsynced, renamed over
/// it, and the directory fsynced.
fn write_durably(dir: &Path, name: &str, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    serde_json::to_writer(&mut file, value)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// The saved state with the journal replayed, the journal's whole lines
/// and their length in bytes.
fn read(dir: &Path) -> Result<Option<(Saved, usize, u64)>, String> {
    let path = dir.join(SNAPSHOT);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let snapshot: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: corrupt ({e}); xvrd did not start", path.display()))?;
    check_format(&path, &snapshot)?;
    let snapshot: Snapshot<State> = serde_json::from_value(snapshot)
        .map_err(|e| format!("{}: corrupt ({e}); xvrd did not start", path.display()))?;
    let mut saved = Saved {
        state: snapshot.state,
        generation: snapshot.generation,
    };
    let path = dir.join(JOURNAL);
    let journal = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let (mut lines, mut len) = (0, 0u64);
    // Only whole lines: the last may have been cut by a crash.
    for line in journal.split_inclusive(|&b| b == b'\n') {
        if line.last() != Some(&b'\n') {
            break;
        }
        let at = || format!("{} line {}", path.display(), lines + 1);
        let entry: Value = serde_json::from_slice(line)
            .map_err(|e| format!("{}: corrupt ({e}); xvrd did not start", at()))?;
        check_format(Path::new(&at()), &entry)?;
        let entry: Entry<Value> = serde_json::from_value(entry)
            .map_err(|e| format!("{}: corrupt ({e}); xvrd did not start", at()))?;
        let changes = Vec::<Change>::deserialize(&entry.changes)
            .map_err(|e| format!("{}: corrupt ({e}); xvrd did not start", at()))?;
        saved.state = change::apply_changes(&saved.state, &changes).map_err(|errors| {
            format!(
                "{}: does not apply to the saved state ({}); xvrd did not start",
                at(),
                errors.join("; ")
            )
        })?;
        saved.generation = entry.generation;
        lines += 1;
        len += line.len() as u64;
    }
    Ok(Some((saved, lines, len)))
}

/// Refuses a file of another format than this xvrd's.
fn check_format(path: &Path, value: &Value) -> Result<(), String> {
    match value.get("format").and_then(Value::as_u64) {
        Some(f) if f == u64::from(FORMAT) => Ok(()),
        Some(f) if f > u64::from(FORMAT) => Err(format!(
            "{}: written by a newer xvrd (format {f}; this one reads {FORMAT}); xvrd did not start",
            path.display()
        )),
        Some(f) => Err(format!(
            "{}: format {f} is not one this xvrd reads ({FORMAT}); xvrd did not start",
            path.display()
        )),
        None => Err(format!(
            "{}: corrupt (no format version); xvrd did not start",
            path.display()
        )),
    }
}

/// The state xvrd starts from, with its store: the saved one, or on an
/// empty store `config`'s, saved first. A `config` on a store it did not
/// seed as it now reads, and that differs from the saved state too, is
/// refused: which one the operator means is theirs to say. Restarting
/// with the same command line resumes what was committed since.
/// Returns its tables too, built once.
pub fn resume(dir: &Path, config: Option<&Path>) -> Result<(StateStore, State, Tables), String> {
    let (mut store, saved) = StateStore::open(dir)?;
    let config = match config {
        Some(path) => Some((path, crate::read_state(path)?)),
        None => None,
    };
    let Some(saved) = saved else {
        let Some((path, state)) = config else {
            return Err(format!(
                "no state saved in {} and no --config to start from",
                dir.display()
            ));
        };
        // Only a state that builds is saved.
        let tables =
            crate::build_tables(&state).map_err(|e| format!("{}:\n{e}", path.display()))?;
        let at = |e: std::io::Error| format!("state directory {}: {e}", dir.display());
        write_durably(dir, SEED, &state).map_err(at)?;
        store.save(&state, 0).map_err(at)?;
        return Ok((store, state, tables));
    };
    if let Some((path, state)) = config {
        let seed = fs::read_to_string(dir.join(SEED))
            .ok()
            .and_then(|text| serde_json::from_str::<State>(&text).ok());
        if state != saved.state && seed.as_ref() != Some(&state) {
            return Err(format!(
                "--config {} differs from the state saved in {} (generation {}) and from \
                 the file that seeded it: start without --config to resume the saved state, \
                 or remove {} to start from the file",
                path.display(),
                dir.display(),
                saved.generation,
                dir.display()
            ));
        }
    }
    xvr_dataplane::table::resume_generations_after(saved.generation);
    let tables = crate::build_tables(&saved.state)
        .map_err(|e| format!("the state saved in {}:\n{e}", dir.display()))?;
    Ok((store, saved.state, tables))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> State {
        let text = include_str!("../examples/two-tenants.json");
        State::from_json(text).unwrap()
    }

    fn route(prefix: &str) -> Value {
        json!([{"action": "add", "table": "routes",
                "entry": {"tenant": "acme", "prefix": prefix, "next_hop": "blackhole"}}])
    }

    fn commit(store: &mut StateStore, state: &State, generation: u32, prefix: &str) -> State {
        let changes = route(prefix);
        let list = Vec::<Change>::deserialize(&changes).unwrap();
        let next = change::apply_changes(state, &list).unwrap();
        store
            .record(&changes, generation, state, generation - 1)
            .unwrap();
        next
    }

    #[test]
    fn a_snapshot_and_its_journal_come_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, saved) = StateStore::open(dir.path()).unwrap();
        assert!(saved.is_none());
        let state = example();
        store.save(&state, 3).unwrap();
        let state = commit(&mut store, &state, 4, "10.7.0.0/16");
        let state = commit(&mut store, &state, 5, "10.8.0.0/16");
        drop(store);
        let (_, saved) = StateStore::open(dir.path()).unwrap();
        let saved = saved.unwrap();
        assert_eq!(saved.generation, 5);
        assert_eq!(saved.state, state);
    }

    #[test]
    fn a_journal_line_cut_by_a_crash_is_dropped_and_the_next_starts_clean() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = StateStore::open(dir.path()).unwrap();
        let state = example();
        store.save(&state, 1).unwrap();
        let after_one = commit(&mut store, &state, 2, "10.7.0.0/16");
        drop(store);
        // A crash in the middle of writing the next line.
        let mut journal = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL))
            .unwrap();
        journal
            .write_all(br#"{"format":1,"generation":3,"chan"#)
            .unwrap();
        drop(journal);
        let (mut store, saved) = StateStore::open(dir.path()).unwrap();
        let saved = saved.unwrap();
        assert_eq!((saved.generation, &saved.state), (2, &after_one));
        let after_two = commit(&mut store, &saved.state, 3, "10.77.0.0/16");
        drop(store);
        let (_, saved) = StateStore::open(dir.path()).unwrap();
        assert_eq!(saved.unwrap().state, after_two);
    }

    #[test]
    fn a_long_journal_is_folded_into_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = StateStore::open(dir.path()).unwrap();
        let mut state = example();
        store.save(&state, 1).unwrap();
        for i in 0..COMPACT_AFTER + 2 {
            let prefix = format!("10.{}.{}.0/24", 100 + i / 256, i % 256);
            state = commit(&mut store, &state, 2 + i as u32, &prefix);
        }
        let journal = fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert_eq!(journal.lines().count(), 2, "folded once, then two lines");
        drop(store);
        let (_, saved) = StateStore::open(dir.path()).unwrap();
        assert_eq!(saved.unwrap().state, state);
    }

    #[test]
    fn corrupt_or_newer_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = StateStore::open(dir.path()).unwrap();
        store.save(&example(), 1).unwrap();
        drop(store);
        let snapshot = dir.path().join(SNAPSHOT);
        let good = fs::read_to_string(&snapshot).unwrap();
        fs::write(&snapshot, &good[..good.len() / 2]).unwrap();
        let error = StateStore::open(dir.path()).err().unwrap();
        assert!(error.contains("state.json: corrupt"), "{error}");
        fs::write(&snapshot, good.replacen("\"format\":1", "\"format\":2", 1)).unwrap();
        let error = StateStore::open(dir.path()).err().unwrap();
        assert!(
            error.contains("written by a newer xvrd (format 2"),
            "{error}"
        );
    }

    #[test]
    fn a_second_process_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_held, _) = StateStore::open(dir.path()).unwrap();
        let error = StateStore::open(dir.path()).err().unwrap();
        assert!(error.contains("in use by another xvrd"), "{error}");
    }
}
