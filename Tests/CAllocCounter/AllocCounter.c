// A counting malloc interposer for tests: the test executable defines the allocation
// entry points, counts them per thread and forwards to glibc's own implementations.
// Only linked into test binaries.
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include "CAllocCounter.h"

// Under AddressSanitizer and ThreadSanitizer the sanitizer runtime owns the heap (its own
// malloc and free): an interposer forwarding to glibc would hand the runtime pointers it
// never allocated (the test binary crashes before the first test). There the counter is
// off and the allocation tests are skipped (authz_alloc_counter_enabled).
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define AUTHZ_ALLOC_COUNTER_OFF 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define AUTHZ_ALLOC_COUNTER_OFF 1
#endif

#ifdef AUTHZ_ALLOC_COUNTER_OFF

int authz_alloc_counter_enabled(void) { return 0; }
uint64_t authz_thread_allocations(void) { return 0; }

#else

int authz_alloc_counter_enabled(void) { return 1; }

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static _Thread_local uint64_t allocations;

uint64_t authz_thread_allocations(void) { return allocations; }

void *malloc(size_t size) {
    allocations++;
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    allocations++;
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    allocations++;
    return __libc_realloc(pointer, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    allocations++;
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *out = pointer;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    allocations++;
    return __libc_memalign(alignment, size);
}

#endif
