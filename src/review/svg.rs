//! Hand-laid-out inline SVG for the HTML report: each kind's phases as a state diagram and
//! each counterexample as a sequence diagram. No script, no external resource: the layout is
//! computed here, with text widths estimated from a monospace font.

use super::{PHASES, Review, Row, Sequence, guard_labels, reached};
use crate::schema::Kind;
use std::fmt::Write;

/// Escapes text for SVG and HTML, in text and in attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The estimated width of one character of the diagrams' 12 px monospace font.
const CHAR_WIDTH: f64 = 7.3;
/// The longest text drawn on one line of a sequence diagram; longer text is cut with `…`
/// (the whole text is the element's tooltip).
const NOTE_CHARS_MAX: usize = 96;
/// The widest failure note, in pixels, unless the lifelines it spans are wider.
const FAILURE_WIDTH_MAX: f64 = 720.0;

fn width_of(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// Splits `text` into lines of at most `max` characters, at spaces where possible.
fn wrap(text: &str, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let fits = line.chars().count() + 1 + word.chars().count() <= max;
        if !line.is_empty() && !fits {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > max {
            let head: String = line.chars().take(max).collect();
            line = line.chars().skip(max).collect();
            lines.push(head);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

const FONT: &str = "ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',monospace";

fn arrow_marker(out: &mut String, id: &str, color: &str) {
    let _ = write!(
        out,
        r#"<defs><marker id="{id}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker></defs>"#
    );
}

/// The phases of `kind` as a vertical state diagram: a box per phase (filled when the
/// evidence reached it), a downward arrow per forward transition labelled with its guard's
/// conditions, and a curved arrow on the left per allowed rollback.
pub fn state_diagram(review: &Review, kind: Kind) -> String {
    let plan = &review.plan;
    let (box_x, box_w, box_h) = (64.0, 150.0, 34.0);
    let cx = box_x + box_w / 2.0;
    let label_x = cx + 12.0;
    let furthest = reached(review, kind);
    // The y of each phase's box.
    let mut ys = vec![44.0];
    let mut labels = Vec::new();
    for p in &PHASES[1..] {
        let l = guard_labels(plan, *p);
        let gap = (l.len() as f64 * 16.0 + 22.0).max(48.0);
        ys.push(ys.last().expect("one") + box_h + gap);
        labels.push(l);
    }
    let height = ys[4] + box_h + 12.0;
    let label_w = labels
        .iter()
        .flatten()
        .map(|l| width_of(l))
        .fold(0.0, f64::max);
    let width = (label_x + label_w + 12.0).max(box_x + box_w + 20.0);
    let id = format!("state-{}", kind.table());
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="state-diagram" data-kind="{k}" xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-labelledby="{id}-title" font-family="{FONT}" font-size="12">"#,
        k = kind.table(),
    );
    let _ = write!(
        out,
        r#"<title id="{id}-title">{} phases of plan {}</title>"#,
        kind.table(),
        escape(&plan.name)
    );
    arrow_marker(&mut out, &format!("{id}-arrow"), "#334155");
    arrow_marker(&mut out, &format!("{id}-back"), "#b45309");
    // The start marker.
    let _ = write!(
        out,
        r##"<circle cx="{cx}" cy="14" r="7" fill="#334155"/><line x1="{cx}" y1="21" x2="{cx}" y2="{}" stroke="#334155" stroke-width="1.5" marker-end="url(#{id}-arrow)"/>"##,
        ys[0] - 1.0
    );
    for (i, p) in PHASES.iter().enumerate() {
        let y = ys[i];
        let on = *p <= furthest;
        let (fill, stroke, dash) = if on {
            ("#dbeafe", "#1d4ed8", "")
        } else {
            ("#f8fafc", "#94a3b8", r#" stroke-dasharray="4 3""#)
        };
        let _ = write!(
            out,
            r##"<g class="phase" data-phase="{name}" data-reached="{on}"><rect x="{box_x}" y="{y}" width="{box_w}" height="{box_h}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/><text x="{cx}" y="{ty}" text-anchor="middle" font-weight="600" fill="#0f172a">{name}</text></g>"##,
            name = p.name(),
            ty = y + box_h / 2.0 + 4.0,
        );
        if i + 1 < PHASES.len() {
            let (y1, y2) = (y + box_h, ys[i + 1]);
            let _ = write!(
                out,
                r##"<line x1="{cx}" y1="{y1}" x2="{cx}" y2="{}" stroke="#334155" stroke-width="1.5" marker-end="url(#{id}-arrow)"/>"##,
                y2 - 1.0
            );
            let lines = &labels[i];
            let top = (y1 + y2) / 2.0 - (lines.len() as f64 - 1.0) * 8.0 + 4.0;
            for (j, l) in lines.iter().enumerate() {
                let muted = if l == "no condition" {
                    r##" fill="#64748b" font-style="italic""##
                } else {
                    r##" fill="#0f172a""##
                };
                let _ = write!(
                    out,
                    r#"<text class="guard" x="{label_x}" y="{}"{muted}>{}</text>"#,
                    top + j as f64 * 16.0,
                    escape(l)
                );
            }
        }
    }
    for p in &plan.rollback_from {
        let Some(prev) = p.previous() else { continue };
        let (Some(a), Some(b)) = (
            PHASES.iter().position(|x| x == p),
            PHASES.iter().position(|x| *x == prev),
        ) else {
            continue;
        };
        let (ya, yb) = (ys[a] + box_h / 2.0, ys[b] + box_h / 2.0);
        let _ = write!(
            out,
            r##"<path class="rollback" d="M{box_x},{ya} C{c},{ya} {c},{yb} {e},{yb}" fill="none" stroke="#b45309" stroke-width="1.5" stroke-dasharray="5 3" marker-end="url(#{id}-back)"/><text x="{tx}" y="{ty}" text-anchor="middle" fill="#b45309" transform="rotate(-90 {tx} {ty})">rollback</text>"##,
            c = box_x - 44.0,
            e = box_x - 1.0,
            tx = box_x - 42.0,
            ty = (ya + yb) / 2.0,
        );
    }
    out.push_str("</svg>");
    out
}

/// A counterexample's sequence diagram: a lifeline per participant, a row per trace note or
/// write, the failing step's rows on a red band, and the failure in a red note at the end.
/// `id` makes the marker ids unique in the page.
pub fn sequence_diagram(seq: &Sequence, title: &str, id: &str) -> String {
    let (left, col, head_h, row_h) = (44.0, 148.0, 40.0, 28.0);
    let n = seq.participants.len().max(1);
    let x_of = |i: usize| left + col / 2.0 + i as f64 * col;
    let top = 16.0 + head_h + 14.0;
    // Width: the lifelines, and every note and label that reaches further right.
    let mut width = left + n as f64 * col + 12.0;
    for r in &seq.rows {
        let right = match r {
            Row::Note { at, text, .. } => {
                x_of(*at) - 8.0 + width_of(&cut(text, NOTE_CHARS_MAX)) + 20.0
            }
            Row::Write { from, to, text, .. } => {
                let mid = (x_of(*from) + x_of(*to)) / 2.0;
                mid + width_of(&cut(text, NOTE_CHARS_MAX)) / 2.0 + 12.0
            }
        };
        width = width.max(right);
    }
    let (first, last, failure) = (&seq.failure.first, &seq.failure.last, seq.failure.text());
    let fail_x = x_of(*first) - col / 2.0 + 6.0;
    // At least as wide as the lifelines it spans, and wide enough for the failure to take a
    // few lines (up to FAILURE_WIDTH_MAX); the drawing grows to make room.
    let fail_w = (x_of(*last) + col / 2.0 - 6.0 - fail_x)
        .max((width_of(&failure) / 3.0 + 20.0).min(FAILURE_WIDTH_MAX))
        // The bold heading on one line (bold glyphs are about a tenth wider).
        .max((width_of(&seq.failure.heading) * 1.1 + 24.0).min(FAILURE_WIDTH_MAX))
        .max(360.0);
    width = width.max(fail_x + fail_w + 8.0);
    // The heading on its own line(s), in bold; the checker's message below it.
    let chars = ((fail_w - 20.0) / CHAR_WIDTH) as usize;
    let heading_lines = wrap(&seq.failure.heading, (chars as f64 / 1.1) as usize);
    let bold = heading_lines.len();
    let fail_lines: Vec<String> = heading_lines
        .into_iter()
        .chain(wrap(&seq.failure.message, chars))
        .collect();
    let fail_h = fail_lines.len() as f64 * 16.0 + 14.0;
    let rows_end = top + seq.rows.len() as f64 * row_h;
    let height = rows_end + 12.0 + fail_h + 18.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="sequence-diagram" xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-labelledby="{id}-title" font-family="{FONT}" font-size="12">"#
    );
    let _ = write!(out, r#"<title id="{id}-title">{}</title>"#, escape(title));
    arrow_marker(&mut out, &format!("{id}-arrow"), "#334155");
    // The failing step's band, under everything else.
    let failing_rows: Vec<usize> = seq
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(
                r,
                Row::Note { failing: true, .. } | Row::Write { failing: true, .. }
            )
        })
        .map(|(i, _)| i)
        .collect();
    if let (Some(a), Some(b)) = (failing_rows.first(), failing_rows.last()) {
        let _ = write!(
            out,
            r##"<rect class="failing-band" x="4" y="{}" width="{}" height="{}" fill="#fef2f2" stroke="#fecaca"/>"##,
            top + *a as f64 * row_h - 2.0,
            width - 8.0,
            (*b - *a + 1) as f64 * row_h + 4.0
        );
    }
    // Lifelines and heads.
    for (i, p) in seq.participants.iter().enumerate() {
        let x = x_of(i);
        let (fill, stroke) = if p.table {
            ("#ecfdf5", "#047857")
        } else {
            ("#eef2ff", "#4338ca")
        };
        let _ = write!(
            out,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#cbd5e1" stroke-width="1.5" stroke-dasharray="4 4"/><g class="participant" data-table="{}"><rect x="{}" y="16" width="{}" height="{head_h}" rx="{}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/><text x="{x}" y="{}" text-anchor="middle" font-size="11.5" font-weight="600" fill="#0f172a">{}</text></g>"##,
            16.0 + head_h,
            rows_end + 4.0,
            p.table,
            x - col / 2.0 + 8.0,
            col - 16.0,
            if p.table { 2 } else { 10 },
            16.0 + head_h / 2.0 + 4.0,
            escape(&cut(&p.label, 18)),
        );
    }
    let mut last_step = None;
    for (i, r) in seq.rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let (step, failing) = match r {
            Row::Note { step, failing, .. } | Row::Write { step, failing, .. } => (*step, *failing),
        };
        if last_step != Some(step) {
            let _ = write!(
                out,
                r##"<text x="{}" y="{}" text-anchor="end" fill="{}">{step}</text>"##,
                left - 12.0,
                y + 17.0,
                if failing { "#b91c1c" } else { "#64748b" }
            );
            last_step = Some(step);
        }
        match r {
            Row::Note { at, text, .. } => {
                let shown = cut(text, NOTE_CHARS_MAX);
                let x = x_of(*at) - 8.0;
                let (fill, stroke, class) = if failing {
                    ("#fee2e2", "#dc2626", "note failing")
                } else {
                    ("#fffbeb", "#d6b656", "note")
                };
                let _ = write!(
                    out,
                    r##"<g class="{class}"><title>{}</title><rect x="{x}" y="{}" width="{}" height="22" rx="3" fill="{fill}" stroke="{stroke}"/><text x="{}" y="{}" fill="#0f172a">{}</text></g>"##,
                    escape(text),
                    y + 3.0,
                    width_of(&shown) + 14.0,
                    x + 7.0,
                    y + 18.0,
                    escape(&shown)
                );
            }
            Row::Write { from, to, text, .. } => {
                let (x1, x2) = (x_of(*from), x_of(*to));
                let dir = if x2 >= x1 { 1.0 } else { -1.0 };
                let shown = cut(text, NOTE_CHARS_MAX);
                let color = if failing { "#b91c1c" } else { "#334155" };
                let _ = write!(
                    out,
                    r##"<g class="write{}"><title>{}</title><line x1="{x1}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="1.5" marker-end="url(#{id}-arrow)"/><text x="{}" y="{}" text-anchor="middle" font-size="11" fill="{color}" paint-order="stroke" stroke="#ffffff" stroke-width="3">{}</text></g>"##,
                    if failing { " failing" } else { "" },
                    escape(text),
                    x2 - dir * 2.0,
                    (x1 + x2) / 2.0,
                    y + 14.0,
                    escape(&shown),
                    ly = y + 21.0,
                );
            }
        }
    }
    let fy = rows_end + 12.0;
    let _ = write!(
        out,
        r##"<g class="failure"><rect x="{fail_x}" y="{fy}" width="{fail_w}" height="{fail_h}" rx="4" fill="#fee2e2" stroke="#dc2626" stroke-width="2"/>"##
    );
    for (j, l) in fail_lines.iter().enumerate() {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" fill="#7f1d1d"{}>{}</text>"##,
            fail_x + 10.0,
            fy + 19.0 + j as f64 * 16.0,
            if j < bold {
                r#" font-weight="700""#
            } else {
                ""
            },
            escape(l)
        );
    }
    out.push_str("</g></svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_word_within_the_width() {
        let lines = wrap("FAILED after step 3: a rather long message with words", 12);
        assert!(lines.iter().all(|l| l.chars().count() <= 12), "{lines:?}");
        assert_eq!(
            lines.join(" "),
            "FAILED after step 3: a rather long message with words"
        );
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
