//! The session file: a worker's live sessions, one 32-byte record at each
//! session id, in a file on tmpfs (or hugetlbfs) mapped shared. A record
//! is written when its session opens, changes state or closes, never per
//! packet, and with plain stores to the mapping: no syscall. What is
//! stored outlives the process, `kill -9` included, so the next xvrd
//! reads the records back (`SessionFile::resume`) and rebuilds the tables
//! from them, public ports and all.
//!
//! Each record carries a CRC-32 of its fields, so one torn by a crash in
//! mid-write is skipped. The header names the format version, the record
//! size and which worker of how many wrote it: a file that does not match
//! is set aside whole (sessions belong to the worker that owns their
//! flows, and that changes with the number of workers).
//!
//! Not saved: when a session was last used. A restored session starts
//! its state's idle timeout again.
use super::{FlowKey, Session, State};
use memmap2::MmapMut;
use std::fs::OpenOptions;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"XVRSESS\0";
/// Version 2: the same records, but several workers own NAT flows by
/// their inside endpoint, not by their VM, so a version 1 file of one of
/// several workers holds sessions another worker now owns. A single
/// worker's version 1 file is still read.
const VERSION: u32 = 2;
const HEADER: usize = 64;
const RECORD: usize = 32;

/// Flag bits of a record.
const INBOUND: u8 = 1;
const ROUTED: u8 = 2;
const HAIRPIN: u8 = 4;
const ALLOCATED: u8 = 8;

/// A session as the file keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    pub inside: FlowKey,
    pub nat_ip: Ipv4Addr,
    pub nat_port: u16,
    pub state: State,
    pub inbound: bool,
    pub routed: bool,
    pub hairpin: bool,
    /// Its public port came from a source-NAT pool (not fixed by a rule).
    pub allocated: bool,
}

impl Saved {
    pub(super) fn of(s: &Session) -> Saved {
        Saved {
            inside: s.inside,
            nat_ip: s.nat_ip,
            nat_port: s.nat_port,
            state: s.state,
            inbound: s.inbound,
            routed: s.routed,
            hairpin: s.hairpin,
            allocated: s.allocated,
        }
    }

    fn encode(&self) -> [u8; RECORD] {
        let mut r = [0u8; RECORD];
        let i = &self.inside;
        r[4..6].copy_from_slice(&i.zone.to_le_bytes());
        r[6] = i.proto;
        r[7] = self.state.code();
        r[8..12].copy_from_slice(&i.src.octets());
        r[12..16].copy_from_slice(&i.dst.octets());
        r[16..18].copy_from_slice(&i.sport.to_le_bytes());
        r[18..20].copy_from_slice(&i.dport.to_le_bytes());
        r[20..24].copy_from_slice(&self.nat_ip.octets());
        r[24..26].copy_from_slice(&self.nat_port.to_le_bytes());
        let flags = [
            (self.inbound, INBOUND),
            (self.routed, ROUTED),
            (self.hairpin, HAIRPIN),
            (self.allocated, ALLOCATED),
        ];
        r[26] = flags
            .iter()
            .filter(|(on, _)| *on)
            .fold(0, |f, (_, bit)| f | bit);
        // 0 marks a free record; a live one's check is never 0.
        let check = crc32fast::hash(&r[4..]).max(1);
        r[..4].copy_from_slice(&check.to_le_bytes());
        r
    }

    /// The session in record `r`, if it holds one intact.
    fn decode(r: &[u8]) -> Option<Saved> {
        let ip_at = |at: usize| u32_at(r, at).map(|w| Ipv4Addr::from(w.to_le_bytes()));
        let check = u32_at(r, 0)?;
        if check == 0 || check != crc32fast::hash(r.get(4..RECORD)?).max(1) {
            return None;
        }
        let flags = *r.get(26)?;
        Some(Saved {
            inside: FlowKey {
                zone: u16_at(r, 4)?,
                proto: *r.get(6)?,
                src: ip_at(8)?,
                dst: ip_at(12)?,
                sport: u16_at(r, 16)?,
                dport: u16_at(r, 18)?,
            },
            state: State::from_code(*r.get(7)?)?,
            nat_ip: ip_at(20)?,
            nat_port: u16_at(r, 24)?,
            inbound: flags & INBOUND != 0,
            routed: flags & ROUTED != 0,
            hairpin: flags & HAIRPIN != 0,
            allocated: flags & ALLOCATED != 0,
        })
    }
}

/// Who wrote a session file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writer {
    pub worker: u16,
    pub workers: u16,
}

/// A worker's session file, mapped.
pub struct SessionFile {
    map: MmapMut,
    capacity: u32,
    path: PathBuf,
    /// Where the file was made, until `publish` puts it at `path`.
    made_at: Option<PathBuf>,
}

/// What `SessionFile::resume` found.
pub struct Resumed {
    /// A new, empty file; `publish` it once its sessions are restored.
    pub file: SessionFile,
    /// The sessions the previous file held intact.
    pub sessions: Vec<Saved>,
    /// Records found torn (skipped).
    pub torn: usize,
    /// Why the previous file was set aside whole, if it was.
    pub set_aside: Option<String>,
}

impl SessionFile {
    /// Reads the sessions `writer` saved at `path` and makes a new file
    /// with room for `capacity` beside it. The old file stays until
    /// `publish`, so a crash while restoring loses nothing.
    pub fn resume(path: &Path, capacity: u32, writer: Writer) -> io::Result<Resumed> {
        let (sessions, torn, set_aside) = match std::fs::read(path) {
            Ok(bytes) => match read(&bytes, writer) {
                Ok((sessions, torn)) => (sessions, torn, None),
                Err(why) => (Vec::new(), 0, Some(why)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), 0, None),
            Err(e) => return Err(e),
        };
        let made_at = path.with_extension("new");
        // The tenants' connections: for the owner's eyes only.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&made_at)?;
        file.set_len((HEADER + capacity as usize * RECORD) as u64)?;
        // SAFETY: the file is this process's own (the state dir's lock
        // keeps other xvrds away), and is only reached through this map.
        let mut map = unsafe { MmapMut::map_mut(&file)? };
        // Every page now: a first write to a page on the packet path
        // would fault into the kernel to allocate it.
        map.advise(memmap2::Advice::PopulateWrite)?;
        if let Some(h) = map.get_mut(..HEADER) {
            h.copy_from_slice(&header(capacity, writer));
        }
        Ok(Resumed {
            file: SessionFile {
                map,
                capacity,
                path: path.to_path_buf(),
                made_at: Some(made_at),
            },
            sessions,
            torn,
            set_aside,
        })
    }

    /// Puts the new file in the old one's place.
    pub fn publish(&mut self) -> io::Result<()> {
        if let Some(made_at) = self.made_at.take() {
            std::fs::rename(made_at, &self.path)?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[inline]
    pub(super) fn write(&mut self, id: u32, s: &Session) {
        self.put(id, &Saved::of(s).encode());
    }

    #[inline]
    pub(super) fn clear(&mut self, id: u32) {
        self.put(id, &[0; RECORD]);
    }

    #[inline]
    fn put(&mut self, id: u32, record: &[u8; RECORD]) {
        if id >= self.capacity {
            return;
        }
        let at = HEADER + id as usize * RECORD;
        if let Some(slot) = self.map.get_mut(at..at + RECORD) {
            slot.copy_from_slice(record);
        }
    }
}

fn header(capacity: u32, writer: Writer) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(RECORD as u32).to_le_bytes());
    h[16..20].copy_from_slice(&capacity.to_le_bytes());
    h[20..22].copy_from_slice(&writer.worker.to_le_bytes());
    h[22..24].copy_from_slice(&writer.workers.to_le_bytes());
    let check = crc32fast::hash(&h[..24]);
    h[24..28].copy_from_slice(&check.to_le_bytes());
    h
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The intact sessions of file `bytes` and how many records were torn,
/// or why the whole file does not fit `writer`.
fn read(bytes: &[u8], writer: Writer) -> Result<(Vec<Saved>, usize), String> {
    let (h, records) = match bytes.split_at_checked(HEADER) {
        Some(parts) => parts,
        None => return Err("shorter than its header".into()),
    };
    let word = |at: usize| u32_at(h, at).unwrap_or(0);
    if h.get(..8) != Some(MAGIC.as_slice()) {
        return Err("not a session file".into());
    }
    let one_worker = u16_at(h, 22) == Some(1);
    if word(8) != VERSION && !(word(8) == 1 && one_worker) {
        return Err(format!(
            "format version {} (this xvrd reads {VERSION}, and 1 of one worker)",
            word(8)
        ));
    }
    let check = h.get(..24).map(crc32fast::hash);
    if check != Some(word(24)) || word(12) != RECORD as u32 {
        return Err("its header is corrupt".into());
    }
    let was = Writer {
        worker: u16_at(h, 20).unwrap_or(0),
        workers: u16_at(h, 22).unwrap_or(0),
    };
    if was != writer {
        return Err(format!(
            "written by worker {} of {}, read by worker {} of {}: flows change owners",
            was.worker, was.workers, writer.worker, writer.workers
        ));
    }
    let mut sessions = Vec::new();
    let mut torn = 0;
    for r in records.chunks_exact(RECORD).take(word(16) as usize) {
        match Saved::decode(r) {
            Some(s) => sessions.push(s),
            None if r.iter().any(|&b| b != 0) => torn += 1,
            None => {}
        }
    }
    Ok((sessions, torn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::TCP;

    fn saved(port: u16) -> Saved {
        Saved {
            inside: FlowKey {
                zone: 3,
                proto: TCP,
                src: Ipv4Addr::new(10, 0, 0, 10),
                dst: Ipv4Addr::new(198, 18, 0, 254),
                sport: port,
                dport: 80,
            },
            nat_ip: Ipv4Addr::new(203, 0, 113, 10),
            nat_port: port,
            state: State::Established,
            inbound: false,
            routed: false,
            hairpin: true,
            allocated: true,
        }
    }

    #[test]
    fn a_record_reads_back_as_written_and_a_torn_one_not_at_all() {
        let s = saved(40000);
        let mut r = s.encode();
        assert_eq!(Saved::decode(&r), Some(s));
        r[10] ^= 1;
        assert_eq!(Saved::decode(&r), None);
        assert_eq!(Saved::decode(&[0; RECORD]), None);
        // A state code no state has, with a check that matches it.
        let mut bad = s.encode();
        bad[7] = 200;
        let check = crc32fast::hash(&bad[4..]).max(1);
        bad[..4].copy_from_slice(&check.to_le_bytes());
        assert_eq!(Saved::decode(&bad), None);
    }

    #[test]
    fn a_file_is_read_only_by_the_worker_that_wrote_it() {
        let me = Writer {
            worker: 1,
            workers: 2,
        };
        let mut bytes = header(4, me).to_vec();
        bytes.extend_from_slice(&saved(1).encode());
        bytes.extend_from_slice(&[0; RECORD]);
        let mut torn = saved(2).encode();
        torn[20] ^= 0xff;
        bytes.extend_from_slice(&torn);
        bytes.extend_from_slice(&saved(3).encode());
        let (sessions, torn) = read(&bytes, me).unwrap();
        assert_eq!(sessions, vec![saved(1), saved(3)]);
        assert_eq!(torn, 1);
        let other = Writer {
            worker: 0,
            workers: 1,
        };
        assert!(read(&bytes, other).unwrap_err().contains("worker 1 of 2"));
        let mut newer = bytes.clone();
        newer[8] = 3;
        assert!(read(&newer, me).unwrap_err().contains("version 3"));
        // Version 1: another owner rule on several workers, the same on one.
        let mut v1 = bytes.clone();
        v1[8] = 1;
        let check = crc32fast::hash(&v1[..24]);
        v1[24..28].copy_from_slice(&check.to_le_bytes());
        assert!(read(&v1, me).unwrap_err().contains("version 1"));
        let single = Writer {
            worker: 0,
            workers: 1,
        };
        let mut v1 = header(4, single).to_vec();
        v1.extend_from_slice(&saved(1).encode());
        v1[8] = 1;
        let check = crc32fast::hash(&v1[..24]);
        v1[24..28].copy_from_slice(&check.to_le_bytes());
        assert_eq!(read(&v1, single).unwrap().0, vec![saved(1)]);
        let mut corrupt = bytes.clone();
        corrupt[16] ^= 1;
        assert!(read(&corrupt, me).unwrap_err().contains("corrupt"));
        assert!(read(b"XVRSESS", me).is_err());
        assert!(read(&[0; 100], me)
            .unwrap_err()
            .contains("not a session file"));
    }
}
