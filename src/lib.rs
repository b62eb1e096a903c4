//! The `xvr` binaries' shared code: the live router that ties the
//! steering program, AF_XDP sockets and workers together.
pub mod affinity;
pub mod dir_lock;
pub mod fast_path;
pub mod flow_offload;
pub mod live_ports;
pub mod logging;
pub mod mailbox;
pub mod metrics;
pub mod netdev;
pub mod netlink;
pub mod ops;
pub mod router;
pub mod segmenter;
pub mod session_store;
pub mod split;
pub mod state_store;
pub mod supervise;
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
    let state = read_state(path)?;
    let tables = build_tables(&state).map_err(|e| format!("{}:\n{e}", path.display()))?;
    Ok((state, tables))
}

/// Reads a state file; errors name the file.
pub fn read_state(path: &Path) -> Result<State, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    State::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The tables of `state`, each uplink with its interface's MTU (see
/// `with_interface_mtus`); every invalid field in the error.
pub fn build_tables(state: &State) -> Result<Tables, String> {
    with_interface_mtus(state)
        .build()
        .map_err(|e| e.to_string())
}

/// `state` as the tables are built from it: an uplink without an `mtu`
/// takes its interface's (a 1400-byte underlay left unsaid would
/// otherwise black-hole DF packets between 1351 and 1450 bytes, which
/// VMs were told fit); without such an interface, the default.
pub fn with_interface_mtus(state: &State) -> State {
    let mut state = state.clone();
    for port in &mut state.ports {
        if let xvr_control::PortConfig::Uplink { name, mtu, .. } = port {
            if mtu.is_none() {
                let range = xvr_control::MIN_UPLINK_MTU..=xvr_control::MAX_UPLINK_MTU;
                *mtu = netdev::interface_mtu(name).map(|m| m.clamp(*range.start(), *range.end()));
            }
        }
    }
    state
}
