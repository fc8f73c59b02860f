//! What a browser sends: `application/x-www-form-urlencoded` bodies and
//! query strings, `multipart/form-data` uploads (the roster), and the
//! `Cookie` header. Pure: bytes in, values out.

use std::borrow::Cow;

/// Why a form body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormError {
    /// Not UTF-8 after decoding.
    NotUtf8,
    /// A multipart body without a usable boundary parameter.
    NoBoundary,
    /// A multipart body that does not follow RFC 7578.
    BadMultipart(&'static str),
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormError::NotUtf8 => write!(f, "form field is not UTF-8"),
            FormError::NoBoundary => write!(f, "multipart body without a boundary"),
            FormError::BadMultipart(why) => write!(f, "malformed multipart body: {why}"),
        }
    }
}

impl std::error::Error for FormError {}

/// The fields of an urlencoded form, in order (a name may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Parses `a=1&b=x+y%21`: `+` is a space, `%XX` a byte, the result
    /// UTF-8. Pairs without `=` have an empty value.
    pub fn parse(body: &[u8]) -> Result<Form, FormError> {
        let mut fields = Vec::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            fields.push((decode(name)?, decode(value)?));
        }
        Ok(Form { fields })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Builds a form from pairs (for the multipart text fields).
    fn push(&mut self, name: String, value: String) {
        self.fields.push((name, value));
    }
}

fn decode(raw: &[u8]) -> Result<String, FormError> {
    let plus: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Cow<'_, [u8]> = percent_encoding::percent_decode(&plus).into();
    String::from_utf8(bytes.into_owned()).map_err(|_| FormError::NotUtf8)
}

/// One file of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    /// The field name.
    pub name: String,
    /// The file name the browser gave, if any.
    pub file_name: Option<String>,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// A parsed `multipart/form-data` body: its text fields and its files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multipart {
    /// Fields without a file name.
    pub fields: Form,
    /// Fields with one.
    pub files: Vec<FilePart>,
}

impl Multipart {
    /// The first file of field `name`.
    pub fn file(&self, name: &str) -> Option<&FilePart> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let media = parts.next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        // RFC 2046 §5.1.1: 1 to 70 characters.
        (!v.is_empty() && v.len() <= 70).then(|| v.to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| hay[i..].starts_with(needle))
}

/// Parses a `multipart/form-data` body (RFC 7578) with `boundary`.
pub fn multipart(body: &[u8], boundary: &str) -> Result<Multipart, FormError> {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let next_delim = [b"\r\n".as_slice(), delim].concat();
    let mut at = if body.starts_with(delim) {
        0
    } else {
        find(body, &next_delim, 0).ok_or(FormError::BadMultipart("no boundary line"))? + 2
    };
    let mut out = Multipart::default();
    loop {
        // `at` is at a delimiter line.
        let after = at + delim.len();
        let rest = body
            .get(after..)
            .ok_or(FormError::BadMultipart("truncated"))?;
        if rest.starts_with(b"--") {
            return Ok(out); // the close delimiter
        }
        let line_end = find(body, b"\r\n", after).ok_or(FormError::BadMultipart("truncated"))?;
        // Only transport padding may follow a delimiter on its line.
        if !body[after..line_end]
            .iter()
            .all(|b| *b == b' ' || *b == b'\t')
        {
            return Err(FormError::BadMultipart("text after a boundary"));
        }
        let head_start = line_end + 2;
        let head_end = find(body, b"\r\n\r\n", head_start)
            .ok_or(FormError::BadMultipart("part without a blank line"))?;
        let head =
            std::str::from_utf8(&body[head_start..head_end]).map_err(|_| FormError::NotUtf8)?;
        let data_start = head_end + 4;
        let data_end = find(body, &next_delim, data_start)
            .ok_or(FormError::BadMultipart("no closing boundary"))?;
        let data = &body[data_start..data_end];
        let (name, file_name) = disposition(head)?;
        match file_name {
            Some(f) => out.files.push(FilePart {
                name,
                file_name: Some(f),
                data: data.to_vec(),
            }),
            None => {
                let v = String::from_utf8(data.to_vec()).map_err(|_| FormError::NotUtf8)?;
                out.fields.push(name, v);
            }
        }
        at = data_end + 2;
    }
}

/// The `name` and `filename` of a part's `Content-Disposition`.
fn disposition(head: &str) -> Result<(String, Option<String>), FormError> {
    let line = head
        .split("\r\n")
        .find(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
        })
        .ok_or(FormError::BadMultipart("part without Content-Disposition"))?;
    let (_, value) = line.split_once(':').unwrap_or(("", "")); // ok: found by its ':' above
    let mut name = None;
    let mut file_name = None;
    for param in params(value).into_iter().skip(1) {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        match k.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v.to_string()),
            "filename" => file_name = Some(v.to_string()),
            _ => {}
        }
    }
    let name = name.ok_or(FormError::BadMultipart("part without a name"))?;
    Ok((name, file_name))
}

/// A header value's `;`-separated parts, a `;` inside double quotes (a
/// browser sends a file name's `;` as it is) not separating.
fn params(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// A query string's fields (`?filter=late&sort=name`).
pub fn query(target: &str) -> Form {
    target
        .split_once('?')
        .and_then(|(_, q)| Form::parse(q.as_bytes()).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_fields_decode_plus_and_percent() -> Result<(), FormError> {
        let f = Form::parse(b"username=ta+one&password=p%26ss%3D%E2%9C%93&flag&=x")?;
        assert_eq!(f.get("username"), Some("ta one"));
        assert_eq!(f.get("password"), Some("p&ss=\u{2713}"));
        assert_eq!(f.get("flag"), Some(""));
        assert_eq!(f.get("missing"), None);
        assert_eq!(Form::parse(b"a=%FF"), Err(FormError::NotUtf8));
        // A stray % is kept as it is, not an error.
        assert_eq!(Form::parse(b"a=100%")?.get("a"), Some("100%"));
        Ok(())
    }

    #[test]
    fn multipart_reads_fields_and_files() -> Result<(), FormError> {
        let ct = "multipart/form-data; boundary=\"----XyZ\"";
        let b = boundary(ct).ok_or(FormError::NoBoundary)?;
        assert_eq!(b, "----XyZ");
        let body = b"preamble\r\n------XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n\
------XyZ\r\nContent-Disposition: form-data; name=\"roster\"; filename=\"r.csv\"\r\nContent-Type: text/csv\r\n\r\n\
sid,name\r\n1,A\r\n--not-the-boundary\r\n\r\n------XyZ--\r\n";
        let m = multipart(body, &b)?;
        assert_eq!(m.fields.get("csrf"), Some("abc"));
        let f = m.file("roster").ok_or(FormError::NoBoundary)?;
        assert_eq!(f.file_name.as_deref(), Some("r.csv"));
        assert_eq!(f.data, b"sid,name\r\n1,A\r\n--not-the-boundary\r\n");
        Ok(())
    }

    #[test]
    fn multipart_edge_cases_are_refused_or_read_right() -> Result<(), FormError> {
        // An empty file, and the body starting at the boundary.
        let m = multipart(
            b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n\r\n--b--",
            "b",
        )?;
        assert_eq!(m.file("f").map(|f| f.data.len()), Some(0));
        // A `;` in a quoted file name, as browsers send it, is the name's.
        for (sent, read) in [
            ("roster; fall 2026.csv", "roster; fall 2026.csv"),
            ("roster;name=x.csv", "roster;name=x.csv"),
        ] {
            let body = format!(
                "--b\r\nContent-Disposition: form-data; name=\"roster\"; filename=\"{sent}\"\r\n\r\nx\r\n--b--"
            );
            let m = multipart(body.as_bytes(), "b")?;
            let f = m.file("roster").ok_or(FormError::NoBoundary)?;
            assert_eq!(f.file_name.as_deref(), Some(read));
        }
        for bad in [
            &b"no boundary at all"[..],
            b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nunterminated",
            b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
            b"--b",
            b"--bjunk\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--",
        ] {
            assert!(
                multipart(bad, "b").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(boundary("text/plain; boundary=x"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
        Ok(())
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = "a=1; certboard_staff_x=no; certboard_staff=tok; b=2";
        assert_eq!(cookie(h, "certboard_staff"), Some("tok"));
        assert_eq!(cookie(h, "missing"), None);
        assert_eq!(
            cookie("certboard_staff=\"q\"", "certboard_staff"),
            Some("q")
        );
        assert_eq!(query("/a?filter=late&sort=name").get("sort"), Some("name"));
        assert_eq!(query("/a").get("sort"), None);
    }
}
