//! Fair shares of the router's own answers: each tenant may have so many
//! ICMP errors and ARP replies sent for it a second, per worker (as
//! Linux's icmp_ratelimit), so a tenant that provokes them by the million
//! gets its share and no more, and never another tenant's.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]
use super::{DropReason, Reply, Stats, Verdict};
use crate::frame::Frame;
use crate::table::Tables;

/// ICMP errors a tenant may have sent a second by default (Linux sends
/// at most 1000 a second in all).
pub const DEFAULT_ICMP_ERRORS_PER_SECOND: u32 = 1000;
/// ARP replies a tenant may have sent a second by default.
pub const DEFAULT_ARP_REPLIES_PER_SECOND: u32 = 1000;

#[derive(Debug, Default)]
pub(super) struct Replies {
    /// By tenant id: the second counted, and ICMP errors and ARP replies
    /// sent in it.
    sent: Vec<(u32, u32, u32)>,
}

impl Replies {
    /// Drops the answers in `frames` beyond their tenant's share.
    pub(super) fn police(
        &mut self,
        tables: &Tables,
        frames: &mut [Frame<'_>],
        now: u32,
        stats: &mut Stats,
    ) {
        for frame in frames.iter_mut() {
            let (Some(reply), Verdict::Tx(_)) = (frame.meta.reply, frame.meta.verdict) else {
                continue;
            };
            let tenant = frame.meta.tenant;
            let limits = tables
                .tenants()
                .get(usize::from(tenant))
                .map(|t| t.limits)
                .unwrap_or_default();
            let at = usize::from(tenant);
            if self.sent.len() <= at {
                // Once per new tenant id, not per packet in a steady state.
                self.sent.resize(at + 1, (0, 0, 0));
            }
            let Some((second, icmp, arp)) = self.sent.get_mut(at) else {
                continue;
            };
            if *second != now {
                (*second, *icmp, *arp) = (now, 0, 0);
            }
            let (count, max, reason) = match reply {
                Reply::IcmpError => (
                    icmp,
                    limits
                        .icmp_errors_per_second
                        .unwrap_or(DEFAULT_ICMP_ERRORS_PER_SECOND),
                    DropReason::IcmpErrorRateLimited,
                ),
                Reply::Arp => (
                    arp,
                    limits
                        .arp_replies_per_second
                        .unwrap_or(DEFAULT_ARP_REPLIES_PER_SECOND),
                    DropReason::ArpReplyRateLimited,
                ),
            };
            if *count >= max {
                frame.meta.drop(stats, reason);
            } else {
                *count += 1;
            }
        }
    }
}
