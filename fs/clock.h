/*
 * clock.h — wall-clock time for records (UTC microseconds).
 *
 * One seam for time, so retention can later be tested with a fixed clock.
 */
#ifndef CUSTODIAN_CLOCK_H
#define CUSTODIAN_CLOCK_H

#include <stdint.h>

/* UTC microseconds since the epoch. */
int64_t clock_now_us(void);

#endif
