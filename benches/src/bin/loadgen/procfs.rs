//! CPU time and resident memory of a process, from `/proc` (Linux).

use std::time::Instant;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every
/// Linux architecture Tidewire targets).
const TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    at: Instant,
    cpu_secs: f64,
    /// Resident set size, bytes.
    pub(crate) rss: u64,
}

impl Sample {
    /// Reads `pid`'s counters (`None` for this process).
    pub(crate) fn take(pid: Option<u32>) -> std::io::Result<Sample> {
        let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
        let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
        let status = std::fs::read_to_string(format!("{dir}/status"))?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected {dir}/stat"));
        Ok(Sample { at: Instant::now(), cpu_secs: parse_cpu_secs(&stat).ok_or_else(bad)?, rss: parse_rss(&status) })
    }

    /// CPU use between `earlier` and this sample, in percent of one core.
    pub(crate) fn cpu_pct_since(&self, earlier: &Sample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall <= 0.0 { 0.0 } else { 100.0 * self.cpu_secs_since(earlier) / wall }
    }

    /// CPU seconds (user + system) between `earlier` and this sample.
    pub(crate) fn cpu_secs_since(&self, earlier: &Sample) -> f64 {
        (self.cpu_secs - earlier.cpu_secs).max(0.0)
    }
}

/// Open file descriptors of `pid`.
pub(crate) fn open_fds(pid: u32) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Threads of `pid` (`Threads:` in its status).
pub(crate) fn threads(pid: u32) -> std::io::Result<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no Threads: line"))
}

/// utime + stime, in seconds. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_cpu_secs(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // state is field 3; utime is 14
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

fn parse_rss(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194304 500 0 0 0 250 50 0 0 20 0 1 0 100 1000 200";
        assert_eq!(parse_cpu_secs(stat), Some(3.0));
        assert_eq!(parse_cpu_secs("garbage"), None);
    }

    #[test]
    fn parses_rss() {
        assert_eq!(parse_rss("Name:\tx\nVmRSS:\t  1234 kB\nThreads:\t1\n"), 1234 * 1024);
        assert_eq!(parse_rss("Name:\tx\n"), 0);
    }

    #[test]
    fn reads_this_process() {
        let s = Sample::take(None).unwrap();
        assert!(s.rss > 1024 * 1024, "{s:?}");
        assert!(Sample::take(Some(u32::MAX)).is_err());
        let me = std::process::id();
        assert!(open_fds(me).unwrap() >= 3);
        assert!(threads(me).unwrap() >= 1);
    }
}
