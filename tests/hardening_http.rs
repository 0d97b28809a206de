//! The `[http]` server of `cull run` against hostile clients, over real sockets: half a
//! request head, a body that stalls, more idle connections than the server takes, and
//! request-controlled text that tries to forge log lines.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::pipeline::cull;
use crate::sources::sign;

const SECRET: &str = "s3cret";

/// Longer than any limit of the test server: a socket still open after this is one the
/// server would keep forever.
const HANG: Duration = Duration::from_secs(30);

/// A running `cull run` with a signed webhook `hook`, its log collected.
struct Running {
    child: Child,
    address: String,
    log: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts a pipeline whose `[http]` section has `http` besides its listen address.
    fn start(dir: &Path, http: &str) -> Running {
        let file = dir.join("pipeline.toml");
        std::fs::write(
            &file,
            format!(
                "[bus]\nkind = \"embedded\"\n[bus.embedded]\ndir = \"{dir}/bus\"\n\
                 [ingest]\nstate_dir = \"{dir}/state\"\n\
                 [[source]]\nkind = \"webhook\"\nname = \"hook\"\nsecret_env = \"TEST_HOOK_SECRET\"\n\
                 [http]\nlisten = \"127.0.0.1:0\"\n{http}\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let mut child =
            cull(&["run", file.to_str().unwrap()], &[("TEST_HOOK_SECRET", SECRET), ("RUST_LOG", "info")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let (stderr, collected) = (child.stderr.take().unwrap(), Arc::clone(&log));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split("listen=").nth(1) {
                    let _ = sender.send(address.trim().to_string());
                }
                collected.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let address = receiver.recv_timeout(HANG).expect("cull run logs its listen address");
        crate::pipeline::wait_ready(&address);
        Running { child, address, log }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(HANG)).unwrap();
        stream
    }

    /// Posts a validly signed mention `id` and returns the status.
    fn post_signed(&self, id: &str) -> std::io::Result<u16> {
        let body = format!(r#"{{"schema":"cull.mention/v1","id":"{id}","text":"Slack is down"}}"#);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut stream = TcpStream::connect(&self.address)?;
        stream.set_read_timeout(Some(HANG))?;
        write!(
            stream,
            "POST /ingest/hook HTTP/1.1\r\nHost: cull\r\nConnection: close\r\nx-cull-timestamp: {now}\r\n\
             x-cull-signature: {}\r\ncontent-length: {}\r\n\r\n{body}",
            sign(SECRET, now, &body),
            body.len()
        )?;
        Ok(status(&read_until_closed(&mut stream)?))
    }
}

/// Reads until the server closes the connection; an error if it is still open after
/// [`HANG`].
fn read_until_closed(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => Ok(String::from_utf8_lossy(&received).into_owned()),
        // The server may reset a connection it gives up on: closed too.
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
            Ok(String::from_utf8_lossy(&received).into_owned())
        }
        Err(error) => Err(error),
    }
}

fn status(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn half_a_request_head_and_an_idle_kept_alive_connection_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), "header_read_timeout_secs = 1");

    let mut half = server.connect();
    half.write_all(b"POST /ingest/hook HTTP/1.1\r\nHost: cull\r\nx-cull-").unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut half).expect("the server keeps half a request head open");
    eprintln!("half a request head closed after {:?}", started.elapsed());
    assert!(answer.is_empty() || status(&answer) == 408, "{answer}");

    let mut kept = server.connect();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: cull\r\n\r\n").unwrap();
    let mut first = [0; 512];
    let read = kept.read(&mut first).unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&first[..read])), 200);
    let started = Instant::now();
    let rest = read_until_closed(&mut kept).expect("the server keeps an idle connection open");
    eprintln!("idle kept-alive connection closed after {:?}", started.elapsed());
    assert!(!rest.contains("HTTP/1.1"), "{rest}");
}

#[test]
fn a_stalled_webhook_body_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), "body_read_timeout_secs = 1");
    let body = r#"{"schema":"cull.mention/v1","id":"stalled","text":"Slack is down"}"#;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut stream = server.connect();
    write!(
        stream,
        "POST /ingest/hook HTTP/1.1\r\nHost: cull\r\nx-cull-timestamp: {now}\r\nx-cull-signature: {}\r\n\
         content-length: {}\r\n\r\n{}",
        sign(SECRET, now, body),
        body.len(),
        &body[..10]
    )
    .unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut stream).expect("the server waits for the body forever");
    eprintln!("stalled body answered after {:?}", started.elapsed());
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
}

#[test]
fn more_idle_sockets_than_the_server_takes_do_not_keep_a_signed_webhook_request_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), "header_read_timeout_secs = 2\nmax_connections = 100");
    let mut idle: Vec<TcpStream> = (0..120).map(|_| server.connect()).collect();

    // The server is full: it says so at once rather than keep the client waiting.
    let mut full = server.connect();
    let answer = read_until_closed(&mut full).expect("a full server leaves a new connection hanging");
    assert_eq!(status(&answer), 503, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");

    // A client retrying as told gets through once the idle ones are closed.
    let started = Instant::now();
    let accepted = loop {
        match server.post_signed("through") {
            Ok(202) => break true,
            Ok(503) | Err(_) if started.elapsed() < HANG => std::thread::sleep(Duration::from_millis(200)),
            _ => break false,
        }
    };
    eprintln!("signed request accepted after {:?} (120 idle sockets, cap 100)", started.elapsed());
    assert!(accepted, "the signed request never got through");
    for (i, socket) in idle.iter_mut().enumerate() {
        let answer = read_until_closed(socket).unwrap_or_else(|e| panic!("idle socket {i} still open: {e}"));
        assert!(answer.is_empty() || status(&answer) == 503, "{answer}");
    }
}

#[test]
fn invalid_http_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, "[http]\nheader_read_timeout_secs = 0\nmax_connections = 0\n").unwrap();
    let out = cull(&["config", "check", file.to_str().unwrap()], &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("http.header_read_timeout_secs: must be at least 1"), "{stderr}");
    assert!(stderr.contains("http.max_connections: must be between 1 and"), "{stderr}");
}

#[test]
fn a_request_path_with_a_newline_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), "");
    let mut stream = server.connect();
    stream
        .write_all(b"POST /ingest/x%0AERROR%20forged%1B%5B2J HTTP/1.1\r\nHost: cull\r\nConnection: close\r\ncontent-length: 2\r\n\r\n{}")
        .unwrap();
    assert_eq!(status(&read_until_closed(&mut stream).unwrap()), 404);
    let started = Instant::now();
    let log = loop {
        let log = server.log.lock().unwrap().clone();
        if log.contains("unknown source") || started.elapsed() > HANG {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let warning = log.lines().find(|line| line.contains("unknown source")).expect("the request is logged");
    assert!(warning.contains(r"source=x\u{a}ERROR forged\u{1b}[2J"), "{warning}");
    assert!(!log.contains('\x1b'), "{log}");
    assert!(!log.lines().any(|line| line.trim_start().starts_with("ERROR")), "{log}");
}

#[test]
fn feed_credentials_never_reach_logs_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: the feed fails to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://reader:hunter2@{closed}/feed?token=t0psecret&page=2");
    let file = dir.path().join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            "[bus]\nkind = \"embedded\"\n[bus.embedded]\ndir = \"{dir}/bus\"\n[ingest]\nstate_dir = \"{dir}/state\"\n\
             [[source]]\nkind = \"feed\"\nname = \"alerts\"\nurl = \"{url}\"\n\
             [sink.dead_letter]\nkind = \"jsonl\"\npath = \"{dir}/dead-letter.jsonl\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let run = cull(&["run", file.to_str().unwrap(), "--once"], &[("RUST_LOG", "info")]).output().unwrap();
    let ingest = cull(&["ingest", "feed", &url], &[]).output().unwrap();
    assert!(!ingest.status.success());
    let dead_letters = std::fs::read_to_string(dir.path().join("dead-letter.jsonl")).unwrap_or_default();
    let everything = format!(
        "{}{}{}{}{dead_letters}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        String::from_utf8_lossy(&ingest.stdout),
        String::from_utf8_lossy(&ingest.stderr),
    );
    assert!(!everything.contains("hunter2") && !everything.contains("t0psecret"), "{everything}");
    let error = String::from_utf8_lossy(&ingest.stderr);
    assert!(error.contains(&format!("http://reader:***@{closed}/feed?token=***&page=2")), "{error}");
    assert!(everything.contains("feed poll failed"), "{everything}");
}
