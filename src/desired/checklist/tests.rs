use serde_json::json;

use super::*;

/// Data protection and export control: personal data? → which categories (review for health
/// data) → a number of subjects within a range; export control with guidance; a follow-up shown
/// for either of two answers (OR); a chain behind a hidden link.
fn spec() -> ChecklistSpec {
    serde_json::from_value(json!({"questions": [
        {"id": "personal-data", "description": "Will you process personal data?", "type": "Boolean", "required": true},
        {"id": "categories", "description": "Which categories?", "type": "MultiSelect", "required": true,
         "options": [{"id": "contact", "label": "Contact"}, {"id": "health", "label": "Health"}],
         "reviewAnswerValue": "health", "operator": "Contains",
         "dependencies": [{"question": "personal-data", "operator": "Equals", "value": true}]},
        {"id": "subjects", "description": "How many data subjects?", "type": "Number", "minValue": 1, "maxValue": 100000,
         "dependencies": [{"question": "categories", "operator": "Contains", "value": "health"}]},
        {"id": "export", "description": "Export-controlled?", "type": "SingleSelect", "required": true,
         "options": [{"id": "no", "label": "No"}, {"id": "dual-use", "label": "Dual use"}, {"id": "military", "label": "Military"}],
         "userGuidance": "Talk to the export control office first.",
         "guidanceAnswerValue": ["dual-use", "military"], "guidanceOperator": "In"},
        {"id": "licence", "description": "Licence number", "type": "Text", "required": true,
         "dependencyLogicOperator": "Or",
         "dependencies": [{"question": "export", "operator": "Equals", "value": "dual-use"},
                          {"question": "export", "operator": "Equals", "value": "military"}]},
        {"id": "ethics", "description": "Ethics approval", "type": "File", "alwaysRequiresReview": true,
         "allowedFileTypes": [".pdf"], "allowedMimeTypes": ["application/pdf"], "maxFileSizeMB": 10,
         "dependencies": [{"question": "subjects", "operator": "GreaterThan", "value": 1000}]},
        {"id": "start", "description": "Start", "type": "Date", "alwaysShowGuidance": true, "userGuidance": "Any day."}
    ]})).unwrap()
}

fn answers(v: serde_json::Value) -> Answers {
    serde_json::from_value(v).unwrap()
}

#[test]
fn operators_compare_as_documented() {
    use Operator::*;
    let cases = [
        (Equals, json!(true), json!(true), true),
        (Equals, json!(3), json!(3.0), true),
        (Equals, json!("a"), json!("b"), false),
        (NotEquals, json!("a"), json!("b"), true),
        (Contains, json!(["x", "health"]), json!("health"), true),
        (Contains, json!(["x"]), json!("health"), false),
        (Contains, json!("health data"), json!("health"), true),
        (In, json!("dual-use"), json!(["dual-use", "military"]), true),
        (In, json!("no"), json!(["dual-use", "military"]), false),
        (NotIn, json!("no"), json!(["dual-use"]), true),
        // On a MultiSelect answer: any chosen option among the values / none of them.
        (
            In,
            json!(["contact", "genetic"]),
            json!(["health", "genetic"]),
            true,
        ),
        (In, json!(["contact"]), json!(["health", "genetic"]), false),
        (
            NotIn,
            json!(["contact"]),
            json!(["health", "genetic"]),
            true,
        ),
        (
            NotIn,
            json!(["contact", "health"]),
            json!(["health", "genetic"]),
            false,
        ),
        (LessThan, json!(5), json!(10), true),
        (LessThan, json!(10), json!(10), false),
        (GreaterThan, json!(1001), json!(1000), true),
        (GreaterThan, json!("2027-02-01"), json!("2027-01-31"), true),
        (LessThan, json!(true), json!(1), false),
    ];
    for (op, a, v, want) in cases {
        assert_eq!(compare(op, &a, &v), want, "{a} {op:?} {v}");
    }
}

#[test]
fn questions_show_as_their_dependencies_say() {
    let s = spec();
    let ids = |a: serde_json::Value| -> Vec<String> {
        visible(&s, &answers(a))
            .into_iter()
            .map(|q| q.id.clone())
            .collect()
    };
    let cases = [
        (json!({}), vec!["personal-data", "export", "start"]),
        (
            json!({"personal-data": false}),
            vec!["personal-data", "export", "start"],
        ),
        (
            json!({"personal-data": true}),
            vec!["personal-data", "categories", "export", "start"],
        ),
        // AND chain: subjects needs health among the categories.
        (
            json!({"personal-data": true, "categories": ["health"]}),
            vec!["personal-data", "categories", "subjects", "export", "start"],
        ),
        (
            json!({"personal-data": true, "categories": ["health"], "subjects": 5000}),
            vec![
                "personal-data",
                "categories",
                "subjects",
                "export",
                "ethics",
                "start",
            ],
        ),
        // The chain closes behind a hidden link: personal data no → categories hidden → the
        // rest too, whatever was answered further down.
        (
            json!({"personal-data": false, "categories": ["health"], "subjects": 5000}),
            vec!["personal-data", "export", "start"],
        ),
        // OR: the licence is asked for either answer.
        (
            json!({"export": "dual-use"}),
            vec!["personal-data", "export", "licence", "start"],
        ),
        (
            json!({"export": "military"}),
            vec!["personal-data", "export", "licence", "start"],
        ),
        (
            json!({"export": "no"}),
            vec!["personal-data", "export", "start"],
        ),
    ];
    for (a, want) in cases {
        assert_eq!(ids(a.clone()), want, "{a}");
    }
    assert_eq!(initially_visible(&s), ["personal-data", "export", "start"]);
}

#[test]
fn answers_are_refused_naming_the_question_and_the_fix() {
    let s = spec();
    let ok = json!({"personal-data": true, "categories": ["contact"], "export": "no"});
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"export": "no"}),
            "spec.checklistAnswers.personal-data: question personal-data (\"Will you process personal data?\") is required",
        ),
        (
            json!({"personal-data": false, "export": "no", "categories": ["contact"]}),
            "spec.checklistAnswers.categories: question categories (\"Which categories?\") is not asked given the other answers",
        ),
        (
            json!({"personal-data": true, "categories": ["contact"], "export": "no", "colour": "red"}),
            "the checklist has no question \"colour\"",
        ),
        (
            json!({"personal-data": "yes", "export": "no"}),
            "must be true or false",
        ),
        (
            json!({"personal-data": true, "categories": ["health"], "subjects": 0, "export": "no"}),
            "0 is below the minimum 1",
        ),
        (
            json!({"personal-data": true, "categories": ["health"], "subjects": 200000, "export": "no"}),
            "200000 is above the maximum 100000",
        ),
        (
            json!({"personal-data": true, "categories": ["genetic"], "export": "no"}),
            "\"genetic\" is not one of the options (contact, health)",
        ),
        (
            json!({"personal-data": true, "categories": ["contact", "contact"], "export": "no"}),
            "chosen twice",
        ),
        (
            json!({"personal-data": false, "export": "maybe"}),
            "\"maybe\" is not one of the options (no, dual-use, military)",
        ),
        (
            json!({"personal-data": false, "export": "no", "start": "next week"}),
            "must be a date YYYY-MM-DD",
        ),
        (
            json!({"personal-data": false, "export": "dual-use"}),
            "spec.checklistAnswers.licence: question licence (\"Licence number\") is required",
        ),
        (
            json!({"personal-data": true, "categories": ["health"], "subjects": 5000, "export": "no",
                "ethics": {"name": "approval.docx", "url": "https://x", "mimeType": "application/pdf", "sizeMB": 1}}),
            "only .pdf files are accepted",
        ),
        (
            json!({"personal-data": true, "categories": ["health"], "subjects": 5000, "export": "no",
                "ethics": {"name": "a.pdf", "url": "https://x", "mimeType": "text/plain", "sizeMB": 1}}),
            "MIME type \"text/plain\" is not one of application/pdf",
        ),
        (
            json!({"personal-data": true, "categories": ["health"], "subjects": 5000, "export": "no",
                "ethics": {"name": "a.pdf", "url": "https://x", "mimeType": "application/pdf", "sizeMB": 11}}),
            "11 MB, at most 10 MB allowed",
        ),
        (
            json!({"personal-data": true, "categories": ["health"], "subjects": 5000, "export": "no",
                "ethics": {"name": "a.pdf", "mimeType": "application/pdf", "sizeMB": 1}}),
            "give exactly one of url, secretKeyRef",
        ),
    ];
    assert!(evaluate(&s, &answers(ok)).problems.is_empty());
    for (a, want) in cases {
        let e = evaluate(&s, &answers(a.clone()));
        assert!(
            e.problems.iter().any(|p| p.contains(want)),
            "{a}: want {want:?}, got {:?}",
            e.problems
        );
    }
}

#[test]
fn review_and_guidance_follow_their_triggers() {
    let s = spec();
    let cases: Vec<(serde_json::Value, Vec<&str>, Vec<&str>)> = vec![
        (
            json!({"personal-data": false, "export": "no"}),
            vec![],
            vec!["start"],
        ),
        (
            json!({"personal-data": true, "categories": ["contact"], "export": "no"}),
            vec![],
            vec!["start"],
        ),
        (
            json!({"personal-data": true, "categories": ["contact", "health"], "export": "no"}),
            vec!["categories"],
            vec!["start"],
        ),
        (
            json!({"personal-data": false, "export": "dual-use", "licence": "L-1", "start": "2027-01-01"}),
            vec![],
            vec!["export", "start"],
        ),
        (
            json!({"personal-data": true, "categories": ["health"], "subjects": 5000, "export": "no",
                "ethics": {"name": "a.pdf", "url": "https://x", "mimeType": "application/pdf", "sizeMB": 1}}),
            vec!["categories", "ethics"],
            vec!["start"],
        ),
    ];
    for (a, review, guidance) in cases {
        let e = evaluate(&s, &answers(a.clone()));
        assert!(e.problems.is_empty(), "{a}: {:?}", e.problems);
        assert_eq!(e.needs_review, review, "{a}");
        let guided: Vec<&str> = e
            .guidance
            .iter()
            .map(|g| g.split(':').next().unwrap())
            .collect();
        assert_eq!(guided, guidance, "{a}");
    }
    let e = evaluate(
        &s,
        &answers(json!({"personal-data": true, "categories": ["contact"], "export": "no"})),
    );
    assert_eq!((e.answered, e.required), (3, 3));
}

#[test]
fn checklists_that_cannot_work_are_refused_naming_the_field() {
    let with = |questions: serde_json::Value| -> Vec<String> {
        spec_problems(&serde_json::from_value(json!({"questions": questions})).unwrap())
    };
    assert!(
        spec_problems(&spec()).is_empty(),
        "{:?}",
        spec_problems(&spec())
    );
    let cycle = with(json!([
        {"id": "a", "description": "A", "type": "Boolean", "dependencies": [{"question": "b", "operator": "Equals", "value": true}]},
        {"id": "b", "description": "B", "type": "Boolean", "dependencies": [{"question": "a", "operator": "Equals", "value": true}]},
    ]));
    assert!(
        cycle
            .iter()
            .any(|p| p.contains("dependency cycle (a → b → a)")),
        "{cycle:?}"
    );
    let unknown = with(json!([
        {"id": "a", "description": "A", "type": "Boolean", "dependencies": [{"question": "zz", "operator": "Equals", "value": true}]},
    ]));
    assert!(
        unknown[0].starts_with("spec.questions[0].dependencies[0].question: \"zz\""),
        "{unknown:?}"
    );
    let bad_option = with(json!([
        {"id": "a", "description": "A", "type": "SingleSelect", "options": [{"id": "x", "label": "X"}]},
        {"id": "b", "description": "B", "type": "Boolean", "dependencies": [{"question": "a", "operator": "In", "value": ["x", "y"]}]},
    ]));
    assert!(
        bad_option[0].contains("\"y\" is not an option of question \"a\""),
        "{bad_option:?}"
    );
    let not_list = with(json!([
        {"id": "a", "description": "A", "type": "Text"},
        {"id": "b", "description": "B", "type": "Boolean", "dependencies": [{"question": "a", "operator": "In", "value": "x"}]},
    ]));
    assert!(
        not_list[0].contains("In needs a list of values"),
        "{not_list:?}"
    );
    let range = with(
        json!([{"id": "n", "description": "N", "type": "Number", "minValue": 5, "maxValue": 1}]),
    );
    assert!(
        range[0].contains("minValue 5 is greater than maxValue 1"),
        "{range:?}"
    );
    // A cycle hides its questions rather than looping.
    let looped: ChecklistSpec = serde_json::from_value(json!({"questions": [
        {"id": "a", "description": "A", "type": "Boolean", "dependencies": [{"question": "a", "operator": "Equals", "value": true}]},
    ]})).unwrap();
    assert!(visible(&looped, &Answers::new()).is_empty());
}

#[test]
fn a_review_covers_the_answers_it_saw() {
    let a = answers(json!({"x": 1, "y": ["a"]}));
    let b = answers(json!({"y": ["a"], "x": 1}));
    let c = answers(json!({"x": 2, "y": ["a"]}));
    assert_eq!(digest(&a), digest(&b));
    assert_ne!(digest(&a), digest(&c));
}
