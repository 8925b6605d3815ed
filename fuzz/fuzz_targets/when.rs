//! `when`: arbitrary text -> `autoprov::core::rules::Condition::parse` (the `--when` syntax).
//!
//! Parsing must never panic. When it succeeds, printing the condition and parsing that
//! again gives the same condition (what `rules show` prints can be typed back in), and
//! printing is stable. When it fails, the error's column points inside the text or just
//! past its end.
#![no_main]

use autoprov::core::rules::Condition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Only valid UTF-8 reaches the parser (clap hands it a String); no `-> Corpus` needed.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Condition::parse(text) {
        Ok(condition) => {
            let printed = condition.to_string();
            match Condition::parse(&printed) {
                Ok(again) => {
                    assert_eq!(again, condition, "input {text:?} printed as {printed:?}");
                    assert_eq!(again.to_string(), printed, "printing is not stable");
                }
                Err(e) => panic!("input {text:?} printed as {printed:?}, which does not parse: {e}"),
            }
        }
        Err(e) => {
            let len = text.chars().count();
            assert!(
                e.position >= 1 && e.position <= len + 1,
                "error column {} outside 1..={} for {text:?}",
                e.position,
                len + 1
            );
        }
    }
});
