//! A local HTTP receiver for the chat tests: it records every JSON body posted to it
//! and answers with the statuses a test scripts, then 200.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One post the receiver got.
#[derive(Debug, Clone)]
pub struct Post {
    /// The status it was answered with.
    pub status: u16,
    /// Its body.
    pub json: serde_json::Value,
    /// Its size in bytes.
    pub size: usize,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// A receiver listening on loopback.
pub struct Receiver {
    /// Its URL.
    pub url: String,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Receiver {
    /// Starts a receiver that answers `statuses` in turn, then 200.
    pub fn start(statuses: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}/hook/SECRET", listener.local_addr().unwrap());
        let posts = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<VecDeque<u16>>> = Arc::new(Mutex::new(statuses.iter().copied().collect()));
        let recorded = Arc::clone(&posts);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                let json = serde_json::from_slice(&body).expect("the sink posts JSON");
                recorded.lock().unwrap().push(Post {
                    status,
                    json,
                    size: body.len(),
                    at: std::time::Instant::now(),
                });
                let answer =
                    format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Receiver { url, posts }
    }

    /// Returns every post, in order.
    pub fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    /// Returns the posts it accepted.
    pub fn accepted(&self) -> Vec<Post> {
        self.posts().into_iter().filter(|post| post.status == 200).collect()
    }
}
