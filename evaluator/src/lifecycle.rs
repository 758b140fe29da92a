//! What runs beside an agent core once it is built, wherever it runs: in
//! `policy-agent`, or inside `policy-kernel --embedded-agent`.

use std::sync::Arc;

use crate::agent::Agent;

/// Starts the agent's background work: the decision journal's client (the
/// stream to policy-journal and the replay of the local log) and the
/// following of journal-synced data. Call once, inside a Tokio runtime.
pub fn start_background(agent: &Arc<Agent>) {
    let Some(journal) = agent.journal() else {
        return;
    };
    journal.start_client();
    tokio::spawn(agent.clone().follow_synced_data());
    let stats = journal.stats();
    tracing::info!(
        agent_id = %journal.settings.records.agent_id,
        boot_epoch = stats.boot_epoch,
        last_seq = stats.last_seq,
        pending = stats.pending_records,
        server = journal.settings.server.as_ref().map(|s| s.endpoint.as_str()).unwrap_or("none"),
        "decision journal open"
    );
}

/// Stops the background work: flushes and closes the decision journal.
pub async fn stop_background(agent: &Agent) {
    if let Some(journal) = agent.journal() {
        journal.shutdown().await;
    }
}
