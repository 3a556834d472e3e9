//! Conversation tests: tx_confirm. See `super` for the harness.
