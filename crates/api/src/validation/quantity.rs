//! A small `resource.Quantity` parser (`100m`, `1Gi`, `1e3`, `500M`) good enough to compare quantities and
//! check their sign, with upstream's parse error messages.

use serde_json::Value;

/// Upstream's `ErrFormatWrong`.
pub const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// Upstream's `ErrSuffix`.
pub const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";

/// A parsed quantity, held in units of 10^-9 (rounded up, saturating far beyond any real value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    nanos: i128,
}

enum Scale {
    Decimal(i32),
    Binary(u32),
}

fn suffix_scale(suffix: &str) -> Result<Scale, &'static str> {
    let s = match suffix {
        "" => Scale::Decimal(0),
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        _ => {
            let exp = suffix.strip_prefix('e').or_else(|| suffix.strip_prefix('E')).ok_or(SUFFIX_ERROR)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(SUFFIX_ERROR);
            }
            let e: i32 = exp.parse().map_err(|_| SUFFIX_ERROR)?;
            Scale::Decimal(e)
        }
    };
    Ok(s)
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Quantity {
    pub fn zero() -> Quantity {
        Quantity { nanos: 0 }
    }

    /// Parses the string form.
    pub fn parse(s: &str) -> Result<Quantity, &'static str> {
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, suffix) = rest.split_at(num_end);
        let suffix_chars_ok = {
            let t = suffix.trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
            let t = t.strip_prefix(['+', '-']).unwrap_or(t);
            t.bytes().all(|c| c.is_ascii_digit())
        };
        if num.is_empty() || !suffix_chars_ok {
            return Err(FORMAT_ERROR);
        }
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err("unable to parse numeric part of quantity");
        }
        let scale = suffix_scale(suffix)?;
        // Mantissa digits without leading zeros, and the power of ten they are scaled by.
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let mut exp10: i64 = 9 - frac_part.len() as i64;
        let mut binary = 0u32;
        match scale {
            Scale::Decimal(e) => exp10 += i64::from(e),
            Scale::Binary(b) => binary = b,
        }
        let nanos = if digits.is_empty() {
            0
        } else if digits.len() > 36 {
            i128::MAX
        } else {
            let mantissa: i128 = digits.parse().map_err(|_| "unable to parse numeric part of quantity")?;
            let mut v = mantissa.checked_mul(1i128 << binary).unwrap_or(i128::MAX);
            if exp10 >= 0 {
                v = u32::try_from(exp10).ok().and_then(pow10).and_then(|p| v.checked_mul(p)).unwrap_or(i128::MAX);
            } else {
                match u32::try_from(-exp10).ok().and_then(pow10) {
                    // Rounded up, as Quantity rounds sub-nano precision.
                    Some(p) => v = (v + p - 1) / p,
                    None => v = 1,
                }
            }
            v
        };
        Ok(Quantity { nanos: if negative { -nanos } else { nanos } })
    }

    /// Parses a JSON quantity: a string or a number.
    pub fn from_json(v: &Value) -> Result<Quantity, &'static str> {
        match v {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => Err(FORMAT_ERROR),
        }
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    pub fn is_positive(&self) -> bool {
        self.nanos > 0
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.nanos % 1_000_000_000 == 0
    }
}

/// The text of a quantity as written (a JSON number is shown as its number).
pub fn quantity_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(q("100m"), q("0.1"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("500M"), q("0.5G"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("2") > q("1500m"));
        assert!(q("-1").is_negative());
        assert!(q("0").is_integer() && !q("0").is_positive());
        assert!(!q("1.5").is_integer());
        assert_eq!(q("+3"), q("3"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("1n"), q("0.000000001"));
        assert!(q("0.1n").is_positive(), "sub-nano precision rounds up");
    }

    #[test]
    fn rejects_malformed_quantities() {
        assert_eq!(Quantity::parse("abc"), Err(FORMAT_ERROR));
        assert_eq!(Quantity::parse("1Kb"), Err(FORMAT_ERROR));
        assert_eq!(Quantity::parse(""), Err(FORMAT_ERROR));
        assert_eq!(Quantity::parse("1kK"), Err(SUFFIX_ERROR));
        assert_eq!(Quantity::parse("1e"), Err(SUFFIX_ERROR));
        assert!(Quantity::parse("1.2.3").is_err());
    }

    #[test]
    fn json_numbers_are_quantities() {
        assert_eq!(Quantity::from_json(&serde_json::json!(2)).unwrap(), q("2"));
        assert_eq!(Quantity::from_json(&serde_json::json!(0.5)).unwrap(), q("500m"));
        assert!(Quantity::from_json(&serde_json::json!(true)).is_err());
        assert_eq!(quantity_text(&serde_json::json!(2)), "2");
    }
}
