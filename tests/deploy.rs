//! The deployment files: every YAML/JSON/TOML file parses, the pipeline files and the
//! rule pack they mount pass `cull config check` / `cull rules check`, every container
//! has health probes, and the metrics the Grafana dashboard queries exist.

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

/// Returns the metric names of a live `cull run` (the demo pipeline, embedded).
fn live_metric_names() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let mut child = cull(
        &["run", "pipelines/local.toml"],
        &[
            ("CULL__INDEX__DIR", &path("index")),
            ("CULL__BUS__EMBEDDED__DIR", &path("bus")),
            ("CULL__SINK__TICKETS__PATH", &path("t.jsonl")),
            ("CULL__SINK__VERDICTS__PATH", &path("v.jsonl")),
            ("CULL__SINK__DEAD_LETTER__PATH", &path("d.jsonl")),
            ("CULL__HTTP__LISTEN", "127.0.0.1:0"),
            ("RUST_LOG", "info"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let address = listening_address(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (_, metrics) = get(&address, "/metrics").unwrap();
        // Tickets come a stage after the per-rule series: wait for both.
        if metrics.contains("cull_rule_mentions_total{") && metrics.contains("cull_tickets_emitted_total{") {
            break metrics;
        }
        assert!(Instant::now() < deadline, "no per-rule or ticket series yet:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).map(str::to_string).collect()
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
    let live = live_metric_names();
    for name in &queried {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|base| live.contains(*base)))
            .unwrap_or(name);
        assert!(
            live.contains(family),
            "the dashboard queries {name}, which /metrics does not have: {live:?}"
        );
    }
}
