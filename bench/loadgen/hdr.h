/*
 * hdr.h: a small HDR (high dynamic range) histogram, after Gil Tene's HdrHistogram.
 *
 * Log-linear buckets: every power-of-two range [2^k, 2^(k+1)) is split into 1024 equal
 * sub-buckets (2048 for the first range), so any recorded value is kept with a relative
 * error below 1/1024 (3 significant decimal digits); values below 2048 are exact. The
 * trackable range is fixed at 1 .. 100 s in nanoseconds (1e11); larger values are clamped
 * to the top and counted in `clamped`. Memory: 28,672 64-bit counters (224 KiB).
 *
 * Not thread-safe: give each thread its own histogram and hdr_merge() them at the end.
 */
#ifndef AUTHZ_BENCH_HDR_H
#define AUTHZ_BENCH_HDR_H

#include <stdint.h>

#define HDR_HIGHEST_TRACKABLE 100000000000ull /* 100 s in ns */

typedef struct hdr_histogram {
  uint64_t total;   /* values recorded */
  uint64_t min;     /* exact smallest value recorded (UINT64_MAX when empty) */
  uint64_t max;     /* exact largest value recorded (after clamping) */
  uint64_t sum;     /* exact sum, for the mean (overflows past 584 years of total latency) */
  uint64_t clamped; /* values above HDR_HIGHEST_TRACKABLE, recorded as that */
  int counts_len;
  uint64_t *counts;
} hdr_histogram;

/* Returns 0, or -1 when out of memory. */
int hdr_init(hdr_histogram *h);
void hdr_free(hdr_histogram *h);
void hdr_reset(hdr_histogram *h);

/* Records one value (ns); 0 is allowed. */
void hdr_record(hdr_histogram *h, uint64_t value);
void hdr_record_n(hdr_histogram *h, uint64_t value, uint64_t count);

/* Adds every count of `from` into `into`. */
void hdr_merge(hdr_histogram *into, const hdr_histogram *from);

/* The value at `percentile` (0..100): the highest value equivalent (within the
 * precision) to the value below which `percentile` % of the recorded values fall, as
 * HdrHistogram's hdr_value_at_percentile. 0 when empty. percentile 100 gives max. */
uint64_t hdr_value_at_percentile(const hdr_histogram *h, double percentile);

double hdr_mean(const hdr_histogram *h);

/* Bucket geometry, exposed for the self-test. */
uint64_t hdr_lowest_equivalent(uint64_t value);
uint64_t hdr_highest_equivalent(uint64_t value);

#endif
