//! The replication commands: `peer`, with which a dialing server proves its key and turns
//! the connection into a replication link (spec/replication.md §2), `peers`, the admin's
//! view of every peer's link and of the quarantined origins (§2.1), and `padd`/`pdel`, with
//! which an admin adds and removes peers at runtime (§2.2): their argument and reply codecs,
//! the status values, and sample values.

use super::args::{decimal, hex_encode, hex32, usage_error, utf8};
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::replication::{EPOCH_LEN, Epoch};
use crate::secure::Fingerprint;
use crate::wire::{ErrorCode, ErrorReply};
#[cfg(any(test, feature = "fuzzing"))]
use crate::wire::{POINT_LEN, SIGNATURE_LEN};

/// Parses the arguments of a replication command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    let bad = || usage_error(kind);
    Ok(match (kind, args) {
        (CommandKind::Peers, []) => Command::Peers,
        (CommandKind::Peer, [key, signature]) => Command::Peer {
            key: key.as_slice().try_into().map_err(|_| bad())?,
            signature: signature.as_slice().try_into().map_err(|_| bad())?,
        },
        (CommandKind::Padd, [fingerprint, rest @ ..]) => Command::Padd {
            fingerprint: fingerprint_arg(fingerprint, kind)?,
            address: match rest {
                [] => None,
                [address] => Some(address_arg(address, kind)?),
                _ => return Err(bad()),
            },
        },
        (CommandKind::Pdel, [fingerprint]) => Command::Pdel {
            fingerprint: fingerprint_arg(fingerprint, kind)?,
        },
        _ => return Err(bad()),
    })
}

/// The most peers a server has (configured and added at runtime together): `padd` refuses
/// more.
pub const MAX_PEERS: usize = 64;

/// The longest peer address `padd` takes, in bytes.
pub const MAX_PEER_ADDRESS: usize = 255;

/// A `FPR` argument: `SHA256:` and 64 hex digits.
fn fingerprint_arg(arg: &[u8], kind: CommandKind) -> Result<Fingerprint, ErrorReply> {
    utf8(arg, kind)?.parse().map_err(|_| {
        ErrorReply::new(
            ErrorCode::BadArguments,
            "bad fingerprint: expected SHA256: followed by 64 hex digits",
        )
    })
}

/// An `ADDR` argument: `host:port`, a non-empty host of printable characters without
/// spaces, a port from 1 to 65535, at most [`MAX_PEER_ADDRESS`] bytes.
fn address_arg(arg: &[u8], kind: CommandKind) -> Result<String, ErrorReply> {
    let address = utf8(arg, kind)?;
    check_peer_address(&address).map_err(|why| {
        ErrorReply::new(ErrorCode::BadArguments, format!("bad peer address: {why}"))
    })?;
    Ok(address)
}

/// Whether `address` is a dialable peer address (`host:port`, see `padd`); the error says
/// what is wrong with it.
pub fn check_peer_address(address: &str) -> Result<(), &'static str> {
    if address.len() > MAX_PEER_ADDRESS {
        return Err("longer than 255 bytes");
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it holds a space or a control character");
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("expected host:port");
    };
    if host.is_empty() || host == "[]" {
        return Err("the host is empty");
    }
    match port.parse::<u16>() {
        Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

/// The wire arguments of a replication command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Peer { key, signature } => vec![key.to_vec(), signature.to_vec()],
        Command::Padd {
            fingerprint,
            address,
        } => std::iter::once(fingerprint.to_string().into_bytes())
            .chain(address.iter().map(|a| a.clone().into_bytes()))
            .collect(),
        Command::Pdel { fingerprint } => vec![fingerprint.to_string().into_bytes()],
        _ => Vec::new(),
    }
}

/// Decodes the reply to a replication command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Peer { .. } | Command::Padd { .. } | Command::Pdel { .. } => {
            fields.want(0).map(|()| Reply::Done)
        }
        Command::Peers => decode_peers(fields),
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample replication commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    let mut key = [2u8; POINT_LEN];
    key[1] = 7;
    vec![
        Command::Peer {
            key,
            signature: [9u8; SIGNATURE_LEN],
        },
        Command::Peers,
        Command::Padd {
            fingerprint: Fingerprint([0xab; 32]),
            address: Some("peer.example:7118".into()),
        },
        Command::Padd {
            fingerprint: Fingerprint([0x01; 32]),
            address: None,
        },
        Command::Pdel {
            fingerprint: Fingerprint([0xab; 32]),
        },
    ]
}

/// Sample replies to a replication command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, values: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Peer { .. } | Command::Padd { .. } | Command::Pdel { .. } => vec![Reply::Done],
        Command::Peers => vec![
            Reply::Peers {
                peers: Vec::new(),
                forks: Vec::new(),
            },
            Reply::Peers {
                peers: vec![
                    PeerStatus {
                        fingerprint: values.fingerprint,
                        address: Some("127.0.0.1:7118".into()),
                        connected: true,
                        since_secs: Some(12),
                        last_error: Some("closed by the peer: timeout".into()),
                        epoch: Some([5; EPOCH_LEN]),
                        source: PeerSource::Config,
                        origins: vec![
                            OriginLag {
                                origin: values.fingerprint,
                                held: 7,
                                peer: Some(9),
                            },
                            OriginLag {
                                origin: Fingerprint([3; 32]),
                                held: 4,
                                peer: None,
                            },
                        ],
                    },
                    PeerStatus {
                        fingerprint: Fingerprint([4; 32]),
                        address: None,
                        connected: false,
                        since_secs: None,
                        last_error: None,
                        epoch: None,
                        source: PeerSource::Runtime,
                        origins: Vec::new(),
                    },
                ],
                forks: vec![ForkSummary {
                    origin: Fingerprint([6; 32]),
                    a: (3, [1; 32]),
                    b: (3, [2; 32]),
                }],
            },
        ],
        _ => Vec::new(),
    }
}

/// One configured peer as `peers` reports it (spec/replication.md §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The fingerprint of the peer's server key.
    pub fingerprint: Fingerprint,
    /// Where this server dials it; `None`: it only accepts the peer's links.
    pub address: Option<String>,
    /// Whether a link with it is up now.
    pub connected: bool,
    /// Seconds since the link last came up or went down; `None`: no link since the server
    /// started.
    pub since_secs: Option<u64>,
    /// Why the last link or dial ended (or was refused); `None`: none ended yet. Never holds
    /// a tab or a line break (encoding replaces them with spaces).
    pub last_error: Option<String>,
    /// The peer's store epoch, from its latest clock; `None` before the first.
    pub epoch: Option<Epoch>,
    /// Where the peer comes from: the config file, or `padd`.
    pub source: PeerSource,
    /// Per feed, what this server holds beside what the peer last said it holds, ascending
    /// by origin fingerprint.
    pub origins: Vec<OriginLag>,
}

/// Where a peer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerSource {
    /// The server's config file (`[[peers]]`): `pdel` refuses it.
    Config,
    /// An admin's `padd`, kept in the store.
    Runtime,
}

impl PeerSource {
    /// The word `peers` sends: `config` or `runtime`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerSource::Config => "config",
            PeerSource::Runtime => "runtime",
        }
    }
}

/// How far one feed differs between this server and a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginLag {
    /// The feed's origin.
    pub origin: Fingerprint,
    /// The seq of the head this server holds (0: none).
    pub held: u64,
    /// The seq the peer holds, from its latest clock and acknowledgements; `None`: not
    /// known (no link yet, or the peer listed no such feed).
    pub peer: Option<u64>,
}

impl OriginLag {
    /// How many entries this server lacks of what the peer holds.
    pub fn behind(&self) -> u64 {
        self.peer.unwrap_or(0).saturating_sub(self.held)
    }

    /// How many entries the peer lacks of what this server holds (all of them when its
    /// holding is not known).
    pub fn ahead(&self) -> u64 {
        self.held.saturating_sub(self.peer.unwrap_or(0))
    }
}

/// A quarantined origin and the two contradicting heads of its stored fork proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkSummary {
    /// The quarantined origin.
    pub origin: Fingerprint,
    /// The first signed head: `(seq, entry hash)`.
    pub a: (u64, [u8; 32]),
    /// The contradicting signed head: `(seq, entry hash)`.
    pub b: (u64, [u8; 32]),
}

/// Text safe inside a tab-separated line.
fn one_line(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

impl PeerStatus {
    /// The field of `peers`: a `peer` line (`peer FPR ADDRESS up|down SINCE EPOCH ERROR
    /// SOURCE`, tab-separated, an unknown value empty, SOURCE `config` or `runtime`), then one `origin FPR HELD PEER` line per feed,
    /// lines separated by `\n`.
    pub fn to_field(&self) -> Vec<u8> {
        let mut text = format!(
            "peer\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.fingerprint,
            one_line(self.address.as_deref().unwrap_or("")),
            if self.connected { "up" } else { "down" },
            self.since_secs.map(|s| s.to_string()).unwrap_or_default(),
            self.epoch.map(|e| hex_encode(&e)).unwrap_or_default(),
            one_line(self.last_error.as_deref().unwrap_or("")),
            self.source.as_str(),
        );
        for lag in &self.origins {
            text.push_str(&format!(
                "\norigin\t{}\t{}\t{}",
                lag.origin,
                lag.held,
                lag.peer.map(|s| s.to_string()).unwrap_or_default()
            ));
        }
        text.into_bytes()
    }

    /// Parses [`PeerStatus::to_field`]'s bytes. A `peer` line without SOURCE (as servers
    /// before `padd` send it) is a config peer. A carriage return anywhere is malformed:
    /// `to_field` never sends one (the address and error have theirs as spaces), so every
    /// status decoded encodes back to the same status.
    pub fn from_field(field: &[u8]) -> Result<PeerStatus, Error> {
        let bad = || Error::Malformed("peer status");
        let text = std::str::from_utf8(field).map_err(|_| bad())?;
        if text.contains('\r') {
            return Err(bad());
        }
        let mut lines = text.split('\n');
        let first: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
        let (["peer", fingerprint, address, state, since, epoch, error], source) =
            (first.get(..7).unwrap_or(&[]), first.get(7..).unwrap_or(&[]))
        else {
            return Err(bad());
        };
        let source = match source {
            [] | ["config"] => PeerSource::Config,
            ["runtime"] => PeerSource::Runtime,
            _ => return Err(bad()),
        };
        let optional = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let origins = lines
            .map(|line| {
                let parts: Vec<&str> = line.split('\t').collect();
                let ["origin", origin, held, peer] = parts.as_slice() else {
                    return Err(bad());
                };
                Ok(OriginLag {
                    origin: fingerprint_field(origin)?,
                    held: decimal(held.as_bytes()).ok_or_else(bad)?,
                    peer: optional_decimal(peer)?,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(PeerStatus {
            fingerprint: fingerprint_field(fingerprint)?,
            address: optional(address),
            connected: match *state {
                "up" => true,
                "down" => false,
                _ => return Err(bad()),
            },
            since_secs: optional_decimal(since)?,
            last_error: optional(error),
            epoch: match *epoch {
                "" => None,
                hex => Some(epoch_field(hex)?),
            },
            source,
            origins,
        })
    }
}

impl ForkSummary {
    /// The field of `peers`: `fork FPR SEQ_A HASH_A SEQ_B HASH_B`, tab-separated, hashes
    /// as 64 lower-case hex digits.
    pub fn to_field(&self) -> Vec<u8> {
        format!(
            "fork\t{}\t{}\t{}\t{}\t{}",
            self.origin,
            self.a.0,
            hex_encode(&self.a.1),
            self.b.0,
            hex_encode(&self.b.1)
        )
        .into_bytes()
    }

    /// Parses [`ForkSummary::to_field`]'s bytes.
    pub fn from_field(field: &[u8]) -> Result<ForkSummary, Error> {
        let bad = || Error::Malformed("fork summary");
        let text = std::str::from_utf8(field).map_err(|_| bad())?;
        let parts: Vec<&str> = text.split('\t').collect();
        let ["fork", origin, seq_a, hash_a, seq_b, hash_b] = parts.as_slice() else {
            return Err(bad());
        };
        let head = |seq: &str, hash: &str| -> Result<(u64, [u8; 32]), Error> {
            Ok((
                decimal(seq.as_bytes()).ok_or_else(bad)?,
                hex32(hash.as_bytes()).ok_or_else(bad)?,
            ))
        };
        Ok(ForkSummary {
            origin: fingerprint_field(origin)?,
            a: head(seq_a, hash_a)?,
            b: head(seq_b, hash_b)?,
        })
    }
}

fn fingerprint_field(text: &str) -> Result<Fingerprint, Error> {
    text.strip_prefix("SHA256:")
        .and_then(|hex| hex32(hex.as_bytes()))
        .map(Fingerprint)
        .ok_or(Error::Malformed("fingerprint"))
}

fn optional_decimal(text: &str) -> Result<Option<u64>, Error> {
    match text {
        "" => Ok(None),
        n => decimal(n.as_bytes())
            .map(Some)
            .ok_or(Error::Malformed("peer status number")),
    }
}

fn epoch_field(hex: &str) -> Result<Epoch, Error> {
    let bad = || Error::Malformed("peer epoch");
    if hex.len() != 2 * EPOCH_LEN {
        return Err(bad());
    }
    let mut epoch = [0u8; EPOCH_LEN];
    for (byte, pair) in epoch.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(digits, 16).map_err(|_| bad())?;
    }
    Ok(epoch)
}

/// `peers`' fields: one per peer ([`PeerStatus::to_field`]), then one per quarantined
/// origin ([`ForkSummary::to_field`]).
pub(super) fn peers_fields(peers: &[PeerStatus], forks: &[ForkSummary]) -> Vec<Vec<u8>> {
    peers
        .iter()
        .map(PeerStatus::to_field)
        .chain(forks.iter().map(ForkSummary::to_field))
        .collect()
}

/// Decodes `peers`' fields: `peer` fields first, then `fork` fields.
fn decode_peers(fields: &Fields<'_>) -> Result<Reply, Error> {
    let mut peers = Vec::new();
    let mut forks = Vec::new();
    for field in fields.0 {
        if field.starts_with(b"fork\t") {
            forks.push(ForkSummary::from_field(field)?);
        } else if forks.is_empty() {
            peers.push(PeerStatus::from_field(field)?);
        } else {
            return Err(Error::Malformed("a peer after the forks"));
        }
    }
    Ok(Reply::Peers { peers, forks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(fields: &[&[u8]]) -> Result<Reply, Error> {
        let fields: Vec<Vec<u8>> = fields.iter().map(|f| f.to_vec()).collect();
        decode_reply(&Command::Peers, &Fields(&fields))
    }

    #[test]
    fn peers_fields_refuse_what_they_do_not_define() {
        let fpr = Fingerprint([1; 32]).to_string();
        let peer = format!("peer\t{fpr}\t\tdown\t\t\t");
        let fork = format!("fork\t{fpr}\t1\t{}\t1\t{}", "a".repeat(64), "b".repeat(64));
        let good = reply(&[peer.as_bytes(), fork.as_bytes()]).unwrap();
        let Reply::Peers { peers, forks } = &good else {
            panic!("{good:?}");
        };
        assert_eq!((peers.len(), forks.len()), (1, 1));
        assert_eq!(peers[0].address, None);
        assert_eq!(
            reply(&[]).unwrap(),
            Reply::Peers {
                peers: Vec::new(),
                forks: Vec::new()
            }
        );
        for bad in [
            format!("peer\t{fpr}\t\tsideways\t\t\t"),
            format!("peer\t{fpr}\t\tdown\t\t\t\textra"),
            format!("peer\t{fpr}\t\tdown\tsoon\t\t"),
            format!("peer\t{fpr}\t\tdown\t\tabcd\t"),
            "peer\tSHA256:12\t\tdown\t\t\t".to_owned(),
            format!("{peer}\norigin\t{fpr}\t-1\t"),
            format!("{peer}\norigin\t{fpr}\t1"),
            format!("{peer}\nsomething else"),
            format!("fork\t{fpr}\t1\tzz\t1\t{}", "b".repeat(64)),
            "whatever".to_owned(),
            // A carriage return, which a server sends as a space (found by reading the
            // fuzz target's round trip): in the address, in the error.
            format!("peer\t{fpr}\ta\rb\tdown\t\t\t"),
            format!("peer\t{fpr}\t\tdown\t\t\tbad\rthing"),
        ] {
            assert!(reply(&[bad.as_bytes()]).is_err(), "{bad:?}");
        }
        assert!(
            reply(&[fork.as_bytes(), peer.as_bytes()]).is_err(),
            "peers come before forks"
        );
        assert!(reply(&[&[0xff]]).is_err(), "not UTF-8");
    }

    #[test]
    fn an_error_with_line_breaks_stays_one_value() {
        let status = PeerStatus {
            fingerprint: Fingerprint([2; 32]),
            address: Some("h:1".into()),
            connected: false,
            since_secs: Some(3),
            last_error: Some("bad\tthing\nhappened\r!".into()),
            epoch: Some([0xa5; EPOCH_LEN]),
            source: PeerSource::Runtime,
            origins: Vec::new(),
        };
        let back = PeerStatus::from_field(&status.to_field()).unwrap();
        assert_eq!(back.last_error.as_deref(), Some("bad thing happened !"));
        assert_eq!(back.epoch, status.epoch);
        assert_eq!(back.since_secs, Some(3));
        assert_eq!(back.source, PeerSource::Runtime);
    }

    #[test]
    fn a_peer_line_names_its_source_or_is_a_config_peer() {
        let fpr = Fingerprint([1; 32]).to_string();
        let source = |line: String| match reply(&[line.as_bytes()]) {
            Ok(Reply::Peers { peers, .. }) => Ok(peers[0].source),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(
            source(format!("peer\t{fpr}\t\tdown\t\t\t")).unwrap(),
            PeerSource::Config
        );
        assert_eq!(
            source(format!("peer\t{fpr}\t\tdown\t\t\t\tconfig")).unwrap(),
            PeerSource::Config
        );
        assert_eq!(
            source(format!("peer\t{fpr}\t\tdown\t\t\t\truntime")).unwrap(),
            PeerSource::Runtime
        );
        assert!(source(format!("peer\t{fpr}\t\tdown\t\t\t\truntime\tx")).is_err());
        assert!(source(format!("peer\t{fpr}\t\tdown\t\t")).is_err());
    }

    fn parse_padd(args: &[&[u8]]) -> Result<Command, ErrorReply> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        parse(CommandKind::Padd, &args)
    }

    #[test]
    fn padd_and_pdel_refuse_bad_fingerprints_and_addresses() {
        let fpr = Fingerprint([7; 32]).to_string();
        assert_eq!(
            parse_padd(&[fpr.as_bytes(), b"h.example:1"]).unwrap(),
            Command::Padd {
                fingerprint: Fingerprint([7; 32]),
                address: Some("h.example:1".into()),
            }
        );
        assert_eq!(
            parse_padd(&[fpr.as_bytes(), b"[::1]:7118"]).unwrap(),
            Command::Padd {
                fingerprint: Fingerprint([7; 32]),
                address: Some("[::1]:7118".into()),
            }
        );
        let long = format!("{}:1", "h".repeat(MAX_PEER_ADDRESS));
        for bad in [
            b"h.example".as_slice(),
            b"h.example:0",
            b"h.example:65536",
            b"h.example:port",
            b"h.example:+1",
            b":7118",
            b"h example:1",
            b"h\n:1",
            b"\xff:1",
            long.as_bytes(),
        ] {
            let e = parse_padd(&[fpr.as_bytes(), bad]).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadArguments, "{bad:?}");
        }
        for bad in [
            b"SHA256:12".as_slice(),
            b"",
            &[b'z'; 64],
            b"SHA256:zz00000000000000000000000000000000000000000000000000000000000000",
        ] {
            let e = parse_padd(&[bad]).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadArguments, "{bad:?}");
            assert!(e.message.contains("fingerprint"), "{}", e.message);
            let e = parse(CommandKind::Pdel, &[bad.to_vec()]).unwrap_err();
            assert!(e.message.contains("fingerprint"), "{}", e.message);
        }
    }
}
