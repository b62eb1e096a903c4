//! ICMP errors and the packet they quote (RFC 792: the quoted IPv4
//! header and at least the first 8 bytes of its payload, which hold the
//! ports or the echo identifier). Offsets are into the outer IPv4 packet,
//! bounds-checked as in `ipv4`.
use super::ipv4::{self, field::MIN_HEADER_LEN, ICMP, TCP, UDP};
use super::transport::field::*;
use super::transport::{
    Malformed, ICMP_DEST_UNREACHABLE, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED,
};
use super::u16_at;
use std::net::Ipv4Addr;

/// Whether IPv4 packet `ip` (header `header_len` bytes) is an ICMP error
/// that quotes a packet.
pub fn is_icmp_error(ip: &[u8], header_len: usize) -> bool {
    ipv4::protocol(ip) == ICMP
        && matches!(
            ip.get(header_len + ICMP_TYPE),
            Some(&(ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM))
        )
}

/// The packet an ICMP error quotes: its flow as it was sent, and where
/// its parts are in the outer packet.
pub struct Quote {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    /// The quoted IPv4 header.
    pub quote: usize,
    /// The quoted transport header.
    pub q_l4: usize,
    /// Its ports (for ICMP echo, both the identifier).
    pub sport_at: usize,
    pub dport_at: usize,
}

impl Quote {
    pub fn parse(ip: &[u8], header_len: usize) -> Result<Quote, Malformed> {
        let quote = header_len + ICMP_ERROR_QUOTE;
        let q_header_len = match ip.get(quote) {
            Some(b) if b >> 4 == 4 => usize::from(b & 0x0f) * 4,
            Some(_) => return Err(Malformed::NoPorts),
            None => return Err(Malformed::Truncated),
        };
        let q_l4 = quote + q_header_len;
        // The quote's ports: the first 8 bytes of its transport header.
        if q_header_len < MIN_HEADER_LEN || ip.len() < q_l4 + UDP_LEN {
            return Err(Malformed::Truncated);
        }
        let quoted = ip.get(quote..).unwrap_or_default();
        let proto = ipv4::protocol(quoted);
        let (src, dst) = ipv4::src_dst(quoted);
        let (sport_at, dport_at) = match proto {
            TCP | UDP => (q_l4 + SRC_PORT, q_l4 + DST_PORT),
            ICMP => (q_l4 + ICMP_ECHO_ID, q_l4 + ICMP_ECHO_ID),
            _ => return Err(Malformed::NoPorts),
        };
        Ok(Quote {
            proto,
            src,
            dst,
            sport: u16_at(ip, sport_at),
            dport: u16_at(ip, dport_at),
            quote,
            q_l4,
            sport_at,
            dport_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_too_short_for_its_ports_is_refused() {
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, ICMP];
        ip.resize(20, 0);
        ip.extend_from_slice(&[ICMP_DEST_UNREACHABLE, 3, 0, 0, 0, 0, 0, 0]);
        let mut quoted = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, UDP, 0, 0, 10, 0, 0, 5];
        quoted.extend_from_slice(&[198, 18, 0, 1]);
        ip.extend_from_slice(&quoted);
        assert!(is_icmp_error(&ip, 20));
        assert_eq!(Quote::parse(&ip, 20).err(), Some(Malformed::Truncated));
        ip.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        let q = Quote::parse(&ip, 20).unwrap();
        assert_eq!(
            (q.src, q.dst, q.sport, q.dport),
            (
                Ipv4Addr::new(10, 0, 0, 5),
                Ipv4Addr::new(198, 18, 0, 1),
                12345,
                53
            )
        );
    }
}
