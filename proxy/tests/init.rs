//! Init mode in a network namespace of its own (needs root, `ip` and
//! `nft`; run by e2e/run-tests.sh, after the local cluster's packages are
//! installed): a second run leaves exactly the same rules and succeeds.

use std::process::{Command, Output};

/// A network namespace, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("plexus-init-{}", std::process::id());
        let output = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("running ip");
        assert!(
            output.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(name)
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .output()
            .expect("running ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

const PROXY: &str = env!("CARGO_BIN_EXE_plexus-proxy");
const ARGS: &[&str] = &[
    "init",
    "--proxy-uid",
    "2102",
    "--skip-inbound-ports",
    "4191,9090",
    "--skip-outbound-ports",
    "5432,6379-6380",
    "--skip-outbound-cidrs",
    "198.18.0.1/32,fd00::/8",
    "--nft",
    "nft",
];

fn table(netns: &Netns) -> String {
    let output = netns.run("nft", &["list", "table", "inet", "plexus"]);
    assert!(
        output.status.success(),
        "nft list: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "needs root and nft: run by e2e/run-tests.sh"]
fn init_twice_gives_identical_rules() {
    let netns = Netns::new();
    let first = netns.run(PROXY, ARGS);
    assert!(
        first.status.success(),
        "first run: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let rules = table(&netns);
    assert!(
        rules.contains("redirect to :4143") && rules.contains("redirect to :4140"),
        "{rules}"
    );
    assert!(rules.contains("meta skuid 2102 return"), "{rules}");
    assert!(rules.contains("tcp dport { 4191, 9090 } return"), "{rules}");

    let second = netns.run(PROXY, ARGS);
    assert!(
        second.status.success(),
        "second run: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(table(&netns), rules, "the second run changed the rules");
    let tables = netns.run("nft", &["list", "tables"]);
    assert_eq!(
        String::from_utf8_lossy(&tables.stdout).trim(),
        "table inet plexus"
    );

    // --dry-run prints the script and changes nothing.
    let dry = netns.run(PROXY, &[ARGS, &["--dry-run"]].concat());
    assert!(dry.status.success());
    assert!(
        String::from_utf8_lossy(&dry.stdout)
            .starts_with("table inet plexus\ndelete table inet plexus\n")
    );
    assert_eq!(table(&netns), rules);

    // A bad exclusion fails before touching anything.
    let bad = netns.run(
        PROXY,
        &[
            "init",
            "--skip-outbound-cidrs",
            "10.0.0.0/33",
            "--nft",
            "nft",
        ],
    );
    assert!(!bad.status.success());
    assert_eq!(table(&netns), rules);
}
