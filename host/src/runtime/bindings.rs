//! Host bindings of the `kvsync:engine` world, kept private to the runtime.

wasmtime::component::bindgen!({
    world: "engine",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});
