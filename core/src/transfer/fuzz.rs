//! Body of the `transfer` cargo-fuzz target (only with the `fuzzing` feature).
//!
//! Input: `selector:u8`, then the body. `selector % 3`:
//! - 0: the body is split into arguments (`len:u8 | bytes`, a short tail is taken as it is)
//!   and fed to every argument parser and reply decoder of the transfer commands, and to
//!   [`UploadState::decode`]; whatever decodes must re-encode to the same bytes.
//! - 1: an [`UploadReceiver`] of `size:u16` bytes is driven by operations read from the rest;
//!   it must accept exactly the in-order, in-bounds chunks and only the right hash.
//! - 2: a [`DownloadReceiver`] (`size:u16`, `window:u8`, `chunk:u8`) gets requests and
//!   arbitrary replies; it must never exceed its window and must release bytes in order.
//!
//! Every check panics (a fuzzer crash) only when a machine breaks a promise of its docs.

use sha2::{Digest, Sha256};

use super::{
    DownloadReceiver, FcloseArgs, FdoneArgs, FdoneReply, FgetArgs, FgetReply, FileHasher,
    FopenArgs, FopenReply, FputArgs, FreadArgs, FreadReply, MAX_FPUT_DATA, ResumeOutcome,
    TransferError, UploadReceiver, UploadState,
};

/// Runs one fuzz input (see the module docs).
pub fn transfer(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => codecs(body),
        1 => upload(body),
        _ => download(body),
    }
}

fn split_args(mut body: &[u8]) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    while let Some((&n, rest)) = body.split_first() {
        let n = usize::from(n).min(rest.len());
        let (arg, tail) = rest.split_at(n);
        args.push(arg.to_vec());
        body = tail;
    }
    args
}

fn codecs(body: &[u8]) {
    let args = split_args(body);
    if let Ok(a) = FopenArgs::parse(&args) {
        assert_eq!(a.to_args(), args, "fopen args round trip");
    }
    if let Ok(a) = FputArgs::parse(&args) {
        assert_eq!(a.to_args(), args, "fput args round trip");
        assert!(!a.data.is_empty() && a.data.len() <= MAX_FPUT_DATA);
    }
    if let Ok(a) = FdoneArgs::parse(&args) {
        assert_eq!(a.to_args(), args, "fdone args round trip");
    }
    if let Ok(a) = FgetArgs::parse(&args) {
        assert_eq!(a.to_args(), args, "fget args round trip");
    }
    if let Ok(a) = FreadArgs::parse(&args) {
        assert_eq!(a.to_args(), args, "fread args round trip");
    }
    if let Ok(a) = FcloseArgs::parse(&args) {
        assert_eq!(a.to_args(), args, "fclose args round trip");
    }
    if let Ok(r) = FopenReply::from_fields(&args) {
        assert_eq!(r.to_fields(), args, "fopen reply round trip");
    }
    if let Ok(r) = FdoneReply::from_fields(&args) {
        assert_eq!(r.to_fields(), args, "fdone reply round trip");
    }
    if let Ok(r) = FgetReply::from_fields(&args) {
        assert_eq!(r.to_fields(), args, "fget reply round trip");
    }
    if let Ok(r) = FreadReply::from_fields(args.clone()) {
        assert_eq!(r.into_fields(), args, "fread reply round trip");
    }
    if let Ok(s) = UploadState::decode(body) {
        assert_eq!(&s.encode()[..], body, "upload state round trip");
    }
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
}

fn upload(body: &[u8]) {
    let mut input = Bytes(body);
    let Some(size) = input.u16() else { return };
    let size = u64::from(size);
    let mut rx = UploadReceiver::new(size);
    // The bytes accepted, to check hashes against (bounded: at most `size` bytes).
    let mut accepted: Vec<u8> = Vec::new();
    // The driver's hasher once it took the receiver's (ops with the high bit set).
    let mut driver: Option<FileHasher> = None;
    while let Some(op) = input.u8() {
        let before = rx.offset();
        if op & 0x80 != 0 && driver.is_none() {
            driver = rx.take_hasher();
            assert!(driver.is_some(), "a receiver's hasher was gone");
            assert_eq!(rx.checkpoint(), Err(TransferError::HasherTaken));
        }
        match op % 4 {
            0 | 1 => {
                // A chunk at the expected offset (op 0) or at a drawn one (op 1).
                let offset = if op % 4 == 0 {
                    before
                } else {
                    u64::from(input.u16().unwrap_or(0))
                };
                let len = usize::from(input.u8().unwrap_or(0));
                let fill = input.u8().unwrap_or(0);
                let chunk = vec![fill; len];
                match rx.accept(offset, &chunk) {
                    Ok(w) => {
                        assert!(offset == before && len > 0 && before + len as u64 <= size);
                        assert_eq!((w.offset, w.len), (offset, len));
                        if let Some(hasher) = &mut driver {
                            hasher.update(&chunk);
                        }
                        accepted.extend_from_slice(&chunk);
                        assert_eq!(rx.offset(), before + len as u64);
                    }
                    Err(TransferError::Finished) => assert_eq!(rx.offset(), before),
                    Err(_) => {
                        assert!(offset != before || len == 0 || before + len as u64 > size);
                        assert_eq!(rx.offset(), before, "a refused chunk changed the state");
                    }
                }
            }
            2 => {
                let right: [u8; 32] = Sha256::digest(&accepted).into();
                let claimed = if input.u8().unwrap_or(0) % 2 == 0 {
                    right
                } else {
                    [0x5a; 32]
                };
                let done_before = rx.is_done();
                let finished = match &driver {
                    Some(hasher) => rx.finish_with(&claimed, hasher.clone()),
                    None => rx.finish(&claimed),
                };
                match finished {
                    Ok(reply) => {
                        assert!(!done_before && before == size && claimed == right);
                        assert_eq!(reply.sha256, right);
                        return;
                    }
                    Err(TransferError::Incomplete { .. }) => assert!(before < size),
                    Err(TransferError::HashMismatch) => {
                        assert!(claimed != right);
                        return;
                    }
                    Err(e) => panic!("unexpected finish error {e}"),
                }
            }
            _ => {
                // Save, lose the machine, restore from a partial file of `keep` bytes.
                let saved = match driver.take() {
                    Some(hasher) => UploadState {
                        size,
                        offset: before,
                        prefix_sha256: hasher.digest(),
                    },
                    None => rx
                        .checkpoint()
                        .unwrap_or_else(|e| panic!("no checkpoint while hashing: {e}")),
                };
                let state = UploadState::decode(&saved.encode())
                    .unwrap_or_else(|e| panic!("own state does not decode: {e}"));
                let keep = usize::from(input.u16().unwrap_or(0)).min(accepted.len());
                let mut restore = UploadReceiver::restore(&state);
                if restore.feed(&accepted[..keep]).is_err() {
                    panic!("refeed within the saved offset refused");
                }
                let (next, outcome) = restore.finish();
                if keep == accepted.len() {
                    assert_eq!(outcome, ResumeOutcome::Resumed(before));
                    assert_eq!(next.offset(), before);
                } else {
                    assert_eq!(outcome, ResumeOutcome::Restarted);
                    assert_eq!(next.offset(), 0);
                    accepted.clear();
                }
                rx = next;
            }
        }
    }
}

fn download(body: &[u8]) {
    let mut input = Bytes(body);
    let (Some(size), Some(window), Some(chunk)) = (input.u16(), input.u8(), input.u8()) else {
        return;
    };
    let size = u64::from(size);
    let content = |i: u64| (i.wrapping_mul(31) >> 3) as u8;
    let all: Vec<u8> = (0..size).map(content).collect();
    let sha: [u8; 32] = Sha256::digest(&all).into();
    let Ok(mut rx) = DownloadReceiver::new(7, size, sha, usize::from(window), usize::from(chunk))
    else {
        assert!(window == 0 || chunk == 0);
        return;
    };
    let mut asked: Vec<FreadArgs> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    while let Some(op) = input.u8() {
        if op % 2 == 0 {
            if let Some(req) = rx.next_request() {
                asked.push(req);
            }
        } else if !asked.is_empty() {
            let pick = usize::from(op / 2) % asked.len();
            let req = asked.swap_remove(pick);
            let corrupt = input.u8().unwrap_or(0);
            let start = req.offset as usize;
            let mut data = all[start..start + req.len as usize].to_vec();
            if corrupt == 1 {
                data.pop();
            }
            let accepted = rx.on_data(req.offset, data).is_ok();
            assert_eq!(accepted, corrupt != 1 || req.len == 0);
            while let Some((offset, bytes)) = rx.pop_ready() {
                assert_eq!(offset, out.len() as u64, "released out of order");
                out.extend_from_slice(&bytes);
            }
        }
        assert!(rx.in_use() <= usize::from(window), "window exceeded");
        assert_eq!(&out[..], &all[..out.len()]);
    }
    if rx.is_complete() {
        assert_eq!(rx.finish(), Ok(sha));
    }
}
