//! RateLimitPolicy end to end: resources as users write them, the
//! operator's compiler, proxies on loopback, and what reaches the app.
//! Callers are client proxies of ServiceAccounts `alice` and `bob` (in
//! `demo`) and `carol` (in `other`).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use support::world::{NS, World, send_to, service, workload};
use support::{HttpClient, count, http_client, metrics};

const NO_LABELS: &[(&str, &str)] = &[];
const API: &[(&str, &str)] = &[("app", "api")];
const WEB: &[(&str, &str)] = &[("app", "web")];

/// Workloads `api` (127.0.0.161, its Service at 127.0.10.161) and `web`
/// (127.0.0.162), and the callers of each.
async fn world(
    name: &str,
    resources: &str,
) -> (
    World,
    BTreeMap<&'static str, SocketAddr>,
    BTreeMap<&'static str, SocketAddr>,
) {
    let workloads = [
        workload("api", "127.0.0.161", API),
        workload("web", "127.0.0.162", WEB),
    ];
    let services = vec![
        service("api", "127.0.10.161", API),
        service("web", "127.0.10.162", WEB),
    ];
    let resources = resources.to_owned();
    let mut world = World::start(name, &workloads, services, |_| resources).await;
    let mut api = BTreeMap::new();
    let mut web = BTreeMap::new();
    for (caller, namespace) in [("alice", NS), ("bob", NS), ("carol", "other")] {
        let (proxy, _) = world
            .client_as(namespace, caller, NO_LABELS, "127.0.10.161:80")
            .await;
        api.insert(caller, proxy);
        let (proxy, _) = world
            .client_as(namespace, caller, NO_LABELS, "127.0.10.162:80")
            .await;
        web.insert(caller, proxy);
    }
    (world, api, web)
}

/// The statuses of `n` identical requests.
async fn statuses(
    client: &HttpClient,
    proxy: SocketAddr,
    method: &str,
    path: &str,
    target: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            send_to(client, proxy, method, path, target, headers)
                .await
                .status,
        );
    }
    out
}

fn limited(
    world: &World,
    workload: &str,
    policy: &str,
    prefix: &str,
    route: &str,
    outcome: &str,
) -> u64 {
    count(
        &metrics(&world.servers[workload].state),
        &format!(
            r#"plexus_proxy_ratelimit_total{{policy="RateLimitPolicy/demo/{policy}",stat_prefix="{prefix}",route="{route}",outcome="{outcome}"}}"#
        ),
    )
}

const LIMITS: &str = r#"
apiVersion: plexus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: api-limits}
spec:
  selector: {matchLabels: {app: api}}
  statPrefix: api_rl
  tokenBucket: {maxTokens: 4, tokensPerFill: 4, fillInterval: 1h}
  limitedResponseHeaders: {set: {x-limited-by: plexus}}
  routes:
  - name: login
    match: [{uri: {prefix: /login}, method: {exact: POST}}]
    tokenBucket: {maxTokens: 2, fillInterval: 1h}
    perSourceIdentity: true
  - name: search
    match:
    - uri: {regex: "/search/.*"}
      queryParams: {q: {exact: cats}}
    - headers: {x-tier: {exact: free}}
      withoutHeaders: {x-paid: {}}
    - uri: {exact: /SHOUT}
      ignoreUriCase: true
    tokenBucket: {maxTokens: 1, fillInterval: 1h}
  - name: neighbours
    match: [{uri: {prefix: /n}, sourceNamespace: other}]
    tokenBucket: {maxTokens: 1, fillInterval: 1h}
---
apiVersion: plexus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: web-refill}
spec:
  selector: {matchLabels: {app: web}}
  statusCode: 503
  perSourceIdentity: true
  tokenBucket: {maxTokens: 2, tokensPerFill: 1, fillInterval: 400ms}
  routes:
  - name: shared
    match: [{uri: {prefix: /shared}}]
    perSourceIdentity: false
    tokenBucket: {maxTokens: 1, fillInterval: 1h}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_limit_per_route_and_per_identity() {
    let (mut world, api, web) = world("ratelimit-routes", LIMITS).await;
    world.assert_enforced("RateLimitPolicy/demo/api-limits");
    world.assert_enforced("RateLimitPolicy/demo/web-refill");
    assert!(world.programmed["RateLimitPolicy/demo/api-limits"].0);
    let client = http_client(false);

    // Per identity: two logins each for alice and bob, then 429.
    for caller in ["alice", "bob"] {
        assert_eq!(
            statuses(&client, api[caller], "POST", "/login", "api", &[], 3).await,
            [200, 200, 429],
            "{caller}"
        );
    }
    let answer = send_to(&client, api["alice"], "POST", "/login/x", "api", &[]).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (429, "local_rate_limited")
    );
    let header = |name: &str| answer.header(name).map(str::to_owned);
    assert_eq!(header("x-ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(header("x-ratelimit-remaining").as_deref(), Some("0"));
    let reset: u64 = header("x-ratelimit-reset")
        .and_then(|r| r.parse().ok())
        .expect("a reset");
    assert!((3500..=3600).contains(&reset), "{reset}");
    assert_eq!(header("retry-after"), Some(reset.to_string()));
    assert_eq!(header("x-limited-by").as_deref(), Some("plexus"));

    // One shared bucket for the route's three kinds of match.
    let search = send_to(&client, api["alice"], "GET", "/search/a?q=cats", "api", &[]).await;
    assert_eq!(search.status, 200, "{search:?}");
    assert_eq!(
        send_to(
            &client,
            api["bob"],
            "GET",
            "/other",
            "api",
            &[("x-tier", "free")]
        )
        .await
        .status,
        429
    );
    assert_eq!(
        send_to(&client, api["bob"], "GET", "/shout", "api", &[])
            .await
            .status,
        429
    );
    // sourceNamespace: only carol's requests take the neighbours' route.
    assert_eq!(
        statuses(&client, api["carol"], "GET", "/n", "api", &[], 2).await,
        [200, 429]
    );

    // Everything else shares the default bucket of four: a GET to /login,
    // another query, a paid tier, alice's /n.
    let mut default = Vec::new();
    default.push(
        send_to(&client, api["alice"], "GET", "/login", "api", &[])
            .await
            .status,
    );
    default.push(
        send_to(&client, api["bob"], "GET", "/search/a?q=dogs", "api", &[])
            .await
            .status,
    );
    default.push(
        send_to(
            &client,
            api["carol"],
            "GET",
            "/x",
            "api",
            &[("x-tier", "free"), ("x-paid", "1")],
        )
        .await
        .status,
    );
    default.push(
        send_to(&client, api["alice"], "GET", "/n", "api", &[])
            .await
            .status,
    );
    default.push(
        send_to(&client, api["bob"], "GET", "/", "api", &[])
            .await
            .status,
    );
    assert_eq!(default, [200, 200, 200, 200, 429]);

    // What was refused never reached the app: 4 logins, 1 search, 1 of
    // carol's, 4 of the default.
    assert_eq!(world.servers["api"].app.total(), 10);
    assert_eq!(
        limited(&world, "api", "api-limits", "api_rl", "login", "limited"),
        3
    );
    assert_eq!(
        limited(&world, "api", "api-limits", "api_rl", "login", "allowed"),
        4
    );
    assert_eq!(
        limited(&world, "api", "api-limits", "api_rl", "search", "limited"),
        2
    );
    assert_eq!(
        limited(&world, "api", "api-limits", "api_rl", "default", "limited"),
        1
    );

    // A reload with the same spec keeps the buckets; a changed route gets
    // a fresh bucket, the others keep theirs.
    world.apply(LIMITS);
    assert_eq!(
        send_to(&client, api["alice"], "POST", "/login", "api", &[])
            .await
            .status,
        429
    );
    world.apply(&LIMITS.replace(
        "tokenBucket: {maxTokens: 2, fillInterval: 1h}",
        "tokenBucket: {maxTokens: 3, fillInterval: 1h}",
    ));
    assert_eq!(
        statuses(&client, api["alice"], "POST", "/login", "api", &[], 4).await,
        [200, 200, 200, 429]
    );
    assert_eq!(
        send_to(&client, api["alice"], "GET", "/", "api", &[])
            .await
            .status,
        429
    );

    // The policy's status code, and refills: one token every 400 ms up to
    // two, per caller.
    assert_eq!(
        statuses(&client, web["alice"], "GET", "/", "web", &[], 3).await,
        [200, 200, 503]
    );
    assert_eq!(
        statuses(&client, web["bob"], "GET", "/", "web", &[], 3).await,
        [200, 200, 503]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        statuses(&client, web["alice"], "GET", "/", "web", &[], 2).await,
        [200, 503]
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        statuses(&client, web["alice"], "GET", "/", "web", &[], 3).await,
        [200, 200, 503]
    );
    assert_eq!(
        limited(&world, "web", "web-refill", "", "default", "limited"),
        4
    );
    // A route may share its bucket among callers when the policy does not.
    assert_eq!(
        send_to(&client, web["alice"], "GET", "/shared", "web", &[])
            .await
            .status,
        200
    );
    assert_eq!(
        send_to(&client, web["bob"], "GET", "/shared", "web", &[])
            .await
            .status,
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_count_without_refusing() {
    let resources = r#"
apiVersion: plexus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: shadow}
spec:
  selector: {matchLabels: {app: api}}
  tokenBucket: {maxTokens: 1, fillInterval: 1h}
  enabledPercent: 100
  enforcedPercent: 0
---
apiVersion: plexus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: half}
spec:
  selector: {matchLabels: {app: web}}
  tokenBucket: {maxTokens: 1, fillInterval: 1h}
  enforcedPercent: 50
---
apiVersion: plexus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: disabled}
spec:
  selector: {matchLabels: {app: web}}
  tokenBucket: {maxTokens: 1, fillInterval: 1h}
  enabledPercent: 0
"#;
    let (world, api, web) = world("ratelimit-shadow", resources).await;
    for name in ["shadow", "half", "disabled"] {
        world.assert_enforced(&format!("RateLimitPolicy/demo/{name}"));
    }
    let client = http_client(false);

    // Shadow mode: every request passes, the ones over the limit are counted.
    assert!(
        statuses(&client, api["alice"], "GET", "/", "api", &[], 10)
            .await
            .iter()
            .all(|s| *s == 200)
    );
    assert_eq!(world.servers["api"].app.total(), 10);
    assert_eq!(
        limited(&world, "api", "shadow", "", "default", "allowed"),
        1
    );
    assert_eq!(
        limited(&world, "api", "shadow", "", "default", "shadow_limited"),
        9
    );

    // Half enforced: of 40 requests over the limit about half are refused
    // (outside 5..=35 has a chance below one in a million); the disabled
    // policy takes no token from anyone.
    let answers = statuses(&client, web["bob"], "GET", "/", "web", &[], 41).await;
    let refused = answers.iter().filter(|s| **s == 429).count() as u64;
    assert!((5..=35).contains(&refused), "{refused} of 40 refused");
    assert_eq!(
        limited(&world, "web", "half", "", "default", "limited"),
        refused
    );
    assert_eq!(
        limited(&world, "web", "half", "", "default", "shadow_limited"),
        40 - refused
    );
    assert_eq!(world.servers["web"].app.total(), 41 - refused);
    let all = metrics(&world.servers["web"].state);
    assert!(!all.contains("RateLimitPolicy/demo/disabled"), "{all}");
}
