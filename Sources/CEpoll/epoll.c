#define _GNU_SOURCE
#include <sys/socket.h>

#include "authz_epoll.h"

int authz_accept_nonblocking(int listener) {
  return accept4(listener, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
