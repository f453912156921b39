#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vserv_core::datagram::fuzz::datagram(data));
