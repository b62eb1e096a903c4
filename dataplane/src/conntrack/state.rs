//! Session states and their timeouts. TCP follows the connection through
//! the segments' flags, in the spirit of Linux's nf_conntrack (without
//! window tracking); UDP and ICMP echo only tell unreplied from replied.
use super::key::{ICMP, TCP, UDP};
use super::Dir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    SynSent,
    SynRecv,
    Established,
    /// The inside end sent a FIN.
    FinWait,
    /// The outside end sent a FIN.
    CloseWait,
    TimeWait,
    /// Reset; a new SYN reopens.
    Closed,
    UdpUnreplied,
    UdpReplied,
    IcmpUnreplied,
    IcmpReplied,
}

/// Every state, in the order of their codes (`State::code`).
const ALL: [State; 11] = [
    State::SynSent,
    State::SynRecv,
    State::Established,
    State::FinWait,
    State::CloseWait,
    State::TimeWait,
    State::Closed,
    State::UdpUnreplied,
    State::UdpReplied,
    State::IcmpUnreplied,
    State::IcmpReplied,
];

impl State {
    /// A stable number for the session file (`from_code` reads it back).
    pub fn code(self) -> u8 {
        ALL.iter().position(|&s| s == self).unwrap_or(0) as u8
    }

    /// The state of `code`, if it names one.
    pub fn from_code(code: u8) -> Option<State> {
        ALL.get(usize::from(code)).copied()
    }

    pub const fn name(self) -> &'static str {
        match self {
            State::SynSent => "syn_sent",
            State::SynRecv => "syn_recv",
            State::Established => "established",
            State::FinWait => "fin_wait",
            State::CloseWait => "close_wait",
            State::TimeWait => "time_wait",
            State::Closed => "closed",
            State::UdpUnreplied => "udp_unreplied",
            State::UdpReplied => "udp_replied",
            State::IcmpUnreplied => "icmp_unreplied",
            State::IcmpReplied => "icmp_replied",
        }
    }
}

/// Seconds a session in each state lives without traffic. The defaults
/// meet the NAT RFCs, which ask more than Linux's conntrack gives: a UDP
/// mapping lives at least 2 minutes, 5 recommended (RFC 4787 REQ-5); a
/// TCP connection being opened or closed at least 4 minutes, an
/// established one at least 2 hours 4 minutes (RFC 5382 REQ-5); an ICMP
/// query at least 60 s (RFC 5508 REQ-1). UDP to a well-known port (below
/// 1024, such as DNS) may be shorter (RFC 4787 REQ-5a): 30 s, as Linux's
/// unreplied UDP, so lookups do not hold the table for minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub syn_sent: u32,
    pub syn_recv: u32,
    pub established: u32,
    pub fin_wait: u32,
    pub close_wait: u32,
    pub time_wait: u32,
    pub closed: u32,
    pub udp_unreplied: u32,
    pub udp_replied: u32,
    /// UDP to a destination port below 1024, either state.
    pub udp_well_known: u32,
    pub icmp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            syn_sent: 240,
            syn_recv: 240,
            established: 432_000,
            fin_wait: 240,
            close_wait: 240,
            time_wait: 240,
            // Reset: the connection is over (RFC 5382 lets the NAT end it).
            closed: 10,
            udp_unreplied: 300,
            udp_replied: 300,
            udp_well_known: 30,
            icmp: 60,
        }
    }
}

impl Timeouts {
    /// The timeout of a session of `key` in `state`.
    #[inline]
    pub fn of_flow(&self, state: State, key: &super::FlowKey) -> u32 {
        match state {
            State::UdpUnreplied | State::UdpReplied if key.dport < 1024 => self.udp_well_known,
            _ => self.of(state),
        }
    }

    pub fn of(&self, state: State) -> u32 {
        match state {
            State::SynSent => self.syn_sent,
            State::SynRecv => self.syn_recv,
            State::Established => self.established,
            State::FinWait => self.fin_wait,
            State::CloseWait => self.close_wait,
            State::TimeWait => self.time_wait,
            State::Closed => self.closed,
            State::UdpUnreplied => self.udp_unreplied,
            State::UdpReplied => self.udp_replied,
            State::IcmpUnreplied | State::IcmpReplied => self.icmp,
        }
    }
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// The state a new session starts in, or None when this first packet may
/// not open one (a TCP segment other than a bare SYN: mid-stream traffic
/// is not picked up).
pub fn initial(proto: u8, tcp_flags: u8) -> Option<State> {
    match proto {
        TCP if tcp_flags & (SYN | ACK | RST | FIN) == SYN => Some(State::SynSent),
        TCP => None,
        UDP => Some(State::UdpUnreplied),
        ICMP => Some(State::IcmpUnreplied),
        _ => None,
    }
}

/// The state after a packet in direction `dir` (with `tcp_flags`, for TCP).
pub fn next(state: State, dir: Dir, tcp_flags: u8) -> State {
    use Dir::{Orig, Reply};
    let f = tcp_flags;
    let bare_syn = f & (SYN | ACK) == SYN;
    match state {
        State::UdpUnreplied if dir == Reply => State::UdpReplied,
        State::IcmpUnreplied if dir == Reply => State::IcmpReplied,
        State::UdpUnreplied | State::UdpReplied | State::IcmpUnreplied | State::IcmpReplied => {
            state
        }
        _ if f & RST != 0 => State::Closed,
        State::SynSent if dir == Reply && f & (SYN | ACK) == SYN | ACK => State::SynRecv,
        State::SynRecv if dir == Orig && f & (SYN | ACK) == ACK => State::Established,
        State::Established if f & FIN != 0 => match dir {
            Orig => State::FinWait,
            Reply => State::CloseWait,
        },
        State::FinWait if dir == Reply && f & FIN != 0 => State::TimeWait,
        State::CloseWait if dir == Orig && f & FIN != 0 => State::TimeWait,
        State::TimeWait | State::Closed if dir == Orig && bare_syn => State::SynSent,
        _ => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dir::{Orig, Reply};

    #[test]
    fn a_tcp_connection_walks_through_its_states() {
        let mut s = initial(TCP, SYN).unwrap();
        let steps = [
            (Reply, SYN | ACK, State::SynRecv),
            (Orig, ACK, State::Established),
            (Orig, ACK, State::Established),
            (Reply, FIN | ACK, State::CloseWait),
            (Orig, FIN | ACK, State::TimeWait),
            (Orig, SYN, State::SynSent),
            (Reply, RST, State::Closed),
        ];
        for (dir, flags, want) in steps {
            s = next(s, dir, flags);
            assert_eq!(s, want, "after {dir:?} {flags:#x}");
        }
    }

    #[test]
    fn every_state_code_reads_back_and_no_other_does() {
        for s in ALL {
            assert_eq!(State::from_code(s.code()), Some(s));
        }
        assert_eq!(State::from_code(ALL.len() as u8), None);
    }

    #[test]
    fn only_a_bare_syn_opens_a_tcp_session() {
        assert_eq!(initial(TCP, SYN | ACK), None);
        assert_eq!(initial(TCP, ACK), None);
        assert_eq!(initial(TCP, SYN | FIN), None);
        assert_eq!(initial(UDP, 0), Some(State::UdpUnreplied));
        assert_eq!(initial(47, 0), None);
    }

    #[test]
    fn a_syn_ack_from_the_inside_does_not_advance_a_syn_sent() {
        assert_eq!(next(State::SynSent, Orig, SYN | ACK), State::SynSent);
        assert_eq!(next(State::UdpUnreplied, Reply, 0), State::UdpReplied);
    }
}
