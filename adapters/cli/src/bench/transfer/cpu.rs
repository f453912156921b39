//! CPU time of processes, read from `/proc/PID/stat`: a process's own user+system time and
//! that of the children it has waited for, so a benchmark can charge each side of a
//! transfer its CPU seconds.

use std::time::Duration;

/// Linux reports these fields in clock ticks of `USER_HZ`, which is 100 on every Linux
/// architecture this runs on.
const TICKS_PER_SECOND: u64 = 100;

/// One reading of a process's CPU times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct CpuTimes {
    /// User + system time of the process's own threads.
    pub(super) own: Duration,
    /// User + system time of its children that it has waited for (and their waited-for
    /// children, transitively).
    pub(super) children: Duration,
}

impl CpuTimes {
    /// The CPU times of process `pid` (`None` where /proc is not available or the process
    /// is gone).
    pub(super) fn of(pid: u32) -> Option<CpuTimes> {
        parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// The CPU times of this process.
    pub(super) fn of_self() -> Option<CpuTimes> {
        parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// Own plus waited-for children's time.
    pub(super) fn total(&self) -> Duration {
        self.own + self.children
    }
}

/// Parses a `/proc/PID/stat` line: fields 14-17 (utime, stime, cutime, cstime), counted
/// after the parenthesised command name, which may itself hold spaces.
fn parse(stat: &str) -> Option<CpuTimes> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // The first field after the name is field 3 (state); utime is field 14.
    let mut fields = after_name.split_whitespace().skip(11);
    let mut next = || -> Option<u64> { fields.next()?.parse().ok() };
    let (utime, stime, cutime, cstime) = (next()?, next()?, next()?, next()?);
    let ticks = |t: u64| Duration::from_millis(t * 1000 / TICKS_PER_SECOND);
    Some(CpuTimes {
        own: ticks(utime + stime),
        children: ticks(cutime + cstime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_parses() {
        let line = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 \
                    100 1000 10 18446744073709551615";
        let t = parse(line).expect("parses");
        assert_eq!(t.own, Duration::from_millis(3000));
        assert_eq!(t.children, Duration::from_millis(100));
        assert_eq!(t.total(), Duration::from_millis(3100));
        assert!(parse("1234 (x) S 1 2").is_none());
    }

    #[test]
    fn this_process_has_a_reading() {
        assert!(CpuTimes::of_self().is_some());
        assert_eq!(
            CpuTimes::of(std::process::id()).is_some(),
            CpuTimes::of_self().is_some()
        );
    }
}
