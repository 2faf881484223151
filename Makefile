# custodian — build, test, demo, bench.
#
#   make            build build/custodianfs and build/custodian
#   make demo       install missing packages, build, mount a demo store
#   make test       install missing packages, build, run every test (also
#                   under ASan+UBSan) — this is what CI runs
#   make bench      custodian vs gocryptfs, securefs, passthrough_ll, plain
#   make lint       cppcheck + clang-format check
#   make install    PREFIX=/usr/local DESTDIR=
#
# Object files go to $(BUILD) (build/ by default, build-asan/ for the
# sanitizer build), so both builds coexist.

BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
PYTHON   ?= /usr/bin/python3
SANITIZE ?=

# Debian packages the build and the tests need; `make deps` installs the
# missing ones (nothing is assumed to be installed by hand).
DEB_BUILD = build-essential pkg-config libfuse3-dev fuse3 libsodium-dev libssl-dev \
	libsqlite3-dev libinih-dev libjson-c-dev
DEB_TEST  = libcmocka-dev python3-pytest sqlite3 clang libclang-rt-14-dev \
	attr acl rsync git e2fsprogs util-linux psmisc procps passwd \
	cppcheck clang-format fio stress-ng
DEB_BENCH = gocryptfs securefs fio hyperfine

# CFLAGS is the tunable part (optimisation, debug info); `override` keeps
# the language, warning and dependency flags when a caller sets CFLAGS on
# the command line (test-asan and fuzz do), which would otherwise drop them.
PKGS     = fuse3 libsodium libcrypto sqlite3 inih json-c
override CPPFLAGS += -D_GNU_SOURCE -DFUSE_USE_VERSION=314 -Ifs -Ipolicy \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS   ?= -O2 -g
override CFLAGS += -std=c11 -Wall -Wextra -Wshadow -Wformat=2 -Werror -pthread \
	-fno-strict-aliasing -MMD -MP $(SANITIZE)
override LDFLAGS += -pthread $(SANITIZE)
override LDLIBS += $(shell pkg-config --libs $(PKGS) 2>/dev/null)

DAEMON_SRCS = fs/ops.c fs/chan.c fs/custodianfs.c
ENGINE_SRCS = $(filter-out $(DAEMON_SRCS),$(wildcard fs/*.c)) $(wildcard policy/*.c)
TOOL_SRCS   = $(wildcard tools/*.c)
UNIT_SRCS   = $(wildcard tests/unit/test_*.c)

ENGINE_OBJS = $(ENGINE_SRCS:%.c=$(BUILD)/obj/%.o)
DAEMON_OBJS = $(DAEMON_SRCS:%.c=$(BUILD)/obj/%.o)
TOOL_OBJS   = $(TOOL_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_BINS   = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# Test programs the integration suite drives (exercisers, fault helpers).
TOOLT_SRCS  = $(wildcard tests/tools/*.c)
TOOLT_BINS  = $(TOOLT_SRCS:tests/tools/%.c=$(BUILD)/tests/tools/%)
LIB         = $(BUILD)/libcustodian.a

.PHONY: all deps deps-bench demo demo-stop test check test-unit \
	test-integration test-asan fuzz fuzz-smoke bench lint install clean \
	torture

all: $(BUILD)/custodianfs $(BUILD)/custodian $(TOOLT_BINS) $(BUILD)/engine.ldlibs

# The libraries a program linked with libcustodian.a needs, for the test
# helpers the integration suite compiles (one list: PKGS above).
$(BUILD)/engine.ldlibs: Makefile
	@mkdir -p $(@D)
	@echo '$(LDLIBS)' >$@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(ENGINE_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/custodianfs: $(DAEMON_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(DAEMON_OBJS) $(LIB) $(LDLIBS)

$(BUILD)/custodian: $(TOOL_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJS) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Itests/unit -o $@ $< $(LIB) $(LDFLAGS) \
		$(LDLIBS) -lcmocka

$(BUILD)/tests/tools/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# --- packages ---------------------------------------------------------------
deps:
	@sh tests/install-deps.sh $(DEB_BUILD) $(DEB_TEST)

deps-bench:
	@sh tests/install-deps.sh $(DEB_BUILD) $(DEB_TEST) $(DEB_BENCH)

# --- demo -------------------------------------------------------------------
demo: deps
	$(MAKE) all
	sh tests/demo.sh

demo-stop:
	sh tests/demo.sh stop

# --- tests ------------------------------------------------------------------
test: deps
	$(MAKE) all
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) test-asan
	$(MAKE) fuzz-smoke
	@echo "make test: all suites passed"

check: test

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

test-integration: $(BUILD)/custodianfs $(BUILD)/custodian $(BUILD)/engine.ldlibs
	CUSTODIAN_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -p no:cacheprovider \
		tests/integration $(PYTEST_ARGS)

# The same unit and integration suites, built with ASan+UBSan.
test-asan:
	$(MAKE) BUILD=build-asan CC=gcc CFLAGS="-O1 -g -fno-omit-frame-pointer" \
		SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all" \
		all test-unit test-integration

# --- fuzzing (libFuzzer, clang) ---------------------------------------------
# Each tests/fuzz/fuzz_NAME.c is a libFuzzer target; its seed corpus is
# tests/fuzz/corpus/NAME/.  fuzz-smoke runs each for FUZZ_SECONDS (CI);
# `make torture` runs them longer.
FUZZ_SECONDS ?= 15
FUZZ_SRCS    = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BUILD   = build-fuzz
FUZZ_BINS    = $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

fuzz: $(FUZZ_SRCS)
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang CFLAGS="-O1 -g" \
		SANITIZE="-fsanitize=fuzzer-no-link,address,undefined" \
		$(FUZZ_BUILD)/libcustodian.a
	@set -e; for s in $(FUZZ_SRCS); do \
		n=$$(basename $$s .c); \
		clang $(CPPFLAGS) -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined \
			-o $(FUZZ_BUILD)/$$n $$s $(FUZZ_BUILD)/libcustodian.a $(LDLIBS); \
	done

fuzz-smoke: fuzz
	@set -e; for s in $(FUZZ_SRCS); do \
		n=$$(basename $$s .c); c=tests/fuzz/corpus/$${n#fuzz_}; \
		mkdir -p $(FUZZ_BUILD)/corpus/$$n $$c; \
		echo "== $$n ($(FUZZ_SECONDS)s)"; \
		if ! $(FUZZ_BUILD)/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			$(FUZZ_BUILD)/corpus/$$n $$c > $(FUZZ_BUILD)/$$n.log 2>&1; then \
			tail -50 $(FUZZ_BUILD)/$$n.log; exit 1; fi; \
		grep -E 'stat::number_of_executed_units' $(FUZZ_BUILD)/$$n.log; \
	done

# --- torture: the long versions of the reliability tests ---------------------
# CUSTODIAN_TORTURE=1 makes the reliability tests run their long loops
# (200+ kills, 10 minutes of load); fuzz targets run FUZZ_SECONDS each.
# The fuzzing runs even when a test failed; make fails at the end if either did.
torture: all
	@rc=0; CUSTODIAN_TORTURE=1 CUSTODIAN_TEST_TIMEOUT=$${CUSTODIAN_TEST_TIMEOUT:-7200} \
		CUSTODIAN_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q \
		-p no:cacheprovider tests/integration -k "reliability or torture" \
		$(PYTEST_ARGS) || rc=1; \
	$(MAKE) fuzz-smoke FUZZ_SECONDS=$${FUZZ_SECONDS:-600} || rc=1; \
	exit $$rc

# --- benchmark --------------------------------------------------------------
bench: deps-bench
	$(MAKE) all
	sh tests/bench/run.sh $(abspath $(BUILD))

# --- lint -------------------------------------------------------------------
LINT_SRCS = $(wildcard fs/*.c fs/*.h policy/*.c policy/*.h tools/*.c tools/*.h \
	tests/integration/*.c)

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
		--std=c11 --inline-suppr -D_GNU_SOURCE -DFUSE_USE_VERSION=314 \
		-Ifs -Ipolicy --suppress=missingIncludeSystem fs policy tools
	clang-format --dry-run --Werror $(LINT_SRCS)

# --- install ----------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0755 $(BUILD)/custodianfs $(DESTDIR)$(PREFIX)/bin/custodianfs
	install -m 0755 $(BUILD)/custodian $(DESTDIR)$(PREFIX)/bin/custodian
	ln -sf custodianfs $(DESTDIR)$(PREFIX)/sbin/mount.custodian
	install -m 0644 man/custodianfs.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 man/custodian.8 $(DESTDIR)$(PREFIX)/share/man/man8/

clean:
	rm -rf build build-asan build-fuzz
