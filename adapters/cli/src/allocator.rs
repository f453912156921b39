//! The binary's allocator.
//!
//! Every allocation goes through jemalloc (feature `jemalloc`, on unix), whose background
//! threads return the pages a burst of sessions freed to the OS within seconds of its end.
//! glibc's malloc keeps them: each of the burst's threads allocated in one of up to 16
//! arenas, and a few chunks still live in an arena pin its pages (a blocking server stayed
//! 17 MiB above its idle RSS after 5,000 sessions closed; `vserv bench burst` measures it).
//!
//! jemalloc also keeps a cache of freed blocks per thread, and the blocks a quiet
//! long-lived thread keeps pin their pages the same way; [`install`] lets the runtimes
//! empty it ([`vserv_pool::thread_cache`]).

#[cfg(all(unix, feature = "jemalloc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tells the runtimes how to empty a quiet thread's allocator cache (nothing to do on the
/// system's allocator).
pub fn install() {
    #[cfg(all(unix, feature = "jemalloc"))]
    vserv_pool::thread_cache::set_release(empty_thread_cache);
}

/// Hands the calling thread's cached blocks back to jemalloc's arenas: turning the thread's
/// cache off flushes and frees it, turning it on again starts an empty one (the safe
/// interface has no call for `thread.tcache.flush`, which takes no value). A thread whose
/// cache is off (`MALLOC_CONF`) is left as it is.
#[cfg(all(unix, feature = "jemalloc"))]
fn empty_thread_cache() {
    use tikv_jemalloc_ctl::{Access, AsName};
    let enabled = b"thread.tcache.enabled\0".name();
    if Access::<bool>::read(enabled).unwrap_or(false) {
        let off = Access::<bool>::write(enabled, false);
        let on = Access::<bool>::write(enabled, true);
        if let Err(e) = off.and(on) {
            tracing::debug!(error = %e, "could not empty a thread's allocator cache");
        }
    }
}
