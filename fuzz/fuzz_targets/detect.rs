//! What a connection opens with, from its first bytes: outbound protocol
//! detection (`detect_bytes`), inbound classification (`opening`) and the
//! ClientHello's server name (`server_name`, for TLS routes). None may
//! panic; detection never changes its mind as more bytes arrive (bytes are
//! read in whatever pieces the network gives); a server name comes only
//! from something that opens as TLS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_proxy::detect::{Opening, detect_bytes, opening, server_name};

/// Detection reads at most this much of a request line.
const MAX_DETECT_BYTES: usize = 8192;

fuzz_target!(|data: &[u8]| {
    let whole = detect_bytes(data);
    if data.len() < MAX_DETECT_BYTES {
        for end in 0..data.len() {
            if let Some(early) = detect_bytes(&data[..end]) {
                assert_eq!(Some(early), whole, "decided on {end} bytes, then changed");
                break;
            }
        }
    }
    let opened = opening(data);
    if server_name(data).is_some() {
        assert_ne!(opened, Opening::Plaintext);
    }
});
