//! Checklists: which questions are asked given the answers so far (dependencies, AND/OR, chains),
//! whether each answer fits its question, which answers need a review by staff, and which
//! guidance applies. Pure; the webhook refuses what does not fit, the project plan waits for the
//! review.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use kube::ResourceExt;

use crate::api::Project;
use crate::api::checklist::{
    Checklist, ChecklistSpec, Dependency, LogicOperator, Operator, Question, QuestionType,
};
use crate::api::project::{ChecklistState, ReviewDecision};
use crate::api::vocabulary::annotations;

/// Answers by question id.
pub type Answers = BTreeMap<String, Value>;

fn as_number(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Whether `answer` compares to `value` as `op` says. `Contains` on a list (MultiSelect) means
/// the list holds the value; on a text, the text holds it. `In`/`NotIn` take a list of values;
/// on a list answer, `In` means any chosen option is among them and `NotIn` that none is.
/// `LessThan`/`GreaterThan` compare numbers, or texts (dates `YYYY-MM-DD` compare as texts).
pub fn compare(op: Operator, answer: &Value, value: &Value) -> bool {
    let equal = |a: &Value, b: &Value| match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) if a.is_number() || b.is_number() => x == y,
        _ => a == b,
    };
    match op {
        Operator::Equals => equal(answer, value),
        Operator::NotEquals => !equal(answer, value),
        Operator::Contains => match (answer, value) {
            (Value::Array(items), v) => items.iter().any(|i| equal(i, v)),
            (Value::String(a), Value::String(v)) => a.contains(v.as_str()),
            _ => false,
        },
        // On a list (MultiSelect): In holds when any chosen option is among the values, NotIn
        // when none is.
        Operator::In | Operator::NotIn => {
            let Some(vs) = value.as_array() else {
                return false;
            };
            let among = |a: &Value| vs.iter().any(|v| equal(a, v));
            let any = match answer {
                Value::Array(items) => items.iter().any(among),
                a => among(a),
            };
            any == (op == Operator::In)
        }
        Operator::LessThan | Operator::GreaterThan => {
            let ord = match (as_number(answer), as_number(value)) {
                (Some(a), Some(v)) if answer.is_number() => a.partial_cmp(&v),
                _ => match (answer.as_str(), value.as_str()) {
                    (Some(a), Some(v)) => Some(a.cmp(v)),
                    _ => None,
                },
            };
            match ord {
                Some(std::cmp::Ordering::Less) => op == Operator::LessThan,
                Some(std::cmp::Ordering::Greater) => op == Operator::GreaterThan,
                _ => false,
            }
        }
    }
}

/// The questions asked, in order, given the answers: a question without dependencies always
/// is; one with dependencies is when they hold (all of them, or one with `Or`), each judged on
/// the answer of a question that is itself asked (an answer to a hidden question counts as no
/// answer, so chains close behind a hidden link).
pub fn visible<'a>(spec: &'a ChecklistSpec, answers: &Answers) -> Vec<&'a Question> {
    let by_id: BTreeMap<&str, &Question> =
        spec.questions.iter().map(|q| (q.id.as_str(), q)).collect();
    let mut memo: BTreeMap<&str, bool> = BTreeMap::new();
    fn shown<'a>(
        q: &'a Question,
        by_id: &BTreeMap<&'a str, &'a Question>,
        answers: &Answers,
        memo: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<&'a str>,
    ) -> bool {
        if let Some(v) = memo.get(q.id.as_str()) {
            return *v;
        }
        if path.contains(&q.id.as_str()) {
            // A cycle (refused when the checklist is written): never shown.
            return false;
        }
        path.push(q.id.as_str());
        let holds =
            |d: &Dependency, memo: &mut BTreeMap<&'a str, bool>, path: &mut Vec<&'a str>| {
                by_id.get(d.question.as_str()).is_some_and(|other| {
                    shown(other, by_id, answers, memo, path)
                        && answers
                            .get(&d.question)
                            .is_some_and(|a| compare(d.operator, a, &d.value))
                })
            };
        let result = if q.dependencies.is_empty() {
            true
        } else {
            match q.dependency_logic_operator.unwrap_or(LogicOperator::And) {
                LogicOperator::And => q.dependencies.iter().all(|d| holds(d, memo, path)),
                LogicOperator::Or => q.dependencies.iter().any(|d| holds(d, memo, path)),
            }
        };
        path.pop();
        memo.insert(q.id.as_str(), result);
        result
    }
    spec.questions
        .iter()
        .filter(|q| shown(q, &by_id, answers, &mut memo, &mut Vec::new()))
        .collect()
}

/// The questions asked before anything is answered.
pub fn initially_visible(spec: &ChecklistSpec) -> Vec<String> {
    visible(spec, &Answers::new())
        .into_iter()
        .map(|q| q.id.clone())
        .collect()
}

/// What is wrong with a checklist that its schema cannot tell: dependency cycles, and
/// dependencies whose values cannot be compared with the question's answers.
pub fn spec_problems(spec: &ChecklistSpec) -> Vec<String> {
    let mut out = Vec::new();
    let ids: BTreeSet<&str> = spec.questions.iter().map(|q| q.id.as_str()).collect();
    let by_id: BTreeMap<&str, &Question> =
        spec.questions.iter().map(|q| (q.id.as_str(), q)).collect();
    for (i, q) in spec.questions.iter().enumerate() {
        for (j, d) in q.dependencies.iter().enumerate() {
            if !ids.contains(d.question.as_str()) {
                out.push(format!(
                    "spec.questions[{i}].dependencies[{j}].question: {:?} is not a question of this checklist",
                    d.question
                ));
            }
            if matches!(d.operator, Operator::In | Operator::NotIn) && !d.value.is_array() {
                out.push(format!(
                    "spec.questions[{i}].dependencies[{j}].value: {:?} needs a list of values",
                    d.operator
                ));
            }
            if let Some(other) = by_id.get(d.question.as_str())
                && matches!(
                    other.type_,
                    QuestionType::SingleSelect | QuestionType::MultiSelect
                )
            {
                let known = |v: &Value| {
                    v.as_str()
                        .is_some_and(|s| other.options.iter().any(|o| o.id == s))
                };
                let values: Vec<&Value> = match &d.value {
                    Value::Array(vs) => vs.iter().collect(),
                    v => vec![v],
                };
                if let Some(bad) = values.into_iter().find(|v| !known(v)) {
                    out.push(format!(
                        "spec.questions[{i}].dependencies[{j}].value: {bad} is not an option of question {:?}",
                        other.id
                    ));
                }
            }
        }
        for (field, value, op) in [
            (
                "reviewAnswerValue",
                &q.review_answer_value,
                q.operator.unwrap_or(Operator::Equals),
            ),
            (
                "guidanceAnswerValue",
                &q.guidance_answer_value,
                q.guidance_operator.unwrap_or(Operator::Equals),
            ),
        ] {
            let Some(value) = value else { continue };
            if matches!(op, Operator::In | Operator::NotIn) && !value.is_array() {
                out.push(format!(
                    "spec.questions[{i}].{field}: {op:?} needs a list of values"
                ));
            }
            if matches!(
                q.type_,
                QuestionType::SingleSelect | QuestionType::MultiSelect
            ) {
                let values: Vec<&Value> = match value {
                    Value::Array(vs) => vs.iter().collect(),
                    v => vec![v],
                };
                if let Some(bad) = values.into_iter().find(|v| {
                    !v.as_str()
                        .is_some_and(|s| q.options.iter().any(|o| o.id == s))
                }) {
                    out.push(format!(
                        "spec.questions[{i}].{field}: {bad} is not an option of this question; it would never match"
                    ));
                }
            }
        }
        if q.min_value.zip(q.max_value).is_some_and(|(a, b)| a > b) {
            out.push(format!(
                "spec.questions[{i}]: minValue {} is greater than maxValue {}",
                q.min_value.unwrap_or_default(),
                q.max_value.unwrap_or_default()
            ));
        }
    }
    // Cycles: depth-first over "depends on".
    fn visit<'a>(
        id: &'a str,
        by_id: &BTreeMap<&'a str, &'a Question>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<String>,
    ) {
        match state.get(id) {
            Some(2) => return,
            Some(1) => {
                let start = stack.iter().position(|s| *s == id).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].to_vec();
                cycle.push(id);
                cycles.push(cycle.join(" → "));
                return;
            }
            _ => {}
        }
        state.insert(id, 1);
        stack.push(id);
        if let Some(q) = by_id.get(id) {
            for d in &q.dependencies {
                if by_id.contains_key(d.question.as_str()) {
                    visit(d.question.as_str(), by_id, state, stack, cycles);
                }
            }
        }
        stack.pop();
        state.insert(id, 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for q in &spec.questions {
        visit(
            q.id.as_str(),
            &by_id,
            &mut state,
            &mut Vec::new(),
            &mut cycles,
        );
    }
    for c in cycles {
        out.push(format!(
            "spec.questions[].dependencies: a dependency cycle ({c}) would never show these questions; remove one of its dependencies"
        ));
    }
    out
}

/// Why an answer does not fit its question, if it does not.
fn answer_problem(q: &Question, a: &Value) -> Option<String> {
    let kind = |what: &str| Some(format!("must be {what}, not {a}"));
    match q.type_ {
        QuestionType::Boolean => (!a.is_boolean()).then(|| kind("true or false")).flatten(),
        QuestionType::Text | QuestionType::TextArea => {
            (!a.is_string()).then(|| kind("a text")).flatten()
        }
        QuestionType::Date => match a.as_str().map(|s| s.parse::<jiff::civil::Date>()) {
            Some(Ok(_)) => None,
            _ => kind("a date YYYY-MM-DD"),
        },
        QuestionType::Number => {
            let Some(n) = a.as_f64() else {
                return kind("a number");
            };
            match (q.min_value, q.max_value) {
                (Some(min), _) if n < min => Some(format!("{n} is below the minimum {min}")),
                (_, Some(max)) if n > max => Some(format!("{n} is above the maximum {max}")),
                _ => None,
            }
        }
        QuestionType::SingleSelect => {
            let ok = a
                .as_str()
                .is_some_and(|s| q.options.iter().any(|o| o.id == s));
            (!ok).then(|| {
                format!(
                    "{a} is not one of the options ({})",
                    q.options
                        .iter()
                        .map(|o| o.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        }
        QuestionType::MultiSelect => {
            let Some(items) = a.as_array() else {
                return kind("a list of option ids");
            };
            let mut seen = BTreeSet::new();
            items.iter().find_map(|i| {
                let s = i.as_str().unwrap_or_default();
                if !q.options.iter().any(|o| o.id == s) {
                    Some(format!(
                        "{i} is not one of the options ({})",
                        q.options
                            .iter()
                            .map(|o| o.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                } else if !seen.insert(s) {
                    Some(format!("{i} is chosen twice"))
                } else {
                    None
                }
            })
        }
        QuestionType::File => file_problem(q, a),
        QuestionType::MultipleFiles => {
            let Some(files) = a.as_array() else {
                return kind("a list of file references");
            };
            if let Some(max) = q.max_files_count
                && files.len() > max as usize
            {
                return Some(format!("{} files, at most {max} allowed", files.len()));
            }
            files.iter().find_map(|f| file_problem(q, f))
        }
    }
}

/// A file reference: `{name, url | secretKeyRef | configMapKeyRef, mimeType, sizeMB}`.
fn file_problem(q: &Question, f: &Value) -> Option<String> {
    let Some(obj) = f.as_object() else {
        return Some(format!(
            "a file is a reference {{name, url or secretKeyRef or configMapKeyRef, mimeType, sizeMB}}, not {f}"
        ));
    };
    let name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Some("a file reference needs its name".into());
    }
    let sources = ["url", "secretKeyRef", "configMapKeyRef"]
        .iter()
        .filter(|k| obj.contains_key(**k))
        .count();
    if sources != 1 {
        return Some(format!(
            "file {name}: give exactly one of url, secretKeyRef {{name, key}}, configMapKeyRef {{name, key}}"
        ));
    }
    if !q.allowed_file_types.is_empty()
        && !q
            .allowed_file_types
            .iter()
            .any(|t| name.to_lowercase().ends_with(&t.to_lowercase()))
    {
        return Some(format!(
            "file {name}: only {} files are accepted",
            q.allowed_file_types.join(", ")
        ));
    }
    let mime = obj
        .get("mimeType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !q.allowed_mime_types.is_empty() && !q.allowed_mime_types.iter().any(|m| m == mime) {
        return Some(format!(
            "file {name}: MIME type {mime:?} is not one of {}",
            q.allowed_mime_types.join(", ")
        ));
    }
    if let Some(max) = q.max_file_size_mb {
        match obj.get("sizeMB").and_then(Value::as_f64) {
            Some(size) if size > max => {
                return Some(format!("file {name}: {size} MB, at most {max} MB allowed"));
            }
            None => return Some(format!("file {name}: give its sizeMB (at most {max} MB)")),
            _ => {}
        }
    }
    None
}

/// A checklist judged against a project's answers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// The questions asked, in order.
    pub visible: Vec<String>,
    /// Why the answers cannot be admitted, one sentence each naming the question.
    pub problems: Vec<String>,
    /// Guidance that applies, as `question: guidance`.
    pub guidance: Vec<String>,
    /// The answered questions that need a review by staff.
    pub needs_review: Vec<String>,
    pub answered: usize,
    pub required: usize,
}

/// Judges `answers` against the checklist.
pub fn evaluate(spec: &ChecklistSpec, answers: &Answers) -> Evaluation {
    let shown = visible(spec, answers);
    let shown_ids: BTreeSet<&str> = shown.iter().map(|q| q.id.as_str()).collect();
    let mut e = Evaluation {
        visible: shown.iter().map(|q| q.id.clone()).collect(),
        ..Default::default()
    };
    let named = |q: &Question| format!("question {} ({:?})", q.id, q.description);
    for id in answers.keys() {
        match spec.questions.iter().find(|q| &q.id == id) {
            None => e.problems.push(format!(
                "spec.checklistAnswers.{id}: the checklist has no question {id:?}; remove the answer"
            )),
            Some(q) if !shown_ids.contains(id.as_str()) => e.problems.push(format!(
                "spec.checklistAnswers.{id}: {} is not asked given the other answers; remove the answer",
                named(q)
            )),
            Some(_) => {}
        }
    }
    for q in shown {
        let answer = answers.get(&q.id).filter(|a| !a.is_null());
        if q.required {
            e.required += 1;
        }
        let Some(a) = answer else {
            if q.required {
                e.problems.push(format!(
                    "spec.checklistAnswers.{}: {} is required; answer it",
                    q.id,
                    named(q)
                ));
            }
            continue;
        };
        e.answered += 1;
        if let Some(why) = answer_problem(q, a) {
            e.problems.push(format!(
                "spec.checklistAnswers.{}: {}: {why}",
                q.id,
                named(q)
            ));
            continue;
        }
        let review = q.always_requires_review
            || q.review_answer_value
                .as_ref()
                .is_some_and(|v| compare(q.operator.unwrap_or(Operator::Equals), a, v));
        if review {
            e.needs_review.push(q.id.clone());
        }
        let guide = q.always_show_guidance
            || q.guidance_answer_value
                .as_ref()
                .is_some_and(|v| compare(q.guidance_operator.unwrap_or(Operator::Equals), a, v));
        if guide && let Some(g) = &q.user_guidance {
            e.guidance.push(format!("{}: {g}", q.id));
        }
    }
    // Guidance shown before an answer (alwaysShowGuidance on an unanswered visible question).
    for q in visible(spec, answers) {
        if q.always_show_guidance
            && !answers.contains_key(&q.id)
            && let Some(g) = &q.user_guidance
        {
            e.guidance.push(format!("{}: {g}", q.id));
        }
    }
    e
}

/// A stable digest of the answers, recorded when staff review them: a review covers the
/// answers it saw, and changing one asks for another.
pub fn digest(answers: &Answers) -> String {
    crate::api::name_token(&serde_json::to_string(answers).unwrap_or_default())
}

/// Where a project stands with its customer's checklist.
#[derive(Clone, Debug, PartialEq)]
pub enum Review {
    /// No answer needs a review.
    NotNeeded,
    /// Staff approved these very answers.
    Approved,
    /// These answers need a review that has not happened (or covered other answers).
    Pending(Vec<String>),
    /// Staff rejected these very answers.
    Rejected(Vec<String>),
}

/// The checklist status of `project` against `checklist`, and what the review says.
pub fn review(project: &Project, checklist: &Checklist) -> (ChecklistState, Review) {
    let e = evaluate(&checklist.spec, &project.spec.checklist_answers);
    let annotations = project.metadata.annotations.clone().unwrap_or_default();
    let covered = annotations.get(annotations::CHECKLIST_REVIEWED_ANSWERS)
        == Some(&digest(&project.spec.checklist_answers));
    let decision = project.spec.checklist_review.as_ref().map(|r| r.decision);
    let verdict = match (e.needs_review.is_empty(), covered, decision) {
        (true, _, _) => Review::NotNeeded,
        (false, true, Some(ReviewDecision::Approved)) => Review::Approved,
        (false, true, Some(ReviewDecision::Rejected)) => Review::Rejected(e.needs_review.clone()),
        _ => Review::Pending(e.needs_review.clone()),
    };
    let state = ChecklistState {
        name: checklist.name_any(),
        answered: e.answered as i32,
        required: e.required as i32,
        visible: e.visible,
        needs_review: e.needs_review,
        decision,
        comment: project
            .spec
            .checklist_review
            .as_ref()
            .and_then(|r| r.comment.clone()),
        reviewed_by: annotations.get(annotations::CHECKLIST_REVIEWED_BY).cloned(),
        reviewed_at: annotations.get(annotations::CHECKLIST_REVIEWED_AT).cloned(),
    };
    (state, verdict)
}

#[cfg(test)]
mod tests;
