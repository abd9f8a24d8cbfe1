//! ordercast instances as separate processes of the real binary, so a fault can kill one with
//! SIGKILL. Their logs go to `target/chaos/<name>.log`.

use std::time::Duration;

use crate::common::process::{serve_command, ServeProcess};

pub struct Instance;

impl Instance {
    /// Starts `ordercast serve` on a free port and waits until `/readyz` and `/readyz/cdc` say 200.
    /// `ORDERCAST_CHAOS_BIN` names another binary to run (an older build, to compare with).
    pub async fn start(name: &'static str) -> ServeProcess {
        let binary =
            std::env::var("ORDERCAST_CHAOS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ordercast").to_owned());
        let instance = ServeProcess::start(name, "chaos", serve_command(&binary)).await;
        instance.wait_for("/readyz", Duration::from_secs(60)).await;
        if instance.status("/readyz/cdc").await != Some(404) {
            // (A build from before `/readyz/cdc` had `/readyz` wait for the CDC consumer.)
            instance.wait_for("/readyz/cdc", Duration::from_secs(60)).await;
        }
        instance
    }
}
