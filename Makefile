# Fulcrum: the two commands a developer needs besides `go run ./cmd/fulcrum demo`.
.PHONY: test bench

# The whole test suite, as CI runs it.
test:
	go test -race -count=1 ./...

# The side-by-side benchmark (Fulcrum, HAProxy, nginx, Caddy, direct); see
# bench/README.md. Not part of CI. Pass flags with ARGS, e.g. make bench ARGS=-quick
bench:
	bench/run $(ARGS)
