//! The one and only `bindgen!` over `wit/poczta.wit` (world `plugin`).
//!
//! Everything generated lives here; the rest of `plugin/` names these types
//! through this module. The path is relative to the crate's manifest
//! directory (`host/` → `../wit`).

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    // DNS and kv wait on I/O (the resolver, the server's database), so they
    // are `async`; everything else answers from memory. All imports are
    // `trappable` so a broken invariant (a stale resource handle) can trap
    // the guest instead of panicking the host.
    imports: {
        "poczta:plugin/dns": async | trappable,
        "poczta:plugin/kv": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "poczta:plugin/message.message": crate::plugin::message::MessageHandle,
    },
});

pub use self::poczta::plugin::types;
pub use exports::poczta::plugin::hooks;
