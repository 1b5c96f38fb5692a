//! The few DER encodings (X.690) the simulator needs to build X.509
//! certificates (RFC 5280) — enough for AMD-shaped certificates, nothing more.

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

/// A non-negative INTEGER from big-endian bytes.
pub fn uint(be: &[u8]) -> Vec<u8> {
    let skip = be
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(be.len().saturating_sub(1));
    let mut v = be[skip..].to_vec();
    if v.is_empty() {
        v.push(0);
    }
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap_or(0)).collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut chunk = vec![(a & 0x7f) as u8];
        let mut rest = a >> 7;
        while rest > 0 {
            chunk.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    }
    tlv(0x06, &body)
}

pub fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

pub fn bits(b: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(b);
    tlv(0x03, &v)
}

pub fn utf8(s: &str) -> Vec<u8> {
    tlv(0x0c, s.as_bytes())
}

pub fn ia5(s: &str) -> Vec<u8> {
    tlv(0x16, s.as_bytes())
}

pub fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

/// GeneralizedTime from unix seconds (UTC).
pub fn time(unix: i64) -> Vec<u8> {
    let (y, m, d, hh, mm, ss) = civil(unix);
    let s = format!("{y:04}{m:02}{d:02}{hh:02}{mm:02}{ss:02}Z");
    tlv(0x18, s.as_bytes())
}

/// Calendar date and time (UTC) of unix seconds: year, month, day, hour,
/// minute, second.
pub fn civil(unix: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
}

/// Name with one CN (and the AMD-style O/OU/L/ST/C).
pub fn name(cn: &str) -> Vec<u8> {
    let rdn = |o: &str, v: Vec<u8>| set(&[&seq(&[&oid(o), &v])]);
    seq(&[
        &rdn("2.5.4.11", utf8("Engineering")),
        &rdn("2.5.4.6", tlv(0x13, b"US")),
        &rdn("2.5.4.7", utf8("Santa Clara")),
        &rdn("2.5.4.8", utf8("CA")),
        &rdn("2.5.4.10", utf8("Advanced Micro Devices (simulated)")),
        &rdn("2.5.4.3", utf8(cn)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_values() {
        assert_eq!(
            oid("1.2.840.113549.1.1.10"),
            hex_lit("06092a864886f70d01010a")
        );
        assert_eq!(uint(&[0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(uint(&[0, 0, 5]), vec![2, 1, 5]);
        assert_eq!(uint(&[0]), vec![2, 1, 0]);
        assert_eq!(tlv(4, &[0u8; 200])[..3], [4, 0x81, 200]);
        assert_eq!(time(1_735_689_600), tlv(0x18, b"20250101000000Z"));
        assert_eq!(time(951_782_400), tlv(0x18, b"20000229000000Z"));
    }

    fn hex_lit(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
