//! The replication commands: `peer`, with which a dialing server proves its key and turns
//! the connection into a replication link (spec/replication.md §2), and `peers`, the admin's
//! view of every configured peer's link and of the quarantined origins (§2.1): their argument
//! and reply codecs, the status values, and sample values.

use super::args::{decimal, hex_encode, hex32, usage_error};
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::replication::{EPOCH_LEN, Epoch};
use crate::secure::Fingerprint;
use crate::wire::ErrorReply;
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
        _ => return Err(bad()),
    })
}

/// The wire arguments of a replication command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Peer { key, signature } => vec![key.to_vec(), signature.to_vec()],
        _ => Vec::new(),
    }
}

/// Decodes the reply to a replication command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Peer { .. } => fields.want(0).map(|()| Reply::Done),
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
    ]
}

/// Sample replies to a replication command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, values: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Peer { .. } => vec![Reply::Done],
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
    /// Per feed, what this server holds beside what the peer last said it holds, ascending
    /// by origin fingerprint.
    pub origins: Vec<OriginLag>,
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
    /// The field of `peers`: a `peer` line (`peer FPR ADDRESS up|down SINCE EPOCH ERROR`,
    /// tab-separated, an unknown value empty), then one `origin FPR HELD PEER` line per feed,
    /// lines separated by `\n`.
    pub fn to_field(&self) -> Vec<u8> {
        let mut text = format!(
            "peer\t{}\t{}\t{}\t{}\t{}\t{}",
            self.fingerprint,
            one_line(self.address.as_deref().unwrap_or("")),
            if self.connected { "up" } else { "down" },
            self.since_secs.map(|s| s.to_string()).unwrap_or_default(),
            self.epoch.map(|e| hex_encode(&e)).unwrap_or_default(),
            one_line(self.last_error.as_deref().unwrap_or("")),
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

    /// Parses [`PeerStatus::to_field`]'s bytes.
    pub fn from_field(field: &[u8]) -> Result<PeerStatus, Error> {
        let bad = || Error::Malformed("peer status");
        let text = std::str::from_utf8(field).map_err(|_| bad())?;
        let mut lines = text.split('\n');
        let first: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
        let ["peer", fingerprint, address, state, since, epoch, error] = first.as_slice() else {
            return Err(bad());
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
            last_error: Some("bad\tthing\nhappened".into()),
            epoch: Some([0xa5; EPOCH_LEN]),
            origins: Vec::new(),
        };
        let back = PeerStatus::from_field(&status.to_field()).unwrap();
        assert_eq!(back.last_error.as_deref(), Some("bad thing happened"));
        assert_eq!(back.epoch, status.epoch);
        assert_eq!(back.since_secs, Some(3));
    }
}
