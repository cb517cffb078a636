//! The path normalization Istio applies by default (its `BASE`), done once
//! on every inbound request before any policy looks at it; the app receives
//! the normalized path too, so what a policy saw is what the app serves:
//! - `%00` anywhere refuses the request (400);
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded, once; everything else stays encoded (`%2F` and `%5C` too:
//!   their meaning is the app's business);
//! - backslashes become slashes;
//! - `.` and `..` segments are removed (RFC 3986, 5.2.4);
//! - duplicate slashes are kept.
//!
//! Policies match the path without its query.

/// Why a path cannot be normalized.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// It holds `%00`.
    Nul,
}

/// The normalized form of `path` (no query).
pub fn normalize(path: &str) -> Result<String, Refused> {
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let c = u8::try_from(h * 16 + l).unwrap_or(0);
                if c == 0 {
                    return Err(Refused::Nul);
                }
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    decoded.push(char::from(c));
                } else {
                    decoded.push_str(&path[i..i + 3]);
                }
                i += 3;
                continue;
            }
        }
        if b == b'\\' {
            decoded.push('/');
            i += 1;
            continue;
        }
        // Copy the whole character (paths may hold raw UTF-8).
        let len = utf8_len(b);
        let end = (i + len).min(bytes.len());
        decoded.push_str(path.get(i..end).unwrap_or("\u{FFFD}"));
        i = end;
    }
    Ok(remove_dot_segments(&decoded))
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// RFC 3986, 5.2.4, on an absolute path; anything else (`*`) is kept.
fn remove_dot_segments(path: &str) -> String {
    let Some(rest) = path.strip_prefix('/') else {
        return path.to_owned();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    let mut output: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    output.pop();
                }
                // A trailing dot segment leaves the directory: `/a/..` is `/`.
                if i == last {
                    output.push("");
                }
            }
            other => output.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &output {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_as_istio_base() {
        for (path, expected) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/info/../admin", "/admin"),
            ("/info/./x", "/info/x"),
            ("/%2e%2e/admin", "/admin"),
            ("/info/%2E%2E/admin", "/admin"),
            ("/a/b/../../../admin", "/admin"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/a//b", "/a//b"),
            ("/admin%2Fx", "/admin%2Fx"),
            ("/admin%2fx", "/admin%2fx"),
            ("/a%5Cb", "/a%5Cb"),
            ("/some\\data", "/some/data"),
            ("/%61%62%63", "/abc"),
            ("/%7e%5f%2d", "/~_-"),
            ("/%252e%252e/admin", "/%252e%252e/admin"),
            ("/a%20b", "/a%20b"),
            ("/a%zz", "/a%zz"),
            ("/a%2", "/a%2"),
            ("/caf\u{e9}/..", "/"),
            ("/.hidden", "/.hidden"),
            ("/a/...", "/a/..."),
            ("*", "*"),
        ] {
            assert_eq!(normalize(path).as_deref(), Ok(expected), "{path}");
        }
        assert_eq!(normalize("/a%00b"), Err(Refused::Nul));
        assert_eq!(normalize("/%00"), Err(Refused::Nul));
    }
}
