//! Giving memory back to the OS after a burst of turns (glibc on Linux; elsewhere a no-op).
//!
//! glibc keeps what a burst freed for reuse; [`release_freed`] (`malloc_trim`) hands the free
//! pages back. What no trim returns are the pages held by glibc's per-thread caches: up to seven
//! freed chunks of each small size per thread, kept until the thread ends. They are scattered
//! over the heap, so after 1 024 concurrent turns they pinned ~3 MiB and the server stayed at
//! 1.25× its idle size (docs/BENCHMARKS.md). glibc reads the setting that turns them off
//! (`GLIBC_TUNABLES=glibc.malloc.tcache_count=0`) only when a program starts, so
//! [`start_without_thread_caches`] starts the server again, once, with it set. A
//! `GLIBC_TUNABLES` that already sets `tcache_count` (to 7, glibc's default, say) is left as is.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::ffi::{OsStr, OsString};

/// The tunable that turns glibc's per-thread caches off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THREAD_CACHES_OFF: &str = "glibc.malloc.tcache_count=0";

/// Replaces this process with the same program, arguments and environment, plus
/// [`THREAD_CACHES_OFF`] in `GLIBC_TUNABLES`; returns at once when that is already decided.
/// Call it first, while the process has one thread. On failure (no `/proc`) the server just runs
/// with the caches: the error says why.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn start_without_thread_caches() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let Some(tunables) =
        tunables_without_thread_caches(std::env::var_os("GLIBC_TUNABLES").as_deref())
    else {
        return Ok(());
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new("/proc/self/exe");
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    // `exec` returns only if it failed.
    Err(command.args(args).env("GLIBC_TUNABLES", tunables).exec())
}

/// Other platforms have no such caches to turn off.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn start_without_thread_caches() -> std::io::Result<()> {
    Ok(())
}

/// `GLIBC_TUNABLES` with the thread caches off, or `None` when it already sets them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tunables_without_thread_caches(current: Option<&OsStr>) -> Option<OsString> {
    use std::os::unix::ffi::OsStrExt;
    let current = current.map(OsStr::as_bytes).unwrap_or_default();
    let sets_caches = current
        .split(|&byte| byte == b':')
        .any(|tunable| tunable.starts_with(b"glibc.malloc.tcache_count="));
    if sets_caches {
        return None;
    }
    let mut tunables = OsString::from(OsStr::from_bytes(current));
    if !current.is_empty() {
        tunables.push(":");
    }
    tunables.push(THREAD_CACHES_OFF);
    Some(tunables)
}

/// Hands memory freed by unloaded threads back to the OS. glibc keeps what a burst of turns freed
/// for reuse, so without this a server stays at its peak size while idle; called when the last
/// loaded thread unloads (rare, and then the process has nothing else to do).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn tunables(current: Option<&str>) -> Option<String> {
        tunables_without_thread_caches(current.map(OsStr::new))
            .map(|value| value.into_string().unwrap())
    }

    #[test]
    fn the_caches_go_off_unless_the_environment_already_decides() {
        assert_eq!(tunables(None).as_deref(), Some(THREAD_CACHES_OFF));
        assert_eq!(tunables(Some("")).as_deref(), Some(THREAD_CACHES_OFF));
        assert_eq!(
            tunables(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0")
        );
        assert_eq!(tunables(Some("glibc.malloc.tcache_count=7")), None);
        assert_eq!(
            tunables(Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=3")),
            None
        );
        // A look-alike name is not the setting.
        assert_eq!(
            tunables(Some("glibc.malloc.tcache_count_max=1")).as_deref(),
            Some("glibc.malloc.tcache_count_max=1:glibc.malloc.tcache_count=0")
        );
    }
}
