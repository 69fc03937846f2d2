//! Running code inside a named network namespace from this process, without `ip netns exec`.

use crate::cmd::LabError;
use nix::sched::{CloneFlags, setns};
use std::fs::File;

/// Runs `f` on a fresh thread that has joined network namespace `ns` (`/run/netns/<ns>`),
/// and returns its result. Sockets created by `f` belong to `ns` for their whole life, so
/// they may be returned and used from any thread; threads spawned by `f` are in `ns` too.
/// A panic in `f` is resumed in the caller.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).map_err(|e| LabError::Other(format!("open {path}: {e}")))?;
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|e| LabError::Other(format!("setns({path}): {e}")))?;
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}
