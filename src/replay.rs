//! Saved counterexamples: the step sequence itself, with the plan, the options, the seeds
//! and the crate version, so that it replays exactly even after the generators change.

use crate::data::GenOptions;
use crate::explore::{Counterexample, Swarm};
use crate::export::load::SavedDataset;
use crate::plan::Plan;
use crate::sim::{Failure, Sim, SimOptions, Step, TraceLine};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A counterexample as `check --save FILE` writes it (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    /// The version of `cutover` that found it.
    pub cutover_version: String,
    pub plan: Plan,
    /// The generated dataset's options and the `_creationTime` skew cap.
    pub data: GenOptions,
    pub skew_max_ms: u8,
    /// The case seed, and the seed of its dataset.
    pub seed: u64,
    pub data_seed: u64,
    /// The case's configuration, for the record (the steps do not depend on it any more).
    pub configuration: Swarm,
    pub steps: Vec<Step>,
    /// The failure it showed when it was saved.
    pub failure: Failure,
    /// For a case of `check --from-export`: the documents it started from, so that it
    /// replays without the export. Absent for generated data (and in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<SavedDataset>,
}

/// Why a saved counterexample could not be turned into a test.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The plan does not serialize as TOML.
    #[error("the plan does not serialize: {0}")]
    Plan(#[from] toml::ser::Error),
    /// The steps or options do not serialize as JSON.
    #[error("the steps do not serialize: {0}")]
    Steps(#[from] serde_json::Error),
    /// The case started from an export's documents, which a test cannot generate.
    #[error(
        "a counterexample found on an export's documents cannot be emitted as a test; replay it with `cutover replay`"
    )]
    FromExport,
}

/// What a replay did.
#[derive(Clone, Debug, PartialEq)]
pub struct Replayed {
    pub result: Result<(), Failure>,
    pub trace: Vec<TraceLine>,
    /// The simulation after the last step run (for `--step K`, after step K).
    pub sim_steps: usize,
}

impl Saved {
    pub fn new(plan: &Plan, options: &SimOptions, c: &Counterexample) -> Saved {
        Saved {
            cutover_version: env!("CARGO_PKG_VERSION").to_string(),
            plan: plan.clone(),
            data: options.data.clone(),
            skew_max_ms: options.skew_max_ms,
            seed: c.seed,
            data_seed: c.data_seed,
            configuration: c.swarm.clone(),
            steps: c.steps.clone(),
            failure: c.failure.clone(),
            dataset: options
                .dataset
                .as_ref()
                .map(|d| SavedDataset::from_dataset(&d.0)),
        }
    }

    /// The options the case ran with.
    pub fn options(&self) -> SimOptions {
        SimOptions {
            data: self.data.clone(),
            skew_max_ms: self.skew_max_ms,
            dataset: self
                .dataset
                .as_ref()
                .map(|d| crate::data::Fixed(Arc::new(d.to_dataset()))),
            ..SimOptions::default()
        }
    }

    /// A fresh simulation of the saved case, before its first step.
    pub fn sim(&self) -> Sim {
        Sim::new(Arc::new(self.plan.clone()), &self.options(), self.data_seed)
    }

    /// Runs the saved steps (all, or the first `upto + 1`) with the trace on.
    pub fn replay(&self, upto: Option<usize>) -> (Replayed, Sim) {
        let mut sim = self.sim();
        sim.set_verbose(true);
        let n = upto.map_or(self.steps.len(), |k| (k + 1).min(self.steps.len()));
        let result = sim.run(&self.steps[..n]);
        let replayed = Replayed {
            result,
            trace: sim.trace.clone(),
            sim_steps: n,
        };
        (replayed, sim)
    }

    /// A Rust test that rebuilds the sequence with the library's API and asserts the failure,
    /// for a team to paste into its regression tests.
    pub fn emit_test(&self) -> Result<String, EmitError> {
        if self.dataset.is_some() {
            return Err(EmitError::FromExport);
        }
        let plan = toml::to_string(&self.plan)?;
        let steps = serde_json::to_string_pretty(&self.steps)?;
        let data = serde_json::to_string(&self.data)?;
        let name = format!(
            "{}_{}_at_step_{}",
            self.plan
                .name
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            self.failure.invariant.name(),
            self.failure.step
        );
        Ok(format!(
            r####"/// Replays a counterexample `cutover check` found for plan "{plan_name}" (case seed {seed},
/// cutover {version}): {invariant} broke at step {step}.
#[test]
fn {name}() {{
    use cutover::plan::Plan;
    use cutover::sim::{{Invariant, Sim, SimOptions, Step}};
    let plan = Plan::parse(r###"{plan}"###, "{plan_name}").expect("the plan parses");
    let steps: Vec<Step> = serde_json::from_str(r###"{steps}"###).expect("the steps parse");
    let options = SimOptions {{
        data: serde_json::from_str(r###"{data}"###).expect("the data options parse"),
        skew_max_ms: {skew},
        ..SimOptions::default()
    }};
    let mut sim = Sim::new(std::sync::Arc::new(plan), &options, {data_seed});
    let failure = sim.run(&steps).expect_err("the plan breaks an invariant");
    assert_eq!(failure.invariant, Invariant::{invariant_variant:?});
    assert_eq!(failure.step, {step});
}}
"####,
            plan_name = self.plan.name,
            seed = self.seed,
            version = self.cutover_version,
            invariant = self.failure.invariant,
            step = self.failure.step,
            skew = self.skew_max_ms,
            data_seed = self.data_seed,
            invariant_variant = self.failure.invariant,
        ))
    }
}
