//! The serving certificate's notAfter, for the expiry metric, read with a
//! few lines of DER walking instead of an X.509 library (which added 0.3 MB
//! to the image for this one field): the first PEM `CERTIFICATE` block,
//! Certificate -> TBSCertificate -> [version] serial signature issuer
//! validity -> notAfter (UTCTime or GeneralizedTime, UTC). Anything
//! unexpected gives `None` (the metric keeps its last value); nothing here
//! can panic on input.

use base64::Engine as _;

/// One DER element: (tag, content, rest).
fn element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) -> Unix seconds.
fn time(tag: u8, s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (year, at) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy = num(0, 2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (0x18, 14) => (num(0, 4)?, 4),
        _ => return None,
    };
    let (mo, d, h, mi, se) = (
        num(at, at + 2)?,
        num(at + 2, at + 4)?,
        num(at + 4, at + 6)?,
        num(at + 6, at + 8)?,
        num(at + 8, at + 10)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// notAfter of a DER certificate.
fn not_after_der(der: &[u8]) -> Option<i64> {
    let (0x30, cert, _) = element(der)? else {
        return None;
    };
    let (0x30, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2; // [0] version
    }
    for want in [0x02, 0x30, 0x30] {
        // serial, signature algorithm, issuer
        let (tag, _, r) = element(rest)?;
        if tag != want {
            return None;
        }
        rest = r;
    }
    let (0x30, validity, _) = element(rest)? else {
        return None;
    };
    let (_, _, after) = element(validity)?; // notBefore
    let (tag, value, _) = element(after)?;
    time(tag, value)
}

/// The notAfter (Unix seconds) of the first certificate in a PEM chain: the
/// serving (leaf) certificate.
pub fn not_after(pem: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(pem).ok()?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = text.find(begin)? + begin.len();
    let end = start + text[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = text[start..end].split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    not_after_der(&der)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(y: i32, m: u8, d: u8) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn not_after_is_the_leafs() {
        // 2031-05-17 (UTCTime) and 2061-02-28 (GeneralizedTime: 2050 on).
        assert_eq!(not_after(cert(2031, 5, 17).as_bytes()), Some(1_936_742_400));
        assert_eq!(not_after(cert(2061, 2, 28).as_bytes()), Some(2_876_774_400));
        assert_eq!(not_after(cert(1999, 12, 31).as_bytes()), Some(946_598_400));
        let chain = format!("{}{}", cert(2031, 5, 17), cert(2040, 1, 1));
        assert_eq!(not_after(chain.as_bytes()), Some(1_936_742_400));
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(
            not_after(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            None
        );
        let pem = cert(2031, 5, 17);
        let der = {
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
        };
        // Every truncation and every single-byte change: an answer or None.
        for cut in 0..der.len() {
            let _ = not_after_der(&der[..cut]);
        }
        for i in 0..der.len() {
            for b in [0x00, 0x30, 0x80, 0x84, 0xff] {
                let mut d = der.clone();
                d[i] = b;
                let _ = not_after_der(&d);
            }
        }
        assert_eq!(time(0x17, b"311317000000Z"), None);
        assert_eq!(time(0x18, b"2031051700000Z"), None);
    }
}
