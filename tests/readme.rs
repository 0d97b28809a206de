//! Every command of the README, run as a reader would run it, in README order, in a
//! scratch copy of the repository's pipelines and rules.
//!
//! `cargo run --release -p cull --` is the binary under test (the same program, built
//! for tests). Three kinds of command are checked rather than run here, each for a
//! stated reason: `scripts/test.sh` (it is what runs this test), `cargo bench` (minutes
//! each; the test checks that each named benchmark exists), and the signed webhook
//! request, which `tests/sources.rs` runs against a live webhook.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::feeds::FeedServer;
use crate::pipeline::{get, listening_address, repo, text};

/// The commands of the README's `sh` blocks, continuation lines joined, comments and
/// blank lines dropped; blocks that are one script (the webhook request) stay whole.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut block: Option<Vec<String>> = None;
    for line in readme.lines() {
        let trimmed = line.trim();
        match (&mut block, trimmed) {
            (None, "```sh") => block = Some(Vec::new()),
            (Some(lines), "```") => {
                let script = lines.join("\n");
                if script.contains("openssl dgst") {
                    commands.push(script);
                } else {
                    let mut current = String::new();
                    for line in lines.iter() {
                        let line = match line.find("  #") {
                            Some(comment) => line[..comment].trim_end(),
                            None => line.as_str(),
                        };
                        if let Some(continued) = line.strip_suffix('\\') {
                            current.push_str(continued);
                            continue;
                        }
                        current.push_str(line);
                        if !current.trim().is_empty() {
                            commands.push(current.trim().to_string());
                        }
                        current.clear();
                    }
                }
                block = None;
            }
            (Some(lines), _) => lines.push(trimmed.to_string()),
            (None, _) => {}
        }
    }
    commands
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn sh(command: &str, dir: &Path) -> Command {
    let mut sh = Command::new("sh");
    sh.args(["-c", command])
        .current_dir(dir)
        // The README's pipelines listen on fixed ports; tests run side by side.
        .env("CULL__HTTP__LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null());
    sh
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_command_runs() {
    let commands = readme_commands();
    assert!(commands.len() >= 15, "{commands:#?}");
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    for part in ["pipelines", "rules", "deploy"] {
        copy_dir(&repo().join(part), &dir.join(part));
    }
    let feeds = FeedServer::start().await;
    let binary = env!("CARGO_BIN_EXE_cull");
    let benches = std::fs::read_to_string(repo().join("crates/cull/Cargo.toml")).unwrap();
    let mut ran = 0;
    for command in commands {
        if command.contains("openssl dgst") {
            continue; // run against a live webhook by tests/sources.rs
        }
        if command == "scripts/test.sh" {
            let script = repo().join("scripts/test.sh");
            let mode =
                std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&script).unwrap().permissions());
            assert!(mode & 0o111 != 0, "scripts/test.sh is executable");
            continue;
        }
        if let Some(rest) = command.strip_prefix("cargo bench -p cull --bench ") {
            let name = rest.split_whitespace().next().unwrap();
            assert!(benches.contains(&format!("name = \"{name}\"")), "no benchmark {name}");
            assert!(repo().join(format!("benches/{name}.rs")).is_file());
            continue;
        }
        assert!(
            command.contains("cargo run --release -p cull -- "),
            "a README command the test does not know: {command}"
        );
        let mut line = command.replace("cargo run --release -p cull --", binary);
        if line.contains("ingest feed 'https://www.google.com/alerts/feeds/") {
            let start = line.find("'https://").unwrap();
            let end = line[start + 1..].find('\'').unwrap() + start + 2;
            let local = feeds.url("corpus/feedjira/google_alerts_atom.xml");
            line.replace_range(start..end, &format!("'{local}'"));
        }
        if line.contains(" serve ") {
            let line = line.replace("--listen 127.0.0.1:9470", "--listen 127.0.0.1:0");
            let served = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || serve_briefly(&line, &dir)
            })
            .await
            .unwrap();
            assert!(served, "{command}");
            ran += 1;
            continue;
        }
        let out = tokio::task::spawn_blocking({
            let (line, dir) = (line.clone(), dir.clone());
            move || sh(&line, &dir).output().unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "README command failed: {command}\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 12, "{ran} commands ran");
    assert!(dir.join("data/index/meta.json").is_file(), "the main command built the index the others read");
}

/// Starts a long-running `serve` command, checks that it answers, and stops it.
fn serve_briefly(line: &str, dir: &Path) -> bool {
    // `exec` after the leading VAR=value assignments, so that killing the shell's
    // process kills the server.
    let words: Vec<&str> = line.split(' ').collect();
    let assignments = words.iter().take_while(|w| w.contains('=') && !w.starts_with('-')).count();
    let script =
        format!("{} RUST_LOG=info exec {}", words[..assignments].join(" "), words[assignments..].join(" "));
    let mut child = sh(&script, dir).stderr(Stdio::piped()).spawn().unwrap();
    let address = listening_address(&mut child);
    let healthy = get(&address, "/healthz").map(|(status, _)| status == 200).unwrap_or(false);
    let console =
        get(&address, "/").map(|(status, body)| status == 200 && body.contains("<html")).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    healthy && console
}
