//! The `vserv` client against a hostile server: a loopback server speaking the real
//! protocol (core's server connection) whose answers are crafted to hurt the client:
//! page tokens that never advance, names, notes, greetings and errors full of terminal
//! escape sequences and bidi overrides, and requests it never answers.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vserv_core::commands::{Delivery, DeliveryState, DirEntry, FileKind, Reply, UserRole};
use vserv_core::{
    CloseCode, Config, Connection, ErrorCode, ErrorReply, Event, Response, ServerIdentity,
};

use common::Run;

/// What a hostile server puts in its texts: a screen clear, an OSC title change ended by
/// BEL, a C1 CSI and a right-to-left override.
const EVIL: &str = "x\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}gpj.exe";
/// How [`EVIL`] must be shown.
const SHOWN: &str = "x\\x1b[2J\\x1b]0;pwned\\x07\\u{9b}31m\\u{202e}gpj.exe";

/// The hostile server's answer to one request, `None` for never.
fn answer(name: &str, args: &[Vec<u8>]) -> Option<Result<Vec<Vec<u8>>, ErrorReply>> {
    let reply = match name {
        "login" => Reply::User {
            name: "alice".into(),
            role: UserRole::User,
        },
        "hello" => Reply::Greeting(format!("welcome {EVIL}")),
        "quit" => Reply::Bye,
        // Every page says "more from the same place".
        "ls" => Reply::Listing {
            entries: vec![DirEntry {
                name: EVIL.into(),
                kind: FileKind::File,
                size: 1,
                modified: 0,
            }],
            next: Some("again".into()),
        },
        "rlist" => {
            let from = args
                .get(1)
                .and_then(|a| std::str::from_utf8(a).ok()?.parse().ok())
                .unwrap_or(1);
            Reply::Page {
                entries: Vec::new(),
                next: Some(from),
            }
        }
        "inbox" => Reply::Deliveries {
            entries: vec![Delivery {
                name: "report.pdf".into(),
                state: DeliveryState::Refused,
                from: "bob".into(),
                time: 0,
                size: 1,
                sha256: [0; 32],
                note: EVIL.into(),
                reason: EVIL.into(),
            }],
            next: Some("report.pdf".into()),
        },
        "stat" => return Some(Err(ErrorReply::new(ErrorCode::NotFound, EVIL))),
        // A lost request: never answered.
        "mkdir" => return None,
        _ => return Some(Err(ErrorReply::new(ErrorCode::UnknownCommand, "unknown"))),
    };
    Some(Ok(reply.to_fields()))
}

/// The hostile server, on a loopback port, stopped when dropped.
struct Hostile {
    addr: String,
    fingerprint: String,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Hostile {
    fn start() -> Hostile {
        let mut rng = vserv_service::system::os_rng().expect("rng");
        let identity = Arc::new(ServerIdentity::generate(&mut *rng));
        let fingerprint = identity.public_key().fingerprint().to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let identity = identity.clone();
                let stopping = stopping.clone();
                std::thread::spawn(move || serve(stream, identity, &stopping));
            }
        });
        Hostile {
            addr,
            fingerprint,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One connection: answers per [`answer`] until the client goes or the server stops.
fn serve(mut stream: TcpStream, identity: Arc<ServerIdentity>, stop: &AtomicBool) {
    let Ok(rng) = vserv_service::system::os_rng() else {
        return;
    };
    let mut conn = Connection::server(Config::default(), identity, rng, Instant::now());
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    while !conn.is_closed() && !stop.load(Ordering::SeqCst) {
        while let Some(event) = conn.poll_event() {
            let Event::Request(request) = event else {
                continue;
            };
            if let Some(result) = answer(&request.name, &request.args) {
                let _ = conn.respond(&Response {
                    id: request.id,
                    result,
                });
            }
            if request.name == "quit" {
                conn.close(CloseCode::Normal, "bye");
            }
        }
        out.clear();
        conn.poll_transmit(&mut out);
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if conn.handle_input(Instant::now(), &buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
    out.clear();
    conn.poll_transmit(&mut out);
    let _ = stream.write_all(&out);
}

/// Runs `vserv ARGS` against `server` as alice; kills it (and fails the test) if it is
/// still running after 30 s, the sign of a client the server can hold forever.
fn vserv(env: &common::Env, server: &Hostile, args: &[&str]) -> Run {
    let known = env.path("known_servers");
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "--server",
        &server.addr,
        "--known-servers",
        known.to_str().expect("utf-8 path"),
        "--server-key",
        &server.fingerprint,
        "--user",
        "alice",
    ]);
    let mut child = env
        .command(&all, &[("VSERV_PASSWORD", "alice-password-1")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vserv");
    // Drain the pipes so a client printing forever cannot block on them.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            if kept.len() < 1 << 20 {
                kept.extend_from_slice(&buf[..n]);
            }
        }
        kept
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll vserv") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vserv {args:?} was still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// No raw escape or bidi character reached the terminal.
fn assert_clean(text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "raw control characters shown: {text:?}"
    );
}

#[test]
fn page_tokens_that_do_not_advance_stop_the_listing() {
    let env = common::Env::new();
    let server = Hostile::start();
    let err = vserv(&env, &server, &["ls"]).fails();
    assert!(
        err.contains("`vserv ls` stopped") && err.contains("'again' a second time"),
        "{err}"
    );
    let err = vserv(&env, &server, &["inbox"]).fails();
    assert!(err.contains("`vserv inbox` stopped"), "{err}");
    let err = vserv(&env, &server, &["rlist", "*", "--from", "5"]).fails();
    assert!(
        err.contains("`vserv rlist` stopped") && err.contains("seq 5, which is not past seq 5"),
        "{err}"
    );
}

#[test]
fn server_texts_are_shown_with_control_characters_escaped() {
    let env = common::Env::new();
    let server = Hostile::start();
    let hello = vserv(&env, &server, &["hello"]).ok();
    assert_clean(&hello.text());
    assert!(
        hello.text().contains(&format!("welcome {SHOWN}")),
        "{}",
        hello.text()
    );

    // A name in a listing (the listing then stops on its repeated token).
    let ls = vserv(&env, &server, &["ls"]);
    assert_clean(&ls.text());
    assert_clean(&ls.stderr);
    assert!(ls.text().contains(SHOWN), "{}", ls.text());

    // A delivery's note and reason.
    let inbox = vserv(&env, &server, &["inbox"]);
    assert_clean(&inbox.text());
    assert!(
        inbox.text().contains(&format!("note: {SHOWN}")),
        "{}",
        inbox.text()
    );
    assert!(
        inbox.text().contains(&format!("reason: {SHOWN}")),
        "{}",
        inbox.text()
    );

    // A server error message.
    let stat = vserv(&env, &server, &["stat", "x"]);
    assert_clean(&stat.stderr);
    let err = stat.fails();
    assert!(err.contains(SHOWN), "{err}");
}

#[test]
fn a_request_never_answered_times_out() {
    let env = common::Env::new();
    let server = Hostile::start();
    // Without a response timeout the client would wait for the connection's idle timer
    // (minutes); the 30 s guard in `vserv` fails the test then.
    let err = vserv(&env, &server, &["mkdir", "d", "--timeout", "1"]).fails();
    assert!(err.contains("no reply from the server for 1 s"), "{err}");
}
