//! The deployment files: every YAML/JSON/TOML file parses, the pipeline files and the
//! rule pack they mount pass `cull config check` / `cull rules check`, every container
//! has health probes, the metrics the Grafana dashboard and the alerting rules query
//! exist, the alerting rules pass `promtool` and their unit tests, and no deployment
//! mounts an example secret as a live one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use yaml_rust2::{Yaml, YamlLoader};

use crate::pipeline::{cull, get, listening_address, repo, text};

fn deploy_files() -> Vec<PathBuf> {
    crate::feeds::files_under(&repo().join("deploy"))
}

fn yaml(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a check command and fails with its output unless it succeeds.
fn check(args: &[&str], env: &[(&str, &str)]) {
    let out = cull(args, env).output().unwrap();
    assert!(out.status.success(), "cull {args:?}:\n{}{}", text(&out.stdout), text(&out.stderr));
}

/// Returns the metric names of a live `cull run` of `args` (with `env`), once its
/// `/metrics` has a series of each family of `wanted`: most series exist only once
/// something happened to them.
fn live_metric_names(args: &[&str], env: &[(&str, &str)], wanted: &[&str]) -> BTreeSet<String> {
    let mut child = cull(args, &[env, &[("RUST_LOG", "info")]].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = listening_address(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (_, metrics) = get(&address, "/metrics").unwrap();
        if wanted.iter().all(|family| metrics.contains(&format!("{family}{{"))) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "not every one of {wanted:?} yet:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).map(str::to_string).collect()
}

/// Returns the metric names of a live `cull run` of the demo pipeline (embedded).
fn demo_metric_names() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    live_metric_names(
        &["run", "pipelines/local.toml"],
        &[
            ("CULL__INDEX__DIR", &path("index")),
            ("CULL__BUS__EMBEDDED__DIR", &path("bus")),
            ("CULL__SINK__TICKETS__PATH", &path("t.jsonl")),
            ("CULL__SINK__VERDICTS__PATH", &path("v.jsonl")),
            ("CULL__SINK__DEAD_LETTER__PATH", &path("d.jsonl")),
            ("CULL__HTTP__LISTEN", "127.0.0.1:0"),
        ],
        // Tickets come a stage after the per-rule series: wait for both.
        &["cull_rule_mentions_total", "cull_tickets_emitted_total"],
    )
}

/// Asserts that every metric of `queried` (a histogram's `_bucket`, `_sum` or
/// `_count` by its family) is in `live`.
fn assert_exported(what: &str, queried: &BTreeSet<String>, live: &BTreeSet<String>) {
    for name in queried {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|base| live.contains(*base)))
            .unwrap_or(name);
        assert!(live.contains(family), "{what} queries {name}, which /metrics does not have: {live:?}");
    }
}

#[test]
fn deploy_files_parse_and_what_they_mount_passes_the_checks() {
    let files = deploy_files();
    let mut kinds = BTreeSet::new();
    for file in &files {
        match file.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                assert!(!yaml(file).is_empty(), "{}", file.display());
                kinds.insert("yaml");
            }
            Some("json") => {
                serde_json::from_slice::<serde_json::Value>(&std::fs::read(file).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                kinds.insert("json");
            }
            Some("toml") => {
                toml::from_str::<toml::Table>(&std::fs::read_to_string(file).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                kinds.insert("toml");
            }
            _ => assert_eq!(file.file_name().unwrap(), "Dockerfile", "unexpected file {}", file.display()),
        }
    }
    assert_eq!(kinds.len(), 3);

    // docker compose: every cull service runs a pipeline file of deploy/config (mounted
    // at /etc/cull/config by the image) with the repository's rules mounted.
    let compose = &yaml(&repo().join("deploy/docker-compose.yml"))[0];
    let services = compose["services"].as_hash().unwrap();
    let mut checked = 0;
    for (name, service) in services {
        let Some(command) = service["command"].as_vec() else { continue };
        let args: Vec<&str> = command.iter().filter_map(Yaml::as_str).collect();
        match args.as_slice() {
            ["run", config] => {
                let file = config.replace("/etc/cull/config/", "deploy/config/");
                // The check reads what the service's environment provides (a webhook's
                // secret), as `cull run` does; placeholders stand in for the values.
                let mut env = vec![("CULL__MATCHER__RULES".to_string(), "rules".to_string())];
                if let Some(variables) = service["environment"].as_hash() {
                    env.extend(
                        variables
                            .keys()
                            .filter_map(Yaml::as_str)
                            .map(|k| (k.to_string(), "a-placeholder-value".to_string())),
                    );
                }
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                check(&["config", "check", &file], &env);
                checked += 1;
            }
            ["serve", ..] => assert!(args.contains(&"--tokens"), "{name:?}: the API needs tokens"),
            other => panic!("{name:?}: unexpected command {other:?}"),
        }
    }
    assert_eq!(checked, 3, "ingest, matcher and indexer");
    check(&["rules", "check", "rules"], &[]);

    // Kubernetes: the ConfigMaps hold the same pipeline files, a rule pack that passes
    // `rules check`, and every container has liveness and readiness probes.
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    for document in yaml(&repo().join("deploy/k8s/configmaps.yaml")) {
        let name = document["metadata"]["name"].as_str().unwrap();
        for (file, content) in document["data"].as_hash().unwrap() {
            let (file, content) = (file.as_str().unwrap(), content.as_str().unwrap());
            match name {
                "cull-config" => {
                    let shipped = std::fs::read_to_string(repo().join("deploy/config").join(file)).unwrap();
                    assert_eq!(
                        content, shipped,
                        "deploy/k8s/configmaps.yaml and deploy/config/{file} differ"
                    );
                }
                "cull-rules" => std::fs::write(rules_dir.join(file), content).unwrap(),
                other => panic!("unexpected ConfigMap {other}"),
            }
        }
    }
    check(&["rules", "check", rules_dir.to_str().unwrap()], &[]);
    let mut containers = 0;
    for manifest in ["ingest.yaml", "matcher.yaml", "indexer.yaml"] {
        for document in yaml(&repo().join("deploy/k8s").join(manifest)) {
            if document["kind"].as_str() != Some("Deployment") {
                continue;
            }
            for container in document["spec"]["template"]["spec"]["containers"].as_vec().unwrap() {
                let name = container["name"].as_str().unwrap();
                for probe in ["livenessProbe", "readinessProbe"] {
                    assert!(
                        !container[probe]["httpGet"]["path"].is_badvalue(),
                        "{manifest} {name}: no {probe}"
                    );
                }
                containers += 1;
            }
        }
    }
    assert_eq!(containers, 4, "ingest, matcher, indexer and the API");
    let kustomization = &yaml(&repo().join("deploy/k8s/kustomization.yaml"))[0];
    for resource in kustomization["resources"].as_vec().unwrap() {
        assert!(repo().join("deploy/k8s").join(resource.as_str().unwrap()).is_file(), "{resource:?}");
    }
}

/// A deployment supplies its own secrets: the example tokens and Secrets are never
/// mounted or applied as live ones, the compose file refuses to start without the
/// deployment's tokens file (rather than mount an empty directory in its place), and
/// that file stays out of git and out of the image build.
#[test]
fn deployments_mount_their_own_secrets_never_the_examples() {
    let kustomization = &yaml(&repo().join("deploy/k8s/kustomization.yaml"))[0];
    for resource in kustomization["resources"].as_vec().unwrap() {
        let resource = resource.as_str().unwrap();
        assert!(!resource.contains("example"), "the kustomization applies {resource}");
    }

    let compose = &yaml(&repo().join("deploy/docker-compose.yml"))[0];
    let mut tokens_mounts = 0;
    for (name, service) in compose["services"].as_hash().unwrap() {
        for volume in service["volumes"].as_vec().into_iter().flatten() {
            let source = volume.as_str().map_or_else(
                || volume["source"].as_str().unwrap_or_default(),
                |short| short.split(':').next().unwrap(),
            );
            assert!(!source.contains("example"), "{name:?} mounts {source}");
            if volume["target"].as_str() == Some("/etc/cull/tokens.toml") {
                assert_eq!(source, "./tokens.toml", "{name:?}");
                assert_eq!(volume["type"].as_str(), Some("bind"), "{name:?}");
                assert_eq!(volume["bind"]["create_host_path"].as_bool(), Some(false), "{name:?}");
                tokens_mounts += 1;
            }
        }
    }
    assert_eq!(tokens_mounts, 1, "the API's tokens");

    for ignore in [".gitignore", ".dockerignore"] {
        let text = std::fs::read_to_string(repo().join(ignore)).unwrap();
        assert!(
            text.lines().any(|line| line == "deploy/tokens.toml"),
            "{ignore} does not list deploy/tokens.toml"
        );
    }
}

/// Runs `promtool` with `args` in deploy/prometheus and fails with its output unless it
/// succeeds.
fn promtool(args: &[&str]) {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(repo().join("deploy/prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): scripts/test.sh installs it (Debian package prometheus)")
        });
    assert!(out.status.success(), "promtool {args:?}:\n{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn alerting_rules_pass_promtool_and_their_unit_tests() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
    // The scrape configuration loads them.
    promtool(&["check", "config", "prometheus.yml"]);
}

/// Returns the metric names a PromQL expression selects: its identifiers but the
/// functions and aggregations (followed by `(`, `by` or `without`), the operators'
/// keywords, the labels of `by (…)` and the like, and what is inside `{…}` and `[…]`.
fn selected_metrics(expr: &str) -> BTreeSet<String> {
    let mut plain = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let mut tokens = Vec::new();
    let mut rest = plain.as_str();
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_alphabetic() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            tokens.push(&rest[..end]);
            rest = &rest[end..];
        } else {
            if c == '(' || c == ')' {
                tokens.push(&rest[..1]);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    let mut names = BTreeSet::new();
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" => {
                tokens.by_ref().find(|t| *t == ")");
            }
            "and" | "or" | "unless" | "bool" | "offset" | "(" | ")" => {}
            // A function, or an aggregation (`max by (sink) (…)` too).
            _ if matches!(tokens.peek(), Some(&("(" | "by" | "without"))) => {}
            name => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// Every metric an alert uses is one a running `cull run` exports (with a failing feed,
/// an alert sink and a late ticket, so that those series exist): a renamed metric
/// breaks this test, not the alert, silently, in production. `up` is Prometheus' own.
#[test]
fn the_alerting_rules_use_metrics_that_exist() {
    let rules = &yaml(&repo().join("deploy/prometheus/alerts.yml"))[0];
    let mut used = BTreeSet::new();
    let mut alerts = 0;
    for group in rules["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            let names = selected_metrics(expr);
            assert!(!names.is_empty(), "{expr}");
            used.extend(names);
            alerts += 1;
        }
    }
    assert!(alerts >= 5, "{alerts} alerts");
    assert!(used.remove("up"), "{used:?}");
    for family in [
        "cull_consumer_lag_messages",
        "cull_rules_last_reload_success",
        "cull_dead_letters_total",
        "cull_feed_polls_total",
        "cull_tickets_late_on_arrival_total",
    ] {
        assert!(used.contains(family), "no alert on {family}: {used:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let rules = crate::durability::slack_rules(dir.path());
    std::fs::write(
        dir.path().join("input.jsonl"),
        "{\"schema\":\"cull.mention/v1\",\"id\":\"old\",\"text\":\"Slack is down\",\
         \"published_at\":\"2020-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[matcher]\nrules = \"{rules}\"\nwatch = false\n\
             [bus.embedded]\ndir = \"{dir}/bus\"\n\
             [index]\ndir = \"{dir}/index\"\n\
             [quality]\ndir = \"{dir}/quality\"\n\
             [[source]]\nkind = \"jsonl\"\nname = \"file\"\npath = \"{dir}/input.jsonl\"\n\
             [[source]]\nkind = \"feed\"\nname = \"unreachable\"\nurl = \"http://127.0.0.1:9/feed.xml\"\n\
             [sink.dead_letter]\nkind = \"jsonl\"\npath = \"{dir}/dead-letter.jsonl\"\n\
             [[sink.alert]]\nname = \"crm\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\
             secret_env = \"CULL_TEST_ALERT_SECRET\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            rules = rules.display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let live = live_metric_names(
        &["run", pipeline.to_str().unwrap()],
        &[("CULL_TEST_ALERT_SECRET", "whsec_YS10ZXN0LXNlY3JldC1vZi0zMi1ieXRlcy1sb25nISE=")],
        &[
            "cull_consumer_lag_messages",
            "cull_feed_polls_total",
            "cull_tickets_late_on_arrival_total",
            "cull_alert_circuit_open",
        ],
    );
    assert_exported("deploy/prometheus/alerts.yml", &used, &live);
}

#[test]
fn the_dashboard_queries_metrics_that_exist() {
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("deploy/grafana/dashboards/cull.json")).unwrap())
            .unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("cull_") {
                let name: String =
                    rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[at + name.len()..];
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 8, "{queried:?}");
    assert_exported("the dashboard", &queried, &demo_metric_names());
}
