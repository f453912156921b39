//! The harness itself: failures name their seed, hangs are caught, raw exchanges and
//! connection limits behave like a real server.

use std::sync::Arc;
use std::time::Duration;

use vserv_core::commands::{Command, Reply};
use vserv_core::{Config, ServerIdentity};
use vserv_service::client::ClientError;
use vserv_sim::{
    ClientSpec, Finish, LinkConfig, LinkSpec, SeedFailure, ServerSpec, SimServer, World,
    for_each_seed, parse_seed,
};

fn spec(seed: u64, max_connections: usize) -> ServerSpec {
    use rand::SeedableRng;
    let identity = Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(seed),
    ));
    ServerSpec {
        service: World::new(0).service("harness", &identity).unwrap(),
        identity,
        max_connections,
        config: Config::default(),
    }
}

#[test]
fn seeds_parse_and_failures_name_the_seed() {
    assert_eq!(parse_seed("42"), Ok(42));
    assert_eq!(parse_seed(" 0x2a "), Ok(42));
    assert!(parse_seed("x").is_err());
    let failure = SeedFailure {
        seed: Some(99),
        message: "boom".into(),
    };
    assert!(failure.to_string().contains("VSERV_SIM_SEED=99"));
    // A panicking scenario is reported as a failure of its seed, not a bare panic.
    let result = for_each_seed([5], |seed| -> Result<(), String> {
        panic!("scenario {seed} exploded")
    });
    let failure = result.unwrap_err();
    assert!(failure.to_string().contains("VSERV_SIM_SEED="), "{failure}");
    assert!(failure.message.contains("exploded"), "{failure}");
}

#[test]
fn an_unfinished_run_is_reported_as_a_hang_with_its_seed() {
    let mut world = World::new(77);
    let server = world.add_server(spec(1, 4));
    let options = world.client_options(Config::default()).unwrap();
    let client = world
        .add_client(
            server,
            ClientSpec {
                options,
                link: LinkSpec::symmetric(LinkConfig::benign(50)),
                script: vec![Command::Ver],
                pipeline: 1,
                finish: Finish::Quit,
            },
        )
        .unwrap();
    // Stop the clock before anything can finish.
    world.run(Duration::from_millis(1));
    assert!(!world.is_closed(client));
    let violations = world.check().unwrap_err();
    let text = violations.to_string();
    assert!(text.contains("VSERV_SIM_SEED=77"), "{text}");
    assert!(text.contains("never ended"), "{text}");
    // Running on settles everything.
    world.run(Duration::from_secs(3600));
    world.check().unwrap();
    assert_eq!(world.client_report(client).unwrap().answered, 2);
}

#[test]
fn raw_exchange_and_busy_refusal() {
    let server = SimServer::start(3, spec(3, 1), LinkSpec::symmetric(LinkConfig::benign(3)));
    // Junk gets nothing back (no keys, so no close record either).
    assert_eq!(
        server.raw_exchange(b"GET / HTTP/1.1\r\n\r\n"),
        Vec::<u8>::new()
    );
    let dir = tempfile::tempdir().unwrap();
    let options = vserv_service::client::ClientOptions::new(dir.path().join("known"));
    let mut a = server.connect(&options).unwrap();
    // The one slot is taken: a raw connection gets the Busy refusal frame.
    assert_eq!(
        server.raw_exchange(&[]),
        vserv_service::limits::busy_refusal(
            vserv_core::wire::RefusedLimit::MaxConnections,
            vserv_service::limits::BUSY_RETRY_SECS
        )
    );
    match server.connect(&options) {
        Err(ClientError::Protocol(vserv_core::Error::RefusedRetry(hint)))
            if hint.limit == vserv_core::wire::RefusedLimit::MaxConnections => {}
        Err(e) => panic!("expected Busy at the connection limit, got {e}"),
        Ok(_) => panic!("connected beyond the limit"),
    }
    assert_eq!(
        a.call(&Command::Ping {
            payload: b"hi".to_vec()
        })
        .unwrap(),
        Reply::Pong(b"hi".to_vec())
    );
    a.quit().unwrap();
    // The slot is free again.
    let b = server.connect(&options).unwrap();
    b.quit().unwrap();
    server.shutdown().unwrap();
}

#[test]
fn shutdown_closes_open_sessions() {
    let server = SimServer::start(4, spec(4, 8), LinkSpec::symmetric(LinkConfig::benign(100)));
    let dir = tempfile::tempdir().unwrap();
    let options = vserv_service::client::ClientOptions::new(dir.path().join("known"));
    let mut client = server.connect(&options).unwrap();
    assert!(matches!(
        client.call(&Command::Hello),
        Ok(Reply::Greeting(_))
    ));
    let world = server.world().clone();
    server.shutdown().unwrap();
    match client.call(&Command::Ver) {
        Err(ClientError::ClosedByServer {
            code: vserv_core::CloseCode::Shutdown,
            ..
        }) => {}
        other => panic!("expected the server's Shutdown close, got {other:?}"),
    }
    let id = client.id();
    let outcome = world.borrow().outcome(id).cloned().unwrap();
    assert_eq!(outcome.error, None, "the Shutdown close is an orderly end");
}
