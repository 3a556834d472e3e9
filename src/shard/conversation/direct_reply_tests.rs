//! Conversation tests: direct_reply. See `super` for the harness.
