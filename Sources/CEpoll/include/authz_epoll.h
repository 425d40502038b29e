// The Linux system calls the epoll transport needs that Swift's Glibc module does not
// export: epoll, accept4 (a GNU extension) and SO_PEERCRED's struct ucred; and malloc_trim
// for the reloader; relaxed single-writer counters for the metrics shards.
#ifndef AUTHZ_EPOLL_H
#define AUTHZ_EPOLL_H

#include <malloc.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC; -1 and errno on failure.
int authz_accept_nonblocking(int listener);

/// malloc_trim(0), which Swift's Glibc module does not export either: gives free heap memory
/// back to the system (every arena, not only the top of the main heap). The reloader calls
/// it after releasing a replaced snapshot. Returns 1 if any memory was released.
static inline int authz_malloc_trim(void) {
    return malloc_trim(0);
}

/// A relaxed atomic read of a counter another thread writes (the metrics scrape).
static inline uint64_t authz_counter_load(const uint64_t *counter) {
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/// Adds to a counter only the calling thread writes (its loop's metrics shard): a relaxed
/// load and a relaxed store, no read-modify-write instruction and no fence, so it costs
/// what a plain increment costs; a concurrent reader sees either value, never a torn one.
static inline void authz_counter_add(uint64_t *counter, uint64_t amount) {
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + amount, __ATOMIC_RELAXED);
}

#endif
