//! The members group: `members`, `add-member`, `expire`, `remove-member`, `accept`.

use clap::{ArgGroup, Args};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tenancy_operator::api::vocabulary::{annotations, labels};
use tenancy_operator::api::{
    ProjectMembership, ProjectMembershipSpec, ProjectRole, Subject, SubjectKind,
};

use crate::client::{self, Connection};
use crate::dates;
use crate::output::{self, Format, Table};

#[derive(Args, Debug, Default, Clone)]
#[command(group(ArgGroup::new("scope").required(true).args(["project", "customer"])))]
pub struct MembersArgs {
    /// The project whose members to list.
    pub project: Option<String>,
    /// List the customer's owners and support and the members of all its projects.
    #[arg(long, value_name = "C")]
    pub customer: Option<String>,
    /// Only this role (Manager, Administrator, Member, CustomerOwner, CustomerSupport).
    #[arg(long, value_name = "R")]
    pub role: Option<String>,
    /// Only this user, group or ServiceAccount name.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Only roles that end before T (a date, an RFC 3339 time or a duration from now).
    #[arg(long, value_name = "T")]
    pub expiring_before: Option<String>,
}

#[derive(Args, Debug)]
pub struct AddMemberArgs {
    pub project: String,
    /// A user (`carol@acme.example`), `group:NAME`, or `serviceaccount:NAMESPACE:NAME`.
    pub subject: String,
    /// Manager, Administrator or Member.
    #[arg(long, value_parser = ["Manager", "Administrator", "Member"])]
    pub role: String,
    /// The role ends at T (a date, an RFC 3339 time or a duration like 30d); default: never.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("when").required(true).args(["at", "never"])))]
pub struct ExpireArgs {
    pub project: String,
    pub subject: String,
    /// The role ends at T (a date, an RFC 3339 time or a duration like 30d).
    #[arg(long, value_name = "T")]
    pub at: Option<String>,
    /// The role never ends.
    #[arg(long)]
    pub never: bool,
}

#[derive(Args, Debug)]
pub struct RemoveMemberArgs {
    pub project: String,
    pub subject: String,
}

#[derive(Args, Debug)]
pub struct AcceptArgs {
    pub project: String,
}

/// A subject as typed: a user name, `user:NAME`, `group:NAME`, `serviceaccount:NS:NAME` (or
/// `sa:NS:NAME`), or a ServiceAccount's username `system:serviceaccount:NS:NAME`.
pub fn parse_subject(s: &str) -> Result<Subject, String> {
    let subject = |kind, name: &str, namespace: Option<&str>| Subject {
        kind,
        name: name.to_string(),
        namespace: namespace.map(String::from),
    };
    let sa = |rest: &str| -> Result<Subject, String> {
        match rest.split_once(':') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains(':') => {
                Ok(subject(SubjectKind::ServiceAccount, name, Some(ns)))
            }
            _ => Err(format!(
                "subject {s:?}: a ServiceAccount is serviceaccount:NAMESPACE:NAME"
            )),
        }
    };
    let parsed = if let Some(rest) = s.strip_prefix("system:serviceaccount:") {
        sa(rest)?
    } else if let Some(rest) = s
        .strip_prefix("serviceaccount:")
        .or_else(|| s.strip_prefix("sa:"))
    {
        sa(rest)?
    } else if let Some(name) = s.strip_prefix("group:") {
        subject(SubjectKind::Group, name, None)
    } else if let Some(name) = s.strip_prefix("user:") {
        subject(SubjectKind::User, name, None)
    } else {
        subject(SubjectKind::User, s, None)
    };
    if parsed.name.trim().is_empty() {
        return Err(format!(
            "subject {s:?}: name a user, group:NAME or serviceaccount:NAMESPACE:NAME"
        ));
    }
    Ok(parsed)
}

/// The name of a new membership for a subject: a DNS label from its name, with its kind for
/// groups and ServiceAccounts, and a token of the whole when it had to be shortened or changed.
pub fn membership_name(s: &Subject) -> String {
    let base = match s.kind {
        SubjectKind::User => s.name.clone(),
        SubjectKind::Group => format!("group-{}", s.name),
        SubjectKind::ServiceAccount => format!(
            "sa-{}-{}",
            s.namespace.as_deref().unwrap_or_default(),
            s.name
        ),
    };
    let mut clean: String = base
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while clean.contains("--") {
        clean = clean.replace("--", "-");
    }
    let clean = clean.trim_matches('-').to_string();
    if clean == base && clean.len() <= 63 {
        return clean;
    }
    let mut head: String = clean.chars().take(54).collect();
    head = head.trim_matches('-').to_string();
    let token = tenancy_operator::api::name_token(&format!("{}:{}", s.kind.as_str(), s.username()));
    if head.is_empty() {
        format!("m-{token}")
    } else {
        format!("{head}-{token}")
    }
}

/// The views request for `members`.
pub fn query(a: &MembersArgs, now: Timestamp) -> Result<Vec<(String, String)>, String> {
    let mut fields = Vec::new();
    let mut label = String::new();
    if let Some(p) = &a.project {
        fields.push(format!("project={p}"));
    }
    if let Some(c) = &a.customer {
        label = format!("{}={c}", labels::CUSTOMER);
    }
    if let Some(r) = &a.role {
        let known = [
            "Manager",
            "Administrator",
            "Member",
            "CustomerOwner",
            "CustomerSupport",
        ];
        if !known.contains(&r.as_str()) {
            return Err(format!("--role {r:?}: one of {}", known.join(", ")));
        }
        fields.push(format!("role={r}"));
    }
    if let Some(u) = &a.user {
        let s = parse_subject(u)?;
        fields.push(format!("subject.name={}", s.name));
    }
    if let Some(t) = &a.expiring_before {
        let t = dates::parse_time("--expiring-before", t, now)?;
        fields.push(format!("expiresBefore={}", dates::rfc3339(t)));
    }
    Ok(vec![
        ("fieldSelector".into(), fields.join(",")),
        ("labelSelector".into(), label),
    ])
}

/// The table of `members` items.
pub fn table(items: &[Value]) -> Table {
    let mut t = Table::new(&[
        ("SCOPE", false),
        ("SUBJECT", false),
        ("KIND", false),
        ("ROLE", false),
        ("EXPIRES", false),
        ("PHASE", false),
        ("CUSTOMER", true),
        ("NAME", true),
    ]);
    for m in items {
        let scope = format!(
            "{}/{}",
            m["scope"]["kind"].as_str().unwrap_or("").to_lowercase(),
            m["scope"]["name"].as_str().unwrap_or("")
        );
        let mut subject = output::text(&m["subject"]["name"]);
        if let Some(ns) = m["subject"]["namespace"].as_str() {
            subject = format!("{ns}/{subject}");
        }
        t.rows.push(vec![
            scope,
            subject,
            output::text(&m["subject"]["kind"]),
            output::text(&m["role"]),
            match &m["expirationTime"] {
                Value::String(s) => s.clone(),
                _ => "never".into(),
            },
            output::text(&m["phase"]),
            output::text(&m["customer"]),
            output::text(&m["metadata"]["name"]),
        ]);
    }
    t
}

pub async fn list(conn: &Connection, out: Format, a: MembersArgs) -> Result<(), String> {
    let q = query(&a, Timestamp::now())?;
    let client = client::connect(conn).await?;
    let items = client::list_view(&client, "members", &q).await?;
    if items.is_empty()
        && let Some(p) = &a.project
        && client::my_project(&client, p, false).await?.is_none()
    {
        return Err(format!(
            "project {p:?} is not one you may see (`kubectl tenancy projects` lists yours)"
        ));
    }
    output::print_items(out, &items, "member", "No members match.", table)
}

/// Of a project's memberships, the one that holds `subject`'s role: the one named as
/// `add-member` names it if there are several, else the first by name.
pub fn pick<'a>(
    memberships: impl IntoIterator<Item = &'a ProjectMembership>,
    subject: &Subject,
) -> Option<String> {
    let mut names: Vec<String> = memberships
        .into_iter()
        .filter(|m| {
            m.spec.subject.kind == subject.kind
                && m.spec.subject.name == subject.name
                && (subject.kind != SubjectKind::ServiceAccount
                    || m.spec.subject.namespace == subject.namespace)
        })
        .filter_map(|m| m.metadata.name.clone())
        .collect();
    names.sort();
    let usual = membership_name(subject);
    names
        .iter()
        .position(|n| *n == usual)
        .map(|i| names.swap_remove(i))
        .or_else(|| names.into_iter().next())
}

/// The membership in `project` that holds `subject`'s role: read from the API where the
/// requester may list the project's memberships (its members, managers, the customer's owners
/// and support, staff), so a role given a moment ago counts at once; else found through the
/// views.
async fn find(client: &kube::Client, project: &str, subject: &Subject) -> Result<String, String> {
    let not_held = || {
        format!(
            "{} {} holds no role in project {project} that you may see (`kubectl tenancy members {project}` lists them)",
            subject.kind.as_str(),
            subject.name
        )
    };
    let api: Api<ProjectMembership> = Api::namespaced(client.clone(), project);
    match api.list(&ListParams::default()).await {
        Ok(list) if !list.items.is_empty() => {
            return pick(&list.items, subject).ok_or_else(not_held);
        }
        // No membership there, or none the requester may list: the views decide whether the
        // project is one they may see at all.
        Ok(_) => {}
        Err(e) if matches!(client::api_error(&e).0, 401 | 403 | 404) => {}
        Err(e) => return Err(client::write_error("reading the memberships", &e)),
    }
    let q = vec![(
        "fieldSelector".to_string(),
        format!(
            "project={project},subject.name={},subject.kind={}",
            subject.name,
            subject.kind.as_str()
        ),
    )];
    let items = client::list_view(client, "members", &q).await?;
    let prefix = format!("project.{project}.");
    items
        .iter()
        .filter(|m| m["subject"]["namespace"].as_str() == subject.namespace.as_deref())
        .find_map(|m| {
            m["metadata"]["name"]
                .as_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .map(String::from)
        })
        .ok_or_else(not_held)
}

fn print_membership(out: Format, m: &ProjectMembership, done: &str) -> Result<(), String> {
    match out {
        Format::Json | Format::Yaml => {
            output::print_value(out, &serde_json::to_value(m).map_err(|e| e.to_string())?)
        }
        Format::Name => {
            println!(
                "projectmembership.tenancy.dev/{}",
                m.metadata.name.as_deref().unwrap_or("")
            );
            Ok(())
        }
        _ => {
            println!("{done}");
            Ok(())
        }
    }
}

fn until_text(t: &Option<Time>) -> String {
    t.as_ref()
        .map(|t| format!("until {}", dates::rfc3339(t.0)))
        .unwrap_or_else(|| "with no end".into())
}

pub async fn add(conn: &Connection, out: Format, a: AddMemberArgs) -> Result<(), String> {
    let subject = parse_subject(&a.subject)?;
    let role: ProjectRole =
        serde_json::from_value(json!(a.role)).map_err(|_| format!("--role {:?}", a.role))?;
    let until = a
        .until
        .as_deref()
        .map(|t| dates::parse_time("--until", t, Timestamp::now()))
        .transpose()?
        .map(Time);
    let name = membership_name(&subject);
    let mut m = ProjectMembership::new(
        &name,
        ProjectMembershipSpec {
            subject: subject.clone(),
            role,
            expiration_time: until.clone(),
        },
    );
    m.metadata.namespace = Some(a.project.clone());
    let client = client::connect(conn).await?;
    let api: Api<ProjectMembership> = Api::namespaced(client, &a.project);
    let created = api.create(&PostParams::default(), &m).await.map_err(|e| {
        let (code, message) = client::api_error(&e);
        if code == 409 && message.contains("already exists") {
            format!(
                "{} already has membership {name} in project {}: change when it ends with `kubectl tenancy expire {} {}`, or remove it first",
                subject.name, a.project, a.project, a.subject
            )
        } else if code == 404 && message.contains("namespaces") {
            format!(
                "project {} has no namespace yet (or does not exist): `kubectl tenancy projects` lists yours",
                a.project
            )
        } else {
            client::write_error(
                &format!("adding {} to project {}", subject.name, a.project),
                &e,
            )
        }
    })?;
    print_membership(
        out,
        &created,
        &format!(
            "{} {} is {} in project {} {} (membership {name})",
            subject.kind.as_str(),
            subject.name,
            role.as_str(),
            a.project,
            until_text(&until)
        ),
    )
}

pub async fn expire(conn: &Connection, out: Format, a: ExpireArgs) -> Result<(), String> {
    let subject = parse_subject(&a.subject)?;
    let at = if a.never {
        None
    } else {
        let t = a.at.as_deref().unwrap_or_default();
        Some(dates::parse_time("--at", t, Timestamp::now())?)
    };
    let client = client::connect(conn).await?;
    let name = find(&client, &a.project, &subject).await?;
    let api: Api<ProjectMembership> = Api::namespaced(client, &a.project);
    let patch = json!({"spec": {"expirationTime": at.map(dates::rfc3339)}});
    let m = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            client::write_error(
                &format!(
                    "changing when {} leaves project {}",
                    subject.name, a.project
                ),
                &e,
            )
        })?;
    print_membership(
        out,
        &m,
        &format!(
            "{} {} keeps {} in project {} {}",
            subject.kind.as_str(),
            subject.name,
            m.spec.role.as_str(),
            a.project,
            until_text(&m.spec.expiration_time)
        ),
    )
}

pub async fn remove(conn: &Connection, a: RemoveMemberArgs) -> Result<(), String> {
    let subject = parse_subject(&a.subject)?;
    let client = client::connect(conn).await?;
    let name = find(&client, &a.project, &subject).await?;
    let api: Api<ProjectMembership> = Api::namespaced(client, &a.project);
    api.delete(&name, &DeleteParams::default())
        .await
        .map_err(|e| {
            client::write_error(
                &format!("removing {} from project {}", subject.name, a.project),
                &e,
            )
        })?;
    println!(
        "{} {} holds no role in project {} any more (membership {name} deleted)",
        subject.kind.as_str(),
        subject.name,
        a.project
    );
    Ok(())
}

/// The memberships a SelfSubjectRulesReview says the requester may patch by name: their
/// pending invitations (the operator grants exactly that for each one).
pub fn invitations(rules_review: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for rule in rules_review["status"]["resourceRules"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let has = |key: &str, want: &str| {
            rule[key]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == want || x == "*"))
        };
        if has("apiGroups", "tenancy.dev")
            && has("resources", "projectmemberships")
            && has("verbs", "patch")
        {
            for n in rule["resourceNames"].as_array().into_iter().flatten() {
                if let Some(n) = n.as_str()
                    && !names.iter().any(|x| x == n)
                {
                    names.push(n.to_string());
                }
            }
        }
    }
    names
}

pub async fn accept(conn: &Connection, a: AcceptArgs) -> Result<(), String> {
    let client = client::connect(conn).await?;
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": a.project},
    });
    let request = http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews")
        .header("content-type", "application/json")
        .body(review.to_string().into_bytes())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| client::write_error("asking what you may do", &e))?;
    let review: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let names = invitations(&review);
    if names.is_empty() {
        let (user, _) = client::whoami(&client).await.unwrap_or_default();
        return Err(format!(
            "{user} has no pending invitation in project {}: invitations are made when a deleted project is recovered with --invite",
            a.project
        ));
    }
    let api: Api<ProjectMembership> = Api::namespaced(client, &a.project);
    let patch = json!({"metadata": {"annotations": {annotations::ACCEPT: "true"}}});
    for name in names {
        let m = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| client::write_error(&format!("accepting membership {name}"), &e))?;
        println!(
            "accepted: {} in project {} (membership {name}; active once the operator has granted it)",
            m.spec.role.as_str(),
            a.project
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_read_as_typed() {
        type Want<'a> = Option<(SubjectKind, &'a str, Option<&'a str>)>;
        let table: &[(&str, Want)] = &[
            (
                "carol@acme.example",
                Some((SubjectKind::User, "carol@acme.example", None)),
            ),
            ("user:carol", Some((SubjectKind::User, "carol", None))),
            ("group:devs", Some((SubjectKind::Group, "devs", None))),
            (
                "serviceaccount:ci:deployer",
                Some((SubjectKind::ServiceAccount, "deployer", Some("ci"))),
            ),
            (
                "sa:ci:deployer",
                Some((SubjectKind::ServiceAccount, "deployer", Some("ci"))),
            ),
            (
                "system:serviceaccount:ci:deployer",
                Some((SubjectKind::ServiceAccount, "deployer", Some("ci"))),
            ),
            ("serviceaccount:deployer", None),
            ("group:", None),
        ];
        for (input, want) in table {
            let got = parse_subject(input).ok();
            let want = want.map(|(kind, name, ns)| Subject {
                kind,
                name: name.into(),
                namespace: ns.map(String::from),
            });
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn membership_names_are_dns_labels_that_do_not_collide() {
        let s = |t: &str| parse_subject(t).unwrap();
        assert_eq!(membership_name(&s("carol")), "carol");
        assert_eq!(membership_name(&s("group:devs")), "group-devs");
        let email = membership_name(&s("carol@acme.example"));
        assert!(email.starts_with("carol-acme-example-"), "{email}");
        assert_ne!(email, membership_name(&s("carol.acme@example")));
        let sa = membership_name(&s("sa:ci:deployer"));
        assert!(sa.starts_with("sa-ci-deployer"), "{sa}");
        let long = membership_name(&s(&"x".repeat(200)));
        assert!(long.len() <= 63, "{long}");
        for n in [email, sa, long] {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !n.starts_with('-')
                    && !n.ends_with('-'),
                "{n}"
            );
        }
    }

    #[test]
    fn member_filters_become_selectors() {
        let now: Timestamp = "2026-11-15T10:00:00Z".parse().unwrap();
        let a = MembersArgs {
            project: Some("genomics".into()),
            role: Some("Manager".into()),
            user: Some("carol".into()),
            expiring_before: Some("30d".into()),
            ..Default::default()
        };
        let q = query(&a, now).unwrap();
        assert_eq!(
            q[0].1,
            "project=genomics,role=Manager,subject.name=carol,expiresBefore=2026-12-15T10:00:00Z"
        );
        let a = MembersArgs {
            customer: Some("acme".into()),
            ..Default::default()
        };
        assert_eq!(query(&a, now).unwrap()[1].1, "tenancy.dev/customer=acme");
        let a = MembersArgs {
            project: Some("p".into()),
            role: Some("Owner".into()),
            ..Default::default()
        };
        assert!(query(&a, now).unwrap_err().starts_with("--role"));
    }

    #[test]
    fn the_membership_of_a_subject_is_picked_from_the_projects_memberships() {
        let m = |name: &str, subject: &str| {
            let mut m = ProjectMembership::new(
                name,
                ProjectMembershipSpec {
                    subject: parse_subject(subject).unwrap(),
                    role: ProjectRole::Member,
                    expiration_time: None,
                },
            );
            m.metadata.namespace = Some("genomics".into());
            m
        };
        let all = [
            m("zz-carol", "carol"),
            m("carol", "carol"),
            m("a-carol", "carol"),
            m("devs", "group:carol"),
            m("ci", "sa:tools:ci"),
            m("dave", "dave"),
        ];
        let s = |t: &str| parse_subject(t).unwrap();
        assert_eq!(pick(&all, &s("carol")).as_deref(), Some("carol"));
        assert_eq!(pick(&all[..1], &s("carol")).as_deref(), Some("zz-carol"));
        assert_eq!(pick(&all[..3], &s("user:carol")).as_deref(), Some("carol"));
        assert_eq!(
            pick(&[m("zz", "carol"), m("b", "carol")], &s("carol")).as_deref(),
            Some("b")
        );
        assert_eq!(pick(&all, &s("group:carol")).as_deref(), Some("devs"));
        assert_eq!(pick(&all, &s("sa:tools:ci")).as_deref(), Some("ci"));
        assert_eq!(pick(&all, &s("sa:other:ci")), None);
        assert_eq!(pick(&all, &s("erin")), None);
    }

    #[test]
    fn invitations_are_the_memberships_one_may_patch_by_name() {
        let review = json!({"status": {"resourceRules": [
            {"verbs": ["get", "update", "patch"], "apiGroups": ["tenancy.dev"],
             "resources": ["projectmemberships"], "resourceNames": ["carol"]},
            {"verbs": ["get"], "apiGroups": ["tenancy.dev"],
             "resources": ["projectmemberships"], "resourceNames": ["dave"]},
            {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
             "resources": ["selfsubjectaccessreviews"]},
        ]}});
        assert_eq!(invitations(&review), vec!["carol".to_string()]);
        assert!(invitations(&json!({})).is_empty());
    }
}
