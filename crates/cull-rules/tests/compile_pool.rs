//! Rule files are compiled on threads of their own, never on rayon's global pool,
//! which matching runs on: a matching thread waiting for part of its batch takes
//! other jobs of its pool meanwhile, and a file's compilation taken that way would
//! pause matching for as long as the compilation takes.
//!
//! A test binary of its own, because it sizes rayon's global pool.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// How long the global pool's threads are held; a load that needed that thread
/// would wait this long, and the threads would be released by the timeout rather
/// than by the load.
const HOLD: Duration = Duration::from_secs(60);

#[test]
fn rule_files_compile_while_every_thread_of_the_global_pool_is_busy() {
    // Two threads, so that a load on the global pool would split its files between
    // them (a single file per batch runs on the caller, whatever the pool).
    const THREADS: usize = 2;
    rayon::ThreadPoolBuilder::new().num_threads(THREADS).build_global().expect("global pool");
    let (holding, held) = mpsc::channel::<()>();
    let (answer, answered) = mpsc::channel::<bool>();
    let releases: Vec<mpsc::Sender<()>> = (0..THREADS)
        .map(|_| {
            let (release, released) = mpsc::channel::<()>();
            let (holding, answer) = (holding.clone(), answer.clone());
            rayon::spawn(move || {
                holding.send(()).expect("holding");
                answer.send(released.recv_timeout(HOLD).is_ok()).expect("answer");
            });
            release
        })
        .collect();
    for _ in 0..THREADS {
        held.recv().expect("a thread of the global pool is held");
    }

    // Files of many rules, whose rules are compiled in parallel too.
    let sources: Vec<(String, String)> = (0..8)
        .map(|f| {
            let rules = (0..50).map(|r| format!("[[rule]]\nid = 'r{f}-{r}'\nquery = 'slack{r} OR zoom'\n"));
            (format!("rules/{f}.toml"), rules.collect())
        })
        .collect();
    let loaded = cull_rules::load_files(
        sources.iter().map(|(path, text)| (Path::new(path.as_str()), text.as_bytes())),
    );
    for release in releases {
        // A holder that timed out has gone: the assertion below says so.
        let _ = release.send(());
    }

    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.rules.len(), 8 * 50, "every rule compiled");
    assert!(
        answered.iter().take(THREADS).all(|released| released),
        "the load waited for the global pool's threads: rule files compile on the pool matching runs on"
    );
}
