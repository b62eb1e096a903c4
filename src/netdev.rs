//! The host's network devices as the router needs them, through libc
//! (getifaddrs, if_nametoindex, and the SIOCGIFMTU and SIOCETHTOOL
//! ioctls): interface indexes, MTUs, receive queues, VLAN offload, and
//! the host's own addresses.
use ipnet::Ipv4Net;
use std::ffi::CString;
use std::net::Ipv4Addr;

/// Index of interface `name` in the current network namespace.
pub fn ifindex(name: &str) -> Result<u32, String> {
    let c_name = CString::new(name).map_err(|_| format!("bad interface name {name:?}"))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(format!(
            "interface {name}: {}",
            std::io::Error::last_os_error()
        )),
        index => Ok(index),
    }
}

/// The host's own IPv4 networks and addresses in this network namespace
/// (the underlay's subnet among them), from getifaddrs: each address as
/// a /32 and its network.
pub fn host_prefixes() -> Vec<Ipv4Net> {
    let mut prefixes = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, walked read-only below and freed
    // once with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return prefixes;
        }
        let mut at = list;
        while !at.is_null() {
            let entry = &*at;
            at = entry.ifa_next;
            let (addr, mask) = (entry.ifa_addr, entry.ifa_netmask);
            if addr.is_null() || mask.is_null() || i32::from((*addr).sa_family) != libc::AF_INET {
                continue;
            }
            let addr = &*(addr as *const libc::sockaddr_in);
            let mask = &*(mask as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
            let len = u32::from_be(mask.sin_addr.s_addr).leading_ones() as u8;
            if let (Ok(host), Ok(net)) = (Ipv4Net::new(ip, 32), Ipv4Net::new(ip, len)) {
                prefixes.push(host);
                prefixes.push(net.trunc());
            }
        }
        libc::freeifaddrs(list);
    }
    prefixes.sort_unstable();
    prefixes.dedup();
    prefixes
}

/// Runs ioctl `request` on interface `name` with an `ifreq` that `fill`
/// completes, over a throwaway socket; returns the filled-in `ifreq`.
fn ifreq_ioctl(
    name: &str,
    request: libc::c_ulong,
    fill: impl FnOnce(&mut libc::ifreq),
) -> std::io::Result<libc::ifreq> {
    // SAFETY: a zeroed ifreq is valid; the name copied in is shorter than
    // the field (checked), so it stays NUL-terminated; whatever `fill`
    // points the ifreq at outlives the ioctl (it borrows from the
    // caller); the socket is closed after the one ioctl.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        if name.len() >= req.ifr_name.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("interface name {name:?} is too long"),
            ));
        }
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        fill(&mut req);
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let rc = libc::ioctl(fd, request, &mut req);
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        match rc {
            0.. => Ok(req),
            _ => Err(error),
        }
    }
}

/// An ethtool command (SIOCETHTOOL) on interface `name`; `command` is the
/// ethtool struct, its `cmd` field first, read back filled in.
fn ethtool<T>(name: &str, command: &mut T) -> std::io::Result<()> {
    ifreq_ioctl(name, SIOCETHTOOL, |req| {
        req.ifr_ifru.ifru_data = (command as *mut T).cast();
    })
    .map(|_| ())
}

/// The MTU of interface `name` (SIOCGIFMTU), if there is one.
pub fn interface_mtu(name: &str) -> Option<u16> {
    let req = ifreq_ioctl(name, libc::SIOCGIFMTU, |_| {}).ok()?;
    // SAFETY: SIOCGIFMTU filled the union's MTU.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Some(u16::try_from(mtu).unwrap_or(u16::MAX))
}

/// `struct ethtool_channels` of <linux/ethtool.h>.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `struct ethtool_value` of <linux/ethtool.h>.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
/// ETH_FLAG_TXVLAN: the device inserts VLAN tags (tx-vlan-hw-insert).
const ETH_FLAG_TXVLAN: u32 = 1 << 7;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// Receive queues of interface `name` (rx + combined channels, as
/// `ethtool -l` shows them); 1 when the driver does not report channels.
pub fn rx_queues(name: &str) -> Result<u32, String> {
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    match ethtool(name, &mut channels) {
        Ok(()) => Ok((channels.rx_count + channels.combined_count).max(1)),
        Err(error) if error.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(1),
        Err(error) => Err(format!("interface {name}: reading its queues: {error}")),
    }
}

/// Turns VLAN tag insertion off on interface `name` (as `ethtool -K NAME
/// txvlan off`), so tags pushed onto its packets are written in the frame.
pub fn disable_tx_vlan_offload(name: &str) -> std::io::Result<()> {
    let mut flags = EthtoolValue {
        cmd: ETHTOOL_GFLAGS,
        data: 0,
    };
    ethtool(name, &mut flags)?;
    flags.cmd = ETHTOOL_SFLAGS;
    flags.data &= !ETH_FLAG_TXVLAN;
    ethtool(name, &mut flags)
}

/// The index and receive queues of interface `name`, which must have a
/// queue for each of `workers`.
pub fn interface(name: &str, workers: usize) -> Result<(u32, u32), String> {
    let index = ifindex(name)?;
    let queues = rx_queues(name)?;
    if (queues as usize) < workers {
        return Err(format!(
            "interface {name}: {queues} receive queue(s) for {workers} workers; \
             give it one per worker (ethtool -L {name} rx {workers} tx {workers}, \
             or combined {workers})"
        ));
    }
    Ok((index, queues))
}
