//! Conversation tests: queue. See `super` for the harness.
