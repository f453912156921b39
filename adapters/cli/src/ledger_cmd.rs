//! The ledger's client subcommands: `rput`, `rget`, `rabs`, `rhead`, `rsize`, `rcount`,
//! `rlist`, `rcheck`. Every one but `rput` reads the server's own feed, or with `--origin
//! FPR` the feed of that origin the server holds (a replica).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use rand::RngExt;
use vserv_core::Fingerprint;
use vserv_core::commands::{Command, RLIST_MAX_LIMIT, RecordSelector, Reply, SeqRange};
use vserv_core::ledger::{Entry, MAX_BODY, SignedHead, body_to_fields, fields_to_body};

use crate::client_cmd::{self, Connected};
use crate::paging::Seqs;
use crate::show::{escape, escape_bytes};

/// `vserv rput` options.
#[derive(Args, Debug)]
pub struct RputArgs {
    /// The record's kind: 1-64 bytes of [a-z0-9._-], starting with [a-z0-9].
    pub kind: String,
    /// The body: fields FIELD=VALUE (stored in field form, in this order), or @FILE to send
    /// a file's bytes as they are (@- reads standard input).
    #[arg(required = true, value_name = "FIELD=VALUE|@FILE")]
    pub body: Vec<String>,
    /// The record id (default: 16 random bytes in hex). A record id can be stored once.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// `vserv rget` options.
#[derive(Args, Debug)]
pub struct RgetArgs {
    /// Which entry: SEQ, id:RECORD_ID or hash:HEX (64 hex digits).
    #[arg(value_name = "SEQ|id:ID|hash:HEX")]
    pub selector: String,
    /// Write only the body's bytes to standard output, as stored.
    #[arg(long)]
    pub raw: bool,
    /// Read the feed of this origin the server holds (its key fingerprint,
    /// SHA256:<64 hex digits>) instead of the server's own.
    #[arg(long, value_name = "FPR")]
    pub origin: Option<Fingerprint>,
}

/// `vserv rsize` options.
#[derive(Args, Debug)]
pub struct RsizeArgs {
    /// Count only the entries of this kind.
    pub kind: Option<String>,
    /// Read the feed of this origin the server holds (its key fingerprint,
    /// SHA256:<64 hex digits>) instead of the server's own.
    #[arg(long, value_name = "FPR")]
    pub origin: Option<Fingerprint>,
}

/// `vserv rabs` options.
#[derive(Args, Debug)]
pub struct RabsArgs {
    /// Position: 1 is the first entry, -1 the last, -2 the one before it.
    #[arg(allow_negative_numbers = true)]
    pub pos: i64,
    /// Read the feed of this origin the server holds (its key fingerprint,
    /// SHA256:<64 hex digits>) instead of the server's own.
    #[arg(long, value_name = "FPR")]
    pub origin: Option<Fingerprint>,
}

/// `vserv rcount` options.
#[derive(Args, Debug)]
pub struct RcountArgs {
    /// The kind counted.
    pub kind: String,
    /// First seq of the range.
    pub from: u64,
    /// Last seq of the range.
    pub to: u64,
    /// Read the feed of this origin the server holds (its key fingerprint,
    /// SHA256:<64 hex digits>) instead of the server's own.
    #[arg(long, value_name = "FPR")]
    pub origin: Option<Fingerprint>,
}

/// `vserv rlist` options.
#[derive(Args, Debug)]
pub struct RlistArgs {
    /// The kind listed, or `*` for every kind.
    pub kind: String,
    /// First seq listed.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Last seq listed (default: the end of the ledger).
    #[arg(long)]
    pub to: Option<u64>,
    /// Stop after this many entries.
    #[arg(long)]
    pub max: Option<u64>,
    /// Read the feed of this origin the server holds (its key fingerprint,
    /// SHA256:<64 hex digits>) instead of the server's own.
    #[arg(long, value_name = "FPR")]
    pub origin: Option<Fingerprint>,
    /// One JSON object per entry and line (JSON Lines) instead of text: seq, hash, kind,
    /// author, record_id (text, or null when not UTF-8), record_id_hex, time (RFC 3339, UTC)
    /// and timestamp_ms.
    #[arg(long)]
    pub json: bool,
}

/// `vserv rhead` options.
#[derive(Args, Debug)]
pub struct RheadArgs {
    /// Read the feed of this origin the server holds (its key fingerprint,
    /// SHA256:<64 hex digits>) instead of the server's own.
    #[arg(long, value_name = "FPR")]
    pub origin: Option<Fingerprint>,
}

/// `vserv rhave` options.
#[derive(Args, Debug)]
pub struct RhaveArgs {
    /// The record id asked about (as given to `rput --id`).
    pub record_id: String,
    /// Read the feed of this origin the server holds (its key fingerprint,
    /// SHA256:<64 hex digits>) instead of the server's own.
    #[arg(long, value_name = "FPR")]
    pub origin: Option<Fingerprint>,
}

/// `vserv rcheck` options.
#[derive(Args, Debug)]
pub struct RcheckArgs {
    /// First seq of the range to check (with TO; default: the whole chain).
    pub from: Option<u64>,
    /// Last seq of the range to check.
    pub to: Option<u64>,
    /// Read the feed of this origin the server holds (its key fingerprint,
    /// SHA256:<64 hex digits>) instead of the server's own.
    #[arg(long, value_name = "FPR")]
    pub origin: Option<Fingerprint>,
}

/// `vserv rabs POS`: prints the entry at a position (negative counts from the end).
pub fn rabs(connected: &mut Connected, args: &RabsArgs) -> anyhow::Result<()> {
    let reply = connected.client.call(&Command::Rabs {
        pos: args.pos,
        origin: args.origin,
    })?;
    let Reply::Record(entry) = reply else {
        bail!("unexpected reply to rabs: {reply:?}");
    };
    print!("{}", show_entry(&entry));
    Ok(())
}

/// `vserv rcount KIND FROM TO`: how many entries of a kind a seq range holds.
pub fn rcount(connected: &mut Connected, args: &RcountArgs) -> anyhow::Result<()> {
    let range = SeqRange {
        from: args.from,
        to: args.to,
    };
    connected.run(&Command::Rcount {
        kind: args.kind.clone(),
        range,
        origin: args.origin,
    })
}

/// `vserv rlist KIND|*`: one line per entry of the range, following the server's pages
/// (each page is one `rlist` request continuing at the previous page's `next`).
pub fn rlist(connected: &mut Connected, args: &RlistArgs) -> anyhow::Result<()> {
    let kind = (args.kind != "*").then(|| args.kind.clone());
    let mut next = Some(args.from);
    let mut left = args.max.unwrap_or(u64::MAX);
    let mut seqs = Seqs::new("rlist");
    let mut out = std::io::stdout().lock();
    while let Some(from) = next
        && left > 0
    {
        let command = Command::Rlist {
            kind: kind.clone(),
            range: SeqRange {
                from,
                to: args.to.unwrap_or(u64::MAX),
            },
            limit: Some(
                u32::try_from(left.min(u64::from(RLIST_MAX_LIMIT))).unwrap_or(RLIST_MAX_LIMIT),
            ),
            origin: args.origin,
        };
        let Reply::Page {
            entries,
            next: after,
        } = connected.client.call(&command)?
        else {
            bail!("unexpected reply to rlist");
        };
        for entry in &entries {
            if args.json {
                writeln!(out, "{}", entry_json(entry))?;
                continue;
            }
            writeln!(
                out,
                "{} {} {} {} {}",
                entry.seq(),
                hex::encode(entry.hash()),
                escape(entry.kind()),
                escape(entry.author()),
                escape_bytes(entry.record_id())
            )?;
        }
        left = left.saturating_sub(entries.len() as u64);
        if let Some(after) = after {
            seqs.follow(from, after)?;
        }
        next = after;
    }
    out.flush()?;
    Ok(())
}

/// One `rlist --json` line: the entry's fields, without its body.
pub fn entry_json(entry: &vserv_core::ledger::Entry) -> serde_json::Value {
    serde_json::json!({
        "seq": entry.seq(),
        "hash": hex::encode(entry.hash()),
        "kind": entry.kind(),
        "author": entry.author(),
        "record_id": std::str::from_utf8(entry.record_id()).ok(),
        "record_id_hex": hex::encode(entry.record_id()),
        "time": rfc3339_ms(entry.timestamp()),
        "timestamp_ms": entry.timestamp(),
    })
}

/// `vserv rput`: appends a record and prints its seq, entry hash and record id.
pub fn rput(connected: &mut Connected, args: &RputArgs) -> anyhow::Result<()> {
    let body = body_from_args(&args.body)?;
    let record_id = match &args.id {
        Some(id) => id.clone(),
        None => hex::encode(rand::rng().random::<[u8; 16]>()),
    };
    let reply = connected.client.call(&Command::Rput {
        kind: args.kind.clone(),
        record_id: record_id.clone().into_bytes(),
        body,
    })?;
    let Reply::Appended { seq, hash } = reply else {
        bail!("unexpected reply to rput: {reply:?}");
    };
    println!("seq {seq} hash {}", hex::encode(hash));
    println!("record {record_id}");
    Ok(())
}

/// `vserv rget`: prints one entry, or with `--raw` only its body's bytes.
pub fn rget(connected: &mut Connected, args: &RgetArgs) -> anyhow::Result<()> {
    let selector = parse_selector(&args.selector)?;
    let reply = connected.client.call(&Command::Rget {
        selector,
        origin: args.origin,
    })?;
    let Reply::Record(entry) = reply else {
        bail!("unexpected reply to rget: {reply:?}");
    };
    let mut stdout = std::io::stdout().lock();
    if args.raw {
        stdout.write_all(entry.body())?;
    } else {
        stdout.write_all(show_entry(&entry).as_bytes())?;
    }
    stdout.flush()?;
    Ok(())
}

/// `vserv rhead [--origin FPR]`: fetches the signed head, checks its signature against the
/// server's key (or the origin's), prints it.
pub fn rhead(connected: &mut Connected, args: &RheadArgs) -> anyhow::Result<()> {
    let signed = fetch_head(connected, args.origin.as_ref())?
        .ok_or_else(|| anyhow!("the ledger is empty: there is no signed head yet"))?;
    client_cmd::print_reply(&Reply::Head(signed), None);
    Ok(())
}

/// `vserv rsize [KIND]`: how many entries the ledger holds (of a kind).
pub fn rsize(connected: &mut Connected, args: &RsizeArgs) -> anyhow::Result<()> {
    connected.run(&Command::Rsize {
        kind: args.kind.clone(),
        origin: args.origin,
    })
}

/// `vserv rhave RECORD_ID [--origin FPR]`: whether the ledger holds a record with this id
/// (`yes` or `no`).
pub fn rhave(connected: &mut Connected, args: &RhaveArgs) -> anyhow::Result<()> {
    connected.run(&Command::Rhave {
        record_id: args.record_id.clone().into_bytes(),
        origin: args.origin,
    })
}

/// `vserv rcheck`: the server re-verifies its chain (admins); a broken chain is a failure.
pub fn rcheck(connected: &mut Connected, args: &RcheckArgs) -> anyhow::Result<()> {
    let range = match (args.from, args.to) {
        (Some(from), Some(to)) => Some(SeqRange { from, to }),
        (None, None) => None,
        _ => bail!("rcheck takes both FROM and TO, or neither"),
    };
    let reply = connected.client.call(&Command::Rcheck {
        range,
        origin: args.origin,
    })?;
    match reply {
        Reply::ChainOk { .. } => {
            client_cmd::print_reply(&reply, None);
            Ok(())
        }
        Reply::ChainBad {
            seq: Some(seq),
            reason,
        } => bail!(
            "the server's chain is broken at seq {seq}: {}",
            escape(&reason)
        ),
        Reply::ChainBad { seq: None, reason } => {
            bail!("the server's chain is broken: {}", escape(&reason))
        }
        other => bail!("unexpected reply to rcheck: {other:?}"),
    }
}

/// The signed head of the server's feed, or of the held feed of `origin` (`None` for an
/// empty own feed), after checking that it is signed by the key of the feed asked for: the
/// key this session authenticated, or the one whose fingerprint is `origin`. A feed of
/// another origin that the server does not hold is an error.
pub fn fetch_head(
    connected: &mut Connected,
    origin: Option<&Fingerprint>,
) -> anyhow::Result<Option<SignedHead>> {
    let own = connected
        .client
        .session()
        .server_key()
        .ok_or_else(|| anyhow!("the session has no server key (not connected)"))?
        .fingerprint();
    let expected = origin.copied().unwrap_or(own);
    let signed = match connected.client.call(&Command::Rhead {
        origin: origin.copied(),
    }) {
        Ok(Reply::Head(signed)) => signed,
        Ok(other) => bail!("unexpected reply to rhead: {other:?}"),
        Err(vserv_service::client::ClientError::Server(e))
            if e.code == vserv_core::ErrorCode::NotFound =>
        {
            if expected == own {
                return Ok(None);
            }
            bail!(
                "no feed of {expected} on the server: {}",
                escape(&e.message)
            );
        }
        Err(e) => return Err(e.into()),
    };
    if signed.head.origin.fingerprint() != expected {
        bail!(
            "the server sent a head of another feed ({}), not the one asked for ({expected})",
            signed.head.origin.fingerprint(),
        );
    }
    signed
        .verify()
        .context("the server's signed head does not verify")?;
    Ok(Some(signed))
}

/// The body from `rput`'s arguments: one `@FILE` (or `@-`), or fields in field form.
fn body_from_args(args: &[String]) -> anyhow::Result<Vec<u8>> {
    if let [only] = args
        && let Some(path) = only.strip_prefix('@')
    {
        return read_body(path);
    }
    if let Some(file) = args.iter().find(|a| a.starts_with('@')) {
        bail!("{file}: give either @FILE alone or FIELD=VALUE arguments, not both");
    }
    let fields = args
        .iter()
        .map(|arg| {
            arg.split_once('=')
                .ok_or_else(|| anyhow!("'{arg}' is not FIELD=VALUE (or @FILE)"))
        })
        .collect::<anyhow::Result<Vec<(&str, &str)>>>()?;
    fields_to_body(&fields).context("in the fields (field N is the Nth FIELD=VALUE)")
}

/// A body file's bytes (`-`: standard input), refusing more than [`MAX_BODY`] bytes.
fn read_body(path: &str) -> anyhow::Result<Vec<u8>> {
    let limit = u64::try_from(MAX_BODY + 1).unwrap_or(u64::MAX);
    let mut body = Vec::new();
    if path == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut body)
            .context("reading the body from standard input")?;
    } else {
        std::fs::File::open(Path::new(path))
            .and_then(|f| f.take(limit).read_to_end(&mut body))
            .with_context(|| format!("reading the body file {path}"))?;
    }
    if body.len() > MAX_BODY {
        bail!("the body is larger than {MAX_BODY} bytes");
    }
    Ok(body)
}

/// `SEQ`, `id:ID` or `hash:HEX`.
fn parse_selector(text: &str) -> anyhow::Result<RecordSelector> {
    if let Some(id) = text.strip_prefix("id:") {
        if id.is_empty() {
            bail!("id: needs a record id");
        }
        return Ok(RecordSelector::Id(id.as_bytes().to_vec()));
    }
    if let Some(hex) = text.strip_prefix("hash:") {
        let bytes = hex::decode(hex)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        return bytes
            .map(RecordSelector::Hash)
            .ok_or_else(|| anyhow!("hash:HEX needs 64 hex digits"));
    }
    match text.parse::<u64>() {
        Ok(seq) if seq >= 1 => Ok(RecordSelector::Seq(seq)),
        _ => bail!("'{text}' is not a seq (1 or more), id:RECORD_ID or hash:HEX"),
    }
}

/// An entry as `rget` prints it: one `name: value` line per header field, then the body as
/// fields (field form), text (UTF-8) or hex.
pub fn show_entry(entry: &Entry) -> String {
    let mut out = String::new();
    let mut line = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    };
    line("seq", &entry.seq().to_string());
    line("time", &rfc3339_ms(entry.timestamp()));
    line("author", &escape(entry.author()));
    line("kind", &escape(entry.kind()));
    line("record", &show_record_id(entry.record_id()));
    line("hash", &hex::encode(entry.hash()));
    let body = entry.body();
    if body.is_empty() {
        line("body", "empty");
        return out;
    }
    if let Ok(fields) = body_to_fields(body) {
        line("body", &format!("{} fields", fields.len()));
        for (key, value) in fields {
            out.push_str(&format!("  {} = {}\n", escape(&key), escape(&value)));
        }
    } else if let Ok(text) = std::str::from_utf8(body) {
        line("body", &format!("text, {} bytes", body.len()));
        for text_line in text.lines() {
            out.push_str(&format!("  {}\n", escape(text_line)));
        }
    } else {
        line("body", &format!("hex, {} bytes", body.len()));
        for chunk in body.chunks(32) {
            out.push_str(&format!("  {}\n", hex::encode(chunk)));
        }
    }
    out
}

/// A record id as text when it is printable UTF-8, else `hex:` and its bytes in hex.
fn show_record_id(id: &[u8]) -> String {
    match std::str::from_utf8(id) {
        Ok(text) if !text.chars().any(crate::show::is_unsafe) && !text.starts_with("hex:") => {
            text.to_owned()
        }
        _ => format!("hex:{}", hex::encode(id)),
    }
}

/// Unix milliseconds as an RFC 3339 UTC time with milliseconds, e.g.
/// `2024-02-29T23:59:59.999Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm,
/// for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, the start of a 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_ms(1_735_689_600_123), "2025-01-01T00:00:00.123Z");
        assert_eq!(rfc3339_ms(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
        // The largest timestamp neither panics nor overflows.
        assert!(rfc3339_ms(u64::MAX).ends_with(".615Z"));
    }

    #[test]
    fn selectors() {
        assert_eq!(parse_selector("7").ok(), Some(RecordSelector::Seq(7)));
        assert_eq!(
            parse_selector("id:r1").ok(),
            Some(RecordSelector::Id(b"r1".to_vec()))
        );
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_selector(&format!("hash:{hex}")).ok(),
            Some(RecordSelector::Hash([0xab; 32]))
        );
        for bad in ["0", "-1", "x", "id:", "hash:abc", ""] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn body_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            body_from_args(&args(&["name=alice", "eq=a=b"])).ok(),
            Some(b"name=alice\neq=a=b\n".to_vec())
        );
        assert!(body_from_args(&args(&["novalue"])).is_err());
        assert!(body_from_args(&args(&["a=1", "a=2"])).is_err());
        assert!(body_from_args(&args(&["a=1", "@file"])).is_err());
        assert!(body_from_args(&args(&["Bad=1"])).is_err());
    }

    #[test]
    fn record_ids_show_as_text_or_hex() {
        assert_eq!(show_record_id(b"r-1"), "r-1");
        assert_eq!(show_record_id(b"a\nb"), "hex:610a62");
        assert_eq!(show_record_id(&[0xff]), "hex:ff");
        assert_eq!(show_record_id(b"hex:00"), "hex:6865783a3030");
        assert_eq!(show_record_id("a\u{202e}b".as_bytes()), "hex:61e280ae62");
    }
}
