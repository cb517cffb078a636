//! TLS origination on the cluster: an HTTPS server outside the mesh (a pod
//! of a namespace not labelled for injection) whose certificate a private
//! CA issued. The demo client calls it in plaintext HTTP; under a
//! DestinationRule `tls.mode: SIMPLE` whose `credentialName` Secret (in
//! the client's namespace) holds that CA, its proxy originates TLS and the
//! calls succeed. Under a rule naming another CA's Secret they fail, and
//! nothing goes to the server in plaintext (its TLS port speaks nothing
//! else).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use kube::Client;
use plexus_e2e::demo::{self, call_with, kubectl, kubectl_apply};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA: its certificate (PEM) and what signs with it.
fn authority(name: &str) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// A server certificate for `names` and its key (PEM).
fn server_cert(issuer: &Issuer<'_, KeyPair>, names: &[String]) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(names.to_vec())?.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> anyhow::Result<()> {
    let literals: Vec<String> = data
        .iter()
        .map(|(k, v)| format!("--from-literal={k}={v}"))
        .collect();
    let mut args = vec![
        "create",
        "secret",
        "generic",
        name,
        "--namespace",
        namespace,
    ];
    args.extend(literals.iter().map(String::as_str));
    kubectl(&args).map(|_| ())
}

/// HTTPS server `app`, with the certificate of Secret `<app>-tls` and a
/// Service of each of `services` (each for its own DestinationRule).
fn server(image: &str, app: &str, services: &[&str]) -> String {
    let spec = demo::test_server_spec(
        image,
        app,
        9080,
        "http",
        "- {name: HTTPS_PORT, value: \"9443\"}\n        - {name: HTTPS_CERT_DIR, value: /tls}",
        "- {name: https, containerPort: 9443}",
    );
    let service = |name: &&str| {
        format!(
            r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {app}}}
  ports: [{{name: http, port: 80, targetPort: 9443}}]
"#
        )
    };
    let spec = format!(
        "{spec}
        volumeMounts: [{{name: tls, mountPath: /tls, readOnly: true}}]
      volumes: [{{name: tls, secret: {{secretName: {app}-tls}}}}]"
    );
    std::iter::once(demo::test_server_deployment(app, &spec))
        .chain(services.iter().map(service))
        .collect()
}

/// DestinationRule `name` for Service `name` of namespace `far`, with `tls`.
fn rule(name: &str, far: &str, tls: &str) -> String {
    format!(
        r#"
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: {name}.{far}.svc.cluster.local
  trafficPolicy: {{tls: {tls}}}
"#
    )
}

/// SIMPLE to `secure` with the server's CA, and to the same server as
/// `secure-wrong` with another CA.
fn rules(far: &str) -> String {
    [
        rule("secure", far, "{mode: SIMPLE, credentialName: secure-ca}"),
        rule(
            "secure-wrong",
            far,
            &format!(
                "{{mode: SIMPLE, credentialName: wrong-ca, sni: secure.{far}.svc.cluster.local}}"
            ),
        ),
    ]
    .concat()
}

pub async fn simple_origination_verifies_the_server(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<()> {
    let far = format!("{namespace}-tls");
    kubectl(&["create", "namespace", &far])?;
    let mut result = check(client, namespace, &far).await;
    if result.is_ok() {
        result = mutual_origination_presents_the_client_certificate(client, namespace, &far).await;
    }
    let _ = kubectl(&["delete", "namespace", &far, "--wait=false"]);
    result
}

async fn check(client: &Client, namespace: &str, far: &str) -> anyhow::Result<()> {
    let (private_ca, private) = authority("a private CA")?;
    let (other_ca, _) = authority("another CA")?;
    let names = [
        format!("secure.{far}.svc.cluster.local"),
        format!("secure.{far}.svc"),
    ];
    let (cert, key) = server_cert(&private, &names)?;
    secret(far, "secure-tls", &[("tls.crt", &cert), ("tls.key", &key)])?;
    secret(namespace, "secure-ca", &[("ca.crt", &private_ca)])?;
    secret(namespace, "wrong-ca", &[("ca.crt", &other_ca)])?;
    kubectl_apply(
        far,
        &server(
            &plexus_e2e::test_server_image(),
            "secure",
            &["secure", "secure-wrong"],
        ),
    )?;
    demo::rollouts_done(far, &["secure"])?;

    // Without a rule the proxy speaks plaintext to the TLS port: no answer.
    let url = |service: &str| format!("http://{service}.{far}/");
    let plain = call_with(
        client,
        namespace,
        &[("url", &url("secure")), ("count", "3")],
    )
    .await?;
    println!(
        "plaintext to the HTTPS port, no DestinationRule: {:?}",
        plain.statuses
    );
    ensure!(
        plain.status(200) == 0,
        "plaintext must not be answered: {plain:?}"
    );

    kubectl_apply(namespace, &rules(far))?;
    // Both rules in force: the right CA answers, and the wrong one is
    // refused by the client's proxy (counted), not by the server.
    let refusals = || origination_refusals(client, namespace);
    let started = Instant::now();
    plexus_e2e::poll(
        "SIMPLE origination in force",
        Duration::from_secs(120),
        Duration::from_secs(2),
        || async {
            let calls = call_with(
                client,
                namespace,
                &[("url", &url("secure")), ("count", "5")],
            )
            .await?;
            ensure!(calls.status(200) == 5, "{calls:?}");
            let before = refusals().await?;
            let wrong = call_with(
                client,
                namespace,
                &[("url", &url("secure-wrong")), ("count", "1")],
            )
            .await?;
            let after = refusals().await?;
            ensure!(
                wrong.status(503) == 1 && after > before,
                "the wrong CA: {wrong:?}, refusals {before} -> {after}"
            );
            Ok(Some(()))
        },
    )
    .await?;
    println!("SIMPLE origination in force after {:?}", started.elapsed());
    let right = call_with(
        client,
        namespace,
        &[("url", &url("secure")), ("count", "20")],
    )
    .await?;
    println!(
        "SIMPLE with the server's CA, 20 calls: {:?} {:?}",
        right.statuses, right.services
    );
    ensure!(
        right.status(200) == 20 && right.services.keys().all(|k| k.starts_with("secure")),
        "every call must reach the HTTPS server: {right:?}"
    );
    let before = refusals().await?;
    let wrong = call_with(
        client,
        namespace,
        &[("url", &url("secure-wrong")), ("count", "10")],
    )
    .await?;
    let refused = refusals().await? - before;
    println!(
        "SIMPLE with another CA, 10 calls: {:?}; the client proxy refused {refused} origination(s)",
        wrong.statuses
    );
    ensure!(
        wrong.status(503) == 10 && refused == 10,
        "the wrong CA must fail every call in the client's proxy: {wrong:?}, {refused} refused"
    );
    in_force_as_a_whole(namespace, &["secure", "secure-wrong"])
}

/// A client certificate for `name` (its subject's CN), and its key (PEM).
fn client_cert(issuer: &Issuer<'_, KeyPair>, name: &str) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// MUTUAL to `mutual`, and SIMPLE to the same server as `mutual-simple`,
/// both with Secret `client-tls` of the client's namespace.
fn mutual_rules(far: &str) -> String {
    [
        rule("mutual", far, "{mode: MUTUAL, credentialName: client-tls}"),
        rule(
            "mutual-simple",
            far,
            &format!(
                "{{mode: SIMPLE, credentialName: client-tls, sni: mutual.{far}.svc.cluster.local}}"
            ),
        ),
    ]
    .concat()
}

/// What the user grants for MUTUAL: the client's ServiceAccount may read
/// Secret `client-tls`, and nothing else.
fn reader(namespace: &str) -> String {
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: client-tls-reader}}
rules:
- {{apiGroups: [""], resources: [secrets], resourceNames: [client-tls], verbs: [get, list, watch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: client-tls-reader}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: client-tls-reader}}
subjects: [{{kind: ServiceAccount, name: client, namespace: {namespace}}}]
"#
    )
}

/// MUTUAL origination: an HTTPS server that serves only clients with a
/// certificate of the clients' CA. The client's proxy presents the one of
/// Secret `client-tls`, which it reads as its ServiceAccount: refused until
/// the account may read that Secret, answered after.
pub async fn mutual_origination_presents_the_client_certificate(
    client: &Client,
    namespace: &str,
    far: &str,
) -> anyhow::Result<()> {
    let (server_ca, server_issuer) = authority("the mutual server's CA")?;
    let (clients_ca, clients) = authority("the clients' CA")?;
    let (cert, key) = server_cert(&server_issuer, &[format!("mutual.{far}.svc.cluster.local")])?;
    secret(
        far,
        "mutual-tls",
        &[
            ("tls.crt", &cert),
            ("tls.key", &key),
            ("ca.crt", &clients_ca),
        ],
    )?;
    let (client_pem, client_key) = client_cert(&clients, "plexus-e2e-client")?;
    secret(
        namespace,
        "client-tls",
        &[
            ("tls.crt", &client_pem),
            ("tls.key", &client_key),
            ("ca.crt", &server_ca),
        ],
    )?;
    let image = plexus_e2e::test_server_image();
    kubectl_apply(far, &server(&image, "mutual", &["mutual", "mutual-simple"]))?;
    demo::rollouts_done(far, &["mutual"])?;
    kubectl_apply(namespace, &mutual_rules(far))?;

    let url = |service: &str| format!("http://{service}.{far}/");
    let refusals = || origination_refusals(client, namespace);
    // The rule in force, the Secret not readable by the client's account:
    // the proxy refuses to connect (counted), and says why in its log.
    plexus_e2e::poll(
        "MUTUAL in force, refused without access to the Secret",
        Duration::from_secs(120),
        Duration::from_secs(2),
        || async {
            let before = refusals().await?;
            let calls = call_with(
                client,
                namespace,
                &[("url", &url("mutual")), ("count", "3")],
            )
            .await?;
            let refused = refusals().await? - before;
            ensure!(
                calls.status(503) == 3 && refused == 3,
                "{calls:?}, {refused} refused by the proxy"
            );
            Ok(Some(()))
        },
    )
    .await?;
    let pod = kube::ResourceExt::name_any(&demo::pod_of(client, namespace, "client", None).await?);
    let log = kubectl(&["logs", "--namespace", namespace, &pod, "-c", "plexus-proxy"])?;
    let forbidden = log
        .lines()
        .rfind(|l| l.contains("watching a client certificate failed"))
        .context("the client's proxy logs no failed read of client-tls")?;
    println!("MUTUAL without access to the Secret: 3 of 3 refused; the proxy: {forbidden}");
    ensure!(forbidden.contains("forbidden"), "{forbidden}");

    // Granted: the proxy's watch reads it, and the server takes the calls.
    kubectl_apply(namespace, &reader(namespace))?;
    let granted = Instant::now();
    plexus_e2e::poll(
        "MUTUAL with access to the Secret",
        Duration::from_secs(120),
        Duration::from_secs(2),
        || async {
            let calls = call_with(
                client,
                namespace,
                &[("url", &url("mutual")), ("count", "5")],
            )
            .await?;
            ensure!(calls.status(200) == 5, "{calls:?}");
            Ok(Some(()))
        },
    )
    .await?;
    println!(
        "MUTUAL answered {:?} after the Role was granted",
        granted.elapsed()
    );
    let calls = call_with(
        client,
        namespace,
        &[("url", &url("mutual")), ("count", "20")],
    )
    .await?;
    println!(
        "MUTUAL, 20 calls: {:?} {:?}",
        calls.statuses, calls.services
    );
    ensure!(
        calls.status(200) == 20 && calls.services.keys().all(|k| k.starts_with("mutual")),
        "every call must reach the server: {calls:?}"
    );
    let server_log = kubectl(&["logs", "--namespace", far, "deployment/mutual"])?;
    let presented = server_log
        .lines()
        .filter(|l| l.contains("HTTPS client certificate") && l.contains("CN=plexus-e2e-client"))
        .count();
    println!(
        "the server saw the client certificate CN=plexus-e2e-client on {presented} connection(s)"
    );
    ensure!(
        presented >= 1,
        "the server logs no client certificate:\n{server_log}"
    );

    // SIMPLE to the same server: no certificate presented, not served.
    let simple = call_with(
        client,
        namespace,
        &[("url", &url("mutual-simple")), ("count", "5")],
    )
    .await?;
    println!(
        "SIMPLE to the server that wants a client certificate: {:?}",
        simple.statuses
    );
    ensure!(
        simple.status(200) == 0,
        "the server must refuse: {simple:?}"
    );
    in_force_as_a_whole(namespace, &["mutual", "mutual-simple"])
}

/// The connections the client's proxy refused to originate TLS for.
async fn origination_refusals(client: &Client, namespace: &str) -> anyhow::Result<u64> {
    demo::client_counter(
        client,
        namespace,
        "plexus_proxy_tcp_refused_total",
        &[("direction", "outbound"), ("reason", "origination")],
    )
    .await
}

/// Each of DestinationRules `rules` says it is in force as a whole.
fn in_force_as_a_whole(namespace: &str, rules: &[&str]) -> anyhow::Result<()> {
    for rule in rules {
        let status = kubectl(&[
            "get",
            "destinationrule",
            rule,
            "--namespace",
            namespace,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Accepted")].message}"#,
        ])?;
        ensure!(
            status.contains("every field"),
            "DestinationRule {rule} must be in force as a whole: {status}"
        );
    }
    Ok(())
}
