//! What goes over the wire, captured with tcpdump on this machine (the
//! pods' host-side interfaces, filtered to the server pod's address and
//! port): under a PeerAuthentication DISABLE the client proxy speaks
//! plaintext HTTP to the server pod (the request line is in the capture);
//! with a DestinationRule ISTIO_MUTUAL it speaks mTLS (TLS records only,
//! the request line nowhere); under a STRICT PeerAuthentication whose
//! `portLevelMtls` says DISABLE for the app's port, plaintext again.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::Client;
use plexus_e2e::demo::{self, call_with, kubectl, kubectl_apply};

fn server(image: &str) -> String {
    let spec = demo::test_server_spec(image, "plain", 9080, "http", "", "");
    format!(
        r#"{}---
apiVersion: v1
kind: Service
metadata: {{name: plain}}
spec:
  selector: {{app: plain}}
  ports: [{{name: http, port: 9080, targetPort: http}}]
"#,
        demo::test_server_deployment("plain", &spec)
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

/// A tcpdump writing what `filter` selects to a file, until stopped.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
    /// What tcpdump says on stderr (its closing lines count the packets).
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Capture {
    fn start(name: &str, filter: &str) -> anyhow::Result<Capture> {
        let file = std::env::temp_dir().join(format!("plexus-e2e-{name}.pcap"));
        let _ = std::fs::remove_file(&file);
        // Immediate mode: each packet reaches tcpdump as it is captured (by
        // default the kernel hands them over in blocks, once a block fills
        // or a second passes, and a capture stopped sooner has nothing).
        // `-Z root`: no privilege drop, so the file can be written anywhere;
        // `-B`: a 16 MiB buffer (a busy machine drops packets from the
        // default 2 MiB).
        let mut child = Command::new("tcpdump")
            .args([
                "-i",
                "any",
                "-nn",
                "-U",
                "--immediate-mode",
                "-B",
                "16384",
                "-Z",
                "root",
                "-s",
                "0",
                "-w",
            ])
            .arg(&file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("tcpdump (installed by e2e/cluster/cluster.sh up)")?;
        // Capturing once tcpdump says it listens (opening every interface
        // can take seconds on a busy machine); its other lines are kept.
        let stderr = child.stderr.take().context("tcpdump's stderr")?;
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = said.clone();
        let (listening, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = listening.send(());
                }
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        if heard.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            bail!("tcpdump did not start listening within 20 s");
        }
        Ok(Capture { child, file, said })
    }

    /// Stops the capture (SIGINT: tcpdump writes out what it has and
    /// counts it): the packets' text (`tcpdump -A`), how many carry a TLS
    /// record header at the start of their payload (0x16 handshake, 0x17
    /// application data), and tcpdump's own count.
    fn stop(mut self) -> anyhow::Result<(String, usize, String)> {
        std::thread::sleep(Duration::from_millis(500));
        let pid = self.child.id().to_string();
        let _ = demo::run(Path::new("kill"), &["-INT", &pid], None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        let said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        let counted = said
            .iter()
            .filter(|l| l.contains("packets"))
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
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
        Ok((text, tls.lines().count(), counted))
    }
}

/// Captures 5 calls of the demo client to `plain` with `marker` as path:
/// how many were answered 200, how many request lines were in cleartext,
/// and the TLS packets.
async fn captured(
    client: &Client,
    namespace: &str,
    filter: &str,
    marker: &str,
) -> anyhow::Result<(u32, usize, usize)> {
    let capture = Capture::start(marker, filter)?;
    let url = format!("http://plain:9080/{marker}");
    let calls = call_with(client, namespace, &[("url", &url), ("count", "5")]).await;
    let (text, tls, counted) = capture.stop()?;
    let calls = calls?;
    println!("    tcpdump: {counted}; the calls: {:?}", calls.statuses);
    let cleartext = text.matches(&format!("GET /{marker} HTTP/1.1")).count();
    Ok((calls.status(200), cleartext, tls))
}

/// Captures rounds of 5 calls until all 5 are answered and `done` holds
/// of (cleartext request lines, TLS records), for up to 90 s. A round can
/// fall during a change of config (the client's proxy may not know `plain`
/// yet, or switch mode between two calls), so only the last one decides.
async fn until(
    client: &Client,
    namespace: &str,
    filter: &str,
    what: &str,
    done: fn(usize, usize) -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let marker = format!("capture-{}", what.to_lowercase().replace([' ', '_'], "-"));
    loop {
        let (answered, cleartext, tls) = captured(client, namespace, filter, &marker).await?;
        println!(
            "  {what} capture: {answered}/5 answered, {cleartext} cleartext request lines, {tls} TLS records"
        );
        if answered == 5 && done(cleartext, tls) {
            println!(
                "{what}: tcpdump saw {cleartext} cleartext request lines for 5 calls (each packet is seen on both pods' interfaces), {tls} TLS records"
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!(
                "{what} not in force after 90 s: {answered}/5 answered, {cleartext} cleartext, {tls} TLS"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// STRICT for the workload, but DISABLE on its port 9080.
const PORT_DISABLE: &str = r#"
apiVersion: plexus.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: plain}
spec:
  selector: {matchLabels: {app: plain}}
  mtls: {mode: STRICT}
  portLevelMtls: {9080: {mode: DISABLE}}
"#;

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
    println!("capturing {filter}");

    // Each round is 5 calls; one during a change of config can be mixed,
    // so every round waits for a pure one (and fails if none comes).
    until(
        client,
        namespace,
        &filter,
        "PeerAuthentication DISABLE",
        |clear, tls| clear >= 5 && tls == 0,
    )
    .await?;

    let delete = |kind: &str| kubectl(&["delete", kind, "plain", "--namespace", namespace]);
    delete("peerauthentication")?;
    kubectl_apply(namespace, MUTUAL)?;
    until(
        client,
        namespace,
        &filter,
        "DestinationRule ISTIO_MUTUAL",
        |clear, tls| clear == 0 && tls > 0,
    )
    .await?;

    // From TLS back to cleartext: only the port's DISABLE can do that.
    delete("destinationrule")?;
    kubectl_apply(namespace, PORT_DISABLE)?;
    until(
        client,
        namespace,
        &filter,
        "PeerAuthentication port-level DISABLE",
        |clear, tls| clear >= 5 && tls == 0,
    )
    .await?;
    delete("peerauthentication")?;
    Ok(())
}
