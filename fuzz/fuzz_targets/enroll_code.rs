//! `course::code`: an enrollment code as a person typed it (parse and
//! normalisation), and the key and MAC derived from it with an arbitrary
//! SID and CSR. Never panics, and: a parsed code shows as four groups of
//! five alphabet symbols, which parse back to the same code; case, `-` and
//! spaces never change the result; the code is accepted exactly when it
//! has 20 symbols once `-`/spaces are dropped and I/L/O are read as 1/1/0.
#![cfg_attr(feature = "libfuzzer", no_main)]

use certboard::course::code::{enroll_mac, renewal_message, EnrollCode, ALPHABET, CODE_SYMBOLS};
use certboard_fuzz::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The code text, then (after a NUL) a SID and a CSR for the MAC.
    let (text, tail) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let parsed = EnrollCode::parse(&text);

    // The same text in the other case, and without separators, reads alike.
    assert_eq!(EnrollCode::parse(&text.to_ascii_lowercase()), parsed);
    assert_eq!(EnrollCode::parse(&text.to_ascii_uppercase()), parsed);
    let bare: String = text.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
    assert_eq!(EnrollCode::parse(&bare), parsed);

    let symbols: Vec<char> = bare
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            c => c,
        })
        .collect();
    let valid = symbols.len() == CODE_SYMBOLS
        && symbols
            .iter()
            .all(|c| c.is_ascii() && ALPHABET.contains(&(*c as u8)));
    assert_eq!(parsed.is_ok(), valid, "{text:?}: {parsed:?}");

    let Ok(code) = parsed else {
        return;
    };
    let shown = code.grouped();
    assert_eq!(shown.len(), CODE_SYMBOLS + 3, "{shown}");
    for (i, c) in shown.chars().enumerate() {
        if i % 6 == 5 {
            assert_eq!(c, '-', "{shown}");
        } else {
            assert!(ALPHABET.contains(&(c as u8)), "{shown}");
        }
    }
    assert_eq!(EnrollCode::parse(&shown).as_ref(), Ok(&code));

    let (sid, csr) = tail.split_at(tail.len().min(16));
    let sid = String::from_utf8_lossy(sid);
    let key = code.key(&sid).expect("HKDF");
    let nonce = [0x5a; 32];
    let mac = enroll_mac(&key, &nonce, &sid, csr).expect("HMAC");
    // Bound to the SID: another SID's key gives another MAC.
    let other = code.key(&format!("{sid}x")).expect("HKDF");
    assert_ne!(enroll_mac(&other, &nonce, &sid, csr).expect("HMAC"), mac);
    let _ = renewal_message(&nonce, csr, tail);
});
