//! Engine stand-ins for benchmarks that run the real send loop without a network: a link that
//! counts what it is given, a response handler that never sees a reply, and a run with
//! senders only.

use rzmap_core::engine::{
    self, Controls, EngineConfig, FrameBuilder, ReceiverSetup, ResponseHandler, ScanReport,
    SenderSetup, TargetSource, Verdict,
};
use rzmap_core::link::{FrameBatch, LoopbackRx, PacketTx, SendOutcome};
use rzmap_core::rate::SystemClock;

/// Runs `senders` on the real clock with no receiver and no status callback.
pub fn run_senders<S: TargetSource, B: FrameBuilder, T: PacketTx>(
    cfg: &EngineConfig,
    ctl: &Controls,
    senders: Vec<SenderSetup<S, B, T>>,
) -> ScanReport<S> {
    engine::run(
        cfg,
        ctl,
        &SystemClock,
        senders,
        None::<ReceiverSetup<LoopbackRx, NoHandler>>,
        |_| {},
    )
}

/// Reports every frame of a batch as sent and sends nothing.
pub struct CountingTx;

impl PacketTx for CountingTx {
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        SendOutcome { sent: batch.len() as u32, failed: 0 }
    }
}

/// Classifies and emits nothing (the benchmarks run no receiver).
pub struct NoHandler;

impl ResponseHandler for NoHandler {
    fn classify(&mut self, _: &[u8], _: std::time::SystemTime) -> Option<Verdict> {
        None
    }
    fn emit(
        &mut self,
        _: &[u8],
        _: std::time::SystemTime,
        _: &Verdict,
        _: engine::ResponseFlags,
    ) -> bool {
        false
    }
}
