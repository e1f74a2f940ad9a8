//! `make bench-caches`: what a project's own objects cost the operator's watch caches, in
//! process, with no control plane. N copies (`BENCH_PROJECTS`, default 10000) of a project of
//! `make bench` with its 3 memberships and its namespace, as kube-apiserver returned them
//! (`benches/fixtures/bench-project.json`; each copy named apart, its times moved), are kept
//! whole in kube's `Store` (how the operator kept them before) and as compressed JSON in a
//! `watch::Compact` cache (how it keeps them now), both after `watch::slim`. It prints the bytes
//! held per object each way (counted by the allocator: sizes asked for, the allocator's own
//! overhead on top), the JSON's own length, what a handle per object (name and namespace,
//! kube's `PartialObjectMeta`) costs in a `Store` of its own (what a controller over a compact
//! kind keeps, `controller::handle`), and what reading one back costs, as one table, and writes
//! `target/bench/caches.json`.

#[path = "common/counting.rs"]
mod counting;

use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenancy_operator::api::{Project, ProjectMembership};
use tenancy_operator::watch::{Compact, slim};

/// The fixture's project, whose name its memberships, namespace and labels repeat.
const FIXTURE_PROJECT: &str = "bench-p00000";

/// The start of every time in the fixture (its objects were written within four seconds).
const FIXTURE_MINUTE: &str = "2026-12-07T19:40:0";

/// The fixture's objects for copy `i`: renamed, each with its own uid and resourceVersion, and
/// its times moved to when a run writing three projects a second would have written it (what
/// sets objects apart is what a compressed cache pays for).
fn copy(template: &str, i: usize) -> Value {
    let t = i / 3;
    let minute = format!(
        "2026-12-07T{:02}:{:02}:{}",
        (10 + t / 3600) % 24,
        (t / 60) % 60,
        (t % 60) / 10
    );
    let text = template
        .replace(FIXTURE_PROJECT, &format!("bench-p{i:05}"))
        .replace(FIXTURE_MINUTE, &minute);
    let mut v: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let mut n = 0;
    let mut stamp = |o: &mut Value| {
        n += 1;
        o["metadata"]["uid"] = json!(format!("{i:08x}-0000-4000-8000-{n:012x}"));
        o["metadata"]["resourceVersion"] = json!((1_000_000 + i * 8 + n).to_string());
    };
    stamp(&mut v["project"]);
    stamp(&mut v["namespace"]);
    for m in v["memberships"].as_array_mut().expect("memberships") {
        stamp(m);
    }
    v
}

/// One kind kept both ways: bytes held per object in kube's store and as JSON, and the mean
/// time to read one back from the JSON.
fn weigh<K>(objects: &[Value]) -> Value
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let decode = |v: &Value| {
        let mut o: K = serde_json::from_value(v.clone()).expect("fixture fits the kind");
        slim(&mut o);
        o
    };
    let n = objects.len() as i64;

    let before = counting::held();
    let (store, mut writer) = reflector::store::<K>();
    writer.apply_watcher_event(&Event::Init);
    for v in objects {
        writer.apply_watcher_event(&Event::InitApply(decode(v)));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let whole = (counting::held() - before) / n;
    assert_eq!(store.state().len(), objects.len());
    drop((store, writer));

    let before = counting::held();
    let (cache, mut writer) = Compact::<K>::new();
    let _ = writer.apply(Event::Init).count();
    for v in objects {
        let _ = writer.apply(Event::InitApply(decode(v))).count();
    }
    // Tells every object listed, read back one at a time; nothing of that is kept.
    let _ = writer.apply(Event::InitDone).count();
    let as_json = (counting::held() - before) / n;
    let text = objects
        .iter()
        .map(|v| serde_json::to_vec(&decode(v)).map_or(0, |j| j.len()))
        .sum::<usize>() as i64
        / n;

    // What a controller runtime over the JSON would also keep: a handle per object (its name
    // and namespace, kube's `PartialObjectMeta`) in a `Store`, as kube's `Controller` needs.
    let before = counting::held();
    let (handles, mut writer) = reflector::store::<PartialObjectMeta<K>>();
    writer.apply_watcher_event(&Event::Init);
    for v in objects {
        let meta = &v["metadata"];
        writer.apply_watcher_event(&Event::InitApply(PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: meta["name"].as_str().map(String::from),
                namespace: meta["namespace"].as_str().map(String::from),
                ..Default::default()
            },
            _phantom: std::marker::PhantomData,
        }));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let handle = (counting::held() - before) / n;
    drop((handles, writer));

    let refs: Vec<ObjectRef<K>> = objects
        .iter()
        .map(|v| {
            let r = ObjectRef::new(v["metadata"]["name"].as_str().unwrap_or_default());
            match v["metadata"]["namespace"].as_str() {
                Some(ns) => r.within(ns),
                None => r,
            }
        })
        .collect();
    let started = Instant::now();
    let read = refs.iter().filter(|r| cache.get(r).is_some()).count();
    let per_read = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    assert_eq!(read, objects.len(), "every object reads back");
    json!({
        "objects": objects.len(),
        "whole_bytes_per_object": whole,
        "json_bytes_per_object": as_json,
        "json_text_bytes_per_object": text,
        "handle_bytes_per_object": handle,
        "json_read_us_per_object": per_read,
    })
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let n: usize = std::env::var("BENCH_PROJECTS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(10_000);
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/fixtures/bench-project.json");
    let template = std::fs::read_to_string(&fixture).expect("benches/fixtures/bench-project.json");
    let copies: Vec<Value> = (0..n).map(|i| copy(&template, i)).collect();
    let projects: Vec<Value> = copies.iter().map(|c| c["project"].clone()).collect();
    let namespaces: Vec<Value> = copies.iter().map(|c| c["namespace"].clone()).collect();
    let memberships: Vec<Value> = copies
        .iter()
        .flat_map(|c| c["memberships"].as_array().cloned().unwrap_or_default())
        .collect();
    drop(copies);
    let per_project = memberships.len() as f64 / n as f64;

    let kinds = [
        ("Project", weigh::<Project>(&projects), 1.0),
        (
            "ProjectMembership",
            weigh::<ProjectMembership>(&memberships),
            per_project,
        ),
        ("Namespace", weigh::<Namespace>(&namespaces), 1.0),
    ];
    let total = |key: &str| -> f64 {
        kinds
            .iter()
            .map(|(_, v, each)| v[key].as_f64().unwrap_or(0.0) * each)
            .sum()
    };
    let (whole, as_json, text, handle, read) = (
        total("whole_bytes_per_object"),
        total("json_bytes_per_object"),
        total("json_text_bytes_per_object"),
        total("handle_bytes_per_object"),
        total("json_read_us_per_object"),
    );
    let mib = |bytes_per_project: f64| bytes_per_project * n as f64 / 1048576.0;
    let report = json!({
        "projects": n,
        "kinds": kinds.iter().map(|(k, v, _)| (k.to_string(), v.clone())).collect::<serde_json::Map<_, _>>(),
        "whole_bytes_per_project": whole,
        "json_bytes_per_project": as_json,
        "whole_mib": mib(whole),
        "json_mib": mib(as_json),
        "json_text_bytes_per_project": text,
        "handle_bytes_per_project": handle,
        "handle_mib": mib(handle),
        "json_read_us_per_project": read,
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/caches.json");
    let written = std::fs::create_dir_all(path.parent().unwrap_or(&path)).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
    });
    println!("\na project's own objects in the watch caches, {n} projects (release build)\n");
    println!(
        "| kind (per project) | whole in kube's Store (B each) | in a Compact cache, compressed JSON (B each) | its JSON's length (B each) | a handle in a Store (B each) | read back from the Compact cache (µs each) |"
    );
    println!("|---|---|---|---|---|---|");
    for (kind, v, each) in &kinds {
        println!(
            "| {kind} ({each}) | {} | {} | {} | {} | {:.1} |",
            v["whole_bytes_per_object"],
            v["json_bytes_per_object"],
            v["json_text_bytes_per_object"],
            v["handle_bytes_per_object"],
            v["json_read_us_per_object"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "| a project with them | {:.0} B ({:.0} MiB for {n}) | {:.0} B ({:.0} MiB) | {:.0} B | {:.0} B ({:.0} MiB) | {:.1} |",
        whole,
        mib(whole),
        as_json,
        mib(as_json),
        text,
        handle,
        mib(handle),
        read
    );
    match written {
        Ok(()) => println!("\nwritten to {}", path.display()),
        Err(e) => eprintln!("\n{} not written: {e}", path.display()),
    }
}
