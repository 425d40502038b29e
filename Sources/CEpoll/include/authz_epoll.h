// The Linux system calls the epoll transport needs that Swift's Glibc module does not
// export: epoll, accept4 (a GNU extension) and SO_PEERCRED's struct ucred.
#ifndef AUTHZ_EPOLL_H
#define AUTHZ_EPOLL_H

#include <sys/epoll.h>
#include <sys/socket.h>

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC; -1 and errno on failure.
int authz_accept_nonblocking(int listener);

#endif
