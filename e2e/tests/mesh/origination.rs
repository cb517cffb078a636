//! TLS origination on the cluster: an HTTPS server outside the mesh (a pod
//! of a namespace not labelled for injection) whose certificate a private
//! CA issued. The demo client calls it in plaintext HTTP; under a
//! DestinationRule `tls.mode: SIMPLE` whose `credentialName` Secret (in
//! the client's namespace) holds that CA, its proxy originates TLS and the
//! calls succeed. Under a rule naming another CA's Secret they fail, and
//! nothing goes to the server in plaintext (its TLS port speaks nothing
//! else).

use std::time::{Duration, Instant};

use anyhow::ensure;
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

/// The HTTPS server, with its two Services: `secure` (the rule with the
/// right CA) and `secure-wrong` (the rule with the wrong one).
fn server(image: &str) -> String {
    let spec = demo::test_server_spec(
        image,
        "secure",
        9080,
        "http",
        "- {name: HTTPS_PORT, value: \"9443\"}\n        - {name: HTTPS_CERT_DIR, value: /tls}",
        "- {name: https, containerPort: 9443}",
    );
    let service = |name: &str| {
        format!(
            r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: secure}}
  ports: [{{name: http, port: 80, targetPort: 9443}}]
"#
        )
    };
    let spec = format!(
        "{spec}
        volumeMounts: [{{name: tls, mountPath: /tls, readOnly: true}}]
      volumes: [{{name: tls, secret: {{secretName: secure-tls}}}}]"
    );
    [
        demo::test_server_deployment("secure", &spec),
        service("secure"),
        service("secure-wrong"),
    ]
    .concat()
}

fn rules(far: &str) -> String {
    format!(
        r#"
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {{name: secure}}
spec:
  host: secure.{far}.svc.cluster.local
  trafficPolicy: {{tls: {{mode: SIMPLE, credentialName: secure-ca}}}}
---
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {{name: secure-wrong}}
spec:
  host: secure-wrong.{far}.svc.cluster.local
  trafficPolicy:
    tls: {{mode: SIMPLE, credentialName: wrong-ca, sni: secure.{far}.svc.cluster.local}}
"#
    )
}

pub async fn simple_origination_verifies_the_server(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<()> {
    let far = format!("{namespace}-tls");
    kubectl(&["create", "namespace", &far])?;
    let result = check(client, namespace, &far).await;
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
    kubectl_apply(far, &server(&plexus_e2e::test_server_image()))?;
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
    let refusals = || {
        demo::client_counter(
            client,
            namespace,
            "plexus_proxy_tcp_refused_total",
            &[("direction", "outbound"), ("reason", "origination")],
        )
    };
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
    for rule in ["secure", "secure-wrong"] {
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
