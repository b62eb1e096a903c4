//! VXLAN header (RFC 7348 section 5): flags (I = VNI valid), 24 reserved
//! bits, a 24-bit VNI and 8 reserved bits. Reserved bits are sent as zero and
//! ignored on receipt, as the RFC says.
use super::{byte, put, u32_at};
use smoltcp::wire::{Error, Result};

pub const HEADER_LEN: usize = 8;
/// IANA-assigned UDP destination port.
pub const UDP_PORT: u16 = 4789;
/// The I flag: the VNI field is valid.
pub const FLAG_VNI_VALID: u8 = 0x08;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// A read/write view of a VXLAN header and its payload (the inner frame).
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

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn flags(&self) -> u8 {
        byte(self.buffer.as_ref(), 0)
    }

    /// True when the I flag says the VNI is valid.
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_VNI_VALID != 0
    }

    pub fn vni(&self) -> u32 {
        u32_at(self.buffer.as_ref(), 4) >> 8
    }

    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_flags(&mut self, flags: u8) {
        put(self.buffer.as_mut(), 0, &[flags, 0, 0, 0]);
    }

    /// Sets the 24-bit VNI (higher bits are ignored) and clears the last
    /// reserved byte.
    pub fn set_vni(&mut self, vni: u32) {
        put(self.buffer.as_mut(), 4, &(vni << 8).to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or_default()
    }
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub vni: u32,
}

impl Repr {
    /// Parses a header; fails when it is truncated or the I flag is clear.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.vni_valid() {
            return Err(Error);
        }
        Ok(Repr { vni: packet.vni() })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_VNI_VALID);
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: [u8; 10] = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xaa, 0xbb];

    #[test]
    fn parse_and_emit_round_trip() {
        let packet = Packet::new_checked(&BYTES[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.vni, 0x123456);
        assert_eq!(packet.payload(), &[0xaa, 0xbb]);
        let mut out = [0xffu8; 8];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, BYTES[..8]);
    }

    #[test]
    fn rejects_truncated_and_missing_i_flag() {
        assert!(Packet::new_checked(&BYTES[..7]).is_err());
        let mut no_i = BYTES;
        no_i[0] = 0;
        assert!(Repr::parse(&Packet::new_unchecked(&no_i[..])).is_err());
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let mut reserved = BYTES;
        reserved[0] |= 0xf7;
        reserved[2] = 0xff;
        reserved[7] = 0xff;
        let repr = Repr::parse(&Packet::new_unchecked(&reserved[..])).unwrap();
        assert_eq!(repr.vni, 0x123456);
    }
}
