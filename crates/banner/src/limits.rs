//! Fitting the connection concurrency to the open-file limit (RLIMIT_NOFILE).
//!
//! Each connection needs one descriptor. The soft limit is raised as far as needed, up to the
//! hard limit (through the `rlimit` crate, so this crate has no `unsafe`). When even the hard
//! limit is too low, the concurrency is lowered to fit and a warning says so.

/// Descriptors kept free for everything but connections: stdio, the runtime's epoll and wake
/// descriptors, the spill file, the output file, and some slack.
pub const RESERVED_FDS: u64 = 32;

/// The concurrency that will be used, and what to tell the user about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdPlan {
    /// Connections allowed at once.
    pub concurrency: usize,
    /// Lines for stderr (a raised limit, or a lowered concurrency).
    pub notes: Vec<String>,
}

/// Raises the soft open-file limit for `requested` connections and returns the plan.
pub fn fit_concurrency(requested: usize) -> FdPlan {
    let need = requested as u64 + RESERVED_FDS;
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft);
    let after = rlimit::increase_nofile_limit(need);
    plan(requested, before.ok(), after)
}

/// The decision, given the soft limit before and the result of raising it.
pub fn plan(requested: usize, before: Option<u64>, after: std::io::Result<u64>) -> FdPlan {
    let need = requested as u64 + RESERVED_FDS;
    let mut notes = Vec::new();
    let soft = match after {
        Ok(soft) => soft,
        Err(e) => {
            notes.push(format!("warning: cannot raise the open-file limit: {e}"));
            match before {
                Some(b) => b,
                None => return FdPlan { concurrency: requested, notes },
            }
        }
    };
    if let Some(b) = before
        && soft > b
    {
        notes.push(format!("raised the open-file limit from {b} to {soft}"));
    }
    if soft >= need {
        return FdPlan { concurrency: requested, notes };
    }
    let fit = soft.saturating_sub(RESERVED_FDS).max(1) as usize;
    notes.push(format!(
        "warning: the open-file limit is {soft} (hard limit reached), too low for -c {requested}; \
         using concurrency {fit} (raise the hard limit, e.g. `ulimit -Hn {need}` as root)"
    ));
    FdPlan { concurrency: fit, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_room_keeps_the_request() {
        let p = plan(100, Some(1024), Ok(1024));
        assert_eq!(p, FdPlan { concurrency: 100, notes: vec![] });
    }

    #[test]
    fn raising_is_reported() {
        let p = plan(3000, Some(1024), Ok(3032));
        assert_eq!(p.concurrency, 3000);
        assert_eq!(p.notes, vec!["raised the open-file limit from 1024 to 3032"]);
    }

    #[test]
    fn a_low_hard_limit_lowers_the_concurrency() {
        let p = plan(3000, Some(1024), Ok(1024));
        assert_eq!(p.concurrency, 1024 - 32);
        assert!(p.notes[0].contains("using concurrency 992"), "{:?}", p.notes);
        assert_eq!(plan(10, Some(8), Ok(8)).concurrency, 1);
    }

    #[test]
    fn a_failed_raise_falls_back_to_the_old_limit() {
        let p = plan(3000, Some(1024), Err(std::io::Error::other("nope")));
        assert_eq!(p.concurrency, 992);
        assert_eq!(p.notes.len(), 2);
        let p = plan(5, None, Err(std::io::Error::other("nope")));
        assert_eq!(p.concurrency, 5);
    }
}
