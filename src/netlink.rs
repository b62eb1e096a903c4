//! The few rtnetlink requests the daemon makes (create a veth pair, set
//! a link up, delete a link, delete a clsact qdisc), sent synchronously and acknowledged, with
//! the messages from the rust-netlink crates rather than `ip` commands.
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;

/// Creates veth pair `near`/`far`, each end with `queues` receive and
/// transmit queues (as `ip link add NEAR numtxqueues Q numrxqueues Q
/// type veth peer name FAR numtxqueues Q numrxqueues Q`).
pub fn add_veth(near: &str, far: &str, queues: u32) -> io::Result<()> {
    let end = |name: &str| {
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::NumTxQueues(queues),
            LinkAttribute::NumRxQueues(queues),
        ];
        link
    };
    let mut link = end(near);
    link.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(end(far)))),
    ]));
    request(
        RouteNetlinkMessage::NewLink(link),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Sets link `index` up.
pub fn set_up(index: u32) -> io::Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    request(RouteNetlinkMessage::SetLink(link), 0)
}

/// Deletes link `index` (and a veth's peer with it).
pub fn delete(index: u32) -> io::Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    request(RouteNetlinkMessage::DelLink(link), 0)
}

/// Deletes the clsact qdisc of link `index` (as `tc qdisc del dev DEV
/// clsact`), and with it the tc filters on it.
pub fn delete_clsact(index: u32) -> io::Result<()> {
    let mut qdisc = TcMessage::default();
    qdisc.header.index = i32::try_from(index).unwrap_or(i32::MAX);
    qdisc.header.parent = TcHandle::CLSACT;
    qdisc.header.handle = TcHandle {
        major: u16::MAX,
        minor: 0,
    };
    qdisc.attributes = vec![TcAttribute::Kind("clsact".to_string())];
    request(RouteNetlinkMessage::DelQueueDiscipline(qdisc), 0)
}

/// Sends `message` and waits for the kernel's acknowledgement.
fn request(message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut request = NetlinkMessage::new(header, NetlinkPayload::from(message));
    request.finalize();
    let mut sent = vec![0; request.buffer_len()];
    request.serialize(&mut sent);
    socket.send(&sent, 0)?;
    let mut reply = Vec::with_capacity(8192);
    socket.recv(&mut reply, 0)?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match reply.payload {
        NetlinkPayload::Error(error) => match error.code {
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
            None => Ok(()),
        },
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected netlink reply {other:?}"),
        )),
    }
}
