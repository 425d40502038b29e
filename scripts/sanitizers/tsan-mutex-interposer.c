// Teaches ThreadSanitizer the happens-before edges of Swift's `Synchronization.Mutex` on
// Linux. Built and preloaded (LD_PRELOAD) by scripts/sanitizers.sh for the ThreadSanitizer
// run only; nothing else uses it.
//
// Why: `Mutex.withLock` inlines its fast path (an atomic compare-exchange, which TSan sees)
// into the caller, but under contention it calls `_MutexHandle._lockSlow` and `_unlockSlow`
// in libswiftSynchronization.so (futex waits), which is not instrumented. A lock handed over
// through the slow path is then invisible to TSan, and every access the mutex protects is
// reported as a race ("Swift access race" with the mutex held on both sides; a 20-line
// program with 4 threads appending to a `Mutex<[Int]>` reproduces it with Swift 6.3).
//
// These definitions interpose the three slow-path entry points (the executable's calls go
// through the PLT), call the library's own, and tell TSan what they did: acquire after
// locking, release before unlocking, on the lock word's address (the same address the
// inlined atomics use). Races outside a mutex are still reported (checked with a program
// racing on a plain variable next to the mutex).
//
// If a new toolchain renames these symbols the interposer stops matching and the races
// reappear as reports: the ThreadSanitizer run fails loudly rather than passing silently.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// Weak: a process without the TSan runtime (a shell, sqlite3) can preload this library too.
__attribute__((weak)) void __tsan_acquire(void *address);
__attribute__((weak)) void __tsan_release(void *address);

// Swift methods take `self` in the swiftself register: clang's swift_context.
#define SWIFTCALL __attribute__((swiftcall))
#define SWIFT_SELF __attribute__((swift_context))

#define LOCK_SLOW "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"
#define TRY_LOCK_SLOW "$s15Synchronization12_MutexHandleV12_tryLockSlowSbyF"
#define UNLOCK_SLOW "$s15Synchronization12_MutexHandleV11_unlockSlowyyF"

typedef SWIFTCALL void (*lock_slow_fn)(uint32_t, void *SWIFT_SELF);
typedef SWIFTCALL bool (*try_lock_slow_fn)(void *SWIFT_SELF);
typedef SWIFTCALL void (*unlock_slow_fn)(void *SWIFT_SELF);

static void *original(const char *name) {
    void *function = dlsym(RTLD_NEXT, name);
    if (function == NULL) {
        fprintf(stderr, "tsan mutex interposer: %s not found\n", name);
        abort();
    }
    return function;
}

SWIFTCALL void authz_tsan_lock_slow(uint32_t self_id, void *handle SWIFT_SELF) __asm__(LOCK_SLOW);
SWIFTCALL bool authz_tsan_try_lock_slow(void *handle SWIFT_SELF) __asm__(TRY_LOCK_SLOW);
SWIFTCALL void authz_tsan_unlock_slow(void *handle SWIFT_SELF) __asm__(UNLOCK_SLOW);

SWIFTCALL void authz_tsan_lock_slow(uint32_t self_id, void *handle SWIFT_SELF) {
    static lock_slow_fn lock_slow;
    if (lock_slow == NULL) lock_slow = (lock_slow_fn)original(LOCK_SLOW);
    lock_slow(self_id, handle);
    if (__tsan_acquire) __tsan_acquire(handle);
}

SWIFTCALL bool authz_tsan_try_lock_slow(void *handle SWIFT_SELF) {
    static try_lock_slow_fn try_lock_slow;
    if (try_lock_slow == NULL) try_lock_slow = (try_lock_slow_fn)original(TRY_LOCK_SLOW);
    bool locked = try_lock_slow(handle);
    if (locked && __tsan_acquire) __tsan_acquire(handle);
    return locked;
}

SWIFTCALL void authz_tsan_unlock_slow(void *handle SWIFT_SELF) {
    static unlock_slow_fn unlock_slow;
    if (unlock_slow == NULL) unlock_slow = (unlock_slow_fn)original(UNLOCK_SLOW);
    if (__tsan_release) __tsan_release(handle);
    unlock_slow(handle);
}
