//! What goes over the wire, captured with tcpdump on this machine (the
//! pods' host-side interfaces, filtered to the server pod's address and
//! port): under a PeerAuthentication DISABLE the client proxy speaks
//! plaintext HTTP to the server pod (the request line is in the capture);
//! with a DestinationRule ISTIO_MUTUAL it speaks mTLS (TLS records only,
//! the request line nowhere).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use kube::Client;
use plexus_e2e::demo::{self, call_with, kubectl, kubectl_apply};

fn server(image: &str) -> String {
    let spec = demo::test_server_spec(image, "plain", 9080, "http", "", "");
    format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: plain}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: plain}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: plain}}}}
  template:
    metadata: {{labels: {{app: plain}}}}
    spec:{spec}
---
apiVersion: v1
kind: Service
metadata: {{name: plain}}
spec:
  selector: {{app: plain}}
  ports: [{{name: http, port: 9080, targetPort: http}}]
"#
    )
}

const DISABLE: &str = r#"
apiVersion: plexus.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: plain}
spec:
  selector: {matchLabels: {app: plain}}
  mtls: {mode: DISABLE}
"#;

const MUTUAL: &str = r#"
apiVersion: plexus.dev/v1alpha1
kind: DestinationRule
metadata: {name: plain}
spec:
  host: plain
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"#;

/// A tcpdump writing what `filter` selects to a file, until dropped.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(name: &str, filter: &str) -> anyhow::Result<Capture> {
        let file = std::env::temp_dir().join(format!("plexus-e2e-{name}.pcap"));
        let _ = std::fs::remove_file(&file);
        let mut child = Command::new("tcpdump")
            .args(["-i", "any", "-nn", "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("tcpdump (installed by e2e/cluster/cluster.sh up)")?;
        // Capturing once tcpdump says it listens (opening every interface
        // can take seconds on a busy machine); its other lines are drained.
        let stderr = child.stderr.take().context("tcpdump's stderr")?;
        let (listening, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = listening.send(());
                }
            }
        });
        if heard.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            bail!("tcpdump did not start listening within 20 s");
        }
        Ok(Capture { child, file })
    }

    /// Stops the capture: the packets' text (`tcpdump -A`), and how many
    /// carry a TLS record header at the start of their payload (0x16
    /// handshake, 0x17 application data).
    fn stop(mut self) -> anyhow::Result<(String, usize)> {
        std::thread::sleep(Duration::from_millis(500));
        // Packet-buffered (-U): everything captured is in the file.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let file = self.file.to_string_lossy().into_owned();
        let text = demo::run(Path::new("tcpdump"), &["-nn", "-A", "-r", &file], None)?;
        let tls = demo::run(
            Path::new("tcpdump"),
            &[
                "-nn",
                "-r",
                &file,
                "tcp[((tcp[12:1] & 0xf0) >> 2):1] = 0x16 or tcp[((tcp[12:1] & 0xf0) >> 2):1] = 0x17",
            ],
            None,
        )?;
        let _ = std::fs::remove_file(&self.file);
        Ok((text, tls.lines().count()))
    }
}

/// Captures 5 calls of the demo client to `plain` with `marker` as path:
/// how many request lines were in cleartext, and the TLS packets.
async fn captured(
    client: &Client,
    namespace: &str,
    filter: &str,
    marker: &str,
) -> anyhow::Result<(usize, usize)> {
    let capture = Capture::start(marker, filter)?;
    let url = format!("http://plain:9080/{marker}");
    let calls = call_with(client, namespace, &[("url", &url), ("count", "5")]).await;
    let (text, tls) = capture.stop()?;
    let calls = calls?;
    ensure!(calls.status(200) == 5, "calls to plain: {calls:?}");
    let cleartext = text.matches(&format!("GET /{marker} HTTP/1.1")).count();
    Ok((cleartext, tls))
}

pub async fn disable_is_cleartext_and_istio_mutual_is_tls(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<()> {
    kubectl_apply(namespace, &server(&plexus_e2e::test_server_image()))?;
    kubectl_apply(namespace, DISABLE)?;
    demo::rollouts_done(namespace, &["plain"])?;
    let pod = demo::pod_of(client, namespace, "plain", None).await?;
    let ip = pod.status.and_then(|s| s.pod_ip).context("plain's IP")?;
    let filter = format!("host {ip} and tcp port 9080");

    let started = Instant::now();
    let (cleartext, tls) = loop {
        let (cleartext, tls) = captured(client, namespace, &filter, "capture-disable").await?;
        println!("  DISABLE capture: {cleartext} cleartext request lines, {tls} TLS records");
        if cleartext >= 5 {
            break (cleartext, tls);
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("DISABLE not in force after 90 s: {cleartext} cleartext requests captured");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    println!(
        "PeerAuthentication DISABLE: tcpdump on {ip}:9080 saw {cleartext} cleartext request lines for 5 calls (each packet is seen on both pods' interfaces), {tls} TLS records"
    );
    ensure!(
        tls == 0,
        "DISABLE must be plaintext only, {tls} TLS records seen"
    );

    kubectl(&[
        "delete",
        "peerauthentication",
        "plain",
        "--namespace",
        namespace,
    ])?;
    kubectl_apply(namespace, MUTUAL)?;
    let started = Instant::now();
    let (cleartext, tls) = loop {
        let (cleartext, tls) = captured(client, namespace, &filter, "capture-mutual").await?;
        println!("  ISTIO_MUTUAL capture: {cleartext} cleartext request lines, {tls} TLS records");
        if cleartext == 0 && tls > 0 {
            break (cleartext, tls);
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("ISTIO_MUTUAL not in force after 90 s: {cleartext} cleartext, {tls} TLS");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    println!(
        "DestinationRule ISTIO_MUTUAL: tcpdump on {ip}:9080 saw {cleartext} cleartext request lines for 5 calls (each packet is seen on both pods' interfaces), {tls} TLS records"
    );
    kubectl(&[
        "delete",
        "destinationrule",
        "plain",
        "--namespace",
        namespace,
    ])?;
    Ok(())
}
