/*
 * errs.h — small helpers shared by every engine module.
 *
 * The engine returns 0 or -errno everywhere.  MUST_CHECK marks functions whose
 * failure matters (the libsodium habit: warn_unused_result).
 */
#ifndef CUSTODIAN_ERRS_H
#define CUSTODIAN_ERRS_H

#define MUST_CHECK __attribute__((warn_unused_result))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
