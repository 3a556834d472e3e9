//! The subject common name (CN) of a client certificate, for SASL EXTERNAL: RabbitMQ's
//! `ssl_cert_login_from = common_name` maps it to a user name.
//!
//! A minimal DER walk instead of an X.509 crate: the certificate has already been parsed and
//! verified by rustls' verifier before this runs, and only one path through it is needed
//! (Certificate → tbsCertificate → subject → each RDN → the id-at-commonName attribute), so a
//! few dozen lines replace a parser with its own dependency tree. Every read is bounds-checked;
//! anything unexpected gives None, never a panic.

/// The DER tags on the path to the subject.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OBJECT_IDENTIFIER: u8 = 0x06;
/// `[0] EXPLICIT Version` at the start of tbsCertificate (absent in v1 certificates).
const VERSION: u8 = 0xa0;
/// id-at-commonName, 2.5.4.3, as DER content bytes.
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];

/// The string types a directory name may use.
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const TELETEX_STRING: u8 = 0x14;
const IA5_STRING: u8 = 0x16;
const UNIVERSAL_STRING: u8 = 0x1c;
const BMP_STRING: u8 = 0x1e;

/// The subject's common names joined with ",", as RabbitMQ joins several CNs; None when the
/// subject has no CN or the encoding is not what a certificate looks like.
pub fn subject_common_name(certificate_der: &[u8]) -> Option<String> {
    let names = subject_common_names(certificate_der)?;
    (!names.is_empty()).then(|| names.join(","))
}

/// Every id-at-commonName value of the subject, in certificate order.
pub fn subject_common_names(certificate_der: &[u8]) -> Option<Vec<String>> {
    let (certificate, _) = expect(certificate_der, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    let (_serial_number, rest) = expect(tbs, INTEGER)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (_validity, rest) = expect(rest, SEQUENCE)?;
    let (mut subject, _) = expect(rest, SEQUENCE)?;
    let mut names = Vec::new();
    while !subject.is_empty() {
        let (mut relative_name, rest) = expect(subject, SET)?;
        subject = rest;
        while !relative_name.is_empty() {
            let (attribute, rest) = expect(relative_name, SEQUENCE)?;
            relative_name = rest;
            let (oid, value) = expect(attribute, OBJECT_IDENTIFIER)?;
            if oid == COMMON_NAME_OID {
                let (tag, content, _) = element(value)?;
                names.push(decode_string(tag, content)?);
            }
        }
    }
    Some(names)
}

/// The content of the element at the start of `input` if it has tag `tag`, and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = element(input)?;
    (found == tag).then_some((content, rest))
}

/// One DER element: its tag, its content, and the bytes after it. Only single-byte tags and
/// definite lengths of up to four bytes (DER forbids the indefinite form).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut input) = input.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = (input.get(..count)?, input.get(count..)?);
        input = rest;
        bytes.iter().fold(0usize, |length, byte| (length << 8) | usize::from(*byte))
    };
    let content = input.get(..length)?;
    Some((tag, content, input.get(length..)?))
}

fn decode_string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        UTF8_STRING | PRINTABLE_STRING | IA5_STRING => String::from_utf8(content.to_vec()).ok(),
        // T.61 in theory; in practice Latin-1, which is how other decoders read it too.
        TELETEX_STRING => Some(content.iter().map(|byte| char::from(*byte)).collect()),
        BMP_STRING => {
            if !content.len().is_multiple_of(2) {
                return None;
            }
            let units = content.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().ok()
        }
        UNIVERSAL_STRING => {
            if !content.len().is_multiple_of(4) {
                return None;
            }
            content
                .chunks_exact(4)
                .map(|quad| char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]])))
                .collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element with `tag` around `content` (short or long length form).
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            length @ 0..=0x7f => out.push(length as u8),
            length @ 0x80..=0xff => out.extend([0x81, length as u8]),
            length => out.extend([0x82, (length >> 8) as u8, length as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    fn attribute(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        der(SEQUENCE, &[der(OBJECT_IDENTIFIER, oid), der(tag, value)].concat())
    }

    /// A certificate skeleton: the fields before the subject are placeholders of the right
    /// types, the subject is the RDNs given, and something follows it as in a real one.
    fn certificate(with_version: bool, relative_names: &[Vec<u8>]) -> Vec<u8> {
        let mut tbs = Vec::new();
        if with_version {
            tbs.extend(der(VERSION, &der(INTEGER, &[2])));
        }
        tbs.extend(der(INTEGER, &[0x01, 0x02]));
        tbs.extend(der(SEQUENCE, &der(OBJECT_IDENTIFIER, &[0x2a, 0x86, 0x48])));
        tbs.extend(der(SEQUENCE, &der(SET, &attribute(COMMON_NAME_OID, UTF8_STRING, b"Issuer CA"))));
        tbs.extend(der(SEQUENCE, &[der(0x17, b"250101000000Z"), der(0x17, b"350101000000Z")].concat()));
        tbs.extend(der(SEQUENCE, &relative_names.concat()));
        tbs.extend(der(SEQUENCE, &[0u8; 300]));
        der(SEQUENCE, &[der(SEQUENCE, &tbs), der(SEQUENCE, &[]), der(0x03, &[0])].concat())
    }

    const COUNTRY_OID: &[u8] = &[0x55, 0x04, 0x06];
    const ORGANIZATION_OID: &[u8] = &[0x55, 0x04, 0x0a];

    /// openssl: a v1 certificate (no version field) for "C=FR, O=Spate, OU=tests, CN=zoë"
    /// issued by "O=SpateMQ tests, CN=SpateMQ test CA".
    const OPENSSL_V1_CERTIFICATE: &str = "\
-----BEGIN CERTIFICATE-----
MIIBaDCCAQ8CFCutUwDY/6n0CkBR8OL8bFwoU2QdMAoGCCqGSM49BAMCMDIxFjAU
BgNVBAoMDVNwYXRlTVEgdGVzdHMxGDAWBgNVBAMMD1NwYXRlTVEgdGVzdCBDQTAe
Fw0yNjEyMDUxODQ4MDBaFw0zNjEyMDIxODQ4MDBaMDwxCzAJBgNVBAYTAkZSMQ4w
DAYDVQQKDAVTcGF0ZTEOMAwGA1UECwwFdGVzdHMxDTALBgNVBAMMBHpvw6swWTAT
BgcqhkjOPQIBBggqhkjOPQMBBwNCAAQ2IUtoNrtPXOJyIJodQM833dekoVV/bo9M
fh3BdGOIlP98Ez4poBM55HuJ/VMUN0VNusOtgo/o7uJVZdSETFMpMAoGCCqGSM49
BAMCA0cAMEQCIDl2+fTiS9ZLuh11GYlD4ZrleYue91xAXpObyX3MUHUsAiBWuLbB
rzhzKt0v3i9xQnjszCA9PWstrp5cr4qwLwfnBQ==
-----END CERTIFICATE-----
";

    /// openssl: a self-signed v3 certificate with the same subject, with extensions.
    const OPENSSL_V3_CERTIFICATE: &str = "\
-----BEGIN CERTIFICATE-----
MIIBzTCCAXOgAwIBAgIUUtFMtdA2Rf45xE0YfdMp5IPopKswCgYIKoZIzj0EAwIw
PDELMAkGA1UEBhMCRlIxDjAMBgNVBAoMBVNwYXRlMQ4wDAYDVQQLDAV0ZXN0czEN
MAsGA1UEAwwEem/DqzAeFw0yNjEyMDUxODQ3NThaFw0zNjEyMDIxODQ3NThaMDwx
CzAJBgNVBAYTAkZSMQ4wDAYDVQQKDAVTcGF0ZTEOMAwGA1UECwwFdGVzdHMxDTAL
BgNVBAMMBHpvw6swWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQ2IUtoNrtPXOJy
IJodQM833dekoVV/bo9Mfh3BdGOIlP98Ez4poBM55HuJ/VMUN0VNusOtgo/o7uJV
ZdSETFMpo1MwUTAdBgNVHQ4EFgQUTrMhQEb4W7RETaQLccehETszmLQwHwYDVR0j
BBgwFoAUTrMhQEb4W7RETaQLccehETszmLQwDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNIADBFAiEAoFcYKQh/NAr8sEAjgob95SDRXrP4smPpufSSSQm+lm0C
IBgdeK/9SoFEGXamxdqnaHEvHF7kF4DUeB0bk32zAp0Q
-----END CERTIFICATE-----
";

    #[test]
    fn the_cn_of_certificates_made_by_openssl_is_read() {
        use rustls::pki_types::pem::PemObject;
        for pem in [OPENSSL_V1_CERTIFICATE, OPENSSL_V3_CERTIFICATE] {
            let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate");
            assert_eq!(subject_common_name(&der).as_deref(), Some("zoë"));
        }
    }

    #[test]
    fn the_subject_cn_is_found_after_the_issuer_cn() {
        let subject = [
            der(SET, &attribute(COUNTRY_OID, PRINTABLE_STRING, b"FR")),
            der(SET, &attribute(ORGANIZATION_OID, UTF8_STRING, b"Spate")),
            der(SET, &attribute(COMMON_NAME_OID, UTF8_STRING, b"alice")),
        ];
        assert_eq!(subject_common_name(&certificate(true, &subject)).as_deref(), Some("alice"));
        assert_eq!(subject_common_name(&certificate(false, &subject)).as_deref(), Some("alice"));
    }

    #[test]
    fn several_cns_are_joined_with_commas_as_rabbitmq_does() {
        let subject = [
            der(SET, &attribute(COMMON_NAME_OID, PRINTABLE_STRING, b"alice")),
            // Two attributes in one RDN (a multi-valued RDN).
            der(
                SET,
                &[attribute(ORGANIZATION_OID, UTF8_STRING, b"Spate"), attribute(COMMON_NAME_OID, IA5_STRING, b"bob")]
                    .concat(),
            ),
        ];
        assert_eq!(subject_common_name(&certificate(true, &subject)).as_deref(), Some("alice,bob"));
    }

    #[test]
    fn string_types_are_decoded() {
        let cn = |tag, value: &[u8]| {
            subject_common_name(&certificate(true, &[der(SET, &attribute(COMMON_NAME_OID, tag, value))]))
        };
        assert_eq!(cn(UTF8_STRING, "zoë".as_bytes()).as_deref(), Some("zoë"));
        assert_eq!(cn(TELETEX_STRING, b"zo\xeb").as_deref(), Some("zoë"));
        assert_eq!(cn(BMP_STRING, &[0, b'z', 0, b'o', 0, 0xeb]).as_deref(), Some("zoë"));
        assert_eq!(cn(UNIVERSAL_STRING, &[0, 0, 0, b'z', 0, 0, 0, 0xeb]).as_deref(), Some("zë"));
        assert_eq!(cn(BMP_STRING, &[0, b'z', 0]), None);
        assert_eq!(cn(UTF8_STRING, &[0xff, 0xfe]), None);
        assert_eq!(cn(0x04, b"octets"), None);
    }

    #[test]
    fn a_long_subject_uses_the_long_length_form() {
        let long_name = "n".repeat(200);
        let subject = [
            der(SET, &attribute(ORGANIZATION_OID, UTF8_STRING, &[b'o'; 300])),
            der(SET, &attribute(COMMON_NAME_OID, UTF8_STRING, long_name.as_bytes())),
        ];
        assert_eq!(subject_common_name(&certificate(true, &subject)), Some(long_name));
    }

    #[test]
    fn no_cn_gives_none() {
        let subject = [der(SET, &attribute(ORGANIZATION_OID, UTF8_STRING, b"Spate"))];
        assert_eq!(subject_common_name(&certificate(true, &subject)), None);
        assert_eq!(subject_common_name(&certificate(true, &[])), None);
    }

    #[test]
    fn every_truncation_and_corruption_gives_none_or_a_name_never_a_panic() {
        let subject = [der(SET, &attribute(COMMON_NAME_OID, UTF8_STRING, b"alice"))];
        let whole = certificate(true, &subject);
        for cut in 0..whole.len() {
            // The outer length no longer fits: nothing can be read.
            assert_eq!(subject_common_name(&whole[..cut]), None, "cut at {cut}");
        }
        for index in 0..whole.len() {
            for byte in [0x00, 0x1f, 0x80, 0x84, 0x85, 0xff] {
                let mut corrupted = whole.clone();
                corrupted[index] = byte;
                let _ = subject_common_name(&corrupted);
            }
        }
        assert_eq!(subject_common_name(&[]), None);
        assert_eq!(subject_common_name(&[0x30, 0x80, 0x00, 0x00]), None, "indefinite length");
    }
}
