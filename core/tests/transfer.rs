//! The transfer machines (core/src/transfer, spec/files.md): uploads and downloads of any
//! size complete with matching SHA-256 under arbitrary interleavings, resume from saved
//! state, refuse corruption, gaps, repeats and overruns with typed errors, and never buffer
//! more than the window. Large files use a synthetic byte generator: nothing big is allocated.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use vserv_core::transfer::{
    DownloadReceiver, DownloadSender, EMPTY_SHA256, FPUT_OVERHEAD, FREAD_REPLY_OVERHEAD,
    FcloseArgs, FdoneArgs, FdoneReply, FgetArgs, FgetReply, FopenArgs, FopenReply, FputArgs,
    FreadArgs, FreadReply, INTEGRITY_ERROR_CODE, MAX_FILE_SIZE, MAX_FPUT_DATA, MAX_FREAD_LEN,
    MAX_PATH, ResumeOutcome, ServerTransfer, ServerTransfers, TransferError, UploadReceiver,
    UploadSender, UploadState, ack_fields, parse_ack,
};
use vserv_core::wire::MAX_PAYLOAD;
use vserv_core::{ErrorCode, Request, Response};

// ---------------------------------------------------------------------------------------
// Synthetic files and a seeded scheduler

/// Byte `i` of the synthetic file.
fn byte_at(i: u64) -> u8 {
    ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8) ^ (i as u8)
}

fn fill(offset: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = byte_at(offset + k as u64);
    }
}

fn synthetic(offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(offset, &mut v);
    v
}

/// SHA-256 of the synthetic file's first `size` bytes, computed independently of the
/// machines (in 1 MiB blocks).
fn reference_sha(size: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(buf.len() as u64) as usize;
        fill(at, &mut buf[..n]);
        h.update(&buf[..n]);
        at += n as u64;
    }
    h.finalize().into()
}

/// Feeds the synthetic file's bytes `0..end` to `feed`, in blocks.
fn refeed(end: u64, mut feed: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < end {
        let n = (end - at).min(buf.len() as u64) as usize;
        fill(at, &mut buf[..n]);
        feed(&buf[..n]);
        at += n as u64;
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn encode_request(id: u32, name: &str, args: Vec<Vec<u8>>) -> Vec<u8> {
    let req = Request {
        id,
        name: name.into(),
        args,
    };
    let mut out = Vec::new();
    req.encode(&mut out);
    assert!(
        out.len() <= MAX_PAYLOAD,
        "{name} request of {} bytes",
        out.len()
    );
    out
}

fn encode_response(id: u32, result: Result<Vec<Vec<u8>>, TransferError>) -> Vec<u8> {
    let resp = Response {
        id,
        result: result.map_err(|e| e.to_reply()),
    };
    let mut out = Vec::new();
    resp.encode(&mut out);
    assert!(out.len() <= MAX_PAYLOAD, "response of {} bytes", out.len());
    out
}

// ---------------------------------------------------------------------------------------
// Upload: client UploadSender <-> server ServerTransfers, through the real codecs

/// The server side of the simulated link: its transfer table and the partial file.
struct UploadServer {
    table: ServerTransfers,
    /// The partial file (None: too large to keep; its bytes are the synthetic ones).
    partial: Option<Vec<u8>>,
    written: u64,
}

impl UploadServer {
    /// Handles one encoded request, returns the encoded response.
    fn handle(&mut self, bytes: &[u8]) -> Vec<u8> {
        let req = Request::decode(bytes).expect("client request decodes");
        let result = match req.name.as_str() {
            "fput" => {
                let args = FputArgs::parse(&req.args).expect("fput args parse");
                self.table.put(&args).map(|w| {
                    assert_eq!(w.offset, self.written, "writes are sequential");
                    if let Some(p) = &mut self.partial {
                        p.extend_from_slice(args.data);
                    }
                    self.written += w.len as u64;
                    ack_fields()
                })
            }
            "fdone" => {
                let args = FdoneArgs::parse(&req.args).expect("fdone args parse");
                self.table.done(&args).map(|r| r.to_fields())
            }
            other => panic!("unexpected command {other}"),
        };
        encode_response(req.id, result)
    }
}

/// Drives one upload to the end (or for `steps` scheduling steps when given), checking the
/// window bound after every step. Returns whether the sender completed.
fn drive_upload(
    tx: &mut UploadSender,
    server: &mut UploadServer,
    window: usize,
    rng: &mut Rng,
    steps: Option<usize>,
) -> bool {
    let mut to_server: VecDeque<Vec<u8>> = VecDeque::new();
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let mut by_id: BTreeMap<u32, u64> = BTreeMap::new();
    let mut next_id = 1u32;
    let mut buf = vec![0u8; MAX_FPUT_DATA];
    let mut step = 0usize;
    loop {
        if tx.is_complete() {
            return true;
        }
        if steps.is_some_and(|s| step >= s) {
            return false;
        }
        step += 1;
        let mut choice = rng.below(3);
        for _ in 0..3 {
            let can = match choice {
                0 => tx.next_chunk().is_some(),
                1 => !to_server.is_empty(),
                _ => !replies.is_empty(),
            };
            if can {
                break;
            }
            choice = (choice + 1) % 3;
        }
        match choice {
            0 => {
                let Some(plan) = tx.next_chunk() else {
                    panic!("sender stalled: nothing in flight and not complete")
                };
                let data = &mut buf[..plan.len];
                fill(plan.offset, data);
                let args = tx.send(plan.offset, data).expect("planned chunk is sent");
                by_id.insert(next_id, plan.offset);
                to_server.push_back(encode_request(next_id, "fput", args.to_args()));
                next_id += 1;
            }
            1 => {
                let req = to_server.pop_front().expect("checked");
                replies.push(server.handle(&req));
            }
            _ => {
                let raw = replies.swap_remove(rng.below(replies.len()));
                let resp = Response::decode(&raw).expect("response decodes");
                let offset = by_id.remove(&resp.id).expect("reply to an outstanding id");
                let fields = resp.result.expect("chunk accepted");
                parse_ack(&fields).expect("ack");
                tx.on_ack(offset).expect("ack of an outstanding chunk");
            }
        }
        assert!(tx.in_flight() <= window, "sender exceeded its window");
        assert!(
            to_server.len() + replies.len() <= window,
            "link holds more than the window"
        );
        assert_eq!(tx.in_flight(), by_id.len());
    }
}

/// `fopen` on the server: registers the receiver and returns the reply the client gets.
fn server_open(server: &mut UploadServer, rx: UploadReceiver) -> FopenReply {
    let (offset, prefix_sha256) = (rx.offset(), rx.prefix_sha256().unwrap());
    let id = server
        .table
        .open(ServerTransfer::Upload(rx))
        .expect("room for a transfer");
    let reply = FopenReply {
        id,
        offset,
        prefix_sha256,
    };
    FopenReply::from_fields(&reply.to_fields()).expect("fopen reply round trip")
}

/// Sends `fdone` through the codecs and returns the decoded reply.
fn send_fdone(server: &mut UploadServer, args: &FdoneArgs) -> Result<FdoneReply, ErrorCode> {
    let raw = server.handle(&encode_request(900, "fdone", args.to_args()));
    let resp = Response::decode(&raw).expect("response decodes");
    match resp.result {
        Ok(fields) => Ok(FdoneReply::from_fields(&fields).expect("fdone reply decodes")),
        Err(e) => Err(e.code),
    }
}

fn new_server(size: u64) -> UploadServer {
    UploadServer {
        table: ServerTransfers::new(4).expect("limit"),
        partial: (size <= 1 << 24).then(Vec::new),
        written: 0,
    }
}

/// A whole upload of the synthetic file; returns the verified reply.
fn upload_all(size: u64, window: usize, chunk: usize, seed: u64) -> FdoneReply {
    let mut server = new_server(size);
    let mut rng = Rng(seed);
    let open = server_open(&mut server, UploadReceiver::new(size));
    assert_eq!((open.offset, open.prefix_sha256), (0, EMPTY_SHA256));
    let mut tx = UploadSender::new(open.id, size, window, chunk).expect("sender");
    assert!(drive_upload(&mut tx, &mut server, window, &mut rng, None));
    assert_eq!(tx.progress().done, size);
    let done = tx.finish().expect("complete");
    let reply = send_fdone(&mut server, &done).expect("fdone accepted");
    tx.on_done(&reply).expect("server agrees");
    assert!(
        server.table.is_empty(),
        "a finished upload leaves the table"
    );
    if let Some(p) = &server.partial {
        assert_eq!(p.len() as u64, size);
        assert!(p.iter().enumerate().all(|(i, b)| *b == byte_at(i as u64)));
    }
    reply
}

fn sizes() -> impl Strategy<Value = (u64, usize)> {
    // (size, chunk): edge sizes around one chunk, and random ones with small chunks so
    // that many chunks are in play.
    prop_oneof![
        Just((0, MAX_FPUT_DATA)),
        Just((1, MAX_FPUT_DATA)),
        Just((MAX_FPUT_DATA as u64, MAX_FPUT_DATA)),
        Just((MAX_FPUT_DATA as u64 + 1, MAX_FPUT_DATA)),
        (0u64..300_000).prop_map(|s| (s, MAX_FPUT_DATA)),
        (1usize..64).prop_flat_map(|c| (0u64..4_000, Just(c))),
        (1usize..64).prop_flat_map(|c| {
            prop_oneof![Just(c as u64), Just(c as u64 + 1), Just(c as u64 - 1)]
                .prop_map(move |s| (s, c))
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn uploads_complete_with_matching_hash(
        (size, chunk) in sizes(), window in 1usize..=16, seed in any::<u64>()
    ) {
        let reply = upload_all(size, window, chunk, seed);
        prop_assert_eq!(reply.size, size);
        prop_assert_eq!(reply.sha256, reference_sha(size));
    }

    #[test]
    fn uploads_resume_from_saved_state(
        (size, chunk) in sizes(), window in 1usize..=16, seed in any::<u64>(),
        cut in 0usize..400, graceful in any::<bool>(), extra in any::<bool>()
    ) {
        let mut server = new_server(size);
        let mut rng = Rng(seed);
        let open = server_open(&mut server, UploadReceiver::new(size));
        let mut tx = UploadSender::new(open.id, size, window, chunk).unwrap();
        let finished = drive_upload(&mut tx, &mut server, window, &mut rng, Some(cut));
        // The connection drops: every request and reply in flight is lost, so is the
        // client's sender. The server saves the receiver's state.
        let Ok(ServerTransfer::Upload(rx)) = server.table.close(open.id) else {
            panic!("upload is open");
        };
        let saved = rx.checkpoint().unwrap().encode();
        prop_assert_eq!(saved.len(), UploadState::LEN);
        drop((tx, rx));
        let state = UploadState::decode(&saved).unwrap();
        prop_assert_eq!(state.offset, server.written);
        let mut partial = server.partial.clone().unwrap();
        if extra && !graceful {
            // A write that landed after the checkpoint: the restore truncates it.
            partial.push(0xEE);
        }
        if !graceful && state.offset > 0 {
            // A crash lost the tail of the partial file: the restore starts again at 0.
            partial.truncate(partial.len().min(state.offset as usize) - 1);
        }
        // Restart: re-hash the partial file, up to the saved offset.
        let mut restore = UploadReceiver::restore(&state);
        let keep = partial.len().min(state.offset as usize);
        restore.feed(&partial[..keep]).unwrap();
        prop_assert_eq!(restore.remaining(), state.offset - keep as u64);
        let (rx, outcome) = restore.finish();
        if graceful || state.offset == 0 {
            prop_assert_eq!(outcome, ResumeOutcome::Resumed(state.offset));
        } else {
            prop_assert_eq!(outcome, ResumeOutcome::Restarted);
        }
        partial.truncate(rx.offset() as usize);
        server.written = rx.offset();
        server.partial = Some(partial);
        let open = server_open(&mut server, rx);
        // The client re-hashes its file up to the server's offset, then continues.
        let mut restore = UploadSender::resume(
            open.id, size, window, chunk, open.offset, open.prefix_sha256,
        ).unwrap();
        refeed(open.offset, |b| restore.feed(b).unwrap());
        prop_assert_eq!(restore.remaining(), 0);
        let mut tx = restore.finish().unwrap();
        prop_assert_eq!(tx.progress().done, open.offset);
        prop_assert!(finished || tx.next_chunk().is_some() || tx.is_complete());
        prop_assert!(drive_upload(&mut tx, &mut server, window, &mut rng, None));
        let reply = send_fdone(&mut server, &tx.finish().unwrap()).unwrap();
        prop_assert_eq!(reply.sha256, reference_sha(size));
        let p = server.partial.as_ref().unwrap();
        prop_assert!(p.len() as u64 == size && p.iter().enumerate().all(|(i, b)| *b == byte_at(i as u64)));
    }

    #[test]
    fn a_flipped_byte_or_a_wrong_hash_is_refused_at_fdone(
        size in 1u64..20_000, chunk in 1usize..=MAX_FPUT_DATA, flip in any::<u64>(), bit in 0u8..8,
        wrong_hash in any::<bool>()
    ) {
        let mut rx = UploadReceiver::new(size);
        let flip = flip % size;
        let mut at = 0u64;
        while at < size {
            let n = (size - at).min(chunk as u64) as usize;
            let mut data = synthetic(at, n);
            if !wrong_hash && (at..at + n as u64).contains(&flip) {
                data[(flip - at) as usize] ^= 1 << bit;
            }
            rx.accept(at, &data).unwrap();
            at += n as u64;
        }
        let mut claimed = reference_sha(size);
        if wrong_hash {
            claimed[usize::from(bit)] ^= 1;
        }
        let mut table = ServerTransfers::new(1).unwrap();
        let id = table.open(ServerTransfer::Upload(rx)).unwrap();
        let err = table.done(&FdoneArgs { id, sha256: claimed }).unwrap_err();
        prop_assert_eq!(&err, &TransferError::HashMismatch);
        prop_assert_eq!(err.to_reply().code, ErrorCode::Integrity);
        prop_assert_eq!(err.to_reply().code.to_u16(), INTEGRITY_ERROR_CODE);
        // The failed upload is gone: nothing can make it visible any more.
        prop_assert_eq!(table.done(&FdoneArgs { id, sha256: claimed }), Err(TransferError::UnknownTransfer(id)));
    }
}

#[test]
fn a_changed_local_file_cannot_resume_an_upload() {
    let size = 50_000u64;
    let mut rx = UploadReceiver::new(size);
    rx.accept(0, &synthetic(0, 10_000)).unwrap();
    rx.accept(10_000, &synthetic(10_000, 10_000)).unwrap();
    let state = rx.checkpoint().unwrap();
    let mut restore =
        UploadSender::resume(1, size, 4, 1000, state.offset, state.prefix_sha256).unwrap();
    let mut local = synthetic(0, 20_000);
    local[19_999] ^= 0x80;
    restore.feed(&local).unwrap();
    assert_eq!(
        restore.finish().unwrap_err(),
        TransferError::PrefixMismatch(20_000)
    );
    // Too few bytes re-fed, or too many, are refused too.
    let mut short = UploadSender::resume(1, size, 4, 1000, 10, EMPTY_SHA256).unwrap();
    assert_eq!(
        short.feed(&[0; 11]),
        Err(TransferError::RefeedOverrun { got: 11, limit: 10 })
    );
    short.feed(&[0; 9]).unwrap();
    assert_eq!(
        short.finish().unwrap_err(),
        TransferError::RefeedShort { have: 9, need: 10 }
    );
    assert!(matches!(
        UploadSender::resume(1, size, 4, 1000, size + 1, EMPTY_SHA256),
        Err(TransferError::PastEnd { .. })
    ));
}

#[test]
fn upload_receiver_refuses_gaps_repeats_overruns_and_leaves_its_state_unchanged() {
    let mut rx = UploadReceiver::new(100);
    rx.accept(0, &[1; 40]).unwrap();
    let before = rx.checkpoint().unwrap();
    let cases: [(u64, usize, TransferError); 5] = [
        (
            41,
            10,
            TransferError::OutOfOrder {
                expected: 40,
                got: 41,
            },
        ),
        (
            0,
            10,
            TransferError::OutOfOrder {
                expected: 40,
                got: 0,
            },
        ),
        (
            40,
            61,
            TransferError::PastEnd {
                offset: 40,
                len: 61,
                size: 100,
            },
        ),
        (40, 0, TransferError::EmptyChunk),
        (
            40,
            MAX_FPUT_DATA + 1,
            TransferError::ChunkTooLarge {
                len: MAX_FPUT_DATA as u64 + 1,
                max: MAX_FPUT_DATA,
            },
        ),
    ];
    for (offset, len, err) in cases {
        assert_eq!(rx.accept(offset, &vec![2; len]), Err(err));
        assert_eq!(
            rx.checkpoint().unwrap(),
            before,
            "refused chunk changed the state"
        );
    }
    // Incomplete fdone changes nothing either; the upload then completes.
    let right: [u8; 32] = Sha256::digest([[1u8; 40].as_slice(), &[3; 60]].concat()).into();
    assert_eq!(
        rx.finish(&right),
        Err(TransferError::Incomplete {
            have: 40,
            size: 100
        })
    );
    rx.accept(40, &[3; 60]).unwrap();
    assert_eq!(
        rx.accept(100, &[1]),
        Err(TransferError::PastEnd {
            offset: 100,
            len: 1,
            size: 100
        })
    );
    assert_eq!(rx.finish(&right).unwrap().sha256, right);
    assert!(rx.is_done());
    assert_eq!(rx.accept(100, &[1]), Err(TransferError::Finished));
    assert_eq!(rx.finish(&right), Err(TransferError::Finished));
    // Offsets near u64::MAX do not overflow.
    let mut big = UploadReceiver::new(u64::MAX);
    assert!(matches!(
        big.accept(u64::MAX - 1, &[0; 5]),
        Err(TransferError::OutOfOrder { .. })
    ));
}

#[test]
fn senders_and_receivers_refuse_zero_windows_and_bad_chunk_sizes() {
    assert_eq!(
        UploadSender::new(1, 10, 0, 10).unwrap_err(),
        TransferError::ZeroWindow
    );
    assert_eq!(
        DownloadReceiver::new(1, 10, [0; 32], 0, 10).unwrap_err(),
        TransferError::ZeroWindow
    );
    assert_eq!(
        UploadSender::new(1, 10, 1, MAX_FPUT_DATA + 1).unwrap_err(),
        TransferError::BadChunkSize {
            len: MAX_FPUT_DATA + 1,
            max: MAX_FPUT_DATA
        }
    );
    assert_eq!(
        UploadSender::new(1, 10, 1, 0).unwrap_err(),
        TransferError::BadChunkSize {
            len: 0,
            max: MAX_FPUT_DATA
        }
    );
    assert_eq!(
        DownloadReceiver::new(1, 10, [0; 32], 1, MAX_FREAD_LEN + 1).unwrap_err(),
        TransferError::BadChunkSize {
            len: MAX_FREAD_LEN + 1,
            max: MAX_FREAD_LEN
        }
    );
    assert_eq!(
        ServerTransfers::new(0).unwrap_err(),
        TransferError::TooManyTransfers(0)
    );
}

#[test]
fn upload_sender_misuse_is_a_typed_error() {
    let mut tx = UploadSender::new(5, 25, 2, 10).unwrap();
    assert_eq!(tx.on_ack(0), Err(TransferError::NotOutstanding(0)));
    assert_eq!(
        tx.send(10, &[0; 10]).unwrap_err(),
        TransferError::OutOfOrder {
            expected: 0,
            got: 10
        }
    );
    assert_eq!(
        tx.send(0, &[0; 9]).unwrap_err(),
        TransferError::WrongLength {
            offset: 0,
            got: 9,
            expected: 10
        }
    );
    tx.send(0, &[0; 10]).unwrap();
    tx.send(10, &[0; 10]).unwrap();
    assert_eq!(tx.next_chunk(), None, "window of 2 is full");
    assert_eq!(tx.send(20, &[0; 5]).unwrap_err(), TransferError::WindowFull);
    assert_eq!(
        tx.finish().unwrap_err(),
        TransferError::Incomplete { have: 0, size: 25 }
    );
    assert_eq!(tx.on_ack(10).unwrap().done, 10);
    assert_eq!(tx.on_ack(10), Err(TransferError::NotOutstanding(10)));
    let plan = tx.next_chunk().unwrap();
    assert_eq!((plan.offset, plan.len), (20, 5));
    tx.fail();
    assert_eq!(tx.next_chunk(), None);
    assert_eq!(tx.on_ack(0), Err(TransferError::Finished));
    // A server reply that disagrees with what was sent is refused.
    let mut tx = UploadSender::new(5, 3, 1, 10).unwrap();
    tx.send(0, b"abc").unwrap();
    tx.on_ack(0).unwrap();
    let done = tx.finish().unwrap();
    assert_eq!(done.sha256, <[u8; 32]>::from(Sha256::digest(b"abc")));
    let wrong = FdoneReply {
        size: 3,
        sha256: [0; 32],
    };
    assert_eq!(
        tx.on_done(&wrong),
        Err(TransferError::ReportMismatch { size: 3 })
    );
}

#[test]
fn the_table_refuses_unknown_ids_and_wrong_directions_and_bounds_open_transfers() {
    let mut t = ServerTransfers::new(2).unwrap();
    let up = t
        .open(ServerTransfer::Upload(UploadReceiver::new(10)))
        .unwrap();
    let down = t
        .open(ServerTransfer::Download(DownloadSender::new(10, [0; 32])))
        .unwrap();
    assert_ne!(up, down);
    assert!(up != 0 && down != 0);
    assert_eq!(
        t.open(ServerTransfer::Upload(UploadReceiver::new(1)))
            .unwrap_err(),
        TransferError::TooManyTransfers(2)
    );
    let put = |id| FputArgs {
        id,
        offset: 0,
        data: &[1, 2, 3],
    };
    assert_eq!(t.put(&put(77)), Err(TransferError::UnknownTransfer(77)));
    assert_eq!(t.put(&put(down)), Err(TransferError::UnknownTransfer(down)));
    let read = |id| FreadArgs {
        id,
        offset: 0,
        len: 3,
    };
    assert_eq!(t.read(&read(up)), Err(TransferError::UnknownTransfer(up)));
    assert_eq!(t.read(&read(78)), Err(TransferError::UnknownTransfer(78)));
    assert_eq!(
        t.done(&FdoneArgs {
            id: down,
            sha256: [0; 32]
        }),
        Err(TransferError::UnknownTransfer(down))
    );
    assert_eq!(
        TransferError::UnknownTransfer(1).to_reply().code,
        ErrorCode::NotFound
    );
    t.put(&put(up)).unwrap();
    assert_eq!(t.read(&read(down)).unwrap().len, 3);
    assert!(matches!(t.close(up), Ok(ServerTransfer::Upload(_))));
    assert_eq!(t.close(up).unwrap_err(), TransferError::UnknownTransfer(up));
    let again = t
        .open(ServerTransfer::Upload(UploadReceiver::new(1)))
        .unwrap();
    assert!(again != down && again != 0);
    assert_eq!(t.drain().count(), 2);
    assert!(t.is_empty());
}

// ---------------------------------------------------------------------------------------
// Download: client DownloadReceiver <-> server ServerTransfers

/// Drives a download; the local file is a Vec when `keep`, else checked chunk by chunk.
/// Returns the bytes delivered (when kept).
fn drive_download(
    rx: &mut DownloadReceiver,
    table: &ServerTransfers,
    window: usize,
    rng: &mut Rng,
    steps: Option<usize>,
    local: &mut Option<Vec<u8>>,
) -> bool {
    let mut to_server: VecDeque<Vec<u8>> = VecDeque::new();
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let mut by_id: BTreeMap<u32, u64> = BTreeMap::new();
    let mut next_id = 1u32;
    let mut step = 0usize;
    loop {
        if rx.is_complete() {
            return true;
        }
        if steps.is_some_and(|s| step >= s) {
            return false;
        }
        step += 1;
        let mut choice = rng.below(3);
        for _ in 0..3 {
            let can = match choice {
                // Always allowed: the receiver itself must refuse to exceed its window.
                0 => true,
                1 => !to_server.is_empty(),
                _ => !replies.is_empty(),
            };
            if can {
                break;
            }
            choice = (choice + 1) % 3;
        }
        match choice {
            0 => {
                if let Some(req) = rx.next_request() {
                    by_id.insert(next_id, req.offset);
                    to_server.push_back(encode_request(next_id, "fread", req.to_args()));
                    next_id += 1;
                } else {
                    assert!(
                        !to_server.is_empty() || !replies.is_empty(),
                        "receiver stalled"
                    );
                }
            }
            1 => {
                let raw = to_server.pop_front().expect("checked");
                let req = Request::decode(&raw).expect("request decodes");
                assert_eq!(req.name, "fread");
                let args = FreadArgs::parse(&req.args).expect("fread args parse");
                let result = table.read(&args).map(|at| {
                    FreadReply {
                        data: synthetic(at.offset, at.len),
                    }
                    .into_fields()
                });
                replies.push(encode_response(req.id, result));
            }
            _ => {
                let raw = replies.swap_remove(rng.below(replies.len()));
                let resp = Response::decode(&raw).expect("response decodes");
                let offset = by_id.remove(&resp.id).expect("reply to an outstanding id");
                let reply = FreadReply::from_fields(resp.result.expect("read accepted"))
                    .expect("fread reply decodes");
                rx.on_data(offset, reply.data).expect("reply accepted");
                while let Some((at, data)) = rx.pop_ready() {
                    match local {
                        Some(file) => {
                            assert_eq!(at, file.len() as u64, "released out of order");
                            file.extend_from_slice(&data);
                        }
                        None => assert_eq!(data, synthetic(at, data.len())),
                    }
                }
            }
        }
        assert!(rx.in_use() <= window, "receiver exceeded its window");
        assert!(rx.buffered() <= window);
        assert!(to_server.len() + replies.len() <= window);
    }
}

fn download_open(size: u64, sha: [u8; 32]) -> (ServerTransfers, FgetReply) {
    let mut table = ServerTransfers::new(4).unwrap();
    let id = table
        .open(ServerTransfer::Download(DownloadSender::new(size, sha)))
        .unwrap();
    let d = table.download(id).unwrap();
    let reply = FgetReply {
        id,
        size: d.size(),
        sha256: d.sha256(),
    };
    (table, FgetReply::from_fields(&reply.to_fields()).unwrap())
}

/// A download of the synthetic file cut after `cut` replies (the connection lost: nothing
/// stays in use) and resumed from its partial local copy, which is re-fed in full. The
/// server table, the file's SHA-256, the resumed receiver, the partial copy, and the
/// scheduler to go on with.
fn cut_then_resumed(
    size: u64,
    chunk: usize,
    window: usize,
    seed: u64,
    cut: usize,
) -> (ServerTransfers, [u8; 32], DownloadReceiver, Vec<u8>, Rng) {
    let sha = reference_sha(size);
    let (table, open) = download_open(size, sha);
    let mut rx = DownloadReceiver::new(open.id, open.size, open.sha256, window, chunk).unwrap();
    let mut rng = Rng(seed);
    let mut local = Some(Vec::new());
    drive_download(&mut rx, &table, window, &mut rng, Some(cut), &mut local);
    rx.fail();
    assert_eq!(rx.in_use(), 0);
    let partial = local.unwrap();
    let mut restore = DownloadReceiver::resume(open.id, size, sha, window, chunk).unwrap();
    restore.feed(&partial).unwrap();
    assert_eq!(restore.fed(), partial.len() as u64);
    (table, sha, restore.finish(), partial, rng)
}

fn read_sizes() -> impl Strategy<Value = (u64, usize)> {
    prop_oneof![
        Just((0, MAX_FREAD_LEN)),
        Just((MAX_FREAD_LEN as u64, MAX_FREAD_LEN)),
        Just((MAX_FREAD_LEN as u64 + 1, MAX_FREAD_LEN)),
        (0u64..300_000).prop_map(|s| (s, MAX_FREAD_LEN)),
        (1usize..64).prop_flat_map(|c| (0u64..4_000, Just(c))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn downloads_complete_in_order_with_matching_hash(
        (size, chunk) in read_sizes(), window in 1usize..=16, seed in any::<u64>()
    ) {
        let sha = reference_sha(size);
        let (table, open) = download_open(size, sha);
        let mut rx = DownloadReceiver::new(open.id, open.size, open.sha256, window, chunk).unwrap();
        let mut local = Some(Vec::new());
        prop_assert!(drive_download(&mut rx, &table, window, &mut Rng(seed), None, &mut local));
        prop_assert_eq!(rx.finish(), Ok(sha));
        let file = local.unwrap();
        prop_assert_eq!(file, synthetic(0, size as usize));
    }

    #[test]
    fn downloads_resume_from_the_partial_local_copy(
        (size, chunk) in read_sizes(), window in 1usize..=16, seed in any::<u64>(), cut in 0usize..300
    ) {
        // Connection lost: in-flight requests and buffered replies are gone.
        let (table, sha, mut rx, partial, mut rng) =
            cut_then_resumed(size, chunk, window, seed, cut);
        prop_assert_eq!(rx.progress().done, partial.len() as u64);
        let mut local = Some(partial);
        prop_assert!(drive_download(&mut rx, &table, window, &mut rng, None, &mut local));
        prop_assert_eq!(rx.finish(), Ok(sha));
        prop_assert_eq!(local.unwrap(), synthetic(0, size as usize));
    }

    #[test]
    fn an_upload_driver_can_take_over_hashing(
        (size, chunk) in sizes(), window in 1usize..=16, seed in any::<u64>(),
        flip in proptest::option::of(any::<u64>())
    ) {
        let mut server = new_server(size);
        let open = server_open(&mut server, UploadReceiver::new(size));
        let mut tx = UploadSender::new(open.id, size, window, chunk).unwrap();
        // The driver hashes the file itself, as a read-ahead thread does.
        let mut hasher = tx.take_hasher().unwrap();
        prop_assert!(tx.take_hasher().is_none());
        prop_assert!(drive_upload(&mut tx, &mut server, window, &mut Rng(seed), None));
        prop_assert_eq!(tx.finish(), Err(TransferError::HasherTaken));
        let mut file = synthetic(0, size as usize);
        // A driver that hashed something else is caught by the server at fdone.
        let flip = flip.filter(|_| size > 0).map(|f| (f % size) as usize);
        if let Some(at) = flip {
            file[at] ^= 1;
        }
        hasher.update(&file);
        let done = tx.finish_with(hasher).unwrap();
        prop_assert_eq!(tx.finish(), Ok(done.clone()));
        match send_fdone(&mut server, &done) {
            Ok(reply) => {
                prop_assert!(flip.is_none());
                prop_assert_eq!(reply.sha256, reference_sha(size));
                prop_assert_eq!(tx.on_done(&reply), Ok(()));
            }
            Err(code) => {
                prop_assert!(flip.is_some());
                prop_assert_eq!(code, ErrorCode::Integrity);
            }
        }
    }

    #[test]
    fn a_driver_can_take_over_hashing_after_a_resume(
        (size, chunk) in read_sizes(), window in 1usize..=16, seed in any::<u64>(),
        cut in 0usize..300, flip in proptest::option::of(any::<u64>())
    ) {
        let (table, sha, mut rx, partial, mut rng) =
            cut_then_resumed(size, chunk, window, seed, cut);
        // The driver hashes what is released from here on, as a writer thread would.
        let mut hasher = rx.take_hasher().unwrap();
        prop_assert!(rx.take_hasher().is_none());
        let resumed_at = partial.len();
        let mut local = Some(partial);
        prop_assert!(drive_download(&mut rx, &table, window, &mut rng, None, &mut local));
        let mut file = local.unwrap();
        // A flipped bit in what the driver hashed is caught too.
        let flip = flip.filter(|_| file.len() > resumed_at)
            .map(|f| resumed_at + (f % (file.len() - resumed_at) as u64) as usize);
        if let Some(at) = flip {
            file[at] ^= 1;
        }
        hasher.update(&file[resumed_at..]);
        prop_assert_eq!(rx.finish(), Err(TransferError::HasherTaken));
        if flip.is_some() {
            prop_assert_eq!(rx.finish_with(hasher), Err(TransferError::HashMismatch));
        } else {
            prop_assert_eq!(rx.finish_with(hasher), Ok(sha));
        }
    }

    #[test]
    fn a_corrupted_download_fails_its_final_check(
        size in 1u64..20_000, flip in any::<u64>(), bit in 0u8..8
    ) {
        let sha = reference_sha(size);
        let mut rx = DownloadReceiver::new(1, size, sha, 4, 1000).unwrap();
        let flip = flip % size;
        while let Some(req) = rx.next_request() {
            let mut data = synthetic(req.offset, req.len as usize);
            if (req.offset..req.offset + u64::from(req.len)).contains(&flip) {
                data[(flip - req.offset) as usize] ^= 1 << bit;
            }
            rx.on_data(req.offset, data).unwrap();
            while rx.pop_ready().is_some() {}
        }
        prop_assert_eq!(rx.finish(), Err(TransferError::HashMismatch));
        prop_assert_eq!(rx.finish(), Err(TransferError::Finished));
    }
}

#[test]
fn an_upload_receiver_can_hand_its_hashing_to_the_driver() {
    use vserv_core::transfer::FileHasher;
    let file = synthetic(0, 5000);
    let right: [u8; 32] = Sha256::digest(&file).into();
    // Not taken: finish_with is refused, the receiver's own hash decides.
    let mut rx = UploadReceiver::new(5000);
    rx.accept(0, &file[..1000]).unwrap();
    assert_eq!(
        rx.finish_with(&right, FileHasher::new()),
        Err(TransferError::Incomplete {
            have: 1000,
            size: 5000
        })
    );
    let before = rx.checkpoint().unwrap();
    // Taken after 1000 bytes: the driver's hasher has seen them, and the receiver no
    // longer hashes or claims a prefix hash.
    let mut hasher = rx.take_hasher().unwrap();
    assert!(rx.take_hasher().is_none());
    assert_eq!(hasher.digest(), before.prefix_sha256);
    assert_eq!(rx.checkpoint(), Err(TransferError::HasherTaken));
    assert_eq!(rx.prefix_sha256(), Err(TransferError::HasherTaken));
    rx.accept(1000, &file[1000..]).unwrap();
    assert_eq!(rx.finish(&right), Err(TransferError::HasherTaken));
    // A driver that missed a chunk is caught; the upload is then over.
    let mut missed = hasher.clone();
    missed.update(&file[1000..4000]);
    let mut failed = rx.clone();
    assert_eq!(
        failed.finish_with(&right, missed),
        Err(TransferError::HashMismatch)
    );
    assert_eq!(
        failed.finish_with(&right, FileHasher::new()),
        Err(TransferError::Finished)
    );
    hasher.update(&file[1000..]);
    assert_eq!(
        rx.finish_with(&right, hasher),
        Ok(FdoneReply {
            size: 5000,
            sha256: right
        })
    );
    assert!(rx.is_done());
    // A receiver that still hashes refuses a driver's hasher.
    let mut own = UploadReceiver::new(3);
    own.accept(0, b"abc").unwrap();
    let mut other = FileHasher::new();
    other.update(b"abc");
    assert_eq!(
        own.finish_with(&Sha256::digest(b"abc").into(), other),
        Err(TransferError::BadState)
    );
}

#[test]
fn finish_with_needs_a_taken_hasher_and_a_complete_download() {
    let mut rx = DownloadReceiver::new(1, 0, EMPTY_SHA256, 1, 10).unwrap();
    assert_eq!(
        rx.finish_with(vserv_core::transfer::FileHasher::new()),
        Err(TransferError::BadState)
    );
    let mut rx = DownloadReceiver::new(1, 5, [0; 32], 1, 10).unwrap();
    let hasher = rx.take_hasher().unwrap();
    assert!(matches!(
        rx.finish_with(hasher.clone()),
        Err(TransferError::Incomplete { have: 0, size: 5 })
    ));
    let req = rx.next_request().unwrap();
    rx.on_data(req.offset, b"hello".to_vec()).unwrap();
    let (_, data) = rx.pop_ready().unwrap();
    let mut hasher = hasher;
    hasher.update(&data);
    assert_eq!(
        rx.finish_with(hasher.clone()),
        Err(TransferError::HashMismatch)
    );
    assert_eq!(rx.finish_with(hasher), Err(TransferError::Finished));
}

#[test]
fn download_receiver_refuses_bad_replies_and_reads_past_the_end() {
    let mut rx = DownloadReceiver::new(3, 25, [0; 32], 2, 10).unwrap();
    let a = rx.next_request().unwrap();
    let b = rx.next_request().unwrap();
    assert_eq!((a.offset, a.len, b.offset, b.len), (0, 10, 10, 10));
    assert_eq!(rx.next_request(), None, "window of 2 is full");
    assert_eq!(
        rx.on_data(20, vec![0; 5]),
        Err(TransferError::NotOutstanding(20))
    );
    assert_eq!(
        rx.on_data(10, vec![0; 9]),
        Err(TransferError::WrongLength {
            offset: 10,
            got: 9,
            expected: 10
        })
    );
    rx.on_data(10, vec![0; 10]).unwrap();
    assert_eq!(
        rx.on_data(10, vec![0; 10]),
        Err(TransferError::NotOutstanding(10))
    );
    assert_eq!(rx.pop_ready(), None, "chunk 0 has not arrived");
    assert_eq!(rx.buffered(), 1);
    assert_eq!(
        rx.next_request(),
        None,
        "a buffered chunk still counts against the window"
    );
    assert_eq!(
        rx.finish(),
        Err(TransferError::Incomplete { have: 0, size: 25 })
    );
    rx.on_data(0, vec![1; 10]).unwrap();
    assert_eq!(rx.pop_ready(), Some((0, vec![1; 10])));
    assert_eq!(rx.pop_ready(), Some((10, vec![0; 10])));
    assert_eq!(rx.pop_ready(), None);
    let c = rx.next_request().unwrap();
    assert_eq!((c.offset, c.len), (20, 5));

    let tx = DownloadSender::new(25, [0; 32]);
    assert_eq!(tx.read(20, 5).unwrap().len, 5);
    assert_eq!(
        tx.read(20, 6),
        Err(TransferError::PastEnd {
            offset: 20,
            len: 6,
            size: 25
        })
    );
    assert_eq!(
        tx.read(u64::MAX, 1),
        Err(TransferError::PastEnd {
            offset: u64::MAX,
            len: 1,
            size: 25
        })
    );
    assert_eq!(tx.read(0, 0), Err(TransferError::EmptyChunk));
    assert_eq!(
        DownloadSender::new(1 << 40, [0; 32]).read(0, MAX_FREAD_LEN + 1),
        Err(TransferError::ChunkTooLarge {
            len: MAX_FREAD_LEN as u64 + 1,
            max: MAX_FREAD_LEN
        })
    );
    let mut restore = DownloadReceiver::resume(1, 3, [0; 32], 1, 1).unwrap();
    assert_eq!(
        restore.feed(&[0; 4]),
        Err(TransferError::RefeedOverrun { got: 4, limit: 3 })
    );
}

// ---------------------------------------------------------------------------------------
// Files over 4 GiB (synthetic; nothing large is allocated)

#[test]
fn a_five_gib_upload_completes() {
    let size = 5 * (1u64 << 30) + 7;
    let reply = upload_all(size, 256, MAX_FPUT_DATA, 5);
    assert_eq!(reply.size, size);
    assert_eq!(reply.sha256, reference_sha(size));
}

#[test]
fn a_download_across_the_4_gib_boundary_completes() {
    let size = (1u64 << 32) + 3;
    let sha = reference_sha(size);
    let (table, open) = download_open(size, sha);
    let mut rx = DownloadReceiver::new(open.id, size, sha, 256, MAX_FREAD_LEN).unwrap();
    assert!(drive_download(
        &mut rx,
        &table,
        256,
        &mut Rng(4),
        None,
        &mut None
    ));
    assert_eq!(rx.finish(), Ok(sha));
}

#[test]
fn offsets_past_4_gib_are_exact() {
    // Chunks whose offsets straddle 2^32 keep every bit (no u32 truncation anywhere).
    let offset = (1u64 << 32) - 2;
    let args = FputArgs {
        id: 9,
        offset,
        data: &[1, 2, 3, 4],
    };
    let back = args.to_args();
    assert_eq!(FputArgs::parse(&back).unwrap().offset, offset);
    let tx = DownloadSender::new((1 << 32) + 2, [0; 32]);
    assert_eq!(tx.read(offset, 4).unwrap().offset, offset);
    assert!(tx.read(offset, 5).is_err());
    let state = UploadState {
        size: 5 << 30,
        offset: (1 << 32) + 1,
        prefix_sha256: [7; 32],
    };
    assert_eq!(UploadState::decode(&state.encode()), Ok(state));
}

// ---------------------------------------------------------------------------------------
// Codecs

#[test]
fn the_largest_chunks_fill_exactly_one_record() {
    let data = vec![0xAB; MAX_FPUT_DATA];
    let args = FputArgs {
        id: u32::MAX,
        offset: u64::MAX,
        data: &data,
    }
    .to_args();
    let req = Request {
        id: u32::MAX,
        name: "fput".into(),
        args,
    };
    assert_eq!(req.encoded_len(), MAX_PAYLOAD);
    let mut out = Vec::new();
    req.encode(&mut out);
    assert_eq!(out.len(), MAX_PAYLOAD);
    assert_eq!(FPUT_OVERHEAD + MAX_FPUT_DATA, MAX_PAYLOAD);

    let resp = Response {
        id: u32::MAX,
        result: Ok(FreadReply {
            data: vec![1; MAX_FREAD_LEN],
        }
        .into_fields()),
    };
    assert_eq!(resp.encoded_len(), MAX_PAYLOAD);
    assert_eq!(FREAD_REPLY_OVERHEAD + MAX_FREAD_LEN, MAX_PAYLOAD);

    // One byte more does not parse.
    let over = vec![vec![0; 4], vec![0; 8], vec![0; MAX_FPUT_DATA + 1]];
    assert_eq!(
        FputArgs::parse(&over).unwrap_err().code,
        ErrorCode::TooLarge
    );
    let over_read = vec![
        vec![0; 4],
        vec![0; 8],
        (MAX_FREAD_LEN as u32 + 1).to_be_bytes().to_vec(),
    ];
    assert_eq!(
        FreadArgs::parse(&over_read).unwrap_err().code,
        ErrorCode::TooLarge
    );
    assert!(FreadReply::from_fields(vec![vec![0; MAX_FREAD_LEN + 1]]).is_err());
    // And the longest fopen fits a record.
    let open = FopenArgs {
        path: "p".repeat(MAX_PATH),
        size: u64::MAX,
        resume: true,
    };
    let req = Request {
        id: 1,
        name: "fopen".into(),
        args: open.to_args(),
    };
    assert!(req.encoded_len() <= MAX_PAYLOAD);
    let too_long = vec!["p".repeat(MAX_PATH + 1).into_bytes(), vec![0; 8]];
    assert_eq!(
        FopenArgs::parse(&too_long).unwrap_err().code,
        ErrorCode::TooLarge
    );
}

#[test]
fn malformed_arguments_are_typed_errors() {
    let bad = |r: Result<(), vserv_core::ErrorReply>| r.unwrap_err().code;
    let b = ErrorCode::BadArguments;
    assert_eq!(bad(FopenArgs::parse(&[b"a".to_vec()]).map(drop)), b);
    assert_eq!(
        bad(FopenArgs::parse(&[b"a".to_vec(), vec![0; 7]]).map(drop)),
        b
    );
    assert_eq!(
        bad(FopenArgs::parse(&[b"a".to_vec(), vec![0; 8], b"again".to_vec()]).map(drop)),
        b
    );
    assert_eq!(bad(FopenArgs::parse(&[vec![], vec![0; 8]]).map(drop)), b);
    assert_eq!(
        bad(FopenArgs::parse(&[vec![0xff], vec![0; 8]]).map(drop)),
        b
    );
    assert_eq!(
        bad(FputArgs::parse(&[vec![0; 4], vec![0; 8], vec![]]).map(drop)),
        b
    );
    assert_eq!(
        bad(FputArgs::parse(&[vec![0; 3], vec![0; 8], vec![1]]).map(drop)),
        b
    );
    assert_eq!(
        bad(FdoneArgs::parse(&[vec![0; 4], vec![0; 31]]).map(drop)),
        b
    );
    assert_eq!(bad(FgetArgs::parse(&[]).map(drop)), b);
    assert_eq!(bad(FcloseArgs::parse(&[vec![0; 5]]).map(drop)), b);
    assert_eq!(
        FreadArgs::parse(&[vec![0; 4], vec![0; 8], vec![0; 4]])
            .unwrap_err()
            .code,
        ErrorCode::BadArguments,
        "LEN 0"
    );
    assert!(parse_ack(&[vec![]]).is_err());
    assert!(FopenReply::from_fields(&[vec![0; 4], vec![0; 8]]).is_err());
    assert!(FdoneReply::from_fields(&[vec![0; 8], vec![0; 33]]).is_err());
    assert!(FgetReply::from_fields(&[vec![0; 4], vec![0; 8], vec![0; 32], vec![]]).is_err());
    assert!(FreadReply::from_fields(vec![vec![]]).is_err());
    assert!(
        UploadState::decode(&[0; UploadState::LEN]).is_err(),
        "version 0"
    );
    let mut past = UploadState {
        size: 1,
        offset: 1,
        prefix_sha256: [0; 32],
    }
    .encode();
    past[16] = 2; // offset 2 > size 1
    assert_eq!(UploadState::decode(&past), Err(TransferError::BadState));
}

fn arg_vecs() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            prop::collection::vec(any::<u8>(), 4..=4),
            prop::collection::vec(any::<u8>(), 8..=8),
            prop::collection::vec(any::<u8>(), 32..=32),
            Just(b"resume".to_vec()),
        ],
        0..5,
    )
}

proptest! {
    #[test]
    fn codecs_round_trip(
        path in "[a-z/._ ]{1,64}", size in 0..=MAX_FILE_SIZE, resume in any::<bool>(), id in any::<u32>(),
        offset in any::<u64>(), data in prop::collection::vec(any::<u8>(), 1..200),
        sha in any::<[u8; 32]>(), len in 1u32..=MAX_FREAD_LEN as u32
    ) {
        let o = FopenArgs { path: path.clone(), size, resume };
        prop_assert_eq!(FopenArgs::parse(&o.to_args()), Ok(o));
        let p = FputArgs { id, offset, data: &data };
        let pa = p.to_args();
        prop_assert_eq!(FputArgs::parse(&pa), Ok(p));
        let d = FdoneArgs { id, sha256: sha };
        prop_assert_eq!(FdoneArgs::parse(&d.to_args()), Ok(d));
        let g = FgetArgs { path };
        prop_assert_eq!(FgetArgs::parse(&g.to_args()), Ok(g));
        let r = FreadArgs { id, offset, len };
        prop_assert_eq!(FreadArgs::parse(&r.to_args()), Ok(r));
        let c = FcloseArgs { id };
        prop_assert_eq!(FcloseArgs::parse(&c.to_args()), Ok(c));
        let or = FopenReply { id, offset, prefix_sha256: sha };
        prop_assert_eq!(FopenReply::from_fields(&or.to_fields()).unwrap(), or);
        let dr = FdoneReply { size, sha256: sha };
        prop_assert_eq!(FdoneReply::from_fields(&dr.to_fields()).unwrap(), dr);
        let gr = FgetReply { id, size, sha256: sha };
        prop_assert_eq!(FgetReply::from_fields(&gr.to_fields()).unwrap(), gr);
        let rr = FreadReply { data: data.clone() };
        prop_assert_eq!(FreadReply::from_fields(rr.clone().into_fields()).unwrap(), rr);
        let st = UploadState { size, offset: offset.min(size), prefix_sha256: sha };
        prop_assert_eq!(UploadState::decode(&st.encode()), Ok(st));
    }

    #[test]
    fn parsers_never_panic_and_what_parses_re_encodes(args in arg_vecs(), raw in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(a) = FopenArgs::parse(&args) { prop_assert_eq!(a.to_args(), args.clone()); }
        if let Ok(a) = FputArgs::parse(&args) { prop_assert_eq!(a.to_args(), args.clone()); }
        if let Ok(a) = FdoneArgs::parse(&args) { prop_assert_eq!(a.to_args(), args.clone()); }
        if let Ok(a) = FgetArgs::parse(&args) { prop_assert_eq!(a.to_args(), args.clone()); }
        if let Ok(a) = FreadArgs::parse(&args) { prop_assert_eq!(a.to_args(), args.clone()); }
        if let Ok(a) = FcloseArgs::parse(&args) { prop_assert_eq!(a.to_args(), args.clone()); }
        if let Ok(r) = FopenReply::from_fields(&args) { prop_assert_eq!(r.to_fields(), args.clone()); }
        if let Ok(r) = FdoneReply::from_fields(&args) { prop_assert_eq!(r.to_fields(), args.clone()); }
        if let Ok(r) = FgetReply::from_fields(&args) { prop_assert_eq!(r.to_fields(), args.clone()); }
        if let Ok(r) = FreadReply::from_fields(args.clone()) { prop_assert_eq!(r.into_fields(), args.clone()); }
        let _ = parse_ack(&args);
        if let Ok(s) = UploadState::decode(&raw) { prop_assert_eq!(&s.encode()[..], &raw[..]); }
    }

    #[test]
    fn an_upload_receiver_fed_arbitrary_chunks_only_takes_the_in_order_ones(
        size in 0u64..2_000,
        ops in prop::collection::vec((0u64..2_100, 0usize..300, any::<bool>()), 0..60)
    ) {
        let mut rx = UploadReceiver::new(size);
        let mut want = Sha256::new();
        for (offset, len, at_next) in ops {
            let offset = if at_next { rx.offset() } else { offset };
            let before = rx.offset();
            let data = synthetic(offset, len);
            match rx.accept(offset, &data) {
                Ok(w) => {
                    prop_assert!(offset == before && len > 0 && before + len as u64 <= size);
                    prop_assert_eq!((w.offset, w.len), (offset, len));
                    want.update(&data);
                }
                Err(_) => {
                    prop_assert!(offset != before || len == 0 || before + len as u64 > size);
                    prop_assert_eq!(rx.offset(), before);
                }
            }
            prop_assert!(rx.offset() <= size);
        }
        let want: [u8; 32] = want.finalize().into();
        prop_assert_eq!(rx.prefix_sha256().unwrap(), want);
    }
}

#[test]
fn the_spec_example_fput_request_encodes_exactly() {
    // spec/files.md §2.2: request 7, transfer 1, offset 2^32, data "abc".
    let args = FputArgs {
        id: 1,
        offset: 1 << 32,
        data: b"abc",
    }
    .to_args();
    let bytes = encode_request(7, "fput", args);
    let want = "01000000070466707574000300000004000000010000000800000001000000000000000361626\
                3";
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, want);
    assert_eq!(bytes.len(), FPUT_OVERHEAD + 3);
    assert_eq!(
        <[u8; 32]>::from(Sha256::digest(b"")),
        EMPTY_SHA256,
        "EMPTY_SHA256 is SHA-256 of the empty string"
    );
}
