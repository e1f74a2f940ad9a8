//! The README's `make bench` table, made from the results `make bench` keeps in `bench/` (one
//! JSON file per size and concurrency, each naming the build it measured). `make bench` writes
//! the table into the README between [`BEGIN`] and [`END`]; `make test` checks that what is there
//! is what the kept results make, so the figures in the README are always those of a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The line before the table in the README.
pub const BEGIN: &str = "<!-- make bench: begin (generated from bench/*.json; do not edit) -->";
/// The line after it.
pub const END: &str = "<!-- make bench: end -->";

/// The results kept in `dir` (`*.json`), smallest run first. A file that is not a result
/// (no `projects`) is an error naming it.
pub fn read_results(dir: &Path) -> Result<Vec<Value>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut results = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        if value["projects"].as_u64().is_none() {
            return Err(format!(
                "{}: not a `make bench` result (no `projects`)",
                path.display()
            ));
        }
        results.push(value);
    }
    results.sort_by_key(|r| (r["projects"].as_u64(), r["in_flight"].as_u64()));
    Ok(results)
}

/// The name `make bench` keeps a result under: `operator-<projects>-<in flight>.json`.
fn result_file_name(projects: u64, in_flight: u64) -> String {
    format!("operator-{projects}-{in_flight}.json")
}

/// Keeps `report` (a `make bench` result) in `dir`, under the name of its size and concurrency
/// (replacing the last run of the same), and writes `readme`'s table again from `dir`. Answers
/// where it was kept.
pub fn keep(report: &Value, dir: &Path, readme: &Path) -> Result<PathBuf, String> {
    let (Some(projects), Some(in_flight)) =
        (report["projects"].as_u64(), report["in_flight"].as_u64())
    else {
        return Err("not a `make bench` result (no `projects` or `in_flight`)".into());
    };
    let kept = dir.join(result_file_name(projects, in_flight));
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n";
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&kept, text))
        .map_err(|e| format!("writing {}: {e}", kept.display()))?;
    update(readme, dir, false)?;
    Ok(kept)
}

fn number(v: &Value, decimals: usize) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() => {
            let s = format!("{x:.decimals$}");
            // 12345.6 → 12,345.6: thousands grouped as in the rest of the README.
            let (int, frac) = s
                .split_once('.')
                .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
            let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
            let mut grouped = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    grouped.push(',');
                }
                grouped.push(c);
            }
            match frac {
                Some(f) => format!("{sign}{grouped}.{f}"),
                None => format!("{sign}{grouped}"),
            }
        }
        _ => "—".into(),
    }
}

/// One row: its label and how a result shows in it.
type Row = (&'static str, fn(&Value) -> String);

fn both(a: String, b: String) -> String {
    format!("{a} / {b}")
}

fn cpu(r: &Value, phase: &str, process: &str) -> String {
    number(
        &r[format!("cpu_seconds_during_{phase}_by_process")][process],
        1,
    )
}

const ROWS: &[Row] = &[
    ("build", |r| {
        format!(
            "{} {} ({})",
            r["build"].as_str().unwrap_or("?"),
            r["commit"].as_str().unwrap_or("?"),
            r["date"].as_str().unwrap_or("?")
        )
    }),
    (
        "customers (one per 50 projects, each with an owner and a budget)",
        |r| number(&r["customers"], 0),
    ),
    ("a: direct (s)", |r| number(&r["direct_seconds"], 1)),
    ("b: through the operator, to all Ready (s)", |r| {
        number(&r["operator_seconds"], 1)
    }),
    ("**ratio b/a** (goal ≤ 1.2)", |r| {
        format!("**{}×**", number(&r["ratio"], 2))
    }),
    (
        "**webhook p50 / p99 (ms)**, kube-apiserver's (goal p99 ≤ 10)",
        |r| {
            format!(
                "{} / **{}**",
                number(&r["webhook_p50_ms"], 0),
                number(&r["webhook_p99_ms"], 0)
            )
        },
    ),
    ("mutating webhook p50 / p99 (ms)", |r| {
        let w = &r["webhooks"]["mutate.tenancy.dev"];
        both(number(&w["p50_ms"], 0), number(&w["p99_ms"], 0))
    }),
    ("validating webhook p50 / p99 (ms)", |r| {
        let w = &r["webhooks"]["validate.tenancy.dev"];
        both(number(&w["p50_ms"], 0), number(&w["p99_ms"], 0))
    }),
    (
        "validating decision, mean (ms): Project (ledger write) / membership",
        |r| {
            let d = &r["admission_decision_mean_ms"];
            both(number(&d["Project"], 0), number(&d["ProjectMembership"], 2))
        },
    ),
    ("**operator writes per project** (goal ≤ 15)", |r| {
        format!("**{}**", number(&r["writes_per_project"], 2))
    }),
    (
        "of which ClusterRoleBinding patches / Project status",
        |r| {
            let w = &r["writes_per_project_by_kind"];
            both(
                number(&w["patch ClusterRoleBinding"], 2),
                number(&w["patch Project/status"], 2),
            )
        },
    ),
    ("reconciles per project", |r| {
        number(&r["reconciles_per_project"], 1)
    }),
    (
        "**operator RSS after b (MiB)** (goal at 10,000 ≤ 150)",
        |r| format!("**{}**", number(&r["rss_mib"], 0)),
    ),
    ("operator CPU in b (s) / per project (ms)", |r| {
        let per = r["cpu_seconds_during_b"]
            .as_f64()
            .zip(r["projects"].as_f64());
        both(
            number(&r["cpu_seconds_during_b"], 1),
            number(&per.map(|(c, n)| c / n * 1000.0).into(), 1),
        )
    }),
    ("kube-apiserver CPU in a / in b (s)", |r| {
        both(cpu(r, "a", "kube-apiserver"), cpu(r, "b", "kube-apiserver"))
    }),
    ("kube-controller-manager CPU in a / in b (s)", |r| {
        both(
            cpu(r, "a", "kube-controller-manager"),
            cpu(r, "b", "kube-controller-manager"),
        )
    }),
    ("etcd CPU in a / in b (s)", |r| {
        both(cpu(r, "a", "etcd"), cpu(r, "b", "etcd"))
    }),
    (
        "quiet window (15 s): writes (reconciles) / operator CPU (s)",
        |r| {
            format!(
                "{} ({}) / {}",
                number(&r["quiet_writes"], 0),
                number(&r["quiet_reconciles"], 0),
                number(&r["quiet_cpu_seconds"], 2)
            )
        },
    ),
];

/// A Project's status writes after its first, by what they changed (its top-level status
/// fields, joined by `,`), read from the operator's log: its `writing status` lines (at debug).
pub fn project_status_rewrites(log: &str) -> BTreeMap<String, usize> {
    let mut by_change = BTreeMap::new();
    for line in log.lines().map(super::process::without_colours) {
        let rewrite = line.contains("writing status")
            && line.contains("kind=Project ")
            && line.contains("first=false");
        let Some((_, change)) = line.split_once(" change=").filter(|_| rewrite) else {
            continue;
        };
        let fields = serde_json::from_str::<Value>(change)
            .ok()
            .and_then(|v| {
                v.as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
            })
            .unwrap_or_else(|| "?".into());
        *by_change.entry(fields).or_default() += 1;
    }
    by_change
}

/// The table: a row per figure, a column per result.
pub fn render(results: &[Value]) -> String {
    let mut out = String::from("| |");
    for r in results {
        out.push_str(&format!(
            " {} projects, {} in flight |",
            number(&r["projects"], 0),
            number(&r["in_flight"], 0)
        ));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(results.len()));
    out.push('\n');
    for (label, show) in ROWS {
        out.push_str(&format!("| {label} |"));
        for r in results {
            out.push_str(&format!(" {} |", show(r)));
        }
        out.push('\n');
    }
    out
}

/// `readme` with the table between its markers replaced by `table`.
pub fn splice(readme: &str, table: &str) -> Result<String, String> {
    let missing =
        |m: &str| format!("the README has no line `{m}`: put the two markers where the table goes");
    let start = readme.find(BEGIN).ok_or_else(|| missing(BEGIN))? + BEGIN.len();
    let end = readme[start..].find(END).ok_or_else(|| missing(END))? + start;
    Ok(format!("{}\n{table}{}", &readme[..start], &readme[end..]))
}

/// Writes (`check` false) or checks (`check` true) the README's table from the results in `dir`.
pub fn update(readme: &Path, dir: &Path, check: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(readme)
        .map_err(|e| format!("reading {}: {e}", readme.display()))?;
    let next = splice(&text, &render(&read_results(dir)?))?;
    if next == text {
        return Ok(());
    }
    if check {
        return Err(format!(
            "{}'s `make bench` table differs from what {} makes: run `tenancy-operator bench-table --write {}` (make bench does) and commit the result",
            readme.display(),
            dir.display(),
            readme.display()
        ));
    }
    std::fs::write(readme, next).map_err(|e| format!("writing {}: {e}", readme.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(projects: u64, ratio: f64) -> Value {
        json!({
            "build": "release", "commit": "abc1234", "date": "2026-12-07",
            "projects": projects, "in_flight": 20,
            "direct_seconds": 12.34, "operator_seconds": 49.1, "ratio": ratio,
            "webhook_p50_ms": 24.4, "webhook_p99_ms": 447.1,
            "webhooks": {"mutate.tenancy.dev": {"p50_ms": 20.0, "p99_ms": 300.0},
                "validate.tenancy.dev": {"p50_ms": 30.0, "p99_ms": 480.0}},
            "admission_decision_mean_ms": {"Project": 95.0, "ProjectMembership": 0.11},
            "writes_per_project": 19.017,
            "writes_per_project_by_kind": {"patch ClusterRoleBinding": 2.391,
                "patch Project/status": 1.553},
            "reconciles_per_project": 14.0, "rss_mib": 88.2,
            "cpu_seconds_during_b": 14.4,
            "cpu_seconds_during_a_by_process": {"kube-apiserver": 23.5,
                "kube-controller-manager": 7.7, "etcd": 5.6},
            "cpu_seconds_during_b_by_process": {"kube-apiserver": 1062.0,
                "kube-controller-manager": 9.0, "etcd": 7.8},
            "quiet_writes": 0.0, "quiet_reconciles": 0.0
        })
    }

    #[test]
    fn a_column_per_result_and_every_goal_in_bold() {
        let table = render(&[result(200, 3.8), result(10000, 6.12)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| | 200 projects, 20 in flight | 10,000 projects, 20 in flight |"
        );
        assert_eq!(lines[1], "|---|---|---|");
        for (row, want) in [
            ("| build |", "release abc1234 (2026-12-07)"),
            ("| **ratio b/a**", "**3.80×** | **6.12×** |"),
            ("| **webhook p50 / p99", "24 / **447** |"),
            ("| validating decision", "95 / 0.11 |"),
            ("| of which ClusterRoleBinding", "2.39 / 1.55 |"),
            ("| operator CPU in b", "14.4 / 72.0 | 14.4 / 1.4 |"),
            ("| kube-apiserver CPU", "23.5 / 1,062.0 |"),
            ("| quiet window", "0 (0) / — |"),
        ] {
            let line = lines
                .iter()
                .find(|l| l.starts_with(row))
                .unwrap_or_else(|| panic!("no row {row}"));
            assert!(line.contains(want), "{row}: {line}");
        }
        assert_eq!(lines.len(), 2 + ROWS.len());
    }

    #[test]
    fn a_projects_status_rewrites_are_counted_by_what_they_changed() {
        // As the operator logs them, colours included.
        let line = |kind: &str, name: &str, first: bool, change: &str| {
            format!(
                "\u{1b}[2m2026-12-07T17:26:52.675636Z\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m \u{1b}[2mtenancy_operator::controller::apply\u{1b}[0m\u{1b}[2m:\u{1b}[0m writing status \u{1b}[3mkind\u{1b}[0m\u{1b}[2m=\u{1b}[0m{kind} \u{1b}[3mname\u{1b}[0m\u{1b}[2m=\u{1b}[0m{name} \u{1b}[3mfirst\u{1b}[0m\u{1b}[2m=\u{1b}[0m{first} \u{1b}[3mchange\u{1b}[0m\u{1b}[2m=\u{1b}[0m{change}"
            )
        };
        let log = [
            line(
                "Project",
                "web",
                true,
                r#"{"phase":"Active","members":{"total":0}}"#,
            ),
            line("Project", "web", false, r#"{"members":{"total":3}}"#),
            line(
                "Project",
                "shop",
                false,
                r#"{"conditions":[],"phase":"Active","quota":{}}"#,
            ),
            line("Project", "api", false, r#"{"members":{"total":1}}"#),
            line("ProjectMembership", "ned", false, r#"{"phase":"Active"}"#),
            line("Project", "odd", false, "not json"),
            "an unrelated line with kind=Project first=false change={}".to_string(),
        ]
        .join("\n");
        let counted = project_status_rewrites(&log);
        assert_eq!(
            counted,
            BTreeMap::from([
                ("members".to_string(), 2),
                ("conditions,phase,quota".to_string(), 1),
                ("?".to_string(), 1),
            ])
        );
    }

    #[test]
    fn numbers_are_grouped_and_missing_ones_shown_as_a_dash() {
        for (v, d, want) in [
            (json!(1234567.891), 1, "1,234,567.9"),
            (json!(999), 0, "999"),
            (json!(-1234.5), 1, "-1,234.5"),
            (json!(0.11), 2, "0.11"),
            (json!(null), 1, "—"),
            (json!("x"), 1, "—"),
        ] {
            assert_eq!(number(&v, d), want, "{v}");
        }
    }

    #[test]
    fn the_table_replaces_what_is_between_the_markers_only() {
        let readme = format!("# R\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n");
        let next = splice(&readme, "| new |\n").unwrap();
        assert_eq!(
            next,
            format!("# R\n\nbefore\n{BEGIN}\n| new |\n{END}\nafter\n")
        );
        // Spliced again, nothing changes.
        assert_eq!(splice(&next, "| new |\n").unwrap(), next);
        let err = splice("# R\n", "| new |\n").unwrap_err();
        assert!(err.contains(BEGIN), "{err}");
        let err = splice(&format!("{BEGIN}\n"), "x").unwrap_err();
        assert!(err.contains(END), "{err}");
    }

    #[test]
    fn results_are_read_smallest_first_and_a_stray_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for (n, r) in [(10000, 6.1), (200, 3.8), (1000, 4.3)] {
            std::fs::write(
                dir.path().join(result_file_name(n, 20)),
                result(n, r).to_string(),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not read").unwrap();
        let read = read_results(dir.path()).unwrap();
        let sizes: Vec<u64> = read
            .iter()
            .map(|r| r["projects"].as_u64().unwrap())
            .collect();
        assert_eq!(sizes, [200, 1000, 10000]);

        std::fs::write(dir.path().join("stray.json"), "{}").unwrap();
        let err = read_results(dir.path()).unwrap_err();
        assert!(err.contains("stray.json"), "{err}");
    }

    #[test]
    fn a_run_is_kept_under_its_size_replacing_the_last_and_the_table_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (results, readme) = (dir.path().join("bench"), dir.path().join("README.md"));
        std::fs::write(&readme, format!("x\n{BEGIN}\n{END}\n")).unwrap();
        for ratio in [3.8, 4.1] {
            let kept = keep(&result(200, ratio), &results, &readme).unwrap();
            assert_eq!(kept, results.join("operator-200-20.json"));
        }
        assert_eq!(
            read_results(&results).unwrap().len(),
            1,
            "the last run of a size"
        );
        let text = std::fs::read_to_string(&readme).unwrap();
        assert!(
            text.contains("**4.10×**") && !text.contains("3.80"),
            "{text}"
        );
        let err = keep(&json!({"projects": 200}), &results, &readme).unwrap_err();
        assert!(err.contains("in_flight"), "{err}");
    }

    #[test]
    fn a_readme_behind_its_results_fails_the_check_and_is_written_by_the_update() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("bench");
        std::fs::create_dir(&results).unwrap();
        std::fs::write(
            results.join(result_file_name(200, 20)),
            result(200, 3.8).to_string(),
        )
        .unwrap();
        let readme = dir.path().join("README.md");
        std::fs::write(&readme, format!("x\n{BEGIN}\nstale\n{END}\n")).unwrap();
        let err = update(&readme, &results, true).unwrap_err();
        assert!(err.contains("bench-table --write"), "{err}");
        update(&readme, &results, false).unwrap();
        assert!(
            std::fs::read_to_string(&readme)
                .unwrap()
                .contains("**3.80×**")
        );
        update(&readme, &results, true).unwrap();
    }
}
