//! Signal flags for the engine: SIGINT/SIGTERM request a stop (a second one exits at once
//! with status 1), SIGUSR1/SIGUSR2 raise flags the engine may poll.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::{SigId, flag};

/// Flags set by signal handlers; handlers are removed on drop.
#[derive(Debug)]
pub struct SignalFlags {
    stop: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
    usr2: Arc<AtomicBool>,
    ids: Vec<SigId>,
}

impl SignalFlags {
    /// Installs the handlers.
    pub fn install() -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let usr1 = Arc::new(AtomicBool::new(false));
        let usr2 = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal: a second
            // stop signal exits immediately.
            ids.push(flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))?);
            ids.push(flag::register(sig, Arc::clone(&stop))?);
        }
        ids.push(flag::register(SIGUSR1, Arc::clone(&usr1))?);
        ids.push(flag::register(SIGUSR2, Arc::clone(&usr2))?);
        Ok(SignalFlags { stop, usr1, usr2, ids })
    }

    /// True once SIGINT or SIGTERM arrived.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The stop flag, to share with other threads.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// True if SIGUSR1 arrived since the last call.
    pub fn take_usr1(&self) -> bool {
        self.usr1.swap(false, Ordering::Relaxed)
    }

    /// True if SIGUSR2 arrived since the last call.
    pub fn take_usr2(&self) -> bool {
        self.usr2.swap(false, Ordering::Relaxed)
    }
}

impl Drop for SignalFlags {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usr_flags_are_raised_and_taken() {
        let f = SignalFlags::install().unwrap();
        signal_hook::low_level::raise(SIGUSR1).unwrap();
        assert!(f.take_usr1());
        assert!(!f.take_usr1());
        assert!(!f.take_usr2());
        assert!(!f.stop_requested());
    }
}
