//! Run-to-completion pods on clusters without native sidecars: the webhook
//! shares the pod's process namespace, and the proxy exits once the app's
//! processes have all exited, so that the pod (and its Job) completes.
//!
//! The app's processes are those in another container's cgroup than the
//! proxy's, other than the sandbox's PID 1. The app has run once one of them
//! was seen, or, for an app too quick to be seen, once a PID was allocated
//! in the pod after the postStart hook saw the proxy ready (the kubelet
//! starts the app only then) that is neither the proxy's nor one of its
//! threads. After that, the proxy exits when no app process has been left
//! for two polls in a row.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// How often /proc is read.
pub const POLL: Duration = Duration::from_millis(100);

/// The last PID allocated in this PID namespace (`/proc/loadavg`).
pub fn last_pid(proc: &Path) -> Option<u32> {
    std::fs::read_to_string(proc.join("loadavg"))
        .ok()?
        .split_whitespace()
        .nth(4)?
        .parse()
        .ok()
}

/// The proxy's own thread IDs.
fn own_tasks(proc: &Path, own_pid: u32) -> BTreeSet<u32> {
    std::fs::read_dir(proc.join(own_pid.to_string()).join("task"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Follows the app's processes, one poll at a time.
#[derive(Debug, Default)]
pub struct Watch {
    seen: bool,
    empty_polls: u32,
    /// PIDs up to this one are accounted for.
    accounted: Option<u32>,
    own: BTreeSet<u32>,
}

impl Watch {
    /// The postStart hook saw the proxy ready: PIDs allocated from now on
    /// that are not the proxy's are the app's.
    pub fn hook_done(&mut self, last_pid: u32) {
        self.accounted.get_or_insert(last_pid);
    }

    /// One look at /proc; true once the app has run and exited.
    pub fn poll(&mut self, proc: &Path, own_pid: u32) -> bool {
        self.own.extend(own_tasks(proc, own_pid));
        let running = app_processes(proc, own_pid);
        if !running.is_empty() {
            if !self.seen {
                tracing::info!(pids = ?running, "the app is running; the proxy exits when it has");
            }
            self.seen = true;
            self.empty_polls = 0;
            return false;
        }
        if let (Some(accounted), Some(last)) = (self.accounted, last_pid(proc)) {
            if !self.seen && ((accounted + 1)..=last).any(|pid| !self.own.contains(&pid)) {
                tracing::info!("the app has run and exited between two looks");
                self.seen = true;
            }
            self.accounted = Some(last.max(accounted));
        }
        if self.seen {
            self.empty_polls += 1;
        }
        self.seen && self.empty_polls >= 2
    }
}

/// The PIDs of processes outside the proxy's container.
pub fn app_processes(proc: &Path, own_pid: u32) -> Vec<u32> {
    let own_cgroup = std::fs::read_to_string(proc.join(own_pid.to_string()).join("cgroup")).ok();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != 1 && *pid != own_pid)
        .filter(|pid| {
            // A process that is gone by now, or unreadable, does not count.
            std::fs::read_to_string(proc.join(pid.to_string()).join("cgroup"))
                .is_ok_and(|cgroup| Some(&cgroup) != own_cgroup.as_ref())
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Resolves once the app has run and exited. `hook_done` carries the
/// last PID when the postStart hook saw the proxy ready.
pub async fn app_exited(mut hook_done: tokio::sync::watch::Receiver<Option<u32>>) {
    let own = std::process::id();
    let proc = Path::new("/proc");
    let mut watch = Watch::default();
    loop {
        if let Some(last) = *hook_done.borrow_and_update() {
            watch.hook_done(last);
        }
        if watch.poll(proc, own) {
            tracing::info!("the app's processes have exited");
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_of_other_cgroups_are_the_app() {
        let dir = std::env::temp_dir().join(format!("plexus-proc-{}", std::process::id()));
        let process = |pid: u32, cgroup: &str| {
            std::fs::create_dir_all(dir.join(pid.to_string())).expect("dir");
            std::fs::write(dir.join(pid.to_string()).join("cgroup"), cgroup).expect("cgroup");
        };
        process(1, "0::/../pause\n");
        process(7, "0::/\n"); // the proxy
        process(9, "0::/\n"); // its postStart hook
        process(12, "0::/../app\n");
        std::fs::create_dir_all(dir.join("self")).expect("dir");
        std::fs::create_dir_all(dir.join("15")).expect("a process gone meanwhile");
        assert_eq!(app_processes(&dir, 7), vec![12]);
        std::fs::remove_dir_all(dir.join("12")).expect("exit");
        assert!(app_processes(&dir, 7).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_app_too_quick_to_be_seen_is_found_by_its_pid() {
        let dir = std::env::temp_dir().join(format!("plexus-pids-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("7/task/7")).expect("the proxy");
        std::fs::create_dir_all(dir.join("7/task/8")).expect("its thread");
        std::fs::write(dir.join("7/cgroup"), "0::/\n").expect("cgroup");
        let loadavg = |last: u32| {
            std::fs::write(dir.join("loadavg"), format!("0.00 0.01 0.05 1/12 {last}\n"))
                .expect("loadavg")
        };
        let mut watch = Watch::default();
        loadavg(9);
        assert!(
            !watch.poll(&dir, 7),
            "nothing ran: the hook has not even seen the proxy ready"
        );
        watch.hook_done(9);
        std::fs::create_dir_all(dir.join("7/task/10")).expect("a new thread of the proxy");
        loadavg(10);
        assert!(
            !watch.poll(&dir, 7),
            "the proxy's own thread is not the app"
        );
        assert!(!watch.poll(&dir, 7));
        loadavg(11); // The app came and went between two looks.
        assert!(!watch.poll(&dir, 7), "first empty poll");
        assert!(watch.poll(&dir, 7), "second empty poll: exit");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
