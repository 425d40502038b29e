/*
 * authz_ask: a minimal C client of the authorization sidecar (proto/README.md).
 *
 *   authz_ask SOCKET USER PROJECT                 EffectivePermission(user, project)
 *   authz_ask can-use SOCKET USER ASSET [PROJECT] CanUse(user, asset, project?)
 *
 * Connects to the sidecar's Unix socket, sends one framed authz.v1.Request built with
 * protobuf-c, reads the framed authz.v1.Response and prints e.g.
 *
 *   level=can_edit reason=user_grant snapshot_version=7
 *   access=use reason=group_access snapshot_version=7
 *
 * An empty USER ("") asks for the anonymous web viewer. Exit status: 0 on an answer
 * (denials are answers), 1 on an error status from the server, 2 on usage or I/O errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "authz/v1/authz.pb-c.h"

enum { HEADER_SIZE = 5 };
/* Responses can exceed the server's 64 KiB request limit (batches with explanations). */
static const uint32_t max_response_payload = 4u * 1024u * 1024u;

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s SOCKET USER PROJECT\n"
          "       %s can-use SOCKET USER ASSET [PROJECT]\n",
          argv0, argv0);
  exit(2);
}

static void die_errno(const char *what) {
  fprintf(stderr, "authz_ask: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void die(const char *message) {
  fprintf(stderr, "authz_ask: %s\n", message);
  exit(2);
}

static void write_all(int fd, const uint8_t *bytes, size_t count) {
  while (count > 0) {
    ssize_t n = write(fd, bytes, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      die_errno("write");
    }
    bytes += n;
    count -= (size_t)n;
  }
}

static void read_exact(int fd, uint8_t *bytes, size_t count) {
  while (count > 0) {
    ssize_t n = read(fd, bytes, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      die_errno("read");
    }
    if (n == 0) die("the server closed the connection before the response was complete");
    bytes += n;
    count -= (size_t)n;
  }
}

static int connect_unix(const char *path) {
  struct sockaddr_un address;
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof address.sun_path) die("socket path too long");
  strcpy(address.sun_path, path);

  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) die_errno("socket");
  if (connect(fd, (const struct sockaddr *)&address, sizeof address) < 0) die_errno(path);
  return fd;
}

/* Packs `request` into one frame: flag 0, 4-byte big-endian length, payload. */
static uint8_t *frame_request(const Authz__V1__Request *request, size_t *frame_length) {
  size_t payload_length = authz__v1__request__get_packed_size(request);
  uint8_t *frame = malloc(HEADER_SIZE + payload_length);
  if (frame == NULL) die("out of memory");
  frame[0] = 0;
  frame[1] = (uint8_t)(payload_length >> 24);
  frame[2] = (uint8_t)(payload_length >> 16);
  frame[3] = (uint8_t)(payload_length >> 8);
  frame[4] = (uint8_t)payload_length;
  authz__v1__request__pack(request, frame + HEADER_SIZE);
  *frame_length = HEADER_SIZE + payload_length;
  return frame;
}

/* Reads one frame and unpacks it; exits on framing or decoding errors. */
static Authz__V1__Response *read_response(int fd) {
  uint8_t header[HEADER_SIZE];
  read_exact(fd, header, sizeof header);
  if (header[0] != 0) die("the response frame is compressed or malformed (flag byte not 0)");
  uint32_t length = (uint32_t)header[1] << 24 | (uint32_t)header[2] << 16 |
                    (uint32_t)header[3] << 8 | (uint32_t)header[4];
  if (length > max_response_payload) die("the response frame is too large");

  uint8_t *payload = malloc(length > 0 ? length : 1);
  if (payload == NULL) die("out of memory");
  read_exact(fd, payload, length);
  Authz__V1__Response *response = authz__v1__response__unpack(NULL, length, payload);
  free(payload);
  if (response == NULL) die("the response is not a valid authz.v1.Response");
  return response;
}

/* Prints an enum value as its proto name without `prefix`, in lower case:
 * LEVEL_CAN_EDIT -> can_edit. Values this client does not know print as numbers. */
static void print_enum(const char *label, const ProtobufCEnumDescriptor *descriptor,
                       const char *prefix, int value) {
  const ProtobufCEnumValue *found = protobuf_c_enum_descriptor_get_value(descriptor, value);
  printf("%s=", label);
  if (found == NULL) {
    printf("%d", value);
    return;
  }
  const char *name = found->name;
  size_t prefix_length = strlen(prefix);
  if (strncmp(name, prefix, prefix_length) == 0) name += prefix_length;
  for (; *name != '\0'; name++) putchar(tolower((unsigned char)*name));
}

static const char *code_name(uint32_t code) {
  static const char *const names[] = {
      "OK",        "CANCELLED",         "UNKNOWN",          "INVALID_ARGUMENT",    "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS",    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",      "UNIMPLEMENTED",    "INTERNAL",            "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED",
  };
  return code < sizeof names / sizeof names[0] ? names[code] : "UNKNOWN";
}

int main(int argc, char **argv) {
  const char *argv0 = argc > 0 ? argv[0] : "authz_ask";
  int can_use = argc > 1 && strcmp(argv[1], "can-use") == 0;
  if (can_use ? (argc != 5 && argc != 6) : argc != 4) usage(argv0);

  Authz__V1__Request request = AUTHZ__V1__REQUEST__INIT;
  Authz__V1__CanUse can_use_query = AUTHZ__V1__CAN_USE__INIT;
  Authz__V1__EffectivePermission permission_query = AUTHZ__V1__EFFECTIVE_PERMISSION__INIT;
  const char *socket_path;
  request.call_id = 1; /* any value: the response echoes it */
  if (can_use) {
    socket_path = argv[2];
    can_use_query.user = argv[3];
    can_use_query.asset = argv[4];
    if (argc == 6) can_use_query.project = argv[5];
    request.method_case = AUTHZ__V1__REQUEST__METHOD_CAN_USE;
    request.can_use = &can_use_query;
  } else {
    socket_path = argv[1];
    permission_query.user = argv[2];
    permission_query.project = argv[3];
    request.method_case = AUTHZ__V1__REQUEST__METHOD_EFFECTIVE_PERMISSION;
    request.effective_permission = &permission_query;
  }

  int fd = connect_unix(socket_path);
  size_t frame_length;
  uint8_t *frame = frame_request(&request, &frame_length);
  write_all(fd, frame, frame_length);
  free(frame);

  Authz__V1__Response *response = read_response(fd);
  close(fd);

  int status = 0;
  uint32_t code = response->status != NULL ? response->status->code : 0;
  if (response->call_id != request.call_id) {
    fprintf(stderr, "authz_ask: response for call %llu, expected %llu\n",
            (unsigned long long)response->call_id, (unsigned long long)request.call_id);
    status = 2;
  } else if (code != 0) {
    fprintf(stderr, "authz_ask: %s (%u): %s\n", code_name(code), code,
            response->status->message != NULL ? response->status->message : "");
    status = 1;
  } else if (can_use && response->result_case == AUTHZ__V1__RESPONSE__RESULT_CAN_USE_RESULT) {
    const Authz__V1__CanUseResult *result = response->can_use_result;
    print_enum("access", &authz__v1__access__descriptor, "ACCESS_", (int)result->access);
    print_enum(" reason", &authz__v1__reason__descriptor, "REASON_", (int)result->reason);
    printf(" snapshot_version=%llu\n", (unsigned long long)response->snapshot_version);
  } else if (!can_use &&
             response->result_case == AUTHZ__V1__RESPONSE__RESULT_EFFECTIVE_PERMISSION_RESULT) {
    const Authz__V1__EffectivePermissionResult *result = response->effective_permission_result;
    print_enum("level", &authz__v1__level__descriptor, "LEVEL_", (int)result->level);
    print_enum(" reason", &authz__v1__reason__descriptor, "REASON_", (int)result->reason);
    printf(" snapshot_version=%llu\n", (unsigned long long)response->snapshot_version);
  } else {
    fprintf(stderr, "authz_ask: OK response without the expected result (case %d)\n",
            (int)response->result_case);
    status = 2;
  }

  authz__v1__response__free_unpacked(response, NULL);
  return status;
}
