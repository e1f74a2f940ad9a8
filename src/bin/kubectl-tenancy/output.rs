//! `-o table|wide|json|yaml|name`, printed as kubectl prints them.

use clap::ValueEnum;
use serde_json::{Value, json};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

/// Rows under headers; `wide` columns are shown with `-o wide` only.
#[derive(Debug, Default, PartialEq)]
pub struct Table {
    pub headers: Vec<(&'static str, bool)>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&'static str, bool)]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// The table as text, columns padded like kubectl's (three spaces apart).
    pub fn render(&self, wide: bool) -> String {
        let keep: Vec<usize> = (0..self.headers.len())
            .filter(|&i| wide || !self.headers[i].1)
            .collect();
        let mut lines: Vec<Vec<String>> = vec![
            keep.iter()
                .map(|&i| self.headers[i].0.to_string())
                .collect(),
        ];
        for row in &self.rows {
            lines.push(
                keep.iter()
                    .map(|&i| row.get(i).cloned().unwrap_or_default())
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..keep.len())
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for (c, cell) in line.iter().enumerate() {
                if c + 1 == line.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(widths[c] - cell.chars().count() + 3));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A kubectl `List` of the items.
pub fn list(items: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
}

/// Prints a value as JSON or YAML.
pub fn print_value(format: Format, value: &Value) -> Result<(), String> {
    match format {
        Format::Yaml => print!(
            "{}",
            serde_yaml::to_string(value).map_err(|e| e.to_string())?
        ),
        _ => println!(
            "{}",
            serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
        ),
    }
    Ok(())
}

/// Prints items in the format asked: a table (`table` builds it), a List, or `kind/name`.
pub fn print_items(
    format: Format,
    items: &[Value],
    kind: &str,
    empty: &str,
    table: impl Fn(&[Value]) -> Table,
) -> Result<(), String> {
    match format {
        Format::Json | Format::Yaml => print_value(format, &list(items)),
        Format::Name => {
            for i in items {
                println!("{kind}/{}", i["metadata"]["name"].as_str().unwrap_or(""));
            }
            Ok(())
        }
        Format::Table | Format::Wide => {
            if items.is_empty() {
                eprintln!("{empty}");
            } else {
                print!("{}", table(items).render(format == Format::Wide));
            }
            Ok(())
        }
    }
}

/// A string field, or `<none>`.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => "<none>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_hide_wide_columns() {
        let mut t = Table::new(&[("NAME", false), ("DISPLAY NAME", true), ("PHASE", false)]);
        t.rows.push(vec![
            "genomics".into(),
            "Genome lab".into(),
            "Active".into(),
        ]);
        t.rows.push(vec!["x".into(), "".into(), "Finished".into()]);
        assert_eq!(
            t.render(false),
            "NAME       PHASE\ngenomics   Active\nx          Finished\n"
        );
        assert_eq!(
            t.render(true),
            "NAME       DISPLAY NAME   PHASE\ngenomics   Genome lab     Active\nx                         Finished\n"
        );
    }

    #[test]
    fn missing_fields_read_none() {
        assert_eq!(text(&Value::Null), "<none>");
        assert_eq!(text(&json!("")), "<none>");
        assert_eq!(text(&json!(true)), "true");
        assert_eq!(text(&json!(3)), "3");
    }
}
