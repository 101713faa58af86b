//! A small Kubernetes resource-quantity parser (cpu millis, memory bytes) so the runtime stays independent of
//! the API crate; values round up like `resource.Quantity`'s `MilliValue`/`Value`.

use super::BundleError;

/// Parses a quantity (`100m`, `1`, `0.5`, `128Mi`, `1G`, `1e3`) into CPU millicores, rounding up.
pub fn parse_cpu_millis(s: &str) -> Result<i64, BundleError> {
    scaled(s, 3)
}

/// Parses a quantity (`128Mi`, `1G`, `1e3`, `1.5Ki`) into bytes, rounding up.
pub fn parse_bytes(s: &str) -> Result<i64, BundleError> {
    scaled(s, 0)
}

/// The quantity times `10^extra_exp`, rounded up to an integer.
fn scaled(s: &str, extra_exp: i32) -> Result<i64, BundleError> {
    let bad = || BundleError::Quantity(s.to_string());
    let t = s.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let num_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, suffix) = t.split_at(num_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad());
    }
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(bad());
    }
    let mantissa: i128 = digits.parse().map_err(|_| bad())?;
    // value = mantissa * 2^bin * 10^dec
    let mut dec: i32 = -(frac_part.len() as i32) + extra_exp;
    let mut bin: u32 = 0;
    match suffix {
        "" => {}
        "n" => dec -= 9,
        "u" => dec -= 6,
        "m" => dec -= 3,
        "k" => dec += 3,
        "M" => dec += 6,
        "G" => dec += 9,
        "T" => dec += 12,
        "P" => dec += 15,
        "E" => dec += 18,
        "Ki" => bin = 10,
        "Mi" => bin = 20,
        "Gi" => bin = 30,
        "Ti" => bin = 40,
        "Pi" => bin = 50,
        "Ei" => bin = 60,
        other => {
            let exp = other.strip_prefix(['e', 'E']).ok_or_else(bad)?;
            let exp: i32 = exp.parse().map_err(|_| bad())?;
            if !(-40..=40).contains(&exp) {
                return Err(bad());
            }
            dec += exp;
        }
    }
    let mut value = mantissa
        .checked_shl(bin)
        .filter(|v| v >> bin == mantissa)
        .ok_or_else(bad)?;
    if dec >= 0 {
        for _ in 0..dec {
            value = value.checked_mul(10).ok_or_else(bad)?;
        }
    } else {
        let divisor = (0..-dec).try_fold(1i128, |d, _| d.checked_mul(10)).ok_or_else(bad)?;
        value = (value + divisor - 1) / divisor;
    }
    let value = i64::try_from(value).map_err(|_| bad())?;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_cpu_millis("100m").unwrap(), 100);
        assert_eq!(parse_cpu_millis("1").unwrap(), 1000);
        assert_eq!(parse_cpu_millis("0.5").unwrap(), 500);
        assert_eq!(parse_cpu_millis("1.5").unwrap(), 1500);
        assert_eq!(parse_cpu_millis("250000u").unwrap(), 250);
        assert_eq!(parse_cpu_millis("1n").unwrap(), 1, "rounds up");
        assert_eq!(parse_cpu_millis("2e0").unwrap(), 2000);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(parse_bytes("128Mi").unwrap(), 128 * 1024 * 1024);
        assert_eq!(parse_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("1e3").unwrap(), 1000);
        assert_eq!(parse_bytes("1.5Ki").unwrap(), 1536);
        assert_eq!(parse_bytes("64").unwrap(), 64);
        assert_eq!(parse_bytes("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("500m").unwrap(), 1, "fractional bytes round up");
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "abc", "1Qi", "1.2.3", "Mi", "1e", "1e999", "99999999999999999999Ei"] {
            assert!(parse_bytes(s).is_err(), "{s:?} should not parse");
        }
    }
}
