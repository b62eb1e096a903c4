//! VXLAN encapsulation (RFC 7348): the VTEP's prebuilt outer header is
//! copied into the headroom and the per-packet fields are filled in. The
//! inner frame is not touched. The outer UDP checksum is zero, as RFC 7348
//! section 5 recommends for IPv4 and as Linux's VXLAN device sends. An
//! inner IPv4 packet without DF that does not fit is cut first
//! (`fragment`), and each piece goes with the same outer header.
use super::fragment::Fragments;
use super::{DropReason, Event, Stage, Stats};
use crate::frame::Frame;
use crate::table::Tables;
use crate::wire::{checksum, ETH_HEADER_LEN, VXLAN_OVERHEAD};

/// Outer UDP source ports come from 49152-65535 (RFC 7348 section 5).
const SRC_PORT_BASE: u16 = 49152;
const SRC_PORT_MASK: u32 = 0x3fff;

pub(crate) fn run(
    tables: &Tables,
    frames: &mut [Frame<'_>],
    fragments: &mut Fragments,
    stats: &mut Stats,
) {
    let uplink = tables.uplink().map(|(id, _)| id);
    let overlay_ip_mtu = tables.overlay_ip_mtu().unwrap_or(usize::MAX);
    for frame in frames.iter_mut().filter(|f| f.meta.stage == Stage::Encap) {
        let Some(uplink) = uplink else {
            frame.meta.drop(stats, DropReason::NoUplink);
            continue;
        };
        let (Some(vtep), Some(tenant)) = (
            tables.vteps().get(frame.meta.to_vtep),
            tables.tenant(frame.meta.tenant),
        ) else {
            frame.meta.drop(stats, DropReason::StaleTables);
            continue;
        };
        let vni = tenant.vni;
        let hash = flow_hash(frame.data());
        if frame.len() - ETH_HEADER_LEN > overlay_ip_mtu {
            // l2 and l3 let through only IPv4 without DF (`fragment::allowed`).
            let encapsulate = |piece: &mut [u8]| {
                let inner_len = piece.len() - VXLAN_OVERHEAD;
                write_outer(piece, &vtep.template, inner_len, hash, vni);
            };
            if let Err(reason) = fragments.cut(frame, overlay_ip_mtu, uplink, encapsulate) {
                frame.meta.drop(stats, reason);
                continue;
            }
            stats.event(Event::Fragmented);
        }
        let inner_len = frame.len();
        if !frame.push_front(VXLAN_OVERHEAD) {
            frame.meta.drop(stats, DropReason::NoHeadroom);
            continue;
        }
        write_outer(frame.data_mut(), &vtep.template, inner_len, hash, vni);
        stats.event(Event::Encap);
        frame.meta.tx(uplink);
    }
}

#[inline]
fn write_outer(
    out: &mut [u8],
    template: &[u8; VXLAN_OVERHEAD],
    inner_len: usize,
    hash: u32,
    vni: u32,
) {
    // The caller made the room; one check, then constant offsets.
    let Some(outer): Option<&mut [u8; VXLAN_OVERHEAD]> = out
        .get_mut(..VXLAN_OVERHEAD)
        .and_then(|o| o.try_into().ok())
    else {
        return;
    };
    *outer = *template;
    let ip_len = (inner_len + 36) as u16;
    outer[16..18].copy_from_slice(&ip_len.to_be_bytes());
    let sum = checksum::update_u16(u16::from_be_bytes([outer[24], outer[25]]), 0, ip_len);
    outer[24..26].copy_from_slice(&sum.to_be_bytes());
    let src_port = SRC_PORT_BASE | (hash & SRC_PORT_MASK) as u16;
    outer[34..36].copy_from_slice(&src_port.to_be_bytes());
    outer[38..40].copy_from_slice(&((inner_len + 16) as u16).to_be_bytes());
    outer[46..49].copy_from_slice(&vni.to_be_bytes()[1..]);
}

/// A hash of the inner flow (IPv4 addresses, protocol and ports; MACs for
/// anything else), so one flow keeps one outer source port and flows spread
/// over the underlay's ECMP paths and the receiver's RSS queues.
#[inline]
pub fn flow_hash(frame: &[u8]) -> u32 {
    let word = |at: usize| -> u32 {
        frame
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_be_bytes)
    };
    let ipv4: Option<&[u8; 34]> = frame.get(..34).and_then(|h| h.try_into().ok());
    let (a, b, c) = if let Some(h) = ipv4.filter(|h| h[12..14] == [0x08, 0x00]) {
        let ihl = usize::from(h[14] & 0x0f) * 4;
        let proto = h[23];
        let fragment = super::flow::is_fragment(&h[14..]);
        let has_ports = !fragment && ihl >= 20 && (proto == 6 || proto == 17);
        let ports = if has_ports { word(14 + ihl) } else { 0 };
        (word(26), word(30), ports ^ u32::from(proto))
    } else {
        (word(0), word(4), word(8))
    };
    let mut h = ((u64::from(a) << 32) | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= u64::from(c).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 32;
    h as u32
}
