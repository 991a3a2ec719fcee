//! CPU time of this process's threads by name: the controller runs on a runtime of its own
//! whose threads are named, so its CPU is told apart from the in-process sandbox's.

use std::time::Duration;

/// A multi-threaded runtime whose threads (workers and blocking pool) are all named `name`.
pub fn named_runtime(name: &str, workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        // Blocking threads that exit take their CPU time with them: keep them.
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
}

/// Nanoseconds on CPU of this process's threads named `name` (`/proc/self/task/*/schedstat`,
/// first field).
pub fn cpu_ns(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| parse_schedstat(&s))
        .sum()
}

fn parse_schedstat(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_first_field_is_the_cpu_time() {
        assert_eq!(parse_schedstat("915460 9215621 7\n"), Some(915460));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn busy_named_threads_are_counted_and_others_are_not() {
        let rt = named_runtime("bench-cpu-test", 1).unwrap();
        let before = cpu_ns("bench-cpu-test");
        rt.block_on(async {
            tokio::spawn(async {
                let mut x = 0u64;
                for i in 0..20_000_000u64 {
                    x = x.wrapping_add(i * i);
                }
                std::hint::black_box(x)
            })
            .await
            .unwrap()
        });
        assert!(cpu_ns("bench-cpu-test") > before);
        assert_eq!(cpu_ns("no-such-thread-name"), 0);
    }
}
