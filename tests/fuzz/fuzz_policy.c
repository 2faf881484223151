/*
 * fuzz_policy.c — libFuzzer target for the policy parser.
 *
 * Feeds arbitrary bytes to policy_parse; whatever parses is also resolved
 * (with a lookup that knows a few names) and queried on paths taken from
 * the input, so the matcher sees the patterns the parser accepted.  Must
 * never crash, leak or read out of bounds (run with ASan/UBSan).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "policy.h"

static int lookup(void *ctx, const char *name, uint32_t *id)
{
	(void)ctx;
	if (name[0] >= 'a' && name[0] <= 'm') {
		*id = (uint32_t)name[0];
		return 0;
	}
	return -ENOENT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy *p = NULL;
	struct policy_diag d = {0};
	static const char *const paths[] = {
		"/", "/a", "/a/b", "/customers/C-1/x/y", "//a//b//c/d/e/f/g", "/*/*"};
	const gid_t gids[] = {'a', 'b', 'c', 'x'};
	char root[64];

	if (policy_parse((const char *)data, size, &p, &d) == 0) {
		if (policy_resolve(p, lookup, lookup, NULL, &d) == 0) {
			for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
				struct policy_effective e;
				struct policy_decision why;

				for (int op = 0; op < POLICY_NOPS; op++)
					(void)policy_check(p, paths[i], 'a', gids, 4, op,
							   &why);
				(void)policy_effective(p, paths[i], &e);
				(void)policy_subject_of(p, paths[i], root, sizeof(root));
				(void)policy_rule_for(p, paths[i]);
			}
		}
		policy_free(p);
	}
	policy_diag_free(&d);
	return 0;
}
