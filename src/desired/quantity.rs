//! Kubernetes resource quantities as exact numbers, for sums, comparisons and display.

use std::fmt;
use std::str::FromStr;

/// A quantity in thousandths of its unit (`1` core = 1000, `1Ki` = 1_024_000), rounded up like
/// the apiserver rounds sub-milli values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Milli(pub i128);

/// A string that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a quantity (examples: 500m, 2, 1.5Gi, 10G)")]
pub struct ParseQuantityError(pub String);

impl FromStr for Milli {
    type Err = ParseQuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || ParseQuantityError(input.to_string());
        let s = input.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let number_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err());
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        // value = digits / 10^frac_len, scaled to milli below.
        let digits: i128 = format!("{int_part}{frac_part}")
            .parse()
            .map_err(|_| err())?;
        let frac_len = frac_part.len() as u32;

        // (multiplier numerator, power of ten) for the suffix, value in milli-units.
        let (mul, exp10): (i128, i32) = match suffix {
            "" => (1, 3),
            "m" => (1, 0),
            "n" => (1, -6),
            "u" => (1, -3),
            "k" => (1, 6),
            "M" => (1, 9),
            "G" => (1, 12),
            "T" => (1, 15),
            "P" => (1, 18),
            "E" => (1, 21),
            "Ki" => (1 << 10, 3),
            "Mi" => (1 << 20, 3),
            "Gi" => (1 << 30, 3),
            "Ti" => (1 << 40, 3),
            "Pi" => (1 << 50, 3),
            "Ei" => (1 << 60, 3),
            e if e.starts_with(['e', 'E']) => {
                let exp: i32 = e[1..].parse().map_err(|_| err())?;
                (1, exp.checked_add(3).ok_or_else(err)?)
            }
            _ => return Err(err()),
        };
        let exp10 = exp10 - frac_len as i32;
        let scaled = digits.checked_mul(mul).ok_or_else(err)?;
        let value = if exp10 >= 0 {
            scaled
                .checked_mul(10i128.checked_pow(exp10 as u32).ok_or_else(err)?)
                .ok_or_else(err)?
        } else {
            let div = 10i128.checked_pow((-exp10) as u32).ok_or_else(err)?;
            // Round up, as Kubernetes does for precision below a milli-unit.
            (scaled + div - 1) / div
        };
        Ok(Milli(if negative { -value } else { value }))
    }
}

impl Milli {
    pub fn parse(s: &str) -> Result<Self, ParseQuantityError> {
        s.parse()
    }

    /// Formats the way a user expects to read it back: binary suffixes for exact multiples of
    /// 1024 from Ki up, whole numbers without suffix, otherwise milli-units.
    pub fn to_quantity_string(self) -> String {
        let v = self.0;
        if v % 1000 != 0 {
            return format!("{v}m");
        }
        let whole = v / 1000;
        if whole != 0 {
            for (suffix, shift) in [
                ("Ei", 60),
                ("Pi", 50),
                ("Ti", 40),
                ("Gi", 30),
                ("Mi", 20),
                ("Ki", 10),
            ] {
                let unit = 1i128 << shift;
                if whole % unit == 0 {
                    return format!("{}{suffix}", whole / unit);
                }
            }
        }
        whole.to_string()
    }
}

impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_quantity_string())
    }
}

impl std::ops::Add for Milli {
    type Output = Milli;
    fn add(self, rhs: Milli) -> Milli {
        Milli(self.0.saturating_add(rhs.0))
    }
}

impl std::ops::AddAssign for Milli {
    fn add_assign(&mut self, rhs: Milli) {
        *self = *self + rhs;
    }
}

impl std::iter::Sum for Milli {
    fn sum<I: Iterator<Item = Milli>>(iter: I) -> Milli {
        iter.fold(Milli::default(), |a, b| a + b)
    }
}

/// Whether two strings name the same quantity (`1000m` and `1`, `1Gi` and `1024Mi`).
pub fn same_quantity(a: &str, b: &str) -> bool {
    matches!((Milli::parse(a), Milli::parse(b)), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> i128 {
        Milli::parse(s).unwrap().0
    }

    #[test]
    fn parses_every_suffix_family() {
        assert_eq!(q("1"), 1000);
        assert_eq!(q("500m"), 500);
        assert_eq!(q("1.5"), 1500);
        assert_eq!(q("2k"), 2_000_000);
        assert_eq!(q("1Ki"), 1_024_000);
        assert_eq!(q("1.5Gi"), 1_610_612_736_000);
        assert_eq!(q("1e3"), 1_000_000);
        assert_eq!(q("1E-3"), 1);
        assert_eq!(q("-2"), -2000);
        assert_eq!(q("+3"), 3000);
        assert_eq!(q(".5"), 500);
        assert_eq!(q("100n"), 1, "sub-milli values round up");
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in ["", "abc", "1.2.3", "5x", "Gi", "1 Gi", ".", "1Mb"] {
            assert!(Milli::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn formats_for_reading_back() {
        assert_eq!(Milli(1500).to_string(), "1500m");
        assert_eq!(Milli(2000).to_string(), "2");
        assert_eq!(Milli(0).to_string(), "0");
        assert_eq!(Milli(1_024_000).to_string(), "1Ki");
        assert_eq!(
            (Milli::parse("1Gi").unwrap() + Milli::parse("512Mi").unwrap()).to_string(),
            "1536Mi"
        );
    }

    #[test]
    fn equal_quantities_in_different_spellings_compare_equal() {
        assert!(same_quantity("1000m", "1"));
        assert!(same_quantity("1Gi", "1024Mi"));
        assert!(!same_quantity("1G", "1Gi"));
        assert!(!same_quantity("abc", "abc"));
    }
}
