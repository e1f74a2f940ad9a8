//! What a project costs: its usage (what its workloads request) priced by the operator's price
//! list (`--price cpu=20 --price memory=4.5 --currency EUR`, monthly prices per core, GiB, GiB of
//! storage and pod). Exact decimal arithmetic; amounts are rounded to cents only for display.

use std::collections::BTreeMap;

use super::quantity::Milli;
use crate::api::project::CostStatus;

/// The resources that have a price, and the unit each price is for.
pub const PRICED: &[(&str, &str)] = &[
    ("cpu", "core"),
    ("memory", "GiB"),
    ("storage", "GiB"),
    ("pods", "pod"),
];

/// Millionths of the currency unit.
pub type Micros = i128;

/// The price list: monthly price of one unit of each priced resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prices {
    pub currency: String,
    monthly: BTreeMap<String, Micros>,
}

/// Parses a decimal amount (`20`, `4.5`, `0.000001`) into millionths.
pub fn parse_amount(s: &str) -> Option<Micros> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        || frac.len() > 6
    {
        return None;
    }
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: i128 = format!("{frac:0<6}").parse().ok()?;
    int.checked_mul(1_000_000)?.checked_add(frac)
}

/// Formats millionths as an amount with two decimals, rounded half up.
pub fn format_amount(micros: Micros) -> String {
    let cents = (micros + 5_000).div_euclid(10_000);
    format!("{}.{:02}", cents.div_euclid(100), cents.rem_euclid(100))
}

impl Prices {
    /// The price list of `--price NAME=AMOUNT` flags and `--currency`. No prices: no costs.
    pub fn parse(prices: &[String], currency: &str) -> Result<Option<Prices>, String> {
        if prices.is_empty() {
            return Ok(None);
        }
        let currency = currency.trim();
        if currency.is_empty() {
            return Err(
                "--price is set but --currency is not: set --currency to the currency of the prices (e.g. EUR)".into(),
            );
        }
        let names = || {
            PRICED
                .iter()
                .map(|(n, unit)| format!("{n} (per {unit})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut monthly = BTreeMap::new();
        for p in prices {
            let Some((name, amount)) = p.split_once('=') else {
                return Err(format!(
                    "--price {p:?}: write NAME=AMOUNT, e.g. cpu=20 (a monthly price per unit)"
                ));
            };
            let name = name.trim();
            if !PRICED.iter().any(|(n, _)| *n == name) {
                return Err(format!(
                    "--price {p:?}: {name:?} has no price; priced resources are {}",
                    names()
                ));
            }
            let micros = parse_amount(amount.trim()).ok_or_else(|| {
                format!(
                    "--price {p:?}: {amount:?} is not an amount; write a decimal such as 20 or 4.50 (up to 6 decimals)"
                )
            })?;
            monthly.insert(name.to_string(), micros);
        }
        Ok(Some(Prices {
            currency: currency.to_string(),
            monthly,
        }))
    }

    /// The monthly price of one unit of each priced resource, in millionths.
    pub fn monthly(&self) -> &BTreeMap<String, Micros> {
        &self.monthly
    }

    /// A price list from stored prices (`cpu: "20"`), as a usage record keeps them.
    pub fn from_stored(currency: &str, prices: &BTreeMap<String, String>) -> Prices {
        Prices {
            currency: currency.to_string(),
            monthly: prices
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), parse_amount(v)?)))
                .collect(),
        }
    }

    /// The monthly cost of `usage` (quantities by resource, as `status.usage` holds them).
    pub fn estimate(&self, usage: &BTreeMap<String, String>) -> CostStatus {
        let mut by_resource = BTreeMap::new();
        let mut total: Micros = 0;
        for (name, price) in &self.monthly {
            let amount = usage
                .get(name)
                .and_then(|q| Milli::parse(q).ok())
                .unwrap_or_default();
            // Memory and storage are priced per GiB; quantities count bytes.
            let per_unit: i128 = match name.as_str() {
                "memory" | "storage" => 1 << 30,
                _ => 1,
            };
            let micros = amount.0.saturating_mul(*price) / 1000 / per_unit;
            total = total.saturating_add(micros);
            by_resource.insert(name.clone(), format_amount(micros));
        }
        CostStatus {
            currency: self.currency.clone(),
            monthly: format_amount(total),
            by_resource,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(list: &[&str]) -> Result<Option<Prices>, String> {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        Prices::parse(&list, "EUR")
    }

    #[test]
    fn amounts_are_exact_decimals() {
        assert_eq!(parse_amount("20"), Some(20_000_000));
        assert_eq!(parse_amount("4.5"), Some(4_500_000));
        assert_eq!(parse_amount(".25"), Some(250_000));
        assert_eq!(parse_amount("0.000001"), Some(1));
        for bad in ["", ".", "1.0000001", "-1", "1e3", "one"] {
            assert_eq!(parse_amount(bad), None, "{bad:?}");
        }
        assert_eq!(format_amount(14_505_000), "14.51");
        assert_eq!(format_amount(14_504_999), "14.50");
        assert_eq!(format_amount(0), "0.00");
    }

    #[test]
    fn usage_is_priced_per_core_gib_and_pod() {
        let p = prices(&["cpu=20", "memory=4.5", "storage=0.1", "pods=0.25"])
            .unwrap()
            .unwrap();
        let usage = BTreeMap::from([
            ("cpu".to_string(), "500m".to_string()),
            ("memory".to_string(), "1536Mi".to_string()),
            ("storage".to_string(), "10Gi".to_string()),
            ("pods".to_string(), "3".to_string()),
        ]);
        let cost = p.estimate(&usage);
        assert_eq!(cost.currency, "EUR");
        assert_eq!(cost.by_resource["cpu"], "10.00");
        assert_eq!(cost.by_resource["memory"], "6.75");
        assert_eq!(cost.by_resource["storage"], "1.00");
        assert_eq!(cost.by_resource["pods"], "0.75");
        assert_eq!(cost.monthly, "18.50");
        // Nothing requested, nothing owed; unpriced resources are not listed.
        let only_cpu = prices(&["cpu=20"]).unwrap().unwrap();
        let cost = only_cpu.estimate(&BTreeMap::new());
        assert_eq!(cost.monthly, "0.00");
        assert_eq!(cost.by_resource.keys().collect::<Vec<_>>(), ["cpu"]);
    }

    #[test]
    fn no_price_list_means_no_cost() {
        assert_eq!(Prices::parse(&[], ""), Ok(None));
    }

    #[test]
    fn a_bad_price_list_names_the_flag_and_the_fix() {
        assert_eq!(prices(&[]), Ok(None));
        let err = prices(&["gpu=100"]).unwrap_err();
        assert!(
            err.contains("\"gpu\" has no price") && err.contains("cpu (per core)"),
            "{err}"
        );
        let err = prices(&["cpu=twenty"]).unwrap_err();
        assert!(err.contains("not an amount"), "{err}");
        let err = prices(&["cpu"]).unwrap_err();
        assert!(err.contains("NAME=AMOUNT"), "{err}");
        let err = Prices::parse(&["cpu=1".to_string()], " ").unwrap_err();
        assert!(err.contains("--currency"), "{err}");
    }
}
