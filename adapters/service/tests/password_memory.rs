//! The memory of password checks stays bounded: with the production argon2 parameters
//! (19 MiB per check), many logins at once and many logins on fresh threads (one per
//! connection, as the blocking runtime runs them) leave the process's resident memory within
//! the password-check pool's own blocks. Alone in its test binary, so no other test's memory
//! is counted. Linux only (reads `/proc/self/status`).
#![cfg(target_os = "linux")]

use std::sync::{Arc, Barrier};

use rand::SeedableRng;
use vserv_core::commands::UserRole;
use vserv_service::accounts::{Accounts, CheckLimits, PasswordParams};
use vserv_store::memory::MemoryStore;

const PASSWORD: &[u8] = b"alice-password";
/// One check's blocks with the production parameters, KiB.
const CHECK_KIB: u64 = PasswordParams::DEFAULT.m_cost_kib as u64;

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn concurrent_and_repeated_checks_stay_within_the_pool() {
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(11));
    let slots = 2;
    let limits = CheckLimits {
        max_concurrent: slots,
        max_queued: 64,
    };
    let accounts = Arc::new(
        Accounts::with_limits(
            Arc::new(MemoryStore::new()),
            PasswordParams::DEFAULT,
            limits,
            rng,
        )
        .unwrap(),
    );
    accounts
        .create("alice", UserRole::User, PASSWORD, 1_700_000_000)
        .unwrap();
    let baseline = status_kib("VmRSS");
    // Slots the pool may fill, plus slack for thread stacks and allocator noise.
    let bound = (slots as u64 + 2) * CHECK_KIB;

    // Twelve logins at once, each on its own thread.
    let threads = 12;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (accounts, barrier) = (accounts.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let name = if i % 2 == 0 { "alice" } else { "nobody" };
                accounts.check_password(name, PASSWORD).unwrap().is_some()
            })
        })
        .collect();
    let found: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(found.iter().filter(|&&f| f).count(), threads / 2);
    let peak = status_kib("VmHWM");
    assert!(
        peak.saturating_sub(baseline) < bound,
        "peak RSS grew {} KiB over {baseline} KiB under {threads} concurrent checks; \
         the pool of {slots} allows {bound} KiB",
        peak - baseline
    );

    // Thirty logins one after the other, each on a fresh thread.
    for _ in 0..30 {
        let accounts = accounts.clone();
        let ok = std::thread::spawn(move || accounts.check_password("alice", PASSWORD))
            .join()
            .unwrap()
            .unwrap();
        assert!(ok.is_some());
    }
    let after = status_kib("VmRSS");
    assert!(
        after.saturating_sub(baseline) < bound,
        "RSS grew {} KiB over {baseline} KiB after 30 checks on fresh threads; \
         the pool of {slots} allows {bound} KiB",
        after - baseline
    );
}
