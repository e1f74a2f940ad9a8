//! `kubectl tenancy usage`: a month's usage and cost (the `usage` view), with a per-day chart.

use clap::{ArgGroup, Args};
use serde_json::Value;

use crate::client::{self, Connection};
use crate::output::{self, Format, Table};

#[derive(Args, Debug, Default, Clone)]
#[command(group(ArgGroup::new("scope").required(true).args(["project", "customer"])))]
pub struct UsageArgs {
    /// The project.
    pub project: Option<String>,
    /// Every project of this customer instead.
    #[arg(long, value_name = "C")]
    pub customer: Option<String>,
    /// `current` or a month as YYYY-MM.
    #[arg(long, default_value = "current", value_name = "MONTH")]
    pub month: String,
}

/// The views request for a month of a project or a customer.
pub fn query(a: &UsageArgs) -> Result<Vec<(String, String)>, String> {
    let month = a.month.trim();
    let valid = month == "current"
        || (month.len() == 7 && format!("{month}-01").parse::<jiff::civil::Date>().is_ok());
    if !valid {
        return Err(format!(
            "--month {month:?}: write current or a month as YYYY-MM (2026-10)"
        ));
    }
    let scope = match (&a.project, &a.customer) {
        (Some(p), _) => format!("project={p}"),
        (None, Some(c)) => format!("customer={c}"),
        (None, None) => return Err("name a PROJECT or --customer C".into()),
    };
    Ok(vec![(
        "fieldSelector".into(),
        format!("{scope},month={month}"),
    )])
}

fn cost(u: &Value) -> String {
    match (&u["cost"]["total"], &u["cost"]["currency"]) {
        (Value::String(t), Value::String(c)) => format!("{t} {c}"),
        _ if u["billing"] == "Hidden" => "<hidden>".into(),
        _ => "<none>".into(),
    }
}

pub fn table(items: &[Value]) -> Table {
    let mut t = Table::new(&[
        ("PROJECT", false),
        ("MONTH", false),
        ("STATE", false),
        ("CPU CORE-HOURS", false),
        ("MEMORY GIB-HOURS", false),
        ("STORAGE GIB-HOURS", false),
        ("POD-HOURS", false),
        ("COST", false),
        ("CUSTOMER", true),
        ("AS OF", true),
        ("CREDIT LEFT", true),
    ]);
    for u in items {
        t.rows.push(vec![
            output::text(&u["project"]),
            output::text(&u["month"]),
            output::text(&u["state"]),
            output::text(&u["usage"]["cpuCoreHours"]),
            output::text(&u["usage"]["memoryGiBHours"]),
            output::text(&u["usage"]["storageGiBHours"]),
            output::text(&u["usage"]["podHours"]),
            cost(u),
            output::text(&u["customer"]),
            output::text(&u["asOf"]),
            match (&u["credit"]["remaining"], &u["credit"]["currency"]) {
                (Value::String(r), Value::String(c)) => format!("{r} {c}"),
                _ => "<none>".into(),
            },
        ]);
    }
    t
}

/// The days of a `YYYY-MM` month.
pub fn days_in_month(month: &str) -> usize {
    format!("{month}-01")
        .parse::<jiff::civil::Date>()
        .map(|d| d.days_in_month() as usize)
        .unwrap_or(31)
}

/// One bar per value, eight heights, scaled to the largest; a day without usage is a dot.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().cloned().fold(0.0_f64, f64::max);
    values
        .iter()
        .map(|&v| {
            if v <= 0.0 || max <= 0.0 {
                '·'
            } else {
                let i = ((v / max) * 7.0).round() as usize;
                BARS[i.min(7)]
            }
        })
        .collect()
}

/// The per-day chart of one project's month: a line per resource, a day per column.
pub fn chart(u: &Value) -> Vec<String> {
    let month = u["month"].as_str().unwrap_or_default();
    let days = days_in_month(month);
    let mut lines = vec![format!(
        "{} {month}, per day (max of the month at the right):",
        u["project"].as_str().unwrap_or_default()
    )];
    let mut axis = String::new();
    for d in 1..=days {
        axis.push(if d == 1 || d % 5 == 0 {
            char::from_digit((d % 10) as u32, 10).unwrap_or(' ')
        } else {
            ' '
        });
    }
    for (key, label) in [
        ("cpuCoreHours", "cpu core-hours"),
        ("memoryGiBHours", "memory GiB-hours"),
        ("storageGiBHours", "storage GiB-hours"),
        ("podHours", "pod-hours"),
    ] {
        let values: Vec<f64> = (1..=days)
            .map(|d| {
                u["days"][format!("{d:02}")][key]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.0)
            })
            .collect();
        let max = values.iter().cloned().fold(0.0_f64, f64::max);
        lines.push(format!("  {label:<18} {}  {max}", sparkline(&values)));
    }
    lines.push(format!("  {:<18} {axis}", "day"));
    lines
}

pub async fn run(conn: &Connection, out: Format, a: UsageArgs) -> Result<(), String> {
    let q = query(&a)?;
    let client = client::connect(conn).await?;
    let items = client::list_view(&client, "usage", &q).await?;
    if items.is_empty()
        && let Some(p) = &a.project
        && client::my_project(&client, p, false).await?.is_none()
    {
        return Err(format!(
            "project {p:?} is not one you may see (`kubectl tenancy projects` lists yours)"
        ));
    }
    output::print_items(
        out,
        &items,
        "usage",
        "No usage recorded for that month.",
        table,
    )?;
    if matches!(out, Format::Table | Format::Wide) {
        for u in &items {
            println!();
            for line in chart(u) {
                println!("{line}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn months_and_scopes_become_selectors() {
        let a = |p: Option<&str>, c: Option<&str>, m: &str| UsageArgs {
            project: p.map(String::from),
            customer: c.map(String::from),
            month: m.into(),
        };
        assert_eq!(
            query(&a(Some("genomics"), None, "current")).unwrap()[0].1,
            "project=genomics,month=current"
        );
        assert_eq!(
            query(&a(None, Some("acme"), "2026-10")).unwrap()[0].1,
            "customer=acme,month=2026-10"
        );
        for bad in ["2026-13", "October", "2026-1"] {
            let err = query(&a(Some("p"), None, bad)).unwrap_err();
            assert!(err.starts_with("--month"), "{err}");
        }
    }

    #[test]
    fn the_chart_has_a_column_per_day_scaled_to_the_busiest() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0, 8.0]), "·▂▃▅█");
        assert_eq!(sparkline(&[0.0, 0.0]), "··");
        assert_eq!(days_in_month("2026-02"), 28);
        assert_eq!(days_in_month("2028-02"), 29);
        let u = json!({
            "project": "genomics", "month": "2026-11",
            "days": {"01": {"cpuCoreHours": "12", "memoryGiBHours": "24", "storageGiBHours": "0", "podHours": "24"},
                     "03": {"cpuCoreHours": "6", "memoryGiBHours": "12", "storageGiBHours": "0", "podHours": "12"}},
        });
        let lines = chart(&u);
        assert_eq!(lines.len(), 6);
        let cpu = &lines[1];
        assert!(cpu.starts_with("  cpu core-hours"), "{cpu}");
        let bars: String = cpu.chars().skip(21).take(30).collect();
        assert_eq!(bars.chars().count(), 30);
        assert!(bars.starts_with("█·▅·"), "{bars}");
        assert!(cpu.ends_with("  12"), "{cpu}");
        assert!(
            lines[5].contains("1   5    0    5    0    5    0"),
            "{}",
            lines[5]
        );
    }

    #[test]
    fn cost_shows_hidden_when_billing_is_not_shown() {
        let rows = table(&[
            json!({"project": "a", "billing": "Hidden"}),
            json!({"project": "b", "billing": "Shown", "cost": {"total": "1.50", "currency": "EUR"}}),
        ]);
        assert_eq!(rows.rows[0][7], "<hidden>");
        assert_eq!(rows.rows[1][7], "1.50 EUR");
    }
}
