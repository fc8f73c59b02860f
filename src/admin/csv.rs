//! The little CSV certboard reads (the roster) and writes (exports):
//! RFC 4180, comma-separated, `"` quoting with `""` for a quote inside.
//!
//! Every export goes through [`record`], which is also where a cell that a
//! spreadsheet would run as a formula is made inert: a student's name or
//! report text beginning with `=`, `+`, `-`, `@`, a tab or a CR is written
//! with a `'` in front (the OWASP "CSV injection" rule), so
//! `=HYPERLINK(…)` opens as text, not as a live link. The cost is that
//! such a cell reads back with its `'`; a spreadsheet hides it.

use std::borrow::Cow;

/// The first characters that make a spreadsheet read a cell as a formula
/// (or, TAB and CR, that hide one behind leading blanks).
const FORMULA_LEADS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `cell` as a spreadsheet will show it but never run: with a `'` in front
/// when it begins with a formula character.
pub(crate) fn neutralised(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_LEADS) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Writes one record: each field neutralised (see the module), then a
/// field holding a comma, a quote, CR or LF is quoted, quotes doubled;
/// lines end in CRLF (RFC 4180).
pub(crate) fn record(fields: &[&str]) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let f = neutralised(f);
        if f.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&f);
        }
    }
    out.push_str("\r\n");
    out
}

/// A CSV text that does not parse: the line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvError {
    pub(crate) line: usize,
    pub(crate) why: &'static str,
}

/// Reads every record with the line it starts on (1-based). Blank lines
/// are skipped; a quoted field may hold commas, quotes (doubled) and line
/// breaks.
pub(crate) fn parse(text: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    // Whether the current field was quoted (text after its closing quote
    // is an error).
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
            }
            '"' => return Err(CsvError {
                line,
                why:
                    "a quote inside an unquoted field (quote the whole field, and double the quote)",
            }),
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
                if !(fields.len() == 1 && fields[0].is_empty()) {
                    records.push((start, std::mem::take(&mut fields)));
                }
                fields.clear();
                line += 1;
                start = line;
            }
            _ if quoted => {
                return Err(CsvError {
                    line,
                    why: "text after a closing quote",
                })
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(CsvError {
            line: start,
            why: "a quoted field is never closed",
        });
    }
    fields.push(field);
    if !(fields.len() == 1 && fields[0].is_empty()) {
        records.push((start, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() -> Result<(), CsvError> {
        let nasty = ["plain", "a,b", "say \"hi\"", "two\nlines", "", "crlf\r\nx"];
        let text = record(&nasty) + &record(&["1", "2", "3", "4", "5", "6"]);
        let back = parse(&text)?;
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, 1);
        assert_eq!(back[0].1, nasty.map(String::from).to_vec());
        // The second record starts after the two embedded line breaks.
        assert_eq!(back[1].0, 4);
        Ok(())
    }

    #[test]
    fn formula_cells_are_written_inert() -> Result<(), CsvError> {
        let cells = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1+1",
            "-2+3",
            "@SUM(A1:A2)",
            "\t=1",
            "\r=1",
            "=1\n=2",
        ];
        let back = parse(&record(&cells))?;
        let expected: Vec<String> = cells.iter().map(|c| format!("'{c}")).collect();
        assert_eq!(back[0].1, expected);
        // Not at the start, or an ordinary first character: left alone.
        for plain in ["a=b", "1-2", "mail@example.org", "", "'=already"] {
            assert_eq!(record(&[plain]), format!("{plain}\r\n"));
        }
        Ok(())
    }

    #[test]
    fn bad_quoting_is_named_by_line() {
        assert_eq!(parse("sid,name\n1,a\"b\n").err().map(|e| e.line), Some(2));
        assert_eq!(
            parse("sid,name\n1,\"ab\"c\n").err().map(|e| e.line),
            Some(2)
        );
        assert_eq!(parse("sid,name\n\n1,\"ab\n").err().map(|e| e.line), Some(3));
    }
}
