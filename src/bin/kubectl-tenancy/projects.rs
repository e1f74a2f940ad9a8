//! `kubectl tenancy projects`: `myprojects` with the portal's filters.

use clap::Args;
use jiff::Timestamp;
use serde_json::Value;
use tenancy_operator::api::vocabulary::labels;

use crate::client::{self, Connection};
use crate::dates;
use crate::output::{self, Format, Table};

#[derive(Args, Debug, Default, Clone)]
pub struct ProjectsArgs {
    /// Only projects you can manage (Manager, customer owner, staff): the portal's can_manage.
    #[arg(long)]
    pub can_manage: bool,
    /// Only projects you can administer (Administrator, staff): the portal's can_admin.
    #[arg(long)]
    pub can_admin: bool,
    /// Only projects of these customers (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "C,...")]
    pub customer: Vec<String>,
    /// Name, display name, uid or backend id contains this (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub query: Option<String>,
    /// Hide projects past their end date (Finished, Expired).
    #[arg(long)]
    pub conceal_finished: bool,
    /// Also list deleted projects that can still be recovered (owners, support, staff).
    #[arg(long)]
    pub include_terminated: bool,
    /// Created after T: a date, an RFC 3339 time or a duration ago (7d).
    #[arg(long, value_name = "T")]
    pub created_after: Option<String>,
    /// Changed after T: a date, an RFC 3339 time or a duration ago (7d).
    #[arg(long, value_name = "T")]
    pub modified_after: Option<String>,
    /// name, created or customer; `-` first for descending (-created).
    #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
    pub order_by: Option<String>,
}

/// The views request for these filters: `fieldSelector`, `labelSelector`, `orderBy`.
pub fn query(a: &ProjectsArgs, now: Timestamp) -> Result<Vec<(String, String)>, String> {
    let mut fields = Vec::new();
    if a.can_manage {
        fields.push("access.canManage=true".to_string());
    }
    if a.can_admin {
        fields.push("access.canAdmin=true".to_string());
    }
    if a.conceal_finished {
        fields.push("status.finished=false".to_string());
    }
    if a.include_terminated {
        fields.push("includeTerminated=true".to_string());
    }
    if let Some(q) = &a.query {
        fields.push(format!(
            "query={}",
            q.replace('\\', "\\\\").replace(',', "\\,")
        ));
    }
    if let Some(t) = &a.created_after {
        let t = dates::parse_since("--created-after", t, now)?;
        fields.push(format!("createdAfter={}", dates::rfc3339(t)));
    }
    if let Some(t) = &a.modified_after {
        let t = dates::parse_since("--modified-after", t, now)?;
        fields.push(format!("modifiedAfter={}", dates::rfc3339(t)));
    }
    let customers: Vec<&str> = a
        .customer
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .collect();
    let label = if customers.is_empty() {
        String::new()
    } else {
        format!("{} in ({})", labels::CUSTOMER, customers.join(","))
    };
    let order = match a.order_by.as_deref() {
        None => String::new(),
        Some(o) => {
            let key = o.strip_prefix('-').unwrap_or(o);
            if !["name", "created", "customer"].contains(&key) {
                return Err(format!(
                    "--order-by {o:?}: order by name, created or customer, with - first for descending (-created)"
                ));
            }
            o.to_string()
        }
    };
    Ok(vec![
        ("fieldSelector".into(), fields.join(",")),
        ("labelSelector".into(), label),
        ("orderBy".into(), order),
    ])
}

fn created(p: &Value) -> Option<Timestamp> {
    p["metadata"]["creationTimestamp"].as_str()?.parse().ok()
}

/// The table of `myprojects` items.
pub fn table(items: &[Value], now: Timestamp) -> Table {
    let mut t = Table::new(&[
        ("NAME", false),
        ("CUSTOMER", false),
        ("PHASE", false),
        ("ROLES", false),
        ("END DATE", false),
        ("DISPLAY NAME", true),
        ("CAN MANAGE", true),
        ("CAN ADMIN", true),
        ("MEMBERS", true),
        ("AGE", false),
    ]);
    for p in items {
        let roles: Vec<&str> = p["access"]["roles"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        t.rows.push(vec![
            output::text(&p["metadata"]["name"]),
            output::text(&p["customer"]["name"]),
            output::text(&p["status"]["phase"]),
            if roles.is_empty() {
                "<none>".into()
            } else {
                roles.join(",")
            },
            output::text(&p["spec"]["endDate"]),
            output::text(&p["spec"]["displayName"]),
            output::text(&p["access"]["canManage"]),
            output::text(&p["access"]["canAdmin"]),
            output::text(&p["status"]["members"]["total"]),
            created(p)
                .map(|c| dates::age(c, now))
                .unwrap_or_else(|| "<none>".into()),
        ]);
    }
    t
}

pub async fn run(conn: &Connection, out: Format, a: ProjectsArgs) -> Result<(), String> {
    let now = Timestamp::now();
    let q = query(&a, now)?;
    let client = client::connect(conn).await?;
    let items = client::list_view(&client, "myprojects", &q).await?;
    output::print_items(
        out,
        &items,
        "project",
        "No projects you may see match.",
        |i| table(i, now),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-15T10:00:00Z".parse().unwrap()
    }

    fn q(a: ProjectsArgs) -> Vec<(String, String)> {
        query(&a, now()).unwrap()
    }

    #[test]
    fn each_portal_filter_becomes_a_selector() {
        let table: Vec<(ProjectsArgs, [&str; 3])> = vec![
            (ProjectsArgs::default(), ["", "", ""]),
            (
                ProjectsArgs {
                    can_manage: true,
                    can_admin: true,
                    ..Default::default()
                },
                ["access.canManage=true,access.canAdmin=true", "", ""],
            ),
            (
                ProjectsArgs {
                    conceal_finished: true,
                    include_terminated: true,
                    ..Default::default()
                },
                ["status.finished=false,includeTerminated=true", "", ""],
            ),
            (
                ProjectsArgs {
                    customer: vec!["acme".into(), " globex".into()],
                    ..Default::default()
                },
                ["", "tenancy.dev/customer in (acme,globex)", ""],
            ),
            (
                ProjectsArgs {
                    query: Some("gen,ome".into()),
                    ..Default::default()
                },
                ["query=gen\\,ome", "", ""],
            ),
            (
                ProjectsArgs {
                    created_after: Some("7d".into()),
                    modified_after: Some("2026-10-01".into()),
                    ..Default::default()
                },
                [
                    "createdAfter=2026-11-08T10:00:00Z,modifiedAfter=2026-10-01T00:00:00Z",
                    "",
                    "",
                ],
            ),
            (
                ProjectsArgs {
                    order_by: Some("-created".into()),
                    ..Default::default()
                },
                ["", "", "-created"],
            ),
        ];
        for (args, [fields, labels, order]) in table {
            let got = q(args.clone());
            assert_eq!(got[0].1, fields, "{args:?}");
            assert_eq!(got[1].1, labels, "{args:?}");
            assert_eq!(got[2].1, order, "{args:?}");
        }
    }

    #[test]
    fn bad_filters_name_the_flag() {
        for (args, flag) in [
            (
                ProjectsArgs {
                    order_by: Some("size".into()),
                    ..Default::default()
                },
                "--order-by",
            ),
            (
                ProjectsArgs {
                    created_after: Some("last week".into()),
                    ..Default::default()
                },
                "--created-after",
            ),
        ] {
            let err = query(&args, now()).unwrap_err();
            assert!(err.starts_with(flag), "{err}");
        }
    }

    #[test]
    fn rows_show_roles_and_wide_columns() {
        let items = vec![json!({
            "metadata": {"name": "genomics", "creationTimestamp": "2026-11-01T10:00:00Z"},
            "spec": {"displayName": "Genome lab", "endDate": "2027-06-30"},
            "customer": {"name": "acme"},
            "status": {"phase": "Active", "members": {"total": 3}},
            "access": {"roles": ["Manager", "CustomerOwner"], "canManage": true, "canAdmin": false},
        })];
        let t = table(&items, now());
        assert_eq!(
            t.rows[0],
            vec![
                "genomics",
                "acme",
                "Active",
                "Manager,CustomerOwner",
                "2027-06-30",
                "Genome lab",
                "true",
                "false",
                "3",
                "14d"
            ]
        );
    }
}
