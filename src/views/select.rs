//! The portal's list filters as kubectl passes them: field selectors, label selectors and an
//! ordering. Parsed once per request; a selector on a field that does not exist is refused with
//! the list of those that do.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::{Member, MyProject, TERMINATED};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
}

/// One `field=value` or `field!=value` of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub field: String,
    pub op: Op,
    pub value: String,
}

impl Requirement {
    fn test(&self, actual: &str) -> bool {
        (actual == self.value) == (self.op == Op::Eq)
    }
}

/// Splits on commas that are not escaped (`\,`) and not inside parentheses.
fn split_terms(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut escaped) = (Vec::new(), String::new(), 0i32, false);
    for c in s.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Parses a field selector, accepting only `allowed` fields.
pub fn parse_fields(s: &str, resource: &str, allowed: &[&str]) -> Result<Vec<Requirement>, String> {
    split_terms(s)
        .into_iter()
        .map(|term| {
            let (field, op, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, Op::NotEq, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, Op::Eq, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, Op::Eq, v)
            } else {
                return Err(format!(
                    "field selector {term:?}: expected field=value or field!=value"
                ));
            };
            let field = field.trim();
            if !allowed.contains(&field) {
                return Err(format!(
                    "field selector {field:?} is not supported for {resource}; supported: {}",
                    allowed.join(", ")
                ));
            }
            Ok(Requirement {
                field: field.to_string(),
                op,
                value: value.trim().to_string(),
            })
        })
        .collect()
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelRequirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl LabelRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelRequirement::Eq(k, v) => labels.get(k) == Some(v),
            LabelRequirement::NotEq(k, v) => labels.get(k) != Some(v),
            LabelRequirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelRequirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            LabelRequirement::Exists(k) => labels.contains_key(k),
            LabelRequirement::NotExists(k) => !labels.contains_key(k),
        }
    }
}

/// Parses a label selector (`k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`).
pub fn parse_labels(s: &str) -> Result<Vec<LabelRequirement>, String> {
    split_terms(s)
        .into_iter()
        .map(|term| {
            let set = |rest: &str| -> Result<Vec<String>, String> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("label selector {term:?}: expected a set like (a,b)"))?;
                Ok(inner
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect())
            };
            if let Some(k) = term.strip_prefix('!') {
                return Ok(LabelRequirement::NotExists(k.trim().to_string()));
            }
            if let Some((k, rest)) = term.split_once(" notin ") {
                return Ok(LabelRequirement::NotIn(k.trim().to_string(), set(rest)?));
            }
            if let Some((k, rest)) = term.split_once(" in ") {
                return Ok(LabelRequirement::In(k.trim().to_string(), set(rest)?));
            }
            if let Some((k, v)) = term.split_once("!=") {
                return Ok(LabelRequirement::NotEq(k.trim().into(), v.trim().into()));
            }
            if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                return Ok(LabelRequirement::Eq(k.trim().into(), v.trim().into()));
            }
            if term.contains(char::is_whitespace) {
                return Err(format!("label selector {term:?} is not understood"));
            }
            Ok(LabelRequirement::Exists(term))
        })
        .collect()
}

/// Which projects a list includes: live ones (default), live and terminated
/// (`includeTerminated=true`), or terminated only (`status.phase=Terminated`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lifetimes {
    #[default]
    Live,
    LiveAndTerminated,
    Terminated,
}

impl Lifetimes {
    pub fn live(self) -> bool {
        self != Lifetimes::Terminated
    }
    pub fn terminated(self) -> bool {
        self != Lifetimes::Live
    }
}

pub const PROJECT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.uid",
    "customer.name",
    "customer.displayName",
    "customer.abbreviation",
    "customer.nativeName",
    "access.canManage",
    "access.canAdmin",
    "status.finished",
    "status.phase",
    "spec.backendId",
    "spec.projectType",
    "includeTerminated",
    "name.contains",
    "description.contains",
    "query",
    "createdAfter",
    "modifiedAfter",
];

pub const MEMBER_FIELDS: &[&str] = &[
    "metadata.name",
    "subject.name",
    "subject.kind",
    "role",
    "phase",
    "project",
    "customer",
    "expiresBefore",
];

fn boolean(r: &Requirement) -> Result<bool, String> {
    match r.value.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        v => Err(format!(
            "field selector {}: {v:?} is not true or false",
            r.field
        )),
    }
}

fn time(r: &Requirement) -> Result<Timestamp, String> {
    if r.op != Op::Eq {
        return Err(format!(
            "field selector {}: use {}=<time>",
            r.field, r.field
        ));
    }
    r.value
        .parse::<Timestamp>()
        .or_else(|_| {
            r.value
                .parse::<jiff::civil::Date>()
                .map_err(|e| e.to_string())
                .and_then(|d| {
                    d.to_zoned(jiff::tz::TimeZone::UTC)
                        .map(|z| z.timestamp())
                        .map_err(|e| e.to_string())
                })
        })
        .map_err(|_| {
            format!(
                "field selector {}: {:?} is not an RFC 3339 time (2026-10-01T00:00:00Z) or a date (2026-10-01)",
                r.field, r.value
            )
        })
}

fn contains(r: &Requirement) -> Result<String, String> {
    if r.op != Op::Eq {
        return Err(format!(
            "field selector {}: use {}=<text>",
            r.field, r.field
        ));
    }
    Ok(r.value.to_lowercase())
}

/// A `myprojects` request's filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectQuery {
    pub lifetimes: Lifetimes,
    fields: Vec<Requirement>,
    labels: Vec<LabelRequirement>,
    name_contains: Option<String>,
    description_contains: Option<String>,
    query: Option<String>,
    created_after: Option<Timestamp>,
    modified_after: Option<Timestamp>,
}

impl ProjectQuery {
    pub fn parse(fields: &str, labels: &str) -> Result<Self, String> {
        let mut q = ProjectQuery {
            labels: parse_labels(labels)?,
            ..Default::default()
        };
        for r in parse_fields(fields, "myprojects", PROJECT_FIELDS)? {
            match r.field.as_str() {
                "includeTerminated" => {
                    if boolean(&r)? == (r.op == Op::Eq) && q.lifetimes == Lifetimes::Live {
                        q.lifetimes = Lifetimes::LiveAndTerminated;
                    }
                }
                "status.phase" if r.value == TERMINATED => {
                    q.lifetimes = if r.op == Op::Eq {
                        Lifetimes::Terminated
                    } else {
                        Lifetimes::Live
                    };
                }
                "name.contains" => q.name_contains = Some(contains(&r)?),
                "description.contains" => q.description_contains = Some(contains(&r)?),
                "query" => q.query = Some(contains(&r)?),
                "createdAfter" => q.created_after = Some(time(&r)?),
                "modifiedAfter" => q.modified_after = Some(time(&r)?),
                "access.canManage" | "access.canAdmin" | "status.finished" => {
                    boolean(&r)?;
                    q.fields.push(r);
                }
                _ => q.fields.push(r),
            }
        }
        Ok(q)
    }

    fn field<'a>(p: &'a MyProject, field: &str) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        let opt = |o: &'a Option<String>| Cow::Borrowed(o.as_deref().unwrap_or_default());
        match field {
            "metadata.name" => opt(&p.metadata.name),
            "metadata.uid" => opt(&p.metadata.uid),
            "customer.name" => Cow::Borrowed(p.customer.name.as_str()),
            "customer.displayName" => opt(&p.customer.display_name),
            "customer.abbreviation" => opt(&p.customer.abbreviation),
            "customer.nativeName" => opt(&p.customer.native_name),
            "access.canManage" => Cow::Owned(p.access.can_manage.to_string()),
            "access.canAdmin" => Cow::Owned(p.access.can_admin.to_string()),
            "status.finished" => Cow::Owned(p.status.finished.to_string()),
            "status.phase" => Cow::Borrowed(p.status.phase.as_str()),
            "spec.backendId" => opt(&p.spec.backend_id),
            "spec.projectType" => opt(&p.spec.project_type),
            _ => Cow::Borrowed(""),
        }
    }

    pub fn matches(&self, p: &MyProject) -> bool {
        let lower = |o: &Option<String>| o.as_deref().unwrap_or_default().to_lowercase();
        let labels = p.metadata.labels.clone().unwrap_or_default();
        let after = |t: Option<Timestamp>, at: Option<Timestamp>| {
            t.is_none_or(|t| at.is_some_and(|at| at > t))
        };
        self.fields
            .iter()
            .all(|r| r.test(&Self::field(p, &r.field)))
            && self.labels.iter().all(|l| l.matches(&labels))
            && self.name_contains.as_ref().is_none_or(|n| {
                lower(&p.metadata.name).contains(n) || lower(&p.spec.display_name).contains(n)
            })
            && self
                .description_contains
                .as_ref()
                .is_none_or(|d| lower(&p.spec.description).contains(d))
            && self.query.as_ref().is_none_or(|q| {
                [
                    &p.metadata.name,
                    &p.spec.display_name,
                    &p.metadata.uid,
                    &p.spec.backend_id,
                ]
                .iter()
                .any(|f| lower(f).contains(q))
            })
            && after(
                self.created_after,
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
            && after(
                self.modified_after,
                p.status.last_modified.as_ref().map(|t| t.0),
            )
    }
}

/// A `members` request's filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberQuery {
    fields: Vec<Requirement>,
    labels: Vec<LabelRequirement>,
    expires_before: Option<Timestamp>,
}

impl MemberQuery {
    pub fn parse(fields: &str, labels: &str) -> Result<Self, String> {
        let mut q = MemberQuery {
            labels: parse_labels(labels)?,
            ..Default::default()
        };
        for r in parse_fields(fields, "members", MEMBER_FIELDS)? {
            match r.field.as_str() {
                "expiresBefore" => q.expires_before = Some(time(&r)?),
                _ => q.fields.push(r),
            }
        }
        Ok(q)
    }

    pub fn matches(&self, m: &Member) -> bool {
        let labels = m.metadata.labels.clone().unwrap_or_default();
        let field = |r: &Requirement| -> bool {
            let (kind, value): (Option<&str>, String) = match r.field.as_str() {
                "metadata.name" => (None, m.metadata.name.clone().unwrap_or_default()),
                "subject.name" => (None, m.subject.name.clone()),
                "subject.kind" => (None, m.subject.kind.as_str().to_string()),
                "role" => (None, m.role.as_str().to_string()),
                "phase" => (None, m.phase.clone()),
                // The roles held in project X itself; the customer's own owners and support.
                "project" => (Some("Project"), m.scope.name.clone()),
                "customer" => (Some("Customer"), m.scope.name.clone()),
                _ => (None, String::new()),
            };
            let in_scope = kind.is_none_or(|k| k == m.scope.kind);
            (in_scope && value == r.value) == (r.op == Op::Eq)
        };
        self.fields.iter().all(field)
            && self.labels.iter().all(|l| l.matches(&labels))
            && self
                .expires_before
                .is_none_or(|t| m.expiration_time.as_ref().is_some_and(|e| e.0 < t))
    }
}

/// How a list is sorted: `?orderBy=name|created|customer`, `-` first for descending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Order {
    pub key: OrderKey,
    pub descending: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OrderKey {
    #[default]
    Name,
    Created,
    Customer,
}

impl Order {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (descending, key) = match s.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, s),
        };
        let key = match key {
            "" | "name" => OrderKey::Name,
            "created" => OrderKey::Created,
            "customer" => OrderKey::Customer,
            other => {
                return Err(format!(
                    "orderBy {other:?} is not supported; use name, created or customer, with - first for descending"
                ));
            }
        };
        Ok(Order { key, descending })
    }

    /// Sorts projects (ties broken by name, so pages never overlap).
    pub fn sort(self, items: &mut [MyProject]) {
        items.sort_by(|a, b| {
            let by_name = a.metadata.name.cmp(&b.metadata.name);
            let ord = match self.key {
                OrderKey::Name => by_name,
                OrderKey::Created => a
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                    .then(by_name),
                OrderKey::Customer => a.customer.name.cmp(&b.customer.name).then(by_name),
            };
            if self.descending { ord.reverse() } else { ord }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_parse_or_name_what_exists() {
        let cases: &[(&str, Result<usize, &str>)] = &[
            ("", Ok(0)),
            ("access.canManage=true", Ok(1)),
            ("access.canManage==true,status.finished!=true", Ok(2)),
            (r"query=a\,b", Ok(1)),
            (
                "owner=olga",
                Err("not supported for myprojects; supported: metadata.name"),
            ),
            ("query", Err("expected field=value")),
            ("access.canManage=yes", Err("\"yes\" is not true or false")),
            ("createdAfter=yesterday", Err("is not an RFC 3339 time")),
            (
                "createdAfter!=2026-01-01T00:00:00Z",
                Err("use createdAfter=<time>"),
            ),
        ];
        for (input, want) in cases {
            let got = ProjectQuery::parse(input, "")
                .map(|q| q.fields.len() + usize::from(q.query.is_some()));
            match (want, got) {
                (Ok(n), Ok(q)) => assert_eq!(*n, q, "{input}"),
                (Err(w), Err(e)) => assert!(e.contains(w), "{input}: {e}"),
                (w, g) => panic!("{input}: want {w:?}, got {g:?}"),
            }
        }
        assert_eq!(
            ProjectQuery::parse(r"query=a\,b", "")
                .unwrap()
                .query
                .as_deref(),
            Some("a,b")
        );
    }

    #[test]
    fn terminated_projects_are_listed_only_when_asked_for() {
        let cases = [
            ("", Lifetimes::Live),
            ("includeTerminated=true", Lifetimes::LiveAndTerminated),
            ("includeTerminated=false", Lifetimes::Live),
            ("status.phase=Terminated", Lifetimes::Terminated),
            ("status.phase!=Terminated", Lifetimes::Live),
            (
                "includeTerminated=true,status.phase=Terminated",
                Lifetimes::Terminated,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                ProjectQuery::parse(input, "").unwrap().lifetimes,
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn label_selectors() {
        let labels = BTreeMap::from([("tenancy.dev/customer".to_string(), "acme".to_string())]);
        let cases = [
            ("tenancy.dev/customer=acme", true),
            ("tenancy.dev/customer==acme", true),
            ("tenancy.dev/customer!=acme", false),
            ("tenancy.dev/customer in (acme,globex)", true),
            ("tenancy.dev/customer in (globex)", false),
            ("tenancy.dev/customer notin (globex)", true),
            ("tenancy.dev/customer", true),
            ("!tenancy.dev/customer", false),
            ("other", false),
            ("!other,tenancy.dev/customer in (acme)", true),
        ];
        for (input, want) in cases {
            let reqs = parse_labels(input).unwrap();
            assert_eq!(reqs.iter().all(|r| r.matches(&labels)), want, "{input}");
        }
        assert!(parse_labels("a in b").is_err());
    }

    #[test]
    fn orders() {
        assert_eq!(Order::parse("").unwrap(), Order::default());
        assert_eq!(
            Order::parse("-created").unwrap(),
            Order {
                key: OrderKey::Created,
                descending: true
            }
        );
        assert!(
            Order::parse("size")
                .unwrap_err()
                .contains("name, created or customer")
        );
    }
}
