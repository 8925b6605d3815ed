//! `control`: arbitrary bytes -> `serde_json::from_slice::<autoprov::control::Envelope>`, the
//! way the daemon reads a request line from the control socket.
//!
//! Decoding must never panic. When it succeeds, the envelope re-encodes, and decoding the
//! encoding gives the same JSON (what the client sends is what the server reads). The
//! `when` conditions of `rules add` / `rules edit` are parsed too, as the daemon does.
#![no_main]

use autoprov::api::Request;
use autoprov::control::Envelope;
use autoprov::core::rules::Condition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else {
        return;
    };
    let json = serde_json::to_value(&envelope).expect("an envelope always serializes");
    let bytes = serde_json::to_vec(&envelope).expect("an envelope always serializes");
    let again: Envelope = match serde_json::from_slice(&bytes) {
        Ok(e) => e,
        Err(e) => panic!(
            "re-encoded envelope does not decode: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(
        serde_json::to_value(&again).expect("serializes"),
        json,
        "round trip changed the envelope"
    );
    let _ = envelope.request.is_change();
    let _ = envelope.request.provisions();
    if let Request::RulesAdd { when, .. } | Request::RulesEdit { when, .. } = &envelope.request {
        for w in when {
            if let Ok(c) = Condition::parse(w) {
                assert_eq!(Condition::parse(&c.to_string()).as_ref(), Ok(&c), "{w:?}");
            }
        }
    }
});
