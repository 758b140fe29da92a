//! policy-journal: the central audit store.
