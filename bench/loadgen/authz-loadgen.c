/*
 * authz-loadgen: load generator for the authorization sidecar (proto/README.md framing,
 * authz.v1.Request / authz.v1.Response). See README.md beside this file for the options
 * and the meaning of every number it prints.
 *
 * Design (the generator must never be the bottleneck; it shares the machine's cores with
 * the server):
 * - requests are encoded before the run: a pool of pre-packed `authz.v1.Request` payloads
 *   without call_id (protobuf-c); sending one is a 5-byte header, the call_id field
 *   (tag 0x08 + varint, the first field as protobuf-c would put it) and a memcpy;
 * - T worker threads, each an epoll loop over its share of the connections (connection c
 *   belongs to thread c % T); non-blocking sockets; per loop iteration each connection
 *   gets at most one write() holding every request it may send, and one read() per
 *   readiness event into a per-connection buffer where frames are split in place;
 * - responses are checked by a zero-allocation wire scanner that accepts exactly what
 *   protobuf-c's unpack accepts (driven by the generated descriptors for the nested
 *   messages), or, with --verify full, by protobuf-c's unpack itself (into an arena)
 *   cross-checked against the scanner; `--self-test` compares the two on random and
 *   damaged payloads;
 * - each connection keeps a ring of its in-flight calls indexed by call_id (call_ids are
 *   1, 2, 3, ... per connection), so a response is matched by its call_id in O(1)
 *   whatever the order; in --expect-fixed mode (the echo server answers call_id 1 to
 *   everything) responses are matched to the oldest call in flight instead;
 * - clock_gettime(CLOCK_MONOTONIC) just before each read() (the receive time of every
 *   answer it returns) and before filling each connection's write (the send time of every
 *   call in it); latencies go into per-thread HDR histograms (hdr.c) merged at the end.
 *
 * Open loop (--rate): connection c of C sends its k-th request at the intended time
 * start + (k*C + c)/R; latency is measured from that intended time, so a request that
 * waits (for the loop, or because --depth calls are already in flight on its connection)
 * is charged for the wait (no coordinated omission).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "authz/v1/authz.pb-c.h"
#include "hdr.h"

enum {
  HEADER_SIZE = 5,
  MAX_REQUEST_PAYLOAD = 65536,
  MAX_RESPONSE_PAYLOAD = 4 * 1024 * 1024 + 1024,
  MAX_EVENTS = 256,
};

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                          */
/* ------------------------------------------------------------------------------------ */

static void die(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fputs("authz-loadgen: ", stderr);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
  exit(2);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) die("out of memory (%zu bytes)", n);
  return p;
}

static void *xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (p == NULL) die("out of memory");
  return p;
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
  struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull), .tv_nsec = (long)(t % 1000000000ull)};
  clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL); /* a signal ends it early */
}

typedef struct rng {
  uint64_t state;
} rng;

static uint64_t rng_next(rng *r) { /* SplitMix64 */
  uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * 0x1p-53; }

static uint64_t rng_below(rng *r, uint64_t bound) { return rng_next(r) % bound; }

static inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

/* ------------------------------------------------------------------------------------ */
/* Options                                                                                */
/* ------------------------------------------------------------------------------------ */

enum { KIND_CU = 0, KIND_EP, KIND_ST, KIND_CAP, KIND_COUNT };
static const char *const kind_names[KIND_COUNT] = {"cu", "ep", "st", "cap"};
/* Request method / response result field numbers, and Check / CheckResult kind numbers. */
static const uint8_t kind_method[KIND_COUNT] = {10, 11, 12, 13};
static const uint8_t kind_check[KIND_COUNT] = {1, 2, 3, 4};

typedef struct options {
  const char *socket_path;
  int connections;
  int depth;
  int threads;
  uint64_t requests; /* 0: run for `duration` */
  double duration;
  double warmup;
  double rate; /* 0: closed loop */
  double quantum_us; /* open loop: the shortest sleep between send rounds */
  int mix[KIND_COUNT];
  int batch; /* 0: single calls; K: one Batch of K checks per request */
  const char *db;
  int users, projects, assets;
  double zipf;
  uint64_t seed;
  double cu_project; /* fraction of CanUse checks that carry a project */
  int expect_fixed;
  int verify_full;
  long server_pid;
  const char *json;
  const char *label;
  int quiet;
  int pool;
  double drain;
  int self_test;
} options;

static options opt = {
    .connections = 1,
    .depth = 1,
    .threads = 0,
    .duration = 5,
    .warmup = 1,
    .mix = {30, 60, 10, 0},
    .users = 10000,
    .projects = 5000,
    .assets = 200,
    .zipf = 0.99,
    .seed = 1,
    .cu_project = 0.5,
    .server_pid = 0,
    .pool = 65536,
    .drain = 5,
    .quantum_us = 20,
};

static void usage(int status) {
  fprintf(status ? stderr : stdout,
          "usage: authz-loadgen --socket PATH [options]\n"
          "  --connections N     connections (default 1)\n"
          "  --depth D           requests in flight per connection (default 1; open loop: the most)\n"
          "  --duration S        measured seconds (default 5)   | --requests N  measured requests in total\n"
          "  --warmup S          seconds of load before measuring, not recorded (default 1)\n"
          "  --rate R            open loop: R requests/s in total on a fixed schedule (default: closed loop)\n"
          "  --mix ep=60,cu=30,st=10[,cap=0]   percentages of EffectivePermission/CanUse/SeatType/Capabilities\n"
          "  --batch K           each request is one Batch of K checks drawn from the mix\n"
          "  --db PATH           draw ids from the sidecar's SQLite database (read-only)\n"
          "  --users N --projects N --assets N   synthetic ids u-%%06d/p-%%06d/a-%%04d (default 10000/5000/200)\n"
          "  --zipf S            Zipf exponent of the id popularity (default 0.99; 0 = uniform)\n"
          "  --seed N            seed of the id permutations and draws (default 1)\n"
          "  --cu-project F      fraction of CanUse checks in a project (default 0.5)\n"
          "  --threads T         worker threads (default min(connections, 2))\n"
          "  --expect-fixed      echo baseline: do not match call_ids or result kinds\n"
          "  --verify full       check responses with protobuf-c's unpack too (default: fast scanner)\n"
          "  --server-pid PID    report the server's CPU time per request (/proc/PID/stat)\n"
          "  --json PATH         write the results as JSON; --label NAME goes into it\n"
          "  --pool N            pre-encoded requests (default 65536; fewer for big batches)\n"
          "  --drain S           how long to wait for responses after the end (default 5)\n"
          "  --quantum-us Q      open loop: send what is due in rounds at least Q us apart (default 20;\n"
          "                      a wake-up per request would cost the generator a core; the wait\n"
          "                      counts in the latency, which runs from the intended send time)\n"
          "  --quiet             no progress lines on stderr\n"
          "  --self-test         check the response scanner against protobuf-c and exit\n");
  exit(status);
}

static double parse_double(const char *name, const char *s, double lo, double hi) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end != '\0' || end == s || !(v >= lo && v <= hi)) die("bad value for %s: %s", name, s);
  return v;
}

static long long parse_int(const char *name, const char *s, long long lo, long long hi) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end != '\0' || end == s || v < lo || v > hi) die("bad value for %s: %s", name, s);
  return v;
}

static void parse_mix(const char *s) {
  int mix[KIND_COUNT] = {0, 0, 0, 0};
  char *copy = strdup(s), *save = NULL;
  for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(item, '=');
    if (!eq) die("bad --mix item %s (want name=percent)", item);
    *eq = '\0';
    int k;
    for (k = 0; k < KIND_COUNT; k++)
      if (strcmp(item, kind_names[k]) == 0) break;
    if (k == KIND_COUNT) die("bad --mix name %s (ep, cu, st, cap)", item);
    mix[k] = (int)parse_int("--mix", eq + 1, 0, 100);
  }
  free(copy);
  if (mix[0] + mix[1] + mix[2] + mix[3] != 100) die("--mix percentages must add up to 100");
  memcpy(opt.mix, mix, sizeof mix);
}

static void parse_options(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage(0);
    if (!strcmp(a, "--expect-fixed")) { opt.expect_fixed = 1; continue; }
    if (!strcmp(a, "--quiet")) { opt.quiet = 1; continue; }
    if (!strcmp(a, "--self-test")) { opt.self_test = 1; continue; }
    if (i + 1 >= argc) usage(2);
    const char *v = argv[++i];
    if (!strcmp(a, "--socket")) opt.socket_path = v;
    else if (!strcmp(a, "--connections")) opt.connections = (int)parse_int(a, v, 1, 100000);
    else if (!strcmp(a, "--depth")) opt.depth = (int)parse_int(a, v, 1, 1 << 20);
    else if (!strcmp(a, "--threads")) opt.threads = (int)parse_int(a, v, 1, 1024);
    else if (!strcmp(a, "--requests")) opt.requests = (uint64_t)parse_int(a, v, 1, INT64_MAX);
    else if (!strcmp(a, "--duration")) opt.duration = parse_double(a, v, 0.001, 1e7);
    else if (!strcmp(a, "--warmup")) opt.warmup = parse_double(a, v, 0, 1e7);
    else if (!strcmp(a, "--rate")) opt.rate = parse_double(a, v, 0.001, 1e9);
    else if (!strcmp(a, "--quantum-us")) opt.quantum_us = parse_double(a, v, 0, 1e6);
    else if (!strcmp(a, "--mix")) parse_mix(v);
    else if (!strcmp(a, "--batch")) opt.batch = (int)parse_int(a, v, 1, 100000);
    else if (!strcmp(a, "--db")) opt.db = v;
    else if (!strcmp(a, "--users")) opt.users = (int)parse_int(a, v, 1, 100000000);
    else if (!strcmp(a, "--projects")) opt.projects = (int)parse_int(a, v, 1, 100000000);
    else if (!strcmp(a, "--assets")) opt.assets = (int)parse_int(a, v, 1, 100000000);
    else if (!strcmp(a, "--zipf")) opt.zipf = parse_double(a, v, 0, 100);
    else if (!strcmp(a, "--seed")) opt.seed = (uint64_t)parse_int(a, v, 0, INT64_MAX);
    else if (!strcmp(a, "--cu-project")) opt.cu_project = parse_double(a, v, 0, 1);
    else if (!strcmp(a, "--verify")) {
      if (!strcmp(v, "full")) opt.verify_full = 1;
      else if (!strcmp(v, "fast")) opt.verify_full = 0;
      else die("--verify fast|full");
    } else if (!strcmp(a, "--server-pid")) opt.server_pid = (long)parse_int(a, v, 1, INT32_MAX);
    else if (!strcmp(a, "--json")) opt.json = v;
    else if (!strcmp(a, "--label")) opt.label = v;
    else if (!strcmp(a, "--pool")) opt.pool = (int)parse_int(a, v, 1, 1 << 24);
    else if (!strcmp(a, "--drain")) opt.drain = parse_double(a, v, 0, 3600);
    else {
      fprintf(stderr, "authz-loadgen: unknown option %s\n", a);
      usage(2);
    }
  }
  if (opt.self_test) return;
  if (!opt.socket_path) usage(2);
  if (opt.threads == 0) opt.threads = opt.connections < 2 ? opt.connections : 2;
  if (opt.threads > opt.connections) opt.threads = opt.connections;
}

/* ------------------------------------------------------------------------------------ */
/* Response checking: a zero-allocation scanner equivalent to protobuf-c's unpack          */
/* ------------------------------------------------------------------------------------ */

enum { WT_VARINT = 0, WT_64BIT = 1, WT_LEN = 2, WT_32BIT = 5 };

typedef struct response_info {
  uint64_t call_id;
  uint32_t code; /* status code; 0 when the status is absent */
  uint32_t result_case; /* 0 = none, else the Response result field number */
  uint32_t n_results;   /* batch results seen */
  uint32_t kinds_ok;    /* batch: every result's kind matched the expected one */
} response_info;

static inline int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
  const uint8_t *p = *pp;
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (p >= end) return -1;
    uint8_t b = *p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *pp = p;
      *out = v;
      return 0;
    }
  }
  return -1; /* more than 10 bytes */
}

/* A tag as protobuf-c reads it: at most 5 bytes, field number not 0. */
static inline int read_tag(const uint8_t **pp, const uint8_t *end, uint32_t *number, uint32_t *wire) {
  const uint8_t *p = *pp;
  if (p >= end || (p[0] & 0xf8) == 0) return -1;
  uint64_t v = 0;
  for (int i = 0; i < 5; i++) {
    if (p >= end) return -1;
    uint8_t b = *p++;
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) { /* at most 35 bits: the field number fits in 32 */
      *pp = p;
      *number = (uint32_t)(v >> 3);
      *wire = (uint32_t)(v & 7);
      return 0;
    }
  }
  return -1;
}

/* A length prefix as protobuf-c reads it: at most 5 bytes, a 32-bit value. */
static inline int read_length(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
  const uint8_t *p = *pp;
  uint64_t v = 0;
  for (int i = 0; i < 5; i++) {
    if (p >= end) return -1;
    uint8_t b = *p++;
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      if (v >> 32) return -1;
      *pp = p;
      *out = v;
      return 0;
    }
  }
  return -1;
}

/* Skips the value of a field of wire type `wire`; LEN values are returned in *sub. */
static inline int skip_value(const uint8_t **pp, const uint8_t *end, uint32_t wire, const uint8_t **sub,
                             size_t *sub_len) {
  uint64_t v;
  switch (wire) {
  case WT_VARINT:
    return read_varint(pp, end, &v);
  case WT_64BIT:
    if ((size_t)(end - *pp) < 8) return -1;
    *pp += 8;
    return 0;
  case WT_32BIT:
    if ((size_t)(end - *pp) < 4) return -1;
    *pp += 4;
    return 0;
  case WT_LEN:
    if (read_length(pp, end, &v) != 0 || v > (uint64_t)(end - *pp)) return -1;
    if (sub) {
      *sub = *pp;
      *sub_len = (size_t)v;
    }
    *pp += v;
    return 0;
  default:
    return -1; /* groups and wire types 6, 7: protobuf-c rejects them */
  }
}

/* Field lookup by number without protobuf-c's binary search: a table per message type
 * reachable from Response, built once before the workers start (schemas_init). */
enum { FAST_FIELDS = 32, MAX_SCHEMAS = 32 };
typedef struct schema {
  const ProtobufCMessageDescriptor *d;
  int complete; /* every field number is below FAST_FIELDS */
  const ProtobufCFieldDescriptor *f[FAST_FIELDS];
  const struct schema *sub[FAST_FIELDS];
} schema;
static schema schemas[MAX_SCHEMAS];
static int n_schemas;

static const schema *schema_for(const ProtobufCMessageDescriptor *d) {
  for (int i = 0; i < n_schemas; i++)
    if (schemas[i].d == d) return &schemas[i];
  if (n_schemas == MAX_SCHEMAS) return NULL;
  schema *s = &schemas[n_schemas++];
  s->d = d;
  s->complete = 1;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->id < FAST_FIELDS) s->f[f->id] = f;
    else s->complete = 0;
  }
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->id < FAST_FIELDS && f->type == PROTOBUF_C_TYPE_MESSAGE) s->sub[f->id] = schema_for(f->descriptor);
  }
  return s;
}

static int validate_message(const ProtobufCMessageDescriptor *d, const schema *s, const uint8_t *p, size_t n,
                            int depth);

/* The wire types protobuf-c accepts for a known field. */
static int validate_field(const ProtobufCFieldDescriptor *f, const schema *sub, uint32_t wire,
                          const uint8_t *value, size_t len, int depth) {
  int repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_ENUM:
    if (wire == WT_VARINT) return 0;
    if (wire == WT_LEN && repeated) { /* packed: varints filling the value exactly */
      const uint8_t *q = value, *end = value + len;
      uint64_t v;
      while (q < end)
        if (read_varint(&q, end, &v) != 0) return -1;
      return 0;
    }
    return -1;
  case PROTOBUF_C_TYPE_BOOL: /* protobuf-c takes a single bool with any wire type */
    if (wire == WT_LEN && repeated) { /* packed bools: one byte each, 0 or 1 */
      for (size_t i = 0; i < len; i++)
        if (value[i] > 1) return -1;
    }
    return 0;
  case PROTOBUF_C_TYPE_SFIXED32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
    if (wire == WT_32BIT) return 0;
    return wire == WT_LEN && repeated && len % 4 == 0 ? 0 : -1;
  case PROTOBUF_C_TYPE_SFIXED64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
    if (wire == WT_64BIT) return 0;
    return wire == WT_LEN && repeated && len % 8 == 0 ? 0 : -1;
  case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_BYTES:
    return wire == WT_LEN ? 0 : -1;
  case PROTOBUF_C_TYPE_MESSAGE:
    if (wire != WT_LEN) return -1;
    return validate_message(f->descriptor, sub, value, len, depth + 1);
  }
  return -1;
}

static int validate_message(const ProtobufCMessageDescriptor *d, const schema *s, const uint8_t *p, size_t n,
                            int depth) {
  if (depth > 32) return -1;
  const uint8_t *end = p + n;
  while (p < end) {
    uint32_t number, wire;
    if (read_tag(&p, end, &number, &wire) != 0) return -1;
    const uint8_t *value = NULL;
    size_t len = 0;
    if (skip_value(&p, end, wire, &value, &len) != 0) return -1;
    const ProtobufCFieldDescriptor *f;
    const schema *sub = NULL;
    if (s && number < FAST_FIELDS) {
      f = s->f[number];
      sub = s->sub[number];
    } else {
      f = s && s->complete ? NULL : protobuf_c_message_descriptor_get_field(d, number);
    }
    if (f && validate_field(f, sub, wire, value, len, depth) != 0) return -1;
  }
  return 0;
}

static const ProtobufCMessageDescriptor *const check_result_descriptors[5] = {
    NULL, &authz__v1__can_use_result__descriptor, &authz__v1__effective_permission_result__descriptor,
    &authz__v1__seat_type_result__descriptor, &authz__v1__capabilities_result__descriptor};

static const schema *check_result_schemas[5], *result_schemas[17];

static const ProtobufCMessageDescriptor *const result_descriptors[17] = {
    [10] = &authz__v1__can_use_result__descriptor,
    [11] = &authz__v1__effective_permission_result__descriptor,
    [12] = &authz__v1__seat_type_result__descriptor,
    [13] = &authz__v1__capabilities_result__descriptor,
    [14] = &authz__v1__batch_result__descriptor,
    [15] = &authz__v1__status_result__descriptor,
    [16] = &authz__v1__reload_result__descriptor};

static void schemas_init(void) {
  for (int i = 1; i < 5; i++) check_result_schemas[i] = schema_for(check_result_descriptors[i]);
  for (int i = 10; i < 17; i++) result_schemas[i] = schema_for(result_descriptors[i]);
}


/* BatchResult: counts the results and compares each one's kind with `expected`. */
static int scan_batch(const uint8_t *p, size_t n, const uint8_t *expected, uint32_t n_expected,
                      response_info *info) {
  const uint8_t *end = p + n;
  while (p < end) {
    uint32_t number, wire;
    if (read_tag(&p, end, &number, &wire) != 0) return -1;
    const uint8_t *value = NULL;
    size_t len = 0;
    if (skip_value(&p, end, wire, &value, &len) != 0) return -1;
    if (number != 1) continue; /* unknown field */
    if (wire != WT_LEN) return -1;
    /* One CheckResult: the last kind field wins, as in protobuf-c. */
    uint32_t kind = 0;
    const uint8_t *q = value, *qend = value + len;
    while (q < qend) {
      uint32_t num, wt;
      if (read_tag(&q, qend, &num, &wt) != 0) return -1;
      const uint8_t *sub = NULL;
      size_t sub_len = 0;
      if (skip_value(&q, qend, wt, &sub, &sub_len) != 0) return -1;
      if (num >= 1 && num <= 4) {
        if (wt != WT_LEN || validate_message(check_result_descriptors[num], check_result_schemas[num], sub, sub_len, 2) != 0) return -1;
        kind = num;
      }
    }
    if (info->n_results >= n_expected || expected == NULL || expected[info->n_results] != kind) info->kinds_ok = 0;
    info->n_results++;
  }
  return 0;
}

/* Scans an authz.v1.Response; 0 when protobuf-c would unpack it. For a batch, `expected`
 * holds the check kinds in request order (may be NULL). */
static int scan_response(const uint8_t *p, size_t n, const uint8_t *expected, uint32_t n_expected,
                         response_info *info) {
  const uint8_t *end = p + n;
  memset(info, 0, sizeof *info);
  while (p < end) {
    uint32_t number, wire;
    if (read_tag(&p, end, &number, &wire) != 0) return -1;
    uint64_t v;
    if (number == 1 || number == 3) {
      if (wire != WT_VARINT || read_varint(&p, end, &v) != 0) return -1;
      if (number == 1) info->call_id = v;
      continue;
    }
    const uint8_t *value = NULL;
    size_t len = 0;
    if (skip_value(&p, end, wire, &value, &len) != 0) return -1;
    if (number == 2) { /* RpcStatus; given twice, protobuf-c's merge keeps the last code */
      if (wire != WT_LEN) return -1;
      info->code = 0;
      const uint8_t *q = value, *qend = value + len;
      while (q < qend) {
        uint32_t num, wt;
        if (read_tag(&q, qend, &num, &wt) != 0) return -1;
        if (num == 1) {
          if (wt != WT_VARINT || read_varint(&q, qend, &v) != 0) return -1;
          info->code = (uint32_t)v;
        } else {
          if (skip_value(&q, qend, wt, NULL, NULL) != 0) return -1;
          if (num == 2 && wt != WT_LEN) return -1;
        }
      }
    } else if (number >= 10 && number <= 16) {
      if (wire != WT_LEN) return -1;
      /* A oneof: protobuf-c keeps the last member given, replacing (not merging) it. */
      info->result_case = number;
      info->n_results = 0;
      info->kinds_ok = 0;
      if (number == 14) {
        info->kinds_ok = 1;
        if (scan_batch(value, len, expected, n_expected, info) != 0) return -1;
      } else {
        if (validate_message(result_descriptors[number], result_schemas[number], value, len, 1) != 0) return -1;
      }
    }
    /* other field numbers: unknown, skipped */
  }
  if (info->result_case == 14 && info->n_results != n_expected) info->kinds_ok = 0;
  return 0;
}

/* --verify full: protobuf-c's unpack into a bump arena (no malloc per response). */
typedef struct arena {
  uint8_t *base;
  size_t used, cap;
  void **spill; /* allocations that did not fit */
  size_t n_spill, cap_spill;
} arena;

static void *arena_alloc(void *data, size_t size) {
  arena *a = data;
  size = (size + 15) & ~(size_t)15;
  if (a->used + size <= a->cap) {
    void *p = a->base + a->used;
    a->used += size;
    return p;
  }
  if (a->n_spill == a->cap_spill) {
    a->cap_spill = a->cap_spill ? 2 * a->cap_spill : 16;
    a->spill = realloc(a->spill, a->cap_spill * sizeof *a->spill);
    if (!a->spill) die("out of memory");
  }
  void *p = xmalloc(size);
  a->spill[a->n_spill++] = p;
  return p;
}

static void arena_free(void *data, void *p) {
  (void)data;
  (void)p;
}

static void arena_reset(arena *a) {
  for (size_t i = 0; i < a->n_spill; i++) free(a->spill[i]);
  a->n_spill = 0;
  a->used = 0;
}

/* Unpacks with protobuf-c and fills `info` like scan_response; -1 if unpack fails. */
static int unpack_response(arena *a, const uint8_t *p, size_t n, const uint8_t *expected, uint32_t n_expected,
                           response_info *info) {
  ProtobufCAllocator allocator = {.alloc = arena_alloc, .free = arena_free, .allocator_data = a};
  memset(info, 0, sizeof *info);
  Authz__V1__Response *r = authz__v1__response__unpack(&allocator, n, p);
  if (r == NULL) {
    arena_reset(a);
    return -1;
  }
  info->call_id = r->call_id;
  info->code = r->status ? r->status->code : 0;
  info->result_case = (uint32_t)r->result_case;
  if (r->result_case == AUTHZ__V1__RESPONSE__RESULT_BATCH_RESULT) {
    info->kinds_ok = 1;
    info->n_results = (uint32_t)r->batch_result->n_results;
    for (size_t i = 0; i < r->batch_result->n_results; i++)
      if (i >= n_expected || !expected || expected[i] != (uint8_t)r->batch_result->results[i]->kind_case)
        info->kinds_ok = 0;
    if (info->n_results != n_expected) info->kinds_ok = 0;
  }
  arena_reset(a);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Ids and the request pool                                                               */
/* ------------------------------------------------------------------------------------ */

typedef struct id_list {
  size_t n;
  char **ids;
  int64_t *pks; /* database pks, sorted (only with --db) */
  uint32_t *perm; /* popularity rank -> index */
  double *cdf;    /* Zipf cumulative weights by rank (NULL: uniform) */
} id_list;

typedef struct workload {
  id_list users, projects, assets;
  /* asset index -> projects (indices) the asset is attached to (only with --db) */
  uint32_t *asset_project_start; /* n_assets + 1 */
  uint32_t *asset_projects;
  size_t n_attachments;
} workload;

static void id_list_add(id_list *l, size_t *cap, const char *id, int64_t pk) {
  if (l->n == *cap) {
    *cap = *cap ? 2 * *cap : 1024;
    l->ids = realloc(l->ids, *cap * sizeof *l->ids);
    l->pks = realloc(l->pks, *cap * sizeof *l->pks);
    if (!l->ids || !l->pks) die("out of memory");
  }
  l->ids[l->n] = strdup(id);
  l->pks[l->n] = pk;
  l->n++;
}

static void synthetic_ids(id_list *l, size_t n, const char *format) {
  l->n = n;
  l->ids = xmalloc(n * sizeof *l->ids);
  l->pks = NULL;
  for (size_t i = 0; i < n; i++) {
    char buffer[32];
    snprintf(buffer, sizeof buffer, format, (int)i);
    l->ids[i] = strdup(buffer);
  }
}

static void load_table(sqlite3 *db, const char *sql, id_list *l) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die("%s: %s", sql, sqlite3_errmsg(db));
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    id_list_add(l, &cap, (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 0));
  if (rc != SQLITE_DONE) die("%s: %s", sql, sqlite3_errmsg(db));
  sqlite3_finalize(st);
}

static long find_pk(const id_list *l, int64_t pk) {
  size_t lo = 0, hi = l->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (l->pks[mid] < pk) lo = mid + 1;
    else hi = mid;
  }
  return lo < l->n && l->pks[lo] == pk ? (long)lo : -1;
}

static void load_database(workload *w, const char *path) {
  sqlite3 *db;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
    die("cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
  load_table(db, "SELECT pk, id FROM users ORDER BY pk", &w->users);
  load_table(db, "SELECT pk, id FROM projects ORDER BY pk", &w->projects);
  load_table(db, "SELECT pk, id FROM assets ORDER BY pk", &w->assets);

  /* project_assets joined to projects.pk / assets.pk, grouped by asset. */
  const char *sql =
      "SELECT pa.asset_pk, pa.project_pk FROM project_assets pa "
      "JOIN projects p ON p.pk = pa.project_pk JOIN assets a ON a.pk = pa.asset_pk "
      "ORDER BY pa.asset_pk, pa.project_pk";
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die("%s: %s", sql, sqlite3_errmsg(db));
  size_t cap = 1024, n = 0;
  uint32_t(*pairs)[2] = xmalloc(cap * sizeof *pairs);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    long a = find_pk(&w->assets, sqlite3_column_int64(st, 0));
    long p = find_pk(&w->projects, sqlite3_column_int64(st, 1));
    if (a < 0 || p < 0) continue;
    if (n == cap) {
      cap *= 2;
      pairs = realloc(pairs, cap * sizeof *pairs);
      if (!pairs) die("out of memory");
    }
    pairs[n][0] = (uint32_t)a;
    pairs[n][1] = (uint32_t)p;
    n++;
  }
  if (rc != SQLITE_DONE) die("%s: %s", sql, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  sqlite3_close(db);

  w->n_attachments = n;
  w->asset_project_start = xcalloc(w->assets.n + 1, sizeof(uint32_t));
  w->asset_projects = xmalloc(n * sizeof(uint32_t));
  for (size_t i = 0; i < n; i++) w->asset_project_start[pairs[i][0] + 1]++;
  for (size_t a = 0; a < w->assets.n; a++) w->asset_project_start[a + 1] += w->asset_project_start[a];
  for (size_t i = 0; i < n; i++) w->asset_projects[i] = pairs[i][1]; /* already sorted by asset */
  free(pairs);
  if (w->users.n == 0 || w->projects.n == 0) die("%s has no users or no projects", path);
}

/* A seeded random permutation (ranks -> indices) and the Zipf CDF over the ranks. */
static void prepare_draws(id_list *l, rng *r, double s) {
  l->perm = xmalloc((l->n ? l->n : 1) * sizeof *l->perm);
  for (size_t i = 0; i < l->n; i++) l->perm[i] = (uint32_t)i;
  for (size_t i = l->n; i > 1; i--) {
    size_t j = (size_t)rng_below(r, i);
    uint32_t t = l->perm[i - 1];
    l->perm[i - 1] = l->perm[j];
    l->perm[j] = t;
  }
  l->cdf = NULL;
  if (s > 0 && l->n > 1) {
    l->cdf = xmalloc(l->n * sizeof *l->cdf);
    double total = 0;
    for (size_t i = 0; i < l->n; i++) {
      total += pow((double)(i + 1), -s);
      l->cdf[i] = total;
    }
    for (size_t i = 0; i < l->n; i++) l->cdf[i] /= total;
  }
}

static size_t draw_index(const id_list *l, rng *r) {
  double u = rng_unit(r);
  size_t rank;
  if (!l->cdf) {
    rank = (size_t)(u * (double)l->n);
  } else {
    size_t lo = 0, hi = l->n - 1;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (l->cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    rank = lo;
  }
  if (rank >= l->n) rank = l->n - 1;
  return l->perm[rank];
}

static const char *draw(const id_list *l, rng *r) { return l->ids[draw_index(l, r)]; }

typedef struct pool {
  size_t n;
  uint8_t *bytes;        /* the payloads (Request without call_id) back to back */
  uint32_t *offset;      /* n + 1 */
  uint8_t *method;       /* expected result case per entry */
  uint8_t *kinds;        /* batch: n * batch check kinds (CheckResult kind numbers) */
  uint32_t checks;       /* checks per request */
  size_t max_frame;      /* the largest frame, call_id included */
  uint64_t count_by_kind[KIND_COUNT];
  uint64_t with_project, cu_total, cu_attached;
} pool;

static int draw_kind(rng *r) {
  int x = (int)rng_below(r, 100);
  for (int k = 0; k < KIND_COUNT; k++) {
    if (x < opt.mix[k]) return k;
    x -= opt.mix[k];
  }
  return KIND_EP;
}

/* Fills the structs of one check of kind k (ids point into the workload). */
typedef struct check_storage {
  Authz__V1__CanUse cu;
  Authz__V1__EffectivePermission ep;
  Authz__V1__SeatType st;
  Authz__V1__Capabilities cap;
  Authz__V1__Check check;
} check_storage;

static void fill_check(check_storage *s, int k, const workload *w, rng *r, pool *p) {
  switch (k) {
  case KIND_CU: {
    authz__v1__can_use__init(&s->cu);
    s->cu.user = (char *)draw(&w->users, r);
    size_t a = draw_index(&w->assets, r);
    s->cu.asset = w->assets.ids[a];
    p->cu_total++;
    if (rng_unit(r) < opt.cu_project) {
      p->with_project++;
      uint32_t lo = w->asset_project_start ? w->asset_project_start[a] : 0;
      uint32_t hi = w->asset_project_start ? w->asset_project_start[a + 1] : 0;
      if (hi > lo) {
        s->cu.project = w->projects.ids[w->asset_projects[lo + rng_below(r, hi - lo)]];
        p->cu_attached++;
      } else {
        s->cu.project = (char *)draw(&w->projects, r);
      }
    }
    break;
  }
  case KIND_EP:
    authz__v1__effective_permission__init(&s->ep);
    s->ep.user = (char *)draw(&w->users, r);
    s->ep.project = (char *)draw(&w->projects, r);
    break;
  case KIND_ST:
    authz__v1__seat_type__init(&s->st);
    s->st.user = (char *)draw(&w->users, r);
    break;
  default:
    authz__v1__capabilities__init(&s->cap);
    s->cap.user = (char *)draw(&w->users, r);
    break;
  }
  p->count_by_kind[k]++;
}

static void build_pool(pool *p, const workload *w, uint64_t seed) {
  rng r = {seed ^ 0x5851f42d4c957f2dull};
  uint32_t k_checks = opt.batch > 0 ? (uint32_t)opt.batch : 1;
  p->checks = k_checks;
  size_t n = (size_t)opt.pool;
  /* Keep the pool under ~64 MiB (~40 bytes per check). */
  size_t limit = (64u << 20) / (40u * k_checks + 16u);
  if (limit < 256) limit = 256;
  if (n > limit) n = limit;
  p->n = n;
  p->offset = xmalloc((n + 1) * sizeof *p->offset);
  p->method = xmalloc(n);
  p->kinds = opt.batch > 0 ? xmalloc(n * k_checks) : NULL;
  size_t cap = n * (32 + 40 * (size_t)k_checks), used = 0;
  p->bytes = xmalloc(cap);

  check_storage *storage = xcalloc(k_checks, sizeof *storage);
  Authz__V1__Check **checks = xcalloc(k_checks, sizeof *checks);
  for (size_t i = 0; i < n; i++) {
    Authz__V1__Request req = AUTHZ__V1__REQUEST__INIT;
    Authz__V1__Batch batch = AUTHZ__V1__BATCH__INIT;
    if (opt.batch > 0) {
      for (uint32_t c = 0; c < k_checks; c++) {
        check_storage *s = &storage[c];
        int k = draw_kind(&r);
        fill_check(s, k, w, &r, p);
        authz__v1__check__init(&s->check);
        switch (k) {
        case KIND_CU: s->check.kind_case = AUTHZ__V1__CHECK__KIND_CAN_USE; s->check.can_use = &s->cu; break;
        case KIND_EP: s->check.kind_case = AUTHZ__V1__CHECK__KIND_EFFECTIVE_PERMISSION; s->check.effective_permission = &s->ep; break;
        case KIND_ST: s->check.kind_case = AUTHZ__V1__CHECK__KIND_SEAT_TYPE; s->check.seat_type = &s->st; break;
        default: s->check.kind_case = AUTHZ__V1__CHECK__KIND_CAPABILITIES; s->check.capabilities = &s->cap; break;
        }
        checks[c] = &s->check;
        p->kinds[i * k_checks + c] = kind_check[k];
      }
      batch.n_checks = k_checks;
      batch.checks = checks;
      req.method_case = AUTHZ__V1__REQUEST__METHOD_BATCH;
      req.batch = &batch;
      p->method[i] = 14;
    } else {
      int k = draw_kind(&r);
      fill_check(&storage[0], k, w, &r, p);
      switch (k) {
      case KIND_CU: req.method_case = AUTHZ__V1__REQUEST__METHOD_CAN_USE; req.can_use = &storage[0].cu; break;
      case KIND_EP: req.method_case = AUTHZ__V1__REQUEST__METHOD_EFFECTIVE_PERMISSION; req.effective_permission = &storage[0].ep; break;
      case KIND_ST: req.method_case = AUTHZ__V1__REQUEST__METHOD_SEAT_TYPE; req.seat_type = &storage[0].st; break;
      default: req.method_case = AUTHZ__V1__REQUEST__METHOD_CAPABILITIES; req.capabilities = &storage[0].cap; break;
      }
      p->method[i] = kind_method[k];
    }
    size_t size = authz__v1__request__get_packed_size(&req); /* call_id 0: not packed */
    if (size + 11 > MAX_REQUEST_PAYLOAD) die("a request of %zu bytes is over the 64 KiB limit (use a smaller --batch)", size);
    while (used + size > cap) {
      cap *= 2;
      p->bytes = realloc(p->bytes, cap);
      if (!p->bytes) die("out of memory");
    }
    p->offset[i] = (uint32_t)used;
    authz__v1__request__pack(&req, p->bytes + used);
    used += size;
    if (HEADER_SIZE + 11 + size > p->max_frame) p->max_frame = HEADER_SIZE + 11 + size;
  }
  p->offset[n] = (uint32_t)used;
  free(storage);
  free(checks);
}

/* ------------------------------------------------------------------------------------ */
/* The run                                                                                */
/* ------------------------------------------------------------------------------------ */

enum {
  ERR_CONNECT,
  ERR_DISCONNECT,
  ERR_FRAME,      /* bad flag byte or oversized response frame */
  ERR_DECODE,     /* payload is not an authz.v1.Response */
  ERR_CALL_ID,    /* call_id of no call in flight */
  ERR_STATUS,     /* non-OK status */
  ERR_KIND,       /* result kind does not match the method (or no result) */
  ERR_BATCH,      /* batch results: wrong count or kinds */
  ERR_LOST,       /* calls in flight on a connection that broke */
  ERR_TIMEOUT,    /* calls still unanswered after --drain */
  ERR_VERIFIER,   /* --verify full: scanner and protobuf-c disagree */
  ERR_COUNT
};
static const char *const error_names[ERR_COUNT] = {"connect", "disconnect", "frame", "decode", "call_id", "status",
                                                   "kind", "batch", "lost", "timeout", "verifier"};

typedef struct slot {
  uint64_t call_id; /* 0: free */
  uint64_t t_send;  /* actual (closed loop) or intended (open loop) send time */
  uint32_t entry;   /* pool entry */
  uint32_t measured;
} slot;

typedef struct connection {
  int fd;
  int index;
  int alive;
  int want_out;
  uint64_t next_call_id;
  uint64_t oldest;
  uint32_t in_flight;
  uint32_t ring_mask;
  slot *ring;
  size_t pool_pos;
  uint8_t *wbuf;
  size_t wlen, woff, wcap;
  uint8_t *rbuf;
  size_t rlen, rcap;
  uint64_t quota;     /* --requests: measured sends left */
  uint64_t k;         /* open loop: next scheduled request */
  uint64_t late_next; /* open loop: requests < late_next already counted late (or not measured) */
  double phase_ns;    /* open loop: offset of this connection's schedule */
} connection;

typedef struct worker {
  int index;
  pthread_t thread;
  int epoll_fd;
  connection **conns;
  int n_conns;
  hdr_histogram hist;
  uint64_t errors[ERR_COUNT];
  uint64_t status_codes[17];
  uint64_t measured;    /* measured calls answered */
  uint64_t sent_measured;
  uint64_t late;        /* open loop: waited for a free slot in the window */
  uint64_t unsent;      /* open loop: due in the measured window but never sent */
  uint64_t lag_sum, lag_max, lag_count; /* open loop: actual - intended send time */
  uint64_t last_recv;   /* receive time of the last measured response */
  arena arena;
  _Atomic uint64_t progress_answered; /* all answers (warm-up included), for progress */
  _Atomic uint64_t progress_errors;
  _Atomic uint64_t progress_in_flight;
} worker;

static pool req_pool;
static uint64_t t_start, t_measure;
static _Atomic uint64_t t_end; /* UINT64_MAX with --requests until done */
static double interval_ns;     /* open loop: per connection */
static _Atomic int stop_flag;
static _Atomic int workers_done;

static void record_error(worker *w, int kind) {
  w->errors[kind]++;
  atomic_store_explicit(&w->progress_errors, atomic_load_explicit(&w->progress_errors, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

static void kill_connection(worker *w, connection *c, int kind) {
  if (!c->alive) return;
  record_error(w, kind);
  if (c->in_flight > 0) {
    w->errors[ERR_LOST] += c->in_flight;
  }
  c->in_flight = 0;
  close(c->fd);
  c->alive = 0;
}

static inline void update_interest(worker *w, connection *c, int want_out) {
  if (c->want_out == want_out) return;
  struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = want_out;
}

static void flush(worker *w, connection *c) {
  if (c->woff == c->wlen) return;
  ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) n = 0;
    else {
      kill_connection(w, c, ERR_DISCONNECT);
      return;
    }
  }
  c->woff += (size_t)n;
  if (c->woff == c->wlen) c->woff = c->wlen = 0;
  update_interest(w, c, c->woff != c->wlen);
}

/* Appends request `entry` with the next call_id to the write buffer and the ring. */
static inline void enqueue(connection *c, uint64_t t_send, int measured) {
  size_t e = c->pool_pos;
  if (++c->pool_pos == req_pool.n) c->pool_pos = 0;
  const uint8_t *body = req_pool.bytes + req_pool.offset[e];
  size_t body_len = req_pool.offset[e + 1] - req_pool.offset[e];
  uint64_t id = c->next_call_id++;
  size_t payload = 1 + varint_size(id) + body_len;
  if (c->wcap - c->wlen < HEADER_SIZE + payload) { /* compact: the window bounds what is unwritten */
    memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
    c->wlen -= c->woff;
    c->woff = 0;
  }
  uint8_t *p = c->wbuf + c->wlen;
  p[0] = 0;
  p[1] = (uint8_t)(payload >> 24);
  p[2] = (uint8_t)(payload >> 16);
  p[3] = (uint8_t)(payload >> 8);
  p[4] = (uint8_t)payload;
  p[5] = 0x08; /* field 1 (call_id), varint */
  p = put_varint(p + 6, id);
  memcpy(p, body, body_len);
  c->wlen = (size_t)(p + body_len - c->wbuf);
  slot *s = &c->ring[id & c->ring_mask];
  s->call_id = id;
  s->t_send = t_send;
  s->entry = (uint32_t)e;
  s->measured = (uint32_t)measured;
  c->in_flight++;
}

static inline int slot_free(const connection *c) {
  return c->in_flight < (uint32_t)opt.depth && c->ring[c->next_call_id & c->ring_mask].call_id == 0;
}

/* Closed loop: fill the window. Returns 1 while the connection still has sending to do. */
static int fill_closed(worker *w, connection *c, uint64_t now, uint64_t end) {
  if (now >= end) return 0;
  int measuring = now >= t_measure;
  if (opt.requests && measuring && c->quota == 0) return 0;
  while (slot_free(c)) {
    int measured = measuring;
    if (opt.requests && measuring) {
      if (c->quota == 0) break;
      c->quota--;
    }
    if (measured) w->sent_measured++;
    enqueue(c, now, measured);
  }
  return 1;
}

static inline uint64_t intended(const connection *c, uint64_t k) {
  return t_start + (uint64_t)(c->phase_ns + (double)k * interval_ns);
}

/* First k whose intended time is >= t. */
static uint64_t first_k_at(const connection *c, uint64_t t) {
  if (t <= t_start) return 0;
  double x = ((double)(t - t_start) - c->phase_ns) / interval_ns;
  if (x <= 0) return 0;
  uint64_t k = (uint64_t)ceil(x);
  while (k > 0 && intended(c, k - 1) >= t) k--;
  while (intended(c, k) < t) k++;
  return k;
}

/* Open loop: send what is due. Returns the next intended time (UINT64_MAX: no more). */
static uint64_t fill_open(worker *w, connection *c, uint64_t now, uint64_t end) {
  for (;;) {
    uint64_t due = intended(c, c->k);
    if (due >= end) return UINT64_MAX;
    if (opt.requests && due >= t_measure && c->quota == 0) return UINT64_MAX;
    if (due > now) return due;
    if (!slot_free(c)) {
      /* The window is full: count every measured request due by now as late, once. */
      uint64_t last_due = first_k_at(c, now + 1); /* requests < last_due are due */
      if (end != UINT64_MAX) {
        uint64_t k_end = first_k_at(c, end);
        if (last_due > k_end) last_due = k_end;
      }
      uint64_t from = c->k > c->late_next ? c->k : c->late_next;
      if (last_due > from) {
        w->late += last_due - from;
        c->late_next = last_due;
      }
      return UINT64_MAX - 1; /* wait for a response */
    }
    int measured = due >= t_measure;
    if (measured) {
      if (opt.requests) c->quota--;
      w->sent_measured++;
      uint64_t lag = now - due;
      w->lag_sum += lag;
      w->lag_count++;
      if (lag > w->lag_max) w->lag_max = lag;
    }
    enqueue(c, due, measured);
    c->k++;
  }
}

static void handle_response(worker *w, connection *c, const uint8_t *payload, size_t len, uint64_t now) {
  /* Find the call this answers: the oldest in flight for the echo (it answers call_id 1
   * to everything), else the ring slot of the call_id. The call_id is the first field of
   * any response protobuf-c or the sidecar writes, so peek at it to know the expected
   * batch kinds before the single scan; the scan's own call_id is checked afterwards. */
  slot *s = NULL;
  if (opt.expect_fixed) {
    if (c->in_flight > 0) s = &c->ring[c->oldest & c->ring_mask];
  } else if (len > 1 && payload[0] == 0x08) {
    const uint8_t *q = payload + 1;
    uint64_t id;
    if (read_varint(&q, payload + len, &id) == 0 && id != 0 && c->ring[id & c->ring_mask].call_id == id)
      s = &c->ring[id & c->ring_mask];
  }
  const uint8_t *expected = NULL;
  uint32_t n_expected = 0;
  if (s && req_pool.kinds) {
    expected = req_pool.kinds + (size_t)s->entry * req_pool.checks;
    n_expected = req_pool.checks;
  }
  response_info info;
  int rc = scan_response(payload, len, expected, n_expected, &info);
  if (!opt.expect_fixed && rc == 0 && (s == NULL || s->call_id != info.call_id)) {
    slot *candidate = &c->ring[info.call_id & c->ring_mask];
    if (info.call_id != 0 && candidate->call_id == info.call_id) {
      s = candidate;
    } else {
      record_error(w, ERR_CALL_ID);
      if (c->in_flight == 0) return;
      s = &c->ring[c->oldest & c->ring_mask]; /* keep the window moving */
    }
    if (req_pool.kinds) {
      expected = req_pool.kinds + (size_t)s->entry * req_pool.checks;
      n_expected = req_pool.checks;
      rc = scan_response(payload, len, expected, n_expected, &info);
    }
  }
  if (s == NULL) { /* undecodable, or nothing in flight */
    if (c->in_flight == 0) {
      record_error(w, rc != 0 ? ERR_DECODE : ERR_CALL_ID);
      return;
    }
    s = &c->ring[c->oldest & c->ring_mask]; /* charge it to the oldest call */
  }
  if (opt.verify_full) {
    response_info full;
    int frc = unpack_response(&w->arena, payload, len, expected, n_expected, &full);
    if (frc != rc || (frc == 0 && (full.call_id != info.call_id || full.code != info.code ||
                                   full.result_case != info.result_case ||
                                   (full.result_case == 14 &&
                                    (full.n_results != info.n_results || full.kinds_ok != info.kinds_ok)))))
      record_error(w, ERR_VERIFIER);
  }
  if (rc != 0) {
    record_error(w, ERR_DECODE);
  } else if (info.code != 0) {
    record_error(w, ERR_STATUS);
    w->status_codes[info.code < 16 ? info.code : 16]++;
  } else if (!opt.expect_fixed) {
    if (info.result_case != req_pool.method[s->entry]) record_error(w, ERR_KIND);
    else if (info.result_case == 14 && !info.kinds_ok) record_error(w, ERR_BATCH);
  }
  if (s->measured) {
    hdr_record(&w->hist, now - s->t_send);
    w->measured++;
    w->last_recv = now;
  }
  s->call_id = 0;
  c->in_flight--;
  while (c->oldest < c->next_call_id && c->ring[c->oldest & c->ring_mask].call_id != c->oldest) c->oldest++;
}

static void read_connection(worker *w, connection *c, uint64_t now) {
  if (c->rcap - c->rlen == 0) { /* a frame larger than the buffer: grow */
    size_t cap = c->rcap * 2;
    if (cap > HEADER_SIZE + MAX_RESPONSE_PAYLOAD) cap = HEADER_SIZE + MAX_RESPONSE_PAYLOAD;
    c->rbuf = realloc(c->rbuf, cap);
    if (!c->rbuf) die("out of memory");
    c->rcap = cap;
  }
  ssize_t n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    kill_connection(w, c, ERR_DISCONNECT);
    return;
  }
  c->rlen += (size_t)n;
  size_t p = 0;
  uint64_t answered = 0;
  while (c->rlen - p >= HEADER_SIZE) {
    const uint8_t *h = c->rbuf + p;
    uint32_t len = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | (uint32_t)h[4];
    if (h[0] != 0 || len > MAX_RESPONSE_PAYLOAD) {
      kill_connection(w, c, ERR_FRAME);
      return;
    }
    if (c->rlen - p - HEADER_SIZE < len) {
      if ((size_t)len + HEADER_SIZE > c->rcap) { /* make room for this frame */
        size_t cap = c->rcap;
        while (cap < (size_t)len + HEADER_SIZE) cap *= 2;
        c->rbuf = realloc(c->rbuf, cap);
        if (!c->rbuf) die("out of memory");
        c->rcap = cap;
      }
      break;
    }
    handle_response(w, c, c->rbuf + p + HEADER_SIZE, len, now);
    answered++;
    p += HEADER_SIZE + len;
  }
  if (p > 0) {
    memmove(c->rbuf, c->rbuf + p, c->rlen - p);
    c->rlen -= p;
  }
  atomic_store_explicit(&w->progress_answered,
                        atomic_load_explicit(&w->progress_answered, memory_order_relaxed) + answered,
                        memory_order_relaxed);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  if (opt.rate > 0) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* precise open-loop wake-ups */
  struct epoll_event events[MAX_EVENTS];
  uint64_t drain_deadline = 0;
  for (;;) {
    uint64_t now = now_ns();
    uint64_t end = atomic_load_explicit(&t_end, memory_order_relaxed);
    int sending = 0;
    uint64_t next_due = UINT64_MAX;
    uint32_t in_flight = 0;
    for (int i = 0; i < w->n_conns; i++) {
      connection *c = w->conns[i];
      if (!c->alive) continue;
      /* Each connection's send time is taken just before its write. */
      if (i > 0 && (opt.rate > 0 || slot_free(c))) now = now_ns();
      if (opt.rate > 0) {
        uint64_t due = fill_open(w, c, now, end);
        if (due != UINT64_MAX) sending = 1;
        if (due < next_due) next_due = due;
      } else {
        sending |= fill_closed(w, c, now, end);
      }
      flush(w, c);
      if (c->alive) in_flight += c->in_flight;
    }
    atomic_store_explicit(&w->progress_in_flight, in_flight, memory_order_relaxed);
    if (!sending) {
      if (in_flight == 0) break;
      if (drain_deadline == 0) drain_deadline = (end < now ? now : end) + (uint64_t)(opt.drain * 1e9);
      if (now >= drain_deadline) {
        for (int i = 0; i < w->n_conns; i++)
          if (w->conns[i]->alive && w->conns[i]->in_flight) w->errors[ERR_TIMEOUT] += w->conns[i]->in_flight;
        break;
      }
    }
    /* Sleep until an event, the next scheduled send, the end, or 100 ms at most. */
    uint64_t wake = now + 100000000ull;
    if (next_due < UINT64_MAX - 1 && next_due < wake) {
      wake = next_due;
      uint64_t earliest = now + (uint64_t)(opt.quantum_us * 1000.0);
      if (wake < earliest) wake = earliest;
    }
    if (sending && end < wake) wake = end;
    if (!sending && drain_deadline < wake) wake = drain_deadline;
    uint64_t wait = wake > now ? wake - now : 0;
    struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000ull), .tv_nsec = (long)(wait % 1000000000ull)};
    int n = epoll_pwait2(w->epoll_fd, events, MAX_EVENTS, &ts, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_pwait2: %s", strerror(errno));
    }
    if (n == 0) continue;
    for (int e = 0; e < n; e++) {
      connection *c = events[e].data.ptr;
      if (!c->alive) continue;
      /* The receive time of everything one read() returns: just before the read. */
      if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_connection(w, c, now_ns());
      if (c->alive && (events[e].events & EPOLLOUT)) flush(w, c);
    }
  }
  /* Open loop: what was due in the measured window but never sent. */
  if (opt.rate > 0 && !opt.requests) {
    uint64_t end = atomic_load_explicit(&t_end, memory_order_relaxed);
    for (int i = 0; i < w->n_conns; i++) {
      connection *c = w->conns[i];
      uint64_t k_end = first_k_at(c, end), k_meas = first_k_at(c, t_measure);
      uint64_t from = c->k > k_meas ? c->k : k_meas;
      if (k_end > from) w->unsent += k_end - from;
    }
  }
  atomic_fetch_add(&workers_done, 1);
  return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* CPU accounting                                                                         */
/* ------------------------------------------------------------------------------------ */

/* utime + stime of a process in microseconds (all its threads), or -1. */
static double process_cpu_us(long pid) {
  char path[64], buffer[4096];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buffer, sizeof buffer - 1);
  close(fd);
  if (n <= 0) return -1;
  buffer[n] = '\0';
  char *p = strrchr(buffer, ')');
  if (!p) return -1;
  /* Fields after the command: 3 state ... 14 utime 15 stime. */
  unsigned long long utime = 0, stime = 0;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1;
  return (double)(utime + stime) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_us(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec * 1e6 + (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec * 1e6 +
         (double)u.ru_stime.tv_usec;
}

/* ------------------------------------------------------------------------------------ */
/* Self-test: the scanner against protobuf-c                                              */
/* ------------------------------------------------------------------------------------ */

static size_t random_response(rng *r, uint8_t *out, uint8_t *kinds, uint32_t *n_kinds) {
  Authz__V1__Response resp = AUTHZ__V1__RESPONSE__INIT;
  Authz__V1__RpcStatus status = AUTHZ__V1__RPC_STATUS__INIT;
  Authz__V1__CanUseResult cu = AUTHZ__V1__CAN_USE_RESULT__INIT;
  Authz__V1__EffectivePermissionResult ep = AUTHZ__V1__EFFECTIVE_PERMISSION_RESULT__INIT;
  Authz__V1__SeatTypeResult st = AUTHZ__V1__SEAT_TYPE_RESULT__INIT;
  Authz__V1__CapabilitiesResult cap = AUTHZ__V1__CAPABILITIES_RESULT__INIT;
  Authz__V1__BatchResult batch = AUTHZ__V1__BATCH_RESULT__INIT;
  Authz__V1__StatusResult sr = AUTHZ__V1__STATUS_RESULT__INIT;
  Authz__V1__Step step = AUTHZ__V1__STEP__INIT, *steps[3] = {&step, &step, &step};
  Authz__V1__Capability caps[5] = {1, 2, 3, 7, 14};
  Authz__V1__CheckResult results[8], *result_ptrs[8];
  resp.call_id = rng_below(r, 4) == 0 ? rng_next(r) : rng_below(r, 1000);
  resp.snapshot_version = rng_below(r, 100);
  if (rng_below(r, 2)) {
    resp.status = &status;
    status.code = rng_below(r, 4) == 0 ? (uint32_t)rng_below(r, 15) : 0;
    if (status.code) status.message = "something went wrong";
  }
  cu.access = 3; cu.reason = 17; cu.allowed = 1;
  ep.level = 5; ep.reason = 5; step.reason = 5; step.level = 5; step.subject = "g-00001";
  if (rng_below(r, 3) == 0) { ep.n_steps = 3; ep.steps = steps; }
  st.seat = 2; st.paid = 1; st.role = 4; st.role_source = 3;
  cap.n_capabilities = 5; cap.capabilities = caps;
  sr.users = 12345; sr.last_load_error = "none";
  *n_kinds = 0;
  switch (rng_below(r, 8)) {
  case 0: break;
  case 1: resp.result_case = 10; resp.can_use_result = &cu; break;
  case 2: resp.result_case = 11; resp.effective_permission_result = &ep; break;
  case 3: resp.result_case = 12; resp.seat_type_result = &st; break;
  case 4: resp.result_case = 13; resp.capabilities_result = &cap; break;
  case 5: resp.result_case = 15; resp.status_result = &sr; break;
  default: {
    uint32_t n = (uint32_t)rng_below(r, 9);
    for (uint32_t i = 0; i < n; i++) {
      authz__v1__check_result__init(&results[i]);
      uint32_t k = 1 + (uint32_t)rng_below(r, 4);
      results[i].kind_case = k;
      if (k == 1) results[i].can_use_result = &cu;
      if (k == 2) results[i].effective_permission_result = &ep;
      if (k == 3) results[i].seat_type_result = &st;
      if (k == 4) results[i].capabilities_result = &cap;
      result_ptrs[i] = &results[i];
      kinds[i] = (uint8_t)k;
    }
    *n_kinds = n;
    batch.n_results = n;
    batch.results = result_ptrs;
    resp.result_case = 14;
    resp.batch_result = &batch;
  }
  }
  return authz__v1__response__pack(&resp, out);
}

static int self_test(void) {
  rng r = {12345};
  arena a = {.base = xmalloc(1 << 20), .cap = 1 << 20};
  uint8_t buffer[4096], mutated[4200];
  uint8_t kinds[16];
  uint64_t valid = 0, damaged = 0, rejected = 0, disagreements = 0;
  for (int iter = 0; iter < 600000; iter++) {
    uint32_t n_kinds;
    size_t n = random_response(&r, buffer, kinds, &n_kinds);
    if (iter % 3 == 2) { /* two messages back to back: protobuf's merge (fields given twice) */
      uint8_t second_kinds[16];
      uint32_t n_second;
      n += random_response(&r, buffer + n, second_kinds, &n_second);
      if (n_second) {
        memcpy(kinds, second_kinds, sizeof kinds);
        n_kinds = n_second;
      }
    }
    const uint8_t *p = buffer;
    size_t len = n;
    int damage = iter % 2;
    if (damage) { /* flip, insert, delete or truncate bytes */
      memcpy(mutated, buffer, n);
      len = n;
      int edits = 1 + (int)rng_below(&r, 3);
      for (int e = 0; e < edits; e++) {
        size_t at = len ? (size_t)rng_below(&r, len) : 0;
        switch (rng_below(&r, 4)) {
        case 0: if (len) mutated[at] ^= (uint8_t)(1u << rng_below(&r, 8)); break;
        case 1: if (len) mutated[at] = (uint8_t)rng_next(&r); break;
        case 2: if (len + 1 < sizeof mutated) { memmove(mutated + at + 1, mutated + at, len - at); mutated[at] = (uint8_t)rng_next(&r); len++; } break;
        default: len = at; break;
        }
      }
      p = mutated;
      damaged++;
    } else {
      valid++;
    }
    /* Sometimes expect other kinds than the real ones. */
    uint8_t expected[16];
    memcpy(expected, kinds, sizeof kinds);
    uint32_t n_expected = n_kinds;
    if (rng_below(&r, 4) == 0 && n_expected) expected[rng_below(&r, n_expected)] ^= 1;
    if (rng_below(&r, 8) == 0) n_expected = (uint32_t)rng_below(&r, 9);
    response_info fast, full;
    int frc = scan_response(p, len, expected, n_expected, &fast);
    int urc = unpack_response(&a, p, len, expected, n_expected, &full);
    int same = frc == urc && (frc != 0 || (fast.call_id == full.call_id && fast.code == full.code &&
                                            fast.result_case == full.result_case &&
                                            (fast.result_case != 14 || (fast.n_results == full.n_results &&
                                                                        fast.kinds_ok == full.kinds_ok))));
    if (urc != 0) rejected++;
    if (!same) {
      if (disagreements < 10) {
        fprintf(stderr, "self-test: disagreement (%s input, scanner %d, protobuf-c %d):", damage ? "damaged" : "valid",
                frc, urc);
        for (size_t i = 0; i < len; i++) fprintf(stderr, " %02x", p[i]);
        fprintf(stderr, "\n");
      }
      disagreements++;
    }
  }
  printf("authz-loadgen self-test: %llu valid and %llu damaged responses (%llu rejected by protobuf-c), "
         "%llu disagreement(s) between the scanner and protobuf-c\n",
         (unsigned long long)valid, (unsigned long long)damaged, (unsigned long long)rejected,
         (unsigned long long)disagreements);
  return disagreements ? 1 : 0;
}

/* ------------------------------------------------------------------------------------ */
/* Reporting                                                                              */
/* ------------------------------------------------------------------------------------ */

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
    else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
    else fputc(ch, f);
  }
  fputc('"', f);
}

static void on_signal(int sig) {
  (void)sig;
  atomic_store(&stop_flag, 1);
}

int main(int argc, char **argv) {
  parse_options(argc, argv);
  schemas_init();
  if (opt.self_test) return self_test();

  /* Ids. */
  workload wl;
  memset(&wl, 0, sizeof wl);
  if (opt.db) {
    load_database(&wl, opt.db);
  } else {
    synthetic_ids(&wl.users, (size_t)opt.users, "u-%06d");
    synthetic_ids(&wl.projects, (size_t)opt.projects, "p-%06d");
    synthetic_ids(&wl.assets, (size_t)opt.assets, "a-%04d");
  }
  if (wl.assets.n == 0 && opt.mix[KIND_CU] > 0) die("CanUse in the mix but no assets");
  rng seed_rng = {opt.seed};
  prepare_draws(&wl.users, &seed_rng, opt.zipf);
  prepare_draws(&wl.projects, &seed_rng, opt.zipf);
  prepare_draws(&wl.assets, &seed_rng, opt.zipf);
  build_pool(&req_pool, &wl, rng_next(&seed_rng));

  /* Connections, spread over the workers (connection c on worker c % T). */
  int T = opt.threads, C = opt.connections;
  worker *workers = xcalloc((size_t)T, sizeof *workers);
  for (int t = 0; t < T; t++) {
    workers[t].index = t;
    workers[t].conns = xcalloc((size_t)C / (size_t)T + 1, sizeof(connection *));
    workers[t].epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (workers[t].epoll_fd < 0) die("epoll_create1: %s", strerror(errno));
    if (hdr_init(&workers[t].hist) != 0) die("out of memory");
    if (opt.verify_full) {
      workers[t].arena.cap = 1 << 20;
      workers[t].arena.base = xmalloc(workers[t].arena.cap);
    }
  }
  uint32_t ring_size = 1;
  while (ring_size < (uint32_t)opt.depth) ring_size *= 2;
  size_t rcap = (size_t)opt.depth * (32 + 16 * (size_t)req_pool.checks) * 2;
  if (rcap < 16384) rcap = 16384;
  if (rcap > 262144) rcap = 262144;
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  if (strlen(opt.socket_path) >= sizeof address.sun_path) die("socket path too long");
  strcpy(address.sun_path, opt.socket_path);
  int connect_errors = 0, first_errno = 0;
  for (int i = 0; i < C; i++) {
    worker *w = &workers[i % T];
    connection *c = xcalloc(1, sizeof *c);
    c->index = i;
    c->next_call_id = 1;
    c->oldest = 1;
    c->ring_mask = ring_size - 1;
    c->ring = xcalloc(ring_size, sizeof *c->ring);
    c->pool_pos = (size_t)((uint64_t)i * req_pool.n / (uint64_t)C);
    c->wcap = (size_t)opt.depth * req_pool.max_frame;
    c->wbuf = xmalloc(c->wcap);
    c->rcap = rcap;
    c->rbuf = xmalloc(c->rcap);
    if (opt.requests) c->quota = opt.requests / (uint64_t)C + ((uint64_t)i < opt.requests % (uint64_t)C);
    w->conns[w->n_conns++] = c;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket: %s", strerror(errno));
    if (connect(c->fd, (const struct sockaddr *)&address, sizeof address) != 0) {
      if (!first_errno) first_errno = errno;
      connect_errors++;
      w->errors[ERR_CONNECT]++;
      close(c->fd);
      c->fd = -1;
      continue;
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));
    c->alive = 1;
  }
  if (connect_errors)
    fprintf(stderr, "authz-loadgen: %d of %d connections failed: %s: %s\n", connect_errors, C, opt.socket_path,
            strerror(first_errno));
  if (connect_errors == C) return 1;

  /* Timing. */
  if (opt.rate > 0) {
    interval_ns = 1e9 * (double)C / opt.rate;
    for (int t = 0; t < T; t++)
      for (int i = 0; i < workers[t].n_conns; i++)
        workers[t].conns[i]->phase_ns = (double)workers[t].conns[i]->index * 1e9 / opt.rate;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);

  t_start = now_ns() + 1000000; /* 1 ms from now, so every worker is ready */
  t_measure = t_start + (uint64_t)(opt.warmup * 1e9);
  uint64_t planned_end = opt.requests ? UINT64_MAX : t_measure + (uint64_t)(opt.duration * 1e9);
  atomic_store(&t_end, planned_end);
  if (opt.rate > 0) /* `late` counts measured requests only */
    for (int t = 0; t < T; t++)
      for (int i = 0; i < workers[t].n_conns; i++)
        workers[t].conns[i]->late_next = first_k_at(workers[t].conns[i], t_measure);
  pthread_sigmask(SIG_BLOCK, &block, &old); /* workers do not take the signals */
  for (int t = 0; t < T; t++)
    if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0) die("pthread_create");
  pthread_sigmask(SIG_SETMASK, &old, NULL);

  /* Progress, CPU samples at the start and the end of the measured interval. */
  double server_cpu0 = -1, server_cpu1 = -1, self_cpu0 = 0, self_cpu1 = 0;
  int sampled_start = 0, sampled_end = 0;
  uint64_t cpu_t0 = 0, cpu_t1 = 0;
  uint64_t next_progress = t_start + 1000000000ull, last_answered = 0, last_progress_t = t_start;
  for (;;) {
    uint64_t now = now_ns();
    uint64_t end = atomic_load(&t_end);
    if (atomic_load(&stop_flag) && end > now) {
      atomic_store(&t_end, now);
      end = now;
    }
    int done = atomic_load(&workers_done) == T;
    if (done && end > now) { /* every connection broke before the end */
      atomic_store(&t_end, now);
      end = now;
    }
    if (!sampled_start && (now >= t_measure || done)) {
      if (opt.server_pid) server_cpu0 = process_cpu_us(opt.server_pid);
      self_cpu0 = self_cpu_us();
      cpu_t0 = now;
      sampled_start = 1;
    }
    if (sampled_start && !sampled_end && (now >= end || done)) {
      if (opt.server_pid) server_cpu1 = process_cpu_us(opt.server_pid);
      self_cpu1 = self_cpu_us();
      cpu_t1 = now;
      sampled_end = 1;
    }
    if (done) break;
    if (!opt.quiet && now >= next_progress) {
      uint64_t answered = 0, errors = 0, in_flight = 0;
      for (int t = 0; t < T; t++) {
        answered += atomic_load_explicit(&workers[t].progress_answered, memory_order_relaxed);
        errors += atomic_load_explicit(&workers[t].progress_errors, memory_order_relaxed);
        in_flight += atomic_load_explicit(&workers[t].progress_in_flight, memory_order_relaxed);
      }
      double dt = (double)(now - last_progress_t) / 1e9;
      fprintf(stderr, "[%6.1fs] %-8s %10.0f calls/s %12.0f checks/s  in flight %6llu  errors %llu\n",
              (double)(now - t_start) / 1e9,
              last_progress_t < t_measure ? "warm-up" : last_progress_t < end ? "measure" : "drain",
              (double)(answered - last_answered) / dt, (double)(answered - last_answered) * req_pool.checks / dt,
              (unsigned long long)in_flight, (unsigned long long)errors);
      last_answered = answered;
      last_progress_t = now;
    }
    if (now >= next_progress) next_progress += 1000000000ull * (1 + (now - next_progress) / 1000000000ull);
    uint64_t wake = next_progress;
    if (!sampled_start && t_measure < wake) wake = t_measure;
    if (sampled_start && !sampled_end && end < wake) wake = end;
    /* --requests, an interrupted run, or the drain: poll for the workers' end. */
    if ((opt.requests || atomic_load(&stop_flag) || sampled_end) && now + 10000000ull < wake) wake = now + 10000000ull;
    sleep_until(wake);
  }
  for (int t = 0; t < T; t++) pthread_join(workers[t].thread, NULL);

  /* Merge. */
  hdr_histogram hist;
  if (hdr_init(&hist) != 0) die("out of memory");
  uint64_t errors[ERR_COUNT] = {0}, codes[17] = {0}, measured = 0, sent_measured = 0, late = 0, unsent = 0;
  uint64_t lag_sum = 0, lag_max = 0, lag_count = 0, last_recv = 0;
  for (int t = 0; t < T; t++) {
    worker *w = &workers[t];
    hdr_merge(&hist, &w->hist);
    for (int e = 0; e < ERR_COUNT; e++) errors[e] += w->errors[e];
    for (int s = 0; s < 17; s++) codes[s] += w->status_codes[s];
    measured += w->measured;
    sent_measured += w->sent_measured;
    late += w->late;
    unsent += w->unsent;
    lag_sum += w->lag_sum;
    lag_count += w->lag_count;
    if (w->lag_max > lag_max) lag_max = w->lag_max;
    if (w->last_recv > last_recv) last_recv = w->last_recv;
  }
  uint64_t total_errors = 0;
  for (int e = 0; e < ERR_COUNT; e++) total_errors += errors[e];

  /* The measured interval: [t_measure, end) for a duration; until the last measured
   * answer for --requests (or an interrupted run). */
  uint64_t end = atomic_load(&t_end);
  double seconds;
  if (opt.requests) seconds = last_recv > t_measure ? (double)(last_recv - t_measure) / 1e9 : 0;
  else seconds = end > t_measure ? (double)(end - t_measure) / 1e9 : 0;
  double calls_per_s = seconds > 0 ? (double)measured / seconds : 0;
  double checks_per_s = calls_per_s * req_pool.checks;
  double cpu_seconds = (double)(cpu_t1 - cpu_t0) / 1e9;
  double server_cpu = server_cpu0 >= 0 && server_cpu1 >= 0 ? server_cpu1 - server_cpu0 : -1;
  double self_cpu = self_cpu1 - self_cpu0;
  /* CPU per call: over the calls answered in the CPU window (= the measured calls). */
  double per_call = measured ? 1.0 / (double)measured : 0;
  double us = 1e-3;
  double p50 = (double)hdr_value_at_percentile(&hist, 50) * us, p90 = (double)hdr_value_at_percentile(&hist, 90) * us,
         p99 = (double)hdr_value_at_percentile(&hist, 99) * us, p999 = (double)hdr_value_at_percentile(&hist, 99.9) * us,
         pmax = (double)hist.max * us, mean = hdr_mean(&hist) * us, pmin = hist.total ? (double)hist.min * us : 0;

  /* Text summary. */
  printf("authz-loadgen%s%s\n", opt.label ? ": " : "", opt.label ? opt.label : "");
  printf("  target      %s, %d connection(s) x depth %d, %d thread(s), %s", opt.socket_path, C, opt.depth, T,
         opt.rate > 0 ? "open loop" : "closed loop");
  if (opt.rate > 0) printf(" at %.0f calls/s", opt.rate);
  printf("%s\n", opt.expect_fixed ? ", expect-fixed (echo)" : "");
  printf("  workload    mix ep=%d cu=%d st=%d cap=%d, %s%u check(s)/call; ids: %s (%zu users, %zu projects, %zu assets), "
         "zipf %.2f, seed %llu, pool %zu\n",
         opt.mix[KIND_EP], opt.mix[KIND_CU], opt.mix[KIND_ST], opt.mix[KIND_CAP], opt.batch ? "batch of " : "",
         req_pool.checks, opt.db ? opt.db : "synthetic", wl.users.n, wl.projects.n, wl.assets.n, opt.zipf,
         (unsigned long long)opt.seed, req_pool.n);
  if (req_pool.cu_total)
    printf("  can_use     %.0f%% of the pool's CanUse checks name a project, %.0f%% one their asset is attached to\n",
           100.0 * (double)req_pool.with_project / (double)req_pool.cu_total,
           100.0 * (double)req_pool.cu_attached / (double)req_pool.cu_total);
  printf("  measured    %.3f s (after %.1f s warm-up): %llu calls answered, %llu checks\n", seconds, opt.warmup,
         (unsigned long long)measured, (unsigned long long)(measured * req_pool.checks));
  printf("  throughput  %.0f calls/s, %.0f checks/s\n", calls_per_s, checks_per_s);
  printf("  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f  (min %.1f)%s\n", p50, p90, p99,
         p999, pmax, mean, pmin, opt.rate > 0 ? "  from the intended send times" : "");
  if (opt.rate > 0)
    printf("  open loop   late (window of %d full) %llu, unsent %llu, send lag mean %.1f us max %.1f us\n", opt.depth,
           (unsigned long long)late, (unsigned long long)unsent, lag_count ? (double)lag_sum / lag_count * us : 0,
           (double)lag_max * us);
  printf("  cpu         loadgen %.2f us/call", self_cpu * per_call);
  if (opt.batch) printf(" (%.3f us/check)", self_cpu * per_call / req_pool.checks);
  printf(", %.0f%% of a core", cpu_seconds > 0 ? self_cpu / 1e4 / cpu_seconds : 0);
  if (server_cpu >= 0) {
    printf("; server %.2f us/call", server_cpu * per_call);
    if (opt.batch) printf(" (%.3f us/check)", server_cpu * per_call / req_pool.checks);
    printf(", %.0f%% of a core", cpu_seconds > 0 ? server_cpu / 1e4 / cpu_seconds : 0);
  } else if (opt.server_pid) {
    printf("; server: cannot read /proc/%ld/stat", opt.server_pid);
  }
  printf("\n");
  printf("  errors      %llu", (unsigned long long)total_errors);
  for (int e = 0; e < ERR_COUNT; e++)
    if (errors[e]) printf(" %s=%llu", error_names[e], (unsigned long long)errors[e]);
  for (int s = 0; s < 17; s++)
    if (codes[s]) printf(" [status %d: %llu]", s, (unsigned long long)codes[s]);
  printf("\n");
  if (opt.rate > 0 && unsent > 0)
    printf("  warning     the rate was not sustained: %llu calls due in the measured window were never sent\n",
           (unsigned long long)unsent);
  if (hist.clamped) printf("  warning     %llu latencies over 100 s were clamped\n", (unsigned long long)hist.clamped);
  fflush(stdout);

  if (opt.json) {
    FILE *f = fopen(opt.json, "w");
    if (!f) die("cannot write %s: %s", opt.json, strerror(errno));
    fprintf(f, "{\n  \"label\": ");
    json_string(f, opt.label);
    fprintf(f, ",\n  \"options\": {\"socket\": ");
    json_string(f, opt.socket_path);
    fprintf(f, ", \"connections\": %d, \"depth\": %d, \"threads\": %d, \"requests\": %llu, \"duration_s\": %g, "
               "\"warmup_s\": %g, \"rate\": %g, \"mode\": \"%s\", \"mix\": {\"ep\": %d, \"cu\": %d, \"st\": %d, \"cap\": %d}, "
               "\"batch\": %d, \"db\": ",
            C, opt.depth, T, (unsigned long long)opt.requests, opt.requests ? 0 : opt.duration, opt.warmup, opt.rate,
            opt.rate > 0 ? "open" : "closed", opt.mix[KIND_EP], opt.mix[KIND_CU], opt.mix[KIND_ST], opt.mix[KIND_CAP],
            opt.batch);
    if (opt.db) json_string(f, opt.db);
    else fprintf(f, "null");
    fprintf(f, ", \"users\": %zu, \"projects\": %zu, \"assets\": %zu, \"zipf\": %g, \"seed\": %llu, \"cu_project\": %g, "
               "\"expect_fixed\": %s, \"verify\": \"%s\", \"server_pid\": %ld, \"pool\": %zu, \"drain_s\": %g, "
               "\"pool_can_use\": %llu, \"pool_can_use_with_project\": %llu, \"pool_can_use_attached_project\": %llu},\n",
            wl.users.n, wl.projects.n, wl.assets.n, opt.zipf, (unsigned long long)opt.seed, opt.cu_project,
            opt.expect_fixed ? "true" : "false", opt.verify_full ? "full" : "fast", opt.server_pid, req_pool.n, opt.drain,
            (unsigned long long)req_pool.cu_total, (unsigned long long)req_pool.with_project,
            (unsigned long long)req_pool.cu_attached);
    fprintf(f, "  \"duration_s\": %.6f,\n  \"requests\": %llu,\n  \"requests_sent\": %llu,\n  \"checks\": %llu,\n",
            seconds, (unsigned long long)measured, (unsigned long long)sent_measured,
            (unsigned long long)(measured * req_pool.checks));
    fprintf(f, "  \"throughput\": {\"calls_per_s\": %.1f, \"checks_per_s\": %.1f},\n", calls_per_s, checks_per_s);
    fprintf(f, "  \"latency_us\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p99_9\": %.3f, \"max\": %.3f, "
               "\"mean\": %.3f, \"min\": %.3f, \"count\": %llu, \"from\": \"%s\"},\n",
            p50, p90, p99, p999, pmax, mean, pmin, (unsigned long long)hist.total,
            opt.rate > 0 ? "intended_send_time" : "send_time");
    if (opt.rate > 0)
      fprintf(f, "  \"open_loop\": {\"target_calls_per_s\": %g, \"late\": %llu, \"unsent\": %llu, "
                 "\"send_lag_mean_us\": %.3f, \"send_lag_max_us\": %.3f},\n",
              opt.rate, (unsigned long long)late, (unsigned long long)unsent,
              lag_count ? (double)lag_sum / lag_count * us : 0, (double)lag_max * us);
    fprintf(f, "  \"cpu\": {\"interval_s\": %.6f, \"loadgen_us\": %.0f, \"loadgen_us_per_call\": %.4f, "
               "\"loadgen_us_per_check\": %.5f",
            cpu_seconds, self_cpu, self_cpu * per_call, self_cpu * per_call / req_pool.checks);
    if (server_cpu >= 0)
      fprintf(f, ", \"server_us\": %.0f, \"server_us_per_call\": %.4f, \"server_us_per_check\": %.5f", server_cpu,
              server_cpu * per_call, server_cpu * per_call / req_pool.checks);
    else
      fprintf(f, ", \"server_us\": null, \"server_us_per_call\": null, \"server_us_per_check\": null");
    fprintf(f, "},\n  \"errors\": {\"total\": %llu", (unsigned long long)total_errors);
    for (int e = 0; e < ERR_COUNT; e++) fprintf(f, ", \"%s\": %llu", error_names[e], (unsigned long long)errors[e]);
    fprintf(f, ", \"status_codes\": {");
    int first = 1;
    for (int s = 0; s < 17; s++)
      if (codes[s]) {
        fprintf(f, "%s\"%d\": %llu", first ? "" : ", ", s, (unsigned long long)codes[s]);
        first = 0;
      }
    fprintf(f, "}}\n}\n");
    if (fclose(f) != 0) die("cannot write %s", opt.json);
  }
  return total_errors ? 1 : 0;
}
