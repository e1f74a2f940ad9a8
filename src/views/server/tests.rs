use axum::http::HeaderValue;

use super::*;

fn proxy() -> FrontProxy {
    FrontProxy::from_data(&BTreeMap::from([
        (
            "requestheader-client-ca-file".to_string(),
            "PEM".to_string(),
        ),
        (
            "requestheader-allowed-names".to_string(),
            r#"["front-proxy-client"]"#.to_string(),
        ),
        (
            "requestheader-username-headers".to_string(),
            r#"["X-Remote-User"]"#.to_string(),
        ),
        (
            "requestheader-group-headers".to_string(),
            r#"["X-Remote-Group"]"#.to_string(),
        ),
        (
            "requestheader-extra-headers-prefix".to_string(),
            r#"["X-Remote-Extra-"]"#.to_string(),
        ),
    ]))
    .unwrap()
    .unwrap()
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn the_front_proxy_is_read_from_its_config_map() {
    assert_eq!(FrontProxy::from_data(&BTreeMap::new()).unwrap(), None);
    let p = proxy();
    assert_eq!(p.allowed_names, ["front-proxy-client"]);
    assert_eq!(p.group_headers, ["X-Remote-Group"]);
    let broken = BTreeMap::from([
        (
            "requestheader-client-ca-file".to_string(),
            "PEM".to_string(),
        ),
        (
            "requestheader-allowed-names".to_string(),
            "front-proxy-client".to_string(),
        ),
    ]);
    assert!(
        FrontProxy::from_data(&broken)
            .unwrap_err()
            .contains("requestheader-allowed-names")
    );
}

#[test]
fn headers_are_trusted_only_from_the_front_proxys_certificate() {
    let p = proxy();
    let forged = headers(&[
        ("X-Remote-User", "admin"),
        ("X-Remote-Group", "system:masters"),
    ]);
    let cn = |c: &str| Peer {
        common_name: Some(c.to_string()),
    };
    type Case<'a> = (
        &'a str,
        Option<&'a FrontProxy>,
        Peer,
        &'a HeaderMap,
        Result<Option<&'a str>, &'a str>,
    );
    let cases: &[Case<'_>] = &[
        (
            "no certificate",
            Some(&p),
            Peer::default(),
            &forged,
            Err("no client certificate"),
        ),
        (
            "another certificate of the CA",
            Some(&p),
            cn("mallory"),
            &forged,
            Err("not one of the front proxy's allowed names"),
        ),
        (
            "no aggregation layer",
            None,
            cn("front-proxy-client"),
            &forged,
            Err("aggregation layer"),
        ),
        (
            "the front proxy",
            Some(&p),
            cn("front-proxy-client"),
            &forged,
            Ok(Some("admin")),
        ),
        (
            "the front proxy without a user",
            Some(&p),
            cn("front-proxy-client"),
            &HeaderMap::new(),
            Ok(None),
        ),
    ];
    for (what, proxy, peer, h, want) in cases {
        let got = authenticate(*proxy, peer, h);
        match (want, got) {
            (Ok(user), Ok(a)) => assert_eq!(a.map(|a| a.user).as_deref(), *user, "{what}"),
            (Err(msg), Err(e)) => assert!(e.contains(msg), "{what}: {e}"),
            (w, g) => panic!("{what}: want {w:?}, got {g:?}"),
        }
    }
    let any = FrontProxy {
        allowed_names: vec![],
        ..p.clone()
    };
    let two_groups = headers(&[
        ("X-Remote-User", "ann"),
        ("X-Remote-Group", "a"),
        ("X-Remote-Group", "b"),
        ("X-Remote-Extra-Scopes", "x"),
    ]);
    let a = authenticate(Some(&any), &cn("anyone-the-ca-signed"), &two_groups)
        .unwrap()
        .unwrap();
    assert_eq!(a.groups, ["a", "b"]);
    assert_eq!(a.extra["scopes"], ["x"]);
}

fn project_item(name: &str, phase: &str) -> Item {
    Item::Project(Box::new(MyProject {
        api_version: API_VERSION,
        kind: "MyProject",
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Default::default(),
        customer: Default::default(),
        status: super::super::ViewStatus {
            phase: phase.into(),
            ..Default::default()
        },
        access: Default::default(),
    }))
}

#[test]
fn a_watch_sends_what_changed_for_its_viewer() {
    let before: BTreeMap<String, Item> = [("a", "Active"), ("b", "Active")]
        .iter()
        .map(|(n, p)| (n.to_string(), project_item(n, p)))
        .collect();
    let after: BTreeMap<String, Item> = [("b", "Finished"), ("c", "Active")]
        .iter()
        .map(|(n, p)| (n.to_string(), project_item(n, p)))
        .collect();
    let kinds: Vec<(&str, String)> = diff(&before, &after)
        .into_iter()
        .map(|(k, i)| match i {
            Item::Project(p) => (k, p.metadata.name.unwrap()),
            Item::Member(m) => (k, m.metadata.name.unwrap()),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("MODIFIED", "b".into()),
            ("ADDED", "c".into()),
            ("DELETED", "a".into())
        ]
    );
    assert!(diff(&after, &after).is_empty());
    let line = event_line(
        "ADDED",
        &project_item("c", "Active"),
        77,
        None,
        Timestamp::UNIX_EPOCH,
    );
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["object"]["metadata"]["resourceVersion"], "77");
    let mark: Value = serde_json::from_str(&bookmark_line("myprojects", 80, true)).unwrap();
    assert_eq!(mark["type"], "BOOKMARK");
    assert_eq!(
        mark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

fn views() -> Arc<Views> {
    let client = Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
        .expect("a client that is never used");
    Views::new(
        client,
        Clock::default(),
        vec!["tenancy:staff".into()],
        Arc::new(crate::metrics::Metrics::default()),
        crate::watch::Watches::new().caches().checklists,
        Default::default(),
    )
}

#[tokio::test]
async fn pages_belong_to_who_asked_and_nobody_holds_more_than_a_few() {
    let v = views();
    let items = Arc::new(Items::Projects(Vec::new()));
    let ids: Vec<String> = (0..10)
        .map(|_| v.remember("ann", items.clone(), 1))
        .collect();
    let kept = ids
        .iter()
        .filter(|id| v.recall("ann", id).is_some())
        .count();
    assert_eq!(kept, SNAPSHOTS_PER_REQUESTER);
    assert!(v.recall("ann", &ids[9]).is_some(), "the newest is kept");
    assert!(v.recall("ann", &ids[0]).is_none(), "the oldest went first");
    assert!(
        v.recall("bob", &ids[9]).is_none(),
        "another requester's token is not theirs"
    );
    assert!(v.recall("ann", "made-up").is_none());
}
