//! Compiles the Lua prelude to bytecode at build time: loading bytecode at
//! boot is about four times faster than parsing the source (PID 1 pays this
//! on every boot and re-exec). Only the bytecode goes into the binary; Lua
//! checks its header (version, sizes, number formats) when it is loaded.

fn main() {
    println!("cargo:rerun-if-changed=src/prelude.lua");
    let src = std::fs::read_to_string("src/prelude.lua").expect("read src/prelude.lua");
    let lua = mlua::Lua::new();
    let f = lua
        .load(&src)
        .set_name("@moonlit/prelude.lua")
        .into_function()
        .unwrap_or_else(|e| panic!("src/prelude.lua does not compile: {e}"));
    // Not stripped: errors inside the prelude keep their line numbers.
    let bytecode = f.dump(false);
    let out =
        std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("prelude.luac");
    std::fs::write(&out, bytecode).expect("write prelude bytecode");
}
