//! Links the arm64 Lambda bootstrap as a position-dependent executable (`-no-pie`): its
//! addresses are fixed at link time, so it carries no table of relative relocations for the
//! loader (`.rela.dyn`, 0.5 MB of the position-independent binary; the packed form needs
//! glibc 2.36 and Lambda's `provided.al2023` has 2.34). The code is compiled as before
//! (position-independent, as every dependency is); only the link changes. The trade-off: the
//! loader cannot place the executable's own image at a random address (the libraries, stack
//! and heap still are randomised); see BENCHMARKS.md, binary sizes. Other targets (the host
//! builds the tests run) link as their default.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() == Ok("aarch64-unknown-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
