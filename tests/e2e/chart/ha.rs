//! High availability: two operator processes with leader election on one Lease. One leads and
//! reconciles, the other only serves the webhook; the leader is killed with SIGKILL (so it
//! cannot release the Lease) and the other takes over within the lease duration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use serde_json::json;
use tenancy_operator::devcluster::free_port;

use super::rbac::SuiteOperatorPaused;
use super::{
    apply_json, customer_json, delete_project_and_wait, delete_tenancy, eventually, get_json,
    is_ready, project_json, ready_project,
};
use crate::support::{
    Env, Failed, OperatorProcess, TestResult, Trial, http_get, start_operator_as, trial,
    unique_name,
};

pub fn trials(env: &Arc<Env>) -> Vec<Trial> {
    vec![trial(
        env,
        "chart::a_killed_leader_is_replaced_and_a_new_project_is_ready_within_30s",
        a_killed_leader_is_replaced_and_a_new_project_is_ready_within_30s,
    )]
}

/// Seconds a leader's Lease stays valid without renewal, for this test.
const LEASE_SECONDS: u64 = 10;

/// The sum of `tenancy_reconciles_total` on an operator's /metrics (0 when absent).
async fn reconciles(operator: &OperatorProcess) -> Result<f64, Failed> {
    let addr = operator.metrics_addr();
    let answer = tokio::task::spawn_blocking(move || http_get(addr, "/metrics")).await?;
    match answer {
        Some((200, body)) => Ok(body
            .lines()
            .filter(|l| l.starts_with("tenancy_reconciles_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()),
        other => Err(format!("GET /metrics answered {other:?}").into()),
    }
}

/// The Lease's holder identity (`<hostname>-<pid>` for these processes).
async fn holder(client: &Client, namespace: &str, lease: &str) -> Result<Option<String>, String> {
    Ok(Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(lease)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|l| l.spec?.holder_identity))
}

fn holds(identity: &Option<String>, operator: &OperatorProcess) -> bool {
    identity
        .as_deref()
        .is_some_and(|i| i.ends_with(&format!("-{}", operator.pid())))
}

/// The suite's operator is stopped; operators A and B run with `--leader-election` on a fresh
/// Lease of 10 s, each with its own metrics and webhook port (the webhook configurations and the
/// suite's APIService point at B's). A starts first and leads: a project becomes Ready, A's
/// reconcile count grows and B's stays 0. A gets SIGKILL; a project created right after becomes
/// Ready through B within 30 s of its creation, B holds the Lease and reconciles. Prints the
/// measured times.
///
/// The read API: both serve it (on their webhook ports), B where the suite's APIService sends
/// its requests, so the APIService stays Available while B runs (an Unavailable one fails
/// discovery and holds every namespace deletion). Neither gets `--apiservice-name`, so neither
/// touches the APIService's caBundle; and both serve the certificate in the suite's Secret
/// tenancy-system/tenancy-operator-webhook-tls (its CA is the one the caBundle holds), since the
/// certificate is generated only when that Secret is missing.
async fn a_killed_leader_is_replaced_and_a_new_project_is_ready_within_30s(
    env: Arc<Env>,
) -> TestResult {
    let client = env.client().await;
    let local = env.local().clone();
    let lease = unique_name("e2e-failover");
    let common = |webhook_port: u16| {
        vec![
            format!("--namespace={}", local.namespace),
            format!("--webhook-addr=127.0.0.1:{webhook_port}"),
            "--webhook-hosts=127.0.0.1,localhost".to_string(),
            format!("--webhook-config-name={}", local.config_name),
            "--leader-election".to_string(),
            format!("--lease-name={lease}"),
            format!("--lease-duration={LEASE_SECONDS}"),
        ]
    };
    let customer = unique_name("e2e-failover");
    let before = format!("{customer}-before");
    let after = format!("{customer}-after");

    let _paused = SuiteOperatorPaused::new(&env)?;
    let a_args = common(free_port()?);
    let a_args: Vec<&str> = a_args.iter().map(String::as_str).collect();
    let a = start_operator_as(env.cluster(), "operator-ha-a", env.kubeconfig(), &a_args)?;
    eventually(
        "operator A to hold the Lease",
        Duration::from_secs(30),
        || async {
            let h = holder(&client, &local.namespace, &lease).await?;
            if holds(&h, &a) {
                Ok(())
            } else {
                Err(format!("holder {h:?}"))
            }
        },
    )
    .await?;
    // B serves the webhook where the suite's webhook configurations send it: it stays up.
    let b_args = common(local.webhook_port);
    let b_args: Vec<&str> = b_args.iter().map(String::as_str).collect();
    let b = start_operator_as(env.cluster(), "operator-ha-b", env.kubeconfig(), &b_args)?;

    let result = async {
        apply_json(&client, customer_json(&customer, json!({}))).await?;
        apply_json(&client, project_json(&before, json!({"customer": customer}))).await?;
        ready_project(&client, &before).await?;
        let (a_count, b_count) = (reconciles(&a).await?, reconciles(&b).await?);
        if a_count == 0.0 || b_count != 0.0 {
            return Err(format!(
                "the leader A reconciled {a_count} times and the follower B {b_count}: want >0 and 0"
            )
            .into());
        }
        if !holds(&holder(&client, &local.namespace, &lease).await?, &a) {
            return Err("A lost the Lease while it was running".into());
        }

        a.kill();
        let killed = Instant::now();
        apply_json(&client, project_json(&after, json!({"customer": customer}))).await?;
        let created = Instant::now();
        let (mut took_over, mut ready) = (None, None);
        while killed.elapsed() < Duration::from_secs(45) && (took_over.is_none() || ready.is_none()) {
            if took_over.is_none() && holds(&holder(&client, &local.namespace, &lease).await?, &b) {
                took_over = Some(killed.elapsed());
            }
            if ready.is_none()
                && get_json(&client, "projects", None, &after)
                    .await?
                    .is_some_and(|p| is_ready(&p).is_ok())
            {
                ready = Some(created.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "[e2e] failover: lease {LEASE_SECONDS}s; B took the Lease {:?} after A's SIGKILL; the project created after the kill was Ready {:?} after its creation",
            took_over, ready
        );
        let took_over = took_over.ok_or("B never took the Lease over within 45 s")?;
        let ready = ready.ok_or(format!(
            "project {after} was not Ready within 45 s (B took over after {took_over:?})"
        ))?;
        if ready > Duration::from_secs(30) {
            return Err(format!("project {after} became Ready only after {ready:?}").into());
        }
        if reconciles(&b).await? == 0.0 {
            return Err("B leads but has not reconciled".into());
        }
        Ok(())
    }
    .await;
    // Cleanup while B still leads (the finalizers need a running leader).
    let mut cleaned: TestResult = Ok(());
    for p in [&before, &after] {
        if let Err(e) = delete_project_and_wait(&client, p).await {
            cleaned = Err(e);
        }
    }
    let _ = delete_tenancy(&client, "customers", None, &customer).await;
    let _ = Api::<Lease>::namespaced(client.clone(), &local.namespace)
        .delete(&lease, &Default::default())
        .await;
    drop(b);
    drop(a);
    result.and(cleaned)
}
