//! `model/list` from the configured catalog (TURNS §18.4): a configured catalog works before
//! login and without a network.

use crate::config::CatalogEntry;
use crate::protocol::{
    Model, ModelListParams, ModelListResponse, ReasoningEffort, ReasoningEffortOption,
};
use crate::turns::ThreadError;

/// One page: `cursor` is a decimal offset (as Codex's), `limit` absent means all.
pub fn page(
    catalog: &[CatalogEntry],
    params: ModelListParams,
) -> Result<ModelListResponse, ThreadError> {
    let start = match params.cursor {
        None => 0,
        Some(cursor) => match cursor.parse::<usize>() {
            Ok(start) if start <= catalog.len() => start,
            _ => return Err(ThreadError::InvalidCursor(cursor)),
        },
    };
    let limit = params.limit.map_or(catalog.len(), |limit| limit as usize);
    let end = start.saturating_add(limit).min(catalog.len());
    Ok(ModelListResponse {
        data: catalog[start..end].iter().map(model).collect(),
        next_cursor: (end < catalog.len()).then(|| end.to_string()),
    })
}

fn model(entry: &CatalogEntry) -> Model {
    Model {
        id: entry.id.clone(),
        model: entry.id.clone(),
        display_name: entry.display_name().to_owned(),
        description: entry.description.clone(),
        supported_reasoning_efforts: entry
            .supported_reasoning_efforts
            .iter()
            .map(|effort| ReasoningEffortOption {
                reasoning_effort: *effort,
                description: describe(*effort).to_owned(),
            })
            .collect(),
        default_reasoning_effort: entry.default_reasoning_effort,
        supports_personality: false,
        is_default: entry.is_default,
    }
}

/// One fixed description per effort (Codex's wording where it has one).
fn describe(effort: ReasoningEffort) -> &'static str {
    match effort {
        ReasoningEffort::None => "No reasoning: answers at once",
        ReasoningEffort::Minimal => "Fastest responses with little reasoning",
        ReasoningEffort::Low => "Fast responses with lighter reasoning",
        ReasoningEffort::Medium => "Balances speed and reasoning depth for everyday tasks",
        ReasoningEffort::High => "Greater reasoning depth for complex problems",
        ReasoningEffort::Xhigh => "Extra high reasoning depth for complex problems",
    }
}
