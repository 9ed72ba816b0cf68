// Package examples holds runnable Fulcrum configurations. Every *.yaml file
// here is checked by the tests (it must load without errors), so the
// examples stay true to the code.
//
// It owns the example files and the demo configuration embedded into the
// binary; it must not hold code beyond that. F5 equivalent: none (these are
// the configurations a new operator copies from).
package examples

import _ "embed"

// Demo is the configuration `fulcrum demo` runs: virtual vs_demo (http,
// 127.0.0.1:8080) in front of pool demo (127.0.0.1:8081 and :8082), with
// the management API on 127.0.0.1:9090. It is embedded, read-only data.
//
//go:embed demo.yaml
var Demo []byte
