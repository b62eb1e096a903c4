//! Which XDP features an interface has, from the kernel's generic netlink
//! family "netdev" (what `ynl --family netdev --do dev-get` prints). xvrd
//! needs one bit: whether the interface accepts frames that an XDP program
//! redirects to it (`NETDEV_XDP_ACT_NDO_XMIT`). A veth does only while its
//! peer has an XDP program or GRO on; a redirect to one that does not is
//! dropped by the kernel, so the fast path must not send frames there.
//!
//! Written by hand: two small requests; the netlink crates would add a
//! dependency tree for them, and the family has no Rust binding.
use std::io;

/// `NETDEV_XDP_ACT_NDO_XMIT` of <linux/netdev.h>.
pub const XDP_ACT_NDO_XMIT: u64 = 1 << 2;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HEADER: usize = 16;
const GENL_HEADER: usize = 4;

/// A netlink socket with the `netdev` family resolved, for asking about
/// several interfaces in a row.
pub struct Netdev {
    socket: Netlink,
    family: u16,
}

impl Netdev {
    pub fn open() -> io::Result<Netdev> {
        let socket = Netlink::open()?;
        let family = socket.request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            CTRL_ATTR_FAMILY_NAME,
            b"netdev\0",
        )?;
        let family = attr(&family, CTRL_ATTR_FAMILY_ID)
            .and_then(|v| Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?)))
            .ok_or_else(|| invalid("no netdev family id in the answer"))?;
        Ok(Netdev { socket, family })
    }

    /// The XDP features of interface `ifindex` (`NETDEV_XDP_ACT_*` bits).
    pub fn xdp_features(&self, ifindex: u32) -> io::Result<u64> {
        let device = self.socket.request(
            self.family,
            NETDEV_CMD_DEV_GET,
            NETDEV_A_DEV_IFINDEX,
            &ifindex.to_ne_bytes(),
        )?;
        attr(&device, NETDEV_A_DEV_XDP_FEATURES)
            .and_then(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
            .ok_or_else(|| invalid("no xdp-features in the answer"))
    }

    /// Whether XDP programs may redirect frames to interface `ifindex`.
    pub fn accepts_redirects(&self, ifindex: u32) -> io::Result<bool> {
        Ok(self.xdp_features(ifindex)? & XDP_ACT_NDO_XMIT != 0)
    }
}

/// The XDP features of interface `ifindex`, on a socket of its own.
pub fn xdp_features(ifindex: u32) -> io::Result<u64> {
    Netdev::open()?.xdp_features(ifindex)
}

/// Whether XDP programs may redirect frames to interface `ifindex`, on a
/// socket of its own.
pub fn accepts_redirects(ifindex: u32) -> io::Result<bool> {
    Netdev::open()?.accepts_redirects(ifindex)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {what}"))
}

struct Netlink(std::os::fd::OwnedFd);

impl Netlink {
    fn open() -> io::Result<Netlink> {
        use std::os::fd::FromRawFd;
        // SAFETY: socket(2) with constant arguments; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        Ok(Netlink(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends one request with one attribute and returns the answer's
    /// attributes (after the generic netlink header).
    fn request(&self, family: u16, cmd: u8, attr_type: u16, value: &[u8]) -> io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let attr_len = 4 + value.len();
        let len = NLMSG_HEADER + GENL_HEADER + attr_len.next_multiple_of(4);
        let mut msg = Vec::with_capacity(len);
        msg.extend((len as u32).to_ne_bytes());
        msg.extend(family.to_ne_bytes());
        msg.extend(NLM_F_REQUEST.to_ne_bytes());
        msg.extend(1u32.to_ne_bytes()); // sequence
        msg.extend(0u32.to_ne_bytes()); // port id: the kernel's
        msg.extend([cmd, 1, 0, 0]);
        msg.extend((attr_len as u16).to_ne_bytes());
        msg.extend(attr_type.to_ne_bytes());
        msg.extend(value);
        msg.resize(len, 0);
        let fd = self.0.as_raw_fd();
        // SAFETY: sends `msg`, a live buffer of its length, to the kernel
        // (a zeroed sockaddr_nl is pid 0: the kernel).
        let sent = unsafe {
            let mut to: libc::sockaddr_nl = std::mem::zeroed();
            to.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut answer = vec![0u8; 16384];
        // SAFETY: receives into `answer`, a live buffer of its length.
        let got = unsafe { libc::recv(fd, answer.as_mut_ptr().cast(), answer.len(), 0) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        answer.truncate(got as usize);
        if answer.len() < NLMSG_HEADER + 4 {
            return Err(invalid("short answer"));
        }
        let kind = u16::from_ne_bytes([answer[4], answer[5]]);
        if kind == NLMSG_ERROR {
            let code = i32::from_ne_bytes(answer[16..20].try_into().expect("4 bytes"));
            return Err(io::Error::from_raw_os_error(-code));
        }
        let end = (u32::from_ne_bytes(answer[..4].try_into().expect("4 bytes")) as usize)
            .min(answer.len());
        Ok(answer
            .get(NLMSG_HEADER + GENL_HEADER..end)
            .unwrap_or_default()
            .to_vec())
    }
}

/// The value of the first attribute of type `wanted` in `attrs`.
fn attr(mut attrs: &[u8], wanted: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == wanted {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}
