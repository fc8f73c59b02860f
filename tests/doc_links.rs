//! The documents' pointers into PROTOCOL.md name sections it has (issue
//! 20, gap 17: README sent readers to "§3.0" for admission, which is §4.0).

use std::collections::HashSet;

fn read(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name))
        .unwrap_or_default()
}

#[test]
fn every_protocol_section_named_in_the_docs_exists() {
    let protocol = read("PROTOCOL.md");
    assert!(!protocol.is_empty(), "PROTOCOL.md not found");
    // Section numbers of PROTOCOL.md's headings: "## 4.", "### 4.0", "#### 4.3.6".
    let sections: HashSet<String> = protocol
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .map(|n| n.trim_end_matches('.').to_string())
        .collect();
    let mut checked = 0;
    for doc in [
        "README.md",
        "docs/security.md",
        "docs/legacy.md",
        "docs/conformance.md",
        "BENCHMARKS.md",
    ] {
        let text = read(doc);
        for (i, _) in text.match_indices("PROTOCOL.md §") {
            let rest = &text[i + "PROTOCOL.md §".len()..];
            let number: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.');
            assert!(
                sections.contains(number),
                "{doc} points to PROTOCOL.md §{number}, which PROTOCOL.md does not have"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no pointer into PROTOCOL.md found at all");
}
