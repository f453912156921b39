//! End to end with a real server process: `vserv serve` with `udp_listen` answers
//! `vserv ping --udp` (and `tables`/`query --udp` on a table open to anyone), whose client
//! finds the server's key with a key query checked against `--server-key` (then recorded in
//! known_servers, so the next ping needs no pin), refuses a wrong pin, and reports a server
//! that does not answer; SIGUSR1's status line counts the datagrams.

mod common;

use common::{Env, Server, wait_for_text};

#[test]
fn ping_over_udp_end_to_end() {
    let env = Env::new();
    let config = env.path("server.toml");
    let words = env.path("words.csv");
    std::fs::write(&words, "word,meaning\nhi,hello\nho,a garden tool\n").expect("csv");
    std::fs::write(
        &config,
        format!(
            "udp_listen = \"127.0.0.1:0\"\n[files]\nmin_free_bytes = 0\n\
             [[tables]]\nname = \"words\"\nfile = \"{}\"\naccess = \"anyone\"\n",
            words.display()
        ),
    )
    .expect("config");
    let log = env.path("vserv.log");
    let mut server = Server::start_logging(&env.data(), &config, &log);
    let fingerprint = server.fingerprint.clone();
    let line = server.next_line();
    let udp = line
        .strip_prefix("vserv answering sealed UDP queries on ")
        .unwrap_or_else(|| panic!("unexpected output: {line:?}"))
        .to_owned();
    let known = env.path("known_servers");
    let known = known.to_str().expect("utf-8 path");
    let base = ["--server", udp.as_str(), "--known-servers", known];

    // Pinned by fingerprint only: the key query's answer is checked, then recorded.
    let pinned = [
        &["ping", "--udp", "hello over udp"][..],
        &base,
        &["--server-key", &fingerprint],
    ]
    .concat();
    let run = env.vserv(&pinned, &[]).ok();
    assert!(run.text().contains("hello over udp"), "{}", run.text());
    let recorded = std::fs::read_to_string(env.path("known_servers")).expect("known_servers");
    assert!(recorded.contains(&udp), "{recorded}");

    // Known now: no pin needed.
    let run = env
        .vserv(&[&["ping", "--udp", "again"][..], &base].concat(), &[])
        .ok();
    assert!(run.text().contains("again"), "{}", run.text());

    // Query tables over UDP: a row by key, a prefix page, the list as JSON.
    let run = env
        .vserv(
            &[&["query", "words", "hi", "--udp"][..], &base].concat(),
            &[],
        )
        .ok();
    assert!(run.text().contains("meaning: hello"), "{}", run.text());
    let run = env
        .vserv(
            &[
                &["query", "words", "--prefix", "h", "--udp", "--json"][..],
                &base,
            ]
            .concat(),
            &[],
        )
        .ok();
    assert!(run.text().contains("a garden tool"), "{}", run.text());
    let run = env
        .vserv(&[&["tables", "--udp", "--json"][..], &base].concat(), &[])
        .ok();
    assert!(run.text().contains("\"words\""), "{}", run.text());

    // A wrong pin is refused before anything is sent.
    let wrong = format!("SHA256:{}", "00".repeat(32));
    let err = env
        .vserv(
            &[&["ping", "--udp"][..], &base, &["--server-key", &wrong]].concat(),
            &[],
        )
        .fails();
    assert!(err.contains("mismatch"), "{err}");

    // Logging in is not possible over UDP.
    let err = env
        .vserv(
            &[&["ping", "--udp"][..], &base, &["--user", "alice"]].concat(),
            &[],
        )
        .fails();
    assert!(err.contains("--udp"), "{err}");

    // Nobody answers on a port without a server.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let err = env
        .vserv(
            &[
                "ping",
                "--udp",
                "--server",
                &silent_addr,
                "--known-servers",
                known,
                "--server-key",
                &fingerprint,
                "--timeout",
                "1",
            ],
            &[],
        )
        .fails();
    assert!(err.contains("no answer"), "{err}");

    // The status line counts what came in over UDP.
    server.signal("USR1");
    let text = wait_for_text(&log, "udp: ");
    let line = text
        .lines()
        .find(|l| l.contains("udp: "))
        .unwrap_or_default();
    assert!(line.contains("answered"), "{line}");
}
