# chorus: `make demo` starts a local cluster running the example app,
# `make test` runs every test (as CI does). Both need root.
GO ?= go
BINDIR := bin
BIN := $(BINDIR)/chorus
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build deps test demo demo-down bench chaos fuzz clean

# The built-in kubectl reports the Kubernetes client version it is.
KUBE_VERSION := v1.37.2
LDFLAGS := -X main.version=$(VERSION) -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37

# bin/chorus (the CLI, kubectl built in) and bin/chorus-agent (the peer,
# which `chorus agent` runs: it stays next to chorus).
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BINDIR)/ ./cmd/chorus ./cmd/chorus-agent

deps:
	./tests/scripts/install-deps.sh

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -p 1 -timeout 25m ./...

demo: deps build
	BIN=$(BIN) ./tests/scripts/demo.sh up

demo-down: build
	BIN=$(BIN) ./tests/scripts/demo.sh down

# The long form of the chaos scenarios: 2 minutes of faults each (about 12
# minutes in all), a report in docs/chaos-report.json and .txt.
chaos: deps
	$(GO) test -count=1 -timeout 40m ./tests/chaos/ -chaos.duration=2m -chaos.report=$(CURDIR)/docs/chaos-report.json

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./tests/...

# Every fuzz target of the repository, FUZZTIME each (their seed corpora
# run in `make test` already). A failure stops at the first crasher, which
# go test saves under the package's testdata/fuzz.
FUZZTIME ?= 20s
fuzz:
	@set -e; grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u | while read -r pkg; do \
		for fn in $$(grep -h -o '^func Fuzz[A-Za-z0-9_]*' $$pkg/*_test.go | cut -c6-); do \
			echo "== $$pkg $$fn ($(FUZZTIME))"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

clean:
	rm -rf bin _out
