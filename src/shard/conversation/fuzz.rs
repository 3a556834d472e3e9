//! Fuzzing the frame parser and the connection state machines through the conversation harness.
