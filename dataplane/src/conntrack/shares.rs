//! Fair shares of one worker's session and fragment tables: each tenant
//! (a conntrack zone) may hold so many live sessions, open so many new
//! ones a second, and have so many packets in reassembly, so that one
//! tenant at its limit changes nothing for the others (a UDP flood to
//! 65,000 ports fills its own share, not the table).
use super::SetupError;
use crate::table::TenantId;

/// One tenant's limits in one worker; `None`: the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareLimits {
    /// Live sessions (default: a quarter of the worker's table).
    pub sessions: Option<u32>,
    /// New sessions a second (default `DEFAULT_NEW_PER_SECOND`).
    pub new_per_second: Option<u32>,
    /// Packets whose later fragments are awaited (default a quarter of
    /// the fragment table).
    pub fragments: Option<u32>,
}

/// New sessions a tenant may open per second and worker by default: far
/// above what a worker sets up for one tenant in normal use, far below
/// what a flood would take.
pub const DEFAULT_NEW_PER_SECOND: u32 = 20_000;

/// What one tenant holds now.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    sessions: u32,
    fragments: u32,
    /// The second `opened` counts in.
    second: u32,
    opened: u32,
}

#[derive(Debug, Default)]
pub(super) struct Shares {
    /// By zone (tenant id); zones beyond its end have the defaults.
    limits: Vec<ShareLimits>,
    held: Vec<Held>,
    /// Defaults from the worker's table sizes.
    default_sessions: u32,
    default_fragments: u32,
}

impl Shares {
    pub(super) fn new(max_sessions: u32, max_fragments: u32) -> Shares {
        Shares {
            limits: Vec::new(),
            held: Vec::new(),
            default_sessions: (max_sessions / 4).max(1),
            default_fragments: (max_fragments / 4).max(1),
        }
    }

    pub(super) fn set_limits(&mut self, limits: Vec<ShareLimits>) {
        self.limits = limits;
    }

    fn limits(&self, zone: TenantId) -> ShareLimits {
        self.limits
            .get(usize::from(zone))
            .copied()
            .unwrap_or_default()
    }

    /// What `zone` holds; always `Some` (the table grows to it).
    fn held(&mut self, zone: TenantId) -> Option<&mut Held> {
        let at = usize::from(zone);
        if self.held.len() <= at {
            // Grows once per new tenant id, never per packet in a steady
            // state.
            self.held.resize(at + 1, Held::default());
        }
        self.held.get_mut(at)
    }

    /// Whether `zone` may open a session at second `now`; counts it if so.
    pub(super) fn admit(&mut self, zone: TenantId, now: u32) -> Result<(), SetupError> {
        let limits = self.limits(zone);
        let max = limits.sessions.unwrap_or(self.default_sessions);
        let rate = limits.new_per_second.unwrap_or(DEFAULT_NEW_PER_SECOND);
        let Some(held) = self.held(zone) else {
            return Err(SetupError::TenantFull);
        };
        if held.sessions >= max {
            return Err(SetupError::TenantFull);
        }
        if held.second != now {
            held.second = now;
            held.opened = 0;
        }
        if held.opened >= rate {
            return Err(SetupError::TenantRate);
        }
        held.opened += 1;
        held.sessions += 1;
        Ok(())
    }

    /// A session of `zone` is gone.
    pub(super) fn closed(&mut self, zone: TenantId) {
        if let Some(held) = self.held(zone) {
            held.sessions = held.sessions.saturating_sub(1);
        }
    }

    /// Whether `zone` may have one more packet in reassembly.
    pub(super) fn fragment_room(&mut self, zone: TenantId) -> bool {
        let max = self
            .limits(zone)
            .fragments
            .unwrap_or(self.default_fragments);
        self.held(zone).is_some_and(|h| h.fragments < max)
    }

    /// `zone` has one more packet in reassembly (counted until the next
    /// `count_fragments`, which a full share or table runs after
    /// sweeping the expired ones).
    pub(super) fn fragment_added(&mut self, zone: TenantId) {
        if let Some(held) = self.held(zone) {
            held.fragments += 1;
        }
    }

    /// Sets each zone's count of packets in reassembly.
    pub(super) fn count_fragments(&mut self, zones: impl Iterator<Item = TenantId>) {
        for held in &mut self.held {
            held.fragments = 0;
        }
        for zone in zones {
            self.fragment_added(zone);
        }
    }

    pub(super) fn sessions_of(&self, zone: TenantId) -> u32 {
        self.held.get(usize::from(zone)).map_or(0, |h| h.sessions)
    }
}
