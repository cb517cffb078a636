//! The key set fetcher against an issuer on loopback whose answers the
//! tests change: rotation, failures that keep the last good set, slow
//! answers, hosts the operator may not reach.

use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const EC_A: &str = include_str!("../../../proxy/tests/fixtures/jwt/ec-a.jwk.json");
const EC_B: &str = include_str!("../../../proxy/tests/fixtures/jwt/ec-b.jwk.json");

fn set(keys: &[&str]) -> String {
    format!("{{\"keys\": [{}]}}", keys.join(","))
}

/// What the issuer answers: a status and a body, or nothing at all.
#[derive(Clone)]
enum Answer {
    Http(u16, String),
    Silence,
}

/// An issuer on loopback answering every request with what `answer` holds;
/// its URL and how many requests it had.
async fn issuer(answer: Arc<Mutex<Answer>>) -> (String, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let hits = Arc::new(Mutex::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            *counted.lock().expect("hits") += 1;
            let answer = answer.lock().expect("answer").clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                match answer {
                    Answer::Http(status, body) => {
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                    }
                    Answer::Silence => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    (format!("http://{addr}/.well-known/jwks.json"), hits)
}

fn fetcher(refresh: Duration, allowed_hosts: &[&str]) -> Jwks {
    Jwks::new(Settings {
        refresh,
        retry: refresh,
        allowed_hosts: allowed_hosts.iter().map(|h| h.to_string()).collect(),
    })
    .expect("a TLS client")
}

fn wants(uri: &str, timeout: Duration) -> BTreeMap<String, Duration> {
    BTreeMap::from([(uri.to_owned(), timeout)])
}

#[test]
fn uris_are_http_urls_with_a_host() {
    assert!(parse_uri("https://issuer.example/keys").is_ok());
    assert!(parse_uri("http://10.0.0.1:8080/jwks").is_ok());
    for bad in [
        "",
        "issuer.example/keys",
        "ftp://issuer.example/keys",
        "https:///keys",
        "not a url",
    ] {
        assert!(parse_uri(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn key_sets_need_a_key_the_proxies_can_use() {
    assert_eq!(usable_keys(&set(&[EC_A, EC_B])), Ok(2));
    // An unknown key type beside a good one: the good one counts.
    assert_eq!(usable_keys(&set(&[EC_A, r#"{"kty": "XYZ"}"#])), Ok(1));
    assert!(
        usable_keys(&set(&[r#"{"kty": "XYZ"}"#]))
            .expect_err("refused")
            .contains("no key")
    );
    assert!(
        usable_keys(r#"{"keys": {}}"#)
            .expect_err("refused")
            .contains("no \"keys\" list")
    );
    assert!(
        usable_keys("<html>")
            .expect_err("refused")
            .contains("not a JSON Web Key Set")
    );
}

#[test]
fn allowed_hosts_are_names_and_subdomain_wildcards() {
    let allowed = vec![
        "issuer.example".to_owned(),
        "*.svc.cluster.local".to_owned(),
    ];
    assert!(host_allowed("issuer.example", &allowed));
    assert!(host_allowed("ISSUER.example", &allowed));
    assert!(host_allowed("jwks.demo.svc.cluster.local", &allowed));
    assert!(!host_allowed("svc.cluster.local", &allowed));
    assert!(!host_allowed(".svc.cluster.local", &allowed));
    assert!(!host_allowed("evil.issuer.example", &allowed));
    assert!(!host_allowed("169.254.169.254", &allowed));
    assert!(host_allowed("anything", &[]));
}

#[tokio::test]
async fn rotations_are_followed_and_failures_keep_the_last_good_set() {
    let answer = Arc::new(Mutex::new(Answer::Http(200, set(&[EC_A]))));
    let (uri, hits) = issuer(answer.clone()).await;
    let jwks = fetcher(Duration::ZERO, &["127.0.0.1"]);
    let wanted = wants(&uri, Duration::from_secs(2));

    assert!(
        jwks.refresh_due(&wanted).await,
        "the first fetch changes what the compiler reads"
    );
    let first = jwks.snapshot()[&uri].clone();
    assert_eq!((first.keys, first.error), (Some(set(&[EC_A])), None));
    // The same answer again changes nothing.
    assert!(!jwks.refresh_due(&wanted).await);

    // The issuer rotates: the new kid is what the compiler reads next.
    *answer.lock().expect("answer") = Answer::Http(200, set(&[EC_B]));
    assert!(jwks.refresh_due(&wanted).await);
    assert_eq!(jwks.snapshot()[&uri].keys, Some(set(&[EC_B])));

    // A server error, then an answer without a usable key: each is
    // reported, and the last good set stays.
    *answer.lock().expect("answer") = Answer::Http(500, "oops".into());
    assert!(jwks.refresh_due(&wanted).await);
    let failed = jwks.snapshot()[&uri].clone();
    assert_eq!(failed.keys, Some(set(&[EC_B])));
    assert!(
        failed.error.as_deref().unwrap_or_default().contains("500"),
        "{failed:?}"
    );
    *answer.lock().expect("answer") = Answer::Http(200, set(&[r#"{"kty": "XYZ"}"#]));
    jwks.refresh_due(&wanted).await;
    let unusable = jwks.snapshot()[&uri].clone();
    assert_eq!(unusable.keys, Some(set(&[EC_B])));
    assert!(
        unusable
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("no key"),
        "{unusable:?}"
    );

    // Recovery clears the error.
    *answer.lock().expect("answer") = Answer::Http(200, set(&[EC_A, EC_B]));
    assert!(jwks.refresh_due(&wanted).await);
    assert_eq!(
        jwks.snapshot()[&uri],
        FetchedJwks {
            keys: Some(set(&[EC_A, EC_B])),
            error: None
        }
    );

    // A URI no RequestAuthentication names any more is forgotten.
    assert!(!jwks.refresh_due(&BTreeMap::new()).await);
    assert!(jwks.snapshot().is_empty());
    assert_eq!(*hits.lock().expect("hits"), 6);
}

#[tokio::test]
async fn sets_are_fetched_again_only_when_due() {
    let answer = Arc::new(Mutex::new(Answer::Http(200, set(&[EC_A]))));
    let (uri, hits) = issuer(answer).await;
    let jwks = fetcher(Duration::from_secs(3600), &[]);
    let wanted = wants(&uri, Duration::from_secs(2));
    assert!(jwks.refresh_due(&wanted).await);
    for _ in 0..3 {
        assert!(!jwks.refresh_due(&wanted).await);
    }
    assert_eq!(
        *hits.lock().expect("hits"),
        1,
        "one fetch per refresh interval"
    );
}

#[tokio::test]
async fn slow_issuers_time_out_and_forbidden_hosts_are_not_dialed() {
    let answer = Arc::new(Mutex::new(Answer::Silence));
    let (uri, hits) = issuer(answer).await;
    let jwks = fetcher(Duration::ZERO, &["127.0.0.1"]);
    let started = Instant::now();
    jwks.refresh_due(&wants(&uri, Duration::from_millis(300)))
        .await;
    let slow = jwks.snapshot()[&uri].clone();
    assert_eq!(slow.keys, None);
    assert!(
        slow.error
            .as_deref()
            .unwrap_or_default()
            .contains("timed out"),
        "{slow:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A host outside --jwks-allowed-hosts is refused before any connection.
    let strict = fetcher(Duration::ZERO, &["issuer.example"]);
    strict
        .refresh_due(&wants(&uri, Duration::from_secs(2)))
        .await;
    let refused = strict.snapshot()[&uri].clone();
    assert!(
        refused
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("may not fetch from 127.0.0.1"),
        "{refused:?}"
    );
    assert_eq!(
        *hits.lock().expect("hits"),
        1,
        "only the first fetcher dialed"
    );
}
