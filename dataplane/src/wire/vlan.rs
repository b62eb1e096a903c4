//! IEEE 802.1Q tag (smoltcp has none): the 4 bytes that follow the source
//! MAC when the outer EtherType is 0x8100. This view starts at the TCI, so
//! it is laid over `EthernetFrame::payload()` of a tagged frame.
use super::{put, u16_at};
use smoltcp::wire::{Error, EthernetProtocol, Result};

pub const TPID: u16 = 0x8100;
pub const HEADER_LEN: usize = 4;
pub const VID_MAX: u16 = 0x0fff;

#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error)
        } else {
            Ok(())
        }
    }

    fn tci(&self) -> u16 {
        u16_at(self.buffer.as_ref(), 0)
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    pub fn vid(&self) -> u16 {
        self.tci() & VID_MAX
    }

    /// EtherType of what follows the tag.
    pub fn ethertype(&self) -> EthernetProtocol {
        EthernetProtocol::from(u16_at(self.buffer.as_ref(), 2))
    }

    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_tci(&mut self, pcp: u8, dei: bool, vid: u16) {
        let tci = (u16::from(pcp & 7) << 13) | (u16::from(dei) << 12) | (vid & VID_MAX);
        put(self.buffer.as_mut(), 0, &tci.to_be_bytes());
    }

    pub fn set_ethertype(&mut self, ethertype: EthernetProtocol) {
        put(self.buffer.as_mut(), 2, &u16::from(ethertype).to_be_bytes());
    }
}

/// A parsed 802.1Q tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub pcp: u8,
    pub dei: bool,
    pub vid: u16,
    pub ethertype: EthernetProtocol,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            pcp: packet.pcp(),
            dei: packet.dei(),
            vid: packet.vid(),
            ethertype: packet.ethertype(),
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_tci(self.pcp, self.dei, self.vid);
        packet.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let repr = Repr {
            pcp: 5,
            dei: true,
            vid: 0xabc,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = [0u8; 4];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0xba, 0xbc, 0x08, 0x00]);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(),
            repr
        );
        assert!(Packet::new_checked(&buf[..3]).is_err());
    }
}
