//! Reading and writing capture files with `pcap-file`: classic pcap (what
//! tcpdump writes) and pcapng (what tshark and dumpcap write) in, classic
//! pcap out.
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::time::Duration;

pub struct Packet {
    pub timestamp: Duration,
    pub data: Vec<u8>,
}

/// Reads every Ethernet frame of a pcap or pcapng file.
pub fn read(path: &Path) -> Result<Vec<Packet>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| fail(&e))?;
    let file = BufReader::new(File::open(path).map_err(|e| fail(&e))?);
    let mut packets = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut reader = PcapNgReader::new(file).map_err(|e| fail(&e))?;
        let mut links: Vec<DataLink> = reader.interfaces().iter().map(|i| i.linktype).collect();
        while let Some(block) = reader.next_block() {
            match block.map_err(|e| fail(&e))? {
                Block::InterfaceDescription(i) => links.push(i.linktype),
                Block::EnhancedPacket(p) => {
                    let link = links.get(p.interface_id as usize).copied();
                    if link != Some(DataLink::ETHERNET) {
                        return Err(fail(&format!(
                            "interface {} is not Ethernet ({link:?})",
                            p.interface_id
                        )));
                    }
                    packets.push(Packet {
                        timestamp: p.timestamp,
                        data: p.data.into_owned(),
                    });
                }
                Block::SimplePacket(p) => packets.push(Packet {
                    timestamp: Duration::ZERO,
                    data: p.data.into_owned(),
                }),
                _ => {}
            }
        }
    } else {
        let mut reader = PcapReader::new(file).map_err(|e| fail(&e))?;
        let link = reader.header().datalink;
        if link != DataLink::ETHERNET {
            return Err(fail(&format!("link type {link:?} is not Ethernet")));
        }
        while let Some(p) = reader.next_packet() {
            let p = p.map_err(|e| fail(&e))?;
            packets.push(Packet {
                timestamp: p.timestamp,
                data: p.data.into_owned(),
            });
        }
    }
    Ok(packets)
}

/// A pcap file being written.
pub struct Writer {
    inner: PcapWriter<BufWriter<File>>,
}

impl Writer {
    pub fn create(path: &Path) -> Result<Writer, String> {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let inner = PcapWriter::new(BufWriter::new(file))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Writer { inner })
    }

    pub fn write(&mut self, timestamp: Duration, data: &[u8]) -> Result<(), String> {
        let packet = PcapPacket::new(timestamp, data.len() as u32, data);
        self.inner
            .write_packet(&packet)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
