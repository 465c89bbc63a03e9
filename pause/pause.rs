//! skiff's pause process: PID 1 of every pod sandbox.
//!
//! Holds the pod's namespaces open and does nothing else: exits 0 on SIGINT
//! or SIGTERM, reaps orphaned children on SIGCHLD, and sleeps in `pause()`
//! otherwise. Real handlers are installed (not ignored or blocked signals)
//! because the kernel never delivers a default-disposition signal to the
//! PID 1 of a PID namespace, so the runtime's SIGTERM would be lost.
//!
//! Compiled by the repository's `build.rs` with no crates, no std and no Rust
//! entry point, statically linked against the C library, and embedded in
//! skiff as the built-in pause image (`agent::images`).

#![no_std]
#![no_main]

use core::ffi::c_int;

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const WNOHANG: c_int = 1;
const SA_RESTART: c_int = 0x1000_0000;

/// The C library's `struct sigaction` on Linux (x86_64 and aarch64 agree).
#[repr(C)]
struct SigAction {
    handler: extern "C" fn(c_int),
    mask: [u64; 16],
    flags: c_int,
    restorer: usize,
}

// Static glibc refers to the unwinder from a few cold paths; gcc_eh has it.
#[link(name = "c")]
#[cfg_attr(target_env = "gnu", link(name = "gcc_eh"))]
#[cfg_attr(target_env = "gnu", link(name = "gcc"))]
unsafe extern "C" {
    fn sigaction(sig: c_int, act: *const SigAction, old: *mut SigAction) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn pause() -> c_int;
    fn _exit(code: c_int) -> !;
}

extern "C" fn on_terminate(_sig: c_int) {
    unsafe { _exit(0) }
}

extern "C" fn on_child(_sig: c_int) {
    let mut status: c_int = 0;
    while unsafe { waitpid(-1, &mut status, WNOHANG) } > 0 {}
}

fn install(sig: c_int, handler: extern "C" fn(c_int)) -> bool {
    let act = SigAction {
        handler,
        mask: [0; 16],
        flags: SA_RESTART,
        restorer: 0,
    };
    unsafe { sigaction(sig, &act, core::ptr::null_mut()) == 0 }
}

#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: c_int, _argv: *const *const u8) -> c_int {
    if !(install(SIGINT, on_terminate)
        && install(SIGTERM, on_terminate)
        && install(SIGCHLD, on_child))
    {
        return 1;
    }
    loop {
        unsafe { pause() };
    }
}

#[panic_handler]
fn on_panic(_: &core::panic::PanicInfo) -> ! {
    unsafe { _exit(2) }
}
