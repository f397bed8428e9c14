# evloop — build, run, test, measure.
#
#   make          build the release binary and leave it at ./evloop
#   make run      ./evloop --port 8888 --pool 4
#   make test     formatting, lints, unit + integration + property tests
#   make smoke    a short run of real wrk and ab against ./evloop (what CI runs)
#   make load     the full wrk/ab scenarios, with nginx as the peer (minutes)
#   make bench    criterion benchmarks (HTTP hot path, audio stages), then `make load`

CARGO ?= cargo

.PHONY: all build run test smoke load bench clean

all: build

build:
	$(CARGO) build --release --locked
	cp target/release/evloop ./evloop

run: build
	./evloop --port 8888 --pool 4

test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked --all-targets

smoke: build
	scripts/load.sh smoke

load: build
	scripts/load.sh full

bench: build
	$(CARGO) bench --locked --bench http --bench audio
	scripts/load.sh full

clean:
	$(CARGO) clean
	rm -f ./evloop
