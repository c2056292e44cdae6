//! Number formatting for reasons: enough digits that "0.79 kW < 0.8 kW"
//! never prints as the contradictory "0.8 kW < 0.8 kW".

/// `v` with at most two decimals, at least one, trailing zeros trimmed
/// (1 → "1.0", 0.79 → "0.79", 0.8 → "0.8").
pub fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    match s.strip_suffix('0') {
        Some(t) if !t.ends_with('.') => t.to_owned(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trims() {
        assert_eq!(super::num(1.0), "1.0");
        assert_eq!(super::num(0.79), "0.79");
        assert_eq!(super::num(0.8), "0.8");
        assert_eq!(super::num(-3.456), "-3.46");
        assert_eq!(super::num(120.0), "120.0");
    }
}
