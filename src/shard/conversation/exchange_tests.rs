//! Conversation tests: exchange. See `super` for the harness.
