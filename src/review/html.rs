//! `review.html`: the report as one self-contained page (inline CSS, inline SVG diagrams, no
//! script and no external resource, so it opens offline and raises no console errors).

use super::markdown::{changes_text, verdict};
use super::svg::{self, escape};
use super::{
    Drawn, Outcome, Review, invariant_meaning, kind_settings, plan_settings, probe_meaning,
    sequence,
};
use crate::sim::Invariant;
use std::fmt::Write;

const CSS: &str = r#"
:root { color-scheme: light; --ink: #0f172a; --muted: #475569; --line: #e2e8f0; --bg: #f8fafc; --ok: #166534; --ok-bg: #dcfce7; --bad: #991b1b; --bad-bg: #fee2e2; --accent: #1d4ed8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 32px 28px 64px; }
header { border-bottom: 1px solid var(--line); padding-bottom: 18px; margin-bottom: 8px; }
h1 { font-size: 28px; margin: 0 0 10px; letter-spacing: -0.01em; }
h2 { font-size: 21px; margin: 38px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 17px; margin: 26px 0 8px; }
p { margin: 8px 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 13px; }
code { background: #eef2f7; padding: 1px 5px; border-radius: 4px; }
.verdict { display: flex; gap: 14px; align-items: flex-start; padding: 14px 16px; border-radius: 10px; margin: 14px 0; }
.verdict.safe { background: var(--ok-bg); color: var(--ok); border: 1px solid #86efac; }
.verdict.unsafe { background: var(--bad-bg); color: var(--bad); border: 1px solid #fca5a5; }
.badge { display: inline-block; font-weight: 700; font-size: 13px; letter-spacing: 0.06em; text-transform: uppercase; padding: 3px 10px; border-radius: 999px; white-space: nowrap; }
.safe .badge, .badge.yes { background: var(--ok); color: #fff; }
.unsafe .badge, .badge.no { background: var(--bad); color: #fff; }
.badge.na { background: #e2e8f0; color: var(--muted); text-transform: none; letter-spacing: 0; font-weight: 600; }
.meta { color: var(--muted); font-size: 13.5px; }
blockquote { margin: 10px 0; padding: 8px 14px; border-left: 4px solid #cbd5e1; color: var(--muted); background: #fff; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; margin: 10px 0 6px; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 7px 10px; border-bottom: 1px solid var(--line); }
th { background: #f1f5f9; font-weight: 600; color: #334155; font-size: 13px; }
tr:last-child td { border-bottom: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.missed td { background: #fff7ed; }
.change { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px; color: var(--muted); word-break: break-word; }
.kinds { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; }
.kind svg { display: block; margin: 4px auto 0; }
.counterexample svg { display: block; max-width: 100%; height: auto; }
.kind .meta { min-height: 3em; margin-top: 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card h3 { margin-top: 0; }
.scroll { overflow-x: auto; }
.legend { font-size: 13px; color: var(--muted); }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; vertical-align: -1px; margin: 0 4px 0 10px; border: 1.5px solid; }
details { margin: 8px 0 0; }
summary { cursor: pointer; color: var(--accent); font-size: 14px; }
pre { background: #0f172a; color: #e2e8f0; padding: 12px 14px; border-radius: 8px; overflow-x: auto; font-size: 12.5px; line-height: 1.45; }
.explanation { background: #fff; border: 1px solid var(--line); border-left: 4px solid var(--bad); padding: 8px 12px; border-radius: 6px; }
nav { display: flex; gap: 18px; margin-top: 12px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
@media print { .scroll { overflow: visible; } nav { display: none; } body { background: #fff; } }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"#;

/// The whole HTML page.
pub fn render(r: &Review) -> String {
    let mut out = String::new();
    let _ = render_into(&mut out, r);
    out
}

/// `**x**` and `*x*` of the shared verdict sentence, as HTML.
fn strong(md: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    let mut italic = false;
    let mut chars = md.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' && chars.peek() == Some(&'*') {
            chars.next();
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
        } else if c == '*' {
            out.push_str(if italic { "</em>" } else { "<em>" });
            italic = !italic;
        } else {
            out.push_str(&escape(&c.to_string()));
        }
    }
    out
}

fn render_into(out: &mut String, r: &Review) -> std::fmt::Result {
    let plan = &r.plan;
    let name = escape(&plan.name);
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, "<html lang=\"en\">")?;
    writeln!(out, "<head>")?;
    writeln!(out, "<meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    // Nothing may load from anywhere: the page is complete as it is.
    writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
    )?;
    writeln!(out, "<title>Design review: plan &quot;{name}&quot;</title>")?;
    writeln!(out, "<style>{CSS}</style>")?;
    writeln!(out, "</head>")?;
    writeln!(out, "<body>")?;
    writeln!(out, "<main>")?;
    writeln!(out, "<header>")?;
    writeln!(out, "<h1>Design review: plan &quot;{name}&quot;</h1>")?;
    let (class, badge) = if r.safe() {
        ("safe", "safe")
    } else {
        ("unsafe", "unsafe")
    };
    let sentence = verdict(r);
    let sentence = sentence
        .split_once("** ")
        .map_or(sentence.as_str(), |(_, rest)| rest);
    writeln!(
        out,
        "<div class=\"verdict {class}\" id=\"verdict\"><span class=\"badge\">{badge}</span><div>{}</div></div>",
        strong(sentence)
    )?;
    if !plan.description.is_empty() {
        writeln!(
            out,
            "<blockquote>{}</blockquote>",
            escape(&plan.description)
        )?;
    }
    writeln!(
        out,
        "<p class=\"meta\">Generated by <code>cutover review</code> (cutover {}). Reproduce with <code>{}</code>. {}</p>",
        env!("CARGO_PKG_VERSION"),
        escape(&r.command()),
        if r.options.timings() {
            "This report includes wall-clock seconds (<code>--timings</code>), so it differs from run to run."
        } else {
            "The report is a pure function of the plan, the options and the seed: every run writes the same bytes. How long the checker took is given in cases and steps; <code>--timings</code> adds wall-clock seconds."
        }
    )?;
    writeln!(
        out,
        "<nav><a href=\"#plan\">The plan</a><a href=\"#evidence\">Evidence</a><a href=\"#what-if\">What if</a><a href=\"#counterexamples\">Counterexamples</a></nav>"
    )?;
    writeln!(out, "</header>")?;

    writeln!(out, "<section id=\"plan\">")?;
    writeln!(out, "<h2>The plan</h2>")?;
    writeln!(
        out,
        "<table class=\"settings\"><thead><tr><th>setting</th><th>value</th></tr></thead><tbody>"
    )?;
    for (k, v) in plan_settings(plan) {
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td class=\"mono\">{}</td></tr>",
            escape(&k),
            escape(&v)
        )?;
    }
    writeln!(out, "</tbody></table>")?;
    if plan.kinds.is_empty() {
        writeln!(
            out,
            "<p>No kind migrates: every kind stays <code>legacy</code>.</p>"
        )?;
    } else {
        writeln!(
            out,
            "<p>Each kind moves <code>legacy → double_write → backfill → read_typed → typed_only</code>, in the order below. An arrow is labelled with the conditions of the guard on that transition (all must hold); dashed arrows on the left are the rollbacks the plan allows.</p>"
        )?;
        writeln!(
            out,
            "<p class=\"legend\">Phase boxes:<span class=\"swatch\" style=\"background:#dbeafe;border-color:#1d4ed8\"></span>reached in the evidence<span class=\"swatch\" style=\"background:#f8fafc;border-color:#94a3b8;border-style:dashed\"></span>never reached</p>"
        )?;
    }
    writeln!(out, "<div class=\"kinds\">")?;
    for k in &plan.kinds {
        writeln!(
            out,
            "<div class=\"card kind\"><h3>{}</h3><p class=\"meta\">{}</p>{}</div>",
            k.kind.table(),
            escape(&kind_settings(plan, k.kind)),
            svg::state_diagram(r, k.kind)
        )?;
    }
    writeln!(out, "</div>")?;
    writeln!(out, "</section>")?;

    evidence(out, r)?;
    what_if(out, r)?;

    writeln!(out, "<section id=\"counterexamples\">")?;
    writeln!(out, "<h2>Counterexamples</h2>")?;
    writeln!(
        out,
        "<p>Each counterexample is drawn from its trace: the actors on the left, <code>objects</code> and the typed tables on the right, a note per step and an arrow per table written (<code>+</code> insert, <code>~</code> update, <code>-</code> delete). The failing step is on the red band and the failed check in the red note.</p>"
    )?;
    writeln!(
        out,
        "<p class=\"legend\">Colours:<span class=\"swatch\" style=\"background:#eef2ff;border-color:#4338ca\"></span>who acts<span class=\"swatch\" style=\"background:#ecfdf5;border-color:#047857\"></span>tables written<span class=\"swatch\" style=\"background:#fffbeb;border-color:#d6b656\"></span>what a step did<span class=\"swatch\" style=\"background:#fee2e2;border-color:#dc2626\"></span>the failing step and the failed check</p>"
    )?;
    let mut n = 0;
    if let Some(c) = r.counterexample() {
        let title = format!("plan {} (the reviewed plan)", plan.name);
        counterexample(out, &title, c, c.seed.map(|s| r.replay_command(s)), n)?;
        n += 1;
    }
    for w in &r.what_if {
        if let Outcome::Checked {
            counterexample: Some(c),
            ..
        } = &w.outcome
        {
            let title = format!("what if: {} ({})", w.name, w.label);
            counterexample(out, &title, c, None, n)?;
            n += 1;
        }
    }
    if n == 0 {
        writeln!(out, "<p>None.</p>")?;
    }
    writeln!(out, "</section>")?;
    writeln!(
        out,
        "<footer>cutover {} · <code>{}</code></footer>",
        env!("CARGO_PKG_VERSION"),
        escape(&r.command())
    )?;
    writeln!(out, "</main>")?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")?;
    Ok(())
}

fn evidence(out: &mut String, r: &Review) -> std::fmt::Result {
    let rep = &r.report;
    let o = &r.options.check;
    let e = &r.exploration;
    writeln!(out, "<section id=\"evidence\">")?;
    writeln!(out, "<h2>Evidence</h2>")?;
    writeln!(out, "<table class=\"evidence\"><tbody>")?;
    let last_seed = o.seed.wrapping_add(rep.cases.saturating_sub(1) as u64);
    let phases: Vec<String> = r
        .plan
        .kinds
        .iter()
        .map(|k| format!("{} {}", k.kind.table(), super::reached(r, k.kind).name()))
        .collect();
    let rows: Vec<(&str, String)> = vec![
        (
            "cases",
            format!(
                "{} (case seeds {} to {last_seed}, each with its own dataset of {} legacy documents and its own configuration)",
                rep.cases, o.seed, o.sim.data.documents
            ),
        ),
        (
            "steps",
            format!("{} per case, {} simulated in all", o.steps, rep.steps),
        ),
        (
            "invariants",
            format!("{}, each checked after every step", Invariant::ALL.len()),
        ),
        (
            "furthest phase reached",
            if phases.is_empty() {
                "none (no kind migrates)".to_string()
            } else {
                phases.join(", ")
            },
        ),
        (
            "migration activity",
            format!(
                "{} cases took every kind to typed_only; {} phase switches ({} rollbacks), {} backfill batches, {} reads compared with the oracle",
                rep.cases_all_typed_only, rep.switches, rep.rollbacks, rep.batches, rep.reads
            ),
        ),
        (
            "exhaustive exploration",
            format!(
                "every interleaving of the small scenario of cutover explore up to {} steps ({} asked): {} distinct states, {} steps tried, {}",
                e.depth,
                e.depth_asked,
                e.states,
                e.transitions,
                if e.counterexample.is_some() {
                    "a counterexample found"
                } else {
                    "no counterexample"
                }
            ),
        ),
    ];
    for (k, v) in rows {
        writeln!(
            out,
            "<tr><th scope=\"row\">{k}</th><td>{}</td></tr>",
            escape(&v)
        )?;
    }
    if let Some(s) = r.seconds {
        writeln!(
            out,
            "<tr><th scope=\"row\">wall clock</th><td>{s:.2} s for the cases above</td></tr>"
        )?;
    }
    writeln!(out, "</tbody></table>")?;
    writeln!(out, "<h3>Invariants checked after every step</h3>")?;
    writeln!(
        out,
        "<table class=\"invariants\"><thead><tr><th>invariant</th><th>what must hold</th></tr></thead><tbody>"
    )?;
    for i in Invariant::ALL {
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            i.name(),
            escape(invariant_meaning(i))
        )?;
    }
    writeln!(out, "</tbody></table>")?;
    writeln!(out, "<h3>Rare situations reached (sometimes-probes)</h3>")?;
    writeln!(
        out,
        "<p>A safe verdict says nothing about a situation the run never reached.</p>"
    )?;
    writeln!(
        out,
        "<table class=\"probes\"><thead><tr><th>probe</th><th>situation</th><th>times reached</th></tr></thead><tbody>"
    )?;
    for (p, n) in &rep.probes {
        writeln!(
            out,
            "<tr{}><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td></tr>",
            if *n == 0 { " class=\"missed\"" } else { "" },
            p.name(),
            escape(probe_meaning(*p)),
            if *n == 0 {
                "<strong>0 (never reached)</strong>".to_string()
            } else {
                n.to_string()
            }
        )?;
    }
    writeln!(out, "</tbody></table>")?;
    writeln!(out, "</section>")?;
    Ok(())
}

fn what_if(out: &mut String, r: &Review) -> std::fmt::Result {
    let timings = r.options.timings();
    writeln!(out, "<section id=\"what-if\">")?;
    writeln!(out, "<h2>What if: one deviation from this plan</h2>")?;
    writeln!(
        out,
        "<p>Each row is an entry of the catalogue of unsafe plans (<code>plans/unsafe/</code>): the seed plan with one deviation. The same deviation is applied to the reviewed plan and the variant is checked with the same options. <em>Found after</em> counts the cases and the steps simulated until the first failing case (that case included); <em>steps</em> is the length of the shrunk counterexample.</p>"
    )?;
    if !r.safe() {
        writeln!(
            out,
            "<p><strong>The reviewed plan itself has a counterexample</strong>, so a variant may be caught on the plan's own flaw rather than on its deviation: compare its invariant and anomaly with the plan's.</p>"
        )?;
    }
    writeln!(
        out,
        "<div class=\"scroll\"><table class=\"what-if\"><thead><tr><th>deviation from the plan</th><th>caught</th><th>invariant</th><th>anomaly</th><th>steps</th><th>found after</th>{}</tr></thead><tbody>",
        if timings { "<th>seconds</th>" } else { "" }
    )?;
    for w in &r.what_if {
        write!(
            out,
            "<tr data-variant=\"{}\"><td><strong>{}</strong><br><span class=\"change\">{}</span></td>",
            escape(&w.name),
            escape(&w.label),
            escape(&changes_text(w))
        )?;
        let secs = |s: &Option<f64>| s.map_or(String::new(), |s| format!("{s:.2}"));
        match &w.outcome {
            Outcome::NotApplicable(why) => write!(
                out,
                "<td colspan=\"5\"><span class=\"badge na\">not applicable</span> {}</td>{}",
                escape(why),
                if timings { "<td></td>" } else { "" }
            )?,
            Outcome::SameAsReviewed => write!(
                out,
                "<td colspan=\"5\"><span class=\"badge na\">same as the reviewed plan</span></td>{}",
                if timings { "<td></td>" } else { "" }
            )?,
            Outcome::Checked {
                cases,
                steps,
                found_after,
                seconds,
                counterexample,
            } => {
                match counterexample {
                    Some(c) => write!(
                        out,
                        "<td><span class=\"badge yes\">yes</span></td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td>{}</td>",
                        c.invariant.name(),
                        c.anomaly.map_or(String::new(), |a| a.name().to_string()),
                        c.length,
                        found_after.map_or(String::new(), |f| format!(
                            "{}, {}",
                            super::count(f.cases, "case", "cases"),
                            super::count(f.steps, "step", "steps")
                        ))
                    )?,
                    None => write!(
                        out,
                        "<td><span class=\"badge no\">no</span></td><td></td><td></td><td></td><td>not found in {cases} cases, {steps} steps</td>"
                    )?,
                }
                if timings {
                    write!(out, "<td class=\"num\">{}</td>", secs(seconds))?;
                }
            }
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody></table></div>")?;
    writeln!(out, "</section>")?;
    Ok(())
}

fn counterexample(
    out: &mut String,
    title: &str,
    c: &Drawn,
    replay: Option<String>,
    n: usize,
) -> std::fmt::Result {
    writeln!(out, "<article class=\"counterexample\" id=\"ce-{n}\">")?;
    writeln!(out, "<h3>{}</h3>", escape(title))?;
    writeln!(
        out,
        "<p><code>{}</code> broke after step {} of {}: {}</p>",
        c.invariant.name(),
        c.step,
        c.length,
        escape(&c.message)
    )?;
    if let (Some(a), Some(x)) = (c.anomaly, &c.explanation) {
        writeln!(
            out,
            "<p class=\"explanation\">Anomaly <strong>{}</strong>: {}</p>",
            a.name(),
            escape(x)
        )?;
    }
    if let Some(cmd) = replay {
        writeln!(out, "<p>Replay: <code>{}</code></p>", escape(&cmd))?;
    }
    writeln!(
        out,
        "<div class=\"card scroll\">{}</div>",
        svg::sequence_diagram(&sequence(c), title, &format!("ce-{n}-svg"))
    )?;
    let mut trace = String::from("step  who          what\n");
    for t in &c.trace {
        trace.push_str(&format!("{t}\n"));
    }
    trace.push_str(&format!(
        "{:>4}  {:<12} {} BROKEN: {}\n",
        c.step, "checker", c.invariant, c.message
    ));
    writeln!(
        out,
        "<details><summary>The trace as text</summary><pre>{}</pre></details>",
        escape(&trace)
    )?;
    writeln!(out, "</article>")?;
    Ok(())
}
