//! How busy the machine is: the report waits for a quiet moment before each measurement and
//! says how much CPU other processes took while it measured, since on a shared 2-CPU machine
//! that decides whether a parallel speed-up can show at all.

use std::time::{Duration, Instant};

/// CPU time counters of the whole machine and of this process's finished children, in clock
/// ticks (Linux `/proc`; elsewhere every reading is `None` and nothing is waited for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticks {
    busy: u64,
    total: u64,
    children: u64,
}

impl Ticks {
    /// The counters now.
    pub fn now() -> Option<Ticks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (busy, total) = parse_cpu_line(stat.lines().next()?)?;
        Some(Ticks {
            busy,
            total,
            children: parse_children_ticks(&own)?,
        })
    }

    /// The share of all CPUs (0 to 1) that processes other than this one's children used
    /// between `self` and `later`.
    pub fn others_share(self, later: Ticks) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        let busy = later.busy.saturating_sub(self.busy);
        let ours = later.children.saturating_sub(self.children);
        busy.saturating_sub(ours) as f64 / total as f64
    }
}

/// `(busy, total)` ticks from the aggregate `cpu` line of `/proc/stat`.
fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// `cutime + cstime` (CPU time of waited-for children) from `/proc/self/stat`.
fn parse_children_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': field 3 is at index 0, so cutime (16) and cstime (17) are at 13 and 14.
    Some(fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?)
}

/// Waits until other processes use less than a tenth of the machine over one second, or
/// until `limit` has passed; returns the last share seen.
pub fn wait_for_quiet(limit: Duration) -> Option<f64> {
    let deadline = Instant::now() + limit;
    loop {
        let before = Ticks::now()?;
        std::thread::sleep(Duration::from_secs(1));
        let share = before.others_share(Ticks::now()?);
        if share < 0.10 || Instant::now() >= deadline {
            return Some(share);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_line_splits_into_busy_and_total_ticks() {
        let line = "cpu  100 5 50 800 20 3 2 10 0 0";
        assert_eq!(parse_cpu_line(line), Some((170, 990)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4"), None);
    }

    #[test]
    fn children_ticks_are_read_after_a_command_name_with_spaces() {
        let stat = "42 (x task (1)) S 1 42 42 0 -1 4194560 10 0 0 0 7 3 25 17 20 0 1 0 5";
        assert_eq!(parse_children_ticks(stat), Some(42));
    }

    #[test]
    fn others_share_leaves_out_the_childrens_time() {
        let a = Ticks {
            busy: 100,
            total: 1000,
            children: 10,
        };
        let b = Ticks {
            busy: 300,
            total: 1200,
            children: 160,
        };
        assert!((a.others_share(b) - 0.25).abs() < 1e-12);
    }
}
