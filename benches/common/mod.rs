//! What the benches share: reading settings from the environment, telling transient apiserver
//! answers from real ones, the operator's Prometheus metrics, and a process's memory and CPU.

// Each bench uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A positive number from the environment variable `name`, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// What a busy apiserver may answer for a moment: worth another try.
pub fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        _ => true,
    }
}

/// The operator's `/metrics` (Prometheus text).
pub fn operator_metrics(addr: SocketAddr) -> Result<String, String> {
    match crate::support::http_get(addr, "/metrics") {
        Some((200, body)) => Ok(body),
        other => Err(format!("GET /metrics from the operator answered {other:?}")),
    }
}

/// The samples of `metric` (exact name) in a Prometheus text exposition: labels and value. (The
/// e2e suite's parser lives in a module that needs the whole suite.)
pub fn samples(text: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.rsplit_once('}') {
                Some((labels, value)) => (parse_labels(labels), value),
                None => continue,
            },
            // The name must end here (not `metric_sum` for `metric`).
            None if rest.starts_with(' ') => (BTreeMap::new(), rest),
            None => continue,
        };
        if let Some(v) = value.split_whitespace().next().and_then(|v| v.parse().ok()) {
            out.push((labels, v));
        }
    }
    out
}

/// `key="value",...` (values may hold escaped quotes and commas).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches([',', ' ']).to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// `metric` summed by the value of `label`.
pub fn by_label(text: &str, metric: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (labels, v) in samples(text, metric) {
        *out.entry(labels.get(label).cloned().unwrap_or_default())
            .or_default() += v;
    }
    out
}

/// The operator's writes by `verb kind`.
pub fn writes_by_kind(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (l, v) in samples(text, "tenancy_api_writes_total") {
        let label = |k: &str| l.get(k).cloned().unwrap_or_default();
        *out.entry(format!("{} {}", label("verb"), label("kind")))
            .or_default() += v;
    }
    out
}

pub fn total(text: &str, metric: &str) -> f64 {
    samples(text, metric).iter().map(|(_, v)| v).sum()
}

/// `after - before`, per key, leaving out what did not change.
pub fn delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

/// Resident memory of process `pid` in MiB (0 when it is gone).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User and system CPU time the process has used, from `/proc/<pid>/stat` (fields 14 and 15,
/// counted after the command name, which may hold spaces).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ticks: f64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0);
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks / per_second.max(1) as f64
}

/// Writes `report` as pretty JSON to `target/bench/<file>`: the path, and whether it was written.
pub fn write_report(file: &str, report: &serde_json::Value) -> (PathBuf, std::io::Result<()>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let path = dir.join(file);
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(report).unwrap_or_default(),
        )
    });
    (path, written)
}

/// Prints `rows` (measure, value) as a Markdown table.
pub fn print_table(rows: &[(String, String)]) {
    println!("| measure | value |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}
