# The two commands of a fresh machine are `make run` and `make test`; both install the
# Debian packages they need first (scripts/deps.sh is idempotent).
BUILD      ?= build
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps build run test test-asan test-tsan test-crash fuzz bench bench-server format clean

all: build

deps:
	@./scripts/deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# shoal-server on 127.0.0.1:$(PORT), durable, data in ./data (sync periodic, as Redis's
# appendfsync everysec). Ctrl-C stops it cleanly; the next `make run` recovers ./data.
PORT ?= 6379
run: build
	@mkdir -p data
	@echo "shoal-server: 127.0.0.1:$(PORT), durable mode, data in ./data (sync periodic)."
	@echo "Connect with:   redis-cli -p $(PORT)     (e.g. SET greeting hello, GET greeting, INFO persistence)"
	@echo "Stop with Ctrl-C: it takes a checkpoint and exits; the next 'make run' recovers ./data."
	$(BUILD)/shoal-server --bind 127.0.0.1 --port $(PORT) --dir data --sync periodic

test: build
	cd $(BUILD) && ctest -L quick --output-on-failure -j $(JOBS)

# Sanitizer builds live in their own directories.
test-asan: deps
	cmake -S . -B build-asan -DSHOAL_ASAN=ON -DSHOAL_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS)
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest -L quick --output-on-failure -j $(JOBS)

test-tsan: deps
	cmake -S . -B build-tsan -DSHOAL_TSAN=ON -DSHOAL_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest -L quick --output-on-failure -j $(JOBS)

test-crash: build
	cd $(BUILD) && ctest -L crash --output-on-failure

# The fuzz targets of tests/fuzz under libFuzzer (clang, ASan+UBSan), FUZZ_SECONDS each.
# Each grows its own corpus in build-fuzz/corpus-<target>, seeded from tests/fuzz/corpus;
# a crash leaves its input in build-fuzz (see tests/fuzz/README.md).
FUZZ_SECONDS ?= 60
fuzz:
	@./scripts/deps.sh fuzz
	cmake -S . -B build-fuzz -DSHOAL_FUZZ=ON -DSHOAL_BENCH=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)
	cmake --build build-fuzz -j $(JOBS) --target fuzz-resp fuzz-log fuzz-text
	@for t in resp log text; do \
	    mkdir -p build-fuzz/corpus-$$t && echo "fuzz-$$t: $(FUZZ_SECONDS) s, log in build-fuzz/fuzz-$$t.log" && \
	    (cd build-fuzz && ./fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	        -print_final_stats=1 corpus-$$t ../tests/fuzz/corpus/$$t > fuzz-$$t.log 2>&1) || \
	        { tail -40 build-fuzz/fuzz-$$t.log; exit 1; }; \
	    grep -E "^stat::(number_of_executed_units|new_units_added)|^Done" build-fuzz/fuzz-$$t.log; \
	done

# The engine against its anchors (LMDB, RocksDB, LevelDB, Redis), then what durability
# costs against the same anchors, then the object-table benchmark when it is built.
# docs/BENCHMARKS.md explains the output.
bench: build
	$(BUILD)/bench/shoal-bench
	$(BUILD)/bench/shoal-bench-durable
	@if [ -x $(BUILD)/bench/bench-ot ]; then echo "$(BUILD)/bench/bench-ot"; $(BUILD)/bench/bench-ot; fi

# shoal-server against Debian's redis-server with redis-benchmark, both started here, in
# one run (about 4 minutes; QUICK=1 for a smoke run). docs/BENCHMARKS.md, "Server".
bench-server: build
	./bench/bench_server.sh $(BUILD)/shoal-server

format:
	clang-format -i include/*.h src/*/*.[ch] tests/*/*.[ch] bench/*.[ch]

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
