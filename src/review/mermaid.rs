//! Mermaid sources for the Markdown report: a `stateDiagram-v2` of each kind's phases with
//! the guard on each transition, and a `sequenceDiagram` of each counterexample.

use super::{PHASES, Review, Row, Sequence, guard_labels, reached};
use crate::schema::Kind;
use std::fmt::Write;

/// Escapes text for a Mermaid label: every character that Mermaid or the Markdown code fence
/// could read as syntax becomes an entity code (`#35;`), which Mermaid renders as the
/// character. A label runs from its colon to the end of the line, a `#` or a `;`, so later
/// colons stay as they are. Line breaks become spaces.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' | ';' | '<' | '>' | '"' | '&' | '%' | '`' | '{' | '}' | '[' | ']' | '|' | '\\' => {
                let _ = write!(out, "#{};", c as u32);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The phases of `kind` under `plan`: one state per phase, a transition per forward move
/// labelled with its guard, a transition per allowed rollback, and the phases the evidence
/// reached styled `reached`.
pub fn state_diagram(review: &Review, kind: Kind) -> String {
    let plan = &review.plan;
    let mut out = String::from("stateDiagram-v2\n");
    out.push_str("    direction LR\n");
    out.push_str("    [*] --> legacy\n");
    for pair in PHASES.windows(2) {
        let _ = writeln!(
            out,
            "    {} --> {}: {}",
            pair[0].name(),
            pair[1].name(),
            escape(&guard_labels(plan, pair[1]).join(" and "))
        );
    }
    for p in &plan.rollback_from {
        if let Some(prev) = p.previous() {
            let _ = writeln!(out, "    {} --> {}: rollback", p.name(), prev.name());
        }
    }
    out.push_str("    classDef reached fill:#dbeafe,stroke:#1d4ed8,color:#0f172a\n");
    let furthest = reached(review, kind);
    let names: Vec<&str> = PHASES
        .iter()
        .filter(|p| **p <= furthest)
        .map(|p| p.name())
        .collect();
    let _ = writeln!(out, "    class {} reached", names.join(","));
    out
}

/// A counterexample's sequence diagram. The failing step's rows sit in a red `rect` around
/// a `critical` block named after the broken invariant, which ends with the `FAILED` note.
pub fn sequence_diagram(seq: &Sequence, title: &str) -> String {
    let mut out = String::from("sequenceDiagram\n");
    let _ = writeln!(out, "    title {}", escape(title));
    for (i, p) in seq.participants.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {} p{i} as {}",
            if p.table { "participant" } else { "actor" },
            escape(&p.label)
        );
    }
    let f = &seq.failure;
    let open = format!(
        "    rect rgb(254, 226, 226)\n        critical {}\n",
        escape(&f.label)
    );
    let mut opened = false;
    for row in &seq.rows {
        let failing = match row {
            Row::Note { failing, .. } | Row::Write { failing, .. } => *failing,
        };
        if failing && !opened {
            out.push_str(&open);
            opened = true;
        }
        let indent = if opened { "            " } else { "    " };
        match row {
            Row::Note { at, text, step, .. } => {
                let _ = writeln!(
                    out,
                    "{indent}Note over p{at}: {}",
                    escape(&format!("{step}: {text}"))
                );
            }
            Row::Write { from, to, text, .. } => {
                let _ = writeln!(out, "{indent}p{from}->>p{to}: {}", escape(text));
            }
        }
    }
    if !opened {
        out.push_str(&open);
    }
    let over = if f.first == f.last {
        format!("p{}", f.first)
    } else {
        format!("p{},p{}", f.first, f.last)
    };
    let _ = writeln!(out, "            Note over {over}: {}", escape(&f.text()));
    out.push_str("        end\n    end\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_syntax_but_entity_codes() {
        let e = escape("a <b> & \"c\" | d; #1: `x` %% {y} [z]\nnext");
        // Remove the entity codes: no character Mermaid reads as syntax is left.
        let mut rest = String::new();
        let mut chars = e.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '#' {
                let code: String =
                    std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_digit())).collect();
                assert!(!code.is_empty() && chars.next() == Some(';'), "{e}");
            } else {
                rest.push(c);
            }
        }
        assert!(
            !rest.contains(['<', '>', '&', '"', '|', ';', '`', '%', '{', '[', '\n']),
            "{rest}"
        );
        assert_eq!(escape("#"), "#35;");
    }
}
