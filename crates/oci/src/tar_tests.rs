//! Unit tests of the tar reader: those of kiln-oci's layer reader and of kiln-fileop's archive
//! reader, which this one replaces.

use super::*;

fn header(name: &[u8], flag: u8, size: u64) -> Vec<u8> {
    let mut h = ::tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(::tar::EntryType::new(flag));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

#[test]
fn huge_pax_header_is_refused_without_reading_it() {
    // Claims 1 TiB of PAX records; only the header block exists.
    let tar = header(b"x", b'x', 1 << 40);
    let err = Reader::new(&tar[..]).next_entry().unwrap_err();
    assert!(
        matches!(
            err,
            LayerError::Malformed {
                reason: "extended header too large",
                ..
            }
        ),
        "{err}"
    );
    let tar = header(b"././@LongLink", b'L', u64::MAX >> 2);
    assert!(Reader::new(&tar[..]).next_entry().is_err());
}

#[test]
fn pax_records_override_the_header() {
    let mut pax = Vec::new();
    for rec in [
        "30 mtime=1700000000.123456789\n",
        "15 uid=3000000\n",
        "20 path=a/long/name\n",
    ] {
        pax.extend_from_slice(rec.as_bytes());
    }
    pax.extend_from_slice(b"32 SCHILY.xattr.user.k=v\xffbinary\n");
    let mut tar = header(b"PaxHeaders.0/x", b'x', pax.len() as u64);
    tar.extend_from_slice(&pax);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend(header(b"short", b'0', 0));
    tar.extend([0u8; 1024]);
    let mut r = Reader::new(&tar[..]);
    let h = r.next_entry().unwrap().unwrap();
    assert_eq!(h.name, b"a/long/name");
    assert_eq!((h.uid, h.mtime), (3_000_000, 1_700_000_000));
    assert_eq!(
        h.xattrs,
        vec![(b"user.k".to_vec(), b"v\xffbinary".to_vec())]
    );
    assert!(r.next_entry().unwrap().is_none());
}

#[test]
fn bad_pax_records_are_errors() {
    let mut p = Pending::default();
    assert!(parse_pax(b"99 path=x\n", &mut p).is_err());
    assert!(parse_pax(b"x path=x\n", &mut p).is_err());
    assert!(parse_pax(b"11 uid=abc\n", &mut p).is_err());
    assert!(parse_pax(b"3 \n", &mut p).is_err());
}

#[test]
fn pax_records_and_times() {
    let recs = pax_records(b"30 mtime=1700000000.123456789\n12 uid=1000\n").unwrap();
    assert_eq!(recs[0].0, b"mtime");
    assert_eq!(pax_time(recs[0].1).unwrap(), (1_700_000_000, 123_456_789));
    assert_eq!(recs[1], (&b"uid"[..], &b"1000"[..]));
    assert_eq!(pax_time(b"-1.5").unwrap(), (-2, 500_000_000));
    assert!(pax_records(b"99 path=x\n").is_err());
    assert!(pax_records(b"5 a=b").is_err());
}
