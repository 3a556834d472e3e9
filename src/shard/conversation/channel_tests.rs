//! Conversation tests: channel. See `super` for the harness.
