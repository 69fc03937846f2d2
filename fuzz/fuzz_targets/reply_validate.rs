//! Replies through every probe module's `validate` and `classify` and the `ReplyProcessor`:
//! structure-aware (`arbitrary`): a real probe's answer or ICMP error, or raw bytes, then a list
//! of mutations. The body lives in `rzmap_fuzz::reply_validate`.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use rzmap_core::probe::ProbeModule;
use rzmap_fuzz::{ReplyCase, ReplyEnv, modules, reply_validate};

static SETUP: LazyLock<(Vec<Arc<dyn ProbeModule>>, ReplyEnv)> =
    LazyLock::new(|| (modules(), ReplyEnv::new()));

fuzz_target!(|case: ReplyCase| {
    let (mods, env) = &*SETUP;
    reply_validate(&case, mods, env);
});
