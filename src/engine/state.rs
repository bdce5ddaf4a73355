//! A policy's memory between ticks, as plain serialisable data: what `serve` persists
//! and restores. Its size is bounded: histories are pruned to the longest window that
//! reads them.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub at: DateTime<Utc>,
    pub replicas: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    pub at: DateTime<Utc>,
    pub from: u32,
    pub to: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    /// Step 5's recommendation of each tick, for stabilisation (step 6).
    pub recommendations: VecDeque<Recommendation>,
    /// This policy's own scale events, for rate limits (step 8).
    pub events: VecDeque<ScaleEvent>,
    /// The last scale event in either direction, for cooldowns (step 9).
    pub last_event: Option<DateTime<Utc>>,
    /// For each rule, when its `for` window opened (Prometheus' `ActiveAt`); `None`
    /// while its condition is false or missing. Indexed like `Policy::rules`.
    pub windows: Vec<Option<DateTime<Utc>>>,
    /// Consecutive ticks with a missing metric, for `on missing scale to N after K`.
    pub missing_ticks: u32,
}

impl State {
    /// The state of a policy that has never ticked.
    pub fn new() -> Self {
        State::default()
    }
}
