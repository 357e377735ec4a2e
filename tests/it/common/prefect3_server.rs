//! A real Prefect 3 server for the tests: `prefect==3.9.1` in a venv under `target/`
//! (created with pip on first use, so a fresh machine needs nothing by hand), started
//! on a free loopback port with its own `PREFECT_HOME`, analytics off, stopped by PID.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn venv() -> PathBuf {
    super::venv::ensure("prefect3", "prefect", &["prefect==3.9.1"])
}

pub struct Server {
    pub api: String,
    child: Child,
    home: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Server {
    pub fn start() -> Server {
        let venv = venv();
        let home = tempfile::tempdir().unwrap();
        let port = unsprawl_testkit::local_registry::free_port();
        let api = format!("http://127.0.0.1:{port}/api");
        let child = Command::new(venv.join("bin/prefect"))
            .args([
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--no-services",
            ])
            .envs(Self::env_for(home.path(), &api))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prefect server starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let server = Server {
            api,
            child,
            home,
            runtime,
            client,
        };
        let start = Instant::now();
        loop {
            let ok = server.runtime.block_on(async {
                server
                    .client
                    .get(format!("{}/health", server.api))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            });
            if ok {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the Prefect server did not answer /api/health in 90 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        server
    }

    fn env_for(home: &std::path::Path, api: &str) -> Vec<(String, String)> {
        vec![
            ("PREFECT_HOME".into(), home.display().to_string()),
            ("PREFECT_API_URL".into(), api.into()),
            ("PREFECT_SERVER_ANALYTICS_ENABLED".into(), "false".into()),
            (
                "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY".into(),
                "false".into(),
            ),
            (
                "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS".into(),
                "false".into(),
            ),
            ("DO_NOT_TRACK".into(), "1".into()),
        ]
    }

    /// Run the `prefect` CLI against this server (work pools get their type's template).
    pub fn cli(&self, args: &[&str]) {
        self.cli_output(args);
    }

    /// Run the `prefect` CLI and return what it printed.
    pub fn cli_output(&self, args: &[&str]) -> String {
        let out = Command::new(venv().join("bin/prefect"))
            .args(args)
            .envs(Self::env_for(self.home.path(), &self.api))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "prefect {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A REST call, retrying the 503s SQLite gives while the server settles.
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.runtime.block_on(async {
            for _ in 0..20 {
                let mut req = self
                    .client
                    .request(method.clone(), format!("{}/{path}", self.api));
                if let Some(b) = &body {
                    req = req.json(b);
                }
                // a pooled connection the server has since closed: try again
                let Ok(res) = req.send().await else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                if res.status().as_u16() == 503 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                assert!(res.status().is_success(), "{path}: HTTP {}", res.status());
                let text = res.text().await.unwrap();
                return if text.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap()
                };
            }
            panic!("{path}: still 503 after 20 tries");
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
