//! The submission's cryptography, shared by Blackboard and the client so
//! both sides compute exactly the same thing. Everything here is OpenSSL
//! except RC4 (see `rc4.rs`).
//!
//! From the 32-byte session key and the hash of the transcript Blackboard
//! signed ([`transcript`]), HKDF-SHA256 derives two independent keys, one
//! to encrypt the report and one to MAC it (PROTOCOL.md §4), so the report
//! is bound to the very exchange the student verified. The MAC covers the
//! transcript hash, the cipher, the IV and the ciphertext, each
//! length-prefixed, so no field can be moved into another.

use openssl::cipher::Cipher as EvpCipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::encrypt::{Decrypter, Encrypter};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::md_ctx::MdCtx;
use openssl::pkey::{HasPrivate, HasPublic, PKey, PKeyRef, Private};
use openssl::rsa::Padding;
use openssl::sign::Signer;
use openssl::symm::{Cipher, Crypter, Mode};

use crate::message::{CipherId, IV_LEN, MAC_LEN, NONCE_LEN};
use crate::rc4::Rc4;

/// Length of the session key Blackboard hands out.
pub const SESSION_KEY_LEN: usize = 32;

/// Fills a fresh array from OpenSSL's CSPRNG.
pub fn random<const N: usize>() -> Result<[u8; N], ErrorStack> {
    let mut out = [0u8; N];
    openssl::rand::rand_bytes(&mut out)?;
    Ok(out)
}

/// The report the lab fixes: `This is submission from SID<sid>.\n`, ten times.
pub fn lab_report(sid: &str) -> String {
    format!("This is submission from SID{sid}.\n").repeat(10)
}

/// The two keys derived from one session key.
pub struct SessionKeys {
    enc: [u8; 32],
    mac: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys { .. }")
    }
}

/// HKDF-SHA256 (RFC 5869), extract then expand, to 32 bytes. OpenSSL's
/// EVP_KDF directly: the EVP_PKEY_CTX route (`EVP_PKEY_CTX_new_id(HKDF)`)
/// computes the same bytes but builds a key-exchange wrapper around the
/// same KDF on every call, about half the instructions of a derivation.
pub(crate) fn hkdf(key: &[u8], salt: &[u8], info: &[u8]) -> Result<[u8; 32], ErrorStack> {
    let mut out = [0u8; 32];
    openssl::kdf::hkdf(
        Md::sha256(),
        key,
        Some(salt),
        Some(info),
        openssl::kdf::HkdfMode::ExtractAndExpand,
        None,
        &mut out,
    )?;
    Ok(out)
}

impl SessionKeys {
    /// Encrypts or decrypts (the same operation for both ciphers, which are
    /// stream ciphers) the report.
    pub fn apply_cipher(
        &self,
        cipher: CipherId,
        iv: &[u8; IV_LEN],
        data: &[u8],
    ) -> Result<Vec<u8>, ErrorStack> {
        match cipher {
            CipherId::Aes256Ctr => {
                let mut c =
                    Crypter::new(Cipher::aes_256_ctr(), Mode::Encrypt, &self.enc, Some(iv))?;
                let mut out = vec![0u8; data.len() + 16];
                let n = c.update(data, &mut out)?;
                let m = c.finalize(&mut out[n..])?;
                out.truncate(n + m);
                Ok(out)
            }
            CipherId::Rc4 => {
                let mut out = data.to_vec();
                // The key is 32 bytes, always a valid RC4 key length.
                match Rc4::new(&self.enc) {
                    Ok(mut rc4) => {
                        // RC4-drop[3072]: the first key-stream bytes are the
                        // most biased.
                        rc4.skip(3072);
                        rc4.apply(&mut out);
                        Ok(out)
                    }
                    Err(_) => Err(ErrorStack::get()),
                }
            }
        }
    }
}

/// Length of a SHA-256 digest (the transcript hash).
pub const DIGEST_LEN: usize = 32;

/// Appends `lp(x)` = le64(len(x)) || x.
fn put_lp(out: &mut Vec<u8>, x: &[u8]) {
    out.extend_from_slice(&(x.len() as u64).to_le_bytes());
    out.extend_from_slice(x);
}

/// The version 2 transcript Blackboard signs:
/// `"certboard v2 transcript" || lp(hello) || lp(server_nonce) ||
/// lp(wrapped_key) || lp(bb_cert)`, where `hello` is the whole SubmitOpen
/// payload (type byte included) as received.
pub fn transcript(
    hello: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    wrapped_key: &[u8],
    bb_cert_der: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(64 + hello.len() + wrapped_key.len() + bb_cert_der.len());
    t.extend_from_slice(b"certboard v2 transcript");
    for field in [hello, &server_nonce[..], wrapped_key, bb_cert_der] {
        put_lp(&mut t, field);
    }
    t
}

/// The version 3 transcript: version 2's fields under its own label
/// (`"certboard v3 transcript"`), so a version 2 signature never serves a
/// version 3 exchange or the reverse. `hello` is the whole `SubmitOpen3`
/// payload as received.
pub fn transcript_v3(
    hello: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    wrapped_key: &[u8],
    bb_cert_der: &[u8],
) -> Vec<u8> {
    let mut t = transcript(hello, server_nonce, wrapped_key, bb_cert_der);
    t.splice(..LABEL_V2.len(), LABEL_V3.iter().copied());
    t
}

/// What the CA's root key signs in a version 3 `CaChallenge3`:
/// `"certboard v3 ca challenge" || lp(hello) || lp(policy) || lp(nonce) ||
/// lp(ca_cert) || lp(log_key)`, where `hello` is the whole `CaHello3`
/// payload as received (her fresh nonce in it), `policy` its one byte.
pub fn ca_challenge_transcript(
    hello: &[u8],
    policy: u8,
    nonce: &[u8; NONCE_LEN],
    ca_cert_der: &[u8],
    log_key: &str,
) -> Vec<u8> {
    let mut t = Vec::with_capacity(128 + hello.len() + ca_cert_der.len() + log_key.len());
    t.extend_from_slice(b"certboard v3 ca challenge");
    for field in [
        hello,
        &[policy][..],
        &nonce[..],
        ca_cert_der,
        log_key.as_bytes(),
    ] {
        put_lp(&mut t, field);
    }
    t
}

const LABEL_V2: &[u8] = b"certboard v2 transcript";
const LABEL_V3: &[u8] = b"certboard v3 transcript";

/// The largest `ciphertext` of one version 3 `Chunk` Blackboard asks for:
/// 64 KiB, so a chunk frame (1 + 8 + 4 + 65,536 + 32 = 65,581 bytes) fits
/// the default frame limit.
pub const CHUNK_MAX: usize = 64 * 1024;

/// The AES-256-CTR stream of one uploaded file, continued from chunk to
/// chunk: one cipher context per upload, its counter starting at the
/// announcement's IV. Encryption and decryption are the same operation.
pub struct FileCipher {
    ctx: CipherCtx,
}

impl std::fmt::Debug for FileCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileCipher { .. }")
    }
}

impl FileCipher {
    fn new(key: &[u8; 32], iv: &[u8; IV_LEN]) -> Result<FileCipher, ErrorStack> {
        let mut ctx = CipherCtx::new()?;
        ctx.encrypt_init(Some(EvpCipher::aes_256_ctr()), Some(key), Some(iv))?;
        Ok(FileCipher { ctx })
    }

    /// The next `data.len()` bytes of the stream XORed with `data`.
    pub fn apply(&mut self, data: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        let mut out = data.to_vec();
        self.apply_in_place(&mut out)?;
        Ok(out)
    }

    /// The next `data.len()` bytes of the stream XORed into `data` where it
    /// lies: Blackboard decrypts each 64 KiB chunk without a second buffer
    /// (issue 20's profile).
    pub fn apply_in_place(&mut self, data: &mut [u8]) -> Result<(), ErrorStack> {
        // CTR is a stream mode (block size 1): exactly as many bytes come
        // out as go in, so the buffer is always large enough.
        let n = self.ctx.cipher_update_inplace(data, data.len())?;
        debug_assert_eq!(n, data.len());
        Ok(())
    }
}

/// The MACs of one version 3 upload's chunks ([`SessionKeys::chunk_mac_v3`]),
/// the HMAC key and SHA-256 set up once per upload and one context reused
/// for every chunk: a key object and an implicit digest fetch per chunk
/// were 3% of the server's CPU per MiB uploaded (issue 20's profile).
pub struct ChunkMac {
    key: PKey<Private>,
    md: Md,
    ctx: MdCtx,
    th: [u8; DIGEST_LEN],
}

impl std::fmt::Debug for ChunkMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkMac { .. }")
    }
}

impl ChunkMac {
    /// Chunk `seq`'s MAC: the same bytes as [`SessionKeys::chunk_mac_v3`].
    pub fn mac(&mut self, seq: u64, ciphertext: &[u8]) -> Result<[u8; MAC_LEN], ErrorStack> {
        self.ctx.digest_sign_init(Some(&self.md), &self.key)?;
        self.ctx.digest_sign_update(CHUNK_LABEL)?;
        self.ctx
            .digest_sign_update(&(self.th.len() as u64).to_le_bytes())?;
        self.ctx.digest_sign_update(&self.th)?;
        self.ctx.digest_sign_update(&seq.to_le_bytes())?;
        self.ctx
            .digest_sign_update(&(ciphertext.len() as u64).to_le_bytes())?;
        self.ctx.digest_sign_update(ciphertext)?;
        let mut out = [0u8; MAC_LEN];
        self.ctx.digest_sign_final(Some(&mut out))?;
        Ok(out)
    }
}

const CHUNK_LABEL: &[u8] = b"certboard v3 chunk";

/// SHA-256 of the exact bytes, as lower-case hex (a report's
/// `report_sha256`).
pub fn sha256_hex(data: &[u8]) -> String {
    hex_lower(&openssl::sha::sha256(data))
}

/// Bytes as lower-case hex. Every receipt writes three digests this way;
/// a `format!` per byte cost ~250 instructions each (issue 19's profile).
pub fn hex_lower(bytes: &[u8]) -> String {
    hex_with(bytes, b"0123456789abcdef")
}

/// Bytes as upper-case hex (a serial as OpenSSL prints it).
pub fn hex_upper(bytes: &[u8]) -> String {
    hex_with(bytes, b"0123456789ABCDEF")
}

fn hex_with(bytes: &[u8], digits: &[u8; 16]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 0x0f)]));
    }
    out
}

/// A certificate's SHA-256 fingerprint as `openssl x509 -fingerprint
/// -sha256` prints it: upper-case hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    fingerprint_of_digest(&openssl::sha::sha256(der))
}

/// A SHA-256 digest in the form of [`fingerprint`].
pub fn fingerprint_of_digest(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads a fingerprint given by a person: 64 hex digits, in either case,
/// with or without `:` (or spaces) between pairs; `None` otherwise.
pub fn parse_fingerprint(text: &str) -> Option<[u8; DIGEST_LEN]> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b':' && !b.is_ascii_whitespace())
        .collect();
    if digits.len() != 2 * DIGEST_LEN {
        return None;
    }
    let mut out = [0u8; DIGEST_LEN];
    for (o, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let hex = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

impl SessionKeys {
    /// Version 2: the keys from the session key and `th` = SHA-256 of the
    /// transcript.
    pub fn derive_v2(
        session_key: &[u8; SESSION_KEY_LEN],
        th: &[u8; DIGEST_LEN],
    ) -> Result<SessionKeys, ErrorStack> {
        Ok(SessionKeys {
            enc: hkdf(session_key, th, b"certboard v2 report encryption")?,
            mac: hkdf(session_key, th, b"certboard v2 report mac")?,
        })
    }

    /// Version 2 report MAC: `HMAC(mac_key, "certboard v2 report" ||
    /// lp(th) || lp(cipher) || lp(iv) || lp(ciphertext))`. The SID is not
    /// repeated: it is in the transcript `th` hashes.
    pub fn report_mac_v2(
        &self,
        th: &[u8; DIGEST_LEN],
        cipher: CipherId,
        iv: &[u8; IV_LEN],
        ciphertext: &[u8],
    ) -> Result<[u8; MAC_LEN], ErrorStack> {
        let key = PKey::hmac(&self.mac)?;
        let mut s = Signer::new(MessageDigest::sha256(), &key)?;
        s.update(b"certboard v2 report")?;
        for field in [&th[..], &[cipher as u8], &iv[..], ciphertext] {
            s.update(&(field.len() as u64).to_le_bytes())?;
            s.update(field)?;
        }
        let mut out = [0u8; MAC_LEN];
        s.sign(&mut out)?;
        Ok(out)
    }
}

impl SessionKeys {
    /// Version 3: the keys from the session key and `th`, under version
    /// 3's own HKDF infos.
    pub fn derive_v3(
        session_key: &[u8; SESSION_KEY_LEN],
        th: &[u8; DIGEST_LEN],
    ) -> Result<SessionKeys, ErrorStack> {
        Ok(SessionKeys {
            enc: hkdf(session_key, th, b"certboard v3 file encryption")?,
            mac: hkdf(session_key, th, b"certboard v3 file mac")?,
        })
    }

    /// The stream cipher of one file (version 3), from its IV.
    pub fn file_cipher(&self, iv: &[u8; IV_LEN]) -> Result<FileCipher, ErrorStack> {
        FileCipher::new(&self.enc, iv)
    }

    /// The chunk MACs of one upload under this session's `th`.
    pub fn chunk_mac(&self, th: &[u8; DIGEST_LEN]) -> Result<ChunkMac, ErrorStack> {
        Ok(ChunkMac {
            key: PKey::hmac(&self.mac)?,
            md: Md::fetch(None, "SHA256", None)?,
            ctx: MdCtx::new()?,
            th: *th,
        })
    }

    fn mac_over(&self, label: &[u8], parts: &[Part<'_>]) -> Result<[u8; MAC_LEN], ErrorStack> {
        let key = PKey::hmac(&self.mac)?;
        let mut s = Signer::new(MessageDigest::sha256(), &key)?;
        s.update(label)?;
        for part in parts {
            match part {
                Part::Lp(x) => {
                    s.update(&(x.len() as u64).to_le_bytes())?;
                    s.update(x)?;
                }
                Part::Raw(x) => s.update(x)?,
            }
        }
        let mut out = [0u8; MAC_LEN];
        s.sign(&mut out)?;
        Ok(out)
    }

    /// Version 3 `FileAnnounce` MAC: `HMAC(mac_key, "certboard v3 announce"
    /// || lp(th) || lp(assignment) || lp(file_name) || lp(le64(size)) ||
    /// lp(sha256) || lp(cipher) || lp(iv))`.
    #[allow(clippy::too_many_arguments)]
    pub fn announce_mac_v3(
        &self,
        th: &[u8; DIGEST_LEN],
        assignment: &str,
        file_name: &str,
        size: u64,
        sha256: &[u8; DIGEST_LEN],
        cipher: CipherId,
        iv: &[u8; IV_LEN],
    ) -> Result<[u8; MAC_LEN], ErrorStack> {
        self.mac_over(
            b"certboard v3 announce",
            &[
                Part::Lp(th),
                Part::Lp(assignment.as_bytes()),
                Part::Lp(file_name.as_bytes()),
                Part::Lp(&size.to_le_bytes()),
                Part::Lp(sha256),
                Part::Lp(&[cipher as u8]),
                Part::Lp(iv),
            ],
        )
    }

    /// Version 3 `Chunk` MAC: `HMAC(mac_key, "certboard v3 chunk" || lp(th)
    /// || le64(seq) || lp(ciphertext))`. The sequence number makes a
    /// chunk valid at one place of one upload only.
    pub fn chunk_mac_v3(
        &self,
        th: &[u8; DIGEST_LEN],
        seq: u64,
        ciphertext: &[u8],
    ) -> Result<[u8; MAC_LEN], ErrorStack> {
        self.mac_over(
            CHUNK_LABEL,
            &[
                Part::Lp(th),
                Part::Raw(&seq.to_le_bytes()),
                Part::Lp(ciphertext),
            ],
        )
    }

    /// Version 3 `UploadDone` MAC: `HMAC(mac_key, "certboard v3 done" ||
    /// lp(th) || lp(announce) || le64(chunks) || sha256)`, `announce` the
    /// whole `FileAnnounce` payload as sent: the end binds the file's
    /// announcement, how many chunks there were and its hash.
    pub fn done_mac_v3(
        &self,
        th: &[u8; DIGEST_LEN],
        announce: &[u8],
        chunks: u64,
        sha256: &[u8; DIGEST_LEN],
    ) -> Result<[u8; MAC_LEN], ErrorStack> {
        self.mac_over(
            b"certboard v3 done",
            &[
                Part::Lp(th),
                Part::Lp(announce),
                Part::Raw(&chunks.to_le_bytes()),
                Part::Raw(sha256),
            ],
        )
    }
}

/// The initial counter block of a status answer's AES-256-CTR stream.
/// Fixed, since the key streams nothing else: the intent is in the
/// transcript the keys come from, and a status session sends no file.
pub const STATUS_IV: [u8; IV_LEN] = [0; IV_LEN];

impl SessionKeys {
    /// Version 3 `StatusRequest` MAC: `HMAC(mac_key, "certboard v3 status
    /// request" || lp(th))`: proof that she unwrapped the session key.
    pub fn status_request_mac_v3(
        &self,
        th: &[u8; DIGEST_LEN],
    ) -> Result<[u8; MAC_LEN], ErrorStack> {
        self.mac_over(b"certboard v3 status request", &[Part::Lp(th)])
    }

    /// Version 3 `StatusPart` MAC: `HMAC(mac_key, "certboard v3 status
    /// part" || lp(th) || le64(seq) || u8(last) || lp(ciphertext))`: a
    /// piece is valid at one place of one answer only, and only the last
    /// one can say it is.
    pub fn status_part_mac_v3(
        &self,
        th: &[u8; DIGEST_LEN],
        seq: u64,
        last: bool,
        ciphertext: &[u8],
    ) -> Result<[u8; MAC_LEN], ErrorStack> {
        self.mac_over(
            b"certboard v3 status part",
            &[
                Part::Lp(th),
                Part::Raw(&seq.to_le_bytes()),
                Part::Raw(&[u8::from(last)]),
                Part::Lp(ciphertext),
            ],
        )
    }
}

/// One input of a MAC: length-prefixed or, for fixed-size fields, raw.
enum Part<'a> {
    Lp(&'a [u8]),
    Raw(&'a [u8]),
}

/// Constant-time equality (OpenSSL's `CRYPTO_memcmp`); unequal lengths are
/// unequal without looking at the bytes.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// HMAC-SHA256(key, data) as one call.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], ErrorStack> {
    let key = PKey::hmac(key)?;
    let mut s = Signer::new(MessageDigest::sha256(), &key)?;
    s.update(data)?;
    let mut out = [0u8; 32];
    s.sign(&mut out)?;
    Ok(out)
}

/// RSA-OAEP(SHA-256) encryption of the session key to a student's key.
pub fn wrap_key<T: HasPublic>(key: &PKeyRef<T>, session_key: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    let mut e = Encrypter::new(key)?;
    e.set_rsa_padding(Padding::PKCS1_OAEP)?;
    e.set_rsa_oaep_md(MessageDigest::sha256())?;
    e.set_rsa_mgf1_md(MessageDigest::sha256())?;
    let mut out = vec![0u8; e.encrypt_len(session_key)?];
    let n = e.encrypt(session_key, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// The inverse of [`wrap_key`], with the student's private key.
pub fn unwrap_key<T: HasPrivate>(key: &PKeyRef<T>, wrapped: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    let mut d = Decrypter::new(key)?;
    d.set_rsa_padding(Padding::PKCS1_OAEP)?;
    d.set_rsa_oaep_md(MessageDigest::sha256())?;
    d.set_rsa_mgf1_md(MessageDigest::sha256())?;
    let mut out = vec![0u8; d.decrypt_len(wrapped)?];
    let n = d.decrypt(wrapped, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    #[test]
    fn an_uploads_chunk_mac_is_the_one_chunk_mac_v3_defines() -> Result<(), ErrorStack> {
        let keys = SessionKeys::derive_v3(&[7u8; SESSION_KEY_LEN], &[9u8; DIGEST_LEN])?;
        let th = [3u8; DIGEST_LEN];
        let mut reused = keys.chunk_mac(&th)?;
        for (seq, data) in [(0u64, &b"first"[..]), (1, &[0u8; 100][..]), (2, &b""[..])] {
            let once = keys.chunk_mac_v3(&th, seq, data)?;
            assert_eq!(reused.mac(seq, data)?, once, "chunk {seq}");
        }
        // Another transcript, another MAC.
        let mut other = keys.chunk_mac(&[4u8; DIGEST_LEN])?;
        assert_ne!(other.mac(0, b"first")?, reused.mac(0, b"first")?);
        Ok(())
    }

    #[test]
    fn a_file_decrypted_in_place_piece_by_piece_is_the_whole_stream() -> Result<(), ErrorStack> {
        let keys = SessionKeys::derive_v3(&[1u8; SESSION_KEY_LEN], &[2u8; DIGEST_LEN])?;
        let iv = [5u8; IV_LEN];
        let plain: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let whole = keys.file_cipher(&iv)?.apply(&plain)?;
        assert_ne!(whole, plain);
        let mut pieces = whole.clone();
        let mut back = keys.file_cipher(&iv)?;
        // Pieces that do not end on a 16-byte block: the counter carries on.
        for piece in pieces.chunks_mut(333) {
            back.apply_in_place(piece)?;
        }
        assert_eq!(pieces, plain);
        Ok(())
    }

    #[test]
    fn hex_is_what_format_writes_byte_by_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let lower: String = all.iter().map(|b| format!("{b:02x}")).collect();
        let upper: String = all.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex_lower(&all), lower);
        assert_eq!(hex_upper(&all), upper);
        assert_eq!(hex_lower(&[]), "");
    }

    #[test]
    fn the_transcript_is_length_prefixed_field_by_field() {
        let t = transcript(b"ab", &[1; 32], b"c", b"");
        let mut want = b"certboard v2 transcript".to_vec();
        want.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
        want.extend_from_slice(&[32, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[1; 32]);
        want.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, b'c']);
        want.extend_from_slice(&[0; 8]);
        assert_eq!(t, want);
        let fp = fingerprint(b"abc");
        assert!(fp.starts_with("BA:78:16:BF:"), "{fp}");
        assert_eq!(parse_fingerprint(&fp), Some(openssl::sha::sha256(b"abc")));
        assert_eq!(
            parse_fingerprint(&fp.replace(':', "").to_lowercase()),
            Some(openssl::sha::sha256(b"abc"))
        );
        assert_eq!(parse_fingerprint("BA:78"), None);
        assert_eq!(parse_fingerprint(&fp.replace('B', "G")), None);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn report_round_trips_with_both_ciphers_and_mac_binds_every_field() -> Result<(), ErrorStack> {
        let session: [u8; 32] = random()?;
        let nonce: [u8; 32] = random()?;
        let iv: [u8; 16] = random()?;
        let th = openssl::sha::sha256(&transcript(b"\x24hello", &nonce, b"wk", b"cert"));
        let keys = SessionKeys::derive_v2(&session, &th)?;
        let report = lab_report("42");
        for cipher in [CipherId::Aes256Ctr, CipherId::Rc4] {
            let ct = keys.apply_cipher(cipher, &iv, report.as_bytes())?;
            assert_ne!(ct, report.as_bytes());
            assert_eq!(keys.apply_cipher(cipher, &iv, &ct)?, report.as_bytes());
            let mac = keys.report_mac_v2(&th, cipher, &iv, &ct)?;
            let mut other_th = th;
            other_th[31] ^= 1;
            assert_ne!(mac, keys.report_mac_v2(&other_th, cipher, &iv, &ct)?);
            let mut other_iv = iv;
            other_iv[0] ^= 1;
            assert_ne!(mac, keys.report_mac_v2(&th, cipher, &other_iv, &ct)?);
            let mut flipped = ct.clone();
            flipped[3] ^= 0x10;
            assert_ne!(mac, keys.report_mac_v2(&th, cipher, &iv, &flipped)?);
        }
        let ct = keys.apply_cipher(CipherId::Aes256Ctr, &iv, report.as_bytes())?;
        let mac = keys.report_mac_v2(&th, CipherId::Aes256Ctr, &iv, &ct)?;
        assert_ne!(mac, keys.report_mac_v2(&th, CipherId::Rc4, &iv, &ct)?);
        // Different transcripts give different keys for the same session key.
        let other = SessionKeys::derive_v2(&session, &[0u8; 32])?;
        assert_ne!(other.enc, keys.enc);
        assert_ne!(keys.enc, keys.mac);
        Ok(())
    }

    /// The derivation as it was first written, through EVP_PKEY_CTX: the
    /// EVP_KDF path must give the same bytes (the client and the server of
    /// another version must agree).
    fn hkdf_by_pkey_ctx(key: &[u8], salt: &[u8], info: &[u8]) -> Result<[u8; 32], ErrorStack> {
        use openssl::pkey::Id;
        use openssl::pkey_ctx::{HkdfMode, PkeyCtx};
        let mut ctx = PkeyCtx::new_id(Id::HKDF)?;
        ctx.derive_init()?;
        ctx.set_hkdf_mode(HkdfMode::EXTRACT_THEN_EXPAND)?;
        ctx.set_hkdf_md(Md::sha256())?;
        ctx.set_hkdf_key(key)?;
        ctx.set_hkdf_salt(salt)?;
        ctx.add_hkdf_info(info)?;
        let mut out = [0u8; 32];
        ctx.derive(Some(&mut out))?;
        Ok(out)
    }

    #[test]
    fn hkdf_matches_rfc_5869_and_the_pkey_ctx_derivation() -> Result<(), ErrorStack> {
        // RFC 5869 A.1 (SHA-256), the first 32 of its 42 output bytes.
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let okm = hkdf(&ikm, &salt, &info)?;
        let expected = [
            0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64, 0xd0, 0x36,
            0x2f, 0x2a, 0x2d, 0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c, 0x5d, 0xb0, 0x2d, 0x56,
            0xec, 0xc4, 0xc5, 0xbf,
        ];
        assert_eq!(okm, expected);
        for _ in 0..8 {
            let session: [u8; SESSION_KEY_LEN] = random()?;
            let th: [u8; DIGEST_LEN] = random()?;
            let keys = SessionKeys::derive_v2(&session, &th)?;
            assert_eq!(
                keys.enc,
                hkdf_by_pkey_ctx(&session, &th, b"certboard v2 report encryption")?
            );
            assert_eq!(
                keys.mac,
                hkdf_by_pkey_ctx(&session, &th, b"certboard v2 report mac")?
            );
        }
        Ok(())
    }

    #[test]
    fn oaep_wrap_unwrap() -> Result<(), ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let session: [u8; 32] = random()?;
        let wrapped = wrap_key(&key, &session)?;
        assert_eq!(wrapped.len(), 256);
        assert_eq!(unwrap_key(&key, &wrapped)?, session);
        let other = PKey::from_rsa(Rsa::generate(2048)?)?;
        assert!(unwrap_key(&other, &wrapped).is_err());
        Ok(())
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The known-answer vector PROTOCOL.md gives for version 3: session key
    /// 32 × 0x01, th 32 × 0x02, IV 16 × 0x03; the file "hello, world\n"
    /// announced as `file.txt` for `lab` and sent as one chunk.
    #[test]
    fn version_3_known_answer() -> Result<(), ErrorStack> {
        let keys = SessionKeys::derive_v3(&[1; 32], &[2; 32])?;
        let th = [2u8; 32];
        let iv = [3u8; 16];
        let file = b"hello, world\n";
        let sha = openssl::sha::sha256(file);
        let ct = keys.file_cipher(&iv)?.apply(file)?;
        let announce = keys.announce_mac_v3(
            &th,
            "lab",
            "file.txt",
            file.len() as u64,
            &sha,
            CipherId::Aes256Ctr,
            &iv,
        )?;
        let chunk = keys.chunk_mac_v3(&th, 0, &ct)?;
        let done = keys.done_mac_v3(&th, b"\x41", 1, &sha)?;
        let got = [
            hex(&keys.enc),
            hex(&keys.mac),
            hex(&ct),
            hex(&announce),
            hex(&chunk),
            hex(&done),
        ];
        assert_eq!(got, KAT_V3);
        Ok(())
    }

    /// Checked independently: `openssl kdf … HKDF` gives the enc key, and
    /// `openssl enc -aes-256-ctr` the ciphertext.
    const KAT_V3: [&str; 6] = [
        "9fe003428775aa5459a786a3c2041d7f65ccc61fad4346fc8d116c215670169c",
        "2797a0dbd7cfbc9206d3be604bb7049659863ea1360961de3c0b0b20f6d7c62a",
        "c8fce86b4c64860b5d3ffd3695",
        "b5a4ab353ee17d503dc949baa8ecab029cf4ff5fc4c445b994e4c82b9c8fcc26",
        "2ba4d9e73a8773304f4289e49f0727d1157c8efe6b9247ceaf997d7ccf9ce5f1",
        "807f6b0e52799c8eab59a402596d28f35a017876a19e399976789255233356e8",
    ];

    /// The stream continues across chunks: cut anywhere, the same bytes;
    /// and the MACs bind the sequence number, the chunk and the transcript.
    #[test]
    fn file_chunks_continue_the_stream_and_macs_bind_their_place() -> Result<(), ErrorStack> {
        let keys = SessionKeys::derive_v3(&random()?, &[7; 32])?;
        let th = [7u8; 32];
        let iv: [u8; 16] = random()?;
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = keys.file_cipher(&iv)?.apply(&data)?;
        let mut c = keys.file_cipher(&iv)?;
        let mut pieces = Vec::new();
        for part in [&data[..1], &data[1..17], &data[17..500], &data[500..]] {
            pieces.extend(c.apply(part)?);
        }
        assert_eq!(pieces, whole);
        let mut d = keys.file_cipher(&iv)?;
        assert_eq!(d.apply(&whole)?, data);
        // Tamper, reorder (another seq), replay under another seq.
        let m0 = keys.chunk_mac_v3(&th, 0, &whole[..10])?;
        let mut flipped = whole[..10].to_vec();
        flipped[0] ^= 1;
        assert_ne!(m0, keys.chunk_mac_v3(&th, 0, &flipped)?);
        assert_ne!(m0, keys.chunk_mac_v3(&th, 1, &whole[..10])?);
        assert_ne!(m0, keys.chunk_mac_v3(&[8; 32], 0, &whole[..10])?);
        // Truncation: a chunk's MAC is not the MAC of its prefix.
        assert_ne!(m0, keys.chunk_mac_v3(&th, 0, &whole[..9])?);
        // The end binds the count (a dropped last chunk) and the hash.
        let sha = openssl::sha::sha256(&data);
        let done = keys.done_mac_v3(&th, b"announce", 4, &sha)?;
        assert_ne!(done, keys.done_mac_v3(&th, b"announce", 3, &sha)?);
        assert_ne!(done, keys.done_mac_v3(&th, b"announcf", 4, &sha)?);
        let mut other = sha;
        other[0] ^= 1;
        assert_ne!(done, keys.done_mac_v3(&th, b"announce", 4, &other)?);
        // Version 3's keys are not version 2's for the same inputs.
        let v2 = SessionKeys::derive_v2(&[1; 32], &[2; 32])?;
        let v3 = SessionKeys::derive_v3(&[1; 32], &[2; 32])?;
        assert_ne!(v2.enc, v3.enc);
        assert_ne!(v2.mac, v3.mac);
        let t2 = transcript(b"h", &[1; 32], b"w", b"c");
        let t3 = transcript_v3(b"h", &[1; 32], b"w", b"c");
        assert!(t3.starts_with(b"certboard v3 transcript"));
        assert_eq!(t2[LABEL_V2.len()..], t3[LABEL_V3.len()..]);
        Ok(())
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn lab_report_is_ten_lines() {
        let r = lab_report("1155000001");
        assert_eq!(r.lines().count(), 10);
        assert!(r.starts_with("This is submission from SID1155000001.\n"));
    }
}
