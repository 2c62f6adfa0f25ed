//! CPU and memory of a process, read from `/proc` (the broker's and the
//! simulator's own), and the open-files limit a thousand carts need.

use std::time::Instant;

use serde::Serialize;

/// Linux's USER_HZ: the unit of `/proc/<pid>/stat`'s CPU times (100 on
/// every architecture the kernel ABI fixes it for).
const TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    at: Instant,
    cpu_ticks: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// Reads process `pid` (`None`: this process); `None` if it is gone.
pub fn read(pid: Option<u32>) -> Option<Reading> {
    let base = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(Reading {
        at: Instant::now(),
        cpu_ticks: utime + stime,
        rss_bytes: rss_kb * 1024,
    })
}

/// CPU use between two readings, in cores (1.0: one core busy).
pub fn cores(a: &Reading, b: &Reading) -> f64 {
    let secs = b.at.saturating_duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SEC / secs
}

/// A process's use over a run: mean and peak CPU (cores), peak memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Mean CPU, cores.
    pub cpu_mean_cores: f64,
    /// Highest one-sample CPU, cores.
    pub cpu_peak_cores: f64,
    /// Highest resident memory, MiB.
    pub rss_peak_mib: f64,
}

/// Collects readings of one process.
#[derive(Debug, Default)]
pub struct Sampler {
    first: Option<Reading>,
    last: Option<Reading>,
    usage: Usage,
}

impl Sampler {
    /// Adds a reading.
    pub fn add(&mut self, r: Option<Reading>) {
        let Some(r) = r else { return };
        if let Some(last) = &self.last {
            self.usage.cpu_peak_cores = self.usage.cpu_peak_cores.max(cores(last, &r));
        }
        self.usage.rss_peak_mib = self.usage.rss_peak_mib.max(mib(r.rss_bytes));
        self.first.get_or_insert(r);
        self.last = Some(r);
    }

    /// The use so far.
    pub fn usage(&self) -> Usage {
        let mut u = self.usage;
        if let (Some(a), Some(b)) = (&self.first, &self.last) {
            u.cpu_mean_cores = cores(a, b);
        }
        u
    }
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Raises this process's open-files limit to at least `want` (up to the
/// hard limit); returns the limit now in force.
pub fn raise_open_files(want: u64) -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft >= want {
        return Ok(soft);
    }
    let new = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard).map_err(std::io::Error::from)?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_and_burns_cpu() {
        let a = read(None).expect("/proc/self");
        // Busy until the kernel has charged 10 ticks of CPU to us (a hang
        // guard of 60 s, not a timing assertion).
        let t = Instant::now();
        let mut x = 0u64;
        let b = loop {
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            let b = read(None).expect("/proc/self");
            if b.cpu_ticks >= a.cpu_ticks + 10 || t.elapsed().as_secs() > 60 {
                break b;
            }
        };
        std::hint::black_box(x);
        assert!(b.cpu_ticks >= a.cpu_ticks + 10, "no CPU time charged");
        assert!(cores(&a, &b) > 0.0);
        assert!(b.rss_bytes > 1024 * 1024, "{}", b.rss_bytes);
        assert!(read(Some(u32::MAX)).is_none());
    }
}
