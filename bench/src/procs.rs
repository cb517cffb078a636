//! The measured processes: a proxy (and its children, nginx's workers),
//! its CPU time and resident memory from /proc, killed with its group.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A proxy process and its children (nginx's workers), for /proc readings.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    /// The process and its direct children.
    pub fn pids(&self) -> Vec<u32> {
        let root = self.child.id();
        let mut pids = vec![root];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // pid (comm) state ppid ...: comm may hold spaces, so after ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(root) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// CPU time used so far, all its processes: (user, system).
    pub fn cpu(&self) -> (Duration, Duration) {
        let (user, system) = self
            .pids()
            .iter()
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                // After the comm: state is field 3, utime 14, stime 15.
                let field = |n: usize| {
                    fields
                        .get(n - 3)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                (field(14), field(15))
            })
            .fold((0, 0), |(u, s), (pu, ps)| (u + pu, s + ps));
        let seconds = |ticks: u64| Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64);
        (seconds(user), seconds(system))
    }

    /// Resident memory now, all its processes, bytes.
    pub fn rss(&self) -> u64 {
        rss(&self.pids())
    }
}

/// Resident memory of processes now, bytes.
pub fn rss(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        })
        .sum()
}

impl Drop for Proc {
    /// Kills the process group the process leads (see [`own_group`]):
    /// nginx's workers would outlive a killed master.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the command as the leader of its own process group.
pub fn own_group(command: &mut Command) -> &mut Command {
    std::os::unix::process::CommandExt::process_group(command, 0)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// A free port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The instructions of a proxy's latest callgrind dump (the files
/// `<out>`, `<out>.1`, ...: the newest).
pub fn instructions(out: &std::path::Path) -> anyhow::Result<u64> {
    let dir = out.parent().unwrap_or(std::path::Path::new("."));
    let stem = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let newest = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&stem))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .ok_or_else(|| anyhow::anyhow!("no callgrind dump {}*", out.display()))?;
    let text = std::fs::read_to_string(newest.path())?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no totals in {}", newest.path().display()))
}
