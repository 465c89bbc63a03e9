//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`): exact parsing
//! into nano-units and upstream's canonical string form.
//!
//! Invariant: arithmetic is exact on i128 nano-units (enough for `8Ei`);
//! parsing never panics and rejects what upstream rejects.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A parsed quantity: value in units of 10⁻⁹ plus the suffix family.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    pub nanos: i128,
    pub format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

const NANO: i128 = 1_000_000_000;

fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

/// Parse like upstream's `resource.ParseQuantity`.
pub fn parse_quantity(s: &str) -> Option<Quantity> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let negative = match bytes[0] {
        b'-' => {
            i = 1;
            true
        }
        b'+' => {
            i = 1;
            false
        }
        _ => false,
    };
    let num_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    let number = &s[num_start..i];
    let suffix = &s[i..];
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let frac_len = frac_part.len() as u32;
    // multiplier as (numerator, format) where value = mantissa * num / 10^frac_len
    let (mult_num, dec_exp, format): (i128, i32, Format) = match suffix {
        "" => (1, 0, Format::DecimalSI),
        "n" => (1, -9, Format::DecimalSI),
        "u" => (1, -6, Format::DecimalSI),
        "m" => (1, -3, Format::DecimalSI),
        "k" => (1, 3, Format::DecimalSI),
        "M" => (1, 6, Format::DecimalSI),
        "G" => (1, 9, Format::DecimalSI),
        "T" => (1, 12, Format::DecimalSI),
        "P" => (1, 15, Format::DecimalSI),
        "E" => (1, 18, Format::DecimalSI),
        "Ki" => (1 << 10, 0, Format::BinarySI),
        "Mi" => (1 << 20, 0, Format::BinarySI),
        "Gi" => (1 << 30, 0, Format::BinarySI),
        "Ti" => (1 << 40, 0, Format::BinarySI),
        "Pi" => (1 << 50, 0, Format::BinarySI),
        "Ei" => (1 << 60, 0, Format::BinarySI),
        other => {
            let rest = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))?;
            let e: i32 = rest.parse().ok()?;
            if !(-30..=30).contains(&e) || rest.starts_with('+') && rest.len() == 1 {
                return None;
            }
            (1, e, Format::DecimalExponent)
        }
    };
    // nanos = mantissa * mult_num * 10^(dec_exp + 9) / 10^frac_len, rounded up
    let exp = dec_exp + 9 - frac_len as i32;
    let base = mantissa.checked_mul(mult_num)?;
    let nanos = if exp >= 0 {
        base.checked_mul(pow10(exp as u32)?)?
    } else {
        let d = pow10((-exp) as u32)?;
        let q = base / d;
        if base % d != 0 { q + 1 } else { q }
    };
    Some(Quantity {
        nanos: if negative { -nanos } else { nanos },
        format,
    })
}

impl Quantity {
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_add(other.nanos)?,
            format: self.format,
        })
    }

    /// The value as f64 (for comparisons and ratios).
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    /// Upstream's canonical string (`1000m` → `1`, `1024Mi` → `1Gi`).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.abs();
        let mut format = self.format;
        if format == Format::BinarySI && (abs % NANO != 0 || abs < 1024 * NANO) {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let bytes = abs / NANO;
            const SUFFIX: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut n = 0;
            while n < 6 && bytes % (1i128 << (10 * (n + 1))) == 0 {
                n += 1;
            }
            return format!("{sign}{}{}", bytes >> (10 * n), SUFFIX[n]);
        }
        // decimal: the largest exponent (multiple of 3) keeping an integer mantissa
        let mut exp: i32 = -9;
        let mut mantissa = abs;
        while exp < 18 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exp += 3;
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
                -9 => "n",
                -6 => "u",
                -3 => "m",
                0 => "",
                3 => "k",
                6 => "M",
                9 => "G",
                12 => "T",
                15 => "P",
                _ => "E",
            }
            .to_string(),
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (input, want) in [
            ("1000m", "1"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("100Ki", "100Ki"),
            ("512", "512"),
            ("0", "0"),
            ("0Gi", "0"),
            ("1e3", "1e3"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129M", "129M"),
            ("-1", "-1"),
            ("0.1m", "100u"),
            ("1n", "1n"),
            ("1.1n", "2n"),
        ] {
            assert_eq!(
                parse_quantity(input).map(|q| q.canonical()).as_deref(),
                Some(want),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "abc", "1.2.3", "1Q", "Gi", ".", "1 Gi", "--1", "1e", "1e999",
        ] {
            assert!(parse_quantity(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn compare() {
        assert_eq!(parse_quantity("1Gi"), parse_quantity("1024Mi"));
        assert!(parse_quantity("1").unwrap().as_f64() > parse_quantity("500m").unwrap().as_f64());
    }
}
