//! Conversation tests: handshake. See `super` for the harness.
