/*
 * authz-echo: the "physical limit" baseline for the sidecar benchmarks.
 *
 *   authz-echo --socket PATH [--threads N]
 *
 * Listens on a Unix domain socket and speaks the sidecar's framing (proto/README.md:
 * 1 flag byte 0, 4-byte big-endian payload length, payload) but does no work at all: it
 * answers every request frame, whatever it holds, with the same precomputed
 * `authz.v1.Response` (packed once with protobuf-c at startup: call_id 1, an OK status,
 * snapshot_version 7, effective_permission_result {LEVEL_CAN_EDIT, REASON_USER_GRANT}, the
 * shape and size of the sidecar's answer to an EffectivePermission check). What is left is
 * the cost of the socket round trip and the event loop: the floor under any server.
 *
 * Cheap by construction:
 * - epoll (level-triggered), non-blocking sockets, no allocation after accept;
 * - request payloads are never copied or buffered: a connection only keeps its place in
 *   the current frame (up to 5 header bytes seen, payload bytes still to skip);
 * - every read() is answered with ONE write() of as many copies of the response as it
 *   completed frames (a read batch), taken from a buffer of identical copies, so the
 *   bytes still owed on a connection are just a count. While bytes are owed the
 *   connection is not read (the client's reading is its flow control).
 * A frame whose flag byte is not 0 or whose declared length is over 65536 closes the
 * connection (the real server first answers an error; the echo does not bother).
 *
 * Threads: by default ONE epoll loop (one thread, like a single core of a server). With
 * --threads N, N loops share the listening socket, each registering it with EPOLLEXCLUSIVE
 * so one loop wakes per incoming connection; a connection stays on the loop that accepted
 * it. SIGTERM/SIGINT unlink the socket file and exit 0. A stale socket file at PATH is
 * removed at start.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "authz/v1/authz.pb-c.h"

enum {
  HEADER_SIZE = 5,
  MAX_PAYLOAD = 65536,
  READ_BUFFER_SIZE = 64 * 1024,
  /* The most frames one read can complete: all of them empty (5 bytes each). */
  MAX_FRAMES_PER_READ = READ_BUFFER_SIZE / HEADER_SIZE + 1,
  MAX_EVENTS = 256,
};

/* MAX_FRAMES_PER_READ + 1 copies of the response frame, back to back. */
static uint8_t *responses;
static size_t response_length;

typedef struct connection {
  int fd;
  uint32_t header_have;   /* header bytes of the current frame seen so far (0..4) */
  uint32_t payload_left;  /* payload bytes of the current frame still to skip */
  uint8_t header[HEADER_SIZE];
  int writing;            /* registered for EPOLLOUT instead of EPOLLIN */
  size_t owed;            /* response bytes not yet written */
  size_t phase;           /* offset within the response frame of the next byte owed */
} connection;

static int listen_fd = -1;
static const char *socket_path;

static void die(const char *what) {
  fprintf(stderr, "authz-echo: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void build_responses(void) {
  Authz__V1__Response response = AUTHZ__V1__RESPONSE__INIT;
  Authz__V1__RpcStatus status = AUTHZ__V1__RPC_STATUS__INIT; /* code 0: the sidecar sends it */
  Authz__V1__EffectivePermissionResult result = AUTHZ__V1__EFFECTIVE_PERMISSION_RESULT__INIT;
  result.level = AUTHZ__V1__LEVEL__LEVEL_CAN_EDIT;
  result.reason = AUTHZ__V1__REASON__REASON_USER_GRANT;
  response.call_id = 1;
  response.status = &status;
  response.snapshot_version = 7;
  response.result_case = AUTHZ__V1__RESPONSE__RESULT_EFFECTIVE_PERMISSION_RESULT;
  response.effective_permission_result = &result;

  size_t payload = authz__v1__response__get_packed_size(&response);
  response_length = HEADER_SIZE + payload;
  size_t copies = (size_t)MAX_FRAMES_PER_READ + 1;
  responses = malloc(copies * response_length);
  if (responses == NULL) die("malloc");
  uint8_t *frame = responses;
  frame[0] = 0;
  frame[1] = (uint8_t)(payload >> 24);
  frame[2] = (uint8_t)(payload >> 16);
  frame[3] = (uint8_t)(payload >> 8);
  frame[4] = (uint8_t)payload;
  authz__v1__response__pack(&response, frame + HEADER_SIZE);
  for (size_t i = 1; i < copies; i++) memcpy(responses + i * response_length, frame, response_length);
}

static void close_connection(connection *c) {
  close(c->fd); /* also removes it from the epoll set */
  free(c);
}

static void set_events(int epoll_fd, connection *c, int writing) {
  if (c->writing == writing) return;
  struct epoll_event event = {.events = writing ? EPOLLOUT : EPOLLIN, .data.ptr = c};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &event) != 0) die("epoll_ctl");
  c->writing = writing;
}

/* One write of what is owed; returns -1 when the connection is gone. */
static int flush_owed(int epoll_fd, connection *c) {
  size_t chunk = c->owed;
  size_t available = (size_t)(MAX_FRAMES_PER_READ + 1) * response_length - c->phase;
  if (chunk > available) chunk = available;
  ssize_t n = write(c->fd, responses + c->phase, chunk);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) n = 0;
    else return -1;
  }
  c->owed -= (size_t)n;
  c->phase = (c->phase + (size_t)n) % response_length;
  set_events(epoll_fd, c, c->owed > 0);
  return 0;
}

/* Counts the frames a read completed, validating each header. -1: framing error. */
static long scan_frames(connection *c, const uint8_t *p, size_t n) {
  long frames = 0;
  size_t i = 0;
  while (i < n) {
    if (c->payload_left > 0) {
      size_t skip = n - i < c->payload_left ? n - i : c->payload_left;
      i += skip;
      c->payload_left -= (uint32_t)skip;
      if (c->payload_left == 0) frames++;
      continue;
    }
    const uint8_t *header;
    if (c->header_have == 0 && n - i >= HEADER_SIZE) { /* the usual case: a whole header */
      header = p + i;
      i += HEADER_SIZE;
    } else {
      while (c->header_have < HEADER_SIZE && i < n) c->header[c->header_have++] = p[i++];
      if (c->header_have < HEADER_SIZE) break;
      c->header_have = 0;
      header = c->header;
    }
    uint32_t length = (uint32_t)header[1] << 24 | (uint32_t)header[2] << 16 |
                      (uint32_t)header[3] << 8 | (uint32_t)header[4];
    if (header[0] != 0 || length > MAX_PAYLOAD) return -1;
    if (length == 0) frames++;
    else c->payload_left = length;
  }
  return frames;
}

static void accept_all(int epoll_fd) {
  for (;;) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN) return;
      if (errno == EMFILE || errno == ENFILE) {
        fprintf(stderr, "authz-echo: accept: %s\n", strerror(errno));
        return;
      }
      die("accept4");
    }
    connection *c = calloc(1, sizeof *c);
    if (c == NULL) die("calloc");
    c->fd = fd;
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) die("epoll_ctl add");
  }
}

static void *event_loop(void *unused) {
  (void)unused;
  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) die("epoll_create1");
  struct epoll_event event = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &event) != 0) die("epoll_ctl listen");
  static _Thread_local uint8_t buffer[READ_BUFFER_SIZE];
  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int count = epoll_wait(epoll_fd, events, MAX_EVENTS, -1);
    if (count < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int e = 0; e < count; e++) {
      connection *c = events[e].data.ptr;
      if (c == NULL) {
        accept_all(epoll_fd);
        continue;
      }
      if (c->writing) {
        if (flush_owed(epoll_fd, c) != 0) close_connection(c);
        continue;
      }
      ssize_t n = read(c->fd, buffer, sizeof buffer);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        close_connection(c); /* EOF or error */
        continue;
      }
      long frames = scan_frames(c, buffer, (size_t)n);
      if (frames < 0) {
        close_connection(c);
        continue;
      }
      if (frames == 0) continue;
      c->owed += (size_t)frames * response_length;
      if (flush_owed(epoll_fd, c) != 0) close_connection(c);
    }
  }
  return NULL;
}

static void usage(int status) {
  fprintf(status ? stderr : stdout,
          "usage: authz-echo --socket PATH [--threads N]\n"
          "  Answers every frame on the Unix socket PATH with one fixed authz.v1.Response\n"
          "  (an EffectivePermission answer). --threads N: N epoll loops (default 1).\n");
  exit(status);
}

int main(int argc, char **argv) {
  long threads = 1;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) usage(0);
    if (i + 1 >= argc) usage(2);
    if (strcmp(arg, "--socket") == 0) socket_path = argv[++i];
    else if (strcmp(arg, "--threads") == 0) {
      char *end;
      threads = strtol(argv[++i], &end, 10);
      if (*end != '\0' || threads < 1 || threads > 1024) usage(2);
    } else usage(2);
  }
  if (socket_path == NULL) usage(2);

  build_responses();

  struct sockaddr_un address = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof address.sun_path) {
    fprintf(stderr, "authz-echo: socket path too long\n");
    return 1;
  }
  strcpy(address.sun_path, socket_path);
  struct stat st;
  if (lstat(socket_path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      fprintf(stderr, "authz-echo: %s exists and is not a socket\n", socket_path);
      return 1;
    }
    if (unlink(socket_path) != 0) die("unlink stale socket");
  }

  listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) die("socket");
  if (bind(listen_fd, (const struct sockaddr *)&address, sizeof address) != 0) die(socket_path);
  if (listen(listen_fd, SOMAXCONN) != 0) die("listen");

  /* Only the main thread takes the signals; the loops never see them. */
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  if (pthread_sigmask(SIG_BLOCK, &signals, NULL) != 0) die("pthread_sigmask");
  signal(SIGPIPE, SIG_IGN);

  for (long t = 0; t < threads; t++) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, event_loop, NULL) != 0) die("pthread_create");
    pthread_detach(thread);
  }
  fprintf(stderr, "authz-echo: listening on %s, %ld loop(s), response frame %zu bytes\n",
          socket_path, threads, response_length);

  int received;
  while (sigwait(&signals, &received) != 0) {
  }
  unlink(socket_path);
  fprintf(stderr, "authz-echo: signal %d, exiting\n", received);
  _exit(0);
}
