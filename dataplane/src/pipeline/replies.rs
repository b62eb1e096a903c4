//! Fair shares of the router's own answers: each tenant may have so many
//! ICMP errors and ARP replies sent for it a second, per worker (as
//! Linux's icmp_ratelimit), so a tenant that provokes them by the million
//! gets its share and no more, and never another tenant's.
use super::{DropReason, Reply, Stats, Verdict};
use crate::frame::Frame;
use crate::table::{Tables, TenantId};

/// ICMP errors a tenant may have sent a second by default (Linux sends
/// at most 1000 a second in all).
pub const DEFAULT_ICMP_ERRORS_PER_SECOND: u32 = 1000;
/// ARP replies a tenant may have sent a second by default.
pub const DEFAULT_ARP_REPLIES_PER_SECOND: u32 = 1000;

#[derive(Debug, Default)]
pub(super) struct Replies {
    /// By tenant id: its share and what it has used of it.
    tenants: Vec<Share>,
    /// The tables generation the shares' maxima were read from.
    limits_of: Option<u32>,
}

/// A tenant's ICMP errors and ARP replies sent in `second`, and how many
/// it may have.
#[derive(Debug, Clone, Copy)]
struct Share {
    second: u32,
    icmp: u32,
    arp: u32,
    max_icmp: u32,
    max_arp: u32,
}

impl Share {
    const DEFAULT: Share = Share {
        second: 0,
        icmp: 0,
        arp: 0,
        max_icmp: DEFAULT_ICMP_ERRORS_PER_SECOND,
        max_arp: DEFAULT_ARP_REPLIES_PER_SECOND,
    };
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
        if self.limits_of != Some(tables.generation()) {
            self.read_limits(tables);
        }
        for frame in frames.iter_mut() {
            let (Some(reply), Verdict::Tx(_)) = (frame.meta.reply, frame.meta.verdict) else {
                continue;
            };
            let Some(share) = self.share(frame.meta.tenant) else {
                continue;
            };
            if share.second != now {
                (share.second, share.icmp, share.arp) = (now, 0, 0);
            }
            let (count, max, reason) = match reply {
                Reply::IcmpError => (
                    &mut share.icmp,
                    share.max_icmp,
                    DropReason::IcmpErrorRateLimited,
                ),
                Reply::Arp => (
                    &mut share.arp,
                    share.max_arp,
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

    /// The share of tenant `id`; one with the default maxima for an id
    /// the tables do not name (made once, not per packet).
    #[inline]
    fn share(&mut self, id: TenantId) -> Option<&mut Share> {
        let at = usize::from(id);
        if self.tenants.len() <= at {
            self.tenants.resize(at + 1, Share::DEFAULT);
        }
        self.tenants.get_mut(at)
    }

    /// Takes each tenant's maxima from new tables; counts carry over
    /// (tenant ids are stable).
    #[cold]
    fn read_limits(&mut self, tables: &Tables) {
        self.limits_of = Some(tables.generation());
        let tenants = tables.tenants();
        if self.tenants.len() < tenants.len() {
            self.tenants.resize(tenants.len(), Share::DEFAULT);
        }
        for (share, tenant) in self.tenants.iter_mut().zip(tenants) {
            share.max_icmp = tenant
                .limits
                .icmp_errors_per_second
                .unwrap_or(DEFAULT_ICMP_ERRORS_PER_SECOND);
            share.max_arp = tenant
                .limits
                .arp_replies_per_second
                .unwrap_or(DEFAULT_ARP_REPLIES_PER_SECOND);
        }
    }
}
