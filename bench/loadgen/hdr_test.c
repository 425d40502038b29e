/* hdr_test.c: self-test of hdr.c (`make test`). Checks percentiles of known
 * distributions against the exact values (sorted arrays) to within the histogram's
 * precision, the bucket geometry, merging, clamping and the mean. Exit 0 = pass. */
#define _GNU_SOURCE

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hdr.h"

static int failures;

#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (!(cond)) {                                        \
      failures++;                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                       \
      fputc('\n', stderr);                                \
    }                                                     \
  } while (0)

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double next_unit(void) { return ((next_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static const double percentiles[] = {0.0, 1.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0};

/* Compares every percentile of `h` with the exact one of the sorted `values`: the
 * histogram must answer a value equivalent to the exact one (same bucket), so at most
 * 1/1024 above it and never below it. */
static void check_against_exact(const char *name, const hdr_histogram *h, uint64_t *values, size_t n) {
  qsort(values, n, sizeof values[0], compare_u64);
  for (size_t i = 0; i < sizeof percentiles / sizeof percentiles[0]; i++) {
    double p = percentiles[i];
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.5);
    if (rank < 1) rank = 1;
    if (p >= 100.0) rank = n;
    uint64_t exact = values[rank - 1];
    uint64_t got = hdr_value_at_percentile(h, p);
    double rel = exact == 0 ? (double)got : ((double)got - (double)exact) / (double)exact;
    CHECK(got >= exact && got <= hdr_highest_equivalent(exact) && rel <= 1.0 / 1024.0,
          "%s p%g: got %llu, exact %llu (relative error %.6f)", name, p, (unsigned long long)got,
          (unsigned long long)exact, rel);
  }
  CHECK(h->total == n, "%s: total %llu != %zu", name, (unsigned long long)h->total, n);
  CHECK(h->min == values[0], "%s: min %llu != %llu", name, (unsigned long long)h->min,
        (unsigned long long)values[0]);
  CHECK(h->max == values[n - 1], "%s: max", name);
  long double sum = 0;
  for (size_t i = 0; i < n; i++) sum += values[i];
  double mean = (double)(sum / n);
  CHECK(fabs(hdr_mean(h) - mean) <= 1e-9 * mean + 1e-9, "%s: mean %f != %f", name, hdr_mean(h), mean);
}

static void test_geometry(void) {
  for (int i = 0; i < 2000000; i++) {
    uint64_t v = i < 100000 ? (uint64_t)i : next_u64() % (HDR_HIGHEST_TRACKABLE + 1);
    uint64_t lo = hdr_lowest_equivalent(v), hi = hdr_highest_equivalent(v);
    uint64_t width = hi - lo + 1;
    CHECK(lo <= v && v <= hi, "geometry: %llu not in [%llu, %llu]", (unsigned long long)v,
          (unsigned long long)lo, (unsigned long long)hi);
    CHECK(v < 2048 ? width == 1 : width <= v / 1024 + 1, "geometry: bucket of %llu is %llu wide",
          (unsigned long long)v, (unsigned long long)width);
    if (failures > 10) return;
  }
}

static void test_linear(void) {
  enum { N = 1000000 };
  hdr_histogram h;
  if (hdr_init(&h) != 0) abort();
  uint64_t *values = malloc(N * sizeof *values);
  for (size_t i = 0; i < N; i++) {
    values[i] = i + 1;
    hdr_record(&h, i + 1);
  }
  check_against_exact("uniform 1..1e6", &h, values, N);
  /* The well-known answers, to within 0.1 %. */
  CHECK(llabs((long long)hdr_value_at_percentile(&h, 50) - 500000) <= 500, "p50 of 1..1e6");
  CHECK(llabs((long long)hdr_value_at_percentile(&h, 99) - 990000) <= 990, "p99 of 1..1e6");
  free(values);
  hdr_free(&h);
}

static void test_small_exact(void) {
  hdr_histogram h;
  if (hdr_init(&h) != 0) abort();
  for (uint64_t v = 0; v < 2048; v++) hdr_record_n(&h, v, 3);
  CHECK(hdr_value_at_percentile(&h, 50) == 1023, "small: p50 %llu",
        (unsigned long long)hdr_value_at_percentile(&h, 50));
  CHECK(hdr_value_at_percentile(&h, 0) == 0, "small: p0");
  CHECK(hdr_value_at_percentile(&h, 100) == 2047, "small: p100");
  hdr_free(&h);
}

/* A latency-like distribution: log-normal around 20 us with a heavy tail, plus rare
 * outliers of milliseconds to seconds; recorded into two histograms that are merged. */
static void test_lognormal_merged(void) {
  enum { N = 1000000 };
  hdr_histogram a, b, all;
  if (hdr_init(&a) || hdr_init(&b) || hdr_init(&all)) abort();
  uint64_t *values = malloc(N * sizeof *values);
  for (size_t i = 0; i < N; i++) {
    double u1 = next_unit(), u2 = next_unit();
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    double v = exp(log(20000.0) + 0.8 * z);
    if (i % 997 == 0) v *= 1000.0 * next_unit();
    values[i] = (uint64_t)v;
    hdr_record(i % 2 ? &a : &b, values[i]);
  }
  hdr_merge(&all, &a);
  hdr_merge(&all, &b);
  check_against_exact("log-normal merged", &all, values, N);
  hdr_free(&a);
  hdr_free(&b);
  hdr_free(&all);
  free(values);
}

/* Log-uniform values over the whole trackable range, 1 ns .. 100 s. */
static void test_wide_range(void) {
  enum { N = 500000 };
  hdr_histogram h;
  if (hdr_init(&h) != 0) abort();
  uint64_t *values = malloc(N * sizeof *values);
  for (size_t i = 0; i < N; i++) {
    values[i] = (uint64_t)exp(next_unit() * log((double)HDR_HIGHEST_TRACKABLE));
    if (i == 0) values[i] = HDR_HIGHEST_TRACKABLE;
    hdr_record(&h, values[i]);
  }
  check_against_exact("log-uniform 1 ns .. 100 s", &h, values, N);
  CHECK(h.clamped == 0, "wide range: nothing clamped");
  free(values);
  hdr_free(&h);
}

static void test_clamp_and_reset(void) {
  hdr_histogram h;
  if (hdr_init(&h) != 0) abort();
  hdr_record(&h, 5);
  hdr_record(&h, 200000000000ull);
  CHECK(h.clamped == 1, "clamped count");
  CHECK(hdr_value_at_percentile(&h, 100) == HDR_HIGHEST_TRACKABLE, "clamped max");
  CHECK(hdr_value_at_percentile(&h, 99) == HDR_HIGHEST_TRACKABLE, "clamped p99 %llu",
        (unsigned long long)hdr_value_at_percentile(&h, 99));
  CHECK(hdr_value_at_percentile(&h, 10) == 5, "p10");
  hdr_reset(&h);
  CHECK(h.total == 0 && hdr_value_at_percentile(&h, 50) == 0 && hdr_mean(&h) == 0, "reset");
  hdr_free(&h);
}

int main(void) {
  test_geometry();
  test_small_exact();
  test_linear();
  test_lognormal_merged();
  test_wide_range();
  test_clamp_and_reset();
  if (failures) {
    fprintf(stderr, "hdr_test: %d failure(s)\n", failures);
    return 1;
  }
  printf("hdr_test: all checks passed\n");
  return 0;
}
