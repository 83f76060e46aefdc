# Portico: `make run` starts the all-in-one dev node; `make test` runs every
# test, installing first what the tests need (see test/setup.sh).

GO        ?= go
BIN       := bin/portico
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...

.PHONY: all build run test test-go test-setup bench lint fmt vet examples clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/portico

run: build
	$(BIN) dev

# test-setup installs the pinned tools the tests use when they are missing.
test-setup:
	./test/setup.sh

test: test-setup build
	PORTICO_CI=1 PORTICO_BIN=$(CURDIR)/$(BIN) $(GO) test -race -timeout 30m -count=1 $(PKGS)

test-go:
	$(GO) test -race -count=1 $(PKGS)

bench: build
	./test/bench/run.sh

lint: fmt vet

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

examples:
	./examples/plugins/build.sh

clean:
	rm -rf bin .data
