//! Parsing of what users write for sizes and times: quantities (`500m`, `16Gi`) and
//! human durations (`90m`, `1h30m`). Parsed once, at validation, into numbers.
use std::time::Duration;

/// CPU in millicores from `4`, `0.5`, `500m`.
pub fn parse_cpu_millis(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if let Some(m) = s.strip_suffix('m') {
        return parse_decimal(m, 1).and_then(|v| whole(v, s));
    }
    parse_decimal(s, 1000).and_then(|v| whole(v, s))
}

/// Bytes from `16Gi`, `512Mi`, `1G`, `1.5Gi`, `1000`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    const SUFFIXES: [(&str, u128); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    for (suffix, mult) in SUFFIXES {
        if let Some(n) = s.strip_suffix(suffix) {
            return parse_decimal(n, mult).and_then(|v| whole(v, s));
        }
    }
    parse_decimal(s, 1).and_then(|v| whole(v, s))
}

/// A non-negative decimal number times `mult`, exactly (no floating point).
fn parse_decimal(s: &str, mult: u128) -> Result<u128, String> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if s.starts_with('-') {
        return Err("is negative".into());
    }
    if !(digits(int) || (int.is_empty() && digits(frac))) || (!frac.is_empty() && !digits(frac)) {
        return Err("is not a number with an optional unit".into());
    }
    if int.len() > 20 || frac.len() > 18 {
        return Err("is too large".into());
    }
    let int_v: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| "is too large")?
    };
    let mut value = int_v.checked_mul(mult).ok_or("is too large")?;
    if !frac.is_empty() {
        let scale = 10u128.pow(frac.len() as u32);
        let frac_v: u128 = frac.parse().map_err(|_| "is too large")?;
        let part = frac_v.checked_mul(mult).ok_or("is too large")?;
        if part % scale != 0 {
            return Err("is finer than the smallest unit".into());
        }
        value = value.checked_add(part / scale).ok_or("is too large")?;
    }
    Ok(value)
}

fn whole(v: u128, _s: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| "is too large".to_string())
}

/// A positive duration from `90m`, `2h`, `1h30m`, `45s`, `1d` (units s, m, h, d).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            c if c.is_whitespace() => {
                return Err("has a space; durations are written without spaces".into());
            }
            _ => return Err(format!("has '{c}' where a unit (s, m, h or d) belongs")),
        };
        if num.is_empty() {
            return Err("needs a number before each unit".into());
        }
        let n: u64 = num.parse().map_err(|_| "is too large".to_string())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or("is too large")?;
        num.clear();
    }
    if !num.is_empty() {
        return Err("needs a unit (s, m, h or d) after the number".into());
    }
    if total == 0 {
        return Err("must be longer than zero".into());
    }
    Ok(Duration::from_secs(total))
}

/// `5400s` -> `1h30m`, the shortest way to say a duration.
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= secs {
            out.push_str(&format!("{}{unit}", s / secs));
            s %= secs;
        }
    }
    out
}

/// Bytes, exactly, in the largest unit that divides them (`17179869184` -> `16Gi`,
/// `1500000000` -> `1500M`), else as plain bytes.
/// It is what the pod asks for, so it is never rounded (a property test reads it back).
pub fn format_bytes(b: u64) -> String {
    // The largest unit that divides it says it shortest (`1T`, not `976562500Ki`).
    let units = [
        ("Ti", 1u64 << 40),
        ("T", 1_000_000_000_000),
        ("Gi", 1 << 30),
        ("G", 1_000_000_000),
        ("Mi", 1 << 20),
        ("M", 1_000_000),
        ("Ki", 1 << 10),
        ("k", 1_000),
    ];
    match units
        .iter()
        .find(|(_, size)| b >= *size && b.is_multiple_of(*size))
    {
        Some((unit, size)) => format!("{}{unit}", b / size),
        None => b.to_string(),
    }
}

/// Millicores as Kubernetes writes them (`4000` -> `4`, `500` -> `500m`).
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu_millis("4"), Ok(4000));
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert_eq!(parse_cpu_millis("500m"), Ok(500));
        assert_eq!(parse_cpu_millis(".25"), Ok(250));
        assert!(parse_cpu_millis("-1").is_err());
        assert!(parse_cpu_millis("four").is_err());
        assert!(parse_cpu_millis("0.0001").is_err());
        assert!(parse_cpu_millis("").is_err());
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("16Gi"), Ok(16 << 30));
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("-1Gi").is_err());
        assert!(parse_bytes("16GB").is_err());
        assert!(parse_bytes("99999999999999999999Ei").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("0s").is_err());
        let err = |s| parse_duration(s).unwrap_err();
        assert_eq!(err("90"), "needs a unit (s, m, h or d) after the number");
        assert_eq!(err("h"), "needs a number before each unit");
        assert_eq!(
            err("2 hours"),
            "has a space; durations are written without spaces"
        );
        assert_eq!(err("-5m"), "has '-' where a unit (s, m, h or d) belongs");
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(16 << 30), "16Gi");
        assert_eq!(format_bytes(1_500_000_000), "1500M");
        assert_eq!(format_bytes(1024), "1Ki");
        assert_eq!(format_bytes(1_610_612_737), "1610612737");
        assert_eq!(format_cpu(500), "500m");
        assert_eq!(format_cpu(4000), "4");
    }
}
