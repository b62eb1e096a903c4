//! The host's network devices as the router needs them, through libc
//! (getifaddrs, if_nametoindex, and the SIOCGIFMTU and SIOCETHTOOL
//! ioctls): interface indexes, MTUs, receive queues, and the host's own
//! addresses.
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

/// The MTU of interface `name` (SIOCGIFMTU), if there is one.
pub fn interface_mtu(name: &str) -> Option<u16> {
    // SAFETY: `req` is a zeroed ifreq whose name is NUL-terminated (it is
    // shorter than the field); the socket is closed after the ioctl.
    let (rc, mtu) = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        if name.len() >= req.ifr_name.len() {
            return None;
        }
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFMTU, &mut req);
        libc::close(fd);
        (rc, req.ifr_ifru.ifru_mtu)
    };
    (rc == 0).then(|| u16::try_from(mtu).unwrap_or(u16::MAX))
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

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// Receive queues of interface `name` (rx + combined channels, as
/// `ethtool -l` shows them); 1 when the driver does not report channels.
pub fn rx_queues(name: &str) -> Result<u32, String> {
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: a zeroed ifreq with the name copied in (checked to fit),
    // pointing at `channels`, which outlives the ioctl.
    let rc = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        if name.len() >= req.ifr_name.len() {
            return Err(format!("interface name {name:?} is too long"));
        }
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_data = (&mut channels as *mut EthtoolChannels).cast();
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let rc = libc::ioctl(fd, SIOCETHTOOL, &mut req);
        libc::close(fd);
        rc
    };
    if rc < 0 {
        let error = std::io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Ok(1),
            _ => Err(format!("interface {name}: reading its queues: {error}")),
        };
    }
    Ok((channels.rx_count + channels.combined_count).max(1))
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
