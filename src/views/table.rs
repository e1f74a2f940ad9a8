//! kubectl's server-side tables (`meta.k8s.io/v1` `Table`): the columns `kubectl get` prints,
//! more of them with `-o wide` (priority 1).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{Member, MyProject};

/// What each row carries of its object (`?includeObject=`): kubectl asks for metadata by
/// default and for the whole object when it sorts (`--sort-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!(
                "includeObject {other:?} is not supported; use None, Metadata or Object"
            )),
        }
    }
}

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

/// An age as kubectl prints it (`45s`, `3m20s`, `17m`, `5h10m`, `20h`, `3d4h`, `40d`, `2y`).
pub fn human_age(since: Option<Timestamp>, now: Timestamp) -> String {
    let Some(since) = since else {
        return "<unknown>".into();
    };
    let s = (now.as_second() - since.as_second()).max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 => format!("{d}d{}h", h % 24),
        _ if d < 730 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

pub(super) fn column(name: &str, kind: &str, description: &str, priority: i32) -> Value {
    json!({"name": name, "type": kind, "format": "", "description": description, "priority": priority})
}

pub(super) fn row(cells: Vec<Value>, object: Value, include: IncludeObject) -> Value {
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"],
        }),
        IncludeObject::Object => object,
    };
    if object.is_null() {
        json!({"cells": cells})
    } else {
        json!({"cells": cells, "object": object})
    }
}

pub(super) fn table(
    columns: Vec<Value>,
    rows: Vec<Value>,
    resource_version: &str,
    continue_: Option<&str>,
) -> Value {
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_ {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The `myprojects` table.
pub fn projects(
    items: &[MyProject],
    include: IncludeObject,
    now: Timestamp,
    resource_version: &str,
    continue_: Option<&str>,
) -> Value {
    let columns = vec![
        column("Name", "string", "The project (and its namespace).", 0),
        column("Customer", "string", "The customer it belongs to.", 0),
        column("My Roles", "string", "Your roles in it.", 0),
        column(
            "Phase",
            "string",
            "Where it is in its life; Terminated: soft-deleted.",
            0,
        ),
        column("End Date", "string", "Its last day.", 0),
        column("Age", "date", "Since it was created.", 0),
        column("Display Name", "string", "The project's display name.", 1),
        column(
            "Can Manage",
            "boolean",
            "You may manage it (Manager, customer owner, staff).",
            1,
        ),
        column(
            "Can Admin",
            "boolean",
            "You administer it (Administrator, staff).",
            1,
        ),
        column("Members", "integer", "Active memberships.", 1),
        column(
            "Purge After",
            "string",
            "When a terminated project is purged for good.",
            1,
        ),
    ];
    let rows = items
        .iter()
        .map(|p| {
            let roles: Vec<&str> = p.access.roles.iter().map(|r| r.as_str()).collect();
            let cells = vec![
                json!(p.metadata.name),
                json!(p.customer.name),
                json!(roles.join(",")),
                json!(p.status.phase),
                json!(p.spec.end_date.clone().unwrap_or_default()),
                json!(human_age(
                    p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    now
                )),
                json!(p.spec.display_name.clone().unwrap_or_default()),
                json!(p.access.can_manage),
                json!(p.access.can_admin),
                json!(p.status.members.as_ref().map(|m| m.total).unwrap_or(0)),
                json!(
                    p.status
                        .terminated
                        .as_ref()
                        .map(|t| t.purge_after.0.to_string())
                        .unwrap_or_default()
                ),
            ];
            row(cells, serde_json::to_value(p).unwrap_or_default(), include)
        })
        .collect();
    table(columns, rows, resource_version, continue_)
}

/// The `members` table.
pub fn members(
    items: &[Member],
    include: IncludeObject,
    now: Timestamp,
    resource_version: &str,
    continue_: Option<&str>,
) -> Value {
    let columns = vec![
        column("Name", "string", "The role holder's item.", 0),
        column("Subject", "string", "Kind/name of who holds the role.", 0),
        column("Role", "string", "The role.", 0),
        column("Scope", "string", "Project/<name> or Customer/<name>.", 0),
        column("Expires", "string", "When the role ends.", 0),
        column(
            "Phase",
            "string",
            "Active, Expired, Pending, Revoked or Inactive.",
            0,
        ),
        column("Customer", "string", "The customer of the scope.", 1),
        column("Age", "date", "Since the role was granted.", 1),
    ];
    let rows = items
        .iter()
        .map(|m| {
            let subject = match &m.subject.namespace {
                Some(ns) => format!("{}/{ns}/{}", m.subject.kind.as_str(), m.subject.name),
                None => format!("{}/{}", m.subject.kind.as_str(), m.subject.name),
            };
            let cells = vec![
                json!(m.metadata.name),
                json!(subject),
                json!(m.role.as_str()),
                json!(format!("{}/{}", m.scope.kind, m.scope.name)),
                json!(
                    m.expiration_time
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_else(|| "never".into())
                ),
                json!(m.phase),
                json!(m.customer),
                json!(human_age(
                    m.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    now
                )),
            ];
            row(cells, serde_json::to_value(m).unwrap_or_default(), include)
        })
        .collect();
    table(columns, rows, resource_version, continue_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectls() {
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let ago = |s: i64| Some(Timestamp::from_second(now.as_second() - s).unwrap());
        let cases = [
            (45, "45s"),
            (200, "3m20s"),
            (17 * 60, "17m"),
            (5 * 3600 + 600, "5h10m"),
            (20 * 3600, "20h"),
            (76 * 3600, "3d4h"),
            (40 * 86400, "40d"),
            (800 * 86400, "2y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_age(ago(secs), now), want, "{secs}s");
        }
        assert_eq!(human_age(None, now), "<unknown>");
    }

    #[test]
    fn tables_are_asked_for_in_the_accept_header() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        ));
    }
}
