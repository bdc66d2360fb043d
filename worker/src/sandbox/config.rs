//! The sandbox's configuration is part of the protocol: the supervisor builds it,
//! the worker obeys it. See `polyfaas_protocol::sandbox`.

pub use polyfaas_protocol::sandbox::{Limits, MemoryRlimit, RunAs, SandboxConfig};
