//! Body of the `datagram` cargo-fuzz target (only with the `fuzzing` feature): arbitrary
//! bytes go to every datagram decoder and to the server-side open, behind the replay guard
//! and the rate limiter, as the service receives them. With the fuzzing build's null record
//! cipher (secure/provider.rs) tags are not checked, so the fuzzer reaches the sealed
//! content's checks. Panics only when a promise breaks: a decoded datagram re-encodes to
//! other bytes, a request opens but its answer exceeds the amplification budget, or a
//! replayed request is accepted twice.

use std::sync::OnceLock;

use super::{
    DatagramKey, KEY_QUERY_LEN, ReplayGuard, RequestDatagram, ResponseDatagram, check_key_query,
    decode_key_answer, open_request,
};
use crate::{ErrorCode, ErrorReply, Response};

fn key() -> &'static DatagramKey {
    static KEY: OnceLock<DatagramKey> = OnceLock::new();
    KEY.get_or_init(|| DatagramKey::from_identity(&crate::fuzzing::identity()))
}

/// Feeds `data` to the decoders and the server-side open.
pub fn datagram(data: &[u8]) {
    let _ = decode_key_answer(data);
    if check_key_query(data).is_ok() {
        assert_eq!(data.len(), KEY_QUERY_LEN);
    }
    if let Ok(response) = ResponseDatagram::decode(data) {
        assert_eq!(
            response.to_bytes(),
            data,
            "response datagram re-encodes differently"
        );
    }
    let Ok(request) = RequestDatagram::decode(data) else {
        return;
    };
    assert_eq!(
        request.to_bytes(),
        data,
        "request datagram re-encodes differently"
    );
    let mut guard = ReplayGuard::default();
    let now = request.time;
    if guard.check(request.time, &request.nonce, now).is_err() {
        return;
    }
    let Ok(opened) = open_request(key(), &request) else {
        return;
    };
    assert!(guard.accept(opened.time, &opened.nonce, now).is_ok());
    assert!(
        guard.accept(opened.time, &opened.nonce, now).is_err(),
        "replay accepted"
    );
    for response in [
        Response {
            id: opened.request.id,
            result: Ok(opened.request.args.clone()),
        },
        Response {
            id: opened.request.id,
            result: Err(ErrorReply::new(ErrorCode::Forbidden, "not over UDP")),
        },
    ] {
        let answer = opened.seal_response(&response, [0; 16]);
        assert!(
            answer.bytes.len() <= opened.answer_budget(),
            "amplification"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Request;
    use crate::datagram::{key_query, seal_request};
    use crate::fuzzing::FuzzRng;

    #[test]
    fn sealed_requests_and_noise_pass_the_target() {
        let request = Request {
            id: 1,
            name: "ping".into(),
            args: vec![b"fuzz".to_vec()],
        };
        let (bytes, _) = seal_request(
            &key().public(),
            &request,
            0,
            1_800_000_000,
            &mut FuzzRng::new(1),
        )
        .expect("seal");
        // The null cipher lets the target open it and check the answer's budget.
        let opened = open_request(key(), &RequestDatagram::decode(&bytes).expect("decode"));
        assert_eq!(opened.expect("open").request, request);
        datagram(&bytes);
        for n in 0..bytes.len() {
            datagram(&bytes[..n]);
        }
        datagram(&key_query());
        datagram(&[0xd2; 100]);
    }
}
