//! `make bench-views`: what `kubectl get myprojects` costs. Two parts, one run:
//!
//! 1. In process: the views index of N projects (3 memberships each, 100 customers) built from
//!    scratch and updated after one project changed, the bytes each holds (counted by the
//!    allocator; the second shares the first's entries and maps), and
//!    what filtering it for one requester costs.
//! 2. Through kube-apiserver: a fresh local control plane and the release operator; N projects
//!    created (20 in flight) and reconciled; a user with memberships in 5 of them lists
//!    `myprojects` 300 times (as JSON and as kubectl's Table): p50 and p99 as the client sees
//!    them; staff list all N; the operator's resident memory with the views on and off.
//!
//! `BENCH_PROJECTS` (default 10000) sets N. The figures are printed as one table and written
//! to `target/bench/views.json`.

#[path = "../tests/e2e/support.rs"]
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use tenancy_operator::api::{Customer, Project, ProjectMembership};
use tenancy_operator::desired::access::Requester;
use tenancy_operator::views::{Changed, Dirty, Index, Sources, Viewer};

/// Counts the bytes the process holds, to weigh the index.
#[path = "common/counting.rs"]
mod counting;

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

const CUSTOMERS: usize = 100;

fn customer_name(i: usize) -> String {
    format!("bench-c{:03}", i % CUSTOMERS)
}

fn project_name(i: usize) -> String {
    format!("bench-p{i:05}")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Part 1: the index alone.
fn in_process(n: usize) -> Value {
    let customers: Vec<Arc<Customer>> = (0..CUSTOMERS)
        .map(|i| {
            Arc::new(obj(
                json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Customer",
                "metadata": {"name": customer_name(i), "resourceVersion": "1"},
                "spec": {"owners": [{"kind": "User", "name": format!("owner-{i}")}]}}),
            ))
        })
        .collect();
    let projects: Vec<Arc<Project>> = (0..n)
        .map(|i| {
            Arc::new(obj(json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
                "metadata": {"name": project_name(i), "uid": format!("u{i}"), "resourceVersion": "2",
                    "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"customer": customer_name(i), "displayName": format!("Project {i}")},
                "status": {"phase": "Active", "namespace": project_name(i)}})))
        })
        .collect();
    let namespaces: Vec<Arc<k8s_openapi::api::core::v1::Namespace>> = (0..n)
        .map(|i| {
            Arc::new(obj(json!({"metadata": {"name": project_name(i), "resourceVersion": "3",
                "labels": {"app.kubernetes.io/managed-by": "tenancy-operator",
                    "tenancy.dev/project": project_name(i), "tenancy.dev/project-uid": format!("u{i}"),
                    "tenancy.dev/state": "active", "tenancy.dev/customer": customer_name(i)}}})))
        })
        .collect();
    let memberships: Vec<Arc<ProjectMembership>> = (0..n)
        .flat_map(|i| {
            (0..3).map(move |k| {
                let user = if i % 2000 == 0 && k == 0 {
                    "bench-user".to_string()
                } else {
                    format!("user-{}", (i * 3 + k) % 5000)
                };
                let role = ["Manager", "Administrator", "Member"][k];
                Arc::new(obj(json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
                    "metadata": {"name": format!("m{k}"), "namespace": project_name(i), "resourceVersion": "4",
                        "creationTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": {"subject": {"kind": "User", "name": user},
                        "role": role}})))
            })
        })
        .collect();
    let no = |_: &str| false;
    let src = Sources {
        projects: &projects,
        customers: &customers,
        memberships: &memberships,
        namespaces: &namespaces,
        usages: &[],
        is_project_namespace: &no,
    };
    let now = Timestamp::now();
    let before = counting::held();
    let t = Instant::now();
    let index = Index::build(&src, 1, now, None);
    let full = t.elapsed();
    let bytes = counting::held() - before;
    let mut changed = projects.clone();
    changed[n / 2] = Arc::new(obj(
        json!({"apiVersion": "tenancy.dev/v1alpha1", "kind": "Project",
        "metadata": {"name": project_name(n / 2), "uid": "x", "resourceVersion": "9"},
        "spec": {"customer": customer_name(n / 2)}, "status": {"phase": "Finished"}}),
    ));
    let lookup = Sources {
        projects: &changed,
        ..src
    }
    .by_name();
    let mut dirty = Dirty::default();
    dirty.add(Changed::Project(project_name(n / 2)));
    let before_rebuild = counting::held();
    let t = Instant::now();
    let rebuilt = index.update(&lookup, &dirty, 2, now);
    let rebuild = t.elapsed();
    let extra = counting::held() - before_rebuild;
    let user = Viewer {
        requester: Requester {
            username: "bench-user".into(),
            groups: vec!["system:authenticated".into()],
        },
        staff: false,
    };
    let t = Instant::now();
    let rounds = 2000;
    let mut seen = 0;
    for _ in 0..rounds {
        seen = rebuilt.projects_for(&user, false, true, now).len();
    }
    let per_user = t.elapsed() / rounds;
    let staff = Viewer {
        staff: true,
        ..user.clone()
    };
    let t = Instant::now();
    let all = rebuilt.projects_for(&staff, false, true, now).len();
    let per_staff = t.elapsed();
    json!({
        "projects": n, "memberships": memberships.len(), "customers": CUSTOMERS,
        "full_build_ms": full.as_secs_f64() * 1000.0,
        "update_after_one_change_ms": rebuild.as_secs_f64() * 1000.0,
        "index_mib": bytes as f64 / 1048576.0,
        "updated_index_extra_mib": extra as f64 / 1048576.0,
        "user_projects": seen,
        "user_filter_us": per_user.as_secs_f64() * 1e6,
        "staff_projects": all,
        "staff_filter_ms": per_staff.as_secs_f64() * 1000.0,
    })
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn list(client: &kube::Client, query: &str, table: bool) -> Result<Value, String> {
    let mut req = http::Request::get(format!(
        "/apis/views.tenancy.dev/v1alpha1/myprojects{query}"
    ));
    if table {
        req = req.header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        );
    }
    let text = client
        .request_text(req.body(Vec::new()).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn count(v: &Value) -> usize {
    v["items"]
        .as_array()
        .or(v["rows"].as_array())
        .map(Vec::len)
        .unwrap_or(0)
}

async fn timed(
    client: &kube::Client,
    query: &str,
    table: bool,
    rounds: usize,
) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(rounds);
    let mut seen = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        seen = list(client, query, table)
            .await
            .map(|v| count(&v))
            .unwrap_or(0);
        times.push(t.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), seen)
}

/// Part 2: through kube-apiserver.
fn through_apiserver(n: usize) -> Result<Value, String> {
    let env = support::Env::start()?;
    let args = env.local().run_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = support::start_operator(env.cluster(), &args)?;
    let pid = operator.pid();
    let admin = env.block_on(env.client());
    let started = Instant::now();
    env.block_on(async {
        let customers: Api<Customer> = Api::all(admin.clone());
        for i in 0..CUSTOMERS {
            customers
                .create(
                    &PostParams::default(),
                    &support::customer(&customer_name(i), json!({})),
                )
                .await
                .map_err(|e| format!("customer {i}: {e}"))?;
        }
        let projects: Api<Project> = Api::all(admin.clone());
        let results: Vec<Result<(), String>> = futures::stream::iter(0..n)
            .map(|i| {
                let projects = projects.clone();
                async move {
                    let p =
                        support::project(&project_name(i), json!({"customer": customer_name(i)}));
                    for _ in 0..20 {
                        match projects.create(&PostParams::default(), &p).await {
                            Ok(_) => return Ok(()),
                            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                        }
                    }
                    Err(format!("project {i} could not be created"))
                }
            })
            .buffer_unordered(20)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, String>>()?;
        Ok::<(), String>(())
    })?;
    let created = started.elapsed();
    eprintln!(
        "[bench] {n} projects created in {:.1}s",
        created.as_secs_f64()
    );
    // The user's 5 projects.
    env.block_on(async {
        for k in 0..5 {
            let p = project_name(k * (n / 5));
            let api: Api<ProjectMembership> = Api::namespaced(admin.clone(), &p);
            let m: ProjectMembership = support::from_json(json!({
                "apiVersion": "tenancy.dev/v1alpha1", "kind": "ProjectMembership",
                "metadata": {"name": "bench-user"},
                "spec": {"subject": {"kind": "User", "name": "bench-user"}, "role": "Member"}}));
            support::wait_for(
                &format!("membership in {p}"),
                Duration::from_secs(1800),
                || {
                    let (api, m) = (api.clone(), m.clone());
                    async move {
                        match api.create(&PostParams::default(), &m).await {
                            Ok(_) => Some(()),
                            Err(kube::Error::Api(e)) if e.code == 409 => Some(()),
                            Err(_) => None,
                        }
                    }
                },
            )
            .await
            .map_err(|e| format!("{e:?}"))?;
        }
        Ok::<(), String>(())
    })?;
    let user_config = env
        .cluster()
        .kubeconfig_for("bench-user", &[])
        .map_err(|e| e.to_string())?;
    let user = env.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&user_config).map_err(|e| e.to_string())?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| e.to_string())?;
        kube::Client::try_from(cfg).map_err(|e| e.to_string())
    })?;
    // Everything reconciled: all N Active, the user's 5 visible.
    let settled = env.block_on(support::wait_for(
        "every project Active and the user's 5 visible",
        Duration::from_secs(3600),
        || {
            let (admin, user) = (admin.clone(), user.clone());
            async move {
                let all = list(&admin, "?fieldSelector=status.phase%3DActive", false)
                    .await
                    .ok()?;
                let mine = list(&user, "", false).await.ok()?;
                (count(&all) >= n && count(&mine) == 5).then_some(())
            }
        },
    ));
    settled.map_err(|e| format!("{e:?}"))?;
    let ready = started.elapsed();
    eprintln!("[bench] all Active in {:.1}s", ready.as_secs_f64());
    std::thread::sleep(Duration::from_secs(20));
    let (json_p50, json_p99, seen) = env.block_on(timed(&user, "", false, 300));
    let (table_p50, table_p99, _) = env.block_on(timed(&user, "", true, 300));
    let (filtered_p50, filtered_p99, _) = env.block_on(timed(
        &user,
        "?fieldSelector=access.canManage%3Dfalse%2Cstatus.finished%3Dfalse",
        true,
        300,
    ));
    let (staff_p50, staff_p99, staff_seen) = env.block_on(timed(&admin, "", false, 10));
    let rss_settled = rss_mib(pid);
    // The views' own memory: the same cluster, a fresh operator with and without them.
    operator.stop();
    let with = support::start_operator(env.cluster(), &args)?;
    std::thread::sleep(Duration::from_secs(60));
    let rss_with = rss_mib(with.pid());
    with.stop();
    let mut no_views = args.clone();
    no_views.push("--no-views");
    let without = support::start_operator(env.cluster(), &no_views)?;
    std::thread::sleep(Duration::from_secs(60));
    let rss_without = rss_mib(without.pid());
    without.stop();
    env.shutdown();
    Ok(json!({
        "projects": n,
        "created_s": created.as_secs_f64(),
        "all_active_s": ready.as_secs_f64(),
        "user_projects": seen,
        "user_list_json_p50_ms": json_p50, "user_list_json_p99_ms": json_p99,
        "user_list_table_p50_ms": table_p50, "user_list_table_p99_ms": table_p99,
        "user_list_filtered_p50_ms": filtered_p50, "user_list_filtered_p99_ms": filtered_p99,
        "staff_list_all_p50_ms": staff_p50, "staff_list_all_p99_ms": staff_p99,
        "staff_projects": staff_seen,
        "operator_rss_settled_mib": rss_settled,
        "operator_rss_fresh_with_views_mib": rss_with,
        "operator_rss_fresh_without_views_mib": rss_without,
    }))
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let n: usize = std::env::var("BENCH_PROJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let pure = in_process(n);
    eprintln!("[bench] in process: {pure}");
    let served = match through_apiserver(n) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("[bench] through kube-apiserver failed: {e}");
            std::process::exit(1);
        }
    };
    let report = json!({"in_process": pure, "through_kube_apiserver": served});
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("views.json"),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    println!("\nviews.tenancy.dev, {n} projects (release build)\n");
    println!("| measure | value |\n|---|---|");
    for part in ["in_process", "through_kube_apiserver"] {
        if let Some(map) = report[part].as_object() {
            for (k, v) in map {
                let v = v
                    .as_f64()
                    .map(|f| format!("{f:.2}"))
                    .unwrap_or_else(|| v.to_string());
                println!("| {part}.{k} | {v} |");
            }
        }
    }
    println!("\nwritten to {}", dir.join("views.json").display());
}
