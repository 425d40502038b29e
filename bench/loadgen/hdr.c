/* hdr.c: see hdr.h. The index arithmetic is HdrHistogram's with unit magnitude 0
 * (lowest discernible value 1) and 3 significant digits. */
#include "hdr.h"

#include <stdlib.h>
#include <string.h>

enum {
  SUB_BUCKET_COUNT_MAGNITUDE = 11,                   /* ceil(log2(2 * 10^3)) */
  SUB_BUCKET_HALF_COUNT_MAGNITUDE = 10,
  SUB_BUCKET_COUNT = 1 << SUB_BUCKET_COUNT_MAGNITUDE, /* 2048 */
  SUB_BUCKET_HALF_COUNT = SUB_BUCKET_COUNT / 2,      /* 1024 */
  BUCKET_COUNT = 27, /* 2048 << 26 > 1e11: the buckets needed to cover 100 s in ns */
  COUNTS_LEN = (BUCKET_COUNT + 1) * SUB_BUCKET_HALF_COUNT,
};
static const uint64_t SUB_BUCKET_MASK = (uint64_t)SUB_BUCKET_COUNT - 1;

static inline int bucket_index(uint64_t value) {
  int pow2ceiling = 64 - __builtin_clzll(value | SUB_BUCKET_MASK);
  return pow2ceiling - (SUB_BUCKET_HALF_COUNT_MAGNITUDE + 1);
}

static inline int sub_bucket_index(uint64_t value, int bucket) { return (int)(value >> bucket); }

static inline int counts_index(int bucket, int sub_bucket) {
  return ((bucket + 1) << SUB_BUCKET_HALF_COUNT_MAGNITUDE) + (sub_bucket - SUB_BUCKET_HALF_COUNT);
}

static inline int counts_index_for(uint64_t value) {
  int bucket = bucket_index(value);
  return counts_index(bucket, sub_bucket_index(value, bucket));
}

static inline uint64_t value_from_index(int bucket, int sub_bucket) {
  return (uint64_t)sub_bucket << bucket;
}

static uint64_t value_at_index(int index) {
  int bucket = (index >> SUB_BUCKET_HALF_COUNT_MAGNITUDE) - 1;
  int sub_bucket = (index & (SUB_BUCKET_HALF_COUNT - 1)) + SUB_BUCKET_HALF_COUNT;
  if (bucket < 0) {
    sub_bucket -= SUB_BUCKET_HALF_COUNT;
    bucket = 0;
  }
  return value_from_index(bucket, sub_bucket);
}

static uint64_t size_of_equivalent_range(uint64_t value) {
  int bucket = bucket_index(value);
  int sub_bucket = sub_bucket_index(value, bucket);
  int adjusted = sub_bucket >= SUB_BUCKET_COUNT ? bucket + 1 : bucket;
  return 1ull << adjusted;
}

uint64_t hdr_lowest_equivalent(uint64_t value) {
  int bucket = bucket_index(value);
  return value_from_index(bucket, sub_bucket_index(value, bucket));
}

uint64_t hdr_highest_equivalent(uint64_t value) {
  return hdr_lowest_equivalent(value) + size_of_equivalent_range(value) - 1;
}

int hdr_init(hdr_histogram *h) {
  memset(h, 0, sizeof *h);
  h->counts_len = COUNTS_LEN;
  h->counts = calloc(COUNTS_LEN, sizeof h->counts[0]);
  if (h->counts == NULL) return -1;
  h->min = UINT64_MAX;
  return 0;
}

void hdr_free(hdr_histogram *h) {
  free(h->counts);
  h->counts = NULL;
}

void hdr_reset(hdr_histogram *h) {
  memset(h->counts, 0, (size_t)h->counts_len * sizeof h->counts[0]);
  h->total = 0;
  h->min = UINT64_MAX;
  h->max = 0;
  h->sum = 0;
  h->clamped = 0;
}

void hdr_record_n(hdr_histogram *h, uint64_t value, uint64_t count) {
  if (count == 0) return;
  if (value > HDR_HIGHEST_TRACKABLE) {
    value = HDR_HIGHEST_TRACKABLE;
    h->clamped += count;
  }
  h->counts[counts_index_for(value)] += count;
  h->total += count;
  h->sum += value * count;
  if (value < h->min) h->min = value;
  if (value > h->max) h->max = value;
}

void hdr_record(hdr_histogram *h, uint64_t value) { hdr_record_n(h, value, 1); }

void hdr_merge(hdr_histogram *into, const hdr_histogram *from) {
  if (from->total == 0) return;
  for (int i = 0; i < from->counts_len; i++) into->counts[i] += from->counts[i];
  into->total += from->total;
  into->sum += from->sum;
  into->clamped += from->clamped;
  if (from->min < into->min) into->min = from->min;
  if (from->max > into->max) into->max = from->max;
}

uint64_t hdr_value_at_percentile(const hdr_histogram *h, double percentile) {
  if (h->total == 0) return 0;
  if (percentile >= 100.0) return h->max;
  if (percentile < 0) percentile = 0;
  uint64_t wanted = (uint64_t)((percentile / 100.0) * (double)h->total + 0.5);
  if (wanted < 1) wanted = 1;
  uint64_t seen = 0;
  for (int i = 0; i < h->counts_len; i++) {
    seen += h->counts[i];
    if (seen >= wanted) {
      uint64_t v = hdr_highest_equivalent(value_at_index(i));
      /* Never report more than was seen, nor less than the smallest value. */
      if (v > h->max) v = h->max;
      if (v < h->min) v = h->min;
      return v;
    }
  }
  return h->max;
}

double hdr_mean(const hdr_histogram *h) {
  return h->total == 0 ? 0.0 : (double)h->sum / (double)h->total;
}
