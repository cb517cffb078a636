//! Init mode: programs the pod's network namespace with nftables so that
//! inbound and outbound TCP reach the proxy. One table, `inet plexus`,
//! replaced as a whole in one nft transaction: a second run leaves exactly
//! the same rules and succeeds, and a failed run leaves the previous ones.

use std::io::Write;
use std::process::{Command, Stdio};

pub use plexus_config::redirect::{Cidr, PortRange};

/// The table every rule lives in.
pub const TABLE: &str = "plexus";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The proxy's user: its own connections are never redirected.
    pub proxy_uid: u32,
    pub inbound_port: u16,
    pub outbound_port: u16,
    /// Inbound ports left alone (always including the admin port).
    pub skip_inbound_ports: Vec<PortRange>,
    pub skip_outbound_ports: Vec<PortRange>,
    pub skip_outbound_cidrs: Vec<Cidr>,
}

fn set<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("{{ {} }}", items.join(", "))
}

impl Redirect {
    /// The nft script: creates the table if absent, deletes it, and defines
    /// it anew, all in one transaction.
    pub fn ruleset(&self) -> String {
        let mut inbound = Vec::new();
        if !self.skip_inbound_ports.is_empty() {
            inbound.push(format!(
                "tcp dport {} return",
                set(&self.skip_inbound_ports)
            ));
        }
        inbound.push(format!(
            "meta l4proto tcp redirect to :{}",
            self.inbound_port
        ));

        let mut outbound = vec![
            // The proxy's own connections go where they are sent.
            format!("meta skuid {} return", self.proxy_uid),
            // Loopback: the app talking to itself, or the proxy to the app.
            "oifname \"lo\" return".to_owned(),
        ];
        let (v4, v6): (Vec<Cidr>, Vec<Cidr>) =
            self.skip_outbound_cidrs.iter().partition(|c| c.0.is_ipv4());
        if !v4.is_empty() {
            outbound.push(format!("ip daddr {} return", set(&v4)));
        }
        if !v6.is_empty() {
            outbound.push(format!("ip6 daddr {} return", set(&v6)));
        }
        if !self.skip_outbound_ports.is_empty() {
            outbound.push(format!(
                "tcp dport {} return",
                set(&self.skip_outbound_ports)
            ));
        }
        outbound.push(format!(
            "meta l4proto tcp redirect to :{}",
            self.outbound_port
        ));

        let chain = |name: &str, rules: &[String]| {
            let mut out = format!("\tchain {name} {{\n");
            for rule in rules {
                out.push_str(&format!("\t\t{rule}\n"));
            }
            out.push_str("\t}\n");
            out
        };
        format!(
            "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n{}{}{}{}}}\n",
            chain(
                "prerouting",
                &[
                    "type nat hook prerouting priority dstnat; policy accept;".into(),
                    "meta l4proto tcp jump inbound".into()
                ]
            ),
            chain("inbound", &inbound),
            chain(
                "output",
                &[
                    "type nat hook output priority -100; policy accept;".into(),
                    "meta l4proto tcp jump outbound".into()
                ]
            ),
            chain("outbound", &outbound),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("running {nft}: {source}")]
    Spawn { nft: String, source: std::io::Error },
    #[error("{nft} rejected the rules (exit {status}): {stderr}")]
    Rejected {
        nft: String,
        status: String,
        stderr: String,
    },
}

/// Applies the rules with the `nft` binary at `nft`.
pub fn apply(redirect: &Redirect, nft: &str) -> Result<(), InitError> {
    let spawn = |source| InitError::Spawn {
        nft: nft.to_owned(),
        source,
    };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(redirect.ruleset().as_bytes())
            .map_err(spawn)?;
    }
    let output = child.wait_with_output().map_err(spawn)?;
    if !output.status.success() {
        return Err(InitError::Rejected {
            nft: nft.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// The table as the kernel holds it (`nft list table inet plexus`).
pub fn list(nft: &str) -> Result<String, InitError> {
    let output = Command::new(nft)
        .args(["list", "table", "inet", TABLE])
        .output()
        .map_err(|source| InitError::Spawn {
            nft: nft.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(InitError::Rejected {
            nft: nft.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_is_one_replace_of_the_table() {
        let redirect = Redirect {
            proxy_uid: 2102,
            inbound_port: 4143,
            outbound_port: 4140,
            skip_inbound_ports: vec!["4191".parse().expect("port")],
            skip_outbound_ports: vec![
                "5432".parse().expect("port"),
                "6379-6380".parse().expect("range"),
            ],
            skip_outbound_cidrs: vec![
                "198.18.0.1/32".parse().expect("v4"),
                "fd00::/8".parse().expect("v6"),
            ],
        };
        let expected = "table inet plexus
delete table inet plexus
table inet plexus {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tmeta l4proto tcp jump inbound
\t}
\tchain inbound {
\t\ttcp dport { 4191 } return
\t\tmeta l4proto tcp redirect to :4143
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tmeta l4proto tcp jump outbound
\t}
\tchain outbound {
\t\tmeta skuid 2102 return
\t\toifname \"lo\" return
\t\tip daddr { 198.18.0.1/32 } return
\t\tip6 daddr { fd00::/8 } return
\t\ttcp dport { 5432, 6379-6380 } return
\t\tmeta l4proto tcp redirect to :4140
\t}
}
";
        assert_eq!(redirect.ruleset(), expected);
    }
}
