//! Timers fire on the virtual clock, at exactly the configured time.

use std::sync::Arc;
use std::time::Duration;

use vserv_core::commands::Command;
use vserv_core::{Config, Error, ServerIdentity};
use vserv_sim::{ClientSpec, EndpointId, Finish, LinkConfig, LinkSpec, RunEnd, ServerSpec, World};

const D: Duration = Duration::from_millis(7);

fn config(handshake: u64, idle: u64) -> Config {
    Config {
        handshake_timeout: Duration::from_secs(handshake),
        idle_timeout: Duration::from_secs(idle),
        ..Config::default()
    }
}

/// A world with one server (`server_config`) and one client over `link`.
fn world(
    seed: u64,
    server_config: Config,
    client_config: Config,
    link: LinkSpec,
    script: Vec<Command>,
) -> (World, EndpointId) {
    let mut world = World::new(seed);
    let identity = Arc::new(ServerIdentity::generate(&mut world.fork_rng()));
    let service = world.service("timers", &identity).unwrap();
    let server = world.add_server(ServerSpec {
        identity,
        service,
        max_connections: 8,
        config: server_config,
    });
    let options = world.client_options(client_config).unwrap();
    let client = world
        .add_client(
            server,
            ClientSpec {
                options,
                link,
                script,
                pipeline: 1,
                finish: Finish::Stay,
            },
        )
        .unwrap();
    (world, client)
}

/// What a client reports for a core error.
fn client_err(e: Error) -> String {
    vserv_service::client::ClientError::from(e).to_string()
}

fn ended(world: &World, ep: EndpointId) -> (Duration, String) {
    let o = world
        .outcome(ep)
        .unwrap_or_else(|| panic!("{ep:?} still open"));
    (o.at, o.error.clone().unwrap_or_default())
}

#[test]
fn handshake_timeout_when_the_server_never_answers() {
    let link = LinkSpec {
        to_server: LinkConfig::fixed_delay(D),
        to_client: LinkConfig::fixed_delay(D).cut_after(0),
    };
    let (mut w, client) = world(1, config(5, 30), config(3, 30), link, vec![]);
    assert_eq!(w.run(Duration::from_secs(3600)), RunEnd::Quiescent);
    let server = w.peer(client).unwrap();
    assert_eq!(
        ended(&w, client),
        (Duration::from_secs(3), client_err(Error::HandshakeTimeout))
    );
    // The client gives up first and drops the connection; the server hears the EOF one
    // link delay later, well before its own (5 s) handshake timer.
    assert_eq!(
        ended(&w, server),
        (Duration::from_secs(3) + D, Error::UnexpectedEof.to_string())
    );
    w.check().unwrap();
}

#[test]
fn handshake_timeout_when_the_client_hello_stalls_halfway() {
    let link = LinkSpec {
        to_server: LinkConfig::benign(5).cut_after(40),
        to_client: LinkConfig::benign(5),
    };
    for seed in 0..5 {
        let (mut w, client) = world(seed, config(5, 30), config(4, 30), link.clone(), vec![]);
        assert_eq!(w.run(Duration::from_secs(3600)), RunEnd::Quiescent);
        let server = w.peer(client).unwrap();
        assert_eq!(
            ended(&w, client),
            (Duration::from_secs(4), client_err(Error::HandshakeTimeout)),
            "VSERV_SIM_SEED={seed}"
        );
        // The client's EOF never arrives either: the server times out on its own.
        assert_eq!(
            ended(&w, server),
            (Duration::from_secs(5), Error::HandshakeTimeout.to_string()),
            "VSERV_SIM_SEED={seed}"
        );
        w.check().unwrap();
    }
}

#[test]
fn idle_timeouts_when_the_link_stalls_forever() {
    let link = LinkSpec::symmetric(LinkConfig::fixed_delay(D));
    let ping = Command::Ping {
        payload: b"x".to_vec(),
    };
    let (mut w, client) = world(2, config(5, 30), config(5, 20), link, vec![ping]);
    let end = w.run_until(Duration::from_secs(60), |w| {
        w.client_report(client).is_some_and(|r| r.answered == 1)
    });
    assert_eq!(end, RunEnd::Done);
    // ClientHello arrives at 7 ms, the server's flight at 14 ms (client connected, ping
    // sent with its Finished), those at 21 ms (server connected), the reply at 28 ms.
    assert_eq!(w.now(), 4 * D);
    w.cut(client);
    assert_eq!(w.run(Duration::from_secs(3600)), RunEnd::Quiescent);
    let server = w.peer(client).unwrap();
    assert_eq!(
        ended(&w, client),
        (
            Duration::from_secs(20) + 4 * D,
            client_err(Error::IdleTimeout)
        )
    );
    assert_eq!(
        ended(&w, server),
        (
            Duration::from_secs(30) + 3 * D,
            Error::IdleTimeout.to_string()
        )
    );
    w.check().unwrap();
}

#[test]
fn an_idle_session_is_closed_by_the_first_timer_and_the_peer_hears_of_it() {
    // No stall: the server's idle timer fires first and its close record reaches the
    // client, which ends cleanly.
    let link = LinkSpec::symmetric(LinkConfig::fixed_delay(D));
    let (mut w, client) = world(3, config(5, 10), config(5, 20), link, vec![]);
    assert_eq!(w.run(Duration::from_secs(3600)), RunEnd::Quiescent);
    let server = w.peer(client).unwrap();
    // Server connected at 21 ms (ClientFinished); idle 10 s.
    assert_eq!(
        ended(&w, server),
        (
            Duration::from_secs(10) + 3 * D,
            Error::IdleTimeout.to_string()
        )
    );
    let (at, error) = ended(&w, client);
    assert_eq!(at, Duration::from_secs(10) + 4 * D);
    assert!(
        error.starts_with("server closed the connection (timeout)"),
        "{error}"
    );
    w.check().unwrap();
}
