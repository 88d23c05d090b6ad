//! Test host: placeholder.
