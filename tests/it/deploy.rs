//! The deployment kit (deploy/): the rendered Kubernetes manifests run, one process per pod;
//! every metric the dashboards and alert rules name is exposed from the start and moves when its
//! event happens; traces of Kiln's own requests reach an OTLP receiver.

use std::path::Path;
use std::process::Command;

use kiln_testkit::emulators::{Moto, TraceSink};
use kiln_testkit::workspace_dir;
use serde::Deserialize;
use serde_json::Value;

use crate::support::certs::{authority, issue_for};
use crate::support::{
    KilnCommand, KilnServer, UNTIL_SECONDS, cpu_profile, kiln, post_proto, push_request,
    stored_total, wait_for_metric,
};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Runs tests/kubernetes/check_metrics_named.py on the `/metrics` of `servers`: the names the
/// dashboards and alert rules use that none of them exposes.
async fn names_not_exposed(servers: &[&KilnServer], dir: &Path) -> String {
    let mut files = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let text = server.metrics_text().await.unwrap();
        let file = dir.join(format!("metrics-{i}.txt"));
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    let output = Command::new("python3")
        .arg(workspace_dir().join("tests/kubernetes/check_metrics_named.py"))
        .args(&files)
        .arg("--root")
        .arg(workspace_dir())
        .output()
        .expect("python3 runs");
    let missing = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.success(),
        missing.trim().is_empty(),
        "check_metrics_named.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_alerts_name_is_exposed_before_and_after_use() {
    let server = kiln().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Before any push or query: every labelled family is listed already.
    assert_eq!(names_not_exposed(&[&server], dir.path()).await, "");

    let profile = cpu_profile();
    let _: kiln_proto::push::v1::PushResponse = post_proto(
        &server,
        "/push.v1.PusherService/Push",
        &push_request(&[("service_name", "deploy")], &profile, ""),
    )
    .await;
    assert!(stored_total(&server, CPU, "deploy").await > 0);
    let render = format!(
        "/pyroscope/render?query={CPU}{{service_name=\"deploy\"}}&from=0&until={UNTIL_SECONDS}"
    );
    assert_eq!(
        reqwest::get(server.url(&render)).await.unwrap().status(),
        200
    );

    // The push was acknowledged once stored: one answer timed, one object put at least.
    let pushes = r#"kiln_distributor_request_duration_seconds_count{protocol="push"}"#;
    assert_eq!(server.metric(pushes).await.unwrap(), 1.0);
    let puts = r#"kiln_objstore_requests_total{operation="put"}"#;
    assert!(server.metric(puts).await.unwrap() >= 1.0);
    for endpoint in ["SelectMergeStacktraces", "render"] {
        let series =
            format!(r#"kiln_querier_request_duration_seconds_count{{endpoint="{endpoint}"}}"#);
        assert_eq!(server.metric(&series).await.unwrap(), 1.0, "{series}");
    }
    // The gauges of Raft are refreshed every few seconds.
    wait_for_metric(&server, "kiln_metastore_is_leader", 1.0).await;
    assert!(server.metric("kiln_metastore_term").await.unwrap() >= 1.0);
    assert!(
        server
            .metric("kiln_metastore_write_duration_seconds_count")
            .await
            .unwrap()
            >= 1.0
    );
    assert_eq!(names_not_exposed(&[&server], dir.path()).await, "");
}

/// One span as tests/otlp/trace_sink.py writes it.
#[derive(Debug)]
struct ExportedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    /// The `kiln.target` of the process that sent it.
    target: String,
    /// Its `path` attribute (request spans).
    path: String,
}

/// The spans `sink` has received so far.
fn exported_spans(sink: &TraceSink) -> Vec<ExportedSpan> {
    sink.spans()
        .iter()
        .map(|line| {
            let span: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
            ExportedSpan {
                trace_id: text(&span["trace_id"]),
                span_id: text(&span["span_id"]),
                parent_span_id: text(&span["parent_span_id"]),
                name: text(&span["name"]),
                target: text(&span["target"]),
                path: text(&span["attributes"]["path"]),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_one_trace_from_the_distributor_to_object_storage_and_the_metastore() {
    let dir = tempfile::tempdir().unwrap();
    let sink = TraceSink::start(&dir.path().join("spans.jsonl"))
        .await
        .unwrap();
    let endpoint = format!("--tracing.otlp-endpoint={}", sink.endpoint());
    // Export each batch of spans after 100 ms rather than the default 5 s.
    let command = kiln().arg(&endpoint).env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let cluster = kiln_testkit::cluster::Cluster::builder(&command)
        .metastores(1, kiln_testkit::cluster::Network::Direct, &[])
        .ingesters(1, &["--ingester.flush-interval=100ms"])
        .distributors(1, &[])
        .start()
        .await
        .unwrap();
    crate::cluster::wait_for_ingesters(&cluster, 1).await;
    let _: kiln_proto::push::v1::PushResponse = post_proto(
        &cluster.distributors[0],
        "/push.v1.PusherService/Push",
        &push_request(&[("service_name", "traced")], &cpu_profile(), ""),
    )
    .await;

    // The push's trace: the distributor's store, the ingester's push, its flush's upload and
    // registration, and the metastore's AddBlocks, each in its own process.
    let wanted = |spans: &[ExportedSpan]| -> Option<String> {
        let store = spans.iter().find(|s| s.name == "distributor.store")?;
        let in_trace = |name: &str, target: &str| {
            spans
                .iter()
                .any(|s| s.trace_id == store.trace_id && s.name == name && s.target == target)
        };
        let add_blocks = spans.iter().any(|s| {
            s.trace_id == store.trace_id
                && s.target == "metastore"
                && s.path.ends_with("/AddBlocks")
        });
        (store.target == "distributor"
            && in_trace("ingester.push", "ingester")
            && in_trace("ingester.flush", "ingester")
            && in_trace("ingester.upload", "ingester")
            && in_trace("objstore", "ingester")
            && in_trace("ingester.register", "ingester")
            && add_blocks)
            .then(|| store.trace_id.clone())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let trace_id = loop {
        let spans = exported_spans(&sink);
        if let Some(trace_id) = wanted(&spans) {
            break trace_id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the push's trace never reached the sink: {spans:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // Every span of the trace but its root has its parent in the trace.
    let spans = exported_spans(&sink);
    let trace: Vec<&ExportedSpan> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let roots: Vec<&&ExportedSpan> = trace
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "{trace:#?}");
    assert_eq!(roots[0].target, "distributor", "{trace:#?}");
    for span in &trace {
        assert!(
            span.parent_span_id.is_empty()
                || trace.iter().any(|p| p.span_id == span.parent_span_id),
            "{span:?} has no parent in {trace:#?}"
        );
    }
}

/// The objects `kubectl kustomize` renders of `overlay` (under deploy/kubernetes/overlays).
fn render(overlay: &str) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(
            workspace_dir()
                .join("deploy/kubernetes/overlays")
                .join(overlay),
        )
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap())
        .filter(|object| !object.is_null())
        .collect()
}

/// One pod of a rendered workload, as this test runs it: a process on its own loopback address.
struct Pod<'a> {
    name: String,
    ip: String,
    workload: &'a Value,
}

/// The pods of `objects`' StatefulSets and Deployments: `spec.replicas`, or the minimum of the
/// HorizontalPodAutoscaler that scales the workload; one loopback address each from 127.0.9.10.
fn pods(objects: &[Value]) -> Vec<Pod<'_>> {
    let minimum = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| {
                o["kind"] == "HorizontalPodAutoscaler"
                    && o["spec"]["scaleTargetRef"]["kind"] == kind
                    && o["spec"]["scaleTargetRef"]["name"] == name
            })
            .and_then(|hpa| hpa["spec"]["minReplicas"].as_u64())
    };
    let mut pods = Vec::new();
    for workload in objects
        .iter()
        .filter(|o| o["kind"] == "StatefulSet" || o["kind"] == "Deployment")
    {
        let kind = workload["kind"].as_str().unwrap();
        let name = workload["metadata"]["name"].as_str().unwrap();
        let replicas = workload["spec"]["replicas"]
            .as_u64()
            .or_else(|| minimum(kind, name))
            .unwrap_or(1);
        for i in 0..replicas {
            pods.push(Pod {
                name: format!("{name}-{i}"),
                ip: format!("127.0.9.{}", 10 + pods.len()),
                workload,
            });
        }
    }
    pods
}

/// The data of the ConfigMap `name` (or of the ConfigMap that name was generated from).
fn config_map<'a>(objects: &'a [Value], name: &str) -> &'a serde_json::Map<String, Value> {
    objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
        .and_then(|o| o["data"].as_object())
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_microservices_overlay_runs_one_process_per_pod() {
    let objects = render("microservices");
    let pods = pods(&objects);
    let namespace = pods[0].workload["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();

    // What cannot exist here. Each pod's DNS names (StatefulSet pods, through their headless
    // Service) become its loopback address, and the cluster certificate names those addresses.
    let mut names: Vec<(String, String)> = Vec::new();
    for pod in &pods {
        if let Some(service) = pod.workload["spec"]["serviceName"].as_str() {
            let short = format!("{}.{service}", pod.name);
            names.push((format!("{short}.{namespace}.svc"), pod.ip.clone()));
            names.push((short, pod.ip.clone()));
        }
    }
    let ca = authority(dir.path(), "kiln-cluster-ca");
    let sans: Vec<String> = pods.iter().map(|p| format!("IP:{}", p.ip)).collect();
    let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
    let member = issue_for(dir.path(), "kiln-member", &ca, &sans);
    let cluster_tls = [
        ("ca.crt", std::fs::read(&ca.cert).unwrap()),
        ("tls.crt", std::fs::read(&member.cert).unwrap()),
        ("tls.key", std::fs::read(&member.key).unwrap()),
    ];
    // The bucket storage.env names, on moto; its endpoint and the test's credentials.
    let storage = config_map(
        &objects,
        pods.iter()
            .find_map(|p| {
                p.workload["spec"]["template"]["spec"]["containers"][0]["envFrom"]
                    .as_array()?
                    .iter()
                    .find_map(|from| from["configMapRef"]["name"].as_str())
            })
            .expect("a container loads the storage settings"),
    );
    let url = storage["KILN_STORAGE"].as_str().unwrap();
    let bucket = url.trim_start_matches("s3://").split('/').next().unwrap();
    let s3 = Moto::start(bucket).await.unwrap();
    let s3_env = [
        ("KILN_STORAGE_S3_ENDPOINT", s3.endpoint().to_string()),
        ("KILN_STORAGE_S3_ALLOW_HTTP", "true".to_string()),
        ("KILN_STORAGE_S3_FORCE_PATH_STYLE", "true".to_string()),
        ("KILN_STORAGE_S3_ACCESS_KEY_ID", "test".to_string()),
        ("KILN_STORAGE_S3_SECRET_ACCESS_KEY", "test".to_string()),
    ];

    let mut commands = Vec::new();
    for pod in &pods {
        let spec = &pod.workload["spec"]["template"]["spec"];
        let containers = spec["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{}: one container", pod.name);
        let container = &containers[0];
        let root = dir.path().join(&pod.name);
        // Mounts: each path under the pod's own folder.
        let mut mounts: Vec<(String, String)> = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let path = m["mountPath"].as_str().unwrap().to_string();
                let here = format!("{}{path}", root.display());
                (path, here)
            })
            .collect();
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let fields = [
            ("metadata.name", pod.name.clone()),
            ("metadata.namespace", namespace.clone()),
            ("status.podIP", pod.ip.clone()),
        ];
        let local = |text: &str| {
            let mut text = text.replace("0.0.0.0", &pod.ip);
            for (name, ip) in &names {
                text = text.replace(name.as_str(), ip);
            }
            for (path, here) in &mounts {
                text = text.replace(path.as_str(), here);
            }
            text
        };
        for mount in container["volumeMounts"].as_array().unwrap() {
            let here = root.join(mount["mountPath"].as_str().unwrap().trim_start_matches('/'));
            std::fs::create_dir_all(&here).unwrap();
            let volume = spec["volumes"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]));
            match volume {
                Some(v) if v["configMap"].is_object() => {
                    let data = config_map(&objects, v["configMap"]["name"].as_str().unwrap());
                    for (key, value) in data {
                        std::fs::write(here.join(key), local(value.as_str().unwrap())).unwrap();
                    }
                }
                Some(v) if v["secret"]["secretName"] == "kiln-cluster-tls" => {
                    for (key, bytes) in &cluster_tls {
                        std::fs::write(here.join(key), bytes).unwrap();
                    }
                }
                // emptyDir, or a volume claim template: an empty folder.
                _ => {}
            }
        }
        let mut env: Vec<(String, String)> = Vec::new();
        for var in container["env"].as_array().into_iter().flatten() {
            let path = var["valueFrom"]["fieldRef"]["fieldPath"].as_str();
            let value = match path {
                Some(path) => fields.iter().find(|(f, _)| *f == path).unwrap().1.clone(),
                None => local(var["value"].as_str().unwrap()),
            };
            env.push((var["name"].as_str().unwrap().to_string(), value));
        }
        for from in container["envFrom"].as_array().into_iter().flatten() {
            if let Some(name) = from["configMapRef"]["name"].as_str() {
                for (key, value) in config_map(&objects, name) {
                    env.push((key.clone(), local(value.as_str().unwrap())));
                }
                env.extend(s3_env.iter().map(|(k, v)| (k.to_string(), v.clone())));
            }
        }
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|arg| {
                let mut arg = arg.as_str().unwrap().to_string();
                for (name, value) in &env {
                    arg = arg.replace(&format!("$({name})"), value);
                }
                local(&arg)
            })
            .collect();
        assert!(
            args.iter().any(|a| a.starts_with("--target=")),
            "{}: {args:?}",
            pod.name
        );
        let mut command =
            KilnCommand::exact(env!("CARGO_BIN_EXE_kiln"), &root, &args).env("PATH", "/usr/bin");
        for (key, value) in &env {
            command = command.env(key, value);
        }
        commands.push((pod, command));
    }

    // Every pod at once (the metastore's pods start in parallel and are ready with a quorum).
    let servers: Vec<(&Pod<'_>, KilnServer)> = commands
        .iter()
        .map(|(pod, command)| (*pod, command.spawn().unwrap()))
        .collect();
    for (pod, server) in &servers {
        assert!(server.http_addr().starts_with(&pod.ip), "{}", pod.name);
        server.wait_ready().await.unwrap();
    }
    let role = |role: &str| -> Vec<&KilnServer> {
        let workload = format!("kiln-{role}");
        servers
            .iter()
            .filter(|(pod, _)| pod.workload["metadata"]["name"] == workload.as_str())
            .map(|(_, server)| server)
            .collect()
    };

    // A push through a distributor, acknowledged once stored and registered.
    let profile = cpu_profile();
    let expected = crate::support::input_totals(&crate::support::decode(&profile))[CPU];
    let distributor = role("distributor")[0];
    // A distributor is ready before its view of the ingesters (refreshed from the metastore's
    // membership) holds one: until then it answers 503 with nothing stored, which clients
    // retry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let push = reqwest::Client::new()
            .post(distributor.url("/ingest?name=rendered&format=pprof"))
            .body(profile.clone())
            .send()
            .await
            .unwrap();
        let status = push.status();
        let body = push.text().await.unwrap();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("no live ingester is known"), "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "the distributor never saw an ingester"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Every querier answers it whole (they share the parts of the query).
    let queriers = role("querier");
    assert!(!queriers.is_empty());
    for querier in &queriers {
        assert_eq!(stored_total(querier, CPU, "rendered").await, expected);
    }
    // The roles that own each metric of the dashboards and alerts expose it.
    let all: Vec<&KilnServer> = servers.iter().map(|(_, server)| server).collect();
    assert_eq!(names_not_exposed(&all, dir.path()).await, "");
}

#[test]
fn the_deployment_kit_passes_its_static_checks() {
    // Both overlays against the Kubernetes schemas, every container naming its role, the alert
    // rules through promtool (and their unit tests), the Dockerfile through hadolint.
    let output = Command::new("bash")
        .arg(workspace_dir().join("tests/kubernetes/validate.sh"))
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "tests/kubernetes/validate.sh:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
