//! Security policy on the cluster, applied with `kubectl` as users do:
//! AuthorizationPolicy (the seed patterns: principal + method + path ALLOW,
//! DENY, allow-nothing, namespace-wide, requestPrincipals, and an L4 ALLOW
//! on an opaque TCP port), RequestAuthentication with a `jwksUri` served by
//! an issuer pod and rotated there, and RateLimitPolicy.
//!
//! The target is `vault` (the test server, logging every request it
//! answers, with a TCP echo port); the callers are three demo workloads,
//! each its own identity: `client`, `productpage` and `reviews` (v1).
//! Every request carries a `case` number: the vault's log must hold each
//! allowed case once and no denied one. The vault proxy's metrics and log
//! must name the policy behind every denial.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use kube::{Client, ResourceExt};
use plexus_e2e::demo::{self, APP_PORT, Calls, kubectl_apply};

/// The callers: (app, version, ServiceAccount).
const CLIENT: (&str, Option<&str>) = ("client", None);
const PRODUCTPAGE: (&str, Option<&str>) = ("productpage", Some("v1"));
const REVIEWS: (&str, Option<&str>) = ("reviews", Some("v1"));

const ISSUER: &str = "https://issuer.e2e.invalid";
/// How long a change takes at most to reach the proxies (the kubelet
/// refreshes ConfigMap volumes about once a minute).
const PROPAGATION: Duration = Duration::from_secs(150);

fn workloads(image: &str) -> String {
    let container = |name: &str, extra_env: &str, extra_ports: &str| {
        demo::test_server_spec(image, name, 9080, "http", extra_env, extra_ports)
    };
    let vault = container(
        "vault",
        "- {name: LOG_REQUESTS, value: \"1\"}\n        - {name: TCP_ECHO_PORT, value: \"9090\"}",
        "- {name: tcp-echo, containerPort: 9090}",
    );
    let issuer = container("issuer", "", "");
    format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: vault}}
---
apiVersion: v1
kind: Service
metadata: {{name: vault}}
spec:
  selector: {{app: vault}}
  ports:
  - {{name: http, port: 9080}}
  - {{name: tcp-echo, port: 9090}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: vault}}
spec:
  selector: {{matchLabels: {{app: vault}}}}
  template:
    metadata: {{labels: {{app: vault}}}}
    spec:{vault}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: issuer}}
---
apiVersion: v1
kind: Service
metadata: {{name: issuer}}
spec:
  selector: {{app: issuer}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: issuer}}
spec:
  selector: {{matchLabels: {{app: issuer}}}}
  template:
    # An issuer outside the mesh: the operator fetches its keys.
    metadata: {{labels: {{app: issuer, plexus.dev/inject: disabled}}}}
    spec:{issuer}
"#
    )
}

fn kubectl_delete(namespace: &str, what: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["delete", "--namespace", namespace, "--wait=false"];
    args.extend_from_slice(what);
    demo::kubectl(&args)?;
    Ok(())
}

/// A request of the test.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    token: Option<&'a str>,
}

/// GET /api/items with `token`.
fn with(token: &str) -> Request<'_> {
    Request {
        method: "GET",
        path: "/api/items",
        token: Some(token),
    }
}

fn get(path: &str) -> Request<'_> {
    Request {
        method: "GET",
        path,
        token: None,
    }
}

/// The test's state: the callers' pods, and the cases sent so far.
struct Run<'a> {
    client: &'a Client,
    namespace: &'a str,
    next_case: u32,
    allowed: BTreeSet<u32>,
    denied: BTreeSet<u32>,
}

impl Run<'_> {
    /// `count` requests from `caller` to the vault through its sidecar.
    async fn calls(
        &self,
        caller: (&str, Option<&str>),
        request: &Request<'_>,
        query: &str,
        count: u32,
    ) -> anyhow::Result<Calls> {
        let pod = demo::pod_of(self.client, self.namespace, caller.0, caller.1).await?;
        let url = format!("http://vault:9080{}?{query}", request.path);
        let mut params = form_urlencoded::Serializer::new(String::new());
        params
            .append_pair("url", &url)
            .append_pair("count", &count.to_string())
            .append_pair("method", request.method);
        if let Some(token) = request.token {
            params.append_pair("token", token);
        }
        let path = format!("/call?{}", params.finish());
        let text = demo::pod_get(
            self.client,
            self.namespace,
            &pod.name_any(),
            APP_PORT,
            &path,
        )
        .await?;
        serde_json::from_str(&text).with_context(|| format!("{}'s answer: {text}", caller.0))
    }

    /// One numbered request; fails unless it is answered `expected`.
    async fn expect(
        &mut self,
        caller: (&str, Option<&str>),
        request: Request<'_>,
        expected: u16,
    ) -> anyhow::Result<()> {
        let case = self.next_case;
        self.next_case += 1;
        let calls = self
            .calls(caller, &request, &format!("case={case}"), 1)
            .await?;
        println!(
            "  {} {} {} (token: {}) -> {:?}",
            caller.0,
            request.method,
            request.path,
            request.token.map_or("none", |_| "yes"),
            calls.statuses
        );
        ensure!(
            calls.status(expected) == 1,
            "{} {} {} must answer {expected}: {calls:?}",
            caller.0,
            request.method,
            request.path
        );
        if expected < 400 {
            self.allowed.insert(case);
        } else {
            self.denied.insert(case);
        }
        Ok(())
    }

    /// Waits until `request` from `caller` is answered `expected` (the
    /// configuration reached the vault's proxy); the probes are not cases.
    async fn until(
        &self,
        what: &str,
        caller: (&str, Option<&str>),
        request: Request<'_>,
        expected: u16,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let calls = self.calls(caller, &request, "probe", 1).await?;
            if calls.status(expected) == 1 {
                println!("{what}: in force after {:.0?}", started.elapsed());
                return Ok(());
            }
            if started.elapsed() > PROPAGATION {
                bail!("{what}: not in force after {PROPAGATION:?}: {calls:?}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// What `/tcp` to the vault's echo port got back for `caller`.
    async fn tcp(&self, caller: (&str, Option<&str>)) -> anyhow::Result<String> {
        let pod = demo::pod_of(self.client, self.namespace, caller.0, caller.1).await?;
        let path = "/tcp?addr=vault:9090&message=hello-vault";
        let text =
            demo::pod_get(self.client, self.namespace, &pod.name_any(), APP_PORT, path).await?;
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        println!("  {} TCP to vault:9090 -> {answer}", caller.0);
        Ok(answer["echo"].as_str().unwrap_or_default().to_owned())
    }

    async fn vault_pod(&self) -> anyhow::Result<String> {
        Ok(demo::pod_of(self.client, self.namespace, "vault", None)
            .await?
            .name_any())
    }

    /// A container's log of the vault pod.
    async fn vault_log(&self, container: &str) -> anyhow::Result<String> {
        let pod = self.vault_pod().await?;
        demo::kubectl(&["logs", "--namespace", self.namespace, &pod, "-c", container])
    }

    async fn vault_metrics(&self) -> anyhow::Result<String> {
        demo::proxy_metrics(self.client, self.namespace, &self.vault_pod().await?).await
    }

    fn policy(&self, kind: &str, name: &str) -> String {
        format!("{kind}/{}/{name}", self.namespace)
    }
}

fn principal(namespace: &str, account: &str) -> String {
    format!("cluster.local/ns/{namespace}/sa/{account}")
}

fn fixture(name: &str) -> anyhow::Result<String> {
    let path = demo::repository()
        .join("proxy/tests/fixtures/jwt")
        .join(name);
    std::fs::read_to_string(&path).with_context(|| path.display().to_string())
}

fn key_set(key: &str) -> anyhow::Result<String> {
    let jwk: serde_json::Value = serde_json::from_str(&fixture(&format!("{key}.jwk.json"))?)?;
    Ok(serde_json::json!({ "keys": [jwk] }).to_string())
}

/// A token of [`ISSUER`] for `sub`, signed by fixture key `key` (ES256),
/// expiring `expires_in` seconds from now (negative: expired).
fn token(key: &str, sub: &str, expires_in: i64) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let claims =
        serde_json::json!({"iss": ISSUER, "sub": sub, "exp": now + expires_in, "iat": now});
    let pem = fixture(&format!("{key}.pem"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key.to_owned());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())?;
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// Stores `keys` in the issuer pod (through the API server).
async fn publish(client: &Client, namespace: &str, keys: &str) -> anyhow::Result<()> {
    let pod = demo::pod_of(client, namespace, "issuer", None).await?;
    let uri = format!(
        "/api/v1/namespaces/{namespace}/pods/{}:{APP_PORT}/proxy/jwks",
        pod.name_any()
    );
    let request = http::Request::put(&uri)
        .header("content-type", "application/json")
        .body(keys.as_bytes().to_vec())?;
    client
        .request_text(request)
        .await
        .with_context(|| format!("PUT {uri}"))?;
    Ok(())
}

/// Waits until the Programmed condition of `what` has `reason` and its
/// message says `saying`.
async fn programmed(
    namespace: &str,
    what: &str,
    reason: &str,
    saying: &str,
) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let condition = demo::kubectl(&[
            "get",
            what,
            "--namespace",
            namespace,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Programmed")].reason}: {.status.conditions[?(@.type=="Programmed")].message}"#,
        ])?;
        if condition.starts_with(&format!("{reason}:")) && condition.contains(saying) {
            println!("{what} Programmed: {condition}");
            return Ok(condition);
        }
        if started.elapsed() > PROPAGATION {
            bail!(
                "{what} is not Programmed {reason} ({saying:?}) after {PROPAGATION:?}: {condition}"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub async fn policies_are_enforced(client: &Client, namespace: &str) -> anyhow::Result<()> {
    kubectl_apply(namespace, &workloads(&plexus_e2e::test_server_image()))?;
    demo::rollouts_done(namespace, &["vault", "issuer"])?;
    let mut run = Run {
        client,
        namespace,
        next_case: 0,
        allowed: BTreeSet::new(),
        denied: BTreeSet::new(),
    };
    run.until("the vault", CLIENT, get("/api/items"), 200)
        .await?;
    authorization(&mut run).await?;
    allow_nothing(&mut run).await?;
    jwt(&mut run).await?;
    rate_limits(&mut run).await?;

    // The app saw every allowed case once and no denied one.
    let log = run.vault_log("vault").await?;
    let seen: Vec<u32> = log
        .lines()
        .filter_map(|l| {
            l.split("case=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let seen_set: BTreeSet<u32> = seen.iter().copied().collect();
    println!(
        "the vault received {} of the {} cases: every allowed one ({}), no denied one ({})",
        seen.len(),
        run.next_case,
        run.allowed.len(),
        run.denied.len()
    );
    ensure!(
        seen.len() == seen_set.len() && seen_set == run.allowed,
        "the vault must receive exactly the allowed cases once: received {seen:?}, allowed {:?}, denied {:?}",
        run.allowed,
        run.denied
    );
    kubectl_delete(
        namespace,
        &[
            "ratelimitpolicy/vault-rl",
            "authorizationpolicy/namespace-deny",
        ],
    )
}

async fn authorization(run: &mut Run<'_>) -> anyhow::Result<()> {
    let ns = run.namespace.to_owned();
    let policies = format!(
        r#"
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: vault-allow}}
spec:
  selector: {{matchLabels: {{app: vault}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: ["{client}", "{productpage}"]}}}}]
    to: [{{operation: {{methods: [GET], paths: ["/api/*"]}}}}]
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: vault-tcp}}
spec:
  selector: {{matchLabels: {{app: vault}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: ["{client}"]}}}}]
    to: [{{operation: {{ports: ["9090"]}}}}]
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: vault-deny}}
spec:
  selector: {{matchLabels: {{app: vault}}}}
  action: DENY
  # A DENY rule's HTTP fields are dropped on opaque TCP (it matches more,
  # as Istio's): the port keeps this one off the echo port.
  rules:
  - to: [{{operation: {{ports: ["9080"], paths: [/api/secret, "/api/secret/*"]}}}}]
---
# Namespace-wide: every workload of the namespace.
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: namespace-deny}}
spec:
  action: DENY
  rules:
  - to: [{{operation: {{ports: ["9080"], paths: [/api/quarantined]}}}}]
"#,
        client = principal(&ns, "client"),
        productpage = principal(&ns, "productpage"),
    );
    kubectl_apply(&ns, &policies)?;
    for name in ["vault-allow", "vault-tcp", "vault-deny", "namespace-deny"] {
        programmed(
            &ns,
            &format!("authorizationpolicy/{name}"),
            "Programmed",
            "",
        )
        .await?;
    }
    run.until("the ALLOW policies", REVIEWS, get("/api/items"), 403)
        .await?;
    println!("principal + method + path ALLOW, DENY, namespace-wide DENY:");
    run.expect(CLIENT, get("/api/items"), 200).await?;
    run.expect(PRODUCTPAGE, get("/api/items"), 200).await?;
    run.expect(REVIEWS, get("/api/items"), 403).await?;
    let post = Request {
        method: "POST",
        path: "/api/items",
        token: None,
    };
    run.expect(CLIENT, post, 403).await?;
    run.expect(PRODUCTPAGE, get("/other"), 403).await?;
    run.expect(CLIENT, get("/api/secret"), 403).await?;
    run.expect(PRODUCTPAGE, get("/api/secret/key"), 403).await?;
    run.expect(CLIENT, get("/api/x/../secret"), 403).await?;
    run.expect(CLIENT, get("/api/quarantined"), 403).await?;

    // L4: the echo port is opaque TCP; only the client's identity may open it.
    let (admitted, refused) = (run.tcp(CLIENT).await?, run.tcp(PRODUCTPAGE).await?);
    println!("TCP ALLOW by principal: client got {admitted:?}, productpage got {refused:?}");
    ensure!(
        admitted == "hello-vault" && refused.is_empty(),
        "the TCP port must echo for the client only: client {admitted:?}, productpage {refused:?}"
    );

    let metrics = run.vault_metrics().await?;
    let log = run.vault_log("plexus-proxy").await?;
    let denied = "plexus_proxy_authz_denied_total";
    let allow_policies = format!(
        "{},{}",
        run.policy("AuthorizationPolicy", "vault-allow"),
        run.policy("AuthorizationPolicy", "vault-tcp")
    );
    for (policy, reason, protocol, at_least) in [
        (
            run.policy("AuthorizationPolicy", "vault-deny"),
            "denied",
            "http",
            3,
        ),
        (
            run.policy("AuthorizationPolicy", "namespace-deny"),
            "denied",
            "http",
            1,
        ),
        (allow_policies.clone(), "no-allow-match", "http", 3),
        (allow_policies, "no-allow-match", "tcp", 1),
    ] {
        let n = demo::counter(
            &metrics,
            denied,
            &[
                ("policy", &policy),
                ("reason", reason),
                ("protocol", protocol),
            ],
        );
        println!(
            "  {denied}{{policy=\"{policy}\",reason=\"{reason}\",protocol=\"{protocol}\"}} {n}"
        );
        ensure!(
            n >= at_least,
            "{policy} must be counted for {at_least} {protocol} denials: {n}"
        );
        let first = policy.split(',').next().unwrap_or_default();
        ensure!(
            log.contains(first),
            "the vault proxy's log must name {first}"
        );
    }
    Ok(())
}

async fn allow_nothing(run: &mut Run<'_>) -> anyhow::Result<()> {
    let ns = run.namespace.to_owned();
    kubectl_apply(
        &ns,
        r#"
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: vault-closed}
spec:
  selector: {matchLabels: {app: vault}}
"#,
    )?;
    kubectl_delete(
        &ns,
        &[
            "authorizationpolicy/vault-allow",
            "authorizationpolicy/vault-tcp",
        ],
    )?;
    run.until("allow-nothing", CLIENT, get("/api/items"), 403)
        .await?;
    println!("allow-nothing:");
    for caller in [CLIENT, PRODUCTPAGE, REVIEWS] {
        run.expect(caller, get("/api/items"), 403).await?;
    }
    let tcp = run.tcp(CLIENT).await?;
    ensure!(tcp.is_empty(), "allow-nothing must refuse TCP too: {tcp:?}");
    let metrics = run.vault_metrics().await?;
    let policy = run.policy("AuthorizationPolicy", "vault-closed");
    let n = demo::counter(
        &metrics,
        "plexus_proxy_authz_denied_total",
        &[("policy", &policy), ("reason", "allow-nothing")],
    );
    println!(
        "  plexus_proxy_authz_denied_total{{policy=\"{policy}\",reason=\"allow-nothing\"}} {n}"
    );
    ensure!(
        n >= 4,
        "{policy} must be counted for 3 requests and a connection: {n}"
    );
    ensure!(
        run.vault_log("plexus-proxy").await?.contains(&policy),
        "the log must name {policy}"
    );
    kubectl_delete(
        &ns,
        &[
            "authorizationpolicy/vault-closed",
            "authorizationpolicy/vault-deny",
        ],
    )
}

async fn jwt(run: &mut Run<'_>) -> anyhow::Result<()> {
    let ns = run.namespace.to_owned();
    let uri = format!("http://issuer.{ns}.svc.cluster.local:9080/jwks");
    kubectl_apply(
        &ns,
        &format!(
            r#"
apiVersion: plexus.dev/v1alpha1
kind: RequestAuthentication
metadata: {{name: vault-jwt}}
spec:
  selector: {{matchLabels: {{app: vault}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: {uri}
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: vault-jwt-required}}
spec:
  selector: {{matchLabels: {{app: vault}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
"#
        ),
    )?;
    // The issuer has no key set yet: once the operator tried, status says
    // why.
    programmed(
        &ns,
        "requestauthentication/vault-jwt",
        "KeysUnavailable",
        "HTTP 404",
    )
    .await?;
    publish(run.client, &ns, &key_set("ec-a")?).await?;
    programmed(&ns, "requestauthentication/vault-jwt", "Programmed", "").await?;
    let a = token("ec-a", "alice", 600)?;
    run.until("the fetched keys", CLIENT, with(&a), 200).await?;
    run.until("requestPrincipals", CLIENT, get("/api/items"), 403)
        .await?;
    println!("JWT with keys from {uri}:");
    run.expect(CLIENT, with(&a), 200).await?;
    run.expect(PRODUCTPAGE, with(&token("ec-a", "bob", 600)?), 200)
        .await?;
    run.expect(REVIEWS, with(&token("ec-a", "carol", -300)?), 401)
        .await?;
    run.expect(REVIEWS, with(&token("ec-b", "carol", 600)?), 401)
        .await?;
    run.expect(REVIEWS, with("not-a-token"), 401).await?;
    run.expect(REVIEWS, get("/api/items"), 403).await?;

    // The issuer rotates to a new key (kid ec-b): followed, the old one refused.
    publish(run.client, &ns, &key_set("ec-b")?).await?;
    let b = token("ec-b", "alice", 600)?;
    run.until("the rotated key", CLIENT, with(&b), 200).await?;
    println!("after the rotation:");
    run.expect(CLIENT, with(&b), 200).await?;
    run.expect(CLIENT, with(&a), 401).await?;

    let metrics = run.vault_metrics().await?;
    let log = run.vault_log("plexus-proxy").await?;
    let ra = run.policy("RequestAuthentication", "vault-jwt");
    for outcome in ["expired", "bad-signature"] {
        let n = demo::counter(
            &metrics,
            "plexus_proxy_jwt_total",
            &[("policy", &ra), ("outcome", outcome)],
        );
        println!("  plexus_proxy_jwt_total{{policy=\"{ra}\",outcome=\"{outcome}\"}} {n}");
        ensure!(n >= 1, "{ra} must be counted for {outcome}");
    }
    let required = run.policy("AuthorizationPolicy", "vault-jwt-required");
    let n = demo::counter(
        &metrics,
        "plexus_proxy_authz_denied_total",
        &[("policy", &required), ("reason", "no-allow-match")],
    );
    println!(
        "  plexus_proxy_authz_denied_total{{policy=\"{required}\",reason=\"no-allow-match\"}} {n}"
    );
    ensure!(
        n >= 1,
        "{required} must be counted for the request without a token"
    );
    ensure!(
        log.contains(&ra) && log.contains(&required),
        "the log must name {ra} and {required}"
    );
    kubectl_delete(
        &ns,
        &[
            "requestauthentication/vault-jwt",
            "authorizationpolicy/vault-jwt-required",
        ],
    )
}

async fn rate_limits(run: &mut Run<'_>) -> anyhow::Result<()> {
    let ns = run.namespace.to_owned();
    kubectl_apply(
        &ns,
        r#"
apiVersion: plexus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: vault-rl}
spec:
  selector: {matchLabels: {app: vault}}
  perSourceIdentity: true
  routes:
  - name: limited
    match: [{uri: {prefix: /limited}}]
    tokenBucket: {maxTokens: 5, tokensPerFill: 1, fillInterval: 60s}
  - name: probe
    match: [{uri: {prefix: /probe}}]
    tokenBucket: {maxTokens: 1, fillInterval: 1h}
"#,
    )?;
    programmed(&ns, "ratelimitpolicy/vault-rl", "Programmed", "").await?;
    // The JWT policy is gone and the limit is in force: the probe route's
    // one token is spent, then refused.
    run.until("the rate limit", REVIEWS, get("/probe"), 429)
        .await?;
    println!("rate limit of 5 a minute per identity, 10 requests each:");
    for caller in [CLIENT, PRODUCTPAGE] {
        let mut passed = 0;
        for _ in 0..10 {
            let case = run.next_case;
            run.next_case += 1;
            let calls = run
                .calls(caller, &get("/limited"), &format!("case={case}"), 1)
                .await?;
            if calls.status(200) == 1 {
                passed += 1;
                run.allowed.insert(case);
            } else {
                ensure!(
                    calls.status(429) == 1,
                    "a limited request answers 429: {calls:?}"
                );
                run.denied.insert(case);
            }
        }
        println!("  {}: {passed} of 10 passed", caller.0);
        ensure!(
            (5..=6).contains(&passed),
            "{} must pass 5 (±1 for a refill), not {passed}",
            caller.0
        );
    }
    let metrics = run.vault_metrics().await?;
    let policy = run.policy("RateLimitPolicy", "vault-rl");
    let n = demo::counter(
        &metrics,
        "plexus_proxy_ratelimit_total",
        &[
            ("policy", &policy),
            ("route", "limited"),
            ("outcome", "limited"),
        ],
    );
    println!(
        "  plexus_proxy_ratelimit_total{{policy=\"{policy}\",route=\"limited\",outcome=\"limited\"}} {n}"
    );
    ensure!(n >= 8, "{policy} must count the limited requests: {n}");
    ensure!(
        run.vault_log("plexus-proxy").await?.contains(&policy),
        "the log must name {policy}"
    );
    Ok(())
}
