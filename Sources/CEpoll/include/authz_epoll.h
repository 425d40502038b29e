// The Linux system calls the epoll transport needs that Swift's Glibc module does not
// export: epoll, accept4 (a GNU extension) and SO_PEERCRED's struct ucred; and malloc_trim
// for the reloader.
#ifndef AUTHZ_EPOLL_H
#define AUTHZ_EPOLL_H

#include <malloc.h>
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

#endif
