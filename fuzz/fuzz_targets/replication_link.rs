#![no_main]
// Only relative times matter to the core; one clock read per input is fine here.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vserv_core::replication::fuzzing::replication_link(data, std::time::Instant::now())
});
