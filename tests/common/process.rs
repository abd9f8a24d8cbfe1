//! `ordercast serve` as a separate process of the real binary: for tests that kill it, or that
//! read what it logs. Its stderr is kept in memory and in `target/<dir>/<name>.log`.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{
    database_url, kafka_brokers, Endpoint, TEST_JWT_SECRET, TEST_MAX_CONCURRENT_REQUESTS, TEST_WRITES_PER_MINUTE,
};

pub struct ServeProcess {
    pub name: String,
    base_url: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Endpoint for ServeProcess {
    fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// The environment of an instance on the local stack, with JSON logs.
pub fn serve_command(binary: &str) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", database_url())
        .env("KAFKA_BROKERS", kafka_brokers())
        .env("ORDERCAST_DEV", "1")
        .env("ORDERCAST_JWT_SECRET", TEST_JWT_SECRET)
        .env("ORDERCAST_CREATE_ORDER_PER_MINUTE", TEST_WRITES_PER_MINUTE.to_string())
        .env("ORDERCAST_MUTATIONS_PER_MINUTE", TEST_WRITES_PER_MINUTE.to_string())
        .env(
            "ORDERCAST_HTTP_MAX_CONCURRENT_REQUESTS",
            TEST_MAX_CONCURRENT_REQUESTS.to_string(),
        )
        .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn,rdkafka=warn");
    command
}

impl ServeProcess {
    /// Starts `command` and waits until it says where it listens.
    pub async fn start(name: &str, log_dir: &str, mut command: Command) -> ServeProcess {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the ordercast binary starts");
        let mut reader = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let dir = super::stack::repo().join("target").join(log_dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = tokio::fs::File::create(dir.join(format!("{name}.log"))).await.unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (listening, address) = tokio::sync::oneshot::channel();
        let kept = lines.clone();
        tokio::spawn(async move {
            let mut listening = Some(listening);
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
                if let Some(address) = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|entry| entry["address"].as_str().map(str::to_owned))
                {
                    if let Some(listening) = listening.take() {
                        let _ = listening.send(address);
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let address = tokio::time::timeout(Duration::from_secs(60), address)
            .await
            .unwrap_or_else(|_| panic!("instance {name} did not listen within 60 s"))
            .unwrap_or_else(|_| panic!("instance {name} exited before it listened; see target/{log_dir}/{name}.log"));
        ServeProcess {
            name: name.to_owned(),
            base_url: format!("http://{address}"),
            child,
            lines,
        }
    }

    /// Everything it logged so far, one entry per line.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The HTTP status and JSON body of `path`, if the instance answers.
    pub async fn get(&self, path: &str) -> Option<(u16, Value)> {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base_url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The HTTP status of `path`, if the instance answers.
    pub async fn status(&self, path: &str) -> Option<u16> {
        self.get(path).await.map(|(status, _)| status)
    }

    /// Waits until `path` answers 200.
    pub async fn wait_for(&self, path: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.status(path).await != Some(200) {
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
