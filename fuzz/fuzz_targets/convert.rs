//! `plexus convert` over arbitrary YAML: every document is translated or
//! reported, never a panic, and what translated prints back as YAML.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_cli::convert::{convert, to_yaml};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(conversion) = convert(text) {
        to_yaml(&conversion.converted).expect("what converted prints as YAML");
    }
});
