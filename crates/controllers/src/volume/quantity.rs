//! Resource quantities of storage ("1Gi", "500M", "1e9") as byte counts, for comparing capacities.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The bytes a quantity stands for, rounded up; `None` when it is not a quantity.
pub fn bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let end = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(end);
    let n: f64 = number.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some((n * mult).ceil())
}

/// The `storage` entry of a requests or capacity map, in bytes.
pub fn storage(map: Option<&BTreeMap<String, Quantity>>) -> Option<f64> {
    bytes(&map?.get("storage")?.0)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn parses_binary_decimal_and_exponent_suffixes() {
        assert_eq!(bytes("1Gi"), Some(1073741824.0));
        assert_eq!(bytes("500Mi"), Some(524288000.0));
        assert_eq!(bytes("2G"), Some(2e9));
        assert_eq!(bytes("1e3"), Some(1000.0));
        assert_eq!(bytes("1500m"), Some(2.0));
        assert_eq!(bytes("12"), Some(12.0));
        assert_eq!(bytes("1Gb"), None);
        assert_eq!(bytes(""), None);
    }
}
