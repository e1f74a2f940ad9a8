//! kubectl's connection conventions (`KUBECONFIG`, `--kubeconfig`, `--context`, `--as`,
//! `--as-group`), requests to `views.tenancy.dev` with paging handled, and errors that say what
//! to do.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use tenancy_operator::views;

/// How to reach the cluster, as kubectl takes it.
#[derive(Args, Debug, Clone, Default)]
pub struct Connection {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Username to impersonate for the operation.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// Group to impersonate for the operation (repeat for several).
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_group: Vec<String>,
}

/// A client for the cluster kubectl would talk to, impersonating as asked.
pub async fn connect(c: &Connection) -> Result<Client, String> {
    let options = KubeConfigOptions {
        context: c.context.clone(),
        ..Default::default()
    };
    let mut config = match &c.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| config_error(&e.to_string(), c))?
        }
        None => match Kubeconfig::read() {
            Ok(kubeconfig) => Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| config_error(&e.to_string(), c))?,
            Err(read) => Config::incluster().map_err(|_| {
                format!(
                    "no kubeconfig ({read}): set KUBECONFIG or pass --kubeconfig, e.g. --kubeconfig ~/.kube/config"
                )
            })?,
        },
    };
    if let Some(user) = &c.as_user {
        config.auth_info.impersonate = Some(user.clone());
    }
    if !c.as_group.is_empty() {
        if c.as_user.is_none() {
            return Err("--as-group needs --as: impersonating groups requires a user".into());
        }
        config.auth_info.impersonate_groups = Some(c.as_group.clone());
    }
    config.read_timeout = Some(Duration::from_secs(60));
    Client::try_from(config).map_err(|e| format!("cannot build a client: {e}"))
}

fn config_error(e: &str, c: &Connection) -> String {
    match &c.context {
        Some(ctx) if e.contains(ctx.as_str()) || e.to_lowercase().contains("context") => format!(
            "--context {ctx}: {e}; `kubectl config get-contexts` lists the contexts of your kubeconfig"
        ),
        _ => format!("the kubeconfig cannot be used: {e}"),
    }
}

/// What an API error means for whoever typed the command, and what to do about it.
pub fn explain(code: u16, message: &str, views_request: bool) -> String {
    let not_found_path = message.contains("could not find the requested resource")
        || message.contains("the server could not find");
    match code {
        404 if views_request && not_found_path => format!(
            "{} is not served by this cluster: install or upgrade the tenancy-operator chart (helm upgrade --install tenancy-operator charts/tenancy-operator -n tenancy-system)",
            views::GROUP
        ),
        404 if not_found_path => {
            "tenancy.dev is not served by this cluster: install or upgrade the tenancy-operator chart (its CRDs)".into()
        }
        503 if views_request => format!(
            "{} is unavailable right now ({message}): the operator may be starting; try again in a moment (`kubectl get apiservice {}.{}` says why)",
            views::GROUP,
            views::VERSION,
            views::GROUP
        ),
        401 => format!(
            "not authenticated ({message}): check the user of your kubeconfig context, or log in again"
        ),
        410 => format!("{message}: run the command again"),
        _ => message.to_string(),
    }
}

/// The HTTP code and message of an error from kube-apiserver.
pub fn api_error(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message.clone()),
        other => (0, other.to_string()),
    }
}

/// An error from a write, as shown to the user (the webhook's message is the reason).
pub fn write_error(what: &str, e: &kube::Error) -> String {
    let (code, message) = api_error(e);
    if code == 0 {
        return format!("{what}: {message}");
    }
    format!("{what}: {} (HTTP {code})", explain(code, &message, false))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The URL of a views resource with its query.
pub fn views_url(resource: &str, query: &[(String, String)]) -> String {
    let mut url = format!("/apis/{}/{}/{resource}", views::GROUP, views::VERSION);
    let q: Vec<String> = query
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if !q.is_empty() {
        url.push('?');
        url.push_str(&q.join("&"));
    }
    url
}

/// How many items each page asks for.
const PAGE: usize = 250;

async fn send(client: &Client, request: http::Request<Vec<u8>>) -> Result<Value, kube::Error> {
    let text = client.request_text(request).await?;
    serde_json::from_str(&text).map_err(kube::Error::SerdeError)
}

/// GETs a views URL, again (up to 10 times, a second apart) while kube-apiserver says the
/// aggregated API is momentarily unavailable.
async fn get_view(client: &Client, url: &str) -> Result<Value, String> {
    let mut attempt = 0;
    loop {
        let request = http::Request::get(url)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        match send(client, request).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let (code, message) = api_error(&e);
                if code == 503 && attempt < 10 {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                return Err(explain(code, &message, true));
            }
        }
    }
}

/// Every item of a views list, page by page (`limit`/`continue`).
pub async fn list_view(
    client: &Client,
    resource: &str,
    query: &[(String, String)],
) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let mut q = query.to_vec();
        q.push(("limit".into(), PAGE.to_string()));
        q.push(("continue".into(), token.clone()));
        let page = get_view(client, &views_url(resource, &q)).await?;
        if let Some(list) = page["items"].as_array() {
            items.extend(list.iter().cloned());
        }
        match page["metadata"]["continue"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_string(),
            _ => return Ok(items),
        }
    }
}

/// POSTs an object to a views resource (`checklistevaluations`).
pub async fn create_view(client: &Client, resource: &str, body: &Value) -> Result<Value, String> {
    let request = http::Request::post(views_url(resource, &[]))
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .map_err(|e| e.to_string())?;
    send(client, request).await.map_err(|e| {
        let (code, message) = api_error(&e);
        explain(code, &message, true)
    })
}

/// The one `myprojects` item named `name` (terminated ones too when `terminated`), if the
/// requester may see it.
pub async fn my_project(
    client: &Client,
    name: &str,
    terminated: bool,
) -> Result<Option<Value>, String> {
    let mut fields = format!("metadata.name={name}");
    if terminated {
        fields.push_str(",status.phase=Terminated");
    }
    let items = list_view(client, "myprojects", &[("fieldSelector".into(), fields)]).await?;
    Ok(items.into_iter().next())
}

/// Who the requester is (as kube-apiserver sees them, impersonation included).
pub async fn whoami(client: &Client) -> Result<(String, Vec<String>), String> {
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
    });
    let request = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .map_err(|e| e.to_string())?;
    let v = send(client, request).await.map_err(|e| {
        let (code, message) = api_error(&e);
        explain(code, &message, false)
    })?;
    let info = &v["status"]["userInfo"];
    let groups = info["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok((info["username"].as_str().unwrap_or("").to_string(), groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_do() {
        let table: &[(u16, &str, bool, &str)] = &[
            (
                404,
                "the server could not find the requested resource",
                true,
                "views.tenancy.dev is not served by this cluster: install or upgrade the tenancy-operator chart",
            ),
            (
                404,
                "the server could not find the requested resource",
                false,
                "tenancy.dev is not served",
            ),
            (
                503,
                "the server is currently unable to handle the request",
                true,
                "try again in a moment",
            ),
            (
                401,
                "Unauthorized",
                false,
                "check the user of your kubeconfig",
            ),
            (
                403,
                "carol may not delete project \"p\": only owners",
                false,
                "carol may not delete project",
            ),
            (
                410,
                "the continue token has expired",
                true,
                "run the command again",
            ),
            (
                404,
                "projects.tenancy.dev \"x\" not found",
                false,
                "projects.tenancy.dev \"x\" not found",
            ),
        ];
        for (code, message, views, want) in table {
            let got = explain(*code, message, *views);
            assert!(got.contains(want), "{code} {message}: {got}");
        }
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(encode("a b,c=d/é"), "a%20b%2Cc%3Dd%2F%C3%A9");
        assert_eq!(
            views_url(
                "myprojects",
                &[
                    ("fieldSelector".into(), "access.canManage=true".into()),
                    ("labelSelector".into(), String::new()),
                    ("orderBy".into(), "-created".into()),
                ]
            ),
            "/apis/views.tenancy.dev/v1alpha1/myprojects?fieldSelector=access.canManage%3Dtrue&orderBy=-created"
        );
        assert_eq!(
            views_url("usage", &[]),
            "/apis/views.tenancy.dev/v1alpha1/usage"
        );
    }
}
