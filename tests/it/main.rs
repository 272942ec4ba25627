//! Integration tests: each module starts the real kiln binary.
