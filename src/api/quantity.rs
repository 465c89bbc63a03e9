//! `resource.Quantity` as upstream parses, compares and prints it
//! (`k8s.io/apimachinery/pkg/api/resource`): exact values to nano precision,
//! the suffix family remembered so the canonical form reads like upstream's
//! (`0.5` → `500m`, `1024Mi` → `1Gi`, `1000` → `1k`, `1e3` → `1e3`).
//!
//! Owns: parsing, comparison, addition and canonical printing of one
//! quantity. Must not: panic on any input — absurd magnitudes are capped at
//! upstream's maximum (2^63-1) instead of overflowing.

use std::cmp::Ordering;

/// Upstream's error text for a string that is not a quantity.
pub const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const NANO: i128 = 1_000_000_000;
/// Upstream caps every quantity at 2^63-1 (in whole units).
const MAX_NANOS: i128 = (i64::MAX as i128) * NANO;

/// How a quantity was written, which decides how it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `1e3`, `5E-2`.
    DecimalExponent,
    /// `1Ki`, `3Gi`.
    BinarySI,
    /// `500m`, `1k`, `12`.
    DecimalSI,
}

/// A parsed quantity: its exact value in units of 10^-9 (rounded away from
/// zero at parse time, like upstream) and the format it was written in.
/// Equality and ordering compare values only (`1Gi == 1024Mi`).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl Quantity {
    /// The sum, capped like any parsed quantity (None never happens today;
    /// kept fallible so callers need not know the cap).
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        let nanos = self
            .nanos
            .checked_add(other.nanos)?
            .clamp(-MAX_NANOS, MAX_NANOS);
        Some(Quantity {
            nanos,
            format: self.format,
        })
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value as a float (lossy; for display and rough arithmetic).
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    /// The value in thousandths, rounded up (upstream `MilliValue`).
    pub fn milli_value(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Upstream's `Quantity.String()`.
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == Format::BinarySI {
            let whole = self.nanos / NANO;
            if self.nanos % NANO != 0 || whole.abs() < 1024 {
                format = Format::DecimalSI;
            } else {
                let (mut amount, mut exp) = (whole, 0u32);
                while amount % 1024 == 0 && exp < 6 {
                    amount /= 1024;
                    exp += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                    .get(exp as usize)
                    .copied()
                    .unwrap_or("");
                return format!("{amount}{suffix}");
            }
        }
        let (mut amount, mut exp) = (self.nanos, -9i32);
        while amount % 10 == 0 {
            amount /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => {
                amount *= 10;
                exp -= 1;
            }
            2 => {
                amount *= 100;
                exp -= 2;
            }
            _ => {}
        }
        let suffix = match format {
            Format::DecimalExponent => {
                if exp == 0 {
                    String::new()
                } else {
                    format!("e{exp}")
                }
            }
            _ => match exp {
                -9 => "n".into(),
                -6 => "u".into(),
                -3 => "m".into(),
                0 => String::new(),
                3 => "k".into(),
                6 => "M".into(),
                9 => "G".into(),
                12 => "T".into(),
                15 => "P".into(),
                18 => "E".into(),
                other => format!("e{other}"),
            },
        };
        format!("{amount}{suffix}")
    }
}

/// Integer division rounding toward +infinity.
fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 { q + 1 } else { q }
}

/// Parses a quantity string as upstream's `ParseQuantity` does.
pub fn parse_quantity(s: &str) -> Option<Quantity> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut pos = 0;
    let mut negative = false;
    match bytes[0] {
        b'+' => pos = 1,
        b'-' => {
            negative = true;
            pos = 1;
        }
        _ => {}
    }
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &s[int_start..pos];
    let mut frac_digits = "";
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &s[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let suffix = &s[pos..];
    // (power of ten, power of two, format)
    let (exp10, exp2, format): (i64, u32, Format) = match suffix {
        "" => (0, 0, Format::DecimalSI),
        "n" => (-9, 0, Format::DecimalSI),
        "u" => (-6, 0, Format::DecimalSI),
        "m" => (-3, 0, Format::DecimalSI),
        "k" => (3, 0, Format::DecimalSI),
        "M" => (6, 0, Format::DecimalSI),
        "G" => (9, 0, Format::DecimalSI),
        "T" => (12, 0, Format::DecimalSI),
        "P" => (15, 0, Format::DecimalSI),
        "E" => (18, 0, Format::DecimalSI),
        "Ki" => (0, 10, Format::BinarySI),
        "Mi" => (0, 20, Format::BinarySI),
        "Gi" => (0, 30, Format::BinarySI),
        "Ti" => (0, 40, Format::BinarySI),
        "Pi" => (0, 50, Format::BinarySI),
        "Ei" => (0, 60, Format::BinarySI),
        _ => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9
            {
                return None;
            }
            let e: i64 = digits.parse().ok()?;
            let e = if rest.starts_with('-') { -e } else { e };
            (e, 0, Format::DecimalExponent)
        }
    };
    // The mantissa as an integer of all significant digits.
    let all_digits = format!("{int_digits}{frac_digits}");
    let trimmed = all_digits.trim_start_matches('0');
    let scale10 = exp10 - frac_digits.len() as i64 + 9;
    let nanos = if trimmed.is_empty() {
        0
    } else if trimmed.len() > 36 {
        // Far beyond the cap unless the exponent is hugely negative; either
        // way no real manifest has 36 significant digits.
        if scale10 + (trimmed.len() as i64) < 0 {
            1
        } else {
            MAX_NANOS
        }
    } else {
        let mantissa: i128 = trimmed.parse().ok()?;
        let scaled = mantissa.checked_mul(1i128 << exp2).unwrap_or(i128::MAX);
        scale_pow10(scaled, scale10)
    };
    let nanos = nanos.min(MAX_NANOS);
    Some(Quantity {
        nanos: if negative { -nanos } else { nanos },
        format,
    })
}

/// `m * 10^e` for a non-negative `m`, rounding a fraction up, saturating.
fn scale_pow10(m: i128, e: i64) -> i128 {
    if e >= 0 {
        let mut v = m;
        for _ in 0..e {
            v = match v.checked_mul(10) {
                Some(x) if x <= MAX_NANOS => x,
                _ => return MAX_NANOS,
            };
        }
        v
    } else if e < -38 {
        if m > 0 { 1 } else { 0 }
    } else {
        let d = 10i128.pow((-e) as u32);
        ceil_div(m, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_match_upstream() {
        let cases = [
            ("0.5", "500m"),
            ("1024Mi", "1Gi"),
            ("1000", "1k"),
            ("1e3", "1e3"),
            ("1.5Gi", "1536Mi"),
            ("100m", "100m"),
            ("1", "1"),
            ("0", "0"),
            ("512Ki", "512Ki"),
            ("1023Ki", "1023Ki"),
            ("0.5Ki", "512"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("123Mi", "123Mi"),
            ("1.1", "1100m"),
            ("0.0000000001", "1n"),
            ("-1", "-1"),
            ("1E", "1E"),
            ("10G", "10G"),
            (".5", "500m"),
            ("5.", "5"),
            ("2000m", "2"),
        ];
        for (input, want) in cases {
            let q = parse_quantity(input);
            assert_eq!(q.map(|q| q.canonical()), Some(want.to_string()), "{input}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "abc", "1K", "1 Gi", "--1", "1e", "1.2.3", "Mi", "1Mii", "+", ".",
        ] {
            assert!(parse_quantity(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn compares_by_value_and_caps() {
        let a = parse_quantity("1Gi");
        let b = parse_quantity("1073741824");
        assert!(a.is_some() && a == b);
        let huge = parse_quantity("99999999999999999999999999999999999999999999999E");
        assert!(huge.is_some());
        let tiny = parse_quantity("1e-999999999");
        assert_eq!(tiny.map(|q| q.canonical()), Some("1e-9".to_string()));
        assert_eq!(parse_quantity("1500m").map(|q| q.milli_value()), Some(1500));
    }
}
