//! `kubectl tenancy checklist CUSTOMER` and `new-project NAME --customer C`: the customer's
//! creation checklist, asked in order as its dependencies say.
//!
//! The dialogue reads one answer per line from stdin. With a terminal it prompts (on stderr)
//! and asks again after an answer that does not fit; without one (answers piped in, one line
//! per question asked, in the order asked) an answer that does not fit ends the command naming
//! the question. `--answers FILE` (YAML or JSON, question id → answer) skips the dialogue.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::Args;
use jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use tenancy_operator::api::{Checklist, ChecklistSpec, Customer, Project, Question, QuestionType};
use tenancy_operator::desired::checklist::{self, Answers};
use tenancy_operator::views;

use crate::client::{self, Connection};
use crate::dates;
use crate::output::{self, Format, Table};

#[derive(Args, Debug)]
pub struct ChecklistArgs {
    /// The customer whose new projects answer the checklist.
    pub customer: String,
}

#[derive(Args, Debug)]
pub struct NewProjectArgs {
    /// The new project's name (also its namespace's).
    pub name: String,
    /// The customer it belongs to.
    #[arg(long, value_name = "C")]
    pub customer: String,
    /// The display name.
    #[arg(long, value_name = "TEXT")]
    pub display_name: Option<String>,
    /// A description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// The last day (a date or a duration from now like 180d).
    #[arg(long, value_name = "D")]
    pub end_date: Option<String>,
    /// A quota entry, e.g. --quota requests.cpu=4 (repeat for several).
    #[arg(long, value_name = "NAME=QUANTITY")]
    pub quota: Vec<String>,
    /// The checklist's answers from a file (YAML or JSON map of question id to answer; - for
    /// stdin) instead of asking.
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
    /// Do not create anything: print the manifest (with -o yaml or -o json).
    #[arg(long)]
    pub dry_run: bool,
}

/// The questions for the listing: those asked before any answer first, then the others, each
/// with whether it is asked at first.
pub fn listing(spec: &ChecklistSpec) -> Vec<(&Question, bool)> {
    let first: BTreeSet<String> = checklist::initially_visible(spec).into_iter().collect();
    let mut out: Vec<(&Question, bool)> = spec
        .questions
        .iter()
        .filter(|q| first.contains(&q.id))
        .map(|q| (q, true))
        .collect();
    out.extend(
        spec.questions
            .iter()
            .filter(|q| !first.contains(&q.id))
            .map(|q| (q, false)),
    );
    out
}

fn condition(q: &Question) -> String {
    if q.dependencies.is_empty() {
        return "always".into();
    }
    let join = match q.dependency_logic_operator {
        Some(tenancy_operator::api::checklist::LogicOperator::Or) => " or ",
        _ => " and ",
    };
    q.dependencies
        .iter()
        .map(|d| format!("{} {:?} {}", d.question, d.operator, d.value))
        .collect::<Vec<_>>()
        .join(join)
}

pub fn table(spec: &ChecklistSpec) -> Table {
    let mut t = Table::new(&[
        ("ID", false),
        ("TYPE", false),
        ("REQUIRED", false),
        ("ASKED", false),
        ("QUESTION", false),
        ("OPTIONS", true),
        ("GUIDANCE", true),
    ]);
    for (q, first) in listing(spec) {
        t.rows.push(vec![
            q.id.clone(),
            format!("{:?}", q.type_),
            q.required.to_string(),
            if first {
                "first".into()
            } else {
                format!("when {}", condition(q))
            },
            q.description.clone(),
            q.options
                .iter()
                .map(|o| o.id.clone())
                .collect::<Vec<_>>()
                .join(","),
            q.user_guidance.clone().unwrap_or_default(),
        ]);
    }
    t
}

/// The next question to ask: the first one asked given the answers so far that is neither
/// answered nor skipped.
pub fn next_question<'a>(
    spec: &'a ChecklistSpec,
    answers: &Answers,
    skipped: &BTreeSet<String>,
) -> Option<&'a Question> {
    checklist::visible(spec, answers)
        .into_iter()
        .find(|q| !answers.contains_key(&q.id) && !skipped.contains(&q.id))
}

/// The answers to questions still asked (an earlier answer changed may hide later ones).
pub fn prune(spec: &ChecklistSpec, answers: &Answers) -> Answers {
    let shown: BTreeSet<String> = checklist::visible(spec, answers)
        .into_iter()
        .map(|q| q.id.clone())
        .collect();
    answers
        .iter()
        .filter(|(k, _)| shown.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn options_in_order(q: &Question) -> Vec<&tenancy_operator::api::checklist::QuestionOption> {
    let mut o: Vec<_> = q.options.iter().enumerate().collect();
    o.sort_by_key(|(i, o)| (o.order, *i));
    o.into_iter().map(|(_, o)| o).collect()
}

/// The prompt for a question: its text, type, options (numbered) and how to skip it.
pub fn prompt(q: &Question) -> Vec<String> {
    let mut lines = vec![format!(
        "{}{} [{}]",
        q.description,
        if q.required {
            ""
        } else {
            " (optional: empty line skips)"
        },
        q.id
    )];
    match q.type_ {
        QuestionType::Boolean => lines.push("  answer yes or no".into()),
        QuestionType::Number => {
            let range = match (q.min_value, q.max_value) {
                (Some(a), Some(b)) => format!(" from {a} to {b}"),
                (Some(a), None) => format!(" of at least {a}"),
                (None, Some(b)) => format!(" of at most {b}"),
                _ => String::new(),
            };
            lines.push(format!("  a number{range}"));
        }
        QuestionType::Date => lines.push("  a date, YYYY-MM-DD".into()),
        QuestionType::SingleSelect | QuestionType::MultiSelect => {
            for (i, o) in options_in_order(q).iter().enumerate() {
                lines.push(format!("  {}) {} ({})", i + 1, o.label, o.id));
            }
            lines.push(if q.type_ == QuestionType::MultiSelect {
                "  numbers or ids, comma-separated".into()
            } else {
                "  a number or an id".into()
            });
        }
        QuestionType::File | QuestionType::MultipleFiles => lines.push(
            "  a file reference as JSON, e.g. {\"name\": \"dpia.pdf\", \"url\": \"https://...\", \"mimeType\": \"application/pdf\", \"sizeMB\": 1}".into(),
        ),
        QuestionType::Text | QuestionType::TextArea => {}
    }
    lines
}

/// An answer as typed, for a question: `Ok(None)` skips an optional question.
pub fn parse_answer(q: &Question, text: &str) -> Result<Option<Value>, String> {
    let t = text.trim();
    if t.is_empty() {
        return if q.required {
            Err("is required; answer it".into())
        } else {
            Ok(None)
        };
    }
    let pick = |word: &str| -> Result<String, String> {
        let options = options_in_order(q);
        if let Ok(n) = word.parse::<usize>()
            && n >= 1
            && n <= options.len()
        {
            return Ok(options[n - 1].id.clone());
        }
        options
            .iter()
            .find(|o| o.id == word || o.label.eq_ignore_ascii_case(word))
            .map(|o| o.id.clone())
            .ok_or_else(|| {
                format!(
                    "{word:?} is not an option; choose one of {}",
                    options
                        .iter()
                        .map(|o| o.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    };
    let value = match q.type_ {
        QuestionType::Boolean => match t.to_lowercase().as_str() {
            "y" | "yes" | "true" => json!(true),
            "n" | "no" | "false" => json!(false),
            _ => return Err(format!("{t:?} is not yes or no")),
        },
        QuestionType::Number => {
            let n: f64 = t.parse().map_err(|_| format!("{t:?} is not a number"))?;
            if q.min_value.is_some_and(|m| n < m) || q.max_value.is_some_and(|m| n > m) {
                return Err(format!("{n} is out of range"));
            }
            json!(n)
        }
        QuestionType::Date => {
            t.parse::<jiff::civil::Date>()
                .map_err(|_| format!("{t:?} is not a date (YYYY-MM-DD)"))?;
            json!(t)
        }
        QuestionType::SingleSelect => json!(pick(t)?),
        QuestionType::MultiSelect => {
            let ids: Result<Vec<String>, String> = t
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(pick)
                .collect();
            json!(ids?)
        }
        QuestionType::File | QuestionType::MultipleFiles => serde_json::from_str::<Value>(t)
            .map_err(|e| format!("not a JSON file reference: {e}"))?,
        QuestionType::Text | QuestionType::TextArea => json!(t),
    };
    Ok(Some(value))
}

/// Asks the questions in order. `read` gives the next line (None: input ended); `say` shows
/// text; `interactive` asks again after an answer that does not fit instead of failing.
pub fn dialogue(
    spec: &ChecklistSpec,
    mut read: impl FnMut() -> Option<String>,
    mut say: impl FnMut(String),
    interactive: bool,
) -> Result<Answers, String> {
    let mut answers = Answers::new();
    let mut skipped = BTreeSet::new();
    let mut shown_guidance: BTreeSet<String> = BTreeSet::new();
    while let Some(q) = next_question(spec, &answers, &skipped) {
        for line in prompt(q) {
            say(line);
        }
        loop {
            let Some(line) = read() else {
                return Err(format!(
                    "the answers ended before question {} ({:?}) was answered: give one line per question asked",
                    q.id, q.description
                ));
            };
            match parse_answer(q, &line) {
                Ok(Some(v)) => {
                    answers.insert(q.id.clone(), v);
                    break;
                }
                Ok(None) => {
                    skipped.insert(q.id.clone());
                    break;
                }
                Err(why) if interactive => say(format!("  {why}; again:")),
                Err(why) => return Err(format!("question {} ({:?}): {why}", q.id, q.description)),
            }
        }
        for g in checklist::evaluate(spec, &answers).guidance {
            if shown_guidance.insert(g.clone()) {
                say(format!("  guidance: {g}"));
            }
        }
    }
    Ok(prune(spec, &answers))
}

/// The project a new-project command creates.
pub fn project_manifest(
    a: &NewProjectArgs,
    answers: Answers,
    now: Timestamp,
) -> Result<Project, String> {
    let mut hard = BTreeMap::new();
    for q in &a.quota {
        let (k, v) = q
            .split_once('=')
            .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
            .ok_or_else(|| format!("--quota {q:?}: write NAME=QUANTITY, e.g. requests.cpu=4"))?;
        hard.insert(k.trim().to_string(), json!(v.trim()));
    }
    let mut spec = json!({"customer": a.customer});
    if let Some(d) = &a.display_name {
        spec["displayName"] = json!(d);
    }
    if let Some(d) = &a.description {
        spec["description"] = json!(d);
    }
    if let Some(d) = &a.end_date {
        spec["endDate"] = json!(dates::parse_day("--end-date", d, now)?.to_string());
    }
    if !hard.is_empty() {
        spec["quota"] = json!({"hard": hard});
    }
    if !answers.is_empty() {
        spec["checklistAnswers"] = json!(answers);
    }
    let spec = tenancy_operator::api::read(&spec)?;
    let mut p = Project::new(&a.name, spec);
    p.metadata.name = Some(a.name.clone());
    Ok(p)
}

async fn customer_checklist(
    client: &kube::Client,
    customer: &str,
) -> Result<Option<Checklist>, String> {
    let customers: Api<Customer> = Api::all(client.clone());
    let c = customers
        .get_opt(customer)
        .await
        .map_err(|e| client::write_error(&format!("reading customer {customer}"), &e))?;
    let c = c.ok_or_else(|| format!("customer {customer:?} does not exist"))?;
    let Some(name) = c.spec.project_checklist else {
        return Ok(None);
    };
    let checklists: Api<Checklist> = Api::all(client.clone());
    checklists
        .get(&name)
        .await
        .map(Some)
        .map_err(|e| client::write_error(&format!("reading checklist {name}"), &e))
}

pub async fn show(conn: &Connection, out: Format, a: ChecklistArgs) -> Result<(), String> {
    let client = client::connect(conn).await?;
    let Some(c) = customer_checklist(&client, &a.customer).await? else {
        println!(
            "customer {} has no creation checklist: new projects answer no questions",
            a.customer
        );
        return Ok(());
    };
    match out {
        Format::Json | Format::Yaml => {
            output::print_value(out, &serde_json::to_value(&c).map_err(|e| e.to_string())?)
        }
        Format::Name => {
            println!(
                "checklist.tenancy.dev/{}",
                c.metadata.name.unwrap_or_default()
            );
            Ok(())
        }
        _ => {
            if let Some(d) = &c.spec.description {
                println!("{d}\n");
            }
            print!("{}", table(&c.spec).render(out == Format::Wide));
            Ok(())
        }
    }
}

fn answers_from(path: &PathBuf) -> Result<Answers, String> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("--answers {}: {e}", path.display()))?
    };
    serde_yaml::from_str(&text).map_err(|e| {
        format!(
            "--answers {}: a map of question id to answer, e.g. personal-data: true ({e})",
            path.display()
        )
    })
}

pub async fn new_project(conn: &Connection, out: Format, a: NewProjectArgs) -> Result<(), String> {
    let client = client::connect(conn).await?;
    let checklist = customer_checklist(&client, &a.customer).await?;
    let answers = match (&checklist, &a.answers) {
        (_, Some(path)) => answers_from(path)?,
        (None, None) => Answers::new(),
        (Some(c), None) => {
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            let mut lines = stdin.lock().lines();
            eprintln!(
                "customer {} asks checklist {}{}",
                a.customer,
                c.metadata.name.as_deref().unwrap_or_default(),
                if interactive {
                    ""
                } else {
                    " (answers read from stdin, one line per question)"
                }
            );
            dialogue(
                &c.spec,
                || lines.next().and_then(Result::ok),
                |s| {
                    if interactive {
                        eprintln!("{s}")
                    }
                },
                interactive,
            )?
        }
    };
    if let Some(c) = &checklist {
        let name = c.metadata.name.clone().unwrap_or_default();
        let evaluation = client::create_view(
            &client,
            "checklistevaluations",
            &json!({
                "apiVersion": views::API_VERSION, "kind": "ChecklistEvaluation",
                "spec": {"checklist": name, "answers": answers},
            }),
        )
        .await?;
        let strings = |key: &str| -> Vec<String> {
            evaluation["status"][key]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let problems = strings("problems");
        if !problems.is_empty() {
            return Err(format!(
                "the answers to checklist {name} do not fit:\n  {}",
                problems.join("\n  ")
            ));
        }
        for g in strings("guidance") {
            eprintln!("guidance: {g}");
        }
        let review = strings("needsReview");
        if !review.is_empty() && !a.dry_run {
            eprintln!(
                "note: the answers to {} need a review by staff: the project waits (PendingReview) until they approve",
                review.join(", ")
            );
        }
    }
    let project = project_manifest(&a, answers, Timestamp::now())?;
    if a.dry_run {
        let format = if out == Format::Json {
            Format::Json
        } else {
            Format::Yaml
        };
        return output::print_value(
            format,
            &serde_json::to_value(&project).map_err(|e| e.to_string())?,
        );
    }
    let api: Api<Project> = Api::all(client);
    let created = api
        .create(&PostParams::default(), &project)
        .await
        .map_err(|e| client::write_error(&format!("creating project {}", a.name), &e))?;
    match out {
        Format::Json | Format::Yaml => output::print_value(
            out,
            &serde_json::to_value(&created).map_err(|e| e.to_string())?,
        ),
        Format::Name => {
            println!("project.tenancy.dev/{}", a.name);
            Ok(())
        }
        _ => {
            println!("project {} created for customer {}", a.name, a.customer);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's example checklist.
    fn spec() -> ChecklistSpec {
        serde_json::from_value(json!({"questions": [
            {"id": "personal-data", "description": "Will the project process personal data?",
             "type": "Boolean", "required": true},
            {"id": "data-categories", "description": "Which categories of personal data?",
             "type": "MultiSelect", "required": true,
             "options": [{"id": "contact", "label": "Contact details"}, {"id": "health", "label": "Health data"}],
             "dependencies": [{"question": "personal-data", "operator": "Equals", "value": true}]},
            {"id": "export-control", "description": "Is any of the work export-controlled?",
             "type": "SingleSelect", "required": true,
             "options": [{"id": "no", "label": "No"}, {"id": "dual-use", "label": "Dual use"}, {"id": "military", "label": "Military"}],
             "userGuidance": "Talk to the export control office first.",
             "guidanceAnswerValue": ["dual-use", "military"], "guidanceOperator": "In"},
            {"id": "export-licence", "description": "Export licence number", "type": "Text",
             "required": true, "dependencyLogicOperator": "Or",
             "dependencies": [{"question": "export-control", "operator": "Equals", "value": "dual-use"},
                              {"question": "export-control", "operator": "Equals", "value": "military"}]},
            {"id": "budget", "description": "Budget", "type": "Number", "minValue": 0, "maxValue": 100},
        ]}))
        .unwrap()
    }

    #[test]
    fn the_listing_puts_the_questions_asked_first_on_top() {
        let s = spec();
        let ids: Vec<(&str, bool)> = listing(&s)
            .iter()
            .map(|(q, f)| (q.id.as_str(), *f))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("personal-data", true),
                ("export-control", true),
                ("budget", true),
                ("data-categories", false),
                ("export-licence", false)
            ]
        );
        let t = table(&s);
        assert_eq!(t.rows[3][3], "when personal-data Equals true");
        assert!(t.rows[4][3].contains(" or "), "{}", t.rows[4][3]);
    }

    #[test]
    fn the_next_question_follows_the_answers_and_dependencies() {
        let s = spec();
        let answers = |v: Value| -> Answers { serde_json::from_value(v).unwrap() };
        let none = BTreeSet::new();
        let table: Vec<(Value, Option<&str>)> = vec![
            (json!({}), Some("personal-data")),
            (json!({"personal-data": true}), Some("data-categories")),
            (json!({"personal-data": false}), Some("export-control")),
            (
                json!({"personal-data": false, "export-control": "no"}),
                Some("budget"),
            ),
            (
                json!({"personal-data": false, "export-control": "military"}),
                Some("export-licence"),
            ),
            (
                json!({"personal-data": false, "export-control": "no", "budget": 3}),
                None,
            ),
        ];
        for (given, want) in table {
            let got = next_question(&s, &answers(given.clone()), &none).map(|q| q.id.as_str());
            assert_eq!(got, want, "{given}");
        }
        let skipped = BTreeSet::from(["budget".to_string()]);
        assert_eq!(
            next_question(
                &s,
                &answers(json!({"personal-data": false, "export-control": "no"})),
                &skipped
            )
            .map(|q| q.id.as_str()),
            None
        );
    }

    #[test]
    fn answers_are_read_by_type() {
        let s = spec();
        let q = |id: &str| s.questions.iter().find(|q| q.id == id).unwrap();
        type Row<'a> = (&'a str, &'a str, Result<Option<Value>, &'a str>);
        let table: Vec<Row> = vec![
            ("personal-data", "yes", Ok(Some(json!(true)))),
            ("personal-data", "N", Ok(Some(json!(false)))),
            ("personal-data", "maybe", Err("is not yes or no")),
            ("personal-data", "", Err("is required")),
            (
                "data-categories",
                "1, health",
                Ok(Some(json!(["contact", "health"]))),
            ),
            ("data-categories", "3", Err("is not an option")),
            ("export-control", "dual use", Ok(Some(json!("dual-use")))),
            ("export-control", "military", Ok(Some(json!("military")))),
            ("budget", "", Ok(None)),
            ("budget", "12.5", Ok(Some(json!(12.5)))),
            ("budget", "101", Err("out of range")),
            ("budget", "lots", Err("is not a number")),
            ("export-licence", "EL-1", Ok(Some(json!("EL-1")))),
        ];
        for (id, text, want) in table {
            let got = parse_answer(q(id), text);
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{id} {text}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{id} {text}: {g}"),
                _ => panic!("{id} {text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_dialogue_asks_in_order_and_shows_guidance() {
        let s = spec();
        let mut input = vec!["no", "2", "EL-7", ""].into_iter().map(String::from);
        let mut said = Vec::new();
        let answers = dialogue(&s, || input.next(), |l| said.push(l), false).unwrap();
        assert_eq!(
            json!(answers),
            json!({"personal-data": false, "export-control": "dual-use", "export-licence": "EL-7"})
        );
        assert!(
            said.iter().any(
                |l| l == "  guidance: export-control: Talk to the export control office first."
            ),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|l| l.starts_with("Export licence number [export-licence]"))
        );

        // Piped answers that do not fit end the dialogue naming the question.
        let mut input = vec!["perhaps"].into_iter().map(String::from);
        let err = dialogue(&s, || input.next(), |_| {}, false).unwrap_err();
        assert!(err.starts_with("question personal-data"), "{err}");
        // Input that ends early says which question was left.
        let mut input = vec!["yes"].into_iter().map(String::from);
        let err = dialogue(&s, || input.next(), |_| {}, false).unwrap_err();
        assert!(err.contains("data-categories"), "{err}");
        // With a terminal, a bad answer is asked again.
        let mut input = vec!["perhaps", "no", "no", ""]
            .into_iter()
            .map(String::from);
        let answers = dialogue(&s, || input.next(), |_| {}, true).unwrap();
        assert_eq!(answers.len(), 2);
    }

    #[test]
    fn the_new_project_carries_its_fields_and_answers() {
        let now: Timestamp = "2026-11-15T10:00:00Z".parse().unwrap();
        let mut a = NewProjectArgs {
            name: "cohort".into(),
            customer: "acme".into(),
            display_name: Some("Cohort".into()),
            description: None,
            end_date: Some("180d".into()),
            quota: vec!["requests.cpu=4".into(), "pods = 10".into()],
            answers: None,
            dry_run: true,
        };
        let answers: Answers = serde_json::from_value(json!({"personal-data": false})).unwrap();
        let p = project_manifest(&a, answers.clone(), now).unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["metadata"]["name"], "cohort");
        assert_eq!(v["spec"]["customer"], "acme");
        assert_eq!(v["spec"]["endDate"], "2027-05-14");
        assert_eq!(
            v["spec"]["quota"]["hard"],
            json!({"requests.cpu": "4", "pods": "10"})
        );
        assert_eq!(
            v["spec"]["checklistAnswers"],
            json!({"personal-data": false})
        );
        a.quota = vec!["cpu".into()];
        assert!(
            project_manifest(&a, answers, now)
                .unwrap_err()
                .starts_with("--quota")
        );
    }
}
