#ifndef AUTHZ_ALLOC_COUNTER_H
#define AUTHZ_ALLOC_COUNTER_H

#include <stdint.h>

/// Number of malloc/calloc/realloc/posix_memalign/aligned_alloc calls made by the
/// calling thread since it started (glibc only; the counter is thread-local, so tests
/// running concurrently on other threads do not disturb it).
uint64_t authz_thread_allocations(void);

/// 1 when allocations are counted; 0 in builds under AddressSanitizer or ThreadSanitizer,
/// whose runtimes own malloc (there the counter always reads zero).
int authz_alloc_counter_enabled(void);

#endif
