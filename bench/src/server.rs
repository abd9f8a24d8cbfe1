//! The ordercast instances under test: started as `ordercast serve` child processes, probed
//! through `/readyz`, `/metrics` and `/proc`, and always stopped (killed on drop at the latest).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::{Args, Ctx};

/// A token for the bench customer, minted by `ordercast token`.
pub(crate) async fn mint_token(args: &Args) -> Result<String> {
    let out = tokio::process::Command::new(&args.server_bin)
        .args(["token", "--customer", &args.customer, "--ttl", "86400"])
        .output()
        .await
        .with_context(|| format!("running {}", args.server_bin.display()))?;
    if !out.status.success() {
        bail!("ordercast token failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// One running `ordercast serve` on 127.0.0.1:`port`.
pub(crate) struct Server {
    child: tokio::process::Child,
    pub(crate) port: u16,
    pub(crate) pid: u32,
    pub(crate) base: String,
    http: reqwest::Client,
}

impl Server {
    pub(crate) async fn start(ctx: &Ctx, port: u16, name: &str) -> Result<Server> {
        Self::start_with(ctx, port, name, &[]).await
    }

    /// `start`, with more environment for the instance.
    pub(crate) async fn start_with(ctx: &Ctx, port: u16, name: &str, env: &[(&str, &str)]) -> Result<Server> {
        let log = std::fs::File::create(ctx.args.out_dir.join(format!("{name}.log")))?;
        let mut cmd = tokio::process::Command::new(&ctx.args.server_bin);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            // The bench signs in with development tokens.
            .env("ORDERCAST_DEV", "1")
            // One bench customer writes thousands of times a second: far beyond a person's budget.
            .env("ORDERCAST_CREATE_ORDER_PER_MINUTE", "10000000")
            .env("ORDERCAST_MUTATIONS_PER_MINUTE", "100000000")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        cmd.envs(env.iter().copied());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd.spawn().context("starting ordercast serve")?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let server = Server {
            child: {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let ready = ctx.http.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
                    if matches!(&ready, Ok(r) if r.status().is_success()) {
                        break;
                    }
                    if let Some(status) = child.try_wait()? {
                        bail!("ordercast on {port} exited: {status} (see {name}.log)");
                    }
                    if Instant::now() > deadline {
                        bail!("ordercast on {port} not ready after 60 s");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                child
            },
            port,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            http: ctx.http.clone(),
        };
        Ok(server)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// CPU time the instance has used so far (user + system).
    pub(crate) fn cpu_seconds(&self) -> f64 {
        crate::stack::process_cpu_seconds(self.pid)
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits (at most 60 s) until this instance's CDC consumer has no lag, so that one run's
    /// backlog (Debezium, Kafka, consumers) does not load the machine during the next one.
    pub(crate) async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        tokio::time::sleep(Duration::from_secs(2)).await;
        while Instant::now() < deadline {
            let text = self.metrics().await;
            let lag: f64 = text
                .lines()
                .filter(|l| l.starts_with("ordercast_cdc_consumer_lag_messages"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .sum();
            if lag <= 0.0 {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub(crate) async fn metrics(&self) -> String {
        match self.http.get(format!("{}/metrics", self.base)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// SIGTERM (graceful: WebSockets get 1001), then SIGKILL after 10 s.
    pub(crate) async fn stop(mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
