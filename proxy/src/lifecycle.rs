//! Run-to-completion pods on clusters without native sidecars: the webhook
//! shares the pod's process namespace, and the proxy exits once the app's
//! processes have all exited, so that the pod (and its Job) completes.
//!
//! The app's processes are those in another container's cgroup than the
//! proxy's, other than the sandbox's PID 1. The proxy waits until it has
//! seen one, then until none has been left for two polls in a row.

use std::path::Path;
use std::time::Duration;

/// How often /proc is read.
pub const POLL: Duration = Duration::from_secs(1);

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

/// Resolves once the app has started and then exited.
pub async fn app_exited() {
    let own = std::process::id();
    let proc = Path::new("/proc");
    let mut seen = false;
    let mut empty_polls = 0;
    loop {
        let running = app_processes(proc, own);
        if running.is_empty() {
            if seen {
                empty_polls += 1;
                if empty_polls >= 2 {
                    tracing::info!("the app's processes have exited");
                    return;
                }
            }
        } else {
            if !seen {
                tracing::info!(pids = ?running, "the app is running; the proxy exits when it does");
            }
            seen = true;
            empty_polls = 0;
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
}
