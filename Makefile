# evloop — build, run, test, measure.
#
#   make          build the release binary and leave it at ./evloop
#   make run      ./evloop --port 8888 --pool 4
#   make test     formatting, lints, unit + integration + property tests
#   make smoke    a short run of real wrk and ab against ./evloop (what CI runs)
#   make load     the full wrk/ab scenarios, with nginx as the peer (minutes); writes
#                 docs/BENCHMARKS.md and its plots in docs/bench/ from that run
#   make bench    criterion benchmarks (HTTP hot path, audio stages), then `make load`
#   make attack   slowhttptest's slow headers / body / read, 1000 connections each, with wrk
#                 beside it; then the server under `ulimit -n 256` facing 1000 clients; then
#                 50 clients flooding pipelined requests without reading (longest reactor turn)
#   make soak     mixed load for SOAK_SECONDS (default 600), then RSS and fds against the
#                 baseline (`SOAK_SECONDS=300 make soak` for a shorter one)
#   make fuzz     the socket-free request path under cargo-fuzz for FUZZ_SECONDS (default 1800)
#   make demo     the asyncio notes' blocking / non-blocking / concurrent test, the I/O-bound
#                 one and the worker counts, measured here and explained (about a minute)
#   make scaleout three evloop hosts (network namespaces) behind nginx, under wrk: the spread,
#                 a rolling restart and a SIGKILL, none failing a request (root;
#                 SCALEOUT_SECONDS=5 make scaleout for a short run)

CARGO ?= cargo

.PHONY: all build run test smoke load bench attack soak fuzz scaleout demo clean

all: build

# Where cargo leaves the binary: $CARGO_TARGET_DIR when the environment sets it, else target/.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

# The binary is copied beside ./evloop, then renamed over it: a rename replaces the directory
# entry atomically, so it works while ./evloop is running (copying onto the running file fails
# with "Text file busy"); the running server keeps its old inode until it exits.
build:
	$(CARGO) build --release --locked
	cp $(TARGET_DIR)/release/evloop ./.evloop.tmp
	mv -f ./.evloop.tmp ./evloop

run: build
	./evloop --port 8888 --pool 4

test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps --document-private-items
	$(CARGO) test --locked --all-targets

smoke: build
	scripts/load.sh smoke

load: build
	scripts/load.sh full

bench: build
	$(CARGO) bench --locked --bench http --bench audio
	scripts/load.sh full

attack: build
	scripts/attack.sh full
	scripts/flood.py --count 50 --seconds 10

soak: build
	scripts/soak.sh full

fuzz:
	scripts/fuzz.sh

scaleout: build
	scripts/scaleout.sh

demo: build
	scripts/demo.sh

clean:
	$(CARGO) clean
	rm -f ./evloop
