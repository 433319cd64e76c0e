//! `cutover review`: the design-review report. `build` runs the checks (the reviewed plan,
//! the exhaustive exploration of the small scenario, and every catalogue variant that is one
//! deviation from the reviewed plan) into a `Review`; `markdown` and `html` render it, with
//! diagrams from `mermaid` and `svg`; `write` puts both files in a directory atomically.

pub mod html;
pub mod markdown;
pub mod mermaid;
pub mod svg;

use crate::anomaly::Anomaly;
use crate::exhaustive::{Scenario, explore};
use crate::explore::{CheckOptions, Counterexample, FoundAfter, Report, check};
use crate::plan::{Phase, Plan};
use crate::schema::Kind;
use crate::sim::{Invariant, TraceLine};
use serde_json::Value;
use std::path::Path;

/// The catalogue of unsafe plans (`plans/unsafe/`), compiled in so that `review` works from
/// any directory: each entry's name and TOML text.
pub const CATALOGUE: [(&str, &str); 12] = [
    (
        "backfill_before_double_write",
        include_str!("../../plans/unsafe/backfill_before_double_write.toml"),
    ),
    (
        "backfill_stale_copy",
        include_str!("../../plans/unsafe/backfill_stale_copy.toml"),
    ),
    (
        "blind_insert_backfill",
        include_str!("../../plans/unsafe/blind_insert_backfill.toml"),
    ),
    (
        "checkout_separate_double_write",
        include_str!("../../plans/unsafe/checkout_separate_double_write.toml"),
    ),
    (
        "deletes_not_mirrored",
        include_str!("../../plans/unsafe/deletes_not_mirrored.toml"),
    ),
    (
        "invalid_documents_skipped",
        include_str!("../../plans/unsafe/invalid_documents_skipped.toml"),
    ),
    (
        "legacy_writes_stop_before_reads_switch",
        include_str!("../../plans/unsafe/legacy_writes_stop_before_reads_switch.toml"),
    ),
    (
        "payment_status_not_mirrored",
        include_str!("../../plans/unsafe/payment_status_not_mirrored.toml"),
    ),
    (
        "read_switch_before_backfill",
        include_str!("../../plans/unsafe/read_switch_before_backfill.toml"),
    ),
    (
        "references_not_remapped",
        include_str!("../../plans/unsafe/references_not_remapped.toml"),
    ),
    (
        "rollback_after_typed_only",
        include_str!("../../plans/unsafe/rollback_after_typed_only.toml"),
    ),
    (
        "webhook_without_dedupe",
        include_str!("../../plans/unsafe/webhook_without_dedupe.toml"),
    ),
];

/// The two files `write` produces; nothing else in the directory is touched.
pub const FILES: [&str; 2] = ["review.md", "review.html"];

/// What `review` runs.
#[derive(Clone, Debug)]
pub struct ReviewOptions {
    /// The options of every `check` run: the reviewed plan's and each variant's.
    pub check: CheckOptions,
    /// The depth of the exhaustive exploration of the small scenario.
    pub depth: usize,
    /// With `--timings`, the caller's clock (seconds since any fixed instant): the report
    /// then gives wall-clock seconds and differs between runs. Without it the library reads
    /// no clock.
    pub clock: Option<fn() -> f64>,
    /// How the plan was named on the command line (`--plan FILE`), for the reproduction
    /// commands; `None` for the built-in seed plan.
    pub plan_arg: Option<String>,
}

/// The whole report, before rendering. A pure function of the plan and the options, except
/// for the seconds measured with `timings`.
#[derive(Clone, Debug)]
pub struct Review {
    pub plan: Plan,
    pub options: ReviewOptions,
    pub report: Report,
    /// The reviewed plan's counterexample from `check`, if any.
    pub checked: Option<Drawn>,
    pub seconds: Option<f64>,
    pub exploration: Exploration,
    pub what_if: Vec<WhatIf>,
}

/// The exhaustive exploration's evidence.
#[derive(Clone, Debug)]
pub struct Exploration {
    pub depth_asked: usize,
    pub depth: usize,
    pub states: usize,
    pub transitions: usize,
    pub counterexample: Option<Drawn>,
}

/// A counterexample as the report draws it.
#[derive(Clone, Debug)]
pub struct Drawn {
    pub invariant: Invariant,
    pub anomaly: Option<Anomaly>,
    pub explanation: Option<String>,
    pub message: String,
    /// The step (0-based) after which the invariant broke.
    pub step: usize,
    /// The steps of the counterexample (no-ops not counted).
    pub length: usize,
    /// The case seed (`None` for the exhaustive exploration's scenario).
    pub seed: Option<u64>,
    pub trace: Vec<TraceLine>,
}

/// One catalogue variant and what the checker made of it.
#[derive(Clone, Debug)]
pub struct WhatIf {
    pub name: String,
    /// The entry's `# DEVIATION` comment, without its prefix.
    pub label: String,
    /// The setting(s) changed, as `path: seed value -> variant value`.
    pub changes: Vec<Change>,
    pub outcome: Outcome,
}

/// One setting a variant changes.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub path: String,
    pub from: Value,
    pub to: Value,
}

/// What happened to a variant.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The reviewed plan differs from the seed where the deviation applies.
    NotApplicable(String),
    /// The reviewed plan already has the deviation.
    SameAsReviewed,
    /// The variant was checked.
    Checked {
        cases: usize,
        steps: usize,
        found_after: Option<FoundAfter>,
        seconds: Option<f64>,
        counterexample: Option<Drawn>,
    },
}

impl ReviewOptions {
    /// Whether the report gives wall-clock seconds.
    pub fn timings(&self) -> bool {
        self.clock.is_some()
    }

    /// Runs `f`, and measures it in seconds when there is a clock.
    fn timed<T>(&self, f: impl FnOnce() -> T) -> (T, Option<f64>) {
        let start = self.clock.map(|c| c());
        let out = f();
        (out, start.zip(self.clock).map(|(s, c)| c() - s))
    }
}

impl Review {
    /// The reviewed plan's own counterexample, from `check` or else from the exhaustive
    /// exploration.
    pub fn counterexample(&self) -> Option<&Drawn> {
        self.checked
            .as_ref()
            .or(self.exploration.counterexample.as_ref())
    }

    /// Whether the reviewed plan is safe (no counterexample in either search).
    pub fn safe(&self) -> bool {
        self.counterexample().is_none()
    }

    /// The `cutover review` command that reproduces this report.
    pub fn command(&self) -> String {
        let o = &self.options;
        let mut cmd = String::from("cutover review");
        if let Some(p) = &o.plan_arg {
            cmd.push_str(&format!(" --plan {p}"));
        }
        cmd.push_str(&format!(
            " --out DIR --cases {} --steps {} --seed {} --depth {}",
            o.check.cases, o.check.steps, o.check.seed, o.depth
        ));
        if o.timings() {
            cmd.push_str(" --timings");
        }
        cmd
    }

    /// The `cutover check` command that replays the reviewed plan's counterexample.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut cmd = String::from("cutover check");
        if let Some(p) = &self.options.plan_arg {
            cmd.push_str(&format!(" --plan {p}"));
        }
        cmd.push_str(&format!(
            " --seed {seed} --cases 1 --steps {}",
            self.options.check.steps
        ));
        cmd
    }
}

impl Drawn {
    fn from_check(c: &Counterexample) -> Drawn {
        Drawn::new(&c.failure, c.steps.len(), Some(c.seed), &c.trace)
    }

    fn new(
        failure: &crate::sim::Failure,
        length: usize,
        seed: Option<u64>,
        trace: &[TraceLine],
    ) -> Drawn {
        Drawn {
            invariant: failure.invariant,
            anomaly: failure.explained.as_ref().map(|x| x.anomaly),
            explanation: failure.explained.as_ref().map(|x| x.explanation.clone()),
            message: failure.message.clone(),
            step: failure.step,
            length,
            seed,
            trace: trace.to_vec(),
        }
    }
}

/// The phases in order.
pub const PHASES: [Phase; 5] = [
    Phase::Legacy,
    Phase::DoubleWrite,
    Phase::Backfill,
    Phase::ReadTyped,
    Phase::TypedOnly,
];

/// Runs every check the report needs.
pub fn build(plan: &Plan, options: &ReviewOptions) -> Review {
    let (report, seconds) = options.timed(|| check(plan, &options.check));
    let explored = explore(plan, &Scenario::small(), options.depth, usize::MAX);
    let exploration = Exploration {
        depth_asked: options.depth,
        depth: explored.depth,
        states: explored.states,
        transitions: explored.transitions,
        counterexample: explored
            .counterexample
            .as_ref()
            .map(|c| Drawn::new(&c.failure, c.steps.len(), None, &c.trace)),
    };
    let what_if = CATALOGUE
        .iter()
        .map(|(name, text)| what_if(plan, name, text, options))
        .collect();
    let checked = report.counterexample.as_ref().map(Drawn::from_check);
    Review {
        plan: plan.clone(),
        options: options.clone(),
        report,
        checked,
        seconds,
        exploration,
        what_if,
    }
}

/// The `# DEVIATION from the seed plan: ` comment of a catalogue entry.
pub fn deviation_label(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("# DEVIATION"))
        .map(|rest| {
            rest.split_once(':')
                .map_or(rest, |(_, after)| after)
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// A plan as a value, with its name and description blanked: the settings only.
fn settings(plan: &Plan) -> Value {
    let mut v = serde_json::to_value(plan).expect("plans serialize");
    v["name"] = Value::Null;
    v["description"] = Value::Null;
    v
}

/// The leaves where `a` and `b` differ (objects are compared key by key; anything else,
/// arrays included, is a leaf), in key order.
pub fn changes(a: &Value, b: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    collect_changes(a, b, &mut Vec::new(), &mut out);
    out
}

fn collect_changes(a: &Value, b: &Value, at: &mut Vec<String>, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                at.push(k.clone());
                collect_changes(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    at,
                    out,
                );
                at.pop();
            }
        }
        _ if a == b => {}
        _ => out.push(Change {
            path: at.join("."),
            from: a.clone(),
            to: b.clone(),
        }),
    }
}

fn leaf<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .unwrap_or(&Value::Null)
}

fn set_leaf(v: &mut Value, path: &str, to: Value) {
    let mut at = v;
    for k in path.split('.') {
        if !at.is_object() {
            *at = Value::Object(serde_json::Map::new());
        }
        at = at
            .as_object_mut()
            .expect("made an object")
            .entry(k.to_string())
            .or_insert(Value::Null);
    }
    *at = to;
}

/// Applies the difference between `entry` and the seed plan to `plan`.
pub enum Applied {
    Variant(Box<Plan>),
    NotApplicable(String),
    SameAsReviewed,
}

/// The variant of `plan` with the deviation `entry` makes from the seed plan.
pub fn apply_deviation(plan: &Plan, entry: &Plan, changes: &[Change]) -> Applied {
    let mut v = serde_json::to_value(plan).expect("plans serialize");
    let mut applied = 0;
    for c in changes {
        let here = leaf(&v, &c.path);
        if *here == c.to {
            continue;
        }
        if *here != c.from {
            return Applied::NotApplicable(format!(
                "the reviewed plan sets {} to {}, not the seed's {}",
                c.path,
                compact(here),
                compact(&c.from)
            ));
        }
        set_leaf(&mut v, &c.path, c.to.clone());
        applied += 1;
    }
    if applied == 0 {
        return Applied::SameAsReviewed;
    }
    v["name"] = Value::String(entry.name.clone());
    let variant: Result<Plan, String> = serde_json::from_value(v)
        .map_err(|e| e.to_string())
        .and_then(|p: Plan| toml::to_string(&p).map_err(|e| e.to_string()))
        .and_then(|text| Plan::parse(&text, &entry.name).map_err(|e| e.to_string()));
    match variant {
        Ok(p) => Applied::Variant(Box::new(p)),
        Err(e) => Applied::NotApplicable(format!("the variant is not a valid plan: {e}")),
    }
}

/// A JSON value on one line.
pub fn compact(v: &Value) -> String {
    match v {
        Value::Null => "unset".to_string(),
        other => other.to_string(),
    }
}

/// `n` and the noun, singular or plural.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The settings a change sets, as `(path, value)` leaves: a table the seed does not have
/// (a `[strategy.paths.checkout]`) is listed field by field, its unset fields left out.
pub fn change_leaves(c: &Change) -> Vec<(String, String)> {
    match (&c.from, &c.to) {
        (Value::Null, Value::Object(fields)) => fields
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (format!("{}.{k}", c.path), compact(v)))
            .collect(),
        _ => vec![(c.path.clone(), compact(&c.to))],
    }
}

fn what_if(plan: &Plan, name: &str, text: &str, options: &ReviewOptions) -> WhatIf {
    let entry = Plan::parse(text, &format!("plans/unsafe/{name}.toml"))
        .expect("the built-in catalogue entries are valid plans");
    let changes = changes(&settings(&Plan::seed()), &settings(&entry));
    assert!(!changes.is_empty(), "{name} deviates from the seed plan");
    let outcome = match apply_deviation(plan, &entry, &changes) {
        Applied::NotApplicable(why) => Outcome::NotApplicable(why),
        Applied::SameAsReviewed => Outcome::SameAsReviewed,
        Applied::Variant(variant) => {
            let (report, seconds) = options.timed(|| check(&variant, &options.check));
            Outcome::Checked {
                cases: report.cases,
                steps: report.steps,
                found_after: report.found_after,
                seconds,
                counterexample: report.counterexample.as_ref().map(Drawn::from_check),
            }
        }
    };
    WhatIf {
        name: name.to_string(),
        label: deviation_label(text),
        changes,
        outcome,
    }
}

/// Renders both files and writes them into `dir` (created if missing), each atomically.
/// Nothing else in `dir` is touched.
pub fn write(dir: &Path, review: &Review) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::output::write_atomically(&dir.join(FILES[0]), markdown::render(review))?;
    crate::output::write_atomically(&dir.join(FILES[1]), html::render(review))?;
    Ok(())
}

// ----- The sequence of a counterexample, shared by the Mermaid and SVG renderings. -----

/// Who or what takes part in a counterexample's sequence diagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    /// The trace's actor (`checkout#1`), or the table (`objects`).
    pub key: String,
    pub label: String,
    pub table: bool,
}

/// One row of a sequence diagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    /// What an actor did at a step.
    Note {
        step: usize,
        at: usize,
        text: String,
        failing: bool,
    },
    /// A write from an actor to a table.
    Write {
        step: usize,
        from: usize,
        to: usize,
        text: String,
        failing: bool,
    },
}

/// A counterexample's sequence diagram, before rendering.
#[derive(Clone, Debug)]
pub struct Sequence {
    pub participants: Vec<Participant>,
    pub rows: Vec<Row>,
    pub failure: FailureNote,
}

/// The failed check at the end of a sequence diagram.
#[derive(Clone, Debug)]
pub struct FailureNote {
    /// The first and last participants the note spans.
    pub first: usize,
    pub last: usize,
    /// A short label: `step 4 breaks field_agreement`.
    pub label: String,
    /// `FAILED after step 4: field_agreement broken`.
    pub heading: String,
    /// What the checker saw.
    pub message: String,
}

impl FailureNote {
    /// The whole failure on one line: `FAILED after step 4: field_agreement broken: ...`.
    pub fn text(&self) -> String {
        format!("{}: {}", self.heading, self.message)
    }
}

/// The tables that get their own lifeline; every other table is drawn as `other tables`.
const TABLES: [&str; 4] = ["objects", "events", "transactions", "tickets"];
const OTHER_TABLES: &str = "other tables";

fn actor_label(actor: &str) -> String {
    let (base, n) = match actor.split_once('#') {
        Some((b, n)) => (b, Some(n)),
        None => (actor, None),
    };
    let name = match base {
        "app" => "app mutation",
        "checkout" => "checkout action",
        "webhook" => "Stripe webhook",
        "refund" => "refund action",
        "backfill" => "backfill runner",
        "controller" => "phase controller",
        "reader" => "reader",
        other => other,
    };
    match n {
        Some(n) => format!("{name} #{n}"),
        None => name.to_string(),
    }
}

/// Derives the sequence diagram of a counterexample from its trace: one lifeline per actor
/// (in order of appearance), then `objects`, the typed tables and the other tables written;
/// a note per trace line and an arrow per table written.
pub fn sequence(d: &Drawn) -> Sequence {
    let mut actors: Vec<String> = Vec::new();
    let mut tables: Vec<&str> = Vec::new();
    // First pass: who takes part.
    for line in &d.trace {
        if !line.actor.is_empty() {
            if !actors.contains(&line.actor) {
                actors.push(line.actor.clone());
            }
        } else if let Some(w) = line.action.trim().strip_prefix("wrote ") {
            for token in w.split_whitespace() {
                if let Some(t) = written_table(token) {
                    let t = if TABLES.contains(&t) { t } else { OTHER_TABLES };
                    if !tables.contains(&t) {
                        tables.push(t);
                    }
                }
            }
        }
    }
    tables.sort_by_key(|t| TABLES.iter().position(|x| x == t).unwrap_or(TABLES.len()));
    let mut participants: Vec<Participant> = actors
        .iter()
        .map(|a| Participant {
            key: a.clone(),
            label: actor_label(a),
            table: false,
        })
        .collect();
    participants.extend(tables.iter().map(|t| Participant {
        key: t.to_string(),
        label: t.to_string(),
        table: true,
    }));
    let index = |key: &str| {
        participants
            .iter()
            .position(|p| p.key == key)
            .expect("every participant was collected")
    };
    let mut rows = Vec::new();
    let mut current = 0usize;
    for line in &d.trace {
        let failing = line.step == d.step;
        if !line.actor.is_empty() {
            current = index(&line.actor);
            rows.push(Row::Note {
                step: line.step,
                at: current,
                text: line.action.clone(),
                failing,
            });
            continue;
        }
        let Some(w) = line.action.trim().strip_prefix("wrote ") else {
            rows.push(Row::Note {
                step: line.step,
                at: current,
                text: line.action.trim().to_string(),
                failing,
            });
            continue;
        };
        // Group the written documents by lifeline, in lifeline order.
        let mut by: Vec<(usize, Vec<&str>)> = Vec::new();
        let mut more = String::new();
        let tokens: Vec<&str> = w.split_whitespace().collect();
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i];
            if let Some(t) = written_table(token) {
                let t = if TABLES.contains(&t) { t } else { OTHER_TABLES };
                let to = index(t);
                match by.iter_mut().find(|(p, _)| *p == to) {
                    Some((_, list)) => list.push(token),
                    None => by.push((to, vec![token])),
                }
            } else if token == "and" {
                more = tokens[i..].join(" ");
                break;
            }
            i += 1;
        }
        by.sort_by_key(|(p, _)| *p);
        let last = by.len();
        for (n, (to, list)) in by.into_iter().enumerate() {
            let mut text = list.join(" ");
            if n + 1 == last && !more.is_empty() {
                text.push(' ');
                text.push_str(&more);
            }
            rows.push(Row::Write {
                step: line.step,
                from: current,
                to,
                text,
                failing,
            });
        }
    }
    // The failure note spans the lifelines the failing step involved.
    let mut span: Option<(usize, usize)> = None;
    for r in &rows {
        let (a, b, failing) = match r {
            Row::Note { at, failing, .. } => (*at, *at, *failing),
            Row::Write {
                from, to, failing, ..
            } => ((*from).min(*to), (*from).max(*to), *failing),
        };
        if failing {
            span = Some(span.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
    }
    let (first, last) = span.unwrap_or((0, participants.len().saturating_sub(1)));
    Sequence {
        participants,
        rows,
        failure: FailureNote {
            first,
            last,
            label: format!("step {} breaks {}", d.step, d.invariant),
            heading: format!("FAILED after step {}: {} broken", d.step, d.invariant),
            message: d.message.clone(),
        },
    }
}

/// The table of a written-document token (`+events:1`, `~objects:3`, `-tickets:2`).
fn written_table(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(['+', '~', '-'])?;
    let (table, id) = rest.split_once(':')?;
    (!table.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then_some(table)
}

/// The furthest phase each migrating kind reached in the evidence.
pub fn reached(review: &Review, kind: Kind) -> Phase {
    review.report.phase_max[kind.index()].unwrap_or(Phase::Legacy)
}

/// The condition names of the guard on entering `phase`, or `["no condition"]`.
pub fn guard_labels(plan: &Plan, phase: Phase) -> Vec<String> {
    let g = plan.guards.entering(phase);
    if g.is_empty() {
        vec!["no condition".to_string()]
    } else {
        g.iter()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// What each invariant requires, in one line (the README's table has the full text).
pub fn invariant_meaning(i: Invariant) -> &'static str {
    match i {
        Invariant::ReadEquivalence => {
            "Every read returns what the app without the migration returns."
        }
        Invariant::AcknowledgedWriteKept => {
            "A write the app without the migration acknowledges is acknowledged and reads back the same, also across phase switches and rollbacks."
        }
        Invariant::UniqueTypedRow => "No legacy id has more than one typed row.",
        Invariant::NoOrphanTypedRow => "No typed row outlives its legacy document.",
        Invariant::DeletedStaysDeleted => "A deleted entity never comes back.",
        Invariant::Coverage => {
            "Once a kind's backfill is done, every legacy document has a typed row or a quarantine entry."
        }
        Invariant::FieldAgreement => {
            "While both sides are written, a typed row equals the mapping of its legacy document."
        }
        Invariant::ReferentialIntegrity => {
            "A reference in a typed row fails to resolve only where the app without the migration's does too."
        }
        Invariant::TypedRowValid => "Every typed row written validates against its table.",
    }
}

/// What each sometimes-probe counts, in one line.
pub fn probe_meaning(p: crate::sim::Probe) -> &'static str {
    use crate::sim::Probe;
    match p {
        Probe::WriteAfterBackfillCopy => "a write to a document the backfill had just copied",
        Probe::CrashBetweenActionWrites => "an action crash between two of its writes",
        Probe::SwitchWithActionInFlight => "a phase switch while an action was in flight",
        Probe::InsertBehindBackfillCursor => "a legacy insert landing behind the backfill cursor",
        Probe::DuplicateWebhook => "a payment event handled twice",
        Probe::Rollback => "a rollback",
        Probe::BackfillCrashMidway => "a backfill driver crash in the middle of a backfill",
        Probe::ReadSwitchWithQuarantine => "a read switch while the kind had quarantined documents",
    }
}

/// The plan's settings as `(field, value)` lines, in a fixed order: the top-level fields,
/// then each `[strategy]` field (and per-path override) that differs from the seed's choice.
pub fn plan_settings(plan: &Plan) -> Vec<(String, String)> {
    let v = serde_json::to_value(plan).expect("plans serialize");
    let mut out: Vec<(String, String)> = [
        "schema_validation",
        "batch_size",
        "quarantine_reads",
        "rollback_from",
        "legacy_reads",
    ]
    .iter()
    .map(|k| (k.to_string(), compact(&v[*k])))
    .collect();
    let defaults = serde_json::to_value(crate::plan::Strategy::default()).expect("serializes");
    let own = changes(&defaults, &v["strategy"]);
    if own.is_empty() {
        out.push((
            "strategy".to_string(),
            "the seed's choices (every default)".to_string(),
        ));
    }
    for c in own {
        out.push((format!("strategy.{}", c.path), compact(&c.to)));
    }
    out
}

/// What the kind adds to the plan-wide guards: its dependencies and batch size.
fn kind_note(plan: &Plan, kind: Kind) -> String {
    let deps: Vec<&str> = plan
        .kind(kind)
        .map(|k| k.depends_on.iter().map(|d| d.table()).collect())
        .unwrap_or_default();
    format!(
        "depends on {}; backfill batches of {}",
        if deps.is_empty() {
            "nothing".to_string()
        } else {
            deps.join(", ")
        },
        plan.batch_size(kind)
    )
}

/// A kind's own settings line: its dependencies, batch size and strategy overrides.
pub fn kind_settings(plan: &Plan, kind: Kind) -> String {
    let mut s = kind_note(plan, kind);
    if let Some(own) = plan.kind(kind).and_then(|k| k.strategy.as_ref()) {
        let v = serde_json::to_value(own).expect("serializes");
        if let Some(map) = v.as_object() {
            for (k, x) in map {
                if !x.is_null() && x != &Value::Object(serde_json::Map::new()) {
                    s.push_str(&format!("; strategy.{k} = {}", compact(x)));
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalogue_entry_applied_to_the_seed_is_the_entry() {
        for (name, text) in CATALOGUE {
            let entry = Plan::parse(text, name).expect("valid");
            let c = changes(&settings(&Plan::seed()), &settings(&entry));
            assert_eq!(c.len(), 1, "{name}: {c:?}");
            match apply_deviation(&Plan::seed(), &entry, &c) {
                Applied::Variant(v) => {
                    assert_eq!(settings(&v), settings(&entry), "{name}");
                }
                _ => panic!("{name} applies to the seed"),
            }
            match apply_deviation(&entry, &entry, &c) {
                Applied::SameAsReviewed => {}
                _ => panic!("{name} is the same as itself"),
            }
            assert!(!deviation_label(text).is_empty(), "{name}");
        }
    }

    #[test]
    fn a_deviation_where_the_reviewed_plan_differs_does_not_apply() {
        let (_, text) = CATALOGUE
            .iter()
            .find(|(n, _)| *n == "backfill_stale_copy")
            .expect("listed");
        let entry = Plan::parse(text, "e").expect("valid");
        let c = changes(&settings(&Plan::seed()), &settings(&entry));
        let mut reviewed = Plan::seed();
        reviewed.strategy.backfill_read = crate::plan::BackfillRead::SeparateTransaction;
        reviewed.strategy.backfill_conflict = crate::plan::BackfillConflict::NewerWins;
        // Same as reviewed: it already reads in a separate transaction.
        assert!(matches!(
            apply_deviation(&reviewed, &entry, &c),
            Applied::SameAsReviewed
        ));
        let stale = CATALOGUE
            .iter()
            .find(|(n, _)| *n == "blind_insert_backfill")
            .expect("listed");
        let blind = Plan::parse(stale.1, "b").expect("valid");
        let c = changes(&settings(&Plan::seed()), &settings(&blind));
        reviewed.strategy.backfill_write = crate::plan::BackfillWrite::CheckThenInsert;
        assert!(matches!(
            apply_deviation(&reviewed, &blind, &c),
            Applied::NotApplicable(_)
        ));
    }

    #[test]
    fn a_trace_becomes_lifelines_notes_and_writes_with_the_failing_step_marked() {
        let line = |step: usize, actor: &str, action: &str| TraceLine {
            step,
            actor: actor.to_string(),
            action: action.to_string(),
        };
        let d = Drawn {
            invariant: Invariant::FieldAgreement,
            anomaly: None,
            explanation: None,
            message: "events:1 differs".to_string(),
            step: 2,
            length: 3,
            seed: Some(0),
            trace: vec![
                line(0, "controller", "events: legacy -> double_write"),
                line(1, "checkout#1", "step 1/4: insert ticket #63: committed"),
                line(1, "", "  wrote +objects:64 +objectLinks:47"),
                line(2, "backfill", "events batch: read 4, migrated 4, done"),
                line(
                    2,
                    "",
                    "  wrote ~events:1 +migrationIdMap:2 +events:3 and 2 more",
                ),
            ],
        };
        let seq = sequence(&d);
        let labels: Vec<&str> = seq.participants.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "phase controller",
                "checkout action #1",
                "backfill runner",
                "objects",
                "events",
                "other tables"
            ]
        );
        assert_eq!(
            seq.rows,
            vec![
                Row::Note {
                    step: 0,
                    at: 0,
                    text: "events: legacy -> double_write".into(),
                    failing: false
                },
                Row::Note {
                    step: 1,
                    at: 1,
                    text: "step 1/4: insert ticket #63: committed".into(),
                    failing: false
                },
                Row::Write {
                    step: 1,
                    from: 1,
                    to: 3,
                    text: "+objects:64".into(),
                    failing: false
                },
                Row::Write {
                    step: 1,
                    from: 1,
                    to: 5,
                    text: "+objectLinks:47".into(),
                    failing: false
                },
                Row::Note {
                    step: 2,
                    at: 2,
                    text: "events batch: read 4, migrated 4, done".into(),
                    failing: true
                },
                Row::Write {
                    step: 2,
                    from: 2,
                    to: 4,
                    text: "~events:1 +events:3".into(),
                    failing: true
                },
                Row::Write {
                    step: 2,
                    from: 2,
                    to: 5,
                    text: "+migrationIdMap:2 and 2 more".into(),
                    failing: true
                },
            ]
        );
        // The failure spans the failing step's lifelines: the backfill runner to the last
        // table it wrote.
        assert_eq!((seq.failure.first, seq.failure.last), (2, 5));
        assert_eq!(seq.failure.label, "step 2 breaks field_agreement");
    }

    #[test]
    fn written_tokens_name_their_table() {
        assert_eq!(written_table("+events:1"), Some("events"));
        assert_eq!(written_table("~migrationIdMap:12"), Some("migrationIdMap"));
        assert_eq!(written_table("and"), None);
        assert_eq!(written_table("2"), None);
    }
}
