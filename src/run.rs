//! Wiring: the `run` flags, the watches and caches, leader election, the controllers, the
//! webhook and metrics servers, and shutdown. Everything below it is built here and nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;

use crate::controller::{self, Context, Error, archive, customer, membership, project};
use crate::desired::{self, RoleNames};
use crate::ledger::Ledger;
use crate::lifecycle::Clock;
use crate::metrics;
use crate::watch::{UnreadableReport, Watches, inventory};

/// Options of `tenancy-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of the metrics (/metrics) and health (/healthz, /readyz) server.
    #[arg(long, env = "TENANCY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Log format: text or json.
    #[arg(long, env = "TENANCY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Monthly price of one unit of a resource, for the cost estimates in Project and Customer
    /// status: `cpu=20` (per core requested), `memory=4.5` (per GiB), `storage=0.1` (per GiB of
    /// PersistentVolumeClaims), `pods=0.5` (per pod). Repeat it, or separate with commas. None:
    /// no costs.
    #[arg(long = "price", env = "TENANCY_PRICES", value_delimiter = ',')]
    pub prices: Vec<String>,
    /// The currency of --price (e.g. EUR); required with it.
    #[arg(long, env = "TENANCY_CURRENCY", default_value = "")]
    pub currency: String,
    /// `CreditLow` turns True (with a Warning Event under the Notify and Suspend policies) when
    /// this percentage of a project's credit or less remains.
    #[arg(long, env = "TENANCY_CREDIT_LOW_PERCENT", default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub credit_low_percent: u8,
    /// Export month-to-date cost and credit remaining per project as metrics
    /// (`tenancy_project_cost_month_to_date`, `tenancy_project_credit_remaining`,
    /// `tenancy_project_credit_amount`): one series per project, so off by default.
    #[arg(long, env = "TENANCY_USAGE_METRICS")]
    pub usage_metrics: bool,
    /// ClusterRole that the Manager role maps to.
    #[arg(
        long,
        env = "TENANCY_MANAGER_ROLE",
        default_value = "tenancy:project-manager"
    )]
    pub manager_role: String,
    /// ClusterRole that the Administrator role maps to.
    #[arg(
        long,
        env = "TENANCY_ADMINISTRATOR_ROLE",
        default_value = "tenancy:project-administrator"
    )]
    pub administrator_role: String,
    /// ClusterRole that the Member role maps to.
    #[arg(
        long,
        env = "TENANCY_MEMBER_ROLE",
        default_value = "tenancy:project-member"
    )]
    pub member_role: String,
    /// Kinds counted in each project's status, as `resource.group` (core: `pods`). Repeat or
    /// separate with commas. Defaults to pods, deployments, statefulsets, daemonsets, jobs,
    /// cronjobs, services, persistentvolumeclaims and ingresses.
    #[arg(
        long = "count-kind",
        env = "TENANCY_COUNT_KINDS",
        value_delimiter = ','
    )]
    pub count_kinds: Vec<String>,
    /// Custom resource kinds counted in addition to the defaults (`widgets.example.com`).
    #[arg(
        long = "count-extra-kind",
        env = "TENANCY_COUNT_EXTRA_KINDS",
        value_delimiter = ','
    )]
    pub count_extra_kinds: Vec<String>,
    /// How many reconciles of each kind may run at once. A reconcile mostly waits for the
    /// apiserver, so more than the cores: at 8, new projects waited seconds for their namespace
    /// behind the re-reconciles of others (`make bench`).
    #[arg(long, env = "TENANCY_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
    /// Groups whose members are staff (may move projects, set staff-only fields, manage
    /// customers).
    #[arg(
        long,
        env = "TENANCY_STAFF_GROUPS",
        value_delimiter = ',',
        default_value = "tenancy:staff,system:masters"
    )]
    pub staff_groups: Vec<String>,
    /// Users always allowed by the webhook, e.g. the operator's own ServiceAccount
    /// (`system:serviceaccount:<namespace>:<name>`).
    #[arg(long, env = "TENANCY_TRUSTED_USERS", value_delimiter = ',')]
    pub trusted_users: Vec<String>,
    /// Project names nobody may create (a trailing `*` is a prefix), e.g. the namespaces of
    /// platform components; the operator's own namespace is always reserved. Repeat or separate
    /// with commas.
    #[arg(
        long = "reserved-names",
        env = "TENANCY_RESERVED_NAMES",
        value_delimiter = ',',
        default_values_t = crate::admission::DEFAULT_RESERVED_NAMES.iter().map(|s| s.to_string())
    )]
    pub reserved_names: Vec<String>,
    /// The operator's namespace: webhook certificate Secret, quota ledgers, leases.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tenancy-system")]
    pub namespace: String,
    /// Address of the HTTPS admission webhook server.
    #[arg(long, env = "TENANCY_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub webhook_addr: std::net::SocketAddr,
    /// Do not serve the admission webhook.
    #[arg(long, env = "TENANCY_NO_WEBHOOK")]
    pub no_webhook: bool,
    /// Folder holding tls.crt and tls.key (e.g. a cert-manager Secret). Without them a
    /// certificate is generated and shared by the replicas through a Secret.
    #[arg(long, env = "TENANCY_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// Secret (in --namespace) holding the generated webhook certificate.
    #[arg(
        long,
        env = "TENANCY_WEBHOOK_SECRET",
        default_value = "tenancy-operator-webhook-tls"
    )]
    pub webhook_secret: String,
    /// DNS names and IPs the generated certificate is valid for (the webhook Service's names).
    #[arg(
        long,
        env = "TENANCY_WEBHOOK_HOSTS",
        value_delimiter = ',',
        default_value = "tenancy-operator-webhook.tenancy-system.svc,localhost,127.0.0.1"
    )]
    pub webhook_hosts: Vec<String>,
    /// Name of the Validating- and MutatingWebhookConfiguration whose caBundle the operator
    /// keeps equal to its generated CA.
    #[arg(long, env = "TENANCY_WEBHOOK_CONFIG_NAME")]
    pub webhook_config_name: Option<String>,
    /// Do not serve the `views.tenancy.dev` read API (myprojects, members).
    #[arg(long, env = "TENANCY_NO_VIEWS")]
    pub no_views: bool,
    /// The APIService of the read API (`v1alpha1.views.tenancy.dev`) whose caBundle the operator
    /// keeps equal to its generated CA.
    #[arg(long, env = "TENANCY_APISERVICE_NAME")]
    pub apiservice_name: Option<String>,
    /// Elect a leader among replicas through a Lease; only the leader reconciles, every
    /// replica serves the webhook.
    #[arg(long, env = "TENANCY_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "TENANCY_LEASE_NAME", default_value = "tenancy-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: --namespace).
    #[arg(long, env = "TENANCY_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds a leader's Lease stays valid without renewal: how long a dead leader blocks
    /// the others.
    #[arg(long, env = "TENANCY_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// Testing only: a file holding a number of seconds added to the clock, so tests can move
    /// time forward.
    #[arg(long, env = "TENANCY_CLOCK_OFFSET_FILE", hide = true)]
    pub clock_offset_file: Option<PathBuf>,
}

/// Runs the operator until SIGINT/SIGTERM.
pub fn run_blocking(args: RunArgs) -> ExitCode {
    init_tracing(&args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    // Colour only on a terminal: a log file or a log collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(args: RunArgs) -> Result<(), Error> {
    let prices =
        desired::cost::Prices::parse(&args.prices, &args.currency).map_err(Error::Startup)?;
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Startup(format!("no cluster to talk to: {e}")))?;
    let metrics = Arc::new(metrics::Metrics::default());

    let mut w = Watches::new();
    let caches = w.caches();

    let mut kinds: Vec<String> = if args.count_kinds.is_empty() {
        inventory::DEFAULT_COUNTED_KINDS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        args.count_kinds.clone()
    };
    kinds.extend(args.count_extra_kinds.iter().cloned());
    kinds.sort();
    kinds.dedup();
    let inventory = Arc::new(inventory::Inventory::default());
    let (changed_tx, changed_rx) = futures::channel::mpsc::unbounded::<String>();

    let reporter = Reporter {
        controller: "tenancy-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let leader = leadership(&client, &args).await?;
    let ledger = Arc::new(Ledger::new(client.clone(), args.namespace.clone()));
    let ctx = Arc::new(Context {
        leader,
        client: client.clone(),
        config: desired::Config {
            roles: RoleNames {
                manager: args.manager_role.clone(),
                administrator: args.administrator_role.clone(),
                member: args.member_role.clone(),
            },
            prices,
            credit_low_percent: args.credit_low_percent,
        },
        clock: args
            .clock_offset_file
            .clone()
            .map(Clock::with_offset_file)
            .unwrap_or_default(),
        metrics: metrics.clone(),
        reporter,
        caches: caches.clone(),
        inventory: inventory.clone(),
        ledger: ledger.clone(),
        backoff: Default::default(),
        pacer: Default::default(),
        expected: Default::default(),
    });

    // Subscriptions must be taken before the watches start.
    let project_ctrl = project::controller(
        &ctx,
        project::Streams {
            projects: w.projects.subscribe(),
            checklists: w.checklists.subscribe(),
            customers: w.customers.subscribe(),
            customer_credit: w.customers.subscribe(),
            memberships: w.memberships.subscribe(),
            namespaces: w.namespaces.subscribe(),
            role_bindings: w.role_bindings.subscribe(),
            quotas: w.quotas.subscribe(),
            limit_ranges: w.limit_ranges.subscribe(),
            cluster_roles: w.cluster_roles.subscribe(),
            cluster_role_bindings: w.cluster_role_bindings.subscribe(),
            namespace_changes: changed_rx,
        },
        args.concurrency,
    );
    let membership_ctrl = membership::controller(
        &ctx,
        w.memberships.subscribe(),
        w.projects.subscribe(),
        w.namespaces.subscribe(),
        w.role_bindings.subscribe(),
        args.concurrency,
    );
    let customer_ctrl = customer::controller(
        &ctx,
        customer::Streams {
            customers: w.customers.subscribe(),
            projects: w.projects.subscribe(),
            namespaces: w.namespaces.subscribe(),
            cluster_roles: w.cluster_roles.subscribe(),
            cluster_role_bindings: w.cluster_role_bindings.subscribe(),
            ledgers: w.ledgers.subscribe(),
        },
        args.concurrency,
    );
    let checklist_ctrl =
        crate::controller::checklist::controller(&ctx, w.checklists.subscribe(), args.concurrency);
    let usage_ctrl = crate::controller::usage::controller(
        &ctx,
        w.usages.subscribe(),
        w.projects.subscribe(),
        args.concurrency,
    );
    let archive_ctrl = archive::controller(
        &ctx,
        w.namespaces.subscribe(),
        w.customers.subscribe(),
        args.concurrency,
    );

    // What the views index is updated from: every change of a project, customer, membership,
    // namespace or usage record, as its resourceVersion and name.
    let view_changes = {
        use crate::views::Changed;
        use futures::StreamExt;
        fn rv<K: kube::Resource>(o: &K) -> u64 {
            o.meta()
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }
        fn name<K: kube::Resource>(o: &K) -> String {
            o.meta().name.clone().unwrap_or_default()
        }
        futures::stream::select_all([
            w.projects
                .subscribe()
                .map(|o| (rv(o.as_ref()), Changed::Project(name(o.as_ref()))))
                .boxed(),
            w.customers
                .subscribe()
                .map(|o| (rv(o.as_ref()), Changed::Customer(name(o.as_ref()))))
                .boxed(),
            w.memberships
                .subscribe()
                .map(|o| {
                    let ns = o.metadata.namespace.clone().unwrap_or_default();
                    (rv(o.as_ref()), Changed::Membership(ns))
                })
                .boxed(),
            w.namespaces
                .subscribe()
                .map(|o| (rv(o.as_ref()), Changed::Namespace(name(o.as_ref()))))
                .boxed(),
            w.usages
                .subscribe()
                .map(|o| (rv(o.as_ref()), Changed::Usage(name(o.as_ref()))))
                .boxed(),
        ])
    };

    let report: UnreadableReport = {
        let ctx = ctx.clone();
        Arc::new(move |object, kind, u| controller::report_unreadable(&ctx, object, kind, u))
    };
    w.start(&client, &args.namespace, &metrics, report);
    inventory::start(client.clone(), inventory.clone(), &kinds, changed_tx);
    // `/readyz` follows kube-apiserver (and through it etcd), not only the watches.
    tokio::spawn(crate::watch::follow_apiserver(
        client.clone(),
        metrics.clone(),
    ));

    let refresh: Arc<dyn Fn() + Send + Sync> = {
        let (caches, metrics, clock) = (caches.clone(), metrics.clone(), ctx.clock.clone());
        let billing = ctx
            .config
            .prices
            .clone()
            .filter(|_| args.usage_metrics)
            .map(|p| (p, ctx.config.credit_low_percent));
        Arc::new(move || {
            project::record_phases(&caches.projects, &metrics);
            if let Some((prices, low)) = &billing {
                crate::controller::usage::record_metrics(
                    &caches,
                    &metrics,
                    prices,
                    *low,
                    clock.now(),
                );
            }
        })
    };
    let server = tokio::spawn(metrics::serve(args.metrics_addr, metrics.clone(), refresh));

    let mut trusted = crate::admission::Policy::default().trusted_users;
    trusted.extend(args.trusted_users.iter().cloned());
    let admission = Arc::new(crate::admission::server::Admission {
        client: client.clone(),
        caches: caches.clone(),
        inventory: inventory.clone(),
        ledger: ledger.clone(),
        clock: ctx.clock.clone(),
        metrics: metrics.clone(),
        policy: crate::admission::Policy {
            staff_groups: args.staff_groups.clone(),
            trusted_users: trusted,
            reserved_names: args
                .reserved_names
                .iter()
                .cloned()
                .chain([args.namespace.clone()])
                .collect(),
            roles: ctx.config.roles.clone(),
        },
    });
    // One HTTPS server: the admission webhook and the views.tenancy.dev read API.
    let views = crate::views::server::Views::new(
        client.clone(),
        ctx.clock.clone(),
        args.staff_groups.clone(),
        metrics.clone(),
        caches.checklists.clone(),
        crate::views::usage::Billing {
            prices: ctx.config.prices.clone(),
            credit_low_percent: ctx.config.credit_low_percent,
        },
    );
    if !args.no_views {
        tokio::spawn(views.clone().maintain(caches.clone(), view_changes));
        tokio::spawn(views.clone().follow_front_proxy());
    }
    let https = {
        let (args, client, views) = (args.clone(), client.clone(), views.clone());
        let metrics = metrics.clone();
        async move {
            if args.no_webhook && args.no_views {
                metrics.set_serving();
                return std::future::pending::<Result<(), String>>().await;
            }
            let opts = crate::admission::server::WebhookOptions {
                addr: args.webhook_addr,
                cert_dir: args.webhook_cert_dir.clone(),
                namespace: args.namespace.clone(),
                secret_name: args.webhook_secret.clone(),
                hosts: args.webhook_hosts.clone(),
                config_name: args.webhook_config_name.clone(),
            };
            let cert = crate::admission::server::serving_cert(&client, &opts).await?;
            if let Some(ca) = &cert.ca_pem {
                tokio::spawn(crate::admission::server::keep_ca_bundle(
                    client.clone(),
                    opts.config_name.clone().filter(|_| !args.no_webhook),
                    args.apiservice_name.clone().filter(|_| !args.no_views),
                    ca.clone(),
                ));
            }
            let mut router = axum::Router::new();
            if !args.no_webhook {
                router = router.merge(crate::admission::server::routes(admission));
            }
            if !args.no_views {
                router = router.merge(crate::views::server::routes(views.clone()));
            }
            let identity = crate::https::Identity {
                cert_pem: cert.cert_pem,
                key_pem: cert.key_pem,
            };
            // Listening starts at once; failing to listen ends the process.
            metrics.set_serving();
            crate::https::serve(router, opts.addr, identity, views.client_ca.subscribe()).await
        }
    };

    // Reconciles wait for the watch caches to have listed (see `Context::caches_ready`); ready
    // once the counted kinds have too. Say which ones are slow.
    {
        let (caches, metrics, inventory) = (caches.clone(), metrics.clone(), inventory.clone());
        tokio::spawn(async move {
            let pending = Arc::new(Mutex::new(std::collections::BTreeSet::<&'static str>::new()));
            let wait = |name: &'static str, fut: futures::future::BoxFuture<'static, ()>| {
                let pending = pending.clone();
                pending.lock().expect("pending lock").insert(name);
                async move {
                    fut.await;
                    pending.lock().expect("pending lock").remove(name);
                }
            };
            let watches = futures::future::join_all(
                caches
                    .listed()
                    .into_iter()
                    .map(|(name, listed)| wait(name, listed)),
            );
            let watches = {
                let metrics = metrics.clone();
                async move {
                    watches.await;
                    metrics.set_caches_listed();
                }
            };
            let counted = wait("counted kinds", {
                let inv = inventory.clone();
                Box::pin(async move {
                    while !inv.synced() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            });
            let all = futures::future::join(watches, counted);
            tokio::pin!(all);
            loop {
                tokio::select! {
                    _ = &mut all => break,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {
                        let names: Vec<&str> = pending.lock().expect("pending lock").iter().copied().collect();
                        tracing::warn!(waiting_for = ?names, "caches still syncing");
                    }
                }
            }
            metrics.set_ready();
            tracing::info!("caches synced; operator ready");
        });
    }

    tracing::info!(counted_kinds = ?kinds, "tenancy-operator running");
    tokio::select! {
        _ = project_ctrl => tracing::error!("project controller stopped"),
        _ = membership_ctrl => tracing::error!("membership controller stopped"),
        _ = customer_ctrl => tracing::error!("customer controller stopped"),
        _ = archive_ctrl => tracing::error!("archive controller stopped"),
        _ = checklist_ctrl => tracing::error!("checklist controller stopped"),
        _ = usage_ctrl => tracing::error!("usage controller stopped"),
        r = server => return Err(Error::Startup(format!("metrics server stopped: {r:?}"))),
        r = https => return Err(Error::Startup(format!("HTTPS server (webhook, views) stopped: {r:?}"))),
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

/// Whether this replica leads: always, without leader election; otherwise as the Lease says.
/// A leader that loses its Lease exits, so nothing it had in flight writes after a new leader
/// took over; its restart joins as a follower.
async fn leadership(
    client: &Client,
    args: &RunArgs,
) -> Result<tokio::sync::watch::Receiver<bool>, Error> {
    if !args.leader_election {
        let (tx, rx) = tokio::sync::watch::channel(true);
        // Kept for the life of the process: the receiver then never sees a closed channel.
        std::mem::forget(tx);
        return Ok(rx);
    }
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
    let namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| args.namespace.clone());
    let duration = args.lease_duration.max(3);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await
        .map_err(|e| {
            Error::Startup(format!(
                "leader election on Lease {namespace}/{}: {e}",
                args.lease_name
            ))
        })?;
    let (rx, task) = manager.watch().await;
    tracing::info!(identity, lease = %args.lease_name, namespace, "leader election started");
    let mut watch = rx.clone();
    tokio::spawn(async move {
        let mut led = false;
        while watch.changed().await.is_ok() {
            let now = *watch.borrow_and_update();
            if now && !led {
                tracing::info!("became the leader; reconciling everything");
            } else if !now && led {
                tracing::error!("lost the leader Lease; exiting so only the new leader writes");
                std::process::exit(1);
            }
            led = now;
        }
        let _ = task.await;
    });
    Ok(rx)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "tenancy-operator".into())
}
