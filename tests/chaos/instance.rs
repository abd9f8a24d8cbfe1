//! ordercast instances as separate processes of the real binary, so a fault can kill one with
//! SIGKILL. Their logs go to `target/chaos/<name>.log`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::common::{database_url, kafka_brokers, Endpoint, TEST_JWT_SECRET};

pub struct Instance {
    pub name: &'static str,
    base_url: String,
    child: Child,
}

impl Endpoint for Instance {
    fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl Instance {
    /// Starts `ordercast serve` on a free port and waits until `/readyz` and `/readyz/cdc` say 200.
    /// `ORDERCAST_CHAOS_BIN` names another binary to run (an older build, to compare with).
    pub async fn start(name: &'static str) -> Instance {
        let binary =
            std::env::var("ORDERCAST_CHAOS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ordercast").to_owned());
        let mut child = Command::new(binary)
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", database_url())
            .env("KAFKA_BROKERS", kafka_brokers())
            .env("ORDERCAST_JWT_SECRET", TEST_JWT_SECRET)
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the ordercast binary starts");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let dir = crate::common::stack::repo().join("target/chaos");
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = tokio::fs::File::create(dir.join(format!("{name}.log"))).await.unwrap();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                log.write_all(format!("{line}\n").as_bytes()).await.unwrap();
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(address) = entry["address"].as_str() {
                    return address.to_owned();
                }
            }
            panic!("instance {name} exited before it listened; see target/chaos/{name}.log");
        })
        .await
        .unwrap_or_else(|_| panic!("instance {name} did not listen within 60 s"));
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        let instance = Instance {
            name,
            base_url: format!("http://{address}"),
            child,
        };
        instance.wait_for("/readyz", Duration::from_secs(60)).await;
        if instance.status("/readyz/cdc").await != Some(404) {
            // (A build from before `/readyz/cdc` had `/readyz` wait for the CDC consumer.)
            instance.wait_for("/readyz/cdc", Duration::from_secs(60)).await;
        }
        instance
    }

    /// The HTTP status of `path`, if the instance answers.
    pub async fn status(&self, path: &str) -> Option<u16> {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base_url))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        response.ok().map(|r| r.status().as_u16())
    }

    /// Waits until `path` answers 200.
    pub async fn wait_for(&self, path: &str, limit: Duration) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            let response = http
                .get(format!("{}{path}", self.base_url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if response.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {path} not 200 within {limit:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a crashed host or an OOM kill would do it.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("SIGKILL the instance");
        let _ = self.child.wait().await;
    }
}
