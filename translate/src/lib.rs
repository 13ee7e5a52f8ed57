//! MXC execution configs: parse, resolve, compile.
