//! The `xvr` binaries' shared code: the live router that ties the
//! steering program, AF_XDP sockets and workers together.
pub mod affinity;
pub mod fast_path;
pub mod live_ports;
pub mod ops;
pub mod router;
pub mod trace;

use std::path::Path;
use xvr_control::State;
use xvr_dataplane::Tables;

/// Reads a state file and builds its tables; errors name the file and,
/// for invalid states, every offending field.
pub fn load_tables(path: &Path) -> Result<Tables, String> {
    load_state(path).map(|(_, tables)| tables)
}

/// `load_tables`, keeping the state too (for settings outside the tables,
/// such as connection tracking).
pub fn load_state(path: &Path) -> Result<(State, Tables), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let state = State::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let tables = state
        .build()
        .map_err(|e| format!("{}:\n{e}", path.display()))?;
    Ok((state, tables))
}
