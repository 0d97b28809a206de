//! A tansu broker for tests against a real Kafka-protocol broker on loopback, shared by
//! the bus tests (crates/cull-bus/tests) and the pipeline tests (tests/kafka.rs).
//!
//! Each test starts its own broker on a free port with its own storage, so tests
//! neither share state nor depend on order. The storage is SQLite, not tansu's
//! `memory://` engine: tansu 0.6.0's memory engine answers a fetch that starts inside a
//! record batch with no records at all, so a consumer whose group committed an offset
//! in the middle of a producer's batch (which at-least-once does all the time) would
//! stall forever; SQLite also survives a broker restart. A machine without tansu fails
//! these tests with a message that says how to get it, rather than skipping them: a
//! skipped broker test looks green while proving nothing.

// Each test crate that includes this file uses a different part of it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tansu broker on a free loopback port, killed (and its storage removed) on drop.
#[derive(Debug)]
pub struct TestBroker {
    child: Option<Child>,
    binary: PathBuf,
    /// The loopback port the broker listens on, the same across restarts.
    pub port: u16,
    log: PathBuf,
    db: PathBuf,
}

impl TestBroker {
    /// Starts a broker with empty storage and returns once its port accepts
    /// connections.
    pub fn start() -> Result<TestBroker, String> {
        let binary = find_tansu().ok_or_else(|| {
            "tansu is neither on PATH nor at ~/.cargo/bin/tansu; install tansu: scripts/test.sh does it"
                .to_string()
        })?;
        let port = free_port()?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let log = dir.join(format!("tansu-{port}.log"));
        let db = dir.join(format!("tansu-{port}.db"));
        remove_db(&db);
        let mut broker = TestBroker { child: None, binary, port, log, db };
        broker.spawn()?;
        Ok(broker)
    }

    /// The bootstrap broker list for clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker with SIGKILL, as a crash would, keeping its storage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker and starts it again on the same port with the same storage.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port;
        let url = format!("tcp://127.0.0.1:{port}");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let stderr = log_file.try_clone().map_err(|e| format!("cannot share {}: {e}", self.log.display()))?;
        let dir = self.db.parent().unwrap_or(Path::new("."));
        let name = self.db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let child = Command::new(&self.binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            // tansu 0.6.0 reads the path of a sqlite:// URL relative to its working
            // directory, even after three slashes.
            .current_dir(dir)
            .args(["--storage-engine", &format!("sqlite://{name}")])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let child = self.child.insert(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("tansu exited with {status} at start; see {}", self.log.display()));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tansu did not listen on {port} within 30 s; see {}",
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill();
        remove_db(&self.db);
    }
}

fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

fn find_tansu() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"));
    let in_cargo_home = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/tansu"));
    on_path.chain(in_cargo_home).find(|candidate| candidate.is_file())
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("cannot read the bound port: {e}"))
}
