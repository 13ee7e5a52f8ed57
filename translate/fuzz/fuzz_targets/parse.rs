//! Any byte string: the parser returns a config or errors, never panics, and every error names
//! its source.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxc_translate::{parse, Expect, ParseOptions, Source};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for strict in [false, true] {
        for expect in [Expect::Any, Expect::OneShot, Expect::BundlePolicy] {
            let options = ParseOptions { strict, expect };
            if let Err(errors) = parse(Source::Named("fuzz.json".into()), text, options) {
                assert!(errors.iter().all(|e| e.to_string().starts_with("fuzz.json: ")));
            }
        }
    }
});
