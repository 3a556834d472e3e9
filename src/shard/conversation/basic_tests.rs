//! Conversation tests: basic. See `super` for the harness.
