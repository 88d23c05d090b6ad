//! MCP Auth Filter: placeholder while the core is written.
