//! Two "pods" as network namespaces joined by a veth pair, each with the
//! real redirection (plexus-proxy init) and the proxy running as its own
//! user: an app in one reaches an app in the other through both proxies,
//! over mTLS, by the service address and by the pod address; plaintext that
//! skips the client's proxy is refused by the server's STRICT mode. Needs
//! root, ip, nft, setpriv and python3; run by e2e/run-tests.sh.
//!
//! Addresses: 198.18.250.1 and .2 on the veth pair, service 198.19.250.10,
//! all inside the two namespaces (nothing leaves them).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use plexus_config::{
    Endpoint, Inbound, MtlsMode, MtlsRule, ProxyConfig, SCHEMA, Service, ServicePort,
};
use plexus_operator::ca::generate_root;

const PROXY: &str = env!("CARGO_BIN_EXE_plexus-proxy");
const CLIENT_IP: &str = "198.18.250.1";
const SERVER_IP: &str = "198.18.250.2";
const SERVICE_IP: &str = "198.19.250.10";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The two namespaces and what runs in them; all removed when dropped.
struct Pods {
    client: String,
    server: String,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Pods {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.client, &self.server] {
            let _ = run("ip", &["netns", "delete", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pods {
    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        run("ip", &[&["netns", "exec", ns], args].concat())
    }

    fn spawn(&mut self, ns: &str, args: &[&str], log: &Path) {
        let log = std::fs::File::create(log).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning in the namespace");
        self.children.push(child);
    }
}

fn config(mode: MtlsMode) -> ProxyConfig {
    ProxyConfig {
        schema: SCHEMA.into(),
        namespace: "demo".into(),
        trust_domain: "cluster.local".into(),
        services: std::sync::Arc::new(vec![Service {
            namespace: "demo".into(),
            name: "echo".into(),
            addresses: vec![SERVICE_IP.into()],
            ports: vec![ServicePort {
                port: 80,
                name: None,
                protocol: Default::default(),
                target_port: Some(8080),
            }],
            endpoints: vec![Endpoint {
                ip: SERVER_IP.into(),
                sa: Some("echo".into()),
                meshed: true,
                ..Default::default()
            }],
            ..Default::default()
        }]),
        inbound: Inbound {
            mtls: vec![MtlsRule {
                name: "Mesh/default".into(),
                selector: Default::default(),
                mode,
                ports: Default::default(),
            }],
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A python client: connects (as user `argv[3]` if given), sends, prints
/// what comes back.
const CLIENT: &str = r#"
import os, socket, sys
"loaded before dropping root".encode("idna")
if len(sys.argv) > 3:
    os.setuid(int(sys.argv[3]))
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"ping")
s.shutdown(socket.SHUT_WR)
out = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        out += chunk
except OSError:
    pass
sys.stdout.write(out.decode())
"#;

/// The app: answers `echo:` and what it read.
const ECHO: &str = r#"
import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"echo:" + self.rfile.read())
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 8080), H).serve_forever()
"#;

/// Whether `probe` holds within 15 s.
fn wait(mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !probe() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn eventually(what: &str, probe: impl FnMut() -> bool) {
    assert!(wait(probe), "{what}: not after 15s");
}

#[test]
#[ignore = "needs root, ip, nft, setpriv and python3: run by e2e/run-tests.sh"]
fn two_pods_talk_through_their_proxies_over_mtls() {
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("plexus-netns-{id}"));
    let mut pods = Pods {
        client: format!("plexus-c-{id}"),
        server: format!("plexus-s-{id}"),
        children: Vec::new(),
        dir: dir.clone(),
    };
    let (client, server) = (pods.client.clone(), pods.server.clone());
    for ns in [&client, &server] {
        ok("ip", &["netns", "add", ns]);
        ok("ip", &["-n", ns, "link", "set", "lo", "up"]);
    }
    ok(
        "ip",
        &[
            "link", "add", "plx-c", "netns", &client, "type", "veth", "peer", "name", "plx-s",
            "netns", &server,
        ],
    );
    ok(
        "ip",
        &[
            "-n",
            &client,
            "addr",
            "add",
            &format!("{CLIENT_IP}/30"),
            "dev",
            "plx-c",
        ],
    );
    ok(
        "ip",
        &[
            "-n",
            &server,
            "addr",
            "add",
            &format!("{SERVER_IP}/30"),
            "dev",
            "plx-s",
        ],
    );
    ok("ip", &["-n", &client, "link", "set", "plx-c", "up"]);
    ok("ip", &["-n", &server, "link", "set", "plx-s", "up"]);
    // The service address is routed to the pair (and never leaves it).
    ok(
        "ip",
        &[
            "-n",
            &client,
            "route",
            "add",
            &format!("{SERVICE_IP}/32"),
            "dev",
            "plx-c",
        ],
    );

    let root = generate_root(
        "cluster.local",
        SystemTime::now(),
        Duration::from_secs(86_400),
    )
    .expect("root");
    // Files 0644 and directories 0755 (the umask): readable by the proxies' user.
    support::volumes(
        &dir.join("client"),
        &config(MtlsMode::Strict),
        &support::workload(&root, "client"),
        &root,
    );
    support::volumes(
        &dir.join("server"),
        &config(MtlsMode::Strict),
        &support::workload(&root, "echo"),
        &root,
    );

    for (ns, volumes) in [(&client, dir.join("client")), (&server, dir.join("server"))] {
        let init = pods.exec(
            ns,
            &[
                PROXY,
                "init",
                "--skip-inbound-ports",
                "4191",
                "--nft",
                "nft",
            ],
        );
        assert!(
            init.status.success(),
            "init: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let config_dir = volumes.join("config").display().to_string();
        let identity_dir = volumes.join("identity").display().to_string();
        pods.spawn(
            ns,
            &[
                "setpriv",
                "--reuid",
                "2102",
                "--regid",
                "2102",
                "--clear-groups",
                PROXY,
                "run",
                "--config-dir",
                &config_dir,
                "--identity-dir",
                &identity_dir,
                "--podinfo-dir",
                "/nonexistent",
            ],
            &volumes.join("proxy.log"),
        );
    }
    pods.spawn(&server, &["python3", "-c", ECHO], &dir.join("echo.log"));
    let get = |pods: &Pods, ns: &str, url: &str| {
        let code = format!(
            "import urllib.request,sys\ntry:\n print(urllib.request.urlopen('{url}', timeout=2).read().decode())\nexcept Exception as e:\n print('error', e)\n"
        );
        String::from_utf8_lossy(&pods.exec(ns, &["python3", "-c", &code]).stdout).into_owned()
    };
    for ns in [&client, &server] {
        eventually("the proxy is ready", || {
            get(&pods, ns, "http://127.0.0.1:4191/ready").starts_with("ready")
        });
    }
    let call = |pods: &Pods, args: &[&str]| {
        String::from_utf8_lossy(
            &pods
                .exec(&client, &[&["python3", "-c", CLIENT], args].concat())
                .stdout,
        )
        .into_owned()
    };
    let mut last = String::new();
    let listening = wait(|| {
        last = call(&pods, &[SERVER_IP, "8080"]);
        last == "echo:ping"
    });
    let logs = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert!(
        listening,
        "the echo app does not answer through the proxies: {last:?}\nclient proxy: {}\nserver proxy: {}\necho: {}",
        logs("client/proxy.log"),
        logs("server/proxy.log"),
        logs("echo.log")
    );

    // By the service address and by the pod address: through both proxies.
    assert_eq!(call(&pods, &[SERVICE_IP, "80"]), "echo:ping");
    // Both calls (and any while the app was starting) came over mTLS
    // from the client's identity.
    let metrics = get(&pods, &server, "http://127.0.0.1:4191/metrics");
    let series = r#"plexus_proxy_tcp_mtls_total{direction="inbound",peer_identity="spiffe://cluster.local/ns/demo/sa/client"}"#;
    let mtls: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0);
    assert!(mtls >= 2, "{metrics}");
    // Plaintext that skips the client's proxy (its user is exempt from
    // redirection) meets the server's STRICT mode.
    let plain = pods.exec(
        &client,
        &["python3", "-c", CLIENT, SERVER_IP, "8080", "2102"],
    );
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        "",
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let metrics = get(&pods, &server, "http://127.0.0.1:4191/metrics");
    assert!(
        metrics.contains(
            r#"plexus_proxy_tcp_refused_total{direction="inbound",reason="plaintext"} 1"#
        ),
        "{metrics}"
    );
}
