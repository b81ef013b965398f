# custodian - build, run, test, bench, install.
#   make            build build/release/custodian
#   make run        build and run the agent on a demo configuration (demo/)
#   make test       install test dependencies, build with ASan+UBSan, run unit and e2e tests
#   make torture    the kill -9 crash loop, 200 times
#   make bench      benchmark against rclone, restic and borg (BENCH_ARGS="--quick" and the like
#                   go to bench/bench.py), then the retention planner
#   make install    PREFIX=/usr/local DESTDIR=
#   make deb        the Debian package build/custodian_<version>_<arch>.deb, checked by lintian
#   make docs       regenerate docs/configuration.md, the man pages and the bash completion

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
PYTHON := /usr/bin/python3

# The version, in one place: the top entry of packaging/debian/changelog (the
# package's version), compiled into `custodian --version`.
VERSION := $(shell head -n 1 packaging/debian/changelog | cut -d ' ' -f 2 | tr -d '()')

PKGS := libsodium libzstd sqlite3 libcrypto inih libcurl libssh2 libmongoc-1.0 libarchive libsystemd
# What the binary links against: PKGS without libmongoc and libarchive, which only some
# commands need and load with dlopen when they do (agent/mongoc_lib.h, agent/archive_lib.h),
# so that the agent never maps them nor their dependencies. Their headers stay in CFLAGS.
# libbson, which libmongoc brought in, is linked directly: it is used everywhere. dlopen
# is in glibc's libc since 2.34: no -ldl.
LINK_PKGS := $(filter-out libmongoc-1.0 libarchive,$(PKGS)) libbson-1.0
WARN := -std=c17 -Wall -Wextra -Wpedantic -Werror -Wno-format-truncation -D_GNU_SOURCE
# CPPFLAGS, CFLAGS and LDFLAGS from the environment are added (dpkg-buildflags'
# hardening when the package is built); they are empty otherwise.
CFLAGS_COMMON = $(WARN) -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CPPFLAGS)
LIBS = $(LDFLAGS) $(shell pkg-config --libs $(LINK_PKGS) 2>/dev/null) -lev -lpthread -lm

SRC := $(wildcard common/*.c catalog/*.c watcher/*.c shipper/*.c agent/*.c)
LIB_SRC := $(filter-out agent/main.c,$(SRC))
UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

RELEASE := build/release
ASAN := build/asan
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Keep unit test objects between runs.
.SECONDARY:

.PHONY: all run test unit fuzz e2e torture bench install clean deps deps-test format check-format deb docs
all: deps $(RELEASE)/custodian

deps:
	@scripts/install-deps.sh build

$(RELEASE)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_COMMON) -O2 -g $(CFLAGS) -c $< -o $@

$(ASAN)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(CFLAGS_COMMON) -O1 -g $(SAN) -c $< -o $@

# Only main.c (--version), snapshot.c (snapshot.json) and report.c (reports) see the version.
VERSIONED := $(foreach b,$(RELEASE) $(ASAN),$(b)/agent/main.o $(b)/agent/snapshot.o $(b)/agent/report.o)
$(VERSIONED): packaging/debian/changelog
$(VERSIONED): CFLAGS_COMMON += -DCUSTODIAN_VERSION='"$(VERSION)"'

$(RELEASE)/custodian: $(patsubst %.c,$(RELEASE)/%.o,$(SRC))
	$(CC) -o $@ $^ $(LIBS)

$(ASAN)/custodian: $(patsubst %.c,$(ASAN)/%.o,$(SRC))
	$(CC) $(SAN) -o $@ $^ $(LIBS)

$(ASAN)/test_%: $(ASAN)/tests/unit/test_%.o $(patsubst %.c,$(ASAN)/%.o,$(LIB_SRC))
	$(CC) $(SAN) -o $@ $^ $(LIBS) $(shell pkg-config --libs cmocka)

run: all
	@test -f demo/custodian.conf || $(RELEASE)/custodian init --demo demo
	@echo
	@echo "custodian is watching demo/app/data/{images,invoices,bug-reports}."
	@echo "Drop a file there (another terminal: cp some.pdf demo/app/data/invoices/);"
	@echo "each one is logged below as it is shipped to demo/destination/. Ctrl-C stops."
	@echo "Restore: $(RELEASE)/custodian -c demo/custodian.conf restore file PATH --to /tmp/r"
	@echo
	$(RELEASE)/custodian -c demo/custodian.conf agent

deps-test:
	@scripts/install-deps.sh test

test: deps-test
	$(MAKE) check-format unit fuzz e2e

unit: $(addprefix $(ASAN)/,$(UNIT_TESTS))
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $(ASAN)/$$t; done

e2e: $(ASAN)/custodian $(RELEASE)/custodian
	CUSTODIAN_BIN=$(CURDIR)/$(ASAN)/custodian CUSTODIAN_PLAIN_BIN=$(CURDIR)/$(RELEASE)/custodian \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

# The crash loop at length: kill -9 at 200 random instants of a mixed workload
# (make test runs 20). CUSTODIAN_CRASH_SEED picks another sequence.
TORTURE_LOOPS ?= 200
torture: deps-test $(ASAN)/custodian $(RELEASE)/custodian
	CUSTODIAN_BIN=$(CURDIR)/$(ASAN)/custodian CUSTODIAN_PLAIN_BIN=$(CURDIR)/$(RELEASE)/custodian \
	  CUSTODIAN_CRASH_LOOPS=$(TORTURE_LOOPS) \
	  $(PYTHON) -m pytest -q -s -p no:cacheprovider tests/e2e/test_crash_loop.py

# libFuzzer harnesses for the parsers that read what others wrote (tests/fuzz):
# `make fuzz` runs each for FUZZ_SECONDS from its seed corpus; make test runs them briefly.
FUZZ_SECONDS ?= 5
FUZZ_CC = clang -std=c17 -g -O1 -D_GNU_SOURCE -Wall -Wextra -Werror -I. \
	-fsanitize=fuzzer,address,undefined $(shell pkg-config --cflags libmongoc-1.0 2>/dev/null)
FUZZ_NAMES := container archive config restore_point manifest s3_xml
FUZZ := $(addprefix build/fuzz/fuzz_,$(FUZZ_NAMES))

build/fuzz/fuzz_container: tests/fuzz/fuzz_container.c shipper/container.c shipper/stream_push.c common/err.c common/util.c
	@mkdir -p build/fuzz
	$(FUZZ_CC) $^ $(shell pkg-config --libs libsodium libzstd libcrypto) -o $@
build/fuzz/fuzz_archive: tests/fuzz/fuzz_archive.c agent/mongo_archive.c common/err.c common/util.c
	@mkdir -p build/fuzz
	$(FUZZ_CC) $^ $(shell pkg-config --libs libbson-1.0) -o $@
build/fuzz/fuzz_config: tests/fuzz/fuzz_config.c agent/config.c agent/cmdline.c common/err.c common/util.c common/log.c
	@mkdir -p build/fuzz
	$(FUZZ_CC) $^ $(shell pkg-config --libs inih) -o $@
build/fuzz/fuzz_restore_point: tests/fuzz/fuzz_restore_point.c agent/restore_point.c common/pathenc.c common/err.c common/util.c
	@mkdir -p build/fuzz
	$(FUZZ_CC) $^ -o $@
build/fuzz/fuzz_manifest: tests/fuzz/fuzz_manifest.c agent/manifest.c agent/keys.c shipper/container.c shipper/stream_push.c common/err.c common/util.c
	@mkdir -p build/fuzz
	$(FUZZ_CC) $^ $(shell pkg-config --libs libsodium libzstd libcrypto libbson-1.0) -o $@
build/fuzz/fuzz_s3_xml: tests/fuzz/fuzz_s3_xml.c shipper/s3_xml.c common/err.c common/util.c
	@mkdir -p build/fuzz
	$(FUZZ_CC) $^ -o $@

# Seeds: released vectors and examples, and what the tests write (tests/fuzz/seeds/).
fuzz: $(FUZZ)
	@for f in $(FUZZ_NAMES); do mkdir -p build/fuzz/corpus-$$f; done
	@cp tests/vectors/container-v1/object*.bin build/fuzz/corpus-container/
	@cp packaging/custodian.conf.example build/fuzz/corpus-config/
	@for f in restore_point manifest s3_xml; do cp tests/fuzz/seeds/$$f/* build/fuzz/corpus-$$f/; done
	@for f in tests/vectors/daily-v*/expected/restore-point-*.tsv; do \
	  cp $$f build/fuzz/corpus-restore_point/$$(echo $$f | tr / _); done
	@cp tests/vectors/container-v1-refused/*.cst build/fuzz/corpus-container/
	@set -e; for f in $(FUZZ_NAMES); do echo "== fuzz_$$f ($(FUZZ_SECONDS) s)"; \
	  build/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) build/fuzz/corpus-$$f 2>&1 | tail -1; done

bench: all $(RELEASE)/bench_plan
	@scripts/install-deps.sh bench
	@# The planner's figure is printed whatever the pipeline's phases said; make fails if they failed.
	@rc=0; $(PYTHON) bench/bench.py --bin $(CURDIR)/$(RELEASE)/custodian $(BENCH_ARGS) || rc=$$?; \
	  echo "== retention planner: 1,000,000 versions (goal: under 10 s and 250 MB)"; \
	  $(RELEASE)/bench_plan || rc=$$?; exit $$rc

$(RELEASE)/bench_plan: bench/bench_plan.c $(RELEASE)/agent/prune_plan.o $(RELEASE)/agent/sched.o \
  $(RELEASE)/common/err.o $(RELEASE)/common/util.o
	$(CC) $(CFLAGS_COMMON) -O2 -o $@ $^ $(LIBS)

install: all
	install -D -m 0755 $(RELEASE)/custodian $(DESTDIR)$(PREFIX)/bin/custodian
	install -D -m 0644 packaging/custodian.service $(DESTDIR)$(PREFIX)/lib/systemd/system/custodian.service
	install -D -m 0644 packaging/custodian.conf.example $(DESTDIR)$(PREFIX)/share/doc/custodian/custodian.conf.example
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/custodian/README.md
	install -D -m 0644 packaging/man/custodian.8 $(DESTDIR)$(PREFIX)/share/man/man8/custodian.8
	install -D -m 0644 packaging/man/custodian.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/custodian.conf.5
	install -D -m 0644 packaging/bash-completion/custodian \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/custodian
	for f in docs/*.md; do install -D -m 0644 $$f $(DESTDIR)$(PREFIX)/share/doc/custodian/$$f; done

# The Debian package: dpkg-buildpackage on a copy of the tree with
# packaging/debian as debian/ (binary only, unsigned), then lintian, which must
# report no errors and no warnings (overrides carry their reasons in
# packaging/debian/custodian.lintian-overrides). Not part of `make`.
DEB_STAGE := build/deb/custodian-$(VERSION)
deb:
	@scripts/install-deps.sh deb
	rm -rf build/deb
	mkdir -p $(DEB_STAGE)
	tar -c --exclude-vcs --exclude=./build --exclude=./demo --exclude=__pycache__ . | \
	  tar -x -C $(DEB_STAGE)
	cp -r packaging/debian $(DEB_STAGE)/debian
	cd $(DEB_STAGE) && dpkg-buildpackage -b -us -uc -J
	lintian --fail-on error,warning build/deb/custodian_$(VERSION)_*.changes
	cp build/deb/custodian_$(VERSION)_*.deb build/
	@ls build/custodian_$(VERSION)_*.deb

# Generated references, each checked against its table by a test.
docs: $(RELEASE)/custodian
	$(PYTHON) scripts/gen-config-doc.py $(RELEASE)/custodian
	$(PYTHON) scripts/gen-man.py $(RELEASE)/custodian
	$(PYTHON) scripts/gen-completion.py $(RELEASE)/custodian

format:
	clang-format -i $(SRC) $(wildcard */*.h tests/unit/*.c tests/fuzz/*.c)

check-format:
	clang-format --dry-run -Werror $(SRC) $(wildcard */*.h tests/unit/*.c tests/fuzz/*.c)

clean:
	rm -rf build
