//! IPv4 header checks shared by the stages that read IPv4.
use super::DropReason;
use crate::wire::{checksum, Ipv4Packet};

/// A header that passed every check: the buffer holds at least
/// `total_len` bytes and the header checksum is right.
pub(crate) struct CheckedIpv4 {
    pub header_len: usize,
    pub total_len: usize,
}

/// Checks version, IHL, total length against the buffer, and the checksum.
/// Each failure has its own drop reason.
#[inline]
pub(crate) fn check(data: &[u8]) -> Result<CheckedIpv4, DropReason> {
    if data.len() < 20 {
        return Err(DropReason::Ipv4Truncated);
    }
    let packet = Ipv4Packet::new_unchecked(data);
    if packet.version() != 4 {
        return Err(DropReason::Ipv4BadVersion);
    }
    let header_len = usize::from(packet.header_len());
    if header_len < 20 {
        return Err(DropReason::Ipv4BadIhl);
    }
    if header_len > data.len() {
        return Err(DropReason::Ipv4Truncated);
    }
    let total_len = usize::from(packet.total_len());
    if total_len < header_len || total_len > data.len() {
        return Err(DropReason::Ipv4BadLength);
    }
    let header = data.get(..header_len).ok_or(DropReason::Ipv4Truncated)?;
    if checksum::sum(header) != 0xffff {
        return Err(DropReason::Ipv4BadChecksum);
    }
    Ok(CheckedIpv4 {
        header_len,
        total_len,
    })
}
